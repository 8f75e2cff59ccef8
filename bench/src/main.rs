//! `tunnel-load`: the load tools behind `bench/run` that wrk cannot be.
//!
//! Subcommands (all traffic stays on loopback, every loop is bounded by a
//! byte or connection count *and* a wall-clock `--timeout`):
//!
//! - `throughput --proxy ADDR|direct [--tunnels 8] [--bytes N] [--busy-cpu 0]`:
//!   starts an in-process source/sink on 127.0.0.1, opens `--tunnels` CONNECT
//!   tunnels to it through the proxy and moves `--bytes` bytes *each way* in
//!   every tunnel. Each (tunnel, direction) carries its own deterministic
//!   pattern and both ends verify every byte, so a proxy that mixes, drops,
//!   duplicates or reorders data fails instead of looking fast. Prints one JSON
//!   line with the rate and the busy fraction of `--busy-cpu` sampled from
//!   /proc/stat over the transfer.
//! - `hold-sink`: accept TCP connections on 127.0.0.1 and hold them, idle.
//! - `hold-tunnels --proxy ADDR --target ADDR --count N`: open N idle CONNECT
//!   tunnels (each answered 200) and hold them.
//! - `hold-http --proxy ADDR --url http://HOST:PORT/PATH --count N`: open N
//!   client connections, each does one absolute-form GET (2xx, full body read)
//!   and then stays idle, open.
//!
//! - `tls-load`, `tls-hold`, `tls-leaf`: HTTPS through the proxy (CONNECT, then a rustls
//!   client trusting `--ca`), for the TLS interception phases (see the `tls` module).
//!
//! - `soak --proxy ADDR --origin ADDR --files DIR [--requests 1000000] [--connections 64]`:
//!   the mixed, fully checked load of `bench/soak` (see the `soak` module).
//!
//! The `hold-*` commands print `ready N` (or `listening ADDR`) on stdout and
//! then hold until stdin reaches EOF or `--timeout` passes.
//!
//! Errors: anything unexpected (socket error, non-2xx, corrupted byte, short
//! stream, timeout) is printed on stderr and the process exits non-zero.

mod soak;
mod tls;
mod tls_load;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// The pattern repeats with a prime period, so a chunk that is duplicated or
/// skipped by any power-of-two amount still lands on different bytes.
const PERIOD: usize = 1_048_573;
/// Largest write or read in one call (256 KiB moved ~25% more than 64 KiB
/// through the direct baseline: fewer syscalls on the load core, which caps
/// every CONNECT column); the pattern buffer holds PERIOD + CHUNK
/// bytes so any chunk starting anywhere in the period is one contiguous slice.
const CHUNK: usize = 256 * 1024;
const MAGIC: &[u8; 8] = b"RWTUNNEL";
const HEADER_LEN: usize = 24;
/// How many connections are dialled before their answers are read.
const BATCH: usize = 64;

/// Direction of a byte stream inside a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// client -> proxy -> sink
    Up,
    /// source -> proxy -> client
    Down,
}

/// The deterministic byte stream of one (tunnel, direction): byte `i` of the
/// stream is `bytes[i % PERIOD]`.
struct Pattern {
    bytes: Vec<u8>,
}

impl Pattern {
    fn new(tunnel: u64, direction: Direction) -> Pattern {
        // splitmix64, seeded per stream so tunnels and directions differ.
        let mut state = 0x9E37_79B9_7F4A_7C15u64
            ^ tunnel.wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ if direction == Direction::Up {
                0x5555
            } else {
                0xAAAA_0000
            };
        let mut bytes = Vec::with_capacity(PERIOD + CHUNK + 8);
        while bytes.len() < PERIOD {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            bytes.extend_from_slice(&z.to_le_bytes());
        }
        bytes.truncate(PERIOD);
        let wrap = bytes[..CHUNK].to_vec();
        bytes.extend_from_slice(&wrap);
        Pattern { bytes }
    }

