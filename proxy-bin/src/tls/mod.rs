//! TLS on both sides, built on rustls (ring provider; no OpenSSL): the certificate clients see on `tls_listen`
//! (`[tls]`, read again at every reload so a rotated certificate is used without a restart), the settings a pool
//! with `tls = true` connects to its Redis nodes with, and the streams sessions and backend connections use.
//!
//! Nothing here is on the plaintext path: a plaintext client is a `ClientStream::Plain` and a plaintext
//! backend a `BackendStream::Plain` (both a `PlainOrTls`), whose methods call the `TcpStream`'s directly.

mod backend_stream;
mod client_stream;
mod plain_or_tls;
mod plain_socket;
mod socket;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName,
};
use tracing::warn;

use self::backend_stream::TlsBackend;
pub use self::backend_stream::{BackendReader, BackendStream, BackendWriter, ReadNow, WriteNow};
pub use self::client_stream::ClientStream;
pub use self::plain_socket::PlainSocket;
use crate::config::{
    invalid, CipherSuite, ClientAuth, ClientTlsConfig, Config, ConfigError, PoolTlsConfig,
    RedisPoolConfig, TlsVersion,
};
use crate::subject::Subject;

/// Why TLS settings could not be built. Each text names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {problem}")]
    Unreadable { path: String, problem: String },
    #[error("cannot read certificates from {path}: {problem}")]
    Certificates { path: String, problem: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("cannot read certificate revocation lists from {path}: {problem}")]
    RevocationLists { path: String, problem: String },
    #[error("{path} holds no PEM certificate revocation list (X509 CRL)")]
    NoRevocationList { path: String },
    #[error("cannot read a private key from {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("CA certificate in {path} rejected: {problem}")]
    BadCa { path: String, problem: String },
    #[error("certificate and key rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("server certificate verifier: {0}")]
    ServerVerifier(rustls::client::VerifierBuilderError),
    #[error("'{0}' is not a DNS name or an IP address")]
    ServerName(String),
    #[error(
        "no CA certificate found in the system's trust store ({0}); set ca_file, or SSL_CERT_FILE or \
         SSL_CERT_DIR"
    )]
    NoSystemCertificates(String),
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

/// [`provider`] with only the cipher suites `suites` names, in its order (`None`: all it offers).
fn provider_with_suites(suites: Option<&[CipherSuite]>) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites.iter().copied().map(supported_suite).collect();
    }
    Arc::new(provider)
}

/// The ring provider's implementation of `suite`.
pub fn supported_suite(suite: CipherSuite) -> rustls::SupportedCipherSuite {
    use rustls::crypto::ring::cipher_suite as ring;
    match suite {
        CipherSuite::Tls13Aes256GcmSha384 => ring::TLS13_AES_256_GCM_SHA384,
        CipherSuite::Tls13Aes128GcmSha256 => ring::TLS13_AES_128_GCM_SHA256,
        CipherSuite::Tls13Chacha20Poly1305Sha256 => ring::TLS13_CHACHA20_POLY1305_SHA256,
        CipherSuite::EcdheEcdsaAes256GcmSha384 => ring::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheEcdsaAes128GcmSha256 => ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => {
            ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        CipherSuite::EcdheRsaAes256GcmSha384 => ring::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheRsaAes128GcmSha256 => ring::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheRsaChacha20Poly1305Sha256 => {
            ring::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
    }
}

/// TLS 1.3 alone (`min_version = "1.3"`).
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The TLS versions spoken with `min_version` the oldest.
fn protocol_versions(
    min_version: TlsVersion,
) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match min_version {
        TlsVersion::Tls12 => rustls::DEFAULT_VERSIONS,
        TlsVersion::Tls13 => TLS13_ONLY,
    }
}

fn read_file(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Unreadable {
        path: path.to_owned(),
        problem: error.to_string(),
    })
}

