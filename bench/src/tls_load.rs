//! `tls-load`'s event loop: every connection of the load on one thread (mio, edge-triggered
//! epoll), as wrk drives the plain phases.
//!
//! Why not a thread per connection: then every response wakes a sleeping thread, and the
//! proxy, which sends that response over loopback, pays the wake-up (an inter-processor
//! interrupt in this VM) in its own CPU time. That is a cost of the load generator charged
//! to every proxy alike; it compressed the ratios of the interception phases (a fifth of
//! ringway's samples were `sock_def_readable` waking a client thread). One event loop that is
//! busy most of the time is woken far less often, and is also cheaper on the load CPU.
//!
//! Each connection is a small state machine: TCP connect, `CONNECT target` answered `200`
//! (or straight to the target for "direct"), the rustls handshake (the certificate verified),
//! then one GET at a time whose status, `Content-Length` and every body byte are checked
//! against the expected body as the plaintext arrives. With `churn` the request says
//! `Connection: close` and the connection is closed (close_notify, FIN) and replaced by a new
//! one after each response.
//!
//! Errors: any failure (socket, TLS, certificate, status, body byte, a stall of `io_timeout`
//! with no progress on any connection) ends the load with a message naming the connection
//! and how many requests it had completed.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use crate::tls::{check_head, LoadReport, Target};
use crate::{connect_request, status_of};

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Every 16th request's latency is kept, to keep the sample vector small.
const SAMPLE_EVERY: u64 = 16;

/// Where one connection is.
enum Phase {
    /// TCP connect in flight.
    Connecting,
    /// `CONNECT` sent (`sent` bytes of it so far); reading the proxy's answer head.
    Tunnel { sent: usize, head: Vec<u8> },
    /// TLS: handshaking, then requests.
    Tls(Box<ClientConnection>),
}

/// The response being read.
#[derive(Default)]
struct Response {
    /// The head so far (until `\r\n\r\n`).
    head: Vec<u8>,
    /// `Some(n)` once the head is parsed: body bytes checked so far.
    body_at: Option<usize>,
}

/// One connection of the load.
struct Conn {
    sock: TcpStream,
    phase: Phase,
    /// A request is outstanding (sent, its response not complete).
    in_flight: bool,
    response: Response,
    /// When the current request (with `churn`: the current connection) started.
    started: Instant,
    /// Requests this connection slot has completed (across reconnections).
    requests: u64,
}

/// What the whole load shares.
struct Load<'a> {
    target: &'a Target,
    sni: ServerName<'static>,
    request: Vec<u8>,
    connect: Vec<u8>,
    body: &'a [u8],
    churn: bool,
    /// Past the deadline: no new request or connection.
    draining: bool,
    report: LoadReport,
    /// Plaintext read buffer, shared by every connection.
    scratch: Vec<u8>,
}

/// What a drive step ended with.
enum Step {
    /// Waiting for the socket.
    Blocked,
    /// The response completed and the connection is done with (`churn`, or the load is
    /// draining): closed, then replaced unless draining.
    Done,
}

