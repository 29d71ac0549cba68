//! AAC to Opus, for WebRTC viewers (browsers have no AAC): raw AAC frames of one stream in,
//! 20 ms Opus packets at 48 kHz stereo out, stamped on the stream's own timeline.
//!
//! Flow: AAC frame -> decoder (symphonia's AAC-LC decoder; libavcodec's for what symphonia
//! refuses: HE-AAC, 960-sample frames, more than two channels) -> planar f32 -> libswresample
//! (any rate and layout to 48 kHz interleaved stereo f32) -> a FIFO of samples -> libavcodec's
//! `libopus` encoder, 960 samples (20 ms) at a time.
//!
//! Timestamps: the FIFO knows the stream time of its first sample. Each AAC frame's own time
//! (`pts`, ms) is checked against where the FIFO ends: rounding jitter is ignored (samples are
//! counted), a lost frame (the decoder refused it, the hub skipped it) is filled with silence so
//! the packets after it keep their place, and a jump (a new publish session, a clock reset)
//! starts the FIFO over at the frame's time. An Opus packet's time is its first sample's, minus
//! the encoder's look-ahead (libavcodec reports it in the packet's pts), so that what a browser
//! plays at a time is what the publisher recorded at that time.
//!
//! libopus and libswresample come through `ffmpeg-next`, already linked for the transcoder:
//! no other native library to build or ship. Nothing here is async: the caller runs it on a
//! thread of its own.

use bytes::{Bytes, BytesMut};
use ffmpeg::ChannelLayout;
use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg_next as ffmpeg;
use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{CODEC_TYPE_AAC, CodecParameters, Decoder as _, DecoderOptions};
use symphonia::core::formats::Packet;
use symphonia::default::codecs::AacDecoder;

use streamfleet_proto::aac::{AacError, AdtsHeader, AudioSpecificConfig};

/// Opus sample rate (RTP clock of the audio m-line).
pub const OPUS_RATE: u32 = 48_000;
/// Samples per channel in one Opus packet: 20 ms at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Output channels (stereo whatever the source; mono is copied to both).
const CHANNELS: usize = 2;
/// Opus bit rate, bits/s (stereo music at 48 kHz).
const BITRATE: usize = 96_000;
/// A frame up to this late (48 kHz ticks, 1 s) is a gap filled with silence; later, or
/// earlier than expected by more than a packet, it starts a new timeline.
const MAX_GAP: i64 = OPUS_RATE as i64;
/// Drift between counted samples and a frame's timestamp that is only rounding (one packet).
const JITTER: i64 = FRAME_SAMPLES as i64;

/// Why the transcoder could not start or could not take a frame.
#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    /// The AudioSpecificConfig is unreadable.
    #[error("unreadable AudioSpecificConfig: {0}")]
    Config(#[source] AacError),
    /// Neither symphonia nor libavcodec can decode this AAC (libavcodec gets ADTS frames,
    /// which cannot carry this configuration).
    #[error("cannot decode this AAC (object type {object_type}, {channels} channels): {source}")]
    Unsupported {
        /// The signalled audio object type.
        object_type: u8,
        /// The channel configuration.
        channels: u8,
        /// Why ADTS cannot carry it.
        #[source]
        source: AacError,
    },
    /// libavcodec has no AAC decoder or no libopus encoder.
    #[error("libavcodec has no {0}")]
    Missing(&'static str),
    /// libavcodec or libswresample refused to open.
    #[error("opening {what}: {source}")]
    Open {
        /// Which part.
        what: &'static str,
        /// libav's reason.
        #[source]
        source: ffmpeg::Error,
    },
    /// symphonia refused a frame.
    #[error("symphonia could not decode an AAC frame: {0}")]
    Symphonia(#[source] symphonia::core::errors::Error),
    /// libavcodec refused a frame, or libswresample or libopus failed.
    #[error("{what}: {source}")]
    Libav {
        /// Which step.
        what: &'static str,
        /// libav's reason.
        #[source]
        source: ffmpeg::Error,
    },
}

/// One Opus packet on the stream's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    /// The packet (one 20 ms Opus frame, TOC byte first).
    pub data: Bytes,
    /// Stream time of its first sample, in 48 kHz ticks (the stream's ms times 48).
    pub pts: i64,
}

/// AAC frames in, Opus packets out: one per stream.
pub struct Transcoder {
    decoder: AacSource,
    /// Built from the first decoded frame (its rate and layout).
    resampler: Option<Resampler>,
    encoder: ffmpeg::encoder::Audio,
    /// Interleaved stereo samples at 48 kHz not yet encoded.
    fifo: Vec<f32>,
    /// Stream time (48 kHz) of the sample after the FIFO's last; `None` before the first frame
    /// and after a reset.
    end: Option<i64>,
    /// Which decoder runs (for logs and tests).
    kind: DecoderKind,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("decoder", &self.kind)
            .field("buffered", &(self.fifo.len() / CHANNELS))
            .finish_non_exhaustive()
    }
}

