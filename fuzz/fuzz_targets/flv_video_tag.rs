//! Fuzzes FLV video tag parsing: any body parses or errors without panicking, and whatever
//! parses encodes back to a body that parses to the same tag. AVC frames are also walked as
//! length-prefixed NAL units.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::avc::{LengthPrefixedNals, NalLengthSize};
use streamfleet_proto::flv::{AvcPacket, VideoBody, VideoTag};

fuzz_target!(|data: &[u8]| {
    let Ok(tag) = VideoTag::parse(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut encoded = Vec::new();
    tag.encode(&mut encoded).expect("a parsed tag encodes");
    let again = VideoTag::parse(&Bytes::from(encoded)).expect("an encoded tag parses");
    assert_eq!(again, tag);
    if let VideoBody::Avc(AvcPacket::Nalu { data, .. }) = &tag.body {
        for size in [NalLengthSize::One, NalLengthSize::Two, NalLengthSize::Four] {
            let total: usize = LengthPrefixedNals::new(data, size)
                .map_while(Result::ok)
                .map(|nal| nal.len() + size.bytes())
                .sum();
            assert!(total <= data.len());
        }
    }
});
