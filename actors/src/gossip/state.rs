//! `GossipState`: one node's side of the gossip protocol (see the module doc of `gossip` for
//! the protocol and its rules), pure: every method takes `now`, randomness comes from a seeded
//! generator, nothing is sent or stored here. The caller (the cluster gateway) sends what the
//! methods return, feeds member states in, and persists `persisted()`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use herald_messages::{
    Bump, Digest, DigestEntry, EntryRun, GossipAd, GossipEntry, GossipMessage, InvalidInput,
    LocalRegister, MAX_GOSSIP_NUMBER, MemberState, NodeId, OriginDelta, PersistedGossip,
    PersistedRecord, RegisterId, StagingMark, Timestamp, check_digest_entry,
};

use super::record::{Entries, KeySet, Record, RecordSummary, Tally, after};

/// The protocol's settings, from the node's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipConfig {
    /// Members a round starts an exchange with.
    pub fanout: usize,
    /// Largest message, in bytes of JSON (a single entry larger than this still goes alone).
    pub message_budget: usize,
    /// How long a remote origin's ads live after its last confirmation when the membership
    /// does not call it ready.
    pub ad_ttl: Duration,
    /// How long an unreachable origin's ads are kept (marked stale) after its last
    /// confirmation; longer than `ad_ttl`.
    pub stale_grace: Duration,
    /// How long a withdrawal is kept after this node learned it (collected between one and two
    /// of these later). A performance bound, not a safety one: see the module doc.
    pub tombstone_ttl: Duration,
    /// How long a record no longer shown is kept in memory before it is forgotten.
    pub retention: Duration,
}

/// Things that happened, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipCounters {
    pub rounds: u64,
    pub messages_in: u64,
    /// Entries refused by validation (the rest of their message applied).
    pub refused_entries: u64,
    /// Deltas, digests or digest entries refused as malformed.
    pub refused_frames: u64,
    /// Deltas that could not be applied soundly (stale incarnation, a gap, a sender missing
    /// withdrawals this node needs, an older sender than the rebuild in progress).
    pub unusable_deltas: u64,
    /// Deltas about this node's own ads, or about departed origins (ignored).
    pub ignored_deltas: u64,
    pub rebuilds_started: u64,
    pub promotions: u64,
    pub withdrawals_collected: u64,
    /// Times this node moved to a new incarnation because others knew it at a later state.
    pub bumps: u64,
}

/// One origin's shown record before and after a message (or a member change).
#[derive(Debug, Clone)]
pub struct OriginChange {
    pub origin: NodeId,
    pub before: Option<Record>,
    pub after: Option<Record>,
}

/// What handling a message produced: messages to send, and origins whose shown ads changed.
#[derive(Debug, Default)]
pub struct Handled {
    pub replies: Vec<(NodeId, GossipMessage)>,
    pub changes: Vec<OriginChange>,
}

/// How this node currently sees an origin's ads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Live,
    /// Kept, though the origin has not been confirmed for a while and the membership does not
    /// call it ready.
    Stale,
    /// Not shown.
    Gone,
}

/// One register as the gossip sees it: who serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterSources {
    pub register_id: RegisterId,
    /// Live and stale origins serving it, this node included.
    pub peer_count: usize,
    /// Those that hold a full replica.
    pub full_replica_peer_count: usize,
    /// Whether this node serves it.
    pub local: bool,
    /// Origins counted in `peer_count` that are stale.
    pub stale_sources: usize,
}

/// What the gossip shows: every register served by a live or stale origin, with its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipView {
    pub registers: Vec<RegisterSources>,
    /// Remote ads shown (live and stale).
    pub remote_ads: usize,
    pub stale_ads: usize,
}

impl GossipView {
    /// Share of the remote ads shown that are stale (0 when none are shown): the integration
    /// calls the node partitioned above a configured share.
    pub fn partitioned_ratio(&self) -> f64 {
        if self.remote_ads == 0 {
            return 0.0;
        }
        self.stale_ads as f64 / self.remote_ads as f64
    }
}

/// Why a persisted state was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("the persisted gossip state belongs to node {found}, not {expected}")]
    OtherNode { expected: NodeId, found: NodeId },
}

/// How the membership judges a member, as the gossip uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Ready,
    /// Suspect or connecting: not confirmed, not declared lost either.
    Unsure,
    Unreachable,
    /// Not a member this node knows.
    Unknown,
}

/// Withdrawals to collect: those learned by `at` (the record's `max` then) go at
/// `at + tombstone_ttl`. Two slots: the later one keeps the newest, so a withdrawal is
/// collected between one and two TTLs after it was learned, in constant memory.
#[derive(Debug, Clone, Copy, Default)]
struct GcSlots {
    pending: Option<(Timestamp, u64)>,
    next: Option<(Timestamp, u64)>,
}

impl GcSlots {
    fn note(&mut self, now: Timestamp, max: u64) {
        if self.pending.is_none() {
            self.pending = Some((now, max));
        } else {
            self.next = Some((now, max));
        }
    }

    /// The version up to which withdrawals may be collected now, if a slot is due.
    fn due(&mut self, now: Timestamp, ttl: Duration) -> Option<u64> {
        let (at, max) = self.pending?;
        if now < at.saturating_add(ttl) {
            return None;
        }
        self.pending = self.next.take();
        Some(max)
    }
}

/// A record being rebuilt, not shown: its `max` is how far the rebuild got; `target` is the
/// newest sender state it continued with.
#[derive(Debug, Clone)]
struct Staging {
    record: Record,
    /// The version the entries held are exact as of: the shown record's `max` when the
    /// staging continues it, the first sender's `max` for a rebuild.
    as_of: u64,
    target: u64,
}

/// What this node holds of another origin.
#[derive(Debug, Clone)]
struct Remote {
    visible: Option<Record>,
    staging: Option<Staging>,
    last_confirmed: Option<Timestamp>,
    known_since: Timestamp,
    reach: Reach,
    gc: GcSlots,
}

impl Remote {
    fn new(now: Timestamp) -> Self {
        Self {
            visible: None,
            staging: None,
            last_confirmed: None,
            known_since: now,
            reach: Reach::Unknown,
            gc: GcSlots::default(),
        }
    }

    fn visible_position(&self) -> (u64, u64) {
        self.visible
            .as_ref()
            .map_or((0, 0), |record| (record.incarnation(), record.max()))
    }

    fn digest_entry(&self, origin: &NodeId) -> Option<DigestEntry> {
        if self.visible.is_none() && self.staging.is_none() {
            return None;
        }
        let (incarnation, max) = self.visible_position();
        Some(DigestEntry {
            origin: origin.clone(),
            incarnation,
            max,
            staging: self.staging.as_ref().map(|staging| StagingMark {
                incarnation: staging.record.incarnation(),
                position: staging.record.max(),
                as_of: staging.as_of,
                target: staging.target,
            }),
        })
    }

    fn liveness(&self, now: Timestamp, config: &GossipConfig) -> Liveness {
        if self.reach == Reach::Ready {
            return Liveness::Live;
        }
        let Some(confirmed) = self.last_confirmed else {
            return Liveness::Gone;
        };
        let within = |period: Duration| now < confirmed.saturating_add(period);
        match self.reach {
            Reach::Ready => Liveness::Live,
            Reach::Unreachable if within(config.stale_grace) => Liveness::Stale,
            Reach::Unsure | Reach::Unknown if within(config.ad_ttl) => Liveness::Live,
            Reach::Unsure if within(config.stale_grace) => Liveness::Stale,
            _ => Liveness::Gone,
        }
    }
}

/// One of this node's public ads as `set_local` takes it: compared with the ad issued last
/// where it is, and copied into a `GossipAd` only when it changed. The runtime gives the
/// local registers of the pool's answer (`LocalRegister`), so the pool keeps no list of its
/// public ads in the gossip's form; tests give `GossipAd`s.
pub trait LocalAd {
    fn register_id(&self) -> &RegisterId;
    /// Whether `issued` says what this ad says.
    fn is(&self, issued: &GossipAd) -> bool;
    fn gossip_ad(&self) -> GossipAd;
}

impl LocalAd for GossipAd {
    fn register_id(&self) -> &RegisterId {
        GossipAd::register_id(self)
    }

    fn is(&self, issued: &GossipAd) -> bool {
        self == issued
    }

    fn gossip_ad(&self) -> GossipAd {
        self.clone()
    }
}

impl LocalAd for LocalRegister<'_> {
    fn register_id(&self) -> &RegisterId {
        LocalRegister::register_id(self)
    }

    fn is(&self, issued: &GossipAd) -> bool {
        LocalRegister::is(self, issued)
    }

    fn gossip_ad(&self) -> GossipAd {
        LocalRegister::gossip_ad(self)
    }
}

