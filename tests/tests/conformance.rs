//! RFC 9110 / 9112 requirements where the wire matters (issue 15): `OPTIONS *` towards the
//! origin, `Max-Forwards` decremented or answered by the proxy, a Host that is not a host
//! refused, the header-field cap (`--max-header-fields`), whitespace after a chunk size
//! refused, and HTTP/1.x above 1.1 read as 1.1 in both directions — exact bytes at the origin
//! and at the client, and the access-log line where the proxy answers itself.

use ringway_e2e::*;

both_drivers!(
    options_without_path_reaches_the_origin_as_asterisk,
    max_forwards_is_decremented_on_the_wire,
    max_forwards_zero_is_answered_by_the_proxy,
    invalid_host_is_400,
    header_field_cap,
    chunk_size_with_trailing_whitespace_is_400,
    http_1_2_is_forwarded_and_answered_as_1_1,
);

/// `OPTIONS http://a` (no path, no query) reaches the origin as `OPTIONS * HTTP/1.1` (RFC 9112
/// §3.2.4); with a query it keeps `/?q`. Both on one client connection.
fn options_without_path_reaches_the_origin_as_asterisk(d: Driver) {
    let origin = Origin::fixed(&ok_response(b""));
    let p = Proxy::start(d, &[]);
    let a = origin.authority();
    let mut c = p.connect();
    let r = c.round_trip(&proxy_request("OPTIONS", &a, "", &[], b""));
    assert_bytes(&r, &ok_relayed(b""), "OPTIONS response");
    origin.expect_request(
        0,
        &forwarded("OPTIONS", &a, "*", &[], b""),
        "OPTIONS * at the origin",
    );
    let r = c.round_trip(&proxy_request("OPTIONS", &a, "?q=1", &[], b""));
    assert_bytes(&r, &ok_relayed(b""), "OPTIONS ?q response");
    origin.expect_request(
        1,
        &forwarded("OPTIONS", &a, "/?q=1", &[], b""),
        "OPTIONS /?q=1 at the origin",
    );
}

