//! Listening sockets and the accept loop.
//!
//! Each worker thread binds its own `SO_REUSEPORT` socket per `--listen` address, so the
//! kernel spreads connections over threads with no shared accept queue. Because
//! `SO_REUSEPORT` would also let us silently share a port with another process, [`reserve`]
//! first binds every address with a plain std listener (no `SO_REUSEPORT`): if something
//! already listens there, start-up fails with a clear error. Port 0 needs no check: the
//! first worker binds it and the others bind the port it got (see `driver::start`).
//!
//! Failure: accept errors never end the loop. Running out of descriptors (EMFILE/ENFILE) or
//! kernel memory backs off for a moment while existing connections keep being served;
//! above `--max-connections` new connections are closed at once.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::Context;
use monoio::net::{ListenerOpts, TcpListener};

use crate::conn;
use crate::worker::{Env, Isolated};

/// Accept queue length asked for (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 4096;
/// Pause after an accept failure caused by resource exhaustion.
const BACKOFF: Duration = Duration::from_millis(50);
/// At most one "out of descriptors" line on stderr per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Checks that every address with a fixed port is free (and not given twice), for the
/// addresses of several flags (`--listen`, `--tls-listen`) together, so an address given to
/// both is refused as well.
pub fn reserve_all(groups: &[(&str, &[SocketAddr])]) -> anyhow::Result<()> {
    // Held until all are bound, so a repeated address is refused as well.
    let mut probes = Vec::new();
    for (flag, addrs) in groups {
        for addr in addrs.iter().filter(|a| a.port() != 0) {
            let probe = std::net::TcpListener::bind(addr)
                .with_context(|| format!("{flag} {addr}: cannot listen"))?;
            probes.push(probe);
        }
    }
    Ok(())
}

/// Binds this thread's socket for `addr`, with `TCP_NODELAY` set on it: Linux copies the
/// option to every socket it accepts, which saves a `setsockopt` per connection (the
/// responses are written whole, so Nagle's algorithm would only delay them).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use std::os::fd::AsRawFd;
    let opts = ListenerOpts::new().reuse_port(true).backlog(BACKLOG);
    let listener = TcpListener::bind_with_config(addr, &opts)?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

/// Accepts until shutdown, spawning one task per admitted connection; `tls`: the HTTPS
/// listener (`--tls-listen`), whose clients speak TLS.
pub async fn accept_loop(env: Rc<Env>, listener: TcpListener, tls: bool) {
    let drain_id = u64::MAX - listener_id(&listener);
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = {
            let mut accept = pin!(listener.accept());
            poll_fn(|cx| {
                if env.drain.is_on() {
                    return Poll::Ready(None);
                }
                env.drain.register(drain_id, cx.waker());
                accept.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                let Some((admitted, load)) = env.admit(peer.ip()) else {
                    drop(stream);
                    continue;
                };
                let task_env = Rc::clone(&env);
                monoio::spawn(Isolated(conn::serve(
                    task_env, admitted, load, stream, peer, tls,
                )));
            }
            Some(Err(e)) => {
                if is_exhaustion(&e) {
                    let now = Instant::now();
                    if last_warning.map_or(true, |t| now.duration_since(t) >= WARN_EVERY) {
                        say!("ringway: accept: {e}; backing off");
                        last_warning = Some(now);
                    }
                    monoio::time::sleep(BACKOFF).await;
                } else {
                    // ECONNABORTED and friends concern one connection; a short pause keeps
                    // an unexpected persistent error from spinning the loop.
                    monoio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    env.drain.unregister(drain_id);
}

fn listener_id(listener: &TcpListener) -> u64 {
    use std::os::fd::AsRawFd;
    listener.as_raw_fd() as u64
}

fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepted sockets have `TCP_NODELAY` without a call of their own: it is set on the
    /// listener and the kernel copies it (the per-connection `setsockopt` was dropped for it).
    #[monoio::test_all]
    async fn accepted_sockets_inherit_tcp_nodelay() {
        use std::os::fd::AsRawFd;
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _peer = monoio::net::TcpStream::connect_addr(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a c_int we own, with its size.
        let rc = unsafe {
            libc::getsockopt(
                accepted.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        assert_eq!(value, 1);
    }

    #[test]
    fn reserve_refuses_an_address_in_use_or_given_twice() {
        let reserve = |a: &[SocketAddr]| reserve_all(&[("--listen", a)]);
        reserve(&["127.0.0.1:0".parse().unwrap()]).expect("port 0 is always free");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = reserve(&[taken.local_addr().unwrap()]).unwrap_err();
        assert!(format!("{err:#}").contains("--listen"), "{err:#}");
        let err = reserve_all(&[
            ("--listen", &[]),
            ("--tls-listen", &[taken.local_addr().unwrap()]),
        ])
        .unwrap_err();
        assert!(format!("{err:#}").starts_with("--tls-listen"), "{err:#}");
        let free = taken.local_addr().unwrap();
        drop(taken);
        assert!(
            reserve(&[free, free]).is_err(),
            "the same address twice is refused"
        );
        assert!(
            reserve_all(&[("--listen", &[free]), ("--tls-listen", &[free])]).is_err(),
            "the same address for both listeners is refused"
        );
    }
}
