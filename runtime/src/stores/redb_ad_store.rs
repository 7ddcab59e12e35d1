//! `RedbAdStore`: the pool's ads in a redb file, the embedded default of the peer role. It is
//! what makes *Available Registers* survive a process restart without Redis.
//!
//! Layout (two tables, values are JSON):
//! - `ads`: `{node_id}:local:{register_id}` or `{node_id}:remote:{peer_id}:{register_id}` →
//!   `{"ad": Advertisement, "expiresAt": unix ms}`;
//! - `pool_meta`: `{node_id}` → `{"meta": PoolMeta, "expiresAt": unix ms}`.
//!
//! redb has no TTL: `write` stamps every record with `clock.now() + expiry`, and `load` and
//! `holds_meta` ignore records past it. Expired records of this node are deleted by `load`
//! (best effort, after the read), which is when a pool finds records it did not renew: a running
//! pool renews or deletes everything it wrote. Each `write` is one durable write transaction.
//! All redb work runs on tokio's blocking pool; redb's error types never leave this file.
//!
//! Deliberately not done here: deciding what to write or renew (the pool does), deleting
//! undecodable records (they are reported in `skipped` on every load and overwritten when the
//! pool writes the same key again), and touching the records of other node ids in the file,
//! expired or not.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use herald_actors::ports::{AdBatch, AdStore, Clock, StoreError, StoredPool};
use herald_messages::{AdKey, AdSource, Advertisement, NodeId, PoolMeta, Timestamp};

use super::redb_file::{self, RedbFailure, RedbOpenError};

/// The pool's ads in a redb file, namespaced by node id.
pub struct RedbAdStore {
    db: Arc<Database>,
    path: PathBuf,
    node_id: NodeId,
    clock: Arc<dyn Clock>,
}

impl RedbAdStore {
    /// Opens (and creates, with its directory) the redb file at `path`.
    pub async fn open(
        path: &Path,
        node_id: &NodeId,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RedbOpenError> {
        let db = redb_file::open(path, create_tables).await?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            node_id: node_id.clone(),
            clock,
        })
    }

    /// Runs `work` on the blocking pool with the database.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|err| StoreError::Unavailable(Box::new(err)))?
    }
}

#[async_trait]
impl AdStore for RedbAdStore {
    async fn load(&self) -> Result<StoredPool, StoreError> {
        let node_id = self.node_id.clone();
        let now = self.clock.now();
        self.blocking(move |db| {
            let found = read_pool(db, &node_id, now).map_err(store_error)?;
            if !found.expired.is_empty() {
                match delete_expired(db, &found.expired, now) {
                    Ok(deleted) => {
                        debug!(%node_id, deleted, "expired advertisement records deleted")
                    }
                    Err(err) => {
                        warn!(%node_id, %err, "cannot delete expired advertisement records")
                    }
                }
            }
            Ok(found.pool)
        })
        .await
    }

    async fn write(&self, batch: &AdBatch<'_>, expiry: Duration) -> Result<(), StoreError> {
        // Encoded here, where the batch's borrowed ads live; committed on the blocking pool.
        let encoded = EncodedBatch::new(
            &self.node_id,
            batch,
            self.clock.now().saturating_add(expiry),
        );
        self.blocking(move |db| encoded.commit(db).map_err(store_error))
            .await
    }

    async fn holds_meta(&self) -> Result<bool, StoreError> {
        let node_id = self.node_id.clone();
        let now = self.clock.now();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(store_error)?;
            let table = txn.open_table(META).map_err(store_error)?;
            let Some(value) = table.get(node_id.as_str()).map_err(store_error)? else {
                return Ok(false);
            };
            // An undecodable meta record counts as lost: the pool then writes everything again,
            // which replaces it.
            let held = serde_json::from_slice::<MetaRecord<PoolMeta>>(value.value())
                .is_ok_and(|record| record.expires_at > now);
            Ok(held)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("redb:{}", self.path.display())
    }
}

const ADS: TableDefinition<&str, &[u8]> = TableDefinition::new("ads");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("pool_meta");

/// A stored ad (`A` is `&Advertisement` when writing, `Advertisement` when reading).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdRecord<A> {
    ad: A,
    expires_at: Timestamp,
}

/// The stored meta record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaRecord<M> {
    meta: M,
    expires_at: Timestamp,
}

/// What one read of the file found.
struct Found {
    pool: StoredPool,
    /// Keys of this node's records past their expiry.
    expired: Vec<String>,
}

fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(ADS)?;
    txn.open_table(META)?;
    Ok(())
}

/// The key of an ad: `{node_id}:local:{register_id}` or `{node_id}:remote:{peer}:{register_id}`.
fn ad_key(node_id: &NodeId, key: &AdKey) -> String {
    match &key.source {
        AdSource::Local => format!("{node_id}:local:{}", key.register_id),
        AdSource::Remote(peer) => format!("{node_id}:remote:{peer}:{}", key.register_id),
    }
}

