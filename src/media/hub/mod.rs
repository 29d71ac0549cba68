//! The hub: one per stream (and per rendition). The publisher appends events to one shared
//! log; every subscriber (RTMP player, edge relay, transcoder) reads it at its own cursor, with a
//! bound on how far behind it may fall; the start cache lets a new player start at the latest
//! keyframe at once, and a new edge at the start of the current HLS segment.
//!
//! A published event is stored once whatever the number of subscribers; publishing checks each
//! subscriber's bound (a few comparisons under the hub lock) and wakes only those that wait and
//! can read it. RTMP players are paced: frames that arrive while
//! they wait arm one timer per hub, which wakes them all at the next tick of a process-wide
//! [`PACE_INTERVAL`] grid; so each wake-up and each socket write carries several frames, every
//! player of a node wakes at the same instants (the runtime serves them in one pass), no player
//! needs a timer of its own, and a frame waits at most one interval.
//! The log keeps what the slowest live subscriber has not read yet, so with subscribers that
//! keep up it holds a few frames.
//!
//! Slow subscribers: one that falls more than its bound behind skips to the next keyframe
//! (what it had not read is dropped); if it is still that far behind when the next keyframe
//! arrives it is disconnected. Both are counted. The publisher never waits for a subscriber.
//!
//! Registrations are drop guards: dropping a [`Publisher`] ends the publish session, dropping a
//! [`Subscription`] leaves the hub.
//!
//! A publisher of media ingested here ([`Hub::publish`]) has the hub's HLS packager decide each
//! frame's segment before it is fanned out; a relayed one ([`Hub::publish_relayed`]) passes the
//! origin's decisions on. `cache`: the start cache; `registry`: [`Hubs`], every hub of a node.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use streamfleet_proto::names::{PlayerName, RenditionId};

use super::frame::{Frame, StreamInfo, TrackKind};
use super::hls::decide::{Role as HlsRole, SegmentBook};
use super::hls::ll::LlView;
use super::hls::memory::HlsMemory;
use super::hls::{HlsPackager, HlsView};
use crate::cluster::model::StreamKey;
use crate::config::HlsConfig;
use crate::runtime::entropy::unix_time;
use streamfleet_proto::hls::SegmentStart;

/// Events a subscriber receives.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// The stream description changed (first sequence headers, a new SPS, or a new publish
    /// session: then `generation` changed too). Always precedes frames it describes.
    Start {
        /// Tracks and metadata.
        info: Arc<StreamInfo>,
        /// Increments at every publish session.
        generation: u64,
    },
    /// A frame.
    Frame(Frame),
    /// The publisher left; a new publish session may follow on the same subscription.
    Stop {
        /// Where the HLS segment open at the end was closed (output timeline, ms), when one
        /// was: an edge's packager ends it at the same place.
        segment_end: Option<u64>,
    },
}

/// How far a subscriber may fall behind, in events (~13 s of 30 fps video with AAC audio).
pub const SUBSCRIBER_QUEUE: usize = 1024;
/// Events a subscriber copies out of the log per lock of the hub.
const READ_BATCH: usize = 64;
/// Paced subscribers (RTMP players) are woken at most once per interval; it adds at most this
/// much delay.
///
/// 100 ms: one wake-up and one write carry about 3 video and 4 audio frames. 50 ms measured
/// 12-19% more server CPU at 400 players (bench/fanout, two A/B rounds) for 50 ms less delay,
/// small next to what RTMP play already has (the player's own buffer, a GOP-cache start).
pub const PACE_INTERVAL: Duration = Duration::from_millis(100);
/// Start cache bound: beyond it the frames before the latest keyframe are dropped, and beyond
/// it with one GOP (a stream without keyframes) the cache is dropped until the next keyframe.
const GOP_MAX_FRAMES: usize = 3000;
const GOP_MAX_BYTES: usize = 64 << 20;
/// Audio-only streams have no keyframes; keep about this many recent frames for new players.
const AUDIO_ONLY_CACHE: usize = 50;

/// Who a subscriber is, for viewer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriberKind {
    /// An RTMP player.
    Rtmp,
    /// A WebRTC (WHEP) viewer.
    WebRtc,
    /// An edge pulling over the relay.
    Relay,
    /// Internal consumer (transcoder, packager): never counted as a viewer.
    Internal,
}

