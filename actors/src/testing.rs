//! In-memory fakes of the ports, for tests (feature `testing`). They are the outside world
//! (stores, a link, a clock), never the actors under test, and each can be switched off to play
//! an outage, wiped to play a store that lost its data, rolled back to play a store restored
//! from an older copy, made to panic to play a bug, or (the clock) stepped like a system clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;
use tokio::time::Instant;

use herald_messages::{
    AdInput, AdKey, Advertisement, BlueprintId, BulkAdvertise, BulkOutcome, Checkpoint, Genesis,
    GroundTruthEpoch, NodeId, PersistedRecord, PoolMeta, Register, RegisterId, SystemRegisterEntry,
    Timestamp,
};

use crate::ports::{
    AdBatch, AdStore, BatchScope, BlueprintStore, BlueprintStoreError, Clock, GossipBatch,
    GossipStore, GroundTruth, GroundTruthError, PoolLink, PoolLinkError, PublicRegisters,
    ReplicaStore, ReplicaStoreError, RestoreConflict, RestoreReport, StoreError, StoreHead,
    StoredGossip, StoredPool, StoredRegister, StoredReplica, append_check, check_seed,
    restore_plan, same_entry,
};

fn down_error(what: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{what} is switched off").into()
}

#[derive(Default, Clone)]
struct AdRecords {
    ads: HashMap<AdKey, (Advertisement, Instant)>,
    meta: Option<(PoolMeta, Instant)>,
}

impl AdRecords {
    fn meta_at(&self, now: Instant) -> Option<PoolMeta> {
        self.meta
            .filter(|(_, expires)| *expires > now)
            .map(|(meta, _)| meta)
    }
}

/// What an `InMemoryAdStore` held at one moment (`image`), to be put back with `restore`.
#[derive(Clone)]
pub struct AdStoreImage(AdRecords);

/// A `GossipStore` in memory, one record per origin; it can be switched off.
#[derive(Clone, Default)]
pub struct InMemoryGossipStore {
    records: Arc<Mutex<BTreeMap<NodeId, PersistedRecord>>>,
    down: Arc<AtomicBool>,
    writes: Arc<AtomicUsize>,
}

impl InMemoryGossipStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plays an outage: every call fails until switched on again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The records held now, by origin.
    pub fn records(&self) -> BTreeMap<NodeId, PersistedRecord> {
        self.records.lock().expect("fake store lock").clone()
    }

    /// Batches written so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl GossipStore for InMemoryGossipStore {
    async fn load(&self) -> Result<StoredGossip, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(down_error(
                "in-memory gossip store",
            )));
        }
        Ok(StoredGossip {
            records: self.records().into_values().collect(),
            skipped: Vec::new(),
        })
    }

    async fn write(&self, batch: &GossipBatch<'_>) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(down_error(
                "in-memory gossip store",
            )));
        }
        let mut records = self.records.lock().expect("fake store lock");
        for record in &batch.puts {
            records.insert(record.origin.clone(), (*record).clone());
        }
        for origin in &batch.deletes {
            records.remove(*origin);
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn describe(&self) -> String {
        "in-memory gossip store".to_owned()
    }
}

/// An `AdStore` in memory, with expiry on tokio's clock.
#[derive(Clone, Default)]
pub struct InMemoryAdStore {
    records: Arc<Mutex<AdRecords>>,
    down: Arc<AtomicBool>,
    panic_on_load: Arc<AtomicBool>,
    panic_writes: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
    loads: Arc<AtomicUsize>,
}

