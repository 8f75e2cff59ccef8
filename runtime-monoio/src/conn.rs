//! Drives one client [`Connection`]: carries out its outputs, feeds it socket events and
//! timeouts, until it says [`Output::Close`].
//!
//! The loop (one `poll_fn`, so every step has `&mut` access without awaiting):
//! 1. Drain `poll_output`, carrying out each output in order: writes are queued per socket
//!    (see [`Socket`]), a dial becomes an in-flight future (or a pooled stream), logs are
//!    written, `Close` ends the loop.
//! 2. Make synchronous progress: flush both write queues (one `sendmsg` each, so a response
//!    head and its body leave together), then read from a side the core wants to hear from,
//!    if it may have bytes. A side is read only while the socket its bytes go to has nothing
//!    left to write: backpressure without unbounded buffering. Anything fed to the core
//!    sends the loop back to 1.
//! 3. When nothing more can happen now, poll what we wait for (readiness of the wanted
//!    sides, writability of a full socket, the dial, the timer, the drain notice) and return
//!    `Pending`; a ready one sends the loop back to 2.
//!
//! An idle connection therefore holds a readiness wait and a timer, and no buffer.
//!
//! In a tunnel the core stops taking bytes: the [`Relay`] moves them (copy or splice) and
//! each written piece is reported with `handle_relayed`.
//!
//! Failure: socket errors become `handle_*_error` inputs; the core decides. Once closed, the
//! client socket gets up to [`CLOSE_LIMIT`] to flush and linger; then everything is dropped.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use monoio::net::TcpStream;
use ringway_core::tunnel::Direction;
use ringway_core::{AttemptId, Connection, DialError, Dialed, Instant, Load, Output};

use crate::clock;
use crate::dial::connect;
use crate::relay::{Moved, Relay};
use crate::socket::{ReadEvent, Socket, WriteOp, CLOSE_LIMIT};
use crate::timers::TimerKey;
use crate::tls::intercepted::{self, Intercepted, Step};
use crate::worker::{Admitted, Env, Isolated};

type DialFuture = Pin<Box<dyn Future<Output = Result<TcpStream, DialError>>>>;
type ResolveFuture = Pin<Box<dyn Future<Output = Rc<[IpAddr]>>>>;

/// Steps handled per wake before yielding to other connections on this thread.
const BUDGET: usize = 64;
/// How much unread client input a closing connection reads and discards.
const LINGER_BYTES: usize = 256 * 1024;

/// Serves one accepted client until the core closes it, then hands the closing (flush,
/// linger) to a task of its own. `tls`: the client came to the HTTPS listener; its socket
/// speaks TLS and everything here sees the plaintext.
///
/// A hand-written future rather than an `async fn`, so an idle connection's task holds just
/// the [`Conn`] (an `async fn` would also keep room for its arguments and the closing state).
pub fn serve(
    env: Rc<Env>,
    admitted: Admitted,
    load: Load,
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
) -> Serve {
    // TCP_NODELAY came from the listener (`listener::bind`).
    let client = if tls {
        match crate::tls::front::session() {
            Some(session) => Socket::new_tls(stream, crate::tls::front::Front::new(session)),
            // No session could be made: the connection is closed at once.
            None => {
                return Serve {
                    conn: None,
                    admitted: Some(admitted),
                }
            }
        }
    } else {
        Socket::new(stream, true)
    };
    let (config_generation, config) = env.config.current();
    let admitted_by = config.admit(load);
    let now = clock::now();
    let mut core = Connection::new(config, peer, now);
    if let Err(problem) = admitted_by {
        core.refuse(problem);
    }
    let conn = Conn {
        config_generation,
        env,
        id: admitted.id,
        core,
        client,
        upstream: None,
        upstream_addr: None,
        resolving: None,
        dialing: Vec::new(),
        timer: None,
        relay: None,
        intercept: None,
        tunnel_gauge: None,
        closing: false,
        draining: false,
        drain_registered: false,
        linger: true,
        now,
    };
    Serve {
        conn: Some(conn),
        admitted: Some(admitted),
    }
}

/// The task of one client connection (see [`serve`]).
pub struct Serve {
    conn: Option<Conn>,
    admitted: Option<Admitted>,
}

impl Future for Serve {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(conn) = &mut this.conn else {
            return Poll::Ready(());
        };
        std::task::ready!(conn.poll(cx));
        if let (Some(conn), Some(admitted)) = (this.conn.take(), this.admitted.take()) {
            conn.finish(admitted);
        }
        Poll::Ready(())
    }
}

