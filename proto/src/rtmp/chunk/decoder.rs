//! Chunk decoder: socket bytes in, whole [`RawMessage`]s out.
//!
//! The caller appends received bytes to a `BytesMut` and calls [`ChunkDecoder::decode`] until it
//! returns `Ok(None)`. Each call consumes whole chunks only (a chunk is taken once its header and
//! payload are all present), so the input always starts at a chunk boundary; that is what lets a
//! load balancer hand the rest of a server's byte stream to [`super::super::splice::Splice`].
//! Set Chunk Size and Abort messages are applied by the decoder itself and still returned.

use std::collections::HashMap;

use bytes::{Buf, BufMut, BytesMut};

use super::{
    ChunkError, ChunkHeader, DEFAULT_CHUNK_SIZE, HeaderState, MAX_CHUNK_SIZE, RawMessage,
    check_chunk_size, control_u32,
};
use crate::rtmp::message::type_id;

/// Peer-controlled sizes the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest chunk size a peer may set (never above [`MAX_CHUNK_SIZE`]).
    pub max_chunk_size: u32,
    /// Largest message length a peer may announce.
    pub max_message_len: u32,
    /// Most messages that may be partially received at once (one per chunk stream at most).
    pub max_partial_messages: usize,
    /// Most bytes that partial messages may reserve together (counted by announced length).
    pub max_buffered_bytes: usize,
    /// Most chunk streams a peer may use over the connection's life.
    pub max_chunk_streams: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_chunk_size: MAX_CHUNK_SIZE,
            // A 4K keyframe at a high bitrate is a few MB; nothing legitimate is near 8 MiB.
            max_message_len: 8 * 1024 * 1024,
            // Publishers interleave audio, video and data: three at most in practice.
            max_partial_messages: 8,
            max_buffered_bytes: 16 * 1024 * 1024,
            // FFmpeg and OBS use 2..=8; nginx-rtmp uses up to 7.
            max_chunk_streams: 64,
        }
    }
}

/// Per chunk stream: last header and the message being assembled.
#[derive(Debug, Clone)]
pub(super) struct DecodeStream {
    /// Last message header, for expanding type 1/2/3 headers.
    pub(super) header: HeaderState,
    /// Payload received so far of an incomplete message, with capacity for the whole message.
    pub(super) partial: Option<BytesMut>,
}

/// Reassembles RTMP messages from a chunk stream.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    /// Current incoming chunk size (changed by the peer's Set Chunk Size).
    chunk_size: u32,
    /// Limits on what the peer may make us hold.
    limits: DecoderLimits,
    /// State per chunk stream id.
    streams: HashMap<u32, DecodeStream>,
    /// Number of streams whose `partial` is `Some`.
    partial_count: usize,
    /// Sum of the announced lengths of the partial messages.
    buffered: usize,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(DecoderLimits::default())
    }
}

