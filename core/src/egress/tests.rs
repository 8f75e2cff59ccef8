//! Unit tests of the egress policy: the classification table edge by edge, the host-literal
//! vectors, the pattern grammar, the range rules, and a differential property of the fast
//! pattern matcher against a naive one.

use super::*;
use crate::fuzzing::naive_matches_name;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use Reason::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad test address {s}"))
}

fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("bad test socket address {s}"))
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

/// Every IPv4 range: first and last address, and the addresses just outside.
const V4_TABLE: &[(&str, Option<Reason>)] = &[
    ("0.0.0.0", Some(DestUnspecified)),
    ("0.255.255.255", Some(DestUnspecified)),
    ("1.0.0.0", None),
    ("1.1.1.1", None),
    ("8.8.8.8", None),
    ("9.255.255.255", None),
    ("10.0.0.0", Some(DestPrivate)),
    ("10.255.255.255", Some(DestPrivate)),
    ("11.0.0.0", None),
    ("100.63.255.255", None),
    ("100.64.0.0", Some(DestPrivate)),
    ("100.127.255.255", Some(DestPrivate)),
    ("100.128.0.0", None),
    ("126.255.255.255", None),
    ("127.0.0.0", Some(DestLoopback)),
    ("127.0.0.1", Some(DestLoopback)),
    ("127.255.255.255", Some(DestLoopback)),
    ("128.0.0.0", None),
    ("169.253.255.255", None),
    ("169.254.0.0", Some(DestLinkLocal)),
    ("169.254.169.254", Some(DestLinkLocal)),
    ("169.254.255.255", Some(DestLinkLocal)),
    ("169.255.0.0", None),
    ("172.15.255.255", None),
    ("172.16.0.0", Some(DestPrivate)),
    ("172.31.255.255", Some(DestPrivate)),
    ("172.32.0.0", None),
    ("191.255.255.255", None),
    ("192.0.0.0", Some(DestReserved)),
    ("192.0.0.255", Some(DestReserved)),
    ("192.0.1.0", None),
    ("192.0.1.255", None),
    ("192.0.2.0", Some(DestDocumentation)),
    ("192.0.2.255", Some(DestDocumentation)),
    ("192.0.3.0", None),
    ("192.167.255.255", None),
    ("192.168.0.0", Some(DestPrivate)),
    ("192.168.255.255", Some(DestPrivate)),
    ("192.169.0.0", None),
    ("198.17.255.255", None),
    ("198.18.0.0", Some(DestReserved)),
    ("198.19.255.255", Some(DestReserved)),
    ("198.20.0.0", None),
    ("198.51.99.255", None),
    ("198.51.100.0", Some(DestDocumentation)),
    ("198.51.100.255", Some(DestDocumentation)),
    ("198.51.101.0", None),
    ("203.0.112.255", None),
    ("203.0.113.0", Some(DestDocumentation)),
    ("203.0.113.255", Some(DestDocumentation)),
    ("203.0.114.0", None),
    ("223.255.255.255", None),
    ("224.0.0.0", Some(DestMulticast)),
    ("239.255.255.255", Some(DestMulticast)),
    ("240.0.0.0", Some(DestReserved)),
    ("255.255.255.254", Some(DestReserved)),
    ("255.255.255.255", Some(DestBroadcast)),
];

