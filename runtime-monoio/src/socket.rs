//! One socket of a proxied connection (the client's or the upstream's): readiness waits,
//! reads into a per-thread buffer, and an ordered write queue sent with one `writev`.
//!
//! Why readiness and not monoio's rent-style `read`: a pending monoio read owns its buffer
//! until bytes arrive, so every idle connection would park a buffer of tens of KiB; and
//! under io_uring a submitted read that is dropped still consumes the bytes it receives. Here
//! a connection waits with [`TcpStream::readable`] (a `PollAdd` under io_uring, epoll
//! readiness under the legacy driver), which holds no buffer and loses nothing when dropped.
//! Once readable, a non-blocking `recv` (`MSG_DONTWAIT`, so the io_uring driver's blocking
//! fds are fine too) fills this thread's read buffer ([`READ_CHUNK`]); small reads are copied
//! out into an exact-size allocation, large ones hand over the filled part of the buffer
//! without copying. An idle connection therefore holds no buffer at all.
//!
//! Writes are synchronous too: everything queued goes out with one `sendmsg` (head and body
//! of a response, pieces of a dechunked body) with `MSG_DONTWAIT`; what the kernel does not
//! take stays queued and the socket waits for writability. Bytes and half-closes reach the
//! peer in the order the core emitted them.
//!
//! A client of the HTTPS listener (`--tls-listen`) gets a socket with a [`Front`]: reads
//! return the plaintext its ciphertext carried (handshake replies are queued and flushed on
//! the way), writes are encrypted as they are queued, a shutdown sends close_notify before
//! the FIN, and relayed bytes are counted in plaintext. Everyone above sees plaintext; the
//! plain path pays one predictable branch per read, write and flush.
//!
//! Failure: a read error or EOF is reported once and no further read is attempted; a write
//! error marks the socket broken, drops its queue and is reported once. A TLS failure of the
//! client is a read error (after queueing the alert). Nothing here panics.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::tls::front::{Front, Received};

/// Size of each thread's read buffer: one read takes at most this much.
pub const READ_CHUNK: usize = 128 * 1024;
/// A read buffer with less room than this left is replaced by a fresh one.
const MIN_READ: usize = 32 * 1024;
/// Reads up to this size are copied out (exact-size allocation, the buffer is kept); larger
/// ones take the buffer's filled part as is.
const COPY_MAX: usize = 4 * 1024;
/// Most buffers handed to one `sendmsg`.
const MAX_IOV: usize = 64;
/// Most ciphertext reads one [`Socket::try_read`] of a TLS client makes while they carry no
/// plaintext (a handshake in small pieces): then it returns and is called again.
const TLS_READS: usize = 16;

thread_local! {
    static READ_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

type Wait = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// What a read brought.
#[derive(Debug)]
pub enum ReadEvent {
    /// Bytes (never empty).
    Data(Bytes),
    /// The peer shut down its write side.
    Eof,
    /// The read failed (reset and the like).
    Error,
}

/// Something to send, in order.
#[derive(Debug)]
pub enum WriteOp {
    /// Bytes; `relayed` says whether they are tunnel payload to report once written.
    Data {
        /// The bytes (advanced as they are written).
        bytes: Bytes,
        /// Tunnel payload, counted in [`Flushed::relayed`].
        relayed: bool,
    },
    /// Shut down our write side (FIN) once everything before it is written.
    Shutdown,
}

/// What a flush did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flushed {
    /// Tunnel payload bytes written.
    pub relayed: u64,
    /// The write failed; the socket is now broken.
    pub error: bool,
}

/// One socket with its readiness waits and its write queue.
pub struct Socket {
    stream: Rc<TcpStream>,
    fd: RawFd,
    read_wait: Option<Wait>,
    /// Bytes may be waiting: a readiness event came, or the last read filled its buffer.
    read_hint: bool,
    read_ended: bool,
    write_wait: Option<Wait>,
    /// The kernel refused bytes: wait for writability before the next flush.
    write_blocked: bool,
    queue: VecDeque<WriteOp>,
    broken: bool,
    /// A TLS client (`--tls-listen`): its session; `None` for every plain socket.
    tls: Option<Box<TlsState>>,
}

