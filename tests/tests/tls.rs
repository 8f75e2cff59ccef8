//! TLS interception (issue 12) end to end with real clients: `ringway ca-init` (files, modes,
//! the refusal to overwrite, what it prints), then curl through an intercepting proxy to a
//! local TLS origin (Python's ssl) whose CA the test makes and passes with `--upstream-ca`:
//! keep-alive inside, the origin sees our `Via`, the client sees a leaf from our CA, an
//! untrusted origin is a 502 with `Proxy-Status: ringway; error=tls_certificate_error`, a
//! host that matches no pattern is tunnelled untouched, and bad flags exit 2.

use ringway_e2e::tls_origin::{PythonTlsOrigin, ECHO_HANDLER_PY};
use ringway_e2e::tls_pki::{self, origin_and_proxy_pki};
use ringway_e2e::tls_proxy::{
    assert_intercepted_then_connect, curl_through, proxy_with_ca, spawn_for_banner,
};
use ringway_e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const RUN: Duration = Duration::from_secs(20);

fn scratch(name: &str) -> PathBuf {
    tls_pki::scratch("tls", name)
}

#[test]
fn ca_init_writes_a_private_key_and_refuses_to_overwrite() {
    let dir = scratch("ca-init");
    let d = dir.to_str().unwrap();
    let out = run_ringway(&["ca-init", "--dir", d], RUN);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = dir.join("ca-key.pem");
    let cert = dir.join("ca.pem");
    // Both created 0600 (the certificate is the operator's to publish).
    for file in [&key, &cert] {
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600,
            "{file:?}"
        );
    }
    let cert_text = std::fs::read_to_string(&cert).unwrap();
    assert!(cert_text.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(
        stdout.starts_with("Created Ringway interception CA ("),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("certificate: {d}/ca.pem (mode 0600)")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("private key: {d}/ca-key.pem (mode 0600)")));
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "the key itself is never printed"
    );

    // Again: refused (exit 2, one line), files untouched.
    let again = run_ringway(&["ca-init", "--dir", d], RUN);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), cert_text);
    // --force replaces it.
    let forced = run_ringway(&["ca-init", "--dir", d, "--force"], RUN);
    assert_eq!(forced.status.code(), Some(0));
    assert_ne!(std::fs::read_to_string(&cert).unwrap(), cert_text);
    // No directory: exit 2.
    let none = run_ringway(&["ca-init"], RUN);
    assert_eq!(none.status.code(), Some(2));
}

/// `curl -sS -i` through `proxy`, trusting only `cacert`, for each URL; (exit code, output).
fn curl(proxy: &Proxy, cacert: &Path, urls: &[String]) -> (Option<i32>, String) {
    curl_through(&proxy.url(), &["--cacert", cacert.to_str().unwrap()], urls)
}

struct Rig {
    dir: PathBuf,
    origin: PythonTlsOrigin,
}

fn rig(name: &str) -> Rig {
    let dir = scratch(name);
    origin_and_proxy_pki(&dir);
    let origin = PythonTlsOrigin::start(ECHO_HANDLER_PY, &dir.join("origin"));
    Rig { dir, origin }
}

impl Rig {
    fn path(&self, p: &str) -> String {
        self.dir.join(p).to_str().unwrap().to_string()
    }

    fn proxy(&self, d: Driver, extra: &[&str]) -> Proxy {
        proxy_with_ca(d, &self.dir.join("proxy"), extra)
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.origin.port)
    }
}

both_drivers!(
    curl_through_interception_keep_alive_via_and_log,
    interception_through_a_parent_proxy,
    untrusted_origin_is_a_502_with_its_proxy_status,
    a_host_matching_no_pattern_is_tunnelled_untouched,
    passthrough_and_client_abort_are_logged_with_their_reason,
    insecure_upstream_warns_and_marks_every_line,
    a_large_download_and_upload_pass_in_bounded_memory,
);

