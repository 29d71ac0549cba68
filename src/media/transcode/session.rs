//! One stream's transcoding, driven from its publisher's task.
//!
//! The session waits for the source's video description, then plans the renditions, takes the
//! rendition hubs' publisher roles, builds the lanes and spawns the output task. Source video
//! frames are pushed into the decode lane without ever waiting: a full lane drops the frame and
//! the rest of its GOP (the decoder needs the GOP whole). Audio goes straight to the outputs. A
//! changed video description (a new SPS) restarts the pipeline. Dropping the session closes the
//! lanes and stops the rendition hubs at once.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::decode::{DecodeInput, DecodeStage, Packet};
use super::encode::{EncodeStage, PoolOutput};
use super::lane::{Lane, Rejected};
use super::output::{self, Outputs, RenditionInfo, RenditionOutput, Shared};
use super::x264::EncoderSettings;
use super::{Transcoder, plan};
use crate::media::frame::{AudioTrack, Frame, VideoTrack};
use crate::media::hub::HubKey;
use streamfleet_proto::avc::DecoderConfig;
use streamfleet_proto::flv::{AvcPacket, VideoBody, VideoTag};
use streamfleet_proto::names::RenditionId;

/// Source frames queued for decoding (about 3 s at 30 fps).
pub const DECODE_QUEUE: usize = 90;
/// Decoded pictures queued per rendition (about 1 s at 30 fps; pictures are shared between
/// renditions, so this also bounds the session's raw-picture memory).
pub const RENDITION_QUEUE: usize = 30;
/// Encoded frames and descriptions on their way to the output task.
pub const OUTPUT_QUEUE: usize = 256;

/// A running pipeline.
struct Running {
    /// The source's sequence header it was built for.
    sequence_header: Bytes,
    decode: Arc<Lane<DecodeStage>>,
    encode: Vec<Arc<Lane<EncodeStage>>>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    /// Rendition names, highest first.
    names: Vec<String>,
    /// Dropping source frames until the next keyframe.
    skipping: bool,
    /// Keeps the session gauge honest.
    transcoder: Arc<Transcoder>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.decode.close();
        for lane in &self.encode {
            lane.close();
        }
        self.shared.end();
        self.cancel.cancel();
        self.transcoder.metrics.sessions.dec();
    }
}

/// The transcoding of one published stream.
pub struct TranscodeSession {
    transcoder: Arc<Transcoder>,
    source: HubKey,
    audio: Option<AudioTrack>,
    running: Option<Running>,
}

