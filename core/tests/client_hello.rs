//! ClientHello parser vectors from real clients (`tests/data/client_hello/`, see its README),
//! each run whole, cut at every byte (every prefix must be `NeedMore`), fed with trailing bytes,
//! and corrupted length by length; plus the intercept decision over them.

use ringway_core::client_hello::{parse, Alpn, ClientHello, Hello, MAX_CLIENT_HELLO};
use ringway_core::egress::HostPatterns;
use ringway_core::intercept::{check_pinned, decide, matches, Decision, Passthrough};
use ringway_core::target::Authority;
use ringway_core::Problem;

macro_rules! capture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("data/client_hello/", $name, ".bin")).as_slice(),
        )
    };
}

const CAPTURES: &[(&str, &[u8])] = &[
    capture!("curl_sni"),
    capture!("curl_h2"),
    capture!("curl_ip"),
    capture!("python_sni"),
    capture!("openssl_tls12"),
    capture!("openssl_nosni"),
    capture!("node_sni"),
    capture!("chromium"),
    capture!("ech"),
    capture!("fragmented"),
];

fn capture(name: &str) -> &'static [u8] {
    CAPTURES.iter().find(|(n, _)| *n == name).unwrap().1
}

const H11: Alpn = Alpn {
    offered: true,
    http11: true,
    h2: false,
    count: 1,
};
const H2_H11: Alpn = Alpn {
    offered: true,
    http11: true,
    h2: true,
    count: 2,
};
const NONE: Alpn = Alpn {
    offered: false,
    http11: false,
    h2: false,
    count: 0,
};

/// `(capture, SNI, ALPN, ECH)`: what each client sent (see the README's table).
const EXPECTED: &[(&str, Option<&str>, Alpn, bool)] = &[
    ("curl_sni", Some("localhost"), H11, false),
    ("curl_h2", Some("example.test"), H2_H11, false),
    ("curl_ip", None, H2_H11, false),
    ("python_sni", Some("python.example.com"), H11, false),
    ("openssl_tls12", Some("tls12.example.org"), H11, false),
    ("openssl_nosni", None, NONE, false),
    ("node_sni", Some("node.example.net"), H2_H11, false),
    ("chromium", Some("localhost"), H2_H11, true),
    ("ech", Some("python.example.com"), H11, true),
    ("fragmented", Some("localhost"), H11, false),
];

fn hello(data: &[u8]) -> Hello {
    match parse(data) {
        ClientHello::Hello(h) => h,
        other => panic!("expected a hello, got {other:?}"),
    }
}

#[test]
fn captures_parse_whole() {
    assert_eq!(EXPECTED.len(), CAPTURES.len());
    for &(name, sni, alpn, ech) in EXPECTED {
        let h = hello(capture(name));
        assert_eq!(h.sni.as_ref().map(|s| s.as_str()), sni, "{name}");
        assert_eq!(h.alpn, alpn, "{name}");
        assert_eq!(h.ech, ech, "{name}");
    }
}

#[test]
fn every_prefix_needs_more() {
    for &(name, data) in CAPTURES {
        for cut in 0..data.len() {
            assert_eq!(
                parse(&data[..cut]),
                ClientHello::NeedMore,
                "{name} cut at {cut}"
            );
        }
    }
}

#[test]
fn fed_byte_by_byte_decides_exactly_at_the_end() {
    // What a runtime does: append each read and parse again.
    for &(name, data) in CAPTURES {
        let mut buf = Vec::new();
        let mut decided_at = None;
        for (i, &b) in data.iter().enumerate() {
            buf.push(b);
            if parse(&buf) != ClientHello::NeedMore {
                decided_at = Some(i + 1);
                break;
            }
        }
        assert_eq!(decided_at, Some(data.len()), "{name}");
        assert_eq!(parse(&buf), parse(data), "{name}");
    }
}

#[test]
fn trailing_bytes_change_nothing() {
    // A client may send its next record (or, for TLS 1.3 early data, application data) at once.
    let trailers: &[&[u8]] = &[
        b"\x14\x03\x03\x00\x01\x01",
        b"GET / HTTP/1.1\r\n",
        &[0; 300],
    ];
    for &(name, data) in CAPTURES {
        let want = parse(data);
        for t in trailers {
            let mut buf = data.to_vec();
            buf.extend_from_slice(t);
            assert_eq!(parse(&buf), want, "{name} + {t:?}");
        }
    }
}

