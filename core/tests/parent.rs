//! Conversations with a parent proxy configured (`--upstream-proxy`): plain HTTP goes to the
//! parent in absolute form with the parent's credentials, CONNECT becomes a CONNECT to the
//! parent whose answer decides, exceptions go direct, the egress policy applies before
//! anything goes to the parent, and a parent that fails is named in the answer.

mod support;

use ringway_core::tunnel::Direction;
use ringway_core::{Config, DialError, Output, ParentProxy};
use support::{config, dial, line, log, Event, Script};

const PARENT: &str = "10.0.0.1:3128";
const AUTH: &str = "Proxy-Authorization: Basic dTpwQHNz\r\n"; // u:p@ss

fn parent_config(url: &str, bypass: &[&str]) -> Config {
    let mut c = config();
    let mut parent = ParentProxy::from_url(url).unwrap();
    for p in bypass {
        parent.bypass_mut().add(p).unwrap();
    }
    c.parent = Some(parent);
    c
}

fn chained() -> Script {
    Script::with_config(parent_config(
        "http://u:p%40ss@10.0.0.1:3128",
        &["*.direct.test"],
    ))
}

/// A canned answer about the parent, exactly as a client receives it.
fn parent_canned(status_line: &str, error: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status_line}\r\nProxy-Status: ringway; error={error}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        body.len() + 1
    )
}

#[test]
fn plain_http_goes_to_the_parent_in_absolute_form_with_its_credentials() {
    let mut s = chained();
    // The client's own Proxy-Authorization is for us: never passed on.
    let get = b"GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n\r\n";
    s.client(get);
    // No lookup of example.com: the parent resolves it. The parent's private address is
    // exempt from the guard (the operator chose it).
    assert_eq!(s.take_events(), [dial(PARENT, true)]);
    s.dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        format!("GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\n{AUTH}Via: 1.1 ringway\r\n\r\n")
    );
    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 parent\r\n\r\nhi";
    let relayed =
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 parent\r\nVia: 1.1 ringway\r\n\r\nhi";
    s.relays(answer.as_bytes(), relayed);
    s.expect_released(format!(
        "{} via=parent",
        line(
            "GET http://example.com/a?b=1",
            200,
            get.len(),
            relayed.len(),
            "0.000ms"
        )
    ));
    // The next request, to another origin, may reuse the pooled parent connection.
    s.client(b"GET http://example.org:8080/ HTTP/1.1\r\nHost: example.org:8080\r\n\r\n");
    assert_eq!(s.take_events(), [dial(PARENT, true)]);
    s.dial_ok(true);
    assert_eq!(
        s.take_upstream(),
        format!("GET http://example.org:8080/ HTTP/1.1\r\nHost: example.org:8080\r\n{AUTH}Via: 1.1 ringway\r\n\r\n")
    );
}

#[test]
fn connect_through_the_parent_starts_the_tunnel_on_its_2xx_keeping_every_byte() {
    let mut s = chained();
    s.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01hello");
    assert_eq!(s.take_events(), [dial(PARENT, false)]);
    s.dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        format!("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n{AUTH}Via: 1.1 ringway\r\n\r\n")
    );
    // Nothing to the client until the parent answers.
    assert_eq!(s.take_client(), "");
    assert_eq!(s.take_events(), []);
    s.upstream(b"HTTP/1.1 200 Connection established\r\nX-Parent: yes\r\n\r\n\x16\x03\x03server");
    assert_eq!(
        s.take_client(),
        "HTTP/1.1 200 Connection Established\r\n\r\n"
    );
    assert_eq!(
        s.take_events(),
        [Event::StartTunnel(
            b"\x16\x03\x01hello".to_vec(),
            b"\x16\x03\x03server".to_vec()
        )]
    );
    s.relayed(Direction::ClientToUpstream, 100)
        .relayed(Direction::UpstreamToClient, 200)
        .upstream_eof()
        .client_eof();
    let events = s.take_events();
    assert_eq!(
        events[events.len() - 2],
        log(&format!(
            "{} via=parent",
            line("CONNECT example.com:443", 200, 108, 209, "0.000ms")
        ))
    );
    assert_eq!(events[events.len() - 1], Event::Close);
}

#[test]
fn the_parents_refusal_of_connect_is_relayed_then_closed() {
    let mut s = chained();
    let connect = b"CONNECT blocked.example:443 HTTP/1.1\r\nHost: blocked.example:443\r\n\r\n";
    s.client(connect);
    s.dial_ok(false);
    s.take_upstream();
    s.upstream(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nnope\n",
    );
    let relayed = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\nnope\n";
    assert_eq!(s.take_client(), relayed);
    assert_eq!(
        s.take_events(),
        [
            Event::CloseUpstream,
            log(&format!(
                "{} via=parent",
                line(
                    "CONNECT blocked.example:443",
                    403,
                    connect.len(),
                    relayed.len(),
                    "0.000ms"
                )
            )),
            Event::Close
        ]
    );
}

