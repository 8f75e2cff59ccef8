//! HTTPS through a proxy: the load, idle holders and handshake timings of the TLS interception
//! benchmark (issue 12), driven by `bench/run`'s `tls*` phases.
//!
//! Every connection is `CONNECT target` through the proxy (or straight to the target for
//! "direct"), then a rustls client handshake that must verify the certificate it is shown
//! against `--ca` for the name `--sni` (the interception CA when the proxy intercepts, the
//! origin's CA through a plain tunnel), then HTTP/1.1 GETs whose status and every body byte
//! are checked against `--body`. Session resumption is off: each new connection is a full
//! handshake, so "new TLS connection per request" measures what it says.
//!
//! - `tls-load`: `--connections` connections on one event loop (the `tls_load` module),
//!   keep-alive GETs until `--seconds` pass, or with `--churn 1` a new connection (CONNECT +
//!   handshake + one GET + close) per request.
//! - `tls-hold`: `--count` connections, each with one GET done, then held idle.
//! - `tls-leaf`: for each of `--hosts` names `h{i}.{suffix}`: a handshake with that SNI (first
//!   visit: the proxy mints a leaf), then another with the same SNI (cached), one at a time,
//!   so both kinds of handshake see the same conditions; prints both latency distributions.
//!   The CONNECT goes to `--target` whatever the SNI: the leaf is minted for the SNI.
//!
//! Errors: any failure (socket, TLS, certificate, status, body byte) ends the command with a
//! message naming the connection; the harness marks the cell failed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::{connect_request, io_error, read_head_exact};

/// A TLS stream inside a CONNECT tunnel.
pub type Tls = StreamOwned<ClientConnection, TcpStream>;
/// A TLS stream with the read-ahead buffer its responses are parsed from.
pub type Conn = BufReader<Tls>;

/// Where and how to connect, shared by every connection of a command.
#[derive(Clone)]
pub struct Target {
    /// The proxy, or `None` for straight to `target`.
    pub proxy: Option<SocketAddr>,
    /// The origin (CONNECT authority and `Host`).
    pub target: SocketAddr,
    /// The TLS client configuration (trust: `--ca` only; no resumption).
    pub config: Arc<ClientConfig>,
    /// IO timeout for every read and write.
    pub io_timeout: Duration,
}

/// A client configuration trusting exactly the certificates in the PEM file `ca`, offering
/// http/1.1 (as browsers and curl do through an intercepting proxy), resumption off.
pub fn client_config(ca: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--ca {ca}: {e}"))? {
        let cert = cert.map_err(|e| format!("--ca {ca}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("--ca {ca}: not a usable trust anchor: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {ca}: no certificate"));
    }
    // X25519 first, as browsers and curl offer it: rustls' ring provider lists P-384 first,
    // and a P-384 key share makes every proxy under test do P-384 ECDH, which no real
    // client asks for.
    #[allow(deprecated)]
    let provider = {
        use rustls::crypto::ring::{default_provider, kx_group};
        rustls::crypto::CryptoProvider {
            kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
            ..default_provider()
        }
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

impl Target {
    /// TCP to the proxy (IO timeouts set, Nagle off) and `CONNECT target` answered 200, or
    /// TCP straight to the target for "direct": the stream the TLS client speaks over.
    fn tunnel(&self) -> Result<TcpStream, String> {
        let first_hop = self.proxy.unwrap_or(self.target);
        let mut tcp = TcpStream::connect_timeout(&first_hop, self.io_timeout)
            .map_err(|e| format!("connect to {first_hop}: {e}"))?;
        tcp.set_read_timeout(Some(self.io_timeout))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(self.io_timeout))
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        if self.proxy.is_some() {
            tcp.write_all(connect_request(&self.target.to_string()).as_bytes())
                .map_err(|e| format!("sending CONNECT: {e}"))?;
            let (status, head) = read_head_exact(&mut tcp)?;
            if status != 200 {
                return Err(format!(
                    "CONNECT answered {status}: {:?}",
                    head.lines().next()
                ));
            }
        }
        Ok(tcp)
    }

    /// [`tunnel`](Self::tunnel), then the TLS handshake for `sni`, completed.
    pub fn open(&self, sni: &str) -> Result<Conn, String> {
        let tcp = self.tunnel()?;
        let name =
            ServerName::try_from(sni.to_string()).map_err(|e| format!("--sni {sni:?}: {e}"))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| format!("TLS client: {e}"))?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("TLS handshake (SNI {sni}): {}", io_error(&e)))?;
        }
        Ok(BufReader::with_capacity(80 * 1024, tls))
    }
}

/// One GET of `path` on `conn`, checking the status and every body byte against `body`.
/// Returns the bytes read (head + body).
pub fn get(
    conn: &mut Conn,
    host: &str,
    path: &str,
    body: &[u8],
    close: bool,
) -> Result<u64, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tunnel-load\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    let tls = conn.get_mut();
    tls.write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {}", io_error(&e)))?;
    tls.flush()
        .map_err(|e| format!("sending the request: {e}"))?;
    read_checked(conn, body)
}

