//! Request heads: parsing, validation, and the rewrite sent upstream.
//!
//! [`parse`] turns a complete head (found by the head scanner) into a [`RequestHead`] that
//! borrows the buffer, with every framing question already answered: is there a body, how is
//! it delimited, does the client want the connection kept. Anything ambiguous (the smuggling
//! vectors: CL with TE, duplicate or malformed CL, a TE other than `chunked`, obs-fold, control
//! bytes, duplicate Host) is a [`Problem`], so nothing ambiguous is ever forwarded; an invalid
//! Host value is refused by the router, after the target.
//!
//! Versions: HTTP/1.0 and 1.1 parse; a request line naming HTTP/1.2 to 1.9 is read as 1.1 after
//! [`as_http11`] (RFC 9112 §2.3: a higher minor version is treated as the highest we support);
//! anything else is 505 (a version we do not speak) or 400 (not a version at all).

use bytes::{BufMut, BytesMut};
use core::mem::MaybeUninit;

use crate::body::BodyKind;
use crate::config::MAX_HEADER_SLOTS;
use crate::head::{self, ConnectionOptions};
use crate::problem::Problem;
use crate::target::{self, AbsoluteTarget};

/// Header slots for httparse, left uninitialised until parsed into.
pub(crate) type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADER_SLOTS];

/// Fresh header slots.
pub(crate) fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADER_SLOTS]
}

/// Header slots for callers outside the crate (benchmarks, fuzzers) that call [`parse`].
#[doc(hidden)]
pub fn header_slots_for_bench<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADER_SLOTS] {
    header_slots()
}

/// A parsed, validated request head borrowing the bytes it came from.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    /// The method token, e.g. `GET` or `CONNECT`.
    pub method: &'b str,
    /// The request target exactly as sent.
    pub target: &'b [u8],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// How the request body is delimited.
    pub body: BodyKind,
    /// Whether the client expects `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// Whether the client asked to switch protocols (`Upgrade` plus `Connection: upgrade`).
    pub upgrade: bool,
    /// Whether the connection persists after this exchange, as far as the client is concerned.
    pub keep_alive: bool,
    /// Whether a `Via` entry already names our pseudonym.
    pub(crate) looped: bool,
    /// The `Proxy-Authorization` value; `None` if absent or given more than once.
    pub(crate) proxy_authorization: Option<&'b [u8]>,
    /// Whether every Host field is `uri-host [ ":" port ]` (RFC 9112 §3.2); true without one.
    /// The router refuses an invalid one with 400 once the target itself was found valid, so
    /// a bad target (which clients copy into Host) is reported as what it is.
    pub(crate) host_valid: bool,
    /// The `Max-Forwards` value (digits only) of an OPTIONS or TRACE request, the two methods
    /// it applies to (RFC 9110 §7.6.2); `None` for other methods, whose field passes untouched.
    max_forwards: Option<&'b [u8]>,
    headers: &'h [httparse::Header<'b>],
    connection: ConnectionOptions<'b>,
    head: &'b [u8],
}

