//! Stream ownership of an origin: one lease per published stream, taken when the publisher
//! starts, renewed every heartbeat (with renditions and viewer counts), released when it stops.
//! The stream's HLS numbering is written as soon as it moves (each new segment), so an origin
//! taking the stream over continues it exactly.
//!
//! A [`LeaseGuard`] is the registration: dropping it releases the lease. When the store is
//! unreachable at publish time the stream is accepted anyway and the loop keeps trying to claim
//! it (a store outage never stops streams). When another origin has taken the stream over (our
//! lease expired during a partition) the guard's `lost` signal fires and the publisher is
//! disconnected, so two origins never ingest one stream for long.
//!
//! Webhooks follow the lease, so that only the owner sends them and each goes out once in the
//! cluster: `liveStreamStarted` when a publish obtains its lease (at publish, or late after a
//! store outage), `liveStreamEnded` when that publish ends or the lease is lost, whichever
//! comes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};

use crate::cluster::heartbeat::StoreHealth;
use crate::cluster::model::{
    HlsProgress, Lease, Rendition, StreamClaim, StreamKey, StreamUpdate, Viewers,
};
use crate::cluster::store::{Store, StoreError};
use crate::media::webhook::{Action, Webhooks};
use crate::runtime::Shutdown;

/// Bound on one store call made on behalf of a publisher.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(3);
/// Held past a lease's length before a publisher of an owned stream is refused.
const HOLD_MARGIN: Duration = Duration::from_secs(1);
/// Bounds on the pause between claims of a held publisher (a tenth of the lease between).
const HOLD_RETRY_MIN: Duration = Duration::from_millis(100);
const HOLD_RETRY_MAX: Duration = Duration::from_secs(1);
/// How long a connection to a stream's owner may take to say whether the owner is gone.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Entry {
    /// Identity of this registration (a stream may be re-registered after a republish).
    id: u64,
    lease: Option<Lease>,
    renditions: Vec<Rendition>,
    renditions_dirty: bool,
    viewers: Viewers,
    /// HLS numbering reached; `hls_dirty` until written.
    hls: Option<HlsProgress>,
    hls_dirty: bool,
    /// The record's numbering, learnt by a claim made after publishing started.
    late_hls: Option<HlsProgress>,
    lost: watch::Sender<bool>,
    /// `liveStreamStarted` went out for `lease` and `liveStreamEnded` is owed.
    announced: bool,
}

impl Entry {
    /// Owes the end of this publish to the webhooks no more; returns the epoch it is owed for.
    fn take_announced(&mut self) -> Option<u64> {
        let epoch = self.lease.as_ref().map(|l| l.epoch);
        std::mem::take(&mut self.announced)
            .then_some(epoch)
            .flatten()
    }
}

/// The leases of one node.
pub struct Leases {
    store: Arc<dyn Store>,
    node: String,
    relay: Option<String>,
    lease_len: Duration,
    health: Arc<StoreHealth>,
    entries: Mutex<HashMap<StreamKey, Entry>>,
    next_id: Mutex<u64>,
    /// Wakes the renewal loop to write HLS numbering that moved.
    hls_moved: Notify,
    /// Told when this node starts and stops owning a publish.
    webhooks: Arc<Webhooks>,
}

/// Why a stream cannot be published here.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another origin holds a live lease.
    #[error("stream is live on node {origin}")]
    Owned {
        /// The owner.
        origin: String,
    },
}

/// A held (or pending) lease; dropping it releases the stream.
pub struct LeaseGuard {
    leases: Arc<Leases>,
    key: StreamKey,
    id: u64,
    lost: watch::Receiver<bool>,
}

