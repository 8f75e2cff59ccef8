//! CONNECT tunnels: the exact 200 head, payload both ways, half-close in each direction,
//! bytes pipelined after the CONNECT head, bulk transfer, TLS through curl, access-log counts.

use ringway_e2e::*;
use std::thread;
use std::time::{Duration, Instant};

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

fn connect_head(target: &str) -> Vec<u8> {
    head(&[
        &format!("CONNECT {target} HTTP/1.1"),
        &format!("Host: {target}"),
    ])
}

/// Opens a tunnel to `target` and checks the exact success head.
fn open_tunnel(p: &Proxy, target: &str) -> Conn {
    let mut c = p.connect();
    c.write(&connect_head(target));
    let got = c.read_exact(ESTABLISHED.len());
    assert_bytes(&got, ESTABLISHED, "CONNECT answer");
    c
}

/// Deterministic payload of `n` bytes.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

both_drivers!(
    client_half_close,
    upstream_half_close,
    pipelined_payload_after_connect_head,
    bulk_both_ways,
    tls_through_curl,
    ipv6_tunnel,
    tunnel_idle_timeout,
    client_eof_while_dialing_reaches_upstream,
    upstream_reset_closes_client,
);

/// Client shuts down writing first: the echo server sees EOF, sends what is left, closes;
/// the client reads everything, then EOF.
fn client_half_close(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let mut p = Proxy::start(d, &["--connect-ports", "any"]);
    let target = echo.addr.to_string();
    let mut c = open_tunnel(&p, &target);
    c.write(b"ping");
    assert_eq!(c.read_exact(4), b"ping");
    c.write(b"last words");
    c.shutdown_write();
    let log = echo.wait(WAIT, "EOF at the echo server", |l| {
        l.eof.first() == Some(&true)
    });
    assert_eq!(log.received[0], b"pinglast words");
    let rest = c.read_to_eof();
    assert_bytes(&rest, b"last words", "bytes after the client's FIN");
    let line = p.wait_access(c.local_addr(), "CONNECT");
    assert_eq!(
        (line.target.as_str(), line.status, line.rx, line.tx),
        (target.as_str(), 200, 14, 14),
        "{line:?}"
    );
}

/// Upstream shuts down writing first: the client reads the greeting then EOF, and can
/// still send; the upstream receives it and then EOF.
fn upstream_half_close(d: Driver) {
    let sink = EchoServer::start(EchoMode::GreetThenSink(b"greetings".to_vec()));
    let p = Proxy::start(d, &["--connect-ports", "any"]);
    let mut c = open_tunnel(&p, &sink.addr.to_string());
    let got = c.read_to_eof();
    assert_bytes(&got, b"greetings", "upstream bytes then EOF");
    c.write(b"still talking");
    c.shutdown_write();
    let log = sink.wait(WAIT, "EOF at the sink", |l| l.eof.first() == Some(&true));
    assert_eq!(log.received[0], b"still talking");
}

/// Bytes sent in the same write as the CONNECT head are tunnel payload.
fn pipelined_payload_after_connect_head(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let p = Proxy::start(d, &["--connect-ports", "any"]);
    let mut c = p.connect();
    const EARLY: &[u8] = b"\x16\x03\x01early-hello";
    let mut bytes = connect_head(&echo.addr.to_string());
    bytes.extend_from_slice(EARLY);
    c.write(&bytes);
    let got = c.read_exact(ESTABLISHED.len() + EARLY.len());
    let mut want = ESTABLISHED.to_vec();
    want.extend_from_slice(EARLY);
    assert_bytes(&got, &want, "CONNECT answer then echoed early bytes");
    c.shutdown_write();
    c.expect_eof();
    assert_eq!(echo.log().received[0], EARLY);
}

