//! The HTTPS proxy listener (`--tls-listen`, issue 12 item 6) end to end with curl
//! (`-x https://... --proxy-cacert`): plain HTTP forwarding to a local origin, CONNECT to a
//! local TLS origin (TLS inside TLS), interception through it (three TLS sessions), Basic
//! proxy authentication over it, the access log, the plain listener alongside, a request to
//! the listener's own address refused as a loop, a silent or stalled client closed by the
//! header deadline, certificate rotation on SIGHUP, and the flag errors (exit 2).
//!
//! The PKI: one CA (`ringway ca-init`) signs a leaf for `localhost` and 127.0.0.1 (openssl);
//! the leaf serves both the proxy listener and the TLS origin, and the CA also intercepts.

use ringway_e2e::tls_origin::{PythonTlsOrigin, ECHO_HANDLER_PY};
use ringway_e2e::tls_pki::{self, ca_init, sign_leaf};
use ringway_e2e::tls_proxy::{
    assert_intercepted_then_connect, curl_through, spawn_for_banner, tls_listen_args,
};
use ringway_e2e::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(20);

fn scratch(name: &str) -> PathBuf {
    tls_pki::scratch("tls-listen", name)
}

/// A CA (`ringway ca-init`) in `dir` and a P-256 leaf signed by it for `localhost` and
/// 127.0.0.1: `dir/ca.pem`, `dir/ca-key.pem`, `dir/leaf.pem`, `dir/leaf-key.pem`.
fn pki(dir: &Path) {
    ca_init(dir);
    sign_leaf(dir, "leaf", "DNS:localhost,IP:127.0.0.1");
}

/// An origin on loopback answering with [`ECHO_HANDLER_PY`]: plain, or TLS with the leaf.
type Origin = PythonTlsOrigin;

struct Rig {
    dir: PathBuf,
    plain: Origin,
    tls: Origin,
}

fn rig(name: &str) -> Rig {
    let dir = scratch(name);
    pki(&dir);
    let plain = Origin::plain(ECHO_HANDLER_PY);
    let tls = Origin::start(ECHO_HANDLER_PY, &dir);
    Rig { dir, plain, tls }
}

impl Rig {
    fn path(&self, p: &str) -> String {
        self.dir.join(p).to_str().unwrap().to_string()
    }

    /// A proxy with the HTTPS listener (on 127.0.0.1:0) as well as the plain one.
    fn proxy(&self, d: Driver, extra: &[&str]) -> Proxy {
        let (cert, key) = (self.path("leaf.pem"), self.path("leaf-key.pem"));
        let mut args = vec!["--connect-ports", "any"];
        args.extend(tls_listen_args(&cert, &key));
        args.extend_from_slice(extra);
        let proxy = Proxy::start(d, &args);
        // The plain listener first, then the TLS ones as https://ADDR.
        assert!(proxy.addrs.len() >= 2, "{}", proxy.banner);
        for a in &proxy.addrs[1..] {
            assert!(
                proxy.banner.contains(&format!("https://{a}")),
                "{}",
                proxy.banner
            );
        }
        proxy
    }

    /// [`Rig::proxy`] intercepting the hosts matching `pattern` with the one CA, which also
    /// signed the origin's leaf and so is the upstream CA too.
    fn intercepting(&self, d: Driver, pattern: &str) -> Proxy {
        let (ca, ca_key) = (self.path("ca.pem"), self.path("ca-key.pem"));
        self.proxy(
            d,
            &[
                "--intercept",
                pattern,
                "--ca-cert",
                &ca,
                "--ca-key",
                &ca_key,
                "--upstream-ca",
                &ca,
            ],
        )
    }
}

/// The HTTPS listener's address.
fn tls_addr(proxy: &Proxy) -> SocketAddr {
    proxy.addrs[1]
}

/// `curl -sS -i` through `proxy_url`, trusting `ca` for the proxy and the origins, with
/// `extra` arguments; (exit code, stdout and stderr).
fn curl(proxy_url: &str, ca: &str, extra: &[&str], urls: &[String]) -> (Option<i32>, String) {
    let mut args = vec!["--proxy-cacert", ca, "--cacert", ca];
    args.extend_from_slice(extra);
    curl_through(proxy_url, &args, urls)
}

