//! `RedbGroundTruth`: the register role's registers in a redb file, its embedded ground truth.
//!
//! Layout (three tables):
//! - `registers`: register id → JSON of `Register`;
//! - `public_registers`: register id → `()`, the ids with `advertise = true`, so that
//!   `public_registers` is an indexed read rather than a scan of every register;
//! - `ground_truth_meta`: `"revision"` → the store's revision (u64);
//! - `ground_truth_epoch`: `"epoch"` → the store's epoch (32 hex characters), drawn at random when
//!   the file is created (or first opened by a version that knows epochs) and never changed: a
//!   full sync carries it, so that the pool can tell this store's revisions from another's.
//!
//! Every change (create, replace, delete) is one durable write transaction that updates the
//! register, the index and the revision together; the revision only grows, across reopen too, and
//! the changed register carries it. `public_registers` reads the registers and the revision in one
//! read transaction, a consistent snapshot. All redb work runs on tokio's blocking pool; redb's
//! error types never leave this file.
//!
//! Deliberately not done here: validating registers or patches and assigning times (the resync
//! driver does), and repairing an inconsistent index: an index entry without a public register
//! is reported as `Corrupt`, never silently dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use herald_actors::ports::{GroundTruth, GroundTruthError, PublicRegisters};
use herald_messages::{GroundTruthEpoch, Register, RegisterId};

use super::redb_file::{self, RedbFailure, RedbOpenError};

/// The register role's registers in a redb file.
pub struct RedbGroundTruth {
    db: Arc<Database>,
    path: PathBuf,
}

impl RedbGroundTruth {
    /// Opens (and creates, with its directory) the redb file at `path`.
    pub async fn open(path: &Path) -> Result<Self, RedbOpenError> {
        let db = redb_file::open(path, create_tables).await?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Runs `work` on the blocking pool. The outer `Result` carries redb's failures, the inner
    /// one the store's answer (a refusal such as `NotFound` included).
    async fn blocking<T, F>(&self, work: F) -> Result<T, GroundTruthError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<Result<T, GroundTruthError>, redb::Error> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|err| GroundTruthError::Unavailable(Box::new(err)))?
            .map_err(store_error)?
    }
}

#[async_trait]
impl GroundTruth for RedbGroundTruth {
    async fn public_registers(&self) -> Result<PublicRegisters, GroundTruthError> {
        self.blocking(|db| {
            let txn = db.begin_read()?;
            let index = txn.open_table(PUBLIC)?;
            let registers = txn.open_table(REGISTERS)?;
            let mut public = Vec::new();
            for entry in index.iter()? {
                let (indexed, _) = entry?;
                let id = indexed.value();
                let register = match registers.get(id)? {
                    Some(value) => decode(id, value.value()),
                    None => Err(corrupt(format!(
                        "public index names register {id}, which does not exist"
                    ))),
                };
                match register {
                    Ok(register) if register.advertise => public.push(register.to_ad_input()),
                    Ok(_) => {
                        return Ok(Err(corrupt(format!(
                            "public index names register {id}, which is not public"
                        ))));
                    }
                    Err(err) => return Ok(Err(err)),
                }
            }
            let revision = read_revision(&txn)?;
            let epoch = match read_epoch(&txn)? {
                Ok(epoch) => epoch,
                Err(err) => return Ok(Err(err)),
            };
            Ok(Ok(PublicRegisters {
                registers: public,
                revision,
                epoch,
            }))
        })
        .await
    }

