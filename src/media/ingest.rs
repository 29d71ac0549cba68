//! Publishers of every protocol (RTMP, WebRTC/WHIP): who may publish ([`Publishing::admit`]:
//! the node's role, the stream id, the app's `security.publish`, `max_streams`, one publisher per
//! stream in the hub and in the cluster store), then one accepted publisher ([`Ingest`]): FLV tag
//! bodies in (the hub's frame format; WebRTC ingest builds them from RTP), hub frames and stream
//! description out.
//!
//! Sequence headers (AVC decoder configuration, AAC AudioSpecificConfig) and metadata update the
//! hub's [`StreamInfo`]; coded frames become [`Frame`]s with extended timestamps. Codecs other
//! than H.264 and AAC are dropped with one log line (HLS and players here need those two). The
//! measured bit rates and frame rate go into the stream record's `source` rendition. With a
//! transcode ladder, the source's frames and descriptions also go to its [`TranscodeSession`],
//! and the transcoded renditions join `source` in the stream record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::access;
use super::hub::{HubKey, Hubs};
use super::leases::{ClaimError, Leases};
use super::stats::MediaStats;
use super::transcode::Transcoder;
use crate::cluster::model::StreamKey;
use crate::cluster::model::{HlsProgress, Rendition};
use crate::config::{MediaConfig, Role};
use crate::media::frame::{
    Frame, StreamInfo, TimestampExtender, TrackKind, audio_track, video_track,
};
use crate::media::hub::Publisher;
use crate::media::leases::LeaseGuard;
use crate::media::transcode::TranscodeSession;
use streamfleet_proto::flv::{AacPacket, AudioBody, AudioTag, AvcPacket, VideoBody, VideoTag};
use streamfleet_proto::hls::SegmentStart;
use streamfleet_proto::names::{PlayerName, RenditionId};

/// Longest stream id accepted.
const MAX_STREAM_ID: usize = 128;

/// What admitting a publisher needs, shared by every ingest protocol of a node.
pub struct Publishing {
    /// The node.
    pub config: Arc<MediaConfig>,
    /// Its hubs.
    pub hubs: Arc<Hubs>,
    /// Stream ownership (origins and standalone nodes).
    pub leases: Option<Arc<Leases>>,
    /// ABR ladder (origins and standalone nodes with `transcode`).
    pub transcoder: Option<Arc<Transcoder>>,
    /// Counters (`publish_refused`).
    pub stats: Arc<MediaStats>,
}

/// Why a publisher was refused; each protocol maps it to its own answer (RTMP status codes,
/// Ant Media's error names, HTTP statuses).
#[derive(Debug, thiserror::Error)]
pub enum PublishRefused {
    /// Edges only play: publishers go to an origin.
    #[error("this node is an edge: publish to an origin")]
    Edge,
    /// The node does not serve the app.
    #[error("unknown application `{0}`")]
    NoApp(String),
    /// The stream id is not one streamfleet accepts.
    #[error("{0}")]
    BadName(String),
    /// The app's `security.publish` refused the token.
    #[error("not allowed to publish {stream}: {why}")]
    Forbidden {
        /// `app/stream`.
        stream: String,
        /// The token's fault.
        why: access::Refusal,
    },
    /// The node carries `max_streams` live streams.
    #[error("this node carries its maximum of {0} streams (max_streams)")]
    Full(usize),
    /// The node's HLS segments use its whole `hls.max_memory` (bytes).
    #[error("this node's HLS segments use its whole hls.max_memory ({0} bytes)")]
    MemoryFull(usize),
    /// Someone publishes the stream on this node already.
    #[error("stream {0} is already being published")]
    InUse(String),
    /// Another origin owns the stream in the cluster store.
    #[error("stream {stream} is live on node {origin}")]
    Elsewhere {
        /// `app/stream`.
        stream: String,
        /// The owner.
        origin: String,
    },
}

impl PublishRefused {
    /// The stream is live already (here or on another origin): Ant Media's `streamIdInUse`.
    pub fn in_use(&self) -> bool {
        matches!(
            self,
            PublishRefused::InUse(_) | PublishRefused::Elsewhere { .. }
        )
    }
}

