//! The egress policy: where the proxy may connect on a client's behalf (the SSRF guard).
//!
//! A forward proxy that connects wherever it is told is a way into the network it runs in:
//! loopback services, the cloud metadata endpoint (169.254.169.254), private ranges. Every
//! destination is judged here, in the core, as a pure function of the policy and the address:
//!
//! 1. [`parse_host`]: is the target host a name, an IP literal (legacy IPv4 spellings
//!    included) or an invalid number (400)?
//! 2. [`EgressPolicy::judge_name`]: a name against the domain rules, before any DNS, so a
//!    denied name is never resolved.
//! 3. [`EgressPolicy::judge_ip_target`]: an IP literal against the domain rules' address
//!    patterns and allow-list mode, then as in 4.
//! 4. [`EgressPolicy::judge_addr`]: each resolved address right before it is dialed: the
//!    proxy's own listeners (never), the operator's ranges (longest prefix wins, deny wins a
//!    tie), `--allow-private`, then the built-in refusals of [`classify`].
//!
//! ## Key components
//! - [`Reason`]: why a destination is refused, one value for the access log, the metrics and
//!   the 403 body.
//! - [`classify`]: the built-in table of addresses that are not globally reachable.
//! - [`HostPatterns`]: the shared host-pattern grammar, O(labels) lookups over 100k+ entries.
//! - [`EgressPolicy`]: all of the above as data built once and shared read-only.
//!
//! ## Error handling
//! Judgements are `Result<(), Reason>`: a refusal is an answer for the client, never a
//! failure of the proxy. Only building the policy can fail ([`PatternError`] for a bad host
//! pattern); a rule once added is never silently widened.

mod addr;
mod literal;
mod patterns;
mod ranges;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

pub use addr::{canonical, classify};
pub use literal::{parse_host, HostKind};
pub use patterns::{HostPatterns, PatternError};

use crate::policy::Cidr;
use ranges::{RangeVerdict, Ranges};

/// Why a destination is refused: one value printed by the access log (`reason=`), the
/// metrics' `reason` label and the 403 body alike, so the three never disagree.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// 127.0.0.0/8, ::1.
    DestLoopback,
    /// 0.0.0.0/8, ::.
    DestUnspecified,
    /// 169.254.0.0/16 (the cloud metadata endpoint lives here), fe80::/10.
    DestLinkLocal,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (shared, CGNAT), fc00::/7 (unique local).
    DestPrivate,
    /// 224.0.0.0/4, ff00::/8.
    DestMulticast,
    /// 255.255.255.255.
    DestBroadcast,
    /// 240.0.0.0/4, 192.0.0.0/24, 198.18.0.0/15, 100::/64, fec0::/10.
    DestReserved,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    DestDocumentation,
    /// IPv6 forms that embed an IPv4 address and may be translated to it: IPv4-compatible
    /// ::/96, IPv4-translated ::ffff:0:0:0/96, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4
    /// 2002::/16, Teredo 2001::/32.
    DestIpv4Embedded,
    /// A `--deny-range` covers it, at least as specifically as any `--allow-range`.
    DestDeniedRange,
    /// Allow-list mode (at least one `--allow-domain`) and the target matched none: a name
    /// that matches no allow-domain pattern, or an IP literal that neither matches one nor
    /// lies in an `--allow-range`.
    DestNotAllowed,
    /// The name (or IP literal) matched a `--deny-domain` pattern.
    DestDomain,
    /// The proxy's own proxy listener: a request to itself would loop.
    DestSelf,
    /// One of the proxy's own other listeners (metrics, ...).
    DestOwnService,
}

