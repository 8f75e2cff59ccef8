//! Response heads from upstream: parsing, framing, and the rewrite sent to the client.
//!
//! The status code and reason phrase pass through byte for byte; the version becomes ours
//! (`HTTP/1.1`); hop-by-hop fields are dropped. How the body reaches the client is decided
//! here too ([`ClientFraming`]): passed through untouched, or de-chunked for an HTTP/1.0
//! client, which must never see chunked encoding. A response we cannot frame unambiguously
//! (conflicting Content-Length values) is a [`Problem::BadResponse`], answered with 502.

use bytes::{BufMut, BytesMut};

use crate::body::BodyKind;
use crate::config::MAX_HEADER_SLOTS;
use crate::head::{self, ConnectionOptions};
use crate::problem::Problem;
use crate::request::{put_field, put_via, HeaderSlots};

/// How the response body travels to the client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClientFraming {
    /// The body bytes pass through untouched (length, chunked, close-delimited or none).
    Passthrough,
    /// Chunked from upstream, sent to an HTTP/1.0 client as payload only, ended by close.
    Dechunk,
}

/// A parsed upstream response head borrowing the bytes it came from.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    /// The status code.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// How the body is delimited, given the request method.
    pub body: BodyKind,
    /// Whether the upstream connection may carry another request after this response.
    pub reusable: bool,
    /// ` 200 OK` — everything of the status line after the version, as received.
    status_rest: &'b [u8],
    /// Content-Length fields are dropped when Transfer-Encoding overrides them.
    drop_content_length: bool,
    headers: &'h [httparse::Header<'b>],
    connection: ConnectionOptions<'b>,
}

impl ResponseHead<'_, '_> {
    /// Whether this is an interim (1xx) response, to be followed by the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// How the body should reach a client speaking HTTP/1.`client_minor`.
    pub fn client_framing(&self, client_minor: u8) -> ClientFraming {
        if self.body == BodyKind::Chunked && client_minor == 0 {
            ClientFraming::Dechunk
        } else {
            ClientFraming::Passthrough
        }
    }

    /// Writes the head for the client. `connection` is the `Connection` field we add:
    /// `Some("close")` when we close after this response, `Some("keep-alive")` for a persistent
    /// HTTP/1.0 client, `Some("upgrade")` on a 101, `None` otherwise.
    pub fn write_client_head(
        &self,
        framing: ClientFraming,
        connection: Option<&str>,
        via_pseudonym: &str,
        out: &mut BytesMut,
    ) {
        out.reserve(self.headers.len() * 32 + 64);
        out.put_slice(b"HTTP/1.1");
        out.put_slice(self.status_rest);
        if self.status_rest.len() == 4 {
            // `HTTP/1.1 200` with no reason: the SP before the (empty) reason is not optional
            // (RFC 9112 §4), and strict clients refuse the line without it.
            out.put_u8(b' ');
        }
        out.put_slice(b"\r\n");
        let switching = self.status == 101;
        for h in self.headers {
            let name = h.name;
            let is_te = name.eq_ignore_ascii_case("transfer-encoding");
            let keep = if is_te {
                framing == ClientFraming::Passthrough
            } else if name.eq_ignore_ascii_case("content-length") {
                !self.drop_content_length
            } else if switching && name.eq_ignore_ascii_case("upgrade") {
                true
            } else {
                !head::is_hop_by_hop(name) && !self.connection.lists(name)
            };
            if keep {
                put_field(out, name.as_bytes(), h.value);
            }
        }
        if let Some(c) = connection {
            put_field(out, b"Connection", c.as_bytes());
        }
        put_via(out, self.minor_version, via_pseudonym);
        out.put_slice(b"\r\n");
    }
}

/// A copy of `head` naming HTTP/1.1 when its status line names HTTP/1.2 to HTTP/1.9, which
/// [`parse`] refuses; `None` for any other head. RFC 9110 §6.2 / RFC 9112 §2.3: a higher minor
/// version is treated as the highest one we support, and the client gets `HTTP/1.1` as
/// always. Only called after a refusal, so the copy costs nothing on the usual path.
pub fn as_http11(head: &[u8]) -> Option<alloc::vec::Vec<u8>> {
    if !matches!(
        head,
        [
            b'H',
            b'T',
            b'T',
            b'P',
            b'/',
            b'1',
            b'.',
            b'2'..=b'9',
            b' ',
            ..
        ]
    ) {
        return None;
    }
    let mut copy = head.to_vec();
    copy[7] = b'1';
    Some(copy)
}

