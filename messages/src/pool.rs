//! The advertisement pool's inputs, outputs and message enum (peer role).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};

use crate::shared_registers::{self, SharedRegisters};
use crate::{GroundTruthEpoch, NodeId, RegisterId, SyncState, Timestamp, Valid};

/// Largest bulk-advertise request accepted (items).
pub const MAX_BULK_ITEMS: usize = 10_000;
/// Longest register name accepted in an advertisement (characters).
pub const MAX_NAME_LEN: usize = 256;
/// Longest register description accepted in an advertisement (characters).
pub const MAX_DESCRIPTION_LEN: usize = 4_096;

/// One advertisement as a caller offers it (the register role, an operator, a gossiping peer).
/// `is_public = false` withdraws it. Absent name, description or sync state leave the stored
/// ones alone (a new ad without a sync state is `active`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdInput {
    pub register_id: RegisterId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Arc<str>>,
    pub is_public: bool,
    #[serde(default)]
    pub latest_version: u64,
    #[serde(default)]
    pub latest_docket_version: u64,
    /// How far the advertising node has replicated the register: `fullReplicaPeerCount` counts
    /// the sources that are `fullyReplicated` or `active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<SyncState>,
}

impl AdInput {
    /// A public advertisement with nothing but its id.
    pub fn public(register_id: RegisterId) -> Self {
        Self {
            register_id,
            name: None,
            description: None,
            is_public: true,
            latest_version: 0,
            latest_docket_version: 0,
            sync_state: None,
        }
    }

    /// A withdrawal of the register's advertisement.
    pub fn withdraw(register_id: RegisterId) -> Self {
        Self {
            is_public: false,
            ..Self::public(register_id)
        }
    }

    fn validate(&self, index: usize) -> Result<(), InvalidInput> {
        check_ad_text(
            &format!("advertisements[{index}]"),
            self.name.as_deref(),
            self.description.as_deref(),
        )
    }
}

/// The rules of an advertisement's texts, wherever it comes from (a REST body, a gossiped
/// entry): a name of at most `MAX_NAME_LEN` characters, a description of at most
/// `MAX_DESCRIPTION_LEN`. `at` names the advertisement in the error (`advertisements[3]`).
pub(crate) fn check_ad_text(
    at: &str,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<(), InvalidInput> {
    let too_long = |field: &str, value: Option<&str>, max: usize| match value {
        // Bytes bound characters from above: count them only when the bytes are too many.
        Some(text) if text.len() > max && text.chars().count() > max => Err(InvalidInput::new(
            format!("{at}.{field}"),
            format!("must be at most {max} characters"),
        )),
        _ => Ok(()),
    };
    too_long("name", name, MAX_NAME_LEN)?;
    too_long("description", description, MAX_DESCRIPTION_LEN)
}

/// Identifies a ground-truth snapshot behind a full sync: `seq` orders snapshots (the register
/// role uses its store's revision), `read_at` is when it was read, and `epoch` names the store
/// whose revision `seq` is (absent from clients older than epochs).
///
/// A snapshot is input like any other: `validate` refuses a read time ahead of the receiving
/// node's clock and a revision no store can reach, and `check_jump_from` a revision that grew
/// faster than any store can count. Snapshots of different epochs are not ordered: a full sync
/// from another epoch resets the order (see `orders_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    pub seq: u64,
    pub read_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<GroundTruthEpoch>,
}

/// Largest snapshot `seq` accepted: 2^53 - 1, the largest integer every JSON client reads
/// exactly. A store bumping its revision a million times a second needs 285 years to get there.
pub const MAX_SNAPSHOT_SEQ: u64 = (1 << 53) - 1;
/// How fast a ground truth's revision can grow, at most: revisions per second of read time
/// between two snapshots. Real stores commit at most tens of thousands of changes a second.
pub const MAX_SNAPSHOT_SEQ_RATE: u64 = 1_000_000;
/// A `seq` may always grow by this much between two snapshots, whatever their read times say
/// (clocks of the register role's host may differ by seconds between its restarts).
pub const SNAPSHOT_SEQ_SLACK: u64 = 1_000_000;