both_drivers!(
    plain_http_connect_and_the_access_log,
    interception_through_the_tls_listener,
    proxy_authentication_over_tls,
    own_address_is_a_loop,
    silent_and_stalled_clients_are_closed_at_the_header_deadline,
    certificate_rotation_on_sighup,
    large_bodies_both_ways_forwarded_and_tunnelled,
    shutdown_closes_an_idle_tls_client,
    intercept_passthrough_relays_through_the_client_session,
);

/// With `--intercept '*'`, a tunnel whose first bytes are not TLS is passed through: from a
/// TLS client its bytes are relayed through the client's session (curl `-p` sends plain
/// HTTP inside the CONNECT), and the tunnel's line says `reason=not_tls`.
fn intercept_passthrough_relays_through_the_client_session(d: Driver) {
    let r = rig(&format!("passthrough-{}", d.flag()));
    let ca = r.path("ca.pem");
    let mut proxy = r.intercepting(d, "*");
    let https = format!("https://{}", tls_addr(&proxy));
    let urls: Vec<String> = (0..2)
        .map(|i| format!("http://127.0.0.1:{}/p{i}", r.plain.port))
        .collect();
    let (code, out) = curl(&https, &ca, &["-p"], &urls);
    assert_eq!(code, Some(0), "{out}");
    for i in 0..2 {
        assert!(out.contains(&format!("path=/p{i}\n")), "{out}");
    }
    assert!(
        !out.contains("Via: 1.1 ringway"),
        "tunnelled, not forwarded: {out}"
    );
    let line = proxy.wait_line(RUN, |l| l.contains(" CONNECT "));
    assert!(
        line.contains(&format!(" CONNECT 127.0.0.1:{} 200 ", r.plain.port)),
        "{line}"
    );
    assert!(line.ends_with(" reason=not_tls"), "{line}");
}

/// 32 MiB down and up, forwarded (http://) and tunnelled (https:// in TLS in TLS): every byte
/// arrives (the downloads are checked byte for byte against the origin's pattern), in
/// bounded memory.
fn large_bodies_both_ways_forwarded_and_tunnelled(d: Driver) {
    const N: usize = 32 << 20;
    let r = rig(&format!("large-{}", d.flag()));
    let mut proxy = r.proxy(d, &[]);
    let https = format!("https://{}", tls_addr(&proxy));
    let ca = r.path("ca.pem");
    let upload = r.dir.join("upload");
    std::fs::write(&upload, vec![b'u'; N]).unwrap();
    let pattern: Vec<u8> = (0..N).map(|i| i as u8).collect();
    let before = proxy.rss_kib();
    for base in [
        format!("http://127.0.0.1:{}", r.plain.port),
        format!("https://localhost:{}", r.tls.port),
    ] {
        let down = r.dir.join("down");
        let (code, out) = curl(
            &https,
            &ca,
            &["-o", down.to_str().unwrap()],
            &[format!("{base}/big/{N}")],
        );
        assert_eq!(code, Some(0), "{out}");
        let file = std::fs::read(&down).unwrap();
        // `-i`: the response head (after the CONNECT's, for https://) comes first.
        let head_at = find(&file, b"HTTP/1.1 200 OK\r\n").expect("a 200 head");
        let body_at = head_at + find(&file[head_at..], b"\r\n\r\n").expect("a head") + 4;
        let got = &file[body_at..];
        assert_eq!(got.len(), N, "{base}");
        assert!(got == pattern, "{base}: the bytes differ");
        let (code, out) = curl(
            &https,
            &ca,
            &["-T", upload.to_str().unwrap()],
            &[format!("{base}/up")],
        );
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(&format!("received={N}\n")), "{base}: {out}");
    }
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB for 4 x 32 MiB");
    // Both tunnels were logged, the download's with at least its N bytes towards the client.
    proxy.wait_line(RUN, |l| l.contains(" CONNECT "));
    let tunnels: Vec<AccessLine> = proxy
        .lines_so_far(Duration::from_millis(300))
        .iter()
        .filter(|l| l.contains(" CONNECT "))
        .filter_map(|l| AccessLine::parse(l))
        .collect();
    assert_eq!(tunnels.len(), 2, "{tunnels:#?}");
    assert!(tunnels.iter().all(|t| t.status == 200), "{tunnels:#?}");
    assert!(tunnels[0].tx >= N as u64, "{tunnels:#?}");
    assert!(tunnels[1].rx >= N as u64, "{tunnels:#?}");
}

