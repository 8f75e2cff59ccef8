//! The egress guard's host-pattern set at blocklist scale: 100,000 patterns.
//!
//! `cargo bench -p ringway-core --bench egress` prints the time to build the set from a
//! 100,000-line `@FILE` text (what start-up pays), the heap it holds per pattern beyond the
//! pattern text (counted by a wrapping global allocator), and ns per `matches_name` lookup
//! for hits and for misses (a miss probes every label boundary, the common case for a deny
//! list). No benchmark framework: fixed iteration counts timed with `std::time::Instant`,
//! median of 7 runs of on-CPU time (`/proc/thread-self/schedstat`: the machine is shared). The targets: build <= 300 ms, <= 64 bytes per pattern beyond
//! its text, <= 300 ns per lookup.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use ringway_core::egress::HostPatterns;

/// Live heap bytes, all threads.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PATTERNS: usize = 100_000;

/// A deterministic generator (xorshift): the same list every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn label(&mut self, out: &mut String) {
        const WORDS: &[&str] = &[
            "ads",
            "track",
            "cdn",
            "metrics",
            "pixel",
            "static",
            "img",
            "click",
            "stats",
            "beacon",
            "srv",
            "edge",
            "api",
            "media",
            "tag",
            "analytics",
        ];
        out.push_str(WORDS[(self.next() % WORDS.len() as u64) as usize]);
        out.push_str(&(self.next() % 100_000).to_string());
    }
}

const TLDS: &[&str] = &["com", "net", "org", "io", "co.uk", "de", "info", "example"];

/// A blocklist-like name: `label.label.tld` or `label.tld`.
fn name(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.next() % 2 == 0 {
        rng.label(&mut s);
        s.push('.');
    }
    rng.label(&mut s);
    s.push('.');
    s.push_str(TLDS[(rng.next() % TLDS.len() as u64) as usize]);
    s
}

/// This thread's time on a CPU in ns (`/proc/thread-self/schedstat`, Linux), so that other
/// jobs sharing the machine do not inflate the figures; wall-clock time where it is missing.
fn cpu_ns(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| wall.elapsed().as_nanos() as f64)
}

/// Runs `f` and returns the CPU time it took in ns.
fn timed(mut f: impl FnMut()) -> f64 {
    let origin = Instant::now();
    let start = cpu_ns(origin);
    f();
    cpu_ns(origin) - start
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// Median over 7 runs of the ns per lookup of `hosts`, each run `rounds` passes.
fn ns_per_lookup(set: &HostPatterns, hosts: &[String], rounds: usize, want: bool) -> f64 {
    median(
        (0..7)
            .map(|_| {
                let mut hits = 0usize;
                let wall = Instant::now();
                let ns = timed(|| {
                    for _ in 0..rounds {
                        for h in hosts {
                            hits += usize::from(set.matches_name(black_box(h)));
                        }
                    }
                });
                assert_eq!(hits, if want { rounds * hosts.len() } else { 0 });
                if std::env::var_os("RINGWAY_BENCH_WALL").is_some() {
                    eprintln!(
                        "  wall {:.0} ns, cpu {:.0} ns per lookup",
                        wall.elapsed().as_nanos() as f64 / (rounds * hosts.len()) as f64,
                        ns / (rounds * hosts.len()) as f64
                    );
                }
                ns / (rounds * hosts.len()) as f64
            })
            .collect(),
    )
}

fn main() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut exact = Vec::new();
    let mut wild = Vec::new();
    let mut file = String::from("# generated blocklist\n");
    while exact.len() + wild.len() < PATTERNS {
        let n = name(&mut rng);
        if rng.next() % 4 == 0 {
            file.push_str("*.");
            wild.push(n.clone());
        } else {
            exact.push(n.clone());
        }
        file.push_str(&n);
        file.push('\n');
    }
    let text_bytes: usize = file.lines().skip(1).map(str::len).sum();

    let build_ms = median(
        (0..7)
            .map(|_| {
                timed(|| {
                    let mut set = HostPatterns::new();
                    set.add_lines(black_box(&file)).unwrap();
                    black_box(&set);
                }) / 1e6
            })
            .collect(),
    );

    let before = LIVE.load(Ordering::Relaxed);
    let mut set = HostPatterns::new();
    let added = set.add_lines(&file).unwrap();
    let held = (LIVE.load(Ordering::Relaxed) - before) as f64;
    assert_eq!(added, PATTERNS);
    let distinct = set.len();

    // Hits: exact names as listed, subdomains of wildcards (one and two labels deep).
    let mut hits: Vec<String> = exact.iter().step_by(10).take(5_000).cloned().collect();
    hits.extend(
        wild.iter()
            .step_by(5)
            .take(5_000)
            .enumerate()
            .map(|(i, w)| {
                if i % 2 == 0 {
                    format!("www.{w}")
                } else {
                    format!("a.b.{w}")
                }
            }),
    );
    // Misses: names of the same shape that are not listed, three to five labels deep.
    let mut misses = Vec::new();
    let mut other = Rng(0x1234_5678_9abc_def1);
    while misses.len() < 10_000 {
        let h = format!("www.{}", name(&mut other));
        if !set.matches_name(&h) {
            misses.push(h);
        }
    }
    let hit_ns = ns_per_lookup(&set, &hits, 100, true);
    let miss_ns = ns_per_lookup(&set, &misses, 100, false);

    println!(
        "patterns: {PATTERNS} lines ({distinct} distinct: {} exact, {} wildcard), {text_bytes} bytes of pattern text",
        exact.len(),
        wild.len()
    );
    println!("build from @FILE text: {build_ms:.1} ms (median of 7, CPU time)");
    println!(
        "heap held: {:.0} bytes/pattern in all, {:.1} bytes/pattern beyond the pattern text",
        held / PATTERNS as f64,
        (held - text_bytes as f64) / PATTERNS as f64
    );
    println!("matches_name hit: {hit_ns:.0} ns/lookup (median of 7, CPU time)");
    println!("matches_name miss: {miss_ns:.0} ns/lookup (median of 7, CPU time)");
}
