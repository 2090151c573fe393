//! Reading a pool's table of keys into a typed struct, with errors that name the key that did not fit (used by
//! the pool kinds in `pools.rs` and by their shared TLS keys in `pool_tls.rs`).

use figment::value::{Dict, Tag, Value};
use serde::de::DeserializeOwned;

use super::{invalid, ConfigError};

/// The keys of a pool (`key` is its table) as a `T`; an error names the key that did not fit.
pub(super) fn read_table<T: DeserializeOwned>(key: &str, keys: Dict) -> Result<T, ConfigError> {
    read_value(key, &Value::Dict(Tag::Default, keys))
}

/// `value` (at `key`) as a `T`; an error names the key inside `value` that did not fit.
pub(super) fn read_value<T: DeserializeOwned>(key: &str, value: &Value) -> Result<T, ConfigError> {
    value.deserialize().map_err(|error: figment::Error| {
        let inner = error.path.iter().map(|part| format!(".{part}"));
        invalid(
            format!("{key}{}", inner.collect::<String>()),
            error.kind.to_string(),
        )
    })
}