/// Reads one response (a Content-Length body) and checks it is a 200 carrying `body`.
fn read_checked(conn: &mut Conn, body: &[u8]) -> Result<u64, String> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err("response head larger than 16 KiB".into());
        }
        match conn.read_until(b'\n', &mut head) {
            Ok(0) => {
                return Err(format!(
                    "connection closed inside the response head ({:?})",
                    String::from_utf8_lossy(&head)
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("reading the response head: {}", io_error(&e))),
        }
    }
    check_head(&head, body)?;
    let length = body.len();
    let mut got = vec![0u8; length];
    conn.read_exact(&mut got)
        .map_err(|e| format!("reading the body: {}", io_error(&e)))?;
    if got != body {
        let at = got.iter().zip(body).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("body differs from the file at byte {at}"));
    }
    Ok((head.len() + length) as u64)
}

/// Checks a whole response head: status 200 and a `Content-Length` equal to `body`'s.
pub fn check_head(head: &[u8], body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let status = crate::status_of(&text)?;
    if status != 200 {
        return Err(format!("answer {status}: {:?}", text.lines().next()));
    }
    let length: usize = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or("the response has no Content-Length")?;
    if length != body.len() {
        return Err(format!(
            "Content-Length {length}, the file has {} bytes",
            body.len()
        ));
    }
    Ok(())
}

/// Closes `conn` politely (close_notify, then FIN), ignoring errors: the peer may be gone.
fn close(conn: Conn) {
    let mut tls = conn.into_inner();
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    let _ = tls.sock.shutdown(std::net::Shutdown::Both);
}

/// Percentile `p` (0..=100) of sorted microsecond samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `tls-load`: the result line.
pub struct LoadReport {
    pub requests: u64,
    pub bytes: u64,
    pub handshakes: u64,
    pub seconds: f64,
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    pub fn json(&mut self) -> String {
        self.latencies_us.sort_unstable();
        format!(
            "{{\"requests\":{},\"bytes\":{},\"handshakes\":{},\"seconds\":{:.4},\"rps\":{:.1},\
             \"p50_us\":{},\"p99_us\":{},\"verified\":true}}",
            self.requests,
            self.bytes,
            self.handshakes,
            self.seconds,
            self.requests as f64 / self.seconds,
            percentile(&self.latencies_us, 50.0),
            percentile(&self.latencies_us, 99.0)
        )
    }
}

/// `tls-hold`: `count` connections, each with one checked GET, then idle, opened in
/// `batch`-sized groups whose handshakes run in parallel threads.
pub fn hold(
    target: &Target,
    sni: &str,
    path: &str,
    body: Arc<Vec<u8>>,
    count: usize,
) -> Result<Vec<TcpStream>, String> {
    const PARALLEL: usize = 16;
    let host = target.target.to_string();
    let mut held = Vec::with_capacity(count);
    let mut keep = Vec::with_capacity(count);
    while held.len() < count {
        let n = PARALLEL.min(count - held.len());
        let base = held.len();
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (target, sni, path, body, host) = (
                    target.clone(),
                    sni.to_string(),
                    path.to_string(),
                    body.clone(),
                    host.clone(),
                );
                thread::spawn(move || -> Result<Conn, String> {
                    let mut tls = target
                        .open(&sni)
                        .map_err(|e| format!("connection {}: {e}", base + i))?;
                    get(&mut tls, &host, &path, &body, false)
                        .map_err(|e| format!("connection {}: {e}", base + i))?;
                    Ok(tls)
                })
            })
            .collect();
        for t in threads {
            let tls = t
                .join()
                .map_err(|_| "a holder thread panicked".to_string())??;
            held.push(tls.get_ref().sock.try_clone().map_err(|e| e.to_string())?);
            keep.push(tls);
        }
    }
    // The TLS state stays alive (leaked on purpose until exit) so no close_notify is sent;
    // the plain sockets are what the liveness check peeks at.
    std::mem::forget(keep);
    Ok(held)
}

/// `tls-leaf`: the result line.
pub struct LeafReport {
    pub hosts: usize,
    pub first_us: Vec<u64>,
    pub cached_us: Vec<u64>,
    pub seconds: f64,
}

impl LeafReport {
    pub fn json(&mut self) -> String {
        self.first_us.sort_unstable();
        self.cached_us.sort_unstable();
        let (f, c) = (&self.first_us, &self.cached_us);
        format!(
            "{{\"hosts\":{},\"seconds\":{:.3},\"first_p50_us\":{},\"first_p99_us\":{},\
             \"cached_p50_us\":{},\"cached_p99_us\":{},\"mint_p50_us\":{},\"mint_p99_us\":{}}}",
            self.hosts,
            self.seconds,
            percentile(f, 50.0),
            percentile(f, 99.0),
            percentile(c, 50.0),
            percentile(c, 99.0),
            percentile(f, 50.0) as i64 - percentile(c, 50.0) as i64,
            percentile(f, 99.0) as i64 - percentile(c, 99.0) as i64,
        )
    }
}

