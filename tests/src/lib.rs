//! Harness for Ringway's black-box end-to-end tests.
//!
//! The tests start the real `ringway` binary on port 0, read the bound address from its first
//! stdout line, and talk to it over loopback with raw [`std::net::TcpStream`]s and with `curl`,
//! against origins started in-process (std threads + std::net) or as `openssl s_server` children.
//!
//! # Key components
//! - [`ringway_bin`]: builds the binary once per test process (`$CARGO build -p ringway`, same
//!   profile and target dir as the test binary) unless `RINGWAY_BIN` names one.
//! - [`Proxy`]: one running proxy. Kills it on drop; a reader thread feeds its stdout lines into a
//!   channel so a test can wait (bounded) for an access-log line. On a failing test the drop prints
//!   the proxy's stdout and stderr.
//! - [`Conn`]: a buffered loopback connection with read/write timeouts and HTTP message framing,
//!   used by clients and origins alike.
//! - [`Origin`]: a scripted HTTP origin: a handler decides exactly which bytes to answer; the origin
//!   records every byte and every connection it received.
//! - [`EchoServer`]: the far end of CONNECT tunnels (echo, or greet-then-sink) with half-close.
//! - [`TlsOrigin`]: `openssl s_server -www` with a throwaway self-signed certificate.
//! - [`tls_origin`]: the interception tests' TLS origin: its CA and `localhost` leaf, and a
//!   Python `http.server` serving with them.
//! - [`BlackHole`]: a loopback address whose accept queue is full, so dials to it hang.
//! - [`both_drivers!`]: turns each scenario function into a `#[test]` per IO driver.
//! - [`scenario`]: the requests and answers scenarios share ([`proxy_get`], [`ok_relayed`],
//!   [`Origin::path_echo`], [`Conn::round_trip`]...), so each test spells out only its own bytes.
//!
//! # Error handling
//! Nothing may hang: every socket has read and write timeouts ([`IO_TIMEOUT`]) and every wait has
//! a deadline. Client-side helpers panic with the bytes seen so far; origin-side helpers return
//! `None` instead, so a stuck origin thread ends quietly and the test's own timeout reports.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub mod scenario;
pub use scenario::*;
pub mod tls_origin;
pub mod tls_pki;
pub mod tls_proxy;

/// Read/write timeout of every socket the harness opens.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for waiting on a signal (a log line, an origin event, a process exit).
pub const WAIT: Duration = Duration::from_secs(10);

// Declared here rather than pulling in the libc crate: both live in the C library std links.
extern "C" {
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
}
const SIGTERM: c_int = 15;
const SIGHUP: c_int = 1;
const SOL_SOCKET: c_int = 1;
const SO_LINGER: c_int = 13;

#[repr(C)]
struct Linger {
    l_onoff: c_int,
    l_linger: c_int,
}

/// Closes `stream` with a TCP RST instead of a FIN (SO_LINGER with a zero timeout).
pub fn reset(stream: TcpStream) {
    let l = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd we own and a correctly sized `struct linger`.
    let rc = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            (&l as *const Linger).cast(),
            std::mem::size_of::<Linger>() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        io::Error::last_os_error()
    );
    drop(stream);
}

// ---------------------------------------------------------------------------------------------
// Drivers and the per-driver test macro
// ---------------------------------------------------------------------------------------------

/// The IO driver a proxy runs on; every test runs once per driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Epoll,
}

impl Driver {
    /// Value of `--driver`.
    pub fn flag(self) -> &'static str {
        match self {
            Driver::Uring => "uring",
            Driver::Epoll => "epoll",
        }
    }

    /// Name the binary prints in its first stdout line.
    pub fn banner_name(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// For each named `fn name(d: Driver)` in the calling module, generates a module `name` with
/// `#[test] fn uring()` and `#[test] fn epoll()` that call it with that [`Driver`], so every
/// scenario runs on both IO drivers (`name::uring`, `name::epoll`). A scenario left out of the
/// list is dead code, which `clippy -D warnings` reports.
#[macro_export]
macro_rules! both_drivers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn uring() {
                super::$name($crate::Driver::Uring)
            }

            #[test]
            fn epoll() {
                super::$name($crate::Driver::Epoll)
            }
        }
    )*};
}

// ---------------------------------------------------------------------------------------------
// Locating the binary
// ---------------------------------------------------------------------------------------------

/// Path of the `ringway` binary under test.
///
/// `RINGWAY_BIN` wins. Otherwise, once per test process, runs `$CARGO build -p ringway` (cargo
/// sets `CARGO` for tests; falls back to `cargo`) with the profile and target directory this test
/// binary was built with (derived from its own path, `<target>/<profile>/deps/<test>`), and
/// returns `<target>/<profile>/ringway`. A failed build is remembered, so every test of the
/// process reports the same error at once instead of building again.
pub fn ringway_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build_ringway) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

fn build_ringway() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("RINGWAY_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut profile_dir = exe.parent().expect("test exe has a parent").to_path_buf();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let target_dir = profile_dir
        .parent()
        .expect("profile dir has a parent")
        .to_path_buf();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", "ringway", "--bin", "ringway"])
        .env("CARGO_TARGET_DIR", &target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .output()
        .map_err(|e| format!("run cargo build -p ringway: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p ringway failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(profile_dir.join("ringway"))
}

/// Runs `ringway ARGS` to completion (killed after `timeout`), returning its output.
pub fn run_ringway(args: &[&str], timeout: Duration) -> Output {
    let child = Command::new(ringway_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    wait_output(child, timeout, "ringway")
}

/// Collects a child's stdout/stderr and waits for it, killing it after `timeout`.
pub fn wait_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let out = child.stdout.take().map(drain_in_thread);
    let err = child.stderr.take().map(drain_in_thread);
    let status = wait_child(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not exit within {timeout:?}");
    });
    let join = |h: Option<JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Output {
        status,
        stdout: join(out),
        stderr: join(err),
    }
}

fn drain_in_thread<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Polls `try_wait` until the child exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy under test
// ---------------------------------------------------------------------------------------------

/// One `ringway` access-log line:
/// `TIMESTAMP CLIENT METHOD TARGET STATUS RX TX DURATION [reason=...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLine {
    /// RFC 3339 UTC with milliseconds, exactly `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub ts: String,
    pub client: String,
    pub method: String,
    pub target: String,
    pub status: u16,
    pub rx: u64,
    pub tx: u64,
    pub duration: String,
    pub extra: Vec<String>,
}

impl AccessLine {
    /// Parses a line; `None` if it does not have the access-log shape.
    pub fn parse(line: &str) -> Option<AccessLine> {
        let (ts, rest) = line.split_once(' ')?;
        if !is_log_timestamp(ts) {
            return None;
        }
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() < 7 {
            return None;
        }
        let duration = f[6];
        // Exactly `MILLIS.MMMms`, as the core writes it.
        let (whole, frac) = duration.strip_suffix("ms")?.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(frac) || frac.len() != 3 {
            return None;
        }
        Some(AccessLine {
            ts: ts.to_string(),
            client: f[0].to_string(),
            method: f[1].to_string(),
            target: f[2].to_string(),
            status: f[3].parse().ok()?,
            rx: f[4].parse().ok()?,
            tx: f[5].parse().ok()?,
            duration: duration.to_string(),
            extra: f[7..].iter().map(|s| s.to_string()).collect(),
        })
    }

    /// The whole line with its duration (wall-clock time, the one part a test cannot know)
    /// written as `D`: `CLIENT METHOD TARGET STATUS RX TX D[ reason=...]`.
    ///
    /// Why: lets a test compare every other field of the line at once, exactly.
    pub fn without_duration(&self) -> String {
        let mut line = format!(
            "{} {} {} {} {} {} D",
            self.client, self.method, self.target, self.status, self.rx, self.tx
        );
        for e in &self.extra {
            line.push(' ');
            line.push_str(e);
        }
        line
    }
}

/// Whether `ts` is exactly an RFC 3339 UTC timestamp with milliseconds,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, with plausible field values.
pub fn is_log_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    if b.len() != shape.len()
        || !b.iter().zip(shape).all(|(&c, &s)| {
            if s == b'd' {
                c.is_ascii_digit()
            } else {
                c == s
            }
        })
    {
        return false;
    }
    let n = |r: std::ops::Range<usize>| ts[r].parse::<u32>().unwrap_or(99);
    (1..=12).contains(&n(5..7))
        && (1..=31).contains(&n(8..10))
        && n(11..13) < 24
        && n(14..16) < 60
        && n(17..19) < 61
}