/// Parses a complete response head to a request whose method was HEAD (`head_request`) or not.
pub fn parse<'h, 'b>(
    head: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
    max_headers: usize,
    head_request: bool,
) -> Result<ResponseHead<'h, 'b>, Problem> {
    let mut res = httparse::Response::new(&mut []);
    let max = max_headers.clamp(1, MAX_HEADER_SLOTS);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        head,
        &mut slots[..max],
    ) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return Err(Problem::BadResponse),
    }
    let (Some(status), Some(minor_version)) = (res.code, res.version) else {
        return Err(Problem::BadResponse);
    };
    let headers = res.headers;
    let line_end = head
        .iter()
        .position(|&b| b == b'\r')
        .ok_or(Problem::BadResponse)?;
    // "HTTP/1.x" is 8 bytes; httparse has checked it.
    let status_rest = &head[8..line_end];

    let mut connection = ConnectionOptions::default();
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            // Identical repeats are tolerated (RFC 9110 §8.6); differing values are not.
            for part in h.value.split(|&b| b == b',') {
                let n = head::parse_content_length(head::trim(part)).ok_or(Problem::BadResponse)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(Problem::BadResponse);
                }
                content_length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // With several TE fields, the last coding of the last one counts.
            chunked = head::final_coding_is_chunked(h.value);
        } else if h.name.eq_ignore_ascii_case("connection")
            || h.name.eq_ignore_ascii_case("proxy-connection")
        {
            connection.add(h.value).map_err(|()| Problem::BadResponse)?;
        }
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        BodyKind::None
    } else if transfer_encoding {
        if chunked {
            BodyKind::Chunked
        } else {
            BodyKind::CloseDelimited
        }
    } else {
        match content_length {
            Some(0) => BodyKind::None,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::CloseDelimited,
        }
    };
    let persistent = if minor_version == 0 {
        connection.keep_alive && !connection.close
    } else {
        !connection.close
    };
    // CL together with TE means someone along the way is confused: never reuse that connection.
    let reusable = persistent
        && body != BodyKind::CloseDelimited
        && !(transfer_encoding && content_length.is_some());
    Ok(ResponseHead {
        status,
        minor_version,
        body,
        reusable,
        status_rest,
        drop_content_length: transfer_encoding && !no_body,
        headers,
        connection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::header_slots;
    use alloc::string::String;

    fn client_head(
        head: &[u8],
        head_request: bool,
        client_minor: u8,
        conn: Option<&str>,
    ) -> (String, BodyKind, bool) {
        let mut slots = header_slots();
        let res = parse(head, &mut slots, 100, head_request).unwrap();
        let mut out = BytesMut::new();
        res.write_client_head(res.client_framing(client_minor), conn, "ringway", &mut out);
        (
            String::from_utf8(out.to_vec()).unwrap(),
            res.body,
            res.reusable,
        )
    }

    #[test]
    fn higher_minor_versions_read_as_1_1() {
        assert_eq!(
            as_http11(b"HTTP/1.2 200 OK\r\n\r\n").as_deref(),
            Some(&b"HTTP/1.1 200 OK\r\n\r\n"[..])
        );
        for other in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.10 200 OK\r\n\r\n",
            b"HTTP/1.2",
        ] {
            assert_eq!(as_http11(other), None);
        }
    }

    #[test]
    fn status_and_reason_pass_through_and_hop_by_hop_go() {
        let mut slots = header_slots();
        let head = b"HTTP/1.1 299 Quite  Fine \xe9\r\nServer: s\r\nConnection: X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\n\
Content-Length: 3\r\nProxy-Authenticate: Basic\r\nset-cookie: a\r\nSet-Cookie: b\r\n\r\n";
        let res = parse(head, &mut slots, 100, false).unwrap();
        assert_eq!((res.body, res.reusable), (BodyKind::Length(3), true));
        let mut raw = BytesMut::new();
        res.write_client_head(ClientFraming::Passthrough, None, "ringway", &mut raw);
        assert_eq!(
            &raw[..],
            &b"HTTP/1.1 299 Quite  Fine \xe9\r\nServer: s\r\nContent-Length: 3\r\nset-cookie: a\r\nSet-Cookie: b\r\nVia: 1.1 ringway\r\n\r\n"[..]
        );
    }

    #[test]
    fn chunked_passes_through_to_http11_and_is_dechunked_for_http10() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n";
        let (out, body, reusable) = client_head(head, false, 1, None);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVia: 1.1 ringway\r\n\r\n"
        );
        assert_eq!(body, BodyKind::Chunked);
        assert!(!reusable, "CL with TE poisons the connection");
        let (out, _, _) = client_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            0,
            Some("close"),
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nConnection: close\r\nVia: 1.1 ringway\r\n\r\n"
        );
    }

    #[test]
    fn missing_reason_gets_its_space() {
        let (out, _, _) = client_head(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, 1, None);
        assert!(out.starts_with("HTTP/1.1 200 \r\n"), "{out:?}");
        let (out, _, _) = client_head(
            b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
            false,
            1,
            None,
        );
        assert!(out.starts_with("HTTP/1.1 200 \r\n"), "{out:?}");
    }

    #[test]
    fn body_kinds() {
        let kind = |head: &[u8], head_request: bool| {
            let mut slots = header_slots();
            parse(head, &mut slots, 100, head_request).map(|r| (r.body, r.reusable))
        };
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\n\r\n", false),
            Ok((BodyKind::CloseDelimited, false))
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true),
            Ok((BodyKind::None, true))
        );
        assert_eq!(
            kind(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            Ok((BodyKind::None, true))
        );
        assert_eq!(
            kind(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
                false
            ),
            Ok((BodyKind::None, true))
        );
        assert_eq!(
            kind(b"HTTP/1.1 100 Continue\r\n\r\n", false),
            Ok((BodyKind::None, true))
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            Ok((BodyKind::CloseDelimited, false))
        );
        assert_eq!(
            kind(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Ok((BodyKind::Length(5), true))
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", false),
            Ok((BodyKind::Length(5), true))
        );
        assert_eq!(
            kind(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                false
            ),
            Ok((BodyKind::Length(5), false))
        );
        assert_eq!(
            kind(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Ok((BodyKind::Length(5), false))
        );
        assert_eq!(
            kind(
                b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
                false
            ),
            Ok((BodyKind::Length(5), true))
        );
        assert_eq!(
            kind(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                false
            ),
            Err(Problem::BadResponse)
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            Err(Problem::BadResponse)
        );
        assert_eq!(
            kind(b"HTTP/1.1 2000 OK\r\n\r\n", false),
            Err(Problem::BadResponse)
        );
        assert_eq!(
            kind(b"HTTP/2 200 OK\r\n\r\n", false),
            Err(Problem::BadResponse)
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false),
            Err(Problem::BadResponse)
        );
    }
}
