//! The listener: binds the listen address, runs one accept loop per worker thread, enforces the connection
//! limit, and runs one session task per client.
//!
//! This is the top layer of the engine (under the embedding API in `proxy.rs`): it builds the shared
//! [`ProxyState`] (in its reload cell, [`Live`]) and creates sessions, each with the newest state; nothing
//! below imports it. Each accept loop knows its worker index and gives it to the sessions it creates, which
//! pass it to their pools (each worker has its own backend connections).
//!
//! With `tls_listen`, every worker also accepts on the TLS address: the same accept loop, whose sessions
//! first finish a TLS handshake (within `tls.handshake_ms`) with the newest certificate (`Live::client_tls`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::{debug, debug_span, info, warn, Instrument};

use crate::config::{Config, ConfigError};
use crate::metrics::MetricsError;
use crate::session::Session;
use crate::state::{shutdown_begun, ConfigSource, Live, ProxyState, StateError};

/// Why the proxy could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the listen address: {0}")]
    LocalAddr(std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot create a socket: {0}")]
    Socket(std::io::Error),
    #[error("cannot set SO_REUSEADDR: {0}")]
    ReuseAddr(std::io::Error),
    #[error("cannot set SO_REUSEPORT: {0}")]
    ReusePort(std::io::Error),
    #[error("cannot hand a listening socket to a worker thread: {0}")]
    Handover(std::io::Error),
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
}
use crate::tls::ClientStream;

/// The worker index of the accept loop that runs on the caller's runtime (`start`, and the first loop of `run`).
const FIRST_WORKER: usize = 0;

/// An accept loop running on the caller's runtime: its address, and how to stop it.
#[derive(Debug)]
pub struct AcceptLoop {
    pub local_addr: SocketAddr,
    /// Where TLS clients connect (`tls_listen`), if they do.
    pub tls_local_addr: Option<SocketAddr>,
    /// The newest configuration, and how to reload it.
    pub live: Arc<Live>,
    /// Where `GET /metrics` is served (`metrics_listen`), if it is.
    pub metrics_addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
    tls_task: Option<tokio::task::JoinHandle<()>>,
}

impl AcceptLoop {
    /// The memory limits' counters (see `crate::memory`).
    pub fn memory_counters(&self) -> crate::memory::MemoryCounters {
        self.live.current().memory().counters()
    }

    /// Stops accepting clients, then lets open sessions answer what they have read (up to
    /// `timeouts.shutdown_ms`) and waits until they have closed.
    pub async fn stop(self) {
        self.live.current().begin_shutdown();
        let _ = self.task.await;
        if let Some(task) = self.tls_task {
            let _ = task.await;
        }
        drain(&self.live.current()).await;
    }
}

/// Sessions end by themselves `shutdown_ms` after the shutdown began; the listener waits this much longer
/// before it gives up on them, so that they close their sockets first.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Waits until every session has ended (they stop themselves at `shutdown_ms`), and logs the outcome.
async fn drain(state: &ProxyState) {
    let still_open = state.drained(state.shutdown_limit() + DRAIN_GRACE).await;
    if still_open > 0 {
        warn!(
            connections = still_open,
            "connections still open after timeouts.shutdown_ms; closing them"
        );
    }
}

/// Binds the listen address and starts accepting clients on the current runtime. `source` is where a reload
/// reads the configuration again, if anywhere.
pub async fn start(
    config: Config,
    source: Option<ConfigSource>,
) -> Result<AcceptLoop, ServerError> {
    let listen = config.listen_addr()?;
    let tls_listen = config.tls_listen_addr()?;
    let live = Live::start(config, source).await?;
    let metrics_addr = start_metrics(&live).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    let task = tokio::spawn(accept_loop(
        FIRST_WORKER,
        listener,
        Arc::clone(&live),
        Plain,
    ));
    let (tls_local_addr, tls_task) = match tls_listen {
        Some(address) => {
            let listener =
                TcpListener::bind(address)
                    .await
                    .map_err(|source| ServerError::Listen {
                        addr: address,
                        source,
                    })?;
            let local = listener.local_addr().map_err(ServerError::LocalAddr)?;
            let task = tokio::spawn(accept_loop(FIRST_WORKER, listener, Arc::clone(&live), Tls));
            (Some(local), Some(task))
        }
        None => (None, None),
    };
    Ok(AcceptLoop {
        local_addr,
        tls_local_addr,
        live,
        metrics_addr,
        task,
        tls_task,
    })
}

