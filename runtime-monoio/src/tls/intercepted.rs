//! An intercepted CONNECT tunnel: the transport that puts the two TLS sessions between the
//! tunnel's sockets and a core [`Connection`] in intercepted-tunnel mode, and the current
//! interception [`Setup`] (swapped whole on SIGHUP).
//!
//! The outer connection answered the CONNECT and dialed the origin as for any tunnel. When
//! its authority matches `--intercept`, the connection hands its tunnel to an
//! [`Intercepted`] instead of the byte relay:
//! 1. **Hello**: client bytes are collected until `client_hello::parse` decides; the core's
//!    `intercept::decide` says intercept or pass through (not TLS, ECH, no http/1.1: the
//!    bytes read go upstream and the plain relay takes over).
//! 2. **Inside**: client ciphertext → the client-facing session (our leaf) → plaintext →
//!    the inner `Connection::new_intercepted`; its outputs go back through the sessions. Its
//!    dial of the pinned authority is answered with the origin-facing session over the
//!    tunnel's upstream socket, reported once the origin's handshake (and certificate) is
//!    done, or as `DialError::TlsCertificate` / `TlsProtocol` (502 inside the client's TLS).
//!    Once that origin connection is gone (the origin closed it, or answered
//!    `Connection: close`), the next dial opens a new TCP connection to the same address
//!    (`dial::connect`, the connection's own dialer) and a new origin session; the
//!    connection swaps it in for the old upstream socket ([`Intercepted::poll_dial`]).
//!    Ciphertext is queued on the sockets as tunnel payload, so the outer connection's
//!    tunnel accounting (ciphertext each way) and idle timeout keep working. The inner
//!    connection's own deadlines (header, keep-alive idle, dial, exchange) are armed by the
//!    connection beside the outer one ([`Intercepted::poll_timeout`]), so a slow client
//!    inside the TLS session gets the same `408` as on the plain listener.
//! 3. **Upgrade** (`101`, e.g. WebSocket): the inner connection enters tunnel mode; client
//!    plaintext goes into the origin session and back, each piece reported to the inner
//!    connection with `handle_relayed` (its access-log line counts the plaintext payload),
//!    a close_notify or TCP EOF of either side is that direction's end, and the inner
//!    connection's half-close of the other side is a close_notify. Backpressure is the
//!    step's: a side is read only while the other socket has nothing queued.
//! 4. **Done**: the inner connection closed (its client left, a timeout, an error, or a
//!    graceful shutdown passed on with [`Intercepted::drain`]); the caller ends the outer
//!    tunnel.
//!
//! Through a parent proxy (`--upstream-proxy`) the tunnel's one path to the origin is the
//! parent's CONNECT: it is not re-dialed (that would need a new CONNECT through the parent
//! on a new socket). The inner connection is told so (`set_single_upstream`) and mirrors the
//! origin's close: a response the origin closes after goes out with `Connection: close`,
//! and once the origin's side ends the client's connection closes when idle, so its next
//! request goes on a new CONNECT. Only a request racing the origin's close gets `502`
//! (answered, never hung).
//!
//! Failure: a client that aborts the handshake (a pinned app refusing our leaf) ends the
//! tunnel, whose log line says `reason=client_tls_abort`; a tunnel passed through says why
//! (`reason=not_tls`, `tls_ech`, `tls_no_http11`); an origin TLS failure or a failed
//! re-dial is the inner connection's answer.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use ringway_core::client_hello;
use ringway_core::egress::HostPatterns;
use ringway_core::intercept::{self, Decision};
use ringway_core::target::Authority;
use ringway_core::tunnel::Direction;
use ringway_core::{AttemptId, Config, Connection, DialError, Dialed, Instant, Output};

use super::adapter::{Interceptor, Plain, TlsFailure, TlsSession};
use crate::socket::{ReadEvent, Socket, WriteOp};
use crate::worker::Env;

