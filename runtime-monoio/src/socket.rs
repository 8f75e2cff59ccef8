//! One socket of a proxied connection (the client's or the upstream's): a read kept in
//! flight across loop iterations, and an ordered write queue.
//!
//! Why reads are owned futures: under io_uring a read that is submitted and then dropped
//! still consumes the bytes it receives, so "select on a read, then drop it when the timer
//! wins" loses data. Here the stream is split into owned halves; a read moves the read half
//! and its buffer into a boxed future that hands both back on completion, and that future
//! stays in [`Socket`] until it completes, however many times the connection loop wakes for
//! other reasons. It is only dropped when the socket itself is closed (monoio then cancels it).
//!
//! Writes go out strictly in queue order, one at a time (`write_all`), so bytes and
//! half-closes reach the peer in the order the core emitted them.
//!
//! Failure: a read error or EOF is reported once and no further read is started; a write
//! error marks the socket broken, drops its queue and is reported once. Nothing here panics.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use ringway_core::tunnel::Direction;

/// Bytes asked for per read: large enough for throughput, small enough that a thousand
/// connections in flight stay in tens of MiB.
pub const READ_SIZE: usize = 32 * 1024;

type ReadHalf = OwnedReadHalf<TcpStream>;
type WriteHalf = OwnedWriteHalf<TcpStream>;
type ReadFuture = Pin<Box<dyn Future<Output = (ReadHalf, BytesMut, io::Result<usize>)>>>;
type WriteFuture = Pin<Box<dyn Future<Output = (WriteHalf, io::Result<usize>)>>>;

/// What a completed read brought.
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
    /// Bytes; `relayed` names the tunnel direction to report once they are written.
    Data {
        /// The bytes.
        bytes: Bytes,
        /// Tunnel accounting, if these are relayed tunnel bytes.
        relayed: Option<Direction>,
    },
    /// Shut down our write side (FIN) once everything before it is written.
    Shutdown,
}

/// What a completed write means for the connection.
#[derive(Debug)]
pub enum WriteEvent {
    /// Written; report these relayed bytes, if any.
    Done(Option<(Direction, u64)>),
    /// The write failed; the socket is broken.
    Error,
}

/// One socket with its in-flight read and its write queue.
pub struct Socket {
    fd: RawFd,
    reader: Option<ReadHalf>,
    reading: Option<ReadFuture>,
    /// Reused between reads when the previous data has been dropped.
    spare: BytesMut,
    read_ended: bool,
    writer: Option<WriteHalf>,
    writing: Option<(WriteFuture, Option<Direction>)>,
    queue: VecDeque<WriteOp>,
    broken: bool,
}

impl Socket {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Socket {
        let fd = stream.as_raw_fd();
        let (reader, writer) = stream.into_split();
        Socket {
            fd,
            reader: Some(reader),
            reading: None,
            spare: BytesMut::new(),
            read_ended: false,
            writer: Some(writer),
            writing: None,
            queue: VecDeque::new(),
            broken: false,
        }
    }

    /// Starts a read unless one is in flight or reading has ended.
    pub fn start_read(&mut self) {
        if self.read_ended || self.reading.is_some() {
            return;
        }
        let Some(mut half) = self.reader.take() else {
            return;
        };
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        buf.reserve(READ_SIZE);
        self.reading = Some(Box::pin(async move {
            let (res, buf) = half.read(buf).await;
            (half, buf, res)
        }));
    }

    /// Whether a read is in flight.
    pub fn is_reading(&self) -> bool {
        self.reading.is_some()
    }

    /// Polls the in-flight read, if any.
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<ReadEvent> {
        let Some(fut) = self.reading.as_mut() else {
            return Poll::Pending;
        };
        let (half, mut buf, res) = std::task::ready!(fut.as_mut().poll(cx));
        self.reading = None;
        self.reader = Some(half);
        Poll::Ready(match res {
            Ok(0) => {
                self.read_ended = true;
                ReadEvent::Eof
            }
            Ok(n) => {
                let data = buf.split_to(n).freeze();
                self.spare = buf;
                ReadEvent::Data(data)
            }
            Err(_) => {
                self.read_ended = true;
                ReadEvent::Error
            }
        })
    }

    /// Queues a write after everything queued before.
    pub fn push(&mut self, op: WriteOp) {
        if !self.broken {
            self.queue.push_back(op);
        }
    }

    /// Whether nothing is queued or being written (or the socket is broken and never will).
    pub fn write_idle(&self) -> bool {
        self.broken || (self.queue.is_empty() && self.writing.is_none())
    }

    /// Starts the next queued write if none is in flight; carries out shutdowns at once.
    pub fn start_write(&mut self) {
        while self.writing.is_none() && !self.broken {
            let Some(op) = self.queue.pop_front() else {
                return;
            };
            let Some(mut half) = self.writer.take() else {
                return;
            };
            match op {
                WriteOp::Shutdown => {
                    // A direct shutdown(SHUT_WR) syscall in monoio: completes immediately.
                    shutdown_now(&mut half, self.fd);
                    self.writer = Some(half);
                }
                WriteOp::Data { bytes, relayed } => {
                    let fut: WriteFuture = Box::pin(async move {
                        let (res, _) = half.write_all(bytes).await;
                        (half, res)
                    });
                    self.writing = Some((fut, relayed));
                }
            }
        }
    }

