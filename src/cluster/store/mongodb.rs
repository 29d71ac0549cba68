//! The MongoDB store: the cluster state in a MongoDB database shared by nodes on several
//! machines (DESIGN.md §4), through the official `mongodb` driver.
//!
//! Two collections hold one document per record: `nodes` (`_id` = node name) and `streams`
//! (`_id` = `{app}/{streamId}`); `records` maps records to documents and back. Leases are
//! compare-and-set in the database itself: a claim is one `findOneAndUpdate` with `upsert`
//! whose filter matches only a claimable record, so the server decides races; renewals and
//! releases are `updateOne`s filtered on the holder and its epoch.
//!
//! Every operation is bounded in time (a dead or hung store fails in seconds, it does not hang
//! a heartbeat); the driver reconnects by itself once the server is back. The connection URI
//! carries credentials: it is never logged, and `redact` checks every driver message for
//! them before it leaves this module.

mod records;
mod redact;

use std::fmt;
use std::future::IntoFuture;
use std::time::{Duration, SystemTime};

use ::mongodb::bson::{DateTime, Document, doc};
use ::mongodb::error::{ErrorKind, WriteFailure};
use ::mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use ::mongodb::{Client, Collection, IndexModel};
use async_trait::async_trait;

use super::{Store, StoreError};
use crate::cluster::model::{
    Lease, NodeRecord, StreamClaim, StreamKey, StreamRecord, StreamStatus, StreamUpdate,
};
use crate::config::Secret;
use records::{
    NodeDoc, StreamDoc, epoch_of, from_document, hls_of, status_str, to_bson, to_document,
};
use redact::{redact, uri_secrets};

/// How long an operation waits for a usable server before failing (unless the URI sets
/// `serverSelectionTimeoutMS`): short, so a dead store is reported within a heartbeat or two.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// How long opening one TCP connection may take (unless the URI sets `connectTimeoutMS`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Added to the larger of the two timeouts above to bound a whole operation, retries included.
/// The driver has no socket timeout: without this bound a server that accepts but never
/// answers would hang the caller.
const OPERATION_MARGIN: Duration = Duration::from_secs(2);

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;
/// Period of index-creation retries while the store is down at start.
const INDEX_RETRY: Duration = Duration::from_secs(2);

