//! Conversations about dialing a name with several addresses (Happy Eyeballs v2, RFC 8305):
//! the order of the attempts, the 250 ms stagger, the first success winning, the losers
//! cancelled, and the answers when every attempt fails or the race times out. The clock is
//! virtual, so a black-holed address costs exactly the time the schedule gives it.

mod support;

use std::time::Duration;

use ringway_core::{DialError, Output};
use support::{canned, dial, line, log, Event, Script};

const GET: &[u8] = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n";
const UP: &str = "GET / HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 ringway\r\n\r\n";
const V6A: &str = "2606:2800:21f:cb07::6820";
const V6B: &str = "2606:2800:21f:cb07::6821";
const V6C: &str = "2606:2800:21f:cb07::6822";
const V4A: &str = "93.184.215.14";
const V4B: &str = "93.184.215.15";
const V4C: &str = "93.184.215.16";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A script whose client sent `GET` and whose lookup is waiting for the test's answer.
fn resolving() -> Script {
    let mut s = Script::new();
    s.manual_dns().client(GET);
    assert_eq!(s.take_events(), [Event::Resolve("example.com:80".into())]);
    s
}

fn sock(ip: &str) -> String {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    std::net::SocketAddr::new(ip, 80).to_string()
}

/// The address the access record of the exchange names as dialed.
fn logged_upstream(s: &Script) -> Option<std::net::SocketAddr> {
    s.trace.iter().rev().find_map(|o| match o {
        Output::Log(r) => Some(r.upstream),
        _ => None,
    })?
}

#[test]
fn one_address_gets_the_whole_connect_timeout() {
    let mut s = resolving();
    s.resolved(&[V4A]);
    assert_eq!(s.take_events(), [dial(&sock(V4A), true)]);
    // No second address: the next deadline is the dial's own.
    assert_eq!(s.conn.poll_timeout(), Some(s.now + Duration::from_secs(10)));
    s.wait(Duration::from_secs(9));
    assert_eq!(s.take_events(), []);
    s.dial_ok(false);
    assert_eq!(s.take_upstream(), UP);
    assert_eq!(s.take_events(), []);
}