/// A running `ringway` process. Killed (SIGKILL) on drop.
pub struct Proxy {
    child: Child,
    pub driver: Driver,
    /// Every address from the first stdout line.
    pub addrs: Vec<SocketAddr>,
    /// The first stdout line, verbatim.
    pub banner: String,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    /// Starts `ringway --driver D ARGS`, adding `--listen 127.0.0.1:0`, `--threads 1` and
    /// `--access-log stdout` unless ARGS set them, and `--allow-range 127.0.0.0/8
    /// --allow-range ::1/128` (the test origins are on loopback, which the egress policy
    /// refuses by default) unless ARGS give an `--allow-range` of their own. Panics (with
    /// stderr) if it does not come up.
    pub fn start(driver: Driver, args: &[&str]) -> Proxy {
        Proxy::try_start(driver, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Proxy::start`], but with the default egress policy (no `--allow-range` added):
    /// for the tests of that policy.
    pub fn start_guarded(driver: Driver, args: &[&str]) -> Proxy {
        Proxy::launch(driver, args, false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Proxy::start`], but returns a description of the failure instead of panicking.
    pub fn try_start(driver: Driver, args: &[&str]) -> Result<Proxy, String> {
        Proxy::launch(driver, args, true)
    }

    fn launch(driver: Driver, args: &[&str], loopback_origins: bool) -> Result<Proxy, String> {
        let mut full: Vec<&str> = vec!["--driver", driver.flag()];
        let has = |flag: &str| args.contains(&flag);
        if loopback_origins && !has("--allow-range") {
            full.extend(["--allow-range", "127.0.0.0/8", "--allow-range", "::1/128"]);
        }
        if !has("--listen") {
            full.extend(["--listen", "127.0.0.1:0"]);
        }
        if !has("--threads") {
            full.extend(["--threads", "1"]);
        }
        if !has("--access-log") {
            full.extend(["--access-log", "stdout"]);
        }
        full.extend_from_slice(args);
        let mut child = Command::new(ringway_bin())
            .args(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", ringway_bin().display()))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        let describe = |child: &mut Child, why: String| {
            let _ = child.kill();
            let status = child.wait().ok();
            // The process is gone, so its stderr pipe is at EOF: the reader ends.
            let _ = stderr_reader.join();
            format!(
                "ringway {} failed to start: {why}; status {:?}; stderr:\n{}",
                full.join(" "),
                status,
                String::from_utf8_lossy(&stderr.lock().unwrap())
            )
        };
        let banner = match lines.recv_timeout(WAIT) {
            Ok(l) => l,
            Err(e) => {
                return Err(describe(
                    &mut child,
                    format!("no first stdout line ({e:?})"),
                ))
            }
        };
        let addrs = match parse_banner(&banner, driver) {
            Ok(a) => a,
            Err(why) => return Err(describe(&mut child, why)),
        };
        Ok(Proxy {
            child,
            driver,
            addrs,
            banner,
            lines,
            seen: Vec::new(),
            stderr,
        })
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// `http://ADDR` for curl's `-x`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new client connection to the proxy.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr())
    }

    /// Waits up to `timeout` for a stdout line (after the banner) matching `pred`, looking at
    /// lines already seen first. Panics with all lines seen on timeout.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "no matching stdout line within {timeout:?} ({e:?}); lines seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the access-log line of client `client` (its local address) with `method`.
    pub fn wait_access(&mut self, client: SocketAddr, method: &str) -> AccessLine {
        let client = client.to_string();
        let line = self.wait_line(WAIT, |l| {
            AccessLine::parse(l).is_some_and(|a| a.client == client && a.method == method)
        });
        AccessLine::parse(&line).expect("parsed above")
    }

    /// Waits for the access-log line of client `client` (its local address), any method.
    pub fn wait_access_of(&mut self, client: SocketAddr) -> AccessLine {
        let client = client.to_string();
        let line = self.wait_line(WAIT, |l| {
            AccessLine::parse(l).is_some_and(|a| a.client == client)
        });
        AccessLine::parse(&line).expect("parsed above")
    }

    /// Collects stdout lines arriving within `quiet` of each other (for asserting absence).
    pub fn lines_so_far(&mut self, quiet: Duration) -> Vec<String> {
        while let Ok(l) = self.lines.recv_timeout(quiet) {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    /// Resident set size of the proxy in KiB (`VmRSS` in /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid()).expect("VmRSS of the running proxy")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(SIGTERM, "SIGTERM");
    }

    /// Sends SIGHUP (reopen the access-log file).
    pub fn sighup(&self) {
        self.signal(SIGHUP, "SIGHUP");
    }

    fn signal(&self, sig: c_int, name: &str) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { kill(self.pid() as c_int, sig) };
        assert_eq!(rc, 0, "kill({name}) failed: {}", io::Error::last_os_error());
    }

    /// Waits until the proxy's stderr contains `text`; panics after `timeout`.
    pub fn wait_stderr(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} on stderr within {timeout:?}: {}",
                self.stderr()
            );
            // stderr is collected by a reader thread with no notification: poll it
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// The `--metrics-listen` address, from the proxy's "metrics and health checks on" line
    /// (the flag may ask for port 0); waits up to `timeout` for it.
    pub fn metrics_addr(&self, timeout: Duration) -> SocketAddr {
        let prefix = "ringway: metrics and health checks on http://";
        self.wait_stderr("/metrics\n", timeout);
        let err = self.stderr();
        err.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|l| l.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("no metrics line: {err}"))
            .parse()
            .unwrap()
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            // The process is gone: the stdout reader sends what is left, then disconnects.
            while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
                self.seen.push(l);
            }
            eprintln!(
                "--- ringway ({:?}) banner: {}\n--- stdout:\n{}\n--- stderr:\n{}",
                self.driver,
                self.banner,
                self.seen.join("\n"),
                self.stderr()
            );
        }
    }
}

