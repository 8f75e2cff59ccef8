//! A complete forward proxy over blocking `std::net` sockets, driving `ringway-core`.
//!
//! The proof that the core embeds in any runtime: a thread per client connection, a reader
//! thread per socket feeding one channel, and the drain rule from the crate docs. No pool and
//! no flow control (a real runtime honours `wants_client_read`); everything else — parsing,
//! routing, framing, errors, tunnels, the access log — is the core's.
//!
//! Run: `cargo run -p ringway-core --example blocking_proxy -- 127.0.0.1:3129`, then
//! `curl -x http://127.0.0.1:3129 http://example.com/`.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use ringway_core::tunnel::Direction;
use ringway_core::{Config, Connection, DialError, Dialed, Instant, Output};

/// What the reader threads report; upstream events carry the number of the dial they belong
/// to, so a late EOF from a released connection is not taken for the current one's.
enum Event {
    Client(Option<Vec<u8>>),
    Upstream(u64, Option<Vec<u8>>),
}

/// The core's clock: time since the first call.
fn now() -> Instant {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    Instant::from_elapsed(START.get_or_init(std::time::Instant::now).elapsed())
}

/// Reads `stream` until EOF or error, sending each piece (and finally `None`) as an event.
fn spawn_reader(
    mut stream: TcpStream,
    events: Sender<Event>,
    wrap: impl Fn(Option<Vec<u8>>) -> Event + Send + 'static,
) {
    thread::spawn(move || loop {
        let mut buf = vec![0; 16 * 1024];
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return drop(events.send(wrap(None))),
            Ok(n) => {
                buf.truncate(n);
                if events.send(wrap(Some(buf))).is_err() {
                    return;
                }
            }
        }
    });
}

/// Serves one client connection to the end.
fn handle(client: TcpStream, config: Arc<Config>) -> std::io::Result<()> {
    let mut conn = Connection::new(config.clone(), client.peer_addr()?, now());
    let (tx, rx) = channel();
    spawn_reader(client.try_clone()?, tx.clone(), Event::Client);
    let mut upstream: Option<TcpStream> = None;
    let mut dials = 0u64;
    loop {
        // Step 2 of the run loop: drain every output, in order.
        while let Some(output) = conn.poll_output() {
            match output {
                Output::ToClient(b) => (&client).write_all(&b)?,
                Output::ToUpstream(b) => upstream.as_ref().expect("dialed").write_all(&b)?,
                Output::Resolve(authority) => {
                    // The core judges every address; an empty answer is a failed lookup.
                    let addrs: Vec<IpAddr> = (authority.host(), 0)
                        .to_socket_addrs()
                        .map(|addrs| addrs.map(|a| a.ip()).collect())
                        .unwrap_or_default();
                    conn.handle_resolved(now(), &addrs);
                }
                Output::Connect { attempt, addr, .. } => {
                    // Exactly the address the core approved; no pool here. Attempts run one
                    // after another (each is answered before this drain goes on), so the
                    // race of several addresses degrades to trying them in the core's order.
                    let result = TcpStream::connect_timeout(&addr, config.connect_timeout)
                        .map_err(|_| DialError::Refused)
                        .map(|s| {
                            dials += 1;
                            let n = dials;
                            spawn_reader(s.try_clone().expect("clone"), tx.clone(), move |b| {
                                Event::Upstream(n, b)
                            });
                            upstream = Some(s);
                            Dialed { reused: false }
                        });
                    conn.handle_dial(now(), attempt, result);
                }
                // Never sent here (no attempt is ever in flight when another wins); a runtime
                // that runs attempts side by side stops and closes that one.
                Output::CancelConnect(_) => {}
                Output::ReleaseUpstream | Output::CloseUpstream => {
                    if let Some(s) = upstream.take() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                Output::ShutdownClientWrite => client.shutdown(Shutdown::Write)?,
                Output::ShutdownUpstreamWrite => upstream
                    .as_ref()
                    .expect("tunnel")
                    .shutdown(Shutdown::Write)?,
                Output::StartTunnel {
                    to_upstream,
                    to_client,
                } => {
                    upstream.as_ref().expect("tunnel").write_all(&to_upstream)?;
                    (&client).write_all(&to_client)?;
                }
                Output::Log(record) => println!("{record}"),
                // A blocking example closes at once; a production runtime lingers when
                // `linger` says the client may still send (see `Output::Close`).
                Output::Close { .. } => {
                    if let Some(s) = upstream.take() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                    let _ = client.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
        }
        // Step 3: wait for input or the deadline, and feed it in.
        let wait = conn
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |t| t - now());
        let t = now();
        match rx.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => conn.handle_timeout(now()),
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
            // Step 4: in a tunnel the runtime copies bytes itself and reports the counts.
            Ok(Event::Client(Some(b))) if conn.is_tunnel() => {
                upstream.as_ref().expect("tunnel").write_all(&b)?;
                conn.handle_relayed(t, Direction::ClientToUpstream, b.len() as u64);
            }
            Ok(Event::Upstream(n, _)) if n != dials || upstream.is_none() => {} // an old connection
            Ok(Event::Upstream(_, Some(b))) if conn.is_tunnel() => {
                (&client).write_all(&b)?;
                conn.handle_relayed(t, Direction::UpstreamToClient, b.len() as u64);
            }
            Ok(Event::Client(Some(b))) => conn.handle_client_data(t, Bytes::from(b)),
            Ok(Event::Upstream(_, Some(b))) => conn.handle_upstream_data(t, Bytes::from(b)),
            Ok(Event::Client(None)) => conn.handle_client_eof(t),
            Ok(Event::Upstream(_, None)) => conn.handle_upstream_eof(t),
        }
    }
}

/// Accepts clients forever, a thread each.
pub fn serve(listener: TcpListener, config: Arc<Config>) {
    for client in listener.incoming().flatten() {
        let config = config.clone();
        thread::spawn(move || {
            if let Err(e) = handle(client, config) {
                eprintln!("connection ended: {e}");
            }
        });
    }
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3129".into());
    let listener = TcpListener::bind(&addr)?;
    println!("blocking_proxy listening on {}", listener.local_addr()?);
    serve(listener, Arc::new(Config::default()));
    Ok(())
}
