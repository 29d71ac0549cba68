//! Chunk encoder: [`RawMessage`]s in, chunk bytes out.
//!
//! The stateful path ([`ChunkEncoder::write`]) compresses headers against what it sent last on
//! the same chunk stream, exactly as the peer's decoder will expand them. The shared path
//! ([`ChunkedBody`] + [`ChunkEncoder::write_chunked`]) cuts a body into chunks once, with the
//! type-3 separators of its chunk stream; each connection then writes only its own compressed
//! message header and hands the shared chunks to the socket as they are.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    ChunkError, DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, HeaderState, MAX_CHUNK_SIZE, RawMessage,
    check_chunk_size, put_basic_header, put_type0_fields, put_u24,
};
use crate::rtmp::message::type_id;

/// What the encoder remembers per chunk stream.
#[derive(Debug, Clone, Copy)]
struct EncodeStream {
    /// The header state the peer's decoder now has for this chunk stream.
    header: HeaderState,
    /// The last header was type 1 or 2, so a type-3 new message means "same delta again" to
    /// every decoder (after a type 0, decoders disagree about what a type 3 means).
    delta_known: bool,
}

/// A message body cut into chunks once, to be sent by many connections.
///
/// `wire` is what follows a message header on chunk stream `csid` at chunk size `chunk_size`
/// when no extended timestamp is in use: the first chunk, then a one-to-three-byte type-3
/// basic header before each further chunk. Those separators depend only on the csid, so every
/// connection with that chunk size can send the same bytes after its own header. A body that
/// fits one chunk is the payload itself (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBody {
    /// Chunk size the body was cut with.
    chunk_size: u32,
    /// Chunk stream whose type-3 separators are in `wire`.
    csid: u32,
    /// The message body, for connections that cannot use `wire`.
    payload: Bytes,
    /// The body in chunks with separators.
    wire: Bytes,
}

impl ChunkedBody {
    /// Cuts `payload` into chunks of `chunk_size` for chunk stream `csid`.
    pub fn new(chunk_size: u32, csid: u32, payload: Bytes) -> Result<Self, ChunkError> {
        let chunk_size = check_chunk_size(chunk_size, MAX_CHUNK_SIZE)?;
        let message = RawMessage {
            csid,
            timestamp: 0,
            type_id: 0,
            stream_id: 0,
            payload,
        };
        message_length(&message)?;
        let wire = if message.payload.len() <= chunk_size as usize {
            // Still reject a csid no basic header can carry.
            put_basic_header(&mut BytesMut::new(), 3, csid)?;
            message.payload.clone()
        } else {
            let mut out = BytesMut::new();
            put_body(&mut out, chunk_size, &message, None)?;
            out.freeze()
        };
        Ok(ChunkedBody {
            chunk_size,
            csid,
            payload: message.payload,
            wire,
        })
    }

    /// The chunk size the body was cut with.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The chunk stream the body was cut for.
    pub fn csid(&self) -> u32 {
        self.csid
    }

