//! HLS packaging of one hub: frames in, MPEG-TS segments and a live playlist out, all in memory.
//!
//! The publisher's task pushes every frame here (after the hub's fan-out). A segment opens on a
//! keyframe and is cut at the first keyframe after `hls.segment` (audio-only streams cut on any
//! frame). A new publish session (republish) starts a segment marked discontinuous. HTTP
//! handlers read the rendered playlist and segment bytes; a watch channel tells waiters when the
//! first segment exists.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::frame::{Frame, StreamInfo, TrackKind};
use crate::config::HlsConfig;
use streamfleet_proto::aac::{AdtsHeader, AudioSpecificConfig};
use streamfleet_proto::avc::{DecoderConfig, write_annexb};
use streamfleet_proto::flv::{AacPacket, AudioBody, AudioTag, AvcPacket, VideoBody, VideoTag};
use streamfleet_proto::hls::{MediaPlaylist, Segment};
use streamfleet_proto::ts::{Tracks, TsMuxer};

/// Segments kept beyond the playlist window, for players that fetched an older playlist.
const EXTRA_SEGMENTS: usize = 3;
/// A segment that grows past this without a keyframe is cut anyway (bounded memory).
const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// Timestamps are shifted so that a negative composition offset cannot make a PTS negative.
const TS_OFFSET_MS: u64 = 1_000;

/// Codec state derived from the stream description.
struct Codecs {
    video: Option<DecoderConfig>,
    audio: Option<AdtsHeader>,
    tracks: Tracks,
}

struct OpenSegment {
    seq: u64,
    buf: BytesMut,
    start_dts: u64,
    last_dts: u64,
    discontinuity: bool,
    program_date_time: i64,
}

/// What the HTTP handlers read.
#[derive(Debug, Clone, Default)]
pub struct HlsView {
    /// Rendered playlist, absent until the first segment exists.
    pub playlist: Option<Bytes>,
    /// `(sequence number, bytes)` of segments still served.
    pub segments: VecDeque<(u64, Bytes)>,
}

/// The packager of one hub.
pub struct HlsPackager {
    /// Segment URIs are `{name}-{seq}.ts`.
    name: String,
    segment_target: Duration,
    playlist: MediaPlaylist,
    muxer: Option<TsMuxer>,
    codecs: Option<Codecs>,
    info: Arc<StreamInfo>,
    generation: u64,
    open: Option<OpenSegment>,
    next_seq: u64,
    /// The next segment starts after a break.
    discontinuity: bool,
    /// Wall clock of timeline position 0 of this generation (unix ms).
    anchor: Option<(u64, i64)>,
    view: watch::Sender<Arc<HlsView>>,
    /// Typical frame interval, to give the last segment of a session a duration.
    frame_interval: u64,
    /// Added to this generation's timestamps so that output time never goes back across a
    /// republish (players and edges keep a monotonic timeline; the segment is still marked
    /// discontinuous).
    offset: i64,
    /// The next frame starts a new generation: compute `offset` from it.
    rebase: bool,
    /// Largest output timestamp written (ms).
    last_out: Option<u64>,
    /// Output timestamp of the last video frame (for `frame_interval`).
    last_video: Option<u64>,
}

