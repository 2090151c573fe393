//! A shared, multiplexed connection: the cheap handle clients send through, and the task that owns the socket
//! (see the parent module's docs for how it batches, pairs replies and keeps its deadlines).

use std::future::poll_fn;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp_codec::{Limits, ReplyDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::connect::connect;
use super::endpoint::Endpoint;
use super::error::{BackendError, BackendFailure, BackendReply, Broken};
use super::outgoing::Outgoing;
use super::patience::{Patience, SlowOwed, Watchdog};
use super::reply_queue::{Expected, RedirectWatch, ReplyQueue};
use crate::tls::{BackendStream, PlainSocket, ReadNow, WriteNow};

/// Most jobs one shared connection has in flight before it stops taking more (the rest wait in the channel).
const MAX_IN_FLIGHT: usize = 16 * 1024;
/// No more jobs are taken while this many request bytes wait to be written.
const MAX_WRITE_BATCH: usize = 256 * 1024;
/// After a failed connect, requests fail at once for this long instead of each trying to connect again.
const RECONNECT_HOLD_OFF: Duration = Duration::from_millis(100);

struct Job {
    request: Bytes,
    expected: Expected,
    patience: Patience,
    reply: oneshot::Sender<BackendReply>,
    redirects: Option<RedirectWatch>,
}

/// A cheap, cloneable handle to one shared backend connection.
#[derive(Clone, Debug)]
pub struct SharedConnection {
    address: Arc<str>,
    jobs: mpsc::UnboundedSender<Job>,
    redirects: Option<RedirectWatch>,
}

/// Sends jobs with a given [`Patience`] (see [`SharedConnection::with_patience`]).
#[derive(Debug, Clone, Copy)]
pub struct PatientSender<'a> {
    connection: &'a SharedConnection,
    patience: Patience,
}

impl SharedConnection {
    /// Starts the task that owns the connection. It connects when the first request arrives.
    pub fn spawn(endpoint: Endpoint) -> SharedConnection {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let address = Arc::clone(&endpoint.address);
        tokio::spawn(run_shared_connection(endpoint, receiver));
        SharedConnection {
            address,
            jobs,
            redirects: None,
        }
    }

    /// This handle, raising `watch` for every redirect replied to a job sent through it.
    pub fn watching_redirects(mut self, watch: &RedirectWatch) -> SharedConnection {
        self.redirects = Some(watch.clone());
        self
    }

    /// Sends with `patience`: `connection.with_patience(Patience::for_command(spec)).send(request)`. The
    /// methods of `SharedConnection` itself send with [`Patience::Normal`].
    pub fn with_patience(&self, patience: Patience) -> PatientSender<'_> {
        PatientSender {
            connection: self,
            patience,
        }
    }

    /// Queues a request (complete RESP bytes) and returns where its reply will arrive.
    pub fn send(&self, request: Bytes) -> oneshot::Receiver<BackendReply> {
        self.with_patience(Patience::Normal).send(request)
    }
}

impl PatientSender<'_> {
    /// Queues a request (complete RESP bytes) and returns where its reply will arrive.
    pub fn send(self, request: Bytes) -> oneshot::Receiver<BackendReply> {
        self.send_job(request, Expected::One)
    }

    /// Queues `count` pipelined requests (complete RESP bytes, back to back); their replies arrive together,
    /// concatenated in order. One channel message and one oneshot per batch instead of per request.
    pub fn send_many(self, requests: Bytes, count: usize) -> oneshot::Receiver<BackendReply> {
        match NonZeroUsize::new(count) {
            Some(count) => self.send_job(requests, Expected::Concatenated(count)),
            None => self.owed_nothing(&requests),
        }
    }

    /// Sends `ASKING` and the request together, so no other client's command can come between them (ASKING
    /// applies to the next command on the connection); the reply is the request's.
    pub fn send_asking(self, request: &[u8]) -> oneshot::Receiver<BackendReply> {
        let mut both = BytesMut::with_capacity(request.len() + 20);
        both.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
        both.extend_from_slice(request);
        self.send_job(both.freeze(), Expected::AskingThenOne)
    }

    fn send_job(self, request: Bytes, expected: Expected) -> oneshot::Receiver<BackendReply> {
        let (reply, receiver) = oneshot::channel();
        // If the task is gone, the dropped sender makes the receiver report an error; nothing else to do here.
        let _ = self.connection.jobs.send(Job {
            request,
            expected,
            patience: self.patience,
            reply,
            redirects: self.connection.redirects.clone(),
        });
        receiver
    }

    /// A job that expects no reply is never sent: bytes without an owed reply would put every later reply on
    /// the connection out of step. Nothing to send is answered with nothing; anything else is a caller's bug.
    fn owed_nothing(self, requests: &Bytes) -> oneshot::Receiver<BackendReply> {
        let (reply, receiver) = oneshot::channel();
        let answer = if requests.is_empty() {
            Ok(Bytes::new())
        } else {
            Err(BackendError::new(
                &self.connection.address,
                BackendFailure::NothingOwed,
            ))
        };
        let _ = reply.send(answer);
        receiver
    }
}

