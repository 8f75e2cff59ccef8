//! A scripted runtime for conversation tests: feeds a `Connection` inputs with a virtual clock
//! and records what it asks for, so a test reads as "client sends X → proxy dials Y → ...".

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringway_core::tunnel::Direction;
use ringway_core::{AttemptId, Config, Connection, DialError, Dialed, Instant, Output, PortRule};

/// Everything but the data writes, which are collected per direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection asked for, named by the authority the client asked for (with the
    /// script's automatic lookups) or by the address (with `manual_dns`).
    Dial(String, bool),
    /// A lookup asked for (only with `manual_dns`).
    Resolve(String),
    /// A connection attempt cancelled (it lost the race), named like its `Dial`.
    Cancel(String),
    Release,
    CloseUpstream,
    ShutdownClientWrite,
    ShutdownUpstreamWrite,
    StartTunnel(Vec<u8>, Vec<u8>),
    Log(String),
    /// `Close { linger: true }`: the client may still send; the runtime lingers.
    Close,
    /// `Close { linger: false }`: nothing more can come from the client; close at once.
    CloseAtOnce,
}

pub struct Script {
    pub conn: Connection,
    pub now: Instant,
    pub to_client: Vec<u8>,
    pub to_upstream: Vec<u8>,
    pub events: Vec<Event>,
    /// Every output, in order, with data writes kept as separate items.
    pub trace: Vec<Output>,
    /// The connection attempts in flight, oldest first, with their event names.
    attempts: Vec<(AttemptId, std::net::SocketAddr, String)>,
    upstream_connected: bool,
    closed: bool,
    /// Lookups are answered at once with [`AUTO_ADDRESS`] (and dials named after the host)
    /// unless a test answers them itself.
    auto_dns: bool,
    /// The authority of the last automatic lookup.
    resolved_name: Option<String>,
}

/// The address automatic lookups answer with: a global address, so the default egress
/// policy allows it (nothing is ever sent to it: there is no network here).
pub const AUTO_ADDRESS: &str = "93.184.215.14";

pub fn config() -> Config {
    let mut c = Config::default();
    c.policy.connect_ports = PortRule::List(vec![443, 8443]);
    c
}

impl Script {
    pub fn new() -> Script {
        Script::with_config(config())
    }

    pub fn with_config(config: Config) -> Script {
        Script::from(config, "127.0.0.1:50000")
    }

    pub fn from(config: Config, client: &str) -> Script {
        let now = Instant::from_elapsed(Duration::from_secs(1000));
        let conn = Connection::new(Arc::new(config), client.parse().unwrap(), now);
        Script::around(conn, now)
    }

    /// The plaintext side of an intercepted tunnel to `pinned` (`host:port`), default test
    /// config, default client.
    pub fn intercepted(pinned: &str) -> Script {
        let now = Instant::from_elapsed(Duration::from_secs(1000));
        let (host, port) = pinned.rsplit_once(':').unwrap();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let authority = ringway_core::target::Authority::new(host, port.parse().unwrap());
        let conn = Connection::new_intercepted(
            Arc::new(config()),
            "127.0.0.1:50000".parse().unwrap(),
            authority,
            now,
        );
        Script::around(conn, now)
    }

    fn around(conn: Connection, now: Instant) -> Script {
        let mut s = Script {
            conn,
            now,
            to_client: Vec::new(),
            to_upstream: Vec::new(),
            events: Vec::new(),
            trace: Vec::new(),
            attempts: Vec::new(),
            upstream_connected: false,
            closed: false,
            auto_dns: true,
            resolved_name: None,
        };
        s.drain();
        s
    }