impl Reason {
    /// Every reason, for tables of log words and metric labels.
    pub const ALL: &'static [Reason] = &[
        Reason::DestLoopback,
        Reason::DestUnspecified,
        Reason::DestLinkLocal,
        Reason::DestPrivate,
        Reason::DestMulticast,
        Reason::DestBroadcast,
        Reason::DestReserved,
        Reason::DestDocumentation,
        Reason::DestIpv4Embedded,
        Reason::DestDeniedRange,
        Reason::DestNotAllowed,
        Reason::DestDomain,
        Reason::DestSelf,
        Reason::DestOwnService,
    ];

    /// The access log's `reason=` word and the metrics' `reason` label (snake_case).
    pub const fn log_word(self) -> &'static str {
        match self {
            Reason::DestLoopback => "dest_loopback",
            Reason::DestUnspecified => "dest_unspecified",
            Reason::DestLinkLocal => "dest_link_local",
            Reason::DestPrivate => "dest_private",
            Reason::DestMulticast => "dest_multicast",
            Reason::DestBroadcast => "dest_broadcast",
            Reason::DestReserved => "dest_reserved",
            Reason::DestDocumentation => "dest_documentation",
            Reason::DestIpv4Embedded => "dest_ipv4_embedded",
            Reason::DestDeniedRange => "dest_denied_range",
            Reason::DestNotAllowed => "dest_not_allowed",
            Reason::DestDomain => "dest_domain",
            Reason::DestSelf => "dest_self",
            Reason::DestOwnService => "dest_own_service",
        }
    }

    /// What the destination is, for the 403 body: "destination 127.0.0.1 is {what}".
    pub const fn what(self) -> &'static str {
        match self {
            Reason::DestLoopback => "loopback",
            Reason::DestUnspecified => "an unspecified address",
            Reason::DestLinkLocal => "link-local",
            Reason::DestPrivate => "a private address",
            Reason::DestMulticast => "multicast",
            Reason::DestBroadcast => "the broadcast address",
            Reason::DestReserved => "a reserved address",
            Reason::DestDocumentation => "a documentation address",
            Reason::DestIpv4Embedded => "an IPv6 address that embeds an IPv4 address",
            Reason::DestDeniedRange => "in a --deny-range",
            Reason::DestNotAllowed => "not on the --allow-domain list",
            Reason::DestDomain => "matched by a --deny-domain",
            Reason::DestSelf => "this proxy itself",
            Reason::DestOwnService => "a service of this proxy",
        }
    }

    /// The flag that would allow the destination ("allow it with {remedy}"), if one would:
    /// `None` for the proxy's own sockets (never allowed) and for explicit deny rules (the
    /// remedy is to remove the rule; deny beats allow).
    pub const fn remedy(self) -> Option<&'static str> {
        match self {
            Reason::DestPrivate => Some("--allow-private"),
            Reason::DestNotAllowed => Some("--allow-domain"),
            Reason::DestDeniedRange
            | Reason::DestDomain
            | Reason::DestSelf
            | Reason::DestOwnService => None,
            _ => Some("--allow-range"),
        }
    }

    /// `true`: an address rule, RFC 9209 `error=destination_ip_prohibited`; `false`: a
    /// domain rule or the proxy's own sockets, `error=http_request_denied`. (The lead maps
    /// `DestSelf` to 508 `proxy_loop_detected` where it answers a loop.)
    pub const fn is_address_rule(self) -> bool {
        !matches!(
            self,
            Reason::DestNotAllowed | Reason::DestDomain | Reason::DestSelf | Reason::DestOwnService
        )
    }
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.log_word())
    }
}

/// Destination rules: built once (from flags or config), shared read-only inside `Policy`.
/// `Default` has the built-in refusals on and nothing extra allowed or denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    ranges: Ranges,
    allow_private: bool,
    allow_domains: HostPatterns,
    deny_domains: HostPatterns,
    /// `(listening address, is a proxy listener)`, IP canonicalised.
    own_listeners: Vec<(SocketAddr, bool)>,
    /// The host's own addresses, reached by a listener on an unspecified address.
    local_addresses: Vec<IpAddr>,
}

impl EgressPolicy {
    /// `--allow-range`: allowed, an exception to the built-in refusals (not to the proxy's
    /// own listeners), unless a `--deny-range` at least as long covers the address.
    pub fn allow_range(&mut self, c: Cidr) {
        self.ranges.add(c, true);
    }

    /// `--deny-range`: refused, unless a longer `--allow-range` covers the address.
    pub fn deny_range(&mut self, c: Cidr) {
        self.ranges.add(c, false);
    }

    /// `--allow-private`: [`Reason::DestPrivate`] addresses (private and CGNAT) allowed;
    /// loopback, link-local and the rest stay refused.
    pub fn set_allow_private(&mut self, yes: bool) {
        self.allow_private = yes;
    }

    /// Whether `--allow-private` is on.
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// The `--allow-domain` patterns, to add to.
    pub fn allow_domains_mut(&mut self) -> &mut HostPatterns {
        &mut self.allow_domains
    }

    /// The `--deny-domain` patterns, to add to.
    pub fn deny_domains_mut(&mut self) -> &mut HostPatterns {
        &mut self.deny_domains
    }

