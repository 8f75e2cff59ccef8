//! A complete forward proxy over `tokio::net`, driving `ringway-core`.
//!
//! The async twin of `blocking_proxy.rs`: a task per client connection, one `select!` per
//! wait, and the drain rule from the crate docs. Every step below carries the number of its
//! step in the run loop ("The run loop" in the crate docs). Plain HTTP keeps the client
//! connection alive across requests and opens an upstream connection per exchange (no pool);
//! CONNECT tunnels are relayed here with the core keeping the accounts and deciding the
//! half-closes; timeouts come from `poll_timeout` through `sleep_until`; the access log goes
//! to stdout. Everything else (parsing, routing, framing, errors) is the core's.
//!
//! Run: `cargo run -p ringway-core --example tokio_proxy -- 127.0.0.1:3129`, then
//! `curl -x http://127.0.0.1:3129 http://example.com/`.
//!
//! tokio is a dev-dependency of the core only (the core itself stays `no_std` and IO-free).
//! It does not build for WebAssembly, where this example compiles to a stub `main`.

#[cfg(not(target_family = "wasm"))]
pub use proxy::{config, serve};

#[cfg(not(target_family = "wasm"))]
mod proxy {
    use std::future::{pending, Future};
    use std::io;
    use std::net::IpAddr;
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use bytes::BytesMut;
    use ringway_core::tunnel::Direction;
    use ringway_core::{Config, Connection, DialError, Dialed, Instant, Output};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{lookup_host, TcpListener, TcpStream};
    use tokio::time::{sleep, sleep_until, timeout_at};

    /// Bytes asked of the kernel per read.
    const READ_SIZE: usize = 16 * 1024;
    /// Longest a closing connection reads and discards late client input (`Output::Close`).
    const LINGER: Duration = Duration::from_secs(2);

    /// The proxy's configuration: the one place to set limits, timeouts and policy.
    pub fn config() -> Config {
        Config::default()
    }

    /// The core's clock: time since the first call, on tokio's clock (so a paused test
    /// clock would drive the core too).
    fn origin() -> tokio::time::Instant {
        static START: OnceLock<tokio::time::Instant> = OnceLock::new();
        *START.get_or_init(tokio::time::Instant::now)
    }
    fn now() -> Instant {
        Instant::from_elapsed(origin().elapsed())
    }
    /// A core deadline as a tokio instant.
    fn at(deadline: Instant) -> tokio::time::Instant {
        origin() + deadline.elapsed()
    }

    /// Runs `fut` until the core's next deadline; `None` if the deadline came first. Awaits
    /// inside the drain (a lookup, a connect) stand in for step 3's wait, so they end when it
    /// would have: then the core decides, through `handle_timeout`.
    async fn before<F: Future>(conn: &Connection, fut: F) -> Option<F::Output> {
        match conn.poll_timeout() {
            Some(deadline) => timeout_at(at(deadline), fut).await.ok(),
            None => Some(fut.await),
        }
    }

    /// Reads into `buf` if `stream` exists and `wanted`; otherwise never completes, so that a
    /// `select!` branch can be switched off by the core's answers.
    async fn read_if(
        stream: Option<&mut OwnedReadHalf>,
        wanted: bool,
        buf: &mut BytesMut,
    ) -> io::Result<usize> {
        match stream {
            Some(s) if wanted => {
                buf.reserve(READ_SIZE);
                s.read_buf(buf).await
            }
            _ => pending().await,
        }
    }

