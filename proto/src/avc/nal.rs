//! NAL unit framing: length-prefixed (FLV/MP4) and Annex B (MPEG-TS, encoders) forms.
//!
//! An FLV frame is a run of NAL units, each behind a 1, 2 or 4-byte big-endian length
//! ([`LengthPrefixedNals`] walks them, validating every length). MPEG-TS wants Annex B instead:
//! [`write_annexb`] rewrites one access unit with 4-byte start codes, puts an access unit
//! delimiter first, and on keyframes inserts the SPS and PPS from the decoder configuration in
//! front of the IDR slice unless the frame already carries them, so every segment can be decoded
//! on its own. [`AnnexBNals`] and [`write_length_prefixed`] go the other way, for encoder output.

use bytes::BufMut;

use super::{AvcError, DecoderConfig, NalLengthSize};

/// Most NAL units accepted in one access unit (x264 writes at most a handful plus slices).
pub const MAX_NALS_PER_ACCESS_UNIT: usize = 1024;

/// The 4-byte Annex B start code.
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// An access unit delimiter: NAL header 0x09, primary_pic_type 7 (any slice type) + stop bit.
const AUD: [u8; 2] = [0x09, 0xF0];

/// The `nal_unit_type` of a NAL unit, from the low five bits of its header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalUnitType {
    /// 1: slice of a non-IDR picture.
    NonIdrSlice,
    /// 2..=4: slice data partition A, B or C.
    SlicePartition(u8),
    /// 5: slice of an IDR picture (a decoder can start here).
    IdrSlice,
    /// 6: supplemental enhancement information.
    Sei,
    /// 7: sequence parameter set.
    Sps,
    /// 8: picture parameter set.
    Pps,
    /// 9: access unit delimiter.
    Aud,
    /// 10: end of sequence.
    EndOfSequence,
    /// 11: end of stream.
    EndOfStream,
    /// 12: filler data.
    Filler,
    /// Any other type (SPS extension, prefix, subset SPS, reserved, unspecified).
    Other(u8),
}

impl NalUnitType {
    /// Decodes the type from a NAL header byte.
    pub fn from_header(header: u8) -> Self {
        match header & 0x1F {
            1 => Self::NonIdrSlice,
            t @ 2..=4 => Self::SlicePartition(t),
            5 => Self::IdrSlice,
            6 => Self::Sei,
            7 => Self::Sps,
            8 => Self::Pps,
            9 => Self::Aud,
            10 => Self::EndOfSequence,
            11 => Self::EndOfStream,
            12 => Self::Filler,
            t => Self::Other(t),
        }
    }

    /// The type of a NAL unit, or `None` for an empty slice.
    pub fn of(nal: &[u8]) -> Option<Self> {
        nal.first().map(|&header| Self::from_header(header))
    }

    /// The numeric `nal_unit_type`.
    pub fn code(self) -> u8 {
        match self {
            Self::NonIdrSlice => 1,
            Self::SlicePartition(t) | Self::Other(t) => t,
            Self::IdrSlice => 5,
            Self::Sei => 6,
            Self::Sps => 7,
            Self::Pps => 8,
            Self::Aud => 9,
            Self::EndOfSequence => 10,
            Self::EndOfStream => 11,
            Self::Filler => 12,
        }
    }

    /// True for coded slice data (types 1 to 5), the units that make up the picture itself.
    pub fn is_vcl(self) -> bool {
        matches!(
            self,
            Self::NonIdrSlice | Self::SlicePartition(_) | Self::IdrSlice
        )
    }
}

/// Iterates over the NAL units of a length-prefixed access unit; yields one error and then
/// stops if a length is truncated, zero or overruns the data.
#[derive(Debug, Clone)]
pub struct LengthPrefixedNals<'a> {
    /// The bytes not yet walked.
    rest: &'a [u8],
    /// The prefix size in force for this stream.
    size: NalLengthSize,
}

impl<'a> LengthPrefixedNals<'a> {
    /// Walks `access_unit`, whose NAL units carry `size`-byte length prefixes.
    pub fn new(access_unit: &'a [u8], size: NalLengthSize) -> Self {
        Self {
            rest: access_unit,
            size,
        }
    }
}

impl<'a> Iterator for LengthPrefixedNals<'a> {
    type Item = Result<&'a [u8], AvcError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((prefix, body)) = self.rest.split_at_checked(self.size.bytes()) else {
            self.rest = &[];
            return Some(Err(AvcError::TruncatedNalLength));
        };
        let declared = prefix
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        let result = if declared == 0 {
            Err(AvcError::EmptyNalUnit)
        } else if let Some((nal, rest)) = body.split_at_checked(declared) {
            self.rest = rest;
            return Some(Ok(nal));
        } else {
            Err(AvcError::NalLengthOverrun {
                declared,
                remaining: body.len(),
            })
        };
        self.rest = &[];
        Some(result)
    }
}

