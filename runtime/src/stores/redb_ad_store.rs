//! `RedbAdStore`: the pool's ads in a redb file, the embedded default of the peer role. It is
//! what makes *Available Registers* survive a process restart without Redis.
//!
//! Layout (three tables, values are JSON):
//! - `ads`: `{node_id}:local:{register_id}` or `{node_id}:remote:{peer_id}:{register_id}` →
//!   `{"ad": Advertisement}`;
//! - `pool_meta`: `{node_id}` → `{"meta": PoolMeta}`;
//! - `gossip`: the node's gossip records, created here and kept by `RedbGossipStore`
//!   (`gossip_store` hands it this file's database).
//!
//! Each `write` is one durable write transaction that reads the meta record it replaces and
//! returns it; a batch of changes replaces the meta record only when there is one (it never
//! recreates a lost one). All redb work runs on tokio's blocking pool; redb's error types never
//! leave this file.
//!
//! No wall-clock expiry: redb has no clock of its own, and a stamp compared with the wall clock
//! of a later run would make a record's life depend on that clock never being stepped (a clock
//! stepped forward by days between two runs used to expire every stored ad at reload). Records
//! live until the pool deletes them: a running pool deletes what it withdraws, and a reloaded
//! pool decides liveness itself (local ads are authoritative; a reloaded remote ad gets one TTL
//! of grace from the reload). Files written with an `expiresAt` stamp still load; the stamp is
//! ignored.
//!
//! Deliberately not done here: deciding what to write or renew (the pool does), deleting
//! undecodable records (they are reported in `skipped` on every load and overwritten when the
//! pool writes the same key again), and touching the records of other node ids in the file.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tracing::warn;

use herald_actors::ports::{AdBatch, AdStore, BatchScope, StoreError, StoredPool};
use herald_messages::{AdKey, AdSource, Advertisement, NodeId, PoolMeta};

use super::redb_file::{self, RedbOpenError, store_error};
use super::redb_gossip_store::{self, RedbGossipStore};

/// The pool's ads in a redb file, namespaced by node id.
pub struct RedbAdStore {
    db: Arc<Database>,
    path: PathBuf,
    node_id: NodeId,
}

impl RedbAdStore {
    /// Opens (and creates, with its directory) the redb file at `path`.
    pub async fn open(path: &Path, node_id: &NodeId) -> Result<Self, RedbOpenError> {
        let db = redb_file::open(path, create_tables).await?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            node_id: node_id.clone(),
        })
    }

    /// The node's gossip store in the same file (redb opens a file once per process, so the
    /// two share the database; the file closes when both are dropped).
    pub fn gossip_store(&self) -> RedbGossipStore {
        RedbGossipStore::new(Arc::clone(&self.db), &self.path, &self.node_id)
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
        self.blocking(move |db| read_pool(db, &node_id).map_err(store_error))
            .await
    }

    /// `expiry` is not used: see the module doc (no wall-clock expiry).
    async fn write(
        &self,
        batch: &AdBatch<'_>,
        _expiry: Duration,
    ) -> Result<Option<PoolMeta>, StoreError> {
        // Encoded here, where the batch's borrowed ads live; committed on the blocking pool.
        let encoded = EncodedBatch::new(&self.node_id, batch);
        self.blocking(move |db| encoded.commit(db).map_err(store_error))
            .await
    }

    async fn read_meta(&self) -> Result<Option<PoolMeta>, StoreError> {
        let node_id = self.node_id.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(store_error)?;
            let table = txn.open_table(META).map_err(store_error)?;
            let found = table.get(node_id.as_str()).map_err(store_error)?;
            // An undecodable meta record counts as lost: the pool then writes everything again,
            // which replaces it.
            Ok(found.and_then(|value| decode_meta(value.value())))
        })
        .await
    }

    fn describe(&self) -> String {
        format!("redb:{}", self.path.display())
    }
}

const ADS: TableDefinition<&str, &[u8]> = TableDefinition::new("ads");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("pool_meta");

/// A stored ad (`A` is `&Advertisement` when writing, `Advertisement` when reading). Records of
/// earlier versions carry an `expiresAt` too, which is ignored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdRecord<A> {
    ad: A,
}

/// The stored meta record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaRecord<M> {
    meta: M,
}

fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(ADS)?;
    txn.open_table(META)?;
    redb_gossip_store::create_table(txn)
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

fn decode_meta(bytes: &[u8]) -> Option<PoolMeta> {
    serde_json::from_slice::<MetaRecord<PoolMeta>>(bytes)
        .ok()
        .map(|record| record.meta)
}