/// The tunnel's log word for a client that aborted its handshake (a pinned app, or a client
/// that does not trust the CA).
pub const CLIENT_TLS_ABORT: &str = "client_tls_abort";

/// What interception needs, built from the flags at start-up and again on SIGHUP.
pub struct Setup {
    /// `--intercept` patterns.
    pub patterns: HostPatterns,
    /// The CA, leaf cache and TLS configurations.
    pub interceptor: Interceptor,
    /// `--insecure-upstream`: every line of an intercepted request says
    /// `reason=insecure_upstream` (unless it has a reason of its own).
    pub insecure: bool,
    /// What it was built from (the flags and a hash of the files they name), so a reload
    /// that changes nothing keeps this setup and its leaf cache.
    pub source: Option<(crate::cli::InterceptFlags, u64)>,
}

/// The current setup and its generation: `main` publishes the first before the workers
/// start, a reload replaces it whole. Workers read it through a per-thread copy
/// ([`current`]), so the hot path is one atomic load.
struct SetupSlot {
    generation: AtomicU64,
    current: Mutex<Option<Arc<Setup>>>,
}

static SLOT: SetupSlot = SetupSlot {
    generation: AtomicU64::new(0),
    current: Mutex::new(None),
};

thread_local! {
    /// This thread's copy of the slot: (generation, setup). `u64::MAX`: never read.
    static CACHED: RefCell<(u64, Option<Arc<Setup>>)> = const { RefCell::new((u64::MAX, None)) };
}

/// Replaces the interception setup (`None`: interception off). Tunnels already open keep
/// the setup they started with (their sessions, CA and trust); new tunnels use this one.
pub fn publish(setup: Option<Arc<Setup>>) {
    let mut current = SLOT.current.lock().unwrap_or_else(|e| e.into_inner());
    *current = setup;
    // Under the lock, so a reader that sees the new number finds the new value.
    SLOT.generation.fetch_add(1, Ordering::Release);
}

/// Calls `f` with the current setup: one atomic load unless a reload happened since this
/// thread last looked.
pub fn with_current<R>(f: impl FnOnce(Option<&Arc<Setup>>) -> R) -> R {
    let generation = SLOT.generation.load(Ordering::Acquire);
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != generation {
            let current = SLOT.current.lock().unwrap_or_else(|e| e.into_inner());
            *cached = (SLOT.generation.load(Ordering::Acquire), current.clone());
        }
        f(cached.1.as_ref())
    })
}

/// The current setup (see [`with_current`]).
pub fn current() -> Option<Arc<Setup>> {
    with_current(|s| s.cloned())
}

/// Whether the tunnel to `authority` should be offered to interception (the ClientHello
/// decides the rest).
pub fn wanted(authority: &Authority) -> bool {
    with_current(|s| s.is_some_and(|s| intercept::matches(&s.patterns, authority.host())))
}

