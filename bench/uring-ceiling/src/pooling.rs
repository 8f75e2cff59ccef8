//! The least HTTP work that lets a relay keep its upstream connections when clients do not.
//!
//! bench/run's churn load sends every request with `Connection: close` on a new connection.
//! Proxies answer it and close the client connection but keep their nginx connection for the
//! next client (a pool); a relay that dialed nginx once per client would pay a second TCP
//! handshake and teardown per request that no real proxy pays, and would be no ceiling. So
//! the relays pool too, with three in-place edits of at most a few bytes, no copy:
//! - a client chunk containing `\r\nConnection: close\r\n` gets that header renamed
//!   (`Xonnection`), so nginx keeps the upstream connection open, and the pair is marked to
//!   end after one response;
//! - the first response chunk on such a pair gives the response's length (head up to
//!   `\r\n\r\n` plus `Content-Length`), and its `Connection: keep-alive` becomes
//!   `Connection:      close` (leading whitespace is optional whitespace to every parser), so
//!   the client knows the connection ends there;
//! - once that many bytes went to the client, the client connection is closed and the upstream
//!   connection returns to the pool.
//!
//! Keep-alive clients (bench/run's http1k) never match the first rule: their bytes are relayed
//! untouched, with one substring search per client chunk. Matching is byte-exact on the
//! spellings wrk and nginx use; anything else is relayed as it is, and the upstream connection
//! then ends with the client's (no pooling, never wrong bytes).

/// Renames a `Connection: close` request header in place; true when there was one.
pub fn strip_close(chunk: &mut [u8]) -> bool {
    match find(chunk, b"\r\nConnection: close\r\n") {
        Some(at) => {
            chunk[at + 2] = b'X';
            true
        }
        None => false,
    }
}

/// For the first chunk of a response to a `Connection: close` request: the response's total
/// length, with its `Connection: keep-alive` turned into `close` in place. None when the head
/// is not all in this chunk or lacks `Content-Length` or `Connection: keep-alive`.
pub fn mark_close(chunk: &mut [u8]) -> Option<u64> {
    let head = find(chunk, b"\r\n\r\n")? + 4;
    let at = find(&chunk[..head], b"\r\nContent-Length: ")? + 18;
    let digits = chunk[at..head]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let length: u64 = std::str::from_utf8(&chunk[at..at + digits])
        .ok()?
        .parse()
        .ok()?;
    let keep = find(&chunk[..head], b"\r\nConnection: keep-alive\r\n")? + 14;
    chunk[keep..keep + 10].copy_from_slice(b"     close");
    Some(head as u64 + length)
}

/// glibc's `memmem` (two-way, vectorised): the search runs on every keep-alive request chunk,
/// so it must cost next to nothing.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // SAFETY: both slices are live for the call, with their lengths.
    let p = unsafe {
        libc::memmem(
            haystack.as_ptr().cast(),
            haystack.len(),
            needle.as_ptr().cast(),
            needle.len(),
        )
    };
    (!p.is_null()).then(|| p as usize - haystack.as_ptr() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_close_is_renamed() {
        let mut req = b"GET http://h/1k HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".to_vec();
        assert!(strip_close(&mut req));
        assert_eq!(
            &req[..],
            &b"GET http://h/1k HTTP/1.1\r\nHost: h\r\nXonnection: close\r\n\r\n"[..]
        );
        let mut keep = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        assert!(!strip_close(&mut keep));
    }

    #[test]
    fn response_is_measured_and_marked() {
        let mut resp =
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc".to_vec();
        assert_eq!(mark_close(&mut resp), Some(resp.len() as u64));
        assert_eq!(
            &resp[..],
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection:      close\r\n\r\nabc"[..]
        );
        let mut partial = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n".to_vec();
        assert_eq!(mark_close(&mut partial), None);
    }
}
