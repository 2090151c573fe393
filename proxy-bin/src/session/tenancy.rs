//! Tenants in the session: AUTH, rights, request rewriting (key prefix, default TTL), reply rewriting, traffic
//! limits, and the proxy's own commands `USE <pool>` and `RKPROXY ...`.
//!
//! The decisions are tenant-policy's; this module only applies them to the connection. Without tenants in the
//! configuration none of this runs and clients need no AUTH.
//!
//! Traffic limits: a request over the tenant's ops or bytes budget waits (the session stops reading from that
//! client) until the budget allows it, for at most the tenant's `limit_wait_ms`, then gets
//! `-ERR tenant '<name>' is over its <limit> limit`; the connection stays open. Reply bytes are charged as they
//! are written. On a dedicated connection (transaction, blocking command, subscription) an over-limit request is
//! refused at once rather than delayed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster_router::commands::CommandSpec;
use resp_codec::{parse_frame, Limits, Request};
use tenant_policy::{
    credentials, police, OverLimit, Policed, PolicyError, Tenant, Verdict as PolicyVerdict,
};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tracing::warn;

use super::errors::{AdminError, AuthError, ErrorReply};
use super::Session;
use crate::pools::PoolHandle;
use crate::reply;

/// What policing decided for one request, with the request to run.
pub(super) enum Verdict {
    /// Go on with this (possibly rewritten) request.
    Proceed(Request),
    /// Reply with this and do not run the request.
    Refuse(Bytes),
    /// Over a traffic limit for now: run it again at this instant.
    Later(Request, Instant),
}

impl Session {
    /// The tenant this connection is authenticated as.
    pub(super) fn tenant(&self) -> Option<&Arc<Tenant>> {
        self.tenant.as_ref().map(|permit| permit.tenant())
    }

    /// Whether the client still has to authenticate.
    pub(super) fn awaiting_auth(&self) -> bool {
        self.state.tenants().is_some() && self.tenant.is_none()
    }

    /// Applies the tenant's rules to a request about to run (tenant-policy's `police`). `may_wait`: a request
    /// over a traffic limit may be delayed (shared mode) rather than refused (dedicated mode).
    pub(super) fn police(
        &mut self,
        spec: &CommandSpec,
        request: Request,
        may_wait: bool,
    ) -> Verdict {
        let over_limit = if may_wait {
            OverLimit::Wait
        } else {
            OverLimit::Refuse
        };
        match self.police_request(Some(spec), &request, over_limit) {
            PolicyVerdict::Proceed => Verdict::Proceed(request),
            PolicyVerdict::Rewritten(args) => Verdict::Proceed(Request::from_args(args)),
            PolicyVerdict::Wait(delay) => Verdict::Later(request, Instant::now() + delay),
            PolicyVerdict::Refuse(error) => {
                self.stats.error(super::observe::refusal_kind(&error), 1);
                Verdict::Refuse(error.to_reply())
            }
        }
    }

    /// Asks tenant-policy about a request (`spec` is `None` for commands outside the command table, Kafka's).
    /// Without tenants in the configuration every request proceeds.
    pub(super) fn police_request(
        &self,
        spec: Option<&CommandSpec>,
        request: &Request,
        over_limit: OverLimit,
    ) -> PolicyVerdict {
        if self.state.tenants().is_none() {
            return PolicyVerdict::Proceed;
        }
        let policed = Policed {
            spec,
            args: request,
            pool: self.pool.name(),
            size: request.raw().len(),
            over_limit,
        };
        police(self.tenant().map(|tenant| &**tenant), policed)
    }

