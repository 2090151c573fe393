//! The start-up (and reload) check of tenants' `backend_user`s: before the proxy relies on Redis to keep a
//! tenant's scripts inside its keys, it asks every server of the tenant's pools whether the ACL user's rules
//! really do (`ACL DRYRUN`, on a connection with the pool's own credentials, which runs nothing), and logs in
//! as the user once (a wrong password, or a `db` the user may not SELECT, shows there).
//!
//! What is asked, for a tenant on a pool it shares with other tenants (alone on a pool, only the login and its
//! own keys are checked: nobody else's data is there):
//! - with a key prefix `P`: `GET P...` allowed; `GET` of a key outside `P` and of every other tenant's prefix
//!   refused; `PUBLISH` to a channel outside `P` refused; RANDOMKEY and DBSIZE refused;
//! - without a key prefix: `PUBLISH` refused (its channels would be every tenant's);
//! - with a `db` on a standalone pool: `SELECT` of another db refused; SWAPDB, MOVE and `COPY ... DB n` refused;
//! - always: every FUNCTION subcommand refused (the libraries are one per server), FLUSHALL, FLUSHDB and
//!   SLOWLOG refused (a script could call them).
//!
//! A definite answer that breaks a rule refuses the start (or the reload) with a message naming the tenant,
//! the server and the rule. A server that cannot be reached is logged and skipped: a backend that is down
//! never stops the proxy from starting, and Redis applies whatever rules the user has once it is back.

use std::collections::HashMap;

use bytes::BytesMut;
use resp_codec::{encode_command, parse_frame, Frame, Limits};
use tenant_policy::{BackendLogin, Tenant, Tenants};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use super::PoolHandle;
use crate::backend::{connect, ConnectError, Endpoint};

/// Why a tenant's `backend_user` is not what the proxy needs. Each names the tenant, the user, the server and
/// the pool ([`Where`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendUserError {
    #[error(
        "config key `tenants.{}.backend_user`: '{}' cannot log in to {} (pool '{}'): {reason}",
        .at.tenant, .at.user, .at.node, .at.pool
    )]
    Login { at: Box<Where>, reason: String },
    #[error(
        "config key `tenants.{}.backend_user`: on {} (pool '{}') '{}' may run `{command}` ({why}); its ACL rules \
         need {rule}",
        .at.tenant, .at.node, .at.pool, .at.user
    )]
    TooWide {
        at: Box<Where>,
        command: String,
        why: &'static str,
        rule: String,
    },
    #[error(
        "config key `tenants.{}.backend_user`: on {} (pool '{}') '{}' may not run `{command}` ({why}): {answer}; \
         its ACL rules need {rule}",
        .at.tenant, .at.node, .at.pool, .at.user
    )]
    TooNarrow {
        at: Box<Where>,
        command: String,
        why: &'static str,
        answer: String,
        rule: String,
    },
    #[error(
        "config key `tenants.{}.backend_user`: cannot check '{}' on {} (pool '{}'): `ACL DRYRUN` answered \
         {answer} (the pool's own user needs `+acl|dryrun`, and the ACL user must exist on every server of the \
         pool)",
        .at.tenant, .at.user, .at.node, .at.pool
    )]
    CannotAsk { at: Box<Where>, answer: String },
}

/// Where a check ran: the tenant, its ACL user, the server and the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Where {
    pub tenant: String,
    pub user: String,
    pub node: String,
    pub pool: String,
}

/// One question for `ACL DRYRUN`: a command, whether the user must be allowed it, why, and the rule.
#[derive(Debug)]
struct Probe {
    args: Vec<Vec<u8>>,
    allowed: bool,
    why: &'static str,
    rule: String,
}

impl Probe {
    fn refused(args: &[&[u8]], why: &'static str, rule: impl Into<String>) -> Probe {
        Probe {
            args: args.iter().map(|arg| arg.to_vec()).collect(),
            allowed: false,
            why,
            rule: rule.into(),
        }
    }

    fn allowed(args: &[&[u8]], why: &'static str, rule: impl Into<String>) -> Probe {
        Probe {
            allowed: true,
            ..Probe::refused(args, why, rule)
        }
    }