impl RequestHead<'_, '_> {
    /// Whether this is a CONNECT request.
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }

    /// Whether the request method is HEAD (its response has no body).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether the method is idempotent, so a request lost on a stale pooled connection may be
    /// sent again (RFC 9110 §9.2.2).
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }

    /// Whether this is an OPTIONS or TRACE request with `Max-Forwards: 0`: the proxy must not
    /// forward it and answers as its final recipient (RFC 9110 §7.6.2).
    pub fn max_forwards_reached(&self) -> bool {
        self.max_forwards
            .is_some_and(|digits| digits.iter().all(|&d| d == b'0'))
    }

    /// The value of the (single: duplicates are refused by the parser) `Host` field, if any.
    pub(crate) fn host(&self) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| h.value)
    }

    /// The whole head as received, for a TRACE reflection.
    pub(crate) fn raw(&self) -> &[u8] {
        self.head
    }

    /// Writes the head to send upstream: origin-form request line, `Host` from the URI,
    /// hop-by-hop fields dropped, the rest in their order and case, our `Via` appended.
    /// OPTIONS to a URI with neither path nor query goes out as `OPTIONS *` (RFC 9112
    /// §3.2.4: we are the last proxy before the origin), and the `Max-Forwards` of an OPTIONS
    /// or TRACE request is decremented (RFC 9110 §7.6.2).
    pub fn write_forward_head(
        &self,
        target: &AbsoluteTarget<'_>,
        via_pseudonym: &str,
        out: &mut BytesMut,
    ) {
        self.write_head(target, via_pseudonym, None, out)
    }

    /// Writes the head to send to a parent proxy: like [`Self::write_forward_head`], but the
    /// request line keeps the absolute form (`GET http://host/path HTTP/1.1`, RFC 9112
    /// §3.2.2: the parent must know where to go), and `authorization` (the parent's own
    /// `Proxy-Authorization` line, or empty) is added. The client's Proxy-Authorization is
    /// hop-by-hop and never passed on.
    pub fn write_parent_head(
        &self,
        target: &AbsoluteTarget<'_>,
        via_pseudonym: &str,
        authorization: &[u8],
        out: &mut BytesMut,
    ) {
        self.write_head(target, via_pseudonym, Some(authorization), out)
    }

    fn write_head(
        &self,
        target: &AbsoluteTarget<'_>,
        via_pseudonym: &str,
        parent_authorization: Option<&[u8]>,
        out: &mut BytesMut,
    ) {
        out.reserve(self.head.len() + 64);
        out.put_slice(self.method.as_bytes());
        out.put_u8(b' ');
        if parent_authorization.is_some() {
            out.put_slice(b"http://");
            target.authority.host_header(out);
            if target.needs_leading_slash() {
                out.put_u8(b'/');
            }
        } else if self.method == "OPTIONS" && target.path_and_query.is_empty() {
            out.put_u8(b'*');
        } else if target.needs_leading_slash() {
            out.put_u8(b'/');
        }
        out.put_slice(target.path_and_query);
        out.put_slice(b" HTTP/1.1\r\n");
        let mut host_written = false;
        for h in self.headers {
            if h.name.eq_ignore_ascii_case("host") {
                put_host(out, target);
                host_written = true;
                continue;
            }
            if let Some(digits) = self.max_forwards {
                if h.name.eq_ignore_ascii_case("max-forwards") {
                    out.put_slice(h.name.as_bytes());
                    out.put_slice(b": ");
                    put_decremented(out, digits);
                    out.put_slice(b"\r\n");
                    continue;
                }
            }
            let keep_framing =
                h.name.eq_ignore_ascii_case("transfer-encoding") && self.body == BodyKind::Chunked;
            let keep_upgrade = self.upgrade && h.name.eq_ignore_ascii_case("upgrade");
            if !keep_framing
                && !keep_upgrade
                && (head::is_hop_by_hop(h.name) || self.connection.lists(h.name))
            {
                continue;
            }
            put_field(out, h.name.as_bytes(), h.value);
        }
        if !host_written {
            put_host(out, target);
        }
        if self.upgrade {
            out.put_slice(b"Connection: upgrade\r\n");
        }
        if let Some(authorization) = parent_authorization {
            out.put_slice(authorization);
        }
        put_via(out, self.minor_version, via_pseudonym);
        out.put_slice(b"\r\n");
    }
}

/// Writes `digits` (1*DIGIT) minus one, without leading zeros; zero stays zero. Works on the
/// digits themselves, so a value of any length is neither refused nor overflowed.
fn put_decremented(out: &mut BytesMut, digits: &[u8]) {
    let Some(last_nonzero) = digits.iter().rposition(|&d| d != b'0') else {
        out.put_u8(b'0');
        return;
    };
    let mut leading = true;
    for (i, &d) in digits.iter().enumerate() {
        let digit = match i.cmp(&last_nonzero) {
            core::cmp::Ordering::Less => d,
            core::cmp::Ordering::Equal => d - 1,
            core::cmp::Ordering::Greater => b'9',
        };
        if leading && digit == b'0' && i + 1 < digits.len() {
            continue;
        }
        leading = false;
        out.put_u8(digit);
    }
}

