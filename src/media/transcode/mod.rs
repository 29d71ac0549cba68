//! ABR transcoding on origins: the source's H.264 decoded once, scaled and re-encoded with x264
//! into each rung of `transcode.ladder`, published as hubs `{stream}_{height}p` (which the HLS
//! packagers and the relay treat like any stream), with the source's AAC passed through.
//!
//! Data flow of one [`TranscodeSession`] (owned by the publisher's ingest):
//!
//! ```text
//! ingest task --try push--> decode lane --pictures--> encode lane per rendition --bounded mpsc-->
//!   (never waits)           (rayon pool)               (rayon pool, in parallel)
//!   output task --Publisher::send--> rendition hubs <--audio, held until video catches up-- ingest
//! ```
//!
//! All decode/scale/encode work runs on the node's one rayon pool ([`Transcoder`], sized by
//! `transcode.threads`), never on tokio threads. Every queue is bounded; when the pool falls
//! behind, the lowest renditions drop whole GOPs first ([`policy`]), and a source frame that
//! finds the decode queue full makes every rendition drop the rest of that GOP; both are counted
//! in `streamfleet_transcode_dropped_gops_total`. IDRs are forced at every source keyframe and
//! frames keep the source's timestamps, so renditions are keyframe-aligned and their HLS segments
//! start at the same PTS.

pub mod decode;
pub mod encode;
pub mod lane;
pub mod output;
pub mod policy;
pub mod scale;
mod session;
pub mod x264;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use self::output::RenditionInfo;
pub use self::session::TranscodeSession;
use super::hub::{HubKey, Hubs};
use crate::config::{Rung, TranscodeConfig};
use crate::runtime::Shutdown;

/// Labels of per-rendition counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RenditionLabels {
    /// `480p`, ...
    pub rendition: String,
}

/// Why the transcoder could not start.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The rayon pool could not be built.
    #[error("cannot build the transcode thread pool")]
    Pool(#[source] rayon::ThreadPoolBuildError),
    /// libavcodec could not be initialised.
    #[error("cannot initialise libavcodec")]
    Init(#[source] ffmpeg_next::Error),
}

/// Transcoder counters, registered in the node's registry.
#[derive(Debug, Clone, Default)]
pub struct TranscodeMetrics {
    /// GOPs a rendition did not encode (shed by the policy, or cut short by a full queue).
    pub dropped_gops: Family<RenditionLabels, Counter>,
    /// Frames encoded, per rendition.
    pub frames: Family<RenditionLabels, Counter>,
    /// Source pictures decoded.
    pub decoded: Counter,
    /// Frames that failed to decode, scale or encode, and encoders that failed to open.
    pub errors: Counter,
    /// Streams being transcoded.
    pub sessions: Gauge,
}

impl TranscodeMetrics {
    /// Registers the counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "transcode_dropped_gops",
            "GOPs a rendition skipped because the transcode pool fell behind",
            self.dropped_gops.clone(),
        );
        registry.register(
            "transcode_frames",
            "Frames encoded per rendition",
            self.frames.clone(),
        );
        registry.register(
            "transcode_decoded_frames",
            "Source pictures decoded for transcoding",
            self.decoded.clone(),
        );
        registry.register(
            "transcode_errors",
            "Frames that failed to decode, scale or encode",
            self.errors.clone(),
        );
        registry.register(
            "transcode_sessions",
            "Streams being transcoded",
            self.sessions.clone(),
        );
    }

    fn labels(rendition: &str) -> RenditionLabels {
        RenditionLabels {
            rendition: rendition.to_owned(),
        }
    }

    /// Makes `rendition`'s counters visible (at zero) before anything happened to it.
    pub fn declare(&self, rendition: &str) {
        self.dropped_gops
            .get_or_create(&Self::labels(rendition))
            .inc_by(0);
        self.frames
            .get_or_create(&Self::labels(rendition))
            .inc_by(0);
    }

    /// Counts a dropped GOP of `rendition`.
    pub fn dropped_gop(&self, rendition: &str) {
        self.dropped_gops
            .get_or_create(&Self::labels(rendition))
            .inc();
    }

    /// Dropped GOPs of `rendition` so far.
    pub fn dropped_gops_of(&self, rendition: &str) -> u64 {
        self.dropped_gops
            .get_or_create(&Self::labels(rendition))
            .get()
    }

    /// Counts an encoded frame of `rendition`.
    pub fn encoded(&self, rendition: &str) {
        self.frames.get_or_create(&Self::labels(rendition)).inc();
    }

    /// Frames encoded for `rendition` so far.
    pub fn frames_of(&self, rendition: &str) -> u64 {
        self.frames.get_or_create(&Self::labels(rendition)).get()
    }
}