impl InMemoryAdStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plays an outage: every call fails until switched on again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Plays a store that lost everything (a restarted Redis without persistence).
    pub fn wipe(&self) {
        *self.lock() = AdRecords::default();
    }

    /// What the store holds now, to be put back later with `restore`.
    pub fn image(&self) -> AdStoreImage {
        AdStoreImage(self.lock().clone())
    }

    /// Plays a store replaced by an older copy of itself (a backup restored, a failover to a
    /// lagging replica): it holds what it held when `image` was taken.
    pub fn restore(&self, image: &AdStoreImage) {
        *self.lock() = image.0.clone();
    }

    /// The unexpired meta record.
    pub fn meta(&self) -> Option<PoolMeta> {
        self.lock().meta_at(Instant::now())
    }

    /// Plays a bug: `load` panics.
    pub fn set_panic_on_load(&self, panic: bool) {
        self.panic_on_load.store(panic, Ordering::SeqCst);
    }

    /// Plays a bug: the next `count` writes panic.
    pub fn panic_on_next_writes(&self, count: usize) {
        self.panic_writes.store(count, Ordering::SeqCst);
    }

    /// Successful writes so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Successful loads so far.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// The unexpired ads, ordered by key.
    pub fn stored(&self) -> Vec<Advertisement> {
        let now = Instant::now();
        let mut ads: Vec<Advertisement> = self
            .lock()
            .ads
            .values()
            .filter(|(_, expires)| *expires > now)
            .map(|(ad, _)| ad.clone())
            .collect();
        ads.sort_by_key(Advertisement::key);
        ads
    }

    /// Puts an ad directly, as a previous run of the pool would have left it.
    pub fn seed(&self, ad: Advertisement, expiry: Duration) {
        self.lock()
            .ads
            .insert(ad.key(), (ad, Instant::now() + expiry));
    }

    fn lock(&self) -> MutexGuard<'_, AdRecords> {
        self.records.lock().expect("fake store lock")
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(down_error("in-memory ad store")));
        }
        Ok(())
    }
}

#[async_trait]
impl AdStore for InMemoryAdStore {
    async fn load(&self) -> Result<StoredPool, StoreError> {
        self.check()?;
        assert!(
            !self.panic_on_load.load(Ordering::SeqCst),
            "injected panic in AdStore::load"
        );
        let now = Instant::now();
        let records = self.lock();
        let ads = records
            .ads
            .values()
            .filter(|(_, expires)| *expires > now)
            .map(|(ad, _)| ad.clone())
            .collect();
        let meta = records.meta_at(now);
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(StoredPool {
            ads,
            meta,
            skipped: Vec::new(),
        })
    }

    async fn write(
        &self,
        batch: &AdBatch<'_>,
        expiry: Duration,
    ) -> Result<Option<PoolMeta>, StoreError> {
        self.check()?;
        let panics_left = self.panic_writes.load(Ordering::SeqCst);
        if panics_left > 0 {
            self.panic_writes.store(panics_left - 1, Ordering::SeqCst);
            panic!("injected panic in AdStore::write");
        }
        let now = Instant::now();
        let expires = now + expiry;
        let mut records = self.lock();
        let previous = records.meta_at(now);
        for ad in &batch.puts {
            records.ads.insert(ad.key(), ((*ad).clone(), expires));
        }
        for key in &batch.deletes {
            records.ads.remove(*key);
        }
        if batch.scope == BatchScope::Everything || previous.is_some() {
            records.meta = Some((batch.meta, expires));
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(previous)
    }

    async fn read_meta(&self) -> Result<Option<PoolMeta>, StoreError> {
        self.check()?;
        Ok(self.lock().meta_at(Instant::now()))
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

struct Registers {
    by_id: HashMap<RegisterId, Register>,
    revision: u64,
    epoch: GroundTruthEpoch,
}

impl Default for Registers {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            revision: 0,
            epoch: GroundTruthEpoch::from_bytes(rand::random()),
        }
    }
}

/// A `GroundTruth` in memory, with a random epoch of its own. `watchable()` makes one that can
/// be watched and changed behind the driver's back, as a shared store (MongoDB) can.
#[derive(Clone, Default)]
pub struct InMemoryGroundTruth {
    registers: Arc<Mutex<Registers>>,
    down: Arc<AtomicBool>,
    /// The watchers' channel, when the fake can be watched; replaced to end every watch.
    changes: Option<Arc<Mutex<broadcast::Sender<RegisterId>>>>,
}

impl InMemoryGroundTruth {
    pub fn new() -> Self {
        Self::default()
    }

    /// A ground truth that can be watched (`GroundTruth::watch`), like a shared store.
    pub fn watchable() -> Self {
        let (sender, _) = broadcast::channel(GROUND_TRUTH_WATCH_BUFFER);
        Self {
            changes: Some(Arc::new(Mutex::new(sender))),
            ..Self::default()
        }
    }

