//! The Low-Latency HLS media playlist (RFC 8216bis): fMP4 segments made of partial segments,
//! the parts of the newest segments listed with `EXT-X-PART`, the next part announced with
//! `EXT-X-PRELOAD-HINT`, what the server can do in `EXT-X-SERVER-CONTROL` (blocking reload,
//! delta updates), and the other renditions' live edge in `EXT-X-RENDITION-REPORT`.
//!
//! Data flow: the packager calls [`LlPlaylist::push_part`] for each finished part (the first
//! part of a segment opens it), [`LlPlaylist::close_segment`] when a segment is complete, and
//! [`LlPlaylist::render`] per request, with `skip` for a delta update (`_HLS_skip=YES`).
//! [`LlPlaylist::has`] answers a blocking reload: does the playlist contain part `p` of segment
//! `m` yet. Numbers come in decided (by the origin); times come in as arguments.

use std::collections::VecDeque;
use std::fmt::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::time::write_program_date_time;
use super::{HlsError, check_uri};

/// Segments whose parts stay listed: the newest ones (RFC 8216bis 6.2.2: parts of segments
/// within three target durations of the end; with segments of one target duration, three).
const PARTS_LISTED_FOR: usize = 3;

/// One partial segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its URI, relative to the playlist.
    pub uri: String,
    /// Its duration.
    pub duration: Duration,
    /// It starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
}

/// One segment (complete, or the one being made when `duration` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlSegment {
    /// Its URI (the whole segment: its parts one after the other).
    pub uri: String,
    /// Media sequence number.
    pub sequence: u64,
    /// Discontinuity sequence number (tags up to and including its own).
    pub discontinuity_sequence: u64,
    /// `EXT-X-DISCONTINUITY` before it.
    pub discontinuity: bool,
    /// Wall-clock time of its first frame, unix ms.
    pub program_date_time: i64,
    /// `EXT-X-MAP` URI of the initialization segment its parts need.
    pub map: String,
    /// Its parts so far.
    pub parts: Vec<Part>,
    /// Its duration once complete.
    pub duration: Option<Duration>,
}

/// Another rendition's live edge, for `EXT-X-RENDITION-REPORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// That rendition's playlist URI, relative to this one.
    pub uri: String,
    /// Its newest segment's number.
    pub last_msn: u64,
    /// The index of that segment's newest part.
    pub last_part: u64,
}

/// A live LL-HLS media playlist.
#[derive(Debug, Clone)]
pub struct LlPlaylist {
    window: NonZeroUsize,
    /// Complete segments (oldest first), then the one being made, if any.
    segments: VecDeque<LlSegment>,
    /// `EXT-X-PART-INF:PART-TARGET`.
    part_target: Duration,
    /// `EXT-X-TARGETDURATION` in seconds (a high-water mark).
    target_duration: u64,
    /// URI of the next part, once it is known (`EXT-X-PRELOAD-HINT`).
    preload_hint: Option<String>,
}

/// Milliseconds as `S.mmm`.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

impl LlPlaylist {
    /// An empty playlist for parts of about `part_target`, listing `window` complete segments
    /// (and the one being made), with `target_duration` seconds to start with.
    pub fn new(part_target: Duration, target_duration: u64, window: NonZeroUsize) -> Self {
        LlPlaylist {
            window,
            segments: VecDeque::new(),
            part_target,
            target_duration: target_duration.max(1),
            preload_hint: None,
        }
    }

    /// Raises `EXT-X-TARGETDURATION` to at least `seconds`.
    pub fn raise_target_duration(&mut self, seconds: u64) {
        self.target_duration = self.target_duration.max(seconds);
    }

    /// `EXT-X-PART-INF:PART-TARGET`.
    pub fn part_target(&self) -> Duration {
        self.part_target
    }