/// A publisher admitted: the stream is this node's, in the hub and in the store.
pub struct Admitted {
    /// The stream's source hub, published into.
    pub publisher: Publisher,
    /// Ownership in the cluster store.
    pub lease: Option<LeaseGuard>,
    /// The ladder, when the node transcodes.
    pub transcode: Option<TranscodeSession>,
}

impl Publishing {
    /// Admits a publisher of `app/name` with `token` (RTMP's `?token=`, WHIP's bearer token,
    /// Ant Media's `token` field): the same rules whatever the protocol. Claims the stream in
    /// the cluster store (waiting out a dead owner's lease, as a takeover does).
    pub async fn admit(
        &self,
        app: &str,
        name: &str,
        token: Option<&str>,
    ) -> Result<Admitted, PublishRefused> {
        let admitted = self.admit_inner(app, name, token).await;
        if let Err(e) = &admitted {
            self.stats.publish_refused.inc();
            tracing::info!(%app, reason = %e, "publish refused");
        }
        admitted
    }

    async fn admit_inner(
        &self,
        app: &str,
        name: &str,
        token: Option<&str>,
    ) -> Result<Admitted, PublishRefused> {
        if self.config.role == Role::Edge {
            return Err(PublishRefused::Edge);
        }
        check_stream_id(name).map_err(PublishRefused::BadName)?;
        let Some(a) = self.config.app(app) else {
            return Err(PublishRefused::NoApp(app.to_owned()));
        };
        let stream = format!("{app}/{name}");
        access::may_publish(&a.security.publish, name, token).map_err(|why| {
            PublishRefused::Forbidden {
                stream: stream.clone(),
                why,
            }
        })?;
        let max_streams = self.config.max_streams;
        if self.hubs.live_streams() >= max_streams {
            tracing::warn!(stream = %stream, max_streams, "publish refused: the node carries its maximum of streams");
            return Err(PublishRefused::Full(max_streams));
        }
        if let Some(memory) = self.hubs.hls_memory_full() {
            let limit = memory.limit();
            tracing::warn!(stream = %stream, used = memory.used(), limit, "publish refused: the node's HLS segments use its whole hls.max_memory");
            return Err(PublishRefused::MemoryFull(limit));
        }
        let hub = self.hubs.get_or_create(&HubKey::source(app, name));
        let Ok(publisher) = hub.publish() else {
            return Err(PublishRefused::InUse(stream));
        };
        let lease = match &self.leases {
            Some(leases) => match leases
                .claim(
                    &StreamKey::new(app.to_owned(), name),
                    leases.takeover_hold(),
                )
                .await
            {
                Ok(guard) => Some(guard),
                Err(ClaimError::Owned { origin }) => {
                    return Err(PublishRefused::Elsewhere { stream, origin });
                }
            },
            None => None,
        };
        let transcode = self
            .transcoder
            .as_ref()
            .map(|t| t.session(publisher.hub().key().clone()));
        Ok(Admitted {
            publisher,
            lease,
            transcode,
        })
    }
}

