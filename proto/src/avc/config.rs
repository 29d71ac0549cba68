//! AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3): the AVC sequence header.
//!
//! Publishers send it as the body of the first FLV video tag; it lists the SPS and PPS and the
//! size of the length prefix in front of every NAL unit of the frames that follow.
//! [`DecoderConfig::parse`] reads it into owned `Bytes` slices of the input (no copy) with limits
//! on counts and sizes; [`DecoderConfig::encode`] writes it back for RTMP playback and the relay;
//! [`DecoderConfig::from_parameter_sets`] builds one from an encoder's SPS and PPS.

use bytes::{Buf, BufMut, Bytes};

use super::{AvcError, Sps, codec_string};

/// Most SPS, PPS or SPS extensions accepted in one record (real encoders write one of each).
pub const MAX_PARAMETER_SETS: usize = 32;
/// Longest parameter set accepted, in bytes (x264 writes about 30; scaling lists add ~200).
pub const MAX_PARAMETER_SET_LEN: usize = 4096;

/// The size of the big-endian length in front of each NAL unit of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalLengthSize {
    /// One byte (NAL units up to 255 bytes).
    One,
    /// Two bytes.
    Two,
    /// Four bytes (what x264 and ffmpeg write).
    Four,
}

impl NalLengthSize {
    /// The size in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Self::One => 1,
            Self::Two => 2,
            Self::Four => 4,
        }
    }

    /// Decodes `lengthSizeMinusOne`.
    fn from_minus_one(value: u8) -> Result<Self, AvcError> {
        match value {
            0 => Ok(Self::One),
            1 => Ok(Self::Two),
            3 => Ok(Self::Four),
            other => Err(AvcError::InvalidNalLengthSize(other + 1)),
        }
    }
}

/// The extra fields High profiles (100, 110, 122, 144) append to the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HighProfileExt {
    /// `chroma_format`: 1 is 4:2:0.
    pub chroma_format: u8,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u8,
    /// SPS extension NAL units (almost always none).
    pub sps_ext: Vec<Bytes>,
}

/// A parsed AVCDecoderConfigurationRecord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderConfig {
    /// `AVCProfileIndication`: the SPS `profile_idc`.
    pub profile_indication: u8,
    /// `profile_compatibility`: the SPS constraint flags byte.
    pub profile_compatibility: u8,
    /// `AVCLevelIndication`: the SPS `level_idc`.
    pub level_indication: u8,
    /// Length prefix size of the NAL units in every frame of this stream.
    pub nal_length_size: NalLengthSize,
    /// SPS NAL units, header byte included.
    pub sps: Vec<Bytes>,
    /// PPS NAL units, header byte included.
    pub pps: Vec<Bytes>,
    /// High-profile trailer, when present and well formed.
    pub high_profile: Option<HighProfileExt>,
}

/// Profiles after which the record may carry [`HighProfileExt`].
fn is_high_profile(profile: u8) -> bool {
    matches!(profile, 100 | 110 | 122 | 144)
}

/// Reads `count` parameter sets of `u16` length each, slicing them out of `data`.
fn read_sets(data: &mut Bytes, count: usize, kind: &'static str) -> Result<Vec<Bytes>, AvcError> {
    if count > MAX_PARAMETER_SETS {
        return Err(AvcError::TooManyParameterSets {
            kind,
            count,
            limit: MAX_PARAMETER_SETS,
        });
    }
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        if data.remaining() < 2 {
            return Err(AvcError::ConfigTruncated);
        }
        let len = usize::from(data.get_u16());
        if len == 0 {
            return Err(AvcError::EmptyParameterSet);
        }
        if len > MAX_PARAMETER_SET_LEN {
            return Err(AvcError::ParameterSetTooLarge {
                len,
                limit: MAX_PARAMETER_SET_LEN,
            });
        }
        if data.remaining() < len {
            return Err(AvcError::ConfigTruncated);
        }
        sets.push(data.split_to(len));
    }
    Ok(sets)
}

/// Writes parameter sets with their `u16` lengths, enforcing the same limits as parsing.
fn write_sets(sets: &[Bytes], out: &mut impl BufMut) {
    for set in sets {
        // Lengths were checked by `check_sets` before anything was written.
        out.put_u16(set.len() as u16);
        out.put_slice(set);
    }
}

/// Checks what [`write_sets`] will write, so an encoded record always parses back.
fn check_sets(sets: &[Bytes], kind: &'static str, max_count: usize) -> Result<(), AvcError> {
    if sets.len() > max_count {
        return Err(AvcError::TooManyParameterSets {
            kind,
            count: sets.len(),
            limit: max_count,
        });
    }
    for set in sets {
        if set.is_empty() {
            return Err(AvcError::EmptyParameterSet);
        }
        if set.len() > MAX_PARAMETER_SET_LEN {
            return Err(AvcError::ParameterSetTooLarge {
                len: set.len(),
                limit: MAX_PARAMETER_SET_LEN,
            });
        }
    }
    Ok(())
}