#[test]
fn fragmented_equals_whole() {
    assert_eq!(parse(capture("fragmented")), parse(capture("curl_sni")));
    assert_eq!(capture("fragmented")[5..105], capture("curl_sni")[5..105]);
}

#[test]
fn other_protocols_are_not_tls() {
    let vectors: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        // SSLv2-compatible ClientHello (no record layer).
        b"\x80\x2e\x01\x03\x01\x00\x15",
        // A TLS alert record, an application-data record, a change_cipher_spec record.
        b"\x15\x03\x03\x00\x02\x02\x28",
        b"\x17\x03\x03\x00\x01\x00",
        b"\x14\x03\x03\x00\x01\x01",
        // Record version major 2, minor 5.
        b"\x16\x02\x01\x00\x05",
        b"\x16\x03\x05\x00\x05",
        // Empty handshake record; record longer than 2^14.
        b"\x16\x03\x01\x00\x00",
        b"\x16\x03\x01\x40\x01",
        // A ServerHello (type 2) rather than a ClientHello.
        b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",
    ];
    for v in vectors {
        assert_eq!(parse(v), ClientHello::NotTls, "{v:?}");
    }
}

#[test]
fn not_tls_is_decided_on_the_first_telling_byte() {
    // 'G' is no handshake record type: no need to wait for more.
    assert_eq!(parse(b"G"), ClientHello::NotTls);
    assert_eq!(parse(b"\x16"), ClientHello::NeedMore);
    assert_eq!(parse(b"\x16\x04"), ClientHello::NotTls);
    assert_eq!(parse(b"\x16\x03\x01\x00\x10\x02"), ClientHello::NotTls);
}

/// The handshake message of a single-record capture, with its 4-byte header.
fn message(data: &[u8]) -> Vec<u8> {
    let n = usize::from(u16::from_be_bytes([data[3], data[4]]));
    data[5..5 + n].to_vec()
}

