//! Per-thread pool of idle upstream connections, keyed by the core's [`Authority`].
//!
//! Filled on `Output::ReleaseUpstream`, drawn from on `Output::Dial { allow_pooled: true }`.
//! Entries expire after `--pool-idle-timeout` (zero: nothing is kept); a connection the upstream already closed (or that has
//! unexpected bytes waiting) is spotted with a non-blocking peek and dropped instead of
//! reused (skipped for a connection released within [`FRESH`]). Staleness that slips
//! through is handled by the core, which retries an idempotent bodiless request once on a
//! fresh dial. Bounded per authority and in total; overflow is closed.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use ringway_core::target::Authority;

/// A connection released less than this long ago is reused without the staleness peek (one
/// `recv` syscall, a fifth of the syscalls of a keep-alive request): an origin closing an
/// idle connection within 100 ms of answering on it without `Connection: close` is the
/// same race the peek itself cannot close, and the core retries an idempotent request.
const FRESH: Duration = Duration::from_millis(100);
const MAX_PER_AUTHORITY: usize = 64;
const MAX_TOTAL: usize = 2048;

/// One thread's idle upstream connections.
pub struct Pool {
    idle: HashMap<Authority, Vec<(TcpStream, Instant)>>,
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

    /// An idle, live connection to `authority`, most recently used first.
    pub fn take(&mut self, authority: &Authority) -> Option<TcpStream> {
        let list = self.idle.get_mut(authority)?;
        let now = Instant::now();
        let mut found = None;
        while let Some((stream, since)) = list.pop() {
            self.total -= 1;
            let idle = now.duration_since(since);
            if idle < self.keep && (idle < FRESH || is_quiet(&stream)) {
                crate::metrics::pool_reuse();
                found = Some(stream);
                break;
            }
        }
        if list.is_empty() {
            self.idle.remove(authority);
        }
        found
    }

    /// Keeps `stream` for later requests to `authority`, unless the pool is full or keeps
    /// nothing (it is then closed).
    pub fn put(&mut self, authority: Authority, stream: TcpStream) {
        if self.keep.is_zero() {
            return;
        }
        if self.total >= MAX_TOTAL {
            self.sweep();
            if self.total >= MAX_TOTAL {
                return;
            }
        }
        let list = self.idle.entry(authority).or_default();
        if list.len() >= MAX_PER_AUTHORITY {
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