/// A TLS client's session, and what flushes made on its own (handshake replies sent while
/// reading) found, for the next [`Socket::flush`] to report.
struct TlsState {
    front: Front,
    carry: Flushed,
}

impl Socket {
    /// Wraps a connected stream. `maybe_readable`: bytes may already wait (a fresh client),
    /// so the first read is tried before waiting for readiness.
    pub fn new(stream: TcpStream, maybe_readable: bool) -> Socket {
        let fd = stream.as_raw_fd();
        Socket {
            stream: Rc::new(stream),
            fd,
            read_wait: None,
            read_hint: maybe_readable,
            read_ended: false,
            write_wait: None,
            write_blocked: false,
            queue: VecDeque::new(),
            broken: false,
            tls: None,
        }
    }

    /// Wraps an accepted client of the HTTPS listener, served by `front`.
    pub fn new_tls(stream: TcpStream, front: Front) -> Socket {
        let mut socket = Socket::new(stream, true);
        socket.tls = Some(Box::new(TlsState {
            front,
            carry: Flushed::default(),
        }));
        socket
    }

    /// Whether this is a TLS client: its bytes must go through the session, never straight
    /// through the descriptor (no splice, no `recv` of the relay's own).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The raw descriptor (for the tunnel relay's own syscalls).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    // ----- reading -----

    /// Whether a read may find bytes now (no readiness wait needed first).
    pub fn read_hint(&self) -> bool {
        self.read_hint && !self.read_ended
    }

    /// Whether reading has ended (EOF or error seen).
    pub fn read_ended(&self) -> bool {
        self.read_ended
    }

    /// The relay found the socket drained (`EAGAIN`): wait for readiness next time.
    pub fn mark_drained(&mut self) {
        self.read_hint = false;
    }

    /// The relay saw EOF or an error: no further reads.
    pub fn mark_read_ended(&mut self) {
        self.read_ended = true;
    }

