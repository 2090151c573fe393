//! INFO, HELLO's backend version and CONFIG: the answers that may need the backend (every master's INFO,
//! merged, on a cluster pool; every node's CONFIG) or come from the proxy's own facts.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::CommandSpec;
use cluster_router::merge::merge_info;
use resp_codec::{encode_command, parse_frame, Frame, Limits, Request};
use tokio::sync::oneshot;

use crate::backend::BackendReply;
use crate::introspection::{
    as_standalone, keyspace_line, proxy_info, requested_sections, ProxyInfo, TABLE_VERSION,
};
use crate::pools::PoolHandle;
use crate::reply;
use crate::session::errors::{ClusterError, ErrorReply, ReplyError, Unsupported};
use crate::session::pending::{Expect, Pending};
use crate::session::Session;

/// The text of an INFO reply (bulk or verbatim).
fn reply_text(bytes: &[u8]) -> Option<String> {
    match parse_frame(bytes, &Limits::default()) {
        Ok(Some((Frame::Bulk(text) | Frame::Verbatim { text, .. }, _))) => {
            Some(String::from_utf8_lossy(&text).into_owned())
        }
        _ => None,
    }
}

/// A node's error reply, naming the node (`-ERR ... (cluster node 10.0.0.1:6379)`).
fn node_error(node: &str, reply: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(reply.get(1..).unwrap_or_default());
    reply::error(&format!("{} (cluster node {node})", text.trim_end()))
}

/// Backend replies, one per node (named), that a task gathers before writing the client's reply.
type NodeReplies = Vec<(String, Result<Bytes, Bytes>)>;

/// A pending entry whose reply a task builds with `finish` once every part has answered; the entry keeps its
/// place in the client's reply order.
fn reply_when_answered(
    parts: Vec<(String, oneshot::Receiver<BackendReply>)>,
    finish: impl FnOnce(NodeReplies) -> Bytes + Send + 'static,
) -> Pending {
    let (sender, receiver) = oneshot::channel();
    tokio::spawn(async move {
        let mut replies = Vec::with_capacity(parts.len());
        for (node, part) in parts {
            let reply = match part.await {
                Ok(Ok(bytes)) => Ok(bytes),
                Ok(Err(error)) => Err(error.to_reply()),
                Err(_) => Err(ReplyError::Lost.to_reply()),
            };
            replies.push((node, reply));
        }
        let _ = sender.send(Ok(finish(replies)));
    });
    Pending::Waiting(receiver, Expect::Forward)
}

/// The INFO text of node replies (merged, keyspaces summed, for several masters); `None` if any failed.
fn merged_info(replies: &NodeReplies) -> Option<String> {
    let mut frames = Vec::with_capacity(replies.len());
    for (_, reply) in replies {
        let bytes = reply.as_ref().ok()?;
        frames.push(Frame::Bulk(Bytes::from(reply_text(bytes)?)));
    }
    match merge_info(frames) {
        Frame::Bulk(text) => Some(String::from_utf8_lossy(&text).into_owned()),
        _ => None,
    }
}

impl Session {
    /// Sends `args` to the pool's backend: the session's connection on a standalone pool, every master (or
    /// every node, with `all_nodes`) on a cluster pool. Named by node address. Empty on a Kafka pool or
    /// without a slot map.
    fn ask_backend(
        &mut self,
        args: &Bytes,
        all_nodes: bool,
    ) -> Vec<(String, oneshot::Receiver<BackendReply>)> {
        let (id, worker, resp3) = (self.id, self.worker, self.resp3);
        match self.pool.clone() {
            PoolHandle::Standalone(pool) => match self.standalone_route() {
                Some(route) => vec![(pool.address().to_string(), route.send(args.clone()))],
                None => Vec::new(),
            },
            PoolHandle::Cluster(pool) => {
                let topology = pool.topology();
                let nodes: Vec<_> = if all_nodes {
                    topology.map.nodes().cloned().collect()
                } else {
                    topology.map.masters().to_vec()
                };
                nodes
                    .iter()
                    .map(|node| {
                        let connection = pool.shared_connection(worker, node, id, resp3, false);
                        (node.to_string(), connection.send(args.clone()))
                    })
                    .collect()
            }
            PoolHandle::Kafka(_) => Vec::new(),
        }
    }

