//! Minting the certificate the client sees for an intercepted host.
//!
//! One leaf per host: P-256 with a fresh random key (never one key for all leaves: a leaked
//! leaf key then exposes one host, and a client pinning keys across hosts sees different
//! ones, as with real sites), `CN` and one SAN for the host (an IP SAN for an IP literal,
//! never a DNS SAN for an IP, which clients rightly reject), `serverAuth` only, valid from one
//! day before `now` (client clocks lag) for 30 days. Wall-clock time comes in as a value, so
//! tests pin it.
//!
//! ## Key components
//! - [`mint`]: host + CA + wall-clock time → [`Leaf`] (certificate and key, DER).
//! - [`LEAF_VALIDITY`], [`BACKDATE`]: the validity window.
//!
//! ## Error handling
//! [`MintError`] for a host that is no name or IP literal (the core never asks for one) or an
//! rcgen failure; the caller answers the tunnel with an error rather than a certificate.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use ringway_core::egress::{canonical, parse_host, HostKind};
use time::OffsetDateTime;

use super::ca::Ca;

/// How long a leaf is valid, counted from [`BACKDATE`] before its minting.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// How far before `now` a leaf's validity starts.
pub const BACKDATE: Duration = Duration::from_secs(86_400);

/// A minted leaf: its certificate and private key. `Debug` hides the key.
pub struct Leaf {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, ready to sign: rcgen parsed and checked it once when generating it,
    /// so the TLS layer signs with it directly instead of parsing its PKCS#8 again (one P-256
    /// scalar multiplication less per mint).
    pub key: KeyPair,
    /// When it was minted, for the cache's refresh.
    pub minted_at: SystemTime,
}

impl Leaf {
    /// The private key, PKCS#8 DER.
    // Used by the tests (a leaf written as PEM for an origin); the proxy signs with `key`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn key_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("cert_der_len", &self.cert_der.len())
            .field("key_der", &"[secret key elided]")
            .field("minted_at", &self.minted_at)
            .finish()
    }
}

/// Why no leaf was minted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MintError {
    /// The host is neither a name nor an IP literal.
    BadHost,
    /// rcgen refused (the message names why).
    Rcgen(String),
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintError::BadHost => f.write_str("host is neither a name nor an IP literal"),
            MintError::Rcgen(e) => write!(f, "minting a leaf: {e}"),
        }
    }
}

/// Wall-clock time as the type rcgen takes (the epoch for times before it).
pub fn to_offset(t: SystemTime) -> OffsetDateTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Mints a leaf for `host` (a name as the ClientHello's SNI gives it, or an IP literal in any
/// spelling the core accepts, with or without IPv6 brackets), signed by `ca`, at `now`.
pub fn mint(ca: &Ca, host: &str, now: SystemTime) -> Result<Leaf, MintError> {
    let host = host.trim_end_matches('.');
    let san = match parse_host(host) {
        HostKind::Ip(ip) => SanType::IpAddress(canonical(ip)),
        HostKind::Name if !host.is_empty() => SanType::DnsName(
            host.to_ascii_lowercase()
                .try_into()
                .map_err(|_| MintError::BadHost)?,
        ),
        _ => return Err(MintError::BadHost),
    };
    // Made ahead of time when the pool has one (see `keys`): fresh, and this leaf's alone.
    let key = super::keys::take().map_err(|e| MintError::Rcgen(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // CN is limited to 64 characters (RFC 5280 ub-common-name); clients use the SAN anyway.
    let cn = match &san {
        SanType::IpAddress(ip) => ip.to_string(),
        _ => host.to_ascii_lowercase(),
    };
    if cn.len() <= 64 {
        dn.push(DnType::CommonName, cn);
    }
    dn.push(DnType::OrganizationName, "Ringway interception");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![san];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let start = now.checked_sub(BACKDATE).unwrap_or(UNIX_EPOCH);
    params.not_before = to_offset(start);
    params.not_after = to_offset(start + LEAF_VALIDITY);
    let cert = params
        .signed_by(&key, ca.issuer())
        .map_err(|e| MintError::Rcgen(e.to_string()))?;
    Ok(Leaf {
        cert_der: cert.der().to_vec(),
        key,
        minted_at: now,
    })
}
