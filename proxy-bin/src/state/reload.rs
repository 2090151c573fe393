//! Hot reload: a new configuration, validated whole, becomes the next [`ProxyState`], or nothing changes.
//!
//! [`Live`] holds the newest state in an `ArcSwap`. A reload (`SIGHUP`, `RKPROXY RELOAD`, `Proxy::reload`)
//! validates the whole configuration, builds everything the next state needs (tenants, and pools whose settings
//! changed) before anything is published, and only then swaps the new state in, so a configuration that fails
//! anywhere changes nothing. What lives as long as the process ([`super::Process`]: connection limits and
//! counts, client ids, start time, AUTH failure counts, the shutdown signal) is carried over, never rebuilt. A
//! pool whose settings did not change is the same pool afterwards (its `PoolHandle`, its live backend
//! connections, its learned backend version); a changed pool is built anew, and the old one (like a removed
//! pool) is dropped, closing its connections, once no session holds the old state (a session moves to the
//! newest at its next barrier; an idle one holds the old state until its next command).
//!
//! The TLS listener's certificate (`[tls]`) is read again from its files at every reload, even when the
//! configuration text did not change, so a rotated certificate is used for new connections without a restart
//! (connections already open keep the certificate they were opened with). Likewise every pool's TLS files
//! (`ca_file`, `cert_file`, `key_file`): a Redis pool kept by a reload whose files hold new content gets new
//! TLS settings for its next backend connections (its open ones go on), a Kafka pool is built again (its
//! bridge reads them only when built). Every file is read at every reload, so one that became unreadable or
//! invalid refuses the reload, naming its key, and the running configuration goes on serving.
//!
//! `listen`, `tls_listen`, `worker_threads` and `log` are read only at start: a reload that changes them applies everything
//! else and names them in its report as needing a restart. Turning tenants on or off (none configured before,
//! some after, or the reverse) is refused: connected clients would change between needing no AUTH and
//! needing it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tracing::{info, warn};

use super::{Process, ProxyState, Snapshot, UndefinedDefaultPool};
use crate::config::{CommandLineOverrides, Config, ConfigError, PoolConfig};
use crate::introspection::BackendVersion;
use crate::pools::acl_check::{check_backend_users, BackendUserError};
use crate::pools::{PoolError, PoolHandle};
use crate::tls::{ClientTls, TlsRotation};

/// Where a reload reads the configuration again: the same layers as at start (built-in defaults, the file,
/// the command-line values, then `RKPROXY_*` environment variables).
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The TOML file, if the proxy was started with one.
    pub file: Option<PathBuf>,
    pub overrides: CommandLineOverrides,
}

/// The newest [`ProxyState`], and how to replace it.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<ProxyState>,
    /// The TLS listener's certificate as last read (`[tls]`); each new TLS client gets the newest.
    client_tls: ArcSwapOption<ClientTls>,
    /// Where `RKPROXY RELOAD` and `SIGHUP` read the configuration again; `None` for a proxy built from a
    /// configuration value (it can still be given a new one, `Proxy::reload`).
    source: Option<ConfigSource>,
    /// One reload at a time: each builds on the state the one before it published.
    reloading: tokio::sync::Mutex<()>,
}

/// Why a reload changed nothing. The text names the configuration key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("config key `pools.{pool}`: {problem}")]
    Pool { pool: String, problem: String },
    #[error(
        "config key `tenants`: turning tenants on or off needs a restart (connected clients would change \
         between needing no AUTH and needing it)"
    )]
    TenantsSwitchedOnOrOff,
    #[error(
        "config key `tenants.{tenant}.db`: db = \"auto\" would move tenant '{tenant}' from db {old} to db {new}, \
         away from its data (pin it with db = {old})"
    )]
    AutoDbMoved { tenant: String, old: u32, new: u32 },
    #[error("{0}")]
    BackendUser(#[from] BackendUserError),
    #[error("this proxy was started from a configuration value, not a file: there is no file to read again")]
    NoFile,
    #[error("the proxy is not running")]
    NotRunning,
}

