//! H.264 from a hub to RTP, without transcoding: a frame's FLV body (length-prefixed NAL units)
//! becomes one Annex-B access unit with the SPS and PPS before every IDR (str0m packetizes it:
//! STAP-A for the parameter sets, FU-A beyond the MTU, packetization-mode 1), stamped at 90 kHz
//! from the frame's own timeline.
//!
//! A new viewer starts at the latest keyframe of the hub's start cache: those frames are already
//! old, so [`Timeline`] squeezes them 1 ms apart; the browser decodes and shows them at once and
//! then runs at live latency instead of a GOP behind.

use bytes::Bytes;

use streamfleet_proto::avc::{DecoderConfig, write_annexb};
use streamfleet_proto::flv::{AvcPacket, VideoBody, VideoTag};

use crate::media::frame::{Frame, VideoTrack};

/// The `profile-level-id` (RFC 6184 8.1) of a track: profile_idc, constraint flags and
/// level_idc of its SPS, as the decoder configuration record carries them.
pub fn profile_level_id(config: &DecoderConfig) -> u32 {
    u32::from(config.profile_indication) << 16
        | u32::from(config.profile_compatibility) << 8
        | u32::from(config.level_indication)
}

/// The decoder configuration record of a video track.
pub fn decoder_config(track: &VideoTrack) -> Option<DecoderConfig> {
    match VideoTag::parse(&track.sequence_header) {
        Ok(VideoTag {
            body: VideoBody::Avc(AvcPacket::SequenceHeader(record)),
            ..
        }) => DecoderConfig::parse(&record).ok(),
        _ => None,
    }
}

/// One access unit ready for str0m: Annex-B bytes and the presentation time in ms on the
/// stream's timeline.
#[derive(Debug, PartialEq, Eq)]
pub struct AccessUnit {
    /// Start-code separated NAL units (no access unit delimiter).
    pub annexb: Vec<u8>,
    /// PTS (DTS plus composition time), ms.
    pub pts: i64,
}

/// The Annex-B access unit of a video frame's FLV body; `None` for sequence headers, end of
/// sequence and malformed frames.
pub fn access_unit(
    body: &Bytes,
    dts: u64,
    keyframe: bool,
    config: &DecoderConfig,
) -> Option<AccessUnit> {
    let Ok(VideoTag {
        body:
            VideoBody::Avc(AvcPacket::Nalu {
                composition_time,
                data,
            }),
        ..
    }) = VideoTag::parse(body)
    else {
        return None;
    };
    let mut annexb = Vec::with_capacity(data.len() + 64);
    write_annexb(&data, config, keyframe, &mut annexb).ok()?;
    // `write_annexb` opens with an access unit delimiter (MPEG-TS wants one); RTP does not.
    const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
    if annexb.starts_with(&AUD) {
        annexb.drain(..AUD.len());
    }
    if annexb.is_empty() {
        return None;
    }
    let pts = i64::try_from(dts).ok()? + i64::from(composition_time);
    Some(AccessUnit { annexb, pts })
}

/// The presentation time (ms: DTS plus composition time) of a video frame; `None` for
/// sequence headers and what is not an AVC frame.
pub fn pts(f: &Frame) -> Option<i64> {
    match VideoTag::parse(&f.body) {
        Ok(VideoTag {
            body:
                VideoBody::Avc(AvcPacket::Nalu {
                    composition_time, ..
                }),
            ..
        }) => Some(i64::try_from(f.dts).ok()? + i64::from(composition_time)),
        _ => None,
    }
}

/// Whether the source shows frames in another order than it sends them (B-frames): a video
/// frame presented before one sent earlier. Fed with the frames in decode order.
#[derive(Debug, Default)]
pub struct Reordering {
    /// The latest presentation time seen.
    latest: Option<i64>,
    /// A frame came before one sent earlier.
    pub seen: bool,
}

impl Reordering {
    /// Looks at one video frame; true when it is the first found out of order.
    pub fn push(&mut self, f: &Frame) -> bool {
        let Some(pts) = pts(f) else { return false };
        if f.keyframe {
            // Closed GOPs: nothing after a keyframe is shown before it.
            self.latest = None;
        }
        let out_of_order = self.latest.is_some_and(|l| pts < l);
        self.latest = Some(self.latest.map_or(pts, |l| l.max(pts)));
        let first = out_of_order && !self.seen;
        self.seen |= out_of_order;
        first
    }
}

/// Maps a stream's presentation times (ms) to one viewer's RTP clock (90 kHz), continuous across
/// publish sessions, with the catch-up squeeze.
#[derive(Debug, Default)]
pub struct Timeline {
    /// Subtracted from a frame's time: grows while catching up and at each new publish session.
    offset: i64,
    /// The last output time, ms.
    last_out: Option<i64>,
    /// The last input time, ms.
    last_in: Option<i64>,
    /// The next frame starts a new publish session (its clock may restart at 0).
    rebase: bool,
}

impl Timeline {
    /// The next frame belongs to a new publish session.
    pub fn rebase(&mut self) {
        self.rebase = true;
    }

    /// RTP time (90 kHz) of a frame presented at `pts` ms; `backlog`: the frame was already
    /// waiting when the viewer connected (it follows the previous one by 1 ms).
    pub fn rtp_90khz(&mut self, pts: i64, backlog: bool) -> u64 {
        match (self.last_in, self.last_out) {
            (Some(last_in), Some(last_out)) => {
                let step = pts - last_in;
                if self.rebase || step <= 0 || step > 10_000 {
                    // A new clock (or a jump): continue a frame after the last output.
                    self.offset = pts - (last_out + 33);
                } else if backlog && step > 1 {
                    self.offset += step - 1;
                }
            }
            _ => self.offset = pts,
        }
        self.rebase = false;
        let out = pts - self.offset;
        self.last_in = Some(pts);
        self.last_out = Some(out);
        u64::try_from(out).unwrap_or(0) * 90
    }