/// Stores the cluster state in MongoDB.
#[derive(Clone)]
pub struct MongoStore {
    /// The driver's client: a connection pool plus a monitor that reconnects by itself.
    client: Client,
    /// Database name, for `Debug`.
    database: String,
    /// `nodes` collection.
    nodes: Collection<Document>,
    /// `streams` collection.
    streams: Collection<Document>,
    /// Upper bound for one operation (server selection, connection, retries).
    op_timeout: Duration,
    /// Strings that must never leave this module in an error message: the password as written
    /// in the URI and decoded, and the user-info part of the URI.
    secrets: Vec<String>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects to the MongoDB deployment at `uri` and uses `database`, creating the
    /// collections' indexes (idempotent). Fails when the URI is unusable
    /// ([`StoreError::Config`]) or the server cannot be reached or refuses the credentials
    /// ([`StoreError::Unavailable`]); no message ever contains the password.
    ///
    /// `mongodb+srv://` URIs (MongoDB Atlas, and what Ant Media's `change_server_mode.sh`
    /// takes) are resolved with the driver's DNS resolver (SRV and TXT records) when parsed.
    pub async fn connect(uri: &Secret, database: &str) -> Result<MongoStore, StoreError> {
        let uri = uri.expose();
        let secrets = uri_secrets(uri);
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Config {
                reason: "the MongoDB URI cannot be parsed".into(),
                source: Some(redact(e, &secrets)),
            })?;
        let selection = *options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        let connect = *options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
        options.app_name.get_or_insert_with(|| "streamfleet".into());
        let client = Client::with_options(options).map_err(|e| StoreError::Config {
            reason: "the MongoDB client cannot be built from this URI".into(),
            source: Some(redact(e, &secrets)),
        })?;
        let db = client.database(database);
        let store = MongoStore {
            nodes: db.collection("nodes"),
            streams: db.collection("streams"),
            database: database.to_owned(),
            client,
            op_timeout: selection.max(connect) + OPERATION_MARGIN,
            secrets,
        };
        match store.create_indexes().await {
            Ok(()) => {}
            // The store is down right now: start anyway (nodes serve without it and report
            // not-ready) and create the indexes once it answers.
            Err(e @ StoreError::Unavailable { .. }) => {
                tracing::warn!(error = %e, "cluster store unreachable at start; serving anyway, retrying");
                let retry = store.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(INDEX_RETRY).await;
                        match retry.create_indexes().await {
                            Ok(()) => break,
                            Err(StoreError::Unavailable { .. }) => continue,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot create cluster store indexes");
                                break;
                            }
                        }
                    }
                });
            }
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    /// Creates the indexes the queries use; creating an existing index again is a no-op.
    async fn create_indexes(&self) -> Result<(), StoreError> {
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        let streams = [
            // Listing an app's streams in id order.
            index(doc! { "app": 1, "_id": 1 }, "app_id"),
            // Streams of one origin (takeover after a node dies).
            index(doc! { "origin": 1 }, "origin"),
            // Expired leases.
            index(doc! { "lease_until": 1 }, "lease_until"),
        ];
        self.bounded(self.streams.create_indexes(streams)).await?;
        // Dead nodes.
        let nodes = [index(doc! { "last_seen": 1 }, "last_seen")];
        self.bounded(self.nodes.create_indexes(nodes)).await?;
        Ok(())
    }

    /// Runs one driver operation under [`MongoStore::op_timeout`]; every failure becomes
    /// [`StoreError::Unavailable`] with the driver's cause, credentials masked.
    async fn bounded<T>(
        &self,
        op: impl IntoFuture<Output = ::mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        match self.bounded_raw(op).await? {
            Ok(v) => Ok(v),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Like [`MongoStore::bounded`] but hands the driver's error back, for callers that
    /// treat some errors (duplicate keys) as answers.
    async fn bounded_raw<T>(
        &self,
        op: impl IntoFuture<Output = ::mongodb::error::Result<T>>,
    ) -> Result<::mongodb::error::Result<T>, StoreError> {
        tokio::time::timeout(self.op_timeout, op)
            .await
            .map_err(|_| StoreError::Unavailable {
                source: format!("no answer from MongoDB within {:?}", self.op_timeout).into(),
            })
    }

    /// A driver failure as [`StoreError::Unavailable`], credentials masked.
    fn unavailable(&self, e: ::mongodb::error::Error) -> StoreError {
        StoreError::Unavailable {
            source: redact(e, &self.secrets),
        }
    }

    /// Reads all documents a cursor yields, the whole read under one bound.
    async fn collect(
        &self,
        cursor: impl IntoFuture<Output = ::mongodb::error::Result<::mongodb::Cursor<Document>>>,
    ) -> Result<Vec<Document>, StoreError> {
        self.bounded(async {
            let mut cursor = cursor.await?;
            let mut docs = Vec::new();
            while cursor.advance().await? {
                docs.push(cursor.deserialize_current()?);
            }
            Ok(docs)
        })
        .await
    }

    /// The current owner of a stream, for an [`StoreError::Owned`] answer.
    async fn owned(&self, key: &StreamKey) -> Result<StoreError, StoreError> {
        let origin = self
            .stream(key)
            .await?
            .map(|r| r.origin)
            .unwrap_or_default();
        Ok(StoreError::Owned {
            key: key.clone(),
            origin,
        })
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let admin = self.client.database("admin");
        self.bounded(admin.run_command(doc! { "ping": 1 }))
            .await
            .map(drop)
    }

    async fn upsert_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let doc = to_document(&NodeDoc::from(node), &node.name)?;
        self.bounded(
            self.nodes
                .replace_one(doc! { "_id": &node.name }, doc)
                .upsert(true),
        )
        .await
        .map(drop)
    }

    async fn remove_node(&self, name: &str) -> Result<(), StoreError> {
        self.bounded(self.nodes.delete_one(doc! { "_id": name }))
            .await
            .map(drop)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let docs = self
            .collect(self.nodes.find(doc! {}).sort(doc! { "_id": 1 }))
            .await?;
        docs.into_iter()
            .map(|d| from_document::<NodeDoc>(d)?.into_record())
            .collect()
    }

    async fn claim_stream(
        &self,
        claim: &StreamClaim,
        now: SystemTime,
        lease: Duration,
    ) -> Result<Lease, StoreError> {
        let id = claim.key.id();
        let at = DateTime::from_system_time(now);
        let mut fields = to_document(&StreamDoc::claimed(claim, now, lease), &id)?;
        // `_id` comes from the filter on insert and never changes; `epoch` is incremented.
        fields.remove("_id");
        fields.remove("epoch");
        // Matches only a record the claimant may take (the trait's rule); with `upsert`, a
        // missing record is inserted with epoch 1, and an existing record that does not match
        // makes the insert collide on `_id`: the server's duplicate-key error means "owned".
        let mut claimable = vec![
            doc! { "status": status_str(StreamStatus::Finished) },
            doc! { "status": status_str(StreamStatus::Created) },
            doc! { "lease_until": { "$lte": at } },
            doc! { "origin": &claim.origin },
        ];
        if let Some(dead) = &claim.dead_owner {
            claimable.push(doc! { "origin": dead });
        }
        let filter = doc! { "_id": &id, "$or": claimable };
        let update = doc! { "$set": fields, "$inc": { "epoch": 1_i64 } };
        let op = self
            .streams
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .projection(doc! { "epoch": 1, "hls": 1 });
        match self.bounded_raw(op).await? {
            Ok(Some(doc)) => Ok(Lease {
                key: claim.key.clone(),
                origin: claim.origin.clone(),
                epoch: epoch_of(&doc, &id)?,
                hls: hls_of(&doc, &id)?,
            }),
            // Not expected with `upsert`; answer as the losing side of a race would.
            Ok(None) => Err(self.owned(&claim.key).await?),
            Err(e) if is_duplicate_key(&e) => Err(self.owned(&claim.key).await?),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    async fn renew_stream(
        &self,
        lease: &Lease,
        update: &StreamUpdate,
        now: SystemTime,
        lease_len: Duration,
    ) -> Result<(), StoreError> {
        let lost = || StoreError::LeaseLost {
            key: lease.key.clone(),
            epoch: lease.epoch,
        };
        // No stored epoch can exceed i64::MAX, so such a lease cannot be current.
        let epoch = i64::try_from(lease.epoch).map_err(|_| lost())?;
        let id = lease.key.id();
        let mut set = doc! {
            "lease_until": DateTime::from_system_time(now + lease_len),
            "updated_at": DateTime::from_system_time(now),
            "viewers": to_bson(&update.viewers, &id)?,
        };
        if let Some(renditions) = &update.renditions {
            set.insert("renditions", to_bson(renditions, &id)?);
        }
        if let Some(hls) = &update.hls {
            set.insert("hls", to_bson(hls, &id)?);
        }
        let filter = doc! {
            "_id": &id,
            "origin": &lease.origin,
            "epoch": epoch,
            "status": status_str(StreamStatus::Broadcasting),
        };
        let result = self
            .bounded(self.streams.update_one(filter, doc! { "$set": set }))
            .await?;
        if result.matched_count == 1 {
            Ok(())
        } else {
            Err(lost())
        }
    }

    async fn release_stream(&self, lease: &Lease, now: SystemTime) -> Result<(), StoreError> {
        let lost = || StoreError::LeaseLost {
            key: lease.key.clone(),
            epoch: lease.epoch,
        };
        let epoch = i64::try_from(lease.epoch).map_err(|_| lost())?;
        let at = DateTime::from_system_time(now);
        let filter = doc! { "_id": lease.key.id(), "origin": &lease.origin, "epoch": epoch };
        let set = doc! {
            "status": status_str(StreamStatus::Finished),
            "lease_until": at,
            "updated_at": at,
        };
        let result = self
            .bounded(self.streams.update_one(filter, doc! { "$set": set }))
            .await?;
        if result.matched_count == 1 {
            Ok(())
        } else {
            Err(lost())
        }
    }

    async fn stream(&self, key: &StreamKey) -> Result<Option<StreamRecord>, StoreError> {
        let doc = self
            .bounded(self.streams.find_one(doc! { "_id": key.id() }))
            .await?;
        doc.map(|d| from_document::<StreamDoc>(d)?.into_record())
            .transpose()
    }

    async fn streams(
        &self,
        app: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        // MongoDB reads a limit of 0 as "no limit".
        if limit == 0 {
            return Ok(Vec::new());
        }
        let find = self
            .streams
            .find(app_filter(app))
            .sort(doc! { "_id": 1 })
            .skip(offset)
            .limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let docs = self.collect(find).await?;
        docs.into_iter()
            .map(|d| from_document::<StreamDoc>(d)?.into_record())
            .collect()
    }

    async fn stream_count(&self, app: Option<&str>) -> Result<u64, StoreError> {
        self.bounded(self.streams.count_documents(app_filter(app)))
            .await
    }

    async fn create_stream(&self, key: &StreamKey, now: SystemTime) -> Result<bool, StoreError> {
        let id = key.id();
        let record = StreamRecord::created(key.clone(), now);
        let doc = to_document(&StreamDoc::from(&record), &id)?;
        match self.bounded_raw(self.streams.insert_one(doc)).await? {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    async fn stop_stream(&self, key: &StreamKey, now: SystemTime) -> Result<bool, StoreError> {
        let at = DateTime::from_system_time(now);
        let filter = doc! {
            "_id": key.id(),
            "status": status_str(StreamStatus::Broadcasting),
            "lease_until": { "$gt": at },
        };
        let update = doc! {
            "$set": {
                "status": status_str(StreamStatus::Finished),
                "lease_until": at,
                "updated_at": at,
            },
            "$inc": { "epoch": 1_i64 },
        };
        let result = self
            .bounded(self.streams.update_one(filter, update))
            .await?;
        Ok(result.matched_count == 1)
    }

    async fn delete_stream(&self, key: &StreamKey) -> Result<bool, StoreError> {
        let result = self
            .bounded(self.streams.delete_one(doc! { "_id": key.id() }))
            .await?;
        Ok(result.deleted_count == 1)
    }

    async fn live_stream_count(
        &self,
        app: Option<&str>,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let mut filter = app_filter(app);
        filter.insert("status", status_str(StreamStatus::Broadcasting));
        filter.insert(
            "lease_until",
            doc! { "$gt": DateTime::from_system_time(now) },
        );
        self.bounded(self.streams.count_documents(filter)).await
    }
}

/// `{app}` or everything.
fn app_filter(app: Option<&str>) -> Document {
    match app {
        Some(app) => doc! { "app": app },
        None => doc! {},
    }
}

/// Whether the server refused a write because the `_id` exists (error 11000), whether it
/// reports it as a command error (`findAndModify`) or a write error (`update`, `insert`).
fn is_duplicate_key(e: &::mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn srv_uris_and_garbage_are_config_errors_without_the_password() {
        // An SRV URI may not name a port: refused while parsing, before any DNS lookup.
        let srv = Secret::new("mongodb+srv://u:topsecret@cluster0.example.net:27017/");
        match MongoStore::connect(&srv, "db").await {
            Err(e @ StoreError::Config { .. }) => {
                let chain = format!("{e} {e:?}");
                assert!(!chain.contains("topsecret"), "{chain}");
            }
            other => panic!("expected Config, got {other:?}"),
        }
        let bad = Secret::new("mongodb://u:topsecret@host:notaport/");
        match MongoStore::connect(&bad, "db").await {
            Err(e @ StoreError::Config { .. }) => {
                let chain = format!(
                    "{e} {e:?} {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                );
                assert!(!chain.contains("topsecret"), "{chain}");
            }
            other => panic!("expected Config, got {other:?}"),
        }
    }
}
