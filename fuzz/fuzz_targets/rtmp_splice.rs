//! Differential check of the load balancer's splice filter: arbitrary server bytes after a
//! fixed splice point must decode, on a client set up by someone else and fed through the
//! splice, to the same messages a decoder that followed the server from the start sees.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, RawMessage};
use streamfleet_proto::rtmp::splice::DownstreamState;

fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, len: usize) -> RawMessage {
    RawMessage {
        csid,
        timestamp,
        type_id,
        stream_id,
        payload: Bytes::from(vec![csid as u8; len]),
    }
}

/// Decodes until incomplete or an error; returns the messages and whether it failed.
fn decode(decoder: &mut ChunkDecoder, input: &mut BytesMut) -> (Vec<RawMessage>, bool) {
    let mut messages = Vec::new();
    loop {
        match decoder.decode(input) {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return (messages, false),
            Err(_) => return (messages, true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = DecoderLimits {
        max_message_len: 64 * 1024,
        max_buffered_bytes: 256 * 1024,
        max_chunk_streams: 16,
        ..DecoderLimits::default()
    };
    // The client, as the load balancer left it.
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
    // The server up to the splice point.
    let mut server = ChunkEncoder::new();
    let mut pre = BytesMut::new();
    server.write_set_chunk_size(64, &mut pre).unwrap();
    server.write(&msg(3, 0, 20, 0, 30), &mut pre).unwrap();
    server.write(&msg(3, 0, 20, 0, 45), &mut pre).unwrap();
    server.write(&msg(4, 0x00FF_FFF0, 8, 1, 100), &mut pre).unwrap();
    server.write(&msg(4, 0x00FF_FFFA, 8, 1, 100), &mut pre).unwrap();
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
    // The splice announces the server's chunk size (64) first.
    let received = &received[1..];
    let common = expected.len().min(received.len());
    assert_eq!(&received[..common], &expected[..common]);
    if !reference_failed {
        assert!(!splice_failed && !client_failed);
        assert_eq!(received.len(), expected.len());
    }
});
