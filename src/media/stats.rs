//! Node-wide counters of a media node, read by the heartbeat (node record) and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::http::hls::HlsViewers;
use super::hub::{Hubs, SubscriberKind};
use crate::cluster::heartbeat::{Activity, ActivitySource};
use crate::cluster::model::{MAX_STREAM_VIEWERS, StreamKey, StreamViewers};
use std::collections::HashMap;

/// Counters of one media node.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Bytes sent to viewers and edges.
    pub egress_bytes: Counter,
    /// Bytes received from publishers.
    pub ingress_bytes: Counter,
    /// RTMP connections accepted.
    pub rtmp_connections: Counter,
    /// RTMP connections closed because of a protocol error.
    pub rtmp_errors: Counter,
    /// Publish attempts refused (bad app, token, duplicate, edge).
    pub publish_refused: Counter,
    /// HLS viewers (distinct clients fetching segments recently).
    pub hls_viewers: Gauge,
    /// HLS segments served.
    pub hls_segments: Counter,
    /// Previous egress sample for the bit rate.
    last: std::sync::Mutex<Option<(Instant, u64)>>,
    hubs: std::sync::OnceLock<Arc<Hubs>>,
    hls: std::sync::OnceLock<Arc<HlsViewers>>,
    streams: AtomicU64,
}

impl MediaStats {
    /// Registers the counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "egress_bytes",
            "Bytes sent to viewers and edges",
            self.egress_bytes.clone(),
        );
        registry.register(
            "ingress_bytes",
            "Bytes received from publishers",
            self.ingress_bytes.clone(),
        );
        registry.register(
            "rtmp_connections",
            "RTMP connections accepted",
            self.rtmp_connections.clone(),
        );
        registry.register(
            "rtmp_errors",
            "RTMP connections closed on a protocol error",
            self.rtmp_errors.clone(),
        );
        registry.register(
            "publish_refused",
            "Publish attempts refused",
            self.publish_refused.clone(),
        );
        registry.register(
            "hls_viewers",
            "Distinct HLS clients in the last 30 s",
            self.hls_viewers.clone(),
        );
        registry.register(
            "hls_segments_served",
            "HLS segments served to players",
            self.hls_segments.clone(),
        );
    }

    /// Lets the activity report count streams and players.
    pub fn attach(&self, hubs: Arc<Hubs>) {
        let _ = self.hubs.set(hubs);
    }

    /// Lets the activity report count HLS viewers per stream.
    pub fn attach_hls(&self, viewers: Arc<HlsViewers>) {
        let _ = self.hls.set(viewers);
    }

    /// This node's viewers of each stream, the most watched first, at most
    /// [`MAX_STREAM_VIEWERS`].
    fn stream_viewers(&self) -> Vec<StreamViewers> {
        let mut by_stream: HashMap<StreamKey, (u64, u64, u64)> = HashMap::new();
        if let Some(hls) = self.hls.get() {
            for (key, n) in hls.per_stream() {
                by_stream.entry(key).or_default().0 += n;
            }
        }
        if let Some(hubs) = self.hubs.get() {
            for hub in hubs.all() {
                let rtmp = hub.subscriber_count(SubscriberKind::Rtmp) as u64;
                let webrtc = hub.subscriber_count(SubscriberKind::WebRtc) as u64;
                if rtmp + webrtc > 0 {
                    let e = by_stream.entry(hub.key().stream.clone()).or_default();
                    e.1 += rtmp;
                    e.2 += webrtc;
                }
            }
        }
        let mut list: Vec<StreamViewers> = by_stream
            .into_iter()
            .map(|(k, (hls, rtmp, webrtc))| StreamViewers {
                app: k.app,
                stream_id: k.stream_id,
                hls,
                rtmp,
                webrtc,
            })
            .collect();
        list.sort_by_key(|v| std::cmp::Reverse(v.hls + v.rtmp + v.webrtc));
        list.truncate(MAX_STREAM_VIEWERS);
        list
    }

    /// Streams this node ingests or serves (set by the owner of that count).
    pub fn set_streams(&self, n: u64) {
        self.streams.store(n, Ordering::Relaxed);
    }
}

impl ActivitySource for MediaStats {
    fn activity(&self) -> Activity {
        let (streams, rtmp_viewers) = match self.hubs.get() {
            Some(hubs) => {
                let all = hubs.all();
                let live = all.iter().filter(|h| h.is_live()).count() as u64;
                let players: usize = all
                    .iter()
                    .map(|h| {
                        h.subscriber_count(SubscriberKind::Rtmp)
                            + h.subscriber_count(SubscriberKind::WebRtc)
                    })
                    .sum();
                (
                    live.max(self.streams.load(Ordering::Relaxed)),
                    players as u64,
                )
            }
            None => (self.streams.load(Ordering::Relaxed), 0),
        };
        let now = Instant::now();
        let bytes = self.egress_bytes.get();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let egress_bps = match *last {
            Some((t, b)) if now > t => {
                ((bytes.saturating_sub(b)) as f64 * 8.0 / (now - t).as_secs_f64()) as u64
            }
            _ => 0,
        };
        *last = Some((now, bytes));
        Activity {
            streams,
            viewers: rtmp_viewers + self.hls_viewers.get().max(0) as u64,
            egress_bps,
            stream_viewers: self.stream_viewers(),
        }
    }
}
