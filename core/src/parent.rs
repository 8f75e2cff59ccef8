//! The parent (upstream) proxy: where requests go next when Ringway is chained behind another
//! forward proxy (a corporate proxy, a per-region egress, a tor or VPN gateway).
//!
//! Key components: [`ParentProxy`] holds the parent's address, the `Proxy-Authorization` field
//! built once from the URL's credentials (`http://user:password@host:port`, percent-decoded),
//! and the host patterns that go direct instead (`--no-upstream-proxy`, the egress grammar; no
//! implicit exceptions: `localhost` goes to the parent unless a pattern lists it). The
//! [`Connection`](crate::Connection) asks [`ParentProxy::carries`] per request.
//!
//! Error handling: [`ParentProxy::from_url`] refuses anything but `http://[user[:password]@]
//! host:port[/]` with a static message. Key material never reaches `Debug`: the credentials
//! print as `<redacted>`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::egress::{self, HostKind, HostPatterns};
use crate::target::Authority;

/// Which hop carried a request: the access log's `via=` word.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Hop {
    /// Straight to the origin (no parent configured, or the target matched an exception).
    Direct,
    /// Through the parent proxy.
    Parent,
}

impl Hop {
    /// The word in the access log (`via=parent`, `via=direct`).
    pub fn word(self) -> &'static str {
        match self {
            Hop::Direct => "direct",
            Hop::Parent => "parent",
        }
    }
}

/// A parent proxy and the destinations that bypass it (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct ParentProxy {
    authority: Authority,
    /// `Proxy-Authorization: Basic …\r\n`, ready to copy into a head; empty without
    /// credentials.
    authorization: Vec<u8>,
    bypass: HostPatterns,
}

impl fmt::Debug for ParentProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParentProxy")
            .field("authority", &self.authority)
            .field(
                "credentials",
                &if self.authorization.is_empty() {
                    "none"
                } else {
                    "<redacted>"
                },
            )
            .field("bypass", &self.bypass)
            .finish()
    }
}

