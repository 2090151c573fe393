//! The CLIENT subcommands that describe connections: CLIENT INFO and LIST (this connection's line from its
//! live state, the others' from the client table), KILL, SETINFO, TRACKING and its friends, NO-EVICT.

use bytes::Bytes;
use resp_codec::{Frame, Request};

use crate::introspection::{is_valid_client_attribute, ClientLine};
use crate::reply;
use crate::session::errors::{CommandError, ErrorReply, Unsupported};
use crate::session::Session;
use crate::stats::clients::{parse_kill, ClientView, KillError, KillFilter, KillRequest};

impl Session {
    /// CLIENT SETINFO LIB-NAME|LIB-VER value, as Redis 7.2 answers it.
    pub(super) fn client_setinfo(&mut self, request: &Request) -> Bytes {
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
    pub(super) fn client_line(&self, cmd: &str, request: &Request) -> String {
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
            addr: self.peer_text(),
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
            output_memory: self.gathered.len() + self.output.len(),
            total_memory: std::mem::size_of::<Session>()
                + self.read_buffer.capacity()
                + self.gathered.buffer.capacity(),
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
    pub(super) fn client_kill(&self, request: &Request) -> Bytes {
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
    pub(super) fn client_list(&self, request: &Request) -> Bytes {
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
    pub(super) fn client_no_evict(request: &Request) -> Bytes {
        match request.arg(2).unwrap_or_default() {
            mode if mode.eq_ignore_ascii_case(b"off") => reply::ok(),
            mode if mode.eq_ignore_ascii_case(b"on") => Unsupported::NoEvict.to_reply(),
            _ => CommandError::Syntax.to_reply(),
        }
    }

    /// CLIENT TRACKING ON|OFF [options]: OFF is acknowledged (no client tracks through the proxy).
    pub(super) fn client_tracking(request: &Request) -> Bytes {
        match request.arg(2).unwrap_or_default() {
            mode if mode.eq_ignore_ascii_case(b"off") => reply::ok(),
            mode if mode.eq_ignore_ascii_case(b"on") => Unsupported::Tracking.to_reply(),
            _ => CommandError::Syntax.to_reply(),
        }
    }

    /// CLIENT TRACKINGINFO of a client that does not track, as Redis gives it.
    pub(super) fn tracking_info(&self) -> Bytes {
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
