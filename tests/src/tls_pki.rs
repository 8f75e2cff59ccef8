//! The origin side of the TLS interception tests: a CA (made by `ringway ca-init`, so the
//! proxy's own code makes it) and a P-256 leaf for `localhost` signed by it with openssl, for
//! a local TLS origin the proxy is told to trust with `--upstream-ca`.
//!
//! # Error handling
//! Panics naming the command and its stderr when `ringway ca-init` or openssl fails.

use crate::run_ringway;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs a helper command to completion; panics with its stderr if it fails.
fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run helper");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (made by `ringway ca-init`) in `dir`, and a P-256 leaf for `localhost` signed by it
/// (openssl): `dir/ca.pem`, `dir/leaf.pem`, `dir/leaf-key.pem`.
pub fn origin_pki(dir: &Path) {
    let d = dir.to_str().unwrap();
    let out = run_ringway(&["ca-init", "--dir", d], Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0));
    sh(Command::new("openssl").current_dir(dir).args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf-key.pem",
        "-subj",
        "/CN=localhost",
        "-out",
        "leaf.csr",
    ]));
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "leaf.pem",
        "-extfile",
        "ext",
    ]));
}
