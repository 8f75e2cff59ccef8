//! TLS interception (issue 12) end to end: `ringway ca-init` (files, modes, the refusal to
//! overwrite, what it prints) and, with openssl as the client's and origin's TLS, the flags.

use ringway_e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

const RUN: Duration = Duration::from_secs(20);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringway-e2e-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn ca_init_writes_a_private_key_and_refuses_to_overwrite() {
    let dir = scratch("ca-init");
    let d = dir.to_str().unwrap();
    let out = run_ringway(&["ca-init", "--dir", d], RUN);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = dir.join("ca-key.pem");
    let cert = dir.join("ca.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let cert_text = std::fs::read_to_string(&cert).unwrap();
    assert!(cert_text.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(
        stdout.starts_with("Created Ringway interception CA ("),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("certificate: {d}/ca.pem")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("private key: {d}/ca-key.pem (mode 0600)")));
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "the key itself is never printed"
    );

    // Again: refused (exit 2, one line), files untouched.
    let again = run_ringway(&["ca-init", "--dir", d], RUN);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), cert_text);
    // --force replaces it.
    let forced = run_ringway(&["ca-init", "--dir", d, "--force"], RUN);
    assert_eq!(forced.status.code(), Some(0));
    assert_ne!(std::fs::read_to_string(&cert).unwrap(), cert_text);
    // No directory: exit 2.
    let none = run_ringway(&["ca-init"], RUN);
    assert_eq!(none.status.code(), Some(2));
}
