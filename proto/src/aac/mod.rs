//! AAC helpers: AudioSpecificConfig parsing and ADTS framing for MPEG-TS.
//!
//! The AAC sequence-header tag of an RTMP stream carries an AudioSpecificConfig (ISO/IEC
//! 14496-3 1.6.2.1); [`AudioSpecificConfig::parse`] reads the object type (with its escape),
//! sampling frequency (index or explicit 24-bit value), channel configuration and the SBR/PS
//! signalling of HE-AAC. The raw AAC frames that follow cannot go into MPEG-TS as they are: each
//! needs a 7-byte ADTS header, which [`AdtsHeader`] writes. ADTS can only describe a subset of
//! configurations (AAC Main/LC/SSR/LTP cores, indexed frequencies, channel configurations 1 to 7,
//! 1024-sample frames), so [`AdtsHeader::new`] checks the stream's config once, up front.

use bytes::BufMut;

use crate::avc::{BitReader, BitsExhausted};

/// The ADTS header size without CRC.
pub const ADTS_HEADER_LEN: usize = 7;
/// Largest raw frame an ADTS header can describe: the 13-bit frame length includes the header.
pub const MAX_ADTS_PAYLOAD: usize = 0x1FFF - ADTS_HEADER_LEN;

/// The sampling frequencies of indices 0 to 12.
const FREQUENCIES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Everything that can be wrong with AAC configuration or frames.
#[derive(Debug, thiserror::Error)]
pub enum AacError {
    /// The AudioSpecificConfig ended before its mandatory fields.
    #[error("AudioSpecificConfig is truncated")]
    Truncated(#[source] BitsExhausted),
    /// Sampling frequency index 13 or 14, which the standard reserves.
    #[error("reserved sampling frequency index {0}")]
    ReservedFrequencyIndex(u8),
    /// An explicit sampling frequency of zero.
    #[error("sampling frequency of 0 Hz")]
    ZeroFrequency,
    /// ADTS has a 2-bit profile field: only AAC Main, LC, SSR and LTP cores fit.
    #[error("audio object type {0} cannot be carried in ADTS")]
    AdtsObjectType(u8),
    /// ADTS signals frequencies only by index.
    #[error("explicit sampling frequency {0} Hz cannot be carried in ADTS")]
    AdtsExplicitFrequency(u32),
    /// ADTS has a 3-bit channel configuration, and 0 would need the program config element.
    #[error("channel configuration {0} cannot be carried in ADTS")]
    AdtsChannelConfiguration(u8),
    /// ADTS decoders assume 1024-sample frames.
    #[error("960-sample AAC frames cannot be carried in ADTS")]
    AdtsFrameLength960,
    /// A raw frame longer than [`MAX_ADTS_PAYLOAD`].
    #[error("AAC frame of {len} bytes exceeds the ADTS limit of {limit}")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
}

/// The fields of an AudioSpecificConfig that packaging needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// The audio object type signalled first: 2 AAC-LC, 5 HE-AAC (SBR), 29 HE-AACv2 (PS), ...
    pub object_type: u8,
    /// The object type of the core coder (differs from `object_type` for explicit SBR/PS).
    pub core_object_type: u8,
    /// The sampling frequency index, or `None` when the frequency is given explicitly.
    pub frequency_index: Option<u8>,
    /// The core sampling frequency in Hz (the rate of the ADTS/TS timestamps).
    pub sampling_frequency: u32,
    /// The channel configuration: 1 mono, 2 stereo, ... 0 = defined by a program config element.
    pub channel_configuration: u8,
    /// The SBR output frequency, when SBR is signalled (explicitly or by a sync extension).
    pub sbr_frequency: Option<u32>,
    /// Frames hold 960 samples instead of 1024 (`frameLengthFlag`).
    pub frame_length_960: bool,
}

