#![allow(clippy::unwrap_used)]

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::error::{BackendError, Broken, ConnectError, FailureKind};
use super::patience::{Patience, SlowOwed, Watchdog};
use super::reply_queue::{Expected, ReplyQueue, Waiter};
use super::{connect, Endpoint};

/// The tests' plain waiters: a number, never abandoned.
macro_rules! never_abandoned {
    ($($number:ty),*) => {
        $(impl Waiter for $number {
            fn abandoned(&self) -> bool {
                false
            }
        })*
    };
}

never_abandoned!(i32, u32, usize);

/// A waiter whose client can go away while its job is on the wire.
#[derive(Debug)]
struct Leaving {
    id: u32,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Waiter for Leaving {
    fn abandoned(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn count(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

/// Feeds `frames` to the queue and returns (waiter, answer) in the order the waiters were answered.
fn feed(queue: &mut ReplyQueue<u32>, frames: &[&'static [u8]]) -> Vec<(u32, Bytes)> {
    let mut answered = Vec::new();
    for frame in frames {
        if let Some(done) = queue.pair(BytesMut::from(*frame)).unwrap() {
            answered.push(done);
        }
    }
    answered
}

#[test]
fn each_shape_gets_exactly_its_replies() {
    let mut queue = ReplyQueue::default();
    queue.push(1, Expected::One, Patience::Normal);
    queue.push(2, Expected::Concatenated(count(2)), Patience::Normal);
    queue.push(4, Expected::AskingThenOne, Patience::Normal);
    queue.push(5, Expected::One, Patience::Normal);
    let answered = feed(
        &mut queue,
        &[
            b"$2\r\nv1\r\n",
            b":1\r\n",
            b":2\r\n",
            b"+OK\r\n",
            b"$3\r\nask\r\n",
            b"$2\r\nv5\r\n",
        ],
    );
    assert_eq!(
        answered,
        [
            (1, Bytes::from_static(b"$2\r\nv1\r\n")),
            (2, Bytes::from_static(b":1\r\n:2\r\n")),
            (4, Bytes::from_static(b"$3\r\nask\r\n")),
            (5, Bytes::from_static(b"$2\r\nv5\r\n")),
        ]
    );
    assert!(queue.is_empty());
}

#[test]
fn a_reply_nobody_is_owed_breaks_the_connection() {
    let mut queue = ReplyQueue::default();
    queue.push(1, Expected::One, Patience::Normal);
    assert!(queue
        .pair(BytesMut::from(&b"+OK\r\n"[..]))
        .unwrap()
        .is_some());
    assert!(matches!(
        queue.pair(BytesMut::from(&b"+OK\r\n"[..])),
        Err(Broken::ReplyWithoutRequest)
    ));
}

#[test]
fn a_transaction_of_10_000_commands_between_other_clients_replies() {
    // The old bookkeeping capped the replies owed at 255: every later waiter got someone else's reply. A
    // cluster transaction (MULTI, the queued commands, EXEC) is one job owed every one of its replies.
    let commands = 10_000;
    let mut queue = ReplyQueue::default();
    queue.push(1, Expected::One, Patience::Normal);
    queue.push(
        2,
        Expected::Concatenated(count(commands + 2)),
        Patience::Normal,
    );
    queue.push(3, Expected::One, Patience::Normal);
    let mut answered = Vec::new();
    let mut give = |frame: Bytes| {
        if let Some(done) = queue.pair(BytesMut::from(&frame[..])).unwrap() {
            answered.push(done);
        }
    };
    give(Bytes::from_static(b"$6\r\nclient\r\n"));
    give(Bytes::from_static(b"+OK\r\n"));
    for _ in 0..commands {
        give(Bytes::from_static(b"+QUEUED\r\n"));
    }
    let exec = format!("*{commands}\r\n{}", "+OK\r\n".repeat(commands));
    give(Bytes::from(exec.clone()));
    give(Bytes::from_static(b"$5\r\nother\r\n"));
    assert_eq!(
        answered,
        [
            (1, Bytes::from_static(b"$6\r\nclient\r\n")),
            (
                2,
                Bytes::from(format!("+OK\r\n{}{exec}", "+QUEUED\r\n".repeat(commands)))
            ),
            (3, Bytes::from_static(b"$5\r\nother\r\n")),
        ]
    );
    assert!(queue.is_empty());
}

#[test]
fn a_pipeline_of_10_000_replies_comes_back_whole_and_in_order() {
    let commands = 10_000;
    let mut queue = ReplyQueue::default();
    queue.push(7, Expected::Concatenated(count(commands)), Patience::Normal);
    queue.push(8, Expected::One, Patience::Normal);
    let mut expected = BytesMut::new();
    let mut answered = Vec::new();
    for n in 0..commands {
        let frame = BytesMut::from(format!(":{n}\r\n").as_bytes());
        expected.extend_from_slice(&frame);
        if let Some(done) = queue.pair(frame).unwrap() {
            answered.push(done);
        }
    }
    assert_eq!(answered, [(7, expected.freeze())]);
    assert_eq!(
        feed(&mut queue, &[b"+PONG\r\n"]),
        [(8, Bytes::from_static(b"+PONG\r\n"))]
    );
}

#[test]
fn a_connection_is_patient_while_a_script_is_owed_a_reply() {
    let mut queue = ReplyQueue::default();
    assert_eq!(queue.patience(), Patience::Normal);
    queue.push(1, Expected::One, Patience::Normal);
    assert_eq!(queue.patience(), Patience::Normal);
    // Redis holds the first reply back until the script that follows it has run.
    queue.push(2, Expected::One, Patience::Slow);
    queue.push(3, Expected::One, Patience::Normal);
    assert_eq!(queue.patience(), Patience::Slow);
    feed(&mut queue, &[b"+OK\r\n", b":1\r\n"]);
    assert_eq!(queue.patience(), Patience::Normal);
}

#[test]
fn a_script_on_one_connection_makes_the_others_patient_and_its_end_is_news_to_them() {
    let address = "test.invalid:1";
    let mut scripting = SlowOwed::for_address(address);
    let mut other = SlowOwed::for_address(address);
    assert!(!other.server_may_be_busy());
    scripting.set(true);
    assert!(other.server_may_be_busy());
    assert!(!other.script_finished_since_last_look());
    scripting.set(false);
    assert!(!other.server_may_be_busy());
    assert!(other.script_finished_since_last_look());
    assert!(!other.script_finished_since_last_look());
    assert!(!scripting.script_finished_since_last_look());
    // A connection that breaks while it owes a script's reply no longer counts.
    scripting.set(true);
    drop(scripting);
    assert!(!other.server_may_be_busy());
}

#[test]
fn scripts_are_slow_and_reads_are_not() {
    let eval = b"*3\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n";
    assert_eq!(Patience::for_request_bytes(eval), Patience::Slow);
    let fcall = b"*3\r\n$5\r\nfcall\r\n$1\r\nf\r\n$1\r\n0\r\n";
    assert_eq!(Patience::for_request_bytes(fcall), Patience::Slow);
    let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    assert_eq!(Patience::for_request_bytes(get), Patience::Normal);
    assert_eq!(Patience::for_request_bytes(b"*2\r\n$3"), Patience::Normal);
}

#[test]
fn the_watchdog_fails_only_after_the_allowance_without_progress() {
    let start = Instant::now();
    let watchdog = Watchdog {
        command_timeout: Duration::from_millis(1000),
        slow_command_timeout: Duration::from_millis(30_000),
        last_progress: start,
    };
    let early = start + Duration::from_millis(400);
    assert_eq!(
        watchdog.check(early, Patience::Normal),
        Ok(start + Duration::from_millis(1000))
    );
    let late = start + Duration::from_millis(1000);
    assert_eq!(
        watchdog.check(late, Patience::Normal),
        Err(Duration::from_millis(1000))
    );
    // A slow request is given more time, but the watchdog looks again every command_timeout.
    assert_eq!(
        watchdog.check(late, Patience::Slow),
        Ok(late + Duration::from_millis(1000))
    );
    let much_later = start + Duration::from_millis(30_000);
    assert_eq!(
        watchdog.check(much_later, Patience::Slow),
        Err(Duration::from_millis(30_000))
    );
}

/// An endpoint on `address` with a password and a db, so the handshake is AUTH then SELECT.
fn auth_and_select(address: &str) -> Endpoint {
    Endpoint {
        address: Arc::from(address),
        username: None,
        password: Some("secret".to_owned()),
        db: 99,
        resp3: false,
        readonly: false,
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        slow_command_timeout: Duration::from_secs(5),
        tls: None,
    }
}

/// A one-shot server on loopback that reads the handshake and sends `answer`.
async fn answering(answer: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 256];
        let _ = socket.read(&mut request).await;
        let _ = socket.write_all(answer).await;
        // Hold the socket open until the client is done.
        let _ = socket.read(&mut request).await;
    });
    address
}

#[tokio::test]
async fn a_refused_select_is_told_apart_from_a_refused_auth() {
    let address = answering(b"+OK\r\n-ERR DB index is out of range\r\n").await;
    let endpoint = auth_and_select(&address);
    let Err(refused) = connect(&endpoint).await else {
        panic!("the handshake passed");
    };
    let error = BackendError::connect(&endpoint.address, refused);
    assert_eq!(error.kind(), FailureKind::RefusedHandshake);
    assert_eq!(error.refused_select(), Some("ERR DB index is out of range"));
    assert_eq!(
        error.to_string(),
        format!("backend {address} unavailable: handshake refused: ERR DB index is out of range")
    );

    let address = answering(b"-WRONGPASS invalid username-password pair\r\n").await;
    let endpoint = auth_and_select(&address);
    let Err(refused) = connect(&endpoint).await else {
        panic!("the handshake passed");
    };
    let error = BackendError::connect(&endpoint.address, refused);
    assert_eq!(error.kind(), FailureKind::RefusedHandshake);
    assert_eq!(error.refused_select(), None);
}

#[test]
fn failures_are_counted_by_their_variant() {
    let address: Arc<str> = Arc::from("10.0.0.1:6379");
    let second = Duration::from_secs(1);
    let kind = |broken| BackendError::lost(&address, broken).kind();
    assert_eq!(kind(Broken::NoReply(second)), FailureKind::Timeout);
    assert_eq!(kind(Broken::WriteBlocked(second)), FailureKind::Timeout);
    assert_eq!(kind(Broken::NoProgress(second)), FailureKind::Timeout);
    assert_eq!(kind(Broken::Closed), FailureKind::ConnectionLost);
    assert_eq!(
        kind(Broken::ReplyWithoutRequest),
        FailureKind::ConnectionLost
    );
    let timed_out = BackendError::connect(&address, ConnectError::Timeout(1000));
    assert_eq!(timed_out.kind(), FailureKind::Timeout);
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let unreachable = BackendError::connect(&address, ConnectError::Connect(refused));
    assert_eq!(unreachable.kind(), FailureKind::Unreachable);
    // The texts clients see are the same as when the reason was a string.
    assert_eq!(
        &BackendError::lost(&address, Broken::NoProgress(second)).to_reply()[..],
        b"-ERR backend 10.0.0.1:6379 unavailable: no progress for 1000 ms\r\n"
    );
}

#[test]
fn a_batch_read_together_is_handed_back_without_a_copy_and_one_split_by_a_read_with_one() {
    let mut decoder = resp_codec::ReplyDecoder::default();
    let mut queue = ReplyQueue::default();
    queue.push(1, Expected::Concatenated(count(3)), Patience::Normal);
    queue.push(2, Expected::Concatenated(count(2)), Patience::Normal);
    let mut read_buffer = BytesMut::from(&b"+OK\r\n$3\r\nabc\r\n:7\r\n$1\r\nx"[..]);
    let start = read_buffer.as_ptr();
    let mut answered = Vec::new();
    let mut answer = |waiter, answer| answered.push((waiter, answer));
    queue
        .pair_buffered(&mut read_buffer, &mut decoder, &mut answer)
        .unwrap();
    // The rest of job 2 arrives in another buffer: its replies are joined by a copy, still in order.
    read_buffer.unsplit(BytesMut::from(&b"\r\n-ERR no\r\n"[..]));
    queue
        .pair_buffered(&mut read_buffer, &mut decoder, &mut answer)
        .unwrap();
    assert_eq!(
        answered,
        [
            (1, Bytes::from_static(b"+OK\r\n$3\r\nabc\r\n:7\r\n")),
            (2, Bytes::from_static(b"$1\r\nx\r\n-ERR no\r\n"))
        ]
    );
    assert_eq!(answered[0].1.as_ptr(), start, "taken out in place");
    assert!(queue.is_empty() && read_buffer.is_empty());
}

#[test]
fn replies_split_by_reads_into_one_buffer_are_joined_in_place() {
    let mut decoder = resp_codec::ReplyDecoder::default();
    let mut queue = ReplyQueue::default();
    queue.push(1, Expected::Concatenated(count(3)), Patience::Normal);
    let mut read_buffer = BytesMut::with_capacity(64);
    read_buffer.extend_from_slice(b"+OK\r\n:1");
    let start = read_buffer.as_ptr();
    let mut answered = Vec::new();
    for more in [&b"\r\n$2\r"[..], b"\nab\r\n"] {
        queue
            .pair_buffered(&mut read_buffer, &mut decoder, |waiter, answer| {
                answered.push((waiter, answer))
            })
            .unwrap();
        read_buffer.extend_from_slice(more);
    }
    queue
        .pair_buffered(&mut read_buffer, &mut decoder, |waiter, answer| {
            answered.push((waiter, answer))
        })
        .unwrap();
    assert_eq!(
        answered,
        [(1, Bytes::from_static(b"+OK\r\n:1\r\n$2\r\nab\r\n"))]
    );
    assert_eq!(answered[0].1.as_ptr(), start, "joined in place");
}

/// A waiter whose client goes away after its job was looked at a given number of times (never, with
/// `usize::MAX`): one look per reply, so a job can be abandoned between any two of its replies.
#[derive(Debug)]
struct LeavesAfter {
    id: usize,
    looks_left: std::cell::Cell<usize>,
}

impl Waiter for LeavesAfter {
    fn abandoned(&self) -> bool {
        let left = self.looks_left.get();
        self.looks_left.set(left.saturating_sub(1));
        left == 0
    }
}

/// Random jobs (one reply, a batch, ASKING then one), random replies with RESP3 push frames among them, jobs
/// abandoned between two of their replies, all read in random pieces into a read buffer that is sometimes
/// replaced (as a read that reserves more room does): every job gets exactly its own replies, whole and in
/// order, whether they were taken out in place or copied; an abandoned job gets an empty answer.
#[test]
fn random_replies_read_in_random_pieces_reach_their_own_job_whole() {
    for seed in 0..300u64 {
        let mut random = fastrand::Rng::with_seed(seed);
        let mut queue = ReplyQueue::default();
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for job in 0..random.usize(1..40) {
            let (kind, replies) = match random.u8(0..3) {
                0 => (Expected::One, 1),
                1 => {
                    let n = random.usize(1..20);
                    (Expected::Concatenated(count(n)), n)
                }
                _ => (Expected::AskingThenOne, 2),
            };
            let leaves_after = if random.u8(0..6) == 0 {
                random.usize(0..replies)
            } else {
                usize::MAX
            };
            let waiter = LeavesAfter {
                id: job,
                looks_left: std::cell::Cell::new(leaves_after),
            };
            queue.push(waiter, kind, Patience::Normal);
            let mut answer = Vec::new();
            for index in 0..replies {
                if random.u8(0..8) == 0 {
                    stream.extend_from_slice(b">2\r\n$7\r\nmessage\r\n:1\r\n");
                }
                let reply = random_reply(&mut random, job, index);
                stream.extend_from_slice(&reply);
                if kind != Expected::AskingThenOne || index == 1 {
                    answer.extend_from_slice(&reply);
                }
            }
            if leaves_after != usize::MAX {
                answer.clear();
            }
            expected.push((job, Bytes::from(answer)));
        }
        let mut decoder = resp_codec::ReplyDecoder::default();
        let mut read_buffer = BytesMut::new();
        let mut answered = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let piece = random.usize(1..=rest.len().min(64));
            if random.u8(0..4) == 0 {
                // A read into a new buffer: what is buffered moves with it.
                read_buffer = BytesMut::from(&read_buffer[..]);
            }
            read_buffer.extend_from_slice(&rest[..piece]);
            rest = &rest[piece..];
            queue
                .pair_buffered(&mut read_buffer, &mut decoder, |waiter, answer| {
                    answered.push((waiter.id, answer))
                })
                .unwrap();
        }
        assert_eq!(answered, expected, "seed {seed}");
        assert!(queue.is_empty() && read_buffer.is_empty(), "seed {seed}");
    }
}

fn random_reply(random: &mut fastrand::Rng, job: usize, index: usize) -> Vec<u8> {
    match random.u8(0..4) {
        0 => b"+OK\r\n".to_vec(),
        1 => format!(":{}\r\n", random.i64(..)).into_bytes(),
        2 => {
            let value: String = (0..random.usize(0..40))
                .map(|_| random.alphanumeric())
                .collect();
            format!("${}\r\n{value}\r\n", value.len()).into_bytes()
        }
        _ => format!(
            "*2\r\n:{job}\r\n${}\r\n{index}\r\n",
            index.to_string().len()
        )
        .into_bytes(),
    }
}

#[test]
fn an_abandoned_jobs_replies_are_dropped_and_the_next_job_gets_its_own() {
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut queue = ReplyQueue::default();
    let leaving = Leaving {
        id: 1,
        gone: Arc::clone(&gone),
    };
    queue.push(leaving, Expected::Concatenated(count(3)), Patience::Normal);
    let staying = Leaving {
        id: 2,
        gone: Arc::default(),
    };
    queue.push(staying, Expected::Concatenated(count(2)), Patience::Normal);
    let frame = |bytes: &'static [u8]| BytesMut::from(bytes);
    assert!(queue.pair(frame(b"$1\r\na\r\n")).unwrap().is_none());
    // The first job's client goes away after its first reply arrived.
    gone.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(queue.pair(frame(b"$1\r\nb\r\n")).unwrap().is_none());
    let (waiter, answer) = queue.pair(frame(b"$1\r\nc\r\n")).unwrap().unwrap();
    assert_eq!((waiter.id, &answer[..]), (1, &b""[..]));
    assert!(queue.pair(frame(b":1\r\n")).unwrap().is_none());
    let (waiter, answer) = queue.pair(frame(b":2\r\n")).unwrap().unwrap();
    assert_eq!((waiter.id, &answer[..]), (2, &b":1\r\n:2\r\n"[..]));
}
