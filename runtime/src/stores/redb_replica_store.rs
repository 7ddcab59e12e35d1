//! `RedbReplicaStore`: a peer's replica of the system register and its checkpoint, in one
//! directory, so that a restarted peer resumes with an incremental sync.
//!
//! Layout of the directory:
//! - `replica.redb`, table `replica_entries`: blueprint id → JSON of the latest
//!   `SystemRegisterEntry` of that blueprint;
//! - `checkpoint.json`: JSON of the `Checkpoint` (absent before the first sync).
//!
//! `apply` makes the entries durable first, in one redb write transaction (the table is cleared
//! first for a full sync; an entry replaces the stored one of its blueprint only when its version
//! is higher, so applying twice is harmless and versions never go backwards), and only then
//! replaces the checkpoint atomically: write `checkpoint.json.tmp`, fsync it, rename it over
//! `checkpoint.json`, fsync the directory. A crash in between leaves the old checkpoint (and
//! perhaps a stray `.tmp`, which `load` ignores and the next `apply` overwrites); the next sync
//! then fetches entries the replica already holds, which is harmless. All file and redb work
//! runs on tokio's blocking pool; redb's error types never leave this file.
//!
//! Deliberately not done here: deciding between full and incremental sync, checking checksums
//! (the replica actor does both), and keeping the checkpoint's version from going backwards (a
//! full sync of another history legitimately starts over).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use herald_actors::ports::{ReplicaStore, ReplicaStoreError, StoredReplica};
use herald_messages::{Checkpoint, SystemRegisterEntry};

use super::redb_file::{self, RedbFailure, RedbOpenError};

/// A peer's replica (a redb file) and its checkpoint (a JSON file) in one directory.
pub struct RedbReplicaStore {
    db: Arc<Database>,
    dir: PathBuf,
}

impl RedbReplicaStore {
    /// Opens (and creates) the directory `dir` and the replica file in it.
    pub async fn open(dir: &Path) -> Result<Self, RedbOpenError> {
        let db = redb_file::open(&dir.join(REPLICA_FILE), create_tables).await?;
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
        })
    }

    /// Runs `work` on the blocking pool with the database and the directory.
    async fn blocking<T, F>(&self, work: F) -> Result<T, ReplicaStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &Path) -> Result<T, ReplicaStoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || work(&db, &dir))
            .await
            .map_err(|err| ReplicaStoreError::Unavailable(Box::new(err)))?
    }
}

#[async_trait]
impl ReplicaStore for RedbReplicaStore {
    async fn load(&self) -> Result<StoredReplica, ReplicaStoreError> {
        self.blocking(|db, dir| {
            let entries = read_entries(db)?;
            let checkpoint = read_checkpoint(&dir.join(CHECKPOINT_FILE))?;
            Ok(StoredReplica {
                entries,
                checkpoint,
            })
        })
        .await
    }

    async fn apply(
        &self,
        replace_all: bool,
        entries: &[Arc<SystemRegisterEntry>],
        checkpoint: &Checkpoint,
    ) -> Result<(), ReplicaStoreError> {
        let owned: Vec<Arc<SystemRegisterEntry>> = entries.to_vec();
        let checkpoint_json =
            serde_json::to_vec_pretty(checkpoint).expect("a checkpoint encodes as JSON");
        self.blocking(move |db, dir| {
            write_entries(db, replace_all, &owned).map_err(store_error)?;
            write_checkpoint(dir, &checkpoint_json)
                .map_err(|err| ReplicaStoreError::Unavailable(Box::new(err)))
        })
        .await
    }

    fn describe(&self) -> String {
        format!("redb:{}", self.dir.display())
    }
}

/// The redb file of the replica, inside the store's directory.
const REPLICA_FILE: &str = "replica.redb";
/// The checkpoint file, inside the store's directory.
const CHECKPOINT_FILE: &str = "checkpoint.json";
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_entries");
/// The checkpoint is written here first, then renamed over `checkpoint.json`.
const CHECKPOINT_TMP_FILE: &str = "checkpoint.json.tmp";

fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(ENTRIES)?;
    Ok(())
}

/// Every stored entry, ordered by version; one that does not decode (or sits under another
/// blueprint's id) makes the replica `Corrupt`.
fn read_entries(db: &Database) -> Result<Vec<SystemRegisterEntry>, ReplicaStoreError> {
    let txn = db.begin_read().map_err(store_error)?;
    let table = txn.open_table(ENTRIES).map_err(store_error)?;
    let mut entries = Vec::new();
    for record in table.iter().map_err(store_error)? {
        let (key, value) = record.map_err(store_error)?;
        let id = key.value();
        let entry: SystemRegisterEntry = serde_json::from_slice(value.value())
            .map_err(|err| corrupt(format!("replica entry {id} does not decode: {err}")))?;
        if entry.blueprint_id.as_str() != id {
            return Err(corrupt(format!(
                "replica record {id} holds blueprint {}",
                entry.blueprint_id
            )));
        }
        entries.push(entry);
    }
    entries.sort_by_key(|entry| entry.version);
    Ok(entries)
}

