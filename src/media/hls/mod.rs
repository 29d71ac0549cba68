//! HLS packaging of one hub: frames in, MPEG-TS segments and a live playlist out, all in memory.
//!
//! Segment boundaries are decided once per stream, by the node that ingests it ([`decide`]),
//! and travel with the frames ([`Frame::segment`]): the hub asks [`HlsPackager::decide`] before
//! fanning a frame out, the relay carries the decision to edges, and every packager, the
//! deciding one included, only follows decisions in [`HlsPackager::push`]: a frame that starts
//! a segment closes the open one and opens the next with the decided number, wall-clock time,
//! timeline offset and TS muxer state. So every node serves the same playlists and the same
//! bytes under the same names, whenever it joined. Frames before the first decision a node sees
//! are not packaged. When the publisher leaves, the open segment ends where the deciding node
//! ended it ([`HlsPackager::stop`]). HTTP handlers read the rendered playlist and segment bytes;
//! a watch channel tells waiters when the first segment exists.

pub mod decide;
pub mod ll;
pub mod memory;

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use streamfleet_proto::aac::{AdtsHeader, AudioSpecificConfig};
use streamfleet_proto::avc::{DecoderConfig, write_annexb};
use streamfleet_proto::flv::{AacPacket, AudioBody, AudioTag, AvcPacket, VideoBody, VideoTag};
use streamfleet_proto::hls::{MediaPlaylist, Segment, SegmentStart};
use streamfleet_proto::ts::{Tracks, TsMuxer};
use tokio::sync::watch;

use self::decide::{Candidate, Decider, Packaging};
use self::memory::{HlsMemory, Holding};
use super::frame::{Frame, StreamInfo, TrackKind};
use crate::cluster::model::HlsProgress;
use crate::config::HlsConfig;

/// Segments kept beyond the playlist window, for players that fetched an older playlist.
const EXTRA_SEGMENTS: usize = 3;
/// A segment that grows past this without a keyframe is cut anyway (bounded memory).
const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// Once the stream's bit rate is known (segments listed), a segment is cut past this many
/// target durations' worth of its highest listed bit rate ...
const SEGMENT_RATE_FACTOR: u64 = 4;
/// ... or past this, whichever is larger.
const MIN_SEGMENT_LIMIT: usize = 1 << 20;
/// Timestamps are shifted so that a negative composition offset cannot make a PTS negative.
const TS_OFFSET_MS: u64 = 1_000;

/// Codec state derived from the stream description.
struct Codecs {
    video: Option<DecoderConfig>,
    audio: Option<AdtsHeader>,
    tracks: Tracks,
}

struct OpenSegment {
    start: SegmentStart,
    muxer: TsMuxer,
    buf: BytesMut,
    /// Output timestamps (ms) of its first and latest frames.
    start_dts: u64,
    last_dts: u64,
    /// Cut for its size, not on a keyframe: its bit rate does not raise the size bound.
    size_cut: bool,
}

/// What the HTTP handlers read.
#[derive(Debug, Clone, Default)]
pub struct HlsView {
    /// Rendered playlist, absent until the first segment exists.
    pub playlist: Option<Bytes>,
    /// `(sequence number, bytes)` of segments still served.
    pub segments: VecDeque<(u64, Bytes)>,
    /// The listed segments, oldest first (what a new edge is sent to start with).
    pub listed: Vec<Segment>,
    /// The playlist's `EXT-X-TARGETDURATION`, seconds.
    pub target_duration: u32,
    /// Bits per second of the listed segments: the highest one's, and on average (a master
    /// playlist's `BANDWIDTH` and `AVERAGE-BANDWIDTH`).
    pub peak_bps: u64,
    /// See `peak_bps`.
    pub average_bps: u64,
}

