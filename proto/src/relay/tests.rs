use super::*;

fn samples() -> Vec<Message> {
    vec![
        Message::Auth { mac: [7; MAC_LEN] },
        Message::Subscribe {
            app: "live".into(),
            stream: "demo".into(),
        },
        Message::NotFound,
        Message::Info {
            rendition: 2,
            id: RenditionId::Height(480),
            generation: 300,
            video: Some(Bytes::from_static(b"\x17\x00seq")),
            audio: None,
            metadata: Some(Bytes::new()),
        },
        Message::Stop {
            rendition: 1,
            segment_end: None,
        },
        Message::Stop {
            rendition: 0,
            segment_end: Some(1 << 40),
        },
        Message::GopHeader {
            subscription: 4,
            rendition: 0,
            generation: 1,
            sequence: 7,
        },
        Message::Frame {
            kind: Kind::Video,
            dts: 1 << 40,
            keyframe: true,
            origin_us: 1_795_000_000_000_000,
            segment: None,
            part: true,
            body: Bytes::from(vec![9; 1000]),
        },
        Message::Frame {
            kind: Kind::Video,
            dts: 2000,
            keyframe: true,
            origin_us: 1,
            segment: Some(SegmentStart {
                sequence: 1_796_320_735,
                discontinuity_sequence: 3,
                discontinuity: true,
                program_date_time: 1_796_320_735_123,
                timestamp_offset: -4_000,
                target_duration: 2,
                part_target_ms: 333,
                muxer: TsMuxer::new(crate::ts::Tracks::VideoAndAudio),
            }),
            part: true,
            body: Bytes::from_static(b"idr"),
        },
        Message::Frame {
            kind: Kind::Audio,
            dts: 0,
            keyframe: false,
            origin_us: 0,
            segment: None,
            part: false,
            body: Bytes::new(),
        },
        Message::Segment {
            sequence: 1_796_320_730,
            discontinuity_sequence: 2,
            discontinuity: true,
            program_date_time: Some(1_796_320_730_000),
            duration_ms: 2_002,
            target_duration: 2,
            data: Bytes::from(vec![0x47; 188 * 3]),
        },
        Message::Segment {
            sequence: 0,
            discontinuity_sequence: 0,
            discontinuity: false,
            program_date_time: None,
            duration_ms: 0,
            target_duration: 0,
            data: Bytes::new(),
        },
    ]
}

#[test]
fn round_trips_split_at_every_byte() {
    let mut all = BytesMut::new();
    for m in samples() {
        m.encode(&mut all);
    }
    let wire = all.freeze();
    for split in 0..wire.len() {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in [&wire[..split], &wire[split..]] {
            buf.extend_from_slice(chunk);
            while let Some(m) = Message::decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, samples(), "split at {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn fixture() {
    let mut b = BytesMut::new();
    Message::Subscribe {
        app: "live".into(),
        stream: "a".into(),
    }
    .encode(&mut b);
    assert_eq!(
        &b[..],
        &[
            2, // type: Subscribe
            7, // payload length
            4, b'l', b'i', b'v', b'e', // app
            1, b'a', // stream
        ]
    );
}

#[test]
fn hostile_input() {
    let decode = |bytes: &[u8]| Message::decode(&mut BytesMut::from(bytes));
    assert_eq!(decode(&[99, 0]), Err(RelayError::UnknownType(99)));
    assert_eq!(
        // Frame: flags say "discontinuity" without a segment start.
        decode(&[7, 4, 0b1000, 0, 0, 0]),
        Err(RelayError::BadField("frame flags"))
    );
    assert_eq!(
        // Frame with a segment start whose muxer state names no tracks.
        decode(&[7, 10, 0b1_0100, 0, 0, 1, 0, 0, 0, 2, 0, 0]),
        Err(RelayError::BadField("muxer state"))
    );
    assert_eq!(
        // Segment: an unknown flag bit.
        decode(&[8, 6, 0b100, 0, 0, 0, 0, 0]),
        Err(RelayError::BadField("segment flags"))
    );
    assert_eq!(
        decode(&[5, 2, 0, 2]),
        Err(RelayError::BadField("option flag"))
    );
    for v in [0, 1, -1, i64::MAX, i64::MIN, -4_000] {
        assert_eq!(unzigzag(zigzag(v)), v);
    }
    assert_eq!(
        // Info: rendition 0, height 2^32 (does not fit a u32).
        decode(&[4, 9, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0, 0]),
        Err(RelayError::BadField("rendition height"))
    );
    assert_eq!(
        decode(&[7, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        Err(RelayError::TooLarge(0x7_FFFF_FFFF))
    );
    assert_eq!(
        decode(&[2, 2, 0xAC, 0x02]),
        Err(RelayError::TooLarge(300)),
        "name over MAX_NAME"
    );
    assert_eq!(
        decode(&[5, 1, 200]),
        Err(RelayError::BadField("rendition index"))
    );
    assert_eq!(decode(&[3, 1, 0]), Err(RelayError::Trailing(1)));
    assert_eq!(decode(&[1, 3, 1, 2, 3]), Err(RelayError::Truncated));
    assert_eq!(decode(&[2, 4, 2, 0xFF, 0xFE, 0]), Err(RelayError::BadName));
    assert_eq!(decode(&[7, 0x80]), Ok(None), "incomplete length");
    assert!(
        decode(&[
            7, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0
        ])
        .is_err()
    );
}