/// What one step did.
#[derive(Debug)]
pub enum Step {
    /// Nothing could happen now: wait for the sockets.
    Idle,
    /// Something happened: step again.
    Progress,
    /// Not intercepted after all: send `bytes` upstream, relay the rest untouched; `then` is
    /// an EOF or error read from the client while waiting for its hello.
    Passthrough {
        /// Client bytes read so far (the ClientHello, or whatever it was).
        bytes: Bytes,
        /// A read end seen while collecting them.
        then: Option<ReadEvent>,
        /// Why, for the tunnel's log line (`None`: the hello was cut short by the client).
        why: Option<&'static str>,
    },
    /// The inner connection closed: end the tunnel; the word (if any) goes on the tunnel's
    /// log line (`client_tls_abort`).
    Done(Option<&'static str>),
}

type DialFuture = Pin<Box<dyn Future<Output = Result<TcpStream, DialError>>>>;

/// Ciphertext is written into this thread's buffer and split off as `Bytes` for the socket:
/// one allocation per [`CIPHER_CHUNK`] instead of one (or two) per flush. A piece lives until
/// the socket has sent it, so a chunk is not held long by any one tunnel.
const CIPHER_CHUNK: usize = 64 * 1024;
/// Below this much room a fresh chunk is started (a flush is at most a few records).
const CIPHER_MIN_ROOM: usize = 20 * 1024;

thread_local! {
    static CIPHER_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    /// Plaintext gathered over one drain of the inner connection, per direction (index 0:
    /// to the origin, 1: to the client), empty between drains. The core hands a response
    /// over as its head and then its body; written as they come they would be two TLS
    /// records (two seals, two allocations in rustls, two opens at the client); gathered,
    /// a small response is one. Per thread, not per connection, so an idle tunnel holds none.
    static GATHER: RefCell<[Vec<u8>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// The most plaintext gathered before writing: one TLS record's worth. A larger piece is
/// written straight into the session (copying it once more would cost more than the
/// record saved).
const GATHER_MAX: usize = 16 * 1024;

/// Runs `f` with this thread's (empty) ciphertext buffer, with room for a flush.
fn with_cipher_buf<R>(f: impl FnOnce(&mut BytesMut) -> R) -> R {
    CIPHER_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.capacity() - buf.len() < CIPHER_MIN_ROOM {
            *buf = BytesMut::with_capacity(CIPHER_CHUNK);
        }
        f(&mut buf)
    })
}

struct Inside {
    setup: Arc<Setup>,
    pinned: Authority,
    /// The tunnel's upstream address (the origin's, or the parent's carrying it).
    upstream_addr: Option<SocketAddr>,
    /// The tunnel runs through a parent proxy: no re-dial (see the module docs).
    via_parent: bool,
    front: TlsSession,
    back: Option<TlsSession>,
    inner: Connection,
    /// The inner connection holds the origin connection (between Connect and Release).
    back_in_use: bool,
    /// It was handed out before (a later Connect reports `reused`).
    back_used: bool,
    /// The origin's side of the current origin connection ended (EOF, error or
    /// close_notify): it cannot serve another request.
    back_closed: bool,
    /// The inner connection waits for the origin handshake to report its dial.
    dial_pending: bool,
    /// A new TCP connection to the origin in flight (a re-dial).
    dialing: Option<DialFuture>,
    /// The inner connection's attempt the origin session answers (its one `Connect`).
    attempt: AttemptId,
    /// The last ciphertext (close_notify) of an origin session already dropped.
    back_tail: Vec<u8>,
    /// The origin's handshake failed before the inner connection asked for it: its dial
    /// gets this error.
    back_failed: Option<DialError>,
    /// The client gave up during its handshake (refused our leaf).
    aborted: bool,
    done: bool,
    /// The clock reading of the current step (the connection reads it once per wake-up).
    now: Instant,
}

enum State {
    Hello(Vec<u8>),
    Inside(Box<Inside>),
}

/// One intercepted tunnel (see the module docs).
pub struct Intercepted {
    pinned: Authority,
    upstream_addr: Option<SocketAddr>,
    client_addr: SocketAddr,
    config: Arc<Config>,
    via_parent: bool,
    setup: Option<Arc<Setup>>,
    state: State,
}

impl Intercepted {
    /// A tunnel to `pinned`, whose CONNECT carried `early` bytes after its head (a client may
    /// send its ClientHello at once). It keeps the current setup to its end.
    pub fn new(
        pinned: Authority,
        upstream_addr: Option<SocketAddr>,
        client_addr: SocketAddr,
        config: Arc<Config>,
        early: &[u8],
    ) -> Intercepted {
        // Through a parent proxy the tunnel already reaches the origin: the requests inside
        // go straight down it, never to the parent again.
        let via_parent = config.parent.is_some();
        let config = if via_parent {
            let mut direct = (*config).clone();
            direct.parent = None;
            Arc::new(direct)
        } else {
            config
        };
        Intercepted {
            pinned,
            upstream_addr,
            client_addr,
            config,
            via_parent,
            setup: current(),
            state: State::Hello(early.to_vec()),
        }
    }

