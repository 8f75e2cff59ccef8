//! Heap allocations the core makes per request, counted by a wrapping global allocator.
//!
//! A forward proxy's steady state is a keep-alive client whose requests go out over pooled
//! upstream connections; every allocation there is paid once per request. This test walks
//! that exchange through the public API exactly as a runtime would and pins the count, so a
//! change that adds an allocation to the hot path fails here and has to say why.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringway_core::{Config, Connection, Dialed, Instant, Output};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(|c| c.get())
}

const REQUEST: &[u8] = b"GET http://origin.test:8080/index.html HTTP/1.1\r\n\
Host: origin.test:8080\r\n\
User-Agent: curl/8.0\r\n\
Accept: */*\r\n\
Proxy-Connection: keep-alive\r\n\r\n";

/// What the runtime's (cached) lookup of `origin.test` answers.
const ORIGIN_IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(93, 184, 215, 14));

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx\r\n\
Content-Type: text/html\r\n\
Content-Length: 5\r\n\
Connection: keep-alive\r\n\r\nhello";

/// One keep-alive request over a pooled upstream connection, carried out like a runtime:
/// returns the kinds of output seen, so the test can check the exchange really happened.
fn one_request(conn: &mut Connection, now: Instant) -> Vec<&'static str> {
    let mut seen = Vec::with_capacity(16);
    conn.handle_client_data(now, Bytes::from_static(REQUEST));
    while let Some(out) = conn.poll_output() {
        match out {
            Output::Resolve(_) => {
                seen.push("resolve");
                conn.handle_resolved(now, &[ORIGIN_IP]);
            }
            Output::Connect { attempt, .. } => {
                seen.push("dial");
                conn.handle_dial(now, attempt, Ok(Dialed { reused: true }));
            }
            Output::ToUpstream(bytes) => {
                seen.push("to-upstream");
                drop(bytes);
                conn.handle_upstream_data(now, Bytes::from_static(RESPONSE));
            }
            Output::ToClient(_) => seen.push("to-client"),
            Output::ReleaseUpstream => seen.push("release"),
            Output::Log(record) => {
                seen.push("log");
                assert_eq!(
                    (record.status, record.rx, &record.method[..]),
                    (200, REQUEST.len() as u64, &b"GET"[..])
                );
            }
            other => panic!("unexpected output in a keep-alive exchange: {other:?}"),
        }
    }
    seen
}

/// Allocations of one steady-state request, after a few warm-up requests on the connection.
fn steady_state(config: Config) -> (u64, Vec<&'static str>) {
    let mut now = Instant::from_elapsed(Duration::from_secs(1));
    let mut conn = Connection::new(Arc::new(config), "127.0.0.1:50000".parse().unwrap(), now);
    for _ in 0..3 {
        now = now + Duration::from_millis(1);
        one_request(&mut conn, now);
    }
    let mut seen = Vec::new();
    now = now + Duration::from_millis(1);
    let count = allocations_in(|| seen = one_request(&mut conn, now));
    (count, seen)
}

/// What a steady-state request allocates, one line each (the test's own `Vec` of output
/// kinds is the first):
/// - the test's `Vec`;
/// - the forward head's buffer, and the shared header `BytesMut::freeze` adds to it;
/// - the same two for the response head sent to the client;
/// - the boxed access record (only with `access_records`).
///
/// The authority (host name inline) and the header tables (on the stack) cost nothing.
const WITH_RECORDS: u64 = 6;

#[test]
fn a_pooled_keep_alive_request_allocates_a_fixed_small_number_of_times() {
    let (count, seen) = steady_state(Config::default());
    assert_eq!(
        seen,
        [
            "resolve",
            "dial",
            "to-upstream",
            "to-client",
            "to-client",
            "release",
            "log"
        ]
    );
    println!("allocations per pooled keep-alive request: {count}");
    assert!(
        count <= WITH_RECORDS,
        "{count} allocations > {WITH_RECORDS}"
    );
}

#[test]
fn without_access_records_the_record_is_not_built() {
    let config = Config {
        access_records: false,
        ..Config::default()
    };
    let (count, seen) = steady_state(config);
    assert_eq!(
        seen,
        [
            "resolve",
            "dial",
            "to-upstream",
            "to-client",
            "to-client",
            "release"
        ]
    );
    println!("allocations per pooled keep-alive request without records: {count}");
    assert!(
        count < WITH_RECORDS,
        "{count} allocations >= {WITH_RECORDS}"
    );
}

/// The egress guard runs for every request and every resolved address: its judgements and
/// pattern lookups must not allocate, whatever the host (upper case, trailing dot, deep).
#[test]
fn egress_judgements_allocate_nothing() {
    use ringway_core::egress::EgressPolicy;
    let mut policy = EgressPolicy::default();
    policy.allow_range("127.0.0.0/8".parse().unwrap());
    policy.deny_range("127.0.0.2/32".parse().unwrap());
    policy.add_own_listener("127.0.0.1:3128".parse().unwrap(), true);
    let lines: String = (0..1000)
        .map(|i| {
            format!(
                "*.zone{i}.example\nhost{i}.example\n10.{}.0.0/16\n",
                i % 256
            )
        })
        .collect();
    policy.deny_domains_mut().add_lines(&lines).unwrap();
    policy
        .allow_domains_mut()
        .add_lines("*.example\nexample.org\n8.8.8.0/24\n")
        .unwrap();
    let mut verdicts = Vec::with_capacity(16);
    let count = allocations_in(|| {
        for host in [
            "a.zone7.example",
            "HOST9.EXAMPLE.",
            "x.y.z.other.example",
            "example.org",
            "example.com",
        ] {
            verdicts.push(policy.judge_name(host));
        }
        for addr in [
            "127.0.0.1:80",
            "127.0.0.2:80",
            "127.0.0.1:3128",
            "[::ffff:10.3.0.1]:443",
            "8.8.8.8:443",
        ] {
            let addr = addr.parse().unwrap();
            verdicts.push(policy.judge_ip_target(addr));
            verdicts.push(policy.judge_addr(addr));
        }
    });
    assert_eq!(verdicts.len(), 15, "every judgement ran");
    assert!(verdicts.iter().any(Result::is_ok) && verdicts.iter().any(Result::is_err));
    assert_eq!(count, 0, "egress judgements allocated {count} times");
}
