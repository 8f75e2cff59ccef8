//! The bodies of the `cargo fuzz` targets in `fuzz/`, as plain functions.
//!
//! Each target in `fuzz/fuzz_targets/` is one line calling the function of the same name here,
//! so every input the fuzzer ever found interesting (the seeds in `fuzz/seeds/<target>/`, the
//! crashes in `fuzz/regressions/<target>/`) is replayed by `core/tests/fuzz_corpus.rs` under a
//! plain `cargo test`, on stable and on wasm.
//!
//! ## Key components
//! - [`request_head`] / [`response_head`]: head parsing, with the connection machine as a
//!   cross-check of what the parser decided.
//! - [`chunked`]: the chunked body decoder against its own encoder.
//! - [`split_invariance`]: one exchange fed whole and fed in fuzzer-chosen pieces.
//! - [`connection`]: the whole [`Connection`] driven by a fuzzer-chosen sequence of runtime
//!   events, with a model of the runtime checking every output.
//! - [`tunnel_accounting`]: [`TunnelMeter`] and a tunnelling [`Connection`] against a model.
//! - [`egress`]: the egress policy and host patterns against naive references.
//! - [`client_hello`]: the ClientHello parser: decisions only from bytes present, refragmented
//!   records read the same, and what it returns is well-formed.
//!
//! ## Error handling
//! A property that does not hold is an `assert!` failure: a panic is what libFuzzer reports
//! as a crash, and what a test reports as a failure. Nothing here returns an error. Inputs a
//! runtime could never produce (bytes after an EOF it reported, a dial result nobody asked
//! for) are skipped rather than fed, so every finding is a bug a real runtime could hit.
//!
//! Not part of the stable API: hidden from the docs, may change with the targets.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::time::Duration;

use crate::body::{self, BodyKind, Decoded};
use crate::client_hello;
use crate::config::{Config, MAX_HEADER_SLOTS};
use crate::connection::{Connection, DialError, Dialed, Output, CONNECT_ESTABLISHED};
use crate::dial_schedule::AttemptId;
use crate::egress::{self, parse_host, EgressPolicy, HostKind, Reason};
use crate::head::HeadScanner;
use crate::log::AccessRecord;
use crate::policy::{Cidr, Policy, PortRule};
use crate::problem::{reason_phrase, Problem};
use crate::request;
use crate::response::{self, ClientFraming};
use crate::route::{self, Decision};
use crate::target::Authority;
use crate::time::Instant;
use crate::tunnel::{Direction, TunnelMeter, TunnelStep};

/// Most outputs one drain may produce before the harness calls it a livelock.
pub const MAX_DRAIN: usize = 10_000;

/// Largest head the fuzzing configuration accepts: small, so that 431 and 502-for-size are
/// reachable with the fuzzer's default input length of 4096 bytes.
pub const FUZZ_MAX_HEAD: usize = 2048;

/// The configuration every target uses: defaults, CONNECT to any port, small head limit.
pub fn config() -> Config {
    Config {
        max_head_bytes: FUZZ_MAX_HEAD,
        max_headers: 64,
        policy: Policy {
            connect_ports: PortRule::Any,
            ..Policy::default()
        },
        ..Config::default()
    }
}

/// The parent proxy of the `parent_chain` target: a private address (exempt from the guard,
/// as the operator chose it), with credentials; the template host `h` bypasses it.
const PARENT: &str = "http://u:p@10.0.0.1:3128";

/// [`config`] with the parent proxy [`PARENT`] configured.
pub fn parent_config() -> Config {
    let mut parent = crate::parent::ParentProxy::from_url(PARENT).expect("valid parent URL");
    parent.bypass_mut().add("h").expect("valid pattern");
    Config {
        parent: Some(parent),
        ..config()
    }
}

fn client_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000)
}

/// Reads structured values from fuzzer bytes; past the end it yields zeros.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.data)
    }
}

/// Asserts that a rejection is a proper error answer: a 4xx/5xx status whose canned response
/// starts with the matching status line.
fn assert_rejection(problem: Problem) {
    let status = problem.status();
    assert!(
        (400..600).contains(&status),
        "{problem:?} has status {status}"
    );
    let answer = problem.response(false);
    let line = status_line(&answer).expect("canned answer has a status line");
    assert_eq!(line.0, status, "canned answer of {problem:?}");
    assert_eq!(line.1, reason_phrase(status).as_bytes());
}

/// `(status, reason)` of an `HTTP/1.1 DDD reason\r\n` line at the start of `bytes`.
fn status_line(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3) != Some(&b' ') {
        return None;
    }
    let status = digits
        .iter()
        .fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((status, &rest[4..end]))
}

// ----- request_head -----

/// What parsing the start of a client's input gave.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RequestOutcome {
    /// More bytes are needed.
    Incomplete,
    /// The head (or what arrived of it) is refused with this problem.
    Rejected {
        problem: Problem,
        /// Whether the head was complete, so that more bytes cannot change the verdict.
        complete: bool,
        head_request: bool,
    },
    /// A complete, acceptable head of `consumed` bytes (blank lines before it included).
    Accepted {
        consumed: usize,
        method: Vec<u8>,
        target: Vec<u8>,
        minor_version: u8,
        body: BodyKind,
        keep_alive: bool,
        upgrade: bool,
        expect_continue: bool,
        /// Where to dial, and the head sent there (empty for CONNECT).
        authority: Authority,
        forward_head: Vec<u8>,
        /// Whether the core may resend it after a stale pooled connection.
        retryable: bool,
    },
    /// A complete head the proxy answers itself (OPTIONS or TRACE with `Max-Forwards: 0`).
    Answered {
        consumed: usize,
        /// The exact answer.
        response: Vec<u8>,
    },
}

/// Parses the first request head in `buf` the way the connection machine does: skip blank
/// lines, find the end of the head with strict line endings, enforce the size limit, parse,
/// route.
fn parse_request_prefix(buf: &[u8], config: &Config) -> RequestOutcome {
    let mut skipped = 0;
    while buf[skipped..].starts_with(b"\r\n") {
        skipped += 2;
    }
    let rest = &buf[skipped..];
    if rest.is_empty() || rest == b"\r" {
        return RequestOutcome::Incomplete;
    }
    let max = config.max_head_bytes;
    let reject = |problem, complete| RequestOutcome::Rejected {
        problem,
        complete,
        head_request: false,
    };
    // Only the first `max + 1` bytes decide: the limit wins over anything after it.
    let window = &rest[..rest.len().min(max + 1)];
    let len = match HeadScanner::default().scan(window) {
        Err(problem) => return reject(problem, true),
        Ok(None) if rest.len() > max => return reject(Problem::HeadTooLarge, true),
        Ok(None) => return RequestOutcome::Incomplete,
        Ok(Some(len)) if len > max => return reject(Problem::HeadTooLarge, true),
        Ok(Some(len)) => len,
    };
    let head = &rest[..len];
    // HTTP/1.2 to 1.9 are read as HTTP/1.1, as the connection does.
    let copy = {
        let mut slots = request::header_slots();
        match request::parse(head, &mut slots, config.max_headers, config.via_pseudonym) {
            Err(Problem::UnsupportedVersion) => request::as_http11(head),
            _ => None,
        }
    };
    let head = copy.as_deref().unwrap_or(head);
    let mut slots = request::header_slots();
    let req = match request::parse(head, &mut slots, config.max_headers, config.via_pseudonym) {
        Ok(req) => req,
        Err(problem) => return reject(problem, true),
    };
    let (authority, forward_head) = match route::decide(&req, client_addr().ip(), &config.policy) {
        Decision::Reject(problem) => {
            return RequestOutcome::Rejected {
                problem,
                complete: true,
                head_request: req.is_head(),
            }
        }
        Decision::Tunnel(authority) => (authority, Vec::new()),
        Decision::Answer(answer) => {
            let close = !req.keep_alive || req.body != BodyKind::None;
            let connection = match (close, req.minor_version) {
                (true, _) => Some("close"),
                (false, 0) => Some("keep-alive"),
                (false, _) => None,
            };
            let mut out = bytes::BytesMut::new();
            answer.write_response(&req, connection, &mut out);
            return RequestOutcome::Answered {
                consumed: skipped + len,
                response: out.to_vec(),
            };
        }
        Decision::Forward(target) => {
            let mut out = bytes::BytesMut::new();
            req.write_forward_head(&target, config.via_pseudonym, &mut out);
            check_forward_head(&req, &out);
            (target.authority, out.to_vec())
        }
    };
    RequestOutcome::Accepted {
        consumed: skipped + len,
        method: req.method.as_bytes().to_vec(),
        target: req.target.to_vec(),
        minor_version: req.minor_version,
        body: req.body,
        keep_alive: req.keep_alive,
        upgrade: req.upgrade,
        expect_continue: req.expect_continue,
        authority,
        forward_head,
        retryable: !req.is_connect()
            && req.is_idempotent()
            && req.body == BodyKind::None
            && !req.upgrade,
    }
}