/// OPTIONS and TRACE go out with `Max-Forwards` one less (RFC 9110 §7.6.2); other methods
/// keep the field as sent.
fn max_forwards_is_decremented_on_the_wire(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let p = Proxy::start(d, &[]);
    let a = origin.authority();
    let mut c = p.connect();
    for (i, (method, sent, received)) in [
        ("OPTIONS", "Max-Forwards: 3", "Max-Forwards: 2"),
        ("TRACE", "Max-Forwards: 1", "Max-Forwards: 0"),
        ("GET", "Max-Forwards: 0", "Max-Forwards: 0"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c.round_trip(&proxy_request(method, &a, "/m", &[sent, "X-A: 1"], b""));
        assert_bytes(&r, &ok_relayed(b"ok"), method);
        origin.expect_request(
            i,
            &forwarded(method, &a, "/m", &[received, "X-A: 1"], b""),
            &format!("{method} at the origin"),
        );
    }
}

/// OPTIONS and TRACE with `Max-Forwards: 0` are answered by the proxy and never reach the
/// origin: OPTIONS with `200` and `Content-Length: 0`, TRACE with the request reflected as
/// `message/http` without `Cookie` and credentials. The connection stays open for the next
/// request, and each answer has its access-log line.
fn max_forwards_zero_is_answered_by_the_proxy(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let mut c = p.connect();
    let options = proxy_request("OPTIONS", &a, "/o", &["Max-Forwards: 0"], b"");
    let r = c.round_trip(&options);
    let options_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_bytes(&r, options_answer, "OPTIONS answered by the proxy");
    let line = p.wait_access(c.local_addr(), "OPTIONS");
    assert_eq!(
        line.without_duration(),
        format!(
            "{} OPTIONS http://{a}/o 200 {} {} D",
            c.local_addr(),
            options.len(),
            options_answer.len()
        )
    );
    let trace = proxy_request(
        "TRACE",
        &a,
        "/t",
        &[
            "Max-Forwards: 0",
            "Cookie: session=secret",
            "Authorization: Bearer secret",
            "X-A: 1",
        ],
        b"",
    );
    let reflected = head(&[
        &format!("TRACE http://{a}/t HTTP/1.1"),
        &format!("Host: {a}"),
        "Max-Forwards: 0",
        "X-A: 1",
    ]);
    let trace_answer = message(
        &[
            "HTTP/1.1 200 OK",
            "Content-Type: message/http",
            &format!("Content-Length: {}", reflected.len()),
        ],
        &reflected,
    );
    let r = c.round_trip(&trace);
    assert_bytes(&r, &trace_answer, "TRACE reflected by the proxy");
    let line = p.wait_access(c.local_addr(), "TRACE");
    assert_eq!(line.status, 200);
    assert_eq!(
        (line.rx, line.tx),
        (trace.len() as u64, trace_answer.len() as u64)
    );
    // The same client connection then reaches the origin.
    let r = c.round_trip(&proxy_get(&a, "/after"));
    assert_bytes(&r, &ok_relayed(b"ok"), "GET after the local answers");
    let log = origin.expect_request(0, &forwarded("GET", &a, "/after", &[], b""), "GET");
    assert_eq!(
        log.requests.len(),
        1,
        "neither OPTIONS nor TRACE was forwarded"
    );
}

/// A Host field that is not `uri-host [":" port]` is 400 (RFC 9112 §3.2), even though the
/// URI's authority would replace it; nothing reaches the origin.
fn invalid_host_is_400(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    for host in ["exa mple.invalid", &format!("user@{a}")] {
        let request = head(&[
            &format!("GET http://{a}/ HTTP/1.1"),
            &format!("Host: {host}"),
        ]);
        let mut c = p.connect();
        c.write(&request);
        let answer = c.expect_canned("invalid_host");
        let line = p.wait_access_of(c.local_addr());
        assert_eq!(
            line.without_duration(),
            format!(
                "{} GET http://{a}/ 400 {} {} D reason=invalid_host",
                c.local_addr(),
                request.len(),
                answer.len()
            ),
            "{host}"
        );
    }
    assert_eq!(origin.log().connections, 0, "nothing was forwarded");
}

/// A GET with `Host` and `extra` more fields `X-0: v` ... (`Host` counts as one field).
fn get_with_fields(a: &str, extra: usize) -> (Vec<u8>, Vec<u8>) {
    let fields: Vec<String> = (0..extra).map(|i| format!("X-{i}: v")).collect();
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    (
        proxy_request("GET", a, "/f", &refs, b""),
        forwarded("GET", a, "/f", &refs, b""),
    )
}

/// By default 201 small fields are forwarded whole, and so are 256; the 257th field is 431.
/// `--max-header-fields 20` moves the cap: 20 pass, 21 are 431.
fn header_field_cap(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let a = origin.authority();
    let mut forwarded_so_far = 0;
    for (args, fields, accepted) in [
        (&[][..], 201, true),
        (&[][..], 256, true),
        (&[][..], 257, false),
        (&["--max-header-fields", "20"][..], 20, true),
        (&["--max-header-fields", "20"][..], 21, false),
    ] {
        let mut p = Proxy::start(d, args);
        let (request, at_origin) = get_with_fields(&a, fields - 1);
        let mut c = p.connect();
        if accepted {
            let r = c.round_trip(&request);
            assert_bytes(&r, &ok_relayed(b"ok"), &format!("{fields} fields {args:?}"));
            origin.expect_request(
                forwarded_so_far,
                &at_origin,
                &format!("{fields} fields at the origin"),
            );
            forwarded_so_far += 1;
        } else {
            c.write(&request);
            let answer = c.expect_canned("too_many_headers");
            let line = p.wait_access_of(c.local_addr());
            assert_eq!(
                line.without_duration(),
                format!(
                    "{} GET http://{a}/f 431 {} {} D reason=too_many_headers",
                    c.local_addr(),
                    request.len(),
                    answer.len()
                ),
                "{fields} fields {args:?}"
            );
        }
    }
    assert_eq!(origin.log().requests.len(), 3, "only the accepted ones");
}

/// `5 \r\n` (whitespace after the size, no extension) is 400 (RFC 9112 §7.1.1 allows
/// whitespace only before `;`) and both connections close: the chunk's data never reaches
/// the origin, which sees at most the head and the bytes before the bad one.
fn chunk_size_with_trailing_whitespace_is_400(d: Driver) {
    let origin = Origin::start(|c| {
        let _ = c.conn.try_read_to_eof();
        c.mark("eof");
    });
    let mut p = Proxy::start(d, &[]);
    let a = origin.authority();
    let head_sent = proxy_request("POST", &a, "/c", &["Transfer-Encoding: chunked"], b"");
    let body = b"5 \r\nhello\r\n0\r\n\r\n";
    let mut c = p.connect();
    c.write(&[&head_sent[..], body].concat());
    let answer = c.expect_canned("bad_chunk");
    let line = p.wait_access_of(c.local_addr());
    assert_eq!(
        line.without_duration(),
        format!(
            "{} POST http://{a}/c 400 {} {} D reason=bad_chunk",
            c.local_addr(),
            head_sent.len() + 3,
            answer.len()
        ),
        "RX: the head, `5 ` and the CR that showed the size line was bad"
    );
    let log = origin.wait(WAIT, "the origin saw the proxy close", |l| {
        l.marks.iter().any(|m| m == "eof")
    });
    let most = [
        &forwarded("POST", &a, "/c", &["Transfer-Encoding: chunked"], b"")[..],
        b"5 ",
    ]
    .concat();
    let got = &log.received[0];
    assert!(
        most.starts_with(got),
        "the origin got more than the head and `5 `: {}",
        show(got)
    );
}

/// An `HTTP/1.2` request goes to the origin as HTTP/1.1, and the origin's `HTTP/1.2` answer
/// reaches the client as HTTP/1.1 (RFC 9112 §2.3, RFC 9110 §6.2), on a connection that stays
/// open and pooled.
fn http_1_2_is_forwarded_and_answered_as_1_1(d: Driver) {
    let origin = Origin::fixed(b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let p = Proxy::start(d, &[]);
    let a = origin.authority();
    let mut c = p.connect();
    for i in 0..2 {
        let request = head(&[
            &format!("GET http://{a}/v{i} HTTP/1.2"),
            &format!("Host: {a}"),
            "X-A: 1",
        ]);
        let r = c.round_trip(&request);
        assert_bytes(&r, &ok_relayed(b"ok"), "response as HTTP/1.1");
        origin.expect_request(
            i,
            &forwarded("GET", &a, &format!("/v{i}"), &["X-A: 1"], b""),
            "request as HTTP/1.1 at the origin",
        );
    }
    assert_eq!(
        origin.log().connections,
        1,
        "both directions kept alive and pooled"
    );
}