/// Every IPv6 range: first and last address, the addresses just outside, and the embedding
/// forms written the way an attacker would.
const V6_TABLE: &[(&str, Option<Reason>)] = &[
    ("::", Some(DestUnspecified)),
    ("::1", Some(DestLoopback)),
    ("::2", Some(DestIpv4Embedded)),
    ("::127.0.0.1", Some(DestIpv4Embedded)),
    ("::169.254.169.254", Some(DestIpv4Embedded)),
    ("::255.255.255.255", Some(DestIpv4Embedded)),
    ("::1:0:0", None),
    ("::fffe:ffff:ffff", None),
    // ::ffff:0:0/96 is judged as IPv4 (more in `ipv4_mapped_is_judged_as_ipv4`).
    ("::ffff:0:0", Some(DestUnspecified)),
    ("::ffff:127.0.0.1", Some(DestLoopback)),
    ("::ffff:8.8.8.8", None),
    ("::ffff:255.255.255.255", Some(DestBroadcast)),
    ("::1:0:0:0", None),
    ("::fffe:ffff:ffff:ffff", None),
    ("::ffff:0:0:0", Some(DestIpv4Embedded)),
    ("::ffff:0:7f00:1", Some(DestIpv4Embedded)),
    ("::ffff:0:ffff:ffff", Some(DestIpv4Embedded)),
    ("::ffff:1:0:0", None),
    ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("64:ff9b::", Some(DestIpv4Embedded)),
    ("64:ff9b::127.0.0.1", Some(DestIpv4Embedded)),
    ("64:ff9b::ffff:ffff", Some(DestIpv4Embedded)),
    ("64:ff9b::1:0:0", None),
    ("64:ff9b:0:ffff:ffff:ffff:ffff:ffff", None),
    ("64:ff9b:1::", Some(DestIpv4Embedded)),
    ("64:ff9b:1::a9fe:a9fe", Some(DestIpv4Embedded)),
    ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Some(DestIpv4Embedded)),
    ("64:ff9b:2::", None),
    ("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("100::", Some(DestReserved)),
    ("100::ffff:ffff:ffff:ffff", Some(DestReserved)),
    ("100:0:0:1::", None),
    ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("2001::", Some(DestIpv4Embedded)),
    (
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        Some(DestIpv4Embedded),
    ),
    (
        "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(DestIpv4Embedded),
    ),
    ("2001:1::", None),
    ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("2001:db8::", Some(DestDocumentation)),
    (
        "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(DestDocumentation),
    ),
    ("2001:db9::", None),
    ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("2002::", Some(DestIpv4Embedded)),
    ("2002:7f00:1::", Some(DestIpv4Embedded)),
    (
        "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(DestIpv4Embedded),
    ),
    ("2003::", None),
    ("2606:4700:4700::1111", None),
    ("2a00:1450:4001::1", None),
    ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("3fff::", Some(DestDocumentation)),
    (
        "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(DestDocumentation),
    ),
    ("3fff:1000::", None),
    ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("fc00::", Some(DestPrivate)),
    ("fd00:ec2::254", Some(DestPrivate)),
    ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(DestPrivate)),
    ("fe00::", None),
    ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("fe80::", Some(DestLinkLocal)),
    (
        "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(DestLinkLocal),
    ),
    ("fec0::", Some(DestReserved)),
    (
        "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(DestReserved),
    ),
    ("ff00::", Some(DestMulticast)),
    ("ff02::1", Some(DestMulticast)),
    (
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        Some(DestMulticast),
    ),
];

#[test]
fn classify_addr() {
    for &(addr, want) in V4_TABLE.iter().chain(V6_TABLE) {
        assert_eq!(classify(ip(addr)), want, "{addr}");
    }
}

#[test]
fn ipv4_mapped_is_judged_as_ipv4() {
    for &(addr, want) in V4_TABLE {
        let v4: Ipv4Addr = addr.parse().unwrap();
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert_eq!(classify(mapped), want, "::ffff:{addr}");
        assert_eq!(canonical(mapped), IpAddr::V4(v4));
    }
    // `Ipv6Addr::is_loopback` says no; the guard must not.
    assert!(!ip("::ffff:127.0.0.1").is_loopback());
    assert_eq!(classify(ip("::ffff:7f00:1")), Some(DestLoopback));
}

