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
use crate::proto::avc::DecoderConfig;
use crate::proto::flv::{AvcPacket, VideoBody, VideoTag};

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
        let mut lanes = Vec::new();
        let mut names = Vec::new();
        let fps = track.frame_rate.unwrap_or(30.0);
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            30.0
        };
        for r in planned {
            let key = HubKey {
                app: self.source.app.clone(),
                name: format!("{}_{}", self.source.name, r.name),
            };
            let publisher = match t.hubs.get_or_create(&key).publish() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(stream = %self.source, error = %e, "rendition skipped");
                    continue;
                }
            };
            t.metrics.declare(&r.name);
            let index = outputs.len();
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
            let stage = EncodeStage::new(
                index,
                r.name.clone(),
                settings,
                track.frame_rate,
                tx.clone(),
                t.metrics.clone(),
                self.source.to_string(),
            );
            lanes.push(Lane::new(
                stage,
                RENDITION_QUEUE,
                t.pool.clone(),
                format!("{}/{}", self.source, r.name),
            ));
            names.push(r.name);
        }
        drop(tx);
        if lanes.is_empty() {
            tracing::info!(stream = %self.source, height = track.height, "no rung at or below the source height: not transcoded");
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

    /// How full the decode queue is (0.0 .. 1.0): offline drivers wait while it is high.
    pub fn decode_fill(&self) -> f64 {
        self.running
            .as_ref()
            .map_or(0.0, |r| r.decode.len() as f64 / r.decode.capacity() as f64)
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
