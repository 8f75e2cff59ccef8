//! Request targets: where a request wants to go.
//!
//! A forward proxy sees two target forms (RFC 9112 §3.2): absolute-form `http://host[:port]/p?q`
//! for plain HTTP and authority-form `host:port` for CONNECT. Origin-form (`/path`) and
//! asterisk-form (`*`) mean the client thinks we are an origin and are refused by the router.
//! Parsing is strict: userinfo, fragments, empty hosts, bad or zero ports are all
//! [`Problem`]s, since a lenient parser here is where proxies and origins start to disagree.

use alloc::boxed::Box;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::net::Ipv6Addr;

use crate::problem::Problem;

/// Longest host name accepted (DNS allows 253 characters).
const MAX_HOST_LEN: usize = 255;

/// Host names up to this many bytes are stored inside the [`Authority`] itself. Every
/// request makes an authority and the runtime clones it as its pool key, so a heap string
/// would be two allocations per request; nearly every real host name (and every IPv6
/// literal, 39 bytes at most) fits.
const INLINE_HOST: usize = 46;

/// A lowercased host name: inline when short, boxed when long.
#[derive(Clone)]
enum HostName {
    Inline { len: u8, bytes: [u8; INLINE_HOST] },
    Boxed(Box<str>),
}

impl HostName {
    fn new(host: &str) -> HostName {
        if host.len() <= INLINE_HOST {
            let mut bytes = [0u8; INLINE_HOST];
            bytes[..host.len()].copy_from_slice(host.as_bytes());
            bytes[..host.len()].make_ascii_lowercase();
            HostName::Inline {
                len: host.len() as u8,
                bytes,
            }
        } else {
            HostName::Boxed(host.to_ascii_lowercase().into_boxed_str())
        }
    }

    /// The bytes: what the hot paths (pool lookups, `Host` rewriting) use, with no UTF-8
    /// check.
    fn as_bytes(&self) -> &[u8] {
        match self {
            HostName::Inline { len, bytes } => &bytes[..usize::from(*len)],
            HostName::Boxed(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Made from a `&str` and lowercased as ASCII, so always valid UTF-8.
            HostName::Inline { .. } => core::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            HostName::Boxed(s) => s,
        }
    }
}

impl PartialEq for HostName {
    fn eq(&self, other: &HostName) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for HostName {}

impl Hash for HostName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A host and port to dial: the key of the upstream connection pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Authority {
    /// A DNS name or IPv4 literal (lowercased), or an IPv6 literal without brackets.
    host: HostName,
    port: u16,
}

impl Authority {
    /// An authority from a validated host (no brackets around IPv6) and port. Allocates
    /// nothing for hosts of up to 46 bytes.
    pub fn new(host: &str, port: u16) -> Authority {
        Authority {
            host: HostName::new(host),
            port,
        }
    }

    /// The host: a DNS name, an IPv4 literal, or an IPv6 literal without brackets.
    pub fn host(&self) -> &str {
        self.host.as_str()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an IP address, when it is an IP literal, legacy IPv4 spellings included
    /// (`127.1` is 127.0.0.1): the core connects to a literal as it is and resolves only
    /// names.
    pub fn ip(&self) -> Option<core::net::IpAddr> {
        match crate::egress::parse_host(self.host()) {
            crate::egress::HostKind::Ip(ip) => Some(ip),
            _ => None,
        }
    }

    /// Whether the host is an IPv6 literal (and so needs brackets in a URI or Host header).
    pub fn is_ipv6(&self) -> bool {
        self.host.as_bytes().contains(&b':')
    }

    /// The `Host` header value for an `http` URI: the port is left out when it is 80.
    pub(crate) fn host_header(&self, out: &mut bytes::BytesMut) {
        use bytes::BufMut;
        if self.is_ipv6() {
            out.put_u8(b'[');
            out.put_slice(self.host.as_bytes());
            out.put_u8(b']');
        } else {
            out.put_slice(self.host.as_bytes());
        }
        if self.port != 80 {
            out.put_u8(b':');
            crate::problem::put_decimal(out, u64::from(self.port));
        }
    }
}

impl fmt::Display for Authority {
    /// `host:port`, with brackets around an IPv6 host, as `connect(2)` helpers accept it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ipv6() {
            write!(f, "[{}]:{}", self.host(), self.port)
        } else {
            write!(f, "{}:{}", self.host(), self.port)
        }
    }
}

/// An absolute-form target split into where to go and what to ask for there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsoluteTarget<'a> {
    /// Host and port from the URI (port 80 when absent).
    pub authority: Authority,
    /// Path and query as sent; empty when the URI had none (the request line then uses `/`).
    pub path_and_query: &'a [u8],
}

impl AbsoluteTarget<'_> {
    /// Whether the origin-form must be prefixed with `/` (empty path, or a query alone).
    pub(crate) fn needs_leading_slash(&self) -> bool {
        self.path_and_query.first() != Some(&b'/')
    }
}

/// Parses an absolute-form `http://` target.
pub fn parse_absolute(uri: &[u8]) -> Result<AbsoluteTarget<'_>, Problem> {
    let colon = uri
        .iter()
        .position(|&b| b == b':')
        .ok_or(Problem::BadTarget)?;
    let (scheme, rest) = uri.split_at(colon);
    if scheme.is_empty()
        || !scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    {
        return Err(Problem::BadTarget);
    }
    if !scheme.eq_ignore_ascii_case(b"http") {
        return Err(Problem::UnsupportedScheme);
    }
    let rest = rest.strip_prefix(b"://").ok_or(Problem::BadTarget)?;
    if rest.contains(&b'#') {
        return Err(Problem::BadTarget);
    }
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    let authority = parse_host_port(authority, Some(80)).ok_or(Problem::BadTarget)?;
    Ok(AbsoluteTarget {
        authority,
        path_and_query,
    })
}

