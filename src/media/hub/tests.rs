//! The hub's behaviour seen by publishers and subscribers: GOP start, republish, the slow-
//! subscriber policy, the shared log's trimming, pacing, reaping.

use super::*;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};

fn key() -> HubKey {
    HubKey::source("live", "s")
}

fn video(dts: u64, keyframe: bool) -> Frame {
    Frame::new(TrackKind::Video, dts, keyframe, Bytes::from(vec![0u8; 10]))
}

fn info() -> StreamInfo {
    StreamInfo {
        video: Some(crate::media::frame::VideoTrack {
            sequence_header: Bytes::from_static(b"seq"),
            width: 640,
            height: 360,
            codec: "avc1.64001e".into(),
            frame_rate: None,
        }),
        ..Default::default()
    }
}

fn frame_of(e: HubEvent) -> Frame {
    match e {
        HubEvent::Frame(f) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test]
async fn new_subscriber_starts_at_the_latest_keyframe() {
    let hubs = Hubs::default();
    let hub = hubs.get_or_create(&key());
    let p = hub.publish().unwrap();
    p.set_info(info());
    for (i, k) in [true, false, false, true, false].into_iter().enumerate() {
        p.send(video(i as u64 * 33, k));
    }
    let mut s = hub.subscribe(SubscriberKind::Rtmp);
    assert!(matches!(
        s.recv().await,
        Some(HubEvent::Start { generation: 1, .. })
    ));
    let first = frame_of(s.recv().await.unwrap());
    assert!(
        first.keyframe && first.dts == 99,
        "starts on the latest keyframe"
    );
    assert_eq!(frame_of(s.recv().await.unwrap()).dts, 132);
    p.send(video(165, false));
    assert_eq!(frame_of(s.recv().await.unwrap()).dts, 165);
}

#[tokio::test]
async fn second_publisher_is_refused_and_the_first_goes_on() {
    let hub = Hubs::default().get_or_create(&key());
    let p = hub.publish().unwrap();
    assert!(hub.publish().is_err());
    let mut s = hub.subscribe(SubscriberKind::Rtmp);
    p.send(video(0, true));
    assert_eq!(frame_of(s.recv().await.unwrap()).dts, 0);
    drop(p);
    assert!(matches!(s.recv().await, Some(HubEvent::Stop { .. })));
    let p2 = hub.publish().unwrap();
    p2.set_info(info());
    assert!(
        matches!(s.recv().await, Some(HubEvent::Start { generation: 2, .. })),
        "republish is a new generation"
    );
}

#[tokio::test]
async fn slow_subscriber_skips_to_the_next_keyframe_then_is_disconnected() {
    let metrics = HubMetrics::default();
    let hub = Hubs::new(metrics.clone(), None).get_or_create(&key());
    let p = hub.publish().unwrap();
    // `fast` first: what it has not read must outlive `slow` resuming.
    let mut fast = hub.subscribe_with_capacity(SubscriberKind::Rtmp, 64);
    let mut slow = hub.subscribe_with_capacity(SubscriberKind::Rtmp, 4);
    p.send(video(0, true));
    for i in 1..6 {
        p.send(video(i, false));
    }
    assert_eq!(metrics.skips.get(), 1, "queue full: one skip episode");
    // What the slow one had not read is dropped: nothing until the next keyframe.
    assert_eq!(slow.try_recv().unwrap_err(), TryRecvError::Empty);
    p.send(video(6, false));
    p.send(video(7, true));
    assert_eq!(
        frame_of(slow.recv().await.unwrap()).dts,
        7,
        "resumes at the keyframe"
    );
    // Falls behind again and stays behind at the next keyframe: disconnected.
    for i in 8..20 {
        p.send(video(i, i == 15));
    }
    assert_eq!(metrics.disconnects.get(), 1);
    let mut got = 0;
    while slow.recv().await.is_some() {
        got += 1;
    }
    assert_eq!(got, 0, "nothing more after the disconnect");
    // The fast subscriber saw everything.
    for dts in 0..20 {
        assert_eq!(frame_of(fast.recv().await.unwrap()).dts, dts);
    }
}

#[tokio::test]
async fn a_waiting_subscriber_is_woken_by_the_next_event() {
    let hub = Hubs::default().get_or_create(&key());
    let p = hub.publish().unwrap();
    let mut s = hub.subscribe(SubscriberKind::Relay);
    let waiter = tokio::spawn(async move { s.recv().await.map(frame_of) });
    tokio::task::yield_now().await;
    p.send(video(0, true));
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(got.map(|f| f.dts), Some(0));
}

#[test]
fn a_skipping_subscriber_is_woken_to_resume_not_by_the_frames_it_skips() {
    let hub = Hubs::default().get_or_create(&key());
    let p = hub.publish().unwrap();
    let mut slow = hub.subscribe_with_capacity(SubscriberKind::Relay, 4);
    let wakes = Arc::new(AtomicUsize::new(0));
    let waker = std::task::Waker::from(Arc::new(CountWake(wakes.clone())));
    p.send(video(0, true));
    while slow.take(Some(&waker)).is_ok() {}
    for i in 1..=5 {
        p.send(video(i, false));
    }
    assert_eq!(wakes.load(Ordering::Relaxed), 1, "by frame 1; skipped at 5");
    // It reads (nothing until the keyframe) and waits: delta frames do not wake it.
    assert_eq!(slow.take(Some(&waker)).unwrap_err(), TryRecvError::Empty);
    for i in 6..10 {
        p.send(video(i, false));
    }
    assert_eq!(wakes.load(Ordering::Relaxed), 1);
    p.send(video(10, true));
    assert_eq!(wakes.load(Ordering::Relaxed), 2, "woken to resume");
    assert_eq!(frame_of(slow.take(None).unwrap()).dts, 10);
}

#[test]
fn the_log_keeps_only_what_a_live_subscriber_has_not_read() {
    let hub = Hubs::default().get_or_create(&key());
    let p = hub.publish().unwrap();
    let mut ahead = hub.subscribe(SubscriberKind::Rtmp);
    let mut behind = hub.subscribe(SubscriberKind::Rtmp);
    for i in 0..10 {
        p.send(video(i, i == 0));
    }
    while ahead.try_recv().is_ok() {}
    for _ in 0..3 {
        behind.try_recv().unwrap();
    }
    // Reading never trims; the next event does, down to what `behind` still needs. Its
    // last batch (READ_BATCH events) counts as read.
    p.send(video(10, false));
    assert_eq!(hub.lock().log.len(), 1);
    drop(behind);
    while ahead.try_recv().is_ok() {}
    p.send(video(11, false));
    assert_eq!(hub.lock().log.len(), 1, "only the newest event");
    drop(ahead);
    p.send(video(12, false));
    assert!(hub.lock().log.is_empty(), "no subscriber, no log");
}

#[test]
fn pacing_ticks_are_shared_by_every_player() {
    // The grid starts at its first use, which another test may make while this one runs:
    // make it first, then look at instants well after it.
    let _ = next_tick(tokio::time::Instant::now());
    let now = tokio::time::Instant::now() + 2 * PACE_INTERVAL;
    let a = next_tick(now);
    assert!(a > now && a <= now + PACE_INTERVAL);
    // Players at any phase of the same period wake at the same instant.
    let period_start = a - PACE_INTERVAL;
    for phase_ms in [0, 1, 37, 99] {
        assert_eq!(next_tick(period_start + Duration::from_millis(phase_ms)), a);
    }
    assert_eq!(next_tick(a - Duration::from_nanos(1)), a);
    assert_eq!(next_tick(a), a + PACE_INTERVAL, "strictly after `now`");
}

#[tokio::test(start_paused = true)]
async fn players_are_woken_once_per_tick_relays_at_every_frame() {
    let hub = Hubs::default().get_or_create(&key());
    let p = hub.publish().unwrap();
    let mut player = hub.subscribe(SubscriberKind::Rtmp);
    let mut relay = hub.subscribe(SubscriberKind::Relay);
    p.send(video(0, true));
    let player_wakes = Arc::new(AtomicUsize::new(0));
    let relay_wakes = Arc::new(AtomicUsize::new(0));
    let count = |n: Arc<AtomicUsize>| std::task::Waker::from(Arc::new(CountWake(n)));
    let (wp, wr) = (count(player_wakes.clone()), count(relay_wakes.clone()));
    // Both read what is there, then wait.
    while player.take(Some(&wp)).is_ok() {}
    while relay.take(Some(&wr)).is_ok() {}
    // Frames every 10 ms for one second: the relay is woken by each, the player once per
    // tick (it re-registers at once, as a player that keeps up does).
    for i in 1..=100u64 {
        tokio::time::advance(Duration::from_millis(10)).await;
        p.send(video(i * 10, false));
        while player.take(Some(&wp)).is_ok() {}
        while relay.take(Some(&wr)).is_ok() {}
    }
    assert_eq!(relay_wakes.load(Ordering::Relaxed), 100);
    let ticks = player_wakes.load(Ordering::Relaxed);
    assert!(
        (9..=11).contains(&ticks),
        "player woken {ticks} times in 1 s"
    );
    // A stream event wakes players at once.
    drop(p);
    assert_eq!(
        player
            .take(None)
            .map(|e| matches!(e, HubEvent::Stop { .. })),
        Ok(true)
    );
}

#[test]
fn on_an_audio_only_stream_a_skipping_subscriber_resumes_at_the_next_frame() {
    let metrics = HubMetrics::default();
    let hub = Hubs::new(metrics.clone(), None).get_or_create(&key());
    let p = hub.publish().unwrap();
    let mut slow = hub.subscribe_with_capacity(SubscriberKind::Relay, 4);
    let audio = |dts: u64| Frame {
        kind: TrackKind::Audio,
        ..video(dts, false)
    };
    for dts in 0..6 {
        p.send(audio(dts));
    }
    assert_eq!(metrics.skips.get(), 1);
    assert_eq!(slow.try_recv().unwrap_err(), TryRecvError::Empty);
    p.send(audio(6));
    assert_eq!(
        frame_of(slow.try_recv().unwrap()).dts,
        6,
        "no keyframe to wait for"
    );
    assert_eq!(metrics.disconnects.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_paced_player_gets_a_lone_frame_within_one_interval() {
    let hub = Hubs::default().get_or_create(&key());
    let p = hub.publish().unwrap();
    let mut player = hub.subscribe(SubscriberKind::Rtmp);
    p.send(video(0, true));
    assert_eq!(frame_of(player.recv().await.unwrap()).dts, 0);
    let waiter = tokio::spawn(async move { player.recv().await.map(frame_of) });
    tokio::task::yield_now().await;
    // One more frame, then the publisher goes quiet (a stalled uplink): no later frame and no
    // Stop come to wake the player, the pacing tick does.
    tokio::time::advance(Duration::from_millis(3)).await;
    p.send(video(33, false));
    let got = tokio::time::timeout(PACE_INTERVAL + Duration::from_millis(1), waiter)
        .await
        .expect("woken within one pacing interval")
        .unwrap();
    assert_eq!(got.map(|f| f.dts), Some(33));
}

struct CountWake(Arc<AtomicUsize>);

impl std::task::Wake for CountWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn idle_hubs_are_reaped() {
    let hubs = Hubs::default();
    let hub = hubs.get_or_create(&key());
    let s = hub.subscribe(SubscriberKind::Rtmp);
    drop(hub);
    assert!(
        hubs.reap(std::time::Duration::ZERO).is_empty(),
        "subscribed"
    );
    drop(s);
    assert_eq!(hubs.reap(std::time::Duration::ZERO), vec![key()]);
    assert!(hubs.get(&key()).is_none());
}

#[test]
fn a_family_lists_the_source_then_renditions_highest_first() {
    let hubs = Hubs::default();
    let other = HubKey::source("live", "other");
    for name in ["s_240p", "s", "s_720p", "s_480p"] {
        hubs.get_or_create(&HubKey::from_player_name("live", name));
    }
    hubs.get_or_create(&other);
    let family: Vec<String> = hubs
        .family(&key().stream)
        .iter()
        .map(|h| h.key().to_string())
        .collect();
    assert_eq!(
        family,
        ["live/s", "live/s_720p", "live/s_480p", "live/s_240p"]
    );
    hubs.remove(&HubKey::from_player_name("live", "s_720p"));
    assert_eq!(hubs.family(&key().stream).len(), 3);
    assert_eq!(hubs.all().len(), 4);
}

#[test]
fn edges_start_at_the_segment_players_at_the_keyframe() {
    let hubs = Hubs::default();
    let hub = hubs.get_or_create(&key());
    let p = hub.publish().unwrap();
    p.set_info(info());
    let start = Arc::new(segment_start(7));
    // A segment of two GOPs: keyframes at 0 (the segment's start) and 1000.
    for dts in (0..2000).step_by(100) {
        let mut f = video(dts, dts % 1000 == 0);
        if dts == 0 {
            f.segment = Some(start.clone());
        }
        p.send(f);
    }
    let first = |kind| {
        let mut s = hub.subscribe(kind);
        loop {
            if let HubEvent::Frame(f) = s.try_recv().unwrap() {
                return f;
            }
        }
    };
    let edge = first(SubscriberKind::Relay);
    assert_eq!((edge.dts, edge.segment.as_deref()), (0, Some(&*start)));
    assert_eq!(first(SubscriberKind::Rtmp).dts, 1000);
    // The next segment starts over.
    let mut f = video(2000, true);
    f.segment = Some(Arc::new(segment_start(8)));
    p.send(f);
    assert_eq!(first(SubscriberKind::Relay).dts, 2000);
    assert_eq!(first(SubscriberKind::Rtmp).dts, 2000);
}

fn segment_start(sequence: u64) -> streamfleet_proto::hls::SegmentStart {
    streamfleet_proto::hls::SegmentStart {
        sequence,
        discontinuity_sequence: 0,
        discontinuity: false,
        program_date_time: 0,
        timestamp_offset: 0,
        target_duration: 2,
        part_target_ms: 0,
        muxer: streamfleet_proto::ts::TsMuxer::new(streamfleet_proto::ts::Tracks::Video),
    }
}

#[test]
fn an_edge_that_stayed_behind_resumes_at_a_segment_start_and_knows_it() {
    let hubs = Hubs::default();
    let hub = hubs.get_or_create(&key());
    let p = hub.publish().unwrap();
    p.set_info(info());
    let mut edge = hub.subscribe_with_capacity(SubscriberKind::Relay, 8);
    let mut player = hub.subscribe_with_capacity(SubscriberKind::Internal, 8);
    while edge.try_recv().is_ok() {}
    while player.try_recv().is_ok() {}
    assert!(!edge.skipped());
    let segment_at = |dts: u64, sequence: u64| {
        let mut f = video(dts, true);
        f.segment = Some(Arc::new(segment_start(sequence)));
        f
    };
    // A segment starts; both fall behind; both show they still read.
    p.send(segment_at(0, 4));
    for dts in 1..20 {
        p.send(video(dts, false));
    }
    assert_eq!(edge.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(player.try_recv().unwrap_err(), TryRecvError::Empty);
    // A keyframe inside a segment: the player resumes there, the edge does not.
    p.send(video(20, true));
    // The next segment's first frame: the edge resumes there.
    p.send(segment_at(21, 5));
    let first = |s: &mut Subscription| loop {
        if let HubEvent::Frame(f) = s.try_recv().unwrap() {
            return f;
        }
    };
    assert_eq!(first(&mut player).dts, 20);
    let f = first(&mut edge);
    assert_eq!(f.dts, 21);
    assert!(edge.skipped(), "the gap is told once");
    assert!(!edge.skipped());
}
