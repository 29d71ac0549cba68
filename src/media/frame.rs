//! What flows through a hub: frames as FLV tag bodies (RTMP play sends them untouched, the HLS
//! packager and the relay read them), and the stream description players need first.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use streamfleet_proto::aac::AudioSpecificConfig;
use streamfleet_proto::avc::DecoderConfig;
use streamfleet_proto::flv::{AacPacket, AudioBody, AudioTag, AvcPacket, VideoBody, VideoTag};
use streamfleet_proto::hls::SegmentStart;
use streamfleet_proto::rtmp::chunk::ChunkedBody;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// AAC.
    Audio,
    /// H.264.
    Video,
}

/// One coded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Track.
    pub kind: TrackKind,
    /// Decode timestamp in milliseconds on the stream's timeline (RTMP's 32-bit clock,
    /// extended so it never wraps).
    pub dts: u64,
    /// A video frame that starts a GOP (IDR). Always false for audio.
    pub keyframe: bool,
    /// The FLV tag body: AVC NALU packet (with composition time) or AAC raw packet.
    pub body: Bytes,
    /// Wall clock (unix µs) when the frame entered its first hub (the origin's); relays carry
    /// it so edges can measure the added latency. 0 until a hub stamps it.
    pub published_us: u64,
    /// The HLS segment this frame starts, decided by the origin's packager when the frame
    /// entered its first hub, and carried with it to every node that packages the stream.
    pub segment: Option<Arc<SegmentStart>>,
    /// The frame starts an LL-HLS part (decided and carried like `segment`; every segment
    /// start starts a part).
    pub part: bool,
    /// `body` cut into RTMP chunks by the first player that sends this frame; every clone of
    /// the frame (each player's copy of a hub event) shares it, so a frame is chunked once per
    /// hub instead of once per player.
    pub rtmp_chunks: RtmpChunks,
}

impl Frame {
    /// A frame as a publisher sends it: not yet stamped by a hub, starting no segment yet.
    pub fn new(kind: TrackKind, dts: u64, keyframe: bool, body: Bytes) -> Self {
        Frame {
            kind,
            dts,
            keyframe,
            body,
            published_us: 0,
            segment: None,
            part: false,
            rtmp_chunks: RtmpChunks::default(),
        }
    }
}

/// A frame's body in RTMP chunks, computed once and shared by the frame's clones.
///
/// A cache, not part of the frame's value: two frames compare equal whatever it holds.
#[derive(Debug, Clone, Default)]
pub struct RtmpChunks(Arc<OnceLock<Option<ChunkedBody>>>);

impl RtmpChunks {
    /// The chunked body, made by `make` on first use (`None` when it could not be made: players
    /// then encode the frame themselves).
    pub fn get_or_init(&self, make: impl FnOnce() -> Option<ChunkedBody>) -> Option<&ChunkedBody> {
        self.0.get_or_init(make).as_ref()
    }
}

impl PartialEq for RtmpChunks {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for RtmpChunks {}

/// The video track of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoTrack {
    /// FLV tag body of the AVC sequence header (sent to players before any frame).
    pub sequence_header: Bytes,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// RFC 6381 codec string, `avc1.64001f`.
    pub codec: String,
    /// Frames per second when the SPS says it, else measured later.
    pub frame_rate: Option<f64>,
}

/// The audio track of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioTrack {
    /// FLV tag body of the AAC sequence header.
    pub sequence_header: Bytes,
    /// RFC 6381 codec string, `mp4a.40.2`.
    pub codec: String,
    /// Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u8,
}

/// Everything a new subscriber needs before frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamInfo {
    /// Video track, once its sequence header arrived.
    pub video: Option<VideoTrack>,
    /// Audio track, once its sequence header arrived.
    pub audio: Option<AudioTrack>,
    /// `onMetaData` AMF0 payload for RTMP players (without `@setDataFrame`).
    pub metadata: Option<Bytes>,
}

/// The video track described by an FLV AVC sequence-header tag body.
pub fn video_track(tag_body: &Bytes) -> Option<VideoTrack> {
    let Ok(VideoTag {
        body: VideoBody::Avc(AvcPacket::SequenceHeader(record)),
        ..
    }) = VideoTag::parse(tag_body)
    else {
        return None;
    };
    let config = DecoderConfig::parse(&record).ok()?;
    let sps = config.first_sps()?.ok()?;
    Some(VideoTrack {
        sequence_header: tag_body.clone(),
        width: sps.width,
        height: sps.height,
        codec: config.codec_string(),
        frame_rate: sps
            .frame_rate
            .map(|f| f.as_f64())
            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 240.0),
    })
}

