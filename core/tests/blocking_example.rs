//! Runs a real request and a real CONNECT through `examples/blocking_proxy.rs`, which drives
//! the core over blocking `std::net` sockets: the proof that other runtimes can embed it.
#![cfg(not(target_os = "wasi"))]

#[path = "../examples/blocking_proxy.rs"]
mod blocking_proxy;

mod example_support;
use example_support::{connect, read_n};

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ringway_core::Config;

fn start_proxy() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = example_support::for_loopback(Config::default());
    thread::spawn(move || blocking_proxy::serve(listener, Arc::new(config)));
    addr
}

#[test]
fn plain_get_through_the_blocking_proxy() {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    let seen = thread::spawn(move || {
        let (mut s, _) = origin.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).unwrap(), 1, "origin got EOF inside the head");
            head.push(b[0]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let proxy = start_proxy();
    let mut c = connect(proxy);
    write!(
        c,
        "GET http://{origin_addr}/x HTTP/1.1\r\nHost: {origin_addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let want = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_eq!(
        String::from_utf8(read_n(&mut c, want.len() + 1)).unwrap(),
        want
    );
    assert_eq!(
        seen.join().unwrap(),
        format!("GET /x HTTP/1.1\r\nHost: {origin_addr}\r\nVia: 1.1 ringway\r\n\r\n")
    );
}

#[test]
fn connect_tunnel_through_the_blocking_proxy() {
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
    let proxy = start_proxy();
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
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_n(&mut c, 1),
        b"",
        "half-close travelled both ways, then EOF"
    );
}
