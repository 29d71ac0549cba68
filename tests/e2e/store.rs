//! The cluster stores: the conformance suite against the embedded store, and the MongoDB store
//! against a real MongoDB-compatible server (SecantusDB, with authentication on): the suite,
//! wrong credentials, an outage and recovery with the same store handle, and two independent
//! clients competing for one stream's lease.

use std::time::{Duration, Instant, SystemTime};

use crate::common::secantus::Secantus;
use streamfleet::cluster::model::{StreamClaim, StreamKey, StreamStatus, StreamUpdate};
use streamfleet::cluster::store::mongodb::MongoStore;
use streamfleet::cluster::store::{Store, StoreError};
use streamfleet::config::Secret;

/// A dead store must be reported within this long (the store's own bound is 5 s).
const OUTAGE_DETECTION: Duration = Duration::from_secs(8);

/// Whole milliseconds, as MongoDB stores dates.
fn now_ms() -> SystemTime {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970");
    SystemTime::UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

async fn connect(server: &Secantus, database: &str) -> MongoStore {
    MongoStore::connect(&Secret::new(server.uri()), database)
        .await
        .expect("connect with the root user")
}

fn claim(key: &StreamKey, origin: &str) -> StreamClaim {
    StreamClaim {
        key: key.clone(),
        origin: origin.into(),
        origin_relay: None,
        renditions: vec![],
        dead_owner: None,
    }
}

/// The full error text: `Display`, `Debug` and every source.
fn error_text(e: &StoreError) -> String {
    let mut text = format!("{e} | {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    text
}

#[tokio::test]
async fn embedded_store_conforms() {
    crate::common::conformance::run_all(
        &streamfleet::cluster::store::embedded::EmbeddedStore::new(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_auth() {
    let server = Secantus::start();
    let store = connect(&server, "conformance").await;
    crate::common::conformance::run_all(&store).await;
    // Connecting again (another node starting) finds the indexes in place.
    let again = connect(&server, "conformance").await;
    again.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_clearly_without_leaking_it() {
    let server = Secantus::start();
    let wrong = "Wr0ng:pass@word";
    let uri = server.uri_with_password(wrong);
    let started = Instant::now();
    let err = match MongoStore::connect(&Secret::new(uri.clone()), "wrongpw").await {
        Err(e) => e,
        Ok(store) => store
            .ping()
            .await
            .expect_err("a wrong password must not be accepted"),
    };
    assert!(
        started.elapsed() < OUTAGE_DETECTION,
        "took {:?}",
        started.elapsed()
    );
    let text = error_text(&err);
    assert!(
        text.to_lowercase().contains("auth"),
        "the error says authentication failed: {text}"
    );
    let encoded = uri
        .split_once("streamfleet-root:")
        .and_then(|(_, r)| r.split_once('@'))
        .map(|(p, _)| p);
    assert_eq!(
        encoded,
        Some("Wr0ng%3Apass%40word"),
        "the harness percent-encodes the password"
    );
    for secret in [wrong, "Wr0ng%3Apass%40word", server.password()] {
        assert!(
            !text.contains(secret),
            "error text contains a password ({secret}): {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_reported_fast_and_the_same_store_recovers() {
    let mut server = Secantus::start();
    let store = connect(&server, "outage").await;
    let key = StreamKey::new("live", "through-outage");
    let t0 = now_ms();
    let lease_len = Duration::from_secs(60);
    let lease = store
        .claim_stream(&claim(&key, "o1"), t0, lease_len)
        .await
        .expect("claim");

    server.stop();
    for op in ["ping", "renew", "stream"] {
        let started = Instant::now();
        let result = match op {
            "ping" => store.ping().await,
            "renew" => {
                store
                    .renew_stream(&lease, &StreamUpdate::default(), t0, lease_len)
                    .await
            }
            _ => store.stream(&key).await.map(drop),
        };
        let elapsed = started.elapsed();
        assert!(
            matches!(result, Err(StoreError::Unavailable { .. })),
            "{op} during the outage: expected Unavailable, got {result:?}"
        );
        assert!(
            elapsed < OUTAGE_DETECTION,
            "{op} took {elapsed:?} to report the outage"
        );
    }

    server.restart_same_port();
    // The driver rediscovers the server by itself; no new MongoStore.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "store did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The data survived the restart and the lease still works.
    let later = t0 + Duration::from_secs(2);
    store
        .renew_stream(&lease, &StreamUpdate::default(), later, lease_len)
        .await
        .expect("renew after recovery");
    let rec = store
        .stream(&key)
        .await
        .expect("stream")
        .expect("record kept across the restart");
    assert_eq!(
        (rec.origin.as_str(), rec.epoch, rec.lease_until),
        ("o1", 1, later + lease_len)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_cannot_hang_an_operation() {
    let server = Secantus::start();
    let store = connect(&server, "hung").await;
    store.ping().await.expect("ping");
    // The connection stays open but nothing answers: only the store's own bound ends the wait.
    server.freeze();
    let started = Instant::now();
    let result = store.stream(&StreamKey::new("live", "frozen")).await;
    let elapsed = started.elapsed();
    server.thaw();
    assert!(
        matches!(result, Err(StoreError::Unavailable { .. })),
        "expected Unavailable, got {result:?}"
    );
    assert!(
        elapsed < OUTAGE_DETECTION,
        "a hung server held the operation for {elapsed:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.ping().await {
        assert!(
            Instant::now() < deadline,
            "store did not recover after thaw: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_compete_for_one_lease() {
    let server = Secantus::start();
    // Two independent clients, like origins on two machines.
    let a = connect(&server, "race").await;
    let b = connect(&server, "race").await;
    let t0 = now_ms();
    let lease_len = Duration::from_secs(10);

    let key = StreamKey::new("live", "contested");
    let held = a
        .claim_stream(&claim(&key, "origin-a"), t0, lease_len)
        .await
        .expect("a claims");
    match b
        .claim_stream(
            &claim(&key, "origin-b"),
            t0 + Duration::from_secs(9),
            lease_len,
        )
        .await
    {
        Err(StoreError::Owned { origin, .. }) => assert_eq!(origin, "origin-a"),
        other => panic!("b must not take a valid lease: {other:?}"),
    }
    let rec = b.stream(&key).await.expect("stream").expect("record");
    assert_eq!(
        (rec.origin.as_str(), rec.epoch),
        ("origin-a", 1),
        "the refused claim changed nothing"
    );
    // a renews; b still cannot claim at the old expiry time.
    a.renew_stream(
        &held,
        &StreamUpdate::default(),
        t0 + Duration::from_secs(5),
        lease_len,
    )
    .await
    .expect("renew");
    assert!(matches!(
        b.claim_stream(
            &claim(&key, "origin-b"),
            t0 + Duration::from_secs(11),
            lease_len
        )
        .await,
        Err(StoreError::Owned { .. })
    ));
    // a stops renewing: once the lease lapses b takes over, and a's lease is gone.
    let after = t0 + Duration::from_secs(16);
    let taken = b
        .claim_stream(&claim(&key, "origin-b"), after, lease_len)
        .await
        .expect("takeover");
    assert_eq!(taken.epoch, 2);
    assert!(matches!(
        a.renew_stream(&held, &StreamUpdate::default(), after, lease_len)
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(
        a.stream(&key)
            .await
            .expect("stream")
            .map(|r| r.effective_status(after)),
        Some(StreamStatus::Broadcasting)
    );

    // Simultaneous first claims on fresh streams: the server picks exactly one winner each.
    for i in 0..10 {
        let key = StreamKey::new("live", format!("simultaneous-{i}"));
        let (claim_a, claim_b) = (claim(&key, "origin-a"), claim(&key, "origin-b"));
        let (ra, rb) = tokio::join!(
            a.claim_stream(&claim_a, t0, lease_len),
            b.claim_stream(&claim_b, t0, lease_len)
        );
        let (winner, loser) = match (&ra, &rb) {
            (Ok(l), Err(StoreError::Owned { origin, .. }))
            | (Err(StoreError::Owned { origin, .. }), Ok(l)) => (l.origin.clone(), origin.clone()),
            _ => panic!("exactly one claim must win: {ra:?} / {rb:?}"),
        };
        assert_eq!(winner, loser, "the loser is told who owns the stream");
        let rec = a.stream(&key).await.expect("stream").expect("record");
        assert_eq!((rec.origin, rec.epoch), (winner, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_document_is_malformed_not_a_crash() {
    let server = Secantus::start();
    let store = connect(&server, "broken").await;
    let client = mongodb::Client::with_uri_str(server.uri())
        .await
        .expect("raw client");
    let streams = client
        .database("broken")
        .collection::<mongodb::bson::Document>("streams");
    streams
        .insert_one(mongodb::bson::doc! { "_id": "live/bad", "app": "live", "stream_id": "bad", "epoch": "seven" })
        .await
        .expect("insert a broken record");
    match store.stream(&StreamKey::new("live", "bad")).await {
        Err(StoreError::Malformed { id, .. }) => assert_eq!(id, "live/bad"),
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert!(matches!(
        store.streams(Some("live"), 0, 10).await,
        Err(StoreError::Malformed { .. })
    ));
    assert_eq!(store.stream_count(Some("live")).await.expect("count"), 1);
}
