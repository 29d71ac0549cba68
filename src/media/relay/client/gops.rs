//! The receiving side of a subscription: the origin's unidirectional streams (one per relay
//! unit) are read into GOP items, held in order until their rendition is described, and
//! delivered into the local hubs.

use super::*;

impl Puller {
    /// Applies what the subscription's stream said about `r` once no unit of it is in
    /// progress, and lets the units that waited for a description go on.
    pub(super) fn settle(
        &self,
        r: &mut Rendition,
        epoch: u64,
        early: &mut VecDeque<GopItem>,
        status: &watch::Sender<PullStatus>,
    ) {
        while !(r.order.busy() && r.publisher.is_some()) {
            let Some(d) = r.deferred.pop_front() else {
                return;
            };
            match d {
                Deferred::Describe(d) => {
                    r.describe(&self.hubs, epoch, d);
                    let index = r.index;
                    let (now, later): (VecDeque<GopItem>, VecDeque<GopItem>) =
                        early.drain(..).partition(|i| Some(i.rendition) == index);
                    *early = later;
                    for item in now {
                        self.deliver(r, epoch, item, status);
                    }
                }
                Deferred::Stop(segment_end) => {
                    if let Some(p) = r.publisher.take() {
                        p.end(segment_end);
                    }
                }
            }
        }
    }

    /// Publishes what a unit's stream brought, in the origin's order.
    pub(super) fn deliver(
        &self,
        r: &mut Rendition,
        epoch: u64,
        item: GopItem,
        status: &watch::Sender<PullStatus>,
    ) {
        let GopItem {
            gop,
            generation,
            event,
            stop,
            ..
        } = item;
        if r.publisher.is_none() || (epoch, generation) != r.session {
            // An older publish session's leftovers, or nowhere to publish.
            stop.store(true, Ordering::Relaxed);
            return;
        }
        let mut ready = Vec::new();
        let pushed = r.order.push(gop, &stop, event, &mut ready);
        self.metrics.late_gops.inc_by(pushed.late);
        let discard = |r: &Rendition| {
            if let Some(mut hls) = r.publisher.as_ref().and_then(|p| p.hub().hls()) {
                hls.discard_open();
            }
        };
        let count = ready.len();
        for (i, event) in ready.into_iter().enumerate() {
            if pushed.cut_short == Some(i) {
                discard(r);
            }
            match event {
                GopEvent::Broken => discard(r),
                GopEvent::Frame(frame) => {
                    if frame.published_us > 0 {
                        let now = unix_us();
                        self.metrics
                            .latency
                            .observe(now.saturating_sub(frame.published_us) as f64 / 1e6);
                    }
                    if let Some(p) = &r.publisher {
                        p.send(frame);
                    }
                }
                GopEvent::Describe(d) => r.describe(&self.hubs, epoch, d),
                GopEvent::Backfill(copies) => {
                    if let Some(mut hls) = r.publisher.as_ref().and_then(|p| p.hub().hls()) {
                        hls.backfill(copies);
                    }
                }
                GopEvent::Stop { segment_end } => {
                    if let Some(p) = r.publisher.take() {
                        p.end(segment_end);
                    }
                }
            }
        }
        if pushed.cut_short == Some(count) {
            discard(r);
        }
        if r.key.rendition == RenditionId::Source
            && r.publisher.as_ref().is_some_and(|p| p.hub().is_live())
        {
            status.send_replace(PullStatus::Live);
        }
    }
}

/// Keeps a GOP event that came before its rendition's description, within [`EARLY_QUEUE`];
/// beyond it, the GOP's reader is stopped.
pub(super) fn hold(early: &mut VecDeque<GopItem>, item: GopItem) {
    if early.len() < EARLY_QUEUE {
        early.push_back(item);
    } else {
        item.stop.store(true, Ordering::Relaxed);
    }
}

/// Removes a subscription's route when it ends.
pub(super) struct RouteGuard {
    pub(super) routes: Arc<Mutex<HashMap<u64, mpsc::Sender<GopStream>>>>,
    pub(super) subscription: u64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.subscription);
    }
}

/// One rendition of a pulled stream on this edge.
pub(super) struct Rendition {
    /// Its index in the current subscription (the origin numbers them per subscription).
    pub(super) index: Option<u8>,
    pub(super) key: HubKey,
    /// Publish session upstream: the origin's epoch (a new origin is a new session even if its
    /// hub's generation matches the last one's) and the hub's generation.
    pub(super) session: (u64, u64),
    pub(super) publisher: Option<Publisher>,
    pub(super) info: StreamInfo,
    /// Its units, put back in the origin's order.
    pub(super) order: GopOrder<GopEvent>,
    /// What the subscription's stream said, waiting for the unit in progress to end.
    pub(super) deferred: VecDeque<Deferred>,
}

/// The rendition `key`, now at `index` of the subscription.
pub(super) fn rendition_slot(
    renditions: &mut Vec<Rendition>,
    index: u8,
    key: HubKey,
) -> &mut Rendition {
    for r in renditions.iter_mut().filter(|r| r.key != key) {
        if r.index == Some(index) {
            r.index = None;
        }
    }
    let pos = match renditions.iter().position(|r| r.key == key) {
        Some(p) => p,
        None => {
            renditions.push(Rendition {
                index: None,
                key,
                session: (0, 0),
                publisher: None,
                info: StreamInfo::default(),
                order: GopOrder::default(),
                deferred: VecDeque::new(),
            });
            renditions.len() - 1
        }
    };
    let r = &mut renditions[pos];
    r.index = Some(index);
    r
}

