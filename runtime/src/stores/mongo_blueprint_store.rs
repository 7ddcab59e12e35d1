//! `MongoBlueprintStore`: the system register in MongoDB, shared by several hubs. Every hub
//! appends through the same database; MongoDB's transactions allocate the versions.
//!
//! Layout (two collections of the configured database):
//! - `system_register_meta`: one document, `{_id: "register", historyId, genesis: <JSON of
//!   Genesis>, version, restores}`: the genesis and the version counter (the last version
//!   issued) together, so that `head` is one read of one document; `restores` counts restores
//!   that wrote something (so that every write changes this document, which the watch follows);
//! - `system_register_blueprints`: one document per entry, `{version, blueprintId, kind,
//!   checksum, signedBy, entry: <JSON of SystemRegisterEntry>}` (the JSON carries the version and
//!   the signature too; `load` checks that the version and the signing key id agree; `signedBy`
//!   is null for an unsigned entry), with unique indexes on `version` and on `blueprintId` +
//!   `version`.
//!
//! Atomicity and gap-free versions: `create`, `append` and `restore` are one transaction each
//! (see `MongoConnection::transaction`: snapshot reads, majority writes). An append is exact: it
//! moves the counter with `findOneAndUpdate({_id: "register", version: <entry's version - 1>},
//! {$inc: {version: 1}})` and inserts the entry (signed by its hub, at the version it was
//! drafted for) in the same transaction: both are committed or neither, so no version is
//! skipped or issued twice, and the unique index on `version` refuses a second entry at one
//! version whatever happens. Two hubs appending at once both write the counter document:
//! MongoDB lets one transaction commit and fails the other with a write conflict, which runs
//! again and then finds the counter moved. A counter that does not match (or one below the
//! hub's `known_head`) is read back: below `known_head` the answer is `Behind`, otherwise
//! `Raced`; nothing is written. `restore` reads the genesis and every given version first and writes only
//! when nothing conflicts: the genesis if absent, the missing entries, and the counter if it
//! was below the highest given version (never lowers it). A refused call aborts its
//! transaction, so nothing it did is kept.
//!
//! Reads: `load` reads the counter document and every entry in one snapshot transaction (a
//! consistent register even while other hubs append); `entries_after` reads the counter, then
//! the entries up to it, and reports a missing one as `Corrupt`.
//!
//! Watch: a change stream on `system_register_meta` (every append, create and restore that wrote
//! something changes the counter document). After it opens, the first time included, the
//! stream yields the counter's current value (when above 0), then the counter after each
//! change: a yielded version means "entries up to this version exist". It ends when the change
//! stream breaks; the hub watches again after a backoff and catches up meanwhile.
//!
//! Durability: acknowledged writes are majority-committed, so a failover keeps them; a store
//! restored from an older backup is behind the hubs, which write back what it lost (`Behind`,
//! then `restore`). Deliberately not done here: checksums and the order of versions (the
//! authority validates the register), and documents beyond MongoDB's 16 MiB document limit
//! (an entry whose JSON is larger cannot be stored; the register's own limit is the document's
//! 16 MiB, so the largest documents fit only in Redis and redb).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{ClientSession, Collection, IndexModel};
use tokio::sync::OnceCell;
use tracing::debug;

use herald_actors::ports::{
    BlueprintStore, BlueprintStoreError, RestoreConflict, RestoreReport, StoreHead, StoredRegister,
    append_check, check_seed, restore_plan, same_entry,
};
use herald_messages::{Genesis, HistoryId, SystemRegisterEntry};

use super::mongo_connection::{
    DUPLICATE_KEY, Failure, MongoConnection, MongoOpenError, Step, Timed,
};
use crate::config::MongoConfig;

/// Collection of the entries.
pub const ENTRIES_COLLECTION: &str = "system_register_blueprints";
/// Collection of the genesis and the version counter.
pub const META_COLLECTION: &str = "system_register_meta";

