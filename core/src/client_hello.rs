//! The first bytes a client sends into a CONNECT tunnel: is it a TLS ClientHello, and if so,
//! which server name (SNI), which application protocols (ALPN) and whether it is encrypted
//! (ECH)?
//!
//! An intercepting proxy must decide *before* it answers the handshake whether it can: a
//! ClientHello that is not TLS, or whose real server name is hidden by Encrypted Client Hello,
//! or that offers only protocols the proxy does not speak inside, is passed through as a plain
//! tunnel instead (see [`crate::intercept`]). This module reads just enough of the TLS record
//! and handshake layers (RFC 8446 §5.1, §4.1.2; RFC 5246 §7.4.1.2) to say so, without
//! allocating in the common case of a ClientHello in one record.
//!
//! ## Key components
//! - [`parse`]: the bytes received so far → [`ClientHello`]: `NotTls`, `NeedMore` or `Hello`.
//! - [`Hello`]: the server name, the ALPN offer and the ECH flag, owned (no borrow of the
//!   input), so the runtime may keep it while it keeps reading.
//!
//! ## Error handling
//! There is none to handle: anything that is not a well-formed ClientHello (another record
//! type, bad lengths, a duplicated extension, a server name that is no host name) is
//! [`ClientHello::NotTls`], which the caller treats as "not ours to intercept". A decision is
//! only ever made from bytes present: a prefix of a ClientHello is always `NeedMore`, and bytes
//! after the complete ClientHello never change the answer.

use alloc::vec::Vec;

/// Largest ClientHello handshake message accepted (its 4-byte header included). Real ones are
/// 200 bytes to 2 KiB (post-quantum key shares included); RFC 8446 allows up to 2^24, which
/// no client sends and no proxy should buffer for a peer.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Largest TLS plaintext record fragment (RFC 8446 §5.1: 2^14).
const MAX_RECORD: usize = 16 * 1024;

/// TLS record content type `handshake`.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type `client_hello`.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Extension `server_name` (RFC 6066 §3).
const EXT_SERVER_NAME: u16 = 0;
/// Extension `application_layer_protocol_negotiation` (RFC 7301).
const EXT_ALPN: u16 = 16;
/// Extension `encrypted_client_hello` (RFC 9849), in the outer ClientHello.
const EXT_ECH: u16 = 0xfe0d;
/// Longest host name DNS can carry, without the root dot.
const MAX_NAME: usize = 253;

/// What the bytes received so far are.
// 262 bytes (the inline server name): returned by value a few times per tunnel, cheaper than
// the allocation boxing it would cost.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientHello {
    /// Not a well-formed TLS ClientHello (another protocol, or malformed): pass it through.
    NotTls,
    /// A valid prefix of a ClientHello: read more (up to [`MAX_CLIENT_HELLO`] plus record
    /// headers) and call [`parse`] again with everything received.
    NeedMore,
    /// A complete, well-formed ClientHello.
    Hello(Hello),
}

/// What a ClientHello says about where the client wants to go and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The `server_name` extension's host name, lowercased, if the client sent one.
    pub sni: Option<ServerName>,
    /// The ALPN offer.
    pub alpn: Alpn,
    /// An `encrypted_client_hello` extension is present: the SNI above is the public
    /// (outer) name, not the real destination, and the real hello cannot be read.
    pub ech: bool,
}

/// A server name from SNI: 1 to 253 bytes of letters, digits, `-`, `_` and `.`, lowercased,
/// no trailing dot. Stored inline so a [`Hello`] borrows nothing and allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ServerName {
    bytes: [u8; MAX_NAME],
    len: u8,
}

