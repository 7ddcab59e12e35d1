//! The pool's in-memory book and every decision it makes, without a runtime: what a bulk
//! request, a gossip, a reload or a sweep changes, and what must be written to the store.
//!
//! Every method takes `now` from the caller. Writes are not done here: changed keys are marked
//! dirty and `batch()` turns them into one store write; `mark_written` takes the meta record the
//! store held before that write and says whether the store had kept everything (the generation
//! rule, see `PoolMeta`).
//!
//! Clock rule: stamps read from the store were taken on another run's clock, which may have
//! been stepped since. A reloaded remote ad lives for one `ad_ttl` from its reload (unverified)
//! unless its peer confirms it, whatever its stored `refreshed_at` says; a reloaded local ad
//! lives until withdrawn or removed by a full sync; stored stamps later than the reload are
//! taken as the reload time.

mod by_register;

use std::collections::{HashMap, HashSet};

/// The pool's maps are on its hot path (a full sync of 10,000 ads hashes each id several
/// times): foldhash is several times faster than SipHash on these short keys. Its DoS
/// resistance is minimal, which is acceptable: keys come from authenticated callers and are
/// validated ids.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;
use std::time::Duration;

use herald_messages::{
    AdInput, AdKey, AdSource, Advertisement, AvailableRegister, BulkAdvertise, BulkOutcome, NodeId,
    PoolError, PoolMeta, RegisterId, SharedRegisters, Snapshot, StoreHealth, Timestamp, Valid,
};

use crate::ports::{AdBatch, BatchScope, StoredPool};

use by_register::{ByRegister, KeyedByRegister};

/// The rules the book applies, from the pool's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolRules {
    /// How long a remote ad stays live after its last gossip, and a reloaded one after its reload.
    pub ad_ttl: Duration,
    /// How long a local withdrawal is remembered against late full syncs.
    pub tombstone_horizon: Duration,
    /// How far ahead of this node's clock a snapshot's `readAt` may be.
    pub snapshot_clock_tolerance: Duration,
}

/// What the store said about its content when it took a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCheck {
    /// The store held this pool's last write: nothing was lost.
    Intact,
    /// The first batch of a generation, into a store that held no mark of this pool to compare
    /// with (a new store, or one found without data): it wrote everything.
    Claimed,
    /// A batch of everything found the store missing earlier writes; it holds everything again.
    Repaired,
    /// A batch of changes found the store missing earlier writes: the book now wants everything
    /// written again, under a new generation, at once.
    Lost,
}

/// Which write a store holds: the generation and batch count of its meta record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoreMark {
    generation: u64,
    write_seq: u64,
}

impl StoreMark {
    fn of(meta: &PoolMeta) -> Self {
        Self {
            generation: meta.generation,
            write_seq: meta.write_seq,
        }
    }
}

/// One advertisement in memory.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    ad: Advertisement,
    /// False after a reload until the source confirms the ad again.
    verified: bool,
    /// For a reloaded remote ad not confirmed yet: when it stops being live (one `ad_ttl` after
    /// its reload, on this run's clock), whatever its stored stamps say.
    grace_until: Option<Timestamp>,
}

impl KeyedByRegister for Entry {
    fn register_id(&self) -> &RegisterId {
        &self.ad.register_id
    }
}

/// How an upsert changed the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upsert {
    Added,
    Updated,
    Unchanged,
}

/// What a reload found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Ads taken from the store (served at once, unverified).
    pub restored: usize,
    /// Stored ads overtaken by changes made while the store was away.
    pub discarded: usize,
    /// Records the store could not decode.
    pub skipped: usize,
    /// A stored snapshot refused like any input (a read time ahead of this node's clock, a seq
    /// no store reaches): it no longer orders full syncs.
    pub refused_snapshot: Option<Snapshot>,
    /// Whether the store held a mark of this pool to continue from; when not, everything is
    /// written again under a new generation.
    pub adopted_mark: bool,
}

/// The pool's book: ads by key, what the store still lacks, and the store's health.
#[derive(Debug, Clone)]
pub struct PoolState {
    rules: PoolRules,
    /// This node's ads, by register: the hot path (full syncs), looked up without building keys;
    /// each id is held once, in its entry.
    local: ByRegister<Entry>,
    /// Other peers' ads.
    remote: FastMap<AdKey, Entry>,
    /// Local withdrawals and when they happened: a full sync read before a withdrawal must not
    /// bring the ad back.
    withdrawn: FastMap<RegisterId, Timestamp>,
    last_snapshot: Option<Snapshot>,
    /// Read time of the last full sync applied by this process: stored local ads older than it
    /// were superseded while the store was unreachable.
    session_full_sync: Option<Timestamp>,
    /// Peers whose complete list this process received: their stored ads are superseded.
    session_gossip: HashSet<NodeId>,
    /// Keys whose state (present or removed) the store does not hold yet.
    dirty: FastSet<AdKey>,
    meta_dirty: bool,
    /// The next batch must hold every ad; it may create the store's meta record.
    everything_due: bool,
    /// The mark the store holds if it kept everything this pool wrote: that of the last batch
    /// written, or the one found by the load. `None` until then, and after a loss.
    mark: Option<StoreMark>,
    /// The mark of a batch whose write failed: the store may have applied it (a reply lost on
    /// the way), so finding it is no loss either.
    mark_in_doubt: Option<StoreMark>,
    /// Generation of the next batch.
    generation: u64,
    /// Random base of this pool's generations; the n-th generation it starts is base + n.
    generation_seed: u64,
    generations_started: u64,
    store_repairs: u64,
    loaded: bool,
    store: StoreHealth,
}

impl PoolState {
    /// `generation_seed` is random (the actor draws it): it keeps the generations of two pools,
    /// or of two runs of one pool, apart.
    pub fn new(rules: PoolRules, generation_seed: u64) -> Self {
        Self {
            rules,
            local: ByRegister::default(),
            remote: FastMap::default(),
            withdrawn: FastMap::default(),
            last_snapshot: None,
            session_full_sync: None,
            session_gossip: HashSet::new(),
            dirty: FastSet::default(),
            meta_dirty: false,
            everything_due: true,
            mark: None,
            mark_in_doubt: None,
            generation: generation_seed.max(1),
            generation_seed,
            generations_started: 0,
            store_repairs: 0,
            loaded: false,
            store: StoreHealth::Healthy,
        }
    }