    /// The backend version known for this pool (Kafka pools: the command table's).
    fn known_version(&self) -> Option<Arc<str>> {
        if matches!(self.pool, PoolHandle::Kafka(_)) {
            return Some(Arc::from(TABLE_VERSION));
        }
        self.state
            .backend_version(self.pool.name())
            .and_then(|version| version.get().cloned())
    }

    /// The connections INFO counts: the proxy's for admins and without tenants, the tenant's own for others
    /// (the proxy's total would tell a tenant how many connections the other tenants have).
    fn visible_connections(&self) -> usize {
        match self.tenant() {
            Some(tenant) if !tenant.is_admin() => tenant.connection_count(),
            _ => self.state.connected_clients(),
        }
    }

    /// The proxy's INFO facts, before the backend's version and keyspace are filled in.
    fn proxy_info_facts(&mut self) -> ProxyInfo {
        let proxy = Some(self.proxy_section());
        ProxyInfo {
            redis_version: self
                .known_version()
                .map_or_else(|| TABLE_VERSION.to_owned(), |v| v.to_string()),
            process_id: std::process::id(),
            tcp_port: self.stream.local_addr().map_or(0, |addr| addr.port()),
            uptime_seconds: self.state.uptime().as_secs(),
            connected_clients: self.visible_connections(),
            keyspace: None,
            proxy,
        }
    }

    /// INFO in shared mode: the backend's for admins, the proxy's for others (see the module docs); both
    /// with the proxy's `# Proxy` section when asked for (`INFO proxy` alone is the proxy's).
    pub(in crate::session) fn info(&mut self, spec: &'static CommandSpec, request: Request) {
        let admin = self.tenant().is_none_or(|tenant| tenant.is_admin());
        let sections = requested_sections(request.args().skip(1));
        let wants_proxy = sections
            .as_ref()
            .is_none_or(|names| names.iter().any(|name| name == "proxy"));
        if sections
            .as_ref()
            .is_some_and(|names| names.iter().all(|name| name == "proxy"))
        {
            let text = self.proxy_section();
            self.pending
                .push_back(Pending::Ready(reply::text(&text, self.resp3)));
            return;
        }
        let proxy_section = if admin && wants_proxy {
            Some(self.proxy_section())
        } else {
            None
        };
        let entry = match (&self.pool, admin) {
            (PoolHandle::Standalone(_), true) if proxy_section.is_none() => {
                return self.forward(spec, request)
            }
            (PoolHandle::Standalone(_) | PoolHandle::Cluster(_), true) => {
                let parts = self.ask_backend(request.raw(), false);
                if parts.is_empty() {
                    Pending::Ready(self.proxy_info_now(&request))
                } else {
                    let resp3 = self.resp3;
                    let state = Arc::clone(&self.state);
                    let pool = self.pool.name().to_owned();
                    reply_when_answered(parts, move |replies| {
                        if let Some((node, Ok(error))) = replies
                            .iter()
                            .find(|(_, r)| r.as_ref().is_ok_and(|b| b.first() == Some(&b'-')))
                        {
                            return node_error(node, error);
                        }
                        match merged_info(&replies) {
                            Some(text) => {
                                if let Some(version) = state.backend_version(&pool) {
                                    version.learn(&text);
                                }
                                let mut text = as_standalone(&text);
                                if let Some(section) = &proxy_section {
                                    text.push_str("\r\n");
                                    text.push_str(section);
                                }
                                reply::text(&text, resp3)
                            }
                            None => replies
                                .into_iter()
                                .find_map(|(_, reply)| reply.err())
                                .unwrap_or_else(|| ReplyError::Info.to_reply()),
                        }
                    })
                }
            }
            (PoolHandle::Kafka(_), _) => Pending::Ready(self.proxy_info_now(&request)),
            (_, false) => self.tenant_info(&request),
        };
        self.pending.push_back(entry);
    }

    /// The proxy's INFO from what the session knows now (no keyspace): Kafka pools, dedicated mode.
    pub(super) fn proxy_info_now(&mut self, request: &Request) -> Bytes {
        let sections = requested_sections(request.args().skip(1));
        reply::text(
            &proxy_info(&self.proxy_info_facts(), sections.as_deref()),
            self.resp3,
        )
    }