#[test]
fn a_black_holed_first_address_costs_250ms_then_the_second_wins() {
    let mut s = resolving();
    s.resolved(&[V6A, V4A]);
    assert_eq!(s.take_events(), [dial(&sock(V6A), true)]);
    assert_eq!(s.conn.poll_timeout(), Some(s.now + ms(250)));
    // An early wake starts nothing.
    s.wait(ms(249));
    assert_eq!(s.take_events(), []);
    s.wait(ms(1));
    assert_eq!(s.take_events(), [dial(&sock(V4A), true)]);
    assert_eq!(s.attempts_in_flight(), [sock(V6A), sock(V4A)]);
    // Nothing left to start: the next deadline is the whole dial's (10 s after it began).
    assert_eq!(
        s.conn.poll_timeout(),
        Some(s.now + (Duration::from_secs(10) - ms(250)))
    );
    s.wait(ms(5));
    s.dial_ok_at(&sock(V4A));
    // The loser is cancelled (and closed by the runtime), then the request goes up.
    assert_eq!(s.take_events(), [Event::Cancel(sock(V6A))]);
    assert_eq!(s.take_upstream(), UP);
    assert!(s.attempts_in_flight().is_empty());
    let response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    s.relays(
        response.as_bytes(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 ringway\r\n\r\nhi",
    );
    let tx = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 ringway\r\n\r\nhi".len();
    s.expect_released(line(
        "GET http://example.com/",
        200,
        GET.len(),
        tx,
        "255.000ms",
    ));
    assert_eq!(logged_upstream(&s), Some(sock(V4A).parse().unwrap()));
}

#[test]
fn a_first_address_refused_at_once_starts_the_next_at_once() {
    let mut s = resolving();
    s.resolved(&[V6A, V4A]);
    assert_eq!(s.take_events(), [dial(&sock(V6A), true)]);
    s.wait(ms(3));
    s.dial_err_at(&sock(V6A), DialError::Refused);
    assert_eq!(s.take_events(), [dial(&sock(V4A), true)]);
    s.dial_ok_at(&sock(V4A));
    assert_eq!(s.take_events(), [], "nothing left to cancel");
    assert_eq!(s.take_upstream(), UP);
}

#[test]
fn six_addresses_alternate_families_every_250ms_and_the_winner_cancels_the_rest() {
    let mut s = resolving();
    // The resolver's order: all IPv6 first. The attempts alternate, starting with IPv6.
    s.resolved(&[V6A, V6B, V6C, V4A, V4B, V4C]);
    let mut want = vec![dial(&sock(V6A), true)];
    assert_eq!(s.take_events(), want);
    for ip in [V4A, V6B, V4B, V6C, V4C] {
        s.wait(ms(250));
        want = vec![dial(&sock(ip), true)];
        assert_eq!(s.take_events(), want);
    }
    assert_eq!(
        s.attempts_in_flight(),
        [V6A, V4A, V6B, V4B, V6C, V4C].map(sock)
    );
    // The third one connects first: the five others are cancelled, oldest first.
    s.dial_ok_at(&sock(V6B));
    assert_eq!(
        s.take_events(),
        [V6A, V4A, V4B, V6C, V4C].map(|ip| Event::Cancel(sock(ip)))
    );
    assert_eq!(s.take_upstream(), UP);
}

#[test]
fn when_every_attempt_fails_the_last_error_answers_502() {
    let mut s = resolving();
    s.resolved(&[V6A, V4A]);
    s.wait(ms(250));
    assert_eq!(
        s.take_events(),
        [dial(&sock(V6A), true), dial(&sock(V4A), true)]
    );
    s.dial_err_at(&sock(V4A), DialError::Timeout);
    assert_eq!(s.take_events(), [], "one still in flight");
    s.wait(ms(10));
    s.dial_err_at(&sock(V6A), DialError::Refused);
    let message = "The upstream server could not be reached.";
    let tx = canned("502 Bad Gateway", message).len();
    s.expect_canned_then_close(
        "502 Bad Gateway",
        message,
        &[
            log(&line(
                "GET http://example.com/",
                502,
                GET.len(),
                tx,
                "260.000ms reason=dial_failed",
            )),
            Event::Close,
        ],
    );
}

#[test]
fn a_race_outliving_the_connect_timeout_is_a_504() {
    let mut s = resolving();
    s.resolved(&[V6A, V4A]);
    s.wait(ms(250));
    assert_eq!(s.take_events().len(), 2);
    // The whole race has one deadline: 10 s after it began.
    s.wait(Duration::from_secs(10) - ms(251));
    assert_eq!(s.take_events(), []);
    s.wait(ms(1));
    let message = "The upstream server did not answer the connection in time.";
    let tx = canned("504 Gateway Timeout", message).len();
    s.expect_canned_then_close(
        "504 Gateway Timeout",
        message,
        &[
            log(&line(
                "GET http://example.com/",
                504,
                GET.len(),
                tx,
                "10000.000ms reason=dial_timeout",
            )),
            Event::Close,
        ],
    );
    // Close takes the attempts with it; a late result changes nothing.
    assert!(s.attempts_in_flight().is_empty());
}

#[test]
fn a_result_for_a_cancelled_attempt_is_ignored() {
    let mut s = resolving();
    s.resolved(&[V6A, V4A]);
    s.wait(ms(250));
    let attempts: Vec<_> = s
        .trace
        .iter()
        .filter_map(|o| match o {
            Output::Connect { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts.len(), 2);
    assert_ne!(attempts[0], attempts[1]);
    s.dial_ok_at(&sock(V4A));
    s.take_events();
    s.take_upstream();
    // A runtime that reports the cancelled attempt anyway changes nothing.
    s.conn.handle_dial(
        s.now,
        attempts[0],
        Ok(ringway_core::Dialed { reused: false }),
    );
    assert_eq!(s.conn.poll_output(), None);
    s.conn
        .handle_dial(s.now, attempts[0], Err(DialError::Refused));
    assert_eq!(s.conn.poll_output(), None);
}

#[test]
fn addresses_the_policy_refuses_take_no_part_in_the_race() {
    let mut s = resolving();
    s.resolved(&["::1", V6A, "127.0.0.1", V4A]);
    assert_eq!(s.take_events(), [dial(&sock(V6A), true)]);
    s.wait(ms(250));
    assert_eq!(s.take_events(), [dial(&sock(V4A), true)]);
    s.wait(ms(250));
    assert_eq!(s.take_events(), [], "nothing else is approved");
}

#[test]
fn the_race_gets_the_connect_timeout_after_a_slow_lookup() {
    let mut s = resolving();
    s.wait(Duration::from_secs(4));
    s.resolved(&[V4A]);
    assert_eq!(s.take_events(), [dial(&sock(V4A), true)]);
    // 10 s from the answer, not from the request.
    assert_eq!(s.conn.poll_timeout(), Some(s.now + Duration::from_secs(10)));
}