struct Conn {
    env: Rc<Env>,
    /// The generation of the configuration last given to `core`.
    config_generation: u64,
    id: u64,
    core: Connection,
    client: Socket,
    /// Boxed: most idle connections have none, and a box is smaller than the socket.
    upstream: Option<Box<Socket>>,
    /// Where `upstream` (or the dial in flight) goes: the pool key.
    upstream_addr: Option<SocketAddr>,
    /// The lookup in flight (`Output::Resolve`).
    resolving: Option<ResolveFuture>,
    /// The connection attempts in flight (`Output::Connect`), oldest first: several while the
    /// core races the addresses of a name (Happy Eyeballs); empty (no allocation) otherwise.
    dialing: Vec<(AttemptId, SocketAddr, DialFuture)>,
    /// The deadline registered with this thread's timers.
    timer: Option<TimerKey>,
    /// Tunnel mode: how bytes are relayed.
    relay: Option<Box<Relay>>,
    /// An intercepted tunnel (`--intercept`): TLS terminated, HTTP through an inner core.
    intercept: Option<Box<Intercepted>>,
    /// The tunnel's place in `ringway_tunnels_active`.
    tunnel_gauge: Option<crate::metrics::Active>,
    closing: bool,
    /// Shutdown was passed on to the core (`Connection::drain`).
    draining: bool,
    /// This task's waker is known to the drain notice (a task's waker never changes).
    drain_registered: bool,
    /// Whether closing should read and discard late client input (see `close_gracefully`):
    /// the core's `Close { linger }`, and never for an idle connection closed by a drain.
    linger: bool,
    /// The clock, read once when the task is polled: every event of one wake-up happened
    /// "now" (a clock read per event was 2-3% of an intercepted request's CPU). Timers wake
    /// the task only once their instant has passed, so the read at the start of the poll
    /// that follows is already past the deadline.
    now: Instant,
}

