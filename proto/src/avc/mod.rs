//! H.264 (AVC) bitstream helpers for ingest and packaging.
//!
//! Data flows in from FLV video tags: the sequence header carries an
//! AVCDecoderConfigurationRecord ([`DecoderConfig`]), whose SPS ([`Sps`]) gives the picture size,
//! profile, level and frame rate (for the HLS master playlist and the RFC 6381 codec string);
//! every coded frame is a run of length-prefixed NAL units ([`LengthPrefixedNals`]). For MPEG-TS the
//! frame is rewritten as Annex B ([`write_annexb`]) with an access unit delimiter and, on
//! keyframes, the SPS/PPS in front of the IDR slice. Frames coming back from the encoder in
//! Annex B are turned into length-prefixed NAL units with [`write_length_prefixed`].

mod bits;
mod config;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod nal;
mod sps;

pub(crate) use bits::BitReader;
pub use bits::BitsExhausted;
pub use config::{
    DecoderConfig, HighProfileExt, MAX_PARAMETER_SET_LEN, MAX_PARAMETER_SETS, NalLengthSize,
};
pub use nal::{
    AnnexBNals, LengthPrefixedNals, MAX_NALS_PER_ACCESS_UNIT, NalUnitType, write_annexb,
    write_length_prefixed,
};
pub use sps::{FrameRate, MAX_DIMENSION, Sps};

/// Everything that can be wrong with H.264 data handed to this module.
#[derive(Debug, thiserror::Error)]
pub enum AvcError {
    /// The decoder configuration record ended in the middle of a field.
    #[error("AVC decoder configuration record is truncated")]
    ConfigTruncated,
    /// The decoder configuration record has a version other than 1.
    #[error("AVC decoder configuration record has unsupported version {0}")]
    ConfigVersion(u8),
    /// `lengthSizeMinusOne` is 2, which names no valid NAL length size.
    #[error("invalid NAL unit length size {0} (must be 1, 2 or 4)")]
    InvalidNalLengthSize(u8),
    /// More SPS or PPS than [`MAX_PARAMETER_SETS`].
    #[error("{count} {kind} parameter sets exceed the limit of {limit}")]
    TooManyParameterSets {
        /// "SPS", "PPS" or "SPS extension".
        kind: &'static str,
        /// The count found or requested.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A parameter set (or an SPS handed to [`Sps::parse`]) is longer than
    /// [`MAX_PARAMETER_SET_LEN`].
    #[error("parameter set of {len} bytes exceeds the limit of {limit}")]
    ParameterSetTooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A parameter set of zero bytes.
    #[error("empty parameter set")]
    EmptyParameterSet,
    /// The NAL unit handed to [`Sps::parse`] is not an SPS.
    #[error("NAL unit of type {0} is not a sequence parameter set")]
    NotSps(u8),
    /// The SPS ended before all its mandatory fields were read.
    #[error("sequence parameter set is truncated")]
    SpsTruncated(#[source] BitsExhausted),
    /// An SPS field holds a value the standard does not allow.
    #[error("SPS field {field} has out-of-range value {value}")]
    SpsValue {
        /// The syntax element's name in the H.264 specification.
        field: &'static str,
        /// The value read.
        value: u32,
    },
    /// The cropping rectangle is as large as or larger than the coded picture.
    #[error("SPS cropping removes the whole picture")]
    BadCropping,
    /// A NAL unit length prefix points past the end of the access unit.
    #[error("NAL unit length {declared} exceeds the {remaining} bytes left in the access unit")]
    NalLengthOverrun {
        /// The length the prefix declared.
        declared: usize,
        /// The bytes actually left after the prefix.
        remaining: usize,
    },
    /// The access unit ends inside a NAL unit length prefix.
    #[error("access unit ends inside a NAL unit length prefix")]
    TruncatedNalLength,
    /// A NAL unit of length zero.
    #[error("empty NAL unit in access unit")]
    EmptyNalUnit,
    /// More NAL units in one access unit than [`MAX_NALS_PER_ACCESS_UNIT`].
    #[error("access unit holds more than {limit} NAL units")]
    TooManyNalUnits {
        /// The limit in force.
        limit: usize,
    },
    /// A NAL unit too long for the chosen length prefix size.
    #[error("NAL unit of {len} bytes does not fit a {size}-byte length prefix")]
    NalTooLongForPrefix {
        /// Its length in bytes.
        len: usize,
        /// The prefix size in bytes.
        size: usize,
    },
}

/// Formats the RFC 6381 `avc1.PPCCLL` codec string from profile, constraint flags and level.
pub fn codec_string(profile_idc: u8, constraint_flags: u8, level_idc: u8) -> String {
    format!("avc1.{profile_idc:02x}{constraint_flags:02x}{level_idc:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_string_is_lower_hex() {
        assert_eq!(codec_string(0x64, 0x00, 0x1F), "avc1.64001f");
        assert_eq!(codec_string(66, 0xC0, 13), "avc1.42c00d");
    }
}
