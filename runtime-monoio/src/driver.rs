//! Picking the IO driver and starting the worker threads, one monoio runtime each.
//!
//! `auto` uses io_uring when `monoio::utils::detect_uring()` says the kernel allows it
//! (Docker's default seccomp profile does not) and otherwise epoll, saying so on stderr.
//! Every worker binds its listeners inside its own runtime and reports back before the
//! start-up line is printed, so the line only ever names addresses that accept. The first
//! worker binds first: where `--listen` asked for port 0, the port it got is the one the
//! others bind, while its socket holds it (a probe closed before the workers bind would let
//! another process take the port in between).
//!
//! Failure: a runtime that cannot be built or a listener that cannot be bound fails
//! start-up with the reason; the other workers are told to stop.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context};
use monoio::blocking::DefaultThreadPool;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::access_log::AccessLog;
use crate::cli::DriverChoice;
use crate::listener;
use crate::relay::Mode as RelayMode;
use crate::shutdown;
use crate::worker::{self, Env, Limit, Tuning};

/// The driver that actually runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring.
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

impl Driver {
    /// The name in the start-up line.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Resolves `auto`; refuses `uring` where the kernel does not allow it.
pub fn choose(choice: DriverChoice) -> anyhow::Result<Driver> {
    let available = monoio::utils::detect_uring();
    match choice {
        DriverChoice::Epoll => Ok(Driver::Epoll),
        DriverChoice::Uring if available => Ok(Driver::Uring),
        DriverChoice::Uring => {
            bail!("--driver uring: io_uring is not available here (kernel or seccomp); use --driver epoll or auto")
        }
        DriverChoice::Auto if available => Ok(Driver::Uring),
        DriverChoice::Auto => {
            say!("ringway: io_uring is not available here; using epoll");
            Ok(Driver::Epoll)
        }
    }
}

/// Blocking threads for DNS lookups, shared by all workers.
const RESOLVER_THREADS: usize = 4;

/// What one worker needs.
#[derive(Clone)]
pub struct WorkerPlan {
    /// Driver to build the runtime on.
    pub driver: Driver,
    /// Addresses to bind (port 0: any free port, for the first worker only).
    pub addrs: Vec<SocketAddr>,
    /// Addresses of the HTTPS listener (`--tls-listen`), bound the same way.
    pub tls_addrs: Vec<SocketAddr>,
    /// The core's configuration, as published (and republished on reload).
    pub config: Arc<crate::reload::ConfigSlot>,
    /// Access-log destination.
    pub log: AccessLog,
    /// The shared connection limit.
    pub limit: Arc<Limit>,
    /// Pool and shutdown settings.
    pub tuning: Tuning,
    /// The metrics registry each worker registers its counters with (`--metrics-listen`).
    pub metrics: Option<Arc<crate::metrics::Registry>>,
}

/// The running workers.
pub struct Started {
    /// One per worker thread; each ends after shutdown.
    pub workers: Vec<JoinHandle<()>>,
    /// The bound listening addresses (ports chosen by the kernel filled in).
    pub addrs: Vec<SocketAddr>,
    /// The bound addresses of the HTTPS listener.
    pub tls_addrs: Vec<SocketAddr>,
}

/// What a worker reports once its listeners are bound: their real addresses (plain, then
/// TLS), or why not.
type Ready = Result<(Vec<SocketAddr>, Vec<SocketAddr>), String>;

/// Starts `threads` workers; returns once every one is listening, with the bound addresses.
///
/// `bound` is told the bound addresses (plain, then TLS) once the first worker has bound them, before any
/// worker accepts a connection: the egress policy must know the proxy's own listening
/// sockets (ports chosen by the kernel included) before the first request is judged, so
/// `main` publishes the configuration with them there. Each worker waits for that between
/// binding and its first accept.
pub fn start(
    threads: usize,
    mut plan: WorkerPlan,
    bound: impl FnOnce(&[SocketAddr], &[SocketAddr]),
) -> anyhow::Result<Started> {
    let pool = DefaultThreadPool::new(RESOLVER_THREADS);
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
    let mut handles = Vec::with_capacity(threads);
    let mut addrs_bound = Vec::new();
    let mut tls_bound = Vec::new();
    let mut bound = Some(bound);
    for i in 0..threads {
        let worker_plan = plan.clone();
        let pool = pool.clone();
        let ready = ready_tx.clone();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("ringway-{i}"))
            .spawn(move || run_worker(worker_plan, pool, ready, go_rx))
            .context("spawning a worker thread");
        let outcome = spawned.and_then(|handle| {
            handles.push(handle);
            ready_rx
                .recv()
                .map_err(|_| anyhow!("a worker thread ended during start-up"))
                .and_then(|r| r.map_err(|e| anyhow!(e)))
        });
        match outcome {
            Ok((addrs, tls_addrs)) => {
                if i == 0 {
                    // The others bind exactly where the first one did.
                    plan.addrs.clone_from(&addrs);
                    plan.tls_addrs.clone_from(&tls_addrs);
                    addrs_bound = addrs;
                    tls_bound = tls_addrs;
                    if let Some(tell) = bound.take() {
                        tell(&addrs_bound, &tls_bound);
                    }
                }
                let _ = go_tx.send(());
            }
            Err(e) => {
                shutdown::request();
                drop(go_tx);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    Ok(Started {
        workers: handles,
        addrs: addrs_bound,
        tls_addrs: tls_bound,
    })
}

/// How tunnels move bytes: splice on both drivers. Measured here (8 tunnels, 4 GiB, proxy CPU
/// time per byte): splice moved 2.3-2.7 GB per proxy CPU-second on io_uring and 2.5 on
/// epoll, copying 0.9 on both (the sockets are switched to non-blocking for splice, so
/// nothing is punted to io-wq). `RINGWAY_TUNNEL=copy` selects copying (for measuring).
fn relay_mode() -> RelayMode {
    match std::env::var("RINGWAY_TUNNEL").as_deref() {
        Ok("copy") => RelayMode::Copy,
        _ => RelayMode::Splice,
    }
}

/// The ring's setup flags: `IORING_SETUP_COOP_TASKRUN` where the kernel has it (5.19+).
/// Without it, every completion interrupts the thread with an IPI to run io_uring's task
/// work; with it, the work runs at the thread's next syscall or wait, which this loop makes
/// constantly. Measured on the 1 KiB keep-alive load: 30-34 instead of 37-44 µs of proxy CPU
/// per request. (`DEFER_TASKRUN` measured the same and is stricter, so it is not used.)
fn uring_setup() -> io_uring::Builder {
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun();
    // A throwaway ring tells whether this kernel accepts the flag.
    if coop.build(2).is_ok() {
        coop
    } else {
        io_uring::IoUring::builder()
    }
}

fn run_worker(
    plan: WorkerPlan,
    pool: DefaultThreadPool,
    ready: mpsc::Sender<Ready>,
    go: mpsc::Receiver<()>,
) {
    let WorkerPlan {
        driver,
        addrs,
        tls_addrs,
        config,
        log,
        limit,
        tuning,
        metrics,
    } = plan;
    if let Some(registry) = metrics {
        registry.register_this_thread();
    }
    let main = async move {
        let mut listeners = Vec::with_capacity(addrs.len() + tls_addrs.len());
        let all = addrs
            .iter()
            .map(|a| ("--listen", a, false))
            .chain(tls_addrs.iter().map(|a| ("--tls-listen", a, true)));
        for (flag, addr, tls) in all {
            match listener::bind(*addr) {
                Ok(l) => listeners.push((l, tls)),
                Err(e) => {
                    let _ = ready.send(Err(format!("{flag} {addr}: cannot listen: {e}")));
                    return;
                }
            }
        }
        let mut bound = (Vec::new(), Vec::new());
        for (l, tls) in &listeners {
            match l.local_addr() {
                Ok(a) if *tls => bound.1.push(a),
                Ok(a) => bound.0.push(a),
                Err(e) => return drop(ready.send(Err(format!("reading a bound address: {e}")))),
            }
        }
        let _ = ready.send(Ok(bound));
        // Start-up only, before any task runs on this thread: blocking here stalls nothing.
        if go.recv().is_err() {
            return;
        }
        let env = Env::new(config, log, limit, relay_mode(), tuning);
        worker::run(Rc::new(env), listeners).await;
    };
    let built = match driver {
        Driver::Uring => RuntimeBuilder::<IoUringDriver>::new()
            .uring_builder(uring_setup())
            .enable_timer()
            .attach_thread_pool(Box::new(pool))
            .build()
            .map(|mut rt| rt.block_on(main)),
        Driver::Epoll => RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .attach_thread_pool(Box::new(pool))
            .build()
            .map(|mut rt| rt.block_on(main)),
    };
    if let Err(e) = built {
        // `main` was never run, so `ready` was dropped unsent: say why here.
        say!("ringway: cannot start the {} runtime: {e}", driver.name());
    }
}