/// Every key of `node_id`'s ads: those starting with `{node_id}:`. Node ids cannot contain `:`,
/// so `node-a` never sees `node-a-b`'s records; `;` is the character after `:`.
fn node_range(node_id: &NodeId) -> Range<String> {
    format!("{node_id}:")..format!("{node_id};")
}

fn read_pool(db: &Database, node_id: &NodeId, now: Timestamp) -> Result<Found, redb::Error> {
    let txn = db.begin_read()?;
    let ads = txn.open_table(ADS)?;
    let mut found = Found {
        pool: StoredPool::default(),
        expired: Vec::new(),
    };
    let range = node_range(node_id);
    for entry in ads.range(range.start.as_str()..range.end.as_str())? {
        let (stored_key, value) = entry?;
        let key = stored_key.value();
        match serde_json::from_slice::<AdRecord<Advertisement>>(value.value()) {
            Ok(record) if ad_key(node_id, &record.ad.key()) != key => {
                warn!(%key, "advertisement record does not match its key; skipped");
                found.pool.skipped.push(key.to_owned());
            }
            Ok(record) if record.expires_at <= now => found.expired.push(key.to_owned()),
            Ok(record) => found.pool.ads.push(record.ad),
            Err(err) => {
                warn!(%key, %err, "undecodable advertisement record; skipped");
                found.pool.skipped.push(key.to_owned());
            }
        }
    }
    let meta = txn.open_table(META)?;
    if let Some(value) = meta.get(node_id.as_str())? {
        match serde_json::from_slice::<MetaRecord<PoolMeta>>(value.value()) {
            Ok(record) if record.expires_at > now => found.pool.meta = Some(record.meta),
            Ok(_) => {}
            Err(err) => {
                warn!(%node_id, %err, "undecodable pool meta record; skipped");
                found.pool.skipped.push(format!("pool_meta:{node_id}"));
            }
        }
    }
    Ok(found)
}

/// Deletes the records at `keys` that are still expired (a write may have renewed one since the
/// read). Returns how many went.
fn delete_expired(db: &Database, keys: &[String], now: Timestamp) -> Result<usize, redb::Error> {
    let txn = db.begin_write()?;
    let mut deleted = 0;
    {
        let mut ads = txn.open_table(ADS)?;
        for key in keys {
            let still_expired = match ads.get(key.as_str())? {
                Some(value) => serde_json::from_slice::<AdRecord<Advertisement>>(value.value())
                    .is_ok_and(|record| record.expires_at <= now),
                None => false,
            };
            if still_expired {
                ads.remove(key.as_str())?;
                deleted += 1;
            }
        }
    }
    txn.commit()?;
    Ok(deleted)
}

/// A batch as redb rows: puts, deletes and the meta record of one node.
struct EncodedBatch {
    node_id: NodeId,
    puts: Vec<(String, Vec<u8>)>,
    deletes: Vec<String>,
    meta: Vec<u8>,
}

impl EncodedBatch {
    fn new(node_id: &NodeId, batch: &AdBatch<'_>, expires_at: Timestamp) -> Self {
        let puts = batch
            .puts
            .iter()
            .map(|ad| {
                let record = AdRecord {
                    ad: *ad,
                    expires_at,
                };
                let value = serde_json::to_vec(&record).expect("an advertisement encodes as JSON");
                (ad_key(node_id, &ad.key()), value)
            })
            .collect();
        let deletes = batch
            .deletes
            .iter()
            .map(|key| ad_key(node_id, key))
            .collect();
        let meta = MetaRecord {
            meta: &batch.meta,
            expires_at,
        };
        Self {
            node_id: node_id.clone(),
            puts,
            deletes,
            meta: serde_json::to_vec(&meta).expect("the pool meta encodes as JSON"),
        }
    }

