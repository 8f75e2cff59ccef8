//! The per-client-connection state machine: everything that affects state transitions lives here.
//!
//! A [`Connection`] is fed by `handle_*` calls (bytes, EOFs, dial results, relayed counts,
//! timeouts; each takes `now`) and answers through [`Connection::poll_output`] with
//! [`Output`]s for the runtime to carry out in order. The drain rule, the only rule:
//!
//! > After every `handle_*` call, call `poll_output` until it returns `None`, carrying out each
//! > output in order; then sleep until [`Connection::poll_timeout`] (or until IO), and call
//! > [`Connection::handle_timeout`] when it passes. A wake that is early or late is harmless.
//!
//! Phases: `ReadingHead` → (`Dialing` → `Forwarding` | `Dialing` → `Tunnel`) → `ReadingHead`
//! again for keep-alive, or `Closed`. Bytes the client sends ahead (pipelining) wait in the
//! connection's input until their turn; how much can wait is bounded because the runtime reads
//! from the client only while [`Connection::wants_client_read`] says so.
//!
//! Failures: a peer's misbehaviour never surfaces as an `Err`. Before a response began, the
//! client gets a canned answer for the [`Problem`], then the connection closes; after, the
//! connection closes without completing the response, so a truncated body is never presented
//! as complete. Caller misuse (input in a phase that cannot take it) is ignored, with a
//! `debug_assert!` where it signals a runtime bug.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use bytes::{Buf, Bytes, BytesMut};
use core::net::{IpAddr, SocketAddr};

use crate::body::{BodyDecoder, BodyKind};
use crate::config::Config;
use crate::dial_schedule::{AttemptId, DialSchedule};
use crate::egress::{self, HostKind};
use crate::final_recipient::LocalAnswer;
use crate::head::HeadScanner;
use crate::log::AccessRecord;
use crate::parent::Hop;
use crate::policy::Authentication;
use crate::problem::Problem;
use crate::request;
use crate::response::{self, ClientFraming};
use crate::route::{self, Decision};
use crate::target::Authority;
use crate::time::Instant;
use crate::tunnel::{Direction, TunnelMeter, TunnelStep};

/// The answer to a successful CONNECT.
pub const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// Something the runtime must do. Carry out outputs in the order they come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the client.
    ToClient(Bytes),
    /// Write these bytes to the upstream connection (only ever after a successful dial).
    ToUpstream(Bytes),
    /// Look up the addresses of `authority`'s host name (never an IP literal: the core takes
    /// those as they are) and report them with [`Connection::handle_resolved`]. The core
    /// judges every address before any is dialed (anti-rebinding: one lookup per request,
    /// and only what was judged is ever connected to).
    Resolve(Authority),
    /// Obtain a connection to exactly `addr`, an address the policy approved, and report with
    /// [`Connection::handle_dial`] naming `attempt`. With `allow_pooled`, an idle pooled
    /// connection to `addr` may serve instead of a new one (pool by address, so a pooled
    /// connection is only ever reused for an address that is judged allowed now).
    ///
    /// Several attempts of one dial may be in flight at once (Happy Eyeballs, RFC 8305: the
    /// next address starts 250 ms after the previous one unless that failed sooner). The
    /// first to succeed becomes the upstream connection; the core cancels the others with
    /// [`Output::CancelConnect`]. A runtime that cannot run attempts side by side may carry
    /// them out one after another, as long as it honours the cancellations.
    Connect {
        /// Names this attempt in its result and its cancellation.
        attempt: AttemptId,
        /// Where to connect.
        addr: SocketAddr,
        /// Whether an idle pooled connection to `addr` may serve.
        allow_pooled: bool,
        /// Whether the core sends the request again on a fresh connection if a pooled one
        /// turns out to be closed (an idempotent request without a body, not yet retried).
        /// When false, a pooled connection MUST first be checked to be still open (e.g. a
        /// non-blocking peek): the request, a POST say, could not be sent again.
        retryable: bool,
    },
    /// Abandon the connection attempt `attempt` (another one won the race): stop it, close
    /// its connection if it completed already, and never report its result. Only ever names
    /// an attempt whose result was not yet reported.
    CancelConnect(AttemptId),
    /// The upstream connection ended cleanly: put it in the idle pool for `authority` reuse.
    ReleaseUpstream,
    /// Close the upstream connection (it may not be reused).
    CloseUpstream,
    /// Shut down the write side towards the client (tunnel half-close).
    ShutdownClientWrite,
    /// Shut down the write side towards the upstream (tunnel half-close).
    ShutdownUpstreamWrite,
    /// From now on relay bytes between the two sockets yourself: first write `to_upstream` to
    /// the upstream and `to_client` to the client (bytes that arrived with the heads; already
    /// counted), then report with [`Connection::handle_relayed`] and the EOF/error handlers.
    StartTunnel {
        /// Client bytes that followed the CONNECT head (e.g. a TLS ClientHello).
        to_upstream: Bytes,
        /// Upstream bytes that followed a `101` head.
        to_client: Bytes,
    },
    /// Write this access-log record (boxed: it is large and comes once per request, while
    /// the other outputs are small and frequent).
    Log(Box<AccessRecord>),
    /// Close the client connection and any upstream connection still held. Always last.
    Close {
        /// Whether the client may still send bytes nobody will read. Then the runtime should
        /// half-close, and read and discard what comes for a while before closing: closing a
        /// socket with unread input makes the kernel answer with a reset, which can destroy
        /// the response just written (RFC 9112 §9.6). `false` when nothing more can come:
        /// the client half-closed, or it said `Connection: close` (it MUST NOT send more)
        /// and everything it sent was read. Then close at once: lingering would cost a
        /// `shutdown`, a wake-up and a read for nothing (about 8% of the proxy's CPU with a
        /// new connection per request).
        linger: bool,
    },
}

/// Why a connection attempt ([`Output::Connect`]) failed, as the runtime saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DialError {
    /// The address refused the connection or was unreachable.
    Refused,
    /// The runtime's own timer for the attempt expired first.
    Timeout,
    /// Intercepted tunnels: the origin's TLS certificate was refused (untrusted, expired,
    /// for another name).
    TlsCertificate,
    /// Intercepted tunnels: the TLS handshake with the origin failed otherwise.
    TlsProtocol,
}

impl DialError {
    fn problem(self) -> Problem {
        match self {
            DialError::Refused => Problem::DialFailed,
            DialError::Timeout => Problem::DialTimeout,
            DialError::TlsCertificate => Problem::UpstreamTlsCertificate,
            DialError::TlsProtocol => Problem::UpstreamTlsProtocol,
        }
    }
}

/// A successful dial.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Dialed {
    /// Whether the connection came from the idle pool (it may turn out to be stale).
    pub reused: bool,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    ReadingHead,
    /// A lookup ([`Output::Resolve`], `resolving`) or the connection attempts
    /// ([`Output::Connect`]) are out; `deadline` is when the lookup (`dns_timeout`) or the
    /// whole race of attempts (`connect_timeout`) counts as timed out.
    Dialing { deadline: Instant, resolving: bool },
    /// Request going up, response coming down.
    Forwarding,
    /// Bytes relayed by the runtime.
    Tunnel(TunnelMeter),
    /// Done; every input is ignored.
    Closed,
}

#[derive(Debug)]
enum ResponseState {
    AwaitingHead,
    Body {
        decoder: BodyDecoder,
        framing: ClientFraming,
    },
    Done,
}