/// Parses an authority-form CONNECT target: `host:port` or `[v6]:port`, port required.
pub fn parse_authority_form(target: &[u8]) -> Result<Authority, Problem> {
    parse_host_port(target, None).ok_or(Problem::BadConnectTarget)
}

/// `host[:port]` with a strict host grammar; `default_port` applies to a missing or empty port.
fn parse_host_port(s: &[u8], default_port: Option<u16>) -> Option<Authority> {
    let (host, port) = if let Some(rest) = s.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let literal = core::str::from_utf8(&rest[..close]).ok()?;
        let v6: Ipv6Addr = literal.parse().ok()?;
        let _ = v6;
        (literal, &rest[close + 1..])
    } else {
        let end = s.iter().position(|&b| b == b':').unwrap_or(s.len());
        let host = &s[..end];
        if host.is_empty()
            || host.len() > MAX_HOST_LEN
            || !host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return None;
        }
        (core::str::from_utf8(host).ok()?, &s[end..])
    };
    let port = match port {
        [] => default_port?,
        [b':'] => default_port?,
        [b':', digits @ ..] => parse_port(digits)?,
        _ => return None,
    };
    Some(Authority::new(host, port))
}

/// A decimal port from 1 to 65535, at most five digits.
fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(value).ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn short_and_long_hosts_are_the_same_kind_of_key() {
        use alloc::format;
        use alloc::string::ToString;
        for len in [
            1,
            INLINE_HOST - 1,
            INLINE_HOST,
            INLINE_HOST + 1,
            MAX_HOST_LEN,
        ] {
            let upper: String = "AbC".chars().cycle().take(len).collect();
            let a = Authority::new(&upper, 8080);
            assert_eq!(a.host(), upper.to_ascii_lowercase(), "len {len}");
            assert_eq!(a, Authority::new(&upper.to_ascii_lowercase(), 8080));
            assert_ne!(a, Authority::new(&upper, 8081));
            assert_eq!(a.clone(), a);
            assert_eq!(
                a.to_string(),
                format!("{}:8080", upper.to_ascii_lowercase())
            );
            let hash = |x: &Authority| {
                // FNV-1a over whatever `Hash` feeds: equal keys must hash equally.
                struct Fnv(u64);
                impl Hasher for Fnv {
                    fn finish(&self) -> u64 {
                        self.0
                    }
                    fn write(&mut self, bytes: &[u8]) {
                        for &b in bytes {
                            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                        }
                    }
                }
                let mut h = Fnv(0xcbf2_9ce4_8422_2325);
                x.hash(&mut h);
                h.finish()
            };
            assert_eq!(
                hash(&a),
                hash(&Authority::new(&upper.to_ascii_lowercase(), 8080))
            );
        }
    }

    fn abs(s: &str) -> Result<(String, u16, &str), Problem> {
        parse_absolute(s.as_bytes()).map(|t| {
            (
                t.authority.host().into(),
                t.authority.port(),
                core::str::from_utf8(t.path_and_query).unwrap(),
            )
        })
    }

    #[test]
    fn absolute_form() {
        assert_eq!(
            abs("http://example.com/a?b"),
            Ok(("example.com".into(), 80, "/a?b"))
        );
        assert_eq!(
            abs("HTTP://Example.COM:8080"),
            Ok(("example.com".into(), 8080, ""))
        );
        assert_eq!(
            abs("http://example.com?q"),
            Ok(("example.com".into(), 80, "?q"))
        );
        assert_eq!(abs("http://[::1]:8080/x"), Ok(("::1".into(), 8080, "/x")));
        assert_eq!(abs("http://[::1]/x"), Ok(("::1".into(), 80, "/x")));
        assert_eq!(
            abs("http://127.0.0.1:/x"),
            Ok(("127.0.0.1".into(), 80, "/x"))
        );
        assert_eq!(abs("https://example.com/"), Err(Problem::UnsupportedScheme));
        assert_eq!(abs("ftp://example.com/"), Err(Problem::UnsupportedScheme));
        for bad in [
            "http://",
            "http:///x",
            "http://user@host/",
            "http://host:0/",
            "http://host:65536/",
            "http://host:80a/",
            "http://host/#frag",
            "http:/host/",
            "http://ho st/",
            "http://[::1/",
            "http://[nope]/",
            "http://[::1]x/",
            "/path",
            ":",
            "http://host:123456/",
        ] {
            assert!(abs(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn authority_form() {
        let a = parse_authority_form(b"example.com:443").unwrap();
        assert_eq!((a.host(), a.port()), ("example.com", 443));
        assert_eq!(alloc::format!("{a}"), "example.com:443");
        let v6 = parse_authority_form(b"[::1]:8443").unwrap();
        assert_eq!((v6.host(), v6.port()), ("::1", 8443));
        assert_eq!(alloc::format!("{v6}"), "[::1]:8443");
        for bad in [
            "example.com",
            "example.com:",
            ":443",
            "example.com:0",
            "example.com:65536",
            "[::1]",
            "[::1]443",
            "a:b:c",
        ] {
            assert_eq!(
                parse_authority_form(bad.as_bytes()),
                Err(Problem::BadConnectTarget),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_header_omits_default_port() {
        let mut out = bytes::BytesMut::new();
        Authority::new("example.com", 80).host_header(&mut out);
        out.extend_from_slice(b" ");
        Authority::new("::1", 8080).host_header(&mut out);
        assert_eq!(&out[..], b"example.com [::1]:8080");
    }
}
