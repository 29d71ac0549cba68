//! The decode stage of a session: source access units in, decoded pictures out to every
//! rendition lane that takes this GOP.
//!
//! Each FLV access unit (length-prefixed NAL units) is rewritten as Annex B with the SPS/PPS in
//! front of keyframes and fed to libavcodec's H.264 decoder (one thread: the pool provides the
//! parallelism). Pictures come out in presentation order; each gets the decode timestamp of the
//! packet at the same position in decode order, so that renditions without B-frames keep valid
//! timestamps and their IDRs keep the source keyframes' decode timestamps (the HLS packagers of
//! all renditions then cut at the same frames).
//!
//! Pictures go to the highest rendition's lane, which scales them and hands its scaled picture
//! down to the next rendition (a cascade: each rendition scales from the one above, which costs
//! far less than scaling every rendition from the source). At every source keyframe the
//! [`ShedPolicy`] decides how many renditions, highest first, take the GOP; if the highest
//! rendition's queue is full mid-GOP, every rendition loses the rest of it. Both are counted as
//! dropped GOPs.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ffmpeg_next as ffmpeg;

use super::TranscodeMetrics;
use super::encode::{EncodeInput, EncodeStage};
use super::lane::{Lane, Rejected, Stage};
use super::policy::ShedPolicy;
use streamfleet_proto::avc::{DecoderConfig, write_annexb};

/// Packets remembered while their pictures are still inside the decoder (reorder depth is at
/// most 16 in H.264; the rest is slack for frames the decoder drops).
const MAX_PENDING_TIMES: usize = 64;

/// Why the decoder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// libavcodec has no H.264 decoder.
    #[error("libavcodec has no H.264 decoder")]
    NoDecoder,
    /// libavcodec refused to open it.
    #[error("opening the H.264 decoder: {0}")]
    Open(#[source] ffmpeg::Error),
    /// libavcodec refused a packet or failed while decoding it.
    #[error("decoding: {0}")]
    Decode(#[source] ffmpeg::Error),
    /// The access unit's NAL lengths are broken.
    #[error("malformed access unit: {0}")]
    AccessUnit(#[source] streamfleet_proto::avc::AvcError),
}

/// One coded source frame.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Decode time, ms.
    pub dts: u64,
    /// Presentation time, ms.
    pub pts: i64,
    /// Starts a GOP.
    pub keyframe: bool,
    /// Length-prefixed NAL units (the FLV payload).
    pub data: Bytes,
}

/// What a decode lane processes.
#[derive(Debug)]
pub enum DecodeInput {
    /// A frame to decode.
    Packet(Packet),
    /// End of stream: drain the decoder and the encoders (offline runs).
    Flush,
}

/// A decoded source picture, shared by every rendition that encodes it.
pub struct SourcePicture {
    /// The picture (any pixel format libavcodec produces).
    pub frame: ffmpeg::frame::Video,
    /// Presentation time, ms.
    pub pts: i64,
    /// Decode time given to the encoded frame, ms.
    pub dts: u64,
    /// A source keyframe: renditions encode an IDR here.
    pub keyframe: bool,
    /// How many renditions, highest first, take this picture's GOP.
    pub renditions: usize,
}

impl std::fmt::Debug for SourcePicture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourcePicture")
            .field("pts", &self.pts)
            .field("dts", &self.dts)
            .field("keyframe", &self.keyframe)
            .finish_non_exhaustive()
    }
}

