//! FLV tag bodies as carried in RTMP video (type 9) and audio (type 8) messages.
//!
//! An RTMP media message body is exactly an FLV tag body, delivered whole, so the parsers here
//! take the complete body and either return a typed tag or an [`FlvError`]; a short body is an
//! error, not an incomplete read. [`VideoTag`] splits the frame type and codec from the payload
//! and, for H.264, the AVCPacketType (sequence header / NAL units with composition time / end of
//! sequence); [`AudioTag`] splits the sound format and, for AAC, the AACPacketType. Other codecs
//! come back as typed "other" bodies so callers can refuse them by name. Payloads are `Bytes`
//! slices of the input (no copy). The `encode` methods write the same bodies for RTMP playback of
//! relayed and transcoded frames.

mod audio;
mod video;

pub use audio::{AacPacket, AudioBody, AudioTag, SoundFormat};
pub use video::{AvcPacket, FrameType, VideoBody, VideoCodec, VideoTag};

/// Everything that can be wrong with an FLV tag body.
#[derive(Debug, thiserror::Error)]
pub enum FlvError {
    /// A tag body of zero bytes.
    #[error("empty FLV tag body")]
    EmptyTag,
    /// The body ends before the header fields its first byte announces.
    #[error("FLV {what} header needs {needed} bytes, body has {have}")]
    Truncated {
        /// Which header was being read.
        what: &'static str,
        /// Bytes the header needs.
        needed: usize,
        /// Bytes the body has.
        have: usize,
    },
    /// Video frame type 0, 6 or 7, which FLV does not define.
    #[error("invalid video frame type {0}")]
    InvalidFrameType(u8),
    /// AVCPacketType other than 0, 1 or 2.
    #[error("unknown AVC packet type {0}")]
    UnknownAvcPacketType(u8),
    /// AACPacketType other than 0 or 1.
    #[error("unknown AAC packet type {0}")]
    UnknownAacPacketType(u8),
    /// A composition time offset outside the signed 24-bit range (encoding only).
    #[error("composition time offset {0} ms does not fit in 24 bits")]
    CompositionTimeOutOfRange(i32),
    /// A codec id, sound format or packet type too wide for its 4-bit field (encoding only).
    #[error("{field} value {value} does not fit its 4-bit field")]
    FieldOutOfRange {
        /// The field being written.
        field: &'static str,
        /// The value that does not fit.
        value: u8,
    },
}

/// Checks that `value` fits a 4-bit field.
fn nibble(field: &'static str, value: u8) -> Result<u8, FlvError> {
    if value > 0x0F {
        return Err(FlvError::FieldOutOfRange { field, value });
    }
    Ok(value)
}