impl Leases {
    /// Leases of node `node`, whose relay is reachable at `relay`, lasting `lease_len`
    /// (the cluster's `node_timeout`); streams starting and ending go to `webhooks`.
    pub fn new(
        store: Arc<dyn Store>,
        node: String,
        relay: Option<String>,
        lease_len: Duration,
        health: Arc<StoreHealth>,
        webhooks: Arc<Webhooks>,
    ) -> Arc<Self> {
        Arc::new(Leases {
            store,
            node,
            relay,
            lease_len,
            health,
            entries: Mutex::default(),
            next_id: Mutex::new(1),
            hls_moved: Notify::new(),
            webhooks,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim_of(&self, key: &StreamKey, renditions: Vec<Rendition>) -> StreamClaim {
        StreamClaim {
            key: key.clone(),
            origin: self.node.clone(),
            origin_relay: self.relay.clone(),
            renditions,
            dead_owner: None,
        }
    }

    /// How long a new publisher of a stream another origin holds may wait for that lease:
    /// its whole length plus a margin, so that a publisher reconnecting after its origin died
    /// is accepted once the dead origin's lease runs out instead of being refused.
    pub fn takeover_hold(&self) -> Duration {
        self.lease_len + HOLD_MARGIN
    }

    /// Claims `key` for a new publisher. While another origin owns it, the claim is tried
    /// again until `hold` has passed (the owner may be dead, its lease running out), then
    /// refused.
    pub async fn claim(
        self: &Arc<Self>,
        key: &StreamKey,
        hold: Duration,
    ) -> Result<LeaseGuard, ClaimError> {
        let mut claim = self.claim_of(key, Vec::new());
        let give_up = tokio::time::Instant::now() + hold;
        let retry = (self.lease_len / 10).clamp(HOLD_RETRY_MIN, HOLD_RETRY_MAX);
        let mut held = false;
        let lease = loop {
            match tokio::time::timeout(
                CLAIM_TIMEOUT,
                self.store
                    .claim_stream(&claim, SystemTime::now(), self.lease_len),
            )
            .await
            {
                Ok(Ok(lease)) => {
                    if held && claim.dead_owner.is_none() {
                        tracing::info!(stream = %key, "the previous owner's lease ran out; taking the stream over");
                    }
                    break Some(lease);
                }
                Ok(Err(StoreError::Owned { origin, .. })) => {
                    let now = tokio::time::Instant::now();
                    if now >= give_up {
                        return Err(ClaimError::Owned { origin });
                    }
                    if !held {
                        tracing::info!(stream = %key, %origin, "stream owned by another origin; holding the publisher until that lease runs out");
                        held = true;
                    }
                    // Once per owner: a dead one's lease need not be waited for.
                    if claim.dead_owner.as_ref() != Some(&origin)
                        && let Some(why) = self.owner_dead(&origin).await
                    {
                        tracing::info!(stream = %key, %origin, "the owner is dead ({why}); taking the stream over before its lease runs out");
                        claim.dead_owner = Some(origin);
                        continue;
                    }
                    tokio::time::sleep(retry.min(give_up - now)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(stream = %key, error = %e, "cannot record the stream in the cluster store now; accepting it, will retry");
                    break None;
                }
                Err(_) => {
                    tracing::warn!(stream = %key, "cluster store too slow to record the stream; accepting it, will retry");
                    break None;
                }
            }
        };
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let (lost_tx, lost) = watch::channel(false);
        let mut entries = self.lock();
        // A registration this one replaces (its guard not dropped yet) has ended: say so first.
        if let Some(epoch) = entries.get_mut(key).and_then(Entry::take_announced) {
            self.webhooks.notify(key, epoch, Action::Ended);
        }
        if let Some(lease) = &lease {
            self.webhooks.notify(key, lease.epoch, Action::Started);
        }
        entries.insert(
            key.clone(),
            Entry {
                id,
                announced: lease.is_some(),
                lease,
                renditions: Vec::new(),
                renditions_dirty: false,
                viewers: Viewers::default(),
                hls: None,
                hls_dirty: false,
                late_hls: None,
                lost: lost_tx,
            },
        );
        drop(entries);
        Ok(LeaseGuard {
            leases: self.clone(),
            key: key.clone(),
            id,
            lost,
        })
    }

    /// Why node `origin` is known to be dead, if it is: its record has not been renewed for
    /// a lease's length, or its RTMP (else HTTP) listener refuses connections (the process is
    /// gone while its machine answers). A node that merely does not answer (a partition, a
    /// machine down) is not known dead: its lease is waited for.
    async fn owner_dead(&self, origin: &str) -> Option<&'static str> {
        let nodes = tokio::time::timeout(CLAIM_TIMEOUT, self.store.nodes())
            .await
            .ok()?
            .ok()?;
        let node = nodes.into_iter().find(|n| n.name == origin)?;
        let silent = SystemTime::now()
            .duration_since(node.last_seen)
            .unwrap_or_default();
        if silent > self.lease_len {
            return Some("its node record is stale");
        }
        let addr = node.rtmp.or(node.http)?;
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Some("its listener refuses connections")
            }
            _ => None,
        }
    }

    /// Streams this node owns now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn release(self: &Arc<Self>, key: &StreamKey, id: u64) {
        let entry = {
            let mut entries = self.lock();
            match entries.get(key) {
                Some(e) if e.id == id => entries.remove(key),
                _ => None,
            }
        };
        let Some(mut entry) = entry else {
            return;
        };
        if let Some(epoch) = entry.take_announced() {
            self.webhooks.notify(key, epoch, Action::Ended);
        }
        let Some(lease) = entry.lease else {
            return;
        };
        let store = self.store.clone();
        // Drop cannot await: release in the background, bounded.
        tokio::spawn(async move {
            match tokio::time::timeout(
                CLAIM_TIMEOUT,
                store.release_stream(&lease, SystemTime::now()),
            )
            .await
            {
                Ok(Ok(())) => tracing::debug!(stream = %lease.key, "stream released"),
                Ok(Err(e)) => {
                    tracing::warn!(stream = %lease.key, error = %e, "stream not released; its lease will expire")
                }
                Err(_) => {
                    tracing::warn!(stream = %lease.key, "stream release timed out; its lease will expire")
                }
            }
        });
    }

