//! Scaling one decoded picture to a rendition's size and to I420 (libswscale through
//! `ffmpeg-next`), into a frame reused for every picture of the rendition.
//!
//! `ffmpeg-next`'s scaling context is not marked `Send`, though an `SwsContext` has no thread
//! affinity; the wrapper here asserts that so a rendition's scaler can run on whichever pool
//! thread picks its lane up (one at a time).
#![allow(unsafe_code)]

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use super::x264::Image;

/// A scaler from one input shape to one output size.
pub struct Scaler {
    ctx: scaling::Context,
    out: ffmpeg::frame::Video,
    input: (Pixel, u32, u32),
}

// SAFETY: an SwsContext holds no thread-local state; the scaler is only used through `&mut self`
// (one thread at a time) and its output frame is an owned, reference-counted buffer.
unsafe impl Send for Scaler {}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler")
            .field("input", &self.input)
            .field("output", &(self.out.width(), self.out.height()))
            .finish()
    }
}

impl Scaler {
    /// A scaler from `input` (format, width, height) to `width`x`height` I420, bicubic (as
    /// ffmpeg's `scale` filter does by default).
    pub fn new(input: (Pixel, u32, u32), width: u32, height: u32) -> Result<Self, ffmpeg::Error> {
        let ctx = scaling::Context::get(
            input.0,
            input.1,
            input.2,
            Pixel::YUV420P,
            width,
            height,
            scaling::Flags::BICUBIC,
        )?;
        Ok(Scaler {
            ctx,
            out: ffmpeg::frame::Video::new(Pixel::YUV420P, width, height),
            input,
        })
    }

    /// The input shape this scaler takes.
    pub fn input(&self) -> (Pixel, u32, u32) {
        self.input
    }

    /// Scales `frame`; the result is valid until the next call.
    pub fn run(&mut self, frame: &ffmpeg::frame::Video) -> Result<Image<'_>, ffmpeg::Error> {
        self.ctx.run(frame, &mut self.out)?;
        let out = &self.out;
        Ok(Image {
            width: out.width(),
            height: out.height(),
            planes: [out.data(0), out.data(1), out.data(2)],
            strides: [out.stride(0), out.stride(1), out.stride(2)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_to_the_rendition_size_keeping_the_picture() {
        let mut src = ffmpeg::frame::Video::new(Pixel::YUV420P, 128, 72);
        for plane in 0..3 {
            let fill = if plane == 0 { 200 } else { 128 };
            src.data_mut(plane).fill(fill);
        }
        let mut s = Scaler::new((Pixel::YUV420P, 128, 72), 64, 36).unwrap();
        let img = s.run(&src).unwrap();
        assert_eq!((img.width, img.height), (64, 36));
        assert!(img.planes[0].len() >= img.strides[0] * 35 + 64);
        assert!(
            img.planes[0][..64]
                .iter()
                .all(|&p| (195..=205).contains(&p))
        );
        let other = ffmpeg::frame::Video::new(Pixel::YUV420P, 100, 72);
        assert!(s.run(&other).is_err(), "a different input shape is refused");
    }
}