/// One request from head to end.
#[derive(Debug)]
struct Exchange {
    started: Instant,
    method: Bytes,
    target: Bytes,
    authority: Option<Authority>,
    tunnel: bool,
    /// The head to send upstream (kept for one retry on a stale pooled connection).
    forward_head: Bytes,
    head_request: bool,
    client_minor: u8,
    keep_alive: bool,
    /// The client's request said it is the last one (`Connection: close`, or HTTP/1.0
    /// without keep-alive).
    client_close: bool,
    upgrade: bool,
    /// Idempotent, bodiless, not yet retried.
    retry_ok: bool,
    /// Whether an idle pooled upstream connection may serve this exchange.
    pooled_ok: bool,
    reused: bool,
    /// The address connected to (or being tried), for the retry and the access log.
    upstream_addr: Option<SocketAddr>,
    /// The resolved address the egress policy refused, named in the 403.
    refused_addr: Option<IpAddr>,
    request: BodyDecoder,
    response: ResponseState,
    status: u16,
    rx: u64,
    tx: u64,
    upstream_seen: bool,
    upstream_reusable: bool,
    last_activity: Instant,
    /// The proxy-auth user, for the access record.
    user: Option<Arc<str>>,
    /// Which hop carries the exchange, when a parent proxy is configured.
    hop: Option<Hop>,
    /// A CONNECT through the parent: its answer to our CONNECT is awaited (2xx: the tunnel
    /// starts; anything else is relayed to the client, then the connection closes).
    parent_connect: bool,
}

/// One client connection, from the first request head to close.
///
/// It holds everything the proxy remembers about the connection, so that the runtime holds
/// only sockets and timers.
///
/// Methods fall in four groups: getters (`wants_*_read`, `is_*`, `tunnel`), inputs
/// (`handle_*`, each taking `now`), the one command ([`Connection::drain`]) and outputs
/// ([`Connection::poll_output`], [`Connection::poll_timeout`]). The drain rule: after every
/// input or command, call `poll_output` until it returns `None`, carrying out each [`Output`]
/// in order; then wait for IO or `poll_timeout`. The crate docs show the whole run loop.
#[derive(Debug)]
pub struct Connection {
    config: Arc<Config>,
    /// A configuration given by [`Connection::set_config`] during an exchange or tunnel,
    /// applied when the connection next waits for a request head.
    next_config: Option<Arc<Config>>,
    client: SocketAddr,
    phase: Phase,
    client_in: Bytes,
    upstream_in: Bytes,
    client_scan: HeadScanner,
    upstream_scan: HeadScanner,
    out: VecDeque<Output>,
    /// When the wait for the current head began (accept, or end of the previous exchange).
    waiting_since: Instant,
    /// When the first byte of the current head arrived.
    head_started: Option<Instant>,
    /// Client bytes consumed before the current head (blank lines between requests).
    pending_rx: u64,
    first_request: bool,
    /// The client shut its write side after a complete request.
    client_eof: bool,
    /// The runtime is shutting down: finish the current exchange, then close.
    draining: bool,
    upstream_connected: bool,
    exchange: Option<Exchange>,
    /// The approved addresses of the current dial and its attempts (kept across exchanges
    /// so a keep-alive connection allocates it once).
    schedule: DialSchedule,
    /// The port the resolved addresses of the current dial are dialed on.
    dial_port: u16,
    /// The current dial goes to the parent proxy, whose addresses the operator chose: they
    /// are exempt from the egress guard (the target was judged before).
    dial_exempt: bool,
    /// Set by [`Connection::refuse`]: the answer to the first request.
    refusal: Option<Problem>,
    /// Intercepted-tunnel mode ([`Connection::new_intercepted`]): the CONNECT authority
    /// every request is pinned to.
    pinned: Option<Authority>,
    /// The runtime's word for the open tunnel's log line ([`Connection::note_tunnel`]).
    tunnel_note: Option<&'static str>,
    /// The upstream cannot be replaced once gone ([`Connection::set_single_upstream`]).
    single_upstream: bool,
    /// That single upstream was connected (a dial succeeded): its end ends the connection.
    single_upstream_served: bool,
}

impl Connection {
    // ----- construction and getters -----

    /// A connection from `client`, accepted at `now`: one per accepted client socket, because
    /// everything a client connection remembers (buffered bytes, the exchange under way, its
    /// deadlines) lives here and nowhere else. `config` is shared by every connection (an
    /// `Arc`, built once); `now` starts the clock on the first request head.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use ringway_core::{Config, Connection, Instant};
    ///
    /// let config = Arc::new(Config::default()); // once, for every connection
    /// let accepted = Instant::ZERO; // the runtime's clock, any origin it likes
    /// let conn = Connection::new(config, "127.0.0.1:50312".parse().unwrap(), accepted);
    /// // A fresh connection wants a request head, and gives up on it after `header_timeout`.
    /// assert!(conn.wants_client_read());
    /// assert_eq!(conn.poll_timeout(), Some(accepted + Duration::from_secs(30)));
    /// ```
    pub fn new(config: Arc<Config>, client: SocketAddr, now: Instant) -> Connection {
        Connection {
            config,
            next_config: None,
            client,
            phase: Phase::ReadingHead,
            client_in: Bytes::new(),
            upstream_in: Bytes::new(),
            client_scan: HeadScanner::default(),
            upstream_scan: HeadScanner::default(),
            out: VecDeque::new(),
            waiting_since: now,
            head_started: None,
            pending_rx: 0,
            first_request: true,
            client_eof: false,
            draining: false,
            upstream_connected: false,
            exchange: None,
            schedule: DialSchedule::default(),
            dial_port: 0,
            dial_exempt: false,
            refusal: None,
            pinned: None,
            tunnel_note: None,
            single_upstream: false,
            single_upstream_served: false,
        }
    }

    /// A connection for the plaintext inside an intercepted CONNECT tunnel to `pinned`: the
    /// runtime terminated the client's TLS (and speaks TLS to the origin), and feeds and
    /// takes plaintext exactly as for [`Connection::new`]. Requests are origin-form and must
    /// name `pinned` (else 421, see [`crate::intercept::route`]); everything else (keep-alive,
    /// bodies, every smuggling defence, the egress policy on each dial, `Via`) is the same.
    /// The access log shows `https://host:port/path` targets.
    ///
    /// The runtime MUST NOT give this connection a plain pooled upstream connection: with
    /// `allow_pooled` it may reuse only a TLS connection it made for the same authority.
    pub fn new_intercepted(
        config: Arc<Config>,
        client: SocketAddr,
        pinned: Authority,
        now: Instant,
    ) -> Connection {
        let mut c = Connection::new(config, client, now);
        c.pinned = Some(pinned);
        c
    }

    /// The authority of the CONNECT whose tunnel is open (after [`Output::StartTunnel`]), so
    /// the runtime can decide whether to intercept it (`intercept::decide`).
    pub fn tunnel_authority(&self) -> Option<&Authority> {
        match (&self.phase, &self.exchange) {
            (Phase::Tunnel(_), Some(e)) if e.tunnel => e.authority.as_ref(),
            _ => None,
        }
    }

    /// A word for the access-log line of the open tunnel (`reason=`): what the runtime did
    /// with it that the core could not see (interception: `not_tls`, `tls_ech`,
    /// `client_tls_abort`). It replaces the tunnel's own end reason (how a passed-through
    /// tunnel ended is its endpoints' business). Ignored outside a tunnel.
    pub fn note_tunnel(&mut self, word: &'static str) {
        if self.tunnel_authority().is_some() {
            self.tunnel_note = Some(word);
        }
    }

