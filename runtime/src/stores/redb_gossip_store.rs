//! `RedbGossipStore`: the `GossipStore` port in the node's redb file, beside its ads.
//!
//! A redb file is opened once per process, so this store never opens a file: it shares the
//! database of the node's `RedbAdStore` (`RedbAdStore::gossip_store`), which creates this
//! store's table with its own when it opens the file.
//!
//! Layout: table `gossip`: `{node_id}:{origin}` → the JSON of the origin's `PersistedRecord`.
//! Node ids cannot contain `:`, so a node's records are the range `{node_id}:`..`{node_id};`.
//! A write is one durable write transaction (puts, then deletes); a load one read transaction.
//! A record that does not decode, or that names another origin than its key, is skipped and
//! named (`gossip:{key}`), never fatal; the next write of that origin replaces it.
//!
//! No expiry, like the ads in this file (see `redb_ad_store`) and for the reason of the port:
//! the gossip deletes the records it forgets. All redb work runs on tokio's blocking pool; redb's
//! error types never leave this file (and `redb_file`).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};
use tracing::warn;

use herald_actors::ports::{GossipBatch, GossipStore, StoreError, StoredGossip};
use herald_messages::{NodeId, PersistedRecord};

use super::redb_file::store_error;

const GOSSIP: TableDefinition<&str, &[u8]> = TableDefinition::new("gossip");

/// Creates this store's table; called by `RedbAdStore` when it opens (and creates) the file.
pub(super) fn create_table(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(GOSSIP)?;
    Ok(())
}

/// The gossip records of one node in the redb file it shares with its ads.
pub struct RedbGossipStore {
    db: Arc<Database>,
    path: PathBuf,
    node_id: NodeId,
}

impl RedbGossipStore {
    /// The store of `node_id` in `db`, a file opened by `RedbAdStore` (which created the table).
    pub(super) fn new(db: Arc<Database>, path: &Path, node_id: &NodeId) -> Self {
        Self {
            db,
            path: path.to_path_buf(),
            node_id: node_id.clone(),
        }
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|err| StoreError::Unavailable(Box::new(err)))?
            .map_err(store_error)
    }
}

#[async_trait]
impl GossipStore for RedbGossipStore {
    async fn load(&self) -> Result<StoredGossip, StoreError> {
        let node_id = self.node_id.clone();
        self.blocking(move |db| read_records(db, &node_id)).await
    }

    async fn write(&self, batch: &GossipBatch<'_>) -> Result<(), StoreError> {
        if batch.puts.is_empty() && batch.deletes.is_empty() {
            return Ok(());
        }
        // Encoded here, where the batch's borrowed records live; committed on the blocking pool.
        let puts: Vec<(String, Vec<u8>)> = batch
            .puts
            .iter()
            .map(|record| {
                // Sized once: a record of 100,000 entries is 17 MB of JSON.
                let mut value = Vec::with_capacity(record.json_size_hint());
                serde_json::to_writer(&mut value, *record)
                    .expect("a gossip record encodes as JSON");
                (record_key(&self.node_id, &record.origin), value)
            })
            .collect();
        let deletes: Vec<String> = batch
            .deletes
            .iter()
            .map(|origin| record_key(&self.node_id, origin))
            .collect();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(GOSSIP)?;
                for (key, value) in &puts {
                    table.insert(key.as_str(), value.as_slice())?;
                }
                for key in &deletes {
                    table.remove(key.as_str())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    fn describe(&self) -> String {
        format!(
            "redb:{} (gossip of node {})",
            self.path.display(),
            self.node_id
        )
    }
}

fn record_key(node_id: &NodeId, origin: &NodeId) -> String {
    format!("{node_id}:{origin}")
}

/// Every key of `node_id`'s records; `;` is the character after `:`.
fn node_range(node_id: &NodeId) -> Range<String> {
    format!("{node_id}:")..format!("{node_id};")
}

fn read_records(db: &Database, node_id: &NodeId) -> Result<StoredGossip, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(GOSSIP)?;
    let range = node_range(node_id);
    let mut stored = StoredGossip::default();
    for row in table.range(range.start.as_str()..range.end.as_str())? {
        let (key, value) = row?;
        let key = key.value();
        match serde_json::from_slice::<PersistedRecord>(value.value()) {
            Ok(record) if record_key(node_id, &record.origin) == key => {
                stored.records.push(record);
            }
            Ok(_) => {
                warn!(%key, "gossip record names another origin than its key; skipped");
                stored.skipped.push(format!("gossip:{key}"));
            }
            Err(err) => {
                warn!(%key, %err, "undecodable gossip record; skipped");
                stored.skipped.push(format!("gossip:{key}"));
            }
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use herald_messages::EntryRun;

    use super::*;
    use crate::stores::RedbAdStore;

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    fn record(origin: &str, incarnation: u64) -> PersistedRecord {
        PersistedRecord {
            origin: node(origin),
            incarnation,
            max: 0,
            floor: 0,
            entries: EntryRun::empty(),
        }
    }

    /// Node ids cannot hold `:`, so `node-a` never sees `node-a-b`'s records (the ad store's
    /// rule too); a second node id shares the file through the same database.
    #[tokio::test]
    async fn two_node_ids_in_one_file_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ads.redb");
        let ads = RedbAdStore::open(&path, &node("node-a")).await.unwrap();
        let a = ads.gossip_store();
        let a_b = RedbGossipStore::new(Arc::clone(&a.db), &path, &node("node-a-b"));
        let of_a = record("node-c", 1);
        let of_a_b = [record("node-c", 2), record("node-a", 3)];
        a.write(&GossipBatch {
            puts: vec![&of_a],
            deletes: Vec::new(),
        })
        .await
        .unwrap();
        a_b.write(&GossipBatch {
            puts: of_a_b.iter().collect(),
            deletes: Vec::new(),
        })
        .await
        .unwrap();
        a.write(&GossipBatch {
            puts: Vec::new(),
            deletes: vec![&node("node-a")],
        })
        .await
        .unwrap();
        assert_eq!(a.load().await.unwrap().records, vec![of_a]);
        assert_eq!(
            a_b.load().await.unwrap().records,
            vec![of_a_b[1].clone(), of_a_b[0].clone()]
        );
        assert!(a.describe().contains("ads.redb"), "{}", a.describe());
    }

    /// A record stored under another origin's key is as wrong as one that does not decode.
    #[tokio::test]
    async fn a_record_under_another_origins_key_is_skipped_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let ads = RedbAdStore::open(&dir.path().join("ads.redb"), &node("node-a"))
            .await
            .unwrap();
        let store = ads.gossip_store();
        let txn = store.db.begin_write().unwrap();
        let misplaced = serde_json::to_vec(&record("node-c", 1)).unwrap();
        txn.open_table(GOSSIP)
            .unwrap()
            .insert("node-a:node-b", misplaced.as_slice())
            .unwrap();
        txn.commit().unwrap();
        let loaded = store.load().await.unwrap();
        assert!(loaded.records.is_empty());
        assert_eq!(loaded.skipped, vec!["gossip:node-a:node-b".to_owned()]);
    }
}