    /// Whether the client socket should be waited on.
    pub fn wants_client(&self, client: &Socket) -> bool {
        !client.read_ended()
    }

    /// Whether the upstream socket should be waited on.
    pub fn wants_upstream(&self, upstream: &Socket) -> bool {
        matches!(self.state, State::Inside(_)) && !upstream.read_ended()
    }

    /// The inner connection's next deadline, for the connection to arm beside its own.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Inside(inside) if !inside.done => inside.inner.poll_timeout(),
            _ => None,
        }
    }

    /// A deadline may have passed: the inner connection judges (its outputs are carried
    /// out by the next [`step`](Self::step)).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Inside(inside) = &mut self.state {
            inside.inner.handle_timeout(now);
        }
    }

    /// Graceful shutdown: the inner connection takes no further requests (an idle one
    /// closes at once, a busy one after its exchange), which then ends the tunnel. A tunnel
    /// still waiting for the ClientHello is left to the grace period.
    pub fn drain(&mut self) {
        if let State::Inside(inside) = &mut self.state {
            inside.inner.drain();
        }
    }

    /// Polls a re-dial of the origin. `Ready(Some(socket))`: it connected; the caller
    /// replaces the tunnel's upstream socket with it (the origin session's handshake starts
    /// on the next step). `Ready(None)`: it failed (the inner connection has its answer).
    pub fn poll_dial(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<Option<Socket>> {
        let State::Inside(inside) = &mut self.state else {
            return Poll::Pending;
        };
        let Some(dialing) = &mut inside.dialing else {
            return Poll::Pending;
        };
        let Poll::Ready(result) = dialing.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        inside.dialing = None;
        inside.now = now;
        let session = result.and_then(|stream| {
            let session = inside
                .setup
                .interceptor
                .connect(inside.pinned.host())
                .map_err(|_| DialError::TlsProtocol)?;
            Ok((stream, session))
        });
        match session {
            Ok((stream, session)) => {
                inside.back = Some(session);
                inside.back_used = false;
                inside.back_closed = false;
                // The old session's close_notify would go to the new socket: drop it.
                inside.back_tail.clear();
                inside.dial_pending = true;
                Poll::Ready(Some(Socket::new(stream, false)))
            }
            Err(e) => {
                inside.back_in_use = false;
                inside.inner.handle_dial(now, inside.attempt, Err(e));
                Poll::Ready(None)
            }
        }
    }

    /// Does what can be done now with the two sockets (`now`: the caller's clock reading
    /// for this wake-up).
    pub fn step(
        &mut self,
        client: &mut Socket,
        upstream: &mut Socket,
        env: &Env,
        now: Instant,
    ) -> Step {
        let Some(setup) = &self.setup else {
            return Step::Done(None);
        };
        match &mut self.state {
            State::Hello(buf) => {
                let mut then = None;
                let mut read = false;
                match client.try_read() {
                    Some(ReadEvent::Data(b)) => {
                        buf.extend_from_slice(&b);
                        read = true;
                    }
                    Some(end) => then = Some(end),
                    None => {}
                }
                let hello = client_hello::parse(buf);
                let decision = intercept::decide(&setup.patterns, self.pinned.host(), &hello);
                let leaf_host = match decision {
                    Decision::WaitForHello if then.is_none() => {
                        return if read { Step::Progress } else { Step::Idle };
                    }
                    Decision::Intercept { leaf_host } if then.is_none() => leaf_host.to_string(),
                    Decision::Tunnel(why) => {
                        return Step::Passthrough {
                            bytes: Bytes::from(std::mem::take(buf)),
                            then,
                            why: Some(why.log_word()),
                        }
                    }
                    _ => {
                        return Step::Passthrough {
                            bytes: Bytes::from(std::mem::take(buf)),
                            then,
                            why: None,
                        }
                    }
                };
                let hello_bytes = std::mem::take(buf);
                let front = match setup.interceptor.accept(&leaf_host, SystemTime::now()) {
                    Ok(f) => f,
                    Err(e) => {
                        say!("ringway: intercepting {}: {e}", self.pinned);
                        return Step::Done(None);
                    }
                };
                let back = setup.interceptor.connect(self.pinned.host()).ok();
                let mut inner = Connection::new_intercepted(
                    Arc::clone(&self.config),
                    self.client_addr,
                    self.pinned.clone(),
                    now,
                );
                if self.via_parent {
                    // No re-dial through the parent: the origin's close ends the client's.
                    inner.set_single_upstream();
                }
                let mut inside = Box::new(Inside {
                    setup: Arc::clone(setup),
                    pinned: self.pinned.clone(),
                    upstream_addr: self.upstream_addr,
                    via_parent: self.via_parent,
                    front,
                    back,
                    inner,
                    back_in_use: false,
                    back_used: false,
                    back_closed: false,
                    dial_pending: false,
                    dialing: None,
                    attempt: AttemptId(0),
                    back_tail: Vec::new(),
                    back_failed: None,
                    aborted: false,
                    done: false,
                    now,
                });
                let fed = inside.feed_front(&hello_bytes, env);
                self.state = State::Inside(inside);
                if fed.is_err() {
                    return Step::Done(Some(CLIENT_TLS_ABORT));
                }
                Step::Progress
            }
            State::Inside(inside) => {
                let progress = inside.step(client, upstream, env, now);
                if inside.done {
                    let _ = inside.flush(client, upstream);
                    return Step::Done(inside.aborted.then_some(CLIENT_TLS_ABORT));
                }
                if progress {
                    Step::Progress
                } else {
                    Step::Idle
                }
            }
        }
    }
}