/// One node's gossip: its own record, what it holds of the others, and the exchanges.
#[derive(Debug, Clone)]
pub struct GossipState {
    me: NodeId,
    config: GossipConfig,
    rng: SplitMix64,
    own: Record,
    own_gc: GcSlots,
    remote: BTreeMap<NodeId, Remote>,
    departed: BTreeSet<NodeId>,
    /// Ready members (this node excluded): whom a round may pick.
    ready: Vec<NodeId>,
    /// The last origin the previous digest covered, when the digest did not fit one message.
    digest_cursor: Option<NodeId>,
    /// The last complete digest, while nothing changed.
    digest_cache: Option<Arc<Digest>>,
    /// Wrapping sum of `position_hash` over the shown records and this node's own.
    knowledge: u64,
    counters: GossipCounters,
    keys: KeySet,
    /// Testing only: serve continuations whatever the floor (a stale or buggy sender), to
    /// prove that receivers refuse them.
    careless: bool,
}

impl GossipState {
    /// A node with no stored state. Its incarnation is the clock in milliseconds (at least 1),
    /// so that even a node that lost its store starts above its earlier incarnations while the
    /// clock is sane; a `Bump` covers the rest.
    pub fn new(me: NodeId, config: GossipConfig, now: Timestamp, seed: u64) -> Self {
        let incarnation = clock_incarnation(now).max(1);
        let mut state = Self {
            me,
            config,
            rng: SplitMix64(seed),
            own: Record::empty(incarnation),
            own_gc: GcSlots::default(),
            remote: BTreeMap::new(),
            departed: BTreeSet::new(),
            ready: Vec::new(),
            digest_cursor: None,
            digest_cache: None,
            knowledge: 0,
            counters: GossipCounters::default(),
            keys: KeySet::default(),
            careless: false,
        };
        state.knowledge = position_hash(&state.me, incarnation, 0);
        state
    }

    /// A node restarting from its store: it moves to a new incarnation above the stored one
    /// (its last versions may not have reached the store), re-issues under it the ads a store
    /// written before they were left out of `persisted()` holds (the pool's `set_local`, which
    /// the driver calls before any exchange, gives the current ones),
    /// and shows the stored records of others at once, unconfirmed (each lives one `ad_ttl`
    /// from now unless confirmed, whatever the stored state says: the clock rule).
    pub fn restore(
        me: NodeId,
        config: GossipConfig,
        persisted: PersistedGossip,
        now: Timestamp,
        seed: u64,
    ) -> Result<Self, RestoreError> {
        if persisted.own.origin != me {
            return Err(RestoreError::OtherNode {
                expected: me,
                found: persisted.own.origin,
            });
        }
        let mut state = Self::new(me, config, now, seed);
        let incarnation = clock_incarnation(now)
            .max(persisted.own.incarnation.saturating_add(1))
            .min(MAX_GOSSIP_NUMBER);
        let ads: Vec<GossipAd> = persisted
            .own
            .entries
            .as_slice()
            .iter()
            .filter_map(|entry| entry.ad().cloned())
            .collect();
        state.own = reissued(incarnation, ads);
        state.knowledge = position_hash(&state.me, incarnation, state.own.max());
        for stored in persisted.remote {
            if stored.origin == state.me || check_record(&stored).is_err() {
                state.counters.refused_frames += 1;
                continue;
            }
            let record = Record::from_entries(
                stored.incarnation,
                stored.max,
                stored.floor,
                Arc::clone(stored.entries.shared()),
            );
            let mut remote = Remote::new(now);
            remote.last_confirmed = Some(now);
            if record.has_withdrawals() {
                remote.gc.note(now, record.max());
            }
            state.knowledge = state.knowledge.wrapping_add(position_hash(
                &stored.origin,
                record.incarnation(),
                record.max(),
            ));
            remote.visible = Some(record);
            state.remote.insert(stored.origin, remote);
        }
        Ok(state)
    }