fn read_pool(db: &Database, node_id: &NodeId) -> Result<StoredPool, redb::Error> {
    let txn = db.begin_read()?;
    let ads = txn.open_table(ADS)?;
    let mut pool = StoredPool::default();
    let range = node_range(node_id);
    for entry in ads.range(range.start.as_str()..range.end.as_str())? {
        let (stored_key, value) = entry?;
        let key = stored_key.value();
        match serde_json::from_slice::<AdRecord<Advertisement>>(value.value()) {
            Ok(record) if ad_key(node_id, &record.ad.key()) != key => {
                warn!(%key, "advertisement record does not match its key; skipped");
                pool.skipped.push(key.to_owned());
            }
            Ok(record) => pool.ads.push(record.ad),
            Err(err) => {
                warn!(%key, %err, "undecodable advertisement record; skipped");
                pool.skipped.push(key.to_owned());
            }
        }
    }
    let meta = txn.open_table(META)?;
    if let Some(value) = meta.get(node_id.as_str())? {
        match decode_meta(value.value()) {
            Some(found) => pool.meta = Some(found),
            None => {
                warn!(%node_id, "undecodable pool meta record; skipped");
                pool.skipped.push(format!("pool_meta:{node_id}"));
            }
        }
    }
    Ok(pool)
}

/// A batch as redb rows: puts, deletes and the meta record of one node.
struct EncodedBatch {
    node_id: NodeId,
    puts: Vec<(String, Vec<u8>)>,
    deletes: Vec<String>,
    meta: Vec<u8>,
    scope: BatchScope,
}

impl EncodedBatch {
    fn new(node_id: &NodeId, batch: &AdBatch<'_>) -> Self {
        let puts = batch
            .puts
            .iter()
            .map(|ad| {
                let value = serde_json::to_vec(&AdRecord { ad: *ad })
                    .expect("an advertisement encodes as JSON");
                (ad_key(node_id, &ad.key()), value)
            })
            .collect();
        let deletes = batch
            .deletes
            .iter()
            .map(|key| ad_key(node_id, key))
            .collect();
        let meta = MetaRecord { meta: &batch.meta };
        Self {
            node_id: node_id.clone(),
            puts,
            deletes,
            meta: serde_json::to_vec(&meta).expect("the pool meta encodes as JSON"),
            scope: batch.scope,
        }
    }

    /// One write transaction: reads the meta record, then puts, deletes and the meta record
    /// (unless this is a batch of changes and there was none); committed durably (redb's
    /// default durability). Returns the meta record read.
    fn commit(&self, db: &Database) -> Result<Option<PoolMeta>, redb::Error> {
        let txn = db.begin_write()?;
        let previous;
        {
            let mut meta = txn.open_table(META)?;
            let existing = meta
                .get(self.node_id.as_str())?
                .map(|value| decode_meta(value.value()));
            let held = existing.is_some();
            previous = existing.flatten();
            let mut ads = txn.open_table(ADS)?;
            for (key, value) in &self.puts {
                ads.insert(key.as_str(), value.as_slice())?;
            }
            for key in &self.deletes {
                ads.remove(key.as_str())?;
            }
            if held || self.scope == BatchScope::Everything {
                meta.insert(self.node_id.as_str(), self.meta.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(previous)
    }
}

#[cfg(test)]
mod tests {
    use herald_messages::{RegisterId, Snapshot, SyncState, Timestamp};

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
            name: Some(format!("register {n}").into()),
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
            last_snapshot: Some(Snapshot::new(seq, Timestamp::from_unix_millis(5))),
            generation: 7,
            write_seq: seq,
        }
    }

    fn puts(ads: &[Advertisement], meta: PoolMeta) -> AdBatch<'_> {
        AdBatch {
            puts: ads.iter().collect(),
            deletes: Vec::new(),
            meta,
            scope: BatchScope::Everything,
        }
    }

    fn sorted(mut ads: Vec<Advertisement>) -> Vec<Advertisement> {
        ads.sort_by_key(Advertisement::key);
        ads
    }

    const HOUR: Duration = Duration::from_secs(3_600);

    async fn open(path: &Path, node_id: &str) -> RedbAdStore {
        RedbAdStore::open(path, &node(node_id)).await.unwrap()
    }

    fn raw_insert(store: &RedbAdStore, key: &str, value: &[u8]) {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(ADS).unwrap().insert(key, value).unwrap();
        txn.commit().unwrap();
    }

