//! Message body framing: how long a body is, and where it ends.
//!
//! The core never holds a body. [`BodyDecoder`] looks at body bytes as they pass and says how
//! many belong to the current message and which of them are payload (as opposed to chunked
//! framing). Content-Length bodies are counted, never scanned; in chunked bodies only the size
//! lines and trailers are read byte by byte, the chunk data is skipped by length. Malformed
//! chunk framing is an error: a proxy that guesses is a proxy that can be smuggled through.

use core::ops::Range;

/// How a message's body is delimited (RFC 9112 §6).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, ending with the last chunk and trailers.
    Chunked,
    /// Everything until the sender closes (responses only).
    CloseDelimited,
}

/// Malformed chunked framing.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line that is not hex digits, overflows, or has a bad extension.
    BadSize,
    /// The CRLF after chunk data or in a trailer is missing or bare.
    BadLineEnding,
    /// A chunk-size line, extension or trailer section longer than the limits.
    TooLong,
}

/// The outcome of one [`BodyDecoder::decode`] step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Input bytes this step accounted for (framing and payload).
    pub consumed: usize,
    /// The payload among them, as a range of the input; empty if the step read only framing.
    pub payload: Range<usize>,
    /// Whether the body ended with this step; nothing after `consumed` belongs to it.
    pub done: bool,
}

/// Longest chunk-size line (size plus extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Chunked {
    /// Reading hex digits of a chunk size; `digits` counted so far.
    Size { size: u64, digits: u32, line: usize },
    /// Whitespace after the size: allowed only before a `;` extension (BWS, RFC 9112
    /// §7.1.1). `5 \r\n` is refused: a next hop that reads it differently can be smuggled
    /// through.
    SizeBws { size: u64, line: usize },
    /// Inside the extensions (after `;`) until CR.
    Extension { size: u64, line: usize },
    /// Saw CR ending the size line; LF must follow.
    SizeLf { size: u64 },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// Data done; CR must follow.
    DataCr,
    /// Data done; LF must follow.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart { total: usize },
    /// Inside a trailer field line.
    TrailerLine { total: usize },
    /// CR of a trailer line; LF must follow.
    TrailerLf { total: usize },
    /// CR of the final empty line; LF must follow.
    FinalLf,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Length {
        remaining: u64,
    },
    Chunked(Chunked),
    Close,
    Done,
    /// Malformed chunked framing was found; every later call reports it.
    Failed(ChunkError),
}

