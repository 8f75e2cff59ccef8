//! Conversations with a connection in intercepted-tunnel mode (`Connection::new_intercepted`):
//! the plaintext inside a CONNECT tunnel whose TLS the runtime terminated. Requests are
//! origin-form, pinned to the CONNECT authority (another one gets 421), and every defence of
//! the plain proxy applies unchanged: smuggling vectors, Via loops, the egress policy.

mod support;

use std::time::Duration;

use ringway_core::tunnel::Direction;
use support::{canned, dial, line, log, Event, Script};

const GET: &[u8] =
    b"GET /a?b=1 HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\n\r\n";
const GET_UP: &str = "GET /a?b=1 HTTP/1.1\r\nHost: origin.test:443\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\nVia: 1.1 ringway\r\n\r\n";
const OK5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
const OK5_DOWN: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 ringway\r\n\r\nhello";

/// The access-log line of one `GET` answered `200` with `tx` bytes to the client.
fn get_line(tx: usize) -> String {
    line(
        "GET https://origin.test:443/a?b=1",
        200,
        GET.len(),
        tx,
        "0.000ms intercepted=1",
    )
}

#[test]
fn origin_form_request_goes_to_the_pinned_authority_and_logs_its_https_url() {
    let mut s = Script::intercepted("origin.test:443");
    s.client(GET);
    assert_eq!(s.take_events(), [dial("origin.test:443", true)]);
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), GET_UP);
    s.relays(OK5, OK5_DOWN);
    s.expect_released(get_line(OK5_DOWN.len()));
    // Keep-alive: the next request on the same tunnel.
    assert!(s.conn.wants_client_read());
    s.client(GET);
    assert_eq!(s.take_events(), [dial("origin.test:443", true)]);
    s.dial_ok(true);
    assert_eq!(s.take_upstream(), GET_UP);
}

#[test]
fn absolute_https_form_naming_the_pinned_authority_is_accepted() {
    let mut s = Script::intercepted("origin.test:443");
    s.client(b"GET https://ORIGIN.test/x HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    assert_eq!(s.take_events(), [dial("origin.test:443", true)]);
    s.dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        "GET /x HTTP/1.1\r\nHost: origin.test:443\r\nVia: 1.1 ringway\r\n\r\n"
    );
}

const MISDIRECTED: &str =
    "This connection was opened for another host: connect to that host separately.";

#[test]
fn another_authority_gets_421_and_nothing_is_dialed() {
    for request in [
        "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: origin.test:8443\r\n\r\n",
        "GET https://other.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n",
        "GET https://origin.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n",
        "CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n",
    ] {
        let mut s = Script::intercepted("origin.test:443");
        s.client(request.as_bytes());
        let target = request.split(' ').nth(1).unwrap();
        let logged = if target.starts_with('/') {
            format!("https://origin.test:443{target}")
        } else {
            target.to_string()
        };
        let method = request.split(' ').next().unwrap();
        let answer = canned("421 Misdirected Request", MISDIRECTED);
        s.expect_canned_then_close(
            "421 Misdirected Request",
            MISDIRECTED,
            &[
                log(&line(
                    &format!("{method} {logged}"),
                    421,
                    request.len(),
                    answer.len(),
                    "0.000ms intercepted=1 reason=misdirected_request",
                )),
                Event::Close,
            ],
        );
    }
}

#[test]
fn smuggling_and_malformed_requests_inside_get_the_plain_proxys_answers() {
    for (request, status, message, word) in [
        (
            "POST / HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400 Bad Request",
            "Content-Length and Transfer-Encoding must not both be present.",
            "cl_and_te",
        ),
        (
            "POST / HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "400 Bad Request",
            "Content-Length must appear at most once.",
            "duplicate_content_length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
            "400 Bad Request",
            "Transfer-Encoding must be exactly chunked.",
            "bad_transfer_encoding",
        ),
        (
            "GET / HTTP/1.1\r\nHost: origin.test\r\nHost: other.test\r\n\r\n",
            "400 Bad Request",
            "Host must appear exactly once.",
            "duplicate_host",
        ),
        (
            "GET / HTTP/1.1\r\n\r\n",
            "400 Bad Request",
            "HTTP/1.1 requests need a Host header.",
            "missing_host",
        ),
        (
            "GET / HTTP/1.1\nHost: origin.test\r\n\r\n",
            "400 Bad Request",
            "Lines of the request head must end in CRLF.",
            "bare_line_ending",
        ),
        (
            "GET / HTTP/1.1\r\nHost: origin.test\r\nVia: 1.1 ringway\r\n\r\n",
            "508 Loop Detected",
            "The request already passed through this proxy.",
            "forwarding_loop",
        ),
        (
            "GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n",
            "400 Bad Request",
            "The request URI is not a valid http:// URI.",
            "bad_target",
        ),
    ] {
        let mut s = Script::intercepted("origin.test:443");
        s.client(request.as_bytes());
        assert_eq!(s.take_client(), canned(status, message), "{request:?}");
        let events = s.take_events();
        assert_eq!(events.len(), 2, "{request:?}: {events:?}");
        assert!(
            matches!(&events[0], Event::Log(l) if l.ends_with(&format!("intercepted=1 reason={word}"))),
            "{request:?}: {events:?}"
        );
        assert_eq!(events[1], Event::Close);
        assert_eq!(s.take_upstream(), "", "nothing reaches the origin");
    }
}

