//! Message body framing without decoding: [`BodyReader`] is told how a body is framed and is
//! fed the bytes that follow the head; it says how many of them belong to the body and when
//! the body (last chunk and trailers included) is over, so the proxy forwards exactly those
//! bytes verbatim (chunked stays chunked) and the next message on a keep-alive connection
//! starts at the right byte.
//!
//! Data flow: socket bytes -> [`BodyReader::feed`] -> `consumed` bytes forwarded as they are.
//! A proxy that must un-chunk (towards an HTTP/2 client) uses [`BodyReader::feed_decoded`],
//! which also reports the ranges of payload inside the consumed bytes. The chunked parser is a
//! byte-level state machine, so input may be split at any byte. Chunk-size lines, extensions
//! and trailers are validated strictly (CRLF only, bounded sizes) because a framing
//! disagreement between this proxy and the upstream is how requests get smuggled.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::head::{is_field_value_byte, is_token};

/// Most hex digits accepted in a chunk size (16 digits cover every u64).
pub const MAX_CHUNK_SIZE_DIGITS: u8 = 16;
/// Default limit on the bytes after the chunk size on one chunk-size line (whitespace and
/// extensions).
pub const DEFAULT_MAX_CHUNK_EXTENSION: usize = 1024;
/// Default limit on the trailer section (all trailer lines and the final CRLF).
pub const DEFAULT_MAX_TRAILER_BYTES: usize = 16 * 1024;

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// Chunked transfer coding, ending with the last chunk and the trailer section.
    Chunked,
    /// Everything until the peer closes the connection (responses only).
    CloseDelimited,
}

/// Limits for peer-controlled sizes inside a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// Most bytes after the chunk size on one chunk-size line.
    pub max_chunk_extension: usize,
    /// Most bytes in the trailer section.
    pub max_trailer_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_chunk_extension: DEFAULT_MAX_CHUNK_EXTENSION,
            max_trailer_bytes: DEFAULT_MAX_TRAILER_BYTES,
        }
    }
}

/// Errors in a message body's framing. All are fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A chunk-size line without hex digits, or with a byte that cannot follow them.
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// A chunk size with more hex digits than [`MAX_CHUNK_SIZE_DIGITS`].
    #[error("chunk size has more than {limit} hex digits")]
    ChunkSizeTooLong {
        /// The limit in force.
        limit: u8,
    },
    /// More bytes after the chunk size than [`BodyLimits::max_chunk_extension`].
    #[error("chunk extension longer than {limit} bytes")]
    ChunkExtensionTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A control character in a chunk extension.
    #[error("invalid byte in chunk extension")]
    InvalidChunkExtension,
    /// A line in the chunked framing that does not end with CRLF.
    #[error("chunked framing line does not end with CRLF")]
    InvalidLineEnding,
    /// Chunk data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingChunkDataCrlf,
    /// A trailer section larger than [`BodyLimits::max_trailer_bytes`].
    #[error("trailer section larger than {limit} bytes")]
    TrailersTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// A malformed trailer field (bad name or value, no colon, line folding).
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The connection ended before the body did.
    #[error("connection closed before the end of the body")]
    Truncated,
    /// The reader was fed again after it had reported an error.
    #[error("body reader used after an error")]
    Failed,
}

/// Result of one [`BodyReader::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyProgress {
    /// How many bytes at the start of the input belong to the body (forward them verbatim).
    pub consumed: usize,
    /// Whether the body is over; bytes after `consumed` belong to the next message.
    pub complete: bool,
}

/// Sans-IO tracker of one message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyReader {
    state: State,
    limits: BodyLimits,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Content-Length bytes still expected.
    Length {
        remaining: u64,
    },
    /// Reading until the connection closes.
    UntilClose,
    Chunked(Chunk),
    Done,
    Failed,
}

/// Position inside chunked framing.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex digits of a chunk size.
    Size { value: u64, digits: u8 },
    /// Whitespace after the size; only `;` may follow. `used` counts bytes after the digits.
    SizeSpace { value: u64, used: usize },
    /// Inside a chunk extension, until CR.
    Extension { value: u64, used: usize },
    /// CR of the chunk-size line seen, LF expected.
    SizeLf { value: u64 },
    /// Payload bytes still expected in this chunk.
    Data { remaining: u64 },
    /// CR after chunk data expected.
    DataCr,
    /// LF after chunk data expected.
    DataLf,
    /// Start of a trailer line or of the final CRLF; `used` counts trailer bytes.
    TrailerStart { used: usize },
    /// Inside a trailer name.
    TrailerName { used: usize },
    /// Inside a trailer value, until CR.
    TrailerValue { used: usize },
    /// CR of a trailer line seen, LF expected.
    TrailerLf { used: usize },
    /// CR of the final empty line seen, LF expected.
    EndLf,
}