impl Snapshot {
    /// A snapshot of revision `seq`, read at `read_at`, with no epoch (as clients older than
    /// epochs send it).
    pub fn new(seq: u64, read_at: Timestamp) -> Self {
        Self {
            seq,
            read_at,
            epoch: None,
        }
    }

    /// Checks what a snapshot can be checked against alone: its read time is not before the
    /// Unix epoch nor more than `tolerance` ahead of `now` (the receiving node's clock), and its
    /// `seq` is at most `MAX_SNAPSHOT_SEQ`.
    pub fn validate(&self, now: Timestamp, tolerance: Duration) -> Result<(), InvalidInput> {
        if self.read_at < Timestamp::EPOCH {
            return Err(InvalidInput::new(
                "snapshot.readAt",
                format!("{} is before the Unix epoch", self.read_at),
            ));
        }
        let latest = now.saturating_add(tolerance);
        if self.read_at > latest {
            return Err(InvalidInput::new(
                "snapshot.readAt",
                format!(
                    "{} is {} ms ahead of this node's clock ({now}); at most {} ms are tolerated",
                    self.read_at,
                    self.read_at.since(now).as_millis(),
                    tolerance.as_millis()
                ),
            ));
        }
        if self.seq > MAX_SNAPSHOT_SEQ {
            return Err(InvalidInput::new(
                "snapshot.seq",
                format!(
                    "{} is beyond {MAX_SNAPSHOT_SEQ}, which no store reaches",
                    self.seq
                ),
            ));
        }
        Ok(())
    }

    /// Whether `self` and `applied` are snapshots of stores whose revisions compare: the same
    /// epoch, or no epoch on `self` (a client older than epochs: ordered as before epochs).
    pub fn orders_after(&self, applied: &Snapshot) -> bool {
        self.epoch.is_none() || self.epoch == applied.epoch
    }

    /// Refuses a `seq` that grew from `applied.seq` by more than a store can count between the
    /// two read times (`MAX_SNAPSHOT_SEQ_RATE` a second, plus `SNAPSHOT_SEQ_SLACK`). Only
    /// meaningful when `orders_after(applied)`.
    pub fn check_jump_from(&self, applied: &Snapshot) -> Result<(), InvalidInput> {
        let elapsed = self.read_at.since(applied.read_at);
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let allowed = (elapsed_ms / 1_000)
            .saturating_mul(MAX_SNAPSHOT_SEQ_RATE)
            .saturating_add(SNAPSHOT_SEQ_SLACK);
        let jump = self.seq.saturating_sub(applied.seq);
        if jump > allowed {
            return Err(InvalidInput::new(
                "snapshot.seq",
                format!(
                    "{} is {jump} revisions past the applied snapshot {} read {} ms earlier; \
                     no store counts that fast (at most {allowed})",
                    self.seq,
                    applied.seq,
                    elapsed.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

/// A batch of advertisements. With `full_sync` the list is the complete set of local public
/// registers: local ads not in it are removed (remote ads are untouched); an empty list is legal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkAdvertise {
    pub advertisements: Vec<AdInput>,
    #[serde(default)]
    pub full_sync: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

impl BulkAdvertise {
    /// A single advertisement or withdrawal.
    pub fn one(input: AdInput) -> Self {
        Self {
            advertisements: vec![input],
            full_sync: false,
            snapshot: None,
        }
    }

    /// A full sync of the given public registers.
    pub fn full(advertisements: Vec<AdInput>, snapshot: Option<Snapshot>) -> Self {
        Self {
            advertisements,
            full_sync: true,
            snapshot,
        }
    }

    /// Checks the limits; a request that fails changes nothing.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.advertisements.len() > MAX_BULK_ITEMS {
            return Err(InvalidInput::new(
                "advertisements",
                format!(
                    "at most {MAX_BULK_ITEMS} items per request, got {}",
                    self.advertisements.len()
                ),
            ));
        }
        let mut seen = HashSet::with_capacity(self.advertisements.len());
        for (index, input) in self.advertisements.iter().enumerate() {
            input.validate(index)?;
            if !seen.insert(&input.register_id) {
                return Err(InvalidInput::new(
                    format!("advertisements[{index}].registerId"),
                    format!("duplicate register id {}", input.register_id),
                ));
            }
        }
        Ok(())
    }
}

/// What a bulk request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOutcome {
    pub processed: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Whether the change reached the store; false while the store is degraded (the change is
    /// served from memory and persisted when the store returns).
    pub persisted: bool,
}

/// A request that breaks a rule, with the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    pub field: String,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why the pool refused a request. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidInput),
    /// A full sync from an older snapshot than the last one applied.
    #[error(
        "stale full-sync snapshot {offered_seq} (read at {offered_read_at}); snapshot {applied_seq} was already applied"
    )]
    StaleSnapshot {
        offered_seq: u64,
        offered_read_at: Timestamp,
        applied_seq: u64,
    },
}

/// One register in *Available Registers*: every live public advertisement of it, merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableRegister {
    pub register_id: RegisterId,
    pub name: Option<Arc<str>>,
    pub description: Option<Arc<str>>,
    /// Sources (this node and remote peers) advertising it.
    pub peer_count: usize,
    pub latest_version: u64,
    pub latest_docket_version: u64,
    pub is_public: bool,
    /// Sources holding a full replica.
    pub full_replica_peer_count: usize,
    /// Whether this node advertises it.
    pub local: bool,
    /// False while an ad reloaded after a restart waits for its source to confirm it.
    pub verified: bool,
    /// Every source serving it is a remote peer the cluster cannot reach now: kept for a
    /// bounded time (the gossip's stale grace) rather than dropped (issue 9).
    #[serde(default)]
    pub stale: bool,
    /// The sync state of this node's own ad of it (`None` when only remote sources serve it).
    /// Not in the answer's JSON: with it the answer holds everything the gossip tells other
    /// peers of this node's public ads (`AvailableRegister::local_ad`), so the pool keeps no
    /// second list of them (issue 11, memory).
    #[serde(skip)]
    pub local_state: Option<SyncState>,
}

