//! Finding where a head ends, and the header-field rules shared by requests and responses.
//!
//! httparse accepts a bare LF as a line ending and trims whitespace from values; both are
//! places where two parsers can disagree about a message, which is how requests get smuggled.
//! [`HeadScanner`] therefore checks line endings itself while it looks for the empty line,
//! remembering how far it got so that a head trickling in byte by byte costs linear time.

use crate::problem::Problem;

/// Incremental search for the end of a head (`CRLF CRLF`), rejecting any bare CR or LF.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadScanner {
    /// Bytes of the buffer already checked.
    scanned: usize,
    /// Index where the current line starts.
    line_start: usize,
}

impl HeadScanner {
    /// Looks at `buf` (which only ever grows between calls, until [`HeadScanner::reset`]) and
    /// returns the length of the head including its final empty line, `None` if more bytes
    /// are needed, or the problem with the line endings.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, Problem> {
        let mut i = self.scanned;
        while let Some(offset) = memchr::memchr2(b'\r', b'\n', &buf[i..]) {
            let at = i + offset;
            if buf[at] == b'\r' {
                match buf.get(at + 1) {
                    None => {
                        self.scanned = at;
                        return Ok(None);
                    }
                    Some(b'\n') => {
                        if at == self.line_start {
                            self.reset();
                            return Ok(Some(at + 2));
                        }
                        self.line_start = at + 2;
                        i = at + 2;
                    }
                    Some(_) => {
                        self.scanned = at + 2;
                        return Err(Problem::BareLineEnding);
                    }
                }
            } else {
                // An LF not preceded by CR (a preceding CR is consumed with its LF above).
                self.scanned = at + 1;
                return Err(Problem::BareLineEnding);
            }
        }
        self.scanned = buf.len();
        Ok(None)
    }

    /// After an error: how many bytes up to and including the offending one. Counting exactly
    /// these (not whatever else happened to arrive) keeps the access log independent of how
    /// the input was split.
    pub(crate) fn error_end(&self) -> usize {
        self.scanned
    }

    /// Forgets all progress, for the next head.
    pub(crate) fn reset(&mut self) {
        *self = HeadScanner::default();
    }
}

/// Whether a field is hop-by-hop (RFC 9110 §7.6.1) and so never forwarded as received.
/// `Transfer-Encoding` and `Upgrade` are in the list; callers re-add them where the framing or
/// an accepted upgrade calls for it.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 9] = [
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The most field names a `Connection` header may list for removal.
const MAX_CONNECTION_TOKENS: usize = 16;

/// What the `Connection` (and legacy `Proxy-Connection`) fields said.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionOptions<'a> {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    listed: [&'a [u8]; MAX_CONNECTION_TOKENS],
    count: usize,
}

impl<'a> ConnectionOptions<'a> {
    /// Adds the comma-separated tokens of one field value.
    pub(crate) fn add(&mut self, value: &'a [u8]) -> Result<(), ()> {
        for token in value.split(|&b| b == b',') {
            let token = trim(token);
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if self.count == MAX_CONNECTION_TOKENS {
                return Err(());
            } else {
                self.listed[self.count] = token;
                self.count += 1;
            }
        }
        Ok(())
    }

    /// Whether `name` was listed as a connection option, and so is hop-by-hop here.
    pub(crate) fn lists(&self, name: &str) -> bool {
        self.listed[..self.count]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Trims optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A Content-Length value: one or more decimal digits, nothing else, no overflow.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')),
    )
}

/// Whether the last coding of a Transfer-Encoding value is `chunked`.
pub(crate) fn final_coding_is_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"))
}

/// Whether the field value ended right at its CR in the raw head, i.e. httparse trimmed no
/// trailing whitespace from it (`chunked\t` must not pass as `chunked`).
pub(crate) fn value_is_untrimmed(head: &[u8], value: &[u8]) -> bool {
    let end = (value.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize) + value.len();
    head.get(end) == Some(&b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_whole(buf: &[u8]) -> Result<Option<usize>, Problem> {
        HeadScanner::default().scan(buf)
    }

    fn scan_bytewise(buf: &[u8]) -> Result<Option<usize>, Problem> {
        let mut s = HeadScanner::default();
        for n in 1..=buf.len() {
            if let Some(end) = s.scan(&buf[..n])? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    #[test]
    fn finds_the_end_three_ways() {
        let head = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n";
        for f in [scan_whole, scan_bytewise] {
            assert_eq!(f(head), Ok(Some(head.len())));
            let mut trailing = head.to_vec();
            trailing.extend_from_slice(b"BODY\r\n\r\n");
            assert_eq!(f(&trailing), Ok(Some(head.len())));
            assert_eq!(f(&head[..head.len() - 1]), Ok(None));
        }
    }

    #[test]
    fn rejects_bare_line_endings() {
        for bad in [
            &b"GET http://a/ HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET http://a/ HTTP/1.1\r\nHost: a\n\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\n",
            b"GET http://a/ HTTP/1.1\rHost: a\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nX: a\rb\r\n\r\n",
        ] {
            assert_eq!(scan_whole(bad), Err(Problem::BareLineEnding));
            assert_eq!(scan_bytewise(bad), Err(Problem::BareLineEnding));
        }
    }

    #[test]
    fn connection_tokens() {
        let mut c = ConnectionOptions::default();
        c.add(b"Keep-Alive, X-Foo ,close").unwrap();
        c.add(b"upgrade").unwrap();
        assert!(c.close && c.keep_alive && c.upgrade);
        assert!(c.lists("x-foo") && !c.lists("x-bar"));
        let mut many = ConnectionOptions::default();
        let long = b"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q";
        assert!(many.add(long).is_err());
    }

    #[test]
    fn field_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(
            parse_content_length(b"1234567890123456789"),
            Some(1234567890123456789)
        );
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5 ",
            b"0x10",
            b"12345678901234567890",
            b"5,5",
        ] {
            assert_eq!(parse_content_length(bad), None);
        }
        assert!(final_coding_is_chunked(b"chunked"));
        assert!(final_coding_is_chunked(b"gzip, Chunked"));
        assert!(!final_coding_is_chunked(b"chunked, gzip"));
        assert!(!final_coding_is_chunked(b"chunked,"));
        assert!(!final_coding_is_chunked(b"xchunked"));
    }
}
