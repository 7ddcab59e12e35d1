//! In-memory fakes of the ports, for tests (feature `testing`). They are the outside world
//! (stores, a link), never the actors under test, and each can be switched off to play an
//! outage, wiped to play a store that lost its data, or made to panic to play a bug.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use herald_messages::{
    AdKey, Advertisement, BulkAdvertise, BulkOutcome, PoolMeta, Register, RegisterId,
};

use crate::ports::{
    AdBatch, AdStore, GroundTruth, GroundTruthError, PoolLink, PoolLinkError, PublicRegisters,
    StoreError, StoredPool,
};

fn down_error(what: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{what} is switched off").into()
}

#[derive(Default)]
struct AdRecords {
    ads: HashMap<AdKey, (Advertisement, Instant)>,
    meta: Option<(PoolMeta, Instant)>,
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
        let meta = records
            .meta
            .filter(|(_, expires)| *expires > now)
            .map(|(meta, _)| meta);
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(StoredPool {
            ads,
            meta,
            skipped: Vec::new(),
        })
    }

    async fn write(&self, batch: &AdBatch<'_>, expiry: Duration) -> Result<(), StoreError> {
        self.check()?;
        let panics_left = self.panic_writes.load(Ordering::SeqCst);
        if panics_left > 0 {
            self.panic_writes.store(panics_left - 1, Ordering::SeqCst);
            panic!("injected panic in AdStore::write");
        }
        let expires = Instant::now() + expiry;
        let mut records = self.lock();
        for ad in &batch.puts {
            records.ads.insert(ad.key(), ((*ad).clone(), expires));
        }
        for key in &batch.deletes {
            records.ads.remove(*key);
        }
        records.meta = Some((batch.meta, expires));
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn holds_meta(&self) -> Result<bool, StoreError> {
        self.check()?;
        let now = Instant::now();
        Ok(self.lock().meta.is_some_and(|(_, expires)| expires > now))
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[derive(Default)]
struct Registers {
    by_id: HashMap<RegisterId, Register>,
    revision: u64,
}

/// A `GroundTruth` in memory.
#[derive(Clone, Default)]
pub struct InMemoryGroundTruth {
    registers: Arc<Mutex<Registers>>,
    down: Arc<AtomicBool>,
}

impl InMemoryGroundTruth {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
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
        let mut public: Vec<Register> = registers
            .by_id
            .values()
            .filter(|r| r.advertise)
            .cloned()
            .collect();
        public.sort_by(|a, b| a.register_id.cmp(&b.register_id));
        Ok(PublicRegisters {
            registers: public,
            revision: registers.revision,
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
        Ok(register)
    }

    async fn delete(&self, id: &RegisterId) -> Result<bool, GroundTruthError> {
        self.check()?;
        let mut registers = self.lock();
        let existed = registers.by_id.remove(id).is_some();
        if existed {
            registers.revision += 1;
        }
        Ok(existed)
    }

    fn describe(&self) -> String {
        "memory".to_owned()
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
