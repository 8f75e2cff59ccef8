//! The HTTPS proxy listener (`--tls-listen`): the listener's certificate (loaded at start,
//! replaced on SIGHUP) and [`Front`], the TLS state a client [`Socket`](crate::socket::Socket)
//! carries when its client connected with TLS.
//!
//! A TLS client socket reads and writes plaintext like a plain one: the connection, the core,
//! the tunnel relay and interception see no difference. `Front` turns the ciphertext read
//! from the kernel into plaintext (and the handshake replies to send), turns plaintext to
//! send into ciphertext, and keeps the tunnel accounting in plaintext bytes: a relayed piece
//! is reported once all the ciphertext queued up to its end has been written.
//!
//! The handshake has no deadline of its own: until the first plaintext byte arrives the core
//! waits for a first request head, and its `--header-timeout` closes a client that stays
//! silent or stalls its handshake.
//!
//! Failure: a bad certificate or key is a start-up error (exit 2); on SIGHUP the old
//! certificate stays and the problem is reported on stderr. A client's TLS failure is a
//! [`TlsFailure`] the socket reports as a read error (the connection closes; the alert rustls
//! queued is sent first).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;

use super::adapter::{FileKeyLog, ListenerTls, Plain, TlsFailure, TlsSession};

/// The listener's certificate and where it came from (for SIGHUP).
struct Listener {
    cert: PathBuf,
    key: PathBuf,
    key_log: Option<Arc<FileKeyLog>>,
    tls: RwLock<Arc<ListenerTls>>,
}

/// Set once by `main` when `--tls-listen` is given, before the workers start.
static LISTENER: OnceLock<Listener> = OnceLock::new();

/// Loads `--tls-cert` and `--tls-key` (the key must match the certificate) for the HTTPS
/// listener, and opens the key log (`--tls-key-log`, else `SSLKEYLOGFILE`) if one is asked
/// for. The error is one line for exit status 2.
pub fn start(cert: PathBuf, key: PathBuf, key_log: Option<PathBuf>) -> Result<(), String> {
    let key_log = FileKeyLog::from_settings(key_log.as_deref())?;
    let tls = ListenerTls::from_files(&cert, &key, key_log.clone())?;
    if key_log.is_some() {
        say!("ringway: writing TLS key log (secrets of --tls-listen clients)");
    }
    let _ = LISTENER.set(Listener {
        cert,
        key,
        key_log,
        tls: RwLock::new(Arc::new(tls)),
    });
    Ok(())
}

/// SIGHUP: reads the certificate and key again (certificate rotation). New handshakes use
/// the new pair; sessions already running keep theirs. Files that cannot be read or do not
/// match keep the running pair, and say so.
pub fn reload() {
    let Some(l) = LISTENER.get() else { return };
    match ListenerTls::from_files(&l.cert, &l.key, l.key_log.clone()) {
        Ok(tls) => {
            *l.tls.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tls);
            say!(
                "ringway: SIGHUP: --tls-cert {} reloaded; new TLS clients get it",
                l.cert.display()
            );
        }
        Err(e) => say!("ringway: SIGHUP: keeping the running --tls-cert: {e}"),
    }
}

/// A fresh server session for one accepted TLS client; `None` if the listener is not set up
/// (or rustls refuses, which its fixed configuration does not).
pub fn session() -> Option<TlsSession> {
    let l = LISTENER.get()?;
    let tls = Arc::clone(&l.tls.read().unwrap_or_else(|e| e.into_inner()));
    tls.accept().ok()
}

/// What [`Front::receive`] found besides plaintext.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// The session goes on.
    Open,
    /// The client sent close_notify: no more plaintext will come.
    Closed,
}

/// The TLS session of one client socket and its write accounting.
#[derive(Debug)]
pub struct Front {
    session: TlsSession,
    /// Ciphertext bytes handed out to be queued, and written, since the start.
    queued: u64,
    written: u64,
    /// Relayed plaintext pieces not yet reported: (ciphertext position their last byte is
    /// written at, plaintext length).
    relayed: VecDeque<(u64, u64)>,
    close_sent: bool,
    /// The client's close_notify came with the last plaintext: report EOF next.
    eof_pending: bool,
}

impl Front {
    /// The state for a client served by `session`.
    pub fn new(session: TlsSession) -> Front {
        Front {
            session,
            queued: 0,
            written: 0,
            relayed: VecDeque::new(),
            close_sent: false,
            eof_pending: false,
        }
    }