    /// The spec to rewrite this command's reply with (keys lose the tenant's prefix), if it needs one.
    pub(super) fn reply_rewrite(&self, spec: &'static CommandSpec) -> Option<&'static CommandSpec> {
        let tenant = self.tenant()?;
        tenant.reply_needs_rewrite(spec).then_some(spec)
    }

    /// Removes the tenant's prefix from the keys in a reply (one complete frame).
    pub(super) fn rewrite_reply_bytes(&self, spec: &CommandSpec, bytes: Bytes) -> Bytes {
        let Some(tenant) = self.tenant() else {
            return bytes;
        };
        if bytes.first() == Some(&b'-') {
            return bytes;
        }
        match parse_frame(&bytes, &Limits::default()) {
            Ok(Some((frame, _))) => tenant.rewrite_reply(spec, frame).to_bytes(),
            _ => bytes,
        }
    }

    /// Charges written reply bytes to the tenant's bytes budget.
    pub(super) fn charge_reply(&self, bytes: usize) {
        if let Some(tenant) = self.tenant() {
            tenant.account_reply(bytes);
        }
    }

    /// AUTH (and HELLO ... AUTH): find the tenant, count the connection, move to its pool and db.
    pub(super) fn authenticate(&mut self, spec: &CommandSpec, request: &Request) -> Bytes {
        let Some(tenants) = self.state.tenants() else {
            return AuthError::NoPassword.to_reply();
        };
        let found = match credentials(spec, request) {
            Ok(Some(found)) => found,
            Ok(None) => return reply::ok(),
            Err(error) => return error.to_reply(),
        };
        let tenant = match tenants.authenticate(found.username, found.password) {
            Ok(tenant) => tenant,
            Err(error) => return self.auth_failed(found.username, error.to_reply()),
        };
        // Re-AUTH as the same tenant keeps the connection's place; another tenant takes a new one.
        if self
            .tenant()
            .is_some_and(|current| Arc::ptr_eq(current, &tenant))
        {
            return reply::ok();
        }
        let permit = match tenant.try_connect() {
            Ok(permit) => permit,
            Err(error) => {
                // Over the tenant's connection limit: the error, then the connection is closed.
                self.closing = Some(super::SessionEnd::TenantConnectionLimit);
                return error.to_reply();
            }
        };
        let Some(pool) = self.state.pool(tenant.pool()).cloned() else {
            return AuthError::TenantPoolMissing {
                pool: tenant.pool().to_owned(),
                tenant: tenant.name().to_owned(),
            }
            .to_reply();
        };
        self.start_limits_refill(&tenant);
        self.tenant = Some(permit);
        self.unauthenticated = None;
        self.switch_pool(pool, tenant.db().unwrap_or(0));
        reply::ok()
    }

    /// A wrong password: logged (never the password) and counted; the reply waits for the client IP's growing
    /// delay; the `auth_max_failures`-th failure on this connection is answered with an error and closes it.
    fn auth_failed(&mut self, username: Option<&[u8]>, wrongpass: Bytes) -> Bytes {
        self.auth_failures = self.auth_failures.saturating_add(1);
        let delay = match self.peer.map(|addr| addr.ip()) {
            Some(ip) => self.state.auth_failures().failure(ip),
            None => Duration::ZERO,
        };
        let user = username.map(String::from_utf8_lossy);
        warn!(
            client.ip = ?self.peer.map(|addr| addr.ip()),
            user = %crate::backend::one_line(user.as_deref().unwrap_or("default")),
            failures_here = self.auth_failures,
            failures_total = self.state.auth_failures().total(),
            "AUTH failed"
        );
        self.reply_hold = Some(Instant::now() + delay);
        if self.auth_failures >= self.state.config().client_limits.auth_max_failures {
            self.closing = Some(super::SessionEnd::TooManyAuthFailures);
            return AuthError::TooManyFailures.to_reply();
        }
        wrongpass
    }

    /// With tenants configured, takes one of the `max_unauthenticated` places; over the cap the client gets
    /// an error and the session ends.
    pub(super) async fn admit_unauthenticated(&mut self) -> Result<(), super::SessionEnd> {
        if self.state.tenants().is_none() {
            return Ok(());
        }
        match self.state.admit_unauthenticated() {
            Some(permit) => {
                self.unauthenticated = Some(permit);
                Ok(())
            }
            None => {
                let refusal = AuthError::TooManyUnauthenticated.to_reply();
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.stream.write_all(&refusal))
                        .await;
                Err(super::SessionEnd::TooManyUnauthenticated)
            }
        }
    }

    /// Waits out a failed AUTH's delay before the next reply, but never past the auth deadline while the
    /// client has not authenticated.
    pub(super) async fn hold_replies(&mut self, until: Instant) -> Result<(), super::SessionEnd> {
        if self.awaiting_auth() && until >= self.auth_deadline {
            tokio::time::sleep_until(self.auth_deadline).await;
            return Err(super::SessionEnd::AuthTimeout);
        }
        tokio::time::sleep_until(until).await;
        Ok(())
    }

    /// Moves the session to another pool (after AUTH or USE). The caller made sure no reply is pending. A
    /// tenant with a `backend_user` gets the pool's connections that log in as that ACL user.
    pub(super) fn switch_pool(&mut self, pool: PoolHandle, db: u32) {
        let pool = pool.for_login(self.tenant().and_then(|tenant| tenant.backend_login()));
        self.route = None;
        self.retired = None;
        self.spare_dedicated = None;
        self.db = if matches!(pool, PoolHandle::Cluster(_)) {
            0
        } else {
            db
        };
        self.cluster = match &pool {
            PoolHandle::Cluster(cluster) => Some(super::cluster::ClusterSession::new(
                Arc::clone(cluster),
                self.worker,
            )),
            PoolHandle::Standalone(_) | PoolHandle::Kafka(_) => None,
        };
        self.pool = pool;
        self.relabel_stats();
    }