/// Which AAC decoder a transcoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderKind {
    /// symphonia (AAC-LC, mono or stereo).
    Symphonia,
    /// libavcodec (everything else it reads from ADTS).
    Libavcodec,
}

enum AacSource {
    Symphonia {
        decoder: Box<AacDecoder>,
        /// Samples per channel per frame (the packet duration symphonia wants).
        samples: u64,
    },
    Libav {
        decoder: ffmpeg::decoder::Audio,
        adts: AdtsHeader,
        /// One ADTS frame, reused.
        buf: BytesMut,
    },
}

/// Decoded samples of one frame, planar f32.
struct Pcm {
    /// One plane per channel.
    planes: Vec<Vec<f32>>,
    /// Hz.
    rate: u32,
}

impl Transcoder {
    /// A transcoder for the stream whose AudioSpecificConfig is `asc`.
    pub fn new(asc: &[u8]) -> Result<Self, OpusError> {
        let config = AudioSpecificConfig::parse(asc).map_err(OpusError::Config)?;
        ffmpeg::init().map_err(|source| OpusError::Open {
            what: "libav",
            source,
        })?;
        // libav's own log lines go to stderr outside our logging; errors come back as values
        // (the transcoder of `media::transcode` does the same).
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
        let (decoder, kind) = match symphonia_decoder(asc, &config) {
            Some(d) => (d, DecoderKind::Symphonia),
            None => {
                tracing::info!(
                    codec = %config.codec_string(),
                    channels = config.channel_configuration,
                    "symphonia cannot decode this AAC; decoding it with libavcodec"
                );
                (libav_decoder(&config)?, DecoderKind::Libavcodec)
            }
        };
        Ok(Transcoder {
            decoder,
            resampler: None,
            encoder: opus_encoder()?,
            fifo: Vec::with_capacity(4 * FRAME_SAMPLES * CHANNELS),
            end: None,
            kind,
        })
    }

    /// Which decoder runs.
    pub fn decoder_kind(&self) -> DecoderKind {
        self.kind
    }

    /// Forgets the timeline (the next frame starts a new one): a new publish session.
    pub fn reset(&mut self) {
        self.fifo.clear();
        self.end = None;
    }

    /// Takes one raw AAC frame presented at `pts` ms; the Opus packets completed are appended
    /// to `out`. A frame that cannot be decoded is an error and leaves a gap that the next
    /// frame fills with silence; the transcoder stays usable.
    pub fn push(
        &mut self,
        frame: &[u8],
        pts: i64,
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), OpusError> {
        let pcm = self.decoder.decode(frame)?;
        let Some(pcm) = pcm else { return Ok(()) };
        let resampler = match self.resampler.take() {
            Some(r) if r.fits(&pcm) => r,
            _ => Resampler::new(&pcm)?,
        };
        let resampler = self.resampler.insert(resampler);
        let at = pts.saturating_mul(i64::from(OPUS_RATE) / 1000);
        match self.end {
            Some(end) if (at - end).abs() <= JITTER => {}
            Some(end) if at > end && at - end <= MAX_GAP => {
                // Frames were lost: silence keeps the following packets in their place.
                let missing = usize::try_from(at - end).unwrap_or(0);
                self.fifo.resize(self.fifo.len() + missing * CHANNELS, 0.0);
                self.end = Some(at);
            }
            _ => {
                self.fifo.clear();
                self.end = Some(at);
            }
        }
        let added = resampler.run(&pcm, &mut self.fifo)?;
        let end = self.end.unwrap_or(at) + i64::try_from(added).unwrap_or(0);
        self.end = Some(end);
        self.encode(end, out)
    }

