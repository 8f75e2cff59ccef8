//! Inside an intercepted tunnel (issue 12, item 4) with a Rust TLS client and a Rust TLS
//! origin (rustls, blocking sockets), so every byte on both legs is known: a WebSocket
//! upgrade switches to a plaintext relay between the two TLS sessions (exact 101 head,
//! bytes echoed both ways, close_notify half-closes, the inner 101 line's byte counts); an
//! origin that closes after each response is dialed again for the next request; the inner
//! connection's header timeout answers a client stalled mid-head; and a SIGHUP that changes
//! `intercept` in the `--config` file decides whether the next tunnel is intercepted.
//! Through the HTTPS listener (`--tls-listen`) too: the WebSocket exchange with the client's
//! TLS inside its session with the listener, and curl (`-x https://`) keeping one connection
//! for three requests while the proxy re-dials an origin that closes after each.

use ringway_e2e::tls_pki::{self, listener_leaf, origin_and_proxy_pki};
use ringway_e2e::tls_proxy::{https_listener, proxy_with_ca, tls_listen_args};
use ringway_e2e::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const RUN: Duration = Duration::from_secs(20);
/// Every socket read in these tests gives up after this (bounded, never hung).
const READ_LIMIT: Duration = Duration::from_secs(10);

fn scratch(name: &str) -> PathBuf {
    tls_pki::scratch("tls-inside", name)
}

/// The proxy's provider (ring; deprecated in rustls 0.23.48 for lacking post-quantum key
/// exchange, which these tests do not need).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
}

/// How the test origin answers.
#[derive(Clone, Copy)]
enum Mode {
    /// `101 Switching Protocols`, then echoes every byte until the client's close_notify,
    /// then closes with its own.
    Upgrade,
    /// `200` with `Connection: close` and a body naming the connection's number, then
    /// close_notify and close.
    CloseEach,
    /// As `CloseEach` but without announcing it (no `Connection: close`): the proxy keeps
    /// the connection for the next request and learns only from the close itself.
    CloseSilently,
    /// Accepts and holds the TCP connection (no TLS) until the peer closes it.
    Hold,
}

/// The exact head the test origin answers an upgrade with.
const ORIGIN_101: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// A TLS origin on loopback serving `conns` connections (then its thread ends); each
/// connection's request head goes to `heads`.
struct Origin {
    port: u16,
    accepted: Arc<AtomicUsize>,
    heads: mpsc::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

fn read_head<S: Read>(s: &mut S) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("head cut short ({other:?}): {}", show(&head)),
        }
        assert!(head.len() < 64 * 1024, "head too long");
    }
    head
}

impl Origin {
    fn start(dir: &Path, mode: Mode, conns: usize) -> Origin {
        let chain = certs(&dir.join("leaf.pem"));
        let key = PrivateKeyDer::from_pem_file(dir.join("leaf-key.pem")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, heads) = mpsc::channel();
        let counter = Arc::clone(&accepted);
        let thread = std::thread::spawn(move || {
            for n in 1..=conns {
                let Ok((tcp, _)) = listener.accept() else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tcp.set_read_timeout(Some(READ_LIMIT)).unwrap();
                if let Mode::Hold = mode {
                    let mut tcp = tcp;
                    let mut rest = [0u8; 1024];
                    while matches!(tcp.read(&mut rest), Ok(k) if k > 0) {}
                    continue;
                }
                let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let head = read_head(&mut tls);
                let _ = tx.send(head);
                match mode {
                    Mode::Upgrade => {
                        tls.write_all(ORIGIN_101.as_bytes()).unwrap();
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            match tls.read(&mut buf) {
                                Ok(0) => break,
                                Ok(k) => tls.write_all(&buf[..k]).unwrap(),
                                Err(e) => panic!("origin read: {e}"),
                            }
                        }
                    }
                    Mode::Hold => {}
                    Mode::CloseEach | Mode::CloseSilently => {
                        let body = format!("connection {n}\n");
                        let close = match mode {
                            Mode::CloseEach => "Connection: close\r\n",
                            _ => "",
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close}\r\n{body}",
                            body.len()
                        );
                        tls.write_all(answer.as_bytes()).unwrap();
                    }
                }
                tls.conn.send_close_notify();
                let _ = tls.flush();
                let _ = tls.sock.shutdown(std::net::Shutdown::Write);
                // Wait for the peer's end, so nothing we sent is lost to a reset.
                let mut rest = [0u8; 1024];
                while matches!(tls.sock.read(&mut rest), Ok(k) if k > 0) {}
            }
        });
        Origin {
            port,
            accepted,
            heads,
            thread: Some(thread),
        }
    }

    fn head(&self) -> String {
        String::from_utf8(self.heads.recv_timeout(READ_LIMIT).expect("origin head")).unwrap()
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            t.join().expect("origin thread");
        }
    }
}

