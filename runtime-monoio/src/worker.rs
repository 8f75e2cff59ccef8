//! One worker thread's world: its state ([`Env`]: config, DNS cache, upstream pool, drain
//! notice, counters, all thread-local so the hot path takes no locks) and its main task
//! (accept loops, janitor, then the shutdown drain).
//!
//! Failure: a panic inside one connection's task is caught ([`Isolated`]), reported on
//! stderr and closes only that connection. Shutdown waits at most `--shutdown-grace` for
//! in-flight connections, then returns and the runtime drops whatever is left.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::net::TcpListener;
use ringway_core::Load;

use crate::access_log::AccessLog;
use crate::dns::Resolver;
use crate::listener;
use crate::pool::Pool;
use crate::relay::Mode as RelayMode;
use crate::reload::{ConfigCache, ConfigSlot};
use crate::shutdown::{self, Drain};
use crate::timers::Timers;

/// Client connections open over all threads: the counts the core's admission verdict
/// (`Config::admit`) is made from.
pub struct Limit {
    open: AtomicUsize,
    /// Beyond this many open connections new ones are closed on accept without an answer:
    /// `--max-connections` plus room to answer refusals (each costs an fd while it is read
    /// and answered), so a flood cannot take every fd.
    hard: usize,
    /// Open connections per client address (a lock per accept and per close, never per
    /// request).
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

impl Limit {
    /// Counts for a proxy admitting `max` connections in all (per client always counted, so
    /// a reload may set `--max-connections-per-client`).
    pub fn new(max: usize) -> Limit {
        Limit {
            open: AtomicUsize::new(0),
            hard: max.saturating_add(max.clamp(16, 1024)),
            per_client: Mutex::new(HashMap::new()),
        }
    }
}

/// A client address as counted: an IPv4-mapped IPv6 address (what a dual-stack socket
/// reports) is the IPv4 client it stands for.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
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

    /// Counts a new connection from `peer` in, with the load it was accepted under; `None`
    /// (close it at once) beyond the hard ceiling.
    pub fn admit(self: &Rc<Self>, peer: IpAddr) -> Option<(Admitted, Load)> {
        let total = self.limit.open.fetch_add(1, Ordering::Relaxed) + 1;
        if total > self.limit.hard {
            self.limit.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let client = client_key(peer);
        let from_client = {
            let mut map = self
                .limit
                .per_client
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let n = map.entry(client).or_insert(0);
            *n += 1;
            *n
        };
        self.active.set(self.active.get() + 1);
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        Some((
            Admitted {
                env: Rc::clone(self),
                id,
                client,
                _gauge: crate::metrics::connection_opened(),
            },
            Load { total, from_client },
        ))
    }
}

/// An open connection's place in the counts; released on drop.
pub struct Admitted {
    env: Rc<Env>,
    /// This thread's id for the connection.
    pub id: u64,
    client: IpAddr,
    /// Its place in `ringway_connections_active`.
    _gauge: Option<crate::metrics::Active>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.env.limit.open.fetch_sub(1, Ordering::Relaxed);
        {
            let mut map = self
                .env
                .limit
                .per_client
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.client);
                }
            }
        }
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
                say!("ringway: a connection task panicked; that connection was closed");
                Poll::Ready(())
            }
        }
    }
}

/// How often the janitor sweeps expired pool and DNS entries.
const JANITOR_PERIOD: Duration = Duration::from_secs(5);

/// The worker thread's main task: serves `listeners` (each with whether its clients speak
/// TLS) until shutdown, then drains.
pub async fn run(env: Rc<Env>, listeners: Vec<(TcpListener, bool)>) {
    for (l, tls) in listeners {
        monoio::spawn(listener::accept_loop(Rc::clone(&env), l, tls));
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
