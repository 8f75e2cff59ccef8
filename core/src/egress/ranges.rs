//! Sets of CIDR blocks: `--allow-range` / `--deny-range`, and the address patterns of the
//! host-pattern grammar.
//!
//! Blocks are keyed by (family, prefix length, network bits) in a B-tree, with a bitmask of
//! the prefix lengths present per family, so a lookup tries each present length once, from
//! the longest: O(distinct lengths × log n), however many blocks an IP blocklist holds.
//! Between an allow and a deny that both cover an address the longer prefix wins, and deny
//! wins a tie, so `--allow-range 127.0.0.0/8 --deny-range 127.0.0.2/32` opens loopback except
//! one address. Nothing here can fail.

use alloc::collections::BTreeMap;
use core::net::{IpAddr, Ipv4Addr};

use super::addr::canonical;
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

/// The operator's allow and deny ranges: per block, bit 0 allow, bit 1 deny.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ranges {
    blocks: Blocks<u8>,
}

const ALLOW: u8 = 1;
const DENY: u8 = 2;

impl Ranges {
    pub(crate) fn add(&mut self, cidr: Cidr, allow: bool) {
        *self.blocks.entry(cidr) |= if allow { ALLOW } else { DENY };
    }

    /// The longest covering prefix decides; deny wins a tie.
    pub(crate) fn judge(&self, ip: IpAddr) -> RangeVerdict {
        match self.blocks.longest(ip) {
            Some(&kinds) if kinds & DENY != 0 => RangeVerdict::Deny,
            Some(_) => RangeVerdict::Allow,
            None => RangeVerdict::None,
        }
    }
}

/// `(IPv6?, prefix length, network bits)`: IPv4 bits in the low 32 bits.
type Key = (bool, u8, u128);

/// CIDR blocks (canonicalised, see [`canonical_cidr`]) with a value each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Blocks<V> {
    map: BTreeMap<Key, V>,
    /// Per family (0: IPv4, 1: IPv6), bit `p` set when some block has prefix length `p`.
    lengths: [[u64; 3]; 2],
}

impl<V: Default> Blocks<V> {
    /// The value of block `c`, inserted as `V::default()` if new.
    pub(crate) fn entry(&mut self, c: Cidr) -> &mut V {
        let c = canonical_cidr(c);
        let (v6, bits, width) = split(c.network());
        let p = c.prefix();
        self.lengths[usize::from(v6)][usize::from(p / 64)] |= 1 << (p % 64);
        self.map.entry((v6, p, bits & mask(p, width))).or_default()
    }
}

impl<V> Blocks<V> {
    /// The value of the longest block that contains `ip`, if any.
    pub(crate) fn longest(&self, ip: IpAddr) -> Option<&V> {
        let (v6, bits, width) = split(canonical(ip));
        let lengths = &self.lengths[usize::from(v6)];
        for word in (0..3).rev() {
            let mut set = lengths[word];
            while set != 0 {
                let b = 63 - set.leading_zeros();
                set &= !(1 << b);
                let p = (word * 64) as u8 + b as u8;
                if let Some(v) = self.map.get(&(v6, p, bits & mask(p, width))) {
                    return Some(v);
                }
            }
        }
        None
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

fn split(ip: IpAddr) -> (bool, u128, u32) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (true, u128::from(v6), 128),
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn mask(prefix: u8, width: u32) -> u128 {
    let all = u128::MAX >> (128 - width);
    all & !(all.checked_shr(u32::from(prefix)).unwrap_or(0))
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
