//! The node's budget for HLS segment bytes (`hls.max_memory`).
//!
//! Every packager counts what its views hold (MPEG-TS segments, LL-HLS segments and parts) into
//! one node-wide total. Past the budget, packagers keep only what their playlists list (no
//! extra segments for players holding an older playlist) and the node takes no new stream:
//! publishers and edge pulls are refused with the reason. Streams already carried go on, each
//! bounded by its window and by a segment size relative to its own bit rate (the packager
//! cuts a segment that outgrows it), so the total stays near the budget whatever publishers
//! send. The open segment's working buffer is not counted (one per rendition, bounded the same
//! way).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;

/// The node-wide total and its limit.
#[derive(Debug)]
pub struct HlsMemory {
    used: AtomicUsize,
    limit: usize,
    /// Over the limit at the last change (for one log line per crossing).
    over: AtomicBool,
    gauge: Gauge,
}

impl Default for HlsMemory {
    fn default() -> Self {
        HlsMemory {
            used: AtomicUsize::new(0),
            limit: usize::MAX,
            over: AtomicBool::new(false),
            gauge: Gauge::default(),
        }
    }
}

impl HlsMemory {
    /// A budget of `limit` bytes, reported in `gauge`.
    pub fn new(limit: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(HlsMemory {
            used: AtomicUsize::new(0),
            limit,
            over: AtomicBool::new(false),
            gauge,
        })
    }

    /// No limit (packagers outside a node: tests, tools).
    pub fn unlimited() -> Arc<Self> {
        Arc::default()
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the node holds more than its budget.
    pub fn is_full(&self) -> bool {
        self.used() > self.limit
    }

    fn change(&self, old: usize, new: usize) {
        let used = if new >= old {
            self.used.fetch_add(new - old, Ordering::Relaxed) + (new - old)
        } else {
            self.used
                .fetch_sub(old - new, Ordering::Relaxed)
                .saturating_sub(old - new)
        };
        self.gauge.set(i64::try_from(used).unwrap_or(i64::MAX));
        let over = used > self.limit;
        if self.over.swap(over, Ordering::Relaxed) != over {
            if over {
                tracing::warn!(
                    used,
                    limit = self.limit,
                    "HLS segments use the node's whole hls.max_memory: extra segments dropped, new streams refused"
                );
            } else {
                tracing::info!(
                    used,
                    limit = self.limit,
                    "HLS segments back under hls.max_memory"
                );
            }
        }
    }
}

/// What one packager holds, counted in the node's total until it is dropped.
#[derive(Debug)]
pub struct Holding {
    memory: Arc<HlsMemory>,
    held: usize,
}

impl Holding {
    /// Nothing held yet.
    pub fn new(memory: Arc<HlsMemory>) -> Self {
        Holding { memory, held: 0 }
    }

    /// The packager holds `bytes` now.
    pub fn set(&mut self, bytes: usize) {
        if bytes != self.held {
            self.memory.change(self.held, bytes);
            self.held = bytes;
        }
    }

    /// The node's budget.
    pub fn memory(&self) -> &HlsMemory {
        &self.memory
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.memory.change(self.held, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdings_add_up_cross_the_limit_and_are_released_when_dropped() {
        let memory = HlsMemory::new(1000, Gauge::default());
        let mut a = Holding::new(memory.clone());
        let mut b = Holding::new(memory.clone());
        a.set(600);
        b.set(300);
        assert_eq!(memory.used(), 900);
        assert!(!memory.is_full());
        b.set(500);
        assert!(memory.is_full());
        a.set(100);
        assert_eq!(memory.used(), 600);
        assert!(!memory.is_full());
        drop(b);
        assert_eq!(memory.used(), 100);
        drop(a);
        assert_eq!(memory.used(), 0);
        assert_eq!(memory.gauge.get(), 0);
    }
}
