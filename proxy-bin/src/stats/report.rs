//! The text of `RKPROXY STATS [section]` lines and of INFO's `# Proxy` section, from a merged snapshot. Pure
//! functions: the session gathers the facts (connections, pool states, node probes) and does the I/O.
//!
//! Every line is `key=value` pairs separated by spaces, one line per row, like `RKPROXY TENANTS`. A tenant that
//! is not an admin sees only its own rows (`visible_tenant`).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::keys::{BigKey, HotKey};
use super::{ErrorKind, Histogram, NodeCounts, Traffic, WorkerStats};

/// The sections of `RKPROXY STATS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Tenants,
    Commands,
    Pools,
    Nodes,
    Kafka,
    Lanes,
}

impl Section {
    /// The section named by a client (case-insensitive); no name means `tenants`.
    pub fn parse(name: Option<&[u8]>) -> Option<Section> {
        let Some(name) = name else {
            return Some(Section::Tenants);
        };
        Some(match name.to_ascii_lowercase().as_slice() {
            b"tenants" => Section::Tenants,
            b"commands" => Section::Commands,
            b"pools" => Section::Pools,
            b"nodes" => Section::Nodes,
            b"kafka" => Section::Kafka,
            b"lanes" => Section::Lanes,
            _ => return None,
        })
    }
}

/// What the proxy knows about a pool besides counts.
#[derive(Debug, Clone)]
pub struct PoolFacts {
    pub name: String,
    pub kind: &'static str,
    /// `up`, `down`, `starting` (Kafka), `ok` / `no_slot_map` (cluster), `lazy` (standalone: connects on use).
    pub state: String,
    pub nodes: Vec<String>,
}

/// One backend node and whether it answered a probe.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub pool: String,
    pub node: String,
    pub up: bool,
}

/// One consumer group's lag on one partition of a Kafka pool's topic (the group is the tenant's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagFacts {
    pub pool: String,
    pub topic: String,
    pub partition: i32,
    pub group: String,
    pub high_watermark: i64,
    pub next_offset: i64,
    pub lag: i64,
}

/// The big-request lanes of one pool, as the lanes counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneFacts {
    pub pool: String,
    /// Requests that went to a lane (sent, or refused as busy).
    pub requests: u64,
    /// Of those, how many waited for a free lane connection.
    pub queued: u64,
    /// Of those, how many were refused as busy.
    pub busy: u64,
}

/// Facts for the report beside the counts.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Open connections per tenant label.
    pub connections: BTreeMap<String, usize>,
    pub pools: Vec<PoolFacts>,
    pub nodes: Vec<NodeFacts>,
    /// Kafka consumer lag (only gathered for the kafka section and the metrics).
    pub lag: Vec<LagFacts>,
    pub lanes: Vec<LaneFacts>,
    /// Kafka records delivered again (at least once) by (pool, topic, group), from the pools' bridges.
    pub kafka_redelivered: BTreeMap<(String, String, String), u64>,
}

/// The lines of one section. `visible_tenant`: only that tenant's rows (`None`: every row).
pub fn stats_lines(
    section: Section,
    snapshot: &WorkerStats,
    facts: &Facts,
    visible_tenant: Option<&str>,
) -> Vec<String> {
    let visible = |tenant: &str| visible_tenant.is_none_or(|mine| mine == tenant);
    match section {
        Section::Tenants => tenant_lines(snapshot, facts, &visible),
        Section::Commands => command_lines(snapshot, &visible),
        Section::Pools => pool_lines(snapshot, facts, &visible),
        Section::Nodes => node_lines(snapshot, facts),
        Section::Kafka => kafka_lines(snapshot, facts, &visible),
        Section::Lanes => lane_lines(snapshot, facts, &visible),
    }
}