/// Stream ids appear in URLs, file names and store keys: letters, digits, `_`, `-` and `.`.
/// Names a rendition or the master playlist would use are reserved.
pub fn check_stream_id(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_STREAM_ID {
        return Err(format!(
            "stream id must have 1 to {MAX_STREAM_ID} characters"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        || name.starts_with('.')
    {
        return Err(format!(
            "stream id `{name}` may only hold letters, digits, _, - and ."
        ));
    }
    if name.ends_with("_adaptive") || PlayerName::parse(name).rendition != RenditionId::Source {
        return Err(format!(
            "stream id `{name}` ends like a rendition name (_adaptive, _<height>p)"
        ));
    }
    Ok(())
}

/// How often the measured bit rates are written to the stream record.
const RENDITION_REFRESH: Duration = Duration::from_secs(5);

/// Bytes and frames over a sliding period.
#[derive(Debug)]
struct Meter {
    since: Instant,
    video_bytes: u64,
    audio_bytes: u64,
    video_frames: u64,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            since: Instant::now(),
            video_bytes: 0,
            audio_bytes: 0,
            video_frames: 0,
        }
    }
}

/// An admitted publisher's media on its way into the hub.
pub struct Ingest {
    /// RTMP message stream id the publisher sends on (0 for other protocols).
    pub stream_id: u32,
    publisher: Publisher,
    /// Ownership in the cluster store; `None` on edges of a test harness without leases.
    pub lease: Option<LeaseGuard>,
    ts: TimestampExtender,
    info: StreamInfo,
    warned: bool,
    meter: Meter,
    rendition: Option<Rendition>,
    /// ABR ladder of this stream (origins with `transcode`).
    transcode: Option<TranscodeSession>,
}

impl Ingest {
    /// Starts ingesting into the admitted stream (and into its ladder, when the node has one).
    pub fn new(stream_id: u32, admitted: Admitted) -> Self {
        let Admitted {
            publisher,
            lease,
            transcode,
        } = admitted;
        // An earlier life of the stream (here or on another origin) numbered segments: go on.
        if let Some(progress) = lease.as_ref().and_then(LeaseGuard::resume_hls)
            && let Some(mut hls) = publisher.hub().hls()
        {
            hls.resume(progress);
        }
        Ingest {
            stream_id,
            publisher,
            lease,
            ts: TimestampExtender::default(),
            info: StreamInfo::default(),
            warned: false,
            meter: Meter::default(),
            rendition: None,
            transcode,
        }
    }

    /// The stream's source hub.
    pub fn hub(&self) -> &Arc<super::hub::Hub> {
        self.publisher.hub()
    }

    /// The hub's name, for logs.
    pub fn name(&self) -> String {
        self.publisher.hub().key().to_string()
    }

    fn warn_once(&mut self, what: &str) {
        if !self.warned {
            self.warned = true;
            tracing::warn!(stream = %self.name(), "{what}; dropping it (streamfleet packages H.264 and AAC)");
        }
    }

    /// An FLV video tag body.
    pub fn video(&mut self, timestamp: u32, body: Bytes) {
        let dts = self.ts.extend(timestamp);
        let tag = match VideoTag::parse(&body) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(stream = %self.name(), error = %e, "malformed video tag dropped");
                return;
            }
        };
        let keyframe = tag.is_keyframe();
        match tag.body {
            VideoBody::Avc(AvcPacket::SequenceHeader(_)) => match video_track(&body) {
                Some(track) => {
                    if let Some(t) = &mut self.transcode {
                        t.video_track(&track);
                    }
                    self.info.video = Some(track);
                    self.publisher.set_info(self.info.clone());
                    self.refresh_rendition(true);
                }
                None => {
                    tracing::warn!(stream = %self.name(), "unreadable AVC sequence header ignored")
                }
            },
            VideoBody::Avc(AvcPacket::Nalu {
                composition_time,
                data,
            }) => {
                if self.info.video.is_none() {
                    return;
                }
                if let Some(t) = &mut self.transcode {
                    t.video(dts, composition_time, keyframe, data);
                }
                self.meter.video_bytes += body.len() as u64;
                self.meter.video_frames += 1;
                let started =
                    self.publisher
                        .send(Frame::new(TrackKind::Video, dts, keyframe, body));
                self.segment_started(started);
                let described = self.transcode.as_ref().is_some_and(|t| t.take_changed());
                self.refresh_rendition(described);
            }
            VideoBody::Avc(AvcPacket::EndOfSequence) | VideoBody::Command { .. } => {}
            VideoBody::Other { codec, .. } => {
                self.warn_once(&format!("video codec {codec:?} is not H.264"))
            }
            VideoBody::Enhanced { fourcc, .. } => {
                let name = String::from_utf8_lossy(&fourcc).into_owned();
                self.warn_once(&format!("enhanced-RTMP video codec {name} is not H.264"));
            }
        }
    }

    /// A frame started an HLS segment: the store learns the numbering at once, so an origin
    /// taking the stream over continues it.
    fn segment_started(&self, started: Option<SegmentStart>) {
        let (Some(start), Some(lease)) = (started, &self.lease) else {
            return;
        };
        let mut progress = HlsProgress {
            next_sequence: start.sequence.saturating_add(1),
            discontinuity_sequence: start.discontinuity_sequence,
        };
        // Claimed late, with a record of an earlier life: go on from it (numbers only move on).
        if let Some(stored) = lease.take_late_hls()
            && let Some(mut hls) = self.publisher.hub().hls()
        {
            hls.resume(stored);
            progress = hls.progress();
        }
        lease.set_hls(progress);
    }

    /// An FLV audio tag body.
    pub fn audio(&mut self, timestamp: u32, body: Bytes) {
        let dts = self.ts.extend(timestamp);
        let tag = match AudioTag::parse(&body) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(stream = %self.name(), error = %e, "malformed audio tag dropped");
                return;
            }
        };
        match tag.body {
            AudioBody::Aac(AacPacket::SequenceHeader(_)) => match audio_track(&body) {
                Some(track) => {
                    if let Some(t) = &mut self.transcode {
                        t.audio_track(&track);
                    }
                    self.info.audio = Some(track);
                    self.publisher.set_info(self.info.clone());
                    self.refresh_rendition(true);
                }
                None => tracing::warn!(stream = %self.name(), "unreadable AAC config ignored"),
            },
            AudioBody::Aac(AacPacket::Raw(_)) => {
                if self.info.audio.is_none() {
                    return;
                }
                self.meter.audio_bytes += body.len() as u64;
                let frame = Frame::new(TrackKind::Audio, dts, false, body);
                if let Some(t) = &mut self.transcode {
                    t.audio(&frame);
                }
                let started = self.publisher.send(frame);
                self.segment_started(started);
            }
            AudioBody::Other { format, .. } => {
                self.warn_once(&format!("audio format {format:?} is not AAC"))
            }
        }
    }

    /// `onMetaData` for players.
    pub fn metadata(&mut self, payload: Bytes) {
        self.info.metadata = Some(payload);
        self.publisher.set_info(self.info.clone());
    }

    /// Updates the source rendition: its shape at once when the description changed
    /// (`described`), its measured rates every [`RENDITION_REFRESH`].
    fn refresh_rendition(&mut self, described: bool) {
        let elapsed = self.meter.since.elapsed();
        let measure = elapsed >= RENDITION_REFRESH;
        if !described && !measure {
            return;
        }
        let Some(video) = &self.info.video else {
            return;
        };
        let mut r = self.rendition.take().unwrap_or_else(|| Rendition {
            name: RenditionId::Source,
            width: 0,
            height: 0,
            video_bitrate: 0,
            audio_bitrate: 0,
            video_codec: String::new(),
            audio_codec: String::new(),
            frame_rate: 0.0,
        });
        r.width = video.width;
        r.height = video.height;
        r.video_codec = video.codec.clone();
        r.audio_codec = self
            .info
            .audio
            .as_ref()
            .map_or(String::new(), |a| a.codec.clone());
        if let Some(f) = video.frame_rate {
            r.frame_rate = f;
        }
        if measure {
            let secs = elapsed.as_secs_f64();
            r.video_bitrate = (self.meter.video_bytes as f64 * 8.0 / secs) as u64;
            r.audio_bitrate = (self.meter.audio_bytes as f64 * 8.0 / secs) as u64;
            if video.frame_rate.is_none() {
                r.frame_rate = (self.meter.video_frames as f64 / secs * 100.0).round() / 100.0;
            }
            self.meter = Meter::default();
        }
        if let Some(lease) = &self.lease {
            let mut all = vec![r.clone()];
            if let Some(t) = &self.transcode {
                // Transcoded renditions: configured video rate, the source's audio and rate.
                all.extend(t.renditions().into_iter().map(|t| Rendition {
                    name: t.name,
                    width: t.width,
                    height: t.height,
                    video_bitrate: t.bitrate,
                    audio_bitrate: r.audio_bitrate,
                    video_codec: t.codec,
                    audio_codec: r.audio_codec.clone(),
                    frame_rate: r.frame_rate,
                }));
            }
            lease.set_renditions(all);
        }
        self.rendition = Some(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids() {
        assert!(check_stream_id("demo").is_ok());
        assert!(check_stream_id("cam-1.main_2").is_ok());
        assert!(check_stream_id("").is_err());
        assert!(check_stream_id("a/b").is_err());
        assert!(check_stream_id("../x").is_err());
        assert!(check_stream_id("demo_480p").is_err());
        assert!(check_stream_id("demo_adaptive").is_err());
        assert!(check_stream_id("demo_p").is_ok());
    }
}
