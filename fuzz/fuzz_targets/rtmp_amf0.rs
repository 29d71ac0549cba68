//! Arbitrary bytes into the AMF0 decoder: never a panic, and whatever decodes re-encodes to
//! bytes that decode and re-encode to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamfleet_proto::rtmp::amf0::{decode_all, encode_all};

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = decode_all(data) {
        let encoded = encode_all(&values);
        let again = decode_all(&encoded).expect("re-encoded AMF0 decodes");
        assert_eq!(encode_all(&again), encoded);
    }
});