/// The head we send upstream must itself be a valid request head meaning the same thing:
/// same method and body framing, one Host, and our own `Via` entry recognised as a loop.
fn check_forward_head(req: &request::RequestHead<'_, '_>, forwarded: &[u8]) {
    assert_eq!(
        HeadScanner::default().scan(forwarded),
        Ok(Some(forwarded.len())),
        "forwarded head has one clean end"
    );
    let mut slots = request::header_slots();
    let again = request::parse(forwarded, &mut slots, MAX_HEADER_SLOTS, "ringway")
        .expect("the forwarded head parses");
    assert_eq!(again.method, req.method);
    assert_eq!(again.body, req.body, "body framing survives forwarding");
    assert_eq!(again.minor_version, 1);
    assert_eq!(again.upgrade, req.upgrade, "upgrade survives forwarding");
    assert!(again.looped, "our own Via entry is recognised");
    assert!(
        again.target.starts_with(b"/") || (again.method == "OPTIONS" && again.target == b"*"),
        "origin-form upstream (or asterisk-form for OPTIONS)"
    );
}

/// Fuzz target `request_head`: arbitrary bytes as the start of a client connection.
///
/// Properties: parsing never panics; a complete parse consumes no more than its input and is
/// unchanged by extra trailing bytes; a complete rejection is unchanged by them too; every
/// rejection carries a 4xx/5xx status with a matching canned answer; the head found
/// incrementally (byte by byte) is the head found at once; the forwarded head re-parses to
/// the same framing; and the connection machine, fed the same bytes, does what the parse
/// says (dial the authority, or answer with the problem's status).
pub fn request_head(data: &[u8]) {
    let config = config();
    let outcome = parse_request_prefix(data, &config);
    match &outcome {
        RequestOutcome::Incomplete => {}
        RequestOutcome::Rejected { problem, .. } => assert_rejection(*problem),
        RequestOutcome::Accepted { consumed, .. } | RequestOutcome::Answered { consumed, .. } => {
            assert!(*consumed <= data.len())
        }
    }

    // Byte by byte, the incremental scanner finds the same end (or the same error).
    let whole = HeadScanner::default().scan(data);
    let mut scanner = HeadScanner::default();
    let mut bytewise = Ok(None);
    for n in 1..=data.len() {
        bytewise = scanner.scan(&data[..n]);
        if !matches!(bytewise, Ok(None)) {
            break;
        }
    }
    assert_eq!(whole, bytewise, "incremental head scan differs");

    // Trailing bytes change nothing once the verdict is complete.
    let complete = match &outcome {
        RequestOutcome::Accepted { .. } | RequestOutcome::Answered { .. } => true,
        RequestOutcome::Rejected { complete, .. } => *complete,
        RequestOutcome::Incomplete => false,
    };
    for tail in [
        &b"X"[..],
        b"\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let mut longer = data.to_vec();
        longer.extend_from_slice(tail);
        let again = parse_request_prefix(&longer, &config);
        if complete {
            assert_eq!(again, outcome, "trailing bytes changed a complete parse");
        } else if let RequestOutcome::Rejected { .. } = outcome {
            assert!(
                matches!(again, RequestOutcome::Rejected { .. }),
                "a head already too large became acceptable: {again:?}"
            );
        }
    }

    // The connection machine agrees.
    let config = Arc::new(config);
    let mut conn = Connection::new(Arc::clone(&config), client_addr(), Instant::ZERO);
    conn.handle_client_data(Instant::ZERO, Bytes::copy_from_slice(data));
    let first = conn.poll_output();
    match outcome {
        RequestOutcome::Incomplete => assert_eq!(first, None, "no verdict on a partial head"),
        RequestOutcome::Rejected {
            problem,
            head_request,
            ..
        } => assert_eq!(
            first,
            Some(Output::ToClient(problem.response(head_request))),
            "the connection answers the parse's problem"
        ),
        RequestOutcome::Accepted {
            authority,
            method,
            retryable,
            ..
        } => {
            let connect = method == b"CONNECT";
            let egress = &config.policy.egress;
            match crate::egress::parse_host(authority.host()) {
                crate::egress::HostKind::InvalidIp => {
                    let problem = if connect {
                        Problem::BadConnectTarget
                    } else {
                        Problem::BadTarget
                    };
                    let head_request = method == b"HEAD";
                    assert_eq!(
                        first,
                        Some(Output::ToClient(problem.response(head_request)))
                    );
                }
                crate::egress::HostKind::Ip(ip) => {
                    let addr = SocketAddr::new(ip, authority.port());
                    match egress.judge_ip_target(addr) {
                        Ok(()) => {
                            let Some(Output::Connect {
                                addr: dialed,
                                allow_pooled,
                                retryable: may_retry,
                                ..
                            }) = first
                            else {
                                panic!("an allowed literal is dialed: {first:?}");
                            };
                            assert_eq!(
                                (dialed, allow_pooled, may_retry),
                                (addr, !connect, retryable)
                            );
                        }
                        Err(reason) => {
                            let Some(Output::ToClient(answer)) = first else {
                                panic!("a refused literal must be answered: {first:?}");
                            };
                            let status = Problem::Denied(reason).status();
                            let want = alloc::format!("HTTP/1.1 {status} ");
                            assert!(answer.starts_with(want.as_bytes()), "{answer:?}");
                        }
                    }
                }
                crate::egress::HostKind::Name => {
                    assert_eq!(first, Some(Output::Resolve(authority)))
                }
            }
        }
        RequestOutcome::Answered { response, .. } => assert_eq!(
            first,
            Some(Output::ToClient(Bytes::from(response))),
            "the connection answers as the final recipient"
        ),
    }
}

// ----- response_head -----

/// What parsing the start of an upstream's input gave.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ResponseOutcome {
    Incomplete,
    Rejected {
        complete: bool,
    },
    Accepted {
        consumed: usize,
        status: u16,
        minor_version: u8,
        body: BodyKind,
        reusable: bool,
        client_head: Vec<u8>,
    },
}

/// Parses the first response head in `buf` the way the connection machine does.
fn parse_response_prefix(
    buf: &[u8],
    config: &Config,
    head_request: bool,
    client_minor: u8,
) -> ResponseOutcome {
    let max = config.max_head_bytes;
    let len = match HeadScanner::default().scan(buf) {
        Ok(Some(len)) if len <= max => len,
        Ok(None) if buf.len() <= max => return ResponseOutcome::Incomplete,
        Ok(None) => return ResponseOutcome::Rejected { complete: false },
        _ => return ResponseOutcome::Rejected { complete: true },
    };
    let head = &buf[..len];
    // HTTP/1.2 to 1.9 are read as HTTP/1.1, as the connection does.
    let copy = {
        let mut slots = request::header_slots();
        match response::parse(head, &mut slots, config.max_headers, head_request) {
            Err(_) => response::as_http11(head),
            Ok(_) => None,
        }
    };
    let head = copy.as_deref().unwrap_or(head);
    let mut slots = request::header_slots();
    let Ok(res) = response::parse(head, &mut slots, config.max_headers, head_request) else {
        return ResponseOutcome::Rejected { complete: true };
    };
    let framing = res.client_framing(client_minor);
    let mut out = bytes::BytesMut::new();
    res.write_client_head(framing, None, config.via_pseudonym, &mut out);

    // What the client receives is a valid head with the same status, framed as promised.
    let mut slots = request::header_slots();
    let again = response::parse(&out, &mut slots, MAX_HEADER_SLOTS, head_request)
        .expect("the head written to the client parses");
    assert_eq!(again.status, res.status, "status passes through");
    assert_eq!(
        status_line(&out).map(|(s, _)| s),
        Some(res.status),
        "client head starts with the status line"
    );
    let expected_body = match framing {
        ClientFraming::Passthrough => res.body,
        // De-chunked for HTTP/1.0: the body now ends when we close.
        ClientFraming::Dechunk => BodyKind::CloseDelimited,
    };
    assert_eq!(again.body, expected_body, "client framing");
    if res.body == BodyKind::CloseDelimited {
        assert!(!res.reusable, "a close-delimited body ends the connection");
    }
    ResponseOutcome::Accepted {
        consumed: len,
        status: res.status,
        minor_version: res.minor_version,
        body: res.body,
        reusable: res.reusable,
        client_head: out.to_vec(),
    }
}