/// A copy of `head` naming HTTP/1.1 when its request line names HTTP/1.2 to HTTP/1.9, which
/// [`parse`] refuses as [`Problem::UnsupportedVersion`]; `None` for any other head. RFC 9112
/// §2.3 and RFC 9110 §6.2: a recipient treats a higher minor version as the highest minor
/// version it supports, and we send `HTTP/1.1` either way. Only that rare refusal calls
/// this, so the copy costs nothing on the usual path.
pub fn as_http11(head: &[u8]) -> Option<alloc::vec::Vec<u8>> {
    let line_end = head.iter().position(|&b| b == b'\r')?;
    let version = &head[line_end.checked_sub(9)?..line_end];
    if !matches!(
        version,
        [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9']
    ) {
        return None;
    }
    let mut copy = head.to_vec();
    copy[line_end - 1] = b'1';
    Some(copy)
}

fn put_host(out: &mut BytesMut, target: &AbsoluteTarget<'_>) {
    out.put_slice(b"Host: ");
    target.authority.host_header(out);
    out.put_slice(b"\r\n");
}

pub(crate) fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

pub(crate) fn put_via(out: &mut BytesMut, minor_version: u8, pseudonym: &str) {
    out.put_slice(if minor_version == 0 {
        b"Via: 1.0 "
    } else {
        b"Via: 1.1 "
    });
    out.put_slice(pseudonym.as_bytes());
    out.put_slice(b"\r\n");
}

/// Whether a `Via` value has an entry received by `pseudonym` (`1.1 ringway`, `ringway`...).
pub(crate) fn via_names(value: &[u8], pseudonym: &str) -> bool {
    value.split(|&b| b == b',').any(|entry| {
        let mut words = head::trim(entry)
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|w| !w.is_empty());
        let _protocol = words.next();
        words
            .next()
            .is_some_and(|by| by.eq_ignore_ascii_case(pseudonym.as_bytes()))
    })
}

/// Maps an httparse error to what the client is told.
fn httparse_problem(err: httparse::Error, head: &[u8]) -> Problem {
    match err {
        httparse::Error::TooManyHeaders => Problem::TooManyHeaders,
        httparse::Error::Version if looks_like_http_version(head) => Problem::UnsupportedVersion,
        _ => Problem::MalformedHead,
    }
}