#[test]
fn the_egress_policy_judges_the_pinned_dial_too() {
    // A pinned loopback literal: refused by the default guard, as outside.
    let mut s = Script::intercepted("127.0.0.1:443");
    s.client(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let out = s.take_client();
    assert!(out.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{out}");
    assert!(out.contains("destination 127.0.0.1 is loopback"), "{out}");
    assert_eq!(s.take_upstream(), "");
}

#[test]
fn an_origin_certificate_refused_at_the_dial_is_a_502_with_its_proxy_status() {
    use ringway_core::DialError;
    for (error, message, word) in [
        (
            DialError::TlsCertificate,
            "The upstream server's TLS certificate is not trusted (unknown issuer, expired, or for another name).",
            "tls_certificate_error",
        ),
        (
            DialError::TlsProtocol,
            "The TLS handshake with the upstream server failed.",
            "tls_protocol_error",
        ),
    ] {
        let mut s = Script::intercepted("origin.test:443");
        s.client(GET);
        assert_eq!(s.take_events(), [dial("origin.test:443", true)]);
        s.dial_err(error);
        let answer = s.take_client();
        assert_eq!(
            answer,
            format!(
                "HTTP/1.1 502 Bad Gateway\r\nProxy-Status: ringway; error={word}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}\n",
                message.len() + 1
            )
        );
        let events = s.take_events();
        assert!(
            matches!(&events[0], Event::Log(l) if l.contains(" 502 ") && l.ends_with(&format!("intercepted=1 reason={word}"))),
            "{events:?}"
        );
    }
}

#[test]
fn split_at_every_byte_the_exchange_is_the_same() {
    let mut whole = Script::intercepted("origin.test:443");
    whole.client(GET).dial_ok(false).upstream(OK5);
    let mut bytewise = Script::intercepted("origin.test:443");
    bytewise.client_bytewise(GET).dial_ok(false).upstream(OK5);
    assert_eq!(whole.take_upstream(), bytewise.take_upstream());
    assert_eq!(whole.take_client(), bytewise.take_client());
    assert_eq!(whole.take_events(), bytewise.take_events());
}

#[test]
fn the_runtime_notes_what_it_did_with_a_tunnel_on_its_log_line() {
    let mut s = Script::new();
    // Outside a tunnel a note is ignored.
    s.conn.note_tunnel("not_tls");
    s.client(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n")
        .dial_ok(false);
    assert_eq!(s.take_events(), [Event::StartTunnel(vec![], vec![])]);
    assert_eq!(
        s.conn.tunnel_authority().map(|a| a.to_string()),
        Some("h:443".to_string())
    );
    s.conn.note_tunnel("client_tls_abort");
    s.client_eof().upstream_eof();
    assert_eq!(
        s.take_events(),
        [
            Event::ShutdownUpstreamWrite,
            log("127.0.0.1:50000 CONNECT h:443 200 0 0 0.000ms reason=client_tls_abort"),
            Event::Close
        ]
    );
}

#[test]
fn a_tunnel_note_replaces_the_tunnels_own_end_reason() {
    let mut s = Script::new();
    s.client(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n")
        .dial_ok(false);
    s.take_events();
    s.conn.note_tunnel("not_tls");
    s.conn.handle_upstream_error(s.now);
    s.drain();
    let events = s.take_events();
    assert!(
        events.contains(&log(
            "127.0.0.1:50000 CONNECT h:443 200 0 0 0.000ms reason=not_tls"
        )),
        "{events:?}"
    );
}

const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: origin.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n";
const UPGRADE_UP: &str = "GET /chat HTTP/1.1\r\nHost: origin.test:443\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\nVia: 1.1 ringway\r\n\r\n";
const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\n\x81\x05hello";
const SWITCH_DOWN: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\nConnection: upgrade\r\nVia: 1.1 ringway\r\n\r\n";

/// The runtime relays the plaintext of an upgraded connection between the two TLS sessions
/// and reports it as for any tunnel: the 101 line counts the heads plus every relayed byte,
/// and the half-closes (close_notify each way) end it.
#[test]
fn an_upgrade_inside_becomes_an_inner_tunnel_with_its_bytes_on_the_101_line() {
    let mut s = Script::intercepted("origin.test:443");
    s.client(UPGRADE);
    assert_eq!(s.take_events(), [dial("origin.test:443", true)]);
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), UPGRADE_UP);
    s.relays(SWITCH, SWITCH_DOWN);
    assert_eq!(
        s.take_events(),
        [Event::StartTunnel(vec![], b"\x81\x05hello".to_vec())]
    );
    assert!(s.conn.is_tunnel());
    assert!(!s.conn.wants_client_read() && !s.conn.wants_upstream_read());
    // 11 bytes from the client, 9 more from the origin, relayed by the runtime.
    s.relayed(Direction::ClientToUpstream, 11)
        .relayed(Direction::UpstreamToClient, 9);
    // The client's close_notify: the origin session gets one.
    s.client_eof();
    assert_eq!(s.take_events(), [Event::ShutdownUpstreamWrite]);
    // Again (the TCP EOF after the close_notify): nothing more.
    s.client_eof();
    assert_eq!(s.take_events(), []);
    s.upstream_eof();
    assert_eq!(
        s.take_events(),
        [
            log(&line(
                "GET https://origin.test:443/chat",
                101,
                UPGRADE.len() + 11,
                SWITCH_DOWN.len() + 7 + 9,
                "0.000ms intercepted=1",
            )),
            Event::Close
        ]
    );
}

#[test]
fn an_upgrade_inside_split_at_every_byte_is_the_same() {
    let mut whole = Script::intercepted("origin.test:443");
    whole.client(UPGRADE).dial_ok(false).upstream(SWITCH);
    let (up, down, events) = (
        whole.take_upstream(),
        whole.take_client(),
        whole.take_events(),
    );
    // The 101 split at every byte of its head (what follows the head is tunnel payload,
    // which the runtime relays itself once the tunnel started).
    let head_len = SWITCH.len() - 7;
    for at in 1..head_len {
        let mut split = Script::intercepted("origin.test:443");
        split.client_bytewise(UPGRADE).dial_ok(false);
        split.upstream(&SWITCH[..at]).upstream(&SWITCH[at..]);
        assert_eq!(split.take_upstream(), up, "split at {at}");
        assert_eq!(split.take_client(), down, "split at {at}");
        assert_eq!(split.take_events(), events, "split at {at}");
    }
}

/// An origin that ends each response with `Connection: close`: the upstream is closed, the
/// client's connection stays open, and its next request asks for a new dial of the pinned
/// authority (the runtime opens a new TCP connection and TLS session for it).
#[test]
fn an_origin_closing_its_connection_means_a_new_dial_for_the_next_request() {
    let mut s = Script::intercepted("origin.test:443");
    let close5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    for _ in 0..3 {
        s.client(GET);
        assert_eq!(s.take_events(), [dial("origin.test:443", true)]);
        s.dial_ok(false);
        assert_eq!(s.take_upstream(), GET_UP);
        s.relays(close5, OK5_DOWN);
        assert_eq!(
            s.take_events(),
            [Event::CloseUpstream, log(&get_line(OK5_DOWN.len())),]
        );
        assert!(s.conn.wants_client_read());
    }
}

/// A client that stops mid-head inside the TLS session gets the plain listener's 408 once
/// the header timeout (a deadline the runtime arms for the inner connection) passes; the
/// line shows the URL it asked for.
#[test]
fn a_head_stalled_inside_gets_408_with_its_https_url_on_the_line() {
    let part: &[u8] = b"GET /slow HTTP/1.1\r\nHost: origin.test\r\n";
    let mut s = Script::intercepted("origin.test:443");
    s.client(part);
    let message = "The request head did not arrive in time.";
    s.wait(Duration::from_secs(29));
    assert_eq!(s.take_client(), "");
    s.wait(Duration::from_secs(1));
    s.expect_canned_then_close(
        "408 Request Timeout",
        message,
        &[
            log(&line(
                "GET https://origin.test:443/slow",
                408,
                part.len(),
                canned("408 Request Timeout", message).len(),
                "30000.000ms intercepted=1 reason=header_timeout",
            )),
            Event::Close,
        ],
    );
    // Between requests the keep-alive idle timeout closes it silently.
    let mut s = Script::intercepted("origin.test:443");
    s.client(GET).dial_ok(false).upstream(OK5);
    let _ = s.take_events();
    s.wait(Duration::from_secs(3600));
    assert_eq!(s.take_events(), [Event::Close]);
}

/// Through a parent proxy the runtime has one path to the origin and cannot dial it again
/// (`set_single_upstream`). An origin's `Connection: close` then goes on to the client, and
/// the client's connection closes after the response: its next request goes on a new
/// CONNECT instead of meeting a 502.
#[test]
fn a_single_upstream_closing_after_its_response_closes_the_client_after_it_too() {
    let mut s = Script::intercepted("origin.test:443");
    s.conn.set_single_upstream();
    let close5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    s.client(GET);
    assert_eq!(s.take_events(), [dial("origin.test:443", true)]);
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), GET_UP);
    s.relays(
        close5,
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nhello",
    );
    assert_eq!(
        s.take_events(),
        [
            Event::CloseUpstream,
            log(&get_line(OK5_DOWN.len() + "Connection: close\r\n".len())),
            Event::Close,
        ]
    );
    assert!(s.is_closed());
}