    /// Reads what is there, if the hint says bytes may wait. `None`: nothing to read now
    /// (wait with [`Socket::poll_readable`]).
    pub fn try_read(&mut self) -> Option<ReadEvent> {
        if !self.read_hint() {
            return None;
        }
        if self.tls.is_some() {
            return self.try_read_tls();
        }
        match recv_bytes(self.fd) {
            Ok(Some((bytes, full))) => {
                self.read_hint = full;
                Some(ReadEvent::Data(bytes))
            }
            Ok(None) => {
                self.read_ended = true;
                Some(ReadEvent::Eof)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.read_hint = false;
                None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(_) => {
                self.read_ended = true;
                Some(ReadEvent::Error)
            }
        }
    }

    /// [`Socket::try_read`] of a TLS client: reads ciphertext until it carries plaintext (or
    /// the socket is drained), sending the session's replies on the way.
    fn try_read_tls(&mut self) -> Option<ReadEvent> {
        if self
            .tls
            .as_mut()
            .is_some_and(|t| t.front.take_eof_pending())
        {
            self.read_ended = true;
            return Some(ReadEvent::Eof);
        }
        for _ in 0..TLS_READS {
            let tls = self.tls.as_mut()?;
            let mut plain = Vec::new();
            let event = match recv_bytes(self.fd) {
                Ok(Some((cipher, full))) => {
                    self.read_hint = full;
                    match tls.front.receive(&cipher, &mut plain) {
                        Ok(Received::Open) => None,
                        Ok(Received::Closed) if plain.is_empty() => Some(ReadEvent::Eof),
                        Ok(Received::Closed) => {
                            tls.front.set_eof_pending();
                            self.read_hint = true;
                            None
                        }
                        Err(_) => {
                            crate::metrics::client_tls_error();
                            Some(ReadEvent::Error)
                        }
                    }
                }
                Ok(None) => {
                    tls.front.receive_eof(&mut plain);
                    if plain.is_empty() {
                        Some(ReadEvent::Eof)
                    } else {
                        tls.front.set_eof_pending();
                        None
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_hint = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return None,
                Err(_) => Some(ReadEvent::Error),
            };
            self.send_tls_output();
            if let Some(event) = event {
                self.read_ended = true;
                return Some(event);
            }
            if !plain.is_empty() {
                return Some(ReadEvent::Data(Bytes::from(plain)));
            }
            if !self.read_hint {
                return None;
            }
        }
        None
    }

    /// Queues and sends what the TLS session has to say (handshake replies, tickets,
    /// alerts); the flush's findings wait for the next [`Socket::flush`].
    fn send_tls_output(&mut self) {
        let Some(out) = self.tls.as_mut().and_then(|t| t.front.outgoing()) else {
            return;
        };
        if self.broken {
            return;
        }
        self.queue.push_back(WriteOp::Data {
            bytes: out,
            relayed: false,
        });
        let flushed = self.flush();
        if let Some(t) = &mut self.tls {
            t.carry.relayed += flushed.relayed;
            t.carry.error |= flushed.error;
        }
    }

    /// Waits until the socket is readable (sets the hint). Keeps the wait across calls.
    pub fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_hint() || self.read_ended {
            return Poll::Ready(());
        }
        let wait = self.read_wait.get_or_insert_with(|| {
            let stream = Rc::clone(&self.stream);
            Box::pin(async move { stream.readable(false).await })
        });
        // An error (or a cancelled wait) also ends the wait: the next read reports it.
        let _ = std::task::ready!(wait.as_mut().poll(cx));
        self.read_wait = None;
        self.read_hint = true;
        Poll::Ready(())
    }

    // ----- writing -----

    /// Queues a write after everything queued before.
    pub fn push(&mut self, op: WriteOp) {
        if self.broken {
            return;
        }
        if let Some(t) = &mut self.tls {
            // Encrypted now, in order; the ciphertext is queued as not relayed (the session
            // reports relayed plaintext as its ciphertext is written).
            let cipher = match &op {
                WriteOp::Data { bytes, relayed } => t.front.send(bytes, *relayed),
                WriteOp::Shutdown => t.front.close(),
            };
            if let Some(bytes) = cipher {
                self.queue.push_back(WriteOp::Data {
                    bytes,
                    relayed: false,
                });
            }
            if let WriteOp::Shutdown = op {
                self.queue.push_back(op);
            }
            return;
        }
        if let WriteOp::Data { bytes, .. } = &op {
            if bytes.is_empty() {
                return;
            }
        }
        self.queue.push_back(op);
    }

    /// Whether nothing is queued (or the socket is broken and never will write).
    pub fn write_idle(&self) -> bool {
        self.broken || self.queue.is_empty()
    }

    /// Whether the socket waits for writability before it can write again.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked && !self.broken
    }

    /// The relay could not write everything: wait for writability.
    pub fn mark_write_blocked(&mut self) {
        self.write_blocked = true;
    }

    /// The relay's write failed: the socket is broken.
    pub fn mark_broken(&mut self) {
        self.broken = true;
        self.queue.clear();
    }

    /// Whether a write failed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Writes as much of the queue as the kernel takes now (unless waiting for writability).
    pub fn flush(&mut self) -> Flushed {
        let mut done = match &mut self.tls {
            None => Flushed::default(),
            Some(t) => std::mem::take(&mut t.carry),
        };
        if self.broken || self.write_blocked {
            return done;
        }
        loop {
            match self.queue.front() {
                None => {
                    // An idle connection keeps no queue allocation.
                    if self.queue.capacity() != 0 {
                        self.queue = VecDeque::new();
                    }
                    return done;
                }
                Some(WriteOp::Shutdown) => {
                    // SAFETY: `fd` belongs to `stream`, which is alive; shutdown does not
                    // invalidate it.
                    unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
                    self.queue.pop_front();
                    continue;
                }
                Some(WriteOp::Data { .. }) => {}
            }
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOV];
            let mut count = 0;
            let mut offered = 0;
            for op in &self.queue {
                let WriteOp::Data { bytes, .. } = op else {
                    break;
                };
                iov[count] = libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                };
                offered += bytes.len();
                count += 1;
                if count == MAX_IOV {
                    break;
                }
            }
            let written = match sendv(self.fd, &iov[..count]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return done;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.mark_broken();
                    done.error = true;
                    return done;
                }
            };
            self.consume(written, &mut done);
            if let Some(t) = &mut self.tls {
                done.relayed += t.front.written(written as u64);
            }
            if written < offered {
                // The send buffer is full: the rest waits for writability.
                self.write_blocked = true;
                return done;
            }
        }
    }

    fn consume(&mut self, mut n: usize, done: &mut Flushed) {
        while n > 0 {
            let Some(WriteOp::Data { bytes, relayed }) = self.queue.front_mut() else {
                return;
            };
            let take = n.min(bytes.len());
            if *relayed {
                done.relayed += take as u64;
            }
            n -= take;
            if take == bytes.len() {
                self.queue.pop_front();
            } else {
                bytes.advance(take);
            }
        }
    }

    /// Waits until the socket is writable again after a refused write. Keeps the wait.
    pub fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.write_blocked() {
            return Poll::Ready(());
        }
        let wait = self.write_wait.get_or_insert_with(|| {
            let stream = Rc::clone(&self.stream);
            Box::pin(async move { stream.writable(false).await })
        });
        let _ = std::task::ready!(wait.as_mut().poll(cx));
        self.write_wait = None;
        self.write_blocked = false;
        Poll::Ready(())
    }

    // ----- ending -----

    /// The stream back, for the idle pool: only if everything was written, the peer has not
    /// ended and nothing failed.
    pub fn into_idle_stream(mut self) -> Option<TcpStream> {
        if self.broken || self.read_ended || !self.queue.is_empty() || self.tls.is_some() {
            return None;
        }
        // Dropping a readiness wait loses nothing.
        self.read_wait = None;
        self.write_wait = None;
        Rc::try_unwrap(self.stream).ok()
    }

    /// Writes what is still queued, waiting for writability as needed. Returns false if
    /// writing failed.
    pub async fn finish_writes(&mut self) -> bool {
        loop {
            let flushed = self.flush();
            if flushed.error || self.broken {
                return false;
            }
            if self.queue.is_empty() {
                return true;
            }
            poll_fn(|cx| self.poll_writable(cx)).await;
        }
    }

    /// Closing: writes what is still queued; then, when `linger`, shuts down the write side
    /// and reads and discards what the peer still sends (up to `linger_bytes` or its EOF) so
    /// that closing with unread input does not turn into a reset that destroys the response
    /// we just wrote. Without `linger` the close that follows sends the FIN itself (a
    /// `shutdown` first would only cost a syscall). Callers bound the whole thing with a
    /// timeout.
    pub async fn close_gracefully(mut self, linger: bool, linger_bytes: usize) {
        if let Some(bytes) = self.tls.as_mut().and_then(|t| t.front.close()) {
            // close_notify before the FIN, so the client knows the response is complete.
            if !self.broken {
                self.queue.push_back(WriteOp::Data {
                    bytes,
                    relayed: false,
                });
            }
        }
        if !self.finish_writes().await {
            return;
        }
        if !linger {
            return;
        }
        // SAFETY: `fd` belongs to `stream`, which is alive.
        unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
        let mut discarded = 0;
        while discarded < linger_bytes && !self.read_ended {
            match self.try_read() {
                Some(ReadEvent::Data(b)) => discarded += b.len(),
                Some(ReadEvent::Eof | ReadEvent::Error) => return,
                None => poll_fn(|cx| self.poll_readable(cx)).await,
            }
        }
    }
}