#[test]
fn reason_words_are_distinct_and_snake_case() {
    assert_eq!(Reason::ALL.len(), 14);
    for (i, r) in Reason::ALL.iter().enumerate() {
        let w = r.log_word();
        assert!(
            w.starts_with("dest_")
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
        assert_eq!(r.to_string(), w);
        for other in &Reason::ALL[i + 1..] {
            assert_ne!(w, other.log_word());
        }
    }
    assert_eq!(DestLoopback.log_word(), "dest_loopback");
    assert_eq!(DestIpv4Embedded.log_word(), "dest_ipv4_embedded");
    assert_eq!(
        format!(
            "destination 127.0.0.1 is {}; allow it with {}",
            DestLoopback.what(),
            DestLoopback.remedy().unwrap()
        ),
        "destination 127.0.0.1 is loopback; allow it with --allow-range"
    );
    assert_eq!(DestPrivate.remedy(), Some("--allow-private"));
    assert_eq!(DestNotAllowed.remedy(), Some("--allow-domain"));
    for r in [DestSelf, DestOwnService, DestDeniedRange, DestDomain] {
        assert_eq!(r.remedy(), None, "{r}");
    }
    assert!(DestLoopback.is_address_rule() && DestDeniedRange.is_address_rule());
    assert!(!DestDomain.is_address_rule() && !DestNotAllowed.is_address_rule());
}

#[test]
fn parse_host_vectors() {
    let v4 = |a, b, c, d| HostKind::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    let cases: &[(&str, HostKind)] = &[
        ("127.0.0.1", v4(127, 0, 0, 1)),
        ("127.1", v4(127, 0, 0, 1)),
        ("127.0.1", v4(127, 0, 0, 1)),
        ("2130706433", v4(127, 0, 0, 1)),
        ("0x7f000001", v4(127, 0, 0, 1)),
        ("0X7F000001", v4(127, 0, 0, 1)),
        ("0177.0.0.1", v4(127, 0, 0, 1)),
        ("0177.0.0.01", v4(127, 0, 0, 1)),
        ("127.0.0.1.", v4(127, 0, 0, 1)),
        ("0x7f.1", v4(127, 0, 0, 1)),
        ("0xa9.0xfe.0xa9.0xfe", v4(169, 254, 169, 254)),
        ("169.254.43518", v4(169, 254, 169, 254)),
        ("0", v4(0, 0, 0, 0)),
        ("0x", v4(0, 0, 0, 0)), // WHATWG: "0x" alone is the number 0
        ("4294967295", v4(255, 255, 255, 255)),
        ("255.16777215", v4(255, 255, 255, 255)),
        ("1.2.3.4.5", HostKind::InvalidIp),
        ("256.0.0.1", HostKind::InvalidIp),
        ("1.256.0.1", HostKind::InvalidIp),
        ("1.2.3.256", HostKind::InvalidIp),
        ("1.2.65536", HostKind::InvalidIp),
        ("4294967296", HostKind::InvalidIp),
        ("99999999999999999999999", HostKind::InvalidIp),
        ("0x100000000", HostKind::InvalidIp),
        ("0xffffffffffffffffffff", HostKind::InvalidIp),
        ("09", HostKind::InvalidIp),
        ("08.1", HostKind::InvalidIp),
        ("0x1g", HostKind::Name), // last label neither digits nor 0x+hex: a name (WHATWG too)
        ("1.0x1g", HostKind::Name),
        ("example.1", HostKind::InvalidIp),
        ("example.0x1", HostKind::InvalidIp),
        ("1.2.3.4..", HostKind::Name), // two trailing dots: the last label is empty
        ("example.com", HostKind::Name),
        ("example.com.", HostKind::Name),
        ("1.example", HostKind::Name),
        ("localhost", HostKind::Name),
        ("1a", HostKind::Name),
        ("", HostKind::Name),
        ("::1", HostKind::Ip(ip("::1"))),
        ("[::1]", HostKind::Ip(ip("::1"))),
        (
            "::ffff:127.0.0.1",
            HostKind::Ip(IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x7f00, 1))),
        ),
        ("::1%eth0", HostKind::InvalidIp),
        (":::", HostKind::InvalidIp),
    ];
    for (host, want) in cases {
        assert_eq!(parse_host(host), *want, "{host:?}");
    }
}

#[test]
fn legacy_spellings_of_loopback_are_refused_as_loopback() {
    let p = EgressPolicy::default();
    for host in [
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.0.0.1.",
    ] {
        let HostKind::Ip(ip) = parse_host(host) else {
            panic!("{host} is an IP literal")
        };
        assert_eq!(
            p.judge_ip_target(SocketAddr::new(ip, 80)),
            Err(DestLoopback),
            "{host}"
        );
    }
}

fn patterns(list: &[&str]) -> HostPatterns {
    let mut p = HostPatterns::new();
    for pat in list {
        p.add(pat).unwrap_or_else(|e| panic!("{pat}: {e}"));
    }
    p
}