/// SIGTERM: an idle keep-alive client of the TLS listener is closed (close_notify, FIN) and
/// the proxy exits 0 without waiting out the grace period.
fn shutdown_closes_an_idle_tls_client(d: Driver) {
    let r = rig(&format!("shutdown-{}", d.flag()));
    let mut proxy = r.proxy(d, &["--shutdown-grace", "30s"]);
    // openssl s_client as a keep-alive client: one request, then idle.
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-CAfile"])
        .arg(r.dir.join("ca.pem"))
        .args(["-connect", &tls_addr(&proxy).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let request = format!(
        "GET http://127.0.0.1:{}/idle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        r.plain.port
    );
    client
        .stdin
        .as_mut()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    proxy.wait_line(RUN, |l| l.contains(" GET "));
    let started = Instant::now();
    proxy.sigterm();
    let status = proxy.wait_exit(RUN).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // The client got its response and then the end of the session.
    let mut out = String::new();
    client
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = client.kill();
    let _ = client.wait();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("path=/idle\n"), "{out}");
}

/// (a) http:// forwarded with the exact body, (b) https:// through CONNECT (TLS inside TLS),
/// one access line each; the plain listener works alongside.
fn plain_http_connect_and_the_access_log(d: Driver) {
    let r = rig(&format!("basic-{}", d.flag()));
    let mut proxy = r.proxy(d, &[]);
    let https = format!("https://{}", tls_addr(&proxy));
    let ca = r.path("ca.pem");
    let url = format!("http://127.0.0.1:{}/plain", r.plain.port);
    let (code, out) = curl(&https, &ca, &[], &[url.clone(), url.clone()]);
    assert_eq!(code, Some(0), "{out}");
    let response = out.split("HTTP/1.1 200 OK\r\n").nth(1).expect(&out);
    let (head, body) = response.split_once("\r\n\r\n").expect(&out);
    let body = body.split("HTTP/1.1").next().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect(head)
        .parse()
        .unwrap();
    assert_eq!(body.len(), length, "{out}");
    assert!(body.starts_with("path=/plain\n"), "{out}");
    assert!(body.contains("Via: 1.1 ringway\n"), "{out}");
    assert_eq!(
        out.matches("HTTP/1.1 200 OK").count(),
        2,
        "keep-alive: {out}"
    );
    proxy.wait_line(RUN, |l| l.contains(" GET "));
    let lines: Vec<String> = proxy
        .lines_so_far(Duration::from_millis(300))
        .into_iter()
        .filter(|l| l.contains(" GET "))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for line in &lines {
        assert!(line.contains(&format!(" GET {url} 200 ")), "{line}");
    }

    let url = format!("https://localhost:{}/tunnelled", r.tls.port);
    let (code, out) = curl(&https, &ca, &[], &[url]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("path=/tunnelled\n"), "{out}");
    assert!(
        !out.contains("Via: 1.1 ringway\n"),
        "a tunnel, not forwarded: {out}"
    );
    let line = proxy.wait_line(RUN, |l| l.contains(" CONNECT "));
    assert!(
        line.contains(&format!(" CONNECT localhost:{} 200 ", r.tls.port)),
        "{line}"
    );

    // The plain listener still speaks plain HTTP.
    let (code, out) = curl(
        &proxy.url(),
        &ca,
        &[],
        &[format!("http://127.0.0.1:{}/side", r.plain.port)],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("path=/side\n"), "{out}");
}

/// (c) `--intercept` behind the HTTPS listener: the client's TLS to the proxy, the client's
/// TLS to the minted leaf inside it, the proxy's TLS to the origin.
fn interception_through_the_tls_listener(d: Driver) {
    let r = rig(&format!("intercept-{}", d.flag()));
    let ca = r.path("ca.pem");
    let mut proxy = r.intercepting(d, "localhost");
    let https = format!("https://{}", tls_addr(&proxy));
    let urls: Vec<String> = (0..3)
        .map(|i| format!("https://localhost:{}/i{i}", r.tls.port))
        .collect();
    let (code, out) = curl(&https, &ca, &[], &urls);
    assert_eq!(code, Some(0), "{out}");
    for i in 0..3 {
        assert!(out.contains(&format!("path=/i{i}\n")), "{out}");
    }
    assert_eq!(
        out.matches("Via: 1.1 ringway\n").count(),
        3,
        "decrypted and forwarded: {out}"
    );
    // One line per request inside, then the tunnel's (written when curl hung up).
    let paths: Vec<String> = (0..3).map(|i| format!("/i{i}")).collect();
    assert_intercepted_then_connect(&mut proxy, r.tls.port, &paths);
}

/// (d) With `--auth-file`, credentials sent over the TLS listener are accepted; none get 407.
fn proxy_authentication_over_tls(d: Driver) {
    let r = rig(&format!("auth-{}", d.flag()));
    let users = r.dir.join("users");
    std::fs::write(&users, "alice:s3cret\n").unwrap();
    let proxy = r.proxy(d, &["--auth-file", users.to_str().unwrap()]);
    let https = format!("https://{}", tls_addr(&proxy));
    let ca = r.path("ca.pem");
    let url = format!("http://127.0.0.1:{}/auth", r.plain.port);
    let (code, out) = curl(
        &https,
        &ca,
        &["--proxy-user", "alice:s3cret"],
        std::slice::from_ref(&url),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("path=/auth\n"), "{out}");
    assert!(
        !out.contains("Proxy-Authorization"),
        "credentials are not forwarded: {out}"
    );
    let (code, out) = curl(&https, &ca, &[], std::slice::from_ref(&url));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
        "{out}"
    );
    let (_, out) = curl(&https, &ca, &["--proxy-user", "alice:wrong"], &[url]);
    assert!(
        out.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
        "{out}"
    );
}