    /// The `len` (<= CHUNK) stream bytes starting at stream offset `offset`.
    fn slice(&self, offset: u64, len: usize) -> &[u8] {
        debug_assert!(len <= CHUNK);
        let start = (offset % PERIOD as u64) as usize;
        &self.bytes[start..start + len]
    }

    /// Checks `got`, received at stream offset `offset`; on a mismatch returns
    /// the stream offset of the first wrong byte.
    fn verify(&self, offset: u64, got: &[u8]) -> Result<(), u64> {
        let want = self.slice(offset, got.len());
        if want == got {
            return Ok(());
        }
        let first = want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
        Err(offset + first as u64)
    }
}

/// Writes `total` pattern bytes to `stream`.
fn send_pattern(stream: &mut TcpStream, pattern: &Pattern, total: u64) -> Result<(), String> {
    let mut sent = 0u64;
    while sent < total {
        let len = (total - sent).min(CHUNK as u64) as usize;
        match stream.write(pattern.slice(sent, len)) {
            Ok(0) => return Err(format!("write returned 0 after {sent} bytes")),
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write failed after {sent} bytes: {e}")),
        }
    }
    Ok(())
}

/// Reads exactly `total` bytes from `stream`, verifying every one.
fn receive_pattern(stream: &mut TcpStream, pattern: &Pattern, total: u64) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    while received < total {
        let want = (total - received).min(CHUNK as u64) as usize;
        match stream.read(&mut buf[..want]) {
            Ok(0) => return Err(format!("stream ended after {received} of {total} bytes")),
            Ok(n) => {
                if let Err(at) = pattern.verify(received, &buf[..n]) {
                    return Err(format!("corrupted data at stream offset {at}"));
                }
                received += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "read failed after {received} bytes: {}",
                    io_error(&e)
                ))
            }
        }
    }
    Ok(())
}

/// Reads a response head one byte at a time (so no tunnel byte is consumed)
/// and returns its status code.
fn read_head_exact(stream: &mut TcpStream) -> Result<(u16, String), String> {
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err("response head larger than 16 KiB".into());
        }
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "connection closed inside the response head ({:?})",
                    String::from_utf8_lossy(&head)
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the response head: {}", io_error(&e))),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    Ok((status_of(&text)?, text))
}

/// A socket timeout shows up as EAGAIN ("Resource temporarily unavailable");
/// say what it means.
fn io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "timed out waiting for the proxy".to_string()
        }
        _ => e.to_string(),
    }
}

fn status_of(head: &str) -> Result<u16, String> {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x answer: {line:?}"));
    }
    code.parse::<u16>()
        .map_err(|_| format!("bad status line: {line:?}"))
}

fn connect_request(target: &str) -> String {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
}

/// One CPU's (busy, total) jiffies from /proc/stat.
fn cpu_jiffies(cpu: usize) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu} ");
    let line = stat.lines().find(|l| l.starts_with(&name))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

// ---------------------------------------------------------------- throughput

struct ThroughputReport {
    tunnels: usize,
    bytes_each_way: u64,
    seconds: f64,
    busy_fraction: Option<f64>,
}

impl ThroughputReport {
    fn total_bytes(&self) -> u64 {
        self.bytes_each_way * 2 * self.tunnels as u64
    }

    fn json(&self) -> String {
        let total = self.total_bytes() as f64;
        let busy = self
            .busy_fraction
            .map_or("null".to_string(), |b| format!("{b:.4}"));
        let per_cpu = match self.busy_fraction {
            Some(b) if b > 0.0 => format!("{:.0}", total / (b * self.seconds)),
            _ => "null".to_string(),
        };
        format!(
            "{{\"tunnels\":{},\"bytes_each_way\":{},\"total_bytes\":{},\"seconds\":{:.4},\
             \"gbytes_per_s\":{:.4},\"busy_fraction\":{},\"bytes_per_cpu_second\":{},\"verified\":true}}",
            self.tunnels,
            self.bytes_each_way,
            self.total_bytes(),
            self.seconds,
            total / self.seconds / 1e9,
            busy,
            per_cpu
        )
    }
}

