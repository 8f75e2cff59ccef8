//! SIGHUP reload: the shared slot holding the current core [`Config`], each worker's cached
//! copy of it, and [`reload`], which builds the settings again and publishes them.
//!
//! Key components:
//! - [`ConfigSlot`]: the process-wide current configuration and its generation number. The
//!   signal thread replaces it whole ([`ConfigSlot::publish`]); nothing is mutated in place.
//! - [`ConfigCache`]: a worker thread's view. [`ConfigCache::changed_since`] costs one relaxed
//!   atomic load when nothing changed (the hot path: each connection checks it when it runs);
//!   only after a reload does a thread take the slot's mutex, once, to copy the new `Arc`.
//!   Connections hand the new configuration to their core with `Connection::set_config`,
//!   which applies it from the next request head: in-flight exchanges and tunnels keep theirs.
//! - [`reload`]: re-runs the whole command-line build (`cli::parse` on the original
//!   arguments), so the `--config` file, the `--auth-file` and any other file a flag names
//!   are read again with the same code and checks as at start-up.
//!
//! - Interception (`--intercept`, `--ca-cert`/`--ca-key`, `--upstream-ca`,
//!   `--insecure-upstream`, `--cert-cache`, `--tls-key-log`): when the flags or the files
//!   they name changed, a new setup (new CA, trust and an empty leaf cache) is built and
//!   published for new tunnels (`tls::intercepted::publish`); open tunnels keep theirs.
//!
//! Failure: an invalid file (or any error the start-up build would report) keeps the running
//! configuration, is reported on stderr and counted as a failed reload. Settings that only
//! take effect at start-up are reported as ignored, and the running values stay.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ringway_core::Config;

use crate::cli::{self, Parsed, Settings};
use crate::egress::{with_own_listeners, OwnSockets};
use crate::metrics::{Registry, Reload};

/// The current configuration, shared by every worker.
pub struct ConfigSlot {
    generation: AtomicU64,
    current: Mutex<Arc<Config>>,
}

impl ConfigSlot {
    /// A slot holding `config` as generation 0.
    pub fn new(config: Arc<Config>) -> ConfigSlot {
        ConfigSlot {
            generation: AtomicU64::new(0),
            current: Mutex::new(config),
        }
    }

    /// Replaces the configuration; workers pick it up on their next check.
    pub fn publish(&self, config: Arc<Config>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = config;
        // Under the lock, so a reader that sees the new number finds the new value.
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn load(&self) -> (u64, Arc<Config>) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (
            self.generation.load(Ordering::Acquire),
            Arc::clone(&current),
        )
    }
}

/// One worker thread's copy of the slot's configuration.
pub struct ConfigCache {
    slot: Arc<ConfigSlot>,
    cached: RefCell<(u64, Arc<Config>)>,
}

impl ConfigCache {
    /// A cache over `slot`, filled now.
    pub fn new(slot: Arc<ConfigSlot>) -> ConfigCache {
        let cached = RefCell::new(slot.load());
        ConfigCache { slot, cached }
    }

    /// The current configuration and its generation (for a new connection).
    pub fn current(&self) -> (u64, Arc<Config>) {
        if self.slot.generation.load(Ordering::Acquire) != self.cached.borrow().0 {
            *self.cached.borrow_mut() = self.slot.load();
        }
        let cached = self.cached.borrow();
        (cached.0, Arc::clone(&cached.1))
    }

    /// The configuration, if its generation is no longer `seen`. One atomic load when not.
    pub fn changed_since(&self, seen: u64) -> Option<(u64, Arc<Config>)> {
        if self.slot.generation.load(Ordering::Relaxed) == seen {
            return None;
        }
        Some(self.current())
    }
}