/// The system register in MongoDB, shared by the hubs that use the same database. Cheap to
/// share (`Arc<dyn BlueprintStore>`).
pub struct MongoBlueprintStore {
    inner: Arc<Inner>,
}

impl MongoBlueprintStore {
    /// Checks the URL and builds the client; does not connect (the first call does).
    pub async fn open(config: &MongoConfig) -> Result<Self, MongoOpenError> {
        Ok(Self {
            inner: Arc::new(Inner {
                connection: MongoConnection::open(config).await?,
                indexed: OnceCell::new(),
            }),
        })
    }
}

#[async_trait]
impl BlueprintStore for MongoBlueprintStore {
    async fn load(&self) -> Result<Option<StoredRegister>, BlueprintStoreError> {
        let inner = &*self.inner;
        inner.ready().await?;
        let (counter, records) = inner
            .connection
            .transaction(inner, |session, inner| {
                async move {
                    let counter = inner.counter_record(Some(&mut *session)).await?;
                    let mut cursor = inner
                        .entries()
                        .find(doc! {})
                        .sort(doc! { "version": 1 })
                        .session(&mut *session)
                        .await?;
                    let records: Vec<Document> = cursor.stream(&mut *session).try_collect().await?;
                    Ok(Step::Commit((counter, records)))
                }
                .boxed()
            })
            .await
            .map_err(store_error)?;
        let Some(counter) = counter else {
            if !records.is_empty() {
                return Err(orphans());
            }
            return Ok(None);
        };
        let register = decode_register_record(&counter)?;
        let mut entries = Vec::with_capacity(records.len());
        for record in &records {
            entries.push(decode_entry(record)?);
        }
        if let Some(last) = entries.last()
            && last.version > register.version
        {
            return Err(corrupt(format!(
                "entry {} is above the version counter ({})",
                last.version, register.version
            )));
        }
        Ok(Some(StoredRegister {
            genesis: register.genesis,
            entries,
        }))
    }

    async fn create(
        &self,
        genesis: &Genesis,
        seed: Vec<SystemRegisterEntry>,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        let inner = &*self.inner;
        inner.ready().await?;
        check_seed(&seed)?;
        let entries = seed;
        let record = register_record(genesis, last_version(&entries))?;
        let documents = entries
            .iter()
            .map(entry_record)
            .collect::<Result<Vec<Document>, BlueprintStoreError>>()?;
        let context = (inner, record, documents);
        let outcome = inner
            .connection
            .transaction(&context, |session, (inner, record, documents)| {
                async move {
                    if let Some(existing) = inner.counter_record(Some(&mut *session)).await? {
                        return Ok(Step::Abort(Created::Before(existing)));
                    }
                    if inner.has_entries(session).await? {
                        return Ok(Step::Abort(Created::Orphans));
                    }
                    inner
                        .meta()
                        .insert_one(record)
                        .session(&mut *session)
                        .await?;
                    if !documents.is_empty() {
                        inner
                            .entries()
                            .insert_many(documents)
                            .session(&mut *session)
                            .await?;
                    }
                    Ok(Step::Commit(Created::Now))
                }
                .boxed()
            })
            .await;
        let created = match outcome {
            Ok(created) => created,
            // Another hub created it between the check and the insert.
            Err(failure) if failure.code() == Some(DUPLICATE_KEY) => {
                match inner
                    .counter_record(None)
                    .await
                    .map_err(|err| store_error(err.into()))?
                {
                    Some(existing) => Created::Before(existing),
                    None => return Err(store_error(failure)),
                }
            }
            Err(failure) => return Err(store_error(failure)),
        };
        match created {
            Created::Now => Ok(entries),
            // Our own earlier attempt (the same random history id) is no rival.
            Created::Before(existing)
                if existing.get_str("genesis").ok() == context.1.get_str("genesis").ok() =>
            {
                Ok(entries)
            }
            Created::Before(_) => Err(BlueprintStoreError::AlreadyCreated),
            Created::Orphans => Err(orphans()),
        }
    }

