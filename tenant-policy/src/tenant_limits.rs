//! A tenant's limits as the proxy asks for them: traffic admission and reply accounting (through
//! its [`TrafficLimits`]), the request size limit and the connection count.
//!
//! Kept apart from `limits.rs` (the limiters, which know nothing of tenants) and `tenant.rs` (the
//! tenant's rights and rewrites, which own a `TrafficLimits`), so that neither imports the other's
//! user: `tenant_limits` → `tenant` → `limits`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::PolicyError;
use crate::limits::{Admission, TrafficLimits};
use crate::tenant::Tenant;

/// One of a tenant's connections, counted against its `max_connections` until dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    tenant: Arc<Tenant>,
}

impl ConnectionPermit {
    /// The tenant this connection belongs to.
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.tenant.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Tenant (limits) ===

impl Tenant {
    /// See [`TrafficLimits::admit`].
    pub fn admit(&self, request_bytes: usize) -> Admission {
        self.limits.admit(request_bytes)
    }

    /// See [`TrafficLimits::account_reply`].
    pub fn account_reply(&self, reply_bytes: usize) {
        self.limits.account_reply(reply_bytes);
    }

    /// The tenant's traffic limiters.
    pub fn limits(&self) -> &TrafficLimits {
        &self.limits
    }

    /// Refuses a request larger than `max_request_bytes`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use std::num::NonZeroUsize;
    /// use tenant_policy::{PoolInfo, TenantConfig, Tenants};
    ///
    /// let mut config = TenantConfig::new("pw", "main");
    /// config.max_request_bytes = NonZeroUsize::new(100);
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("t".to_owned(), config)]),
    ///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
    /// )
    /// .unwrap();
    /// let t = tenants.get("t").unwrap();
    /// assert!(t.check_request_size(100).is_ok());
    /// assert_eq!(
    ///     t.check_request_size(101).unwrap_err().to_string(),
    ///     "ERR request of 101 bytes is over tenant 't' limit of 100 bytes"
    /// );
    /// ```
    pub fn check_request_size(&self, len: usize) -> Result<(), PolicyError> {
        match self.max_request_bytes {
            Some(max) if len > max => Err(PolicyError::RequestTooLarge {
                tenant: self.name.clone(),
                size: len,
                max,
            }),
            _ => Ok(()),
        }
    }

    /// The largest request this tenant may send, if limited (the proxy can stop reading a
    /// request early once it is known to be bigger).
    pub fn max_request_bytes(&self) -> Option<usize> {
        self.max_request_bytes
    }

    /// Counts a new connection of this tenant, refusing it at `max_connections`. The count
    /// goes down when the permit is dropped.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use std::num::NonZeroUsize;
    /// use tenant_policy::{PoolInfo, TenantConfig, Tenants};
    ///
    /// let mut config = TenantConfig::new("pw", "main");
    /// config.max_connections = NonZeroUsize::new(1);
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("t".to_owned(), config)]),
    ///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
    /// )
    /// .unwrap();
    /// let t = tenants.get("t").unwrap();
    /// let permit = t.try_connect().unwrap();
    /// assert_eq!(
    ///     t.try_connect().unwrap_err().to_string(),
    ///     "ERR tenant 't' has too many connections (max 1)"
    /// );
    /// drop(permit);
    /// assert!(t.try_connect().is_ok());
    /// ```
    pub fn try_connect(self: &Arc<Self>) -> Result<ConnectionPermit, PolicyError> {
        let max = self.max_connections.unwrap_or(usize::MAX);
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| PolicyError::TooManyConnections {
                tenant: self.name.clone(),
                max,
            })?;
        Ok(ConnectionPermit {
            tenant: self.clone(),
        })
    }

    /// Counts on this tenant a connection that `permit` counted on another `Tenant` of the same
    /// name (the tenant as configured before a reload), and gives back the permit for this one.
    /// The connection is never refused: it is open already, so it stays open even when the new
    /// `max_connections` is lower than the count; new connections are refused until the count
    /// is below it again.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use std::num::NonZeroUsize;
    /// use tenant_policy::{PoolInfo, TenantConfig, Tenants};
    ///
    /// let pools = BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]);
    /// let before = Tenants::new(&BTreeMap::from([("t".to_owned(), TenantConfig::new("pw", "main"))]), &pools)
    ///     .unwrap();
    /// let mut config = TenantConfig::new("pw2", "main");
    /// config.max_connections = NonZeroUsize::new(1);
    /// let after = Tenants::new(&BTreeMap::from([("t".to_owned(), config)]), &pools).unwrap();
    /// let (old, new) = (before.get("t").unwrap(), after.get("t").unwrap());
    /// let permits = [old.try_connect().unwrap(), old.try_connect().unwrap()];
    /// let moved: Vec<_> = permits.into_iter().map(|p| new.adopt_connection(p)).collect();
    /// assert_eq!((old.connection_count(), new.connection_count()), (0, 2));
    /// assert!(new.try_connect().is_err());
    /// drop(moved);
    /// assert!(new.try_connect().is_ok());
    /// ```
    pub fn adopt_connection(self: &Arc<Self>, permit: ConnectionPermit) -> ConnectionPermit {
        if Arc::ptr_eq(&permit.tenant, self) {
            return permit;
        }
        self.connections.fetch_add(1, Ordering::AcqRel);
        drop(permit);
        ConnectionPermit {
            tenant: self.clone(),
        }
    }

    /// How many connections the tenant has now.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }
}
