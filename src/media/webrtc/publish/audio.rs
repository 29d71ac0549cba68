//! Opus from a WebRTC publisher to AAC-LC for the hub: decoded once, encoded once per stream,
//! so HLS, RTMP players, the relay to edges and the transcoder all get AAC.
//!
//! Flow: Opus packet (its time in 48 kHz ticks on the session clock) -> libavcodec's `opus`
//! decoder (planar f32, 48 kHz; mono is copied to both channels) -> a FIFO of samples ->
//! libavcodec's native `aac` encoder, 1024 samples at a time (48 kHz stereo, 128 kbit/s) ->
//! raw AAC frames stamped in milliseconds. The FIFO knows the time of its first sample; a
//! packet more than [`MAX_DRIFT`] away from where the FIFO ends (a gap, a clock jump) starts it
//! over at the packet's time, smaller differences are rounding and ignored (samples are
//! counted). Nothing here is async: [`spawn`] runs it on a thread of its own, fed and drained
//! through bounded channels.

use bytes::Bytes;
use ffmpeg::ChannelLayout;
use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg_next as ffmpeg;
use tokio::sync::mpsc;

/// The AudioSpecificConfig of what the encoder makes: AAC-LC (2), 48 kHz (index 3), stereo.
pub const ASC: [u8; 2] = [0x11, 0x90];
/// Opus and AAC sample rate here.
const RATE: i64 = 48_000;
/// AAC bit rate, bits/s.
const BITRATE: usize = 128_000;
/// Samples per AAC frame.
const AAC_FRAME: usize = 1024;
/// A packet this far (100 ms of ticks) from where the FIFO ends starts it over.
const MAX_DRIFT: i64 = RATE / 10;
/// Opus packets waiting for the audio thread (about 1.3 s at 20 ms).
const QUEUE: usize = 64;
/// Largest Opus packet accepted (RFC 6716 allows 1275 bytes per frame, 120 ms at most).
pub const MAX_OPUS_PACKET: usize = 8 * 1275;

/// Why the audio path could not start or take a packet.
#[derive(Debug, thiserror::Error)]
pub enum AacError {
    /// libavcodec lacks a codec (Debian's has both).
    #[error("libavcodec has no {0}")]
    Missing(&'static str),
    /// libavcodec failed.
    #[error("{what}: {source}")]
    Libav {
        /// What was being done.
        what: &'static str,
        /// libavcodec's error.
        #[source]
        source: ffmpeg::Error,
    },
}

fn libav(what: &'static str) -> impl FnOnce(ffmpeg::Error) -> AacError {
    move |source| AacError::Libav { what, source }
}

/// One AAC frame for the hub.
#[derive(Debug)]
pub struct AacFrame {
    /// Its time on the session clock, ms.
    pub ms: u64,
    /// The raw AAC frame.
    pub data: Bytes,
}

/// The Opus decoder, the FIFO and the AAC encoder of one publisher.
pub struct OpusToAac {
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    /// Left and right samples not yet encoded.
    fifo: [Vec<f32>; 2],
    /// The time (48 kHz ticks) of the FIFO's first sample.
    start: Option<i64>,
    /// The time of the last frame given to the encoder (its input must move forward).
    last: Option<i64>,
}

impl OpusToAac {
    /// Opens the decoder and the encoder.
    pub fn new() -> Result<Self, AacError> {
        ffmpeg::init().map_err(libav("initialising libavcodec"))?;
        let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::OPUS)
            .ok_or(AacError::Missing("Opus decoder"))?;
        let decoder = ffmpeg::codec::Context::new_with_codec(codec)
            .decoder()
            .open_as(codec)
            .and_then(|o| o.audio())
            .map_err(libav("opening the Opus decoder"))?;
        let codec = ffmpeg::encoder::find_by_name("aac").ok_or(AacError::Missing("AAC encoder"))?;
        let mut encoder = ffmpeg::codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(libav("making the AAC encoder"))?;
        encoder.set_rate(RATE as i32);
        encoder.set_format(Sample::F32(SampleType::Planar));
        encoder.set_channel_layout(ChannelLayout::STEREO);
        encoder.set_channels(2);
        encoder.set_bit_rate(BITRATE);
        encoder.set_time_base((1, RATE as i32));
        let encoder = encoder
            .open_as(codec)
            .map_err(libav("opening the AAC encoder"))?;
        Ok(OpusToAac {
            decoder,
            encoder,
            fifo: [Vec::new(), Vec::new()],
            start: None,
            last: None,
        })
    }

