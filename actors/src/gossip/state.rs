//! `GossipState`: one node's side of the gossip protocol (see the module doc of `gossip` for
//! the protocol and its rules), pure: every method takes `now`, randomness comes from a seeded
//! generator, nothing is sent or stored here. The caller (the cluster gateway) sends what the
//! methods return, feeds member states in, and persists `persisted()`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use herald_messages::{
    Bump, Digest, DigestEntry, EntryRun, GossipAd, GossipEntry, GossipMessage, InvalidInput,
    MAX_GOSSIP_NUMBER, MemberState, NodeId, OriginDelta, PersistedGossip, PersistedRecord,
    RegisterId, StagingMark, Timestamp, check_digest_entry,
};

use super::record::{Entries, KeySet, Record, RecordSummary};

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
        };
        state.knowledge = position_hash(&state.me, incarnation, 0);
        state
    }

    /// A node restarting from its store: it moves to a new incarnation above the stored one
    /// (its last versions may not have reached the store), re-issues its stored ads under it,
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

    /// Replaces this node's public ads (the complete set; an ad not in it is withdrawn). Each
    /// changed ad gets the next version; returns how many versions were issued.
    pub fn set_local(&mut self, ads: impl IntoIterator<Item = GossipAd>, now: Timestamp) -> usize {
        let mut wanted: BTreeMap<RegisterId, GossipAd> = ads
            .into_iter()
            .map(|ad| (ad.register_id().clone(), ad))
            .collect();
        let mut changed: Vec<Arc<GossipEntry>> = Vec::new();
        let mut version = self.own.max();
        let mut withdrawn = Vec::new();
        for entry in self.own.entries() {
            match (entry.ad(), wanted.get(entry.register_id())) {
                (Some(current), Some(ad)) if current == ad => {
                    wanted.remove(entry.register_id());
                }
                (Some(_), None) => withdrawn.push(entry.register_id().clone()),
                _ => {}
            }
        }
        withdrawn.sort();
        for register_id in withdrawn {
            version += 1;
            changed.push(Arc::new(GossipEntry::withdrawn(version, register_id)));
        }
        for (_, ad) in wanted {
            version += 1;
            changed.push(Arc::new(GossipEntry::live(version, ad)));
        }
        if changed.is_empty() {
            return 0;
        }
        let issued = changed.len();
        let keys: KeySet = changed
            .iter()
            .map(|entry| entry.register_id().clone())
            .collect();
        let record = self.own.merged(&changed, &keys, version, self.own.floor());
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
            GossipMessage::Syn { digest } => {
                if digest.validate().is_err() {
                    self.counters.refused_frames += 1;
                    return handled;
                }
                if let Some(ack) = self.answer(from, &digest) {
                    handled.replies.push((from.clone(), ack));
                }
            }
            GossipMessage::Ack {
                deltas,
                wants,
                bump,
            } => {
                self.take_bump(bump);
                self.apply_all(now, &deltas, &mut handled.changes);
                let (deltas, _) = self.serve(wants.iter(), usize::MAX, 0);
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

    /// What to store: this node's own record and the records it shows of others (withdrawals
    /// and floors included). Cheap: the entries are shared, not copied.
    pub fn persisted(&self) -> PersistedGossip {
        let record = |origin: &NodeId, record: &Record| PersistedRecord {
            origin: origin.clone(),
            incarnation: record.incarnation(),
            max: record.max(),
            floor: record.floor(),
            entries: EntryRun::whole(Arc::clone(record.shared_entries())),
        };
        PersistedGossip {
            own: record(&self.me, &self.own),
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
    /// claims an older state of itself than this node holds.
    fn answer(&mut self, from: &NodeId, digest: &Digest) -> Option<GossipMessage> {
        let mut theirs: Vec<DigestEntry> = Vec::new();
        let mut wants = Vec::new();
        let mut bump = None;
        let mut bump_self = None;
        // Walk this node's origins in the digest's range beside the digest's entries.
        let mut listed = digest.entries.iter().peekable();
        let mut mine: Vec<&NodeId> = Vec::new();
        let own_covered = digest.covers(&self.me);
        for (origin, remote) in &self.remote {
            if digest.covers(origin) && (remote.visible.is_some() || remote.staging.is_some()) {
                mine.push(origin);
            }
        }
        if own_covered {
            let at = mine.partition_point(|origin| **origin < self.me);
            mine.insert(at, &self.me);
        }
        let mut mine = mine.into_iter().peekable();
        loop {
            let next = match (mine.peek(), listed.peek()) {
                (None, None) => break,
                (Some(origin), Some(entry)) if **origin < entry.origin => Side::Mine,
                (Some(origin), Some(entry)) if **origin == entry.origin => Side::Both,
                (Some(_), None) => Side::Mine,
                _ => Side::Theirs,
            };
            let (origin, entry) = match next {
                Side::Mine => (mine.next().expect("peeked"), None),
                Side::Theirs => {
                    let entry = listed.next().expect("peeked");
                    (&entry.origin, Some(entry))
                }
                Side::Both => {
                    mine.next();
                    let entry = listed.next().expect("peeked");
                    (&entry.origin, Some(entry))
                }
            };
            let claimed = entry.cloned().unwrap_or_else(|| DigestEntry {
                origin: origin.clone(),
                incarnation: 0,
                max: 0,
                staging: None,
            });
            if *origin == self.me {
                if (claimed.incarnation, claimed.max) > (self.own.incarnation(), self.own.max()) {
                    bump_self = Some(claimed.incarnation);
                }
                theirs.push(claimed);
                continue;
            }
            let Some(remote) = self.remote.get(origin) else {
                // They hold it, this node holds nothing of it.
                if entry.is_some() && !self.departed.contains(origin) {
                    wants.push(DigestEntry {
                        staging: None,
                        incarnation: 0,
                        max: 0,
                        ..claimed.clone()
                    });
                }
                continue;
            };
            if origin == from
                && let Some(record) = &remote.visible
                && (record.incarnation(), record.max()) > (claimed.incarnation, claimed.max)
            {
                bump = Some(Bump {
                    incarnation: record.incarnation(),
                    max: record.max(),
                });
            }
            if entry.is_some() && claimed.staging.is_none() && wants_from(remote, &claimed) {
                wants.extend(remote.digest_entry(origin));
            }
            theirs.push(claimed);
        }
        if let Some(seen) = bump_self {
            self.bump_to(seen);
        }
        let (deltas, used) = self.serve(theirs.iter(), self.config.message_budget, 0);
        let mut wants_size = 0;
        let room = self.config.message_budget.saturating_sub(used + ENVELOPE);
        wants.retain(|entry| {
            wants_size += entry.wire_size() + 1;
            wants_size <= room
        });
        if deltas.is_empty() && wants.is_empty() && bump.is_none() {
            return None;
        }
        Some(GossipMessage::Ack {
            deltas,
            wants,
            bump,
        })
    }

    /// Deltas for a requester whose positions are `claims`, within `budget` bytes, in random
    /// order (so that no origin starves); returns them and the bytes they take.
    fn serve<'a>(
        &mut self,
        claims: impl Iterator<Item = &'a DigestEntry>,
        budget: usize,
        used_before: usize,
    ) -> (Vec<OriginDelta>, usize) {
        let budget = budget.min(self.config.message_budget);
        let mut candidates: Vec<(&Record, NodeId, u64)> = Vec::new();
        for claim in claims {
            if check_digest_entry(claim, "wants").is_err() {
                self.counters.refused_frames += 1;
                continue;
            }
            let record = if claim.origin == self.me {
                Some(&self.own)
            } else {
                self.remote
                    .get(&claim.origin)
                    .and_then(|remote| remote.visible.as_ref())
            };
            let Some(record) = record else {
                continue;
            };
            if let Some(from) = start_for(record, claim) {
                candidates.push((record, claim.origin.clone(), from));
            }
        }
        // Shuffle (Fisher-Yates), then fill the budget.
        for index in (1..candidates.len()).rev() {
            let pick = self.rng.below(index + 1);
            candidates.swap(index, pick);
        }
        let mut used = used_before + ENVELOPE;
        let mut deltas = Vec::new();
        for (record, origin, from) in candidates {
            let frame = OriginDelta {
                origin,
                incarnation: record.incarnation(),
                from,
                to: record.max(),
                sender_max: record.max(),
                floor: record.floor(),
                entries: EntryRun::empty(),
            };
            let frame_size = frame.wire_size() + 1;
            if used + frame_size > budget && !deltas.is_empty() {
                break;
            }
            let run = record.run_after(from);
            let mut take = 0;
            let mut size = frame_size;
            for entry in run.as_slice() {
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
            let to = if take == run.len() {
                record.max()
            } else {
                run.as_slice()[take - 1].version()
            };
            let entries = if take == run.len() {
                run
            } else {
                let start = run.shared().len() - run.len();
                EntryRun::part(Arc::clone(run.shared()), start..start + take)
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
        let remote = self
            .remote
            .entry(delta.origin.clone())
            .or_insert_with(|| Remote::new(now));
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
        let skip = run.partition_point(|entry| entry.version() <= above);
        let mut take = skip;
        let mut previous = above.max(delta.from);
        let mut refused = false;
        self.keys.clear();
        while take < run.len() {
            let entry = &run[take];
            let ordered = entry.version() > previous && entry.version() <= delta.to;
            let fresh = self.keys.insert(entry.register_id().clone());
            if !(ordered && fresh && entry.validate("delta.entries").is_ok()) {
                refused = true;
                break;
            }
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
            base.merged(&run[skip..take], &self.keys, position, floor)
        } else {
            self.counters.rebuilds_started += 1;
            Record::from_run(
                delta.incarnation,
                position,
                delta.floor,
                &delta.entries,
                take,
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

/// Bytes of a message around its deltas or digest entries (kind, field names, brackets).
const ENVELOPE: usize = 64;

enum Side {
    Mine,
    Theirs,
    Both,
}

/// Whether this node wants `origin`'s state from a member that shows `claimed`: it shows a
/// later one than this node does, and one no older than this node's rebuild in progress.
fn wants_from(remote: &Remote, claimed: &DigestEntry) -> bool {
    let theirs = (claimed.incarnation, claimed.max);
    let ahead_of_shown = theirs > remote.visible_position();
    let ahead_of_rebuild = remote.staging.as_ref().is_none_or(|staging| {
        theirs >= (staging.record.incarnation(), staging.target)
            && theirs > (staging.record.incarnation(), staging.record.max())
    });
    ahead_of_shown && ahead_of_rebuild
}

/// Where a delta from `record` to a requester at `claim` starts: its position when the
/// record continues it (same incarnation, no withdrawal collected above the version the
/// requester's entries are exact as of), 0 (a rebuild) when not; `None` when the requester needs nothing from this record.
fn start_for(record: &Record, claim: &DigestEntry) -> Option<u64> {
    let mine = (record.incarnation(), record.max());
    if mine <= (claim.incarnation, claim.max) {
        return None;
    }
    let (incarnation, position, as_of) = claim.position();
    if let Some(staging) = claim.staging
        && mine < (staging.incarnation, staging.target)
    {
        return None;
    }
    if mine <= (incarnation, position) {
        return None;
    }
    if record.incarnation() == incarnation && record.floor() <= as_of {
        Some(position)
    } else {
        Some(0)
    }
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
