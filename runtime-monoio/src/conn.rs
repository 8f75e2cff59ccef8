//! Drives one client [`Connection`]: carries out its outputs, feeds it socket events and
//! timeouts, until it says [`Output::Close`].
//!
//! The loop (one `poll_fn`, so every step has `&mut` access without awaiting):
//! 1. Drain `poll_output`, carrying out each output in order: writes are queued per socket
//!    (see [`Socket`]), a dial becomes an in-flight future (or a pooled stream), logs are
//!    written, `Close` ends the loop.
//! 2. Start reads the core (or, in a tunnel, the relay) wants, and queued writes. A side is
//!    read only while the socket its bytes go to has nothing left to write, so at most one
//!    read buffer per direction is ever held: backpressure without unbounded buffering.
//! 3. Poll everything in flight (both reads, both writes, the dial, the timer, the drain
//!    notice), starting at a rotating slot so no source starves the others. The first event
//!    is fed to the core; then back to 1.
//!
//! In a tunnel the core stops taking bytes: reads from one side are queued as writes to the
//! other, and each completed write is reported with `handle_relayed`. The reads in flight at
//! the switch simply carry on, so no byte is lost across it.
//!
//! Failure: socket errors become `handle_*_error` inputs; the core decides. Once closed, the
//! client socket gets up to [`CLOSE_LIMIT`] to flush and linger; then everything is dropped.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::net::TcpStream;
use ringway_core::target::Authority;
use ringway_core::tunnel::Direction;
use ringway_core::{Connection, DialError, Dialed, Output};

use crate::clock;
use crate::dial::dial;
use crate::socket::{ReadEvent, Socket, WriteEvent, WriteOp, CLOSE_LIMIT};
use crate::worker::Env;

type DialFuture = Pin<Box<dyn Future<Output = Result<TcpStream, DialError>>>>;

/// Events handled per wake before yielding to other connections on this thread.
const BUDGET: usize = 64;
/// How much unread client input a closing connection reads and discards.
const LINGER_BYTES: usize = 256 * 1024;
/// Added to each timer so it fires after, not just before, the core's deadline (monoio's
/// timer has millisecond resolution; an early wake is harmless but costs a loop).
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Serves one accepted client until the core closes it.
pub async fn serve(env: Rc<Env>, id: u64, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let core = Connection::new(env.config.clone(), peer, clock::now());
    let mut conn = Conn {
        env,
        id,
        core,
        client: Socket::new(stream),
        upstream: None,
        authority: None,
        dialing: None,
        timer: None,
        closing: false,
        draining: false,
        linger: true,
        turn: 0,
    };
    poll_fn(|cx| conn.poll(cx)).await;
    conn.env.drain.unregister(id);
    let Conn { client, linger, .. } = conn;
    let _ = monoio::time::timeout(CLOSE_LIMIT, client.close_gracefully(linger, LINGER_BYTES)).await;
}

struct Conn {
    env: Rc<Env>,
    id: u64,
    core: Connection,
    client: Socket,
    upstream: Option<Socket>,
    /// Where `upstream` (or the dial in flight) goes: the pool key.
    authority: Option<Authority>,
    dialing: Option<DialFuture>,
    timer: Option<(ringway_core::Instant, Pin<Box<monoio::time::Sleep>>)>,
    closing: bool,
    /// Shutdown was passed on to the core (`Connection::drain`).
    draining: bool,
    /// Whether closing should read and discard late client input (see `close_gracefully`).
    linger: bool,
    turn: usize,
}