fn read_certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates_in(path, &read_file(path)?)
}

/// The PEM certificates in `pem`, the content of the file `path` (named in the error).
fn certificates_in(path: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
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
    key_in(path, &read_file(path)?)
}

/// The PEM private key in `pem`, the content of the file `path`.
fn key_in(path: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| TlsError::Key {
        path: path.to_owned(),
        problem: error.to_string(),
    })
}

fn read_roots(path: &str) -> Result<rustls::RootCertStore, TlsError> {
    roots_in(path, &read_file(path)?)
}

/// The CA certificates in `pem`, the content of the file `path`.
fn roots_in(path: &str, pem: &[u8]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates_in(path, pem)? {
        roots.add(certificate).map_err(|error| TlsError::BadCa {
            path: path.to_owned(),
            problem: error.to_string(),
        })?;
    }
    Ok(roots)
}

/// The CA certificates of the system's trust store (rustls-native-certs: `SSL_CERT_FILE` or `SSL_CERT_DIR`
/// when set, else the platform's bundle). Certificates it could not read are skipped as long as some were read.
fn system_certificates() -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let problem = match found.errors.first() {
            Some(error) => error.to_string(),
            None => "it is empty".to_owned(),
        };
        return Err(TlsError::NoSystemCertificates(problem));
    }
    Ok(found.certs)
}

/// The roots `certificates` of the system's trust store make, skipping any rustls cannot use (a system store
/// holds certificates of every age and kind).
fn system_roots(
    certificates: &[CertificateDer<'static>],
) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certificates.iter().cloned());
    if added == 0 {
        return Err(TlsError::NoSystemCertificates(
            "none is a usable CA certificate".to_owned(),
        ));
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
    /// When the certificate clients see expires (seconds since 1970), if it could be read.
    certificate_expiry: Option<i64>,
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

    /// Reads the certificate, key and (for mutual TLS) client CA and revocation files named by `[tls]`.
    pub fn build(config: &ClientTlsConfig) -> Result<ClientTls, (&'static str, TlsError)> {
        let certificates =
            read_certificates(&config.cert_file).map_err(|e| ("tls.cert_file", e))?;
        let key = read_key(&config.key_file).map_err(|e| ("tls.key_file", e))?;
        let certificate_expiry = certificates
            .first()
            .and_then(|leaf| crate::subject::expiry_of_certificate(leaf));
        warn_of_expiry(
            PresentedCertificate::Listener,
            &config.cert_file,
            certificate_expiry,
        );
        let builder = rustls::ServerConfig::builder_with_provider(provider_with_suites(
            config.cipher_suites.as_deref(),
        ))
        .with_protocol_versions(protocol_versions(config.min_version))
        .map_err(|e| ("tls.min_version", e.into()))?;
        let builder = match &config.client_ca_file {
            Some(path) => builder.with_client_cert_verifier(client_verifier(config, path)?),
            None => builder.with_no_client_auth(),
        };
        let mut server = builder
            .with_single_cert(certificates, key)
            .map_err(|e| ("tls.key_file", e.into()))?;
        remember_sessions(&mut server, config.session_cache_size);
        Ok(ClientTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            handshake_timeout: Duration::from_millis(config.handshake_ms),
            certificate_expiry,
        })
    }

    /// When the certificate clients see expires, in seconds since 1970 (`None`: its date could not be read).
    pub fn certificate_expiry(&self) -> Option<i64> {
        self.certificate_expiry
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

/// Within this many seconds of its expiry a certificate the proxy presents is warned about at start and reload.
const EXPIRY_WARNING: i64 = 14 * 86_400;

/// A certificate the proxy presents, as its expiry warnings name it.
#[derive(Debug, Clone, Copy)]
enum PresentedCertificate {
    /// `tls.cert_file`, which clients of `tls_listen` check.
    Listener,
    /// A pool's `cert_file`, which its Redis nodes or Kafka brokers check when they require client certificates.
    PoolClient,
}

/// Logs a warning when `certificate` (read from `path`) has expired or expires within [`EXPIRY_WARNING`]:
/// rustls presents it all the same, and every peer that checks it would refuse it.
fn warn_of_expiry(certificate: PresentedCertificate, path: &str, expiry: Option<i64>) {
    let Some(expiry) = expiry else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        });
    let left = expiry - now;
    let (expired, expires_soon) = match certificate {
        PresentedCertificate::Listener => (
            "the TLS listener's certificate has expired; clients will refuse it",
            "the TLS listener's certificate expires soon",
        ),
        PresentedCertificate::PoolClient => (
            "a pool's TLS client certificate has expired; backends that check client certificates will refuse it",
            "a pool's TLS client certificate expires soon",
        ),
    };
    if left <= 0 {
        warn!(path, expired_seconds_ago = -left, "{expired}");
    } else if left < EXPIRY_WARNING {
        warn!(path, expires_in_hours = left / 3_600, "{expires_soon}");
    }
}

