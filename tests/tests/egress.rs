//! The egress policy end to end: the default guard refuses loopback in every spelling, for
//! GET and CONNECT, before the origin is contacted; `--allow-range` re-opens it; domain rules
//! (also from a 100,000-line `@FILE`) are decided before DNS; the proxy's own listener is a
//! loop. Non-loopback destinations are only ever tried inside a network namespace the test
//! makes (`unshare --net`), where a dial that slipped through the guard fails locally.

use std::io::Write;
use std::process::{Command, Stdio};

use ringway_e2e::*;

/// The exact answer to a refused destination: status, `Proxy-Status`, and the body naming
/// the destination, the rule and the flag (written out here, not taken from the core).
fn denial(status_line: &str, error: &str, body: &str) -> Vec<u8> {
    let body = format!("{body}\n");
    message(
        &[
            &format!("HTTP/1.1 {status_line}"),
            &format!("Proxy-Status: ringway; error={error}"),
            "Content-Type: text/plain",
            &format!("Content-Length: {}", body.len()),
            "Connection: close",
        ],
        body.as_bytes(),
    )
}

/// Sends `request`, expects exactly `answer` then EOF, and the access-log line
/// `CLIENT METHOD_TARGET STATUS RX TX D reason=REASON`.
fn refused(p: &mut Proxy, request: &[u8], answer: &[u8], method_target: &str, reason: &str) {
    let mut c = p.connect();
    c.write(request);
    assert_bytes(&c.read_to_eof(), answer, method_target);
    let status = &String::from_utf8_lossy(&answer[9..12]).into_owned();
    assert_eq!(
        p.wait_access_of(c.local_addr()).without_duration(),
        format!(
            "{} {method_target} {status} {} {} D reason={reason}",
            c.local_addr(),
            request.len(),
            answer.len()
        )
    );
}

both_drivers!(
    loopback_is_refused_by_default_in_every_spelling,
    allow_range_reopens_loopback,
    domain_rules_are_decided_before_dns,
    a_pattern_file_of_100000_lines,
    the_proxy_itself_is_a_loop,
);

/// 127.0.0.1, [::1], [::ffff:127.0.0.1], localhost, 127.1 and 2130706433, for GET and
/// CONNECT: exactly the 403 with `destination_ip_prohibited`, and nothing reaches the origin
/// or the echo server (both listen on loopback and would answer).
fn loopback_is_refused_by_default_in_every_spelling(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let echo = EchoServer::start(EchoMode::Echo);
    let http = origin.addr.port();
    let tls = echo.addr.port();
    let mut p = Proxy::start_guarded(d, &["--connect-ports", "any"]);
    for (host, subject) in [
        ("127.0.0.1", "127.0.0.1".to_string()),
        ("[::1]", "::1".to_string()),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1".to_string()),
        ("127.1", "127.1 (127.0.0.1)".to_string()),
        ("2130706433", "2130706433 (127.0.0.1)".to_string()),
    ] {
        for (port, connect) in [(http, false), (tls, true)] {
            let authority = format!("{host}:{port}");
            let (request, shown) = if connect {
                (connect_request(&authority), format!("CONNECT {authority}"))
            } else {
                (
                    proxy_get(&authority, "/"),
                    format!("GET http://{authority}/"),
                )
            };
            let answer = denial(
                "403 Forbidden",
                "destination_ip_prohibited",
                &format!("destination {subject} is loopback; allow it with --allow-range"),
            );
            refused(&mut p, &request, &answer, &shown, "dest_loopback");
        }
    }
    // localhost is a name: resolved once, every address judged, none dialed.
    for (port, connect) in [(http, false), (tls, true)] {
        let authority = format!("localhost:{port}");
        let mut c = p.connect();
        let request = if connect {
            connect_request(&authority)
        } else {
            proxy_get(&authority, "/")
        };
        c.write(&request);
        let got = c.read_to_eof();
        let text = String::from_utf8_lossy(&got);
        // The first address the resolver gives decides the subject (127.0.0.1 or ::1).
        let v4 = denial(
            "403 Forbidden",
            "destination_ip_prohibited",
            "destination localhost (127.0.0.1) is loopback; allow it with --allow-range",
        );
        let v6 = denial(
            "403 Forbidden",
            "destination_ip_prohibited",
            "destination localhost (::1) is loopback; allow it with --allow-range",
        );
        assert!(got == v4 || got == v6, "localhost: {text}");
        let line = p.wait_access_of(c.local_addr());
        assert!(line.without_duration().ends_with(" D reason=dest_loopback"));
    }
    assert_eq!(origin.log().connections, 0, "the origin was contacted");
    assert_eq!(echo.log().connections, 0, "the echo server was contacted");
}

