//! `GET /metrics`: the proxy's counts in the Prometheus text format (version 0.0.4), on `metrics_listen`.
//!
//! The exposition format is prometheus-client's; the HTTP side is a deliberately tiny HTTP/1.0 responder (read
//! one request head, answer, close), since a scraper needs nothing more. Each scrape merges the workers' counts
//! ([`Stats::snapshot`](crate::stats::Stats::snapshot)) and probes the backend nodes for `rkproxy_backend_up`,
//! so nothing is computed between scrapes.
//!
//! Series (labels in braces):
//! - `rkproxy_commands_total{pool,tenant,command}`, `rkproxy_command_bytes_total{pool,tenant,command}`
//! - `rkproxy_command_duration_seconds{pool,tenant}` (histogram: time in the proxy, from the read of a request
//!   until its reply is handed to the client's socket)
//! - `rkproxy_per_command_duration_seconds{pool,tenant,command}` (histogram: the same time in the proxy, per
//!   command; each request of a pipelined batch gets the batch's time)
//! - `rkproxy_backend_duration_seconds{pool,node}` (histogram: the backend round trip, from dispatch to the node
//!   until the reply is in the proxy)
//! - `rkproxy_errors_total{pool,tenant,kind}` (kind: refused, backend, timeout, limit)
//! - `rkproxy_bytes_total{tenant,direction}` (direction: in, out)
//! - `rkproxy_connected_clients{tenant}`, `rkproxy_backend_up{pool,node}`, `rkproxy_pool_up{pool,kind}`
//! - `rkproxy_node_requests_total{pool,node}`, `rkproxy_node_failures_total{pool,node}`
//! - `rkproxy_kafka_records_total{pool,topic,tenant,op}`, `rkproxy_kafka_bytes_total{pool,topic,tenant,op}`
//!   (op: kpush, kpop)
//! - `rkproxy_hot_key_requests{tenant,pool,key}` (each tenant's 10 most requested keys, estimated from
//!   sampled requests), `rkproxy_big_key_seen{tenant,pool,key}` and `rkproxy_big_key_max_bytes{tenant,pool,key}`
//!   (each tenant's 10 biggest keys: how often a request or reply for it crossed the big-request threshold, and
//!   the largest)
//! - `rkproxy_kafka_consumer_lag{pool,topic,partition,group}` (read from Kafka at scrape time)
//! - `rkproxy_big_lane_requests_total{pool}`, `rkproxy_big_lane_queued_total{pool}`,
//!   `rkproxy_big_lane_busy_total{pool}`, `rkproxy_big_lane_tenant_requests_total{pool,tenant}`,
//!   `rkproxy_big_lane_node_requests_total{pool,node}`, `rkproxy_big_lane_tenant_busy_total{pool,tenant}`,
//!   `rkproxy_big_lane_node_busy_total{pool,node}`
//! - `rkproxy_tls_handshakes_total{result}` (client handshakes on `tls_listen`; result: ok, not_tls, timeout,
//!   failed), `rkproxy_tls_cipher_suites_total{version,cipher_suite}` (the successful ones by what they agreed
//!   on; only suites chosen at least once)
//! - `rkproxy_tls_certificate_expiry_timestamp_seconds{certificate}` (when the `tls_listen` certificate and the
//!   pools' client certificates expire; `certificate` is the configuration key of the file)
//! - `rkproxy_slowlog_length`, `rkproxy_uptime_seconds`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::state::{shutdown_begun, Live, ProxyState};
use crate::stats::keys::{BigKey, HotItem, HotKey, KeptKey};
use crate::stats::report::{Facts, NodeFacts};
use crate::stats::{ErrorKind, Histogram, WorkerStats};
use crate::tls::HandshakeResult;

/// A scraper that sends nothing (or never finishes its request head) is dropped after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys per tenant in the hot-key and big-key series (bounded label sets).
const KEYS_PER_TENANT: usize = 10;
/// The longest request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Why `GET /metrics` could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {listen}: {source}")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error("cannot read the metrics address: {0}")]
    LocalAddr(std::io::Error),
}

/// Binds `metrics_listen` and serves scrapes until the proxy shuts down; returns the bound address.
pub async fn start(live: &Arc<Live>, listen: &str) -> Result<SocketAddr, MetricsError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| MetricsError::Listen {
            listen: listen.to_owned(),
            source,
        })?;
    let local = listener.local_addr().map_err(MetricsError::LocalAddr)?;
    info!(metrics = %local, "serving GET /metrics");
    tokio::spawn(serve(listener, Arc::downgrade(live)));
    Ok(local)
}