/// Why the first state could not be built at start.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("config key `pools.{pool}`: {problem}")]
    Pool { pool: String, problem: PoolError },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    DefaultPool(#[from] UndefinedDefaultPool),
    #[error(transparent)]
    BackendUser(#[from] BackendUserError),
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The configuration's generation now: 0 at start, one more for each reload.
    pub generation: u64,
    pub pools_added: Vec<String>,
    /// Pools whose settings changed: built anew (clients move to them at their next command).
    pub pools_changed: Vec<String>,
    pub pools_removed: Vec<String>,
    /// Pools whose settings did not change but whose TLS files were rotated in place (the same path, new
    /// content): kept, their next backend connections use the new files.
    pub pools_tls_reread: Vec<String>,
    pub tenants_added: Vec<String>,
    pub tenants_changed: Vec<String>,
    pub tenants_removed: Vec<String>,
    /// Keys whose new value was not applied because only a restart can apply it.
    pub needs_restart: Vec<&'static str>,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration generation {} in force", self.generation)?;
        let lists = [
            ("pools added", &self.pools_added),
            ("pools changed", &self.pools_changed),
            ("pools removed", &self.pools_removed),
            ("pools with rotated TLS files", &self.pools_tls_reread),
            ("tenants added", &self.tenants_added),
            ("tenants changed", &self.tenants_changed),
            ("tenants removed", &self.tenants_removed),
        ];
        for (what, names) in lists {
            if !names.is_empty() {
                write!(f, "; {what}: {}", names.join(", "))?;
            }
        }
        if !self.needs_restart.is_empty() {
            write!(
                f,
                "; not applied, needs a restart: {}",
                self.needs_restart.join(", ")
            )?;
        }
        Ok(())
    }
}

