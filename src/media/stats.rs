//! Node-wide counters of a media node, read by the heartbeat (node record) and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::hub::{Hubs, SubscriberKind};
use crate::cluster::heartbeat::{Activity, ActivitySource};

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
                    .map(|h| h.subscriber_count(SubscriberKind::Rtmp))
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
        }
    }
}