    /// The proxy's INFO for a non-admin tenant, with the backend's version and the tenant's keyspace.
    fn tenant_info(&mut self, request: &Request) -> Pending {
        let mut ask = BytesMut::new();
        encode_command(&mut ask, [&b"INFO"[..], b"server", b"keyspace"]);
        let parts = self.ask_backend(&ask.freeze(), false);
        if parts.is_empty() {
            return Pending::Ready(self.proxy_info_now(request));
        }
        let sections = requested_sections(request.args().skip(1));
        let mut facts = self.proxy_info_facts();
        // The keyspace can be known when the tenant has no key prefix: the db it works in.
        let db = self
            .tenant()
            .is_some_and(|tenant| tenant.key_prefix().is_none())
            .then_some(self.db);
        let (state, pool, resp3) = (
            Arc::clone(&self.state),
            self.pool.name().to_owned(),
            self.resp3,
        );
        reply_when_answered(parts, move |replies| {
            if let Some(text) = merged_info(&replies) {
                let learned = state.backend_version(&pool).and_then(|v| v.learn(&text));
                if let Some(version) = learned {
                    facts.redis_version = version.to_string();
                }
                facts.keyspace = db.and_then(|db| keyspace_line(&text, db));
            }
            reply::text(&proxy_info(&facts, sections.as_deref()), resp3)
        })
    }

    /// The HELLO reply in shared mode, with the backend's version (asked once per pool).
    pub(in crate::session) fn hello_reply(&mut self) -> Pending {
        let (id, resp3) = (self.id, self.resp3);
        if let Some(version) = self.known_version() {
            return Pending::Ready(reply::hello(id, resp3, &version));
        }
        let mut ask = BytesMut::new();
        encode_command(&mut ask, [&b"INFO"[..], b"server"]);
        let mut parts = self.ask_backend(&ask.freeze(), false);
        parts.truncate(1);
        if parts.is_empty() {
            return Pending::Ready(reply::hello(id, resp3, TABLE_VERSION));
        }
        let (state, pool) = (Arc::clone(&self.state), self.pool.name().to_owned());
        reply_when_answered(parts, move |replies| {
            let text = replies
                .first()
                .and_then(|(_, reply)| reply.as_ref().ok())
                .and_then(|bytes| reply_text(bytes));
            // A backend that cannot answer now: the table's version, not remembered.
            let version = text
                .and_then(|text| state.backend_version(&pool)?.learn(&text))
                .unwrap_or_else(|| Arc::from(TABLE_VERSION));
            reply::hello(id, resp3, &version)
        })
    }

    /// The HELLO reply where the session cannot wait for the backend (dedicated mode).
    pub(in crate::session) fn hello_reply_now(&self) -> Bytes {
        let version = self
            .known_version()
            .unwrap_or_else(|| Arc::from(TABLE_VERSION));
        reply::hello(self.id, self.resp3, &version)
    }

    /// CONFIG GET / SET / RESETSTAT / REWRITE in shared mode (the client is an admin, or there are no tenants).
    pub(in crate::session) fn config(&mut self, spec: &'static CommandSpec, request: Request) {
        let entry = match &self.pool {
            PoolHandle::Standalone(_) => return self.forward(spec, request),
            PoolHandle::Kafka(pool) => Pending::Ready(
                Unsupported::ConfigOnKafka {
                    pool: pool.name().to_owned(),
                }
                .to_reply(),
            ),
            PoolHandle::Cluster(_) => {
                let parts = self.ask_backend(request.raw(), true);
                if parts.is_empty() {
                    Pending::Ready(
                        ClusterError::NoSlotMap {
                            pool: self.pool.name().to_owned(),
                        }
                        .to_reply(),
                    )
                } else {
                    let get = spec.name == "config|get";
                    reply_when_answered(parts, move |replies| merge_config(replies, get))
                }
            }
        };
        self.pending.push_back(entry);
    }
}

/// CONFIG replies of every node of a cluster pool: GET gives the first node's reply, SET/RESETSTAT/REWRITE
/// `+OK` when every node said OK; otherwise the first failing node's error, naming it.
fn merge_config(replies: NodeReplies, get: bool) -> Bytes {
    let mut first = None;
    for (node, reply) in replies {
        match reply {
            Ok(bytes) if bytes.first() == Some(&b'-') => return node_error(&node, &bytes),
            Ok(bytes) if !get && bytes.as_ref() != b"+OK\r\n" => {
                return node_error(&node, &ReplyError::Unexpected.to_reply())
            }
            Ok(bytes) => {
                first.get_or_insert(bytes);
            }
            Err(error) => return node_error(&node, &error),
        }
    }
    first.unwrap_or_else(|| ClusterError::NoNodeAnswered.to_reply())
}
