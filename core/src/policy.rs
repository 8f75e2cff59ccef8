//! Who may use the proxy, and where it may go.
//!
//! Policy is data, consulted by [`route::decide`](crate::route::decide): the client admission
//! list (CIDR blocks; loopback only by default so Ringway is never an open proxy) and the
//! ports CONNECT may reach (443 only by default, as tunnels to arbitrary ports turn a proxy into
//! a relay for any protocol). Authentication and destination rules slot in here later.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::str::FromStr;

use crate::egress::EgressPolicy;

/// Which ports CONNECT may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRule {
    /// Any port from 1 to 65535.
    Any,
    /// Only the listed ports.
    List(Vec<u16>),
}

impl PortRule {
    /// Whether `port` is allowed.
    pub fn allows(&self, port: u16) -> bool {
        match self {
            PortRule::Any => true,
            PortRule::List(ports) => ports.contains(&port),
        }
    }
}

impl FromStr for PortRule {
    type Err = &'static str;
    /// Parses `any` or a comma-separated list such as `443,8443`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("any") {
            return Ok(PortRule::Any);
        }
        let mut ports = Vec::new();
        for part in s.split(',') {
            let port: u16 = part
                .trim()
                .parse()
                .map_err(|_| "expected `any` or a comma-separated list of ports 1-65535")?;
            if port == 0 {
                return Err("port 0 is not a valid CONNECT port");
            }
            ports.push(port);
        }
        Ok(PortRule::List(ports))
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A network; bits of `network` beyond `prefix` are ignored.
    pub fn new(network: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    /// The prefix length: 0 to 32 for IPv4, 0 to 128 for IPv6.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address as given (bits beyond the prefix are not cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// Whether `addr` lies in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
    /// what a dual-stack socket reports) matches IPv4 networks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_match(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(a)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_match(u128::from(net), u128::from(a), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_match(net: u128, addr: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix));
    net & mask == addr & mask
}

impl FromStr for Cidr {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const BAD: &str = "expected an address or CIDR block such as 10.0.0.0/8 or ::1/128";
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| BAD)?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| BAD)?,
            None => max,
        };
        Cidr::new(network, prefix).ok_or("CIDR prefix is longer than the address")
    }
}

/// The proxy's access policy: who may use it and where CONNECT may go.
///
/// Plain data, built once (from flags or a file) and shared read-only through
/// [`Config`](crate::Config), so every decision it drives is a pure function of the request
/// and this value. The default admits loopback clients only and tunnels to port 443 only, so
/// an unconfigured proxy is never open.
///
/// ```
/// use ringway_core::{Cidr, Config, Policy, PortRule};
///
/// let mut policy = Policy::default();
/// policy.allowed_clients.push("10.0.0.0/8".parse::<Cidr>().unwrap());
/// policy.connect_ports = "443,8443".parse::<PortRule>().unwrap();
/// policy.add_basic_credentials("alice", "s3cret");
///
/// assert!(policy.admits("10.1.2.3".parse().unwrap()));
/// assert!(!policy.admits("192.0.2.1".parse().unwrap()));
/// assert!(policy.connect_ports.allows(8443) && !policy.connect_ports.allows(22));
/// assert!(policy.authorizes(Some(b"Basic YWxpY2U6czNjcmV0")));
/// assert!(!policy.authorizes(None));
///
/// let config = Config { policy, ..Config::default() };
/// # let _ = config;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Networks whose clients may use the proxy.
    pub allowed_clients: Vec<Cidr>,
    /// Ports CONNECT may reach.
    pub connect_ports: PortRule,
    /// Accepted `Proxy-Authorization: Basic` credentials (see
    /// [`Policy::add_basic_credentials`]); empty means no authentication is required.
    pub basic_credentials: Vec<Credential>,
    /// Where the proxy may connect: the SSRF guard (built-in refusals on by default).
    pub egress: EgressPolicy,
}

/// One accepted user: the name (for the access log) and the `user:password` pair
/// base64-encoded, so checking a request needs no decoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name, shared with every access record of this user's requests (an `Arc`,
    /// so naming the user costs a reference count, not an allocation).
    pub user: Arc<str>,
    /// `base64(user:password)`.
    encoded: String,
}

impl core::fmt::Debug for Credential {
    /// The user name only: key material never reaches a `Debug` output.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The outcome of checking a request's `Proxy-Authorization`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// No credentials are configured: everyone may proceed, anonymously.
    Open,
    /// The credentials of this user matched.
    User(Arc<str>),
    /// Credentials are required and none matched (407).
    Denied,
}

impl Policy {
    /// Whether a client at `addr` may use the proxy.
    pub fn admits(&self, addr: IpAddr) -> bool {
        self.allowed_clients.iter().any(|c| c.contains(addr))
    }

