//! Prometheus metrics: per-thread counters on the hot path, summed at scrape time.
//!
//! Key components:
//! - [`Registry`]: the process-wide list of every worker thread's [`ThreadMetrics`], the
//!   rare process-wide counters (config reloads), and [`Registry::render`], which writes the
//!   Prometheus text exposition format 0.0.4 (served by [`crate::metrics_http`]).
//! - [`ThreadMetrics`]: one per worker thread, written only by that thread. An increment is
//!   a relaxed load and store of an atomic the thread owns (no lock, no read-modify-write
//!   instruction, no shared cache line: each thread's block is allocated and aligned on its
//!   own), so counting costs a few nanoseconds and never contends; a scrape reads every
//!   thread's atomics and adds them up.
//! - The hooks the rest of the runtime calls, all no-ops on a thread that has no metrics
//!   (`--metrics-listen` not given): [`observe`] (an access record: requests, durations,
//!   bytes, denials), [`upstream_connect`] (one dial's time and outcome), [`pool_reuse`],
//!   and the gauges' RAII handles from [`connection_opened`] and [`tunnel_opened`].
//!
//! Why not the `prometheus-client` crate: its counters are shared atomics that every thread
//! would increment (contended read-modify-writes on one cache line), and its registry owns
//! the metric values; this design needs only the text encoder, which is the fixed format
//! below (checked in the e2e test with a real Prometheus parser).
//!
//! Failure: nothing here fails. A status above 599 is counted as code "0"; a denial whose
//! reason is not a known [`Problem`] word is counted as `reason="other"`. Process metrics
//! that cannot be read from `/proc` are left out of the scrape.

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringway_core::{AccessRecord, DialError, Problem};

/// A counter written by one thread only: `add` is a plain load + store, not an atomic
/// read-modify-write (no locked instruction on the hot path).
#[derive(Default)]
struct Owned(AtomicU64);

impl Owned {
    fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the request-duration histogram buckets.
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of the upstream-connect histogram buckets.
const CONNECT_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 5.0,
];

/// A histogram written by one thread: per-bucket (not cumulative) counts, the last one for
/// values above every bound, and the sum in nanoseconds.
struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    /// `N + 1` slots.
    counts: Vec<Owned>,
    sum_nanos: Owned,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: (0..=N).map(|_| Owned::default()).collect(),
            sum_nanos: Owned::default(),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = self.bounds.iter().position(|&b| secs <= b).unwrap_or(N);
        self.counts[slot].add(1);
        self.sum_nanos
            .add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// The `kind` label.
const KINDS: [&str; 2] = ["http", "connect"];
/// Statuses counted one by one (0 stands for "none sent" and for anything out of range).
const CODES: usize = 600;
/// The `type` label of connect errors.
const CONNECT_ERRORS: [&str; 4] = ["refused", "timeout", "dns", "reset"];
/// Denial reasons: every problem word, plus `other`.
const REASONS: usize = Problem::ALL.len() + 1;

/// One worker thread's counters. Aligned so two threads' blocks never share a cache line.
#[repr(align(128))]
pub struct ThreadMetrics {
    requests: Vec<Owned>,
    durations: [Histogram<14>; 2],
    rx: Owned,
    tx: Owned,
    denied: Vec<Owned>,
    connect: Histogram<11>,
    connect_errors: [Owned; 4],
    pool_reuses: Owned,
    client_tls_errors: Owned,
    /// Gauges: this thread's opens minus closes (a connection may not close on the thread
    /// that opened it, so these are signed and only their sum means anything).
    connections: AtomicI64,
    tunnels: AtomicI64,
}

