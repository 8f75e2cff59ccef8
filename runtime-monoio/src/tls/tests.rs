//! In-memory tests of the TLS layer: a rustls client, the proxy's two sessions and a rustls
//! origin exchanging bytes through `Vec`s (no sockets), the minted leaves' properties, the CA
//! files, and the failures the proxy must turn into answers.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringway_core::client_hello::{self, ClientHello};
use ringway_core::egress::HostPatterns;
use ringway_core::intercept::{decide, Decision};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::adapter::{
    peer_leaf, test_client, Interceptor, ListenerTls, Plain, TlsFailure, TlsSession, UpstreamTrust,
};
use super::ca::{self, Ca};
use super::leaf::{self, BACKDATE, LEAF_VALIDITY};

/// A scratch directory of its own for each test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringway-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 2026-12-01T00:00:00Z.
fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_083_200)
}

/// An origin: its own CA (written to `dir/origin-ca.pem` for `--upstream-ca`) and a leaf for
/// `host`, served by a `ListenerTls` (the same code as the HTTPS proxy listener).
pub(crate) fn origin(dir: &std::path::Path, host: &str) -> (ListenerTls, PathBuf) {
    let (origin_ca, pem) = Ca::generate("origin-test", SystemTime::now()).unwrap();
    let leaf = leaf::mint(&origin_ca, host, SystemTime::now()).unwrap();
    let ca_path = dir.join("origin-ca.pem");
    std::fs::write(&ca_path, &pem.cert).unwrap();
    let cert_path = dir.join("origin.pem");
    let key_path = dir.join("origin-key.pem");
    std::fs::write(&cert_path, to_pem("CERTIFICATE", &leaf.cert_der)).unwrap();
    std::fs::write(&key_path, to_pem("PRIVATE KEY", &leaf.key_der())).unwrap();
    (
        ListenerTls::from_files(&cert_path, &key_path, None).unwrap(),
        ca_path,
    )
}

fn to_pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut body = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                body.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                body.push('=');
            }
        }
    }
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn interceptor(ca: Ca, upstream_ca: PathBuf) -> Interceptor {
    let trust = UpstreamTrust {
        extra_ca_files: vec![upstream_ca],
        no_system_roots: true,
        ..UpstreamTrust::default()
    };
    Interceptor::new(ca, 100, &trust, None).unwrap()
}

/// Moves ciphertext from `from` to `to`; returns whether anything moved.
fn shuttle(from: &mut TlsSession, to: &mut TlsSession) -> Result<bool, TlsFailure> {
    let mut wire = Vec::new();
    from.take_ciphertext(&mut wire);
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let n = to.feed(rest)?;
        assert!(n > 0, "session took nothing with its buffers empty");
        rest = &rest[n..];
    }
    Ok(!wire.is_empty())
}

fn plaintext(s: &mut TlsSession) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_plaintext(&mut out);
    out
}