impl AvailableRegister {
    /// Whether the two show the same in the answer (its JSON): all but `local_state`, which
    /// only the gossip reads. A change of that alone keeps the answer's version and ETag.
    pub fn shows_same(&self, other: &Self) -> bool {
        self.register_id == other.register_id
            && self.name == other.name
            && self.description == other.description
            && self.peer_count == other.peer_count
            && self.latest_version == other.latest_version
            && self.latest_docket_version == other.latest_docket_version
            && self.is_public == other.is_public
            && self.full_replica_peer_count == other.full_replica_peer_count
            && self.local == other.local
            && self.verified == other.verified
            && self.stale == other.stale
    }
}

/// Whether the pool's store is taking writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum StoreHealth {
    Healthy,
    /// Writes fail: the pool serves and accepts from memory and retries with backoff.
    Degraded {
        since: Timestamp,
        reason: String,
    },
}

/// The pool's bookkeeping persisted beside the ads, and its mark on the store.
///
/// `generation` and `write_seq` say which write the store saw last: the pool picks a random
/// generation when it writes everything it holds into a store that holds nothing of it, and
/// counts its batches in `write_seq`. Each batch reads the record it replaces in the same atomic
/// step, so the pool sees at once when the store lost data (no record: emptied or restarted
/// empty) or was replaced (another mark: a restored backup, a lagging replica). Only a batch of
/// everything may create the record; a batch of changes never recreates it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolMeta {
    pub last_snapshot: Option<Snapshot>,
    /// 0 in a record written before generations existed: the pool writes everything again.
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub write_seq: u64,
}

/// The pool's health and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub node_id: NodeId,
    pub local_ads: usize,
    pub remote_ads: usize,
    pub unverified_ads: usize,
    /// Ads (or removals) not yet in the store.
    pub dirty_ads: usize,
    /// Whether the store's content has been read since the pool started.
    pub loaded: bool,
    pub store: StoreHealth,
    pub last_snapshot: Option<Snapshot>,
    /// Times this pool found its store missing what it had written (emptied, restarted empty,
    /// or replaced by an older copy) and wrote everything again.
    #[serde(default)]
    pub store_repairs: u64,
    /// The gossip of public ads between peers, when this node runs it (issue 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip: Option<GossipStatus>,
}