impl std::fmt::Debug for TranscodeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscodeSession")
            .field("source", &self.source)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl TranscodeSession {
    pub(super) fn new(transcoder: Arc<Transcoder>, source: HubKey) -> Self {
        TranscodeSession {
            transcoder,
            source,
            audio: None,
            running: None,
        }
    }

    /// The source's video description arrived or changed: (re)starts the pipeline.
    pub fn video_track(&mut self, track: &VideoTrack) {
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.sequence_header == track.sequence_header)
        {
            return;
        }
        // Old rendition publishers go first, so the new ones can take the hubs.
        self.running = None;
        let config = match VideoTag::parse(&track.sequence_header) {
            Ok(VideoTag {
                body: VideoBody::Avc(AvcPacket::SequenceHeader(record)),
                ..
            }) => DecoderConfig::parse(&record).ok(),
            _ => None,
        };
        let Some(config) = config else {
            tracing::warn!(stream = %self.source, "unreadable AVC sequence header: not transcoded");
            return;
        };
        self.running = self.start(track, config);
    }

    fn start(&self, track: &VideoTrack, config: DecoderConfig) -> Option<Running> {
        let t = &self.transcoder;
        let planned = plan(&t.config.ladder, track.width, track.height);
        let (tx, rx) = mpsc::channel::<PoolOutput>(OUTPUT_QUEUE);
        let mut outputs = Vec::new();
        let mut names = Vec::new();
        let mut stages = Vec::new();
        let fps = track.frame_rate.unwrap_or(30.0);
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            30.0
        };
        for r in planned {
            let key = HubKey::new(self.source.stream.clone(), RenditionId::Height(r.height));
            let publisher = match t.hubs.get_or_create(&key).publish() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(stream = %self.source, error = %e, "rendition skipped");
                    continue;
                }
            };
            t.metrics.declare(&r.name);
            outputs.push(RenditionOutput::new(publisher, r.name.clone(), r.bitrate));
            let settings = EncoderSettings {
                width: r.width,
                height: r.height,
                bitrate: r.bitrate,
                preset: t.config.preset.clone(),
                tune: t.config.tune.clone(),
                profile: "high",
                fps: ((fps * 1000.0).round() as u32, 1000),
                threads: 1,
            };
            names.push(r.name);
            stages.push(settings);
        }
        // Lanes are built from the lowest up: each feeds the one below it.
        let mut lanes: Vec<Arc<Lane<EncodeStage>>> = Vec::new();
        for (index, settings) in stages.into_iter().enumerate().rev() {
            let name = names[index].clone();
            let stage = EncodeStage::new(
                index,
                name.clone(),
                settings,
                track.frame_rate,
                tx.clone(),
                lanes.first().cloned(),
                names[index + 1..].to_vec(),
                t.metrics.clone(),
                self.source.to_string(),
            );
            let lane = Lane::new(
                stage,
                RENDITION_QUEUE,
                t.pool.clone(),
                format!("{}/{}", self.source, name),
            );
            lanes.insert(0, lane);
        }
        drop(tx);
        if lanes.is_empty() {
            if u64::from(track.width) * u64::from(track.height) > super::MAX_DECODED_PIXELS {
                tracing::warn!(stream = %self.source, width = track.width, height = track.height, "source picture larger than the transcoder decodes (4096x2304): not transcoded");
            } else {
                tracing::info!(stream = %self.source, height = track.height, "no rung at or below the source height: not transcoded");
            }
            return None;
        }
        let mut outputs = Outputs::new(outputs);
        outputs.audio_track(self.audio.clone());
        let shared = Shared::new(outputs);
        let decode = Lane::new(
            DecodeStage::new(
                config,
                lanes.clone(),
                names.clone(),
                t.metrics.clone(),
                self.source.to_string(),
            ),
            DECODE_QUEUE,
            t.pool.clone(),
            format!("{}/decode", self.source),
        );
        let cancel = CancellationToken::new();
        t.shutdown.spawn_service(output::run(
            shared.clone(),
            rx,
            cancel.clone(),
            t.shutdown.clone(),
        ));
        t.metrics.sessions.inc();
        tracing::info!(stream = %self.source, renditions = ?names, "transcoding");
        Some(Running {
            sequence_header: track.sequence_header.clone(),
            decode,
            encode: lanes,
            shared,
            cancel,
            names,
            skipping: false,
            transcoder: t.clone(),
        })
    }

    /// The source's audio description arrived or changed.
    pub fn audio_track(&mut self, track: &AudioTrack) {
        self.audio = Some(track.clone());
        if let Some(r) = &self.running
            && let Some(o) = r.shared.outputs().as_mut()
        {
            o.audio_track(self.audio.clone());
        }
    }

    /// A source video frame (`data`: length-prefixed NAL units, `cts`: composition offset).
    /// Never waits: when the decode queue is full the rest of the GOP is dropped.
    pub fn video(&mut self, dts: u64, cts: i32, keyframe: bool, data: Bytes) {
        let Some(r) = &mut self.running else { return };
        if r.skipping && !keyframe {
            return;
        }
        let packet = Packet {
            dts,
            pts: dts as i64 + i64::from(cts),
            keyframe,
            data,
        };
        match r.decode.push(DecodeInput::Packet(packet)) {
            Ok(()) => r.skipping = false,
            Err(Rejected::Full(_)) => {
                if !r.skipping {
                    for name in &r.names {
                        self.transcoder.metrics.dropped_gop(name);
                    }
                }
                r.skipping = true;
            }
            Err(Rejected::Closed(_)) => {}
        }
    }

    /// A source audio frame: passed through to every rendition.
    pub fn audio(&mut self, frame: &Frame) {
        if let Some(r) = &self.running
            && let Some(o) = r.shared.outputs().as_mut()
        {
            o.audio(frame);
        }
    }

    /// Renditions described so far (highest first).
    pub fn renditions(&self) -> Vec<RenditionInfo> {
        self.running
            .as_ref()
            .map_or_else(Vec::new, |r| r.shared.renditions())
    }

    /// Whether renditions were described since the last call (time to update the stream record).
    pub fn take_changed(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.shared.take_changed())
    }

    /// Items queued in the decode lane and in the fullest rendition lane: offline drivers feed
    /// while these are low, so that nothing is shed.
    pub fn queued(&self) -> (usize, usize) {
        self.running.as_ref().map_or((0, 0), |r| {
            let encode = r.encode.iter().map(|l| l.len()).max().unwrap_or(0);
            (r.decode.len(), encode)
        })
    }

    /// End of an offline input: decodes and encodes what is still inside the codecs.
    pub fn finish(&mut self) {
        if let Some(r) = &self.running {
            // A full queue cannot take the flush: the codecs' last frames are then not drained.
            let _ = r.decode.push(DecodeInput::Flush);
        }
    }

    /// Whether every lane is idle (nothing queued or in progress).
    pub fn is_idle(&self) -> bool {
        self.running
            .as_ref()
            .is_none_or(|r| r.decode.is_idle() && r.encode.iter().all(|l| l.is_idle()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Rung, TranscodeConfig};
    use crate::media::frame::TrackKind;
    use crate::media::hub::{HubEvent, HubMetrics, Hubs, SubscriberKind, Subscription};
    use crate::media::transcode::TranscodeMetrics;
    use crate::media::transcode::x264::{Encoder, Image, test_settings};
    use crate::runtime::Shutdown;
    use bytes::BytesMut;
    use std::time::Duration;

    /// A 320x180 x264 stream: (sequence header tag body, frames (dts, keyframe, data)).
    fn source(frames: usize, gop: usize) -> (VideoTrack, Vec<(u64, bool, Bytes)>) {
        let mut enc = Encoder::open(&test_settings(320, 180, 500_000)).unwrap();
        let config =
            DecoderConfig::from_parameter_sets(enc.sps().clone(), enc.pps().clone()).unwrap();
        let mut record = BytesMut::new();
        config.encode(&mut record).unwrap();
        let mut tag = BytesMut::new();
        VideoTag::avc_sequence_header(record.freeze())
            .encode(&mut tag)
            .unwrap();
        let track = VideoTrack {
            sequence_header: tag.freeze(),
            width: 320,
            height: 180,
            codec: config.codec_string(),
            frame_rate: Some(30.0),
        };
        let (u, v) = (vec![128u8; 160 * 90], vec![128u8; 160 * 90]);
        let mut out = Vec::new();
        for i in 0..frames {
            let y: Vec<u8> = (0..320 * 180).map(|p| ((p + i * 7) % 251) as u8).collect();
            let img = Image {
                width: 320,
                height: 180,
                planes: [&y, &u, &v],
                strides: [320, 160, 160],
            };
            let pts = i as i64 * 33;
            if let Some(e) = enc.encode(Some((img, pts, i % gop == 0))).unwrap() {
                out.push((e.pts as u64, e.keyframe, e.data));
            }
        }
        while let Some(e) = enc.encode(None).unwrap() {
            out.push((e.pts as u64, e.keyframe, e.data));
        }
        (track, out)
    }

    fn transcoder(hubs: Arc<Hubs>) -> Arc<Transcoder> {
        Transcoder::new(
            TranscodeConfig {
                preset: "ultrafast".into(),
                tune: None,
                threads: 2,
                ladder: vec![
                    Rung {
                        height: 360,
                        bitrate: 1_000_000,
                    },
                    Rung {
                        height: 120,
                        bitrate: 200_000,
                    },
                    Rung {
                        height: 90,
                        bitrate: 100_000,
                    },
                ],
            },
            hubs,
            TranscodeMetrics::default(),
            Shutdown::new(),
        )
        .unwrap()
    }

    fn subscribe(hubs: &Hubs, name: &str) -> Subscription {
        hubs.get_or_create(&HubKey::from_player_name("live", name))
            .subscribe_with_capacity(SubscriberKind::Internal, 4096)
    }

    /// (dts, keyframe) of the video frames a subscription received, and its last description.
    fn drain(sub: &mut Subscription) -> (Vec<(u64, bool)>, Option<VideoTrack>) {
        let (mut frames, mut track) = (Vec::new(), None);
        while let Ok(e) = sub.try_recv() {
            match e {
                HubEvent::Start { info, .. } => track = info.video.clone(),
                HubEvent::Frame(f) if f.kind == TrackKind::Video => {
                    frames.push((f.dts, f.keyframe))
                }
                _ => {}
            }
        }
        (frames, track)
    }

    async fn settle(session: &TranscodeSession) {
        for _ in 0..2000 {
            if session.is_idle() {
                // Let the output task publish what the pool sent.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("pool never went idle");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renditions_are_keyframe_aligned_with_the_source() {
        let hubs = Arc::new(Hubs::new(HubMetrics::default(), None));
        let t = transcoder(hubs.clone());
        let mut s120 = subscribe(&hubs, "cam_120p");
        let mut s90 = subscribe(&hubs, "cam_90p");
        let mut session = t.session(HubKey::source("live", "cam"));
        let (track, frames) = source(60, 15);
        session.video_track(&track);
        assert!(
            hubs.get(&HubKey::from_player_name("live", "cam_360p"))
                .is_none(),
            "360p is above the source: no hub"
        );
        for (dts, key, data) in &frames {
            // Fed at the pool's pace: nothing is shed.
            while session.queued().0 > 2 || session.queued().1 > 8 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            session.video(*dts, 0, *key, data.clone());
        }
        session.finish();
        settle(&session).await;
        let source_keys: Vec<u64> = frames.iter().filter(|f| f.1).map(|f| f.0).collect();
        assert_eq!(source_keys, vec![0, 495, 990, 1485]);
        for (name, sub, width) in [("120p", &mut s120, 214), ("90p", &mut s90, 160)] {
            let (got, track) = drain(sub);
            let track = track.unwrap_or_else(|| panic!("{name} described"));
            assert_eq!(
                (track.width, track.height),
                (width, name.trim_end_matches('p').parse().unwrap())
            );
            assert_eq!(
                got.len(),
                60,
                "{name}: every frame encoded (encoded {}, dropped GOPs {}, decoded {})",
                t.metrics().frames_of(name),
                t.metrics().dropped_gops_of(name),
                t.metrics().decoded.get()
            );
            let keys: Vec<u64> = got.iter().filter(|f| f.1).map(|f| f.0).collect();
            assert_eq!(
                keys, source_keys,
                "{name}: IDRs exactly at the source keyframes"
            );
            let dts: Vec<u64> = got.iter().map(|f| f.0).collect();
            assert_eq!(
                dts,
                frames.iter().map(|f| f.0).collect::<Vec<_>>(),
                "{name}: source timing"
            );
        }
        let names: Vec<String> = session
            .renditions()
            .into_iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(names, vec!["120p", "90p"]);
        assert!(session.take_changed());
        drop(session);
        assert!(
            matches!(s90.try_recv(), Ok(HubEvent::Stop { .. })),
            "dropping the session stops the rendition hubs at once"
        );
        assert_eq!(t.metrics().sessions.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_drops_whole_gops_and_never_waits() {
        let hubs = Arc::new(Hubs::new(HubMetrics::default(), None));
        let t = transcoder(hubs.clone());
        let mut s120 = subscribe(&hubs, "cam_120p");
        let mut session = t.session(HubKey::source("live", "cam"));
        let (track, frames) = source(300, 10);
        session.video_track(&track);
        let started = std::time::Instant::now();
        for (dts, key, data) in &frames {
            session.video(*dts, 0, *key, data.clone());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "pushing 300 frames never waits for the pool"
        );
        session.finish();
        settle(&session).await;
        let dropped = t.metrics().dropped_gops_of("120p") + t.metrics().dropped_gops_of("90p");
        assert!(dropped > 0, "the flood was shed");
        let (got, _) = drain(&mut s120);
        assert!(!got.is_empty() && got.len() < 300, "{} frames", got.len());
        assert!(got[0].1, "starts on a keyframe");
        // Every gap in the output ends on a keyframe: whole GOPs were dropped.
        for pair in got.windows(2) {
            if pair[1].0 - pair[0].0 > 33 {
                assert!(
                    pair[1].1,
                    "after a gap at {} the next frame is an IDR",
                    pair[0].0
                );
                assert_eq!(pair[1].0 % 330, 0, "and a source keyframe");
            }
        }
    }
}