impl ParentProxy {
    /// Parses `http://[user[:password]@]host:port[/]` (userinfo percent-decoded; an IPv6
    /// host in brackets). The port is required: parents listen on all sorts of ports, and a
    /// guessed default would fail far from its cause.
    pub fn from_url(url: &str) -> Result<ParentProxy, &'static str> {
        let rest = match url.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &url[7..],
            _ => return Err("expected http://[user:password@]host:port"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err("a parent proxy URL has no path");
        }
        let (userinfo, hostport) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let authority = crate::target::parse_authority_form(hostport.as_bytes())
            .map_err(|_| "expected host:port after http:// (and credentials)")?;
        if matches!(egress::parse_host(authority.host()), HostKind::InvalidIp) {
            return Err("the parent's host is not a valid address");
        }
        let mut authorization = Vec::new();
        if let Some(userinfo) = userinfo {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let mut plain = percent_decode(user)?;
            plain.push(b':');
            plain.extend_from_slice(&percent_decode(password)?);
            authorization.extend_from_slice(b"Proxy-Authorization: Basic ");
            authorization.extend_from_slice(crate::policy::base64(&plain).as_bytes());
            authorization.extend_from_slice(b"\r\n");
            // The plain credentials go no further than this function.
            plain.fill(0);
        }
        Ok(ParentProxy {
            authority,
            authorization,
            bypass: HostPatterns::new(),
        })
    }

    /// Where the parent listens (`host:port`; a name is resolved by the runtime like any
    /// other, and its addresses are exempt from the egress guard: the operator chose them).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Whether the URL carried credentials (sent as `Proxy-Authorization: Basic`).
    pub fn has_credentials(&self) -> bool {
        !self.authorization.is_empty()
    }

    /// The destinations that go direct (`--no-upstream-proxy`), to fill at start-up.
    pub fn bypass_mut(&mut self) -> &mut HostPatterns {
        &mut self.bypass
    }

    /// The destinations that go direct.
    pub fn bypass(&self) -> &HostPatterns {
        &self.bypass
    }

    /// Whether a request to `target` goes through the parent: unless an exception pattern
    /// matches it (a name pattern for names, a CIDR for IP literals, legacy IPv4 spellings
    /// canonicalised first).
    pub fn carries(&self, target: &Authority) -> bool {
        let bypassed = match egress::parse_host(target.host()) {
            HostKind::Name => self.bypass.matches_name(target.host()),
            HostKind::Ip(ip) => self.bypass.matches_ip(ip),
            HostKind::InvalidIp => false,
        };
        !bypassed
    }

    /// The `Proxy-Authorization` field line (with CRLF) for heads to the parent; empty
    /// without credentials.
    pub(crate) fn authorization_line(&self) -> &[u8] {
        &self.authorization
    }

    /// The head that asks the parent for a tunnel to `target`.
    pub(crate) fn connect_head(&self, target: &Authority, via_pseudonym: &str) -> Vec<u8> {
        let mut head = Vec::with_capacity(96 + self.authorization.len());
        let mut hostport = String::new();
        let _ = fmt::write(&mut hostport, format_args!("{target}"));
        head.extend_from_slice(b"CONNECT ");
        head.extend_from_slice(hostport.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head.extend_from_slice(hostport.as_bytes());
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(&self.authorization);
        head.extend_from_slice(b"Via: 1.1 ");
        head.extend_from_slice(via_pseudonym.as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
        head
    }
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); a `%` not followed by two hex digits is refused.
fn percent_decode(s: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err("a % in the credentials must be followed by two hex digits"),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn urls() {
        let p = ParentProxy::from_url("http://proxy.corp:3128").unwrap();
        assert_eq!(p.authority(), &Authority::new("proxy.corp", 3128));
        assert!(!p.has_credentials());
        let p = ParentProxy::from_url("HTTP://[::1]:8080/").unwrap();
        assert_eq!(p.authority(), &Authority::new("::1", 8080));
        let p = ParentProxy::from_url("http://Aladdin:open%20sesame@10.0.0.1:3128").unwrap();
        assert_eq!(
            p.authorization_line(),
            b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
        );
        // A password with ':' and '@' (the last '@' ends the userinfo).
        let p = ParentProxy::from_url("http://u:p:w@d@h:1").unwrap();
        assert_eq!(
            p.authorization_line(),
            format!(
                "Proxy-Authorization: Basic {}\r\n",
                crate::policy::base64(b"u:p:w@d")
            )
            .as_bytes()
        );
        for bad in [
            "proxy:3128",
            "https://proxy:3128",
            "http://proxy",
            "http://proxy:3128/path",
            "http://proxy:0x10",
            "http://u:%zz@proxy:3128",
            "http://999.1.1.1:3128",
            "http://",
        ] {
            assert!(ParentProxy::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_never_reach_debug() {
        let p = ParentProxy::from_url("http://user:s3cret@proxy:3128").unwrap();
        let shown = format!("{p:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("dXNlcjpzM2NyZXQ="),
            "{shown}"
        );
    }

    #[test]
    fn exceptions_use_the_host_pattern_grammar() {
        let mut p = ParentProxy::from_url("http://proxy:3128").unwrap();
        // No implicit exceptions.
        assert!(p.carries(&Authority::new("localhost", 80)));
        assert!(p.carries(&Authority::new("127.0.0.1", 80)));
        p.bypass_mut().add("*.internal").unwrap();
        p.bypass_mut().add("127.0.0.0/8").unwrap();
        assert!(!p.carries(&Authority::new("a.b.internal", 80)));
        assert!(p.carries(&Authority::new("internal", 80)));
        assert!(!p.carries(&Authority::new("127.0.0.1", 443)));
        // Legacy spellings are the address they stand for.
        assert!(!p.carries(&Authority::new("127.1", 80)));
        assert!(p.carries(&Authority::new("example.com", 80)));
    }

    #[test]
    fn connect_head() {
        let p = ParentProxy::from_url("http://u:p@proxy:3128").unwrap();
        let head = p.connect_head(&Authority::new("::1", 443), "ringway");
        assert_eq!(
            head,
            b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic dTpw\r\nVia: 1.1 ringway\r\n\r\n"
        );
    }
}