const REQUEST: &[u8] = b"GET /x HTTP/1.1\r\nHost: origin.test\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn full_intercepted_exchange_in_memory() {
    let dir = scratch("exchange");
    let (origin_tls, origin_ca) = origin(&dir, "origin.test");
    let (ca, _) = Ca::generate("proxy-test", SystemTime::now()).unwrap();
    let ca_der = ca.cert_der().to_vec();
    let proxy = interceptor(ca, origin_ca);

    let mut client = test_client(&[&ca_der], "origin.test", &[b"h2", b"http/1.1"]);
    client.write_plaintext(REQUEST);
    let mut hello_bytes = Vec::new();
    client.take_ciphertext(&mut hello_bytes);

    // The core reads the ClientHello and decides.
    let hello = client_hello::parse(&hello_bytes);
    assert!(matches!(hello, ClientHello::Hello(_)), "{hello:?}");
    let mut all = HostPatterns::new();
    all.add("*").unwrap();
    let Decision::Intercept { leaf_host } = decide(&all, "origin.test", &hello) else {
        panic!("not intercepted")
    };
    assert_eq!(leaf_host, "origin.test");

    let mut front = proxy.accept(leaf_host, SystemTime::now()).unwrap();
    let mut back = proxy.connect("origin.test").unwrap();
    let mut server = origin_tls.accept().unwrap();
    assert_eq!(front.feed(&hello_bytes).unwrap(), hello_bytes.len());

    let (mut at_origin, mut at_client) = (Vec::new(), Vec::new());
    let mut responded = false;
    for round in 0.. {
        assert!(round < 50, "exchange did not finish");
        let mut moved = shuttle(&mut front, &mut client).unwrap();
        moved |= shuttle(&mut client, &mut front).unwrap();
        // Proxy: client plaintext -> origin leg.
        let up = plaintext(&mut front);
        if !up.is_empty() {
            assert_eq!(back.write_plaintext(&up), up.len());
        }
        moved |= shuttle(&mut back, &mut server).unwrap();
        moved |= shuttle(&mut server, &mut back).unwrap();
        at_origin.extend(plaintext(&mut server));
        if at_origin.len() == REQUEST.len() && !responded {
            assert_eq!(server.write_plaintext(RESPONSE), RESPONSE.len());
            responded = true;
            moved = true;
        }
        let down = plaintext(&mut back);
        if !down.is_empty() {
            assert_eq!(front.write_plaintext(&down), down.len());
            moved = true;
        }
        at_client.extend(plaintext(&mut client));
        if at_client.len() == RESPONSE.len() && !moved {
            break;
        }
    }
    assert_eq!(at_origin, REQUEST);
    assert_eq!(at_client, RESPONSE);
    // Both legs speak HTTP/1.1, whatever else the client offered.
    assert_eq!(client.alpn(), Some(&b"http/1.1"[..]));
    assert_eq!(back.alpn(), Some(&b"http/1.1"[..]));
    // The client saw a leaf from the interception CA, not the origin's.
    let seen = peer_leaf(&client).unwrap();
    let (_, cert) = X509Certificate::from_der(&seen).unwrap();
    assert_eq!(
        cert.issuer()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        proxy.ca().subject()
    );
    assert_eq!(proxy.cached_leaves(), 1);

    // A clean close travels as close_notify.
    client.close();
    shuttle(&mut client, &mut front).unwrap();
    assert_eq!(front.read_plaintext(&mut Vec::new()), Plain::Closed);
}

fn san_kinds(der: &[u8]) -> (Vec<String>, Vec<IpAddr>) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(b) => ips.push(match b.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                _ => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
            }),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    (dns, ips)
}

