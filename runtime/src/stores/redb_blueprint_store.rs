//! `RedbBlueprintStore`: a hub's system register in a redb file, the embedded default for a
//! single hub.
//!
//! Layout (three tables):
//! - `system_register_genesis`: `"genesis"` → JSON of `Genesis`;
//! - `system_register_entries`: version (u64) → JSON of `SystemRegisterEntry` (the entry carries
//!   its version too; `load` checks that both agree);
//! - `system_register_meta`: `"next_version"` → the version the next append gets.
//!
//! `create`, `append` and `restore` are one durable write transaction each. redb runs one write
//! transaction at a time, so reading the counter, comparing it with the hub's `known_head` and
//! the entry's version (appends are exact: the entry goes at the counter or is refused,
//! `Raced`), writing the entry and bumping the counter cannot interleave with another append or
//! restore: versions are allocated atomically, and a refused call (`Behind`, `Raced`,
//! `Conflict`) aborts its transaction before writing anything. `restore` reads and compares every given version first,
//! then writes the genesis and the missing entries and moves `next_version` up (never down).
//! `head` is one read transaction (the genesis and the counter). `load` reads everything in one
//! read transaction (a consistent snapshot) and reports any record it cannot decode as `Corrupt`,
//! naming it: a hub must refuse a damaged register rather than serve part of it. All redb work
//! runs on tokio's blocking pool; redb's error types never leave this file.
//!
//! Deliberately not done here: checking checksums and the order of versions (the authority
//! validates the register it loads). `watch` reports the appends and restores made through this
//! instance, so hubs of one process sharing it (an embedded deployment, the demo) see each
//! other's. A redb file loses entries only when it is replaced (a backup restored): the hub
//! that still holds them restores them through `restore`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use herald_actors::ports::{
    BlueprintStore, BlueprintStoreError, RestoreConflict, RestoreReport, StoreHead, StoredRegister,
    append_check, check_seed, restore_plan, same_entry,
};
use herald_messages::{Genesis, SystemRegisterEntry};

use super::redb_file::{self, RedbFailure, RedbOpenError};
use super::stored_entry::decode_entry;

/// One hub's system register in a redb file.
pub struct RedbBlueprintStore {
    db: Arc<Database>,
    path: PathBuf,
    /// Versions appended through this instance: hubs of one process sharing it see each
    /// other's appends.
    appended: broadcast::Sender<u64>,
}

impl RedbBlueprintStore {
    /// Opens (and creates, with its directory) the redb file at `path`.
    pub async fn open(path: &Path) -> Result<Self, RedbOpenError> {
        let db = redb_file::open(path, create_tables).await?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            appended: broadcast::channel(1_024).0,
        })
    }

    /// Runs `work` on the blocking pool. The outer `Result` carries redb's failures, the inner
    /// one the store's answer (a refusal such as `AlreadyCreated` included).
    async fn blocking<T, F>(&self, work: F) -> Result<T, BlueprintStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<Result<T, BlueprintStoreError>, redb::Error>
            + Send
            + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|err| BlueprintStoreError::Unavailable(Box::new(err)))?
            .map_err(store_error)?
    }
}

#[async_trait]
impl BlueprintStore for RedbBlueprintStore {
    async fn load(&self) -> Result<Option<StoredRegister>, BlueprintStoreError> {
        self.blocking(|db| {
            let txn = db.begin_read()?;
            let genesis = match read_genesis(&txn)? {
                Some(Ok(genesis)) => genesis,
                Some(Err(err)) => return Ok(Err(err)),
                None if has_entries(&txn)? => {
                    return Ok(Err(corrupt(
                        "entries are stored but the genesis record is missing".to_owned(),
                    )));
                }
                None => return Ok(Ok(None)),
            };
            Ok(read_entries(&txn, 0)?.map(|entries| Some(StoredRegister { genesis, entries })))
        })
        .await
    }

