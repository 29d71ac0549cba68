//! Fuzzes SPS parsing: arbitrary bytes (behind an SPS NAL header) parse or error without
//! panicking, and a parsed SPS has a picture size within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamfleet_proto::avc::{Sps, MAX_DIMENSION};

fuzz_target!(|data: &[u8]| {
    let mut nal = vec![0x67];
    nal.extend_from_slice(data);
    for input in [data, &nal[..]] {
        if let Ok(sps) = Sps::parse(input) {
            assert!((1..=MAX_DIMENSION).contains(&sps.width));
            assert!((1..=MAX_DIMENSION).contains(&sps.height));
            if let Some(rate) = sps.frame_rate {
                assert!(rate.num > 0 && rate.den > 0);
            }
            assert_eq!(sps.codec_string().len(), "avc1.".len() + 6);
        }
    }
});
