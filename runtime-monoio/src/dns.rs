//! Name resolution off the event loop, with a short per-thread cache.
//!
//! `getaddrinfo` blocks, and a blocked loop thread stalls every connection it serves, so
//! lookups run on monoio's blocking thread pool (`spawn_blocking`). Answers are cached per
//! thread for [`TTL`] (no locks; each thread fills its own cache). IP literals never reach
//! the resolver. Failure: a lookup error or an empty answer is `None`, which the dialer turns
//! into the core's `DialError::Dns` (502). Failures are not cached.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a resolved answer is reused. Short, as we do not see the record's own TTL.
pub const TTL: Duration = Duration::from_secs(30);
/// Cache size at which expired entries are swept (and, if still full, everything).
const MAX_ENTRIES: usize = 4096;

/// One thread's DNS cache.
#[derive(Default)]
pub struct Resolver {
    cache: RefCell<HashMap<String, (Vec<IpAddr>, Instant)>>,
}

impl Resolver {
    /// The addresses for `host`, port applied; `None` if the name does not resolve.
    pub async fn resolve(&self, host: &str, port: u16) -> Option<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(vec![SocketAddr::new(ip, port)]);
        }
        let now = Instant::now();
        if let Some((ips, expires)) = self.cache.borrow().get(host) {
            if *expires > now {
                return Some(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
            }
        }
        let name = host.to_string();
        let answer = monoio::spawn_blocking(move || {
            (name.as_str(), 0u16)
                .to_socket_addrs()
                .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())
        })
        .await;
        let mut ips = match answer {
            Ok(Ok(ips)) if !ips.is_empty() => ips,
            _ => return None,
        };
        ips.dedup();
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(host.to_string(), (ips.clone(), Instant::now() + TTL));
        Some(
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
        )
    }

    /// Drops expired answers (called by the worker's janitor).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.cache
            .borrow_mut()
            .retain(|_, (_, expires)| *expires > now);
    }
}
