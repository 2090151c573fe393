//! Pieces every kind of pool's settings use: node addresses, and secrets kept out of `Debug` output.

/// What `Debug` shows in place of a password, so a configuration printed for diagnosis leaks no secret.
const REDACTED: &str = "<redacted>";

pub(super) fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| REDACTED)
}

/// Why a node, broker or offset-store address is not `host:port`.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("put credentials in `username`/`password`, not in the address")]
    Credentials,
    #[error("expected host:port")]
    NoPort,
    #[error("the host is empty")]
    EmptyHost,
    #[error("port '{0}' is not a number from 1 to 65535")]
    BadPort(String),
    #[error("port 0 is not allowed")]
    PortZero,
    #[error("write a Kafka broker as host:port, without a scheme")]
    KafkaScheme,
}

/// Accepts `host:port` and `redis://host:port`; returns `host:port`.
pub fn parse_node_address(node: &str) -> Result<String, AddressError> {
    let address = node.strip_prefix("redis://").unwrap_or(node);
    if address.contains('@') {
        return Err(AddressError::Credentials);
    }
    let address = address.trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').ok_or(AddressError::NoPort)?;
    if host.is_empty() {
        return Err(AddressError::EmptyHost);
    }
    match port.parse::<u16>() {
        Ok(0) => return Err(AddressError::PortZero),
        Ok(_) => {}
        Err(_) => return Err(AddressError::BadPort(port.to_owned())),
    }
    Ok(address.to_owned())
}
