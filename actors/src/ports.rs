//! The ports: traits through which the actors reach the outside world (stores, the pool of
//! another node, the clock). Adapters live in `herald-runtime`; fakes in `testing`.
//!
//! Each port has one error enum whose variants tell the caller what to do (retry, skip, give
//! up), never which library failed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use herald_messages::{
    AdInput, AdKey, Advertisement, BlueprintNotification, BulkAdvertise, BulkOutcome, Checkpoint,
    ConnectRequest, Genesis, GroundTruthEpoch, HeartbeatAck, HeartbeatRequest, HistoryId,
    HubEndpoint, NodeId, PersistedRecord, PoolMeta, Register, RegisterDigest, RegisterId,
    SessionGrant, SessionId, SyncQuery, SystemRegisterEntry, Timestamp,
};

/// A boxed error from an adapter's driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and its sources on one line (`outer: inner: …`), for logs and status reports.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where the advertisement pool keeps its ads (Redis, redb, memory).
///
/// An adapter stores the ads of one node; keys are namespaced by node id so nodes may share a
/// store. Beside the ads it keeps one meta record (`PoolMeta`), which is the pool's mark on the
/// store: every batch reads the record it replaces in the same atomic step and returns it, so
/// the pool sees at once when the store lost or rolled back what it wrote. The behaviour every
/// adapter shares is pinned by the contract suite in `tests/it/ad_stores.rs`.
#[async_trait]
pub trait AdStore: Send + Sync + 'static {
    /// Everything this node stored that the store has not expired. Records that cannot be
    /// decoded are skipped and named in `skipped`, never fatal.
    async fn load(&self) -> Result<StoredPool, StoreError>;

    /// Writes one batch (puts, deletes and the pool's meta record) as one atomic unit, and
    /// returns the meta record the store held just before it (`None` when there was none, or it
    /// did not decode), read in the same unit.
    ///
    /// The meta record is written when the batch is `BatchScope::Everything`, or when the store
    /// held one already: a batch of changes never recreates a lost record, so a store that lost
    /// its data keeps saying so until the pool has written everything again.
    ///
    /// Stores with a clock of their own (Redis) expire the node's records `expiry` after its
    /// last write (each batch renews them all; the pool rewrites everything well within
    /// `expiry` anyway); a store that would have to compare wall-clock stamps across runs (redb)
    /// keeps records until the pool deletes them, since no stored record's life may depend on
    /// the wall clock staying monotonic across runs.
    async fn write(
        &self,
        batch: &AdBatch<'_>,
        expiry: Duration,
    ) -> Result<Option<PoolMeta>, StoreError>;

    /// The meta record the store holds now (`None` when it has none, or it does not decode).
    async fn read_meta(&self) -> Result<Option<PoolMeta>, StoreError>;

    /// A short description for logs and status, e.g. `redis://127.0.0.1:6379 (node peer-a)`.
    fn describe(&self) -> String;
}

/// What `AdStore::load` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredPool {
    pub ads: Vec<Advertisement>,
    pub meta: Option<PoolMeta>,
    /// Keys of records that could not be decoded (skipped and counted).
    pub skipped: Vec<String>,
}

/// One write to an `AdStore`. It borrows the pool's book: nothing is copied on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdBatch<'a> {
    pub puts: Vec<&'a Advertisement>,
    pub deletes: Vec<&'a AdKey>,
    pub meta: PoolMeta,
    pub scope: BatchScope,
}

/// What a batch holds, which decides whether it may create the meta record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BatchScope {
    /// Changes since the last batch: the meta record is replaced only if the store holds one.
    #[default]
    Changes,
    /// Every ad the pool holds: the meta record is written whatever the store held.
    Everything,
}

/// Where a peer keeps its gossip state beside its ads (issue 9): one `PersistedRecord` per
/// origin, its own included (incarnation, highest version, floor, entries with their
/// withdrawals), so that a restart neither reuses one of its own versions nor reopens the door
/// to a delayed message about a withdrawn ad. Namespaced by node id like the `AdStore`; records
/// are kept until deleted (the gossip decides when an origin is forgotten, never a store clock).
#[async_trait]
pub trait GossipStore: Send + Sync + 'static {
    /// Every record stored for this node. Records that cannot be decoded are skipped and named
    /// in `skipped`, never fatal.
    async fn load(&self) -> Result<StoredGossip, StoreError>;

    /// Replaces the records of the origins in `batch.puts` and deletes the records of
    /// `batch.deletes`, as one atomic unit.
    async fn write(&self, batch: &GossipBatch<'_>) -> Result<(), StoreError>;

    /// A short description for logs and status.
    fn describe(&self) -> String;
}