impl DecoderConfig {
    /// Parses a record; the body of an AVC sequence-header tag arrives whole, so a short record
    /// is an error, not an incomplete read.
    pub fn parse(record: &Bytes) -> Result<Self, AvcError> {
        let mut data = record.clone();
        if data.remaining() < 6 {
            return Err(AvcError::ConfigTruncated);
        }
        let version = data.get_u8();
        if version != 1 {
            return Err(AvcError::ConfigVersion(version));
        }
        let profile_indication = data.get_u8();
        let profile_compatibility = data.get_u8();
        let level_indication = data.get_u8();
        let nal_length_size = NalLengthSize::from_minus_one(data.get_u8() & 0x03)?;
        let sps_count = usize::from(data.get_u8() & 0x1F);
        let sps = read_sets(&mut data, sps_count, "SPS")?;
        if data.remaining() < 1 {
            return Err(AvcError::ConfigTruncated);
        }
        let pps_count = usize::from(data.get_u8());
        let pps = read_sets(&mut data, pps_count, "PPS")?;
        // Many encoders omit or mangle the High-profile trailer and decoders ignore it, so a
        // damaged trailer is dropped rather than failing the whole stream.
        let high_profile = if is_high_profile(profile_indication) && data.remaining() >= 4 {
            let chroma_format = data.get_u8() & 0x03;
            let bit_depth_luma_minus8 = data.get_u8() & 0x07;
            let bit_depth_chroma_minus8 = data.get_u8() & 0x07;
            let count = usize::from(data.get_u8());
            read_sets(&mut data, count, "SPS extension")
                .ok()
                .map(|sps_ext| HighProfileExt {
                    chroma_format,
                    bit_depth_luma_minus8,
                    bit_depth_chroma_minus8,
                    sps_ext,
                })
        } else {
            None
        };
        Ok(Self {
            profile_indication,
            profile_compatibility,
            level_indication,
            nal_length_size,
            sps,
            pps,
            high_profile,
        })
    }

    /// Builds a record (4-byte NAL lengths) from one SPS and one PPS, e.g. an encoder's output.
    pub fn from_parameter_sets(sps: Bytes, pps: Bytes) -> Result<Self, AvcError> {
        let parsed = Sps::parse(&sps)?;
        check_sets(std::slice::from_ref(&pps), "PPS", MAX_PARAMETER_SETS)?;
        let high_profile = is_high_profile(parsed.profile_idc).then(|| HighProfileExt {
            chroma_format: parsed.chroma_format_idc,
            bit_depth_luma_minus8: parsed.bit_depth_luma - 8,
            bit_depth_chroma_minus8: parsed.bit_depth_chroma - 8,
            sps_ext: Vec::new(),
        });
        Ok(Self {
            profile_indication: parsed.profile_idc,
            profile_compatibility: parsed.constraint_flags,
            level_indication: parsed.level_idc,
            nal_length_size: NalLengthSize::Four,
            sps: vec![sps],
            pps: vec![pps],
            high_profile,
        })
    }

