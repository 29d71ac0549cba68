//! Fuzzes the LB's reader of a signalling WebSocket's opening frames, fed in two pieces split
//! at the first byte. Properties: no panic; every frame kept for the server is a whole frame
//! taken from the input (the replay never grows past its limit); a stream id, when one is
//! found, is 1 to 256 characters.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::websocket::{MAX_REPLAY, MAX_STREAM_ID, Opening, OpeningReader};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = usize::from(split).min(rest.len());
    let mut reader = OpeningReader::new();
    let mut input = BytesMut::new();
    let mut consumed = 0;
    for piece in [&rest[..cut], &rest[cut..]] {
        input.extend_from_slice(piece);
        loop {
            let before = input.len();
            match reader.feed(&mut input) {
                Ok(Some(Opening::Stream(id))) => {
                    assert!(!id.is_empty() && id.len() <= MAX_STREAM_ID);
                    consumed += before - input.len();
                    let replay = reader.into_replay();
                    assert!(replay.len() <= consumed);
                    assert!(replay.len() <= MAX_REPLAY + 14 + 64 * 1024);
                    return;
                }
                Ok(Some(_)) => consumed += before - input.len(),
                Ok(None) => {
                    consumed += before - input.len();
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
