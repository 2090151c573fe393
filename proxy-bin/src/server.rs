//! The listener: accepts clients, enforces the connection limit, and runs one session task per client.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use resp_codec::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, debug_span, info, warn, Instrument};

use crate::cluster::ClusterPool;
use crate::config::{Config, PoolKind};
use crate::kafka::KafkaPool;
use crate::pool::StandalonePool;
use crate::session::{PoolHandle, Session};

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running the caller (0 outside worker threads). Pools keep separate backend
/// connections per worker, so a session and its backend connections always run on the same thread.
pub fn worker_index() -> usize {
    WORKER_INDEX.with(Cell::get)
}

/// What every session shares: the configuration, the pools, the connection limit and client ids.
#[derive(Debug)]
pub struct ProxyState {
    config: Arc<Config>,
    pools: HashMap<String, PoolHandle>,
    default_pool: PoolHandle,
    connections: Arc<Semaphore>,
    next_client_id: AtomicU64,
    tenants: Option<tenant_policy::Tenants>,
    /// When the proxy started, for INFO's uptime.
    started: std::time::Instant,
    /// Each Redis pool's backend version, learned on first use (HELLO, INFO).
    backend_versions: HashMap<String, crate::introspection::BackendVersion>,
}

impl ProxyState {
    /// Builds the pools. Standalone backends are connected lazily, when clients first need them; cluster pools
    /// read their slot map first.
    pub async fn new(config: Config) -> Result<ProxyState, String> {
        let mut pools = HashMap::new();
        for (name, pool) in &config.pools {
            let handle = match pool.kind {
                PoolKind::Standalone => PoolHandle::Standalone(Arc::new(StandalonePool::new(
                    name,
                    pool,
                    &config.timeouts,
                )?)),
                PoolKind::Cluster => {
                    let cluster = Arc::new(ClusterPool::new(name, pool, &config.timeouts)?);
                    cluster.start().await;
                    PoolHandle::Cluster(cluster)
                }
                PoolKind::Kafka => {
                    // Connects in the background: a broker that is down must not stop the proxy starting.
                    let kafka = Arc::new(KafkaPool::new(name, pool, &config)?);
                    kafka.start();
                    PoolHandle::Kafka(kafka)
                }
            };
            pools.insert(name.clone(), handle);
        }
        let default_pool = pools
            .get(&config.default_pool)
            .cloned()
            .ok_or_else(|| format!("default_pool '{}' is not defined", config.default_pool))?;
        let tenants = config.build_tenants().map_err(|e| e.to_string())?;
        let backend_versions = pools
            .keys()
            .map(|name| (name.clone(), Default::default()))
            .collect();
        Ok(ProxyState {
            tenants,
            started: std::time::Instant::now(),
            backend_versions,
            connections: Arc::new(Semaphore::new(config.client_limits.max_connections)),
            config: Arc::new(config),
            pools,
            default_pool,
            next_client_id: AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn default_pool(&self) -> &PoolHandle {
        &self.default_pool
    }

    /// The tenants, when any are configured (then every client must AUTH).
    pub fn tenants(&self) -> Option<&tenant_policy::Tenants> {
        self.tenants.as_ref()
    }

    pub fn pool(&self, name: &str) -> Option<&PoolHandle> {
        self.pools.get(name)
    }

    /// How long the proxy has been running.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Client connections open now (each holds one of the `max_connections` permits).
    pub fn connected_clients(&self) -> usize {
        self.config
            .client_limits
            .max_connections
            .saturating_sub(self.connections.available_permits())
    }

    /// The backend version of pool `name`, once learned.
    pub fn backend_version(&self, name: &str) -> Option<&crate::introspection::BackendVersion> {
        self.backend_versions.get(name)
    }

    /// Every Kafka pool, for the proxy's Kafka admin commands.
    pub fn kafka_pools(&self) -> impl Iterator<Item = &Arc<KafkaPool>> {
        self.pools.values().filter_map(|pool| match pool {
            PoolHandle::Kafka(kafka) => Some(kafka),
            _ => None,
        })
    }

    /// Codec limits for client requests.
    pub fn client_codec_limits(&self) -> Limits {
        let limits = &self.config.client_limits;
        Limits {
            max_bulk_len: limits.max_bulk_bytes,
            max_array_len: limits.max_arguments,
            ..Limits::default()
        }
    }
}

/// A running proxy: its address, and a handle to stop it.
pub struct RunningProxy {
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningProxy {
    /// Stops accepting clients and waits for the accept loop to end. Open sessions end with the runtime.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Binds the listen address and starts accepting clients on the current runtime.
pub async fn start(config: Config) -> Result<RunningProxy, String> {
    let listen = config.listen_addr().map_err(|e| e.to_string())?;
    let state = Arc::new(ProxyState::new(config).await?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listen address: {e}"))?;
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, state, shutdown_receiver));
    Ok(RunningProxy {
        local_addr,
        shutdown,
        task,
    })
}

/// Runs the proxy until `stop` completes, on `threads` worker threads (at least one). Each worker is a
/// single-threaded runtime with its own listening socket (SO_REUSEPORT, so the kernel spreads new clients) and
/// its own backend connections; nothing on the per-command path crosses threads.
pub fn run(config: Config, threads: usize, stop: impl Future<Output = ()>) -> Result<(), String> {
    let threads = threads.max(1);
    let runtime = current_thread_runtime()?;
    runtime.block_on(async move {
        let listen = config.listen_addr().map_err(|e| e.to_string())?;
        let state = Arc::new(ProxyState::new(config).await?);
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let mut workers = Vec::new();
        for index in 1..threads {
            let state = Arc::clone(&state);
            let shutdown_receiver = shutdown_receiver.clone();
            let listener = bind(listen, threads > 1)?
                .into_std()
                .map_err(|e| e.to_string())?;
            let worker = std::thread::Builder::new()
                .name(format!("rkproxy-worker-{index}"))
                .spawn(move || -> Result<(), String> {
                    WORKER_INDEX.with(|cell| cell.set(index));
                    let runtime = current_thread_runtime()?;
                    runtime.block_on(async move {
                        let listener =
                            TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                        accept_loop(listener, state, shutdown_receiver).await;
                        Ok(())
                    })
                })
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            workers.push(worker);
        }
        let listener = bind(listen, threads > 1)?;
        info!(listen = %listen, threads, "rkproxy ready");
        let accept = tokio::spawn(accept_loop(listener, state, shutdown_receiver));
        stop.await;
        info!("shutting down");
        let _ = shutdown.send(true);
        let _ = accept.await;
        for worker in workers {
            let _ = worker.join();
        }
        Ok(())
    })
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// A listening socket; with `shared`, several sockets of this process listen on the same address.
fn bind(addr: SocketAddr, shared: bool) -> Result<TcpListener, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("cannot set SO_REUSEADDR: {e}"))?;
    if shared {
        socket
            .set_reuseport(true)
            .map_err(|e| format!("cannot set SO_REUSEPORT: {e}"))?;
    }
    socket
        .bind(addr)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    socket
        .listen(1024)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ProxyState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::clone(&state.connections);
    let server_addr = listener.local_addr().ok();
    loop {
        let (stream, client_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually out of file descriptors; back off briefly instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => {
                info!("listener stopped");
                return;
            }
        };
        let id = state.next_client_id.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        // One span per connection, at debug level: entering an enabled span on every poll cost about 10% of
        // throughput at pipeline depth 1 (measured), so it is on only when asked for, with
        // `log = "info,rkproxy::connection=debug"`.
        let span = debug_span!(
            target: "rkproxy::connection",
            "connection",
            id,
            client.addr = %client_addr,
            server.addr = ?server_addr,
        );
        let state = Arc::clone(&state);
        tokio::spawn(
            async move {
                debug!(target: "rkproxy::connection", "client connected");
                let end = Session::new(id, state, stream).run().await;
                debug!(target: "rkproxy::connection", reason = %end, "client disconnected");
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}