    /// The runtime has one path to the upstream and cannot make another once it is gone: an
    /// intercepted tunnel through a parent proxy, whose one path to the origin is the
    /// parent's `CONNECT`. The connection then mirrors the origin's close to the client,
    /// so the client's next request goes on a new connection (a new `CONNECT`) instead of
    /// meeting a `502`: a response whose connection the origin closes after it goes out
    /// with `Connection: close`, and once the upstream it was connected to ends (EOF or an
    /// error, even while idle) the connection takes no further requests, as in
    /// [`Connection::drain`]. An upstream that fails before any dial succeeded (its TLS
    /// handshake, say) is left to the dial's answer.
    pub fn set_single_upstream(&mut self) {
        self.single_upstream = true;
    }

    /// The CONNECT authority of an intercepted tunnel ([`Connection::new_intercepted`]).
    pub fn pinned(&self) -> Option<&Authority> {
        self.pinned.as_ref()
    }

    /// The client's address, as given to [`Connection::new`]: for the runtime's own logs and
    /// metrics, so it need not keep a copy beside the connection.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// Whether the runtime should read from the client now. False while a complete request
    /// waits for its response, which bounds how much pipelined input can pile up.
    pub fn wants_client_read(&self) -> bool {
        match &self.phase {
            Phase::ReadingHead => true,
            Phase::Forwarding => {
                !self.client_eof && self.exchange.as_ref().is_some_and(|e| !e.request.is_done())
            }
            Phase::Dialing { .. } | Phase::Tunnel(_) | Phase::Closed => false,
        }
    }

    /// Whether the runtime should read from the upstream now.
    pub fn wants_upstream_read(&self) -> bool {
        matches!(self.phase, Phase::Forwarding)
            && self
                .exchange
                .as_ref()
                .is_some_and(|e| !matches!(e.response, ResponseState::Done))
    }

    /// Whether the connection is in tunnel mode (the runtime relays bytes itself).
    pub fn is_tunnel(&self) -> bool {
        matches!(self.phase, Phase::Tunnel(_))
    }

