//! Limits, timeouts and policy: everything a deployment tunes, as one plain value.
//!
//! The runtime builds one [`Config`] at start-up (from its flags) and shares it, behind an
//! `Arc`, with every [`Connection`](crate::Connection). Defaults are the ones a user gets from
//! `ringway` with no flags.

use core::time::Duration;

use crate::parent::ParentProxy;
use crate::policy::Policy;

/// Everything that shapes a connection's behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest request or response head accepted, in bytes (default 64 KiB). A larger request
    /// head is answered with 431; a larger response head with 502.
    pub max_head_bytes: usize,
    /// Most header fields accepted in one head (default 256, at most [`MAX_HEADER_SLOTS`]).
    /// A request with more gets 431, a response with more 502. Browsers and API gateways
    /// send 100+ fields in practice; [`Config::max_head_bytes`] stays the main guard.
    pub max_headers: usize,
    /// How long a client may take to send a complete request head once the connection is open
    /// or the first byte of a head arrived (default 30 s): the slowloris bound.
    pub header_timeout: Duration,
    /// How long an idle keep-alive client connection stays open between requests (default 60 s).
    pub idle_timeout: Duration,
    /// How long a CONNECT tunnel may go without a byte in either direction (default 5 min).
    pub tunnel_idle_timeout: Duration,
    /// How long the connection attempts of a dial may take, all together, before the client
    /// gets 504 (default 10 s). Starts when the addresses are known (after the lookup).
    pub connect_timeout: Duration,
    /// How long a name lookup may take before the client gets 504 with
    /// `Proxy-Status: ringway; error=dns_timeout` (default 5 s). Apart from
    /// [`Config::connect_timeout`], so a slow resolver is told from a slow origin.
    pub dns_timeout: Duration,
    /// How long a forwarded exchange may go without a byte from either side (default 5 min).
    pub exchange_idle_timeout: Duration,
    /// Who may use the proxy and where CONNECT may go.
    pub policy: Policy,
    /// The parent proxy to chain requests through (default none: straight to the origin).
    /// The egress policy is applied before anything goes to it.
    pub parent: Option<ParentProxy>,
    /// The name in our `Via` entries, and the one whose presence means a forwarding loop.
    pub via_pseudonym: &'static str,
    /// Most client connections open at once over the whole proxy (default 8192); the next one
    /// is answered `503` (see [`Config::admit`]).
    pub max_connections: usize,
    /// Most client connections open at once from one client address (default 0: no limit, as
    /// loopback tests and benchmarks hold thousands from one address); the next one is
    /// answered `429`.
    pub max_connections_per_client: usize,
    /// Whether connections emit [`Output::Log`](crate::Output::Log) records (default true).
    /// A runtime that logs nowhere turns this off so that no record is built or boxed on
    /// the hot path.
    pub access_records: bool,
}

/// Hard ceiling for [`Config::max_headers`]: the parser's header table lives on the stack
/// (32 bytes a slot, left uninitialised, so a larger table costs stack, not time), which keeps
/// it free of per-request allocation.
pub const MAX_HEADER_SLOTS: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_bytes: 64 * 1024,
            max_headers: 256,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            dns_timeout: Duration::from_secs(5),
            exchange_idle_timeout: Duration::from_secs(300),
            policy: Policy::default(),
            parent: None,
            via_pseudonym: "ringway",
            max_connections: 8192,
            max_connections_per_client: 0,
            access_records: true,
        }
    }
}