impl BodyReader {
    /// A reader for a body framed as `framing`, with the default limits.
    pub fn new(framing: BodyFraming) -> Self {
        Self::with_limits(framing, BodyLimits::default())
    }

    /// A reader for a body framed as `framing`.
    pub fn with_limits(framing: BodyFraming, limits: BodyLimits) -> Self {
        let state = match framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => State::Done,
            BodyFraming::ContentLength(remaining) => State::Length { remaining },
            BodyFraming::Chunked => State::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
            }),
            BodyFraming::CloseDelimited => State::UntilClose,
        };
        Self { state, limits }
    }

    /// Whether the whole body has been seen.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes body bytes from the start of `input`.
    pub fn feed(&mut self, input: &[u8]) -> Result<BodyProgress, BodyError> {
        self.feed_decoded(input, |_| {})
    }

    /// Like [`Self::feed`], and calls `on_data` with each range of `input` that is payload
    /// (chunk data without the framing; for other framings, everything consumed).
    pub fn feed_decoded(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(Range<usize>),
    ) -> Result<BodyProgress, BodyError> {
        let consumed = match &mut self.state {
            State::Done => 0,
            State::Failed => return Err(BodyError::Failed),
            State::UntilClose => {
                if !input.is_empty() {
                    on_data(0..input.len());
                }
                input.len()
            }
            State::Length { remaining } => {
                let take = clamp_len(*remaining, input.len());
                *remaining -= take as u64;
                if take > 0 {
                    on_data(0..take);
                }
                if *remaining == 0 {
                    self.state = State::Done;
                }
                take
            }
            State::Chunked(_) => match self.feed_chunked(input, &mut on_data) {
                Ok(consumed) => consumed,
                Err(error) => {
                    self.state = State::Failed;
                    return Err(error);
                }
            },
        };
        Ok(BodyProgress {
            consumed,
            complete: self.is_complete(),
        })
    }

    /// Tells the reader the connection has closed: fine for a close-delimited body or a body
    /// already complete, [`BodyError::Truncated`] otherwise.
    pub fn finish(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            State::Failed => Err(BodyError::Failed),
            State::Length { .. } | State::Chunked(_) => Err(BodyError::Truncated),
        }
    }

    fn feed_chunked(
        &mut self,
        input: &[u8],
        on_data: &mut impl FnMut(Range<usize>),
    ) -> Result<usize, BodyError> {
        let limits = self.limits;
        let mut pos = 0;
        while let State::Chunked(chunk) = &mut self.state {
            if let Chunk::Data { remaining } = chunk {
                let take = clamp_len(*remaining, input.len() - pos);
                if take > 0 {
                    on_data(pos..pos + take);
                }
                pos += take;
                *remaining -= take as u64;
                if *remaining == 0 {
                    *chunk = Chunk::DataCr;
                }
                if pos == input.len() {
                    break;
                }
                continue;
            }
            let Some(&byte) = input.get(pos) else { break };
            pos += 1;
            match step(chunk, byte, &limits)? {
                Some(next) => *chunk = next,
                None => self.state = State::Done,
            }
        }
        Ok(pos)
    }
}

/// `remaining` capped at `available`, as a usize.
fn clamp_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

