//! The interception CA: made by `ringway ca-init`, loaded from `--ca-cert`/`--ca-key`, and
//! used to sign every minted leaf ([`super::leaf`]).
//!
//! The CA key is a master key to every intercepted site, so: it is never built in or shared
//! (each operator makes their own), its file and the certificate's are created with mode 0600
//! (never world-readable for an instant: `O_CREAT|O_EXCL` with the mode, not chmod after;
//! the operator publishes the certificate deliberately, see [`trust_instructions`]), and it
//! never reaches a
//! log line, a panic message or a `Debug` output ([`Ca`]'s `Debug` prints the subject only).
//!
//! ## Key components
//! - [`Ca::generate`]: a fresh P-256 CA valid 10 years, named
//!   `Ringway interception CA (<host name>, <date>)`.
//! - [`Ca::from_pem`]: an existing CA (ours or the operator's own), its subject and key
//!   identifier read from the certificate so leaves chain to it exactly.
//! - [`write_files`] / [`init_command`]: `ringway ca-init --dir DIR [--force]`.
//!
//! ## Error handling
//! Everything returns [`CaError`], one line for the operator naming the file; the CLI turns
//! it into exit status 2, a key that does not match the certificate included.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use super::leaf::to_offset;

/// How long a CA made by `ca-init` is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A CA failure, for the operator: one line naming the file or the step.
#[derive(Debug)]
pub struct CaError(pub String);

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaError {}

/// The interception CA in memory: what signs leaves, and its certificate (DER) for checks.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    // Read by the tests (chains of minted leaves are checked against it).
    #[cfg_attr(not(test), allow(dead_code))]
    cert_der: Vec<u8>,
    subject: String,
}

impl fmt::Debug for Ca {
    // The key stays out: only the subject is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A CA as PEM text, as `ca-init` writes it. `Debug` hides the key.
pub struct CaPem {
    /// The certificate.
    pub cert: String,
    /// The PKCS#8 private key.
    pub key: String,
}

impl fmt::Debug for CaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaPem")
            .field("cert", &self.cert)
            .field("key", &"[secret key elided]")
            .finish()
    }
}

/// The CA's name: `Ringway interception CA (<host name>, <YYYY-MM-DD>)`, so an operator who
/// finds it in a trust store knows where it came from and when.
pub fn ca_name(host: &str, now: SystemTime) -> String {
    let stamp = crate::wallclock::Stamp::at(now);
    format!(
        "Ringway interception CA ({host}, {})",
        &stamp.as_str()[..10]
    )
}

impl Ca {
    /// A fresh CA: P-256, valid from `now` minus one day (clocks of clients lag) for 10 years,
    /// `CA:true, pathlen:0` (it signs leaves only), key usage keyCertSign + cRLSign.
    pub fn generate(host: &str, now: SystemTime) -> Result<(Ca, CaPem), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError(format!("generating the CA key: {e}")))?;
        let subject = ca_name(host, now);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject.clone());
        dn.push(DnType::OrganizationName, "Ringway");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let start = now - Duration::from_secs(86_400);
        params.not_before = to_offset(start);
        params.not_after = to_offset(start + CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError(format!("signing the CA certificate: {e}")))?;
        let pem = CaPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        let ca = Ca {
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            subject,
        };
        Ok((ca, pem))
    }

    /// Loads a CA from PEM text (`--ca-cert`, `--ca-key`). Any CA works, not only ours: its
    /// subject and key-identifier method are read from the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|_| {
            CaError(
                "--ca-key: not a PEM private key rcgen can use (PKCS#8 or SEC1 EC, RSA, Ed25519)"
                    .into(),
            )
        })?;
        let der = pem_block(cert_pem, "CERTIFICATE")
            .ok_or_else(|| CaError("--ca-cert: no PEM CERTIFICATE block".into()))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CaError(format!("--ca-cert: not an X.509 certificate: {e}")))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError(
                "--ca-key does not match --ca-cert (their public keys differ)".into(),
            ));
        }
        if !x509.is_ca() {
            return Err(CaError(
                "--ca-cert is not a CA certificate (basicConstraints CA:false)".into(),
            ));
        }
        let subject = x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("(no common name)")
            .to_string();
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)
            .map_err(|e| CaError(format!("--ca-cert: {e}")))?;
        Ok(Ca {
            issuer,
            cert_der: der,
            subject,
        })
    }

    /// What signs leaves.
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA certificate, DER.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The common name, for the start-up line.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// The first PEM block labelled `label`, decoded.
pub fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    pem_blocks(text, label).into_iter().next()
}

