//! Host patterns: the grammar every flag that names hosts shares (`--allow-domain`,
//! `--deny-domain`; interception and parent-proxy exceptions later).
//!
//! - `example.com`: that host only;
//! - `*.example.com`: its subdomains at any depth (`a.b.example.com`), not the apex;
//! - `*`: every host, names and IP literals alike;
//! - a CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or a bare IP address (any spelling
//!   [`parse_host`](super::parse_host) accepts): IP-literal targets in it.
//!
//! Case-insensitive, one trailing dot ignored, punycode compared as given (no IDNA here).
//! Blocklists run to 100,000+ entries, so lookups must not scan them: names sit in two
//! open-addressing hash tables (exact names, wildcard suffixes) over one shared text arena.
//! A lookup hashes the host once from right to left; the running hash at each `.` is the
//! hash of the suffix after it, so every label boundary costs one probe: O(labels), no
//! allocation. Each table slot is 8 bytes (offset, length, 16-bit hash tag) at a load of at
//! most 1/2, so a name costs 16 to 32 bytes beyond its text.
//!
//! Errors: [`HostPatterns::add`] refuses what the grammar does not cover ([`PatternError`]
//! says what); a malformed pattern is never silently ignored or widened.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

use super::literal::{parse_host, HostKind};
use super::ranges::Blocks;
use crate::policy::Cidr;

/// Longest host name DNS can carry (RFC 1035 §2.3.4, in text form without the root dot).
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// Why a host pattern was refused: a static message for the CLI and the config loader.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub &'static str);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A set of host patterns (see the module docs for the grammar), built once and matched
/// read-only. Equality is structural: sets built from the same patterns in the same order
/// are equal.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HostPatterns {
    /// Every stored name, lowercased, without `*.` and trailing dot, back to back.
    text: String,
    exact: Table,
    wildcard: Table,
    any: bool,
    /// Address patterns (CIDR blocks, bare addresses as /32 or /128).
    blocks: Blocks<()>,
}

impl fmt::Debug for HostPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostPatterns")
            .field("names", &self.exact.len)
            .field("wildcards", &self.wildcard.len)
            .field("any", &self.any)
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

impl HostPatterns {
    /// An empty set: matches nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one pattern. Adding a pattern already present changes nothing.
    pub fn add(&mut self, pattern: &str) -> Result<(), PatternError> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(PatternError("empty host pattern"));
        }
        if pattern == "*" {
            self.any = true;
            return Ok(());
        }
        if pattern.contains('/') {
            let cidr: Cidr = pattern.parse().map_err(PatternError)?;
            self.blocks.entry(cidr);
            return Ok(());
        }
        let (wild, name) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if !wild {
            match parse_host(name) {
                HostKind::Ip(ip) => {
                    let prefix = if ip.is_ipv4() { 32 } else { 128 };
                    let cidr = Cidr::new(ip, prefix).expect("full-length prefix");
                    self.blocks.entry(cidr);
                    return Ok(());
                }
                HostKind::InvalidIp => {
                    return Err(PatternError(
                        "host pattern looks like an IP address but is not a valid one",
                    ))
                }
                HostKind::Name => {}
            }
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        validate_name(name)?;
        if wild && parse_host(name) != HostKind::Name {
            // Hosts that end in a number are IP literals or invalid, never names.
            return Err(PatternError(
                "a `*.` pattern needs a name after it, not a number",
            ));
        }
        let hash = hash_name(name.as_bytes());
        let table = if wild {
            &mut self.wildcard
        } else {
            &mut self.exact
        };
        if table.find(&self.text, hash, name.as_bytes()) {
            return Ok(());
        }
        let start = u32::try_from(self.text.len())
            .ok()
            .filter(|s| s.checked_add(MAX_NAME as u32).is_some())
            .ok_or(PatternError("too many host patterns (4 GiB of names)"))?;
        for c in name.chars() {
            self.text.push(c.to_ascii_lowercase());
        }
        table.insert(&self.text, hash, start, name.len() as u16);
        Ok(())
    }

    /// Adds one pattern a line (what `@FILE` expands to): `#` starts a comment, blank lines
    /// are skipped. Returns how many patterns were read, or the first bad line (1-based) and
    /// why; the patterns before it stay added.
    pub fn add_lines(&mut self, text: &str) -> Result<usize, (usize, PatternError)> {
        // The names need at most the input's bytes: reserve once instead of doubling, so a
        // 100k-line file does not leave up to half the arena unused.
        self.text.reserve(text.len());
        let mut added = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            self.add(line).map_err(|e| (i + 1, e))?;
            added += 1;
        }
        Ok(added)
    }

    /// How many distinct patterns the set holds.
    pub fn len(&self) -> usize {
        self.exact.len + self.wildcard.len + usize::from(self.any) + self.blocks.len()
    }

    /// Whether the set holds no pattern at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any pattern matches host names (`*`, a name or a `*.` suffix), which is what
    /// puts an allow list into allow-list mode.
    pub fn has_names(&self) -> bool {
        self.any || self.exact.len + self.wildcard.len > 0
    }

    /// Whether the host name `host` matches: O(labels), no allocation. Case-insensitive; one
    /// trailing dot ignored. An IP literal is not a name: ask [`matches_ip`](Self::matches_ip).
    pub fn matches_name(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
        // No length limit here: a deny rule must hold for any host the core accepts.
        if host.is_empty() {
            return false;
        }
        if self.any {
            return true;
        }
        let mut hash = HASH_SEED;
        let mut labels = 1u32; // labels right of position i
        for i in (0..host.len()).rev() {
            if host[i] == b'.' {
                if i > 0
                    && i + 1 < host.len()
                    && self.wildcard.has_labels(labels)
                    && self.wildcard.find(&self.text, finish(hash), &host[i + 1..])
                {
                    return true;
                }
                labels += 1;
            }
            hash = step(hash, host[i]);
        }
        self.exact.has_labels(labels) && self.exact.find(&self.text, finish(hash), host)
    }

    /// Whether the IP-literal target `ip` matches a CIDR or bare-address pattern (or `*`).
    /// IPv4-mapped addresses are judged as the IPv4 address inside. One B-tree lookup per
    /// distinct prefix length in the set (IP blocklists can be large too).
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        self.any || self.blocks.longest(ip).is_some()
    }
}

