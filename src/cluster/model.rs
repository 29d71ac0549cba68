//! The cluster's shared records (DESIGN.md §4): nodes and streams, as every store keeps them.
//!
//! Nodes write their own record every heartbeat. A stream record belongs to the origin holding
//! its lease; the lease is renewed every heartbeat, so a crashed origin's streams stop being
//! `broadcasting` by themselves once `lease_until` passes.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use streamfleet_proto::names::RenditionId;

use crate::config::Role;

/// A node's administrative state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Serving normally.
    Active,
    /// Shutting down: finishing open connections, taking no new work.
    Draining,
}

/// One node, as written by itself every heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// Unique node name (`_id`).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Host other nodes use to reach this one.
    pub advertise: String,
    /// `host:port` of the RTMP listener.
    pub rtmp: Option<String>,
    /// `host:port` of the HTTP listener.
    pub http: Option<String>,
    /// `host:port` of the QUIC relay listener.
    pub relay: Option<String>,
    /// streamfleet version.
    pub version: String,
    /// When the process started this node.
    pub started_at: SystemTime,
    /// Last heartbeat.
    pub last_seen: SystemTime,
    /// Machine CPU use, 0..=100 (%).
    pub cpu: f64,
    /// Machine memory in use, bytes.
    pub mem_used: u64,
    /// Machine memory, bytes.
    pub mem_total: u64,
    /// Streams this node ingests or serves.
    pub streams: u64,
    /// Viewers connected to this node.
    pub viewers: u64,
    /// Bytes per second sent to viewers and edges, times 8.
    pub egress_bps: u64,
    /// Administrative state.
    pub state: NodeState,
    /// This node's viewers of each stream it serves (at most [`MAX_STREAM_VIEWERS`] streams,
    /// the most watched), summed over the nodes by the REST's `broadcast-statistics`.
    pub stream_viewers: Vec<StreamViewers>,
}

/// Most streams a node lists in [`NodeRecord::stream_viewers`] (bounds the record's size).
pub const MAX_STREAM_VIEWERS: usize = 1000;

/// One node's viewers of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamViewers {
    /// Application.
    pub app: String,
    /// Stream id.
    pub stream_id: String,
    /// HLS and LL-HLS sessions (recent distinct clients).
    pub hls: u64,
    /// RTMP players.
    pub rtmp: u64,
    /// WebRTC viewers (absent in records of older nodes).
    #[serde(default)]
    pub webrtc: u64,
}

impl NodeRecord {
    /// A node is alive while its last heartbeat is younger than `node_timeout`.
    pub fn alive(&self, now: SystemTime, node_timeout: Duration) -> bool {
        now.duration_since(self.last_seen)
            .map_or(true, |age| age < node_timeout)
    }
}

/// `{app}/{streamId}`, the `_id` of a stream record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Application.
    pub app: String,
    /// Stream id within the application.
    pub stream_id: String,
}

impl StreamKey {
    /// Builds a key.
    pub fn new(app: impl Into<String>, stream_id: impl Into<String>) -> Self {
        StreamKey {
            app: app.into(),
            stream_id: stream_id.into(),
        }
    }
    /// The record id.
    pub fn id(&self) -> String {
        format!("{}/{}", self.app, self.stream_id)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.stream_id)
    }
}

/// Whether a stream is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    /// Registered through the REST (`broadcasts/create`), not published yet.
    Created,
    /// An origin holds a valid lease and is ingesting.
    Broadcasting,
    /// Unpublished, or the lease expired.
    Finished,
}

impl StreamStatus {
    /// The stored and REST spelling (Ant Media's).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Created => "created",
            StreamStatus::Broadcasting => "broadcasting",
            StreamStatus::Finished => "finished",
        }
    }
}

/// One rendition of a stream (the source included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// `source`, or `{height}p` for transcoded ones (stored and served as that text).
    #[serde(with = "rendition_name")]
    pub name: RenditionId,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Video bits per second (measured for the source, configured for transcoded ones).
    pub video_bitrate: u64,
    /// Audio bits per second.
    pub audio_bitrate: u64,
    /// RFC 6381 video codec string (`avc1.64001f`).
    pub video_codec: String,
    /// RFC 6381 audio codec string (`mp4a.40.2`), empty without audio.
    pub audio_codec: String,
    /// Frames per second, 0 when unknown.
    pub frame_rate: f64,
}

