//! Scaling a picture to a rendition's size as I420 with libswscale (bicubic, like ffmpeg's
//! default `scale`), into a new frame that the next rendition down can scale from in turn.
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
    input: (Pixel, u32, u32),
    output: (u32, u32),
}

// SAFETY: an SwsContext holds no thread-local state, and the scaler is only used through
// `&mut self` (one thread at a time).
unsafe impl Send for Scaler {}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler")
            .field("input", &self.input)
            .field("output", &self.output)
            .finish()
    }
}

impl Scaler {
    /// A scaler from `input` (format, width, height) to `width`x`height` I420.
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
            input,
            output: (width, height),
        })
    }

    /// The input shape this scaler takes.
    pub fn input(&self) -> (Pixel, u32, u32) {
        self.input
    }

    /// Scales `frame` into a new I420 frame.
    pub fn run(
        &mut self,
        frame: &ffmpeg::frame::Video,
    ) -> Result<ffmpeg::frame::Video, ffmpeg::Error> {
        let mut out = ffmpeg::frame::Video::new(Pixel::YUV420P, self.output.0, self.output.1);
        self.ctx.run(frame, &mut out)?;
        Ok(out)
    }
}

/// The planes of an I420 frame, for x264.
pub fn image(frame: &ffmpeg::frame::Video) -> Image<'_> {
    Image {
        width: frame.width(),
        height: frame.height(),
        planes: [frame.data(0), frame.data(1), frame.data(2)],
        strides: [frame.stride(0), frame.stride(1), frame.stride(2)],
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
        let out = s.run(&src).unwrap();
        let img = image(&out);
        assert_eq!((img.width, img.height), (64, 36));
        assert!(img.planes[0].len() >= img.strides[0] * 35 + 64);
        assert!(
            img.planes[0][..64]
                .iter()
                .all(|&p| (195..=205).contains(&p))
        );
        let other = ffmpeg::frame::Video::new(Pixel::YUV420P, 100, 72);
        assert!(s.run(&other).is_err(), "a different input shape is refused");
        let yuv422 = ffmpeg::frame::Video::new(Pixel::YUV422P, 128, 72);
        let mut s = Scaler::new((Pixel::YUV422P, 128, 72), 64, 36).unwrap();
        assert_eq!(
            s.run(&yuv422).unwrap().format(),
            Pixel::YUV420P,
            "converted to I420"
        );
    }
}