    /// Makes this node a careless sender: it serves continuations even over withdrawals it
    /// collected (as a buggy or stale sender would). Receivers must refuse them.
    #[cfg(any(test, feature = "testing"))]
    pub fn serve_carelessly(&mut self) {
        self.careless = true;
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn incarnation(&self) -> u64 {
        self.own.incarnation()
    }

    pub fn counters(&self) -> GossipCounters {
        self.counters
    }

    /// This node's own record.
    pub fn own(&self) -> &Record {
        &self.own
    }

    /// The record this node shows of `origin` (its own included).
    pub fn record(&self, origin: &NodeId) -> Option<&Record> {
        if *origin == self.me {
            return Some(&self.own);
        }
        self.remote.get(origin)?.visible.as_ref()
    }

    /// Where this node stands on `origin` (its own included), as its digest says it.
    pub fn position_of(&self, origin: &NodeId) -> Option<DigestEntry> {
        if *origin == self.me {
            return Some(DigestEntry {
                origin: origin.clone(),
                incarnation: self.own.incarnation(),
                max: self.own.max(),
                staging: None,
            });
        }
        self.remote.get(origin)?.digest_entry(origin)
    }

    /// Summary of the record shown of `origin`.
    pub fn summary(&self, origin: &NodeId) -> Option<RecordSummary> {
        self.record(origin).map(Record::summary)
    }

    /// A hash of the incarnation and version of every record shown (this node's own
    /// included): two nodes with the same value hold the same versions of the same origins.
    /// Kept up to date at every change, so comparing it is free.
    pub fn knowledge_hash(&self) -> u64 {
        self.knowledge
    }

    /// Replaces this node's public ads (the complete set; an ad not in it is withdrawn; of two
    /// for one register the later wins). Each changed ad gets the next version; returns how
    /// many versions were issued. Only the changed ads are copied (the pool gives all of them,
    /// 100,000 on a large node, ordered by register: compared where they are, through
    /// `LocalAd`, not through a map of copies).
    pub fn set_local<A: LocalAd>(&mut self, ads: &[A], now: Timestamp) -> usize {
        let mut wanted: Vec<&A> = ads.iter().collect();
        if !wanted.is_sorted_by(|a, b| a.register_id() < b.register_id()) {
            // Stable: of the ads of one register, the later stays last, and is kept.
            wanted.sort_by(|a, b| a.register_id().cmp(b.register_id()));
            wanted = wanted
                .chunk_by(|a, b| a.register_id() == b.register_id())
                .filter_map(|run| run.last().copied())
                .collect();
        }
        let position = |register_id: &RegisterId| {
            wanted
                .binary_search_by(|ad| ad.register_id().cmp(register_id))
                .ok()
        };
        let mut unchanged = vec![false; wanted.len()];
        let mut changed: Vec<Arc<GossipEntry>> = Vec::new();
        let mut version = self.own.max();
        let mut withdrawn = Vec::new();
        for entry in self.own.entries() {
            match (entry.ad(), position(entry.register_id())) {
                (Some(current), Some(at)) if wanted[at].is(current) => unchanged[at] = true,
                (Some(_), None) => withdrawn.push(entry.register_id().clone()),
                _ => {}
            }
        }
        withdrawn.sort();
        for register_id in withdrawn {
            version += 1;
            changed.push(Arc::new(GossipEntry::withdrawn(version, register_id)));
        }
        for (ad, _) in wanted.iter().zip(&unchanged).filter(|(_, same)| !**same) {
            version += 1;
            changed.push(Arc::new(GossipEntry::live(version, ad.gossip_ad())));
        }
        if changed.is_empty() {
            return 0;
        }
        let issued = changed.len();
        let keys: KeySet = changed
            .iter()
            .map(|entry| entry.register_id().clone())
            .collect();
        let mut tally = Tally::default();
        changed.iter().for_each(|entry| tally.add(entry));
        let record = self
            .own
            .merged(&changed, &keys, (version, self.own.floor()), tally);
        if changed.iter().any(|entry| entry.is_withdrawal()) {
            self.own_gc.note(now, version);
        }
        self.replace_own(record);
        issued
    }

    /// Takes the membership's view: which members are ready (the only ones a round picks), and
    /// how each is judged, which decides whether its ads are live, stale or gone. A departed
    /// member's record is dropped at once, and its deltas are ignored until it is a member
    /// again. Returns the records dropped.
    pub fn set_members(
        &mut self,
        now: Timestamp,
        members: &[(NodeId, MemberState)],
        departed: &[NodeId],
    ) -> Vec<OriginChange> {
        for remote in self.remote.values_mut() {
            if remote.reach == Reach::Ready {
                remote.last_confirmed = Some(now);
            }
            remote.reach = Reach::Unknown;
        }
        self.ready.clear();
        for (node, state) in members {
            if *node == self.me {
                continue;
            }
            let reach = match state {
                MemberState::Ready => Reach::Ready,
                MemberState::Connecting | MemberState::Suspect => Reach::Unsure,
                MemberState::Unreachable => Reach::Unreachable,
            };
            if reach == Reach::Ready {
                self.ready.push(node.clone());
                self.departed.remove(node);
            }
            if let Some(remote) = self.remote.get_mut(node) {
                remote.reach = reach;
                if reach == Reach::Ready {
                    remote.last_confirmed = Some(now);
                }
            }
        }
        let mut changes = Vec::new();
        for node in departed {
            if *node == self.me || self.ready.contains(node) {
                continue;
            }
            self.departed.insert(node.clone());
            if let Some(remote) = self.remote.remove(node) {
                self.forget(node, &remote);
                changes.push(OriginChange {
                    origin: node.clone(),
                    before: remote.visible,
                    after: None,
                });
            }
        }
        changes
    }

    /// One gossip round: collects withdrawals that are due, forgets records no longer shown
    /// for longer than the retention, and starts an exchange (`Syn` with this node's digest)
    /// with `fanout` random ready members.
    pub fn on_round(&mut self, now: Timestamp) -> Vec<(NodeId, GossipMessage)> {
        self.counters.rounds += 1;
        self.collect_garbage(now);
        let count = self.config.fanout.min(self.ready.len());
        if count == 0 {
            return Vec::new();
        }
        let digest = self.digest();
        // A partial Fisher-Yates shuffle picks `count` distinct members.
        for index in 0..count {
            let pick = index + self.rng.below(self.ready.len() - index);
            self.ready.swap(index, pick);
        }
        self.ready[..count]
            .iter()
            .map(|member| {
                let message = GossipMessage::Syn {
                    digest: Arc::clone(&digest),
                    knowledge: self.knowledge,
                };
                (member.clone(), message)
            })
            .collect()
    }

    /// Handles a message from member `from`: applies what it brings, and answers.
    pub fn on_message(&mut self, now: Timestamp, from: &NodeId, message: GossipMessage) -> Handled {
        self.counters.messages_in += 1;
        if let Some(remote) = self.remote.get_mut(from) {
            remote.last_confirmed = Some(now);
        }
        let mut handled = Handled::default();
        match message {
            GossipMessage::Syn { digest, knowledge } => {
                if knowledge == self.knowledge {
                    return handled;
                }
                match self.answer(from, &digest) {
                    Ok(Some(ack)) => handled.replies.push((from.clone(), ack)),
                    Ok(None) => {}
                    Err(_) => self.counters.refused_frames += 1,
                }
            }
            GossipMessage::Ack {
                deltas,
                wants,
                bump,
            } => {
                self.take_bump(bump);
                self.apply_all(now, &deltas, &mut handled.changes);
                let deltas = self.serve(&wants);
                if !deltas.is_empty() {
                    handled
                        .replies
                        .push((from.clone(), GossipMessage::Ack2 { deltas, bump: None }));
                }
            }
            GossipMessage::Ack2 { deltas, bump } => {
                self.take_bump(bump);
                self.apply_all(now, &deltas, &mut handled.changes);
            }
        }
        handled
    }

    /// Every register served by a live or stale origin (this node included), with its counts.
    pub fn view(&self, now: Timestamp) -> GossipView {
        let mut registers: BTreeMap<RegisterId, RegisterSources> = BTreeMap::new();
        let mut count = |ad: &GossipAd, local: bool, stale: bool| {
            let sources = registers
                .entry(ad.register_id().clone())
                .or_insert_with(|| RegisterSources {
                    register_id: ad.register_id().clone(),
                    peer_count: 0,
                    full_replica_peer_count: 0,
                    local: false,
                    stale_sources: 0,
                });
            sources.peer_count += 1;
            sources.full_replica_peer_count += usize::from(ad.sync_state().is_full_replica());
            sources.local |= local;
            sources.stale_sources += usize::from(stale);
        };
        for ad in self.own.live_ads() {
            count(ad, true, false);
        }
        let (mut remote_ads, mut stale_ads) = (0, 0);
        for remote in self.remote.values() {
            let Some(record) = &remote.visible else {
                continue;
            };
            let stale = match remote.liveness(now, &self.config) {
                Liveness::Gone => continue,
                Liveness::Live => false,
                Liveness::Stale => true,
            };
            for ad in record.live_ads() {
                remote_ads += 1;
                stale_ads += usize::from(stale);
                count(ad, false, stale);
            }
        }
        GossipView {
            registers: registers.into_values().collect(),
            remote_ads,
            stale_ads,
        }
    }

    /// How this node sees `origin`'s ads now.
    pub fn liveness(&self, origin: &NodeId, now: Timestamp) -> Liveness {
        if *origin == self.me {
            return Liveness::Live;
        }
        match self.remote.get(origin) {
            Some(remote) if remote.visible.is_some() => remote.liveness(now, &self.config),
            _ => Liveness::Gone,
        }
    }

    /// Every origin whose ads this node shows now (live or stale; never this node), with its
    /// record and whether it is stale, ordered by origin: what the read side merges with the
    /// pool's local ads.
    pub fn shown_remote(&self, now: Timestamp) -> Vec<(&NodeId, &Record, bool)> {
        self.remote
            .iter()
            .filter_map(|(origin, remote)| {
                let record = remote.visible.as_ref()?;
                match remote.liveness(now, &self.config) {
                    Liveness::Gone => None,
                    Liveness::Live => Some((origin, record, false)),
                    Liveness::Stale => Some((origin, record, true)),
                }
            })
            .collect()
    }

    /// What to store: the records this node shows of others (withdrawals and floors
    /// included), and of its own record only where it stands (incarnation, versions): a
    /// restart moves to a new incarnation and issues this node's ads anew from the pool
    /// (`set_local`), so its own entries would never be read back, and writing them on every
    /// change of a 100,000-ad node cost 60 MB of transient buffers per write (issue 11).
    /// Cheap: the entries are shared, not copied.
    pub fn persisted(&self) -> PersistedGossip {
        let record = |origin: &NodeId, record: &Record| PersistedRecord {
            origin: origin.clone(),
            incarnation: record.incarnation(),
            max: record.max(),
            floor: record.floor(),
            entries: EntryRun::whole(Arc::clone(record.shared_entries())),
        };
        PersistedGossip {
            own: PersistedRecord {
                entries: EntryRun::empty(),
                ..record(&self.me, &self.own)
            },
            remote: self
                .remote
                .iter()
                .filter_map(|(origin, remote)| Some(record(origin, remote.visible.as_ref()?)))
                .collect(),
        }
    }

    // ---- the exchange ----

    /// This node's digest, within the budget: complete when it fits (and then cached until
    /// something changes), else the next range of origins after the previous one.
    fn digest(&mut self) -> Arc<Digest> {
        if let Some(digest) = &self.digest_cache {
            return Arc::clone(digest);
        }
        let mut entries = Vec::with_capacity(self.remote.len() + 1);
        let own = DigestEntry {
            origin: self.me.clone(),
            incarnation: self.own.incarnation(),
            max: self.own.max(),
            staging: None,
        };
        let mut own = Some(own);
        for (origin, remote) in &self.remote {
            if own.as_ref().is_some_and(|own| own.origin < *origin) {
                entries.extend(own.take());
            }
            entries.extend(remote.digest_entry(origin));
        }
        entries.extend(own);
        let budget = self.config.message_budget.saturating_sub(ENVELOPE);
        let total: usize = entries.iter().map(|entry| entry.wire_size() + 1).sum();
        if total <= budget {
            self.digest_cursor = None;
            let digest = Arc::new(Digest {
                from: None,
                through: None,
                entries,
            });
            self.digest_cache = Some(Arc::clone(&digest));
            return digest;
        }
        let start = match &self.digest_cursor {
            Some(cursor) => entries.partition_point(|entry| entry.origin <= *cursor),
            None => 0,
        };
        let start = if start >= entries.len() { 0 } else { start };
        let mut used = 0;
        let mut end = start;
        while end < entries.len() && (end == start || used + entries[end].wire_size() < budget) {
            used += entries[end].wire_size() + 1;
            end += 1;
        }
        let from = (start > 0).then(|| entries[start].origin.clone());
        let through = (end < entries.len()).then(|| entries[end - 1].origin.clone());
        self.digest_cursor = through.clone();
        entries.truncate(end);
        entries.drain(..start);
        Arc::new(Digest {
            from,
            through,
            entries,
        })
    }

    /// The answer to a `Syn`: what `from` lacks, what this node lacks, and a bump if `from`
    /// claims an older state of itself than this node holds. One walk over this node's
    /// records in the digest's range beside the digest's entries (both ordered by origin),
    /// which also checks the digest's rules (`Digest::validate`'s, entry by entry, so that the
    /// digest is read once): a digest that breaks one gets no answer.
    fn answer(
        &mut self,
        from: &NodeId,
        digest: &Digest,
    ) -> Result<Option<GossipMessage>, InvalidInput> {
        let mut previous: Option<&str> = None;
        let mut candidates = Vec::new();
        let mut wants = Vec::new();
        let mut bump = None;
        if digest.covers(&self.me) {
            let listed = digest
                .entries
                .binary_search_by(|entry| entry.origin.cmp(&self.me))
                .ok()
                .map(|at| &digest.entries[at]);
            let claim = Claim::of(listed);
            if (claim.incarnation, claim.max) > (self.own.incarnation(), self.own.max()) {
                self.bump_to(claim.incarnation);
            }
            if let Some(start) = claim.start_for(&self.own, self.careless) {
                candidates.push(Candidate::new(&self.me, &self.own, start));
            }
        }
        let lower = digest
            .from
            .as_ref()
            .map_or(Bound::Unbounded, Bound::Included);
        let upper = digest
            .through
            .as_ref()
            .map_or(Bound::Unbounded, Bound::Included);
        let mut mine = self.remote.range::<NodeId, _>((lower, upper)).peekable();
        let me = self.me.as_str();
        let mut listed = digest.entries.iter().peekable();
        loop {
            if let Some(entry) = listed.peek()
                && entry.origin.as_str() == me
            {
                check_next(digest, entry, &mut previous)?;
                listed.next();
                continue;
            }
            // Ordered by origin on both sides: one comparison a step (as `str`s: cheap).
            let order = match (mine.peek(), listed.peek()) {
                (None, None) => break,
                (Some((origin, _)), Some(entry)) => origin.as_str().cmp(entry.origin.as_str()),
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
            };
            let (held, entry) = match order {
                Ordering::Equal => (mine.next(), listed.next()),
                Ordering::Greater => (None, listed.next()),
                Ordering::Less => (mine.next(), None),
            };
            if let Some(entry) = entry {
                check_next(digest, entry, &mut previous)?;
            }
            let Some((origin, remote)) = held else {
                // They hold it, this node nothing.
                let entry = entry.expect("one side has it");
                if !self.departed.contains(&entry.origin) {
                    wants.push(DigestEntry {
                        origin: entry.origin.clone(),
                        incarnation: 0,
                        max: 0,
                        staging: None,
                    });
                }
                continue;
            };
            let claim = Claim::of(entry);
            if let Some(record) = &remote.visible {
                if origin.as_str() == from.as_str()
                    && (record.incarnation(), record.max()) > (claim.incarnation, claim.max)
                {
                    bump = Some(Bump {
                        incarnation: record.incarnation(),
                        max: record.max(),
                    });
                }
                if let Some(start) = claim.start_for(record, self.careless) {
                    candidates.push(Candidate::new(origin, record, start));
                }
            }
            if entry.is_some_and(|entry| entry.staging.is_none()) && claim.is_wanted_by(remote) {
                wants.extend(remote.digest_entry(origin));
            }
        }
        let (deltas, used) = fill(candidates, &mut self.rng, self.config.message_budget);
        let mut wants_size = 0;
        let room = self.config.message_budget.saturating_sub(used);
        wants.retain(|entry| {
            wants_size += entry.wire_size() + 1;
            wants_size <= room
        });
        if deltas.is_empty() && wants.is_empty() && bump.is_none() {
            return Ok(None);
        }
        Ok(Some(GossipMessage::Ack {
            deltas,
            wants,
            bump,
        }))
    }

    /// Deltas for a requester that sent `wants` (its positions where this node is ahead).
    fn serve(&mut self, wants: &[DigestEntry]) -> Vec<OriginDelta> {
        let mut candidates = Vec::new();
        for want in wants {
            if check_digest_entry(want, "wants").is_err() {
                self.counters.refused_frames += 1;
                continue;
            }
            let record = if want.origin == self.me {
                Some(&self.own)
            } else {
                self.remote
                    .get(&want.origin)
                    .and_then(|remote| remote.visible.as_ref())
            };
            if let Some(record) = record
                && let Some(start) = Claim::of(Some(want)).start_for(record, self.careless)
            {
                candidates.push(Candidate::new(&want.origin, record, start));
            }
        }
        fill(candidates, &mut self.rng, self.config.message_budget).0
    }

    fn take_bump(&mut self, bump: Option<Bump>) {
        let Some(bump) = bump else {
            return;
        };
        if bump.incarnation > MAX_GOSSIP_NUMBER || bump.max > MAX_GOSSIP_NUMBER {
            self.counters.refused_frames += 1;
            return;
        }
        if (bump.incarnation, bump.max) > (self.own.incarnation(), self.own.max()) {
            self.bump_to(bump.incarnation);
        }
    }

    /// Moves this node to an incarnation above `seen` and re-issues its live ads under it.
    fn bump_to(&mut self, seen: u64) {
        let incarnation = self
            .own
            .incarnation()
            .max(seen)
            .saturating_add(1)
            .min(MAX_GOSSIP_NUMBER);
        let ads: Vec<GossipAd> = self.own.live_ads().cloned().collect();
        self.counters.bumps += 1;
        self.own_gc = GcSlots::default();
        self.replace_own(reissued(incarnation, ads));
    }

    fn replace_own(&mut self, record: Record) {
        self.knowledge = self
            .knowledge
            .wrapping_sub(position_hash(
                &self.me,
                self.own.incarnation(),
                self.own.max(),
            ))
            .wrapping_add(position_hash(&self.me, record.incarnation(), record.max()));
        self.own = record;
        self.digest_cache = None;
    }

    // ---- applying deltas ----

    fn apply_all(
        &mut self,
        now: Timestamp,
        deltas: &[OriginDelta],
        changes: &mut Vec<OriginChange>,
    ) {
        for delta in deltas {
            if let Some(change) = self.apply(now, delta) {
                changes.push(change);
            }
        }
    }

    /// Applies one delta if it can be applied soundly (the rules in the module doc); returns
    /// the change to the shown record, if any.
    fn apply(&mut self, now: Timestamp, delta: &OriginDelta) -> Option<OriginChange> {
        if delta.validate_frame("delta").is_err() {
            self.counters.refused_frames += 1;
            return None;
        }
        if delta.origin == self.me {
            if (delta.incarnation, delta.sender_max) > (self.own.incarnation(), self.own.max()) {
                self.bump_to(delta.incarnation);
            } else {
                self.counters.ignored_deltas += 1;
            }
            return None;
        }
        if self.departed.contains(&delta.origin) {
            self.counters.ignored_deltas += 1;
            return None;
        }
        if !self.remote.contains_key(&delta.origin) {
            self.remote.insert(delta.origin.clone(), Remote::new(now));
        }
        let remote = self
            .remote
            .get_mut(&delta.origin)
            .expect("inserted if absent");
        let (base, as_of, target) = match (&remote.staging, &remote.visible) {
            (Some(staging), _) => (Some(&staging.record), staging.as_of, staging.target),
            (None, Some(visible)) => (Some(visible), visible.max(), visible.max()),
            (None, None) => (None, 0, 0),
        };
        let staged = remote.staging.is_some();
        let continues = base.is_some_and(|base| {
            delta.incarnation == base.incarnation()
                && delta.from <= base.max()
                && delta.to > base.max()
                && delta.floor <= as_of
                && delta.sender_max >= target
        });
        let newest_known = match &remote.staging {
            Some(staging) => (staging.record.incarnation(), staging.target),
            None => (0, 0),
        };
        let rebuilds = !continues
            && delta.from == 0
            && (delta.incarnation, delta.sender_max) > remote.visible_position()
            && (delta.incarnation, delta.sender_max) >= newest_known;
        if !continues && !rebuilds {
            self.counters.unusable_deltas += 1;
            return None;
        }
        let above = if continues {
            base.map_or(0, Record::max)
        } else {
            0
        };
        // Validate the entries to apply; the first bad one cuts the delta before it.
        let run = delta.entries.as_slice();
        let skip = after(run, above);
        let mut take = skip;
        let mut previous = above.max(delta.from);
        let mut refused = false;
        let mut tally = Tally::default();
        self.keys.clear();
        while take < run.len() {
            let entry = &run[take];
            let ordered = entry.version() > previous && entry.version() <= delta.to;
            let fresh = self.keys.insert(entry.register_id().clone());
            if !(ordered && fresh && entry.validate("delta.entries").is_ok()) {
                refused = true;
                break;
            }
            tally.add(entry);
            previous = entry.version();
            take += 1;
        }
        if refused {
            self.counters.refused_entries += 1;
            self.keys.remove(run[take].register_id());
        }
        let position = if refused {
            run[take].version() - 1
        } else {
            delta.to
        };
        if position <= above {
            return None;
        }
        let record = if continues {
            let base = base.expect("a continuation has a base");
            // A staged record may lack the sender's collected withdrawals up to its floor
            // (all at or below `as_of`); a shown one continued by a sender whose floor is at
            // most its `max` holds them all.
            let floor = if staged {
                base.floor().max(delta.floor)
            } else {
                base.floor()
            };
            base.merged(&run[skip..take], &self.keys, (position, floor), tally)
        } else {
            self.counters.rebuilds_started += 1;
            Record::from_run(
                delta.incarnation,
                (position, delta.floor),
                &delta.entries,
                take,
                tally,
            )
        };
        let complete = !refused && delta.is_complete();
        if !complete {
            let as_of = if continues { as_of } else { delta.sender_max };
            remote.staging = Some(Staging {
                record,
                as_of,
                target: delta.sender_max,
            });
            self.digest_cache = None;
            return None;
        }
        self.counters.promotions += u64::from(remote.staging.is_some() || rebuilds);
        remote.staging = None;
        if record.has_withdrawals() {
            remote.gc.note(now, record.max());
        }
        let before = remote.visible.replace(record.clone());
        let old = before.as_ref().map_or(0, |old| {
            position_hash(&delta.origin, old.incarnation(), old.max())
        });
        self.knowledge = self.knowledge.wrapping_sub(old).wrapping_add(position_hash(
            &delta.origin,
            record.incarnation(),
            record.max(),
        ));
        self.digest_cache = None;
        Some(OriginChange {
            origin: delta.origin.clone(),
            before,
            after: Some(record),
        })
    }

    // ---- housekeeping ----

    fn collect_garbage(&mut self, now: Timestamp) {
        let ttl = self.config.tombstone_ttl;
        if let Some(up_to) = self.own_gc.due(now, ttl)
            && let Some(record) = self.own.collected(up_to)
        {
            self.counters.withdrawals_collected +=
                (self.own.summary().withdrawals - record.summary().withdrawals) as u64;
            self.own = record;
            self.digest_cache = None;
        }
        let keep_for = self.config.ad_ttl.max(self.config.stale_grace) + self.config.retention;
        let mut forget = Vec::new();
        for (origin, remote) in &mut self.remote {
            if let Some(up_to) = remote.gc.due(now, ttl)
                && let Some(visible) = &remote.visible
                && let Some(record) = visible.collected(up_to)
            {
                self.counters.withdrawals_collected +=
                    (visible.summary().withdrawals - record.summary().withdrawals) as u64;
                remote.visible = Some(record);
                self.digest_cache = None;
            }
            let seen = remote.last_confirmed.unwrap_or(remote.known_since);
            if remote.reach != Reach::Ready && now > seen.saturating_add(keep_for) {
                forget.push(origin.clone());
            }
        }
        for origin in forget {
            if let Some(remote) = self.remote.remove(&origin) {
                self.forget(&origin, &remote);
            }
        }
    }

    fn forget(&mut self, origin: &NodeId, remote: &Remote) {
        if let Some(visible) = &remote.visible {
            self.knowledge = self.knowledge.wrapping_sub(position_hash(
                origin,
                visible.incarnation(),
                visible.max(),
            ));
        }
        self.digest_cache = None;
    }
}

/// Checks the next entry of `digest` as a walk reads it: `Digest::validate`'s rules (sorted by
/// origin without repeats, inside the digest's range, numbers in range), entry by entry.
fn check_next<'a>(
    digest: &Digest,
    entry: &'a DigestEntry,
    previous: &mut Option<&'a str>,
) -> Result<(), InvalidInput> {
    let origin = entry.origin.as_str();
    let ordered = previous.is_none_or(|previous| previous < origin);
    if !ordered || !digest.covers(&entry.origin) {
        return Err(InvalidInput::new(
            "digest.entries",
            format!("{origin}: entries must be sorted by origin, without repeats, in range"),
        ));
    }
    *previous = Some(origin);
    check_digest_entry(entry, "digest.entries")
}