/// Reads an audio object type with its escape (31 = 32 + next six bits).
fn object_type(r: &mut BitReader<'_>) -> Result<u8, BitsExhausted> {
    let aot = r.bits(5)?;
    let aot = if aot == 31 { 32 + r.bits(6)? } else { aot };
    // At most 32 + 63.
    Ok(aot as u8)
}

/// Reads a sampling frequency index, or the explicit 24-bit frequency after index 15.
fn frequency(r: &mut BitReader<'_>) -> Result<(Option<u8>, u32), AacError> {
    // Four bits always fit in a `u8`.
    let index = r.bits(4).map_err(AacError::Truncated)? as u8;
    match index {
        15 => match r.bits(24).map_err(AacError::Truncated)? {
            0 => Err(AacError::ZeroFrequency),
            hz => Ok((None, hz)),
        },
        13 | 14 => Err(AacError::ReservedFrequencyIndex(index)),
        _ => {
            let hz = FREQUENCIES.get(usize::from(index)).copied();
            hz.map(|hz| (Some(index), hz))
                .ok_or(AacError::ReservedFrequencyIndex(index))
        }
    }
}

/// Object types whose config continues with a GASpecificConfig.
fn has_ga_config(aot: u8) -> bool {
    matches!(aot, 1..=4 | 6 | 7 | 17 | 19..=23)
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig. The first 13 bits (more with escapes) are required; the
    /// GASpecificConfig flags and a trailing SBR/PS sync extension are read when present.
    pub fn parse(data: &[u8]) -> Result<Self, AacError> {
        let mut r = BitReader::new(data);
        let object_type_signalled = object_type(&mut r).map_err(AacError::Truncated)?;
        let (frequency_index, sampling_frequency) = frequency(&mut r)?;
        // Four bits always fit in a `u8`.
        let channel_configuration = r.bits(4).map_err(AacError::Truncated)? as u8;

        let mut sbr_frequency = None;
        let mut core_object_type = object_type_signalled;
        if object_type_signalled == 5 || object_type_signalled == 29 {
            sbr_frequency = Some(frequency(&mut r)?.1);
            core_object_type = object_type(&mut r).map_err(AacError::Truncated)?;
            if core_object_type == 22 {
                r.skip(4).map_err(AacError::Truncated)?; // extensionChannelConfiguration
            }
        }

        let mut frame_length_960 = false;
        if has_ga_config(core_object_type) && r.remaining() >= 3 {
            frame_length_960 = r.bit().map_err(AacError::Truncated)?;
            let depends_on_core_coder = r.bit().map_err(AacError::Truncated)?;
            let skipped = if depends_on_core_coder {
                r.skip(14)
            } else {
                Ok(())
            };
            let extension = r.bit();
            // A program config element (channel configuration 0) follows and is not walked, so
            // there is no sync extension to look for after it.
            if skipped.is_ok() && extension == Ok(false) && channel_configuration != 0 {
                sbr_frequency = sbr_frequency.or(sync_extension(&mut r));
            }
        }

        Ok(Self {
            object_type: object_type_signalled,
            core_object_type,
            frequency_index,
            sampling_frequency,
            channel_configuration,
            sbr_frequency,
            frame_length_960,
        })
    }

    /// The RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Samples per channel in one frame at the core rate (1024, or 960).
    pub fn samples_per_frame(&self) -> u32 {
        if self.frame_length_960 { 960 } else { 1024 }
    }
}

/// Reads the backward-compatible SBR signalling (sync extension 0x2b7), if any.
fn sync_extension(r: &mut BitReader<'_>) -> Option<u32> {
    if r.remaining() < 16 || r.bits(11).ok()? != 0x2B7 {
        return None;
    }
    if object_type(r).ok()? != 5 || !r.bit().ok()? {
        return None;
    }
    frequency(r).ok().map(|(_, hz)| hz)
}

