//! [`TlsSocket`] over a real loopback connection, with a rustls client and certificates made for the test by
//! the `openssl` command (as `cargo xtask test` makes its own).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::TlsSocket;

/// A CA and a certificate for 127.0.0.1 signed by it, in a folder of their own, removed on drop.
struct Certificates(PathBuf);

impl Certificates {
    fn generate() -> Certificates {
        let dir = std::env::temp_dir().join(format!(
            "rkproxy-tls-socket-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |name: &str| dir.join(name).display().to_string();
        std::fs::write(dir.join("leaf.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test CA",
            "-keyout",
            &path("ca.key"),
            "-out",
            &path("ca.crt"),
        ]);
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &path("server.key"),
            "-out",
            &path("server.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.crt"),
            "-CAkey",
            &path("ca.key"),
            "-set_serial",
            "2",
            "-days",
            "1",
            "-extfile",
            &path("leaf.ext"),
            "-out",
            &path("server.crt"),
        ]);
        Certificates(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(super::super::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                certificates(&self.file("server.crt")),
                PrivateKeyDer::from_pem_file(self.file("server.key")).unwrap(),
            )
            .unwrap();
        Arc::new(config)
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in certificates(&self.file("ca.crt")) {
            roots.add(certificate).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(super::super::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn certificates(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A server-side [`TlsSocket`] and the rustls client connected to it.
async fn connected_pair(
    certificates: &Certificates,
) -> (TlsSocket, tokio_rustls::client::TlsStream<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(certificates.client_config());
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await.unwrap()
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(certificates.server_config());
    let (tcp, connection) = acceptor.accept(tcp).await.unwrap().into_inner();
    (TlsSocket::new(tcp, connection), client.await.unwrap())
}

/// Bytes waiting in the socket's receive queue, without taking them.
fn queued(socket: &TlsSocket) -> usize {
    let mut probe = [0u8; 1024];
    let mut buffer = ReadBuf::new(&mut probe);
    let mut cx = Context::from_waker(Waker::noop());
    match socket.tcp().poll_peek(&mut cx, &mut buffer) {
        Poll::Ready(Ok(count)) => count,
        _ => 0,
    }
}

/// A session's read buffer can have only a few bytes of room left (before it is reclaimed). A `recv` sized
/// to that room took a TLS record a few bytes per system call; a read must take whole records from the
/// socket, keep in rustls the plaintext that does not fit, and hand it over on the next reads.
#[tokio::test]
async fn a_read_with_little_room_takes_whole_records_from_the_socket() {
    let certificates = Certificates::generate();
    let (socket, mut client) = connected_pair(&certificates).await;
    // Two records: each flushed write is one.
    client.write_all(b"first record;").await.unwrap();
    client.flush().await.unwrap();
    client.write_all(b"second record").await.unwrap();
    client.flush().await.unwrap();
    // 5 bytes of header, 1 of content type and 16 of tag around each record's plaintext.
    let ciphertext = 2 * 22 + 26;
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued(&socket) < ciphertext {
        assert!(Instant::now() < deadline, "both records arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut received = Vec::new();
    let mut buffer = BytesMut::with_capacity(4);
    let first = socket.try_read_buf(&mut buffer).unwrap();
    assert!(first > 0 && first <= 4, "{first}");
    assert_eq!(queued(&socket), 0, "one read took both records");
    received.extend_from_slice(&buffer.split());

    while received.len() < 26 {
        let mut buffer = BytesMut::with_capacity(4);
        match socket.try_read_buf(&mut buffer) {
            Ok(0) => panic!("the stream ended early"),
            Ok(_) => received.extend_from_slice(&buffer),
            Err(error) => panic!("the rest is held by rustls, not waited for: {error}"),
        }
    }
    assert_eq!(received, b"first record;second record");
}
