//! Whether a CONNECT tunnel is intercepted (TLS terminated by the proxy, its HTTP run through
//! the core) or relayed untouched, as one pure decision over the operator's `--intercept`
//! patterns, the CONNECT authority and the client's ClientHello.
//!
//! Interception is opt-in per host: the patterns use the egress grammar
//! ([`HostPatterns`]: `*`, names, `*.suffix`, CIDR blocks for IP literals). A tunnel whose
//! authority matches still falls back to a plain tunnel when interception cannot work:
//! the first bytes are not a TLS ClientHello (another protocol on port 443), the hello uses
//! Encrypted Client Hello to hide its destination (its outer server name names a host other
//! than the CONNECT host: the real name is in the encrypted inner hello, and a certificate
//! for the outer, public name would be for the wrong site), or the client offers ALPN without
//! `http/1.1` (the proxy speaks HTTP/1.1 inside).
//!
//! An ECH extension whose outer server name *is* the CONNECT host hides nothing: Chromium
//! sends one on every connection (RFC 9849's "GREASE ECH", so that real ECH does not stand
//! out; seen from Chromium 156 through this proxy), and has no real ECH configurations
//! through an HTTP proxy anyway (they come from DNS, which the proxy does). The proxy then
//! answers as a TLS server without ECH does, from the outer hello, which the RFC makes safe
//! for clients ("Handling ECH Rejection": a client whose real ECH was not accepted retries
//! without it). Passing such tunnels through would leave every Chromium connection
//! uninspected.
//!
//! ## Key components
//! - [`matches()`]: does the authority's host match the patterns (decided at the CONNECT,
//!   before any ClientHello is read)?
//! - [`decide`]: the whole decision, given the ClientHello read so far.
//! - [`Passthrough`]: why a tunnel is relayed untouched, one word for the access log.
//! - [`check_pinned`]: inside an intercepted tunnel, does a request's `Host` name the
//!   authority the tunnel was opened for? (Else 421: the client must not use a connection
//!   to one origin for another, and the proxy must not let a `Host` header steer it.)
//!
//! - [`route`]: the routing decision for a request inside an intercepted tunnel, the
//!   counterpart of [`crate::route::decide`] (which serves the proxy's own listener).
//!
//! ## Error handling
//! The decision has none: every input has one; an unreadable host (an invalid IP spelling)
//! never matches. [`check_pinned`] answers with a [`Problem`]: `InvalidHost` (400) for a
//! value that is no `host[:port]`, `MisdirectedRequest` (421) for another authority.

use crate::client_hello::ClientHello;
use crate::egress::{canonical, parse_host, HostKind, HostPatterns};
use crate::final_recipient::LocalAnswer;
use crate::problem::Problem;
use crate::request::RequestHead;
use crate::route::Decision as Route;
use crate::target::{AbsoluteTarget, Authority};

/// Why a tunnel is relayed untouched rather than intercepted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Passthrough {
    /// The authority matches no `--intercept` pattern (the usual case; nothing is logged).
    NotMatched,
    /// The first bytes are not a well-formed TLS ClientHello.
    NotTls,
    /// The ClientHello carries Encrypted Client Hello with an outer server name other than
    /// the CONNECT host (the destination is hidden in the encrypted inner hello).
    Ech,
    /// The client offers ALPN protocols, none of them `http/1.1`.
    NoHttp11,
}

impl Passthrough {
    /// The access log's `reason=` word.
    pub const fn log_word(self) -> &'static str {
        match self {
            Passthrough::NotMatched => "not_intercepted",
            Passthrough::NotTls => "not_tls",
            Passthrough::Ech => "tls_ech",
            Passthrough::NoHttp11 => "tls_no_http11",
        }
    }
}

/// What to do with a CONNECT tunnel now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Relay the bytes untouched (those already read included).
    Tunnel(Passthrough),
    /// The authority matches, the ClientHello is incomplete: read more and decide again.
    WaitForHello,
    /// Terminate TLS with a leaf for `leaf_host`: the SNI when the client sent one, else the
    /// CONNECT host (an IP literal there means an IP SAN). The upstream leg uses the CONNECT
    /// host, which the egress policy judged.
    Intercept {
        /// The name (or IP literal) the minted certificate is for.
        leaf_host: &'a str,
    },
}

/// Whether the CONNECT host `host` (as `Authority::host()` gives it) matches `patterns`: a
/// name by the name rules, an IP literal (any spelling [`parse_host`] accepts, IPv4-mapped
/// canonicalised) by the address blocks. `*` matches both.
pub fn matches(patterns: &HostPatterns, host: &str) -> bool {
    match parse_host(host) {
        HostKind::Name => patterns.matches_name(host),
        HostKind::Ip(ip) => patterns.matches_ip(canonical(ip)),
        HostKind::InvalidIp => false,
    }
}

/// The decision for a tunnel to `host`, given the ClientHello read so far ([`ClientHello::NeedMore`]
/// before anything was read). Checks the patterns first, so a tunnel that is not to be
/// intercepted never waits for the client's first bytes.
pub fn decide<'a>(patterns: &HostPatterns, host: &'a str, hello: &'a ClientHello) -> Decision<'a> {
    if !matches(patterns, host) {
        return Decision::Tunnel(Passthrough::NotMatched);
    }
    let hello = match hello {
        ClientHello::NotTls => return Decision::Tunnel(Passthrough::NotTls),
        ClientHello::NeedMore => return Decision::WaitForHello,
        ClientHello::Hello(h) => h,
    };
    if hello.ech
        && hello
            .sni
            .as_ref()
            .is_some_and(|sni| !names_host(sni.as_str(), host))
    {
        return Decision::Tunnel(Passthrough::Ech);
    }
    if !hello.alpn.allows_http11() {
        return Decision::Tunnel(Passthrough::NoHttp11);
    }
    let leaf_host = match &hello.sni {
        Some(name) => name.as_str(),
        None => host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host),
    };
    Decision::Intercept { leaf_host }
}

