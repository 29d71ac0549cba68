//! Fuzzes the transcoder's decode path with hostile access units: the input is cut into packets
//! (a length byte, a flags byte, then the payload), each fed to `H264Decoder` as a publisher's
//! FLV frame of a small x264 stream would be. Nothing may panic; decoded pictures keep the
//! stream's size; the decode timestamps handed to renditions never go back and never pass the
//! picture's presentation time. Frames can also be real frames of a small x264 stream with
//! fuzz bytes written over them.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamfleet::media::transcode::decode::{DtsQueue, H264Decoder, Packet};
use streamfleet::media::transcode::x264::{Encoder, EncoderSettings, Image};
use streamfleet_proto::avc::DecoderConfig;

/// A real 64x48 stream (from x264): its parameter sets and first frames.
fn stream() -> &'static (DecoderConfig, Vec<Bytes>) {
    static STREAM: OnceLock<(DecoderConfig, Vec<Bytes>)> = OnceLock::new();
    // Fixed, valid settings and input: x264 failing here is a broken build, not a finding.
    STREAM.get_or_init(|| {
        let mut enc = Encoder::open(&EncoderSettings {
            width: 64,
            height: 48,
            bitrate: 200_000,
            preset: "veryfast".into(),
            tune: None,
            profile: "high",
            fps: (30, 1),
            threads: 1,
        })
        .expect("x264");
        let config =
            DecoderConfig::from_parameter_sets(enc.sps().clone(), enc.pps().clone()).expect("config");
        let mut frames = Vec::new();
        let (u, v) = (vec![128u8; 32 * 24], vec![128u8; 32 * 24]);
        for i in 0..4u8 {
            let y: Vec<u8> = (0..64 * 48).map(|p| (p as u8).wrapping_mul(i + 1)).collect();
            let image = Image {
                width: 64,
                height: 48,
                planes: [&y, &u, &v],
                strides: [64, 32, 32],
            };
            if let Some(e) = enc.encode(Some((image, i64::from(i) * 33, i == 0))).expect("encode") {
                frames.push(e.data);
            }
        }
        while let Ok(Some(e)) = enc.encode(None) {
            frames.push(e.data);
        }
        (config, frames)
    })
}

fuzz_target!(|data: &[u8]| {
    let (config, seed) = stream();
    let Ok(mut decoder) = H264Decoder::new(config.clone()) else {
        return;
    };
    let mut times = DtsQueue::default();
    let mut out = Vec::new();
    let mut rest = data;
    let mut dts = 0u64;
    let mut last = 0u64;
    while let [len, flags, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        dts += 33;
        let cts = i64::from(flags >> 2) * 33;
        // Bit 1: a real frame of the seed stream with the payload written over it from an
        // offset (reaches deep into slice decoding); otherwise the payload as it is.
        let data = if flags & 2 == 2 && !seed.is_empty() {
            let mut frame = seed[len % seed.len()].to_vec();
            let at = (len * 7) % frame.len().max(1);
            for (b, p) in frame.iter_mut().skip(at).zip(payload) {
                *b = *p;
            }
            Bytes::from(frame)
        } else {
            Bytes::copy_from_slice(payload)
        };
        let packet = Packet {
            dts,
            pts: dts as i64 + cts,
            keyframe: flags & 1 == 1,
            data,
        };
        times.sent(packet.dts, packet.pts, packet.keyframe);
        let _ = decoder.decode(&packet, &mut out);
        for frame in out.drain(..) {
            assert!(frame.width() <= 64 && frame.height() <= 48);
            let pts = frame.pts().unwrap_or(0);
            let (d, _) = times.decoded(pts);
            assert!(d >= last, "decode timestamps never go back");
            assert!(d <= u64::try_from(pts).unwrap_or(0).max(last), "nor pass the picture");
            last = d;
        }
    }
    let _ = decoder.drain(&mut out);
});