    /// Takes ciphertext read from the client; appends the plaintext it carried to `plain`.
    /// Handshake replies wait in [`Front::outgoing`].
    pub fn receive(
        &mut self,
        mut cipher: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<Received, TlsFailure> {
        // Each round takes ciphertext or drains plaintext (rustls bounds its buffers).
        for _ in 0..2 * cipher.len() + 2 {
            let n = self.session.feed(cipher)?;
            cipher = &cipher[n..];
            let drained = match self.session.read_plaintext(plain) {
                Plain::Data(_) => {
                    // A close_notify right after the data shows on the next read.
                    if self.session.read_plaintext(plain) == Plain::Closed {
                        return Ok(Received::Closed);
                    }
                    true
                }
                Plain::Closed => return Ok(Received::Closed),
                Plain::Empty => false,
            };
            if cipher.is_empty() || (n == 0 && !drained) {
                break;
            }
        }
        Ok(Received::Open)
    }

    /// The client's transport ended (TCP EOF): the plaintext still buffered, if any.
    pub fn receive_eof(&mut self, plain: &mut Vec<u8>) {
        let _ = self.session.feed_eof();
        let _ = self.session.read_plaintext(plain);
    }

    /// Remembers that EOF is to be reported after the plaintext just returned.
    pub fn set_eof_pending(&mut self) {
        self.eof_pending = true;
    }

    /// Whether an EOF is to be reported now (once).
    pub fn take_eof_pending(&mut self) -> bool {
        std::mem::take(&mut self.eof_pending)
    }

    /// Encrypts `plain`; returns the ciphertext to queue (none while the handshake runs: the
    /// plaintext is sent once it completes). `relayed` pieces are reported by
    /// [`Front::written`] once their ciphertext is out.
    pub fn send(&mut self, plain: &[u8], relayed: bool) -> Option<Bytes> {
        if plain.is_empty() || self.close_sent {
            return None;
        }
        // The session's send buffer is unbounded (see `TlsSession::new`): all is taken.
        let taken = self.session.write_plaintext(plain);
        debug_assert_eq!(taken, plain.len());
        let out = self.outgoing();
        if relayed {
            self.relayed.push_back((self.queued, plain.len() as u64));
        }
        out
    }

    /// Ciphertext waiting to be sent (handshake replies, session tickets, alerts).
    pub fn outgoing(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        self.session.take_ciphertext(&mut out);
        if out.is_empty() {
            return None;
        }
        self.queued += out.len() as u64;
        Some(Bytes::from(out))
    }

    /// close_notify, once: the ciphertext to queue before the FIN. None to a client whose
    /// handshake never completed (it gets the FIN alone, or the alert of its failure).
    pub fn close(&mut self) -> Option<Bytes> {
        if self.close_sent {
            return None;
        }
        self.close_sent = true;
        if self.session.is_handshaking() {
            return self.outgoing();
        }
        self.session.close();
        self.outgoing()
    }

    /// `n` more ciphertext bytes reached the kernel; returns the relayed plaintext bytes
    /// whose ciphertext is now all written.
    pub fn written(&mut self, n: u64) -> u64 {
        self.written += n;
        let mut plain = 0;
        while let Some(&(end, len)) = self.relayed.front() {
            if end > self.written {
                break;
            }
            plain += len;
            self.relayed.pop_front();
        }
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::adapter::test_client;
    use crate::tls::tests::{origin, scratch};

    /// Moves `extra` and the front's pending ciphertext into the client session, returning
    /// the plaintext it carried.
    fn to_client(front: &mut Front, client: &mut TlsSession, extra: Option<Bytes>) -> Vec<u8> {
        let mut cipher = Vec::new();
        if let Some(b) = extra {
            cipher.extend_from_slice(&b);
        }
        if let Some(b) = front.outgoing() {
            cipher.extend_from_slice(&b);
            // As the socket's flush reports it.
            assert_eq!(front.written(b.len() as u64), 0, "nothing relayed in there");
        }
        let n = client.feed(&cipher).unwrap();
        assert_eq!(n, cipher.len());
        let mut plain = Vec::new();
        let _ = client.read_plaintext(&mut plain);
        plain
    }

    fn from_client(client: &mut TlsSession, front: &mut Front) -> (Vec<u8>, Received) {
        let mut cipher = Vec::new();
        client.take_ciphertext(&mut cipher);
        let mut plain = Vec::new();
        let r = front.receive(&cipher, &mut plain).unwrap();
        (plain, r)
    }

    /// A client's handshake and request through the front, fed one byte at a time; a
    /// response written before the handshake ends is sent once it does; relayed plaintext is
    /// reported only once all of its ciphertext is written, whatever the write sizes; the
    /// client's close_notify is the end of its input.
    #[test]
    fn handshake_plaintext_accounting_and_close() {
        let dir = scratch("front");
        let (listener, ca) = origin(&dir, "proxy.test");
        let ca_der =
            crate::tls::ca::pem_block(&std::fs::read_to_string(ca).unwrap(), "CERTIFICATE")
                .unwrap();
        let mut client = test_client(&[&ca_der], "proxy.test", &[b"http/1.1"]);
        let mut front = Front::new(listener.accept().unwrap());
        // Written before any handshake: held until the session is up.
        assert!(front.send(b"early ", false).is_none());
        // ClientHello, byte by byte.
        let mut hello = Vec::new();
        client.take_ciphertext(&mut hello);
        let mut plain = Vec::new();
        for b in hello.chunks(1) {
            assert_eq!(front.receive(b, &mut plain).unwrap(), Received::Open);
        }
        assert!(plain.is_empty());
        let got = to_client(&mut front, &mut client, None);
        assert!(
            got.is_empty(),
            "no application data before the client's Finished"
        );
        assert!(!client.is_handshaking());
        assert_eq!(client.alpn(), Some(&b"http/1.1"[..]));
        assert_eq!(
            client.write_plaintext(b"GET http://o/ HTTP/1.1\r\n\r\n"),
            26
        );
        let (plain, r) = from_client(&mut client, &mut front);
        assert_eq!(plain, b"GET http://o/ HTTP/1.1\r\n\r\n");
        assert_eq!(r, Received::Open);
        // The held response went out with the session tickets.
        assert_eq!(to_client(&mut front, &mut client, None), b"early ");

        // Accounting: two relayed pieces, written in odd sizes.
        let a = front.send(&[7u8; 3000], true).unwrap();
        let b = front.send(b"tail", true).unwrap();
        let c = front.send(b"not relayed", false).unwrap();
        let total = (a.len() + b.len() + c.len()) as u64;
        let mut reported = Vec::new();
        let mut sent = 0;
        while sent < total {
            let step = 7.min(total - sent);
            sent += step;
            reported.push(front.written(step));
        }
        let at_end_of_a = (a.len() as u64).div_ceil(7) as usize - 1;
        assert_eq!(reported.iter().sum::<u64>(), 3004, "{reported:?}");
        assert_eq!(reported[at_end_of_a], 3000, "{reported:?}");
        assert!(
            reported[..at_end_of_a].iter().all(|&n| n == 0),
            "{reported:?}"
        );
        let mut wire = Vec::new();
        wire.extend_from_slice(&a);
        wire.extend_from_slice(&b);
        wire.extend_from_slice(&c);
        let got = to_client(&mut front, &mut client, Some(Bytes::from(wire)));
        let mut want = vec![7u8; 3000];
        want.extend_from_slice(b"tailnot relayed");
        assert_eq!(got, want);

        // The client's last bytes and its close_notify in one read.
        client.write_plaintext(b"bye");
        client.close();
        let (plain, r) = from_client(&mut client, &mut front);
        assert_eq!((plain.as_slice(), r), (&b"bye"[..], Received::Closed));
        // Ours, once.
        assert!(front.close().is_some());
        assert!(front.close().is_none());
        assert!(
            front.send(b"late", false).is_none(),
            "nothing after close_notify"
        );
    }

    /// A client that does not speak TLS is a failure with an alert to send, not a panic.
    #[test]
    fn garbage_is_a_failure() {
        let dir = scratch("front-garbage");
        let (listener, _) = origin(&dir, "proxy.test");
        let mut front = Front::new(listener.accept().unwrap());
        let mut plain = Vec::new();
        assert!(front
            .receive(b"GET http://o/ HTTP/1.1\r\n\r\n", &mut plain)
            .is_err());
        assert!(plain.is_empty());
        assert!(front.outgoing().is_some(), "an alert for the client");
    }
}
