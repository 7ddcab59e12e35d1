//! `MongoAdStore`: the `AdStore` port on MongoDB, so that a peer can run on MongoDB alone.
//! Several nodes may share the database: every record is namespaced by node id.
//!
//! Layout (two collections of the configured database):
//! - `advertisements`: `{_id: "{node_id}:local:{register_id}" | "{node_id}:remote:{peer_id}:{register_id}",
//!   ad: <JSON of Advertisement>}`;
//! - `advertisement_pool_meta`: `{_id: node_id, meta: <JSON of PoolMeta>}`.
//!
//! Values are the same JSON as in Redis and redb (lossless: a generation or a version above
//! 2^63 has no BSON integer). A node's ads are one `_id` range (`{node_id}:` up to
//! `{node_id};`, node ids hold no `:`), read through the `_id` index: no other index is needed.
//!
//! A batch is one transaction (see `MongoConnection::transaction`): first the meta record is
//! replaced with `findOneAndReplace` returning the record it replaced (upserted only by a batch
//! of everything, so a batch of changes never recreates a lost record: the generation rule),
//! then the deletes go as `delete` commands of one statement per key (`{q: {_id}, limit: 1}`)
//! and the puts as `update` commands of one replace-upsert statement per ad, up to
//! `STATEMENTS_PER_COMMAND` statements each. MongoDB applies all of it or nothing, and the
//! record read is the one the batch replaced, whatever other writers did: two writers conflict
//! on the meta record and one of them runs again. A batch of 10,000 puts is one transaction of
//! a dozen commands. (One `deleteMany` with a 10,000-key `$in` took minutes on the stand-in.)
//!
//! No expiry: MongoDB's TTL indexes delete on the server's clock about once a minute, and the
//! pool decides liveness itself (the clock rule); records live until the pool deletes them, as
//! in redb. Deliberately not done here: deciding what to write (the pool does), deleting
//! undecodable records (they are reported in `skipped` and overwritten when the pool writes
//! the same key again), and connection management beyond `MongoConnection`.

use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tracing::warn;

use herald_actors::ports::{AdBatch, AdStore, BatchScope, StoreError, StoredPool};
use herald_messages::{AdKey, AdSource, Advertisement, NodeId, PoolMeta};

use super::mongo_connection::{Failure, MongoConnection, MongoOpenError, Step, Timed};
use crate::config::MongoConfig;

/// Collection of the ads of every node.
pub const ADS_COLLECTION: &str = "advertisements";
/// Collection of every node's meta record.
pub const META_COLLECTION: &str = "advertisement_pool_meta";

/// The ads of one node in MongoDB. Cheap to share (`Arc<dyn AdStore>`).
pub struct MongoAdStore {
    connection: MongoConnection,
    node_id: NodeId,
    description: String,
    /// Set once both collections exist (made on first use, retried until they are).
    created: OnceCell<()>,
}

impl MongoAdStore {
    /// Checks the URL and builds the client; does not connect (the first call does).
    pub async fn open(config: &MongoConfig, node_id: &NodeId) -> Result<Self, MongoOpenError> {
        let connection = MongoConnection::open(config).await?;
        let description = format!("{} (node {node_id})", connection.describe());
        Ok(Self {
            connection,
            node_id: node_id.clone(),
            description,
            created: OnceCell::new(),
        })
    }

    /// Creates the collections before the first transaction.
    async fn ready(&self) -> Result<(), StoreError> {
        self.created
            .get_or_try_init(|| async {
                let create = async {
                    self.connection.ensure_collection(ADS_COLLECTION).await?;
                    self.connection.ensure_collection(META_COLLECTION).await
                };
                self.connection.timed(create).await.map_err(store_error)
            })
            .await
            .map(|_| ())
    }

    /// The filter of this node's ads: its `_id` range.
    fn node_range(&self) -> Document {
        doc! { "_id": { "$gte": format!("{}:", self.node_id), "$lt": format!("{};", self.node_id) } }
    }
}

