//! Secured brokers: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and TLS (a CA file, optionally a client
//! certificate), for rskafka's client and for the bridge's own connections.
//!
//! rskafka does both itself once its `ClientBuilder` has a `SaslConfig` and a rustls `ClientConfig`
//! ([`PreparedSecurity::apply`]). The bridge also opens connections of its own, for the two requests rskafka
//! lacks (CreatePartitions in `admin`, FindCoordinator and OffsetCommit in `group_commit`); those go through
//! [`PreparedSecurity::connect`], which does the same TLS handshake (the same rustls configuration) and the same
//! SASL exchange (SaslHandshake v1, then SaslAuthenticate v1 carrying the mechanism's messages, computed by
//! rsasl, the SASL library rskafka uses), so every connection to a broker is secured the same way.
//!
//! The files are read when the pool connects, so a fixed file is picked up by the next connect attempt; a
//! missing or malformed file is a `ERR kafka config` error naming the file.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::KafkaError;

/// Responses to the bridge's own requests are small; anything far larger means we are not talking to Kafka.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
const SASL_HANDSHAKE_VERSION: i16 = 1;
const SASL_AUTHENTICATE_VERSION: i16 = 1;

/// How a pool's connections to its brokers are secured. The default is neither SASL nor TLS (PLAINTEXT).
///
/// ```
/// use kafka_bridge::{KafkaSecurity, SaslMechanism, SaslSettings};
/// let security = KafkaSecurity {
///     sasl: Some(SaslSettings::new(SaslMechanism::ScramSha512, "app", "secret")),
///     tls: None,
/// };
/// assert!(!format!("{security:?}").contains("secret"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// SASL authentication (the listener's protocol is SASL_PLAINTEXT, or SASL_SSL with `tls`).
    pub sasl: Option<SaslSettings>,
    /// TLS (the listener's protocol is SSL, or SASL_SSL with `sasl`).
    pub tls: Option<TlsSettings>,
}

/// A SASL mechanism Kafka offers for user names and passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN: the password travels as it is (use it with TLS).
    Plain,
    /// SCRAM-SHA-256: a challenge and response; the password never travels.
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
}

/// SASL credentials. `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

/// TLS to the brokers: the CA that signed their certificates (`None`: the system's trust store, for brokers
/// with publicly trusted certificates; `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured), and optionally a
/// client certificate with its key (for brokers with `ssl.client.auth`). Files are PEM; the key is PKCS#8,
/// PKCS#1 or SEC1, unencrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    /// Certificate revocation lists (PEM) of the brokers' CAs: a broker whose certificate (or an intermediate)
    /// is revoked, or whose issuer has no list in the file, is refused.
    pub crl_file: Option<PathBuf>,
    /// Speak TLS 1.3 only (refuse brokers that offer only TLS 1.2).
    pub tls13_only: bool,
    /// The cipher suites offered to the brokers, in order of preference (`None`: all of rustls's ring
    /// provider; one it does not implement is a configuration error).
    pub cipher_suites: Option<Vec<rustls::CipherSuite>>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// [`KafkaSecurity`] with its files read: what every connection of one pool uses.
#[derive(Clone)]
pub(crate) struct PreparedSecurity {
    sasl: Option<SaslSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A connection the bridge opened itself (secured like rskafka's), sending one request at a time.
pub(crate) struct BrokerConnection {
    stream: Box<dyn BrokerStream>,
    broker: String,
    client_id: StrBytes,
    next_correlation_id: i32,
}

/// TCP or TLS over TCP.
trait BrokerStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> BrokerStream for T {}

// === impl SaslMechanism ===

impl SaslMechanism {
    /// Parses Kafka's name for the mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`), in any case.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(SaslMechanism::ScramSha512),
            _ => None,
        }
    }

    /// Kafka's name for the mechanism.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

// === impl SaslSettings ===

impl SaslSettings {
    pub fn new(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        SaslSettings {
            mechanism,
            username: username.into(),
            password: password.into(),
        }
    }

