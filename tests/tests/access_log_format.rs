//! The access-log formats: the timestamped text line, byte for byte, and JSON lines parsed
//! with serde_json and compared field by field (including a target with `"` and `\` and a
//! proxy-auth user).

use ringway_e2e::*;
use std::time::{SystemTime, UNIX_EPOCH};

both_drivers!(text_line_is_timestamped, json_lines_field_by_field);

/// Milliseconds since the epoch of an `YYYY-MM-DDTHH:MM:SS.mmmZ` timestamp (days from civil,
/// the inverse of what the proxy computes, so a shared mistake would not cancel out).
fn unix_millis(ts: &str) -> i64 {
    assert!(is_log_timestamp(ts), "{ts:?}");
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs * 1000 + n(20..23)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The whole line is `TIMESTAMP CLIENT GET TARGET 200 RX TX MILLIS.MMMms`, and the timestamp
/// is the wall-clock time of the request (within the test's own before/after readings).
fn text_line_is_timestamped(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let a = origin.authority();
    let mut p = Proxy::start(d, &[]);
    let before = now_millis();
    let mut c = p.connect();
    let resp = c.round_trip(&proxy_get(&a, "/t"));
    assert_bytes(&resp, &ok_relayed(b"ok"), "response");
    let client = c.local_addr();
    let line = p.wait_line(WAIT, |l| l.contains(&format!(" {client} ")));
    let after = now_millis();
    let parsed = AccessLine::parse(&line).expect("an access-log line");
    assert_eq!(
        line,
        format!(
            "{} {client} GET http://{a}/t 200 {} {} {}",
            parsed.ts,
            proxy_get(&a, "/t").len(),
            ok_relayed(b"ok").len(),
            parsed.duration
        ),
        "exact line"
    );
    let ts = unix_millis(&parsed.ts);
    assert!(
        (before..=after).contains(&ts),
        "{} not within the request's wall-clock window",
        parsed.ts
    );
}

fn json_lines_field_by_field(d: Driver) {
    let origin = Origin::fixed(&ok_response(b"ok"));
    let a = origin.authority();
    let dir =
        std::env::temp_dir().join(format!("ringway-json-{}-{}", std::process::id(), d.flag()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users");
    std::fs::write(&users, "al\"i\\ce:secret\n").unwrap();
    let mut p = Proxy::start(
        d,
        &[
            "--access-log-format",
            "json",
            "--auth-file",
            users.to_str().unwrap(),
        ],
    );
    // base64("al\"i\\ce:secret")
    let auth = "Proxy-Authorization: Basic YWwiaVxjZTpzZWNyZXQ=";
    let before = now_millis();
    let target = format!("http://{a}/q\"uo\\te");
    let request = head(&[
        &format!("GET {target} HTTP/1.1"),
        &format!("Host: {a}"),
        auth,
    ]);
    let mut c = p.connect();
    let resp = c.round_trip(&request);
    let mut denied = p.connect();
    let refused = denied.round_trip(&proxy_get(&a, "/no-credentials"));
    assert_eq!(Head::parse(&refused).status(), 407);
    let mut lines = Vec::new();
    for client in [c.local_addr(), denied.local_addr()] {
        let needle = format!("\"client\":\"{client}\"");
        let line = p.wait_line(WAIT, |l| l.contains(&needle));
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        lines.push((client, v));
    }
    let after = now_millis();
    let (client, v) = &lines[0];
    let obj = v.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut expected = [
        "ts",
        "client",
        "user",
        "method",
        "target",
        "status",
        "rx",
        "tx",
        "duration_ms",
        "upstream",
        "reason",
    ];
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "exactly these fields");
    let ts = v["ts"].as_str().unwrap();
    assert!((before..=after).contains(&unix_millis(ts)), "{ts}");
    assert_eq!(v["client"], client.to_string());
    assert_eq!(v["user"], "al\"i\\ce");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["target"], target.as_str());
    assert_eq!(v["status"], 200);
    assert_eq!(v["rx"], request.len() as u64);
    assert_eq!(v["tx"], resp.len() as u64);
    let ms = v["duration_ms"].as_f64().unwrap();
    assert!((0.0..(after - before + 1) as f64).contains(&ms), "{ms}");
    assert_eq!(v["upstream"], a.as_str(), "the address dialed");
    assert_eq!(v["reason"], serde_json::Value::Null);
    assert_bytes(&resp, &ok_relayed(b"ok"), "response");
    let (client, v) = &lines[1];
    assert_eq!(v["client"], client.to_string());
    assert_eq!(v["user"], serde_json::Value::Null);
    assert_eq!(v["target"], format!("http://{a}/no-credentials"));
    assert_eq!(v["status"], 407);
    assert_eq!(v["reason"], "auth_required");
    assert_eq!(v["upstream"], serde_json::Value::Null, "nothing was dialed");
    assert_eq!(v["tx"], refused.len() as u64);
    let _ = std::fs::remove_dir_all(&dir);
}