fn record(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![22, 3, 1];
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

#[test]
fn oversized_hello_is_refused_before_it_is_buffered() {
    let len = MAX_CLIENT_HELLO; // body + 4-byte header > MAX
    let head = [
        22,
        3,
        1,
        0x40,
        0x00,
        1,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
    ];
    assert_eq!(parse(&head), ClientHello::NotTls);
    let ok = MAX_CLIENT_HELLO - 4;
    let head = [
        22,
        3,
        1,
        0x40,
        0x00,
        1,
        (ok >> 16) as u8,
        (ok >> 8) as u8,
        ok as u8,
    ];
    assert_eq!(parse(&head), ClientHello::NeedMore);
}

/// Offsets of the length fields inside a ClientHello message (header included), walking it the
/// way the parser does: `(offset, width)` for session id, suites, compression, extensions and
/// each extension's length.
fn length_fields(msg: &[u8]) -> Vec<(usize, usize)> {
    let mut out = vec![(1, 3)];
    let mut pos = 4 + 2 + 32;
    out.push((pos, 1));
    pos += 1 + usize::from(msg[pos]);
    out.push((pos, 2));
    pos += 2 + usize::from(u16::from_be_bytes([msg[pos], msg[pos + 1]]));
    out.push((pos, 1));
    pos += 1 + usize::from(msg[pos]);
    out.push((pos, 2));
    pos += 2;
    while pos < msg.len() {
        out.push((pos + 2, 2));
        let kind = u16::from_be_bytes([msg[pos], msg[pos + 1]]);
        let n = usize::from(u16::from_be_bytes([msg[pos + 2], msg[pos + 3]]));
        if kind == 0 || kind == 16 {
            // The list length inside SNI and ALPN.
            out.push((pos + 4, 2));
        }
        pos += 4 + n;
    }
    assert_eq!(pos, msg.len());
    out
}

fn set_len(msg: &mut [u8], (at, width): (usize, usize), value: usize) {
    for i in 0..width {
        msg[at + i] = (value >> (8 * (width - 1 - i))) as u8;
    }
}

fn get_len(msg: &[u8], (at, width): (usize, usize)) -> usize {
    (0..width).fold(0, |acc, i| (acc << 8) | usize::from(msg[at + i]))
}

#[test]
fn every_length_off_by_one_is_refused() {
    for name in ["curl_sni", "python_sni", "openssl_tls12", "node_sni"] {
        let msg = message(capture(name));
        for field in length_fields(&msg) {
            let value = get_len(&msg, field);
            for wrong in [value.wrapping_sub(1), value + 1] {
                if field.1 == 1 && wrong > 0xff {
                    continue;
                }
                let mut bad = msg.clone();
                set_len(&mut bad, field, wrong);
                let result = parse(&record(&bad));
                // A longer handshake length only waits for bytes that never come.
                let expected = if field == (1, 3) && wrong > value {
                    ClientHello::NeedMore
                } else {
                    ClientHello::NotTls
                };
                assert_eq!(result, expected, "{name} field {field:?} = {wrong}");
            }
        }
    }
}

#[test]
fn duplicate_extensions_and_bad_names_are_refused() {
    let msg = message(capture("python_sni"));
    let fields = length_fields(&msg);
    let ext_len_at = fields[4];
    // Append a second SNI extension with a valid name.
    let sni: &[u8] = b"\x00\x00\x00\x0e\x00\x0c\x00\x00\x09a.example";
    let mut dup = msg.clone();
    dup.extend_from_slice(sni);
    let ext_total = get_len(&dup, ext_len_at) + sni.len();
    set_len(&mut dup, ext_len_at, ext_total);
    let body = dup.len() - 4;
    set_len(&mut dup, (1, 3), body);
    assert_eq!(parse(&record(&dup)), ClientHello::NotTls);

    // Names that are not host names.
    let name_at = msg
        .windows(18)
        .position(|w| w == b"python.example.com")
        .unwrap();
    for bad in [b'/', b' ', b'\0', 0xc3, b'*'] {
        let mut m = msg.clone();
        m[name_at + 6] = bad;
        assert_eq!(parse(&record(&m)), ClientHello::NotTls, "byte {bad:#x}");
    }
    // Case is folded, and `_` is allowed (seen in the wild).
    let mut m = msg.clone();
    m[name_at] = b'P';
    m[name_at + 6] = b'_';
    let h = hello(&record(&m));
    assert_eq!(h.sni.unwrap().as_str(), "python_example.com");
    // Empty labels are not names.
    let mut m = msg.clone();
    m[name_at + 7] = b'.';
    assert_eq!(parse(&record(&m)), ClientHello::NotTls);
}

#[test]
fn trailing_garbage_inside_the_message_is_refused() {
    let mut msg = message(capture("curl_sni"));
    msg.push(0);
    let body = msg.len() - 4;
    set_len(&mut msg, (1, 3), body);
    assert_eq!(parse(&record(&msg)), ClientHello::NotTls);
}

fn patterns(list: &[&str]) -> HostPatterns {
    let mut p = HostPatterns::new();
    for s in list {
        p.add(s).unwrap();
    }
    p
}

#[test]
fn intercept_matches_the_egress_grammar() {
    let p = patterns(&["example.test", "*.corp.test", "10.0.0.0/8", "::1"]);
    for (host, want) in [
        ("example.test", true),
        ("EXAMPLE.test.", true),
        ("www.example.test", false),
        ("a.b.corp.test", true),
        ("corp.test", false),
        ("10.1.2.3", true),
        ("0x0a000001", true), // legacy spelling of 10.0.0.1
        ("[::ffff:10.0.0.1]", true),
        ("11.0.0.1", false),
        ("[::1]", true),
        ("::1", true),
        ("1.2.3.4.5", false),
    ] {
        assert_eq!(matches(&p, host), want, "{host}");
    }
    assert!(matches(&patterns(&["*"]), "anything.test"));
    assert!(matches(&patterns(&["*"]), "192.0.2.1"));
    assert!(!matches(&HostPatterns::new(), "example.test"));
}

#[test]
fn intercept_decisions() {
    let all = patterns(&["*"]);
    let parsed = |name: &str| parse(capture(name));
    let need = ClientHello::NeedMore;
    assert_eq!(
        decide(&patterns(&["other.test"]), "localhost", &need),
        Decision::Tunnel(Passthrough::NotMatched)
    );
    assert_eq!(decide(&all, "localhost", &need), Decision::WaitForHello);
    let h = parsed("curl_sni");
    assert_eq!(
        decide(&all, "localhost", &h),
        Decision::Intercept {
            leaf_host: "localhost"
        }
    );
    // No SNI: the CONNECT host, without IPv6 brackets.
    let h = parsed("curl_ip");
    assert_eq!(
        decide(&all, "127.0.0.1", &h),
        Decision::Intercept {
            leaf_host: "127.0.0.1"
        }
    );
    assert_eq!(
        decide(&all, "[::1]", &h),
        Decision::Intercept { leaf_host: "::1" }
    );
    // ECH whose outer name is another host hides the destination: passed through.
    let h = parsed("ech");
    assert_eq!(
        decide(&all, "hidden.example.net", &h),
        Decision::Tunnel(Passthrough::Ech)
    );
    // ECH whose outer name is the CONNECT host hides nothing (Chromium's GREASE ECH on
    // every connection): intercepted from the outer hello, case and a trailing dot aside.
    assert_eq!(
        decide(&all, "python.example.com", &h),
        Decision::Intercept {
            leaf_host: "python.example.com"
        }
    );
    let h = parsed("chromium");
    for host in ["localhost", "LocalHost", "localhost."] {
        assert_eq!(
            decide(&all, host, &h),
            Decision::Intercept {
                leaf_host: "localhost"
            },
            "{host}"
        );
    }
    assert_eq!(
        decide(&all, "127.0.0.1", &h),
        Decision::Tunnel(Passthrough::Ech)
    );
    assert_eq!(
        decide(&all, "x.test", &parse(b"SSH-2.0-x\r\n")),
        Decision::Tunnel(Passthrough::NotTls)
    );
    // An h2-only offer cannot be answered by an HTTP/1.1 server.
    let mut msg = message(capture("python_sni"));
    let at = msg.windows(8).position(|w| w == b"http/1.1").unwrap();
    msg[at..at + 8].copy_from_slice(b"h2\x05abcde");
    msg[at - 1] = 2;
    let h = parse(&record(&msg));
    let ClientHello::Hello(inner) = &h else {
        panic!("{h:?}")
    };
    assert_eq!(
        inner.alpn,
        Alpn {
            offered: true,
            http11: false,
            h2: true,
            count: 2
        }
    );
    assert_eq!(
        decide(&all, "python.example.com", &h),
        Decision::Tunnel(Passthrough::NoHttp11)
    );
    // No ALPN at all is HTTP/1.1 on an https port.
    assert_eq!(
        decide(&all, "x.test", &parsed("openssl_nosni")),
        Decision::Intercept {
            leaf_host: "x.test"
        }
    );
}

#[test]
fn requests_inside_are_pinned_to_the_connect_authority() {
    let named = Authority::new("origin.test", 443);
    let odd_port = Authority::new("origin.test", 8443);
    let v4 = Authority::new("127.0.0.1", 443);
    let v6 = Authority::new("::1", 443);
    let ok: &[(&Authority, &str)] = &[
        (&named, "origin.test"),
        (&named, "ORIGIN.Test"),
        (&named, "origin.test."),
        (&named, "origin.test:443"),
        (&named, "origin.test:"),
        (&named, " origin.test\t"),
        (&odd_port, "origin.test:8443"),
        (&v4, "127.0.0.1"),
        (&v4, "127.1:443"),
        (&v4, "[::ffff:127.0.0.1]"),
        (&v6, "[::1]"),
        (&v6, "[0::1]:443"),
    ];
    for (pinned, host) in ok {
        assert_eq!(
            check_pinned(pinned, host.as_bytes()),
            Ok(()),
            "{host} for {pinned}"
        );
    }
    let misdirected: &[(&Authority, &str)] = &[
        (&named, "other.test"),
        (&named, "origin.test:8443"),
        (&named, "www.origin.test"),
        (&named, "origin.tes"),
        (&named, "127.0.0.1"),
        (&odd_port, "origin.test"),
        (&v4, "127.0.0.2"),
        (&v4, "localhost"),
        (&v6, "[::2]"),
    ];
    for (pinned, host) in misdirected {
        assert_eq!(
            check_pinned(pinned, host.as_bytes()),
            Err(Problem::MisdirectedRequest),
            "{host} for {pinned}"
        );
    }
    for bad in [
        "",
        " ",
        "user@origin.test",
        "origin.test:x",
        "origin.test:0",
        "origin.test:65536",
        "origin.test:443:443",
        "[::1",
        "[::1]x",
        "1.2.3.4.5",
        "origin test",
        "[]",
    ] {
        assert_eq!(
            check_pinned(&named, bad.as_bytes()),
            Err(Problem::InvalidHost),
            "{bad:?}"
        );
    }
}