/// Whether the request line ends in `HTTP/<digit>.<digit>`: then a version httparse refused is
/// a version we do not speak (505), not garbage (400).
fn looks_like_http_version(head: &[u8]) -> bool {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = &head[..line_end];
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// The method and target of a head whose request line could be read, even when the head is
/// then refused (a field broke a rule, a line ended badly, the head grew too large), so that
/// the refusal's access-log line still says what was asked for. `head` may be incomplete;
/// `None` when the request line itself did not parse. Only refusals call this.
pub fn request_line(head: &[u8]) -> Option<(&str, &[u8])> {
    let mut req = httparse::Request::new(&mut []);
    // With no header slots the parse stops at the first field; method and target are kept.
    let _ = req.parse(head);
    Some((req.method?, req.path?.as_bytes()))
}

/// Parses a complete request head (`head` ends with the empty line) using `slots` for the
/// header table, limited to `max_headers` fields. `via_pseudonym` is used to spot loops.
pub fn parse<'h, 'b>(
    head: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
    max_headers: usize,
    via_pseudonym: &str,
) -> Result<RequestHead<'h, 'b>, Problem> {
    let mut req = httparse::Request::new(&mut []);
    let max = max_headers.clamp(1, MAX_HEADER_SLOTS);
    match req.parse_with_uninit_headers(head, &mut slots[..max]) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(Problem::MalformedHead),
        Err(e) => return Err(httparse_problem(e, head)),
    }
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(Problem::MalformedHead);
    };
    let headers = req.headers;

    let mut connection = ConnectionOptions::default();
    let mut content_length = None;
    let mut chunked = false;
    let mut hosts = 0;
    let mut expect_continue = false;
    let mut upgrade_field = false;
    let mut looped = false;
    let mut proxy_authorization = None;
    let mut authorizations = 0;
    let hop_limited = method == "OPTIONS" || method == "TRACE";
    let mut max_forwards = None;
    let mut host_valid = true;
    for h in headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(Problem::DuplicateContentLength);
            }
            content_length =
                Some(head::parse_content_length(h.value).ok_or(Problem::InvalidContentLength)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Exactly one field, exactly `chunked`: anything else is how smuggling starts.
            if chunked
                || !h.value.eq_ignore_ascii_case(b"chunked")
                || !head::value_is_untrimmed(head, h.value)
            {
                return Err(Problem::BadTransferEncoding);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host_valid &= target::is_valid_host_field(h.value);
        } else if name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("proxy-connection")
        {
            connection
                .add(h.value)
                .map_err(|()| Problem::MalformedHead)?;
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_field = true;
        } else if name.eq_ignore_ascii_case("via") {
            looped |= via_names(h.value, via_pseudonym);
        } else if name.eq_ignore_ascii_case("proxy-authorization") {
            authorizations += 1;
            proxy_authorization = Some(h.value);
        } else if hop_limited && name.eq_ignore_ascii_case("max-forwards") {
            // `1*DIGIT`, once: a value we could not decrement must not be forwarded.
            if max_forwards.is_some()
                || h.value.is_empty()
                || !h.value.iter().all(u8::is_ascii_digit)
            {
                return Err(Problem::MalformedHead);
            }
            max_forwards = Some(h.value);
        }
    }
    if hosts > 1 {
        return Err(Problem::DuplicateHost);
    }
    if hosts == 0 && minor_version == 1 {
        return Err(Problem::MissingHost);
    }
    let body = match (content_length, chunked) {
        (Some(_), true) => return Err(Problem::ContentLengthWithTransferEncoding),
        (_, true) if minor_version == 0 => return Err(Problem::TransferEncodingInHttp10),
        (_, true) => BodyKind::Chunked,
        (Some(0) | None, false) => BodyKind::None,
        (Some(n), false) => BodyKind::Length(n),
    };
    let keep_alive = if minor_version == 0 {
        connection.keep_alive && !connection.close
    } else {
        !connection.close
    };
    Ok(RequestHead {
        method,
        target: target.as_bytes(),
        minor_version,
        body,
        expect_continue,
        upgrade: upgrade_field && connection.upgrade && minor_version == 1,
        keep_alive,
        looped,
        proxy_authorization: if authorizations == 1 {
            proxy_authorization
        } else {
            None
        },
        host_valid,
        max_forwards,
        headers,
        connection,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::parse_absolute;

    fn parsed(head: &[u8]) -> Result<(BodyKind, bool), Problem> {
        let mut slots = header_slots();
        parse(head, &mut slots, 100, "ringway").map(|r| (r.body, r.keep_alive))
    }

    fn forwarded(head: &[u8]) -> alloc::string::String {
        let mut slots = header_slots();
        let req = parse(head, &mut slots, 100, "ringway").unwrap();
        let target = parse_absolute(req.target).unwrap();
        let mut out = BytesMut::new();
        req.write_forward_head(&target, "ringway", &mut out);
        alloc::string::String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn rewrite_drops_hop_by_hop_and_keeps_the_rest() {
        let out = forwarded(
            b"GET http://Example.com:8080/a?b HTTP/1.1\r\nUser-Agent: x\r\nHost: wrong\r\nConnection: keep-alive, X-Hop\r\n\
X-Hop: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9v\r\nTE: trailers\r\n\
Trailer: X\r\nUpgrade: h2c\r\nx-dup: 1\r\nX-Dup: 2\r\nVia: 1.0 other\r\n\r\n",
        );
        assert_eq!(
            out,
            "GET /a?b HTTP/1.1\r\nUser-Agent: x\r\nHost: example.com:8080\r\nx-dup: 1\r\nX-Dup: 2\r\nVia: 1.0 other\r\nVia: 1.1 ringway\r\n\r\n"
        );
    }

    #[test]
    fn rewrite_of_http10_without_host_and_empty_path() {
        let out = forwarded(b"GET http://h HTTP/1.0\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nAccept: */*\r\nHost: h\r\nVia: 1.0 ringway\r\n\r\n"
        );
        let out = forwarded(b"GET http://h?q=1 HTTP/1.0\r\n\r\n");
        assert!(out.starts_with("GET /?q=1 HTTP/1.1\r\n"));
    }

    #[test]
    fn rewrite_keeps_chunked_framing_and_upgrade() {
        let out =
            forwarded(b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n"
        );
        let out = forwarded(b"GET http://h/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(out, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\nVia: 1.1 ringway\r\n\r\n");
    }

    #[test]
    fn framing_decisions() {
        assert_eq!(
            parsed(b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            Ok((BodyKind::None, true))
        );
        assert_eq!(
            parsed(b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"),
            Ok((BodyKind::Length(5), true))
        );
        assert_eq!(
            parsed(b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
            Ok((BodyKind::None, true))
        );
        assert_eq!(
            parsed(b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok((BodyKind::Chunked, true))
        );
        assert_eq!(
            parsed(b"GET http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
            Ok((BodyKind::None, false))
        );
        assert_eq!(
            parsed(b"GET http://h/ HTTP/1.0\r\n\r\n"),
            Ok((BodyKind::None, false))
        );
        assert_eq!(
            parsed(b"GET http://h/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            Ok((BodyKind::None, true))
        );
        assert_eq!(
            parsed(b"GET http://h/ HTTP/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"),
            Ok((BodyKind::None, true))
        );
    }

    #[test]
    fn smuggling_and_malformed_heads_are_rejected() {
        use Problem::*;
        let cases: &[(&[u8], Problem)] = &[
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthWithTransferEncoding),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", DuplicateContentLength),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", InvalidContentLength),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", InvalidContentLength),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", InvalidContentLength),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n", BadTransferEncoding),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n", BadTransferEncoding),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", BadTransferEncoding),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", BadTransferEncoding),
            (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding),
            (b"POST http://h/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncodingInHttp10),
            (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", MalformedHead),
            (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", MalformedHead),
            (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", MalformedHead),
            (b"GET http://h/ HTTP/1.1\r\nHost : h\r\n\r\n", MalformedHead),
            (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", DuplicateHost),
            (b"GET http://h/ HTTP/1.1\r\n\r\n", MissingHost),
            (b"GET http://h/ HTTP/2.0\r\nHost: h\r\n\r\n", UnsupportedVersion),
            // `parse` alone refuses 1.2; the connection then reads it as 1.1 via `as_http11`.
            (b"GET http://h/ HTTP/1.2\r\nHost: h\r\n\r\n", UnsupportedVersion),
            (b"GET http://h/ FOO/1.1\r\nHost: h\r\n\r\n", MalformedHead),
            (b"GET  http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", MalformedHead),
            (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nVia: 1.1 ringway\r\n\r\n", ForwardingLoop),
        ];
        for (head, want) in cases {
            let got = {
                let mut slots = header_slots();
                parse(head, &mut slots, 100, "ringway").map(|r| r.looped)
            };
            match want {
                // Parses fine; the router turns the loop into 508.
                ForwardingLoop => assert_eq!(got, Ok(true)),
                want => assert_eq!(
                    got.map(|_| ()),
                    Err(*want),
                    "{:?}",
                    core::str::from_utf8(head)
                ),
            }
        }
    }

    #[test]
    fn too_many_headers() {
        let mut head = alloc::vec::Vec::from(&b"GET http://h/ HTTP/1.1\r\nHost: h\r\n"[..]);
        for i in 0..10 {
            head.extend_from_slice(alloc::format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let mut slots = header_slots();
        assert_eq!(
            parse(&head, &mut slots, 5, "ringway").map(|_| ()),
            Err(Problem::TooManyHeaders)
        );
        let mut slots = header_slots();
        assert!(parse(&head, &mut slots, 11, "ringway").is_ok());
    }

    #[test]
    fn higher_minor_versions_read_as_1_1() {
        assert_eq!(
            as_http11(b"GET http://h/ HTTP/1.2\r\nHost: h\r\n\r\n").as_deref(),
            Some(&b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"[..])
        );
        assert!(as_http11(b"GET http://h/ HTTP/1.9\r\n\r\n").is_some());
        for other in [
            &b"GET http://h/ HTTP/1.1\r\n\r\n"[..],
            b"GET http://h/ HTTP/1.0\r\n\r\n",
            b"GET http://h/ HTTP/2.2\r\n\r\n",
            b"GET http://h/ HTTP/1.10\r\n\r\n",
            b"GET http://h/HTTP/1.2\r\n\r\n",
            b"HTTP/1.2\r\n\r\n",
            b"GET http://h/ HTTP/1.2",
        ] {
            assert_eq!(as_http11(other), None, "{:?}", core::str::from_utf8(other));
        }
        // The copy parses as 1.1.
        let copy = as_http11(b"GET http://h/ HTTP/1.2\r\nHost: h\r\n\r\n").unwrap();
        let mut slots = header_slots();
        assert_eq!(
            parse(&copy, &mut slots, 100, "ringway")
                .unwrap()
                .minor_version,
            1
        );
    }

    #[test]
    fn decrementing_digits() {
        for (digits, want) in [
            ("1", "0"),
            ("0", "0"),
            ("000", "0"),
            ("10", "9"),
            ("007", "6"),
            ("100", "99"),
            ("1000000000000000000000000", "999999999999999999999999"),
            ("18446744073709551616", "18446744073709551615"),
        ] {
            let mut out = BytesMut::new();
            put_decremented(&mut out, digits.as_bytes());
            assert_eq!(&out[..], want.as_bytes(), "{digits}");
        }
    }

    #[test]
    fn via_detection() {
        assert!(via_names(b"1.1 ringway", "ringway"));
        assert!(via_names(b"1.0 a, 1.1 RingWay (comment)", "ringway"));
        assert!(!via_names(b"1.1 ringway-other", "ringway"));
        assert!(!via_names(b"ringway", "ringway"));
    }
}
