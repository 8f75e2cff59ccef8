//! Conversations with the connection machine: bytes and events in, exact bytes and actions out.

mod support;

use std::time::Duration;

use ringway_core::tunnel::Direction;
use ringway_core::{Config, DialError};
use support::{canned, dial, log, Event, Script};

const GET: &[u8] = b"GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n";
const GET_UP: &str = "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\nVia: 1.1 ringway\r\n\r\n";
const OK5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\nhello";
const OK5_DOWN: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 ringway\r\n\r\nhello";

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
    s.upstream(OK5);
    s.take_events();
    s.take_client();
    s.take_upstream();
    s.client(b"GET http://other.example:8080/ HTTP/1.1\r\nHost: other.example:8080\r\n\r\n");
    assert_eq!(s.take_events(), [dial("other.example:8080", true)]);
    s.dial_ok(true);
    assert_eq!(
        s.take_upstream(),
        "GET / HTTP/1.1\r\nHost: other.example:8080\r\nVia: 1.1 ringway\r\n\r\n"
    );
    s.relays(
        b"HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nVia: 1.1 ringway\r\n\r\n",
    );
    s.expect_released();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut s = Script::new();
    let two = [
        GET,
        b"GET http://example.com/second HTTP/1.1\r\nHost: example.com\r\n\r\n",
    ]
    .concat();
    s.client(&two);
    assert_eq!(
        s.take_events(),
        [dial("example.com:80", true)],
        "one request at a time"
    );
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), GET_UP);
    s.upstream(OK5);
    let events = s.take_events();
    assert_eq!(events[0], Event::Release);
    assert_eq!(
        events[2],
        dial("example.com:80", true),
        "the second request starts after the first ends"
    );
    s.dial_ok(true);
    assert_eq!(
        s.take_upstream(),
        "GET /second HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 ringway\r\n\r\n"
    );
    s.relays(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        format!("{OK5_DOWN}HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 ringway\r\n\r\nhi"),
    );
}