    /// Renews (or claims, after an outage) every lease once.
    pub async fn renew_all(&self) {
        self.renew(false).await;
    }

    /// Renews the leases of every stream (`only_hls`: of those whose HLS numbering moved).
    async fn renew(&self, only_hls: bool) {
        let now = SystemTime::now();
        let work: Vec<(StreamKey, u64, Option<Lease>, StreamUpdate)> = self
            .lock()
            .iter_mut()
            .filter(|(_, e)| !only_hls || e.hls_dirty)
            .map(|(k, e)| {
                let update = StreamUpdate {
                    renditions: std::mem::take(&mut e.renditions_dirty)
                        .then(|| e.renditions.clone()),
                    viewers: e.viewers,
                    hls: std::mem::take(&mut e.hls_dirty).then_some(e.hls).flatten(),
                };
                (k.clone(), e.id, e.lease.clone(), update)
            })
            .collect();
        for (key, id, lease, update) in work {
            let result = match &lease {
                Some(lease) => self
                    .store
                    .renew_stream(lease, &update, now, self.lease_len)
                    .await
                    .map(|()| None),
                None => {
                    let claim = self.claim_of(&key, update.renditions.clone().unwrap_or_default());
                    self.store
                        .claim_stream(&claim, now, self.lease_len)
                        .await
                        .map(Some)
                }
            };
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(&key).filter(|e| e.id == id) else {
                continue;
            };
            match result {
                Ok(Some(new_lease)) => {
                    tracing::info!(stream = %key, epoch = new_lease.epoch, "stream recorded in the cluster store");
                    // Claimed late (the store was out at publish): the record's numbering may
                    // be ahead of the one started meanwhile. Never write it back lower; the
                    // packager takes it up at its next segment (`take_late_hls`).
                    if let Some(stored) = new_lease.hls {
                        entry.late_hls = Some(stored);
                        entry.hls = Some(entry.hls.map_or(stored, |h| HlsProgress {
                            next_sequence: h.next_sequence.max(stored.next_sequence),
                            discontinuity_sequence:
                                h.discontinuity_sequence.max(stored.discontinuity_sequence),
                        }));
                    }
                    // The publish is ours from now on (under the lock: its end, queued by
                    // `release`, cannot overtake this).
                    self.webhooks.notify(&key, new_lease.epoch, Action::Started);
                    entry.announced = true;
                    entry.lease = Some(new_lease);
                    entry.renditions_dirty = true;
                    entry.hls_dirty = entry.hls.is_some();
                }
                Ok(None) => {}
                Err(StoreError::LeaseLost { .. } | StoreError::Owned { .. }) => {
                    tracing::warn!(stream = %key, "another origin owns this stream now; disconnecting our publisher");
                    if let Some(epoch) = entry.take_announced() {
                        self.webhooks.notify(&key, epoch, Action::Ended);
                    }
                    entry.lost.send_replace(true);
                }
                Err(e) => {
                    if update.renditions.is_some() {
                        entry.renditions_dirty = true;
                    }
                    if update.hls.is_some() {
                        entry.hls_dirty = true;
                    }
                    self.health.record_err(&e);
                }
            }
        }
    }

