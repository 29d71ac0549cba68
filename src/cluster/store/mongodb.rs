//! The MongoDB store: the cluster state in a MongoDB database shared by nodes on several
//! machines (DESIGN.md §4), through the official `mongodb` driver.
//!
//! Two collections hold one document per record: `nodes` (`_id` = node name) and `streams`
//! (`_id` = `{app}/{streamId}`). Records go out as BSON documents built from private serde
//! mirrors ([`NodeDoc`], [`StreamDoc`]) with dates as BSON dates, and come back through the
//! same mirrors, so a document another program broke surfaces as [`StoreError::Malformed`]
//! naming its `_id`. Leases are compare-and-set in the database itself: a claim is one
//! `findOneAndUpdate` with `upsert` whose filter matches only a claimable record, so the server
//! decides races; renewals and releases are `updateOne`s filtered on the holder and its epoch.
//!
//! Every operation is bounded in time (a dead store fails in seconds, it does not hang a
//! heartbeat); the driver reconnects by itself once the server is back. The connection URI
//! carries credentials: it is never logged, and every driver message is checked for them
//! before it leaves this module.

use std::fmt;
use std::future::IntoFuture;
use std::time::{Duration, SystemTime};

use ::mongodb::bson::{self, Bson, DateTime, Document, doc};
use ::mongodb::error::{ErrorKind, WriteFailure};
use ::mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use ::mongodb::{Client, Collection, IndexModel};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::cluster::model::{
    Lease, NodeRecord, NodeState, Rendition, StreamClaim, StreamKey, StreamRecord, StreamStatus,
    StreamUpdate, Viewers,
};
use crate::config::{Role, Secret};

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

