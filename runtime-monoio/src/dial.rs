//! Connecting to one upstream address, the one the core approved in `Output::Connect`.
//!
//! The core owns the schedule (which address next) and the deadline of the whole dial; this
//! only opens the socket. Failure maps onto the core's [`DialError`]: refused or unreachable →
//! `Refused`; the attempt outliving `timeout` → `Timeout`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use ringway_core::DialError;

/// Connects to `addr` within `timeout`, and counts the attempt in the metrics.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, DialError> {
    let started = Instant::now();
    let result = connect_uncounted(addr, timeout).await;
    crate::metrics::upstream_connect(
        started.elapsed(),
        result.as_ref().map(|_| ()).map_err(|e| *e),
    );
    result
}

async fn connect_uncounted(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, DialError> {
    match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(stream)) => {
            // Heads and small bodies should leave at once, not wait for Nagle.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(_)) => Err(DialError::Refused),
        Err(_) => Err(DialError::Timeout),
    }
}
