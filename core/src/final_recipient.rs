//! Answers the proxy gives as the final recipient of a request: OPTIONS and TRACE whose
//! `Max-Forwards` has reached 0 (RFC 9110 §7.6.2), which a proxy MUST NOT forward.
//!
//! The answers are built from the request alone and cannot fail. They are ordinary `200`
//! responses, so the client connection stays open after them (unless the request carried a
//! body we did not read, or the client or a shutdown asked to close).
//!
//! - **OPTIONS** gets `200 OK` with `Content-Length: 0` and no `Allow`: RFC 9110 §9.3.7 shows
//!   exactly this form (a successful answer MUST carry `Content-Length: 0` when it has no
//!   content; `204` would be the other choice, but `200` is what §9.3.7 describes and what
//!   every client handles). `Allow` is left out on purpose: it lists the methods of the
//!   target *resource*, which the proxy cannot know; it forwards any method.
//! - **TRACE** is reflected: `200 OK`, `Content-Type: message/http`, the request head as
//!   received (RFC 9110 §9.3.8's SHOULD) minus `Proxy-Authorization`, `Authorization` and
//!   `Cookie`, the fields "likely to contain sensitive data" that §9.3.8 tells the final
//!   recipient to leave out (cross-site tracing stole exactly these). We reflect rather than
//!   refuse with 405 because TRACE with `Max-Forwards` above 0 is forwarded anyway (the
//!   origin reflects it), so a 405 here would protect nothing and only break the one use of
//!   TRACE: seeing what each hop received.

use bytes::{BufMut, BytesMut};

use crate::problem::put_decimal;
use crate::request::{put_field, RequestHead};

/// Which request the proxy answers itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LocalAnswer {
    /// `OPTIONS` with `Max-Forwards: 0`.
    Options,
    /// `TRACE` with `Max-Forwards: 0`.
    Trace,
}

/// Fields never echoed in a TRACE reflection: credentials and cookies (RFC 9110 §9.3.8).
const NOT_REFLECTED: [&[u8]; 3] = [b"proxy-authorization", b"authorization", b"cookie"];

impl LocalAnswer {
    /// Writes the complete response to `req`. `connection` is the `Connection` field to add
    /// (`close`, or `keep-alive` for a persistent HTTP/1.0 client), as for relayed answers.
    pub fn write_response(
        self,
        req: &RequestHead<'_, '_>,
        connection: Option<&str>,
        out: &mut BytesMut,
    ) {
        out.put_slice(b"HTTP/1.1 200 OK\r\n");
        match self {
            LocalAnswer::Options => {
                out.put_slice(b"Content-Length: 0\r\n");
                if let Some(c) = connection {
                    put_field(out, b"Connection", c.as_bytes());
                }
                out.put_slice(b"\r\n");
            }
            LocalAnswer::Trace => {
                let head = req.raw();
                let reflected: usize = lines(head)
                    .filter(|l| is_reflected(l))
                    .map(|l| l.len())
                    .sum();
                out.reserve(head.len() + 128);
                out.put_slice(b"Content-Type: message/http\r\nContent-Length: ");
                put_decimal(out, reflected as u64);
                out.put_slice(b"\r\n");
                if let Some(c) = connection {
                    put_field(out, b"Connection", c.as_bytes());
                }
                out.put_slice(b"\r\n");
                for line in lines(head).filter(|l| is_reflected(l)) {
                    out.put_slice(line);
                }
            }
        }
    }
}

/// The lines of a complete head, each with its CRLF (the last is the empty line).
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split_inclusive(|&b| b == b'\n')
}

/// Whether a line of the head goes into a TRACE reflection.
fn is_reflected(line: &[u8]) -> bool {
    let name = match line.iter().position(|&b| b == b':') {
        Some(colon) => &line[..colon],
        None => return true,
    };
    !NOT_REFLECTED.iter().any(|n| name.eq_ignore_ascii_case(n))
}
