//! Chunk encoder: [`RawMessage`]s in, chunk bytes out.
//!
//! The stateful path ([`ChunkEncoder::write`]) compresses headers against what it sent last on
//! the same chunk stream, exactly as the peer's decoder will expand them. The stateless path
//! ([`ChunkEncoder::write_stateless`]) always writes one type-0 header and type-3 continuations,
//! so its output depends only on (chunk size, message) and can be encoded once and copied to
//! every viewer connection that has the same outgoing chunk size.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};

use super::{
    ChunkError, DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, HeaderState, MAX_CHUNK_SIZE, RawMessage,
    check_chunk_size, put_basic_header, put_type0_fields, put_u24,
};
use crate::proto::rtmp::message::type_id;

/// What the encoder remembers per chunk stream.
#[derive(Debug, Clone, Copy)]
struct EncodeStream {
    /// The header state the peer's decoder now has for this chunk stream.
    header: HeaderState,
    /// The last header was type 1 or 2, so a type-3 new message means "same delta again" to
    /// every decoder (after a type 0, decoders disagree about what a type 3 means).
    delta_known: bool,
}

/// Encodes messages into chunks.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    /// Current outgoing chunk size.
    chunk_size: u32,
    /// What the peer's decoder knows per chunk stream.
    streams: HashMap<u32, EncodeStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder in the initial state (chunk size 128, no chunk stream used yet).
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
        }
    }

    /// The outgoing chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Chunk stream ids this encoder has sent on (the peer holds header state for them).
    pub fn used_csids(&self) -> impl Iterator<Item = u32> + '_ {
        self.streams.keys().copied()
    }

    /// Writes a Set Chunk Size message (on csid 2) and switches to `size` for later messages.
    pub fn write_set_chunk_size(
        &mut self,
        size: u32,
        out: &mut BytesMut,
    ) -> Result<(), ChunkError> {
        let size = check_chunk_size(size, MAX_CHUNK_SIZE)?;
        let message = RawMessage {
            csid: 2,
            timestamp: 0,
            type_id: type_id::SET_CHUNK_SIZE,
            stream_id: 0,
            payload: bytes::Bytes::copy_from_slice(&size.to_be_bytes()),
        };
        self.write(&message, out)?;
        self.chunk_size = size;
        Ok(())
    }

    /// Forgets what the peer knows about `csid`, so the next message on it gets a type-0 header.
    ///
    /// Needed when something else (a shared pre-encoded frame) was written on that chunk stream.
    pub fn forget(&mut self, csid: u32) {
        self.streams.remove(&csid);
    }

    /// Writes `message` with the most compact header the peer can expand unambiguously.
    pub fn write(&mut self, message: &RawMessage, out: &mut BytesMut) -> Result<(), ChunkError> {
        let length = message_length(message)?;
        let prev = self.streams.get(&message.csid).copied();
        let (fmt, field) = match prev {
            Some(p)
                if p.header.stream_id == message.stream_id
                    && message.timestamp >= p.header.timestamp =>
            {
                let delta = message.timestamp - p.header.timestamp;
                if p.header.length != length || p.header.type_id != message.type_id {
                    (1, delta)
                } else if p.delta_known && delta == p.header.ts_field {
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0, message.timestamp),
        };
        let extended = if fmt == 3 {
            prev.is_some_and(|p| p.header.extended)
        } else {
            field >= EXTENDED_TIMESTAMP
        };
        put_basic_header(out, fmt, message.csid)?;
        match fmt {
            0 => put_type0_fields(
                out,
                message.timestamp,
                length,
                message.type_id,
                message.stream_id,
            ),
            1 | 2 => {
                put_u24(out, field.min(EXTENDED_TIMESTAMP));
                if fmt == 1 {
                    put_u24(out, length);
                    out.put_u8(message.type_id);
                }
                if extended {
                    out.put_u32(field);
                }
            }
            _ => {
                if extended {
                    out.put_u32(field);
                }
            }
        }
        put_body(out, self.chunk_size, message, extended.then_some(field))?;
        self.streams.insert(
            message.csid,
            EncodeStream {
                header: HeaderState {
                    timestamp: message.timestamp,
                    ts_field: field,
                    extended,
                    length,
                    type_id: message.type_id,
                    stream_id: message.stream_id,
                },
                delta_known: fmt != 0,
            },
        );
        Ok(())
    }

    /// Writes `message` as one type-0 chunk plus type-3 continuations, using no encoder state.
    ///
    /// The bytes can be shared by every connection whose outgoing chunk size is `chunk_size`, as
    /// long as that connection's own encoder does not also use `message.csid` (or forgets it).
    pub fn write_stateless(
        chunk_size: u32,
        message: &RawMessage,
        out: &mut BytesMut,
    ) -> Result<(), ChunkError> {
        let chunk_size = check_chunk_size(chunk_size, MAX_CHUNK_SIZE)?;
        let length = message_length(message)?;
        put_basic_header(out, 0, message.csid)?;
        put_type0_fields(
            out,
            message.timestamp,
            length,
            message.type_id,
            message.stream_id,
        );
        let extended = (message.timestamp >= EXTENDED_TIMESTAMP).then_some(message.timestamp);
        put_body(out, chunk_size, message, extended)
    }
}