/// Bytes of a message around its deltas or digest entries (kind, field names, brackets).
const ENVELOPE: usize = 64;

/// What a requester holds of an origin, from its digest entry (zeros when it holds nothing).
#[derive(Debug, Clone, Copy)]
struct Claim {
    incarnation: u64,
    max: u64,
    staging: Option<StagingMark>,
}

impl Claim {
    fn of(entry: Option<&DigestEntry>) -> Self {
        entry.map_or(
            Self {
                incarnation: 0,
                max: 0,
                staging: None,
            },
            |entry| Self {
                incarnation: entry.incarnation,
                max: entry.max,
                staging: entry.staging,
            },
        )
    }

    /// Where a delta from `record` to this requester starts: its position when the record
    /// continues it (same incarnation, no withdrawal collected above the version the
    /// requester's entries are exact as of), 0 (a rebuild) when not; `None` when it needs
    /// nothing from this record (it shows as much, or rebuilds from a newer state).
    fn start_for(&self, record: &Record, careless: bool) -> Option<u64> {
        let mine = (record.incarnation(), record.max());
        if mine <= (self.incarnation, self.max) {
            return None;
        }
        let (incarnation, position, as_of) = match self.staging {
            Some(staging) => {
                if mine < (staging.incarnation, staging.target) {
                    return None;
                }
                (staging.incarnation, staging.position, staging.as_of)
            }
            None => (self.incarnation, self.max, self.max),
        };
        if mine <= (incarnation, position) {
            return None;
        }
        if record.incarnation() == incarnation && (record.floor() <= as_of || careless) {
            Some(position)
        } else {
            Some(0)
        }
    }