/// Resident set size in KiB of process `pid` (`VmRSS` in /proc/PID/status); `None` once gone.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Parses `ringway listening on ADDR[, ADDR...] (DRIVER, N thread[s])`, checking the driver.
/// The HTTPS listener's addresses (`https://ADDR`, after the plain ones) are included bare.
pub fn parse_banner(line: &str, driver: Driver) -> Result<Vec<SocketAddr>, String> {
    let bad = |why: &str| format!("bad first stdout line {line:?}: {why}");
    let rest = line
        .strip_prefix("ringway listening on ")
        .ok_or_else(|| bad("prefix"))?;
    let open = rest.rfind(" (").ok_or_else(|| bad("no ' ('"))?;
    let (addrs, tail) = rest.split_at(open);
    let inner = tail
        .strip_prefix(" (")
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| bad("parentheses"))?;
    let (name, threads) = inner
        .split_once(", ")
        .ok_or_else(|| bad("no ', ' in parentheses"))?;
    if name != driver.banner_name() {
        return Err(bad(&format!(
            "driver {name:?}, asked for {:?}",
            driver.banner_name()
        )));
    }
    let (n, word) = threads.split_once(' ').ok_or_else(|| bad("thread count"))?;
    let n: usize = n.parse().map_err(|_| bad("thread count"))?;
    let want = if n == 1 { "thread" } else { "threads" };
    if word != want {
        return Err(bad(&format!("expected {want:?}")));
    }
    addrs
        .split(", ")
        .map(|a| {
            a.strip_prefix("https://")
                .unwrap_or(a)
                .parse::<SocketAddr>()
                .map_err(|_| bad(&format!("address {a:?}")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Buffered connections with HTTP framing
// ---------------------------------------------------------------------------------------------

type Tap = Box<dyn FnMut(&[u8]) + Send>;

/// A loopback TCP connection with a read buffer, timeouts, and HTTP/1 message framing.
/// Client-side methods panic on timeout or error, showing the bytes read so far.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    tap: Option<Tap>,
    /// Set when a read ended with ECONNRESET (treated as end of stream).
    pub reset: bool,
}

impl Conn {
    /// Connects with [`IO_TIMEOUT`] for the connect and for every read and write.
    pub fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Conn::new(s)
    }

    /// Wraps a stream, setting read/write timeouts and TCP_NODELAY.
    pub fn new(stream: TcpStream) -> Conn {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: Vec::new(),
            tap: None,
            reset: false,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    /// Writes all bytes; panics on error.
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write of {} bytes: {e}", bytes.len()));
    }

    /// `shutdown(Write)`: sends FIN.
    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads once more into the buffer. `Ok(0)` = EOF (ECONNRESET counts as EOF, see `reset`).
    pub fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => {
                    if let Some(tap) = self.tap.as_mut() {
                        tap(&tmp[..n]);
                    }
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.reset = true;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Reads a message head through the blank line. `Ok(None)`: clean EOF before any byte.
    pub fn try_read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.take(end + 4)));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a head",
                ));
            }
        }
    }

    /// Reads exactly `n` bytes.
    pub fn try_read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a body",
                ));
            }
        }
        Ok(self.take(n))
    }

    /// Reads one line through CRLF.
    fn try_read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                return Ok(self.take(end + 2));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside a chunked body",
                ));
            }
        }
    }

    /// Reads a chunked body raw (chunks, last chunk, trailers, final CRLF).
    pub fn try_read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        loop {
            let line = self.try_read_line()?;
            raw.extend_from_slice(&line);
            let size = chunk_size(&line)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                loop {
                    let t = self.try_read_line()?;
                    raw.extend_from_slice(&t);
                    if t == b"\r\n" {
                        return Ok(raw);
                    }
                }
            }
            raw.extend_from_slice(&self.try_read_exact(size + 2)?);
        }
    }

    /// Reads until EOF.
    pub fn try_read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? != 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads one request (head + body framed by Content-Length or chunked). `Ok(None)` on EOF.
    pub fn try_read_request(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(mut head) = self.try_read_head()? else {
            return Ok(None);
        };
        let body = self.try_read_body(&head, BodyKind::Request)?;
        head.extend_from_slice(&body);
        Ok(Some(head))
    }

    /// Reads the body belonging to `head`.
    pub fn try_read_body(&mut self, head: &[u8], kind: BodyKind) -> io::Result<Vec<u8>> {
        let h = Head::parse(head);
        if let BodyKind::Response { head_request } = kind {
            let code = h.status();
            if head_request || (100..200).contains(&code) || code == 204 || code == 304 {
                return Ok(Vec::new());
            }
        }
        if h.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return self.try_read_chunked();
        }
        if let Some(cl) = h.get("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
            return self.try_read_exact(n);
        }
        match kind {
            BodyKind::Request => Ok(Vec::new()),
            BodyKind::Response { .. } => self.try_read_to_eof(),
        }
    }

    fn die(&self, what: &str, e: io::Error) -> ! {
        let e = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                let t = self
                    .stream
                    .read_timeout()
                    .ok()
                    .flatten()
                    .unwrap_or(IO_TIMEOUT);
                format!("timed out after {t:?}")
            }
            _ => e.to_string(),
        };
        panic!("{what}: {e}; unconsumed bytes so far: {}", show(&self.buf))
    }

    /// Reads one response head (panics on error/EOF).
    pub fn read_head(&mut self) -> Vec<u8> {
        match self.try_read_head() {
            Ok(Some(h)) => h,
            Ok(None) => panic!("EOF instead of a response head"),
            Err(e) => self.die("reading a response head", e),
        }
    }

    /// Reads one complete response (head + body) for a request of the given method.
    /// Interim (1xx) responses are returned as messages of their own.
    pub fn read_response(&mut self, request_method: &str) -> Vec<u8> {
        let mut msg = self.read_head();
        match self.try_read_body(
            &msg,
            BodyKind::Response {
                head_request: request_method == "HEAD",
            },
        ) {
            Ok(body) => msg.extend_from_slice(&body),
            Err(e) => self.die(&format!("reading the body after head {}", show(&msg)), e),
        }
        msg
    }

    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        match self.try_read_exact(n) {
            Ok(v) => v,
            Err(e) => self.die(&format!("reading {n} bytes"), e),
        }
    }

    /// Reads everything until EOF (ECONNRESET counts as EOF).
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        match self.try_read_to_eof() {
            Ok(v) => v,
            Err(e) => self.die("reading to EOF", e),
        }
    }

    /// Asserts the peer closes without sending anything more.
    pub fn expect_eof(&mut self) {
        let rest = self.read_to_eof();
        assert!(
            rest.is_empty(),
            "expected EOF, got more bytes: {}",
            show(&rest)
        );
    }

    /// Reads to EOF and asserts it got exactly the canned answer for `reason` (see
    /// [`canned`]); returns the bytes.
    #[track_caller]
    pub fn expect_canned(&mut self, reason: &str) -> Vec<u8> {
        let all = self.read_to_eof();
        assert_canned(&all, reason);
        all
    }
}

