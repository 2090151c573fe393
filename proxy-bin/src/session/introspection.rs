//! Connection and introspection commands that clients send at connect time or to look at their connection:
//! INFO, CLIENT INFO / LIST / SETINFO, CLIENT TRACKING and friends, CLIENT NO-EVICT, READONLY, HELLO's version,
//! CONFIG, and CLIENT REPLY.
//!
//! - INFO: admin tenants (and every client when no tenants are configured) get the backend's INFO (every
//!   master's, merged, on a cluster pool); other tenants, and Kafka pools, get the proxy's own: Server (the
//!   backend's version, `redis_mode:standalone`, rkproxy's version, process id, port, uptime), Clients, and the
//!   tenant's own keyspace line where it can be known (no key prefix: the db it works in).
//! - The backend's version is learned from the first INFO or HELLO and kept per pool (`ProxyState`).
//! - CLIENT INFO / LIST describe the client's connection to the proxy, with every field Redis gives.
//! - CLIENT TRACKING ON is refused with the reason: invalidations would go to a shared backend connection and
//!   never reach the client.
//! - CONFIG (admins only; tenant-policy refuses it to others): forwarded on a standalone pool, sent to every
//!   node of a cluster pool (an error names the node).
//! - CLIENT REPLY OFF / SKIP: in shared mode the proxy drops the client's replies itself (see [`ReplyFilter`]);
//!   the backend connections never see the command.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::CommandSpec;
use cluster_router::merge::merge_info;
use resp_codec::{encode_command, parse_frame, split_replies, Frame, Limits, Request};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::errors::{ClusterError, CommandError, ErrorReply, ReplyError, Unsupported};
use super::pending::{Expect, Pending};
use super::Session;
use crate::backend::BackendReply;
use crate::introspection::{
    as_standalone, is_valid_client_attribute, keyspace_line, proxy_info, requested_sections,
    ClientLine, ProxyInfo, TABLE_VERSION,
};
use crate::pools::PoolHandle;
use crate::reply;
use crate::stats::clients::{parse_kill, ClientView, KillError, KillFilter, KillRequest};

/// What the proxy keeps about the client's connection beyond the protocol state: when it started, the
/// library it named (CLIENT SETINFO), and its CLIENT REPLY mode.
pub(super) struct ClientState {
    started: Instant,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    /// Set while some replies are being dropped (CLIENT REPLY OFF or SKIP).
    pub(super) reply_filter: Option<ReplyFilter>,
}

impl ClientState {
    pub(super) fn new() -> ClientState {
        ClientState {
            started: Instant::now(),
            lib_name: None,
            lib_ver: None,
            reply_filter: None,
        }
    }
}

/// CLIENT REPLY's modes, as Redis has them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ReplyMode {
    On,
    Off,
    /// The next command's reply is dropped.
    SkipNext,
}

/// Drops the replies of a client that asked for none (CLIENT REPLY OFF, or SKIP for one command).
///
/// Every request framed in shared mode gets exactly one reply, in order. While the filter is on, each framed
/// request records whether its reply is dropped (decided when it is framed, in request order, from the mode
/// at that point); before replies are written, they are split and the dropped ones removed. The filter starts
/// after every earlier reply was written (CLIENT REPLY OFF/SKIP waits for them, like SELECT), and ends when
/// replies are on again and every reply it decided on was written. RESP3 pushes are never dropped, as in
/// Redis.
#[derive(Debug)]
pub(super) struct ReplyFilter {
    mode: ReplyMode,
    dropped: VecDeque<bool>,
}

impl ReplyFilter {
    /// Whether the reply of the request being framed now is dropped; moves SKIP on.
    fn decide(&mut self) -> bool {
        let drop = self.mode != ReplyMode::On;
        if self.mode == ReplyMode::SkipNext {
            self.mode = ReplyMode::On;
        }
        self.dropped.push_back(drop);
        drop
    }
}