    /// Whether the connection is finished ([`Output::Close`] was produced).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the connection sits between requests with nothing buffered: closing it now
    /// loses nothing (what a graceful shutdown may close at once).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::ReadingHead)
            && self.head_started.is_none()
            && self.client_in.is_empty()
    }

    /// The tunnel's meter, while in tunnel mode: how the runtime learns which directions are
    /// still open (read a direction's source until [`TunnelMeter::has_ended`]) and how many
    /// bytes moved so far.
    pub fn tunnel(&self) -> Option<&TunnelMeter> {
        match &self.phase {
            Phase::Tunnel(m) => Some(m),
            _ => None,
        }
    }

    // ----- output -----

    /// The next thing for the runtime to do, in order; `None` when there is nothing until the
    /// next input or deadline. This is the only way the core acts: call it after every
    /// `handle_*` call until it returns `None` (the drain rule), because outputs queued by one
    /// input must be carried out before the next input can be judged.
    ///
    /// A plain GET, from client bytes to the access-log record:
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use bytes::Bytes;
    /// # use ringway_core::{Config, Connection, Dialed, Instant, Output};
    /// # let now = Instant::ZERO;
    /// # let mut conn = Connection::new(Arc::new(Config::default()), "127.0.0.1:50312".parse().unwrap(), now);
    /// conn.handle_client_data(now, Bytes::from_static(
    ///     b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
    /// ));
    /// // The head is complete and allowed: the core asks for the name's addresses ...
    /// let Some(Output::Resolve(authority)) = conn.poll_output() else { panic!() };
    /// assert_eq!(authority.to_string(), "example.com:80");
    /// assert_eq!(conn.poll_output(), None); // drained: wait for the lookup
    ///
    /// // ... judges each against the egress policy, and asks to connect to an approved one.
    /// conn.handle_resolved(now, &["93.184.215.14".parse().unwrap()]);
    /// let Some(Output::Connect { attempt, addr, .. }) = conn.poll_output() else { panic!() };
    /// assert_eq!(addr, "93.184.215.14:80".parse().unwrap());
    /// assert_eq!(conn.poll_output(), None); // drained: wait for the connection
    ///
    /// conn.handle_dial(now, attempt, Ok(Dialed { reused: false }));
    /// let Some(Output::ToUpstream(head)) = conn.poll_output() else { panic!() };
    /// let want = "GET / HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 ringway\r\n\r\n";
    /// assert_eq!(head, want.as_bytes());
    /// assert_eq!(conn.poll_output(), None);
    ///
    /// conn.handle_upstream_data(now, Bytes::from_static(
    ///     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    /// ));
    /// let mut to_client = Vec::new();
    /// while let Some(output) = conn.poll_output() {
    ///     match output {
    ///         Output::ToClient(bytes) => to_client.extend_from_slice(&bytes),
    ///         // The response is complete: the upstream may serve someone else.
    ///         Output::ReleaseUpstream => {}
    ///         Output::Log(record) => {
    ///             assert!(record.to_string().contains(" GET http://example.com/ 200 "))
    ///         }
    ///         other => panic!("unexpected {other:?}"),
    ///     }
    /// }
    /// let want = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 ringway\r\n\r\nhi";
    /// assert_eq!(to_client, want.as_bytes());
    /// assert!(conn.wants_client_read()); // kept alive for the next request
    /// ```
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Connection::handle_timeout`] should be called next, if ever. Never in the past
    /// relative to the last input's `now` unless that deadline already passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = &self.config;
        match &self.phase {
            Phase::ReadingHead => Some(match self.head_started {
                Some(t) => t + c.header_timeout,
                None if self.first_request => self.waiting_since + c.header_timeout,
                None => self.waiting_since + c.idle_timeout,
            }),
            Phase::Dialing {
                deadline,
                resolving: false,
            } => Some(match self.schedule.next_start() {
                Some(next) => next.min(*deadline),
                None => *deadline,
            }),
            Phase::Dialing { deadline, .. } => Some(*deadline),
            Phase::Forwarding => self
                .exchange
                .as_ref()
                .map(|e| e.last_activity + c.exchange_idle_timeout),
            Phase::Tunnel(m) => Some(m.idle_deadline(c.tunnel_idle_timeout)),
            Phase::Closed => None,
        }
    }

    // ----- commands -----

    /// Replaces the configuration (limits, timeouts, policy) from the next request head on:
    /// a reload. Between requests it applies at once, so the head that arrives next (or is
    /// arriving) is read, timed and routed under it; during an exchange or a tunnel it waits
    /// until the connection is back between requests, so what is in flight keeps the
    /// configuration it started with (a tunnel keeps it to the end). The latest call wins.
    pub fn set_config(&mut self, config: Arc<Config>) {
        if matches!(self.phase, Phase::ReadingHead) && self.exchange.is_none() {
            self.config = config;
            self.next_config = None;
        } else {
            self.next_config = Some(config);
        }
    }

    /// Graceful shutdown: take no further requests. An idle connection closes at once; a
    /// request already under way (even a head still arriving) is answered with
    /// `Connection: close` and the connection closes after it. Tunnels are left to the
    /// runtime's grace period.
    pub fn drain(&mut self) {
        self.draining = true;
        if self.is_idle() {
            self.close_silently();
        }
    }

    /// The connection may not be served ([`Config::admit`] said why): its first request is
    /// answered with `problem` (429 or 503, with `Retry-After`) and the connection closes.
    /// Reading the request first, rather than resetting at once, lets the client see the
    /// answer (a reset with unread input would destroy it) and puts a line in the access log.
    pub fn refuse(&mut self, problem: Problem) {
        self.refusal = Some(problem);
    }

    // ----- input -----

    /// Bytes arrived from the client, in whatever pieces the socket delivered them: the core
    /// buffers partial heads itself, so the runtime never parses or frames anything. Outside a
    /// tunnel every client byte goes through here (in a tunnel the runtime relays them and
    /// reports [`Connection::handle_relayed`]).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use bytes::Bytes;
    /// # use ringway_core::{Config, Connection, Instant, Output};
    /// # let now = Instant::ZERO;
    /// # let mut conn = Connection::new(Arc::new(Config::default()), "127.0.0.1:50312".parse().unwrap(), now);
    /// // Half a head: nothing to do yet.
    /// conn.handle_client_data(now, Bytes::from_static(b"CONNECT mail.example:25 HTTP/1.1\r\n"));
    /// assert_eq!(conn.poll_output(), None);
    /// // The rest: CONNECT to port 25 is outside the default policy (443 only), so the client
    /// // gets a canned 403, the access log a record, and the connection closes.
    /// conn.handle_client_data(now, Bytes::from_static(b"Host: mail.example:25\r\n\r\n"));
    /// let Some(Output::ToClient(answer)) = conn.poll_output() else { panic!() };
    /// assert!(answer.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    /// let Some(Output::Log(record)) = conn.poll_output() else { panic!() };
    /// assert_eq!(record.status, 403);
    /// // It may still send bytes nobody reads: the runtime lingers before closing.
    /// assert_eq!(conn.poll_output(), Some(Output::Close { linger: true }));
    /// ```
    pub fn handle_client_data(&mut self, now: Instant, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match self.phase {
            Phase::Closed => return,
            Phase::Tunnel(_) => {
                debug_assert!(
                    false,
                    "tunnel bytes are relayed by the runtime, not fed to the core"
                );
                return;
            }
            _ => {}
        }
        if self.head_started.is_none() && matches!(self.phase, Phase::ReadingHead) {
            self.head_started = Some(now);
        }
        if let Some(e) = &mut self.exchange {
            e.last_activity = now.max(e.last_activity);
        }
        append(&mut self.client_in, data);
        self.advance(now);
    }

    /// The client shut down its write side (read returned 0).
    pub fn handle_client_eof(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::Tunnel(_) => self.tunnel_end(now, Direction::ClientToUpstream),
            Phase::ReadingHead => self.close_silently(),
            Phase::Dialing { .. } | Phase::Forwarding => {
                let body_done = self.exchange.as_ref().is_some_and(|e| e.request.is_done());
                if body_done {
                    // A half-close after a complete request: answer it, then close.
                    self.client_eof = true;
                } else {
                    self.abort(now, "client_closed");
                }
            }
        }
    }

    /// Reading from or writing to the client failed (reset, broken pipe).
    pub fn handle_client_error(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::ReadingHead => self.close_silently(),
            _ => self.abort(now, "client_error"),
        }
    }

    /// The lookup asked for by [`Output::Resolve`] finished with these addresses; an empty
    /// slice means it failed (no such name, no resolver reachable, a server failure: all
    /// `502` with `Proxy-Status: ringway; error=dns_error`). A result arriving after the dial
    /// timed out (or after close) is ignored.
    pub fn handle_resolved(&mut self, now: Instant, addrs: &[IpAddr]) {
        if !matches!(
            self.phase,
            Phase::Dialing {
                resolving: true,
                ..
            }
        ) {
            return;
        }
        let port = self.dial_port;
        if addrs.is_empty() {
            return self.fail(now, Problem::DnsFailed);
        }
        self.schedule.clear();
        // Every address is judged; only those allowed are ever dialed (no second lookup).
        let egress = &self.config.policy.egress;
        let mut refused = None;
        for &ip in addrs {
            let addr = SocketAddr::new(ip, port);
            let verdict = if self.dial_exempt {
                Ok(())
            } else {
                egress.judge_addr(addr)
            };
            match verdict {
                Ok(()) => self.schedule.push(addr),
                Err(reason) => {
                    refused.get_or_insert((reason, ip));
                }
            }
        }
        self.schedule.interleave();
        if self.schedule.is_empty() {
            if let (Some((reason, ip)), Some(e)) = (refused, &mut self.exchange) {
                e.refused_addr = Some(ip);
                return self.fail(now, Problem::Denied(reason));
            }
        }
        // The lookup is done: the connection attempts get their own deadline.
        self.phase = Phase::Dialing {
            deadline: now + self.config.connect_timeout,
            resolving: false,
        };
        self.start_attempts(now);
    }

    /// The connection attempt `attempt` asked for by [`Output::Connect`] finished. The first
    /// success wins (the other attempts in flight are cancelled); a failure makes the next
    /// approved address due at once, and the last failure, with nothing left to try, is the
    /// answer (502, or 504 for [`DialError::Timeout`]). A result for an attempt that is not
    /// in flight (cancelled, or arriving after the dial timed out or the connection closed)
    /// is ignored.
    pub fn handle_dial(
        &mut self,
        now: Instant,
        attempt: AttemptId,
        result: Result<Dialed, DialError>,
    ) {
        if !matches!(
            self.phase,
            Phase::Dialing {
                resolving: false,
                ..
            }
        ) || !self.schedule.is_in_flight(attempt)
        {
            return;
        }
        let dialed = match result {
            Ok(d) => d,
            Err(error) => {
                self.schedule.failed(attempt, error);
                return self.start_attempts(now);
            }
        };
        let out = &mut self.out;
        let winner = self
            .schedule
            .won(attempt, |loser| out.push_back(Output::CancelConnect(loser)));
        self.upstream_connected = true;
        self.single_upstream_served |= self.single_upstream;
        let Some(e) = &mut self.exchange else {
            return self.fail(now, Problem::DialFailed);
        };
        if winner.is_some() {
            e.upstream_addr = winner;
        }
        e.last_activity = now;
        e.reused = dialed.reused;
        if e.parent_connect {
            // Ask the parent for the tunnel; its answer decides (see `response_head`).
            let (Some(parent), Some(target)) = (&self.config.parent, &e.authority) else {
                return self.fail(now, Problem::DialFailed);
            };
            let head = parent.connect_head(target, self.config.via_pseudonym);
            self.out.push_back(Output::ToUpstream(Bytes::from(head)));
            self.phase = Phase::Forwarding;
        } else if e.tunnel {
            e.status = 200;
            self.out
                .push_back(Output::ToClient(Bytes::from_static(CONNECT_ESTABLISHED)));
            let to_upstream = core::mem::take(&mut self.client_in);
            self.start_tunnel(now, to_upstream, Bytes::new());
        } else {
            self.out
                .push_back(Output::ToUpstream(e.forward_head.clone()));
            self.phase = Phase::Forwarding;
            self.advance(now);
        }
    }

    /// Bytes arrived from the upstream.
    pub fn handle_upstream_data(&mut self, now: Instant, data: Bytes) {
        if data.is_empty() || !matches!(self.phase, Phase::Forwarding) {
            debug_assert!(
                !matches!(self.phase, Phase::Tunnel(_)),
                "tunnel bytes are relayed by the runtime"
            );
            return;
        }
        if let Some(e) = &mut self.exchange {
            e.upstream_seen = true;
            e.last_activity = now.max(e.last_activity);
        }
        append(&mut self.upstream_in, data);
        self.pump_response(now);
    }

    /// The upstream shut down its write side (read returned 0).
    pub fn handle_upstream_eof(&mut self, now: Instant) {
        match self.phase {
            Phase::Tunnel(_) => return self.tunnel_end(now, Direction::UpstreamToClient),
            Phase::Forwarding => self.upstream_gone(now, true),
            _ => {}
        }
        self.single_upstream_ended();
    }

    /// Reading from or writing to the upstream failed (reset, broken pipe).
    pub fn handle_upstream_error(&mut self, now: Instant) {
        match self.phase {
            Phase::Tunnel(_) => return self.abort(now, "upstream_error"),
            Phase::Forwarding => self.upstream_gone(now, false),
            _ => {}
        }
        self.single_upstream_ended();
    }

    /// A single upstream ([`Connection::set_single_upstream`]) that served ended: no
    /// further requests (an idle connection closes now, a busy one after its answer).
    fn single_upstream_ended(&mut self) {
        if self.single_upstream_served && !matches!(self.phase, Phase::Closed) {
            self.drain();
        }
    }

    /// In tunnel mode: the runtime moved `n` more bytes in `direction`.
    pub fn handle_relayed(&mut self, now: Instant, direction: Direction, n: u64) {
        if let Phase::Tunnel(m) = &mut self.phase {
            let counted = m.record(now, direction, n);
            debug_assert!(counted, "bytes relayed after that direction ended");
        }
    }

    /// A deadline from [`Connection::poll_timeout`] may have passed. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        match &self.phase {
            Phase::ReadingHead if self.head_started.is_some() => {
                // What the slow client did send: its request line (if complete) and bytes.
                let (method, target) = self.request_line_of(&self.client_in);
                self.begin_exchange(now, method, target);
                self.add_rx(self.client_in.len());
                self.fail(now, Problem::HeaderTimeout);
            }
            Phase::ReadingHead => self.close_silently(),
            Phase::Dialing {
                resolving: true, ..
            } => self.fail(now, Problem::DnsTimeout),
            Phase::Dialing { deadline, .. } if now >= *deadline => {
                let problem = self.dial_problem(DialError::Timeout);
                self.fail(now, problem)
            }
            // The next attempt of the race is due.
            Phase::Dialing { .. } => self.start_attempts(now),
            Phase::Forwarding => self.fail(now, Problem::UpstreamTimeout),
            Phase::Tunnel(_) => self.abort(now, "tunnel_idle"),
            Phase::Closed => {}
        }
    }

    // ----- request side -----

    /// Makes whatever progress the buffered client bytes allow.
    fn advance(&mut self, now: Instant) {
        loop {
            match self.phase {
                Phase::ReadingHead => {
                    if !self.read_head(now) {
                        return;
                    }
                }
                Phase::Forwarding => {
                    self.pump_request_body(now);
                    return;
                }
                _ => return,
            }
        }
    }

    /// Tries to take a complete head from the client input. Returns whether the phase moved on.
    fn read_head(&mut self, now: Instant) -> bool {
        // Blank lines before a request line are ignored (RFC 9112 §2.2).
        while self.client_in.starts_with(b"\r\n") {
            self.client_in.advance(2);
            self.pending_rx += 2;
        }
        if self.client_in.is_empty() || self.client_in == b"\r"[..] {
            return false;
        }
        let max = self.config.max_head_bytes;
        // Only the first max + 1 bytes are looked at: the limit wins over anything later, and
        // on rejection rx counts the bytes up to the point of failure, whatever else arrived,
        // so neither the answer nor the log depends on how the input was split.
        let window = &self.client_in[..self.client_in.len().min(max + 1)];
        let len = match self.client_scan.scan(window) {
            Err(problem) => return self.reject_head(now, problem, self.client_scan.error_end()),
            Ok(None) if self.client_in.len() > max => {
                return self.reject_head(now, Problem::HeadTooLarge, max + 1)
            }
            Ok(None) => return false,
            Ok(Some(len)) if len > max => {
                return self.reject_head(now, Problem::HeadTooLarge, max + 1)
            }
            Ok(Some(len)) => len,
        };
        let head = self.client_in.split_to(len);
        self.route_head(now, head);
        true
    }

    fn reject_head(&mut self, now: Instant, problem: Problem, rx: usize) -> bool {
        // Only the first `rx` bytes: whatever else arrived must not change the log line.
        let (method, target) = self.request_line_of(&self.client_in.slice(..rx));
        self.begin_exchange(now, method, target);
        self.add_rx(rx);
        self.fail(now, problem);
        true
    }

    fn route_head(&mut self, now: Instant, head: Bytes) {
        let config = Arc::clone(&self.config);
        let mut slots = request::header_slots();
        let req = match request::parse(&head, &mut slots, config.max_headers, config.via_pseudonym)
        {
            Ok(r) => r,
            Err(Problem::UnsupportedVersion) if request::as_http11(&head).is_some() => {
                // HTTP/1.2 to 1.9: read as 1.1 (rare, so the copy is no burden).
                let copy = request::as_http11(&head).unwrap_or_default();
                return self.route_head(now, Bytes::from(copy));
            }
            Err(problem) => {
                let (method, target) = self.request_line_of(&head);
                self.begin_exchange(now, method, target);
                self.add_rx(head.len());
                return self.fail(now, problem);
            }
        };
        let method = head.slice_ref(req.method.as_bytes());
        let target = self.logged_target(&head, req.target);
        self.begin_exchange(now, method, target);
        self.add_rx(head.len());
        if let Some(problem) = self.refusal {
            if let Some(e) = &mut self.exchange {
                e.head_request = req.is_head();
            }
            return self.fail(now, problem);
        }
        let decision = match &self.pinned {
            Some(pinned) => crate::intercept::route(&req, pinned),
            None => route::decide(&req, self.client.ip(), &config.policy),
        };
        let Some(e) = &mut self.exchange else { return };
        if config.access_records && !config.policy.basic_credentials.is_empty() {
            if let Authentication::User(user) = config.policy.authenticate(req.proxy_authorization)
            {
                e.user = Some(user);
            }
        }
        e.head_request = req.is_head();
        e.client_minor = req.minor_version;
        e.keep_alive = req.keep_alive;
        e.client_close = !req.keep_alive;
        let authority = match &decision {
            Decision::Reject(problem) => return self.fail(now, *problem),
            // Answered here, nothing goes anywhere: no destination to judge.
            Decision::Answer(_) => None,
            Decision::Tunnel(authority) => Some(authority),
            Decision::Forward(target) => Some(&target.authority),
        };
        if let Some(authority) = authority {
            e.authority = Some(authority.clone());
            e.tunnel = matches!(decision, Decision::Tunnel(_));
            if let Err(problem) = precheck(&config, authority, e.tunnel) {
                return self.fail(now, problem);
            }
        }
        // Which hop: the parent, unless an exception lists the target. The egress policy was
        // applied above; the parent resolves names itself.
        // Inside an intercepted tunnel the transport is that tunnel (through the parent
        // already, if it went there): never a second hop.
        let parent = config
            .parent
            .as_ref()
            .filter(|_| self.pinned.is_none())
            .filter(|p| authority.is_some_and(|a| p.carries(a)));
        if config.parent.is_some() && authority.is_some() && self.pinned.is_none() {
            e.hop = Some(if parent.is_some() {
                Hop::Parent
            } else {
                Hop::Direct
            });
        }
        match decision {
            Decision::Reject(_) => {}
            Decision::Tunnel(authority) => {
                e.keep_alive = false;
                match parent {
                    Some(p) => {
                        e.parent_connect = true;
                        self.dial(now, p.authority().clone(), false, true);
                    }
                    None => self.dial(now, authority, false, false),
                }
            }
            Decision::Answer(answer) => {
                // Body bytes we do not read cannot be told from the next request: close after.
                let close = !req.keep_alive || req.body != BodyKind::None || self.draining;
                self.answer_locally(now, answer, &req, close);
            }
            Decision::Forward(target) => {
                let mut out = BytesMut::new();
                match parent {
                    Some(p) => req.write_parent_head(
                        &target,
                        config.via_pseudonym,
                        p.authorization_line(),
                        &mut out,
                    ),
                    None => req.write_forward_head(&target, config.via_pseudonym, &mut out),
                }
                e.forward_head = out.freeze();
                e.upgrade = req.upgrade;
                e.request = BodyDecoder::new(req.body);
                e.retry_ok = req.is_idempotent() && req.body == BodyKind::None && !req.upgrade;
                match parent {
                    // One pool for the parent: its connections carry requests to any origin.
                    Some(p) => self.dial(now, p.authority().clone(), true, true),
                    None => self.dial(now, target.authority, true, false),
                }
            }
        }
    }

    /// Sends the proxy's own answer to `req` (see [`crate::final_recipient`]), logs it, and
    /// either closes or waits for the next request.
    fn answer_locally(
        &mut self,
        now: Instant,
        answer: LocalAnswer,
        req: &request::RequestHead<'_, '_>,
        close: bool,
    ) {
        let Some(e) = &mut self.exchange else { return };
        let connection = if close {
            Some("close")
        } else if req.minor_version == 0 {
            Some("keep-alive")
        } else {
            None
        };
        let mut out = BytesMut::new();
        answer.write_response(req, connection, &mut out);
        e.status = 200;
        e.tx += out.len() as u64;
        self.out.push_back(Output::ToClient(out.freeze()));
        self.log(now, None);
        if close {
            self.close();
        } else {
            self.phase = Phase::ReadingHead;
            self.waiting_since = now;
            self.head_started = (!self.client_in.is_empty()).then_some(now);
            self.client_scan.reset();
        }
    }

    /// The method and target of a refused or unfinished head, for the access log: slices of
    /// it (the target as `logged_target` writes it); empty when its request line
    /// could not be read.
    fn request_line_of(&self, head: &Bytes) -> (Bytes, Bytes) {
        match request::request_line(head) {
            Some((method, target)) => (
                head.slice_ref(method.as_bytes()),
                self.logged_target(head, target),
            ),
            None => (Bytes::new(), Bytes::new()),
        }
    }

    /// A request's target as logged: inside an intercepted tunnel an origin-form target is
    /// written as the URL the client asked for (`https://pinned/path`, built only in this
    /// mode), whether the request is served or answered with an error.
    fn logged_target(&self, head: &Bytes, target: &[u8]) -> Bytes {
        match &self.pinned {
            Some(pinned) if target.first() == Some(&b'/') => Bytes::from(alloc::format!(
                "https://{pinned}{}",
                core::str::from_utf8(target).unwrap_or("/")
            )),
            _ => head.slice_ref(target),
        }
    }

    fn begin_exchange(&mut self, now: Instant, method: Bytes, target: Bytes) {
        let started = self.head_started.unwrap_or(now);
        self.exchange = Some(Exchange {
            started,
            method,
            target,
            authority: None,
            tunnel: false,
            forward_head: Bytes::new(),
            head_request: false,
            client_minor: 1,
            keep_alive: false,
            client_close: false,
            upgrade: false,
            retry_ok: false,
            pooled_ok: false,
            reused: false,
            upstream_addr: None,
            refused_addr: None,
            request: BodyDecoder::new(BodyKind::None),
            response: ResponseState::AwaitingHead,
            status: 0,
            rx: core::mem::take(&mut self.pending_rx),
            tx: 0,
            upstream_seen: false,
            upstream_reusable: false,
            last_activity: now,
            user: None,
            hop: None,
            parent_connect: false,
        });
        self.first_request = false;
    }

    fn add_rx(&mut self, n: usize) {
        if let Some(e) = &mut self.exchange {
            e.rx += n as u64;
        }
    }

    /// Starts the dial of `authority` (the target, or the parent proxy when `exempt`): an
    /// IP literal is tried as it is, a name is resolved first ([`Output::Resolve`]).
    fn dial(&mut self, now: Instant, authority: Authority, allow_pooled: bool, exempt: bool) {
        // Inside an intercepted tunnel the upstream is the tunnel's own (to the origin, or
        // through the parent), judged when the CONNECT was: the runtime answers the lookup
        // with its address, so a literal is looked up too, and nothing is judged again.
        let exempt = exempt || self.pinned.is_some();
        let literal = if self.pinned.is_some() {
            None
        } else {
            authority.ip()
        };
        let resolve = literal.is_none();
        self.schedule.clear();
        self.dial_port = authority.port();
        self.dial_exempt = exempt;
        if let Some(ip) = literal {
            self.schedule.push(SocketAddr::new(ip, authority.port()));
        }
        if let Some(e) = &mut self.exchange {
            e.pooled_ok = allow_pooled;
        }
        let timeout = if resolve {
            self.config.dns_timeout
        } else {
            self.config.connect_timeout
        };
        self.phase = Phase::Dialing {
            deadline: now + timeout,
            resolving: resolve,
        };
        if resolve {
            self.out.push_back(Output::Resolve(authority));
        } else {
            self.start_attempts(now);
        }
    }

    /// The answer to a dial that failed with `error`: about the parent when the dial went
    /// there (the client must learn which hop failed).
    fn dial_problem(&self, error: DialError) -> Problem {
        let parent = self
            .exchange
            .as_ref()
            .is_some_and(|e| e.hop == Some(Hop::Parent));
        match (error, parent) {
            (DialError::Refused, true) => Problem::ParentDialFailed,
            (DialError::Timeout, true) => Problem::ParentDialTimeout,
            // A TLS failure is the origin's, through the parent's tunnel.
            (error, _) => error.problem(),
        }
    }

    /// Asks for the connection attempts of the race that are due at `now`, or fails the dial
    /// with the last attempt's error when every address failed.
    fn start_attempts(&mut self, now: Instant) {
        if self.schedule.is_exhausted() {
            let error = self.schedule.last_error().unwrap_or(DialError::Refused);
            let problem = self.dial_problem(error);
            return self.fail(now, problem);
        }
        let Some(e) = &mut self.exchange else { return };
        while let Some((attempt, addr)) = self.schedule.start_due(now) {
            // The access log names the latest address tried until one wins.
            e.upstream_addr = Some(addr);
            self.out.push_back(Output::Connect {
                attempt,
                addr,
                allow_pooled: e.pooled_ok,
                retryable: e.retry_ok,
            });
        }
    }

    /// Forwards buffered request body bytes upstream.
    fn pump_request_body(&mut self, now: Instant) {
        let Some(e) = &mut self.exchange else { return };
        if e.request.is_done() || self.client_in.is_empty() {
            return;
        }
        let mut consumed = 0;
        let mut failed = false;
        while consumed < self.client_in.len() {
            match e.request.decode(&self.client_in[consumed..]) {
                Ok(step) => {
                    consumed += step.consumed;
                    if step.done || step.consumed == 0 {
                        break;
                    }
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if consumed > 0 {
            e.rx += consumed as u64;
            let chunk = self.client_in.split_to(consumed);
            self.out.push_back(Output::ToUpstream(chunk));
        }
        if failed {
            // Count the byte that showed the framing was bad (it is never forwarded), as a
            // refused head counts through its bad byte.
            e.rx += 1;
            return self.fail(now, Problem::BadChunk);
        }
        self.try_finish(now);
    }

    // ----- response side -----

    fn pump_response(&mut self, now: Instant) {
        loop {
            let Some(e) = &mut self.exchange else { return };
            match &mut e.response {
                ResponseState::AwaitingHead => {
                    let max = self.config.max_head_bytes;
                    let window = &self.upstream_in[..self.upstream_in.len().min(max + 1)];
                    let len = match self.upstream_scan.scan(window) {
                        Ok(Some(len)) if len <= max => len,
                        Ok(None) if self.upstream_in.len() <= max => return,
                        _ => return self.fail(now, Problem::BadResponse),
                    };
                    let head = self.upstream_in.split_to(len);
                    if !self.response_head(now, head) {
                        return;
                    }
                }
                ResponseState::Body { decoder, framing } => {
                    if self.upstream_in.is_empty() {
                        return;
                    }
                    let framing = *framing;
                    let mut consumed = 0;
                    let mut done = false;
                    let mut malformed = false;
                    while consumed < self.upstream_in.len() {
                        let step = match decoder.decode(&self.upstream_in[consumed..]) {
                            Ok(step) => step,
                            Err(_) => {
                                // The valid bytes before the bad framing still go out, as
                                // they would have had they come in an earlier read.
                                malformed = true;
                                break;
                            }
                        };
                        if framing == ClientFraming::Dechunk && !step.payload.is_empty() {
                            let r = step.payload;
                            let piece =
                                self.upstream_in.slice(consumed + r.start..consumed + r.end);
                            e.tx += piece.len() as u64;
                            self.out.push_back(Output::ToClient(piece));
                        }
                        consumed += step.consumed;
                        if step.done || step.consumed == 0 {
                            done = step.done;
                            break;
                        }
                    }
                    let chunk = self.upstream_in.split_to(consumed);
                    if framing == ClientFraming::Passthrough && !chunk.is_empty() {
                        e.tx += chunk.len() as u64;
                        self.out.push_back(Output::ToClient(chunk));
                    }
                    if malformed {
                        return self.abort(now, "bad_response_body");
                    }
                    if done {
                        self.response_done(now);
                    }
                    return;
                }
                ResponseState::Done => {
                    // Bytes beyond the response: the connection is not clean any more.
                    e.upstream_reusable = false;
                    self.upstream_in.clear();
                    return;
                }
            }
        }
    }

    /// Handles one complete response head. Returns whether to keep pumping.
    fn response_head(&mut self, now: Instant, head: Bytes) -> bool {
        let config = Arc::clone(&self.config);
        let Some(e) = &mut self.exchange else {
            return false;
        };
        let mut slots = request::header_slots();
        let res = match response::parse(&head, &mut slots, config.max_headers, e.head_request) {
            Ok(r) => r,
            Err(_) if response::as_http11(&head).is_some() => {
                // HTTP/1.2 to 1.9: read as 1.1 (rare, so the copy is no burden).
                let copy = response::as_http11(&head).unwrap_or_default();
                return self.response_head(now, Bytes::from(copy));
            }
            Err(problem) => {
                self.fail(now, problem);
                return false;
            }
        };
        let mut out = BytesMut::new();
        if e.parent_connect {
            if res.is_interim() {
                return true;
            }
            if (200..300).contains(&res.status) {
                // The parent made the tunnel: ours starts. Bytes after its head are payload.
                e.parent_connect = false;
                e.status = 200;
                self.out
                    .push_back(Output::ToClient(Bytes::from_static(CONNECT_ESTABLISHED)));
                let to_upstream = core::mem::take(&mut self.client_in);
                let to_client = core::mem::take(&mut self.upstream_in);
                self.start_tunnel(now, to_upstream, to_client);
                return false;
            }
            // A refusal (403, 407, 502...): relayed as it is framed, then both close.
            e.keep_alive = false;
        }
        if res.status == 101 {
            if !e.upgrade {
                self.fail(now, Problem::BadResponse);
                return false;
            }
            res.write_client_head(
                ClientFraming::Passthrough,
                Some("upgrade"),
                config.via_pseudonym,
                &mut out,
            );
            e.status = 101;
            e.tx += out.len() as u64;
            self.out.push_back(Output::ToClient(out.freeze()));
            let to_upstream = core::mem::take(&mut self.client_in);
            let to_client = core::mem::take(&mut self.upstream_in);
            self.start_tunnel(now, to_upstream, to_client);
            return false;
        }
        if res.is_interim() {
            // 1xx (100 Continue, 103 Early Hints) go to HTTP/1.1 clients before the final answer.
            if e.client_minor == 1 {
                res.write_client_head(
                    ClientFraming::Passthrough,
                    None,
                    config.via_pseudonym,
                    &mut out,
                );
                e.tx += out.len() as u64;
                self.out.push_back(Output::ToClient(out.freeze()));
            }
            return true;
        }
        let framing = res.client_framing(e.client_minor);
        let close_after = !e.keep_alive
            || self.client_eof
            || self.draining
            || (self.single_upstream && !res.reusable)
            || res.body == BodyKind::CloseDelimited
            || framing == ClientFraming::Dechunk;
        let connection = if close_after {
            Some("close")
        } else if e.client_minor == 0 {
            Some("keep-alive")
        } else {
            None
        };
        res.write_client_head(framing, connection, config.via_pseudonym, &mut out);
        e.keep_alive = !close_after;
        e.status = res.status;
        e.upstream_reusable = res.reusable && !e.parent_connect;
        e.tx += out.len() as u64;
        self.out.push_back(Output::ToClient(out.freeze()));
        let decoder = BodyDecoder::new(res.body);
        if decoder.is_done() {
            e.response = ResponseState::Done;
            self.response_done(now);
            return false;
        }
        e.response = ResponseState::Body { decoder, framing };
        true
    }

    fn response_done(&mut self, now: Instant) {
        if let Some(e) = &mut self.exchange {
            e.response = ResponseState::Done;
            if !self.upstream_in.is_empty() {
                e.upstream_reusable = false;
                self.upstream_in.clear();
            }
        }
        self.try_finish(now);
    }

    /// The upstream ended (EOF when `clean`, else an error) during forwarding.
    fn upstream_gone(&mut self, now: Instant, clean: bool) {
        let Some(e) = &mut self.exchange else { return };
        match &e.response {
            ResponseState::AwaitingHead
                if !e.upstream_seen && e.reused && e.retry_ok && !self.single_upstream =>
            {
                // A stale pooled connection: send the request again on a fresh one.
                e.retry_ok = false;
                self.upstream_connected = false;
                self.upstream_scan.reset();
                self.out.push_back(Output::CloseUpstream);
                if let Some(addr) = e.upstream_addr {
                    // The same approved address, on a new connection.
                    e.pooled_ok = false;
                    self.phase = Phase::Dialing {
                        deadline: now + self.config.connect_timeout,
                        resolving: false,
                    };
                    self.schedule.clear();
                    self.schedule.push(addr);
                    self.start_attempts(now);
                }
            }
            ResponseState::AwaitingHead => {
                let problem = if e.upstream_seen {
                    Problem::BadResponse
                } else {
                    Problem::UpstreamClosed
                };
                self.fail(now, problem)
            }
            ResponseState::Body { decoder, .. } if clean && decoder.is_close_delimited() => {
                e.upstream_reusable = false;
                self.response_done(now);
            }
            ResponseState::Body { .. } => self.abort(now, "upstream_truncated"),
            ResponseState::Done => {}
        }
    }

    /// Ends the exchange if both directions are complete.
    fn try_finish(&mut self, now: Instant) {
        let Some(e) = &self.exchange else { return };
        if !matches!(e.response, ResponseState::Done) {
            return;
        }
        if !e.request.is_done() {
            // The upstream answered before the request body ended: the rest of the body cannot
            // be delimited from the next request, so neither connection can continue.
            return self.abort(now, "response_before_request_end");
        }
        let reusable = e.upstream_reusable;
        let close_client = !e.keep_alive || self.client_eof || self.draining;
        // Nothing more can come from a client that half-closed, or that said this was its
        // last request and whose every byte was read.
        let nothing_more = self.client_eof || (e.client_close && self.client_in.is_empty());
        self.upstream_connected = false;
        self.out.push_back(if reusable {
            Output::ReleaseUpstream
        } else {
            Output::CloseUpstream
        });
        self.log(now, None);
        if close_client {
            self.close_with(!nothing_more);
        } else {
            self.phase = Phase::ReadingHead;
            if let Some(config) = self.next_config.take() {
                self.config = config;
            }
            self.waiting_since = now;
            self.head_started = None;
            self.client_scan.reset();
            self.upstream_scan.reset();
            if !self.client_in.is_empty() {
                self.head_started = Some(now);
                self.advance(now);
            }
        }
    }

    // ----- tunnel -----

    fn start_tunnel(&mut self, now: Instant, to_upstream: Bytes, to_client: Bytes) {
        let mut meter = TunnelMeter::new(now);
        meter.record(now, Direction::ClientToUpstream, to_upstream.len() as u64);
        meter.record(now, Direction::UpstreamToClient, to_client.len() as u64);
        if let Some(e) = &mut self.exchange {
            // Tunnel byte counts are payload only; the heads were counted in rx/tx already
            // for an upgrade, and are not counted for CONNECT (see AccessRecord).
            if e.tunnel {
                e.rx = 0;
                e.tx = 0;
            }
        }
        self.phase = Phase::Tunnel(meter);
        self.out.push_back(Output::StartTunnel {
            to_upstream,
            to_client,
        });
        if self.client_eof {
            // The client half-closed before the tunnel existed (e.g. while CONNECT dialed):
            // that EOF was reported once and must reach the upstream now.
            self.tunnel_end(now, Direction::ClientToUpstream);
        }
    }

    fn tunnel_end(&mut self, now: Instant, direction: Direction) {
        let Phase::Tunnel(m) = &mut self.phase else {
            return;
        };
        match m.end(now, direction) {
            TunnelStep::ShutdownWrite(Direction::ClientToUpstream) => {
                self.out.push_back(Output::ShutdownUpstreamWrite)
            }
            TunnelStep::ShutdownWrite(Direction::UpstreamToClient) => {
                self.out.push_back(Output::ShutdownClientWrite)
            }
            TunnelStep::Close => {
                self.log(now, None);
                self.close();
            }
            TunnelStep::Nothing => {}
        }
    }

    // ----- endings -----

    /// Answers with the problem's canned response if no response began, then closes.
    fn fail(&mut self, now: Instant, problem: Problem) {
        let Some(e) = &mut self.exchange else {
            self.begin_exchange(now, Bytes::new(), Bytes::new());
            return self.fail(now, problem);
        };
        if e.status == 0 {
            let answer = match problem {
                Problem::Denied(reason) => {
                    Problem::denial(reason, &denial_subject(e), e.head_request)
                }
                Problem::ParentDialFailed | Problem::ParentDialTimeout => {
                    let parent = self.config.parent.as_ref().map(|p| p.authority());
                    let name = parent.map(alloc::string::ToString::to_string);
                    problem.parent_failure(name.as_deref().unwrap_or("-"), e.head_request)
                }
                _ => problem.response(e.head_request),
            };
            e.status = problem.status();
            e.tx += answer.len() as u64;
            self.out.push_back(Output::ToClient(answer));
        }
        self.abort(now, problem.log_word());
    }

    /// Ends everything now: the upstream (if any) is closed, the exchange logged, the client closed.
    fn abort(&mut self, now: Instant, reason: &'static str) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        if self.upstream_connected {
            self.upstream_connected = false;
            self.out.push_back(Output::CloseUpstream);
        }
        self.log(now, Some(reason));
        self.close();
    }

    fn log(&mut self, now: Instant, reason: Option<&'static str>) {
        let Some(e) = self.exchange.take() else {
            return;
        };
        if !self.config.access_records {
            return;
        }
        let (rx, tx) = match &self.phase {
            Phase::Tunnel(m) if e.tunnel => (
                m.bytes(Direction::ClientToUpstream),
                m.bytes(Direction::UpstreamToClient),
            ),
            Phase::Tunnel(m) => (
                e.rx + m.bytes(Direction::ClientToUpstream),
                e.tx + m.bytes(Direction::UpstreamToClient),
            ),
            _ => (e.rx, e.tx),
        };
        self.out.push_back(Output::Log(Box::new(AccessRecord {
            client: self.client,
            method: e.method,
            target: e.target,
            status: e.status,
            rx,
            tx,
            duration: now.saturating_since(e.started),
            reason: self.tunnel_note.take().or(reason),
            user: e.user,
            upstream: e.upstream_addr,
            via: e.hop,
            intercepted: self.pinned.is_some(),
        })));
    }

    fn close_silently(&mut self) {
        self.exchange = None;
        self.close();
    }

    /// Closes, lingering (see [`Output::Close`]) unless the client half-closed.
    fn close(&mut self) {
        self.close_with(!self.client_eof);
    }

    fn close_with(&mut self, linger: bool) {
        if let Phase::Tunnel(m) = &mut self.phase {
            m.close();
        }
        self.phase = Phase::Closed;
        self.client_in = Bytes::new();
        self.upstream_in = Bytes::new();
        self.out.push_back(Output::Close { linger });
    }
}

/// The egress policy's verdict on a target before anything is resolved, dialed or sent to a
/// parent: domain rules for a name (a denied name is never resolved), the address rules for an
/// IP literal (legacy IPv4 spellings such as `127.1` or `0x7f000001` included). A host that
/// looks like an IPv4 address but is not a valid one is a bad target.
fn precheck(config: &Config, authority: &Authority, tunnel: bool) -> Result<(), Problem> {
    let egress = &config.policy.egress;
    match egress::parse_host(authority.host()) {
        HostKind::Name => egress.judge_name(authority.host()),
        HostKind::Ip(ip) => egress.judge_ip_target(SocketAddr::new(ip, authority.port())),
        HostKind::InvalidIp if tunnel => return Err(Problem::BadConnectTarget),
        HostKind::InvalidIp => return Err(Problem::BadTarget),
    }
    .map_err(Problem::Denied)
}

/// How a refused destination is named in the 403: the host as the client wrote it, with the
/// address it stands for when that differs (`localhost (127.0.0.1)`, `127.1 (127.0.0.1)`).
fn denial_subject(e: &Exchange) -> alloc::string::String {
    use alloc::string::ToString;
    let Some(authority) = &e.authority else {
        return alloc::string::String::from("-");
    };
    let host = authority.host();
    let ip = e.refused_addr.or_else(|| authority.ip());
    match ip {
        Some(ip) if ip.to_string() != host => alloc::format!("{host} ({ip})"),
        _ => host.to_string(),
    }
}

/// Appends `data` to `buf` without copying when `buf` is empty (the common case).
fn append(buf: &mut Bytes, data: Bytes) {
    if buf.is_empty() {
        *buf = data;
    } else {
        let mut joined = BytesMut::with_capacity(buf.len() + data.len());
        joined.extend_from_slice(buf);
        joined.extend_from_slice(&data);
        *buf = joined.freeze();
    }
}
