//! RTMP chunk stream (RTMP spec 5.3): messages are cut into chunks that carry a compressed
//! header, and chunks of different chunk streams (csids) may interleave on the wire.
//!
//! [`ChunkDecoder`] turns socket bytes into whole [`RawMessage`]s, keeping per-csid header state
//! and partial payloads; [`ChunkEncoder`] turns messages into chunk bytes, either statefully
//! (compressed headers) or statelessly (one type-0 header and type-3 continuations, so that one
//! encoding of a media frame can be shared by many connections). The header parsing and
//! header-to-state rules live here because the load balancer's [`super::splice::Splice`] needs the
//! very same rules to follow a server's chunk stream.

mod decoder;
mod encoder;

pub use decoder::{ChunkDecoder, DecoderLimits};
pub use encoder::{ChunkEncoder, ChunkedBody};

use bytes::Bytes;

/// Chunk size every RTMP connection starts with in both directions.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size we accept from a peer or configure ourselves (the spec allows 2^31 - 1).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Smallest chunk stream id a message can use (0 and 1 select the longer basic headers).
pub const MIN_CSID: u32 = 2;
/// Largest chunk stream id the 3-byte basic header can express (64 + 65535).
pub const MAX_CSID: u32 = 65_599;
/// Value of the 3-byte timestamp field that announces a 4-byte extended timestamp.
const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;

/// One whole RTMP message as carried by the chunk stream, before any interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream it arrived on (or is to be sent on).
    pub csid: u32,
    /// Absolute timestamp in milliseconds (wraps at 2^32, as on the wire).
    pub timestamp: u32,
    /// Message type id (1 = Set Chunk Size ... 20 = AMF0 command, see `message::type_id`).
    pub type_id: u8,
    /// Message stream id (0 = the NetConnection, then ids handed out by createStream).
    pub stream_id: u32,
    /// Message body.
    pub payload: Bytes,
}

/// Errors of the chunk layer (decoder, encoder and chunk-size handling).
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// A type 1, 2 or 3 chunk header arrived on a chunk stream that never had a type-0 header.
    #[error("chunk stream {csid} has no previous header for a type {fmt} chunk")]
    NoPreviousHeader {
        /// The chunk stream id.
        csid: u32,
        /// The chunk header type (1, 2 or 3).
        fmt: u8,
    },
    /// A type 0, 1 or 2 header interrupted a message whose chunks were still arriving.
    #[error("chunk stream {csid} got a new message header while a message was incomplete")]
    InterruptedMessage {
        /// The chunk stream id.
        csid: u32,
    },
    /// The peer announced a message longer than the configured limit.
    #[error("message of {length} bytes exceeds the limit of {limit} bytes")]
    MessageTooLong {
        /// Announced length.
        length: u32,
        /// Configured limit.
        limit: u32,
    },
    /// The peer asked for a chunk size of zero, above the limit, or with the reserved top bit.
    #[error("chunk size {size} is outside 1..={limit}")]
    BadChunkSize {
        /// Requested size.
        size: u32,
        /// Configured limit.
        limit: u32,
    },
    /// A Set Chunk Size or Abort message did not have its 4-byte body.
    #[error("control message type {type_id} has a {length}-byte body instead of 4 bytes")]
    BadControlMessage {
        /// Message type id (1 or 2).
        type_id: u8,
        /// Body length received.
        length: usize,
    },
    /// More partial messages were in flight at once than allowed.
    #[error("more than {limit} partial messages in flight")]
    TooManyPartialMessages {
        /// Configured limit.
        limit: usize,
    },
    /// Partial messages together would need more buffer than allowed.
    #[error("partial messages would buffer {bytes} bytes, above the limit of {limit}")]
    TooMuchBuffered {
        /// Bytes that would be buffered.
        bytes: usize,
        /// Configured limit.
        limit: usize,
    },
    /// More chunk streams were used than allowed.
    #[error("more than {limit} chunk streams in use")]
    TooManyChunkStreams {
        /// Configured limit.
        limit: usize,
    },
    /// A chunk stream id outside 2..=65599 was given to the encoder.
    #[error("chunk stream id {0} is outside 2..=65599")]
    InvalidCsid(u32),
}

/// What a chunk stream remembers of its last message header (used to expand type 1/2/3 headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderState {
    /// Absolute timestamp of the last message.
    pub timestamp: u32,
    /// Raw value of the last timestamp field (absolute for type 0, a delta for type 1/2, and the
    /// extended value when the field was 0xFFFFFF). A type-3 header that starts a new message
    /// adds this again, as FFmpeg and librtmp do.
    pub ts_field: u32,
    /// The last type 0/1/2 header used the extended timestamp, so type-3 chunks carry one too.
    pub extended: bool,
    /// Length of the last message.
    pub length: u32,
    /// Type id of the last message.
    pub type_id: u8,
    /// Message stream id of the last message.
    pub stream_id: u32,
}

/// A parsed basic header plus message header, without the extended timestamp.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkHeader {
    /// Header type 0..=3.
    pub fmt: u8,
    /// Chunk stream id.
    pub csid: u32,
    /// Bytes taken by basic header plus message header (extended timestamp not included).
    pub len: usize,
    /// 3-byte timestamp (type 0) or timestamp delta (types 1, 2); 0 for type 3.
    pub ts_field: u32,
    /// Message length (type 0, 1).
    pub length: u32,
    /// Message type id (type 0, 1).
    pub type_id: u8,
    /// Message stream id (type 0; little-endian on the wire).
    pub stream_id: u32,
}

