//! One origin's record as a node holds it: its entries (one per register, the latest), ordered
//! by version, in a shared array; the incarnation, the highest version `max`, and the `floor`
//! below which withdrawals may have been collected. Pure data and the few operations the
//! protocol needs (merge a run above `max`, collect withdrawals, cut a run for a requester).
//!
//! A record is cheap to clone (the entries are an `Arc`'d array of `Arc`'d entries), so a
//! node answers many requesters from one array, and a receiver of a whole array keeps it as is.

use std::collections::HashSet;
use std::sync::Arc;

use herald_messages::{EntryRun, GossipAd, GossipEntry, RegisterId};

/// The entries of a record, ordered by version.
pub type Entries = Arc<[Arc<GossipEntry>]>;

/// A set of register ids: deterministic across runs (the simulation replays a seed), hashed by
/// FxHash, which is cheap on their 32 bytes. It checks that a delta names each register once,
/// for every entry received, and which of a record's entries a change replaces: on the hottest
/// paths there are. (A hand-written FxHash step without rustc-hash's final rotation left the
/// low bits, which pick the bucket, to the ids' last digits: a set of 10,000 sequential ids
/// took 70 ms to probe 50,000 times; foldhash made the simulation 20% slower.)
pub(crate) type KeySet = HashSet<RegisterId, rustc_hash::FxBuildHasher>;

/// One origin's state as this node holds it. Invariant (see the module doc of `gossip`): a
/// record this node shows is exact as of `max`: it holds the latest entry of every register
/// the origin had at `max`, except withdrawals at or below `floor`, which may be collected.
#[derive(Debug, Clone)]
pub struct Record {
    incarnation: u64,
    max: u64,
    floor: u64,
    entries: Entries,
    tally: Tally,
}

/// Counts over a record's entries, kept as the entries are gathered (never a second pass).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    live: usize,
    withdrawals: usize,
    /// Wrapping sum of the live entries' fingerprints.
    fingerprint: u64,
    /// Bytes of the entries as JSON, each with its separating comma.
    bytes: usize,
}

impl Tally {
    #[inline]
    pub(crate) fn add(&mut self, entry: &GossipEntry) {
        if entry.is_withdrawal() {
            self.withdrawals += 1;
        } else {
            self.live += 1;
            self.fingerprint = self.fingerprint.wrapping_add(entry.fingerprint());
        }
        self.bytes += entry.wire_size() + 1;
    }

    fn of(entries: &[Arc<GossipEntry>]) -> Self {
        let mut tally = Self::default();
        for entry in entries {
            tally.add(entry);
        }
        tally
    }

    fn plus(self, other: Self) -> Self {
        Self {
            live: self.live + other.live,
            withdrawals: self.withdrawals + other.withdrawals,
            fingerprint: self.fingerprint.wrapping_add(other.fingerprint),
            bytes: self.bytes + other.bytes,
        }
    }
}

/// What a record holds, in a few numbers: two nodes whose records of an origin have the same
/// summary hold the same ads of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordSummary {
    pub incarnation: u64,
    pub max: u64,
    pub floor: u64,
    pub live: usize,
    pub withdrawals: usize,
    pub fingerprint: u64,
}

impl Record {
    /// A record with nothing in it.
    pub fn empty(incarnation: u64) -> Self {
        Self::from_entries(incarnation, 0, 0, Arc::from(Vec::new()))
    }

    /// A record of these entries (ordered by version, one per register).
    pub(crate) fn from_entries(incarnation: u64, max: u64, floor: u64, entries: Entries) -> Self {
        let tally = Tally::of(&entries);
        Self {
            incarnation,
            max,
            floor,
            entries,
            tally,
        }
    }

    /// A record of the first `take` entries of `run`, whose tally is `tally` (the caller
    /// counted them while validating them). The run's array is kept as is when the run is
    /// whole.
    pub(crate) fn from_run(
        incarnation: u64,
        (max, floor): (u64, u64),
        run: &EntryRun,
        take: usize,
        tally: Tally,
    ) -> Self {
        let entries = if take == run.len() && run.is_whole() {
            Arc::clone(run.shared())
        } else {
            run.as_slice()[..take].iter().cloned().collect()
        };
        Self {
            incarnation,
            max,
            floor,
            entries,
            tally,
        }
    }

    /// This record with `added` (versions above `max`, registers in `keys`, counted in
    /// `added_tally`) applied, at `new_max` and `floor`: entries of the same registers are
    /// replaced.
    pub(crate) fn merged(
        &self,
        added: &[Arc<GossipEntry>],
        keys: &KeySet,
        (new_max, floor): (u64, u64),
        added_tally: Tally,
    ) -> Self {
        let mut entries = Vec::with_capacity(self.entries.len() + added.len());
        let mut kept = Tally::default();
        for entry in self.entries.iter() {
            if !keys.contains(entry.register_id()) {
                kept.add(entry);
                entries.push(Arc::clone(entry));
            }
        }
        entries.extend(added.iter().cloned());
        Self {
            incarnation: self.incarnation,
            max: new_max,
            floor,
            entries: entries.into(),
            tally: kept.plus(added_tally),
        }
    }

