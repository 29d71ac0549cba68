//! The encode stage of one rendition: decoded source pictures in, FLV video frames out over the
//! session's bounded output channel.
//!
//! On its first picture the stage opens x264 (on the pool, like all the heavy work) and sends the
//! rendition's video description (sequence header from x264's SPS/PPS). Each picture is scaled to
//! the rung's size; the scaled picture goes on to the next rendition down (if it takes this GOP),
//! which scales from it, then this rendition encodes it, with an IDR forced on source keyframes. x264 emits frames in
//! input order (no B-frames), so each frame gets back the decode and presentation timestamps of
//! its source picture. If the output channel is full the frame is dropped and so is the rest of
//! its GOP (later frames would reference it), counted as a dropped GOP.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::TranscodeMetrics;
use super::decode::SourcePicture;
use super::lane::{Lane, Rejected, Stage};
use super::scale::{Scaler, image};
use super::x264::{Encoded, Encoder, EncoderSettings};
use crate::media::frame::{Frame, TrackKind, VideoTrack};
use streamfleet_proto::avc::DecoderConfig;
use streamfleet_proto::flv::VideoTag;

/// Timestamps of pictures inside x264 (its lookahead is far shorter).
const MAX_IN_FLIGHT: usize = 256;

/// What the pool sends back to the session's output task.
#[derive(Debug)]
pub enum PoolOutput {
    /// Rendition `index` is ready: its video description.
    Described {
        /// Index in the session's renditions (0 = highest).
        index: usize,
        /// Video track of the rendition.
        track: VideoTrack,
    },
    /// An encoded frame of rendition `index`.
    Video {
        /// Index in the session's renditions.
        index: usize,
        /// FLV video tag body and timing.
        frame: Frame,
    },
}

/// What an encode lane processes.
#[derive(Debug)]
pub enum EncodeInput {
    /// A picture to scale and encode.
    Picture(Arc<SourcePicture>),
    /// Drain x264's delayed frames (end of an offline run).
    Flush,
}

/// One rendition's scaler and encoder.
pub struct EncodeStage {
    index: usize,
    name: String,
    settings: EncoderSettings,
    frame_rate: Option<f64>,
    encoder: Option<Encoder>,
    /// Opening failed once: the rendition stays silent.
    failed: bool,
    scaler: Option<Scaler>,
    /// (pts, dts) of pictures inside x264, in order.
    in_flight: VecDeque<(i64, u64)>,
    out: mpsc::Sender<PoolOutput>,
    /// The description reached the output task.
    described: bool,
    /// Dropping output until the next IDR.
    skipping: bool,
    /// The next rendition down, fed with this one's scaled pictures.
    next: Option<Arc<Lane<EncodeStage>>>,
    /// Names of the renditions below this one (for their dropped-GOP counts).
    below: Vec<String>,
    /// The next lane was full during this GOP: nothing more of it goes down.
    next_broken: bool,
    metrics: TranscodeMetrics,
    stream: String,
}