/// A validated ADTS header template for one stream's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// ADTS `profile`: the core object type minus one.
    profile: u8,
    /// ADTS `sampling_frequency_index` of the core rate.
    frequency_index: u8,
    /// ADTS `channel_configuration`.
    channel_configuration: u8,
}

impl AdtsHeader {
    /// Checks that ADTS can carry `config`. HE-AAC is carried as its AAC core (implicit SBR
    /// signalling, as ffmpeg does); decoders find the SBR data in the frames themselves.
    pub fn new(config: &AudioSpecificConfig) -> Result<Self, AacError> {
        if !(1..=4).contains(&config.core_object_type) {
            return Err(AacError::AdtsObjectType(config.core_object_type));
        }
        let frequency_index = config
            .frequency_index
            .ok_or(AacError::AdtsExplicitFrequency(config.sampling_frequency))?;
        if !(1..=7).contains(&config.channel_configuration) {
            return Err(AacError::AdtsChannelConfiguration(
                config.channel_configuration,
            ));
        }
        if config.frame_length_960 {
            return Err(AacError::AdtsFrameLength960);
        }
        Ok(Self {
            profile: config.core_object_type - 1,
            frequency_index,
            channel_configuration: config.channel_configuration,
        })
    }

    /// Writes the 7-byte header (no CRC) for a raw frame of `payload_len` bytes.
    pub fn write(&self, payload_len: usize, out: &mut impl BufMut) -> Result<(), AacError> {
        if payload_len > MAX_ADTS_PAYLOAD {
            return Err(AacError::FrameTooLarge {
                len: payload_len,
                limit: MAX_ADTS_PAYLOAD,
            });
        }
        let frame_len = payload_len + ADTS_HEADER_LEN;
        // All shifts below keep each value within its field; the casts take the low bits.
        out.put_u8(0xFF); // syncword high 8 bits
        out.put_u8(0xF1); // syncword low 4, ID 0 (MPEG-4), layer 00, protection_absent 1
        out.put_u8(
            (self.profile << 6) | (self.frequency_index << 2) | (self.channel_configuration >> 2),
        );
        out.put_u8(((self.channel_configuration & 0x03) << 6) | (frame_len >> 11) as u8);
        out.put_u8((frame_len >> 3) as u8);
        out.put_u8((((frame_len & 0x07) as u8) << 5) | 0x1F); // + buffer fullness 0x7FF (VBR)
        out.put_u8(0xFC); // buffer fullness low 6 bits, number_of_raw_data_blocks 0
        Ok(())
    }

