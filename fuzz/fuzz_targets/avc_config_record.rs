//! Fuzzes AVCDecoderConfigurationRecord parsing and the Annex B conversion that uses it: the
//! first input byte splits the rest into a record and an access unit. A record that parses
//! re-encodes to one that parses the same; conversion never panics and, when it succeeds,
//! yields an Annex B stream that opens with an access unit delimiter.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::avc::{write_annexb, AnnexBNals, DecoderConfig, NalUnitType};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (record, access_unit) = rest.split_at(usize::from(split).min(rest.len()));
    let Ok(config) = DecoderConfig::parse(&Bytes::copy_from_slice(record)) else {
        return;
    };
    let _ = config.first_sps();
    let _ = config.codec_string();
    let mut encoded = Vec::new();
    config
        .encode(&mut encoded)
        .expect("a parsed record encodes");
    let again = DecoderConfig::parse(&Bytes::from(encoded)).expect("an encoded record parses");
    assert_eq!(again, config);

    for keyframe in [false, true] {
        let mut out = Vec::new();
        if write_annexb(access_unit, &config, keyframe, &mut out).is_ok() {
            assert_eq!(out.get(..6), Some(&[0, 0, 0, 1, 0x09, 0xF0][..]));
            let first = AnnexBNals::new(&out).next().and_then(NalUnitType::of);
            assert_eq!(first, Some(NalUnitType::Aud));
        } else {
            assert!(out.is_empty(), "a failed conversion writes nothing");
        }
    }
});
