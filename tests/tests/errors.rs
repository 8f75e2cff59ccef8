//! Every canned error: exact status line, `Content-Type: text/plain`, Content-Length equal to
//! the one-line body, `Connection: close`, then EOF — and nothing reaches the origin when the
//! request is refused before dialing.

use ringway_e2e::*;
use std::time::{Duration, Instant};

/// Sends `request` on a new connection and expects canned `code` then EOF, and an access-log
/// line for it with that status, TX = the canned bytes, RX at most what was sent.
fn expect_error(p: &mut Proxy, request: &[u8], code: u16) -> Conn {
    let mut c = p.connect();
    c.write(request);
    let answer = c.expect_canned(code);
    let line = p.wait_access_of(c.local_addr());
    assert_eq!(line.status, code, "{line:?}");
    assert_eq!(line.tx, answer.len() as u64, "TX of {line:?}");
    assert!(
        line.rx <= request.len() as u64,
        "RX of {line:?} exceeds the {} bytes sent",
        request.len()
    );
    c
}

/// A 400 for `lines` (with `{a}` replaced by the origin authority); the origin sees nothing.
fn bad_request(d: Driver, lines: &[&str], body: &[u8]) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let lines: Vec<String> = lines.iter().map(|l| l.replace("{a}", &a)).collect();
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    expect_error(&mut p, &message(&refs, body), 400);
    assert_eq!(
        origin.log().connections,
        0,
        "a bad request must not be forwarded"
    );
}

/// Through a proxy with default flags, a plain GET to `origin` gets exactly the canned 502 (see
/// [`expect_error`]).
///
/// Why: the scenarios of an origin that answers wrongly differ only in that origin.
fn origin_answer_is_502(d: Driver, origin: Origin) {
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    expect_error(&mut p, &proxy_get(&a, "/"), 502);
}

both_drivers!(
    origin_form_request_400,
    content_length_and_transfer_encoding_400,
    duplicate_content_length_400,
    obs_fold_400,
    bare_lf_400,
    nul_in_header_400,
    two_host_headers_400,
    connect_bad_port_syntax_400,
    http2_version_505,
    connect_port_not_allowed_403,
    connect_port_not_in_list_403,
    client_not_allowed_403,
    proxy_auth_required_407,
    head_too_large_431,
    origin_refused_502,
    connect_refused_502,
    bad_upstream_response_502,
    dial_timeout_504,
    connect_dial_timeout_504,
    missing_host_400,
    https_scheme_in_absolute_form_400,
    upstream_closes_before_head_502,
    forwarding_loop_refused,
    more_malformed_requests_400,
    more_bad_connect_targets_400,
    upstream_conflicting_content_lengths_502,
    upstream_content_length_with_chunked,
);

fn origin_form_request_400(d: Driver) {
    bad_request(d, &["GET / HTTP/1.1", "Host: {a}"], b"");
}

fn content_length_and_transfer_encoding_400(d: Driver) {
    bad_request(
        d,
        &[
            "POST http://{a}/ HTTP/1.1",
            "Host: {a}",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
        ],
        b"0\r\n\r\n",
    );
}

fn duplicate_content_length_400(d: Driver) {
    bad_request(
        d,
        &[
            "POST http://{a}/ HTTP/1.1",
            "Host: {a}",
            "Content-Length: 5",
            "Content-Length: 6",
        ],
        b"hello!",
    );
}

fn obs_fold_400(d: Driver) {
    bad_request(
        d,
        &[
            "GET http://{a}/ HTTP/1.1",
            "Host: {a}",
            "X-Folded: one",
            " two",
        ],
        b"",
    );
}

fn bare_lf_400(d: Driver) {
    bad_request(
        d,
        &["GET http://{a}/ HTTP/1.1", "Host: {a}\nX-Bare: lf"],
        b"",
    );
}

fn nul_in_header_400(d: Driver) {
    bad_request(
        d,
        &["GET http://{a}/ HTTP/1.1", "Host: {a}", "X-Nul: a\0b"],
        b"",
    );
}

