//! The pools layer: each configured pool as a standalone Redis, a Redis Cluster or a Kafka cluster, and the
//! shared backend connections it hands out.
//!
//! Pools sit below sessions and above backend connections: a session asks its pool for a connection (passing
//! the index of the worker thread it runs on, since each worker has its own connections), and a pool never
//! knows about sessions or the listener. [`PoolHandle`] is the cheap, cloneable reference to one pool that
//! sessions and the shared state hold.

pub mod acl_check;
pub mod big_lane;
pub mod cluster;
pub mod kafka;
pub mod standalone;

use std::sync::Arc;

use tenant_policy::BackendLogin;

use crate::backend::Endpoint;
use crate::config::{AddressError, Config, PoolConfig};
use crate::tls::BackendTls;

use self::big_lane::BigLanes;
use self::cluster::ClusterPool;
use self::kafka::KafkaPool;
use self::standalone::StandalonePool;

/// Why a pool could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("pool '{0}' has no node")]
    NoNode(String),
    #[error("bad node address '{0}'")]
    BadNode(String),
    #[error(transparent)]
    SlotMap(#[from] cluster_router::topology::TopologyError),
    #[error("fetch_max_bytes is too large")]
    FetchMaxBytesTooLarge,
    #[error("'{0}' is not a SASL mechanism Kafka offers")]
    UnknownSaslMechanism(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::PoolTlsError),
    #[error("pools.{pool}.offsets.pool: pool '{store_pool}' is not a standalone pool of this configuration")]
    OffsetsPoolUndefined { pool: String, store_pool: String },
    #[error("pools.{pool}.offsets.pool: pool '{store_pool}' has no node")]
    OffsetsPoolWithoutNode { pool: String, store_pool: String },
    #[error("pools.{0}.offsets: name `redis` or `pool`")]
    OffsetsStoreUnnamed(String),
}

/// One pool, of any kind.
#[derive(Clone, Debug)]
pub enum PoolHandle {
    Standalone(Arc<StandalonePool>),
    Cluster(Arc<ClusterPool>),
    Kafka(Arc<KafkaPool>),
}

impl PoolHandle {
    /// Builds pool `name`. Standalone backends are connected lazily, when clients first need them; a cluster pool
    /// reads its first slot map here; a Kafka pool connects in the background.
    pub async fn start(
        name: &str,
        pool: &PoolConfig,
        config: &Config,
    ) -> Result<PoolHandle, PoolError> {
        Self::start_replacing(name, pool, config, None).await
    }

    /// Builds pool `name` like [`PoolHandle::start`], to replace `previous` (the pool of that name before a
    /// configuration reload, whose settings changed): a Kafka pool keeps the previous one's offsets when both
    /// keep them in memory ([`KafkaPool::keep_memory_offsets`]).
    pub async fn start_replacing(
        name: &str,
        pool: &PoolConfig,
        config: &Config,
        previous: Option<&PoolHandle>,
    ) -> Result<PoolHandle, PoolError> {
        Ok(match pool {
            PoolConfig::Standalone(redis) => {
                PoolHandle::Standalone(Arc::new(StandalonePool::new(name, redis, config)?))
            }
            PoolConfig::Cluster(cluster) => {
                let cluster = Arc::new(ClusterPool::new(name, cluster, config)?);
                cluster.start().await;
                PoolHandle::Cluster(cluster)
            }
            PoolConfig::Kafka(kafka) => {
                // Connects in the background: a broker that is down must not stop the proxy starting.
                let mut kafka = KafkaPool::new(name, kafka, config)?;
                if let Some(PoolHandle::Kafka(previous)) = previous {
                    kafka.keep_memory_offsets(previous);
                }
                let kafka = Arc::new(kafka);
                kafka.start();
                PoolHandle::Kafka(kafka)
            }
        })
    }

    /// Whether both handles are the same pool (a reload that left a pool's settings alone keeps its handle),
    /// whatever ACL user their connections log in as ([`PoolHandle::for_login`]).
    pub fn same_pool(&self, other: &PoolHandle) -> bool {
        match (self, other) {
            (PoolHandle::Standalone(a), PoolHandle::Standalone(b)) => a.same_node(b),
            (PoolHandle::Cluster(a), PoolHandle::Cluster(b)) => a.same_core(b),
            (PoolHandle::Kafka(a), PoolHandle::Kafka(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The same pool, seen by a tenant whose backend connections log in as `login` (its `backend_user`):
    /// connections of its own to every node, shared only by that tenant's clients. `None`: the pool's own
    /// credentials and shared connections. Kafka pools have no Redis user and are returned as they are.
    pub fn for_login(&self, login: Option<&BackendLogin>) -> PoolHandle {
        match self {
            PoolHandle::Standalone(pool) if pool.login() != login => {
                PoolHandle::Standalone(Arc::new(pool.for_login(login)))
            }
            PoolHandle::Cluster(pool) if pool.login() != login => {
                PoolHandle::Cluster(Arc::new(pool.for_login(login)))
            }
            _ => self.clone(),
        }
    }

    /// The ACL user this handle's connections log in as, when not the pool's own (see [`PoolHandle::for_login`]).
    pub fn login(&self) -> Option<&BackendLogin> {
        match self {
            PoolHandle::Standalone(pool) => pool.login(),
            PoolHandle::Cluster(pool) => pool.login(),
            PoolHandle::Kafka(_) => None,
        }
    }

    /// The pool's big-request lanes (Kafka pools have none).
    pub fn big_lanes(&self) -> Option<&BigLanes> {
        match self {
            PoolHandle::Standalone(pool) => Some(pool.big_lanes()),
            PoolHandle::Cluster(pool) => Some(pool.big_lanes()),
            PoolHandle::Kafka(_) => None,
        }
    }

    /// The TLS settings every connection of a Redis pool shares (`None`: plaintext, or a Kafka pool, whose
    /// files [`KafkaPool::tls_files_changed`] checks instead), for a reload to read their files again.
    pub fn backend_tls(&self) -> Option<&Arc<BackendTls>> {
        match self {
            PoolHandle::Standalone(pool) => pool.endpoint_template().tls.as_ref(),
            PoolHandle::Cluster(pool) => pool.endpoint_template().tls.as_ref(),
            PoolHandle::Kafka(_) => None,
        }
    }

    /// When the TLS client certificate the pool presents to its nodes or brokers expires (seconds since 1970).
    pub fn client_certificate_expiry(&self) -> Option<i64> {
        match self {
            PoolHandle::Kafka(pool) => pool.client_certificate_expiry(),
            _ => self.backend_tls()?.client_certificate_expiry(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            PoolHandle::Standalone(pool) => pool.name(),
            PoolHandle::Cluster(pool) => pool.name(),
            PoolHandle::Kafka(pool) => pool.name(),
        }
    }
}

/// `endpoint` logging in as a tenant's ACL user (`AUTH user password`, or `HELLO 3 AUTH user password`)
/// instead of with the pool's own credentials; unchanged for `None`.
fn logged_in_as(endpoint: Endpoint, login: Option<&BackendLogin>) -> Endpoint {
    match login {
        Some(login) => Endpoint {
            username: Some(login.user().to_owned()),
            password: Some(login.password().to_owned()),
            ..endpoint
        },
        None => endpoint,
    }
}
