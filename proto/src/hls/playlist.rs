//! The live media playlist of one rendition: a sliding window of segments.
//!
//! Segments arrive numbered (their media sequence and discontinuity sequence numbers are
//! decided once, by the origin, and carried to every node that packages the stream), so the
//! playlist only keeps the window: [`MediaPlaylist::push`] appends a finished segment and evicts
//! the oldest beyond the window. `EXT-X-MEDIA-SEQUENCE` is the first listed segment's number
//! and `EXT-X-DISCONTINUITY-SEQUENCE` the discontinuity tags before it (RFC 8216 6.2.2), so two
//! nodes listing the same segments from different starting points agree on every segment's
//! numbers. A segment whose number does not follow the last one's starts the window again (the
//! numbers of one playlist are consecutive by construction). The target duration is a
//! high-water mark: it starts at the configured segment duration rounded up, rises whenever a
//! segment whose rounded duration exceeds it arrives (or the origin says it rose), so every
//! `EXTINF` stays within it (4.3.3.1) and it never goes back down. [`MediaPlaylist::render`]
//! writes the playlist text.

use std::collections::VecDeque;
use std::fmt::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::time::write_program_date_time;
use super::{HlsError, check_uri};

/// One media segment as listed in the playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The segment URI, relative to the playlist.
    pub uri: String,
    /// Its media sequence number.
    pub sequence: u64,
    /// Its discontinuity sequence number: the `EXT-X-DISCONTINUITY` tags of the stream up to
    /// and including its own.
    pub discontinuity_sequence: u64,
    /// Its duration (written as `EXTINF` with millisecond precision).
    pub duration: Duration,
    /// The wall-clock time of its first frame in unix milliseconds, for
    /// `EXT-X-PROGRAM-DATE-TIME` (players use it to line up renditions and show live time).
    pub program_date_time: Option<i64>,
    /// The segment follows a break (new encoder parameters or timestamps, e.g. the publisher
    /// reconnected), so `EXT-X-DISCONTINUITY` goes in front of it.
    pub discontinuity: bool,
}

impl Segment {
    /// The duration in whole milliseconds, as written in `EXTINF`.
    fn millis(&self) -> u64 {
        u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX)
    }

    /// The `EXTINF` value rounded to the nearest second (halves up), which RFC 8216 compares
    /// against the target duration.
    fn rounded_seconds(&self) -> u64 {
        self.millis().saturating_add(500) / 1_000
    }
}

/// A live media playlist with a sliding window of segments.
#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    /// Most segments listed at once.
    window: NonZeroUsize,
    /// The listed segments, oldest first, with consecutive sequence numbers.
    segments: VecDeque<Segment>,
    /// `EXT-X-TARGETDURATION` in seconds; only ever rises.
    target_duration: u64,
    /// `EXT-X-ENDLIST` has been requested: the stream is over.
    ended: bool,
}

impl MediaPlaylist {
    /// An empty playlist for segments of about `segment` (the configured duration) listing at
    /// most `window` of them.
    pub fn new(segment: Duration, window: NonZeroUsize) -> Self {
        let millis = u64::try_from(segment.as_millis()).unwrap_or(u64::MAX);
        Self {
            window,
            segments: VecDeque::with_capacity(window.get()),
            target_duration: millis.div_ceil(1_000).max(1),
            ended: false,
        }
    }