/// Keeps up to `size` sessions (TLS 1.2 session ids, TLS 1.3 tickets naming a cached session) so a client that
/// reconnects resumes without the certificate exchange and key agreement; 0 turns resumption off. The cache
/// is the listener's, shared by every worker thread; a reload starts a new one (clients then do one full
/// handshake).
fn remember_sessions(server: &mut rustls::ServerConfig, size: usize) {
    if size == 0 {
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
    } else {
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(size);
    }
}

/// The check of client certificates for mutual TLS: they chain to the CA in `client_ca_file`, and none in
/// the chain is revoked by a list in `client_crl_file` (a certificate whose issuer has no list there is
/// refused too: its status is unknown). With `client_auth = "optional"` a client may also send none.
fn client_verifier(
    config: &ClientTlsConfig,
    ca_path: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, (&'static str, TlsError)> {
    let roots = read_roots(ca_path).map_err(|e| ("tls.client_ca_file", e))?;
    let mut verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    if let Some(path) = &config.client_crl_file {
        let lists = read_revocation_lists(path).map_err(|e| ("tls.client_crl_file", e))?;
        verifier = verifier.with_crls(lists);
    }
    if config.client_auth == ClientAuth::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    verifier.build().map_err(|error| {
        let key = match error {
            rustls::server::VerifierBuilderError::InvalidCrl(_) => "tls.client_crl_file",
            _ => "tls.client_ca_file",
        };
        (key, error.into())
    })
}

/// The PEM certificate revocation lists in the file `path`: at least one.
fn read_revocation_lists(
    path: &str,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    revocation_lists_in(path, &read_file(path)?)
}

/// The PEM certificate revocation lists in `pem`, the content of the file `path`: at least one.
fn revocation_lists_in(
    path: &str,
    pem: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let lists = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::RevocationLists {
            path: path.to_owned(),
            problem: error.to_string(),
        })?;
    if lists.is_empty() {
        return Err(TlsError::NoRevocationList {
            path: path.to_owned(),
        });
    }
    Ok(lists)
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

impl HandshakeError {
    /// The `result` label of this failure in `rkproxy_tls_handshakes_total`.
    fn result(&self) -> HandshakeResult {
        match self {
            HandshakeError::Timeout(_) => HandshakeResult::Timeout,
            HandshakeError::NotTls(_) => HandshakeResult::NotTls,
            HandshakeError::Failed(_) => HandshakeResult::Failed,
        }
    }
}

/// How a client's TLS handshake ended, as counted by [`HandshakeCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeResult {
    Ok,
    /// The client sent something that is not TLS.
    NotTls,
    /// No handshake within `tls.handshake_ms`.
    Timeout,
    /// Any other failure: a certificate refused by either side, a protocol version or alert.
    Failed,
}

