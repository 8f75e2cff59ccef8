//! Per-thread connection deadlines behind one shared sleep.
//!
//! Every connection always has a deadline (header, idle, dial, tunnel-idle timeouts), and a
//! monoio `Sleep` is 640 bytes: for 10,000 idle connections that alone would be 6 MiB.
//! Here a connection's deadline is one entry in this thread's ordered map (its waker and
//! the instant), and a single driver task ([`Timers::run`]) sleeps until the earliest entry,
//! then wakes every connection whose deadline passed.
//!
//! Wakes may come a little late (monoio's timer has millisecond resolution, see
//! [`SLACK`]) but never before the deadline; the core treats a spurious or late wake as
//! harmless anyway. Cannot fail.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::task::{Poll, Waker};
use std::time::Duration;

use ringway_core::Instant;

use crate::clock;

/// Added to the driver's sleep so it wakes after, not just before, a deadline.
const SLACK: Duration = Duration::from_millis(1);

/// A registered deadline, to remove it when it moves or the connection ends.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TimerKey {
    at: Instant,
    seq: u64,
}

impl TimerKey {
    /// The deadline.
    pub fn at(&self) -> Instant {
        self.at
    }
}

/// One thread's deadlines.
#[derive(Default)]
pub struct Timers {
    entries: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_seq: Cell<u64>,
    /// The driver task's waker, and the deadline its sleep is set for.
    driver: RefCell<Option<Waker>>,
    armed_for: Cell<Option<Instant>>,
}

impl Timers {
    /// Wakes `waker` once `at` has passed (unless removed first).
    pub fn insert(&self, at: Instant, waker: &Waker) -> TimerKey {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.entries.borrow_mut().insert((at, seq), waker.clone());
        if self.armed_for.get().map_or(true, |armed| at < armed) {
            if let Some(w) = self.driver.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
        TimerKey { at, seq }
    }

    /// Forgets a deadline (fired ones are already gone; removing them again is fine).
    pub fn remove(&self, key: TimerKey) {
        self.entries.borrow_mut().remove(&(key.at, key.seq));
    }

    /// The driver: runs for the thread's lifetime.
    pub async fn run(&self) {
        let far = clock::to_monoio(clock::now() + Duration::from_secs(86_400 * 365));
        let mut sleep = Box::pin(monoio::time::sleep_until(far));
        poll_fn(|cx| loop {
            let now = clock::now();
            let next = {
                let mut entries = self.entries.borrow_mut();
                loop {
                    let Some(entry) = entries.first_entry() else {
                        break None;
                    };
                    if entry.key().0 > now {
                        break Some(entry.key().0);
                    }
                    entry.remove().wake();
                }
            };
            {
                let mut driver = self.driver.borrow_mut();
                if !driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *driver = Some(cx.waker().clone());
                }
            }
            let Some(next) = next else {
                self.armed_for.set(None);
                return Poll::<()>::Pending;
            };
            if self.armed_for.get() != Some(next) {
                sleep.as_mut().reset(clock::to_monoio(next + SLACK));
                self.armed_for.set(Some(next));
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The sleep ended: loop to fire what is due (and re-arm).
            self.armed_for.set(None);
        })
        .await
    }
}