/// Keep-alive (or, with `churn`, one request per connection) GETs of `path` on `connections`
/// connections driven by one event loop for `seconds`.
pub fn load(
    target: &Target,
    sni: &str,
    path: &str,
    body: Arc<Vec<u8>>,
    connections: usize,
    seconds: f64,
    churn: bool,
) -> Result<LoadReport, String> {
    let sni = ServerName::try_from(sni.to_string()).map_err(|e| format!("--sni {sni:?}: {e}"))?;
    let host = target.target.to_string();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tunnel-load\r\n{}\r\n",
        if churn { "Connection: close\r\n" } else { "" }
    );
    let mut load = Load {
        target,
        sni,
        request: request.into_bytes(),
        connect: connect_request(&host).into_bytes(),
        body: &body,
        churn,
        draining: false,
        report: LoadReport {
            requests: 0,
            bytes: 0,
            handshakes: 0,
            seconds: 0.0,
            latencies_us: Vec::new(),
        },
        scratch: vec![0u8; 64 * 1024],
    };
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut conns = Vec::with_capacity(connections);
    for id in 0..connections {
        conns.push(Some(load.open(&poll, id)?));
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut events = Events::with_capacity(1024);
    let mut last_progress = Instant::now();
    let mut open = conns.len();
    while open > 0 {
        let now = Instant::now();
        // At the deadline no new request or connection starts; those in flight complete
        // (so every handshake counted served a request), as each thread of a thread-per-
        // connection load would finish its current request.
        load.draining = now >= deadline;
        if now.duration_since(last_progress) > target.io_timeout {
            let (stuck, conn) = conns
                .iter()
                .enumerate()
                .find_map(|(i, c)| c.as_ref().map(|c| (i, c)))
                .expect("open > 0");
            return Err(format!(
                "connection {stuck} after {} requests: no progress on any connection for {:?}",
                conn.requests, target.io_timeout
            ));
        }
        let wait = if load.draining {
            Duration::from_millis(100)
        } else {
            (deadline - now).min(Duration::from_millis(100))
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
        for event in events.iter() {
            last_progress = Instant::now();
            let id = event.token().0;
            let Some(conn) = conns[id].as_mut() else {
                continue; // closed earlier in this batch of events
            };
            let step = load
                .drive(conn)
                .map_err(|e| format!("connection {id} after {} requests: {e}", conn.requests))?;
            if let Step::Done = step {
                let old = conns[id].take().expect("driven above");
                if load.draining {
                    open -= 1;
                } else {
                    let mut new = load.open(&poll, id)?;
                    new.requests = old.requests;
                    conns[id] = Some(new);
                }
                load.close(old, &poll);
            }
        }
    }
    load.report.seconds = start.elapsed().as_secs_f64();
    if load.report.requests == 0 {
        return Err("no request completed".into());
    }
    Ok(load.report)
}

impl Load<'_> {
    /// A new connection in slot `id`: a non-blocking connect, registered for both directions.
    fn open(&mut self, poll: &Poll, id: usize) -> Result<Conn, String> {
        let first_hop: SocketAddr = self.target.proxy.unwrap_or(self.target.target);
        let mut sock = TcpStream::connect(first_hop)
            .map_err(|e| format!("connection {id}: connect to {first_hop}: {e}"))?;
        poll.registry()
            .register(
                &mut sock,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("epoll_ctl: {e}"))?;
        Ok(Conn {
            sock,
            phase: Phase::Connecting,
            in_flight: false,
            response: Response::default(),
            started: Instant::now(),
            requests: 0,
        })
    }

    /// Closes politely (close_notify when TLS is up, then FIN), ignoring errors.
    fn close(&self, mut conn: Conn, poll: &Poll) {
        if let Phase::Tls(tls) = &mut conn.phase {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut conn.sock);
        }
        let _ = poll.registry().deregister(&mut conn.sock);
        let _ = conn.sock.shutdown(std::net::Shutdown::Both);
    }

    /// Does everything `conn` can do until its socket would block.
    fn drive(&mut self, conn: &mut Conn) -> Result<Step, String> {
        loop {
            match &mut conn.phase {
                Phase::Connecting => {
                    if let Some(e) = conn.sock.take_error().map_err(|e| e.to_string())? {
                        return Err(format!("connect: {e}"));
                    }
                    match conn.sock.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
                            return Ok(Step::Blocked)
                        }
                        Err(e) => return Err(format!("connect: {e}")),
                    }
                    let _ = conn.sock.set_nodelay(true);
                    conn.phase = if self.target.proxy.is_some() {
                        Phase::Tunnel {
                            sent: 0,
                            head: Vec::with_capacity(128),
                        }
                    } else {
                        self.start_tls()?
                    };
                }
                Phase::Tunnel { sent, head } => {
                    while *sent < self.connect.len() {
                        match conn.sock.write(&self.connect[*sent..]) {
                            Ok(n) => *sent += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                return Ok(Step::Blocked)
                            }
                            Err(e) => return Err(format!("sending CONNECT: {e}")),
                        }
                    }
                    // Byte by byte: the proxy may not send a byte past the head (the TLS
                    // client speaks first), and reading more would take it from rustls.
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if head.len() > MAX_HEAD {
                            return Err("CONNECT answer head larger than 16 KiB".into());
                        }
                        match conn.sock.read(&mut byte) {
                            Ok(0) => {
                                return Err(format!(
                                    "connection closed inside the CONNECT answer ({:?})",
                                    String::from_utf8_lossy(head)
                                ))
                            }
                            Ok(_) => head.push(byte[0]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                return Ok(Step::Blocked)
                            }
                            Err(e) => return Err(format!("reading the CONNECT answer: {e}")),
                        }
                    }
                    let text = String::from_utf8_lossy(head);
                    let status = status_of(&text)?;
                    if status != 200 {
                        return Err(format!(
                            "CONNECT answered {status}: {:?}",
                            text.lines().next()
                        ));
                    }
                    conn.phase = self.start_tls()?;
                }
                Phase::Tls(_) => return self.drive_tls(conn),
            }
        }
    }

    fn start_tls(&mut self) -> Result<Phase, String> {
        self.report.handshakes += 1;
        let tls = ClientConnection::new(self.target.config.clone(), self.sni.clone())
            .map_err(|e| format!("TLS client: {e}"))?;
        Ok(Phase::Tls(Box::new(tls)))
    }

    /// The TLS phase: flush records, read records, send the next request, check plaintext.
    fn drive_tls(&mut self, conn: &mut Conn) -> Result<Step, String> {
        let Phase::Tls(tls) = &mut conn.phase else {
            unreachable!("drive_tls outside the TLS phase")
        };
        loop {
            let mut progressed = false;
            while tls.wants_write() {
                match tls.write_tls(&mut conn.sock) {
                    Ok(0) => return Err("the socket took no bytes".into()),
                    Ok(_) => progressed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("sending: {e}")),
                }
            }
            if tls.wants_read() {
                match tls.read_tls(&mut conn.sock) {
                    Ok(0) => return Err("the peer closed the connection".into()),
                    Ok(_) => {
                        let handshaking = tls.is_handshaking();
                        tls.process_new_packets().map_err(|e| {
                            if handshaking {
                                format!("TLS handshake (SNI {:?}): {e}", self.sni)
                            } else {
                                format!("TLS: {e}")
                            }
                        })?;
                        progressed = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("receiving: {e}")),
                }
            }
            if tls.is_handshaking() {
                if !progressed {
                    return Ok(Step::Blocked);
                }
                continue;
            }
            if !conn.in_flight {
                if !self.churn {
                    conn.started = Instant::now();
                }
                tls.writer()
                    .write_all(&self.request)
                    .map_err(|e| format!("queueing the request: {e}"))?;
                conn.in_flight = true;
                continue;
            }
            loop {
                let n = match tls.reader().read(&mut self.scratch) {
                    Ok(0) => return Err("close_notify inside the response".into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("reading the response: {e}")),
                };
                progressed = true;
                let chunk = &self.scratch[..n];
                if Self::take(&mut conn.response, chunk, self.body)? {
                    conn.requests += 1;
                    self.report.requests += 1;
                    self.report.bytes += (conn.response.head.len() + self.body.len()) as u64;
                    if self.report.requests % SAMPLE_EVERY == 1 {
                        self.report
                            .latencies_us
                            .push(conn.started.elapsed().as_micros() as u64);
                    }
                    conn.response = Response::default();
                    conn.in_flight = false;
                    if self.churn || self.draining {
                        return Ok(Step::Done);
                    }
                    break;
                }
            }
            if !progressed && conn.in_flight {
                return Ok(Step::Blocked);
            }
        }
    }

    /// Feeds response plaintext; true when the response is complete and checked. A byte past
    /// the body (none may come: one request at a time) is an error.
    fn take(resp: &mut Response, mut chunk: &[u8], body: &[u8]) -> Result<bool, String> {
        if resp.body_at.is_none() {
            let had = resp.head.len();
            resp.head.extend_from_slice(chunk);
            let Some(end) = find_head_end(&resp.head, had.saturating_sub(3)) else {
                if resp.head.len() > MAX_HEAD {
                    return Err("response head larger than 16 KiB".into());
                }
                return Ok(false);
            };
            chunk = &chunk[end - had..];
            resp.head.truncate(end);
            check_head(&resp.head, body)?;
            resp.body_at = Some(0);
        }
        let at = resp.body_at.as_mut().expect("set above");
        let rest = &body[*at..];
        if chunk.len() > rest.len() {
            return Err(format!(
                "{} bytes past the end of the body",
                chunk.len() - rest.len()
            ));
        }
        if chunk != &rest[..chunk.len()] {
            let off = chunk
                .iter()
                .zip(rest)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("body differs from the file at byte {}", *at + off));
        }
        *at += chunk.len();
        Ok(*at == body.len())
    }
}

/// The offset just past the first `\r\n\r\n` at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| from + p + 4)
}