/// Fuzz target `response_head`: arbitrary bytes as an upstream's answer.
///
/// The first byte picks the request method (HEAD or not) and the client's version; the rest
/// is the response. Properties: never panics; a complete parse consumes no more than its
/// input and is unchanged by trailing bytes; every rejection is a 502 (`BadResponse`); the
/// head written to the client is a valid head with the same status and the framing the
/// client was promised; a close-delimited body never leaves the upstream reusable.
pub fn response_head(data: &[u8]) {
    let mut r = Reader::new(data);
    let flags = r.u8();
    let head_request = flags & 1 != 0;
    let client_minor = (flags >> 1) & 1;
    let data = r.rest();
    let config = config();
    let outcome = parse_response_prefix(data, &config, head_request, client_minor);
    match &outcome {
        ResponseOutcome::Accepted { consumed, .. } => assert!(*consumed <= data.len()),
        ResponseOutcome::Rejected { .. } => assert_rejection(Problem::BadResponse),
        ResponseOutcome::Incomplete => {}
    }
    for tail in [&b"X"[..], b"\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"] {
        let mut longer = data.to_vec();
        longer.extend_from_slice(tail);
        let again = parse_response_prefix(&longer, &config, head_request, client_minor);
        match outcome {
            ResponseOutcome::Accepted { .. } | ResponseOutcome::Rejected { complete: true } => {
                assert_eq!(again, outcome, "trailing bytes changed a complete parse")
            }
            ResponseOutcome::Rejected { complete: false } => assert!(
                matches!(again, ResponseOutcome::Rejected { .. }),
                "a head already too large became acceptable"
            ),
            ResponseOutcome::Incomplete => {}
        }
    }
}

// ----- chunked -----

fn reencode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    body::encode_chunk(payload, &mut out);
    out.extend_from_slice(body::LAST_CHUNK);
    out
}

/// Bytes a fresh chunked decoder consumes from `input` fed in pieces of `piece` before it
/// finishes or fails, and whether it failed.
fn consumed_until_stop(input: &[u8], piece: usize) -> (usize, bool) {
    let mut decoder = body::BodyDecoder::new(BodyKind::Chunked);
    let mut total = 0;
    for mut window in input.chunks(piece.max(1)) {
        while !window.is_empty() {
            match decoder.decode(window) {
                Ok(step) if step.done => return (total + step.consumed, false),
                Ok(step) => {
                    assert!(step.consumed > 0, "no progress on non-empty input");
                    total += step.consumed;
                    window = &window[step.consumed..];
                }
                Err(_) => return (total, true),
            }
        }
    }
    (total, false)
}

/// Fuzz target `chunked`: arbitrary bytes as a chunked body.
///
/// The first byte picks a piece size for feeding the decoder; the rest is the body.
/// Properties: never panics; the payload is never longer than what was consumed, which is
/// never more than was given; unfinished input is consumed entirely; feeding in pieces of any
/// size (1, the chosen size, all at once) gives the same result, errors included, and the
/// same count of bytes consumed before the decoder finished or failed; a finished
/// body is unchanged by trailing bytes and an error stays an error; re-encoding the accepted
/// payload and decoding again gives the same payload; a Content-Length body yields exactly
/// its prefix.
pub fn chunked(data: &[u8]) {
    let mut r = Reader::new(data);
    let piece = usize::from(r.u8()) + 1;
    let input = r.rest();

    let whole = body::decode_all(BodyKind::Chunked, input, usize::MAX);
    for p in [1, piece] {
        assert_eq!(
            body::decode_all(BodyKind::Chunked, input, p),
            whole,
            "fed in pieces of {p}"
        );
    }
    let mut longer = input.to_vec();
    longer.extend_from_slice(b"0\r\n\r\nX");
    let extended = body::decode_all(BodyKind::Chunked, &longer, usize::MAX);
    match &whole {
        Ok(d) => {
            assert!(d.consumed <= input.len(), "consumed more than given");
            assert!(d.payload.len() <= d.consumed, "more payload than input");
            if d.done {
                assert_eq!(
                    extended.as_ref(),
                    Ok(d),
                    "trailing bytes changed a done body"
                );
            } else {
                assert_eq!(d.consumed, input.len(), "unfinished input not consumed");
            }
            let encoded = reencode(&d.payload);
            assert_eq!(
                body::decode_all(BodyKind::Chunked, &encoded, usize::MAX),
                Ok(Decoded {
                    payload: d.payload.clone(),
                    consumed: encoded.len(),
                    done: true,
                }),
                "re-encoded payload decodes to itself"
            );
        }
        Err(_) => assert!(extended.is_err(), "more bytes turned an error into a body"),
    }

    // Up to an error, the same bytes count as consumed however the body was split.
    let until_stop = consumed_until_stop(input, usize::MAX);
    for p in [1, piece] {
        assert_eq!(
            consumed_until_stop(input, p),
            until_stop,
            "bytes consumed before stopping, in pieces of {p}"
        );
    }
    if let Ok(d) = &whole {
        assert_eq!(until_stop, (d.consumed, false));
    }

    let n = piece as u64 * 7;
    let d = body::decode_all(BodyKind::Length(n), input, piece).expect("length bodies never fail");
    let want = input.len().min(n as usize);
    assert_eq!(d.payload, &input[..want]);
    assert_eq!((d.consumed, d.done), (want, want as u64 == n));
}

// ----- split_invariance -----

/// What the harnesses' lookups answer: a global address, which the default policy allows.
const RESOLVED: IpAddr = IpAddr::V4(Ipv4Addr::new(93, 184, 215, 14));
/// Lookup answers for the `connection` target: allowed and refused addresses mixed, so the
/// filtering is exercised (the harness checks that no refused address is ever dialed).
const RESOLVED_SET: [IpAddr; 5] = [
    RESOLVED,
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(93, 184, 215, 15)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(core::net::Ipv6Addr::new(
        0x2606, 0x2800, 0x21f, 0xcb07, 0, 0, 0, 0x6820,
    )),
];

/// An output, normalised so that how bytes were cut into outputs does not matter.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    /// Bytes reaching the client (written by the core, or relayed in a tunnel).
    Client(BytesMut),
    /// Bytes reaching the upstream.
    Upstream(BytesMut),
    Resolve(Authority),
    Dial(SocketAddr, bool),
    /// The upstream connection ended; whether it went back to the pool.
    UpstreamDone {
        pooled: bool,
    },
    ShutdownClientWrite,
    ShutdownUpstreamWrite,
    Log(AccessRecord),
    Close,
}

fn push_event(events: &mut Vec<Event>, event: Event) {
    match (events.last_mut(), event) {
        (_, Event::Client(b) | Event::Upstream(b)) if b.is_empty() => {}
        (Some(Event::Client(have)), Event::Client(more)) => have.extend_from_slice(&more),
        (Some(Event::Upstream(have)), Event::Upstream(more)) => have.extend_from_slice(&more),
        (_, event) => events.push(event),
    }
}