#[test]
fn pattern_grammar() {
    let p = patterns(&[
        "example.com",
        "*.corp.example",
        "Mixed.CASE.org.",
        "xn--bcher-kva.example",
    ]);
    assert_eq!(p.len(), 4);
    assert!(p.has_names());
    for (host, want) in [
        ("example.com", true),
        ("EXAMPLE.com", true),
        ("example.com.", true),
        ("www.example.com", false),
        ("example.co", false),
        ("xample.com", false),
        ("aexample.com", false),
        ("corp.example", false),
        ("a.corp.example", true),
        ("a.b.c.corp.example", true),
        ("A.Corp.Example.", true),
        ("acorp.example", false),
        (".corp.example", false),
        ("mixed.case.org", true),
        ("xn--bcher-kva.example", true),
        ("bücher.example", false),
        ("", false),
        (".", false),
        ("com", false),
    ] {
        assert_eq!(p.matches_name(host), want, "{host:?}");
    }
    assert!(!p.matches_ip(ip("127.0.0.1")));

    let all = patterns(&["*"]);
    assert!(all.matches_name("anything.at.all") && all.matches_ip(ip("::1")));
    assert_eq!(all.len(), 1);

    let ips = patterns(&[
        "10.0.0.0/8",
        "::ffff:192.168.0.0/112",
        "2001:db8::1",
        "127.1",
        "[::2]",
    ]);
    assert!(!ips.has_names());
    assert_eq!(ips.len(), 5);
    for (addr, want) in [
        ("10.1.2.3", true),
        ("::ffff:10.1.2.3", true),
        ("11.0.0.0", false),
        ("192.168.7.7", true),
        ("192.169.0.0", false),
        ("2001:db8::1", true),
        ("2001:db8::2", false),
        ("127.0.0.1", true),
        ("::2", true),
    ] {
        assert_eq!(ips.matches_ip(ip(addr)), want, "{addr}");
    }
    assert!(!ips.matches_name("10.1.2.3"));
}

#[test]
fn pattern_errors() {
    let mut p = HostPatterns::new();
    for bad in [
        "",
        "  ",
        "*.",
        "**",
        "*example.com",
        "foo.*.com",
        "example.*",
        "a..b",
        ".example.com",
        "example.com..",
        "exa mple.com",
        "ex/ample",
        "1.2.3.4.5",
        "256.1.1.1",
        "example.1",
        "*.1.2.3",
        "*.example.1",
        "10.0.0.0/33",
        "10.0.0.0/",
        "bücher.example",
        "a@b",
    ] {
        assert!(p.add(bad).is_err(), "{bad:?} accepted");
    }
    let long_label = "a".repeat(64);
    assert!(p.add(&long_label).is_err());
    assert!(p.add(&"a".repeat(63)).is_ok());
    let long_name = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62),
    ]
    .join(".");
    assert_eq!(long_name.len(), 254);
    assert!(p.add(&long_name).is_err());
    assert!(p.add(&long_name[1..]).is_ok());
    assert_eq!(p.len(), 2);
    assert_eq!(
        p.add("foo.*.com").unwrap_err().to_string(),
        "`*` may only stand alone or start a pattern as `*.`"
    );
}

#[test]
fn add_lines_reads_a_blocklist_file() {
    let mut p = HostPatterns::new();
    let file = "# blocklist\n\nads.example\n  *.tracker.example  # trailing comment\r\nADS.example\n10.0.0.0/8\n";
    assert_eq!(p.add_lines(file), Ok(4));
    assert_eq!(p.len(), 3, "the duplicate (case-insensitively) counts once");
    assert!(p.matches_name("ads.example") && p.matches_name("x.tracker.example"));
    assert!(p.matches_ip(ip("10.9.9.9")));
    let err = p.add_lines("ok.example\n\n# c\nbad..example\nlater.example\n");
    assert_eq!(err.map_err(|(line, _)| line), Err(4));
    assert!(p.matches_name("ok.example") && !p.matches_name("later.example"));
}

#[test]
fn patterns_grow_past_many_table_sizes() {
    let mut p = HostPatterns::new();
    for i in 0..5000 {
        p.add(&format!("host{i}.example")).unwrap();
        p.add(&format!("*.zone{i}.example")).unwrap();
    }
    assert_eq!(p.len(), 10_000);
    for i in 0..5000 {
        assert!(p.matches_name(&format!("host{i}.example")));
        assert!(!p.matches_name(&format!("a.host{i}.example")));
        assert!(p.matches_name(&format!("a.zone{i}.example")));
        assert!(!p.matches_name(&format!("zone{i}.example")));
    }
    assert!(!p.matches_name("host5000.example"));
}