    async fn append(
        &self,
        entry: SystemRegisterEntry,
        known_head: u64,
    ) -> Result<SystemRegisterEntry, BlueprintStoreError> {
        let inner = &*self.inner;
        inner.ready().await?;
        let record = entry_record(&entry)?;
        // The counter must be exactly the version before the entry's, and not below the hub's
        // known head (else no counter can match: read it and say why).
        let previous = entry.version.checked_sub(1).filter(|p| *p >= known_head);
        let previous = previous.map(signed).transpose()?;
        let context = (inner, record, previous);
        let outcome = inner
            .connection
            .transaction(&context, |session, (inner, record, previous)| {
                async move {
                    let advanced = match previous {
                        Some(previous) => {
                            inner
                                .meta()
                                .find_one_and_update(
                                    doc! { "_id": REGISTER, "version": *previous },
                                    doc! { "$inc": { "version": 1_i64 } },
                                )
                                .return_document(ReturnDocument::After)
                                .session(&mut *session)
                                .await?
                        }
                        None => None,
                    };
                    if advanced.is_none() {
                        let current = inner.counter_record(Some(&mut *session)).await?;
                        return Ok(Step::Abort(Appended::Refused(current)));
                    }
                    inner
                        .entries()
                        .insert_one(record.clone())
                        .session(&mut *session)
                        .await?;
                    Ok(Step::Commit(Appended::Written))
                }
                .boxed()
            })
            .await;
        let appended = match outcome {
            Ok(appended) => appended,
            Err(failure) if failure.code() == Some(DUPLICATE_KEY) => {
                return Err(corrupt(
                    "cannot append: the next version is already taken (the version counter is \
                     behind the entries)"
                        .to_owned(),
                ));
            }
            Err(failure) => return Err(store_error(failure)),
        };
        match appended {
            Appended::Written => Ok(entry),
            Appended::Refused(None) if known_head > 0 => {
                Err(BlueprintStoreError::Behind { store_head: 0 })
            }
            Appended::Refused(None) => Err(corrupt(
                "cannot append: the system register does not exist (no genesis record)".to_owned(),
            )),
            Appended::Refused(Some(record)) => {
                let register = decode_register_record(&record)?;
                append_check(register.version, &entry, known_head)?;
                Err(corrupt(format!(
                    "cannot append: the version counter ({}) did not match although it is \
                     right before version {}",
                    register.version, entry.version
                )))
            }
        }
    }