    /// Renews every heartbeat until the node stops, and writes HLS numbering as it moves.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: Shutdown) {
        let mut next = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    next = tokio::time::Instant::now() + interval;
                    self.renew(false).await;
                }
                () = self.hls_moved.notified() => self.renew(true).await,
                () = shutdown.stopped() => break,
            }
        }
    }
}

impl LeaseGuard {
    /// Records the stream's renditions (sent with the next renewal).
    pub fn set_renditions(&self, renditions: Vec<Rendition>) {
        if let Some(e) = self
            .leases
            .lock()
            .get_mut(&self.key)
            .filter(|e| e.id == self.id)
        {
            e.renditions = renditions;
            e.renditions_dirty = true;
        }
    }

    /// The HLS numbering the stream's record held when this lease was taken (an earlier life
    /// of the stream), for the packager to continue.
    pub fn resume_hls(&self) -> Option<HlsProgress> {
        self.leases
            .lock()
            .get(&self.key)
            .filter(|e| e.id == self.id)
            .and_then(|e| e.lease.as_ref()?.hls)
    }

    /// The record's numbering, when the lease was only taken after publishing started (the
    /// store was out): once, for the packager to go on from.
    pub fn take_late_hls(&self) -> Option<HlsProgress> {
        self.leases
            .lock()
            .get_mut(&self.key)
            .filter(|e| e.id == self.id)
            .and_then(|e| e.late_hls.take())
    }

    /// Records that the stream's HLS numbering moved (a segment started); written at once.
    pub fn set_hls(&self, progress: HlsProgress) {
        if let Some(e) = self
            .leases
            .lock()
            .get_mut(&self.key)
            .filter(|e| e.id == self.id)
        {
            e.hls = Some(progress);
            e.hls_dirty = true;
        }
        self.leases.hls_moved.notify_one();
    }

    /// Records the stream's viewers (sent with the next renewal).
    pub fn set_viewers(&self, viewers: Viewers) {
        if let Some(e) = self
            .leases
            .lock()
            .get_mut(&self.key)
            .filter(|e| e.id == self.id)
        {
            e.viewers = viewers;
        }
    }