/// libavcodec's H.264 decoder fed with FLV access units.
pub struct H264Decoder {
    inner: ffmpeg::decoder::Video,
    config: DecoderConfig,
    annexb: BytesMut,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// A decoder for the stream described by `config`.
    pub fn new(config: DecoderConfig) -> Result<Self, DecodeError> {
        let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::H264).ok_or(DecodeError::NoDecoder)?;
        let mut ctx = ffmpeg::codec::Context::new_with_codec(codec);
        ctx.set_threading(ffmpeg::threading::Config {
            kind: ffmpeg::threading::Type::None,
            count: 1,
            safe: true,
        });
        // A picture above the limit (an SPS that changes mid-stream) is an error, not gigabytes.
        let mut options = ffmpeg::Dictionary::new();
        options.set("max_pixels", &super::MAX_DECODED_PIXELS.to_string());
        let inner = ctx
            .decoder()
            .open_as_with(codec, options)
            .and_then(|o| o.video())
            .map_err(DecodeError::Open)?;
        Ok(H264Decoder {
            inner,
            config,
            annexb: BytesMut::new(),
        })
    }

    /// Sends one access unit; pictures that became ready are appended to `out`.
    pub fn decode(
        &mut self,
        packet: &Packet,
        out: &mut Vec<ffmpeg::frame::Video>,
    ) -> Result<(), DecodeError> {
        self.annexb.clear();
        write_annexb(
            &packet.data,
            &self.config,
            packet.keyframe,
            &mut self.annexb,
        )
        .map_err(DecodeError::AccessUnit)?;
        let mut p = ffmpeg::Packet::copy(&self.annexb);
        p.set_pts(Some(packet.pts));
        p.set_dts(i64::try_from(packet.dts).ok());
        if packet.keyframe {
            p.set_flags(ffmpeg::packet::Flags::KEY);
        }
        let sent = self.inner.send_packet(&p);
        // Pictures already decoded come out even if this packet was refused.
        self.receive(out)?;
        sent.map_err(DecodeError::Decode)
    }

    /// Signals the end of the stream; the remaining pictures are appended to `out`.
    pub fn drain(&mut self, out: &mut Vec<ffmpeg::frame::Video>) -> Result<(), DecodeError> {
        self.inner.send_eof().map_err(DecodeError::Decode)?;
        self.receive(out)
    }

    fn receive(&mut self, out: &mut Vec<ffmpeg::frame::Video>) -> Result<(), DecodeError> {
        loop {
            let mut frame = ffmpeg::frame::Video::empty();
            match self.inner.receive_frame(&mut frame) {
                Ok(()) => out.push(frame),
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(e) => return Err(DecodeError::Decode(e)),
            }
        }
    }
}

/// Timing of a packet inside the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    dts: u64,
    pts: i64,
    keyframe: bool,
}

/// Gives decoded pictures (presentation order) the decode timestamps of the packets (decode
/// order), position by position.
#[derive(Debug, Default)]
pub struct DtsQueue {
    pending: VecDeque<Times>,
    last: Option<u64>,
}

impl DtsQueue {
    /// A packet went into the decoder.
    pub fn sent(&mut self, dts: u64, pts: i64, keyframe: bool) {
        if self.pending.len() == MAX_PENDING_TIMES {
            self.pending.pop_front();
        }
        self.pending.push_back(Times { dts, pts, keyframe });
    }

    /// A picture shown at `pts` came out: its decode timestamp and whether it is a source
    /// keyframe. A keyframe resynchronises the queue (packets before it whose pictures never
    /// came out are forgotten). The result never goes back and never passes `pts`.
    pub fn decoded(&mut self, pts: i64) -> (u64, bool) {
        let key_at = self.pending.iter().position(|t| t.keyframe && t.pts == pts);
        let times = match key_at {
            Some(i) => {
                self.pending.drain(..i);
                self.pending.pop_front()
            }
            None => self.pending.pop_front(),
        };
        let keyframe = key_at.is_some();
        let floor = self.last.unwrap_or(0);
        let ceiling = u64::try_from(pts).unwrap_or(0);
        let dts = times
            .map_or(ceiling, |t| t.dts)
            .max(floor)
            .min(ceiling.max(floor));
        self.last = Some(dts);
        (dts, keyframe)
    }
}

/// The decode lane's work: decode, then hand pictures to the highest rendition's lane.
pub struct DecodeStage {
    /// The stream's configuration until the decoder is opened (on the pool, at the first item).
    config: Option<DecoderConfig>,
    /// `None` if opening failed.
    decoder: Option<H264Decoder>,
    times: DtsQueue,
    /// Highest rendition first; pictures go to the first, the others are watched for their
    /// queue fill.
    renditions: Vec<Arc<Lane<EncodeStage>>>,
    /// Rendition names, for metrics.
    names: Vec<String>,
    /// How many renditions (highest first) take the current GOP.
    take: usize,
    /// The first lane was full during this GOP: nothing more of it goes down.
    broken: bool,
    policy: ShedPolicy,
    metrics: TranscodeMetrics,
    /// For logs.
    stream: String,
    decoded: Vec<ffmpeg::frame::Video>,
    /// Decode errors logged so far (only the first few are).
    errors_logged: u32,
}