/// One rung fitted to a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRendition {
    /// `{height}p`.
    pub name: String,
    /// Pixels: the source's aspect ratio at `height`, rounded to even.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Video bit rate, bits per second.
    pub bitrate: u64,
}

/// Largest source picture the transcoder decodes (4096x2304: DCI 4K fits, 8K does not). An SPS
/// may claim 16384x16384 (1.5 GB of decoded pictures with the decoder's references); such a
/// source passes through untranscoded, and the decoder refuses a larger picture mid-stream.
pub const MAX_DECODED_PIXELS: u64 = 4096 * 2304;

/// The renditions of `ladder` for a `width`x`height` source, highest first: rungs above the
/// source's height are skipped, widths follow the source's aspect ratio (even, at least 2).
/// None for a source above [`MAX_DECODED_PIXELS`].
pub fn plan(ladder: &[Rung], width: u32, height: u32) -> Vec<PlannedRendition> {
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_DECODED_PIXELS {
        return Vec::new();
    }
    let mut out: Vec<PlannedRendition> = ladder
        .iter()
        .filter(|r| r.height <= height && r.height >= 2)
        .map(|r| {
            let h = r.height & !1;
            let exact = u64::from(width) * u64::from(h) / u64::from(height);
            // Even (odd widths round up), at least 2.
            let w = (exact.div_ceil(2) * 2).max(2);
            PlannedRendition {
                name: format!("{h}p"),
                // `h <= height`, so `w <= width + 1` fits unless `width` is u32::MAX.
                width: u32::try_from(w).unwrap_or(width),
                height: h,
                bitrate: r.bitrate,
            }
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.height));
    out.dedup_by_key(|r| r.height);
    out
}

/// The node's transcoder: the pool and what every session needs.
#[derive(Debug)]
pub struct Transcoder {
    pool: Arc<rayon::ThreadPool>,
    config: TranscodeConfig,
    hubs: Arc<Hubs>,
    metrics: TranscodeMetrics,
    shutdown: Shutdown,
}

impl Transcoder {
    /// Builds the pool (`config.threads` threads) for sessions publishing into `hubs`.
    pub fn new(
        config: TranscodeConfig,
        hubs: Arc<Hubs>,
        metrics: TranscodeMetrics,
        shutdown: Shutdown,
    ) -> Result<Arc<Self>, TranscodeError> {
        ffmpeg_next::init().map_err(TranscodeError::Init)?;
        // libav* would print decode warnings to stderr; errors are counted and logged here.
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .thread_name(|i| format!("transcode-{i}"))
            .build()
            .map_err(TranscodeError::Pool)?;
        Ok(Arc::new(Transcoder {
            pool: Arc::new(pool),
            config,
            hubs,
            metrics,
            shutdown,
        }))
    }

    /// A session for the stream published into `source`; it starts when the source's video is
    /// described.
    pub fn session(self: &Arc<Self>, source: HubKey) -> TranscodeSession {
        TranscodeSession::new(self.clone(), source)
    }

    /// The counters.
    pub fn metrics(&self) -> &TranscodeMetrics {
        &self.metrics
    }

    /// The settings.
    pub fn config(&self) -> &TranscodeConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(height: u32, bitrate: u64) -> Rung {
        Rung { height, bitrate }
    }

    #[test]
    fn a_source_claiming_a_huge_picture_is_not_transcoded() {
        let ladder = [rung(720, 2_500_000), rung(240, 300_000)];
        assert_eq!(plan(&ladder, 4096, 2160).len(), 2, "DCI 4K is transcoded");
        assert!(plan(&ladder, 16_384, 16_384).is_empty());
        assert!(plan(&ladder, 7680, 4320).is_empty(), "8K passes through");
    }

    #[test]
    fn plans_the_ladder_for_a_source() {
        let ladder = [
            rung(1080, 5_000_000),
            rung(480, 1_000_000),
            rung(360, 600_000),
            rung(240, 300_000),
        ];
        let p = plan(&ladder, 1280, 720);
        let shapes: Vec<(&str, u32, u32, u64)> = p
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height, r.bitrate))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("480p", 854, 480, 1_000_000),
                ("360p", 640, 360, 600_000),
                ("240p", 426, 240, 300_000),
            ],
            "1080 is above the source; 16:9 widths rounded to even"
        );
        let portrait = plan(&ladder, 720, 1280);
        assert_eq!(
            (portrait[0].width, portrait[0].height),
            (608, 1080),
            "607.5 rounds to 608"
        );
        assert_eq!(
            plan(&[rung(720, 1)], 1280, 720)[0].width,
            1280,
            "same height kept"
        );
        assert!(plan(&ladder, 0, 0).is_empty());
        assert_eq!(
            plan(&[rung(240, 1)], 4, 480)[0].width,
            2,
            "never narrower than 2"
        );
    }
}
