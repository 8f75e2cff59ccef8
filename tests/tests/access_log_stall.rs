//! A stalled access-log consumer must not stall the proxy: with stdout a pipe nobody reads,
//! every request is still answered, the lines that did not fit are dropped and counted on
//! stderr, lines flow again once the pipe is read, and SIGTERM still exits in bounded time.
//!
//! The harness's `Proxy` always reads stdout, so these tests start the binary themselves and
//! hold its stdout pipe without reading it. Every wait has a deadline; nothing sleeps to
//! synchronise.

use ringway_e2e::*;
use std::io::{BufRead, BufReader, Read};
use std::os::raw::c_int;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

both_drivers!(
    stalled_stdout_does_not_stall_requests,
    stalled_stdout_does_not_hang_shutdown,
);

/// Requests sent while stdout is not read.
const STALLED_REQUESTS: usize = 1000;
/// Length of each of those requests' paths, so each access-log line is about 16 KiB: the
/// 64 KiB pipe fills after four lines and 1000 lines (~16 MiB) are more than the proxy may
/// queue for its writer (a few MiB), so some lines must be dropped.
const PATH_LEN: usize = 16 * 1024;
/// Requests sent after the test starts reading stdout again.
const LATER_REQUESTS: usize = 10;
/// Bound on the whole stalled phase (a healthy proxy needs a few seconds in a debug build).
const STALLED_PHASE: Duration = Duration::from_secs(60);
/// How long one answer may take. Before the writer thread existed the proxy stopped answering
/// here, once the pipe was full.
const ANSWER: Duration = Duration::from_secs(5);
/// The proxy's default shutdown grace period (`--shutdown-grace`, 10 s), which also bounds
/// the wait for a stalled access log at exit.
const GRACE: Duration = Duration::from_secs(10);
/// What the proxy prints on stderr when its writer catches up after dropping lines.
const DROPPED: &str = "ringway: access log fell behind, dropped ";

extern "C" {
    fn kill(pid: c_int, sig: c_int) -> c_int;
}
const SIGTERM: c_int = 15;

/// `ringway` with `--access-log stdout`, its stdout a pipe that nobody reads until
/// [`StalledProxy::read_stdout`]. Killed on drop; a failing test prints its stderr.
struct StalledProxy {
    child: Child,
    addr: std::net::SocketAddr,
    stdout: Option<ChildStdout>,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
}

impl StalledProxy {
    fn start(d: Driver) -> StalledProxy {
        let mut child = Command::new(ringway_bin())
            .args(["--driver", d.flag(), "--listen", "127.0.0.1:0"])
            .args(["--threads", "1", "--access-log", "stdout"])
            // The origin is on loopback, which the egress policy refuses by default.
            .args(["--allow-range", "127.0.0.0/8"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway");
        let stderr = lines_of(child.stderr.take().expect("piped stderr"));
        // The banner is read byte by byte on a thread that hands the pipe back unread past
        // it, so the wait for it has a deadline and nothing else is consumed.
        let mut out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut banner = Vec::new();
            let mut byte = [0u8; 1];
            while let Ok(1) = out.read(&mut byte) {
                if byte[0] == b'\n' {
                    break;
                }
                banner.push(byte[0]);
            }
            let _ = tx.send((String::from_utf8_lossy(&banner).into_owned(), out));
        });
        let (banner, out) = match rx.recv_timeout(WAIT) {
            Ok(got) => got,
            Err(e) => {
                let _ = child.kill();
                panic!("no banner from ringway within {WAIT:?} ({e:?})");
            }
        };
        let addrs = parse_banner(&banner, d).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("{e}")
        });
        StalledProxy {
            child,
            addr: addrs[0],
            stdout: Some(out),
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    /// Starts reading stdout: from now on its lines arrive on the returned channel.
    fn read_stdout(&mut self) -> Receiver<String> {
        lines_of(self.stdout.take().expect("stdout not read yet"))
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    fn wait_stderr(&mut self, timeout: Duration, needle: &str) -> String {
        if let Some(l) = self.stderr_seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => {
                    self.stderr_seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "no stderr line with {needle:?} within {timeout:?} ({e:?}); stderr: {:#?}",
                    self.stderr_seen
                ),
            }
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; then returns the status and the
    /// whole of stderr (the process is gone, so the pipe is at EOF).
    fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { kill(self.child.id() as c_int, SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM): {}", std::io::Error::last_os_error());
        let status = wait_child(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("ringway still running {timeout:?} after SIGTERM"));
        loop {
            match self.stderr.recv_timeout(WAIT) {
                Ok(l) => self.stderr_seen.push(l),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stderr not at EOF after exit"),
            }
        }
        (status, self.stderr_seen.clone())
    }
}

impl Drop for StalledProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(1)) {
                self.stderr_seen.push(l);
            }
            eprintln!("--- ringway stderr:\n{}", self.stderr_seen.join("\n"));
        }
    }
}

/// Reads `pipe` line by line on a thread; the channel disconnects at EOF.
fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The path of stalled-phase request `i`: its number, then filler up to [`PATH_LEN`].
fn stalled_path(i: usize) -> String {
    let mut p = format!("/stalled/{i:04}/");
    p.extend(std::iter::repeat('x').take(PATH_LEN - p.len()));
    p
}