/// `--allow-range 127.0.0.0/8` lets 127.1 (a legacy spelling) through to the origin, and a
/// more specific `--deny-range` still refuses its one address.
fn allow_range_reopens_loopback(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let port = origin.addr.port();
    let mut p = Proxy::start_guarded(
        d,
        &[
            "--allow-range",
            "127.0.0.0/8",
            "--deny-range",
            "127.0.0.2/32",
        ],
    );
    let authority = format!("127.1:{port}");
    let mut c = p.connect();
    c.write(&proxy_get(&authority, "/"));
    assert_bytes(&c.read_response("GET"), &ok_relayed(b"ok"), "via 127.1");
    let log = origin.wait_requests(1);
    assert_bytes(
        &log.requests[0],
        &forwarded("GET", &authority, "/", &[], b""),
        "at the origin",
    );
    let denied = format!("127.0.0.2:{port}");
    let answer = denial(
        "403 Forbidden",
        "destination_ip_prohibited",
        "destination 127.0.0.2 is in a --deny-range; remove that rule to allow it",
    );
    refused(
        &mut p,
        &proxy_get(&denied, "/"),
        &answer,
        &format!("GET http://{denied}/"),
        "dest_denied_range",
    );
    assert_eq!(origin.log().requests.len(), 1);
}

/// `--deny-domain` refuses a name without resolving it (a name that does not exist gets the
/// 403, not a DNS error); with an `--allow-domain`, other names and IP literals outside the
/// allowed ranges are refused.
fn domain_rules_are_decided_before_dns(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let port = origin.addr.port();
    let mut p = Proxy::start_guarded(
        d,
        &[
            "--allow-range",
            "127.0.0.0/8",
            "--allow-domain",
            "localhost",
            "--allow-domain",
            "*.allowed.invalid",
            "--deny-domain",
            "blocked.allowed.invalid",
        ],
    );
    let blocked = format!("blocked.allowed.invalid:{port}");
    refused(
        &mut p,
        &proxy_get(&blocked, "/"),
        &denial(
            "403 Forbidden",
            "http_request_denied",
            "destination blocked.allowed.invalid is matched by a --deny-domain; remove that rule to allow it",
        ),
        &format!("GET http://{blocked}/"),
        "dest_domain",
    );
    let other = format!("example.invalid:{port}");
    refused(
        &mut p,
        &proxy_get(&other, "/"),
        &denial(
            "403 Forbidden",
            "http_request_denied",
            "destination example.invalid is not on the --allow-domain list; allow it with --allow-domain",
        ),
        &format!("GET http://{other}/"),
        "dest_not_allowed",
    );
    // Allowed by name, resolved, and the address is in --allow-range.
    let mut c = p.connect();
    let authority = format!("localhost:{port}");
    c.write(&proxy_get(&authority, "/"));
    let got = c.read_response("GET");
    // localhost may resolve to ::1 first, where the origin does not listen: the next
    // address answers.
    assert_bytes(&got, &ok_relayed(b"ok"), "localhost");
    // An allowed name that does not resolve is a DNS error, after the domain rules passed.
    let missing = format!("nothing.allowed.invalid:{port}");
    let mut c = p.connect();
    c.write(&proxy_get(&missing, "/"));
    c.expect_canned("dns_failed");
}

