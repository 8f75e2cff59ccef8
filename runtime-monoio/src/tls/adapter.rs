//! The one module that touches rustls: configurations, sessions driven from byte slices, the
//! upstream verifier, the key log. A rustls upgrade (0.24's caller-buffered API) is this file.
//!
//! Sessions hold no socket: ciphertext goes in with [`TlsSession::feed`] (which says how many
//! bytes it took; the caller keeps the rest for the next call, rustls-style), plaintext comes
//! out with [`TlsSession::read_plaintext`], plaintext to send goes in with
//! [`TlsSession::write_plaintext`] and ciphertext to send comes out with
//! [`TlsSession::take_ciphertext`]. The runtime moves the bytes between sockets and the core;
//! the tests move them between sessions in memory.
//!
//! ## Key components
//! - [`Interceptor`]: the CA, the leaf cache and both configurations; makes the client-facing
//!   session for an intercepted host ([`Interceptor::accept`]) and the origin-facing one
//!   ([`Interceptor::connect`]).
//! - [`ListenerTls`]: the HTTPS proxy listener's fixed certificate (`--tls-listen`).
//! - [`UpstreamTrust`]: system roots (rustls-native-certs: Debian's bundle, `SSL_CERT_FILE`)
//!   plus `--upstream-ca`, or `--insecure-upstream`.
//! - [`TlsFailure`]: why a session failed, classified for the Proxy-Status `error=` words.
//!
//! ## Error handling
//! Peer misbehaviour is a [`TlsFailure`] value (certificate vs protocol vs the peer's alert),
//! never a panic. Start-up problems (unreadable files, a key rustls cannot use) are `String`s
//! for the CLI's one-line error. No key material reaches a message: errors name files and
//! rustls' error kinds only, and the key log is written only where the operator asked.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::BufMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName, UnixTime,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, Error, KeyLog,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme,
};

use super::ca::{pem_blocks, Ca};
use super::cache::LeafCache;
use super::leaf::{self, MintError};

/// The only application protocol spoken inside: the core is HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A cached leaf is minted again once it is this old (it stays valid 29 days from minting).
pub const LEAF_REFRESH: Duration = Duration::from_secs(7 * 86_400);

/// The ring provider: it builds with a C compiler alone (aws-lc-rs needs cmake and more).
/// rustls 0.23.48 deprecates it for lacking post-quantum key exchange; clients still get
/// X25519 and P-256, and both legs stay on one provider.
///
/// Key exchange prefers X25519, then P-256, then P-384, as browsers and OpenSSL do. ring's
/// default list puts P-384 first, so every origin handshake sent a P-384 key share, and
/// ring's generic-bignum P-384 made that ECDH about half of an intercepted connection's CPU
/// (perf, bench/run tlschurn).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::{default_provider, kx_group};
    Arc::new(CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    })
}

/// Why a TLS session failed, reduced to what the proxy answers and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The peer's certificate is untrusted, expired, for another name, ...
    /// (`Proxy-Status: error=tls_certificate_error`).
    Certificate(String),
    /// The peer sent an alert: for the client leg, the client refused our leaf (a pinned
    /// app) or gave up (`reason=client_tls_abort`).
    PeerAlert(String),
    /// Anything else in the handshake or record layer (`error=tls_protocol_error`).
    Protocol(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::Certificate(d) => write!(f, "certificate: {d}"),
            TlsFailure::PeerAlert(d) => write!(f, "peer alert: {d}"),
            TlsFailure::Protocol(d) => write!(f, "protocol: {d}"),
        }
    }
}

impl From<Error> for TlsFailure {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidCertificate(c) => TlsFailure::Certificate(format!("{c:?}")),
            Error::AlertReceived(a) => TlsFailure::PeerAlert(format!("{a:?}")),
            other => TlsFailure::Protocol(other.to_string()),
        }
    }
}

/// What [`TlsSession::read_plaintext`] found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Plain {
    /// This many bytes were appended.
    Data(usize),
    /// Nothing decrypted yet: feed more ciphertext.
    Empty,
    /// The peer closed cleanly (close_notify).
    Closed,
}

/// One TLS session (either side) without a socket.
pub struct TlsSession {
    conn: Connection,
}