impl HandshakeResult {
    const ALL: [HandshakeResult; 4] = [
        HandshakeResult::Ok,
        HandshakeResult::NotTls,
        HandshakeResult::Timeout,
        HandshakeResult::Failed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeResult::Ok => "ok",
            HandshakeResult::NotTls => "not_tls",
            HandshakeResult::Timeout => "timeout",
            HandshakeResult::Failed => "failed",
        }
    }
}

/// Client TLS handshakes by how they ended, and those that succeeded by the cipher suite agreed on, since the
/// proxy started (kept across reloads).
#[derive(Debug, Default)]
pub struct HandshakeCounts {
    by_result: [AtomicU64; 4],
    /// By the suite's place in [`rustls::crypto::ring::ALL_CIPHER_SUITES`] (every suite rkproxy can speak).
    by_suite: [AtomicU64; SUITES],
}

/// How many cipher suites rkproxy can speak.
const SUITES: usize = rustls::crypto::ring::ALL_CIPHER_SUITES.len();

impl HandshakeCounts {
    /// Counts one handshake: the client's stream when it finished it.
    pub fn count(&self, outcome: Result<&ClientStream, &HandshakeError>) {
        let result = match outcome {
            Ok(stream) => {
                self.count_suite(stream.cipher_suite());
                HandshakeResult::Ok
            }
            Err(error) => error.result(),
        };
        self.by_result[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn count_suite(&self, suite: Option<rustls::SupportedCipherSuite>) {
        let place = suite.and_then(|suite| {
            rustls::crypto::ring::ALL_CIPHER_SUITES
                .iter()
                .position(|offered| offered.suite() == suite.suite())
        });
        if let Some(place) = place {
            self.by_suite[place].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every result with its count.
    pub fn counts(&self) -> Vec<(HandshakeResult, u64)> {
        HandshakeResult::ALL
            .into_iter()
            .map(|result| {
                (
                    result,
                    self.by_result[result as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The successful handshakes by TLS version (`TLSv1.2`, `TLSv1.3`) and cipher suite (IANA name), for the
    /// suites clients have chosen.
    pub fn suite_counts(&self) -> Vec<(&'static str, String, u64)> {
        rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .zip(&self.by_suite)
            .map(|(suite, count)| (suite, count.load(Ordering::Relaxed)))
            .filter(|&(_, count)| count > 0)
            .map(|(suite, count)| (version_name(suite), iana_name(suite.suite()), count))
            .collect()
    }
}

/// The IANA name of `suite` (rustls names TLS 1.3 suites `TLS13_...`; IANA, OpenSSL and Redis `TLS_...`).
fn iana_name(suite: rustls::CipherSuite) -> String {
    let name = suite.as_str().unwrap_or("unknown");
    name.replacen("TLS13_", "TLS_", 1)
}

/// The TLS version of `suite`, as OpenSSL writes it.
fn version_name(suite: &rustls::SupportedCipherSuite) -> &'static str {
    match suite.version().version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        _ => "TLSv1.2",
    }
}

/// Logs a failed client handshake (the connection is then dropped, which closes it).
pub fn log_handshake_failure(client: SocketAddr, error: &HandshakeError) {
    warn!(client.addr = %client, %error, "TLS handshake with a client failed; connection closed");
}

// === the backend side: pools with tls = true ===

/// Why a pool's TLS settings could not be built: the pool's key (`ca_file`, `cert_file`, `key_file`,
/// `server_name`) and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct PoolTlsError {
    pub key: &'static str,
    pub problem: TlsError,
}

/// Builds a closure that names `key` in a [`PoolTlsError`].
fn at_key(key: &'static str) -> impl Fn(TlsError) -> PoolTlsError {
    move |problem| PoolTlsError { key, problem }
}

/// The content of the files a TLS pool names: what its TLS settings were built from, compared at every
/// reload to learn whether a file was rotated in place (the same path, new content). `Debug` shows the paths
/// only (the key file's content is a secret).
#[derive(Clone, PartialEq, Eq)]
pub struct PoolTlsFiles {
    /// The oldest TLS version (`min_version`; a setting, not a file, kept here with what it goes with).
    min_version: TlsVersion,
    /// The cipher suites offered (`cipher_suites`; a setting too).
    cipher_suites: Option<Vec<CipherSuite>>,
    ca: TrustedCas,
    /// The revocation lists of the CAs (`crl_file`), path and content.
    revocation_lists: Option<(String, Vec<u8>)>,
    /// The client certificate chain and its key, each path with its content.
    client: Option<[(String, Vec<u8>); 2]>,
}

/// The CAs a pool trusts: those of its `ca_file` (path and content), or without one the system's trust store
/// (as loaded, so a reload sees an updated store as a change like a rotated file).
#[derive(Clone, PartialEq, Eq)]
enum TrustedCas {
    File(String, Vec<u8>),
    System(Vec<CertificateDer<'static>>),
}

impl std::fmt::Debug for PoolTlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client = self
            .client
            .as_ref()
            .map(|[(cert, _), (key, _)]| (cert, key));
        let ca_file = match &self.ca {
            TrustedCas::File(path, _) => path.as_str(),
            TrustedCas::System(_) => "(the system's trust store)",
        };
        let crl_file = self.revocation_lists.as_ref().map(|(path, _)| path);
        f.debug_struct("PoolTlsFiles")
            .field("ca_file", &ca_file)
            .field("crl_file", &crl_file)
            .field("client", &client)
            .finish()
    }
}

impl PoolTlsFiles {
    /// Reads the files of `pool` (`None` for a plaintext pool). Only reads: [`PoolTlsFiles::client_config`]
    /// checks what they hold.
    pub fn read(pool: &PoolTlsConfig) -> Result<Option<PoolTlsFiles>, PoolTlsError> {
        if !pool.enabled {
            return Ok(None);
        }
        let ca = match &pool.ca_file {
            Some(ca_file) => TrustedCas::File(
                ca_file.clone(),
                read_file(ca_file).map_err(at_key("ca_file"))?,
            ),
            None => TrustedCas::System(system_certificates().map_err(at_key("ca_file"))?),
        };
        let revocation_lists = match &pool.crl_file {
            Some(path) => Some((path.clone(), read_file(path).map_err(at_key("crl_file"))?)),
            None => None,
        };
        let client = match (&pool.cert_file, &pool.key_file) {
            (Some(cert), Some(key)) => Some([
                (cert.clone(), read_file(cert).map_err(at_key("cert_file"))?),
                (key.clone(), read_file(key).map_err(at_key("key_file"))?),
            ]),
            _ => None,
        };
        Ok(Some(PoolTlsFiles {
            min_version: pool.min_version.unwrap_or_default(),
            cipher_suites: pool.cipher_suites.clone(),
            ca,
            revocation_lists,
            client,
        }))
    }

    /// When the client certificate (the first of `cert_file`) expires, in seconds since 1970; `None` without
    /// one, or when its date cannot be read.
    pub fn client_certificate_expiry(&self) -> Option<i64> {
        let [(_, chain), _] = self.client.as_ref()?;
        let leaf = CertificateDer::pem_slice_iter(chain).next()?.ok()?;
        crate::subject::expiry_of_certificate(&leaf)
    }

    /// Warns when the client certificate has expired or expires soon (at start and at every reload).
    pub fn warn_of_client_certificate_expiry(&self) {
        if let Some([(path, _), _]) = &self.client {
            let expiry = self.client_certificate_expiry();
            warn_of_expiry(PresentedCertificate::PoolClient, path, expiry);
        }
    }

    /// The rustls client configuration these files make: the CA's roots, and the client certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, PoolTlsError> {
        let roots = match &self.ca {
            TrustedCas::File(path, pem) => roots_in(path, pem),
            TrustedCas::System(certificates) => system_roots(certificates),
        }
        .map_err(at_key("ca_file"))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider_with_suites(
            self.cipher_suites.as_deref(),
        ))
        .with_protocol_versions(protocol_versions(self.min_version))
        .map_err(|error| at_key("min_version")(error.into()))?;
        let builder = match &self.revocation_lists {
            None => builder.with_root_certificates(roots),
            Some((path, pem)) => builder.with_webpki_verifier(server_verifier(roots, path, pem)?),
        };
        let Some([(cert_path, cert), (key_path, key)]) = &self.client else {
            return Ok(builder.with_no_client_auth());
        };
        let chain = certificates_in(cert_path, cert).map_err(at_key("cert_file"))?;
        let key = key_in(key_path, key).map_err(at_key("key_file"))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|error| at_key("key_file")(error.into()))
    }
}

/// The check of the nodes' certificates with revocation lists: they chain to `roots`, and none in the chain is
/// revoked by the lists in `pem` (the file `path`); a certificate whose issuer has no list there is refused
/// (its status is unknown: fail closed), as on the listener.
fn server_verifier(
    roots: rustls::RootCertStore,
    path: &str,
    pem: &[u8],
) -> Result<Arc<rustls::client::WebPkiServerVerifier>, PoolTlsError> {
    let lists = revocation_lists_in(path, pem).map_err(at_key("crl_file"))?;
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(lists)
        .build()
        .map_err(|error| at_key("crl_file")(TlsError::ServerVerifier(error)))
}

/// How a pool's connections to its Redis nodes are encrypted: the CA that signs the nodes' certificates, an
/// optional client certificate, and the name checked in the node's certificate (`server_name`, else the host
/// of each node's address, so the nodes of a cluster announced by CLUSTER SLOTS are checked by their IP).
///
/// Shared by every connection of the pool. A reload that finds one of the pool's files rotated in place
/// replaces the settings inside ([`BackendTls::reread`]) without rebuilding the pool: connections open keep
/// their session, the next connection made uses the new files.
pub struct BackendTls {
    current: ArcSwap<BackendTlsSettings>,
    /// How many times the settings were replaced: a connection that failed with older settings tries the new
    /// ones at once rather than waiting out its reconnect hold-off.
    rotations: AtomicU64,
}

/// One reading of a pool's TLS files.
struct BackendTlsSettings {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
    files: PoolTlsFiles,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("server_name", &self.current.load().server_name)
            .finish_non_exhaustive()
    }
}

impl BackendTls {
    /// The pool's TLS settings, `None` for a plaintext pool. The files are read here, when the pool is built
    /// (and again at each reload, [`BackendTls::reread`]).
    pub fn for_pool(pool: &RedisPoolConfig) -> Result<Option<Arc<BackendTls>>, PoolTlsError> {
        let Some(files) = PoolTlsFiles::read(&pool.tls)? else {
            return Ok(None);
        };
        let settings = BackendTlsSettings::build(pool, files)?;
        Ok(Some(Arc::new(BackendTls {
            current: ArcSwap::from_pointee(settings),
            rotations: AtomicU64::new(0),
        })))
    }