    /// Raises `EXT-X-PART-INF:PART-TARGET` to at least `target` (it may not go down while
    /// parts cut to it are listed).
    pub fn raise_part_target(&mut self, target: Duration) {
        self.part_target = self.part_target.max(target);
    }

    /// `EXT-X-TARGETDURATION` in seconds.
    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// Opens `segment` (no parts, no duration yet) after the last one. A number that does not
    /// follow the last one's starts the window again; one at or below it replaces from there.
    pub fn open_segment(&mut self, mut segment: LlSegment) -> Result<(), HlsError> {
        check_uri(&segment.uri)?;
        check_uri(&segment.map)?;
        segment.duration = None;
        segment.parts.clear();
        self.segments.retain(|s| s.sequence < segment.sequence);
        if self
            .segments
            .back()
            .is_some_and(|last| last.sequence.checked_add(1) != Some(segment.sequence))
        {
            self.segments.clear();
        }
        self.segments.push_back(segment);
        Ok(())
    }

    /// Adds a finished part to the segment being made.
    pub fn push_part(&mut self, part: Part) -> Result<(), HlsError> {
        check_uri(&part.uri)?;
        if let Some(open) = self.segments.back_mut().filter(|s| s.duration.is_none()) {
            open.parts.push(part);
        }
        Ok(())
    }

    /// Announces the next part (`EXT-X-PRELOAD-HINT`), or nothing.
    pub fn set_preload_hint(&mut self, uri: Option<String>) -> Result<(), HlsError> {
        if let Some(u) = &uri {
            check_uri(u)?;
        }
        self.preload_hint = uri;
        Ok(())
    }

    /// Completes the segment being made, `duration` long; the oldest leave the window.
    pub fn close_segment(&mut self, duration: Duration) {
        if let Some(open) = self.segments.back_mut().filter(|s| s.duration.is_none()) {
            open.duration = Some(duration);
            let rounded = (duration.as_millis() as u64).saturating_add(500) / 1000;
            self.target_duration = self.target_duration.max(rounded);
        }
        while self.complete() > self.window.get() {
            self.segments.pop_front();
        }
    }

    /// Drops the segment being made without listing it (frames of it were lost).
    pub fn drop_open(&mut self) {
        if self.segments.back().is_some_and(|s| s.duration.is_none()) {
            self.segments.pop_back();
        }
    }

