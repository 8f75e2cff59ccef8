//! Every canned error: the whole answer byte for byte (status line, `Proxy-Status`, `Content-Type: text/plain`,
//! Content-Length, `Connection: close`, the one-line text for its reason, see
//! [`ringway_e2e::CANNED`]), then EOF, and its access-log line — and nothing reaches the origin
//! when the request is refused before dialing.

use ringway_e2e::*;
use std::time::{Duration, Instant};

/// What the access log must say about a refused request, but for the client, status, TX and
/// duration (which [`expect_error`] knows or cannot know).
struct Logged<'a> {
    /// `METHOD TARGET` as logged: `- -` when the head did not parse as a request.
    method_target: &'a str,
    /// Bytes the proxy took from the client for the request before answering.
    rx: usize,
    reason: &'a str,
}

/// Sends `request` in one write on a new connection and expects exactly the canned answer for
/// `logged.reason` (whose status is `code`) then EOF, and exactly the access-log line `CLIENT METHOD TARGET CODE RX TX DURATION reason=REASON` with TX
/// = the canned bytes received.
///
/// RX does not depend on how the kernel segments the write: the core judges a head only on its
/// first `max_head_bytes + 1` bytes and counts, on refusal, the bytes up to the point of failure
/// (the whole head, the byte that showed a bare line ending, or the limit + 1), never a body or
/// bytes after the head.
fn expect_error(p: &mut Proxy, request: &[u8], code: u16, logged: Logged) -> Conn {
    let mut c = p.connect();
    c.write(request);
    let Logged {
        method_target,
        rx,
        reason,
    } = logged;
    let answer = c.expect_canned(reason);
    let line = p.wait_access_of(c.local_addr());
    assert_eq!(
        line.without_duration(),
        format!(
            "{} {method_target} {code} {rx} {} D reason={reason}",
            c.local_addr(),
            answer.len()
        ),
        "access-log line"
    );
    c
}

/// Length of `message(lines, body)`'s head: what RX counts for a head refused as a whole.
fn head_len(request: &[u8]) -> usize {
    split_message(request).0.len()
}

/// A 400 for `lines` then `body` (with `{a}` replaced by the origin authority everywhere,
/// `method_target` included), logged with `reason` and RX = the head, body not counted;
/// the origin sees nothing.
fn bad_request(d: Driver, lines: &[&str], body: &[u8], method_target: &str, reason: &str) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let p = Proxy::start(d, &[]);
    let a = origin.authority();
    let lines: Vec<String> = lines.iter().map(|l| l.replace("{a}", &a)).collect();
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    let request = message(&refs, body);
    let rx = head_len(&request);
    refused_400(
        p,
        origin,
        &request,
        &method_target.replace("{a}", &a),
        rx,
        reason,
    );
}

/// `request` gets a 400 logged as `method_target`, `rx`, `reason`; `origin` sees nothing.
fn refused_400(
    mut p: Proxy,
    origin: Origin,
    request: &[u8],
    method_target: &str,
    rx: usize,
    reason: &str,
) {
    expect_error(
        &mut p,
        request,
        400,
        Logged {
            method_target,
            rx,
            reason,
        },
    );
    assert_eq!(
        origin.log().connections,
        0,
        "a bad request must not be forwarded"
    );
}

/// Through a proxy with default flags, a plain GET to `origin` gets exactly the canned 502 (see
/// [`expect_error`]), logged with `reason` and RX = the whole request.
///
/// Why: the scenarios of an origin that answers wrongly differ only in that origin.
fn origin_answer_is_502(d: Driver, origin: Origin, reason: &str) {
    get_is_502(d, &origin.authority(), reason);
}

/// A plain GET to `authority` through a proxy with default flags gets exactly the canned 502,
/// logged with `reason` and RX = the whole request (an origin that answers wrongly, or none).
fn get_is_502(d: Driver, authority: &str, reason: &str) {
    let mut p = Proxy::start(d, &[]);
    let get = proxy_get(authority, "/");
    expect_error(
        &mut p,
        &get,
        502,
        Logged {
            method_target: &format!("GET http://{authority}/"),
            rx: get.len(),
            reason,
        },
    );
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
    bad_request(
        d,
        &["GET / HTTP/1.1", "Host: {a}"],
        b"",
        "GET /",
        "origin_form",
    );
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
        "POST http://{a}/",
        "cl_and_te",
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
        "POST http://{a}/",
        "duplicate_content_length",
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
        "GET http://{a}/",
        "malformed_head",
    );
}