    /// Reads the files of `pool` (this pool's unchanged settings) again: `None` when they hold what they held,
    /// else the new settings, to [`TlsRotation::apply`] once the whole reload is known to succeed. A file that
    /// became unreadable or invalid is an error naming its key.
    pub fn reread(
        self: &Arc<Self>,
        pool: &RedisPoolConfig,
    ) -> Result<Option<TlsRotation>, PoolTlsError> {
        let Some(files) = PoolTlsFiles::read(&pool.tls)? else {
            return Ok(None);
        };
        files.warn_of_client_certificate_expiry();
        if files == self.current.load().files {
            return Ok(None);
        }
        Ok(Some(TlsRotation {
            tls: Arc::clone(self),
            next: Arc::new(BackendTlsSettings::build(pool, files)?),
        }))
    }

    /// When the client certificate the pool presents expires (see [`PoolTlsFiles::client_certificate_expiry`]).
    pub fn client_certificate_expiry(&self) -> Option<i64> {
        self.current.load().files.client_certificate_expiry()
    }

    /// Warns when the client certificate the pool presents has expired or expires soon.
    pub fn warn_of_client_certificate_expiry(&self) {
        self.current
            .load()
            .files
            .warn_of_client_certificate_expiry();
    }

    /// Changes each time a reload replaces the settings (see [`TlsRotation::apply`]).
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Acquire)
    }

    /// The client side of the handshake with the node at `address` (the caller bounds the time).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        address: &str,
    ) -> Result<BackendStream, BackendTlsError> {
        let settings = self.current.load_full();
        let name = match &settings.server_name {
            Some(name) => name.clone(),
            None => name_of(address)?,
        };
        let stream = settings
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

impl BackendTlsSettings {
    fn build(
        pool: &RedisPoolConfig,
        files: PoolTlsFiles,
    ) -> Result<BackendTlsSettings, PoolTlsError> {
        let server_name = match &pool.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| at_key("server_name")(TlsError::ServerName(name.clone())))?,
            ),
            None => None,
        };
        Ok(BackendTlsSettings {
            connector: tokio_rustls::TlsConnector::from(Arc::new(files.client_config()?)),
            server_name,
            files,
        })
    }
}

