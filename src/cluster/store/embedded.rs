//! The embedded store: the cluster state in this process's memory, shared by every node the
//! process runs. Nothing to install; the one-box default. Nodes in other processes cannot see it.
//!
//! Each operation takes one short lock; leases follow exactly the compare-and-set rules of the
//! [`Store`] trait so that the conformance tests (`tests/e2e/common/conformance.rs`) hold for
//! both stores.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Store, StoreError};
use crate::cluster::model::{
    Lease, NodeRecord, StreamClaim, StreamKey, StreamRecord, StreamStatus, StreamUpdate,
};

/// In-memory store.
#[derive(Debug, Default)]
pub struct EmbeddedStore {
    nodes: Mutex<BTreeMap<String, NodeRecord>>,
    streams: Mutex<BTreeMap<String, StreamRecord>>,
}

impl EmbeddedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Locks a map; a poisoned lock means a panic elsewhere while holding it, and the maps are
/// always left consistent (every mutation is a single insert), so the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn upsert_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        lock(&self.nodes).insert(node.name.clone(), node.clone());
        Ok(())
    }

    async fn remove_node(&self, name: &str) -> Result<(), StoreError> {
        lock(&self.nodes).remove(name);
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(lock(&self.nodes).values().cloned().collect())
    }

    async fn claim_stream(
        &self,
        claim: &StreamClaim,
        now: SystemTime,
        lease: Duration,
    ) -> Result<Lease, StoreError> {
        let id = claim.key.id();
        let mut streams = lock(&self.streams);
        let previous = streams.get(&id).and_then(|r| r.hls);
        let epoch = match streams.get(&id) {
            None => 1,
            Some(r)
                if r.claimable(now)
                    || r.origin == claim.origin
                    || claim.dead_owner.as_ref() == Some(&r.origin) =>
            {
                r.epoch + 1
            }
            Some(r) => {
                return Err(StoreError::Owned {
                    key: claim.key.clone(),
                    origin: r.origin.clone(),
                });
            }
        };
        streams.insert(
            id,
            StreamRecord {
                key: claim.key.clone(),
                origin: claim.origin.clone(),
                origin_relay: claim.origin_relay.clone(),
                epoch,
                lease_until: now + lease,
                status: StreamStatus::Broadcasting,
                renditions: claim.renditions.clone(),
                started_at: now,
                updated_at: now,
                viewers: Default::default(),
                hls: previous,
            },
        );
        Ok(Lease {
            key: claim.key.clone(),
            origin: claim.origin.clone(),
            epoch,
            hls: previous,
        })
    }

    async fn renew_stream(
        &self,
        lease: &Lease,
        update: &StreamUpdate,
        now: SystemTime,
        lease_len: Duration,
    ) -> Result<(), StoreError> {
        let mut streams = lock(&self.streams);
        match streams.get_mut(&lease.key.id()) {
            Some(r)
                if r.epoch == lease.epoch
                    && r.origin == lease.origin
                    && r.status == StreamStatus::Broadcasting =>
            {
                r.lease_until = now + lease_len;
                r.updated_at = now;
                r.viewers = update.viewers;
                if update.hls.is_some() {
                    r.hls = update.hls;
                }
                if let Some(renditions) = &update.renditions {
                    r.renditions = renditions.clone();
                }
                Ok(())
            }
            _ => Err(StoreError::LeaseLost {
                key: lease.key.clone(),
                epoch: lease.epoch,
            }),
        }
    }

    async fn release_stream(&self, lease: &Lease, now: SystemTime) -> Result<(), StoreError> {
        let mut streams = lock(&self.streams);
        match streams.get_mut(&lease.key.id()) {
            Some(r) if r.epoch == lease.epoch && r.origin == lease.origin => {
                r.status = StreamStatus::Finished;
                r.lease_until = now;
                r.updated_at = now;
                Ok(())
            }
            _ => Err(StoreError::LeaseLost {
                key: lease.key.clone(),
                epoch: lease.epoch,
            }),
        }
    }

    async fn stream(&self, key: &StreamKey) -> Result<Option<StreamRecord>, StoreError> {
        Ok(lock(&self.streams).get(&key.id()).cloned())
    }

    async fn streams(
        &self,
        app: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let streams = lock(&self.streams);
        Ok(streams
            .values()
            .filter(|r| app.is_none_or(|a| r.key.app == a))
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn stream_count(&self, app: Option<&str>) -> Result<u64, StoreError> {
        Ok(lock(&self.streams)
            .values()
            .filter(|r| app.is_none_or(|a| r.key.app == a))
            .count() as u64)
    }

    async fn create_stream(&self, key: &StreamKey, now: SystemTime) -> Result<bool, StoreError> {
        let mut streams = lock(&self.streams);
        match streams.entry(key.id()) {
            std::collections::btree_map::Entry::Occupied(_) => Ok(false),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(StreamRecord::created(key.clone(), now));
                Ok(true)
            }
        }
    }

    async fn stop_stream(&self, key: &StreamKey, now: SystemTime) -> Result<bool, StoreError> {
        let mut streams = lock(&self.streams);
        match streams.get_mut(&key.id()) {
            Some(r) if r.effective_status(now) == StreamStatus::Broadcasting => {
                r.status = StreamStatus::Finished;
                r.epoch += 1;
                r.lease_until = now;
                r.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_stream(&self, key: &StreamKey) -> Result<bool, StoreError> {
        Ok(lock(&self.streams).remove(&key.id()).is_some())
    }

    async fn live_stream_count(
        &self,
        app: Option<&str>,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        Ok(lock(&self.streams)
            .values()
            .filter(|r| app.is_none_or(|a| r.key.app == a))
            .filter(|r| r.effective_status(now) == StreamStatus::Broadcasting)
            .count() as u64)
    }
}