    /// Whether this node (holding `remote`) wants the origin's state from a requester that
    /// shows this: a later one than this node shows, and no older than its rebuild.
    fn is_wanted_by(&self, remote: &Remote) -> bool {
        let theirs = (self.incarnation, self.max);
        let ahead_of_shown = theirs > remote.visible_position();
        let ahead_of_rebuild = remote.staging.as_ref().is_none_or(|staging| {
            theirs >= (staging.record.incarnation(), staging.target)
                && theirs > (staging.record.incarnation(), staging.record.max())
        });
        ahead_of_shown && ahead_of_rebuild
    }
}

/// A delta to send, before the budget cuts it.
struct Candidate {
    origin: NodeId,
    record: Record,
    start: u64,
}

impl Candidate {
    fn new(origin: &NodeId, record: &Record, start: u64) -> Self {
        Self {
            origin: origin.clone(),
            record: record.clone(),
            start,
        }
    }
}

/// Fills one message with `candidates` in random order (so that no origin starves) within
/// `budget` bytes: whole deltas while they fit, then a part of the next one (at least one
/// entry, so that an entry larger than the budget still goes), then stops; the rest goes next
/// round. Returns the deltas and the bytes they take, envelope included.
fn fill(
    mut candidates: Vec<Candidate>,
    rng: &mut SplitMix64,
    budget: usize,
) -> (Vec<OriginDelta>, usize) {
    for index in (1..candidates.len()).rev() {
        let pick = rng.below(index + 1);
        candidates.swap(index, pick);
    }
    let mut used = ENVELOPE;
    let mut deltas = Vec::new();
    for Candidate {
        origin,
        record,
        start,
    } in candidates
    {
        let frame = OriginDelta {
            origin,
            incarnation: record.incarnation(),
            from: start,
            to: record.max(),
            sender_max: record.max(),
            floor: record.floor(),
            entries: EntryRun::empty(),
        };
        let frame_size = frame.wire_size() + 1;
        if used + frame_size > budget && !deltas.is_empty() {
            break;
        }
        let run = record.run_after(start);
        let mut take = 0;
        let mut size = frame_size;
        let everything = frame_size + record.entry_bytes();
        if start == 0 && used + everything <= budget {
            // The whole record fits: no need to measure entry by entry.
            take = run.len();
            size = everything;
        }
        for entry in &run.as_slice()[take..] {
            let next = size + entry.wire_size() + 1;
            if used + next > budget && (take > 0 || !deltas.is_empty()) {
                break;
            }
            size = next;
            take += 1;
        }
        if take == 0 && !run.is_empty() {
            break;
        }
        let (to, entries) = if take == run.len() {
            (record.max(), run)
        } else {
            let first = run.shared().len() - run.len();
            let to = run.as_slice()[take - 1].version();
            (
                to,
                EntryRun::part(Arc::clone(run.shared()), first..first + take),
            )
        };
        used += size;
        deltas.push(OriginDelta {
            to,
            entries,
            ..frame
        });
    }
    (deltas, used)
}