fn curl_through_interception_keep_alive_via_and_log(d: Driver) {
    let r = rig(&format!("intercept-{}", d.flag()));
    let origin_ca = r.path("origin/ca.pem");
    let mut proxy = r.proxy(
        d,
        &["--intercept", "localhost", "--upstream-ca", &origin_ca],
    );
    // curl trusts only the proxy's CA: the handshake succeeding proves it saw our leaf.
    let urls: Vec<String> = (0..20).map(|i| r.url(&format!("/r{i}"))).collect();
    let (code, out) = curl(&proxy, Path::new(&r.path("proxy/ca.pem")), &urls);
    assert_eq!(code, Some(0), "{out}");
    for i in 0..20 {
        assert!(out.contains(&format!("path=/r{i}\n")), "{out}");
    }
    assert_eq!(out.matches("Via: 1.1 ringway\n").count(), 20, "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 20, "{out}");
    // One access line per request inside, then the tunnel's line (written when curl hung up).
    let paths: Vec<String> = (0..20).map(|i| format!("/r{i}")).collect();
    let connect = assert_intercepted_then_connect(&mut proxy, r.origin.port, &paths);
    assert!(!connect.contains("intercepted"), "{connect}");
}

/// Intercepted HTTPS reaches its origin through the parent the same way (issue 11): the
/// intercepting proxy sends `CONNECT` to the parent (another ringway), and its TLS session to
/// the origin runs inside that tunnel; the requests inside go as origin-form, never a second
/// hop.
fn interception_through_a_parent_proxy(d: Driver) {
    let r = rig(&format!("parent-{}", d.flag()));
    let mut parent = Proxy::start(d, &["--connect-ports", "any", "--via-name", "parent"]);
    let origin_ca = r.path("origin/ca.pem");
    let upstream = format!("http://{}", parent.addr());
    let mut proxy = r.proxy(
        d,
        &[
            "--intercept",
            "localhost",
            "--upstream-ca",
            &origin_ca,
            "--upstream-proxy",
            &upstream,
        ],
    );
    let urls: Vec<String> = (0..2).map(|i| r.url(&format!("/p{i}"))).collect();
    let (code, out) = curl(&proxy, Path::new(&r.path("proxy/ca.pem")), &urls);
    assert_eq!(code, Some(0), "{out}");
    for i in 0..2 {
        assert!(out.contains(&format!("path=/p{i}\n")), "{out}");
    }
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    // The parent carried one tunnel to the origin.
    let line = parent.wait_line(RUN, |l| l.contains(" CONNECT "));
    assert!(
        line.contains(&format!(" CONNECT localhost:{} 200 ", r.origin.port)),
        "{line}"
    );
    // The intercepting proxy logged the requests inside, and the tunnel as via the parent.
    let tunnel = proxy.wait_line(RUN, |l| l.contains(" CONNECT "));
    assert!(tunnel.ends_with(" via=parent"), "{tunnel}");
    let inside: Vec<String> = proxy
        .lines_so_far(Duration::from_millis(200))
        .into_iter()
        .filter(|l| l.contains(" GET "))
        .collect();
    assert_eq!(inside.len(), 2, "{inside:#?}");
    assert!(
        inside.iter().all(|l| l.ends_with(" intercepted=1")),
        "{inside:#?}"
    );
}

fn untrusted_origin_is_a_502_with_its_proxy_status(d: Driver) {
    let r = rig(&format!("untrusted-{}", d.flag()));
    // No --upstream-ca: the origin's CA is unknown to the proxy (the system roots do not
    // have it), so the certificate is refused and the client gets the proxy's answer.
    let mut proxy = r.proxy(d, &["--intercept", "*"]);
    let (code, out) = curl(&proxy, Path::new(&r.path("proxy/ca.pem")), &[r.url("/x")]);
    assert_eq!(code, Some(0), "{out}");
    let answer = out.split_once("\r\n\r\n").map_or("", |(_, a)| a);
    assert_eq!(
        answer.replace("\r\n", "\n"),
        "HTTP/1.1 502 Bad Gateway\nProxy-Status: ringway; error=tls_certificate_error\nContent-Type: text/plain\nContent-Length: 101\nConnection: close\n\nThe upstream server's TLS certificate is not trusted (unknown issuer, expired, or for another name).\n",
        "{out}"
    );
    let line = proxy.wait_line(RUN, |l| l.contains(" GET "));
    assert!(
        line.ends_with(" intercepted=1 reason=tls_certificate_error"),
        "{line}"
    );
}

fn a_host_matching_no_pattern_is_tunnelled_untouched(d: Driver) {
    let r = rig(&format!("untouched-{}", d.flag()));
    let mut proxy = r.proxy(d, &["--intercept", "other.test"]);
    // The client now sees the origin's own certificate.
    let (code, out) = curl(
        &proxy,
        Path::new(&r.path("origin/ca.pem")),
        &[r.url("/plain")],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("path=/plain\n"), "{out}");
    assert!(!out.contains("Via: 1.1 ringway"), "{out}");
    let line = proxy.wait_line(RUN, |l| l.contains(" CONNECT "));
    assert!(!line.contains("intercepted"), "{line}");
    // And the proxy's CA is not accepted for it (nothing was minted).
    let (code, _) = curl(
        &proxy,
        Path::new(&r.path("proxy/ca.pem")),
        &[r.url("/plain")],
    );
    assert_eq!(
        code,
        Some(60),
        "curl: peer certificate cannot be authenticated"
    );
}

#[test]
fn interception_flag_errors_exit_2() {
    let r = rig("flags");
    let (cert, key) = (r.path("proxy/ca.pem"), r.path("proxy/ca-key.pem"));
    let other_key = r.path("origin/ca-key.pem");
    for (args, needle) in [
        (vec!["--intercept", "x.test"], "--ca-cert"),
        (
            vec!["--ca-cert", cert.as_str(), "--ca-key", key.as_str()],
            "need --intercept",
        ),
        (
            vec![
                "--intercept",
                "x.test",
                "--ca-cert",
                cert.as_str(),
                "--ca-key",
                other_key.as_str(),
            ],
            "--ca-key does not match --ca-cert",
        ),
        (
            vec![
                "--intercept",
                "x.test",
                "--ca-cert",
                cert.as_str(),
                "--ca-key",
                key.as_str(),
                "--cert-cache",
                "0",
            ],
            "--cert-cache",
        ),
        (
            vec![
                "--intercept",
                "x.test",
                "--ca-cert",
                cert.as_str(),
                "--ca-key",
                key.as_str(),
                "--upstream-ca",
                "/nonexistent",
            ],
            "--upstream-ca /nonexistent",
        ),
        (
            vec![
                "--intercept",
                "*.",
                "--ca-cert",
                cert.as_str(),
                "--ca-key",
                key.as_str(),
            ],
            "--intercept",
        ),
    ] {
        let out = run_ringway(&args, RUN);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("PRIVATE KEY"), "{err}");
    }
}

