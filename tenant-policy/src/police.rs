//! [`police`]: the one entry point that decides what happens to a request the proxy is about to
//! run, Redis or Kafka.
//!
//! It applies, in this order: authentication (before AUTH only [`allowed_before_auth`]
//! commands pass), rights ([`Tenant::authorize`], then [`Tenant::check_scripts`] and
//! [`Tenant::check_channels`] for the pool the connection is on), the request size limit
//! ([`Tenant::check_request_size`]), traffic admission ([`Tenant::admit`], which charges the
//! request) and the request rewrite ([`Tenant::rewrite_request`]: key prefix, key pattern,
//! default TTL). The first refusal wins. Every refusal is a [`PolicyError`], so each text is
//! defined once, in this crate, whichever path of the proxy meets it.

use std::time::Duration;

use bytes::Bytes;
use cluster_router::{Args, CommandSpec};

use crate::error::PolicyError;
use crate::limits::Admission;
use crate::rewrite::Rewrite;
use crate::tenant::{allowed_before_auth, Tenant};

/// Commands that are administrative when a server runs them, but that the proxy answers itself
/// for tenants without that right, so policing lets them through: INFO (a tenant that is not an
/// admin gets the proxy's own INFO, which shows nothing of the server or of other tenants),
/// SLOWLOG (the proxy's own slow log, of which a tenant sees and resets only its own entries), and
/// CLIENT LIST and CLIENT KILL (the proxy's own sessions, of which a tenant lists and closes only
/// its own).
pub const ANSWERED_BY_THE_PROXY_FOR_NON_ADMINS: &[&str] = &[
    "client|kill",
    "client|list",
    "info",
    "slowlog|get",
    "slowlog|help",
    "slowlog|len",
    "slowlog|reset",
];

/// A request to police.
#[derive(Debug)]
pub struct Policed<'a, A: ?Sized> {
    /// The command table's entry for it, or `None` for a command outside the table (the
    /// proxy's Kafka commands, KPUSH and friends): those are checked for size and traffic
    /// only; the table gives them no rights to check and no keys to rewrite.
    pub spec: Option<&'a CommandSpec>,
    /// Its arguments, argument 0 being the command name.
    pub args: &'a A,
    /// The pool the connection is on (scripts are refused on a pool shared between tenants).
    pub pool: &'a str,
    /// Its size on the wire, in bytes: what the size limit and the bytes limit count.
    pub size: usize,
    /// What to do if it is over a traffic limit.
    pub over_limit: OverLimit,
}

/// What to do with a request that is over one of the tenant's traffic limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverLimit {
    /// Let it wait for the budget, up to the tenant's `limit_wait_ms` ([`Verdict::Wait`]);
    /// longer than that, refuse it.
    Wait,
    /// Refuse it at once ([`PolicyError::OverLimit`]): for a connection that cannot be held
    /// back, such as a dedicated one in a transaction or a subscription.
    Refuse,
}

/// What [`police`] decided. Not `non_exhaustive`: a caller must handle every outcome, and a new
/// one should not compile until it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run the request as the client sent it. It has been charged to the traffic limits.
    Proceed,
    /// Run these arguments instead (re-encode them with `resp_codec::encode_command`). The
    /// request has been charged to the traffic limits.
    Rewritten(Vec<Bytes>),
    /// Over a traffic limit for now; nothing was charged. Police the request again after this
    /// long (meanwhile, read nothing more from that client, so its requests keep their order).
    Wait(Duration),
    /// Do not run it; reply with this error.
    Refuse(PolicyError),
}

/// Polices one request of a connection authenticated as `tenant`, or of a connection that has
/// not authenticated yet (`None`; only call this when tenants are configured: without them
/// there is nothing to police).
///
/// ```
/// use std::collections::BTreeMap;
/// use cluster_router::lookup;
/// use tenant_policy::{police, OverLimit, Policed, PolicyError, PoolInfo, TenantConfig, Tenants, Verdict};
///
/// let mut config = TenantConfig::new("s3cret", "main");
/// config.key_prefix = Some("app1:".to_owned());
/// let tenants = Tenants::new(
///     &BTreeMap::from([("app1".to_owned(), config)]),
///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
/// )
/// .unwrap();
/// let app1 = tenants.get("app1").map(|tenant| &**tenant);
///
/// let get: &[&[u8]] = &[b"GET", b"foo"];
/// let request = |tenant| police(tenant, Policed {
///     spec: Some(lookup(&get).unwrap()),
///     args: get,
///     pool: "main",
///     size: 22,
///     over_limit: OverLimit::Wait,
/// });
/// assert_eq!(request(None), Verdict::Refuse(PolicyError::NoAuth));
/// assert_eq!(request(app1), Verdict::Rewritten(vec!["GET".into(), "app1:foo".into()]));
///
/// // A Kafka command: no table entry, so only size and traffic apply.
/// let kpush: &[&[u8]] = &[b"KPUSH", b"events", b"hello"];
/// let verdict = police(app1, Policed { spec: None, args: kpush, pool: "main", size: 40, over_limit: OverLimit::Wait });
/// assert_eq!(verdict, Verdict::Proceed);
/// ```
pub fn police<A: Args + ?Sized>(tenant: Option<&Tenant>, request: Policed<'_, A>) -> Verdict {
    let Some(tenant) = tenant else {
        return match request.spec {
            Some(spec) if allowed_before_auth(spec) => Verdict::Proceed,
            _ => Verdict::Refuse(PolicyError::NoAuth),
        };
    };
    if let Err(error) = check_before_charging(tenant, &request) {
        return Verdict::Refuse(error);
    }
    match request.over_limit {
        OverLimit::Wait => match tenant.admit(request.size) {
            Admission::Ok => {}
            Admission::Wait(wait) => return Verdict::Wait(wait),
            Admission::Reject(error) => return Verdict::Refuse(error),
        },
        OverLimit::Refuse => {
            if let Err(error) = tenant.limits.admit_without_waiting(request.size) {
                return Verdict::Refuse(error);
            }
        }
    }
    let Some(spec) = request.spec else {
        return Verdict::Proceed;
    };
    match tenant.rewrite_request(spec, &request.args) {
        Ok(Rewrite::Unchanged) => Verdict::Proceed,
        Ok(Rewrite::Args(args)) => Verdict::Rewritten(args),
        Err(error) => Verdict::Refuse(error),
    }
}

/// Rights (including scripts and channels on a shared pool) and size: the checks that cost the tenant nothing when they refuse.
fn check_before_charging<A: Args + ?Sized>(
    tenant: &Tenant,
    request: &Policed<'_, A>,
) -> Result<(), PolicyError> {
    if let Some(spec) = request.spec {
        if let Err(error) = tenant.authorize(spec, &request.args) {
            if !ANSWERED_BY_THE_PROXY_FOR_NON_ADMINS.contains(&spec.name) {
                return Err(error);
            }
        }
        tenant.check_scripts(spec, request.pool)?;
        tenant.check_channels(spec, request.pool)?;
    }
    tenant.check_request_size(request.size)
}
