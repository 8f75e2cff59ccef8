//! The proxy and client side of the TLS end-to-end tests: a proxy holding an interception
//! CA ([`proxy_with_ca`]), the HTTPS listener's flags and address ([`tls_listen_args`],
//! [`https_listener`]), and curl through a proxy (plain or HTTPS listener) with the trust a
//! test chooses ([`curl_through`]). One copy here so the test
//! files ask the same question the same way.
//!
//! # Error handling
//! Panics when curl cannot start, or when the proxy's banner does not show the HTTPS
//! listener a test asked for.

use crate::{Driver, Proxy};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `curl -sS -i --max-time 10 --proxy PROXY_URL ARGS URLS` (ARGS: trust such as `--cacert
/// CA` or `--proxy-cacert CA`, and anything else); (exit code, stdout then stderr), so a
/// test asserts on the exact response heads and on curl's own error in one string.
pub fn curl_through(proxy_url: &str, args: &[&str], urls: &[String]) -> (Option<i32>, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "--proxy", proxy_url])
        .args(args)
        .args(urls)
        .output()
        .expect("curl");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The flags for one HTTPS proxy listener on 127.0.0.1 port 0 serving `cert` and `key`
/// (e.g. from [`crate::tls_pki::listener_leaf`]), to pass to [`Proxy::start`].
pub fn tls_listen_args<'a>(cert: &'a str, key: &'a str) -> [&'a str; 6] {
    [
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]
}

/// The address of the one HTTPS listener of a proxy started with [`tls_listen_args`]:
/// asserts there are exactly two listeners (the plain one first) and that the banner names
/// the second as `https://ADDR`, so a test never talks TLS to the plain listener.
pub fn https_listener(proxy: &Proxy) -> SocketAddr {
    assert_eq!(proxy.addrs.len(), 2, "{}", proxy.banner);
    assert!(
        proxy
            .banner
            .contains(&format!("https://{}", proxy.addrs[1])),
        "{}",
        proxy.banner
    );
    proxy.addrs[1]
}

/// Spawns `cmd` (the ringway binary with what [`Proxy::start`] cannot express: an
/// environment of its own, no plain listener) with stdin and stderr null, and returns it
/// with the first line of its stdout (the banner naming its listeners). The caller kills
/// and waits for it.
pub fn spawn_for_banner(cmd: &mut Command) -> (Child, String) {
    spawn_first_line(cmd.stderr(Stdio::null()))
}

/// Spawns `cmd` with stdin null and stdout piped (stderr as the caller set it) and reads
/// the first line of its stdout: what a server prints once it listens (a banner, a port),
/// so the test waits for that signal rather than sleeping. The caller ends the child.
pub fn spawn_first_line(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// A proxy (`--connect-ports any`, for the tests' high origin ports) holding the
/// interception CA in `ca_dir` (`ca.pem`, `ca-key.pem`, e.g. from
/// [`crate::tls_pki::ca_init`]), with `extra` arguments after those: what to intercept,
/// which upstream CA to trust, and anything else the test checks.
pub fn proxy_with_ca(d: Driver, ca_dir: &Path, extra: &[&str]) -> Proxy {
    let (cert, key) = (ca_dir.join("ca.pem"), ca_dir.join("ca-key.pem"));
    let mut args = vec![
        "--connect-ports",
        "any",
        "--ca-cert",
        cert.to_str().unwrap(),
        "--ca-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Proxy::start(d, &args)
}

/// The access log of one intercepted tunnel: waits for its `CONNECT` line (written when the
/// client hung up), then asserts the lines are exactly one `GET https://localhost:PORT/PATH
/// 200 ... intercepted=1` per path, in order, followed by that `CONNECT localhost:PORT 200`
/// line, which is returned (without `intercepted`, checked by the caller where it matters).
pub fn assert_intercepted_then_connect(proxy: &mut Proxy, port: u16, paths: &[String]) -> String {
    proxy.wait_line(std::time::Duration::from_secs(20), |l| {
        l.contains(" CONNECT ")
    });
    let lines: Vec<String> = proxy
        .lines_so_far(std::time::Duration::from_millis(200))
        .into_iter()
        .filter(|l| l.contains(" GET ") || l.contains(" CONNECT "))
        .collect();
    assert_eq!(lines.len(), paths.len() + 1, "{lines:#?}");
    for (path, line) in paths.iter().zip(&lines) {
        let want = format!(" GET https://localhost:{port}{path} 200 ");
        assert!(line.contains(&want), "{line} lacks {want:?}");
        assert!(line.ends_with(" intercepted=1"), "{line}");
    }
    let connect = lines[paths.len()].clone();
    assert!(
        connect.contains(&format!(" CONNECT localhost:{port} 200 ")),
        "{connect}"
    );
    connect
}