impl HlsView {
    /// Copies of the listed segments before `next` (the segment a new edge starts in), oldest
    /// first: the longest run of them ending just before `next` whose bytes are still held and
    /// are at most `max_bytes` each.
    pub fn copies_before(&self, next: u64, max_bytes: usize) -> Vec<SegmentCopy> {
        let mut copies = Vec::new();
        let mut want = next;
        for listed in self.listed.iter().rev() {
            if listed.sequence >= want {
                continue;
            }
            if listed.sequence.checked_add(1) != Some(want) {
                break;
            }
            let data = self
                .segments
                .iter()
                .find(|(s, _)| *s == listed.sequence)
                .map(|(_, b)| b.clone());
            let Some(data) = data.filter(|d| d.len() <= max_bytes) else {
                break;
            };
            want = listed.sequence;
            copies.push(SegmentCopy {
                sequence: listed.sequence,
                discontinuity_sequence: listed.discontinuity_sequence,
                discontinuity: listed.discontinuity,
                program_date_time: listed.program_date_time,
                duration_ms: listed.duration.as_millis() as u64,
                target_duration: self.target_duration,
                data,
            });
        }
        copies.reverse();
        copies
    }
}

/// A finished segment as the deciding node listed it ([`HlsPackager::backfill`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCopy {
    /// Media sequence number.
    pub sequence: u64,
    /// Discontinuity sequence number up to and including it.
    pub discontinuity_sequence: u64,
    /// An `EXT-X-DISCONTINUITY` goes before it.
    pub discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME`, unix ms.
    pub program_date_time: Option<i64>,
    /// Duration, ms.
    pub duration_ms: u64,
    /// The deciding node's `EXT-X-TARGETDURATION`, seconds.
    pub target_duration: u32,
    /// The MPEG-TS bytes.
    pub data: Bytes,
}

/// The packager of one hub.
pub struct HlsPackager {
    /// Segment URIs are `{name}-{sequence}.ts`.
    name: String,
    segment_target: Duration,
    /// LL-HLS part target (`llhls.part`), when LL-HLS is on.
    part_target: Option<Duration>,
    /// Most segments listed (`hls.window`).
    window: usize,
    playlist: MediaPlaylist,
    codecs: Option<Codecs>,
    open: Option<OpenSegment>,
    /// The muxer state after the last closed segment (where the next one continues).
    muxer: Option<TsMuxer>,
    /// The last segment's working buffer, emptied, for the next one (a closed segment is
    /// published as an exact-size copy).
    spare: Option<BytesMut>,
    view: watch::Sender<Arc<HlsView>>,
    /// Typical frame interval, to give the last segment of a session a duration.
    frame_interval: u64,
    /// Output timestamp of the last video frame (for `frame_interval`).
    last_video: Option<u64>,
    /// Decisions, on the node that ingests the stream.
    decider: Decider,
    /// The same segments as fMP4 parts, for Low-Latency HLS (`llhls`).
    ll: Option<ll::LlPackager>,
    /// What the views hold, counted in the node's `hls.max_memory`.
    memory: Holding,
    /// The views last counted.
    accounted: (Option<Arc<HlsView>>, Option<Arc<ll::LlView>>),
    /// The open segment is cut past this size, keyframe or not: relative to the stream's
    /// bit rate once segments are listed ([`SEGMENT_RATE_FACTOR`]).
    segment_limit: usize,
    /// Recent segments that were cut for their size (a burst cannot raise its own bound).
    size_cut: VecDeque<u64>,
}

impl HlsPackager {
    /// A packager for the hub players name `name` (`demo`, `demo_480p`). When it decides, its
    /// numbering starts at `first_sequence` unless the store's record of the stream continues
    /// an earlier one ([`HlsPackager::resume`]); the hub passes its creation time in seconds,
    /// which stays ahead of numbers an earlier life of the stream used as long as its segments
    /// lasted a second or more (the store's record is what keeps names unique otherwise).
    pub fn new(name: &str, config: &HlsConfig, role: decide::Role, first_sequence: u64) -> Self {
        let window = NonZeroUsize::new(config.window).unwrap_or(NonZeroUsize::MIN);
        HlsPackager {
            name: name.to_owned(),
            segment_target: config.segment,
            part_target: config.part,
            window: config.window,
            playlist: MediaPlaylist::new(config.segment, window),
            codecs: None,
            open: None,
            muxer: None,
            spare: None,
            view: watch::Sender::new(Arc::new(HlsView::default())),
            frame_interval: 33,
            last_video: None,
            decider: decide::Decider::new(role, first_sequence),
            ll: config
                .part
                .map(|part| ll::LlPackager::new(name, part, config.segment, config.window)),
            memory: Holding::new(HlsMemory::unlimited()),
            accounted: (None, None),
            segment_limit: MAX_SEGMENT_BYTES,
            size_cut: VecDeque::new(),
        }
    }

    /// Counts what this packager holds in `memory` (the node's `hls.max_memory`).
    pub fn with_memory(mut self, memory: Arc<HlsMemory>) -> Self {
        self.memory = Holding::new(memory);
        self.accounted = (None, None);
        self.account();
        self
    }

    /// Counts what the views hold now, when they changed.
    fn account(&mut self) {
        let ts = self.view.borrow().clone();
        let ll = self.ll.as_ref().map(ll::LlPackager::view);
        let same = self
            .accounted
            .0
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(a, &ts))
            && match (&self.accounted.1, &ll) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
        if same {
            return;
        }
        let bytes = ts.segments.iter().map(|(_, b)| b.len()).sum::<usize>()
            + ll.as_deref().map_or(0, ll::LlView::bytes);
        self.memory.set(bytes);
        self.accounted = (Some(ts), ll);
    }

    /// Segments kept past the window for players holding an older playlist: none while the
    /// node is over its `hls.max_memory`.
    fn extra_segments(&self) -> usize {
        if self.memory.memory().is_full() {
            0
        } else {
            EXTRA_SEGMENTS
        }
    }

    /// Watches what is served.
    pub fn subscribe(&self) -> watch::Receiver<Arc<HlsView>> {
        self.view.subscribe()
    }

    /// The current view.
    pub fn view(&self) -> Arc<HlsView> {
        self.view.borrow().clone()
    }

    /// This node follows another's decisions (an edge): the playlist's target duration is the
    /// deciding node's, not one from this node's own `hls.segment`.
    pub fn follow(&mut self) {
        if self.playlist.segments().len() == 0 {
            let window = NonZeroUsize::new(self.window).unwrap_or(NonZeroUsize::MIN);
            self.playlist = MediaPlaylist::new(Duration::ZERO, window);
        }
        if let Some(ll) = &mut self.ll {
            ll.follow();
        }
    }

    /// Watches what LL-HLS serves, when it is on.
    pub fn ll_subscribe(&self) -> Option<watch::Receiver<Arc<ll::LlView>>> {
        self.ll.as_ref().map(ll::LlPackager::subscribe)
    }

    /// A new description (first sequence headers, a new SPS, or a new publish session).
    pub fn start(&mut self, info: &StreamInfo, generation: u64) {
        self.decider.start_session(generation);
        self.codecs = Some(codecs(info));
        // New codecs, perhaps a new bit rate: the size bound waits for its segments.
        self.segment_limit = MAX_SEGMENT_BYTES;
        if let Some(ll) = &mut self.ll {
            ll.describe(info);
        }
    }

    /// Continues the numbering of an earlier life of the stream (the cluster store's record).
    pub fn resume(&mut self, progress: HlsProgress) {
        self.decider.resume(progress);
    }

    /// Where the numbering stands, for the store.
    pub fn progress(&self) -> HlsProgress {
        self.decider.progress()
    }

    /// Decides whether `frame`, published on this node, starts a segment or a part.
    pub fn decide(&mut self, frame: &Frame) -> decide::Decision {
        let packaging = Packaging {
            open_start: self.open.as_ref().map(|o| o.start_dts),
            oversized: self
                .open
                .as_ref()
                .is_some_and(|o| o.buf.len() > self.segment_limit),
            muxer: self.open.as_ref().map(|o| o.muxer).or(self.muxer),
            tracks: self.codecs.as_ref().map(|c| c.tracks),
            target_ms: (self.segment_target.as_millis() as u64).max(1),
            target_duration: self.playlist.target_duration(),
            frame_interval: self.frame_interval,
            part_ms: self.part_target.map(|d| d.as_millis() as u64),
        };
        let decision = self.decider.decide(
            Candidate {
                dts: frame.dts,
                video: frame.kind == TrackKind::Video,
                keyframe: frame.keyframe,
            },
            &packaging,
        );
        if packaging.oversized
            && decision.segment.is_some()
            && let Some(open) = &mut self.open
        {
            open.size_cut = true;
        }
        decision
    }

    /// The publisher left: the open segment ends at `end` (output ms, as the deciding node
    /// ended it), or, when that is not known, one frame interval after its last frame.
    /// Returns where it ended.
    pub fn stop(&mut self, end: Option<u64>) -> Option<u64> {
        let open = self.open.as_ref()?;
        let end = end.unwrap_or(open.last_dts + self.frame_interval);
        self.close_segment(end);
        Some(end)
    }

    /// Drops the open segment unlisted: frames of it were lost on the way (a relayed unit given
    /// up or cut short), and a segment this node serves is the origin's, byte for byte, or none.
    pub fn discard_open(&mut self) {
        if let Some(ll) = &mut self.ll {
            ll.drop_open();
        }
        if let Some(open) = self.open.take() {
            tracing::info!(stream = %self.name, sequence = open.start.sequence, "segment incomplete here: not listed");
            self.muxer = Some(open.muxer);
        }
    }

    /// Packages one frame, following its segment decision.
    ///
    /// The deciding node's numbers are authoritative: a segment started again (a relay
    /// subscription renewed, replaying the open segment from its start) replaces the partial
    /// copy, and a number at or below what is listed (a new origin that could not continue
    /// the numbering exactly) replaces the segments listed from that number on.
    pub fn push(&mut self, frame: &Frame) {
        let extra = self.extra_segments();
        if let Some(ll) = &mut self.ll {
            ll.set_extra_segments(extra);
        }
        self.package(frame);
        self.account();
    }

    fn package(&mut self, frame: &Frame) {
        if let Some(start) = frame.segment.as_deref() {
            let dts = output_ms(frame.dts, start.timestamp_offset);
            match &self.open {
                // Started again (a replay), or numbered again: the partial copy goes.
                Some(open) if start.sequence <= open.start.sequence => {
                    self.open = None;
                    if let Some(ll) = &mut self.ll {
                        ll.drop_open();
                    }
                }
                // The next segment: this one ends where it starts.
                Some(open) if open.start.sequence.checked_add(1) == Some(start.sequence) => {
                    self.close_segment(dts)
                }
                // Segments missed in between (relayed ones given up): this one ends after its
                // last frame.
                Some(open) => {
                    let end = open.last_dts.saturating_add(self.frame_interval);
                    self.close_segment(end)
                }
                None => {}
            }
            if self
                .playlist
                .segments()
                .last()
                .is_some_and(|last| start.sequence <= last.sequence)
            {
                tracing::info!(stream = %self.name, sequence = start.sequence, "segments numbered again: the later ones are replaced");
                self.playlist.forget_from(start.sequence);
                let mut view = (*self.view.borrow().clone()).clone();
                view.segments.retain(|(s, _)| *s < start.sequence);
                view.listed.retain(|s| s.sequence < start.sequence);
                self.view.send_replace(Arc::new(view));
            }
            self.open_segment(*start, dts);
            if let Some(ll) = &mut self.ll {
                ll.open_segment(*start, dts, frame.keyframe);
            }
        }
        let (Some(open), Some(codecs)) = (&mut self.open, &self.codecs) else {
            // Nothing before the first segment start this node saw.
            return;
        };
        let dts = output_ms(frame.dts, open.start.timestamp_offset);
        open.last_dts = open.last_dts.max(dts);
        if let Some(ll) = &mut self.ll {
            ll.frame(frame, dts);
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
        let dts90 = dts.saturating_add(TS_OFFSET_MS).saturating_mul(90);
        match frame.kind {
            TrackKind::Video => {
                let Some(config) = &codecs.video else { return };
                let Ok(VideoTag {
                    body:
                        VideoBody::Avc(AvcPacket::Nalu {
                            composition_time,
                            data,
                        }),
                    ..
                }) = VideoTag::parse(&frame.body)
                else {
                    return;
                };
                let mut annexb = BytesMut::with_capacity(data.len() + 64);
                if write_annexb(&data, config, frame.keyframe, &mut annexb).is_err() {
                    return;
                }
                let pts90 = output_ms(
                    dts.saturating_add(TS_OFFSET_MS),
                    i64::from(composition_time),
                )
                .saturating_mul(90);
                if let Err(e) =
                    open.muxer
                        .write_video(pts90, dts90, frame.keyframe, &annexb, &mut open.buf)
                {
                    tracing::debug!(stream = %self.name, error = %e, "video frame not packaged");
                }
            }
            TrackKind::Audio => {
                let Some(adts) = &codecs.audio else { return };
                let Ok(AudioTag {
                    body: AudioBody::Aac(AacPacket::Raw(data)),
                    ..
                }) = AudioTag::parse(&frame.body)
                else {
                    return;
                };
                let mut pes = BytesMut::with_capacity(data.len() + 7);
                if adts.write_frame(&data, &mut pes).is_ok()
                    && let Err(e) = open.muxer.write_audio(dts90, &pes, &mut open.buf)
                {
                    tracing::debug!(stream = %self.name, error = %e, "audio frame not packaged");
                }
            }
        }
    }

    fn open_segment(&mut self, start: SegmentStart, dts: u64) {
        let mut muxer = start.muxer;
        let mut buf = self
            .spare
            .take()
            .unwrap_or_else(|| BytesMut::with_capacity(256 * 1024));
        muxer.write_psi(&mut buf);
        self.open = Some(OpenSegment {
            start,
            muxer,
            buf,
            start_dts: dts,
            last_dts: dts,
            size_cut: false,
        });
    }

    /// Closes the open segment at output time `end` and publishes it.
    fn close_segment(&mut self, end: u64) {
        if let Some(ll) = &mut self.ll {
            ll.end_segment(end);
        }
        let Some(open) = self.open.take() else { return };
        self.muxer = Some(open.muxer);
        let start = open.start;
        if open.size_cut {
            tracing::info!(stream = %self.name, sequence = start.sequence, bytes = open.buf.len(), limit = self.segment_limit, "segment cut for its size, between keyframes");
            self.size_cut.push_back(start.sequence);
            if self.size_cut.len() > self.window + EXTRA_SEGMENTS {
                self.size_cut.pop_front();
            }
        }
        let duration = Duration::from_millis(end.saturating_sub(open.start_dts).max(1));
        let segment = Segment {
            uri: format!("{}-{}.ts", self.name, start.sequence),
            sequence: start.sequence,
            discontinuity_sequence: start.discontinuity_sequence,
            duration,
            program_date_time: Some(start.program_date_time),
            discontinuity: start.discontinuity,
        };
        // The segment is held for the whole window (and EXTRA_SEGMENTS more): an exact-size
        // copy, so it does not keep the open segment's 256 KiB working buffer (about 4x a
        // 2 s segment at 200 kbit/s); the buffer is kept for the next segment.
        let data = Bytes::copy_from_slice(&open.buf);
        let mut spare = open.buf;
        spare.clear();
        self.spare = Some(spare);
        self.list(vec![(segment, start.target_duration, data)]);
    }

    /// Lists finished segments that the deciding node made (a new edge starts with the
    /// origin's window, [`SegmentCopy`], oldest first), all in one new view: the same names
    /// and bytes as there. A copy of a segment this node already lists (or of an older one) is
    /// ignored; a partial copy of it (or of an older one) still open here is replaced.
    pub fn backfill(&mut self, copies: Vec<SegmentCopy>) {
        let mut listing = Vec::with_capacity(copies.len());
        for copy in copies {
            let sequence = copy.sequence;
            if let Some(open) = &self.open {
                if open.start.sequence > sequence {
                    continue;
                }
                self.open = None;
                if let Some(ll) = &mut self.ll {
                    ll.drop_open();
                }
            }
            let last = listing
                .last()
                .map(|(s, ..): &(Segment, u32, Bytes)| s.sequence)
                .or_else(|| self.playlist.segments().last().map(|s| s.sequence));
            if last.is_some_and(|last| last >= sequence) {
                continue;
            }
            let segment = Segment {
                uri: format!("{}-{}.ts", self.name, sequence),
                sequence,
                discontinuity_sequence: copy.discontinuity_sequence,
                duration: Duration::from_millis(copy.duration_ms.max(1)),
                program_date_time: copy.program_date_time,
                discontinuity: copy.discontinuity,
            };
            listing.push((segment, copy.target_duration, copy.data));
        }
        self.list(listing);
        self.account();
    }

    /// Lists finished segments `(segment, deciding node's target duration, bytes)`, oldest
    /// first, and publishes the new playlist and bytes once.
    fn list(&mut self, segments: Vec<(Segment, u32, Bytes)>) {
        let mut view = (*self.view.borrow().clone()).clone();
        let mut newest = None;
        for (segment, target_duration, data) in segments {
            let sequence = segment.sequence;
            self.playlist
                .raise_target_duration(u64::from(target_duration));
            let last = self.playlist.segments().last().map(|s| s.sequence);
            if last.is_some_and(|l| l.checked_add(1) != Some(sequence)) {
                tracing::info!(stream = %self.name, last, next = sequence, "segment numbers do not follow: the playlist window starts again");
            }
            tracing::debug!(stream = %self.name, sequence, duration_ms = segment.duration.as_millis() as u64, discontinuity = segment.discontinuity, "segment listed");
            if let Err(e) = self.playlist.push(segment) {
                tracing::warn!(stream = %self.name, error = %e, "segment not listed");
                continue;
            }
            view.segments.push_back((sequence, data));
            newest = Some(sequence);
        }
        let Some(newest) = newest else { return };
        view.listed = self.playlist.segments().cloned().collect();
        view.target_duration = u32::try_from(self.playlist.target_duration()).unwrap_or(u32::MAX);
        // Served: what is listed, and a few older ones for players holding an older playlist
        // (not older ones of a window that restarted).
        let oldest = view.listed.first().map_or(newest, |s| s.sequence);
        let extra = self.extra_segments() as u64;
        view.segments
            .retain(|(s, _)| s.saturating_add(extra) >= oldest && *s <= newest);
        view.playlist = Some(Bytes::from(self.playlist.render()));
        let (mut bits, mut ms, mut peak, mut natural_peak) = (0u64, 0u64, 0u64, 0u64);
        for listed in self.playlist.segments() {
            let size = view
                .segments
                .iter()
                .find(|(s, _)| *s == listed.sequence)
                .map_or(0, |(_, b)| b.len() as u64 * 8);
            let d = (listed.duration.as_millis() as u64).max(1);
            peak = peak.max(size * 1000 / d);
            if !self.size_cut.contains(&listed.sequence) {
                natural_peak = natural_peak.max(size * 1000 / d);
            }
            bits += size;
            ms += d;
        }
        view.peak_bps = peak;
        view.average_bps = bits * 1000 / ms.max(1);
        if natural_peak > 0 {
            let peak = natural_peak;
            let seconds = self
                .playlist
                .target_duration()
                .max(self.segment_target.as_secs())
                .max(1);
            let bytes = (peak / 8)
                .saturating_mul(seconds)
                .saturating_mul(SEGMENT_RATE_FACTOR);
            self.segment_limit = usize::try_from(bytes)
                .unwrap_or(usize::MAX)
                .clamp(MIN_SEGMENT_LIMIT, MAX_SEGMENT_BYTES);
        }
        self.view.send_replace(Arc::new(view));
    }
}