/// The system roots come from `SSL_CERT_FILE` when it is set (rustls-native-certs, as for
/// OpenSSL): pointed at the origin's CA, it verifies the origin with no `--upstream-ca`.
/// (Never tested by reaching a public host.)
#[test]
fn ssl_cert_file_is_the_system_trust_store() {
    let r = rig("ssl-cert-file");
    let (cert, key) = (r.path("proxy/ca.pem"), r.path("proxy/ca-key.pem"));
    let (mut child, banner) = spawn_for_banner(
        Command::new(ringway_bin())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--allow-range",
                "127.0.0.0/8",
                "--connect-ports",
                "any",
                "--intercept",
                "localhost",
                "--ca-cert",
                &cert,
                "--ca-key",
                &key,
            ])
            .env("SSL_CERT_FILE", r.path("origin/ca.pem")),
    );
    let driver = if banner.contains("(epoll") {
        Driver::Epoll
    } else {
        Driver::Uring
    };
    let addr = parse_banner(banner.trim_end(), driver).expect("banner")[0];
    let (code, out) = curl_through(
        &format!("http://{addr}"),
        &["--cacert", &r.path("proxy/ca.pem")],
        &[r.url("/trusted")],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("path=/trusted\n"), "{out}");
    assert!(out.contains("Via: 1.1 ringway"), "{out}");
}

