//! What the runtime adds to the core's egress policy: pattern lists read from `@FILE`
//! arguments, and the proxy's own listening sockets and interface addresses (so a request to
//! the proxy itself is refused as a loop whatever else is allowed).
//!
//! The decisions stay in `ringway_core::egress`; this only reads files and asks the kernel.
//! Failure: an unreadable file or a bad pattern is a bad flag value (one line naming the
//! flag, the file and the line; exit 2). Interface addresses that cannot be listed leave
//! only the loopback and unspecified forms of a wildcard listener recognised.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ringway_core::egress::{EgressPolicy, HostPatterns};
use ringway_core::Config;

/// Adds each of `values` (given to `flag`) to `into`: a pattern, or `@FILE` for a file of
/// patterns, one a line (`#` comments and blank lines skipped).
pub fn add_patterns(flag: &str, values: &[String], into: &mut HostPatterns) -> Result<(), String> {
    for value in values {
        match value.strip_prefix('@') {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{flag} @{path}: cannot read: {e}"))?;
                into.add_lines(&text)
                    .map_err(|(line, e)| format!("{flag} @{path}: line {line}: {e}"))?;
            }
            None => into
                .add(value)
                .map_err(|e| format!("{flag} {value}: {e}"))?,
        }
    }
    Ok(())
}

/// The proxy's own listening sockets, as bound (ports chosen by the kernel included).
#[derive(Clone, Debug, Default)]
pub struct OwnSockets {
    /// Where clients reach the proxy: a request there is a loop.
    pub proxy: Vec<SocketAddr>,
    /// Other listeners of the proxy (`--metrics-listen`): never a destination either.
    pub services: Vec<SocketAddr>,
}

/// `config` with the proxy's own listening sockets and this host's interface addresses
/// added to its egress policy (at start and after every reload).
pub fn with_own_listeners(mut config: Config, own: &OwnSockets) -> Config {
    let egress: &mut EgressPolicy = &mut config.policy.egress;
    for addr in &own.proxy {
        egress.add_own_listener(*addr, true);
    }
    for addr in &own.services {
        egress.add_own_listener(*addr, false);
    }
    for ip in interface_addresses() {
        egress.add_local_address(ip);
    }
    config
}

/// This host's interface addresses (`getifaddrs`), empty if they cannot be listed.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut next = list;
    while !next.is_null() {
        // SAFETY: `next` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*next };
        next = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: AF_INET: the sockaddr is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))));
        } else if family == libc::AF_INET6 {
            // SAFETY: AF_INET6: the sockaddr is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
        }
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_addresses_include_loopback() {
        let ips = interface_addresses();
        assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{ips:?}");
    }

    #[test]
    fn pattern_files_are_read_and_errors_name_flag_file_and_line() {
        let dir = std::env::temp_dir().join(format!("ringway-egress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.txt");
        std::fs::write(&good, "# a comment\n\nexample.com\n*.corp.test\n").unwrap();
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "ok.test\nbad host\n").unwrap();
        let mut p = HostPatterns::new();
        let values = [format!("@{}", good.display()), "single.test".to_string()];
        add_patterns("--deny-domain", &values, &mut p).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.matches_name("a.b.corp.test") && p.matches_name("single.test"));
        let err = add_patterns(
            "--deny-domain",
            &[format!("@{}", bad.display())],
            &mut HostPatterns::new(),
        )
        .unwrap_err();
        assert!(
            err.starts_with(&format!("--deny-domain @{}: line 2: ", bad.display())),
            "{err}"
        );
        let missing = add_patterns("--allow-domain", &["@/nonexistent/x".into()], &mut p);
        assert!(missing
            .unwrap_err()
            .starts_with("--allow-domain @/nonexistent/x: cannot read"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