    /// Accepts `user:password` via `Proxy-Authorization: Basic` (RFC 7617). Stored encoded, so
    /// checking a request needs no decoding.
    pub fn add_basic_credentials(&mut self, user: &str, password: &str) {
        let mut plain = String::with_capacity(user.len() + password.len() + 1);
        plain.push_str(user);
        plain.push(':');
        plain.push_str(password);
        self.basic_credentials.push(Credential {
            user: Arc::from(user),
            encoded: base64(plain.as_bytes()),
        });
    }

    /// Whether a request with this `Proxy-Authorization` value (if any) may proceed.
    pub fn authorizes(&self, proxy_authorization: Option<&[u8]>) -> bool {
        self.authenticate(proxy_authorization) != Authentication::Denied
    }

    /// Who a request with this `Proxy-Authorization` value (if any) is. Every configured
    /// credential is compared in full whatever matched (no early exit, and the matching
    /// index is picked without a branch), so timing reveals neither how much of a guess was
    /// right nor which entry it was close to.
    pub fn authenticate(&self, proxy_authorization: Option<&[u8]>) -> Authentication {
        if self.basic_credentials.is_empty() {
            return Authentication::Open;
        }
        let Some(value) = proxy_authorization else {
            return Authentication::Denied;
        };
        let value = crate::head::trim(value);
        let Some(space) = value.iter().position(|&b| b == b' ') else {
            return Authentication::Denied;
        };
        let (scheme, token) = (&value[..space], crate::head::trim(&value[space..]));
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return Authentication::Denied;
        }
        // `found` is one past the matching index (0: none), selected with a mask.
        let found = self
            .basic_credentials
            .iter()
            .enumerate()
            .fold(0usize, |found, (i, c)| {
                let mask =
                    usize::from(constant_time_eq(c.encoded.as_bytes(), token)).wrapping_neg();
                (found & !mask) | ((i + 1) & mask)
            });
        match found.checked_sub(1) {
            Some(i) => Authentication::User(Arc::clone(&self.basic_credentials[i].user)),
            None => Authentication::Denied,
        }
    }

    /// The loopback networks: the default admission list.
    pub fn loopback() -> Vec<Cidr> {
        alloc::vec![
            Cidr::new(IpAddr::V4(core::net::Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid"),
            Cidr::new(IpAddr::V6(core::net::Ipv6Addr::LOCALHOST), 128).expect("valid"),
        ]
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_clients: Policy::loopback(),
            connect_ports: PortRule::List(alloc::vec![443]),
            basic_credentials: Vec::new(),
            egress: EgressPolicy::default(),
        }
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// credential was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_policy_admits_loopback_only() {
        let p = Policy::default();
        assert!(p.admits(ip("127.0.0.1")));
        assert!(p.admits(ip("127.9.8.7")));
        assert!(p.admits(ip("::1")));
        assert!(p.admits(ip("::ffff:127.0.0.1")));
        assert!(!p.admits(ip("10.0.0.1")));
        assert!(!p.admits(ip("::2")));
        assert!(!p.admits(ip("128.0.0.1")));
        assert!(p.connect_ports.allows(443));
        assert!(!p.connect_ports.allows(80));
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        let mut p = Policy::default();
        assert!(p.authorizes(None), "no credentials configured: open");
        p.add_basic_credentials("Aladdin", "open sesame");
        assert!(p.authorizes(Some(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(p.authorizes(Some(b"basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(!p.authorizes(Some(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==")));
        assert!(!p.authorizes(Some(b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(!p.authorizes(Some(b"QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(!p.authorizes(None));
    }

    #[test]
    fn authentication_names_the_matching_user() {
        let mut p = Policy::default();
        assert_eq!(p.authenticate(None), Authentication::Open);
        p.add_basic_credentials("Aladdin", "open sesame");
        p.add_basic_credentials("bob", "pa:ss");
        p.add_basic_credentials("carol", "x");
        let user = |s: &str| Authentication::User(Arc::from(s));
        assert_eq!(
            p.authenticate(Some(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")),
            user("Aladdin")
        );
        assert_eq!(p.authenticate(Some(b"Basic Ym9iOnBhOnNz")), user("bob"));
        assert_eq!(p.authenticate(Some(b"Basic Y2Fyb2w6eA==")), user("carol"));
        assert_eq!(
            p.authenticate(Some(b"Basic Y2Fyb2w6eQ==")),
            Authentication::Denied,
            "carol:y"
        );
        assert_eq!(p.authenticate(None), Authentication::Denied);
        let debug = alloc::format!("{:?}", p.basic_credentials);
        assert!(debug.contains("bob") && !debug.contains("Ym9i"), "{debug}");
    }

    #[test]
    fn port_rules() {
        assert_eq!("any".parse::<PortRule>(), Ok(PortRule::Any));
        assert_eq!(
            "443, 8443".parse::<PortRule>(),
            Ok(PortRule::List(alloc::vec![443, 8443]))
        );
        assert!("0".parse::<PortRule>().is_err());
        assert!("65536".parse::<PortRule>().is_err());
        assert!("".parse::<PortRule>().is_err());
    }
}
