//! Moving tunnel bytes between the two sockets of a CONNECT (or upgraded) connection.
//!
//! Two ways, both driven by readiness and non-blocking syscalls on the connection's task:
//! - [`Mode::Copy`]: `recv` into this thread's relay buffer, then `send` straight on; only
//!   what the destination refuses is copied into a queued write. No allocation while the
//!   destination keeps up.
//! - [`Mode::Splice`]: `splice` from the source socket into a pipe and from the pipe into the
//!   destination, so payload never enters user space. A pipe is taken from a per-thread pool
//!   only while bytes are moving and handed back once empty, so idle tunnels hold no pipe
//!   (descriptors are scarce: 9,800 tunnels already use 19,600 of them).
//!
//! Key rule (what keeps the core's tunnel accounting exact): a direction is read only while
//! its destination has nothing queued and nothing in the pipe, so every byte of a direction
//! is reported with `handle_relayed` before that direction's EOF can be read.
//!
//! A tunnel whose client came through the HTTPS listener (`--tls-listen`) moves its bytes
//! through the sockets' own reads and writes ([`Mode::Sockets`]), so that they pass through
//! the client's TLS session: ciphertext cannot be spliced or copied as is.
//!
//! Splice is the default on both drivers: per proxy CPU-second it moved 2.3-2.7 GB against
//! 0.9 GB for copying (98% of the time is the kernel's TCP path either way).
//!
//! Failure: a read error, EOF or write error is returned to the connection, which feeds it
//! to the core; a pipe that cannot be created falls back to copying for that step.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use bytes::Bytes;
use ringway_core::tunnel::Direction;

use crate::socket::{ReadEvent, Socket, WriteOp};

/// Bytes moved per `recv` in copy mode.
const COPY_CHUNK: usize = 256 * 1024;
/// Pipe capacity asked for in splice mode (the kernel rounds it; failure keeps the default).
/// 1 MiB is the default `pipe-max-size`. Measured (8 tunnels, GB per proxy CPU-second, two
/// rounds): 64 KiB 1.89 / 1.74, 256 KiB 2.12 / 2.63, 1 MiB 2.67 / 3.70.
const PIPE_SIZE: usize = 1024 * 1024;
/// Empty pipes each thread keeps for the next burst.
const PIPE_POOL: usize = 16;

thread_local! {
    static COPY_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// How a tunnel moves its bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Through a user-space buffer.
    Copy,
    /// Through a pipe with `splice`.
    Splice,
    /// Through [`Socket::try_read`] and [`Socket::push`] (a TLS client side).
    Sockets,
}

/// What one step in one direction did.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    /// Nothing could move (the source is drained or the destination is full).
    Nothing,
    /// Bytes were read; this many reached the destination (the rest are queued or piped).
    Bytes(u64),
    /// The source shut down its write side.
    Eof,
    /// Reading the source failed.
    ReadError,
    /// Writing the destination failed.
    WriteError,
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn take() -> Option<Pipe> {
        if let Some(p) = PIPES.with(|pool| pool.borrow_mut().pop()) {
            return Some(p);
        }
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: pipe2 succeeded, both descriptors are fresh and owned by nobody else.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // SAFETY: a valid pipe descriptor; failure just keeps the default size.
        unsafe {
            libc::fcntl(
                pipe.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        Some(pipe)
    }

    /// Back to the pool; the caller guarantees it is empty.
    fn give_back(self) {
        PIPES.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < PIPE_POOL {
                pool.push(self);
            }
        });
    }
}

#[derive(Default)]
struct Half {
    pipe: Option<Pipe>,
    in_pipe: usize,
}

/// The relay state of one tunnel.
pub struct Relay {
    mode: Mode,
    halves: [Half; 2],
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::ClientToUpstream => 0,
        Direction::UpstreamToClient => 1,
    }
}

impl Relay {
    /// A relay between `client` and `upstream`. Splice mode needs non-blocking sockets
    /// (the io_uring driver's are blocking); if that cannot be set, it copies instead.
    pub fn new(mode: Mode, client: &Socket, upstream: &Socket) -> Relay {
        let mode = if client.is_tls() || upstream.is_tls() {
            Mode::Sockets
        } else if mode == Mode::Splice
            && set_nonblocking(client.fd()).is_ok()
            && set_nonblocking(upstream.fd()).is_ok()
        {
            Mode::Splice
        } else {
            Mode::Copy
        };
        Relay {
            mode,
            halves: [Half::default(), Half::default()],
        }
    }

    /// Whether bytes of `direction` sit in its pipe, not yet written.
    pub fn pending(&self, direction: Direction) -> bool {
        self.halves[index(direction)].in_pipe > 0
    }

    /// Whether `direction` may read its source now: the destination has nothing queued or
    /// piped and is not waiting for writability.
    pub fn may_read(&self, direction: Direction, dst: &Socket) -> bool {
        !self.pending(direction) && dst.write_idle() && !dst.write_blocked()
    }