    /// Polls the in-flight write, if any.
    pub fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<WriteEvent> {
        let Some((fut, _)) = self.writing.as_mut() else {
            return Poll::Pending;
        };
        let (half, res) = std::task::ready!(fut.as_mut().poll(cx));
        let relayed = self.writing.take().and_then(|(_, r)| r);
        self.writer = Some(half);
        Poll::Ready(match res {
            Ok(n) => WriteEvent::Done(relayed.map(|d| (d, n as u64))),
            Err(_) => {
                self.broken = true;
                self.queue.clear();
                WriteEvent::Error
            }
        })
    }

    /// The stream back, for the idle pool, once the last write is done: only if no read is
    /// in flight, the peer has not ended and nothing failed. A write still in flight (its
    /// completion not yet polled) is waited for.
    pub async fn into_idle_stream(mut self) -> Option<TcpStream> {
        if self.broken || self.read_ended || self.reading.is_some() {
            return None;
        }
        loop {
            self.start_write();
            if self.writing.is_none() {
                break;
            }
            let done = std::future::poll_fn(|cx| self.poll_write(cx)).await;
            if matches!(done, WriteEvent::Error) {
                return None;
            }
        }
        let reader = self.reader.take()?;
        let writer = self.writer.take()?;
        reader.reunite(writer).ok()
    }

    /// Polls the in-flight write once, so that a write the kernel already completed stops
    /// counting as in flight. Returns whether the socket is now write-idle.
    pub fn settle_write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.writing.is_some() && self.poll_write(cx).is_ready() && !self.broken {
            self.start_write();
        }
        self.write_idle()
    }

    /// Closing: writes what is still queued, shuts down the write side, then, when `linger`,
    /// reads and discards what the peer still sends (up to `linger_bytes` or its EOF) so
    /// that closing with unread input does not turn into a reset that destroys the response
    /// we just wrote. Callers bound the whole thing with a timeout.
    pub async fn close_gracefully(mut self, linger: bool, linger_bytes: usize) {
        if let Some((fut, _)) = self.writing.take() {
            let (half, res) = fut.await;
            self.writer = Some(half);
            if res.is_err() {
                return;
            }
        }
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        if self.broken {
            return;
        }
        while let Some(op) = self.queue.pop_front() {
            match op {
                WriteOp::Data { bytes, .. } => {
                    if writer.write_all(bytes).await.0.is_err() {
                        return;
                    }
                }
                WriteOp::Shutdown => {
                    shutdown_now(&mut writer, self.fd);
                }
            }
        }
        shutdown_now(&mut writer, self.fd);
        if !linger {
            return;
        }
        let mut discarded = 0;
        while discarded < linger_bytes && !self.read_ended {
            self.start_read();
            if !self.is_reading() {
                return;
            }
            match std::future::poll_fn(|cx| self.poll_read(cx)).await {
                ReadEvent::Data(b) => discarded += b.len(),
                ReadEvent::Eof | ReadEvent::Error => return,
            }
        }
    }
}

/// `shutdown(SHUT_WR)` right away (what monoio's own `shutdown` does too, minus the future).
/// `_half` proves the stream, and so `fd`, is still open.
fn shutdown_now(_half: &mut WriteHalf, fd: RawFd) {
    // SAFETY: `fd` belongs to the stream behind `_half`, which is alive; shutdown does not
    // invalidate it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// How long a closing connection may take to flush its last bytes and linger.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::net::TcpListener;
    use std::future::poll_fn;

    /// A read in flight survives many wakes for other reasons (a timer here) and still
    /// delivers every byte, in order, on both drivers.
    #[monoio::test_all(timer_enabled = true)]
    async fn read_survives_other_wakes_and_writes_keep_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect_addr(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut socket = Socket::new(server);
        socket.start_read();
        for _ in 0..3 {
            let mut tick = std::pin::pin!(monoio::time::sleep(Duration::from_millis(5)));
            let woke_by_timer = poll_fn(|cx| {
                if socket.poll_read(cx).is_ready() {
                    return Poll::Ready(false);
                }
                tick.as_mut().poll(cx).map(|()| true)
            })
            .await;
            assert!(woke_by_timer, "nothing was sent yet");
        }
        let (res, _) = peer.write_all(b"hello".to_vec()).await;
        res.unwrap();
        match poll_fn(|cx| socket.poll_read(cx)).await {
            ReadEvent::Data(b) => assert_eq!(&b[..], b"hello"),
            other => panic!("{other:?}"),
        }
        for part in [&b"one "[..], b"two ", b"three"] {
            socket.push(WriteOp::Data {
                bytes: Bytes::from_static(part),
                relayed: None,
            });
        }
        socket.push(WriteOp::Shutdown);
        while !socket.write_idle() {
            socket.start_write();
            let _ = poll_fn(|cx| socket.poll_write(cx)).await;
            socket.start_write();
        }
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
}