/// Runs the source/sink side: per accepted connection, read the header, then
/// verify the Up stream while another thread sends the Down stream.
fn serve_sink(
    listener: TcpListener,
    patterns: Arc<HashMap<(u64, bool), Pattern>>,
    expected: usize,
    done: mpsc::Sender<Result<String, String>>,
    io_timeout: Duration,
) {
    for _ in 0..expected {
        let (mut stream, _) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) => {
                let _ = done.send(Err(format!("sink accept: {e}")));
                return;
            }
        };
        let patterns = patterns.clone();
        let done = done.clone();
        thread::spawn(move || {
            let result = (|| {
                stream
                    .set_read_timeout(Some(io_timeout))
                    .map_err(|e| e.to_string())?;
                stream
                    .set_write_timeout(Some(io_timeout))
                    .map_err(|e| e.to_string())?;
                let _ = stream.set_nodelay(true);
                let mut header = [0u8; HEADER_LEN];
                stream
                    .read_exact(&mut header)
                    .map_err(|e| format!("sink: reading the tunnel header: {e}"))?;
                if &header[..8] != MAGIC {
                    return Err(format!("sink: bad tunnel header {:?}", &header[..8]));
                }
                let id = u64::from_le_bytes(header[8..16].try_into().unwrap());
                let total = u64::from_le_bytes(header[16..24].try_into().unwrap());
                if !patterns.contains_key(&(id, true)) {
                    return Err(format!("sink: unknown tunnel id {id}"));
                }
                let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
                let down = patterns.clone();
                let sender = thread::spawn(move || {
                    send_pattern(&mut writer, &down[&(id, false)], total)
                        .map_err(|e| format!("sink tunnel {id} down: {e}"))
                });
                receive_pattern(&mut stream, &patterns[&(id, true)], total)
                    .map_err(|e| format!("sink tunnel {id} up: {e}"))?;
                sender
                    .join()
                    .map_err(|_| "sink sender panicked".to_string())??;
                Ok(format!("sink {id}"))
            })();
            let _ = done.send(result);
        });
    }
}

