//! The embedding API: build a proxy from a [`Config`], start it, stop it.
//!
//! This is what the `rkproxy` binary uses, and what a service that embeds the proxy uses:
//! [`Proxy::builder`] takes a validated configuration; [`ProxyBuilder::start`] runs the proxy on the caller's
//! tokio runtime and returns a [`Proxy`] handle; [`ProxyBuilder::run_until`] runs it on its own worker threads
//! until a future completes (the binary's way).
//!
//! Reloading the configuration of a running proxy is not offered yet; it will be a method of [`Proxy`] (the
//! operations issue), built on the shared state in `state.rs`, which is the snapshot a reload will swap.

use std::future::Future;
use std::net::SocketAddr;

use crate::config::Config;
use crate::server::{self, AcceptLoop};

/// Why a proxy could not start: a pool that cannot be built, the listen address, a runtime or thread that
/// could not be created. The text says which, naming the pool or address.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

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

impl Proxy {
    /// A builder for a proxy serving `config` (see [`Config::from_toml`] and [`Config::load`]).
    pub fn builder(config: Config) -> ProxyBuilder {
        ProxyBuilder { config }
    }

    /// The address clients connect to (with `listen = "127.0.0.1:0"`, the port the system picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr
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
}

/// How a [`Proxy`] is started. Options a reload needs will be added here.
#[derive(Debug)]
pub struct ProxyBuilder {
    config: Config,
}

impl ProxyBuilder {
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
        let listener = server::start(self.config).await.map_err(StartError)?;
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
        server::run(self.config, threads, stop).map_err(StartError)
    }
}