    /// Resolves when another origin took the stream over.
    pub async fn lost(&mut self) {
        // A closed channel means the registry is gone: never resolves then.
        if self.lost.wait_for(|l| *l).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.leases.release(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::StreamStatus;
    use crate::cluster::store::embedded::EmbeddedStore;
    use crate::media::webhook::{Event, Outbox, test_app};

    fn no_webhooks() -> Arc<Webhooks> {
        Webhooks::new(&[]).unwrap().0
    }

    #[tokio::test]
    async fn claim_renew_release_and_loss() {
        let store = Arc::new(EmbeddedStore::new());
        let health = Arc::new(StoreHealth::default());
        let a = Leases::new(
            store.clone(),
            "o1".into(),
            Some("127.0.0.1:5090".into()),
            Duration::from_secs(10),
            health.clone(),
            no_webhooks(),
        );
        let b = Leases::new(
            store.clone(),
            "o2".into(),
            None,
            Duration::from_secs(10),
            health,
            no_webhooks(),
        );
        let key = StreamKey::new("live", "s");
        let mut guard = a.claim(&key, Duration::ZERO).await.expect("claimed");
        assert!(
            matches!(b.claim(&key, Duration::ZERO).await, Err(ClaimError::Owned { origin }) if origin == "o1")
        );
        guard.set_viewers(Viewers {
            hls: 0,
            rtmp: 2,
            edges: 1,
        });
        a.renew_all().await;
        let rec = store.stream(&key).await.unwrap().unwrap();
        assert_eq!(
            (rec.viewers.rtmp, rec.origin_relay.as_deref()),
            (2, Some("127.0.0.1:5090"))
        );

        // Someone else takes the stream over (our lease had expired): the guard reports it.
        let later = SystemTime::now() + Duration::from_secs(60);
        let claim = StreamClaim {
            key: key.clone(),
            origin: "o2".into(),
            origin_relay: None,
            renditions: vec![],
            dead_owner: None,
        };
        store
            .claim_stream(&claim, later, Duration::from_secs(10))
            .await
            .unwrap();
        a.renew_all().await;
        tokio::time::timeout(Duration::from_secs(1), guard.lost())
            .await
            .expect("lost fires");

        let key2 = StreamKey::new("live", "t");
        let g2 = a.claim(&key2, Duration::ZERO).await.unwrap();
        drop(g2);
        // Release runs in the background.
        for _ in 0..100 {
            if store.stream(&key2).await.unwrap().unwrap().status == StreamStatus::Finished {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("release did not happen");
    }

    /// Leases of node `node` on `store`, with a webhook on app `live`.
    fn hooked(store: &Arc<EmbeddedStore>, node: &str) -> (Arc<Leases>, Outbox) {
        let (hooks, outbox) =
            Webhooks::new(&[test_app("live", Some("http://127.0.0.1:9/hook"))]).unwrap();
        let leases = Leases::new(
            store.clone(),
            node.into(),
            None,
            Duration::from_secs(10),
            Arc::new(StoreHealth::default()),
            hooks,
        );
        (leases, outbox)
    }

    fn next(outbox: &mut Outbox) -> Option<(String, u64, Action)> {
        outbox
            .try_next()
            .map(|e: Event| (e.key.stream_id, e.epoch, e.action))
    }

    #[tokio::test]
    async fn a_publisher_of_a_stream_whose_owner_died_is_held_until_the_lease_runs_out() {
        let store = Arc::new(EmbeddedStore::new());
        let health = Arc::new(StoreHealth::default());
        let lease = Duration::from_millis(400);
        let leases = |node: &str| {
            Leases::new(
                store.clone(),
                node.into(),
                None,
                lease,
                health.clone(),
                no_webhooks(),
            )
        };
        let (dead, b) = (leases("o1"), leases("o2"));
        let key = StreamKey::new("live", "s");
        // o1 claims and then never renews (it was killed).
        let _dead_guard = dead.claim(&key, Duration::ZERO).await.unwrap();
        let asked = std::time::Instant::now();
        let _guard = b
            .claim(&key, b.takeover_hold())
            .await
            .expect("held, then accepted once o1's lease ran out");
        let waited = asked.elapsed();
        assert!(
            waited >= lease / 2 && waited < lease + Duration::from_millis(500),
            "held {waited:?} for a {lease:?} lease"
        );
        let rec = store.stream(&key).await.unwrap().unwrap();
        assert_eq!((rec.origin.as_str(), rec.epoch), ("o2", 2));

        // A live owner (renewing) keeps it: the held publisher is refused after the hold.
        let c = leases("o3");
        let renewing = async {
            loop {
                b.renew_all().await;
                tokio::time::sleep(lease / 4).await;
            }
        };
        let claim = c.claim(&key, Duration::from_millis(800));
        tokio::select! {
            r = claim => assert!(matches!(r, Err(ClaimError::Owned { origin }) if origin == "o2")),
            () = renewing => unreachable!(),
        }
    }

    /// A node record of `name` whose RTMP listener is `rtmp`, last seen now.
    fn node_record(name: &str, rtmp: std::net::SocketAddr) -> crate::cluster::model::NodeRecord {
        let now = SystemTime::now();
        crate::cluster::model::NodeRecord {
            name: name.into(),
            role: crate::config::Role::Origin,
            advertise: "127.0.0.1".into(),
            rtmp: Some(rtmp.to_string()),
            http: None,
            relay: None,
            version: "test".into(),
            started_at: now,
            last_seen: now,
            cpu: 0.0,
            mem_used: 0,
            mem_total: 0,
            streams: 1,
            viewers: 0,
            egress_bps: 0,
            state: crate::cluster::model::NodeState::Active,
            stream_viewers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_dead_owner_whose_listener_refuses_is_taken_over_at_once() {
        let store = Arc::new(EmbeddedStore::new());
        let lease = Duration::from_secs(30);
        let leases = |node: &str| {
            Leases::new(
                store.clone(),
                node.into(),
                None,
                lease,
                Arc::new(StoreHealth::default()),
                no_webhooks(),
            )
        };
        let key = StreamKey::new("live", "s");
        // o1's process is alive: its listener accepts. A held publisher elsewhere waits.
        let alive = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = alive.local_addr().unwrap();
        store.upsert_node(&node_record("o1", addr)).await.unwrap();
        let _o1 = leases("o1").claim(&key, Duration::ZERO).await.unwrap();
        let o2 = leases("o2");
        assert!(matches!(
            o2.claim(&key, Duration::from_millis(300)).await,
            Err(ClaimError::Owned { origin }) if origin == "o1"
        ));
        // o1 is killed: nothing listens there any more (the machine answers with a reset).
        drop(alive);
        let taken = tokio::time::timeout(lease / 3, o2.claim(&key, o2.takeover_hold()))
            .await
            .expect("taken over long before the 30 s lease runs out")
            .expect("accepted");
        let rec = store.stream(&key).await.unwrap().unwrap();
        assert_eq!((rec.origin.as_str(), rec.epoch), ("o2", 2));
        drop(taken);
    }

    #[tokio::test]
    async fn webhooks_follow_the_lease_once() {
        let store = Arc::new(EmbeddedStore::new());
        let (a, mut a_out) = hooked(&store, "o1");
        let (b, mut b_out) = hooked(&store, "o2");
        let key = StreamKey::new("live", "s");

        // The owner says the stream started; a refused claim elsewhere says nothing.
        let guard = a.claim(&key, Duration::ZERO).await.unwrap();
        assert_eq!(next(&mut a_out), Some(("s".into(), 1, Action::Started)));
        assert!(b.claim(&key, Duration::ZERO).await.is_err());
        assert_eq!(next(&mut b_out), None);

        // Taken over (our lease had expired): ended once, however often the loss is seen, and
        // not again when the publisher goes.
        let claim = StreamClaim {
            key: key.clone(),
            origin: "o3".into(),
            origin_relay: None,
            renditions: vec![],
            dead_owner: None,
        };
        let later = SystemTime::now() + Duration::from_secs(60);
        store
            .claim_stream(&claim, later, Duration::from_secs(10))
            .await
            .unwrap();
        a.renew_all().await;
        a.renew_all().await;
        assert_eq!(next(&mut a_out), Some(("s".into(), 1, Action::Ended)));
        drop(guard);
        assert_eq!(next(&mut a_out), None);

        // A publish that simply ends; an app without a webhook says nothing.
        let t = StreamKey::new("live", "t");
        let guard = a.claim(&t, Duration::ZERO).await.unwrap();
        let _quiet = a
            .claim(&StreamKey::new("other", "t"), Duration::ZERO)
            .await
            .unwrap();
        a.renew_all().await;
        drop(guard);
        assert_eq!(next(&mut a_out), Some(("t".into(), 1, Action::Started)));
        assert_eq!(next(&mut a_out), Some(("t".into(), 1, Action::Ended)));
        assert_eq!(next(&mut a_out), None);
    }
}