/// A small deterministic generator (xorshift), so the property needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Names over a tiny alphabet so that patterns and hosts collide often.
fn random_name(rng: &mut Rng) -> String {
    const LABELS: &[&str] = &["a", "b", "ab", "A", "x-y", "com", "co", "_s", "b.a"];
    let n = 1 + rng.below(4);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push('.');
        }
        s.push_str(LABELS[rng.below(LABELS.len())]);
    }
    s
}

#[test]
fn fast_matcher_agrees_with_naive_reference() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let mut list = Vec::new();
        let mut set = HostPatterns::new();
        for _ in 0..rng.below(12) {
            let mut pat = match rng.below(8) {
                0 => String::from("*"),
                1..=3 => format!("*.{}", random_name(&mut rng)),
                _ => random_name(&mut rng),
            };
            if pat != "*" && rng.below(4) == 0 {
                pat.push('.');
            }
            set.add(&pat).unwrap();
            list.push(pat);
        }
        for _ in 0..40 {
            let mut host = random_name(&mut rng);
            if rng.below(4) == 0 {
                host = format!("{}.{host}", random_name(&mut rng));
            }
            if rng.below(5) == 0 {
                host.push('.');
            }
            if rng.below(8) == 0 {
                host.insert(0, '.');
            }
            assert_eq!(
                set.matches_name(&host),
                naive_matches_name(&list.iter().map(String::as_str).collect::<Vec<_>>(), &host),
                "{host:?} against {list:?}"
            );
        }
    }
}

#[test]
fn range_rules_longest_prefix_wins_and_deny_wins_a_tie() {
    let mut p = EgressPolicy::default();
    p.allow_range(cidr("127.0.0.0/8"));
    p.deny_range(cidr("127.0.0.2/32"));
    assert_eq!(p.judge_addr(sa("127.0.0.1:80")), Ok(()));
    assert_eq!(p.judge_addr(sa("127.0.0.2:80")), Err(DestDeniedRange));
    assert_eq!(p.judge_addr(sa("127.0.0.3:80")), Ok(()));
    assert_eq!(
        p.judge_addr(sa("[::ffff:127.0.0.2]:80")),
        Err(DestDeniedRange)
    );
    assert_eq!(p.judge_addr(sa("[::ffff:127.0.0.1]:80")), Ok(()));
    assert_eq!(p.judge_addr(sa("[::1]:80")), Err(DestLoopback));

    // A tie: deny wins, whatever the order of the flags.
    let mut tie = EgressPolicy::default();
    tie.deny_range(cidr("10.0.0.0/8"));
    tie.allow_range(cidr("10.0.0.0/8"));
    assert_eq!(tie.judge_addr(sa("10.1.1.1:80")), Err(DestDeniedRange));
    // A longer allow inside a deny re-opens it.
    tie.allow_range(cidr("10.1.0.0/16"));
    assert_eq!(tie.judge_addr(sa("10.1.1.1:80")), Ok(()));
    assert_eq!(tie.judge_addr(sa("10.2.1.1:80")), Err(DestDeniedRange));

    // A deny range also refuses global addresses.
    let mut deny = EgressPolicy::default();
    deny.deny_range(cidr("8.8.8.0/24"));
    assert_eq!(deny.judge_addr(sa("8.8.8.8:443")), Err(DestDeniedRange));
    assert_eq!(deny.judge_addr(sa("8.8.4.4:443")), Ok(()));

    // IPv4-mapped ranges are IPv4 ranges; all of IPv6 does not open IPv4.
    let mut v6 = EgressPolicy::default();
    v6.allow_range(cidr("::/0"));
    assert_eq!(v6.judge_addr(sa("[::1]:80")), Ok(()));
    assert_eq!(v6.judge_addr(sa("127.0.0.1:80")), Err(DestLoopback));
    assert_eq!(
        v6.judge_addr(sa("[::ffff:127.0.0.1]:80")),
        Err(DestLoopback)
    );
    let mut mapped = EgressPolicy::default();
    mapped.allow_range(cidr("::ffff:127.0.0.0/104"));
    assert_eq!(mapped.judge_addr(sa("127.0.0.9:80")), Ok(()));

    // An allow range is an exception to every built-in refusal, embedded forms included.
    let mut embedded = EgressPolicy::default();
    embedded.allow_range(cidr("64:ff9b::/96"));
    assert_eq!(embedded.judge_addr(sa("[64:ff9b::808:808]:443")), Ok(()));
}