/// The audio track described by an FLV AAC sequence-header tag body.
pub fn audio_track(tag_body: &Bytes) -> Option<AudioTrack> {
    let Ok(AudioTag {
        body: AudioBody::Aac(AacPacket::SequenceHeader(asc)),
        ..
    }) = AudioTag::parse(tag_body)
    else {
        return None;
    };
    let config = AudioSpecificConfig::parse(&asc).ok()?;
    Some(AudioTrack {
        sequence_header: tag_body.clone(),
        codec: config.codec_string(),
        sample_rate: config.sampling_frequency,
        channels: config.channel_configuration,
    })
}

/// A forward step of the publisher's clock larger than this between two frames is a jump, not
/// time passing (RTMP publishers send frames at least every few hundred ms).
pub const MAX_TIMESTAMP_STEP_MS: u64 = 10_000;
/// A backward step larger than this is a jump too (audio and video interleave a little out of
/// order; a clock reset goes much further back).
pub const MAX_TIMESTAMP_BACKSTEP_MS: u64 = 1_000;

/// Extends RTMP's 32-bit millisecond timestamps into a timeline that never wraps and never
/// jumps: a publisher whose clock wraps keeps going, and one whose clock jumps (forward more
/// than [`MAX_TIMESTAMP_STEP_MS`], or back more than [`MAX_TIMESTAMP_BACKSTEP_MS`]) is re-based
/// so its next frame follows the previous one. The timeline grows by at most
/// [`MAX_TIMESTAMP_STEP_MS`] per frame, so no hostile sequence of timestamps can push it (and the
/// 90 kHz clocks of HLS computed from it) anywhere near overflowing.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimestampExtender {
    /// The last input, extended across wraps.
    last_in: Option<u64>,
    /// The last output.
    last_out: u64,
}

impl TimestampExtender {
    /// The timeline value of a 32-bit timestamp.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let ts = u64::from(ts);
        let Some(last) = self.last_in else {
            self.last_in = Some(ts);
            self.last_out = ts;
            return ts;
        };
        let base = last & !0xFFFF_FFFF;
        let mut candidate = base | ts;
        // Pick the candidate closest to the previous value: a jump back of more than half the
        // range means the 32-bit clock wrapped forward, and the reverse.
        if candidate.saturating_add(1 << 31) < last {
            candidate = candidate.saturating_add(1 << 32);
        } else if candidate > last.saturating_add(1 << 31) && candidate >= (1 << 32) {
            candidate -= 1 << 32;
        }
        self.last_in = Some(candidate);
        let out = if candidate >= last {
            let step = candidate - last;
            if step > MAX_TIMESTAMP_STEP_MS {
                self.last_out.saturating_add(1)
            } else {
                self.last_out.saturating_add(step)
            }
        } else {
            let back = last - candidate;
            if back > MAX_TIMESTAMP_BACKSTEP_MS {
                self.last_out.saturating_add(1)
            } else {
                self.last_out.saturating_sub(back)
            }
        };
        self.last_out = out;
        out
    }
}

/// Milliseconds as a [`Duration`].
pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_extend_across_the_32_bit_wrap() {
        let mut e = TimestampExtender::default();
        assert_eq!(e.extend(0xFFFF_FE00), 0xFFFF_FE00);
        assert_eq!(e.extend(0xFFFF_FF00), 0xFFFF_FF00);
        assert_eq!(e.extend(0x10), (1 << 32) + 0x10, "wrapped forward");
        assert_eq!(
            e.extend(0xFFFF_FFF0),
            0xFFFF_FFF0,
            "a late frame from before the wrap"
        );
        assert_eq!(e.extend(0x20), (1 << 32) + 0x20);
        // Small jitter backwards stays on the same cycle.
        assert_eq!(e.extend(0x18), (1 << 32) + 0x18);
    }

    #[test]
    fn a_jumping_clock_is_rebased_and_cannot_run_away() {
        let mut e = TimestampExtender::default();
        assert_eq!(e.extend(5_000), 5_000);
        assert_eq!(e.extend(5_040), 5_040);
        // Forward jump of an hour: the next frame follows the previous one.
        assert_eq!(e.extend(3_605_040), 5_041);
        assert_eq!(
            e.extend(3_605_080),
            5_081,
            "and time passes normally after it"
        );
        // A reset to zero: the same.
        assert_eq!(e.extend(0), 5_082);
        assert_eq!(e.extend(40), 5_122);
        // A hostile publisher alternating half-range jumps: the timeline grows by at most one
        // step per frame, not 49 days per two frames.
        let mut e = TimestampExtender::default();
        let mut out = 0;
        for i in 0..1_000_000u32 {
            out = e.extend(if i % 2 == 0 { 0 } else { 0x8000_0001 });
        }
        assert!(out <= 1_000_000 * MAX_TIMESTAMP_STEP_MS, "{out}");
        assert!(out < 2_000_000, "jumps are re-based to 1 ms steps: {out}");
    }
}
