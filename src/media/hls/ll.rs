//! Low-Latency HLS packaging of one hub: the same segments as the TS packager (same starts,
//! numbers, times, decided by the ingesting node), written as fMP4 and cut into the parts the
//! deciding node also decided (`Frame::part`). A part is written when the next one starts (its
//! last sample's duration is known then), and published at once: its bytes, the playlist that
//! lists it, and the hint of the part after it. Every node writes the same bytes under the same
//! names, so a viewer moved between edges goes on.
//!
//! Names: `{name}-init-{hash}.mp4` (the initialization segment, named by its content),
//! `{name}-{sequence}.m4s` (a whole segment: its parts one after the other) and
//! `{name}-{sequence}.{part}.m4s` (a part).

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use streamfleet_proto::flv::{AacPacket, AudioBody, AudioTag, AvcPacket, VideoBody, VideoTag};
use streamfleet_proto::fmp4::{
    AAC_FRAME_SAMPLES, AUDIO_TRACK, AudioInit, Run, Sample, VIDEO_TRACK, VideoInit, fragment,
    init_segment,
};
use streamfleet_proto::hls::{LlPlaylist, LlSegment, Part, SegmentStart};
use tokio::sync::watch;

use crate::media::frame::{Frame, StreamInfo, TrackKind};

/// Segments whose parts stay fetchable (those the playlist lists parts for, and one more).
const PART_SEGMENTS: usize = 5;
/// Whole segments kept beyond the window, for players holding an older playlist.
const EXTRA_SEGMENTS: usize = 3;
/// A part that grows past this many frames is cut (bounded memory, a stream without video
/// frames to cut on).
const MAX_PART_FRAMES: usize = 1024;

/// What HTTP handlers read of LL-HLS.
#[derive(Debug, Clone, Default)]
pub struct LlView {
    /// The playlist, once a segment started.
    pub playlist: Option<Arc<LlPlaylist>>,
    /// The initialization segment: its name and bytes.
    pub init: Option<(String, Bytes)>,
    /// Whole segments still served: (sequence, bytes).
    pub segments: VecDeque<(u64, Bytes)>,
    /// Parts still served: (sequence, part index, bytes).
    pub parts: VecDeque<(u64, u64, Bytes)>,
}

impl LlView {
    /// Bytes of segments and parts held.
    pub fn bytes(&self) -> usize {
        self.segments.iter().map(|(_, b)| b.len()).sum::<usize>()
            + self.parts.iter().map(|(.., b)| b.len()).sum::<usize>()
            + self.init.as_ref().map_or(0, |(_, b)| b.len())
    }

    /// The newest segment and part: the live edge.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.playlist.as_ref()?.last()
    }
}

/// One frame waiting in the open part, on the output timeline.
struct Pending {
    kind: TrackKind,
    /// Output decode time, ms.
    dts: u64,
    keyframe: bool,
    /// Composition offset, ms.
    cts: i32,
    data: Bytes,
}

struct OpenSegment {
    start: SegmentStart,
    /// Output time of its first frame, ms.
    start_dts: u64,
    parts: Vec<Bytes>,
}

/// The LL-HLS packager of one hub.
pub struct LlPackager {
    name: String,
    playlist: LlPlaylist,
    window: usize,
    view: watch::Sender<Arc<LlView>>,
    /// The initialization segment for the current codecs.
    init: Option<(String, Bytes)>,
    /// Audio sample rate (the audio timescale).
    sample_rate: u32,
    /// The stream has video (else every part is independent).
    has_video: bool,
    segment: Option<OpenSegment>,
    /// The frames of the part being made, and whether it starts with a keyframe.
    part: Option<(Vec<Pending>, bool)>,
    /// Typical video frame interval, ms.
    frame_interval: u64,
    last_video: Option<u64>,
    /// Whole segments kept past the window ([`EXTRA_SEGMENTS`], none while the node is over
    /// its `hls.max_memory`).
    extra_segments: usize,
}