    /// Carries out outputs like a runtime would, checking the core's promises as it goes.
    pub fn drain(&mut self) {
        for _ in 0..10_000 {
            let Some(out) = self.conn.poll_output() else {
                if let Some(deadline) = self.conn.poll_timeout() {
                    assert!(!self.closed, "a closed connection has no deadline");
                    let _ = deadline;
                }
                return;
            };
            assert!(!self.closed, "nothing may follow Close: {out:?}");
            self.trace.push(out.clone());
            match out {
                Output::ToClient(b) => self.to_client.extend_from_slice(&b),
                Output::ToUpstream(b) => {
                    assert!(
                        self.upstream_connected,
                        "write upstream before the dial succeeded"
                    );
                    self.to_upstream.extend_from_slice(&b)
                }
                Output::Resolve(authority) => {
                    assert!(self.attempts.is_empty(), "a lookup while a dial is out");
                    if self.auto_dns {
                        self.resolved_name = Some(authority.to_string());
                        let ip = AUTO_ADDRESS.parse().unwrap();
                        self.conn.handle_resolved(self.now, &[ip]);
                    } else {
                        self.events.push(Event::Resolve(authority.to_string()));
                    }
                }
                Output::Connect {
                    attempt,
                    addr,
                    allow_pooled,
                    ..
                } => {
                    assert!(!self.upstream_connected, "a dial while an upstream is held");
                    assert!(
                        self.attempts
                            .iter()
                            .all(|(id, a, _)| *id != attempt && *a != addr),
                        "a second attempt at {addr} or a reused id"
                    );
                    let name = match &self.resolved_name {
                        Some(name) if self.auto_dns && addr.ip().to_string() == AUTO_ADDRESS => {
                            name.clone()
                        }
                        _ => addr.to_string(),
                    };
                    self.attempts.push((attempt, addr, name.clone()));
                    self.events.push(Event::Dial(name, allow_pooled))
                }
                Output::CancelConnect(attempt) => {
                    let pos = self
                        .attempts
                        .iter()
                        .position(|(id, ..)| *id == attempt)
                        .expect("cancel of an attempt that is not outstanding");
                    let (_, _, name) = self.attempts.remove(pos);
                    self.events.push(Event::Cancel(name))
                }
                Output::ReleaseUpstream => {
                    self.upstream_connected = false;
                    self.events.push(Event::Release)
                }
                Output::CloseUpstream => {
                    self.upstream_connected = false;
                    self.events.push(Event::CloseUpstream)
                }
                Output::ShutdownClientWrite => self.events.push(Event::ShutdownClientWrite),
                Output::ShutdownUpstreamWrite => self.events.push(Event::ShutdownUpstreamWrite),
                Output::StartTunnel {
                    to_upstream,
                    to_client,
                } => self
                    .events
                    .push(Event::StartTunnel(to_upstream.to_vec(), to_client.to_vec())),
                Output::Log(r) => self.events.push(Event::Log(r.to_string())),
                Output::Close { linger } => {
                    self.closed = true;
                    self.attempts.clear();
                    self.events.push(if linger {
                        Event::Close
                    } else {
                        Event::CloseAtOnce
                    })
                }
            }
        }
        panic!("livelock: more than 10000 outputs in one drain");
    }

    /// A fresh connection (default test config) whose client sent `request` and whose dial
    /// succeeded with a fresh upstream connection, so the request went upstream and its answer
    /// is awaited. Nothing recorded so far is taken.
    ///
    /// Why: most response-side conversations open with exactly this.
    pub fn forwarded(request: &[u8]) -> Script {
        let mut s = Script::new();
        s.client(request).dial_ok(false);
        s
    }

    /// Lookups are left to the test (`Event::Resolve`, then [`Script::resolved`]).
    pub fn manual_dns(&mut self) -> &mut Self {
        self.auto_dns = false;
        self
    }

    /// Answers the outstanding lookup with `addrs` (empty: the lookup failed).
    pub fn resolved(&mut self, addrs: &[&str]) -> &mut Self {
        let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        self.conn.handle_resolved(self.now, &ips);
        self.drain();
        self
    }

    pub fn client(&mut self, bytes: &[u8]) -> &mut Self {
        self.conn
            .handle_client_data(self.now, Bytes::copy_from_slice(bytes));
        self.drain();
        self
    }