impl Rendition {
    pub(super) fn describe(&mut self, hubs: &Hubs, epoch: u64, d: Describe) {
        let Describe {
            generation,
            video,
            audio,
            metadata,
        } = d;
        let session = (epoch, generation);
        if session != self.session || self.publisher.is_none() {
            // A new publish session upstream (or after a Stop): a new one here too, so players
            // and the HLS packager see the break.
            self.publisher = None;
            self.order.reset();
            self.session = session;
            match hubs.get_or_create(&self.key).publish_relayed() {
                Ok(p) => self.publisher = Some(p),
                Err(e) => {
                    tracing::warn!(stream = %self.key, "cannot relay into a hub that has a local publisher: {e}");
                    return;
                }
            }
        }
        self.info = StreamInfo {
            video: video.as_ref().and_then(video_track),
            audio: audio.as_ref().and_then(audio_track),
            metadata,
        };
        if let Some(p) = &self.publisher {
            p.set_info(self.info.clone());
        }
    }
}

/// Reads one unit's frames into the pull task until it ends or is declared late, then says it
/// ended (so the next unit can go on).
pub(super) async fn read_gop(mut gop: GopStream, tx: mpsc::Sender<GopItem>, stop: Arc<AtomicBool>) {
    let item = |event| GopItem {
        gop: gop.sequence,
        rendition: gop.rendition,
        generation: gop.generation,
        event,
        stop: stop.clone(),
    };
    // Segments of the origin's window not handed on yet.
    let (mut window, mut window_bytes) = (Vec::new(), 0usize);
    loop {
        if stop.load(Ordering::Relaxed) {
            gop.reader.stop();
            break;
        }
        let next = gop.reader.next().await;
        if !window.is_empty() && !matches!(next, Ok(Some(Message::Segment { .. }))) {
            window_bytes = 0;
            let copies = GopEvent::Backfill(std::mem::take(&mut window));
            if tx.send(item(Some(copies))).await.is_err() {
                return;
            }
        }
        let event = match next {
            Ok(Some(Message::Frame {
                kind,
                dts,
                keyframe,
                origin_us,
                segment,
                part,
                body,
            })) => {
                let kind = if kind == Kind::Video {
                    TrackKind::Video
                } else {
                    TrackKind::Audio
                };
                let mut frame = Frame::new(kind, dts, keyframe, body);
                frame.published_us = origin_us;
                frame.segment = segment.map(Arc::new);
                frame.part = part;
                GopEvent::Frame(frame)
            }
            Ok(Some(Message::Stop {
                rendition,
                segment_end,
            })) if rendition == gop.rendition => GopEvent::Stop { segment_end },
            Ok(Some(Message::Info {
                rendition,
                generation,
                video,
                audio,
                metadata,
                ..
            })) if rendition == gop.rendition && generation == gop.generation => {
                GopEvent::Describe(Describe {
                    generation,
                    video,
                    audio,
                    metadata,
                })
            }
            Ok(Some(Message::Segment {
                sequence,
                discontinuity_sequence,
                discontinuity,
                program_date_time,
                duration_ms,
                target_duration,
                data,
            })) => {
                // Gathered, so that the packager lists the whole window at once (the first
                // playlist a cold edge serves is complete), within bounds.
                window_bytes += data.len();
                window.push(SegmentCopy {
                    sequence,
                    discontinuity_sequence,
                    discontinuity,
                    program_date_time,
                    duration_ms,
                    target_duration,
                    data,
                });
                if window.len() < MAX_WINDOW_SEGMENTS && window_bytes < MAX_WINDOW_BYTES {
                    continue;
                }
                window_bytes = 0;
                GopEvent::Backfill(std::mem::take(&mut window))
            }
            // The unit ended cleanly.
            Ok(None) => break,
            // Cut short (the origin reset it: frames were lost there), or not our protocol:
            // what came of it must not be served.
            Ok(Some(_)) | Err(_) => {
                let _ = tx.send(item(Some(GopEvent::Broken))).await;
                break;
            }
        };
        if tx.send(item(Some(event))).await.is_err() {
            return;
        }
    }
    // The pull task may be gone; nothing to tell then.
    let _ = tx.send(item(None)).await;
}

/// Accepts the origin's GOP streams and hands each to its subscription.
pub(super) async fn accept_gops(
    conn: quinn::Connection,
    routes: Arc<Mutex<HashMap<u64, mpsc::Sender<GopStream>>>>,
    shutdown: Shutdown,
) {
    loop {
        let stream = tokio::select! {
            s = conn.accept_uni() => s,
            () = shutdown.stopped() => return,
        };
        let Ok(stream) = stream else { return };
        let routes = routes.clone();
        tokio::spawn(async move {
            let mut reader = MessageReader::new(stream);
            let header = tokio::time::timeout(super::super::AUTH_TIMEOUT, reader.next()).await;
            let Ok(Ok(Some(Message::GopHeader {
                subscription,
                rendition,
                generation,
                sequence,
            }))) = header
            else {
                reader.stop();
                return;
            };
            if rendition >= MAX_RENDITIONS {
                reader.stop();
                return;
            }
            let route = routes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&subscription)
                .cloned();
            match route {
                Some(tx) => {
                    if let Err(
                        mpsc::error::TrySendError::Full(mut g)
                        | mpsc::error::TrySendError::Closed(mut g),
                    ) = tx.try_send(GopStream {
                        rendition,
                        generation,
                        sequence,
                        reader,
                    }) {
                        g.reader.stop();
                    }
                }
                None => reader.stop(),
            }
        });
    }
}
