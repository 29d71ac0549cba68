//! Arbitrary bytes into the chunk decoder, fed in pieces. Every decoded message is typed, and
//! the non-control ones must survive a round trip through the encoder and a fresh decoder.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits};
use streamfleet_proto::rtmp::message::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let limits = DecoderLimits {
        max_message_len: 64 * 1024,
        max_buffered_bytes: 256 * 1024,
        ..DecoderLimits::default()
    };
    let mut decoder = ChunkDecoder::new(limits);
    let mut input = BytesMut::new();
    let mut messages = Vec::new();
    'feed: for piece in data.chunks(step) {
        input.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(message)) => {
                    let _ = Message::from_raw(&message);
                    if message.type_id > 2 {
                        messages.push(message);
                    }
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    let mut encoder = ChunkEncoder::new();
    let mut wire = BytesMut::new();
    encoder.write_set_chunk_size(u32::from(step as u8).max(1) * 7, &mut wire).unwrap();
    for message in &messages {
        encoder.write(message, &mut wire).unwrap();
    }
    let mut again = ChunkDecoder::new(limits);
    let mut decoded = Vec::new();
    while let Some(message) = again.decode(&mut wire).unwrap() {
        if message.type_id > 2 {
            decoded.push(message);
        }
    }
    assert!(wire.is_empty());
    assert_eq!(decoded, messages);
});
