//! An edge's puller: when a viewer asks for a stream the edge lacks, look its origin up in the
//! cluster store, open (or reuse) the QUIC connection to that origin, subscribe, and publish what
//! arrives into local hubs, one per rendition. Viewers then play from those hubs like anywhere
//! else, so one upstream subscription serves every viewer of the edge.
//!
//! The pull of a stream is one task ([`pull`]). It re-resolves the origin when the relay breaks
//! or the stream's epoch changes (the publisher moved to another origin: local hubs get a new
//! publish session, players see a discontinuity and go on). It lets go of the stream a grace
//! period after the last viewer left, or when the store says the stream ended.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

mod gops;

use self::gops::*;
use super::lookups::{Gate, Lookups, Upstream};
use super::order::GopOrder;
use super::{
    GaugeGuard, MessageReader, RelayIoError, Side, auth_mac, auth_ok, client_config, send, unix_us,
};
use crate::cluster::model::{StreamKey, StreamRecord, StreamStatus};
use crate::cluster::store::{Store, StoreError};
use crate::config::Secret;
use crate::media::frame::{Frame, StreamInfo, TrackKind, audio_track, video_track};
use crate::media::hls::SegmentCopy;
use crate::media::hub::{Hub, HubKey, Hubs, Publisher, SubscriberKind};
use crate::runtime::Shutdown;
use streamfleet_proto::names::RenditionId;
use streamfleet_proto::relay::{Kind, MAX_RENDITIONS, Message};

/// Frames waiting between GOP readers and the pull task.
const FRAME_QUEUE: usize = 1024;
/// GOP streams waiting to be read.
const GOP_QUEUE: usize = 64;
/// GOP events held until their rendition is described.
const EARLY_QUEUE: usize = 512;
/// Most segments of an origin's window handed to the packager at once (more go in batches).
const MAX_WINDOW_SEGMENTS: usize = 64;
/// Most bytes of an origin's window gathered before they are handed on.
const MAX_WINDOW_BYTES: usize = 64 << 20;
/// Pause between attempts while the origin cannot be reached.
const RETRY: Duration = Duration::from_millis(500);

/// Counters of the puller.
#[derive(Debug, Clone)]
pub struct ClientMetrics {
    /// Upstream subscriptions held now (one per stream, however many viewers).
    pub subscriptions: Gauge,
    /// Added latency from the origin's hub to this edge's hub, seconds.
    pub latency: Histogram,
    /// Relay units given up as late (their segments are not served here).
    pub late_gops: Counter,
    /// Subscriptions made again after a relay failure or an ownership change.
    pub resubscribes: Counter,
    /// Requests for unknown streams refused without a store look-up (rate limit).
    pub lookups_refused: Counter,
}

impl Default for ClientMetrics {
    fn default() -> Self {
        let buckets = [
            0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
            0.1, 0.25, 0.5, 1.0,
        ];
        ClientMetrics {
            subscriptions: Gauge::default(),
            latency: Histogram::new(buckets),
            late_gops: Counter::default(),
            resubscribes: Counter::default(),
            lookups_refused: Counter::default(),
        }
    }
}

impl ClientMetrics {
    /// Registers the counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "relay_upstream_subscriptions",
            "Streams this edge pulls from origins",
            self.subscriptions.clone(),
        );
        registry.register(
            "relay_latency_seconds",
            "Origin hub to edge hub latency of relayed frames",
            self.latency.clone(),
        );
        registry.register(
            "relay_late_gops",
            "Relay units (segments, or GOPs) given up as late: two later ones had arrived",
            self.late_gops.clone(),
        );
        registry.register(
            "relay_resubscribes",
            "Subscriptions renewed after a relay failure or an origin change",
            self.resubscribes.clone(),
        );
        registry.register(
            "relay_lookups_refused",
            "Requests for streams this edge lacks answered 503 without a store look-up (rate limit)",
            self.lookups_refused.clone(),
        );
    }
}

/// Where a pull stands, for the requests waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PullStatus {
    /// Resolving, connecting, or waiting for the first keyframe.
    Starting,
    /// The source hub is live here.
    Live,
    /// The stream is not live anywhere (or the pull ended).
    Gone,
}