fn two_host_headers_400(d: Driver) {
    bad_request(
        d,
        &["GET http://{a}/ HTTP/1.1", "Host: {a}", "Host: {a}"],
        b"",
    );
}

fn connect_bad_port_syntax_400(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let mut p = Proxy::start(d, &["--connect-ports", "any"]);
    expect_error(&mut p, &connect_request("127.0.0.1:abc"), 400);
    assert_eq!(echo.log().connections, 0);
}

fn http2_version_505(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    expect_error(
        &mut p,
        &head(&[&format!("GET http://{a}/ HTTP/2.0"), &format!("Host: {a}")]),
        505,
    );
    assert_eq!(origin.log().connections, 0);
}

/// Default --connect-ports is 443: CONNECT to the echo port is refused before dialing.
fn connect_port_not_allowed_403(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let mut p = Proxy::start(d, &[]);
    let t = echo.addr.to_string();
    let c = expect_error(&mut p, &connect_request(&t), 403);
    assert_eq!(echo.log().connections, 0, "a denied CONNECT must not dial");
    let line = p.wait_access(c.local_addr(), "CONNECT");
    assert_eq!((line.target.as_str(), line.status), (t.as_str(), 403));
}

/// --connect-ports with a list that lacks the port also refuses.
fn connect_port_not_in_list_403(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let mut p = Proxy::start(d, &["--connect-ports", "443,8443"]);
    let t = echo.addr.to_string();
    expect_error(&mut p, &connect_request(&t), 403);
    assert_eq!(echo.log().connections, 0);
}

/// A client outside --allow-client gets 403 and nothing is forwarded.
fn client_not_allowed_403(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &["--allow-client", "10.0.0.0/8"]);
    let a = origin.authority();
    expect_error(&mut p, &proxy_get(&a, "/"), 403);
    assert_eq!(origin.log().connections, 0);
}

/// With `--auth-file`, a request without valid Basic credentials gets exactly this 407 (with
/// `Proxy-Authenticate`, so clients know to retry); valid ones pass and never reach the origin.
fn proxy_auth_required_407(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let users = std::env::temp_dir().join(format!(
        "ringway-e2e-users-{}-{}",
        std::process::id(),
        d.flag()
    ));
    std::fs::write(&users, "# test users\nuser:pass\n").unwrap();
    let mut p = Proxy::start(d, &["--auth-file", users.to_str().unwrap()]);
    let a = origin.authority();
    for credentials in [
        None,
        Some("Basic dXNlcjp3cm9uZw=="),
        Some("Bearer dXNlcjpwYXNz"),
    ] {
        let mut c = p.connect();
        let mut lines = vec![format!("GET http://{a}/ HTTP/1.1"), format!("Host: {a}")];
        lines.extend(credentials.map(|v| format!("Proxy-Authorization: {v}")));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        c.write(&head(&refs));
        let body = "This proxy needs a user name and password (Proxy-Authorization: Basic).\n";
        let want = format!(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"ringway\"\r\n\
Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        assert_bytes(&c.read_to_eof(), want.as_bytes(), "407 answer");
        assert_eq!(p.wait_access_of(c.local_addr()).status, 407);
    }
    assert_eq!(
        origin.log().connections,
        0,
        "nothing reaches the origin without credentials"
    );
    let mut c = p.connect();
    c.write(&proxy_request(
        "GET",
        &a,
        "/",
        &["Proxy-Authorization: Basic dXNlcjpwYXNz"],
        b"",
    ));
    assert_eq!(Head::parse(&c.read_head()).status(), 200);
    let seen = origin.log().requests;
    assert_bytes(
        &seen[0],
        &forwarded("GET", &a, "/", &[], b""),
        "the origin never sees the credentials",
    );
    std::fs::remove_file(&users).unwrap();
}

/// A head over 64 KiB gets 431.
fn head_too_large_431(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let big = format!("X-Big: {}", "a".repeat(70 * 1024));
    expect_error(&mut p, &proxy_request("GET", &a, "/", &[&big], b""), 431);
    assert_eq!(origin.log().connections, 0);
}

/// Origin port closed: the dial is refused, 502.
fn origin_refused_502(d: Driver) {
    let mut p = Proxy::start(d, &[]);
    let a = format!("127.0.0.1:{}", free_port());
    let c = expect_error(&mut p, &proxy_get(&a, "/"), 502);
    let line = p.wait_access(c.local_addr(), "GET");
    assert_eq!(line.status, 502, "{line:?}");
}

/// CONNECT to a closed port: 502.
fn connect_refused_502(d: Driver) {
    let mut p = Proxy::start(d, &["--connect-ports", "any"]);
    let t = format!("127.0.0.1:{}", free_port());
    expect_error(&mut p, &connect_request(&t), 502);
}

/// An origin answering garbage: 502.
fn bad_upstream_response_502(d: Driver) {
    origin_answer_is_502(d, Origin::fixed(b"SPDY/9 nonsense\r\n\r\n"));
}

/// Dial timeout: 504 after --connect-timeout. The dial hangs because the target listener
/// (backlog 1, never accepting) has a full accept queue, so Linux drops the proxy's SYNs.
fn dial_timeout_504(d: Driver) {
    let hole = BlackHole::start();
    let mut p = Proxy::start(d, &["--connect-timeout", "1s"]);
    let a = hole.addr.to_string();
    let start = Instant::now();
    let c = expect_error(&mut p, &proxy_get(&a, "/"), 504);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "504 after {took:?}, expected ~1s"
    );
    let line = p.wait_access(c.local_addr(), "GET");
    assert_eq!(line.status, 504, "{line:?}");
}