#[test]
fn content_length_request_body_streams_through() {
    let mut s = Script::forwarded(
        b"POST http://h:81/up HTTP/1.1\r\nHost: h:81\r\nContent-Length: 10\r\n\r\n0123",
    );
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
    s.relays(
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n",
    );
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
    let mut s = Script::forwarded(
        b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    s.take_upstream();
    s.client(b"zz\r\nhello\r\n");
    assert_eq!(s.take_upstream(), "", "nothing of a bad chunk is forwarded");
    assert_eq!(
        s.take_client(),
        canned("400 Bad Request", "The chunked request body is malformed.")
    );
    s.expect_cut_off(|l| l.ends_with("reason=bad_chunk"));
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
    s.relays(
        &body.as_bytes()[9..],
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n{body}"),
    );
    s.expect_released();
    assert!(!s.is_closed());
}

#[test]
fn chunked_response_is_dechunked_for_http10_clients_and_closed() {
    let mut s = Script::new();
    s.client(b"GET http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.0 ringway\r\n\r\n"
    );
    s.relays(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nwikipedia",
    );
    let ev = s.take_events();
    assert_eq!(ev[0], Event::Release, "the upstream side ended cleanly");
    assert_eq!(ev[2], Event::Close, "close-delimited for the client");
}

#[test]
fn http10_keep_alive_with_a_length_stays_open() {
    let mut s = Script::new();
    s.client(b"GET http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .dial_ok(false)
        .upstream(OK5);
    assert_eq!(s.take_client(), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nVia: 1.1 ringway\r\n\r\nhello");
    assert!(!s.is_closed());
    let mut s = Script::new();
    s.client(b"GET http://h/ HTTP/1.0\r\n\r\n")
        .dial_ok(false)
        .upstream(OK5);
    assert!(s.take_client().contains("\r\nConnection: close\r\n"));
    assert!(s.is_closed());
}

#[test]
fn close_delimited_response_ends_at_upstream_eof() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nsome ");
    s.relays(
        b"bytes",
        "HTTP/1.1 200 OK\r\nServer: old\r\nConnection: close\r\nVia: 1.0 ringway\r\n\r\nsome bytes",
    );
    assert!(s.take_events().is_empty());
    s.upstream_eof();
    s.expect_cut_off(|l| l.contains(" 200 ") && !l.contains("reason"));
}

#[test]
fn client_connection_close_is_honoured() {
    let mut s = Script::new();
    s.client(b"GET http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringway\r\n\r\n"
    );
    s.relays(OK5, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello");
    let ev = s.take_events();
    assert_eq!(
        (ev[0].clone(), ev[2].clone()),
        (Event::Release, Event::Close)
    );
}

#[test]
fn upstream_connection_close_means_no_reuse() {
    let mut s = Script::forwarded(GET);
    s.relays(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n",
    );
    assert_eq!(s.take_events()[0], Event::CloseUpstream);
    assert!(
        !s.is_closed(),
        "the client connection is not the upstream's"
    );
}

#[test]
fn extra_upstream_bytes_poison_the_upstream_connection() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA");
    assert!(s.take_client().ends_with("\r\n\r\nhello"));
    assert_eq!(s.take_events()[0], Event::CloseUpstream);
}

#[test]
fn head_responses_and_304_have_no_body() {
    let mut s = Script::new();
    s.client(b"HEAD http://h/ HTTP/1.1\r\nHost: h\r\n\r\n")
        .dial_ok(false);
    s.relays(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nVia: 1.1 ringway\r\n\r\n",
    );
    s.expect_released();
    s.client(b"GET http://h/ HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n")
        .dial_ok(true);
    s.relays(
        b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nVia: 1.1 ringway\r\n\r\n",
    );
    s.expect_released();
}

#[test]
fn expect_100_continue_round_trip() {
    let mut s = Script::new();
    s.client(
        b"PUT http://h/f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\nVia: 1.1 ringway\r\n\r\n");
    assert!(s.conn.wants_client_read());
    s.relays(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 100 Continue\r\nVia: 1.1 ringway\r\n\r\n",
    );
    s.client(b"data");
    assert_eq!(s.take_upstream(), "data");
    s.relays(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n",
    );
    s.expect_released();
}

#[test]
fn early_final_answer_to_expect_closes_both_sides() {
    let mut s = Script::new();
    s.client(
        b"PUT http://h/f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .dial_ok(false);
    s.relays(
        b"HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n",
    );
    s.expect_cut_off(|l| l.contains(" 413 ") && l.ends_with("reason=response_before_request_end"));
}

#[test]
fn interim_responses_reach_http11_clients_only() {
    let mut s = Script::forwarded(GET);
    s.relays(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nVia: 1.1 ringway\r\n\r\n",
    );
    s.relays(OK5, OK5_DOWN);
    let mut s = Script::forwarded(b"GET http://h/ HTTP/1.0\r\n\r\n");
    s.upstream(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    assert!(s.take_client().starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn truncated_length_response_is_never_completed() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    s.upstream_eof();
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nVia: 1.1 ringway\r\n\r\nhello"
    );
    s.expect_cut_off(|l| l.ends_with("reason=upstream_truncated"));
}

#[test]
fn truncated_chunked_response_never_gets_a_last_chunk() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    s.upstream_eof();
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n5\r\nhel"
    );
    assert_eq!(s.take_events().last(), Some(&Event::Close));
}

#[test]
fn bad_chunked_response_closes_without_completing() {
    let mut s = Script::forwarded(GET);
    s.upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX");
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n5\r\nhello",
        "the valid prefix goes out, however the bytes were split; never a last chunk"
    );
    let ev = s.take_events();
    assert!(matches!(&ev[1], Event::Log(l) if l.ends_with("reason=bad_response_body")));
    assert!(s.is_closed());
}

#[test]
fn upstream_closing_before_answering_is_a_502() {
    let mut s = Script::forwarded(GET);
    s.upstream_eof();
    assert_eq!(
        s.take_client(),
        canned(
            "502 Bad Gateway",
            "The upstream server closed the connection without a response."
        )
    );
    s.expect_cut_off(|l| l.contains(" 502 ") && l.ends_with("reason=upstream_closed"));
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
            "The upstream server sent an invalid response.",
        );
    }
    let mut s = Script::forwarded(GET);
    s.upstream(&vec![b'x'; 70_000]);
    assert!(
        s.take_client().starts_with("HTTP/1.1 502 "),
        "an endless response head is a 502"
    );
}

