//! The deciding side of HLS packaging, on the node that ingests a stream: where each segment
//! starts, its numbers, its wall-clock time and its timeline. Every node packaging the stream
//! (this one included) then follows these decisions ([`super::HlsPackager::push`]).
//!
//! The source rendition decides from its own frames: a segment opens on the first keyframe
//! past each multiple of `hls.segment` on the stream's timeline (audio-only streams: on any
//! frame), on a track change, or when it grows past a size bound. Transcoded renditions cut
//! where the source cut (their keyframes are aligned with the source's) and take the source's
//! numbers, wall-clock times and timeline from the [`SegmentBook`], so every rendition of a
//! stream has the same sequence numbers for the same moments. Numbering continues across
//! republishes and, from the cluster store's record, across origins
//! ([`Decider::resume`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use streamfleet_proto::hls::SegmentStart;
use streamfleet_proto::ts::{Tracks, TsMuxer};

use crate::cluster::model::HlsProgress;
use crate::runtime::entropy::unix_time;

/// Source decisions kept for the renditions to find (a few GOPs' worth).
const BOOK_LEN: usize = 32;

/// The source rendition's recent segment starts, by the stream timestamp of their first frame,
/// for the transcoded renditions of the same stream.
#[derive(Debug, Default)]
pub struct SegmentBook {
    starts: Mutex<VecDeque<(u64, SegmentStart)>>,
}

impl SegmentBook {
    fn record(&self, dts: u64, start: SegmentStart) {
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        starts.push_back((dts, start));
        while starts.len() > BOOK_LEN {
            starts.pop_front();
        }
    }

    /// Forgets the decisions of an earlier publish session (its timestamps start again).
    fn clear(&self) {
        self.starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn at(&self, dts: u64) -> Option<SegmentStart> {
        let starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        starts
            .iter()
            .rev()
            .find(|(d, _)| *d == dts)
            .map(|(_, s)| *s)
    }
}

/// Which decisions a packager makes.
#[derive(Debug)]
pub enum Role {
    /// The source rendition: decides, and records its decisions for the renditions.
    Source(Arc<SegmentBook>),
    /// A transcoded rendition: cuts where the source did, with the source's numbers.
    Rendition(Arc<SegmentBook>),
}

/// What one frame looks like to the decider.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Stream timestamp (ms).
    pub dts: u64,
    /// Video frame (else audio).
    pub video: bool,
    /// Starts a GOP.
    pub keyframe: bool,
}

/// The packager's state the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Packaging {
    /// Output timestamp of the open segment's first frame, when one is open.
    pub open_start: Option<u64>,
    /// The open segment is over its size bound.
    pub oversized: bool,
    /// The muxer state after the last packaged frame (`None` before any segment).
    pub muxer: Option<TsMuxer>,
    /// The tracks the stream has now (`None`: not described yet, nothing is packaged).
    pub tracks: Option<Tracks>,
    /// Segment duration target, ms.
    pub target_ms: u64,
    /// The playlist's target duration now, seconds.
    pub target_duration: u64,
    /// Typical frame interval, ms (to start a republished timeline after the last one).
    pub frame_interval: u64,
    /// LL-HLS part target, ms, when LL-HLS is on.
    pub part_ms: Option<u64>,
}

/// What the deciding node decided for one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    /// The segment the frame starts.
    pub segment: Option<SegmentStart>,
    /// The frame starts an LL-HLS part (every segment start does).
    pub part: bool,
}

/// Numbering and timeline of the segments a node decides.
#[derive(Debug)]
pub struct Decider {
    role: Role,
    /// Media sequence number of the next segment.
    next_sequence: u64,
    /// Discontinuity tags so far.
    discontinuity_sequence: u64,
    /// The next segment follows a break.
    discontinuity: bool,
    /// No segment decided yet: the numbering may still be taken from the store.
    fresh: bool,
    /// Publish session whose timeline is current.
    generation: u64,
    /// The next frame starts a new publish session: compute its offset from it.
    rebase: bool,
    /// Added to this session's frame timestamps for the output timeline.
    offset: i64,
    /// Largest output timestamp seen (ms).
    last_out: Option<u64>,
    /// (output ms, unix ms) of this session's first segment: wall-clock times follow the
    /// output timeline from it.
    anchor: Option<(u64, i64)>,
    /// Stream timestamp of the current part's first frame.
    part_start: Option<u64>,
}

impl Decider {
    /// A decider whose numbering starts at `first_sequence` (unless the store's record says
    /// where the stream's numbering is).
    pub fn new(role: Role, first_sequence: u64) -> Self {
        Decider {
            role,
            next_sequence: first_sequence,
            discontinuity_sequence: 0,
            discontinuity: false,
            fresh: true,
            generation: 0,
            rebase: false,
            offset: 0,
            last_out: None,
            anchor: None,
            part_start: None,
        }
    }

    /// A new publish session: its segments follow a break (but the stream's first), on a
    /// timeline that continues the last one's.
    pub fn start_session(&mut self, generation: u64) {
        if generation == self.generation {
            return;
        }
        if self.generation != 0 {
            self.discontinuity = true;
        }
        if let Role::Source(book) = &self.role {
            book.clear();
        }
        self.generation = generation;
        self.rebase = true;
        self.anchor = None;
    }