/// Runs the proxy until `stop` completes, on `threads` worker threads (at least one). Each worker is a
/// single-threaded runtime with its own listening socket (SO_REUSEPORT, so the kernel spreads new clients) and
/// its own backend connections; nothing on the per-command path crosses threads. `started` is given the
/// reload cell once the state is built (`stop` runs on the first worker's runtime, where a reload can run).
pub fn run(
    config: Config,
    source: Option<ConfigSource>,
    threads: usize,
    started: impl FnOnce(&Arc<Live>),
    stop: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let threads = threads.max(1);
    let runtime = current_thread_runtime()?;
    runtime.block_on(async move {
        let listen = config.listen_addr()?;
        let tls_listen = config.tls_listen_addr()?;
        let live = Live::start(config, source).await?;
        started(&live);
        start_metrics(&live).await?;
        // The first worker binds first: the other workers then share the port it got, which is what `listen`
        // names unless that asks for any free port (port 0).
        let listener = bind(listen, threads > 1)?;
        let listen = listener.local_addr().map_err(ServerError::LocalAddr)?;
        let tls_listener = match tls_listen {
            Some(address) => Some(bind(address, threads > 1)?),
            None => None,
        };
        let tls_listen = match &tls_listener {
            Some(listener) => Some(listener.local_addr().map_err(ServerError::LocalAddr)?),
            None => None,
        };
        let mut workers = Vec::new();
        for index in 1..threads {
            workers.push(spawn_worker(index, Arc::clone(&live), listen, tls_listen)?);
        }
        let tls_accept = tls_listener.map(|listener| {
            tokio::spawn(accept_loop(FIRST_WORKER, listener, Arc::clone(&live), Tls))
        });
        let tls_text = tls_listen.map_or_else(|| "off".to_owned(), |address| address.to_string());
        info!(listen = %listen, tls_listen = %tls_text, threads, "rkproxy ready");
        let accept = tokio::spawn(accept_loop(
            FIRST_WORKER,
            listener,
            Arc::clone(&live),
            Plain,
        ));
        stop.await;
        let state = live.current();
        info!(
            shutdown_ms = state.config().timeouts.shutdown_ms,
            "shutting down: answering requests already read"
        );
        state.begin_shutdown();
        let _ = accept.await;
        if let Some(tls_accept) = tls_accept {
            let _ = tls_accept.await;
        }
        drain(&state).await;
        for worker in workers {
            let _ = worker.join();
        }
        Ok(())
    })
}