/// (g) A request for an HTTPS listener's own address is a loop: 508, whichever listener it
/// comes through.
fn own_address_is_a_loop(d: Driver) {
    let r = rig(&format!("loop-{}", d.flag()));
    // Two TLS listeners (the flag repeats like --listen), two threads.
    let proxy = r.proxy(d, &["--tls-listen", "127.0.0.1:0", "--threads", "2"]);
    assert_eq!(proxy.addrs.len(), 3, "{}", proxy.banner);
    assert_ne!(proxy.addrs[1], proxy.addrs[2]);
    let ca = r.path("ca.pem");
    let proxies = [
        proxy.url(),
        format!("https://{}", proxy.addrs[1]),
        format!("https://{}", proxy.addrs[2]),
    ];
    for via in &proxies {
        for own in &proxy.addrs[1..] {
            let (code, out) = curl(via, &ca, &[], &[format!("http://{own}/")]);
            assert_eq!(code, Some(0), "{out}");
            assert!(
                out.starts_with("HTTP/1.1 508 Loop Detected\r\n"),
                "via {via} to {own}: {out}"
            );
        }
        // Each listener serves, on either thread.
        for _ in 0..4 {
            let url = format!("http://127.0.0.1:{}/ok", r.plain.port);
            let (code, out) = curl(via, &ca, &[], &[url]);
            assert_eq!(code, Some(0), "{out}");
            assert!(out.contains("path=/ok\n"), "via {via}: {out}");
        }
    }
}

/// Reads until EOF or a reset; returns when. Panics if the proxy sends bytes or the read
/// times out (the 10 s bound).
fn wait_closed(mut s: TcpStream) -> Instant {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected bytes {:?}", &buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}"),
    }
    Instant::now()
}