/// What `GossipStore::load` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredGossip {
    pub records: Vec<PersistedRecord>,
    /// Keys of records that could not be decoded (skipped and counted).
    pub skipped: Vec<String>,
}

/// One write to a `GossipStore`: records to put (each replaces its origin's) and origins whose
/// record goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GossipBatch<'a> {
    pub puts: Vec<&'a PersistedRecord>,
    pub deletes: Vec<&'a NodeId>,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Transient: keep serving from memory, retry with backoff.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store answered with something it should not hold; the caller cannot fix it by
    /// retrying the same call.
    #[error("store corrupt: {what}")]
    Corrupt { what: String },
}

/// The register role's ground truth: which registers exist and which are public.
#[async_trait]
pub trait GroundTruth: Send + Sync + 'static {
    /// Every register with `advertise = true` (an indexed read, not a scan of all registers),
    /// as much of it as a push needs, and the store's revision at the time of the read (the
    /// revision is read first: the registers are at least that recent, never older).
    async fn public_registers(&self) -> Result<PublicRegisters, GroundTruthError>;
    async fn get(&self, id: &RegisterId) -> Result<Option<Register>, GroundTruthError>;
    async fn list(&self) -> Result<Vec<Register>, GroundTruthError>;
    /// Stores a new register; the store assigns its revision. Fails if the id exists.
    async fn create(&self, register: Register) -> Result<Register, GroundTruthError>;
    /// Replaces an existing register; the store assigns its revision.
    async fn replace(&self, register: Register) -> Result<Register, GroundTruthError>;
    /// Deletes a register; `Ok(false)` when there was none.
    async fn delete(&self, id: &RegisterId) -> Result<bool, GroundTruthError>;

    /// The ids of registers changed by anyone sharing the store (an operator editing it
    /// directly included, and this process's own changes), as they happen, from the moment
    /// this returns; an id may come more than once. The stream ends when the store can no
    /// longer tell: the caller then reads everything again and watches anew. `None` when the
    /// store cannot be changed behind this process's back (an embedded file), the default.
    async fn watch(&self) -> Result<Option<BoxStream<'static, RegisterId>>, GroundTruthError> {
        Ok(None)
    }

    fn describe(&self) -> String;
}

/// The public registers at one revision of the ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRegisters {
    /// What a push needs of each public register (`Register::to_ad_input`), ordered by id.
    pub registers: Vec<AdInput>,
    pub revision: u64,
    /// The store's epoch: random, created with the store, never changed. Revisions of two
    /// epochs do not compare (the store was replaced or re-created).
    pub epoch: GroundTruthEpoch,
}

