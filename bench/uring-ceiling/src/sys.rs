//! Thin libc wrappers both modes share: the listener, the upstream socket, errno handling.
//!
//! Each returns `io::Error::last_os_error()` on failure; nothing here retries.

use std::io;
use std::mem::size_of;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

/// Turns a `-1` return into the thread's errno.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A relay writes to sockets whose peer may have gone: the error must come back as `EPIPE`,
/// not kill the process.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The kernel's form of an IPv4 address, for `bind` and `connect`.
pub fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// `size_of::<sockaddr_in>()` as the kernel wants it.
pub const SOCKADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// A new TCP socket with `TCP_NODELAY` on: a relay forwards each message as it arrives, and
/// Nagle would hold back the second part of a response split across two receives until the
/// client's delayed ACK.
pub fn tcp_socket(nonblocking: bool) -> io::Result<RawFd> {
    let flags =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain syscalls on a descriptor this function owns.
    unsafe {
        let fd = check(libc::socket(libc::AF_INET, flags, 0))?;
        if let Err(e) = set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1) {
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

/// `setsockopt` for an integer option.
pub fn set_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The listening socket, `TCP_NODELAY` set on it so that accepted sockets inherit it (Linux
/// copies the listener's options into the accepted socket) without a `setsockopt` each.
/// Returns the descriptor and the bound address (port 0 becomes the real port).
pub fn listener(addr: SocketAddrV4, nonblocking: bool) -> io::Result<(RawFd, SocketAddrV4)> {
    let fd = tcp_socket(nonblocking)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let sa = sockaddr(addr);
    // SAFETY: `sa` and `out` are live for the calls, with the lengths passed.
    unsafe {
        check(libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            SOCKADDR_LEN,
        ))?;
        check(libc::listen(fd, 4096))?;
        let mut out: libc::sockaddr_in = std::mem::zeroed();
        let mut len = SOCKADDR_LEN;
        check(libc::getsockname(
            fd,
            (&mut out as *mut libc::sockaddr_in).cast(),
            &mut len,
        ))?;
        let bound = SocketAddrV4::new(
            u32::from_be(out.sin_addr.s_addr).into(),
            u16::from_be(out.sin_port),
        );
        Ok((fd, bound))
    }
}

/// The banner bench/run parses: `... listening on ADDR ...`, flushed at once.
pub fn announce(mode: &str, bound: SocketAddrV4) {
    use std::io::Write;
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "uring-ceiling ({mode}, 1 thread) listening on {bound}");
    let _ = out.flush();
}

/// Closes a descriptor this process owns; errors are of no use to a relay at that point.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}