/// Splits an access unit and checks the NAL count limit.
fn split_access_unit(access_unit: &[u8], size: NalLengthSize) -> Result<Vec<&[u8]>, AvcError> {
    let mut nals = Vec::new();
    for nal in LengthPrefixedNals::new(access_unit, size) {
        if nals.len() == MAX_NALS_PER_ACCESS_UNIT {
            return Err(AvcError::TooManyNalUnits {
                limit: MAX_NALS_PER_ACCESS_UNIT,
            });
        }
        nals.push(nal?);
    }
    Ok(nals)
}

/// Rewrites one length-prefixed access unit as Annex B for MPEG-TS.
///
/// The output starts with an access unit delimiter (the frame's own if it opens with one, a
/// new one otherwise; delimiters elsewhere in the frame are dropped, since each would start a
/// new access unit). Before the first IDR slice (or, for a `keyframe` without IDR slices such as
/// an open-GOP I frame, before the first slice) the SPS and PPS of `config` are inserted unless
/// the frame already carries both. Every NAL unit gets a 4-byte start code. Nothing is written if
/// the access unit is malformed.
pub fn write_annexb(
    access_unit: &[u8],
    config: &DecoderConfig,
    keyframe: bool,
    out: &mut impl BufMut,
) -> Result<(), AvcError> {
    let nals = split_access_unit(access_unit, config.nal_length_size)?;
    let types: Vec<NalUnitType> = nals.iter().filter_map(|nal| NalUnitType::of(nal)).collect();
    let has_parameter_sets = types.contains(&NalUnitType::Sps) && types.contains(&NalUnitType::Pps);
    let insert_at = if has_parameter_sets {
        None
    } else if let Some(idr) = types.iter().position(|&t| t == NalUnitType::IdrSlice) {
        Some(idr)
    } else if keyframe {
        types.iter().position(|t| t.is_vcl())
    } else {
        None
    };

    out.put_slice(&START_CODE);
    out.put_slice(&AUD);
    for (index, nal) in nals.iter().enumerate() {
        if insert_at == Some(index) {
            for set in config.sps.iter().chain(&config.pps) {
                out.put_slice(&START_CODE);
                out.put_slice(set);
            }
        }
        // `split_access_unit` rejects empty NAL units, so every unit has a type.
        if types.get(index) == Some(&NalUnitType::Aud) {
            continue;
        }
        out.put_slice(&START_CODE);
        out.put_slice(nal);
    }
    Ok(())
}

/// Iterates over the NAL units of an Annex B byte stream (3- or 4-byte start codes), skipping
/// empty ones and the zero bytes that precede start codes.
#[derive(Debug, Clone)]
pub struct AnnexBNals<'a> {
    /// The bytes not yet walked, positioned just after a start code (or at the start).
    rest: &'a [u8],
}

impl<'a> AnnexBNals<'a> {
    /// Walks `stream`; bytes before the first start code are skipped.
    pub fn new(stream: &'a [u8]) -> Self {
        let rest = match find_start_code(stream) {
            Some((_, after)) => stream.get(after..).unwrap_or_default(),
            None => &[],
        };
        Self { rest }
    }
}

/// Finds the next `00 00 01`, returning where it begins and where the NAL unit after it begins.
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    data.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|pos| (pos, pos + 3))
}

impl<'a> Iterator for AnnexBNals<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (nal, rest) = match find_start_code(self.rest) {
                Some((start, after)) => (
                    self.rest.get(..start).unwrap_or_default(),
                    self.rest.get(after..).unwrap_or_default(),
                ),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            // trailing_zero_8bits (and the first zero of a 4-byte start code) are not NAL data.
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
            if let Some(nal) = nal.get(..end).filter(|nal| !nal.is_empty()) {
                return Some(nal);
            }
        }
    }
}