/// Whether `request` is `CLIENT REPLY <mode>` (cheap: only requests named CLIENT look further).
fn is_client_reply(request: &Request) -> bool {
    request.argc() == 3
        && request.name().eq_ignore_ascii_case(b"client")
        && request
            .arg(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"reply"))
}

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
    pub(super) fn info(&mut self, spec: &'static CommandSpec, request: Request) {
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
    fn proxy_info_now(&mut self, request: &Request) -> Bytes {
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
    pub(super) fn hello_reply(&mut self) -> Pending {
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
    pub(super) fn hello_reply_now(&self) -> Bytes {
        let version = self
            .known_version()
            .unwrap_or_else(|| Arc::from(TABLE_VERSION));
        reply::hello(self.id, self.resp3, &version)
    }

    /// CONFIG GET / SET / RESETSTAT / REWRITE in shared mode (the client is an admin, or there are no tenants).
    pub(super) fn config(&mut self, spec: &'static CommandSpec, request: Request) {
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

    /// CLIENT SETINFO LIB-NAME|LIB-VER value, as Redis 7.2 answers it.
    fn client_setinfo(&mut self, request: &Request) -> Bytes {
        let attribute = request.arg(2).unwrap_or_default();
        let value = request.arg(3).unwrap_or_default();
        let shown = String::from_utf8_lossy(attribute).into_owned();
        let slot = if attribute.eq_ignore_ascii_case(b"lib-name") {
            &mut self.client.lib_name
        } else if attribute.eq_ignore_ascii_case(b"lib-ver") {
            &mut self.client.lib_ver
        } else {
            return CommandError::UnrecognizedOption(shown).to_reply();
        };
        if !is_valid_client_attribute(value) {
            return CommandError::AttributeValue(shown).to_reply();
        }
        *slot = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
        reply::ok()
    }

    /// This connection's CLIENT INFO / CLIENT LIST line.
    fn client_line(&self, cmd: &str, request: &Request) -> String {
        let text = |value: &Option<Bytes>| {
            value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let addr = |addr: std::io::Result<std::net::SocketAddr>| {
            addr.map(|a| a.to_string()).unwrap_or_default()
        };
        ClientLine {
            id: self.id,
            addr: addr(self.stream.peer_addr()),
            laddr: addr(self.stream.local_addr()),
            fd: raw_fd(self.stream.tcp()),
            name: text(&self.name),
            age: self.client.started.elapsed().as_secs(),
            db: self.db,
            query_buffer: self.read_buffer.len(),
            query_buffer_free: self.read_buffer.capacity() - self.read_buffer.len(),
            argv_mem: request.args().map(<[u8]>::len).sum(),
            read_buffer_size: self.read_buffer.capacity(),
            output_list_length: self.pending.len(),
            output_memory: self.write_buffer.len() + self.output.len(),
            total_memory: std::mem::size_of::<Session>()
                + self.read_buffer.capacity()
                + self.write_buffer.capacity(),
            cmd: cmd.to_owned(),
            user: self
                .tenant()
                .map_or_else(|| "default".to_owned(), |t| t.name().to_owned()),
            resp: if self.resp3 { 3 } else { 2 },
            lib_name: text(&self.client.lib_name),
            lib_ver: text(&self.client.lib_ver),
            pool: self.pool.name().to_owned(),
            pending: self.pending.in_flight_requests(),
            ..ClientLine::default()
        }
        .render()
    }

    /// Another session's CLIENT LIST line, from the client table (fields only a session itself knows, such as
    /// its buffers, are 0).
    fn listed_client_line(client: &ClientView) -> String {
        let name = client
            .name
            .as_ref()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .unwrap_or_default();
        ClientLine {
            id: client.id,
            addr: client.addr.clone(),
            laddr: client.laddr.clone(),
            fd: client.fd,
            name,
            age: client.age_seconds,
            idle: client.idle_seconds,
            db: client.db,
            output_memory: client.output_bytes,
            cmd: client.last_command.to_owned(),
            user: client.tenant.to_string(),
            resp: if client.resp3 { 3 } else { 2 },
            pool: client.pool.to_string(),
            pending: client.pending,
            ..ClientLine::default()
        }
        .render()
    }

    /// The client table as this client may see it: every session for admins (and when no tenants are
    /// configured), the tenant's own sessions otherwise.
    fn visible_clients(&self) -> Vec<ClientView> {
        let mine = self.visible_tenant();
        let visible = |tenant: &str| mine.as_deref().is_none_or(|mine| mine == tenant);
        self.state.stats().clients(&visible)
    }

    /// CLIENT KILL addr | CLIENT KILL [ID id] [ADDR addr] [LADDR addr] [USER user] [TYPE type] [SKIPME yes|no]
    /// [MAXAGE seconds], over the proxy's own sessions (a tenant's own only).
    fn client_kill(&self, request: &Request) -> Bytes {
        let args: Vec<&[u8]> = request.args().skip(2).collect();
        let kill = match parse_kill(&args, self.id) {
            Ok(kill) => kill,
            Err(error) => return reply::error(&error.to_string()),
        };
        let mine = self.visible_tenant();
        let visible = |tenant: &str| mine.as_deref().is_none_or(|mine| mine == tenant);
        let stats = self.state.stats();
        match kill {
            KillRequest::Address(addr) => {
                let filter = KillFilter {
                    addr: Some(addr),
                    ..KillFilter::default()
                };
                match stats.kill_clients(&filter, &visible) {
                    0 => reply::error(&KillError::NoSuchClient.to_string()),
                    _ => reply::ok(),
                }
            }
            KillRequest::Filters(filter) => {
                let killed = stats.kill_clients(&filter, &visible);
                reply::integer(i64::try_from(killed).unwrap_or(i64::MAX))
            }
        }
    }

    /// CLIENT LIST [TYPE type | ID id ...]: the proxy's own sessions that this client may see (see
    /// [`Session::visible_clients`]), this connection's line from its live state, filtered like Redis filters.
    fn client_list(&self, request: &Request) -> Bytes {
        let own_line = self.client_line("client|list", request);
        let option = request.arg(2).unwrap_or_default();
        let mut ids: Option<Vec<u64>> = None;
        let shown = match request.argc() {
            2 => true,
            4 if option.eq_ignore_ascii_case(b"type") => {
                let kind = request.arg(3).unwrap_or_default();
                let kind_text = String::from_utf8_lossy(kind).to_ascii_lowercase();
                match kind_text.as_str() {
                    "normal" => true,
                    "master" | "replica" | "slave" | "pubsub" => false,
                    _ => {
                        let kind = String::from_utf8_lossy(kind).into_owned();
                        return CommandError::UnknownClientType(kind).to_reply();
                    }
                }
            }
            argc if argc > 3 && option.eq_ignore_ascii_case(b"id") => {
                let mut wanted = Vec::new();
                for id in request.args().skip(3) {
                    match std::str::from_utf8(id)
                        .ok()
                        .and_then(|id| id.parse::<i64>().ok())
                    {
                        Some(id) if id >= 1 => wanted.push(id as u64),
                        _ => return CommandError::InvalidClientId.to_reply(),
                    }
                }
                ids = Some(wanted);
                true
            }
            _ => return CommandError::Syntax.to_reply(),
        };
        let mut lines: Vec<(u64, String)> = Vec::new();
        if shown {
            let wanted = |id: u64| ids.as_ref().is_none_or(|ids| ids.contains(&id));
            for client in self.visible_clients() {
                if client.id != self.id && wanted(client.id) {
                    lines.push((client.id, Self::listed_client_line(&client)));
                }
            }
            if wanted(self.id) {
                lines.push((self.id, own_line));
            }
        }
        lines.sort_by_key(|(id, _)| *id);
        let text: String = lines.into_iter().map(|(_, line)| line).collect();
        reply::text(&text, self.resp3)
    }

    /// CLIENT NO-EVICT ON|OFF: OFF is what every client of the proxy has; ON cannot be given (see the text).
    fn client_no_evict(request: &Request) -> Bytes {
        match request.arg(2).unwrap_or_default() {
            mode if mode.eq_ignore_ascii_case(b"off") => reply::ok(),
            mode if mode.eq_ignore_ascii_case(b"on") => Unsupported::NoEvict.to_reply(),
            _ => CommandError::Syntax.to_reply(),
        }
    }

    /// CLIENT TRACKING ON|OFF [options]: OFF is acknowledged (no client tracks through the proxy).
    fn client_tracking(request: &Request) -> Bytes {
        match request.arg(2).unwrap_or_default() {
            mode if mode.eq_ignore_ascii_case(b"off") => reply::ok(),
            mode if mode.eq_ignore_ascii_case(b"on") => Unsupported::Tracking.to_reply(),
            _ => CommandError::Syntax.to_reply(),
        }
    }

    /// CLIENT TRACKINGINFO of a client that does not track, as Redis gives it.
    fn tracking_info(&self) -> Bytes {
        let text = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        let fields = vec![
            (text("flags"), Frame::Array(vec![text("off")])),
            (text("redirect"), Frame::Integer(-1)),
            (text("prefixes"), Frame::Array(Vec::new())),
        ];
        if self.resp3 {
            Frame::Map(fields).to_bytes()
        } else {
            Frame::Array(fields.into_iter().flat_map(|(k, v)| [k, v]).collect()).to_bytes()
        }
    }

    /// The introspection commands answered from session state, in shared and dedicated mode. `None`: not one
    /// of them.
    pub(super) fn answer_introspection(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
    ) -> Option<Bytes> {
        Some(match spec.name {
            "client|setinfo" => self.client_setinfo(request),
            "client|info" => reply::text(&self.client_line("client|info", request), self.resp3),
            "client|list" => self.client_list(request),
            "client|kill" => self.client_kill(request),
            "client|tracking" => Self::client_tracking(request),
            "client|caching" => CommandError::CachingWithoutTracking.to_reply(),
            "client|getredir" => reply::integer(-1),
            "client|trackinginfo" => self.tracking_info(),
            "client|no-evict" => Self::client_no_evict(request),
            // Dedicated mode (shared mode handles CLIENT REPLY before this).
            "client|reply" => match request.arg(2).unwrap_or_default() {
                mode if mode.eq_ignore_ascii_case(b"on") => reply::ok(),
                mode if mode.eq_ignore_ascii_case(b"off") || mode.eq_ignore_ascii_case(b"skip") => {
                    Unsupported::ReplyOffDedicated.to_reply()
                }
                _ => CommandError::Syntax.to_reply(),
            },
            // The proxy routes replica reads and follows ASK itself; a standalone pool answers as a Redis
            // without cluster support does.
            "readonly" | "readwrite" | "asking" => match self.pool {
                PoolHandle::Cluster(_) => reply::ok(),
                _ => CommandError::NoCluster.to_reply(),
            },
            // Dedicated mode, non-admins (admins' INFO goes to the backend).
            "info" => self.proxy_info_now(request),
            _ => return None,
        })
    }

    /// In dedicated mode: whether the backend connection itself answers this local command (INFO and CONFIG for
    /// admins, or when no tenants are configured).
    pub(super) fn backend_answers_on_dedicated(&self, spec: &CommandSpec) -> bool {
        spec.name.starts_with("config|")
            || (spec.name == "info" && self.tenant().is_none_or(|tenant| tenant.is_admin()))
    }

    // === CLIENT REPLY ===

    /// CLIENT REPLY in shared mode while no filter runs (every earlier reply was written: it waits like
    /// SELECT). OFF and SKIP start the filter and have no reply.
    pub(super) fn client_reply(&mut self, request: &Request) {
        let mode = request.arg(2).unwrap_or_default();
        let start = |mode| ReplyFilter {
            mode,
            dropped: VecDeque::new(),
        };
        if mode.eq_ignore_ascii_case(b"on") {
            self.pending.push_back(Pending::Ready(reply::ok()));
        } else if mode.eq_ignore_ascii_case(b"off") {
            self.client.reply_filter = Some(start(ReplyMode::Off));
        } else if mode.eq_ignore_ascii_case(b"skip") {
            self.client.reply_filter = Some(start(ReplyMode::SkipNext));
        } else {
            self.pending
                .push_back(Pending::Ready(CommandError::Syntax.to_reply()));
        }
    }

    /// While the filter runs, called for every request framed in shared mode, before it is handled: records
    /// whether its reply is dropped, and handles CLIENT REPLY itself. Returns true when the request was
    /// consumed here.
    pub(super) fn screen_for_reply_mode(&mut self, request: &Request) -> bool {
        let Some(filter) = self.client.reply_filter.as_mut() else {
            return false;
        };
        if request.argc() == 1 && request.name().eq_ignore_ascii_case(b"reset") {
            // RESET turns replies on, and its own reply is sent.
            filter.mode = ReplyMode::On;
        }
        if !is_client_reply(request) {
            filter.decide();
            return false;
        }
        let mode = request.arg(2).unwrap_or_default();
        let reply = if mode.eq_ignore_ascii_case(b"on") {
            filter.mode = ReplyMode::On;
            filter.dropped.push_back(false);
            reply::ok()
        } else if mode.eq_ignore_ascii_case(b"off") {
            filter.mode = ReplyMode::Off;
            return true;
        } else if mode.eq_ignore_ascii_case(b"skip") {
            if filter.mode == ReplyMode::On {
                filter.mode = ReplyMode::SkipNext;
            }
            return true;
        } else {
            filter.decide();
            CommandError::Syntax.to_reply()
        };
        // Earlier batched requests go first, so replies keep request order.
        self.flush_batch();
        self.pending.push_back(Pending::Ready(reply));
        true
    }

    /// Removes dropped replies from the write buffer (a no-op without a filter).
    pub(super) fn filter_replies(&mut self) {
        let Some(filter) = self.client.reply_filter.as_mut() else {
            return;
        };
        if !self.write_buffer.is_empty() {
            let written = self.write_buffer.split().freeze();
            let limits = Limits {
                max_bulk_len: usize::MAX,
                max_array_len: usize::MAX,
                max_depth: usize::MAX,
                ..Limits::default()
            };
            match split_replies(&written, &limits) {
                Ok(replies) => {
                    for one in replies {
                        let push = one.first() == Some(&b'>');
                        if push || !filter.dropped.pop_front().unwrap_or(false) {
                            self.write_buffer.extend_from_slice(&one);
                        }
                    }
                }
                // Cannot happen for replies the proxy framed itself; pass them on rather than lose them.
                Err(_) => self.write_buffer.extend_from_slice(&written),
            }
        }
        if filter.mode == ReplyMode::On && filter.dropped.is_empty() {
            self.client.reply_filter = None;
        }
    }

    /// The client moves to a dedicated connection (every earlier reply was written): replies come back on
    /// there, since a dedicated connection's replies are not filtered.
    pub(super) fn reply_filter_leaves_shared_mode(&mut self) {
        self.client.reply_filter = None;
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

#[cfg(unix)]
fn raw_fd(stream: &tokio::net::TcpStream) -> i64 {
    use std::os::fd::AsRawFd;
    i64::from(stream.as_raw_fd())
}

#[cfg(not(unix))]
fn raw_fd(_stream: &tokio::net::TcpStream) -> i64 {
    -1
}
