//! TLS interception (issue 12) with the clients people actually point at such a proxy: Python
//! `requests` and headless Chromium, through an intercepting proxy to a local TLS origin
//! (Python's `http.server` + `ssl`, its CA made by the test and given with `--upstream-ca`).
//!
//! Each proves three things: the client got the origin's exact answer, the origin saw the
//! proxy's `Via` (so the request was decrypted and re-sent, not tunnelled), and the certificate
//! the client accepted is a leaf minted from the proxy's CA (the client trusts only that CA,
//! and refuses the same connection without it).
//!
//! Chromium also goes through the HTTPS proxy listener (`--proxy-server=https://...`, its
//! certificate from the proxy's CA in the same scratch NSS database): an intercepted
//! `https://` page and a plain `http://` page through that one listener.
//!
//! Test traffic stays on loopback even though Chromium makes background fetches to Google
//! hosts despite `--disable-background-networking`: the proxy runs with `--allow-domain
//! localhost` (plus the harness's loopback `--allow-range`), so every other name is refused
//! before any DNS lookup and every non-loopback address is refused too; the test checks that
//! each such request got `403`. Chromium is told to send even loopback through the proxy
//! (`--proxy-bypass-list=<-loopback>`).
//!
//! Needs `python3` with `requests`, `chromium` and `certutil` (Debian: python3-requests,
//! chromium, libnss3-tools; `.ci/run` installs them). A missing one fails the test, loudly.

use ringway_e2e::tls_origin::PythonTlsOrigin;
use ringway_e2e::tls_pki::{self, listener_leaf, origin_and_proxy_pki};
use ringway_e2e::tls_proxy::{https_listener, proxy_with_ca, tls_listen_args};
use ringway_e2e::*;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(20);
/// Chromium's whole run: start, one page, exit (about 1.5 s here; generous for a loaded CI).
const CHROMIUM_RUN: Duration = Duration::from_secs(90);

/// Trust-store variables the clients must not pick up from the environment (as well as
/// [`PROXY_ENV`]): each test chooses what its client trusts.
const CA_ENV: &[&str] = &[
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

fn scratch(name: &str) -> PathBuf {
    tls_pki::scratch("tls-clients", name)
}

/// The origin's page for every GET: the path and the `Via` it received, in an element a
/// browser keeps in its DOM.
fn page(path: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>origin</title></head><body><p id=\"marker\">ringway-origin path={path} via=1.1 ringway</p></body></html>\n"
    )
}

/// The TLS origin's request handler ([`PythonTlsOrigin`]) answering every GET with [`page`] (naming the `Via` it really got), except `/favicon.ico` (404, empty).
const ORIGIN_PY: &str = r#"
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/favicon.ico":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = ('<!DOCTYPE html><html><head><title>origin</title></head><body><p id="marker">ringway-origin path=%s via=%s</p></body></html>\n'
                % (self.path, self.headers.get("Via", "none"))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
"#;

/// The origin (its CA in `dir/origin`), the proxy's CA in `dir/proxy`.
struct Rig {
    dir: PathBuf,
    origin: PythonTlsOrigin,
}

/// A passing test leaves nothing behind (Chromium's profiles are megabytes); a failing one
/// keeps its directory (PKI, Chromium's stdout and stderr) to look at.
impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Rig {
    fn new(name: &str) -> Rig {
        let dir = scratch(name);
        origin_and_proxy_pki(&dir);
        let origin = PythonTlsOrigin::start(ORIGIN_PY, &dir.join("origin"));
        Rig { dir, origin }
    }

    fn path(&self, p: &str) -> String {
        self.dir.join(p).to_str().unwrap().to_string()
    }

    /// An intercepting proxy that may reach `localhost` and nothing else: `--allow-domain
    /// localhost` refuses every other name before DNS; IP literals need an allowed range,
    /// and the harness allows loopback only.
    fn proxy(&self, d: Driver) -> Proxy {
        self.proxy_with(d, &[])
    }

    /// [`Rig::proxy`] with `extra` arguments after the others.
    fn proxy_with(&self, d: Driver, extra: &[&str]) -> Proxy {
        let origin_ca = self.path("origin/ca.pem");
        let mut args = vec![
            "--allow-domain",
            "localhost",
            "--intercept",
            "localhost",
            "--upstream-ca",
            &origin_ca,
        ];
        args.extend_from_slice(extra);
        proxy_with_ca(d, &self.dir.join("proxy"), &args)
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.origin.port)
    }
}