/// Letters, digits, `-` and `_` in labels of 1 to 63 bytes, at most 253 bytes in all: what a
/// request target's host may hold (`target.rs`), so a pattern outside it could never match.
fn validate_name(name: &str) -> Result<(), PatternError> {
    if name.is_empty() {
        return Err(PatternError("empty host name in pattern"));
    }
    if name.len() > MAX_NAME {
        return Err(PatternError(
            "host name in pattern is longer than 253 bytes",
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(PatternError("empty label in host pattern"));
        }
        if label.len() > MAX_LABEL {
            return Err(PatternError(
                "label in host pattern is longer than 63 bytes",
            ));
        }
        if label.contains('*') {
            return Err(PatternError(
                "`*` may only stand alone or start a pattern as `*.`",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(PatternError(
                "host pattern may hold only letters, digits, `-`, `_` and `.`",
            ));
        }
    }
    Ok(())
}

const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// One FNV-1a step over the lowercased byte. Names are hashed from their last byte to their
/// first, so the state at a `.` is the hash of the suffix after it.
fn step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Mixes all bits into the low ones (FNV's low bits are weak) for slot and tag.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

fn hash_name(name: &[u8]) -> u64 {
    finish(name.iter().rev().fold(HASH_SEED, |h, &b| step(h, b)))
}

/// An open-addressing (linear probing) set of names stored in a shared arena. A slot is
/// `start (32 bits) | len (16) << 32 | tag (16) << 48`; 0 is empty (names are never empty).
#[derive(Clone, Default, PartialEq, Eq)]
struct Table {
    slots: Vec<u64>,
    len: usize,
    /// Bit `k` set: some entry has `k` labels (names have at most 127). A host suffix with a
    /// label count no entry has needs no probe: most boundaries of a typical host are
    /// skipped this way (`com` alone, or five-label suffixes, are rarely listed).
    label_counts: u128,
}

impl Table {
    fn has_labels(&self, labels: u32) -> bool {
        labels < 128 && self.label_counts & (1 << labels) != 0
    }

    fn slot(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    fn find(&self, text: &str, hash: u64, name: &[u8]) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let tag = hash >> 48;
        let mut i = self.slot(hash);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return false;
            }
            if s >> 48 == tag && (s >> 32) as u16 as usize == name.len() {
                let start = s as u32 as usize;
                if text.as_bytes()[start..start + name.len()].eq_ignore_ascii_case(name) {
                    return true;
                }
            }
            i = (i + 1) & (self.slots.len() - 1);
        }
    }

    /// Inserts a name known to be absent, whose text is already in the arena.
    fn insert(&mut self, text: &str, hash: u64, start: u32, len: u16) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow(text);
        }
        self.place(
            hash,
            u64::from(start) | u64::from(len) << 32 | (hash >> 48) << 48,
        );
        self.len += 1;
        let name = &text.as_bytes()[start as usize..start as usize + usize::from(len)];
        let labels = 1 + name.iter().filter(|&&b| b == b'.').count();
        self.label_counts |= 1 << labels;
    }

    fn place(&mut self, hash: u64, entry: u64) {
        let mut i = self.slot(hash);
        while self.slots[i] != 0 {
            i = (i + 1) & (self.slots.len() - 1);
        }
        self.slots[i] = entry;
    }

    fn grow(&mut self, text: &str) {
        let size = (self.slots.len() * 2).max(16);
        let old = core::mem::replace(&mut self.slots, alloc::vec![0; size]);
        for s in old.into_iter().filter(|&s| s != 0) {
            let start = s as u32 as usize;
            let len = (s >> 32) as u16 as usize;
            self.place(hash_name(&text.as_bytes()[start..start + len]), s);
        }
    }
}
