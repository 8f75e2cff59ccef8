//! Graceful shutdown: SIGINT/SIGTERM stop the accept loops, let in-flight requests finish
//! within a grace period, then the process exits 0.
//!
//! Key components: [`block_signals`] (called before any thread starts, so every thread
//! inherits the mask and only [`wait_for_signal`] receives them), the process-wide
//! [`requested`] flag the workers poll, and the per-thread [`Drain`] that wakes idle
//! connections so they close instead of waiting out their keep-alive timeout.
//!
//! Why `sigwait` on a plain thread rather than monoio's `signal` feature: that feature pulls
//! in the `ctrlc` crate and needs an extra feature for SIGTERM; blocking the signals and
//! waiting synchronously is a few lines of `libc` with no handler-safety questions.
//! Failure: if the mask cannot be set, start-up fails (a signal would otherwise kill the
//! process without a grace period).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether shutdown has been requested (by a signal or a failed start-up).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}

/// Asks every worker to stop accepting and drain.
pub fn request() {
    REQUESTED.store(true, Ordering::Release);
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it spawns afterwards.
pub fn block_signals() -> std::io::Result<()> {
    let set = signal_set();
    // SAFETY: a valid set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// Waits until SIGINT or SIGTERM arrives; returns the signal's name.
pub fn wait_for_signal() -> &'static str {
    let set = signal_set();
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: a valid set and a valid out pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 {
            return if sig == libc::SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            };
        }
    }
}

/// Per-thread drain notice: set once at shutdown, it wakes every connection task that
/// registered, so idle keep-alive connections close at once.
#[derive(Default)]
pub struct Drain {
    on: Cell<bool>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl Drain {
    /// Whether this thread is draining.
    pub fn is_on(&self) -> bool {
        self.on.get()
    }

    /// Starts draining and wakes every registered task.
    pub fn start(&self) {
        self.on.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// Registers (or refreshes) task `id`'s waker.
    pub fn register(&self, id: u64, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        match waiters.get_mut(&id) {
            Some(w) if w.will_wake(waker) => {}
            Some(w) => *w = waker.clone(),
            None => {
                waiters.insert(id, waker.clone());
            }
        }
    }

    /// Forgets task `id` (it ended).
    pub fn unregister(&self, id: u64) {
        self.waiters.borrow_mut().remove(&id);
    }
}