    /// Writes the record; fails, writing nothing, if a count or size is over its limit.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), AvcError> {
        // The SPS count field is 5 bits wide.
        check_sets(&self.sps, "SPS", MAX_PARAMETER_SETS.min(31))?;
        check_sets(&self.pps, "PPS", MAX_PARAMETER_SETS)?;
        if let Some(ext) = &self.high_profile {
            check_sets(&ext.sps_ext, "SPS extension", MAX_PARAMETER_SETS)?;
        }
        out.put_u8(1);
        out.put_u8(self.profile_indication);
        out.put_u8(self.profile_compatibility);
        out.put_u8(self.level_indication);
        // `bytes()` is 1, 2 or 4, so the subtraction cannot wrap.
        out.put_u8(0xFC | (self.nal_length_size.bytes() as u8 - 1));
        out.put_u8(0xE0 | self.sps.len() as u8);
        write_sets(&self.sps, out);
        out.put_u8(self.pps.len() as u8);
        write_sets(&self.pps, out);
        if let Some(ext) = &self.high_profile {
            out.put_u8(0xFC | (ext.chroma_format & 0x03));
            out.put_u8(0xF8 | (ext.bit_depth_luma_minus8 & 0x07));
            out.put_u8(0xF8 | (ext.bit_depth_chroma_minus8 & 0x07));
            out.put_u8(ext.sps_ext.len() as u8);
            write_sets(&ext.sps_ext, out);
        }
        Ok(())
    }

    /// The first SPS, parsed.
    pub fn first_sps(&self) -> Option<Result<Sps, AvcError>> {
        self.sps.first().map(|sps| Sps::parse(sps))
    }

    /// The RFC 6381 codec string from the record's profile fields, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        codec_string(
            self.profile_indication,
            self.profile_compatibility,
            self.level_indication,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::fixtures::{PPS_X264, SPS_640X360};

    /// The record ffmpeg wrote for the 640x360 x264 stream (flv muxer), field by field.
    fn x264_record() -> Vec<u8> {
        let mut rec = vec![
            0x01, // configurationVersion
            0x64, // AVCProfileIndication: High
            0x00, // profile_compatibility
            0x1e, // AVCLevelIndication: 3.0
            0xff, // reserved 111111 + lengthSizeMinusOne 3
            0xe1, // reserved 111 + numOfSequenceParameterSets 1
            0x00, 0x1a, // sequenceParameterSetLength 26
        ];
        rec.extend_from_slice(SPS_640X360);
        rec.extend_from_slice(&[0x01, 0x00, 0x06]); // numOfPictureParameterSets 1, length 6
        rec.extend_from_slice(PPS_X264);
        rec.extend_from_slice(&[
            0xfd, // reserved 111111 + chroma_format 1
            0xf8, // reserved 11111 + bit_depth_luma_minus8 0
            0xf8, // reserved 11111 + bit_depth_chroma_minus8 0
            0x00, // numOfSequenceParameterSetExt 0
        ]);
        rec
    }

    #[test]
    fn parses_and_reencodes_x264_record() {
        let rec = Bytes::from(x264_record());
        let config = DecoderConfig::parse(&rec).unwrap();
        assert_eq!(config.nal_length_size, NalLengthSize::Four);
        assert_eq!(config.sps, vec![Bytes::from_static(SPS_640X360)]);
        assert_eq!(config.pps, vec![Bytes::from_static(PPS_X264)]);
        assert_eq!(config.codec_string(), "avc1.64001e");
        assert_eq!(
            config.high_profile.as_ref().map(|h| h.chroma_format),
            Some(1)
        );
        let sps = config.first_sps().unwrap().unwrap();
        assert_eq!((sps.width, sps.height), (640, 360));
        let mut out = Vec::new();
        config.encode(&mut out).unwrap();
        assert_eq!(out, rec);
    }

    #[test]
    fn builds_from_parameter_sets() {
        let built = DecoderConfig::from_parameter_sets(
            Bytes::from_static(SPS_640X360),
            Bytes::from_static(PPS_X264),
        )
        .unwrap();
        let mut out = Vec::new();
        built.encode(&mut out).unwrap();
        assert_eq!(out, x264_record());
    }

    #[test]
    fn rejects_bad_records() {
        let mut rec = x264_record();
        rec[0] = 2;
        assert!(matches!(
            DecoderConfig::parse(&rec.into()),
            Err(AvcError::ConfigVersion(2))
        ));
        let mut rec = x264_record();
        rec[4] = 0xFE; // lengthSizeMinusOne 2: a 3-byte length does not exist
        assert!(matches!(
            DecoderConfig::parse(&rec.into()),
            Err(AvcError::InvalidNalLengthSize(3))
        ));
        let rec = x264_record();
        for cut in 0..(6 + 2 + SPS_640X360.len() + 3) {
            let short = Bytes::copy_from_slice(&rec[..cut]);
            assert!(DecoderConfig::parse(&short).is_err(), "cut at {cut}");
        }
        let mut rec = x264_record();
        rec[6] = 0x10; // SPS length 4096 + 26 > limit
        assert!(matches!(
            DecoderConfig::parse(&rec.into()),
            Err(AvcError::ParameterSetTooLarge { .. })
        ));
    }

    #[test]
    fn damaged_high_profile_trailer_is_dropped() {
        let mut rec = x264_record();
        let last = rec.len() - 1;
        rec[last] = 5; // five SPS extensions announced, none present
        let config = DecoderConfig::parse(&rec.into()).unwrap();
        assert_eq!(config.high_profile, None);
    }

    #[test]
    fn encode_refuses_what_parse_would_reject() {
        let mut config = DecoderConfig::parse(&x264_record().into()).unwrap();
        config.pps = vec![Bytes::from_static(PPS_X264); MAX_PARAMETER_SETS + 1];
        let mut out = Vec::new();
        assert!(matches!(
            config.encode(&mut out),
            Err(AvcError::TooManyParameterSets { .. })
        ));
        assert!(out.is_empty());
    }
}