#[test]
fn a_parent_answering_garbage_is_a_502_protocol_error() {
    let mut s = chained();
    s.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    s.dial_ok(false);
    s.upstream(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    assert_eq!(
        s.take_client(),
        parent_canned(
            "502 Bad Gateway",
            "http_protocol_error",
            "The upstream server sent an invalid response."
        )
    );
    assert!(s.is_closed());
}

#[test]
fn an_unreachable_parent_is_a_502_naming_it() {
    let mut s = chained();
    let get = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n";
    s.client(get);
    s.dial_err(DialError::Refused);
    let answer = parent_canned(
        "502 Bad Gateway",
        "connection_refused",
        "The parent proxy 10.0.0.1:3128 could not be reached.",
    );
    assert_eq!(s.take_client(), answer);
    assert_eq!(
        s.take_events(),
        [
            log(&format!(
                "{} via=parent",
                line(
                    "GET http://example.com/",
                    502,
                    get.len(),
                    answer.len(),
                    "0.000ms reason=parent_dial_failed"
                )
            )),
            Event::Close
        ]
    );
}

#[test]
fn a_parent_that_does_not_answer_the_connection_is_a_504() {
    let mut s = chained();
    s.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    s.wait(std::time::Duration::from_secs(10));
    assert_eq!(
        s.take_client(),
        parent_canned(
            "504 Gateway Timeout",
            "connection_timeout",
            "The parent proxy 10.0.0.1:3128 did not answer the connection in time."
        )
    );
    assert!(s.is_closed());
}

#[test]
fn the_egress_policy_applies_before_anything_goes_to_the_parent() {
    for target in ["127.0.0.1", "127.1", "0x7f000001", "[::1]"] {
        let mut s = chained();
        let get = format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n");
        s.client(get.as_bytes());
        let client = s.take_client();
        assert!(
            client.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{target}: {client}"
        );
        let events = s.take_events();
        assert!(
            !events.iter().any(|e| matches!(e, Event::Dial(..))),
            "{target}: {events:?}"
        );
    }
    let mut c = parent_config("http://10.0.0.1:3128", &[]);
    c.policy
        .egress
        .deny_domains_mut()
        .add("*.blocked.test")
        .unwrap();
    let mut s = Script::with_config(c);
    s.client(b"CONNECT a.blocked.test:443 HTTP/1.1\r\nHost: a.blocked.test:443\r\n\r\n");
    assert!(s.take_client().starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert!(!s.take_events().iter().any(|e| matches!(e, Event::Dial(..))));
}

#[test]
fn exceptions_go_direct_and_are_logged_so() {
    let mut s = chained();
    let get = b"GET http://a.direct.test/ HTTP/1.1\r\nHost: a.direct.test\r\n\r\n";
    s.client(get);
    // Resolved and judged by us, as without a parent.
    assert_eq!(s.take_events(), [dial("a.direct.test:80", true)]);
    s.dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        "GET / HTTP/1.1\r\nHost: a.direct.test\r\nVia: 1.1 ringway\r\n\r\n"
    );
    let answer = "HTTP/1.1 204 No Content\r\n\r\n";
    let relayed = "HTTP/1.1 204 No Content\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(answer.as_bytes(), relayed);
    s.expect_released(format!(
        "{} via=direct",
        line(
            "GET http://a.direct.test/",
            204,
            get.len(),
            relayed.len(),
            "0.000ms"
        )
    ));
}

#[test]
fn a_parent_named_by_host_is_resolved_and_exempt_from_the_guard() {
    let mut s = Script::with_config(parent_config("http://proxy.corp:3128", &[]));
    s.manual_dns();
    s.client(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(s.take_events(), [Event::Resolve("proxy.corp:3128".into())]);
    // Loopback, which the guard refuses for targets: the parent is the operator's choice.
    s.resolved(&["127.0.0.1"]);
    assert_eq!(s.take_events(), [dial("127.0.0.1:3128", true)]);
    s.dial_ok(false);
    assert_eq!(
        s.take_upstream(),
        "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 ringway\r\n\r\n"
    );
    let record = s.trace.iter().find_map(|o| match o {
        Output::Connect { addr, .. } => Some(*addr),
        _ => None,
    });
    assert_eq!(record, Some("127.0.0.1:3128".parse().unwrap()));
}

#[test]
fn without_a_parent_the_log_line_is_unchanged() {
    let mut s = Script::new();
    let get = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n";
    s.client(get).dial_ok(false);
    s.take_upstream();
    let relayed = "HTTP/1.1 204 No Content\r\nVia: 1.1 ringway\r\n\r\n";
    s.relays(b"HTTP/1.1 204 No Content\r\n\r\n", relayed);
    s.expect_released(line(
        "GET http://example.com/",
        204,
        get.len(),
        relayed.len(),
        "0.000ms",
    ));
}