/// (f) A client that connects and says nothing, and one that stalls in the middle of its
/// ClientHello, are closed once `--header-timeout` passes, with nothing sent; one that
/// speaks plain HTTP gets no answer in clear and is counted in
/// `ringway_client_tls_errors_total` (the timeouts are not TLS errors).
fn silent_and_stalled_clients_are_closed_at_the_header_deadline(d: Driver) {
    let r = rig(&format!("silent-{}", d.flag()));
    let proxy = r.proxy(
        d,
        &["--header-timeout", "1s", "--metrics-listen", "127.0.0.1:0"],
    );
    let start = Instant::now();
    let silent = TcpStream::connect(tls_addr(&proxy)).unwrap();
    let mut stalled = TcpStream::connect(tls_addr(&proxy)).unwrap();
    // A handshake record header announcing 512 bytes, then 3 of them.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .unwrap();
    for s in [silent, stalled] {
        let took = wait_closed(s) - start;
        // The deadline counts from the accept, a moment after `start`.
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(9),
            "{took:?}"
        );
    }
    // The listener still serves.
    let (code, out) = curl(
        &format!("https://{}", tls_addr(&proxy)),
        &r.path("ca.pem"),
        &[],
        &[format!("http://127.0.0.1:{}/after", r.plain.port)],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("path=/after\n"), "{out}");
    // A client speaking plain HTTP to the TLS listener gets no answer in clear.
    let mut clear = TcpStream::connect(tls_addr(&proxy)).unwrap();
    clear
        .write_all(format!("GET http://127.0.0.1:{}/ HTTP/1.1\r\n\r\n", r.plain.port).as_bytes())
        .unwrap();
    clear
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = clear.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
        "{got:?}"
    );
    let metrics = proxy.metrics_addr(RUN);
    let mut m = TcpStream::connect(metrics).unwrap();
    m.set_read_timeout(Some(RUN)).unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        .unwrap();
    let mut scrape = String::new();
    m.read_to_string(&mut scrape).unwrap();
    assert!(
        scrape
            .lines()
            .any(|l| l == "ringway_client_tls_errors_total 1"),
        "{scrape}"
    );
}

/// SIGHUP reads `--tls-cert`/`--tls-key` again: new handshakes get the new certificate;
/// files that do not load keep the running one.
fn certificate_rotation_on_sighup(d: Driver) {
    let r = rig(&format!("rotate-{}", d.flag()));
    // The running pair is a copy the test can overwrite.
    let (cert, key) = (r.dir.join("run.pem"), r.dir.join("run-key.pem"));
    std::fs::copy(r.dir.join("leaf.pem"), &cert).unwrap();
    std::fs::copy(r.dir.join("leaf-key.pem"), &key).unwrap();
    let proxy = Proxy::start(
        d,
        &tls_listen_args(cert.to_str().unwrap(), key.to_str().unwrap()),
    );
    // A second PKI, with a CA of its own.
    let other = r.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    pki(&other);
    let https = format!("https://{}", tls_addr(&proxy));
    let url = vec![format!("http://127.0.0.1:{}/r", r.plain.port)];
    let old_ca = r.path("ca.pem");
    let new_ca = other.join("ca.pem").to_str().unwrap().to_string();
    assert_eq!(curl(&https, &old_ca, &[], &url).0, Some(0));
    assert_eq!(curl(&https, &new_ca, &[], &url).0, Some(60), "not yet");

    // A key that does not match: the running pair stays.
    std::fs::copy(other.join("leaf.pem"), &cert).unwrap();
    proxy.sighup();
    proxy.wait_stderr(
        "ringway: SIGHUP: keeping the running --tls-cert: --tls-key does not match --tls-cert\n",
        RUN,
    );
    assert_eq!(curl(&https, &old_ca, &[], &url).0, Some(0));

    std::fs::copy(other.join("leaf-key.pem"), &key).unwrap();
    proxy.sighup();
    proxy.wait_stderr("reloaded; new TLS clients get it", RUN);
    let (code, out) = curl(&https, &new_ca, &[], &url);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("path=/r\n"), "{out}");
    assert_eq!(
        curl(&https, &old_ca, &[], &url).0,
        Some(60),
        "the old one is gone"
    );
}

