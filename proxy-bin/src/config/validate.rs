//! [`Config::validate`]: what serde cannot check (addresses parse, the default pool exists, values are in range,
//! tenants fit the pools). Each section's own checks live beside its keys.

use std::net::SocketAddr;

use super::pools::PoolConfig;
use super::{invalid, Config, ConfigError};

impl Config {
    /// Checks what serde cannot: addresses parse, pools exist and have the right shape, tenants fit the pools.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_and_build_tenants().map(drop)
    }

    /// [`Config::validate`], returning the tenants it built to check them (`None` without tenants). Start and
    /// reload take the running tenants from here: tenant configuration becomes [`tenant_policy::Tenants`] in
    /// this one place, once per configuration taken up.
    pub fn validate_and_build_tenants(
        &self,
    ) -> Result<Option<tenant_policy::Tenants>, ConfigError> {
        self.listen_addr()?;
        self.validate_pools()?;
        self.validate_tls()?;
        self.timeouts.validate()?;
        let tenants = self.build_tenants()?;
        self.client_limits.validate()?;
        if let Some(metrics) = &self.metrics_listen {
            metrics.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "metrics_listen",
                    format!("'{metrics}' is not host:port: {e}"),
                )
            })?;
        }
        if self.slowlog.max_len > 100_000 {
            return Err(invalid("slowlog.max_len", "must be at most 100000"));
        }
        self.big_requests.validate()?;
        Ok(tenants)
    }

    /// There is a pool, `default_pool` names one, and each pool passes the checks of its kind.
    fn validate_pools(&self) -> Result<(), ConfigError> {
        if self.pools.is_empty() {
            return Err(invalid(
                "pools",
                "no pool is configured (add [pools.NAME] or pass --backend)",
            ));
        }
        if !self.pools.contains_key(&self.default_pool) {
            return Err(invalid(
                "default_pool",
                format!(
                    "pool '{}' is not defined (defined: {})",
                    self.default_pool,
                    self.pools.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        for (name, pool) in &self.pools {
            let key = format!("pools.{name}");
            match pool {
                PoolConfig::Standalone(redis) => redis.validate_standalone(&key)?,
                PoolConfig::Cluster(cluster) => cluster.validate(&key)?,
                PoolConfig::Kafka(kafka) => self.validate_kafka_pool(name, kafka)?,
            }
        }
        Ok(())
    }
}
