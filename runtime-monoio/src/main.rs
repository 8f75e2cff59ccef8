//! `ringway`: the Ringway forward proxy binary, driving the sans-IO `ringway-core` with
//! monoio (io_uring, or epoll where io_uring is not allowed), one runtime per thread.
//!
//! Key components: [`cli`] (flags), [`driver`] (driver choice, worker threads),
//! [`listener`] (binding, accept loop), [`worker`] (per-thread state), [`conn`] (drives one
//! connection), [`socket`] (reads kept in flight, ordered writes), [`dial`] / [`dns`] /
//! [`pool`] (upstream connections), [`egress`] (pattern files, own listeners),
//! [`access_log`] and [`wallclock`], [`metrics`] and [`metrics_http`] (`--metrics-listen`),
//! [`config_file`] (`--config`), [`reload`] (SIGHUP), [`shutdown`], [`clock`].
//!
//! Error handling: `anyhow` at the edges only. Bad flags (and an access-log path that cannot
//! be opened) exit 2 with one line on stderr;
//! start-up failures (address in use, no io_uring when forced) exit 1; after start-up
//! nothing a peer does ends the process, and SIGINT/SIGTERM exit 0 after draining.

#[macro_use]
mod diag;

mod access_log;
mod cli;
mod clock;
mod config_file;
mod conn;
mod dial;
mod dns;
mod driver;
mod egress;
mod listener;
mod metrics;
mod metrics_http;
mod pool;
mod relay;
mod reload;
mod shutdown;
mod socket;
mod timers;
mod tls;
mod wallclock;
mod worker;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::cli::{Parsed, Settings};
use crate::shutdown::Signal;

fn main() -> ExitCode {
    clock::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args.first() == Some(&"ca-init") {
        return match tls::ca::init_command(&args[1..]) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                say!("ringway: {e}");
                ExitCode::from(2)
            }
        };
    }
    let settings = match cli::parse(&args) {
        Parsed::Run(s) => s,
        Parsed::Exit(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Error(line) => {
            say!("ringway: {line}");
            return ExitCode::from(2);
        }
    };
    // The interception CA and trust anchors are read now: a key that does not match its
    // certificate, or an unreadable file, is a bad flag value (exit 2).
    if let Some(flags) = &settings.intercept {
        match tls::start(flags) {
            Ok(setup) => {
                tls::intercepted::publish(Some(Arc::new(setup)));
            }
            Err(e) => {
                say!("ringway: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // The HTTPS listener's certificate and key likewise (a mismatch is exit 2).
    if let Some(flags) = &settings.tls_listen {
        if let Err(e) =
            tls::front::start(flags.cert.clone(), flags.key.clone(), flags.key_log.clone())
        {
            say!("ringway: {e}");
            return ExitCode::from(2);
        }
    }
    // An access-log path that cannot be opened is a bad flag value: exit 2 like the others.
    let log = match access_log::Destination::open(&settings.access_log) {
        Ok(log) => log,
        Err(e) => {
            say!("ringway: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(*settings, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("ringway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: Settings, log: access_log::Destination) -> anyhow::Result<()> {
    let driver = driver::choose(settings.driver)?;
    let tls_addrs = settings
        .tls_listen
        .as_ref()
        .map(|t| t.addrs.clone())
        .unwrap_or_default();
    listener::reserve_all(&[("--listen", &settings.listen), ("--tls-listen", &tls_addrs)])?;
    shutdown::block_signals()
        .context("blocking SIGINT/SIGTERM/SIGHUP for orderly shutdown and log reopening")?;
    // After the mask (the writer thread inherits it), before the workers.
    let (log, log_writer) = access_log::start(log, settings.access_log_format)
        .context("starting the access-log writer thread")?;
    let mut own = egress::OwnSockets::default();
    let metrics = match settings.metrics_listen {
        None => None,
        Some(addr) => {
            let listener = metrics_http::bind(addr)
                .with_context(|| format!("--metrics-listen {addr}: cannot listen"))?;
            let bound = listener.local_addr().unwrap_or(addr);
            own.services.push(bound);
            say!("ringway: metrics and health checks on http://{bound}/metrics");
            let dropped = log.clone();
            let registry = Arc::new(metrics::Registry::new(Box::new(move || {
                dropped.dropped_lines()
            })));
            metrics_http::spawn(listener, Arc::clone(&registry))
                .context("starting the metrics thread")?;
            Some(registry)
        }
    };
    let slot = Arc::new(reload::ConfigSlot::new(Arc::new(settings.config.clone())));
    let plan = driver::WorkerPlan {
        driver,
        addrs: settings.listen.clone(),
        tls_addrs,
        config: Arc::clone(&slot),
        log,
        limit: Arc::new(worker::Limit::new(settings.max_connections)),
        tuning: worker::Tuning {
            pool_idle: settings.pool_idle,
            grace: settings.shutdown_grace,
        },
        metrics: metrics.clone(),
    };
    let driver::Started {
        workers,
        addrs,
        tls_addrs,
    } = driver::start(settings.threads, plan, |bound, tls_bound| {
        // A request to the HTTPS listener is as much a loop as one to the plain one.
        own.proxy = bound.iter().chain(tls_bound).copied().collect();
        let config = egress::with_own_listeners(settings.config.clone(), &own);
        slot.publish(Arc::new(config));
    })?;
    let list: Vec<String> = addrs
        .iter()
        .map(|a| a.to_string())
        .chain(tls_addrs.iter().map(|a| format!("https://{a}")))
        .collect();
    let plural = if settings.threads == 1 { "" } else { "s" };
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "ringway listening on {} ({}, {} thread{plural})",
            list.join(", "),
            driver.name(),
            settings.threads
        )?;
        out.flush()?;
    }
    let signal = loop {
        match shutdown::wait_for_signal() {
            Signal::Hangup => {
                match &log_writer {
                    Some(writer) => writer.reopen(),
                    None => say!("ringway: SIGHUP: the access log is off; nothing to reopen"),
                }
                reload::reload(&settings, &slot, metrics.as_deref(), &own);
                tls::front::reload();
            }
            stop => break stop,
        }
    };
    let signalled = Instant::now();
    say!(
        "ringway: {}: no longer accepting; draining for up to {:?}",
        signal.name(),
        settings.shutdown_grace
    );
    shutdown::request();
    std::thread::spawn(|| loop {
        // While draining, SIGHUP is ignored; a second SIGINT/SIGTERM exits at once.
        let again = shutdown::wait_for_signal();
        if again != Signal::Hangup {
            say!("ringway: {} again: exiting now", again.name());
            std::process::exit(130);
        }
    });
    for w in workers {
        let _ = w.join();
    }
    // Every worker has handed over its last lines. A stalled destination must not hold the
    // exit past the grace period (but the writer gets a moment even if draining used it all).
    if let Some(writer) = log_writer {
        let deadline =
            (signalled + settings.shutdown_grace).max(Instant::now() + access_log::EXIT_FLUSH_MIN);
        if let Some(lost) = writer.finish(deadline) {
            say!("ringway: access log stalled at exit; up to {lost} lines lost");
        }
    }
    Ok(())
}
