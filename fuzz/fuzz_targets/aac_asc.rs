//! Fuzzes AudioSpecificConfig parsing and ADTS header writing: any config parses or errors
//! without panicking; when ADTS can carry it, the header written for a frame length taken from
//! the input has the sync word and states that length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamfleet_proto::aac::{AdtsHeader, AudioSpecificConfig, ADTS_HEADER_LEN, MAX_ADTS_PAYLOAD};

fuzz_target!(|data: &[u8]| {
    let Ok(asc) = AudioSpecificConfig::parse(data) else {
        return;
    };
    assert!(asc.sampling_frequency > 0);
    let _ = asc.codec_string();
    let Ok(header) = AdtsHeader::new(&asc) else {
        return;
    };
    let payload_len = data.iter().fold(0usize, |acc, &b| {
        (acc * 31 + usize::from(b)) % (MAX_ADTS_PAYLOAD + 2)
    });
    let mut out = Vec::new();
    match header.write(payload_len, &mut out) {
        Ok(()) => {
            assert_eq!(out.len(), ADTS_HEADER_LEN);
            assert_eq!(
                (out[0], out[1] & 0xF6),
                (0xFF, 0xF0),
                "sync word, MPEG-4, layer 0"
            );
            let frame_len = (usize::from(out[3] & 0x03) << 11)
                | (usize::from(out[4]) << 3)
                | usize::from(out[5] >> 5);
            assert_eq!(frame_len, payload_len + ADTS_HEADER_LEN);
            assert_eq!(
                usize::from((out[2] >> 2) & 0x0F),
                usize::from(asc.frequency_index.unwrap())
            );
        }
        Err(_) => assert!(payload_len > MAX_ADTS_PAYLOAD && out.is_empty()),
    }
});