    /// Sends `bytes` one byte per call.
    pub fn client_bytewise(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.client(std::slice::from_ref(b));
        }
        self
    }

    pub fn client_eof(&mut self) -> &mut Self {
        self.conn.handle_client_eof(self.now);
        self.drain();
        self
    }

    /// Takes the latest outstanding attempt (or the one to `addr`) and forgets its recorded
    /// `Dial` event (tests assert dials explicitly with `take_events` before answering when
    /// they care).
    fn answer_dial(&mut self, addr: Option<&str>) -> AttemptId {
        let pos = match addr {
            None => self.attempts.len().checked_sub(1),
            Some(a) => {
                let a: std::net::SocketAddr = a.parse().unwrap();
                self.attempts.iter().position(|(_, x, _)| *x == a)
            }
        };
        let (id, _, name) = self
            .attempts
            .remove(pos.expect("no such dial was asked for"));
        if let Some(pos) = self
            .events
            .iter()
            .rposition(|e| matches!(e, Event::Dial(n, _) if *n == name))
        {
            self.events.remove(pos);
        }
        id
    }

    pub fn dial_ok(&mut self, reused: bool) -> &mut Self {
        let id = self.answer_dial(None);
        self.upstream_connected = true;
        self.conn.handle_dial(self.now, id, Ok(Dialed { reused }));
        self.drain();
        self
    }

    pub fn dial_err(&mut self, e: DialError) -> &mut Self {
        let id = self.answer_dial(None);
        self.conn.handle_dial(self.now, id, Err(e));
        self.drain();
        self
    }

    /// The attempt to `addr` (a socket address, e.g. `"[::1]:80"`) connected, fresh.
    pub fn dial_ok_at(&mut self, addr: &str) -> &mut Self {
        let id = self.answer_dial(Some(addr));
        self.upstream_connected = true;
        self.conn
            .handle_dial(self.now, id, Ok(Dialed { reused: false }));
        self.drain();
        self
    }

    /// The attempt to `addr` failed with `e`.
    pub fn dial_err_at(&mut self, addr: &str, e: DialError) -> &mut Self {
        let id = self.answer_dial(Some(addr));
        self.conn.handle_dial(self.now, id, Err(e));
        self.drain();
        self
    }

    /// The addresses of the attempts in flight, oldest first.
    pub fn attempts_in_flight(&self) -> Vec<String> {
        self.attempts
            .iter()
            .map(|(_, a, _)| a.to_string())
            .collect()
    }

    /// Moves the clock to `at` (from the script's start) without delivering anything.
    pub fn set_clock(&mut self, since_start: Duration) -> &mut Self {
        self.now = Instant::from_elapsed(Duration::from_secs(1000) + since_start);
        self
    }

    pub fn upstream(&mut self, bytes: &[u8]) -> &mut Self {
        self.conn
            .handle_upstream_data(self.now, Bytes::copy_from_slice(bytes));
        self.drain();
        self
    }

    pub fn upstream_eof(&mut self) -> &mut Self {
        self.conn.handle_upstream_eof(self.now);
        self.drain();
        self
    }

    pub fn relayed(&mut self, dir: Direction, n: u64) -> &mut Self {
        self.conn.handle_relayed(self.now, dir, n);
        self.drain();
        self
    }

    /// Moves the clock forward and delivers a timeout, like a runtime's timer would.
    pub fn wait(&mut self, d: Duration) -> &mut Self {
        self.now = self.now + d;
        self.conn.handle_timeout(self.now);
        self.drain();
        self
    }

    pub fn take_client(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.to_client)).into_owned()
    }

    pub fn take_upstream(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.to_upstream)).into_owned()
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The `retryable` flag of every dial asked for so far, in order.
    ///
    /// Why: `Event::Dial` records where and whether pooled; whether a stale pooled connection
    /// may be retried matters to the few tests about the pool's liveness check.
    pub fn dials_retryable(&self) -> Vec<bool> {
        self.trace
            .iter()
            .filter_map(|o| match o {
                Output::Connect { retryable, .. } => Some(*retryable),
                _ => None,
            })
            .collect()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The upstream sends `response`; the client must receive exactly `relayed` (everything
    /// written to it since the last `take_client`).
    ///
    /// Why: "upstream answers X, client gets exactly Y" is the step response conversations
    /// repeat.
    #[track_caller]
    pub fn relays(&mut self, response: &[u8], relayed: impl AsRef<str>) -> &mut Self {
        self.upstream(response);
        assert_eq!(self.take_client(), relayed.as_ref());
        self
    }

    /// Takes the events; they must be exactly the upstream connection going back to the pool,
    /// then the access-log line `log_line`.
    ///
    /// Why: the clean end of an exchange, checked after most answers.
    #[track_caller]
    pub fn expect_released(&mut self, log_line: impl AsRef<str>) {
        assert_eq!(self.take_events(), [Event::Release, log(log_line.as_ref())]);
    }

    /// The events must be exactly: the upstream released to the pool, `log_line`, and the
    /// client connection closed.
    ///
    /// Why: how an exchange ends cleanly when the client (HTTP/1.0, `Connection: close`) or
    /// the answer says it is the last one.
    #[track_caller]
    pub fn expect_released_then_closed(&mut self, log_line: impl AsRef<str>) {
        assert_eq!(
            self.take_events(),
            [Event::Release, log(log_line.as_ref()), Event::Close]
        );
    }

    /// As [`Script::expect_released_then_closed`], but the client said it was done (it
    /// half-closed, or its request said `Connection: close` and it sent nothing more), so
    /// nothing more can come: the connection closes without lingering.
    ///
    /// Why: the cheap close of a connection per request, checked wherever a client ends it.
    #[track_caller]
    pub fn expect_released_then_closed_at_once(&mut self, log_line: impl AsRef<str>) {
        assert_eq!(
            self.take_events(),
            [Event::Release, log(log_line.as_ref()), Event::CloseAtOnce]
        );
    }

    /// The client must have received exactly the canned answer `status_line` + `message` (see
    /// [`canned`]), the events must be exactly `events` (the last of them `Close`), and the
    /// connection must be closed.
    ///
    /// Why: how every refusal the proxy answers itself ends.
    #[track_caller]
    pub fn expect_canned_then_close(&mut self, status_line: &str, message: &str, events: &[Event]) {
        assert_eq!(self.take_client(), canned(status_line, message));
        assert_eq!(self.take_events(), events);
        assert!(self.is_closed());
    }

    /// Takes the events and checks the exchange was cut off: they must be exactly the upstream
    /// connection closing (not pooled), the access-log line `log_line`, and the client
    /// connection closing.
    ///
    /// Why: every abort (bad body, truncation, early answer, timeout, vanished peer) ends this
    /// way; only the log line's status, counts and reason differ.
    #[track_caller]
    pub fn expect_cut_off(&mut self, log_line: impl AsRef<str>) {
        assert_eq!(
            self.take_events(),
            [Event::CloseUpstream, log(log_line.as_ref()), Event::Close]
        );
    }
}

pub fn dial(target: &str, pooled: bool) -> Event {
    Event::Dial(target.to_string(), pooled)
}

/// An access-log event with exactly this line (virtual time makes the duration 0.000ms unless
/// the test moved the clock).
pub fn log(line: &str) -> Event {
    Event::Log(line.to_string())
}

/// The access-log line of the default script client (`127.0.0.1:50000`):
/// `CLIENT METHOD TARGET STATUS RX TX TAIL`, where `tail` is the duration and any
/// `reason=...`, e.g. `line("GET http://h/", 200, req.len(), resp.len(), "0.000ms")`.
pub fn line(method_target: &str, status: u16, rx: usize, tx: usize, tail: &str) -> String {
    format!("127.0.0.1:50000 {method_target} {status} {rx} {tx} {tail}")
}

/// A canned answer, exactly as the core writes it.
pub fn canned(status_line: &str, message: &str) -> String {
    let extra = match &status_line[..3] {
        "407" => "Proxy-Authenticate: Basic realm=\"ringway\"\r\n",
        "429" | "503" => "Retry-After: 1\r\n",
        _ => "",
    };
    format!(
        "HTTP/1.1 {status_line}\r\n{extra}Proxy-Status: ringway; error={}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}\n",
        proxy_status_error(message),
        message.len() + 1
    )
}

/// The RFC 9209 error type each canned message is sent with: written out by hand, as an
/// oracle for the core's `Problem::proxy_status_error`.
pub fn proxy_status_error(message: &str) -> &'static str {
    match message {
        "This proxy needs a user name and password (Proxy-Authorization: Basic)."
        | "Your address is not allowed to use this proxy."
        | "CONNECT to this port is not allowed." => "http_request_denied",
        "The request already passed through this proxy." => "proxy_loop_detected",
        "The upstream host name could not be resolved." => "dns_error",
        "The upstream host name could not be resolved in time." => "dns_timeout",
        "The upstream server could not be reached." => "connection_refused",
        "The upstream server did not answer the connection in time." => "connection_timeout",
        "The upstream server sent an invalid response." => "http_protocol_error",
        "The upstream server closed the connection without a response." => "connection_terminated",
        "The upstream server did not respond in time." => "http_response_timeout",
        "Too many connections from your address; retry later."
        | "The proxy is at its connection limit; retry later." => "connection_limit_reached",
        "This connection was opened for another host: connect to that host separately." => {
            "http_request_denied"
        }
        _ => "http_request_error",
    }
}

