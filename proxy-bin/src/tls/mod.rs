//! TLS on both sides, built on rustls (ring provider; no OpenSSL): the certificate clients see on `tls_listen`
//! (`[tls]`, read again at every reload so a rotated certificate is used without a restart), the settings a pool
//! with `tls = true` connects to its Redis nodes with, and the streams sessions and backend connections use.
//!
//! Nothing here is on the plaintext path: a plaintext client is a [`ClientStream::Plain`] and a plaintext
//! backend a [`BackendStream::Plain`], whose methods call the `TcpStream`'s directly.

mod backend_stream;
mod client_stream;
mod socket;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tracing::warn;

use self::backend_stream::TlsBackend;
pub use self::backend_stream::{BackendReader, BackendStream, BackendWriter, ReadNow, WriteNow};
pub use self::client_stream::ClientStream;
use crate::config::{invalid, ClientTlsConfig, Config, ConfigError, RedisPoolConfig};
use crate::subject::Subject;

/// Why TLS settings could not be built. Each text names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {problem}")]
    Certificates { path: String, problem: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("cannot read a private key from {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("CA certificate in {path} rejected: {problem}")]
    BadCa { path: String, problem: String },
    #[error("certificate and key rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("'{0}' is not a DNS name or an IP address")]
    ServerName(String),
}

/// Why a TLS connection to a backend node could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackendTlsError {
    #[error("'{0}' is not a DNS name or IP address to check a TLS certificate against")]
    NodeName(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// The crypto provider every TLS configuration is built with. Named explicitly: a dependency that enables
/// another provider (aws-lc-rs) would otherwise make rustls's process default ambiguous.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(Path::new(path))
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| TlsError::Certificates {
            path: path.to_owned(),
            problem: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(Path::new(path)).map_err(|error| TlsError::Key {
        path: path.to_owned(),
        problem: error.to_string(),
    })
}

fn read_roots(path: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots.add(certificate).map_err(|error| TlsError::BadCa {
            path: path.to_owned(),
            problem: error.to_string(),
        })?;
    }
    Ok(roots)
}

// === the client side: tls_listen ===

/// What the TLS listener hands each new connection: the server configuration read from `[tls]` (read again at
/// every reload) and the handshake deadline.
#[derive(Clone)]
pub struct ClientTls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a client's TLS handshake failed; logged, then the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no TLS handshake within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error(
        "the client sent something that is not TLS (a plaintext client on the TLS port?): {0}"
    )]
    NotTls(std::io::Error),
    #[error("{0}")]
    Failed(std::io::Error),
}

impl ClientTls {
    /// The TLS listener's certificate, read from the files `[tls]` names (at start and at every reload).
    pub fn for_config(config: &Config) -> Result<Option<ClientTls>, ConfigError> {
        match &config.tls {
            Some(tls) => ClientTls::build(tls)
                .map(Some)
                .map_err(|(key, error)| invalid(key, error.to_string())),
            None => Ok(None),
        }
    }

    /// Reads the certificate, key and (for mutual TLS) client CA files named by `[tls]`.
    pub fn build(config: &ClientTlsConfig) -> Result<ClientTls, (&'static str, TlsError)> {
        let certificates =
            read_certificates(&config.cert_file).map_err(|e| ("tls.cert_file", e))?;
        let key = read_key(&config.key_file).map_err(|e| ("tls.key_file", e))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ("tls", e.into()))?;
        let builder = match &config.client_ca_file {
            Some(path) => {
                let roots = read_roots(path).map_err(|e| ("tls.client_ca_file", e))?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| ("tls.client_ca_file", e.into()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let server = builder
            .with_single_cert(certificates, key)
            .map_err(|e| ("tls.key_file", e.into()))?;
        Ok(ClientTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            handshake_timeout: Duration::from_millis(config.handshake_ms),
        })
    }

    /// Runs the server side of the handshake within the deadline. Never waits longer, never panics on what the
    /// client sends: a plaintext client, a client that rejects our certificate or one without the certificate
    /// mutual TLS requires all end here with the reason.
    pub async fn accept(&self, tcp: TcpStream) -> Result<ClientStream, HandshakeError> {
        let handshake = self.acceptor.accept(tcp);
        let stream = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Err(_) => return Err(HandshakeError::Timeout(self.handshake_timeout)),
            Ok(Err(error)) if is_not_tls(&error) => return Err(HandshakeError::NotTls(error)),
            Ok(Err(error)) => return Err(HandshakeError::Failed(error)),
            Ok(Ok(stream)) => stream,
        };
        let (tcp, connection) = stream.into_inner();
        let subject = connection
            .peer_certificates()
            .and_then(<[_]>::first)
            .and_then(|certificate| Subject::of_certificate(certificate));
        Ok(ClientStream::tls(tcp, connection, subject))
    }
}

