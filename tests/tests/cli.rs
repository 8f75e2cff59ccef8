//! The command line: --help, bad flag values (exit 2, flag named), the exact first stdout
//! line, access-log destinations, a clear failure when the port is already taken, and the
//! pool and shutdown settings (--pool-idle-timeout, --shutdown-grace).

use ringway_e2e::*;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(10);

both_drivers!(
    help_exits_zero,
    bad_flag_values_exit_2,
    banner_exact,
    access_log_to_file,
    port_in_use_by_other_socket,
    port_in_use_by_other_ringway,
    access_log_off,
    two_listen_addresses,
    port_zero_start_is_reliable,
    pool_idle_timeout_zero_never_reuses,
    shutdown_grace_bounds_the_drain,
    sighup_reopens_the_access_log,
    sighup_without_a_log_file_changes_nothing,
);

fn help_exits_zero(d: Driver) {
    let out = run_ringway(&["--driver", d.flag(), "--help"], RUN);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--driver",
        "--connect-ports",
        "--allow-client",
        "--access-log",
        "--connect-timeout",
        "--header-timeout",
        "--pool-idle-timeout",
        "--shutdown-grace",
        "--max-header-fields",
        "--dns-timeout",
        "--upstream-proxy",
        "--no-upstream-proxy",
        "--via-name",
    ] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}:\n{text}"
        );
    }
}

/// Each bad value: exit status 2 and a one-line error on stderr naming the flag.
fn bad_flag_values_exit_2(d: Driver) {
    let cases: &[(&str, &str)] = &[
        ("--threads", "abc"),
        ("--listen", "not-an-address"),
        ("--driver", "kqueue"),
        ("--connect-ports", "https"),
        ("--allow-client", "10.0.0.0/99"),
        ("--connect-timeout", "soon"),
        ("--header-timeout", "-1s"),
        ("--idle-timeout", "1 parsec"),
        ("--tunnel-idle-timeout", "x"),
        ("--pool-idle-timeout", "soon"),
        ("--shutdown-grace", "-1s"),
        ("--max-connections", "-5"),
        ("--max-header-fields", "0"),
        ("--max-header-fields", "5000"),
        ("--dns-timeout", "0s"),
        ("--upstream-proxy", "https://proxy:3128"),
        ("--upstream-proxy", "http://proxy"),
        ("--no-upstream-proxy", "*.example.com"),
        ("--via-name", "two words"),
    ];
    let mut problems = Vec::new();
    for (flag, value) in cases {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        if *flag != "--driver" {
            args.extend(["--driver", d.flag()]);
        }
        if *flag == "--listen" {
            args.clear();
            args.extend(["--driver", d.flag()]);
        }
        args.extend([*flag, *value]);
        let out = run_ringway(&args, RUN);
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        if out.status.code() != Some(2) || lines.len() != 1 || !lines[0].contains(flag) {
            problems.push(format!(
                "{flag} {value:?}: status {:?}, stderr {err:?}",
                out.status.code()
            ));
        }
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "{flag} {value:?} started anyway"
        );
    }
    assert!(
        problems.is_empty(),
        "bad flag values must exit 2 with one stderr line naming the flag:\n{}",
        problems.join("\n")
    );
}

/// The first stdout line, exactly, for one and for two threads.
fn banner_exact(d: Driver) {
    let p = Proxy::start(d, &[]);
    assert_eq!(
        p.banner,
        format!(
            "ringway listening on {} ({}, 1 thread)",
            p.addr(),
            d.banner_name()
        )
    );
    assert!(p.addr().ip().is_loopback() && p.addr().port() != 0);
    let p2 = Proxy::start(d, &["--threads", "2"]);
    assert_eq!(
        p2.banner,
        format!(
            "ringway listening on {} ({}, 2 threads)",
            p2.addr(),
            d.banner_name()
        )
    );
}