/// Which side's framing rules [`Conn::try_read_body`] applies.
#[derive(Clone, Copy, Debug)]
pub enum BodyKind {
    Request,
    Response { head_request: bool },
}

fn chunk_size(line: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(line).ok()?.trim_end_matches("\r\n");
    let hex = s.split(';').next()?.trim();
    usize::from_str_radix(hex, 16).ok()
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Printable form of bytes for assertion messages (escaped, long runs elided).
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 3000;
    let mut s = String::new();
    let cut = bytes.len() > MAX;
    let part = if cut { &bytes[..MAX] } else { bytes };
    s.push('"');
    s.push_str(&part.escape_ascii().to_string());
    s.push('"');
    if cut {
        s.push_str(&format!("... ({} bytes in all)", bytes.len()));
    }
    s
}

/// Builds a message head from lines: each gets `\r\n`, then a blank line is added.
pub fn head(lines: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

/// `head(lines)` followed by `body`.
pub fn message(lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut v = head(lines);
    v.extend_from_slice(body);
    v
}

/// Asserts two byte strings are equal, printing both escaped.
#[track_caller]
pub fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert!(
        actual == expected,
        "{what}: bytes differ\n  expected: {}\n  actual:   {}",
        show(expected),
        show(actual)
    );
}

/// A parsed head: start line and headers (name, value) in order, names as sent.
#[derive(Clone, Debug)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Lenient parse of a head (through its blank line if present).
    pub fn parse(bytes: &[u8]) -> Head {
        let text = String::from_utf8_lossy(bytes);
        let text = text.split("\r\n\r\n").next().unwrap_or("");
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or("").to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_string(), v.trim().to_string()))
            .collect();
        Head { start, headers }
    }

    /// First value of a header (case-insensitive name).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Status code of a response start line (0 if unparsable).
    pub fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

/// Splits a message at the end of its head.
pub fn split_message(msg: &[u8]) -> (&[u8], &[u8]) {
    match find(msg, b"\r\n\r\n") {
        Some(i) => msg.split_at(i + 4),
        None => (msg, &[]),
    }
}

/// Decodes a raw chunked body (as read by [`Conn::try_read_chunked`]); panics on bad framing.
pub fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let eol = find(rest, b"\r\n")
            .unwrap_or_else(|| panic!("chunk size line missing in {}", show(raw)));
        let size = chunk_size(&rest[..eol + 2])
            .unwrap_or_else(|| panic!("bad chunk size in {}", show(raw)));
        rest = &rest[eol + 2..];
        if size == 0 {
            // trailers then CRLF
            assert!(
                rest.ends_with(b"\r\n"),
                "chunked body must end with CRLF: {}",
                show(raw)
            );
            return out;
        }
        assert!(rest.len() >= size + 2, "short chunk in {}", show(raw));
        out.extend_from_slice(&rest[..size]);
        assert_eq!(
            &rest[size..size + 2],
            b"\r\n",
            "chunk data not followed by CRLF in {}",
            show(raw)
        );
        rest = &rest[size + 2..];
    }
}

