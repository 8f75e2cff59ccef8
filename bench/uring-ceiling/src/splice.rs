//! The CONNECT ceiling: a tunnel-only proxy that moves bytes with `splice(2)` and nothing else.
//!
//! Each client sends `CONNECT 127.x.y.z:PORT HTTP/1.1` and a head; the relay dials that address
//! (loopback only: anything else is answered `403` and closed, so this tool cannot send traffic
//! off the machine), answers `200`, and then moves bytes each way socket → pipe → socket with
//! nonblocking `splice` through a 1 MiB pipe per direction (`F_SETPIPE_SZ`, as ringway's tunnels),
//! driven by edge-triggered epoll. No HTTP parsing beyond the request line, no copies, no
//! timers: what is left is the kernel's splice path, the readiness wait and the loop — the least
//! CPU per byte a splicing proxy can spend, to compare ringway's and Go's tunnels with.
//!
//! An end of stream in one direction is passed on as `shutdown(SHUT_WR)` once the pipe is
//! drained; the tunnel closes when both directions ended or on any error. Bytes the client sent
//! after its head are not expected (tunnel-load waits for the `200`) and are dropped.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

use crate::sys::{self, check};
use crate::Settings;

/// The listener's token in `epoll_event.u64`; tunnels use `index << 1 | side`.
const LISTENER: u64 = u64::MAX;
/// Each direction's pipe, as ringway's tunnels size theirs (`F_SETPIPE_SZ`).
const PIPE_SIZE: usize = 1 << 20;
const SPLICE_FLAGS: libc::c_uint = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;

/// Bytes flowing from side `s` to side `1 - s` through a pipe.
struct Direction {
    /// `[read end, write end]`.
    pipe: [RawFd; 2],
    in_pipe: usize,
    /// The source ended (splice returned 0).
    ended: bool,
    /// The end was passed on (`shutdown(SHUT_WR)` on the destination).
    passed_on: bool,
}

/// Where a tunnel is in its short life before the bytes flow.
enum Stage {
    /// Reading the client's CONNECT head.
    Head(Vec<u8>),
    /// Dialing the target.
    Connecting,
    Open,
}

/// One CONNECT tunnel: the client, the target and a pipe each way.
struct Tunnel {
    /// `[client, target]`; the target is -1 until dialed.
    fd: [RawFd; 2],
    stage: Stage,
    dir: [Direction; 2],
    open: bool,
}

/// The whole relay: the epoll set and every tunnel.
struct Relay {
    epfd: RawFd,
    tunnels: Vec<Tunnel>,
    free: Vec<u32>,
    closed: Vec<u32>,
}

/// Runs the splice tunnel relay until the process is killed.
pub fn run(settings: &Settings) -> io::Result<()> {
    let (listen_fd, bound) = sys::listener(settings.listen, true)?;
    // SAFETY: epoll_create1 has no memory arguments.
    let epfd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    let mut relay = Relay {
        epfd,
        tunnels: Vec::new(),
        free: Vec::new(),
        closed: Vec::new(),
    };
    relay.register(
        listen_fd,
        LISTENER,
        libc::EPOLLIN as u32 | libc::EPOLLET as u32,
    )?;
    sys::announce("splice, CONNECT only", bound);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // SAFETY: `events` is live and holds the number of entries passed.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                relay.accept_all(listen_fd);
            } else {
                relay.on_event((token >> 1) as u32, (token & 1) as usize, flags);
            }
        }
        let Relay { closed, free, .. } = &mut relay;
        free.append(closed);
    }
}

/// A nonblocking pipe of `PIPE_SIZE` (or the system's limit).
fn pipe() -> io::Result<[RawFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: a descriptor this function owns; a smaller pipe still works.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int) };
    Ok(fds)
}

/// The thread's errno after a failed call.
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The loopback target of a `CONNECT` head, or None.
fn connect_target(head: &[u8]) -> Option<SocketAddrV4> {
    let line = std::str::from_utf8(head.split(|&b| b == b'\r').next()?).ok()?;
    let target: SocketAddrV4 = line
        .strip_prefix("CONNECT ")?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    target.ip().is_loopback().then_some(target)
}