    /// Writes the header followed by the frame.
    pub fn write_frame(&self, frame: &[u8], out: &mut impl BufMut) -> Result<(), AacError> {
        self.write(frame.len(), out)?;
        out.put_slice(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ffmpeg's native AAC encoder, 44.1 kHz mono: 00010 (AOT 2, LC) 0100 (index 4, 44100)
    /// 0001 (mono) 000 (GASpecificConfig flags), then sync extension 0x2b7, AOT 5, sbr flag 0.
    const ASC_FFMPEG_LC_MONO: &[u8] = &[0x12, 0x08, 0x56, 0xE5, 0x00];

    #[test]
    fn parses_lc() {
        let asc = AudioSpecificConfig::parse(ASC_FFMPEG_LC_MONO).unwrap();
        assert_eq!(asc.object_type, 2);
        assert_eq!(asc.frequency_index, Some(4));
        assert_eq!(asc.sampling_frequency, 44_100);
        assert_eq!(asc.channel_configuration, 1);
        assert_eq!(asc.sbr_frequency, None);
        assert_eq!(asc.codec_string(), "mp4a.40.2");
        assert_eq!(asc.samples_per_frame(), 1024);
        // The common two-byte form: LC, 48 kHz (index 3), stereo.
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!(
            (asc.sampling_frequency, asc.channel_configuration),
            (48_000, 2)
        );
    }

    #[test]
    fn parses_explicit_he_aac() {
        // 00101 (AOT 5, SBR) 0110 (24 kHz core) 0010 (stereo) 0011 (48 kHz SBR) 00010 (core LC)
        // 000 (GA flags) + padding.
        let asc = AudioSpecificConfig::parse(&[0x2B, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(asc.object_type, 5);
        assert_eq!(asc.core_object_type, 2);
        assert_eq!(asc.sampling_frequency, 24_000);
        assert_eq!(asc.sbr_frequency, Some(48_000));
        assert_eq!(asc.codec_string(), "mp4a.40.5");
        let mut out = Vec::new();
        AdtsHeader::new(&asc).unwrap().write(10, &mut out).unwrap();
        assert_eq!(out[2] >> 6, 1, "carried as its LC core");
    }

    #[test]
    fn parses_escape_and_explicit_frequency() {
        // 11111 + 000010 (AOT 32 + 2 = 34), 1111 + 24-bit 0x00AC44 (44100), 0010 (stereo).
        let bits = "1111100001011110000000010101100010001000010";
        let mut data = vec![0u8; bits.len().div_ceil(8)];
        for (i, bit) in bits.bytes().enumerate() {
            data[i / 8] |= (bit - b'0') << (7 - i % 8);
        }
        let asc = AudioSpecificConfig::parse(&data).unwrap();
        assert_eq!(asc.object_type, 34);
        assert_eq!(asc.frequency_index, None);
        assert_eq!(asc.sampling_frequency, 44_100);
        assert_eq!(asc.channel_configuration, 2);
        assert!(matches!(
            AdtsHeader::new(&asc),
            Err(AacError::AdtsObjectType(34))
        ));
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(matches!(
            AudioSpecificConfig::parse(&[0x12]),
            Err(AacError::Truncated(_))
        ));
        // Index 13: 00010 1101 ...
        assert!(matches!(
            AudioSpecificConfig::parse(&[0x16, 0x88]),
            Err(AacError::ReservedFrequencyIndex(13))
        ));
        let mut asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        asc.channel_configuration = 0;
        assert!(matches!(
            AdtsHeader::new(&asc),
            Err(AacError::AdtsChannelConfiguration(0))
        ));
        // 00010 0011 0010 1 (frameLengthFlag set): 960-sample frames.
        let asc = AudioSpecificConfig::parse(&[0x11, 0x94]).unwrap();
        assert!(asc.frame_length_960);
        assert!(matches!(
            AdtsHeader::new(&asc),
            Err(AacError::AdtsFrameLength960)
        ));
    }

    #[test]
    fn writes_adts_header() {
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap(); // LC, 48 kHz, stereo
        let header = AdtsHeader::new(&asc).unwrap();
        let mut out = Vec::new();
        header.write_frame(&[0xAB; 371], &mut out).unwrap();
        // frame_length = 378 = 0b0_0001_0111_1010
        assert_eq!(
            &out[..7],
            &[
                0xFF, // syncword
                0xF1, // syncword, MPEG-4, layer 0, no CRC
                0x4C, // profile 01 (LC), frequency index 0011, private 0, channel bit 0
                0x80, // channel bits 10, original/home/copyright 0000, frame_length bits 12..11
                0x2F, // frame_length bits 10..3
                0x5F, // frame_length bits 2..0 (010), buffer fullness high 5 bits
                0xFC, // buffer fullness low 6 bits, one raw data block
            ]
        );
        assert_eq!(out.len(), 378);
        out.clear();
        assert!(matches!(
            header.write(MAX_ADTS_PAYLOAD + 1, &mut out),
            Err(AacError::FrameTooLarge { .. })
        ));
        assert!(out.is_empty());
        header.write(MAX_ADTS_PAYLOAD, &mut out).unwrap();
        assert_eq!(
            &out[3..6],
            &[0x83, 0xFF, 0xFF],
            "frame_length 8191 fills its 13 bits"
        );
    }
}
