//! HLS playlists (RFC 8216): the live media playlist of each rendition and the master playlist,
//! the Low-Latency HLS playlist of fMP4 parts ([`LlPlaylist`], RFC 8216bis), and the
//! [`SegmentStart`] decisions the origin's packager makes and every node follows.
//!
//! The packager pushes each finished segment into a [`MediaPlaylist`], a sliding window that
//! evicts the oldest segment and keeps `EXT-X-MEDIA-SEQUENCE`, `EXT-X-DISCONTINUITY-SEQUENCE`
//! and `EXT-X-TARGETDURATION` consistent as segments come and go; [`MediaPlaylist::render`]
//! writes the text served to players. [`write_master`] lists the renditions of an adaptive stream.
//! Times come in as arguments (segment durations, unix milliseconds for
//! `EXT-X-PROGRAM-DATE-TIME`); nothing here reads a clock.

mod ll;
mod master;
mod playlist;
mod segment;
mod time;

pub use ll::{LlPlaylist, LlSegment, Part, RenditionReport};
pub use master::{Variant, write_master};
pub use playlist::{MediaPlaylist, Segment};
pub use segment::SegmentStart;
pub use time::write_program_date_time;

/// Everything that can be wrong with what is asked to go into a playlist.
#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    /// A URI that is empty, starts with `#`, or holds whitespace or control characters: it would
    /// break the line structure of the playlist (stream names come from publishers).
    #[error("URI is empty, starts with '#', or contains whitespace or control characters")]
    InvalidUri,
    /// A CODECS value holding a quote or control character.
    #[error("CODECS value contains a quote or control character")]
    InvalidCodecs,
    /// A frame rate that is not a positive finite number.
    #[error("frame rate {0} is not a positive finite number")]
    InvalidFrameRate(f64),
    /// A master playlist needs at least one variant.
    #[error("master playlist has no variants")]
    NoVariants,
}

/// Checks that `uri` can stand alone on a playlist line.
fn check_uri(uri: &str) -> Result<(), HlsError> {
    if uri.is_empty()
        || uri.starts_with('#')
        || uri.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(HlsError::InvalidUri);
    }
    Ok(())
}
