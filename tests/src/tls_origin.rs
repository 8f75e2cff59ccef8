//! The origin side of the TLS interception tests: a CA (made by `ringway ca-init`, so the
//! proxy's own code makes it) and a P-256 leaf for `localhost` signed by it with openssl
//! ([`origin_pki`]; [`sign_leaf`] signs more leaves, e.g. for the HTTPS listener), and a
//! local TLS origin serving with that leaf ([`PythonTlsOrigin`]: a Python `http.server`
//! script each test file writes for what it checks). The proxy is told to trust the
//! origin's CA with `--upstream-ca`.
//!
//! # Error handling
//! Panics naming the command and its stderr when `ringway ca-init`, openssl or python3
//! fails; the origin is killed on drop.

use crate::run_ringway;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
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
    sign_leaf(dir, "leaf", "DNS:localhost");
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

/// A TLS origin on 127.0.0.1: `python3 -c SCRIPT DIR/leaf.pem DIR/leaf-key.pem` (files from
/// [`origin_pki`]). SCRIPT binds port 0, serves TLS with that pair and prints the port as its
/// first stdout line. Killed on drop.
pub struct PythonTlsOrigin {
    child: Child,
    /// The port SCRIPT printed.
    pub port: u16,
}

impl PythonTlsOrigin {
    /// Starts SCRIPT with the leaf in `dir` and waits for its port line.
    pub fn start(script: &str, dir: &Path) -> PythonTlsOrigin {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(dir.join("leaf.pem"))
            .arg(dir.join("leaf-key.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("origin port");
        PythonTlsOrigin { child, port }
    }
}

impl Drop for PythonTlsOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
