//! Request heads parsed and routed per second, for a typical ~500-byte browser request head.
//!
//! `cargo bench -p ringway-core` prints three figures: the parser + router + rewrite alone,
//! the whole connection machine taking the head from bytes to a `Resolve` output, and a whole
//! keep-alive exchange over a pooled upstream (request head in, forward head out, response
//! head and body back, release, access record) — the proxy's steady state. No benchmark
//! framework: a fixed number of iterations timed with `std::time::Instant`, median of 7 runs.
//! `RINGWAY_BENCH_ITERATIONS=N` changes the count (small values for `valgrind --tool=callgrind`,
//! whose instruction counts do not depend on machine noise).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::{Bytes, BytesMut};
use ringway_core::route::{decide, Decision};
use ringway_core::{request, Config, Connection, Dialed, Instant, Output, Policy};

const HEAD: &[u8] = b"GET http://www.example.com/articles/2026/11/some-long-article-slug?utm_source=newsletter&ref=home HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate\r\n\
Referer: http://www.example.com/\r\n\
Cookie: session=4f2a9c1e7b; theme=dark; consent=yes\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Proxy-Connection: keep-alive\r\n\
Priority: u=0, i\r\n\r\n";

fn median_rate(iterations: u32, mut run: impl FnMut()) -> f64 {
    let mut rates: Vec<f64> = (0..7)
        .map(|_| {
            let start = StdInstant::now();
            for _ in 0..iterations {
                run();
            }
            f64::from(iterations) / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rates[3]
}

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx\r\n\
Date: Fri, 27 Nov 2026 07:00:00 GMT\r\n\
Content-Type: text/html\r\n\
Content-Length: 5\r\n\
Last-Modified: Thu, 26 Nov 2026 10:00:00 GMT\r\n\
Connection: keep-alive\r\n\
ETag: \"6745a1b0-5\"\r\n\
Accept-Ranges: bytes\r\n\r\nhello";

/// What the runtime's (cached) lookup of www.example.com answers.
const ORIGIN_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(93, 184, 215, 14));

/// One request on a keep-alive client connection served by a pooled upstream connection,
/// carried out the way a runtime would.
#[inline(never)]
fn keep_alive_exchange(conn: &mut Connection, now: Instant, head: &Bytes, response: &Bytes) {
    conn.handle_client_data(now, head.clone());
    while let Some(out) = conn.poll_output() {
        match out {
            Output::Resolve(_) => conn.handle_resolved(now, &[ORIGIN_IP]),
            Output::Connect { attempt, .. } => {
                conn.handle_dial(now, attempt, Ok(Dialed { reused: true }))
            }
            Output::ToUpstream(bytes) => {
                black_box(bytes);
                conn.handle_upstream_data(now, response.clone());
            }
            Output::Close { .. } => panic!("keep-alive exchange closed"),
            other => {
                black_box(other);
            }
        }
    }
}

fn main() {
    let iterations: u32 = std::env::var("RINGWAY_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let policy = Policy::default();
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut out = BytesMut::with_capacity(1024);
    let parse_route = median_rate(iterations, || {
        let mut slots = request::header_slots_for_bench();
        let req = request::parse(black_box(HEAD), &mut slots, 100, "ringway").unwrap();
        if let Decision::Forward(target) = decide(&req, client, &policy) {
            out.clear();
            req.write_forward_head(&target, "ringway", &mut out);
        }
        black_box(&out);
    });

    let config = Arc::new(Config::default());
    let head = Bytes::from_static(HEAD);
    let peer = "127.0.0.1:50000".parse().unwrap();
    let machine = median_rate(iterations, || {
        let now = Instant::from_elapsed(Duration::from_secs(1));
        let mut conn = Connection::new(config.clone(), peer, now);
        conn.handle_client_data(now, head.clone());
        let dial = conn.poll_output();
        assert!(matches!(dial, Some(Output::Resolve(_))));
        black_box(dial);
    });
    let response = Bytes::from_static(RESPONSE);
    let start = Instant::from_elapsed(Duration::from_secs(1));
    let mut conn = Connection::new(config.clone(), peer, start);
    let mut tick = 0u64;
    let exchange = median_rate(iterations, || {
        tick += 1;
        let now = start + Duration::from_micros(tick);
        keep_alive_exchange(&mut conn, now, &head, &response);
    });
    println!("head bytes: {}", HEAD.len());
    println!(
        "parse+route+rewrite: {:.0} heads/s ({:.0} ns/head)",
        parse_route,
        1e9 / parse_route
    );
    println!(
        "connection machine to Resolve: {:.0} heads/s ({:.0} ns/head)",
        machine,
        1e9 / machine
    );
    println!(
        "keep-alive exchange over a pooled upstream: {:.0} exchanges/s ({:.0} ns/exchange)",
        exchange,
        1e9 / exchange
    );
}