/// A single upstream that served ends while the client is idle (the origin closed its
/// keep-alive connection): the client's connection is closed at once, silently.
#[test]
fn a_single_upstream_ending_between_requests_closes_the_idle_client() {
    let mut s = Script::intercepted("origin.test:443");
    s.conn.set_single_upstream();
    s.client(GET).dial_ok(false);
    assert_eq!(s.take_upstream(), GET_UP);
    s.relays(OK5, OK5_DOWN);
    let _ = s.take_events();
    assert!(s.conn.wants_client_read());
    s.upstream_eof();
    assert_eq!(s.take_events(), [Event::Close]);
    assert!(s.is_closed());
    assert_eq!(s.take_client(), "");
}

/// A single upstream that never served (its TLS handshake failed before the client asked)
/// is left to the dial's answer: the client's request gets the 502 that says why.
#[test]
fn a_single_upstream_that_never_served_leaves_the_answer_to_the_dial() {
    use ringway_core::DialError;
    let mut s = Script::intercepted("origin.test:443");
    s.conn.set_single_upstream();
    s.upstream_eof();
    assert_eq!(s.take_events(), []);
    assert!(!s.is_closed());
    s.client(GET);
    assert_eq!(s.take_events(), [dial("origin.test:443", true)]);
    s.dial_err(DialError::TlsProtocol);
    let message = "The TLS handshake with the upstream server failed.\n";
    let answer = format!(
        "HTTP/1.1 502 Bad Gateway\r\nProxy-Status: ringway; error=tls_protocol_error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}",
        message.len()
    );
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [
            log(&line(
                "GET https://origin.test:443/a?b=1",
                502,
                GET.len(),
                answer.len(),
                "0.000ms intercepted=1 reason=tls_protocol_error",
            )),
            Event::Close
        ]
    );
    assert!(s.is_closed());
}

/// A single upstream that ends before answering a request it was handed again: no retry on
/// a fresh connection (the runtime has none to give), a 502 saying the upstream closed.
#[test]
fn a_single_upstream_gone_before_answering_is_a_502_not_a_retry() {
    let mut s = Script::intercepted("origin.test:443");
    s.conn.set_single_upstream();
    s.client(GET).dial_ok(false).upstream(OK5);
    let _ = s.take_client();
    let _ = s.take_events();
    s.client(GET).dial_ok(true);
    assert_eq!(s.take_upstream(), GET_UP.repeat(2));
    s.upstream_eof();
    let message = "The upstream server closed the connection without a response.";
    // No dial: the 502, its line, and the close.
    s.expect_canned_then_close(
        "502 Bad Gateway",
        message,
        &[
            Event::CloseUpstream,
            log(&line(
                "GET https://origin.test:443/a?b=1",
                502,
                GET.len(),
                canned("502 Bad Gateway", message).len(),
                "0.000ms intercepted=1 reason=upstream_closed",
            )),
            Event::Close,
        ],
    );
}
