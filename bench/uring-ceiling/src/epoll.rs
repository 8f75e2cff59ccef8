//! The readiness model: edge-triggered epoll, nonblocking `recv` and `send`.
//!
//! Every socket is registered once (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`) and never
//! re-armed. On readability the relay makes one `recv` into a shared scratch buffer and sends
//! what it got straight to the peer socket; a short `recv` means the socket is drained (tokio
//! clears readiness the same way), so a request costs one `recv` and one `send` per side plus
//! a share of `epoll_wait`. Only bytes the peer would not take are copied, into the peer's
//! pending buffer; reading stops until they are sent (the `EPOLLOUT` edge), so an idle
//! connection holds no buffer at all.
//!
//! Upstream connections are pooled as [`crate::pooling`] describes. An end of stream or an
//! error on either socket of a pair closes both (the loads relayed here never half-close).

use std::io;
use std::os::fd::RawFd;

use crate::pooling;
use crate::sys::{self, check};
use crate::Settings;

/// The listener's token in `epoll_event.u64`; sockets use their slot index.
const LISTENER: u64 = u64::MAX;
/// "No peer": a pooled upstream connection's `peer`.
const NONE: u32 = u32::MAX;

/// One socket, client or upstream.
struct Sock {
    fd: RawFd,
    /// The other socket of the pair; NONE for a pooled upstream connection.
    peer: u32,
    /// Bytes waiting to be sent *to* this socket (copied only when a `send` came up short).
    pending: Vec<u8>,
    open: bool,
    /// An upstream connection (not a client's).
    upstream: bool,
    /// An upstream connection in the pool.
    pooled: bool,
    /// Upstream: the client asked to close after this response; `left` counts its bytes still
    /// to relay once its head was seen.
    tracking: bool,
    left: Option<u64>,
    /// Client: close once `pending` is sent (its response is complete).
    close_when_flushed: bool,
}

/// The whole relay: the epoll set, every socket's state, the upstream pool.
struct Relay {
    epfd: RawFd,
    socks: Vec<Sock>,
    free: Vec<u32>,
    /// Slots closed during the current batch of events: freed after it, so that a later event
    /// of the same batch for a closed socket cannot reach a new socket in the reused slot.
    closed: Vec<u32>,
    pool: Vec<u32>,
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
        socks: Vec::new(),
        free: Vec::new(),
        closed: Vec::new(),
        pool: Vec::new(),
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
                relay.on_event(token as u32, flags);
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

