//! One worker thread's world: its state ([`Env`]: config, DNS cache, upstream pool, drain
//! notice, counters, all thread-local so the hot path takes no locks) and its main task
//! (accept loops, janitor, then the shutdown drain).
//!
//! Failure: a panic inside one connection's task is caught ([`Isolated`]), reported on
//! stderr and closes only that connection. Shutdown waits at most `--shutdown-grace` for
//! in-flight connections, then returns and the runtime drops whatever is left.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::net::TcpListener;

use crate::access_log::AccessLog;
use crate::dns::Resolver;
use crate::listener;
use crate::pool::Pool;
use crate::relay::Mode as RelayMode;
use crate::reload::{ConfigCache, ConfigSlot};
use crate::shutdown::{self, Drain};
use crate::timers::Timers;

/// Connection count over all threads, against `--max-connections`.
pub struct Limit {
    open: AtomicUsize,
    max: usize,
}

impl Limit {
    /// A limit of `max` open client connections.
    pub fn new(max: usize) -> Limit {
        Limit {
            open: AtomicUsize::new(0),
            max,
        }
    }
}

/// Runtime-only settings from the command line (the core's are in [`Config`]).
#[derive(Copy, Clone, Debug)]
pub struct Tuning {
    /// How long an idle upstream connection is kept (`--pool-idle-timeout`; zero: none).
    pub pool_idle: Duration,
    /// How long shutdown waits for in-flight work (`--shutdown-grace`).
    pub grace: Duration,
}

/// Per-thread state shared by this thread's tasks.
pub struct Env {
    /// The core's configuration, as last reloaded.
    pub config: ConfigCache,
    /// This thread's DNS cache.
    pub resolver: Resolver,
    /// This thread's idle upstream connections.
    pub pool: RefCell<Pool>,
    /// Where access-log lines go.
    pub log: AccessLog,
    /// Set at shutdown; wakes idle connections.
    pub drain: Drain,
    /// This thread's connection deadlines.
    pub timers: Timers,
    /// How tunnels relay bytes on this thread's driver.
    pub relay_mode: RelayMode,
    /// Pool and shutdown settings.
    pub tuning: Tuning,
    limit: Arc<Limit>,
    active: Cell<usize>,
    next_id: Cell<u64>,
}

impl Env {
    /// State for one worker thread.
    pub fn new(
        config: Arc<ConfigSlot>,
        log: AccessLog,
        limit: Arc<Limit>,
        relay_mode: RelayMode,
        tuning: Tuning,
    ) -> Env {
        Env {
            config: ConfigCache::new(config),
            resolver: Resolver::default(),
            pool: RefCell::new(Pool::new(tuning.pool_idle)),
            log,
            drain: Drain::default(),
            timers: Timers::default(),
            relay_mode,
            tuning,
            limit,
            active: Cell::new(0),
            next_id: Cell::new(0),
        }
    }

    /// Counts a new connection in, or refuses it when `--max-connections` are open.
    pub fn admit(self: &Rc<Self>) -> Option<Admitted> {
        let before = self.limit.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.limit.max {
            self.limit.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.active.set(self.active.get() + 1);
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        Some(Admitted {
            env: Rc::clone(self),
            id,
            _gauge: crate::metrics::connection_opened(),
        })
    }
}

/// An open connection's place in the counts; released on drop.
pub struct Admitted {
    env: Rc<Env>,
    /// This thread's id for the connection.
    pub id: u64,
    /// Its place in `ringway_connections_active`.
    _gauge: Option<crate::metrics::Active>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.env.limit.open.fetch_sub(1, Ordering::Relaxed);
        self.env.active.set(self.env.active.get() - 1);
        self.env.drain.unregister(self.id);
        if self.env.active.get() == 0 {
            self.env.drain.emptied();
        }
    }
}

/// Runs a task, turning a panic into "this task ended" plus a line on stderr. The future is
/// stored inline (no extra box), so a connection costs one task allocation.
pub struct Isolated<F>(pub F);

impl<F: Future<Output = ()>> Future for Isolated<F> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: structural pinning: the inner future is never moved out of `self`.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                eprintln!("ringway: a connection task panicked; that connection was closed");
                Poll::Ready(())
            }
        }
    }
}

/// How often the janitor sweeps expired pool and DNS entries.
const JANITOR_PERIOD: Duration = Duration::from_secs(5);

/// The worker thread's main task: serves `listeners` until shutdown, then drains.
pub async fn run(env: Rc<Env>, listeners: Vec<TcpListener>) {
    for l in listeners {
        monoio::spawn(listener::accept_loop(Rc::clone(&env), l));
    }
    let timers_env = Rc::clone(&env);
    monoio::spawn(async move { timers_env.timers.run().await });
    let janitor_env = Rc::clone(&env);
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(JANITOR_PERIOD).await;
            janitor_env.pool.borrow_mut().sweep();
            janitor_env.resolver.sweep();
        }
    });
    shutdown::requested_wait().await;
    env.drain.start();
    env.pool.borrow_mut().clear();
    // Until the last connection ends, or the grace period is up (then they are dropped).
    let _ = monoio::time::timeout(env.tuning.grace, env.drain.all_ended(|| env.active.get())).await;
    // Lines of requests that ended in the last moments are still buffered.
    env.log.flush();
}
