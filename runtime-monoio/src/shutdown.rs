//! Graceful shutdown: SIGINT/SIGTERM stop the accept loops, let in-flight requests finish
//! within a grace period, then the process exits 0. (SIGHUP is caught here too, and handed
//! to the access log to reopen its file.)
//!
//! Key components: [`block_signals`] (called before any thread starts, so every thread
//! inherits the mask and only [`wait_for_signal`] receives them), the process-wide
//! [`request`] that sets a flag and wakes every worker waiting in [`requested_wait`] (no
//! polling: an idle proxy does not wake up to look), and the per-thread [`Drain`] that wakes
//! idle connections so they close instead of waiting out their keep-alive timeout, and wakes
//! the worker once its last connection has ended.
//!
//! Why `sigwait` on a plain thread rather than monoio's `signal` feature: that feature pulls
//! in the `ctrlc` crate and needs an extra feature for SIGTERM; blocking the signals and
//! waiting synchronously is a few lines of `libc` with no handler-safety questions.
//! Failure: if the mask cannot be set, start-up fails (a signal would otherwise kill the
//! process without a grace period).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Workers waiting in [`requested_wait`], woken (from the signal thread) by [`request`].
static WAITING: Mutex<Vec<Waker>> = Mutex::new(Vec::new());

/// Whether shutdown has been requested (by a signal or a failed start-up).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}

/// Asks every worker to stop accepting and drain, and wakes those waiting for it.
pub fn request() {
    REQUESTED.store(true, Ordering::Release);
    let waiting = std::mem::take(&mut *WAITING.lock().unwrap_or_else(|e| e.into_inner()));
    for waker in waiting {
        waker.wake();
    }
}

/// Resolves once [`request`] has been called (at once if it already was).
pub async fn requested_wait() {
    poll_fn(|cx| {
        if requested() {
            return Poll::Ready(());
        }
        WAITING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cx.waker().clone());
        // `request` sets the flag before taking the list: seen here, or our waker is woken.
        if requested() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it spawns
/// afterwards.
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

/// A signal the proxy acts on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: drain and exit.
    Interrupt,
    /// SIGTERM: drain and exit.
    Terminate,
    /// SIGHUP: reopen the access-log file (for log rotation); the proxy keeps running.
    Hangup,
}

impl Signal {
    /// The signal's name, for stderr.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }
}

/// Waits until SIGINT, SIGTERM or SIGHUP arrives.
pub fn wait_for_signal() -> Signal {
    let set = signal_set();
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: a valid set and a valid out pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 {
            return match sig {
                libc::SIGTERM => Signal::Terminate,
                libc::SIGHUP => Signal::Hangup,
                _ => Signal::Interrupt,
            };
        }
    }
}

/// Per-thread drain notice: set once at shutdown, it wakes every connection task that
/// registered, so idle keep-alive connections close at once; and it wakes the worker when
/// the last of them has ended ([`Drain::emptied`]).
#[derive(Default)]
pub struct Drain {
    on: Cell<bool>,
    waiters: RefCell<HashMap<u64, Waker>>,
    worker: RefCell<Option<Waker>>,
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

    /// Says this thread's last connection has ended: wakes the worker waiting in
    /// [`Drain::all_ended`].
    pub fn emptied(&self) {
        if let Some(waker) = self.worker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Resolves when `active()` is zero, re-checked each time [`Drain::emptied`] wakes it.
    pub async fn all_ended(&self, active: impl Fn() -> usize) {
        poll_fn(|cx| {
            if active() == 0 {
                return Poll::Ready(());
            }
            *self.worker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}
