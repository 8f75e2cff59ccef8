//! The io_uring-native model: completions, not readiness.
//!
//! - One multishot `ACCEPT` on the listener posts a CQE per new client.
//! - Each pair's upstream socket connects with a `CONNECT` SQE; then each of its two sockets
//!   gets one multishot `RECV` with buffer selection from a provided-buffer ring
//!   (`IORING_REGISTER_PBUF_RING`): the kernel picks a buffer only when bytes arrive, so an idle
//!   pair holds none, and no receive is ever re-armed while data keeps coming.
//! - Received bytes are sent to the other socket by a `SEND` SQE straight from the provided
//!   buffer (no copy); the buffer goes back to the ring when the send completes. At most one
//!   send is in flight per direction (later chunks queue behind it) so bytes stay in order.
//! - Every SQE a loop turn produced is submitted by the one `io_uring_enter` that also waits
//!   for the next completions (`submit_and_wait(1)`): one syscall per turn, for all pairs.
//! - End of stream or an error on either socket: the queued sends drain, then `SHUTDOWN` SQEs
//!   end both multishot receives, and once no operation of the pair is in flight `CLOSE` SQEs
//!   release the descriptors.
//!
//! Ring set-up: `--taskrun defer` (default) is `IORING_SETUP_SINGLE_ISSUER |
//! IORING_SETUP_DEFER_TASKRUN` (completion work runs only inside our `io_uring_enter`, never as
//! an interruption); `coop` is `IORING_SETUP_COOP_TASKRUN`; `plain` none of them (monoio 0.2.4's
//! set-up).
//!
//! When the buffer ring runs dry a multishot receive ends with `ENOBUFS`; it is re-armed once
//! a send has returned a buffer.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};

use crate::sys;
use crate::Settings;

/// How the ring runs completion work (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taskrun {
    Defer,
    Coop,
    Plain,
}

/// The provided-buffer group every receive selects from.
const BGID: u16 = 0;

const OP_ACCEPT: u64 = 1;
const OP_CONNECT: u64 = 2;
const OP_RECV: u64 = 3;
const OP_SEND: u64 = 4;
const OP_SHUTDOWN: u64 = 5;
const OP_CLOSE: u64 = 6;

/// `user_data`: the operation, the pair's slot and the socket's side (0 client, 1 upstream).
fn token(op: u64, index: u32, side: usize) -> u64 {
    op << 56 | (side as u64) << 48 | index as u64
}

fn untoken(t: u64) -> (u64, u32, usize) {
    (t >> 56, t as u32, ((t >> 48) & 0xff) as usize)
}

/// A received provided buffer waiting to be (fully) sent.
struct Chunk {
    bid: u16,
    sent: u32,
    len: u32,
}

/// The bytes going *to* one socket of a pair.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Chunk>,
    sending: bool,
}

#[derive(Default)]
struct Pair {
    /// `[client, upstream]`.
    fd: [RawFd; 2],
    out: [Outbox; 2],
    /// Operations of this pair in flight (their CQEs still to come).
    ops: u32,
    closing: bool,
    shut: bool,
    in_use: bool,
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

struct Relay {
    ring: IoUring,
    bufs: Buffers,
    pairs: Vec<Pair>,
    free: Vec<u32>,
    /// SQEs produced in this loop turn, pushed to the ring together before the next enter.
    sqes: Vec<squeue::Entry>,
    /// Receives that ended with `ENOBUFS`, to re-arm once buffers are back.
    starved: Vec<(u32, usize)>,
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
        pairs: Vec::new(),
        free: Vec::new(),
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
            .user_data(token(OP_ACCEPT, 0, 0));
        self.sqes.push(sqe);
    }

    fn on_completion(&mut self, t: u64, res: i32, flags: u32) {
        let (op, index, side) = untoken(t);
        match op {
            OP_ACCEPT => {
                if !cqueue::more(flags) {
                    self.arm_accept();
                }
                if res >= 0 {
                    self.open_pair(res);
                }
            }
            OP_CONNECT => {
                let pair = &mut self.pairs[index as usize];
                pair.ops -= 1;
                if res < 0 || pair.closing {
                    self.begin_close(index);
                } else {
                    self.arm_recv(index, 0);
                    self.arm_recv(index, 1);
                }
            }
            OP_RECV => self.on_recv(index, side, res, flags),
            OP_SEND => self.on_send(index, side, res),
            OP_SHUTDOWN => {
                self.pairs[index as usize].ops -= 1;
                self.maybe_finish(index);
            }
            _ => {} // OP_CLOSE: nothing waits for it
        }
    }