/// Tracks where a body ends as its bytes pass by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    /// A decoder for a body of the given kind.
    pub fn new(kind: BodyKind) -> BodyDecoder {
        let state = match kind {
            BodyKind::None | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length { remaining: n },
            BodyKind::Chunked => State::Chunked(Chunked::Size {
                size: 0,
                digits: 0,
                line: 0,
            }),
            BodyKind::CloseDelimited => State::Close,
        };
        BodyDecoder { state }
    }

    /// Whether the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the body ends only when the peer closes.
    pub fn is_close_delimited(&self) -> bool {
        self.state == State::Close
    }

    /// Accounts for the start of `input`. Each step yields at most one payload range; call
    /// again with the rest of the input (`&input[step.consumed..]`) until it is used up or
    /// `done`. A step that consumes nothing only happens on empty input or after `done`.
    ///
    /// Malformed chunked framing is an error, and stays one for every later call. The bytes
    /// before the offending one are first reported as a (framing-only) step, so the bytes
    /// counted as consumed up to an error are the same however the body was split.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        match &mut self.state {
            State::Done => Ok(Step {
                consumed: 0,
                payload: 0..0,
                done: true,
            }),
            State::Close => Ok(Step {
                consumed: input.len(),
                payload: 0..input.len(),
                done: false,
            }),
            State::Length { remaining } => {
                let n = clamp(*remaining, input.len());
                *remaining -= n as u64;
                let done = *remaining == 0;
                if done {
                    self.state = State::Done;
                }
                Ok(Step {
                    consumed: n,
                    payload: 0..n,
                    done,
                })
            }
            State::Chunked(_) => match self.decode_chunked(input) {
                Ok(step) => Ok(step),
                Err((error, valid)) => {
                    self.state = State::Failed(error);
                    if valid == 0 {
                        return Err(error);
                    }
                    // The bytes before the offending one first, the error with the next call:
                    // how much of a bad body is consumed does not depend on how it was split.
                    Ok(Step {
                        consumed: valid,
                        payload: valid..valid,
                        done: false,
                    })
                }
            },
            State::Failed(error) => Err(*error),
        }
    }

    /// Decodes chunked framing; an error comes with how many bytes before the offending one
    /// were valid.
    fn decode_chunked(&mut self, input: &[u8]) -> Result<Step, (ChunkError, usize)> {
        let State::Chunked(mut st) = self.state else {
            unreachable!("only called in chunked state")
        };
        let mut i = 0;
        let result = loop {
            if let Chunked::Data { remaining } = st {
                let n = clamp(remaining, input.len() - i);
                let start = i;
                i += n;
                st = if remaining == n as u64 {
                    Chunked::DataCr
                } else {
                    Chunked::Data {
                        remaining: remaining - n as u64,
                    }
                };
                if n > 0 || i == input.len() {
                    break Ok(Step {
                        consumed: i,
                        payload: start..i,
                        done: false,
                    });
                }
                continue;
            }
            let Some(&b) = input.get(i) else {
                break Ok(Step {
                    consumed: i,
                    payload: i..i,
                    done: false,
                });
            };
            i += 1;
            st = match st {
                Chunked::Size { size, digits, line } => {
                    if line >= MAX_CHUNK_LINE {
                        return Err((ChunkError::TooLong, i - 1));
                    }
                    match hex_value(b) {
                        Some(v) => {
                            if size > u64::MAX >> 4 {
                                return Err((ChunkError::BadSize, i - 1));
                            }
                            Chunked::Size {
                                size: (size << 4) | u64::from(v),
                                digits: digits + 1,
                                line: line + 1,
                            }
                        }
                        None if digits == 0 => return Err((ChunkError::BadSize, i - 1)),
                        None => match b {
                            b'\r' => Chunked::SizeLf { size },
                            b';' => Chunked::Extension {
                                size,
                                line: line + 1,
                            },
                            b' ' | b'\t' => Chunked::SizeBws {
                                size,
                                line: line + 1,
                            },
                            _ => return Err((ChunkError::BadSize, i - 1)),
                        },
                    }
                }
                Chunked::SizeBws { size, line } => {
                    if line >= MAX_CHUNK_LINE {
                        return Err((ChunkError::TooLong, i - 1));
                    }
                    match b {
                        b' ' | b'\t' => Chunked::SizeBws {
                            size,
                            line: line + 1,
                        },
                        b';' => Chunked::Extension {
                            size,
                            line: line + 1,
                        },
                        _ => return Err((ChunkError::BadSize, i - 1)),
                    }
                }
                Chunked::Extension { size, line } => {
                    if line >= MAX_CHUNK_LINE {
                        return Err((ChunkError::TooLong, i - 1));
                    }
                    match b {
                        b'\r' => Chunked::SizeLf { size },
                        b'\n' => return Err((ChunkError::BadLineEnding, i - 1)),
                        b'\t' | b' '..=b'~' | 0x80..=0xff => Chunked::Extension {
                            size,
                            line: line + 1,
                        },
                        _ => return Err((ChunkError::BadSize, i - 1)),
                    }
                }
                Chunked::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => Chunked::TrailerStart { total: 0 },
                    (b'\n', size) => Chunked::Data { remaining: size },
                    _ => return Err((ChunkError::BadLineEnding, i - 1)),
                },
                Chunked::Data { .. } => unreachable!("handled above"),
                Chunked::DataCr if b == b'\r' => Chunked::DataLf,
                Chunked::DataLf if b == b'\n' => Chunked::Size {
                    size: 0,
                    digits: 0,
                    line: 0,
                },
                Chunked::DataCr | Chunked::DataLf => {
                    return Err((ChunkError::BadLineEnding, i - 1))
                }
                Chunked::TrailerStart { total } => match b {
                    b'\r' => Chunked::FinalLf,
                    b'\n' => return Err((ChunkError::BadLineEnding, i - 1)),
                    b' ' | b'\t' => return Err((ChunkError::BadLineEnding, i - 1)), // obs-fold
                    _ => Chunked::TrailerLine { total: total + 1 },
                },
                Chunked::TrailerLine { total } => {
                    if total >= MAX_TRAILERS {
                        return Err((ChunkError::TooLong, i - 1));
                    }
                    match b {
                        b'\r' => Chunked::TrailerLf { total: total + 1 },
                        b'\n' | 0 => return Err((ChunkError::BadLineEnding, i - 1)),
                        _ => Chunked::TrailerLine { total: total + 1 },
                    }
                }
                Chunked::TrailerLf { total } if b == b'\n' => {
                    Chunked::TrailerStart { total: total + 1 }
                }
                Chunked::TrailerLf { .. } => return Err((ChunkError::BadLineEnding, i - 1)),
                Chunked::FinalLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(Step {
                        consumed: i,
                        payload: i..i,
                        done: true,
                    });
                }
                Chunked::FinalLf => return Err((ChunkError::BadLineEnding, i - 1)),
            };
        };
        self.state = State::Chunked(st);
        result
    }
}