/// Every canned error answer of the proxy, written out here by hand: the black-box oracle for
/// refusals. Each row is `(access-log reason word, status and reason phrase, body line without
/// its final LF, RFC 9209 error type of its Proxy-Status field)`.
///
/// Why by hand: these are fixed texts clients see, so a change to one is a change of
/// behaviour the e2e suite must notice. Building the expectation from the core's own table
/// would test the core against itself.
pub const CANNED: &[(&str, &str, &str, &str)] = &[
    (
        "malformed_head",
        "400 Bad Request",
        "The request head is not valid HTTP/1.1.",
        "http_request_error",
    ),
    (
        "bare_line_ending",
        "400 Bad Request",
        "Lines of the request head must end in CRLF.",
        "http_request_error",
    ),
    (
        "origin_form",
        "400 Bad Request",
        "This is a forward proxy: send an absolute URI (GET http://host/path) or CONNECT.",
        "http_request_error",
    ),
    (
        "bad_target",
        "400 Bad Request",
        "The request URI is not a valid http:// URI.",
        "http_request_error",
    ),
    (
        "unsupported_scheme",
        "400 Bad Request",
        "Only http:// URIs are forwarded; use CONNECT for https.",
        "http_request_error",
    ),
    (
        "bad_connect_target",
        "400 Bad Request",
        "CONNECT needs a host:port target with a port from 1 to 65535.",
        "http_request_error",
    ),
    (
        "cl_and_te",
        "400 Bad Request",
        "Content-Length and Transfer-Encoding must not both be present.",
        "http_request_error",
    ),
    (
        "duplicate_content_length",
        "400 Bad Request",
        "Content-Length must appear at most once.",
        "http_request_error",
    ),
    (
        "invalid_content_length",
        "400 Bad Request",
        "Content-Length must be a decimal number.",
        "http_request_error",
    ),
    (
        "bad_transfer_encoding",
        "400 Bad Request",
        "Transfer-Encoding must be exactly chunked.",
        "http_request_error",
    ),
    (
        "te_in_http10",
        "400 Bad Request",
        "HTTP/1.0 requests cannot use Transfer-Encoding.",
        "http_request_error",
    ),
    (
        "duplicate_host",
        "400 Bad Request",
        "Host must appear exactly once.",
        "http_request_error",
    ),
    (
        "missing_host",
        "400 Bad Request",
        "HTTP/1.1 requests need a Host header.",
        "http_request_error",
    ),
    (
        "invalid_host",
        "400 Bad Request",
        "The Host header must be a host name or address with an optional port.",
        "http_request_error",
    ),
    (
        "unexpected_body",
        "400 Bad Request",
        "This request must not carry a body.",
        "http_request_error",
    ),
    (
        "bad_chunk",
        "400 Bad Request",
        "The chunked request body is malformed.",
        "http_request_error",
    ),
    (
        "client_denied",
        "403 Forbidden",
        "Your address is not allowed to use this proxy.",
        "http_request_denied",
    ),
    (
        "connect_port_denied",
        "403 Forbidden",
        "CONNECT to this port is not allowed.",
        "http_request_denied",
    ),
    (
        "auth_required",
        "407 Proxy Authentication Required",
        "This proxy needs a user name and password (Proxy-Authorization: Basic).",
        "http_request_denied",
    ),
    (
        "header_timeout",
        "408 Request Timeout",
        "The request head did not arrive in time.",
        "http_request_error",
    ),
    (
        "head_too_large",
        "431 Request Header Fields Too Large",
        "The request head is too large.",
        "http_request_error",
    ),
    (
        "too_many_headers",
        "431 Request Header Fields Too Large",
        "The request has too many header fields.",
        "http_request_error",
    ),
    (
        "dns_failed",
        "502 Bad Gateway",
        "The upstream host name could not be resolved.",
        "dns_error",
    ),
    (
        "dial_failed",
        "502 Bad Gateway",
        "The upstream server could not be reached.",
        "connection_refused",
    ),
    (
        "bad_response",
        "502 Bad Gateway",
        "The upstream server sent an invalid response.",
        "http_protocol_error",
    ),
    (
        "upstream_closed",
        "502 Bad Gateway",
        "The upstream server closed the connection without a response.",
        "connection_terminated",
    ),
    (
        "dial_timeout",
        "504 Gateway Timeout",
        "The upstream server did not answer the connection in time.",
        "connection_timeout",
    ),
    (
        "upstream_timeout",
        "504 Gateway Timeout",
        "The upstream server did not respond in time.",
        "http_response_timeout",
    ),
    (
        "unsupported_version",
        "505 HTTP Version Not Supported",
        "Only HTTP/1.0 and HTTP/1.1 are supported.",
        "http_request_error",
    ),
    (
        "forwarding_loop",
        "508 Loop Detected",
        "The request already passed through this proxy.",
        "proxy_loop_detected",
    ),
    (
        "dns_timeout",
        "504 Gateway Timeout",
        "The upstream host name could not be resolved in time.",
        "dns_timeout",
    ),
    (
        "client_limit",
        "429 Too Many Requests",
        "Too many connections from your address; retry later.",
        "connection_limit_reached",
    ),
    (
        "connection_limit",
        "503 Service Unavailable",
        "The proxy is at its connection limit; retry later.",
        "connection_limit_reached",
    ),
    (
        "misdirected_request",
        "421 Misdirected Request",
        "This connection was opened for another host: connect to that host separately.",
        "http_request_denied",
    ),
    (
        "tls_certificate_error",
        "502 Bad Gateway",
        "The upstream server's TLS certificate is not trusted (unknown issuer, expired, or for another name).",
        "tls_certificate_error",
    ),
    (
        "tls_protocol_error",
        "502 Bad Gateway",
        "The TLS handshake with the upstream server failed.",
        "tls_protocol_error",
    ),
];

/// The exact canned answer the proxy sends for a refusal it logs as `reason=REASON` (see
/// [`CANNED`]), through EOF: `HTTP/1.1 STATUS`, for 407 only `Proxy-Authenticate: Basic
/// realm="ringway"`, for 429 and 503 `Retry-After: 1`, then `Proxy-Status: ringway;
/// error=TYPE`, `Content-Type: text/plain`, `Content-Length` of the body,
/// `Connection: close`, a blank line and the body line ending in LF. With `head_only` (the
/// answer to a HEAD request) the body is left out, but Content-Length still gives its length.
pub fn canned_answer(reason: &str, head_only: bool) -> Vec<u8> {
    let &(_, status, text, error) = CANNED
        .iter()
        .find(|(word, _, _, _)| *word == reason)
        .unwrap_or_else(|| panic!("no canned answer is logged with reason={reason}"));
    let body = format!("{text}\n");
    let status_line = format!("HTTP/1.1 {status}");
    let length = format!("Content-Length: {}", body.len());
    let mut lines = vec![status_line.as_str()];
    if status.starts_with("407 ") {
        lines.push("Proxy-Authenticate: Basic realm=\"ringway\"");
    }
    if status.starts_with("429 ") || status.starts_with("503 ") {
        lines.push("Retry-After: 1");
    }
    let proxy_status = format!("Proxy-Status: ringway; error={error}");
    lines.push(&proxy_status);
    lines.extend(["Content-Type: text/plain", &length, "Connection: close"]);
    message(&lines, if head_only { b"" } else { body.as_bytes() })
}

/// [`canned_answer`] for a request other than HEAD.
pub fn canned(reason: &str) -> Vec<u8> {
    canned_answer(reason, false)
}

/// Checks that `all` (everything received until EOF) is exactly the canned answer for `reason`
/// ([`canned`]) and nothing after it.
pub fn check_canned(all: &[u8], reason: &str) -> Result<(), String> {
    let want = canned(reason);
    if all != want {
        return Err(format!(
            "canned answer for reason={reason}, then EOF\n  expected: {}\n  actual:   {}",
            show(&want),
            show(all)
        ));
    }
    Ok(())
}

/// Asserts [`check_canned`].
#[track_caller]
pub fn assert_canned(all: &[u8], reason: &str) {
    if let Err(e) = check_canned(all, reason) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted HTTP origin
// ---------------------------------------------------------------------------------------------

/// What an [`Origin`] received.
#[derive(Clone, Debug, Default)]
pub struct OriginLog {
    /// Connections accepted.
    pub connections: usize,
    /// Every byte received, per connection, in arrival order.
    pub received: Vec<Vec<u8>>,
    /// Each complete request read by the handler (head + raw body), in order.
    pub requests: Vec<Vec<u8>>,
    /// Connection index of each entry of `requests`.
    pub request_conn: Vec<usize>,
    /// Connections on which the handler saw EOF from the proxy.
    pub eofs: usize,
    /// Free-form marks the handler recorded (`OriginConn::mark`).
    pub marks: Vec<String>,
}

struct Shared<T> {
    log: Mutex<T>,
    cv: Condvar,
}

impl<T: Clone> Shared<T> {
    fn new(t: T) -> Arc<Self> {
        Arc::new(Shared {
            log: Mutex::new(t),
            cv: Condvar::new(),
        })
    }

    fn update(&self, f: impl FnOnce(&mut T)) {
        f(&mut self.log.lock().unwrap());
        self.cv.notify_all();
    }

    fn snapshot(&self) -> T {
        self.log.lock().unwrap().clone()
    }

    fn wait(&self, timeout: Duration, what: &str, pred: impl Fn(&T) -> bool) -> T
    where
        T: std::fmt::Debug,
    {
        let deadline = Instant::now() + timeout;
        let mut g = self.log.lock().unwrap();
        loop {
            if pred(&g) {
                return g.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; state: {:?}",
                    *g
                );
            }
            g = self.cv.wait_timeout(g, left).unwrap().0;
        }
    }
}