/// Rebuilds the settings from `running.args` (re-reading every file) and publishes the new
/// core configuration in `slot`. Reports on stderr what changed, what needs a restart, or why
/// nothing did; counts the outcome in `metrics`.
pub fn reload(running: &Settings, slot: &ConfigSlot, metrics: Option<&Registry>, own: &OwnSockets) {
    let args: Vec<&str> = running.args.iter().map(String::as_str).collect();
    let count = |result| {
        if let Some(m) = metrics {
            m.reloaded(result);
        }
    };
    let mut new = match cli::parse(&args) {
        Parsed::Run(s) => s,
        Parsed::Error(e) => {
            say!("ringway: SIGHUP: reload failed, keeping the running settings: {e}");
            count(Reload::Failure);
            return;
        }
        Parsed::Exit(_) => {
            // `--help`/`--version`/`--check-config` never get this far at start-up.
            count(Reload::Failure);
            return;
        }
    };
    for name in restart_only_changes(running, &new) {
        say!("ringway: SIGHUP: {name} changed; ignored until restart");
    }
    // Whether records are made follows the log and metrics set up at start, not the file.
    new.config.access_records = running.config.access_records;
    // The global connection cap is sized at start (the runtime's hard ceiling follows it):
    // reported above as needing a restart, so the running value stays.
    new.config.max_connections = running.config.max_connections;
    // The proxy's own sockets stay refused destinations whatever the new rules say.
    new.config = with_own_listeners(new.config, own);
    // Interception (`--intercept` and its CA/trust files): built before anything is
    // published, so a bad file keeps everything running as it was.
    let intercept = match crate::tls::reload_setup(new.intercept.as_ref()) {
        Ok(setup) => setup,
        Err(e) => {
            say!("ringway: SIGHUP: reload failed, keeping the running settings: {e}");
            count(Reload::Failure);
            return;
        }
    };
    let (_, current) = slot.load();
    let config_changed = *current != new.config;
    if config_changed {
        slot.publish(Arc::new(new.config));
    }
    if let Some(setup) = intercept {
        // Open tunnels keep their sessions; new tunnels (and new leaves) use this.
        crate::tls::intercepted::publish(setup);
        say!("ringway: SIGHUP: interception setup reloaded; new tunnels use it");
    }
    if config_changed {
        say!("ringway: SIGHUP: settings reloaded; new requests use them");
    } else {
        say!("ringway: SIGHUP: settings unchanged");
    }
    count(Reload::Success);
}

/// The flags whose new value differs from the running one but only takes effect at start.
fn restart_only_changes(running: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("--listen", running.listen != new.listen);
    let tls_addrs = |s: &Settings| s.tls_listen.as_ref().map(|t| t.addrs.clone());
    check("--tls-listen", tls_addrs(running) != tls_addrs(new));
    check("--threads", running.threads != new.threads);
    check("--driver", running.driver != new.driver);
    check(
        "--metrics-listen",
        running.metrics_listen != new.metrics_listen,
    );
    check("--access-log", running.access_log != new.access_log);
    check(
        "--access-log-format",
        running.access_log_format != new.access_log_format,
    );
    check(
        "--max-connections",
        running.max_connections != new.max_connections,
    );
    check("--pool-idle-timeout", running.pool_idle != new.pool_idle);
    check(
        "--shutdown-grace",
        running.shutdown_grace != new.shutdown_grace,
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caches_see_a_publish_once() {
        let slot = Arc::new(ConfigSlot::new(Arc::new(Config::default())));
        let cache = ConfigCache::new(Arc::clone(&slot));
        let (g0, c0) = cache.current();
        assert_eq!(*c0, Config::default());
        assert!(cache.changed_since(g0).is_none());
        let new = Config {
            idle_timeout: Duration::from_secs(1),
            ..Config::default()
        };
        slot.publish(Arc::new(new.clone()));
        let (g1, c1) = cache.changed_since(g0).expect("a new generation");
        assert_ne!(g1, g0);
        assert_eq!(*c1, new);
        assert!(cache.changed_since(g1).is_none());
    }

    fn settings(args: &[&str]) -> Settings {
        match cli::parse(args) {
            Parsed::Run(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reload_publishes_keeps_or_reports() {
        let dir = std::env::temp_dir().join(format!("ringway-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("r.toml");
        std::fs::write(&file, "connect_ports = \"443\"\nthreads = 1\n").unwrap();
        let running = settings(&["--config", file.to_str().unwrap()]);
        // As main publishes it: with the proxy's own sockets and interface addresses.
        let own = OwnSockets::default();
        let slot = ConfigSlot::new(Arc::new(with_own_listeners(running.config.clone(), &own)));
        let metrics = Registry::new(Box::new(|| 0));
        let count = |m: &Registry| {
            let text = m.render();
            let get = |r: &str| {
                text.lines()
                    .find_map(|l| {
                        l.strip_prefix(&format!("ringway_config_reloads_total{{result=\"{r}\"}} "))
                    })
                    .unwrap()
                    .to_string()
            };
            (get("success"), get("failure"))
        };
        reload(&running, &slot, Some(&metrics), &own);
        assert_eq!(
            slot.generation.load(Ordering::Relaxed),
            0,
            "unchanged: not published"
        );
        std::fs::write(&file, "connect_ports = \"any\"\nthreads = 2\n").unwrap();
        reload(&running, &slot, Some(&metrics), &own);
        assert_eq!(slot.generation.load(Ordering::Relaxed), 1);
        assert_eq!(
            slot.load().1.policy.connect_ports,
            ringway_core::PortRule::Any
        );
        std::fs::write(&file, "connect_ports = \"none\"\n").unwrap();
        reload(&running, &slot, Some(&metrics), &own);
        assert_eq!(slot.generation.load(Ordering::Relaxed), 1, "invalid: kept");
        assert_eq!(count(&metrics), ("2".to_string(), "1".to_string()));
        let mut new = running.clone();
        new.threads = 2;
        new.listen = vec!["127.0.0.1:1".parse().unwrap()];
        assert_eq!(
            restart_only_changes(&running, &new),
            ["--listen", "--threads"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