/// One durable write transaction: clear the table when `replace_all`, then keep, for each
/// blueprint, the entry with the highest version. A stored record that does not decode is
/// replaced (that repairs it).
fn write_entries(
    db: &Database,
    replace_all: bool,
    entries: &[Arc<SystemRegisterEntry>],
) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(ENTRIES)?;
        if replace_all {
            table.retain(|_, _| false)?;
        }
        for entry in entries {
            let id = entry.blueprint_id.as_str();
            let stored_version = table
                .get(id)?
                .and_then(|value| stored_version(value.value()));
            if stored_version.is_some_and(|stored| stored >= entry.version) {
                continue;
            }
            let json = serde_json::to_vec(entry.as_ref())
                .expect("an entry encodes as JSON (documents are UTF-8 JSON text)");
            table.insert(id, json.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// The version of a stored entry, read without decoding its document; `None` if it does not
/// decode.
fn stored_version(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        version: u64,
    }
    serde_json::from_slice::<VersionOnly>(bytes)
        .ok()
        .map(|stored| stored.version)
}

/// The checkpoint at `path`: `None` when there is no file, `Corrupt` when it does not decode.
fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, ReplicaStoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(ReplicaStoreError::Unavailable(Box::new(err))),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|err| {
        corrupt(format!(
            "checkpoint {} does not decode: {err}",
            path.display()
        ))
    })
}

/// Replaces `checkpoint.json` in `dir` atomically and durably: temporary file, fsync, rename,
/// fsync of the directory (which makes the rename itself durable).
fn write_checkpoint(dir: &Path, json: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(CHECKPOINT_TMP_FILE);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(json)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(CHECKPOINT_FILE))?;
    File::open(dir)?.sync_all()
}

fn corrupt(what: String) -> ReplicaStoreError {
    ReplicaStoreError::Corrupt { what }
}