/// Traffic summed per tenant (over pools), for the visible tenants.
fn traffic_by_tenant(
    snapshot: &WorkerStats,
    visible: &dyn Fn(&str) -> bool,
) -> BTreeMap<String, (u64, Traffic)> {
    let mut tenants: BTreeMap<String, (u64, Traffic)> = BTreeMap::new();
    for ((_, tenant, _), counts) in &snapshot.commands {
        if visible(tenant) {
            tenants.entry(tenant.to_string()).or_default().0 += counts.calls;
        }
    }
    for ((_, tenant), traffic) in &snapshot.traffic {
        if visible(tenant) {
            tenants
                .entry(tenant.to_string())
                .or_default()
                .1
                .merge(traffic);
        }
    }
    tenants
}

fn tenant_lines(
    snapshot: &WorkerStats,
    facts: &Facts,
    visible: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut tenants = traffic_by_tenant(snapshot, visible);
    for tenant in facts.connections.keys() {
        if visible(tenant) {
            tenants.entry(tenant.clone()).or_default();
        }
    }
    tenants
        .iter()
        .map(|(tenant, (calls, traffic))| {
            let connections = facts.connections.get(tenant).copied().unwrap_or(0);
            format!(
                "tenant={tenant} connections={connections} calls={calls} {}",
                traffic_fields(traffic)
            )
        })
        .collect()
}

fn command_lines(snapshot: &WorkerStats, visible: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut rows: Vec<_> = snapshot
        .commands
        .iter()
        .filter(|((_, tenant, _), _)| visible(tenant))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    rows.iter()
        .map(|((pool, tenant, command), counts)| {
            format!(
                "tenant={tenant} pool={pool} command={command} calls={} bytes_in={} {}",
                counts.calls,
                counts.bytes_in,
                latency_fields("", &counts.latency)
            )
        })
        .collect()
}

fn pool_lines(
    snapshot: &WorkerStats,
    facts: &Facts,
    visible: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut pools: BTreeMap<&str, (u64, Traffic)> = BTreeMap::new();
    for ((pool, tenant, _), counts) in &snapshot.commands {
        if visible(tenant) {
            pools.entry(pool).or_default().0 += counts.calls;
        }
    }
    for ((pool, tenant), traffic) in &snapshot.traffic {
        if visible(tenant) {
            pools.entry(pool).or_default().1.merge(traffic);
        }
    }
    facts
        .pools
        .iter()
        .map(|pool| {
            let (calls, traffic) = pools.get(pool.name.as_str()).cloned().unwrap_or_default();
            format!(
                "pool={} kind={} state={} nodes={} calls={calls} {}",
                pool.name,
                pool.kind,
                pool.state,
                pool.nodes.join(","),
                traffic_fields(&traffic)
            )
        })
        .collect()
}

/// One line per probed node (and per node that answered requests, if it was not probed): up or not, requests
/// it answered, those that failed there, and the backend round trip of those it answered.
fn node_lines(snapshot: &WorkerStats, facts: &Facts) -> Vec<String> {
    let mut nodes: BTreeMap<(String, String), (Option<bool>, NodeCounts)> = BTreeMap::new();
    for node in &facts.nodes {
        nodes
            .entry((node.pool.clone(), node.node.clone()))
            .or_default()
            .0 = Some(node.up);
    }
    for ((pool, node), counts) in &snapshot.nodes {
        nodes
            .entry((pool.to_string(), node.to_string()))
            .or_default()
            .1
            .merge(counts);
    }
    nodes
        .iter()
        .map(|((pool, node), (up, counts))| {
            let up = up.map_or_else(|| "-".to_owned(), |up| u8::from(up).to_string());
            format!(
                "pool={pool} node={node} up={up} requests={} failures={} {}",
                counts.requests,
                counts.failures,
                latency_fields("backend_", &counts.latency)
            )
        })
        .collect()
}

