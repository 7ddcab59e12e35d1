//! The pool's in-memory book and every decision it makes, without a runtime: what a bulk
//! request, a gossip, a reload or a sweep changes, and what must be written to the store.
//!
//! Every method takes `now` from the caller. Writes are not done here: changed keys are marked
//! dirty and `batch()` turns them into one store write.

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
    PoolError, PoolMeta, RegisterId, Snapshot, StoreHealth, SyncState, Timestamp,
};

use crate::ports::{AdBatch, StoredPool};

/// One advertisement in memory.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    ad: Advertisement,
    /// False after a reload until the source confirms the ad again.
    verified: bool,
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
    /// Stored ads that had expired or were overtaken by changes made while the store was away.
    pub discarded: usize,
    /// Records the store could not decode.
    pub skipped: usize,
}

/// The pool's book: ads by key, what the store still lacks, and the store's health.
#[derive(Debug)]
pub struct PoolState {
    ad_ttl: Duration,
    tombstone_horizon: Duration,
    /// This node's ads, by register: the hot path (full syncs), looked up without building keys.
    local: FastMap<RegisterId, Entry>,
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
    loaded: bool,
    store: StoreHealth,
}

impl PoolState {
    pub fn new(ad_ttl: Duration, tombstone_horizon: Duration) -> Self {
        Self {
            ad_ttl,
            tombstone_horizon,
            local: FastMap::default(),
            remote: FastMap::default(),
            withdrawn: FastMap::default(),
            last_snapshot: None,
            session_full_sync: None,
            session_gossip: HashSet::new(),
            dirty: FastSet::default(),
            meta_dirty: true,
            loaded: false,
            store: StoreHealth::Healthy,
        }
    }