impl Conn {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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
            }
            while let Some(out) = self.core.poll_output() {
                self.carry_out(out, cx);
            }
            if self.closing {
                return Poll::Ready(());
            }
            self.start_io();
            self.arm_timer();
            if !self.poll_one(cx) {
                if !self.env.drain.is_on() {
                    self.env.drain.register(self.id, cx.waker());
                }
                return Poll::Pending;
            }
        }
        // Plenty done: let other connections run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Polls each source once, starting at a rotating slot; handles the first ready event.
    fn poll_one(&mut self, cx: &mut Context<'_>) -> bool {
        const SLOTS: usize = 6;
        let start = self.turn;
        for i in 0..SLOTS {
            let slot = (start + i) % SLOTS;
            if self.poll_slot(slot, cx) {
                self.turn = slot + 1;
                return true;
            }
        }
        false
    }

    fn poll_slot(&mut self, slot: usize, cx: &mut Context<'_>) -> bool {
        match slot {
            0 => match self.client.poll_read(cx) {
                Poll::Ready(ev) => self.on_client_read(ev),
                Poll::Pending => return false,
            },
            1 => match self.upstream.as_mut().map(|u| u.poll_read(cx)) {
                Some(Poll::Ready(ev)) => self.on_upstream_read(ev),
                _ => return false,
            },
            2 => match self.client.poll_write(cx) {
                Poll::Ready(ev) => self.on_write(ev, true),
                Poll::Pending => return false,
            },
            3 => match self.upstream.as_mut().map(|u| u.poll_write(cx)) {
                Some(Poll::Ready(ev)) => self.on_write(ev, false),
                _ => return false,
            },
            4 => match self.dialing.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(result)) => {
                    self.dialing = None;
                    self.on_dialed(result);
                }
                _ => return false,
            },
            _ => match self.timer.as_mut().map(|(_, t)| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    self.timer = None;
                    self.core.handle_timeout(clock::now());
                }
                _ => return false,
            },
        }
        true
    }

    fn carry_out(&mut self, out: Output, cx: &mut Context<'_>) {
        match out {
            Output::ToClient(bytes) => self.client.push(WriteOp::Data {
                bytes,
                relayed: None,
            }),
            Output::ToUpstream(bytes) => {
                if let Some(u) = &mut self.upstream {
                    u.push(WriteOp::Data {
                        bytes,
                        relayed: None,
                    });
                }
            }
            Output::Dial {
                authority,
                allow_pooled,
            } => self.dial(authority, allow_pooled),
            Output::ReleaseUpstream => self.release_upstream(cx),
            Output::CloseUpstream => {
                self.upstream = None;
                self.dialing = None;
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
                if !to_upstream.is_empty() {
                    if let Some(u) = &mut self.upstream {
                        u.push(WriteOp::Data {
                            bytes: to_upstream,
                            relayed: None,
                        });
                    }
                }
                if !to_client.is_empty() {
                    self.client.push(WriteOp::Data {
                        bytes: to_client,
                        relayed: None,
                    });
                }
            }
            Output::Log(record) => self.env.log.write(&record),
            Output::Close => {
                self.closing = true;
                self.upstream = None;
                self.dialing = None;
            }
        }
    }

    /// Puts the upstream connection in the pool. Usually its last write has completed (the
    /// upstream answered it), maybe without our having polled it yet: one poll settles that.
    /// Otherwise a small task waits for the write before pooling.
    fn release_upstream(&mut self, cx: &mut Context<'_>) {
        let (Some(mut socket), Some(authority)) = (self.upstream.take(), self.authority.take())
        else {
            return;
        };
        let env = Rc::clone(&self.env);
        if socket.settle_write(cx) {
            let stream = std::pin::pin!(socket.into_idle_stream());
            // Nothing left to await: the future completes on its first poll.
            if let Poll::Ready(Some(stream)) = stream.poll(cx) {
                env.pool.borrow_mut().put(authority, stream);
            }
            return;
        }
        monoio::spawn(async move {
            let settled = monoio::time::timeout(CLOSE_LIMIT, socket.into_idle_stream()).await;
            if let Ok(Some(stream)) = settled {
                env.pool.borrow_mut().put(authority, stream);
            }
        });
    }

    fn dial(&mut self, authority: Authority, allow_pooled: bool) {
        self.upstream = None;
        if allow_pooled {
            let pooled = self.env.pool.borrow_mut().take(&authority);
            if let Some(stream) = pooled {
                self.upstream = Some(Socket::new(stream));
                self.authority = Some(authority);
                self.core
                    .handle_dial(clock::now(), Ok(Dialed { reused: true }));
                return;
            }
        }
        let env = Rc::clone(&self.env);
        let target = authority.clone();
        self.authority = Some(authority);
        self.dialing = Some(Box::pin(async move {
            dial(&env.resolver, &target, env.config.connect_timeout).await
        }));
    }

    fn on_dialed(&mut self, result: Result<TcpStream, DialError>) {
        let now = clock::now();
        match result {
            Ok(stream) => {
                self.upstream = Some(Socket::new(stream));
                self.core.handle_dial(now, Ok(Dialed { reused: false }));
            }
            Err(e) => self.core.handle_dial(now, Err(e)),
        }
    }

    fn on_client_read(&mut self, ev: ReadEvent) {
        let now = clock::now();
        match ev {
            ReadEvent::Data(bytes) if self.core.is_tunnel() => {
                if let Some(u) = &mut self.upstream {
                    u.push(WriteOp::Data {
                        bytes,
                        relayed: Some(Direction::ClientToUpstream),
                    });
                }
            }
            ReadEvent::Data(bytes) => self.core.handle_client_data(now, bytes),
            ReadEvent::Eof => self.core.handle_client_eof(now),
            ReadEvent::Error => self.core.handle_client_error(now),
        }
    }

    fn on_upstream_read(&mut self, ev: ReadEvent) {
        let now = clock::now();
        match ev {
            ReadEvent::Data(bytes) if self.core.is_tunnel() => self.client.push(WriteOp::Data {
                bytes,
                relayed: Some(Direction::UpstreamToClient),
            }),
            ReadEvent::Data(bytes) => self.core.handle_upstream_data(now, bytes),
            ReadEvent::Eof => self.core.handle_upstream_eof(now),
            ReadEvent::Error => self.core.handle_upstream_error(now),
        }
    }

    fn on_write(&mut self, ev: WriteEvent, to_client: bool) {
        let now = clock::now();
        match ev {
            WriteEvent::Done(Some((direction, n))) => self.core.handle_relayed(now, direction, n),
            WriteEvent::Done(None) => {}
            WriteEvent::Error if to_client => self.core.handle_client_error(now),
            WriteEvent::Error => self.core.handle_upstream_error(now),
        }
    }

    /// Starts the reads that are wanted and allowed by backpressure, and queued writes.
    fn start_io(&mut self) {
        let upstream_idle = self.upstream.as_ref().map_or(true, Socket::write_idle);
        let client_idle = self.client.write_idle();
        let (want_client, want_upstream) = match self.core.tunnel() {
            Some(meter) => (
                !meter.has_ended(Direction::ClientToUpstream),
                !meter.has_ended(Direction::UpstreamToClient),
            ),
            None if self.core.is_closed() => (false, false),
            None => (
                self.core.wants_client_read(),
                self.core.wants_upstream_read(),
            ),
        };
        if want_client && upstream_idle {
            self.client.start_read();
        }
        if let Some(u) = &mut self.upstream {
            if want_upstream && client_idle {
                u.start_read();
            }
            u.start_write();
        }
        self.client.start_write();
    }

    /// Keeps a timer at or before the core's deadline. A timer that fires early is harmless
    /// (`handle_timeout` ignores it), so one is replaced only when the deadline moves earlier.
    fn arm_timer(&mut self) {
        let Some(deadline) = self.core.poll_timeout() else {
            self.timer = None;
            return;
        };
        if matches!(&self.timer, Some((at, _)) if *at <= deadline) {
            return;
        }
        let sleep = monoio::time::sleep_until(clock::to_monoio(deadline + TIMER_SLACK));
        self.timer = Some((deadline, Box::pin(sleep)));
    }
}