/// A record of `ads` under a new incarnation, versions 1, 2, … in register order.
fn reissued(incarnation: u64, mut ads: Vec<GossipAd>) -> Record {
    ads.sort_by(|a, b| a.register_id().cmp(b.register_id()));
    let entries: Entries = ads
        .into_iter()
        .enumerate()
        .map(|(index, ad)| Arc::new(GossipEntry::live(index as u64 + 1, ad)))
        .collect();
    let max = entries.len() as u64;
    Record::from_entries(incarnation, max, 0, entries)
}

/// The incarnation a start at `now` takes: the clock in milliseconds.
fn clock_incarnation(now: Timestamp) -> u64 {
    u64::try_from(now.as_unix_millis())
        .unwrap_or(0)
        .min(MAX_GOSSIP_NUMBER)
}

/// The rules a stored record keeps: numbers in range, entries ordered by version up to `max`,
/// one per register.
fn check_record(record: &PersistedRecord) -> Result<(), InvalidInput> {
    let frame = OriginDelta {
        origin: record.origin.clone(),
        incarnation: record.incarnation,
        from: 0,
        to: record.max,
        sender_max: record.max,
        floor: record.floor,
        entries: EntryRun::empty(),
    };
    frame.validate_frame("record")?;
    let mut keys = KeySet::default();
    let mut previous = 0;
    for entry in record.entries.as_slice() {
        entry.validate("record.entries")?;
        if entry.version() <= previous
            || entry.version() > record.max
            || !keys.insert(entry.register_id().clone())
        {
            return Err(InvalidInput::new(
                "record.entries",
                "must be ordered by version, at most max, one per register",
            ));
        }
        previous = entry.version();
    }
    Ok(())
}

/// A hash of one origin's position, summed into `knowledge_hash` (so a node holding the
/// positions `(origin, incarnation, max)` has the sum of theirs).
pub fn position_hash(origin: &NodeId, incarnation: u64, max: u64) -> u64 {
    let mut hash = 0x9e37_79b9_7f4a_7c15_u64;
    for byte in origin.as_str().bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut mixer = SplitMix64(hash ^ incarnation.rotate_left(17) ^ max.rotate_left(41));
    mixer.next_u64()
}

