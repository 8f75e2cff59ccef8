//! Conversations with the connection machine: bytes and events in, exact bytes and actions out.

mod support;

use std::time::Duration;

use ringway_core::tunnel::Direction;
use ringway_core::{Config, DialError, Output};
use support::{canned, dial, line, log, Event, Script};

const GET: &[u8] = b"GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n";
const GET_UP: &str = "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\nVia: 1.1 ringway\r\n\r\n";
const OK5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\nhello";
const OK5_DOWN: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 ringway\r\n\r\nhello";

/// The access-log line of `GET` answered with `status` after exactly `tx` bytes to the client.
fn get_line(status: u16, tx: usize, tail: &str) -> String {
    line("GET http://example.com/a?b=1", status, GET.len(), tx, tail)
}

/// The access-log line of `GET` relayed as `OK5_DOWN`.
fn ok5_line() -> String {
    get_line(200, OK5_DOWN.len(), "0.000ms")
}

#[test]
fn plain_get_is_rewritten_forwarded_and_logged() {
    let mut s = Script::new();
    s.client(GET);
    assert_eq!(s.take_events(), [dial("example.com:80", true)]);
    assert_eq!(
        s.take_upstream(),
        "",
        "nothing goes upstream before the dial succeeds"
    );
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), GET_UP);
    assert!(s.conn.wants_upstream_read());
    assert!(
        !s.conn.wants_client_read(),
        "the request is complete: no more client reads"
    );
    s.relays(OK5, OK5_DOWN);
    assert_eq!(
        s.take_events(),
        [
            Event::Release,
            log(&format!(
                "127.0.0.1:50000 GET http://example.com/a?b=1 200 {} {} 0.000ms",
                GET.len(),
                OK5_DOWN.len()
            ))
        ]
    );
    assert!(!s.is_closed());
    assert!(
        s.conn.wants_client_read(),
        "keep-alive: ready for the next request"
    );
}

#[test]
fn keep_alive_serves_a_second_request_on_the_same_client_connection() {
    let mut s = Script::forwarded(GET);
    assert_eq!(s.take_upstream(), GET_UP);
    s.relays(OK5, OK5_DOWN);
    s.expect_released(ok5_line());
    let second = b"GET http://other.example:8080/ HTTP/1.1\r\nHost: other.example:8080\r\n\r\n";
    s.client(second);
    assert_eq!(s.take_events(), [dial("other.example:8080", true)]);
    s.dial_ok(true);
    assert_eq!(
        s.take_upstream(),
        "GET / HTTP/1.1\r\nHost: other.example:8080\r\nVia: 1.1 ringway\r\n\r\n"
    );
    let down = "HTTP/1.1 204 No Content\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(b"HTTP/1.1 204 No Content\r\n\r\n", down);
    s.expect_released(line(
        "GET http://other.example:8080/",
        204,
        second.len(),
        down.len(),
        "0.000ms",
    ));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut s = Script::new();
    let second = b"GET http://example.com/second HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let two = [GET, second].concat();
    s.client(&two);
    assert_eq!(
        s.take_events(),
        [dial("example.com:80", true)],
        "one request at a time"
    );
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), GET_UP);
    s.upstream(OK5);
    assert_eq!(
        s.take_events(),
        [
            Event::Release,
            log(&ok5_line()),
            dial("example.com:80", true)
        ],
        "the second request starts after the first ends; the first's rx excludes the second"
    );
    s.dial_ok(true);
    assert_eq!(
        s.take_upstream(),
        "GET /second HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 ringway\r\n\r\n"
    );
    let second_down = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 ringway\r\n\r\nhi";
    s.relays(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        format!("{OK5_DOWN}{second_down}"),
    );
    s.expect_released(line(
        "GET http://example.com/second",
        200,
        second.len(),
        second_down.len(),
        "0.000ms",
    ));
}

#[test]
fn content_length_request_body_streams_through() {
    let head = b"POST http://h:81/up HTTP/1.1\r\nHost: h:81\r\nContent-Length: 10\r\n\r\n";
    let mut s = Script::forwarded(&[&head[..], b"0123"].concat());
    assert_eq!(
        s.take_upstream(),
        "POST /up HTTP/1.1\r\nHost: h:81\r\nContent-Length: 10\r\nVia: 1.1 ringway\r\n\r\n0123"
    );
    assert!(s.conn.wants_client_read());
    s.client(b"456789NEXT");
    assert_eq!(
        s.take_upstream(),
        "456789",
        "bytes after the body are the next request, not body"
    );
    assert!(!s.conn.wants_client_read());
    let down = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", down);
    s.expect_released(line(
        "POST http://h:81/up",
        201,
        head.len() + 10,
        down.len(),
        "0.000ms",
    ));
}

#[test]
fn chunked_request_body_passes_through_untouched() {
    let mut s = Script::new();
    let body = "5;ext=x\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n";
    s.client(
        format!("POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
            .as_bytes(),
    );
    s.dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n{body}")
    );
    assert!(!s.conn.wants_client_read(), "the last chunk ended the body");
}

#[test]
fn malformed_chunked_request_body_is_a_400_and_both_sides_close() {
    let head = b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let answer = canned("400 Bad Request", "The chunked request body is malformed.");
    // (body sent, the valid chunks before the bad framing, forwarded as they are)
    for (body, valid) in [
        (&b"zz\r\nhello\r\n"[..], &b""[..]),
        (b"3\r\nabc\r\nzz\r\nhello\r\n", b"3\r\nabc\r\n"),
    ] {
        for bytewise in [false, true] {
            let mut s = Script::forwarded(head);
            assert_eq!(
                s.take_upstream(),
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n"
            );
            if bytewise {
                s.client_bytewise(body);
            } else {
                s.client(body);
            }
            assert_eq!(
                s.take_upstream().as_bytes(),
                valid,
                "nothing of a bad chunk is forwarded"
            );
            assert_eq!(s.take_client(), answer);
            // rx: the head, the forwarded chunks, and the one byte that showed the framing
            // was bad (a refused head likewise counts through its bad byte).
            s.expect_cut_off(line(
                "POST http://h/",
                400,
                head.len() + valid.len() + 1,
                answer.len(),
                "0.000ms reason=bad_chunk",
            ));
        }
    }
}

#[test]
fn chunked_response_passes_through_to_http11_clients() {
    let mut s = Script::forwarded(GET);
    let body = "4\r\nwiki\r\n5;a=b\r\npedia\r\n0\r\nExpires: never\r\n\r\n";
    s.upstream(
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Expires\r\n\r\n{}",
            &body[..9]
        )
        .as_bytes(),
    );
    let down =
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n{body}");
    s.relays(&body.as_bytes()[9..], &down);
    s.expect_released(get_line(200, down.len(), "0.000ms"));
    assert!(!s.is_closed());
}

#[test]
fn chunked_response_is_dechunked_for_http10_clients_and_closed() {
    let mut s = Script::new();
    let request = b"GET http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    s.client(request).dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.0 ringway\r\n\r\n"
    );
    let down = "HTTP/1.1 200 OK\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nwikipedia";
    s.relays(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n",
        down,
    );
    // The upstream side ended cleanly; close-delimited for the client.
    s.expect_released_then_closed(line(
        "GET http://h/",
        200,
        request.len(),
        down.len(),
        "0.000ms",
    ));
}

#[test]
fn http10_keep_alive_with_a_length_stays_open() {
    let mut s = Script::new();
    let request = b"GET http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    s.client(request).dial_ok(false).upstream(OK5);
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_eq!(s.take_client(), down);
    s.expect_released(line(
        "GET http://h/",
        200,
        request.len(),
        down.len(),
        "0.000ms",
    ));
    assert!(!s.is_closed());
    let mut s = Script::new();
    let request = b"GET http://h/ HTTP/1.0\r\n\r\n";
    s.client(request).dial_ok(false).upstream(OK5);
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_eq!(s.take_client(), down);
    s.expect_released_then_closed_at_once(line(
        "GET http://h/",
        200,
        request.len(),
        down.len(),
        "0.000ms",
    ));
    assert!(s.is_closed());
}

#[test]
fn close_delimited_response_ends_at_upstream_eof() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nsome ");
    let down =
        "HTTP/1.1 200 OK\r\nServer: old\r\nConnection: close\r\nVia: 1.0 ringway\r\n\r\nsome bytes";
    s.relays(b"bytes", down);
    assert_eq!(s.take_events(), []);
    s.upstream_eof();
    // The end of a close-delimited body is its normal end: no reason.
    s.expect_cut_off(get_line(200, down.len(), "0.000ms"));
}

#[test]
fn client_connection_close_is_honoured() {
    let mut s = Script::new();
    let request = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    s.client(request).dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringway\r\n\r\n"
    );
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello";
    s.relays(OK5, down);
    s.expect_released_then_closed_at_once(line(
        "GET http://h/",
        200,
        request.len(),
        down.len(),
        "0.000ms",
    ));
}