/// RX stops at the bare LF: the byte that showed the error.
fn bare_lf_400(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let p = Proxy::start(d, &[]);
    let a = origin.authority();
    let through_lf = format!("GET http://{a}/ HTTP/1.1\r\nHost: {a}\n");
    let request = format!("{through_lf}X-Bare: lf\r\n\r\n");
    refused_400(
        p,
        origin,
        request.as_bytes(),
        &format!("GET http://{a}/"),
        through_lf.len(),
        "bare_line_ending",
    );
}

fn nul_in_header_400(d: Driver) {
    bad_request(
        d,
        &["GET http://{a}/ HTTP/1.1", "Host: {a}", "X-Nul: a\0b"],
        b"",
        "GET http://{a}/",
        "malformed_head",
    );
}

fn two_host_headers_400(d: Driver) {
    bad_request(
        d,
        &["GET http://{a}/ HTTP/1.1", "Host: {a}", "Host: {a}"],
        b"",
        "GET http://{a}/",
        "duplicate_host",
    );
}

fn connect_bad_port_syntax_400(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let mut p = Proxy::start(d, &["--connect-ports", "any"]);
    let request = connect_request("127.0.0.1:abc");
    expect_error(
        &mut p,
        &request,
        400,
        Logged {
            method_target: "CONNECT 127.0.0.1:abc",
            rx: request.len(),
            reason: "bad_connect_target",
        },
    );
    assert_eq!(echo.log().connections, 0);
}

fn http2_version_505(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let request = head(&[&format!("GET http://{a}/ HTTP/2.0"), &format!("Host: {a}")]);
    expect_error(
        &mut p,
        &request,
        505,
        Logged {
            method_target: &format!("GET http://{a}/"),
            rx: request.len(),
            reason: "unsupported_version",
        },
    );
    assert_eq!(origin.log().connections, 0);
}

/// Default --connect-ports is 443: CONNECT to the echo port is refused before dialing.
fn connect_port_not_allowed_403(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let mut p = Proxy::start(d, &[]);
    let t = echo.addr.to_string();
    let request = connect_request(&t);
    expect_error(
        &mut p,
        &request,
        403,
        Logged {
            method_target: &format!("CONNECT {t}"),
            rx: request.len(),
            reason: "connect_port_denied",
        },
    );
    assert_eq!(echo.log().connections, 0, "a denied CONNECT must not dial");
}

/// --connect-ports with a list that lacks the port also refuses.
fn connect_port_not_in_list_403(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let mut p = Proxy::start(d, &["--connect-ports", "443,8443"]);
    let t = echo.addr.to_string();
    let request = connect_request(&t);
    expect_error(
        &mut p,
        &request,
        403,
        Logged {
            method_target: &format!("CONNECT {t}"),
            rx: request.len(),
            reason: "connect_port_denied",
        },
    );
    assert_eq!(echo.log().connections, 0);
}

/// A client outside --allow-client gets 403 and nothing is forwarded.
fn client_not_allowed_403(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &["--allow-client", "10.0.0.0/8"]);
    let a = origin.authority();
    let get = proxy_get(&a, "/");
    expect_error(
        &mut p,
        &get,
        403,
        Logged {
            method_target: &format!("GET http://{a}/"),
            rx: get.len(),
            reason: "client_denied",
        },
    );
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
        let request = head(&refs);
        c.write(&request);
        let body = "This proxy needs a user name and password (Proxy-Authorization: Basic).\n";
        let want = format!(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"ringway\"\r\n\
Proxy-Status: ringway; error=http_request_denied\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        assert_bytes(&c.read_to_eof(), want.as_bytes(), "407 answer");
        assert_eq!(
            p.wait_access_of(c.local_addr()).without_duration(),
            format!(
                "{} GET http://{a}/ 407 {} {} D reason=auth_required",
                c.local_addr(),
                request.len(),
                want.len()
            )
        );
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
    assert_bytes(
        &c.read_response("GET"),
        &ok_relayed(b"ok"),
        "answer with credentials",
    );
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
    expect_error(
        &mut p,
        &proxy_request("GET", &a, "/", &[&big], b""),
        431,
        Logged {
            method_target: &format!("GET http://{a}/"),
            // The limit (64 KiB) + 1: the first byte past it decides.
            rx: 64 * 1024 + 1,
            reason: "head_too_large",
        },
    );
    assert_eq!(origin.log().connections, 0);
}

/// Origin port closed: the dial is refused, 502.
fn origin_refused_502(d: Driver) {
    get_is_502(d, &format!("127.0.0.1:{}", free_port()), "dial_failed");
}

/// CONNECT to a closed port: 502.
fn connect_refused_502(d: Driver) {
    let mut p = Proxy::start(d, &["--connect-ports", "any"]);
    let t = format!("127.0.0.1:{}", free_port());
    let request = connect_request(&t);
    expect_error(
        &mut p,
        &request,
        502,
        Logged {
            method_target: &format!("CONNECT {t}"),
            rx: request.len(),
            reason: "dial_failed",
        },
    );
}

