//! Splice filter for the load balancer's RTMP mode.
//!
//! The load balancer answers a client's handshake, `connect` and `createStream` itself (with a
//! [`super::session::ServerSession`] that records the client's post-handshake bytes). On
//! `publish`/`play` it picks a server, does a [`super::handshake::ClientHandshake`] with it and
//! replays the recorded bytes, so the server sees the client's whole conversation. It decodes
//! the server's answers with a [`ChunkDecoder`] until it reaches the point from which the client
//! should see the server directly, then turns that decoder into a [`Splice`] and pushes every
//! further server byte through it to the client. The natural splice point is right after the
//! server's `_result` to createStream (the `_result` whose only argument is the stream id the
//! client got from the load balancer): everything after it (StreamBegin, onStatus, media) is
//! what the client is waiting for. This flow was checked with FFmpeg publishing and playing
//! through a load balancer built this way.
//!
//! Why a filter and not a plain copy: the client's chunk-stream state (previous header per csid,
//! chunk size) came from the load balancer, not from the server, so the server's compressed
//! headers would be expanded wrongly. The splice therefore
//! - announces the server's chunk size to the client first, when it differs from the one the
//!   load balancer set;
//! - rewrites the first message header on each csid where the two views may differ into a full
//!   type-0 header (fields completed from the server's previous header on that csid), and keeps
//!   rewriting type-3 message starts on it (and fixing extended-timestamp fields of
//!   continuation chunks) until the server's own type 0/1/2 header makes the views equal;
//! - follows Set Chunk Size and Abort to find chunk boundaries;
//! - becomes a pure byte copy once every such csid is in sync.
//!
//! Assumptions (checked where possible): no partial message is in flight on the server's chunk
//! stream at the splice point ([`ChunkDecoder::into_splice`] fails otherwise); the load balancer
//! left no partial message in flight towards the client; the stream ids the load balancer handed
//! out match the server's (both count createStream from 1, so the client must not have created
//! more streams than it replays); Acknowledgement byte counts of client and server differ by the
//! bytes the load balancer itself sent and received, which servers do not enforce.

use std::collections::HashMap;

use bytes::{Buf, BufMut, BytesMut};

use super::chunk::{
    ChunkDecoder, ChunkError, ChunkHeader, HeaderState, check_chunk_size, control_u32,
    put_basic_header, put_type0_fields,
};
use super::message::type_id;

/// What the client knows of the chunk stream it receives (as set up by the load balancer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamState {
    /// Chunk size the client currently expects.
    pub chunk_size: u32,
    /// Chunk stream ids on which the client holds header state.
    pub csids: Vec<u32>,
}

/// Errors of the splice filter.
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    /// The server's chunk stream had a partially received message at the splice point.
    #[error("a partial message is in flight at the splice point")]
    PartialMessage,
    /// The server's chunk stream was malformed or exceeded a limit.
    #[error("upstream chunk stream error")]
    Chunk(#[source] ChunkError),
}

impl From<ChunkError> for SpliceError {
    fn from(e: ChunkError) -> Self {
        SpliceError::Chunk(e)
    }
}

/// How the client's view of a csid relates to the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// The client's state on this csid is unrelated to the server's.
    Unknown,
    /// The client got a rewritten type-0 header: same message fields, but its timestamp field
    /// and extended flag may differ from the server's.
    Rewritten,
    /// Both sides expand every header the same way.
    Synced,
}

/// Per chunk stream of the server.
#[derive(Debug, Clone)]
struct SpliceStream {
    /// The server's last header on this csid (what its type 1/2/3 headers refer to).
    header: Option<HeaderState>,
    /// Bytes of the current message still to come (0 = next chunk starts a message).
    remaining: u32,
    /// Relation of the client's view to the server's.
    sync: Sync,
    /// Whether the client expects an extended timestamp on type-3 chunks (valid when
    /// `Rewritten`), and its value.
    client_extended: Option<u32>,
    /// Body of a Set Chunk Size / Abort message being received (at most 4 bytes kept).
    control: Vec<u8>,
}

/// Filters a server's chunk stream so that a client set up by the load balancer can read it.
#[derive(Debug, Clone)]
pub struct Splice {
    /// The server's current chunk size.
    chunk_size: u32,
    /// Largest chunk size the server may set.
    max_chunk_size: u32,
    /// Most chunk streams tracked.
    max_chunk_streams: usize,
    /// State per csid.
    streams: HashMap<u32, SpliceStream>,
    /// Bytes to send the client before anything else (a Set Chunk Size).
    prefix: BytesMut,
    /// Number of streams not `Synced`; 0 = pure copy.
    unsynced: usize,
}