    /// A slot for a new socket, registered with epoll; closes `fd` on failure.
    fn add_sock(&mut self, fd: RawFd, upstream: bool) -> Option<u32> {
        let sock = Sock {
            fd,
            peer: NONE,
            pending: Vec::new(),
            open: true,
            upstream,
            pooled: false,
            tracking: false,
            left: None,
            close_when_flushed: false,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.socks[i as usize] = sock;
                i
            }
            None => {
                self.socks.push(sock);
                (self.socks.len() - 1) as u32
            }
        };
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if self.register(fd, index as u64, events).is_err() {
            self.close(index);
            return None;
        }
        Some(index)
    }

    /// Accepts until `EAGAIN` (edge-triggered), pairing each client with a pooled upstream
    /// connection or a new one.
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
            let Some(client) = self.add_sock(fd, false) else {
                continue;
            };
            let Some(up) = self.take_upstream() else {
                self.close(client);
                continue;
            };
            self.socks[client as usize].peer = up;
            self.socks[up as usize].peer = client;
        }
    }

    fn take_upstream(&mut self) -> Option<u32> {
        while let Some(up) = self.pool.pop() {
            let sock = &mut self.socks[up as usize];
            if sock.open && sock.pooled {
                sock.pooled = false;
                return Some(up);
            }
        }
        let fd = sys::tcp_socket(true).ok()?;
        // SAFETY: the address is live for the call, with its length.
        let r = unsafe {
            libc::connect(
                fd,
                (&self.upstream as *const libc::sockaddr_in).cast(),
                sys::SOCKADDR_LEN,
            )
        };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
            sys::close(fd);
            return None;
        }
        self.add_sock(fd, true)
    }

    fn on_event(&mut self, index: u32, flags: u32) {
        if !self.socks[index as usize].open {
            return;
        }
        if flags & libc::EPOLLOUT as u32 != 0 && !self.socks[index as usize].pending.is_empty() {
            if !self.flush(index) {
                return;
            }
            let sock = &self.socks[index as usize];
            if sock.pending.is_empty() {
                if sock.close_when_flushed {
                    return self.close(index);
                }
                // the peer's reading stopped while these bytes waited: resume it
                let peer = sock.peer;
                if peer != NONE && !self.relay_from(peer, false) {
                    return;
                }
            }
        }
        let hup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if flags & (libc::EPOLLIN as u32 | hup) != 0 && self.socks[index as usize].open {
            self.relay_from(index, flags & hup != 0);
        }
    }

    /// Sends the socket's pending bytes; false when it was closed. Leaves the rest pending on
    /// `EAGAIN`.
    fn flush(&mut self, index: u32) -> bool {
        let sock = &mut self.socks[index as usize];
        // SAFETY: `pending` is live for the call, with its length.
        let n = unsafe {
            libc::send(
                sock.fd,
                sock.pending.as_ptr().cast(),
                sock.pending.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                return true;
            }
            self.close(index);
            return false;
        }
        sock.pending.drain(..n as usize);
        true
    }

    /// Receives from `from` and sends to its peer until the source is drained, the peer is
    /// full, or the stream ends; false when `from` was closed. `hup`: the event said the peer
    /// closed, so read on to the end of stream even after a short read.
    fn relay_from(&mut self, from: u32, hup: bool) -> bool {
        let size = self.scratch.len();
        loop {
            let sock = &self.socks[from as usize];
            let to = sock.peer;
            if to != NONE && !self.socks[to as usize].pending.is_empty() {
                return true; // wait for the EPOLLOUT edge of `to`
            }
            // SAFETY: `scratch` is live for the call, with its length.
            let n = unsafe { libc::recv(sock.fd, self.scratch.as_mut_ptr().cast(), size, 0) };
            if n <= 0 {
                if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                    return true;
                }
                self.close(from); // end of stream or error
                return false;
            }
            let n = n as usize;
            if to == NONE {
                continue; // a pooled connection has nothing to say: drop it
            }
            let response_done = self.http_edits(from, to, n);
            // SAFETY: the first `n` scratch bytes are live for the call.
            let sent = unsafe {
                libc::send(
                    self.socks[to as usize].fd,
                    self.scratch.as_ptr().cast(),
                    n,
                    libc::MSG_NOSIGNAL,
                )
            };
            let sent = if sent < 0 {
                if io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                    self.close(to);
                    return false;
                }
                0
            } else {
                sent as usize
            };
            if sent < n {
                let Relay { socks, scratch, .. } = self;
                socks[to as usize]
                    .pending
                    .extend_from_slice(&scratch[sent..n]);
            }
            if response_done {
                // `from` (upstream) goes back to the pool; the client closes once flushed
                self.socks[from as usize].peer = NONE;
                self.socks[from as usize].pooled = true;
                self.pool.push(from);
                let client = &mut self.socks[to as usize];
                client.peer = NONE;
                if client.pending.is_empty() {
                    self.close(to);
                } else {
                    client.close_when_flushed = true;
                }
                return true;
            }
            if n < size && !hup {
                return true; // a short read drained the socket; the next arrival is a new edge
            }
        }
    }

    /// [`pooling`]'s edits on the `n` scratch bytes going from `from` to `to`; true when they
    /// end the response the client asked to be the last.
    fn http_edits(&mut self, from: u32, to: u32, n: usize) -> bool {
        let Relay { socks, scratch, .. } = self;
        let chunk = &mut scratch[..n];
        if !socks[from as usize].upstream {
            let up = &mut socks[to as usize];
            if !up.tracking && pooling::strip_close(chunk) {
                up.tracking = true;
                up.left = None;
            }
            return false;
        }
        let up = &mut socks[from as usize];
        if !up.tracking {
            return false;
        }
        let left = match up.left {
            Some(left) => left,
            None => match pooling::mark_close(chunk) {
                Some(total) => total,
                None => {
                    up.tracking = false; // relay as it is; the pair ends with the client
                    return false;
                }
            },
        };
        let left = left.saturating_sub(n as u64);
        up.left = Some(left);
        if left == 0 {
            up.tracking = false;
            up.left = None;
            return true;
        }
        false
    }

    /// Closes a socket and, if it is paired, its peer.
    fn close(&mut self, index: u32) {
        let sock = &mut self.socks[index as usize];
        if !sock.open {
            return;
        }
        sock.open = false;
        sock.pooled = false;
        sys::close(sock.fd); // also removes it from the epoll set
        sock.pending = Vec::new();
        let peer = std::mem::replace(&mut sock.peer, NONE);
        self.closed.push(index);
        if peer != NONE {
            self.socks[peer as usize].peer = NONE;
            self.close(peer);
        }
    }
}
