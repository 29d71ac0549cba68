//! Fuzzes FLV audio tag parsing: any body parses or errors without panicking, and whatever
//! parses encodes back to a body that parses to the same tag.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::flv::AudioTag;

fuzz_target!(|data: &[u8]| {
    let Ok(tag) = AudioTag::parse(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut encoded = Vec::new();
    tag.encode(&mut encoded).expect("a parsed tag encodes");
    assert_eq!(
        encoded.len(),
        data.len().max(
            if matches!(tag.body, streamfleet_proto::flv::AudioBody::Aac(_)) {
                2
            } else {
                1
            }
        )
    );
    let again = AudioTag::parse(&Bytes::from(encoded)).expect("an encoded tag parses");
    assert_eq!(again, tag);
});