    fn rskafka_config(&self) -> rskafka::client::SaslConfig {
        use rskafka::client::{Credentials, SaslConfig};
        let credentials = Credentials::new(self.username.clone(), self.password.clone());
        match self.mechanism {
            SaslMechanism::Plain => SaslConfig::Plain(credentials),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        }
    }
}

impl fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

// === impl KafkaSecurity ===

impl KafkaSecurity {
    /// Reads the TLS files and builds the rustls configuration.
    pub(crate) fn prepare(&self) -> Result<PreparedSecurity, KafkaError> {
        let tls = match &self.tls {
            Some(settings) => Some(Arc::new(settings.client_config()?)),
            None => None,
        };
        Ok(PreparedSecurity {
            sasl: self.sasl.clone(),
            tls,
        })
    }
}

// === impl TlsSettings ===

/// The ring provider's implementation of `suite`.
fn ring_suite(suite: rustls::CipherSuite) -> Result<rustls::SupportedCipherSuite, KafkaError> {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .find(|offered| offered.suite() == suite)
        .copied()
        .ok_or_else(|| KafkaError::Config(format!("TLS: cipher suite {suite:?} is not offered")))
}

impl TlsSettings {
    fn client_config(&self) -> Result<rustls::ClientConfig, KafkaError> {
        let roots = match &self.ca_file {
            Some(ca_file) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certificates(ca_file)? {
                    roots
                        .add(cert)
                        .map_err(|error| file_error(ca_file, &error.to_string()))?;
                }
                roots
            }
            None => system_roots()?,
        };
        // The provider is named, not taken from the process default, so that another crate enabling a second
        // rustls provider cannot make this panic.
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = &self.cipher_suites {
            provider.cipher_suites = suites
                .iter()
                .map(|&suite| ring_suite(suite))
                .collect::<Result<_, _>>()?;
        }
        let provider = Arc::new(provider);
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|error| KafkaError::Config(format!("TLS: {error}")))?;
        let builder = match &self.crl_file {
            None => builder.with_root_certificates(roots),
            Some(crl_file) => {
                let lists = read_revocation_lists(crl_file)?;
                let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .with_crls(lists)
                .build()
                .map_err(|error| file_error(crl_file, &error.to_string()))?;
                builder.with_webpki_verifier(verifier)
            }
        };
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert_file), Some(key_file)) => {
                let chain = read_certificates(cert_file)?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|error| file_error(key_file, &error.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| file_error(cert_file, &error.to_string()))
            }
            _ => Err(KafkaError::Config(
                "TLS: a client certificate needs both cert_file and key_file".into(),
            )),
        }
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, KafkaError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| file_error(path, &error.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The PEM certificate revocation lists in `path`: at least one.
fn read_revocation_lists(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, KafkaError> {
    let lists = rustls::pki_types::CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|lists| lists.collect::<Result<Vec<_>, _>>())
        .map_err(|error| file_error(path, &error.to_string()))?;
    if lists.is_empty() {
        return Err(file_error(
            path,
            "no PEM certificate revocation list (X509 CRL) in it",
        ));
    }
    Ok(lists)
}

/// The CA certificates of the system's trust store that rustls can use (a system store holds certificates of
/// every age and kind); an error when there are none.
fn system_roots() -> Result<rustls::RootCertStore, KafkaError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let problem = found
            .errors
            .first()
            .map_or_else(|| "none usable".to_owned(), ToString::to_string);
        return Err(KafkaError::Config(format!(
            "TLS: no CA certificate in the system's trust store ({problem}); set ca_file, or SSL_CERT_FILE \
             or SSL_CERT_DIR"
        )));
    }
    Ok(roots)
}

fn file_error(path: &Path, problem: &str) -> KafkaError {
    KafkaError::Config(format!("TLS file '{}': {problem}", path.display()))
}

// === impl PreparedSecurity ===

