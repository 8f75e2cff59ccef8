//! The ceiling relay: how fast could *any* forward proxy be on this kernel, per IO model?
//!
//! A proxy that does (next to) no HTTP work: every accepted client connection is paired with
//! one upstream TCP connection to a fixed address (the benchmark's nginx), and bytes are
//! relayed both ways unchanged. wrk's absolute-form requests (`GET http://127.0.0.1:PORT/1k HTTP/1.1`) reach
//! nginx as they are, and nginx answers absolute-form requests (RFC 9112 §3.2.2 makes servers
//! accept them), so this relay runs bench/run's keep-alive and new-connection-per-request
//! loads exactly like a proxy does, minus the proxy's user-space work. CONNECT is not served
//! (there is nothing to parse it with).
//!
//! Upstream connections are pooled, as every proxy measured pools them (without it the
//! new-connection-per-request load would cost the relay a second TCP handshake per request
//! that no proxy pays); [`pooling`] holds the few in-place byte edits that takes for
//! `Connection: close` requests.
//!
//! Two IO models in one binary, one thread each, so they can be compared side by side:
//! - `--mode uring` ([`uring`]): io_uring-native — multishot accept, multishot receive into a
//!   provided-buffer ring, sends as SQEs straight from the received buffer, every SQE of a loop
//!   turn submitted by one `io_uring_enter`, no readiness polls;
//! - `--mode epoll` ([`epoll`]): edge-triggered epoll with nonblocking `recv`/`send`, one
//!   `recv` per readiness event (tokio's model, and ringway's epoll driver's).
//!
//! A third mode is the same idea for CONNECT tunnels: `--mode splice` ([`splice`]) serves only
//! `CONNECT` to loopback addresses and moves the bytes with `splice(2)` alone (`--upstream` is
//! unused there).
//!
//! It prints `uring-ceiling (MODE) listening on ADDR` on stdout once bound (bench/run reads the
//! port from it) and runs until killed. Errors on one connection close that connection pair;
//! errors setting up the listener or the ring exit with a message. A measurement tool, not a
//! product: no timeouts, no access control — it listens on loopback in the benchmark.

mod epoll;
mod pooling;
mod splice;
mod sys;
#[cfg(test)]
mod tests;
mod uring;

use std::net::SocketAddrV4;
use std::process::ExitCode;

/// Command-line settings, shared by both modes so the comparison differs only in the IO model.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where clients connect.
    pub listen: SocketAddrV4,
    /// Where every client connection is relayed to.
    pub upstream: SocketAddrV4,
    /// Bytes per receive buffer (per provided buffer in uring mode, the shared scratch buffer in
    /// epoll mode): the same in both modes so neither reads more per call.
    pub buf_size: usize,
    /// uring mode: provided buffers in the ring (a power of two).
    pub bufs: u16,
    /// uring mode: ring setup flags (see [`uring::Taskrun`]).
    pub taskrun: uring::Taskrun,
}

const USAGE: &str =
    "usage: uring-ceiling --mode uring|epoll|splice --upstream IP:PORT [--listen IP:PORT] \
[--buf-size BYTES] [--bufs N] [--taskrun defer|coop|plain]";

fn parse() -> Result<(String, Settings), String> {
    let mut mode = None;
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: "127.0.0.1:80".parse().unwrap(),
        buf_size: 4096,
        bufs: 256,
        taskrun: uring::Taskrun::Defer,
    };
    let mut upstream_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--mode" => mode = Some(value()?),
            "--listen" => s.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--upstream" => {
                s.upstream = value()?.parse().map_err(|e| format!("--upstream: {e}"))?;
                upstream_given = true;
            }
            "--buf-size" => {
                s.buf_size = value()?.parse().map_err(|e| format!("--buf-size: {e}"))?
            }
            "--bufs" => s.bufs = value()?.parse().map_err(|e| format!("--bufs: {e}"))?,
            "--taskrun" => {
                s.taskrun = match value()?.as_str() {
                    "defer" => uring::Taskrun::Defer,
                    "coop" => uring::Taskrun::Coop,
                    "plain" => uring::Taskrun::Plain,
                    other => return Err(format!("--taskrun: unknown {other:?}")),
                }
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !upstream_given {
        return Err("--upstream is required".into());
    }
    if !s.bufs.is_power_of_two() || s.buf_size == 0 || s.buf_size > u32::MAX as usize {
        return Err("--bufs must be a power of two, --buf-size positive".into());
    }
    Ok((mode.ok_or("--mode is required")?, s))
}

fn main() -> ExitCode {
    let (mode, settings) = match parse() {
        Ok(v) => v,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("uring-ceiling: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    sys::ignore_sigpipe();
    let result = match mode.as_str() {
        "uring" => uring::run(&settings),
        "epoll" => epoll::run(&settings),
        "splice" => splice::run(&settings),
        other => Err(std::io::Error::other(format!("unknown --mode {other:?}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uring-ceiling: {e}");
            ExitCode::FAILURE
        }
    }
}
