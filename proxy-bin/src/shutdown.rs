//! The signal that tells one worker's sessions that the proxy is shutting down, made to be waited for on every
//! turn of a session's loop.
//!
//! A session's `select!` waits for the shutdown beside the client's socket and the backend's replies, so the
//! wait is polled on every turn: at pipeline depth 1, twice per request. tokio's `watch` (like `Notify`) takes
//! a lock to register a waiting future, on every poll while it waits, and again to drop it: callgrind counted
//! about 750 instructions per request for the session's two waits, 6% of all the proxy did. Here a poll is an
//! atomic load, and a comparison with the waker registered last time: the [`AtomicWaker`] (two
//! compare-and-swaps) is written only when the task's waker changed; the lock is taken only when a session
//! starts or ends and when the shutdown begins.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;

/// Begins the shutdown of the sessions that watch it (at [`ShutdownSender::begin`], or when dropped).
#[derive(Debug)]
pub struct ShutdownSender {
    shared: Arc<Shared>,
}

/// One session's view of its worker's shutdown signal. Each clone has a waker of its own.
#[derive(Debug)]
pub struct ShutdownWatch {
    shared: Arc<Shared>,
    waker: Arc<AtomicWaker>,
    /// A copy of the waker last put in `waker`, which holds it until the shutdown begins: a poll with a waker
    /// that wakes the same task registers nothing.
    registered: Option<Waker>,
}

#[derive(Debug, Default)]
struct Shared {
    begun: AtomicBool,
    /// The wakers of the watches alive (entries of dropped watches are swept as the list grows).
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    wakers: Vec<Weak<AtomicWaker>>,
    /// The list's length after the last sweep: the next sweep comes when it has doubled.
    swept_at: usize,
}

/// A shutdown signal not begun yet, and its first watch.
pub fn channel() -> (ShutdownSender, ShutdownWatch) {
    let shared = Arc::new(Shared::default());
    let watch = ShutdownWatch::register(Arc::clone(&shared));
    (ShutdownSender { shared }, watch)
}

impl ShutdownSender {
    /// Begins the shutdown: every watch, now and later, has begun, and every waiting one is woken.
    pub fn begin(&self) {
        self.shared.begun.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut lock(&self.shared.waiters).wakers);
        for waker in wakers.iter().filter_map(Weak::upgrade) {
            waker.wake();
        }
    }
}

impl Drop for ShutdownSender {
    fn drop(&mut self) {
        self.begin();
    }
}

impl ShutdownWatch {
    fn register(shared: Arc<Shared>) -> ShutdownWatch {
        let waker = Arc::new(AtomicWaker::new());
        let mut waiters = lock(&shared.waiters);
        if waiters.wakers.len() >= (2 * waiters.swept_at).max(64) {
            waiters.wakers.retain(|waker| waker.strong_count() > 0);
            waiters.swept_at = waiters.wakers.len();
        }
        waiters.wakers.push(Arc::downgrade(&waker));
        drop(waiters);
        ShutdownWatch {
            shared,
            waker,
            registered: None,
        }
    }

    /// Whether the shutdown has begun.
    pub fn has_begun(&self) -> bool {
        self.shared.begun.load(Ordering::SeqCst)
    }

    /// Ready once the shutdown has begun; otherwise registers `cx` to be woken when it does.
    pub fn poll_begun(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.has_begun() {
            return Poll::Ready(());
        }
        // Only `begin` takes the waker out of `waker`, and only after setting `begun`: not begun above means
        // the waker registered last is still there, or will be woken once `begun` is set.
        if self
            .registered
            .as_ref()
            .is_some_and(|registered| registered.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        self.waker.register(cx.waker());
        self.registered = Some(cx.waker().clone());
        // Checked again after registering: a `begin` between the first check and the registration woke
        // nothing here.
        if self.has_begun() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits until the shutdown has begun (at once if it has).
    pub async fn begun(&mut self) {
        poll_fn(|cx| self.poll_begun(cx)).await;
    }
}

impl Clone for ShutdownWatch {
    fn clone(&self) -> ShutdownWatch {
        ShutdownWatch::register(Arc::clone(&self.shared))
    }
}

fn lock(waiters: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    // Held only to push, sweep or take the list: a poisoned lock still holds a usable list.
    waiters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_waiting_watch_wakes_when_the_shutdown_begins() {
        let (sender, watch) = channel();
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let mut watch = watch.clone();
                tokio::spawn(async move { watch.begun().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!watch.has_begun());
        sender.begin();
        for task in waiting {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("a watch was not woken")
                .expect("the task failed");
        }
        assert!(watch.has_begun());
        assert!(
            watch.clone().has_begun(),
            "a watch made later has begun too"
        );
    }

    #[tokio::test]
    async fn dropping_the_sender_begins_the_shutdown() {
        let (sender, mut watch) = channel();
        let waiting = tokio::spawn(async move { watch.begun().await });
        tokio::task::yield_now().await;
        drop(sender);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the watch was not woken")
            .expect("the task failed");
    }

    /// A waker that remembers being woken.
    struct Flag(AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        (Arc::clone(&flag), Waker::from(flag))
    }

    #[test]
    fn the_latest_waker_is_woken_whether_or_not_it_changed() {
        let (sender, mut watch) = channel();
        let (first, first_waker) = flag();
        let (second, second_waker) = flag();
        for waker in [&first_waker, &first_waker, &second_waker, &second_waker] {
            assert_eq!(
                watch.poll_begun(&mut Context::from_waker(waker)),
                Poll::Pending
            );
        }
        sender.begin();
        assert!(
            second.0.load(Ordering::SeqCst),
            "the waker of the last poll was not woken"
        );
        assert!(
            !first.0.load(Ordering::SeqCst),
            "a replaced waker was woken"
        );
        assert_eq!(
            watch.poll_begun(&mut Context::from_waker(&first_waker)),
            Poll::Ready(())
        );
    }

    #[test]
    fn dropped_watches_are_swept_from_the_list() {
        let (_sender, watch) = channel();
        for _ in 0..10_000 {
            drop(watch.clone());
        }
        let held = lock(&watch.shared.waiters).wakers.len();
        assert!(held <= 200, "{held} wakers held for one live watch");
    }
}