/// How the gossip of public ads stands on this node (part of the pool's status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GossipStatus {
    /// This node's incarnation in the gossip (a new one at every start).
    pub incarnation: u64,
    /// Remote ads shown (live and stale).
    pub remote_ads: usize,
    /// Remote ads shown though their peer cannot be reached now.
    pub stale_ads: usize,
    /// At least the configured share of the remote ads shown is stale: this node is cut off
    /// from much of the cluster, and shows what it last heard (`/health`: degraded).
    pub partitioned: bool,
    /// Origins whose ads this node shows.
    pub origins: usize,
    /// Gossiped entries refused by validation (each alone; the rest of its message applied).
    pub refused_entries: u64,
    /// The gossip store's last failure, while it lasts (the gossip runs from memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

/// What the pool serves, as it last published it (readers never enter its mailbox).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolView {
    /// False until the pool's first replay of its store ended (restored, or failed and
    /// degraded): a read before then waits for it, as SC-002 allows.
    pub ready: bool,
    pub available: Arc<AvailableView>,
    /// When the first remote advertisement in `available` stops being live: the pool
    /// publishes again then.
    pub valid_until: Option<Timestamp>,
    pub status: PoolStatus,
}

impl PoolView {
    /// What a pool that has not replayed its store yet serves: nothing, not ready.
    pub fn starting(node_id: NodeId, tag: u64) -> Self {
        Self {
            ready: false,
            available: Arc::new(AvailableView::new(tag, 0, Vec::new())),
            valid_until: None,
            status: PoolStatus {
                node_id,
                local_ads: 0,
                remote_ads: 0,
                unverified_ads: 0,
                dirty_ads: 0,
                loaded: false,
                store: StoreHealth::Healthy,
                last_snapshot: None,
                store_repairs: 0,
                gossip: None,
            },
        }
    }
}

/// *Available Registers* at one version: every live public register, merged, ordered by id.
///
/// A peer in a cluster serves the pool's answer merged with the gossip's remote ads. Most of its
/// registers are often the pool's unchanged, so the merged answer is laid over the pool's
/// (`over`): it holds only the registers it adds or changes and shares the rest, rather than
/// a second copy of every local register (issue 11, memory: 5 MB at 50,000 local ads, twice
/// that while a change builds the next answer). Read it through `iter`, `get`, `page`, `len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableView {
    /// Random per node start: with `version` it names this answer (the HTTP `ETag`), so two
    /// runs of a node never give two answers one name.
    pub tag: u64,
    /// Grows by one whenever the registers change.
    pub version: u64,
    /// Ordered by id: every register, or with `base` those this answer adds to it or
    /// changes in it; in chunks shared with the answers before and after it.
    registers: SharedRegisters,
    /// A flat answer this one is laid over, shared.
    base: Option<Arc<AvailableView>>,
    len: usize,
}

impl AvailableView {
    /// An answer of these registers, ordered by id.
    pub fn new(tag: u64, version: u64, registers: impl Into<SharedRegisters>) -> Self {
        let registers = registers.into();
        Self {
            tag,
            version,
            len: registers.len(),
            registers,
            base: None,
        }
    }

    /// `base` with `changes` (ordered by id) laid over it: a register of `changes` replaces
    /// the one of `base` with its id, or is added. `base` is shared, not copied (when it is
    /// itself laid over another, the two are flattened into a new answer).
    pub fn over(
        base: Arc<AvailableView>,
        tag: u64,
        version: u64,
        changes: impl Into<SharedRegisters>,
    ) -> Self {
        let changes = changes.into();
        if base.base.is_some() {
            let base = SharedRegisters::from(base.iter().cloned().collect::<Vec<_>>());
            let flat = Join::new(base.iter(), changes.iter()).cloned();
            return Self::new(
                tag,
                version,
                SharedRegisters::build_like(&SharedRegisters::default(), flat),
            );
        }
        let replaced = changes
            .iter()
            .filter(|change| base.get(&change.register_id).is_some())
            .count();
        Self {
            tag,
            version,
            len: base.len + changes.len() - replaced,
            registers: changes,
            base: Some(base),
        }
    }

    /// The registers it holds itself: every register when it is laid over no other answer
    /// (the pool's never is), else those it adds to its base or changes in it.
    pub fn registers(&self) -> &SharedRegisters {
        &self.registers
    }