    /// Stores `register` as an operator editing the store directly would: no revision is
    /// assigned, and watchers are told.
    pub fn put_behind_the_back(&self, register: Register) {
        let id = register.register_id.clone();
        self.lock().by_id.insert(id.clone(), register);
        self.announce(id);
    }

    /// Deletes a register as an operator editing the store directly would.
    pub fn delete_behind_the_back(&self, id: &RegisterId) {
        self.lock().by_id.remove(id);
        self.announce(id.clone());
    }

    /// Ends every open watch (a broken change stream); later watches work again.
    pub fn end_watches(&self) {
        if let Some(changes) = &self.changes {
            let (fresh, _) = broadcast::channel(GROUND_TRUTH_WATCH_BUFFER);
            *changes.lock().expect("fake ground truth watch lock") = fresh;
        }
    }

    fn announce(&self, id: RegisterId) {
        if let Some(changes) = &self.changes {
            // Nobody watching is fine.
            let _ = changes
                .lock()
                .expect("fake ground truth watch lock")
                .send(id);
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The store's epoch.
    pub fn epoch(&self) -> GroundTruthEpoch {
        self.lock().epoch
    }

    fn lock(&self) -> MutexGuard<'_, Registers> {
        self.registers.lock().expect("fake ground truth lock")
    }

    fn check(&self) -> Result<(), GroundTruthError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(GroundTruthError::Unavailable(down_error(
                "in-memory ground truth",
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl GroundTruth for InMemoryGroundTruth {
    async fn public_registers(&self) -> Result<PublicRegisters, GroundTruthError> {
        self.check()?;
        let registers = self.lock();
        let mut public: Vec<AdInput> = registers
            .by_id
            .values()
            .filter(|r| r.advertise)
            .map(Register::to_ad_input)
            .collect();
        public.sort_by(|a, b| a.register_id.cmp(&b.register_id));
        Ok(PublicRegisters {
            registers: public,
            revision: registers.revision,
            epoch: registers.epoch,
        })
    }

    async fn get(&self, id: &RegisterId) -> Result<Option<Register>, GroundTruthError> {
        self.check()?;
        Ok(self.lock().by_id.get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<Register>, GroundTruthError> {
        self.check()?;
        let mut all: Vec<Register> = self.lock().by_id.values().cloned().collect();
        all.sort_by(|a, b| a.register_id.cmp(&b.register_id));
        Ok(all)
    }

    async fn create(&self, mut register: Register) -> Result<Register, GroundTruthError> {
        self.check()?;
        let mut registers = self.lock();
        if registers.by_id.contains_key(&register.register_id) {
            return Err(GroundTruthError::AlreadyExists(register.register_id));
        }
        registers.revision += 1;
        register.revision = registers.revision;
        registers
            .by_id
            .insert(register.register_id.clone(), register.clone());
        drop(registers);
        self.announce(register.register_id.clone());
        Ok(register)
    }

    async fn replace(&self, mut register: Register) -> Result<Register, GroundTruthError> {
        self.check()?;
        let mut registers = self.lock();
        if !registers.by_id.contains_key(&register.register_id) {
            return Err(GroundTruthError::NotFound(register.register_id));
        }
        registers.revision += 1;
        register.revision = registers.revision;
        registers
            .by_id
            .insert(register.register_id.clone(), register.clone());
        drop(registers);
        self.announce(register.register_id.clone());
        Ok(register)
    }

    async fn delete(&self, id: &RegisterId) -> Result<bool, GroundTruthError> {
        self.check()?;
        let mut registers = self.lock();
        let existed = registers.by_id.remove(id).is_some();
        if existed {
            registers.revision += 1;
        }
        drop(registers);
        if existed {
            self.announce(id.clone());
        }
        Ok(existed)
    }

    async fn watch(&self) -> Result<Option<BoxStream<'static, RegisterId>>, GroundTruthError> {
        self.check()?;
        let Some(changes) = &self.changes else {
            return Ok(None);
        };
        let receiver = changes
            .lock()
            .expect("fake ground truth watch lock")
            .subscribe();
        // A watcher that fell behind missed changes: its stream ends, as a broken change
        // stream's does.
        let ids = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.ok().map(|id| (id, receiver))
        });
        Ok(Some(ids.boxed()))
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

/// Changes buffered for a slow watcher of the fake ground truth.
const GROUND_TRUTH_WATCH_BUFFER: usize = 1_024;

/// A wall clock that moves only when told to: set, stepped forward (days) or back (hours) like
/// a system clock between two runs of a node. Clones share the time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    millis: Arc<std::sync::atomic::AtomicI64>,
}

impl ManualClock {
    pub fn new(now: Timestamp) -> Self {
        Self {
            millis: Arc::new(std::sync::atomic::AtomicI64::new(now.as_unix_millis())),
        }
    }

    pub fn set(&self, now: Timestamp) {
        self.millis.store(now.as_unix_millis(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now().saturating_add(by));
    }

    pub fn step_back(&self, by: Duration) {
        self.set(self.now().saturating_sub(by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.millis.load(Ordering::SeqCst))
    }
}

/// Wraps a real `PoolLink` and can cut it, playing a peer that is down or not started yet.
pub struct SwitchablePoolLink<L> {
    inner: L,
    down: Arc<AtomicBool>,
    pushes: Arc<AtomicUsize>,
}

impl<L: PoolLink> SwitchablePoolLink<L> {
    /// Returns the link and its switch (true = down).
    pub fn new(inner: L, down: bool) -> (Self, LinkSwitch) {
        let switch = LinkSwitch {
            down: Arc::new(AtomicBool::new(down)),
            attempts: Arc::new(AtomicUsize::new(0)),
        };
        let link = Self {
            inner,
            down: Arc::clone(&switch.down),
            pushes: Arc::clone(&switch.attempts),
        };
        (link, switch)
    }
}

/// The switch of a `SwitchablePoolLink`.
#[derive(Clone)]
pub struct LinkSwitch {
    down: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
}

impl LinkSwitch {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Push attempts so far, failed ones included.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<L: PoolLink> PoolLink for SwitchablePoolLink<L> {
    async fn push(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolLinkError> {
        self.pushes.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(PoolLinkError::Unreachable(down_error("pool link")));
        }
        self.inner.push(request).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// One stored entry of `InMemoryBlueprintStore`: an entry, or a record that no longer decodes.
#[derive(Debug, Clone)]
enum BlueprintRecord {
    Entry(Box<SystemRegisterEntry>),
    Undecodable,
}

#[derive(Default)]
struct BlueprintRecords {
    genesis: Option<Genesis>,
    entries: BTreeMap<u64, BlueprintRecord>,
    /// The last version allocated.
    version: u64,
}

impl BlueprintRecords {
    /// `BlueprintStore::restore` under the lock: checks everything, then writes.
    fn restore(
        &mut self,
        genesis: &Genesis,
        entries: &[Arc<SystemRegisterEntry>],
    ) -> Result<RestoreReport, BlueprintStoreError> {
        let plan = restore_plan(entries)?;
        let genesis_written = match &self.genesis {
            Some(stored) if stored.history_id != genesis.history_id => {
                return Err(BlueprintStoreError::Conflict(RestoreConflict::History {
                    stored: stored.history_id.clone(),
                    restored: genesis.history_id.clone(),
                }));
            }
            Some(_) => false,
            None if !self.entries.is_empty() || self.version > 0 => {
                return Err(BlueprintStoreError::Corrupt {
                    what: "entries or a version counter are stored but the genesis record is \
                           missing"
                        .to_owned(),
                });
            }
            None => true,
        };
        let mut missing = Vec::new();
        for entry in plan {
            match self.entries.get(&entry.version) {
                None => missing.push(entry),
                Some(BlueprintRecord::Entry(stored)) if same_entry(stored, entry) => {}
                Some(BlueprintRecord::Entry(_)) => {
                    return Err(BlueprintStoreError::Conflict(RestoreConflict::Entry {
                        version: entry.version,
                    }));
                }
                Some(BlueprintRecord::Undecodable) => {
                    return Err(BlueprintStoreError::Corrupt {
                        what: format!("entry at version {} does not decode", entry.version),
                    });
                }
            }
        }
        if genesis_written {
            self.genesis = Some(genesis.clone());
        }
        let entries_written = missing.len();
        for entry in missing {
            self.version = self.version.max(entry.version);
            self.entries.insert(
                entry.version,
                BlueprintRecord::Entry(Box::new(entry.clone())),
            );
        }
        Ok(RestoreReport {
            entries_written,
            genesis_written,
            head: self.version,
        })
    }

    fn entries_after(&self, after: u64) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.entries
            .range(first..)
            .map(|(version, record)| match record {
                BlueprintRecord::Entry(entry) => Ok(entry.as_ref().clone()),
                BlueprintRecord::Undecodable => Err(BlueprintStoreError::Corrupt {
                    what: format!("entry at version {version} does not decode"),
                }),
            })
            .collect()
    }
}

/// Versions buffered per watcher of an `InMemoryBlueprintStore`.
const BLUEPRINT_WATCH_BUFFER: usize = 1_024;

/// A `BlueprintStore` in memory. Clones share the register, so two authorities given clones of
/// one store play two hubs sharing Redis: `watch` yields the versions either of them appends
/// (like the Redis adapter: first the current version when above 0, then every append, their
/// own included). `single_writer()` plays the redb store instead (`watch` answers `None`).
#[derive(Clone)]
pub struct InMemoryBlueprintStore {
    records: Arc<Mutex<BlueprintRecords>>,
    appended: broadcast::Sender<u64>,
    single_writer: bool,
    down: Arc<AtomicBool>,
    appends: Arc<AtomicUsize>,
    restores: Arc<AtomicUsize>,
}

impl Default for InMemoryBlueprintStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryBlueprintStore {
    /// A store shared by several writers: `watch` yields their appends.
    pub fn new() -> Self {
        let (appended, _) = broadcast::channel(BLUEPRINT_WATCH_BUFFER);
        Self {
            records: Arc::default(),
            appended,
            single_writer: false,
            down: Arc::default(),
            appends: Arc::default(),
            restores: Arc::default(),
        }
    }

    /// A store with one writer, like the redb adapter: `watch` answers `None`.
    pub fn single_writer() -> Self {
        Self {
            single_writer: true,
            ..Self::new()
        }
    }

    /// Plays an outage: every call fails until switched on again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Plays a store that lost everything (a restarted Redis without persistence).
    pub fn wipe(&self) {
        *self.lock() = BlueprintRecords::default();
    }

    /// Plays a store that lost its last `count` acknowledged appends (a Redis restarted from an
    /// AOF written every second, a failover to a lagging replica, a file restored from a
    /// backup): the entries above `head - count` are gone and the version counter is moved back
    /// to that version (a hub holding more is then `Behind` when it appends).
    pub fn lose_last(&self, count: u64) {
        let mut records = self.lock();
        let kept = records.version.saturating_sub(count);
        records.entries.retain(|version, _| *version <= kept);
        records.version = kept;
    }

    /// The version counter: the last version allocated.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// Plays tampering: the document of the entry at `version` changes, its checksum does not
    /// (the record still decodes; integrity validation must catch it). Panics if there is no
    /// decodable entry at `version`.
    pub fn tamper(&self, version: u64) {
        let mut records = self.lock();
        let Some(BlueprintRecord::Entry(entry)) = records.entries.get_mut(&version) else {
            panic!("no entry at version {version} to tamper with");
        };
        let mut document = entry.document.to_vec();
        document.extend_from_slice(b" ");
        entry.document = document.into();
    }

    /// Plays a damaged record: the entry at `version` no longer decodes (`load` and
    /// `entries_after` over it answer `Corrupt`).
    pub fn make_undecodable(&self, version: u64) {
        self.lock()
            .entries
            .insert(version, BlueprintRecord::Undecodable);
    }

    /// Plays a lost record: the entry at `version` is gone (a gap in the versions).
    pub fn remove_entry(&self, version: u64) {
        self.lock().entries.remove(&version);
    }

    /// The decodable entries, ordered by version.
    pub fn entries(&self) -> Vec<SystemRegisterEntry> {
        self.lock()
            .entries
            .values()
            .filter_map(|record| match record {
                BlueprintRecord::Entry(entry) => Some(entry.as_ref().clone()),
                BlueprintRecord::Undecodable => None,
            })
            .collect()
    }

    pub fn genesis(&self) -> Option<Genesis> {
        self.lock().genesis.clone()
    }

    /// Successful appends so far (`create` not counted).
    pub fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }

    /// Successful restores so far (those that wrote nothing included).
    pub fn restores(&self) -> usize {
        self.restores.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, BlueprintRecords> {
        self.records.lock().expect("fake blueprint store lock")
    }

    fn check(&self) -> Result<(), BlueprintStoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BlueprintStoreError::Unavailable(down_error(
                "in-memory blueprint store",
            )));
        }
        Ok(())
    }

    fn announce(&self, version: u64) {
        // No receiver (nobody watches) is fine.
        let _ = self.appended.send(version);
    }
}

#[async_trait]
impl BlueprintStore for InMemoryBlueprintStore {
    async fn load(&self) -> Result<Option<StoredRegister>, BlueprintStoreError> {
        self.check()?;
        let records = self.lock();
        let Some(genesis) = records.genesis.clone() else {
            if records.entries.is_empty() {
                return Ok(None);
            }
            return Err(BlueprintStoreError::Corrupt {
                what: "entries are stored but the genesis record is missing".to_owned(),
            });
        };
        let entries = records.entries_after(0)?;
        Ok(Some(StoredRegister { genesis, entries }))
    }

    async fn create(
        &self,
        genesis: &Genesis,
        seed: Vec<SystemRegisterEntry>,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        self.check()?;
        check_seed(&seed)?;
        let mut records = self.lock();
        if records.genesis.is_some() {
            return Err(BlueprintStoreError::AlreadyCreated);
        }
        records.genesis = Some(genesis.clone());
        for entry in &seed {
            records.version = entry.version;
            records.entries.insert(
                entry.version,
                BlueprintRecord::Entry(Box::new(entry.clone())),
            );
        }
        let last = records.version;
        drop(records);
        if last > 0 {
            self.announce(last);
        }
        Ok(seed)
    }

    async fn append(
        &self,
        entry: SystemRegisterEntry,
        known_head: u64,
    ) -> Result<SystemRegisterEntry, BlueprintStoreError> {
        self.check()?;
        let mut records = self.lock();
        if records.version < known_head {
            return Err(BlueprintStoreError::Behind {
                store_head: records.version,
            });
        }
        if records.genesis.is_none() {
            return Err(BlueprintStoreError::Corrupt {
                what: "cannot append: the system register does not exist".to_owned(),
            });
        }
        append_check(records.version, &entry, known_head)?;
        records.version = entry.version;
        records.entries.insert(
            entry.version,
            BlueprintRecord::Entry(Box::new(entry.clone())),
        );
        drop(records);
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.announce(entry.version);
        Ok(entry)
    }

    async fn restore(
        &self,
        genesis: &Genesis,
        entries: &[Arc<SystemRegisterEntry>],
    ) -> Result<RestoreReport, BlueprintStoreError> {
        self.check()?;
        let report = self.lock().restore(genesis, entries)?;
        self.restores.fetch_add(1, Ordering::SeqCst);
        let wrote = report.genesis_written || report.entries_written > 0;
        if wrote && report.head > 0 {
            self.announce(report.head);
        }
        Ok(report)
    }

    async fn head(&self) -> Result<Option<StoreHead>, BlueprintStoreError> {
        self.check()?;
        let records = self.lock();
        let Some(genesis) = &records.genesis else {
            if records.entries.is_empty() && records.version == 0 {
                return Ok(None);
            }
            return Err(BlueprintStoreError::Corrupt {
                what: "entries or a version counter are stored but the genesis record is missing"
                    .to_owned(),
            });
        };
        Ok(Some(StoreHead {
            history_id: genesis.history_id.clone(),
            version: records.version,
        }))
    }

    async fn entries_after(
        &self,
        after: u64,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        self.check()?;
        self.lock().entries_after(after)
    }

    async fn watch(&self) -> Result<Option<BoxStream<'static, u64>>, BlueprintStoreError> {
        self.check()?;
        if self.single_writer {
            return Ok(None);
        }
        let receiver = self.appended.subscribe();
        let current = self.lock().version;
        let records = Arc::clone(&self.records);
        let later = futures::stream::unfold(receiver, move |mut receiver| {
            let records = Arc::clone(&records);
            async move {
                match receiver.recv().await {
                    Ok(version) => Some((version, receiver)),
                    // A slow reader missed some: the latest version stands for them all.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let latest = records.lock().expect("fake blueprint store lock").version;
                        Some((latest, receiver))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            }
        });
        let first = futures::stream::iter((current > 0).then_some(current));
        Ok(Some(first.chain(later).boxed()))
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[derive(Default)]
struct ReplicaRecords {
    entries: BTreeMap<BlueprintId, SystemRegisterEntry>,
    checkpoint: Option<Checkpoint>,
}

/// A `ReplicaStore` in memory, with the adapter's rules: a full sync replaces everything, an
/// entry replaces its blueprint's only when its version is higher, and the checkpoint is written
/// after the entries.
#[derive(Clone, Default)]
pub struct InMemoryReplicaStore {
    records: Arc<Mutex<ReplicaRecords>>,
    down: Arc<AtomicBool>,
    corrupt: Arc<AtomicBool>,
    crash_before_checkpoint: Arc<AtomicBool>,
    applies: Arc<AtomicUsize>,
}

impl InMemoryReplicaStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plays an outage (a full disk): every call fails until switched on again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Plays an unreadable replica: `load` answers `Corrupt` (writes still work).
    pub fn set_corrupt(&self, corrupt: bool) {
        self.corrupt.store(corrupt, Ordering::SeqCst);
    }

    /// Plays a crash between the two steps of `apply`: the entries are stored, the checkpoint
    /// is not, and `apply` fails.
    pub fn set_crash_before_checkpoint(&self, crash: bool) {
        self.crash_before_checkpoint.store(crash, Ordering::SeqCst);
    }

    /// The stored entries, ordered by version.
    pub fn entries(&self) -> Vec<SystemRegisterEntry> {
        let mut entries: Vec<SystemRegisterEntry> = self.lock().entries.values().cloned().collect();
        entries.sort_by_key(|entry| entry.version);
        entries
    }

    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.lock().checkpoint.clone()
    }

    /// Completed applies so far.
    pub fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, ReplicaRecords> {
        self.records.lock().expect("fake replica store lock")
    }

    fn check(&self) -> Result<(), ReplicaStoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ReplicaStoreError::Unavailable(down_error(
                "in-memory replica store",
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl ReplicaStore for InMemoryReplicaStore {
    async fn load(&self) -> Result<StoredReplica, ReplicaStoreError> {
        self.check()?;
        if self.corrupt.load(Ordering::SeqCst) {
            return Err(ReplicaStoreError::Corrupt {
                what: "the in-memory replica is switched to corrupt".to_owned(),
            });
        }
        Ok(StoredReplica {
            entries: self.entries(),
            checkpoint: self.checkpoint(),
        })
    }

    async fn apply(
        &self,
        replace_all: bool,
        entries: &[Arc<SystemRegisterEntry>],
        checkpoint: &Checkpoint,
    ) -> Result<(), ReplicaStoreError> {
        self.check()?;
        let mut records = self.lock();
        if replace_all {
            records.entries.clear();
        }
        for entry in entries {
            let newer = records
                .entries
                .get(&entry.blueprint_id)
                .is_none_or(|held| held.version < entry.version);
            if newer {
                records
                    .entries
                    .insert(entry.blueprint_id.clone(), entry.as_ref().clone());
            }
        }
        if self.crash_before_checkpoint.load(Ordering::SeqCst) {
            return Err(ReplicaStoreError::Unavailable(
                "in-memory replica store crashed before writing the checkpoint".into(),
            ));
        }
        records.checkpoint = Some(checkpoint.clone());
        drop(records);
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}