/// An origin answering garbage: 502.
fn bad_upstream_response_502(d: Driver) {
    origin_answer_is_502(d, Origin::fixed(b"SPDY/9 nonsense\r\n\r\n"), "bad_response");
}

/// Dial timeout: 504 after --connect-timeout. The dial hangs because the target listener
/// (backlog 1, never accepting) has a full accept queue, so Linux drops the proxy's SYNs.
fn dial_timeout_504(d: Driver) {
    let hole = BlackHole::start();
    let mut p = Proxy::start(d, &["--connect-timeout", "1s"]);
    let a = hole.addr.to_string();
    let get = proxy_get(&a, "/");
    let start = Instant::now();
    expect_error(
        &mut p,
        &get,
        504,
        Logged {
            method_target: &format!("GET http://{a}/"),
            rx: get.len(),
            reason: "dial_timeout",
        },
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "504 after {took:?}, expected ~1s"
    );
}

/// CONNECT dial timeout: 504.
fn connect_dial_timeout_504(d: Driver) {
    let hole = BlackHole::start();
    let mut p = Proxy::start(d, &["--connect-timeout", "1s", "--connect-ports", "any"]);
    let t = hole.addr.to_string();
    let request = connect_request(&t);
    expect_error(
        &mut p,
        &request,
        504,
        Logged {
            method_target: &format!("CONNECT {t}"),
            rx: request.len(),
            reason: "dial_timeout",
        },
    );
}

/// HTTP/1.1 requires Host.
fn missing_host_400(d: Driver) {
    bad_request(
        d,
        &["GET http://{a}/ HTTP/1.1", "Accept: */*"],
        b"",
        "GET http://{a}/",
        "missing_host",
    );
}

/// Absolute-form with a scheme other than http:// is not forwarded.
fn https_scheme_in_absolute_form_400(d: Driver) {
    bad_request(
        d,
        &["GET https://{a}/ HTTP/1.1", "Host: {a}"],
        b"",
        "GET https://{a}/",
        "unsupported_scheme",
    );
}

/// The origin closes after reading the request, before any response byte: 502.
fn upstream_closes_before_head_502(d: Driver) {
    origin_answer_is_502(
        d,
        Origin::start(|c| {
            c.read_request();
        }),
        "upstream_closed",
    );
}

/// A request already carrying our own Via entry would loop: refused (508 Loop Detected),
/// never forwarded.
fn forwarding_loop_refused(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let request = proxy_request("GET", &a, "/", &["Via: 1.1 ringway"], b"");
    expect_error(
        &mut p,
        &request,
        508,
        Logged {
            method_target: &format!("GET http://{a}/"),
            rx: request.len(),
            reason: "forwarding_loop",
        },
    );
    assert_eq!(
        origin.log().connections,
        0,
        "a looping request must not be forwarded"
    );
}

/// One request of a table, the access-log reason it must be refused with, and so the exact
/// canned answer it must get.
struct Case<'a> {
    what: &'a str,
    request: Vec<u8>,
    reason: &'a str,
}

fn case<'a>(what: &'a str, request: Vec<u8>, reason: &'a str) -> Case<'a> {
    Case {
        what,
        request,
        reason,
    }
}

/// Sends each request on its own connection to one proxy; collects every case that did not get
/// exactly the canned answer for its reason then EOF (only the head for a HEAD request), or
/// whose access-log line does not say `STATUS`, TX = the bytes received and `reason=REASON`
/// (so one run shows all of them).
fn expect_all(p: &mut Proxy, cases: &[Case]) -> Vec<String> {
    let mut problems = Vec::new();
    for Case {
        what,
        request,
        reason,
    } in cases
    {
        let mut c = p.connect();
        c.write(request);
        let all = c.read_to_eof();
        let want = canned_answer(reason, request.starts_with(b"HEAD "));
        if all != want {
            problems.push(format!(
                "{what}: sent {}\n  expected: {}\n  actual:   {}",
                show(request),
                show(&want),
                show(&all)
            ));
            continue;
        }
        let line = p.wait_access_of(c.local_addr());
        let logged = (line.status, line.tx, line.extra.clone());
        let status: u16 = std::str::from_utf8(&want[9..12]).unwrap().parse().unwrap();
        if logged != (status, all.len() as u64, vec![format!("reason={reason}")]) {
            problems.push(format!("{what}: sent {}: logged {line:?}", show(request)));
        }
    }
    problems
}

