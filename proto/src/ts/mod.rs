//! MPEG-TS muxing for HLS segments (ISO/IEC 13818-1).
//!
//! The HLS packager hands [`TsMuxer`] Annex B H.264 access units and ADTS AAC frames with 90 kHz
//! timestamps; the muxer writes 188-byte transport packets into a `BufMut`: the PAT and PMT
//! (`psi`), then PES packets split across transport packets with adaptation fields for PCR,
//! random access and discontinuity flags and for stuffing (`muxer`). A segment is
//! [`TsMuxer::write_psi`] followed by the segment's frames. The muxer keeps only the continuity
//! counters and a pending-discontinuity flag between calls.

#[cfg(test)]
mod ffprobe;
mod muxer;
mod psi;
#[cfg(test)]
mod reader;

pub use muxer::{MAX_AUDIO_PES_PAYLOAD, MAX_VIDEO_FRAME_LEN, PCR_DELAY_90K, Tracks, TsMuxer};

/// Size of every transport packet.
pub const PACKET_LEN: usize = 188;
/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PID of the H.264 elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the AAC elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// PMT stream_type of H.264 video.
pub const STREAM_TYPE_H264: u8 = 0x1B;
/// PMT stream_type of AAC audio in ADTS framing.
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;
/// Timestamps are 33-bit counters of a 90 kHz clock.
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// Everything that can be wrong with what the packager asks the muxer to write.
#[derive(Debug, thiserror::Error)]
pub enum TsError {
    /// A video frame was written to a muxer created without a video track.
    #[error("this MPEG-TS muxer has no video track")]
    NoVideoTrack,
    /// An audio frame was written to a muxer created without an audio track.
    #[error("this MPEG-TS muxer has no audio track")]
    NoAudioTrack,
    /// A frame of zero bytes.
    #[error("empty {0} frame")]
    EmptyFrame(&'static str),
    /// Audio PES packets must state their length, which has 16 bits.
    #[error("{len} bytes of audio exceed the {limit}-byte limit of one PES packet")]
    AudioTooLarge {
        /// The bytes handed in.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A video access unit larger than [`MAX_VIDEO_FRAME_LEN`].
    #[error("video frame of {len} bytes exceeds the limit of {limit}")]
    VideoTooLarge {
        /// The bytes handed in.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
}
