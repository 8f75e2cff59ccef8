//! Properties: the same exchange fed in any pieces produces the same outputs.

mod support;

use bytes::Bytes;
use support::{normalise, Script};

/// Feeds `client` then `upstream` (then an upstream EOF) in the given pieces, answering every
/// dial at once, and returns the normalised trace.
fn run(
    client: &[u8],
    client_cuts: &[usize],
    upstream: &[u8],
    upstream_cuts: &[usize],
) -> Vec<String> {
    let mut s = Script::new();
    let answer_dials = |s: &mut Script| {
        while s
            .events
            .iter()
            .any(|e| matches!(e, support::Event::Dial(..)))
            && !s.is_closed()
        {
            s.dial_ok(false);
        }
    };
    for piece in pieces(client, client_cuts) {
        if s.is_closed() {
            break;
        }
        if s.conn.is_tunnel() {
            // The runtime relays tunnel bytes itself; record them as what reaches upstream.
            s.conn.handle_relayed(
                s.now,
                ringway_core::tunnel::Direction::ClientToUpstream,
                piece.len() as u64,
            );
            s.trace
                .push(ringway_core::Output::ToUpstream(Bytes::copy_from_slice(
                    piece,
                )));
            continue;
        }
        s.conn
            .handle_client_data(s.now, Bytes::copy_from_slice(piece));
        s.drain();
        answer_dials(&mut s);
    }
    for piece in pieces(upstream, upstream_cuts) {
        if s.is_closed() {
            break;
        }
        s.conn
            .handle_upstream_data(s.now, Bytes::copy_from_slice(piece));
        s.drain();
        answer_dials(&mut s);
    }
    if !s.is_closed() {
        s.upstream_eof();
    }
    normalise(&s.trace)
}

fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts {
        let c = c.clamp(start, data.len());
        out.push(&data[start..c]);
        start = c;
    }
    out.push(&data[start..]);
    out.into_iter().filter(|p| !p.is_empty()).collect()
}

/// A tiny deterministic PRNG, so failures reproduce.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const EXCHANGES: &[(&[u8], &[u8])] = &[
    (
        b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nServer: x\r\n\r\nhello world",
    ),
    (
        b"POST http://h:8080/upload HTTP/1.1\r\nHost: h:8080\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        b"GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\nGET http://h/b HTTP/1.1\r\nHost: h\r\n\r\n",
        // One upstream stream: only the first answer (the second request gets a fresh dial
        // whose upstream then closes), since an upstream cannot answer a request not yet sent.
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
    ),
    (
        b"GET http://h/ HTTP/1.0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n",
    ),
    (b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\nclose delimited body"),
    (b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n\x16\x03\x01client hello", b""),
    (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", b""),
    (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: y\nZ: 1\r\n\r\n", b""),
    (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", b""),
    (b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
    // Issue 15: OPTIONS * upstream with Max-Forwards decremented; answered by the proxy at
    // Max-Forwards 0 (then the next request goes on); TRACE reflected; a bad Host; a chunk
    // size with trailing whitespace; HTTP/1.2 both ways.
    (
        b"OPTIONS http://h:8080 HTTP/1.1\r\nHost: h:8080\r\nMax-Forwards: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        b"OPTIONS http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\nTRACE http://h/ HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nCookie: c=1\r\nX: y\r\n\r\nGET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
    ),
    (b"GET http://h/ HTTP/1.1\r\nHost: user@h\r\n\r\n", b""),
    (b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", b""),
    (
        b"GET http://h/ HTTP/1.2\r\nHost: h\r\n\r\n",
        b"HTTP/1.2 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    ),
];

#[test]
fn every_single_split_point_gives_the_same_outputs() {
    for (client, upstream) in EXCHANGES {
        let whole = run(client, &[], upstream, &[]);
        for k in 1..client.len() {
            assert_eq!(
                run(client, &[k], upstream, &[]),
                whole,
                "client split at {k}"
            );
        }
        for k in 1..upstream.len() {
            assert_eq!(
                run(client, &[], upstream, &[k]),
                whole,
                "upstream split at {k}"
            );
        }
    }
}

#[test]
fn byte_at_a_time_gives_the_same_outputs() {
    for (client, upstream) in EXCHANGES {
        let whole = run(client, &[], upstream, &[]);
        let every = |n: usize| (1..n).collect::<Vec<_>>();
        assert_eq!(
            run(
                client,
                &every(client.len()),
                upstream,
                &every(upstream.len())
            ),
            whole
        );
    }
}

#[test]
fn random_multi_splits_give_the_same_outputs() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for (client, upstream) in EXCHANGES {
        let whole = run(client, &[], upstream, &[]);
        for _ in 0..200 {
            let mut cuts = |len: usize| {
                let n = (rng.next() % 6) as usize;
                let mut c: Vec<usize> = (0..n).map(|_| (rng.next() as usize) % (len + 1)).collect();
                c.sort_unstable();
                c
            };
            let (cc, uc) = (cuts(client.len()), cuts(upstream.len()));
            assert_eq!(
                run(client, &cc, upstream, &uc),
                whole,
                "cuts {cc:?} / {uc:?}"
            );
        }
    }
}
