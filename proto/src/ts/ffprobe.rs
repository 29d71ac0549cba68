//! A cross-check of the whole packaging path against the real ffmpeg tools, for tests only.
//!
//! ffmpeg encodes a short H.264 + AAC clip; the test splits it into access units and raw AAC
//! frames as an RTMP publisher would send them (length-prefixed NAL units without SPS/PPS,
//! frames without ADTS headers), packages them with `avc::write_annexb`, `aac::AdtsHeader` and
//! [`TsMuxer`], and pipes the segment into `ffprobe`, which must read both streams without a
//! complaint. The byte-level tests elsewhere are the real guard: this test returns early, passing,
//! when ffmpeg is not installed.

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;

use super::{Tracks, TsMuxer};
use crate::aac::{AdtsHeader, AudioSpecificConfig};
use crate::avc::{AnnexBNals, DecoderConfig, NalUnitType, write_annexb, write_length_prefixed};

/// Runs ffmpeg with `args` and returns its stdout, or `None` if ffmpeg cannot be run.
fn ffmpeg(args: &str) -> Option<Vec<u8>> {
    let output = Command::new("ffmpeg")
        .args(["-loglevel", "error"])
        .args(args.split_whitespace())
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(output.stdout)
}

/// Splits an Annex B stream into (keyframe, access unit without SPS/PPS) pairs, and returns
/// the SPS and PPS seen; x264 writes one slice per frame, so each slice ends an access unit.
fn access_units(stream: &[u8]) -> (Bytes, Bytes, Vec<(bool, Vec<u8>)>) {
    let (mut sps, mut pps) = (Bytes::new(), Bytes::new());
    let mut units = Vec::new();
    let mut current = Vec::new();
    for nal in AnnexBNals::new(stream) {
        match NalUnitType::of(nal) {
            Some(NalUnitType::Sps) => sps = Bytes::copy_from_slice(nal),
            Some(NalUnitType::Pps) => pps = Bytes::copy_from_slice(nal),
            Some(t) => {
                current.extend_from_slice(&[0, 0, 0, 1]);
                current.extend_from_slice(nal);
                if t.is_vcl() {
                    let mut prefixed = Vec::new();
                    write_length_prefixed(&current, &mut prefixed).unwrap();
                    units.push((t == NalUnitType::IdrSlice, prefixed));
                    current.clear();
                }
            }
            None => {}
        }
    }
    (sps, pps, units)
}

/// Splits an ADTS stream into its ASC fields and raw frames.
fn aac_frames(stream: &[u8]) -> (AudioSpecificConfig, Vec<Vec<u8>>) {
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut asc = None;
    while rest.len() >= 7 {
        let h = &rest[..7];
        assert_eq!(h[1] & 0x01, 1, "ffmpeg writes ADTS without CRC");
        let len =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        // AudioSpecificConfig: object type (profile + 1), frequency index, channels.
        let (object_type, index, channels) = (
            (h[2] >> 6) + 1,
            (h[2] >> 2) & 0x0F,
            ((h[2] & 1) << 2) | (h[3] >> 6),
        );
        let bytes = [
            (object_type << 3) | (index >> 1),
            ((index & 1) << 7) | (channels << 3),
        ];
        asc.get_or_insert_with(|| AudioSpecificConfig::parse(&bytes).unwrap());
        frames.push(rest[7..len].to_vec());
        rest = &rest[len..];
    }
    (asc.unwrap(), frames)
}

/// Ask ffprobe for each stream's codec, size or audio format, and packet count.
const PROBE_ARGS: &str = "-v error -count_packets -of compact -show_entries \
    stream=codec_name,width,height,sample_rate,channels,nb_read_packets pipe:0";

#[test]
fn ffprobe_reads_packaged_h264_and_aac() {
    let Some(video) = ffmpeg(
        "-f lavfi -i testsrc=size=320x240:rate=30 -frames:v 30 -pix_fmt yuv420p -c:v libx264 -bf 0 -g 15 -f h264 pipe:1",
    ) else {
        eprintln!("ffmpeg not installed: skipping the ffprobe cross-check");
        return;
    };
    let audio = ffmpeg(
        "-f lavfi -i sine=frequency=440:sample_rate=44100 -t 1 -c:a aac -ac 2 -f adts pipe:1",
    )
    .unwrap();
    let (sps, pps, units) = access_units(&video);
    let config = DecoderConfig::from_parameter_sets(sps, pps).unwrap();
    let (asc, frames) = aac_frames(&audio);
    let adts = AdtsHeader::new(&asc).unwrap();

    let mut muxer = TsMuxer::new(Tracks::VideoAndAudio);
    let mut segment = Vec::new();
    muxer.write_psi(&mut segment);
    let mut audio_frames = frames.chunks(2).enumerate().peekable();
    for (i, (keyframe, unit)) in units.iter().enumerate() {
        let dts = 90_000 + i as u64 * 3_000;
        let mut annexb = Vec::new();
        write_annexb(unit, &config, *keyframe, &mut annexb).unwrap();
        muxer
            .write_video(dts, dts, *keyframe, &annexb, &mut segment)
            .unwrap();
        while let Some((n, pair)) =
            audio_frames.next_if(|(n, _)| (*n as u64) * 2 * 1024 * 90_000 / 44_100 <= dts - 90_000)
        {
            let mut pes = Vec::new();
            for frame in pair {
                adts.write_frame(frame, &mut pes).unwrap();
            }
            let pts = 90_000 + n as u64 * 2 * 1024 * 90_000 / 44_100;
            muxer.write_audio(pts, &pes, &mut segment).unwrap();
        }
    }

    let mut probe = Command::new("ffprobe")
        .args(PROBE_ARGS.split_whitespace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    probe.stdin.take().unwrap().write_all(&segment).unwrap();
    let output = probe.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "ffprobe: {stderr}"
    );
    assert!(
        stdout.contains("codec_name=h264|width=320|height=240"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("nb_read_packets={}", units.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains("codec_name=aac|sample_rate=44100|channels=2"),
        "{stdout}"
    );
}