    /// The answer this one is laid over, if any.
    pub fn base(&self) -> Option<&Arc<AvailableView>> {
        self.base.as_ref()
    }

    /// How many registers it serves.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every register, ordered by id (serializes as the JSON array of the answer).
    pub fn iter(&self) -> AvailableRegisters<'_> {
        self.iter_after(None)
    }

    /// The registers with ids after `after` (all of them without it), ordered by id.
    pub fn iter_after(&self, after: Option<&RegisterId>) -> AvailableRegisters<'_> {
        let base = self
            .base
            .as_deref()
            .map_or_else(shared_registers::Iter::empty, |base| {
                base.registers.iter_after(after)
            });
        AvailableRegisters(Join::new(base, self.registers.iter_after(after)))
    }

    /// The name of this answer, as an HTTP entity tag (quoted).
    pub fn etag(&self) -> String {
        format!("\"{:016x}-{}\"", self.tag, self.version)
    }

    /// Whether the two answers show the same registers (`AvailableRegister::shows_same`):
    /// then they serve the same JSON, and keep one version.
    pub fn shows_same(&self, other: &AvailableView) -> bool {
        self.len == other.len && self.iter().zip(other.iter()).all(|(a, b)| a.shows_same(b))
    }

    /// One register, if it is available.
    pub fn get(&self, register_id: &RegisterId) -> Option<&AvailableRegister> {
        self.registers
            .get(register_id)
            .or_else(|| self.base.as_deref().and_then(|base| base.get(register_id)))
    }

    /// At most `limit` registers with ids after `after` (from the first without it), and
    /// whether more follow.
    pub fn page(
        &self,
        after: Option<&RegisterId>,
        limit: usize,
    ) -> (Vec<&AvailableRegister>, bool) {
        let mut rest = self.iter_after(after);
        let taken: Vec<_> = rest.by_ref().take(limit).collect();
        (taken, rest.next().is_some())
    }
}

/// The registers of an `AvailableView`, ordered by id; serializes as a JSON array.
#[derive(Debug, Clone)]
pub struct AvailableRegisters<'a>(Join<'a>);

impl<'a> Iterator for AvailableRegisters<'a> {
    type Item = &'a AvailableRegister;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl Serialize for AvailableRegisters<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.clone())
    }
}

/// Two runs ordered by id joined into one; of two registers with one id, `over`'s.
#[derive(Debug, Clone)]
struct Join<'a> {
    base: std::iter::Peekable<shared_registers::Iter<'a>>,
    over: std::iter::Peekable<shared_registers::Iter<'a>>,
}

impl<'a> Join<'a> {
    fn new(base: shared_registers::Iter<'a>, over: shared_registers::Iter<'a>) -> Self {
        Self {
            base: base.peekable(),
            over: over.peekable(),
        }
    }
}

impl<'a> Iterator for Join<'a> {
    type Item = &'a AvailableRegister;

    fn next(&mut self) -> Option<Self::Item> {
        match (self.base.peek(), self.over.peek()) {
            (Some(base), Some(over)) => match base.register_id.cmp(&over.register_id) {
                std::cmp::Ordering::Less => self.base.next(),
                std::cmp::Ordering::Equal => {
                    self.base.next();
                    self.over.next()
                }
                std::cmp::Ordering::Greater => self.over.next(),
            },
            (Some(_), None) => self.base.next(),
            (None, _) => self.over.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (base, over) = (self.base.len(), self.over.len());
        (base.max(over), Some(base + over))
    }
}

/// Messages of the `AdvertisementPool` actor.
#[derive(RactorMessage)]
pub enum AdvertisementPoolMsg {
    /// Advertise, update or withdraw (single or full sync).
    Bulk(
        Valid<BulkAdvertise>,
        RpcReplyPort<Result<BulkOutcome, PoolError>>,
    ),
    /// The complete list of a remote peer's public local ads (an empty list withdraws all).
    Gossip {
        peer: NodeId,
        ads: Vec<AdInput>,
    },
    /// Every live public register, merged across sources, ordered by id.
    Available(RpcReplyPort<Vec<AvailableRegister>>),
    Status(RpcReplyPort<PoolStatus>),
    /// Internal: replay the store. The pool sends it to itself before anything else.
    Load,
    /// Internal timer: drop expired remote ads.
    Sweep,
    /// Internal timer: renew every stored ad's expiry.
    Renew,
    /// Internal timer: check that the store still holds what the pool wrote.
    CheckStore,
    /// Internal timer: retry the store after a failure.
    RetryStore,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(60);