impl ServerName {
    /// Validates and lowercases a name; `None` if it is not a host name.
    pub fn new(name: &[u8]) -> Option<Self> {
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.is_empty() || name.len() > MAX_NAME {
            return None;
        }
        let mut bytes = [0u8; MAX_NAME];
        for label in name.split(|&b| b == b'.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
        }
        for (dst, &b) in bytes.iter_mut().zip(name) {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
                return None;
            }
            *dst = b.to_ascii_lowercase();
        }
        Some(ServerName {
            bytes,
            len: name.len() as u8,
        })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`).
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl core::fmt::Debug for ServerName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The client's ALPN offer, reduced to what the proxy decides on: it speaks HTTP/1.1 inside
/// an intercepted tunnel, so only "is `http/1.1` offered" and "was anything offered" matter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Alpn {
    /// The extension was present.
    pub offered: bool,
    /// `http/1.1` is among the protocols.
    pub http11: bool,
    /// `h2` is among the protocols.
    pub h2: bool,
    /// How many protocol names the list held in all.
    pub count: u16,
}

impl Alpn {
    /// Whether an HTTP/1.1 server can answer this offer: no ALPN at all (the client then
    /// speaks whatever the port implies, HTTP/1.1 for https) or `http/1.1` among the offers.
    pub fn allows_http11(&self) -> bool {
        !self.offered || self.http11
    }
}

/// Reads the bytes a client sent so far. See the module docs; `buf` is everything received,
/// from the first byte of the tunnel.
pub fn parse(buf: &[u8]) -> ClientHello {
    match handshake_message(buf) {
        Assembled::NotTls => ClientHello::NotTls,
        Assembled::NeedMore => ClientHello::NeedMore,
        Assembled::InPlace(msg) => parse_body(msg),
        Assembled::Joined(msg) => parse_body(&msg),
    }
}

/// The ClientHello handshake message, its 4-byte header stripped, once complete.
enum Assembled<'a> {
    NotTls,
    NeedMore,
    /// All in the first record: borrowed.
    InPlace(&'a [u8]),
    /// Fragmented over several records: joined (rare; only for huge or odd clients).
    Joined(Vec<u8>),
}

/// Walks the record layer until the handshake message is complete.
fn handshake_message(buf: &[u8]) -> Assembled<'_> {
    // First pass: check every record header present and find where the message ends.
    let mut pos = 0;
    let mut have = 0usize; // handshake bytes available so far
    let mut need: Option<usize> = None; // total handshake bytes (header included), once known
    let mut first_fragment: &[u8] = &[];
    let mut records = 0usize;
    let (mut hdr, mut hdr_len) = ([0u8; 4], 0usize);
    loop {
        let header = &buf[pos.min(buf.len())..(pos + 5).min(buf.len())];
        if let Some(&t) = header.first() {
            if t != CONTENT_HANDSHAKE {
                return Assembled::NotTls;
            }
        }
        if let Some(&major) = header.get(1) {
            if major != 3 {
                return Assembled::NotTls;
            }
        }
        if let Some(&minor) = header.get(2) {
            if minor > 4 {
                return Assembled::NotTls;
            }
        }
        if header.len() < 5 {
            return Assembled::NeedMore;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Assembled::NotTls;
        }
        let start = pos + 5;
        let fragment = &buf[start..(start + len).min(buf.len())];
        if records == 0 {
            first_fragment = fragment;
        }
        records += 1;
        have += fragment.len();
        // The handshake header, as soon as its bytes are in (in theory it may span records).
        for &b in fragment {
            if hdr_len == 4 {
                break;
            }
            hdr[hdr_len] = b;
            hdr_len += 1;
        }
        if hdr_len >= 1 && hdr[0] != HANDSHAKE_CLIENT_HELLO {
            return Assembled::NotTls;
        }
        if need.is_none() && hdr_len == 4 {
            let body =
                (usize::from(hdr[1]) << 16) | (usize::from(hdr[2]) << 8) | usize::from(hdr[3]);
            if body + 4 > MAX_CLIENT_HELLO {
                return Assembled::NotTls;
            }
            need = Some(body + 4);
        }
        if let Some(total) = need {
            if have >= total {
                if records == 1 {
                    return Assembled::InPlace(&first_fragment[4..total]);
                }
                let mut joined = Vec::with_capacity(total);
                for_each_fragment(buf, records, |f| {
                    let take = (total - joined.len()).min(f.len());
                    joined.extend_from_slice(&f[..take]);
                });
                joined.drain(..4);
                return Assembled::Joined(joined);
            }
        }
        if fragment.len() < len {
            return Assembled::NeedMore;
        }
        pos = start + len;
    }
}

/// Calls `f` with the payload of each of the first `records` records (all headers were
/// checked by the caller; the last payload may be partial).
fn for_each_fragment(buf: &[u8], records: usize, mut f: impl FnMut(&[u8])) {
    let mut pos = 0;
    for _ in 0..records {
        let len = usize::from(u16::from_be_bytes([buf[pos + 3], buf[pos + 4]]));
        let start = pos + 5;
        f(&buf[start..(start + len).min(buf.len())]);
        pos = start + len;
    }
}

/// A cursor over a complete message; every read is bounds-checked.
struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.data.len() {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a 1-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a 2-byte length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn parse_body(msg: &[u8]) -> ClientHello {
    match read_body(msg) {
        Some(hello) => ClientHello::Hello(hello),
        None => ClientHello::NotTls,
    }
}

/// The ClientHello body (RFC 8446 §4.1.2); `None` for anything malformed.
fn read_body(msg: &[u8]) -> Option<Hello> {
    let mut c = Cursor { data: msg };
    let version = c.u16()?;
    if !(0x0300..=0x0304).contains(&version) {
        return None;
    }
    c.take(32)?; // random
    if c.vec8()?.len() > 32 {
        return None; // legacy_session_id<0..32>
    }
    let suites = c.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return None;
    }
    if c.vec8()?.is_empty() {
        return None; // legacy_compression_methods<1..2^8-1>
    }
    let mut hello = Hello {
        sni: None,
        alpn: Alpn::default(),
        ech: false,
    };
    if c.is_empty() {
        return Some(hello); // TLS 1.2 and earlier may omit extensions entirely
    }
    let mut exts = Cursor { data: c.vec16()? };
    if !c.is_empty() {
        return None;
    }
    // Duplicates are forbidden (RFC 8446 §4.2); the three we read are tracked exactly.
    let (mut seen_sni, mut seen_alpn) = (false, false);
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        match kind {
            EXT_SERVER_NAME => {
                if seen_sni {
                    return None;
                }
                seen_sni = true;
                hello.sni = Some(read_server_name(data)?);
            }
            EXT_ALPN => {
                if seen_alpn {
                    return None;
                }
                seen_alpn = true;
                hello.alpn = read_alpn(data)?;
            }
            EXT_ECH => {
                if hello.ech {
                    return None;
                }
                hello.ech = true;
            }
            _ => {}
        }
    }
    Some(hello)
}

/// `ServerNameList` (RFC 6066 §3): exactly one `host_name` entry is what every client sends
/// and what the RFC allows ("MUST NOT contain more than one name of the same name_type").
fn read_server_name(data: &[u8]) -> Option<ServerName> {
    let mut c = Cursor { data };
    let mut list = Cursor { data: c.vec16()? };
    if !c.is_empty() || list.is_empty() {
        return None;
    }
    let mut name = None;
    while !list.is_empty() {
        let kind = list.u8()?;
        let value = list.vec16()?;
        if kind == 0 {
            if name.is_some() {
                return None;
            }
            name = Some(ServerName::new(value)?);
        }
    }
    name
}

/// `ProtocolNameList` (RFC 7301 §3.1): non-empty, each name 1 to 255 bytes.
fn read_alpn(data: &[u8]) -> Option<Alpn> {
    let mut c = Cursor { data };
    let mut list = Cursor { data: c.vec16()? };
    if !c.is_empty() || list.is_empty() {
        return None;
    }
    let mut alpn = Alpn {
        offered: true,
        ..Alpn::default()
    };
    while !list.is_empty() {
        let name = list.vec8()?;
        if name.is_empty() {
            return None;
        }
        alpn.count = alpn.count.saturating_add(1);
        match name {
            b"http/1.1" => alpn.http11 = true,
            b"h2" => alpn.h2 = true,
            _ => {}
        }
    }
    Some(alpn)
}