impl PreparedSecurity {
    /// Gives rskafka's builder the same SASL and TLS settings.
    pub(crate) fn apply(
        &self,
        mut builder: rskafka::client::ClientBuilder,
    ) -> rskafka::client::ClientBuilder {
        if let Some(sasl) = &self.sasl {
            builder = builder.sasl_config(sasl.rskafka_config());
        }
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        builder
    }

    /// Whether connections use SASL or TLS.
    pub(crate) fn is_secured(&self) -> bool {
        self.sasl.is_some() || self.tls.is_some()
    }

    /// Opens a connection of the bridge's own to `broker` (`host:port`): TCP, TLS when configured, then SASL
    /// when configured. The caller bounds the time.
    pub(crate) async fn connect(
        &self,
        broker: &str,
        client_id: &str,
    ) -> Result<BrokerConnection, KafkaError> {
        let unavailable = |cause: &dyn fmt::Display| KafkaError::Unavailable {
            message: format!("connecting to {broker}: {cause}"),
        };
        let tcp = TcpStream::connect(broker)
            .await
            .map_err(|error| unavailable(&error))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn BrokerStream> = match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = broker
                    .rsplit_once(':')
                    .map_or(broker, |(host, _port)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name =
                    ServerName::try_from(host.to_owned()).map_err(|error| unavailable(&error))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|error| unavailable(&format!("TLS handshake failed: {error}")))?;
                Box::new(tls)
            }
        };
        let mut connection = BrokerConnection {
            stream,
            broker: broker.to_owned(),
            client_id: StrBytes::from_string(client_id.to_owned()),
            next_correlation_id: 1,
        };
        if let Some(sasl) = &self.sasl {
            connection.authenticate(sasl).await?;
        }
        Ok(connection)
    }
}

impl fmt::Debug for PreparedSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedSecurity")
            .field("sasl", &self.sasl)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

// === impl BrokerConnection ===

impl BrokerConnection {
    /// The raw stream, for a request written by hand (`admin`).
    pub(crate) fn stream(&mut self) -> &mut (impl AsyncRead + AsyncWrite + Unpin + Send) {
        &mut self.stream
    }

    /// Sends `request` as `version` and reads its response.
    pub(crate) async fn request<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, KafkaError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = self.encode(correlation_id, version, request)?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|error| self.broken(&error))?;
        let mut body = self.read_frame().await?;
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|error| self.malformed(&error))?;
        if header.correlation_id != correlation_id {
            return Err(self.malformed(&"correlation id does not match"));
        }
        R::Response::decode(&mut body, version).map_err(|error| self.malformed(&error))
    }

    fn encode<R: Request>(
        &self,
        correlation_id: i32,
        version: i16,
        request: &R,
    ) -> Result<BytesMut, KafkaError> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|error| KafkaError::Config(format!("encoding a request: {error}")))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(i32::try_from(body.len()).unwrap_or(i32::MAX));
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    async fn read_frame(&mut self) -> Result<Bytes, KafkaError> {
        let length = self
            .stream
            .read_i32()
            .await
            .map_err(|error| self.broken(&error))?;
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| self.malformed(&format!("bad response length {length}")))?;
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|error| self.broken(&error))?;
        Ok(Bytes::from(body))
    }

    /// SaslHandshake, then the mechanism's messages in SaslAuthenticate requests until rsasl is done.
    async fn authenticate(&mut self, sasl: &SaslSettings) -> Result<(), KafkaError> {
        let mechanism = sasl.mechanism.name();
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let answer = self.request(SASL_HANDSHAKE_VERSION, &handshake).await?;
        if answer.error_code != 0 {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(sasl_failed(
                &self.broker,
                &format!(
                    "the broker does not offer {mechanism} here (it offers: {})",
                    offered.join(", ")
                ),
            ));
        }
        let mut session = sasl_session(sasl).map_err(|why| sasl_failed(&self.broker, &why))?;
        let mut received: Option<Bytes> = None;
        loop {
            let mut to_send = Cursor::new(Vec::new());
            let state = session
                .step(received.as_deref(), &mut to_send)
                .map_err(|error| sasl_failed(&self.broker, &error.to_string()))?;
            if state.has_sent_message() {
                let request = SaslAuthenticateRequest::default()
                    .with_auth_bytes(Bytes::from(to_send.into_inner()));
                let answer = self.request(SASL_AUTHENTICATE_VERSION, &request).await?;
                if answer.error_code != 0 {
                    let message = answer
                        .error_message
                        .as_ref()
                        .map_or("authentication failed", |text| text.as_str());
                    return Err(sasl_failed(&self.broker, message));
                }
                received = Some(answer.auth_bytes);
            }
            if state.is_finished() {
                return Ok(());
            }
        }
    }

    fn broken(&self, cause: &dyn fmt::Display) -> KafkaError {
        KafkaError::Unavailable {
            message: format!("connection to {} failed: {cause}", self.broker),
        }
    }

    fn malformed(&self, cause: &dyn fmt::Display) -> KafkaError {
        KafkaError::Kafka {
            name: "INVALID_RESPONSE".into(),
            message: format!("malformed response from {}: {cause}", self.broker),
        }
    }
}

