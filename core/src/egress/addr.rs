//! Which addresses are not globally reachable: the built-in refusals of the egress guard.
//!
//! [`classify`] is one function over a table of ranges (IANA's special-purpose registries,
//! RFC 6890 and successors), so a test can walk every edge of every range. It cannot fail: an
//! address is either global (`None`) or refused with the [`Reason`] naming its range.
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack resolver or socket may
//! report) are judged as the IPv4 address inside; the other IPv6 forms that carry an IPv4
//! address (compatible, NAT64, 6to4, Teredo) are refused outright, since whatever translates
//! them could deliver the packet to an internal IPv4 host.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Reason;

/// IPv4 ranges as `(network, prefix, reason)`, most specific first where they nest
/// (255.255.255.255 inside 240/4).
const V4: &[(u32, u8, Reason)] = &[
    (0xffff_ffff, 32, Reason::DestBroadcast),
    (0x0000_0000, 8, Reason::DestUnspecified),
    (0x0a00_0000, 8, Reason::DestPrivate),
    (0x6440_0000, 10, Reason::DestPrivate), // 100.64/10, shared address space (CGNAT)
    (0x7f00_0000, 8, Reason::DestLoopback),
    (0xa9fe_0000, 16, Reason::DestLinkLocal),
    (0xac10_0000, 12, Reason::DestPrivate),
    (0xc000_0000, 24, Reason::DestReserved), // 192.0.0.0/24, IETF protocol assignments
    (0xc000_0200, 24, Reason::DestDocumentation), // TEST-NET-1
    (0xc0a8_0000, 16, Reason::DestPrivate),
    (0xc612_0000, 15, Reason::DestReserved), // 198.18/15, benchmarking
    (0xc633_6400, 24, Reason::DestDocumentation), // TEST-NET-2
    (0xcb00_7100, 24, Reason::DestDocumentation), // TEST-NET-3
    (0xe000_0000, 4, Reason::DestMulticast),
    (0xf000_0000, 4, Reason::DestReserved),
];

/// IPv6 ranges as `(network, prefix, reason)`, most specific first where they nest (`::`
/// and `::1` inside `::/96`, `2001:db8::/32` is not inside `2001::/32` but sits next to it).
/// `::ffff:0:0/96` is not here: [`classify`] maps it to IPv4 first.
const V6: &[(u128, u8, Reason)] = &[
    (0, 128, Reason::DestUnspecified),
    (1, 128, Reason::DestLoopback),
    (0, 96, Reason::DestIpv4Embedded), // IPv4-compatible (deprecated)
    (0xffff_0000_0000_0000, 96, Reason::DestIpv4Embedded), // IPv4-translated (SIIT, RFC 2765)
    (
        0x0064_ff9b_0000_0000_0000_0000_0000_0000,
        96,
        Reason::DestIpv4Embedded,
    ), // NAT64
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        Reason::DestIpv4Embedded,
    ), // local NAT64
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        Reason::DestReserved,
    ), // discard-only
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        32,
        Reason::DestIpv4Embedded,
    ), // Teredo
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        Reason::DestDocumentation,
    ),
    (
        0x2002_0000_0000_0000_0000_0000_0000_0000,
        16,
        Reason::DestIpv4Embedded,
    ), // 6to4
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        Reason::DestDocumentation,
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        Reason::DestPrivate,
    ), // unique local
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        Reason::DestLinkLocal,
    ),
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        Reason::DestReserved,
    ), // site-local
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        Reason::DestMulticast,
    ),
];

/// Built-in refusal of an address that is not globally reachable: `None` means global.
/// IPv4-mapped `::ffff:a.b.c.d` is judged as the IPv4 address inside.
pub fn classify(ip: IpAddr) -> Option<Reason> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Reason> {
    let a = u32::from(ip);
    V4.iter()
        .find(|&&(net, prefix, _)| a & mask32(prefix) == net)
        .map(|&(_, _, r)| r)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Reason> {
    let a = u128::from(ip);
    V6.iter()
        .find(|&&(net, prefix, _)| a & mask128(prefix) == net)
        .map(|&(_, _, r)| r)
}

/// The address every comparison uses: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes the IPv4
/// address inside; everything else is unchanged. (`::a.b.c.d`, IPv4-compatible, is *not*
/// mapped: it is a distinct, refused form.)
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}