#[test]
fn stale_pooled_connection_is_retried_once_for_idempotent_requests() {
    let mut s = Script::new();
    s.client(GET);
    s.take_events();
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
    // A second failure on the fresh connection is not retried.
    let mut s = Script::new();
    s.client(GET)
        .dial_ok(true)
        .upstream_eof()
        .dial_ok(false)
        .upstream_eof();
    assert!(s.take_client().starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
}

#[test]
fn non_idempotent_requests_are_not_retried() {
    let mut s = Script::new();
    s.client(b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
        .dial_ok(true)
        .upstream_eof();
    assert!(s.take_client().starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
    assert!(!s
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::Dial(_, false))));
}

#[test]
fn dial_failures_are_answered() {
    for (err, status, message) in [
        (
            DialError::Dns,
            "502 Bad Gateway",
            "The upstream host name could not be resolved.",
        ),
        (
            DialError::Refused,
            "502 Bad Gateway",
            "The upstream server could not be reached.",
        ),
        (
            DialError::Timeout,
            "504 Gateway Timeout",
            "The upstream server did not answer the connection in time.",
        ),
    ] {
        let mut s = Script::new();
        s.client(GET).dial_err(err);
        assert_eq!(s.take_client(), canned(status, message));
        let ev = s.take_events();
        assert!(!ev.contains(&Event::CloseUpstream), "there was no upstream");
        assert!(matches!(&ev[0], Event::Log(l) if l.contains(&status[..3])));
        assert_eq!(ev[1], Event::Close);
    }
}

#[test]
fn the_core_times_out_a_hanging_dial() {
    let mut s = Script::new();
    s.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    s.wait(Duration::from_secs(9));
    assert_eq!(s.take_client(), "", "not yet");
    s.wait(Duration::from_secs(1));
    s.expect_canned_then_close(
        "504 Gateway Timeout",
        "The upstream server did not answer the connection in time.",
    );
    // A dial result after the timeout is ignored.
    s.conn
        .handle_dial(s.now, Ok(ringway_core::Dialed { reused: false }));
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
    s.client(b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n")
        .dial_ok(false);
    s.take_events();
    s.upstream_eof();
    assert_eq!(s.take_events(), [Event::ShutdownClientWrite]);
    s.upstream_eof();
    assert!(s.take_events().is_empty(), "a repeated EOF is nothing new");
    s.client_eof();
    assert_eq!(
        s.take_events(),
        [
            log("127.0.0.1:50000 CONNECT [::1]:8443 200 0 0 0.000ms"),
            Event::Close
        ]
    );
}

#[test]
fn idle_tunnel_is_closed_once() {
    let mut s = Script::new();
    s.client(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n")
        .dial_ok(false);
    s.take_events();
    s.wait(Duration::from_secs(299));
    assert!(s.take_events().is_empty());
    s.relayed(Direction::UpstreamToClient, 5);
    s.wait(Duration::from_secs(299));
    assert!(s.take_events().is_empty(), "traffic moved the deadline");
    s.wait(Duration::from_secs(1));
    s.expect_cut_off(|l| l.ends_with("reason=tunnel_idle"));
    s.wait(Duration::from_secs(1000));
    assert!(s.take_events().is_empty());
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
    s.take_events();
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
    assert!(s.take_client().starts_with("HTTP/1.1 502 "));
}

#[test]
fn rejected_requests_get_exact_answers_and_never_reach_upstream() {
    let cases: &[(&[u8], &str, &str)] = &[
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "This is a forward proxy: send an absolute URI (GET http://host/path) or CONNECT."),
        (b"GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "Only http:// URIs are forwarded; use CONNECT for https."),
        (b"GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "The request URI is not a valid http:// URI."),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "400 Bad Request", "Content-Length and Transfer-Encoding must not both be present."),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", "400 Bad Request", "Content-Length must appear at most once."),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3x\r\n\r\n", "400 Bad Request", "Content-Length must be a decimal number."),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n", "400 Bad Request", "Transfer-Encoding must be exactly chunked."),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n", "400 Bad Request", "Transfer-Encoding must be exactly chunked."),
        (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", "400 Bad Request", "Transfer-Encoding must be exactly chunked."),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1."),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", "400 Bad Request", "Lines of the request head must end in CRLF."),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", "400 Bad Request", "Lines of the request head must end in CRLF."),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1."),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1."),
        (b"GET http://h/ HTTP/1.1\r\nHost : h\r\n\r\n", "400 Bad Request", "The request head is not valid HTTP/1.1."),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", "400 Bad Request", "Host must appear exactly once."),
        (b"GET http://h/ HTTP/1.1\r\nAccept: */*\r\n\r\n", "400 Bad Request", "HTTP/1.1 requests need a Host header."),
        (b"CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "CONNECT needs a host:port target with a port from 1 to 65535."),
        (b"CONNECT h: HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "CONNECT needs a host:port target with a port from 1 to 65535."),
        (b"CONNECT h:99999 HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "CONNECT needs a host:port target with a port from 1 to 65535."),
        (b"CONNECT h:25 HTTP/1.1\r\nHost: h\r\n\r\n", "403 Forbidden", "CONNECT to this port is not allowed."),
        (b"GET http://h/ HTTP/2.0\r\nHost: h\r\n\r\n", "505 HTTP Version Not Supported", "Only HTTP/1.0 and HTTP/1.1 are supported."),
        (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringway\r\n\r\n", "508 Loop Detected", "The request already passed through this proxy."),
    ];
    for (request, status, message) in cases {
        let want = canned(status, message);
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
            let ev = s.take_events();
            assert!(
                !ev.iter().any(|e| matches!(e, Event::Dial(..))),
                "{how}: {text:?} must not dial"
            );
            assert_eq!(ev.last(), Some(&Event::Close), "{how}: {text:?}");
            assert!(
                matches!(&ev[0], Event::Log(l) if l.contains(&format!(" {} ", &status[..3]))),
                "{how}: {ev:?}"
            );
        }
    }
}

#[test]
fn oversized_heads_are_431() {
    let mut s = Script::new();
    let mut head = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 70_000));
    s.client(&head);
    s.expect_canned_then_close(
        "431 Request Header Fields Too Large",
        "The request head is too large.",
    );
    let mut s = Script::new();
    let mut head = b"GET http://h/ HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..200 {
        head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    s.client(&head);
    assert_eq!(
        s.take_client(),
        canned(
            "431 Request Header Fields Too Large",
            "The request has too many header fields."
        )
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
    assert!(s.take_client().starts_with("HTTP/1.1 431 "));
}

#[test]
fn clients_outside_the_policy_get_403() {
    let mut s = Script::from(support::config(), "192.0.2.1:4000");
    s.client(GET);
    s.expect_canned_then_close(
        "403 Forbidden",
        "Your address is not allowed to use this proxy.",
    );
}

#[test]
fn header_timeout_cuts_slow_clients_with_408() {
    let mut s = Script::new();
    s.wait(Duration::from_secs(5));
    s.client(b"GET http://h/ HTTP/1.1\r\n");
    s.wait(Duration::from_secs(29));
    assert_eq!(s.take_client(), "", "a spurious or early wake does nothing");
    s.client(b"Host: h\r\n");
    s.wait(Duration::from_secs(1));
    s.expect_canned_then_close(
        "408 Request Timeout",
        "The request head did not arrive in time.",
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
    s.upstream(OK5);
    s.take_events();
    s.wait(Duration::from_secs(59));
    assert!(s.take_events().is_empty());
    s.wait(Duration::from_secs(1));
    assert_eq!(s.take_events(), [Event::Close]);
}

#[test]
fn silent_upstream_is_a_504() {
    let mut s = Script::forwarded(GET);
    s.wait(Duration::from_secs(300));
    s.expect_canned_then_close(
        "504 Gateway Timeout",
        "The upstream server did not respond in time.",
    );
}

#[test]
fn client_vanishing_mid_body_aborts_the_exchange() {
    let mut s = Script::new();
    s.client(b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        .dial_ok(false);
    s.take_events();
    s.client_eof();
    s.expect_cut_off(|l| l.ends_with("reason=client_closed"));
}

#[test]
fn client_half_close_after_a_complete_request_still_gets_the_answer() {
    let mut s = Script::new();
    s.client(GET).client_eof().dial_ok(false).upstream(OK5);
    assert_eq!(s.take_client(), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello");
    assert_eq!(s.take_events().last(), Some(&Event::Close));
}

#[test]
fn blank_lines_before_a_request_are_ignored() {
    let mut s = Script::new();
    s.client(b"\r\n\r\n");
    assert!(s.take_events().is_empty());
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
    assert!(matches!(&s.take_events()[1], Event::Log(l) if l.ends_with(" 1.750ms")));
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
    assert!(s.take_events().is_empty());
    s.client(b"Host: h\r\n\r\n").dial_ok(false).upstream(OK5);
    assert_eq!(s.take_client(), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello");
    assert_eq!(s.take_events().last(), Some(&Event::Close));

    // A response head already on its way closes after its body.
    let mut s = Script::new();
    s.client(GET)
        .dial_ok(false)
        .upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel");
    s.take_client();
    s.conn.drain();
    s.drain();
    s.relays(b"lo", "lo");
    let ev = s.take_events();
    assert_eq!(ev[0], Event::Release, "the upstream is still clean");
    assert_eq!(ev.last(), Some(&Event::Close));
}

#[test]
fn proxy_authentication_is_required_when_configured() {
    let mut config = support::config();
    config
        .policy
        .add_basic_credentials("Aladdin", "open sesame");
    let mut s = Script::with_config(config.clone());
    s.client(GET);
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"ringway\"\r\n\
Content-Type: text/plain\r\nContent-Length: 72\r\nConnection: close\r\n\r\n\
This proxy needs a user name and password (Proxy-Authorization: Basic).\n"
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
}

#[test]
fn client_eof_while_connect_dials_reaches_the_upstream() {
    let mut s = Script::new();
    s.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nlast words");
    s.client_eof();
    assert!(s.take_events().contains(&dial("example.com:443", false)));
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
            Event::Close
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
        assert!(
            s.take_client().starts_with("HTTP/1.1 431 "),
            "bytewise: {bytewise}"
        );
        assert!(
            matches!(&s.take_events()[0], Event::Log(l) if l.contains(" 431 65 ")),
            "rx is the limit + 1"
        );
    }
}