impl ChunkDecoder {
    /// A decoder in the initial state (chunk size 128).
    pub fn new(limits: DecoderLimits) -> Self {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            streams: HashMap::new(),
            partial_count: 0,
            buffered: 0,
        }
    }

    /// The chunk size the peer currently uses.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Whether any message has been partly received (some of its chunks are buffered).
    pub fn has_partial(&self) -> bool {
        self.partial_count > 0
    }

    /// Takes the decoder apart for the splice filter: chunk size, limits, header per csid.
    pub(crate) fn into_parts(
        self,
    ) -> (u32, DecoderLimits, impl Iterator<Item = (u32, HeaderState)>) {
        let headers = self.streams.into_iter().map(|(csid, s)| (csid, s.header));
        (self.chunk_size, self.limits, headers)
    }

    /// Consumes whole chunks from `input` until a message is complete.
    ///
    /// Returns `Ok(None)` when `input` holds no further complete chunk. A Set Chunk Size or
    /// Abort message is applied to this decoder before it is returned.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(header) = ChunkHeader::parse(input) else {
                return Ok(None);
            };
            let stream = self.streams.get(&header.csid);
            let prev = stream.map(|s| &s.header);
            let mut pos = header.len;
            let extended = if header.has_extended(prev) {
                let Some(bytes) = input.get(pos..pos + 4) else {
                    return Ok(None);
                };
                pos += 4;
                Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            } else {
                None
            };
            let (state, received) = match stream {
                Some(DecodeStream {
                    header: last,
                    partial: Some(partial),
                }) => {
                    // Only type-3 chunks may continue a message (their extended timestamp, if
                    // any, repeats the message's and is ignored).
                    if header.fmt != 3 {
                        return Err(ChunkError::InterruptedMessage { csid: header.csid });
                    }
                    (*last, partial.len())
                }
                _ => (header.start_message(prev, extended)?, 0),
            };
            let remaining = (state.length as usize).saturating_sub(received);
            let take = remaining.min(self.chunk_size as usize);
            if received == 0 {
                self.check_new_message(&header, &state, take < remaining)?;
            }
            if input.len() < pos + take {
                return Ok(None);
            }
            input.advance(pos);
            let body = input.split_to(take);
            if let Some(message) = self.commit(header.csid, state, received, body)? {
                return Ok(Some(message));
            }
        }
    }

    /// Checks limits before a new message is started on `header.csid`.
    fn check_new_message(
        &self,
        header: &ChunkHeader,
        state: &HeaderState,
        becomes_partial: bool,
    ) -> Result<(), ChunkError> {
        if state.length > self.limits.max_message_len {
            return Err(ChunkError::MessageTooLong {
                length: state.length,
                limit: self.limits.max_message_len,
            });
        }
        if !self.streams.contains_key(&header.csid)
            && self.streams.len() >= self.limits.max_chunk_streams
        {
            return Err(ChunkError::TooManyChunkStreams {
                limit: self.limits.max_chunk_streams,
            });
        }
        if becomes_partial {
            if self.partial_count >= self.limits.max_partial_messages {
                return Err(ChunkError::TooManyPartialMessages {
                    limit: self.limits.max_partial_messages,
                });
            }
            let bytes = self.buffered + state.length as usize;
            if bytes > self.limits.max_buffered_bytes {
                return Err(ChunkError::TooMuchBuffered {
                    bytes,
                    limit: self.limits.max_buffered_bytes,
                });
            }
        }
        Ok(())
    }

    /// Records a chunk's body; returns the message if it is now complete.
    fn commit(
        &mut self,
        csid: u32,
        header: HeaderState,
        received: usize,
        body: BytesMut,
    ) -> Result<Option<RawMessage>, ChunkError> {
        let length = header.length as usize;
        let stream = self.streams.entry(csid).or_insert(DecodeStream {
            header,
            partial: None,
        });
        stream.header = header;
        let payload = match stream.partial.take() {
            // Continuation: append to what we have.
            Some(mut partial) => {
                partial.put(body);
                partial
            }
            // Whole message in one chunk: no copy.
            None if body.len() == length => body,
            // First chunk of a longer message: reserve the announced length (checked above).
            None => {
                let mut partial = BytesMut::with_capacity(length);
                partial.put(body);
                self.partial_count += 1;
                self.buffered += length;
                partial
            }
        };
        if payload.len() < length {
            stream.partial = Some(payload);
            return Ok(None);
        }
        if received > 0 {
            // Completed a message that was counted as partial when its first chunk arrived.
            self.partial_count -= 1;
            self.buffered -= length;
        }
        let message = RawMessage {
            csid,
            timestamp: header.timestamp,
            type_id: header.type_id,
            stream_id: header.stream_id,
            payload: payload.freeze(),
        };
        self.apply_control(&message)?;
        Ok(Some(message))
    }

    /// Applies Set Chunk Size and Abort to the decoder itself.
    fn apply_control(&mut self, message: &RawMessage) -> Result<(), ChunkError> {
        match message.type_id {
            type_id::SET_CHUNK_SIZE => {
                let size = control_u32(message.type_id, &message.payload)?;
                self.chunk_size = check_chunk_size(size, self.limits.max_chunk_size)?;
            }
            type_id::ABORT => {
                let csid = control_u32(message.type_id, &message.payload)?;
                if let Some(stream) = self.streams.get_mut(&csid)
                    && stream.partial.take().is_some()
                {
                    self.partial_count -= 1;
                    self.buffered -= stream.header.length as usize;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::ChunkEncoder;
    use bytes::Bytes;

    /// Decodes everything in `bytes`, fed in one piece and also one byte at a time, and checks
    /// both ways agree.
    fn decode_all(bytes: &[u8]) -> Vec<RawMessage> {
        let mut decoder = ChunkDecoder::default();
        let mut input = BytesMut::from(bytes);
        let mut whole = Vec::new();
        while let Some(message) = decoder.decode(&mut input).unwrap() {
            whole.push(message);
        }
        assert!(input.is_empty(), "undecoded bytes left: {input:?}");
        let mut decoder = ChunkDecoder::default();
        let mut input = BytesMut::new();
        let mut trickled = Vec::new();
        for &byte in bytes {
            input.put_u8(byte);
            while let Some(message) = decoder.decode(&mut input).unwrap() {
                trickled.push(message);
            }
        }
        assert_eq!(whole, trickled);
        whole
    }

    fn message(
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn all_four_header_types() {
        #[rustfmt::skip]
        let bytes = [
            0x03,                   // fmt 0, csid 3
            0x00, 0x00, 0x0A,       // timestamp 10
            0x00, 0x00, 0x04,       // length 4
            0x14,                   // type 20 (AMF0 command)
            0x01, 0x00, 0x00, 0x00, // stream id 1 (little-endian)
            b'a', b'b', b'c', b'd', // payload
            0x43,                   // fmt 1, csid 3
            0x00, 0x00, 0x05,       // timestamp delta 5
            0x00, 0x00, 0x02,       // length 2
            0x08,                   // type 8 (audio)
            b'e', b'f',             // payload
            0x83,                   // fmt 2, csid 3
            0x00, 0x00, 0x07,       // timestamp delta 7
            b'g', b'h',             // payload (length 2 and type 8 from before)
            0xC3,                   // fmt 3, csid 3: new message, same delta (7) again
            b'i', b'j',             // payload
        ];
        assert_eq!(
            decode_all(&bytes),
            vec![
                message(3, 10, 20, 1, b"abcd"),
                message(3, 15, 8, 1, b"ef"),
                message(3, 22, 8, 1, b"gh"),
                message(3, 29, 8, 1, b"ij"),
            ]
        );
    }

    #[test]
    fn two_and_three_byte_basic_headers() {
        #[rustfmt::skip]
        let bytes = [
            0x00, 10,               // fmt 0, csid 64 + 10 = 74
            0, 0, 1, 0, 0, 1, 9, 0, 0, 0, 0, // ts 1, length 1, type 9, stream 0
            b'x',
            0x01, 0x50, 0x01,       // fmt 0, csid 64 + 0x0150 = 400
            0, 0, 2, 0, 0, 1, 9, 0, 0, 0, 0, // ts 2, length 1, type 9, stream 0
            b'y',
            0x01, 0xFF, 0xFF,       // fmt 0, csid 64 + 65535 = 65599 (the largest)
            0, 0, 3, 0, 0, 1, 9, 0, 0, 0, 0,
            b'z',
        ];
        assert_eq!(
            decode_all(&bytes),
            vec![
                message(74, 1, 9, 0, b"x"),
                message(400, 2, 9, 0, b"y"),
                message(65_599, 3, 9, 0, b"z"),
            ]
        );
    }

    #[test]
    fn extended_timestamps_on_type3_chunks() {
        let payload = [0x55u8; 200];
        let mut bytes = vec![
            0x06, // fmt 0, csid 6
            0xFF, 0xFF, 0xFF, // timestamp field: extended follows
            0x00, 0x00, 200,  // length 200
            0x09, // video
            0x01, 0x00, 0x00, 0x00, // stream 1
            0x01, 0x00, 0x00, 0x00, // extended timestamp 0x01000000
        ];
        bytes.extend_from_slice(&payload[..128]);
        bytes.extend_from_slice(&[0xC6, 0x01, 0x00, 0x00, 0x00]); // continuation repeats ext
        bytes.extend_from_slice(&payload[128..]);
        // A type-3 chunk starting a new message: carries the extended field and adds it again.
        bytes.extend_from_slice(&[0xC6, 0x01, 0x00, 0x00, 0x00]);
        bytes.extend_from_slice(&payload[..128]);
        bytes.extend_from_slice(&[0xC6, 0x01, 0x00, 0x00, 0x00]);
        bytes.extend_from_slice(&payload[128..]);
        // A type-1 header with a small delta: no extended field on its continuation.
        bytes.extend_from_slice(&[0x46, 0, 0, 40, 0, 0, 129, 0x09]);
        bytes.extend_from_slice(&payload[..128]);
        bytes.extend_from_slice(&[0xC6]);
        bytes.push(0x77);
        let messages = decode_all(&bytes);
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].timestamp, 0x0100_0000);
        assert_eq!(messages[0].payload.len(), 200);
        assert_eq!(messages[1].timestamp, 0x0200_0000);
        assert_eq!(messages[2].timestamp, 0x0200_0028);
        assert_eq!(messages[2].payload.len(), 129);
        assert_eq!(messages[2].payload[128], 0x77);
    }

    #[test]
    fn interleaved_chunk_streams() {
        let audio = [0xAAu8; 200];
        let video = [0xBBu8; 150];
        let mut bytes = vec![0x04, 0, 0, 5, 0, 0, 200, 8, 1, 0, 0, 0]; // csid 4 audio, ts 5
        bytes.extend_from_slice(&audio[..128]);
        bytes.extend_from_slice(&[0x06, 0, 0, 6, 0, 0, 150, 9, 1, 0, 0, 0]); // csid 6 video
        bytes.extend_from_slice(&video[..128]);
        bytes.push(0xC4); // audio continues
        bytes.extend_from_slice(&audio[128..]);
        bytes.push(0xC6); // video continues
        bytes.extend_from_slice(&video[128..]);
        assert_eq!(
            decode_all(&bytes),
            vec![message(4, 5, 8, 1, &audio), message(6, 6, 9, 1, &video)]
        );
    }

    #[test]
    fn set_chunk_size_from_peer_is_applied() {
        let big = [0x11u8; 300];
        let mut bytes = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x01, 0x00]; // size 256
        bytes.extend_from_slice(&[0x03, 0, 0, 0, 0, 0x01, 0x2C, 20, 0, 0, 0, 0]); // 300 bytes
        bytes.extend_from_slice(&big[..256]);
        bytes.push(0xC3);
        bytes.extend_from_slice(&big[256..]);
        let messages = decode_all(&bytes);
        assert_eq!(messages[0].type_id, 1);
        assert_eq!(messages[1].payload.len(), 300);
        let mut decoder = ChunkDecoder::default();
        decoder.decode(&mut BytesMut::from(&bytes[..16])).unwrap();
        assert_eq!(decoder.chunk_size(), 256);
    }

    #[test]
    fn bad_chunk_sizes_are_errors() {
        for size in [0u32, MAX_CHUNK_SIZE + 1, 0x8000_0000] {
            let mut bytes = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
            bytes.extend_from_slice(&size.to_be_bytes());
            let err = ChunkDecoder::default()
                .decode(&mut BytesMut::from(&bytes[..]))
                .unwrap_err();
            assert!(matches!(err, ChunkError::BadChunkSize { .. }), "{size}");
        }
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut decoder = ChunkDecoder::default();
        let mut bytes = vec![0x04, 0, 0, 0, 0, 0x01, 0x2C, 8, 1, 0, 0, 0]; // 300-byte audio
        bytes.extend_from_slice(&[0u8; 128]);
        let mut input = BytesMut::from(&bytes[..]);
        assert!(decoder.decode(&mut input).unwrap().is_none());
        assert!(decoder.has_partial());
        // Abort (type 2) for csid 4 on csid 2.
        input.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 4]);
        let abort = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(abort.type_id, 2);
        assert!(!decoder.has_partial());
        // A new message on csid 4 may now start with any header type.
        input.extend_from_slice(&[0x84, 0, 0, 1]); // fmt 2: delta 1, length 300 from before
        input.extend_from_slice(&[1u8; 128]);
        assert!(decoder.decode(&mut input).unwrap().is_none());
        assert!(decoder.has_partial());
    }

    #[test]
    fn protocol_violations_and_limits_are_errors() {
        let decode = |bytes: &[u8], limits: DecoderLimits| {
            let mut decoder = ChunkDecoder::new(limits);
            let mut input = BytesMut::from(bytes);
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    Err(e) => return Some(e),
                }
            }
        };
        let limits = DecoderLimits::default();
        // Type 1 on a chunk stream never seen.
        assert!(matches!(
            decode(&[0x45, 0, 0, 0, 0, 0, 1, 8], limits),
            Some(ChunkError::NoPreviousHeader { csid: 5, fmt: 1 })
        ));
        // Message longer than the limit.
        let small = DecoderLimits {
            max_message_len: 1000,
            ..limits
        };
        assert!(matches!(
            decode(&[0x04, 0, 0, 0, 0, 0x03, 0xE9, 8, 0, 0, 0, 0], small),
            Some(ChunkError::MessageTooLong { length: 1001, .. })
        ));
        // A type-0 header in the middle of a message on the same chunk stream.
        let mut bytes = vec![0x04, 0, 0, 0, 0, 0, 200, 8, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0u8; 128]);
        bytes.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0]);
        assert!(matches!(
            decode(&bytes, limits),
            Some(ChunkError::InterruptedMessage { csid: 4 })
        ));
        // Too many partial messages at once.
        let mut bytes = Vec::new();
        for csid in 3..6u8 {
            bytes.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 200, 8, 0, 0, 0, 0]);
            bytes.extend_from_slice(&[0u8; 128]);
        }
        let two = DecoderLimits {
            max_partial_messages: 2,
            ..limits
        };
        assert!(matches!(
            decode(&bytes, two),
            Some(ChunkError::TooManyPartialMessages { limit: 2 })
        ));
        let buffered = DecoderLimits {
            max_buffered_bytes: 450,
            ..limits
        };
        assert!(matches!(
            decode(&bytes, buffered),
            Some(ChunkError::TooMuchBuffered {
                bytes: 600,
                limit: 450
            })
        ));
        // Too many chunk streams.
        let mut bytes = Vec::new();
        for csid in 3..10u8 {
            bytes.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0]);
        }
        let few = DecoderLimits {
            max_chunk_streams: 4,
            ..limits
        };
        assert!(matches!(
            decode(&bytes, few),
            Some(ChunkError::TooManyChunkStreams { limit: 4 })
        ));
    }

    #[test]
    fn encoder_output_decodes_to_the_same_messages() {
        let mut encoder = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        // Audio every 23 ms (same size: type 3 after the first delta), video every 40 ms,
        // interleaved, crossing the extended-timestamp boundary.
        let start = 0x00FF_FF00u32;
        for i in 0..20u32 {
            let audio = message(4, start + i * 23, 8, 1, &[i as u8; 300]);
            let video = message(
                6,
                start + i * 40,
                9,
                1,
                &vec![i as u8; 100 + i as usize * 50],
            );
            for m in [audio, video] {
                encoder.write(&m, &mut wire).unwrap();
                sent.push(m);
            }
            if i == 10 {
                encoder.write_set_chunk_size(1000, &mut wire).unwrap();
                sent.push(message(2, 0, 1, 0, &1000u32.to_be_bytes()));
            }
        }
        assert_eq!(decode_all(&wire), sent);
    }
}