    fn complete(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| s.duration.is_some())
            .count()
    }

    /// The segments listed, oldest first (the last may be the one being made).
    pub fn segments(&self) -> impl ExactSizeIterator<Item = &LlSegment> {
        self.segments.iter()
    }

    /// The live edge: the newest segment's number and the index of its newest part.
    pub fn last(&self) -> Option<(u64, u64)> {
        let s = self.segments.iter().rev().find(|s| !s.parts.is_empty())?;
        Some((s.sequence, s.parts.len() as u64 - 1))
    }

    /// Whether the playlist contains part `part` of segment `msn` (any part of it when
    /// `part` is `None`: the whole segment), or anything later: a blocking reload for it can be
    /// answered.
    pub fn has(&self, msn: u64, part: Option<u64>) -> bool {
        self.segments.iter().any(|s| {
            s.sequence > msn
                || (s.sequence == msn
                    && match part {
                        None => s.duration.is_some(),
                        Some(p) => s.duration.is_some() || (s.parts.len() as u64) > p,
                    })
        })
    }

    /// `EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL`: six target durations (RFC 8216bis 4.4.3.8).
    pub fn skip_until(&self) -> Duration {
        Duration::from_secs(6 * self.target_duration)
    }

    /// How many of the oldest segments a delta update leaves out: those that end more than
    /// [`LlPlaylist::skip_until`] before the end of the playlist.
    fn skippable(&self) -> usize {
        let mut from_end = Duration::ZERO;
        let mut keep = 0;
        for s in self.segments.iter().rev() {
            if from_end >= self.skip_until() {
                break;
            }
            from_end += s
                .duration
                .unwrap_or_else(|| s.parts.iter().map(|p| p.duration).sum());
            keep += 1;
        }
        self.segments.len() - keep
    }

    /// Writes the playlist; with `skip`, a delta update (`EXT-X-SKIP` in place of the oldest
    /// segments), and `reports` as `EXT-X-RENDITION-REPORT`s.
    pub fn render(&self, skip: bool, reports: &[RenditionReport]) -> String {
        let mut out = String::with_capacity(512 + 160 * self.segments.len());
        let first = self.segments.front();
        let media_sequence = first.map_or(0, |s| s.sequence);
        let discontinuity_sequence = first.map_or(0, |s| {
            s.discontinuity_sequence
                .saturating_sub(u64::from(s.discontinuity))
        });
        let part_target = seconds(self.part_target);
        // PART-HOLD-BACK at least three part targets (RFC 8216bis 4.4.3.8); HOLD-BACK three
        // target durations.
        let part_hold_back = seconds(self.part_target * 3);
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={}.0,HOLD-BACK={}.0,\
             PART-HOLD-BACK={part_hold_back}\n#EXT-X-PART-INF:PART-TARGET={part_target}\n\
             #EXT-X-MEDIA-SEQUENCE:{media_sequence}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}\n",
            self.target_duration,
            6 * self.target_duration,
            3 * self.target_duration,
        );
        let skipped = if skip { self.skippable() } else { 0 };
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let parts_from = self.segments.len().saturating_sub(PARTS_LISTED_FOR + 1);
        let mut map: Option<&str> = None;
        for (i, s) in self.segments.iter().enumerate() {
            if i < skipped {
                continue;
            }
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(s.map.as_str()) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", s.map);
                map = Some(&s.map);
            }
            out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
            write_program_date_time(s.program_date_time, &mut out);
            out.push('\n');
            if i >= parts_from {
                for p in &s.parts {
                    let _ = write!(
                        out,
                        "#EXT-X-PART:DURATION={},URI=\"{}\"",
                        seconds(p.duration),
                        p.uri
                    );
                    if p.independent {
                        out.push_str(",INDEPENDENT=YES");
                    }
                    out.push('\n');
                }
            }
            if let Some(d) = s.duration {
                let _ = writeln!(out, "#EXTINF:{},\n{}", seconds(d), s.uri);
            }
        }
        if let Some(hint) = &self.preload_hint {
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
        }
        for r in reports {
            let _ = writeln!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
                r.uri, r.last_msn, r.last_part
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    fn segment(n: u64) -> LlSegment {
        LlSegment {
            uri: format!("s-{n}.m4s"),
            sequence: n,
            discontinuity_sequence: 0,
            discontinuity: false,
            program_date_time: 1_795_762_253_000 + n as i64 * 1000,
            map: "s-init.mp4".into(),
            parts: vec![],
            duration: None,
        }
    }

    fn part(n: u64, p: u64, independent: bool) -> Part {
        Part {
            uri: format!("s-{n}.{p}.m4s"),
            duration: Duration::from_millis(333),
            independent,
        }
    }

    /// Segments `first..=last` of three parts each, the last one still being made (two parts).
    fn playlist(first: u64, last: u64) -> LlPlaylist {
        let mut pl = LlPlaylist::new(Duration::from_millis(333), 1, window(4));
        for n in first..=last {
            pl.open_segment(segment(n)).unwrap();
            let parts = if n == last { 2 } else { 3 };
            for p in 0..parts {
                pl.push_part(part(n, p, p == 0)).unwrap();
            }
            if n != last {
                pl.close_segment(Duration::from_millis(999));
            }
        }
        pl.set_preload_hint(Some(format!("s-{last}.2.m4s")))
            .unwrap();
        pl
    }

    #[test]
    fn renders_the_low_latency_tags() {
        let pl = playlist(10, 12);
        let text = pl.render(
            false,
            &[RenditionReport {
                uri: "s_240p.m3u8".into(),
                last_msn: 12,
                last_part: 1,
            }],
        );
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,HOLD-BACK=3.0,PART-HOLD-BACK=0.999\n\
             #EXT-X-PART-INF:PART-TARGET=0.333\n#EXT-X-MEDIA-SEQUENCE:10\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n\
             #EXT-X-MAP:URI=\"s-init.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T06:51:03.000Z\n\
             #EXT-X-PART:DURATION=0.333,URI=\"s-10.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.333,URI=\"s-10.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.333,URI=\"s-10.2.m4s\"\n\
             #EXTINF:0.999,\ns-10.m4s\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T06:51:04.000Z\n\
             #EXT-X-PART:DURATION=0.333,URI=\"s-11.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.333,URI=\"s-11.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.333,URI=\"s-11.2.m4s\"\n\
             #EXTINF:0.999,\ns-11.m4s\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T06:51:05.000Z\n\
             #EXT-X-PART:DURATION=0.333,URI=\"s-12.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.333,URI=\"s-12.1.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s-12.2.m4s\"\n\
             #EXT-X-RENDITION-REPORT:URI=\"s_240p.m3u8\",LAST-MSN=12,LAST-PART=1\n"
        );
        assert_eq!(pl.last(), Some((12, 1)));
    }

    #[test]
    fn parts_are_listed_for_the_newest_segments_only_and_the_window_slides() {
        let pl = playlist(1, 9);
        let text = pl.render(false, &[]);
        // Four complete segments in the window (6..=9 minus the open one: 5, 6, 7, 8) + 9.
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{text}");
        assert!(!text.contains("s-5.0.m4s"), "old parts unlisted:\n{text}");
        assert!(text.contains("s-6.0.m4s"), "{text}");
        assert_eq!(text.matches("#EXTINF").count(), 4);
    }

    #[test]
    fn blocking_reload_waits_for_the_part_asked() {
        let pl = playlist(10, 12);
        assert!(pl.has(12, Some(1)));
        assert!(!pl.has(12, Some(2)), "part 2 is only hinted");
        assert!(!pl.has(12, None), "12 is not complete");
        assert!(pl.has(11, None));
        assert!(pl.has(11, Some(7)), "a complete segment has every part");
        assert!(!pl.has(13, Some(0)));
    }

    #[test]
    fn delta_updates_skip_what_is_older_than_six_target_durations() {
        let mut pl = LlPlaylist::new(Duration::from_millis(333), 1, window(20));
        for n in 0..12 {
            pl.open_segment(segment(n)).unwrap();
            for p in 0..3 {
                pl.push_part(part(n, p, p == 0)).unwrap();
            }
            pl.close_segment(Duration::from_millis(999));
        }
        let full = pl.render(false, &[]);
        let delta = pl.render(true, &[]);
        assert!(!full.contains("EXT-X-SKIP"));
        // 12 segments of ~1 s: the newest 7 are within 6 s of the end; 5 are skipped.
        assert!(
            delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n"),
            "{delta}"
        );
        assert!(
            !delta.contains("s-4.m4s") && delta.contains("s-5.m4s"),
            "{delta}"
        );
        assert!(delta.contains("#EXT-X-MAP"), "the map stays");
    }

    #[test]
    fn numbers_that_do_not_follow_restart_and_repeats_replace() {
        let mut pl = playlist(10, 12);
        pl.open_segment(segment(12)).unwrap();
        assert_eq!(pl.segments().len(), 3, "12 again replaces the open 12");
        pl.open_segment(segment(20)).unwrap();
        assert_eq!(pl.segments().len(), 1);
        pl.drop_open();
        assert_eq!(pl.segments().len(), 0);
        assert!(
            pl.open_segment(LlSegment {
                uri: "bad uri".into(),
                ..segment(1)
            })
            .is_err()
        );
    }
}
