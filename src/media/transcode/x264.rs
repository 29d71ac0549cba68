//! A safe wrapper around one libx264 encoder (`x264-sys`, raw `x264_param_t`).
//!
//! [`Encoder::open`] turns [`EncoderSettings`] into x264 parameters (preset and tune, ABR rate
//! control capped by VBV at the rung's bit rate, no B-frames, no scene cuts, an unbounded GOP so
//! that IDRs come only where the caller forces them, 4-byte length-prefixed NAL units, SPS/PPS
//! out of band) and opens the encoder. [`Encoder::encode`] takes one I420 [`Image`] and returns
//! the access unit x264 finished, if any, as length-prefixed NAL units ready for an FLV tag.
//!
//! This is the crate's x264 FFI boundary: every `unsafe` block below carries its `SAFETY:`
//! argument, and pointers handed to x264 never outlive the call that uses them.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr::NonNull;

use bytes::Bytes;
use x264_sys as sys;

/// Everything that can go wrong with x264.
#[derive(Debug, thiserror::Error)]
pub enum X264Error {
    /// The preset or tune name is not one x264 knows.
    #[error("x264 rejected preset `{preset}` / tune `{tune}`")]
    Preset {
        /// Preset asked for.
        preset: String,
        /// Tune asked for (empty: none).
        tune: String,
    },
    /// A name contained a NUL byte.
    #[error("x264 setting `{0}` contains a NUL byte")]
    Nul(String),
    /// The profile cannot be applied to these settings.
    #[error("x264 rejected profile `{0}`")]
    Profile(&'static str),
    /// A dimension, bit rate or frame rate outside what x264 takes.
    #[error("x264 setting out of range: {0}")]
    OutOfRange(&'static str),
    /// `x264_encoder_open` returned nothing (x264 validates its parameters there).
    #[error("x264_encoder_open failed for {width}x{height}")]
    Open {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// The encoder produced no SPS or PPS in its headers.
    #[error("x264 headers lack an SPS or PPS")]
    Headers,
    /// The picture's planes are smaller than its size and strides say.
    #[error("picture plane {plane} has {have} bytes, needs {needed}")]
    PlaneTooSmall {
        /// Plane index (0 = Y, 1 = U, 2 = V).
        plane: usize,
        /// Bytes the plane has.
        have: usize,
        /// Bytes x264 would read.
        needed: usize,
    },
    /// The picture does not have the encoder's size.
    #[error("picture is {width}x{height}, encoder is {enc_width}x{enc_height}")]
    WrongSize {
        /// Picture width.
        width: u32,
        /// Picture height.
        height: u32,
        /// Encoder width.
        enc_width: u32,
        /// Encoder height.
        enc_height: u32,
    },
    /// `x264_encoder_encode` returned an error.
    #[error("x264_encoder_encode failed ({0})")]
    Encode(i32),
}

/// How to encode one rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSettings {
    /// Pixels, even.
    pub width: u32,
    /// Pixels, even.
    pub height: u32,
    /// Target (and VBV maximum) bit rate in bits per second.
    pub bitrate: u64,
    /// x264 preset (`veryfast`, ...).
    pub preset: String,
    /// x264 tune (`zerolatency`, `film`, ...), if any.
    pub tune: Option<String>,
    /// H.264 profile: `high`, `main` or `baseline`.
    pub profile: &'static str,
    /// Nominal frame rate as a fraction (timestamps drive rate control; this sizes the VBV).
    pub fps: (u32, u32),
    /// x264's own threads; 1 when a pool runs many encoders side by side.
    pub threads: u32,
}

/// One I420 picture borrowed from its owner (a scaled frame).
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Y, U and V planes.
    pub planes: [&'a [u8]; 3],
    /// Bytes per row of each plane.
    pub strides: [usize; 3],
}

/// One access unit out of the encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Presentation time, as given with the picture.
    pub pts: i64,
    /// An IDR.
    pub keyframe: bool,
    /// NAL units, each behind a 4-byte big-endian length.
    pub data: Bytes,
}

/// An open x264 encoder.
#[derive(Debug)]
pub struct Encoder {
    raw: NonNull<sys::x264_t>,
    width: u32,
    height: u32,
    sps: Bytes,
    pps: Bytes,
}

// SAFETY: an `x264_t` has no thread affinity; it is only ever used through `&mut self` (one
// thread at a time), and x264's own worker threads (if any) are internal to the handle.
unsafe impl Send for Encoder {}

/// The parameters for `settings`, or why x264 refused them.
fn parameters(settings: &EncoderSettings) -> Result<sys::x264_param_t, X264Error> {
    let preset = CString::new(settings.preset.as_str())
        .map_err(|_| X264Error::Nul(settings.preset.clone()))?;
    let tune = settings
        .tune
        .as_deref()
        .map(|t| CString::new(t).map_err(|_| X264Error::Nul(t.to_owned())))
        .transpose()?;
    let int =
        |v: u64, what: &'static str| i32::try_from(v).map_err(|_| X264Error::OutOfRange(what));
    let kbps = int(settings.bitrate.div_ceil(1000), "bit rate")?;
    if settings.width == 0
        || settings.height == 0
        || !settings.width.is_multiple_of(2)
        || !settings.height.is_multiple_of(2)
    {
        return Err(X264Error::OutOfRange(
            "dimensions must be even and non-zero",
        ));
    }
    if settings.fps.0 == 0 || settings.fps.1 == 0 {
        return Err(X264Error::OutOfRange("frame rate"));
    }
    let mut p = std::mem::MaybeUninit::<sys::x264_param_t>::uninit();
    // SAFETY: `x264_param_default_preset` fully initialises the struct it is given (it calls
    // `x264_param_default` first); the name pointers are valid C strings for the call.
    let rc = unsafe {
        sys::x264_param_default_preset(
            p.as_mut_ptr(),
            preset.as_ptr(),
            tune.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
        )
    };
    if rc < 0 {
        return Err(X264Error::Preset {
            preset: settings.preset.clone(),
            tune: settings.tune.clone().unwrap_or_default(),
        });
    }
    // SAFETY: initialised by the successful call above.
    let mut p = unsafe { p.assume_init() };
    p.i_log_level = sys::X264_LOG_NONE;
    p.i_threads = int(u64::from(settings.threads.max(1)), "threads")?;
    p.b_sliced_threads = 0;
    p.i_width = int(u64::from(settings.width), "width")?;
    p.i_height = int(u64::from(settings.height), "height")?;
    p.i_csp = sys::X264_CSP_I420 as i32;
    p.i_bitdepth = 8;
    // Timestamps are milliseconds; rate control follows them (variable frame rate input).
    p.b_vfr_input = 1;
    p.i_timebase_num = 1;
    p.i_timebase_den = 1000;
    p.i_fps_num = settings.fps.0;
    p.i_fps_den = settings.fps.1;
    // GOPs follow the source: IDRs only where the caller forces them (source keyframes).
    p.i_keyint_max = sys::X264_KEYINT_MAX_INFINITE as i32;
    p.i_scenecut_threshold = 0;
    p.b_open_gop = 0;
    // Output order = input order, so every frame keeps its source timestamps and IDRs land on
    // the source's decode timestamps too.
    p.i_bframe = 0;
    // Average bit rate, capped by a one-second VBV at the same rate (CBR-like for HLS).
    p.rc.i_rc_method = sys::X264_RC_ABR as i32;
    p.rc.i_bitrate = kbps;
    p.rc.i_vbv_max_bitrate = kbps;
    p.rc.i_vbv_buffer_size = kbps;
    // FLV and the HLS packager take length-prefixed NAL units and out-of-band SPS/PPS.
    p.b_annexb = 0;
    p.b_repeat_headers = 0;
    p.b_aud = 0;
    let profile =
        CString::new(settings.profile).map_err(|_| X264Error::Profile(settings.profile))?;
    // SAFETY: `p` is an initialised parameter struct; `profile` is a valid C string.
    if unsafe { sys::x264_param_apply_profile(&mut p, profile.as_ptr()) } < 0 {
        return Err(X264Error::Profile(settings.profile));
    }
    Ok(p)
}

/// The payload of an x264 NAL unit written with a 4-byte length prefix, without the prefix.
///
/// # Safety
/// `nal.p_payload` must point to `nal.i_payload` readable bytes.
unsafe fn nal_body(nal: &sys::x264_nal_t) -> Option<Bytes> {
    let len = usize::try_from(nal.i_payload).ok()?;
    if nal.p_payload.is_null() || len <= 4 {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let all = unsafe { std::slice::from_raw_parts(nal.p_payload, len) };
    Some(Bytes::copy_from_slice(all.get(4..)?))
}

impl Encoder {
    /// Opens an encoder.
    pub fn open(settings: &EncoderSettings) -> Result<Self, X264Error> {
        let mut p = parameters(settings)?;
        // SAFETY: `p` is a fully initialised parameter struct; x264 copies what it keeps.
        let raw = unsafe { sys::x264_encoder_open(&mut p) };
        let raw = NonNull::new(raw).ok_or(X264Error::Open {
            width: settings.width,
            height: settings.height,
        })?;
        let mut encoder = Encoder {
            raw,
            width: settings.width,
            height: settings.height,
            sps: Bytes::new(),
            pps: Bytes::new(),
        };
        let mut nals: *mut sys::x264_nal_t = std::ptr::null_mut();
        let mut count: i32 = 0;
        // SAFETY: `raw` is an open encoder; x264 points `nals` at `count` NAL descriptors it owns,
        // valid until the next call on this encoder.
        let rc = unsafe { sys::x264_encoder_headers(encoder.raw.as_ptr(), &mut nals, &mut count) };
        if rc < 0 || nals.is_null() {
            return Err(X264Error::Headers);
        }
        // SAFETY: as above: `count` descriptors at `nals`.
        let nals = unsafe { std::slice::from_raw_parts(nals, usize::try_from(count).unwrap_or(0)) };
        for nal in nals {
            // SAFETY: each descriptor's payload is owned by the encoder and `i_payload` long.
            let body = unsafe { nal_body(nal) };
            match (nal.i_type, body) {
                (t, Some(b)) if t == sys::nal_unit_type_e_NAL_SPS as i32 => encoder.sps = b,
                (t, Some(b)) if t == sys::nal_unit_type_e_NAL_PPS as i32 => encoder.pps = b,
                _ => {}
            }
        }
        if encoder.sps.is_empty() || encoder.pps.is_empty() {
            return Err(X264Error::Headers);
        }
        Ok(encoder)
    }

    /// The SPS NAL unit (no length prefix).
    pub fn sps(&self) -> &Bytes {
        &self.sps
    }

    /// The PPS NAL unit (no length prefix).
    pub fn pps(&self) -> &Bytes {
        &self.pps
    }

    /// Encodes `image` shown at `pts` (an IDR if `idr`); with `None`, drains one delayed frame.
    /// Returns the access unit x264 finished, if any.
    pub fn encode(
        &mut self,
        image: Option<(Image<'_>, i64, bool)>,
    ) -> Result<Option<Encoded>, X264Error> {
        // SAFETY: x264_picture_t is plain data; `x264_picture_init` fills in its defaults.
        let mut pic_in: sys::x264_picture_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut pic_out: sys::x264_picture_t = unsafe { std::mem::zeroed() };
        // SAFETY: both point to writable pictures.
        unsafe {
            sys::x264_picture_init(&mut pic_in);
            sys::x264_picture_init(&mut pic_out);
        }
        let with_input = match &image {
            Some((img, pts, idr)) => {
                self.check(img)?;
                pic_in.img.i_csp = sys::X264_CSP_I420 as i32;
                pic_in.img.i_plane = 3;
                for i in 0..3 {
                    // x264 only reads input planes; the pointer is `*mut` in its C API.
                    pic_in.img.plane[i] = img.planes[i].as_ptr().cast_mut();
                    pic_in.img.i_stride[i] = i32::try_from(img.strides[i])
                        .map_err(|_| X264Error::OutOfRange("stride"))?;
                }
                pic_in.i_pts = *pts;
                pic_in.i_type = if *idr {
                    sys::X264_TYPE_IDR as i32
                } else {
                    sys::X264_TYPE_AUTO as i32
                };
                true
            }
            None => false,
        };
        let mut nals: *mut sys::x264_nal_t = std::ptr::null_mut();
        let mut count: i32 = 0;
        let pic_ptr = if with_input {
            &mut pic_in as *mut sys::x264_picture_t
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: `raw` is open; `pic_in` (when given) points at planes that `check` verified
        // hold `stride * rows` bytes each and that stay borrowed for this call; x264 copies the
        // input before returning. The NAL descriptors it returns stay valid until the next call.
        let size = unsafe {
            sys::x264_encoder_encode(
                self.raw.as_ptr(),
                &mut nals,
                &mut count,
                pic_ptr,
                &mut pic_out,
            )
        };
        if size < 0 {
            return Err(X264Error::Encode(size));
        }
        if size == 0 || count <= 0 || nals.is_null() {
            return Ok(None);
        }
        // SAFETY: x264 returned `count >= 1` descriptors at `nals`.
        let first = unsafe { &*nals };
        if first.p_payload.is_null() {
            return Ok(None);
        }
        // SAFETY: x264 guarantees the payloads of one call's NAL units are contiguous, starting
        // at the first one's payload, `size` bytes in all.
        let data = unsafe { std::slice::from_raw_parts(first.p_payload, size as usize) };
        Ok(Some(Encoded {
            pts: pic_out.i_pts,
            keyframe: pic_out.b_keyframe != 0,
            data: Bytes::copy_from_slice(data),
        }))
    }

    /// Frames x264 still holds (lookahead).
    pub fn delayed_frames(&self) -> usize {
        // SAFETY: `raw` is open.
        let n = unsafe { sys::x264_encoder_delayed_frames(self.raw.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    fn check(&self, img: &Image<'_>) -> Result<(), X264Error> {
        if img.width != self.width || img.height != self.height {
            return Err(X264Error::WrongSize {
                width: img.width,
                height: img.height,
                enc_width: self.width,
                enc_height: self.height,
            });
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let sizes = [
            (w, h),
            (w.div_ceil(2), h.div_ceil(2)),
            (w.div_ceil(2), h.div_ceil(2)),
        ];
        for (plane, (cols, rows)) in sizes.into_iter().enumerate() {
            let stride = img.strides[plane];
            let needed = stride * (rows - 1) + cols;
            let have = img.planes[plane].len();
            if stride < cols || have < needed {
                return Err(X264Error::PlaneTooSmall {
                    plane,
                    have,
                    needed,
                });
            }
        }
        Ok(())
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `x264_encoder_open` and is closed exactly once, here.
        unsafe { sys::x264_encoder_close(self.raw.as_ptr()) }
    }
}

/// Settings of the small, fast encoders unit tests use to make real H.264.
#[cfg(test)]
pub(crate) fn test_settings(width: u32, height: u32, bitrate: u64) -> EncoderSettings {
    EncoderSettings {
        width,
        height,
        bitrate,
        preset: "ultrafast".into(),
        tune: None,
        profile: "high",
        fps: (30, 1),
        threads: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_proto::avc::{DecoderConfig, LengthPrefixedNals, NalLengthSize};

    fn settings() -> EncoderSettings {
        test_settings(64, 48, 200_000)
    }

    fn gray(w: usize, h: usize, shade: u8) -> [Vec<u8>; 3] {
        [
            vec![shade; w * h],
            vec![128; w * h / 4],
            vec![128; w * h / 4],
        ]
    }

    fn image(planes: &[Vec<u8>; 3], w: u32, h: u32) -> Image<'_> {
        Image {
            width: w,
            height: h,
            planes: [&planes[0], &planes[1], &planes[2]],
            strides: [w as usize, w as usize / 2, w as usize / 2],
        }
    }

    #[test]
    fn encodes_length_prefixed_frames_with_idrs_where_forced() {
        // ultrafast would use no High tools, and x264 then signals the lower profile.
        let mut enc = Encoder::open(&EncoderSettings {
            preset: "veryfast".into(),
            ..settings()
        })
        .unwrap();
        let config =
            DecoderConfig::from_parameter_sets(enc.sps().clone(), enc.pps().clone()).unwrap();
        let sps = config.first_sps().unwrap().unwrap();
        assert_eq!((sps.width, sps.height), (64, 48));
        assert!(config.codec_string().starts_with("avc1.64"), "high profile");
        let mut out = Vec::new();
        for i in 0..20i64 {
            let planes = gray(64, 48, (i * 10) as u8);
            let idr = i == 0 || i == 10;
            if let Some(e) = enc
                .encode(Some((image(&planes, 64, 48), i * 33, idr)))
                .unwrap()
            {
                out.push(e);
            }
        }
        while enc.delayed_frames() > 0 {
            match enc.encode(None).unwrap() {
                Some(e) => out.push(e),
                None => break,
            }
        }
        assert_eq!(out.len(), 20, "every picture comes out");
        let pts: Vec<i64> = out.iter().map(|e| e.pts).collect();
        assert_eq!(
            pts,
            (0..20).map(|i| i * 33).collect::<Vec<_>>(),
            "no reordering"
        );
        let keys: Vec<i64> = out.iter().filter(|e| e.keyframe).map(|e| e.pts).collect();
        assert_eq!(keys, vec![0, 330], "IDRs only where forced");
        for e in &out {
            let nals: Vec<_> = LengthPrefixedNals::new(&e.data, NalLengthSize::Four)
                .collect::<Result<_, _>>()
                .expect("length-prefixed NAL units");
            assert!(!nals.is_empty());
        }
    }

    #[test]
    fn refuses_bad_settings_and_short_planes() {
        let mut s = settings();
        s.preset = "warpspeed".into();
        assert!(matches!(Encoder::open(&s), Err(X264Error::Preset { .. })));
        let mut s = settings();
        s.width = 63;
        assert!(matches!(Encoder::open(&s), Err(X264Error::OutOfRange(_))));
        let mut enc = Encoder::open(&settings()).unwrap();
        let mut planes = gray(64, 48, 0);
        planes[2].truncate(10);
        assert!(matches!(
            enc.encode(Some((image(&planes, 64, 48), 0, true))),
            Err(X264Error::PlaneTooSmall { plane: 2, .. })
        ));
        let planes = gray(32, 24, 0);
        assert!(matches!(
            enc.encode(Some((image(&planes, 32, 24), 0, true))),
            Err(X264Error::WrongSize { .. })
        ));
    }
}
