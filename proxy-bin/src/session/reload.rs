//! A session and configuration reloads: moving to the newest configuration, and `RKPROXY RELOAD`.
//!
//! A reload publishes a new `ProxyState` (see `state/reload.rs`); a session moves to it only at a barrier, when
//! it owes the client no reply (so no reply can overtake another), and not while it is on a dedicated
//! connection (a transaction, a subscription or a blocking command finish first). There it:
//! - keeps its pool when the reload kept the pool (same handle, same backend connections), and moves to the
//!   rebuilt pool of the same name, with its db and protocol, when the pool's settings changed;
//! - keeps its tenant, now with the new settings (rights, limits, prefix, db); a changed password matters only
//!   for the next AUTH, so the open connection keeps working;
//! - for a removed tenant, answers the next request with [`Retired::TenantRemoved`] and closes; for a removed
//!   pool, or one the tenant may no longer use, answers every request but USE, AUTH, QUIT and RKPROXY with an
//!   error naming it, until the client moves to another pool.
//!
//! On a dedicated connection only a removed tenant is looked for, whenever the connection owes no reply: a
//! subscriber (at its next message or command) or a client between the commands of a transaction gets the
//! error and is closed. A blocking command waiting for its reply is left to finish.

use bytes::Bytes;
use resp_codec::Request;
use tokio::sync::oneshot;

use super::errors::{AdminError, ErrorReply};
use super::pending::{Expect, Pending};
use super::{Session, SessionEnd};
use crate::pools::PoolHandle;
use crate::reply;

/// Why a session cannot serve requests any more after a reload; the text is the error reply.
#[derive(Debug, thiserror::Error)]
pub(super) enum Retired {
    #[error("ERR tenant '{0}' was removed by a configuration reload")]
    TenantRemoved(String),
    #[error("ERR pool '{0}' was removed by a configuration reload; USE another pool")]
    PoolRemoved(String),
    #[error(
        "ERR tenant '{tenant}' may no longer use pool '{pool}' after a configuration reload; USE one of its pools"
    )]
    PoolNotAllowed { tenant: String, pool: String },
}

impl ErrorReply for Retired {}

impl Session {
    /// At a barrier: moves the session to the newest configuration if a reload published one since the
    /// session last looked (one relaxed atomic load when none did). Returns whether it moved.
    pub(super) fn adopt_newest_state(&mut self) -> bool {
        if self.state.is_newest() {
            return false;
        }
        let Some(newest) = self.state.newest() else {
            return false;
        };
        self.state = newest;
        self.move_to_rebuilt_pool();
        self.carry_tenant_over();
        true
    }

    /// Keeps the pool when the reload kept it; moves to the pool of the same name when it was rebuilt.
    fn move_to_rebuilt_pool(&mut self) {
        let name = self.pool.name().to_owned();
        match self.state.pool(&name) {
            Some(pool) if pool.same_pool(&self.pool) => {}
            Some(pool) => {
                let (pool, db) = (pool.clone(), self.db);
                self.switch_pool(pool, db);
            }
            None => self.retired = Some(Retired::PoolRemoved(name)),
        }
    }

    /// Moves the connection's tenant permit to the tenant of the same name in the new configuration (its count
    /// follows; an open connection is never refused for the new `max_connections`).
    fn carry_tenant_over(&mut self) {
        let Some(permit) = self.tenant.take() else {
            return;
        };
        let name = permit.tenant().name().to_owned();
        let old_db = permit.tenant().db();
        let Some(tenant) = self.state.tenants().and_then(|t| t.get(&name)).cloned() else {
            self.retired = Some(Retired::TenantRemoved(name));
            return;
        };
        self.tenant = Some(tenant.adopt_connection(permit));
        // A backend_user gained, lost or changed: the connections that log in as the new one.
        if self.pool.login() != tenant.backend_login() && !matches!(self.pool, PoolHandle::Kafka(_))
        {
            let (pool, db) = (self.pool.clone(), self.db);
            self.switch_pool(pool, db);
        }
        if self.retired.is_none() && tenant.may_use_pool(self.pool.name()).is_err() {
            self.retired = Some(Retired::PoolNotAllowed {
                tenant: name,
                pool: self.pool.name().to_owned(),
            });
            return;
        }
        // The tenant's fixed db was changed: its next command goes to the new one.
        if tenant.db() != old_db && !matches!(self.pool, PoolHandle::Cluster(_)) {
            self.db = tenant.db().unwrap_or(0);
            self.route = None;
            self.spare_dedicated = None;
        }
    }

    /// The reply for `request` when a reload retired this session's tenant or pool (see [`Retired`]); `None`
    /// when the request runs. A removed tenant's connection closes after this reply.
    pub(super) fn refuse_after_reload(&mut self, request: &Request) -> Option<Bytes> {
        let retired = self.retired.as_ref()?;
        if let Retired::TenantRemoved(_) = retired {
            self.closing = Some(SessionEnd::TenantRemoved);
        } else {
            let name = request.name();
            if [&b"USE"[..], b"AUTH", b"QUIT", b"RKPROXY"]
                .iter()
                .any(|allowed| name.eq_ignore_ascii_case(allowed))
            {
                return None;
            }
        }
        let refusal = retired.to_reply();
        self.flush_batch();
        Some(refusal)
    }

    /// On a dedicated connection, which takes up a new configuration only once it is back on shared ones: the
    /// error for a tenant that a reload removed, if this connection's was (the connection then closes). One
    /// relaxed atomic load when no reload happened.
    pub(super) fn tenant_removed_by_reload(&self) -> Option<Bytes> {
        if self.state.is_newest() {
            return None;
        }
        let name = self.tenant()?.name();
        let newest = self.state.newest()?;
        if newest
            .tenants()
            .is_some_and(|tenants| tenants.get(name).is_some())
        {
            return None;
        }
        Some(Retired::TenantRemoved(name.to_owned()).to_reply())
    }

    /// `RKPROXY RELOAD`: reads the configuration again as at start and reloads it, in a task; the reply (what
    /// changed, or the key and the problem) keeps its place in the reply queue. Admins only when tenants are
    /// configured.
    pub(super) fn start_reload(&mut self) {
        if let Some(tenant) = self.tenant() {
            if let Err(error) = tenant.may_run_proxy_admin(b"RKPROXY RELOAD") {
                self.pending.push_back(Pending::Ready(error.to_reply()));
                return;
            }
        }
        let Some(live) = self.state.live() else {
            let stopped = AdminError::ShuttingDown.to_reply();
            self.pending.push_back(Pending::Ready(stopped));
            return;
        };
        let (sender, receiver) = oneshot::channel();
        tokio::spawn(async move {
            let reply = match live.reload_from_source().await {
                Ok(report) => reply::simple(&format!("OK {report}")),
                Err(error) => AdminError::ReloadRefused(error.to_string()).to_reply(),
            };
            let _ = sender.send(Ok(reply));
        });
        self.pending
            .push_back(Pending::Waiting(receiver, Expect::Forward));
    }
}