impl DecodeStage {
    /// A stage decoding `config`'s stream for `renditions` (highest first).
    pub fn new(
        config: DecoderConfig,
        renditions: Vec<Arc<Lane<EncodeStage>>>,
        names: Vec<String>,
        metrics: TranscodeMetrics,
        stream: String,
    ) -> Self {
        let n = renditions.len();
        DecodeStage {
            config: Some(config),
            decoder: None,
            times: DtsQueue::default(),
            renditions,
            names,
            take: 0,
            broken: false,
            policy: ShedPolicy::new(n),
            metrics,
            stream,
            decoded: Vec::new(),
            errors_logged: 0,
        }
    }

    fn error(&mut self, e: &DecodeError) {
        self.metrics.errors.inc();
        if self.errors_logged < 5 {
            self.errors_logged += 1;
            tracing::warn!(stream = %self.stream, error = %e, "transcoder: source frame not decoded");
        }
    }

    fn picture(&mut self, frame: ffmpeg::frame::Video) {
        self.metrics.decoded.inc();
        let pts = frame.pts().unwrap_or(0);
        let (dts, keyframe) = self.times.decoded(pts);
        if keyframe {
            let fill = self
                .renditions
                .iter()
                .map(|l| l.len() as f64 / l.capacity() as f64)
                .fold(0.0, f64::max);
            let shed = self.policy.at_keyframe(fill);
            self.take = self.renditions.len().saturating_sub(shed);
            self.broken = false;
            for name in self.names.iter().skip(self.take) {
                self.metrics.dropped_gop(name);
            }
        }
        let Some(first) = self.renditions.first() else {
            return;
        };
        if self.take == 0 || self.broken {
            return;
        }
        let picture = Arc::new(SourcePicture {
            frame,
            pts,
            dts,
            keyframe,
            renditions: self.take,
        });
        match first.push(EncodeInput::Picture(picture)) {
            Ok(()) => {}
            Err(Rejected::Full(_)) => {
                // The rest of this GOP is lost for every rendition.
                self.broken = true;
                for name in self.names.iter().take(self.take) {
                    self.metrics.dropped_gop(name);
                }
            }
            Err(Rejected::Closed(_)) => self.broken = true,
        }
    }
}

impl Stage for DecodeStage {
    type Item = DecodeInput;