#[test]
fn upstream_connection_close_means_no_reuse() {
    let mut s = Script::forwarded(GET);
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        down,
    );
    assert_eq!(
        s.take_events(),
        [
            Event::CloseUpstream,
            log(&get_line(200, down.len(), "0.000ms"))
        ]
    );
    assert!(
        !s.is_closed(),
        "the client connection is not the upstream's"
    );
}

#[test]
fn extra_upstream_bytes_poison_the_upstream_connection() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA");
    assert_eq!(s.take_client(), OK5_DOWN, "nothing of the extra bytes");
    assert_eq!(
        s.take_events(),
        [Event::CloseUpstream, log(&ok5_line())],
        "the exchange itself completed: no reason"
    );
}

#[test]
fn head_responses_and_304_have_no_body() {
    let mut s = Script::new();
    let head = b"HEAD http://h/ HTTP/1.1\r\nHost: h\r\n\r\n";
    s.client(head).dial_ok(false);
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", down);
    s.expect_released(line(
        "HEAD http://h/",
        200,
        head.len(),
        down.len(),
        "0.000ms",
    ));
    let get = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n";
    s.client(get).dial_ok(true);
    let down = "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", down);
    s.expect_released(line("GET http://h/", 304, get.len(), down.len(), "0.000ms"));
}

#[test]
fn expect_100_continue_round_trip() {
    let mut s = Script::new();
    let head =
        b"PUT http://h/f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    s.client(head);
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\nVia: 1.1 ringway\r\n\r\n");
    assert!(s.conn.wants_client_read());
    let interim = "HTTP/1.1 100 Continue\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(b"HTTP/1.1 100 Continue\r\n\r\n", interim);
    s.client(b"data");
    assert_eq!(s.take_upstream(), "data");
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", down);
    s.expect_released(line(
        "PUT http://h/f",
        200,
        head.len() + 4,
        interim.len() + down.len(),
        "0.000ms",
    ));
}

#[test]
fn early_final_answer_to_expect_closes_both_sides() {
    let mut s = Script::new();
    let head =
        b"PUT http://h/f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    s.client(head).dial_ok(false);
    let down = "HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(b"HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\n\r\n", down);
    s.expect_cut_off(line(
        "PUT http://h/f",
        413,
        head.len(),
        down.len(),
        "0.000ms reason=response_before_request_end",
    ));
}

#[test]
fn interim_responses_reach_http11_clients_only() {
    let mut s = Script::forwarded(GET);
    let hints =
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
        hints,
    );
    s.relays(OK5, OK5_DOWN);
    s.expect_released(get_line(200, hints.len() + OK5_DOWN.len(), "0.000ms"));
    let request = b"GET http://h/ HTTP/1.0\r\n\r\n";
    let mut s = Script::forwarded(request);
    s.upstream(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_eq!(s.take_client(), down, "no 100 for an HTTP/1.0 client");
    s.expect_released_then_closed_at_once(line(
        "GET http://h/",
        200,
        request.len(),
        down.len(),
        "0.000ms",
    ));
}

#[test]
fn truncated_length_response_is_never_completed() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    s.upstream_eof();
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_eq!(s.take_client(), down);
    s.expect_cut_off(get_line(
        200,
        down.len(),
        "0.000ms reason=upstream_truncated",
    ));
}

#[test]
fn truncated_chunked_response_never_gets_a_last_chunk() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    s.upstream_eof();
    let down = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n5\r\nhel";
    assert_eq!(s.take_client(), down);
    s.expect_cut_off(get_line(
        200,
        down.len(),
        "0.000ms reason=upstream_truncated",
    ));
}

#[test]
fn bad_chunked_response_closes_without_completing() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX");
    let down =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n5\r\nhello";
    assert_eq!(
        s.take_client(),
        down,
        "the valid prefix goes out, however the bytes were split; never a last chunk"
    );
    s.expect_cut_off(get_line(
        200,
        down.len(),
        "0.000ms reason=bad_response_body",
    ));
    assert!(s.is_closed());
}

#[test]
fn upstream_closing_before_answering_is_a_502() {
    let mut s = Script::forwarded(GET);
    s.upstream_eof();
    let answer = canned(
        "502 Bad Gateway",
        "The upstream server closed the connection without a response.",
    );
    assert_eq!(s.take_client(), answer);
    s.expect_cut_off(get_line(
        502,
        answer.len(),
        "0.000ms reason=upstream_closed",
    ));
}

const INVALID_RESPONSE: &str = "The upstream server sent an invalid response.";

/// The events after `GET` was answered with an invalid response: the canned 502.
fn invalid_response_events() -> [Event; 3] {
    let tx = canned("502 Bad Gateway", INVALID_RESPONSE).len();
    [
        Event::CloseUpstream,
        log(&get_line(502, tx, "0.000ms reason=bad_response")),
        Event::Close,
    ]
}

#[test]
fn invalid_response_head_is_a_502() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\nX: y\r\n\r\n",
    ] {
        let mut s = Script::forwarded(GET);
        s.upstream(bad);
        s.expect_canned_then_close(
            "502 Bad Gateway",
            INVALID_RESPONSE,
            &invalid_response_events(),
        );
    }
    let mut s = Script::forwarded(GET);
    s.upstream(&vec![b'x'; 70_000]);
    // An endless response head is a 502.
    s.expect_canned_then_close(
        "502 Bad Gateway",
        INVALID_RESPONSE,
        &invalid_response_events(),
    );
}

#[test]
fn stale_pooled_connection_is_retried_once_for_idempotent_requests() {
    let mut s = Script::new();
    s.client(GET);
    assert_eq!(s.take_events(), [dial("example.com:80", true)]);
    s.dial_ok(true);
    assert_eq!(s.take_upstream(), GET_UP);
    s.upstream_eof();
    assert_eq!(
        s.take_events(),
        [Event::CloseUpstream, dial("example.com:80", false)]
    );
    assert_eq!(
        s.take_client(),
        "",
        "the client saw nothing of the failed attempt"
    );
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), GET_UP, "the same head again");
    s.relays(OK5, OK5_DOWN);
    s.expect_released(ok5_line());
    // A second failure on the fresh connection is not retried.
    let mut s = Script::new();
    s.client(GET)
        .dial_ok(true)
        .upstream_eof()
        .dial_ok(false)
        .upstream_eof();
    let answer = canned(
        "502 Bad Gateway",
        "The upstream server closed the connection without a response.",
    );
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [
            Event::CloseUpstream,
            Event::CloseUpstream,
            log(&get_line(
                502,
                answer.len(),
                "0.000ms reason=upstream_closed"
            )),
            Event::Close
        ],
        "both attempts' connections closed, no third dial"
    );
}

#[test]
fn non_idempotent_requests_are_not_retried() {
    let mut s = Script::new();
    let request = b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi";
    s.client(request).dial_ok(true).upstream_eof();
    let answer = canned(
        "502 Bad Gateway",
        "The upstream server closed the connection without a response.",
    );
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [
            Event::CloseUpstream,
            log(&line(
                "POST http://h/",
                502,
                request.len(),
                answer.len(),
                "0.000ms reason=upstream_closed"
            )),
            Event::Close
        ],
        "no second dial"
    );
}

#[test]
fn dial_failures_are_answered() {
    for (err, status, message, reason) in [
        (
            None,
            "502 Bad Gateway",
            "The upstream host name could not be resolved.",
            "dns_failed",
        ),
        (
            Some(DialError::Refused),
            "502 Bad Gateway",
            "The upstream server could not be reached.",
            "dial_failed",
        ),
        (
            Some(DialError::Timeout),
            "504 Gateway Timeout",
            "The upstream server did not answer the connection in time.",
            "dial_timeout",
        ),
    ] {
        let mut s = Script::new();
        match err {
            // A failed lookup of any kind is an empty answer.
            None => {
                s.manual_dns().client(GET);
                assert_eq!(s.take_events(), [Event::Resolve("example.com:80".into())]);
                s.resolved(&[]);
            }
            Some(err) => {
                s.client(GET).dial_err(err);
            }
        }
        let answer = canned(status, message);
        assert_eq!(s.take_client(), answer);
        assert_eq!(
            s.take_events(),
            [
                log(&get_line(
                    status[..3].parse().unwrap(),
                    answer.len(),
                    &format!("0.000ms reason={reason}")
                )),
                Event::Close
            ],
            "no CloseUpstream: there was no upstream"
        );
    }
}

#[test]
fn the_core_times_out_a_hanging_dial() {
    let mut s = Script::new();
    let request = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    s.client(request);
    assert_eq!(s.take_events(), [dial("example.com:443", false)]);
    s.wait(Duration::from_secs(9));
    assert_eq!(s.take_client(), "", "not yet");
    s.wait(Duration::from_secs(1));
    let message = "The upstream server did not answer the connection in time.";
    s.expect_canned_then_close(
        "504 Gateway Timeout",
        message,
        &[
            log(&line(
                "CONNECT example.com:443",
                504,
                request.len(),
                canned("504 Gateway Timeout", message).len(),
                "10000.000ms reason=dial_timeout",
            )),
            Event::Close,
        ],
    );
    // A dial result after the timeout is ignored.
    let late = match s.trace.iter().find(|o| matches!(o, Output::Connect { .. })) {
        Some(Output::Connect { attempt, .. }) => *attempt,
        _ => panic!("no dial"),
    };
    s.conn
        .handle_dial(s.now, late, Ok(ringway_core::Dialed { reused: false }));
    assert!(s.conn.poll_output().is_none());
}