impl LlPackager {
    /// A packager for parts of about `part_target` listing `window` segments.
    pub fn new(name: &str, part_target: Duration, segment_target: Duration, window: usize) -> Self {
        let target = segment_target.as_millis().div_ceil(1000).max(1) as u64;
        LlPackager {
            name: name.to_owned(),
            playlist: LlPlaylist::new(
                part_target,
                target,
                NonZeroUsize::new(window).unwrap_or(NonZeroUsize::MIN),
            ),
            window,
            view: watch::Sender::new(Arc::new(LlView::default())),
            init: None,
            sample_rate: 44_100,
            has_video: true,
            segment: None,
            part: None,
            frame_interval: 33,
            last_video: None,
            extra_segments: EXTRA_SEGMENTS,
        }
    }

    /// The current view.
    pub fn view(&self) -> Arc<LlView> {
        self.view.borrow().clone()
    }

    /// How many whole segments to keep past the window.
    pub fn set_extra_segments(&mut self, extra: usize) {
        self.extra_segments = extra;
    }

    /// Watches what is served.
    pub fn subscribe(&self) -> watch::Receiver<Arc<LlView>> {
        self.view.subscribe()
    }

    /// This node follows another's decisions: the target duration and the part target are the
    /// deciding node's (from its segment starts).
    pub fn follow(&mut self) {
        if self.playlist.segments().len() == 0 {
            let window = NonZeroUsize::new(self.window).unwrap_or(NonZeroUsize::MIN);
            self.playlist = LlPlaylist::new(self.playlist.part_target(), 1, window);
        }
    }

    /// New codecs: a new initialization segment for the parts after this point.
    pub fn describe(&mut self, info: &StreamInfo) {
        let record = info
            .video
            .as_ref()
            .and_then(|v| match VideoTag::parse(&v.sequence_header) {
                Ok(VideoTag {
                    body: VideoBody::Avc(AvcPacket::SequenceHeader(record)),
                    ..
                }) => Some((record, v.width, v.height)),
                _ => None,
            });
        let asc = info
            .audio
            .as_ref()
            .and_then(|a| match AudioTag::parse(&a.sequence_header) {
                Ok(AudioTag {
                    body: AudioBody::Aac(AacPacket::SequenceHeader(asc)),
                    ..
                }) => Some((asc, a.sample_rate, a.channels)),
                _ => None,
            });
        if let Some((_, rate, _)) = &asc {
            self.sample_rate = (*rate).max(1);
        }
        let video = record.as_ref().map(|(r, w, h)| VideoInit {
            record: r,
            width: u16::try_from(*w).unwrap_or(u16::MAX),
            height: u16::try_from(*h).unwrap_or(u16::MAX),
        });
        let audio = asc.as_ref().map(|(a, rate, ch)| AudioInit {
            asc: a,
            sample_rate: (*rate).max(1),
            channels: u16::from(*ch),
        });
        if video.is_none() && audio.is_none() {
            return;
        }
        self.has_video = video.is_some();
        match init_segment(video.as_ref(), audio.as_ref()) {
            Ok(bytes) => {
                let name = format!("{}-init-{:08x}.mp4", self.name, fnv1a(&bytes));
                self.init = Some((name, Bytes::from(bytes)));
                self.publish();
            }
            Err(e) => {
                tracing::warn!(stream = %self.name, error = %e, "no LL-HLS initialization segment")
            }
        }
    }

