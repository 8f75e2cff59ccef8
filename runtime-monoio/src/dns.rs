//! Name resolution off the event loop, with a short per-thread cache.
//!
//! `getaddrinfo` blocks, and a blocked loop thread stalls every connection it serves, so
//! lookups run on monoio's blocking thread pool (`spawn_blocking`). Answers are cached per
//! thread for [`TTL`] (no locks; each thread fills its own cache) and shared as `Rc<[IpAddr]>`,
//! so a cached lookup allocates nothing. The core never asks for IP literals.
//!
//! A burst of requests to one name costs one lookup: requests that arrive while a lookup of
//! their name is in flight wait for that one (the lookup runs in a task of its own, so a
//! requester that gives up does not cancel it for the others), and a failure is remembered
//! for [`FAILURE_TTL`].
//!
//! Failure: a lookup error or an empty answer is an empty list, which the core answers with
//! 502 (`error=dns_error`); the core's deadline (`--dns-timeout`) covers a lookup that hangs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a resolved answer is reused. Short, as we do not see the record's own TTL.
pub const TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered: short, so a name that comes back is soon usable.
pub const FAILURE_TTL: Duration = Duration::from_secs(1);
/// Cache size at which expired entries are swept (and, if still full, everything).
const MAX_ENTRIES: usize = 4096;

/// A cached answer and when it expires.
type Entry = (Rc<[IpAddr]>, Instant);

/// A lookup in flight, shared by everyone waiting for the same name.
#[derive(Default)]
struct InFlight {
    answer: RefCell<Option<Rc<[IpAddr]>>>,
    waiting: RefCell<Vec<Waker>>,
}

/// Waits for an [`InFlight`] lookup's answer.
struct Answer(Rc<InFlight>);

impl Future for Answer {
    type Output = Rc<[IpAddr]>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Rc<[IpAddr]>> {
        if let Some(ips) = &*self.0.answer.borrow() {
            return Poll::Ready(Rc::clone(ips));
        }
        let mut waiting = self.0.waiting.borrow_mut();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// One thread's DNS cache.
#[derive(Default)]
pub struct Resolver {
    cache: RefCell<HashMap<String, Entry>>,
    in_flight: RefCell<HashMap<String, Rc<InFlight>>>,
}

impl Resolver {
    /// The addresses of `host`, in the resolver's order, without duplicates; empty if the
    /// name does not resolve.
    pub async fn resolve(&self, host: &str) -> Rc<[IpAddr]> {
        if let Some((ips, expires)) = self.cache.borrow().get(host) {
            if *expires > Instant::now() {
                return Rc::clone(ips);
            }
        }
        let lookup = {
            let mut in_flight = self.in_flight.borrow_mut();
            match in_flight.get(host) {
                Some(lookup) => Rc::clone(lookup),
                None => {
                    let lookup = Rc::new(InFlight::default());
                    in_flight.insert(host.to_string(), Rc::clone(&lookup));
                    monoio::spawn(look_up(host.to_string(), Rc::clone(&lookup)));
                    lookup
                }
            }
        };
        let ips = Answer(Rc::clone(&lookup)).await;
        // The first waiter back caches the answer for everyone after.
        let mut in_flight = self.in_flight.borrow_mut();
        if in_flight
            .get(host)
            .is_some_and(|current| Rc::ptr_eq(current, &lookup))
        {
            in_flight.remove(host);
            let ttl = if ips.is_empty() { FAILURE_TTL } else { TTL };
            self.remember(host, Rc::clone(&ips), ttl);
        }
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

    /// Drops expired answers, and answered lookups nobody came back for (called by the
    /// worker's janitor).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.cache
            .borrow_mut()
            .retain(|_, (_, expires)| *expires > now);
        self.in_flight
            .borrow_mut()
            .retain(|_, lookup| lookup.answer.borrow().is_none());
    }
}

/// Runs one `getaddrinfo` on the blocking pool and hands the answer (deduplicated, in the
/// resolver's order; empty on failure) to everyone waiting.
async fn look_up(name: String, lookup: Rc<InFlight>) {
    let answer = monoio::spawn_blocking(move || {
        (name.as_str(), 0u16)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())
    })
    .await;
    let mut ips = match answer {
        Ok(Ok(ips)) => ips,
        _ => Vec::new(),
    };
    let mut seen = Vec::with_capacity(ips.len());
    ips.retain(|ip| {
        let new = !seen.contains(ip);
        seen.push(*ip);
        new
    });
    *lookup.answer.borrow_mut() = Some(Rc::from(ips));
    for waker in lookup.waiting.take() {
        waker.wake();
    }
}