    /// This record without its withdrawals at or below `up_to`, its floor raised to the
    /// highest one collected; `None` when there is none to collect.
    pub(crate) fn collected(&self, up_to: u64) -> Option<Self> {
        let collect = |entry: &Arc<GossipEntry>| entry.is_withdrawal() && entry.version() <= up_to;
        let highest = self
            .entries
            .iter()
            .filter(|entry| collect(entry))
            .map(|entry| entry.version())
            .max()?;
        let entries: Entries = self
            .entries
            .iter()
            .filter(|entry| !collect(entry))
            .cloned()
            .collect();
        Some(Self::from_entries(
            self.incarnation,
            self.max,
            self.floor.max(highest),
            entries,
        ))
    }

    /// The entries with a version above `version`, as a run of the shared array.
    pub(crate) fn run_after(&self, version: u64) -> EntryRun {
        let start = after(&self.entries, version);
        EntryRun::part(Arc::clone(&self.entries), start..self.entries.len())
    }

    /// Bytes of all the entries as JSON, with their separating commas.
    pub(crate) fn entry_bytes(&self) -> usize {
        self.tally.bytes
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Every entry, withdrawals included, ordered by version.
    pub fn entries(&self) -> &[Arc<GossipEntry>] {
        &self.entries
    }

    pub(crate) fn shared_entries(&self) -> &Entries {
        &self.entries
    }

    /// The origin's live ads.
    pub fn live_ads(&self) -> impl Iterator<Item = &GossipAd> {
        self.entries.iter().filter_map(|entry| entry.ad())
    }

    pub fn has_withdrawals(&self) -> bool {
        self.tally.withdrawals > 0
    }

    pub fn summary(&self) -> RecordSummary {
        RecordSummary {
            incarnation: self.incarnation,
            max: self.max,
            floor: self.floor,
            live: self.tally.live,
            withdrawals: self.tally.withdrawals,
            fingerprint: self.tally.fingerprint,
        }
    }
}

/// The index of the first of `entries` (ordered by version) above `version`. The common
/// cases are answered without touching entries (everything) or by looking at the last few
/// (a small delta).
pub(crate) fn after(entries: &[Arc<GossipEntry>], version: u64) -> usize {
    if version == 0 {
        return 0;
    }
    let tail = entries.len().saturating_sub(4);
    if entries
        .get(tail)
        .is_some_and(|entry| entry.version() <= version)
    {
        return tail + entries[tail..].partition_point(|entry| entry.version() <= version);
    }
    entries[..tail].partition_point(|entry| entry.version() <= version)
}

#[cfg(test)]
mod tests {
    use herald_messages::{AdInput, SyncState};

    use super::*;

    fn id(byte: u8) -> RegisterId {
        RegisterId::from_bytes([byte; 16])
    }

    fn live(version: u64, byte: u8) -> Arc<GossipEntry> {
        let ad = GossipAd::from_input(&AdInput::public(id(byte)), SyncState::Active).unwrap();
        Arc::new(GossipEntry::live(version, ad))
    }

    fn gone(version: u64, byte: u8) -> Arc<GossipEntry> {
        Arc::new(GossipEntry::withdrawn(version, id(byte)))
    }

    #[test]
    fn merge_replaces_entries_of_the_same_register_and_keeps_the_order() {
        let record = Record::from_entries(1, 3, 0, vec![live(1, 1), live(2, 2), live(3, 3)].into());
        let added = [gone(4, 2), live(5, 9)];
        let keys: KeySet = added
            .iter()
            .map(|entry| entry.register_id().clone())
            .collect();
        let merged = record.merged(&added, &keys, (5, 0), Tally::of(&added));
        let recounted = Record::from_entries(1, 5, 0, Arc::clone(merged.shared_entries()));
        assert_eq!(merged.summary(), recounted.summary());
        assert_eq!(merged.entry_bytes(), recounted.entry_bytes());
        let versions: Vec<u64> = merged.entries().iter().map(|e| e.version()).collect();
        assert_eq!(versions, [1, 3, 4, 5]);
        assert_eq!(merged.summary().live, 3);
        assert_eq!(merged.summary().withdrawals, 1);
        assert_eq!(merged.run_after(3).len(), 2);
        assert!(merged.run_after(5).is_empty());
        for version in 0..=6 {
            let expected = merged
                .entries()
                .iter()
                .filter(|entry| entry.version() <= version)
                .count();
            assert_eq!(after(merged.entries(), version), expected, "{version}");
        }
    }

    #[test]
    fn collecting_withdrawals_raises_the_floor_to_the_highest_collected() {
        let record = Record::from_entries(1, 9, 0, vec![gone(2, 1), live(5, 2), gone(7, 3)].into());
        assert!(record.collected(1).is_none());
        let collected = record.collected(8).unwrap();
        assert_eq!(collected.floor(), 7);
        assert_eq!(collected.max(), 9);
        assert_eq!(collected.entries().len(), 1);
        let partly = record.collected(5).unwrap();
        assert_eq!(partly.floor(), 2);
        assert_eq!(partly.summary().withdrawals, 1);
    }

    #[test]
    fn a_whole_run_is_kept_without_copying() {
        let entries: Entries = vec![live(1, 1), live(2, 2)].into();
        let record = Record::from_run(
            1,
            (2, 0),
            &EntryRun::whole(Arc::clone(&entries)),
            2,
            Tally::of(&entries),
        );
        assert!(Arc::ptr_eq(record.shared_entries(), &entries));
        let cut = Record::from_run(1, (1, 0), &EntryRun::whole(entries), 1, Tally::default());
        assert_eq!(cut.entries().len(), 1);
    }
}