/// Counters shared by every hub of a node.
#[derive(Debug, Clone, Default)]
pub struct HubMetrics {
    /// Frames skipped to the next keyframe by slow subscribers (one per skip episode).
    pub skips: Counter,
    /// Subscribers disconnected for staying behind.
    pub disconnects: Counter,
    /// Streams with an active publisher.
    pub publishers: Gauge,
    /// Subscribers, all hubs.
    pub subscribers: Gauge,
    /// Bytes of HLS and LL-HLS segments held, all hubs (`hls.max_memory` bounds it).
    pub hls_bytes: Gauge,
}

impl HubMetrics {
    /// Registers the counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hub_skips",
            "Slow subscribers that skipped to the next keyframe",
            self.skips.clone(),
        );
        registry.register(
            "hub_disconnects",
            "Subscribers disconnected for staying behind",
            self.disconnects.clone(),
        );
        registry.register(
            "hub_publishers",
            "Streams with a publisher",
            self.publishers.clone(),
        );
        registry.register(
            "hub_subscribers",
            "Subscribers of all streams",
            self.subscribers.clone(),
        );
        registry.register(
            "hls_bytes",
            "Bytes of HLS and LL-HLS segments held for all streams (bounded by hls.max_memory)",
            self.hls_bytes.clone(),
        );
    }
}

/// Name of a hub: one rendition of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HubKey {
    /// The stream.
    pub stream: StreamKey,
    /// Which of its renditions.
    pub rendition: RenditionId,
}

impl HubKey {
    /// A rendition of a stream.
    pub fn new(stream: StreamKey, rendition: RenditionId) -> Self {
        HubKey { stream, rendition }
    }

    /// The source rendition of `app/stream_id`.
    pub fn source(app: &str, stream_id: &str) -> Self {
        HubKey::new(StreamKey::new(app, stream_id), RenditionId::Source)
    }

    /// The rendition a player names in `app`: `demo` (the source) or `demo_480p`.
    pub fn from_player_name(app: &str, name: &str) -> Self {
        let p = PlayerName::parse(name);
        HubKey::new(StreamKey::new(app, p.stream), p.rendition)
    }

    /// How players name it: `demo` or `demo_480p`.
    pub fn player_name(&self) -> PlayerName<'_> {
        PlayerName {
            stream: &self.stream.stream_id,
            rendition: self.rendition,
        }
    }
}

/// `live/demo` or `live/demo_480p`.
impl std::fmt::Display for HubKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stream.app, self.player_name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    Live,
    /// Dropping frames until the next keyframe; `read`: it asked for an event since it began
    /// skipping (else, at that keyframe, it has stayed behind).
    Skipping {
        read: bool,
    },
    /// Disconnected for staying behind; the subscription reads nothing more from the log.
    Closed,
}

#[derive(Debug)]
struct Slot {
    kind: SubscriberKind,
    /// How far behind the head it may fall, in events.
    bound: u64,
    /// Sequence number of the next event it reads.
    cursor: u64,
    state: SubState,
    /// Set while the subscriber waits for an event.
    waker: Option<Waker>,
    /// Times it skipped (events it never got).
    skips: u64,
}

impl Slot {
    /// Woken only on the pacing grid: RTMP players.
    fn paced(&self) -> bool {
        self.kind == SubscriberKind::Rtmp
    }
}

/// Whether an event may start a subscriber that skipped: keyframes and stream events.
fn resumes(event: &HubEvent) -> bool {
    match event {
        HubEvent::Frame(f) => f.keyframe,
        HubEvent::Start { .. } | HubEvent::Stop { .. } => true,
    }
}

#[derive(Debug, Default)]
struct Inner {
    publishing: bool,
    generation: u64,
    info: Arc<StreamInfo>,
    cache: StartCache,
    /// This publish session's frames carry HLS segment decisions.
    segmented: bool,
    /// Events not yet read by every live subscriber; `log[0]` has sequence number `log_start`.
    log: VecDeque<HubEvent>,
    log_start: u64,
    /// Subscribers by index (a [`Subscription`] keeps its index); `None` is a free place.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    idle_since: Option<Instant>,
    /// A timer will wake the paced subscribers at the next tick.
    pace_armed: bool,
}

impl Inner {
    fn head(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().flatten()
    }

