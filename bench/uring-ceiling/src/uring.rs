//! The io_uring-native model: completions, not readiness.
//!
//! - One multishot `ACCEPT` on the listener posts a CQE per new client.
//! - A client is paired with a pooled upstream connection ([`crate::pooling`]) or a new one,
//!   connected by a `CONNECT` SQE; each socket gets one multishot `RECV` with buffer selection
//!   from a provided-buffer ring (`IORING_REGISTER_PBUF_RING`): the kernel picks a buffer only
//!   when bytes arrive, so an idle connection holds none, and no receive is ever re-armed while
//!   data keeps coming (a pooled connection keeps its receive armed).
//! - Received bytes are sent to the other socket by a `SEND` SQE straight from the provided
//!   buffer (no copy); the buffer goes back to the ring when the send completes. At most one
//!   send is in flight per socket (later chunks queue behind it) so bytes stay in order.
//! - Every SQE a loop turn produced is submitted by the one `io_uring_enter` that also waits
//!   for the next completions (`submit_and_wait(1)`): one syscall per turn, for all pairs.
//! - End of stream or an error on either socket of a pair ends both: what is queued for each is
//!   sent, then an `ASYNC_CANCEL` SQE ends its multishot receive, and once no operation on it
//!   is in flight a `CLOSE` SQE releases the descriptor. A client whose last response was relayed
//!   ends the same way, alone.
//!
//! Ring set-up: `--taskrun defer` (default) is `IORING_SETUP_SINGLE_ISSUER |
//! IORING_SETUP_DEFER_TASKRUN` (completion work runs only inside our `io_uring_enter`, never as
//! an interruption); `coop` is `IORING_SETUP_COOP_TASKRUN` (what ringway gives monoio);
//! `plain` none of them (monoio 0.2.4's default).
//!
//! When the buffer ring runs dry a multishot receive ends with `ENOBUFS`; it is re-armed once
//! a send has returned a buffer.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};

use crate::pooling;
use crate::sys;
use crate::Settings;