    /// The `--allow-domain` patterns.
    pub fn allow_domains(&self) -> &HostPatterns {
        &self.allow_domains
    }

    /// The `--deny-domain` patterns.
    pub fn deny_domains(&self) -> &HostPatterns {
        &self.deny_domains
    }

    /// One of the proxy's own listening sockets: a target equal to one is refused whatever
    /// is allowed ([`Reason::DestSelf`] for a proxy listener, [`Reason::DestOwnService`] for
    /// others such as metrics). A listener on an unspecified address (`0.0.0.0`, `::`) is
    /// reached at that port through any loopback or unspecified address and every address
    /// given to [`add_local_address`](Self::add_local_address); a target on an unspecified
    /// address reaches every listener at that port.
    pub fn add_own_listener(&mut self, addr: SocketAddr, proxy: bool) {
        let addr = SocketAddr::new(canonical(addr.ip()), addr.port());
        if !self.own_listeners.contains(&(addr, proxy)) {
            self.own_listeners.push((addr, proxy));
        }
    }

    /// An address of this host (an interface address), so that a listener on an unspecified
    /// address is recognised when a target names it.
    pub fn add_local_address(&mut self, ip: IpAddr) {
        let ip = canonical(ip);
        if !self.local_addresses.contains(&ip) {
            self.local_addresses.push(ip);
        }
    }

    /// Before DNS, for a host name (not an IP literal): deny-domain beats allow-domain; with
    /// any allow-domain pattern only matching names pass ([`Reason::DestNotAllowed`]).
    pub fn judge_name(&self, host: &str) -> Result<(), Reason> {
        debug_assert!(
            parse_host(host) == HostKind::Name,
            "judge_name({host:?}): an IP literal goes to judge_ip_target"
        );
        if self.deny_domains.matches_name(host) {
            return Err(Reason::DestDomain);
        }
        if !self.allow_domains.is_empty() && !self.allow_domains.matches_name(host) {
            return Err(Reason::DestNotAllowed);
        }
        Ok(())
    }

    /// An IP-literal target, before any dial or parent proxy: deny-domain address patterns
    /// ([`Reason::DestDomain`]); in allow-list mode the literal must match an allow-domain
    /// address pattern or lie in an `--allow-range` ([`Reason::DestNotAllowed`]); then
    /// [`judge_addr`](Self::judge_addr).
    pub fn judge_ip_target(&self, addr: SocketAddr) -> Result<(), Reason> {
        let ip = canonical(addr.ip());
        if self.deny_domains.matches_ip(ip) {
            return Err(Reason::DestDomain);
        }
        if !self.allow_domains.is_empty()
            && !self.allow_domains.matches_ip(ip)
            && self.ranges.judge(ip) != RangeVerdict::Allow
        {
            return Err(Reason::DestNotAllowed);
        }
        self.judge_addr(addr)
    }

    /// Each resolved address (and every literal) right before it is dialed: the proxy's own
    /// listeners first (never allowed), then the longest covering `--allow-range` /
    /// `--deny-range` (deny wins a tie), else `--allow-private` for private addresses, else
    /// [`classify`]. IPv4-mapped addresses are judged as the IPv4 address inside.
    pub fn judge_addr(&self, addr: SocketAddr) -> Result<(), Reason> {
        let ip = canonical(addr.ip());
        if let Some(proxy) = self.own_listener(ip, addr.port()) {
            return Err(if proxy {
                Reason::DestSelf
            } else {
                Reason::DestOwnService
            });
        }
        match self.ranges.judge(ip) {
            RangeVerdict::Allow => return Ok(()),
            RangeVerdict::Deny => return Err(Reason::DestDeniedRange),
            RangeVerdict::None => {}
        }
        match classify(ip) {
            None => Ok(()),
            Some(Reason::DestPrivate) if self.allow_private => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// `Some(is_proxy)` if `ip:port` (canonical) reaches one of the own listeners; a proxy
    /// listener wins over another on the same port.
    fn own_listener(&self, ip: IpAddr, port: u16) -> Option<bool> {
        let local =
            |a: IpAddr| a.is_loopback() || a.is_unspecified() || self.local_addresses.contains(&a);
        let mut found = None;
        for &(listen, proxy) in &self.own_listeners {
            if listen.port() != port {
                continue;
            }
            let l = listen.ip();
            let hit = l == ip || ip.is_unspecified() || (l.is_unspecified() && local(ip));
            if hit {
                found = Some(found.unwrap_or(false) || proxy);
            }
        }
        found
    }
}