impl fmt::Debug for TlsSession {
    // Secrets live inside rustls; print only the state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("server", &matches!(self.conn, Connection::Server(_)))
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsSession {
    /// Wraps a rustls connection. Its send buffer is unbounded: a bounded one would refuse
    /// part of a write ([`write_plaintext`](Self::write_plaintext) says how much it took), and
    /// the callers bound what is in flight instead (a side is read only while the other's
    /// queue is empty, so a session holds at most one read's worth).
    fn new(mut conn: Connection) -> TlsSession {
        conn.set_buffer_limit(None);
        TlsSession { conn }
    }

    /// Takes ciphertext from the peer; returns how many bytes of `input` it consumed (the
    /// caller keeps the rest and feeds it after draining plaintext: rustls bounds its
    /// buffers). Processes the records at once, so plaintext and replies are ready after.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, TlsFailure> {
        let mut rest = input;
        while !rest.is_empty() {
            let n = match self.conn.read_tls(&mut rest) {
                Ok(n) => n,
                // Its buffers are full: the caller must drain plaintext first.
                Err(_) => break,
            };
            self.conn.process_new_packets()?;
            if n == 0 {
                break;
            }
        }
        Ok(input.len() - rest.len())
    }

    /// The peer's transport closed (TCP EOF).
    pub fn feed_eof(&mut self) -> Result<(), TlsFailure> {
        let _ = self.conn.read_tls(&mut &[][..]);
        self.conn.process_new_packets()?;
        Ok(())
    }

    /// Appends decrypted bytes to `out` (a `Vec<u8>` or a `BytesMut`), copied once, straight
    /// from rustls' buffer.
    pub fn read_plaintext<B: BufMut>(&mut self, out: &mut B) -> Plain {
        let mut taken = 0;
        loop {
            let mut reader = self.conn.reader();
            let n = match reader.fill_buf() {
                Ok([]) if taken == 0 => return Plain::Closed,
                Ok(chunk) if !chunk.is_empty() => {
                    out.put_slice(chunk);
                    chunk.len()
                }
                _ if taken > 0 => return Plain::Data(taken),
                _ => return Plain::Empty,
            };
            reader.consume(n);
            taken += n;
        }
    }

    /// Queues plaintext to encrypt; returns how much was taken (all of it, unless rustls'
    /// send buffer limit is reached: send the ciphertext and offer the rest again).
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// Appends the ciphertext to send to `out` (handshake and application records; a
    /// `Vec<u8>` or a `BytesMut`).
    pub fn take_ciphertext<B: BufMut>(&mut self, out: &mut B) {
        let mut out = out.writer();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Whether the handshake is still running.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Queues a close_notify alert (then [`take_ciphertext`](Self::take_ciphertext)).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    /// The negotiated ALPN protocol, if any.
    // Used by the tests now (and by the metrics once wired).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }
}

/// The key log: `--tls-key-log FILE`, else `SSLKEYLOGFILE`, else none. NSS format
/// (`LABEL client_random secret`, hex), appended, the file created with mode 0600.
pub struct FileKeyLog {
    file: Mutex<File>,
}

impl fmt::Debug for FileKeyLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKeyLog")
    }
}

impl FileKeyLog {
    /// Opens (creating with mode 0600) the key log at `path`, appending.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("--tls-key-log {}: {e}", path.display()))?;
        Ok(FileKeyLog {
            file: Mutex::new(file),
        })
    }

    /// The key log the flags and environment ask for: the flag wins over `SSLKEYLOGFILE`.
    pub fn from_settings(flag: Option<&Path>) -> Result<Option<Arc<FileKeyLog>>, String> {
        let env = std::env::var_os("SSLKEYLOGFILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        match flag.map(Path::to_path_buf).or(env) {
            Some(p) => Ok(Some(Arc::new(FileKeyLog::open(&p)?))),
            None => Ok(None),
        }
    }
}

impl KeyLog for FileKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let mut line =
            String::with_capacity(label.len() + 2 + 2 * (client_random.len() + secret.len()) + 1);
        line.push_str(label);
        line.push(' ');
        hex(&mut line, client_random);
        line.push(' ');
        hex(&mut line, secret);
        line.push('\n');
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

fn hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// How origins are verified.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTrust {
    /// `--upstream-ca FILE`s: extra trust anchors on top of the system roots.
    pub extra_ca_files: Vec<PathBuf>,
    /// `--insecure-upstream`: no verification at all.
    pub insecure: bool,
    /// Skip the system roots (tests: only `extra_ca_files` are trusted).
    pub no_system_roots: bool,
}