/// The origin's side of one accepted connection, handed to the handler.
pub struct OriginConn {
    pub conn: Conn,
    /// Index of this connection (0 = first accepted).
    pub index: usize,
    shared: Arc<Shared<OriginLog>>,
}

impl OriginConn {
    /// Reads one request and records it. `None` on EOF, timeout or error (also recorded as EOF
    /// when clean).
    pub fn read_request(&mut self) -> Option<Vec<u8>> {
        match self.conn.try_read_request() {
            Ok(Some(r)) => {
                self.record(&r);
                Some(r)
            }
            Ok(None) => {
                self.shared.update(|l| l.eofs += 1);
                None
            }
            Err(_) => None,
        }
    }

    /// Reads just a request head (not recorded as a request; see [`OriginConn::record`]).
    pub fn read_head(&mut self) -> Option<Vec<u8>> {
        self.conn.try_read_head().ok().flatten()
    }

    /// Reads the body that belongs to a request head.
    pub fn read_body(&mut self, head: &[u8]) -> Option<Vec<u8>> {
        self.conn.try_read_body(head, BodyKind::Request).ok()
    }

    /// Records a request in the log (done by [`OriginConn::read_request`]).
    pub fn record(&self, request: &[u8]) {
        let (r, i) = (request.to_vec(), self.index);
        self.shared.update(|l| {
            l.requests.push(r);
            l.request_conn.push(i);
        });
    }

    /// Records a free-form mark, e.g. "sent 100".
    pub fn mark(&self, m: &str) {
        let m = m.to_string();
        self.shared.update(|l| l.marks.push(m));
    }

    /// Writes bytes; false on error.
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.conn.stream.write_all(bytes).is_ok()
    }
}

type Handler = dyn Fn(&mut OriginConn) + Send + Sync;