/// Why a ground-truth call failed.
#[derive(Debug, thiserror::Error)]
pub enum GroundTruthError {
    /// Transient: retry later; nothing changed.
    #[error("ground truth unavailable")]
    Unavailable(#[source] BoxError),
    #[error("register {0} already exists")]
    AlreadyExists(RegisterId),
    #[error("register {0} not found")]
    NotFound(RegisterId),
    #[error("ground truth corrupt: {what}")]
    Corrupt { what: String },
}

/// How the register role reaches the pool: the local actor when both roles share a node, the
/// peer's HTTP API otherwise.
#[async_trait]
pub trait PoolLink: Send + Sync + 'static {
    async fn push(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolLinkError>;
    /// `local` or the peer's URL, for logs and status.
    fn describe(&self) -> String;
    /// After a failed push: resolves when the link sees the pool become reachable again, so
    /// the retry need not wait out its backoff. `None` (the default): the link cannot tell.
    fn until_ready(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        None
    }
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolLinkError {
    /// The pool could not be reached or did not answer in time: retry with backoff.
    #[error("pool unreachable")]
    Unreachable(#[source] BoxError),
    /// The pool answered and refused the request (stale snapshot, invalid input, bad token).
    #[error("pool refused the push: {0}")]
    Refused(String),
}

/// Wall-clock time for stored and reported times. Timers use `tokio::time`.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

// ---------------------------------------------------------------------------------------------
// Hub role: the system register's store
// ---------------------------------------------------------------------------------------------

/// Where a hub keeps the system register (redb for one hub; Redis shared by several hubs).
///
/// Appends are exact: the hub drafts an entry at the version after the one it holds (so it can
/// sign the entry with its version, `herald_messages::signed_payload`), and the store writes it
/// at that version atomically, or refuses and writes nothing: `Raced` when another hub sharing
/// the store appended first (the hub catches up and drafts again). **No version is ever issued
/// twice**: every hub holds the whole register in memory, and an append states the version its
/// hub holds or heard announced (`known_head`); a store whose head is below it lost entries
/// that hub holds (wiped, or it lost its last acknowledged writes) and refuses with `Behind`,
/// writing nothing. The hub then writes back what it holds with `restore` (same versions, same
/// checksums and signatures) and appends again.
#[async_trait]
pub trait BlueprintStore: Send + Sync + 'static {
    /// The genesis record and every entry ordered by version; `None` when the register was
    /// never created. Undecodable records are reported as `Corrupt`, never skipped: the hub
    /// must refuse a damaged register rather than serve part of it.
    async fn load(&self) -> Result<Option<StoredRegister>, BlueprintStoreError>;

    /// Creates the register with its genesis record and seed entries in one atomic step. The
    /// seed entries come at versions 1, 2, … in order (`check_seed`; signed by the hub like any
    /// entry) and are stored as given. `AlreadyCreated` when another hub created it first.
    async fn create(
        &self,
        genesis: &Genesis,
        seed: Vec<SystemRegisterEntry>,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError>;

    /// Appends `entry` at exactly its version, atomically, and answers it as stored: provided
    /// the store's head is at least `known_head` (the version the calling hub holds or heard
    /// announced) and is exactly `entry.version - 1`. A head below `known_head` is `Behind`; a
    /// head at least `known_head` but other than `entry.version - 1` is `Raced` (another hub
    /// appended first); neither writes anything. With `known_head` 0, an append to a register
    /// never created is `Corrupt`.
    async fn append(
        &self,
        entry: SystemRegisterEntry,
        known_head: u64,
    ) -> Result<SystemRegisterEntry, BlueprintStoreError>;

    /// Writes back what a hub holds, in one atomic step: the genesis record if the store lacks
    /// it, and every given entry the store lacks, at its own version and with its own checksum;
    /// then moves the version counter up to the highest given version (never down), and
    /// announces the new head to `watch`ers so other hubs catch up.
    ///
    /// An entry the store already holds at a given version must be the same entry (same
    /// blueprint, kind and checksum; the stored one is kept): otherwise, or when the stored
    /// genesis has another history id, the answer is `Conflict` and nothing is written. So a
    /// repeated restore, two hubs restoring the same register at once, or one restoring a
    /// prefix of what another restores all succeed and leave one register. `entries` may come
    /// in any order; the same entry given twice counts once, two different ones for one
    /// version are a `Conflict`. The store does not check checksums or gaps: give it every
    /// entry the hub holds, or at least every one above the store's head.
    async fn restore(
        &self,
        genesis: &Genesis,
        entries: &[Arc<SystemRegisterEntry>],
    ) -> Result<RestoreReport, BlueprintStoreError>;

    /// The stored genesis' history id and the version counter, in one cheap read: how a hub
    /// checks that the store still holds what it holds. `None` when there is no genesis record.
    async fn head(&self) -> Result<Option<StoreHead>, BlueprintStoreError>;

    /// Entries with a version above `after`, ordered.
    async fn entries_after(
        &self,
        after: u64,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError>;

    /// Versions appended (or restored) by anyone sharing the store (other hubs included), as they
    /// happen; `None` when this store has a single writer (the caller then knows of every append
    /// itself).
    async fn watch(&self) -> Result<Option<BoxStream<'static, u64>>, BlueprintStoreError>;

    fn describe(&self) -> String;
}

/// A system register as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRegister {
    pub genesis: Genesis,
    pub entries: Vec<SystemRegisterEntry>,
}

/// Where a stored register stands (`BlueprintStore::head`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHead {
    /// The stored genesis' history id.
    pub history_id: HistoryId,
    /// The version counter: the last version the store issued (0 before the first entry).
    pub version: u64,
}

/// What a `BlueprintStore::restore` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreReport {
    /// Given entries the store lacked and now holds (0: it held them all).
    pub entries_written: usize,
    /// Whether the store lacked the genesis record and now holds it (it had been wiped).
    pub genesis_written: bool,
    /// The store's version counter after the restore: at least the highest given version.
    pub head: u64,
}

/// Why a blueprint store call failed.
#[derive(Debug, thiserror::Error)]
pub enum BlueprintStoreError {
    /// Transient: retry later; nothing changed.
    #[error("blueprint store unavailable")]
    Unavailable(#[source] BoxError),
    /// Another hub created the register first: load it.
    #[error("the system register already exists")]
    AlreadyCreated,
    /// The store's head is below the version this hub holds: the store lost entries this hub
    /// holds (it was wiped, or lost its last acknowledged appends). Nothing was appended:
    /// restore them (`BlueprintStore::restore`), then retry.
    #[error("the blueprint store is behind this hub: its head is version {store_head}")]
    Behind { store_head: u64 },
    /// The store's head moved past the version the entry was drafted after (another hub
    /// appended first). Nothing was appended: catch up to `head`, draft again, retry.
    #[error("another hub appended first: the store's head is version {head}")]
    Raced { head: u64 },
    /// The store holds another register than the one given to `restore` (another history, or
    /// another entry at some version). Nothing was written; retrying will not help: the hub
    /// must not write to this store until a human decides which register is right.
    #[error("the blueprint store holds a different register")]
    Conflict(#[source] RestoreConflict),
    #[error("blueprint store corrupt: {what}")]
    Corrupt { what: String },
}

/// How the store's register differs from the one a hub tried to restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreConflict {
    /// The stored genesis belongs to another history.
    #[error("the stored history is {stored}, the restored one is {restored}")]
    History {
        stored: HistoryId,
        restored: HistoryId,
    },
    /// The store holds another entry at `version` (another blueprint, kind or checksum), or the
    /// restore itself gave two different entries for it.
    #[error("another entry is stored at version {version}")]
    Entry { version: u64 },
}

/// The entries of a `restore` as adapters write them: ordered by version, each version once.
/// Two different entries for one version (see `same_entry`) are a `Conflict`; an entry at
/// version 0 (no entry has it) is one too.
pub fn restore_plan(
    entries: &[Arc<SystemRegisterEntry>],
) -> Result<Vec<&SystemRegisterEntry>, BlueprintStoreError> {
    let mut plan: Vec<&SystemRegisterEntry> = entries.iter().map(AsRef::as_ref).collect();
    plan.sort_by_key(|entry| entry.version);
    plan.dedup_by(|later, earlier| later.version == earlier.version && same_entry(later, earlier));
    let repeated = plan
        .windows(2)
        .find(|pair| pair[0].version == pair[1].version);
    if let Some(pair) = repeated {
        return Err(entry_conflict(pair[0].version));
    }
    if plan.first().is_some_and(|entry| entry.version == 0) {
        return Err(entry_conflict(0));
    }
    Ok(plan)
}

/// Whether a stored entry is the one a restore gives for its version: same blueprint, kind and
/// checksum (the same publication; other fields are whatever the store kept).
pub fn same_entry(stored: &SystemRegisterEntry, restored: &SystemRegisterEntry) -> bool {
    stored.blueprint_id == restored.blueprint_id
        && stored.kind == restored.kind
        && stored.checksum == restored.checksum
}

/// What `append` does with the store's `head`: `Ok` to write `entry`, else why not (`Behind`
/// or `Raced`). Every adapter decides with this, inside its atomic step (the Redis adapter in
/// Lua, with the same rule).
pub fn append_check(
    head: u64,
    entry: &SystemRegisterEntry,
    known_head: u64,
) -> Result<(), BlueprintStoreError> {
    if head < known_head {
        return Err(BlueprintStoreError::Behind { store_head: head });
    }
    if head.checked_add(1) != Some(entry.version) {
        return Err(BlueprintStoreError::Raced { head });
    }
    Ok(())
}

/// The seed of a `create`: versions 1, 2, … in order, else `Corrupt` (a caller's mistake that
/// would store a register failing validation).
pub fn check_seed(seed: &[SystemRegisterEntry]) -> Result<(), BlueprintStoreError> {
    let misplaced = seed
        .iter()
        .zip(1..)
        .find(|(entry, version)| entry.version != *version);
    if let Some((entry, version)) = misplaced {
        return Err(BlueprintStoreError::Corrupt {
            what: format!(
                "cannot create: seed entry {version} is at version {}",
                entry.version
            ),
        });
    }
    Ok(())
}

fn entry_conflict(version: u64) -> BlueprintStoreError {
    BlueprintStoreError::Conflict(RestoreConflict::Entry { version })
}

// ---------------------------------------------------------------------------------------------
// Peer role: the replica's store and the link to hubs
// ---------------------------------------------------------------------------------------------

/// Where a peer keeps its replica of the system register and its checkpoint.
#[async_trait]
pub trait ReplicaStore: Send + Sync + 'static {
    /// The latest entry of each blueprint, and the checkpoint (absent before the first sync).
    async fn load(&self) -> Result<StoredReplica, ReplicaStoreError>;