    async fn create(
        &self,
        genesis: &Genesis,
        seed: Vec<SystemRegisterEntry>,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        check_seed(&seed)?;
        let genesis_json = serde_json::to_vec(genesis).expect("a genesis record encodes as JSON");
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let created = txn.open_table(GENESIS)?.get(GENESIS_KEY)?.is_some();
            if created {
                txn.abort()?;
                return Ok(Err(BlueprintStoreError::AlreadyCreated));
            }
            let orphans = !txn.open_table(ENTRIES)?.is_empty()?
                || txn.open_table(META)?.get(NEXT_VERSION)?.is_some();
            if orphans {
                txn.abort()?;
                return Ok(Err(corrupt(
                    "entries or a version counter are stored but the genesis record is missing"
                        .to_owned(),
                )));
            }
            txn.open_table(GENESIS)?
                .insert(GENESIS_KEY, genesis_json.as_slice())?;
            let entries = seed;
            {
                let mut table = txn.open_table(ENTRIES)?;
                for entry in &entries {
                    table.insert(entry.version, encode(entry).as_slice())?;
                }
            }
            let next = u64::try_from(entries.len()).expect("a seed count fits in u64") + 1;
            txn.open_table(META)?.insert(NEXT_VERSION, next)?;
            txn.commit()?;
            Ok(Ok(entries))
        })
        .await
    }

    async fn append(
        &self,
        entry: SystemRegisterEntry,
        known_head: u64,
    ) -> Result<SystemRegisterEntry, BlueprintStoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let version = next_version(&txn)?;
            let store_head = version.saturating_sub(1);
            if store_head < known_head {
                txn.abort()?;
                return Ok(Err(BlueprintStoreError::Behind { store_head }));
            }
            let created = txn.open_table(GENESIS)?.get(GENESIS_KEY)?.is_some();
            if !created {
                txn.abort()?;
                return Ok(Err(corrupt(
                    "cannot append: the system register was never created (no genesis record)"
                        .to_owned(),
                )));
            }
            let taken = txn.open_table(ENTRIES)?.get(version)?.is_some();
            if taken {
                txn.abort()?;
                return Ok(Err(corrupt(format!(
                    "version {version} is already taken: the version counter is behind the entries"
                ))));
            }
            if let Err(refused) = append_check(store_head, &entry, known_head) {
                txn.abort()?;
                return Ok(Err(refused));
            }
            txn.open_table(ENTRIES)?
                .insert(version, encode(&entry).as_slice())?;
            txn.open_table(META)?.insert(NEXT_VERSION, version + 1)?;
            txn.commit()?;
            Ok(Ok(entry))
        })
        .await
        .inspect(|entry| {
            // Nobody watching is fine.
            let _ = self.appended.send(entry.version);
        })
    }

    async fn restore(
        &self,
        genesis: &Genesis,
        entries: &[Arc<SystemRegisterEntry>],
    ) -> Result<RestoreReport, BlueprintStoreError> {
        let plan: Vec<(u64, SystemRegisterEntry)> = restore_plan(entries)?
            .into_iter()
            .map(|entry| (entry.version, entry.clone()))
            .collect();
        let genesis = genesis.clone();
        let report = self
            .blocking(move |db| {
                let txn = db.begin_write()?;
                let missing = match missing_entries(&txn, &genesis, &plan)? {
                    Ok(missing) => missing,
                    Err(err) => {
                        txn.abort()?;
                        return Ok(Err(err));
                    }
                };
                let genesis_written = txn.open_table(GENESIS)?.get(GENESIS_KEY)?.is_none();
                if genesis_written {
                    let json = serde_json::to_vec(&genesis).expect("a genesis record encodes");
                    txn.open_table(GENESIS)?
                        .insert(GENESIS_KEY, json.as_slice())?;
                }
                let mut next = next_version(&txn)?;
                {
                    let mut table = txn.open_table(ENTRIES)?;
                    for (version, entry) in &missing {
                        table.insert(*version, encode(entry).as_slice())?;
                        next = next.max(version.saturating_add(1));
                    }
                }
                txn.open_table(META)?.insert(NEXT_VERSION, next)?;
                txn.commit()?;
                Ok(Ok(RestoreReport {
                    entries_written: missing.len(),
                    genesis_written,
                    head: next.saturating_sub(1),
                }))
            })
            .await?;
        let wrote = report.genesis_written || report.entries_written > 0;
        if wrote && report.head > 0 {
            // Nobody watching is fine.
            let _ = self.appended.send(report.head);
        }
        Ok(report)
    }

    async fn head(&self) -> Result<Option<StoreHead>, BlueprintStoreError> {
        self.blocking(|db| {
            let txn = db.begin_read()?;
            let genesis = match read_genesis(&txn)? {
                Some(Ok(genesis)) => genesis,
                Some(Err(err)) => return Ok(Err(err)),
                None if has_entries(&txn)? => {
                    return Ok(Err(corrupt(
                        "entries are stored but the genesis record is missing".to_owned(),
                    )));
                }
                None => return Ok(Ok(None)),
            };
            let next = txn
                .open_table(META)?
                .get(NEXT_VERSION)?
                .map_or(1, |value| value.value());
            Ok(Ok(Some(StoreHead {
                history_id: genesis.history_id,
                version: next.saturating_sub(1),
            })))
        })
        .await
    }

    async fn entries_after(
        &self,
        after: u64,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            read_entries(&txn, after)
        })
        .await
    }

    async fn watch(&self) -> Result<Option<BoxStream<'static, u64>>, BlueprintStoreError> {
        // A watcher that fell behind learns the latest version it missed: catching up from it
        // reads every entry after its own version anyway.
        let versions = BroadcastStream::new(self.appended.subscribe()).filter_map(|version| {
            std::future::ready(match version {
                Ok(version) => Some(version),
                Err(BroadcastStreamRecvError::Lagged(_)) => Some(u64::MAX),
            })
        });
        Ok(Some(versions.boxed()))
    }

    fn describe(&self) -> String {
        format!("redb:{}", self.path.display())
    }
}