/// Accepts scrapers until the shutdown begins or the proxy is gone; each scrape reads the newest state (after a
/// reload, the reloaded one).
async fn serve(listener: TcpListener, live: std::sync::Weak<Live>) {
    let Some(mut shutdown) = live.upgrade().map(|live| live.current().shutdown_signal()) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    warn!(%error, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown_begun(&mut shutdown) => return,
        };
        let Some(state) = live.upgrade().map(|live| live.current()) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &state).await {
                debug!(%error, "metrics request failed");
            }
        });
    }
}

/// Reads one request head and answers it: `GET /metrics` gets the metrics, anything else 404 or 405.
async fn answer(mut stream: TcpStream, state: &ProxyState) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            render(state).await,
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found; try /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request head, up to the blank line (or [`MAX_REQUEST_HEAD`] bytes).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The metrics text: merged counts, facts and node probes, encoded by prometheus-client.
pub async fn render(state: &ProxyState) -> String {
    let mut facts = crate::session::proxy_facts(state);
    facts.nodes = crate::session::probe_nodes(state).await;
    let snapshot = state.stats().snapshot();
    // Boxed: reading lag goes through the Kafka client's futures, a type too deep to nest in the server's.
    facts.lag = Box::pin(crate::session::kafka_lag(state, &snapshot)).await;
    let everyone = |_: &str| true;
    let scrape = Scrape {
        snapshot,
        hot_keys: state.stats().hot_keys(&everyone, KEYS_PER_TENANT),
        big_keys: state.stats().big_keys(&everyone, KEYS_PER_TENANT),
        facts,
        tls_handshakes: state.tls_handshakes().counts(),
        tls_cipher_suites: state.tls_handshakes().suite_counts(),
        certificate_expiry: certificate_expiries(state),
        slowlog_length: state.stats().slowlog().len(|_| true),
        uptime_seconds: state.uptime().as_secs(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        warn!(%error, "metrics could not be encoded");
    }
    text
}

/// The certificates `state`'s proxy presents (the listener's, the pools' client certificates) by their
/// configuration key, with when each expires; those whose date could not be read are left out.
fn certificate_expiries(state: &ProxyState) -> Vec<(String, i64)> {
    let listener = state
        .live()
        .and_then(|live| live.client_tls())
        .and_then(|tls| tls.certificate_expiry())
        .map(|expiry| ("tls.cert_file".to_owned(), expiry));
    let mut pools: Vec<(String, i64)> = state
        .pool_handles()
        .filter_map(|pool| {
            let expiry = pool.client_certificate_expiry()?;
            Some((format!("pools.{}.cert_file", pool.name()), expiry))
        })
        .collect();
    pools.sort();
    listener.into_iter().chain(pools).collect()
}

/// One scrape's data, encoded by [`Collector::encode`].
#[derive(Debug)]
struct Scrape {
    snapshot: WorkerStats,
    hot_keys: Vec<HotKey>,
    big_keys: Vec<BigKey>,
    facts: Facts,
    tls_handshakes: Vec<(HandshakeResult, u64)>,
    /// Successful client handshakes by TLS version and cipher suite.
    tls_cipher_suites: Vec<(&'static str, String, u64)>,
    /// The certificates the proxy presents, by their configuration key, with when each expires.
    certificate_expiry: Vec<(String, i64)>,
    slowlog_length: usize,
    uptime_seconds: u64,
}

type Labels = Vec<(&'static str, String)>;

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_commands(&mut encoder)?;
        self.encode_traffic(&mut encoder)?;
        self.encode_clients_and_backends(&mut encoder)?;
        self.encode_kafka(&mut encoder)?;
        self.encode_keys(&mut encoder)?;
        self.encode_lanes(&mut encoder)?;
        let handshakes = self
            .tls_handshakes
            .iter()
            .map(|(result, count)| (vec![("result", result.label().to_owned())], *count))
            .collect();
        counter(
            &mut encoder,
            "rkproxy_tls_handshakes",
            "Client TLS handshakes on tls_listen by result (ok, not_tls, timeout, failed).",
            handshakes,
        )?;
        if !self.tls_cipher_suites.is_empty() {
            let suites = self
                .tls_cipher_suites
                .iter()
                .map(|(version, suite, count)| {
                    let labels = vec![
                        ("version", (*version).to_owned()),
                        ("cipher_suite", suite.clone()),
                    ];
                    (labels, *count)
                })
                .collect();
            counter(
                &mut encoder,
                "rkproxy_tls_cipher_suites",
                "Successful client TLS handshakes on tls_listen by TLS version and cipher suite (IANA name).",
                suites,
            )?;
        }
        if !self.certificate_expiry.is_empty() {
            let expiries = self
                .certificate_expiry
                .iter()
                .map(|(key, expiry)| (vec![("certificate", key.clone())], *expiry))
                .collect();
            gauge(
                &mut encoder,
                "rkproxy_tls_certificate_expiry_timestamp_seconds",
                "When each certificate the proxy presents expires, in seconds since 1970: the tls_listen \
                 certificate (tls.cert_file) and the pools' client certificates (pools.NAME.cert_file).",
                expiries,
            )?;
        }
        gauge(
            &mut encoder,
            "rkproxy_slowlog_length",
            "Entries in the proxy's slow log.",
            vec![(Vec::new(), self.slowlog_length as i64)],
        )?;
        gauge(
            &mut encoder,
            "rkproxy_uptime_seconds",
            "Seconds since the proxy started.",
            vec![(
                Vec::new(),
                i64::try_from(self.uptime_seconds).unwrap_or(i64::MAX),
            )],
        )
    }
}

impl Scrape {
    fn encode_commands(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut calls = Vec::new();
        let mut bytes = Vec::new();
        for ((pool, tenant, command), counts) in sorted(&self.snapshot.commands) {
            let labels: Labels = vec![
                ("pool", pool.to_string()),
                ("tenant", tenant.to_string()),
                ("command", (*command).to_owned()),
            ];
            calls.push((labels.clone(), counts.calls));
            bytes.push((labels, counts.bytes_in));
        }
        counter(
            encoder,
            "rkproxy_commands",
            "Requests by pool, tenant and command (unknown: not in the command table).",
            calls,
        )?;
        counter(
            encoder,
            "rkproxy_command_bytes",
            "Request bytes by pool, tenant and command.",
            bytes,
        )?;
        let rows = sorted(&self.snapshot.commands)
            .into_iter()
            .filter(|(_, counts)| !counts.latency.is_empty())
            .map(|((pool, tenant, command), counts)| {
                let labels: Labels = vec![
                    ("pool", pool.to_string()),
                    ("tenant", tenant.to_string()),
                    ("command", (*command).to_owned()),
                ];
                (labels, &counts.latency)
            });
        histogram(
            encoder,
            "rkproxy_per_command_duration_seconds",
            "Time in the proxy per command: from the read of a request until its reply is handed to the client's \
             socket (a pipelined batch's time for each of its requests).",
            rows,
        )
    }

    fn encode_traffic(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let traffic = sorted(&self.snapshot.traffic);
        let mut errors = Vec::new();
        let mut by_tenant: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for ((pool, tenant), counts) in &traffic {
            for kind in ErrorKind::ALL {
                let labels: Labels = vec![
                    ("pool", pool.to_string()),
                    ("tenant", tenant.to_string()),
                    ("kind", kind.label().to_owned()),
                ];
                errors.push((labels, counts.error(kind)));
            }
            let tenant_bytes = by_tenant.entry(tenant.to_string()).or_default();
            tenant_bytes.0 += counts.bytes_in;
            tenant_bytes.1 += counts.bytes_out;
        }
        counter(
            encoder,
            "rkproxy_errors",
            "Failed requests by pool, tenant and kind (refused, backend, timeout, limit).",
            errors,
        )?;
        let mut bytes = Vec::new();
        for (tenant, (bytes_in, bytes_out)) in by_tenant {
            bytes.push((
                vec![("tenant", tenant.clone()), ("direction", "in".to_owned())],
                bytes_in,
            ));
            bytes.push((
                vec![("tenant", tenant), ("direction", "out".to_owned())],
                bytes_out,
            ));
        }
        counter(
            encoder,
            "rkproxy_bytes",
            "Client bytes by tenant and direction (in: requests, out: replies).",
            bytes,
        )?;
        let rows = traffic.iter().map(|((pool, tenant), counts)| {
            let labels: Labels = vec![("pool", pool.to_string()), ("tenant", tenant.to_string())];
            (labels, &counts.latency)
        });
        histogram(
            encoder,
            "rkproxy_command_duration_seconds",
            "Time in the proxy: from the read of a request until its reply is handed to the client's socket.",
            rows,
        )
    }

    fn encode_clients_and_backends(
        &self,
        encoder: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let clients = self
            .facts
            .connections
            .iter()
            .map(|(tenant, n)| (vec![("tenant", tenant.clone())], *n as i64))
            .collect();
        gauge(
            encoder,
            "rkproxy_connected_clients",
            "Open client connections by tenant.",
            clients,
        )?;
        let nodes = self
            .facts
            .nodes
            .iter()
            .map(|NodeFacts { pool, node, up }| {
                (
                    vec![("pool", pool.clone()), ("node", node.clone())],
                    i64::from(*up),
                )
            })
            .collect();
        let mut requests = Vec::new();
        let mut failures = Vec::new();
        for ((pool, node), counts) in sorted(&self.snapshot.nodes) {
            let labels: Labels = vec![("pool", pool.to_string()), ("node", node.to_string())];
            requests.push((labels.clone(), counts.requests));
            failures.push((labels, counts.failures));
        }
        counter(
            encoder,
            "rkproxy_node_requests",
            "Requests answered by each backend node (or failed there).",
            requests,
        )?;
        counter(
            encoder,
            "rkproxy_node_failures",
            "Requests failed by each backend node (unavailable, broken connection, timeout).",
            failures,
        )?;
        let rows = sorted(&self.snapshot.nodes)
            .into_iter()
            .map(|((pool, node), counts)| {
                let labels: Labels = vec![("pool", pool.to_string()), ("node", node.to_string())];
                (labels, &counts.latency)
            });
        histogram(
            encoder,
            "rkproxy_backend_duration_seconds",
            "Backend round trip: from a request's dispatch to the node until its reply is in the proxy.",
            rows,
        )?;
        gauge(
            encoder,
            "rkproxy_backend_up",
            "1 when the node accepted a connection (with the pool's handshake) at scrape time.",
            nodes,
        )?;
        let pools = self
            .facts
            .pools
            .iter()
            .map(|pool| {
                let up = matches!(pool.state.as_str(), "up" | "ok" | "lazy");
                (
                    vec![("pool", pool.name.clone()), ("kind", pool.kind.to_owned())],
                    i64::from(up),
                )
            })
            .collect();
        gauge(
            encoder,
            "rkproxy_pool_up",
            "1 when the pool can serve (cluster: a slot map is known; Kafka: connected).",
            pools,
        )
    }

    fn encode_keys(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = |tenant: &str, pool: &str, key: &KeptKey| -> Labels {
            vec![
                ("tenant", tenant.to_owned()),
                ("pool", pool.to_owned()),
                ("key", key.shown()),
            ]
        };
        let hot = self
            .hot_keys
            .iter()
            .map(|hot| {
                let HotItem { tenant, pool, key } = &hot.item;
                (labels(tenant, pool, key), gauge_value(hot.requests))
            })
            .collect();
        gauge(
            encoder,
            "rkproxy_hot_key_requests",
            "Each tenant's most requested keys: requests estimated from one sampled request in 32.",
            hot,
        )?;
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        for big in &self.big_keys {
            let labels = labels(&big.tenant, &big.pool, &big.key);
            seen.push((labels.clone(), gauge_value(big.count)));
            sizes.push((labels, gauge_value(big.max_bytes)));
        }
        gauge(
            encoder,
            "rkproxy_big_key_seen",
            "Each tenant's biggest keys: requests or replies for the key at or over the big-request threshold.",
            seen,
        )?;
        gauge(
            encoder,
            "rkproxy_big_key_max_bytes",
            "Each tenant's biggest keys: the largest request or reply for the key, in bytes.",
            sizes,
        )
    }

    fn encode_kafka(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut records = Vec::new();
        let mut bytes = Vec::new();
        for ((pool, topic, tenant), counts) in sorted(&self.snapshot.topics) {
            for (op, count, size) in [
                ("kpush", counts.pushes, counts.push_bytes),
                ("kpop", counts.pops, counts.pop_bytes),
            ] {
                let labels: Labels = vec![
                    ("pool", pool.to_string()),
                    ("topic", topic.to_string()),
                    ("tenant", tenant.to_string()),
                    ("op", op.to_owned()),
                ];
                records.push((labels.clone(), count));
                bytes.push((labels, size));
            }
        }
        counter(
            encoder,
            "rkproxy_kafka_records",
            "KPUSH and KPOP commands by pool, topic and tenant.",
            records,
        )?;
        counter(
            encoder,
            "rkproxy_kafka_bytes",
            "KPUSH request bytes and KPOP reply bytes by pool, topic and tenant.",
            bytes,
        )?;
        let lag = self
            .facts
            .lag
            .iter()
            .map(|lag| {
                let labels: Labels = vec![
                    ("pool", lag.pool.clone()),
                    ("topic", lag.topic.clone()),
                    ("partition", lag.partition.to_string()),
                    ("group", lag.group.clone()),
                ];
                (labels, lag.lag)
            })
            .collect();
        gauge(
            encoder,
            "rkproxy_kafka_consumer_lag",
            "Records a consumer group has not taken: high watermark minus the group's cursor, plus records given back.",
            lag,
        )
    }

    fn encode_lanes(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut requests = Vec::new();
        let mut queued = Vec::new();
        let mut busy = Vec::new();
        for lane in &self.facts.lanes {
            let labels: Labels = vec![("pool", lane.pool.clone())];
            requests.push((labels.clone(), lane.requests));
            queued.push((labels.clone(), lane.queued));
            busy.push((labels, lane.busy));
        }
        counter(
            encoder,
            "rkproxy_big_lane_requests",
            "Requests that went to a pool's big-request lanes (sent, or refused as busy).",
            requests,
        )?;
        counter(
            encoder,
            "rkproxy_big_lane_queued",
            "Big-lane requests that waited for a free lane connection.",
            queued,
        )?;
        counter(
            encoder,
            "rkproxy_big_lane_busy",
            "Big-lane requests refused as busy (queue full or waited too long).",
            busy,
        )?;
        let (mut tenant_requests, mut tenant_busy) = (Vec::new(), Vec::new());
        for ((pool, tenant), traffic) in sorted(&self.snapshot.traffic) {
            if traffic.lane_requests > 0 || traffic.lane_busy > 0 {
                let labels: Labels =
                    vec![("pool", pool.to_string()), ("tenant", tenant.to_string())];
                tenant_requests.push((labels.clone(), traffic.lane_requests));
                tenant_busy.push((labels, traffic.lane_busy));
            }
        }
        counter(
            encoder,
            "rkproxy_big_lane_tenant_requests",
            "Requests each tenant sent on the big-request lanes.",
            tenant_requests,
        )?;
        counter(
            encoder,
            "rkproxy_big_lane_tenant_busy",
            "Each tenant's big-lane requests refused as busy.",
            tenant_busy,
        )?;
        let (mut node_requests, mut node_busy) = (Vec::new(), Vec::new());
        for ((pool, node), counts) in sorted(&self.snapshot.nodes) {
            if counts.lane_requests > 0 || counts.lane_busy > 0 {
                let labels: Labels = vec![("pool", pool.to_string()), ("node", node.to_string())];
                node_requests.push((labels.clone(), counts.lane_requests));
                node_busy.push((labels, counts.lane_busy));
            }
        }
        counter(
            encoder,
            "rkproxy_big_lane_node_requests",
            "Requests sent on each node's big-request lane.",
            node_requests,
        )?;
        counter(
            encoder,
            "rkproxy_big_lane_node_busy",
            "Big-lane requests refused as busy, by node.",
            node_busy,
        )
    }
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A histogram family from our fixed-bucket histograms.
fn histogram<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (Labels, &'a Histogram)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, histogram) in rows {
        // prometheus-client adds the +Inf bucket itself from the count.
        let bounded: Vec<(f64, u64)> = histogram
            .cumulative_seconds()
            .into_iter()
            .filter(|(bound, _)| bound.is_finite())
            .collect();
        metric.encode_family(&labels)?.encode_histogram::<Labels>(
            histogram.sum_seconds(),
            histogram.count(),
            &non_cumulative(&bounded),
            None,
        )?;
    }
    Ok(())
}

/// prometheus-client's histogram encoder takes per-bucket counts and accumulates them itself.
fn non_cumulative(cumulative: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut previous = 0;
    cumulative
        .iter()
        .map(|&(bound, total)| {
            let own = total - previous;
            previous = total;
            (bound, own)
        })
        .collect()
}

fn sorted<K: Ord, V>(map: &std::collections::HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut rows: Vec<_> = map.iter().collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    rows
}

/// A counter family (`name` gets `_total`).
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}
