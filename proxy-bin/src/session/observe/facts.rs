//! What the stats report needs from outside the stats: connections per tenant, the pools' states, the big
//! lanes' counts, Kafka redeliveries and consumer lag, and a probe of every backend node. Used by
//! `RKPROXY STATS`, INFO and the metrics endpoint.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::backend::BackendReply;
use crate::pools::PoolHandle;
use crate::reply;
use crate::stats::report::{self, Facts, LagFacts, LaneFacts, NodeFacts, PoolFacts, Section};
use crate::stats::{NO_TENANT, UNAUTHENTICATED};

/// Connections per tenant and the pools' states, from the proxy's state.
pub fn proxy_facts(state: &crate::state::ProxyState) -> Facts {
    let mut facts = Facts::default();
    let total = state.connected_clients();
    match state.tenants() {
        Some(tenants) => {
            let mut authenticated = 0;
            for tenant in tenants.iter() {
                let count = tenant.connection_count();
                authenticated += count;
                facts.connections.insert(tenant.name().to_owned(), count);
            }
            facts.connections.insert(
                UNAUTHENTICATED.to_owned(),
                total.saturating_sub(authenticated),
            );
        }
        None => {
            facts.connections.insert(NO_TENANT.to_owned(), total);
        }
    }
    facts.pools = state.pool_handles().map(pool_facts).collect();
    facts.pools.sort_by(|a, b| a.name.cmp(&b.name));
    facts.lanes = state
        .pool_handles()
        .filter_map(|pool| {
            let counts = pool.big_lanes()?.stats().snapshot();
            Some(LaneFacts {
                pool: pool.name().to_owned(),
                requests: counts.big_requests,
                queued: counts.queue_waits,
                busy: counts.rejections,
            })
        })
        .collect();
    facts.lanes.sort_by(|a, b| a.pool.cmp(&b.pool));
    for pool in state.kafka_pools() {
        for ((group, topic), count) in pool.redelivered() {
            facts
                .kafka_redelivered
                .insert((pool.name().to_owned(), topic, group), count);
        }
    }
    facts
}

/// `RKPROXY STATS KAFKA` in a task: the counts, and the consumer lag read from Kafka now.
pub(super) fn kafka_section(
    state: Arc<crate::state::ProxyState>,
    visible: Option<String>,
) -> oneshot::Receiver<BackendReply> {
    let (sender, receiver) = oneshot::channel::<BackendReply>();
    tokio::spawn(async move {
        let snapshot = state.stats().snapshot();
        let mut facts = proxy_facts(&state);
        facts.lag = kafka_lag(&state, &snapshot).await;
        let lines = report::stats_lines(Section::Kafka, &snapshot, &facts, visible.as_deref());
        let _ = sender.send(Ok(reply::array_of_bulks(
            lines.iter().map(String::as_bytes),
        )));
    });
    receiver
}

/// Every connected Kafka pool's consumer lag, per topic, partition and group: the groups are the topic's
/// configured consumers and the tenants that popped from it (a `*` consumer list names no group). A pool
/// that is not connected, or a topic whose offsets cannot be read now, is left out (and logged at debug).
pub async fn kafka_lag(
    state: &crate::state::ProxyState,
    snapshot: &crate::stats::WorkerStats,
) -> Vec<LagFacts> {
    let mut rows = Vec::new();
    for pool in state.pool_handles() {
        let PoolHandle::Kafka(kafka) = pool else {
            continue;
        };
        let Some(bridge) = kafka.connected_bridge() else {
            continue;
        };
        for topic in &bridge.config().topics {
            let groups = lag_groups(kafka.name(), topic, snapshot);
            match bridge.consumer_lag(&topic.name, &groups).await {
                Ok(lags) => rows.extend(lags.into_iter().map(|lag| LagFacts {
                    pool: kafka.name().to_owned(),
                    topic: lag.topic,
                    partition: lag.partition,
                    group: lag.group,
                    high_watermark: lag.high_watermark,
                    next_offset: lag.next_offset,
                    lag: lag.lag,
                })),
                Err(error) => {
                    tracing::debug!(pool = kafka.name(), topic = %topic.name, %error, "consumer lag not read");
                }
            }
        }
    }
    rows
}

/// The consumer groups whose lag is read for `topic`: its named consumers and the tenants that popped from it.
fn lag_groups(
    pool: &str,
    topic: &kafka_bridge::TopicConfig,
    snapshot: &crate::stats::WorkerStats,
) -> Vec<String> {
    let mut groups: Vec<String> = topic
        .consumers
        .iter()
        .filter(|consumer| *consumer != "*")
        .cloned()
        .collect();
    for ((topic_pool, name, tenant), counts) in &snapshot.topics {
        if &**topic_pool == pool && **name == *topic.name && counts.pops > 0 {
            groups.push(tenant.to_string());
        }
    }
    groups.sort();
    groups.dedup();
    groups
}

fn pool_facts(pool: &PoolHandle) -> PoolFacts {
    match pool {
        PoolHandle::Standalone(standalone) => PoolFacts {
            name: standalone.name().to_owned(),
            kind: "standalone",
            state: "lazy".to_owned(),
            nodes: vec![standalone.address().to_string()],
        },
        PoolHandle::Cluster(cluster) => {
            let topology = cluster.topology();
            let nodes: Vec<String> = topology.map.nodes().map(ToString::to_string).collect();
            PoolFacts {
                name: cluster.name().to_owned(),
                kind: "cluster",
                state: if topology.map.masters().is_empty() {
                    "no_slot_map".to_owned()
                } else {
                    "ok".to_owned()
                },
                nodes,
            }
        }
        PoolHandle::Kafka(kafka) => PoolFacts {
            name: kafka.name().to_owned(),
            kind: "kafka",
            state: kafka.state_name().to_owned(),
            nodes: kafka.brokers().to_vec(),
        },
    }
}

/// Whether each Redis node of every pool accepts a connection (with the pool's handshake) within the connect
/// timeout; a Kafka pool's brokers are up when the pool is connected.
pub async fn probe_nodes(state: &crate::state::ProxyState) -> Vec<NodeFacts> {
    let mut probes = Vec::new();
    for pool in state.pool_handles() {
        match pool {
            PoolHandle::Standalone(standalone) => {
                probes.push((pool.name().to_owned(), standalone.endpoint(0, false)));
            }
            PoolHandle::Cluster(cluster) => {
                for node in cluster.topology().map.nodes() {
                    probes.push((pool.name().to_owned(), cluster.endpoint(node, false, false)));
                }
            }
            PoolHandle::Kafka(_) => {}
        }
    }
    let checks = probes.into_iter().map(|(pool, endpoint)| async move {
        let up = crate::backend::connect(&endpoint).await.is_ok();
        NodeFacts {
            pool,
            node: endpoint.address.to_string(),
            up,
        }
    });
    let mut nodes: Vec<NodeFacts> = futures_join_all(checks).await;
    for pool in state.pool_handles() {
        if let PoolHandle::Kafka(kafka) = pool {
            for broker in kafka.brokers() {
                nodes.push(NodeFacts {
                    pool: kafka.name().to_owned(),
                    node: broker.clone(),
                    up: kafka.state_name() == "up",
                });
            }
        }
    }
    nodes.sort_by(|a, b| (&a.pool, &a.node).cmp(&(&b.pool, &b.node)));
    nodes
}

/// Runs the probes concurrently (each bounded by its connect timeout).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(result) = handle.await {
            out.push(result);
        }
    }
    out
}