/// `proxy: None` is the "direct" baseline: the same streams straight to the sink.
fn throughput(
    proxy: Option<SocketAddr>,
    tunnels: usize,
    bytes: u64,
    busy_cpu: Option<usize>,
    timeout: Duration,
) -> Result<ThroughputReport, String> {
    let io_timeout = Duration::from_secs(30).min(timeout);
    let mut patterns = HashMap::new();
    for id in 0..tunnels as u64 {
        patterns.insert((id, true), Pattern::new(id, Direction::Up));
        patterns.insert((id, false), Pattern::new(id, Direction::Down));
    }
    let patterns = Arc::new(patterns);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("sink bind: {e}"))?;
    let sink = listener.local_addr().map_err(|e| e.to_string())?;
    let (done_tx, done_rx) = mpsc::channel::<Result<String, String>>();
    {
        let patterns = patterns.clone();
        let done = done_tx.clone();
        thread::spawn(move || serve_sink(listener, patterns, tunnels, done, io_timeout));
    }

    // Establish every tunnel first, then start the clock on a barrier.
    let barrier = Arc::new(Barrier::new(tunnels + 1));
    let mut streams = Vec::new();
    for id in 0..tunnels {
        let first_hop = proxy.unwrap_or(sink);
        let mut stream = TcpStream::connect_timeout(&first_hop, io_timeout)
            .map_err(|e| format!("tunnel {id}: connect to {first_hop}: {e}"))?;
        stream
            .set_read_timeout(Some(io_timeout))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(io_timeout))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        if proxy.is_some() {
            stream
                .write_all(connect_request(&sink.to_string()).as_bytes())
                .map_err(|e| format!("tunnel {id}: sending CONNECT: {e}"))?;
            let (status, head) =
                read_head_exact(&mut stream).map_err(|e| format!("tunnel {id}: {e}"))?;
            if status != 200 {
                return Err(format!(
                    "tunnel {id}: CONNECT answered {status}: {:?}",
                    head.lines().next()
                ));
            }
        }
        streams.push(stream);
    }
    for (id, mut stream) in streams.into_iter().enumerate() {
        let id = id as u64;
        let patterns = patterns.clone();
        let barrier = barrier.clone();
        let done = done_tx.clone();
        thread::spawn(move || {
            barrier.wait();
            let result = (|| {
                let mut header = [0u8; HEADER_LEN];
                header[..8].copy_from_slice(MAGIC);
                header[8..16].copy_from_slice(&id.to_le_bytes());
                header[16..24].copy_from_slice(&bytes.to_le_bytes());
                stream
                    .write_all(&header)
                    .map_err(|e| format!("tunnel {id}: header: {e}"))?;
                let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
                let up = patterns.clone();
                let sender = thread::spawn(move || {
                    send_pattern(&mut writer, &up[&(id, true)], bytes)
                        .map_err(|e| format!("client tunnel {id} up: {e}"))
                });
                receive_pattern(&mut stream, &patterns[&(id, false)], bytes)
                    .map_err(|e| format!("client tunnel {id} down: {e}"))?;
                sender
                    .join()
                    .map_err(|_| "client sender panicked".to_string())??;
                let _ = stream.shutdown(Shutdown::Both);
                Ok(format!("client {id}"))
            })();
            let _ = done.send(result);
        });
    }
    drop(done_tx);

    let before = busy_cpu.and_then(cpu_jiffies);
    barrier.wait();
    let start = Instant::now();
    let deadline = start + timeout;
    // Every tunnel reports twice: once from the client end, once from the sink.
    for _ in 0..tunnels * 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("timed out after {:?}", timeout)),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = busy_cpu.and_then(cpu_jiffies);
    let busy_fraction = match (before, after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    };
    Ok(ThroughputReport {
        tunnels,
        bytes_each_way: bytes,
        seconds,
        busy_fraction,
    })
}

// --------------------------------------------------------------------- hold

/// Holds until stdin reaches EOF (the harness closes it) or the timeout
/// passes. Each `check` line on stdin is answered with `alive K`: how many of
/// the held connections the proxy has not closed (it must not close idle ones
/// while the harness measures their memory).
fn hold_until_released(timeout: Duration, held: Vec<TcpStream>) -> ! {
    thread::spawn(move || {
        thread::sleep(timeout);
        eprintln!("tunnel-load: hold timeout ({timeout:?}) reached, exiting");
        exit(3);
    });
    for line in std::io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("check") => {
                println!("alive {}", held.iter().filter(|s| still_open(s)).count());
                std::io::stdout().flush().ok();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    exit(0);
}

/// An idle connection is still open when a non-blocking peek would block.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let open = match stream.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    open
}

fn hold_sink(listen: &str, timeout: Duration) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    println!(
        "listening {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    std::io::stdout().flush().ok();
    thread::spawn(move || {
        let mut held = Vec::new();
        // bounded by the process's own hold timeout
        loop {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(e) => {
                    eprintln!(
                        "tunnel-load hold-sink: accept: {e} (holding {})",
                        held.len()
                    );
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    });
    hold_until_released(timeout, Vec::new())
}

/// Opens `count` connections to the proxy in batches: send every request of a
/// batch, then read every answer, calling `check` on each connection.
fn open_batched(
    proxy: SocketAddr,
    count: usize,
    request: &str,
    check: &dyn Fn(&mut TcpStream) -> Result<(), String>,
) -> Result<Vec<TcpStream>, String> {
    let io_timeout = Duration::from_secs(20);
    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        let n = BATCH.min(count - held.len());
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let index = held.len() + batch.len();
            let mut stream = TcpStream::connect_timeout(&proxy, io_timeout)
                .map_err(|e| format!("connection {index}: connect to {proxy}: {e}"))?;
            stream
                .set_read_timeout(Some(io_timeout))
                .map_err(|e| e.to_string())?;
            stream
                .write_all(request.as_bytes())
                .map_err(|e| format!("connection {index}: write: {e}"))?;
            batch.push(stream);
        }
        for mut stream in batch {
            let index = held.len();
            check(&mut stream).map_err(|e| format!("connection {index}: {e}"))?;
            held.push(stream);
        }
    }
    Ok(held)
}

