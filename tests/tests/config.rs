//! `--config FILE` and `--check-config`: a TOML file's settings take effect, flags on the
//! command line replace them (lists included), errors name the key and line and exit 2.

use ringway_e2e::*;
use std::path::PathBuf;
use std::time::Duration;

const RUN: Duration = Duration::from_secs(10);

both_drivers!(
    file_settings_apply_and_the_command_line_replaces_them,
    bad_files_exit_2_naming_key_and_line,
    check_config_prints_settings_and_exits_0,
    the_deploy_example_is_valid,
);

/// A fresh directory for this test's files.
fn dir(test: &str, d: Driver) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringway-config-{test}-{}-{}",
        std::process::id(),
        d.flag()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The file admits only 10.0.0.0/8, so a loopback client gets 403; the same file with
/// `--allow-client 127.0.0.1` on the command line admits it (the file's list is replaced,
/// not extended), and the file's other setting (`connect_ports`) still holds.
fn file_settings_apply_and_the_command_line_replaces_them(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let a = origin.authority();
    let dir = dir("apply", d);
    let file = dir.join("ringway.toml");
    std::fs::write(
        &file,
        "# loopback clients are not in the list\nallow_client = [\"10.0.0.0/8\"]\n\
         connect_ports = \"1\"\naccess_log_format = \"text\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let p = Proxy::start(d, &["--config", path]);
    let mut c = p.connect();
    let denied = c.round_trip(&proxy_get(&a, "/"));
    assert_bytes(&denied, &canned("client_denied"), "file's allow_client");
    drop(p);

    let p = Proxy::start(d, &["--config", path, "--allow-client", "127.0.0.1"]);
    let mut c = p.connect();
    let resp = c.round_trip(&proxy_get(&a, "/"));
    assert_bytes(&resp, &ok_relayed(b"ok"), "command line's allow_client");
    let mut c = p.connect();
    let connect = format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n");
    c.write(connect.as_bytes());
    let refused = c.read_to_eof();
    assert_bytes(
        &refused,
        &canned("connect_port_denied"),
        "file's connect_ports",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn bad_files_exit_2_naming_key_and_line(d: Driver) {
    let dir = dir("bad", d);
    for (name, text, expected) in [
        (
            "unknown.toml",
            "threads = 1\nbogus_flag = 2\n",
            "line 2: bogus_flag: unknown key (there is no flag --bogus-flag)",
        ),
        (
            "value.toml",
            "\n\nconnect_ports = \"https\"\n",
            "line 3: connect_ports: Error parsing option '--connect-ports' with value 'https'",
        ),
        (
            "zero.toml",
            "max_connections = 0\n",
            "line 1: max_connections: --max-connections: must be at least 1",
        ),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out = run_ringway(
            &["--driver", d.flag(), "--config", file.to_str().unwrap()],
            RUN,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let start = format!("ringway: --config {}: {expected}", file.display());
        assert!(stderr.starts_with(&start), "{name}: {stderr:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
        assert!(out.stdout.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_config_prints_settings_and_exits_0(d: Driver) {
    let dir = dir("check", d);
    let file = dir.join("ringway.toml");
    std::fs::write(&file, "threads = 3\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let path = file.to_str().unwrap();
    let out = run_ringway(
        &["--driver", d.flag(), "--config", path, "--check-config"],
        RUN,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("ringway: configuration OK\n"),
        "{stdout}"
    );
    assert!(stdout.contains("threads: 3,"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:0"), "{stdout}");
    let out = run_ringway(&["--config", path, "--threads", "0", "--check-config"], RUN);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ringway: --threads: must be at least 1\n",
        "a command-line value is not blamed on the file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/deploy/ringway.toml, as shipped, passes `--check-config` with the settings it shows.
fn the_deploy_example_is_valid(d: Driver) {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy/ringway.toml");
    let out = run_ringway(
        &[
            "--driver",
            d.flag(),
            "--config",
            file.to_str().unwrap(),
            "--check-config",
        ],
        RUN,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("ringway: configuration OK\n"),
        "{stdout}"
    );
    for shown in [
        "[::1]:3128",
        "access_log_format: Json",
        "127.0.0.1:9090",
        "8443",
    ] {
        assert!(stdout.contains(shown), "{shown} not in {stdout}");
    }
}