    /// The command as the operator would type it.
    fn command_line(&self) -> String {
        self.args
            .iter()
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The key name the probes use inside a prefix.
const PROBE_KEY: &[u8] = b"rkproxy-acl-check";

/// Checks every tenant with a `backend_user` against the servers of each Redis pool it is configured on.
pub async fn check_backend_users(
    tenants: Option<&Tenants>,
    pools: &HashMap<String, PoolHandle>,
) -> Result<(), BackendUserError> {
    let Some(tenants) = tenants else {
        return Ok(());
    };
    for tenant in tenants.iter() {
        let Some(login) = tenant.backend_login() else {
            continue;
        };
        for pool_name in tenant.configured_pools() {
            let Some(pool) = pools.get(pool_name) else {
                continue;
            };
            check_pool(tenants, tenant, login, pool).await?;
        }
    }
    Ok(())
}

/// One tenant on one pool: every node (ACLs are per server, in a cluster too).
async fn check_pool(
    tenants: &Tenants,
    tenant: &Tenant,
    login: &BackendLogin,
    pool: &PoolHandle,
) -> Result<(), BackendUserError> {
    let standalone = matches!(pool, PoolHandle::Standalone(_));
    let probes = probes_for(tenants, tenant, pool.name(), standalone);
    let as_tenant = pool.for_login(Some(login));
    let db = if standalone {
        tenant.db().unwrap_or(0)
    } else {
        0
    };
    for (pool_endpoint, tenant_endpoint) in node_endpoints(pool, &as_tenant, db) {
        let node = pool_endpoint.address.to_string();
        let place = Place {
            tenant: tenant.name(),
            user: login.user(),
            node: &node,
            pool: pool.name(),
        };
        match connect(&tenant_endpoint).await {
            Ok(_) => {}
            Err(reason @ ConnectError::HandshakeRefused { .. }) => {
                return Err(place.login_error(reason.to_string()));
            }
            Err(reason) => {
                warn!(tenant = tenant.name(), %node, %reason, "backend_user not checked: server unreachable");
                continue;
            }
        }
        let answers = match dry_run(&pool_endpoint, login.user(), &probes).await {
            Ok(answers) => answers,
            Err(reason) => {
                warn!(tenant = tenant.name(), %node, %reason, "backend_user not checked: server unreachable");
                continue;
            }
        };
        for (probe, answer) in probes.iter().zip(answers) {
            place.judge(probe, answer)?;
        }
        info!(tenant = tenant.name(), %node, pool = pool.name(), "backend_user rules checked");
    }
    Ok(())
}

/// For each node of the pool: its endpoint with the pool's own credentials (for ACL DRYRUN) and as the
/// tenant (in its db, so the login also shows whether the user may SELECT it).
fn node_endpoints(pool: &PoolHandle, as_tenant: &PoolHandle, db: u32) -> Vec<(Endpoint, Endpoint)> {
    match (pool, as_tenant) {
        (PoolHandle::Standalone(pool), PoolHandle::Standalone(as_tenant)) => {
            vec![(pool.endpoint(0, false), as_tenant.endpoint(db, false))]
        }
        (PoolHandle::Cluster(pool), PoolHandle::Cluster(as_tenant)) => pool
            .topology()
            .map
            .nodes()
            .map(|node| {
                (
                    pool.endpoint(node, false, false),
                    as_tenant.endpoint(node, false, false),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Where a check runs (borrowed), for its errors.
struct Place<'a> {
    tenant: &'a str,
    user: &'a str,
    node: &'a str,
    pool: &'a str,
}

/// What `ACL DRYRUN` said about one command.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Allowed,
    /// Refused, with Redis's reason.
    Refused(String),
    /// Not an answer about the command: the dry run itself failed (no such user, no right to ask).
    Failed(String),
}

impl Place<'_> {
    fn at(&self) -> Box<Where> {
        Box::new(Where {
            tenant: self.tenant.to_owned(),
            user: self.user.to_owned(),
            node: self.node.to_owned(),
            pool: self.pool.to_owned(),
        })
    }

    fn login_error(&self, reason: String) -> BackendUserError {
        BackendUserError::Login {
            at: self.at(),
            reason,
        }
    }

    fn judge(&self, probe: &Probe, answer: Answer) -> Result<(), BackendUserError> {
        match answer {
            Answer::Allowed if probe.allowed => Ok(()),
            Answer::Refused(_) if !probe.allowed => Ok(()),
            Answer::Allowed => Err(BackendUserError::TooWide {
                at: self.at(),
                command: probe.command_line(),
                why: probe.why,
                rule: probe.rule.clone(),
            }),
            Answer::Refused(answer) => Err(BackendUserError::TooNarrow {
                at: self.at(),
                command: probe.command_line(),
                why: probe.why,
                answer,
                rule: probe.rule.clone(),
            }),
            Answer::Failed(answer) => Err(BackendUserError::CannotAsk {
                at: self.at(),
                answer,
            }),
        }
    }
}

/// The questions for `tenant` on pool `pool` (see the module docs).
fn probes_for(tenants: &Tenants, tenant: &Tenant, pool: &str, standalone: bool) -> Vec<Probe> {
    let mut probes = Vec::new();
    let prefix = tenant.key_prefix();
    if let Some(prefix) = prefix {
        let own = [prefix, PROBE_KEY].concat();
        let rule = format!("~{}*", glob_text(prefix));
        probes.push(Probe::allowed(&[b"GET", &own], "its own keys", rule));
    }
    if tenant.is_admin() || !tenant.shares_pool(pool) {
        return probes;
    }
    match prefix {
        Some(prefix) => prefixed_probes(tenants, tenant, prefix, pool, &mut probes),
        None => probes.push(Probe::refused(
            &[b"PUBLISH", PROBE_KEY, b"x"],
            "channels are server-wide and the tenant has no key prefix for its own",
            "resetchannels",
        )),
    }
    if standalone {
        db_probes(tenant, &mut probes);
    }
    for args in [
        &[&b"FUNCTION"[..], b"LOAD", b"x"][..],
        &[b"FUNCTION", b"DELETE", b"x"],
        &[b"FUNCTION", b"FLUSH"],
        &[b"FUNCTION", b"RESTORE", b"x"],
        &[b"FUNCTION", b"LIST"],
        &[b"FUNCTION", b"DUMP"],
    ] {
        probes.push(Probe::refused(
            args,
            "the function libraries are every tenant's",
            "-function",
        ));
    }
    for args in [
        &[&b"FLUSHALL"[..]][..],
        &[b"FLUSHDB"],
        &[b"SLOWLOG", b"GET"],
    ] {
        probes.push(Probe::refused(
            args,
            "a script could run it on every tenant's data",
            "-@dangerous",
        ));
    }
    probes
}

/// Keys and channels outside the prefix, and other tenants' prefixes on this pool.
fn prefixed_probes(
    tenants: &Tenants,
    tenant: &Tenant,
    prefix: &[u8],
    pool: &str,
    probes: &mut Vec<Probe>,
) {
    let keys_rule = format!("resetkeys ~{}*", glob_text(prefix));
    let outside = outside_of(prefix);
    probes.push(Probe::refused(
        &[b"GET", &outside],
        "a key outside its prefix",
        keys_rule.clone(),
    ));
    for other in tenants.iter() {
        let Some(other_prefix) = other.key_prefix() else {
            continue;
        };
        let shares = other.configured_pools().any(|p| p == pool);
        if other.name() == tenant.name() || !shares || other_prefix.starts_with(prefix) {
            continue;
        }
        let key = [other_prefix, PROBE_KEY].concat();
        probes.push(Probe::refused(
            &[b"GET", &key],
            "another tenant's key",
            keys_rule.clone(),
        ));
    }
    probes.push(Probe::refused(
        &[b"PUBLISH", &outside, b"x"],
        "a channel outside its prefix",
        format!("resetchannels &{}*", glob_text(prefix)),
    ));
    for command in [&b"RANDOMKEY"[..], b"DBSIZE"] {
        probes.push(Probe::refused(
            &[command],
            "it would pick or count every tenant's keys",
            format!("-{}", String::from_utf8_lossy(command).to_ascii_lowercase()),
        ));
    }
}

/// A tenant with a `db` stays in it: no SELECT of another, no SWAPDB, MOVE or COPY into another.
fn db_probes(tenant: &Tenant, probes: &mut Vec<Probe>) {
    let Some(db) = tenant.db() else {
        return;
    };
    let other = if db == 0 { 1 } else { 0 }.to_string();
    let key = [tenant.key_prefix().unwrap_or_default(), PROBE_KEY].concat();
    let select_rule = if db == 0 {
        "-select".to_owned()
    } else {
        format!("-select +select|{db}")
    };
    let why = "the tenant works in its own db";
    probes.push(Probe::refused(
        &[b"SELECT", other.as_bytes()],
        why,
        select_rule,
    ));
    probes.push(Probe::refused(&[b"SWAPDB", b"0", b"1"], why, "-@dangerous"));
    probes.push(Probe::refused(
        &[b"MOVE", &key, other.as_bytes()],
        why,
        "-move",
    ));
    probes.push(Probe::refused(
        &[b"COPY", &key, &key, b"DB", other.as_bytes()],
        why,
        "-copy",
    ));
}

/// A key that does not start with `prefix`: the prefix with its first byte changed.
fn outside_of(prefix: &[u8]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    if let Some(first) = key.first_mut() {
        *first = if *first == b'x' { b'y' } else { b'x' };
    }
    key.extend_from_slice(PROBE_KEY);
    key
}

/// A prefix as it is written in an ACL key pattern (glob characters escaped).
fn glob_text(prefix: &[u8]) -> String {
    String::from_utf8_lossy(&tenant_policy::escape_glob(prefix)).into_owned()
}

/// Why the `ACL DRYRUN` exchange with a server did not complete (the server counts as unreachable).
#[derive(Debug, thiserror::Error)]
enum DryRunError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("bad reply: {0}")]
    Reply(resp_codec::ProtocolError),
    #[error("connection closed")]
    Closed,
    #[error("no ACL DRYRUN reply in time")]
    Timeout,
}

/// Sends `ACL DRYRUN user ...` for every probe on one connection with the pool's own credentials.
async fn dry_run(
    endpoint: &Endpoint,
    user: &str,
    probes: &[Probe],
) -> Result<Vec<Answer>, DryRunError> {
    let mut stream = connect(endpoint).await?;
    let mut requests = BytesMut::new();
    for probe in probes {
        let mut args: Vec<&[u8]> = vec![b"ACL", b"DRYRUN", user.as_bytes()];
        args.extend(probe.args.iter().map(Vec::as_slice));
        encode_command(&mut requests, args);
    }
    let exchange = async {
        stream
            .write_all(&requests)
            .await
            .map_err(DryRunError::Write)?;
        let mut buffer = BytesMut::with_capacity(4096);
        let mut answers = Vec::with_capacity(probes.len());
        while answers.len() < probes.len() {
            match parse_frame(&buffer, &Limits::default()).map_err(DryRunError::Reply)? {
                Some((frame, used)) => {
                    let _ = buffer.split_to(used);
                    answers.push(answer(frame));
                }
                None => {
                    let read = stream
                        .read_buf(&mut buffer)
                        .await
                        .map_err(DryRunError::Read)?;
                    if read == 0 {
                        return Err(DryRunError::Closed);
                    }
                }
            }
        }
        Ok(answers)
    };
    tokio::time::timeout(endpoint.command_timeout, exchange)
        .await
        .map_err(|_| DryRunError::Timeout)?
}

/// `+OK` allows; a bulk string (Redis's reason) refuses; an error is about the dry run itself.
fn answer(frame: Frame) -> Answer {
    match frame {
        Frame::Simple(text) if text.eq_ignore_ascii_case(b"OK") => Answer::Allowed,
        Frame::Bulk(text) => Answer::Refused(String::from_utf8_lossy(&text).into_owned()),
        Frame::Error(text) => Answer::Failed(format!("-{}", String::from_utf8_lossy(&text))),
        other => Answer::Failed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_outside_the_prefix_never_starts_with_it() {
        for prefix in [&b"a:"[..], b"x", b"xyz:", b"{t}:"] {
            assert!(!outside_of(prefix).starts_with(prefix), "{prefix:?}");
        }
    }

    #[test]
    fn dry_run_answers_are_allowed_refused_or_a_failure() {
        assert_eq!(answer(Frame::Simple("OK".into())), Answer::Allowed);
        assert!(matches!(
            answer(Frame::Bulk("This user has no permissions".into())),
            Answer::Refused(_)
        ));
        assert_eq!(
            answer(Frame::Error("ERR User 'u' not found".into())),
            Answer::Failed("-ERR User 'u' not found".to_owned())
        );
    }
}