/// The trust anchors, and how many came from the system.
fn root_store(trust: &UpstreamTrust) -> Result<(RootCertStore, usize), String> {
    let mut roots = RootCertStore::empty();
    let mut system = 0;
    if !trust.no_system_roots {
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        system = added;
    }
    for path in &trust.extra_ca_files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--upstream-ca {}: {e}", path.display()))?;
        let certs = pem_blocks(&text, "CERTIFICATE");
        if certs.is_empty() {
            return Err(format!(
                "--upstream-ca {}: no PEM CERTIFICATE block",
                path.display()
            ));
        }
        for der in certs {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| format!("--upstream-ca {}: {e}", path.display()))?;
        }
    }
    Ok((roots, system))
}

/// `--insecure-upstream`: accepts any certificate, still checks the handshake signatures (so
/// the session is at least bound to the certificate the origin sent).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Presents the one leaf minted for this connection's host.
#[derive(Debug)]
struct OneLeaf(Arc<CertifiedKey>);

impl ResolvesServerCert for OneLeaf {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A minted leaf's key as rustls signs with it: rcgen's P-256 key pair itself. Loading the
/// PKCS#8 through the provider instead would parse and check the new key a second time (a
/// P-256 scalar multiplication, about a fifth of a mint, on the first visit's handshake).
/// `Debug` names the algorithm only.
struct MintedKey(Arc<rcgen::KeyPair>);

impl fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MintedKey(ECDSA P-256)")
    }
}

impl SigningKey for MintedKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(MintedSigner(self.0.clone())) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ECDSA
    }
}

/// One handshake's signer for a [`MintedKey`]: ECDSA P-256 with SHA-256, ASN.1 DER signature
/// (what TLS carries), via ring as rustls' own signer does.
struct MintedSigner(Arc<rcgen::KeyPair>);

impl fmt::Debug for MintedSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MintedSigner(ECDSA P-256)")
    }
}

impl Signer for MintedSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        rcgen::SigningKey::sign(&*self.0, message)
            .map_err(|e| Error::General(format!("signing with a minted leaf: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// A minted leaf as rustls holds it (certificate chain + signing key), with its minting time
/// for the cache's refresh. `Debug` comes from rustls, which prints no key material.
#[derive(Debug)]
pub struct ServedLeaf {
    certified: Arc<CertifiedKey>,
    minted_at: SystemTime,
}

/// Everything interception needs, built once at start-up and shared by every worker.
pub struct Interceptor {
    ca: Ca,
    cache: LeafCache<ServedLeaf, MintError>,
    /// The client-facing template: each connection clones it with its own leaf.
    server: ServerConfig,
    upstream: Arc<ClientConfig>,
    system_roots: usize,
}

impl fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interceptor")
            .field("ca", &self.ca)
            .field("cache_capacity", &self.cache.capacity())
            .field("system_roots", &self.system_roots)
            .finish_non_exhaustive()
    }
}

impl Interceptor {
    /// Builds the interceptor: the CA, a leaf cache of `cache_size` hosts, how origins are
    /// verified, and the key log (if any).
    pub fn new(
        ca: Ca,
        cache_size: usize,
        trust: &UpstreamTrust,
        key_log: Option<Arc<FileKeyLog>>,
    ) -> Result<Self, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let (mut upstream, system_roots) = if trust.insecure {
            let c = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
                .with_no_client_auth();
            (c, 0)
        } else {
            let (roots, system) = root_store(trust)?;
            (
                builder.with_root_certificates(roots).with_no_client_auth(),
                system,
            )
        };
        upstream.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
        server.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        if let Some(log) = key_log {
            upstream.key_log = log.clone();
            server.key_log = log;
        }
        Ok(Interceptor {
            ca,
            cache: LeafCache::new(cache_size),
            server,
            upstream: Arc::new(upstream),
            system_roots,
        })
    }

    /// How many trust anchors came from the system store (for the start-up line).
    pub fn system_roots(&self) -> usize {
        self.system_roots
    }

    /// The CA, for the start-up line.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// How many leaves are cached now.
    // Used by the tests now (and by the metrics once wired).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn cached_leaves(&self) -> usize {
        self.cache.len()
    }

    /// The leaf for `host` from the cache, minted at `now` if absent or older than
    /// [`LEAF_REFRESH`].
    pub fn leaf(&self, host: &str, now: SystemTime) -> Result<Arc<ServedLeaf>, MintError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.cache.get_or_mint(
            &host,
            |old| {
                now.duration_since(old.minted_at)
                    .is_ok_and(|age| age >= LEAF_REFRESH)
            },
            || {
                let leaf = leaf::mint(&self.ca, &host, now)?;
                let key: Arc<dyn SigningKey> = Arc::new(MintedKey(Arc::new(leaf.key)));
                Ok(ServedLeaf {
                    certified: Arc::new(CertifiedKey::new(
                        vec![CertificateDer::from(leaf.cert_der)],
                        key,
                    )),
                    minted_at: leaf.minted_at,
                })
            },
        )
    }

    /// The client-facing session for an intercepted tunnel, presenting the leaf for
    /// `leaf_host` (the core's `Decision::Intercept`).
    pub fn accept(&self, leaf_host: &str, now: SystemTime) -> Result<TlsSession, TlsFailure> {
        let leaf = self
            .leaf(leaf_host, now)
            .map_err(|e| TlsFailure::Certificate(e.to_string()))?;
        let mut config = self.server.clone();
        config.cert_resolver = Arc::new(OneLeaf(leaf.certified.clone()));
        let conn = ServerConnection::new(Arc::new(config))?;
        Ok(TlsSession::new(Connection::Server(conn)))
    }

    /// The origin-facing session to `host` (the CONNECT host: a name, or an IP literal with
    /// or without brackets), verified as configured. SNI is sent for names only.
    pub fn connect(&self, host: &str) -> Result<TlsSession, TlsFailure> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| TlsFailure::Protocol(format!("{host:?} is not a server name")))?;
        let conn = ClientConnection::new(self.upstream.clone(), name)?;
        Ok(TlsSession::new(Connection::Client(conn)))
    }
}