#[test]
fn connect_tunnel_with_pipelined_bytes_and_half_close() {
    let mut s = Script::new();
    s.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Connection: keep-alive\r\n\r\n\x16\x03\x01hello");
    assert_eq!(s.take_events(), [dial("example.com:443", false)]);
    s.dial_ok(false);
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 Connection Established\r\n\r\n"
    );
    assert_eq!(
        s.take_events(),
        [Event::StartTunnel(b"\x16\x03\x01hello".to_vec(), vec![])]
    );
    assert!(s.conn.is_tunnel());
    s.relayed(Direction::ClientToUpstream, 100);
    s.relayed(Direction::UpstreamToClient, 3000);
    s.client_eof();
    assert_eq!(s.take_events(), [Event::ShutdownUpstreamWrite]);
    s.relayed(Direction::UpstreamToClient, 21);
    s.upstream_eof();
    assert_eq!(
        s.take_events(),
        [
            log("127.0.0.1:50000 CONNECT example.com:443 200 108 3021 0.000ms"),
            Event::Close
        ],
        "both directions done: close, no separate shutdown needed"
    );
}

#[test]
fn tunnel_half_close_from_the_upstream_side_first() {
    let mut s = Script::new();
    s.client(b"CONNECT [2001:4860::1]:8443 HTTP/1.1\r\nHost: [2001:4860::1]:8443\r\n\r\n")
        .dial_ok(false);
    assert_eq!(s.take_events(), [Event::StartTunnel(vec![], vec![])]);
    s.upstream_eof();
    assert_eq!(s.take_events(), [Event::ShutdownClientWrite]);
    s.upstream_eof();
    assert_eq!(s.take_events(), [], "a repeated EOF is nothing new");
    s.client_eof();
    assert_eq!(
        s.take_events(),
        [
            log("127.0.0.1:50000 CONNECT [2001:4860::1]:8443 200 0 0 0.000ms"),
            Event::Close
        ]
    );
}