    /// Continues the numbering an earlier life of the stream reached (the cluster store's
    /// record, possibly written by another origin): the next segment gets the next number and
    /// follows a break. Numbers only move forward.
    pub fn resume(&mut self, progress: HlsProgress) {
        if self.fresh {
            self.next_sequence = progress.next_sequence;
            self.discontinuity_sequence = progress.discontinuity_sequence;
        } else {
            self.next_sequence = self.next_sequence.max(progress.next_sequence);
            self.discontinuity_sequence = self
                .discontinuity_sequence
                .max(progress.discontinuity_sequence);
        }
        self.discontinuity = true;
    }

    /// Where the numbering stands: what the store keeps for the next origin.
    pub fn progress(&self) -> HlsProgress {
        HlsProgress {
            next_sequence: self.next_sequence,
            discontinuity_sequence: self.discontinuity_sequence,
        }
    }

    /// The offset from stream to output timestamps this frame gets.
    pub fn output_offset(&mut self, dts: u64, p: &Packaging) -> i64 {
        if std::mem::take(&mut self.rebase) {
            self.offset = match self.last_out {
                Some(last) => (last.saturating_add(p.frame_interval) as i64)
                    .saturating_sub(dts.min(i64::MAX as u64) as i64),
                None => 0,
            };
        }
        self.offset
    }

    /// Whether `frame` starts a segment (and how) or an LL-HLS part. A part starts at the first
    /// frame (video frame, when there is video) one part target after the current part's
    /// start, on the stream's timestamps, so every rendition (same timestamps) cuts its parts
    /// at the same frames.
    pub fn decide(&mut self, frame: Candidate, p: &Packaging) -> Decision {
        let segment = self.decide_segment(frame, p);
        let part = match (segment, p.part_ms, p.tracks) {
            (Some(_), ..) => true,
            (None, Some(ms), Some(tracks)) => {
                p.open_start.is_some()
                    && frame.video == tracks.has_video()
                    && self
                        .part_start
                        .is_some_and(|s| frame.dts >= s.saturating_add(ms))
            }
            _ => false,
        };
        if part {
            self.part_start = Some(frame.dts);
        }
        Decision { segment, part }
    }

    fn decide_segment(&mut self, frame: Candidate, p: &Packaging) -> Option<SegmentStart> {
        let tracks = p.tracks?;
        let offset = self.output_offset(frame.dts, p);
        let out = (frame.dts.min(i64::MAX as u64) as i64)
            .saturating_add(offset)
            .max(0) as u64;
        self.last_out = Some(self.last_out.map_or(out, |l| l.max(out)));
        let cut_point = if tracks.has_video() {
            frame.video && frame.keyframe
        } else {
            !frame.video
        };
        let mut muxer = match p.muxer {
            Some(m) if m.tracks() == tracks => m,
            _ => TsMuxer::new(tracks),
        };
        let start = match &self.role {
            Role::Source(book) => {
                let tracks_changed = p.muxer.is_some_and(|m| m.tracks() != tracks);
                let due = match p.open_start {
                    None => cut_point,
                    // The first keyframe past a multiple of the target duration on the
                    // stream's timeline; also a track change, or a segment grown too big.
                    Some(start) => {
                        (cut_point && (out / p.target_ms != start / p.target_ms || tracks_changed))
                            || p.oversized
                    }
                };
                if !due {
                    return None;
                }
                let anchor = *self
                    .anchor
                    .get_or_insert_with(|| (out, unix_time().as_millis() as i64));
                let discontinuity = std::mem::take(&mut self.discontinuity);
                let start = SegmentStart {
                    sequence: self.next_sequence,
                    discontinuity_sequence: self.discontinuity_sequence + u64::from(discontinuity),
                    discontinuity,
                    program_date_time: anchor
                        .1
                        .saturating_add((out as i64).saturating_sub(anchor.0 as i64)),
                    timestamp_offset: offset,
                    target_duration: u32::try_from(p.target_duration).unwrap_or(u32::MAX),
                    part_target_ms: p
                        .part_ms
                        .map_or(0, |ms| u32::try_from(ms).unwrap_or(u32::MAX)),
                    muxer,
                };
                book.record(frame.dts, start);
                start
            }
            // A rendition cuts exactly where the source did (its keyframes are the source's),
            // with the source's numbers and timeline; never on size alone, where the numbers
            // would not line up.
            Role::Rendition(book) => {
                if !cut_point {
                    return None;
                }
                let source = book.at(frame.dts)?;
                SegmentStart {
                    target_duration: source
                        .target_duration
                        .max(u32::try_from(p.target_duration).unwrap_or(u32::MAX)),
                    ..source
                }
            }
        };
        if start.discontinuity {
            muxer.set_discontinuity();
        }
        self.fresh = false;
        self.next_sequence = start.sequence.saturating_add(1);
        self.discontinuity_sequence = start.discontinuity_sequence;
        Some(SegmentStart { muxer, ..start })
    }
}