fn clamp(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends the chunked encoding of `payload` as a single chunk (nothing for empty payload).
pub fn encode_chunk(payload: &[u8], out: &mut alloc::vec::Vec<u8>) {
    if payload.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut n = payload.len();
    let mut i = digits.len();
    while n > 0 || i == digits.len() {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk with no trailers, ending a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// What decoding a complete input did: the payload, the bytes consumed, whether it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The payload bytes, concatenated.
    pub payload: alloc::vec::Vec<u8>,
    /// How many input bytes belonged to the body.
    pub consumed: usize,
    /// Whether the body ended.
    pub done: bool,
}

/// Decodes all of `input` with a fresh decoder, feeding it in pieces of at most `piece` bytes.
/// This is the body of the `chunked` fuzz target and of the split-invariance tests.
pub fn decode_all(kind: BodyKind, input: &[u8], piece: usize) -> Result<Decoded, ChunkError> {
    let mut decoder = BodyDecoder::new(kind);
    let mut out = Decoded::default();
    let piece = piece.max(1);
    let mut fed = 0;
    while fed < input.len() && !out.done {
        let end = (fed + piece).min(input.len());
        let mut window = &input[fed..end];
        loop {
            let step = decoder.decode(window)?;
            out.payload.extend_from_slice(&window[step.payload.clone()]);
            out.consumed += step.consumed;
            out.done = step.done;
            window = &window[step.consumed..];
            if out.done || window.is_empty() {
                break;
            }
            assert!(
                step.consumed > 0,
                "a step on non-empty input must make progress"
            );
        }
        fed = end;
    }
    if input.is_empty() {
        out.done = decoder.is_done();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn all_splits(kind: BodyKind, input: &[u8]) -> Result<Decoded, ChunkError> {
        let whole = decode_all(kind, input, usize::MAX);
        for piece in 1..=input.len().min(64) {
            assert_eq!(decode_all(kind, input, piece), whole, "piece size {piece}");
        }
        whole
    }

    #[test]
    fn content_length_counts_without_scanning() {
        let d = all_splits(BodyKind::Length(5), b"hello, and more").unwrap();
        assert_eq!(
            (d.payload.as_slice(), d.consumed, d.done),
            (&b"hello"[..], 5, true)
        );
        let d = all_splits(BodyKind::Length(10), b"hel").unwrap();
        assert_eq!((d.consumed, d.done), (3, false));
        assert!(BodyDecoder::new(BodyKind::Length(0)).is_done());
        assert!(BodyDecoder::new(BodyKind::None).is_done());
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        let d = all_splits(BodyKind::Chunked, body).unwrap();
        assert_eq!(d.payload, b"hello, world!!!");
        assert_eq!(d.consumed, body.len() - 4);
        assert!(d.done);
    }

    #[test]
    fn whitespace_before_an_extension_is_accepted() {
        for body in [
            &b"5 ;a=1\r\nhello\r\n0\r\n\r\n"[..],
            b"5\t \t;a\r\nhello\r\n0 ;z\r\n\r\n",
        ] {
            let d = all_splits(BodyKind::Chunked, body).unwrap();
            assert_eq!(
                (d.payload.as_slice(), d.consumed, d.done),
                (&b"hello"[..], body.len(), true)
            );
        }
    }

    #[test]
    fn trailing_whitespace_on_a_size_line_stops_at_the_line_end() {
        // The CR after the whitespace is the offending byte: the bytes before it count as
        // consumed, however the body is split.
        let bad = b"5 \r\nhello\r\n0\r\n\r\n";
        for piece in 1..=bad.len() {
            assert_eq!(consumed_until_stop(bad, piece), (2, true), "piece {piece}");
        }
    }

    #[test]
    fn chunked_incomplete_is_not_done() {
        let d = all_splits(BodyKind::Chunked, b"5\r\nhel").unwrap();
        assert_eq!((d.payload.as_slice(), d.done), (&b"hel"[..], false));
        let d = all_splits(BodyKind::Chunked, b"0\r\n\r").unwrap();
        assert!(!d.done);
    }

    /// Bytes consumed before the decoder stops (error or end), fed in pieces of `piece`.
    fn consumed_until_stop(input: &[u8], piece: usize) -> (usize, bool) {
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        let mut total = 0;
        for mut window in input.chunks(piece) {
            while !window.is_empty() {
                match d.decode(window) {
                    Ok(step) if step.done => return (total + step.consumed, false),
                    Ok(step) => {
                        total += step.consumed;
                        window = &window[step.consumed..];
                    }
                    Err(_) => return (total, true),
                }
            }
        }
        (total, false)
    }

    #[test]
    fn bytes_before_an_error_count_the_same_however_split() {
        let bad = b"5\r\nhello\r\n0\r\nX: 1\r\n\n";
        for piece in 1..=bad.len() {
            assert_eq!(
                consumed_until_stop(bad, piece),
                (bad.len() - 1, true),
                "piece {piece}"
            );
        }
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        assert_eq!(d.decode(b"5\r\nhello").map(|s| s.consumed), Ok(8));
        assert_eq!(d.decode(b"\r\nZ").map(|s| s.consumed), Ok(2));
        assert_eq!(
            d.decode(b"Z"),
            Err(ChunkError::BadSize),
            "errors are sticky"
        );
        assert_eq!(
            d.decode(b"5\r\n"),
            Err(ChunkError::BadSize),
            "errors are sticky"
        );
    }

    #[test]
    fn chunked_rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"-1\r\n",
            b"0x5\r\n",
            b"5\r\r\n",
            b"0\r\nX: y\n\r\n",
            b"0\r\n\n",
            b"0\r\n folded\r\n\r\n",
            b"5;a\x00b\r\n",
            // Whitespace after the size is BWS before `;` only (RFC 9112 §7.1.1).
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"5  \t \r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"0 \r\n\r\n",
        ] {
            assert!(
                all_splits(BodyKind::Chunked, bad).is_err(),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
        let long_ext: Vec<u8> = [&b"1;"[..], &[b'a'; 5000][..], b"\r\n"].concat();
        assert_eq!(
            decode_all(BodyKind::Chunked, &long_ext, 1 << 20),
            Err(ChunkError::TooLong)
        );
    }

    #[test]
    fn largest_size_is_accepted_and_overflow_rejected() {
        let d = decode_all(BodyKind::Chunked, b"fffffffffffffff\r\nab", 1 << 20).unwrap();
        assert_eq!(d.payload, b"ab");
        assert_eq!(
            decode_all(BodyKind::Chunked, b"1ffffffffffffffff\r\n", 64),
            Err(ChunkError::BadSize)
        );
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut wire = Vec::new();
        encode_chunk(b"hello", &mut wire);
        encode_chunk(&[7u8; 300], &mut wire);
        encode_chunk(b"", &mut wire);
        wire.extend_from_slice(LAST_CHUNK);
        assert!(wire.starts_with(b"5\r\nhello\r\n12c\r\n"));
        let d = all_splits(BodyKind::Chunked, &wire).unwrap();
        assert_eq!(d.payload.len(), 305);
        assert!(d.done);
    }

    #[test]
    fn close_delimited_takes_everything() {
        let d = all_splits(BodyKind::CloseDelimited, b"anything at all").unwrap();
        assert_eq!(
            (d.payload.as_slice(), d.done),
            (&b"anything at all"[..], false)
        );
    }
}