fn hold_tunnels(
    proxy: SocketAddr,
    target: &str,
    count: usize,
    timeout: Duration,
) -> Result<(), String> {
    let held = open_batched(proxy, count, &connect_request(target), &|stream| {
        let (status, head) = read_head_exact(stream)?;
        if status != 200 {
            return Err(format!(
                "CONNECT answered {status}: {:?}",
                head.lines().next()
            ));
        }
        Ok(())
    })?;
    println!("ready {}", held.len());
    std::io::stdout().flush().ok();
    hold_until_released(timeout, held)
}

/// Reads one response with a Content-Length body; fails unless it is 2xx.
fn read_response(stream: &mut TcpStream) -> Result<(), String> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut content_length: Option<u64> = None;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| format!("reading the response: {}", io_error(&e)))?;
        if n == 0 {
            return Err("connection closed inside the response head".into());
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok();
            }
        }
        head.push_str(&line);
    }
    let status = status_of(&head)?;
    if !(200..300).contains(&status) {
        return Err(format!("answer {status}: {:?}", head.lines().next()));
    }
    let length = content_length.ok_or("the response has no Content-Length")?;
    let copied = std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink())
        .map_err(|e| format!("reading the body: {e}"))?;
    if copied != length {
        return Err(format!("body ended after {copied} of {length} bytes"));
    }
    if !reader.buffer().is_empty() {
        return Err("bytes after the response body".into());
    }
    Ok(())
}

fn hold_http(proxy: SocketAddr, url: &str, count: usize, timeout: Duration) -> Result<(), String> {
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("--url must be http://HOST:PORT/PATH, got {url}"))?;
    let request =
        format!("GET {url} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tunnel-load\r\n\r\n");
    let held = open_batched(proxy, count, &request, &|stream| read_response(stream))?;
    println!("ready {}", held.len());
    std::io::stdout().flush().ok();
    hold_until_released(timeout, held)
}

// ---------------------------------------------------------------------- CLI

const USAGE: &str = "usage:
  tunnel-load throughput --proxy ADDR|direct [--tunnels 8] [--bytes 1073741824] [--busy-cpu N] [--timeout 600]
  tunnel-load hold-sink [--listen 127.0.0.1:0] [--timeout 600]
  tunnel-load hold-tunnels --proxy ADDR --target ADDR --count N [--timeout 600]
  tunnel-load hold-http --proxy ADDR --url http://HOST:PORT/PATH --count N [--timeout 600]
  tunnel-load tls-load --proxy ADDR|direct --target ADDR --ca PEM --path /1k --body FILE [--sni NAME] [--connections 32] [--seconds 5] [--churn 0|1]
  tunnel-load tls-hold --proxy ADDR --target ADDR --ca PEM --path /1k --body FILE --count N [--sni NAME] [--timeout 600]
  tunnel-load tls-leaf --proxy ADDR --target ADDR --ca PEM --path /1k --body FILE --hosts N [--suffix bench.test]
  tunnel-load soak --proxy ADDR --origin ADDR --files DIR [--requests 1000000] [--connections 64] [--timeout 600]";

fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut flags = HashMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        flags.insert(name.to_string(), value.clone());
    }
    Ok(flags)
}

fn flag<T: std::str::FromStr>(
    flags: &HashMap<String, String>,
    name: &str,
    default: Option<T>,
) -> Result<T, String> {
    match flags.get(name) {
        Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v:?}")),
        None => default.ok_or_else(|| format!("--{name} is required")),
    }
}