    fn has_subscribers(&self) -> bool {
        self.slots().next().is_some()
    }
}

/// One stream's fan-out point.
#[derive(Debug)]
pub struct Hub {
    key: HubKey,
    inner: Mutex<Inner>,
    metrics: HubMetrics,
    /// Bumped at every publish start/stop, so waiters (edges, playlist requests) can watch.
    live: watch::Sender<bool>,
    /// HLS packaging of this hub, fed from the publisher's task.
    hls: Option<Mutex<HlsPackager>>,
    /// What the packager serves, readable without locking it (HTTP requests).
    hls_view: Option<watch::Receiver<Arc<HlsView>>>,
    /// What LL-HLS serves, when it is on.
    ll_view: Option<watch::Receiver<Arc<LlView>>>,
    /// LL-HLS requests waiting for a part or a playlist update (bounded).
    ll_waiters: AtomicUsize,
    /// Last HLS request for this hub (an HLS player is a viewer without a subscription).
    last_access: Mutex<Option<Instant>>,
}

/// One LL-HLS request waiting on a hub; dropping it stops counting it.
#[derive(Debug)]
pub struct LlWaiter {
    hub: Arc<Hub>,
}

impl Drop for LlWaiter {
    fn drop(&mut self) {
        self.hub.ll_waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The right to publish into a hub; dropping it ends the publish session.
#[derive(Debug)]
pub struct Publisher {
    hub: Arc<Hub>,
    /// This node decides the HLS segments of what it publishes (it ingests the stream);
    /// otherwise the frames carry the deciding node's decisions (an edge relaying).
    decides: bool,
    /// Where the deciding node ended the last segment, once the publish session is over.
    segment_end: Option<u64>,
}

/// A publish attempt on a stream that already has a publisher.
#[derive(Debug, thiserror::Error)]
#[error("stream {0} already has a publisher")]
pub struct AlreadyPublishing(pub HubKey);

impl Hub {
    /// A hub; with `hls`, it packages HLS, its segment decisions shared with the rest of its
    /// family through `book`.
    fn new(
        key: HubKey,
        metrics: HubMetrics,
        hls: Option<(&HlsConfig, &Arc<HlsMemory>)>,
        book: &Arc<SegmentBook>,
    ) -> Self {
        let hls = hls.map(|(c, memory)| {
            let role = match key.rendition {
                RenditionId::Source => HlsRole::Source(book.clone()),
                RenditionId::Height(_) => HlsRole::Rendition(book.clone()),
            };
            HlsPackager::new(
                &key.player_name().to_string(),
                c,
                role,
                unix_time().as_secs(),
            )
            .with_memory(memory.clone())
        });
        Hub {
            hls_view: hls.as_ref().map(HlsPackager::subscribe),
            ll_view: hls.as_ref().and_then(HlsPackager::ll_subscribe),
            ll_waiters: AtomicUsize::new(0),
            hls: hls.map(Mutex::new),
            key,
            inner: Mutex::new(Inner {
                idle_since: Some(Instant::now()),
                ..Default::default()
            }),
            metrics,
            live: watch::Sender::new(false),
            last_access: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation leaves `Inner` consistent before any call that could panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hub's name.
    pub fn key(&self) -> &HubKey {
        &self.key
    }

    /// Whether a publisher is active.
    pub fn is_live(&self) -> bool {
        self.lock().publishing
    }

    /// Watches the live flag (true while a publisher is active).
    pub fn watch_live(&self) -> watch::Receiver<bool> {
        self.live.subscribe()
    }

    /// What HLS serves now (playlist and segments), without waiting for the packager.
    pub fn hls_view(&self) -> Option<Arc<HlsView>> {
        self.hls_view.as_ref().map(|v| v.borrow().clone())
    }

    /// Watches what LL-HLS serves, when it is on.
    pub fn watch_ll(&self) -> Option<watch::Receiver<Arc<LlView>>> {
        self.ll_view.clone()
    }

    /// Counts one LL-HLS request waiting on this hub while the guard lives; `None` when
    /// `max` already wait.
    pub fn ll_waiter(self: &Arc<Self>, max: usize) -> Option<LlWaiter> {
        let before = self.ll_waiters.fetch_add(1, Ordering::AcqRel);
        let guard = LlWaiter { hub: self.clone() };
        (before < max).then_some(guard)
    }

    /// Watches what HLS serves.
    pub fn watch_hls(&self) -> Option<watch::Receiver<Arc<HlsView>>> {
        self.hls_view.clone()
    }

    /// The HLS packager, when the node packages HLS.
    pub fn hls(&self) -> Option<MutexGuard<'_, HlsPackager>> {
        self.hls
            .as_ref()
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records an HLS request (keeps a pulled stream alive on an edge).
    pub fn touch(&self) {
        *self.last_access.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// When an HLS request last touched the hub.
    pub fn last_access(&self) -> Option<Instant> {
        *self.last_access.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current stream description.
    pub fn info(&self) -> Arc<StreamInfo> {
        self.lock().info.clone()
    }

    /// Subscribers by kind.
    pub fn subscriber_count(&self, kind: SubscriberKind) -> usize {
        self.lock()
            .slots()
            .filter(|s| s.kind == kind && s.state != SubState::Closed)
            .count()
    }

    /// Takes the publisher role, for media ingested here: this node decides its HLS segments.
    pub fn publish(self: &Arc<Self>) -> Result<Publisher, AlreadyPublishing> {
        self.publish_as(true)
    }

    /// Takes the publisher role for media relayed from the node that ingests it, whose frames
    /// carry that node's HLS decisions.
    pub fn publish_relayed(self: &Arc<Self>) -> Result<Publisher, AlreadyPublishing> {
        self.publish_as(false)
    }

    fn publish_as(self: &Arc<Self>, decides: bool) -> Result<Publisher, AlreadyPublishing> {
        let mut inner = self.lock();
        if inner.publishing {
            return Err(AlreadyPublishing(self.key.clone()));
        }
        inner.publishing = true;
        inner.generation += 1;
        inner.info = Arc::new(StreamInfo::default());
        inner.cache = StartCache::default();
        inner.segmented = false;
        inner.idle_since = None;
        drop(inner);
        if !decides && let Some(mut hls) = self.hls() {
            hls.follow();
        }
        self.metrics.publishers.inc();
        self.live.send_replace(true);
        Ok(Publisher {
            hub: self.clone(),
            decides,
            segment_end: None,
        })
    }

    /// Joins the hub. The subscriber first receives the current description and the recent
    /// frames (players from the latest keyframe; edges from the start of the current HLS
    /// segment, so they package it whole), then live frames.
    pub fn subscribe(self: &Arc<Self>, kind: SubscriberKind) -> Subscription {
        self.subscribe_with_capacity(kind, SUBSCRIBER_QUEUE)
    }

    /// [`Hub::subscribe`] with a bound on how far (in events) the subscriber may fall behind.
    pub fn subscribe_with_capacity(
        self: &Arc<Self>,
        kind: SubscriberKind,
        capacity: usize,
    ) -> Subscription {
        let mut inner = self.lock();
        let mut taken = VecDeque::new();
        if inner.info.video.is_some() || inner.info.audio.is_some() {
            taken.push_back(HubEvent::Start {
                info: inner.info.clone(),
                generation: inner.generation,
            });
            taken.extend(
                inner
                    .cache
                    .for_new(kind)
                    .iter()
                    .cloned()
                    .map(HubEvent::Frame),
            );
        }
        let slot = Slot {
            kind,
            bound: capacity.max(1) as u64,
            cursor: inner.head(),
            state: SubState::Live,
            waker: None,
            skips: 0,
        };
        let index = match inner.free.pop() {
            Some(i) => i,
            None => {
                inner.slots.push(None);
                inner.slots.len() - 1
            }
        };
        if let Some(place) = inner.slots.get_mut(index) {
            *place = Some(slot);
        }
        inner.idle_since = None;
        drop(inner);
        self.metrics.subscribers.inc();
        Subscription {
            hub: self.clone(),
            index,
            taken,
            skips: 0,
            skips_seen: 0,
        }
    }

    fn unsubscribe(&self, index: usize) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(index).and_then(Option::take) {
            inner.free.push(index);
            if slot.state != SubState::Closed {
                self.metrics.subscribers.dec();
            }
        }
        if !inner.has_subscribers() && !inner.publishing {
            inner.idle_since = Some(Instant::now());
        }
        trim_log(&mut inner);
    }

    /// When the hub became idle (no publisher, no subscriber), if it is.
    pub fn idle_since(&self) -> Option<Instant> {
        self.lock().idle_since
    }

    /// Appends an event to the log for every subscriber, applying the slow-subscriber policy.
    /// Returns the wakers of the subscribers to wake now (the caller wakes them once it has
    /// let go of the hub), and arms the pacing timer for the paced ones that wait.
    #[must_use = "the returned wakers must be woken"]
    fn fan_out(self: &Arc<Self>, inner: &mut Inner, event: HubEvent) -> Vec<Waker> {
        let resume = resumes(&event);
        // Every frame of an audio-only stream is a place to resume (but not one where a
        // subscriber that has not read since it skipped is disconnected: it would get no time).
        let audio_resume = inner.info.video.is_none()
            && matches!(&event, HubEvent::Frame(f) if f.kind == TrackKind::Audio);
        // Edges resume where an HLS segment starts (when the stream has segments), so that
        // what they package is whole segments.
        let segment_resume = match &event {
            HubEvent::Frame(f) => f.segment.is_some(),
            HubEvent::Start { .. } | HubEvent::Stop { .. } => true,
        };
        let segmented = inner.segmented;
        // Stream events wake everyone at once; frames wake paced subscribers at the next tick.
        let stream_event = !matches!(event, HubEvent::Frame(_));
        let mut wake = Vec::new();
        let mut paced_waiting = false;
        let head = inner.head();
        let metrics = &self.metrics;
        // The new event has sequence number `head`: kept only if a live subscriber reads it.
        let mut keep_from = head + 1;
        // Where a subscriber that skipped may resume, and whether, not having read since, it
        // is disconnected there.
        let places = |slot: &Slot| {
            if slot.kind == SubscriberKind::Relay && segmented {
                (segment_resume, segment_resume)
            } else {
                (resume || audio_resume, resume)
            }
        };
        for slot in inner.slots.iter_mut().flatten() {
            let (may_resume, may_close) = places(slot);
            match slot.state {
                SubState::Live if head - slot.cursor.min(head) >= slot.bound => {
                    // No room for this event: drop what it has not read, resume at a keyframe
                    // (an edge: at a segment start).
                    // Woken now, paced or not, so that it can show it still reads.
                    slot.state = SubState::Skipping { read: false };
                    slot.skips += 1;
                    metrics.skips.inc();
                    wake.extend(slot.waker.take());
                }
                SubState::Live => keep_from = keep_from.min(slot.cursor),
                // Where it can resume: it does if it read since it began skipping, else it
                // stayed behind.
                SubState::Skipping { read } if may_resume => {
                    if read {
                        slot.state = SubState::Live;
                        slot.cursor = head;
                        keep_from = keep_from.min(head);
                    } else if may_close {
                        slot.state = SubState::Closed;
                        metrics.disconnects.inc();
                        metrics.subscribers.dec();
                    }
                }
                SubState::Skipping { .. } | SubState::Closed => {}
            }
            if matches!(slot.state, SubState::Skipping { .. }) {
                // Nothing it can read until it resumes: not woken.
                continue;
            }
            if stream_event || !slot.paced() || slot.state == SubState::Closed {
                wake.extend(slot.waker.take());
            } else if slot.waker.is_some() {
                paced_waiting = true;
            }
        }
        inner.log.push_back(event);
        // Nobody live needs what is before `keep_from`; skipping subscribers resume at the
        // next keyframe, wherever the log starts.
        drop_log_before(inner, keep_from);
        if paced_waiting && !inner.pace_armed {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    inner.pace_armed = true;
                    let hub = Arc::downgrade(self);
                    let tick = next_tick(tokio::time::Instant::now());
                    runtime.spawn(async move {
                        tokio::time::sleep_until(tick).await;
                        if let Some(hub) = hub.upgrade() {
                            hub.pace();
                        }
                    });
                }
                // Published from outside a runtime: no timer to pace with, wake them now.
                Err(_) => wake.extend(paced_wakers(inner)),
            }
        }
        wake
    }

    /// The pacing tick: wakes the paced subscribers that wait.
    fn pace(&self) {
        let mut inner = self.lock();
        inner.pace_armed = false;
        let wake = paced_wakers(&mut inner);
        drop(inner);
        wake.into_iter().for_each(Waker::wake);
    }
}

/// Takes the wakers of the paced subscribers that wait.
fn paced_wakers(inner: &mut Inner) -> Vec<Waker> {
    inner
        .slots
        .iter_mut()
        .flatten()
        .filter(|s| s.paced())
        .filter_map(|s| s.waker.take())
        .collect()
}

/// The first pacing tick after `now`. Ticks are on one process-wide grid, so the players of
/// every hub wake at the same instants.
fn next_tick(now: tokio::time::Instant) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now);
    // Into the current interval (0 if a test clock moved before the epoch: the grid starts
    // at `now` for it); below one interval, so it fits in u64.
    let into = now.saturating_duration_since(epoch).as_nanos() % PACE_INTERVAL.as_nanos();
    now + (PACE_INTERVAL - Duration::from_nanos(into as u64))
}

/// Drops the start of the log that no live subscriber still has to read.
fn trim_log(inner: &mut Inner) {
    let keep_from = inner
        .slots()
        .filter(|s| s.state == SubState::Live)
        .map(|s| s.cursor)
        .min()
        .unwrap_or_else(|| inner.head());
    drop_log_before(inner, keep_from);
}

/// Drops the log's events before sequence number `keep_from`.
fn drop_log_before(inner: &mut Inner, keep_from: u64) {
    let n = keep_from
        .saturating_sub(inner.log_start)
        .min(inner.log.len() as u64);
    inner.log.drain(..n as usize);
    inner.log_start += n;
}

impl Publisher {
    /// The hub published into.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Replaces the stream description (a sequence header or metadata arrived).
    pub fn set_info(&self, info: StreamInfo) {
        let mut inner = self.hub.lock();
        inner.info = Arc::new(info);
        let (info, generation) = (inner.info.clone(), inner.generation);
        let wake = self.hub.fan_out(
            &mut inner,
            HubEvent::Start {
                info: info.clone(),
                generation,
            },
        );
        drop(inner);
        wake.into_iter().for_each(Waker::wake);
        if let Some(mut hls) = self.hub.hls() {
            hls.start(&info, generation);
        }
    }