/// An rsasl client session for the settings' mechanism.
fn sasl_session(sasl: &SaslSettings) -> Result<rsasl::prelude::Session, String> {
    use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
    let config = SASLConfig::with_credentials(None, sasl.username.clone(), sasl.password.clone())
        .map_err(|error| error.to_string())?;
    let mechanism =
        Mechname::parse(sasl.mechanism.name().as_bytes()).map_err(|error| error.to_string())?;
    SASLClient::new(config)
        .start_suggested(&[mechanism])
        .map_err(|error| error.to_string())
}

/// A login `broker` refused on one of the bridge's own connections (see [`KafkaError::sasl_authentication_failed`]).
pub(crate) fn sasl_failed(broker: &str, why: &str) -> KafkaError {
    KafkaError::sasl_authentication_failed(format!(
        "SASL authentication with {broker} failed: {why}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn mechanisms_parse_in_any_case() {
        assert_eq!(
            SaslMechanism::parse("scram-sha-512"),
            Some(SaslMechanism::ScramSha512)
        );
        assert_eq!(SaslMechanism::parse("PLAIN"), Some(SaslMechanism::Plain));
        assert_eq!(SaslMechanism::parse("GSSAPI"), None);
        assert_eq!(SaslMechanism::ScramSha256.name(), "SCRAM-SHA-256");
    }

    #[test]
    fn debug_shows_no_password() {
        let settings = SaslSettings::new(SaslMechanism::Plain, "user", "hunter2-password");
        let prepared = KafkaSecurity {
            sasl: Some(settings.clone()),
            tls: None,
        }
        .prepare()
        .unwrap();
        for shown in [format!("{settings:?}"), format!("{prepared:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let security = KafkaSecurity {
            sasl: None,
            tls: Some(TlsSettings {
                ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
                crl_file: None,
                tls13_only: false,
                cipher_suites: None,
                cert_file: None,
                key_file: None,
            }),
        };
        let error = security.prepare().unwrap_err().to_string();
        assert!(
            error.starts_with("ERR kafka config: TLS file '/nonexistent/ca.pem'"),
            "{error}"
        );
    }

    #[test]
    fn requests_are_framed_with_their_header() {
        let connection = BrokerConnection {
            stream: Box::new(tokio::io::duplex(1).0),
            broker: "b:1".into(),
            client_id: StrBytes::from_static_str("id"),
            next_correlation_id: 1,
        };
        let request =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let mut frame = connection.encode(7, 1, &request).unwrap();
        let length = frame.get_i32();
        assert_eq!(usize::try_from(length).unwrap(), frame.len());
        // Header v1: api key 17, version 1, correlation id 7, client id "id"; then the mechanism.
        assert_eq!(
            &frame[..],
            &[0, 17, 0, 1, 0, 0, 0, 7, 0, 2, b'i', b'd', 0, 5, b'P', b'L', b'A', b'I', b'N']
        );
    }
}