/// What a unit's stream carries to the pull task, in its order.
enum GopEvent {
    /// A frame.
    Frame(Frame),
    /// The rendition's description changed within the publish session, from this frame on.
    Describe(Describe),
    /// The unit was cut short: frames of it are missing.
    Broken,
    /// Finished segments of the origin's HLS window (before the unit's first frame).
    Backfill(Vec<SegmentCopy>),
    /// The rendition's publisher left after the unit's last frame.
    Stop {
        /// Where the origin ended the open HLS segment.
        segment_end: Option<u64>,
    },
}

/// A rendition's description, as an `Info` message brings it.
struct Describe {
    generation: u64,
    video: Option<bytes::Bytes>,
    audio: Option<bytes::Bytes>,
    metadata: Option<bytes::Bytes>,
}

/// What the subscription's own stream says about a rendition, held while a unit of it is still
/// being published (the unit's frames come first: they were sent first).
enum Deferred {
    /// A new publish session's description.
    Describe(Describe),
    /// The publisher left.
    Stop(Option<u64>),
}

/// An event on its way from a GOP reader.
struct GopItem {
    /// Which GOP stream (in arrival order).
    gop: u64,
    /// Rendition index.
    rendition: u8,
    /// Publish session the GOP belongs to.
    generation: u64,
    /// The frame or the stop; `None` when the GOP's stream ended.
    event: Option<GopEvent>,
    /// Set to make the reader stop reading (a late GOP).
    stop: Arc<AtomicBool>,
}

/// A GOP stream announced by the origin.
struct GopStream {
    rendition: u8,
    generation: u64,
    /// Its number among the rendition's units of the subscription.
    sequence: u64,
    reader: MessageReader,
}

/// An authenticated connection to one origin.
struct OriginConn {
    conn: quinn::Connection,
    /// Subscription id -> where its GOP streams go.
    routes: Arc<Mutex<HashMap<u64, mpsc::Sender<GopStream>>>>,
}

/// The puller of one edge node.
pub struct Puller {
    endpoint: quinn::Endpoint,
    secret: Secret,
    store: Arc<dyn Store>,
    hubs: Arc<Hubs>,
    poll: Duration,
    grace: Duration,
    max_streams: usize,
    conns: tokio::sync::Mutex<HashMap<SocketAddr, OriginConn>>,
    pulls: Mutex<HashMap<StreamKey, watch::Receiver<PullStatus>>>,
    /// Negative cache and rate limit of look-ups of streams not pulled yet.
    lookups: Lookups,
    metrics: ClientMetrics,
    shutdown: Shutdown,
}

/// Why a stream cannot be served from this edge.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// No origin has it live.
    #[error("stream not live in the cluster")]
    NotFound,
    /// It did not start within the wait.
    #[error("stream did not start in time")]
    Timeout,
    /// Too many requests for streams this edge lacks: refused without asking the store.
    #[error("too many requests for unknown streams; try again")]
    Busy,
    /// The edge pulls its `max_streams` already.
    #[error("this edge carries its maximum of {0} streams")]
    Full(usize),
    /// The edge's HLS segments use its whole `hls.max_memory` (bytes).
    #[error("this edge's HLS segments use its whole hls.max_memory ({0} bytes)")]
    MemoryFull(usize),
}

/// The QUIC client endpoint of an edge's puller, on an ephemeral port of `bind_ip`; made while
/// the node binds its listeners, so a puller that cannot start stops the process first.
pub fn endpoint(bind_ip: std::net::IpAddr) -> Result<quinn::Endpoint, RelayIoError> {
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::new(bind_ip, 0)).map_err(RelayIoError::Endpoint)?;
    endpoint.set_default_client_config(client_config()?);
    Ok(endpoint)
}

/// What a puller needs.
pub struct PullerSetup {
    /// Its QUIC client endpoint ([`endpoint`]).
    pub endpoint: quinn::Endpoint,
    /// Cluster secret, for relay authentication.
    pub secret: Secret,
    /// Where stream records live.
    pub store: Arc<dyn Store>,
    /// Local hubs to feed.
    pub hubs: Arc<Hubs>,
    /// How often ownership is re-checked (the cluster heartbeat).
    pub poll: Duration,
    /// How long a stream stays pulled after its last viewer.
    pub grace: Duration,
    /// Streams pulled at once (`max_streams`); requests for more are refused.
    pub max_streams: usize,
    /// Counters.
    pub metrics: ClientMetrics,
    /// Stop signal.
    pub shutdown: Shutdown,
}