    /// Serves one client connection to the end.
    async fn handle(client: TcpStream, config: Arc<Config>) -> io::Result<()> {
        // Step 1: a Connection per accepted client.
        let mut conn = Connection::new(config.clone(), client.peer_addr()?, now());
        let (mut client_rd, mut client_wr) = client.into_split();
        // Kept as halves until Output::Close: dropping a write half sends FIN.
        let mut upstream: Option<(OwnedReadHalf, OwnedWriteHalf)> = None;
        let (mut client_buf, mut upstream_buf) = (BytesMut::new(), BytesMut::new());
        loop {
            // Step 2: drain every output, in order. A failed write is an input like any other.
            while let Some(output) = conn.poll_output() {
                match output {
                    Output::ToClient(b) => {
                        if client_wr.write_all(&b).await.is_err() {
                            conn.handle_client_error(now());
                        }
                    }
                    Output::ToUpstream(b) => {
                        let (_, up) = upstream.as_mut().expect("ToUpstream only after a dial");
                        if up.write_all(&b).await.is_err() {
                            conn.handle_upstream_error(now());
                        }
                    }
                    Output::Resolve(authority) => {
                        // The core judges every address (egress policy); an empty list is a
                        // failed lookup.
                        let found = before(&conn, lookup_host((authority.host(), 0))).await;
                        match found {
                            Some(found) => {
                                let addrs: Vec<IpAddr> =
                                    found.map_or(Vec::new(), |a| a.map(|a| a.ip()).collect());
                                conn.handle_resolved(now(), &addrs);
                            }
                            None => conn.handle_timeout(now()),
                        }
                    }
                    Output::Connect { attempt, addr, .. } => {
                        // Exactly the address the core approved. No pool: every exchange
                        // connects afresh (`allow_pooled` is a permission, not an order).
                        // Attempts run one at a time here: when the core's next deadline comes
                        // first (the next address is due after 250 ms, or the whole dial timed
                        // out), this attempt is given up and reported as timed out, and the core
                        // moves on. A runtime with attempts side by side keeps it running.
                        match before(&conn, TcpStream::connect(addr)).await {
                            Some(Ok(s)) => {
                                upstream = Some(s.into_split());
                                conn.handle_dial(now(), attempt, Ok(Dialed { reused: false }));
                            }
                            // The core tries the next approved address, if any.
                            Some(Err(_)) => {
                                conn.handle_dial(now(), attempt, Err(DialError::Refused))
                            }
                            None => {
                                conn.handle_dial(now(), attempt, Err(DialError::Timeout));
                                conn.handle_timeout(now());
                            }
                        }
                    }
                    // Never sent here: attempts are answered one at a time, so none is in
                    // flight when another wins.
                    Output::CancelConnect(_) => {}
                    // No pool, so a reusable upstream is closed like a spent one.
                    Output::ReleaseUpstream | Output::CloseUpstream => upstream = None,
                    // Step 4 (half-close): one direction ended, the other keeps flowing.
                    Output::ShutdownClientWrite => {
                        let _ = client_wr.shutdown().await;
                    }
                    Output::ShutdownUpstreamWrite => {
                        if let Some((_, up)) = upstream.as_mut() {
                            let _ = up.shutdown().await;
                        }
                    }
                    // Step 4: a tunnel from here on; first the bytes that came with the heads.
                    Output::StartTunnel {
                        to_upstream,
                        to_client,
                    } => {
                        let (_, up) = upstream.as_mut().expect("a tunnel has an upstream");
                        if up.write_all(&to_upstream).await.is_err() {
                            conn.handle_upstream_error(now());
                        } else if client_wr.write_all(&to_client).await.is_err() {
                            conn.handle_client_error(now());
                        }
                    }
                    Output::Log(record) => println!("{record}"),
                    // Step 5: done. Dropping the halves closes both sockets.
                    Output::Close { linger } => {
                        let _ = client_wr.shutdown().await;
                        if linger {
                            // The client may still send: read and discard for a moment, so
                            // unread input does not turn the close into a reset that
                            // destroys the response just written.
                            let mut sink = [0u8; 4096];
                            let discard = async {
                                while matches!(client_rd.read(&mut sink).await, Ok(n) if n > 0) {}
                            };
                            let _ = tokio::time::timeout(LINGER, discard).await;
                        }
                        return Ok(());
                    }
                }
            }

            // Step 3: wait for whichever comes first of the reads the core wants and its
            // deadline. In a tunnel (step 4) the core wants neither read; each direction is
            // read until its EOF, which the meter records.
            let (read_client, read_upstream) = match conn.tunnel() {
                Some(m) => (
                    !m.has_ended(Direction::ClientToUpstream),
                    !m.has_ended(Direction::UpstreamToClient),
                ),
                None => (conn.wants_client_read(), conn.wants_upstream_read()),
            };
            let deadline = conn.poll_timeout();
            let up_rd = upstream.as_mut().map(|(rd, _)| rd);
            tokio::select! {
                r = read_if(Some(&mut client_rd), read_client, &mut client_buf) => {
                    let t = now();
                    match r {
                        Ok(0) => conn.handle_client_eof(t),
                        Err(_) => conn.handle_client_error(t),
                        Ok(n) if conn.is_tunnel() => {
                            // Step 4: relay, then report the count (it resets the idle timer).
                            let (_, up) = upstream.as_mut().expect("a tunnel has an upstream");
                            match up.write_all(&client_buf.split()).await {
                                Ok(()) => {
                                    conn.handle_relayed(t, Direction::ClientToUpstream, n as u64)
                                }
                                Err(_) => conn.handle_upstream_error(now()),
                            }
                        }
                        Ok(_) => conn.handle_client_data(t, client_buf.split().freeze()),
                    }
                }
                r = read_if(up_rd, read_upstream, &mut upstream_buf) => {
                    let t = now();
                    match r {
                        Ok(0) => conn.handle_upstream_eof(t),
                        Err(_) => conn.handle_upstream_error(t),
                        Ok(n) if conn.is_tunnel() => {
                            match client_wr.write_all(&upstream_buf.split()).await {
                                Ok(()) => {
                                    conn.handle_relayed(t, Direction::UpstreamToClient, n as u64)
                                }
                                Err(_) => conn.handle_client_error(now()),
                            }
                        }
                        Ok(_) => conn.handle_upstream_data(t, upstream_buf.split().freeze()),
                    }
                }
                // The deadline as a tokio instant; none means no timer at all.
                _ = async {
                    match deadline {
                        Some(d) => sleep_until(at(d)).await,
                        None => pending().await,
                    }
                } => conn.handle_timeout(now()),
            }
        }
    }

    /// Accepts clients forever, a task each. Accept errors (EMFILE when out of descriptors)
    /// back off briefly instead of ending the server.
    pub async fn serve(listener: TcpListener, config: Arc<Config>) {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    let config = config.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(client, config).await {
                            eprintln!("connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(not(target_family = "wasm"))]
#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3129".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("tokio_proxy listening on {}", listener.local_addr()?);
    serve(listener, std::sync::Arc::new(config())).await;
    Ok(())
}

#[cfg(target_family = "wasm")]
fn main() {
    eprintln!("tokio_proxy needs tokio::net, which this target does not have");
}
