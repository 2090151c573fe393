//! TLS clients for the tests of the TLS listener and TLS pools (tls.rs, tls_reload.rs): the run's test
//! certificates (made by `cargo xtask test`), a rustls client trusting a CA of them and simple commands over
//! it, and a redis-rs client over TLS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::env_addr;

/// How long a TLS handshake, a reply or a failure may take in the TLS tests.
pub const TLS_BOUNDED: Duration = Duration::from_secs(10);

/// A file of the run's test certificates.
pub fn tls_file(name: &str) -> String {
    let dir = env_addr("RKPROXY_TEST_TLS_DIR");
    PathBuf::from(dir).join(name).display().to_string()
}

/// The TLS standalone redis-server that `cargo xtask test` started.
pub fn tls_redis() -> String {
    env_addr("RKPROXY_TEST_TLS_REDIS")
}

/// The certificates in the test certificate file `name`.
fn certificates(name: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(tls_file(name))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A rustls client configuration trusting `ca` (a file of the test folder), with `client` (`client` for
/// client.crt/key) as its certificate if given.
pub fn client_config(ca: &str, client: Option<&str>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(ca) {
        roots.add(certificate).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some(name) => builder
            .with_client_auth_cert(
                certificates(&format!("{name}.crt")),
                PrivateKeyDer::from_pem_file(tls_file(&format!("{name}.key"))).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// A rustls client configuration trusting `ca` that speaks TLS 1.2 only.
pub fn tls12_client_config(ca: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(ca) {
        roots.add(certificate).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A rustls client connection to a TLS listener.
pub type TlsClient = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connects with rustls to `addr`; the handshake's outcome (bounded in time).
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsClient> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout(TLS_BOUNDED, connect)
        .await
        .expect("the handshake ends in bounded time")
}

/// Sends one RESP command and reads until a whole reply line set has arrived (simple replies only), or the
/// connection closes (`None`).
pub async fn tls_command(stream: &mut TlsClient, request: &[u8]) -> Option<String> {
    stream.write_all(request).await.ok()?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(TLS_BOUNDED, stream.read(&mut buffer))
            .await
            .expect("a reply or a close in bounded time")
            .ok()?;
        if read == 0 {
            return None;
        }
        reply.extend_from_slice(&buffer[..read]);
        if reply.ends_with(b"\r\n") {
            return Some(String::from_utf8_lossy(&reply).into_owned());
        }
    }
}

/// `PING` on `stream`: the reply (`+PONG\r\n`), or `None` when the connection closed.
pub async fn tls_ping(stream: &mut TlsClient) -> Option<String> {
    tls_command(stream, b"*1\r\n$4\r\nPING\r\n").await
}

/// A redis-rs connection to `proxy`'s TLS listener (`rediss://`), trusting the test CA.
pub async fn tls_redis_rs_client(proxy: &rkproxy::Proxy) -> redis::aio::MultiplexedConnection {
    let addr = proxy.tls_local_addr().expect("tls_listen is on");
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(tls_file("ca.crt")).unwrap()),
    };
    let url = format!("rediss://localhost:{}/", addr.port());
    redis::Client::build_with_tls(url, certificates)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