impl Live {
    /// Builds the first state from `config` (a cluster pool reads its slot map first; standalone and Kafka
    /// pools connect later) and the cell that holds it.
    pub async fn start(
        config: Config,
        source: Option<ConfigSource>,
    ) -> Result<Arc<Live>, StateError> {
        let mut pools = HashMap::new();
        let mut backend_versions = HashMap::new();
        for (name, pool) in &config.pools {
            let handle = PoolHandle::start(name, pool, &config)
                .await
                .map_err(|problem| StateError::Pool {
                    pool: name.clone(),
                    problem,
                })?;
            pools.insert(name.clone(), handle);
            backend_versions.insert(name.clone(), Arc::default());
        }
        let tenants = config.validate_and_build_tenants()?;
        check_backend_users(tenants.as_ref(), &pools).await?;
        let client_tls = ClientTls::for_config(&config)?;
        let process = Arc::new(Process::new(&config));
        let snapshot = Snapshot::new(config, pools, tenants, backend_versions)?;
        Ok(Arc::new_cyclic(|live| Live {
            current: ArcSwap::from_pointee(ProxyState::assemble(
                snapshot,
                0,
                process,
                live.clone(),
            )),
            client_tls: ArcSwapOption::from(client_tls.map(Arc::new)),
            source,
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// The newest state.
    pub fn current(&self) -> Arc<ProxyState> {
        self.current.load_full()
    }

    /// The TLS listener's newest certificate settings (`None` without `[tls]`).
    pub fn client_tls(&self) -> Option<Arc<ClientTls>> {
        self.client_tls.load_full()
    }

    /// Reads the configuration again from where it was read at start, and reloads it (see [`Live::reload`]).
    pub async fn reload_from_source(&self) -> Result<ReloadReport, ReloadError> {
        let Some(source) = &self.source else {
            return Err(ReloadError::NoFile);
        };
        let loaded = Config::load(source.file.as_deref(), &source.overrides);
        match loaded {
            Ok(config) => self.reload(config).await,
            Err(error) => Err(refused(ReloadError::Config(error))),
        }
    }

    /// Validates `config` whole and makes it the running configuration, or changes nothing and says why.
    /// Logs the outcome either way.
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.current();
        let (snapshot, mut report, rotations) = prepare(&old, config).await.map_err(refused)?;
        // Read after everything else was checked: the files as they are now.
        let client_tls =
            ClientTls::for_config(&snapshot.config).map_err(|error| refused(error.into()))?;
        report.generation = old.generation + 1;
        let limits = &snapshot.config.client_limits;
        old.process.connections.resize(limits.max_connections);
        old.process
            .unauthenticated
            .resize(limits.max_unauthenticated);
        let slowlog = &snapshot.config.slowlog;
        old.process
            .stats
            .slowlog()
            .configure(slowlog.slower_than_us, slowlog.max_len);
        let next = ProxyState::assemble(
            snapshot,
            report.generation,
            Arc::clone(&old.process),
            old.live.clone(),
        );
        self.current.store(Arc::new(next));
        self.client_tls.store(client_tls.map(Arc::new));
        for rotation in rotations {
            rotation.apply();
        }
        // After the store: a session that sees the new generation finds the new state in the cell.
        old.process
            .newest_generation
            .store(report.generation, std::sync::atomic::Ordering::Release);
        info!(%report, "configuration reloaded");
        if !report.needs_restart.is_empty() {
            warn!(keys = %report.needs_restart.join(", "), "changed keys need a restart and were not applied");
        }
        Ok(report)
    }
}

/// Logs a refused reload and hands the error on.
fn refused(error: ReloadError) -> ReloadError {
    warn!(%error, "configuration reload refused; the running configuration is unchanged");
    error
}

/// Checks `config` against the running state `old` and builds everything the next state needs; nothing is
/// published here.
async fn prepare(
    old: &ProxyState,
    mut config: Config,
) -> Result<(Snapshot, ReloadReport, Vec<TlsRotation>), ReloadError> {
    let tenants = config.validate_and_build_tenants()?;
    let mut report = ReloadReport {
        needs_restart: keep_start_only_keys(old.config(), &mut config),
        ..ReloadReport::default()
    };
    check_tenant_change(old.tenants(), tenants.as_ref())?;
    let (pools, backend_versions, rotations) = build_pools(old, &config, &mut report).await?;
    check_backend_users(tenants.as_ref(), &pools).await?;
    report.pools_removed = removed(old.config().pools.keys(), |name| {
        config.pools.contains_key(name)
    });
    tenant_changes(old.config(), &config, &mut report);
    let default_pool = config.default_pool.clone();
    let snapshot = Snapshot::new(config, pools, tenants, backend_versions).map_err(|problem| {
        ReloadError::Pool {
            pool: default_pool,
            problem: problem.to_string(),
        }
    })?;
    Ok((snapshot, report, rotations))
}

/// Pools and backend versions of the next state: the running pool where its settings did not change, a new
/// one (noted in `report` as changed or added) where they did or the pool is new. The TLS files of every pool
/// kept are read again (see [`reread_tls_files`]): the new settings of those rotated in place are returned, to
/// be put in force with the state.
async fn build_pools(
    old: &ProxyState,
    config: &Config,
    report: &mut ReloadReport,
) -> Result<NextPools, ReloadError> {
    let mut pools = HashMap::new();
    let mut backend_versions = HashMap::new();
    let mut rotations = Vec::new();
    for (name, settings) in &config.pools {
        let previous = old.pools.get(name);
        let kept = match previous {
            Some(pool) if pool_settings_unchanged(old.config(), config, name) => {
                reread_tls_files(pool, settings, config)
                    .map_err(|problem| pool_error(name, problem))?
            }
            _ => KeptPool::Rebuild,
        };
        let (pool, version) = match (kept, previous) {
            (KeptPool::Rebuild, _) | (_, None) => {
                let pool = PoolHandle::start_replacing(name, settings, config, previous)
                    .await
                    .map_err(|problem| pool_error(name, problem))?;
                let list = match previous {
                    Some(_) => &mut report.pools_changed,
                    None => &mut report.pools_added,
                };
                list.push(name.clone());
                (pool, Arc::<BackendVersion>::default())
            }
            (kept, Some(pool)) => {
                if let KeptPool::Rotate(rotation) = kept {
                    rotations.push(rotation);
                    report.pools_tls_reread.push(name.clone());
                }
                let version = old.backend_versions.get(name).cloned().unwrap_or_default();
                (pool.clone(), version)
            }
        };
        pools.insert(name.clone(), pool);
        backend_versions.insert(name.clone(), version);
    }
    Ok((pools, backend_versions, rotations))
}

/// What a reload does with a running pool whose settings did not change.
enum KeptPool {
    /// Keep it as it is.
    Keep,
    /// Keep it, with new TLS settings for its next connections (its files were rotated).
    Rotate(TlsRotation),
    /// Build it again (a Kafka pool whose TLS files were rotated: the bridge reads them only when built).
    Rebuild,
}

/// Reads the TLS files of `pool` (whose settings, `settings`, did not change) again: a file rotated in place
/// (the same path, new content) is seen here, and one that became unreadable or invalid refuses the reload.
fn reread_tls_files(
    pool: &PoolHandle,
    settings: &PoolConfig,
    config: &Config,
) -> Result<KeptPool, PoolError> {
    if let (PoolHandle::Kafka(kafka), PoolConfig::Kafka(kafka_settings)) = (pool, settings) {
        let changed = kafka.tls_files_changed(kafka_settings, config)?;
        return Ok(if changed {
            KeptPool::Rebuild
        } else {
            KeptPool::Keep
        });
    }
    let (Some(tls), Some(redis_settings)) = (pool.backend_tls(), settings.redis()) else {
        return Ok(KeptPool::Keep);
    };
    Ok(tls
        .reread(redis_settings)?
        .map_or(KeptPool::Keep, KeptPool::Rotate))
}

fn pool_error(name: &str, problem: PoolError) -> ReloadError {
    ReloadError::Pool {
        pool: name.to_owned(),
        problem: problem.to_string(),
    }
}

/// The pools of a state by name, their backend versions, and the new TLS settings of the pools kept.
type NextPools = (
    HashMap<String, PoolHandle>,
    HashMap<String, Arc<BackendVersion>>,
    Vec<TlsRotation>,
);

/// The keys read only at start: their running values stay in `new`, and the ones that differ are returned.
fn keep_start_only_keys(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if new.listen != old.listen {
        changed.push("listen");
        new.listen.clone_from(&old.listen);
    }
    if new.tls_listen != old.tls_listen {
        changed.push("tls_listen");
        new.tls_listen.clone_from(&old.tls_listen);
    }
    if new.worker_threads != old.worker_threads {
        changed.push("worker_threads");
        new.worker_threads = old.worker_threads;
    }
    if new.log != old.log {
        changed.push("log");
        new.log.clone_from(&old.log);
    }
    if new.big_requests != old.big_requests {
        changed.push("big_requests");
        new.big_requests = old.big_requests.clone();
    }
    if new.metrics_listen != old.metrics_listen {
        changed.push("metrics_listen");
        new.metrics_listen.clone_from(&old.metrics_listen);
    }
    if new.log_format != old.log_format {
        changed.push("log_format");
        new.log_format = old.log_format;
    }
    if new.stats != old.stats {
        changed.push("stats");
        new.stats = old.stats;
    }
    if new.max_memory != old.max_memory {
        changed.push("max_memory");
        new.max_memory = old.max_memory;
    }
    changed
}

/// Refuses turning tenants on or off, and moving an auto-assigned tenant to another db.
fn check_tenant_change(
    old: Option<&tenant_policy::Tenants>,
    new: Option<&tenant_policy::Tenants>,
) -> Result<(), ReloadError> {
    match (old, new) {
        (None, None) => Ok(()),
        (Some(old), Some(new)) => match old.auto_db_changes(new).into_iter().next() {
            Some(moved) => Err(ReloadError::AutoDbMoved {
                tenant: moved.tenant,
                old: moved.old,
                new: moved.new,
            }),
            None => Ok(()),
        },
        _ => Err(ReloadError::TenantsSwitchedOnOrOff),
    }
}

/// Whether pool `name` would be built the same from `new` as it was from `old`: its own settings, the
/// backend timeouts its connections use, and for a Kafka pool the Redis pool that holds its offsets.
fn pool_settings_unchanged(old: &Config, new: &Config, name: &str) -> bool {
    let (Some(before), Some(after)) = (old.pools.get(name), new.pools.get(name)) else {
        return false;
    };
    if before != after {
        return false;
    }
    match after {
        PoolConfig::Kafka(kafka) => match kafka.offsets.as_ref().and_then(|o| o.pool.as_ref()) {
            Some(store) => old.pools.get(store) == new.pools.get(store),
            None => true,
        },
        PoolConfig::Standalone(_) | PoolConfig::Cluster(_) => {
            backend_timeouts(old) == backend_timeouts(new)
        }
    }
}

/// The timeouts a backend connection is built with (`Endpoint::for_pool`).
fn backend_timeouts(config: &Config) -> (u64, u64, u64) {
    let timeouts = &config.timeouts;
    (
        timeouts.connect_ms,
        timeouts.command_ms,
        timeouts.slow_command_ms,
    )
}

/// Fills in the tenants added, changed and removed.
fn tenant_changes(old: &Config, new: &Config, report: &mut ReloadReport) {
    for (name, settings) in &new.tenants {
        match old.tenants.get(name) {
            None => report.tenants_added.push(name.clone()),
            Some(before) if before != settings => report.tenants_changed.push(name.clone()),
            Some(_) => {}
        }
    }
    report.tenants_removed = removed(old.tenants.keys(), |name| new.tenants.contains_key(name));
}

/// The names in `old` that `still_there` says are gone.
fn removed<'a>(
    old: impl Iterator<Item = &'a String>,
    still_there: impl Fn(&str) -> bool,
) -> Vec<String> {
    old.filter(|name| !still_there(name)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text).unwrap()
    }

    const BASE: &str =
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";

    #[test]
    fn start_only_keys_keep_their_running_values() {
        let old = config(BASE);
        let mut new = config(&format!(
            "listen = '127.0.0.1:1'\nworker_threads = 4\n{BASE}"
        ));
        assert_eq!(
            keep_start_only_keys(&old, &mut new),
            ["listen", "worker_threads"]
        );
        assert_eq!((new.listen, new.worker_threads), (old.listen, 1));
    }

    #[test]
    fn a_pool_changes_with_its_settings_or_its_backend_timeouts() {
        let old = config(BASE);
        assert!(pool_settings_unchanged(&old, &config(BASE), "main"));
        let idle = config(&format!("{BASE}[timeouts]\nidle_ms = 5\n"));
        assert!(pool_settings_unchanged(&old, &idle, "main"));
        let slower = config(&format!("{BASE}[timeouts]\ncommand_ms = 5\n"));
        assert!(!pool_settings_unchanged(&old, &slower, "main"));
        let more = config(&format!("{BASE}connections_per_node = 2\n"));
        assert!(!pool_settings_unchanged(&old, &more, "main"));
    }

    #[test]
    fn report_names_what_changed() {
        let report = ReloadReport {
            generation: 3,
            pools_added: vec!["b".into()],
            pools_tls_reread: vec!["c".into()],
            tenants_removed: vec!["x".into(), "y".into()],
            needs_restart: vec!["listen"],
            ..ReloadReport::default()
        };
        assert_eq!(
            report.to_string(),
            "configuration generation 3 in force; pools added: b; pools with rotated TLS files: c; \
             tenants removed: x, y; \
             not applied, needs a restart: listen"
        );
    }
}