#[test]
fn allow_private_opens_private_and_cgnat_only() {
    let mut p = EgressPolicy::default();
    assert!(!p.allows_private());
    assert_eq!(p.judge_addr(sa("10.0.0.1:80")), Err(DestPrivate));
    p.set_allow_private(true);
    for ok in [
        "10.0.0.1:80",
        "172.16.0.1:80",
        "192.168.1.1:80",
        "100.64.0.1:80",
        "[fd00::1]:80",
    ] {
        assert_eq!(p.judge_addr(sa(ok)), Ok(()), "{ok}");
    }
    for (addr, r) in [
        ("127.0.0.1:80", DestLoopback),
        ("169.254.169.254:80", DestLinkLocal),
        ("[fe80::1]:80", DestLinkLocal),
        ("0.0.0.0:80", DestUnspecified),
        ("192.0.0.1:80", DestReserved),
        ("[::ffff:0:a00:1]:80", DestIpv4Embedded),
    ] {
        assert_eq!(p.judge_addr(sa(addr)), Err(r), "{addr}");
    }
    p.deny_range(cidr("10.9.0.0/16"));
    assert_eq!(p.judge_addr(sa("10.9.0.1:80")), Err(DestDeniedRange));
}

#[test]
fn own_listeners_are_never_allowed() {
    let mut p = EgressPolicy::default();
    p.allow_range(cidr("0.0.0.0/0"));
    p.allow_range(cidr("::/0"));
    p.set_allow_private(true);
    p.add_own_listener(sa("127.0.0.1:3128"), true);
    p.add_own_listener(sa("0.0.0.0:9090"), false);
    p.add_own_listener(sa("[::ffff:10.0.0.5]:8443"), true);
    p.add_local_address(ip("192.168.1.20"));
    for (addr, want) in [
        ("127.0.0.1:3128", Err(DestSelf)),
        ("[::ffff:127.0.0.1]:3128", Err(DestSelf)),
        ("0.0.0.0:3128", Err(DestSelf)), // connecting to 0.0.0.0 reaches this host
        ("127.0.0.2:3128", Ok(())),      // another loopback address: not our socket
        ("127.0.0.1:3129", Ok(())),
        ("127.0.0.1:9090", Err(DestOwnService)),
        ("127.9.9.9:9090", Err(DestOwnService)),
        ("[::1]:9090", Err(DestOwnService)),
        ("[::]:9090", Err(DestOwnService)),
        ("192.168.1.20:9090", Err(DestOwnService)),
        ("192.168.1.21:9090", Ok(())),
        ("10.0.0.5:8443", Err(DestSelf)),
        ("10.0.0.6:8443", Ok(())),
    ] {
        assert_eq!(p.judge_addr(sa(addr)), want, "{addr}");
        assert_eq!(p.judge_ip_target(sa(addr)), want, "{addr}");
    }
    // A proxy listener and a service on one port: the loop wins.
    p.add_own_listener(sa("127.0.0.1:9090"), true);
    assert_eq!(p.judge_addr(sa("127.0.0.1:9090")), Err(DestSelf));
}