impl Inside {
    /// Carries out everything the inner connection has to say.
    fn drain(&mut self, env: &Env) -> bool {
        let mut any = false;
        while let Some(out) = self.inner.poll_output() {
            any = true;
            self.carry_out(out, env);
        }
        self.write_gathered();
        any
    }

    /// Plaintext the inner connection sends one way (`to_client` or to the origin): small
    /// pieces are gathered over the drain and written together (see [`GATHER`]), a large one
    /// goes straight into the session.
    fn send_plain(&mut self, to_client: bool, piece: &[u8]) {
        let fits = GATHER.with(|g| {
            let mut g = g.borrow_mut();
            let buf = &mut g[usize::from(to_client)];
            let fits = buf.len() + piece.len() <= GATHER_MAX;
            if fits {
                buf.extend_from_slice(piece);
            }
            fits
        });
        if !fits {
            self.write_gathered();
            self.write_plain(to_client, piece);
        }
    }

    /// Writes what [`send_plain`](Self::send_plain) gathered, upstream first.
    fn write_gathered(&mut self) {
        GATHER.with(|g| {
            let mut g = g.borrow_mut();
            for to_client in [false, true] {
                let buf = &mut g[usize::from(to_client)];
                if !buf.is_empty() {
                    self.write_plain(to_client, buf);
                    buf.clear();
                }
            }
        });
    }

    /// Into the session: the sessions' send buffers are unbounded (see `TlsSession::new`),
    /// so all is taken. Without an origin session the bytes have nowhere to go.
    fn write_plain(&mut self, to_client: bool, data: &[u8]) {
        let session = if to_client {
            Some(&mut self.front)
        } else {
            self.back.as_mut()
        };
        if let Some(session) = session {
            let taken = session.write_plaintext(data);
            debug_assert_eq!(taken, data.len());
        }
    }

