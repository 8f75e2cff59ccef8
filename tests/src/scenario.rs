//! Building blocks for scenarios, so that a test spells out only what is particular to it: the
//! bytes it sends and the exact bytes it expects back.
//!
//! Every helper builds byte strings from literal pieces (request line, header lines, body); none
//! of them looks at what the proxy did, so an expectation built here is as exact as one written
//! out by hand. Comparisons stay with the tests ([`crate::assert_bytes`] and friends).

use crate::{assert_bytes, head, message, Conn, Head, Origin, OriginLog, Proxy};

/// An absolute-form request through the proxy: `METHOD http://AUTHORITY PATH HTTP/1.1`, then
/// `Host: AUTHORITY`, then the `extra` header lines, a blank line and `body`.
///
/// Why: nearly every scenario opens with this request line and Host header; only the method,
/// path, further headers and body differ, and those are what the reader should see.
pub fn proxy_request(
    method: &str,
    authority: &str,
    path: &str,
    extra: &[&str],
    body: &[u8],
) -> Vec<u8> {
    let start = format!("{method} http://{authority}{path} HTTP/1.1");
    request_with_host(&start, authority, extra, None, body)
}

/// `start`, `Host: AUTHORITY`, the `extra` lines, `last` if any, a blank line, then `body`.
fn request_with_host(
    start: &str,
    authority: &str,
    extra: &[&str],
    last: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let host = format!("Host: {authority}");
    let mut lines = vec![start, host.as_str()];
    lines.extend_from_slice(extra);
    lines.extend(last);
    message(&lines, body)
}

/// `GET http://AUTHORITY PATH HTTP/1.1` with only `Host: AUTHORITY`: the plainest request through
/// the proxy (see [`proxy_request`]).
pub fn proxy_get(authority: &str, path: &str) -> Vec<u8> {
    proxy_request("GET", authority, path, &[], b"")
}

/// What the origin must receive for a request that has no hop-by-hop headers to drop: the
/// origin-form request line `METHOD PATH HTTP/1.1`, `Host: AUTHORITY`, the `extra` lines as sent,
/// then the proxy's own `Via: 1.1 ringway`, a blank line and `body`.
///
/// Why: the counterpart of [`proxy_request`] on the origin side, so that a scenario states the
/// forwarded bytes without repeating the framing every time.
pub fn forwarded(
    method: &str,
    authority: &str,
    path: &str,
    extra: &[&str],
    body: &[u8],
) -> Vec<u8> {
    let start = format!("{method} {path} HTTP/1.1");
    request_with_host(&start, authority, extra, Some("Via: 1.1 ringway"), body)
}

/// `CONNECT TARGET HTTP/1.1` with `Host: TARGET`.
///
/// Why: the CONNECT head every tunnel and CONNECT-refusal scenario sends.
pub fn connect_request(target: &str) -> Vec<u8> {
    head(&[
        &format!("CONNECT {target} HTTP/1.1"),
        &format!("Host: {target}"),
    ])
}

/// An origin's `HTTP/1.1 200 OK` with `Content-Length` equal to the body's length, then `body`.
///
/// Why: the answer most origins in the scenarios give; `ok_response(b"ok")` is exactly
/// `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`.
pub fn ok_response(body: &[u8]) -> Vec<u8> {
    message(
        &[
            "HTTP/1.1 200 OK",
            &format!("Content-Length: {}", body.len()),
        ],
        body,
    )
}

/// [`ok_response`] as a client must receive it through the proxy: the same head with
/// `Via: 1.1 ringway` appended, then the body.
///
/// Why: the exact bytes a client expects for the commonest exchange, stated once.
pub fn ok_relayed(body: &[u8]) -> Vec<u8> {
    message(
        &[
            "HTTP/1.1 200 OK",
            &format!("Content-Length: {}", body.len()),
            "Via: 1.1 ringway",
        ],
        body,
    )
}

/// Path of a request head's start line (`/a?b` of `GET /a?b HTTP/1.1`); empty if there is none.
pub fn path_of(request: &[u8]) -> String {
    Head::parse(request)
        .start
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_string()
}

impl Origin {
    /// Answers every request with [`ok_response`] whose body is the request's path, keeping
    /// connections open.
    ///
    /// Why: lets a scenario tell the answers to several requests apart (pipelining, pooling,
    /// many clients) by their bodies alone.
    pub fn path_echo() -> Origin {
        Origin::reply_with(|req| ok_response(path_of(req).as_bytes()))
    }

    /// Reads one request on each connection, writes `response`, then closes the connection.
    ///
    /// Why: an origin whose response ends only at its close (close-delimited bodies,
    /// truncated Content-Length bodies).
    pub fn answer_then_close(response: &[u8]) -> Origin {
        let response = response.to_vec();
        Origin::start(move |c| {
            if c.read_request().is_some() {
                c.write(&response);
            }
        })
    }
}

impl Origin {
    /// Waits until request `index` (0 = the first) has arrived and asserts it is exactly
    /// `expected`; returns the log for further checks.
    ///
    /// Why: "the origin received exactly these bytes" closes most scenarios.
    #[track_caller]
    pub fn expect_request(&self, index: usize, expected: &[u8], what: &str) -> OriginLog {
        let log = self.wait_requests(index + 1);
        assert_bytes(&log.requests[index], expected, what);
        log
    }
}

impl Conn {
    /// Writes `request`, then reads one whole response to it (the method, which decides whether
    /// a body may follow, is the first word of `request`).
    ///
    /// Why: one request, one answer is the step most scenarios repeat.
    pub fn round_trip(&mut self, request: &[u8]) -> Vec<u8> {
        let method = request
            .split(|&b| b == b' ')
            .next()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        self.write(request);
        self.read_response(&method)
    }
}

/// `n` clients one after another, each on its own connection: `GET /0`, `/1`, ... to
/// `authority`, each answered exactly [`ok_relayed`]`(b"ok")`, each awaited until its
/// access-log line (the end of the exchange: the upstream connection is back in the pool).
///
/// Why: the set-up of every upstream-pool scenario, which then counts the origin's connections.
pub fn ok_gets_in_sequence(p: &mut Proxy, authority: &str, n: usize) {
    for i in 0..n {
        let mut c = p.connect();
        let resp = c.round_trip(&proxy_get(authority, &format!("/{i}")));
        assert_bytes(&resp, &ok_relayed(b"ok"), "response");
        p.wait_access(c.local_addr(), "GET");
    }
}