#[test]
fn domain_rules() {
    let open = EgressPolicy::default();
    assert_eq!(open.judge_name("example.com"), Ok(()));

    let mut deny = EgressPolicy::default();
    deny.deny_domains_mut().add("*.evil.example").unwrap();
    deny.deny_domains_mut()
        .add("metadata.google.internal")
        .unwrap();
    assert_eq!(deny.judge_name("a.evil.example"), Err(DestDomain));
    assert_eq!(
        deny.judge_name("Metadata.Google.Internal."),
        Err(DestDomain)
    );
    assert_eq!(deny.judge_name("evil.example"), Ok(()));
    assert_eq!(deny.judge_name("example.com"), Ok(()));

    let mut allow = EgressPolicy::default();
    allow.allow_domains_mut().add("*.example.com").unwrap();
    allow.allow_domains_mut().add("example.com").unwrap();
    allow.deny_domains_mut().add("secret.example.com").unwrap();
    assert_eq!(allow.judge_name("example.com"), Ok(()));
    assert_eq!(allow.judge_name("www.example.com"), Ok(()));
    assert_eq!(
        allow.judge_name("secret.example.com"),
        Err(DestDomain),
        "deny beats allow"
    );
    assert_eq!(allow.judge_name("example.org"), Err(DestNotAllowed));
    // Allow-list mode: an IP literal needs an --allow-range (or an allow-domain address).
    assert_eq!(
        allow.judge_ip_target(sa("8.8.8.8:443")),
        Err(DestNotAllowed)
    );
    assert_eq!(
        allow.judge_addr(sa("8.8.8.8:443")),
        Ok(()),
        "resolved addresses of allowed names"
    );
    allow.allow_range(cidr("8.8.8.0/24"));
    assert_eq!(allow.judge_ip_target(sa("8.8.8.8:443")), Ok(()));
    allow.allow_domains_mut().add("1.1.1.1").unwrap();
    assert_eq!(allow.judge_ip_target(sa("1.1.1.1:443")), Ok(()));
    assert_eq!(
        allow.judge_ip_target(sa("1.1.1.2:443")),
        Err(DestNotAllowed)
    );
    // ...which still has to pass the built-in refusals.
    allow.allow_domains_mut().add("10.0.0.0/8").unwrap();
    assert_eq!(allow.judge_ip_target(sa("10.0.0.1:443")), Err(DestPrivate));

    // Deny-domain address patterns refuse IP literals before anything else.
    let mut deny_ip = EgressPolicy::default();
    deny_ip.allow_range(cidr("127.0.0.0/8"));
    deny_ip.deny_domains_mut().add("127.0.0.5").unwrap();
    assert_eq!(deny_ip.judge_ip_target(sa("127.0.0.5:80")), Err(DestDomain));
    assert_eq!(deny_ip.judge_ip_target(sa("127.0.0.6:80")), Ok(()));

    // `*` denies every name and every literal.
    let mut all = EgressPolicy::default();
    all.deny_domains_mut().add("*").unwrap();
    assert_eq!(all.judge_name("example.com"), Err(DestDomain));
    assert_eq!(all.judge_ip_target(sa("8.8.8.8:443")), Err(DestDomain));
}

#[test]
fn policy_default_has_the_guard_on() {
    let p = crate::Policy::default();
    assert_eq!(p.egress, EgressPolicy::default());
    assert_eq!(p.egress.judge_addr(sa("127.0.0.1:80")), Err(DestLoopback));
    assert_eq!(
        p.egress.judge_addr(sa("169.254.169.254:80")),
        Err(DestLinkLocal)
    );
    assert_eq!(p.egress.judge_addr(sa("93.184.215.14:80")), Ok(()));
    assert_eq!(p.egress.judge_name("example.com"), Ok(()));
}

#[test]
fn range_lookup_agrees_with_a_linear_scan() {
    use super::ranges::{canonical_cidr, RangeVerdict, Ranges};
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    // Addresses near a few bases, so blocks nest and collide often.
    let bases = [
        ip("10.0.0.0"),
        ip("127.0.0.1"),
        ip("::ffff:10.0.0.0"),
        ip("2001:db8::"),
        ip("::"),
    ];
    let near = |rng: &mut Rng| -> IpAddr {
        match bases[rng.below(bases.len())] {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(
                u32::from(v4) ^ (rng.next() as u32 >> rng.below(32)),
            )),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) ^ (u128::from(rng.next()) >> rng.below(64)),
            )),
        }
    };
    for _ in 0..300 {
        let mut ranges = Ranges::default();
        let mut list = Vec::new();
        for _ in 0..rng.below(40) {
            let net = near(&mut rng);
            let max = if net.is_ipv4() { 32 } else { 128 };
            let c = Cidr::new(net, (rng.below(max + 1)) as u8).unwrap();
            let allow = rng.below(2) == 0;
            ranges.add(c, allow);
            list.push((canonical_cidr(c), allow));
        }
        for _ in 0..40 {
            let a = near(&mut rng);
            let covering = |allow: bool| {
                list.iter()
                    .filter(|&&(c, al)| al == allow && c.contains(a))
                    .map(|(c, _)| i16::from(c.prefix()))
                    .max()
                    .unwrap_or(-1)
            };
            let (al, de) = (covering(true), covering(false));
            let want = if al < 0 && de < 0 {
                RangeVerdict::None
            } else if al > de {
                RangeVerdict::Allow
            } else {
                RangeVerdict::Deny
            };
            assert_eq!(ranges.judge(canonical(a)), want, "{a} in {list:?}");
        }
    }
}