impl ThreadMetrics {
    fn new() -> ThreadMetrics {
        ThreadMetrics {
            requests: (0..KINDS.len() * CODES).map(|_| Owned::default()).collect(),
            durations: [
                Histogram::new(&REQUEST_BUCKETS),
                Histogram::new(&REQUEST_BUCKETS),
            ],
            rx: Owned::default(),
            tx: Owned::default(),
            denied: (0..REASONS).map(|_| Owned::default()).collect(),
            connect: Histogram::new(&CONNECT_BUCKETS),
            connect_errors: Default::default(),
            pool_reuses: Owned::default(),
            client_tls_errors: Owned::default(),
            connections: AtomicI64::new(0),
            tunnels: AtomicI64::new(0),
        }
    }

    fn observe(&self, r: &AccessRecord) {
        let kind = usize::from(&r.method[..] == b"CONNECT");
        let code = if usize::from(r.status) < CODES {
            usize::from(r.status)
        } else {
            0
        };
        self.requests[kind * CODES + code].add(1);
        self.durations[kind].observe(r.duration);
        self.rx.add(r.rx);
        self.tx.add(r.tx);
        if matches!(r.status, 403 | 407 | 429 | 503) {
            self.denied[reason_index(r.reason)].add(1);
        }
    }
}

/// The slot of a denial reason: its position in [`Problem::ALL`], or the last (`other`).
fn reason_index(reason: Option<&str>) -> usize {
    reason
        .and_then(|w| Problem::ALL.iter().position(|p| p.log_word() == w))
        .unwrap_or(REASONS - 1)
}

fn reason_name(i: usize) -> &'static str {
    Problem::ALL.get(i).map_or("other", |p| p.log_word())
}

thread_local! {
    static LOCAL: OnceCell<Arc<ThreadMetrics>> = const { OnceCell::new() };
}

fn with_local(f: impl FnOnce(&ThreadMetrics)) {
    LOCAL.with(|l| {
        if let Some(m) = l.get() {
            f(m)
        }
    });
}

/// Counts one finished request or tunnel from its access record.
pub fn observe(record: &AccessRecord) {
    with_local(|m| m.observe(record));
}

/// Counts one connection attempt (`Output::Connect` carried out): its duration, and its
/// error type if it failed.
pub fn upstream_connect(took: Duration, result: Result<(), DialError>) {
    with_local(|m| {
        m.connect.observe(took);
        let slot = match result {
            Ok(()) => return,
            Err(DialError::Refused | DialError::TlsCertificate | DialError::TlsProtocol) => 0,
            Err(DialError::Timeout) => 1,
        };
        m.connect_errors[slot].add(1);
    });
}

/// Counts one failed lookup (`Output::Resolve` answered with no address): the `dns` type of
/// `ringway_upstream_connect_errors_total`.
pub fn upstream_dns_error() {
    with_local(|m| m.connect_errors[2].add(1));
}

/// Counts one request served on a pooled upstream connection.
pub fn pool_reuse() {
    with_local(|m| m.pool_reuses.add(1));
}

/// Counts one client of the HTTPS listener whose TLS failed (a refused or broken handshake,
/// a bad record): `ringway_client_tls_errors_total`. Such a connection usually never makes a
/// request, so no access line tells of it.
pub fn client_tls_error() {
    with_local(|m| m.client_tls_errors.add(1));
}

/// Held while something is open; counts it out of its gauge on drop.
pub struct Active {
    metrics: Arc<ThreadMetrics>,
    tunnel: bool,
}

