//! The cluster store: one trait, two implementations.
//!
//! - [`embedded`]: in-process maps shared by the nodes of one process (the one-box default).
//! - [`mongodb`]: the official driver, for nodes on several machines.
//!
//! Ownership of a stream is a lease taken by compare-and-set: [`Store::claim_stream`] succeeds
//! when no valid lease exists (bumping the epoch), [`Store::renew_stream`] and
//! [`Store::release_stream`] succeed only for the holder of the current epoch. Time comes in as
//! an argument so that tests control it and every node's clock is used the same way.

pub mod embedded;
pub mod mongodb;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::model::{Lease, NodeRecord, StreamClaim, StreamKey, StreamRecord, StreamUpdate};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or failed; the operation may be retried.
    #[error("cluster store unavailable: {source}")]
    Unavailable {
        /// What the driver reported (credentials never included).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A live lease held by another node prevents the claim.
    #[error("stream {key} is owned by node {origin} until its lease expires")]
    Owned {
        /// The stream.
        key: StreamKey,
        /// The current owner.
        origin: String,
    },
    /// The lease was taken over (or the record removed): the caller no longer owns the stream.
    #[error("lease on stream {key} (epoch {epoch}) is lost")]
    LeaseLost {
        /// The stream.
        key: StreamKey,
        /// The epoch the caller held.
        epoch: u64,
    },
    /// A stored document could not be read back.
    #[error("cluster store holds a malformed record {id}: {reason}")]
    Malformed {
        /// Record id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The store's settings cannot work (malformed URI, unsupported scheme): retrying will not
    /// help, the configuration must change.
    #[error("cluster store settings are invalid: {reason}")]
    Config {
        /// What is wrong (credentials never included).
        reason: String,
        /// What the driver reported, when it did (credentials never included).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The cluster store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Writes a node's record (insert or replace).
    async fn upsert_node(&self, node: &NodeRecord) -> Result<(), StoreError>;

    /// Removes a node's record (clean shutdown).
    async fn remove_node(&self, name: &str) -> Result<(), StoreError>;

    /// Every node record, sorted by name. Dead ones included: callers judge liveness with
    /// [`NodeRecord::alive`].
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Takes a stream's lease: succeeds when there is no record, the record is finished, its
    /// lease has expired, or the claimant already holds it (a restarted node); bumps the epoch.
    async fn claim_stream(
        &self,
        claim: &StreamClaim,
        now: SystemTime,
        lease: Duration,
    ) -> Result<Lease, StoreError>;

    /// Extends a held lease to `now + lease` and applies `update`.
    async fn renew_stream(
        &self,
        lease: &Lease,
        update: &StreamUpdate,
        now: SystemTime,
        lease_len: Duration,
    ) -> Result<(), StoreError>;

    /// Ends a held lease: the stream becomes `finished`.
    async fn release_stream(&self, lease: &Lease, now: SystemTime) -> Result<(), StoreError>;

    /// One stream record.
    async fn stream(&self, key: &StreamKey) -> Result<Option<StreamRecord>, StoreError>;

    /// Stream records of an app (or all apps), ordered by id, paged.
    async fn streams(
        &self,
        app: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<StreamRecord>, StoreError>;

    /// Number of stream records of an app (or all apps).
    async fn stream_count(&self, app: Option<&str>) -> Result<u64, StoreError>;

    /// Registers a stream before it is published (the REST's `broadcasts/create`): a
    /// [`StreamRecord::created`] record. `false` when a record with this key exists.
    async fn create_stream(&self, key: &StreamKey, now: SystemTime) -> Result<bool, StoreError>;

    /// Ends a live stream whoever holds it (the REST's `stop`): the record becomes `finished`
    /// with a new epoch, so its owner's next renewal fails with [`StoreError::LeaseLost`] and it
    /// drops the publisher. `false` when the stream was not live.
    async fn stop_stream(&self, key: &StreamKey, now: SystemTime) -> Result<bool, StoreError>;

    /// Removes a stream's record (the REST's delete); a live owner loses its lease the same
    /// way as with [`Store::stop_stream`]. `false` when there was no record.
    async fn delete_stream(&self, key: &StreamKey) -> Result<bool, StoreError>;

    /// Streams of an app (or all apps) broadcasting with a valid lease at `now`.
    async fn live_stream_count(
        &self,
        app: Option<&str>,
        now: SystemTime,
    ) -> Result<u64, StoreError>;
}
