//! `tunnel-load soak`: the load side of `bench/soak` — a long mixed run through one proxy in
//! which every answer is checked.
//!
//! `--connections` worker threads share one request counter and run until `--requests`
//! operations are done. Operation `i` is chosen by `i % 100`, so the mix is exact:
//!
//! - 80: a keep-alive `GET /1k` on the worker's persistent client connection; the answer must be
//!   `200` with `Content-Length: 1024` and the exact bytes of the origin's file;
//! - 1: a `GET /1m` on a fresh connection, aborted halfway: the head must be `200` with
//!   `Content-Length: 1048576`, the first 512 KiB must equal the file, then the client closes
//!   with the rest unread;
//! - 10: a CONNECT tunnel on a fresh connection to an in-process echo target: `200`, then 4 KiB
//!   sent and the same 4 KiB read back; every other tunnel the *client* then closes, the others
//!   ask the target to close and the client must see the end of the stream;
//! - 9: a request the proxy must refuse, in turn: an absolute-form GET to `127.0.0.2` (loopback,
//!   outside the proxy's `--allow-range 127.0.0.1/32`), a GET to `localhost` (a
//!   `--deny-domain localhost` name; should the rule fail, the name still resolves to
//!   loopback), and a CONNECT to `127.0.0.2`: each must be answered `403` and closed.
//!
//! Every target is on loopback, whatever the proxy does. A wrong answer is counted with its
//! reason (the first ones are printed) and the run goes on; the process exits 1 if any operation
//! failed. Progress goes to stderr every 10 s; the summary is one JSON line on stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes sent through each tunnel (and echoed back).
const TUNNEL_BYTES: usize = 4096;
/// How much of the 1 MiB download is read before the client aborts.
const ABORT_AFTER: usize = 512 * 1024;
/// Socket timeout: a stalled proxy fails the operation instead of hanging the soak.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Failure messages kept for the summary.
const KEEP_ERRORS: usize = 20;

/// What the soak needs to know, from the command line.
pub struct SoakConfig {
    pub proxy: SocketAddr,
    pub origin: SocketAddr,
    pub body_1k: Vec<u8>,
    pub body_1m: Vec<u8>,
    pub requests: u64,
    pub connections: usize,
    pub timeout: Duration,
}

#[derive(Default)]
struct Counters {
    get: AtomicU64,
    abort: AtomicU64,
    tunnel_client_close: AtomicU64,
    tunnel_target_close: AtomicU64,
    refused_ip: AtomicU64,
    refused_name: AtomicU64,
    refused_connect: AtomicU64,
    failed: AtomicU64,
    new_connections: AtomicU64,
}

struct Shared {
    config: SoakConfig,
    echo: SocketAddr,
    next: AtomicU64,
    done: AtomicU64,
    counters: Counters,
    errors: Mutex<Vec<String>>,
    deadline: Instant,
}

/// One client connection with its read buffer (kept across keep-alive requests).
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn open(shared: &Shared) -> Result<Client, String> {
        let stream =
            TcpStream::connect(shared.config.proxy).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
        stream.set_nodelay(true).ok();
        shared
            .counters
            .new_connections
            .fetch_add(1, Ordering::Relaxed);
        Ok(Client {
            reader: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.reader
            .get_mut()
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads a response head: status, Content-Length, whether it announced `Connection: close`.
    fn head(&mut self) -> Result<(u16, Option<usize>, bool), String> {
        let mut line = String::new();
        let mut status = None;
        let mut length = None;
        let mut close = false;
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("reading the head: {e}"))?;
            if n == 0 {
                return Err("connection closed inside the response head".into());
            }
            if status.is_none() {
                let code = line
                    .strip_prefix("HTTP/1.1 ")
                    .and_then(|r| r.get(..3))
                    .and_then(|c| c.parse::<u16>().ok())
                    .ok_or_else(|| format!("bad status line {line:?}"))?;
                status = Some(code);
                continue;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse().map_err(|_| format!("bad length {value:?}"))?);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        Ok((status.unwrap_or(0), length, close))
    }

    /// Reads exactly `want.len()` body bytes and compares them with `want`.
    fn body_equals(&mut self, want: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
        scratch.resize(want.len(), 0);
        self.reader
            .read_exact(scratch)
            .map_err(|e| format!("reading {} body bytes: {e}", want.len()))?;
        if scratch[..] != want[..] {
            let at = scratch
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("body differs from the origin's file at byte {at}"));
        }
        Ok(())
    }

    /// After a refusal the proxy must close: skip the body, then expect end of stream.
    fn expect_refusal_then_eof(&mut self) -> Result<(), String> {
        let (status, length, close) = self.head()?;
        if status != 403 {
            return Err(format!("refusal expected, got {status}"));
        }
        if !close {
            return Err("403 without Connection: close".into());
        }
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .map_err(|e| format!("waiting for the close after 403: {e}"))?;
        if Some(rest.len()) != length {
            return Err(format!(
                "403 body {} bytes, Content-Length {length:?}",
                rest.len()
            ));
        }
        Ok(())
    }
}

