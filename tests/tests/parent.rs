//! Chaining through a parent proxy (`--upstream-proxy`), end to end. The parent is a second
//! Ringway this test starts (`--via-name parent`, so it does not take the child's `Via` for a
//! loop), with `--auth-file` for the credentials and its own access log as the witness of what
//! reached it; and Squid too when it is installed. Everything stays on loopback.

use std::net::TcpListener;

use ringway_e2e::*;

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// A users file for the parent with `alice:s3cret@x` (the `@` percent-encoded in the URL).
fn users_file(tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "ringway-e2e-parent-users-{}-{tag}",
        std::process::id()
    ));
    std::fs::write(&path, "alice:s3cret@x\n").unwrap();
    path
}

/// The parent: loopback origins allowed, credentials required, JSON log.
fn parent(d: Driver, users: &std::path::Path, extra: &[&str]) -> Proxy {
    let mut args = vec![
        "--via-name",
        "parent",
        "--access-log-format",
        "json",
        "--auth-file",
        users.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Proxy::start(d, &args)
}

fn parent_url(p: &Proxy) -> String {
    format!("http://alice:s3cret%40x@{}", p.addr())
}

/// The parent's JSON access line whose target is `target`.
fn parent_line(p: &mut Proxy, target: &str) -> serde_json::Value {
    let needle = format!("\"target\":\"{target}\"");
    let line = p.wait_line(WAIT, |l| l.contains(&needle));
    serde_json::from_str(&line).unwrap()
}

fn get(target_authority: &str, path: &str) -> Vec<u8> {
    head(&[
        &format!("GET http://{target_authority}{path} HTTP/1.1"),
        &format!("Host: {target_authority}"),
    ])
}

/// Plain HTTP goes to the parent in absolute form with the parent's credentials (the
/// parent's log names the user), and the answer comes back through both.
fn plain_http_through_a_ringway_parent(d: Driver) {
    let origin = Origin::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let users = users_file(&format!("plain-{}", d.flag()));
    let mut up = parent(d, &users, &[]);
    let mut p = Proxy::start(d, &["--upstream-proxy", &parent_url(&up)]);
    let a = origin.authority();
    let mut c = p.connect();
    c.write(&get(&a, "/x"));
    let want =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 parent\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_bytes(&c.read_exact(want.len()), want, "the answer through both");
    // The origin got it from the parent: our Via, then the parent's; no credentials.
    let log = origin.wait_requests(1);
    assert_bytes(
        &log.requests[0],
        format!("GET /x HTTP/1.1\r\nHost: {a}\r\nVia: 1.1 ringway\r\nVia: 1.1 parent\r\n\r\n")
            .as_bytes(),
        "the request at the origin",
    );
    let line = parent_line(&mut up, &format!("http://{a}/x"));
    assert_eq!(
        line["user"], "alice",
        "credentials reached the parent: {line}"
    );
    assert_eq!(line["status"], 200);
    // Our log: which hop, and the address dialed (the parent's).
    let ours = p.wait_access_of(c.local_addr());
    assert_eq!(
        (ours.status, ours.extra.clone()),
        (200, vec!["via=parent".to_string()])
    );
    // A request to another origin, from another client connection, goes over the pooled
    // parent connection: the parent sees it come from the same socket.
    let other = Origin::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let b = other.authority();
    let mut c2 = p.connect();
    c2.write(&get(&b, "/y"));
    assert_bytes(&c2.read_exact(want.len()), want, "the second answer");
    let second = parent_line(&mut up, &format!("http://{b}/y"));
    assert_eq!(second["status"], 200);
    assert_eq!(
        second["client"], line["client"],
        "the parent connection was not reused"
    );
    std::fs::remove_file(users).unwrap();
}

/// CONNECT goes to the parent as CONNECT; on its 200 our tunnel starts and TLS passes through.
fn connect_tls_through_a_ringway_parent(d: Driver) {
    let tls = TlsOrigin::start();
    let port = tls.port.to_string();
    let ports = format!("443,{port}");
    let users = users_file(&format!("tls-{}", d.flag()));
    let mut up = parent(d, &users, &["--connect-ports", &ports]);
    let p = Proxy::start(
        d,
        &[
            "--upstream-proxy",
            &parent_url(&up),
            "--connect-ports",
            &ports,
        ],
    );
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
    let (tunnel_head, rest) = split_message(&out.stdout);
    assert_bytes(tunnel_head, ESTABLISHED, "our CONNECT answer");
    let (origin_head, page) = split_message(rest);
    assert_bytes(
        origin_head,
        b"HTTP/1.0 200 ok\r\nContent-type: text/html\r\n\r\n",
        "s_server's head through both tunnels",
    );
    assert!(find(page, b"s_server").is_some(), "{}", show(page));
    let line = parent_line(&mut up, &format!("127.0.0.1:{port}"));
    assert_eq!(line["method"], "CONNECT");
    assert_eq!(line["user"], "alice");
    assert_eq!(line["status"], 200);
    std::fs::remove_file(users).unwrap();
}

/// A parent that refuses (its own egress guard: loopback) answers 403; the client gets that
/// answer, for GET and for CONNECT (then the connection closes).
fn a_parents_403_reaches_the_client(d: Driver) {
    let origin = Origin::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let up = Proxy::start_guarded(d, &["--via-name", "parent", "--connect-ports", "any"]);
    let p = Proxy::start(
        d,
        &[
            "--upstream-proxy",
            &format!("http://{}", up.addr()),
            "--connect-ports",
            "any",
        ],
    );
    let a = origin.authority();
    let body = format!(
        "destination {a} is loopback; allow it with --allow-range\n",
        a = a.split(':').next().unwrap()
    );
    let want = |connection: &[&str]| {
        let length = format!("Content-Length: {}", body.len());
        let mut lines = vec![
            "HTTP/1.1 403 Forbidden",
            "Proxy-Status: ringway; error=destination_ip_prohibited",
            "Content-Type: text/plain",
            &length,
        ];
        lines.extend_from_slice(connection);
        lines.push("Via: 1.1 ringway");
        message(&lines, body.as_bytes())
    };
    // A GET: the parent's answer is an answer like any other (its `Connection: close` is
    // hop-by-hop), so the client connection stays open.
    let mut c = p.connect();
    c.write(&get(&a, "/"));
    let got = want(&[]);
    assert_bytes(&c.read_exact(got.len()), &got, "GET refused by the parent");
    // A CONNECT: relayed, then closed.
    let mut c = p.connect();
    c.write(&head(&[
        &format!("CONNECT {a} HTTP/1.1"),
        &format!("Host: {a}"),
    ]));
    assert_bytes(
        &c.read_to_eof(),
        &want(&["Connection: close"]),
        "CONNECT refused by the parent",
    );
    assert_eq!(origin.log().connections, 0, "nothing reached the origin");
}

/// A parent that is not there: 502 naming it, `reason=parent_dial_failed via=parent`.
fn a_stopped_parent_gives_502(d: Driver) {
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let parent = gone.local_addr().unwrap();
    drop(gone);
    let mut p = Proxy::start(d, &["--upstream-proxy", &format!("http://{parent}")]);
    let body = format!("The parent proxy {parent} could not be reached.\n");
    let want = message(
        &[
            "HTTP/1.1 502 Bad Gateway",
            "Proxy-Status: ringway; error=connection_refused",
            "Content-Type: text/plain",
            &format!("Content-Length: {}", body.len()),
            "Connection: close",
        ],
        body.as_bytes(),
    );
    let mut c = p.connect();
    let request = get("example.com", "/");
    c.write(&request);
    assert_bytes(&c.read_to_eof(), &want, "the answer about the parent");
    let line = p.wait_access_of(c.local_addr());
    assert_eq!(
        line.without_duration(),
        format!(
            "{} GET http://example.com/ 502 {} {} D reason=parent_dial_failed via=parent",
            c.local_addr(),
            request.len(),
            want.len()
        )
    );
}

/// `--no-upstream-proxy` lists destinations that go direct (the parent here is not even
/// there), logged `via=direct`.
fn no_upstream_proxy_goes_direct(d: Driver) {
    let origin = Origin::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let parent = gone.local_addr().unwrap();
    drop(gone);
    let mut p = Proxy::start(
        d,
        &[
            "--upstream-proxy",
            &format!("http://{parent}"),
            "--no-upstream-proxy",
            "127.0.0.0/8",
        ],
    );
    let mut c = p.connect();
    c.write(&get(&origin.authority(), "/"));
    let want = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 ringway\r\n\r\nok";
    assert_bytes(&c.read_exact(want.len()), want, "direct");
    let line = p.wait_access_of(c.local_addr());
    assert_eq!(
        (line.status, line.extra),
        (200, vec!["via=direct".to_string()])
    );
}

both_drivers!(
    plain_http_through_a_ringway_parent,
    connect_tls_through_a_ringway_parent,
    a_parents_403_reaches_the_client,
    a_stopped_parent_gives_502,
    no_upstream_proxy_goes_direct,
);

/// Squid as the parent (when installed; `.ci/run` installs Debian's `squid-openssl`): plain
/// HTTP and CONNECT + TLS pass through it, the credentials reach it (its `basic_fake_auth`
/// helper takes any password and logs the user), and its 403 reaches the client.
#[test]
fn squid_as_the_parent() {
    let Some(squid) = Squid::start() else {
        eprintln!("skipped: squid is not installed (.ci/run installs squid-openssl)");
        return;
    };
    let d = Driver::Epoll;
    let origin = Origin::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let tls = TlsOrigin::start();
    let port = tls.port.to_string();
    let ports = format!("443,{port}");
    let mut p = Proxy::start(
        d,
        &[
            "--upstream-proxy",
            &format!("http://alice:pw%40x@127.0.0.1:{}", squid.port),
            "--connect-ports",
            &ports,
        ],
    );
    // Plain HTTP.
    let a = origin.authority();
    let mut c = p.connect();
    c.write(&get(&a, "/via-squid"));
    let answer = c.read_response("GET");
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        show(&answer)
    );
    assert!(answer.ends_with(b"\r\n\r\nhello"), "{}", show(&answer));
    let line = p.wait_access_of(c.local_addr());
    assert_eq!(
        (line.status, line.extra),
        (200, vec!["via=parent".to_string()])
    );
    squid.wait_log(&format!("http://{a}/via-squid"), "alice");
    // CONNECT + TLS.
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
    let (tunnel_head, rest) = split_message(&out.stdout);
    assert_bytes(tunnel_head, ESTABLISHED, "our CONNECT answer");
    assert!(find(rest, b"s_server").is_some(), "{}", show(rest));
    squid.wait_log(&format!("CONNECT 127.0.0.1:{port}"), "alice");
    // Squid's refusal reaches the client.
    let mut c = p.connect();
    c.write(&get("forbidden.test", "/"));
    let answer = c.read_response("GET");
    assert!(
        answer.starts_with(b"HTTP/1.1 403 Forbidden\r\n"),
        "{}",
        show(&answer)
    );
}