/// One line per (pool, topic, tenant) with its KPUSH/KPOP counts, then one per (pool, topic, partition, group)
/// with the group's lag.
fn kafka_lines(
    snapshot: &WorkerStats,
    facts: &Facts,
    visible: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut rows: Vec<_> = snapshot
        .topics
        .iter()
        .filter(|((_, _, tenant), _)| visible(tenant))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let counts = rows.iter().map(|((pool, topic, tenant), counts)| {
        let key = (pool.to_string(), topic.to_string(), tenant.to_string());
        let redelivered = facts.kafka_redelivered.get(&key).copied().unwrap_or(0);
        format!(
            "pool={pool} topic={topic} tenant={tenant} kpush={} kpush_bytes={} kpop={} kpop_bytes={} \
             kpop_redelivered={redelivered}",
            counts.pushes, counts.push_bytes, counts.pops, counts.pop_bytes
        )
    });
    let lag = facts
        .lag
        .iter()
        .filter(|lag| visible(&lag.group))
        .map(|lag| {
            format!(
                "pool={} topic={} partition={} group={} high_watermark={} next_offset={} lag={}",
                lag.pool,
                lag.topic,
                lag.partition,
                lag.group,
                lag.high_watermark,
                lag.next_offset,
                lag.lag
            )
        });
    counts.chain(lag).collect()
}

/// One line per pool with big lanes (what the lanes counted: every tenant's), then one per (pool, tenant) and
/// per (pool, node) with the lane requests each sent.
fn lane_lines(
    snapshot: &WorkerStats,
    facts: &Facts,
    visible: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut lines = Vec::new();
    if visible(ADMIN_VIEW) {
        for lane in &facts.lanes {
            lines.push(format!(
                "pool={} lane_requests={} lane_queued={} lane_busy={}",
                lane.pool, lane.requests, lane.queued, lane.busy
            ));
        }
    }
    let mut tenants: Vec<_> = snapshot
        .traffic
        .iter()
        .filter(|((_, tenant), traffic)| visible(tenant) && traffic.lane_requests > 0)
        .collect();
    tenants.sort_by(|a, b| a.0.cmp(b.0));
    for ((pool, tenant), traffic) in tenants {
        lines.push(format!(
            "pool={pool} tenant={tenant} lane_requests={} lane_busy={}",
            traffic.lane_requests, traffic.lane_busy
        ));
    }
    if visible(ADMIN_VIEW) {
        let mut nodes: Vec<_> = snapshot
            .nodes
            .iter()
            .filter(|(_, counts)| counts.lane_requests > 0)
            .collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        for ((pool, node), counts) in nodes {
            lines.push(format!(
                "pool={pool} node={node} lane_requests={} lane_busy={}",
                counts.lane_requests, counts.lane_busy
            ));
        }
    }
    lines
}

/// A tenant label no tenant has: only a view that sees every tenant sees it (the shared rows: pools, nodes).
const ADMIN_VIEW: &str = "\0admin view";

/// `RKPROXY BIGKEYS` lines: per tenant, biggest first (by count, then size).
pub fn big_key_lines(keys: &[BigKey]) -> Vec<String> {
    keys.iter()
        .map(|key| {
            format!(
                "tenant={} pool={} key={} command={} side={} count={} max_bytes={}",
                key.tenant,
                key.pool,
                key.key.shown(),
                key.command,
                key.side.label(),
                key.count,
                key.max_bytes
            )
        })
        .collect()
}

/// `RKPROXY HOTKEYS` lines: per tenant, most requested first (an estimate from sampled requests).
pub fn hot_key_lines(keys: &[HotKey]) -> Vec<String> {
    keys.iter()
        .map(|key| {
            format!(
                "tenant={} pool={} key={} requests={}",
                key.item.tenant,
                key.item.pool,
                key.item.key.shown(),
                key.requests
            )
        })
        .collect()
}

/// Errors by kind, bytes and latency, as `key=value` pairs.
fn traffic_fields(traffic: &Traffic) -> String {
    let mut out = format!("errors={}", traffic.errors_total());
    for kind in ErrorKind::ALL {
        let _ = write!(out, " errors_{}={}", kind.label(), traffic.error(kind));
    }
    let _ = write!(
        out,
        " bytes_in={} bytes_out={} {} {}",
        traffic.bytes_in,
        traffic.bytes_out,
        latency_fields("", &traffic.latency),
        latency_fields("backend_", &traffic.backend)
    );
    out
}

