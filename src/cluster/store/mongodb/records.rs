//! The documents of the MongoDB store: private serde mirrors of [`NodeRecord`] and
//! [`StreamRecord`] as they sit in the `nodes` and `streams` collections (DESIGN.md §4).
//!
//! Records go out through [`NodeDoc`] / [`StreamDoc`] and [`to_document`] (dates as BSON dates,
//! renditions and viewers as sub-documents) and come back through [`from_document`] and
//! `into_record`, so a document another program broke surfaces as [`StoreError::Malformed`]
//! naming its `_id` instead of as a driver error.

use std::time::{Duration, SystemTime};

use ::mongodb::bson::{self, Bson, DateTime, Document};
use serde::{Deserialize, Serialize};

use crate::cluster::model::{
    HlsProgress, NodeRecord, NodeState, Rendition, StreamClaim, StreamKey, StreamRecord,
    StreamStatus, StreamViewers, Viewers,
};
use crate::cluster::store::StoreError;
use crate::config::Role;

/// The stored spelling of a status (the same as the serde one).
pub(super) fn status_str(status: StreamStatus) -> &'static str {
    match status {
        StreamStatus::Created => "created",
        StreamStatus::Broadcasting => "broadcasting",
        StreamStatus::Finished => "finished",
    }
}

/// The `epoch` of a returned document.
pub(super) fn epoch_of(doc: &Document, id: &str) -> Result<u64, StoreError> {
    let malformed = |reason: String| StoreError::Malformed {
        id: id.to_owned(),
        reason,
    };
    match doc.get("epoch") {
        Some(Bson::Int64(n)) => {
            u64::try_from(*n).map_err(|_| malformed(format!("negative epoch {n}")))
        }
        Some(Bson::Int32(n)) => {
            u64::try_from(*n).map_err(|_| malformed(format!("negative epoch {n}")))
        }
        Some(other) => Err(malformed(format!(
            "epoch is a {:?}, not an integer",
            other.element_type()
        ))),
        None => Err(malformed("no epoch".into())),
    }
}

/// The HLS numbering a claimed stream's document holds (absent before the first segment).
pub(super) fn hls_of(doc: &Document, id: &str) -> Result<Option<HlsProgress>, StoreError> {
    let malformed = |reason: String| StoreError::Malformed {
        id: id.to_owned(),
        reason: format!("hls: {reason}"),
    };
    match doc.get_document("hls") {
        Ok(hls) => bson::from_document(hls.clone())
            .map(Some)
            .map_err(|e| malformed(e.to_string())),
        Err(bson::document::ValueAccessError::NotPresent) => Ok(None),
        Err(e) => Err(malformed(e.to_string())),
    }
}