impl Conn {
    /// After `Close`: forgets the deadline and the drain registration, and spawns the
    /// closing of the client socket; `admitted` is released when that ends.
    fn finish(self, admitted: Admitted) {
        let Conn {
            env,
            id,
            client,
            linger,
            relay,
            timer,
            ..
        } = self;
        env.drain.unregister(id);
        if let Some(key) = timer {
            env.timers.remove(key);
        }
        drop(relay);
        monoio::spawn(Isolated(async move {
            let _ =
                monoio::time::timeout(CLOSE_LIMIT, client.close_gracefully(linger, LINGER_BYTES))
                    .await;
            drop(admitted);
        }));
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.now = clock::now();
        if let Some((generation, config)) = self.env.config.changed_since(self.config_generation) {
            // A reload: the core applies it from the next request head.
            self.config_generation = generation;
            self.core.set_config(config);
        }
        for _ in 0..BUDGET {
            if self.env.drain.is_on() && !self.draining {
                // The core closes an idle connection at once and lets a busy one finish its
                // exchange with `Connection: close`.
                self.draining = true;
                if self.core.is_idle() && self.client.write_idle() {
                    // Nothing is being answered, so there is no response to protect by lingering.
                    self.linger = false;
                }
                self.core.drain();
                if let Some(i) = &mut self.intercept {
                    // The requests inside an intercepted tunnel drain like any others.
                    i.drain();
                }
            }
            while let Some(out) = self.core.poll_output() {
                self.carry_out(out, cx);
            }
            if self.closing {
                return Poll::Ready(());
            }
            if self.step() {
                continue;
            }
            if self.poll_waits(cx) {
                continue;
            }
            if !self.drain_registered && !self.env.drain.is_on() {
                self.env.drain.register(self.id, cx.waker());
                self.drain_registered = true;
            }
            return Poll::Pending;
        }
        // Plenty done: let other connections run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Synchronous progress: flushes, then at most one read (or relay steps). Returns
    /// whether anything happened that may have produced outputs or enabled more progress.
    fn step(&mut self) -> bool {
        let tunnel = self.core.is_tunnel();
        let mut fed = false;
        let flushed = self.client.flush();
        if flushed.relayed > 0 {
            self.core
                .handle_relayed(self.now, Direction::UpstreamToClient, flushed.relayed);
            fed = true;
        }
        if flushed.error {
            self.core.handle_client_error(self.now);
            return true;
        }
        if let Some(u) = &mut self.upstream {
            let flushed = u.flush();
            if flushed.relayed > 0 {
                self.core
                    .handle_relayed(self.now, Direction::ClientToUpstream, flushed.relayed);
                fed = true;
            }
            if flushed.error {
                self.core.handle_upstream_error(self.now);
                return true;
            }
        }
        if tunnel {
            return self.relay_step() || fed;
        }
        if fed {
            return true;
        }
        let upstream_idle = self.upstream.as_ref().map_or(true, |u| u.write_idle());
        if self.core.wants_client_read() && upstream_idle {
            if let Some(ev) = self.client.try_read() {
                self.on_client_read(ev);
                return true;
            }
        }
        if self.core.wants_upstream_read() && self.client.write_idle() {
            if let Some(ev) = self.upstream.as_mut().and_then(|u| u.try_read()) {
                self.on_upstream_read(ev);
                return true;
            }
        }
        false
    }

    /// One step of an intercepted tunnel; hands over to the relay if it passes through.
    fn intercept_step(&mut self) -> bool {
        let (Some(i), Some(upstream)) = (&mut self.intercept, &mut self.upstream) else {
            return false;
        };
        match i.step(&mut self.client, upstream, &self.env, self.now) {
            Step::Idle => false,
            Step::Progress => true,
            Step::Passthrough { bytes, then, why } => {
                self.intercept = None;
                if let Some(word) = why {
                    self.core.note_tunnel(word);
                }
                upstream.push(WriteOp::Data {
                    bytes,
                    relayed: true,
                });
                self.relay = Some(Box::new(Relay::new(
                    self.env.relay_mode,
                    &self.client,
                    upstream,
                )));
                match then {
                    Some(ReadEvent::Eof) => self.core.handle_client_eof(self.now),
                    Some(ReadEvent::Error) => self.core.handle_client_error(self.now),
                    _ => {}
                }
                true
            }
            Step::Done(note) => {
                // The inner connection closed: end the outer tunnel both ways.
                self.intercept = None;
                if let Some(word) = note {
                    self.core.note_tunnel(word);
                }
                let now = self.now;
                self.core.handle_client_eof(now);
                self.core.handle_upstream_eof(now);
                true
            }
        }
    }

    /// One relay step in each open direction of a tunnel.
    fn relay_step(&mut self) -> bool {
        if self.intercept.is_some() {
            return self.intercept_step();
        }
        let (Some(relay), Some(upstream), Some(meter)) =
            (&mut self.relay, &mut self.upstream, self.core.tunnel())
        else {
            return false;
        };
        let ended = [
            meter.has_ended(Direction::ClientToUpstream),
            meter.has_ended(Direction::UpstreamToClient),
        ];
        let mut results = [Moved::Nothing, Moved::Nothing];
        if !ended[0] {
            results[0] = relay.step(Direction::ClientToUpstream, &mut self.client, upstream);
        }
        if !ended[1] {
            results[1] = relay.step(Direction::UpstreamToClient, upstream, &mut self.client);
        }
        let now = self.now;
        let mut fed = false;
        for (direction, moved) in [Direction::ClientToUpstream, Direction::UpstreamToClient]
            .into_iter()
            .zip(results)
        {
            let from_client = direction == Direction::ClientToUpstream;
            match moved {
                Moved::Nothing => continue,
                Moved::Bytes(0) => {}
                Moved::Bytes(n) => self.core.handle_relayed(now, direction, n),
                Moved::Eof if from_client => self.core.handle_client_eof(now),
                Moved::Eof => self.core.handle_upstream_eof(now),
                // A read error is the source's, a write error the destination's.
                Moved::ReadError if from_client => self.core.handle_client_error(now),
                Moved::ReadError => self.core.handle_upstream_error(now),
                Moved::WriteError if from_client => self.core.handle_upstream_error(now),
                Moved::WriteError => self.core.handle_client_error(now),
            }
            fed = true;
        }
        fed
    }

    /// Polls everything waited for; returns whether any of it is ready (more progress).
    fn poll_waits(&mut self, cx: &mut Context<'_>) -> bool {
        let mut ready = false;
        let (want_client, want_upstream) = self.wanted_reads();
        if want_client && self.client.poll_readable(cx).is_ready() {
            ready = true;
        }
        if let Some(u) = &mut self.upstream {
            if want_upstream && u.poll_readable(cx).is_ready() {
                ready = true;
            }
            if u.write_blocked() && u.poll_writable(cx).is_ready() {
                ready = true;
            }
        }
        if self.client.write_blocked() && self.client.poll_writable(cx).is_ready() {
            ready = true;
        }
        if let Some(r) = &mut self.resolving {
            if let Poll::Ready(addrs) = r.as_mut().poll(cx) {
                self.resolving = None;
                if addrs.is_empty() {
                    crate::metrics::upstream_dns_error();
                }
                self.core.handle_resolved(self.now, &addrs);
                ready = true;
            }
        }
        for i in 0..self.dialing.len() {
            if let Poll::Ready(result) = self.dialing[i].2.as_mut().poll(cx) {
                let (attempt, addr, _) = self.dialing.remove(i);
                self.on_dialed(attempt, addr, result);
                // One result at a time: the core's answer (cancelling the others, say) is
                // carried out before any other attempt is looked at again.
                ready = true;
                break;
            }
        }
        if let Some(i) = &mut self.intercept {
            if let Poll::Ready(socket) = i.poll_dial(cx, self.now) {
                // A re-dial of the origin inside an intercepted tunnel replaces the socket.
                if let Some(socket) = socket {
                    self.upstream = Some(Box::new(socket));
                }
                ready = true;
            }
        }
        self.arm_timer(cx);
        if let Some(key) = self.timer {
            let now = self.now;
            if now >= key.at() {
                self.env.timers.remove(key);
                self.timer = None;
                self.core.handle_timeout(now);
                if let Some(i) = &mut self.intercept {
                    i.handle_timeout(now);
                }
                ready = true;
            }
        }
        ready
    }

    /// Which sides to wait on for readability: wanted (by the core, or by an open tunnel
    /// direction), allowed by backpressure, and not already known to have bytes.
    fn wanted_reads(&self) -> (bool, bool) {
        let client_free = self.client.write_idle() && !self.client.write_blocked();
        let Some(u) = &self.upstream else {
            return (
                self.core.wants_client_read() && !self.client.read_hint(),
                false,
            );
        };
        let upstream_free = u.write_idle() && !u.write_blocked();
        if let Some(i) = &self.intercept {
            return (
                // Client bytes go upstream and the other way round: each side is read only
                // while the other's queue is empty.
                upstream_free && i.wants_client(&self.client) && !self.client.read_hint(),
                client_free && i.wants_upstream(u) && !u.read_hint(),
            );
        }
        let (want_client, want_upstream) = match (self.core.tunnel(), &self.relay) {
            (Some(meter), Some(relay)) => (
                !meter.has_ended(Direction::ClientToUpstream)
                    && relay.may_read(Direction::ClientToUpstream, u),
                !meter.has_ended(Direction::UpstreamToClient)
                    && relay.may_read(Direction::UpstreamToClient, &self.client),
            ),
            (Some(_), None) => (false, false),
            (None, _) => (
                self.core.wants_client_read() && upstream_free,
                self.core.wants_upstream_read() && client_free,
            ),
        };
        (
            want_client && !self.client.read_hint() && !self.client.read_ended(),
            want_upstream && !u.read_hint() && !u.read_ended(),
        )
    }

    fn carry_out(&mut self, out: Output, cx: &mut Context<'_>) {
        match out {
            Output::ToClient(bytes) => self.client.push(WriteOp::Data {
                bytes,
                relayed: false,
            }),
            Output::ToUpstream(bytes) => {
                if let Some(u) = &mut self.upstream {
                    u.push(WriteOp::Data {
                        bytes,
                        relayed: false,
                    });
                }
            }
            Output::Resolve(authority) => {
                let env = Rc::clone(&self.env);
                self.resolving = Some(Box::pin(async move {
                    env.resolver.resolve(authority.host()).await
                }));
            }
            Output::Connect {
                attempt,
                addr,
                allow_pooled,
                retryable,
            } => self.connect(attempt, addr, allow_pooled, retryable),
            Output::CancelConnect(attempt) => {
                // Dropping the future abandons the attempt and closes its socket.
                self.dialing.retain(|(id, ..)| *id != attempt);
            }
            Output::ReleaseUpstream => self.release_upstream(cx),
            Output::CloseUpstream => {
                self.upstream = None;
                self.dialing.clear();
                self.resolving = None;
            }
            Output::ShutdownClientWrite => self.client.push(WriteOp::Shutdown),
            Output::ShutdownUpstreamWrite => {
                if let Some(u) = &mut self.upstream {
                    u.push(WriteOp::Shutdown);
                }
            }
            Output::StartTunnel {
                to_upstream,
                to_client,
            } => {
                let intercept = self
                    .core
                    .tunnel_authority()
                    .filter(|a| intercepted::wanted(a));
                if let (Some(u), Some(authority)) = (&mut self.upstream, intercept) {
                    // The early bytes are the start of the ClientHello: read, not relayed.
                    self.intercept = Some(Box::new(Intercepted::new(
                        authority.clone(),
                        self.upstream_addr,
                        self.core.client(),
                        self.env.config.current().1,
                        &to_upstream,
                    )));
                    let _ = u;
                    self.tunnel_gauge = crate::metrics::tunnel_opened();
                } else if let Some(u) = &mut self.upstream {
                    u.push(WriteOp::Data {
                        bytes: to_upstream,
                        relayed: false,
                    });
                    self.relay = Some(Box::new(Relay::new(self.env.relay_mode, &self.client, u)));
                    self.tunnel_gauge = crate::metrics::tunnel_opened();
                }
                self.client.push(WriteOp::Data {
                    bytes: to_client,
                    relayed: false,
                });
            }
            Output::Log(record) => {
                crate::metrics::observe(&record);
                self.env.log.write(&record);
            }
            Output::Close { linger } => {
                // The core knows whether the client may still send (see `Output::Close`).
                self.linger &= linger;
                self.closing = true;
                self.upstream = None;
                self.dialing.clear();
                self.resolving = None;
            }
        }
    }

    /// Puts the upstream connection in the pool. Its writes normally all went out already
    /// (the upstream answered them); otherwise a small task finishes them before pooling.
    fn release_upstream(&mut self, _cx: &mut Context<'_>) {
        let (Some(mut socket), Some(addr)) = (self.upstream.take(), self.upstream_addr.take())
        else {
            return;
        };
        let env = Rc::clone(&self.env);
        socket.flush();
        if socket.write_idle() {
            if let Some(stream) = (*socket).into_idle_stream() {
                env.pool.borrow_mut().put(addr, stream);
            }
            return;
        }
        monoio::spawn(async move {
            let finished = monoio::time::timeout(CLOSE_LIMIT, socket.finish_writes()).await;
            if finished == Ok(true) {
                if let Some(stream) = (*socket).into_idle_stream() {
                    env.pool.borrow_mut().put(addr, stream);
                }
            }
        });
    }

    fn connect(
        &mut self,
        attempt: AttemptId,
        addr: SocketAddr,
        allow_pooled: bool,
        retryable: bool,
    ) {
        self.upstream = None;
        if allow_pooled {
            let pooled = self.env.pool.borrow_mut().take(addr, retryable);
            if let Some(stream) = pooled {
                self.upstream = Some(Box::new(Socket::new(stream, false)));
                self.upstream_addr = Some(addr);
                self.core
                    .handle_dial(self.now, attempt, Ok(Dialed { reused: true }));
                return;
            }
        }
        // The core's deadline bounds the whole race; this bounds one attempt the same way.
        let timeout = self.env.config.current().1.connect_timeout;
        self.dialing
            .push((attempt, addr, Box::pin(connect(addr, timeout))));
    }

    fn on_dialed(
        &mut self,
        attempt: AttemptId,
        addr: SocketAddr,
        result: Result<TcpStream, DialError>,
    ) {
        let now = self.now;
        match result {
            Ok(stream) => {
                // The winner (the core cancels the other attempts in its answer).
                self.upstream = Some(Box::new(Socket::new(stream, false)));
                self.upstream_addr = Some(addr);
                self.core
                    .handle_dial(now, attempt, Ok(Dialed { reused: false }));
            }
            Err(e) => self.core.handle_dial(now, attempt, Err(e)),
        }
    }

    fn on_client_read(&mut self, ev: ReadEvent) {
        let now = self.now;
        match ev {
            ReadEvent::Data(bytes) => self.core.handle_client_data(now, bytes),
            ReadEvent::Eof => self.core.handle_client_eof(now),
            ReadEvent::Error => self.core.handle_client_error(now),
        }
    }

    fn on_upstream_read(&mut self, ev: ReadEvent) {
        let now = self.now;
        match ev {
            ReadEvent::Data(bytes) => self.core.handle_upstream_data(now, bytes),
            ReadEvent::Eof => self.core.handle_upstream_eof(now),
            ReadEvent::Error => self.core.handle_upstream_error(now),
        }
    }

    /// Keeps a deadline registered at or before the core's. One that fires early is
    /// harmless (`handle_timeout` ignores it), so it is replaced only when the core's
    /// deadline moves earlier.
    fn arm_timer(&mut self, cx: &mut Context<'_>) {
        let mut deadline = self.core.poll_timeout();
        // An intercepted tunnel's inner connection has deadlines of its own.
        if let Some(inner) = self.intercept.as_ref().and_then(|i| i.poll_timeout()) {
            deadline = Some(deadline.map_or(inner, |d| d.min(inner)));
        }
        if let Some(key) = self.timer {
            if deadline.is_some_and(|d| key.at() <= d) {
                return;
            }
            self.env.timers.remove(key);
            self.timer = None;
        }
        if let Some(deadline) = deadline {
            self.timer = Some(self.env.timers.insert(deadline, cx.waker()));
        }
    }
}