/// CONNECT dial timeout: 504.
fn connect_dial_timeout_504(d: Driver) {
    let hole = BlackHole::start();
    let mut p = Proxy::start(d, &["--connect-timeout", "1s", "--connect-ports", "any"]);
    let t = hole.addr.to_string();
    expect_error(&mut p, &connect_request(&t), 504);
}

/// HTTP/1.1 requires Host.
fn missing_host_400(d: Driver) {
    bad_request(d, &["GET http://{a}/ HTTP/1.1", "Accept: */*"], b"");
}

/// Absolute-form with a scheme other than http:// is not forwarded.
fn https_scheme_in_absolute_form_400(d: Driver) {
    bad_request(d, &["GET https://{a}/ HTTP/1.1", "Host: {a}"], b"");
}

/// The origin closes after reading the request, before any response byte: 502.
fn upstream_closes_before_head_502(d: Driver) {
    origin_answer_is_502(
        d,
        Origin::start(|c| {
            c.read_request();
        }),
    );
}

/// A request already carrying our own Via entry would loop: refused (508 Loop Detected),
/// never forwarded.
fn forwarding_loop_refused(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    expect_error(
        &mut p,
        &proxy_request("GET", &a, "/", &["Via: 1.1 ringway"], b""),
        508,
    );
    assert_eq!(
        origin.log().connections,
        0,
        "a looping request must not be forwarded"
    );
}

/// Sends each request on its own connection to one proxy; collects every case that did not get
/// the exact canned `code` (so one run shows all of them).
fn expect_all(p: &mut Proxy, cases: &[(&str, Vec<u8>)], code: u16) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, req) in cases {
        let mut c = p.connect();
        c.write(req);
        let all = c.read_to_eof();
        if let Err(e) = check_canned(&all, code) {
            problems.push(format!("{what}: sent {}: {e}", show(req)));
        }
    }
    problems
}