/// Whether the handshake failed because the first bytes were not a TLS record.
fn is_not_tls(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|error| {
            matches!(
                error,
                rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidContentType
                        | rustls::InvalidMessage::UnknownProtocolVersion
                )
            )
        })
}

/// Logs a failed client handshake (the connection is then dropped, which closes it).
pub fn log_handshake_failure(client: SocketAddr, error: &HandshakeError) {
    warn!(client.addr = %client, %error, "TLS handshake with a client failed; connection closed");
}

// === the backend side: pools with tls = true ===

/// How a pool's connections to its Redis nodes are encrypted: the CA that signs the nodes' certificates, an
/// optional client certificate, and the name checked in the node's certificate (`server_name`, else the host
/// of each node's address, so the nodes of a cluster announced by CLUSTER SLOTS are checked by their IP).
pub struct BackendTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl BackendTls {
    /// The pool's TLS settings, `None` for a plaintext pool. The files are read here, when the pool is built.
    pub fn for_pool(pool: &RedisPoolConfig) -> Result<Option<Arc<BackendTls>>, TlsError> {
        if !pool.tls {
            return Ok(None);
        }
        let Some(ca_file) = &pool.ca_file else {
            // Config::validate requires ca_file with tls = true.
            return Err(TlsError::NoCertificate {
                path: "ca_file (unset)".to_owned(),
            });
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(read_roots(ca_file)?);
        let client = match (&pool.cert_file, &pool.key_file) {
            (Some(cert), Some(key)) => {
                builder.with_client_auth_cert(read_certificates(cert)?, read_key(key)?)?
            }
            _ => builder.with_no_client_auth(),
        };
        let server_name = match &pool.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| TlsError::ServerName(name.clone()))?,
            ),
            None => None,
        };
        Ok(Some(Arc::new(BackendTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            server_name,
        })))
    }

    /// The client side of the handshake with the node at `address` (the caller bounds the time).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        address: &str,
    ) -> Result<BackendStream, BackendTlsError> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => name_of(address)?,
        };
        let stream = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(BackendTlsError::Handshake)?;
        let (tcp, connection) = stream.into_inner();
        Ok(BackendStream::Tls(Box::new(TlsBackend::new(
            tcp, connection,
        ))))
    }
}

/// The offset store of a Kafka pool whose Redis is a TLS pool (`offsets = { pool = "..." }`): its sockets get
/// that pool's TLS.
#[derive(Debug)]
pub struct StoreTls(Arc<BackendTls>);

impl StoreTls {
    pub fn for_pool(
        pool: &RedisPoolConfig,
    ) -> Result<Option<Arc<dyn kafka_bridge::StoreTransport>>, TlsError> {
        let tls = BackendTls::for_pool(pool)?;
        Ok(tls.map(|tls| Arc::new(StoreTls(tls)) as Arc<dyn kafka_bridge::StoreTransport>))
    }
}

impl kafka_bridge::StoreTransport for StoreTls {
    fn wrap(
        &self,
        tcp: TcpStream,
        address: &str,
    ) -> kafka_bridge::BoxFuture<'static, Result<Box<dyn kafka_bridge::StoreStream>, String>> {
        let tls = Arc::clone(&self.0);
        let address = address.to_owned();
        Box::pin(async move {
            // The offset store's transport hook speaks text (kafka-bridge has no TLS types).
            let stream = tls
                .connect(tcp, &address)
                .await
                .map_err(|error| error.to_string())?;
            Ok(Box::new(stream) as Box<dyn kafka_bridge::StoreStream>)
        })
    }
}

/// The name a node's certificate is checked against: the host part of `host:port` (an IP address or a DNS
/// name; `[v6]:port` too).
fn name_of(address: &str) -> Result<ServerName<'static>, BackendTlsError> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _port)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| BackendTlsError::NodeName(host.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_checked_by_its_host() {
        assert!(matches!(
            name_of("127.0.0.1:6379"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            name_of("[::1]:6379"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            name_of("redis.example:6379"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(name_of("bad host:1").is_err());
    }
}