/// A [`RenditionId`] as its text (`source`, `480p`) in stored documents and JSON.
mod rendition_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use streamfleet_proto::names::RenditionId;

    pub fn serialize<S: Serializer>(id: &RenditionId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RenditionId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// How far a stream's HLS numbering has gone: the origin keeps it in the stream's record as
/// it cuts segments, so another origin taking the stream over (or a later publish) continues
/// it instead of starting again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HlsProgress {
    /// Media sequence number of the next segment.
    pub next_sequence: u64,
    /// Discontinuity tags so far.
    pub discontinuity_sequence: u64,
}

/// Viewers of one stream on its origin and edges, by protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewers {
    /// HLS sessions (recent distinct clients).
    pub hls: u64,
    /// RTMP players.
    pub rtmp: u64,
    /// Edges pulling over the relay.
    pub edges: u64,
}

/// One stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// Identity.
    pub key: StreamKey,
    /// Node holding the lease.
    pub origin: String,
    /// `host:port` of that node's relay, for edges.
    pub origin_relay: Option<String>,
    /// Bumped at every change of ownership (and every republish).
    pub epoch: u64,
    /// The lease is valid until then.
    pub lease_until: SystemTime,
    /// Stored status; see [`StreamRecord::effective_status`].
    pub status: StreamStatus,
    /// Renditions, source first.
    pub renditions: Vec<Rendition>,
    /// When this epoch started.
    pub started_at: SystemTime,
    /// Last write.
    pub updated_at: SystemTime,
    /// Viewers by protocol.
    pub viewers: Viewers,
    /// HLS numbering reached (kept across claims, so a new owner continues it).
    pub hls: Option<HlsProgress>,
}

impl StreamRecord {
    /// `Broadcasting` only while the lease is valid: a crashed origin cannot renew, so its
    /// streams finish by themselves.
    pub fn effective_status(&self, now: SystemTime) -> StreamStatus {
        match self.status {
            StreamStatus::Broadcasting if self.lease_until > now => StreamStatus::Broadcasting,
            StreamStatus::Created => StreamStatus::Created,
            _ => StreamStatus::Finished,
        }
    }

    /// Whether another origin may take the stream over.
    pub fn claimable(&self, now: SystemTime) -> bool {
        self.effective_status(now) != StreamStatus::Broadcasting
    }

    /// A stream registered through the REST before anyone publishes it.
    pub fn created(key: StreamKey, now: SystemTime) -> StreamRecord {
        StreamRecord {
            key,
            origin: String::new(),
            origin_relay: None,
            epoch: 0,
            lease_until: now,
            status: StreamStatus::Created,
            renditions: Vec::new(),
            started_at: now,
            updated_at: now,
            viewers: Viewers::default(),
            hls: None,
        }
    }
}

/// What an origin asks for when a publisher starts.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamClaim {
    /// The stream.
    pub key: StreamKey,
    /// The claiming node.
    pub origin: String,
    /// Its relay address.
    pub origin_relay: Option<String>,
    /// Renditions known at publish time (often empty until the first keyframe).
    pub renditions: Vec<Rendition>,
    /// A node the claimant found dead (its listeners refuse connections, or its record is
    /// stale): a live lease of that node does not stop the claim (an early takeover).
    pub dead_owner: Option<String>,
}

/// Proof of ownership, kept by the origin while it ingests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The stream.
    pub key: StreamKey,
    /// Owner.
    pub origin: String,
    /// Epoch the owner won.
    pub epoch: u64,
    /// The HLS numbering the stream's record held when the lease was taken (an earlier life of
    /// the stream, on this origin or another): the new owner continues it.
    pub hls: Option<HlsProgress>,
}

/// What a lease renewal may update besides the lease itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamUpdate {
    /// Renditions, when they changed.
    pub renditions: Option<Vec<Rendition>>,
    /// Current viewers.
    pub viewers: Viewers,
    /// HLS numbering, when it moved.
    pub hls: Option<HlsProgress>,
}