/// Splits `data` at the offsets `cuts` (each relative to the previous cut).
fn pieces<'a>(data: &'a [u8], steps: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for &step in steps {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(usize::from(step).clamp(1, rest.len()));
        out.push(a);
        rest = b;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// One exchange's connection, with what the harness (playing a runtime that answers every dial
/// at once) has seen of it so far.
struct Exchange {
    conn: Connection,
    now: Instant,
    /// The fuzzer's flags; bit 0: the first dial is answered with a pooled connection.
    flags: u8,
    events: Vec<Event>,
    dials: u32,
    upstream_held: bool,
    closed: bool,
}

impl Exchange {
    /// Carries out every output, recording it as an [`Event`] and answering dials at once.
    /// `upstream_left` is how many upstream bytes are still on their way: a release while any
    /// are counts as not pooled.
    ///
    /// Why a method: every input `run_exchange` feeds is followed by this same drain.
    fn drain(&mut self, upstream_left: usize) {
        let mut n = 0;
        while let Some(out) = self.conn.poll_output() {
            n += 1;
            assert!(n <= MAX_DRAIN, "livelock");
            let events = &mut self.events;
            match out {
                Output::ToClient(b) => push_event(events, Event::Client(BytesMut::from(&b[..]))),
                Output::ToUpstream(b) => {
                    push_event(events, Event::Upstream(BytesMut::from(&b[..])))
                }
                Output::Resolve(authority) => {
                    push_event(events, Event::Resolve(authority));
                    self.conn.handle_resolved(self.now, &[RESOLVED]);
                }
                Output::Connect {
                    attempt,
                    addr,
                    allow_pooled,
                    ..
                } => {
                    push_event(events, Event::Dial(addr, allow_pooled));
                    self.dials += 1;
                    let reused = self.dials == 1 && self.flags & 1 != 0;
                    self.conn
                        .handle_dial(self.now, attempt, Ok(Dialed { reused }));
                    self.upstream_held = true;
                }
                Output::CancelConnect(_) => panic!("a single attempt answered at once lost"),
                Output::ReleaseUpstream => {
                    // Bytes still on their way from this upstream make it unpoolable, whether
                    // they arrived with the response (the core sees them) or after.
                    let pooled = upstream_left == 0;
                    push_event(events, Event::UpstreamDone { pooled });
                    self.upstream_held = false;
                }
                Output::CloseUpstream => {
                    push_event(events, Event::UpstreamDone { pooled: false });
                    self.upstream_held = false;
                }
                Output::ShutdownClientWrite => push_event(events, Event::ShutdownClientWrite),
                Output::ShutdownUpstreamWrite => push_event(events, Event::ShutdownUpstreamWrite),
                Output::StartTunnel {
                    to_upstream,
                    to_client,
                } => {
                    push_event(events, Event::Upstream(BytesMut::from(&to_upstream[..])));
                    push_event(events, Event::Client(BytesMut::from(&to_client[..])));
                }
                Output::Log(record) => push_event(events, Event::Log(*record)),
                Output::Close { .. } => {
                    push_event(events, Event::Close);
                    self.closed = true;
                }
            }
        }
    }
}

/// Runs one exchange: every client piece, then the upstream pieces for as long as the first
/// upstream connection lives, then the EOFs the flags ask for. Dials are answered at once.
fn run_exchange(flags: u8, client: &[&[u8]], upstream: &[&[u8]]) -> Vec<Event> {
    let now = Instant::from_elapsed(Duration::from_secs(1));
    let mut x = Exchange {
        conn: Connection::new(Arc::new(config()), client_addr(), now),
        now,
        flags,
        events: Vec::new(),
        dials: 0,
        upstream_held: false,
        closed: false,
    };
    let mut upstream_left = upstream.iter().map(|p| p.len()).sum::<usize>();

    for piece in client {
        if x.closed {
            break;
        }
        if x.conn.is_tunnel() {
            if x.conn
                .tunnel()
                .is_some_and(|m| m.has_ended(Direction::ClientToUpstream))
            {
                break;
            }
            x.conn
                .handle_relayed(now, Direction::ClientToUpstream, piece.len() as u64);
            push_event(&mut x.events, Event::Upstream(BytesMut::from(*piece)));
            continue;
        }
        x.conn
            .handle_client_data(now, Bytes::copy_from_slice(piece));
        x.drain(upstream_left);
    }
    // The upstream bytes belong to the first upstream connection only.
    let first_upstream = x.dials == 1 && x.upstream_held;
    if first_upstream {
        for piece in upstream {
            if x.closed || !x.upstream_held || x.dials != 1 {
                break;
            }
            upstream_left -= piece.len();
            if x.conn.is_tunnel() {
                x.conn
                    .handle_relayed(now, Direction::UpstreamToClient, piece.len() as u64);
                push_event(&mut x.events, Event::Client(BytesMut::from(*piece)));
                continue;
            }
            if !x.conn.wants_upstream_read() {
                break;
            }
            x.conn
                .handle_upstream_data(now, Bytes::copy_from_slice(piece));
            x.drain(upstream_left);
        }
    }
    if flags & 2 != 0 && !x.closed && x.upstream_held {
        x.conn.handle_upstream_eof(now);
        x.drain(0);
    }
    if flags & 4 != 0 && !x.closed {
        x.conn.handle_client_eof(now);
        x.drain(0);
    }
    x.events
}

/// Fuzz target `split_invariance`: one exchange fed whole and fed in fuzzer-chosen pieces.
///
/// Layout: a flags byte (bit 0: the first dial is a pooled connection; bit 1: the upstream
/// sends EOF at the end; bit 2: the client does), the client byte count (u16, little
/// endian), a count and that many piece lengths for the client, the same for the upstream,
/// then the client bytes and the upstream bytes.
///
/// Property: the normalised outputs (byte streams to each side, dials, upstream endings,
/// half-closes, access-log records, close) are identical, whole or split. The only
/// normalisation besides joining adjacent bytes: an upstream released while more of its bytes
/// were still on their way counts as not pooled, as the core marks it when they arrive
/// together.
pub fn split_invariance(data: &[u8]) {
    let mut r = Reader::new(data);
    let flags = r.u8();
    let client_len = usize::from(r.u16());
    let n = usize::from(r.u8() % 16);
    let client_steps = r.take(n);
    let n = usize::from(r.u8() % 16);
    let upstream_steps = r.take(n);
    let client = r.take(client_len);
    let upstream = r.rest();

    let whole = run_exchange(flags, &[client], &[upstream]);
    let split = run_exchange(
        flags,
        &pieces(client, client_steps),
        &pieces(upstream, upstream_steps),
    );
    assert_eq!(whole, split, "split input changed the outputs");
    let bytewise = run_exchange(
        flags,
        &pieces(client, &[1; 4096]),
        &pieces(upstream, &[1; 4096]),
    );
    assert_eq!(whole, bytewise, "byte-by-byte input changed the outputs");
}

// ----- connection -----

/// Client request heads that reach deep states faster than random bytes.
const CLIENT_TEMPLATES: &[&[u8]] = &[
    b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"POST http://h/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST http://h/up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    b"HEAD http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://h/ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET http://h/ HTTP/1.0\r\n\r\n",
    b"hello",
];

/// Upstream answers, likewise.
const UPSTREAM_TEMPLATES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"hello",
];

/// What the harness, playing the runtime, knows about the connection.
#[derive(Default)]
struct Model {
    /// The configuration the connection runs with.
    config: Arc<Config>,
    /// The connection is an intercepted tunnel's inside (`Connection::new_intercepted`).
    pinned: bool,
    closed: bool,
    /// The connection attempts in flight (asked for, neither answered nor cancelled).
    attempts: Vec<(AttemptId, SocketAddr)>,
    /// Every address the current dial asked to connect to.
    tried: Vec<SocketAddr>,
    /// The current exchange's one retry on a fresh connection happened.
    retried: bool,
    upstream_held: bool,
    /// An EOF from the held upstream was reported.
    upstream_eof: bool,
    client_eof: bool,
    tunnel: bool,
    /// Directions whose source reported EOF during the tunnel.
    tunnel_ended: [bool; 2],
    /// Bytes relayed each way (including those handed over by `StartTunnel`).
    tunnel_bytes: [u64; 2],
    shutdowns: [bool; 2],
    /// Whether one of the current exchange's dials was answered with a pooled connection.
    reused_answered: bool,
    resolve_outstanding: bool,
    /// The current exchange's bytes to the client; the CONNECT answer is counted apart.
    exchange_client: Vec<u8>,
    connect_answer: bool,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::ClientToUpstream => 0,
        Direction::UpstreamToClient => 1,
    }
}

impl Model {
    /// Drains every output, checking each against the model.
    fn drain(&mut self, conn: &mut Connection, now: Instant) -> usize {
        let mut n = 0;
        while let Some(out) = conn.poll_output() {
            n += 1;
            assert!(n <= MAX_DRAIN, "livelock: more than {MAX_DRAIN} outputs");
            assert!(!self.closed, "output after Close: {out:?}");
            self.apply(out);
        }
        if self.upstream_held {
            assert!(
                self.attempts.is_empty(),
                "attempts left in flight after one won: {:?}",
                self.attempts
            );
        }
        if self.closed {
            assert!(conn.is_closed());
            assert_eq!(
                conn.poll_timeout(),
                None,
                "a closed connection has no deadline"
            );
            assert!(!conn.wants_client_read() && !conn.wants_upstream_read());
        } else if let Some(deadline) = conn.poll_timeout() {
            assert!(
                deadline >= now,
                "deadline {deadline:?} is before now {now:?}"
            );
        }
        if let Some(m) = conn.tunnel() {
            for d in [Direction::ClientToUpstream, Direction::UpstreamToClient] {
                assert_eq!(
                    m.bytes(d),
                    self.tunnel_bytes[dir_index(d)],
                    "tunnel {d:?} count"
                );
                assert_eq!(m.has_ended(d), self.tunnel_ended[dir_index(d)]);
            }
        }
        n
    }

