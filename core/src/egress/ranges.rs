//! `--allow-range` / `--deny-range`: operator CIDR rules over destination addresses.
//!
//! Between an allow and a deny that both cover an address the longer prefix wins, and deny
//! wins a tie, so `--allow-range 127.0.0.0/8 --deny-range 127.0.0.2/32` opens loopback except
//! one address. Rules are few (flags, a config file), so a lookup scans them all; there is
//! nothing that can fail here.

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use crate::policy::Cidr;

/// What the operator's ranges say about one address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum RangeVerdict {
    /// An `--allow-range` covers it, longer than every covering `--deny-range`.
    Allow,
    /// A `--deny-range` covers it, at least as long as every covering `--allow-range`.
    Deny,
    /// No rule covers it.
    None,
}

/// The operator's allow and deny ranges, canonicalised (see [`canonical_cidr`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ranges {
    rules: Vec<(Cidr, bool)>,
}

impl Ranges {
    pub(crate) fn add(&mut self, cidr: Cidr, allow: bool) {
        let rule = (canonical_cidr(cidr), allow);
        if !self.rules.contains(&rule) {
            self.rules.push(rule);
        }
    }

    /// The longest covering prefix decides; deny wins a tie. `ip` must be canonical.
    pub(crate) fn judge(&self, ip: IpAddr) -> RangeVerdict {
        let mut best: Option<(u8, bool)> = None;
        for &(cidr, allow) in &self.rules {
            if !cidr.contains(ip) {
                continue;
            }
            let p = cidr.prefix();
            best = match best {
                Some((bp, ba)) if bp > p || (bp == p && !ba) => Some((bp, ba)),
                _ => Some((p, allow)),
            };
        }
        match best {
            Some((_, true)) => RangeVerdict::Allow,
            Some((_, false)) => RangeVerdict::Deny,
            None => RangeVerdict::None,
        }
    }
}

/// An IPv6 block inside `::ffff:0:0/96` (IPv4-mapped) becomes the IPv4 block it maps, since
/// addresses are compared after mapping; every other block is unchanged. So
/// `--deny-range ::ffff:10.0.0.0/104` denies 10/8, while `--allow-range ::/0` (all of IPv6)
/// does not open IPv4.
pub(crate) fn canonical_cidr(c: Cidr) -> Cidr {
    match c.network() {
        IpAddr::V6(v6) if c.prefix() >= 96 => {
            let bits = u128::from(v6);
            if bits >> 32 == 0xffff {
                let v4 = Ipv4Addr::from(bits as u32);
                return Cidr::new(IpAddr::V4(v4), c.prefix() - 96).expect("prefix <= 32");
            }
            c
        }
        _ => c,
    }
}