impl Relay {
    fn register(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is live for the call.
        check(unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
    }

    fn accept_all(&mut self, listen_fd: RawFd) {
        loop {
            // SAFETY: no address is asked for.
            let fd = unsafe {
                libc::accept4(
                    listen_fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                return;
            }
            let (Ok(a), Ok(b)) = (pipe(), pipe()) else {
                sys::close(fd);
                continue;
            };
            let dir = |pipe| Direction {
                pipe,
                in_pipe: 0,
                ended: false,
                passed_on: false,
            };
            let tunnel = Tunnel {
                fd: [fd, -1],
                stage: Stage::Head(Vec::new()),
                dir: [dir(a), dir(b)],
                open: true,
            };
            let index = match self.free.pop() {
                Some(i) => {
                    self.tunnels[i as usize] = tunnel;
                    i
                }
                None => {
                    self.tunnels.push(tunnel);
                    (self.tunnels.len() - 1) as u32
                }
            };
            let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            if self.register(fd, (index as u64) << 1, events).is_err() {
                self.close(index);
            } else {
                self.read_head(index);
            }
        }
    }

    fn on_event(&mut self, index: u32, side: usize, flags: u32) {
        if !self.tunnels[index as usize].open {
            return;
        }
        let readable = flags
            & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
            != 0;
        let writable = flags & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
        match self.tunnels[index as usize].stage {
            Stage::Head(_) => {
                if side == 0 && readable {
                    self.read_head(index);
                }
            }
            Stage::Connecting => {
                if side == 1 && writable {
                    self.connected(index);
                }
            }
            Stage::Open => {
                if readable && !self.pump(index, side) {
                    return;
                }
                if writable {
                    self.pump(index, 1 - side);
                }
            }
        }
    }

    fn read_head(&mut self, index: u32) {
        let tunnel = &mut self.tunnels[index as usize];
        let Stage::Head(head) = &mut tunnel.stage else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is live for the call, with its length.
            let n = unsafe { libc::recv(tunnel.fd[0], buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 && errno() == libc::EAGAIN {
                return;
            }
            if n <= 0 || head.len() > 16 * 1024 {
                return self.close(index);
            }
            head.extend_from_slice(&buf[..n as usize]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let Some(target) = connect_target(head) else {
            let answer =
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            // SAFETY: the answer is live for the call.
            unsafe {
                libc::send(
                    tunnel.fd[0],
                    answer.as_ptr().cast(),
                    answer.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            return self.close(index);
        };
        let Ok(fd) = sys::tcp_socket(true) else {
            return self.close(index);
        };
        tunnel.fd[1] = fd;
        tunnel.stage = Stage::Connecting;
        let sa = sys::sockaddr(target);
        // SAFETY: the address is live for the call, with its length.
        let r = unsafe {
            libc::connect(
                fd,
                (&sa as *const libc::sockaddr_in).cast(),
                sys::SOCKADDR_LEN,
            )
        };
        if r < 0 && errno() != libc::EINPROGRESS {
            return self.close(index);
        }
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if self.register(fd, (index as u64) << 1 | 1, events).is_err() {
            self.close(index);
        }
    }

    fn connected(&mut self, index: u32) {
        let tunnel = &mut self.tunnels[index as usize];
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `len` are live for the call.
        let r = unsafe {
            libc::getsockopt(
                tunnel.fd[1],
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r < 0 || err != 0 {
            let answer =
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            // SAFETY: the answer is live for the call.
            unsafe {
                libc::send(
                    tunnel.fd[0],
                    answer.as_ptr().cast(),
                    answer.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            return self.close(index);
        }
        let answer = b"HTTP/1.1 200 Connection established\r\n\r\n";
        // SAFETY: the answer is live for the call; a fresh socket's buffer takes 39 bytes.
        let n = unsafe {
            libc::send(
                tunnel.fd[0],
                answer.as_ptr().cast(),
                answer.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n != answer.len() as isize {
            return self.close(index);
        }
        tunnel.stage = Stage::Open;
        if self.pump(index, 0) {
            self.pump(index, 1);
        }
    }

    /// Moves bytes from side `from` to the other through its pipe until the source has none
    /// (`EAGAIN`), the destination is full, or the source ended; false when the tunnel closed.
    fn pump(&mut self, index: u32, from: usize) -> bool {
        let tunnel = &mut self.tunnels[index as usize];
        let (src, dst) = (tunnel.fd[from], tunnel.fd[1 - from]);
        let d = &mut tunnel.dir[from];
        loop {
            if d.in_pipe > 0 {
                // SAFETY: plain descriptors; no memory is passed.
                let m = unsafe {
                    libc::splice(
                        d.pipe[0],
                        std::ptr::null_mut(),
                        dst,
                        std::ptr::null_mut(),
                        d.in_pipe,
                        SPLICE_FLAGS,
                    )
                };
                if m < 0 {
                    if errno() == libc::EAGAIN {
                        return true; // the destination's EPOLLOUT edge resumes this
                    }
                    self.close(index);
                    return false;
                }
                d.in_pipe -= m as usize;
                if d.in_pipe > 0 {
                    continue;
                }
            }
            if d.ended {
                if !d.passed_on {
                    d.passed_on = true;
                    // SAFETY: a plain descriptor.
                    unsafe { libc::shutdown(dst, libc::SHUT_WR) };
                }
                if tunnel.dir.iter().all(|d| d.passed_on) {
                    self.close(index);
                    return false;
                }
                return true;
            }
            // SAFETY: plain descriptors; no memory is passed.
            let n = unsafe {
                libc::splice(
                    src,
                    std::ptr::null_mut(),
                    d.pipe[1],
                    std::ptr::null_mut(),
                    PIPE_SIZE,
                    SPLICE_FLAGS,
                )
            };
            match n {
                0 => d.ended = true,
                n if n > 0 => d.in_pipe += n as usize,
                _ if errno() == libc::EAGAIN => return true,
                _ => {
                    self.close(index);
                    return false;
                }
            }
        }
    }

    fn close(&mut self, index: u32) {
        let tunnel = &mut self.tunnels[index as usize];
        if !tunnel.open {
            return;
        }
        tunnel.open = false;
        for fd in tunnel
            .fd
            .into_iter()
            .chain(tunnel.dir.iter().flat_map(|d| d.pipe))
        {
            if fd >= 0 {
                sys::close(fd);
            }
        }
        self.closed.push(index);
    }
}

#[cfg(test)]
mod guard_tests {
    use super::connect_target;

    /// The guard that keeps this tool on the machine, proven without a socket: only a
    /// loopback IPv4 literal is a target.
    #[test]
    fn splice_refuses_every_target_but_a_loopback_literal() {
        let target = |line: &str| connect_target(format!("{line}\r\n\r\n").as_bytes());
        assert_eq!(
            target("CONNECT 127.0.0.1:443 HTTP/1.1"),
            Some("127.0.0.1:443".parse().unwrap())
        );
        assert_eq!(
            target("CONNECT 127.9.9.9:8443 HTTP/1.1"),
            Some("127.9.9.9:8443".parse().unwrap())
        );
        for refused in [
            "CONNECT 10.1.2.3:443 HTTP/1.1",
            "CONNECT 192.168.1.1:443 HTTP/1.1",
            "CONNECT 0.0.0.0:443 HTTP/1.1",
            "CONNECT origin.invalid:443 HTTP/1.1",
            "CONNECT localhost:443 HTTP/1.1",
            "CONNECT [::1]:443 HTTP/1.1",
            "GET http://127.0.0.1/ HTTP/1.1",
            "CONNECT 127.0.0.1 HTTP/1.1",
        ] {
            assert_eq!(target(refused), None, "{refused}");
        }
    }
}
