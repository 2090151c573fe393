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
    #[error("only a standalone pool's node may be a Unix domain socket; write host:port")]
    UnixSocketNotHere,
    #[error(
        "write a Unix domain socket as unix: and its absolute path (unix:/run/redis/redis.sock)"
    )]
    UnixPathNotAbsolute,
}

/// How a standalone pool names a node reached over a Unix domain socket: this prefix, then the socket's absolute
/// path (`unix:/run/redis/redis.sock`).
pub const UNIX_SOCKET_PREFIX: &str = "unix:";

/// Accepts what [`parse_node_address`] accepts, and `unix:/absolute/path` (a Unix domain socket, returned as
/// written).
///
/// ```
/// use rkproxy::config::parse_standalone_node;
///
/// assert_eq!(parse_standalone_node("unix:/run/redis.sock").unwrap(), "unix:/run/redis.sock");
/// assert_eq!(parse_standalone_node("redis://10.0.0.5:6379").unwrap(), "10.0.0.5:6379");
/// assert!(parse_standalone_node("unix:redis.sock").is_err());
/// ```
pub fn parse_standalone_node(node: &str) -> Result<String, AddressError> {
    match node.strip_prefix(UNIX_SOCKET_PREFIX) {
        Some(path) if path.starts_with('/') => Ok(node.to_owned()),
        Some(_) => Err(AddressError::UnixPathNotAbsolute),
        None => parse_node_address(node),
    }
}

/// Whether a node address names a Unix domain socket (see [`UNIX_SOCKET_PREFIX`]).
pub fn is_unix_socket(node: &str) -> bool {
    node.starts_with(UNIX_SOCKET_PREFIX)
}

/// Accepts `host:port` and `redis://host:port`; returns `host:port`.
pub fn parse_node_address(node: &str) -> Result<String, AddressError> {
    if is_unix_socket(node) {
        return Err(AddressError::UnixSocketNotHere);
    }
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