fn fail(shared: &Shared, what: &str, i: u64, e: String) {
    shared.counters.failed.fetch_add(1, Ordering::Relaxed);
    let mut errors = shared.errors.lock().unwrap();
    if errors.len() < KEEP_ERRORS {
        let msg = format!("operation {i} ({what}): {e}");
        eprintln!("soak: {msg}");
        errors.push(msg);
    }
}

fn get_1k(shared: &Shared, conn: &mut Option<Client>, scratch: &mut Vec<u8>) -> Result<(), String> {
    if conn.is_none() {
        *conn = Some(Client::open(shared)?);
    }
    let client = conn.as_mut().unwrap();
    let origin = shared.config.origin;
    let request = format!("GET http://{origin}/1k HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let result = (|| {
        client.send(request.as_bytes())?;
        let (status, length, close) = client.head()?;
        if status != 200 || length != Some(1024) {
            return Err(format!(
                "GET /1k answered {status}, Content-Length {length:?}"
            ));
        }
        client.body_equals(&shared.config.body_1k, scratch)?;
        Ok(close)
    })();
    match result {
        Ok(false) => Ok(()),
        Ok(true) => {
            *conn = None; // the proxy may close a keep-alive connection; say so in the count
            Err("keep-alive GET answered with Connection: close".into())
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

fn get_1m_aborted(shared: &Shared, scratch: &mut Vec<u8>) -> Result<(), String> {
    let mut client = Client::open(shared)?;
    let origin = shared.config.origin;
    client.send(format!("GET http://{origin}/1m HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())?;
    let (status, length, _) = client.head()?;
    if status != 200 || length != Some(1 << 20) {
        return Err(format!(
            "GET /1m answered {status}, Content-Length {length:?}"
        ));
    }
    client.body_equals(&shared.config.body_1m[..ABORT_AFTER], scratch)?;
    Ok(()) // dropped here, half the body unread: the client aborts
}

fn tunnel(shared: &Shared, i: u64, target_closes: bool) -> Result<(), String> {
    let mut client = Client::open(shared)?;
    let echo = shared.echo;
    client.send(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())?;
    let (status, _, _) = client.head()?;
    if status != 200 {
        return Err(format!("CONNECT answered {status}"));
    }
    let mut payload = [0u8; TUNNEL_BYTES];
    for (k, b) in payload.iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(k * 7) as u8;
    }
    payload[0] = if target_closes { b'C' } else { b'K' };
    client.send(&payload)?;
    let mut back = [0u8; TUNNEL_BYTES];
    client
        .reader
        .read_exact(&mut back)
        .map_err(|e| format!("reading the echo: {e}"))?;
    if back != payload {
        return Err("the echo differs from what was sent".into());
    }
    if target_closes {
        let mut rest = Vec::new();
        client
            .reader
            .read_to_end(&mut rest)
            .map_err(|e| format!("waiting for the target's close: {e}"))?;
        if !rest.is_empty() {
            return Err(format!("{} bytes after the echo", rest.len()));
        }
    } else {
        client.reader.get_ref().shutdown(Shutdown::Both).ok();
    }
    Ok(())
}

fn refused(shared: &Shared, kind: u64) -> Result<(), String> {
    let mut client = Client::open(shared)?;
    let port = shared.config.origin.port();
    let request = match kind {
        0 => format!("GET http://127.0.0.2:{port}/1k HTTP/1.1\r\nHost: 127.0.0.2:{port}\r\n\r\n"),
        1 => format!("GET http://localhost:{port}/1k HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
        _ => format!("CONNECT 127.0.0.2:{port} HTTP/1.1\r\nHost: 127.0.0.2:{port}\r\n\r\n"),
    };
    client.send(request.as_bytes())?;
    client.expect_refusal_then_eof()
}

fn worker(shared: Arc<Shared>) {
    let mut conn: Option<Client> = None;
    let mut scratch = Vec::with_capacity(1 << 20);
    let c = &shared.counters;
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.config.requests || Instant::now() > shared.deadline {
            break;
        }
        let slot = i % 100;
        let (what, result, counter) = match slot {
            0..=79 => (
                "keep-alive GET /1k",
                get_1k(&shared, &mut conn, &mut scratch),
                &c.get,
            ),
            80 => (
                "GET /1m aborted halfway",
                get_1m_aborted(&shared, &mut scratch),
                &c.abort,
            ),
            81..=90 if slot % 2 == 0 => (
                "CONNECT, target closes",
                tunnel(&shared, i, true),
                &c.tunnel_target_close,
            ),
            81..=90 => (
                "CONNECT, client closes",
                tunnel(&shared, i, false),
                &c.tunnel_client_close,
            ),
            _ => {
                let kind = (i / 100 + slot) % 3;
                let counter = [&c.refused_ip, &c.refused_name, &c.refused_connect][kind as usize];
                ("refused", refused(&shared, kind), counter)
            }
        };
        match result {
            Ok(()) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => fail(&shared, what, i, e),
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The CONNECT target: echoes exactly one 4 KiB message; a message starting with `C` makes it
/// close right after the echo, otherwise it waits for the client's close.
fn echo_target(listener: TcpListener, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut stream) = stream else { continue };
        thread::spawn(move || {
            stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
            stream.set_nodelay(true).ok();
            let mut message = [0u8; TUNNEL_BYTES];
            if stream.read_exact(&mut message).is_err() || stream.write_all(&message).is_err() {
                return;
            }
            if message[0] != b'C' {
                let mut sink = [0u8; 512];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            }
            // dropped: the target closes
        });
    }
}

/// Runs the soak; returns the JSON summary line, or the summary as the error if any
/// operation failed.
pub fn soak(config: SoakConfig) -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("echo target: {e}"))?;
    let echo = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let echo_thread = {
        let stop = stop.clone();
        thread::spawn(move || echo_target(listener, stop))
    };
    let started = Instant::now();
    let connections = config.connections;
    let shared = Arc::new(Shared {
        deadline: started + config.timeout,
        config,
        echo,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        counters: Counters::default(),
        errors: Mutex::new(Vec::new()),
    });
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let shared = shared.clone();
            thread::spawn(move || worker(shared))
        })
        .collect();
    let total = shared.config.requests;
    let mut last_report = Instant::now();
    while shared.done.load(Ordering::Relaxed) < total && Instant::now() < shared.deadline {
        thread::sleep(Duration::from_millis(200));
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let done = shared.done.load(Ordering::Relaxed);
            eprintln!(
                "soak: {done} of {total} operations after {:.0} s, {} failed",
                started.elapsed().as_secs_f64(),
                shared.counters.failed.load(Ordering::Relaxed)
            );
        }
    }
    for w in workers {
        w.join().map_err(|_| "a worker panicked".to_string())?;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    drop(TcpStream::connect(echo)); // wake the accept loop so it sees `stop`
    echo_thread.join().ok();
    let c = &shared.counters;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let done = n(&shared.done);
    let failed = n(&c.failed);
    let errors = shared.errors.lock().unwrap();
    let json = format!(
        "{{\"operations\":{done},\"seconds\":{seconds:.1},\"ok\":{{\"get_1k\":{},\"get_1m_aborted\":{},\
         \"tunnel_client_close\":{},\"tunnel_target_close\":{},\"refused_ip\":{},\"refused_name\":{},\
         \"refused_connect\":{}}},\"failed\":{failed},\"new_connections\":{},\"errors\":[{}]}}",
        n(&c.get),
        n(&c.abort),
        n(&c.tunnel_client_close),
        n(&c.tunnel_target_close),
        n(&c.refused_ip),
        n(&c.refused_name),
        n(&c.refused_connect),
        n(&c.new_connections),
        errors
            .iter()
            .map(|e| format!("{:?}", e))
            .collect::<Vec<_>>()
            .join(",")
    );
    if failed > 0 || done < total {
        Err(json)
    } else {
        Ok(json)
    }
}