    /// Adds one frame of the open segment (on the output timeline `dts`); a frame that starts
    /// a part (the deciding node's `Frame::part`) ends the part before it.
    pub fn frame(&mut self, frame: &Frame, dts: u64) {
        let starts_part = frame.part && frame.segment.is_none()
            || self
                .part
                .as_ref()
                .is_some_and(|(f, _)| f.len() >= MAX_PART_FRAMES);
        if starts_part && self.part.is_some() {
            self.close_part(dts);
            self.part = Some((Vec::new(), frame.keyframe || !self.has_video));
        }
        if frame.kind == TrackKind::Video {
            if let Some(prev) = self.last_video
                && dts > prev
                && dts - prev < 1000
            {
                self.frame_interval = dts - prev;
            }
            self.last_video = Some(dts);
        }
        let Some((frames, _)) = &mut self.part else {
            return;
        };
        let (cts, data) = match frame.kind {
            TrackKind::Video => match VideoTag::parse(&frame.body) {
                Ok(VideoTag {
                    body:
                        VideoBody::Avc(AvcPacket::Nalu {
                            composition_time,
                            data,
                        }),
                    ..
                }) => (composition_time, data),
                _ => return,
            },
            TrackKind::Audio => match AudioTag::parse(&frame.body) {
                Ok(AudioTag {
                    body: AudioBody::Aac(AacPacket::Raw(data)),
                    ..
                }) => (0, data),
                _ => return,
            },
        };
        frames.push(Pending {
            kind: frame.kind,
            dts,
            keyframe: frame.keyframe,
            cts,
            data,
        });
    }

    /// The open segment (and its open part) ends at `end` (output ms).
    pub fn end_segment(&mut self, end: u64) {
        if self.segment.is_some() {
            self.close_part(end);
            self.close_segment(end);
            self.publish();
        }
    }

    /// Drops the open segment unlisted (frames of it were lost on the way).
    pub fn drop_open(&mut self) {
        self.part = None;
        if self.segment.take().is_some() {
            self.playlist.drop_open();
            self.publish();
        }
    }

    /// Opens the segment `start` decided, at output time `dts`; `keyframe`: its first frame is
    /// one.
    pub fn open_segment(&mut self, start: SegmentStart, dts: u64, keyframe: bool) {
        if self.segment.is_some() {
            self.drop_open();
        }
        // Parts are the deciding node's: none when it cuts none, and its part target.
        if start.part_target_ms == 0 {
            return;
        }
        let part_target = Duration::from_millis(u64::from(start.part_target_ms));
        if self.playlist.segments().len() == 0 {
            let window = NonZeroUsize::new(self.window).unwrap_or(NonZeroUsize::MIN);
            let target = self.playlist.target_duration();
            self.playlist = LlPlaylist::new(part_target, target, window);
        } else {
            self.playlist.raise_part_target(part_target);
        }
        let Some((map, _)) = &self.init else {
            return;
        };
        let segment = LlSegment {
            uri: format!("{}-{}.m4s", self.name, start.sequence),
            sequence: start.sequence,
            discontinuity_sequence: start.discontinuity_sequence,
            discontinuity: start.discontinuity,
            program_date_time: start.program_date_time,
            map: map.clone(),
            parts: Vec::new(),
            duration: None,
        };
        self.playlist
            .raise_target_duration(u64::from(start.target_duration));
        if let Err(e) = self.playlist.open_segment(segment) {
            tracing::warn!(stream = %self.name, error = %e, "LL-HLS segment not listed");
            return;
        }
        self.segment = Some(OpenSegment {
            start,
            start_dts: dts,
            parts: Vec::new(),
        });
        self.part = Some((Vec::new(), keyframe || !self.has_video));
        let hint = self.next_part_uri();
        let _ = self.playlist.set_preload_hint(hint);
        self.publish();
    }

    fn next_part_uri(&self) -> Option<String> {
        let s = self.segment.as_ref()?;
        Some(format!(
            "{}-{}.{}.m4s",
            self.name,
            s.start.sequence,
            s.parts.len()
        ))
    }