    /// RTP time (48 kHz) of audio presented at `pts` (48 kHz ticks of the stream's timeline),
    /// with the same origin as the video's: `None` before the first video frame, while a new
    /// publish session waits for its first one, and before the origin.
    pub fn rtp_48khz(&self, pts: i64) -> Option<u64> {
        if self.rebase || self.last_out.is_none() {
            return None;
        }
        u64::try_from(pts - self.offset.saturating_mul(48)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_proto::avc::fixtures::{PPS_X264, SPS_640X360};

    fn config() -> DecoderConfig {
        DecoderConfig::from_parameter_sets(
            Bytes::from_static(SPS_640X360),
            Bytes::from_static(PPS_X264),
        )
        .unwrap()
    }

    /// An FLV AVC NALU tag body: frame type/codec byte, packet type 1, composition time 0,
    /// then one 4-byte length-prefixed NAL unit.
    fn tag(keyframe: bool, nal: &[u8]) -> Bytes {
        let mut b = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        b.extend_from_slice(nal);
        Bytes::from(b)
    }

    #[test]
    fn profile_level_id_comes_from_the_sps() {
        assert_eq!(profile_level_id(&config()), 0x64001e);
    }

    #[test]
    fn idr_gets_parameter_sets_in_annex_b() {
        let idr = [0x65, 0x88, 0x84, 0x00];
        let au = access_unit(&tag(true, &idr), 1000, true, &config()).unwrap();
        let mut want = vec![0, 0, 0, 1];
        want.extend_from_slice(SPS_640X360);
        want.extend_from_slice(&[0, 0, 0, 1]);
        want.extend_from_slice(PPS_X264);
        want.extend_from_slice(&[0, 0, 0, 1]);
        want.extend_from_slice(&idr);
        assert_eq!(
            au,
            AccessUnit {
                annexb: want,
                pts: 1000
            }
        );
    }

    #[test]
    fn non_idr_is_only_converted() {
        let p = [0x41, 0x9a, 0x02];
        let au = access_unit(&tag(false, &p), 1033, false, &config()).unwrap();
        assert_eq!(au.annexb, [0, 0, 0, 1, 0x41, 0x9a, 0x02]);
    }

    #[test]
    fn sequence_header_is_not_an_access_unit() {
        let body = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1e]);
        assert_eq!(access_unit(&body, 0, true, &config()), None);
    }

    #[test]
    fn backlog_is_squeezed_then_live_runs_at_its_pace() {
        let mut t = Timeline::default();
        assert_eq!(t.rtp_90khz(5000, true), 0);
        assert_eq!(t.rtp_90khz(5033, true), 90);
        assert_eq!(t.rtp_90khz(5066, true), 180);
        assert_eq!(t.rtp_90khz(5100, false), 180 + 34 * 90);
    }

    #[test]
    fn audio_shares_the_video_origin() {
        let mut t = Timeline::default();
        assert_eq!(t.rtp_48khz(5000 * 48), None, "no video yet");
        t.rtp_90khz(5000, true);
        t.rtp_90khz(5033, true);
        t.rtp_90khz(5100, false);
        // Video at 5100 ms is 68 ms after the origin (the squeeze took 32 ms out): so is
        // audio at 5100 ms.
        assert_eq!(t.rtp_90khz(5133, false), (68 + 33) * 90);
        assert_eq!(t.rtp_48khz(5100 * 48), Some(68 * 48));
        assert_eq!(t.rtp_48khz(5120 * 48), Some(88 * 48));
        t.rebase();
        assert_eq!(t.rtp_48khz(0), None, "a new session waits for its video");
    }

    #[test]
    fn b_frames_are_found_by_their_presentation_order() {
        let f = |dts: u64, cts: u32, key: bool| {
            let mut body = vec![if key { 0x17 } else { 0x27 }, 1];
            body.extend_from_slice(&cts.to_be_bytes()[1..]);
            body.extend_from_slice(&[0, 0, 0, 1, 0x41]);
            Frame::new(
                crate::media::frame::TrackKind::Video,
                dts,
                key,
                Bytes::from(body),
            )
        };
        // Without B-frames (a constant composition offset, as renditions of such a source have).
        let mut r = Reordering::default();
        for (i, dts) in [0u64, 33, 66, 100].into_iter().enumerate() {
            assert!(!r.push(&f(dts, 66, i == 0)));
        }
        assert!(!r.seen);
        // x264 with -bf 2: I (shown at 66), P (166), B (100), B (133).
        let mut r = Reordering::default();
        assert!(!r.push(&f(0, 66, true)));
        assert!(!r.push(&f(33, 133, false)));
        assert!(r.push(&f(66, 34, false)), "shown before the P sent earlier");
        assert!(!r.push(&f(100, 33, false)), "reported once");
        assert!(r.seen);
    }

    #[test]
    fn a_new_publish_session_continues_the_clock() {
        let mut t = Timeline::default();
        t.rtp_90khz(90_000, false);
        t.rtp_90khz(90_040, false);
        t.rebase();
        assert_eq!(t.rtp_90khz(0, false), (40 + 33) * 90);
        assert_eq!(t.rtp_90khz(40, false), (40 + 33 + 40) * 90);
    }
}