    fn apply(&mut self, out: Output) {
        match out {
            Output::ToClient(b) => {
                assert!(!self.tunnel, "ToClient in tunnel mode");
                if self.exchange_client.is_empty() && !self.connect_answer {
                    check_client_head(&b);
                }
                self.exchange_client.extend_from_slice(&b);
            }
            Output::ToUpstream(b) => {
                assert!(
                    self.upstream_held,
                    "write to upstream before the dial succeeded"
                );
                assert!(!self.tunnel, "ToUpstream in tunnel mode");
                assert!(!b.is_empty(), "empty write");
            }
            Output::Resolve(_) => {
                assert!(self.attempts.is_empty(), "a lookup while a dial is out");
                assert!(!self.upstream_held, "a lookup while an upstream is held");
                assert!(
                    !self.resolve_outstanding,
                    "a second lookup while one is out"
                );
                self.resolve_outstanding = true;
            }
            Output::Connect {
                attempt,
                addr,
                allow_pooled,
                retryable,
            } => {
                // The invariant of the egress policy: nothing it refuses is ever dialed.
                // The parent is the one exception: the operator chose it.
                let parent = self.config.parent.as_ref().and_then(|p| {
                    p.authority()
                        .ip()
                        .map(|ip| SocketAddr::new(ip, p.authority().port()))
                });
                assert!(
                    self.pinned
                        || parent == Some(addr)
                        || self.config.policy.egress.judge_addr(addr).is_ok(),
                    "dialed {addr}, which the policy refuses"
                );
                assert!(!self.resolve_outstanding, "a dial while a lookup is out");
                assert!(
                    allow_pooled || !retryable,
                    "only a request that may use a pooled connection can be retried"
                );
                assert!(!self.upstream_held, "a dial while an upstream is held");
                assert!(
                    self.attempts.iter().all(|(id, _)| *id != attempt),
                    "attempt id {attempt:?} reused"
                );
                // Never two attempts at one address (which covers: never again an address
                // that refused), except the one documented retry: a request lost on a stale
                // pooled connection is sent once more on a fresh one.
                if self.tried.contains(&addr) {
                    assert!(
                        self.reused_answered && !allow_pooled && !self.retried,
                        "a second attempt at {addr} for one request"
                    );
                    assert!(self.attempts.is_empty(), "a retry during a race");
                    self.retried = true;
                }
                self.tried.push(addr);
                self.attempts.push((attempt, addr));
            }
            Output::CancelConnect(attempt) => {
                let pos = self.attempts.iter().position(|(id, _)| *id == attempt);
                assert!(
                    pos.is_some(),
                    "cancel of {attempt:?}, which is not in flight"
                );
                if let Some(pos) = pos {
                    self.attempts.remove(pos);
                }
                assert!(self.upstream_held, "a cancel before any attempt won");
            }
            Output::ReleaseUpstream | Output::CloseUpstream => {
                assert!(self.upstream_held, "{out:?} without an upstream");
                self.upstream_held = false;
            }
            Output::ShutdownClientWrite | Output::ShutdownUpstreamWrite => {
                assert!(self.tunnel, "half-close outside a tunnel");
                let i = usize::from(out == Output::ShutdownUpstreamWrite);
                assert!(!self.shutdowns[i], "{out:?} twice");
                self.shutdowns[i] = true;
            }
            Output::StartTunnel {
                to_upstream,
                to_client,
            } => {
                assert!(!self.tunnel, "a second tunnel");
                assert!(self.upstream_held, "a tunnel without an upstream");
                self.tunnel = true;
                // A client that half-closed before the tunnel opened need not report its EOF
                // again: the tunnel must start with that direction ended.
                if self.client_eof {
                    self.tunnel_ended[0] = true;
                }
                self.tunnel_bytes = [to_upstream.len() as u64, to_client.len() as u64];
                if self.exchange_client == CONNECT_ESTABLISHED {
                    self.exchange_client.clear();
                    self.connect_answer = true;
                }
            }
            Output::Log(record) => {
                // tx is exactly what the client was sent for this exchange (for a CONNECT
                // tunnel: the payload only).
                let relayed = if self.tunnel { self.tunnel_bytes[1] } else { 0 };
                assert_eq!(
                    record.tx,
                    self.exchange_client.len() as u64 + relayed,
                    "tx of {record:?}"
                );
                if self.connect_answer {
                    assert_eq!(record.rx, self.tunnel_bytes[0], "tunnel rx of {record:?}");
                    assert_eq!(record.status, 200);
                }
                if record.status != 0 && !self.connect_answer {
                    assert!(!self.exchange_client.is_empty(), "a status nobody was sent");
                }
                self.exchange_client.clear();
                self.connect_answer = false;
                self.tried.clear();
                self.retried = false;
                self.reused_answered = false;
            }
            Output::Close { .. } => {
                self.closed = true;
                self.attempts.clear();
                self.resolve_outstanding = false;
                self.upstream_held = false;
            }
        }
    }
}

/// The first bytes of every exchange to the client are a complete, valid response head.
fn check_client_head(bytes: &[u8]) {
    assert!(
        status_line(bytes).is_some(),
        "client bytes begin without a status line"
    );
    let len = match HeadScanner::default().scan(bytes) {
        Ok(Some(len)) => len,
        other => panic!("client head incomplete or malformed: {other:?}"),
    };
    let mut slots = request::header_slots();
    assert!(
        response::parse(&bytes[..len], &mut slots, MAX_HEADER_SLOTS, false).is_ok(),
        "client head does not parse"
    );
}