/// How the ring runs completion work (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taskrun {
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`.
    Defer,
    /// `IORING_SETUP_COOP_TASKRUN`, as ringway sets up monoio's ring.
    Coop,
    /// No set-up flags, monoio's default.
    Plain,
}

/// The provided-buffer group every receive selects from.
const BGID: u16 = 0;

// The operation kinds in a `user_data`'s top byte.
const OP_ACCEPT: u64 = 1;
const OP_CONNECT: u64 = 2;
const OP_RECV: u64 = 3;
const OP_SEND: u64 = 4;
const OP_CANCEL: u64 = 5;
const OP_CLOSE: u64 = 6;

/// `user_data`: the operation and the socket's slot.
fn token(op: u64, index: u32) -> u64 {
    op << 56 | index as u64
}

fn untoken(t: u64) -> (u64, u32) {
    (t >> 56, t as u32)
}

/// A received provided buffer waiting to be (fully) sent.
struct Chunk {
    bid: u16,
    sent: u32,
    len: u32,
}

const NONE: u32 = u32::MAX;

/// One socket, client or upstream.
#[derive(Default)]
struct Sock {
    fd: RawFd,
    /// The other socket of the pair; NONE for a pooled upstream connection.
    peer: u32,
    /// An upstream connection (not a client's).
    upstream: bool,
    /// An upstream connection in the pool.
    pooled: bool,
    /// Upstream: its `CONNECT` completed (a client is connected from the start).
    connected: bool,
    /// Chunks to send *to* this socket, in order; the first is in flight when `sending`.
    queue: VecDeque<Chunk>,
    sending: bool,
    /// Operations on this socket in flight (their CQEs still to come).
    ops: u32,
    /// Its multishot receive is armed (its last CQE, without `IORING_CQE_F_MORE`, to come).
    receiving: bool,
    closing: bool,
    shut: bool,
    in_use: bool,
    /// Upstream: the client asked to close after this response; `left` counts its bytes still
    /// to relay once its head was seen.
    tracking: bool,
    left: Option<u64>,
    /// Client: close once the queue is sent (its response is complete).
    close_when_flushed: bool,
}

/// The provided-buffer ring: `count` buffers of `size` bytes and the ring of their
/// descriptors the kernel takes them from.
struct Buffers {
    ring: *mut BufRingEntry,
    mem: *mut u8,
    size: usize,
    mask: u16,
    tail: u16,
    /// Buffers the relay holds (received, not yet sent): the kernel has `count - held`.
    held: u32,
    count: u32,
}

impl Buffers {
    fn new(count: u16, size: usize) -> io::Result<Buffers> {
        let ring =
            mmap(count as usize * std::mem::size_of::<BufRingEntry>())?.cast::<BufRingEntry>();
        let mem = mmap(count as usize * size)?;
        let mut b = Buffers {
            ring,
            mem,
            size,
            mask: count - 1,
            tail: 0,
            held: count as u32,
            count: count as u32,
        };
        for bid in 0..count {
            b.give_back(bid);
        }
        Ok(b)
    }

    fn addr(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid < count, so the offset stays inside the mapping.
        unsafe { self.mem.add(bid as usize * self.size) }
    }

    /// Returns buffer `bid` to the kernel: a descriptor at the tail, then the tail published.
    fn give_back(&mut self, bid: u16) {
        // SAFETY: the index is masked into the ring; the tail field overlays entry 0's `resv`,
        // which the setters below never touch; the kernel reads the tail with acquire.
        unsafe {
            let entry = &mut *self.ring.add((self.tail & self.mask) as usize);
            entry.set_addr(self.addr(bid) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
        self.held -= 1;
    }
}

/// Page-aligned, zeroed, populated memory (the buffer ring must be page-aligned), never unmapped.
fn mmap(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping, owned for the life of the process.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// The whole relay: the ring, the buffers, every socket's state, the upstream pool.
struct Relay {
    ring: IoUring,
    bufs: Buffers,
    socks: Vec<Sock>,
    free: Vec<u32>,
    pool: Vec<u32>,
    /// SQEs produced in this loop turn, pushed to the ring together before the next enter.
    sqes: Vec<squeue::Entry>,
    /// Receives that ended with `ENOBUFS`, to re-arm once buffers are back.
    starved: Vec<u32>,
    listen_fd: RawFd,
    upstream: Box<libc::sockaddr_in>,
}

/// Runs the io_uring relay until the process is killed.
pub fn run(settings: &Settings) -> io::Result<()> {
    let mut builder = IoUring::builder();
    match settings.taskrun {
        Taskrun::Defer => {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        Taskrun::Coop => {
            builder.setup_coop_taskrun();
        }
        Taskrun::Plain => {}
    }
    let ring = builder.setup_cqsize(16384).build(4096)?;
    let bufs = Buffers::new(settings.bufs, settings.buf_size)?;
    // SAFETY: the ring memory is mapped for the life of the process, as the kernel requires.
    unsafe {
        ring.submitter()
            .register_buf_ring(bufs.ring as u64, settings.bufs, BGID)?
    };
    let (listen_fd, bound) = sys::listener(settings.listen, false)?;
    let mut relay = Relay {
        ring,
        bufs,
        socks: Vec::new(),
        free: Vec::new(),
        pool: Vec::new(),
        sqes: Vec::with_capacity(1024),
        starved: Vec::new(),
        listen_fd,
        upstream: Box::new(sys::sockaddr(settings.upstream)),
    };
    relay.arm_accept();
    let name = match settings.taskrun {
        Taskrun::Defer => "io_uring, defer_taskrun",
        Taskrun::Coop => "io_uring, coop_taskrun",
        Taskrun::Plain => "io_uring",
    };
    sys::announce(name, bound);
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
    loop {
        relay.push_sqes()?;
        match relay.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINTR)
                    || e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        cqes.extend(
            relay
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(t, res, flags) in &cqes {
            relay.on_completion(t, res, flags);
        }
        cqes.clear();
        relay.rearm_starved();
    }
}

impl Relay {
    /// Moves this turn's SQEs into the submission queue, submitting early only if it is full.
    fn push_sqes(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.sqes.len() {
            {
                let mut sq = self.ring.submission();
                while done < self.sqes.len() {
                    // SAFETY: every buffer and address an SQE points at outlives its operation:
                    // provided buffers and the upstream address live as long as the relay.
                    if unsafe { sq.push(&self.sqes[done]) }.is_err() {
                        break;
                    }
                    done += 1;
                }
            }
            if done < self.sqes.len() {
                self.ring.submit()?;
            }
        }
        self.sqes.clear();
        Ok(())
    }

    fn arm_accept(&mut self) {
        let sqe = opcode::AcceptMulti::new(Fd(self.listen_fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token(OP_ACCEPT, 0));
        self.sqes.push(sqe);
    }

    fn on_completion(&mut self, t: u64, res: i32, flags: u32) {
        let (op, index) = untoken(t);
        match op {
            OP_ACCEPT => {
                if !cqueue::more(flags) {
                    self.arm_accept();
                }
                if res >= 0 {
                    self.accepted(res);
                }
            }
            OP_CONNECT => {
                let sock = &mut self.socks[index as usize];
                sock.ops -= 1;
                if res < 0 || sock.closing {
                    self.begin_close(index);
                } else {
                    sock.connected = true;
                    let peer = sock.peer;
                    self.arm_recv(index);
                    if peer != NONE {
                        self.arm_recv(peer);
                    }
                }
            }
            OP_RECV => self.on_recv(index, res, flags),
            OP_SEND => self.on_send(index, res),
            _ => {} // OP_CANCEL, OP_CLOSE: the cancelled receive's own CQE is what counts
        }
    }

    fn new_sock(&mut self, fd: RawFd, upstream: bool) -> u32 {
        let index = self.free.pop().unwrap_or_else(|| {
            self.socks.push(Sock::default());
            (self.socks.len() - 1) as u32
        });
        let sock = &mut self.socks[index as usize];
        debug_assert!(!sock.in_use && sock.queue.is_empty());
        let queue = std::mem::take(&mut sock.queue); // keep its capacity
        *sock = Sock {
            fd,
            peer: NONE,
            upstream,
            connected: !upstream,
            queue,
            in_use: true,
            ..Sock::default()
        };
        index
    }

    /// A new client: paired with a pooled upstream connection or a new one.
    fn accepted(&mut self, fd: RawFd) {
        let client = self.new_sock(fd, false);
        let up = loop {
            match self.pool.pop() {
                Some(up) if self.socks[up as usize].pooled => {
                    self.socks[up as usize].pooled = false;
                    break up;
                }
                Some(_) => continue, // closed while pooled
                None => {}
            }
            let Ok(up_fd) = sys::tcp_socket(false) else {
                return self.begin_close(client);
            };
            let up = self.new_sock(up_fd, true);
            self.socks[up as usize].ops = 1;
            let addr = (&*self.upstream as *const libc::sockaddr_in).cast();
            let sqe = opcode::Connect::new(Fd(up_fd), addr, sys::SOCKADDR_LEN)
                .build()
                .user_data(token(OP_CONNECT, up));
            self.sqes.push(sqe);
            break up;
        };
        self.socks[client as usize].peer = up;
        self.socks[up as usize].peer = client;
        if self.socks[up as usize].connected {
            self.arm_recv(client); // the pooled connection's receive is armed already
        }
    }

    fn arm_recv(&mut self, index: u32) {
        let sock = &mut self.socks[index as usize];
        sock.ops += 1;
        sock.receiving = true;
        let sqe = opcode::RecvMulti::new(Fd(sock.fd), BGID)
            .build()
            .user_data(token(OP_RECV, index));
        self.sqes.push(sqe);
    }

    fn on_recv(&mut self, index: u32, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.socks[index as usize].ops -= 1;
            self.socks[index as usize].receiving = false;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            self.bufs.held += 1;
            let sock = &self.socks[index as usize];
            let peer = sock.peer;
            if res > 0 && !sock.closing && peer != NONE && !self.socks[peer as usize].closing {
                self.forward(index, peer, bid, res as u32);
            } else {
                self.bufs.give_back(bid); // nobody to send it to
            }
        }
        let closing = self.socks[index as usize].closing;
        if res == 0 || (res < 0 && res != -libc::ENOBUFS) {
            self.begin_close(index);
        } else if res == -libc::ENOBUFS {
            if !closing {
                self.starved.push(index);
            }
        } else if !more && !closing {
            self.arm_recv(index); // a multishot receive may end early (CQ overflow)
        }
        self.maybe_finish(index);
    }

    /// Queues buffer `bid` (`len` bytes from `from`) for `to`, with [`pooling`]'s edits.
    fn forward(&mut self, from: u32, to: u32, bid: u16, len: u32) {
        // SAFETY: the kernel filled `len` bytes of buffer `bid` and gave it to us; nothing
        // else touches it until it is given back.
        let chunk = unsafe { std::slice::from_raw_parts_mut(self.bufs.addr(bid), len as usize) };
        let mut response_done = false;
        if !self.socks[from as usize].upstream {
            let up = &mut self.socks[to as usize];
            if !up.tracking && pooling::strip_close(chunk) {
                up.tracking = true;
                up.left = None;
            }
        } else if self.socks[from as usize].tracking {
            let up = &mut self.socks[from as usize];
            let left = match up.left {
                Some(left) => Some(left),
                None => pooling::mark_close(chunk),
            };
            match left {
                None => up.tracking = false, // relay as it is; the pair ends with the client
                Some(left) => {
                    let left = left.saturating_sub(len as u64);
                    up.left = Some(left);
                    if left == 0 {
                        up.tracking = false;
                        up.left = None;
                        response_done = true;
                    }
                }
            }
        }
        self.socks[to as usize]
            .queue
            .push_back(Chunk { bid, sent: 0, len });
        self.send_next(to);
        if response_done {
            // the upstream connection goes back to the pool; the client closes once flushed
            self.socks[from as usize].peer = NONE;
            self.socks[from as usize].pooled = true;
            self.pool.push(from);
            let client = &mut self.socks[to as usize];
            client.peer = NONE;
            client.close_when_flushed = true;
        }
    }

    /// Starts the send of the socket's first queued chunk unless one is in flight.
    fn send_next(&mut self, index: u32) {
        let sock = &mut self.socks[index as usize];
        let Some(chunk) = sock.queue.front() else {
            return;
        };
        if sock.sending {
            return;
        }
        sock.sending = true;
        sock.ops += 1;
        // SAFETY: `sent < len <= size`, inside buffer `bid`.
        let ptr = unsafe { self.bufs.addr(chunk.bid).add(chunk.sent as usize) };
        let sqe = opcode::Send::new(Fd(sock.fd), ptr, chunk.len - chunk.sent)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(OP_SEND, index));
        self.sqes.push(sqe);
    }

    fn on_send(&mut self, index: u32, res: i32) {
        let sock = &mut self.socks[index as usize];
        sock.ops -= 1;
        sock.sending = false;
        if res < 0 {
            // the destination is gone: drop what was queued for it, end the pair
            while let Some(chunk) = self.socks[index as usize].queue.pop_front() {
                self.bufs.give_back(chunk.bid);
            }
            self.begin_close(index);
        } else {
            let chunk = sock
                .queue
                .front_mut()
                .expect("a send completed for a queued chunk");
            chunk.sent += res as u32;
            if chunk.sent >= chunk.len {
                let bid = chunk.bid;
                sock.queue.pop_front();
                self.bufs.give_back(bid);
            }
            self.send_next(index);
            let sock = &self.socks[index as usize];
            if sock.queue.is_empty() && sock.close_when_flushed {
                self.begin_close(index);
            }
        }
        self.maybe_finish(index);
    }

    /// Ends a socket and, if it is paired, its peer: what is queued for each is still sent.
    fn begin_close(&mut self, index: u32) {
        let sock = &mut self.socks[index as usize];
        if sock.closing || !sock.in_use {
            return;
        }
        sock.closing = true;
        sock.pooled = false;
        let peer = std::mem::replace(&mut sock.peer, NONE);
        if peer != NONE {
            self.socks[peer as usize].peer = NONE;
            self.begin_close(peer);
        }
        self.maybe_finish(index);
    }

    /// A closing socket: once nothing is left to send to it, cancel its multishot receive
    /// (`ASYNC_CANCEL` completes inline; a `SHUTDOWN` SQE would be punted to an io-wq worker
    /// thread every time, as the kernel never issues it nonblocking); once no operation is in
    /// flight, close it and free the slot.
    fn maybe_finish(&mut self, index: u32) {
        let sock = &mut self.socks[index as usize];
        if !sock.closing || !sock.in_use || sock.sending || !sock.queue.is_empty() {
            return;
        }
        if !sock.shut {
            sock.shut = true;
            if sock.receiving {
                let sqe = opcode::AsyncCancel::new(token(OP_RECV, index))
                    .build()
                    .user_data(token(OP_CANCEL, index));
                self.sqes.push(sqe);
            }
        }
        if sock.ops == 0 {
            let sqe = opcode::Close::new(Fd(sock.fd))
                .build()
                .user_data(token(OP_CLOSE, index));
            self.sqes.push(sqe);
            sock.in_use = false;
            self.free.push(index);
        }
    }

    fn rearm_starved(&mut self) {
        if self.starved.is_empty() || self.bufs.held >= self.bufs.count {
            return;
        }
        let mut starved = std::mem::take(&mut self.starved);
        for &index in &starved {
            let sock = &self.socks[index as usize];
            if sock.in_use && !sock.closing {
                self.arm_recv(index);
            }
        }
        starved.clear();
        self.starved = starved;
    }
}