/// Reads a 24-bit big-endian number.
fn be24(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(3)
        .fold(0, |acc, &b| (acc << 8) | u32::from(b))
}

impl ChunkHeader {
    /// Parses a chunk header from the front of `buf`; `None` if `buf` is too short.
    pub fn parse(buf: &[u8]) -> Option<ChunkHeader> {
        let first = *buf.first()?;
        let fmt = first >> 6;
        let (csid, basic_len) = match first & 0x3F {
            0 => (64 + u32::from(*buf.get(1)?), 2),
            1 => (
                64 + u32::from(*buf.get(1)?) + 256 * u32::from(*buf.get(2)?),
                3,
            ),
            id => (u32::from(id), 1),
        };
        let message_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let header = buf.get(basic_len..basic_len + message_len)?;
        let mut parsed = ChunkHeader {
            fmt,
            csid,
            len: basic_len + message_len,
            ts_field: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
        };
        if let Some(ts) = header.get(0..3) {
            parsed.ts_field = be24(ts);
        }
        if let (Some(length), Some(&type_id)) = (header.get(3..6), header.get(6)) {
            parsed.length = be24(length);
            parsed.type_id = type_id;
        }
        if let Some(Ok(stream_id)) = header.get(7..11).map(<[u8; 4]>::try_from) {
            parsed.stream_id = u32::from_le_bytes(stream_id);
        }
        Some(parsed)
    }

    /// Whether an extended timestamp follows this header, given the chunk stream's last state.
    pub fn has_extended(&self, prev: Option<&HeaderState>) -> bool {
        match self.fmt {
            3 => prev.is_some_and(|p| p.extended),
            _ => self.ts_field == EXTENDED_TIMESTAMP,
        }
    }

    /// The header state after this header starts a new message.
    ///
    /// `extended` is the 4-byte extended timestamp, when one followed the header.
    pub fn start_message(
        &self,
        prev: Option<&HeaderState>,
        extended: Option<u32>,
    ) -> Result<HeaderState, ChunkError> {
        let field = extended.unwrap_or(self.ts_field);
        let is_extended = extended.is_some();
        match (self.fmt, prev) {
            (0, _) => Ok(HeaderState {
                timestamp: field,
                ts_field: field,
                extended: is_extended,
                length: self.length,
                type_id: self.type_id,
                stream_id: self.stream_id,
            }),
            (1, Some(p)) => Ok(HeaderState {
                timestamp: p.timestamp.wrapping_add(field),
                ts_field: field,
                extended: is_extended,
                length: self.length,
                type_id: self.type_id,
                stream_id: p.stream_id,
            }),
            (2, Some(p)) => Ok(HeaderState {
                timestamp: p.timestamp.wrapping_add(field),
                ts_field: field,
                extended: is_extended,
                ..*p
            }),
            (_, Some(p)) => Ok(HeaderState {
                timestamp: p.timestamp.wrapping_add(p.ts_field),
                ..*p
            }),
            (fmt, None) => Err(ChunkError::NoPreviousHeader {
                csid: self.csid,
                fmt,
            }),
        }
    }
}

/// Checks a chunk size requested by a peer (or by ourselves) against `limit`.
pub(crate) fn check_chunk_size(size: u32, limit: u32) -> Result<u32, ChunkError> {
    if size == 0 || size > limit.min(MAX_CHUNK_SIZE) {
        return Err(ChunkError::BadChunkSize { size, limit });
    }
    Ok(size)
}

/// Reads the 4-byte body of a Set Chunk Size or Abort message.
pub(crate) fn control_u32(type_id: u8, payload: &[u8]) -> Result<u32, ChunkError> {
    match payload {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(ChunkError::BadControlMessage {
            type_id,
            length: payload.len(),
        }),
    }
}

/// Writes a basic header for `fmt`/`csid` (csid must be in 2..=65599).
pub(crate) fn put_basic_header(
    out: &mut impl bytes::BufMut,
    fmt: u8,
    csid: u32,
) -> Result<(), ChunkError> {
    let fmt = fmt << 6;
    match csid {
        2..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => {
            out.put_u8(fmt);
            out.put_u8((csid - 64) as u8);
        }
        320..=MAX_CSID => {
            let id = csid - 64;
            out.put_u8(fmt | 1);
            out.put_u8((id & 0xFF) as u8);
            out.put_u8((id >> 8) as u8);
        }
        _ => return Err(ChunkError::InvalidCsid(csid)),
    }
    Ok(())
}

/// Writes a type-0 message header (after the basic header) plus its extended timestamp.
pub(crate) fn put_type0_fields(
    out: &mut impl bytes::BufMut,
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
) {
    put_u24(out, timestamp.min(EXTENDED_TIMESTAMP));
    put_u24(out, length);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if timestamp >= EXTENDED_TIMESTAMP {
        out.put_u32(timestamp);
    }
}

/// Writes the low 24 bits of `value` big-endian.
pub(crate) fn put_u24(out: &mut impl bytes::BufMut, value: u32) {
    out.put_slice(&value.to_be_bytes()[1..]);
}