    async fn restore(
        &self,
        genesis: &Genesis,
        entries: &[Arc<SystemRegisterEntry>],
    ) -> Result<RestoreReport, BlueprintStoreError> {
        let inner = &*self.inner;
        inner.ready().await?;
        let plan = restore_plan(entries)?;
        let highest = last_version_of(&plan);
        let mut planned = Vec::with_capacity(plan.len());
        for entry in plan {
            planned.push((entry.version, entry.clone(), entry_record(entry)?));
        }
        let context = Restore {
            inner,
            genesis: register_record(genesis, highest)?,
            history_id: genesis.history_id.clone(),
            highest: signed(highest)?,
            planned,
        };
        // Two hubs restoring into an empty store may both insert the counter document or an
        // entry; the loser sees the winner's writes when it runs again.
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let outcome = inner
                .connection
                .transaction(&context, |session, restore| restore.run(session).boxed())
                .await;
            match outcome {
                Err(failure) if failure.code() == Some(DUPLICATE_KEY) && attempts < 5 => continue,
                other => break other,
            }
        };
        outcome.map_err(store_error)?
    }

    async fn head(&self) -> Result<Option<StoreHead>, BlueprintStoreError> {
        self.inner.ready().await?;
        self.inner.head().await
    }

    async fn entries_after(
        &self,
        after: u64,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        let inner = &*self.inner;
        inner.ready().await?;
        let Some(head) = inner.head().await? else {
            return Ok(Vec::new());
        };
        let Some(first) = after.checked_add(1).filter(|first| *first <= head.version) else {
            return Ok(Vec::new());
        };
        let (from, to) = (signed(first)?, signed(head.version)?);
        let find = async {
            inner
                .entries()
                .find(doc! { "version": { "$gte": from, "$lte": to } })
                .sort(doc! { "version": 1 })
                .await?
                .try_collect::<Vec<Document>>()
                .await
        };
        let records = inner.connection.timed(find).await.map_err(store_error)?;
        let mut entries = Vec::with_capacity(records.len());
        let mut expected = first;
        for record in &records {
            let entry = decode_entry(record)?;
            if entry.version != expected {
                break;
            }
            expected += 1;
            entries.push(entry);
        }
        if expected <= head.version {
            return Err(corrupt(format!(
                "entry at version {expected} is missing (the counter is at {})",
                head.version
            )));
        }
        Ok(entries)
    }

    async fn watch(&self) -> Result<Option<BoxStream<'static, u64>>, BlueprintStoreError> {
        let inner = Arc::clone(&self.inner);
        inner.ready().await?;
        let changes = inner
            .connection
            .timed(inner.meta().watch())
            .await
            .map_err(store_error)?;
        let watching = Watching {
            inner,
            changes,
            first: true,
        };
        let versions = futures::stream::unfold(Some(watching), |watching| async move {
            let mut watching = watching?;
            let version = watching.next_version().await?;
            Some((version, Some(watching)))
        });
        Ok(Some(versions.boxed()))
    }

    fn describe(&self) -> String {
        format!("{} (system register)", self.inner.connection.describe())
    }
}

/// The `_id` of the counter document.
const REGISTER: &str = "register";

/// What the store and its watches share.
struct Inner {
    connection: MongoConnection,
    /// Set once the indexes exist (made on first use, retried until they are).
    indexed: OnceCell<()>,
}

/// What `create`'s transaction found.
enum Created {
    Now,
    /// A register exists: its counter document.
    Before(Document),
    Orphans,
}

/// What `append`'s transaction did.
enum Appended {
    Written,
    /// The counter did not match: the counter document as it is (none: no register).
    Refused(Option<Document>),
}

/// A decoded counter document.
struct RegisterRecord {
    genesis: Genesis,
    version: u64,
}

/// A restore's arguments, encoded once for every run of its transaction.
struct Restore<'a> {
    inner: &'a Inner,
    /// The counter document to insert when the store has none.
    genesis: Document,
    history_id: HistoryId,
    highest: i64,
    planned: Vec<(u64, SystemRegisterEntry, Document)>,
}

