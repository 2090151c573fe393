//! Ctrl-C, SIGTERM and SIGHUP as a flag.
//!
//! Without this, a Ctrl-C would kill xtask at once and skip the code that stops the servers it
//! started. With it, the first signal only sets a flag: long waits poll [`requested`] and unwind
//! normally, so guards run their `Drop`. A second signal exits immediately, for when cleanup hangs.
//! (Children in the terminal's process group receive Ctrl-C themselves; redis-server, cargo and
//! rkproxy all exit on it.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::Result;

static SHUTDOWN: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handlers. Called once at startup.
pub fn install() -> Result<()> {
    let flag = SHUTDOWN.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        // Registered first, so it sees the flag as it was before this delivery: it exits only
        // when an earlier signal already asked for shutdown.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(flag))?;
        signal_hook::flag::register(signal, Arc::clone(flag))?;
    }
    Ok(())
}

/// Whether a shutdown signal has arrived.
pub fn requested() -> bool {
    SHUTDOWN
        .get()
        .is_some_and(|flag| flag.load(Ordering::SeqCst))
}

/// Sleeps for `duration` in small steps, returning early (with an error) on a shutdown signal.
pub fn sleep(duration: std::time::Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + duration;
    loop {
        if requested() {
            return Err("interrupted".into());
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(std::time::Duration::from_millis(50)));
    }
}