/// New TLS settings for a pool whose files were rotated, read by a reload and put in force by it.
pub struct TlsRotation {
    tls: Arc<BackendTls>,
    next: Arc<BackendTlsSettings>,
}

impl std::fmt::Debug for TlsRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRotation").finish_non_exhaustive()
    }
}

impl TlsRotation {
    /// Makes the new settings the ones the pool's next connections use.
    pub fn apply(self) {
        self.tls.current.store(self.next);
        self.tls.rotations.fetch_add(1, Ordering::Release);
    }
}

/// The offset store of a Kafka pool whose Redis is a TLS pool (`offsets = { pool = "..." }`): its sockets get
/// that pool's TLS.
#[derive(Debug)]
pub struct StoreTls(Arc<BackendTls>);

impl StoreTls {
    pub fn for_pool(
        pool: &RedisPoolConfig,
    ) -> Result<Option<Arc<dyn kafka_bridge::StoreTransport>>, PoolTlsError> {
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
    fn pool_tls_files_debug_shows_no_key_content() {
        let files = PoolTlsFiles {
            min_version: TlsVersion::Tls12,
            cipher_suites: None,
            ca: TrustedCas::File("ca.pem".into(), b"CA".to_vec()),
            revocation_lists: None,
            client: Some([
                ("c.pem".into(), b"CERT".to_vec()),
                ("c.key".into(), b"SECRET KEY".to_vec()),
            ]),
        };
        let text = format!("{files:?}");
        // "SEC" as Vec<u8>'s Debug would print it.
        assert!(
            text.contains("c.key") && !text.contains("83, 69, 67"),
            "{text}"
        );
    }

    /// Each name `cipher_suites` accepts is the suite rustls implements under that IANA name.
    #[test]
    fn cipher_suite_names_are_the_suites_of_those_names() {
        let names = [
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ];
        for name in names {
            let suite: CipherSuite = figment::value::Value::from(name).deserialize().unwrap();
            let rustls_name = supported_suite(suite).suite().as_str().unwrap();
            assert_eq!(rustls_name.replacen("TLS13_", "TLS_", 1), name);
            assert_eq!(
                suite.is_tls13(),
                rustls_name.starts_with("TLS13_"),
                "{name}"
            );
        }
        assert_eq!(
            names.len(),
            rustls::crypto::ring::ALL_CIPHER_SUITES.len(),
            "every suite the provider offers can be named"
        );
    }

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