    /// One write transaction: puts, then deletes, then the meta record; committed durably
    /// (redb's default durability).
    fn commit(&self, db: &Database) -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        {
            let mut ads = txn.open_table(ADS)?;
            for (key, value) in &self.puts {
                ads.insert(key.as_str(), value.as_slice())?;
            }
            for key in &self.deletes {
                ads.remove(key.as_str())?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(self.node_id.as_str(), self.meta.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }
}

fn store_error(err: impl Into<redb::Error>) -> StoreError {
    match redb_file::classify(err) {
        RedbFailure::Corrupt(what) => StoreError::Corrupt { what },
        RedbFailure::Transient(err) => StoreError::Unavailable(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use herald_actors::TokioClock;
    use herald_messages::{RegisterId, Snapshot, SyncState};

    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    fn register(n: u32) -> RegisterId {
        let mut bytes = [0; 16];
        bytes[12..].copy_from_slice(&n.to_be_bytes());
        RegisterId::from_bytes(bytes)
    }

    fn ad(source: AdSource, n: u32) -> Advertisement {
        Advertisement {
            register_id: register(n),
            source,
            sync_state: SyncState::Active,
            is_public: true,
            latest_version: u64::from(n),
            latest_docket_version: 1,
            name: Some(format!("register {n}")),
            description: None,
            refreshed_at: Timestamp::from_unix_millis(1_000),
            changed_at: Timestamp::from_unix_millis(900),
        }
    }

    fn local(n: u32) -> Advertisement {
        ad(AdSource::Local, n)
    }

    fn remote(peer: &str, n: u32) -> Advertisement {
        ad(AdSource::Remote(node(peer)), n)
    }

    fn meta(seq: u64) -> PoolMeta {
        PoolMeta {
            last_snapshot: Some(Snapshot {
                seq,
                read_at: Timestamp::from_unix_millis(5),
            }),
        }
    }

    fn puts(ads: &[Advertisement], meta: PoolMeta) -> AdBatch<'_> {
        AdBatch {
            puts: ads.iter().collect(),
            deletes: Vec::new(),
            meta,
        }
    }

    fn sorted(mut ads: Vec<Advertisement>) -> Vec<Advertisement> {
        ads.sort_by_key(Advertisement::key);
        ads
    }

    const HOUR: Duration = Duration::from_secs(3_600);

    async fn open(path: &Path, node_id: &str) -> RedbAdStore {
        RedbAdStore::open(path, &node(node_id), Arc::new(TokioClock::new()))
            .await
            .unwrap()
    }

    fn raw_insert(store: &RedbAdStore, key: &str, value: &[u8]) {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(ADS).unwrap().insert(key, value).unwrap();
        txn.commit().unwrap();
    }

    fn raw_keys(store: &RedbAdStore) -> Vec<String> {
        let txn = store.db.begin_read().unwrap();
        let table = txn.open_table(ADS).unwrap();
        table
            .iter()
            .unwrap()
            .map(|entry| entry.unwrap().0.value().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn round_trip_of_local_and_remote_ads_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("ads.redb"), "node-a").await;
        assert_eq!(store.load().await.unwrap(), StoredPool::default());
        assert!(!store.holds_meta().await.unwrap());

        let ads = vec![local(1), local(2), remote("peer-b", 1), remote("peer-c", 3)];
        store.write(&puts(&ads, meta(7)), HOUR).await.unwrap();

        let loaded = store.load().await.unwrap();
        assert_eq!(sorted(loaded.ads), sorted(ads));
        assert_eq!(loaded.meta, Some(meta(7)));
        assert!(loaded.skipped.is_empty());
        assert!(store.holds_meta().await.unwrap());
        assert_eq!(
            raw_keys(&store),
            [
                format!("node-a:local:{}", register(1)),
                format!("node-a:local:{}", register(2)),
                format!("node-a:remote:peer-b:{}", register(1)),
                format!("node-a:remote:peer-c:{}", register(3)),
            ]
        );
        assert!(
            store.describe().starts_with("redb:"),
            "{}",
            store.describe()
        );
        assert!(
            store.describe().ends_with("ads.redb"),
            "{}",
            store.describe()
        );
    }

    #[tokio::test]
    async fn puts_overwrite_and_deletes_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("ads.redb"), "node-a").await;
        store
            .write(
                &puts(&[local(1), local(2), remote("peer-b", 1)], meta(1)),
                HOUR,
            )
            .await
            .unwrap();

        let mut updated = local(2);
        updated.latest_version = 99;
        let deletes = [
            AdKey::local(register(1)),
            AdKey::remote(node("peer-b"), register(1)),
            AdKey::local(register(42)), // never stored: deleting it is no error
        ];
        let batch = AdBatch {
            puts: vec![&updated],
            deletes: deletes.iter().collect(),
            meta: meta(2),
        };
        store.write(&batch, HOUR).await.unwrap();

        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.ads, vec![updated]);
        assert_eq!(loaded.meta, Some(meta(2)));
    }