    /// One Opus packet whose first sample is at `at` (48 kHz ticks); the AAC frames it
    /// completes go to `out`.
    pub fn push(&mut self, opus: &[u8], at: i64, out: &mut Vec<AacFrame>) -> Result<(), AacError> {
        let packet = ffmpeg::Packet::copy(opus);
        self.decoder
            .send_packet(&packet)
            .map_err(libav("decoding Opus"))?;
        let mut decoded = ffmpeg::frame::Audio::empty();
        let mut at = at;
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let n = decoded.samples();
            let end = self.start.map(|s| s + (self.fifo[0].len() as i64));
            match end {
                Some(end) if (at - end).abs() <= MAX_DRIFT => {}
                _ => {
                    self.fifo[0].clear();
                    self.fifo[1].clear();
                    self.start = Some(at);
                }
            }
            let planar = decoded.is_planar();
            let channels = decoded.planes().max(1);
            if !planar || !matches!(decoded.format(), Sample::F32(_)) {
                // The native decoder gives planar f32; anything else is skipped (silence).
                self.fifo[0].extend(std::iter::repeat_n(0.0, n));
                self.fifo[1].extend(std::iter::repeat_n(0.0, n));
            } else {
                let left = decoded
                    .plane::<f32>(0)
                    .get(..n)
                    .unwrap_or_default()
                    .to_vec();
                let right = if channels > 1 {
                    decoded
                        .plane::<f32>(1)
                        .get(..n)
                        .unwrap_or_default()
                        .to_vec()
                } else {
                    left.clone()
                };
                self.fifo[0].extend(left);
                self.fifo[1].extend(right);
            }
            at += n as i64;
        }
        self.encode(out)
    }

    /// Encodes every whole AAC frame in the FIFO.
    fn encode(&mut self, out: &mut Vec<AacFrame>) -> Result<(), AacError> {
        let Some(mut start) = self.start else {
            return Ok(());
        };
        let mut taken = 0;
        while self.fifo[0].len() - taken >= AAC_FRAME {
            let pts = start;
            start += AAC_FRAME as i64;
            let range = taken..taken + AAC_FRAME;
            taken += AAC_FRAME;
            if self.last.is_some_and(|l| pts <= l) {
                continue;
            }
            self.last = Some(pts);
            let mut frame = ffmpeg::frame::Audio::new(
                Sample::F32(SampleType::Planar),
                AAC_FRAME,
                ChannelLayout::STEREO,
            );
            frame.set_rate(RATE as u32);
            for ch in 0..2 {
                let src = self.fifo[ch].get(range.clone()).unwrap_or_default();
                for (d, s) in frame.plane_mut::<f32>(ch).iter_mut().zip(src) {
                    *d = *s;
                }
            }
            frame.set_pts(Some(pts));
            self.encoder
                .send_frame(&frame)
                .map_err(libav("encoding AAC"))?;
            let mut packet = ffmpeg::Packet::empty();
            while self.encoder.receive_packet(&mut packet).is_ok() {
                if let Some(data) = packet.data() {
                    let ticks = packet.pts().unwrap_or(pts).max(0);
                    out.push(AacFrame {
                        ms: (ticks * 1000 / RATE) as u64,
                        data: Bytes::copy_from_slice(data),
                    });
                }
            }
        }
        for ch in &mut self.fifo {
            ch.drain(..taken);
        }
        self.start = Some(start);
        Ok(())
    }
}