impl ChunkDecoder {
    /// Turns a decoder that has read a server's chunk stream up to the splice point into a
    /// [`Splice`] towards a client whose state is `downstream`.
    ///
    /// Fails if a message is partially received (the splice point must be a message boundary).
    pub fn into_splice(self, downstream: &DownstreamState) -> Result<Splice, SpliceError> {
        if self.has_partial() {
            return Err(SpliceError::PartialMessage);
        }
        let (chunk_size, limits, headers) = self.into_parts();
        Ok(Splice::new(
            chunk_size,
            limits.max_chunk_size,
            limits.max_chunk_streams,
            headers,
            downstream,
        ))
    }
}

impl Splice {
    /// A splice from the server's state (`headers` per csid, `chunk_size`) to `downstream`.
    fn new(
        chunk_size: u32,
        max_chunk_size: u32,
        max_chunk_streams: usize,
        headers: impl Iterator<Item = (u32, HeaderState)>,
        downstream: &DownstreamState,
    ) -> Self {
        let unknown = |header| SpliceStream {
            header,
            remaining: 0,
            sync: Sync::Unknown,
            client_extended: None,
            control: Vec::new(),
        };
        let mut streams: HashMap<u32, SpliceStream> =
            headers.map(|(csid, h)| (csid, unknown(Some(h)))).collect();
        let upstream_streams = streams.len();
        for &csid in &downstream.csids {
            streams.entry(csid).or_insert_with(|| unknown(None));
        }
        let mut prefix = BytesMut::new();
        if downstream.chunk_size != chunk_size {
            // Invariant: csid 2 is valid, so the basic header cannot fail.
            let _ = put_basic_header(&mut prefix, 0, 2);
            put_type0_fields(&mut prefix, 0, 4, type_id::SET_CHUNK_SIZE, 0);
            prefix.put_u32(chunk_size);
            streams.entry(2).or_insert_with(|| unknown(None)).sync = Sync::Unknown;
        }
        let unsynced = streams.len();
        // The decoder's limit counts the server's csids only; ours also holds the client's.
        let max_chunk_streams = max_chunk_streams + (streams.len() - upstream_streams);
        Splice {
            chunk_size,
            max_chunk_size,
            max_chunk_streams,
            streams,
            prefix,
            unsynced,
        }
    }

    /// Whether the filter has become a pure byte copy.
    pub fn is_pure_copy(&self) -> bool {
        self.unsynced == 0 && self.prefix.is_empty()
    }

