//! The files the TLS end-to-end tests stand on: a fresh scratch directory per test
//! ([`scratch`]), a CA made by `ringway ca-init` (so the proxy's own code makes it:
//! [`ca_init`]), P-256 leaves signed by it with openssl ([`sign_leaf`], [`origin_pki`],
//! [`listener_leaf`]), and the usual pair of an origin's PKI and the proxy's CA side by side
//! ([`origin_and_proxy_pki`]). One copy here so every TLS test file makes its certificates
//! the same way.
//!
//! # Error handling
//! Panics naming the command and its stderr when `ringway ca-init` or openssl fails, and on
//! any file-system error: a test cannot go on without its certificates.

use crate::run_ringway;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long `ringway ca-init` may take.
const CA_INIT: Duration = Duration::from_secs(20);

/// A fresh, empty `TMP/ringway-e2e-SUITE-PID-NAME`: SUITE names the test file and NAME the
/// test (with its driver), so parallel tests and runs never share files. Whatever a
/// previous run of this process id left there is removed first.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ringway-e2e-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a helper command to completion; panics with its stderr if it fails.
fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run helper");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ringway ca-init --dir DIR`, which must succeed: `dir/ca.pem` and `dir/ca-key.pem`, made
/// by the proxy's own code rather than by the test.
pub fn ca_init(dir: &Path) {
    let out = run_ringway(&["ca-init", "--dir", dir.to_str().unwrap()], CA_INIT);
    assert_eq!(out.status.code(), Some(0));
}

/// A CA (made by `ringway ca-init`) in `dir`, and a P-256 leaf for `localhost` signed by it
/// (openssl): `dir/ca.pem`, `dir/leaf.pem`, `dir/leaf-key.pem`. What a TLS origin serves.
pub fn origin_pki(dir: &Path) {
    ca_init(dir);
    sign_leaf(dir, "leaf", "DNS:localhost");
}

/// The layout most interception tests use: `dir/origin` holds the origin's CA and leaf
/// ([`origin_pki`], given to the proxy with `--upstream-ca`), `dir/proxy` the proxy's own
/// interception CA ([`ca_init`]); two CAs, so a test sees which one a client was shown.
pub fn origin_and_proxy_pki(dir: &Path) {
    std::fs::create_dir_all(dir.join("origin")).unwrap();
    std::fs::create_dir_all(dir.join("proxy")).unwrap();
    origin_pki(&dir.join("origin"));
    ca_init(&dir.join("proxy"));
}

/// The HTTPS listener's certificate from the CA in `dir`, for `localhost` and 127.0.0.1:
/// `dir/listener.pem` and `dir/listener-key.pem`. From the proxy's CA, one trusted file
/// covers both the listener and the leaves the proxy mints.
pub fn listener_leaf(dir: &Path) {
    sign_leaf(dir, "listener", "DNS:localhost,IP:127.0.0.1");
}

/// A P-256 leaf (CN `localhost`, server auth, valid 2 days) signed by the CA in `dir`
/// (`dir/ca.pem`, `dir/ca-key.pem`) for the subject alternative names `san` (openssl syntax,
/// e.g. `DNS:localhost,IP:127.0.0.1`): `dir/STEM.pem` and `dir/STEM-key.pem`.
pub fn sign_leaf(dir: &Path, stem: &str, san: &str) {
    let (key, csr, ext) = (
        format!("{stem}-key.pem"),
        format!("{stem}.csr"),
        format!("{stem}.ext"),
    );
    sh(Command::new("openssl").current_dir(dir).args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        "/CN=localhost",
        "-out",
        &csr,
    ]));
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    sh(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &format!("{stem}.pem"),
        "-extfile",
        &ext,
    ]));
}