#[test]
fn leaf_properties() {
    let now = fixed_now();
    let (ca, _) = Ca::generate("leafhost", now).unwrap();
    assert_eq!(
        ca.subject(),
        "Ringway interception CA (leafhost, 2026-12-01)"
    );

    let leaf = leaf::mint(&ca, "Www.Example.TEST.", now).unwrap();
    let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
    // Issuer: the CA, by name and key identifier.
    assert_eq!(cert.issuer().to_string(), {
        let (_, c) = X509Certificate::from_der(ca.cert_der()).unwrap();
        c.subject().to_string()
    });
    let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
    assert!(!cert.is_ca());
    // Validity: one day before now, for 30 days.
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    let now_s = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(nb, now_s - BACKDATE.as_secs() as i64);
    assert_eq!(na - nb, LEAF_VALIDITY.as_secs() as i64);
    // Key: EC P-256.
    let spki = cert.public_key();
    assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
    // SAN: exactly one DNS name, lowercased, no trailing dot.
    assert_eq!(
        san_kinds(&leaf.cert_der),
        (vec!["www.example.test".to_string()], vec![])
    );
    // A fresh key per leaf (and so a fresh serial).
    let again = leaf::mint(&ca, "www.example.test", now).unwrap();
    let (_, c2) = X509Certificate::from_der(&again.cert_der).unwrap();
    assert_ne!(c2.public_key().raw, cert.public_key().raw);
    assert_ne!(c2.serial, cert.serial);
    // IP literals: an IP SAN only, never a DNS SAN; legacy spellings and mapped forms
    // canonicalised as the core does.
    for (host, ip) in [
        ("192.0.2.7", "192.0.2.7"),
        ("0x7f000001", "127.0.0.1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::1", "::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
    ] {
        let l = leaf::mint(&ca, host, now).unwrap();
        assert_eq!(
            san_kinds(&l.cert_der),
            (vec![], vec![ip.parse::<IpAddr>().unwrap()]),
            "{host}"
        );
    }
    assert!(leaf::mint(&ca, "1.2.3.4.5", now).is_err());
    assert!(leaf::mint(&ca, "", now).is_err());
    // Key material stays out of Debug.
    let shown = format!("{leaf:?} {ca:?}");
    assert!(shown.contains("elided"), "{shown}");
    assert!(
        !shown.contains(&format!("{:?}", &leaf.key_der()[..8])),
        "{shown}"
    );
}

#[test]
fn cache_mints_once_per_host_and_is_bounded() {
    let dir = scratch("cache");
    let (_, origin_ca) = origin(&dir, "origin.test");
    let (ca, _) = Ca::generate("cachehost", SystemTime::now()).unwrap();
    let trust = UpstreamTrust {
        extra_ca_files: vec![origin_ca],
        no_system_roots: true,
        ..UpstreamTrust::default()
    };
    let proxy = Interceptor::new(ca, 3, &trust, None).unwrap();
    let now = SystemTime::now();
    let a = proxy.leaf("a.test", now).unwrap();
    let a2 = proxy.leaf("A.test.", now).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &a2), "same host, same leaf");
    for h in ["b.test", "c.test", "d.test", "e.test"] {
        proxy.leaf(h, now).unwrap();
        assert!(proxy.cached_leaves() <= 3);
    }
    let a3 = proxy.leaf("a.test", now).unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&a, &a3),
        "a was evicted and minted again"
    );
}

/// Runs a handshake between a client and a server session until one fails or both finish.
fn handshake(
    client: &mut TlsSession,
    server: &mut TlsSession,
) -> (Result<(), TlsFailure>, Result<(), TlsFailure>) {
    let (mut c, mut s) = (Ok(()), Ok(()));
    for _ in 0..20 {
        let mut wire = Vec::new();
        client.take_ciphertext(&mut wire);
        if !wire.is_empty() && s.is_ok() {
            s = server.feed(&wire).map(|_| ());
        }
        let mut wire = Vec::new();
        server.take_ciphertext(&mut wire);
        if !wire.is_empty() && c.is_ok() {
            c = client.feed(&wire).map(|_| ());
        }
        if c.is_err() && s.is_err() || (!client.is_handshaking() && !server.is_handshaking()) {
            break;
        }
        if wire.is_empty() && (c.is_err() || s.is_err()) {
            let mut w = Vec::new();
            client.take_ciphertext(&mut w);
            if w.is_empty() {
                break;
            }
        }
    }
    (c, s)
}