    /// Applies an advertise / withdraw / full-sync request (validated on its way in; the
    /// snapshot's age and order are judged here, against `now`). A refused request changes
    /// nothing.
    pub fn apply_bulk(
        &mut self,
        request: &Valid<BulkAdvertise>,
        now: Timestamp,
    ) -> Result<BulkOutcome, PoolError> {
        if let Some(snapshot) = &request.snapshot {
            snapshot.validate(now, self.rules.snapshot_clock_tolerance)?;
        }
        if request.full_sync {
            self.check_snapshot_order(request.snapshot)?;
        }
        let read_at = request.snapshot.map_or(now, |snapshot| snapshot.read_at);
        let mut outcome = BulkOutcome {
            processed: request.advertisements.len(),
            ..BulkOutcome::default()
        };
        for input in &request.advertisements {
            if request.full_sync && self.changed_locally_after(&input.register_id, read_at) {
                // A change made after the snapshot was read wins over the snapshot.
                outcome.unchanged += 1;
                continue;
            }
            if !input.is_public {
                if self.withdraw_local(&input.register_id, now) {
                    outcome.removed += 1;
                } else {
                    outcome.unchanged += 1;
                }
                continue;
            }
            match self.upsert_local(input, now) {
                Upsert::Added => outcome.added += 1,
                Upsert::Updated => outcome.updated += 1,
                Upsert::Unchanged => outcome.unchanged += 1,
            }
        }
        if request.full_sync {
            outcome.removed += self.remove_unlisted_local(&request.advertisements, read_at);
            self.session_full_sync = Some(read_at);
            self.withdrawn
                .retain(|_, withdrawn_at| *withdrawn_at > read_at);
            if let Some(snapshot) = request.snapshot
                && self.last_snapshot != Some(snapshot)
            {
                self.last_snapshot = Some(snapshot);
                self.meta_dirty = true;
            }
        }
        Ok(outcome)
    }

    /// Applies a remote peer's complete list of public ads: listed ads are refreshed, the peer's
    /// other ads removed. Returns how many ads changed.
    pub fn apply_gossip(&mut self, peer: &NodeId, ads: &[AdInput], now: Timestamp) -> usize {
        let listed: HashSet<&RegisterId> = ads
            .iter()
            .filter(|a| a.is_public)
            .map(|a| &a.register_id)
            .collect();
        let mut changed = 0;
        for input in ads.iter().filter(|a| a.is_public) {
            let key = AdKey::remote(peer.clone(), input.register_id.clone());
            let outcome = match self.remote.get_mut(&key) {
                Some(entry) => refresh(entry, input, now),
                None => {
                    self.remote
                        .insert(key.clone(), new_entry(input, key.source.clone(), now));
                    Upsert::Added
                }
            };
            if outcome != Upsert::Unchanged {
                self.dirty.insert(key);
                changed += 1;
            }
        }
        let gone: Vec<AdKey> = self
            .remote
            .keys()
            .filter(|key| matches!(&key.source, AdSource::Remote(p) if p == peer))
            .filter(|key| !listed.contains(&key.register_id))
            .cloned()
            .collect();
        changed += gone.len();
        for key in gone {
            self.remove(key);
        }
        self.session_gossip.insert(peer.clone());
        changed
    }

    /// Takes in what the store held. Ads already in memory are newer and stay; stored ads
    /// overtaken by what happened while the store was unreachable are discarded (and deleted
    /// from the store); the rest are served at once, unverified, under the clock rule (module
    /// doc). The store's mark is adopted when it has one; otherwise everything is written again.
    pub fn merge_loaded(&mut self, stored: StoredPool, now: Timestamp) -> LoadReport {
        let mut report = LoadReport {
            skipped: stored.skipped.len(),
            ..LoadReport::default()
        };
        self.local.reserve(stored.ads.len());
        for mut ad in stored.ads {
            // Stamped on another run's clock: never later than now on this one.
            ad.changed_at = ad.changed_at.min(now);
            ad.refreshed_at = ad.refreshed_at.min(now);
            let in_memory = match &ad.source {
                AdSource::Local => self.local.contains_key(&ad.register_id),
                AdSource::Remote(_) => self.remote.contains_key(&ad.key()),
            };
            if in_memory {
                continue;
            }
            if self.overtaken(&ad) {
                report.discarded += 1;
                self.dirty.insert(ad.key());
                continue;
            }
            let grace_until = match ad.source {
                AdSource::Local => None,
                AdSource::Remote(_) => Some(now.saturating_add(self.rules.ad_ttl)),
            };
            let entry = Entry {
                ad,
                verified: false,
                grace_until,
            };
            match &entry.ad.source {
                AdSource::Local => {
                    self.local.insert(entry);
                }
                AdSource::Remote(_) => {
                    self.remote.insert(entry.ad.key(), entry);
                }
            }
            report.restored += 1;
        }
        let mut stored_snapshot = stored.meta.as_ref().and_then(|meta| meta.last_snapshot);
        if let Some(snapshot) = stored_snapshot
            && snapshot
                .validate(now, self.rules.snapshot_clock_tolerance)
                .is_err()
        {
            // Accepted before snapshots were validated, or read before this node's clock was
            // stepped back: input like any other, it no longer orders full syncs.
            report.refused_snapshot = Some(snapshot);
            stored_snapshot = None;
            self.meta_dirty = true;
        }
        let merged_snapshot = match (stored_snapshot, self.last_snapshot) {
            (Some(stored), None) => Some(stored),
            (Some(stored), Some(current)) if stored.seq > current.seq => Some(stored),
            (_, current) => current,
        };
        if merged_snapshot != stored_snapshot {
            self.meta_dirty = true;
        }
        self.last_snapshot = merged_snapshot;
        match stored.meta.filter(|meta| meta.generation != 0) {
            Some(meta) => {
                // The store holds our mark: continue its generation.
                self.mark = Some(StoreMark::of(&meta));
                self.generation = meta.generation;
                self.everything_due = false;
                report.adopted_mark = true;
            }
            // A new or emptied store, or one written before generations: claim it.
            None => self.start_generation(),
        }
        self.loaded = true;
        report
    }

    /// Drops remote ads not refreshed within the TTL and forgets old withdrawals. Returns how
    /// many ads expired. (Local ads never expire.)
    pub fn sweep(&mut self, now: Timestamp) -> usize {
        let expired: Vec<AdKey> = self
            .remote
            .iter()
            .filter(|(_, entry)| !self.is_live(entry, now))
            .map(|(key, _)| key.clone())
            .collect();
        let count = expired.len();
        for key in expired {
            self.remove(key);
        }
        let horizon = now.saturating_sub(self.rules.tombstone_horizon);
        self.withdrawn
            .retain(|_, withdrawn_at| *withdrawn_at > horizon);
        count
    }

    /// Every live public register, merged across sources, ordered by id.
    pub fn available(&self, now: Timestamp) -> Vec<AvailableRegister> {
        let live = self.live_by_register(now);
        live.chunk_by(same_register).map(merge_sources).collect()
    }

    /// `available(now)` in chunks shared with `current` wherever they hold the same registers,
    /// unless it shows exactly `current`: then `None`, and nothing was allocated (a full sync
    /// that changed nothing builds no 10 MB copy of a 100,000-register answer beside the one
    /// served; one that changed a tenth of it copies about a tenth).
    pub fn available_if_changed(
        &self,
        now: Timestamp,
        current: &SharedRegisters,
    ) -> Option<SharedRegisters> {
        let live = self.live_by_register(now);
        let next =
            SharedRegisters::build_like(current, live.chunk_by(same_register).map(merge_sources));
        (!next.shares_all(current)).then_some(next)
    }

    /// The live public entries, by register, then local first and remote peers by id: names
    /// come from the most authoritative source.
    fn live_by_register(&self, now: Timestamp) -> Vec<&Entry> {
        let mut live: Vec<&Entry> = self
            .entries()
            .filter(|entry| entry.ad.is_public && self.is_live(entry, now))
            .collect();
        live.sort_unstable_by(|a, b| {
            (&a.ad.register_id, &a.ad.source).cmp(&(&b.ad.register_id, &b.ad.source))
        });
        live
    }