#[test]
fn idle_tunnel_is_closed_once() {
    let mut s = Script::new();
    s.client(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n")
        .dial_ok(false);
    assert_eq!(s.take_events(), [Event::StartTunnel(vec![], vec![])]);
    s.wait(Duration::from_secs(299));
    assert_eq!(s.take_events(), []);
    s.relayed(Direction::UpstreamToClient, 5);
    s.wait(Duration::from_secs(299));
    assert_eq!(s.take_events(), [], "traffic moved the deadline");
    s.wait(Duration::from_secs(1));
    // Tunnel counts are payload only; the duration runs from the CONNECT head (599 s ago).
    s.expect_cut_off(line(
        "CONNECT h:443",
        200,
        0,
        5,
        "599000.000ms reason=tunnel_idle",
    ));
    s.wait(Duration::from_secs(1000));
    assert_eq!(s.take_events(), []);
}

#[test]
fn websocket_upgrade_becomes_a_tunnel() {
    let mut s = Script::forwarded(b"GET http://h/chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n");
    assert_eq!(
        s.take_upstream(),
        "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\nVia: 1.1 ringway\r\n\r\n"
    );
    s.relays(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\n\x81\x05hello",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\nConnection: upgrade\r\nVia: 1.1 ringway\r\n\r\n",
    );
    assert_eq!(
        s.take_events(),
        [Event::StartTunnel(vec![], b"\x81\x05hello".to_vec())],
        "the frame after the 101 head is handed over as tunnel payload for the client"
    );
    assert!(s.conn.is_tunnel());
    assert_eq!(
        s.conn.tunnel().unwrap().bytes(Direction::UpstreamToClient),
        7
    );
}

#[test]
fn unexpected_101_is_a_502() {
    let mut s = Script::new();
    s.client(GET)
        .dial_ok(false)
        .upstream(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n");
    s.expect_canned_then_close(
        "502 Bad Gateway",
        INVALID_RESPONSE,
        &invalid_response_events(),
    );
}

#[test]
fn rejected_requests_get_exact_answers_and_never_reach_upstream() {
    // (request, status line, message, logged method and target, logged rx, logged reason).
    // The method and target are logged whenever the request line could be read, even though a
    // later field or line ending was refused; "- -" only when the request line itself is bad.
    // rx is the whole request, except where a bare CR or LF is rejected: up to the byte that
    // showed it.
    #[allow(clippy::type_complexity)]
    let cases: &[(&[u8], &str, &str, &str, usize, &str)] = &[
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "This is a forward proxy: send an absolute URI (GET http://host/path) or CONNECT.", "GET /", 27, "origin_form"),
        (b"GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "Only http:// URIs are forwarded; use CONNECT for https.", "GET https://h/", 36, "unsupported_scheme"),
        (b"GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "The request URI is not a valid http:// URI.", "GET http://user@h/", 40, "bad_target"),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "400 Bad Request", "Content-Length and Transfer-Encoding must not both be present.", "POST http://h/", 83, "cl_and_te"),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", "400 Bad Request", "Content-Length must appear at most once.", "POST http://h/", 74, "duplicate_content_length"),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3x\r\n\r\n", "400 Bad Request", "Content-Length must be a decimal number.", "POST http://h/", 56, "invalid_content_length"),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n", "400 Bad Request", "Transfer-Encoding must be exactly chunked.", "POST http://h/", 65, "bad_transfer_encoding"),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n", "400 Bad Request", "Transfer-Encoding must be exactly chunked.", "POST http://h/", 65, "bad_transfer_encoding"),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", "400 Bad Request", "Transfer-Encoding must be exactly chunked.", "POST http://h/", 65, "bad_transfer_encoding"),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1.", "GET http://h/", 52, "malformed_head"),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", "400 Bad Request", "Lines of the request head must end in CRLF.", "GET http://h/", 32, "bare_line_ending"),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", "400 Bad Request", "Lines of the request head must end in CRLF.", "GET http://h/", 33, "bare_line_ending"),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1.", "GET http://h/", 43, "malformed_head"),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1.", "GET http://h/", 43, "malformed_head"),
        (b"GET http://h/ HTTP/1.1\r\nHost : h\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1.", "GET http://h/", 36, "malformed_head"),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", "400 Bad Request", "Host must appear exactly once.", "GET http://h/", 44, "duplicate_host"),
        (b"GET http://h/ HTTP/1.1\r\nAccept: */*\r\n\r\n", "400 Bad Request", "HTTP/1.1 requests need a Host header.", "GET http://h/", 39, "missing_host"),
        (b"CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "CONNECT needs a host:port target with a port from 1 to 65535.", "CONNECT h", 31, "bad_connect_target"),
        (b"CONNECT h: HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "CONNECT needs a host:port target with a port from 1 to 65535.", "CONNECT h:", 32, "bad_connect_target"),
        (b"CONNECT h:99999 HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "CONNECT needs a host:port target with a port from 1 to 65535.", "CONNECT h:99999", 37, "bad_connect_target"),
        (b"CONNECT h:25 HTTP/1.1\r\nHost: h\r\n\r\n", "403 Forbidden", "CONNECT to this port is not allowed.", "CONNECT h:25", 34, "connect_port_denied"),
        (b"GET http://h/ HTTP/2.0\r\nHost: h\r\n\r\n", "505 HTTP Version Not Supported", "Only HTTP/1.0 and HTTP/1.1 are supported.", "GET http://h/", 35, "unsupported_version"),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringway\r\n\r\n", "508 Loop Detected", "The request already passed through this proxy.", "GET http://h/", 53, "forwarding_loop"),
        (b"G@T http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1.", "- -", 35, "malformed_head"),
    ];
    for (request, status, message, method_target, rx, reason) in cases {
        let want = canned(status, message);
        let logged = line(
            method_target,
            status[..3].parse().unwrap(),
            *rx,
            want.len(),
            &format!("0.000ms reason={reason}"),
        );
        let whole = {
            let mut s = Script::new();
            s.client(request);
            s
        };
        let bytewise = {
            let mut s = Script::new();
            s.client_bytewise(request);
            s
        };
        let trailing = {
            let mut s = Script::new();
            s.client(&[*request, b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"].concat());
            s
        };
        for (how, mut s) in [
            ("whole", whole),
            ("bytewise", bytewise),
            ("trailing", trailing),
        ] {
            let text = String::from_utf8_lossy(request).into_owned();
            assert_eq!(s.take_client(), want, "{how}: {text:?}");
            assert_eq!(
                s.take_events(),
                [log(&logged), Event::Close],
                "{how}: {text:?} must not dial; rx excludes any trailing bytes"
            );
        }
    }
}

/// A GET head with `Host` and `extra` more small fields (`X-0: v` ...).
fn head_with_fields(extra: usize) -> Vec<u8> {
    let mut head = b"GET http://h/ HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..extra {
        head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[test]
fn up_to_256_header_fields_are_forwarded_by_default() {
    // 201 fields (about 2 KB) and exactly the default cap of 256 both go upstream whole, and
    // so does a head at a configured cap; one more is 431.
    for (config, extra) in [
        (support::config(), 200),
        (support::config(), 255),
        (
            Config {
                max_headers: 10,
                ..support::config()
            },
            9,
        ),
    ] {
        let head = head_with_fields(extra);
        let want_up = String::from_utf8(head.clone())
            .unwrap()
            .replace("GET http://h/ ", "GET / ")
            .replace("\r\n\r\n", "\r\nVia: 1.1 ringway\r\n\r\n");
        for how in ["whole", "bytewise", "trailing"] {
            let mut s = Script::with_config(config.clone());
            match how {
                "whole" => s.client(&head),
                "bytewise" => s.client_bytewise(&head),
                _ => s.client(&[&head[..], b"GET http://h/ HTTP/1.1\r\n"].concat()),
            };
            assert_eq!(
                s.take_events(),
                [dial("h:80", true)],
                "{how}, {extra} fields"
            );
            s.dial_ok(false);
            assert_eq!(s.take_upstream(), want_up, "{how}, {extra} fields");
        }
    }
    let config = Config {
        max_headers: 10,
        ..support::config()
    };
    let head = head_with_fields(10);
    let message = "The request has too many header fields.";
    for how in ["whole", "bytewise", "trailing"] {
        let mut s = Script::with_config(config.clone());
        match how {
            "whole" => s.client(&head),
            "bytewise" => s.client_bytewise(&head),
            _ => s.client(&[&head[..], b"GET http://h/ HTTP/1.1\r\n"].concat()),
        };
        s.expect_canned_then_close(
            "431 Request Header Fields Too Large",
            message,
            &[
                log(&line(
                    "GET http://h/",
                    431,
                    head.len(),
                    canned("431 Request Header Fields Too Large", message).len(),
                    "0.000ms reason=too_many_headers",
                )),
                Event::Close,
            ],
        );
    }
}

/// The events of a head rejected as too large after `rx` bytes (the limit + 1).
fn head_too_large_events(method_target: &str, rx: usize) -> [Event; 2] {
    let tx = canned(
        "431 Request Header Fields Too Large",
        "The request head is too large.",
    )
    .len();
    [
        log(&line(
            method_target,
            431,
            rx,
            tx,
            "0.000ms reason=head_too_large",
        )),
        Event::Close,
    ]
}

#[test]
fn oversized_heads_are_431() {
    let mut s = Script::new();
    let mut head = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 70_000));
    s.client(&head);
    let max = Config::default().max_head_bytes;
    s.expect_canned_then_close(
        "431 Request Header Fields Too Large",
        "The request head is too large.",
        &head_too_large_events("GET http://h/", max + 1),
    );
    // A request line longer than the limit: it was never read whole, so "- -".
    let mut s = Script::new();
    let mut head = b"GET http://h/".to_vec();
    head.extend(std::iter::repeat_n(b'a', 70_000));
    head.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
    s.client(&head);
    s.expect_canned_then_close(
        "431 Request Header Fields Too Large",
        "The request head is too large.",
        &head_too_large_events("- -", max + 1),
    );
    // One field more than the default cap of 256 (Host and 256 others).
    let mut s = Script::new();
    let head = head_with_fields(256);
    s.client(&head);
    let message = "The request has too many header fields.";
    s.expect_canned_then_close(
        "431 Request Header Fields Too Large",
        message,
        &[
            log(&line(
                "GET http://h/",
                431,
                head.len(),
                canned("431 Request Header Fields Too Large", message).len(),
                "0.000ms reason=too_many_headers",
            )),
            Event::Close,
        ],
    );
    // Exactly at the limit is fine.
    let config = Config {
        max_head_bytes: 64,
        ..support::config()
    };
    let head = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    assert_eq!(head.len(), 64);
    let mut s = Script::with_config(config.clone());
    s.client(head);
    assert_eq!(s.take_events(), [dial("h:80", true)]);
    let mut s = Script::with_config(config);
    s.client(b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    s.expect_canned_then_close(
        "431 Request Header Fields Too Large",
        "The request head is too large.",
        &head_too_large_events("GET http://h/", 65),
    );
}

#[test]
fn clients_outside_the_policy_get_403() {
    let mut s = Script::from(support::config(), "192.0.2.1:4000");
    s.client(GET);
    let message = "Your address is not allowed to use this proxy.";
    let tx = canned("403 Forbidden", message).len();
    s.expect_canned_then_close(
        "403 Forbidden",
        message,
        &[
            log(&format!(
                "192.0.2.1:4000 GET http://example.com/a?b=1 403 {} {tx} 0.000ms reason=client_denied",
                GET.len()
            )),
            Event::Close,
        ],
    );
}

#[test]
fn header_timeout_cuts_slow_clients_with_408() {
    let line_part: &[u8] = b"GET http://h/ HTTP/1.1\r\n";
    let host_part: &[u8] = b"Host: h\r\n";
    let mut s = Script::new();
    s.wait(Duration::from_secs(5));
    s.client(line_part);
    s.wait(Duration::from_secs(29));
    assert_eq!(s.take_client(), "", "a spurious or early wake does nothing");
    s.client(host_part);
    s.wait(Duration::from_secs(1));
    let message = "The request head did not arrive in time.";
    // The request line had arrived, so the log says what was asked and how many bytes came;
    // 30 s from the head's first byte.
    s.expect_canned_then_close(
        "408 Request Timeout",
        message,
        &[
            log(&line(
                "GET http://h/",
                408,
                line_part.len() + host_part.len(),
                canned("408 Request Timeout", message).len(),
                "30000.000ms reason=header_timeout",
            )),
            Event::Close,
        ],
    );

    // A request line that never finished: no method or target, but the bytes are counted.
    let mut s = Script::new();
    s.client(b"GET http://h/sl");
    s.wait(Duration::from_secs(30));
    s.expect_canned_then_close(
        "408 Request Timeout",
        message,
        &[
            log(&line(
                "- -",
                408,
                15,
                canned("408 Request Timeout", message).len(),
                "30000.000ms reason=header_timeout",
            )),
            Event::Close,
        ],
    );
}

#[test]
fn silent_and_idle_connections_close_without_an_answer() {
    let mut s = Script::new();
    assert_eq!(s.conn.poll_timeout(), Some(s.now + Duration::from_secs(30)));
    s.wait(Duration::from_secs(30));
    assert_eq!(s.take_client(), "");
    assert_eq!(s.take_events(), [Event::Close]);

    let mut s = Script::forwarded(GET);
    s.relays(OK5, OK5_DOWN);
    s.expect_released(ok5_line());
    s.wait(Duration::from_secs(59));
    assert_eq!(s.take_events(), []);
    s.wait(Duration::from_secs(1));
    assert_eq!(s.take_events(), [Event::Close]);
}

#[test]
fn silent_upstream_is_a_504() {
    let mut s = Script::forwarded(GET);
    s.wait(Duration::from_secs(300));
    let message = "The upstream server did not respond in time.";
    s.expect_canned_then_close(
        "504 Gateway Timeout",
        message,
        &[
            Event::CloseUpstream,
            log(&get_line(
                504,
                canned("504 Gateway Timeout", message).len(),
                "300000.000ms reason=upstream_timeout",
            )),
            Event::Close,
        ],
    );
}

#[test]
fn client_vanishing_mid_body_aborts_the_exchange() {
    let mut s = Script::new();
    let request = b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc";
    s.client(request).dial_ok(false);
    assert_eq!(s.take_events(), []);
    s.client_eof();
    // No status was sent (0); rx is the head and the 3 body bytes that arrived.
    s.expect_cut_off(line(
        "POST http://h/",
        0,
        request.len(),
        0,
        "0.000ms reason=client_closed",
    ));
}

/// Lingering before a close protects a response from the reset that unread client input
/// would cause; it is skipped only when nothing more can come. A client that said
/// `Connection: close` but sent bytes after its request still gets it: the close lingers.
#[test]
fn a_close_lingers_unless_the_client_can_send_nothing_more() {
    let post: &[u8] =
        b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    let get_close: &[u8] = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let get_close_and_more = [get_close, b"GET http://h/2 HTTP/1.1\r\n\r\n"].concat();
    let get: &[u8] = b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n";
    let ok_close = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello";
    let eof_close = "HTTP/1.1 200 OK\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello";
    let close_delimited: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nhello";
    // (case, client bytes, the request's bytes, target, answer, upstream EOF after it,
    // bytes to the client, how the upstream goes, how the client connection closes)
    for (case, sent, request, target, answer, eof, down, upstream, close) in [
        (
            "Connection: close, its body read to the end: at once",
            post,
            post,
            "POST http://h/",
            OK5,
            false,
            ok_close,
            Event::Release,
            Event::CloseAtOnce,
        ),
        (
            "Connection: close, then bytes anyway: not read, so it lingers",
            &get_close_and_more[..],
            get_close,
            "GET http://h/",
            OK5,
            false,
            ok_close,
            Event::Release,
            Event::Close,
        ),
        (
            "a keep-alive client may have sent its next request already: it lingers",
            get,
            get,
            "GET http://h/",
            close_delimited,
            true,
            eof_close,
            Event::CloseUpstream,
            Event::Close,
        ),
    ] {
        let mut s = Script::new();
        s.client(sent).dial_ok(false).upstream(answer);
        if eof {
            s.upstream_eof();
        }
        assert_eq!(s.take_client(), down, "{case}");
        let logged = line(target, 200, request.len(), down.len(), "0.000ms");
        assert_eq!(s.take_events(), [upstream, log(&logged), close], "{case}");
    }
}

#[test]
fn client_half_close_after_a_complete_request_still_gets_the_answer() {
    let mut s = Script::new();
    s.client(GET).client_eof().dial_ok(false).upstream(OK5);
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_eq!(s.take_client(), down);
    s.expect_released_then_closed_at_once(get_line(200, down.len(), "0.000ms"));
}

#[test]
fn blank_lines_before_a_request_are_ignored() {
    let mut s = Script::new();
    s.client(b"\r\n\r\n");
    assert_eq!(s.take_events(), []);
    s.client(GET);
    assert_eq!(s.take_events(), [dial("example.com:80", true)]);
}

#[test]
fn access_log_durations_use_the_given_clock() {
    let mut s = Script::new();
    s.client(GET);
    s.now = s.now + Duration::from_micros(1500);
    s.dial_ok(false);
    s.now = s.now + Duration::from_micros(250);
    s.upstream(OK5);
    s.expect_released(get_line(200, OK5_DOWN.len(), "1.750ms"));
}

#[test]
fn drain_closes_idle_connections_at_once() {
    let mut s = Script::new();
    assert!(s.conn.is_idle());
    s.conn.drain();
    s.drain();
    assert_eq!(s.take_events(), [Event::Close]);
    assert_eq!(s.take_client(), "");
}

#[test]
fn drain_lets_the_exchange_under_way_finish_with_connection_close() {
    let mut s = Script::new();
    s.client(b"GET http://h/ HTTP/1.1\r\n");
    assert!(!s.conn.is_idle(), "a head is arriving");
    s.conn.drain();
    s.drain();
    assert_eq!(s.take_events(), []);
    s.client(b"Host: h\r\n\r\n").dial_ok(false).upstream(OK5);
    let down = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello";
    assert_eq!(s.take_client(), down);
    let rx = b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n".len();
    s.expect_released_then_closed(line("GET http://h/", 200, rx, down.len(), "0.000ms"));

    // A response head already on its way closes after its body.
    let mut s = Script::new();
    s.client(GET)
        .dial_ok(false)
        .upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel");
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 ringway\r\n\r\nhel"
    );
    s.conn.drain();
    s.drain();
    assert_eq!(s.take_events(), []);
    s.relays(b"lo", "lo");
    assert_eq!(
        s.take_events(),
        [Event::Release, log(&ok5_line()), Event::Close],
        "the upstream is still clean"
    );
}

#[test]
fn proxy_authentication_is_required_when_configured() {
    let mut config = support::config();
    config
        .policy
        .add_basic_credentials("Aladdin", "open sesame");
    let mut s = Script::with_config(config.clone());
    s.client(GET);
    let answer = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"ringway\"\r\n\
Proxy-Status: ringway; error=http_request_denied\r\n\
Content-Type: text/plain\r\nContent-Length: 72\r\nConnection: close\r\n\r\n\
This proxy needs a user name and password (Proxy-Authorization: Basic).\n";
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [
            log(&get_line(407, answer.len(), "0.000ms reason=auth_required")),
            Event::Close
        ]
    );
    assert!(s.is_closed());
    let mut s = Script::with_config(config);
    s.client(b"GET http://h/ HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n");
    assert_eq!(s.take_events(), [dial("h:80", true)]);
    s.dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringway\r\n\r\n",
        "credentials never go upstream"
    );
    s.upstream(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(logged_users(&s), [Some("Aladdin".to_string())]);
}

/// The `user` of every access record so far.
fn logged_users(s: &Script) -> Vec<Option<String>> {
    s.trace
        .iter()
        .filter_map(|o| match o {
            Output::Log(r) => Some(r.user.as_deref().map(str::to_string)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_access_record_names_no_user_when_authentication_fails_or_is_off() {
    let mut config = support::config();
    config
        .policy
        .add_basic_credentials("Aladdin", "open sesame");
    let mut s = Script::with_config(config);
    s.client(b"GET http://h/ HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==\r\n\r\n");
    assert!(s.take_client().starts_with("HTTP/1.1 407 "));
    assert_eq!(logged_users(&s), [None]);
    let mut s = Script::new();
    s.client(b"GET http://h/ HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n");
    s.dial_ok(false);
    s.upstream(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(
        logged_users(&s),
        [None],
        "no credentials configured: anonymous"
    );
}

#[test]
fn client_eof_while_connect_dials_reaches_the_upstream() {
    let mut s = Script::new();
    s.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nlast words");
    s.client_eof();
    assert_eq!(
        s.take_events(),
        [dial("example.com:443", false)],
        "the EOF waits for the tunnel"
    );
    s.dial_ok(false);
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 Connection Established\r\n\r\n"
    );
    assert_eq!(
        s.take_events(),
        [
            Event::StartTunnel(b"last words".to_vec(), vec![]),
            Event::ShutdownUpstreamWrite
        ]
    );
    s.relayed(Direction::UpstreamToClient, 7);
    s.upstream_eof();
    assert_eq!(
        s.take_events(),
        [
            log("127.0.0.1:50000 CONNECT example.com:443 200 10 7 0.000ms"),
            Event::CloseAtOnce
        ]
    );
}

#[test]
fn the_head_limit_wins_over_anything_after_it() {
    // A bare LF after the limit: 431 whether the bytes come at once or one by one.
    let config = Config {
        max_head_bytes: 64,
        ..support::config()
    };
    let mut head = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 80));
    head.extend_from_slice(b"\nmore\r\n\r\n");
    for bytewise in [false, true] {
        let mut s = Script::with_config(config.clone());
        if bytewise {
            s.client_bytewise(&head);
        } else {
            s.client(&head);
        }
        // rx is the limit + 1.
        s.expect_canned_then_close(
            "431 Request Header Fields Too Large",
            "The request head is too large.",
            &head_too_large_events("GET http://h/", 65),
        );
    }
}

#[test]
fn a_failed_address_falls_through_to_the_next_one_of_the_same_lookup() {
    let mut s = Script::new();
    s.manual_dns().client(GET);
    assert_eq!(s.take_events(), [Event::Resolve("example.com:80".into())]);
    // Duplicates in the answer are tried once.
    s.resolved(&["2001:4860::1", "93.184.215.14", "2001:4860::1"]);
    assert_eq!(s.take_events(), [dial("[2001:4860::1]:80", true)]);
    s.dial_err(DialError::Refused);
    assert_eq!(s.take_client(), "", "not answered while an address is left");
    assert_eq!(s.take_events(), [dial("93.184.215.14:80", true)]);
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), GET_UP);
    s.relays(OK5, OK5_DOWN).expect_released(ok5_line());
}

#[test]
fn when_every_address_fails_the_last_error_answers() {
    let mut s = Script::new();
    s.manual_dns().client(GET);
    s.take_events();
    s.resolved(&["93.184.215.14", "93.184.215.15"]);
    assert_eq!(s.take_events(), [dial("93.184.215.14:80", true)]);
    s.dial_err(DialError::Refused);
    assert_eq!(s.take_events(), [dial("93.184.215.15:80", true)]);
    s.dial_err(DialError::Timeout);
    let message = "The upstream server did not answer the connection in time.";
    let tx = canned("504 Gateway Timeout", message).len();
    s.expect_canned_then_close(
        "504 Gateway Timeout",
        message,
        &[
            log(&get_line(504, tx, "0.000ms reason=dial_timeout")),
            Event::Close,
        ],
    );
}

#[test]
fn a_lookup_outliving_the_deadline_is_a_504_dns_timeout() {
    let mut s = Script::new();
    s.manual_dns().client(GET);
    assert_eq!(s.take_events(), [Event::Resolve("example.com:80".into())]);
    // The lookup has its own deadline (`dns_timeout`, 5 s), apart from the connect timeout.
    assert_eq!(s.conn.poll_timeout(), Some(s.now + Duration::from_secs(5)));
    s.wait(Duration::from_millis(4999));
    assert_eq!(s.take_events(), []);
    s.wait(Duration::from_millis(1));
    let message = "The upstream host name could not be resolved in time.";
    let tx = canned("504 Gateway Timeout", message).len();
    s.expect_canned_then_close(
        "504 Gateway Timeout",
        message,
        &[
            log(&get_line(504, tx, "5000.000ms reason=dns_timeout")),
            Event::Close,
        ],
    );
    // The late answer changes nothing.
    s.resolved(&["93.184.215.14"]);
    assert_eq!(s.take_events(), []);
}

#[test]
fn ip_literals_are_connected_to_without_a_lookup() {
    let mut s = Script::new();
    s.manual_dns()
        .client(b"GET http://93.184.215.14:8080/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(s.take_events(), [dial("93.184.215.14:8080", true)]);
    let mut s = Script::new();
    s.manual_dns()
        .client(b"CONNECT [2001:4860::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(s.take_events(), [dial("[2001:4860::1]:443", false)]);
}

#[test]
fn a_refused_connection_answers_its_first_request_429_or_503_then_closes() {
    for (problem, status, message, reason) in [
        (
            ringway_core::Problem::ClientLimit,
            "429 Too Many Requests",
            "Too many connections from your address; retry later.",
            "client_limit",
        ),
        (
            ringway_core::Problem::ConnectionLimit,
            "503 Service Unavailable",
            "The proxy is at its connection limit; retry later.",
            "connection_limit",
        ),
    ] {
        for bytewise in [false, true] {
            let mut s = Script::new();
            s.conn.refuse(problem);
            if bytewise {
                s.client_bytewise(GET);
            } else {
                // With a second request pipelined behind: it is never read.
                s.client(&[GET, GET].concat());
            }
            let answer = canned(status, message);
            assert!(answer.contains(
                "\r\nRetry-After: 1\r\nProxy-Status: ringway; error=connection_limit_reached\r\n"
            ));
            s.expect_canned_then_close(
                status,
                message,
                &[
                    log(&get_line(
                        status[..3].parse().unwrap(),
                        answer.len(),
                        &format!("0.000ms reason={reason}"),
                    )),
                    Event::Close,
                ],
            );
        }
    }
}

/// The exact 403 (or 508) for a refused destination: its Proxy-Status, and a body naming
/// the destination, the rule and the flag that would allow it.
fn denial(status_line: &str, error: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status_line}\r\nProxy-Status: ringway; error={error}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        body.len() + 1
    )
}

#[test]
fn loopback_literals_are_refused_before_any_dial_in_every_spelling() {
    for (target, subject) in [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("127.1", "127.1 (127.0.0.1)"),
        ("2130706433", "2130706433 (127.0.0.1)"),
        ("0x7f000001", "0x7f000001 (127.0.0.1)"),
        ("0177.0.0.1", "0177.0.0.1 (127.0.0.1)"),
    ] {
        for connect in [false, true] {
            let request = if connect {
                format!("CONNECT {target}:443 HTTP/1.1\r\nHost: x\r\n\r\n")
            } else {
                format!("GET http://{target}:8080/ HTTP/1.1\r\nHost: x\r\n\r\n")
            };
            let answer = denial(
                "403 Forbidden",
                "destination_ip_prohibited",
                &format!("destination {subject} is loopback; allow it with --allow-range"),
            );
            for bytewise in [false, true] {
                let mut s = Script::new();
                s.manual_dns();
                if bytewise {
                    s.client_bytewise(request.as_bytes());
                } else {
                    s.client(format!("{request}GET http://h/ HTTP/1.1\r\n\r\n").as_bytes());
                }
                assert_eq!(s.take_client(), answer, "{request}");
                let (method, port) = if connect {
                    ("CONNECT", "443")
                } else {
                    ("GET", "8080")
                };
                let shown = if connect {
                    format!("{target}:{port}")
                } else {
                    format!("http://{target}:{port}/")
                };
                assert_eq!(
                    s.take_events(),
                    [
                        log(&line(
                            &format!("{method} {shown}"),
                            403,
                            request.len(),
                            answer.len(),
                            "0.000ms reason=dest_loopback"
                        )),
                        Event::Close
                    ],
                    "no lookup, no dial: {request}"
                );
            }
        }
    }
}

#[test]
fn allow_range_reopens_loopback_and_the_more_specific_deny_wins() {
    let mut config = support::config();
    config
        .policy
        .egress
        .allow_range("127.0.0.0/8".parse().unwrap());
    config
        .policy
        .egress
        .deny_range("127.0.0.2/32".parse().unwrap());
    let mut s = Script::with_config(config.clone());
    s.manual_dns()
        .client(b"GET http://127.1:8080/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(s.take_events(), [dial("127.0.0.1:8080", true)]);
    let mut s = Script::with_config(config);
    let request = b"GET http://127.0.0.2:8080/ HTTP/1.1\r\nHost: x\r\n\r\n";
    s.manual_dns().client(request);
    let answer = denial(
        "403 Forbidden",
        "destination_ip_prohibited",
        "destination 127.0.0.2 is in a --deny-range; remove that rule to allow it",
    );
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [
            log(&line(
                "GET http://127.0.0.2:8080/",
                403,
                request.len(),
                answer.len(),
                "0.000ms reason=dest_denied_range"
            )),
            Event::Close
        ]
    );
}

#[test]
fn a_denied_name_is_never_resolved() {
    let mut config = support::config();
    config
        .policy
        .egress
        .deny_domains_mut()
        .add("*.internal.test")
        .unwrap();
    let request = b"GET http://db.internal.test/ HTTP/1.1\r\nHost: db.internal.test\r\n\r\n";
    let mut s = Script::with_config(config);
    s.manual_dns().client(request);
    let answer = denial(
        "403 Forbidden",
        "http_request_denied",
        "destination db.internal.test is matched by a --deny-domain; remove that rule to allow it",
    );
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [
            log(&line(
                "GET http://db.internal.test/",
                403,
                request.len(),
                answer.len(),
                "0.000ms reason=dest_domain"
            )),
            Event::Close
        ],
        "no Resolve"
    );
}

#[test]
fn only_resolved_addresses_the_policy_allows_are_dialed() {
    // A name resolving to loopback and link-local only: refused, naming both.
    let request = b"GET http://rebind.test/ HTTP/1.1\r\nHost: rebind.test\r\n\r\n";
    let mut s = Script::new();
    s.manual_dns().client(request);
    assert_eq!(s.take_events(), [Event::Resolve("rebind.test:80".into())]);
    s.resolved(&["127.0.0.1", "169.254.169.254"]);
    let answer = denial(
        "403 Forbidden",
        "destination_ip_prohibited",
        "destination rebind.test (127.0.0.1) is loopback; allow it with --allow-range",
    );
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [
            log(&line(
                "GET http://rebind.test/",
                403,
                request.len(),
                answer.len(),
                "0.000ms reason=dest_loopback"
            )),
            Event::Close
        ]
    );
    // Mixed: the refused addresses are skipped, also when an allowed one fails.
    let mut s = Script::new();
    s.manual_dns().client(request);
    s.take_events();
    s.resolved(&[
        "10.0.0.1",
        "93.184.215.14",
        "::ffff:169.254.169.254",
        "93.184.215.15",
    ]);
    assert_eq!(s.take_events(), [dial("93.184.215.14:80", true)]);
    s.dial_err(DialError::Refused);
    assert_eq!(s.take_events(), [dial("93.184.215.15:80", true)]);
    s.dial_err(DialError::Refused);
    assert_eq!(
        s.take_client(),
        canned(
            "502 Bad Gateway",
            "The upstream server could not be reached."
        )
    );
}

#[test]
fn the_proxys_own_listener_is_a_loop_whatever_is_allowed() {
    let mut config = support::config();
    config
        .policy
        .egress
        .allow_range("0.0.0.0/0".parse().unwrap());
    config
        .policy
        .egress
        .add_own_listener("0.0.0.0:8443".parse().unwrap(), true);
    config
        .policy
        .egress
        .add_own_listener("127.0.0.1:9090".parse().unwrap(), false);
    let mut s = Script::with_config(config.clone());
    s.manual_dns()
        .client(b"CONNECT 127.0.0.1:8443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        s.take_client(),
        denial(
            "508 Loop Detected",
            "proxy_loop_detected",
            "destination 127.0.0.1 is this proxy itself; that is never allowed"
        )
    );
    let mut s = Script::with_config(config);
    s.manual_dns()
        .client(b"GET http://127.0.0.1:9090/metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        s.take_client(),
        denial(
            "403 Forbidden",
            "http_request_denied",
            "destination 127.0.0.1 is a service of this proxy; that is never allowed"
        )
    );
}

#[test]
fn a_host_that_looks_like_ipv4_but_is_not_is_a_bad_target() {
    let mut s = Script::new();
    s.manual_dns()
        .client(b"GET http://1.2.3.4.5/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        s.take_client(),
        canned(
            "400 Bad Request",
            "The request URI is not a valid http:// URI."
        )
    );
}

// ----- RFC 9110 / 9112 conformance (issue 15) -----

/// A complete request that follows the one under test in the "trailing" runs.
const NEXT: &[u8] = b"GET http://h/next HTTP/1.1\r\nHost: h\r\n\r\n";

/// `request` fed whole, one byte at a time, and with [`NEXT`] right behind it in one read.
///
/// Why: every vector of these tests runs the three ways (the parser-vector rule).
fn three_ways(config: &Config, request: &[u8]) -> [(&'static str, Script); 3] {
    let mut whole = Script::with_config(config.clone());
    whole.client(request);
    let mut bytewise = Script::with_config(config.clone());
    bytewise.client_bytewise(request);
    let mut trailing = Script::with_config(config.clone());
    trailing.client(&[request, NEXT].concat());
    [
        ("whole", whole),
        ("bytewise", bytewise),
        ("trailing", trailing),
    ]
}

/// Sends `request` three ways; each must dial `authority` (pooled) and, once connected, send
/// exactly `upstream`; then the origin's `response` must reach the client as `client` and the
/// exchange end cleanly, logged as `method_target` with `status`.
#[track_caller]
fn forwards_exactly(
    request: &[u8],
    authority: &str,
    upstream: &str,
    response: &[u8],
    client: &str,
    method_target: &str,
) {
    for (how, mut s) in three_ways(&support::config(), request) {
        assert_eq!(s.take_events(), [dial(authority, true)], "{how}");
        s.dial_ok(false);
        assert_eq!(s.take_upstream(), upstream, "{how}");
        s.relays(response, client);
        let status = client[9..12].parse().unwrap();
        let logged = log(&line(
            method_target,
            status,
            request.len(),
            client.len(),
            "0.000ms",
        ));
        if how == "trailing" {
            assert_eq!(
                s.take_events(),
                [Event::Release, logged, dial("h:80", true)],
                "{how}: the next request follows"
            );
        } else {
            assert_eq!(s.take_events(), [Event::Release, logged], "{how}");
        }
    }
}

#[test]
fn options_to_a_uri_without_path_or_query_goes_upstream_as_asterisk() {
    // RFC 9112 §3.2.4: the last proxy sends `OPTIONS *` for an empty path and no query.
    let ok = b"HTTP/1.1 200 OK\r\nAllow: GET, OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let ok_down =
        "HTTP/1.1 200 OK\r\nAllow: GET, OPTIONS\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n";
    for (target, line_up) in [
        ("http://h:8080", "OPTIONS * HTTP/1.1"),
        ("HTTP://H:8080", "OPTIONS * HTTP/1.1"),
        ("http://h:8080?q=1", "OPTIONS /?q=1 HTTP/1.1"),
        ("http://h:8080/", "OPTIONS / HTTP/1.1"),
        ("http://h:8080/p", "OPTIONS /p HTTP/1.1"),
    ] {
        let request = format!("OPTIONS {target} HTTP/1.1\r\nHost: h:8080\r\n\r\n");
        forwards_exactly(
            request.as_bytes(),
            "h:8080",
            &format!("{line_up}\r\nHost: h:8080\r\nVia: 1.1 ringway\r\n\r\n"),
            ok,
            ok_down,
            &format!("OPTIONS {target}"),
        );
    }
    // Other methods keep getting `/` for an empty path.
    forwards_exactly(
        b"GET http://h:8080 HTTP/1.1\r\nHost: h:8080\r\n\r\n",
        "h:8080",
        "GET / HTTP/1.1\r\nHost: h:8080\r\nVia: 1.1 ringway\r\n\r\n",
        ok,
        ok_down,
        "GET http://h:8080",
    );
}

#[test]
fn max_forwards_is_decremented_for_options_and_trace_only() {
    let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
    let ok_down = "HTTP/1.1 204 No Content\r\nVia: 1.1 ringway\r\n\r\n";
    for (method, field, field_up) in [
        ("OPTIONS", "Max-Forwards: 5", "Max-Forwards: 4"),
        ("OPTIONS", "Max-Forwards: 1", "Max-Forwards: 0"),
        ("TRACE", "max-forwards: 10", "max-forwards: 9"),
        ("TRACE", "Max-Forwards: 007", "Max-Forwards: 6"),
        ("TRACE", "Max-Forwards:  100 ", "Max-Forwards: 99"),
        (
            "OPTIONS",
            "Max-Forwards: 100000000000000000000000000",
            "Max-Forwards: 99999999999999999999999999",
        ),
        // RFC 9110 §7.6.2: other methods leave the field alone, whatever it holds.
        ("GET", "Max-Forwards: 0", "Max-Forwards: 0"),
        ("POST", "Max-Forwards: 3", "Max-Forwards: 3"),
        ("DELETE", "Max-Forwards: x", "Max-Forwards: x"),
    ] {
        let request =
            format!("{method} http://h/m HTTP/1.1\r\nHost: h\r\n{field}\r\nX-After: 1\r\n\r\n");
        forwards_exactly(
            request.as_bytes(),
            "h:80",
            &format!("{method} /m HTTP/1.1\r\nHost: h\r\n{field_up}\r\nX-After: 1\r\nVia: 1.1 ringway\r\n\r\n"),
            ok,
            ok_down,
            &format!("{method} http://h/m"),
        );
    }
}

/// The events of a request the proxy answered itself with `answer` (keeping the connection),
/// per way: nothing dialed; in the trailing run the next request then dials.
#[track_caller]
fn expect_answered_locally(
    request: &[u8],
    config: &Config,
    answer: &str,
    method_target: &str,
    closes: bool,
) {
    for (how, mut s) in three_ways(config, request) {
        assert_eq!(s.take_client(), answer, "{how}");
        let logged = log(&line(
            method_target,
            200,
            request.len(),
            answer.len(),
            "0.000ms",
        ));
        let want: Vec<Event> = match (closes, how) {
            (true, _) => vec![logged, Event::Close],
            (false, "trailing") => vec![logged, dial("h:80", true)],
            (false, _) => vec![logged],
        };
        assert_eq!(
            s.take_events(),
            want,
            "{how}: no dial for the answered request"
        );
        assert_eq!(s.take_upstream(), "", "{how}");
        assert_eq!(s.is_closed(), closes, "{how}");
        if !closes && how != "trailing" {
            assert!(
                s.conn.wants_client_read(),
                "{how}: ready for the next request"
            );
        }
    }
}

#[test]
fn options_with_max_forwards_zero_is_answered_by_the_proxy() {
    // RFC 9110 §7.6.2: not forwarded, answered as the final recipient: 200 with
    // `Content-Length: 0` (§9.3.7), no `Allow` (the proxy cannot speak for the resource).
    let config = support::config();
    for target in ["http://h", "http://h/p?q", "http://h:80/"] {
        expect_answered_locally(
            format!("OPTIONS {target} HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n").as_bytes(),
            &config,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            &format!("OPTIONS {target}"),
            false,
        );
    }
    // HTTP/1.0 keep-alive is kept; plain HTTP/1.0, `Connection: close` and a request body we
    // did not read close after the answer.
    expect_answered_locally(
        b"OPTIONS http://h/ HTTP/1.0\r\nConnection: keep-alive\r\nMax-Forwards: 00\r\n\r\n",
        &config,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
        "OPTIONS http://h/",
        false,
    );
    for request in [
        &b"OPTIONS http://h/ HTTP/1.0\r\nMax-Forwards: 0\r\n\r\n"[..],
        b"OPTIONS http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\nMax-Forwards: 0\r\n\r\n",
        b"OPTIONS http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nContent-Length: 4\r\n\r\n",
    ] {
        expect_answered_locally(
            request,
            &config,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "OPTIONS http://h/",
            true,
        );
    }
}

#[test]
fn trace_with_max_forwards_zero_is_reflected_without_credentials_or_cookies() {
    // RFC 9110 §9.3.8: the final recipient reflects the request as message/http, leaving out
    // fields likely to hold secrets (see core/src/final_recipient.rs for why not 405).
    let request = b"TRACE http://h/p?q HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nCookie: session=1\r\nX-A: 1\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nauthorization: Bearer t\r\nCOOKIE: b=2\r\nVia: 1.0 other\r\n\r\n";
    let reflected = "TRACE http://h/p?q HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nX-A: 1\r\nVia: 1.0 other\r\n\r\n";
    expect_answered_locally(
        request,
        &support::config(),
        &format!(
            "HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: {}\r\n\r\n{reflected}",
            reflected.len()
        ),
        "TRACE http://h/p?q",
        false,
    );
    // With proxy authentication on, the credentials admit the request but are not echoed.
    let mut config = support::config();
    config.policy.add_basic_credentials("foo", "bar");
    let mut s = Script::with_config(config);
    s.client_bytewise(request);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: {}\r\n\r\n{reflected}",
        reflected.len()
    );
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [log(&line(
            "TRACE http://h/p?q",
            200,
            request.len(),
            answer.len(),
            "0.000ms"
        ))]
    );
}

#[test]
fn hop_limits_and_hosts_that_cannot_be_read_are_400() {
    let malformed = "The request head is not valid HTTP/1.1.";
    let bad_host = "The Host header must be a host name or address with an optional port.";
    for (request, message, method_target, reason) in [
        (
            &b"GET http://h/ HTTP/1.1\r\nHost: exa mple.invalid\r\n\r\n"[..],
            bad_host,
            "GET http://h/",
            "invalid_host",
        ),
        (
            b"GET http://127.0.0.1:8080/ HTTP/1.1\r\nHost: user@127.0.0.1:8080\r\n\r\n",
            bad_host,
            "GET http://127.0.0.1:8080/",
            "invalid_host",
        ),
        (
            b"GET http://h/ HTTP/1.0\r\nHost: h:80x\r\n\r\n",
            bad_host,
            "GET http://h/",
            "invalid_host",
        ),
        (
            b"GET http://h/ HTTP/1.1\r\nHost: [::1\r\n\r\n",
            bad_host,
            "GET http://h/",
            "invalid_host",
        ),
        (
            b"CONNECT h:443 HTTP/1.1\r\nHost: h/x:443\r\n\r\n",
            bad_host,
            "CONNECT h:443",
            "invalid_host",
        ),
        (
            b"TRACE http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: -1\r\n\r\n",
            malformed,
            "TRACE http://h/",
            "malformed_head",
        ),
        (
            b"OPTIONS http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 1\r\nMax-Forwards: 1\r\n\r\n",
            malformed,
            "OPTIONS http://h/",
            "malformed_head",
        ),
        (
            b"OPTIONS http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards:\r\n\r\n",
            malformed,
            "OPTIONS http://h/",
            "malformed_head",
        ),
    ] {
        let want = canned("400 Bad Request", message);
        for (how, mut s) in three_ways(&support::config(), request) {
            let text = String::from_utf8_lossy(request).into_owned();
            assert_eq!(s.take_client(), want, "{how}: {text:?}");
            assert_eq!(
                s.take_events(),
                [
                    log(&line(
                        method_target,
                        400,
                        request.len(),
                        want.len(),
                        &format!("0.000ms reason={reason}")
                    )),
                    Event::Close
                ],
                "{how}: {text:?}"
            );
        }
    }
    // Valid hosts of every form are accepted and replaced by the URI's authority.
    for host in ["h", "H:80", "h:", "[::1]:8080", "127.0.0.1", "%68", ""] {
        let request = format!("GET http://h/ HTTP/1.1\r\nHost: {host}\r\n\r\n");
        forwards_exactly(
            request.as_bytes(),
            "h:80",
            "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringway\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nVia: 1.1 ringway\r\n\r\n",
            "GET http://h/",
        );
    }
}

#[test]
fn a_chunk_size_with_trailing_whitespace_is_a_400() {
    // RFC 9112 §7.1.1: whitespace after the size only before a `;` extension.
    let head = b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let head_up =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n";
    let answer = canned("400 Bad Request", "The chunked request body is malformed.");
    // (body, the bytes before the offending one, forwarded as they are)
    for (body, valid) in [
        (&b"5 \r\nhello\r\n0\r\n\r\n"[..], &b"5 "[..]),
        (b"5\t\r\nhello\r\n0\r\n\r\n", b"5\t"),
        (b"3\r\nabc\r\n0 \r\n\r\n", b"3\r\nabc\r\n0 "),
    ] {
        for (how, mut s) in three_ways(&support::config(), &[&head[..], body].concat()) {
            s.dial_ok(false);
            assert_eq!(
                s.take_upstream(),
                format!("{head_up}{}", String::from_utf8_lossy(valid)),
                "{how}"
            );
            assert_eq!(s.take_client(), answer, "{how}");
            s.expect_cut_off(line(
                "POST http://h/",
                400,
                head.len() + valid.len() + 1,
                answer.len(),
                "0.000ms reason=bad_chunk",
            ));
        }
    }
    // Whitespace before an extension is still fine.
    let body = b"5 ;a=1\r\nhello\r\n0\r\n\r\n";
    for (how, mut s) in three_ways(&support::config(), &[&head[..], body].concat()) {
        s.dial_ok(false);
        assert_eq!(
            s.take_upstream(),
            format!("{head_up}5 ;a=1\r\nhello\r\n0\r\n\r\n"),
            "{how}"
        );
        assert!(!s.conn.wants_client_read(), "{how}: the body ended");
    }
}

#[test]
fn http_1_x_above_1_is_read_as_1_1_both_ways() {
    // RFC 9112 §2.3 / RFC 9110 §6.2: a higher minor version is treated as 1.1, and we send
    // HTTP/1.1 in both directions.
    for version in ["HTTP/1.2", "HTTP/1.9"] {
        let request = format!(
            "GET http://h/v HTTP/{}\r\nHost: h\r\nX-A: 1\r\n\r\n",
            &version[5..]
        );
        let response = format!("{version} 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        forwards_exactly(
            request.as_bytes(),
            "h:80",
            "GET /v HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nVia: 1.1 ringway\r\n\r\n",
            response.as_bytes(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 ringway\r\n\r\nhi",
            "GET http://h/v",
        );
    }
    // A 1.2 response to a 1.1 request, fed a byte at a time: kept alive, pooled.
    let mut s = Script::forwarded(GET);
    assert_eq!(s.take_upstream(), GET_UP);
    for b in b"HTTP/1.2 200 OK\r\nContent-Length: 5\r\n\r\nhello" {
        s.upstream(std::slice::from_ref(b));
    }
    assert_eq!(s.take_client(), OK5_DOWN);
    s.expect_released(ok5_line());
    // HTTP/2 and later in an HTTP/1 request line stay 505.
    for version in ["HTTP/2.0", "HTTP/3.0", "HTTP/2.2"] {
        let request = format!("GET http://h/ {version}\r\nHost: h\r\n\r\n");
        let want = canned(
            "505 HTTP Version Not Supported",
            "Only HTTP/1.0 and HTTP/1.1 are supported.",
        );
        for (how, mut s) in three_ways(&support::config(), request.as_bytes()) {
            assert_eq!(s.take_client(), want, "{how} {version}");
            assert_eq!(
                s.take_events(),
                [
                    log(&line(
                        "GET http://h/",
                        505,
                        request.len(),
                        want.len(),
                        "0.000ms reason=unsupported_version"
                    )),
                    Event::Close
                ],
                "{how} {version}"
            );
        }
    }
}

#[test]
fn dials_say_whether_a_stale_pooled_connection_may_be_retried() {
    // Only an idempotent request without a body may go out on a pooled connection unchecked:
    // the core resends it once if that connection was already closed. The runtime must check
    // a pooled connection is alive before sending anything else on it.
    for (request, retryable) in [
        (&b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"[..], true),
        (b"PUT http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", true),
        (b"OPTIONS http://h HTTP/1.1\r\nHost: h\r\nMax-Forwards: 2\r\n\r\n", true),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", false),
        (b"PATCH http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", false),
        (b"PUT http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", false),
        (b"GET http://h/ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", false),
        (b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", false),
    ] {
        let mut s = Script::new();
        s.client(request);
        assert_eq!(s.dials_retryable(), [retryable], "{:?}", String::from_utf8_lossy(request));
    }
    // The retry itself goes to a fresh connection and is not retryable again.
    let mut s = Script::new();
    s.client(GET).dial_ok(true).upstream_eof();
    assert_eq!(s.dials_retryable(), [true, false]);
}

// ----- set_config (reload) -----

/// A configuration that admits no client at all.
fn deny_everyone() -> std::sync::Arc<Config> {
    let mut c = support::config();
    c.policy.allowed_clients.clear();
    std::sync::Arc::new(c)
}

#[test]
fn set_config_between_requests_applies_to_the_next_head() {
    let mut s = Script::new();
    s.conn.set_config(deny_everyone());
    s.client(GET);
    assert!(
        s.take_client().starts_with("HTTP/1.1 403 "),
        "the new policy refuses the next request"
    );
    assert!(s.is_closed());
}

#[test]
fn set_config_during_an_exchange_waits_for_the_next_request() {
    let mut s = Script::forwarded(GET);
    let deadline = s.conn.poll_timeout();
    let mut new = (*deny_everyone()).clone();
    new.exchange_idle_timeout = Duration::from_millis(1);
    s.conn.set_config(std::sync::Arc::new(new));
    assert_eq!(
        s.conn.poll_timeout(),
        deadline,
        "the exchange keeps its timeouts"
    );
    s.upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 ringway\r\n\r\nok",
        "the exchange in flight finishes under the old policy"
    );
    assert!(!s.is_closed(), "keep-alive: waiting for the next head");
    s.take_events();
    s.client(GET);
    assert!(
        s.take_client().starts_with("HTTP/1.1 403 "),
        "the next request on the same connection gets the new policy"
    );
}

#[test]
fn set_config_in_a_tunnel_leaves_the_tunnel_alone() {
    let mut s = Script::new();
    s.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    s.dial_ok(false);
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 Connection Established\r\n\r\n"
    );
    s.take_events();
    let deadline = s.conn.poll_timeout();
    let mut shorter = support::config();
    shorter.tunnel_idle_timeout = Duration::from_millis(1);
    shorter.policy.allowed_clients.clear();
    s.conn.set_config(std::sync::Arc::new(shorter));
    assert_eq!(
        s.conn.poll_timeout(),
        deadline,
        "the tunnel keeps its idle timeout"
    );
    s.relayed(Direction::ClientToUpstream, 5);
    s.relayed(Direction::UpstreamToClient, 7);
    assert!(s.conn.is_tunnel() && !s.is_closed(), "still relaying");
}