/// The HTTPS proxy listener's certificate (`--tls-listen`, `--tls-cert`, `--tls-key`).
pub struct ListenerTls {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ListenerTls")
    }
}

/// The private key in a PEM file: PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(der) = pem_blocks(&text, "PRIVATE KEY").into_iter().next() {
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)));
    }
    if let Some(der) = pem_blocks(&text, "EC PRIVATE KEY").into_iter().next() {
        return Ok(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)));
    }
    if let Some(der) = pem_blocks(&text, "RSA PRIVATE KEY").into_iter().next() {
        return Ok(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)));
    }
    Err(format!("{}: no PEM private key", path.display()))
}

impl ListenerTls {
    /// Loads the certificate chain and key; a key that does not match is an error here, at
    /// start-up, not at the first handshake.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        key_log: Option<Arc<FileKeyLog>>,
    ) -> Result<Self, String> {
        let mut text = String::new();
        File::open(cert)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
        let chain: Vec<CertificateDer<'static>> = pem_blocks(&text, "CERTIFICATE")
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        if chain.is_empty() {
            return Err(format!(
                "--tls-cert {}: no PEM CERTIFICATE block",
                cert.display()
            ));
        }
        let key_path = key;
        let key = read_private_key(key).map_err(|e| format!("--tls-key {e}"))?;
        let provider = provider();
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("--tls-key {}: {e}", key_path.display()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|_| "--tls-key does not match --tls-cert".to_string())?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneLeaf(Arc::new(certified))));
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        if let Some(log) = key_log {
            config.key_log = log;
        }
        Ok(ListenerTls {
            config: Arc::new(config),
        })
    }

    /// A session for one accepted client.
    pub fn accept(&self) -> Result<TlsSession, TlsFailure> {
        Ok(TlsSession::new(Connection::Server(ServerConnection::new(
            self.config.clone(),
        )?)))
    }
}

/// A plain rustls client for the in-memory tests (the browser's side), trusting `roots`.
#[cfg(test)]
pub fn test_client(roots: &[&[u8]], host: &str, alpn: &[&[u8]]) -> TlsSession {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(CertificateDer::from(r.to_vec())).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name = ServerName::try_from(host.to_string()).unwrap();
    TlsSession::new(Connection::Client(
        ClientConnection::new(Arc::new(config), name).unwrap(),
    ))
}

/// The peer's end-entity certificate, DER (for the tests' checks of the minted leaf).
#[cfg(test)]
pub fn peer_leaf(session: &TlsSession) -> Option<Vec<u8>> {
    session
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
}
