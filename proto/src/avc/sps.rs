//! Sequence parameter set (SPS) parsing: picture size, profile, level and frame rate.
//!
//! The SPS NAL unit (type 7) comes from the decoder configuration record. Its payload is
//! unescaped into an RBSP, then read field by field with a [`BitReader`]: the profile fields, the
//! chroma format and scaling lists of High profiles (skipped, but they must be walked to reach
//! what follows), the macroblock counts, frame cropping and, when present, the VUI timing info
//! that gives the frame rate. Values a publisher controls are checked against the ranges H.264
//! allows, so a hostile SPS yields an [`AvcError`] rather than absurd sizes.

use super::bits::{BitReader, unescape_rbsp};
use super::config::MAX_PARAMETER_SET_LEN;
use super::{AvcError, codec_string};

/// Largest picture width or height accepted, in pixels (H.264 level 6.2 tops out at 8192).
pub const MAX_DIMENSION: u32 = 16_384;

/// A frame rate as the exact fraction the stream signals (`num / den` frames per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    /// Numerator: the SPS `time_scale`.
    pub num: u32,
    /// Denominator: twice the SPS `num_units_in_tick` (one frame is two fields' ticks).
    pub den: u32,
}

impl FrameRate {
    /// The rate in frames per second.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }
}

/// The fields of a sequence parameter set that streamfleet uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc`: 66 Baseline, 77 Main, 100 High, ...
    pub profile_idc: u8,
    /// The byte of `constraint_set0..5_flag` bits (the "compatibility" byte of codec strings).
    pub constraint_flags: u8,
    /// `level_idc`: ten times the level number (31 = level 3.1).
    pub level_idc: u8,
    /// `seq_parameter_set_id`, 0..=31.
    pub id: u8,
    /// `chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    /// Luma bit depth (8 unless a High 10/4:2:2/4:4:4 profile says otherwise).
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Displayed width in pixels, after cropping.
    pub width: u32,
    /// Displayed height in pixels, after cropping.
    pub height: u32,
    /// Frame rate from the VUI timing info, when the encoder wrote it.
    pub frame_rate: Option<FrameRate>,
}

/// Profiles whose SPS carries chroma format, bit depths and scaling lists.
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Checks `value <= max` for the SPS field `field`.
fn limit(field: &'static str, value: u32, max: u32) -> Result<u32, AvcError> {
    if value > max {
        return Err(AvcError::SpsValue { field, value });
    }
    Ok(value)
}

impl Sps {
    /// Parses an SPS NAL unit, header byte included.
    pub fn parse(nal: &[u8]) -> Result<Self, AvcError> {
        if nal.len() > MAX_PARAMETER_SET_LEN {
            return Err(AvcError::ParameterSetTooLarge {
                len: nal.len(),
                limit: MAX_PARAMETER_SET_LEN,
            });
        }
        let header = *nal.first().ok_or(AvcError::EmptyParameterSet)?;
        if header & 0x1F != 7 {
            return Err(AvcError::NotSps(header & 0x1F));
        }
        let rbsp = unescape_rbsp(nal.get(1..).unwrap_or_default());
        let mut r = BitReader::new(&rbsp);
        let e = AvcError::SpsTruncated;

        let profile_idc = r.byte().map_err(e)?;
        let constraint_flags = r.byte().map_err(e)?;
        let level_idc = r.byte().map_err(e)?;
        let id = limit("seq_parameter_set_id", r.ue().map_err(e)?, 31)? as u8;

        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma = 8;
        let mut bit_depth_chroma = 8;
        if has_chroma_info(profile_idc) {
            chroma_format_idc = limit("chroma_format_idc", r.ue().map_err(e)?, 3)? as u8;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit().map_err(e)?;
            }
            bit_depth_luma = 8 + limit("bit_depth_luma_minus8", r.ue().map_err(e)?, 6)? as u8;
            bit_depth_chroma = 8 + limit("bit_depth_chroma_minus8", r.ue().map_err(e)?, 6)? as u8;
            let _qpprime_y_zero_transform_bypass = r.bit().map_err(e)?;
            if r.bit().map_err(e)? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit().map_err(e)? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }

        let _log2_max_frame_num_minus4 =
            limit("log2_max_frame_num_minus4", r.ue().map_err(e)?, 12)?;
        let pic_order_cnt_type = limit("pic_order_cnt_type", r.ue().map_err(e)?, 2)?;
        if pic_order_cnt_type == 0 {
            limit("log2_max_pic_order_cnt_lsb_minus4", r.ue().map_err(e)?, 12)?;
        } else if pic_order_cnt_type == 1 {
            let _delta_pic_order_always_zero = r.bit().map_err(e)?;
            let _offset_for_non_ref_pic = r.se().map_err(e)?;
            let _offset_for_top_to_bottom_field = r.se().map_err(e)?;
            let cycle = limit(
                "num_ref_frames_in_pic_order_cnt_cycle",
                r.ue().map_err(e)?,
                255,
            )?;
            for _ in 0..cycle {
                let _offset_for_ref_frame = r.se().map_err(e)?;
            }
        }
        let _max_num_ref_frames = r.ue().map_err(e)?;
        let _gaps_in_frame_num_allowed = r.bit().map_err(e)?;
        let max_mbs = MAX_DIMENSION / 16;
        let width_mbs = limit("pic_width_in_mbs_minus1", r.ue().map_err(e)?, max_mbs - 1)? + 1;
        let height_units = limit(
            "pic_height_in_map_units_minus1",
            r.ue().map_err(e)?,
            max_mbs - 1,
        )? + 1;
        let frame_mbs_only = r.bit().map_err(e)?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.bit().map_err(e)?;
        }
        let _direct_8x8_inference = r.bit().map_err(e)?;

        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let coded_width = width_mbs * 16;
        // Field coding doubles the height: check the frame height against the limit too.
        let coded_height = height_units * 16 * field_factor;
        if coded_height > MAX_DIMENSION {
            return Err(AvcError::SpsValue {
                field: "pic_height_in_map_units_minus1",
                value: height_units - 1,
            });
        }
        let (crop_unit_x, crop_unit_y) = if separate_colour_plane || chroma_format_idc == 0 {
            (1, field_factor)
        } else {
            let sub_width = if chroma_format_idc == 3 { 1 } else { 2 };
            let sub_height = if chroma_format_idc == 1 { 2 } else { 1 };
            (sub_width, sub_height * field_factor)
        };
        let (mut width, mut height) = (coded_width, coded_height);
        if r.bit().map_err(e)? {
            let mut offset = |field| -> Result<u32, AvcError> {
                limit(field, r.ue().map_err(e)?, MAX_DIMENSION)
            };
            let (left, right) = (
                offset("frame_crop_left_offset")?,
                offset("frame_crop_right_offset")?,
            );
            let (top, bottom) = (
                offset("frame_crop_top_offset")?,
                offset("frame_crop_bottom_offset")?,
            );
            // Each offset is at most MAX_DIMENSION and each unit at most 4: no overflow.
            let crop_x = (left + right) * crop_unit_x;
            let crop_y = (top + bottom) * crop_unit_y;
            if crop_x >= coded_width || crop_y >= coded_height {
                return Err(AvcError::BadCropping);
            }
            width -= crop_x;
            height -= crop_y;
        }

        // The VUI is optional extra information: a damaged one costs the frame rate, not the
        // stream, since everything needed to package the stream has been read by now.
        let frame_rate = if r.bit().map_err(e)? {
            vui_frame_rate(&mut r).ok().flatten()
        } else {
            None
        };

        Ok(Self {
            profile_idc,
            constraint_flags,
            level_idc,
            id,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            width,
            height,
            frame_rate,
        })
    }

    /// The RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        codec_string(self.profile_idc, self.constraint_flags, self.level_idc)
    }
}