    /// Encodes every whole 20 ms in the FIFO; `end` is the time of the sample after it.
    fn encode(&mut self, end: i64, out: &mut Vec<OpusPacket>) -> Result<(), OpusError> {
        let per_packet = FRAME_SAMPLES * CHANNELS;
        let mut taken = 0;
        while self.fifo.len() - taken >= per_packet {
            let buffered = (self.fifo.len() - taken) / CHANNELS;
            let first = end - i64::try_from(buffered).unwrap_or(0);
            let mut frame = ffmpeg::frame::Audio::new(
                Sample::F32(SampleType::Packed),
                FRAME_SAMPLES,
                ChannelLayout::STEREO,
            );
            frame.set_rate(OPUS_RATE);
            let chunk = self.fifo.get(taken..taken + per_packet).unwrap_or_default();
            for (dst, src) in frame
                .plane_mut::<(f32, f32)>(0)
                .iter_mut()
                .zip(chunk.chunks_exact(2))
            {
                *dst = (src[0], src[1]);
            }
            frame.set_pts(Some(first));
            taken += per_packet;
            self.encoder
                .send_frame(&frame)
                .map_err(|source| OpusError::Libav {
                    what: "encoding Opus",
                    source,
                })?;
            let mut packet = ffmpeg::Packet::empty();
            loop {
                match self.encoder.receive_packet(&mut packet) {
                    Ok(()) => {
                        if let Some(data) = packet.data() {
                            out.push(OpusPacket {
                                data: Bytes::copy_from_slice(data),
                                pts: packet.pts().unwrap_or(first),
                            });
                        }
                    }
                    Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                        break;
                    }
                    Err(source) => {
                        self.fifo.drain(..taken);
                        return Err(OpusError::Libav {
                            what: "encoding Opus",
                            source,
                        });
                    }
                }
            }
        }
        self.fifo.drain(..taken);
        Ok(())
    }
}

/// symphonia's decoder, when it takes this configuration: AAC-LC, 1024-sample frames, mono or
/// stereo, no SBR signalled (symphonia would decode only the core of HE-AAC).
fn symphonia_decoder(asc: &[u8], config: &AudioSpecificConfig) -> Option<AacSource> {
    if config.object_type != 2
        || config.sbr_frequency.is_some()
        || config.frame_length_960
        || !(1..=2).contains(&config.channel_configuration)
    {
        return None;
    }
    let mut params = CodecParameters::new();
    params
        .for_codec(CODEC_TYPE_AAC)
        .with_sample_rate(config.sampling_frequency)
        .with_extra_data(asc.to_vec().into_boxed_slice());
    match AacDecoder::try_new(&params, &DecoderOptions::default()) {
        Ok(decoder) => Some(AacSource::Symphonia {
            decoder: Box::new(decoder),
            samples: u64::from(config.samples_per_frame()),
        }),
        Err(e) => {
            tracing::debug!(error = %e, "symphonia refuses the AAC configuration");
            None
        }
    }
}