/// A Squid on a free loopback port, killed on drop.
struct Squid {
    port: u16,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Squid {
    fn start() -> Option<Squid> {
        let bin = ["/usr/sbin/squid", "/usr/bin/squid"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ringway-e2e-squid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        // SAFETY: getuid has no preconditions.
        let user = if unsafe { getuid() } == 0 {
            "cache_effective_user proxy"
        } else {
            ""
        };
        let conf = format!(
            "http_port 127.0.0.1:{port}
{user}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
cache_store_log none
logfile_rotate 0
coredump_dir {d}
cache deny all
cache_mem 8 MB
workers 1
pinger_enable off
netdb_filename none
shutdown_lifetime 0 seconds
auth_param basic program /usr/lib/squid/basic_fake_auth
auth_param basic realm ringway-e2e
acl authed proxy_auth REQUIRED
acl forbidden dstdomain forbidden.test
acl CONNECT method CONNECT
http_access deny forbidden
http_access allow authed
http_access deny all
"
        );
        std::fs::write(dir.join("squid.conf"), conf).unwrap();
        if !user.is_empty() {
            // Squid drops to the proxy user and must write its logs here.
            let _ = std::process::Command::new("chown")
                .args(["-R", "proxy", dir.to_str().unwrap()])
                .status();
        }
        let child = std::process::Command::new(bin)
            .args(["-N", "-f", dir.join("squid.conf").to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let squid = Squid { port, child, dir };
        // Bounded wait until it accepts.
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "squid did not come up: {}",
                std::fs::read_to_string(squid.dir.join("cache.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(squid)
    }

    /// Waits until Squid's access log has a line with both `what` and `user`.
    fn wait_log(&self, what: &str, user: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
            if log.lines().any(|l| l.contains(what) && l.contains(user)) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no squid access line with {what} and {user}:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

extern "C" {
    fn getuid() -> u32;
}
