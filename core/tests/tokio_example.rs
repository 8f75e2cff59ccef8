//! Runs real requests, a real CONNECT and a real timeout through `examples/tokio_proxy.rs`,
//! which drives the core over `tokio::net`: the proof that an async runtime embeds it as the
//! crate docs say. Clients and servers here are plain blocking sockets on loopback, so what is
//! under test is only the example and the core.
#![cfg(not(target_family = "wasm"))]

#[path = "../examples/tokio_proxy.rs"]
mod tokio_proxy;

mod example_support;
use example_support::{connect, read_head, read_n};

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ringway_core::{Config, Problem};

/// The example's configuration, opened up for loopback: the one place to change when the
/// policy refuses more of what these tests do on loopback.
fn test_config() -> Config {
    example_support::for_loopback(tokio_proxy::config())
}

/// Starts the example on a runtime of its own, on a random loopback port.
fn start_proxy(config: Config) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tokio_proxy::serve(listener, Arc::new(config)).await
        })
    });
    addr
}

#[test]
fn keep_alive_gets_by_address_and_by_name_one_upstream_each() {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    // Two exchanges, two upstream connections: each answered, then closed by the proxy.
    let seen = thread::spawn(move || {
        let mut heads = Vec::new();
        for body in ["hello", "world!"] {
            let (mut s, _) = origin.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            heads.push(read_head(&mut s));
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            assert_eq!(
                s.read(&mut [0u8; 1]).unwrap(),
                0,
                "upstream closed after use"
            );
        }
        heads
    });
    let proxy = start_proxy(test_config());
    let mut c = connect(proxy);
    write!(
        c,
        "GET http://{origin_addr}/a HTTP/1.1\r\nHost: {origin_addr}\r\n\r\n"
    )
    .unwrap();
    let first = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_eq!(
        String::from_utf8(read_n(&mut c, first.len())).unwrap(),
        first
    );
    // The same client connection, kept alive; this time by name (Resolve -> lookup_host ->
    // Connect to the approved 127.0.0.1), and the client asks to close.
    let by_name = format!("localhost:{}", origin_addr.port());
    write!(
        c,
        "GET http://{by_name}/b HTTP/1.1\r\nHost: {by_name}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let second = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nworld!";
    assert_eq!(
        String::from_utf8(read_n(&mut c, second.len() + 1)).unwrap(),
        second,
        "the second response, then EOF"
    );
    assert_eq!(
        seen.join().unwrap(),
        [
            format!("GET /a HTTP/1.1\r\nHost: {origin_addr}\r\nVia: 1.1 ringway\r\n\r\n"),
            format!("GET /b HTTP/1.1\r\nHost: {by_name}\r\nVia: 1.1 ringway\r\n\r\n"),
        ]
    );
}

#[test]
fn connect_tunnel_through_the_tokio_proxy_with_half_close() {
    // An echo server that answers EOF with its own EOF.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return s.shutdown(Shutdown::Write).unwrap(),
                n => s.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    let proxy = start_proxy(test_config());
    let mut c = connect(proxy);
    // The first payload bytes ride in the same write as the CONNECT head.
    write!(
        c,
        "CONNECT {echo_addr} HTTP/1.1\r\nHost: {echo_addr}\r\n\r\nping"
    )
    .unwrap();
    let established = b"HTTP/1.1 200 Connection Established\r\n\r\n";
    assert_eq!(
        read_n(&mut c, established.len() + 4),
        [&established[..], b"ping"].concat()
    );
    c.write_all(b" pong").unwrap();
    assert_eq!(read_n(&mut c, 5), b" pong");
    // Half-close: our EOF reaches the echo server, whose EOF comes back; nothing else does.
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_n(&mut c, 1),
        b"",
        "half-close travelled both ways, then EOF"
    );
}

#[test]
fn upstream_half_close_leaves_the_client_direction_open() {
    // A server that answers, shuts its write side first, and then still reads to EOF.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    let received = thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(read_n(&mut s, 5), b"hello");
        s.write_all(b"bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_n(&mut s, usize::MAX)
    });
    let proxy = start_proxy(test_config());
    let mut c = connect(proxy);
    write!(
        c,
        "CONNECT {server_addr} HTTP/1.1\r\nHost: {server_addr}\r\n\r\nhello"
    )
    .unwrap();
    let established = b"HTTP/1.1 200 Connection Established\r\n\r\n";
    // The server's EOF reaches us (the proxy shut its write side towards us) ...
    assert_eq!(
        read_n(&mut c, usize::MAX),
        [&established[..], b"bye"].concat()
    );
    // ... while our direction still flows, until we end it too.
    c.write_all(b", and more").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(received.join().unwrap(), b", and more");
}

#[test]
fn slow_head_times_out_through_sleep_until() {
    let mut config = test_config();
    config.header_timeout = Duration::from_millis(200);
    let proxy = start_proxy(config);
    let mut c = connect(proxy);
    // Half a head, then silence: only the core's deadline can end this.
    c.write_all(b"GET http://127.0.0.1:9/ HTTP/1.1\r\n")
        .unwrap();
    let want = Problem::HeaderTimeout.response(false);
    assert!(want.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
    assert_eq!(
        read_n(&mut c, want.len() + 1),
        want,
        "the canned 408, then EOF"
    );
}