impl Puller {
    /// A puller.
    pub fn new(s: PullerSetup) -> Arc<Self> {
        Arc::new(Puller {
            endpoint: s.endpoint,
            secret: s.secret,
            store: s.store,
            hubs: s.hubs,
            poll: s.poll,
            grace: s.grace,
            max_streams: s.max_streams,
            conns: Default::default(),
            pulls: Default::default(),
            lookups: Lookups::default(),
            metrics: s.metrics,
            shutdown: s.shutdown,
        })
    }

    /// Makes sure `stream` is pulled; returns its source hub once it is live here.
    pub async fn ensure(
        self: &Arc<Self>,
        stream: &StreamKey,
        wait: Duration,
    ) -> Result<Arc<Hub>, PullError> {
        self.ensure_once(stream, wait).await
    }

    /// Like [`Puller::ensure`], but a stream the cluster has no record of yet is looked for
    /// again until `wait` runs out: an HLS player asking right after the publisher started gets
    /// the stream instead of a 404 it would give up on (a stream that ended is not waited for).
    pub async fn ensure_starting(
        self: &Arc<Self>,
        stream: &StreamKey,
        wait: Duration,
    ) -> Result<Arc<Hub>, PullError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.ensure_once(stream, left).await {
                // No record at all (not one that ended): it may be about to start.
                Err(PullError::NotFound)
                    if left > RETRY && self.lookups.is_absent(stream, Instant::now()) =>
                {
                    tokio::time::sleep(RETRY).await
                }
                other => return other,
            }
        }
    }

    async fn ensure_once(
        self: &Arc<Self>,
        stream: &StreamKey,
        wait: Duration,
    ) -> Result<Arc<Hub>, PullError> {
        let key = HubKey::new(stream.clone(), RenditionId::Source);
        if let Some(hub) = self.hubs.get(&key).filter(|h| h.is_live()) {
            return Ok(hub);
        }
        let stream_key = stream.clone();
        let mut status = {
            let mut pulls = self.pulls.lock().unwrap_or_else(|p| p.into_inner());
            match pulls
                .get(&stream_key)
                .filter(|rx| *rx.borrow() != PullStatus::Gone)
            {
                Some(rx) => rx.clone(),
                None => {
                    if pulls.len() >= self.max_streams {
                        tracing::warn!(stream = %stream_key, max_streams = self.max_streams, "not pulled: the edge carries its maximum of streams");
                        return Err(PullError::Full(self.max_streams));
                    }
                    if let Some(memory) = self.hubs.hls_memory_full() {
                        tracing::warn!(stream = %stream_key, used = memory.used(), limit = memory.limit(), "not pulled: the edge's HLS segments use its whole hls.max_memory");
                        return Err(PullError::MemoryFull(memory.limit()));
                    }
                    match self.lookups.gate(&stream_key, Instant::now()) {
                        Gate::Go => {}
                        Gate::Absent => return Err(PullError::NotFound),
                        Gate::Busy => {
                            self.metrics.lookups_refused.inc();
                            return Err(PullError::Busy);
                        }
                    }
                    let (tx, rx) = watch::channel(PullStatus::Starting);
                    pulls.insert(stream_key.clone(), rx.clone());
                    let me = self.clone();
                    self.shutdown
                        .spawn_service(async move { me.pull(stream_key, tx).await });
                    rx
                }
            }
        };
        match tokio::time::timeout(wait, status.wait_for(|s| *s != PullStatus::Starting)).await {
            Ok(Ok(s)) if *s == PullStatus::Live => self.hubs.get(&key).ok_or(PullError::NotFound),
            Ok(_) => Err(PullError::NotFound),
            Err(_) => Err(PullError::Timeout),
        }
    }

    /// An authenticated connection to `addr`, reused across subscriptions.
    async fn connection(
        &self,
        addr: SocketAddr,
    ) -> Result<
        (
            quinn::Connection,
            Arc<Mutex<HashMap<u64, mpsc::Sender<GopStream>>>>,
        ),
        RelayIoError,
    > {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&addr).filter(|c| c.conn.close_reason().is_none()) {
            return Ok((c.conn.clone(), c.routes.clone()));
        }
        let conn = self.endpoint.connect(addr, "streamfleet-relay")?.await?;
        let (mut send_auth, recv) = conn.open_bi().await?;
        send(
            &mut send_auth,
            &Message::Auth {
                mac: auth_mac(&self.secret, &conn, Side::Client)?,
            },
        )
        .await?;
        let _ = send_auth.finish();
        let mut reader = MessageReader::new(recv);
        match tokio::time::timeout(super::AUTH_TIMEOUT, reader.next()).await {
            Ok(Ok(Some(Message::Auth { mac })))
                if auth_ok(&self.secret, &conn, Side::Server, &mac) => {}
            _ => {
                conn.close(
                    streamfleet_proto::relay::close::AUTH_FAILED.into(),
                    b"authentication failed",
                );
                tracing::warn!(origin = %addr, "relay origin refused: it did not prove it knows the cluster secret");
                return Err(RelayIoError::AuthFailed);
            }
        }
        tracing::info!(origin = %addr, "connected to origin relay");
        let routes: Arc<Mutex<HashMap<u64, mpsc::Sender<GopStream>>>> = Arc::default();
        self.shutdown.spawn_service(accept_gops(
            conn.clone(),
            routes.clone(),
            self.shutdown.clone(),
        ));
        conns.insert(
            addr,
            OriginConn {
                conn: conn.clone(),
                routes: routes.clone(),
            },
        );
        Ok((conn, routes))
    }

    /// Whether any viewer used the stream's hubs within the grace period.
    fn watched(&self, stream: &StreamKey) -> bool {
        self.hubs.family(stream).iter().any(|h| {
            h.subscriber_count(SubscriberKind::Rtmp) > 0
                || h.subscriber_count(SubscriberKind::WebRtc) > 0
                || h.last_access().is_some_and(|t| t.elapsed() < self.grace)
        })
    }

    /// The pull task of one stream.
    async fn pull(self: Arc<Self>, key: StreamKey, status: watch::Sender<PullStatus>) {
        let mut renditions: Vec<Rendition> = Vec::new();
        let mut ended_since: Option<Instant> = None;
        let started = Instant::now();
        let mut first = true;
        // Whether the last store look-up failed (one log line per outage).
        let mut store_down = false;
        loop {
            if self.shutdown.is_stopped() {
                break;
            }
            // Nobody watches any more (after the first viewer had its chance): let go.
            if started.elapsed() > self.grace && !self.watched(&key) {
                tracing::info!(stream = %key, "no viewers left; unsubscribing");
                break;
            }
            let upstream = match tokio::time::timeout(self.poll, self.store.stream(&key)).await {
                Ok(Ok(record)) => {
                    store_down = false;
                    match &record {
                        None => self.lookups.absent(&key, Instant::now()),
                        Some(_) => self.lookups.present(&key),
                    }
                    match live_upstream(record.as_ref(), SystemTime::now()) {
                        Some(None) => {
                            tracing::warn!(stream = %key, "the stream's origin has no relay address");
                            tokio::time::sleep(RETRY).await;
                            continue;
                        }
                        Some(Some(upstream)) => {
                            self.lookups.live_on(&key, upstream.clone(), Instant::now());
                            upstream
                        }
                        None => {
                            self.lookups.not_live(&key);
                            // Not live anywhere. Keep the local hubs a short while (the
                            // publisher may be reconnecting to another origin), then answer
                            // 404 for them.
                            let since = *ended_since.get_or_insert_with(Instant::now);
                            if first || since.elapsed() >= self.poll * 2 {
                                break;
                            }
                            tokio::time::sleep(RETRY.min(self.poll)).await;
                            continue;
                        }
                    }
                }
                // Store trouble: go on with where the stream was last live (the origin tells
                // whether it still is), or retry.
                _ => match self.lookups.last_known(&key) {
                    Some(upstream) => {
                        if !store_down {
                            tracing::info!(stream = %key, origin = %upstream.origin, "cluster store not answering; using the stream's last known origin");
                        }
                        store_down = true;
                        upstream
                    }
                    None => {
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            ended_since = None;
            let Some(addr) = resolve(Some(upstream.relay.as_str())).await else {
                tracing::warn!(stream = %key, origin = %upstream.origin, "origin has no reachable relay address");
                tokio::time::sleep(RETRY).await;
                continue;
            };
            if !first {
                self.metrics.resubscribes.inc();
            }
            first = false;
            let subscribed = Instant::now();
            match self
                .subscribe(&key, addr, upstream.epoch, &mut renditions, &status)
                .await
            {
                // Ended at once during a store outage (the origin no longer has it, say):
                // pause before asking again.
                Ok(()) if store_down && subscribed.elapsed() < RETRY => {
                    tokio::time::sleep(RETRY).await;
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::info!(stream = %key, origin = %upstream.origin, "relay subscription interrupted: {e}");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        // Let go: publishers end (players see the stream stop), and the hubs are forgotten so
        // playlist requests answer 404 until someone pulls again.
        for r in renditions.drain(..) {
            self.hubs.remove(&r.key);
        }
        status.send_replace(PullStatus::Gone);
        self.pulls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// One subscription on one origin; returns when it must be renewed or the pull ends.
    async fn subscribe(
        &self,
        key: &StreamKey,
        addr: SocketAddr,
        epoch: u64,
        renditions: &mut Vec<Rendition>,
        status: &watch::Sender<PullStatus>,
    ) -> Result<(), RelayIoError> {
        let (conn, routes) = self.connection(addr).await?;
        let (mut control, recv) = conn.open_bi().await?;
        let subscription = control.id().index();
        // The origin numbers renditions and GOPs per subscription: start afresh.
        for r in renditions.iter_mut() {
            r.index = None;
            r.order.reset();
        }
        let (gop_tx, mut gop_rx) = mpsc::channel::<GopStream>(GOP_QUEUE);
        routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subscription, gop_tx);
        let _route = RouteGuard {
            routes: routes.clone(),
            subscription,
        };
        send(
            &mut control,
            &Message::Subscribe {
                app: key.app.clone(),
                stream: key.stream_id.clone(),
            },
        )
        .await?;
        let mut control_reader = MessageReader::new(recv);
        let _held = GaugeGuard::new(&self.metrics.subscriptions);
        let (frame_tx, mut frame_rx) = mpsc::channel::<GopItem>(FRAME_QUEUE);
        let mut early: VecDeque<GopItem> = VecDeque::new();
        let mut check = tokio::time::interval(self.poll);
        check.tick().await;
        let mut ownership: Option<OwnershipCheck<'_>> = None;
        // When a frame last arrived: a lease that expired while frames flow is kept.
        let mut last_frame = Instant::now();
        loop {
            tokio::select! {
                msg = control_reader.next() => match msg? {
                    Some(Message::Info { rendition, id, generation, video, audio, metadata }) => {
                        let r = rendition_slot(renditions, rendition, HubKey::new(key.clone(), id));
                        r.deferred.push_back(Deferred::Describe(Describe { generation, video, audio, metadata }));
                        self.settle(r, epoch, &mut early, status);
                    }
                    Some(Message::Stop { rendition, segment_end }) => {
                        if let Some(r) = renditions.iter_mut().find(|r| r.index == Some(rendition)) {
                            r.deferred.push_back(Deferred::Stop(segment_end));
                            self.settle(r, epoch, &mut early, status);
                        }
                    }
                    Some(Message::NotFound) | None => return Ok(()),
                    Some(_) => return Err(RelayIoError::Protocol(streamfleet_proto::relay::RelayError::BadField("unexpected message on a subscription"))),
                },
                Some(gop) = gop_rx.recv() => {
                    let stop = Arc::new(AtomicBool::new(false));
                    tokio::spawn(read_gop(gop, frame_tx.clone(), stop));
                }
                Some(item) = frame_rx.recv() => {
                    last_frame = Instant::now();
                    let r = renditions.iter_mut().find(|r| r.index == Some(item.rendition));
                    match r {
                        // A unit of a publish session not described yet (its Info travels on
                        // another stream): it waits for it, within a bound.
                        Some(r) if (epoch, item.generation) > r.session => hold(&mut early, item),
                        None => hold(&mut early, item),
                        Some(r) => {
                            self.deliver(r, epoch, item, status);
                            self.settle(r, epoch, &mut early, status);
                        }
                    }
                }
                _ = check.tick(), if ownership.is_none() => {
                    if !self.watched(key) {
                        return Ok(());
                    }
                    // Asked alongside the relay, never in its way: a store that is slow or
                    // down must not stall frames that flow.
                    ownership = Some(Box::pin(tokio::time::timeout(self.poll, self.store.stream(key))));
                }
                checked = async { ownership.as_mut()?.await.ok()?.ok() }, if ownership.is_some() => {
                    ownership = None;
                    // None: the store is down or slow; the relay still flows, keep it.
                    if let Some(record) = checked {
                        if let Some(Some(upstream)) = live_upstream(record.as_ref(), SystemTime::now()) {
                            self.lookups.live_on(key, upstream, Instant::now());
                        }
                        let flowing = last_frame.elapsed() < self.poll * 2;
                        if !keeps_subscription(record.as_ref(), epoch, SystemTime::now(), flowing) {
                            // Ownership moved (or the stream ended): resolve again.
                            return Ok(());
                        }
                    }
                }
                () = self.shutdown.stopped() => return Ok(()),
            }
        }
    }
}

/// Where `record` says the stream is live at `now`: `None` if it is not live, `Some(None)` if
/// its origin has no relay address.
fn live_upstream(record: Option<&StreamRecord>, now: SystemTime) -> Option<Option<Upstream>> {
    let record = record.filter(|r| r.effective_status(now) == StreamStatus::Broadcasting)?;
    Some(record.origin_relay.as_ref().map(|relay| Upstream {
        origin: record.origin.clone(),
        relay: relay.clone(),
        epoch: record.epoch,
    }))
}

/// A store look-up of a stream's record, bounded in time.
type OwnershipCheck<'a> = Pin<
    Box<
        dyn Future<
                Output = Result<
                    Result<Option<StreamRecord>, StoreError>,
                    tokio::time::error::Elapsed,
                >,
            > + Send
            + 'a,
    >,
>;

/// Whether a subscription made at `epoch` goes on, given the stream's record at `now` and
/// whether frames still flow on it: yes while the record names the same publish session and
/// does not say it ended, and its lease is current. A lease that expired while frames flow
/// keeps it too: the origin could not renew it during a store outage, but it is alive (a
/// killed origin's frames stop at once).
fn keeps_subscription(
    record: Option<&StreamRecord>,
    epoch: u64,
    now: SystemTime,
    flowing: bool,
) -> bool {
    record.is_some_and(|r| {
        r.epoch == epoch
            && r.status == StreamStatus::Broadcasting
            && (flowing || r.effective_status(now) == StreamStatus::Broadcasting)
    })
}

/// `host:port` -> a socket address.
async fn resolve(relay: Option<&str>) -> Option<SocketAddr> {
    let relay = relay?;
    tokio::net::lookup_host(relay).await.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(epoch: u64, lease_left: i64, now: SystemTime) -> StreamRecord {
        let mut r = StreamRecord::created(StreamKey::new("live", "cam"), now);
        r.status = StreamStatus::Broadcasting;
        r.epoch = epoch;
        r.origin = "origin-1".into();
        r.origin_relay = Some("127.0.0.1:4433".into());
        r.lease_until = if lease_left >= 0 {
            now + Duration::from_secs(lease_left as u64)
        } else {
            now - Duration::from_secs(lease_left.unsigned_abs())
        };
        r
    }

    #[test]
    fn a_subscription_outlives_an_expired_lease_only_while_frames_flow() {
        let now = SystemTime::now();
        assert!(keeps_subscription(Some(&live(1, 5, now)), 1, now, false));
        assert!(
            keeps_subscription(Some(&live(1, -5, now)), 1, now, true),
            "the origin could not renew during a store outage, but it sends"
        );
        assert!(
            !keeps_subscription(Some(&live(1, -5, now)), 1, now, false),
            "a dead origin: resolve again"
        );
        assert!(
            !keeps_subscription(Some(&live(2, 5, now)), 1, now, true),
            "another origin took over"
        );
        let mut ended = live(1, 5, now);
        ended.status = StreamStatus::Finished;
        assert!(!keeps_subscription(Some(&ended), 1, now, true), "ended");
        assert!(!keeps_subscription(None, 1, now, true), "deleted");
    }

    #[test]
    fn only_a_live_record_with_a_relay_address_is_an_upstream() {
        let now = SystemTime::now();
        let up = live_upstream(Some(&live(3, 5, now)), now);
        assert_eq!(
            up,
            Some(Some(Upstream {
                origin: "origin-1".into(),
                relay: "127.0.0.1:4433".into(),
                epoch: 3
            }))
        );
        assert_eq!(live_upstream(Some(&live(3, -1, now)), now), None);
        let mut no_relay = live(3, 5, now);
        no_relay.origin_relay = None;
        assert_eq!(live_upstream(Some(&no_relay), now), Some(None));
        assert_eq!(live_upstream(None, now), None);
    }
}