    fn process(&mut self, item: DecodeInput) {
        if let Some(config) = self.config.take() {
            match H264Decoder::new(config) {
                Ok(d) => self.decoder = Some(d),
                Err(e) => {
                    self.metrics.errors.inc();
                    tracing::error!(stream = %self.stream, error = %e, "no decoder: stream not transcoded");
                }
            }
        }
        let Some(decoder) = &mut self.decoder else {
            return;
        };
        let mut decoded = std::mem::take(&mut self.decoded);
        let result = match &item {
            DecodeInput::Packet(p) => {
                self.times.sent(p.dts, p.pts, p.keyframe);
                decoder.decode(p, &mut decoded)
            }
            DecodeInput::Flush => decoder.drain(&mut decoded),
        };
        if let Err(e) = result {
            self.error(&e);
        }
        for frame in decoded.drain(..) {
            self.picture(frame);
        }
        self.decoded = decoded;
        if matches!(item, DecodeInput::Flush)
            && let Some(first) = self.renditions.first()
        {
            // A full lane cannot take the flush; the encoders' delayed frames are then lost.
            let _ = first.push(EncodeInput::Flush);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_get_decode_timestamps_by_position() {
        // I P B B in decode order; pts are shifted by the reorder delay, as x264 writes them.
        let mut q = DtsQueue::default();
        q.sent(0, 66, true);
        q.sent(33, 165, false);
        q.sent(66, 99, false);
        q.sent(99, 132, false);
        assert_eq!(q.decoded(66), (0, true), "the keyframe keeps its own dts");
        assert_eq!(q.decoded(99), (33, false));
        assert_eq!(q.decoded(132), (66, false));
        assert_eq!(q.decoded(165), (99, false));
    }

    #[test]
    fn a_keyframe_resynchronises_after_lost_pictures() {
        let mut q = DtsQueue::default();
        q.sent(0, 0, true);
        q.sent(33, 33, false); // never comes out (corrupt)
        q.sent(66, 66, false);
        q.sent(99, 99, true);
        assert_eq!(q.decoded(0), (0, true));
        assert_eq!(
            q.decoded(66),
            (33, false),
            "positions slip while the picture is lost"
        );
        assert_eq!(
            q.decoded(99),
            (99, true),
            "the next keyframe is exact again"
        );
    }

    #[test]
    fn timestamps_never_go_back_or_past_the_picture() {
        let mut q = DtsQueue::default();
        q.sent(500, 400, false); // a broken source: dts after pts
        assert_eq!(q.decoded(400), (400, false));
        q.sent(100, 450, false);
        assert_eq!(q.decoded(450), (400, false), "monotonic");
        assert_eq!(q.decoded(480), (480, false), "a picture without a packet");
    }

    #[test]
    fn decodes_an_x264_stream() {
        use crate::media::transcode::x264::{Encoded, Encoder, Image, test_settings};
        // x264 without B-frames: decode order is presentation order.
        let packet = |e: Encoded| Packet {
            dts: e.pts as u64,
            pts: e.pts,
            keyframe: e.keyframe,
            data: e.data,
        };
        let mut enc = Encoder::open(&test_settings(64, 48, 300_000)).unwrap();
        let config =
            DecoderConfig::from_parameter_sets(enc.sps().clone(), enc.pps().clone()).unwrap();
        let mut dec = H264Decoder::new(config).unwrap();
        let mut out = Vec::new();
        let (y, u, v) = (
            vec![90u8; 64 * 48],
            vec![128u8; 32 * 24],
            vec![128u8; 32 * 24],
        );
        for i in 0..10i64 {
            let img = Image {
                width: 64,
                height: 48,
                planes: [&y, &u, &v],
                strides: [64, 32, 32],
            };
            if let Some(e) = enc.encode(Some((img, i * 33, i == 0))).unwrap() {
                dec.decode(&packet(e), &mut out).unwrap();
            }
        }
        while let Some(e) = enc.encode(None).unwrap() {
            dec.decode(&packet(e), &mut out).unwrap();
        }
        dec.drain(&mut out).unwrap();
        assert_eq!(out.len(), 10);
        assert_eq!((out[0].width(), out[0].height()), (64, 48));
        let pts: Vec<i64> = out.iter().map(|f| f.pts().unwrap()).collect();
        assert_eq!(pts, (0..10).map(|i| i * 33).collect::<Vec<_>>());
        let luma = out[5].data(0)[0];
        assert!((85..=95).contains(&luma), "gray comes back gray ({luma})");
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let config = DecoderConfig::from_parameter_sets(
            Bytes::from_static(streamfleet_proto::avc::fixtures::SPS_640X360),
            Bytes::from_static(streamfleet_proto::avc::fixtures::PPS_X264),
        )
        .unwrap();
        let mut dec = H264Decoder::new(config).unwrap();
        let mut out = Vec::new();
        let bad_lengths = Packet {
            dts: 0,
            pts: 0,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 9, 0x65, 1]),
        };
        assert!(matches!(
            dec.decode(&bad_lengths, &mut out),
            Err(DecodeError::AccessUnit(_))
        ));
        let junk_slice = Packet {
            dts: 33,
            pts: 33,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 6, 0x65, 0xff, 0x00, 0x13, 0x37, 0x42]),
        };
        let _ = dec.decode(&junk_slice, &mut out);
        let _ = dec.drain(&mut out);
        assert!(out.len() <= 1);
    }
}