    /// Hands plaintext to the inner connection, or (after an upgrade) to the other session.
    fn deliver(&mut self, direction: Direction, plain: Vec<u8>, env: &Env) {
        let now = self.now;
        if !self.inner.is_tunnel() {
            match direction {
                Direction::ClientToUpstream => {
                    self.inner.handle_client_data(now, Bytes::from(plain))
                }
                Direction::UpstreamToClient => {
                    self.inner.handle_upstream_data(now, Bytes::from(plain))
                }
            }
            // An upgrade switches to relaying while bytes may follow in this same read:
            // its outputs (the 101 and what came with it) go out before them.
            if self.inner.is_tunnel() {
                self.drain(env);
            }
            return;
        }
        if self
            .inner
            .tunnel()
            .map_or(true, |m| m.has_ended(direction) || m.is_closed())
        {
            // After that direction's end (a peer sending after its close_notify): dropped.
            return;
        }
        let to = match direction {
            Direction::ClientToUpstream => self.back.as_mut(),
            Direction::UpstreamToClient => Some(&mut self.front),
        };
        let Some(to) = to else { return };
        let taken = to.write_plaintext(&plain);
        debug_assert_eq!(taken, plain.len());
        self.inner.handle_relayed(now, direction, taken as u64);
    }

    /// One side's clean close (close_notify) or EOF, as the inner connection sees it.
    fn end(&mut self, direction: Direction) {
        let now = self.now;
        if self
            .inner
            .tunnel()
            .is_some_and(|m| m.has_ended(direction) || m.is_closed())
        {
            return;
        }
        match direction {
            Direction::ClientToUpstream => self.inner.handle_client_eof(now),
            Direction::UpstreamToClient => self.inner.handle_upstream_eof(now),
        }
    }

