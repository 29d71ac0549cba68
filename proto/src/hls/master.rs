//! The master playlist of an adaptive stream: one `EXT-X-STREAM-INF` per rendition.
//!
//! The packager describes each rendition as a [`Variant`] (bandwidth, size, codecs, frame rate)
//! and [`write_master`] lists them in the order given, which players treat as the preferred order
//! when bandwidths tie.

use std::fmt::Write;

use super::{HlsError, check_uri};

/// One rendition of an adaptive stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The rendition's media playlist URI, relative to the master playlist.
    pub uri: String,
    /// `BANDWIDTH`: peak bits per second (video + audio + container overhead).
    pub bandwidth: u64,
    /// `AVERAGE-BANDWIDTH`: average bits per second, when known.
    pub average_bandwidth: Option<u64>,
    /// `RESOLUTION` as (width, height) in pixels.
    pub resolution: Option<(u32, u32)>,
    /// `CODECS`: RFC 6381 strings joined by commas, e.g. `avc1.64001f,mp4a.40.2`; omitted when
    /// empty.
    pub codecs: String,
    /// `FRAME-RATE` in frames per second.
    pub frame_rate: Option<f64>,
}

/// Writes a master playlist listing `variants` in order.
pub fn write_master(variants: &[Variant]) -> Result<String, HlsError> {
    if variants.is_empty() {
        return Err(HlsError::NoVariants);
    }
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    for variant in variants {
        check_uri(&variant.uri)?;
        if variant.codecs.chars().any(|c| c == '"' || c.is_control()) {
            return Err(HlsError::InvalidCodecs);
        }
        // Writing into a String cannot fail.
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", variant.bandwidth);
        if let Some(average) = variant.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={average}");
        }
        if let Some((width, height)) = variant.resolution {
            let _ = write!(out, ",RESOLUTION={width}x{height}");
        }
        if !variant.codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", variant.codecs);
        }
        if let Some(rate) = variant.frame_rate {
            if !rate.is_finite() || rate <= 0.0 {
                return Err(HlsError::InvalidFrameRate(rate));
            }
            let _ = write!(out, ",FRAME-RATE={rate:.3}");
        }
        let _ = writeln!(out, "\n{}", variant.uri);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Vec<Variant> {
        vec![
            Variant {
                uri: "stream1_720p.m3u8".into(),
                bandwidth: 2_800_000,
                average_bandwidth: Some(2_628_000),
                resolution: Some((1280, 720)),
                codecs: "avc1.64001f,mp4a.40.2".into(),
                frame_rate: Some(30_000.0 / 1_001.0),
            },
            Variant {
                uri: "stream1_240p.m3u8".into(),
                bandwidth: 400_000,
                average_bandwidth: None,
                resolution: Some((426, 240)),
                codecs: "avc1.42c015,mp4a.40.2".into(),
                frame_rate: None,
            },
        ]
    }

    #[test]
    fn renders_exact_text() {
        assert_eq!(
            write_master(&ladder()).unwrap(),
            "#EXTM3U\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2800000,AVERAGE-BANDWIDTH=2628000,RESOLUTION=1280x720,\
             CODECS=\"avc1.64001f,mp4a.40.2\",FRAME-RATE=29.970\n\
             stream1_720p.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=426x240,CODECS=\"avc1.42c015,mp4a.40.2\"\n\
             stream1_240p.m3u8\n"
        );
    }

    #[test]
    fn round_trips_through_m3u8_rs() {
        let text = write_master(&ladder()).unwrap();
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).unwrap();
        assert_eq!(parsed.variants.len(), 2);
        let first = &parsed.variants[0];
        assert_eq!(first.uri, "stream1_720p.m3u8");
        assert_eq!(first.bandwidth, 2_800_000);
        assert_eq!(first.average_bandwidth, Some(2_628_000));
        let resolution = first.resolution.unwrap();
        assert_eq!((resolution.width, resolution.height), (1280, 720));
        assert_eq!(first.codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        assert_eq!(first.frame_rate, Some(29.97));
        let second = &parsed.variants[1];
        assert_eq!(
            (second.uri.as_str(), second.bandwidth),
            ("stream1_240p.m3u8", 400_000)
        );
        assert_eq!((second.average_bandwidth, second.frame_rate), (None, None));
    }

    #[test]
    fn rejects_bad_variants() {
        assert!(matches!(write_master(&[]), Err(HlsError::NoVariants)));
        let mut bad = ladder();
        bad[1].codecs = "avc1\",x".into();
        assert!(matches!(write_master(&bad), Err(HlsError::InvalidCodecs)));
        let mut bad = ladder();
        bad[0].frame_rate = Some(f64::NAN);
        assert!(matches!(
            write_master(&bad),
            Err(HlsError::InvalidFrameRate(_))
        ));
        let mut bad = ladder();
        bad[0].uri = "x.m3u8\n#EXT-X-ENDLIST".into();
        assert!(matches!(write_master(&bad), Err(HlsError::InvalidUri)));
    }
}
