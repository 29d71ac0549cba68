//! Stream and rendition names as players, the store and the relay spell them.
//!
//! A stream has its source rendition (what the publisher sends) and, on origins with an ABR
//! ladder, one transcoded rendition per height. Players name a rendition by suffixing the stream
//! id, Ant Media's convention: `demo` is the source, `demo_480p` the 480-line rendition (RTMP
//! play names, HLS playlist names). The store and the relay name the rendition alone: `source`,
//! `480p`. [`RenditionId`] is that identity, and [`PlayerName`] the one parser and writer of the
//! suffixed form, so no caller splits strings itself.

use std::fmt;
use std::str::FromStr;

/// Which rendition of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum RenditionId {
    /// What the publisher sends.
    #[default]
    Source,
    /// Transcoded to this many lines.
    Height(u32),
}

impl RenditionId {
    /// Sort key for listing renditions as players want them: the source first, then heights
    /// from the highest down.
    pub fn listing_order(self) -> (u8, std::cmp::Reverse<u32>) {
        match self {
            RenditionId::Source => (0, std::cmp::Reverse(u32::MAX)),
            RenditionId::Height(h) => (1, std::cmp::Reverse(h)),
        }
    }
}

/// `source` or `{height}p`.
impl fmt::Display for RenditionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenditionId::Source => f.write_str("source"),
            RenditionId::Height(h) => write!(f, "{h}p"),
        }
    }
}

/// A rendition name that is neither `source` nor `{height}p`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a rendition name (`source` or `<height>p`)")]
pub struct BadRenditionName(pub String);

impl FromStr for RenditionId {
    type Err = BadRenditionName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "source" {
            return Ok(RenditionId::Source);
        }
        height_of(s)
            .map(RenditionId::Height)
            .ok_or_else(|| BadRenditionName(s.to_owned()))
    }
}

/// `480p` -> 480: digits then `p`, no sign, no leading zero, at least one line (so a name
/// reads back as it was written).
fn height_of(s: &str) -> Option<u32> {
    let digits = s.strip_suffix('p')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|h| *h > 0)
}

/// A rendition as players name it: the stream id, plus `_{height}p` for a transcoded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlayerName<'a> {
    /// The stream id.
    pub stream: &'a str,
    /// Which rendition.
    pub rendition: RenditionId,
}

impl<'a> PlayerName<'a> {
    /// Splits a player-facing name: `demo_480p` is the 480p rendition of `demo`; anything
    /// without such a suffix (`demo`, `demo_p`, `_480p`) is a source name.
    pub fn parse(name: &'a str) -> Self {
        let split = name.rsplit_once('_').and_then(|(stream, suffix)| {
            let height = height_of(suffix)?;
            (!stream.is_empty()).then_some((stream, height))
        });
        match split {
            Some((stream, height)) => PlayerName {
                stream,
                rendition: RenditionId::Height(height),
            },
            None => PlayerName {
                stream: name,
                rendition: RenditionId::Source,
            },
        }
    }
}

/// The player-facing name an HLS file of `/{app}/streams/{file}` belongs to: `demo.m3u8`,
/// `demo_480p.m3u8`, `demo_adaptive.m3u8` (the master names the source) and segments
/// `demo_480p-17.ts`. None for anything else.
pub fn hls_file_name(file: &str) -> Option<&str> {
    let (name, ext) = file.rsplit_once('.')?;
    let name = match ext {
        "m3u8" => name.strip_suffix("_adaptive").unwrap_or(name),
        "ts" => name.rsplit_once('-')?.0,
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}

/// `demo` or `demo_480p`.
impl fmt::Display for PlayerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rendition {
            RenditionId::Source => f.write_str(self.stream),
            RenditionId::Height(h) => write!(f, "{}_{h}p", self.stream),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_file_names() {
        for (file, name) in [
            ("demo.m3u8", Some("demo")),
            ("demo_480p.m3u8", Some("demo_480p")),
            ("demo_adaptive.m3u8", Some("demo")),
            ("demo_480p-17.ts", Some("demo_480p")),
            ("a-b-3.ts", Some("a-b")),
            ("demo.ts", None),
            (".m3u8", None),
            ("_adaptive.m3u8", None),
            ("demo", None),
            ("demo.mp4", None),
            ("-1.ts", None),
        ] {
            assert_eq!(hls_file_name(file), name, "{file}");
        }
    }

    #[test]
    fn rendition_ids_round_trip() {
        for (text, id) in [
            ("source", RenditionId::Source),
            ("480p", RenditionId::Height(480)),
            ("2160p", RenditionId::Height(2160)),
        ] {
            assert_eq!(text.parse::<RenditionId>(), Ok(id));
            assert_eq!(id.to_string(), text);
        }
        for bad in [
            "",
            "p",
            "0p",
            "0480p",
            "-1p",
            "+480p",
            "480",
            "480P",
            "x480p",
            "99999999999p",
        ] {
            assert!(bad.parse::<RenditionId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn player_names_split_the_height_suffix_only() {
        let p = |s| PlayerName::parse(s);
        assert_eq!(p("demo_480p").stream, "demo");
        assert_eq!(p("demo_480p").rendition, RenditionId::Height(480));
        assert_eq!(p("a_b_240p").stream, "a_b");
        for source in [
            "demo",
            "demo_p",
            "_480p",
            "demo_0p",
            "demo_480",
            "cam-1.main_2",
        ] {
            assert_eq!(p(source).rendition, RenditionId::Source, "{source}");
            assert_eq!(p(source).stream, source);
        }
        for name in ["demo", "demo_480p", "a_b_240p"] {
            assert_eq!(p(name).to_string(), name);
        }
    }

    #[test]
    fn listing_order_is_source_then_highest_first() {
        let mut ids = vec![
            RenditionId::Height(240),
            RenditionId::Source,
            RenditionId::Height(720),
        ];
        ids.sort_by_key(|r| r.listing_order());
        assert_eq!(
            ids,
            [
                RenditionId::Source,
                RenditionId::Height(720),
                RenditionId::Height(240)
            ]
        );
    }
}
