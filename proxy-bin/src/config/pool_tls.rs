//! The TLS keys of a pool's connections to its backends (`tls`, `ca_file`, `crl_file`, `cert_file`,
//! `key_file`, `min_version`, `cipher_suites`): Redis pools and Kafka pools have the same seven, read and
//! checked here once.

use figment::value::Dict;
use serde::{Deserialize, Serialize};

use super::table::read_table;
use super::tls::validate_cipher_suites;
use super::{invalid, CipherSuite, ConfigError, TlsVersion};

/// The problem of a TLS key set on a pool without `tls = true`.
pub(super) const NEEDS_TLS: &str = "set `tls = true` to use it";

/// A pool's TLS keys, in the pool's own table (`[pools.NAME]`). Both pool types flatten it when written out;
/// it is read apart from the rest of the table ([`PoolTlsConfig::take_from`]), because serde cannot flatten a
/// struct into one that denies unknown fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTlsConfig {
    /// `tls`: connect to the backends over TLS.
    #[serde(rename = "tls", default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    /// With `tls`: the CA (PEM) that signs the backends' certificates; without it, the CAs of the system's trust
    /// store (for backends with publicly trusted certificates, as managed Redis and Kafka services have).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// With `tls`: the certificate revocation lists (PEM) of the backends' CAs; a backend whose certificate, or
    /// an intermediate of its chain, is revoked, or whose issuer has no list here, is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_file: Option<String>,
    /// With `tls`: a client certificate (PEM) for backends that require one, with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// With `cert_file`: its private key (unencrypted PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// With `tls`: the oldest TLS version the backends may speak (unset: 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    /// With `tls`: the cipher suites offered to the backends, in order of preference (unset: all rkproxy
    /// speaks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suites: Option<Vec<CipherSuite>>,
}

/// The keys of [`PoolTlsConfig`], as they are written in a pool's table.
const POOL_TLS_KEYS: &[&str] = &[
    "tls",
    "ca_file",
    "crl_file",
    "cert_file",
    "key_file",
    "min_version",
    "cipher_suites",
];

impl PoolTlsConfig {
    /// Takes the TLS keys out of the table of the pool at `key` and reads them; the other keys stay in `keys`
    /// for the pool's own type. An error names the pool and the key.
    pub(super) fn take_from(key: &str, keys: &mut Dict) -> Result<PoolTlsConfig, ConfigError> {
        let tls_keys: Dict = POOL_TLS_KEYS
            .iter()
            .filter_map(|field| keys.remove_entry(*field))
            .collect();
        read_table(key, tls_keys)
    }

    /// The other keys need `tls = true`; a client certificate needs its key; the cipher suites fit
    /// `min_version`. `key` is the pool's table.
    pub(super) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if !self.enabled {
            let set = [
                ("ca_file", self.ca_file.is_some()),
                ("crl_file", self.crl_file.is_some()),
                ("cert_file", self.cert_file.is_some()),
                ("key_file", self.key_file.is_some()),
                ("min_version", self.min_version.is_some()),
                ("cipher_suites", self.cipher_suites.is_some()),
            ];
            return match set
                .into_iter()
                .find_map(|(field, set)| set.then_some(field))
            {
                Some(field) => Err(invalid(format!("{key}.{field}"), NEEDS_TLS)),
                None => Ok(()),
            };
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(invalid(
                format!("{key}.cert_file"),
                "a client certificate needs both `cert_file` and `key_file`",
            ));
        }
        validate_cipher_suites(
            &format!("{key}.cipher_suites"),
            self.cipher_suites.as_deref(),
            self.min_version.unwrap_or_default(),
        )
    }
}
