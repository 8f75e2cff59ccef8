//! An intercepted CONNECT tunnel: the transport that puts the two TLS sessions between the
//! tunnel's sockets and a core [`Connection`] in intercepted-tunnel mode.
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
//!    Ciphertext is queued on the sockets as tunnel payload, so the outer connection's
//!    tunnel accounting and idle timeout keep working.
//! 3. **Done**: the inner connection closed; the caller ends the outer tunnel.
//!
//! Limits of this first wiring (each answered, never hung): one origin connection per
//! tunnel (a request after the origin closed gets 502); the inner connection's own
//! deadlines are not armed (the outer tunnel idle timeout bounds a silent tunnel); an
//! upgrade (WebSocket) inside ends the tunnel.
//!
//! Failure: a client that aborts the handshake (a pinned app refusing our leaf) ends the
//! tunnel, whose log line says `reason=client_tls_abort`; a tunnel passed through says why
//! (`reason=not_tls`, `tls_ech`, `tls_no_http11`); an origin TLS failure is the inner
//! connection's answer.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use ringway_core::client_hello;
use ringway_core::egress::HostPatterns;
use ringway_core::intercept::{self, Decision};
use ringway_core::target::Authority;
use ringway_core::{AttemptId, Config, Connection, DialError, Dialed, Output};

use super::adapter::{Interceptor, Plain, TlsFailure, TlsSession};
use crate::clock;
use crate::socket::{ReadEvent, Socket, WriteOp};
use crate::worker::Env;

/// The tunnel's log word for a client that aborted its handshake (a pinned app, or a client
/// that does not trust the CA).
pub const CLIENT_TLS_ABORT: &str = "client_tls_abort";

/// What interception needs, built once at start-up from the flags.
pub struct Setup {
    /// `--intercept` patterns.
    pub patterns: HostPatterns,
    /// The CA, leaf cache and TLS configurations.
    pub interceptor: Interceptor,
    /// `--insecure-upstream`: every line of an intercepted request says
    /// `reason=insecure_upstream` (unless it has a reason of its own).
    pub insecure: bool,
}

/// The interception setup, set once by `main` before the workers start and read-only after.
/// A process-wide value rather than a field of each worker's `Env`, so that the wiring stays
/// out of the worker plumbing; `None` (never set) means interception is off.
pub static SETUP: OnceLock<Setup> = OnceLock::new();