/// libavcodec's AAC decoder, fed ADTS frames (it finds SBR and PS in them).
fn libav_decoder(config: &AudioSpecificConfig) -> Result<AacSource, OpusError> {
    let adts = AdtsHeader::new(config).map_err(|source| OpusError::Unsupported {
        object_type: config.object_type,
        channels: config.channel_configuration,
        source,
    })?;
    let codec =
        ffmpeg::decoder::find(ffmpeg::codec::Id::AAC).ok_or(OpusError::Missing("AAC decoder"))?;
    let decoder = ffmpeg::codec::Context::new_with_codec(codec)
        .decoder()
        .open_as(codec)
        .and_then(|o| o.audio())
        .map_err(|source| OpusError::Open {
            what: "the AAC decoder",
            source,
        })?;
    Ok(AacSource::Libav {
        decoder,
        adts,
        buf: BytesMut::new(),
    })
}

/// libavcodec's libopus encoder: 48 kHz stereo, 20 ms frames.
fn opus_encoder() -> Result<ffmpeg::encoder::Audio, OpusError> {
    let codec =
        ffmpeg::encoder::find_by_name("libopus").ok_or(OpusError::Missing("libopus encoder"))?;
    let mut encoder = ffmpeg::codec::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(|source| OpusError::Open {
            what: "the Opus encoder",
            source,
        })?;
    encoder.set_rate(OPUS_RATE as i32);
    encoder.set_format(Sample::F32(SampleType::Packed));
    encoder.set_channel_layout(ChannelLayout::STEREO);
    encoder.set_channels(CHANNELS as i32);
    encoder.set_bit_rate(BITRATE);
    encoder.set_time_base((1, OPUS_RATE as i32));
    let mut options = ffmpeg::Dictionary::new();
    options.set("frame_duration", "20");
    options.set("application", "audio");
    encoder
        .open_as_with(codec, options)
        .map_err(|source| OpusError::Open {
            what: "the Opus encoder",
            source,
        })
}

impl AacSource {
    /// Decodes one raw AAC frame; `None` when the decoder has nothing to give yet.
    fn decode(&mut self, frame: &[u8]) -> Result<Option<Pcm>, OpusError> {
        match self {
            AacSource::Symphonia { decoder, samples } => {
                let packet = Packet::new_from_slice(0, 0, *samples, frame);
                let decoded = decoder.decode(&packet).map_err(OpusError::Symphonia)?;
                let rate = decoded.spec().rate;
                let planes = match decoded {
                    AudioBufferRef::F32(buf) => planes(&buf),
                    other => {
                        let mut buf =
                            AudioBuffer::<f32>::new(other.capacity() as u64, *other.spec());
                        other.convert(&mut buf);
                        planes(&buf)
                    }
                };
                Ok(Some(Pcm { planes, rate }))
            }
            AacSource::Libav { decoder, adts, buf } => {
                buf.clear();
                adts.write_frame(frame, buf).map_err(|_| OpusError::Libav {
                    what: "framing AAC as ADTS",
                    source: ffmpeg::Error::InvalidData,
                })?;
                let packet = ffmpeg::Packet::copy(buf);
                decoder
                    .send_packet(&packet)
                    .map_err(|source| OpusError::Libav {
                        what: "decoding AAC",
                        source,
                    })?;
                let mut pcm: Option<Pcm> = None;
                let mut decoded = ffmpeg::frame::Audio::empty();
                while decoder.receive_frame(&mut decoded).is_ok() {
                    let got = libav_planes(&decoded)?;
                    match pcm.as_mut() {
                        Some(p) if p.rate == got.rate && p.planes.len() == got.planes.len() => {
                            for (a, b) in p.planes.iter_mut().zip(got.planes) {
                                a.extend(b);
                            }
                        }
                        _ => pcm = Some(got),
                    }
                }
                Ok(pcm)
            }
        }
    }
}

fn planes(buf: &AudioBuffer<f32>) -> Vec<Vec<f32>> {
    (0..buf.spec().channels.count())
        .map(|c| buf.chan(c).to_vec())
        .collect()
}