/// Every PEM block labelled exactly `label`, decoded, in order (undecodable ones skipped).
pub fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&begin) {
        let body = &rest[at + begin.len()..];
        let Some(stop) = body.find(&end) else { break };
        if let Some(der) = base64_decode(&body[..stop]) {
            out.push(der);
        }
        rest = &body[stop + end.len()..];
    }
    out
}

/// Standard base64 with whitespace ignored (PEM bodies).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' | b' ' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Creates `path` with `mode` and writes `data`; with `force`, an existing file is removed
/// first (so the new one gets `mode` from its creation, whatever the old one had).
fn create_with_mode(path: &Path, data: &[u8], mode: u32, force: bool) -> Result<(), CaError> {
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CaError(format!("{}: {e}", path.display()))),
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CaError(format!(
                    "{} exists; refusing to overwrite a CA (pass --force to replace it)",
                    path.display()
                ))
            } else {
                CaError(format!("{}: {e}", path.display()))
            }
        })?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| CaError(format!("{}: {e}", path.display())))
}

/// Writes `DIR/ca.pem` and `DIR/ca-key.pem`, both mode 0600 from creation (issue 12: the
/// certificate is not secret, but which CA a proxy uses is the operator's to publish; the
/// trust instructions copy it with `install -m 0644`). Without `force`, refuses if either exists
/// (checked before anything is written, so a refusal leaves the directory as it was).
pub fn write_files(dir: &Path, pem: &CaPem, force: bool) -> Result<(PathBuf, PathBuf), CaError> {
    let cert = dir.join("ca.pem");
    let key = dir.join("ca-key.pem");
    if !force {
        for p in [&cert, &key] {
            if p.exists() {
                return Err(CaError(format!(
                    "{} exists; refusing to overwrite a CA (pass --force to replace it)",
                    p.display()
                )));
            }
        }
    }
    create_with_mode(&key, pem.key.as_bytes(), 0o600, force)?;
    create_with_mode(&cert, pem.cert.as_bytes(), 0o600, force)?;
    Ok((cert, key))
}

/// This machine's host name, for the CA's name (`localhost` if it cannot be read).
pub fn host_name() -> String {
    // std has no gethostname; Linux has it in /proc (no unsafe libc call needed).
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `ringway ca-init --dir DIR [--force]`: makes a CA, writes it, prints the paths and how to
/// trust it. Returns the text for stdout, or the error line (exit 2).
pub fn init_command(args: &[&str]) -> Result<String, CaError> {
    let mut dir: Option<PathBuf> = None;
    let mut force = false;
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "--dir" => {
                dir = Some(PathBuf::from(it.next().ok_or_else(|| {
                    CaError("ca-init: --dir needs a directory".into())
                })?))
            }
            "--force" => force = true,
            "--help" | "-h" => return Ok(INIT_HELP.to_string()),
            other => {
                return Err(CaError(format!(
                "ca-init: unknown argument {other:?} (usage: ringway ca-init --dir DIR [--force])"
            )))
            }
        }
    }
    let dir = dir.ok_or_else(|| CaError("ca-init: --dir DIR is required".into()))?;
    if !dir.is_dir() {
        return Err(CaError(format!(
            "ca-init: {} is not a directory",
            dir.display()
        )));
    }
    let (ca, pem) = Ca::generate(&host_name(), SystemTime::now())?;
    let (cert, key) = write_files(&dir, &pem, force)?;
    Ok(trust_instructions(ca.subject(), &cert, &key))
}

const INIT_HELP: &str = "Usage: ringway ca-init --dir DIR [--force]\n\n\
Makes a new interception CA (P-256, valid 10 years) and writes DIR/ca.pem and DIR/ca-key.pem\n\
(both mode 0600). Refuses to overwrite an existing CA unless --force is given.\n";

/// What `ca-init` prints: the files, then how to trust the CA in the usual places.
pub fn trust_instructions(subject: &str, cert: &Path, key: &Path) -> String {
    let (c, k) = (cert.display(), key.display());
    format!(
        "Created {subject}\n  certificate: {c} (mode 0600)\n  private key: {k} (mode 0600)\n\n\
Start the proxy with: ringway --ca-cert {c} --ca-key {k} --intercept PATTERN\n\n\
The private key can impersonate every site this proxy intercepts: keep it on this machine,\n\
readable only by the proxy's user. Trust the certificate (not the key) in clients:\n\
  Debian/Ubuntu: sudo install -m 0644 {c} /usr/local/share/ca-certificates/ringway.crt && sudo update-ca-certificates\n\
  Firefox/Chromium (NSS): certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n ringway -i {c}\n\
  curl: curl --cacert {c} ...\n\
  Python requests: REQUESTS_CA_BUNDLE={c}\n"
    )
}