/// Walks one `scaling_list()` of `size` entries without keeping it.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), AvcError> {
    let mut last_scale: i32 = 8;
    let mut next_scale: i32 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta = r.se().map_err(AvcError::SpsTruncated)?;
            if !(-128..=127).contains(&delta) {
                return Err(AvcError::SpsValue {
                    field: "delta_scale",
                    value: delta as u32,
                });
            }
            next_scale = (last_scale + delta + 256) % 256;
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// Reads the VUI up to its timing info and returns the frame rate it signals, if any.
fn vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<FrameRate>, AvcError> {
    let e = AvcError::SpsTruncated;
    if r.bit().map_err(e)? {
        // aspect_ratio_idc 255 is Extended_SAR: two 16-bit fields follow.
        if r.byte().map_err(e)? == 255 {
            r.skip(32).map_err(e)?;
        }
    }
    if r.bit().map_err(e)? {
        r.skip(1).map_err(e)?; // overscan_appropriate_flag
    }
    if r.bit().map_err(e)? {
        r.skip(4).map_err(e)?; // video_format, video_full_range_flag
        if r.bit().map_err(e)? {
            r.skip(24).map_err(e)?; // colour_primaries, transfer, matrix
        }
    }
    if r.bit().map_err(e)? {
        r.ue().map_err(e)?; // chroma_sample_loc_type_top_field
        r.ue().map_err(e)?; // chroma_sample_loc_type_bottom_field
    }
    if !r.bit().map_err(e)? {
        return Ok(None);
    }
    let num_units_in_tick = r.bits(32).map_err(e)?;
    let time_scale = r.bits(32).map_err(e)?;
    if num_units_in_tick == 0 || time_scale == 0 || num_units_in_tick > u32::MAX / 2 {
        return Ok(None);
    }
    Ok(Some(FrameRate {
        num: time_scale,
        den: num_units_in_tick * 2,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::fixtures::{PPS_X264, SPS_640X360};

    /// x264 High profile 1280x720 @ 30 fps, level 3.1 (1f).
    const SPS_1280X720: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    /// x264 High profile 1920x1080 @ 25 fps, level 4.0 (28): coded as 1920x1088 with
    /// frame_crop_bottom_offset 4 (4 * 2 chroma rows = 8 pixels cropped).
    const SPS_1920X1080: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
    ];
    /// x264 Constrained Baseline 320x240 @ 25 fps, level 1.3: profile_idc 66 (42), constraint
    /// flags c0 (set0 + set1), no chroma info in the SPS.
    const SPS_BASELINE_320X240: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80,
    ];
    /// x264 High 352x288 interlaced (frame_mbs_only_flag 0) with `cqm=jvt`, so
    /// seq_scaling_matrix_present_flag is set and the scaling lists must be walked.
    const SPS_INTERLACED_CQM: &[u8] = &[
        0x67, 0x64, 0x00, 0x15, 0xac, 0xd9, 0x41, 0x61, 0x2d, 0x80, 0x88, 0x00, 0x00, 0x03, 0x00,
        0x08, 0x00, 0x00, 0x03, 0x01, 0xe0, 0xf8, 0xa1, 0x4c, 0xb0,
    ];

    #[test]
    fn parses_x264_high_640x360() {
        let sps = Sps::parse(SPS_640X360).unwrap();
        assert_eq!((sps.width, sps.height), (640, 360));
        assert_eq!(
            (sps.profile_idc, sps.constraint_flags, sps.level_idc),
            (100, 0, 30)
        );
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!(sps.frame_rate, Some(FrameRate { num: 60, den: 2 }));
        assert_eq!(sps.codec_string(), "avc1.64001e");
    }

    #[test]
    fn parses_x264_high_1280x720() {
        let sps = Sps::parse(SPS_1280X720).unwrap();
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!(sps.codec_string(), "avc1.64001f");
        assert_eq!(sps.frame_rate.map(FrameRate::as_f64), Some(30.0));
    }

    #[test]
    fn parses_cropped_1080p() {
        let sps = Sps::parse(SPS_1920X1080).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.frame_rate.map(FrameRate::as_f64), Some(25.0));
    }

    #[test]
    fn parses_baseline() {
        let sps = Sps::parse(SPS_BASELINE_320X240).unwrap();
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!(sps.codec_string(), "avc1.42c00d");
        assert_eq!(sps.frame_rate.map(FrameRate::as_f64), Some(25.0));
    }

    #[test]
    fn parses_interlaced_with_scaling_lists() {
        let sps = Sps::parse(SPS_INTERLACED_CQM).unwrap();
        assert_eq!((sps.width, sps.height), (352, 288));
        assert_eq!(sps.frame_rate.map(FrameRate::as_f64), Some(30.0));
    }

    #[test]
    fn rejects_non_sps_and_truncation() {
        assert!(matches!(Sps::parse(PPS_X264), Err(AvcError::NotSps(8))));
        assert!(matches!(Sps::parse(&[]), Err(AvcError::EmptyParameterSet)));
        assert!(matches!(
            Sps::parse(&SPS_640X360[..8]),
            Err(AvcError::SpsTruncated(_))
        ));
        let huge = vec![0x67; MAX_PARAMETER_SET_LEN + 1];
        assert!(matches!(
            Sps::parse(&huge),
            Err(AvcError::ParameterSetTooLarge { .. })
        ));
    }

    #[test]
    fn vui_damage_costs_only_the_frame_rate() {
        // Cut the 640x360 SPS inside its VUI: the size survives, the frame rate does not.
        let sps = Sps::parse(&SPS_640X360[..12]).unwrap();
        assert_eq!((sps.width, sps.height), (640, 360));
        assert_eq!(sps.frame_rate, None);
    }

    /// Packs a string of '0'/'1' into bytes, zero-padded.
    fn pack(bits: &str) -> Vec<u8> {
        let bits: Vec<u8> = bits.bytes().filter(|b| *b != b' ').collect();
        let mut out = vec![0u8; bits.len().div_ceil(8)];
        for (i, bit) in bits.iter().enumerate() {
            out[i / 8] |= (bit - b'0') << (7 - i % 8);
        }
        out
    }

    #[test]
    fn field_coding_cannot_double_past_the_height_limit() {
        // Baseline SPS: id 0, log2_max_frame_num 0, POC type 0, POC lsb 0, 1 ref frame, no gaps,
        // 20 MBs wide, 1024 map units high, frame_mbs_only 0 (fields: 32768 rows), MBAFF 0,
        // direct_8x8 1, no cropping, no VUI, stop bit.
        let body = pack("1 1 1 1 010 0 000010100 0000000000 10000000000 0 0 1 0 0 1");
        let sps = [&[0x67, 66, 0, 30][..], &body].concat();
        assert!(matches!(
            Sps::parse(&sps),
            Err(AvcError::SpsValue {
                field: "pic_height_in_map_units_minus1",
                value: 1023
            })
        ));
        // The same with 512 map units is 16384 rows: the largest height accepted.
        let body = pack("1 1 1 1 010 0 000010100 000000000 1000000000 0 0 1 0 0 1");
        let sps = Sps::parse(&[&[0x67, 66, 0, 30][..], &body].concat()).unwrap();
        assert_eq!((sps.width, sps.height), (320, MAX_DIMENSION));
    }

    #[test]
    fn rejects_out_of_range_fields() {
        // Baseline SPS, then ue(v) seq_parameter_set_id = 32: 00000100001 (11 bits) padded.
        let sps = [0x67, 0x42, 0x00, 0x1e, 0b0000_0100, 0b0010_0000];
        assert!(matches!(
            Sps::parse(&sps),
            Err(AvcError::SpsValue {
                field: "seq_parameter_set_id",
                value: 32
            })
        ));
    }
}