/// The planes of a frame libavcodec's AAC decoder made (planar float, its usual output; other
/// formats go through libswresample first).
fn libav_planes(frame: &ffmpeg::frame::Audio) -> Result<Pcm, OpusError> {
    let channels = usize::from(frame.channels()).max(1);
    let layout = layout_of(frame.channel_layout(), channels);
    let mut converted;
    let planar = if frame.format() == Sample::F32(SampleType::Planar) {
        frame
    } else {
        let mut swr = ffmpeg::software::resampling::Context::get(
            frame.format(),
            layout,
            frame.rate(),
            Sample::F32(SampleType::Planar),
            layout,
            frame.rate(),
        )
        .map_err(|source| OpusError::Open {
            what: "the sample format converter",
            source,
        })?;
        converted =
            ffmpeg::frame::Audio::new(Sample::F32(SampleType::Planar), frame.samples(), layout);
        swr.run(frame, &mut converted)
            .map_err(|source| OpusError::Libav {
                what: "converting samples",
                source,
            })?;
        &converted
    };
    let planes = (0..channels)
        .map(|c| {
            planar
                .plane::<f32>(c)
                .get(..planar.samples())
                .unwrap_or_default()
                .to_vec()
        })
        .collect();
    Ok(Pcm {
        planes,
        rate: frame.rate(),
    })
}

/// A frame's layout, or the default one for its channel count when it names none.
fn layout_of(layout: ChannelLayout, channels: usize) -> ChannelLayout {
    if layout.channels() as usize == channels && channels > 0 {
        layout
    } else {
        ChannelLayout::default(i32::try_from(channels).unwrap_or(2))
    }
}

/// libswresample from one decoded format (rate, channels) to 48 kHz interleaved stereo.
struct Resampler {
    swr: ffmpeg::software::resampling::Context,
    rate: u32,
    channels: usize,
    layout: ChannelLayout,
}

impl Resampler {
    fn new(pcm: &Pcm) -> Result<Self, OpusError> {
        let channels = pcm.planes.len();
        let layout = ChannelLayout::default(i32::try_from(channels).unwrap_or(2));
        let swr = ffmpeg::software::resampling::Context::get(
            Sample::F32(SampleType::Planar),
            layout,
            pcm.rate,
            Sample::F32(SampleType::Packed),
            ChannelLayout::STEREO,
            OPUS_RATE,
        )
        .map_err(|source| OpusError::Open {
            what: "the resampler",
            source,
        })?;
        Ok(Resampler {
            swr,
            rate: pcm.rate,
            channels,
            layout,
        })
    }

    /// Whether `pcm` has the format this resampler was made for.
    fn fits(&self, pcm: &Pcm) -> bool {
        self.rate == pcm.rate && self.channels == pcm.planes.len()
    }

