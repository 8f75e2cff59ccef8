//! SIGHUP reload: a changed rule refuses new requests while an open tunnel keeps flowing,
//! an invalid file is kept out (old rules stay, stderr says why, a failure is counted), and
//! an `--auth-file` change admits the new user and refuses the removed one.

use ringway_e2e::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

both_drivers!(
    changed_rule_refuses_new_tunnels_and_keeps_the_open_one,
    invalid_file_keeps_the_running_rules,
    auth_file_reload_swaps_users,
);

fn dir(test: &str, d: Driver) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringway-reload-{test}-{}-{}",
        std::process::id(),
        d.flag()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opens a CONNECT tunnel to `target` and checks the 200 head.
fn open_tunnel(p: &Proxy, target: SocketAddr) -> Conn {
    let mut c = p.connect();
    c.write(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes());
    assert_eq!(
        c.read_head(),
        b"HTTP/1.1 200 Connection Established\r\n\r\n"
    );
    c
}

fn refused_tunnel(p: &Proxy, target: SocketAddr) {
    let mut c = p.connect();
    c.write(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes());
    assert_canned(&c.read_to_eof(), "connect_port_denied");
}

fn echo_round(c: &mut Conn, bytes: &[u8]) {
    c.write(bytes);
    assert_eq!(c.read_exact(bytes.len()), bytes);
}

/// The value of one exact sample line prefix, e.g. `ringway_config_reloads_total{result="failure"}`.
fn sample(addr: SocketAddr, name: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

/// The file allows CONNECT to the echo server's port; after the file is changed to another
/// port and SIGHUP, a new CONNECT there gets 403 while the tunnel opened before keeps
/// relaying both ways. A restart-only change in the same file is reported as ignored.
fn changed_rule_refuses_new_tunnels_and_keeps_the_open_one(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let dir = dir("rule", d);
    let file = dir.join("ringway.toml");
    std::fs::write(&file, format!("connect_ports = \"{}\"\n", echo.addr.port())).unwrap();
    let p = Proxy::start(
        d,
        &[
            "--config",
            file.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let m = p.metrics_addr(WAIT);
    let mut open = open_tunnel(&p, echo.addr);
    echo_round(&mut open, b"before");
    std::fs::write(&file, "connect_ports = \"1\"\nmax_connections = 10\n").unwrap();
    p.sighup();
    p.wait_stderr(
        "ringway: SIGHUP: settings reloaded; new requests use them\n",
        WAIT,
    );
    assert!(
        p.stderr()
            .contains("ringway: SIGHUP: --max-connections changed; ignored until restart\n"),
        "{}",
        p.stderr()
    );
    refused_tunnel(&p, echo.addr);
    echo_round(&mut open, b"after the reload");
    open.shutdown_write();
    open.expect_eof();
    assert_eq!(
        sample(m, "ringway_config_reloads_total{result=\"success\"}"),
        "1"
    );
    assert_eq!(
        sample(m, "ringway_config_reloads_total{result=\"failure\"}"),
        "0"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file that no longer parses: stderr names the key and line, the old rule stays (a tunnel
/// to the allowed port still opens), and a failed reload is counted.
fn invalid_file_keeps_the_running_rules(d: Driver) {
    let echo = EchoServer::start(EchoMode::Echo);
    let dir = dir("invalid", d);
    let file = dir.join("ringway.toml");
    std::fs::write(&file, format!("connect_ports = \"{}\"\n", echo.addr.port())).unwrap();
    let p = Proxy::start(
        d,
        &[
            "--config",
            file.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let m = p.metrics_addr(WAIT);
    std::fs::write(&file, "\nconnect_ports = \"https\"\n").unwrap();
    p.sighup();
    p.wait_stderr(
        &format!(
            "ringway: SIGHUP: reload failed, keeping the running settings: --config {}: line 2: connect_ports: ",
            file.display()
        ),
        WAIT,
    );
    let mut c = open_tunnel(&p, echo.addr);
    echo_round(&mut c, b"still allowed");
    assert_eq!(
        sample(m, "ringway_config_reloads_total{result=\"failure\"}"),
        "1"
    );
    assert_eq!(
        sample(m, "ringway_config_reloads_total{result=\"success\"}"),
        "0"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// alice works and bob gets 407; after the users file is rewritten with bob only and SIGHUP,
/// bob works and alice gets 407, also on a keep-alive connection opened before the reload.
fn auth_file_reload_swaps_users(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let a = origin.authority();
    let dir = dir("auth", d);
    let users = dir.join("users");
    std::fs::write(&users, "alice:wonderland\n").unwrap();
    let p = Proxy::start(d, &["--auth-file", users.to_str().unwrap()]);
    // base64("alice:wonderland"), base64("bob:builder")
    let (alice, bob) = ("YWxpY2U6d29uZGVybGFuZA==", "Ym9iOmJ1aWxkZXI=");
    let status = |token: &str| {
        let mut c = p.connect();
        let req = head(&[
            &format!("GET http://{a}/ HTTP/1.1"),
            &format!("Host: {a}"),
            &format!("Proxy-Authorization: Basic {token}"),
        ]);
        Head::parse(&c.round_trip(&req)).status()
    };
    let alice_get = head(&[
        &format!("GET http://{a}/ HTTP/1.1"),
        &format!("Host: {a}"),
        &format!("Proxy-Authorization: Basic {alice}"),
    ]);
    assert_eq!((status(alice), status(bob)), (200, 407));
    // A keep-alive connection opened before the reload, idle at the time of it.
    let mut kept = p.connect();
    assert_bytes(&kept.round_trip(&alice_get), &ok_relayed(b"ok"), "before");
    std::fs::write(&users, "bob:builder\n").unwrap();
    p.sighup();
    p.wait_stderr(
        "ringway: SIGHUP: settings reloaded; new requests use them\n",
        WAIT,
    );
    assert_eq!((status(alice), status(bob)), (407, 200));
    let answer = kept.round_trip(&alice_get);
    assert_eq!(
        Head::parse(&answer).status(),
        407,
        "the next request on a connection opened before the reload gets the new users"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