/// The client's byte stream to the proxy: plain TCP to the plain listener, or a TLS session
/// to the HTTPS listener (`--tls-listen`), inside which the CONNECT and then the client's
/// TLS run.
trait Transport: Read + Write {}
impl<T: Read + Write> Transport for T {}

/// A client inside an intercepted tunnel: CONNECT through `proxy`, then TLS for `host`
/// trusting only `ca`.
struct Client {
    tls: rustls::StreamOwned<rustls::ClientConnection, Box<dyn Transport>>,
    local: SocketAddr,
}

/// A rustls client configuration trusting only `ca`, offering `alpn`.
fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn tls_client(proxy: SocketAddr, port: u16, ca: &Path) -> Client {
    let tcp = TcpStream::connect(proxy).unwrap();
    tcp.set_read_timeout(Some(READ_LIMIT)).unwrap();
    let local = tcp.local_addr().unwrap();
    tunnel(Box::new(tcp), local, port, ca)
}

/// [`tls_client`] through the proxy's HTTPS listener at `listener` (its certificate, for
/// 127.0.0.1, trusted through `listener_ca`): three TLS sessions, the client's inside its
/// session with the listener.
fn tls_client_via_listener(
    listener: SocketAddr,
    listener_ca: &Path,
    port: u16,
    ca: &Path,
) -> Client {
    let tcp = TcpStream::connect(listener).unwrap();
    tcp.set_read_timeout(Some(READ_LIMIT)).unwrap();
    let local = tcp.local_addr().unwrap();
    let name = ServerName::IpAddress(listener.ip().into());
    let conn = rustls::ClientConnection::new(client_config(listener_ca, &[]), name).unwrap();
    tunnel(
        Box::new(rustls::StreamOwned::new(conn, tcp)),
        local,
        port,
        ca,
    )
}