/// Only loopback targets: the benchmark must never send traffic elsewhere.
fn loopback(addr: &str, name: &str) -> Result<SocketAddr, String> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|_| format!("--{name}: not IP:PORT: {addr:?}"))?;
    if !parsed.ip().is_loopback() {
        return Err(format!("--{name}: {addr} is not a loopback address"));
    }
    Ok(parsed)
}

fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or(USAGE)?;
    let flags = parse_flags(rest)?;
    let timeout = Duration::from_secs(flag(&flags, "timeout", Some(600u64))?);
    match command.as_str() {
        "throughput" => {
            let proxy = match flag::<String>(&flags, "proxy", None)?.as_str() {
                "direct" => None,
                addr => Some(loopback(addr, "proxy")?),
            };
            let tunnels = flag(&flags, "tunnels", Some(8usize))?;
            let bytes = flag(&flags, "bytes", Some(1u64 << 30))?;
            let busy_cpu = flags
                .get("busy-cpu")
                .map(|v| v.parse::<usize>())
                .transpose()
                .map_err(|_| "--busy-cpu: bad value".to_string())?;
            let report = throughput(proxy, tunnels, bytes, busy_cpu, timeout)?;
            println!("{}", report.json());
            Ok(())
        }
        "hold-sink" => {
            let listen = flag(&flags, "listen", Some("127.0.0.1:0".to_string()))?;
            loopback(&listen, "listen")?;
            hold_sink(&listen, timeout)
        }
        "hold-tunnels" => {
            let proxy = loopback(&flag::<String>(&flags, "proxy", None)?, "proxy")?;
            let target = flag::<String>(&flags, "target", None)?;
            loopback(&target, "target")?;
            hold_tunnels(proxy, &target, flag(&flags, "count", None)?, timeout)
        }
        "hold-http" => {
            let proxy = loopback(&flag::<String>(&flags, "proxy", None)?, "proxy")?;
            let url = flag::<String>(&flags, "url", None)?;
            let authority = url
                .strip_prefix("http://")
                .and_then(|r| r.split('/').next())
                .unwrap_or("");
            loopback(authority, "url")?;
            hold_http(proxy, &url, flag(&flags, "count", None)?, timeout)
        }
        "tls-load" | "tls-hold" | "tls-leaf" => {
            let proxy = match flag::<String>(&flags, "proxy", None)?.as_str() {
                "direct" => None,
                addr => Some(loopback(addr, "proxy")?),
            };
            let target_addr = loopback(&flag::<String>(&flags, "target", None)?, "target")?;
            let target = tls::Target {
                proxy,
                target: target_addr,
                config: tls::client_config(&flag::<String>(&flags, "ca", None)?)?,
                io_timeout: Duration::from_secs(20).min(timeout),
            };
            let sni = flag(&flags, "sni", Some(target_addr.ip().to_string()))?;
            let path = flag::<String>(&flags, "path", None)?;
            let body = tls::read_body(&flag::<String>(&flags, "body", None)?)?;
            match command.as_str() {
                "tls-load" => {
                    let mut report = tls_load::load(
                        &target,
                        &sni,
                        &path,
                        body,
                        flag(&flags, "connections", Some(32usize))?,
                        flag(&flags, "seconds", Some(5.0f64))?,
                        flag(&flags, "churn", Some(0u8))? != 0,
                    )?;
                    println!("{}", report.json());
                    Ok(())
                }
                "tls-hold" => {
                    let held = tls::hold(&target, &sni, &path, body, flag(&flags, "count", None)?)?;
                    println!("ready {}", held.len());
                    std::io::stdout().flush().ok();
                    hold_until_released(timeout, held)
                }
                _ => {
                    let suffix = flag(&flags, "suffix", Some("bench.test".to_string()))?;
                    let mut report = tls::leaf(&target, flag(&flags, "hosts", None)?, &suffix)?;
                    println!("{}", report.json());
                    Ok(())
                }
            }
        }
        "soak" => {
            let dir = flag::<String>(&flags, "files", None)?;
            let read = |name: &str| {
                std::fs::read(format!("{dir}/{name}")).map_err(|e| format!("{dir}/{name}: {e}"))
            };
            let config = soak::SoakConfig {
                proxy: loopback(&flag::<String>(&flags, "proxy", None)?, "proxy")?,
                origin: loopback(&flag::<String>(&flags, "origin", None)?, "origin")?,
                body_1k: read("1k")?,
                body_1m: read("1m")?,
                requests: flag(&flags, "requests", Some(1_000_000u64))?,
                connections: flag(&flags, "connections", Some(64usize))?,
                timeout,
            };
            match soak::soak(config) {
                Ok(summary) => {
                    println!("{summary}");
                    Ok(())
                }
                Err(summary) => {
                    println!("{summary}");
                    Err("some operations failed (see the summary)".into())
                }
            }
        }
        _ => Err(USAGE.to_string()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("tunnel-load: {e}");
        exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_per_tunnel_and_direction() {
        let a = Pattern::new(0, Direction::Up);
        let b = Pattern::new(0, Direction::Down);
        let c = Pattern::new(1, Direction::Up);
        assert_ne!(a.slice(0, 4096), b.slice(0, 4096));
        assert_ne!(a.slice(0, 4096), c.slice(0, 4096));
    }

    #[test]
    fn verify_accepts_the_stream_across_the_period_boundary() {
        let p = Pattern::new(3, Direction::Down);
        let offset = PERIOD as u64 - 100;
        let mut got = p.slice(offset, 1000).to_vec();
        assert_eq!(p.verify(offset, &got), Ok(()));
        // the bytes after the wrap are the start of the period again
        assert_eq!(&got[100..], p.slice(0, 900));
        got[500] ^= 1;
        assert_eq!(p.verify(offset, &got), Err(offset + 500));
    }

    #[test]
    fn verify_catches_dropped_and_duplicated_chunks() {
        let p = Pattern::new(5, Direction::Up);
        for shift in [1u64, 4096, 65536, 1 << 20] {
            let shifted = p.slice(shift, 4096);
            assert!(
                p.verify(0, shifted).is_err(),
                "a shift of {shift} went unnoticed"
            );
        }
    }

    /// A tiny thread-per-connection CONNECT proxy, enough to exercise the
    /// tool end to end on loopback.
    fn toy_proxy() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for client in listener.incoming() {
                let mut client = client.unwrap();
                thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        client.read_exact(&mut byte).unwrap();
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8(head).unwrap();
                    let target = text.split(' ').nth(1).unwrap().to_string();
                    let upstream = TcpStream::connect(target).unwrap();
                    client
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .unwrap();
                    let (mut c2, mut u2) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut c2, &mut u2);
                    });
                    let (mut u, mut c) = (upstream, client);
                    let _ = std::io::copy(&mut u, &mut c);
                });
            }
        });
        addr
    }

    #[test]
    fn throughput_through_a_toy_proxy_verifies_every_byte() {
        let proxy = toy_proxy();
        let report = throughput(
            Some(proxy),
            3,
            5 * 1024 * 1024 + 7,
            Some(0),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(report.total_bytes(), 2 * 3 * (5 * 1024 * 1024 + 7));
        assert!(report.json().contains("\"verified\":true"));
    }

    #[test]
    fn direct_throughput_skips_the_connect() {
        let report = throughput(None, 2, 1 << 20, None, Duration::from_secs(60)).unwrap();
        assert_eq!(report.total_bytes(), 4 << 20);
    }

    #[test]
    fn a_non_200_connect_answer_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            thread::sleep(Duration::from_millis(200));
        });
        let err = throughput(Some(addr), 1, 1024, None, Duration::from_secs(10))
            .err()
            .unwrap();
        assert!(err.contains("403"), "{err}");
    }
}