/// `--tls-key-log` without `--intercept` logs the HTTPS listener's sessions (NSS format, a
/// file of mode 0600), so its traffic can be read in Wireshark when debugging.
#[test]
fn key_log_of_tls_listen_clients() {
    use std::os::unix::fs::PermissionsExt;
    let r = rig("keylog");
    let log = r.dir.join("keys.log");
    let proxy = r.proxy(Driver::Epoll, &["--tls-key-log", log.to_str().unwrap()]);
    proxy.wait_stderr("writing TLS key log (secrets of --tls-listen clients)", RUN);
    let (code, out) = curl(
        &format!("https://{}", tls_addr(&proxy)),
        &r.path("ca.pem"),
        &[],
        &[format!("http://127.0.0.1:{}/k", r.plain.port)],
    );
    assert_eq!(code, Some(0), "{out}");
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&log).unwrap();
    let labels: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    for want in ["CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"] {
        assert!(labels.contains(&want), "{text}");
    }
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 3, "{line}");
        assert_eq!(f[1].len(), 64, "client random: {line}");
        assert!(
            f[1..]
                .iter()
                .all(|h| h.bytes().all(|b| b.is_ascii_hexdigit())),
            "{line}"
        );
    }
}

/// `--tls-listen` alone: the HTTPS listener is the only one (no plain default listener).
#[test]
fn tls_listen_alone_listens_in_clear_nowhere() {
    let r = rig("alone");
    let (cert, key) = (r.path("leaf.pem"), r.path("leaf-key.pem"));
    let (mut child, banner) = spawn_for_banner(
        Command::new(ringway_bin())
            .args(["--threads", "1", "--allow-range", "127.0.0.0/8"])
            .args(tls_listen_args(&cert, &key)),
    );
    let listed = banner
        .strip_prefix("ringway listening on https://")
        .and_then(|rest| rest.split_once(" ("))
        .map(|(addr, _)| addr.to_string());
    let outcome = listed.as_ref().map(|addr| {
        curl(
            &format!("https://{addr}"),
            &r.path("ca.pem"),
            &[],
            &[format!("http://127.0.0.1:{}/alone", r.plain.port)],
        )
    });
    let _ = child.kill();
    let _ = child.wait();
    let addr = listed.unwrap_or_else(|| panic!("one https:// address only: {banner:?}"));
    assert!(addr.parse::<SocketAddr>().is_ok(), "{banner:?}");
    let (code, out) = outcome.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("path=/alone\n"), "{out}");
}

/// (e) `--tls-listen` needs both files, they need it, and the key must match: exit 2 with
/// the reason.
#[test]
fn tls_listen_flag_errors_exit_2() {
    let dir = scratch("flags");
    pki(&dir);
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (cert, key, ca_key) = (p("leaf.pem"), p("leaf-key.pem"), p("ca-key.pem"));
    for (args, needle) in [
        (
            vec!["--tls-listen", "127.0.0.1:0", "--tls-cert", cert.as_str()],
            "--tls-listen: needs --tls-cert FILE and --tls-key FILE",
        ),
        (
            vec!["--tls-listen", "127.0.0.1:0", "--tls-key", key.as_str()],
            "--tls-listen: needs --tls-cert FILE and --tls-key FILE",
        ),
        (
            vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()],
            "--tls-cert and --tls-key need --tls-listen",
        ),
        (
            vec!["--tls-key-log", "/tmp/never-written"],
            "--tls-key-log: or --tls-listen",
        ),
        (
            vec![
                "--tls-listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert.as_str(),
                "--tls-key",
                ca_key.as_str(),
            ],
            "--tls-key does not match --tls-cert",
        ),
        (
            vec![
                "--tls-listen",
                "127.0.0.1:0",
                "--tls-cert",
                "/nonexistent",
                "--tls-key",
                key.as_str(),
            ],
            "--tls-cert /nonexistent: ",
        ),
        (
            vec![
                "--tls-listen",
                "127.0.0.1:0",
                "--tls-cert",
                key.as_str(),
                "--tls-key",
                key.as_str(),
            ],
            "no PEM CERTIFICATE block",
        ),
    ] {
        let out = run_ringway(&args, RUN);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}