/// CONNECT to localhost:`port` over `transport` (the client's connection from `local`),
/// then the client's TLS for `localhost` trusting only `ca`.
fn tunnel(mut transport: Box<dyn Transport>, local: SocketAddr, port: u16, ca: &Path) -> Client {
    transport
        .write_all(
            format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let head = read_head(&mut transport);
    assert_eq!(
        show(&head),
        show(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    );
    let conn = rustls::ClientConnection::new(
        client_config(ca, &[b"http/1.1"]),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    Client {
        tls: rustls::StreamOwned::new(conn, transport),
        local,
    }
}

impl Client {
    /// One `Content-Length` response: (head, body).
    fn response(&mut self) -> (String, Vec<u8>) {
        let head = String::from_utf8(read_head(&mut self.tls)).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0u8; len];
        self.tls.read_exact(&mut body).unwrap();
        (head, body)
    }

    /// `GET /r{n}` to the test origin: it must arrive there as exactly that request plus
    /// the proxy's `Via`; returns the response.
    fn get_r(&mut self, n: usize, origin: &Origin) -> (String, Vec<u8>) {
        let port = origin.port;
        let request = format!("GET /r{n} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
        self.tls.write_all(request.as_bytes()).unwrap();
        assert_eq!(
            origin.head(),
            format!("GET /r{n} HTTP/1.1\r\nHost: localhost:{port}\r\nVia: 1.1 ringway\r\n\r\n")
        );
        self.response()
    }

    /// Reads until the peer's close_notify (a clean TLS end), returning what came.
    fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        self.tls
            .read_to_end(&mut all)
            .expect("a clean close_notify");
        all
    }
}

struct Rig {
    dir: PathBuf,
}

fn rig(name: &str) -> Rig {
    let dir = scratch(name);
    origin_and_proxy_pki(&dir);
    // The HTTPS listener's certificate, from the proxy's CA (so one file is trusted for both
    // the listener and the minted leaves).
    listener_leaf(&dir.join("proxy"));
    Rig { dir }
}

impl Rig {
    fn path(&self, p: &str) -> String {
        self.dir.join(p).to_str().unwrap().to_string()
    }

    fn proxy(&self, d: Driver, extra: &[&str]) -> Proxy {
        let origin_ca = self.path("origin/ca.pem");
        let mut args = vec!["--upstream-ca", &origin_ca];
        args.extend_from_slice(extra);
        proxy_with_ca(d, &self.dir.join("proxy"), &args)
    }

    fn proxy_ca(&self) -> PathBuf {
        self.dir.join("proxy/ca.pem")
    }

    /// [`Rig::proxy`] intercepting `localhost`, with the HTTPS listener (on 127.0.0.1:0) as
    /// well as the plain one; its address is `addrs[1]`.
    fn proxy_with_tls_listener(&self, d: Driver) -> Proxy {
        let (cert, key) = (
            self.path("proxy/listener.pem"),
            self.path("proxy/listener-key.pem"),
        );
        let mut args = vec!["--intercept", "localhost"];
        args.extend(tls_listen_args(&cert, &key));
        let proxy = self.proxy(d, &args);
        https_listener(&proxy);
        proxy
    }
}

both_drivers!(
    websocket_inside_relays_plaintext_between_the_sessions,
    an_origin_closing_after_each_response_is_dialed_again,
    a_client_stalled_mid_head_inside_gets_the_header_timeout,
    sighup_changes_which_tunnels_are_intercepted,
    shutdown_closes_an_idle_intercepted_connection_at_once,
    through_a_parent_the_origins_close_ends_the_clients_connection,
    websocket_inside_through_the_https_listener,
    curl_through_the_https_listener_to_an_origin_closing_each_time,
);

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost:{PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn websocket_inside_relays_plaintext_between_the_sessions(d: Driver) {
    websocket(d, false);
}

/// The same WebSocket exchange with the client's connection to the proxy itself TLS (the
/// HTTPS listener): three TLS sessions, the relay between the inner two, the same exact
/// heads, echoes and access lines.
fn websocket_inside_through_the_https_listener(d: Driver) {
    websocket(d, true);
}

/// A WebSocket upgrade inside an intercepted tunnel, the client connected to the plain
/// listener or (`through_listener`) to the HTTPS one.
fn websocket(d: Driver, through_listener: bool) {
    let r = rig(&format!("ws-{through_listener}-{}", d.flag()));
    let mut origin = Origin::start(&r.dir.join("origin"), Mode::Upgrade, 1);
    let port = origin.port;
    let (mut proxy, mut c) = if through_listener {
        let proxy = r.proxy_with_tls_listener(d);
        let c = tls_client_via_listener(proxy.addrs[1], &r.proxy_ca(), port, &r.proxy_ca());
        (proxy, c)
    } else {
        let proxy = r.proxy(d, &["--intercept", "localhost"]);
        let c = tls_client(proxy.addr(), port, &r.proxy_ca());
        (proxy, c)
    };
    let request = UPGRADE.replace("{PORT}", &port.to_string());
    c.tls.write_all(request.as_bytes()).unwrap();

    // The origin saw the upgrade with our Via; the client sees its 101 with our Via.
    let want = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: upgrade\r\nVia: 1.1 ringway\r\n\r\n"
    );
    assert_eq!(origin.head(), want);
    let head = String::from_utf8(read_head(&mut c.tls)).unwrap();
    assert_eq!(
        head,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nConnection: upgrade\r\nVia: 1.1 ringway\r\n\r\n"
    );

    // A WebSocket text frame (masked, as a client sends it), then 300 KiB of every byte
    // value: each comes back exactly (the origin echoes).
    let frame: &[u8] = &[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    c.tls.write_all(frame).unwrap();
    let mut echoed = vec![0u8; frame.len()];
    c.tls.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, frame);
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    // One session, one thread: write in pieces and read each echo before the next, so
    // neither side's buffers fill.
    let mut got = Vec::with_capacity(big.len());
    for piece in big.chunks(16 * 1024) {
        c.tls.write_all(piece).unwrap();
        let mut part = vec![0u8; piece.len()];
        c.tls.read_exact(&mut part).unwrap();
        got.extend_from_slice(&part);
    }
    assert!(got == big, "300 KiB echoed exactly");

    // The client's close_notify ends its direction; the origin answers with its own, which
    // reaches the client as a clean end.
    c.tls.conn.send_close_notify();
    c.tls.flush().unwrap();
    let rest = c.read_to_close();
    assert_eq!(rest, b"");
    origin.join();

    // The 101 line counts the request head and the client's payload (RX), the response head
    // and the echoed payload (TX); the outer tunnel's line is separate.
    let sent = (request.len() + frame.len() + big.len()) as u64;
    let received = (head.len() + frame.len() + big.len()) as u64;
    let line = proxy.wait_access(c.local, "GET");
    assert_eq!(
        line.without_duration(),
        format!(
            "{} GET https://localhost:{port}/ws 101 {sent} {received} D intercepted=1",
            c.local
        )
    );
    let connect = proxy.wait_access(c.local, "CONNECT");
    assert_eq!(connect.status, 200);
    assert!(connect.rx > sent && connect.tx > received, "{connect:?}");
}

fn an_origin_closing_after_each_response_is_dialed_again(d: Driver) {
    for mode in [Mode::CloseEach, Mode::CloseSilently] {
        redial(d, mode);
    }
}

fn redial(d: Driver, mode: Mode) {
    let r = rig(&format!("redial-{}", d.flag()));
    let mut origin = Origin::start(&r.dir.join("origin"), mode, 3);
    let mut proxy = r.proxy(d, &["--intercept", "localhost"]);
    let port = origin.port;
    let mut c = tls_client(proxy.addr(), port, &r.proxy_ca());
    for n in 1..=3 {
        let (head, body) = c.get_r(n, &origin);
        assert_eq!(
            head, "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nVia: 1.1 ringway\r\n\r\n",
            "request {n}"
        );
        assert_eq!(body, format!("connection {n}\n").as_bytes());
        let target = format!(" GET https://localhost:{port}/r{n} 200 ");
        let line = proxy.wait_line(RUN, |l| l.contains(&target));
        assert!(line.ends_with(" intercepted=1"), "{line}");
    }
    origin.join();
    assert_eq!(
        origin.accepted.load(Ordering::SeqCst),
        3,
        "three TCP connections"
    );
}

/// curl through the HTTPS listener (`-x https://127.0.0.1:P --proxy-cacert`) fetching three
/// URLs of an intercepted origin that answers `Connection: close` each time: curl keeps its
/// one connection (one CONNECT, one TLS session with the listener and one inside it, all
/// three GETs from the same client address), while the proxy dials the origin again for
/// each request (three origin connections).
fn curl_through_the_https_listener_to_an_origin_closing_each_time(d: Driver) {
    let r = rig(&format!("curl-redial-{}", d.flag()));
    let mut origin = Origin::start(&r.dir.join("origin"), Mode::CloseEach, 3);
    let mut proxy = r.proxy_with_tls_listener(d);
    let port = origin.port;
    let ca = r.path("proxy/ca.pem");
    let listener = format!("https://{}", proxy.addrs[1]);
    let urls: Vec<String> = (1..=3)
        .map(|n| format!("https://localhost:{port}/r{n}"))
        .collect();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--proxy", &listener])
        .args(["--proxy-cacert", &ca, "--cacert", &ca])
        .args(["-w", "%{http_code} new_connections=%{num_connects}\n"])
        .args(&urls)
        .output()
        .expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "connection 1\n200 new_connections=1\nconnection 2\n200 new_connections=0\nconnection 3\n200 new_connections=0\n"
    );
    for n in 1..=3 {
        assert_eq!(
            origin.head(),
            format!("GET /r{n} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: {}\r\nAccept: */*\r\nVia: 1.1 ringway\r\n\r\n", curl_agent())
        );
    }
    origin.join();
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 3);

    // One tunnel: its CONNECT line comes when curl has closed, after the three GETs, all
    // from the same client address.
    let connect = proxy.wait_line(RUN, |l| l.contains(" CONNECT "));
    let client = AccessLine::parse(&connect).unwrap().client;
    let lines = proxy.lines_so_far(Duration::from_millis(200));
    let gets: Vec<AccessLine> = lines
        .iter()
        .filter_map(|l| AccessLine::parse(l))
        .filter(|a| a.method == "GET")
        .collect();
    assert_eq!(gets.len(), 3, "{lines:#?}");
    for (n, a) in gets.iter().enumerate() {
        assert_eq!(a.client, client, "{a:?}");
        assert_eq!(a.target, urls[n], "{a:?}");
        assert_eq!(
            (a.status, a.extra.as_slice()),
            (200, &["intercepted=1".to_string()][..])
        );
    }
    assert_eq!(
        lines.iter().filter(|l| l.contains(" CONNECT ")).count(),
        1,
        "one tunnel: {lines:#?}"
    );
}

