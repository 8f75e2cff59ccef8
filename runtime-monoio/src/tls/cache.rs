//! The leaf cache: one minted certificate per host, shared by every worker thread, bounded,
//! least recently used out first.
//!
//! Minting costs ~35 µs of CPU; a page load opens a burst of connections to one host at once,
//! so the cache mints once per host *even when many ask together*: the first asker inserts an
//! empty slot under the lock and mints outside it; the others wait on that slot (a
//! `OnceLock`), not on the whole cache, so different hosts mint in parallel. A leaf older than
//! the refresh age is minted again on its next use (connections holding the old one keep it).
//!
//! ## Key components
//! - [`LeafCache::get_or_mint`]: the one entry point.
//! - [`LeafCache::len`] / [`LeafCache::capacity`]: for the tests and the metrics.
//!
//! ## Error handling
//! A mint failure is stored in the slot like a success (it is deterministic for a host: a
//! name rcgen refuses) and handed to every asker; it leaves the cache by LRU like any entry.
//! A poisoned lock (a panic while holding it, which only a bug could cause) is recovered: the
//! map is consistent after every statement that mutates it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

type Slot<V, E> = Arc<OnceLock<Result<Arc<V>, E>>>;

struct Entry<V, E> {
    slot: Slot<V, E>,
    /// Key of this entry in `Lru::order`.
    used: u64,
}

struct Lru<V, E> {
    map: HashMap<String, Entry<V, E>>,
    /// Last use → host: the first entry is the least recently used.
    order: BTreeMap<u64, String>,
    tick: u64,
}

/// A bounded LRU of minted leaves (`V`), keyed by host, safe to share between threads.
pub struct LeafCache<V, E> {
    lru: Mutex<Lru<V, E>>,
    capacity: usize,
}

impl<V, E: Clone> LeafCache<V, E> {
    /// A cache holding at most `capacity` hosts (at least 1).
    pub fn new(capacity: usize) -> Self {
        LeafCache {
            lru: Mutex::new(Lru {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// The most hosts it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many hosts it holds now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<V, E>> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leaf for `host` (lowercase, as the caller normalised it), minting it with `mint`
    /// if absent or if `stale` says the cached one is too old. Concurrent callers for the
    /// same host get the same leaf and `mint` runs once.
    pub fn get_or_mint(
        &self,
        host: &str,
        stale: impl Fn(&V) -> bool,
        mint: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let slot = {
            let mut lru = self.lock();
            lru.tick += 1;
            let tick = lru.tick;
            let Lru { map, order, .. } = &mut *lru;
            let existing = match map.get_mut(host) {
                Some(e) => {
                    let fresh = match e.slot.get() {
                        Some(Ok(v)) => !stale(v),
                        _ => true, // being minted, or a stored failure
                    };
                    order.remove(&e.used);
                    e.used = tick;
                    if !fresh {
                        e.slot = Arc::new(OnceLock::new());
                    }
                    order.insert(tick, host.to_string());
                    Some(e.slot.clone())
                }
                None => None,
            };
            match existing {
                Some(slot) => slot,
                None => {
                    if map.len() >= self.capacity {
                        if let Some((_, old)) = order.pop_first() {
                            map.remove(&old);
                        }
                    }
                    let slot: Slot<V, E> = Arc::new(OnceLock::new());
                    map.insert(
                        host.to_string(),
                        Entry {
                            slot: slot.clone(),
                            used: tick,
                        },
                    );
                    order.insert(tick, host.to_string());
                    slot
                }
            }
        };
        // Outside the cache lock: other hosts are not held up by this mint.
        slot.get_or_init(|| mint().map(Arc::new)).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    type Cache = LeafCache<String, ()>;

    fn get(c: &Cache, host: &str, mints: &AtomicUsize) -> Arc<String> {
        c.get_or_mint(
            host,
            |_| false,
            || {
                mints.fetch_add(1, Ordering::SeqCst);
                Ok(format!("leaf for {host}"))
            },
        )
        .unwrap()
    }

    #[test]
    fn bounded_and_least_recently_used_goes_first() {
        let c = Cache::new(3);
        let mints = AtomicUsize::new(0);
        for h in ["a", "b", "c"] {
            get(&c, h, &mints);
        }
        get(&c, "a", &mints); // a is now the most recent; b the least
        get(&c, "d", &mints); // evicts b
        assert_eq!(c.len(), 3);
        assert_eq!(mints.load(Ordering::SeqCst), 4);
        get(&c, "a", &mints);
        get(&c, "c", &mints);
        get(&c, "d", &mints);
        assert_eq!(mints.load(Ordering::SeqCst), 4, "a, c, d stayed");
        get(&c, "b", &mints);
        assert_eq!(mints.load(Ordering::SeqCst), 5, "b was evicted");
        assert_eq!(c.len(), 3);
        for i in 0..1000 {
            get(&c, &format!("h{i}"), &mints);
            assert!(c.len() <= 3);
        }
    }

    #[test]
    fn many_threads_asking_at_once_mint_once() {
        const N: usize = 8;
        let c = Arc::new(Cache::new(10));
        let mints = Arc::new(AtomicUsize::new(0));
        let asking = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(N));
        let threads: Vec<_> = (0..N)
            .map(|_| {
                let (c, mints, asking, start) =
                    (c.clone(), mints.clone(), asking.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    asking.fetch_add(1, Ordering::SeqCst);
                    c.get_or_mint(
                        "busy.test",
                        |_| false,
                        || {
                            mints.fetch_add(1, Ordering::SeqCst);
                            // Hold the mint until every thread has asked (bounded wait), so
                            // the others are in the cache while it is being minted.
                            for _ in 0..5000 {
                                if asking.load(Ordering::SeqCst) == N {
                                    break;
                                }
                                std::thread::sleep(std::time::Duration::from_millis(1));
                            }
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            Ok("leaf".to_string())
                        },
                    )
                    .unwrap()
                })
            })
            .collect();
        let leaves: Vec<Arc<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(asking.load(Ordering::SeqCst), N);
        assert_eq!(mints.load(Ordering::SeqCst), 1);
        assert!(leaves.iter().all(|l| Arc::ptr_eq(l, &leaves[0])));
    }

    #[test]
    fn stale_leaves_are_minted_again_and_failures_are_shared() {
        let c: LeafCache<u32, &'static str> = LeafCache::new(4);
        let v = c.get_or_mint("x", |_| false, || Ok(1)).unwrap();
        assert_eq!(*v, 1);
        assert_eq!(*c.get_or_mint("x", |_| false, || Ok(2)).unwrap(), 1);
        assert_eq!(*c.get_or_mint("x", |&v| v == 1, || Ok(3)).unwrap(), 3);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get_or_mint("bad", |_| false, || Err("no")), Err("no"));
        assert_eq!(c.get_or_mint("bad", |_| false, || Ok(9)), Err("no"));
    }
}
