//! `[tls]` and `tls_listen`: the TLS listener beside `listen`, and tenants bound to a client certificate.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{invalid, Config, ConfigError};

/// `[tls]`: the TLS listener's certificate and key (PEM files), and for mutual TLS the CA of client
/// certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// The certificate chain clients see, leaf first.
    pub cert_file: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Mutual TLS: clients present a certificate signed by this CA (a tenant with `tls_subject` is then
    /// logged in by its certificate, without AUTH).
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// With `client_ca_file`: whether every client must present a certificate, or may connect without one
    /// and authenticate with AUTH.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// With `client_ca_file`: the certificate revocation lists (PEM) of the client CAs; a revoked client
    /// certificate, or one whose issuer has no list here, is refused.
    #[serde(default)]
    pub client_crl_file: Option<String>,
    /// The oldest TLS version a client may speak.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// The cipher suites a client may choose from (unset: every suite rkproxy offers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suites: Option<Vec<CipherSuite>>,
    /// TLS sessions remembered for resumption (a returning client skips the certificate exchange); 0: none.
    #[serde(default = "default_session_cache_size")]
    pub session_cache_size: usize,
    /// A client that has not finished its handshake by then is closed.
    #[serde(default = "default_handshake_ms")]
    pub handshake_ms: u64,
}

fn default_handshake_ms() -> u64 {
    5000
}

/// As Redis's `tls-session-cache-size`.
fn default_session_cache_size() -> usize {
    20480
}

/// `tls.client_auth`: whether a client certificate is required when `client_ca_file` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Every client presents a certificate of the client CA (Redis's `tls-auth-clients yes`).
    #[default]
    Required,
    /// A client may present one (and is then checked) or none (Redis's `tls-auth-clients optional`).
    Optional,
}

/// `tls.min_version`: the oldest TLS version the listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// A TLS cipher suite rkproxy speaks (`tls.cipher_suites`, a pool's `cipher_suites`): its IANA name (as
/// OpenSSL and Redis's `tls-ciphersuites` write the TLS 1.3 ones), or for a TLS 1.2 suite also OpenSSL's name
/// (as Redis's `tls-ciphers` writes them). Every suite of rustls's ring provider, all AEAD with forward secrecy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CipherSuite {
    #[serde(rename = "TLS_AES_256_GCM_SHA384")]
    Tls13Aes256GcmSha384,
    #[serde(rename = "TLS_AES_128_GCM_SHA256")]
    Tls13Aes128GcmSha256,
    #[serde(rename = "TLS_CHACHA20_POLY1305_SHA256")]
    Tls13Chacha20Poly1305Sha256,
    #[serde(
        rename = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        alias = "ECDHE-ECDSA-AES256-GCM-SHA384"
    )]
    EcdheEcdsaAes256GcmSha384,
    #[serde(
        rename = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        alias = "ECDHE-ECDSA-AES128-GCM-SHA256"
    )]
    EcdheEcdsaAes128GcmSha256,
    #[serde(
        rename = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        alias = "ECDHE-ECDSA-CHACHA20-POLY1305"
    )]
    EcdheEcdsaChacha20Poly1305Sha256,
    #[serde(
        rename = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        alias = "ECDHE-RSA-AES256-GCM-SHA384"
    )]
    EcdheRsaAes256GcmSha384,
    #[serde(
        rename = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        alias = "ECDHE-RSA-AES128-GCM-SHA256"
    )]
    EcdheRsaAes128GcmSha256,
    #[serde(
        rename = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        alias = "ECDHE-RSA-CHACHA20-POLY1305"
    )]
    EcdheRsaChacha20Poly1305Sha256,
}

impl CipherSuite {
    /// A TLS 1.3 suite (the others are TLS 1.2's).
    pub fn is_tls13(self) -> bool {
        matches!(
            self,
            CipherSuite::Tls13Aes256GcmSha384
                | CipherSuite::Tls13Aes128GcmSha256
                | CipherSuite::Tls13Chacha20Poly1305Sha256
        )
    }
}

/// `cipher_suites` at `key` names a suite, and a TLS 1.3 one when `min_version` is 1.3.
pub(super) fn validate_cipher_suites(
    key: &str,
    suites: Option<&[CipherSuite]>,
    min_version: TlsVersion,
) -> Result<(), ConfigError> {
    let Some(suites) = suites else {
        return Ok(());
    };
    if suites.is_empty() {
        return Err(invalid(key, "names no cipher suite (leave it out for all)"));
    }
    if min_version == TlsVersion::Tls13 && !suites.iter().any(|suite| suite.is_tls13()) {
        return Err(invalid(
            key,
            "min_version = \"1.3\" needs a TLS 1.3 suite (TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256 \
             or TLS_CHACHA20_POLY1305_SHA256)",
        ));
    }
    Ok(())
}

impl ClientTlsConfig {
    /// `handshake_ms` is above 0; the cipher suites fit `min_version`; the mutual TLS keys have a client CA.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.handshake_ms == 0 {
            return Err(invalid("tls.handshake_ms", "must be above 0"));
        }
        validate_cipher_suites(
            "tls.cipher_suites",
            self.cipher_suites.as_deref(),
            self.min_version,
        )?;
        if self.client_ca_file.is_some() {
            return Ok(());
        }
        let needs_client_ca = "needs tls.client_ca_file (the CA of the client certificates)";
        if self.client_auth != ClientAuth::Required {
            return Err(invalid("tls.client_auth", needs_client_ca));
        }
        if self.client_crl_file.is_some() {
            return Err(invalid("tls.client_crl_file", needs_client_ca));
        }
        Ok(())
    }
}

impl Config {
    /// `tls_listen` parses and has `[tls]`; tenants' `tls_subject`s parse, are unique and have a client CA.
    pub(super) fn validate_tls(&self) -> Result<(), ConfigError> {
        if let Some(listen) = &self.tls_listen {
            listen.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "tls_listen",
                    format!("'{listen}' is not an ip:port address"),
                )
            })?;
            if self.tls.is_none() {
                return Err(invalid(
                    "tls",
                    "tls_listen needs [tls] with cert_file and key_file",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        let mut bound = Vec::new();
        for (name, tenant) in &self.tenants {
            let Some(text) = &tenant.tls_subject else {
                continue;
            };
            let key = format!("tenants.{name}.tls_subject");
            let subject = crate::subject::Subject::parse(text)
                .map_err(|problem| invalid(&key, problem.to_string()))?;
            if self
                .tls
                .as_ref()
                .and_then(|tls| tls.client_ca_file.as_ref())
                .is_none()
            {
                return Err(invalid(
                    key,
                    "needs tls.client_ca_file (clients prove their subject with a certificate)",
                ));
            }
            if bound.contains(&subject) {
                return Err(invalid(
                    key,
                    format!("another tenant is bound to '{subject}'"),
                ));
            }
            bound.push(subject);
        }
        Ok(())
    }
}