/// Starts worker `index` (after the first, which is the caller's thread): a thread with a single-threaded
/// runtime and listening sockets of its own on `listen` (and `tls_listen`), shared with the other workers
/// through SO_REUSEPORT. The thread ends once its accept loops have stopped and its sessions have drained.
fn spawn_worker(
    index: usize,
    live: Arc<Live>,
    listen: SocketAddr,
    tls_listen: Option<SocketAddr>,
) -> Result<std::thread::JoinHandle<Result<(), ServerError>>, ServerError> {
    let listener = bind(listen, true)?
        .into_std()
        .map_err(ServerError::Handover)?;
    let tls_listener = match tls_listen {
        Some(address) => Some(
            bind(address, true)?
                .into_std()
                .map_err(ServerError::Handover)?,
        ),
        None => None,
    };
    std::thread::Builder::new()
        .name(format!("rkproxy-worker-{index}"))
        .spawn(move || -> Result<(), ServerError> {
            let runtime = current_thread_runtime()?;
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).map_err(ServerError::Handover)?;
                let tls_listener = match tls_listener {
                    Some(listener) => {
                        Some(TcpListener::from_std(listener).map_err(ServerError::Handover)?)
                    }
                    None => None,
                };
                let tls_loop = tls_listener
                    .map(|listener| accept_loop(index, listener, Arc::clone(&live), Tls));
                let plain_loop = accept_loop(index, listener, Arc::clone(&live), Plain);
                match tls_loop {
                    Some(tls_loop) => {
                        tokio::join!(plain_loop, tls_loop);
                    }
                    None => plain_loop.await,
                }
                // This runtime runs its sessions: it must live until they have drained.
                drain(&live.current()).await;
                Ok(())
            })
        })
        .map_err(ServerError::Thread)
}

/// Serves `GET /metrics` on `metrics_listen`, when it is set (on the current runtime).
async fn start_metrics(live: &Arc<Live>) -> Result<Option<SocketAddr>, MetricsError> {
    match live.current().config().metrics_listen.clone() {
        Some(listen) => crate::metrics::start(live, &listen).await.map(Some),
        None => Ok(None),
    }
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)
}

/// A listening socket; with `shared`, several sockets of this process listen on the same address.
fn bind(addr: SocketAddr, shared: bool) -> Result<TcpListener, ServerError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ServerError::Socket)?;
    socket.set_reuseaddr(true).map_err(ServerError::ReuseAddr)?;
    if shared {
        socket.set_reuseport(true).map_err(ServerError::ReusePort)?;
    }
    let cannot_listen = |source| ServerError::Listen { addr, source };
    socket.bind(addr).map_err(cannot_listen)?;
    socket.listen(1024).map_err(cannot_listen)
}

/// What an accept loop's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

use Transport::{Plain, Tls};

/// Accepts clients on `listener` until the shutdown begins; every session it starts runs on this thread, as
/// worker `worker`, and starts with the newest configuration. On a TLS listener each session first finishes
/// its handshake with the newest certificate.
async fn accept_loop(worker: usize, listener: TcpListener, live: Arc<Live>, transport: Transport) {
    let mut shutdown = live.current().shutdown_signal();
    // The sessions of this worker watch a signal of their own (see `crate::shutdown`), passed on from the
    // proxy's: the sessions of other threads then never share a lock with them, and waiting for it costs a
    // session's loop no lock at all.
    let (sessions_shutdown, sessions_signal) = crate::shutdown::channel();
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
            _ = shutdown_begun(&mut shutdown) => {
                sessions_shutdown.begin();
                info!("listener stopped");
                return;
            }
        };
        let state = live.current();
        let id = state.next_client_id();
        let Some(permit) = state.admit_client() else {
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
        let shutdown = sessions_signal.clone();
        let tls = match transport {
            Plain => None,
            Tls => match live.client_tls() {
                Some(tls) => Some(tls),
                None => {
                    warn!(client.addr = %client_addr, "TLS client refused: no [tls] certificate is configured");
                    continue;
                }
            },
        };
        tokio::spawn(
            async move {
                debug!(target: "rkproxy::connection", "client connected");
                let stream = match tls {
                    None => ClientStream::Plain(stream),
                    Some(tls) => match tls.accept(stream).await {
                        Ok(stream) => {
                            state.tls_handshakes().count(Ok(&stream));
                            stream
                        }
                        Err(error) => {
                            state.tls_handshakes().count(Err(&error));
                            crate::tls::log_handshake_failure(client_addr, &error);
                            drop(permit);
                            return;
                        }
                    },
                };
                let end = Session::new(id, worker, state, stream, shutdown)
                    .run()
                    .await;
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
