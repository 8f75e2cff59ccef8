//! `--metrics-listen`: /metrics parsed with a real Prometheus text parser, exact counter
//! deltas after a scripted mix of requests, gauges back to baseline, the health endpoints,
//! and /readyz turning 503 during a drain with a slow request in flight.

use ringway_e2e::*;
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

both_drivers!(
    counters_after_a_scripted_mix,
    endpoints_paths_and_methods,
    readyz_is_503_while_draining,
);

/// Starts a proxy with metrics on 127.0.0.1:0 (plus `args`); returns it and the metrics
/// address (from its stderr line).
fn start(d: Driver, args: &[&str]) -> (Proxy, SocketAddr) {
    let mut all = vec!["--metrics-listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let p = Proxy::start(d, &all);
    let addr = p.metrics_addr(WAIT);
    (p, addr)
}

/// One request to the metrics listener; the whole response (it closes after answering).
fn fetch(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    fetch(addr, &format!("GET {path} HTTP/1.1\r\nHost: m\r\n\r\n"))
}

/// Every sample of a scrape: `name{k="v",...}` (labels sorted) to value; a histogram as
/// `name_count{...}`, its +Inf bucket.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let resp = get(addr, "/metrics");
    let (head, body) = split_message(&resp);
    let h = Head::parse(head);
    assert_eq!(h.status(), 200);
    assert_eq!(
        h.get("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        h.get("content-length"),
        Some(body.len().to_string().as_str())
    );
    let lines = body.lines().map(|l| l.map(|l| l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
    let mut out = HashMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        labels.sort();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let (name, value) = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => (s.metric.clone(), v),
            prometheus_parse::Value::Histogram(buckets) => {
                let inf = buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .expect("+Inf bucket");
                (format!("{}_count", s.metric), inf.count)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(format!("{name}{labels}"), value);
    }
    out
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

/// Polls the scrape until `key` equals `want` (gauges follow connection teardown, which has
/// no signal a client can see); panics after WAIT.
fn wait_gauge(addr: SocketAddr, key: &str, want: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = scrape(addr).get(key).copied();
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} is {got:?}, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(20)); // no signal for a socket's teardown
    }
}

/// 3 × 200, 2 × 404, a CONNECT to a denied port (403), a GET to a closed port (502), a 407
/// and a CONNECT tunnel: each counter moves by exactly that much, tx equals the sum of the
/// access log's TX, and the gauges return to their baseline once the clients leave.
fn counters_after_a_scripted_mix(d: Driver) {
    let ok = Origin::fixed(&ok_response(b"ok"));
    let missing = Origin::fixed(&message(
        &["HTTP/1.1 404 Not Found", "Content-Length: 4"],
        b"nope",
    ));
    let echo = EchoServer::start(EchoMode::Echo);
    let users = std::env::temp_dir().join(format!(
        "ringway-metrics-{}-{}",
        std::process::id(),
        d.flag()
    ));
    std::fs::write(&users, "u:p\n").unwrap();
    let ports = echo.addr.port().to_string();
    let (mut p, m) = start(
        d,
        &[
            "--connect-ports",
            &ports,
            "--auth-file",
            users.to_str().unwrap(),
        ],
    );
    let auth = "Proxy-Authorization: Basic dTpw"; // u:p
    let before = scrape(m);
    assert_eq!(before.get("ringway_connections_active"), Some(&0.0));
    assert_eq!(before.get("ringway_tunnels_active"), Some(&0.0));
    let mut tx_sum = 0u64;
    let mut rx_sum = 0u64;
    let mut note = |p: &mut Proxy, c: &Conn, method: &str| {
        let line = p.wait_access(c.local_addr(), method);
        tx_sum += line.tx;
        rx_sum += line.rx;
        line
    };
    let get_with_auth = |authority: &str, path: &str| {
        head(&[
            &format!("GET http://{authority}{path} HTTP/1.1"),
            &format!("Host: {authority}"),
            auth,
        ])
    };
    for i in 0..3 {
        let mut c = p.connect();
        let resp = c.round_trip(&get_with_auth(&ok.authority(), &format!("/{i}")));
        assert_eq!(Head::parse(&resp).status(), 200);
        note(&mut p, &c, "GET");
    }
    for i in 0..2 {
        let mut c = p.connect();
        let resp = c.round_trip(&get_with_auth(&missing.authority(), &format!("/{i}")));
        assert_eq!(Head::parse(&resp).status(), 404);
        note(&mut p, &c, "GET");
    }
    let mut c = p.connect();
    c.write(
        format!(
            "CONNECT {} HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n",
            ok.authority()
        )
        .as_bytes(),
    );
    assert_canned(&c.read_to_eof(), "connect_port_denied");
    assert_eq!(note(&mut p, &c, "CONNECT").status, 403);
    drop(c);
    let closed = format!("127.0.0.1:{}", free_port());
    let mut c = p.connect();
    let resp = c.round_trip(&get_with_auth(&closed, "/"));
    assert_eq!(Head::parse(&resp).status(), 502);
    note(&mut p, &c, "GET");
    drop(c);
    let mut c = p.connect();
    let resp = c.round_trip(&proxy_get(&ok.authority(), "/no-auth"));
    assert_eq!(Head::parse(&resp).status(), 407);
    note(&mut p, &c, "GET");
    drop(c);
    let mut t = p.connect();
    t.write(
        format!(
            "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n{auth}\r\n\r\n",
            echo.addr
        )
        .as_bytes(),
    );
    assert_eq!(
        t.read_head(),
        b"HTTP/1.1 200 Connection Established\r\n\r\n"
    );
    t.write(b"ping");
    assert_eq!(t.read_exact(4), b"ping");
    assert_eq!(scrape(m).get("ringway_tunnels_active"), Some(&1.0));
    wait_gauge(m, "ringway_connections_active", 1.0);
    t.shutdown_write();
    t.expect_eof();
    assert_eq!(note(&mut p, &t, "CONNECT").status, 200);
    drop(t);

    let after = scrape(m);
    let d_ = |k: &str| delta(&before, &after, k);
    assert_eq!(
        d_("ringway_requests_total{code=\"200\",kind=\"http\"}"),
        3.0
    );
    assert_eq!(
        d_("ringway_requests_total{code=\"404\",kind=\"http\"}"),
        2.0
    );
    assert_eq!(
        d_("ringway_requests_total{code=\"403\",kind=\"connect\"}"),
        1.0
    );
    assert_eq!(
        d_("ringway_requests_total{code=\"502\",kind=\"http\"}"),
        1.0
    );
    assert_eq!(
        d_("ringway_requests_total{code=\"407\",kind=\"http\"}"),
        1.0
    );
    assert_eq!(
        d_("ringway_requests_total{code=\"200\",kind=\"connect\"}"),
        1.0
    );
    let total: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("ringway_requests_total{"))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .sum();
    assert_eq!(total, 9.0, "no other request counted");
    assert_eq!(
        d_("ringway_request_duration_seconds_count{kind=\"http\"}"),
        7.0
    );
    assert_eq!(
        d_("ringway_request_duration_seconds_count{kind=\"connect\"}"),
        2.0
    );
    assert_eq!(
        d_("ringway_denied_total{reason=\"connect_port_denied\"}"),
        1.0
    );
    assert_eq!(d_("ringway_denied_total{reason=\"auth_required\"}"), 1.0);
    assert_eq!(
        d_("ringway_upstream_connect_errors_total{type=\"refused\"}"),
        1.0
    );
    assert_eq!(
        d_("ringway_upstream_connect_errors_total{type=\"timeout\"}"),
        0.0
    );
    let dials = d_("ringway_upstream_connect_duration_seconds_count");
    let reuses = d_("ringway_upstream_pool_reuses_total");
    assert_eq!(
        dials + reuses,
        7.0,
        "every forwarded request or tunnel dialed or reused: {dials} + {reuses}"
    );
    assert_eq!(
        d_("ringway_transfer_bytes_total{direction=\"tx\"}"),
        tx_sum as f64
    );
    assert_eq!(
        d_("ringway_transfer_bytes_total{direction=\"rx\"}"),
        rx_sum as f64
    );
    assert_eq!(d_("ringway_access_log_dropped_total"), 0.0);
    for family in [
        "ringway_config_reloads_total{result=\"success\"}",
        "ringway_config_reloads_total{result=\"failure\"}",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        assert!(after.contains_key(family), "{family} missing");
    }
    // Scrapes are not requests: nothing moved, nothing logged.
    let again = scrape(m);
    for (k, v) in &again {
        if k.starts_with("ringway_requests_total") || k.starts_with("ringway_transfer") {
            assert_eq!(Some(v), after.get(k), "{k} moved by a scrape");
        }
    }
    wait_gauge(m, "ringway_connections_active", 0.0);
    wait_gauge(m, "ringway_tunnels_active", 0.0);
    let stray = p.lines_so_far(Duration::from_millis(200));
    assert!(
        !stray.iter().any(|l| l.contains("/metrics")),
        "a scrape reached the access log: {stray:?}"
    );
    let _ = std::fs::remove_file(&users);
}