    /// The current description (to update one field).
    pub fn info(&self) -> Arc<StreamInfo> {
        self.hub.info()
    }

    /// Ends the publish session where the deciding node ended its last HLS segment.
    pub fn end(mut self, segment_end: Option<u64>) {
        self.segment_end = segment_end;
    }

    /// Pushes a frame to every subscriber and into the start cache. Returns the HLS segment it
    /// starts, when this node decided one.
    pub fn send(&self, mut frame: Frame) -> Option<SegmentStart> {
        if frame.published_us == 0 {
            frame.published_us = crate::media::relay::unix_us();
        }
        let decided = if self.decides && frame.segment.is_none() && !frame.part {
            self.hub.hls().map(|mut hls| hls.decide(&frame))
        } else {
            None
        };
        let decided = decided.and_then(|d| {
            frame.part = d.part;
            d.segment
        });
        if let Some(start) = decided {
            frame.segment = Some(Arc::new(start));
        }
        let mut inner = self.hub.lock();
        let audio_only = inner.info.video.is_none();
        inner.cache.push(&frame, audio_only);
        inner.segmented |= frame.segment.is_some();
        let wake = self.hub.fan_out(&mut inner, HubEvent::Frame(frame.clone()));
        drop(inner);
        wake.into_iter().for_each(Waker::wake);
        if let Some(mut hls) = self.hub.hls() {
            hls.push(&frame);
        }
        decided
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // The packager ends the open segment first, so subscribers (edges) learn where.
        let segment_end = self
            .hub
            .hls()
            .and_then(|mut hls| hls.stop(self.segment_end));
        let mut inner = self.hub.lock();
        inner.publishing = false;
        inner.cache = StartCache::default();
        let wake = self.hub.fan_out(&mut inner, HubEvent::Stop { segment_end });
        if !inner.has_subscribers() {
            inner.idle_since = Some(Instant::now());
        }
        drop(inner);
        wake.into_iter().for_each(Waker::wake);
        self.hub.metrics.publishers.dec();
        self.hub.live.send_replace(false);
    }
}

mod cache;
mod registry;
mod subscription;
#[cfg(test)]
mod tests;

use self::cache::StartCache;
pub use self::registry::Hubs;
pub use self::subscription::{Subscription, TryRecvError};