impl Restore<'_> {
    /// Compares, then writes only when nothing conflicts (a refusal aborts: nothing written).
    async fn run(
        &self,
        session: &mut ClientSession,
    ) -> Result<Step<Result<RestoreReport, BlueprintStoreError>>, mongodb::error::Error> {
        let inner = self.inner;
        let stored = inner.counter_record(Some(&mut *session)).await?;
        let counter = match &stored {
            Some(record) => match decode_register_record(record) {
                Ok(register) if register.genesis.history_id != self.history_id => {
                    return Ok(Step::Abort(Err(BlueprintStoreError::Conflict(
                        RestoreConflict::History {
                            stored: register.genesis.history_id,
                            restored: self.history_id.clone(),
                        },
                    ))));
                }
                Ok(register) => Some(register.version),
                Err(err) => return Ok(Step::Abort(Err(err))),
            },
            None if inner.has_entries(session).await? => {
                return Ok(Step::Abort(Err(orphans())));
            }
            None => None,
        };
        let versions: Vec<i64> = self
            .planned
            .iter()
            .map(|(version, _, record)| record.get_i64("version").unwrap_or(version.cast_signed()))
            .collect();
        let mut cursor = inner
            .entries()
            .find(doc! { "version": { "$in": versions } })
            .session(&mut *session)
            .await?;
        let held: Vec<Document> = cursor.stream(&mut *session).try_collect().await?;
        let mut held_by_version: BTreeMap<u64, SystemRegisterEntry> = BTreeMap::new();
        for record in &held {
            match decode_entry(record) {
                Ok(entry) => {
                    held_by_version.insert(entry.version, entry);
                }
                Err(err) => return Ok(Step::Abort(Err(err))),
            }
        }
        let mut missing = Vec::new();
        for (version, entry, record) in &self.planned {
            match held_by_version.get(version) {
                None => missing.push(record),
                Some(stored) if same_entry(stored, entry) => {}
                Some(_) => {
                    return Ok(Step::Abort(Err(BlueprintStoreError::Conflict(
                        RestoreConflict::Entry { version: *version },
                    ))));
                }
            }
        }
        let genesis_written = counter.is_none();
        let head = counter.unwrap_or(0).max(self.highest.unsigned_abs());
        if genesis_written {
            inner
                .meta()
                .insert_one(&self.genesis)
                .session(&mut *session)
                .await?;
        } else if !missing.is_empty() || self.highest.unsigned_abs() > counter.unwrap_or(0) {
            inner
                .meta()
                .update_one(
                    doc! { "_id": REGISTER },
                    doc! { "$max": { "version": self.highest }, "$inc": { "restores": 1_i64 } },
                )
                .session(&mut *session)
                .await?;
        }
        if !missing.is_empty() {
            inner
                .entries()
                .insert_many(missing.iter().copied())
                .session(&mut *session)
                .await?;
        }
        let report = RestoreReport {
            entries_written: missing.len(),
            genesis_written,
            head,
        };
        if genesis_written || !missing.is_empty() || head > counter.unwrap_or(0) {
            Ok(Step::Commit(Ok(report)))
        } else {
            Ok(Step::Abort(Ok(report)))
        }
    }
}

impl Inner {
    fn meta(&self) -> Collection<Document> {
        self.connection.collection(META_COLLECTION)
    }

    fn entries(&self) -> Collection<Document> {
        self.connection.collection(ENTRIES_COLLECTION)
    }

    /// Creates the unique indexes (and with them the collections) before the first call.
    async fn ready(&self) -> Result<(), BlueprintStoreError> {
        self.indexed
            .get_or_try_init(|| async {
                let unique = |name: &str| {
                    IndexOptions::builder()
                        .name(name.to_owned())
                        .unique(true)
                        .build()
                };
                let version = IndexModel::builder()
                    .keys(doc! { "version": 1 })
                    .options(unique("version"))
                    .build();
                let blueprint_version = IndexModel::builder()
                    .keys(doc! { "blueprintId": 1, "version": 1 })
                    .options(unique("blueprintId_version"))
                    .build();
                let create = async {
                    self.entries()
                        .create_indexes([version, blueprint_version])
                        .await?;
                    self.connection.ensure_collection(META_COLLECTION).await
                };
                self.connection.timed(create).await.map_err(store_error)
            })
            .await
            .map(|_| ())
    }

    /// The counter document, if any (inside a transaction when a session is given).
    async fn counter_record(
        &self,
        session: Option<&mut ClientSession>,
    ) -> Result<Option<Document>, mongodb::error::Error> {
        let meta = self.meta();
        let find = meta.find_one(doc! { "_id": REGISTER });
        match session {
            Some(session) => find.session(session).await,
            None => find.await,
        }
    }

    /// Whether any entry is stored (inside the transaction).
    async fn has_entries(
        &self,
        session: &mut ClientSession,
    ) -> Result<bool, mongodb::error::Error> {
        let found = self
            .entries()
            .find_one(doc! {})
            .projection(doc! { "_id": 1 })
            .session(session)
            .await?;
        Ok(found.is_some())
    }