/// SplitMix64: a small, fast, seeded generator (deterministic: the simulation replays a seed).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use herald_messages::{AdInput, EntryState, SyncState};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn config() -> GossipConfig {
        GossipConfig {
            fanout: 3,
            message_budget: 64 * 1024,
            ad_ttl: SECOND * 30,
            stale_grace: SECOND * 300,
            tombstone_ttl: SECOND * 10,
            retention: SECOND * 3600,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000 + seconds * 1000)
    }

    fn node(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn id(byte: u8) -> RegisterId {
        RegisterId::from_bytes([byte; 16])
    }

    fn ad(byte: u8, sync_state: SyncState) -> GossipAd {
        GossipAd::from_input(&AdInput::public(id(byte)), sync_state).unwrap()
    }

    fn state(name: &str, now: Timestamp) -> GossipState {
        GossipState::new(node(name), config(), now, name.len() as u64)
    }

    fn ready(names: &[&str]) -> Vec<(NodeId, MemberState)> {
        names
            .iter()
            .map(|name| (node(name), MemberState::Ready))
            .collect()
    }

    /// Delivers every message at once until the nodes are quiet; returns what crossed.
    fn settle(nodes: &mut HashMap<NodeId, GossipState>, now: Timestamp) -> Vec<GossipMessage> {
        let mut wire: Vec<(NodeId, NodeId, GossipMessage)> = Vec::new();
        let mut names: Vec<NodeId> = nodes.keys().cloned().collect();
        names.sort();
        for name in &names {
            let sends = nodes.get_mut(name).unwrap().on_round(now);
            wire.extend(
                sends
                    .into_iter()
                    .map(|(to, message)| (name.clone(), to, message)),
            );
        }
        let mut crossed = Vec::new();
        while let Some((from, to, message)) = wire.pop() {
            crossed.push(message.clone());
            let Some(receiver) = nodes.get_mut(&to) else {
                continue; // cut off
            };
            let handled = receiver.on_message(now, &from, message);
            wire.extend(
                handled
                    .replies
                    .into_iter()
                    .map(|(reply_to, message)| (to.clone(), reply_to, message)),
            );
        }
        crossed
    }

    fn cluster(names: &[&str], now: Timestamp) -> HashMap<NodeId, GossipState> {
        let members = ready(names);
        names
            .iter()
            .map(|name| {
                let mut state = state(name, now);
                state.set_members(now, &members, &[]);
                (node(name), state)
            })
            .collect()
    }

    fn sources(state: &GossipState, register: u8, now: Timestamp) -> Option<(usize, usize)> {
        state
            .view(now)
            .registers
            .iter()
            .find(|sources| sources.register_id == id(register))
            .map(|sources| (sources.peer_count, sources.full_replica_peer_count))
    }

    #[test]
    fn set_local_takes_ads_in_any_order_the_later_of_two_winning_and_issues_only_changes() {
        let now = at(0);
        let mut o = state("o", now);
        let offered = [
            ad(3, SyncState::Active),
            ad(1, SyncState::Active),
            ad(2, SyncState::Syncing),
            ad(1, SyncState::FullyReplicated),
        ];
        assert_eq!(o.set_local(&offered, now), 3);
        let shown: Vec<(RegisterId, SyncState)> = o
            .own()
            .live_ads()
            .map(|ad| (ad.register_id().clone(), ad.sync_state()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (id(1), SyncState::FullyReplicated),
                (id(2), SyncState::Syncing),
                (id(3), SyncState::Active),
            ],
            "ordered by register, the later offer of register 1 kept"
        );
        // The same set, ordered: nothing new. One changed, one gone: two versions.
        let same = [
            ad(1, SyncState::FullyReplicated),
            ad(2, SyncState::Syncing),
            ad(3, SyncState::Active),
        ];
        assert_eq!(o.set_local(&same, now), 0);
        assert_eq!(
            o.set_local(
                &[ad(1, SyncState::FullyReplicated), ad(2, SyncState::Active)],
                now
            ),
            2
        );
        assert_eq!(o.own().summary().live, 2);
    }

    /// Issue 9 item 2: counts are computable: every live origin serving a register is counted,
    /// this node included, and only those with a full replica in the second count.
    #[test]
    fn nodes_converge_and_count_peers_and_full_replicas() {
        let now = at(0);
        let mut nodes = cluster(&["a", "b", "c"], now);
        nodes.get_mut(&node("a")).unwrap().set_local(
            &[ad(1, SyncState::FullyReplicated), ad(2, SyncState::Active)],
            now,
        );
        nodes
            .get_mut(&node("b"))
            .unwrap()
            .set_local(&[ad(1, SyncState::Syncing)], now);
        nodes
            .get_mut(&node("c"))
            .unwrap()
            .set_local(&[ad(1, SyncState::Active)], now);
        for _ in 0..3 {
            settle(&mut nodes, now);
        }
        for state in nodes.values() {
            assert_eq!(sources(state, 1, now), Some((3, 2)), "{}", state.me());
            assert_eq!(sources(state, 2, now), Some((1, 1)), "{}", state.me());
        }
        let hashes: BTreeSet<u64> = nodes.values().map(GossipState::knowledge_hash).collect();
        assert_eq!(hashes.len(), 1);
        // Nothing changes: only digests cross.
        let crossed = settle(&mut nodes, now);
        assert!(!crossed.is_empty());
        assert!(crossed.iter().all(|message| message.deltas().is_empty()));
    }

    /// Issue 9 item 2: a private ad cannot be offered to the gossip, and nothing on the wire
    /// names it.
    #[test]
    fn private_ads_never_cross_the_wire() {
        let now = at(0);
        let mut nodes = cluster(&["a", "b"], now);
        let private = AdInput::withdraw(id(9));
        let offered: Vec<GossipAd> = [AdInput::public(id(1)), private]
            .iter()
            .filter_map(|input| GossipAd::from_input(input, SyncState::Active).ok())
            .collect();
        assert_eq!(offered.len(), 1);
        nodes.get_mut(&node("a")).unwrap().set_local(&offered, now);
        let mut wire = String::new();
        for _ in 0..3 {
            for message in settle(&mut nodes, now) {
                wire.push_str(&serde_json::to_string(&message).unwrap());
            }
        }
        assert!(wire.contains(id(1).as_str()));
        assert!(!wire.contains(id(9).as_str()));
    }

    /// The bug a lost attempt found: after a withdrawal is collected, a continuation from a
    /// sender that no longer holds it let a node step over it and keep showing the withdrawn
    /// ad. A continuation whose sender floor is above what the receiver holds is refused; a
    /// rebuild replaces the record instead.
    #[test]
    fn a_continuation_over_a_collected_withdrawal_is_refused() {
        let now = at(0);
        let mut nodes = cluster(&["origin", "r", "s"], now);
        let origin = node("origin");
        nodes
            .get_mut(&origin)
            .unwrap()
            .set_local(&[ad(1, SyncState::Active), ad(2, SyncState::Active)], now);
        for _ in 0..3 {
            settle(&mut nodes, now);
        }
        let r_before = nodes[&node("r")].summary(&origin).unwrap();
        assert_eq!(r_before.live, 2);
        // The origin withdraws register 2; r is cut off, s learns it and collects it.
        let mut r = nodes.remove(&node("r")).unwrap();
        nodes
            .get_mut(&origin)
            .unwrap()
            .set_local(&[ad(1, SyncState::Active)], now);
        for _ in 0..3 {
            settle(&mut nodes, now);
        }
        let later = at(25);
        for state in nodes.values_mut() {
            state.on_round(later);
        }
        let s = &nodes[&node("s")];
        let held = s.record(&origin).unwrap();
        assert!(held.floor() > r_before.max, "s collected the withdrawal");
        assert!(!held.has_withdrawals());
        // A stale continuation from s's record, from r's position: it holds no withdrawal.
        let stale = OriginDelta {
            origin: origin.clone(),
            incarnation: held.incarnation(),
            from: r_before.max,
            to: held.max(),
            sender_max: held.max(),
            floor: held.floor(),
            entries: held.run_after(r_before.max),
        };
        let unusable = r.counters().unusable_deltas;
        let handled = r.on_message(
            later,
            &node("s"),
            GossipMessage::Ack2 {
                deltas: vec![stale.clone()],
                bump: None,
            },
        );
        assert!(handled.changes.is_empty());
        assert_eq!(r.summary(&origin).unwrap(), r_before);
        assert_eq!(r.counters().unusable_deltas, unusable + 1);
        // What s really serves r is a rebuild, and register 2 is gone.
        let claim = r.position_of(&origin).unwrap();
        assert_eq!(Claim::of(Some(&claim)).start_for(held, false), Some(0));
        let rebuild = OriginDelta {
            from: 0,
            entries: held.run_after(0),
            ..stale
        };
        r.on_message(
            later,
            &node("s"),
            GossipMessage::Ack2 {
                deltas: vec![rebuild],
                bump: None,
            },
        );
        let after = r.record(&origin).unwrap();
        assert_eq!(after.max(), held.max());
        let shown: Vec<&RegisterId> = after.live_ads().map(GossipAd::register_id).collect();
        assert_eq!(shown, [&id(1)]);
    }

    /// No resurrection by a delayed message: a delta of an incarnation older than the shown
    /// one, or one that does not fit where the receiver stands, changes nothing.
    #[test]
    fn delayed_and_duplicated_deltas_change_nothing() {
        let now = at(0);
        let mut nodes = cluster(&["origin", "r"], now);
        let origin = node("origin");
        let o = nodes.get_mut(&origin).unwrap();
        o.set_local(&[ad(1, SyncState::Active), ad(2, SyncState::Active)], now);
        let old = o.own().clone();
        for _ in 0..2 {
            settle(&mut nodes, now);
        }
        let o = nodes.get_mut(&origin).unwrap();
        o.set_local(&[ad(1, SyncState::Active)], now);
        for _ in 0..2 {
            settle(&mut nodes, now);
        }
        let r = nodes.get_mut(&node("r")).unwrap();
        let shown = r.summary(&origin).unwrap();
        assert_eq!(shown.live, 1);
        let delayed = OriginDelta {
            origin: origin.clone(),
            incarnation: old.incarnation(),
            from: 0,
            to: old.max(),
            sender_max: old.max(),
            floor: 0,
            entries: old.run_after(0),
        };
        for message in [delayed.clone(), delayed.clone()] {
            r.on_message(
                now,
                &node("x"),
                GossipMessage::Ack2 {
                    deltas: vec![message],
                    bump: None,
                },
            );
        }
        assert_eq!(r.summary(&origin).unwrap(), shown);
        // An older incarnation, even complete and newer in versions, is ignored.
        let older = OriginDelta {
            incarnation: old.incarnation() - 1,
            to: 50,
            sender_max: 50,
            ..delayed
        };
        r.on_message(
            now,
            &node("x"),
            GossipMessage::Ack2 {
                deltas: vec![older],
                bump: None,
            },
        );
        assert_eq!(r.summary(&origin).unwrap(), shown);
    }

    /// A store written before the own record was kept without its entries still restores:
    /// its ads are issued again under the new incarnation (and `set_local` corrects them).
    #[test]
    fn a_store_holding_the_own_records_entries_restores_them_under_a_new_incarnation() {
        let now = at(0);
        let mut before = state("a", now);
        before.set_local(&[ad(1, SyncState::Active), ad(2, SyncState::Active)], now);
        let mut stored = before.persisted();
        stored.own.entries = EntryRun::whole(Arc::clone(before.own().shared_entries()));
        let later = at(10);
        let mut restarted = GossipState::restore(node("a"), config(), stored, later, 5).unwrap();
        assert!(restarted.incarnation() > before.incarnation());
        let ids = |state: &GossipState| -> Vec<RegisterId> {
            state
                .own()
                .live_ads()
                .map(|ad| ad.register_id().clone())
                .collect()
        };
        assert_eq!(ids(&restarted), vec![id(1), id(2)]);
        assert_eq!(restarted.set_local(&[ad(2, SyncState::Active)], later), 1);
        assert_eq!(ids(&restarted), vec![id(2)]);
    }

    /// Issue 9 item 3: a node restarting from an older store with its clock behind takes an
    /// incarnation others have seen exceeded; it is told, and moves above it. Receivers keep
    /// its ads shown meanwhile.
    #[test]
    fn a_restart_on_an_older_store_is_told_to_bump() {
        let start = at(0);
        let mut nodes = cluster(&["a", "b"], start);
        let a = node("a");
        nodes
            .get_mut(&a)
            .unwrap()
            .set_local(&[ad(1, SyncState::Active)], start);
        let old_store = nodes[&a].persisted();
        assert!(
            old_store.own.entries.is_empty() && old_store.own.max == 1,
            "its own record is stored as where it stands, without its entries"
        );
        let later = at(100);
        let mut restarted =
            GossipState::restore(a.clone(), config(), old_store.clone(), later, 7).unwrap();
        assert!(restarted.incarnation() > nodes[&a].incarnation());
        // The driver gives a restored node its ads from the pool before any exchange.
        restarted.set_local(&[ad(1, SyncState::Active)], later);
        nodes.insert(a.clone(), restarted);
        nodes
            .get_mut(&a)
            .unwrap()
            .set_members(later, &ready(&["a", "b"]), &[]);
        for _ in 0..3 {
            settle(&mut nodes, later);
        }
        let known = nodes[&node("b")].summary(&a).unwrap();
        // Back again on the first store, with the clock an hour behind.
        let behind = at(-3600);
        let mut stale = GossipState::restore(a.clone(), config(), old_store, behind, 8).unwrap();
        stale.set_local(&[ad(1, SyncState::Active)], behind);
        stale.set_members(behind, &ready(&["a", "b"]), &[]);
        assert!(stale.incarnation() < known.incarnation);
        nodes.insert(a.clone(), stale);
        for _ in 0..3 {
            settle(&mut nodes, later);
        }
        let a_state = &nodes[&a];
        assert_eq!(a_state.counters().bumps, 1);
        assert!(a_state.incarnation() > known.incarnation);
        let b_view = nodes[&node("b")].summary(&a).unwrap();
        assert_eq!(b_view.incarnation, a_state.incarnation());
        assert_eq!(b_view.live, 1);
    }

    /// Issue 9 item 2: gossip is input: a bad entry is refused and counted, and with it what
    /// follows it of the same origin (a record must stay exact); other origins in the same
    /// message apply.
    #[test]
    fn a_bad_entry_is_refused_and_counted_and_other_origins_apply() {
        let now = at(0);
        let mut r = state("r", now);
        let long_name = AdInput {
            name: Some("n".repeat(herald_messages::MAX_NAME_LEN + 1).into()),
            ..AdInput::public(id(2))
        };
        let bad = GossipAd::from_input(&long_name, SyncState::Active).unwrap();
        let entries = |list: Vec<GossipEntry>| -> EntryRun {
            EntryRun::whole(list.into_iter().map(Arc::new).collect())
        };
        let broken = OriginDelta {
            origin: node("o1"),
            incarnation: 1,
            from: 0,
            to: 3,
            sender_max: 3,
            floor: 0,
            entries: entries(vec![
                GossipEntry::live(1, ad(1, SyncState::Active)),
                GossipEntry::live(2, bad),
                GossipEntry::live(3, ad(3, SyncState::Active)),
            ]),
        };
        let fine = OriginDelta {
            origin: node("o2"),
            incarnation: 1,
            from: 0,
            to: 1,
            sender_max: 1,
            floor: 0,
            entries: entries(vec![GossipEntry::live(1, ad(4, SyncState::Active))]),
        };
        let unordered = OriginDelta {
            origin: node("o3"),
            incarnation: 1,
            from: 0,
            to: 2,
            sender_max: 2,
            floor: 0,
            entries: entries(vec![
                GossipEntry::live(2, ad(5, SyncState::Active)),
                GossipEntry::new(1, EntryState::Withdrawn(id(6))),
            ]),
        };
        let handled = r.on_message(
            now,
            &node("x"),
            GossipMessage::Ack2 {
                deltas: vec![broken, fine, unordered],
                bump: None,
            },
        );
        let changed: Vec<&NodeId> = handled.changes.iter().map(|c| &c.origin).collect();
        assert_eq!(changed, [&node("o2")]);
        assert_eq!(r.counters().refused_entries, 2);
        assert!(r.record(&node("o1")).is_none(), "a cut record is not shown");
        assert_eq!(
            r.position_of(&node("o1"))
                .unwrap()
                .staging
                .unwrap()
                .position,
            1
        );
    }

    /// Issue 9 item 4's hooks: ready origins are live; one the membership calls unreachable is
    /// kept and marked stale until `stale_grace`; one it does not know lives `ad_ttl`; a
    /// departed one is dropped at once and not learned again from others.
    #[test]
    fn liveness_follows_the_membership_on_this_nodes_clock() {
        let now = at(0);
        let mut nodes = cluster(&["a", "b", "c", "d"], now);
        for (name, register) in [("b", 1), ("c", 2), ("d", 3)] {
            nodes
                .get_mut(&node(name))
                .unwrap()
                .set_local(&[ad(register, SyncState::Active)], now);
        }
        for _ in 0..3 {
            settle(&mut nodes, now);
        }
        let a = nodes.get_mut(&node("a")).unwrap();
        assert_eq!(a.view(now).remote_ads, 3);
        let members = vec![
            (node("b"), MemberState::Ready),
            (node("c"), MemberState::Unreachable),
        ];
        let dropped = a.set_members(now, &members, &[node("d")]);
        assert_eq!(dropped.len(), 1);
        assert_eq!(a.liveness(&node("d"), now), Liveness::Gone);
        let view = a.view(at(100));
        assert_eq!((view.remote_ads, view.stale_ads), (2, 1));
        assert!((view.partitioned_ratio() - 0.5).abs() < 1e-9);
        assert_eq!(a.liveness(&node("c"), at(299)), Liveness::Stale);
        assert_eq!(a.liveness(&node("c"), at(300)), Liveness::Gone);
        // Unknown to the membership: live for `ad_ttl` from the last confirmation.
        a.set_members(at(10), &[], &[]);
        assert_eq!(a.liveness(&node("b"), at(39)), Liveness::Live);
        assert_eq!(a.liveness(&node("b"), at(40)), Liveness::Gone);
        // The departed member's record comes back from nobody.
        let d_record = nodes[&node("b")].record(&node("d")).unwrap().clone();
        let a = nodes.get_mut(&node("a")).unwrap();
        a.on_message(
            now,
            &node("b"),
            GossipMessage::Ack2 {
                deltas: vec![OriginDelta {
                    origin: node("d"),
                    incarnation: d_record.incarnation(),
                    from: 0,
                    to: d_record.max(),
                    sender_max: d_record.max(),
                    floor: 0,
                    entries: d_record.run_after(0),
                }],
                bump: None,
            },
        );
        assert!(a.record(&node("d")).is_none());
    }

    /// A digest is input too: one out of order (or out of its range) gets no answer and is
    /// counted.
    #[test]
    fn a_malformed_digest_gets_no_answer() {
        let now = at(0);
        let mut r = state("r", now);
        r.set_local(&[ad(1, SyncState::Active)], now);
        let entry = |name: &str| DigestEntry {
            origin: node(name),
            incarnation: 1,
            max: 1,
            staging: None,
        };
        let digests = [
            Digest {
                from: None,
                through: None,
                entries: vec![entry("b"), entry("a")],
            },
            Digest {
                from: Some(node("m")),
                through: None,
                entries: vec![entry("a")],
            },
        ];
        for digest in digests {
            let handled = r.on_message(
                now,
                &node("x"),
                GossipMessage::Syn {
                    digest: Arc::new(digest),
                    knowledge: 1,
                },
            );
            assert!(handled.replies.is_empty());
        }
        assert_eq!(r.counters().refused_frames, 2);
        let fine = Digest {
            from: None,
            through: None,
            entries: vec![entry("a"), entry("b")],
        };
        let handled = r.on_message(
            now,
            &node("x"),
            GossipMessage::Syn {
                digest: Arc::new(fine),
                knowledge: 1,
            },
        );
        assert_eq!(
            handled.replies.len(),
            1,
            "r serves its own ad and wants a and b"
        );
    }

    #[test]
    fn a_digest_larger_than_the_budget_covers_every_origin_in_turn() {
        let now = at(0);
        let names: Vec<String> = (0..40).map(|index| format!("n{index:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut nodes = cluster(&refs, now);
        for (index, name) in names.iter().enumerate() {
            nodes
                .get_mut(&node(name))
                .unwrap()
                .set_local(&[ad(index as u8, SyncState::Active)], now);
        }
        for _ in 0..20 {
            settle(&mut nodes, now);
        }
        let mut tight = config();
        tight.message_budget = 600;
        let mut probe = nodes[&node("n00")].clone();
        probe.config = tight;
        probe.digest_cache = None;
        let mut covered = BTreeSet::new();
        for _ in 0..12 {
            let digest = probe.digest();
            assert!(digest.wire_size() <= tight.message_budget);
            assert!(digest.validate().is_ok());
            covered.extend(digest.entries.iter().map(|entry| entry.origin.clone()));
        }
        assert_eq!(covered.len(), 40);
        // Everyone converged with the normal budget.
        let hashes: BTreeSet<u64> = nodes.values().map(GossipState::knowledge_hash).collect();
        assert_eq!(hashes.len(), 1);
    }

    #[test]
    fn restore_shows_stored_records_at_once_and_collects_withdrawals_later() {
        let now = at(0);
        let mut nodes = cluster(&["a", "b"], now);
        nodes
            .get_mut(&node("a"))
            .unwrap()
            .set_local(&[ad(1, SyncState::Active), ad(2, SyncState::Active)], now);
        settle(&mut nodes, now);
        nodes
            .get_mut(&node("a"))
            .unwrap()
            .set_local(&[ad(1, SyncState::Active)], now);
        for _ in 0..2 {
            settle(&mut nodes, now);
        }
        let b = &nodes[&node("b")];
        let held = b.summary(&node("a")).unwrap();
        assert_eq!((held.live, held.withdrawals), (1, 1));
        let restarted = at(5);
        let mut back =
            GossipState::restore(node("b"), config(), b.persisted(), restarted, 3).unwrap();
        assert!(back.incarnation() > b.incarnation());
        assert_eq!(back.summary(&node("a")), Some(held));
        assert_eq!(back.liveness(&node("a"), restarted), Liveness::Live);
        back.on_round(at(14));
        assert_eq!(back.summary(&node("a")).unwrap().withdrawals, 1);
        back.on_round(at(16));
        let collected = back.summary(&node("a")).unwrap();
        assert_eq!((collected.withdrawals, collected.floor), (0, held.max));
        let other = GossipState::restore(node("c"), config(), b.persisted(), restarted, 3);
        assert!(matches!(other, Err(RestoreError::OtherNode { .. })));
    }
}
