//! The embedding API: build a proxy from a [`Config`], start it, stop it.
//!
//! This is what the `rkproxy` binary uses, and what a service that embeds the proxy uses:
//! [`Proxy::builder`] takes a validated configuration; [`ProxyBuilder::start`] runs the proxy on the caller's
//! tokio runtime and returns a [`Proxy`] handle; [`ProxyBuilder::run_until`] runs it on its own worker threads
//! until a future completes (the binary's way).
//!
//! A running proxy's configuration is replaced while clients stay connected by [`Proxy::reload`] (a new
//! [`Config`]) or [`Proxy::reload_from_file`] (the file and command-line values given to
//! [`ProxyBuilder::reload_source`], read again with the environment); a proxy run by
//! [`ProxyBuilder::run_until`] is reloaded through a [`Reloader`]. The rules (what changes at once, what needs
//! a restart) are in `state/reload.rs` and the README's "Hot reload".

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};

use crate::config::{CommandLineOverrides, Config};
use crate::memory::MemoryCounters;
use crate::server::{self, AcceptLoop};
use crate::state::{ConfigSource, Live, ReloadError, ReloadReport};

/// Why a proxy could not start: a pool that cannot be built, the listen address, a runtime or thread that
/// could not be created. The text says which, naming the pool or address.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(server::ServerError);

/// A running proxy, started with [`ProxyBuilder::start`]: its address, and how to stop it.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let config = rkproxy::config::Config::from_toml(
///     "listen = '127.0.0.1:0'\n\
///      default_pool = 'main'\n\
///      [pools.main]\n\
///      kind = 'standalone'\n\
///      nodes = ['127.0.0.1:6379']\n",
/// )?;
/// let proxy = rkproxy::Proxy::builder(config).start().await?;
/// println!("clients connect to {}", proxy.local_addr());
/// proxy.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Proxy {
    listener: AcceptLoop,
}

/// Reloads the configuration of a running proxy: what the binary's `SIGHUP` uses. Get one from
/// [`ProxyBuilder::reloader`] before [`ProxyBuilder::run_until`], or from [`Proxy::reloader`]; clones reload
/// the same proxy. It does not keep the proxy alive: once the proxy has stopped (or before it has started),
/// reloading fails with [`ReloadError::NotRunning`].
#[derive(Debug, Clone, Default)]
pub struct Reloader {
    live: Arc<OnceLock<Weak<Live>>>,
}

impl Reloader {
    fn attach(&self, live: &Arc<Live>) {
        let _ = self.live.set(Arc::downgrade(live));
    }

    fn live(&self) -> Result<Arc<Live>, ReloadError> {
        self.live
            .get()
            .and_then(Weak::upgrade)
            .ok_or(ReloadError::NotRunning)
    }

    /// See [`Proxy::reload`].
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        self.live()?.reload(config).await
    }

    /// See [`Proxy::reload_from_file`].
    pub async fn reload_from_file(&self) -> Result<ReloadReport, ReloadError> {
        self.live()?.reload_from_source().await
    }
}

impl Proxy {
    /// A builder for a proxy serving `config` (see [`Config::from_toml`] and [`Config::load`]).
    pub fn builder(config: Config) -> ProxyBuilder {
        ProxyBuilder {
            config,
            source: None,
            reloader: Reloader::default(),
        }
    }