/// Stores the cluster state in MongoDB.
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
        f.debug_struct("MongoStore").field("database", &self.database).finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects to the MongoDB deployment at `uri` and uses `database`, creating the
    /// collections' indexes (idempotent). Fails when the URI is unusable
    /// ([`StoreError::Config`]) or the server cannot be reached or refuses the credentials
    /// ([`StoreError::Unavailable`]); no message ever contains the password.
    ///
    /// `mongodb+srv://` URIs are refused: this build has no DNS resolver for SRV records.
    pub async fn connect(uri: &Secret, database: &str) -> Result<MongoStore, StoreError> {
        let uri = uri.expose();
        let secrets = uri_secrets(uri);
        if uri.starts_with("mongodb+srv://") {
            return Err(StoreError::Config {
                reason: "mongodb+srv:// URIs need DNS SRV lookups, which this build does not include; \
                         list the hosts in a mongodb:// URI instead"
                    .into(),
                source: None,
            });
        }
        let mut options = ClientOptions::parse(uri).await.map_err(|e| StoreError::Config {
            reason: "the MongoDB URI cannot be parsed".into(),
            source: Some(redact(e, &secrets)),
        })?;
        let selection = *options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
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
        store.create_indexes().await?;
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
        tokio::time::timeout(self.op_timeout, op).await.map_err(|_| StoreError::Unavailable {
            source: format!("no answer from MongoDB within {:?}", self.op_timeout).into(),
        })
    }

    /// A driver failure as [`StoreError::Unavailable`], credentials masked.
    fn unavailable(&self, e: ::mongodb::error::Error) -> StoreError {
        StoreError::Unavailable { source: redact(e, &self.secrets) }
    }

    /// Reads all documents a cursor yields.
    async fn collect(
        &self,
        cursor: impl IntoFuture<Output = ::mongodb::error::Result<::mongodb::Cursor<Document>>>,
    ) -> Result<Vec<Document>, StoreError> {
        let deadline = tokio::time::Instant::now() + self.op_timeout;
        let fetch = async {
            let mut cursor = cursor.await?;
            let mut docs = Vec::new();
            while cursor.advance().await? {
                docs.push(cursor.deserialize_current()?);
            }
            Ok(docs)
        };
        match tokio::time::timeout_at(deadline, fetch).await {
            Ok(Ok(docs)) => Ok(docs),
            Ok(Err(e)) => Err(self.unavailable(e)),
            Err(_) => Err(StoreError::Unavailable {
                source: format!("no answer from MongoDB within {:?}", self.op_timeout).into(),
            }),
        }
    }

    /// The current owner of a stream, for an [`StoreError::Owned`] answer.
    async fn owned(&self, key: &StreamKey) -> Result<StoreError, StoreError> {
        let origin = self.stream(key).await?.map(|r| r.origin).unwrap_or_default();
        Ok(StoreError::Owned { key: key.clone(), origin })
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let admin = self.client.database("admin");
        self.bounded(admin.run_command(doc! { "ping": 1 })).await.map(drop)
    }

    async fn upsert_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let doc = to_document(&NodeDoc::from(node), &node.name)?;
        self.bounded(self.nodes.replace_one(doc! { "_id": &node.name }, doc).upsert(true)).await.map(drop)
    }

    async fn remove_node(&self, name: &str) -> Result<(), StoreError> {
        self.bounded(self.nodes.delete_one(doc! { "_id": name })).await.map(drop)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let docs = self.collect(self.nodes.find(doc! {}).sort(doc! { "_id": 1 })).await?;
        docs.into_iter().map(|d| from_document::<NodeDoc>(d)?.into_record()).collect()
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
        let filter = doc! {
            "_id": &id,
            "$or": [
                { "status": status_str(StreamStatus::Finished) },
                { "lease_until": { "$lte": at } },
                { "origin": &claim.origin },
            ],
        };
        let update = doc! { "$set": fields, "$inc": { "epoch": 1_i64 } };
        let op = self
            .streams
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .projection(doc! { "epoch": 1 });
        match self.bounded_raw(op).await? {
            Ok(Some(doc)) => {
                let epoch = epoch_of(&doc, &id)?;
                Ok(Lease { key: claim.key.clone(), origin: claim.origin.clone(), epoch })
            }
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
        let lost = || StoreError::LeaseLost { key: lease.key.clone(), epoch: lease.epoch };
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
        let filter = doc! {
            "_id": &id,
            "origin": &lease.origin,
            "epoch": epoch,
            "status": status_str(StreamStatus::Broadcasting),
        };
        let result = self.bounded(self.streams.update_one(filter, doc! { "$set": set })).await?;
        if result.matched_count == 1 { Ok(()) } else { Err(lost()) }
    }

    async fn release_stream(&self, lease: &Lease, now: SystemTime) -> Result<(), StoreError> {
        let lost = || StoreError::LeaseLost { key: lease.key.clone(), epoch: lease.epoch };
        let epoch = i64::try_from(lease.epoch).map_err(|_| lost())?;
        let at = DateTime::from_system_time(now);
        let filter = doc! { "_id": lease.key.id(), "origin": &lease.origin, "epoch": epoch };
        let set = doc! {
            "status": status_str(StreamStatus::Finished),
            "lease_until": at,
            "updated_at": at,
        };
        let result = self.bounded(self.streams.update_one(filter, doc! { "$set": set })).await?;
        if result.matched_count == 1 { Ok(()) } else { Err(lost()) }
    }

    async fn stream(&self, key: &StreamKey) -> Result<Option<StreamRecord>, StoreError> {
        let doc = self.bounded(self.streams.find_one(doc! { "_id": key.id() })).await?;
        doc.map(|d| from_document::<StreamDoc>(d)?.into_record()).transpose()
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
        docs.into_iter().map(|d| from_document::<StreamDoc>(d)?.into_record()).collect()
    }

    async fn stream_count(&self, app: Option<&str>) -> Result<u64, StoreError> {
        self.bounded(self.streams.count_documents(app_filter(app))).await
    }
}

/// `{app}` or everything.
fn app_filter(app: Option<&str>) -> Document {
    match app {
        Some(app) => doc! { "app": app },
        None => doc! {},
    }
}

