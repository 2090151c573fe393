//! What the proxy says about itself and its backends: the text of its own INFO, CLIENT INFO lines, and the
//! backend's Redis version learned once per pool. Pure functions over text; the session (`session/
//! introspection.rs`) does the I/O.
//!
//! rkproxy presents one standalone-looking Redis server on every kind of pool: HELLO's `mode` and INFO's
//! `redis_mode` are `standalone` on cluster and Kafka pools too, and the version is the backend's (a Kafka
//! pool, which has no Redis server, reports the version of the command table the proxy implements).

use std::sync::{Arc, OnceLock};

/// The version reported for pools without a Redis server (Kafka pools), and while a backend's version is not
/// known yet: the redis-server version whose commands the proxy's command table describes.
pub const TABLE_VERSION: &str = cluster_router::commands::REDIS_VERSION;

/// The `redis_version` of one pool's backend, learned from the first INFO answered and kept for the life of
/// the proxy (a backend upgraded while the proxy runs is reported with its old version until a restart).
#[derive(Debug, Default)]
pub struct BackendVersion(OnceLock<Arc<str>>);

impl BackendVersion {
    /// The version, once learned.
    pub fn get(&self) -> Option<&Arc<str>> {
        self.0.get()
    }

    /// Learns the version from an INFO text that has the server section; returns it.
    pub fn learn(&self, info: &str) -> Option<Arc<str>> {
        let version = info_field(info, "redis_version")?;
        Some(Arc::clone(self.0.get_or_init(|| Arc::from(version))))
    }
}

/// The value of `name:value` in an INFO text.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (field, value) = line.trim_end().split_once(':')?;
        (field == name).then_some(value)
    })
}

/// Rewrites the backend's INFO so that it describes the one standalone server the proxy presents:
/// `redis_mode:cluster` becomes `redis_mode:standalone` and `cluster_enabled:1` becomes `cluster_enabled:0`.
pub fn as_standalone(info: &str) -> String {
    info.split_inclusive('\n')
        .map(|line| match line.trim_end() {
            "redis_mode:cluster" => line.replacen("cluster", "standalone", 1),
            "cluster_enabled:1" => line.replacen('1', "0", 1),
            _ => line.to_owned(),
        })
        .collect()
}

/// INFO sections a client asked for: `None` for all (no argument, `default`, `all`, `everything`), else the
/// lowercase names.
pub fn requested_sections<'a>(args: impl Iterator<Item = &'a [u8]>) -> Option<Vec<String>> {
    let names: Vec<String> = args
        .map(|arg| String::from_utf8_lossy(arg).to_ascii_lowercase())
        .collect();
    let all = names.is_empty()
        || names
            .iter()
            .any(|name| matches!(name.as_str(), "default" | "all" | "everything"));
    (!all).then_some(names)
}

/// What the proxy's own INFO reports.
#[derive(Debug, Clone)]
pub struct ProxyInfo {
    /// The backend's version (see [`BackendVersion`]).
    pub redis_version: String,
    pub process_id: u32,
    pub tcp_port: u16,
    pub uptime_seconds: u64,
    pub connected_clients: usize,
    /// The client's own keyspace line (`db5:keys=1,expires=0,avg_ttl=0`), when it can be known.
    pub keyspace: Option<String>,
    /// The `# Proxy` section (stats; see `stats::report::info_section`).
    pub proxy: Option<String>,
}

/// The proxy's own INFO text: the Server, Clients and Keyspace sections (those asked for), in Redis's format.
pub fn proxy_info(info: &ProxyInfo, sections: Option<&[String]>) -> String {
    let wanted = |name: &str| sections.is_none_or(|names| names.iter().any(|n| n == name));
    let mut parts = Vec::new();
    if wanted("server") {
        parts.push(format!(
            "# Server\r\nredis_version:{}\r\nredis_mode:standalone\r\nrkproxy_version:{}\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\n",
            info.redis_version,
            env!("CARGO_PKG_VERSION"),
            info.process_id,
            info.tcp_port,
            info.uptime_seconds,
            info.uptime_seconds / 86_400
        ));
    }
    if wanted("clients") {
        parts.push(format!(
            "# Clients\r\nconnected_clients:{}\r\n",
            info.connected_clients
        ));
    }
    if wanted("keyspace") {
        let line = info
            .keyspace
            .as_ref()
            .map(|line| format!("{line}\r\n"))
            .unwrap_or_default();
        parts.push(format!("# Keyspace\r\n{line}"));
    }
    if let Some(section) = info.proxy.as_ref().filter(|_| wanted("proxy")) {
        parts.push(section.clone());
    }
    parts.join("\r\n")
}

/// The `db<N>:...` line of an INFO keyspace section.
pub fn keyspace_line(info: &str, db: u32) -> Option<String> {
    let prefix = format!("db{db}:");
    info.lines()
        .map(str::trim_end)
        .find(|line| line.starts_with(&prefix))
        .map(str::to_owned)
}

/// One client's CLIENT INFO / CLIENT LIST line, with every field Redis 7.x gives (7.0's, plus `watch`,
/// `lib-name` and `lib-ver` from later versions), in Redis's order, then the proxy's own: `pool` (the pool the
/// client uses) and `pending` (its requests in flight).
#[derive(Debug, Clone, Default)]
pub struct ClientLine {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub fd: i64,
    pub name: String,
    pub age: u64,
    /// Seconds since the client's latest request.
    pub idle: u64,
    pub db: u32,
    pub query_buffer: usize,
    pub query_buffer_free: usize,
    pub argv_mem: usize,
    pub read_buffer_size: usize,
    pub output_list_length: usize,
    pub output_memory: usize,
    pub total_memory: usize,
    pub cmd: String,
    pub user: String,
    pub resp: u8,
    pub lib_name: String,
    pub lib_ver: String,
    pub pool: String,
    pub pending: usize,
}

