//! Structure-aware fuzzing of the MPEG-TS muxer: the input drives a sequence of PSI, video,
//! audio and discontinuity calls with arbitrary timestamps and payloads. Every packet written
//! must be 188 bytes with the sync byte, continuity counters must rise by one per packet on each
//! PID, adaptation fields must leave room for payload, and each PID's payload bytes must add up
//! to the PES headers plus the frames that were accepted.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use streamfleet_proto::ts::{Tracks, TsMuxer, AUDIO_PID, PACKET_LEN, TIMESTAMP_MASK, VIDEO_PID};

/// Drives the muxer from `u`; returns the stream and the expected payload bytes per PID.
fn run(u: &mut Unstructured<'_>) -> Result<(Vec<u8>, HashMap<u16, usize>, usize)> {
    let tracks = *u.choose(&[Tracks::Video, Tracks::Audio, Tracks::VideoAndAudio])?;
    let mut muxer = TsMuxer::new(tracks);
    let mut out = Vec::new();
    let mut expected: HashMap<u16, usize> = HashMap::new();
    let mut psi_packets = 0;
    while !u.is_empty() {
        match u.int_in_range(0..=3u8)? {
            0 => {
                muxer.write_psi(&mut out);
                psi_packets += 2;
            }
            1 => {
                let (pts, dts, keyframe) =
                    (u.arbitrary::<u64>()?, u.arbitrary::<u64>()?, u.arbitrary()?);
                let len = u.int_in_range(0..=3_000usize)?;
                let frame = vec![0xA5; len];
                if muxer
                    .write_video(pts, dts, keyframe, &frame, &mut out)
                    .is_ok()
                {
                    let header = if pts & TIMESTAMP_MASK == dts & TIMESTAMP_MASK {
                        14
                    } else {
                        19
                    };
                    *expected.entry(VIDEO_PID).or_default() += header + len;
                }
            }
            2 => {
                let pts = u.arbitrary::<u64>()?;
                let len = u.int_in_range(0..=70_000usize)?;
                let frame = vec![0x5A; len];
                if muxer.write_audio(pts, &frame, &mut out).is_ok() {
                    *expected.entry(AUDIO_PID).or_default() += 14 + len;
                }
            }
            _ => muxer.set_discontinuity(),
        }
    }
    Ok((out, expected, psi_packets))
}

fuzz_target!(|data: &[u8]| {
    let Ok((out, expected, psi_packets)) = run(&mut Unstructured::new(data)) else {
        return;
    };
    assert_eq!(out.len() % PACKET_LEN, 0);
    let mut cc: HashMap<u16, u8> = HashMap::new();
    let mut payload: HashMap<u16, usize> = HashMap::new();
    let mut psi = 0;
    for packet in out.chunks(PACKET_LEN) {
        assert_eq!(packet[0], 0x47, "sync byte");
        let pid = u16::from_be_bytes([packet[1] & 0x1F, packet[2]]);
        let counter = packet[3] & 0x0F;
        if let Some(prev) = cc.insert(pid, counter) {
            assert_eq!(
                counter,
                (prev + 1) & 0x0F,
                "continuity counter on PID {pid:#x}"
            );
        }
        let payload_start = match (packet[3] >> 4) & 0x03 {
            0b01 => 4,
            0b11 => {
                let af_len = usize::from(packet[4]);
                assert!(af_len <= 182, "adaptation field leaves room for payload");
                5 + af_len
            }
            other => panic!("adaptation_field_control {other:#b}"),
        };
        if pid == VIDEO_PID || pid == AUDIO_PID {
            *payload.entry(pid).or_default() += PACKET_LEN - payload_start;
        } else {
            psi += 1;
        }
    }
    assert_eq!(psi, psi_packets);
    for pid in [VIDEO_PID, AUDIO_PID] {
        assert_eq!(
            payload.get(&pid).copied().unwrap_or(0),
            expected.get(&pid).copied().unwrap_or(0)
        );
    }
});
