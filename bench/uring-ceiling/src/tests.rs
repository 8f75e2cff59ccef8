//! The relays end to end on loopback: exact bytes both ways, keep-alive untouched, the
//! `Connection: close` edits, the upstream pool (counted at a fake origin), and the splice
//! tunnel (both directions at once, ends passed on, loopback targets only).

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::{uring, Settings};

const BODY: &[u8] = b"hello, relay";

/// The body of `/big`: 4 MiB that no two offsets of a shifted copy would match.
fn big_body() -> Vec<u8> {
    (0..4u32 << 20)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// A keep-alive HTTP/1.1 origin: answers every request head with `BODY`, counts the
/// connections it accepted and keeps every request head it saw.
struct Origin {
    addr: SocketAddrV4,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

fn origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = match listener.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("not IPv4: {other}"),
    };
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (accepted.clone(), heads.clone());
    thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let head = String::from_utf8(head).unwrap();
                        let close = head.contains("\r\nConnection: close\r\n");
                        let body = if head.starts_with("GET http://origin/big ") {
                            big_body()
                        } else {
                            BODY.to_vec()
                        };
                        seen.lock().unwrap().push(head);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
                            body.len(),
                            if close { "close" } else { "keep-alive" }
                        );
                        conn.write_all(answer.as_bytes()).unwrap();
                        conn.write_all(&body).unwrap();
                        if close {
                            return;
                        }
                    }
                }
            });
        }
    });
    Origin {
        addr,
        accepted,
        heads,
    }
}

/// Starts a relay in `mode` towards `upstream` on a thread of its own; returns its address.
fn relay(mode: &'static str, upstream: SocketAddrV4) -> SocketAddrV4 {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = SocketAddrV4::new([127, 0, 0, 1].into(), port);
    let settings = Settings {
        listen,
        upstream,
        buf_size: 4096,
        bufs: 8,
        taskrun: uring::Taskrun::Defer,
    };
    thread::spawn(move || match mode {
        "uring" => crate::uring::run(&settings).unwrap(),
        "splice" => crate::splice::run(&settings).unwrap(),
        _ => crate::epoll::run(&settings).unwrap(),
    });
    for _ in 0..200 {
        if TcpStream::connect(listen).is_ok() {
            return listen;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("relay did not listen on {listen}");
}

/// Reads one response (head + `Content-Length` body) and returns it whole.
fn response(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).unwrap(),
            1,
            "closed inside a head: {got:?}"
        );
        got.push(byte[0]);
    }
    let mut body = vec![0u8; BODY.len()];
    conn.read_exact(&mut body).unwrap();
    got.extend_from_slice(&body);
    String::from_utf8(got).unwrap()
}

fn request(close: bool) -> String {
    format!(
        "GET http://origin/1k HTTP/1.1\r\nHost: origin\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
}

fn conversation(mode: &'static str) {
    let origin = origin();
    let addr = relay(mode, origin.addr);
    let keep = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\nhello, relay",
        BODY.len()
    );

    // keep-alive: three exchanges on one connection, bytes untouched both ways
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..3 {
        client.write_all(request(false).as_bytes()).unwrap();
        assert_eq!(response(&mut client), keep);
    }
    assert_eq!(
        origin.heads.lock().unwrap().as_slice(),
        vec![request(false); 3].as_slice()
    );
    drop(client);
    // the keep-alive client's and relay()'s probe connection's upstream connections
    let before = origin.accepted.load(Ordering::SeqCst);
    assert_eq!(before, 2);

    // Connection: close, twice: renamed on the way up, marked close on the way down, the
    // client connection ends after the response, and the second reuses the pooled upstream
    let close = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection:      close\r\n\r\nhello, relay",
        BODY.len()
    );
    for _ in 0..2 {
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(request(true).as_bytes()).unwrap();
        assert_eq!(response(&mut client), close);
        let mut rest = [0u8; 1];
        assert_eq!(
            client.read(&mut rest).unwrap(),
            0,
            "the relay must close after the response"
        );
    }
    let renamed = request(true).replace("Connection: close", "Xonnection: close");
    assert_eq!(
        origin.heads.lock().unwrap()[3..],
        [renamed.clone(), renamed]
    );
    // one new upstream connection for both Connection: close clients: pooled after the first
    assert_eq!(origin.accepted.load(Ordering::SeqCst), before + 1);
}

/// 4 MiB through 8 provided buffers of 4 KiB (uring: the ring runs dry and receives are
/// re-armed) to a client that reads nothing for a while (sends come up short): every byte
/// arrives, in order.
fn bulk(mode: &'static str) {
    let origin = origin();
    let addr = relay(mode, origin.addr);
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET http://origin/big HTTP/1.1\r\nHost: origin\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(300)); // let the socket buffers fill
    let want = big_body();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        want.len()
    );
    let mut got = vec![0u8; head.len() + want.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got[..head.len()], head.as_bytes());
    assert!(got[head.len()..] == want[..], "the body arrived changed");
}

#[test]
fn uring_relays_bulk_in_order() {
    bulk("uring");
}

#[test]
fn epoll_relays_bulk_in_order() {
    bulk("epoll");
}

#[test]
fn uring_relays_and_pools() {
    conversation("uring");
}

#[test]
fn epoll_relays_and_pools() {
    conversation("epoll");
}

/// A loopback target that echoes every byte back until the client's end of stream.
fn echo_target() -> SocketAddrV4 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = match listener.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("not IPv4: {other}"),
    };
    thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            thread::spawn(move || {
                let mut back = conn.try_clone().unwrap();
                std::io::copy(&mut conn, &mut back).unwrap();
                back.shutdown(std::net::Shutdown::Write).unwrap();
            });
        }
    });
    addr
}

#[test]
fn splice_tunnels_to_loopback_only() {
    let target = echo_target();
    let addr = relay("splice", target);
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = [0u8; 39];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 Connection established\r\n\r\n");
    // 4 MiB up while reading the echo down: both directions at once, then the end passed on
    let want = big_body();
    let mut writer = client.try_clone().unwrap();
    let up = want.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&up).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    assert!(
        got == want,
        "the echo came back changed ({} of {} bytes)",
        got.len(),
        want.len()
    );

    // not a loopback address literal: refused before any dial. A name, so that even a broken
    // guard could not send a byte off the machine (the non-loopback literals are proven in
    // `splice_refuses_every_target_but_a_loopback_literal`, without a socket).
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(b"CONNECT origin.invalid:443 HTTP/1.1\r\nHost: origin.invalid:443\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(
        got,
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}