    /// The message body as given.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The chunked bytes that follow a message header.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }
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
        let extended = self.put_header(message, length, out)?;
        put_body(out, self.chunk_size, message, extended)
    }

    /// Writes the header of a message whose chunked body is `body`, and returns the bytes that
    /// must follow it on the wire: `body`'s shared chunks (no copy) when they fit this
    /// connection, or `None` when the body had to be chunked into `out` right after the header
    /// (another chunk size, or an extended timestamp that every continuation chunk repeats).
    ///
    /// The header is compressed against this chunk stream's state like [`Self::write`]'s, so a
    /// shared frame costs one connection a few header bytes and a reference to `body`.
    pub fn write_chunked(
        &mut self,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        body: &ChunkedBody,
        out: &mut BytesMut,
    ) -> Result<Option<Bytes>, ChunkError> {
        let message = RawMessage {
            csid: body.csid,
            timestamp,
            type_id,
            stream_id,
            payload: body.payload.clone(),
        };
        let length = message_length(&message)?;
        let extended = self.put_header(&message, length, out)?;
        if extended.is_none() && body.chunk_size == self.chunk_size {
            return Ok(Some(body.wire.clone()));
        }
        put_body(out, self.chunk_size, &message, extended)?;
        Ok(None)
    }

    /// Writes the basic and message header of `message` (compressed against what the peer
    /// knows) and records the new state. Returns the extended timestamp that continuation
    /// chunks of this message must repeat, if any.
    fn put_header(
        &mut self,
        message: &RawMessage,
        length: u32,
        out: &mut BytesMut,
    ) -> Result<Option<u32>, ChunkError> {
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
        Ok(extended.then_some(field))
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
    fn chunked_body_has_type3_separators_of_its_chunk_stream() {
        let payload = Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let body = ChunkedBody::new(4, 6, payload.clone()).unwrap();
        #[rustfmt::skip]
        let wire = [
            1, 2, 3, 4,  // first chunk
            0xC6,        // fmt 3, csid 6
            5, 6, 7, 8,  // second chunk
            0xC6,        // fmt 3, csid 6
            9, 10,       // last, short chunk
        ];
        assert_eq!(&body.wire()[..], &wire);
        let body = ChunkedBody::new(8, 70, payload.clone()).unwrap();
        #[rustfmt::skip]
        let wire = [
            1, 2, 3, 4, 5, 6, 7, 8, // first chunk
            0xC0, 70 - 64,          // fmt 3, two-byte basic header: csid 64 + 6
            9, 10,                  // last chunk
        ];
        assert_eq!(&body.wire()[..], &wire);
        let single = ChunkedBody::new(10, 6, payload.clone()).unwrap();
        assert_eq!(
            single.wire().as_ptr(),
            payload.as_ptr(),
            "a body that fits one chunk is the payload itself"
        );
        assert!(matches!(
            ChunkedBody::new(0, 6, payload.clone()),
            Err(ChunkError::BadChunkSize { size: 0, .. })
        ));
        assert!(matches!(
            ChunkedBody::new(128, 1, payload),
            Err(ChunkError::InvalidCsid(1))
        ));
    }

    /// The video message (chunk stream 6, message stream 1) that `body` was cut from.
    fn video_of(timestamp: u32, body: &ChunkedBody) -> RawMessage {
        RawMessage {
            csid: 6,
            timestamp,
            type_id: 9,
            stream_id: 1,
            payload: body.payload().clone(),
        }
    }

    #[test]
    fn shared_body_after_own_header_is_byte_identical_to_a_stateful_write() {
        let mut plain = ChunkEncoder::new();
        let mut shared = ChunkEncoder::new();
        let mut plain_out = BytesMut::new();
        let mut shared_out = BytesMut::new();
        let bodies: Vec<ChunkedBody> = [300, 300, 50, 1000]
            .into_iter()
            .map(|len| ChunkedBody::new(128, 6, Bytes::from(vec![0xAB; len])).unwrap())
            .collect();
        // Headers go through types 0, 2, 3, 1 and 0 (timestamp going back).
        for (timestamp, body) in [0, 33, 66, 99, 10].into_iter().zip(bodies.iter().cycle()) {
            plain
                .write(&video_of(timestamp, body), &mut plain_out)
                .unwrap();
            let wire = shared
                .write_chunked(timestamp, 9, 1, body, &mut shared_out)
                .unwrap()
                .expect("same chunk size, no extended timestamp: shared");
            assert_eq!(wire.as_ptr(), body.wire().as_ptr(), "no copy");
            shared_out.extend_from_slice(&wire);
        }
        assert_eq!(shared_out, plain_out);
    }

    #[test]
    fn shared_body_falls_back_to_a_copy_when_it_does_not_fit() {
        let body = ChunkedBody::new(4096, 6, Bytes::from(vec![0xCD; 5000])).unwrap();
        for (chunk_size, timestamp) in [(128, 40), (4096, 0x0100_0000)] {
            let mut plain = ChunkEncoder::new();
            let mut shared = ChunkEncoder::new();
            let mut plain_out = BytesMut::new();
            let mut shared_out = BytesMut::new();
            if chunk_size != 128 {
                plain
                    .write_set_chunk_size(chunk_size, &mut plain_out)
                    .unwrap();
                shared
                    .write_set_chunk_size(chunk_size, &mut shared_out)
                    .unwrap();
            }
            plain
                .write(&video_of(timestamp, &body), &mut plain_out)
                .unwrap();
            let wire = shared
                .write_chunked(timestamp, 9, 1, &body, &mut shared_out)
                .unwrap();
            assert!(
                wire.is_none(),
                "chunk size {chunk_size}, timestamp {timestamp:#x}"
            );
            assert_eq!(shared_out, plain_out);
        }
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