    /// When the first remote ad live at `now` stops being live (`None` without one): what
    /// `available(now)` shows changes then, even if nothing else happens.
    pub fn next_expiry(&self, now: Timestamp) -> Option<Timestamp> {
        self.remote
            .values()
            .filter(|entry| entry.ad.is_public && self.is_live(entry, now))
            .map(|entry| self.live_until(entry))
            .min()
    }

    /// The write that brings the store up to date: current ads for dirty keys that exist,
    /// deletes for those that do not, and the meta record with the next mark. It borrows the
    /// book: nothing is copied on the way to the store.
    pub fn batch(&self) -> AdBatch<'_> {
        let mut batch = AdBatch {
            puts: Vec::with_capacity(self.dirty.len()),
            deletes: Vec::new(),
            meta: self.next_meta(),
            scope: self.scope(),
        };
        for key in &self.dirty {
            match self.entry(key) {
                Some(entry) => batch.puts.push(&entry.ad),
                None => batch.deletes.push(key),
            }
        }
        batch
    }

    pub fn has_unwritten(&self) -> bool {
        self.meta_dirty || !self.dirty.is_empty()
    }

    /// The store took the last `batch()`; `previous` is the meta record it held just before.
    /// Says whether the store had kept everything; after `Lost` the book wants everything
    /// written again (a new generation) and `batch()` gives that write.
    pub fn mark_written(&mut self, previous: Option<&PoolMeta>) -> WriteCheck {
        let written = StoreMark::of(&self.next_meta());
        let scope = self.scope();
        let found = previous.map(StoreMark::of);
        let check = match (self.mark, scope) {
            (None, _) => WriteCheck::Claimed,
            (Some(_), _) if self.is_our_last_write(found) => WriteCheck::Intact,
            (Some(_), BatchScope::Everything) => WriteCheck::Repaired,
            (Some(_), BatchScope::Changes) => WriteCheck::Lost,
        };
        self.mark_in_doubt = None;
        self.dirty.clear();
        self.meta_dirty = false;
        self.everything_due = false;
        self.mark = Some(written);
        match check {
            WriteCheck::Repaired => self.store_repairs += 1,
            WriteCheck::Lost => self.rewrite_everything(),
            WriteCheck::Intact | WriteCheck::Claimed => {}
        }
        check
    }

    /// Whether the store's meta record, as read by a check, is this pool's last write. A write
    /// of everything already due will set it right, so it counts as held.
    pub fn store_holds_mark(&self, found: Option<&PoolMeta>) -> bool {
        self.everything_due || self.is_our_last_write(found.map(StoreMark::of))
    }

    /// The write of the last `batch()` failed: the store may or may not have applied it.
    pub fn write_failed(&mut self) {
        if self.mark.is_some() {
            self.mark_in_doubt = Some(StoreMark::of(&self.next_meta()));
        }
    }

    /// The store lost what this pool wrote (found by a check or by a batch): everything is
    /// written again, under a new generation.
    pub fn rewrite_everything(&mut self) {
        self.store_repairs += 1;
        self.start_generation();
    }

    /// Everything must be written again (renewal of expiries, a store back from an outage).
    pub fn mark_all_dirty(&mut self) {
        self.dirty.reserve(self.local.len() + self.remote.len());
        self.dirty.extend(
            self.local
                .values()
                .map(|e| AdKey::local(e.ad.register_id.clone())),
        );
        self.dirty.extend(self.remote.keys().cloned());
        self.meta_dirty = true;
        self.everything_due = true;
    }

    /// Times the store was found missing what this pool wrote.
    pub fn store_repairs(&self) -> u64 {
        self.store_repairs
    }

    pub fn store_health(&self) -> &StoreHealth {
        &self.store
    }

    pub fn is_degraded(&self) -> bool {
        matches!(self.store, StoreHealth::Degraded { .. })
    }

    /// Records a store failure; returns true when the store was healthy until now.
    pub fn degrade(&mut self, reason: String, now: Timestamp) -> bool {
        match &mut self.store {
            StoreHealth::Healthy => {
                self.store = StoreHealth::Degraded { since: now, reason };
                true
            }
            StoreHealth::Degraded { reason: last, .. } => {
                *last = reason;
                false
            }
        }
    }

    pub fn recover(&mut self) {
        self.store = StoreHealth::Healthy;
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn last_snapshot(&self) -> Option<Snapshot> {
        self.last_snapshot
    }

    /// (local, remote, unverified, dirty) counts.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let unverified = self.entries().filter(|e| !e.verified).count();
        (
            self.local.len(),
            self.remote.len(),
            unverified,
            self.dirty.len(),
        )
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.local.values().chain(self.remote.values())
    }

    fn entry(&self, key: &AdKey) -> Option<&Entry> {
        match key.source {
            AdSource::Local => self.local.get(&key.register_id),
            AdSource::Remote(_) => self.remote.get(key),
        }
    }

    fn is_live(&self, entry: &Entry, now: Timestamp) -> bool {
        match entry.ad.source {
            // Local ads are authoritative: they live until withdrawn or removed by a full sync.
            AdSource::Local => true,
            AdSource::Remote(_) => now < self.live_until(entry),
        }
    }

    /// When a remote ad stops being live.
    fn live_until(&self, entry: &Entry) -> Timestamp {
        match entry.grace_until {
            // Reloaded and not confirmed yet: one TTL from the reload (the clock rule).
            Some(until) => until,
            None => entry.ad.refreshed_at.saturating_add(self.rules.ad_ttl),
        }
    }

    fn is_our_last_write(&self, found: Option<StoreMark>) -> bool {
        found.is_some() && (found == self.mark || found == self.mark_in_doubt)
    }

    fn scope(&self) -> BatchScope {
        if self.everything_due {
            BatchScope::Everything
        } else {
            BatchScope::Changes
        }
    }

    /// The meta record of the next batch: the current generation, one batch further.
    fn next_meta(&self) -> PoolMeta {
        let write_seq = match self.mark {
            Some(mark) if mark.generation == self.generation => mark.write_seq.wrapping_add(1),
            _ => 1,
        };
        PoolMeta {
            last_snapshot: self.last_snapshot,
            generation: self.generation,
            write_seq,
        }
    }

    /// Starts a new generation: the store is taken to hold nothing of this pool, and the next
    /// batch writes everything (and creates the meta record).
    fn start_generation(&mut self) {
        self.generations_started += 1;
        self.generation = self
            .generation_seed
            .wrapping_add(self.generations_started)
            .max(1);
        self.mark = None;
        self.mark_in_doubt = None;
        self.mark_all_dirty();
    }

    /// The order of full syncs: a snapshot of the same epoch (or one without an epoch) that is
    /// older in both revision and read time than the last one applied is a delayed one and is
    /// refused; a revision that jumped further than a store can count is invalid. A snapshot of
    /// another epoch starts a new order.
    fn check_snapshot_order(&self, offered: Option<Snapshot>) -> Result<(), PoolError> {
        let (Some(offered), Some(applied)) = (offered, self.last_snapshot) else {
            return Ok(());
        };
        if !offered.orders_after(&applied) {
            return Ok(());
        }
        offered.check_jump_from(&applied)?;
        // A lower revision read later means the ground truth was reset, and the newer read wins.
        if offered.seq < applied.seq && offered.read_at <= applied.read_at {
            return Err(PoolError::StaleSnapshot {
                offered_seq: offered.seq,
                offered_read_at: offered.read_at,
                applied_seq: applied.seq,
            });
        }
        Ok(())
    }

    fn changed_locally_after(&self, register_id: &RegisterId, read_at: Timestamp) -> bool {
        let withdrawn_later = self
            .withdrawn
            .get(register_id)
            .is_some_and(|at| *at > read_at);
        let changed_later = self
            .local
            .get(register_id)
            .is_some_and(|entry| entry.ad.changed_at > read_at);
        withdrawn_later || changed_later
    }

    fn upsert_local(&mut self, input: &AdInput, now: Timestamp) -> Upsert {
        let outcome = match self.local.get_mut(&input.register_id) {
            Some(entry) => refresh(entry, input, now),
            None => {
                self.withdrawn.remove(&input.register_id);
                let entry = new_entry(input, AdSource::Local, now);
                self.local.insert(entry);
                Upsert::Added
            }
        };
        if outcome != Upsert::Unchanged {
            self.dirty.insert(AdKey::local(input.register_id.clone()));
        }
        outcome
    }

    fn withdraw_local(&mut self, register_id: &RegisterId, now: Timestamp) -> bool {
        self.withdrawn.insert(register_id.clone(), now);
        self.remove(AdKey::local(register_id.clone()))
    }

    /// Removes local ads not in a full sync's list, except those changed after the snapshot.
    fn remove_unlisted_local(&mut self, listed: &[AdInput], read_at: Timestamp) -> usize {
        let listed: FastSet<&RegisterId> = listed.iter().map(|input| &input.register_id).collect();
        let unlisted: Vec<RegisterId> = self
            .local
            .values()
            .filter(|entry| {
                !listed.contains(&entry.ad.register_id) && entry.ad.changed_at <= read_at
            })
            .map(|entry| entry.ad.register_id.clone())
            .collect();
        let count = unlisted.len();
        for id in unlisted {
            self.remove(AdKey::local(id));
        }
        count
    }

    fn remove(&mut self, key: AdKey) -> bool {
        let existed = match key.source {
            AdSource::Local => self.local.remove(&key.register_id).is_some(),
            AdSource::Remote(_) => self.remote.remove(&key).is_some(),
        };
        if existed {
            self.dirty.insert(key);
        }
        existed
    }

    /// Whether a stored ad was overtaken while the store was unreachable (or simply expired).
    fn overtaken(&self, ad: &Advertisement) -> bool {
        match &ad.source {
            AdSource::Local => {
                let withdrawn_since = self
                    .withdrawn
                    .get(&ad.register_id)
                    .is_some_and(|at| *at >= ad.changed_at);
                let full_synced_since = self
                    .session_full_sync
                    .is_some_and(|read_at| ad.changed_at <= read_at);
                withdrawn_since || full_synced_since
            }
            // Reloaded remote ads get their grace whatever their stamps say (the clock rule).
            AdSource::Remote(peer) => self.session_gossip.contains(peer),
        }
    }
}

