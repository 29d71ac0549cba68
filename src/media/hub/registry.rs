//! Every hub of a node, by stream then rendition, with what a stream's hubs share (the
//! source's HLS segment decisions, which its renditions follow).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use streamfleet_proto::names::RenditionId;

use super::{Hub, HubKey, HubMetrics};
use crate::cluster::model::StreamKey;
use crate::config::HlsConfig;
use crate::media::hls::decide::SegmentBook;
use crate::media::hls::memory::HlsMemory;

/// The hubs of one stream.
#[derive(Debug, Default)]
struct Family {
    /// By rendition.
    hubs: BTreeMap<RenditionId, Arc<Hub>>,
    /// The source's HLS segment decisions, which its renditions follow.
    book: Arc<SegmentBook>,
}

/// Every hub of a node, by stream, then rendition.
#[derive(Debug, Default)]
pub struct Hubs {
    map: Mutex<HashMap<StreamKey, Family>>,
    metrics: HubMetrics,
    /// HLS packaging settings for new hubs (none: no packaging).
    hls: Option<HlsConfig>,
    /// The node's budget for HLS segment bytes (`hls.max_memory`).
    hls_memory: Arc<HlsMemory>,
}

impl Hubs {
    /// An empty registry whose hubs count into `metrics`.
    pub fn new(metrics: HubMetrics, hls: Option<HlsConfig>) -> Self {
        let hls_memory = match &hls {
            Some(c) => HlsMemory::new(c.max_memory, metrics.hls_bytes.clone()),
            None => HlsMemory::unlimited(),
        };
        Hubs {
            map: Mutex::default(),
            metrics,
            hls,
            hls_memory,
        }
    }

    /// The node's HLS segment bytes, when they are over `hls.max_memory`: no new stream then.
    pub fn hls_memory_full(&self) -> Option<&HlsMemory> {
        Some(&*self.hls_memory).filter(|m| m.is_full())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamKey, Family>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hub with that name, if it exists.
    pub fn get(&self, key: &HubKey) -> Option<Arc<Hub>> {
        self.lock()
            .get(&key.stream)?
            .hubs
            .get(&key.rendition)
            .cloned()
    }

    /// The hub with that name, created if needed.
    pub fn get_or_create(&self, key: &HubKey) -> Arc<Hub> {
        let mut map = self.lock();
        let family = map.entry(key.stream.clone()).or_default();
        let book = family.book.clone();
        family
            .hubs
            .entry(key.rendition)
            .or_insert_with(|| {
                Arc::new(Hub::new(
                    key.clone(),
                    self.metrics.clone(),
                    self.hls.as_ref().map(|c| (c, &self.hls_memory)),
                    &book,
                ))
            })
            .clone()
    }

    /// Every hub of a stream: the source first, then renditions from the highest down.
    pub fn family(&self, stream: &StreamKey) -> Vec<Arc<Hub>> {
        let map = self.lock();
        let mut hubs: Vec<Arc<Hub>> = map
            .get(stream)
            .map(|f| f.hubs.values().cloned().collect())
            .unwrap_or_default();
        drop(map);
        hubs.sort_by_key(|h| h.key().rendition.listing_order());
        hubs
    }

    /// Streams whose source is live here now (published, or pulled by an edge).
    pub fn live_streams(&self) -> usize {
        self.lock()
            .values()
            .filter(|f| {
                f.hubs
                    .get(&RenditionId::Source)
                    .is_some_and(|h| h.is_live())
            })
            .count()
    }

    /// Forgets a hub (its holders keep it until they let go).
    pub fn remove(&self, key: &HubKey) {
        let mut map = self.lock();
        if let Some(family) = map.get_mut(&key.stream) {
            family.hubs.remove(&key.rendition);
            if family.hubs.is_empty() {
                map.remove(&key.stream);
            }
        }
    }

    /// Every hub.
    pub fn all(&self) -> Vec<Arc<Hub>> {
        self.lock()
            .values()
            .flat_map(|f| f.hubs.values().cloned())
            .collect()
    }

    /// Removes hubs idle for longer than `linger` that nobody else holds. Returns their names.
    pub fn reap(&self, linger: std::time::Duration) -> Vec<HubKey> {
        let mut map = self.lock();
        let mut removed = Vec::new();
        for family in map.values_mut() {
            family.hubs.retain(|_, hub| {
                let idle = hub.idle_since().is_some_and(|t| t.elapsed() >= linger);
                // Somebody (an HTTP request, a waiter) may still hold the Arc; keep it then.
                let unused = Arc::strong_count(hub) == 1;
                if idle && unused {
                    removed.push(hub.key().clone());
                    false
                } else {
                    true
                }
            });
        }
        map.retain(|_, family| !family.hubs.is_empty());
        removed
    }

    /// A weak handle, for tasks that must not keep the registry alive.
    pub fn downgrade(self: &Arc<Self>) -> Weak<Self> {
        Arc::downgrade(self)
    }
}
