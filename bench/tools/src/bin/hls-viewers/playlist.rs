//! The few lines of an HLS media playlist a viewer needs: target duration, and each segment's
//! sequence number, duration and URI.

/// One segment as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number.
    pub seq: u64,
    /// `#EXTINF` duration, seconds.
    pub duration: f64,
    /// URI as written (relative to the playlist, or a path, or absolute).
    pub uri: String,
}

/// A media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    /// `#EXT-X-TARGETDURATION`, seconds.
    pub target: f64,
    /// Segments, oldest first.
    pub segments: Vec<Segment>,
}

impl Playlist {
    /// Sequence number of the newest segment, if any.
    pub fn newest(&self) -> Option<u64> {
        self.segments.last().map(|s| s.seq)
    }
}

/// Reads a media playlist; `None` if it is not one (no `#EXTM3U` or no target duration).
pub fn parse(text: &str) -> Option<Playlist> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("#EXTM3U") {
        return None;
    }
    let mut target = None;
    let mut seq = 0u64;
    let mut pending: Option<f64> = None;
    let mut segments = Vec::new();
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d = v.split(',').next().unwrap_or("").trim();
            pending = Some(d.parse().ok()?);
        } else if !line.is_empty()
            && !line.starts_with('#')
            && let Some(duration) = pending.take()
        {
            segments.push(Segment {
                seq,
                duration,
                uri: line.to_owned(),
            });
            seq += 1;
        }
    }
    Some(Playlist {
        target: target.filter(|t| *t > 0.0)?,
        segments,
    })
}

/// The request path of `uri` listed in the playlist at `playlist_path`.
pub fn resolve(playlist_path: &str, uri: &str) -> String {
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned());
    }
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let dir = playlist_path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{dir}/{uri}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_live_playlist() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF:2.000,\ns00-41.ts\n\
            #EXT-X-DISCONTINUITY\n#EXTINF:1.967,\ns00-42.ts\n";
        let p = parse(text).unwrap();
        assert_eq!(p.target, 2.0);
        assert_eq!(p.newest(), Some(42));
        assert_eq!(
            p.segments[1],
            Segment {
                seq: 42,
                duration: 1.967,
                uri: "s00-42.ts".into()
            }
        );
        assert!(parse("#EXTM3U\n#EXTINF:2,\na.ts\n").is_none());
        assert!(parse("<html>").is_none());
        let empty = parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n").unwrap();
        assert_eq!(empty.newest(), None);
    }

    #[test]
    fn resolves_uris() {
        let p = "/live/streams/s00.m3u8";
        assert_eq!(resolve(p, "s00-1.ts"), "/live/streams/s00-1.ts");
        assert_eq!(resolve(p, "/x/y.ts"), "/x/y.ts");
        assert_eq!(resolve(p, "http://h:1/a/b.ts"), "/a/b.ts");
    }
}