fn same_register(a: &&Entry, b: &&Entry) -> bool {
    a.ad.register_id == b.ad.register_id
}

/// One register of the answer from its live sources, ordered as `live_by_register` orders them.
fn merge_sources(sources: &[&Entry]) -> AvailableRegister {
    AvailableRegister {
        register_id: sources[0].ad.register_id.clone(),
        name: sources.iter().find_map(|e| e.ad.name.clone()),
        description: sources.iter().find_map(|e| e.ad.description.clone()),
        peer_count: sources.len(),
        latest_version: sources
            .iter()
            .map(|e| e.ad.latest_version)
            .max()
            .unwrap_or(0),
        latest_docket_version: sources
            .iter()
            .map(|e| e.ad.latest_docket_version)
            .max()
            .unwrap_or(0),
        is_public: true,
        full_replica_peer_count: sources
            .iter()
            .filter(|e| e.ad.sync_state.is_full_replica())
            .count(),
        local: sources.iter().any(|e| e.ad.source == AdSource::Local),
        verified: sources.iter().all(|e| e.verified),
        stale: false,
        local_state: sources
            .iter()
            .find(|e| e.ad.source == AdSource::Local)
            .map(|e| e.ad.sync_state),
    }
}

/// A new, verified ad from `input`.
fn new_entry(input: &AdInput, source: AdSource, now: Timestamp) -> Entry {
    Entry {
        ad: Advertisement {
            register_id: input.register_id.clone(),
            source,
            sync_state: input.sync_state.unwrap_or_default(),
            is_public: true,
            latest_version: input.latest_version,
            latest_docket_version: input.latest_docket_version,
            name: input.name.clone(),
            description: input.description.clone(),
            refreshed_at: now,
            changed_at: now,
        },
        verified: true,
        grace_until: None,
    }
}

/// Confirms an existing ad with `input`: verified and refreshed; its content changes only where
/// `input` says something new. Never erases a name or description, never lets an older version
/// overwrite a newer one.
fn refresh(entry: &mut Entry, input: &AdInput, now: Timestamp) -> Upsert {
    entry.verified = true;
    entry.grace_until = None;
    let ad = &mut entry.ad;
    ad.refreshed_at = now;
    let name_changes = input.name.is_some() && input.name != ad.name;
    let description_changes = input.description.is_some() && input.description != ad.description;
    let latest_version = ad.latest_version.max(input.latest_version);
    let latest_docket_version = ad.latest_docket_version.max(input.latest_docket_version);
    let sync_state_changes = input.sync_state.is_some_and(|state| state != ad.sync_state);
    let changed = name_changes
        || description_changes
        || sync_state_changes
        || latest_version != ad.latest_version
        || latest_docket_version != ad.latest_docket_version
        || !ad.is_public;
    if !changed {
        return Upsert::Unchanged;
    }
    if name_changes {
        ad.name.clone_from(&input.name);
    }
    if description_changes {
        ad.description.clone_from(&input.description);
    }
    if let Some(state) = input.sync_state {
        ad.sync_state = state;
    }
    ad.latest_version = latest_version;
    ad.latest_docket_version = latest_docket_version;
    ad.is_public = true;
    ad.changed_at = now;
    Upsert::Updated
}

#[cfg(test)]
mod tests {
    use herald_messages::{MAX_SNAPSHOT_SEQ_RATE, SNAPSHOT_SEQ_SLACK, SyncState};

    use herald_messages::Validate;

    use super::*;

    impl PoolState {
        /// `apply_bulk` for a request as the tests build it: validated on the way in, as
        /// `NodeApi` and the links do.
        fn bulk(
            &mut self,
            request: &BulkAdvertise,
            now: Timestamp,
        ) -> Result<BulkOutcome, PoolError> {
            let request = request.clone().validated()?;
            self.apply_bulk(&request, now)
        }
    }

    const TTL: Duration = Duration::from_secs(300);

