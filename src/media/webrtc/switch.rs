//! Switching one viewer to another rendition of its stream without renegotiating: the session
//! keeps sending the rendition it has (the *current* subscription) while it reads the one asked
//! for (the *target*), and splices at a keyframe both have, so the picture never goes back in
//! time and the RTP clock runs on.
//!
//! The ladder's renditions are keyframe-aligned with the source and carry its presentation
//! times, but lag it by the transcoder's latency:
//! - target ahead (a rendition back to the source): the target's first keyframe after what was
//!   written is kept with what follows it ([`Splice::target`]), and the current is sent until
//!   it reaches that keyframe's time; then the session goes on with the kept frames.
//! - target behind (the source down to a rendition): the current's next keyframe is held back
//!   (the picture stays still) until the target's keyframe of the same time arrives, a freeze
//!   of the transcoder's latency.
//! - nothing written yet (the B-frame choice at the start): the target's first keyframe (its
//!   start cache) is taken at once.
//!
//! A switch that does not complete within [`SWITCH_TIMEOUT`] is abandoned (the held keyframe
//! is sent after all). [`Splice`] is the decision, on frames only; [`Switch`] adds the target's
//! subscription.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamfleet_proto::names::RenditionId;

use super::h264;
use crate::media::frame::{Frame, StreamInfo, TrackKind};
use crate::media::hub::Subscription;

/// A switch not done by then is abandoned (the target has no keyframe, or is not fed).
pub const SWITCH_TIMEOUT: Duration = Duration::from_secs(6);
/// Target frames kept while the current catches up with them (a few seconds of video).
const MAX_KEPT: usize = 300;

/// Why a viewer changes rendition (logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `forceStreamQuality`, or back to auto.
    Forced,
    /// The source has B-frames and a rendition without them exists.
    BFrames,
    /// The bandwidth estimate (ABR).
    Bandwidth,
}

/// What to do with a video frame of the current rendition while a switch is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    /// Send it.
    Write,
    /// Hold it back (the current stops here): the target's keyframe of its time is awaited.
    Hold,
    /// Do not send it: splice now (the kept target frames take over).
    Splice,
}

/// The decision of where to splice, on frames only.
#[derive(Debug, Default)]
pub struct Splice {
    /// The target's frames from the keyframe spliced at (video only).
    kept: VecDeque<Frame>,
    /// The current's keyframe held back, with its presentation time.
    held: Option<(Frame, i64)>,
}

impl Splice {
    /// A frame of the target; `written`: the latest presentation time sent (ms), `None` before
    /// the first frame. True when the switch can be made now.
    pub fn target(&mut self, f: Frame, written: Option<i64>) -> bool {
        if f.kind != TrackKind::Video {
            return false;
        }
        if self.kept.is_empty() {
            let Some(pts) = h264::pts(&f).filter(|_| f.keyframe) else {
                return false;
            };
            let wanted = match (&self.held, written) {
                (_, None) => true,
                (Some((_, held)), _) => pts >= *held,
                (None, Some(w)) => pts > w,
            };
            if !wanted {
                return false;
            }
        } else if self.kept.len() >= MAX_KEPT {
            // The current never reached the target's keyframe: start over at the next one.
            self.kept.clear();
            return false;
        }
        self.kept.push_back(f);
        self.held.is_some() || written.is_none()
    }

    /// A video frame of the current, before it is sent.
    pub fn current(&mut self, f: &Frame) -> Current {
        let Some(pts) = h264::pts(f) else {
            return Current::Write;
        };
        match self.kept.front().and_then(h264::pts) {
            Some(kept) if pts >= kept => Current::Splice,
            Some(_) => Current::Write,
            None if f.keyframe => {
                self.held = Some((f.clone(), pts));
                Current::Hold
            }
            None => Current::Write,
        }
    }

    /// The target restarted (a new publish session): what was kept is no longer continuous.
    pub fn reset(&mut self) {
        self.kept.clear();
    }

    /// Whether the current is held back.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// The kept target frames, to send now that the switch is made.
    pub fn take_kept(&mut self) -> VecDeque<Frame> {
        std::mem::take(&mut self.kept)
    }

