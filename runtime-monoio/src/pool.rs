//! Per-thread pool of idle upstream connections, keyed by the address the core approved and
//! connected to (so a pooled connection is only reused for an address the core judges
//! allowed at the time of reuse, and origins sharing an address share connections).
//!
//! Filled on `Output::ReleaseUpstream`, drawn from on `Output::Dial { allow_pooled: true }`.
//! Entries expire after `--pool-idle-timeout` (zero: nothing is kept); a connection the upstream already closed (or that has
//! unexpected bytes waiting) is spotted with a non-blocking peek and dropped instead of
//! reused. The peek is skipped only for a request the core can retry (`retryable` on the
//! dial: idempotent, no body) on a connection released within [`FRESH`]; staleness that
//! slips through then costs a retry on a fresh dial, never the request. A request the core
//! cannot send again (a POST, anything with a body) always gets the peek, so an origin that
//! closed right after its last answer is noticed before the request is spent on it.
//! Bounded per address and in total; overflow is closed.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use monoio::net::TcpStream;

/// A connection released less than this long ago is reused without the staleness peek (one
/// `recv` syscall, a fifth of the syscalls of a keep-alive request) for retryable requests
/// only: an origin that closes right after answering without `Connection: close` makes the
/// next request on that connection fail, which the core repairs for those by sending the
/// request again on a fresh connection. Everything else is peeked, however fresh.
const FRESH: Duration = Duration::from_millis(100);
const MAX_PER_ADDRESS: usize = 64;
const MAX_TOTAL: usize = 2048;

/// One thread's idle upstream connections.
pub struct Pool {
    idle: HashMap<SocketAddr, Vec<(TcpStream, Instant)>>,
    total: usize,
    /// How long a connection may wait here (`--pool-idle-timeout`).
    keep: Duration,
}

impl Pool {
    /// An empty pool keeping connections for `keep` (zero: it keeps none).
    pub fn new(keep: Duration) -> Pool {
        Pool {
            idle: HashMap::new(),
            total: 0,
            keep,
        }
    }

    /// An idle, live connection to `addr`, most recently used first. `retryable` (from
    /// the core's dial) allows skipping the liveness peek on a connection released within
    /// [`FRESH`]; without it every candidate is peeked.
    pub fn take(&mut self, addr: SocketAddr, retryable: bool) -> Option<TcpStream> {
        let list = self.idle.get_mut(&addr)?;
        let now = Instant::now();
        let mut found = None;
        while let Some((stream, since)) = list.pop() {
            self.total -= 1;
            let idle = now.duration_since(since);
            if idle < self.keep && ((retryable && idle < FRESH) || is_quiet(&stream)) {
                crate::metrics::pool_reuse();
                found = Some(stream);
                break;
            }
        }
        if list.is_empty() {
            self.idle.remove(&addr);
        }
        found
    }

    /// Keeps `stream` for later requests to `addr`, unless the pool is full or keeps
    /// nothing (it is then closed).
    pub fn put(&mut self, addr: SocketAddr, stream: TcpStream) {
        if self.keep.is_zero() {
            return;
        }
        if self.total >= MAX_TOTAL {
            self.sweep();
            if self.total >= MAX_TOTAL {
                return;
            }
        }
        let list = self.idle.entry(addr).or_default();
        if list.len() >= MAX_PER_ADDRESS {
            return;
        }
        list.push((stream, Instant::now()));
        self.total += 1;
    }

    /// Closes expired connections (called by the worker's janitor).
    pub fn sweep(&mut self) {
        let now = Instant::now();
        let keep = self.keep;
        let mut total = 0;
        self.idle.retain(|_, list| {
            list.retain(|(_, since)| now.duration_since(*since) < keep);
            total += list.len();
            !list.is_empty()
        });
        self.total = total;
    }

    /// Closes everything (at shutdown).
    pub fn clear(&mut self) {
        self.idle.clear();
        self.total = 0;
    }
}

/// Whether an idle connection has nothing to read: no EOF from the upstream and no stray
/// bytes. Uses `MSG_PEEK | MSG_DONTWAIT`, which works whether the fd is blocking (io_uring)
/// or not (epoll).
fn is_quiet(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: a valid fd and a one-byte buffer we own.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && {
        let err = std::io::Error::last_os_error().raw_os_error();
        err == Some(libc::EAGAIN) || err == Some(libc::EWOULDBLOCK)
    }
}