    async fn head(&self) -> Result<Option<StoreHead>, BlueprintStoreError> {
        let read = async {
            let record = self.counter_record(None).await?;
            let orphans = match record {
                Some(_) => false,
                None => self.entries().find_one(doc! {}).await?.is_some(),
            };
            Ok((record, orphans))
        };
        let (record, orphaned) = self.connection.timed(read).await.map_err(store_error)?;
        let Some(record) = record else {
            if orphaned {
                return Err(orphans());
            }
            return Ok(None);
        };
        let register = decode_register_record(&record)?;
        Ok(Some(StoreHead {
            history_id: register.genesis.history_id,
            version: register.version,
        }))
    }
}

/// A watch: the change stream and whether the current counter was yielded yet.
struct Watching {
    inner: Arc<Inner>,
    changes: ChangeStream<ChangeStreamEvent<Document>>,
    first: bool,
}

impl Watching {
    /// The counter now (at once after opening), then after each change; `None` when the
    /// change stream broke or the counter cannot be read (the watch ends).
    async fn next_version(&mut self) -> Option<u64> {
        let store = self.inner.connection.describe().to_owned();
        loop {
            if !self.first {
                match self.changes.next().await {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        debug!(%store, %err, "system register watch broke");
                        return None;
                    }
                    None => return None,
                }
            }
            self.first = false;
            match self.inner.head().await {
                Ok(Some(head)) if head.version > 0 => return Some(head.version),
                Ok(_) => {}
                Err(err) => {
                    debug!(%store, err = %herald_actors::ports::error_chain(&err), "cannot read the version counter");
                    return None;
                }
            }
        }
    }
}

/// The counter document of a register created with `genesis`, at `version`.
fn register_record(genesis: &Genesis, version: u64) -> Result<Document, BlueprintStoreError> {
    let json = serde_json::to_string(genesis).expect("a genesis record encodes as JSON");
    Ok(doc! {
        "_id": REGISTER,
        "historyId": genesis.history_id.as_str(),
        "genesis": json,
        "version": signed(version)?,
        "restores": 0_i64,
    })
}

fn decode_register_record(record: &Document) -> Result<RegisterRecord, BlueprintStoreError> {
    let genesis: Genesis = record
        .get_str("genesis")
        .ok()
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| corrupt("the genesis record does not decode".to_owned()))?;
    let version = match record.get("version") {
        Some(Bson::Int64(version)) if *version >= 0 => version.unsigned_abs(),
        Some(Bson::Int32(version)) if *version >= 0 => u64::from(version.unsigned_abs()),
        other => {
            return Err(corrupt(format!(
                "the version counter {other:?} is not a non-negative integer"
            )));
        }
    };
    Ok(RegisterRecord { genesis, version })
}

/// An entry's document: the fields the indexes and `restore` use, and the entry's JSON.
fn entry_record(entry: &SystemRegisterEntry) -> Result<Document, BlueprintStoreError> {
    let json = serde_json::to_string(entry)
        .expect("an entry encodes as JSON (documents are UTF-8 JSON text)");
    let kind = serde_json::to_value(entry.kind)
        .ok()
        .and_then(|kind| kind.as_str().map(str::to_owned))
        .expect("an entry kind encodes as a JSON string (a unit variant)");
    Ok(doc! {
        "version": signed(entry.version)?,
        "blueprintId": entry.blueprint_id.as_str(),
        "kind": kind,
        "checksum": entry.checksum.as_str(),
        "signedBy": entry.signature.as_ref().map(|signature| signature.key_id.to_string()),
        "entry": json,
    })
}

