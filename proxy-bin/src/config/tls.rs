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
    /// Mutual TLS: every client must present a certificate signed by this CA (a tenant with `tls_subject`
    /// is then logged in by its certificate, without AUTH).
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// A client that has not finished its handshake by then is closed.
    #[serde(default = "default_handshake_ms")]
    pub handshake_ms: u64,
}

fn default_handshake_ms() -> u64 {
    5000
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
        if self.tls.as_ref().is_some_and(|tls| tls.handshake_ms == 0) {
            return Err(invalid("tls.handshake_ms", "must be above 0"));
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