/// A mirror as a BSON document; fails only for values BSON cannot hold (u64 past i64::MAX).
pub(super) fn to_document<T: Serialize>(value: &T, id: &str) -> Result<Document, StoreError> {
    bson::to_document(value).map_err(|e| StoreError::Malformed {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// A value as BSON; fails like [`to_document`].
pub(super) fn to_bson<T: Serialize>(value: &T, id: &str) -> Result<Bson, StoreError> {
    bson::to_bson(value).map_err(|e| StoreError::Malformed {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// A stored document read back into its mirror; failures name the document's `_id`.
pub(super) fn from_document<T: for<'de> Deserialize<'de>>(doc: Document) -> Result<T, StoreError> {
    let id = match doc.get("_id") {
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(no _id)".into(),
    };
    bson::from_document(doc).map_err(|e| StoreError::Malformed {
        id,
        reason: e.to_string(),
    })
}

/// A `nodes` document.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct NodeDoc {
    /// Node name.
    #[serde(rename = "_id")]
    id: String,
    /// [`Role::as_str`] spelling.
    role: String,
    advertise: String,
    rtmp: Option<String>,
    http: Option<String>,
    relay: Option<String>,
    version: String,
    started_at: DateTime,
    last_seen: DateTime,
    cpu: f64,
    mem_used: u64,
    mem_total: u64,
    streams: u64,
    viewers: u64,
    egress_bps: u64,
    state: NodeState,
    /// Absent in records of older nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stream_viewers: Vec<StreamViewers>,
}

impl From<&NodeRecord> for NodeDoc {
    fn from(n: &NodeRecord) -> Self {
        NodeDoc {
            id: n.name.clone(),
            role: n.role.as_str().to_owned(),
            advertise: n.advertise.clone(),
            rtmp: n.rtmp.clone(),
            http: n.http.clone(),
            relay: n.relay.clone(),
            version: n.version.clone(),
            started_at: DateTime::from_system_time(n.started_at),
            last_seen: DateTime::from_system_time(n.last_seen),
            cpu: n.cpu,
            mem_used: n.mem_used,
            mem_total: n.mem_total,
            streams: n.streams,
            viewers: n.viewers,
            egress_bps: n.egress_bps,
            state: n.state,
            stream_viewers: n.stream_viewers.clone(),
        }
    }
}

impl NodeDoc {
    pub(super) fn into_record(self) -> Result<NodeRecord, StoreError> {
        let Some(role) = Role::parse(&self.role) else {
            return Err(StoreError::Malformed {
                id: self.id,
                reason: format!("unknown role `{}`", self.role),
            });
        };
        Ok(NodeRecord {
            name: self.id,
            role,
            advertise: self.advertise,
            rtmp: self.rtmp,
            http: self.http,
            relay: self.relay,
            version: self.version,
            started_at: self.started_at.to_system_time(),
            last_seen: self.last_seen.to_system_time(),
            cpu: self.cpu,
            mem_used: self.mem_used,
            mem_total: self.mem_total,
            streams: self.streams,
            viewers: self.viewers,
            egress_bps: self.egress_bps,
            state: self.state,
            stream_viewers: self.stream_viewers,
        })
    }
}

/// A `streams` document.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StreamDoc {
    /// `{app}/{streamId}`.
    #[serde(rename = "_id")]
    id: String,
    /// Stored apart from `_id` so an app's streams can be listed with an index.
    app: String,
    stream_id: String,
    origin: String,
    origin_relay: Option<String>,
    epoch: u64,
    lease_until: DateTime,
    status: StreamStatus,
    renditions: Vec<Rendition>,
    started_at: DateTime,
    updated_at: DateTime,
    viewers: Viewers,
    /// Absent until the origin cuts a segment; a claim leaves it as it was (the new owner
    /// continues the numbering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hls: Option<HlsProgress>,
}

impl From<&StreamRecord> for StreamDoc {
    fn from(r: &StreamRecord) -> Self {
        StreamDoc {
            id: r.key.id(),
            app: r.key.app.clone(),
            stream_id: r.key.stream_id.clone(),
            origin: r.origin.clone(),
            origin_relay: r.origin_relay.clone(),
            epoch: r.epoch,
            lease_until: DateTime::from_system_time(r.lease_until),
            status: r.status,
            renditions: r.renditions.clone(),
            started_at: DateTime::from_system_time(r.started_at),
            updated_at: DateTime::from_system_time(r.updated_at),
            viewers: r.viewers,
            hls: r.hls,
        }
    }
}

impl StreamDoc {
    /// The record a successful claim leaves (its epoch is set by the database).
    pub(super) fn claimed(claim: &StreamClaim, now: SystemTime, lease: Duration) -> Self {
        StreamDoc {
            id: claim.key.id(),
            app: claim.key.app.clone(),
            stream_id: claim.key.stream_id.clone(),
            origin: claim.origin.clone(),
            origin_relay: claim.origin_relay.clone(),
            epoch: 0,
            lease_until: DateTime::from_system_time(now + lease),
            status: StreamStatus::Broadcasting,
            renditions: claim.renditions.clone(),
            started_at: DateTime::from_system_time(now),
            updated_at: DateTime::from_system_time(now),
            viewers: Viewers::default(),
            hls: None,
        }
    }

    pub(super) fn into_record(self) -> Result<StreamRecord, StoreError> {
        let key = StreamKey::new(self.app, self.stream_id);
        if key.id() != self.id {
            return Err(StoreError::Malformed {
                reason: format!("app and stream_id make `{key}`, not the record's _id"),
                id: self.id,
            });
        }
        Ok(StreamRecord {
            key,
            origin: self.origin,
            origin_relay: self.origin_relay,
            epoch: self.epoch,
            lease_until: self.lease_until.to_system_time(),
            status: self.status,
            renditions: self.renditions,
            started_at: self.started_at.to_system_time(),
            updated_at: self.updated_at.to_system_time(),
            viewers: self.viewers,
            hls: self.hls,
        })
    }
}

#[cfg(test)]
mod tests {
    use ::mongodb::bson::doc;

    use super::*;
    use streamfleet_proto::names::RenditionId;

    fn sample_node(name: &str, t: SystemTime) -> NodeRecord {
        NodeRecord {
            stream_viewers: vec![StreamViewers {
                app: "live".into(),
                stream_id: "cam1".into(),
                hls: 4,
                rtmp: 1,
                webrtc: 2,
            }],
            name: name.into(),
            role: Role::Edge,
            advertise: "10.0.0.7".into(),
            rtmp: None,
            http: Some("10.0.0.7:5080".into()),
            relay: None,
            version: "test".into(),
            started_at: t,
            last_seen: t,
            cpu: 3.5,
            mem_used: 1 << 20,
            mem_total: 1 << 30,
            streams: 1,
            viewers: 2,
            egress_bps: 3,
            state: NodeState::Active,
        }
    }

    #[test]
    fn node_documents_round_trip_with_bson_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_780_000_000_123);
        let node = sample_node("n1", t);
        let doc = to_document(&NodeDoc::from(&node), "n1").expect("serialises");
        assert_eq!(doc.get_str("_id"), Ok("n1"));
        assert_eq!(doc.get_str("role"), Ok("edge"));
        assert_eq!(doc.get_str("state"), Ok("active"));
        assert!(matches!(doc.get("last_seen"), Some(Bson::DateTime(_))));
        let back = from_document::<NodeDoc>(doc)
            .and_then(NodeDoc::into_record)
            .expect("reads back");
        assert_eq!(back, node);
    }

    #[test]
    fn stream_documents_store_viewers_and_renditions_as_sub_documents() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let claim = StreamClaim {
            key: StreamKey::new("live", "cam1"),
            origin: "o1".into(),
            origin_relay: Some("10.0.0.5:5090".into()),
            renditions: vec![Rendition {
                name: RenditionId::Source,
                width: 1280,
                height: 720,
                video_bitrate: 2_500_000,
                audio_bitrate: 128_000,
                video_codec: "avc1.64001f".into(),
                audio_codec: "mp4a.40.2".into(),
                frame_rate: 29.97,
            }],
            dead_owner: None,
        };
        let doc = to_document(
            &StreamDoc::claimed(&claim, t, Duration::from_secs(10)),
            "live/cam1",
        )
        .expect("doc");
        assert_eq!(doc.get_str("_id"), Ok("live/cam1"));
        assert_eq!(doc.get_str("status"), Ok("broadcasting"));
        assert_eq!(
            doc.get_document("viewers").map(|v| v.len()),
            Ok(3),
            "hls, rtmp, edges"
        );
        let renditions = doc.get_array("renditions").expect("array");
        assert!(
            matches!(renditions.first(), Some(Bson::Document(r)) if r.get_i64("height") == Ok(720))
        );
        let rec = from_document::<StreamDoc>(doc)
            .and_then(StreamDoc::into_record)
            .expect("reads back");
        assert_eq!(rec.lease_until, t + Duration::from_secs(10));
        assert_eq!(rec.renditions, claim.renditions);
    }

    #[test]
    fn broken_documents_are_malformed_and_named() {
        let doc = doc! { "_id": "live/x", "app": "live", "stream_id": "x", "epoch": "one" };
        match from_document::<StreamDoc>(doc) {
            Err(StoreError::Malformed { id, .. }) => assert_eq!(id, "live/x"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        let t = SystemTime::UNIX_EPOCH;
        let mut doc = to_document(&NodeDoc::from(&sample_node("n2", t)), "n2").expect("doc");
        doc.insert("role", "mixer");
        let err = from_document::<NodeDoc>(doc)
            .and_then(NodeDoc::into_record)
            .expect_err("unknown role");
        assert!(err.to_string().contains("unknown role `mixer`"), "{err}");
        assert!(matches!(
            epoch_of(&doc! { "epoch": -1_i64 }, "a/b"),
            Err(StoreError::Malformed { .. })
        ));
        assert_eq!(
            epoch_of(&doc! { "epoch": 3_i32 }, "a/b").expect("int32 epoch"),
            3
        );
    }
}