/// A deny list of 100,000 patterns from a file: loaded at start, the last line matches.
fn a_pattern_file_of_100000_lines(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let port = origin.addr.port();
    let dir =
        std::env::temp_dir().join(format!("ringway-e2e-egress-{}-{:?}", std::process::id(), d));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("deny.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "# generated: 100,000 patterns").unwrap();
    for i in 0..99_999 {
        if i % 2 == 0 {
            writeln!(f, "host{i}.blocked.test").unwrap();
        } else {
            writeln!(f, "*.zone{i}.blocked.test").unwrap();
        }
    }
    writeln!(f, "localhost").unwrap();
    drop(f);
    let file = format!("@{}", path.display());
    let mut p = Proxy::start(d, &["--allow-range", "127.0.0.0/8", "--deny-domain", &file]);
    let target = format!("localhost:{port}");
    refused(
        &mut p,
        &proxy_get(&target, "/"),
        &denial(
            "403 Forbidden",
            "http_request_denied",
            "destination localhost is matched by a --deny-domain; remove that rule to allow it",
        ),
        &format!("GET http://{target}/"),
        "dest_domain",
    );
    let wild = format!("a.b.zone99997.blocked.test:{port}");
    let mut c = p.connect();
    c.write(&proxy_get(&wild, "/"));
    let got = c.read_to_eof();
    assert!(
        got.starts_with(
            b"HTTP/1.1 403 Forbidden\r\nProxy-Status: ringway; error=http_request_denied\r\n"
        ),
        "{}",
        show(&got)
    );
    // An IP literal is not a name: 127.0.0.1 is allowed by --allow-range.
    let mut c = p.connect();
    c.write(&proxy_get(&origin.authority(), "/"));
    assert_bytes(&c.read_response("GET"), &ok_relayed(b"ok"), "127.0.0.1");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A request to the proxy's own listener is a loop (508) even with everything allowed.
fn the_proxy_itself_is_a_loop(d: Driver) {
    let mut p = Proxy::start_guarded(d, &["--allow-range", "0.0.0.0/0", "--connect-ports", "any"]);
    let me = p.addr().to_string();
    let answer = denial(
        "508 Loop Detected",
        "proxy_loop_detected",
        &format!(
            "destination {} is this proxy itself; that is never allowed",
            p.addr().ip()
        ),
    );
    refused(
        &mut p,
        &connect_request(&me),
        &answer,
        &format!("CONNECT {me}"),
        "dest_self",
    );
}

/// Inside a network namespace with only loopback (made by the test: `unshare --net`), so
/// that nothing can leave the machine even if the guard were broken: private, link-local
/// (the metadata service), CGNAT and documentation addresses are refused by default;
/// `--allow-private` lets a private address through to a dial, which fails locally with 502
/// (the network is unreachable), while link-local stays refused.
#[test]
fn non_loopback_ranges_inside_a_network_namespace() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc_getuid() } != 0 {
        eprintln!("skipped: making a network namespace needs root (CI runs as root)");
        return;
    }
    let script = r#"
set -e
ip link set lo up
mkfifo "$DIR/banner"
run() {
    "$RINGWAY" --listen 127.0.0.1:0 --threads 1 --access-log off "$@" >"$DIR/banner" &
    PID=$!
    read -r line <"$DIR/banner"
    PORT=${line#*127.0.0.1:}; PORT=${PORT%% *}
}
ask() {
    printf '=== %s\n' "$1"
    curl -s -i --max-time 5 -x "http://127.0.0.1:$PORT" "$1" || printf 'curl exit %s\n' $?
    printf '\n'
}
run
ask http://10.1.2.3/
ask http://169.254.169.254/latest/meta-data/
ask http://100.64.0.1/
ask http://192.0.2.1/
kill $PID; wait $PID || true
run --allow-private
ask http://10.1.2.3/
ask http://169.254.169.254/latest/meta-data/
kill $PID; wait $PID || true
"#;
    let dir = std::env::temp_dir().join(format!("ringway-e2e-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .env("RINGWAY", ringway_bin())
        .env("DIR", &dir)
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "namespace script failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let answer = |status: &str, error: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\nProxy-Status: ringway; error={error}\nContent-Type: text/plain\nContent-Length: {}\nConnection: close\n\n{body}\n",
            body.len() + 1
        )
    };
    let forbidden = |ip: &str, what: &str, flag: &str| {
        answer(
            "403 Forbidden",
            "destination_ip_prohibited",
            &format!("destination {ip} is {what}; allow it with {flag}"),
        )
    };
    let want = [
        format!(
            "=== http://10.1.2.3/\n{}\n",
            forbidden("10.1.2.3", "a private address", "--allow-private")
        ),
        format!(
            "=== http://169.254.169.254/latest/meta-data/\n{}\n",
            forbidden("169.254.169.254", "link-local", "--allow-range")
        ),
        format!(
            "=== http://100.64.0.1/\n{}\n",
            forbidden("100.64.0.1", "a private address", "--allow-private")
        ),
        format!(
            "=== http://192.0.2.1/\n{}\n",
            forbidden("192.0.2.1", "a documentation address", "--allow-range")
        ),
        format!(
            "=== http://10.1.2.3/\n{}\n",
            answer(
                "502 Bad Gateway",
                "connection_refused",
                "The upstream server could not be reached."
            )
        ),
        format!(
            "=== http://169.254.169.254/latest/meta-data/\n{}\n",
            forbidden("169.254.169.254", "link-local", "--allow-range")
        ),
    ]
    .concat();
    assert_eq!(text, want);
}

extern "C" {
    #[link_name = "getuid"]
    fn libc_getuid() -> u32;
}
