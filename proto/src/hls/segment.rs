//! The decision that starts a segment, made once by the origin's packager and carried with the
//! media to every node that packages the stream (the relay sends it with the frame it applies
//! to). A node that follows these decisions cuts its segments at the same frames, names and
//! numbers them the same, stamps the same times and, starting its TS muxer from the carried
//! state, writes the same bytes: any edge can serve any player's next request.

use crate::ts::TsMuxer;

/// Where and how a segment starts: attached to its first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStart {
    /// Media sequence number (consecutive within a stream's life, across republishes and
    /// origin changes).
    pub sequence: u64,
    /// Discontinuity sequence number: the `EXT-X-DISCONTINUITY` tags of the stream up to and
    /// including this segment's.
    pub discontinuity_sequence: u64,
    /// An `EXT-X-DISCONTINUITY` goes before this segment.
    pub discontinuity: bool,
    /// Wall-clock time of its first frame, unix milliseconds (`EXT-X-PROGRAM-DATE-TIME`).
    pub program_date_time: i64,
    /// Added to the stream's frame timestamps (ms) to get the segment's output timeline, which
    /// never goes back across a republish.
    pub timestamp_offset: i64,
    /// The origin's `EXT-X-TARGETDURATION` (seconds) when the segment started.
    pub target_duration: u32,
    /// The deciding node's LL-HLS part target (`EXT-X-PART-INF:PART-TARGET`), ms; 0 when it
    /// does not cut parts (LL-HLS off there), so neither does anyone following it.
    pub part_target_ms: u32,
    /// The TS muxer's state at the segment's first packet.
    pub muxer: TsMuxer,
}