/// --access-log PATH writes the line to that file.
fn access_log_to_file(d: Driver) {
    let dir = std::env::temp_dir().join(format!(
        "ringway-e2e-log-{}-{}",
        std::process::id(),
        d.flag()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let _ = std::fs::remove_file(&path);
    let origin = Origin::fixed(&message(&["HTTP/1.1 200 OK", "Content-Length: 2"], b"ok"));
    let p = Proxy::start(d, &["--access-log", path.to_str().unwrap()]);
    let a = origin.authority();
    let mut c = p.connect();
    c.write(&head(&[
        &format!("GET http://{a}/f HTTP/1.1"),
        &format!("Host: {a}"),
    ]));
    c.read_response("GET");
    let want_client = c.local_addr().to_string();
    let lines = wait_file_lines(&path, 1);
    let line = lines
        .iter()
        .find(|l| l.client == want_client)
        .unwrap_or_else(|| panic!("no line of {want_client} in {lines:?}"));
    assert_eq!(
        (line.method.as_str(), line.target.as_str(), line.status),
        ("GET", format!("http://{a}/f").as_str(), 200)
    );
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A port held by another socket (no SO_REUSEPORT): start-up fails with a clear error.
fn port_in_use_by_other_socket(d: Driver) {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = run_ringway(&["--driver", d.flag(), "--listen", &addr], RUN);
    assert_bind_failure(&out, &addr);
}

/// A port held by another ringway: the second instance must fail too, not silently share
/// the port through SO_REUSEPORT.
fn port_in_use_by_other_ringway(d: Driver) {
    let first = Proxy::start(d, &[]);
    let addr = first.addr().to_string();
    let out = run_ringway(
        &["--driver", d.flag(), "--listen", &addr, "--threads", "1"],
        RUN,
    );
    assert_bind_failure(&out, &addr);
}

/// `--access-log off`: nothing but the banner on stdout (checked after a clean exit, when
/// stdout is complete).
fn access_log_off(d: Driver) {
    let origin = Origin::fixed(&message(&["HTTP/1.1 200 OK", "Content-Length: 2"], b"ok"));
    let mut p = Proxy::start(d, &["--access-log", "off"]);
    let a = origin.authority();
    let mut c = p.connect();
    c.write(&head(&[
        &format!("GET http://{a}/ HTTP/1.1"),
        &format!("Host: {a}"),
        "Connection: close",
    ]));
    c.read_response("GET");
    drop(c);
    p.sigterm();
    let status = p.wait_exit(WAIT).expect("exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    let lines = p.lines_so_far(Duration::from_millis(200));
    assert!(
        lines.is_empty(),
        "stdout after the banner with --access-log off: {lines:?}"
    );
}

/// `--listen` twice: the banner lists both bound addresses, in order, and both serve.
fn two_listen_addresses(d: Driver) {
    let second = if ipv6_available() {
        "[::1]:0"
    } else {
        "127.0.0.2:0"
    };
    let p = Proxy::start(d, &["--listen", "127.0.0.1:0", "--listen", second]);
    assert_eq!(p.addrs.len(), 2, "banner: {}", p.banner);
    assert_eq!(
        p.banner,
        format!(
            "ringway listening on {}, {} ({}, 1 thread)",
            p.addrs[0],
            p.addrs[1],
            d.banner_name()
        )
    );
    let origin = Origin::fixed(&message(&["HTTP/1.1 200 OK", "Content-Length: 2"], b"ok"));
    let a = origin.authority();
    for addr in &p.addrs {
        let mut c = Conn::connect(*addr);
        c.write(&head(&[
            &format!("GET http://{a}/ HTTP/1.1"),
            &format!("Host: {a}"),
        ]));
        let resp = c.read_response("GET");
        assert!(resp.ends_with(b"\r\n\r\nok"), "via {addr}: {}", show(&resp));
    }
}

fn assert_bind_failure(out: &std::process::Output, addr: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "second bind of {addr} succeeded; stdout: {stdout}"
    );
    assert!(
        !stdout.contains("listening"),
        "printed a listening line although {addr} is taken: {stdout}"
    );
    let port = addr.rsplit(':').next().unwrap();
    assert!(
        err.contains(port) && err.to_lowercase().contains("in use"),
        "error should name the address and say it is in use; stderr: {err:?}"
    );
}

/// `--listen 127.0.0.1:0` must always start, even while other sockets on the machine keep
/// taking ephemeral ports (a parallel test suite does exactly that). Catches a window between
/// learning the port and binding it.
fn port_zero_start_is_reliable(d: Driver) {
    const STARTS: usize = 60;
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = std::collections::VecDeque::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(l) = TcpListener::bind("127.0.0.1:0") {
                        held.push_back(l);
                    }
                    if held.len() > 1000 {
                        held.pop_front();
                    }
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for _ in 0..STARTS {
        if let Err(e) = Proxy::try_start(d, &["--threads", "2"]) {
            failures.push(e);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in churn {
        t.join().unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {STARTS} starts on port 0 failed; first: {}",
        failures.len(),
        failures[0]
    );
}

/// `--pool-idle-timeout 0s`: every request gets its own upstream connection (by default four
/// clients in sequence share one: `pool_reuse_across_clients` in http.rs).
fn pool_idle_timeout_zero_never_reuses(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &["--pool-idle-timeout", "0s"]);
    let a = origin.authority();
    ok_gets_in_sequence(&mut p, &a, 4);
    let log = origin.wait_requests(4);
    assert_eq!(log.connections, 4, "one upstream connection per request");
}

/// `--shutdown-grace 1s`: SIGTERM with a request whose origin never answers exits 0 once the
/// second is up (well before the default 10 s), closing the client without an answer.
fn shutdown_grace_bounds_the_drain(d: Driver) {
    let (got_tx, got_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let got_tx = Mutex::new(got_tx);
    let release_rx = Mutex::new(release_rx);
    let origin = Origin::start(move |c| {
        if c.read_request().is_none() {
            return;
        }
        let _ = got_tx.lock().unwrap().send(());
        // Never answers; let go when the test ends.
        let _ = release_rx.lock().unwrap().recv_timeout(RUN);
    });
    let mut p = Proxy::start(d, &["--shutdown-grace", "1s"]);
    let a = origin.authority();
    let mut c = p.connect();
    c.write(&proxy_get(&a, "/never"));
    got_rx
        .recv_timeout(RUN)
        .expect("request reached the origin");
    let signalled = Instant::now();
    p.sigterm();
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("ringway still running 5 s after SIGTERM with --shutdown-grace 1s");
    let waited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status:?}; stderr: {}", p.stderr());
    assert!(
        waited >= Duration::from_secs(1),
        "exited after {waited:?}, before the 1 s grace was up"
    );
    assert!(
        p.stderr()
            .contains("SIGTERM: no longer accepting; draining for up to 1s\n"),
        "stderr: {}",
        p.stderr()
    );
    c.set_read_timeout(Duration::from_secs(5));
    assert_eq!(
        c.read_to_eof(),
        b"",
        "the cut-off client gets no answer, then EOF"
    );
    drop(release_tx);
}

/// Log rotation: after the file is renamed and SIGHUP sent, later lines go to a new file at
/// the same path, earlier ones stay in the renamed file, each line exactly once.
fn sighup_reopens_the_access_log(d: Driver) {
    let dir = std::env::temp_dir().join(format!(
        "ringway-e2e-rotate-{}-{}",
        std::process::id(),
        d.flag()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let origin = Origin::fixed(&ok_response(b"ok"));
    let mut p = Proxy::start(d, &["--access-log", path.to_str().unwrap()]);
    let a = origin.authority();
    let get = |path_part: &str| {
        let mut c = p.connect();
        let resp = c.round_trip(&proxy_get(&a, path_part));
        assert_bytes(&resp, &ok_relayed(b"ok"), "response");
        c.local_addr()
    };
    let before = get("/before");
    let first = wait_file_lines(&path, 1);
    std::fs::rename(&path, &rotated).unwrap();
    p.sighup();
    let reopened = format!(
        "ringway: SIGHUP: reopened the access log {}\n",
        path.display()
    );
    p.wait_stderr(&reopened, WAIT);
    let after = get("/after");
    wait_file_lines(&path, 1);
    assert_eq!(
        p.stderr().matches("SIGHUP: reopened").count(),
        1,
        "{}",
        p.stderr()
    );
    // After the exit the writer has written everything: compare both files whole.
    p.sigterm();
    let status = p.wait_exit(WAIT).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    let line = |client: std::net::SocketAddr, target: &str| {
        format!(
            "{client} GET http://{a}{target} 200 {} {} D",
            proxy_get(&a, target).len(),
            ok_relayed(b"ok").len()
        )
    };
    let lines_of = |file: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| {
                AccessLine::parse(l)
                    .unwrap_or_else(|| panic!("not an access-log line: {l:?}"))
                    .without_duration()
            })
            .collect()
    };
    assert_eq!(first.len(), 1);
    assert_eq!(
        lines_of(&rotated),
        [line(before, "/before")],
        "the renamed file keeps the earlier line, and only it"
    );
    assert_eq!(
        lines_of(&path),
        [line(after, "/after")],
        "the new file has the later line, and only it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP with the log on stdout or off: a line on stderr says there is nothing to reopen,
/// and the proxy goes on serving (and logging) as before.
fn sighup_without_a_log_file_changes_nothing(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let a = origin.authority();
    for (args, notice) in [
        (
            &[][..],
            "ringway: SIGHUP: the access log goes to stdout; nothing to reopen\n",
        ),
        (
            &["--access-log", "off"][..],
            "ringway: SIGHUP: the access log is off; nothing to reopen\n",
        ),
    ] {
        let mut p = Proxy::start(d, args);
        p.sighup();
        p.wait_stderr(notice, WAIT);
        let mut c = p.connect();
        let resp = c.round_trip(&proxy_get(&a, "/still"));
        assert_bytes(&resp, &ok_relayed(b"ok"), "served after SIGHUP");
        if args.is_empty() {
            p.wait_access(c.local_addr(), "GET");
        }
        assert_eq!(p.wait_exit(Duration::from_millis(1)), None, "still running");
    }
}

/// Waits until `path` holds at least `n` access-log lines; returns them all.
fn wait_file_lines(path: &std::path::Path, n: usize) -> Vec<AccessLine> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<AccessLine> = text.lines().filter_map(AccessLine::parse).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} access-log lines in {} within {WAIT:?}: {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20)); // polling a file: no signal exists
    }
}