fn endpoints_paths_and_methods(d: Driver) {
    let (_p, m) = start(d, &["--access-log", "off"]);
    assert_bytes(
        &get(m, "/healthz"),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
        "healthz",
    );
    assert_bytes(
        &get(m, "/readyz"),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nready\n",
        "readyz",
    );
    assert_bytes(
        &get(m, "/nothing"),
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
        "404",
    );
    assert_bytes(
        &fetch(m, "DELETE /metrics HTTP/1.1\r\n\r\n"),
        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\nuse GET\n",
        "405",
    );
    // With the access log off, records still feed the metrics.
    let ok = Origin::fixed(&ok_response(b"ok"));
    let before = scrape(m);
    let mut c = Conn::connect(_p.addr());
    assert_bytes(
        &c.round_trip(&proxy_get(&ok.authority(), "/")),
        &ok_relayed(b"ok"),
        "GET",
    );
    let key = "ringway_requests_total{code=\"200\",kind=\"http\"}";
    assert_eq!(delta(&before, &scrape(m), key), 1.0);
}

/// A request is in flight at the origin when SIGTERM arrives: /readyz answers 503 from then
/// on, /healthz still 200, the request still completes, and the process exits 0.
fn readyz_is_503_while_draining(d: Driver) {
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let arrived_tx = Mutex::new(arrived_tx);
    let release_rx = Arc::new(Mutex::new(release_rx));
    let origin = Origin::start(move |c| {
        if c.read_request().is_some() {
            arrived_tx.lock().unwrap().send(()).unwrap();
            let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
            c.write(&ok_response(b"slow"));
        }
    });
    let (mut p, m) = start(d, &[]);
    let mut c = p.connect();
    c.write(&proxy_get(&origin.authority(), "/slow"));
    arrived
        .recv_timeout(WAIT)
        .expect("the request reached the origin");
    assert_eq!(Head::parse(&get(m, "/readyz")).status(), 200);
    p.sigterm();
    p.wait_stderr("no longer accepting", WAIT);
    assert_bytes(
        &get(m, "/readyz"),
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndraining\n",
        "readyz while draining",
    );
    assert_eq!(Head::parse(&get(m, "/healthz")).status(), 200);
    release.send(()).unwrap();
    let resp = c.read_response("GET");
    let (h, body) = split_message(&resp);
    assert_eq!(Head::parse(h).status(), 200);
    assert_eq!(body, b"slow");
    let status = p.wait_exit(WAIT).expect("exit after the drain");
    assert_eq!(status.code(), Some(0));
}
