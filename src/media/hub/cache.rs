//! The frames a new subscriber of a hub starts with (see [`StartCache`]).

use super::{AUDIO_ONLY_CACHE, GOP_MAX_BYTES, GOP_MAX_FRAMES, SubscriberKind};
use crate::media::frame::{Frame, TrackKind};

/// The recent frames a new subscriber starts with: from the start of the current HLS segment
/// when the stream's frames carry segment decisions, else from the latest keyframe. Players
/// start at the latest keyframe in it (the least delay); edges at its start, so that they
/// package the current segment whole and serve it like the origin.
#[derive(Debug, Default)]
pub(super) struct StartCache {
    frames: Vec<Frame>,
    bytes: usize,
    /// Index of the latest keyframe in `frames`.
    keyframe: usize,
    /// The cache was dropped (too big); wait for a keyframe before caching again.
    broken: bool,
}

impl StartCache {
    pub(super) fn push(&mut self, frame: &Frame, audio_only: bool) {
        // Where a player may start: a keyframe; audio-only streams have none (any frame does,
        // and their segments start on any frame).
        let start_point = if audio_only {
            frame.segment.is_some()
        } else {
            frame.keyframe
        };
        if start_point {
            // A segment that starts here, or frames without segments: start over. A keyframe
            // inside a segment only moves where players start.
            let in_segment = self.frames.first().is_some_and(|f| f.segment.is_some());
            if frame.segment.is_some() || !in_segment || self.broken {
                *self = StartCache::default();
            } else {
                self.keyframe = self.frames.len();
            }
        }
        if self.broken {
            return;
        }
        self.bytes += frame.body.len();
        self.frames.push(frame.clone());
        if audio_only && frame.kind == TrackKind::Audio {
            // Players get the last few frames; without segments nothing older is kept.
            let len = self.frames.len();
            self.keyframe = len.saturating_sub(AUDIO_ONLY_CACHE);
            let in_segment = self.frames.first().is_some_and(|f| f.segment.is_some());
            if !in_segment && self.keyframe > 0 {
                let dropped: usize = self
                    .frames
                    .drain(..self.keyframe)
                    .map(|f| f.body.len())
                    .sum();
                self.bytes -= dropped;
                self.keyframe = 0;
            }
        }
        if self.frames.len() > GOP_MAX_FRAMES || self.bytes > GOP_MAX_BYTES {
            // Too much: keep the latest GOP only, or nothing if that alone is too much.
            let dropped: usize = self
                .frames
                .drain(..self.keyframe)
                .map(|f| f.body.len())
                .sum();
            self.bytes -= dropped;
            self.keyframe = 0;
            if self.frames.len() > GOP_MAX_FRAMES || self.bytes > GOP_MAX_BYTES {
                *self = StartCache {
                    broken: true,
                    ..StartCache::default()
                };
            }
        }
    }

    /// The frames a new subscriber of `kind` starts with.
    pub(super) fn for_new(&self, kind: SubscriberKind) -> &[Frame] {
        let from = if kind == SubscriberKind::Relay {
            0
        } else {
            self.keyframe
        };
        self.frames.get(from..).unwrap_or_default()
    }
}