/// The message length as a 24-bit header value.
fn message_length(message: &RawMessage) -> Result<u32, ChunkError> {
    u32::try_from(message.payload.len())
        .ok()
        .filter(|&len| len <= 0x00FF_FFFF)
        .ok_or(ChunkError::MessageTooLong {
            length: u32::try_from(message.payload.len()).unwrap_or(u32::MAX),
            limit: 0x00FF_FFFF,
        })
}

/// Writes the payload in chunks of `chunk_size`, with type-3 headers (and the extended
/// timestamp, when the message header had one) between them.
fn put_body(
    out: &mut BytesMut,
    chunk_size: u32,
    message: &RawMessage,
    extended: Option<u32>,
) -> Result<(), ChunkError> {
    let mut chunks = message.payload.chunks(chunk_size as usize);
    out.reserve(message.payload.len() + message.payload.len() / chunk_size as usize * 8);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for chunk in chunks {
        put_basic_header(out, 3, message.csid)?;
        if let Some(ts) = extended {
            out.put_u32(ts);
        }
        out.put_slice(chunk);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(csid: u32, timestamp: u32, type_id: u8, len: usize) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id: 1,
            payload: Bytes::from(vec![0xEE; len]),
        }
    }

    #[test]
    fn stateless_encoding_with_extended_timestamp() {
        let mut out = BytesMut::new();
        ChunkEncoder::write_stateless(128, &message(7, 0x0123_4567, 9, 200), &mut out).unwrap();
        #[rustfmt::skip]
        let header = [
            0x07,                   // fmt 0, csid 7
            0xFF, 0xFF, 0xFF,       // timestamp field: extended
            0x00, 0x00, 0xC8,       // length 200
            0x09,                   // video
            0x01, 0x00, 0x00, 0x00, // stream 1, little-endian
            0x01, 0x23, 0x45, 0x67, // extended timestamp
        ];
        assert_eq!(&out[..16], &header);
        assert!(out[16..144].iter().all(|&b| b == 0xEE)); // first 128 bytes
        assert_eq!(&out[144..149], &[0xC7, 0x01, 0x23, 0x45, 0x67]); // type 3 + extended again
        assert_eq!(out.len(), 149 + 72);
    }

    #[test]
    fn stateful_encoding_picks_the_smallest_unambiguous_header() {
        let mut encoder = ChunkEncoder::new();
        let mut fmts = Vec::new();
        for m in [
            message(4, 0, 8, 10),  // first on csid: type 0
            message(4, 23, 8, 10), // same length/type, new delta: type 2
            message(4, 46, 8, 10), // same delta after a type 2: type 3
            message(4, 69, 8, 11), // length changed: type 1
            message(4, 10, 8, 11), // timestamp went back: type 0
            message(4, 10, 8, 11), // delta 0 after a type 0: type 2 (type 3 would be ambiguous)
        ] {
            let mut out = BytesMut::new();
            encoder.write(&m, &mut out).unwrap();
            fmts.push(out[0] >> 6);
        }
        assert_eq!(fmts, vec![0, 2, 3, 1, 0, 2]);
        encoder.forget(4);
        let mut out = BytesMut::new();
        encoder.write(&message(4, 20, 8, 11), &mut out).unwrap();
        assert_eq!(out[0] >> 6, 0, "forgotten csid starts over with type 0");
    }

    #[test]
    fn invalid_csid_and_chunk_size_are_errors() {
        let mut encoder = ChunkEncoder::new();
        let mut out = BytesMut::new();
        assert!(matches!(
            encoder.write(&message(1, 0, 8, 1), &mut out),
            Err(ChunkError::InvalidCsid(1))
        ));
        assert!(matches!(
            encoder.write(&message(65_600, 0, 8, 1), &mut out),
            Err(ChunkError::InvalidCsid(65_600))
        ));
        assert!(out.is_empty());
        assert!(encoder.write_set_chunk_size(0, &mut out).is_err());
    }
}
