//! Dialing an upstream: resolve, then try every address in turn within the connect timeout.
//!
//! Failure maps onto the core's [`DialError`]: no address → `Dns`; every address refused or
//! unreachable → `Refused`; the deadline passed first → `Timeout`. The core runs its own
//! dial deadline as well, so either timer ending the wait is fine.

use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use ringway_core::target::Authority;
use ringway_core::DialError;

use crate::dns::Resolver;

/// Connects to `authority` within `timeout`, and counts the dial in the metrics.
pub async fn dial(
    resolver: &Resolver,
    authority: &Authority,
    timeout: Duration,
) -> Result<TcpStream, DialError> {
    let started = Instant::now();
    let result = dial_uncounted(resolver, authority, timeout).await;
    crate::metrics::upstream_connect(
        started.elapsed(),
        result.as_ref().map(|_| ()).map_err(|e| *e),
    );
    result
}

async fn dial_uncounted(
    resolver: &Resolver,
    authority: &Authority,
    timeout: Duration,
) -> Result<TcpStream, DialError> {
    let deadline = Instant::now() + timeout;
    let addrs = monoio::time::timeout(
        timeout,
        resolver.resolve(authority.host(), authority.port()),
    )
    .await
    .map_err(|_| DialError::Timeout)?
    .ok_or(DialError::Dns)?;
    let mut timed_out = false;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        match monoio::time::timeout(left, TcpStream::connect_addr(addr)).await {
            Ok(Ok(stream)) => {
                // Heads and small bodies should leave at once, not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(_)) => {}
            Err(_) => timed_out = true,
        }
    }
    Err(if timed_out {
        DialError::Timeout
    } else {
        DialError::Refused
    })
}