    fn id(n: u8) -> RegisterId {
        RegisterId::from_bytes([n; 16])
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1_000)
    }

    const RULES: PoolRules = PoolRules {
        ad_ttl: TTL,
        tombstone_horizon: Duration::from_secs(3_600),
        snapshot_clock_tolerance: Duration::from_secs(60),
    };

    /// A book that has not loaded its store yet.
    fn unloaded() -> PoolState {
        PoolState::new(RULES, 1_000)
    }

    /// Plays a store that keeps what it is given: it holds the meta record as a store adapter
    /// would (a batch of changes never creates it).
    #[derive(Debug, Default, Clone)]
    struct Store {
        meta: Option<PoolMeta>,
    }

    impl Store {
        /// Writes `state.batch()` and tells the book what the store held before.
        fn write(&mut self, state: &mut PoolState) -> WriteCheck {
            let (meta, scope) = {
                let batch = state.batch();
                (batch.meta, batch.scope)
            };
            let previous = self.meta;
            if scope == BatchScope::Everything || previous.is_some() {
                self.meta = Some(meta);
            }
            state.mark_written(previous.as_ref())
        }
    }

    /// A book loaded from an empty store, its first write done.
    fn state_and_store() -> (PoolState, Store) {
        let mut state = unloaded();
        state.merge_loaded(StoredPool::default(), at(0));
        let mut store = Store::default();
        assert_eq!(store.write(&mut state), WriteCheck::Claimed);
        (state, store)
    }

    fn state() -> PoolState {
        state_and_store().0
    }

    fn public(n: u8, name: Option<&str>, version: u64) -> AdInput {
        AdInput {
            name: name.map(Into::into),
            latest_version: version,
            ..AdInput::public(id(n))
        }
    }

    fn full(inputs: Vec<AdInput>, seq: u64, read_at: Timestamp) -> BulkAdvertise {
        BulkAdvertise::full(inputs, Some(Snapshot::new(seq, read_at)))
    }

    fn ids(state: &PoolState, now: Timestamp) -> Vec<RegisterId> {
        state
            .available(now)
            .into_iter()
            .map(|a| a.register_id)
            .collect()
    }

    #[test]
    fn fr009_advertise_then_repeat_writes_once() {
        let (mut state, mut store) = state_and_store();
        let first = state
            .bulk(&BulkAdvertise::one(public(1, Some("a"), 1)), at(1))
            .unwrap();
        assert_eq!((first.added, first.unchanged), (1, 0));
        assert_eq!(state.batch().puts.len(), 1);
        assert_eq!(store.write(&mut state), WriteCheck::Intact);
        let again = state
            .bulk(&BulkAdvertise::one(public(1, Some("a"), 1)), at(2))
            .unwrap();
        assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 1));
        assert!(
            !state.has_unwritten(),
            "FR-009: nothing changed, nothing to write"
        );
    }

    #[test]
    fn name_and_description_survive_updates_without_them_and_versions_never_regress() {
        let mut state = state();
        let mut first = public(1, Some("orders"), 5);
        first.description = Some("all orders".into());
        first.latest_docket_version = 3;
        state.bulk(&BulkAdvertise::one(first), at(1)).unwrap();
        let bare = AdInput {
            latest_version: 2,
            latest_docket_version: 1,
            ..AdInput::public(id(1))
        };
        let outcome = state.bulk(&BulkAdvertise::one(bare), at(2)).unwrap();
        assert_eq!(outcome.unchanged, 1);
        let shown = &state.available(at(3))[0];
        assert_eq!(shown.name.as_deref(), Some("orders"));
        assert_eq!(shown.description.as_deref(), Some("all orders"));
        assert_eq!((shown.latest_version, shown.latest_docket_version), (5, 3));
    }

    #[test]
    fn fr011_full_sync_removes_unlisted_local_ads_but_not_remote_ones() {
        let mut state = state();
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        state
            .bulk(&BulkAdvertise::one(public(2, None, 0)), at(1))
            .unwrap();
        let peer = NodeId::parse("peer-b").unwrap();
        state.apply_gossip(&peer, &[public(9, None, 0)], at(1));
        let outcome = state
            .bulk(&full(vec![public(2, None, 0)], 1, at(5)), at(6))
            .unwrap();
        assert_eq!(outcome.removed, 1);
        assert_eq!(ids(&state, at(7)), vec![id(2), id(9)]);
    }

    #[test]
    fn available_if_changed_is_none_for_the_same_answer_and_the_whole_answer_otherwise() {
        let mut state = state();
        for n in 1..=4 {
            state
                .bulk(&BulkAdvertise::one(public(n, None, 0)), at(1))
                .unwrap();
        }
        let served = SharedRegisters::from(state.available(at(2)));
        assert_eq!(state.available_if_changed(at(2), &served), None);
        let mut shorter = state.available(at(2));
        shorter.pop();
        let shorter = SharedRegisters::from(shorter);
        // Changes first, in the middle, at the end, and a register added or removed.
        let changes: [(u8, Option<&str>, bool); 4] = [
            (1, Some("first"), false),
            (3, Some("middle"), false),
            (5, None, false),
            (2, None, true),
        ];
        for (n, name, withdraw) in changes {
            let before = SharedRegisters::from(state.available(at(2)));
            let mut input = public(n, name, 0);
            input.is_public = !withdraw;
            state.bulk(&BulkAdvertise::one(input), at(2)).unwrap();
            let now = SharedRegisters::from(state.available(at(2)));
            assert_ne!(now, before, "register {n} changed the answer");
            assert_eq!(
                state.available_if_changed(at(2), &before),
                Some(now.clone())
            );
            assert_eq!(state.available_if_changed(at(2), &now), None);
        }
        assert_eq!(
            state.available_if_changed(at(2), &shorter),
            Some(state.available(at(2)).into()),
            "a served answer shorter or longer than the book's is a change"
        );
    }

    #[test]
    fn fr011_empty_full_sync_is_legal_and_removes_every_local_ad() {
        let mut state = state();
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        let outcome = state.bulk(&full(vec![], 1, at(2)), at(3)).unwrap();
        assert_eq!((outcome.processed, outcome.removed), (0, 1));
        assert!(state.available(at(4)).is_empty());
    }

    #[test]
    fn stale_snapshot_is_rejected_and_changes_nothing() {
        let mut state = state();
        state
            .bulk(&full(vec![public(1, None, 0)], 7, at(10)), at(11))
            .unwrap();
        let err = state
            .bulk(&full(vec![public(2, None, 0)], 6, at(9)), at(12))
            .unwrap_err();
        assert!(matches!(
            err,
            PoolError::StaleSnapshot {
                offered_seq: 6,
                applied_seq: 7,
                ..
            }
        ));
        assert_eq!(ids(&state, at(13)), vec![id(1)]);
        // The same snapshot again is a harmless repeat.
        assert!(
            state
                .bulk(&full(vec![public(1, None, 0)], 7, at(10)), at(14))
                .is_ok()
        );
    }

    #[test]
    fn a_reset_ground_truth_is_accepted_when_read_later() {
        let mut state = state();
        state
            .bulk(&full(vec![public(1, None, 0)], 50, at(10)), at(11))
            .unwrap();
        let outcome = state
            .bulk(&full(vec![public(2, None, 0)], 1, at(20)), at(21))
            .unwrap();
        assert_eq!((outcome.added, outcome.removed), (1, 1));
    }

    #[test]
    fn a_change_after_the_snapshot_is_not_undone_by_it() {
        let mut state = state();
        // Snapshot read at t=10 lists register 1; it was withdrawn at t=12 and register 2 was
        // advertised at t=13, before the snapshot arrived at t=15.
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        state
            .bulk(&BulkAdvertise::one(AdInput::withdraw(id(1))), at(12))
            .unwrap();
        state
            .bulk(&BulkAdvertise::one(public(2, None, 0)), at(13))
            .unwrap();
        state
            .bulk(&full(vec![public(1, None, 0)], 3, at(10)), at(15))
            .unwrap();
        assert_eq!(ids(&state, at(16)), vec![id(2)]);
        // A snapshot read after both changes is applied in full.
        state
            .bulk(&full(vec![public(1, None, 0)], 4, at(20)), at(21))
            .unwrap();
        assert_eq!(ids(&state, at(22)), vec![id(1)]);
    }

    #[test]
    fn invalid_request_changes_nothing() {
        let (mut state, mut store) = state_and_store();
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        store.write(&mut state);
        let duplicate = full(vec![public(2, None, 0), public(2, None, 0)], 1, at(2));
        assert!(matches!(
            state.bulk(&duplicate, at(3)),
            Err(PoolError::Invalid(_))
        ));
        assert_eq!(ids(&state, at(4)), vec![id(1)]);
        assert!(!state.has_unwritten());
    }

    #[test]
    fn remote_ads_expire_after_the_ttl_without_gossip() {
        let mut state = state();
        let peer = NodeId::parse("peer-b").unwrap();
        state.apply_gossip(&peer, &[public(1, None, 0)], at(0));
        assert_eq!(ids(&state, at(299)), vec![id(1)]);
        assert!(
            ids(&state, at(300)).is_empty(),
            "not served once stale, even before a sweep"
        );
        assert_eq!(state.sweep(at(300)), 1);
        assert_eq!(state.batch().deletes.len(), 1);
    }

    /// The pool's view is published at changes; `next_expiry` says when the next remote ad
    /// dies, so that the pool publishes again then.
    #[test]
    fn next_expiry_is_the_first_live_remote_ad_to_die() {
        let mut state = state();
        assert_eq!(state.next_expiry(at(0)), None);
        state
            .bulk(&BulkAdvertise::one(public(9, None, 0)), at(0))
            .unwrap();
        assert_eq!(state.next_expiry(at(0)), None, "local ads never expire");
        let b = NodeId::parse("peer-b").unwrap();
        let c = NodeId::parse("peer-c").unwrap();
        state.apply_gossip(&b, &[public(1, None, 0)], at(10));
        state.apply_gossip(&c, &[public(2, None, 0)], at(20));
        assert_eq!(state.next_expiry(at(30)), Some(at(310)));
        assert_eq!(
            state.next_expiry(at(310)),
            Some(at(320)),
            "a dead ad is no longer waited for"
        );
        assert_eq!(state.next_expiry(at(320)), None);
    }

    /// `fullReplicaPeerCount` counts the sources that say they hold a full replica; an
    /// advertise without a sync state keeps the one stored.
    #[test]
    fn the_sync_state_of_an_advertise_decides_the_full_replica_count() {
        let mut state = state();
        let mut syncing = public(1, None, 0);
        syncing.sync_state = Some(SyncState::Syncing);
        state.bulk(&BulkAdvertise::one(syncing), at(0)).unwrap();
        let shown = state.available(at(1));
        assert_eq!(
            (shown[0].peer_count, shown[0].full_replica_peer_count),
            (1, 0)
        );
        let outcome = state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(2))
            .unwrap();
        assert_eq!(outcome.updated, 0, "no sync state: the stored one stays");
        assert_eq!(state.available(at(3))[0].full_replica_peer_count, 0);
        let mut replicated = public(1, None, 0);
        replicated.sync_state = Some(SyncState::FullyReplicated);
        let outcome = state.bulk(&BulkAdvertise::one(replicated), at(4)).unwrap();
        assert_eq!(outcome.updated, 1);
        assert_eq!(state.available(at(5))[0].full_replica_peer_count, 1);
    }

    #[test]
    fn gossip_is_a_complete_list_and_merges_with_local() {
        let mut state = state();
        let peer = NodeId::parse("peer-b").unwrap();
        state
            .bulk(&BulkAdvertise::one(public(1, Some("local name"), 4)), at(0))
            .unwrap();
        state.apply_gossip(
            &peer,
            &[public(1, Some("remote name"), 9), public(2, None, 0)],
            at(1),
        );
        let shown = state.available(at(2));
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[0].peer_count, 2);
        assert_eq!(shown[0].name.as_deref(), Some("local name"));
        assert_eq!(shown[0].latest_version, 9);
        assert!(shown[0].local && !shown[1].local);
        state.apply_gossip(&peer, &[], at(3));
        assert_eq!(state.available(at(4)).len(), 1);
        assert_eq!(state.available(at(4))[0].peer_count, 1);
    }

    #[test]
    fn reload_serves_unverified_until_a_full_sync_confirms() {
        let mut state = unloaded();
        let stored_ad = |n: u8| Advertisement {
            register_id: id(n),
            source: AdSource::Local,
            sync_state: SyncState::Active,
            is_public: true,
            latest_version: 1,
            latest_docket_version: 0,
            name: Some(format!("r{n}").into()),
            description: None,
            refreshed_at: at(0),
            changed_at: at(0),
        };
        let report = state.merge_loaded(
            StoredPool {
                ads: vec![stored_ad(1), stored_ad(2)],
                meta: None,
                skipped: vec!["bad".into()],
            },
            at(100),
        );
        assert_eq!((report.restored, report.skipped), (2, 1));
        let shown = state.available(at(100));
        assert_eq!(shown.len(), 2);
        assert!(shown.iter().all(|a| !a.verified));
        state
            .bulk(&full(vec![public(1, None, 0)], 1, at(101)), at(102))
            .unwrap();
        let shown = state.available(at(103));
        assert_eq!(shown.len(), 1);
        assert!(shown[0].verified);
        assert_eq!(
            shown[0].name.as_deref(),
            Some("r1"),
            "the full sync kept the stored name"
        );
    }

    #[test]
    fn a_late_load_does_not_resurrect_what_changed_meanwhile() {
        let mut state = unloaded();
        // The store was down at start: a withdrawal and a full sync happened in memory first.
        state
            .bulk(&BulkAdvertise::one(AdInput::withdraw(id(1))), at(50))
            .unwrap();
        state
            .bulk(&full(vec![public(3, None, 0)], 2, at(60)), at(61))
            .unwrap();
        let local = |n: u8, changed: i64| Advertisement {
            register_id: id(n),
            source: AdSource::Local,
            sync_state: SyncState::Active,
            is_public: true,
            latest_version: 0,
            latest_docket_version: 0,
            name: None,
            description: None,
            refreshed_at: at(changed),
            changed_at: at(changed),
        };
        let report = state.merge_loaded(
            StoredPool {
                ads: vec![local(1, 10), local(2, 10), local(3, 10)],
                meta: None,
                skipped: vec![],
            },
            at(70),
        );
        assert_eq!((report.restored, report.discarded), (0, 2));
        assert_eq!(ids(&state, at(71)), vec![id(3)]);
        let batch = state.batch();
        assert_eq!(
            batch.deletes.len(),
            2,
            "the overtaken stored ads are deleted: {batch:?}"
        );
    }

    fn stored(source: AdSource, n: u8, stamped: Timestamp) -> Advertisement {
        Advertisement {
            register_id: id(n),
            source,
            sync_state: SyncState::Active,
            is_public: true,
            latest_version: 1,
            latest_docket_version: 0,
            name: None,
            description: None,
            refreshed_at: stamped,
            changed_at: stamped,
        }
    }

    fn peer() -> NodeId {
        NodeId::parse("peer-b").unwrap()
    }

    /// Issue 7, scenario A: after the store lost everything, one batch of changes recreated the
    /// meta record and hid the loss (930 of 999 acknowledged ads lost). The batch's answer now
    /// says so, and the next batch holds everything, under a new generation.
    #[test]
    fn scenario_a_a_batch_of_changes_into_an_emptied_store_asks_for_everything_again() {
        let (mut state, mut store) = state_and_store();
        for n in 1..=3 {
            state
                .bulk(&BulkAdvertise::one(public(n, None, 0)), at(1))
                .unwrap();
        }
        assert_eq!(store.write(&mut state), WriteCheck::Intact);
        let generation = store.meta.unwrap().generation;

        store = Store::default(); // FLUSHALL, or a restart without persistence
        state
            .bulk(&BulkAdvertise::one(public(4, None, 0)), at(2))
            .unwrap();
        assert_eq!(store.write(&mut state), WriteCheck::Lost);
        assert_eq!(
            store.meta, None,
            "a batch of changes never recreates the record"
        );
        assert!(state.has_unwritten());
        let again = state.batch();
        assert_eq!(again.scope, BatchScope::Everything);
        assert_eq!(again.puts.len(), 4);
        assert_ne!(again.meta.generation, generation);
        assert_eq!(again.meta.write_seq, 1);
        assert_eq!(store.write(&mut state), WriteCheck::Claimed);
        assert!(!state.has_unwritten());
        assert_eq!(state.store_repairs(), 1);
        assert!(state.store_holds_mark(store.meta.as_ref()));
    }

    /// A store replaced by an older copy of itself (a restored backup, a failover to a lagging
    /// replica) still has a meta record, but not the last one: the next batch notices.
    #[test]
    fn a_store_rolled_back_to_an_older_copy_is_noticed_by_the_next_batch_and_the_check() {
        let (mut state, mut store) = state_and_store();
        let older = store.clone();
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        assert_eq!(store.write(&mut state), WriteCheck::Intact);
        assert!(
            !state.store_holds_mark(older.meta.as_ref()),
            "the check sees it"
        );
        assert!(state.store_holds_mark(store.meta.as_ref()));

        store = older;
        state
            .bulk(&BulkAdvertise::one(public(2, None, 0)), at(2))
            .unwrap();
        assert_eq!(store.write(&mut state), WriteCheck::Lost);
        assert_eq!(state.batch().puts.len(), 2);
        assert_eq!(store.write(&mut state), WriteCheck::Claimed);
    }

    /// A write that failed may still have reached the store (its reply lost): finding that
    /// batch's mark later is no loss, and no repair is counted.
    #[test]
    fn a_failed_write_that_reached_the_store_is_no_loss() {
        let (mut state, mut store) = state_and_store();
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        let mut reached = store.clone();
        reached.write(&mut state.clone());
        state.write_failed();
        assert!(state.store_holds_mark(reached.meta.as_ref()));
        assert!(state.store_holds_mark(store.meta.as_ref()));
        state.mark_all_dirty(); // the retry after the outage writes everything
        store = reached;
        assert_eq!(store.write(&mut state), WriteCheck::Intact);
        assert_eq!(state.store_repairs(), 0);
    }

    #[test]
    fn a_check_that_finds_no_record_makes_the_next_batch_everything() {
        let (mut state, mut store) = state_and_store();
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        store.write(&mut state);
        assert!(!state.store_holds_mark(None));
        state.rewrite_everything();
        assert!(state.store_holds_mark(None), "a write of everything is due");
        assert_eq!(state.batch().scope, BatchScope::Everything);
        assert_eq!(state.batch().puts.len(), 1);
        store = Store::default();
        assert_eq!(store.write(&mut state), WriteCheck::Claimed);
        assert_eq!(state.store_repairs(), 1);
    }

    /// Renewal writes everything: when the store lost data meanwhile, that write repaired it.
    #[test]
    fn a_renewal_into_an_emptied_store_counts_a_repair_and_needs_nothing_more() {
        let (mut state, mut store) = state_and_store();
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        store.write(&mut state);
        store = Store::default();
        state.mark_all_dirty();
        assert_eq!(store.write(&mut state), WriteCheck::Repaired);
        assert!(!state.has_unwritten());
        assert_eq!(state.store_repairs(), 1);
        assert!(state.store_holds_mark(store.meta.as_ref()));
    }

    #[test]
    fn a_load_continues_the_stored_generation_and_claims_a_store_without_one() {
        let mut state = unloaded();
        let meta = PoolMeta {
            last_snapshot: None,
            generation: 77,
            write_seq: 12,
        };
        let report = state.merge_loaded(
            StoredPool {
                ads: vec![stored(AdSource::Local, 1, at(1))],
                meta: Some(meta),
                skipped: vec![],
            },
            at(5),
        );
        assert!(report.adopted_mark);
        assert!(
            !state.has_unwritten(),
            "nothing to write after a clean load"
        );
        assert!(state.store_holds_mark(Some(&meta)));
        state
            .bulk(&BulkAdvertise::one(public(2, None, 0)), at(6))
            .unwrap();
        let batch = state.batch();
        assert_eq!(
            (batch.scope, batch.meta.generation, batch.meta.write_seq),
            (BatchScope::Changes, 77, 13)
        );

        // A record written before generations: everything is written again.
        let mut legacy = unloaded();
        let report = legacy.merge_loaded(
            StoredPool {
                ads: vec![stored(AdSource::Local, 1, at(1))],
                meta: Some(PoolMeta::default()),
                skipped: vec![],
            },
            at(5),
        );
        assert!(!report.adopted_mark);
        let batch = legacy.batch();
        assert_eq!((batch.scope, batch.puts.len()), (BatchScope::Everything, 1));
    }

    /// Issue 7, item 6: stored stamps decided liveness on the wall clock of another run, so a
    /// clock stepped forward dropped every reloaded remote ad and one stepped back kept them
    /// for hours. A reloaded remote ad now lives one TTL from its reload, unverified.
    #[test]
    fn reloaded_remote_ads_live_one_ttl_from_the_reload_whatever_their_stamps_say() {
        let loaded_at = at(1_000_000);
        let days_ago = loaded_at.saturating_sub(Duration::from_secs(3 * 86_400));
        let hours_ahead = loaded_at.saturating_add(Duration::from_secs(6 * 3_600));
        let remote_of = |n, stamped| stored(AdSource::Remote(peer()), n, stamped);
        let mut state = unloaded();
        let report = state.merge_loaded(
            StoredPool {
                ads: vec![
                    remote_of(1, days_ago),
                    remote_of(2, hours_ahead),
                    stored(AdSource::Local, 3, days_ago),
                ],
                meta: None,
                skipped: vec![],
            },
            loaded_at,
        );
        assert_eq!((report.restored, report.discarded), (3, 0));
        let just_before = loaded_at.saturating_add(TTL - Duration::from_millis(1));
        assert_eq!(ids(&state, just_before), vec![id(1), id(2), id(3)]);
        assert!(state.available(just_before).iter().all(|a| !a.verified));
        let after_ttl = loaded_at.saturating_add(TTL);
        assert_eq!(
            ids(&state, after_ttl),
            vec![id(3)],
            "local ads are authoritative"
        );
        assert_eq!(state.sweep(after_ttl), 2);

        // A gossip confirms a reloaded ad: from then on the usual TTL after the last gossip.
        let mut state = unloaded();
        state.merge_loaded(
            StoredPool {
                ads: vec![remote_of(1, hours_ahead)],
                meta: None,
                skipped: vec![],
            },
            loaded_at,
        );
        let confirmed_at = loaded_at.saturating_add(Duration::from_secs(200));
        state.apply_gossip(&peer(), &[public(1, None, 0)], confirmed_at);
        assert_eq!(ids(&state, after_ttl), vec![id(1)]);
        assert!(state.available(after_ttl)[0].verified);
        assert!(ids(&state, confirmed_at.saturating_add(TTL)).is_empty());
    }

    /// After a clock step back, a reloaded local ad stamped "in the future" must not outlast a
    /// full sync read now: stamps are taken as the reload time at most.
    #[test]
    fn a_reloaded_local_ad_stamped_in_the_future_is_still_removed_by_a_full_sync() {
        let loaded_at = at(1_000_000);
        let hours_ahead = loaded_at.saturating_add(Duration::from_secs(6 * 3_600));
        let mut state = unloaded();
        state.merge_loaded(
            StoredPool {
                ads: vec![stored(AdSource::Local, 1, hours_ahead)],
                meta: None,
                skipped: vec![],
            },
            loaded_at,
        );
        let read_at = loaded_at.saturating_add(Duration::from_secs(1));
        let outcome = state
            .bulk(&full(vec![public(2, None, 0)], 1, read_at), read_at)
            .unwrap();
        assert_eq!((outcome.added, outcome.removed), (1, 1));
        assert_eq!(ids(&state, read_at), vec![id(2)]);
    }

    /// Issue 7, scenario B: a snapshot read "in 292 million years" at seq 2^64-1 was applied
    /// and persisted, and every later full sync was refused as stale. It is invalid input now.
    #[test]
    fn scenario_b_a_snapshot_from_the_future_is_invalid_and_changes_nothing() {
        let mut state = state();
        state
            .bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        let bogus = BulkAdvertise::full(
            vec![],
            Some(Snapshot::new(
                u64::MAX,
                Timestamp::from_unix_millis(i64::MAX),
            )),
        );
        let err = state.bulk(&bogus, at(2)).unwrap_err();
        assert!(
            matches!(&err, PoolError::Invalid(invalid) if invalid.field == "snapshot.readAt"),
            "{err}"
        );
        assert_eq!(ids(&state, at(3)), vec![id(1)]);
        assert_eq!(state.last_snapshot(), None);
        let far_seq = full(vec![], u64::MAX, at(2));
        assert!(matches!(
            state.bulk(&far_seq, at(3)),
            Err(PoolError::Invalid(invalid)) if invalid.field == "snapshot.seq"
        ));
        // The legitimate full sync goes through.
        state
            .bulk(&full(vec![public(2, None, 0)], 5, at(3)), at(4))
            .unwrap();
        assert_eq!(ids(&state, at(5)), vec![id(2)]);
    }

    #[test]
    fn a_seq_jump_no_store_can_make_is_invalid() {
        let mut state = state();
        state.bulk(&full(vec![], 10, at(100)), at(100)).unwrap();
        let jump = full(
            vec![],
            10 + SNAPSHOT_SEQ_SLACK + 2 * MAX_SNAPSHOT_SEQ_RATE,
            at(101),
        );
        assert!(matches!(
            state.bulk(&jump, at(101)),
            Err(PoolError::Invalid(invalid)) if invalid.field == "snapshot.seq"
        ));
        let plausible = full(vec![], 10 + SNAPSHOT_SEQ_SLACK, at(101));
        assert!(state.bulk(&plausible, at(101)).is_ok());
    }

    /// The recovery rule: a full sync from another ground-truth epoch starts the order again,
    /// so a peer holding a snapshot that no later one can beat accepts the register role's.
    #[test]
    fn a_full_sync_from_another_epoch_starts_the_order_again_and_one_without_epoch_is_ordered() {
        let epoch = |n: u8| Some(herald_messages::GroundTruthEpoch::from_bytes([n; 16]));
        let snapshot = |seq, secs, of| Snapshot {
            epoch: of,
            ..Snapshot::new(seq, at(secs))
        };
        let mut state = state();
        let applied = snapshot(900, 50, epoch(1));
        state
            .bulk(&BulkAdvertise::full(vec![], Some(applied)), at(50))
            .unwrap();
        let older_same_epoch = snapshot(5, 40, epoch(1));
        assert!(matches!(
            state.bulk(&BulkAdvertise::full(vec![], Some(older_same_epoch)), at(51)),
            Err(PoolError::StaleSnapshot { .. })
        ));
        let older_without_epoch = Snapshot::new(5, at(40));
        assert!(matches!(
            state.bulk(
                &BulkAdvertise::full(vec![], Some(older_without_epoch)),
                at(51)
            ),
            Err(PoolError::StaleSnapshot { .. })
        ));
        let other_epoch = snapshot(5, 40, epoch(2));
        state
            .bulk(
                &BulkAdvertise::full(vec![public(1, None, 0)], Some(other_epoch)),
                at(51),
            )
            .unwrap();
        assert_eq!(state.last_snapshot(), Some(other_epoch));
        assert_eq!(ids(&state, at(52)), vec![id(1)]);
    }

    /// Recovery of a peer that accepted a bad snapshot before snapshots were validated: the
    /// stored snapshot is input too, and is dropped at load.
    #[test]
    fn a_stored_snapshot_from_the_future_is_dropped_at_load() {
        let mut state = unloaded();
        let poisoned = Snapshot::new(u64::MAX, Timestamp::from_unix_millis(i64::MAX));
        let report = state.merge_loaded(
            StoredPool {
                ads: vec![],
                meta: Some(PoolMeta {
                    last_snapshot: Some(poisoned),
                    generation: 3,
                    write_seq: 4,
                }),
                skipped: vec![],
            },
            at(10),
        );
        assert_eq!(report.refused_snapshot, Some(poisoned));
        assert_eq!(state.last_snapshot(), None);
        assert!(
            state.has_unwritten(),
            "the meta record is written without it"
        );
        assert_eq!(state.batch().meta.last_snapshot, None);
        state.bulk(&full(vec![], 1, at(10)), at(11)).unwrap();
    }
}