/// A histogram's count, mean and p50/p99 bucket bounds, each key after `prefix` (time in the proxy: no
/// prefix; time at the backend: `backend_`).
fn latency_fields(prefix: &str, latency: &Histogram) -> String {
    let quantile = |q| {
        latency
            .quantile_upper_us(q)
            .map_or_else(|| "-".to_owned(), |us| us.to_string())
    };
    format!(
        "{prefix}timed={} {prefix}mean_us={} {prefix}p50_le_us={} {prefix}p99_le_us={}",
        latency.count(),
        latency.mean_us(),
        quantile(0.5),
        quantile(0.99)
    )
}

/// INFO's `# Proxy` section (lines end in CRLF): version, uptime, clients, totals, and one line per pool.
pub fn info_section(
    snapshot: &WorkerStats,
    facts: &Facts,
    uptime_seconds: u64,
    visible_tenant: Option<&str>,
) -> String {
    let visible = |tenant: &str| visible_tenant.is_none_or(|mine| mine == tenant);
    let mut calls = 0;
    let mut total = Traffic::default();
    for (_, (tenant_calls, traffic)) in traffic_by_tenant(snapshot, &visible) {
        calls += tenant_calls;
        total.merge(&traffic);
    }
    let clients: usize = facts
        .connections
        .iter()
        .filter(|(tenant, _)| visible(tenant))
        .map(|(_, n)| n)
        .sum();
    let mut out = format!(
        "# Proxy\r\nrkproxy_version:{}\r\nuptime_in_seconds:{uptime_seconds}\r\nconnected_clients:{clients}\r\n\
         total_commands:{calls}\r\ntotal_errors:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        total.errors_total()
    );
    for kind in ErrorKind::ALL {
        let _ = write!(
            out,
            "total_errors_{}:{}\r\n",
            kind.label(),
            total.error(kind)
        );
    }
    let _ = write!(
        out,
        "total_bytes_in:{}\r\ntotal_bytes_out:{}\r\n",
        total.bytes_in, total.bytes_out
    );
    for pool in &facts.pools {
        let _ = write!(
            out,
            "pool_{}:kind={},state={},nodes={}\r\n",
            pool.name,
            pool.kind,
            pool.state,
            pool.nodes.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{CommandCounts, WorkerStats};
    use super::*;

    fn snapshot() -> WorkerStats {
        let mut stats = WorkerStats::default();
        for (tenant, calls) in [("a", 3), ("b", 5)] {
            stats.commands.insert(
                (Arc::from("main"), Arc::from(tenant), "get"),
                CommandCounts {
                    calls,
                    bytes_in: calls * 10,
                    ..CommandCounts::default()
                },
            );
            let mut traffic = Traffic::default();
            traffic.errors[0] = 1;
            traffic.bytes_in = calls * 10;
            stats
                .traffic
                .insert((Arc::from("main"), Arc::from(tenant)), traffic);
        }
        stats
    }

    #[test]
    fn a_tenant_sees_only_its_own_rows() {
        let facts = Facts::default();
        let all = stats_lines(Section::Tenants, &snapshot(), &facts, None);
        assert_eq!(all.len(), 2);
        let mine = stats_lines(Section::Commands, &snapshot(), &facts, Some("b"));
        assert_eq!(
            mine,
            ["tenant=b pool=main command=get calls=5 bytes_in=50 timed=0 mean_us=0 p50_le_us=- p99_le_us=-"]
        );
        let info = info_section(&snapshot(), &facts, 7, Some("a"));
        assert!(info.contains("total_commands:3\r\n"), "{info}");
        assert!(info.contains("total_errors_refused:1\r\n"), "{info}");
    }
}
