//! Where a backend node is and how to log in to it.

use std::sync::Arc;
use std::time::Duration;

use crate::tls::BackendTls;

/// How to reach and log in to one backend node.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port`.
    pub address: Arc<str>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Database selected after connecting (standalone pools).
    pub db: u32,
    /// Speak RESP3 (`HELLO 3`) on this connection.
    pub resp3: bool,
    /// Send `READONLY` after connecting, so a cluster replica serves reads.
    pub readonly: bool,
    pub connect_timeout: Duration,
    /// How long a shared connection that owes replies may go without progress (`timeouts.command_ms`).
    pub command_timeout: Duration,
    /// The same while a [`Patience::Slow`] request is owed a reply (`timeouts.slow_command_ms`).
    pub slow_command_timeout: Duration,
    /// Pools with `tls = true`: how the connection is encrypted.
    pub tls: Option<Arc<BackendTls>>,
}

/// No password in `Debug`.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("resp3", &self.resp3)
            .field("readonly", &self.readonly)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("slow_command_timeout", &self.slow_command_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Endpoint {
    /// A node of a pool: its credentials, timeouts and TLS settings (whose files are read here), db 0, RESP2,
    /// no READONLY.
    pub fn for_pool(
        address: &str,
        config: &crate::config::RedisPoolConfig,
        timeouts: &crate::config::Timeouts,
    ) -> Result<Endpoint, crate::tls::PoolTlsError> {
        let tls = BackendTls::for_pool(config)?;
        if let Some(tls) = &tls {
            tls.warn_of_client_certificate_expiry();
        }
        Ok(Endpoint {
            address: Arc::from(address),
            username: config.username.clone(),
            password: config.password.clone(),
            db: 0,
            resp3: false,
            readonly: false,
            connect_timeout: Duration::from_millis(timeouts.connect_ms),
            command_timeout: Duration::from_millis(timeouts.command_ms),
            slow_command_timeout: Duration::from_millis(timeouts.slow_command_ms),
            tls,
        })
    }
}
