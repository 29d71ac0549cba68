//! The renditions a WebRTC viewer of a stream can be sent: the source and the transcoder's
//! ladder (`{stream}_{height}p` hubs, live, with video), with their bit rates (what HLS
//! measured of their segments, the figure of the master playlist when the store has none), and
//! the one warning a stream with B-frames and no ladder gets.

use std::collections::HashSet;
use std::sync::Mutex;

use streamfleet_proto::names::RenditionId;

use crate::cluster::model::StreamKey;
use crate::media::hub::Hubs;

/// One rendition a viewer may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// Which.
    pub rendition: RenditionId,
    /// Lines.
    pub height: u32,
    /// Bits per second, 0 while unknown.
    pub bitrate: u64,
}

/// The live renditions of `stream` with video, the best first (by bit rate, then height);
/// without the source when `bframes` and a rendition exists (ours have no B-frames).
pub fn rungs(hubs: &Hubs, stream: &StreamKey, bframes: bool) -> Vec<Rung> {
    let mut all: Vec<Rung> = hubs
        .family(stream)
        .iter()
        .filter(|h| h.is_live())
        .filter_map(|h| {
            let info = h.info();
            let video = info.video.as_ref()?;
            Some(Rung {
                rendition: h.key().rendition,
                height: video.height,
                bitrate: h.hls_view().map_or(0, |v| v.average_bps),
            })
        })
        .collect();
    if bframes && all.iter().any(|r| r.rendition != RenditionId::Source) {
        all.retain(|r| r.rendition != RenditionId::Source);
    }
    all.sort_by_key(|r| std::cmp::Reverse((r.bitrate, r.height)));
    all
}

/// The best rendition without B-frames: the highest transcoded one.
pub fn best_without_bframes(rungs: &[Rung]) -> Option<RenditionId> {
    rungs
        .iter()
        .filter(|r| r.rendition != RenditionId::Source)
        .max_by_key(|r| r.height)
        .map(|r| r.rendition)
}

/// The rendition `forceStreamQuality` names by its height: a transcoded one of that height,
/// else the source when it has that height.
pub fn by_height(rungs: &[Rung], height: u32) -> Option<RenditionId> {
    let transcoded = RenditionId::Height(height);
    if rungs.iter().any(|r| r.rendition == transcoded) {
        return Some(transcoded);
    }
    rungs
        .iter()
        .find(|r| r.rendition == RenditionId::Source && r.height == height)
        .map(|r| r.rendition)
}

/// Streams already warned about for sending B-frames to WebRTC viewers without a ladder.
#[derive(Debug, Default)]
pub struct BFrameWarnings(Mutex<HashSet<StreamKey>>);

/// Streams remembered; beyond it the set starts over (a stream may then be warned again).
const MAX_WARNED: usize = 10_000;

impl BFrameWarnings {
    /// Logs the warning for `stream` unless it already was.
    pub fn warn(&self, stream: &StreamKey) {
        let mut warned = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if warned.contains(stream) {
            return;
        }
        if warned.len() >= MAX_WARNED {
            warned.clear();
        }
        warned.insert(stream.clone());
        drop(warned);
        tracing::warn!(
            stream = %stream,
            "the stream has B-frames, which browsers play badly over WebRTC, and no transcoded \
             rendition to send instead: WebRTC viewers get it as it is (publish without \
             B-frames, e.g. x264 bframes=0, or give the origin a transcode ladder)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(rendition: RenditionId, height: u32, bitrate: u64) -> Rung {
        Rung {
            rendition,
            height,
            bitrate,
        }
    }

    #[test]
    fn heights_name_renditions_and_b_frames_pick_the_highest() {
        let ladder = [
            rung(RenditionId::Source, 720, 2_000_000),
            rung(RenditionId::Height(480), 480, 1_000_000),
            rung(RenditionId::Height(240), 240, 300_000),
        ];
        assert_eq!(by_height(&ladder, 240), Some(RenditionId::Height(240)));
        assert_eq!(by_height(&ladder, 720), Some(RenditionId::Source));
        assert_eq!(by_height(&ladder, 360), None);
        assert_eq!(
            best_without_bframes(&ladder),
            Some(RenditionId::Height(480))
        );
        assert_eq!(best_without_bframes(&ladder[..1]), None);
    }
}