// ---------------------------------------------------------------------------------------------
// Python requests
// ---------------------------------------------------------------------------------------------

/// One `requests.get(URL, proxies=..., timeout=10)` through PROXY, trust chosen by MODE:
/// `verify` passes `verify=CA`, `env` passes nothing (the test sets `REQUESTS_CA_BUNDLE`),
/// `default` passes nothing with no bundle variable set (the library's own trust store).
/// Prints one JSON object: `{"status", "body"}` or `{"error": class name, "detail"}`.
const REQUESTS_PY: &str = r#"
import json, sys, requests
url, proxy, mode, ca = sys.argv[1:5]
kw = {"proxies": {"http": proxy, "https": proxy}, "timeout": 10}
if mode == "verify":
    kw["verify"] = ca
try:
    r = requests.get(url, **kw)
    print(json.dumps({"status": r.status_code, "body": r.text}))
except requests.exceptions.SSLError as e:
    print(json.dumps({"error": "SSLError", "detail": str(e)}))
"#;

/// A CONNECT through PROXY with Python's own `ssl` (trusting only CA), then the certificate
/// it verified: `{"issuer", "subject", "san"}`, or `{"error": class name, "detail"}`.
const PEER_PY: &str = r#"
import json, socket, ssl, sys
proxy_port, host, port, ca = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", int(proxy_port)), timeout=10)
s.sendall(("CONNECT %s:%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n" % (host, port, host, port)).encode())
head = b""
while not head.endswith(b"\r\n\r\n") and len(head) < 4096:
    b = s.recv(1)
    if not b:
        break
    head += b
assert head.startswith(b"HTTP/1.1 200 "), head
ctx = ssl.create_default_context(cafile=ca)
try:
    t = ctx.wrap_socket(s, server_hostname=host)
except ssl.SSLError as e:
    print(json.dumps({"error": type(e).__name__, "detail": str(e)}))
    sys.exit(0)
c = t.getpeercert()
print(json.dumps({
    "issuer": dict(x[0] for x in c["issuer"]),
    "subject": dict(x[0] for x in c.get("subject", ())),
    "san": c.get("subjectAltName", []),
}))
t.close()
"#;

fn python(script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new("python3");
    for v in PROXY_ENV.iter().chain(CA_ENV) {
        cmd.env_remove(v);
    }
    cmd.args(["-c", script])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .expect("python3 (Debian: python3 and python3-requests)");
    let out = wait_output(child, RUN, "python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3 {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

fn requests_get(proxy: &Proxy, url: &str, mode: &str, ca: &str, env: &[(&str, &str)]) -> Value {
    python(REQUESTS_PY, &[url, &proxy.url(), mode, ca], env)
}

/// The `n`th stdout line (1-based, counting those already seen) matching `pred`.
fn nth_line(proxy: &mut Proxy, n: usize, pred: impl Fn(&str) -> bool) -> String {
    let seen = std::cell::Cell::new(0);
    proxy.wait_line(RUN, |l| {
        if pred(l) {
            seen.set(seen.get() + 1);
        }
        seen.get() == n && pred(l)
    })
}

both_drivers!(
    python_requests_through_interception,
    python_refuses_the_minted_leaf_without_our_ca,
    chromium_through_interception_with_only_the_test_host_reachable,
    chromium_through_the_https_proxy_listener,
);

/// `requests` with `verify=ca.pem`, then with `REQUESTS_CA_BUNDLE=ca.pem`: the origin's exact
/// page, the `Via` it saw, and one intercepted access line per request.
fn python_requests_through_interception(d: Driver) {
    let r = Rig::new(&format!("requests-{}", d.flag()));
    let mut proxy = r.proxy(d);
    let ca = r.path("proxy/ca.pem");

    let got = requests_get(&proxy, &r.url("/py/verify"), "verify", &ca, &[]);
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["body"], page("/py/verify"), "{got}");
    let want = format!(" GET https://localhost:{}/py/verify 200 ", r.origin.port);
    let line = proxy.wait_line(RUN, |l| l.contains(&want));
    assert!(line.ends_with(" intercepted=1"), "{line}");

    let got = requests_get(
        &proxy,
        &r.url("/py/env"),
        "env",
        "",
        &[("REQUESTS_CA_BUNDLE", &ca)],
    );
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["body"], page("/py/env"), "{got}");
    let want = format!(" GET https://localhost:{}/py/env 200 ", r.origin.port);
    let line = proxy.wait_line(RUN, |l| l.contains(&want));
    assert!(line.ends_with(" intercepted=1"), "{line}");
}