    fn register(n: u8, peers: usize) -> AvailableRegister {
        AvailableRegister {
            register_id: RegisterId::from_bytes([n; 16]),
            name: Some(format!("register {n}").into()),
            description: None,
            peer_count: peers,
            latest_version: 1,
            latest_docket_version: 0,
            is_public: true,
            full_replica_peer_count: 0,
            local: true,
            verified: true,
            stale: false,
            local_state: Some(SyncState::Active),
        }
    }

    fn ids<'a>(registers: impl IntoIterator<Item = &'a AvailableRegister>) -> Vec<u8> {
        registers
            .into_iter()
            .map(|register| register.register_id.to_string().as_bytes()[1] - b'0')
            .collect()
    }

    #[test]
    fn an_answer_laid_over_another_reads_as_the_two_joined() {
        let base = Arc::new(AvailableView::new(
            1,
            1,
            [1, 3, 5, 7].map(|n| register(n, 1)).to_vec(),
        ));
        // Before, between, replacing and after the base's registers.
        let changes = vec![
            register(0, 1),
            register(3, 2),
            register(4, 1),
            register(9, 1),
        ];
        let view = AvailableView::over(Arc::clone(&base), 1, 2, changes);
        let flat: Vec<AvailableRegister> = [(0, 1), (1, 1), (3, 2), (4, 1), (5, 1), (7, 1), (9, 1)]
            .map(|(n, peers)| register(n, peers))
            .to_vec();
        assert_eq!(view.iter().cloned().collect::<Vec<_>>(), flat);
        assert_eq!(view.len(), 7);
        assert_eq!(view.registers().len(), 4, "only its own registers");
        assert!(
            Arc::ptr_eq(view.base().unwrap(), &base),
            "shared, not copied"
        );
        // The same JSON as a flat answer of the same registers.
        let json = serde_json::to_string(&view.iter()).unwrap();
        assert_eq!(json, serde_json::to_string(&flat).unwrap());
        // One register: changed, from the base, added, missing.
        assert_eq!(view.get(&register(3, 0).register_id).unwrap().peer_count, 2);
        assert_eq!(view.get(&register(5, 0).register_id), Some(&register(5, 1)));
        assert_eq!(view.get(&register(9, 0).register_id), Some(&register(9, 1)));
        assert_eq!(view.get(&register(8, 0).register_id), None);
        // Pages across both runs.
        let (first, more) = view.page(None, 3);
        assert_eq!((ids(first), more), (vec![0, 1, 3], true));
        let (next, more) = view.page(Some(&register(3, 0).register_id), 3);
        assert_eq!((ids(next), more), (vec![4, 5, 7], true));
        let (last, more) = view.page(Some(&register(7, 0).register_id), 3);
        assert_eq!((ids(last), more), (vec![9], false));
        // Laid over a layered answer: flattened, the later changes winning.
        let again = AvailableView::over(Arc::new(view), 1, 3, vec![register(1, 5)]);
        assert_eq!(again.len(), 7);
        assert!(again.base().is_none(), "flattened");
        let flat_again = again.registers();
        assert_eq!(
            flat_again.get(&register(1, 0).register_id),
            Some(&register(1, 5))
        );
        assert_eq!(ids(flat_again.iter()), vec![0, 1, 3, 4, 5, 7, 9]);
    }

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis)
    }

    /// Issue 7, scenario B: `{"seq":18446744073709551615,"readAt":9223372036854775807}` was
    /// accepted and locked every later full sync out.
    #[test]
    fn scenario_b_snapshot_from_the_far_future_or_past_any_store_is_invalid() {
        let now = at(1_700_000_000_000);
        let bogus: Snapshot =
            serde_json::from_str(r#"{"seq":18446744073709551615,"readAt":9223372036854775807}"#)
                .unwrap();
        let err = bogus.validate(now, TOLERANCE).unwrap_err();
        assert_eq!(err.field, "snapshot.readAt", "{err}");
        assert!(err.reason.contains("ahead of this node's clock"), "{err}");
        let far_seq = Snapshot::new(u64::MAX, now);
        assert_eq!(
            far_seq.validate(now, TOLERANCE).unwrap_err().field,
            "snapshot.seq"
        );
        let before_epoch = Snapshot::new(1, at(-1));
        assert_eq!(
            before_epoch.validate(now, TOLERANCE).unwrap_err().field,
            "snapshot.readAt"
        );
    }

    #[test]
    fn read_times_within_the_tolerance_and_the_largest_seq_are_valid() {
        let now = at(1_700_000_000_000);
        let ahead = Snapshot::new(MAX_SNAPSHOT_SEQ, now.saturating_add(TOLERANCE));
        assert_eq!(ahead.validate(now, TOLERANCE), Ok(()));
        let one_ms_more =
            Snapshot::new(1, now.saturating_add(TOLERANCE + Duration::from_millis(1)));
        assert!(one_ms_more.validate(now, TOLERANCE).is_err());
        assert_eq!(
            Snapshot::new(0, Timestamp::EPOCH).validate(now, TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn seq_may_grow_only_as_fast_as_a_store_counts() {
        let applied = Snapshot::new(100, at(10_000));
        let slack = Snapshot::new(100 + SNAPSHOT_SEQ_SLACK, at(10_000));
        assert_eq!(slack.check_jump_from(&applied), Ok(()));
        let too_far = Snapshot::new(101 + SNAPSHOT_SEQ_SLACK, at(10_000));
        assert_eq!(
            too_far.check_jump_from(&applied).unwrap_err().field,
            "snapshot.seq"
        );
        let ten_seconds_later = Snapshot::new(
            100 + SNAPSHOT_SEQ_SLACK + 10 * MAX_SNAPSHOT_SEQ_RATE,
            at(20_000),
        );
        assert_eq!(ten_seconds_later.check_jump_from(&applied), Ok(()));
        // Going back is no jump (the order rule decides about it).
        assert_eq!(Snapshot::new(1, at(0)).check_jump_from(&applied), Ok(()));
    }

    #[test]
    fn snapshots_of_other_epochs_are_not_ordered_and_epochless_ones_are() {
        let one = Some(GroundTruthEpoch::from_bytes([1; 16]));
        let two = Some(GroundTruthEpoch::from_bytes([2; 16]));
        let applied = Snapshot {
            epoch: one,
            ..Snapshot::new(5, at(5))
        };
        let same = Snapshot {
            epoch: one,
            ..Snapshot::new(4, at(4))
        };
        let other = Snapshot {
            epoch: two,
            ..Snapshot::new(4, at(4))
        };
        assert!(same.orders_after(&applied));
        assert!(!other.orders_after(&applied));
        assert!(Snapshot::new(4, at(4)).orders_after(&applied));
        assert!(other.orders_after(&Snapshot {
            epoch: two,
            ..applied
        }));
    }

    /// Issue 7: the `snapshot` object accepted unknown fields while every other body refused
    /// them.
    #[test]
    fn snapshot_refuses_unknown_fields_and_reads_old_and_new_forms() {
        let err =
            serde_json::from_str::<Snapshot>(r#"{"seq":1,"readAt":2,"sequence":3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let old: Snapshot = serde_json::from_str(r#"{"seq":1,"readAt":2}"#).unwrap();
        assert_eq!(old, Snapshot::new(1, at(2)));
        let epoch = GroundTruthEpoch::from_bytes([7; 16]);
        let new = Snapshot {
            epoch: Some(epoch),
            ..Snapshot::new(1, at(2))
        };
        let json = serde_json::to_string(&new).unwrap();
        assert_eq!(json, format!(r#"{{"seq":1,"readAt":2,"epoch":"{epoch}"}}"#));
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), new);
    }

    #[test]
    fn pool_meta_written_before_generations_reads_as_generation_zero() {
        let meta: PoolMeta =
            serde_json::from_str(r#"{"lastSnapshot":{"seq":3,"readAt":4}}"#).unwrap();
        assert_eq!(
            meta,
            PoolMeta {
                last_snapshot: Some(Snapshot::new(3, at(4))),
                generation: 0,
                write_seq: 0,
            }
        );
    }
}
