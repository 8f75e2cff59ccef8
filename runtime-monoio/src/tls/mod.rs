//! TLS for interception and for the HTTPS proxy listener: the CA, minted leaves, their
//! cache, and TLS sessions without sockets. Issue 12.
//!
//! ## Key components
//! - [`ca`]: `ringway ca-init`, loading `--ca-cert`/`--ca-key` (rcgen, x509-parser).
//! - [`leaf`]: minting the certificate the client sees (rcgen).
//! - [`keys`]: fresh leaf keys made ahead of time by an idle-priority thread.
//! - [`cache`]: the bounded LRU of leaves, one mint per host however many ask at once.
//! - [`front`]: the HTTPS proxy listener (`--tls-listen`): its certificate (reloaded on
//!   SIGHUP) and the TLS state of a client socket, which reads and writes plaintext above.
//! - [`adapter`]: everything that touches rustls (sessions driven from byte slices, configs,
//!   upstream verification, the key log), so a rustls upgrade is one file.
//!
//! What to intercept is decided in the core (`ringway_core::client_hello`,
//! `ringway_core::intercept`); this module only carries it out.
//!
//! ## Error handling
//! Start-up problems are one-line `String`/[`ca::CaError`] messages for exit status 2; a peer's
//! TLS failure is an [`adapter::TlsFailure`] value the connection turns into an answer. Key
//! material never reaches a log line, a panic or a `Debug` output.

pub mod adapter;
pub mod ca;
pub mod cache;
pub mod front;
pub mod intercepted;
pub mod keys;
pub mod leaf;
#[cfg(test)]
pub(crate) mod tests;

/// Reads the CA, the trust anchors and the key log named by the flags and builds the
/// interception setup, warning loudly on stderr when origins go unverified. The error is one
/// line for exit status 2.
pub fn start(flags: &crate::cli::InterceptFlags) -> Result<intercepted::Setup, String> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let source = (flags.clone(), files_hash(flags)?);
    let cert = read("--ca-cert", &flags.ca_cert)?;
    let key = read("--ca-key", &flags.ca_key)?;
    let ca = ca::Ca::from_pem(&cert, &key).map_err(|e| e.to_string())?;
    let trust = adapter::UpstreamTrust {
        extra_ca_files: flags.upstream_ca.clone(),
        insecure: flags.insecure_upstream,
        no_system_roots: false,
    };
    let key_log = adapter::FileKeyLog::from_settings(flags.tls_key_log.as_deref())?;
    let logging_keys = key_log.is_some();
    let interceptor = adapter::Interceptor::new(ca, flags.cert_cache, &trust, key_log)?;
    // Interception is on: first visits take their leaf key from the pool from now on.
    keys::start_pool();
    if flags.insecure_upstream {
        say!(
            "ringway: WARNING: --insecure-upstream: intercepted origins are NOT verified; anyone on the path to them can read and change the traffic"
        );
    } else if interceptor.system_roots() == 0 && flags.upstream_ca.is_empty() {
        say!("ringway: warning: no system trust anchors found (SSL_CERT_FILE?) and no --upstream-ca: every intercepted origin will fail verification");
    }
    if logging_keys {
        say!("ringway: writing TLS key log (secrets of intercepted connections)");
    }
    say!(
        "ringway: intercepting {} pattern{} with {}",
        flags.patterns.len(),
        if flags.patterns.len() == 1 { "" } else { "s" },
        interceptor.ca().subject()
    );
    Ok(intercepted::Setup {
        patterns: flags.patterns.clone(),
        interceptor,
        insecure: flags.insecure_upstream,
        source: Some(source),
    })
}

/// A hash of the files the interception flags name (CA, key, extra trust anchors), so a
/// reload can tell whether anything changed.
fn files_hash(flags: &crate::cli::InterceptFlags) -> Result<u64, String> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let named = [("--ca-cert", &flags.ca_cert), ("--ca-key", &flags.ca_key)];
    let extra = flags.upstream_ca.iter().map(|p| ("--upstream-ca", p));
    for (flag, path) in named.into_iter().chain(extra) {
        let bytes = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        bytes.hash(&mut hasher);
    }
    Ok(hasher.finish())
}

/// SIGHUP: the interception setup the new flags ask for, built (every file read and
/// checked as at start-up) only if the flags or the files differ from the running setup's.
/// `Ok(None)`: unchanged, keep it (and its leaf cache); `Ok(Some(new))`: publish `new`
/// with [`intercepted::publish`] (`Some(None)`: interception is now off). An error (an
/// unreadable file, a key that does not match) keeps the running setup.
pub fn reload_setup(
    flags: Option<&crate::cli::InterceptFlags>,
) -> Result<Option<Option<std::sync::Arc<intercepted::Setup>>>, String> {
    let running = intercepted::current();
    let Some(flags) = flags else {
        return Ok(running.is_some().then_some(None));
    };
    if let Some((old_flags, old_files)) = running.as_ref().and_then(|s| s.source.as_ref()) {
        if old_flags == flags && *old_files == files_hash(flags)? {
            return Ok(None);
        }
    }
    Ok(Some(Some(std::sync::Arc::new(start(flags)?))))
}
