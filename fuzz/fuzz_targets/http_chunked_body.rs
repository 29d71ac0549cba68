//! Fuzzes the chunked body reader. The first byte picks a piece size; the rest is the body.
//! Properties: no panic; feeding in pieces gives the same consumed length, completion, payload
//! and error as feeding everything at once; consumption never exceeds the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamfleet_proto::http::{BodyFraming, BodyReader};

fuzz_target!(|data: &[u8]| {
    let Some((&stride, input)) = data.split_first() else { return };
    let stride = usize::from(stride).max(1);

    let mut reader = BodyReader::new(BodyFraming::Chunked);
    let mut whole_payload = Vec::new();
    let whole = reader.feed_decoded(input, |r| whole_payload.extend_from_slice(&input[r]));

    let mut reader = BodyReader::new(BodyFraming::Chunked);
    let mut payload = Vec::new();
    let mut pos = 0;
    let mut complete = false;
    let mut error = None;
    while pos < input.len() {
        let piece = &input[pos..(pos + stride).min(input.len())];
        match reader.feed_decoded(piece, |r| payload.extend_from_slice(&piece[r])) {
            Ok(progress) => {
                assert!(progress.consumed <= piece.len());
                pos += progress.consumed;
                if progress.complete {
                    complete = true;
                    break;
                }
                assert_eq!(progress.consumed, piece.len(), "incomplete bodies take everything");
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }

    match whole {
        Ok(progress) => {
            assert!(error.is_none(), "{error:?}");
            assert_eq!(progress.complete, complete);
            assert_eq!(progress.consumed, pos);
            assert_eq!(whole_payload, payload);
            assert!(whole_payload.len() < progress.consumed.max(1));
            if progress.complete {
                assert!(input[..progress.consumed].ends_with(b"\r\n"));
            }
        }
        Err(e) => assert_eq!(error, Some(e)),
    }
});