    async fn get(&self, id: &RegisterId) -> Result<Option<Register>, GroundTruthError> {
        let wanted = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let registers = txn.open_table(REGISTERS)?;
            let found = registers.get(wanted.as_str())?;
            Ok(found
                .map(|value| decode(wanted.as_str(), value.value()))
                .transpose())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Register>, GroundTruthError> {
        self.blocking(|db| {
            let txn = db.begin_read()?;
            let registers = txn.open_table(REGISTERS)?;
            let mut all = Vec::new();
            for entry in registers.iter()? {
                let (id, value) = entry?;
                match decode(id.value(), value.value()) {
                    Ok(register) => all.push(register),
                    Err(err) => return Ok(Err(err)),
                }
            }
            Ok(Ok(all))
        })
        .await
    }

    async fn create(&self, register: Register) -> Result<Register, GroundTruthError> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let exists = txn
                .open_table(REGISTERS)?
                .get(register.register_id.as_str())?
                .is_some();
            if exists {
                txn.abort()?;
                return Ok(Err(GroundTruthError::AlreadyExists(register.register_id)));
            }
            let stored = put(&txn, register)?;
            txn.commit()?;
            Ok(Ok(stored))
        })
        .await
    }

    async fn replace(&self, register: Register) -> Result<Register, GroundTruthError> {
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let exists = txn
                .open_table(REGISTERS)?
                .get(register.register_id.as_str())?
                .is_some();
            if !exists {
                txn.abort()?;
                return Ok(Err(GroundTruthError::NotFound(register.register_id)));
            }
            let stored = put(&txn, register)?;
            txn.commit()?;
            Ok(Ok(stored))
        })
        .await
    }

    async fn delete(&self, id: &RegisterId) -> Result<bool, GroundTruthError> {
        let doomed = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let existed = txn
                .open_table(REGISTERS)?
                .remove(doomed.as_str())?
                .is_some();
            if !existed {
                txn.abort()?;
                return Ok(Ok(false));
            }
            txn.open_table(PUBLIC)?.remove(doomed.as_str())?;
            bump_revision(&txn)?;
            txn.commit()?;
            Ok(Ok(true))
        })
        .await
    }

    fn describe(&self) -> String {
        format!("redb:{}", self.path.display())
    }
}

const REGISTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("registers");
const PUBLIC: TableDefinition<&str, ()> = TableDefinition::new("public_registers");
const META: TableDefinition<&str, u64> = TableDefinition::new("ground_truth_meta");
const REVISION: &str = "revision";
const EPOCH_TABLE: TableDefinition<&str, &str> = TableDefinition::new("ground_truth_epoch");
const EPOCH: &str = "epoch";

/// Creates the tables, and the epoch when the file has none.
fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(REGISTERS)?;
    txn.open_table(PUBLIC)?;
    txn.open_table(META)?;
    let mut epoch = txn.open_table(EPOCH_TABLE)?;
    if epoch.get(EPOCH)?.is_none() {
        let created = GroundTruthEpoch::from_bytes(rand::random());
        epoch.insert(EPOCH, created.as_str())?;
    }
    Ok(())
}

/// The store's epoch; an unreadable one makes the store corrupt (its snapshots could not be
/// ordered).
fn read_epoch(
    txn: &ReadTransaction,
) -> Result<Result<GroundTruthEpoch, GroundTruthError>, redb::Error> {
    let table = txn.open_table(EPOCH_TABLE)?;
    let Some(value) = table.get(EPOCH)? else {
        return Ok(Err(corrupt("the ground truth has no epoch".to_owned())));
    };
    Ok(GroundTruthEpoch::parse(value.value())
        .map_err(|err| corrupt(format!("the ground truth's epoch: {err}"))))
}

/// Stores `register` under the next revision and keeps the index in step, inside `txn`.
fn put(txn: &WriteTransaction, mut register: Register) -> Result<Register, redb::Error> {
    register.revision = bump_revision(txn)?;
    let id = register.register_id.as_str();
    let value = serde_json::to_vec(&register).expect("a register encodes as JSON");
    txn.open_table(REGISTERS)?.insert(id, value.as_slice())?;
    let mut index = txn.open_table(PUBLIC)?;
    if register.advertise {
        index.insert(id, ())?;
    } else {
        index.remove(id)?;
    }
    Ok(register)
}

/// Increments the stored revision and returns the new one.
fn bump_revision(txn: &WriteTransaction) -> Result<u64, redb::Error> {
    let mut meta = txn.open_table(META)?;
    let current = meta.get(REVISION)?.map_or(0, |value| value.value());
    let next = current + 1;
    meta.insert(REVISION, next)?;
    Ok(next)
}

fn read_revision(txn: &ReadTransaction) -> Result<u64, redb::Error> {
    let meta = txn.open_table(META)?;
    Ok(meta.get(REVISION)?.map_or(0, |value| value.value()))
}