impl HlsPackager {
    /// A packager for the hub named `name` whose segment numbers start at `first_seq` (the hub
    /// passes its creation time in seconds, so segment names never repeat across hub lifetimes
    /// and can be cached).
    pub fn new(name: &str, config: &HlsConfig, first_seq: u64) -> Self {
        let window = NonZeroUsize::new(config.window).unwrap_or(NonZeroUsize::MIN);
        HlsPackager {
            name: name.to_owned(),
            segment_target: config.segment,
            playlist: MediaPlaylist::new(config.segment, window),
            muxer: None,
            codecs: None,
            info: Arc::new(StreamInfo::default()),
            generation: 0,
            open: None,
            next_seq: first_seq,
            discontinuity: false,
            anchor: None,
            view: watch::Sender::new(Arc::new(HlsView::default())),
            frame_interval: 33,
            offset: 0,
            rebase: false,
            last_out: None,
            last_video: None,
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

    /// A new description: on a new generation (republish) the current segment closes and the
    /// next one is marked discontinuous.
    pub fn start(&mut self, info: Arc<StreamInfo>, generation: u64) {
        if generation != self.generation {
            self.close_segment();
            if self.generation != 0 {
                self.discontinuity = true;
            }
            self.generation = generation;
            self.anchor = None;
            self.rebase = true;
        }
        let codecs = codecs(&info);
        // A track appearing or disappearing changes the PMT: start a new segment with it.
        if self.codecs.as_ref().map(|c| c.tracks) != Some(codecs.tracks) {
            self.close_segment();
            self.muxer = Some(TsMuxer::new(codecs.tracks));
        }
        // The first packets after a break carry discontinuity_indicator too.
        if self.discontinuity
            && let Some(m) = &mut self.muxer
        {
            m.set_discontinuity();
        }
        self.codecs = Some(codecs);
        self.info = info;
    }

    /// The publisher left: the open segment is finished so the tail of the stream plays.
    pub fn stop(&mut self) {
        self.close_segment();
    }

    /// Packages one frame.
    pub fn push(&mut self, frame: &Frame) {
        if self.codecs.is_none() {
            return;
        }
        if std::mem::take(&mut self.rebase) {
            self.offset = match self.last_out {
                Some(last) => (last + self.frame_interval) as i64 - frame.dts as i64,
                None => 0,
            };
        }
        let dts = (frame.dts as i64 + self.offset).max(0) as u64;
        self.last_out = Some(self.last_out.map_or(dts, |l| l.max(dts)));
        let Some(codecs) = &self.codecs else { return };
        let has_video = codecs.tracks.has_video();
        let cut_here = match frame.kind {
            TrackKind::Video => frame.keyframe,
            TrackKind::Audio => !has_video,
        };
        if cut_here {
            // Cut at the first keyframe past a multiple of the target duration on the stream's
            // timeline: every rendition of a stream (same timestamps, keyframe-aligned) then cuts
            // at the same frames, whenever its packager started.
            let target = (self.segment_target.as_millis() as u64).max(1);
            let due = self
                .open
                .as_ref()
                .is_none_or(|s| dts / target != s.start_dts / target);
            if due {
                self.close_segment_at(Some(dts));
                self.open_segment(dts);
            }
        }
        if let Some(open) = &self.open
            && open.buf.len() > MAX_SEGMENT_BYTES
        {
            self.close_segment_at(Some(dts));
            self.open_segment(dts);
        }
        let (Some(open), Some(muxer), Some(codecs)) =
            (&mut self.open, &mut self.muxer, &self.codecs)
        else {
            // Nothing is written before the first keyframe: players need one to start.
            return;
        };
        open.last_dts = open.last_dts.max(dts);
        if frame.kind == TrackKind::Video {
            if let Some(prev) = self.last_video
                && dts > prev
                && dts - prev < 1000
            {
                self.frame_interval = dts - prev;
            }
            self.last_video = Some(dts);
        }
        let dts90 = (dts + TS_OFFSET_MS) * 90;
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
                let pts90 =
                    ((dts + TS_OFFSET_MS) as i64 + i64::from(composition_time)).max(0) as u64 * 90;
                if let Err(e) =
                    muxer.write_video(pts90, dts90, frame.keyframe, &annexb, &mut open.buf)
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
                    && let Err(e) = muxer.write_audio(dts90, &pes, &mut open.buf)
                {
                    tracing::debug!(stream = %self.name, error = %e, "audio frame not packaged");
                }
            }
        }
    }

    fn open_segment(&mut self, dts: u64) {
        let Some(muxer) = &mut self.muxer else { return };
        let anchor = *self.anchor.get_or_insert_with(|| (dts, unix_ms_now()));
        let mut buf = BytesMut::with_capacity(256 * 1024);
        muxer.write_psi(&mut buf);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.open = Some(OpenSegment {
            seq,
            buf,
            start_dts: dts,
            last_dts: dts,
            discontinuity: std::mem::take(&mut self.discontinuity),
            program_date_time: anchor.1 + (dts as i64 - anchor.0 as i64),
        });
    }

    fn close_segment(&mut self) {
        self.close_segment_at(None);
    }

    /// Closes the open segment. Ended by the next segment's first frame (`next`): exact.
    /// Ended by a stop: up to the last frame plus one frame interval.
    fn close_segment_at(&mut self, next: Option<u64>) {
        let Some(open) = self.open.take() else { return };
        let end = next.unwrap_or(open.last_dts + self.frame_interval);
        let duration = Duration::from_millis(end.saturating_sub(open.start_dts).max(1));
        let segment = Segment {
            uri: format!("{}-{}.ts", self.name, open.seq),
            duration,
            program_date_time: Some(open.program_date_time),
            discontinuity: open.discontinuity,
        };
        if let Err(e) = self.playlist.push(segment) {
            tracing::warn!(stream = %self.name, error = %e, "segment not listed");
            return;
        }
        let mut view = (*self.view.borrow().clone()).clone();
        view.segments.push_back((open.seq, open.buf.freeze()));
        let keep = self.playlist.segments().len() + EXTRA_SEGMENTS;
        while view.segments.len() > keep {
            view.segments.pop_front();
        }
        view.playlist = Some(Bytes::from(self.playlist.render()));
        self.view.send_replace(Arc::new(view));
    }
}