    /// The address clients connect to (with `listen = "127.0.0.1:0"`, the port the system picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr
    }

    /// The memory limits' counters: bytes held for clients now, `max_memory` episodes, and clients
    /// disconnected at `client_limits.max_output_bytes`.
    pub fn memory_counters(&self) -> MemoryCounters {
        self.listener.memory_counters()
    }

    /// Where TLS clients connect, when `tls_listen` is set (with port 0, the port the system picked).
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.listener.tls_local_addr
    }

    /// Where `GET /metrics` is served, when `metrics_listen` is set (with port 0, the port the system picked).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.listener.metrics_addr
    }

    /// Shuts down gracefully: stops accepting clients; open connections get the replies to the requests
    /// already read (subscribers and later requests get `-ERR rkproxy is shutting down`) and are closed; waits
    /// until they all are, at most `timeouts.shutdown_ms` (connections still owing replies then are closed).
    pub async fn shutdown(self) {
        self.listener.stop().await;
    }

    /// Replaces the configuration while clients stay connected: `config` is validated whole and applied
    /// whole, or nothing changes and the error names the key and the problem. Pools whose settings did not
    /// change keep their connections; tenants, pools, limits, Kafka topics and timeouts change at each
    /// client's next command (after the replies it is owed); `listen`, `worker_threads` and `log` need a
    /// restart (the report names them). Logged either way.
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        self.listener.live.reload(config).await
    }

    /// Reads the configuration again from the file and command-line values given to
    /// [`ProxyBuilder::reload_source`] (with `RKPROXY_*` environment variables over them, as at start) and
    /// reloads it, like [`Proxy::reload`] (what `SIGHUP` and `RKPROXY RELOAD` do).
    pub async fn reload_from_file(&self) -> Result<ReloadReport, ReloadError> {
        self.listener.live.reload_from_source().await
    }

    /// A handle that reloads this proxy from elsewhere (a signal handler's task).
    pub fn reloader(&self) -> Reloader {
        let reloader = Reloader::default();
        reloader.attach(&self.listener.live);
        reloader
    }
}

/// How a [`Proxy`] is started.
#[derive(Debug)]
pub struct ProxyBuilder {
    config: Config,
    source: Option<ConfigSource>,
    reloader: Reloader,
}

impl ProxyBuilder {
    /// Where the configuration came from (the `file`, if any, and the command-line values), so that
    /// [`Proxy::reload_from_file`], `RKPROXY RELOAD` and a [`Reloader`] can read it again the same way
    /// ([`Config::load`]). Without it only [`Proxy::reload`] with a new [`Config`] can reload.
    pub fn reload_source(mut self, file: Option<PathBuf>, overrides: CommandLineOverrides) -> Self {
        self.source = Some(ConfigSource { file, overrides });
        self
    }

    /// A handle that reloads the proxy once it runs (for [`ProxyBuilder::run_until`], whose `stop` future
    /// can serve signals: the binary reloads on `SIGHUP` with it).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Builds the pools (a cluster pool reads its slot map first; standalone and Kafka pools connect later,
    /// so a backend that is down does not stop the start), binds the listen address and accepts clients on the
    /// caller's tokio runtime, as one worker: `worker_threads` is not used here.
    ///
    /// ```no_run
    /// # async fn example(config: rkproxy::config::Config) -> Result<(), rkproxy::StartError> {
    /// let proxy = rkproxy::Proxy::builder(config).start().await?;
    /// // ... serve ...
    /// proxy.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(self) -> Result<Proxy, StartError> {
        let listener = server::start(self.config, self.source)
            .await
            .map_err(StartError)?;
        self.reloader.attach(&listener.live);
        Ok(Proxy { listener })
    }

    /// Runs the proxy until `stop` completes, blocking the calling thread, on `worker_threads` event loops
    /// (0: one per core), each a single-threaded runtime with its own listening socket and backend
    /// connections. Must not be called from inside a tokio runtime.
    ///
    /// ```no_run
    /// # fn example(config: rkproxy::config::Config) -> Result<(), rkproxy::StartError> {
    /// rkproxy::Proxy::builder(config).run_until(async {
    ///     let _ = tokio::signal::ctrl_c().await;
    /// })
    /// # }
    /// ```
    pub fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), StartError> {
        let threads = match self.config.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let reloader = self.reloader;
        server::run(
            self.config,
            self.source,
            threads,
            |live| reloader.attach(live),
            stop,
        )
        .map_err(StartError)
    }
}
