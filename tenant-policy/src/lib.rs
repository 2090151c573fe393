//! tenant-policy: rkproxy's tenants. Authentication, rights, database and key isolation, and
//! traffic limits.
//!
//! **Architecture invariant:** this crate decides; it never sees raw bytes or sockets. It
//! works on parsed arguments (`cluster_router::Args`), command specs from the command table
//! (`cluster_router::CommandSpec`) and reply trees (`resp_codec::Frame`). The proxy owns the
//! connections, the timeouts and the sleeping.
//!
//! # Layout
//!
//! - [`config`]: the `[tenants.NAME]` serde structs ([`TenantConfig`]).
//! - [`Tenants`] (in `registry`): validation with errors naming the key, `db = "auto"`
//!   assignment, [`Tenants::authenticate`], [`credentials`] from AUTH/HELLO.
//! - [`Tenant`] (in `tenant`): rights ([`Tenant::authorize`], [`Tenant::check_scripts`], [`allowed_before_auth`],
//!   [`Tenant::check_select`], [`Tenant::may_use_pool`]).
//! - `rewrite`: [`Tenant::rewrite_request`] and [`Tenant::rewrite_reply`] (key prefix, key
//!   pattern, default TTL).
//! - `limits`: [`Tenant::admit`], [`Tenant::account_reply`], [`Tenant::check_request_size`],
//!   [`Tenant::try_connect`] ([`TrafficLimits`] on governor).
//! - [`police`]: the one entry point for a request about to run (Redis or Kafka): rights,
//!   size, traffic admission and rewrite in one call, answered with a [`Verdict`].
//! - [`PolicyError`]: every refusal, whose `Display` is the reply text after `-`.
//!
//! # Per command, in the proxy
//!
//! The proxy calls [`police`] for each request; it is built from these steps, shown one by one:
//!
//! ```
//! use std::collections::BTreeMap;
//! use cluster_router::lookup;
//! use tenant_policy::{Admission, PoolInfo, Rewrite, TenantConfig, Tenants};
//!
//! let mut config = TenantConfig::new("s3cret", "main");
//! config.key_prefix = Some("app1:".to_owned());
//! let tenants = Tenants::new(
//!     &BTreeMap::from([("app1".to_owned(), config)]),
//!     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
//! )
//! .unwrap();
//!
//! // AUTH app1 s3cret, then count the connection.
//! let tenant = tenants.authenticate(Some(b"app1"), b"s3cret").unwrap();
//! let _permit = tenant.try_connect().unwrap();
//!
//! // GET foo
//! let args: &[&[u8]] = &[b"GET", b"foo"];
//! let spec = lookup(&args).unwrap();
//! tenant.check_request_size(22).unwrap();
//! assert_eq!(tenant.admit(22), Admission::Ok);
//! tenant.authorize(spec, &args).unwrap();
//! let rewritten = tenant.rewrite_request(spec, &args).unwrap();
//! assert_eq!(rewritten, Rewrite::Args(vec!["GET".into(), "app1:foo".into()]));
//! assert!(!tenant.reply_needs_rewrite(spec));
//! tenant.account_reply(9);
//! ```

pub mod config;
mod error;
mod limits;
mod police;
mod registry;
mod rewrite;
mod shared_budget;
mod tenant;
mod tenant_limits;

pub use config::{
    DbSetting, LimitsStore, PoolInfo, TenantConfig, TenantsConfig, DEFAULT_LIMIT_WAIT_MS,
};
pub use error::{ConfigError, LimitKind, PolicyError};
pub use limits::{Admission, TrafficLimits};
pub use police::{police, OverLimit, Policed, Verdict, ANSWERED_BY_THE_PROXY_FOR_NON_ADMINS};
pub use registry::{credentials, Credentials, DbAssignment, DbChange, Tenants};
pub use rewrite::{escape_glob, Rewrite};
pub use shared_budget::{SharedBudget, Want, STORE_GRACE, TOKEN_BUCKET_SCRIPT};
pub use tenant::{
    allowed_before_auth, BackendLogin, Tenant, ADMIN_EXTRA, DANGEROUS_BUT_ALLOWED,
    KEYLESS_COMMANDS_FOR_TENANTS, MAY_WRITE_UNFLAGGED,
};
pub use tenant_limits::ConnectionPermit;

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