/// Whether the tunnel to `authority` should be offered to interception (the ClientHello
/// decides the rest).
pub fn wanted(authority: &Authority) -> bool {
    SETUP
        .get()
        .is_some_and(|s| intercept::matches(&s.patterns, authority.host()))
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

struct Inside {
    front: TlsSession,
    back: Option<TlsSession>,
    inner: Connection,
    /// The inner connection holds the origin connection (between Connect and Release).
    back_in_use: bool,
    /// It was handed out before (a later Connect reports `reused`).
    back_used: bool,
    /// The inner connection waits for the origin handshake to report its dial.
    dial_pending: bool,
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
    state: State,
}

impl Intercepted {
    /// A tunnel to `pinned`, whose CONNECT carried `early` bytes after its head (a client may
    /// send its ClientHello at once).
    pub fn new(
        pinned: Authority,
        upstream_addr: Option<SocketAddr>,
        client_addr: SocketAddr,
        config: Arc<Config>,
        early: &[u8],
    ) -> Intercepted {
        // Through a parent proxy the tunnel already reaches the origin: the requests inside
        // go straight down it, never to the parent again.
        let config = if config.parent.is_some() {
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

    /// Does what can be done now with the two sockets.
    pub fn step(&mut self, client: &mut Socket, upstream: &mut Socket, env: &Env) -> Step {
        let setup = match SETUP.get() {
            Some(s) => s,
            None => return Step::Done(None),
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
                        eprintln!("ringway: intercepting {}: {e}", self.pinned);
                        return Step::Done(None);
                    }
                };
                let back = setup.interceptor.connect(self.pinned.host()).ok();
                let inner = Connection::new_intercepted(
                    Arc::clone(&self.config),
                    self.client_addr,
                    self.pinned.clone(),
                    clock::now(),
                );
                let mut inside = Box::new(Inside {
                    front,
                    back,
                    inner,
                    back_in_use: false,
                    back_used: false,
                    dial_pending: false,
                    attempt: AttemptId(0),
                    back_tail: Vec::new(),
                    back_failed: None,
                    aborted: false,
                    done: false,
                });
                let fed = inside.feed_front(&hello_bytes);
                self.state = State::Inside(inside);
                if fed.is_err() {
                    return Step::Done(Some(CLIENT_TLS_ABORT));
                }
                Step::Progress
            }
            State::Inside(inside) => {
                let progress = inside.step(client, upstream, env, self.upstream_addr);
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
    /// Feeds client ciphertext; plaintext goes to the inner connection.
    fn feed_front(&mut self, mut data: &[u8]) -> Result<(), TlsFailure> {
        let now = clock::now();
        let mut plain = Vec::new();
        while !data.is_empty() {
            let n = match self.front.feed(data) {
                Ok(n) => n,
                Err(e) => {
                    let _ = e;
                    self.aborted = self.front.is_handshaking();
                    self.done = true;
                    return Err(e);
                }
            };
            data = &data[n..];
            if let Plain::Data(_) = self.front.read_plaintext(&mut plain) {
                self.inner
                    .handle_client_data(now, Bytes::from(std::mem::take(&mut plain)));
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Feeds origin ciphertext; reports the dial once the handshake is done.
    fn feed_back(&mut self, mut data: &[u8]) {
        let now = clock::now();
        let Some(back) = &mut self.back else { return };
        // rustls takes ciphertext only while its plaintext buffer has room: feed, drain the
        // plaintext to the inner connection, and feed the rest.
        loop {
            let n = match back.feed(data) {
                Ok(n) => n,
                Err(e) => {
                    let err = match e {
                        TlsFailure::Certificate(_) => DialError::TlsCertificate,
                        _ => DialError::TlsProtocol,
                    };
                    if self.dial_pending {
                        self.dial_pending = false;
                        self.inner.handle_dial(now, self.attempt, Err(err));
                    } else if back.is_handshaking() {
                        // Nobody asked yet: the next dial gets the error.
                        self.back_failed = Some(err);
                    } else {
                        self.inner.handle_upstream_error(now);
                    }
                    self.back = None;
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
            }
            let mut plain = Vec::new();
            let drained = match back.read_plaintext(&mut plain) {
                Plain::Data(_) => {
                    self.inner.handle_upstream_data(now, Bytes::from(plain));
                    true
                }
                Plain::Closed => {
                    self.inner.handle_upstream_eof(now);
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
        let mut out = Vec::new();
        self.front.take_ciphertext(&mut out);
        let mut queued = !out.is_empty();
        if !out.is_empty() {
            client.push(WriteOp::Data {
                bytes: Bytes::from(out),
                relayed: true,
            });
        }
        let mut out = std::mem::take(&mut self.back_tail);
        if let Some(back) = &mut self.back {
            back.take_ciphertext(&mut out);
        }
        if !out.is_empty() {
            queued = true;
            upstream.push(WriteOp::Data {
                bytes: Bytes::from(out),
                relayed: true,
            });
        }
        queued
    }

    fn step(
        &mut self,
        client: &mut Socket,
        upstream: &mut Socket,
        env: &Env,
        upstream_addr: Option<SocketAddr>,
    ) -> bool {
        let now = clock::now();
        let mut progress = false;
        // Backpressure as in the relay: a side is read only while the socket its bytes go to
        // has nothing queued, so at most one read's worth sits in the sessions per direction.
        if upstream.write_idle() {
            match client.try_read() {
                Some(ReadEvent::Data(b)) => {
                    progress = true;
                    let _ = self.feed_front(&b);
                }
                Some(ReadEvent::Eof) => {
                    progress = true;
                    let _ = self.front.feed_eof();
                    self.inner.handle_client_eof(now);
                }
                Some(ReadEvent::Error) => {
                    progress = true;
                    self.inner.handle_client_error(now);
                }
                None => {}
            }
        }
        if self.back.is_some() && client.write_idle() {
            match upstream.try_read() {
                Some(ReadEvent::Data(b)) => {
                    progress = true;
                    self.feed_back(&b);
                }
                Some(ReadEvent::Eof) => {
                    progress = true;
                    if let Some(back) = &mut self.back {
                        let _ = back.feed_eof();
                    }
                    if self.dial_pending {
                        self.dial_pending = false;
                        self.inner
                            .handle_dial(now, self.attempt, Err(DialError::TlsProtocol));
                    } else {
                        self.inner.handle_upstream_eof(now);
                    }
                }
                Some(ReadEvent::Error) => {
                    progress = true;
                    self.inner.handle_upstream_error(now);
                }
                None => {}
            }
        }
        while let Some(out) = self.inner.poll_output() {
            progress = true;
            self.carry_out(out, env, upstream_addr);
        }
        self.flush(client, upstream) || progress
    }

    fn carry_out(&mut self, out: Output, env: &Env, upstream_addr: Option<SocketAddr>) {
        let now = clock::now();
        match out {
            // The sessions' send buffers are unbounded (see `TlsSession::new`): all is taken.
            Output::ToClient(b) => {
                let taken = self.front.write_plaintext(&b);
                debug_assert_eq!(taken, b.len());
            }
            Output::ToUpstream(b) => {
                if let Some(back) = &mut self.back {
                    let taken = back.write_plaintext(&b);
                    debug_assert_eq!(taken, b.len());
                }
            }
            // The pinned authority was resolved and judged for the CONNECT: answer with the
            // address that dial reached (the core judges it again).
            Output::Resolve(_) => {
                let ips: Vec<std::net::IpAddr> =
                    upstream_addr.map(|a| a.ip()).into_iter().collect();
                self.inner.handle_resolved(now, &ips);
            }
            Output::Connect { attempt, addr, .. } => {
                self.attempt = attempt;
                // The one upstream is the tunnel's (to the origin, or to the parent carrying
                // it: then the port the core names is the origin's, the address the parent's).
                let usable = self.back.is_some()
                    && !self.back_in_use
                    && Some(addr.ip()) == upstream_addr.map(|a| a.ip());
                if !usable {
                    let err = self.back_failed.unwrap_or(DialError::Refused);
                    self.inner.handle_dial(now, self.attempt, Err(err));
                    return;
                }
                self.back_in_use = true;
                if self.back.as_ref().is_some_and(|b| b.is_handshaking()) {
                    self.dial_pending = true;
                } else {
                    self.inner.handle_dial(
                        now,
                        self.attempt,
                        Ok(Dialed {
                            reused: self.back_used,
                        }),
                    );
                }
            }
            // The only attempt is the origin session. Cancelled while it waited for the
            // origin's handshake (the dial deadline passed), it gives the session back.
            Output::CancelConnect(attempt) => {
                if attempt == self.attempt {
                    self.dial_pending = false;
                    self.back_in_use = false;
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
            Output::StartTunnel { .. } => {
                // An upgrade inside: not relayed in this first wiring; end the tunnel.
                self.done = true;
            }
            Output::Log(mut record) => {
                if SETUP.get().is_some_and(|s| s.insecure) && record.reason.is_none() {
                    record.reason = Some("insecure_upstream");
                }
                crate::metrics::observe(&record);
                env.log.write(&record);
            }
            Output::Close => {
                self.front.close();
                self.done = true;
            }
        }
    }
}
