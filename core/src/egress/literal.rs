//! What the host of a request target is: a name to resolve, an IP literal, or an address in a
//! spelling that must be refused.
//!
//! Browsers (the WHATWG URL standard's IPv4 parser), `inet_aton` and so `getaddrinfo` accept
//! IPv4 addresses in legacy spellings: `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`. If
//! the proxy took those for names, a resolver would turn them into loopback after the domain
//! rules had passed them as "names". [`parse_host`] follows the WHATWG parser exactly, so such
//! a host is an IP literal, judged before any resolution; a host that looks like a number but
//! is not a valid address (`1.2.3.4.5`, `256.0.0.1`, `example.1`) is [`HostKind::InvalidIp`],
//! which the core answers with 400 rather than letting a resolver guess.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a host string in a request target is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// A host name: domain rules, then DNS.
    Name,
    /// An IP literal, IPv4 in any legacy spelling canonicalised; IPv6 as written (an
    /// IPv4-mapped one stays IPv6 here, [`classify`](super::classify) maps it).
    Ip(IpAddr),
    /// Ends in a number (WHATWG URL "ends in a number") but is no valid IPv4 address, or
    /// contains `:` but is no valid IPv6 address.
    InvalidIp,
}

/// Classifies a host as `Authority::host()` gives it (IPv6 without brackets; brackets are
/// accepted too). IPv4: 1 to 4 dot-separated parts, each decimal, `0x`/`0X` hex or leading-`0`
/// octal, the last part filling the remaining bytes, one trailing dot allowed.
pub fn parse_host(host: &str) -> HostKind {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if unbracketed.contains(':') {
        return match unbracketed.parse::<Ipv6Addr>() {
            Ok(v6) => HostKind::Ip(IpAddr::V6(v6)),
            Err(_) => HostKind::InvalidIp,
        };
    }
    if !ends_in_a_number(host) {
        return HostKind::Name;
    }
    match parse_ipv4(host) {
        Some(v4) => HostKind::Ip(IpAddr::V4(v4)),
        None => HostKind::InvalidIp,
    }
}

/// Without its one allowed trailing dot (a lone `.` stays).
fn strip_trailing_dot(host: &str) -> &str {
    match host.strip_suffix('.') {
        Some(rest) if !rest.is_empty() => rest,
        _ => host,
    }
}

/// WHATWG URL "ends in a number checker": the last label (after one trailing dot) is all
/// digits, or `0x`/`0X` followed by hex digits.
fn ends_in_a_number(host: &str) -> bool {
    if host.is_empty() || host == "." {
        return false;
    }
    let host = strip_trailing_dot(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// WHATWG URL "IPv4 parser". `None` is failure.
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = strip_trailing_dot(host);
    let mut numbers = [0u64; 4];
    let mut count = 0;
    for part in host.split('.') {
        if count == 4 {
            return None;
        }
        numbers[count] = ipv4_number(part)?;
        count += 1;
    }
    let (last, leading) = (numbers[count - 1], &numbers[..count - 1]);
    if leading.iter().any(|&n| n > 255) {
        return None;
    }
    // The last part fills the bytes the others left: 4 parts -> 1 byte, 1 part -> 4 bytes.
    let room = 8 * (5 - count as u32);
    if room < 64 && last >> room != 0 {
        return None;
    }
    let mut value = last;
    for (i, &n) in leading.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// WHATWG URL "IPv4 number parser": decimal, `0x`/`0X` hex (`0x` alone is 0), leading-`0`
/// octal. Values beyond `u32::MAX` are failure too: no valid address can hold them.
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let bytes = part.as_bytes();
    let (digits, radix) = if bytes.len() >= 2 && (bytes[..2] == *b"0x" || bytes[..2] == *b"0X") {
        (&bytes[2..], 16)
    } else if bytes.len() >= 2 && bytes[0] == b'0' {
        (&bytes[1..], 8)
    } else {
        (bytes, 10)
    };
    let mut value: u64 = 0;
    for &b in digits {
        let d = char::from(b).to_digit(radix)?;
        value = value * u64::from(radix) + u64::from(d);
        if value > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(value)
}