    /// The bug this project fixes: a restarted node showed no advertisements.
    #[tokio::test]
    async fn data_survives_closing_and_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("dir").join("ads.redb");
        let ads = vec![local(1), remote("peer-b", 2)];
        {
            let store = open(&path, "node-a").await;
            store.write(&puts(&ads, meta(3)), HOUR).await.unwrap();
        }
        let reopened = open(&path, "node-a").await;
        let loaded = reopened.load().await.unwrap();
        assert_eq!(sorted(loaded.ads), sorted(ads));
        assert_eq!(loaded.meta, Some(meta(3)));
        assert!(reopened.holds_meta().await.unwrap());
    }

    #[tokio::test]
    async fn a_second_open_of_a_file_in_use_fails_instead_of_sharing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ads.redb");
        let _first = open(&path, "node-a").await;
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let second = RedbAdStore::open(&path, &node("node-a"), clock).await;
        assert!(matches!(second, Err(RedbOpenError::Open { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_records_are_ignored_then_deleted_by_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("ads.redb"), "node-a").await;
        store
            .write(&puts(&[local(1)], meta(1)), Duration::from_secs(60))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        store
            .write(&puts(&[local(2)], meta(2)), Duration::from_secs(60))
            .await
            .unwrap();

        tokio::time::advance(Duration::from_secs(31)).await; // local(1) is 61 s old
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.ads, vec![local(2)]);
        assert_eq!(loaded.meta, Some(meta(2)));
        assert!(store.holds_meta().await.unwrap());
        assert_eq!(
            raw_keys(&store),
            [format!("node-a:local:{}", register(2))],
            "load deletes the expired record"
        );

        tokio::time::advance(Duration::from_secs(30)).await; // everything is 60 s old or more
        assert_eq!(store.load().await.unwrap(), StoredPool::default());
        assert!(!store.holds_meta().await.unwrap());
        assert!(raw_keys(&store).is_empty());
    }

    #[tokio::test]
    async fn two_node_ids_in_one_file_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ads.redb");
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let a = RedbAdStore::open(&path, &node("node-a"), Arc::clone(&clock))
            .await
            .unwrap();
        // A second node id sharing the file, through the same database (redb opens a file once).
        let a_b = RedbAdStore {
            db: Arc::clone(&a.db),
            path: path.clone(),
            node_id: node("node-a-b"),
            clock,
        };
        a.write(&puts(&[local(1)], meta(1)), HOUR).await.unwrap();
        assert!(!a_b.holds_meta().await.unwrap());
        assert_eq!(a_b.load().await.unwrap(), StoredPool::default());

        a_b.write(&puts(&[local(2), remote("node-a", 3)], meta(2)), HOUR)
            .await
            .unwrap();
        let gone = AdKey::local(register(2));
        let batch = AdBatch {
            puts: Vec::new(),
            deletes: vec![&gone],
            meta: meta(3),
        };
        a.write(&batch, HOUR).await.unwrap();

        let of_a = a.load().await.unwrap();
        assert_eq!(of_a.ads, vec![local(1)]);
        assert_eq!(of_a.meta, Some(meta(3)));
        let of_a_b = a_b.load().await.unwrap();
        assert_eq!(
            sorted(of_a_b.ads),
            sorted(vec![local(2), remote("node-a", 3)])
        );
        assert_eq!(of_a_b.meta, Some(meta(2)));
    }

    #[tokio::test]
    async fn undecodable_and_misplaced_records_are_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("ads.redb"), "node-a").await;
        store
            .write(&puts(&[local(1)], meta(1)), HOUR)
            .await
            .unwrap();
        let garbage_key = format!("node-a:local:{}", register(2));
        raw_insert(&store, &garbage_key, b"{not json");
        // A well-formed record stored under another register's key.
        let misplaced_key = format!("node-a:remote:peer-b:{}", register(3));
        let record = AdRecord {
            ad: &local(4),
            expires_at: Timestamp::from_unix_millis(i64::MAX),
        };
        raw_insert(
            &store,
            &misplaced_key,
            &serde_json::to_vec(&record).unwrap(),
        );

        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.ads, vec![local(1)]);
        assert_eq!(loaded.meta, Some(meta(1)));
        assert_eq!(loaded.skipped, vec![garbage_key.clone(), misplaced_key]);

        // The pool writing the key again repairs it.
        store
            .write(&puts(&[local(2)], meta(2)), HOUR)
            .await
            .unwrap();
        let repaired = store.load().await.unwrap();
        assert_eq!(sorted(repaired.ads), vec![local(1), local(2)]);
        assert_eq!(repaired.skipped.len(), 1);
    }

    #[tokio::test]
    async fn an_undecodable_meta_record_reads_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("ads.redb"), "node-a").await;
        store.write(&puts(&[], meta(1)), HOUR).await.unwrap();
        {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("node-a", b"[]".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert!(!store.holds_meta().await.unwrap());
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.meta, None);
        assert_eq!(loaded.skipped, vec!["pool_meta:node-a".to_owned()]);
    }

    #[tokio::test]
    async fn ten_thousand_puts_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ads.redb");
        let ads: Vec<Advertisement> = (0..10_000).map(local).collect();
        {
            let store = open(&path, "node-a").await;
            store.write(&puts(&ads, meta(1)), HOUR).await.unwrap();
        }
        let loaded = open(&path, "node-a").await.load().await.unwrap();
        assert_eq!(loaded.ads.len(), 10_000);
        assert_eq!(sorted(loaded.ads), sorted(ads));
    }
}