async fn run_shared_connection(endpoint: Endpoint, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut last_failure: Option<(Instant, BackendError)> = None;
    // The TLS settings the last attempt used: a reload that rotated them lifts the hold-off.
    let mut tried_tls = tls_rotations(&endpoint);
    loop {
        // Connect only when there is work, so an idle proxy does not hammer a dead backend.
        let Some(first) = jobs.recv().await else {
            return;
        };
        if let Some((when, error)) = &last_failure {
            if when.elapsed() < RECONNECT_HOLD_OFF && tried_tls == tls_rotations(&endpoint) {
                fail_all(error, first, &mut jobs);
                continue;
            }
        }
        tried_tls = tls_rotations(&endpoint);
        match connect(&endpoint).await {
            Ok(stream) => {
                debug!(backend = %endpoint.address, db = endpoint.db, "backend connected");
                let mut live = Live::new(&endpoint);
                let Err(broken) = live.serve(stream, first, &mut jobs).await else {
                    return;
                };
                warn!(backend = %endpoint.address, reason = %broken, "backend connection lost");
                let error = BackendError::lost(&endpoint.address, broken);
                for waiter in live.queue.into_waiters() {
                    let _ = waiter.send(Err(error.clone()));
                }
                last_failure = Some((Instant::now(), error));
            }
            Err(reason) => {
                warn!(backend = %endpoint.address, %reason, "backend connect failed");
                let error = BackendError::connect(&endpoint.address, reason);
                fail_all(&error, first, &mut jobs);
                last_failure = Some((Instant::now(), error));
            }
        }
    }
}

/// Which TLS settings a connection to `endpoint` would use now (0 for plaintext).
fn tls_rotations(endpoint: &Endpoint) -> u64 {
    endpoint.tls.as_ref().map_or(0, |tls| tls.rotations())
}

/// Answers `first` and every job already waiting with the error.
fn fail_all(error: &BackendError, first: Job, jobs: &mut mpsc::UnboundedReceiver<Job>) {
    let _ = first.reply.send(Err(error.clone()));
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(error.clone()));
    }
}

/// The state of one live shared connection.
struct Live {
    queue: ReplyQueue<oneshot::Sender<BackendReply>>,
    decoder: ReplyDecoder,
    read_buffer: BytesMut,
    outgoing: Outgoing,
    watchdog: Watchdog,
    scripts_on_server: SlowOwed,
    /// Every handle is gone: finish what is owed, then stop.
    handles_gone: bool,
}

impl Live {
    fn new(endpoint: &Endpoint) -> Live {
        Live {
            queue: ReplyQueue::default(),
            // Any reply Redis can produce must pass, however deep; the client limits are for client requests.
            decoder: ReplyDecoder::new(Limits::for_backend_replies()),
            read_buffer: BytesMut::with_capacity(64 * 1024),
            outgoing: Outgoing::default(),
            watchdog: Watchdog {
                command_timeout: endpoint.command_timeout,
                slow_command_timeout: endpoint.slow_command_timeout,
                last_progress: Instant::now(),
            },
            scripts_on_server: SlowOwed::for_address(&endpoint.address),
            handles_gone: false,
        }
    }

    /// Runs the connection until it breaks (`Err`, the jobs still owed stay in `queue`) or every handle is
    /// gone and nothing is owed (`Ok`). Reads, writes and new jobs are served as each becomes ready, so neither
    /// direction waits for the other.
    async fn serve(
        &mut self,
        stream: BackendStream,
        first: Job,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
    ) -> Result<(), Broken> {
        // Each kind of stream gets its own copy of the loop: a plaintext connection runs on tokio's socket
        // halves exactly as before TLS existed.
        match stream {
            BackendStream::Plain(PlainSocket::Tcp(tcp)) => {
                let (reader, writer) = tcp.into_split();
                self.serve_halves(reader, writer, first, jobs).await
            }
            BackendStream::Plain(PlainSocket::Unix(unix)) => {
                let (reader, writer) = unix.into_split();
                self.serve_halves(reader, writer, first, jobs).await
            }
            BackendStream::Tls(tls) => {
                let (reader, writer) = tls.into_halves();
                self.serve_halves(reader, writer, first, jobs).await
            }
        }
    }