const GENESIS: TableDefinition<&str, &[u8]> = TableDefinition::new("system_register_genesis");
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("system_register_entries");
const META: TableDefinition<&str, u64> = TableDefinition::new("system_register_meta");
const GENESIS_KEY: &str = "genesis";
const NEXT_VERSION: &str = "next_version";

fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(GENESIS)?;
    txn.open_table(ENTRIES)?;
    txn.open_table(META)?;
    Ok(())
}

/// The genesis record, if any; `Some(Err)` when it does not decode.
fn read_genesis(
    txn: &ReadTransaction,
) -> Result<Option<Result<Genesis, BlueprintStoreError>>, redb::Error> {
    let table = txn.open_table(GENESIS)?;
    let Some(value) = table.get(GENESIS_KEY)? else {
        return Ok(None);
    };
    let genesis = serde_json::from_slice::<Genesis>(value.value())
        .map_err(|err| corrupt(format!("the genesis record does not decode: {err}")));
    Ok(Some(genesis))
}

/// The version the next append gets (1 before the first).
fn next_version(txn: &WriteTransaction) -> Result<u64, redb::Error> {
    Ok(txn
        .open_table(META)?
        .get(NEXT_VERSION)?
        .map_or(1, |value| value.value()))
}

/// The planned entries of a restore that the store lacks, or why the restore must write nothing
/// (another history, another entry at a version, a record that does not decode). Reads only.
#[allow(clippy::type_complexity)] // redb's failure outside, the store's answer inside
fn missing_entries(
    txn: &WriteTransaction,
    genesis: &Genesis,
    plan: &[(u64, SystemRegisterEntry)],
) -> Result<Result<Vec<(u64, SystemRegisterEntry)>, BlueprintStoreError>, redb::Error> {
    let stored_genesis = {
        let table = txn.open_table(GENESIS)?;
        let value = table.get(GENESIS_KEY)?;
        value.map(|value| {
            serde_json::from_slice::<Genesis>(value.value())
                .map_err(|err| corrupt(format!("the genesis record does not decode: {err}")))
        })
    };
    match stored_genesis {
        Some(Err(err)) => return Ok(Err(err)),
        Some(Ok(stored)) if stored.history_id != genesis.history_id => {
            return Ok(Err(BlueprintStoreError::Conflict(
                RestoreConflict::History {
                    stored: stored.history_id,
                    restored: genesis.history_id.clone(),
                },
            )));
        }
        Some(Ok(_)) => {}
        None => {
            let orphans = !txn.open_table(ENTRIES)?.is_empty()?
                || txn.open_table(META)?.get(NEXT_VERSION)?.is_some();
            if orphans {
                return Ok(Err(corrupt(
                    "entries or a version counter are stored but the genesis record is missing"
                        .to_owned(),
                )));
            }
        }
    }
    let table = txn.open_table(ENTRIES)?;
    let mut missing = Vec::new();
    for (version, entry) in plan {
        let Some(value) = table.get(*version)? else {
            missing.push((*version, entry.clone()));
            continue;
        };
        let stored = match decode_entry(*version, value.value()) {
            Ok(stored) => stored,
            Err(err) => return Ok(Err(err)),
        };
        if !same_entry(&stored, entry) {
            return Ok(Err(BlueprintStoreError::Conflict(RestoreConflict::Entry {
                version: *version,
            })));
        }
    }
    Ok(Ok(missing))
}

