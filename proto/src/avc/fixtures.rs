//! Real x264 parameter sets, for tests here and in the crates that use this one (feature
//! `fixtures`; never in a release build).

/// x264 High profile 640x360 @ 30 fps, level 3.0 (`ffmpeg -f lavfi -i
/// testsrc=size=640x360:rate=30 -pix_fmt yuv420p -c:v libx264`): 67 = NAL header (SPS),
/// 64 = profile_idc 100, 00 = constraint flags, 1e = level 30, then exp-Golomb fields and a
/// VUI with time_scale 60, num_units_in_tick 1.
pub const SPS_640X360: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
];
/// The matching x264 PPS: 68 = NAL header (PPS), then the PPS fields.
pub const PPS_X264: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