/// Normalises a trace so that the same exchange fed in different pieces compares equal:
/// consecutive writes to the same side are merged.
pub fn normalise(trace: &[Output]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending: Option<(&str, Vec<u8>)> = None;
    let flush = |pending: &mut Option<(&str, Vec<u8>)>, out: &mut Vec<String>| {
        if let Some((side, bytes)) = pending.take() {
            out.push(format!("{side}:{}", String::from_utf8_lossy(&bytes)));
        }
    };
    for o in trace {
        let (side, data) = match o {
            Output::ToClient(b) => ("client", b),
            Output::ToUpstream(b) => ("upstream", b),
            // Leftover tunnel bytes and relayed ones are the same stream, however they were cut.
            Output::StartTunnel {
                to_upstream,
                to_client,
            } => {
                flush(&mut pending, &mut out);
                out.push("StartTunnel".to_string());
                assert!(
                    to_client.is_empty(),
                    "normalise handles CONNECT tunnels only"
                );
                pending = Some(("upstream", to_upstream.to_vec()));
                continue;
            }
            other => {
                flush(&mut pending, &mut out);
                out.push(format!("{other:?}"));
                continue;
            }
        };
        match &mut pending {
            Some((s, bytes)) if *s == side => bytes.extend_from_slice(data),
            _ => {
                flush(&mut pending, &mut out);
                pending = Some((side, data.to_vec()));
            }
        }
    }
    flush(&mut pending, &mut out);
    out
}