/// Decodes the register stored under `id`; a record that does not decode, or names another
/// register, is corrupt.
fn decode(id: &str, bytes: &[u8]) -> Result<Register, GroundTruthError> {
    let register: Register = serde_json::from_slice(bytes)
        .map_err(|err| corrupt(format!("register {id} does not decode: {err}")))?;
    if register.register_id.as_str() != id {
        return Err(corrupt(format!(
            "record {id} holds register {}",
            register.register_id
        )));
    }
    Ok(register)
}

fn corrupt(what: String) -> GroundTruthError {
    GroundTruthError::Corrupt { what }
}

fn store_error(err: redb::Error) -> GroundTruthError {
    match redb_file::classify(err) {
        RedbFailure::Corrupt(what) => GroundTruthError::Corrupt { what },
        RedbFailure::Transient(err) => GroundTruthError::Unavailable(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use herald_messages::Timestamp;

    use super::*;

    fn id(n: u8) -> RegisterId {
        RegisterId::from_bytes([n; 16])
    }

    fn register(n: u8, advertise: bool) -> Register {
        Register {
            register_id: id(n),
            name: format!("register {n}"),
            description: None,
            advertise,
            latest_version: 1,
            latest_docket_version: 0,
            created_at: Timestamp::from_unix_millis(1_000),
            updated_at: Timestamp::from_unix_millis(1_000),
            revision: 0,
        }
    }

    async fn open(path: &Path) -> RedbGroundTruth {
        RedbGroundTruth::open(path).await.unwrap()
    }

    fn ids(registers: &[Register]) -> Vec<RegisterId> {
        registers.iter().map(|r| r.register_id.clone()).collect()
    }

    fn public_ids(registers: &[herald_messages::AdInput]) -> Vec<RegisterId> {
        registers.iter().map(|r| r.register_id.clone()).collect()
    }

    #[tokio::test]
    async fn create_get_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let truth = open(&dir.path().join("registers.redb")).await;
        assert_eq!(truth.list().await.unwrap(), Vec::new());
        assert_eq!(truth.get(&id(1)).await.unwrap(), None);
        let empty = truth.public_registers().await.unwrap();
        assert!(empty.registers.is_empty());
        assert_eq!(empty.revision, 0);

        let created = truth.create(register(2, true)).await.unwrap();
        assert_eq!(created.revision, 1);
        assert_eq!(
            created,
            Register {
                revision: 1,
                ..register(2, true)
            }
        );
        truth.create(register(1, false)).await.unwrap();

        assert_eq!(truth.get(&id(2)).await.unwrap(), Some(created.clone()));
        assert_eq!(ids(&truth.list().await.unwrap()), [id(1), id(2)]);
        let public = truth.public_registers().await.unwrap();
        assert_eq!(public.registers, vec![created.to_ad_input()]);
        assert_eq!(public.revision, 2);
        assert!(
            truth.describe().starts_with("redb:"),
            "{}",
            truth.describe()
        );
    }

    #[tokio::test]
    async fn create_of_an_existing_id_and_replace_of_a_missing_one_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let truth = open(&dir.path().join("registers.redb")).await;
        let first = truth.create(register(1, true)).await.unwrap();

        let again = truth.create(register(1, false)).await.unwrap_err();
        assert!(matches!(again, GroundTruthError::AlreadyExists(ref dup) if *dup == id(1)));
        let missing = truth.replace(register(2, true)).await.unwrap_err();
        assert!(matches!(missing, GroundTruthError::NotFound(ref gone) if *gone == id(2)));
        assert!(!truth.delete(&id(3)).await.unwrap());

        assert_eq!(truth.list().await.unwrap(), vec![first.clone()]);
        let public = truth.public_registers().await.unwrap();
        assert_eq!(public.registers, vec![first.to_ad_input()]);
        assert_eq!(
            public.revision, 1,
            "refused changes do not bump the revision"
        );
    }

    #[tokio::test]
    async fn the_public_index_follows_flag_flips_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let truth = open(&dir.path().join("registers.redb")).await;
        for n in 1..=5 {
            truth.create(register(n, n % 2 == 1)).await.unwrap();
        }
        let before = truth.public_registers().await.unwrap();
        assert_eq!(public_ids(&before.registers), [id(1), id(3), id(5)]);

        truth.replace(register(1, false)).await.unwrap(); // public → private
        truth.replace(register(2, true)).await.unwrap(); // private → public
        truth.replace(register(3, true)).await.unwrap(); // stays public
        truth.replace(register(4, false)).await.unwrap(); // stays private
        assert!(truth.delete(&id(5)).await.unwrap()); // a public one goes
        assert!(truth.delete(&id(4)).await.unwrap()); // a private one goes

        let after = truth.public_registers().await.unwrap();
        assert_eq!(public_ids(&after.registers), [id(2), id(3)]);
        assert!(after.registers.iter().all(|r| r.is_public));
        assert_eq!(ids(&truth.list().await.unwrap()), [id(1), id(2), id(3)]);
        assert_eq!(after.revision, 11);
        let replaced = truth.get(&id(3)).await.unwrap().unwrap();
        assert_eq!(replaced.revision, 8);
    }

    /// The epoch is what lets a pool tell a newer snapshot of this store from a snapshot of a
    /// re-created one: it stays across reopening, and a new file gets another.
    #[tokio::test]
    async fn the_epoch_is_created_with_the_file_and_kept_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registers.redb");
        let first = open(&path).await.public_registers().await.unwrap().epoch;
        let again = open(&path).await.public_registers().await.unwrap().epoch;
        assert_eq!(first, again);
        let other = open(&dir.path().join("other.redb"))
            .await
            .public_registers()
            .await
            .unwrap()
            .epoch;
        assert_ne!(first, other);
    }

    #[tokio::test]
    async fn the_revision_strictly_increases_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("registers.redb");
        let mut seen = Vec::new();
        {
            let truth = open(&path).await;
            seen.push(truth.create(register(1, true)).await.unwrap().revision);
            seen.push(truth.create(register(2, false)).await.unwrap().revision);
            seen.push(truth.replace(register(1, false)).await.unwrap().revision);
            assert!(truth.delete(&id(2)).await.unwrap());
            seen.push(truth.public_registers().await.unwrap().revision);
        }
        let truth = open(&path).await;
        assert_eq!(truth.public_registers().await.unwrap().revision, 4);
        seen.push(truth.create(register(3, true)).await.unwrap().revision);
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        // The registers themselves survived too.
        let reopened = truth.get(&id(1)).await.unwrap().unwrap();
        assert_eq!(reopened.revision, 3);
        assert!(!reopened.advertise);
        assert_eq!(
            public_ids(&truth.public_registers().await.unwrap().registers),
            [id(3)]
        );
    }

    #[tokio::test]
    async fn create_delete_create_works() {
        let dir = tempfile::tempdir().unwrap();
        let truth = open(&dir.path().join("registers.redb")).await;
        truth.create(register(1, true)).await.unwrap();
        assert!(truth.delete(&id(1)).await.unwrap());
        assert_eq!(truth.get(&id(1)).await.unwrap(), None);
        assert!(truth.public_registers().await.unwrap().registers.is_empty());

        let again = truth.create(register(1, false)).await.unwrap();
        assert_eq!(again.revision, 3);
        assert_eq!(truth.get(&id(1)).await.unwrap(), Some(again));
        assert!(truth.public_registers().await.unwrap().registers.is_empty());
    }

    #[tokio::test]
    async fn a_corrupt_record_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let truth = open(&dir.path().join("registers.redb")).await;
        truth.create(register(1, true)).await.unwrap();
        {
            let txn = truth.db.begin_write().unwrap();
            txn.open_table(REGISTERS)
                .unwrap()
                .insert(id(1).as_str(), b"{broken".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        for err in [
            truth.get(&id(1)).await.unwrap_err(),
            truth.list().await.unwrap_err(),
            truth.public_registers().await.unwrap_err(),
        ] {
            assert!(
                matches!(err, GroundTruthError::Corrupt { ref what } if what.contains(id(1).as_str())),
                "{err:?}"
            );
        }
    }
}