    fn raw_insert_meta(store: &RedbAdStore, value: &[u8]) {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(store.node_id.as_str(), value)
            .unwrap();
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
        assert_eq!(store.read_meta().await.unwrap(), None);

        let ads = vec![local(1), local(2), remote("peer-b", 1), remote("peer-c", 3)];
        let previous = store.write(&puts(&ads, meta(7)), HOUR).await.unwrap();
        assert_eq!(previous, None);

        let loaded = store.load().await.unwrap();
        assert_eq!(sorted(loaded.ads), sorted(ads));
        assert_eq!(loaded.meta, Some(meta(7)));
        assert!(loaded.skipped.is_empty());
        assert_eq!(store.read_meta().await.unwrap(), Some(meta(7)));
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
    async fn puts_overwrite_deletes_remove_and_the_previous_meta_comes_back() {
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
            scope: BatchScope::Changes,
        };
        assert_eq!(store.write(&batch, HOUR).await.unwrap(), Some(meta(1)));

        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.ads, vec![updated]);
        assert_eq!(loaded.meta, Some(meta(2)));
    }

    /// Issue 7, scenario A: one write after the store lost its data recreated the meta record
    /// and hid the loss. A batch of changes never creates it.
    #[tokio::test]
    async fn a_batch_of_changes_never_creates_the_meta_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("ads.redb"), "node-a").await;
        let changes = AdBatch {
            scope: BatchScope::Changes,
            ..puts(&[], meta(1))
        };
        let ads = [local(1)];
        let with_put = AdBatch {
            puts: ads.iter().collect(),
            ..changes.clone()
        };
        assert_eq!(store.write(&with_put, HOUR).await.unwrap(), None);
        assert_eq!(store.read_meta().await.unwrap(), None);
        assert_eq!(store.load().await.unwrap().ads, vec![local(1)]);

        assert_eq!(store.write(&puts(&[], meta(2)), HOUR).await.unwrap(), None);
        assert_eq!(store.read_meta().await.unwrap(), Some(meta(2)));
        assert_eq!(store.write(&changes, HOUR).await.unwrap(), Some(meta(2)));
        assert_eq!(store.read_meta().await.unwrap(), Some(meta(1)));
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
        assert_eq!(reopened.read_meta().await.unwrap(), Some(meta(3)));
    }

    #[tokio::test]
    async fn a_second_open_of_a_file_in_use_fails_instead_of_sharing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ads.redb");
        let _first = open(&path, "node-a").await;
        let second = RedbAdStore::open(&path, &node("node-a")).await;
        assert!(matches!(second, Err(RedbOpenError::Open { .. })));
    }

    /// Issue 7, item 6: records carried an absolute wall-clock `expiresAt`, so a clock stepped
    /// forward between two runs expired every stored ad at reload. Records of that format load
    /// whatever their stamp says; the pool decides liveness.
    #[tokio::test]
    async fn records_stamped_with_a_past_expiry_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("ads.redb"), "node-a").await;
        let old_ad = serde_json::json!({"ad": local(1), "expiresAt": 1});
        raw_insert(
            &store,
            &format!("node-a:local:{}", register(1)),
            &serde_json::to_vec(&old_ad).unwrap(),
        );
        let old_meta =
            serde_json::json!({"meta": {"lastSnapshot": {"seq": 4, "readAt": 5}}, "expiresAt": 1});
        raw_insert_meta(&store, &serde_json::to_vec(&old_meta).unwrap());

        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.ads, vec![local(1)]);
        let expected_meta = PoolMeta {
            last_snapshot: Some(Snapshot::new(4, Timestamp::from_unix_millis(5))),
            generation: 0,
            write_seq: 0,
        };
        assert_eq!(loaded.meta, Some(expected_meta));
        assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
        assert_eq!(store.read_meta().await.unwrap(), Some(expected_meta));
    }

    #[tokio::test]
    async fn two_node_ids_in_one_file_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ads.redb");
        let a = RedbAdStore::open(&path, &node("node-a")).await.unwrap();
        // A second node id sharing the file, through the same database (redb opens a file once).
        let a_b = RedbAdStore {
            db: Arc::clone(&a.db),
            path: path.clone(),
            node_id: node("node-a-b"),
        };
        a.write(&puts(&[local(1)], meta(1)), HOUR).await.unwrap();
        assert_eq!(a_b.read_meta().await.unwrap(), None);
        assert_eq!(a_b.load().await.unwrap(), StoredPool::default());

        a_b.write(&puts(&[local(2), remote("node-a", 3)], meta(2)), HOUR)
            .await
            .unwrap();
        let gone = AdKey::local(register(2));
        let batch = AdBatch {
            puts: Vec::new(),
            deletes: vec![&gone],
            meta: meta(3),
            scope: BatchScope::Changes,
        };
        assert_eq!(a.write(&batch, HOUR).await.unwrap(), Some(meta(1)));

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
        let record = AdRecord { ad: &local(4) };
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
    async fn an_undecodable_meta_record_reads_as_lost_and_a_batch_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("ads.redb"), "node-a").await;
        store.write(&puts(&[], meta(1)), HOUR).await.unwrap();
        raw_insert_meta(&store, b"[]");
        assert_eq!(store.read_meta().await.unwrap(), None);
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.meta, None);
        assert_eq!(loaded.skipped, vec!["pool_meta:node-a".to_owned()]);
        let changes = AdBatch {
            scope: BatchScope::Changes,
            ..puts(&[], meta(2))
        };
        assert_eq!(store.write(&changes, HOUR).await.unwrap(), None);
        assert_eq!(store.read_meta().await.unwrap(), Some(meta(2)));
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