    /// Moves server bytes from `input` to `out` for the client, rewriting headers as needed.
    ///
    /// Consumes whole chunks while some csid is out of sync (an incomplete chunk stays in
    /// `input`), then everything.
    pub fn forward(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<(), SpliceError> {
        out.extend_from_slice(&self.prefix.split());
        while self.unsynced > 0 {
            if !self.forward_chunk(input, out)? {
                return Ok(());
            }
        }
        out.extend_from_slice(&input.split());
        Ok(())
    }

    /// Forwards one chunk; `false` if `input` holds no complete chunk.
    fn forward_chunk(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, SpliceError> {
        let Some(header) = ChunkHeader::parse(input) else {
            return Ok(false);
        };
        if !self.streams.contains_key(&header.csid) {
            if self.streams.len() >= self.max_chunk_streams {
                return Err(ChunkError::TooManyChunkStreams {
                    limit: self.max_chunk_streams,
                }
                .into());
            }
            // Neither side has state here: both expand the server's headers alike.
            self.streams.insert(
                header.csid,
                SpliceStream {
                    header: None,
                    remaining: 0,
                    sync: Sync::Synced,
                    client_extended: None,
                    control: Vec::new(),
                },
            );
        }
        let chunk_size = self.chunk_size;
        let Some(stream) = self.streams.get_mut(&header.csid) else {
            return Ok(false);
        };
        let prev = stream.header.as_ref();
        let mut pos = header.len;
        let extended = if header.has_extended(prev) {
            let Some(mut bytes) = input.get(pos..pos + 4) else {
                return Ok(false);
            };
            pos += 4;
            Some(bytes.get_u32())
        } else {
            None
        };
        let starting = stream.remaining == 0;
        let state = match (starting, prev) {
            (true, _) => header.start_message(prev, extended)?,
            (false, Some(prev)) if header.fmt == 3 => *prev,
            _ => return Err(ChunkError::InterruptedMessage { csid: header.csid }.into()),
        };
        let remaining = if starting {
            state.length
        } else {
            stream.remaining
        };
        let take = remaining.min(chunk_size);
        let end = pos + take as usize;
        if input.len() < end {
            return Ok(false);
        }
        let before = stream.sync;
        match (stream.sync, starting, header.fmt) {
            (Sync::Synced, _, _) => out.extend_from_slice(&input[..end]),
            (_, true, 0) | (Sync::Rewritten, true, 1 | 2) => {
                out.extend_from_slice(&input[..end]);
                stream.sync = Sync::Synced;
            }
            (_, true, _) => {
                put_basic_header(out, 0, header.csid)?;
                put_type0_fields(
                    out,
                    state.timestamp,
                    state.length,
                    state.type_id,
                    state.stream_id,
                );
                out.extend_from_slice(&input[pos..end]);
                stream.sync = Sync::Rewritten;
                stream.client_extended =
                    (state.timestamp >= 0x00FF_FFFF).then_some(state.timestamp);
            }
            (_, false, _) => {
                out.extend_from_slice(&input[..header.len]);
                if let Some(ts) = stream.client_extended {
                    out.put_u32(ts);
                }
                out.extend_from_slice(&input[pos..end]);
            }
        }
        if before != Sync::Synced && stream.sync == Sync::Synced {
            self.unsynced -= 1;
        }
        // Follow the server's own state and its chunk-size / abort messages.
        if starting {
            stream.control.clear();
        }
        if matches!(state.type_id, type_id::SET_CHUNK_SIZE | type_id::ABORT) {
            let keep = 4usize
                .saturating_sub(stream.control.len())
                .min(take as usize);
            stream.control.extend_from_slice(&input[pos..pos + keep]);
        }
        stream.header = Some(state);
        stream.remaining = remaining - take;
        let control = (stream.remaining == 0).then(|| {
            let body = std::mem::take(&mut stream.control);
            (state.type_id, body, state.length)
        });
        input.advance(end);
        if let Some((message_type, body, length)) = control {
            self.apply_control(message_type, &body, length)?;
        }
        Ok(true)
    }

    /// Applies a completed Set Chunk Size or Abort from the server.
    fn apply_control(
        &mut self,
        message_type: u8,
        body: &[u8],
        length: u32,
    ) -> Result<(), SpliceError> {
        let body = if length == 4 { body } else { &[][..] };
        match message_type {
            type_id::SET_CHUNK_SIZE => {
                let size = control_u32(message_type, body)?;
                self.chunk_size = check_chunk_size(size, self.max_chunk_size)?;
            }
            type_id::ABORT => {
                let csid = control_u32(message_type, body)?;
                if let Some(stream) = self.streams.get_mut(&csid) {
                    stream.remaining = 0;
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
    use crate::rtmp::chunk::{ChunkEncoder, DecoderLimits, RawMessage};
    use bytes::Bytes;

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, len: usize) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: (0..len)
                .map(|i| (i as u8) ^ (csid as u8))
                .collect::<Bytes>(),
        }
    }

    fn decode_all(decoder: &mut ChunkDecoder, input: &mut BytesMut) -> Vec<RawMessage> {
        let mut messages = Vec::new();
        while let Some(m) = decoder.decode(input).unwrap() {
            messages.push(m);
        }
        messages
    }

    /// The client's decoder after the load balancer's own answers (chunk size 4096, csids 2, 3
    /// and 5), and the load balancer's downstream state.
    fn client_set_up_by_lb() -> (ChunkDecoder, DownstreamState) {
        let mut lb = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        lb.write_set_chunk_size(4096, &mut wire).unwrap();
        lb.write(&msg(3, 0, 20, 0, 40), &mut wire).unwrap();
        lb.write(&msg(3, 0, 20, 0, 25), &mut wire).unwrap();
        lb.write(&msg(5, 10, 18, 1, 12), &mut wire).unwrap();
        let mut client = ChunkDecoder::default();
        assert_eq!(decode_all(&mut client, &mut wire).len(), 4);
        let mut csids: Vec<u32> = lb.used_csids().collect();
        csids.sort_unstable();
        (
            client,
            DownstreamState {
                chunk_size: lb.chunk_size(),
                csids,
            },
        )
    }

    #[test]
    fn compressed_server_headers_reach_the_client_intact() {
        let (mut client, downstream) = client_set_up_by_lb();
        // What the server said before the splice point (consumed by the load balancer).
        let mut server = ChunkEncoder::new();
        let mut pre = BytesMut::new();
        server.write_set_chunk_size(200, &mut pre).unwrap();
        server.write(&msg(3, 0, 20, 0, 30), &mut pre).unwrap(); // type 0
        server.write(&msg(3, 0, 20, 0, 45), &mut pre).unwrap(); // type 1
        server
            .write(&msg(6, 0x00FF_FFF0, 9, 1, 300), &mut pre)
            .unwrap(); // type 0, extended
        server
            .write(&msg(6, 0x00FF_FFF8, 9, 1, 300), &mut pre)
            .unwrap(); // type 2, delta 8
        server.write(&msg(4, 5, 8, 1, 50), &mut pre).unwrap(); // type 0
        let mut lb_view = ChunkDecoder::default();
        assert_eq!(decode_all(&mut lb_view, &mut pre).len(), 6);
        let mut reference = lb_view.clone();

        // What the server says after it, with every kind of compressed header.
        let mut post = BytesMut::new();
        let later = [
            msg(6, 0x0100_0000, 9, 1, 300), // type 3 start, abs ts now needs the extended field
            msg(6, 0x0100_0008, 9, 1, 300), // type 3 start again
            msg(3, 0, 20, 0, 60),           // type 1 (length changed)
            msg(4, 28, 8, 1, 50),           // type 2 (delta 23)
            msg(4, 51, 8, 1, 50),           // type 3 start (delta 23 again)
        ];
        for m in &later {
            server.write(m, &mut post).unwrap();
        }
        assert_eq!(post[0] >> 6, 3, "first post-splice header is type 3");
        server.write_set_chunk_size(100, &mut post).unwrap(); // type 2 on csid 2
        for m in [
            msg(6, 0x0100_0010, 9, 1, 250), // type 1, three 100-byte chunks
            msg(4, 74, 8, 1, 120),          // type 1
            msg(3, 5, 20, 0, 10),           // type 2
        ] {
            server.write(&m, &mut post).unwrap();
        }
        let expected = decode_all(&mut reference, &mut post.clone());

        let mut splice = lb_view.into_splice(&downstream).unwrap();
        let mut to_client = BytesMut::new();
        let mut input = BytesMut::new();
        for piece in post.chunks(7) {
            input.extend_from_slice(piece);
            splice.forward(&mut input, &mut to_client).unwrap();
        }
        assert!(input.is_empty());
        let received = decode_all(&mut client, &mut to_client);
        assert!(to_client.is_empty());
        // First the chunk size the server uses (200), announced by the splice.
        assert_eq!(received[0].type_id, type_id::SET_CHUNK_SIZE);
        assert_eq!(&received[0].payload[..], &200u32.to_be_bytes());
        assert_eq!(&received[1..], &expected[..]);
        assert_eq!(client.chunk_size(), 100);
    }

    #[test]
    fn becomes_a_pure_copy_once_every_csid_is_in_sync() {
        let mut lb = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        lb.write(&msg(3, 0, 20, 0, 40), &mut wire).unwrap();
        let mut client = ChunkDecoder::default();
        decode_all(&mut client, &mut wire);
        let downstream = DownstreamState {
            chunk_size: 128,
            csids: vec![3],
        };
        let mut server = ChunkEncoder::new();
        let mut pre = BytesMut::new();
        server.write(&msg(3, 0, 20, 0, 10), &mut pre).unwrap();
        let mut lb_view = ChunkDecoder::default();
        decode_all(&mut lb_view, &mut pre);
        let mut splice = lb_view.into_splice(&downstream).unwrap();
        assert!(!splice.is_pure_copy());
        let mut post = BytesMut::new();
        server.write(&msg(3, 0, 20, 1, 10), &mut post).unwrap(); // type 0: new stream id
        assert_eq!(post[0] >> 6, 0);
        let mut out = BytesMut::new();
        splice.forward(&mut post.clone(), &mut out).unwrap();
        assert_eq!(out, post, "type-0 headers pass unchanged");
        assert!(splice.is_pure_copy());
        let mut garbage = BytesMut::from(&b"\xC3anything"[..]);
        let mut out = BytesMut::new();
        splice.forward(&mut garbage, &mut out).unwrap();
        assert_eq!(&out[..], b"\xC3anything");
    }

    #[test]
    fn partial_message_at_the_splice_point_is_an_error() {
        let mut server = ChunkEncoder::new();
        let mut pre = BytesMut::new();
        server.write(&msg(6, 0, 9, 1, 300), &mut pre).unwrap();
        pre.truncate(150);
        let mut lb_view = ChunkDecoder::default();
        assert!(decode_all(&mut lb_view, &mut pre).is_empty());
        let downstream = DownstreamState {
            chunk_size: 128,
            csids: vec![],
        };
        assert!(matches!(
            lb_view.into_splice(&downstream),
            Err(SpliceError::PartialMessage)
        ));
    }

    /// The fuzz target `rtmp_splice` as a function: server bytes after a fixed splice point
    /// must reach a client set up by the load balancer as the same messages a decoder that
    /// followed the server from the start sees. Returns (reference failed, splice failed,
    /// client failed).
    fn differential(data: &[u8]) -> (bool, bool, bool) {
        let limits = DecoderLimits {
            max_message_len: 64 * 1024,
            max_buffered_bytes: 256 * 1024,
            max_chunk_streams: 16,
            ..DecoderLimits::default()
        };
        let decode = |decoder: &mut ChunkDecoder, input: &mut BytesMut| {
            let mut messages = Vec::new();
            loop {
                match decoder.decode(input) {
                    Ok(Some(m)) => messages.push(m),
                    Ok(None) => return (messages, false),
                    Err(_) => return (messages, true),
                }
            }
        };
        let mut lb = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        lb.write_set_chunk_size(4096, &mut wire).unwrap();
        lb.write(&msg(3, 0, 20, 0, 40), &mut wire).unwrap();
        lb.write(&msg(5, 7, 18, 1, 12), &mut wire).unwrap();
        let mut client = ChunkDecoder::new(DecoderLimits {
            max_chunk_streams: 1024,
            ..limits
        });
        decode(&mut client, &mut wire);
        let downstream = DownstreamState {
            chunk_size: 4096,
            csids: vec![2, 3, 5],
        };
        let mut server = ChunkEncoder::new();
        let mut pre = BytesMut::new();
        server.write_set_chunk_size(64, &mut pre).unwrap();
        server.write(&msg(3, 0, 20, 0, 30), &mut pre).unwrap();
        server.write(&msg(3, 0, 20, 0, 45), &mut pre).unwrap();
        server
            .write(&msg(4, 0x00FF_FFF0, 8, 1, 100), &mut pre)
            .unwrap();
        server
            .write(&msg(4, 0x00FF_FFFA, 8, 1, 100), &mut pre)
            .unwrap();
        server.write(&msg(6, 3, 9, 1, 10), &mut pre).unwrap();
        server.write(&msg(6, 9, 9, 1, 10), &mut pre).unwrap();
        let mut lb_view = ChunkDecoder::new(limits);
        decode(&mut lb_view, &mut pre);
        let mut reference = lb_view.clone();
        let (expected, reference_failed) = decode(&mut reference, &mut BytesMut::from(data));
        let mut splice = lb_view.into_splice(&downstream).unwrap();
        let mut input = BytesMut::new();
        let mut to_client = BytesMut::new();
        let mut splice_failed = splice.forward(&mut input, &mut to_client).is_err();
        for piece in data.chunks(13) {
            input.extend_from_slice(piece);
            if splice.forward(&mut input, &mut to_client).is_err() {
                splice_failed = true;
                break;
            }
        }
        let (received, client_failed) = decode(&mut client, &mut to_client);
        let received = &received[1..];
        let common = expected.len().min(received.len());
        assert_eq!(&received[..common], &expected[..common]);
        if !reference_failed {
            assert_eq!(received.len(), expected.len());
        }
        (reference_failed, splice_failed, client_failed)
    }

    #[test]
    fn fuzz_regressions() {
        #[rustfmt::skip]
        let cases: &[&[u8]] = &[
            &[0xc6, 0xc6, 0xc6, 0xc6, 0xc6, 0xc6, 0xc6, 0xc6, 0xdd, 0x00, 0x00, 0x00, 0x82, 0x00, 0x00, 0x00],
            &[0x00, 0x82, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0xff, 0x38, 0x32, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0x38, 0x32, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x2c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb8, 0xb8, 0xff, 0xff, 0xff, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x38, 0x32, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xb8, 0xff, 0xff, 0x00, 0x01, 0xc6, 0x05, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xb8, 0x00, 0xff],
        ];
        for case in cases {
            let (reference_failed, splice_failed, client_failed) = differential(case);
            assert!(
                reference_failed || !(splice_failed || client_failed),
                "{case:02x?}"
            );
        }
    }
}