    /// Converts `pcm` and appends the interleaved result to `fifo`; returns the samples (per
    /// channel) appended.
    fn run(&mut self, pcm: &Pcm, fifo: &mut Vec<f32>) -> Result<usize, OpusError> {
        let samples = pcm.planes.first().map_or(0, Vec::len);
        if samples == 0 {
            return Ok(0);
        }
        let mut input =
            ffmpeg::frame::Audio::new(Sample::F32(SampleType::Planar), samples, self.layout);
        input.set_rate(self.rate);
        for (c, plane) in pcm.planes.iter().enumerate() {
            let dst = input.plane_mut::<f32>(c);
            let n = dst.len().min(plane.len());
            dst[..n].copy_from_slice(&plane[..n]);
        }
        // Room for this frame at 48 kHz plus what the filter held back.
        let capacity = samples * OPUS_RATE as usize / self.rate.max(1) as usize + 256;
        let mut output = ffmpeg::frame::Audio::new(
            Sample::F32(SampleType::Packed),
            capacity,
            ChannelLayout::STEREO,
        );
        self.swr
            .run(&input, &mut output)
            .map_err(|source| OpusError::Libav {
                what: "resampling",
                source,
            })?;
        let produced = output.samples();
        let pairs = output.plane::<(f32, f32)>(0);
        for (l, r) in pairs.iter().take(produced) {
            fifo.push(*l);
            fifo.push(*r);
        }
        Ok(produced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Raw AAC frames and the AudioSpecificConfig of `seconds` of a 440 Hz sine that ffmpeg
    /// encodes (native AAC-LC encoder) at `rate` Hz with `channels` channels.
    fn ffmpeg_aac(rate: u32, channels: u8, seconds: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.aac");
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate={rate}:duration={seconds}"
            ))
            .args(["-ac", &channels.to_string(), "-c:a", "aac"]);
        let status = cmd
            .args(["-f", "adts"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
        let adts = std::fs::read(&path).unwrap();
        // ADTS: syncword 12 bits, ..., profile 2 bits (object type - 1), frequency index 4,
        // private 1, channel configuration 3, ..., frame length 13 bits (header included).
        let mut frames = Vec::new();
        let mut asc = Vec::new();
        let mut at = 0;
        while at + 7 <= adts.len() {
            let h = &adts[at..at + 7];
            assert_eq!((h[0], h[1] & 0xf0), (0xff, 0xf0), "ADTS sync at {at}");
            let object_type = (h[2] >> 6) + 1;
            let index = (h[2] >> 2) & 0x0f;
            let channel_config = ((h[2] & 1) << 2) | (h[3] >> 6);
            let len =
                (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            let header = if h[1] & 1 == 0 { 9 } else { 7 };
            asc = vec![
                (object_type << 3) | (index >> 1),
                ((index & 1) << 7) | (channel_config << 3),
            ];
            frames.push(adts[at + header..at + len].to_vec());
            at += len;
        }
        (asc, frames)
    }

    /// Duration of an Opus packet from its TOC byte (RFC 6716 3.1), µs, for one-frame packets.
    fn toc_duration_us(toc: u8) -> u32 {
        let config = toc >> 3;
        match config {
            0..=11 => [10_000, 20_000, 40_000, 60_000][usize::from(config % 4)],
            12..=15 => [10_000, 20_000][usize::from(config % 2)],
            _ => [2_500, 5_000, 10_000, 20_000][usize::from(config % 4)],
        }
    }

    fn run(
        asc: &[u8],
        frames: &[Vec<u8>],
        rate: u32,
        start_ms: i64,
    ) -> (Transcoder, Vec<OpusPacket>) {
        let mut t = Transcoder::new(asc).unwrap();
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let pts = start_ms + (i as i64 * 1024 * 1000 / i64::from(rate));
            t.push(f, pts, &mut out).unwrap();
        }
        (t, out)
    }

    fn assert_opus_20ms_stereo(packets: &[OpusPacket]) {
        for p in packets {
            let toc = p.data[0];
            assert_eq!(toc & 3, 0, "one frame per packet");
            assert_eq!(toc_duration_us(toc), 20_000, "20 ms: toc {toc:#04x}");
            assert_eq!(toc & 4, 4, "stereo");
        }
        for w in packets.windows(2) {
            assert_eq!(
                w[1].pts - w[0].pts,
                FRAME_SAMPLES as i64,
                "packets follow each other"
            );
        }
    }

    #[test]
    fn aac_lc_stereo_44k1_becomes_20ms_opus_on_the_input_timeline() {
        let (asc, frames) = ffmpeg_aac(44_100, 2, 2);
        assert!(frames.len() > 80, "{}", frames.len());
        let (t, packets) = run(&asc, &frames, 44_100, 10_000);
        assert_eq!(t.decoder_kind(), DecoderKind::Symphonia);
        // 2 s = 100 packets; the last partial packet stays in the FIFO.
        let input = frames.len() * 1024 * 48_000 / 44_100;
        assert!(
            packets.len() + 1 >= input / FRAME_SAMPLES,
            "{} packets",
            packets.len()
        );
        assert_opus_20ms_stereo(&packets);
        // The first packet starts at the first frame's time (10 s = 480,000 ticks) less the
        // encoder look-ahead (6.5 ms in libopus).
        let first = packets[0].pts;
        assert!((480_000 - 48 * 10..=480_000).contains(&first), "{first}");
        // Sound, not silence: packets of a sine are larger than those of silence.
        let mean = packets.iter().map(|p| p.data.len()).sum::<usize>() / packets.len();
        assert!(mean > 50, "mean packet {mean} bytes");
    }

    #[test]
    fn mono_48k_is_upmixed_to_stereo() {
        let (asc, frames) = ffmpeg_aac(48_000, 1, 1);
        let (t, packets) = run(&asc, &frames, 48_000, 0);
        assert_eq!(t.decoder_kind(), DecoderKind::Symphonia);
        assert!(packets.len() >= 45, "{}", packets.len());
        assert_opus_20ms_stereo(&packets);
    }

    #[test]
    fn he_aac_falls_back_to_libavcodec() {
        // Debian's ffmpeg has no HE-AAC encoder: signal SBR explicitly over the AAC-LC
        // frames of a plain encode (object type 5 over a core of type 2, the extension rate
        // the core's). symphonia refuses the configuration; libavcodec decodes the core.
        let (asc, frames) = ffmpeg_aac(44_100, 2, 1);
        let index = ((asc[0] & 7) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        // 5 bits object type 5, 4 bits frequency index, 4 bits channels, 4 bits extension
        // frequency index, 5 bits core object type 2, then GASpecificConfig 3 bits 0.
        let bits: u32 = (5 << 27)
            | (u32::from(index) << 23)
            | (u32::from(channels) << 19)
            | (u32::from(index) << 15)
            | (2 << 10);
        let he = bits.to_be_bytes().to_vec();
        let config = AudioSpecificConfig::parse(&he).unwrap();
        assert_eq!((config.object_type, config.core_object_type), (5, 2));
        let (t, packets) = run(&he, &frames, 44_100, 0);
        assert_eq!(t.decoder_kind(), DecoderKind::Libavcodec);
        assert!(packets.len() >= 40, "{}", packets.len());
        assert_opus_20ms_stereo(&packets);
    }

    #[test]
    fn a_broken_frame_is_an_error_and_the_stream_goes_on_in_place() {
        let (asc, frames) = ffmpeg_aac(48_000, 2, 1);
        let mut t = Transcoder::new(&asc).unwrap();
        let mut out = Vec::new();
        // Frames 20 and 21 are cut short (a truncated frame: the decoder runs out of bits).
        let mut errors = 0;
        for (i, f) in frames.iter().enumerate() {
            let pts = i as i64 * 1024 / 48;
            let frame = if i == 20 || i == 21 {
                &f[..f.len() / 4]
            } else {
                &f[..]
            };
            let r = t.push(frame, pts, &mut out);
            if r.is_err() {
                errors += 1;
                assert!((20..=21).contains(&i), "frame {i}: {r:?}");
            }
        }
        assert!(errors > 0, "a truncated frame decoded");
        assert!(out.len() >= 45, "{}", out.len());
        // The lost frame became silence: the packets still follow each other 20 ms apart.
        assert_opus_20ms_stereo(&out);
    }

    #[test]
    fn a_jump_starts_a_new_timeline() {
        let (asc, frames) = ffmpeg_aac(48_000, 2, 1);
        let mut t = Transcoder::new(&asc).unwrap();
        let mut out = Vec::new();
        for (i, f) in frames.iter().take(20).enumerate() {
            t.push(f, 5_000 + i as i64 * 1024 / 48, &mut out).unwrap();
        }
        let before = out.len();
        t.reset();
        for (i, f) in frames.iter().skip(20).enumerate() {
            t.push(f, i as i64 * 1024 / 48, &mut out).unwrap();
        }
        // The encoder holds a frame back: the first packet after the jump may still be the
        // old timeline's last.
        let after: Vec<_> = out[before..]
            .iter()
            .filter(|p| p.pts < 5_000 * 48)
            .cloned()
            .collect();
        assert!(out.len() - before - after.len() <= 1);
        assert!(!after.is_empty());
        assert!(after[0].pts < 48 * 30, "restarted near 0: {}", after[0].pts);
        assert_opus_20ms_stereo(&after);
    }
}