/// Smuggling-prone framing and malformed syntax: each must get 400 and never reach the origin.
fn more_malformed_requests_400(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let get = format!("GET http://{a}/ HTTP/1.1");
    let post = format!("POST http://{a}/ HTTP/1.1");
    let host = format!("Host: {a}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("space before colon", head(&[&get, &format!("Host : {a}")])),
        ("space in field name", head(&[&get, &host, "X Y: z"])),
        (
            "negative Content-Length",
            message(&[&post, &host, "Content-Length: -1"], b""),
        ),
        (
            "hex Content-Length",
            message(&[&post, &host, "Content-Length: 0x10"], b""),
        ),
        (
            "plus Content-Length",
            message(&[&post, &host, "Content-Length: +5"], b"hello"),
        ),
        (
            "list Content-Length",
            message(&[&post, &host, "Content-Length: 5, 6"], b"hello"),
        ),
        (
            "chunked not final",
            message(
                &[&post, &host, "Transfer-Encoding: chunked, gzip"],
                b"0\r\n\r\n",
            ),
        ),
        (
            "unknown coding only",
            message(&[&post, &host, "Transfer-Encoding: identity"], b""),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            message(
                &[
                    &format!("POST http://{a}/ HTTP/1.0"),
                    &host,
                    "Transfer-Encoding: chunked",
                ],
                b"0\r\n\r\n",
            ),
        ),
        ("CR in field value", head(&[&get, &host, "X-Cr: a\rb"])),
        ("no version", head(&[&format!("GET http://{a}/"), &host])),
        (
            "lowercase version",
            head(&[&format!("GET http://{a}/ http/1.1"), &host]),
        ),
        (
            "double space in request line",
            head(&[&format!("GET  http://{a}/ HTTP/1.1"), &host]),
        ),
        (
            "userinfo in URI",
            head(&[&format!("GET http://user:pw@{a}/ HTTP/1.1"), &host]),
        ),
        (
            "empty host in URI",
            head(&["GET http:///x HTTP/1.1", "Host: x"]),
        ),
    ];
    let problems = expect_all(&mut p, &cases, 400);
    assert!(
        problems.is_empty(),
        "requests that should get a canned 400:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        origin.log().connections,
        0,
        "a malformed request reached the origin"
    );
}

/// CONNECT targets that are not host:port with a port from 1 to 65535.
fn more_bad_connect_targets_400(d: Driver) {
    let mut p = Proxy::start(d, &["--connect-ports", "any"]);
    let cases: Vec<(&str, Vec<u8>)> = [
        ("port 0", "127.0.0.1:0"),
        ("port too big", "127.0.0.1:65536"),
        ("no port", "127.0.0.1"),
        ("empty port", "127.0.0.1:"),
        ("unclosed IPv6 bracket", "[::1:443"),
        ("absolute URI", "http://127.0.0.1:443/"),
    ]
    .iter()
    .map(|(what, t)| (*what, connect_request(t)))
    .collect();
    let problems = expect_all(&mut p, &cases, 400);
    assert!(
        problems.is_empty(),
        "CONNECT targets that should get a canned 400:\n{}",
        problems.join("\n")
    );
}

/// An origin response with two different Content-Lengths: RFC 9112 section 6.3 says a proxy
/// MUST discard it and answer 502.
fn upstream_conflicting_content_lengths_502(d: Driver) {
    let origin = Origin::fixed(&message(
        &["HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 7"],
        b"hello, !",
    ));
    origin_answer_is_502(d, origin);
}

/// An origin response with Content-Length and chunked: chunked wins and Content-Length must
/// not reach the client (RFC 9112 section 6.3), or the proxy refuses it with 502.
fn upstream_content_length_with_chunked(d: Driver) {
    let origin = Origin::fixed(&message(
        &[
            "HTTP/1.1 200 OK",
            "Content-Length: 100",
            "Transfer-Encoding: chunked",
        ],
        b"5\r\nhello\r\n0\r\n\r\n",
    ));
    let p = Proxy::start(d, &[]);
    let a = origin.authority();
    let mut c = p.connect();
    let resp = c.round_trip(&proxy_get(&a, "/"));
    let (h, body) = split_message(&resp);
    let parsed = Head::parse(h);
    if parsed.status() == 502 {
        let mut all = resp.clone();
        all.extend_from_slice(&c.read_to_eof());
        assert_canned(&all, 502);
        return;
    }
    assert_eq!(parsed.start, "HTTP/1.1 200 OK", "{}", show(&resp));
    assert!(
        parsed.get("content-length").is_none(),
        "Content-Length forwarded next to chunked: {}",
        show(h)
    );
    assert_eq!(
        parsed.get("transfer-encoding"),
        Some("chunked"),
        "{}",
        show(h)
    );
    assert_bytes(&dechunk(body), b"hello", "body");
}