impl ClientLine {
    /// The line, ending in `\n` as Redis ends it.
    pub fn render(&self) -> String {
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags=N db={} sub=0 psub=0 ssub=0 multi=-1 \
             watch=0 qbuf={} qbuf-free={} argv-mem={} multi-mem=0 rbs={} rbp={} obl=0 oll={} omem={} \
             tot-mem={} events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={} pool={} pending={}\n",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            self.name,
            self.age,
            self.idle,
            self.db,
            self.query_buffer,
            self.query_buffer_free,
            self.argv_mem,
            self.read_buffer_size,
            self.read_buffer_size,
            self.output_list_length,
            self.output_memory,
            self.total_memory,
            self.cmd,
            self.user,
            self.resp,
            self.lib_name,
            self.lib_ver,
            self.pool,
            self.pending,
        )
    }
}

/// Whether a client name or library attribute may be stored: printable ASCII without spaces, as Redis
/// requires (so that CLIENT LIST stays parseable).
pub fn is_valid_client_attribute(value: &[u8]) -> bool {
    value.iter().all(|b| (b'!'..=b'~').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_is_presented_as_standalone() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\n\r\n# Cluster\r\ncluster_enabled:1\r\n";
        let out = as_standalone(info);
        assert_eq!(info_field(&out, "redis_mode"), Some("standalone"));
        assert_eq!(info_field(&out, "cluster_enabled"), Some("0"));
        assert_eq!(info_field(&out, "redis_version"), Some("7.0.15"));
        assert!(out.ends_with("\r\n"));
    }

    #[test]
    fn the_version_is_learned_once() {
        let version = BackendVersion::default();
        assert!(version.learn("# Keyspace\r\n").is_none());
        assert_eq!(
            version.learn("redis_version:7.2.4\r\n").as_deref(),
            Some("7.2.4")
        );
        assert_eq!(
            version.learn("redis_version:9.9.9\r\n").as_deref(),
            Some("7.2.4")
        );
    }

    #[test]
    fn proxy_info_has_the_sections_asked_for() {
        let info = ProxyInfo {
            redis_version: "7.0.15".into(),
            process_id: 42,
            tcp_port: 7480,
            uptime_seconds: 90_000,
            connected_clients: 3,
            keyspace: Some("db5:keys=1,expires=0,avg_ttl=0".into()),
            proxy: Some("# Proxy\r\ntotal_commands:1\r\n".into()),
        };
        let all = proxy_info(&info, None);
        assert!(all.starts_with("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"));
        assert!(all.contains("uptime_in_days:1\r\n"));
        assert!(all.contains("\r\n\r\n# Clients\r\nconnected_clients:3\r\n"));
        assert!(all.contains("# Keyspace\r\ndb5:keys=1,expires=0,avg_ttl=0\r\n"));
        assert!(all.ends_with("\r\n\r\n# Proxy\r\ntotal_commands:1\r\n"));
        let sections = requested_sections([&b"CLIENTS"[..]].into_iter());
        let clients = proxy_info(&info, sections.as_deref());
        assert_eq!(clients, "# Clients\r\nconnected_clients:3\r\n");
        assert!(requested_sections([&b"everything"[..]].into_iter()).is_none());
        assert!(requested_sections(std::iter::empty()).is_none());
    }

    #[test]
    fn keyspace_lines_are_found_by_db() {
        let info =
            "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb15:keys=1,expires=1,avg_ttl=9\r\n";
        assert_eq!(
            keyspace_line(info, 15).as_deref(),
            Some("db15:keys=1,expires=1,avg_ttl=9")
        );
        assert_eq!(keyspace_line(info, 1), None);
    }

    #[test]
    fn client_lines_have_redis_field_order() {
        let line = ClientLine {
            id: 7,
            cmd: "client|info".into(),
            user: "default".into(),
            resp: 2,
            ..ClientLine::default()
        }
        .render();
        let names: Vec<&str> = line
            .trim_end()
            .split(' ')
            .filter_map(|f| f.split_once('=').map(|(k, _)| k))
            .collect();
        assert_eq!(
            names,
            [
                "id",
                "addr",
                "laddr",
                "fd",
                "name",
                "age",
                "idle",
                "flags",
                "db",
                "sub",
                "psub",
                "ssub",
                "multi",
                "watch",
                "qbuf",
                "qbuf-free",
                "argv-mem",
                "multi-mem",
                "rbs",
                "rbp",
                "obl",
                "oll",
                "omem",
                "tot-mem",
                "events",
                "cmd",
                "user",
                "redir",
                "resp",
                "lib-name",
                "lib-ver",
                "pool",
                "pending"
            ]
        );
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn client_attributes_are_printable_without_spaces() {
        assert!(is_valid_client_attribute(b"redis-py"));
        assert!(is_valid_client_attribute(b""));
        assert!(!is_valid_client_attribute(b"a b"));
        assert!(!is_valid_client_attribute(b"a\nb"));
        assert!(!is_valid_client_attribute("é".as_bytes()));
    }
}
