//! The readiness model: edge-triggered epoll, nonblocking `recv` and `send`.
//!
//! Both sockets of a pair are registered once (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`) and
//! never re-armed. On readability the relay makes one `recv` into a shared scratch buffer and
//! sends what it got straight to the other socket; a short `recv` means the socket is drained
//! (tokio clears readiness the same way), so a request costs one `recv` and one `send` per side
//! plus a share of `epoll_wait`. Only bytes the other socket would not take are copied, into
//! that direction's pending buffer; reading from the source stops until they are sent (the
//! `EPOLLOUT` edge), so an idle pair holds no buffer at all.
//!
//! An end of stream or an error on either socket closes both (the loads relayed here never
//! half-close and go on).

use std::io;
use std::os::fd::RawFd;

use crate::sys::{self, check};
use crate::Settings;

/// The listener's token in `epoll_event.u64`; pairs use `index << 1 | side`.
const LISTENER: u64 = u64::MAX;

/// One client connection and its upstream connection.
struct Pair {
    /// `[client, upstream]`.
    fd: [RawFd; 2],
    /// Bytes waiting to be sent *to* side `i` (copied only when a `send` came up short).
    pending: [Vec<u8>; 2],
    open: bool,
}

struct Relay {
    epfd: RawFd,
    pairs: Vec<Pair>,
    free: Vec<u32>,
    /// Slots closed during the current batch of events: freed after it, so that a later event
    /// of the same batch for a closed pair cannot reach a new pair in the reused slot.
    closed: Vec<u32>,
    scratch: Vec<u8>,
    upstream: libc::sockaddr_in,
}

/// Runs the epoll relay until the process is killed.
pub fn run(settings: &Settings) -> io::Result<()> {
    let (listen_fd, bound) = sys::listener(settings.listen, true)?;
    // SAFETY: epoll_create1 has no memory arguments.
    let epfd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    let mut relay = Relay {
        epfd,
        pairs: Vec::new(),
        free: Vec::new(),
        closed: Vec::new(),
        scratch: vec![0; settings.buf_size],
        upstream: sys::sockaddr(settings.upstream),
    };
    relay.register(
        listen_fd,
        LISTENER,
        libc::EPOLLIN as u32 | libc::EPOLLET as u32,
    )?;
    sys::announce("epoll", bound);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // SAFETY: `events` is live and holds the number of entries passed.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                relay.accept_all(listen_fd);
            } else {
                relay.on_event((token >> 1) as u32, (token & 1) as usize, flags);
            }
        }
        let Relay { closed, free, .. } = &mut relay;
        free.append(closed);
    }
}

impl Relay {
    fn register(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is live for the call.
        check(unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
    }

    /// Accepts until `EAGAIN` (edge-triggered), dialing the upstream for each client.
    fn accept_all(&mut self, listen_fd: RawFd) {
        loop {
            // SAFETY: no address is asked for.
            let fd = unsafe {
                libc::accept4(
                    listen_fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                return; // EAGAIN, or out of descriptors: the next edge retries
            }
            if self.open_pair(fd).is_err() {
                sys::close(fd);
            }
        }
    }

    fn open_pair(&mut self, client: RawFd) -> io::Result<()> {
        let up = sys::tcp_socket(true)?;
        // SAFETY: the address is live for the call, with its length.
        let r = unsafe {
            libc::connect(
                up,
                (&self.upstream as *const libc::sockaddr_in).cast(),
                sys::SOCKADDR_LEN,
            )
        };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
            sys::close(up);
            return Err(io::Error::last_os_error());
        }
        let pair = Pair {
            fd: [client, up],
            pending: [Vec::new(), Vec::new()],
            open: true,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.pairs[i as usize] = pair;
                i
            }
            None => {
                self.pairs.push(pair);
                (self.pairs.len() - 1) as u32
            }
        };
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        for side in 0..2 {
            let fd = self.pairs[index as usize].fd[side];
            if self
                .register(fd, (index as u64) << 1 | side as u64, events)
                .is_err()
            {
                self.close_pair(index); // closes both: the caller must not close the client
                return Ok(());
            }
        }
        Ok(())
    }

    fn on_event(&mut self, index: u32, side: usize, flags: u32) {
        if !self.pairs[index as usize].open {
            return;
        }
        if flags & libc::EPOLLOUT as u32 != 0
            && !self.pairs[index as usize].pending[side].is_empty()
        {
            if !self.flush(index, side) {
                return;
            }
            // the other side's reading stopped while these bytes waited: resume it
            if !self.relay_from(index, 1 - side, false) {
                return;
            }
        }
        let hup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if flags & (libc::EPOLLIN as u32 | hup) != 0 {
            self.relay_from(index, side, flags & hup != 0);
        }
    }

    /// Sends side `to`'s pending bytes; false when the pair was closed. Leaves the rest pending
    /// on `EAGAIN`.
    fn flush(&mut self, index: u32, to: usize) -> bool {
        let pair = &mut self.pairs[index as usize];
        let buf = &pair.pending[to];
        // SAFETY: `buf` is live for the call, with its length.
        let n = unsafe {
            libc::send(
                pair.fd[to],
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                return true;
            }
            self.close_pair(index);
            return false;
        }
        pair.pending[to].drain(..n as usize);
        true
    }

    /// Receives from `from` and sends to the other side until the source is drained, the
    /// other side is full, or the stream ends; false when the pair was closed. `hup`: the event
    /// said the peer closed, so read on to the end of stream even after a short read.
    fn relay_from(&mut self, index: u32, from: usize, hup: bool) -> bool {
        let to = 1 - from;
        let size = self.scratch.len();
        loop {
            let pair = &mut self.pairs[index as usize];
            if !pair.pending[to].is_empty() {
                return true; // wait for the EPOLLOUT edge of `to`
            }
            // SAFETY: `scratch` is live for the call, with its length.
            let n = unsafe { libc::recv(pair.fd[from], self.scratch.as_mut_ptr().cast(), size, 0) };
            if n <= 0 {
                if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                    return true;
                }
                self.close_pair(index); // end of stream or error
                return false;
            }
            let n = n as usize;
            // SAFETY: the first `n` scratch bytes are live for the call.
            let sent = unsafe {
                libc::send(
                    pair.fd[to],
                    self.scratch.as_ptr().cast(),
                    n,
                    libc::MSG_NOSIGNAL,
                )
            };
            let sent = if sent < 0 {
                if io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                    self.close_pair(index);
                    return false;
                }
                0
            } else {
                sent as usize
            };
            if sent < n {
                pair.pending[to].extend_from_slice(&self.scratch[sent..n]);
            }
            if n < size && !hup {
                return true; // a short read drained the socket; the next arrival is a new edge
            }
        }
    }

    fn close_pair(&mut self, index: u32) {
        let pair = &mut self.pairs[index as usize];
        if !pair.open {
            return;
        }
        pair.open = false;
        for fd in pair.fd {
            sys::close(fd); // also removes it from the epoll set
        }
        pair.pending = [Vec::new(), Vec::new()];
        self.closed.push(index);
    }
}
