//! The store conformance suite: the behaviour every [`Store`] must have, run against the
//! embedded store and against a real MongoDB-compatible server (`store.rs`).
//!
//! Every check uses its own stream keys and node names, so the suite can run against a database
//! that already holds data.

use std::time::{Duration, SystemTime};

use streamfleet::cluster::model::{
    HlsProgress, NodeRecord, NodeState, Rendition, StreamClaim, StreamKey, StreamStatus,
    StreamUpdate, StreamViewers, Viewers,
};
use streamfleet::cluster::store::{Store, StoreError};
use streamfleet::config::Role;

/// Runs every check; panics (like a failed assertion) on the first violation.
pub async fn run_all(store: &dyn Store) {
    let tag = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    store.ping().await.expect("ping");
    nodes(store, &tag).await;
    lease_lifecycle(store, &tag).await;
    lease_conflicts(store, &tag).await;
    listing(store, &tag).await;
    rest_writes(store, &tag).await;
}

/// What the REST write API does through the store: create, stop, delete, live counts.
async fn rest_writes(store: &dyn Store, tag: &str) {
    let now = t0();
    let lease_len = Duration::from_secs(10);
    let app = format!("rest{tag}");
    let key = StreamKey::new(app.clone(), "made");
    assert!(store.create_stream(&key, now).await.expect("create"));
    assert!(
        !store.create_stream(&key, now).await.expect("create again"),
        "an existing stream id is not created twice"
    );
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(rec.effective_status(now), StreamStatus::Created);
    assert_eq!(
        store
            .live_stream_count(Some(&app), now)
            .await
            .expect("count"),
        0
    );

    // A created stream is published like any other.
    let claim = StreamClaim {
        key: key.clone(),
        origin: "o1".into(),
        origin_relay: None,
        renditions: vec![],
        dead_owner: None,
    };
    let later = now + Duration::from_millis(5);
    let lease = store
        .claim_stream(&claim, later, lease_len)
        .await
        .expect("publish a created stream");
    assert_eq!(
        store
            .live_stream_count(Some(&app), later)
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        store
            .live_stream_count(Some("nope"), later)
            .await
            .expect("count"),
        0
    );

    // Stop: the owner's next renewal fails, so it drops the publisher.
    assert!(store.stop_stream(&key, later).await.expect("stop"));
    assert!(
        !store.stop_stream(&key, later).await.expect("stop again"),
        "not live any more"
    );
    assert!(matches!(
        store
            .renew_stream(&lease, &StreamUpdate::default(), later, lease_len)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(rec.effective_status(later), StreamStatus::Finished);
    assert_eq!(
        store
            .live_stream_count(Some(&app), later)
            .await
            .expect("count"),
        0
    );

    // Delete: gone, and a live owner loses its lease the same way.
    let lease = store
        .claim_stream(&claim, later, lease_len)
        .await
        .expect("republish");
    assert!(store.delete_stream(&key).await.expect("delete"));
    assert!(!store.delete_stream(&key).await.expect("delete again"));
    assert!(store.stream(&key).await.expect("stream").is_none());
    assert!(matches!(
        store
            .renew_stream(&lease, &StreamUpdate::default(), later, lease_len)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
}

fn t0() -> SystemTime {
    // Whole milliseconds: MongoDB stores dates with millisecond precision.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_millis(now.as_millis() as u64)
}

/// A node record for tests.
pub fn sample_node(name: &str, last_seen: SystemTime) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        role: Role::Edge,
        advertise: "127.0.0.1".into(),
        rtmp: Some("127.0.0.1:1935".into()),
        http: Some("127.0.0.1:5080".into()),
        relay: None,
        version: "test".into(),
        started_at: last_seen,
        last_seen,
        cpu: 12.5,
        mem_used: 1 << 30,
        mem_total: 4 << 30,
        streams: 2,
        viewers: 7,
        egress_bps: 1_000_000,
        state: NodeState::Active,
        stream_viewers: vec![StreamViewers {
            app: "live".into(),
            stream_id: "cam1".into(),
            hls: 5,
            rtmp: 2,
            webrtc: 3,
        }],
    }
}

fn rendition() -> Rendition {
    Rendition {
        name: streamfleet_proto::names::RenditionId::Source,
        width: 640,
        height: 360,
        video_bitrate: 800_000,
        audio_bitrate: 128_000,
        video_codec: "avc1.64001e".into(),
        audio_codec: "mp4a.40.2".into(),
        frame_rate: 30.0,
    }
}

async fn nodes(store: &dyn Store, tag: &str) {
    let now = t0();
    let a = sample_node(&format!("a-{tag}"), now);
    let mut b = sample_node(&format!("b-{tag}"), now - Duration::from_secs(60));
    b.role = Role::Origin;
    b.relay = Some("127.0.0.1:5090".into());
    store.upsert_node(&a).await.expect("upsert a");
    store.upsert_node(&b).await.expect("upsert b");
    let all = store.nodes().await.expect("nodes");
    let got_a = all.iter().find(|n| n.name == a.name).expect("a listed");
    let got_b = all.iter().find(|n| n.name == b.name).expect("b listed");
    assert_eq!(got_a, &a, "node record round trip");
    assert_eq!(got_b.role, Role::Origin);
    assert!(got_a.alive(now, Duration::from_secs(10)));
    assert!(
        !got_b.alive(now, Duration::from_secs(10)),
        "a node silent past node_timeout is dead"
    );
    let names: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "nodes sorted by name");

    let mut a2 = a.clone();
    a2.last_seen = now + Duration::from_secs(2);
    a2.state = NodeState::Draining;
    store.upsert_node(&a2).await.expect("upsert again");
    let all = store.nodes().await.expect("nodes");
    assert_eq!(
        all.iter().filter(|n| n.name == a.name).count(),
        1,
        "upsert replaces"
    );
    assert_eq!(
        all.iter().find(|n| n.name == a.name).map(|n| n.state),
        Some(NodeState::Draining)
    );

    store.remove_node(&a.name).await.expect("remove");
    store.remove_node(&b.name).await.expect("remove");
    let all = store.nodes().await.expect("nodes");
    assert!(
        !all.iter().any(|n| n.name == a.name || n.name == b.name),
        "removed"
    );
}

async fn lease_lifecycle(store: &dyn Store, tag: &str) {
    let now = t0();
    let lease_len = Duration::from_secs(10);
    let key = StreamKey::new("live", format!("life-{tag}"));
    assert!(store.stream(&key).await.expect("stream").is_none());
    let claim = StreamClaim {
        key: key.clone(),
        origin: "o1".into(),
        origin_relay: Some("127.0.0.1:5090".into()),
        renditions: vec![],
        dead_owner: None,
    };
    let lease = store
        .claim_stream(&claim, now, lease_len)
        .await
        .expect("first claim");
    assert_eq!(lease.epoch, 1);
    assert_eq!(lease.hls, None, "a new stream has no HLS numbering yet");
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(rec.origin, "o1");
    assert_eq!(rec.origin_relay.as_deref(), Some("127.0.0.1:5090"));
    assert_eq!(rec.effective_status(now), StreamStatus::Broadcasting);
    assert_eq!(rec.lease_until, now + lease_len);

    let update = StreamUpdate {
        renditions: Some(vec![rendition()]),
        viewers: Viewers {
            hls: 3,
            rtmp: 1,
            edges: 2,
        },
        hls: Some(HlsProgress {
            next_sequence: 1_796_320_735,
            discontinuity_sequence: 2,
        }),
    };
    let later = now + Duration::from_secs(5);
    store
        .renew_stream(&lease, &update, later, lease_len)
        .await
        .expect("renew");
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(
        rec.lease_until,
        later + lease_len,
        "renewal extends the lease"
    );
    assert_eq!(rec.renditions, vec![rendition()]);
    assert_eq!(rec.viewers.hls, 3);
    assert_eq!(rec.started_at, now);
    assert_eq!(rec.hls, update.hls);
    // A renewal that does not move the numbering keeps it.
    store
        .renew_stream(&lease, &StreamUpdate::default(), later, lease_len)
        .await
        .expect("renew");
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(rec.hls, update.hls);

    // Past the lease, the stream is no longer broadcasting by itself.
    let expired = later + lease_len + Duration::from_millis(1);
    assert_eq!(rec.effective_status(expired), StreamStatus::Finished);

    store.release_stream(&lease, later).await.expect("release");
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(rec.status, StreamStatus::Finished);
    assert!(
        matches!(
            store
                .renew_stream(&lease, &StreamUpdate::default(), later, lease_len)
                .await,
            Err(StoreError::LeaseLost { .. })
        ),
        "a released lease cannot be renewed"
    );

    // Republish (here, by another origin): a new epoch, the numbering to continue.
    let other = StreamClaim {
        origin: "o2".into(),
        ..claim.clone()
    };
    let lease2 = store
        .claim_stream(&other, later, lease_len)
        .await
        .expect("republish");
    assert_eq!(lease2.epoch, 2);
    assert_eq!(lease2.hls, update.hls, "the new owner learns the numbering");
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(rec.hls, update.hls, "a claim keeps the numbering");
}

async fn lease_conflicts(store: &dyn Store, tag: &str) {
    let now = t0();
    let lease_len = Duration::from_secs(10);
    let key = StreamKey::new("live", format!("race-{tag}"));
    let claim = |origin: &str| StreamClaim {
        key: key.clone(),
        origin: origin.into(),
        origin_relay: None,
        renditions: vec![],
        dead_owner: None,
    };
    let l1 = store
        .claim_stream(&claim("o1"), now, lease_len)
        .await
        .expect("o1 claims");
    match store
        .claim_stream(&claim("o2"), now + Duration::from_secs(1), lease_len)
        .await
    {
        Err(StoreError::Owned { origin, .. }) => assert_eq!(origin, "o1"),
        other => panic!("o2 must not take a live lease: {other:?}"),
    }
    // o1 crashes: no renewals. Once the lease expires o2 takes over with a new epoch.
    let after = now + lease_len + Duration::from_secs(1);
    let l2 = store
        .claim_stream(&claim("o2"), after, lease_len)
        .await
        .expect("takeover");
    assert_eq!(l2.epoch, l1.epoch + 1);
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(rec.origin, "o2");
    assert_eq!(rec.effective_status(after), StreamStatus::Broadcasting);
    // The old holder's late writes are refused and change nothing.
    assert!(matches!(
        store
            .renew_stream(&l1, &StreamUpdate::default(), after, lease_len)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(store.release_stream(&l1, after).await.is_err());
    let rec = store.stream(&key).await.expect("stream").expect("record");
    assert_eq!(
        (rec.origin.as_str(), rec.status),
        ("o2", StreamStatus::Broadcasting)
    );
    // A restarted node may reclaim its own stream at once.
    let l3 = store
        .claim_stream(&claim("o2"), after, lease_len)
        .await
        .expect("same node reclaims");
    assert_eq!(l3.epoch, l2.epoch + 1);
    // An early takeover: a claimant that found the owner dead may take its live lease, and
    // only that owner's.
    let early = |dead: &str| StreamClaim {
        dead_owner: Some(dead.into()),
        ..claim("o4")
    };
    match store.claim_stream(&early("o1"), after, lease_len).await {
        Err(StoreError::Owned { origin, .. }) => assert_eq!(origin, "o2"),
        other => panic!("another node's death does not free o2's lease: {other:?}"),
    }
    let l4 = store
        .claim_stream(&early("o2"), after, lease_len)
        .await
        .expect("early takeover from the dead owner");
    assert_eq!(l4.epoch, l3.epoch + 1);
    assert!(matches!(
        store
            .renew_stream(&l3, &StreamUpdate::default(), after, lease_len)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
}

async fn listing(store: &dyn Store, tag: &str) {
    let now = t0();
    let app = format!("app{tag}");
    for i in 0..5 {
        let claim = StreamClaim {
            key: StreamKey::new(app.clone(), format!("s{i}")),
            origin: "o1".into(),
            origin_relay: None,
            renditions: vec![],
            dead_owner: None,
        };
        store
            .claim_stream(&claim, now, Duration::from_secs(10))
            .await
            .expect("claim");
    }
    assert_eq!(store.stream_count(Some(&app)).await.expect("count"), 5);
    let page = store.streams(Some(&app), 1, 2).await.expect("page");
    let ids: Vec<&str> = page.iter().map(|r| r.key.stream_id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2"], "paged in id order");
    let rest = store.streams(Some(&app), 4, 10).await.expect("page");
    assert_eq!(rest.len(), 1);
    assert!(store.stream_count(None).await.expect("count all") >= 5);
}