    /// Appends a finished segment, evicting the oldest beyond the window. A segment whose
    /// number does not follow the last one's (a new origin that could not continue the
    /// numbering) replaces the whole window.
    pub fn push(&mut self, segment: Segment) -> Result<(), HlsError> {
        check_uri(&segment.uri)?;
        if self
            .segments
            .back()
            .is_some_and(|last| last.sequence.checked_add(1) != Some(segment.sequence))
        {
            self.segments.clear();
        }
        self.target_duration = self.target_duration.max(segment.rounded_seconds());
        self.segments.push_back(segment);
        while self.segments.len() > self.window.get() {
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Unlists the segments numbered `sequence` and after (they are numbered again).
    pub fn forget_from(&mut self, sequence: u64) {
        self.segments.retain(|s| s.sequence < sequence);
    }

    /// Raises the target duration to at least `seconds` (what the origin's playlist has).
    pub fn raise_target_duration(&mut self, seconds: u64) {
        self.target_duration = self.target_duration.max(seconds);
    }

    /// Marks the stream as finished: the playlist gains `EXT-X-ENDLIST`.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The listed segments, oldest first.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = &Segment> {
        self.segments.iter()
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the sequence number of the oldest listed segment.
    pub fn media_sequence(&self) -> u64 {
        self.segments.front().map_or(0, |s| s.sequence)
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`: the discontinuity tags before the oldest listed segment
    /// (a tag on that segment itself is still listed, and counted by players as they read it).
    pub fn discontinuity_sequence(&self) -> u64 {
        self.segments.front().map_or(0, |s| {
            s.discontinuity_sequence
                .saturating_sub(u64::from(s.discontinuity))
        })
    }

    /// `EXT-X-TARGETDURATION` in seconds.
    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// Writes the playlist text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(128 + 96 * self.segments.len());
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            self.target_duration,
            self.media_sequence(),
            self.discontinuity_sequence()
        );
        for segment in &self.segments {
            if segment.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(unix_ms) = segment.program_date_time {
                out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
                write_program_date_time(unix_ms, &mut out);
                out.push('\n');
            }
            let millis = segment.millis();
            let _ = write!(
                out,
                "#EXTINF:{}.{:03},\n{}\n",
                millis / 1_000,
                millis % 1_000,
                segment.uri
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
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

    /// Segment `n`; `discontinuity_sequence` counts the tags of segments 0..=n given by
    /// `tagged` (a test passes the same predicate for every segment it makes).
    fn numbered(n: u64, millis: u64, tagged: impl Fn(u64) -> bool) -> Segment {
        Segment {
            uri: format!("seg{n}.ts"),
            sequence: n,
            discontinuity_sequence: (0..=n).filter(|&k| tagged(k)).count() as u64,
            duration: Duration::from_millis(millis),
            program_date_time: Some(1_795_762_253_123 + n as i64 * 2_000),
            discontinuity: tagged(n),
        }
    }

    fn segment(n: u64, millis: u64, discontinuity: bool) -> Segment {
        numbered(n, millis, |k| k == n && discontinuity)
    }

    fn parse(text: &str) -> m3u8_rs::MediaPlaylist {
        m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses the playlist")
    }

    #[test]
    fn renders_exact_text() {
        let mut playlist = MediaPlaylist::new(Duration::from_secs(2), window(3));
        playlist.push(segment(0, 2_002, false)).unwrap();
        playlist
            .push(Segment {
                program_date_time: None,
                ..segment(1, 1_967, true)
            })
            .unwrap();
        playlist.end();
        assert_eq!(
            playlist.render(),
            "#EXTM3U\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-TARGETDURATION:2\n\
             #EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T06:50:53.123Z\n\
             #EXTINF:2.002,\n\
             seg0.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXTINF:1.967,\n\
             seg1.ts\n\
             #EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn round_trips_through_m3u8_rs() {
        let mut playlist = MediaPlaylist::new(Duration::from_secs(2), window(4));
        for n in 0..6 {
            playlist.push(segment(n, 2_000 + n * 10, n == 3)).unwrap();
        }
        let parsed = parse(&playlist.render());
        assert_eq!(parsed.version, Some(3));
        assert_eq!(parsed.target_duration, 2);
        assert_eq!(parsed.media_sequence, 2);
        assert_eq!(parsed.discontinuity_sequence, 0);
        assert!(!parsed.end_list);
        let uris: Vec<_> = parsed.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["seg2.ts", "seg3.ts", "seg4.ts", "seg5.ts"]);
        let flags: Vec<_> = parsed.segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(flags, [false, true, false, false]);
        assert!((parsed.segments[1].duration - 2.030).abs() < 1e-6);
        let pdt = parsed.segments[0].program_date_time.unwrap();
        assert_eq!(pdt.timestamp_millis(), 1_795_762_253_123 + 2 * 2_000);
    }

    #[test]
    fn sequences_come_from_the_listed_segments() {
        let tags = [true, false, true, true, false, false];
        let tagged = |k: u64| tags[k as usize];
        let mut playlist = MediaPlaylist::new(Duration::from_secs(2), window(2));
        let mut seen = Vec::new();
        for n in 0..tags.len() as u64 {
            playlist.push(numbered(n, 2_000, tagged)).unwrap();
            seen.push((playlist.media_sequence(), playlist.discontinuity_sequence()));
            let parsed = parse(&playlist.render());
            assert_eq!(parsed.media_sequence, playlist.media_sequence());
            assert_eq!(
                parsed.discontinuity_sequence,
                playlist.discontinuity_sequence()
            );
        }
        // The first listed segment's tags before it: seg1 (after the tagged seg0) has 1, seg2
        // (tagged, listed with its tag) 1, seg3 (tagged) 2, seg4 3.
        assert_eq!(seen, [(0, 0), (0, 0), (1, 1), (2, 1), (3, 2), (4, 3)]);

        // A node that joined late lists the same segments with the same numbers.
        let mut late = MediaPlaylist::new(Duration::from_secs(2), window(2));
        late.push(numbered(4, 2_000, tagged)).unwrap();
        late.push(numbered(5, 2_000, tagged)).unwrap();
        assert_eq!(late.render(), playlist.render());
    }

    #[test]
    fn a_gap_in_the_numbers_restarts_the_window() {
        let mut playlist = MediaPlaylist::new(Duration::from_secs(2), window(3));
        for n in [7, 8, 20, 21] {
            playlist.push(segment(n, 2_000, false)).unwrap();
        }
        let listed: Vec<u64> = playlist.segments().map(|s| s.sequence).collect();
        assert_eq!(listed, [20, 21]);
        assert_eq!(playlist.media_sequence(), 20);
    }

    #[test]
    fn target_duration_covers_every_segment_and_never_drops() {
        let mut playlist = MediaPlaylist::new(Duration::from_millis(2_000), window(3));
        assert_eq!(playlist.target_duration(), 2);
        playlist.push(segment(0, 2_499, false)).unwrap();
        assert_eq!(playlist.target_duration(), 2, "2.499 rounds to 2");
        playlist.push(segment(1, 2_500, false)).unwrap();
        assert_eq!(playlist.target_duration(), 3, "2.500 rounds up to 3");
        playlist.push(segment(2, 6_700, false)).unwrap();
        assert_eq!(playlist.target_duration(), 7);
        for n in 3..6 {
            playlist.push(segment(n, 2_000, false)).unwrap();
        }
        assert_eq!(
            playlist.target_duration(),
            7,
            "the long segment has left but the tag stays"
        );
        playlist.raise_target_duration(5);
        assert_eq!(playlist.target_duration(), 7, "never lowered");
        playlist.raise_target_duration(9);
        assert_eq!(playlist.target_duration(), 9);
        let parsed = parse(&playlist.render());
        for s in &parsed.segments {
            assert!(f64::from(s.duration).round() as u64 <= parsed.target_duration);
        }
        assert_eq!(
            MediaPlaylist::new(Duration::from_millis(1_500), window(1)).target_duration(),
            2
        );
        assert_eq!(
            MediaPlaylist::new(Duration::ZERO, window(1)).target_duration(),
            1
        );
    }

    #[test]
    fn rejects_uris_that_break_lines() {
        let mut playlist = MediaPlaylist::new(Duration::from_secs(2), window(3));
        for uri in ["", "#EXT-X-ENDLIST", "a\nb.ts", "a b.ts", "a\r.ts"] {
            let bad = Segment {
                uri: uri.to_owned(),
                ..segment(0, 2_000, false)
            };
            assert!(
                matches!(playlist.push(bad), Err(HlsError::InvalidUri)),
                "{uri:?}"
            );
        }
        assert_eq!(playlist.segments().len(), 0);
        assert_eq!(playlist.target_duration(), 2);
    }
}