    /// Moves what can move now from `src` to `dst` in `direction` (one read at most).
    pub fn step(&mut self, direction: Direction, src: &mut Socket, dst: &mut Socket) -> Moved {
        if dst.is_broken() {
            return Moved::Nothing;
        }
        let half = &mut self.halves[index(direction)];
        if half.in_pipe > 0 {
            if dst.write_blocked() {
                return Moved::Nothing;
            }
            return drain_pipe(half, dst);
        }
        if !dst.write_idle() || dst.write_blocked() || !src.read_hint() {
            return Moved::Nothing;
        }
        if self.mode == Mode::Sockets {
            return through_sockets(src, dst);
        }
        if self.mode == Mode::Splice {
            if half.pipe.is_none() {
                half.pipe = Pipe::take();
            }
            if half.pipe.is_some() {
                return splice_in(half, src, dst);
            }
        }
        copy(src, dst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for half in &mut self.halves {
            if let Some(pipe) = half.pipe.take() {
                if half.in_pipe == 0 {
                    pipe.give_back();
                }
            }
        }
    }
}

fn copy(src: &mut Socket, dst: &mut Socket) -> Moved {
    COPY_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.is_empty() {
            buf.resize(COPY_CHUNK, 0);
        }
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                src.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        let n = match read_result(n, src) {
            Ok(n) => n,
            Err(moved) => return moved,
        };
        if n < buf.len() {
            src.mark_drained();
        }
        // SAFETY: the first `n` bytes of `buf` are initialised and valid for the call.
        let sent = unsafe {
            libc::send(
                dst.fd(),
                buf.as_ptr().cast(),
                n,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        let sent = if sent < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
                dst.mark_broken();
                return Moved::WriteError;
            }
            0
        } else {
            sent as usize
        };
        if sent < n {
            dst.push(WriteOp::Data {
                bytes: Bytes::copy_from_slice(&buf[sent..n]),
                relayed: true,
            });
            dst.mark_write_blocked();
        }
        Moved::Bytes(sent as u64)
    })
}

/// One read from `src` (plaintext, if it is a TLS client), queued on `dst` and flushed.
fn through_sockets(src: &mut Socket, dst: &mut Socket) -> Moved {
    match src.try_read() {
        None => Moved::Nothing,
        Some(ReadEvent::Eof) => Moved::Eof,
        Some(ReadEvent::Error) => Moved::ReadError,
        Some(ReadEvent::Data(bytes)) => {
            dst.push(WriteOp::Data {
                bytes,
                relayed: true,
            });
            let flushed = dst.flush();
            if flushed.error {
                return Moved::WriteError;
            }
            // What the kernel did not take yet is reported by the connection's next flush.
            Moved::Bytes(flushed.relayed)
        }
    }
}

fn splice_in(half: &mut Half, src: &mut Socket, dst: &mut Socket) -> Moved {
    let Some(pipe) = &half.pipe else {
        return Moved::Nothing;
    };
    // SAFETY: valid descriptors; no offsets.
    let n = unsafe {
        libc::splice(
            src.fd(),
            std::ptr::null_mut(),
            pipe.write.as_raw_fd(),
            std::ptr::null_mut(),
            PIPE_SIZE,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    let n = match read_result(n, src) {
        Ok(n) => n,
        Err(moved) => {
            if let Some(pipe) = half.pipe.take() {
                pipe.give_back();
            }
            return moved;
        }
    };
    half.in_pipe = n;
    drain_pipe(half, dst)
}

/// Turns a read syscall's result into the byte count, or what it means otherwise.
fn read_result(n: isize, src: &mut Socket) -> Result<usize, Moved> {
    if n > 0 {
        return Ok(n as usize);
    }
    if n == 0 {
        src.mark_read_ended();
        return Err(Moved::Eof);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock => {
            src.mark_drained();
            Err(Moved::Nothing)
        }
        io::ErrorKind::Interrupted => Err(Moved::Nothing),
        _ => {
            src.mark_read_ended();
            Err(Moved::ReadError)
        }
    }
}

fn drain_pipe(half: &mut Half, dst: &mut Socket) -> Moved {
    let Some(pipe) = &half.pipe else {
        return Moved::Nothing;
    };
    // SAFETY: valid descriptors; no offsets.
    let n = unsafe {
        libc::splice(
            pipe.read.as_raw_fd(),
            std::ptr::null_mut(),
            dst.fd(),
            std::ptr::null_mut(),
            half.in_pipe,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {
                dst.mark_write_blocked();
                Moved::Bytes(0)
            }
            _ => {
                dst.mark_broken();
                Moved::WriteError
            }
        };
    }
    let n = n as usize;
    half.in_pipe -= n;
    if half.in_pipe > 0 {
        dst.mark_write_blocked();
    } else if let Some(pipe) = half.pipe.take() {
        pipe.give_back();
    }
    Moved::Bytes(n as u64)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: FIONBIO takes a pointer to an int flag.
    if unsafe { libc::ioctl(fd, libc::FIONBIO, &mut on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
