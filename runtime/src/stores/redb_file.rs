//! What the redb adapters share: opening (and creating) a database file with its tables, and
//! sorting redb's failures into "corrupt" (retrying cannot help) and "transient".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, WriteTransaction};

use herald_actors::ports::{BoxError, StoreError};

/// Why a redb file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RedbOpenError {
    #[error("cannot create the directory {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the redb file {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
}

/// redb's page cache (reads and the write buffer of a transaction, which is flushed at half of
/// it). redb's default is 1 GiB, so a process that read or wrote a file of 100,000 ads kept the
/// file's pages besides the ads in memory (issue 11: 98 MB steady, 141 MB peak). Every read of
/// these stores is a scan done once (a load) or a point read of one small record, so a small
/// cache costs no measurable time (BENCHMARKS.md, the scale curve).
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Opens (and creates, with its directory) the file at `path` on the blocking pool, and creates
/// its tables with `create_tables` so that reads never meet a missing table. The page cache is
/// `CACHE_BYTES`.
pub(super) async fn open(
    path: &Path,
    create_tables: fn(&WriteTransaction) -> Result<(), redb::Error>,
) -> Result<Arc<Database>, RedbOpenError> {
    let owned_path = path.to_path_buf();
    let db = tokio::task::spawn_blocking(move || open_blocking(&owned_path, create_tables))
        .await
        .map_err(|err| RedbOpenError::Open {
            path: path.to_path_buf(),
            source: Box::new(err),
        })??;
    Ok(Arc::new(db))
}

fn open_blocking(
    path: &Path,
    create_tables: fn(&WriteTransaction) -> Result<(), redb::Error>,
) -> Result<Database, RedbOpenError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| RedbOpenError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let open_error = |err: redb::Error| RedbOpenError::Open {
        path: path.to_path_buf(),
        source: Box::new(err),
    };
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|err| open_error(err.into()))?;
    let create = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        create_tables(&txn)?;
        txn.commit()?;
        Ok(())
    };
    create().map_err(open_error)?;
    Ok(db)
}

/// A redb failure, sorted by what the caller can do about it.
pub(super) enum RedbFailure {
    /// Corruption or a schema mismatch: retrying the same call cannot help.
    Corrupt(String),
    /// Anything else (I/O, a closed database, a poisoned lock) may pass.
    Transient(redb::Error),
}

pub(super) fn classify(err: impl Into<redb::Error>) -> RedbFailure {
    let err: redb::Error = err.into();
    match err {
        redb::Error::Corrupted(what) => RedbFailure::Corrupt(what),
        redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TableDoesNotExist(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::ValueTooLarge(_) => RedbFailure::Corrupt(err.to_string()),
        other => RedbFailure::Transient(other),
    }
}

/// A redb failure as the `StoreError` of the ad and gossip stores.
pub(super) fn store_error(err: impl Into<redb::Error>) -> StoreError {
    match classify(err) {
        RedbFailure::Corrupt(what) => StoreError::Corrupt { what },
        RedbFailure::Transient(err) => StoreError::Unavailable(Box::new(err)),
    }
}