    /// The proxy's own commands, which are not Redis commands: `USE <pool>` and `RKPROXY TENANTS | POOL |
    /// RELOAD`. Returns `None` for any other command, and for `RKPROXY RELOAD`, whose reply a task queues.
    pub(super) fn proxy_command(&mut self, request: &Request) -> Option<Bytes> {
        let name = request.name();
        if name.eq_ignore_ascii_case(b"USE") {
            return Some(self.use_pool(request));
        }
        if !name.eq_ignore_ascii_case(b"RKPROXY") {
            return None;
        }
        if self.awaiting_auth() {
            return Some(PolicyError::NoAuth.to_reply());
        }
        let sub = request.arg(1).unwrap_or_default().to_ascii_uppercase();
        Some(match sub.as_slice() {
            b"POOL" => reply::bulk(self.pool.name().as_bytes()),
            b"RELOAD" => {
                self.start_reload();
                return None;
            }
            b"TENANTS" => {
                if let Some(tenant) = self.tenant() {
                    if let Err(error) = tenant.may_run_proxy_admin(b"RKPROXY TENANTS") {
                        return Some(error.to_reply());
                    }
                }
                let lines: Vec<String> = match self.state.tenants() {
                    Some(tenants) => tenants
                        .db_assignments()
                        .iter()
                        .map(|a| {
                            format!(
                                "tenant={} pool={} db={}{}",
                                a.tenant,
                                a.pool,
                                a.db,
                                if a.auto { " (auto)" } else { "" }
                            )
                        })
                        .collect(),
                    None => Vec::new(),
                };
                reply::array_of_bulks(lines.iter().map(String::as_bytes))
            }
            _ => AdminError::UnknownSubcommand.to_reply(),
        })
    }

    /// USE <pool>: this connection (only) switches pool.
    fn use_pool(&mut self, request: &Request) -> Bytes {
        if request.argc() != 2 {
            return reply::wrong_arity("use");
        }
        if self.awaiting_auth() {
            return PolicyError::NoAuth.to_reply();
        }
        let name = String::from_utf8_lossy(request.arg(1).unwrap_or_default()).into_owned();
        if let Some(tenant) = self.tenant() {
            if let Err(error) = tenant.may_use_pool(&name) {
                return error.to_reply();
            }
        }
        let Some(pool) = self.state.pool(&name).cloned() else {
            return AdminError::UnknownPool(name).to_reply();
        };
        let db = self.tenant().and_then(|t| t.db()).unwrap_or(0);
        self.switch_pool(pool, db);
        reply::ok()
    }
}

impl Session {
    /// The first connection of a tenant with a `limits_store` starts the task that keeps its shared budget's
    /// leases topped up from the store's Redis, on this worker, for the proxy's lifetime.
    pub(super) fn start_limits_refill(&self, tenant: &Arc<Tenant>) {
        let Some(budget) = tenant.shared_budget() else {
            return;
        };
        if !budget.claim_refiller() {
            return;
        }
        let Some(PoolHandle::Standalone(pool)) = self.state.pool(budget.pool()) else {
            // Without answers from a store the leases are ignored after STORE_GRACE: the limits hold per
            // process, as without limits_store.
            warn!(
                tenant = tenant.name(),
                pool = budget.pool(),
                "limits_store needs a standalone Redis pool; the tenant's limits hold per process"
            );
            return;
        };
        let connection = pool.shared_connection(self.worker, 0, 0, false);
        tokio::spawn(refill_shared_budget(
            Arc::clone(tenant),
            connection,
            self.state.shutdown_signal(),
        ));
    }
}

/// How often the refill task looks at the leases.
const REFILL_TICK: Duration = Duration::from_millis(5);

/// Keeps a tenant's leases topped up: every [`REFILL_TICK`], each lease below half a batch gets a batch from
/// the store (one EVAL of tenant-policy's token-bucket script per lease), until the proxy shuts down.
async fn refill_shared_budget(
    tenant: Arc<Tenant>,
    connection: crate::backend::SharedConnection,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(REFILL_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let Some(budget) = tenant.shared_budget() else {
            return;
        };
        for want in budget.wanted() {
            let mut request = bytes::BytesMut::new();
            let (rate, burst, tokens) = (
                want.rate.to_string(),
                want.burst.to_string(),
                want.tokens.to_string(),
            );
            resp_codec::encode_command(
                &mut request,
                [
                    &b"EVAL"[..],
                    tenant_policy::TOKEN_BUCKET_SCRIPT.as_bytes(),
                    b"1",
                    want.key.as_bytes(),
                    rate.as_bytes(),
                    burst.as_bytes(),
                    tokens.as_bytes(),
                ],
            );
            let reply = connection.send(request.freeze()).await;
            match reply.ok().and_then(Result::ok).as_deref().and_then(granted) {
                Some((tokens, wait_ms)) => {
                    budget.granted(want.limit, tokens, Duration::from_millis(wait_ms));
                }
                None => tracing::debug!(
                    tenant = tenant.name(),
                    "limits_store did not answer; the leases stay as they are"
                ),
            }
        }
    }
}

/// The token-bucket script's reply `[granted, ms until more]`.
fn granted(reply: &[u8]) -> Option<(u64, u64)> {
    let (frame, _) = parse_frame(reply, &Limits::default()).ok()??;
    let resp_codec::Frame::Array(items) = frame else {
        return None;
    };
    match items.as_slice() {
        [resp_codec::Frame::Integer(tokens), resp_codec::Frame::Integer(wait)] => {
            Some((u64::try_from(*tokens).ok()?, u64::try_from(*wait).ok()?))
        }
        _ => None,
    }
}

/// How long an unauthenticated connection may stay.
pub(super) fn auth_deadline(auth_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(auth_ms)
}