impl Drop for Active {
    fn drop(&mut self) {
        let gauge = if self.tunnel {
            &self.metrics.tunnels
        } else {
            &self.metrics.connections
        };
        gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

fn opened(tunnel: bool) -> Option<Active> {
    LOCAL.with(|l| {
        let metrics = Arc::clone(l.get()?);
        let gauge = if tunnel {
            &metrics.tunnels
        } else {
            &metrics.connections
        };
        gauge.fetch_add(1, Ordering::Relaxed);
        Some(Active { metrics, tunnel })
    })
}

/// Counts a client connection as open until the handle is dropped.
pub fn connection_opened() -> Option<Active> {
    opened(false)
}

/// Counts a tunnel as open until the handle is dropped.
pub fn tunnel_opened() -> Option<Active> {
    opened(true)
}

/// Every thread's metrics, and the process-wide ones.
pub struct Registry {
    threads: Mutex<Vec<Arc<ThreadMetrics>>>,
    reloads: [AtomicU64; 2],
    started: SystemTime,
    /// Lines the access log dropped so far.
    log_dropped: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// The outcome of a config reload, for `ringway_config_reloads_total{result}`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    Success,
    Failure,
}

impl Registry {
    /// An empty registry; `log_dropped` reads the access log's drop count.
    pub fn new(log_dropped: Box<dyn Fn() -> u64 + Send + Sync>) -> Registry {
        Registry {
            threads: Mutex::new(Vec::new()),
            reloads: Default::default(),
            started: SystemTime::now(),
            log_dropped,
        }
    }

    /// Gives the calling thread its counters (call once, at the start of a worker thread).
    pub fn register_this_thread(&self) {
        let m = Arc::new(ThreadMetrics::new());
        if LOCAL.with(|l| l.set(Arc::clone(&m))).is_ok() {
            self.threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(m);
        }
    }

    /// Counts a config reload.
    pub fn reloaded(&self, result: Reload) {
        let i = usize::from(result == Reload::Failure);
        self.reloads[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition, Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sum = |f: &dyn Fn(&ThreadMetrics) -> u64| threads.iter().map(|t| f(t)).sum::<u64>();
        let mut out = String::with_capacity(8 * 1024);
        let o = &mut out;

        header(
            o,
            "ringway_requests_total",
            "counter",
            "Finished requests and tunnels, by kind and status code (0: none sent).",
        );
        for (k, kind) in KINDS.iter().enumerate() {
            for code in 0..CODES {
                let n = sum(&|t| t.requests[k * CODES + code].get());
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "ringway_requests_total{{kind=\"{kind}\",code=\"{code}\"}} {n}"
                    );
                }
            }
        }
        header(
            o,
            "ringway_request_duration_seconds",
            "histogram",
            "From the first byte of the request head to the end of the exchange or tunnel.",
        );
        for (k, kind) in KINDS.iter().enumerate() {
            histogram(
                o,
                "ringway_request_duration_seconds",
                &format!("kind=\"{kind}\","),
                &threads,
                |t| &t.durations[k],
            );
        }
        header(
            o,
            "ringway_connections_active",
            "gauge",
            "Open client connections.",
        );
        let conns: i64 = threads
            .iter()
            .map(|t| t.connections.load(Ordering::Relaxed))
            .sum();
        let _ = writeln!(o, "ringway_connections_active {}", conns.max(0));
        header(
            o,
            "ringway_tunnels_active",
            "gauge",
            "Open tunnels (CONNECT and upgrades).",
        );
        let tunnels: i64 = threads
            .iter()
            .map(|t| t.tunnels.load(Ordering::Relaxed))
            .sum();
        let _ = writeln!(o, "ringway_tunnels_active {}", tunnels.max(0));
        header(
            o,
            "ringway_transfer_bytes_total",
            "counter",
            "Bytes from clients (rx) and to clients (tx), as in the access log.",
        );
        let _ = writeln!(
            o,
            "ringway_transfer_bytes_total{{direction=\"rx\"}} {}",
            sum(&|t| t.rx.get())
        );
        let _ = writeln!(
            o,
            "ringway_transfer_bytes_total{{direction=\"tx\"}} {}",
            sum(&|t| t.tx.get())
        );
        header(
            o,
            "ringway_upstream_connect_duration_seconds",
            "histogram",
            "Time to resolve and connect to an upstream, per dial.",
        );
        histogram(
            o,
            "ringway_upstream_connect_duration_seconds",
            "",
            &threads,
            |t| &t.connect,
        );
        header(
            o,
            "ringway_upstream_connect_errors_total",
            "counter",
            "Failed dials, by type.",
        );
        for (i, ty) in CONNECT_ERRORS.iter().enumerate() {
            let _ = writeln!(
                o,
                "ringway_upstream_connect_errors_total{{type=\"{ty}\"}} {}",
                sum(&|t| t.connect_errors[i].get())
            );
        }
        header(
            o,
            "ringway_upstream_pool_reuses_total",
            "counter",
            "Requests sent on a pooled upstream connection.",
        );
        let _ = writeln!(
            o,
            "ringway_upstream_pool_reuses_total {}",
            sum(&|t| t.pool_reuses.get())
        );
        header(
            o,
            "ringway_client_tls_errors_total",
            "counter",
            "Clients of the HTTPS listener (--tls-listen) closed because their TLS failed.",
        );
        let _ = writeln!(
            o,
            "ringway_client_tls_errors_total {}",
            sum(&|t| t.client_tls_errors.get())
        );
        header(
            o,
            "ringway_denied_total",
            "counter",
            "Requests refused by policy (403, 407, 429, 503), by the access log's reason.",
        );
        for i in 0..REASONS {
            let n = sum(&|t| t.denied[i].get());
            if n > 0 {
                let _ = writeln!(
                    o,
                    "ringway_denied_total{{reason=\"{}\"}} {n}",
                    reason_name(i)
                );
            }
        }
        header(
            o,
            "ringway_access_log_dropped_total",
            "counter",
            "Access-log lines dropped because the destination stalled.",
        );
        let _ = writeln!(
            o,
            "ringway_access_log_dropped_total {}",
            (self.log_dropped)()
        );
        header(
            o,
            "ringway_config_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP), by result.",
        );
        for (i, result) in ["success", "failure"].iter().enumerate() {
            let _ = writeln!(
                o,
                "ringway_config_reloads_total{{result=\"{result}\"}} {}",
                self.reloads[i].load(Ordering::Relaxed)
            );
        }
        process(o, self.started);
        out
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram<const N: usize>(
    o: &mut String,
    name: &str,
    labels: &str,
    threads: &[Arc<ThreadMetrics>],
    get: impl Fn(&ThreadMetrics) -> &Histogram<N>,
) {
    let Some(first) = threads.first() else {
        // No worker yet: an empty histogram.
        let plain = match labels.trim_end_matches(',') {
            "" => String::new(),
            l => format!("{{{l}}}"),
        };
        let _ = writeln!(o, "{name}_bucket{{{labels}le=\"+Inf\"}} 0");
        let _ = writeln!(o, "{name}_sum{plain} 0\n{name}_count{plain} 0");
        return;
    };
    let bounds = get(first).bounds;
    let mut cumulative = 0u64;
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += threads.iter().map(|t| get(t).counts[i].get()).sum::<u64>();
        let _ = writeln!(o, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
    }
    cumulative += threads.iter().map(|t| get(t).counts[N].get()).sum::<u64>();
    let nanos: u64 = threads.iter().map(|t| get(t).sum_nanos.get()).sum();
    let plain = match labels.trim_end_matches(',') {
        "" => String::new(),
        l => format!("{{{l}}}"),
    };
    let _ = writeln!(o, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(o, "{name}_sum{plain} {}", nanos as f64 / 1e9);
    let _ = writeln!(o, "{name}_count{plain} {cumulative}");
}

/// The standard process metrics, from `/proc` and `getrusage`.
fn process(o: &mut String, started: SystemTime) {
    // SAFETY: getrusage fills the struct we own; sysconf has no preconditions.
    let (usage, page) = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        let ok = libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0;
        (ok.then_some(u), libc::sysconf(libc::_SC_PAGESIZE))
    };
    if let Some(u) = usage {
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        header(
            o,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(
            o,
            "process_cpu_seconds_total {}",
            secs(u.ru_utime) + secs(u.ru_stime)
        );
    }
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
    if let (Some(pages), Ok(page)) = (rss_pages, u64::try_from(page)) {
        header(
            o,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(o, "process_resident_memory_bytes {}", pages * page);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        header(
            o,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(o, "process_open_fds {}", dir.count());
    }
    let start = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    header(
        o,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    let _ = writeln!(o, "process_start_time_seconds {start}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(method: &'static [u8], status: u16, reason: Option<&'static str>) -> AccessRecord {
        AccessRecord {
            client: "127.0.0.1:1".parse().unwrap(),
            method: Bytes::from_static(method),
            target: Bytes::from_static(b"http://h/"),
            status,
            rx: 10,
            tx: 100,
            duration: Duration::from_micros(700),
            reason,
            user: None,
            upstream: None,
            via: None,
            intercepted: false,
        }
    }

    #[test]
    fn counts_sum_over_threads_and_render() {
        let registry = Arc::new(Registry::new(Box::new(|| 7)));
        let worker = |registry: Arc<Registry>, records: Vec<AccessRecord>| {
            std::thread::spawn(move || {
                registry.register_this_thread();
                for r in &records {
                    observe(r);
                }
                upstream_connect(Duration::from_millis(2), Ok(()));
                upstream_connect(Duration::from_millis(3), Err(DialError::Refused));
                pool_reuse();
                let held = connection_opened();
                std::mem::forget(held); // still open at the scrape
            })
            .join()
            .unwrap()
        };
        worker(
            Arc::clone(&registry),
            vec![
                record(b"GET", 200, None),
                record(b"GET", 407, Some("auth_required")),
            ],
        );
        worker(
            Arc::clone(&registry),
            vec![
                record(b"GET", 200, None),
                record(b"CONNECT", 403, Some("connect_port_denied")),
            ],
        );
        registry.reloaded(Reload::Failure);
        let text = registry.render();
        for line in [
            "ringway_requests_total{kind=\"http\",code=\"200\"} 2",
            "ringway_requests_total{kind=\"http\",code=\"407\"} 1",
            "ringway_requests_total{kind=\"connect\",code=\"403\"} 1",
            "ringway_request_duration_seconds_bucket{kind=\"http\",le=\"0.0005\"} 0",
            "ringway_request_duration_seconds_bucket{kind=\"http\",le=\"0.001\"} 3",
            "ringway_request_duration_seconds_bucket{kind=\"http\",le=\"+Inf\"} 3",
            "ringway_request_duration_seconds_count{kind=\"http\"} 3",
            "ringway_request_duration_seconds_sum{kind=\"http\"} 0.0021",
            "ringway_transfer_bytes_total{direction=\"rx\"} 40",
            "ringway_transfer_bytes_total{direction=\"tx\"} 400",
            "ringway_upstream_connect_duration_seconds_bucket{le=\"0.0025\"} 2",
            "ringway_upstream_connect_duration_seconds_bucket{le=\"0.005\"} 4",
            "ringway_upstream_connect_duration_seconds_count 4",
            "ringway_upstream_connect_errors_total{type=\"refused\"} 2",
            "ringway_upstream_connect_errors_total{type=\"reset\"} 0",
            "ringway_upstream_pool_reuses_total 2",
            "ringway_client_tls_errors_total 0",
            "ringway_denied_total{reason=\"auth_required\"} 1",
            "ringway_denied_total{reason=\"connect_port_denied\"} 1",
            "ringway_connections_active 2",
            "ringway_tunnels_active 0",
            "ringway_access_log_dropped_total 7",
            "ringway_config_reloads_total{result=\"success\"} 0",
            "ringway_config_reloads_total{result=\"failure\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("code=\"404\""), "zero series are left out");
    }

    #[test]
    fn hooks_without_metrics_do_nothing() {
        std::thread::spawn(|| {
            observe(&record(b"GET", 200, None));
            pool_reuse();
            assert!(connection_opened().is_none());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn unknown_denial_reasons_are_other() {
        assert_eq!(reason_name(reason_index(Some("nonsense"))), "other");
        assert_eq!(reason_name(reason_index(None)), "other");
        assert_eq!(
            reason_name(reason_index(Some("client_denied"))),
            "client_denied"
        );
    }
}