/// The leaf Python sees chains to the proxy's CA only: trusting the library's default store,
/// or the origin's own CA, the handshake fails with an SSL error (and the proxy logs the
/// client's abort); trusting ours, Python's `ssl` shows a leaf for `localhost` issued by it.
fn python_refuses_the_minted_leaf_without_our_ca(d: Driver) {
    let r = Rig::new(&format!("refuses-{}", d.flag()));
    let mut proxy = r.proxy(d);

    let got = requests_get(&proxy, &r.url("/py/default"), "default", "", &[]);
    assert_eq!(got["error"], "SSLError", "{got}");
    assert!(
        got["detail"]
            .as_str()
            .unwrap()
            .contains("CERTIFICATE_VERIFY_FAILED"),
        "{got}"
    );
    let line = nth_line(&mut proxy, 1, |l| l.contains(" CONNECT "));
    assert!(line.ends_with(" reason=client_tls_abort"), "{line}");

    let origin_ca = r.path("origin/ca.pem");
    let got = requests_get(&proxy, &r.url("/py/origin-ca"), "verify", &origin_ca, &[]);
    assert_eq!(got["error"], "SSLError", "{got}");
    let line = nth_line(&mut proxy, 2, |l| l.contains(" CONNECT "));
    assert!(line.ends_with(" reason=client_tls_abort"), "{line}");
    // No request was made inside either refused tunnel.
    assert!(
        !proxy
            .lines_so_far(Duration::from_millis(100))
            .iter()
            .any(|l| l.contains(" GET ")),
        "a GET was logged although the client refused the certificate"
    );

    let port = proxy.addr().port().to_string();
    let origin_port = r.origin.port.to_string();
    let peer = |ca: &str| python(PEER_PY, &[&port, "localhost", &origin_port, ca], &[]);
    let refused = peer(&origin_ca);
    assert_eq!(refused["error"], "SSLCertVerificationError", "{refused}");
    let leaf = peer(&r.path("proxy/ca.pem"));
    let issuer = leaf["issuer"]["commonName"].as_str().unwrap_or_default();
    assert!(issuer.starts_with("Ringway interception CA ("), "{leaf}");
    assert_eq!(
        leaf["san"],
        serde_json::json!([["DNS", "localhost"]]),
        "{leaf}"
    );
    // The issuer is the CA the proxy announced at start. (The origin's CA, also from
    // ca-init, may carry the same name: the two verifications above tell them apart.)
    proxy.wait_stderr(&format!("with {issuer}"), RUN);
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium
// ---------------------------------------------------------------------------------------------

/// `certutil ARGS` with `HOME` at the test's scratch home; panics with its stderr on failure.
fn certutil(home: &Path, args: &[&str]) {
    let out = Command::new("certutil")
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("certutil (Debian: libnss3-tools)");
    assert!(
        out.status.success(),
        "certutil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh NSS database (no password) in `home/.pki/nssdb`, where Chromium with `HOME` =
/// `home` looks for its trust settings.
fn nss_db(home: &Path) {
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    certutil(home, &["-d", &nss_dir(home), "-N", "--empty-password"]);
}

/// `sql:HOME/.pki/nssdb`, as `certutil -d` takes it.
fn nss_dir(home: &Path) -> String {
    format!("sql:{}", home.join(".pki/nssdb").display())
}

/// Adds the proxy's CA (`proxy/ca.pem`) to the NSS database of [`nss_db`] as a trusted
/// issuer of server certificates (`C,,`).
fn trust_proxy_ca(r: &Rig, home: &Path) {
    let (db, ca) = (nss_dir(home), r.path("proxy/ca.pem"));
    certutil(
        home,
        &["-d", &db, "-A", "-n", "ringway", "-t", "C,,", "-i", &ca],
    );
}

/// Headless Chromium (`HOME` = `home`, so its NSS database is `home/.pki/nssdb`; a fresh
/// profile `profile`) loading `url` through the proxy `proxy_server` (`http://ADDR` or
/// `https://ADDR`) and dumping the DOM: (exit code, DOM, stderr, how long it ran).
fn chromium(
    r: &Rig,
    proxy_server: &str,
    home: &Path,
    profile: &str,
    url: &str,
) -> (Option<i32>, String, String, Duration) {
    let mut cmd = Command::new("chromium");
    for v in PROXY_ENV.iter().chain(CA_ENV) {
        cmd.env_remove(v);
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .args([
            "--headless=new",
            // Root in CI and containers: Chromium's sandbox needs user namespaces it may not get.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
        ])
        .arg(format!("--user-data-dir={}", r.dir.join(profile).display()))
        .arg(format!("--proxy-server={proxy_server}"))
        // Chromium never proxies loopback unless told to.
        .arg("--proxy-bypass-list=<-loopback>")
        .arg("--dump-dom")
        .arg(url);
    let started = Instant::now();
    let (code, dom, stderr) = run_group(cmd, &r.dir, CHROMIUM_RUN);
    (code, dom, stderr, started.elapsed())
}

/// Runs `cmd` in its own process group with stdout and stderr into files, waits up to
/// `timeout`, then kills the whole group (Chromium leaves helper processes behind if only the
/// browser dies). Returns (exit status, stdout, stderr); panics on timeout.
fn run_group(mut cmd: Command, dir: &Path, timeout: Duration) -> (Option<i32>, String, String) {
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (Debian: apt-get install chromium libnss3-tools)")
    });
    let status = wait_child(&mut child, timeout);
    // The group id is the child's pid (process_group(0)); kill what is left of it.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    let Some(status) = status else {
        panic!(
            "{cmd:?} still running after {:?}; stderr:\n{stderr}",
            started.elapsed()
        );
    };
    (status.code(), stdout, stderr)
}

/// Headless Chromium with the proxy's CA in a scratch NSS database (`certutil`), loading one
/// page through the intercepting proxy: the dumped DOM is the origin's page naming the `Via`
/// it got, the proxy logged the request as intercepted (Chromium's ClientHello carries a
/// GREASE ECH extension, which the proxy must not take for real ECH), and every request
/// Chromium made for any other host was refused (as is `curl` to `example.com` through the
/// same proxy, before any DNS lookup: `0.000ms`, `reason=dest_not_allowed`). Without the CA
/// in its database, the same Chromium refuses the leaf and gets no page.
fn chromium_through_interception_with_only_the_test_host_reachable(d: Driver) {
    let r = Rig::new(&format!("chromium-{}", d.flag()));
    let mut proxy = r.proxy(d);
    let home = r.dir.join("home");
    nss_db(&home);

    // Without our CA in its database, Chromium refuses the minted leaf: no page, and the
    // proxy logs the aborted handshake (so the success below is the CA's doing).
    let (code, dom, stderr, took) =
        chromium(&r, &proxy.url(), &home, "untrusting", &r.url("/untrusted"));
    assert!(
        !dom.contains("ringway-origin"),
        "exit {code:?} after {took:?}; DOM:\n{dom}\nstderr:\n{stderr}"
    );
    // (Chromium may also open a spare connection and close it unused: wait for the abort.)
    let target = format!(" CONNECT localhost:{} ", r.origin.port);
    proxy.wait_line(RUN, |l| {
        l.contains(&target) && l.ends_with(" reason=client_tls_abort")
    });

    trust_proxy_ca(&r, &home);
    let (code, dom, stderr, took) = chromium(&r, &proxy.url(), &home, "trusting", &r.url("/page"));
    let marker = "<p id=\"marker\">ringway-origin path=/page via=1.1 ringway</p>";
    assert_rendered(marker, code, &dom, &stderr, took);

    // The page went through the proxy, intercepted.
    assert_intercepted(&mut proxy, r.origin.port, "/page");

    // Nothing for another host got through: each was refused by the domain rule.
    let (code, out) = {
        let out = curl(&["-i", "--proxy", &proxy.url(), "https://example.com/"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(56), "curl: CONNECT refused: {out}");
    assert!(out.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{out}");
    assert!(
        out.contains("Proxy-Status: ringway; error=http_request_denied\r\n"),
        "{out}"
    );
    let refused = proxy.wait_line(RUN, |l| l.contains(" CONNECT example.com:443 "));
    assert!(
        refused.contains(" 403 ") && refused.ends_with(" 0.000ms reason=dest_not_allowed"),
        "{refused}"
    );
    let others = none_through_the_refused(&mut proxy, "/untrusted", "the tunnel");
    eprintln!(
        "chromium ({}): page in {took:?}; {others} requests for other hosts refused",
        d.flag()
    );
}

/// The access lines so far: none of them is for `path` (the page Chromium asked for through
/// `refused`, whose certificate it refused), and every one for another host was refused
/// ([`refused_unless_loopback`]); returns how many of those there were.
fn none_through_the_refused(proxy: &mut Proxy, path: &str, refused: &str) -> usize {
    let lines = proxy.lines_so_far(Duration::from_millis(200));
    assert!(
        !lines.iter().any(|l| l.contains(path)),
        "a request went through {refused} whose certificate Chromium refused: {lines:#?}"
    );
    refused_unless_loopback(&lines)
}

/// Asserts that every access line in `lines` for a host other than loopback (the test's
/// own `localhost`, or a loopback literal) is a `403` refused by the egress policy; returns
/// how many there were.
fn refused_unless_loopback(lines: &[String]) -> usize {
    let mut others = 0;
    for line in lines {
        let Some(a) = AccessLine::parse(line) else {
            continue;
        };
        let host = target_host(&a.target);
        // Loopback (the test's own host, or a loopback literal) stays on this machine.
        let loopback = host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            others += 1;
            assert!(
                a.status == 403 && a.extra.iter().any(|e| e.starts_with("reason=dest_")),
                "a request for {host} was not refused by the egress policy: {line}"
            );
        }
    }
    others
}

/// Headless Chromium with `--proxy-server=https://127.0.0.1:P`: the proxy's HTTPS listener
/// serves a leaf (for `localhost` and 127.0.0.1) from the proxy's CA, the same CA that mints
/// the intercepted leaves, and that CA is in Chromium's scratch NSS database. Through that
/// one listener Chromium loads an `https://` page by interception (three TLS sessions:
/// Chromium to the listener, Chromium to the minted leaf inside it, the proxy to the origin;
/// logged `intercepted=1`) and a plain `http://` page from a loopback origin (forwarded in
/// absolute form inside the listener's TLS; the origin sees the `Via`; not intercepted).
/// Before the CA is trusted, Chromium refuses the listener's certificate and nothing is
/// fetched. Every request for another host is refused, as in the plain-listener test.
fn chromium_through_the_https_proxy_listener(d: Driver) {
    let r = Rig::new(&format!("chromium-listener-{}", d.flag()));
    listener_leaf(&r.dir.join("proxy"));
    let (cert, key) = (
        r.path("proxy/listener.pem"),
        r.path("proxy/listener-key.pem"),
    );
    let mut proxy = r.proxy_with(d, &tls_listen_args(&cert, &key));
    // The plain listener first, then the HTTPS one.
    let listener = format!("https://{}", https_listener(&proxy));
    let plain = Origin::reply_with(|req| {
        let head = Head::parse(req);
        let path = head.start.split(' ').nth(1).unwrap_or_default().to_string();
        let body = format!(
            "<!DOCTYPE html><html><head><title>plain</title></head><body><p id=\"marker\">ringway-plain path={path} via={}</p></body></html>\n",
            head.get("Via").unwrap_or("none")
        );
        message(
            &[
                "HTTP/1.1 200 OK",
                "Content-Type: text/html; charset=utf-8",
                &format!("Content-Length: {}", body.len()),
            ],
            body.as_bytes(),
        )
    });
    let plain_url = |path: &str| format!("http://localhost:{}{path}", plain.addr.port());
    let home = r.dir.join("home");
    nss_db(&home);

    // Without the CA, Chromium refuses the listener's certificate: no page, and no request
    // reached the proxy's HTTP layer (nothing logged for either origin).
    let (code, dom, stderr, took) = chromium(
        &r,
        &listener,
        &home,
        "untrusting",
        &plain_url("/untrusted-proxy"),
    );
    assert!(
        !dom.contains("ringway-plain"),
        "exit {code:?} after {took:?}; DOM:\n{dom}\nstderr:\n{stderr}"
    );
    assert_eq!(plain.log().requests.len(), 0, "{:?}", plain.log());

    trust_proxy_ca(&r, &home);
    let (code, dom, stderr, took) = chromium(&r, &listener, &home, "https", &r.url("/inside"));
    let marker = "<p id=\"marker\">ringway-origin path=/inside via=1.1 ringway</p>";
    assert_rendered(marker, code, &dom, &stderr, took);
    assert_intercepted(&mut proxy, r.origin.port, "/inside");

    let (code, dom, stderr, took2) = chromium(&r, &listener, &home, "plain", &plain_url("/plain"));
    let marker = "<p id=\"marker\">ringway-plain path=/plain via=1.1 ringway</p>";
    assert_rendered(marker, code, &dom, &stderr, took2);
    let want = format!(" GET {} 200 ", plain_url("/plain"));
    let line = proxy.wait_line(RUN, |l| l.contains(&want));
    assert!(!line.contains("intercepted"), "{line}");

    let others = none_through_the_refused(&mut proxy, "/untrusted-proxy", "the listener");
    eprintln!(
        "chromium via https listener ({}): https page in {took:?}, http page in {took2:?}; \
         {others} requests for other hosts refused",
        d.flag()
    );
}

/// Asserts that Chromium (exit `code` after `took`) rendered `marker` in its DOM and exited
/// 0; a failure shows the whole DOM and Chromium's stderr.
fn assert_rendered(marker: &str, code: Option<i32>, dom: &str, stderr: &str, took: Duration) {
    assert!(
        dom.contains(marker),
        "exit {code:?} after {took:?}; DOM:\n{dom}\nstderr:\n{stderr}"
    );
    assert_eq!(code, Some(0), "{stderr}");
}

/// Waits for the access line of `GET https://localhost:PORT{path} 200` and asserts it was
/// intercepted (decrypted and re-sent, not tunnelled).
fn assert_intercepted(proxy: &mut Proxy, port: u16, path: &str) {
    let want = format!(" GET https://localhost:{port}{path} 200 ");
    let line = proxy.wait_line(RUN, |l| l.contains(&want));
    assert!(line.ends_with(" intercepted=1"), "{line}");
}

/// The host of an access-log target: `host:port` (CONNECT) or `scheme://host[:port]/...`.
fn target_host(target: &str) -> &str {
    let rest = target.split_once("://").map_or(target, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}
