//! # ringway-core
//!
//! The sans-IO heart of Ringway, an HTTP/1.1 forward proxy: request parsing, routing
//! decisions, body framing and tunnel byte accounting as pure state transitions. Bytes and
//! events go in (with `now` passed as a value), [`Output`]s come out. There are no sockets,
//! clocks, threads or async here, so any runtime (monoio, tokio, a blocking loop, a fuzzer, a
//! WebAssembly host) drives the same code.
//!
//! ## Key components
//! - [`Connection`]: one client connection, from the first request head to close.
//! - [`request`] / [`response`]: strict head parsing (httparse plus line-ending and framing
//!   checks) and the rewrites between client and upstream.
//! - [`route::decide`]: forward, tunnel, answer or reject, from the head and the [`Policy`].
//! - [`dial_schedule`]: the Happy Eyeballs race of a name's approved addresses.
//! - [`parent`]: the parent proxy requests may be chained through, and its exceptions.
//! - [`final_recipient`]: the answers to OPTIONS and TRACE whose `Max-Forwards` reached 0.
//! - [`body`]: Content-Length and chunked framing, tracked without buffering bodies.
//! - [`tunnel::TunnelMeter`]: byte counts and half-close for CONNECT tunnels.
//! - [`AccessRecord`]: the access-log line for each request and tunnel.
//! - [`client_hello`] / [`intercept`]: reading a tunnel's TLS ClientHello and deciding
//!   whether to intercept it (TLS itself lives in the runtime).
//!
//! ## Error handling
//! A misbehaving peer never yields an `Err` to the runtime: it becomes a [`Problem`] with an
//! exact status (400, 403, 408, 431, 502, 504, 505, 508), a canned response when no response
//! had begun, then [`Output::Close`]. The runtime's own failures come back in as inputs
//! ([`Connection::handle_resolved`] with no address, [`Connection::handle_dial`] with a
//! [`DialError`], `handle_*_error`).
//!
//! ## The run loop
//! Every runtime follows the same steps. Two complete proxies in `examples/` do it and are
//! tested on loopback, each step in them commented with its number here:
//! [`blocking_proxy.rs`] over blocking `std::net` sockets (a thread per connection), and
//! [`tokio_proxy.rs`] over `tokio::net` (a task per connection, one `select!` per wait).
//! `docs/embedding.md` in the repository lists what an embedder must do and what is stable.
//!
//! [`blocking_proxy.rs`]: https://docs.rs/crate/ringway-core/latest/source/examples/blocking_proxy.rs
//! [`tokio_proxy.rs`]: https://docs.rs/crate/ringway-core/latest/source/examples/tokio_proxy.rs
//!
//! 1. Accept a client; create `Connection::new(config, peer, now)`.
//! 2. Drain: call [`Connection::poll_output`] until `None`, carrying out each [`Output`] in
//!    order (write bytes, look up a name and report with `handle_resolved`, connect to the
//!    approved address and report with `handle_dial`, cancel a losing attempt, release or
//!    close the upstream, write the log record, close).
//! 3. Wait for whichever comes first: client bytes (if [`Connection::wants_client_read`]),
//!    upstream bytes (if [`Connection::wants_upstream_read`]), or the deadline from
//!    [`Connection::poll_timeout`]. Feed what happened to the matching `handle_*` method:
//!    data, EOF, error, or `handle_timeout`.
//! 4. After [`Output::StartTunnel`], copy bytes between the two sockets yourself and report
//!    progress with [`Connection::handle_relayed`], EOFs with `handle_client_eof` /
//!    `handle_upstream_eof`.
//! 5. Go to 2 until [`Output::Close`].
//!
//! ## Cargo features
//! None by default; the crate is `no_std` + `alloc` and needs nothing else. `fuzzing` exposes
//! the bodies of the cargo-fuzz targets for the project's own fuzzer and corpus replay; it is
//! not a stable API.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod admission;
pub mod body;
pub mod client_hello;
mod config;
mod connection;
pub mod dial_schedule;
pub mod egress;
pub mod final_recipient;
pub mod intercept;
// The cargo-fuzz target bodies: only for fuzz/ and the corpus replay (feature `fuzzing`),
// hidden even then because they are not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod log;
pub mod parent;
mod policy;
mod problem;
pub mod request;
pub mod response;
pub mod route;
pub mod target;
mod time;
pub mod tunnel;

pub use admission::Load;
pub use config::{Config, MAX_HEADER_SLOTS};
pub use connection::{Connection, DialError, Dialed, Output, CONNECT_ESTABLISHED};
pub use dial_schedule::AttemptId;
pub use egress::EgressPolicy;
pub use log::AccessRecord;
pub use parent::{Hop, ParentProxy};
pub use policy::{Authentication, Cidr, Credential, Policy, PortRule};
pub use problem::{reason_phrase, Problem};
pub use time::Instant;