/// Rewrites an Annex B stream as NAL units with 4-byte length prefixes (the FLV form).
pub fn write_length_prefixed(annexb: &[u8], out: &mut impl BufMut) -> Result<(), AvcError> {
    for nal in AnnexBNals::new(annexb) {
        let len = u32::try_from(nal.len()).map_err(|_| AvcError::NalTooLongForPrefix {
            len: nal.len(),
            size: 4,
        })?;
        out.put_u32(len);
        out.put_slice(nal);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::avc::fixtures::{PPS_X264, SPS_640X360};

    fn config(size: NalLengthSize) -> DecoderConfig {
        let mut config = DecoderConfig::from_parameter_sets(
            Bytes::from_static(SPS_640X360),
            Bytes::from_static(PPS_X264),
        )
        .unwrap();
        config.nal_length_size = size;
        config
    }

    /// Prefixes each NAL with a 4-byte length.
    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    const SEI: &[u8] = &[0x06, 0x05, 0x01, 0xAA, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
    const SLICE: &[u8] = &[0x41, 0x9A, 0x02];

    #[test]
    fn iterates_each_prefix_size() {
        let one = [2, 0x09, 0xF0, 1, 0x41];
        let nals: Vec<_> = LengthPrefixedNals::new(&one, NalLengthSize::One).collect();
        assert_eq!(nals.len(), 2);
        assert_eq!(nals[0].as_ref().unwrap(), &[0x09, 0xF0]);
        let two = [0, 3, 0x41, 0x9A, 0x02];
        let nals: Vec<_> = LengthPrefixedNals::new(&two, NalLengthSize::Two).collect();
        assert_eq!(nals[0].as_ref().unwrap(), &SLICE);
        let four = avcc(&[SEI, IDR]);
        let nals: Vec<_> = LengthPrefixedNals::new(&four, NalLengthSize::Four)
            .map(Result::unwrap)
            .collect();
        assert_eq!(nals, vec![SEI, IDR]);
    }

    #[test]
    fn rejects_bad_lengths_once() {
        let overrun = [0, 0, 0, 9, 0x65];
        let mut it = LengthPrefixedNals::new(&overrun, NalLengthSize::Four);
        assert!(matches!(
            it.next(),
            Some(Err(AvcError::NalLengthOverrun {
                declared: 9,
                remaining: 1
            }))
        ));
        assert!(it.next().is_none());
        let zero = [0, 0, 0, 0, 0x65];
        assert!(matches!(
            LengthPrefixedNals::new(&zero, NalLengthSize::Four).next(),
            Some(Err(AvcError::EmptyNalUnit))
        ));
        let cut = [0, 0];
        assert!(matches!(
            LengthPrefixedNals::new(&cut, NalLengthSize::Four).next(),
            Some(Err(AvcError::TruncatedNalLength))
        ));
    }

    #[test]
    fn keyframe_gets_aud_and_parameter_sets() {
        let mut out = Vec::new();
        write_annexb(
            &avcc(&[SEI, IDR]),
            &config(NalLengthSize::Four),
            true,
            &mut out,
        )
        .unwrap();
        let mut expected = vec![0, 0, 0, 1, 0x09, 0xF0]; // AUD
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(SEI); // SEI stays ahead of the parameter sets
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(SPS_640X360);
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(PPS_X264);
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(IDR);
        assert_eq!(out, expected);
    }

    #[test]
    fn present_parameter_sets_and_aud_are_not_duplicated() {
        let au = avcc(&[&AUD, SPS_640X360, PPS_X264, IDR]);
        let mut out = Vec::new();
        write_annexb(&au, &config(NalLengthSize::Four), true, &mut out).unwrap();
        let nals: Vec<_> = AnnexBNals::new(&out).collect();
        assert_eq!(nals, vec![&AUD[..], SPS_640X360, PPS_X264, IDR]);
    }

    #[test]
    fn inter_frame_gets_only_aud_and_stray_auds_go() {
        let au = avcc(&[SLICE, &AUD]);
        let mut out = Vec::new();
        write_annexb(&au, &config(NalLengthSize::Four), false, &mut out).unwrap();
        assert_eq!(
            out,
            [&[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1][..], SLICE].concat()
        );
    }

    #[test]
    fn keyframe_without_idr_gets_parameter_sets_before_first_slice() {
        let au = [3, 0x41, 0x9A, 0x02];
        let mut out = Vec::new();
        write_annexb(&au, &config(NalLengthSize::One), true, &mut out).unwrap();
        let nals: Vec<_> = AnnexBNals::new(&out).collect();
        assert_eq!(nals, vec![&AUD[..], SPS_640X360, PPS_X264, SLICE]);
    }

    #[test]
    fn malformed_access_unit_writes_nothing() {
        let mut out = Vec::new();
        let au = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 7, 1];
        assert!(write_annexb(&au, &config(NalLengthSize::Four), true, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn nal_count_is_limited() {
        let au = [1u8, 0x41].repeat(MAX_NALS_PER_ACCESS_UNIT + 1);
        let mut out = Vec::new();
        assert!(matches!(
            write_annexb(&au, &config(NalLengthSize::One), false, &mut out),
            Err(AvcError::TooManyNalUnits { .. })
        ));
    }

    #[test]
    fn annexb_round_trips_to_length_prefixed() {
        // 4-byte and 3-byte start codes, trailing zeros, leading junk.
        let stream = [
            0xFF, 0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x64, 0, 0, 0, 0, 1, 0x65, 0x88,
        ];
        let nals: Vec<_> = AnnexBNals::new(&stream).collect();
        assert_eq!(nals, vec![&[0x09, 0xF0][..], &[0x67, 0x64], &[0x65, 0x88]]);
        let mut out = Vec::new();
        write_length_prefixed(&stream, &mut out).unwrap();
        assert_eq!(out, avcc(&[&[0x09, 0xF0], &[0x67, 0x64], &[0x65, 0x88]]));
        assert_eq!(AnnexBNals::new(&[0, 0, 1]).count(), 0);
        assert_eq!(AnnexBNals::new(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn nal_type_helpers() {
        assert_eq!(NalUnitType::of(IDR), Some(NalUnitType::IdrSlice));
        assert_eq!(NalUnitType::from_header(0x67), NalUnitType::Sps);
        assert_eq!(NalUnitType::from_header(0x06).code(), 6);
        assert_eq!(NalUnitType::from_header(0x0F), NalUnitType::Other(15));
        assert!(NalUnitType::SlicePartition(2).is_vcl());
        assert!(!NalUnitType::Sei.is_vcl());
        assert_eq!(NalUnitType::of(&[]), None);
    }
}