/// A scripted HTTP origin on loopback. Each accepted connection runs `handler` on its own
/// thread; every received byte is recorded. Stops accepting on drop.
pub struct Origin {
    pub addr: SocketAddr,
    shared: Arc<Shared<OriginLog>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Origin {
    /// Starts on 127.0.0.1:0 with a per-connection handler.
    pub fn start(handler: impl Fn(&mut OriginConn) + Send + Sync + 'static) -> Origin {
        Origin::start_on("127.0.0.1:0", handler)
    }

    /// Starts on `bind` (e.g. `[::1]:0`) with a per-connection handler.
    pub fn start_on(
        bind: &str,
        handler: impl Fn(&mut OriginConn) + Send + Sync + 'static,
    ) -> Origin {
        let listener =
            TcpListener::bind(bind).unwrap_or_else(|e| panic!("origin bind {bind}: {e}"));
        let addr = listener.local_addr().unwrap();
        let shared = Shared::new(OriginLog::default());
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (sh, st) = (shared.clone(), stop.clone());
        let acceptor = thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let mut index = 0;
                sh.update(|l| {
                    index = l.connections;
                    l.connections += 1;
                    l.received.push(Vec::new());
                });
                let mut conn = Conn::new(stream);
                let tap_shared = sh.clone();
                conn.tap = Some(Box::new(move |b: &[u8]| {
                    let b = b.to_vec();
                    tap_shared.update(|l| l.received[index].extend_from_slice(&b));
                }));
                let mut oc = OriginConn {
                    conn,
                    index,
                    shared: sh.clone(),
                };
                let h = handler.clone();
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || h(&mut oc))
                    .expect("spawn origin connection thread");
            }
        });
        Origin {
            addr,
            shared,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Answers every request on every connection with `response`, keeping connections open.
    pub fn fixed(response: &[u8]) -> Origin {
        Origin::fixed_on("127.0.0.1:0", response)
    }

    /// [`Origin::fixed`] bound to `bind` (e.g. `[::1]:0`).
    pub fn fixed_on(bind: &str, response: &[u8]) -> Origin {
        let response = response.to_vec();
        Origin::start_on(bind, move |c| {
            while c.read_request().is_some() {
                if !c.write(&response) {
                    break;
                }
            }
        })
    }

    /// Answers each request (across all connections, in arrival order) with the next response
    /// of `responses`; once they run out, closes the connection instead.
    pub fn script(responses: Vec<Vec<u8>>) -> Origin {
        let next = Arc::new(AtomicUsize::new(0));
        Origin::start(move |c| {
            while c.read_request().is_some() {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(r) = responses.get(i) else { break };
                if !c.write(r) {
                    break;
                }
            }
        })
    }

    /// Answers each request with `f(request)`, keeping connections open.
    pub fn reply_with(f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> Origin {
        Origin::start(move |c| {
            while let Some(req) = c.read_request() {
                if !c.write(&f(&req)) {
                    break;
                }
            }
        })
    }

    /// A copy of the log so far.
    pub fn log(&self) -> OriginLog {
        self.shared.snapshot()
    }

    /// Waits (up to `timeout`) until `pred(log)`; panics with the log on timeout.
    pub fn wait(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&OriginLog) -> bool,
    ) -> OriginLog {
        self.shared.wait(timeout, what, pred)
    }

    /// Waits until `n` requests were read.
    pub fn wait_requests(&self, n: usize) -> OriginLog {
        self.wait(WAIT, &format!("{n} request(s) at the origin"), |l| {
            l.requests.len() >= n
        })
    }

    /// `http://ADDR` (IPv6 in brackets).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `ADDR` as used in a Host header.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Echo / sink server for tunnels
// ---------------------------------------------------------------------------------------------

/// How an [`EchoServer`] treats each connection.
#[derive(Clone, Debug)]
pub enum EchoMode {
    /// Echo every byte; on EOF from the peer, shut down writing (after echoing all) and close.
    Echo,
    /// Send these bytes, shut down writing at once, then read (and record) until EOF.
    GreetThenSink(Vec<u8>),
}

/// What an [`EchoServer`] saw, per connection.
#[derive(Clone, Debug, Default)]
pub struct EchoLog {
    pub connections: usize,
    pub received: Vec<Vec<u8>>,
    /// EOF seen from the peer (its shutdown(Write) reached us).
    pub eof: Vec<bool>,
    /// We shut down our writing side.
    pub closed: Vec<bool>,
}

/// The upstream end of CONNECT tunnels.
pub struct EchoServer {
    pub addr: SocketAddr,
    shared: Arc<Shared<EchoLog>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Starts on 127.0.0.1:0.
    pub fn start(mode: EchoMode) -> EchoServer {
        EchoServer::start_on("127.0.0.1:0", mode)
    }

    /// Starts on `bind` (e.g. `[::1]:0`).
    pub fn start_on(bind: &str, mode: EchoMode) -> EchoServer {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("echo bind {bind}: {e}"));
        let addr = listener.local_addr().unwrap();
        let shared = Shared::new(EchoLog::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        let acceptor = thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = stream else { continue };
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut i = 0;
                sh.update(|l| {
                    i = l.connections;
                    l.connections += 1;
                    l.received.push(Vec::new());
                    l.eof.push(false);
                    l.closed.push(false);
                });
                let (sh, mode) = (sh.clone(), mode.clone());
                thread::spawn(move || {
                    if let EchoMode::GreetThenSink(g) = &mode {
                        if s.write_all(g).is_err() {
                            return;
                        }
                        let _ = s.shutdown(Shutdown::Write);
                        sh.update(|l| l.closed[i] = true);
                    }
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                sh.update(|l| l.eof[i] = true);
                                if let EchoMode::Echo = mode {
                                    let _ = s.shutdown(Shutdown::Write);
                                    sh.update(|l| l.closed[i] = true);
                                }
                                return;
                            }
                            Ok(n) => {
                                let data = buf[..n].to_vec();
                                sh.update(|l| l.received[i].extend_from_slice(&data));
                                if let EchoMode::Echo = mode {
                                    if s.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        EchoServer {
            addr,
            shared,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn log(&self) -> EchoLog {
        self.shared.snapshot()
    }

    /// Waits (up to `timeout`) until `pred(log)`; panics with the log on timeout.
    pub fn wait(&self, timeout: Duration, what: &str, pred: impl Fn(&EchoLog) -> bool) -> EchoLog {
        self.shared.wait(timeout, what, pred)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS origin (openssl s_server)
// ---------------------------------------------------------------------------------------------

/// `openssl s_server -www` on 127.0.0.1 with a throwaway self-signed EC certificate.
/// Answers `GET /` with `HTTP/1.0 200 ok` and an HTML status page naming `s_server`.
pub struct TlsOrigin {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl TlsOrigin {
    pub fn start() -> TlsOrigin {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-e2e-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let out = Command::new("openssl")
            .current_dir(&dir)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .args([
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run openssl req (is openssl installed?)");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A free port can be taken by someone else between probe and bind: retry a few times.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("openssl")
                .current_dir(&dir)
                .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
                .args(["-cert", "cert.pem", "-key", "key.pem", "-www"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn openssl s_server");
            let (tx, rx) = mpsc::channel();
            let stdout = child.stdout.take().unwrap();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
            let deadline = Instant::now() + WAIT;
            let ready = loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(l) if l.trim() == "ACCEPT" => break true,
                    Ok(_) => {}
                    Err(_) => break false,
                }
            };
            if ready {
                return TlsOrigin { port, child, dir };
            }
            let _ = child.kill();
            let out = wait_output(child, WAIT, "openssl s_server");
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("openssl s_server did not start: {last}");
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses that refuse or hang
// ---------------------------------------------------------------------------------------------

/// A loopback port nobody listens on (bound then released), so connects are refused.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback address where TCP connects hang: a listener with backlog 1 that never accepts,
/// whose accept queue the harness fills with its own connections. Linux drops SYNs to a listener
/// whose accept queue is full, so a further dial gets no SYN-ACK until the client gives up.
pub struct BlackHole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // std listens with a large backlog; listen(2) again on a listening socket only changes it.
        // SAFETY: a valid listening fd we own.
        let rc = unsafe { listen(listener.as_raw_fd(), 1) };
        assert_eq!(rc, 0, "listen(fd, 1): {}", io::Error::last_os_error());
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..64 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    return BlackHole {
                        addr,
                        _listener: listener,
                        _fillers: fillers,
                    };
                }
                Err(e) => panic!("filling the accept queue of {addr}: {e}"),
            }
        }
        panic!("64 connects to a backlog-1 listener all completed: cannot make a dial hang");
    }

    /// Ends the black hole: closes the filler connections and returns the listener plus the
    /// fillers' local addresses. Connects that were being retried (their SYNs dropped) get
    /// through once the test accepts the queued fillers; they are the accepted streams whose
    /// peer is not a filler.
    pub fn into_listener(self) -> (TcpListener, Vec<SocketAddr>) {
        let fillers = self
            ._fillers
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect();
        (self._listener, fillers)
    }
}

/// The system-wide count of SYNs dropped because a listener's accept queue was full
/// (`TcpExt: ListenOverflows` in /proc/net/netstat). Rises when a dial to a [`BlackHole`] stalls.
pub fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------------------

/// The proxy environment variables a client must not pick up: a test names its proxy
/// itself, and one from the environment would send traffic off loopback.
pub const PROXY_ENV: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Runs `curl -sS --max-time 20 ARGS` with proxy environment variables removed.
pub fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    for v in PROXY_ENV {
        cmd.env_remove(v);
    }
    let child = cmd
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn curl (is curl installed?)");
    wait_output(child, Duration::from_secs(30), "curl")
}

/// Whether IPv6 loopback is usable here.
pub fn ipv6_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

#[cfg(test)]
mod tests {
    //! Self-tests of the harness that need no ringway binary.
    use super::*;

    #[test]
    fn scripted_origin_records_bytes_and_connections() {
        let origin = Origin::script(vec![message(
            &["HTTP/1.1 200 OK", "Content-Length: 2"],
            b"hi",
        )]);
        let mut c = Conn::connect(origin.addr);
        let req = message(
            &["POST /x HTTP/1.1", "Host: a", "Content-Length: 3"],
            b"abc",
        );
        c.write(&req);
        let resp = c.read_response("POST");
        assert_bytes(
            &resp,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            "response",
        );
        // Script exhausted: the next request gets a close.
        c.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        c.expect_eof();
        let log = origin.wait_requests(2);
        assert_eq!(log.connections, 1);
        assert_bytes(&log.requests[0], &req, "recorded request");
        let mut all = req.clone();
        all.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_bytes(&log.received[0], &all, "received bytes");
    }

    #[test]
    fn origin_reads_chunked_requests_and_counts_connections() {
        let origin = Origin::fixed(b"HTTP/1.1 204 No Content\r\n\r\n");
        for _ in 0..3 {
            let mut c = Conn::connect(origin.addr);
            c.write(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n");
            let r = c.read_response("POST");
            assert_bytes(&r, b"HTTP/1.1 204 No Content\r\n\r\n", "204");
        }
        let log = origin.wait_requests(3);
        assert_eq!(log.connections, 3);
        let (_, body) = split_message(&log.requests[0]);
        assert_eq!(dechunk(body), b"abc");
    }

    #[test]
    fn echo_half_close_both_ways() {
        let echo = EchoServer::start(EchoMode::Echo);
        let mut c = Conn::connect(echo.addr);
        c.write(b"hello");
        assert_eq!(c.read_exact(5), b"hello");
        c.write(b" world");
        c.shutdown_write();
        assert_eq!(c.read_to_eof(), b" world");
        let log = echo.wait(WAIT, "eof", |l| l.eof[0] && l.closed[0]);
        assert_eq!(log.received[0], b"hello world");

        let sink = EchoServer::start(EchoMode::GreetThenSink(b"hey".to_vec()));
        let mut c = Conn::connect(sink.addr);
        assert_eq!(c.read_to_eof(), b"hey");
        c.write(b"late");
        c.shutdown_write();
        let log = sink.wait(WAIT, "sink eof", |l| l.eof.first() == Some(&true));
        assert_eq!(log.received[0], b"late");
    }

    #[test]
    fn response_framing() {
        let origin = Origin::script(vec![
            message(
                &["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"],
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            message(&["HTTP/1.1 200 OK", "Content-Length: 100"], b""),
            message(&["HTTP/1.0 200 OK"], b"until close"),
        ]);
        let mut c = Conn::connect(origin.addr);
        c.write(b"GET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        let r1 = c.read_response("GET");
        let (_, b1) = split_message(&r1);
        assert_eq!(dechunk(b1), b"hello");
        let r2 = c.read_response("HEAD");
        assert!(r2.ends_with(b"Content-Length: 100\r\n\r\n"));
        // A fourth request exhausts the script, so the origin closes, ending the third response.
        c.write(b"GET / HTTP/1.1\r\n\r\n");
        let r3 = c.read_response("GET");
        assert!(r3.ends_with(b"until close"), "{}", show(&r3));
    }

    #[test]
    fn canned_checker() {
        // Two answers written out byte for byte, so the builder itself is checked.
        let ok = b"HTTP/1.1 502 Bad Gateway\r\nProxy-Status: ringway; error=connection_refused\r\nContent-Type: text/plain\r\nContent-Length: 42\r\nConnection: close\r\n\r\nThe upstream server could not be reached.\n";
        assert_canned(ok, "dial_failed");
        assert_bytes(
            &canned_answer("auth_required", true),
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"ringway\"\r\nProxy-Status: ringway; error=http_request_denied\r\nContent-Type: text/plain\r\nContent-Length: 72\r\nConnection: close\r\n\r\n",
            "407 to a HEAD request",
        );
        assert!(
            check_canned(&ok[..ok.len() - 1], "dial_failed").is_err(),
            "short body must fail"
        );
        assert!(
            check_canned(&[&ok[..], b"x"].concat(), "dial_failed").is_err(),
            "a byte after the answer must fail"
        );
        assert!(
            check_canned(ok, "bad_response").is_err(),
            "same status, other text must fail"
        );
        let mut words: Vec<&str> = CANNED.iter().map(|(w, _, _, _)| *w).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), CANNED.len(), "each reason word once");
    }

    #[test]
    fn banner_parsing() {
        let a = parse_banner(
            "ringway listening on 127.0.0.1:41234 (io_uring, 1 thread)",
            Driver::Uring,
        )
        .unwrap();
        assert_eq!(a, vec!["127.0.0.1:41234".parse().unwrap()]);
        let a = parse_banner(
            "ringway listening on 127.0.0.1:1, [::1]:2 (epoll, 2 threads)",
            Driver::Epoll,
        )
        .unwrap();
        assert_eq!(a.len(), 2);
        assert!(parse_banner(
            "ringway listening on 127.0.0.1:1 (epoll, 1 thread)",
            Driver::Uring
        )
        .is_err());
        assert!(parse_banner(
            "ringway listening on 127.0.0.1:1 (epoll, 2 thread)",
            Driver::Epoll
        )
        .is_err());
    }

    #[test]
    fn access_line_parsing() {
        let a = AccessLine::parse(
            "2026-12-01T17:25:18.123Z 127.0.0.1:50312 GET http://127.0.0.1:8080/a 200 78 1234 0.532ms",
        )
        .unwrap();
        assert_eq!(
            (a.ts.as_str(), a.method.as_str(), a.status, a.rx, a.tx),
            ("2026-12-01T17:25:18.123Z", "GET", 200, 78, 1234)
        );
        let a = AccessLine::parse(
            "2026-12-01T17:25:18.123Z 127.0.0.1:1 CONNECT h:443 502 0 0 1.000ms reason=refused",
        )
        .unwrap();
        assert_eq!(a.extra, vec!["reason=refused".to_string()]);
        assert!(AccessLine::parse("ringway listening on x (epoll, 1 thread)").is_none());
        for bad_ts in [
            "127.0.0.1:1 GET h 200 0 0 1.000ms",
            "2026-12-01T17:25:18Z 127.0.0.1:1 GET h 200 0 0 1.000ms",
            "2026-12-01 17:25:18.123Z 127.0.0.1:1 GET h 200 0 0 1.000ms",
            "2026-13-01T17:25:18.123Z 127.0.0.1:1 GET h 200 0 0 1.000ms",
            "2026-12-01T17:25:18.123+00:00 127.0.0.1:1 GET h 200 0 0 1.000ms",
        ] {
            assert!(AccessLine::parse(bad_ts).is_none(), "{bad_ts}");
        }
    }

    #[test]
    fn black_hole_makes_connects_hang() {
        let hole = BlackHole::start();
        let t = Instant::now();
        let r = TcpStream::connect_timeout(&hole.addr, Duration::from_millis(500));
        assert!(r.is_err(), "connect to a full accept queue should hang");
        assert!(t.elapsed() >= Duration::from_millis(450));
    }

    #[test]
    fn reset_sends_rst() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        reset(s);
        let mut c = Conn::new(c);
        assert!(c.read_to_eof().is_empty());
        assert!(c.reset, "the peer should see ECONNRESET");
    }

    #[test]
    fn free_port_refuses() {
        let p = free_port();
        let e = TcpStream::connect(("127.0.0.1", p)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn tls_origin_serves_through_curl() {
        let tls = TlsOrigin::start();
        let out = curl(&["-k", &format!("https://127.0.0.1:{}/", tls.port)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("s_server"));
    }
}