/// curl's default `User-Agent` (`curl/VERSION`), as `curl --version` names it.
fn curl_agent() -> String {
    let out = Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1).expect("curl version");
    format!("curl/{version}")
}

fn a_client_stalled_mid_head_inside_gets_the_header_timeout(d: Driver) {
    let r = rig(&format!("stall-{}", d.flag()));
    // An origin that is never asked anything (the head never completes).
    let origin = Origin::start(&r.dir.join("origin"), Mode::Hold, 1);
    let mut proxy = r.proxy(
        d,
        &[
            "--intercept",
            "localhost",
            "--header-timeout",
            "1s",
            "--tunnel-idle-timeout",
            "60s",
        ],
    );
    let port = origin.port;
    let mut c = tls_client(proxy.addr(), port, &r.proxy_ca());
    let started = std::time::Instant::now();
    c.tls
        .write_all(format!("GET /slow HTTP/1.1\r\nHost: localhost:{port}\r\n").as_bytes())
        .unwrap();
    let (head, _) = c.response();
    let waited = started.elapsed();
    assert!(
        head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    let line = proxy.wait_access(c.local, "GET");
    assert_eq!(line.target, format!("https://localhost:{port}/slow"));
    assert_eq!(line.status, 408);
    assert_eq!(c.read_to_close(), b"");
}

/// Waits until `text` appears `n` times on the proxy's stderr (polled, as `wait_stderr`:
/// stderr comes with no notification), bounded by `RUN`.
fn wait_stderr_times(proxy: &Proxy, text: &str, n: usize) {
    let deadline = std::time::Instant::now() + RUN;
    while proxy.stderr().matches(text).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{text:?} not {n} times on stderr: {}",
            proxy.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One intercepted or tunnelled GET in a new client connection trusting only `ca`: the
/// response head the client got and the request head the origin got.
fn get(proxy: &Proxy, origin: &Origin, ca: &Path, path: &str) -> (String, String, SocketAddr) {
    let port = origin.port;
    let mut c = tls_client(proxy.addr(), port, ca);
    c.tls
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes())
        .unwrap();
    let (head, _) = c.response();
    (head, origin.head(), c.local)
}

fn sighup_changes_which_tunnels_are_intercepted(d: Driver) {
    let r = rig(&format!("hup-{}", d.flag()));
    let mut origin = Origin::start(&r.dir.join("origin"), Mode::CloseEach, 4);
    let port = origin.port;
    let file = r.dir.join("ringway.toml");
    let write = |ca_dir: &str, intercept: &str| {
        std::fs::write(
            &file,
            format!(
                "connect_ports = \"any\"\nca_cert = \"{}\"\nca_key = \"{}\"\nupstream_ca = [\"{}\"]\nintercept = [\"{intercept}\"]\n",
                r.path(&format!("{ca_dir}/ca.pem")),
                r.path(&format!("{ca_dir}/ca-key.pem")),
                r.path("origin/ca.pem"),
            ),
        )
        .unwrap()
    };
    let plain = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n";
    let intercepted = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nVia: 1.1 ringway\r\n\r\n";
    let seen = |path: &str, via: bool| {
        let via = if via { "Via: 1.1 ringway\r\n" } else { "" };
        format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{via}\r\n")
    };
    write("proxy", "other.test");
    let mut proxy = Proxy::start(d, &["--config", file.to_str().unwrap()]);

    // Not intercepted: the client trusts only the origin's CA, and the handshake succeeds;
    // the origin sees no Via.
    let origin_ca = r.dir.join("origin/ca.pem");
    let (head, asked, _) = get(&proxy, &origin, &origin_ca, "/a");
    assert_eq!((head.as_str(), asked), (plain, seen("/a", false)));

    // intercept = localhost, SIGHUP: the next tunnel is intercepted (the client trusts only
    // the proxy's CA now), the origin sees our Via, the line says intercepted=1.
    write("proxy", "localhost");
    proxy.sighup();
    wait_stderr_times(&proxy, "interception setup reloaded", 1);
    let (head, asked, client) = get(&proxy, &origin, &r.proxy_ca(), "/b");
    assert_eq!((head.as_str(), asked), (intercepted, seen("/b", true)));
    let line = proxy.wait_access(client, "GET");
    assert_eq!(line.extra, ["intercepted=1"]);

    // A new CA (other files): leaves from the next mint on are signed by it.
    std::fs::create_dir_all(r.dir.join("proxy2")).unwrap();
    let out = run_ringway(&["ca-init", "--dir", &r.path("proxy2")], RUN);
    assert_eq!(out.status.code(), Some(0));
    write("proxy2", "localhost");
    proxy.sighup();
    wait_stderr_times(&proxy, "interception setup reloaded", 2);
    let (head, asked, _) = get(&proxy, &origin, &r.dir.join("proxy2/ca.pem"), "/c");
    assert_eq!((head.as_str(), asked), (intercepted, seen("/c", true)));

    // A CA key file that does not parse: the reload fails and the running setup stays
    // (still intercepting with the second CA, although the file now says other.test).
    std::fs::write(r.dir.join("proxy2/ca-key.pem"), "not a key\n").unwrap();
    write("proxy2", "other.test");
    proxy.sighup();
    wait_stderr_times(&proxy, "reload failed, keeping the running settings", 1);
    let (head, asked, _) = get(&proxy, &origin, &r.dir.join("proxy2/ca.pem"), "/d");
    assert_eq!((head.as_str(), asked), (intercepted, seen("/d", true)));
    origin.join();
    assert_eq!(
        proxy
            .stderr()
            .matches("interception setup reloaded")
            .count(),
        2
    );
}

fn shutdown_closes_an_idle_intercepted_connection_at_once(d: Driver) {
    let r = rig(&format!("drain-{}", d.flag()));
    let mut origin = Origin::start(&r.dir.join("origin"), Mode::CloseSilently, 1);
    let mut proxy = r.proxy(d, &["--intercept", "localhost", "--shutdown-grace", "60s"]);
    let port = origin.port;
    let mut c = tls_client(proxy.addr(), port, &r.proxy_ca());
    c.tls
        .write_all(format!("GET /x HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes())
        .unwrap();
    let (head, _) = c.response();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    proxy.wait_access(c.local, "GET");
    // Between requests: SIGTERM closes it (close_notify) and the proxy exits well before
    // the 60 s grace period.
    proxy.sigterm();
    assert_eq!(c.read_to_close(), b"");
    let status = proxy
        .wait_exit(READ_LIMIT)
        .expect("exited before the grace period");
    assert!(status.success(), "{status:?}");
    origin.join();
}

/// Through a parent proxy the tunnel's one path to the origin is the parent's CONNECT, so
/// the proxy does not dial the origin again: it mirrors the origin's close instead. An
/// origin answering `Connection: close` → the client's response says so and its connection
/// closes after it; an origin closing its idle keep-alive connection → the client's idle
/// connection is closed (close_notify). Either way the client's next request goes on a new
/// CONNECT, through the parent again, and never meets a 502.
fn through_a_parent_the_origins_close_ends_the_clients_connection(d: Driver) {
    for mode in [Mode::CloseEach, Mode::CloseSilently] {
        parent_close(d, mode);
    }
}

fn parent_close(d: Driver, mode: Mode) {
    let r = rig(&format!("parent-{}", d.flag()));
    let mut origin = Origin::start(&r.dir.join("origin"), mode, 2);
    let mut parent = Proxy::start(d, &["--connect-ports", "any", "--via-name", "parent"]);
    let upstream = format!("http://{}", parent.addr());
    let mut proxy = r.proxy(
        d,
        &["--intercept", "localhost", "--upstream-proxy", &upstream],
    );
    let port = origin.port;
    let close = match mode {
        Mode::CloseEach => "Connection: close\r\n",
        _ => "",
    };
    for n in 1..=2 {
        let mut c = tls_client(proxy.addr(), port, &r.proxy_ca());
        let (head, body) = c.get_r(n, &origin);
        assert_eq!(
            head,
            format!("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n{close}Via: 1.1 ringway\r\n\r\n"),
            "request {n}"
        );
        assert_eq!(body, format!("connection {n}\n").as_bytes());
        // The origin's side ended: the client's does too, cleanly, with nothing more sent.
        assert_eq!(c.read_to_close(), b"", "request {n}");
        let target = format!(" GET https://localhost:{port}/r{n} 200 ");
        let line = proxy.wait_line(RUN, |l| l.contains(&target));
        assert!(line.ends_with(" intercepted=1"), "{line}");
    }
    origin.join();
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2);
    // One CONNECT through the parent per client connection.
    for n in 1..=2 {
        let line = parent.wait_line(RUN, |l| l.contains(" CONNECT localhost:"));
        assert!(line.contains(" 200 "), "CONNECT {n}: {line}");
    }
}