/// Smuggling-prone framing and malformed syntax: each must get exactly its canned 400 and never
/// reach the origin.
fn more_malformed_requests_400(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let get = format!("GET http://{a}/ HTTP/1.1");
    let post = format!("POST http://{a}/ HTTP/1.1");
    let host = format!("Host: {a}");
    let cases = [
        case(
            "space before colon",
            head(&[&get, &format!("Host : {a}")]),
            "malformed_head",
        ),
        case(
            "space in field name",
            head(&[&get, &host, "X Y: z"]),
            "malformed_head",
        ),
        case(
            "negative Content-Length",
            message(&[&post, &host, "Content-Length: -1"], b""),
            "invalid_content_length",
        ),
        case(
            "hex Content-Length",
            message(&[&post, &host, "Content-Length: 0x10"], b""),
            "invalid_content_length",
        ),
        case(
            "plus Content-Length",
            message(&[&post, &host, "Content-Length: +5"], b"hello"),
            "invalid_content_length",
        ),
        case(
            "list Content-Length",
            message(&[&post, &host, "Content-Length: 5, 6"], b"hello"),
            "invalid_content_length",
        ),
        case(
            "chunked not final",
            message(
                &[&post, &host, "Transfer-Encoding: chunked, gzip"],
                b"0\r\n\r\n",
            ),
            "bad_transfer_encoding",
        ),
        case(
            "unknown coding only",
            message(&[&post, &host, "Transfer-Encoding: identity"], b""),
            "bad_transfer_encoding",
        ),
        case(
            "Transfer-Encoding in HTTP/1.0",
            message(
                &[
                    &format!("POST http://{a}/ HTTP/1.0"),
                    &host,
                    "Transfer-Encoding: chunked",
                ],
                b"0\r\n\r\n",
            ),
            "te_in_http10",
        ),
        case(
            "CR in field value",
            head(&[&get, &host, "X-Cr: a\rb"]),
            "bare_line_ending",
        ),
        case(
            "no version",
            head(&[&format!("GET http://{a}/"), &host]),
            "malformed_head",
        ),
        case(
            "lowercase version",
            head(&[&format!("GET http://{a}/ http/1.1"), &host]),
            "malformed_head",
        ),
        case(
            "double space in request line",
            head(&[&format!("GET  http://{a}/ HTTP/1.1"), &host]),
            "malformed_head",
        ),
        case(
            "userinfo in URI",
            head(&[&format!("GET http://user:pw@{a}/ HTTP/1.1"), &host]),
            "bad_target",
        ),
        case(
            "empty host in URI",
            head(&["GET http:///x HTTP/1.1", "Host: x"]),
            "bad_target",
        ),
        // A refused HEAD gets the head only, its Content-Length still that of the text.
        case(
            "HEAD with userinfo in URI",
            head(&[&format!("HEAD http://user:pw@{a}/ HTTP/1.1"), &host]),
            "bad_target",
        ),
    ];
    let problems = expect_all(&mut p, &cases);
    assert!(
        problems.is_empty(),
        "requests that should get their exact canned 400:\n{}",
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
    let cases: Vec<Case> = [
        ("port 0", "127.0.0.1:0"),
        ("port too big", "127.0.0.1:65536"),
        ("no port", "127.0.0.1"),
        ("empty port", "127.0.0.1:"),
        ("unclosed IPv6 bracket", "[::1:443"),
        ("absolute URI", "http://127.0.0.1:443/"),
    ]
    .iter()
    .map(|(what, t)| case(what, connect_request(t), "bad_connect_target"))
    .collect();
    let problems = expect_all(&mut p, &cases);
    assert!(
        problems.is_empty(),
        "CONNECT targets that should get the exact canned 400:\n{}",
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
    origin_answer_is_502(d, origin, "bad_response");
}

/// An origin response with Content-Length and chunked: chunked wins and Content-Length must
/// not reach the client (RFC 9112 section 6.3). The core decides this from the head alone, so
/// there is one outcome: the chunked body relayed untouched without Content-Length.
fn upstream_content_length_with_chunked(d: Driver) {
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let origin = Origin::fixed(&message(
        &[
            "HTTP/1.1 200 OK",
            "Content-Length: 100",
            "Transfer-Encoding: chunked",
        ],
        body,
    ));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let mut c = p.connect();
    let get = proxy_get(&a, "/");
    let resp = c.round_trip(&get);
    let want = message(
        &[
            "HTTP/1.1 200 OK",
            "Transfer-Encoding: chunked",
            "Via: 1.1 ringway",
        ],
        body,
    );
    assert_bytes(&resp, &want, "response without Content-Length");
    assert_eq!(
        p.wait_access_of(c.local_addr()).without_duration(),
        format!(
            "{} GET http://{a}/ 200 {} {} D",
            c.local_addr(),
            get.len(),
            want.len()
        )
    );
}
