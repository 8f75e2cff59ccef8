//! Name resolution off the event loop, with a short per-thread cache.
//!
//! `getaddrinfo` blocks, and a blocked loop thread stalls every connection it serves, so
//! lookups run on monoio's blocking thread pool (`spawn_blocking`). Answers are cached per
//! thread for [`TTL`] (no locks; each thread fills its own cache) and shared as `Rc<[IpAddr]>`,
//! so a cached lookup allocates nothing. The core never asks for IP literals. Failure: a lookup
//! error or an empty answer is an empty list, which the core answers with 502
//! (`error=dns_error`); the core's deadline (`--dns-timeout`) covers a lookup that hangs.
//! Failures are cached too, for [`FAILURE_TTL`], so a burst of requests to a dead name costs
//! one lookup, not one blocking-pool slot each.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a resolved answer is reused. Short, as we do not see the record's own TTL.
pub const TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered: short, so a name that comes back is soon usable.
pub const FAILURE_TTL: Duration = Duration::from_secs(1);
/// Cache size at which expired entries are swept (and, if still full, everything).
const MAX_ENTRIES: usize = 4096;

/// A cached answer and when it expires.
type Entry = (Rc<[IpAddr]>, Instant);

/// One thread's DNS cache.
#[derive(Default)]
pub struct Resolver {
    cache: RefCell<HashMap<String, Entry>>,
}

impl Resolver {
    /// The addresses of `host`, in the resolver's order, without duplicates; empty if the
    /// name does not resolve.
    pub async fn resolve(&self, host: &str) -> Rc<[IpAddr]> {
        let now = Instant::now();
        if let Some((ips, expires)) = self.cache.borrow().get(host) {
            if *expires > now {
                return Rc::clone(ips);
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
            _ => {
                let none: Rc<[IpAddr]> = Rc::from([]);
                self.remember(host, Rc::clone(&none), FAILURE_TTL);
                return none;
            }
        };
        let mut seen = Vec::with_capacity(ips.len());
        ips.retain(|ip| {
            let new = !seen.contains(ip);
            seen.push(*ip);
            new
        });
        let ips: Rc<[IpAddr]> = Rc::from(ips);
        self.remember(host, Rc::clone(&ips), TTL);
        ips
    }

    /// Caches `ips` (empty: a failure) as the answer for `host` for `ttl`.
    fn remember(&self, host: &str, ips: Rc<[IpAddr]>, ttl: Duration) {
        let now = Instant::now();
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(host.to_string(), (ips, now + ttl));
    }

    /// Drops expired answers (called by the worker's janitor).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.cache
            .borrow_mut()
            .retain(|_, (_, expires)| *expires > now);
    }
}