    /// Feeds client ciphertext; plaintext goes to the inner connection.
    fn feed_front(&mut self, mut data: &[u8], env: &Env) -> Result<(), TlsFailure> {
        let mut plain = Vec::new();
        while !data.is_empty() {
            let n = match self.front.feed(data) {
                Ok(n) => n,
                Err(e) => {
                    self.aborted = self.front.is_handshaking();
                    self.done = true;
                    return Err(e);
                }
            };
            data = &data[n..];
            match self.front.read_plaintext(&mut plain) {
                Plain::Data(_) => {
                    self.deliver(Direction::ClientToUpstream, std::mem::take(&mut plain), env)
                }
                // A close_notify ends the client's direction of an upgraded connection
                // (outside one, the TCP EOF that follows closes the connection).
                Plain::Closed if self.inner.is_tunnel() => self.end(Direction::ClientToUpstream),
                _ => {}
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Feeds origin ciphertext; reports the dial once the handshake is done.
    fn feed_back(&mut self, mut data: &[u8], env: &Env) {
        let now = self.now;
        // rustls takes ciphertext only while its plaintext buffer has room: feed, drain the
        // plaintext to the inner connection, and feed the rest.
        loop {
            let Some(back) = &mut self.back else { return };
            let n = match back.feed(data) {
                Ok(n) => n,
                Err(e) => {
                    let err = match e {
                        TlsFailure::Certificate(_) => DialError::TlsCertificate,
                        _ => DialError::TlsProtocol,
                    };
                    let handshaking = back.is_handshaking();
                    self.back = None;
                    self.back_closed = true;
                    if self.dial_pending {
                        self.dial_pending = false;
                        self.back_in_use = false;
                        self.inner.handle_dial(now, self.attempt, Err(err));
                    } else if handshaking {
                        // Nobody asked yet: the next dial gets the error.
                        self.back_failed = Some(err);
                    } else {
                        self.inner.handle_upstream_error(now);
                    }
                    return;
                }
            };
            data = &data[n..];
            if self.dial_pending && !back.is_handshaking() {
                self.dial_pending = false;
                self.inner.handle_dial(
                    now,
                    self.attempt,
                    Ok(Dialed {
                        reused: self.back_used,
                    }),
                );
                // The request head goes into the session now, before any response bytes.
                self.drain(env);
            }
            let Some(back) = &mut self.back else { return };
            let mut plain = Vec::new();
            let drained = match back.read_plaintext(&mut plain) {
                Plain::Data(_) => {
                    self.deliver(Direction::UpstreamToClient, plain, env);
                    true
                }
                Plain::Closed => {
                    self.back_closed = true;
                    self.end(Direction::UpstreamToClient);
                    false
                }
                Plain::Empty => false,
            };
            if data.is_empty() || (n == 0 && !drained) {
                // Either all taken, or rustls takes nothing more with its buffers empty
                // (cannot happen with whole records; the rest would be a protocol error).
                return;
            }
        }
    }

    /// Queues the sessions' ciphertext on the sockets, as tunnel payload; returns whether
    /// there was any.
    fn flush(&mut self, client: &mut Socket, upstream: &mut Socket) -> bool {
        with_cipher_buf(|buf| {
            self.front.take_ciphertext(buf);
            let mut queued = !buf.is_empty();
            if queued {
                client.push(WriteOp::Data {
                    bytes: buf.split().freeze(),
                    relayed: true,
                });
            }
            if !self.back_tail.is_empty() {
                buf.extend_from_slice(&self.back_tail);
                self.back_tail.clear();
            }
            if let Some(back) = &mut self.back {
                back.take_ciphertext(buf);
            }
            if !buf.is_empty() {
                queued = true;
                upstream.push(WriteOp::Data {
                    bytes: buf.split().freeze(),
                    relayed: true,
                });
            }
            queued
        })
    }

    fn step(
        &mut self,
        client: &mut Socket,
        upstream: &mut Socket,
        env: &Env,
        now: Instant,
    ) -> bool {
        self.now = now;
        let mut progress = false;
        // Backpressure as in the relay: a side is read only while the socket its bytes go to
        // has nothing queued, so at most one read's worth sits in the sessions per direction.
        if upstream.write_idle() {
            match client.try_read() {
                Some(ReadEvent::Data(b)) => {
                    progress = true;
                    let _ = self.feed_front(&b, env);
                }
                Some(ReadEvent::Eof) => {
                    progress = true;
                    let _ = self.front.feed_eof();
                    if self.inner.is_tunnel() {
                        self.end(Direction::ClientToUpstream);
                    } else {
                        self.inner.handle_client_eof(now);
                    }
                }
                Some(ReadEvent::Error) => {
                    progress = true;
                    self.inner.handle_client_error(now);
                }
                None => {}
            }
        }
        if self.back.is_some() && self.dialing.is_none() && client.write_idle() {
            match upstream.try_read() {
                Some(ReadEvent::Data(b)) => {
                    progress = true;
                    self.feed_back(&b, env);
                }
                Some(ReadEvent::Eof) => {
                    progress = true;
                    self.back_closed = true;
                    if let Some(back) = &mut self.back {
                        let _ = back.feed_eof();
                    }
                    if self.dial_pending {
                        self.dial_pending = false;
                        self.back_in_use = false;
                        self.inner
                            .handle_dial(now, self.attempt, Err(DialError::TlsProtocol));
                    } else if self.inner.is_tunnel() {
                        self.end(Direction::UpstreamToClient);
                    } else {
                        self.inner.handle_upstream_eof(now);
                    }
                }
                Some(ReadEvent::Error) => {
                    progress = true;
                    self.back_closed = true;
                    if self.dial_pending {
                        self.dial_pending = false;
                        self.back_in_use = false;
                        self.inner
                            .handle_dial(now, self.attempt, Err(DialError::TlsProtocol));
                    } else {
                        self.inner.handle_upstream_error(now);
                    }
                }
                None => {}
            }
        }
        if self.drain(env) {
            progress = true;
        }
        self.flush(client, upstream) || progress
    }

    fn carry_out(&mut self, out: Output, env: &Env) {
        let now = self.now;
        if !matches!(out, Output::ToClient(_) | Output::ToUpstream(_)) {
            // Every other output (a close, a shutdown, an upgrade, a dial) comes after the
            // bytes before it.
            self.write_gathered();
        }
        match out {
            Output::ToClient(b) => self.send_plain(true, &b),
            Output::ToUpstream(b) => self.send_plain(false, &b),
            // The pinned authority was resolved and judged for the CONNECT: answer with the
            // address that dial reached (the core judges it again).
            Output::Resolve(_) => {
                let ips: Vec<std::net::IpAddr> =
                    self.upstream_addr.map(|a| a.ip()).into_iter().collect();
                self.inner.handle_resolved(now, &ips);
            }
            Output::Connect { attempt, addr, .. } => self.connect(attempt, addr, env),
            // The only attempt is the origin session. Cancelled while it waited for the
            // origin's handshake or a re-dial (the dial deadline passed), it gives the
            // session back, or abandons the re-dial.
            Output::CancelConnect(attempt) => {
                if attempt == self.attempt {
                    self.dial_pending = false;
                    self.back_in_use = false;
                    if self.dialing.take().is_some() {
                        self.back = None;
                    }
                }
            }
            Output::ReleaseUpstream => {
                self.back_in_use = false;
                self.back_used = true;
            }
            Output::CloseUpstream => {
                if let Some(mut back) = self.back.take() {
                    back.close();
                    back.take_ciphertext(&mut self.back_tail);
                }
                self.back_in_use = false;
                self.back_used = true;
            }
            Output::ShutdownClientWrite => self.front.close(),
            Output::ShutdownUpstreamWrite => {
                if let Some(back) = &mut self.back {
                    back.close();
                }
            }
            // An upgrade (101): from now on the sessions' plaintext is relayed (see
            // `deliver`); what the core already read of either side goes first.
            Output::StartTunnel {
                to_upstream,
                to_client,
            } => {
                if !to_client.is_empty() {
                    self.front.write_plaintext(&to_client);
                }
                if let Some(back) = &mut self.back {
                    if !to_upstream.is_empty() {
                        back.write_plaintext(&to_upstream);
                    }
                }
            }
            Output::Log(mut record) => {
                if self.setup.insecure && record.reason.is_none() {
                    record.reason = Some("insecure_upstream");
                }
                crate::metrics::observe(&record);
                env.log.write(&record);
            }
            // The outer connection closes the sockets (and decides its own lingering).
            Output::Close { .. } => {
                self.front.close();
                self.done = true;
            }
        }
    }

    /// The inner connection's dial: the current origin session if it can take a request,
    /// else a new TCP connection to the same address and a new session.
    fn connect(&mut self, attempt: AttemptId, addr: SocketAddr, env: &Env) {
        let now = self.now;
        self.attempt = attempt;
        if let Some(err) = self.back_failed.take() {
            self.inner.handle_dial(now, attempt, Err(err));
            return;
        }
        // The one upstream is the tunnel's (to the origin, or to the parent carrying it:
        // then the port the core names is the origin's, the address the parent's).
        if self.back_in_use || Some(addr.ip()) != self.upstream_addr.map(|a| a.ip()) {
            self.inner
                .handle_dial(now, attempt, Err(DialError::Refused));
            return;
        }
        if self.back_closed {
            // Its close_notify (if any) still goes to the old socket.
            if let Some(mut back) = self.back.take() {
                back.close();
                back.take_ciphertext(&mut self.back_tail);
            }
        }
        if self.back.is_none() {
            if self.via_parent {
                // Through the parent: no re-dial (module docs); only a request racing the
                // origin's close gets here.
                self.inner
                    .handle_dial(now, attempt, Err(DialError::Refused));
                return;
            }
            let addr = self.upstream_addr.unwrap_or(addr);
            let timeout = env.config.current().1.connect_timeout;
            self.dialing = Some(Box::pin(crate::dial::connect(addr, timeout)));
            self.back_in_use = true;
            return;
        }
        self.back_in_use = true;
        if self.back.as_ref().is_some_and(|b| b.is_handshaking()) {
            self.dial_pending = true;
        } else {
            self.inner.handle_dial(
                now,
                attempt,
                Ok(Dialed {
                    reused: self.back_used,
                }),
            );
        }
    }
}