/// The audio thread of one publisher: Opus packets (with their 48 kHz time) in, AAC frames
/// out. It ends when either side is dropped.
pub struct AudioThread {
    /// Opus packets to transcode (full: the packet is dropped, the FIFO fills the hole).
    pub input: std::sync::mpsc::SyncSender<(Bytes, i64)>,
    /// AAC frames for the hub.
    pub output: mpsc::Receiver<AacFrame>,
}

/// Starts the audio thread (the encoder is opened first: an error is returned here).
pub fn spawn(stream: String) -> Result<AudioThread, AacError> {
    let mut transcoder = OpusToAac::new()?;
    let (input, rx) = std::sync::mpsc::sync_channel::<(Bytes, i64)>(QUEUE);
    let (tx, output) = mpsc::channel(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("whip-audio".into())
        .spawn(move || {
            let mut out = Vec::new();
            let mut warned = false;
            while let Ok((packet, at)) = rx.recv() {
                if let Err(e) = transcoder.push(&packet, at, &mut out)
                    && !warned
                {
                    warned = true;
                    tracing::warn!(%stream, error = %e, "Opus packet dropped (once per stream)");
                }
                for frame in out.drain(..) {
                    if tx.blocking_send(frame).is_err() {
                        return;
                    }
                }
            }
        });
    spawned.map_err(|_| AacError::Missing("a thread for the audio"))?;
    Ok(AudioThread { input, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opus packets (20 ms) of a 440 Hz sine that ffmpeg encodes, read from an Ogg file.
    fn opus_packets(seconds: u32) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.opus");
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:duration={seconds}:sample_rate=48000"
            ))
            .args(["-ac", "2", "-c:a", "libopus", "-frame_duration", "20"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
        let mut input = ffmpeg::format::input(&path).expect("ogg opens");
        let mut packets = Vec::new();
        for (_, p) in input.packets() {
            packets.push(p.data().expect("data").to_vec());
        }
        packets
    }

    #[test]
    fn opus_becomes_aac_lc_frames_on_the_packets_timeline() {
        let packets = opus_packets(2);
        assert!(packets.len() >= 90, "{}", packets.len());
        let mut t = OpusToAac::new().expect("codecs");
        let mut out = Vec::new();
        // Starting 1 s into the session clock.
        for (i, p) in packets.iter().enumerate() {
            t.push(p, RATE + i as i64 * 960, &mut out).expect("decodes");
        }
        // 2 s at 48 kHz is 93.75 frames of 1024 samples; the encoder holds a few back.
        assert!((85..=94).contains(&out.len()), "{} frames", out.len());
        let first = out.first().expect("a frame");
        assert!(
            (978..=1000).contains(&first.ms),
            "first frame at {} ms",
            first.ms
        );
        for w in out.windows(2) {
            let step = w[1].ms - w[0].ms;
            assert!((21..=22).contains(&step), "frames {step} ms apart");
        }
        assert!(
            out.iter()
                .all(|f| !f.data.is_empty() && f.data.len() < 2048)
        );
    }

    #[test]
    fn a_jump_starts_over_and_garbage_is_an_error() {
        let packets = opus_packets(1);
        let mut t = OpusToAac::new().expect("codecs");
        let mut out = Vec::new();
        for (i, p) in packets.iter().take(20).enumerate() {
            t.push(p, i as i64 * 960, &mut out).expect("decodes");
        }
        let before = out.len();
        // 10 s later (the publisher was silent): the frames continue from there.
        for (i, p) in packets.iter().skip(20).enumerate() {
            t.push(p, 10 * RATE + i as i64 * 960, &mut out)
                .expect("decodes");
        }
        assert!(out.len() > before + 10, "frames after the jump");
        let after = out.last().expect("frames after the jump");
        assert!(after.ms >= 9_900, "{} ms", after.ms);
        let _ = t.push(&[0xff; 3], 20 * RATE, &mut out);
    }
}