/// One byte of chunked framing (never called in `Data`). `None` means the body is over.
fn step(chunk: &Chunk, byte: u8, limits: &BodyLimits) -> Result<Option<Chunk>, BodyError> {
    let ext_limit = limits.max_chunk_extension;
    let trailer = |used: usize| -> Result<usize, BodyError> {
        let used = used + 1;
        if used > limits.max_trailer_bytes {
            return Err(BodyError::TrailersTooLarge {
                limit: limits.max_trailer_bytes,
            });
        }
        Ok(used)
    };
    let extension = |used: usize| -> Result<usize, BodyError> {
        let used = used + 1;
        if used > ext_limit {
            return Err(BodyError::ChunkExtensionTooLong { limit: ext_limit });
        }
        Ok(used)
    };
    Ok(Some(match *chunk {
        Chunk::Size { value, digits } => match (hex_value(byte), byte) {
            (Some(d), _) => {
                if digits >= MAX_CHUNK_SIZE_DIGITS {
                    return Err(BodyError::ChunkSizeTooLong {
                        limit: MAX_CHUNK_SIZE_DIGITS,
                    });
                }
                Chunk::Size {
                    value: (value << 4) | u64::from(d),
                    digits: digits + 1,
                }
            }
            (None, _) if digits == 0 => return Err(BodyError::InvalidChunkSize),
            (None, b'\r') => Chunk::SizeLf { value },
            (None, b';') => Chunk::Extension {
                value,
                used: extension(0)?,
            },
            (None, b' ' | b'\t') => Chunk::SizeSpace {
                value,
                used: extension(0)?,
            },
            (None, _) => return Err(BodyError::InvalidChunkSize),
        },
        Chunk::SizeSpace { value, used } => match byte {
            b' ' | b'\t' => Chunk::SizeSpace {
                value,
                used: extension(used)?,
            },
            b';' => Chunk::Extension {
                value,
                used: extension(used)?,
            },
            _ => return Err(BodyError::InvalidChunkSize),
        },
        Chunk::Extension { value, used } => match byte {
            b'\r' => Chunk::SizeLf { value },
            b if is_field_value_byte(b) => Chunk::Extension {
                value,
                used: extension(used)?,
            },
            _ => return Err(BodyError::InvalidChunkExtension),
        },
        Chunk::SizeLf { value } => match (byte, value) {
            (b'\n', 0) => Chunk::TrailerStart { used: 0 },
            (b'\n', remaining) => Chunk::Data { remaining },
            _ => return Err(BodyError::InvalidLineEnding),
        },
        Chunk::DataCr if byte == b'\r' => Chunk::DataLf,
        Chunk::DataLf if byte == b'\n' => Chunk::Size {
            value: 0,
            digits: 0,
        },
        Chunk::DataCr | Chunk::DataLf => return Err(BodyError::MissingChunkDataCrlf),
        Chunk::TrailerStart { used } => match byte {
            b'\r' => Chunk::EndLf,
            b if is_token(b) => Chunk::TrailerName {
                used: trailer(used)?,
            },
            _ => return Err(BodyError::InvalidTrailer),
        },
        Chunk::TrailerName { used } => match byte {
            b':' => Chunk::TrailerValue {
                used: trailer(used)?,
            },
            b if is_token(b) => Chunk::TrailerName {
                used: trailer(used)?,
            },
            _ => return Err(BodyError::InvalidTrailer),
        },
        Chunk::TrailerValue { used } => match byte {
            b'\r' => Chunk::TrailerLf {
                used: trailer(used)?,
            },
            b if is_field_value_byte(b) => Chunk::TrailerValue {
                used: trailer(used)?,
            },
            _ => return Err(BodyError::InvalidTrailer),
        },
        Chunk::TrailerLf { used } => match byte {
            b'\n' => Chunk::TrailerStart {
                used: trailer(used)?,
            },
            _ => return Err(BodyError::InvalidLineEnding),
        },
        Chunk::EndLf => match byte {
            b'\n' => return Ok(None),
            _ => return Err(BodyError::InvalidLineEnding),
        },
        // The caller handles payload bytes in bulk and never steps through them.
        Chunk::Data { .. } => return Err(BodyError::InvalidChunkSize),
    }))
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The end of a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Writes the chunk-size line for a chunk of `len` bytes (then write the data and
/// [`CHUNK_END`]). Used when a body from HTTP/2 has to be chunked towards an HTTP/1.1 upstream.
pub fn write_chunk_head(len: usize, dst: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len as u64;
    loop {
        at -= 1;
        // A u64 has at most 16 nibbles, so `at` stays in 0..16; a nibble indexes HEX.
        digits[at] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.reserve(digits.len() - at + 2);
    dst.put_slice(&digits[at..]);
    dst.put_slice(CHUNK_END);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces split at `splits`, then returns (bytes consumed, complete, payload).
    fn feed_split(
        framing: BodyFraming,
        input: &[u8],
        splits: &[usize],
    ) -> Result<(usize, bool, Vec<u8>), BodyError> {
        let mut reader = BodyReader::new(framing);
        let mut payload = Vec::new();
        let mut start = 0;
        let mut bounds = splits.to_vec();
        bounds.push(input.len());
        for end in bounds {
            let piece = &input[start..end];
            let progress = reader.feed_decoded(piece, |r| payload.extend_from_slice(&piece[r]))?;
            start += progress.consumed;
            if progress.complete {
                return Ok((start, true, payload));
            }
            assert_eq!(
                progress.consumed,
                piece.len(),
                "an incomplete body consumes all input"
            );
        }
        Ok((start, false, payload))
    }

    /// Asserts that every single split point and every pair of split points gives the same
    /// result as feeding at once.
    fn assert_every_split(framing: BodyFraming, input: &[u8]) -> (usize, bool, Vec<u8>) {
        let whole = feed_split(framing, input, &[]).unwrap();
        for a in 0..=input.len() {
            assert_eq!(
                feed_split(framing, input, &[a]).unwrap(),
                whole,
                "split at {a}"
            );
            for b in a..=input.len() {
                assert_eq!(
                    feed_split(framing, input, &[a, b]).unwrap(),
                    whole,
                    "{a},{b}"
                );
            }
        }
        whole
    }

    #[test]
    fn chunked_with_extensions_and_trailers_at_every_split() {
        let body = concat!(
            "5\r\n",                       // chunk of 5
            "hello\r\n",                   // data + CRLF
            "1A;name=value;q=\"x y\"\r\n", // 26 bytes with two extensions
            "abcdefghijklmnopqrstuvwxyz\r\n",
            "0 ;last\r\n",        // last chunk: BWS before an extension
            "Trailer-One: 1\r\n", // trailers
            "X-Sum: abc\r\n",
            "\r\n", // end of trailer section
        );
        let input = format!("{body}GET /next HTTP/1.1\r\n");
        let (consumed, complete, payload) =
            assert_every_split(BodyFraming::Chunked, input.as_bytes());
        assert!(complete);
        assert_eq!(
            consumed,
            body.len(),
            "stops exactly before the next request"
        );
        assert_eq!(payload, b"helloabcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn chunked_without_trailers_and_uppercase_hex() {
        let input = b"A\r\n0123456789\r\n0\r\n\r\nNEXT";
        let (consumed, complete, payload) = assert_every_split(BodyFraming::Chunked, input);
        assert_eq!((consumed, complete), (input.len() - 4, true));
        assert_eq!(payload, b"0123456789");
    }

    #[test]
    fn content_length_at_every_split() {
        let input = b"0123456789NEXT";
        let (consumed, complete, payload) =
            assert_every_split(BodyFraming::ContentLength(10), input);
        assert_eq!((consumed, complete), (10, true));
        assert_eq!(payload, b"0123456789");
    }

    #[test]
    fn no_body_and_zero_length_are_complete_at_once() {
        for framing in [BodyFraming::None, BodyFraming::ContentLength(0)] {
            let mut reader = BodyReader::new(framing);
            assert_eq!(
                reader.feed(b"GET").unwrap(),
                BodyProgress {
                    consumed: 0,
                    complete: true
                }
            );
        }
    }

    #[test]
    fn close_delimited_ends_only_at_eof() {
        let mut reader = BodyReader::new(BodyFraming::CloseDelimited);
        assert_eq!(
            reader.feed(b"abc").unwrap(),
            BodyProgress {
                consumed: 3,
                complete: false
            }
        );
        assert_eq!(reader.finish(), Ok(()));
        assert!(reader.is_complete());
    }

    #[test]
    fn eof_inside_a_framed_body_is_truncation() {
        let mut reader = BodyReader::new(BodyFraming::ContentLength(5));
        reader.feed(b"abc").unwrap();
        assert_eq!(reader.finish(), Err(BodyError::Truncated));
        let mut reader = BodyReader::new(BodyFraming::Chunked);
        reader.feed(b"3\r\nabc\r\n").unwrap();
        assert_eq!(reader.finish(), Err(BodyError::Truncated));
    }

    fn chunked_error(input: &[u8]) -> BodyError {
        let mut reader = BodyReader::new(BodyFraming::Chunked);
        let error = reader.feed(input).unwrap_err();
        assert_eq!(
            reader.feed(b"0\r\n\r\n"),
            Err(BodyError::Failed),
            "errors are terminal"
        );
        error
    }

    #[test]
    fn chunk_size_lines_are_strict() {
        assert_eq!(chunked_error(b"\r\n"), BodyError::InvalidChunkSize); // no digits
        assert_eq!(chunked_error(b"g\r\n"), BodyError::InvalidChunkSize); // not hex
        assert_eq!(chunked_error(b"-1\r\n"), BodyError::InvalidChunkSize);
        assert_eq!(chunked_error(b"0x5\r\n"), BodyError::InvalidChunkSize);
        assert_eq!(chunked_error(b"5 \r\n"), BodyError::InvalidChunkSize); // BWS without ext
        assert_eq!(chunked_error(b"5\n"), BodyError::InvalidChunkSize); // bare LF
        assert_eq!(chunked_error(b"5\rX"), BodyError::InvalidLineEnding); // bare CR
        assert_eq!(
            chunked_error(b"5;a\nb\r\n"),
            BodyError::InvalidChunkExtension
        );
        assert_eq!(
            chunked_error(b"5;a\x00\r\n"),
            BodyError::InvalidChunkExtension
        );
        // 16 digits are fine, 17 are not, leading zeros included.
        let mut ok = BodyReader::new(BodyFraming::Chunked);
        assert!(ok.feed(b"000000000000000f\r\n").is_ok());
        assert_eq!(
            chunked_error(b"00000000000000001\r\n"),
            BodyError::ChunkSizeTooLong { limit: 16 }
        );
        let long_ext = [b"1;".as_slice(), &[b'a'; DEFAULT_MAX_CHUNK_EXTENSION]].concat();
        assert_eq!(
            chunked_error(&long_ext),
            BodyError::ChunkExtensionTooLong {
                limit: DEFAULT_MAX_CHUNK_EXTENSION
            }
        );
    }

    #[test]
    fn chunk_data_must_end_with_crlf() {
        assert_eq!(chunked_error(b"3\r\nabcX"), BodyError::MissingChunkDataCrlf);
        assert_eq!(
            chunked_error(b"3\r\nabc\n0\r\n\r\n"),
            BodyError::MissingChunkDataCrlf
        );
        assert_eq!(
            chunked_error(b"3\r\nabc\rX"),
            BodyError::MissingChunkDataCrlf
        );
    }

    #[test]
    fn trailers_are_validated_and_bounded() {
        assert_eq!(
            chunked_error(b"0\r\n folded: x\r\n\r\n"),
            BodyError::InvalidTrailer
        );
        assert_eq!(
            chunked_error(b"0\r\nNo colon\r\n\r\n"),
            BodyError::InvalidTrailer
        );
        assert_eq!(
            chunked_error(b"0\r\nA: b\x01\r\n\r\n"),
            BodyError::InvalidTrailer
        );
        assert_eq!(chunked_error(b"0\r\nA: b\n\r\n"), BodyError::InvalidTrailer);
        assert_eq!(chunked_error(b"0\r\n\rX"), BodyError::InvalidLineEnding);
        // "A: 1234\r\n" is exactly 9 trailer bytes.
        let limits = BodyLimits {
            max_trailer_bytes: 9,
            ..BodyLimits::default()
        };
        let mut reader = BodyReader::with_limits(BodyFraming::Chunked, limits);
        assert_eq!(
            reader.feed(b"0\r\nA: 1234\r\n\r\n"),
            Ok(BodyProgress {
                consumed: 14,
                complete: true
            })
        );
        let mut reader = BodyReader::with_limits(BodyFraming::Chunked, limits);
        assert_eq!(
            reader.feed(b"0\r\nA: 12345\r\n\r\n"),
            Err(BodyError::TrailersTooLarge { limit: 9 })
        );
    }

    #[test]
    fn huge_chunk_is_counted_not_buffered() {
        let mut reader = BodyReader::new(BodyFraming::Chunked);
        let progress = reader.feed(b"ffffffffffffffff\r\nabc").unwrap();
        assert_eq!(
            progress,
            BodyProgress {
                consumed: 21,
                complete: false
            }
        );
    }

    #[test]
    fn writes_chunk_heads_in_lowercase_hex() {
        let mut dst = BytesMut::new();
        write_chunk_head(0, &mut dst);
        write_chunk_head(26, &mut dst);
        write_chunk_head(usize::MAX, &mut dst);
        let expected = format!("0\r\n1a\r\n{:x}\r\n", usize::MAX);
        assert_eq!(&dst[..], expected.as_bytes());
    }
}