/// `recv` into this thread's read buffer. `Ok(None)` is EOF; `Ok(Some((bytes, full)))` says
/// whether the read filled the space it was given (more may wait).
fn recv_bytes(fd: RawFd) -> io::Result<Option<(Bytes, bool)>> {
    READ_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.capacity() - buf.len() < MIN_READ {
            *buf = BytesMut::with_capacity(READ_CHUNK);
        }
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        // SAFETY: `spare` is writable memory of `room` bytes owned by `buf`.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), room, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(n) };
        let bytes = if n <= COPY_MAX {
            let copy = Bytes::copy_from_slice(&buf);
            buf.clear();
            copy
        } else {
            buf.split().freeze()
        };
        Ok(Some((bytes, n == room)))
    })
}

/// `sendmsg` of `iov` without blocking or raising SIGPIPE.
fn sendv(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    let n = if iov.len() == 1 {
        // SAFETY: the buffer is valid for its length for the duration of the call.
        unsafe {
            libc::send(
                fd,
                iov[0].iov_base,
                iov[0].iov_len,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        }
    } else {
        // SAFETY: a zeroed msghdr is valid; it points at `iov`, alive for the call.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        }
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// How long a closing connection may take to flush its last bytes and linger.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    use monoio::net::TcpListener;

    async fn read_event(socket: &mut Socket) -> ReadEvent {
        loop {
            if let Some(ev) = socket.try_read() {
                return ev;
            }
            poll_fn(|cx| socket.poll_readable(cx)).await;
        }
    }

    /// A readiness wait survives many wakes for other reasons (a timer here), holds no
    /// buffer, and the read after it delivers every byte; queued writes keep their order and
    /// the half-close comes last, on both drivers.
    #[monoio::test_all(timer_enabled = true)]
    async fn readiness_survives_other_wakes_and_writes_keep_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect_addr(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut socket = Socket::new(server, true);
        assert!(socket.try_read().is_none(), "nothing was sent yet");
        for _ in 0..3 {
            let mut tick = std::pin::pin!(monoio::time::sleep(Duration::from_millis(5)));
            let woke_by_timer = poll_fn(|cx| {
                if socket.poll_readable(cx).is_ready() {
                    return Poll::Ready(false);
                }
                tick.as_mut().poll(cx).map(|()| true)
            })
            .await;
            assert!(woke_by_timer, "nothing was sent yet");
        }
        let (res, _) = peer.write_all(b"hello".to_vec()).await;
        res.unwrap();
        match read_event(&mut socket).await {
            ReadEvent::Data(b) => assert_eq!(&b[..], b"hello"),
            other => panic!("{other:?}"),
        }
        for part in [&b"one "[..], b"two ", b"three"] {
            socket.push(WriteOp::Data {
                bytes: Bytes::from_static(part),
                relayed: part == b"two ",
            });
        }
        socket.push(WriteOp::Shutdown);
        let flushed = socket.flush();
        assert_eq!(flushed.relayed, 4, "only the relayed piece is counted");
        assert!(socket.write_idle());
        let mut got = Vec::new();
        loop {
            let (res, buf) = peer.read(vec![0u8; 64]).await;
            match res.unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got, b"one two three", "in order, then FIN");
    }

    /// A write larger than the socket buffers goes out in pieces across writability waits,
    /// intact, while the reader is slow; large reads arrive whole and in order.
    #[monoio::test_all(timer_enabled = true)]
    async fn large_writes_wait_for_writability() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = TcpStream::connect_addr(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut writer = Socket::new(server, false);
        let mut reader = Socket::new(peer, false);
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        writer.push(WriteOp::Data {
            bytes: Bytes::from(data.clone()),
            relayed: false,
        });
        let mut got = Vec::with_capacity(data.len());
        while got.len() < data.len() {
            writer.flush();
            match reader.try_read() {
                Some(ReadEvent::Data(b)) => got.extend_from_slice(&b),
                Some(other) => panic!("{other:?}"),
                None => {
                    poll_fn(|cx| {
                        let r = reader.poll_readable(cx);
                        let w = writer.poll_writable(cx);
                        if r.is_ready() || (w.is_ready() && !writer.write_idle()) {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        }
                    })
                    .await
                }
            }
        }
        assert!(got == data, "every byte, in order");
        assert!(writer.write_idle());
    }

    /// Reads from `peer` into the rustls `client` until `done` says so (bounded: the peer
    /// reads time out, the loop is capped).
    async fn client_reads(
        peer: &mut TcpStream,
        client: &mut crate::tls::adapter::TlsSession,
        plain: &mut Vec<u8>,
        done: impl Fn(&crate::tls::adapter::TlsSession, &[u8], bool) -> bool,
    ) {
        let mut eof = false;
        for _ in 0..1000 {
            if done(client, plain, eof) {
                return;
            }
            let read = monoio::time::timeout(Duration::from_secs(5), peer.read(vec![0u8; 65536]));
            let (res, buf) = read.await.expect("the proxy side answers");
            let n = res.unwrap();
            if n == 0 {
                eof = true;
                continue;
            }
            assert_eq!(client.feed(&buf[..n]).unwrap(), n);
            let _ = client.read_plaintext(plain);
        }
        panic!("not done after 1000 reads");
    }

    /// A TLS client socket over real loopback (rustls on the other end): the handshake runs
    /// inside `try_read` (its replies flushed there), the request comes out as plaintext,
    /// a relayed response is reported in plaintext bytes once written, `Shutdown` sends
    /// close_notify then the FIN, and the client's close_notify reads as EOF. Both drivers.
    #[monoio::test_all(timer_enabled = true)]
    async fn tls_client_socket_speaks_plaintext_above() {
        use crate::tls::adapter::{test_client, Plain};
        use crate::tls::front::Front;
        let dir = crate::tls::tests::scratch("socket-tls");
        let (tls, ca) = crate::tls::tests::origin(&dir, "proxy.test");
        let ca_der =
            crate::tls::ca::pem_block(&std::fs::read_to_string(ca).unwrap(), "CERTIFICATE")
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect_addr(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut socket = Socket::new_tls(server, Front::new(tls.accept().unwrap()));
        assert!(socket.is_tls());
        let mut client = test_client(&[&ca_der], "proxy.test", &[b"http/1.1"]);
        let mut out = Vec::new();
        client.take_ciphertext(&mut out);
        let (res, _) = peer.write_all(out).await;
        res.unwrap();
        // The hello: no plaintext, but the server's flight goes out from inside the read.
        let mut plain = Vec::new();
        let server_side = async {
            // Wait for the hello itself, then read until drained.
            socket.mark_drained();
            poll_fn(|cx| socket.poll_readable(cx)).await;
            loop {
                match socket.try_read() {
                    Some(ev) => panic!("no plaintext yet: {ev:?}"),
                    None if socket.read_hint() => continue,
                    None => break,
                }
            }
        };
        server_side.await;
        client_reads(&mut peer, &mut client, &mut plain, |c, _, _| {
            !c.is_handshaking()
        })
        .await;
        client.write_plaintext(b"GET http://o/ HTTP/1.1\r\n\r\n");
        let mut out = Vec::new();
        client.take_ciphertext(&mut out);
        let (res, _) = peer.write_all(out).await;
        res.unwrap();
        match read_event(&mut socket).await {
            ReadEvent::Data(b) => assert_eq!(&b[..], b"GET http://o/ HTTP/1.1\r\n\r\n"),
            other => panic!("{other:?}"),
        }
        socket.push(WriteOp::Data {
            bytes: Bytes::from_static(b"relayed!"),
            relayed: true,
        });
        socket.push(WriteOp::Data {
            bytes: Bytes::from_static(b" not"),
            relayed: false,
        });
        socket.push(WriteOp::Shutdown);
        let flushed = socket.flush();
        assert!(!flushed.error);
        assert_eq!(flushed.relayed, 8, "plaintext bytes, not ciphertext");
        assert!(socket.write_idle());
        client_reads(&mut peer, &mut client, &mut plain, |_, _, eof| eof).await;
        assert_eq!(plain, b"relayed! not");
        assert_eq!(
            client.read_plaintext(&mut plain),
            Plain::Closed,
            "close_notify"
        );
        // The client's close_notify ends our reading.
        client.close();
        let mut out = Vec::new();
        client.take_ciphertext(&mut out);
        let (res, _) = peer.write_all(out).await;
        res.unwrap();
        assert!(matches!(read_event(&mut socket).await, ReadEvent::Eof));
        assert!(socket.try_read().is_none(), "reported once");
        assert!(socket.into_idle_stream().is_none(), "never pooled");
    }
}