#[async_trait]
impl AdStore for MongoAdStore {
    async fn load(&self) -> Result<StoredPool, StoreError> {
        let ads = self.connection.collection(ADS_COLLECTION);
        let meta = self.connection.collection(META_COLLECTION);
        let read = async {
            let records: Vec<Document> = ads.find(self.node_range()).await?.try_collect().await?;
            let meta = meta.find_one(doc! { "_id": self.node_id.as_str() }).await?;
            Ok((records, meta))
        };
        let (records, meta) = self.connection.timed(read).await.map_err(store_error)?;
        let mut pool = StoredPool::default();
        pool.ads.reserve(records.len());
        for record in &records {
            let key = match record.get("_id") {
                Some(Bson::String(key)) => key.as_str(),
                other => {
                    pool.skipped.push(format!("{other:?}"));
                    continue;
                }
            };
            match decode::<Advertisement>(record, "ad") {
                Some(ad) if ad_key(&self.node_id, &ad.key()) == key => pool.ads.push(ad),
                _ => {
                    warn!(%key, "undecodable or misplaced advertisement record; skipped");
                    pool.skipped.push(key.to_owned());
                }
            }
        }
        if let Some(record) = meta {
            match decode::<PoolMeta>(&record, "meta") {
                Some(found) => pool.meta = Some(found),
                None => {
                    warn!(node_id = %self.node_id, "undecodable pool meta record; skipped");
                    pool.skipped
                        .push(format!("{META_COLLECTION}:{}", self.node_id));
                }
            }
        }
        Ok(pool)
    }

    /// `expiry` is not used: see the module doc (no expiry; the pool decides liveness).
    async fn write(
        &self,
        batch: &AdBatch<'_>,
        _expiry: Duration,
    ) -> Result<Option<PoolMeta>, StoreError> {
        self.ready().await?;
        let encoded = EncodedBatch::new(&self.node_id, batch);
        let previous = self
            .connection
            .transaction(&(self, encoded), |session, (store, batch)| {
                async move {
                    let previous = store
                        .connection
                        .collection(META_COLLECTION)
                        .find_one_and_replace(
                            doc! { "_id": store.node_id.as_str() },
                            batch.meta.clone(),
                        )
                        .upsert(batch.scope == BatchScope::Everything)
                        .return_document(ReturnDocument::Before)
                        .session(&mut *session)
                        .await?;
                    let database = store.connection.database();
                    for chunk in batch.deletes.chunks(STATEMENTS_PER_COMMAND) {
                        let statements: Vec<Document> = chunk
                            .iter()
                            .map(|key| doc! { "q": { "_id": key }, "limit": 1 })
                            .collect();
                        let command = doc! { "delete": ADS_COLLECTION, "deletes": statements };
                        let reply = database.run_command(command).session(&mut *session).await?;
                        refuse_write_errors(&reply)?;
                    }
                    for chunk in batch.puts.chunks(STATEMENTS_PER_COMMAND) {
                        let statements: Vec<Document> = chunk
                            .iter()
                            .map(|(key, record)| {
                                doc! { "q": { "_id": key }, "u": record.clone(), "upsert": true }
                            })
                            .collect();
                        let command = doc! { "update": ADS_COLLECTION, "updates": statements };
                        let reply = database.run_command(command).session(&mut *session).await?;
                        refuse_write_errors(&reply)?;
                    }
                    Ok(Step::Commit(previous))
                }
                .boxed()
            })
            .await
            .map_err(store_error)?;
        // A record that does not decode is as good as none: the pool writes everything again,
        // which replaces it.
        Ok(previous.and_then(|record| decode::<PoolMeta>(&record, "meta")))
    }