/// The bytes a data operation of the `connection` target carries: with `raw`, a length byte and
/// that many input bytes; otherwise one byte choosing one of `templates`.
///
/// Why: client and upstream data operations read their argument the same way.
fn data_arg<'a>(r: &mut Reader<'a>, raw: bool, templates: &[&'a [u8]]) -> &'a [u8] {
    if raw {
        let n = usize::from(r.u8());
        r.take(n)
    } else {
        templates[usize::from(r.u8()) % templates.len()]
    }
}

fn fuzz_duration(b: u8) -> Duration {
    let units = u64::from(b & 0x3f);
    match b >> 6 {
        0 => Duration::from_millis(units),
        1 => Duration::from_millis(units * 250),
        2 => Duration::from_secs(units * 5),
        _ => Duration::from_secs(units * 60),
    }
}

/// Fuzz target `connection`: the whole connection machine driven by a fuzzer-chosen sequence
/// of runtime events with a forward-moving fake clock.
///
/// Each operation is one byte (plus arguments): client data (raw or a template request),
/// client EOF or error, dial success (fresh or pooled) or failure, upstream data (raw or a
/// template response), upstream EOF or error, relayed tunnel bytes, time advancing, the
/// deadline firing, a spurious early wake. Inputs are only issued when a runtime could issue
/// them (client bytes only while the core wants them, dial results only for an outstanding
/// dial, nothing relayed after that direction's EOF...).
///
/// Properties, after every drain (itself capped at [`MAX_DRAIN`] outputs): no panic, no
/// livelock; no write to the upstream unless a dial succeeded and the upstream was not given
/// back; no dial while a lookup is out or an upstream is held; never two attempts at one
/// address for one request (so never again one that refused), except the one documented
/// retry on a fresh connection after a pooled one went stale; a cancel only for an attempt in
/// flight, and none left in flight once one won; nothing
/// after `Close`, and a closed connection wants nothing; deadlines never in the past, and a
/// fired deadline always moves on (else the runtime would spin); an early wake does nothing;
/// every exchange's bytes to the client start with a valid response head; `tx` in the log
/// equals the bytes the client was sent; tunnel counts match what was relayed.
pub fn connection(data: &[u8]) {
    run_connection(data, Arc::new(config()));
}

/// Fuzz target `parent_chain`: the [`connection`] target's machine and properties with a
/// parent proxy configured (requests to `example.com` go to the parent, to `h` direct): the
/// CONNECT to the parent and its answer (2xx starts the tunnel, anything else is relayed),
/// the parent's pooled connections, its failures. The one address the policy would refuse
/// that may be dialed is the parent's own.
pub fn parent_chain(data: &[u8]) {
    run_connection(data, Arc::new(parent_config()));
}

/// Fuzz target `intercepted`: the [`connection`] target's machine and properties for the
/// plaintext inside an intercepted TLS tunnel to `example.com:443`
/// ([`Connection::new_intercepted`]): origin-form requests pinned to that authority (421
/// otherwise), the same framing, smuggling defences and access records. Its dial is the
/// tunnel's own upstream, judged at the CONNECT, so the egress invariant does not apply to it.
/// Every input runs twice: as is, and with a single upstream
/// ([`Connection::set_single_upstream`], a tunnel through a parent proxy).
pub fn intercepted(data: &[u8]) {
    for single_upstream in [false, true] {
        run_connection_as(data, Arc::new(config()), Some(single_upstream));
    }
}

fn run_connection(data: &[u8], config: Arc<Config>) {
    run_connection_as(data, config, None);
}

/// `pinned`: `None` for a plain connection, `Some(single_upstream)` for an intercepted one.
fn run_connection_as(data: &[u8], config: Arc<Config>, pinned: Option<bool>) {
    let mut r = Reader::new(data);
    let mut now = Instant::from_elapsed(fuzz_duration(r.u8()));
    let mut conn = if let Some(single_upstream) = pinned {
        let authority = Authority::new("example.com", 443);
        let mut c = Connection::new_intercepted(Arc::clone(&config), client_addr(), authority, now);
        if single_upstream {
            c.set_single_upstream();
        }
        c
    } else {
        Connection::new(Arc::clone(&config), client_addr(), now)
    };
    let mut m = Model {
        config,
        pinned: pinned.is_some(),
        ..Model::default()
    };
    m.drain(&mut conn, now);
    while !r.is_empty() {
        let op = r.u8();
        if m.closed {
            // Close is final: whatever a confused runtime feeds now changes nothing.
            match op % 4 {
                0 => conn.handle_client_data(now, Bytes::copy_from_slice(b"GET ")),
                1 => conn.handle_upstream_eof(now),
                2 => conn.handle_dial(now, AttemptId(0), Ok(Dialed { reused: false })),
                _ => conn.handle_timeout(now + Duration::from_secs(3600)),
            }
            assert_eq!(conn.poll_output(), None, "output after Close");
            continue;
        }
        match op % 16 {
            0 | 1 => {
                let bytes = data_arg(&mut r, op % 16 == 0, CLIENT_TEMPLATES);
                if !m.client_eof && !m.tunnel && conn.wants_client_read() {
                    conn.handle_client_data(now, Bytes::copy_from_slice(bytes));
                }
            }
            2 => {
                if !m.client_eof {
                    m.client_eof = true;
                    if m.tunnel {
                        m.tunnel_ended[0] = true;
                    }
                    conn.handle_client_eof(now);
                }
            }
            3 => conn.handle_client_error(now),
            4 | 5 => {
                let arg = r.u8();
                if m.resolve_outstanding {
                    m.resolve_outstanding = false;
                    // No address (a failed lookup), or a run of the set starting anywhere.
                    let start = usize::from(arg % 5);
                    let n = usize::from((arg / 5) % 4);
                    let end = (start + n).min(RESOLVED_SET.len());
                    conn.handle_resolved(now, &RESOLVED_SET[start..end]);
                } else if !m.attempts.is_empty() {
                    // Any attempt in flight may finish first.
                    let (attempt, _) = m.attempts.remove(usize::from(arg / 2) % m.attempts.len());
                    let result = if op % 16 == 4 {
                        let reused = arg & 1 != 0;
                        m.upstream_held = true;
                        m.upstream_eof = false;
                        m.reused_answered |= reused;
                        Ok(Dialed { reused })
                    } else {
                        Err([DialError::Refused, DialError::Timeout][usize::from(arg % 2)])
                    };
                    conn.handle_dial(now, attempt, result);
                }
            }
            6 | 7 => {
                let bytes = data_arg(&mut r, op % 16 == 6, UPSTREAM_TEMPLATES);
                if m.upstream_held && !m.upstream_eof && !m.tunnel && conn.wants_upstream_read() {
                    conn.handle_upstream_data(now, Bytes::copy_from_slice(bytes));
                }
            }
            8 => {
                let reading = if m.tunnel {
                    !m.tunnel_ended[1]
                } else {
                    conn.wants_upstream_read()
                };
                if m.upstream_held && !m.upstream_eof && reading {
                    m.upstream_eof = true;
                    if m.tunnel {
                        m.tunnel_ended[1] = true;
                    }
                    conn.handle_upstream_eof(now);
                }
            }
            9 => {
                if m.upstream_held {
                    conn.handle_upstream_error(now);
                }
            }
            10 | 11 => {
                let n = u64::from(r.u16());
                let d = if op % 16 == 10 {
                    Direction::ClientToUpstream
                } else {
                    Direction::UpstreamToClient
                };
                let i = dir_index(d);
                if m.tunnel && !m.tunnel_ended[i] {
                    m.tunnel_bytes[i] += n;
                    conn.handle_relayed(now, d, n);
                }
            }
            12 | 13 => {
                // Time passes; a deadline on the way wakes the runtime (perhaps late).
                let later = now + fuzz_duration(r.u8());
                match conn.poll_timeout() {
                    Some(deadline) if deadline <= later => {
                        now = if op % 16 == 12 { deadline } else { later };
                        fire(&mut conn, &mut m, now);
                        continue;
                    }
                    _ => now = later,
                }
            }
            14 => {
                if let Some(deadline) = conn.poll_timeout() {
                    now = now.max(deadline);
                    fire(&mut conn, &mut m, now);
                    continue;
                }
            }
            _ => {
                // A spurious wake before the deadline is a no-op.
                if conn.poll_timeout().is_some_and(|d| d > now) {
                    conn.handle_timeout(now);
                    assert_eq!(conn.poll_output(), None, "an early wake did something");
                }
            }
        }
        m.drain(&mut conn, now);
    }
}

/// Calls `handle_timeout(now)` and checks the deadline moved past `now`.
fn fire(conn: &mut Connection, m: &mut Model, now: Instant) {
    conn.handle_timeout(now);
    m.drain(conn, now);
    if let Some(next) = conn.poll_timeout() {
        assert!(
            next > now,
            "deadline {next:?} still due after firing at {now:?}: the runtime would spin"
        );
    }
}

// ----- tunnel_accounting -----

#[derive(Copy, Clone, Debug)]
enum TunnelOp {
    Relay(Direction, u64),
    End(Direction),
    /// An error on either side (the bare meter: `close`).
    Error(bool),
    Advance(Duration),
    Timeout,
}

fn tunnel_op(r: &mut Reader<'_>) -> TunnelOp {
    let op = r.u8();
    let dir = if op & 0x10 == 0 {
        Direction::ClientToUpstream
    } else {
        Direction::UpstreamToClient
    };
    match op % 8 {
        0..=2 => {
            let n = match op >> 5 {
                0 => 0,
                7 => u64::MAX - u64::from(r.u8()),
                _ => u64::from(r.u16()),
            };
            TunnelOp::Relay(dir, n)
        }
        3 | 4 => TunnelOp::End(dir),
        5 => TunnelOp::Error(op & 0x10 != 0),
        6 => TunnelOp::Advance(fuzz_duration(r.u8())),
        _ => TunnelOp::Timeout,
    }
}

/// Fuzz target `tunnel_accounting`: one sequence of tunnel events (bytes relayed each way,
/// EOFs, errors, time) applied to a bare [`TunnelMeter`] and to a [`Connection`] that
/// tunnels a CONNECT (with fuzzer-chosen bytes pipelined after its head).
///
/// Properties: byte counts are exact (saturating) sums of what was recorded, and never
/// decrease; nothing is counted after a direction ended or the tunnel closed; each EOF
/// half-closes towards the other side once, the second one closes; close happens exactly
/// once (the meter's `close` says true once; the connection emits one `Close` and one `Log`
/// whose rx/tx are the payload counts); the idle deadline never moves back.
pub fn tunnel_accounting(data: &[u8]) {
    let mut r = Reader::new(data);
    let n = usize::from(r.u8() % 64);
    let pipelined = r.take(n).to_vec();
    let ops_bytes = r.rest();

    // The bare meter.
    let idle = Duration::from_secs(300);
    let mut now = Instant::ZERO;
    let mut meter = TunnelMeter::new(now);
    let mut sums = [0u64; 2];
    let mut ended = [false; 2];
    let mut closed = false;
    let mut last_active = now;
    let mut ops = Reader::new(ops_bytes);
    while !ops.is_empty() {
        let before = [
            meter.bytes(Direction::ClientToUpstream),
            meter.bytes(Direction::UpstreamToClient),
        ];
        match tunnel_op(&mut ops) {
            TunnelOp::Relay(d, n) => {
                let i = dir_index(d);
                let open = !ended[i] && !closed;
                assert_eq!(meter.record(now, d, n), open, "record after end/close");
                if open {
                    sums[i] = sums[i].saturating_add(n);
                    if n > 0 {
                        last_active = now;
                    }
                }
            }
            TunnelOp::End(d) => {
                let i = dir_index(d);
                let want = if ended[i] || closed {
                    TunnelStep::Nothing
                } else {
                    ended[i] = true;
                    last_active = now;
                    if ended == [true, true] {
                        closed = true;
                        TunnelStep::Close
                    } else {
                        TunnelStep::ShutdownWrite(d)
                    }
                };
                assert_eq!(meter.end(now, d), want);
            }
            TunnelOp::Error(_) => {
                assert_eq!(
                    meter.close(),
                    !closed,
                    "close must report true exactly once"
                );
                closed = true;
            }
            TunnelOp::Advance(dt) => now = now + dt,
            TunnelOp::Timeout => {}
        }
        for d in [Direction::ClientToUpstream, Direction::UpstreamToClient] {
            let i = dir_index(d);
            assert_eq!(meter.bytes(d), sums[i], "{d:?} count is the sum recorded");
            assert!(meter.bytes(d) >= before[i], "{d:?} count decreased");
            assert_eq!(meter.has_ended(d), ended[i]);
        }
        assert_eq!(meter.is_closed(), closed);
        assert_eq!(meter.idle_deadline(idle), last_active + idle);
    }

    // The same events in a tunnelling connection.
    let mut now = Instant::ZERO;
    let mut conn = Connection::new(Arc::new(config()), client_addr(), now);
    let mut head =
        Vec::from(&b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"[..]);
    head.extend_from_slice(&pipelined);
    conn.handle_client_data(now, Bytes::from(head));
    assert!(matches!(conn.poll_output(), Some(Output::Resolve(_))));
    assert_eq!(conn.poll_output(), None);
    conn.handle_resolved(now, &[RESOLVED]);
    let Some(Output::Connect { attempt, .. }) = conn.poll_output() else {
        panic!("no dial");
    };
    assert_eq!(conn.poll_output(), None);
    conn.handle_dial(now, attempt, Ok(Dialed { reused: false }));
    assert_eq!(
        conn.poll_output(),
        Some(Output::ToClient(Bytes::from_static(CONNECT_ESTABLISHED)))
    );
    assert_eq!(
        conn.poll_output(),
        Some(Output::StartTunnel {
            to_upstream: Bytes::from(pipelined.clone()),
            to_client: Bytes::new(),
        })
    );
    let mut sums = [pipelined.len() as u64, 0];
    let mut ended = [false; 2];
    let mut closes = 0;
    let mut logs = 0;
    let mut ops = Reader::new(ops_bytes);
    while !ops.is_empty() {
        let op = tunnel_op(&mut ops);
        let before = conn.tunnel().map(|m| {
            [
                m.bytes(Direction::ClientToUpstream),
                m.bytes(Direction::UpstreamToClient),
            ]
        });
        let mut expect_end = None;
        if closes == 0 {
            match op {
                TunnelOp::Relay(d, n) => {
                    let i = dir_index(d);
                    if !ended[i] {
                        sums[i] = sums[i].saturating_add(n);
                        conn.handle_relayed(now, d, n);
                    }
                }
                TunnelOp::End(d) => {
                    let i = dir_index(d);
                    if !ended[i] {
                        ended[i] = true;
                        expect_end = Some(if ended == [true, true] {
                            None
                        } else {
                            Some(match d {
                                Direction::ClientToUpstream => Output::ShutdownUpstreamWrite,
                                Direction::UpstreamToClient => Output::ShutdownClientWrite,
                            })
                        });
                        match d {
                            Direction::ClientToUpstream => conn.handle_client_eof(now),
                            Direction::UpstreamToClient => conn.handle_upstream_eof(now),
                        }
                    }
                }
                TunnelOp::Error(upstream) => {
                    if upstream {
                        conn.handle_upstream_error(now)
                    } else {
                        conn.handle_client_error(now)
                    }
                }
                TunnelOp::Advance(dt) => {
                    let later = now + dt;
                    // A runtime wakes at the deadline, not after it.
                    now = conn.poll_timeout().map_or(later, |d| d.min(later).max(now));
                }
                TunnelOp::Timeout => {
                    if let Some(d) = conn.poll_timeout() {
                        now = now.max(d);
                        conn.handle_timeout(now);
                    }
                }
            }
        } else {
            // After close every input is ignored.
            conn.handle_client_eof(now);
            conn.handle_upstream_error(now);
            conn.handle_timeout(now + Duration::from_secs(86_400));
        }
        let mut outs = Vec::new();
        while let Some(out) = conn.poll_output() {
            assert!(outs.len() < MAX_DRAIN, "livelock");
            outs.push(out);
        }
        if let Some(Some(shutdown)) = &expect_end {
            assert_eq!(
                outs.as_slice(),
                core::slice::from_ref(shutdown),
                "half-close"
            );
        }
        if let Some(None) = expect_end {
            assert!(
                matches!(outs.as_slice(), [Output::Log(_), Output::Close { .. }]),
                "second EOF closes: {outs:?}"
            );
        }
        for out in outs {
            match out {
                Output::Log(record) => {
                    logs += 1;
                    assert_eq!((record.rx, record.tx), (sums[0], sums[1]), "logged counts");
                    assert_eq!(record.status, 200);
                }
                Output::Close { .. } => closes += 1,
                Output::ShutdownClientWrite | Output::ShutdownUpstreamWrite => {}
                // An error or the idle timeout ends the tunnel by closing everything.
                Output::CloseUpstream => assert_eq!(closes, 0, "CloseUpstream after Close"),
                other => panic!("unexpected output in a tunnel: {other:?}"),
            }
        }
        assert!(
            closes <= 1 && logs == closes,
            "close exactly once, logged once"
        );
        if let (Some(before), Some(m)) = (before, conn.tunnel()) {
            for d in [Direction::ClientToUpstream, Direction::UpstreamToClient] {
                let i = dir_index(d);
                assert_eq!(m.bytes(d), sums[i], "{d:?} count");
                assert!(m.bytes(d) >= before[i], "{d:?} count decreased");
            }
        }
        assert_eq!(conn.is_closed(), closes == 1);
    }
}

/// The naive reference of the host-pattern grammar for names: every pattern read literally,
/// one at a time, O(patterns). `patterns` are ones
/// [`HostPatterns::add`](crate::egress::HostPatterns::add) accepted; address
/// patterns (CIDRs, bare IPs in any spelling) never match names.
pub fn naive_matches_name(patterns: &[&str], host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.is_empty() {
        return false;
    }
    patterns.iter().any(|p| {
        let p = p.trim().to_ascii_lowercase();
        if p == "*" {
            return true;
        }
        if p.contains('/') {
            return false;
        }
        let p = p.strip_suffix('.').unwrap_or(&p);
        if let Some(suffix) = p.strip_prefix("*.") {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        } else {
            parse_host(p) == HostKind::Name && host == p
        }
    })
}

/// The naive reference for IP-literal targets: `*`, or a CIDR / bare address pattern that
/// contains the address, IPv4-mapped ones compared as IPv4 on both sides.
pub fn naive_matches_ip(patterns: &[&str], ip: IpAddr) -> bool {
    let ip = egress::canonical(ip);
    patterns.iter().any(|p| {
        let p = p.trim();
        if p == "*" {
            return true;
        }
        let cidr = if p.contains('/') {
            p.parse::<Cidr>().ok()
        } else if let HostKind::Ip(a) = parse_host(p) {
            Cidr::new(a, if a.is_ipv4() { 32 } else { 128 })
        } else {
            None
        };
        cidr.is_some_and(|c| naive_cidr_contains(c, ip))
    })
}

/// A block as compared: mapped to IPv4 when it lies in `::ffff:0:0/96`.
fn naive_block(c: Cidr) -> (IpAddr, u8) {
    match c.network() {
        IpAddr::V6(v6) if c.prefix() >= 96 && v6.to_ipv4_mapped().is_some() => (
            IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
            c.prefix() - 96,
        ),
        net => (net, c.prefix()),
    }
}

/// `c` contains canonical `ip`, with `c` mapped to IPv4 when it lies in `::ffff:0:0/96`.
fn naive_cidr_contains(c: Cidr, ip: IpAddr) -> bool {
    let (net, prefix) = naive_block(c);
    let bits = |a: IpAddr| match a {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u32),
        IpAddr::V6(v6) => (u128::from(v6), 128u32),
    };
    let ((n, width), (a, aw)) = (bits(net), bits(ip));
    if width != aw {
        return false;
    }
    let shift = width - u32::from(prefix);
    shift >= 128 || n >> shift == a >> shift
}

/// An address from the input: a flag byte (bit 0: IPv6, bit 1: IPv4 written as IPv4-mapped
/// IPv6), then 4 or 16 bytes.
fn fuzz_ip(r: &mut Reader<'_>) -> IpAddr {
    let flags = r.u8();
    if flags & 1 == 1 {
        let mut b = [0u8; 16];
        b.iter_mut().for_each(|x| *x = r.u8());
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        let v4 = Ipv4Addr::new(r.u8(), r.u8(), r.u8(), r.u8());
        if flags & 2 == 2 {
            IpAddr::V6(v4.to_ipv6_mapped())
        } else {
            IpAddr::V4(v4)
        }
    }
}

/// Fuzz target `egress`: one egress policy and one destination, `(flags, ranges, own
/// listeners, local addresses, resolved addresses, text)`. Byte 0: bit 0 `--allow-private`.
/// Then a count byte (mod 8) of ranges, each a kind byte (bit 0 allow, else deny), an
/// address ([`fuzz_ip`]'s layout) and a prefix byte; a count (mod 4) of own listeners, each a
/// kind byte (bit 0 proxy), an address and a port (2 bytes); a count (mod 4) of local
/// addresses; a count (mod 16) of resolved addresses, each an address and a port. The rest
/// is text (up to the first invalid UTF-8): its first line is the target host, each further
/// line a pattern, for `--allow-domain` if it starts with `+`, else `--deny-domain`.
///
/// Properties: the fast [`HostPatterns`](crate::egress::HostPatterns) agrees with the naive references on every accepted
/// pattern set, for the host as given, upper-cased, with a trailing dot and for each of its
/// suffixes; `parse_host` never panics and an IPv4 it returns re-parses from its dotted form;
/// `judge_addr` equals a reference written from the rules (own listeners never allowed;
/// longest covering range prefix, deny on a tie; `--allow-private` for `DestPrivate` only;
/// else `classify`), so it never allows an address `classify` refuses unless a strictly
/// longer `--allow-range` or `--allow-private` covers it; an IPv4 address and its mapped form
/// are judged alike; `judge_ip_target` and `judge_name` follow the domain rules (deny beats
/// allow, allow-list mode).
pub fn egress(data: &[u8]) {
    let mut r = Reader::new(data);
    let flags = r.u8();
    let mut policy = EgressPolicy::default();
    policy.set_allow_private(flags & 1 == 1);
    let mut ranges: Vec<(Cidr, bool)> = Vec::new();
    for _ in 0..r.u8() % 8 {
        let kind = r.u8();
        let ip = fuzz_ip(&mut r);
        let max = if ip.is_ipv4() { 33 } else { 129 };
        let c = Cidr::new(ip, r.u8() % max).expect("prefix in range");
        let allow = kind & 1 == 1;
        if allow {
            policy.allow_range(c);
        } else {
            policy.deny_range(c);
        }
        ranges.push((c, allow));
    }
    let mut listeners: Vec<(SocketAddr, bool)> = Vec::new();
    for _ in 0..r.u8() % 4 {
        let proxy = r.u8() & 1 == 1;
        let a = SocketAddr::new(fuzz_ip(&mut r), r.u16());
        policy.add_own_listener(a, proxy);
        listeners.push((a, proxy));
    }
    let mut locals: Vec<IpAddr> = Vec::new();
    for _ in 0..r.u8() % 4 {
        let ip = fuzz_ip(&mut r);
        policy.add_local_address(ip);
        locals.push(egress::canonical(ip));
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for _ in 0..r.u8() % 16 {
        addrs.push(SocketAddr::new(fuzz_ip(&mut r), r.u16()));
    }
    let rest = r.rest();
    let text = match core::str::from_utf8(rest) {
        Ok(t) => t,
        Err(e) => core::str::from_utf8(&rest[..e.valid_up_to()]).expect("valid prefix"),
    };
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or("");
    let (mut allow, mut deny): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for line in lines {
        let (set, list, pattern) = match line.strip_prefix('+') {
            Some(p) => (policy.allow_domains_mut(), &mut allow, p),
            None => (policy.deny_domains_mut(), &mut deny, line),
        };
        if set.add(pattern).is_ok() {
            list.push(pattern);
        }
    }

    // The fast matcher against the naive one, on the host and each of its suffixes.
    let mut variants = alloc::vec![
        String::from(host),
        host.to_ascii_uppercase(),
        alloc::format!("{host}."),
    ];
    variants.extend(
        host.match_indices('.')
            .map(|(i, _)| String::from(&host[i + 1..])),
    );
    for h in &variants {
        for (set, list) in [
            (policy.allow_domains(), &allow),
            (policy.deny_domains(), &deny),
        ] {
            assert_eq!(
                set.matches_name(h),
                naive_matches_name(list, h),
                "{h:?} against {list:?}"
            );
        }
    }

    // The host literal.
    let kind = parse_host(host);
    if let HostKind::Ip(IpAddr::V4(v4)) = kind {
        assert_eq!(
            parse_host(&alloc::format!("{v4}")),
            kind,
            "{host:?} re-parsed"
        );
    }
    if kind == HostKind::Name {
        let want = if naive_matches_name(&deny, host) {
            Err(Reason::DestDomain)
        } else if !allow.is_empty() && !naive_matches_name(&allow, host) {
            Err(Reason::DestNotAllowed)
        } else {
            Ok(())
        };
        assert_eq!(policy.judge_name(host), want, "judge_name({host:?})");
    }
    if let HostKind::Ip(ip) = kind {
        addrs.push(SocketAddr::new(ip, 80));
    }

    // Every address, as a resolved address and as an IP-literal target.
    for addr in addrs {
        let ip = egress::canonical(addr.ip());
        let got = policy.judge_addr(addr);
        let range = naive_range_verdict(&ranges, ip);
        let own = naive_own_listener(&listeners, &locals, ip, addr.port());
        let want = if let Some(proxy) = own {
            Err(if proxy {
                Reason::DestSelf
            } else {
                Reason::DestOwnService
            })
        } else if let Some(allowed) = range {
            if allowed {
                Ok(())
            } else {
                Err(Reason::DestDeniedRange)
            }
        } else {
            match egress::classify(ip) {
                None => Ok(()),
                Some(Reason::DestPrivate) if flags & 1 == 1 => Ok(()),
                Some(reason) => Err(reason),
            }
        };
        assert_eq!(got, want, "judge_addr({addr})");
        if let IpAddr::V4(v4) = ip {
            let mapped = SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port());
            assert_eq!(policy.judge_addr(mapped), got, "mapped {addr}");
        }
        let want_target = if naive_matches_ip(&deny, ip) {
            Err(Reason::DestDomain)
        } else if !allow.is_empty() && !naive_matches_ip(&allow, ip) && range != Some(true) {
            Err(Reason::DestNotAllowed)
        } else {
            want
        };
        assert_eq!(
            policy.judge_ip_target(addr),
            want_target,
            "judge_ip_target({addr})"
        );
    }
}

/// `Some(true)`: a covering allow range is strictly longer than every covering deny;
/// `Some(false)`: a covering deny is at least as long as every covering allow; `None`: no
/// range covers `ip` (canonical).
fn naive_range_verdict(ranges: &[(Cidr, bool)], ip: IpAddr) -> Option<bool> {
    let longest = |allow: bool| {
        ranges
            .iter()
            .filter(|&&(c, a)| a == allow && naive_cidr_contains(c, ip))
            .map(|&(c, _)| i16::from(naive_block(c).1))
            .max()
            .unwrap_or(-1)
    };
    let (a, d) = (longest(true), longest(false));
    if a < 0 && d < 0 {
        None
    } else {
        Some(a > d)
    }
}

/// `Some(is_proxy)` when `ip:port` (canonical) reaches an own listener: the same address, or
/// a listener on an unspecified address reached through loopback, an unspecified or a local
/// address, or a target on an unspecified address (which reaches this host).
fn naive_own_listener(
    listeners: &[(SocketAddr, bool)],
    locals: &[IpAddr],
    ip: IpAddr,
    port: u16,
) -> Option<bool> {
    let hits = listeners.iter().filter(|(l, _)| {
        let lip = egress::canonical(l.ip());
        l.port() == port
            && (lip == ip
                || ip.is_unspecified()
                || (lip.is_unspecified() && (ip.is_loopback() || locals.contains(&ip))))
    });
    hits.fold(None, |acc, &(_, proxy)| Some(acc.unwrap_or(false) || proxy))
}

/// `client_hello`: the input is the bytes a client sent into a tunnel. Checks that
/// [`client_hello::parse`] decides only from bytes present (along the prefixes of the input the
/// answer is `NeedMore` until it is decided, then never changes), that a ClientHello's handshake
/// message re-split over records of other sizes reads the same, and that a [`Hello`] holds only
/// what its types promise (a lowercase host name; ALPN flags consistent with the count).
///
/// [`Hello`]: client_hello::Hello
pub fn client_hello(data: &[u8]) {
    use client_hello::{parse, ClientHello};
    let whole = parse(data);
    // Every prefix for small inputs; for larger ones, 64 spread points and the last 16.
    let mut cuts: Vec<usize> = if data.len() <= 600 {
        (0..=data.len()).collect()
    } else {
        let mut v: Vec<usize> = (0..64).map(|i| i * data.len() / 64).collect();
        v.extend(data.len() - 16..=data.len());
        v
    };
    cuts.sort_unstable();
    cuts.dedup();
    let mut decided: Option<ClientHello> = None;
    for &cut in &cuts {
        let r = parse(&data[..cut]);
        match (&decided, r) {
            (None, ClientHello::NeedMore) => {}
            (None, r) => decided = Some(r),
            (Some(d), r) => assert_eq!(*d, r, "answer changed at {cut} of {}", data.len()),
        }
    }
    assert_eq!(decided.unwrap_or(ClientHello::NeedMore), whole);

    let ClientHello::Hello(hello) = &whole else {
        return;
    };
    if let Some(name) = &hello.sni {
        let s = name.as_str();
        assert!(!s.is_empty() && s.len() <= 253 && !s.ends_with('.'));
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)));
    }
    let a = hello.alpn;
    assert_eq!(a.offered, a.count > 0);
    assert!(usize::from(a.http11) + usize::from(a.h2) <= usize::from(a.count));

    // Re-split the handshake message (when it sits in the first record) over other sizes.
    let rec_len = usize::from(u16::from_be_bytes([data[3], data[4]]));
    let msg_len =
        4 + ((usize::from(data[6]) << 16) | (usize::from(data[7]) << 8) | usize::from(data[8]));
    if rec_len < msg_len {
        return;
    }
    let msg = &data[5..5 + msg_len];
    for size in [1, 3, 100, 16_384] {
        let mut records = Vec::with_capacity(msg.len() * 6);
        for part in msg.chunks(size) {
            records.extend_from_slice(&[22, 3, 3]);
            records.extend_from_slice(&(part.len() as u16).to_be_bytes());
            records.extend_from_slice(part);
        }
        assert_eq!(parse(&records), whole, "split over {size}-byte records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_accept_empty_and_tiny_inputs() {
        for data in [
            &b""[..],
            b"\0",
            b"\xff\xff\xff\xff",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            request_head(data);
            response_head(data);
            chunked(data);
            split_invariance(data);
            connection(data);
            tunnel_accounting(data);
            egress(data);
            client_hello(data);
        }
    }
}