#[test]
fn untrusted_or_misnamed_origin_is_a_certificate_failure() {
    let dir = scratch("untrusted");
    let (origin_tls, _origin_ca) = origin(&dir, "origin.test");
    // Trust some other CA only.
    let (_, other) = Ca::generate("other", SystemTime::now()).unwrap();
    let other_path = dir.join("other.pem");
    std::fs::write(&other_path, other.cert).unwrap();
    let (ca, _) = Ca::generate("p", SystemTime::now()).unwrap();
    let proxy = interceptor(ca, other_path);
    let mut back = proxy.connect("origin.test").unwrap();
    let mut server = origin_tls.accept().unwrap();
    let (c, _) = handshake(&mut back, &mut server);
    assert!(matches!(c, Err(TlsFailure::Certificate(_))), "{c:?}");

    // Trusted CA, but a certificate for another name.
    let (origin_tls, origin_ca) = origin(&dir, "elsewhere.test");
    let (ca, _) = Ca::generate("p", SystemTime::now()).unwrap();
    let proxy = interceptor(ca, origin_ca);
    let mut back = proxy.connect("origin.test").unwrap();
    let mut server = origin_tls.accept().unwrap();
    let (c, _) = handshake(&mut back, &mut server);
    assert!(matches!(c, Err(TlsFailure::Certificate(_))), "{c:?}");
}

#[test]
fn a_client_refusing_the_leaf_is_a_peer_alert() {
    let dir = scratch("pinned");
    let (_, origin_ca) = origin(&dir, "origin.test");
    let (ca, _) = Ca::generate("p", SystemTime::now()).unwrap();
    let proxy = interceptor(ca, origin_ca);
    // The client trusts another CA (a pinned app, or a CA not installed).
    let (other, _) = Ca::generate("other", SystemTime::now()).unwrap();
    let mut client = test_client(&[other.cert_der()], "origin.test", &[b"http/1.1"]);
    let mut front = proxy.accept("origin.test", SystemTime::now()).unwrap();
    let (c, s) = handshake(&mut client, &mut front);
    assert!(matches!(c, Err(TlsFailure::Certificate(_))), "{c:?}");
    assert!(matches!(s, Err(TlsFailure::PeerAlert(_))), "{s:?}");
}

#[test]
fn ca_files_modes_overwrite_and_mismatch() {
    let dir = scratch("cafiles");
    let (ca, pem) = Ca::generate("filehost", SystemTime::now()).unwrap();
    let (cert, key) = ca::write_files(&dir, &pem, false).unwrap();
    let mode = |p: &PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o600);
    // No overwrite without --force, and nothing is touched by the refusal.
    let (_, pem2) = Ca::generate("filehost", SystemTime::now()).unwrap();
    let err = ca::write_files(&dir, &pem2, false).unwrap_err();
    assert!(err.0.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem.key);
    // --force replaces both; each is created again with 0600 even if it was looser.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).unwrap();
    ca::write_files(&dir, &pem2, true).unwrap();
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o600);
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), pem2.cert);
    // Loading: the pair round-trips; a key from another CA is refused, naming the flags.
    let loaded = Ca::from_pem(&pem.cert, &pem.key).unwrap();
    assert_eq!(loaded.subject(), ca.subject());
    let err = Ca::from_pem(&pem.cert, &pem2.key).unwrap_err();
    assert_eq!(
        err.0,
        "--ca-key does not match --ca-cert (their public keys differ)"
    );
    assert!(!format!("{err}").contains("PRIVATE"));
    // A leaf from a loaded CA chains to its certificate.
    let leaf = leaf::mint(&loaded, "x.test", SystemTime::now()).unwrap();
    let (_, l) = X509Certificate::from_der(&leaf.cert_der).unwrap();
    let (_, c) = X509Certificate::from_der(loaded.cert_der()).unwrap();
    assert!(l.verify_signature(Some(c.public_key())).is_ok());
    assert_eq!(l.issuer().to_string(), c.subject().to_string());
    // A leaf is no CA.
    let (_, leaf_pem_key) = (
        0,
        ca::pem_block(&to_pem("PRIVATE KEY", &leaf.key_der()), "PRIVATE KEY"),
    );
    assert_eq!(leaf_pem_key.unwrap(), leaf.key_der());
    let err = Ca::from_pem(
        &to_pem("CERTIFICATE", &leaf.cert_der),
        &to_pem("PRIVATE KEY", &leaf.key_der()),
    )
    .unwrap_err();
    assert!(err.0.contains("not a CA"), "{err}");
}