    /// Applies an advertise / withdraw / full-sync request. A refused request changes nothing.
    pub fn apply_bulk(
        &mut self,
        request: &BulkAdvertise,
        now: Timestamp,
    ) -> Result<BulkOutcome, PoolError> {
        request.validate()?;
        if request.full_sync {
            self.check_snapshot(request.snapshot)?;
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
    /// from the store); the rest are served at once, unverified.
    pub fn merge_loaded(&mut self, stored: StoredPool, now: Timestamp) -> LoadReport {
        let mut report = LoadReport {
            skipped: stored.skipped.len(),
            ..LoadReport::default()
        };
        self.local.reserve(stored.ads.len());
        for ad in stored.ads {
            let in_memory = match &ad.source {
                AdSource::Local => self.local.contains_key(&ad.register_id),
                AdSource::Remote(_) => self.remote.contains_key(&ad.key()),
            };
            if in_memory {
                continue;
            }
            if self.overtaken(&ad, now) {
                report.discarded += 1;
                self.dirty.insert(ad.key());
                continue;
            }
            let entry = Entry {
                ad,
                verified: false,
            };
            match &entry.ad.source {
                AdSource::Local => {
                    self.local.insert(entry.ad.register_id.clone(), entry);
                }
                AdSource::Remote(_) => {
                    self.remote.insert(entry.ad.key(), entry);
                }
            }
            report.restored += 1;
        }
        let stored_snapshot = stored.meta.and_then(|meta| meta.last_snapshot);
        match (stored_snapshot, self.last_snapshot) {
            (Some(stored), None) => self.last_snapshot = Some(stored),
            (Some(stored), Some(current)) if stored.seq > current.seq => {
                self.last_snapshot = Some(stored)
            }
            _ => {}
        }
        // Write the meta record whatever was found: it marks the store as holding our data.
        self.meta_dirty = true;
        self.loaded = true;
        report
    }

    /// Drops remote ads not refreshed within the TTL and forgets old withdrawals. Returns how
    /// many ads expired. (Local ads never expire.)
    pub fn sweep(&mut self, now: Timestamp) -> usize {
        let expired: Vec<AdKey> = self
            .remote
            .iter()
            .filter(|(_, entry)| !self.is_live(&entry.ad, now))
            .map(|(key, _)| key.clone())
            .collect();
        let count = expired.len();
        for key in expired {
            self.remove(key);
        }
        let horizon = now.saturating_sub(self.tombstone_horizon);
        self.withdrawn
            .retain(|_, withdrawn_at| *withdrawn_at > horizon);
        count
    }

    /// Every live public register, merged across sources, ordered by id.
    pub fn available(&self, now: Timestamp) -> Vec<AvailableRegister> {
        let mut live: Vec<&Entry> = self
            .entries()
            .filter(|entry| entry.ad.is_public && self.is_live(&entry.ad, now))
            .collect();
        // By register, then local first and remote peers by id: names come from the most
        // authoritative source.
        live.sort_unstable_by(|a, b| {
            (&a.ad.register_id, &a.ad.source).cmp(&(&b.ad.register_id, &b.ad.source))
        });
        live.chunk_by(|a, b| a.ad.register_id == b.ad.register_id)
            .map(|sources| AvailableRegister {
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
            })
            .collect()
    }

    /// The write that brings the store up to date: current ads for dirty keys that exist,
    /// deletes for those that do not, and the meta record. It borrows the book: nothing is
    /// copied on the way to the store.
    pub fn batch(&self) -> AdBatch<'_> {
        let mut batch = AdBatch {
            puts: Vec::with_capacity(self.dirty.len()),
            deletes: Vec::new(),
            meta: PoolMeta {
                last_snapshot: self.last_snapshot,
            },
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

    /// The store took the last `batch()`.
    pub fn mark_written(&mut self) {
        self.dirty.clear();
        self.meta_dirty = false;
    }

    /// Everything must be written again (renewal of expiries, or a store that lost its data).
    pub fn mark_all_dirty(&mut self) {
        self.dirty.reserve(self.local.len() + self.remote.len());
        self.dirty
            .extend(self.local.keys().map(|id| AdKey::local(id.clone())));
        self.dirty.extend(self.remote.keys().cloned());
        self.meta_dirty = true;
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

    fn is_live(&self, ad: &Advertisement, now: Timestamp) -> bool {
        match ad.source {
            // Local ads are authoritative: they live until withdrawn or removed by a full sync.
            AdSource::Local => true,
            AdSource::Remote(_) => now < ad.refreshed_at.saturating_add(self.ad_ttl),
        }
    }

    fn check_snapshot(&self, offered: Option<Snapshot>) -> Result<(), PoolError> {
        let (Some(offered), Some(applied)) = (offered, self.last_snapshot) else {
            return Ok(());
        };
        // Older in both revision and read time: a delayed snapshot. A lower revision read later
        // means the ground truth was reset, and the newer read wins.
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
                self.local.insert(input.register_id.clone(), entry);
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
            .iter()
            .filter(|(id, entry)| !listed.contains(id) && entry.ad.changed_at <= read_at)
            .map(|(id, _)| id.clone())
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
    fn overtaken(&self, ad: &Advertisement, now: Timestamp) -> bool {
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
            AdSource::Remote(peer) => !self.is_live(ad, now) || self.session_gossip.contains(peer),
        }
    }
}

/// A new, verified ad from `input`.
fn new_entry(input: &AdInput, source: AdSource, now: Timestamp) -> Entry {
    Entry {
        ad: Advertisement {
            register_id: input.register_id.clone(),
            source,
            sync_state: SyncState::Active,
            is_public: true,
            latest_version: input.latest_version,
            latest_docket_version: input.latest_docket_version,
            name: input.name.clone(),
            description: input.description.clone(),
            refreshed_at: now,
            changed_at: now,
        },
        verified: true,
    }
}

/// Confirms an existing ad with `input`: verified and refreshed; its content changes only where
/// `input` says something new. Never erases a name or description, never lets an older version
/// overwrite a newer one.
fn refresh(entry: &mut Entry, input: &AdInput, now: Timestamp) -> Upsert {
    entry.verified = true;
    let ad = &mut entry.ad;
    ad.refreshed_at = now;
    let name_changes = input.name.is_some() && input.name != ad.name;
    let description_changes = input.description.is_some() && input.description != ad.description;
    let latest_version = ad.latest_version.max(input.latest_version);
    let latest_docket_version = ad.latest_docket_version.max(input.latest_docket_version);
    let changed = name_changes
        || description_changes
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
    ad.latest_version = latest_version;
    ad.latest_docket_version = latest_docket_version;
    ad.is_public = true;
    ad.changed_at = now;
    Upsert::Updated
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    fn id(n: u8) -> RegisterId {
        RegisterId::from_bytes([n; 16])
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1_000)
    }

    fn state() -> PoolState {
        let mut state = PoolState::new(TTL, Duration::from_secs(3_600));
        state.loaded = true;
        state
    }

    fn public(n: u8, name: Option<&str>, version: u64) -> AdInput {
        AdInput {
            name: name.map(str::to_owned),
            latest_version: version,
            ..AdInput::public(id(n))
        }
    }

    fn full(inputs: Vec<AdInput>, seq: u64, read_at: Timestamp) -> BulkAdvertise {
        BulkAdvertise::full(inputs, Some(Snapshot { seq, read_at }))
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
        let mut state = state();
        let first = state
            .apply_bulk(&BulkAdvertise::one(public(1, Some("a"), 1)), at(1))
            .unwrap();
        assert_eq!((first.added, first.unchanged), (1, 0));
        assert_eq!(state.batch().puts.len(), 1);
        state.mark_written();
        let again = state
            .apply_bulk(&BulkAdvertise::one(public(1, Some("a"), 1)), at(2))
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
        state.apply_bulk(&BulkAdvertise::one(first), at(1)).unwrap();
        let bare = AdInput {
            latest_version: 2,
            latest_docket_version: 1,
            ..AdInput::public(id(1))
        };
        let outcome = state.apply_bulk(&BulkAdvertise::one(bare), at(2)).unwrap();
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
            .apply_bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        state
            .apply_bulk(&BulkAdvertise::one(public(2, None, 0)), at(1))
            .unwrap();
        let peer = NodeId::parse("peer-b").unwrap();
        state.apply_gossip(&peer, &[public(9, None, 0)], at(1));
        let outcome = state
            .apply_bulk(&full(vec![public(2, None, 0)], 1, at(5)), at(6))
            .unwrap();
        assert_eq!(outcome.removed, 1);
        assert_eq!(ids(&state, at(7)), vec![id(2), id(9)]);
    }

    #[test]
    fn fr011_empty_full_sync_is_legal_and_removes_every_local_ad() {
        let mut state = state();
        state
            .apply_bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        let outcome = state.apply_bulk(&full(vec![], 1, at(2)), at(3)).unwrap();
        assert_eq!((outcome.processed, outcome.removed), (0, 1));
        assert!(state.available(at(4)).is_empty());
    }

    #[test]
    fn stale_snapshot_is_rejected_and_changes_nothing() {
        let mut state = state();
        state
            .apply_bulk(&full(vec![public(1, None, 0)], 7, at(10)), at(11))
            .unwrap();
        let err = state
            .apply_bulk(&full(vec![public(2, None, 0)], 6, at(9)), at(12))
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
                .apply_bulk(&full(vec![public(1, None, 0)], 7, at(10)), at(14))
                .is_ok()
        );
    }

    #[test]
    fn a_reset_ground_truth_is_accepted_when_read_later() {
        let mut state = state();
        state
            .apply_bulk(&full(vec![public(1, None, 0)], 50, at(10)), at(11))
            .unwrap();
        let outcome = state
            .apply_bulk(&full(vec![public(2, None, 0)], 1, at(20)), at(21))
            .unwrap();
        assert_eq!((outcome.added, outcome.removed), (1, 1));
    }

    #[test]
    fn a_change_after_the_snapshot_is_not_undone_by_it() {
        let mut state = state();
        // Snapshot read at t=10 lists register 1; it was withdrawn at t=12 and register 2 was
        // advertised at t=13, before the snapshot arrived at t=15.
        state
            .apply_bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        state
            .apply_bulk(&BulkAdvertise::one(AdInput::withdraw(id(1))), at(12))
            .unwrap();
        state
            .apply_bulk(&BulkAdvertise::one(public(2, None, 0)), at(13))
            .unwrap();
        state
            .apply_bulk(&full(vec![public(1, None, 0)], 3, at(10)), at(15))
            .unwrap();
        assert_eq!(ids(&state, at(16)), vec![id(2)]);
        // A snapshot read after both changes is applied in full.
        state
            .apply_bulk(&full(vec![public(1, None, 0)], 4, at(20)), at(21))
            .unwrap();
        assert_eq!(ids(&state, at(22)), vec![id(1)]);
    }

    #[test]
    fn invalid_request_changes_nothing() {
        let mut state = state();
        state
            .apply_bulk(&BulkAdvertise::one(public(1, None, 0)), at(1))
            .unwrap();
        state.mark_written();
        let duplicate = full(vec![public(2, None, 0), public(2, None, 0)], 1, at(2));
        assert!(matches!(
            state.apply_bulk(&duplicate, at(3)),
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

    #[test]
    fn gossip_is_a_complete_list_and_merges_with_local() {
        let mut state = state();
        let peer = NodeId::parse("peer-b").unwrap();
        state
            .apply_bulk(&BulkAdvertise::one(public(1, Some("local name"), 4)), at(0))
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
        let mut state = PoolState::new(TTL, Duration::from_secs(3_600));
        let stored_ad = |n: u8| Advertisement {
            register_id: id(n),
            source: AdSource::Local,
            sync_state: SyncState::Active,
            is_public: true,
            latest_version: 1,
            latest_docket_version: 0,
            name: Some(format!("r{n}")),
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
            .apply_bulk(&full(vec![public(1, None, 0)], 1, at(101)), at(102))
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
        let mut state = PoolState::new(TTL, Duration::from_secs(3_600));
        // The store was down at start: a withdrawal and a full sync happened in memory first.
        state
            .apply_bulk(&BulkAdvertise::one(AdInput::withdraw(id(1))), at(50))
            .unwrap();
        state
            .apply_bulk(&full(vec![public(3, None, 0)], 2, at(60)), at(61))
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
}