/// Decodes an entry's document; one that does not decode, or whose JSON names another version
/// than its `version` field, is corrupt.
fn decode_entry(record: &Document) -> Result<SystemRegisterEntry, BlueprintStoreError> {
    let version = match record.get("version") {
        Some(Bson::Int64(version)) if *version > 0 => version.unsigned_abs(),
        Some(Bson::Int32(version)) if *version > 0 => u64::from(version.unsigned_abs()),
        other => {
            return Err(corrupt(format!(
                "an entry's version {other:?} is not a version"
            )));
        }
    };
    let json = record
        .get_str("entry")
        .map_err(|_| corrupt(format!("entry at version {version} has no entry JSON")))?;
    let entry: SystemRegisterEntry = serde_json::from_str(json)
        .map_err(|err| corrupt(format!("entry at version {version} does not decode: {err}")))?;
    if entry.version != version {
        return Err(corrupt(format!(
            "the record at version {version} holds an entry of version {}",
            entry.version
        )));
    }
    let signed_by = entry.signature.as_ref().map(|s| s.key_id.to_string());
    if record.get_str("signedBy").ok() != signed_by.as_deref() {
        return Err(corrupt(format!(
            "the record at version {version} names another signing key than its entry"
        )));
    }
    Ok(entry)
}

fn last_version(entries: &[SystemRegisterEntry]) -> u64 {
    entries.last().map_or(0, |entry| entry.version)
}

fn last_version_of(plan: &[&SystemRegisterEntry]) -> u64 {
    plan.last().map_or(0, |entry| entry.version)
}

/// A version as BSON's signed integer; versions count up from 1 and never get near 2^63.
fn signed(version: u64) -> Result<i64, BlueprintStoreError> {
    i64::try_from(version).map_err(|_| {
        corrupt(format!(
            "version {version} is beyond what MongoDB can store"
        ))
    })
}

fn orphans() -> BlueprintStoreError {
    corrupt("entries are stored but the genesis record (and version counter) is missing".to_owned())
}

fn corrupt(what: String) -> BlueprintStoreError {
    BlueprintStoreError::Corrupt { what }
}

/// Unreachable servers, timeouts, elections and refusals are transient: `Unavailable`. A
/// document this adapter cannot read is `Corrupt`.
fn store_error(failure: Timed) -> BlueprintStoreError {
    match failure.classify() {
        Failure::Corrupt(what) => BlueprintStoreError::Corrupt { what },
        Failure::Transient => BlueprintStoreError::Unavailable(failure.into_box()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herald_messages::{BlueprintId, EntryDraft, EntryKind, NodeId, RegisterId, Timestamp};

    use super::*;

    fn entry(version: u64) -> SystemRegisterEntry {
        EntryDraft {
            blueprint_id: BlueprintId::parse("register-creation-v1").unwrap(),
            kind: EntryKind::Updated,
            document: r#"{"a":1}"#.to_owned().into(),
            published_at: Timestamp::from_unix_millis(1_700_000_000_000),
            published_by: "admin".to_owned(),
            transaction_id: "tx".to_owned(),
            metadata: BTreeMap::new(),
        }
        .at_version(version)
    }

    #[test]
    fn an_entry_round_trips_through_its_document() {
        let original = entry(7);
        let record = entry_record(&original).unwrap();
        assert_eq!(record.get_i64("version").unwrap(), 7);
        assert_eq!(record.get_str("kind").unwrap(), "updated");
        assert_eq!(record.get_str("checksum").unwrap(), original.checksum);
        assert_eq!(decode_entry(&record).unwrap(), original);

        let mut misplaced = record.clone();
        misplaced.insert("version", 8_i64);
        assert!(matches!(
            decode_entry(&misplaced),
            Err(BlueprintStoreError::Corrupt { .. })
        ));
        assert!(signed(u64::MAX).is_err());
    }

    #[test]
    fn the_counter_document_round_trips() {
        let genesis = Genesis {
            register_id: RegisterId::system(),
            history_id: HistoryId::from_bytes([3; 16]),
            created_at: Timestamp::from_unix_millis(1_700_000_000_000),
            created_by: NodeId::parse("hub-1").unwrap(),
        };
        let record = register_record(&genesis, 5).unwrap();
        let decoded = decode_register_record(&record).unwrap();
        assert_eq!((decoded.genesis, decoded.version), (genesis, 5));
    }
}