/// 8 MiB each way at once, counted and compared; the access log counts payload only.
fn bulk_both_ways(d: Driver) {
    const N: usize = 8 << 20;
    let echo = EchoServer::start(EchoMode::Echo);
    let mut p = Proxy::start(d, &["--connect-ports", "any"]);
    let target = echo.addr.to_string();
    let mut c = open_tunnel(&p, &target);
    let mut w = c.stream.try_clone().unwrap();
    let data = pattern(N, 0x5a);
    let sent = data.clone();
    let writer = thread::spawn(move || {
        use std::io::Write;
        w.write_all(&sent).expect("write payload");
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let got = c.read_to_eof();
    writer.join().unwrap();
    assert_eq!(got.len(), N, "echoed byte count");
    assert!(got == data, "echoed bytes differ");
    let line = p.wait_access(c.local_addr(), "CONNECT");
    assert_eq!(
        (line.status, line.rx, line.tx),
        (200, N as u64, N as u64),
        "{line:?}"
    );
}

/// HTTPS through the tunnel with curl against openssl s_server; --connect-ports lists the port.
fn tls_through_curl(d: Driver) {
    let tls = TlsOrigin::start();
    let port = tls.port.to_string();
    let mut p = Proxy::start(d, &["--connect-ports", &format!("443,{port}")]);
    let out = curl(&[
        "-k",
        "-i",
        "-x",
        &p.url(),
        &format!("https://127.0.0.1:{port}/"),
    ]);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // curl -i prints the proxy's CONNECT answer, then the origin's. The s_server page after
    // its status line describes the TLS session, which differs from run to run.
    let (tunnel_head, rest) = split_message(&out.stdout);
    assert_bytes(
        tunnel_head,
        ESTABLISHED,
        "the CONNECT answer as curl got it",
    );
    let (origin_head, page) = split_message(rest);
    assert_bytes(
        origin_head,
        b"HTTP/1.0 200 ok\r\nContent-type: text/html\r\n\r\n",
        "s_server's head through the tunnel",
    );
    assert!(
        find(page, b"s_server").is_some(),
        "not the s_server page: {}",
        show(page)
    );
    // TLS record sizes vary with the session, so RX and TX are known only to be non-zero.
    let target = format!("127.0.0.1:{port}");
    let line = p.wait_line(WAIT, |l| {
        AccessLine::parse(l).is_some_and(|a| a.method == "CONNECT" && a.target == target)
    });
    let line = AccessLine::parse(&line).unwrap();
    assert_eq!((line.status, line.extra.len()), (200, 0), "{line:?}");
    assert!(line.rx > 0 && line.tx > 0, "{line:?}");
}

/// CONNECT to an IPv6 literal through an IPv6 listener.
fn ipv6_tunnel(d: Driver) {
    if !ipv6_available() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let echo = EchoServer::start_on("[::1]:0", EchoMode::Echo);
    let mut p = Proxy::start(d, &["--listen", "[::1]:0", "--connect-ports", "any"]);
    let target = echo.addr.to_string();
    assert!(target.starts_with("[::1]:"));
    let mut c = open_tunnel(&p, &target);
    c.write(b"six");
    c.shutdown_write();
    assert_bytes(&c.read_to_eof(), b"six", "echo over IPv6");
    let line = p.wait_access(c.local_addr(), "CONNECT");
    assert_eq!(
        (line.target.as_str(), line.status, line.rx, line.tx),
        (target.as_str(), 200, 3, 3),
        "{line:?}"
    );
}

/// --tunnel-idle-timeout closes a silent tunnel on both sides.
fn tunnel_idle_timeout(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let p = Proxy::start(
        d,
        &["--connect-ports", "any", "--tunnel-idle-timeout", "1s"],
    );
    let mut c = open_tunnel(&p, &echo.addr.to_string());
    c.write(b"ping");
    assert_eq!(c.read_exact(4), b"ping");
    let t = Instant::now();
    c.set_read_timeout(Duration::from_secs(5));
    c.expect_eof();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "idle tunnel closed after {took:?}, expected about 1 s"
    );
    echo.wait(WAIT, "the upstream side closed too", |l| {
        l.eof.first() == Some(&true)
    });
}

/// The client sends CONNECT, payload and its FIN while the dial is still in progress
/// (the target's accept queue is full, so the proxy's SYN is dropped and retried ~1 s
/// later). Once the tunnel starts, the upstream must get the payload and then EOF — not
/// wait for the tunnel idle timeout (fuzz finding F1, seen end to end).
fn client_eof_while_dialing_reaches_upstream(d: Driver) {
    let hole = BlackHole::start();
    let target = hole.addr.to_string();
    let p = Proxy::start(d, &["--connect-ports", "any"]);
    let before = listen_overflows();
    let mut c = p.connect();
    let mut bytes = connect_head(&target);
    bytes.extend_from_slice(b"early");
    c.write(&bytes);
    c.shutdown_write();
    // Wait (bounded) until a SYN was dropped at a full accept queue: the dial is stalled.
    let deadline = Instant::now() + Duration::from_secs(3);
    while listen_overflows() == before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let (listener, fillers) = hole.into_listener();
    listener.set_nonblocking(false).unwrap();
    let upstream = thread::spawn(move || {
        // Accept the queued fillers (already closed) until the proxy's connection arrives.
        for _ in 0..10 {
            let (mut s, peer) = listener.accept().expect("accept");
            if fillers.contains(&peer) {
                continue;
            }
            s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
            let mut got = Vec::new();
            use std::io::Read;
            let r = s.read_to_end(&mut got);
            use std::io::Write;
            let _ = s.write_all(&got);
            let _ = s.shutdown(std::net::Shutdown::Write);
            return (got, r.map(|_| ()).map_err(|e| e.kind()));
        }
        panic!("the proxy's connection never arrived");
    });
    let (got, eof) = upstream.join().unwrap();
    let all = c.read_to_eof();
    let mut want = ESTABLISHED.to_vec();
    want.extend_from_slice(b"early");
    assert_eq!(
        eof,
        Ok(()),
        "upstream got {} but no EOF within 8 s: the client's FIN was lost",
        show(&got)
    );
    assert_bytes(&got, b"early", "payload at the upstream");
    assert_bytes(&all, &want, "client: 200, echoed payload, EOF");
}

/// The upstream resets the tunnel's connection: the client's side is closed promptly (not
/// left open until the tunnel idle timeout), and the tunnel is logged.
fn upstream_reset_closes_client(d: Driver) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut c = Conn::new(s);
        let got = c.read_exact(5);
        reset(c.stream);
        got
    });
    let mut p = Proxy::start(d, &["--connect-ports", "any"]);
    let mut c = open_tunnel(&p, &target);
    c.write(b"hello");
    assert_eq!(server.join().unwrap(), b"hello");
    let t = Instant::now();
    c.set_read_timeout(Duration::from_secs(5));
    let rest = c.read_to_eof();
    assert!(
        rest.is_empty(),
        "bytes after the upstream reset: {}",
        show(&rest)
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "client closed {:?} after the upstream reset",
        t.elapsed()
    );
    let line = p.wait_access(c.local_addr(), "CONNECT");
    assert_eq!((line.status, line.rx, line.tx), (200, 5, 0), "{line:?}");
}