fn passthrough_and_client_abort_are_logged_with_their_reason(d: Driver) {
    let r = rig(&format!("reasons-{}", d.flag()));
    let origin_ca = r.path("origin/ca.pem");
    let mut proxy = r.proxy(d, &["--intercept", "*", "--upstream-ca", &origin_ca]);
    // Not TLS: the bytes go to the origin untouched (it is a TLS server and hangs up).
    let mut c = proxy.connect();
    let target = format!("localhost:{}", r.origin.port);
    c.write(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes());
    let head = c.try_read_head().unwrap().unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200 "), "{head:?}");
    c.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    c.shutdown_write();
    let line = proxy.wait_line(RUN, |l| l.contains(" CONNECT "));
    assert!(line.ends_with(" reason=not_tls"), "{line}");
    drop(c);
    // A client that does not trust our CA (a pinned app) aborts its handshake.
    let (code, _) = curl(&proxy, Path::new(&origin_ca), &[r.url("/pinned")]);
    assert_eq!(code, Some(60), "curl refuses the minted certificate");
    let line = proxy.wait_line(RUN, |l| l.contains(" CONNECT ") && !l.ends_with("not_tls"));
    assert!(line.ends_with(" reason=client_tls_abort"), "{line}");
}

fn insecure_upstream_warns_and_marks_every_line(d: Driver) {
    let r = rig(&format!("insecure-{}", d.flag()));
    let mut proxy = r.proxy(d, &["--intercept", "localhost", "--insecure-upstream"]);
    proxy.wait_stderr("WARNING: --insecure-upstream", RUN);
    // No --upstream-ca and the origin's CA is nowhere: accepted anyway.
    let (code, out) = curl(&proxy, Path::new(&r.path("proxy/ca.pem")), &[r.url("/i")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("path=/i\n"), "{out}");
    let line = proxy.wait_line(RUN, |l| l.contains(" GET "));
    assert!(
        line.ends_with(" intercepted=1 reason=insecure_upstream"),
        "{line}"
    );
}

/// 100 MiB from the origin, then 100 MiB to it, through intercepted tunnels: every byte
/// arrives, and the proxy's memory stays bounded (backpressure: a side is read only while the other side's
/// queue is empty).
fn a_large_download_and_upload_pass_in_bounded_memory(d: Driver) {
    const SIZE: u64 = 100 << 20;
    let r = rig(&format!("big-{}", d.flag()));
    let origin_ca = r.path("origin/ca.pem");
    let proxy = r.proxy(
        d,
        &["--intercept", "localhost", "--upstream-ca", &origin_ca],
    );
    let before = proxy.rss_kib();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "120",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{http_code}",
        ])
        .args(["--proxy", &proxy.url(), "--cacert", &r.path("proxy/ca.pem")])
        .arg(r.url(&format!("/big/{SIZE}")))
        .output()
        .expect("curl");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        report,
        format!("{SIZE} 200"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB for a 100 MiB download"
    );

    // And 100 MiB up (a file of zeros, PUT).
    let file = r.dir.join("upload.bin");
    std::fs::File::create(&file).unwrap().set_len(SIZE).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120", "-T"])
        .arg(&file)
        .args(["--proxy", &proxy.url(), "--cacert", &r.path("proxy/ca.pem")])
        .arg(r.url("/upload"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("received={SIZE}\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB after a 100 MiB upload"
    );
}