#[test]
fn ca_init_command_prints_paths_and_trust_steps() {
    let dir = scratch("init");
    let d = dir.to_str().unwrap();
    let out = ca::init_command(&["--dir", d]).unwrap();
    assert!(out.contains(&format!("{d}/ca.pem")), "{out}");
    assert!(out.contains("update-ca-certificates"));
    assert!(out.contains("certutil"));
    assert!(out.contains("--cacert"));
    assert!(out.contains("REQUESTS_CA_BUNDLE"));
    assert!(ca::init_command(&["--dir", d])
        .unwrap_err()
        .0
        .contains("--force"));
    assert!(ca::init_command(&["--dir", d, "--force"]).is_ok());
    assert!(ca::init_command(&[]).is_err());
}

#[test]
fn stale_leaves_are_minted_again() {
    let dir = scratch("stale");
    let (_, origin_ca) = origin(&dir, "origin.test");
    let (ca, _) = Ca::generate("stalehost", SystemTime::now()).unwrap();
    let proxy = interceptor(ca, origin_ca);
    let t0 = SystemTime::now();
    let a = proxy.leaf("a.test", t0).unwrap();
    let same = proxy
        .leaf("a.test", t0 + Duration::from_secs(6 * 86_400))
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &same));
    let fresh = proxy
        .leaf("a.test", t0 + Duration::from_secs(8 * 86_400))
        .unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &fresh));
}

#[test]
fn key_log_is_nss_format_and_private() {
    let dir = scratch("keylog");
    let path = dir.join("keys.log");
    let log = std::sync::Arc::new(super::adapter::FileKeyLog::open(&path).unwrap());
    let (origin_tls, origin_ca) = origin(&dir, "origin.test");
    let (ca, _) = Ca::generate("p", SystemTime::now()).unwrap();
    let trust = UpstreamTrust {
        extra_ca_files: vec![origin_ca],
        no_system_roots: true,
        ..UpstreamTrust::default()
    };
    let proxy = Interceptor::new(ca, 10, &trust, Some(log)).unwrap();
    let mut back = proxy.connect("origin.test").unwrap();
    let mut server = origin_tls.accept().unwrap();
    let (c, s) = handshake(&mut back, &mut server);
    assert!(c.is_ok() && s.is_ok(), "{c:?} {s:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let labels: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert!(
        labels.contains(&"CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
        "{labels:?}"
    );
    assert!(labels.contains(&"CLIENT_TRAFFIC_SECRET_0"), "{labels:?}");
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[1].len(), 64, "client random is 32 bytes in hex");
        assert!(parts[1..]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit())));
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn eof_without_close_notify_is_not_a_clean_close() {
    let dir = scratch("eof");
    let (origin_tls, origin_ca) = origin(&dir, "origin.test");
    let (ca, _) = Ca::generate("p", SystemTime::now()).unwrap();
    let proxy = interceptor(ca, origin_ca);
    let mut back = proxy.connect("origin.test").unwrap();
    let mut server = origin_tls.accept().unwrap();
    let (c, s) = handshake(&mut back, &mut server);
    assert!(c.is_ok() && s.is_ok());
    // The origin's TCP closes without close_notify (a truncation attack looks the same).
    back.feed_eof().unwrap();
    assert_ne!(back.read_plaintext(&mut Vec::new()), Plain::Closed);
}