    /// Makes `entries` durable (after removing every entry first when `replace_all`: a full
    /// sync), and only then writes `checkpoint`, atomically: a crash in between leaves the old
    /// checkpoint, and the next sync fetches the entries again (applying them is idempotent).
    async fn apply(
        &self,
        replace_all: bool,
        entries: &[Arc<SystemRegisterEntry>],
        checkpoint: &Checkpoint,
    ) -> Result<(), ReplicaStoreError>;

    fn describe(&self) -> String;
}

/// A replica as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredReplica {
    pub entries: Vec<SystemRegisterEntry>,
    pub checkpoint: Option<Checkpoint>,
}

/// Why a replica store call failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaStoreError {
    /// Transient: keep serving the replica in memory, retry at the next sync.
    #[error("replica store unavailable")]
    Unavailable(#[source] BoxError),
    /// Unreadable: the replica starts empty and syncs in full.
    #[error("replica store corrupt: {what}")]
    Corrupt { what: String },
}

/// What a hub sent for a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncedEntries {
    /// Ordered by version.
    pub entries: Vec<SystemRegisterEntry>,
    /// The register's digest at the last entry's version, when the hub sent digests.
    pub digest: Option<RegisterDigest>,
}

/// How a peer reaches hubs: gRPC in production, or in-process to a local authority.
#[async_trait]
pub trait HubLink: Send + Sync + 'static {
    async fn connect(
        &self,
        hub: &HubEndpoint,
        request: ConnectRequest,
        deadline: Duration,
    ) -> Result<SessionGrant, HubLinkError>;

    async fn heartbeat(
        &self,
        hub: &HubEndpoint,
        beat: HeartbeatRequest,
        deadline: Duration,
    ) -> Result<HeartbeatAck, HubLinkError>;

    /// The entries of a full or incremental sync, ordered by version.
    async fn sync(
        &self,
        hub: &HubEndpoint,
        query: SyncQuery,
        deadline: Duration,
    ) -> Result<SyncedEntries, HubLinkError>;

    /// The hub's push notifications for this session, until the hub or the link ends them.
    async fn subscribe(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<BoxStream<'static, BlueprintNotification>, HubLinkError>;

    async fn disconnect(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<(), HubLinkError>;
}

/// Why a call to a hub failed.
#[derive(Debug, thiserror::Error)]
pub enum HubLinkError {
    /// No answer (refused, timed out, broken): count it against the hub.
    #[error("hub unreachable")]
    Unreachable(#[source] BoxError),
    /// No answer within the deadline: the hub may be a black hole (frozen, partitioned). Count it
    /// against the hub, and do not spend another deadline on it at once.
    #[error("hub did not answer: {0}")]
    TimedOut(String),
    /// The hub does not know the session (it restarted, or forgot a silent peer): reconnect.
    #[error("unknown session: {0}")]
    UnknownSession(String),
    /// The hub answered and refused (a configuration error such as a hub calling a hub, or an
    /// invalid request): retrying the same call will not help.
    #[error("hub refused: {0}")]
    Refused(String),
    /// The hub refused an incremental sync: the replica belongs to another history or diverged
    /// from the hub's register. Sync in full.
    #[error("a full sync is needed: {0}")]
    NeedsFullSync(String),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herald_messages::{BlueprintId, EntryDraft, EntryKind};

    use super::*;

    /// Appends are exact: written only at the head + 1, and never below the hub's known head.
    #[test]
    fn an_append_is_written_only_right_after_the_head() {
        let third = entry("c", 3, "{}");
        assert!(append_check(2, &third, 2).is_ok());
        assert!(append_check(2, &third, 0).is_ok());
        assert!(matches!(
            append_check(1, &third, 2),
            Err(BlueprintStoreError::Behind { store_head: 1 })
        ));
        assert!(matches!(
            append_check(3, &third, 2),
            Err(BlueprintStoreError::Raced { head: 3 })
        ));
        assert!(matches!(
            append_check(1, &third, 1),
            Err(BlueprintStoreError::Raced { head: 1 })
        ));
        assert!(matches!(
            append_check(u64::MAX, &third, 0),
            Err(BlueprintStoreError::Raced { .. })
        ));
        let seed = [
            entry("a", 1, "{}").as_ref().clone(),
            entry("b", 2, "{}").as_ref().clone(),
        ];
        assert!(check_seed(&seed).is_ok());
        assert!(check_seed(&seed[1..]).is_err());
    }

    fn entry(blueprint: &str, version: u64, document: &str) -> Arc<SystemRegisterEntry> {
        let draft = EntryDraft {
            blueprint_id: BlueprintId::parse(blueprint).unwrap(),
            kind: EntryKind::Published,
            document: document.to_owned().into(),
            published_at: Timestamp::from_unix_millis(1_700_000_000_000),
            published_by: "admin".to_owned(),
            transaction_id: "tx".to_owned(),
            metadata: BTreeMap::new(),
        };
        Arc::new(draft.at_version(version))
    }

    fn planned(entries: &[Arc<SystemRegisterEntry>]) -> Vec<u64> {
        restore_plan(entries)
            .unwrap()
            .iter()
            .map(|entry| entry.version)
            .collect()
    }

    #[test]
    fn a_restore_plan_is_ordered_with_each_version_once() {
        let (one, two, three) = (
            entry("a", 1, "{}"),
            entry("b", 2, "{}"),
            entry("c", 3, "{}"),
        );
        assert_eq!(planned(&[]), Vec::<u64>::new());
        assert_eq!(
            planned(&[three.clone(), one.clone(), two.clone()]),
            [1, 2, 3]
        );
        assert_eq!(
            planned(&[one.clone(), two.clone(), one, two.clone(), two]),
            [1, 2]
        );
        // The same publication stored with other details is the same entry.
        let mut restyled = three.as_ref().clone();
        restyled.published_by = "someone else".to_owned();
        assert_eq!(planned(&[three, Arc::new(restyled)]), [3]);
    }

    #[test]
    fn two_entries_for_one_version_or_version_zero_conflict() {
        let conflicts = [
            vec![
                entry("a", 1, "{}"),
                entry("b", 2, "{}"),
                entry("c", 2, "{}"),
            ],
            vec![entry("a", 2, "{}"), entry("a", 2, "[]")],
            vec![entry("a", 0, "{}"), entry("b", 1, "{}")],
        ];
        for (entries, version) in conflicts.iter().zip([2, 2, 0]) {
            let conflict = match restore_plan(entries) {
                Err(BlueprintStoreError::Conflict(RestoreConflict::Entry { version })) => {
                    Some(version)
                }
                _ => None,
            };
            assert_eq!(conflict, Some(version), "{entries:?}");
        }
        let mut deprecated = entry("a", 2, "{}").as_ref().clone();
        deprecated.kind = EntryKind::Deprecated;
        assert!(!same_entry(&entry("a", 2, "{}"), &deprecated));
    }
}