    async fn serve_halves<R, W>(
        &mut self,
        mut reader: R,
        mut writer: W,
        first: Job,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
    ) -> Result<(), Broken>
    where
        R: AsyncRead + ReadNow + Unpin,
        W: AsyncWrite + WriteNow + Unpin,
    {
        let alarm = tokio::time::sleep(self.watchdog.command_timeout);
        tokio::pin!(alarm);
        self.take_jobs(first, jobs, alarm.as_mut());
        loop {
            let accepting = !self.handles_gone
                && self.unwritten() < MAX_WRITE_BATCH
                && self.queue.len() < MAX_IN_FLIGHT;
            tokio::select! {
                read = reader.read_buf(&mut self.read_buffer) => self.on_read(read)?,
                written = poll_fn(|context| self.outgoing.poll_write_to(&mut writer, context)), if self.unwritten() > 0 => {
                    self.on_written(written)?;
                }
                job = jobs.recv(), if accepting => match job {
                    Some(job) => {
                        // Coalescing: let the event loop run once more (it polls for I/O before resuming a task
                        // that yielded), so the clients whose requests arrived meanwhile add them to this write.
                        // Fewer, larger writes mean fewer reads and wake-ups in Redis; cluster GET/SET at `-P 1`
                        // gained about 15%.
                        tokio::task::yield_now().await;
                        self.take_jobs(job, jobs, alarm.as_mut());
                    }
                    None => self.handles_gone = true,
                },
                () = &mut alarm, if !self.queue.is_empty() => {
                    self.catch_up(&mut reader, &mut writer)?;
                    let next = self.check_progress()?;
                    alarm.as_mut().reset(next);
                }
            }
            if self.handles_gone && self.queue.is_empty() {
                return Ok(());
            }
        }
    }

    /// Queues `first` and every job already waiting (up to the batch limits) for writing.
    fn take_jobs(
        &mut self,
        first: Job,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
        alarm: std::pin::Pin<&mut tokio::time::Sleep>,
    ) {
        if self.queue.is_empty() {
            // The clock starts when work is owed. The alarm is left alone if it rings soon enough anyway.
            self.watchdog.progress();
            self.scripts_on_server.script_finished_since_last_look();
            let now = self.watchdog.last_progress;
            if alarm.deadline() <= now {
                alarm.reset(now + self.watchdog.command_timeout);
            }
        }
        self.queue_job(first);
        while self.unwritten() < MAX_WRITE_BATCH && self.queue.len() < MAX_IN_FLIGHT {
            match jobs.try_recv() {
                Ok(job) => self.queue_job(job),
                Err(_) => break,
            }
        }
        self.scripts_on_server
            .set(self.queue.patience() == Patience::Slow);
    }

    fn queue_job(&mut self, job: Job) {
        self.outgoing.push(job.request);
        self.queue
            .push_watched(job.reply, job.expected, job.patience, job.redirects);
    }

    /// Request bytes queued and not written yet.
    fn unwritten(&self) -> usize {
        self.outgoing.len()
    }

    fn on_read(&mut self, read: std::io::Result<usize>) -> Result<(), Broken> {
        match read {
            Ok(0) => return Err(Broken::Closed),
            Ok(_) => self.watchdog.progress(),
            Err(e) => return Err(Broken::Read(e)),
        }
        self.queue.pair_buffered(
            &mut self.read_buffer,
            &mut self.decoder,
            |waiter, answer| {
                let _ = waiter.send(Ok(answer));
            },
        )?;
        self.scripts_on_server
            .set(self.queue.patience() == Patience::Slow);
        Ok(())
    }

    fn on_written(&mut self, written: std::io::Result<usize>) -> Result<(), Broken> {
        match written {
            Ok(0) => Err(Broken::Write(std::io::ErrorKind::WriteZero.into())),
            Ok(count) => {
                self.outgoing.advance(count);
                self.watchdog.progress();
                Ok(())
            }
            Err(e) => Err(Broken::Write(e)),
        }
    }

    /// Takes the bytes the backend sent, and gives it the bytes it can accept, without waiting. The alarm can
    /// ring when this task was not polled for a while (its thread busy with other tasks) although the backend
    /// kept going: what it did meanwhile is progress, and must be seen before the backend is judged.
    fn catch_up(
        &mut self,
        reader: &mut impl ReadNow,
        writer: &mut impl WriteNow,
    ) -> Result<(), Broken> {
        match reader.read_now(&mut self.read_buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            read => self.on_read(read)?,
        }
        if self.unwritten() > 0 {
            match writer.write_now(self.outgoing.first_piece()) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                written => self.on_written(written)?,
            }
        }
        Ok(())
    }

    /// When the alarm rings: the next time to look, or why the connection counts as broken.
    fn check_progress(&mut self) -> Result<Instant, Broken> {
        if self.scripts_on_server.script_finished_since_last_look() {
            self.watchdog.progress();
        }
        let patience = if self.scripts_on_server.server_may_be_busy() {
            Patience::Slow
        } else {
            self.queue.patience()
        };
        self.watchdog
            .check(Instant::now(), patience)
            .map_err(|allowance| {
                if self.unwritten() == 0 {
                    Broken::NoReply(allowance)
                } else {
                    Broken::WriteBlocked(allowance)
                }
            })
    }
}