/// Sends `count` GETs over one keep-alive connection while nobody reads the proxy's stdout and
/// asserts each answer is exactly the origin's, each within [`ANSWER`], all within
/// [`STALLED_PHASE`].
fn serve_while_stalled(p: &StalledProxy, origin: &Origin, count: usize) {
    let a = origin.authority();
    let mut c = Conn::connect(p.addr);
    c.set_read_timeout(ANSWER);
    let deadline = Instant::now() + STALLED_PHASE;
    for i in 0..count {
        assert!(
            Instant::now() < deadline,
            "only {i} of {count} requests answered within {STALLED_PHASE:?}"
        );
        let path = stalled_path(i);
        c.write(&proxy_get(&a, &path));
        // Read by hand rather than with `round_trip`, so a stall names the request it hit.
        let mut got = match c.try_read_head() {
            Ok(Some(head)) => head,
            Ok(None) => panic!("answer {i} of {count}: connection closed"),
            Err(e) => panic!("answer {i} of {count}: no head within {ANSWER:?}: {e}"),
        };
        let body = c
            .try_read_exact(path.len())
            .unwrap_or_else(|e| panic!("answer {i} of {count}: body: {e}"));
        got.extend_from_slice(&body);
        assert_bytes(&got, &ok_relayed(path.as_bytes()), &format!("answer {i}"));
    }
}

/// The number in each "dropped N lines" report on stderr.
fn dropped_counts(stderr: &[String]) -> Vec<u64> {
    stderr
        .iter()
        .filter_map(|l| l.strip_prefix(DROPPED))
        .map(|rest| {
            let n = rest.strip_suffix(" lines").unwrap_or(rest);
            n.parse()
                .unwrap_or_else(|_| panic!("bad drop report {rest:?}"))
        })
        .collect()
}

/// Stdout is a pipe nobody reads while 1000 requests with ~16 KiB log lines go through: every
/// one is answered exactly and in time. Then the test reads stdout: stderr says how many lines
/// were dropped, lines appear again for new requests, and after SIGTERM every stalled-phase
/// request is accounted for exactly once, either logged or counted as dropped.
fn stalled_stdout_does_not_stall_requests(d: Driver) {
    let origin = Origin::path_echo();
    let mut p = StalledProxy::start(d);
    serve_while_stalled(&p, &origin, STALLED_REQUESTS);

    let stdout = p.read_stdout();
    // The report comes once the writer has caught up with what was queued; lines handed over
    // before that could still find the queue full and be dropped, so the later requests wait.
    let report = p.wait_stderr(WAIT, DROPPED);
    let a = origin.authority();
    let mut c = Conn::connect(p.addr);
    for i in 0..LATER_REQUESTS {
        let path = format!("/later/{i}");
        let got = c.round_trip(&proxy_get(&a, &path));
        assert_bytes(&got, &ok_relayed(path.as_bytes()), &format!("later {i}"));
    }
    // Lines queued before the pipe was read come first; the later ones must follow, none
    // dropped.
    let mut logged = Vec::new();
    let mut later_seen = 0;
    let deadline = Instant::now() + WAIT;
    while later_seen < LATER_REQUESTS {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stdout.recv_timeout(left).unwrap_or_else(|e| {
            panic!(
                "{later_seen} of {LATER_REQUESTS} later lines within {WAIT:?} ({e:?}); \
                 {} lines read",
                logged.len()
            )
        });
        if AccessLine::parse(&line).is_some_and(|l| l.target.contains("/later/")) {
            later_seen += 1;
        }
        logged.push(line);
    }
    drop(c);

    let (status, stderr) = p.terminate(WAIT);
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status:?}");
    loop {
        match stdout.recv_timeout(WAIT) {
            Ok(l) => logged.push(l),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("stdout not at EOF after exit"),
        }
    }
    let mut seen = vec![false; STALLED_REQUESTS];
    for line in &logged {
        let l = AccessLine::parse(line)
            .unwrap_or_else(|| panic!("not an access-log line: {:.200}", line));
        let Some(rest) = l.target.split("/stalled/").nth(1) else {
            continue;
        };
        let i: usize = rest[..4].parse().expect("request number");
        assert_eq!(l.status, 200, "{:.200}", line);
        assert!(!seen[i], "request {i} logged twice");
        seen[i] = true;
    }
    let logged_stalled = seen.iter().filter(|&&s| s).count() as u64;
    let dropped: u64 = dropped_counts(&stderr).iter().sum();
    assert!(dropped > 0, "no drops reported: {report}");
    assert_eq!(
        logged_stalled + dropped,
        STALLED_REQUESTS as u64,
        "{logged_stalled} stalled-phase lines logged + {dropped} reported dropped; stderr: \
         {stderr:#?}"
    );
}

/// Stdout stalls and never recovers: SIGTERM still ends the process with exit 0 within the
/// grace period (plus a margin), saying on stderr that lines were lost.
fn stalled_stdout_does_not_hang_shutdown(d: Driver) {
    let origin = Origin::path_echo();
    let mut p = StalledProxy::start(d);
    // Enough to fill the pipe and keep the writer thread blocked in its write.
    serve_while_stalled(&p, &origin, 16);
    let started = Instant::now();
    let (status, stderr) = p.terminate(GRACE + WAIT);
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("access log") && l.contains("lost")),
        "no report of lost lines after {:?}; stderr: {stderr:#?}",
        started.elapsed()
    );
}