    /// Writes the open part, which ends at `end` (output ms), and publishes it.
    fn close_part(&mut self, end: u64) {
        let (Some((frames, independent)), Some(segment)) = (self.part.take(), &mut self.segment)
        else {
            return;
        };
        if frames.is_empty() {
            return;
        }
        let index = segment.parts.len() as u64;
        let sequence = (segment.start.sequence as u32)
            .wrapping_mul(64)
            .wrapping_add(index as u32);
        let rate = u64::from(self.sample_rate);
        let mut runs = Vec::new();
        let video: Vec<&Pending> = frames
            .iter()
            .filter(|f| f.kind == TrackKind::Video)
            .collect();
        if let Some(first) = video.first() {
            let samples = video
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let next = video.get(i + 1).map_or(end, |n| n.dts);
                    Sample {
                        duration: (next.saturating_sub(f.dts).max(1) * 90) as u32,
                        size: f.data.len() as u32,
                        sync: f.keyframe,
                        composition_offset: f.cts.saturating_mul(90),
                    }
                })
                .collect();
            runs.push(Run {
                track: VIDEO_TRACK,
                base_decode_time: first.dts * 90,
                samples,
                data: video.iter().map(|f| &f.data[..]).collect(),
            });
        }
        let audio: Vec<&Pending> = frames
            .iter()
            .filter(|f| f.kind == TrackKind::Audio)
            .collect();
        if let Some(first) = audio.first() {
            runs.push(Run {
                track: AUDIO_TRACK,
                base_decode_time: first.dts * rate / 1000,
                samples: audio
                    .iter()
                    .map(|f| Sample {
                        duration: AAC_FRAME_SAMPLES,
                        size: f.data.len() as u32,
                        sync: true,
                        composition_offset: 0,
                    })
                    .collect(),
                data: audio.iter().map(|f| &f.data[..]).collect(),
            });
        }
        let bytes = match fragment(sequence, &runs) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::debug!(stream = %self.name, error = %e, "LL-HLS part not written");
                return;
            }
        };
        let start = frames.first().map_or(end, |f| f.dts);
        let part = Part {
            uri: format!("{}-{}.{}.m4s", self.name, segment.start.sequence, index),
            duration: Duration::from_millis(end.saturating_sub(start).max(1)),
            independent,
        };
        segment.parts.push(bytes);
        if let Err(e) = self.playlist.push_part(part) {
            tracing::warn!(stream = %self.name, error = %e, "LL-HLS part not listed");
        }
        let hint = self.next_part_uri();
        let _ = self.playlist.set_preload_hint(hint);
        self.publish();
    }

    /// Completes the open segment at `end` (output ms).
    fn close_segment(&mut self, end: u64) {
        let Some(segment) = self.segment.take() else {
            return;
        };
        self.part = None;
        self.playlist.close_segment(Duration::from_millis(
            end.saturating_sub(segment.start_dts).max(1),
        ));
        let _ = self.playlist.set_preload_hint(None);
        // Exactly the parts' size: the segment is held for the whole window (a collected
        // iterator of bytes would grow by doubling and keep up to twice that).
        let mut whole = Vec::with_capacity(segment.parts.iter().map(|p| p.len()).sum());
        for p in &segment.parts {
            whole.extend_from_slice(p);
        }
        let mut view = (*self.view.borrow().clone()).clone();
        view.segments
            .push_back((segment.start.sequence, Bytes::from(whole)));
        self.view.send_replace(Arc::new(view));
    }

    /// Publishes the playlist, the init segment and the parts of the recent segments.
    fn publish(&mut self) {
        let mut view = (*self.view.borrow().clone()).clone();
        view.playlist = Some(Arc::new(self.playlist.clone()));
        view.init = self.init.clone();
        if let Some(segment) = &self.segment {
            let sequence = segment.start.sequence;
            for (i, bytes) in segment.parts.iter().enumerate() {
                let i = i as u64;
                if !view.parts.iter().any(|(s, p, _)| *s == sequence && *p == i) {
                    view.parts.push_back((sequence, i, bytes.clone()));
                }
            }
        }
        let listed: Vec<u64> = self.playlist.segments().map(|s| s.sequence).collect();
        let oldest = listed.first().copied().unwrap_or(0);
        let newest = listed.last().copied().unwrap_or(0);
        let extra = self.extra_segments as u64;
        view.segments
            .retain(|(s, _)| s.saturating_add(extra) >= oldest && *s <= newest);
        view.parts
            .retain(|(s, ..)| s.saturating_add(PART_SEGMENTS as u64) > newest && *s <= newest);
        self.view.send_replace(Arc::new(view));
    }
}

impl std::fmt::Debug for LlPackager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlPackager")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// FNV-1a, 32 bits: names an initialization segment by its content.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}