/// The stored spelling of a status (the same as the serde one).
fn status_str(status: StreamStatus) -> &'static str {
    match status {
        StreamStatus::Broadcasting => "broadcasting",
        StreamStatus::Finished => "finished",
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

/// The `epoch` of a returned document.
fn epoch_of(doc: &Document, id: &str) -> Result<u64, StoreError> {
    let malformed = |reason: String| StoreError::Malformed { id: id.to_owned(), reason };
    match doc.get("epoch") {
        Some(Bson::Int64(n)) => u64::try_from(*n).map_err(|_| malformed(format!("negative epoch {n}"))),
        Some(Bson::Int32(n)) => u64::try_from(*n).map_err(|_| malformed(format!("negative epoch {n}"))),
        Some(other) => Err(malformed(format!("epoch is a {:?}, not an integer", other.element_type()))),
        None => Err(malformed("no epoch".into())),
    }
}

/// A mirror as a BSON document; fails only for values BSON cannot hold (u64 past i64::MAX).
fn to_document<T: Serialize>(value: &T, id: &str) -> Result<Document, StoreError> {
    bson::to_document(value).map_err(|e| StoreError::Malformed { id: id.to_owned(), reason: e.to_string() })
}

/// A value as BSON; fails like [`to_document`].
fn to_bson<T: Serialize>(value: &T, id: &str) -> Result<Bson, StoreError> {
    bson::to_bson(value).map_err(|e| StoreError::Malformed { id: id.to_owned(), reason: e.to_string() })
}

/// A stored document read back into its mirror; failures name the document's `_id`.
fn from_document<T: for<'de> Deserialize<'de>>(doc: Document) -> Result<T, StoreError> {
    let id = match doc.get("_id") {
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(no _id)".into(),
    };
    bson::from_document(doc).map_err(|e| StoreError::Malformed { id, reason: e.to_string() })
}

/// A `nodes` document.
#[derive(Debug, Serialize, Deserialize)]
struct NodeDoc {
    /// Node name.
    #[serde(rename = "_id")]
    id: String,
    /// [`Role::as_str`] spelling.
    role: String,
    advertise: String,
    rtmp: Option<String>,
    http: Option<String>,
    relay: Option<String>,
    version: String,
    started_at: DateTime,
    last_seen: DateTime,
    cpu: f64,
    mem_used: u64,
    mem_total: u64,
    streams: u64,
    viewers: u64,
    egress_bps: u64,
    state: NodeState,
}

impl From<&NodeRecord> for NodeDoc {
    fn from(n: &NodeRecord) -> Self {
        NodeDoc {
            id: n.name.clone(),
            role: n.role.as_str().to_owned(),
            advertise: n.advertise.clone(),
            rtmp: n.rtmp.clone(),
            http: n.http.clone(),
            relay: n.relay.clone(),
            version: n.version.clone(),
            started_at: DateTime::from_system_time(n.started_at),
            last_seen: DateTime::from_system_time(n.last_seen),
            cpu: n.cpu,
            mem_used: n.mem_used,
            mem_total: n.mem_total,
            streams: n.streams,
            viewers: n.viewers,
            egress_bps: n.egress_bps,
            state: n.state,
        }
    }
}

impl NodeDoc {
    fn into_record(self) -> Result<NodeRecord, StoreError> {
        let Some(role) = Role::parse(&self.role) else {
            return Err(StoreError::Malformed { id: self.id, reason: format!("unknown role `{}`", self.role) });
        };
        Ok(NodeRecord {
            name: self.id,
            role,
            advertise: self.advertise,
            rtmp: self.rtmp,
            http: self.http,
            relay: self.relay,
            version: self.version,
            started_at: self.started_at.to_system_time(),
            last_seen: self.last_seen.to_system_time(),
            cpu: self.cpu,
            mem_used: self.mem_used,
            mem_total: self.mem_total,
            streams: self.streams,
            viewers: self.viewers,
            egress_bps: self.egress_bps,
            state: self.state,
        })
    }
}

/// A `streams` document.
#[derive(Debug, Serialize, Deserialize)]
struct StreamDoc {
    /// `{app}/{streamId}`.
    #[serde(rename = "_id")]
    id: String,
    /// Stored apart from `_id` so an app's streams can be listed with an index.
    app: String,
    stream_id: String,
    origin: String,
    origin_relay: Option<String>,
    epoch: u64,
    lease_until: DateTime,
    status: StreamStatus,
    renditions: Vec<Rendition>,
    started_at: DateTime,
    updated_at: DateTime,
    viewers: Viewers,
}

impl StreamDoc {
    /// The record a successful claim leaves (its epoch is set by the database).
    fn claimed(claim: &StreamClaim, now: SystemTime, lease: Duration) -> Self {
        StreamDoc {
            id: claim.key.id(),
            app: claim.key.app.clone(),
            stream_id: claim.key.stream_id.clone(),
            origin: claim.origin.clone(),
            origin_relay: claim.origin_relay.clone(),
            epoch: 0,
            lease_until: DateTime::from_system_time(now + lease),
            status: StreamStatus::Broadcasting,
            renditions: claim.renditions.clone(),
            started_at: DateTime::from_system_time(now),
            updated_at: DateTime::from_system_time(now),
            viewers: Viewers::default(),
        }
    }

    fn into_record(self) -> Result<StreamRecord, StoreError> {
        let key = StreamKey::new(self.app, self.stream_id);
        if key.id() != self.id {
            return Err(StoreError::Malformed {
                reason: format!("app and stream_id make `{key}`, not the record's _id"),
                id: self.id,
            });
        }
        Ok(StreamRecord {
            key,
            origin: self.origin,
            origin_relay: self.origin_relay,
            epoch: self.epoch,
            lease_until: self.lease_until.to_system_time(),
            status: self.status,
            renditions: self.renditions,
            started_at: self.started_at.to_system_time(),
            updated_at: self.updated_at.to_system_time(),
            viewers: self.viewers,
        })
    }
}

/// The strings of a URI that would give credentials away: its user-info (`user:password`), and
/// the password both as written and percent-decoded. Splits the way the driver does: options
/// after the first `?`, user-info before the last `@`, password after the first `:`.
fn uri_secrets(uri: &str) -> Vec<String> {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let before_options = after_scheme.split_once('?').map_or(after_scheme, |(head, _)| head);
    let Some((user_info, _)) = before_options.rsplit_once('@') else { return Vec::new() };
    let mut secrets = vec![user_info.to_owned()];
    if let Some((_, password)) = user_info.split_once(':') {
        secrets.push(password.to_owned());
        secrets.push(percent_decode(password));
    }
    secrets.retain(|s| !s.is_empty());
    secrets.dedup();
    secrets
}

/// Decodes `%XX` escapes (invalid ones are kept as written; invalid UTF-8 becomes U+FFFD).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(decoded) if b == b'%' => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A driver error whose text contained a credential, kept as text with the credential masked.
#[derive(Debug)]
struct Redacted(String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// Keeps a driver error as the cause unless its text (`Display` and `Debug`, through its whole
/// source chain) contains a secret; then only a masked copy of its message survives. The
/// driver is careful with credentials, so the masked copy is a safety net, not the usual path.
fn redact(e: ::mongodb::error::Error, secrets: &[String]) -> Box<dyn std::error::Error + Send + Sync> {
    let mut texts = vec![format!("{e:?}")];
    let mut level: Option<&dyn std::error::Error> = Some(&e);
    while let Some(err) = level {
        texts.push(err.to_string());
        level = err.source();
    }
    if !secrets.iter().any(|s| texts.iter().any(|t| t.contains(s.as_str()))) {
        return Box::new(e);
    }
    // Longest first, so the user-info is masked whole before the password inside it.
    let mut by_length: Vec<&String> = secrets.iter().collect();
    by_length.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut message = e.to_string();
    for secret in by_length {
        message = message.replace(secret.as_str(), "***");
    }
    Box::new(Redacted(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::store::conformance::sample_node;

    #[test]
    fn uri_secrets_cover_user_info_and_both_password_spellings() {
        let s = uri_secrets("mongodb://admin:p%40ss%3Aw@db1:27017,db2/?authSource=admin");
        assert_eq!(s, ["admin:p%40ss%3Aw", "p%40ss%3Aw", "p@ss:w"]);
        // Same split as the driver: the last `@` before the options ends the user-info.
        let s = uri_secrets("mongodb://u:a@b@host/db?x=@y");
        assert_eq!(s, ["u:a@b", "a@b"]);
        assert!(uri_secrets("mongodb://host:27017/").is_empty());
        assert_eq!(uri_secrets("mongodb://justuser@host/"), ["justuser"]);
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%20b%2F"), "a b/");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn redaction_masks_secrets_found_anywhere_in_the_error() {
        let secrets = uri_secrets("mongodb://root:hunter2@h/");
        let leaky = ::mongodb::error::Error::custom("bad login root:hunter2 for hunter2".to_owned());
        let out = redact(leaky, &secrets);
        let text = format!("{out} {out:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");

        let clean = ::mongodb::error::Error::custom("connection refused".to_owned());
        let out = redact(clean, &secrets);
        assert!(out.downcast_ref::<::mongodb::error::Error>().is_some(), "clean errors keep their type");
    }

    #[test]
    fn node_documents_round_trip_with_bson_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_780_000_000_123);
        let node = sample_node("n1", t);
        let doc = to_document(&NodeDoc::from(&node), "n1").expect("serialises");
        assert_eq!(doc.get_str("_id"), Ok("n1"));
        assert_eq!(doc.get_str("role"), Ok("edge"));
        assert_eq!(doc.get_str("state"), Ok("active"));
        assert!(matches!(doc.get("last_seen"), Some(Bson::DateTime(_))));
        let back = from_document::<NodeDoc>(doc).and_then(NodeDoc::into_record).expect("reads back");
        assert_eq!(back, node);
    }

    #[test]
    fn stream_documents_store_viewers_and_renditions_as_sub_documents() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let claim = StreamClaim {
            key: StreamKey::new("live", "cam1"),
            origin: "o1".into(),
            origin_relay: Some("10.0.0.5:5090".into()),
            renditions: vec![Rendition {
                name: "source".into(),
                width: 1280,
                height: 720,
                video_bitrate: 2_500_000,
                audio_bitrate: 128_000,
                video_codec: "avc1.64001f".into(),
                audio_codec: "mp4a.40.2".into(),
                frame_rate: 29.97,
            }],
        };
        let doc = to_document(&StreamDoc::claimed(&claim, t, Duration::from_secs(10)), "live/cam1").expect("doc");
        assert_eq!(doc.get_str("_id"), Ok("live/cam1"));
        assert_eq!(doc.get_str("status"), Ok("broadcasting"));
        assert_eq!(doc.get_document("viewers").map(|v| v.len()), Ok(3), "hls, rtmp, edges");
        let renditions = doc.get_array("renditions").expect("array");
        assert!(matches!(renditions.first(), Some(Bson::Document(r)) if r.get_i64("height") == Ok(720)));
        let rec = from_document::<StreamDoc>(doc).and_then(StreamDoc::into_record).expect("reads back");
        assert_eq!(rec.lease_until, t + Duration::from_secs(10));
        assert_eq!(rec.renditions, claim.renditions);
    }

    #[test]
    fn broken_documents_are_malformed_and_named() {
        let doc = doc! { "_id": "live/x", "app": "live", "stream_id": "x", "epoch": "one" };
        match from_document::<StreamDoc>(doc) {
            Err(StoreError::Malformed { id, .. }) => assert_eq!(id, "live/x"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        let t = SystemTime::UNIX_EPOCH;
        let mut doc = to_document(&NodeDoc::from(&sample_node("n2", t)), "n2").expect("doc");
        doc.insert("role", "mixer");
        let err = from_document::<NodeDoc>(doc).and_then(NodeDoc::into_record).expect_err("unknown role");
        assert!(err.to_string().contains("unknown role `mixer`"), "{err}");
        assert!(matches!(epoch_of(&doc! { "epoch": -1_i64 }, "a/b"), Err(StoreError::Malformed { .. })));
        assert_eq!(epoch_of(&doc! { "epoch": 3_i32 }, "a/b").expect("int32 epoch"), 3);
    }

    #[tokio::test]
    async fn srv_uris_and_garbage_are_config_errors_without_the_password() {
        let srv = Secret::new("mongodb+srv://u:topsecret@cluster0.example.net/");
        match MongoStore::connect(&srv, "db").await {
            Err(e @ StoreError::Config { .. }) => assert!(e.to_string().contains("mongodb+srv")),
            other => panic!("expected Config, got {other:?}"),
        }
        let bad = Secret::new("mongodb://u:topsecret@host:notaport/");
        match MongoStore::connect(&bad, "db").await {
            Err(e @ StoreError::Config { .. }) => {
                let chain = format!("{e} {e:?} {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default());
                assert!(!chain.contains("topsecret"), "{chain}");
            }
            other => panic!("expected Config, got {other:?}"),
        }
    }
}