    /// The held keyframe, to send when the switch is abandoned.
    pub fn take_held(&mut self) -> Option<Frame> {
        self.held.take().map(|(f, _)| f)
    }
}

/// A switch in progress: the target's subscription and where to splice.
pub struct Switch {
    /// The rendition switched to.
    pub target: RenditionId,
    /// Why.
    pub why: Why,
    /// The target's hub, from its latest keyframe.
    pub subscription: Subscription,
    /// The target's description (its decoder configuration goes before the splice).
    pub info: Option<Arc<StreamInfo>>,
    /// Where to splice.
    pub splice: Splice,
    /// Abandoned after this.
    pub deadline: Instant,
}

impl Switch {
    /// A switch to `target` on `subscription`, started `now`.
    pub fn new(target: RenditionId, why: Why, subscription: Subscription, now: Instant) -> Self {
        Switch {
            target,
            why,
            subscription,
            info: None,
            splice: Splice::default(),
            deadline: now + SWITCH_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use streamfleet_proto::flv::VideoTag;

    /// A video frame decoded at `dts` and shown at `dts + cts`.
    fn frame(dts: u64, cts: i32, keyframe: bool) -> Frame {
        let mut b = BytesMut::new();
        VideoTag::avc_frame(keyframe, cts, Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]))
            .encode(&mut b)
            .unwrap();
        Frame::new(TrackKind::Video, dts, keyframe, b.freeze())
    }

    #[test]
    fn a_target_ahead_is_spliced_in_when_the_current_reaches_its_keyframe() {
        let mut s = Splice::default();
        // Written up to 1000 ms; the target's start cache keyframe (800) is in the past.
        assert!(!s.target(frame(800, 0, true), Some(1000)));
        assert!(!s.target(frame(833, 0, false), Some(1000)));
        // Its next keyframe (2000) is kept with what follows.
        assert!(!s.target(frame(2000, 0, true), Some(1000)));
        assert!(!s.target(frame(2033, 0, false), Some(1000)));
        assert_eq!(s.current(&frame(1033, 0, false)), Current::Write);
        assert_eq!(s.current(&frame(1966, 0, false)), Current::Write);
        assert_eq!(s.current(&frame(2000, 0, true)), Current::Splice);
        let kept: Vec<u64> = s.take_kept().iter().map(|f| f.dts).collect();
        assert_eq!(kept, [2000, 2033]);
    }

    #[test]
    fn a_target_behind_holds_the_current_at_its_keyframe() {
        let mut s = Splice::default();
        // The rendition lags: its frames are older than what was written.
        assert!(!s.target(frame(1500, 0, true), Some(1900)));
        assert_eq!(s.current(&frame(1966, 0, false)), Current::Write);
        // The current's keyframe at 2000 is held back...
        assert_eq!(s.current(&frame(2000, 0, true)), Current::Hold);
        assert!(s.holding());
        // ...until the target's keyframe of the same time arrives.
        assert!(!s.target(frame(1966, 0, false), Some(1966)));
        assert!(s.target(frame(2000, 0, true), Some(1966)));
        assert_eq!(s.take_kept().len(), 1);
        assert_eq!(s.take_held().map(|f| f.dts), Some(2000));
    }

    #[test]
    fn before_the_first_frame_the_target_starts_at_once() {
        let mut s = Splice::default();
        assert_eq!(s.current(&frame(5000, 66, true)), Current::Hold);
        assert!(s.target(frame(4000, 0, true), None), "its start cache");
        let mut s = Splice::default();
        assert!(s.target(frame(4000, 0, true), None));
    }

    #[test]
    fn presentation_times_decide_with_b_frames() {
        // A source with B-frames: keyframe decoded at 1934, shown at 2000.
        let mut s = Splice::default();
        assert_eq!(s.current(&frame(1934, 66, true)), Current::Hold);
        assert!(
            !s.target(frame(1966, 0, true), Some(1990)),
            "before the held time"
        );
        assert!(s.target(frame(2000, 0, true), Some(1990)));
    }

    #[test]
    fn a_restarted_target_starts_over() {
        let mut s = Splice::default();
        assert!(!s.target(frame(2000, 0, true), Some(1000)));
        s.reset();
        assert_eq!(s.current(&frame(2000, 0, false)), Current::Write);
    }
}