    fn open_pair(&mut self, client: RawFd) {
        let up = match sys::tcp_socket(false) {
            Ok(fd) => fd,
            Err(_) => return sys::close(client),
        };
        let index = self.free.pop().unwrap_or_else(|| {
            self.pairs.push(Pair::default());
            (self.pairs.len() - 1) as u32
        });
        let pair = &mut self.pairs[index as usize];
        pair.fd = [client, up];
        pair.ops = 1;
        pair.closing = false;
        pair.shut = false;
        pair.in_use = true;
        let sqe = opcode::Connect::new(
            Fd(up),
            (&*self.upstream as *const libc::sockaddr_in).cast(),
            sys::SOCKADDR_LEN,
        )
        .build()
        .user_data(token(OP_CONNECT, index, 1));
        self.sqes.push(sqe);
    }

    fn arm_recv(&mut self, index: u32, side: usize) {
        let pair = &mut self.pairs[index as usize];
        pair.ops += 1;
        let sqe = opcode::RecvMulti::new(Fd(pair.fd[side]), BGID)
            .build()
            .user_data(token(OP_RECV, index, side));
        self.sqes.push(sqe);
    }

    fn on_recv(&mut self, index: u32, side: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            self.pairs[index as usize].ops -= 1;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            self.bufs.held += 1;
            if res > 0 && !self.pairs[index as usize].closing {
                self.pairs[index as usize].out[1 - side]
                    .queue
                    .push_back(Chunk {
                        bid,
                        sent: 0,
                        len: res as u32,
                    });
                self.send_next(index, 1 - side);
            } else {
                self.bufs.give_back(bid);
            }
        }
        let closing = self.pairs[index as usize].closing;
        if res == 0 || (res < 0 && res != -libc::ENOBUFS) {
            self.begin_close(index);
        } else if res == -libc::ENOBUFS {
            if !closing {
                self.starved.push((index, side));
            }
        } else if !more && !closing {
            self.arm_recv(index, side); // a multishot receive may end early (CQ overflow)
        }
        self.maybe_finish(index);
    }

    /// Starts the send of `to`'s first queued chunk unless one is in flight.
    fn send_next(&mut self, index: u32, to: usize) {
        let pair = &mut self.pairs[index as usize];
        let out = &mut pair.out[to];
        let Some(chunk) = out.queue.front() else {
            return;
        };
        if out.sending {
            return;
        }
        out.sending = true;
        pair.ops += 1;
        // SAFETY: `sent < len <= size`, inside buffer `bid`.
        let ptr = unsafe { self.bufs.addr(chunk.bid).add(chunk.sent as usize) };
        let sqe = opcode::Send::new(Fd(pair.fd[to]), ptr, chunk.len - chunk.sent)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(OP_SEND, index, to));
        self.sqes.push(sqe);
    }

    fn on_send(&mut self, index: u32, to: usize, res: i32) {
        let pair = &mut self.pairs[index as usize];
        pair.ops -= 1;
        pair.out[to].sending = false;
        if res < 0 {
            // the destination is gone: drop what was queued for it, end the pair
            while let Some(chunk) = self.pairs[index as usize].out[to].queue.pop_front() {
                self.bufs.give_back(chunk.bid);
            }
            self.begin_close(index);
        } else {
            let chunk = pair.out[to]
                .queue
                .front_mut()
                .expect("a send completed for a queued chunk");
            chunk.sent += res as u32;
            if chunk.sent >= chunk.len {
                let bid = chunk.bid;
                pair.out[to].queue.pop_front();
                self.bufs.give_back(bid);
            }
            self.send_next(index, to);
        }
        self.maybe_finish(index);
    }

    fn begin_close(&mut self, index: u32) {
        self.pairs[index as usize].closing = true;
    }

    /// A closing pair: once nothing is left to send, shut both sockets down (which ends their
    /// multishot receives); once no operation is in flight, close both and free the slot.
    fn maybe_finish(&mut self, index: u32) {
        let pair = &mut self.pairs[index as usize];
        if !pair.closing || !pair.in_use {
            return;
        }
        if pair.out.iter().any(|o| o.sending || !o.queue.is_empty()) {
            return;
        }
        if !pair.shut {
            pair.shut = true;
            for side in 0..2 {
                pair.ops += 1;
                let sqe = opcode::Shutdown::new(Fd(pair.fd[side]), libc::SHUT_RDWR)
                    .build()
                    .user_data(token(OP_SHUTDOWN, index, side));
                self.sqes.push(sqe);
            }
            return;
        }
        if pair.ops == 0 {
            for side in 0..2 {
                let sqe = opcode::Close::new(Fd(pair.fd[side]))
                    .build()
                    .user_data(token(OP_CLOSE, index, side));
                self.sqes.push(sqe);
            }
            pair.in_use = false;
            self.free.push(index);
        }
    }

    fn rearm_starved(&mut self) {
        if self.starved.is_empty() || self.bufs.held >= self.bufs.count {
            return;
        }
        let starved = std::mem::take(&mut self.starved);
        for &(index, side) in &starved {
            let pair = &self.pairs[index as usize];
            if pair.in_use && !pair.closing {
                self.arm_recv(index, side);
            }
        }
        self.starved = starved;
        self.starved.clear();
    }
}
