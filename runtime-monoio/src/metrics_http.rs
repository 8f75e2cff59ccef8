//! The `--metrics-listen` endpoint: `GET /metrics`, `/healthz` and `/readyz` on a listener of
//! its own, served by one dedicated blocking thread (`ringway-metrics`).
//!
//! Why a dedicated thread rather than worker 0: a scrape reads every thread's counters and
//! formats several kilobytes; on a worker that would stall that worker's clients, and a
//! worker busy with clients would make health checks slow exactly when they matter. Scrapes
//! are rare, so one plain thread with blocking sockets is the simplest thing that cannot
//! disturb the event loops. These requests are not proxied, not counted in the proxy's
//! metrics and not written to the access log.
//!
//! Answers: `/metrics` 200 with `Content-Type: text/plain; version=0.0.4; charset=utf-8`;
//! `/healthz` 200 while the process serves; `/readyz` 200, or 503 once SIGINT/SIGTERM started
//! the drain; other paths 404; other methods (on a known path) 405 with `Allow: GET, HEAD`.
//! `HEAD` gets the headers only. Every answer closes the connection.
//!
//! Failure: one client at a time; a client that sends nothing gets [`READ_TIMEOUT`], then is
//! dropped; a head over [`MAX_HEAD`] gets 431. Accept errors are retried after a short pause.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Registry;
use crate::shutdown;

/// How long a metrics client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
pub const MAX_HEAD: usize = 8 * 1024;

/// Binds `addr` (so a bad address fails start-up) and returns the listener.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves `listener` on a thread of its own for the life of the process.
pub fn spawn(listener: TcpListener, registry: Arc<Registry>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ringway-metrics".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok((stream, _)) => serve(stream, &registry),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        })?;
    Ok(())
}

fn serve(mut stream: TcpStream, registry: &Registry) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let answer = if complete {
        answer(&head, registry)
    } else {
        response(
            431,
            "Request Header Fields Too Large",
            "text/plain",
            "head too large\n",
            false,
        )
    };
    let _ = stream.write_all(&answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The whole response to the request whose head is `head`.
fn answer(head: &[u8], registry: &Registry) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return response(404, "Not Found", "text/plain", "not found\n", false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response(405, "Method Not Allowed", "text/plain", "use GET\n", false);
    }
    match path {
        "/metrics" => response(
            200,
            "OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &registry.render(),
            head_only,
        ),
        "/healthz" => response(200, "OK", "text/plain", "ok\n", head_only),
        _ if shutdown::requested() => response(
            503,
            "Service Unavailable",
            "text/plain",
            "draining\n",
            head_only,
        ),
        _ => response(200, "OK", "text/plain", "ready\n", head_only),
    }
}

fn response(status: u16, phrase: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(request: &str) -> String {
        let registry = Registry::new(Box::new(|| 0));
        String::from_utf8(answer(request.as_bytes(), &registry)).unwrap()
    }

    #[test]
    fn paths_and_methods() {
        assert_eq!(
            get("GET /healthz HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        );
        assert_eq!(
            get("HEAD /readyz HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"
        );
        assert!(get("GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(get("GET http://x/metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert_eq!(
            get("POST /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\nuse GET\n"
        );
        let m = get("GET /metrics?x=1 HTTP/1.1\r\n\r\n");
        assert!(
            m.starts_with(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            ),
            "{m}"
        );
        assert!(m.contains("\r\n\r\n# HELP ringway_requests_total "), "{m}");
    }
}
