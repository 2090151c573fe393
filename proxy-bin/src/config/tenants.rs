//! `[tenants]`: the one place tenant configuration becomes [`tenant_policy::Tenants`], and the checks that
//! tie tenants to pools (a `backend_user` needs a Redis pool; a Kafka topic names only tenants that reach it).

use super::kafka::DEFAULT_KAFKA_TENANT;
use super::pools::PoolKind;
use super::{invalid, Config, ConfigError};

impl Config {
    /// The tenants, checked against the pools (`None` when no tenant is configured). Called by
    /// [`Config::validate_and_build_tenants`] only, so every start and reload builds them once.
    pub(super) fn build_tenants(&self) -> Result<Option<tenant_policy::Tenants>, ConfigError> {
        if self.tenants.is_empty() {
            return Ok(None);
        }
        let pools = self
            .pools
            .iter()
            .map(|(name, pool)| {
                let info = match pool.kind() {
                    PoolKind::Standalone => tenant_policy::PoolInfo::standalone(),
                    PoolKind::Cluster => tenant_policy::PoolInfo::cluster(),
                    // Kafka has no databases; db 0 is all a tenant of a Kafka pool can have.
                    PoolKind::Kafka => tenant_policy::PoolInfo::with_databases(1),
                };
                (name.clone(), info)
            })
            .collect();
        self.check_backend_users_have_redis_pools()?;
        tenant_policy::Tenants::new(&self.tenants, &pools)
            .map(Some)
            .map_err(|error| invalid(error.key.clone(), error.problem.clone()))
    }

    /// A tenant's `backend_user` is a Redis ACL user: a tenant configured only on Kafka pools has no
    /// connection that would log in as it.
    fn check_backend_users_have_redis_pools(&self) -> Result<(), ConfigError> {
        for (name, tenant) in &self.tenants {
            if tenant.backend_user.is_none() {
                continue;
            }
            let on_redis = std::iter::once(&tenant.pool)
                .chain(&tenant.pools)
                .filter_map(|pool| self.pools.get(pool))
                .any(|pool| pool.kind() != PoolKind::Kafka);
            if !on_redis {
                return Err(invalid(
                    format!("tenants.{name}.backend_user"),
                    "the tenant is configured on no Redis pool (Kafka pools have no Redis ACL user); \
                     remove backend_user and backend_password",
                ));
            }
        }
        Ok(())
    }

    /// A producer or consumer name must be `*` or a tenant that can reach the pool (`default` without tenants).
    pub(super) fn check_kafka_tenant(
        &self,
        pool: &str,
        tenant: &str,
    ) -> Result<(), KafkaTenantError> {
        if tenant == "*" {
            return Ok(());
        }
        if self.tenants.is_empty() {
            if tenant == DEFAULT_KAFKA_TENANT {
                return Ok(());
            }
            return Err(KafkaTenantError::NoTenants(tenant.to_owned()));
        }
        let Some(config) = self.tenants.get(tenant) else {
            return Err(KafkaTenantError::Unknown {
                tenant: tenant.to_owned(),
                known: self.tenants.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        if config.pool == pool || config.pools.iter().any(|p| p == pool) || config.admin {
            Ok(())
        } else {
            Err(KafkaTenantError::Unreachable {
                tenant: tenant.to_owned(),
                pool: pool.to_owned(),
            })
        }
    }
}

/// A producer or consumer of a Kafka topic that is not `*` nor a tenant that can reach the pool.
#[derive(Debug, thiserror::Error)]
pub(super) enum KafkaTenantError {
    #[error(
        "'{0}' is not a tenant: without [tenants] every client is '{default}' (or use \"*\")",
        default = DEFAULT_KAFKA_TENANT
    )]
    NoTenants(String),
    #[error("'{tenant}' is not a configured tenant (tenants: {known})")]
    Unknown { tenant: String, known: String },
    #[error(
        "tenant '{tenant}' cannot reach pool '{pool}': make it the tenant's `pool` or add it to its `pools`"
    )]
    Unreachable { tenant: String, pool: String },
}