/// Whether the server name `sni` (lowercased, no trailing dot) is the CONNECT host `host`
/// (any case, one trailing dot ignored).
fn names_host(sni: &str, host: &str) -> bool {
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case(sni)
}

/// The port an intercepted (https) request means when its `Host` names none.
pub const HTTPS_PORT: u16 = 443;

/// Whether the `Host` field value `host` of a request inside an intercepted tunnel names the
/// tunnel's CONNECT authority `pinned`: the same name (case-insensitive, one trailing dot
/// ignored) or the same address (any spelling [`parse_host`] accepts, IPv4-mapped
/// canonicalised), and the same port (443 when none is given). Surrounding spaces and tabs
/// are ignored (field values may carry them).
pub fn check_pinned(pinned: &Authority, host: &[u8]) -> Result<(), Problem> {
    let host = trim_ows(host);
    let (name, port) = split_host_port(host).ok_or(Problem::InvalidHost)?;
    let port = match port {
        None => HTTPS_PORT,
        Some(p) => p,
    };
    let name = core::str::from_utf8(name).map_err(|_| Problem::InvalidHost)?;
    let same_host = match (parse_host(name), parse_host(pinned.host())) {
        (HostKind::InvalidIp, _) => return Err(Problem::InvalidHost),
        (HostKind::Ip(a), HostKind::Ip(b)) => canonical(a) == canonical(b),
        (HostKind::Name, HostKind::Name) => {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return Err(Problem::InvalidHost);
            }
            let strip = |h: &'_ str| -> usize { h.strip_suffix('.').unwrap_or(h).len() };
            let (a, b) = (&name[..strip(name)], &pinned.host()[..strip(pinned.host())]);
            a.eq_ignore_ascii_case(b)
        }
        _ => false,
    };
    if same_host && port == pinned.port() {
        Ok(())
    } else {
        Err(Problem::MisdirectedRequest)
    }
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (host without brackets, port). An empty port
/// (`host:`) is the default, as RFC 3986 §3.2.3 allows.
fn split_host_port(v: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if let Some(rest) = v.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let after = &rest[close + 1..];
        let port = match after {
            [] => None,
            [b':', p @ ..] => Some(p),
            _ => return None,
        };
        (&rest[..close], port)
    } else {
        match v.iter().position(|&b| b == b':') {
            None => (v, None),
            Some(i) => (&v[..i], Some(&v[i + 1..])),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some([]) => None,
        Some(p) if p.len() <= 5 && p.iter().all(u8::is_ascii_digit) => {
            let n = p.iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0'));
            Some(u16::try_from(n).ok().filter(|&n| n > 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// Routes a request read from the plaintext of an intercepted tunnel pinned to `pinned` (the
/// CONNECT authority, already admitted, authenticated and judged by the egress policy when
/// the tunnel was opened; the policy judges the dial again as for any request).
///
/// Origin-form (`GET /path`) is what clients send inside; absolute-form
/// (`GET https://host/path`) is accepted when it names `pinned` (RFC 9112 §3.2.2). Either
/// way the `Host` must name `pinned` ([`check_pinned`]), else 421. A nested CONNECT and
/// `OPTIONS *` are refused (400): there is no proxy inside the tunnel to ask. A `Via` naming
/// us is a loop, as outside.
pub fn route<'b>(req: &RequestHead<'_, 'b>, pinned: &Authority) -> Route<'b> {
    if req.looped {
        return Route::Reject(Problem::ForwardingLoop);
    }
    if req.is_connect() {
        return Route::Reject(Problem::MisdirectedRequest);
    }
    let path_and_query = match req.target.first() {
        Some(b'/') => req.target,
        Some(_) => match strip_https(req.target) {
            Some((authority, rest)) => {
                if let Err(p) = check_pinned(pinned, authority) {
                    return Route::Reject(p);
                }
                rest
            }
            None => return Route::Reject(Problem::BadTarget),
        },
        None => return Route::Reject(Problem::BadTarget),
    };
    if !req.host_valid {
        return Route::Reject(Problem::InvalidHost);
    }
    match req.host() {
        Some(host) => {
            if let Err(p) = check_pinned(pinned, host) {
                return Route::Reject(p);
            }
        }
        None if req.minor_version >= 1 => return Route::Reject(Problem::MissingHost),
        None => {}
    }
    if req.max_forwards_reached() {
        return Route::Answer(if req.method == "TRACE" {
            LocalAnswer::Trace
        } else {
            LocalAnswer::Options
        });
    }
    Route::Forward(AbsoluteTarget {
        authority: pinned.clone(),
        path_and_query,
    })
}

/// `https://authority/rest` → (authority, rest); `None` for any other scheme or a fragment.
fn strip_https(target: &[u8]) -> Option<(&[u8], &[u8])> {
    const SCHEME: &[u8] = b"https://";
    if target.len() < SCHEME.len() || !target[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &target[SCHEME.len()..];
    if rest.contains(&b'#') || rest.contains(&b'@') {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    Some(rest.split_at(end))
}
