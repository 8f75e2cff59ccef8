//! The access-log record: one per request and one per tunnel.
//!
//! The core fills it in (it knows the status, the byte counts and the timing); the runtime
//! only writes it out. Its `Display` is the log line, with the method and target escaped so
//! that a hostile request cannot forge log lines.

use alloc::sync::Arc;
use bytes::Bytes;
use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;

use crate::parent::Hop;

/// What happened to one request or tunnel: one access-log line.
///
/// Filled in by the core, which alone knows the status, the byte counts and the timing, and
/// written out by the runtime. Its `Display` is the log line, with method and target escaped
/// so that a hostile request cannot forge lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord {
    /// The client's address.
    pub client: SocketAddr,
    /// The request method as received; also for a refused head whose request line could be
    /// read (see [`request_line`](crate::request::request_line)); empty otherwise.
    pub method: Bytes,
    /// The request target as received, under the same rule as `method`.
    pub target: Bytes,
    /// The status sent to the client; 0 if none was sent.
    pub status: u16,
    /// Bytes received from the client: head and body, or for a tunnel the payload sent upstream.
    pub rx: u64,
    /// Bytes sent to the client: heads and body, or for a tunnel the payload from upstream.
    pub tx: u64,
    /// From the first byte of the request head to the end of the exchange.
    pub duration: Duration,
    /// Why the exchange ended abnormally, if it did.
    pub reason: Option<&'static str>,
    /// The proxy-auth user whose credentials the request carried, when authentication is on
    /// and they matched; `None` otherwise (also for a 407).
    pub user: Option<Arc<str>>,
    /// The exact upstream address dialed for this exchange (the one of the last
    /// [`Output::Connect`](crate::Output::Connect), also when that attempt failed); `None`
    /// when nothing was dialed (a refusal, a failed lookup, a local answer).
    pub upstream: Option<SocketAddr>,
    /// Which hop carried the request when a parent proxy is configured (`via=parent` or
    /// `via=direct` at the end of the text line); `None` without a parent, or when nothing
    /// was sent anywhere.
    pub via: Option<Hop>,
    /// The exchange ran inside an intercepted TLS tunnel (`Connection::new_intercepted`):
    /// the text line says `intercepted=1`, the JSON line `"intercepted": true`.
    pub intercepted: bool,
}

/// Writes bytes as log-safe ASCII: printable ASCII as is, everything else as `\xNN`.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        // Fast path, the usual case: printable ASCII only, written in one piece.
        if self.0.iter().all(u8::is_ascii_graphic) {
            return f.write_str(core::str::from_utf8(self.0).map_err(|_| fmt::Error)?);
        }
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_ascii_graphic() {
                    fmt::Write::write_char(f, c)?;
                } else {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl AccessRecord {
    /// The method as text for structured logs: valid UTF-8 as is (the JSON writer escapes
    /// it), invalid bytes as U+FFFD. A request whose method is not ASCII is refused anyway.
    pub fn method_lossy(&self) -> alloc::borrow::Cow<'_, str> {
        alloc::string::String::from_utf8_lossy(&self.method)
    }

    /// The target as text for structured logs, under the rule of [`Self::method_lossy`].
    pub fn target_lossy(&self) -> alloc::borrow::Cow<'_, str> {
        alloc::string::String::from_utf8_lossy(&self.target)
    }
}

impl fmt::Display for AccessRecord {
    /// The text line without its timestamp (the runtime, which has the clock, writes that
    /// first): `CLIENT METHOD TARGET STATUS RX TX DURATION[ intercepted=1][ reason=WORD][ via=HOP]`, e.g.
    /// `127.0.0.1:50312 GET http://127.0.0.1:8080/a 200 78 1234 0.532ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.duration.as_micros();
        write!(
            f,
            "{} {} {} {} {} {} {}.{:03}ms",
            self.client,
            Escaped(&self.method),
            Escaped(&self.target),
            self.status,
            self.rx,
            self.tx,
            micros / 1000,
            micros % 1000
        )?;
        if self.intercepted {
            f.write_str(" intercepted=1")?;
        }
        if let Some(reason) = self.reason {
            write!(f, " reason={reason}")?;
        }
        if let Some(hop) = self.via {
            write!(f, " via={}", hop.word())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn line_format_and_escaping() {
        let r = AccessRecord {
            client: "127.0.0.1:50312".parse().unwrap(),
            method: Bytes::from_static(b"GET"),
            target: Bytes::from_static(b"http://127.0.0.1:8080/a"),
            status: 200,
            rx: 78,
            tx: 1234,
            duration: Duration::from_micros(532),
            reason: None,
            user: None,
            upstream: None,
            via: None,
            intercepted: false,
        };
        assert_eq!(
            r.to_string(),
            "127.0.0.1:50312 GET http://127.0.0.1:8080/a 200 78 1234 0.532ms"
        );
        let evil = AccessRecord {
            target: Bytes::from_static(b"http://h/\xe9\n"),
            method: Bytes::new(),
            reason: Some("bad_target"),
            duration: Duration::from_millis(12_100),
            ..r
        };
        assert_eq!(
            evil.to_string(),
            "127.0.0.1:50312 - http://h/\\xe9\\x0a 200 78 1234 12100.000ms reason=bad_target"
        );
        let chained = AccessRecord {
            via: Some(Hop::Parent),
            ..evil.clone()
        };
        assert!(chained
            .to_string()
            .ends_with(" reason=bad_target via=parent"));
        let inside = AccessRecord {
            intercepted: true,
            ..evil
        };
        assert_eq!(
            inside.to_string(),
            "127.0.0.1:50312 - http://h/\\xe9\\x0a 200 78 1234 12100.000ms intercepted=1 reason=bad_target"
        );
    }
}