/// Times the TLS handshake alone (CONNECT answered before the clock starts): ClientHello
/// sent to handshake complete (the certificate verified for `sni`), then close. No request:
/// the leaf is what is measured, and 20,000 upstream handshakes would only add noise.
fn timed_handshake(target: &Target, sni: &str) -> Result<u64, String> {
    let tcp = target.tunnel()?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| format!("{sni:?}: {e}"))?;
    let conn = ClientConnection::new(target.config.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    let t0 = Instant::now();
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake (SNI {sni}): {}", io_error(&e)))?;
    }
    let took = t0.elapsed().as_micros() as u64;
    close(BufReader::new(tls));
    Ok(took)
}

/// First-visit and cached handshakes, alternating, for `hosts` distinct names.
pub fn leaf(target: &Target, hosts: usize, suffix: &str) -> Result<LeafReport, String> {
    let start = Instant::now();
    let mut report = LeafReport {
        hosts,
        first_us: Vec::with_capacity(hosts),
        cached_us: Vec::with_capacity(hosts),
        seconds: 0.0,
    };
    for i in 0..hosts {
        let sni = format!("h{i}.{suffix}");
        report
            .first_us
            .push(timed_handshake(target, &sni).map_err(|e| format!("host {i} first visit: {e}"))?);
        report.cached_us.push(
            timed_handshake(target, &sni).map_err(|e| format!("host {i} second visit: {e}"))?,
        );
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Reads a whole file (the expected body).
pub fn read_body(path: &str) -> Result<Arc<Vec<u8>>, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("--body {path}: {e}"))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)
        .map_err(|e| format!("--body {path}: {e}"))?;
    Ok(Arc::new(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_load::load;
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;

    /// An HTTPS origin on 127.0.0.1 (rustls, a fresh self-signed P-256 certificate for
    /// 127.0.0.1) answering every GET with `body`, except that answer number `corrupt_at`
    /// (if any) has its last body byte flipped. Returns its address and the certificate PEM.
    fn origin(body: Vec<u8>, corrupt_at: Option<usize>) -> (SocketAddr, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let pem = cert.cert.pem();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(
                        cert.signing_key.serialize_der().into(),
                    ),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        thread::spawn(move || {
            for tcp in listener.incoming() {
                let (config, body, answered) = (config.clone(), body.clone(), answered.clone());
                thread::spawn(move || {
                    let tcp = tcp.unwrap();
                    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = BufReader::new(StreamOwned::new(conn, tcp));
                    loop {
                        let mut head = Vec::new();
                        while !head.ends_with(b"\r\n\r\n") {
                            match tls.read_until(b'\n', &mut head) {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                        }
                        let n = answered.fetch_add(1, Ordering::SeqCst);
                        let mut out = body.clone();
                        if corrupt_at == Some(n) {
                            *out.last_mut().unwrap() ^= 1;
                        }
                        let w = tls.get_mut();
                        let _ = write!(
                            w,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                            out.len()
                        );
                        let _ = w.write_all(&out);
                        let _ = w.flush();
                    }
                });
            }
        });
        (addr, pem)
    }

    fn target_for(addr: SocketAddr, pem: &str) -> Target {
        let path = std::env::temp_dir().join(format!(
            "tunnel-load-ca-{}-{}.pem",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(&path, pem).unwrap();
        let config = client_config(path.to_str().unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        Target {
            proxy: None,
            target: addr,
            config,
            io_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn keep_alive_and_churn_load_verify_every_body() {
        let body: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let (addr, pem) = origin(body.clone(), None);
        let target = target_for(addr, &pem);
        let body = Arc::new(body);
        let r = load(&target, "127.0.0.1", "/1k", body.clone(), 2, 0.3, false).unwrap();
        assert!(r.requests > 2, "{} requests", r.requests);
        assert_eq!(r.handshakes, 2, "keep-alive: one handshake per connection");
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n".len() as u64;
        assert_eq!(r.bytes, r.requests * (head + 1024));
        let r = load(&target, "127.0.0.1", "/1k", body, 2, 0.3, true).unwrap();
        assert_eq!(r.handshakes, r.requests, "churn: one handshake per request");
    }

    #[test]
    fn one_flipped_body_byte_fails_the_load() {
        let body = vec![b'x'; 64 * 1024];
        let (addr, pem) = origin(body.clone(), Some(5));
        let target = target_for(addr, &pem);
        let err = load(&target, "127.0.0.1", "/64k", Arc::new(body), 1, 10.0, false)
            .err()
            .unwrap();
        assert!(err.contains("after 5 requests"), "{err}");
        assert!(
            err.contains("body differs from the file at byte 65535"),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_for_another_name_fails_the_handshake() {
        let (addr, pem) = origin(b"ok".to_vec(), None);
        let target = target_for(addr, &pem);
        let err = target.open("other.test").err().unwrap();
        assert!(err.contains("TLS handshake (SNI other.test)"), "{err}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 99.0), 0);
    }

    #[test]
    fn a_trust_file_without_certificates_is_refused() {
        let path =
            std::env::temp_dir().join(format!("tunnel-load-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = client_config(path.to_str().unwrap()).err().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("no certificate"), "{err}");
    }
}