fn store_error(err: impl Into<redb::Error>) -> ReplicaStoreError {
    match redb_file::classify(err) {
        RedbFailure::Corrupt(what) => ReplicaStoreError::Corrupt { what },
        RedbFailure::Transient(err) => ReplicaStoreError::Unavailable(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herald_messages::{BlueprintId, EntryDraft, EntryKind, HistoryId, NodeId, Timestamp};

    use super::*;

    fn entry(blueprint: &str, version: u64) -> Arc<SystemRegisterEntry> {
        let draft = EntryDraft {
            blueprint_id: BlueprintId::parse(blueprint).unwrap(),
            kind: EntryKind::Published,
            document: format!(r#"{{"v":{version}}}"#).into(),
            published_at: Timestamp::from_unix_millis(1_700_000_000_000),
            published_by: "admin".to_owned(),
            transaction_id: format!("tx-{version}"),
            metadata: BTreeMap::new(),
        };
        Arc::new(draft.at_version(version))
    }

    fn checkpoint(history: u8, version: u64) -> Checkpoint {
        Checkpoint {
            history_id: HistoryId::from_bytes([history; 16]),
            version,
            synced_at: Timestamp::from_unix_millis(1_700_000_000_500),
            hub_id: NodeId::parse("hub-1").unwrap(),
            digest: None,
        }
    }

    async fn open(dir: &Path) -> RedbReplicaStore {
        RedbReplicaStore::open(dir).await.unwrap()
    }

    fn held(replica: &StoredReplica) -> Vec<(String, u64)> {
        replica
            .entries
            .iter()
            .map(|entry| (entry.blueprint_id.to_string(), entry.version))
            .collect()
    }

    fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
        expected
            .iter()
            .map(|(id, version)| ((*id).to_owned(), *version))
            .collect()
    }

    #[tokio::test]
    async fn an_empty_replica_has_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("replica")).await;
        assert_eq!(store.load().await.unwrap(), StoredReplica::default());
        assert!(dir.path().join("replica").join(REPLICA_FILE).exists());
        assert!(
            store.describe().starts_with("redb:"),
            "{}",
            store.describe()
        );
    }

    #[tokio::test]
    async fn apply_then_load_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![entry("a", 1), entry("b", 2), entry("a", 3)];
        {
            let store = open(dir.path()).await;
            store
                .apply(true, &entries, &checkpoint(1, 3))
                .await
                .unwrap();
            let loaded = store.load().await.unwrap();
            assert_eq!(held(&loaded), pairs(&[("b", 2), ("a", 3)]));
            assert_eq!(loaded.entries[1], *entries[2]);
            assert_eq!(loaded.checkpoint, Some(checkpoint(1, 3)));
        }
        let reopened = open(dir.path()).await;
        let loaded = reopened.load().await.unwrap();
        assert_eq!(held(&loaded), pairs(&[("b", 2), ("a", 3)]));
        assert_eq!(loaded.checkpoint, Some(checkpoint(1, 3)));
        assert!(!dir.path().join(CHECKPOINT_TMP_FILE).exists());
    }

    #[tokio::test]
    async fn incremental_apply_adds_and_replace_all_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        store
            .apply(true, &[entry("a", 1), entry("b", 2)], &checkpoint(1, 2))
            .await
            .unwrap();
        store
            .apply(false, &[entry("c", 3), entry("a", 4)], &checkpoint(1, 4))
            .await
            .unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(held(&loaded), pairs(&[("b", 2), ("c", 3), ("a", 4)]));
        assert_eq!(loaded.checkpoint, Some(checkpoint(1, 4)));

        // A full sync of another history: what is not in it goes, even at higher versions.
        store
            .apply(true, &[entry("z", 1)], &checkpoint(2, 1))
            .await
            .unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(held(&loaded), pairs(&[("z", 1)]));
        assert_eq!(loaded.checkpoint, Some(checkpoint(2, 1)));
    }

    #[tokio::test]
    async fn versions_never_go_backwards_and_apply_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        store
            .apply(false, &[entry("a", 5)], &checkpoint(1, 5))
            .await
            .unwrap();
        store
            .apply(false, &[entry("a", 3), entry("a", 5)], &checkpoint(1, 5))
            .await
            .unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.entries, vec![(*entry("a", 5)).clone()]);

        // The same version with another body does not replace what is held either.
        let mut rival = (*entry("a", 5)).clone();
        rival.published_by = "someone else".to_owned();
        store
            .apply(false, &[Arc::new(rival)], &checkpoint(1, 5))
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().entries[0].published_by, "admin");
    }

    #[tokio::test]
    async fn a_stray_temporary_checkpoint_is_ignored_then_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        store
            .apply(true, &[entry("a", 1)], &checkpoint(1, 1))
            .await
            .unwrap();
        // A crash while writing the next checkpoint left half a file behind.
        std::fs::write(dir.path().join(CHECKPOINT_TMP_FILE), b"{\"historyId\":").unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.checkpoint, Some(checkpoint(1, 1)));

        store
            .apply(false, &[entry("b", 2)], &checkpoint(1, 2))
            .await
            .unwrap();
        assert_eq!(
            store.load().await.unwrap().checkpoint,
            Some(checkpoint(1, 2))
        );
        assert!(!dir.path().join(CHECKPOINT_TMP_FILE).exists());
        let text = std::fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert!(text.contains("\"historyId\""), "{text}");
    }

    #[tokio::test]
    async fn an_unreadable_checkpoint_or_entry_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        store
            .apply(true, &[entry("a", 1)], &checkpoint(1, 1))
            .await
            .unwrap();
        std::fs::write(dir.path().join(CHECKPOINT_FILE), b"not json").unwrap();
        assert!(matches!(
            store.load().await,
            Err(ReplicaStoreError::Corrupt { what }) if what.contains("checkpoint")
        ));
        // The next apply writes a good checkpoint again.
        store.apply(false, &[], &checkpoint(1, 1)).await.unwrap();
        assert_eq!(
            store.load().await.unwrap().checkpoint,
            Some(checkpoint(1, 1))
        );

        let txn = store.db.begin_write().unwrap();
        txn.open_table(ENTRIES)
            .unwrap()
            .insert("b", b"{broken".as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert!(matches!(
            store.load().await,
            Err(ReplicaStoreError::Corrupt { what }) if what.contains("replica entry b")
        ));
        // Applying an entry of that blueprint repairs the record.
        store
            .apply(false, &[entry("b", 2)], &checkpoint(1, 2))
            .await
            .unwrap();
        assert_eq!(
            held(&store.load().await.unwrap()),
            pairs(&[("a", 1), ("b", 2)])
        );
    }

    #[tokio::test]
    async fn a_record_under_another_blueprint_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let txn = store.db.begin_write().unwrap();
        let json = serde_json::to_vec(entry("a", 1).as_ref()).unwrap();
        txn.open_table(ENTRIES)
            .unwrap()
            .insert("b", json.as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert!(matches!(
            store.load().await,
            Err(ReplicaStoreError::Corrupt { .. })
        ));
    }
}