impl std::fmt::Debug for EncodeStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodeStage")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EncodeStage {
    /// A stage for rendition `index` (`name` like `480p`), sending to `out`, feeding `next` (the
    /// rendition below, whose own lower renditions are named in `below` after it).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        name: String,
        settings: EncoderSettings,
        frame_rate: Option<f64>,
        out: mpsc::Sender<PoolOutput>,
        next: Option<Arc<Lane<EncodeStage>>>,
        below: Vec<String>,
        metrics: TranscodeMetrics,
        stream: String,
    ) -> Self {
        EncodeStage {
            index,
            name,
            settings,
            frame_rate,
            encoder: None,
            failed: false,
            scaler: None,
            in_flight: VecDeque::new(),
            out,
            described: false,
            skipping: false,
            next,
            below,
            next_broken: false,
            metrics,
            stream,
        }
    }

    fn open(&mut self) -> Option<&mut Encoder> {
        if self.encoder.is_none() && !self.failed {
            match Encoder::open(&self.settings) {
                Ok(e) => self.encoder = Some(e),
                Err(e) => {
                    self.failed = true;
                    self.metrics.errors.inc();
                    tracing::error!(stream = %self.stream, rendition = %self.name, error = %e, "x264 not opened: rendition disabled");
                }
            }
        }
        self.encoder.as_mut()
    }

    /// The rendition's video track, from the encoder's parameter sets.
    fn track(&self, encoder: &Encoder) -> Option<VideoTrack> {
        let config =
            DecoderConfig::from_parameter_sets(encoder.sps().clone(), encoder.pps().clone())
                .ok()?;
        let mut record = BytesMut::new();
        config.encode(&mut record).ok()?;
        let mut tag = BytesMut::new();
        VideoTag::avc_sequence_header(record.freeze())
            .encode(&mut tag)
            .ok()?;
        Some(VideoTrack {
            sequence_header: tag.freeze(),
            width: self.settings.width,
            height: self.settings.height,
            codec: config.codec_string(),
            frame_rate: self.frame_rate,
        })
    }

    fn describe(&mut self) {
        if self.described {
            return;
        }
        let Some(track) = self.encoder.as_ref().and_then(|e| self.track(e)) else {
            return;
        };
        let index = self.index;
        if self
            .out
            .try_send(PoolOutput::Described { index, track })
            .is_ok()
        {
            self.described = true;
        }
    }

    /// Scales `picture` to this rendition's size (None if it cannot be).
    fn scale(&mut self, picture: &SourcePicture) -> Option<Arc<SourcePicture>> {
        let shape = (
            picture.frame.format(),
            picture.frame.width(),
            picture.frame.height(),
        );
        if self.scaler.as_ref().is_none_or(|s| s.input() != shape) {
            match Scaler::new(shape, self.settings.width, self.settings.height) {
                Ok(s) => self.scaler = Some(s),
                Err(e) => {
                    self.metrics.errors.inc();
                    tracing::warn!(stream = %self.stream, rendition = %self.name, error = %e, ?shape, "picture not scaled");
                    return None;
                }
            }
        }
        let frame = match self.scaler.as_mut()?.run(&picture.frame) {
            Ok(f) => f,
            Err(e) => {
                self.metrics.errors.inc();
                tracing::debug!(stream = %self.stream, rendition = %self.name, error = %e, "picture not scaled");
                return None;
            }
        };
        Some(Arc::new(SourcePicture {
            frame,
            pts: picture.pts,
            dts: picture.dts,
            keyframe: picture.keyframe,
            renditions: picture.renditions,
        }))
    }

    /// Hands a scaled picture to the next rendition down, if it takes this GOP.
    fn forward(&mut self, scaled: &Arc<SourcePicture>) {
        if scaled.keyframe {
            self.next_broken = false;
        }
        let Some(next) = &self.next else { return };
        if self.index + 1 >= scaled.renditions || self.next_broken {
            return;
        }
        match next.push(EncodeInput::Picture(scaled.clone())) {
            Ok(()) => {}
            Err(Rejected::Full(_)) => {
                self.next_broken = true;
                for name in &self.below {
                    self.metrics.dropped_gop(name);
                }
            }
            Err(Rejected::Closed(_)) => self.next_broken = true,
        }
    }

    fn encode(&mut self, picture: &SourcePicture) {
        let Some(encoder) = &mut self.encoder else {
            return;
        };
        if self.in_flight.len() == MAX_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((picture.pts, picture.dts));
        let result = encoder.encode(Some((image(&picture.frame), picture.pts, picture.keyframe)));
        self.emit(result);
    }

    fn flush(&mut self) {
        loop {
            let Some(encoder) = &mut self.encoder else {
                return;
            };
            if encoder.delayed_frames() == 0 {
                return;
            }
            let result = encoder.encode(None);
            if matches!(result, Ok(None) | Err(_)) {
                self.emit(result);
                return;
            }
            self.emit(result);
        }
    }

    fn emit(&mut self, result: Result<Option<Encoded>, super::x264::X264Error>) {
        let encoded = match result {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                self.metrics.errors.inc();
                tracing::warn!(stream = %self.stream, rendition = %self.name, error = %e, "frame not encoded");
                return;
            }
        };
        // Pictures x264 dropped (none with these settings) leave their timestamps behind.
        let mut dts = None;
        while let Some((pts, d)) = self.in_flight.pop_front() {
            if pts == encoded.pts {
                dts = Some(d);
                break;
            }
        }
        let dts = dts.unwrap_or_else(|| u64::try_from(encoded.pts).unwrap_or(0));
        self.metrics.encoded(&self.name);
        self.describe();
        if !self.described {
            self.skipping = true;
        }
        if self.skipping && !encoded.keyframe {
            return;
        }
        self.skipping = false;
        let cts = i32::try_from(encoded.pts - dts as i64).unwrap_or(0);
        let mut body = BytesMut::with_capacity(encoded.data.len() + 5);
        if VideoTag::avc_frame(encoded.keyframe, cts, encoded.data)
            .encode(&mut body)
            .is_err()
        {
            return;
        }
        let frame = Frame::new(TrackKind::Video, dts, encoded.keyframe, Bytes::from(body));
        let index = self.index;
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.out.try_send(PoolOutput::Video { index, frame })
        {
            self.skipping = true;
            self.metrics.dropped_gop(&self.name);
        }
    }
}

impl Stage for EncodeStage {
    type Item = EncodeInput;

    fn process(&mut self, item: EncodeInput) {
        // A rendition whose encoder failed still scales for the ones below it.
        if self.open().is_some() {
            self.describe();
        }
        match item {
            EncodeInput::Picture(p) => {
                let Some(scaled) = self.scale(&p) else { return };
                self.forward(&scaled);
                self.encode(&scaled);
            }
            EncodeInput::Flush => {
                self.flush();
                if let Some(next) = &self.next {
                    // A full lane cannot take the flush; its delayed frames are then lost.
                    let _ = next.push(EncodeInput::Flush);
                }
            }
        }
    }
}