impl std::fmt::Debug for HlsPackager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsPackager")
            .field("name", &self.name)
            .field("generation", &self.generation)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
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

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::VideoTrack;
    use streamfleet_proto::avc::fixtures::{PPS_X264, SPS_640X360};

    fn encode_video(tag: VideoTag) -> Bytes {
        let mut b = BytesMut::new();
        tag.encode(&mut b).unwrap();
        b.freeze()
    }

    fn info() -> Arc<StreamInfo> {
        let config = DecoderConfig::from_parameter_sets(
            Bytes::from_static(SPS_640X360),
            Bytes::from_static(PPS_X264),
        )
        .unwrap();
        let mut record = BytesMut::new();
        config.encode(&mut record).unwrap();
        Arc::new(StreamInfo {
            video: Some(VideoTrack {
                sequence_header: encode_video(VideoTag::avc_sequence_header(record.freeze())),
                width: 640,
                height: 360,
                codec: "avc1.64001e".into(),
                frame_rate: Some(30.0),
            }),
            ..Default::default()
        })
    }

    /// A 30 fps frame with one slice NAL (IDR on keyframes), 4-byte length prefixes.
    fn frame(n: u64) -> Frame {
        let keyframe = n.is_multiple_of(30);
        let nal: &[u8] = if keyframe {
            &[0x65, 0x88, 0x84, 0x00]
        } else {
            &[0x41, 0x9a, 0x02, 0x00]
        };
        let mut au = (nal.len() as u32).to_be_bytes().to_vec();
        au.extend_from_slice(nal);
        Frame {
            kind: TrackKind::Video,
            dts: n * 1000 / 30,
            keyframe,
            body: encode_video(VideoTag::avc_frame(keyframe, 0, Bytes::from(au))),
            published_us: 0,
            rtmp_chunks: Default::default(),
        }
    }

    fn config() -> HlsConfig {
        HlsConfig {
            segment: Duration::from_secs(2),
            window: 3,
            wait: Duration::from_secs(1),
        }
    }

    #[test]
    fn cuts_on_keyframes_slides_the_window_and_marks_republish() {
        let mut p = HlsPackager::new("demo", &config(), 0);
        let views = p.subscribe();
        p.start(info(), 1);
        for n in 0..(7 * 30) {
            p.push(&frame(n));
        }
        let view = p.view();
        assert_eq!(
            view.segments.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        for (_, ts) in &view.segments {
            assert_eq!(ts.len() % 188, 0);
            assert!(
                ts.chunks(188).all(|p| p[0] == 0x47),
                "every packet starts with the sync byte"
            );
        }
        let text = std::str::from_utf8(view.playlist.as_ref().unwrap())
            .unwrap()
            .to_owned();
        let playlist = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("valid playlist");
        assert_eq!(playlist.segments.len(), 3);
        for s in &playlist.segments {
            assert!(
                (s.duration - 2.0).abs() < 0.001,
                "cut at the first keyframe after 2s: {}",
                s.duration
            );
            assert!(s.program_date_time.is_some());
            assert!(u64::from(playlist.target_duration as u32) >= s.duration.round() as u64);
        }
        assert_eq!(playlist.segments[0].uri, "demo-0.ts");
        assert!(views.has_changed().unwrap());

        // The publisher leaves: the open segment (6s..7s) is published.
        p.stop();
        let v = p.view();
        assert_eq!(v.segments.back().unwrap().0, 3);
        // Republish: a new generation, timestamps from zero again, a discontinuity.
        p.start(info(), 2);
        for n in 0..(3 * 30) {
            p.push(&frame(n));
        }
        let text = String::from_utf8(p.view().playlist.as_ref().unwrap().to_vec()).unwrap();
        let playlist = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert_eq!(playlist.media_sequence, 2, "window of 3 slid");
        let uris: Vec<&str> = playlist.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["demo-2.ts", "demo-3.ts", "demo-4.ts"]);
        assert!(!playlist.segments[1].discontinuity);
        assert!(
            playlist.segments[2].discontinuity,
            "republished segment is discontinuous:\n{text}"
        );
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"));
        // Segments beyond the window stay fetchable for a while.
        assert!(p.view().segments.iter().any(|(s, _)| *s == 1));
    }

    #[test]
    fn nothing_before_the_first_keyframe() {
        let mut p = HlsPackager::new("x", &config(), 0);
        p.start(info(), 1);
        for n in 1..29 {
            p.push(&frame(n));
        }
        p.stop();
        assert!(p.view().playlist.is_none(), "no keyframe, no segment");
    }

    #[test]
    fn packagers_started_at_different_keyframes_cut_at_the_same_frames() {
        let wide = HlsConfig {
            window: 6,
            ..config()
        };
        let mut early = HlsPackager::new("a", &wide, 0);
        let mut late = HlsPackager::new("a_240p", &wide, 0);
        early.start(info(), 1);
        late.start(info(), 1);
        for n in 0..(9 * 30) {
            early.push(&frame(n));
            if n >= 30 {
                late.push(&frame(n));
            }
        }
        let starts = |p: &HlsPackager| -> Vec<u64> {
            let text = String::from_utf8(p.view().playlist.as_ref().unwrap().to_vec()).unwrap();
            let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
            let mut t = 0.0;
            pl.segments
                .iter()
                .map(|s| {
                    let start = t;
                    t += s.duration;
                    (start * 1000.0).round() as u64
                })
                .collect()
        };
        // early: 0-2, 2-4, 4-6, 6-8; late: 1-2, 2-4, 4-6, 6-8 (same cuts after its first).
        assert_eq!(early.view().segments.len(), 4);
        let e = starts(&early);
        let l: Vec<u64> = starts(&late).iter().map(|s| s + 1000).collect();
        assert_eq!(&e[1..], &l[1..], "aligned cuts");
    }
}
