//! Picking the IO driver and starting the worker threads, one monoio runtime each.
//!
//! `auto` uses io_uring when `monoio::utils::detect_uring()` says the kernel allows it
//! (Docker's default seccomp profile does not) and otherwise epoll, saying so on stderr.
//! Every worker binds its listeners inside its own runtime and reports back before the
//! start-up line is printed, so the line only ever names addresses that accept.
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
use ringway_core::Config;

use crate::access_log::AccessLog;
use crate::cli::DriverChoice;
use crate::listener;
use crate::relay::Mode as RelayMode;
use crate::shutdown;
use crate::worker::{self, Env, Limit};

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
            eprintln!("ringway: io_uring is not available here; using epoll");
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
    /// Addresses to bind (real ports).
    pub addrs: Vec<SocketAddr>,
    /// The core's configuration.
    pub config: Arc<Config>,
    /// Access-log destination.
    pub log: AccessLog,
    /// The shared connection limit.
    pub limit: Arc<Limit>,
}

/// Starts `threads` workers; returns once every one is listening.
pub fn start(threads: usize, plan: WorkerPlan) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let pool = DefaultThreadPool::new(RESOLVER_THREADS);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let plan = plan.clone();
        let pool = pool.clone();
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ringway-{i}"))
            .spawn(move || run_worker(plan, pool, ready))
            .context("spawning a worker thread")?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..threads {
        let outcome = ready_rx
            .recv()
            .map_err(|_| anyhow!("a worker thread ended during start-up"))
            .and_then(|r| r.map_err(|e| anyhow!(e)));
        if let Err(e) = outcome {
            shutdown::request();
            for h in handles {
                let _ = h.join();
            }
            return Err(e);
        }
    }
    Ok(handles)
}

/// How tunnels move bytes on `driver`. `RINGWAY_TUNNEL=copy|splice` overrides it (for
/// measuring one against the other).
fn relay_mode(driver: Driver) -> RelayMode {
    match std::env::var("RINGWAY_TUNNEL").as_deref() {
        Ok("copy") => RelayMode::Copy,
        Ok("splice") => RelayMode::Splice,
        _ => match driver {
            Driver::Uring => RelayMode::Copy,
            Driver::Epoll => RelayMode::Splice,
        },
    }
}

fn run_worker(plan: WorkerPlan, pool: DefaultThreadPool, ready: mpsc::Sender<Result<(), String>>) {
    let WorkerPlan {
        driver,
        addrs,
        config,
        log,
        limit,
    } = plan;
    let main = async move {
        let mut listeners = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            match listener::bind(*addr) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    let _ = ready.send(Err(format!("--listen {addr}: cannot listen: {e}")));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(()));
        drop(ready);
        let env = Env::new(config, log, limit, relay_mode(driver));
        worker::run(Rc::new(env), listeners).await;
    };
    let built = match driver {
        Driver::Uring => RuntimeBuilder::<IoUringDriver>::new()
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
        eprintln!("ringway: cannot start the {} runtime: {e}", driver.name());
    }
}