fn has_entries(txn: &ReadTransaction) -> Result<bool, redb::Error> {
    Ok(!txn.open_table(ENTRIES)?.is_empty()?)
}

/// The entries above version `after`, ordered; the first one that does not decode (or is
/// stored under another version than its own) makes the whole read `Corrupt`.
fn read_entries(
    txn: &ReadTransaction,
    after: u64,
) -> Result<Result<Vec<SystemRegisterEntry>, BlueprintStoreError>, redb::Error> {
    let Some(first) = after.checked_add(1) else {
        return Ok(Ok(Vec::new()));
    };
    let table = txn.open_table(ENTRIES)?;
    let mut entries = Vec::new();
    for record in table.range(first..)? {
        let (key, value) = record?;
        match decode_entry(key.value(), value.value()) {
            Ok(entry) => entries.push(entry),
            Err(err) => return Ok(Err(err)),
        }
    }
    Ok(Ok(entries))
}

fn encode(entry: &SystemRegisterEntry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("an entry encodes as JSON (documents are UTF-8 JSON text)")
}

/// Decodes the entry stored at `version`.
fn corrupt(what: String) -> BlueprintStoreError {
    BlueprintStoreError::Corrupt { what }
}

fn store_error(err: redb::Error) -> BlueprintStoreError {
    match redb_file::classify(err) {
        RedbFailure::Corrupt(what) => BlueprintStoreError::Corrupt { what },
        RedbFailure::Transient(err) => BlueprintStoreError::Unavailable(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herald_messages::{
        BlueprintId, EntryDraft, EntryKind, HistoryId, NodeId, RegisterId, Timestamp,
    };

    use super::*;

    fn genesis() -> Genesis {
        Genesis {
            register_id: RegisterId::system(),
            history_id: HistoryId::from_bytes([7; 16]),
            created_at: Timestamp::from_unix_millis(1_700_000_000_000),
            created_by: NodeId::parse("hub-1").unwrap(),
        }
    }

    fn draft(blueprint: &str, document: &str) -> EntryDraft {
        EntryDraft {
            blueprint_id: BlueprintId::parse(blueprint).unwrap(),
            kind: EntryKind::Published,
            document: document.to_owned().into(),
            published_at: Timestamp::from_unix_millis(1_700_000_000_001),
            published_by: "admin".to_owned(),
            transaction_id: format!("tx-{blueprint}"),
            metadata: BTreeMap::from([("team".to_owned(), "core".to_owned())]),
        }
    }

    fn seed() -> Vec<SystemRegisterEntry> {
        vec![draft("register-creation-v1", r#"{"steps":["create"]}"#).at_version(1)]
    }

    async fn open(path: &Path) -> RedbBlueprintStore {
        RedbBlueprintStore::open(path).await.unwrap()
    }

    fn raw_insert(store: &RedbBlueprintStore, version: u64, value: &[u8]) {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(ENTRIES)
            .unwrap()
            .insert(version, value)
            .unwrap();
        txn.commit().unwrap();
    }

    fn versions(entries: &[SystemRegisterEntry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.version).collect()
    }

    #[tokio::test]
    async fn create_append_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        assert_eq!(store.load().await.unwrap(), None);

        let seeded = store.create(&genesis(), seed()).await.unwrap();
        assert_eq!(seeded, seed());
        let appended = store
            .append(draft("a", r#"{"a":1}"#).at_version(2), 1)
            .await
            .unwrap();
        assert_eq!(appended, draft("a", r#"{"a":1}"#).at_version(2));
        assert!(appended.checksum_holds());

        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!(loaded.genesis, genesis());
        assert_eq!(loaded.entries, vec![seeded[0].clone(), appended]);
        assert!(
            store.describe().starts_with("redb:"),
            "{}",
            store.describe()
        );
    }

    #[tokio::test]
    async fn reopening_the_file_keeps_the_register_and_its_counter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("sysreg.redb");
        {
            let store = open(&path).await;
            store.create(&genesis(), seed()).await.unwrap();
            store
                .append(draft("a", "{}").at_version(2), 1)
                .await
                .unwrap();
        }
        let reopened = open(&path).await;
        let loaded = reopened.load().await.unwrap().unwrap();
        assert_eq!(loaded.genesis, genesis());
        assert_eq!(versions(&loaded.entries), [1, 2]);
        let next = reopened
            .append(draft("b", "{}").at_version(3), 2)
            .await
            .unwrap();
        assert_eq!(next.version, 3);
    }

    #[tokio::test]
    async fn a_second_create_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        store.create(&genesis(), seed()).await.unwrap();
        let mut other = genesis();
        other.history_id = HistoryId::from_bytes([9; 16]);
        let again = store
            .create(&other, vec![draft("x", "{}").at_version(1)])
            .await;
        assert!(matches!(again, Err(BlueprintStoreError::AlreadyCreated)));
        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!(loaded.genesis, genesis());
        assert_eq!(versions(&loaded.entries), [1]);
    }

    #[tokio::test]
    async fn versions_are_consecutive_under_concurrent_appends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir.path().join("sysreg.redb")).await);
        store
            .create(
                &genesis(),
                vec![
                    draft("s1", "{}").at_version(1),
                    draft("s2", "{}").at_version(2),
                ],
            )
            .await
            .unwrap();
        // Each writer drafts after the head it read and drafts again when it lost the race.
        let appends = (0..50).map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                loop {
                    let head = store.head().await.unwrap().unwrap().version;
                    let entry = draft(&format!("b{n}"), "{}").at_version(head + 1);
                    match store.append(entry, head).await {
                        Ok(entry) => return entry.version,
                        Err(BlueprintStoreError::Raced { .. }) => continue,
                        Err(err) => panic!("{err}"),
                    }
                }
            })
        });
        let mut allocated: Vec<u64> = Vec::new();
        for append in appends {
            allocated.push(append.await.unwrap());
        }
        allocated.sort_unstable();
        assert_eq!(allocated, (3..=52).collect::<Vec<u64>>());
        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!(versions(&loaded.entries), (1..=52).collect::<Vec<u64>>());
        assert!(
            loaded
                .entries
                .iter()
                .all(SystemRegisterEntry::checksum_holds)
        );
    }

    /// An append drafted after a head that moved is refused and writes nothing.
    #[tokio::test]
    async fn a_raced_append_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        store.create(&genesis(), seed()).await.unwrap();
        let first = store
            .append(draft("a", "{}").at_version(2), 1)
            .await
            .unwrap();
        assert!(matches!(
            store.append(draft("b", "{}").at_version(2), 1).await,
            Err(BlueprintStoreError::Raced { head: 2 })
        ));
        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!(loaded.entries.last(), Some(&first));
        assert_eq!(versions(&loaded.entries), [1, 2]);
    }

    #[tokio::test]
    async fn entries_after_reads_only_the_later_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        assert!(store.entries_after(0).await.unwrap().is_empty());
        store.create(&genesis(), seed()).await.unwrap();
        for (name, held) in [("a", 1), ("b", 2), ("c", 3)] {
            store
                .append(draft(name, "{}").at_version(held + 1), held)
                .await
                .unwrap();
        }
        assert_eq!(
            versions(&store.entries_after(0).await.unwrap()),
            [1, 2, 3, 4]
        );
        assert_eq!(versions(&store.entries_after(2).await.unwrap()), [3, 4]);
        assert!(store.entries_after(4).await.unwrap().is_empty());
        assert!(store.entries_after(u64::MAX).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_undecodable_entry_makes_the_register_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        store.create(&genesis(), seed()).await.unwrap();
        store
            .append(draft("a", "{}").at_version(2), 1)
            .await
            .unwrap();
        store
            .append(draft("b", "{}").at_version(3), 2)
            .await
            .unwrap();
        raw_insert(&store, 2, b"{not json");

        let loaded = store.load().await;
        let Err(BlueprintStoreError::Corrupt { what }) = loaded else {
            panic!("expected Corrupt, got {loaded:?}");
        };
        assert!(what.contains("version 2"), "{what}");
        assert!(matches!(
            store.entries_after(1).await,
            Err(BlueprintStoreError::Corrupt { .. })
        ));
        // Reads past the damage still work: an incremental catch-up is not blocked by it.
        assert_eq!(versions(&store.entries_after(2).await.unwrap()), [3]);
    }

    #[tokio::test]
    async fn an_entry_under_another_version_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        store.create(&genesis(), seed()).await.unwrap();
        let moved = encode(&draft("a", "{}").at_version(9));
        raw_insert(&store, 2, &moved);
        let loaded = store.load().await;
        let Err(BlueprintStoreError::Corrupt { what }) = loaded else {
            panic!("expected Corrupt, got {loaded:?}");
        };
        assert!(what.contains("version 2"), "{what}");
    }

    #[tokio::test]
    async fn an_undecodable_genesis_or_a_missing_one_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        store.create(&genesis(), seed()).await.unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(GENESIS)
            .unwrap()
            .insert(GENESIS_KEY, b"[]".as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert!(matches!(
            store.load().await,
            Err(BlueprintStoreError::Corrupt { what }) if what.contains("genesis")
        ));

        let txn = store.db.begin_write().unwrap();
        txn.open_table(GENESIS)
            .unwrap()
            .remove(GENESIS_KEY)
            .unwrap();
        txn.commit().unwrap();
        assert!(matches!(
            store.load().await,
            Err(BlueprintStoreError::Corrupt { what }) if what.contains("genesis")
        ));
        // Creating over the orphaned entries would mix two histories: refused.
        assert!(matches!(
            store.create(&genesis(), seed()).await,
            Err(BlueprintStoreError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn appending_before_create_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        assert!(matches!(
            store.append(draft("a", "{}").at_version(1), 0).await,
            Err(BlueprintStoreError::Corrupt { .. })
        ));
        assert_eq!(store.load().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_create_without_seeds_starts_the_counter_at_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("sysreg.redb")).await;
        assert!(
            store
                .create(&genesis(), Vec::new())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .append(draft("a", "{}").at_version(1), 0)
                .await
                .unwrap()
                .version,
            1
        );
    }
}