/// SIGHUP: an unchanged setup is kept (its leaf cache too); a new CA or new patterns build a
/// new one with an empty cache, published for new tunnels while the old one stays usable
/// for the tunnels holding it; a bad file keeps the running one; no `--intercept` turns
/// interception off.
#[test]
fn reload_keeps_an_unchanged_setup_and_swaps_a_changed_one() {
    use super::intercepted::{current, publish, wanted};
    use ringway_core::target::Authority;

    let dir = scratch("reload");
    let (_, pem) = Ca::generate("reload", SystemTime::now()).unwrap();
    let (cert, key) = ca::write_files(&dir, &pem, false).unwrap();
    let patterns = |list: &[&str]| {
        let mut p = HostPatterns::new();
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        crate::egress::add_patterns("--intercept", &list, &mut p).unwrap();
        p
    };
    let mut flags = crate::cli::InterceptFlags {
        patterns: patterns(&["a.test"]),
        ca_cert: cert.clone(),
        ca_key: key.clone(),
        upstream_ca: Vec::new(),
        insecure_upstream: false,
        cert_cache: 10,
        tls_key_log: None,
    };
    let a = Authority::new("a.test", 443);
    let b = Authority::new("b.test", 443);
    publish(Some(std::sync::Arc::new(super::start(&flags).unwrap())));
    let first = current().unwrap();
    first.interceptor.leaf("a.test", SystemTime::now()).unwrap();
    assert_eq!(first.interceptor.cached_leaves(), 1);
    assert!(wanted(&a) && !wanted(&b));

    // Nothing changed: kept, cache and all.
    assert!(super::reload_setup(Some(&flags)).unwrap().is_none());

    // A new CA in the same files: a new setup, its leaves from the new CA, empty cache.
    let (_, pem2) = Ca::generate("reload", SystemTime::now()).unwrap();
    ca::write_files(&dir, &pem2, true).unwrap();
    let second = super::reload_setup(Some(&flags)).unwrap().unwrap().unwrap();
    assert_eq!(second.interceptor.cached_leaves(), 0);
    assert_ne!(
        second.interceptor.ca().cert_der(),
        first.interceptor.ca().cert_der()
    );
    publish(Some(std::sync::Arc::clone(&second)));
    assert!(std::sync::Arc::ptr_eq(&current().unwrap(), &second));
    // The old one still serves the tunnels that hold it.
    assert_eq!(first.interceptor.cached_leaves(), 1);

    // New patterns (as from an edited `@FILE` or config file): new tunnels follow them.
    flags.patterns = patterns(&["b.test"]);
    let third = super::reload_setup(Some(&flags)).unwrap().unwrap().unwrap();
    publish(Some(third));
    assert!(!wanted(&a) && wanted(&b));

    // A key that no longer parses: an error, the running setup stays.
    std::fs::write(&key, "not a key\n").unwrap();
    flags.patterns = patterns(&["a.test"]);
    let Err(err) = super::reload_setup(Some(&flags)) else {
        panic!("a bad key must fail the reload");
    };
    assert!(err.contains("--ca-key") || err.contains("key"), "{err}");
    assert!(!wanted(&a) && wanted(&b));

    // No --intercept any more: off.
    assert!(super::reload_setup(None).unwrap().unwrap().is_none());
    publish(None);
    assert!(!wanted(&b) && current().is_none());
    // Off and still off: nothing to publish.
    assert!(super::reload_setup(None).unwrap().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The key pool: its thread makes keys ahead of time, every key is different, each is handed
/// out once (by move), and leaves minted while it runs still get a fresh key each.
#[test]
fn the_key_pool_hands_out_fresh_distinct_keys() {
    use super::keys;
    use std::collections::HashSet;
    use std::time::Duration;

    keys::start_pool();
    keys::start_pool(); // once per process: the second call does nothing
    let mut seen = HashSet::new();
    for _ in 0..keys::POOL_SIZE + 4 {
        let key = keys::wait_pooled(Duration::from_secs(10)).expect("the pool makes keys");
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(
            seen.insert(key.public_key_raw().to_vec()),
            "a key handed out twice"
        );
    }
    let now = fixed_now();
    let (ca, _) = Ca::generate("poolhost", now).unwrap();
    for _ in 0..8 {
        let leaf = leaf::mint(&ca, "pool.example.test", now).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        assert!(
            seen.insert(cert.public_key().subject_public_key.data.to_vec()),
            "a leaf reused a key"
        );
    }
}