impl std::fmt::Debug for HlsPackager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsPackager")
            .field("name", &self.name)
            .field("decider", &self.decider)
            .finish_non_exhaustive()
    }
}

/// A stream timestamp moved by a (peer-decided) offset, in ms, clamped to the output range.
fn output_ms(dts: u64, offset: i64) -> u64 {
    i64::try_from(dts)
        .unwrap_or(i64::MAX)
        .saturating_add(offset)
        .max(0) as u64
}

fn codecs(info: &StreamInfo) -> Codecs {
    let video = info
        .video
        .as_ref()
        .and_then(|v| match VideoTag::parse(&v.sequence_header) {
            Ok(VideoTag {
                body: VideoBody::Avc(AvcPacket::SequenceHeader(record)),
                ..
            }) => DecoderConfig::parse(&record).ok(),
            _ => None,
        });
    let audio = info
        .audio
        .as_ref()
        .and_then(|a| match AudioTag::parse(&a.sequence_header) {
            Ok(AudioTag {
                body: AudioBody::Aac(AacPacket::SequenceHeader(asc)),
                ..
            }) => AudioSpecificConfig::parse(&asc)
                .ok()
                .and_then(|c| AdtsHeader::new(&c).ok()),
            _ => None,
        });
    let tracks = match (video.is_some(), audio.is_some()) {
        (true, true) => Tracks::VideoAndAudio,
        (true, false) => Tracks::Video,
        (false, true) => Tracks::Audio,
        (false, false) => Tracks::Video,
    };
    Codecs {
        video,
        audio,
        tracks,
    }
}

#[cfg(test)]
mod tests;