    async fn read_meta(&self) -> Result<Option<PoolMeta>, StoreError> {
        let meta = self.connection.collection(META_COLLECTION);
        let found = self
            .connection
            .timed(meta.find_one(doc! { "_id": self.node_id.as_str() }))
            .await
            .map_err(store_error)?;
        Ok(found.and_then(|record| decode::<PoolMeta>(&record, "meta")))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Statements per `delete` or `update` command (well under MongoDB's 100,000 and 48 MB).
const STATEMENTS_PER_COMMAND: usize = 1_000;

/// A batch as MongoDB documents: the keys to delete, the puts (key and document), the meta
/// record.
struct EncodedBatch {
    deletes: Vec<String>,
    puts: Vec<(String, Document)>,
    meta: Document,
    scope: BatchScope,
}

impl EncodedBatch {
    fn new(node_id: &NodeId, batch: &AdBatch<'_>) -> Self {
        let deletes = batch
            .deletes
            .iter()
            .map(|key| ad_key(node_id, key))
            .collect();
        let puts = batch
            .puts
            .iter()
            .map(|ad| {
                let key = ad_key(node_id, &ad.key());
                let json = serde_json::to_string(ad).expect("an advertisement encodes as JSON");
                let record = doc! { "_id": key.as_str(), "ad": json };
                (key, record)
            })
            .collect();
        let meta = serde_json::to_string(&batch.meta).expect("the pool meta encodes as JSON");
        Self {
            deletes,
            puts,
            meta: doc! { "_id": node_id.as_str(), "meta": meta },
            scope: batch.scope,
        }
    }
}

/// The `_id` of an ad: `{node_id}:local:{register_id}` or `{node_id}:remote:{peer}:{register_id}`.
fn ad_key(node_id: &NodeId, key: &AdKey) -> String {
    match &key.source {
        AdSource::Local => format!("{node_id}:local:{}", key.register_id),
        AdSource::Remote(peer) => format!("{node_id}:remote:{peer}:{}", key.register_id),
    }
}

/// A `delete` or `update` command answers `ok: 1` even when statements failed: their errors
/// are in `writeErrors`. One is an error of the whole batch (the transaction is aborted).
fn refuse_write_errors(reply: &Document) -> Result<(), mongodb::error::Error> {
    match reply.get_array("writeErrors") {
        Ok(errors) if !errors.is_empty() => Err(mongodb::error::Error::custom(format!(
            "the server refused {} statements of a batch, the first: {}",
            errors.len(),
            errors[0]
        ))),
        _ => Ok(()),
    }
}

/// The JSON text in `field` of `record`, decoded; `None` when absent or undecodable.
fn decode<T: DeserializeOwned>(record: &Document, field: &str) -> Option<T> {
    let text = record.get_str(field).ok()?;
    serde_json::from_str(text).ok()
}

fn store_error(failure: Timed) -> StoreError {
    match failure.classify() {
        Failure::Corrupt(what) => StoreError::Corrupt { what },
        Failure::Transient => StoreError::Unavailable(failure.into_box()),
    }
}

#[cfg(test)]
mod tests {
    use herald_messages::RegisterId;

    use super::*;

    #[test]
    fn keys_fall_in_their_nodes_range_only() {
        let node = NodeId::parse("peer-a").unwrap();
        let rid = RegisterId::from_bytes([7; 16]);
        let local = ad_key(&node, &AdKey::local(rid.clone()));
        let remote = ad_key(
            &node,
            &AdKey::remote(NodeId::parse("peer-b").unwrap(), rid.clone()),
        );
        assert_eq!(local, format!("peer-a:local:{rid}"));
        assert_eq!(remote, format!("peer-a:remote:peer-b:{rid}"));
        let (low, high) = ("peer-a:", "peer-a;");
        for key in [&local, &remote] {
            assert!(low <= key.as_str() && key.as_str() < high, "{key}");
        }
        let longer = ad_key(&NodeId::parse("peer-a-b").unwrap(), &AdKey::local(rid));
        assert!(
            !(low <= longer.as_str() && longer.as_str() < high),
            "{longer}"
        );
    }
}