#[test]
fn deny_wildcards_hold_for_overlong_hosts() {
    let p = patterns(&["*.evil.example"]);
    let long = format!("{}.evil.example", vec!["a".repeat(63); 4].join("."));
    assert!(long.len() > 253);
    assert!(p.matches_name(&long));
}

/// Nested allows and denies decide by length, not by the order the flags came in (the
/// scenario of Smokescreen's `TestMostSpecificIPPolicyRuleOrder`), and a rule written as an
/// IPv4-mapped /128 ties with the same address written as IPv4 /32.
#[test]
fn nested_ranges_decide_by_length_in_any_order() {
    for reverse in [false, true] {
        let mut allows = ["10.0.0.0/8", "10.0.0.0/24"];
        let mut denies = ["10.0.0.0/16", "10.0.0.0/25"];
        if reverse {
            allows.reverse();
            denies.reverse();
        }
        let mut p = EgressPolicy::default();
        for (a, d) in allows.iter().zip(&denies) {
            p.allow_range(cidr(a));
            p.deny_range(cidr(d));
        }
        assert_eq!(
            p.judge_addr(sa("10.0.0.5:443")),
            Err(DestDeniedRange),
            "/25 deny"
        );
        assert_eq!(p.judge_addr(sa("10.0.0.200:443")), Ok(()), "/24 allow");
        assert_eq!(
            p.judge_addr(sa("10.0.1.1:443")),
            Err(DestDeniedRange),
            "/16 deny"
        );
        assert_eq!(p.judge_addr(sa("10.1.0.1:443")), Ok(()), "/8 allow");
    }
    let mut tie = EgressPolicy::default();
    tie.allow_range(cidr("::ffff:10.0.0.5/128"));
    tie.deny_range(cidr("10.0.0.5/32"));
    assert_eq!(tie.judge_addr(sa("10.0.0.5:443")), Err(DestDeniedRange));
    assert_eq!(
        tie.judge_addr(sa("[::ffff:10.0.0.5]:443")),
        Err(DestDeniedRange)
    );
}

/// Every legacy spelling of a random address parses to that address: 1 to 4 parts, each
/// part decimal, hex or octal, with and without the trailing dot.
#[test]
fn every_ipv4_spelling_parses_to_the_same_address() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let spell = |rng: &mut Rng, n: u32| match rng.below(3) {
        0 => format!("{n}"),
        1 => format!("0x{n:x}"),
        _ => format!("0{n:o}"),
    };
    for _ in 0..2000 {
        let a = rng.next() as u32;
        let b = a.to_be_bytes();
        let parts: [Vec<u32>; 4] = [
            vec![a],
            vec![u32::from(b[0]), a & 0x00ff_ffff],
            vec![u32::from(b[0]), u32::from(b[1]), a & 0xffff],
            b.iter().map(|&x| u32::from(x)).collect(),
        ];
        for p in &parts {
            let mut host = p
                .iter()
                .map(|&n| spell(&mut rng, n))
                .collect::<Vec<_>>()
                .join(".");
            if rng.below(4) == 0 {
                host.push('.');
            }
            assert_eq!(
                parse_host(&host),
                HostKind::Ip(IpAddr::V4(Ipv4Addr::from(a))),
                "{host}"
            );
        }
        // A last part of four past 255 is never an address.
        let over = format!("{}.{}.{}.{}", b[0], b[1], b[2], 256 + u32::from(b[3]));
        assert_eq!(parse_host(&over), HostKind::InvalidIp, "{over}");
    }
}
