//! The hub's system register and peer sessions, and every decision the authority makes about
//! them, without a runtime: validating a stored register, what a publication or deprecation
//! appends, where an appended entry goes, what a peer's connect, heartbeat, sync or
//! subscription gets, which sessions expire, and who is told of a new entry.
//!
//! Every method takes `now` from the caller, and ids (sessions, transactions, histories) are
//! drawn by the caller too, so every decision is reproducible in a unit test. The store, the
//! timers and the watch of a shared store are the actor's (`super`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use herald_messages::{
    AuthorityError, BlueprintId, BlueprintNotification, BlueprintSummary, CheckpointState,
    ConnectRequest, EntryDraft, EntryKind, EntrySet, EntrySigner, Genesis, HeartbeatAck,
    HeartbeatHealth, HeartbeatRequest, HistoryId, HubPeer, HubStatus, NodeId, NodeType,
    PeerCheckpoint, PeerHeartbeatStatus, PublishRequest, RecommendedAction, RegisterDigest,
    RegisterId, RegisterState, SessionGrant, SessionId, Subscription, SyncQuery, SyncScope,
    SystemRegisterEntry, SystemRegisterView, Timestamp, Valid,
};

use super::AuthorityConfig;
use crate::ports::StoredRegister;

/// The document of the blueprint seeded at genesis: how a register is created.
pub const SEED_DOCUMENT: &str = r#"{"id":"register-creation-v1","title":"Register creation","version":1,"participants":[{"id":"requester","role":"register owner"},{"id":"hub","role":"system register authority"}],"actions":[{"id":0,"title":"Request a register","sender":"requester","fields":["name","description","advertise"]},{"id":1,"title":"Create the register","sender":"hub"}]}"#;

/// The records a first start writes: the genesis of a new history and the seeded blueprint.
pub fn genesis_records(
    hub_id: &NodeId,
    history_id: HistoryId,
    transaction_id: String,
    now: Timestamp,
) -> (Genesis, EntryDraft) {
    let genesis = Genesis {
        register_id: RegisterId::system(),
        history_id,
        created_at: now,
        created_by: hub_id.clone(),
    };
    let seed = EntryDraft {
        blueprint_id: BlueprintId::seed(),
        kind: EntryKind::Published,
        document: Bytes::from_static(SEED_DOCUMENT.as_bytes()),
        published_at: now,
        published_by: hub_id.to_string(),
        transaction_id,
        metadata: BTreeMap::new(),
    };
    (genesis, seed)
}

/// `entry` signed by `signer` as an entry of `history`; unchanged (unsigned) without a signer.
pub fn sign_entry(
    signer: Option<&EntrySigner>,
    history: &HistoryId,
    mut entry: SystemRegisterEntry,
) -> SystemRegisterEntry {
    entry.signature = signer.map(|signer| signer.sign(history, &entry));
    entry
}

/// Where an entry the store appended went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// It is the next version: taken in, subscribers told (those too slow to take it were
    /// dropped).
    Taken {
        entry: Arc<SystemRegisterEntry>,
        dropped: Vec<NodeId>,
    },
    /// Already in the register (a catch-up took it in first).
    Known(Arc<SystemRegisterEntry>),
    /// Versions before it are missing here (other hubs appended them): catch up, then offer it
    /// again.
    Gap { missing_from: u64 },
}

/// What a catch-up took in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaughtUp {
    pub taken: usize,
    /// The first entry that did not match its checksum: nothing from it on was taken, and the
    /// register is blocked at the version before it until a catch-up reads it sound.
    pub tampered: Option<u64>,
    /// A catch-up read the entry that blocked the register sound: it serves everything again.
    pub unblocked: bool,
    /// Subscribers too slow to take the notifications (dropped).
    pub dropped: Vec<NodeId>,
}

/// Heartbeats overdue at which a session's health is critical: a peer with the default limit
/// (2 misses) fails over then.
const CRITICAL_MISSES: u32 = 2;

/// The authority's book: the register, the sessions of connected peers, their subscriptions.
#[derive(Debug)]
pub struct AuthorityState {
    hub_id: NodeId,
    config: AuthorityConfig,
    register: Register,
    sessions: HashMap<NodeId, PeerSession>,
    subscribers: Vec<Subscriber>,
    started_at: Timestamp,
    /// The block (if any) comes from the store's state, not from an entry: a clean store check
    /// ends it.
    store_block: bool,
    /// The highest version a shared store announced (appended by any hub), read or not.
    announced: u64,
}

/// The register in memory.
#[derive(Debug, Default)]
struct Register {
    state: Option<RegisterState>,
    genesis: Option<Genesis>,
    /// Every entry, ordered by version.
    log: Vec<Arc<SystemRegisterEntry>>,
    /// The latest entry of each blueprint.
    latest: BTreeMap<BlueprintId, Arc<SystemRegisterEntry>>,
    /// The register's digest at each version of `log` (same positions).
    digests: Vec<RegisterDigest>,
}

#[derive(Debug, Clone)]
struct PeerSession {
    session_id: SessionId,
    address: String,
    connected_at: Timestamp,
    last_seen_at: Timestamp,
    last_heartbeat_at: Option<Timestamp>,
    /// The version and digest the peer last reported (connect or heartbeat).
    last_sync_version: u64,
    last_digest: Option<RegisterDigest>,
    last_sync_at: Option<Timestamp>,
    heartbeats: u64,
    /// Heartbeats missed in the gaps between those received.
    missed_in_gaps: u64,
    /// Sum of the heartbeats' transit times (send time on the peer's clock to arrival).
    latency_total_ms: u64,
}

impl PeerSession {
    /// Whole heartbeat intervals past `since` after half an interval of grace: how many
    /// heartbeats were due and did not come.
    fn overdue(since: Timestamp, now: Timestamp, interval: std::time::Duration) -> u64 {
        let interval_ms = interval.as_millis().max(1);
        let late_ms = now.since(since).as_millis().saturating_sub(interval_ms / 2);
        u64::try_from(late_ms / interval_ms).unwrap_or(u64::MAX)
    }

    fn last_contact(&self) -> Timestamp {
        self.last_heartbeat_at.unwrap_or(self.connected_at)
    }
}

#[derive(Debug)]
struct Subscriber {
    peer_id: NodeId,
    session_id: SessionId,
    queue: mpsc::Sender<BlueprintNotification>,
    sequence: u64,
}

impl Register {
    fn version(&self) -> u64 {
        self.log.last().map_or(0, |entry| entry.version)
    }

    /// Takes a stored register after checking it: genesis of the system register, versions
    /// strictly increasing and consecutive from 1 (the store allocates them so: a gap is a lost
    /// entry), every checksum right.
    fn validated(stored: StoredRegister) -> Result<Register, String> {
        if stored.genesis.register_id != RegisterId::system() {
            return Err(format!(
                "genesis names register {}, not the system register",
                stored.genesis.register_id
            ));
        }
        let mut register = Register {
            state: Some(RegisterState::Ready),
            genesis: Some(stored.genesis),
            ..Register::default()
        };
        let mut first_gap = None;
        for entry in stored.entries {
            if entry.version <= register.version() {
                return Err(format!(
                    "version {} follows version {}: versions must strictly increase",
                    entry.version,
                    register.version()
                ));
            }
            if first_gap.is_none() && entry.version != register.version() + 1 {
                first_gap = Some((register.version() + 1, entry.version));
            }
            if !entry.checksum_holds() {
                return Err(format!(
                    "entry {} (blueprint {}) does not match its checksum {}",
                    entry.version, entry.blueprint_id, entry.checksum
                ));
            }
            register.push(Arc::new(entry));
        }
        if register.log.is_empty() {
            return Err("the register holds no entry: the seeded blueprint is missing".into());
        }
        if let Some((missing, next)) = first_gap {
            return Err(format!(
                "entry {missing} is missing (the next stored entry is {next}): versions must be \
                 consecutive from 1"
            ));
        }
        Ok(register)
    }

    fn push(&mut self, entry: Arc<SystemRegisterEntry>) {
        let digest = self.digest().then(&entry);
        self.latest
            .insert(entry.blueprint_id.clone(), Arc::clone(&entry));
        self.log.push(entry);
        self.digests.push(digest);
    }

    /// The digest at the head (of the empty log before any entry).
    fn digest(&self) -> RegisterDigest {
        self.digests
            .last()
            .copied()
            .unwrap_or(RegisterDigest::EMPTY)
    }

    /// The digest at `version`, if the log reaches it.
    fn digest_at(&self, version: u64) -> Option<RegisterDigest> {
        if version == 0 {
            return Some(RegisterDigest::EMPTY);
        }
        let index = self
            .log
            .binary_search_by_key(&version, |entry| entry.version)
            .ok()?;
        self.digests.get(index).copied()
    }

    /// Whether a peer at `version` with `digest` (if it sent one) has diverged from this log:
    /// it is ahead of it, or its digest differs at its version. `None` when it follows.
    fn divergence(&self, version: u64, digest: Option<RegisterDigest>) -> Option<String> {
        divergence(self.version(), |at| self.digest_at(at), version, digest)
    }

    /// Each entry's version with the digest at it, in order.
    fn versioned_digests(&self) -> Vec<(u64, RegisterDigest)> {
        self.log
            .iter()
            .map(|entry| entry.version)
            .zip(self.digests.iter().copied())
            .collect()
    }

    /// The entries of a sync, with the digest at each entry's version.
    fn entries_with_digests(
        &self,
        scope: &SyncScope,
    ) -> (Vec<Arc<SystemRegisterEntry>>, Vec<RegisterDigest>) {
        let entries = self.entries(scope);
        let digests = entries
            .iter()
            .map(|entry| {
                self.digest_at(entry.version)
                    .unwrap_or(RegisterDigest::EMPTY)
            })
            .collect();
        (entries, digests)
    }

    fn entries(&self, scope: &SyncScope) -> Vec<Arc<SystemRegisterEntry>> {
        match scope {
            // The latest entry of every blueprint, deprecations included: a peer that syncs in
            // full must show the same register as one that followed incrementally (the original
            // contract streamed active entries only, and such peers disagreed).
            SyncScope::Full => {
                let mut latest: Vec<_> = self.latest.values().cloned().collect();
                latest.sort_by_key(|entry| entry.version);
                latest
            }
            SyncScope::After(version) => {
                let start = self.log.partition_point(|entry| entry.version <= *version);
                self.log[start..].to_vec()
            }
        }
    }

    fn entry_at(&self, version: u64) -> Option<&Arc<SystemRegisterEntry>> {
        let index = self
            .log
            .binary_search_by_key(&version, |entry| entry.version)
            .ok()?;
        self.log.get(index)
    }
}

/// Whether a peer at `version` with `digest` (if it sent one) has diverged from a log whose
/// head is `head` and whose digest at a version is `digest_at`: it is ahead of it, or its
/// digest differs at its version. `None` when it follows.
fn divergence(
    head: u64,
    digest_at: impl Fn(u64) -> Option<RegisterDigest>,
    version: u64,
    digest: Option<RegisterDigest>,
) -> Option<String> {
    if version > head {
        return Some(format!(
            "the peer is at version {version}, ahead of this hub's {head} under the same \
             history (the hub lost entries, or was restored from an older copy)"
        ));
    }
    let theirs = digest?;
    let ours = digest_at(version)?;
    if theirs != ours {
        return Some(format!(
            "the peer's register differs from this hub's at version {version} \
             (digest {theirs}, the hub's {ours})"
        ));
    }
    None
}

/// Whether a register in `state` serves requests, and if not why. A blocked register is
/// served up to its last sound version.
fn serving(state: Option<&RegisterState>) -> Result<(), AuthorityError> {
    match state {
        Some(RegisterState::Ready | RegisterState::Blocked { .. }) => Ok(()),
        Some(RegisterState::Corrupt(reason)) => Err(AuthorityError::NotReady(format!(
            "the system register is corrupt: {reason}"
        ))),
        _ => Err(AuthorityError::NotReady(
            "still loading the system register".into(),
        )),
    }
}

/// What a heartbeat is answered from: the register's head, its digests and the sessions, as
/// the authority last published them (`HubView`). The hub's gRPC server answers heartbeats
/// from it without waiting for a publication in flight; the authority records the heartbeat
/// afterwards (`record_heartbeat`). Immutable: the authority publishes a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatBasis {
    hub_id: NodeId,
    state: Option<RegisterState>,
    history_id: Option<HistoryId>,
    /// Each entry's version with the register's digest at it, in order.
    digests: Arc<Vec<(u64, RegisterDigest)>>,
    /// The current session of each connected peer.
    sessions: Arc<HashMap<NodeId, SessionId>>,
}

impl HeartbeatBasis {
    /// The basis of a hub whose register is not loaded: every heartbeat is `NotReady`.
    pub fn loading(hub_id: NodeId) -> Self {
        Self {
            hub_id,
            state: None,
            history_id: None,
            digests: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// The register's head version (0 before the first entry).
    pub fn version(&self) -> u64 {
        self.digests.last().map_or(0, |(version, _)| *version)
    }

    /// The answer to `beat` at `now`: `FullSync` when the peer's replica diverged (it is ahead
    /// of the register, or its digest differs at its version; a peer that sends no digest
    /// predates `FullSync` and gets `Sync`), `Sync` when it is behind, else `None`. Refused
    /// while the register is not served, for a peer without a session (`NotConnected`) and
    /// for another session than the peer's current one (`UnknownSession`).
    pub fn answer(
        &self,
        beat: &HeartbeatRequest,
        now: Timestamp,
    ) -> Result<HeartbeatAck, AuthorityError> {
        serving(self.state.as_ref())?;
        match self.sessions.get(&beat.peer_id) {
            None => return Err(AuthorityError::NotConnected(beat.peer_id.clone())),
            Some(current) if *current != beat.session_id => {
                return Err(AuthorityError::UnknownSession {
                    peer: beat.peer_id.clone(),
                    session: beat.session_id.clone(),
                });
            }
            Some(_) => {}
        }
        let version = self.version();
        let digest_at = |at: u64| {
            if at == 0 {
                return Some(RegisterDigest::EMPTY);
            }
            let index = self
                .digests
                .binary_search_by_key(&at, |(version, _)| *version)
                .ok()?;
            self.digests.get(index).map(|(_, digest)| *digest)
        };
        let diverged = divergence(
            version,
            digest_at,
            beat.last_sync_version,
            beat.last_sync_digest,
        );
        let action = match diverged {
            Some(_) if beat.last_sync_digest.is_some() => RecommendedAction::FullSync,
            Some(_) => RecommendedAction::Sync,
            None if beat.last_sync_version < version => RecommendedAction::Sync,
            None => RecommendedAction::None,
        };
        let digest = self
            .digests
            .last()
            .map_or(RegisterDigest::EMPTY, |(_, digest)| *digest);
        Ok(HeartbeatAck {
            hub_id: self.hub_id.clone(),
            history_id: self
                .history_id
                .clone()
                .expect("a served register has a genesis"),
            version,
            digest: Some(digest),
            action,
            received_at: now,
        })
    }
}

impl AuthorityState {
    pub fn new(hub_id: NodeId, config: AuthorityConfig, started_at: Timestamp) -> Self {
        Self {
            hub_id,
            config,
            register: Register::default(),
            sessions: HashMap::new(),
            subscribers: Vec::new(),
            started_at,
            store_block: false,
            announced: 0,
        }
    }

    pub fn hub_id(&self) -> &NodeId {
        &self.hub_id
    }

    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    /// The register's version: its latest entry's (0 before it is loaded).
    pub fn version(&self) -> u64 {
        self.register.version()
    }

    /// Whether the register is loaded and served (in full, or up to a blocked version).
    pub fn is_serving(&self) -> bool {
        matches!(
            self.register.state,
            Some(RegisterState::Ready | RegisterState::Blocked { .. })
        )
    }

    /// Whether a catch-up stopped at an entry that fails its checksum.
    pub fn is_blocked(&self) -> bool {
        matches!(self.register.state, Some(RegisterState::Blocked { .. }))
    }

    /// The register's digest at its head.
    pub fn digest(&self) -> RegisterDigest {
        self.register.digest()
    }

    pub fn history_id(&self) -> Option<&HistoryId> {
        self.register.genesis.as_ref().map(|g| &g.history_id)
    }

    pub fn blueprints(&self) -> usize {
        self.register.latest.len()
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// The latest entry of a blueprint.
    pub fn latest(&self, id: &BlueprintId) -> Option<Arc<SystemRegisterEntry>> {
        self.register.latest.get(id).cloned()
    }

    /// The register is being read (or created).
    pub fn set_loading(&mut self) {
        self.register.state = Some(RegisterState::Loading);
    }

    /// Takes the stored register if it validates; otherwise refuses to serve it and returns
    /// why.
    pub fn install(&mut self, stored: StoredRegister) -> Result<(), String> {
        match Register::validated(stored) {
            Ok(register) => {
                self.register = register;
                Ok(())
            }
            Err(problem) => {
                self.refuse(problem.clone());
                Err(problem)
            }
        }
    }

    /// The stored register cannot be served (it failed validation or cannot be read).
    pub fn refuse(&mut self, reason: String) {
        self.register.state = Some(RegisterState::Corrupt(reason));
    }

    /// Whether requests can be served, and if not why. A blocked register is served up to its
    /// last sound version.
    pub fn ready(&self) -> Result<(), AuthorityError> {
        serving(self.register.state.as_ref())
    }

    /// Whether entries may be appended: never past an entry this hub cannot take (it would
    /// leave a gap).
    pub fn writable(&self) -> Result<(), AuthorityError> {
        self.ready()?;
        if let Some(RegisterState::Blocked { last_good, reason }) = &self.register.state {
            return Err(AuthorityError::Unavailable(format!(
                "the register is blocked after version {last_good}: {reason}"
            )));
        }
        Ok(())
    }

    /// The entry a publication appends: an update when the blueprint is active, else a
    /// publication (a deprecated blueprint published again comes back).
    pub fn publish_draft(
        &self,
        request: Valid<PublishRequest>,
        transaction_id: String,
        now: Timestamp,
    ) -> Result<EntryDraft, AuthorityError> {
        self.writable()?;
        let request = request.into_inner();
        let kind = match self.register.latest.get(&request.blueprint_id) {
            Some(current) if current.is_active => EntryKind::Updated,
            _ => EntryKind::Published,
        };
        Ok(EntryDraft {
            blueprint_id: request.blueprint_id,
            kind,
            document: request.document,
            published_at: now,
            published_by: request.published_by,
            transaction_id,
            metadata: request.metadata,
        })
    }

    /// The entry a deprecation appends: the blueprint's last document, inactive.
    pub fn deprecate_draft(
        &self,
        blueprint_id: BlueprintId,
        by: String,
        transaction_id: String,
        now: Timestamp,
    ) -> Result<EntryDraft, AuthorityError> {
        self.writable()?;
        let current = self
            .register
            .latest
            .get(&blueprint_id)
            .ok_or_else(|| AuthorityError::NotFound(blueprint_id.clone()))?;
        if !current.is_active {
            return Err(AuthorityError::AlreadyDeprecated(blueprint_id));
        }
        Ok(EntryDraft {
            blueprint_id,
            kind: EntryKind::Deprecated,
            document: current.document.clone(),
            published_at: now,
            published_by: by,
            transaction_id,
            metadata: current.metadata.clone(),
        })
    }

    /// The entry a draft becomes: at the version after the one this hub holds (appends are
    /// exact: the store writes it there or answers `Raced`), signed when the hub has a key.
    pub fn entry_for(
        &self,
        draft: EntryDraft,
        signer: Option<&EntrySigner>,
    ) -> SystemRegisterEntry {
        let entry = draft.at_version(self.register.version() + 1);
        match self.history_id() {
            Some(history) => sign_entry(signer, history, entry),
            None => entry,
        }
    }

    /// Places an entry the store appended (this hub's own append).
    pub fn appended(&mut self, entry: SystemRegisterEntry) -> Appended {
        let version = self.register.version();
        if entry.version > version + 1 {
            return Appended::Gap {
                missing_from: version + 1,
            };
        }
        if entry.version <= version {
            let known = self
                .register
                .entry_at(entry.version)
                .cloned()
                .unwrap_or_else(|| Arc::new(entry));
            return Appended::Known(known);
        }
        let entry = Arc::new(entry);
        let dropped = self.take(Arc::clone(&entry));
        Appended::Taken { entry, dropped }
    }

    /// Takes in entries read from a shared store (appended by other hubs), in order. Entries
    /// already held are skipped. An entry that does not match its checksum (or a version
    /// missing before the next one) stops the catch-up: the register is served up to the
    /// version before it and blocked there (integrity over availability: a gap is never
    /// served) until a later catch-up reads it sound.
    pub fn catch_up(&mut self, entries: Vec<SystemRegisterEntry>) -> CaughtUp {
        let mut caught = CaughtUp::default();
        for entry in entries {
            let head = self.register.version();
            if entry.version <= head {
                continue;
            }
            if entry.version != head + 1 {
                self.block(format!(
                    "the store holds version {} but not version {}",
                    entry.version,
                    head + 1
                ));
                caught.tampered = Some(head + 1);
                return caught;
            }
            if !entry.checksum_holds() {
                self.block(format!(
                    "entry {} (blueprint {}) does not match its checksum {}",
                    entry.version, entry.blueprint_id, entry.checksum
                ));
                caught.tampered = Some(entry.version);
                return caught;
            }
            if self.is_blocked() && !self.store_block {
                self.register.state = Some(RegisterState::Ready);
                caught.unblocked = true;
            }
            let dropped = self.take(Arc::new(entry));
            caught.dropped.extend(dropped);
            caught.taken += 1;
        }
        caught
    }

    /// The shared store cannot be reconciled with this register (it holds another history, or
    /// another entry at a version this hub holds): served as it is, appends refused, until a
    /// check finds the store in line again (`store_in_line`).
    pub fn block_on_store(&mut self, reason: String) {
        self.block(reason);
        self.store_block = true;
    }

    /// A check found the store holding this register's history, up to at least its version:
    /// a block the store caused ends. Returns whether one did.
    pub fn store_in_line(&mut self) -> bool {
        if !(self.store_block && self.is_blocked()) {
            return false;
        }
        self.store_block = false;
        self.register.state = Some(RegisterState::Ready);
        true
    }

    /// A shared store announced that some hub appended up to `version`.
    pub fn announced(&mut self, version: u64) {
        self.announced = self.announced.max(version);
    }

    /// The lowest head a store may have for this hub to append: every version it holds, and
    /// every version it heard announced (a store that lost an entry this hub never read must
    /// get it back from the hub that holds it before anyone appends: no version is issued
    /// twice).
    pub fn append_floor(&self) -> u64 {
        self.register.version().max(self.announced)
    }

    /// The genesis record, once the register is loaded.
    pub fn genesis(&self) -> Option<&Genesis> {
        self.register.genesis.as_ref()
    }

    /// Every entry above `version`, in order: what a store that lost them needs written back.
    pub fn entries_above(&self, version: u64) -> Vec<Arc<SystemRegisterEntry>> {
        self.register.entries(&SyncScope::After(version))
    }

    fn block(&mut self, reason: String) {
        self.register.state = Some(RegisterState::Blocked {
            last_good: self.register.version(),
            reason,
        });
    }

    /// Adds an entry to the register and tells every subscriber through its queue; a
    /// subscriber whose queue is full is dropped (it falls behind; it will resubscribe and
    /// catch up). Returns the peers of the subscriptions dropped as too slow.
    fn take(&mut self, entry: Arc<SystemRegisterEntry>) -> Vec<NodeId> {
        self.register.push(Arc::clone(&entry));
        let history_id = self
            .history_id()
            .cloned()
            .expect("a ready register has a genesis");
        let mut slow = Vec::new();
        self.subscribers.retain_mut(|subscriber| {
            subscriber.sequence += 1;
            let notification = BlueprintNotification {
                history_id: history_id.clone(),
                blueprint_id: entry.blueprint_id.clone(),
                version: entry.version,
                kind: entry.kind,
                published_at: entry.published_at,
                published_by: entry.published_by.clone(),
                checksum: entry.checksum.clone(),
                document_bytes: entry.document.len(),
                sequence: subscriber.sequence,
            };
            match subscriber.queue.try_send(notification) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slow.push(subscriber.peer_id.clone());
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        slow
    }

    pub fn connect(
        &mut self,
        request: ConnectRequest,
        session_id: SessionId,
        now: Timestamp,
    ) -> Result<(SessionGrant, bool), AuthorityError> {
        if request.node_type == NodeType::Hub {
            return Err(AuthorityError::HubCaller(request.peer_id));
        }
        self.ready()?;
        self.drop_subscriptions_of(&request.peer_id);
        let session = PeerSession {
            session_id: session_id.clone(),
            address: request.address,
            connected_at: now,
            last_seen_at: now,
            last_heartbeat_at: None,
            last_sync_version: request.last_known_version,
            last_digest: request.last_known_digest,
            last_sync_at: None,
            heartbeats: 0,
            missed_in_gaps: 0,
            latency_total_ms: 0,
        };
        let replaced = self
            .sessions
            .insert(request.peer_id.clone(), session)
            .is_some();
        let grant = SessionGrant {
            session_id,
            hub_id: self.hub_id.clone(),
            history_id: self.expect_history(),
            version: self.register.version(),
            digest: Some(self.register.digest()),
            connected_at: now,
            heartbeat_interval: self.config.heartbeat_interval,
            heartbeat_timeout: self.config.heartbeat_timeout,
            sync_interval: self.config.sync_interval,
        };
        Ok((grant, replaced))
    }

    pub fn disconnect(
        &mut self,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<(), AuthorityError> {
        self.session_mut(peer_id, session_id)?;
        self.sessions.remove(peer_id);
        self.drop_subscriptions_of(peer_id);
        Ok(())
    }

    /// Records a heartbeat and advises the peer (see `HeartbeatBasis::answer`, the one
    /// place the advice is decided).
    pub fn heartbeat(
        &mut self,
        beat: &HeartbeatRequest,
        now: Timestamp,
    ) -> Result<HeartbeatAck, AuthorityError> {
        let ack = self.heartbeat_basis().answer(beat, now)?;
        self.record_heartbeat(beat, now);
        Ok(ack)
    }

    /// Records a heartbeat answered from a `HeartbeatBasis` at `now`: the session's counts,
    /// gaps, latency and last contact. A heartbeat of a session that ended meanwhile changes
    /// nothing.
    pub fn record_heartbeat(&mut self, beat: &HeartbeatRequest, now: Timestamp) {
        let interval = self.config.heartbeat_interval;
        let Ok(session) = self.session_mut(&beat.peer_id, &beat.session_id) else {
            return;
        };
        let gap = PeerSession::overdue(session.last_contact(), now, interval);
        session.missed_in_gaps = session.missed_in_gaps.saturating_add(gap);
        session.heartbeats += 1;
        let transit = u64::try_from(now.since(beat.sent_at).as_millis()).unwrap_or(u64::MAX);
        session.latency_total_ms = session.latency_total_ms.saturating_add(transit);
        session.last_seen_at = now.max(session.last_seen_at);
        session.last_heartbeat_at = Some(now);
        session.last_sync_version = beat.last_sync_version;
        session.last_digest = beat.last_sync_digest;
    }

    /// What heartbeats are answered from, now.
    pub fn heartbeat_basis(&self) -> HeartbeatBasis {
        HeartbeatBasis {
            hub_id: self.hub_id.clone(),
            state: self.register.state.clone(),
            history_id: self.history_id().cloned(),
            digests: Arc::new(self.register.versioned_digests()),
            sessions: Arc::new(
                self.sessions
                    .iter()
                    .map(|(peer, session)| (peer.clone(), session.session_id.clone()))
                    .collect(),
            ),
        }
    }

    /// The latest entry of every blueprint.
    pub fn latest_entries(&self) -> BTreeMap<BlueprintId, Arc<SystemRegisterEntry>> {
        self.register.latest.clone()
    }

    /// The entries of a peer's sync, for its current session. An incremental sync is refused
    /// (`NeedsFullSync`) when the peer's checkpoint belongs to another history or diverged from
    /// this register (it is ahead of it, or its digest differs at its version).
    pub fn entry_set(
        &mut self,
        query: &SyncQuery,
        now: Timestamp,
    ) -> Result<EntrySet, AuthorityError> {
        self.ready()?;
        let history_id = self.expect_history();
        self.session(&query.peer_id, &query.session_id)?;
        if let SyncScope::After(version) = query.scope {
            if let Some(theirs) = query
                .history_id
                .as_ref()
                .filter(|theirs| **theirs != history_id)
            {
                return Err(AuthorityError::NeedsFullSync(format!(
                    "the peer's history {theirs} is not this hub's history {history_id}"
                )));
            }
            if let Some(reason) = self.register.divergence(version, query.digest) {
                return Err(AuthorityError::NeedsFullSync(reason));
            }
        }
        let session = self.session_mut(&query.peer_id, &query.session_id)?;
        session.last_seen_at = now;
        session.last_sync_at = Some(now);
        let (entries, digests) = self.register.entries_with_digests(&query.scope);
        Ok(EntrySet {
            history_id,
            version: self.register.version(),
            entries,
            digests,
        })
    }

    /// What this hub knows of a session's heartbeats at `now`.
    pub fn heartbeat_status(
        &self,
        peer_id: &NodeId,
        session_id: &SessionId,
        now: Timestamp,
    ) -> Result<PeerHeartbeatStatus, AuthorityError> {
        let session = self.session(peer_id, session_id)?;
        let overdue =
            PeerSession::overdue(session.last_contact(), now, self.config.heartbeat_interval);
        let missed = u32::try_from(overdue).unwrap_or(u32::MAX);
        let health = match missed {
            0 => HeartbeatHealth::Healthy,
            m if m < CRITICAL_MISSES => HeartbeatHealth::Warning,
            _ => HeartbeatHealth::Critical,
        };
        let average_latency_ms = (session.heartbeats > 0)
            .then(|| session.latency_total_ms as f64 / session.heartbeats as f64);
        Ok(PeerHeartbeatStatus {
            peer_id: peer_id.clone(),
            session_id: session_id.clone(),
            last_heartbeat_at: session.last_heartbeat_at,
            missed_heartbeats: missed,
            health,
            total_received: session.heartbeats,
            total_missed: session.missed_in_gaps.saturating_add(overdue),
            average_latency_ms,
            last_sync_version: session.last_sync_version,
            version_lag: self
                .register
                .version()
                .saturating_sub(session.last_sync_version),
        })
    }

    /// Where a session's peer stands against the register.
    pub fn checkpoint(
        &self,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<PeerCheckpoint, AuthorityError> {
        self.ready()?;
        let session = self.session(peer_id, session_id)?;
        let version = self.register.version();
        let diverged = self
            .register
            .divergence(session.last_sync_version, session.last_digest)
            .is_some();
        let status = if diverged {
            CheckpointState::Diverged
        } else if session.last_sync_version < version {
            CheckpointState::Behind
        } else {
            CheckpointState::UpToDate
        };
        let last_activity = session.last_sync_at.unwrap_or(session.connected_at);
        Ok(PeerCheckpoint {
            peer_id: peer_id.clone(),
            hub_id: self.hub_id.clone(),
            history_id: self.expect_history(),
            version,
            peer_version: session.last_sync_version,
            total_blueprints: self.register.latest.len(),
            last_sync_at: session.last_sync_at,
            next_sync_due: last_activity.saturating_add(self.config.sync_interval),
            status,
        })
    }

    pub fn subscribe(
        &mut self,
        peer_id: NodeId,
        session_id: SessionId,
    ) -> Result<Subscription, AuthorityError> {
        self.ready()?;
        self.session_mut(&peer_id, &session_id)?;
        let (queue, notifications) = mpsc::channel(self.config.subscriber_queue.max(1));
        self.subscribers.push(Subscriber {
            peer_id,
            session_id,
            queue,
            sequence: 0,
        });
        Ok(Subscription { notifications })
    }

    /// Forgets peers silent for longer than `session_expiry`, and subscriptions whose session
    /// is gone. Returns the peers forgotten.
    pub fn sweep(&mut self, now: Timestamp) -> Vec<NodeId> {
        let expiry = self.config.session_expiry;
        let silent: Vec<NodeId> = self
            .sessions
            .iter()
            .filter(|(_, session)| now.since(session.last_seen_at) > expiry)
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in &silent {
            self.sessions.remove(peer);
        }
        let sessions = &self.sessions;
        self.subscribers.retain(|subscriber| {
            sessions
                .get(&subscriber.peer_id)
                .is_some_and(|session| session.session_id == subscriber.session_id)
                && !subscriber.queue.is_closed()
        });
        silent
    }

    pub fn view(&self) -> SystemRegisterView {
        let mut blueprints: Vec<BlueprintSummary> = self
            .register
            .latest
            .values()
            .map(|entry| BlueprintSummary {
                blueprint_id: entry.blueprint_id.clone(),
                version: entry.version,
                is_active: entry.is_active,
                checksum: entry.checksum.clone(),
            })
            .collect();
        blueprints.sort_by(|a, b| a.blueprint_id.cmp(&b.blueprint_id));
        SystemRegisterView {
            history_id: self.history_id().cloned(),
            version: self.register.version(),
            total_blueprints: blueprints.len(),
            active_blueprints: blueprints.iter().filter(|b| b.is_active).count(),
            blueprints,
        }
    }

    pub fn status(&self) -> HubStatus {
        HubStatus {
            hub_id: self.hub_id.clone(),
            state: self
                .register
                .state
                .clone()
                .unwrap_or(RegisterState::Loading),
            history_id: self.history_id().cloned(),
            version: self.register.version(),
            total_blueprints: self.register.latest.len(),
            active_blueprints: self
                .register
                .latest
                .values()
                .filter(|e| e.is_active)
                .count(),
            active_peers: self.sessions.len(),
            last_published_at: self.register.log.last().map(|entry| entry.published_at),
            started_at: self.started_at,
        }
    }

    pub fn peers(&self) -> Vec<HubPeer> {
        let mut peers: Vec<HubPeer> = self
            .sessions
            .iter()
            .map(|(peer_id, session)| HubPeer {
                peer_id: peer_id.clone(),
                session_id: session.session_id.clone(),
                address: session.address.clone(),
                connected_at: session.connected_at,
                last_heartbeat_at: session.last_heartbeat_at,
                last_sync_version: session.last_sync_version,
                last_sync_at: session.last_sync_at,
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        peers
    }

    /// The peer's session if it is `session_id`; `UnknownSession` otherwise.
    fn session(
        &self,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<&PeerSession, AuthorityError> {
        match self.sessions.get(peer_id) {
            Some(session) if session.session_id == *session_id => Ok(session),
            _ => Err(AuthorityError::UnknownSession {
                peer: peer_id.clone(),
                session: session_id.clone(),
            }),
        }
    }

    fn session_mut(
        &mut self,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<&mut PeerSession, AuthorityError> {
        match self.sessions.get_mut(peer_id) {
            Some(session) if session.session_id == *session_id => Ok(session),
            _ => Err(AuthorityError::UnknownSession {
                peer: peer_id.clone(),
                session: session_id.clone(),
            }),
        }
    }

    fn drop_subscriptions_of(&mut self, peer_id: &NodeId) {
        self.subscribers
            .retain(|subscriber| subscriber.peer_id != *peer_id);
    }

    fn expect_history(&self) -> HistoryId {
        self.history_id()
            .cloned()
            .expect("a ready register has a genesis")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_messages::Validate;

    use super::*;

    const T0: Timestamp = Timestamp::from_unix_millis(1_000_000);

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    fn draft(blueprint: &str, document: &str) -> EntryDraft {
        EntryDraft {
            blueprint_id: BlueprintId::parse(blueprint).unwrap(),
            kind: EntryKind::Published,
            document: Bytes::from(document.to_owned()),
            published_at: Timestamp::EPOCH,
            published_by: "hub".into(),
            transaction_id: "t".into(),
            metadata: BTreeMap::new(),
        }
    }

    fn entry(version: u64, blueprint: &str, document: &str) -> SystemRegisterEntry {
        draft(blueprint, document).at_version(version)
    }

    fn stored(entries: Vec<SystemRegisterEntry>) -> StoredRegister {
        StoredRegister {
            genesis: Genesis {
                register_id: RegisterId::system(),
                history_id: HistoryId::from_bytes([7; 16]),
                created_at: Timestamp::EPOCH,
                created_by: node("hub-1"),
            },
            entries,
        }
    }

    fn config() -> AuthorityConfig {
        AuthorityConfig {
            subscriber_queue: 2,
            ..AuthorityConfig::default()
        }
    }

    /// A ready hub holding entries 1 (`a`) and 2 (`b`).
    fn ready_hub() -> AuthorityState {
        let mut hub = AuthorityState::new(node("hub-1"), config(), T0);
        hub.install(stored(vec![entry(1, "a", "{}"), entry(2, "b", "[]")]))
            .unwrap();
        hub
    }

    fn connect(hub: &mut AuthorityState, peer: &str, session: &str) -> SessionGrant {
        let request = ConnectRequest {
            peer_id: node(peer),
            node_type: NodeType::Peer,
            address: "10.0.0.1:5000".into(),
            last_known_version: 0,
            last_known_digest: None,
        };
        hub.connect(request, SessionId::parse(session).unwrap(), T0)
            .unwrap()
            .0
    }

    fn beat(peer: &str, session: &str, version: u64) -> HeartbeatRequest {
        HeartbeatRequest {
            peer_id: node(peer),
            session_id: SessionId::parse(session).unwrap(),
            sequence: 1,
            last_sync_version: version,
            last_sync_digest: None,
            sent_at: T0,
        }
    }

    fn query(peer: &str, session: &str, scope: SyncScope) -> SyncQuery {
        SyncQuery {
            peer_id: node(peer),
            session_id: SessionId::parse(session).unwrap(),
            scope,
            history_id: None,
            digest: None,
        }
    }

    /// The entries `peer-s` (connected as session `s`) gets for `scope`.
    fn served(hub: &mut AuthorityState, scope: SyncScope) -> Result<EntrySet, AuthorityError> {
        if !hub.sessions.contains_key(&node("peer-s")) {
            connect(hub, "peer-s", "s");
        }
        hub.entry_set(&query("peer-s", "s", scope), T0)
    }

    fn versions(set: &EntrySet) -> Vec<u64> {
        set.entries.iter().map(|e| e.version).collect()
    }

    fn publish(blueprint: &str, document: &str) -> Valid<PublishRequest> {
        PublishRequest {
            blueprint_id: BlueprintId::parse(blueprint).unwrap(),
            document: Bytes::from(document.to_owned()),
            published_by: "admin".into(),
            metadata: BTreeMap::new(),
        }
        .validated()
        .unwrap()
    }

    #[test]
    fn a_sound_register_validates() {
        let mut hub = ready_hub();
        assert!(hub.is_serving());
        assert_eq!(hub.version(), 2);
        assert_eq!(
            served(&mut hub, SyncScope::After(1)).unwrap().entries.len(),
            1
        );
        assert_eq!(served(&mut hub, SyncScope::Full).unwrap().entries.len(), 2);
    }

    #[test]
    fn every_corruption_is_detected_and_refused() {
        let mut tampered = entry(2, "b", "[]");
        tampered.document = Bytes::from_static(b"[1]");
        let mut wrong_genesis = stored(vec![entry(1, "a", "{}")]);
        wrong_genesis.genesis.register_id = RegisterId::from_bytes([1; 16]);
        let cases = [
            (stored(vec![entry(1, "a", "{}"), tampered]), "checksum"),
            (
                stored(vec![entry(2, "a", "{}"), entry(2, "b", "[]")]),
                "strictly increase",
            ),
            (
                stored(vec![entry(3, "a", "{}"), entry(1, "b", "[]")]),
                "strictly increase",
            ),
            (stored(vec![]), "seeded blueprint is missing"),
            (
                stored(vec![entry(1, "a", "{}"), entry(3, "b", "[]")]),
                "entry 2 is missing",
            ),
            (wrong_genesis, "not the system register"),
        ];
        for (register, expected) in cases {
            let mut hub = AuthorityState::new(node("hub-1"), config(), T0);
            let problem = hub.install(register).unwrap_err();
            assert!(problem.contains(expected), "{problem}");
            assert!(matches!(hub.status().state, RegisterState::Corrupt(_)));
            let refused = hub
                .entry_set(&query("peer-a", "s", SyncScope::Full), T0)
                .unwrap_err();
            assert!(refused.to_string().contains(expected), "{refused}");
        }
    }

    #[test]
    fn nothing_is_served_while_loading() {
        let mut hub = AuthorityState::new(node("hub-1"), config(), T0);
        hub.set_loading();
        assert!(matches!(
            hub.entry_set(&query("peer-a", "s", SyncScope::Full), T0),
            Err(AuthorityError::NotReady(_))
        ));
        let request = ConnectRequest {
            peer_id: node("peer-a"),
            node_type: NodeType::Peer,
            address: String::new(),
            last_known_version: 0,
            last_known_digest: None,
        };
        assert!(matches!(
            hub.connect(request, SessionId::parse("s").unwrap(), T0),
            Err(AuthorityError::NotReady(_))
        ));
    }

    #[test]
    fn full_scope_lists_every_blueprints_latest_entry_deprecations_included() {
        let mut hub = ready_hub();
        let mut deprecated = entry(3, "a", "{}");
        deprecated.is_active = false;
        deprecated.kind = EntryKind::Deprecated;
        hub.appended(deprecated);
        hub.appended(entry(4, "b", "[2]"));
        let full = served(&mut hub, SyncScope::Full).unwrap();
        assert_eq!(versions(&full), vec![3, 4]);
        assert_eq!(
            versions(&served(&mut hub, SyncScope::After(2)).unwrap()),
            vec![3, 4]
        );
        assert_eq!(
            versions(&served(&mut hub, SyncScope::After(4)).unwrap()),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn publishing_updates_active_blueprints_and_revives_deprecated_ones() {
        let mut hub = ready_hub();
        let new = hub
            .publish_draft(publish("c", "{}"), "t1".into(), T0)
            .unwrap();
        assert_eq!((new.kind, new.published_at), (EntryKind::Published, T0));
        let update = hub
            .publish_draft(publish("a", "[9]"), "t2".into(), T0)
            .unwrap();
        assert_eq!(update.kind, EntryKind::Updated);

        let deprecation = hub
            .deprecate_draft(
                BlueprintId::parse("a").unwrap(),
                "ops".into(),
                "t3".into(),
                T0,
            )
            .unwrap();
        assert_eq!(deprecation.kind, EntryKind::Deprecated);
        assert_eq!(
            deprecation.document,
            Bytes::from_static(b"{}"),
            "the last document"
        );
        hub.appended(deprecation.at_version(3));
        assert!(matches!(
            hub.deprecate_draft(
                BlueprintId::parse("a").unwrap(),
                "ops".into(),
                "t".into(),
                T0
            ),
            Err(AuthorityError::AlreadyDeprecated(_))
        ));
        assert!(matches!(
            hub.deprecate_draft(
                BlueprintId::parse("zz").unwrap(),
                "ops".into(),
                "t".into(),
                T0
            ),
            Err(AuthorityError::NotFound(_))
        ));
        let revived = hub
            .publish_draft(publish("a", "{}"), "t4".into(), T0)
            .unwrap();
        assert_eq!(revived.kind, EntryKind::Published);
    }

    #[test]
    fn an_append_after_others_appends_waits_for_the_catch_up() {
        let mut hub = ready_hub();
        assert_eq!(
            hub.appended(entry(4, "c", "{}")),
            Appended::Gap { missing_from: 3 }
        );
        assert_eq!(hub.version(), 2, "nothing taken past a gap");
        let caught = hub.catch_up(vec![entry(2, "b", "[]"), entry(3, "d", "{}")]);
        assert_eq!(caught.taken, 1, "version 2 was held already");
        let Appended::Taken { entry: taken, .. } = hub.appended(entry(4, "c", "{}")) else {
            panic!("version 4 follows 3");
        };
        assert_eq!(taken.version, 4);
        let Appended::Known(known) = hub.appended(entry(3, "other", "{}")) else {
            panic!("version 3 is held");
        };
        assert_eq!(known.blueprint_id.as_str(), "d", "the held entry wins");
    }

    /// Integrity over availability: an entry that fails its checksum stops the catch-up; the
    /// register is served up to the version before it, appends are refused, and a later read
    /// of the sound entry serves everything again. Regression: such an entry was skipped and
    /// the hub served a register with a gap that peers never filled.
    #[test]
    fn a_tampered_entry_blocks_the_register_until_it_reads_sound() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        let mut tampered = entry(3, "c", "{}");
        tampered.document = Bytes::from_static(b"[]");
        let caught = hub.catch_up(vec![tampered, entry(4, "d", "{}")]);
        assert_eq!((caught.taken, caught.tampered), (0, Some(3)));
        assert_eq!(hub.version(), 2, "nothing past the bad entry");
        let RegisterState::Blocked { last_good, reason } = hub.status().state else {
            panic!("blocked: {:?}", hub.status().state);
        };
        assert_eq!(last_good, 2);
        assert!(reason.contains("entry 3"), "{reason}");
        assert_eq!(
            versions(&served(&mut hub, SyncScope::After(0)).unwrap()),
            vec![1, 2],
            "served up to the last sound version"
        );
        let ack = hub.heartbeat(&beat("peer-a", "s", 2), T0).unwrap();
        assert_eq!((ack.version, ack.action), (2, RecommendedAction::None));
        assert!(matches!(
            hub.publish_draft(publish("e", "{}"), "t".into(), T0),
            Err(AuthorityError::Unavailable(reason)) if reason.contains("blocked after version 2")
        ));
        let caught = hub.catch_up(vec![entry(3, "c", "{}"), entry(4, "d", "{}")]);
        assert!(caught.unblocked);
        assert_eq!((caught.taken, hub.version()), (2, 4));
        assert_eq!(hub.status().state, RegisterState::Ready);
        assert!(
            hub.publish_draft(publish("e", "{}"), "t".into(), T0)
                .is_ok()
        );
    }

    #[test]
    fn a_missing_version_blocks_the_register_too() {
        let mut hub = ready_hub();
        let caught = hub.catch_up(vec![entry(4, "d", "{}")]);
        assert_eq!(caught.tampered, Some(3));
        assert!(hub.is_blocked() && hub.is_serving());
    }

    /// Each version has a digest, chained from the previous one, that a sync carries with
    /// every entry; two registers that differ anywhere up to a version differ there.
    #[test]
    fn digests_chain_every_entry_and_travel_with_syncs() {
        let mut hub = ready_hub();
        let first = RegisterDigest::EMPTY.then(&entry(1, "a", "{}"));
        let second = first.then(&entry(2, "b", "[]"));
        assert_eq!(hub.digest(), second);
        let full = served(&mut hub, SyncScope::Full).unwrap();
        assert_eq!(full.digests, vec![first, second]);
        assert_eq!(full.last_digest(), Some(second));
        let mut other = AuthorityState::new(node("hub-2"), config(), T0);
        other
            .install(stored(vec![entry(1, "a", "{}"), entry(2, "b", "[9]")]))
            .unwrap();
        assert_ne!(
            other.digest(),
            hub.digest(),
            "another document at version 2"
        );
        let grant = connect(&mut hub, "peer-a", "s");
        assert_eq!(grant.digest, Some(second));
    }

    /// Regression (issue 7): a peer ahead of its hub, or holding other entries at the same
    /// version, was answered as up to date everywhere. Now it is told to sync in full; a peer
    /// that sends no digest (it predates `FULL_SYNC`) is told to sync.
    #[test]
    fn heartbeats_tell_a_diverged_peer_to_sync_in_full() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        let ours = hub.digest();
        let theirs = RegisterDigest::EMPTY.then(&entry(9, "z", "{}"));
        let with = |version, digest| HeartbeatRequest {
            last_sync_digest: digest,
            ..beat("peer-a", "s", version)
        };
        let action = |hub: &mut AuthorityState, request: HeartbeatRequest| {
            hub.heartbeat(&request, T0).unwrap().action
        };
        assert_eq!(
            action(&mut hub, with(2, Some(ours))),
            RecommendedAction::None
        );
        assert_eq!(
            action(&mut hub, with(5, Some(ours))),
            RecommendedAction::FullSync,
            "ahead"
        );
        assert_eq!(
            action(&mut hub, with(2, Some(theirs))),
            RecommendedAction::FullSync,
            "differs"
        );
        let at_one = RegisterDigest::EMPTY.then(&entry(1, "a", "{}"));
        assert_eq!(
            action(&mut hub, with(1, Some(at_one))),
            RecommendedAction::Sync,
            "behind"
        );
        assert_eq!(
            action(&mut hub, with(1, Some(theirs))),
            RecommendedAction::FullSync,
            "behind and different"
        );
        assert_eq!(
            action(&mut hub, with(5, None)),
            RecommendedAction::Sync,
            "an older peer"
        );
        assert_eq!(
            hub.checkpoint(&node("peer-a"), &SessionId::parse("s").unwrap())
                .unwrap()
                .status,
            CheckpointState::Diverged
        );
    }

    #[test]
    fn incremental_syncs_refuse_a_peer_that_must_sync_in_full() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        let incremental = |version, history: Option<HistoryId>, digest| SyncQuery {
            history_id: history,
            digest,
            ..query("peer-a", "s", SyncScope::After(version))
        };
        let ours = HistoryId::from_bytes([7; 16]);
        let at_one = RegisterDigest::EMPTY.then(&entry(1, "a", "{}"));
        let set = hub
            .entry_set(&incremental(1, Some(ours.clone()), Some(at_one)), T0)
            .unwrap();
        assert_eq!(versions(&set), vec![2]);
        let refusals = [
            (
                incremental(1, Some(HistoryId::from_bytes([8; 16])), None),
                "history",
            ),
            (incremental(3, Some(ours.clone()), None), "ahead"),
            (
                incremental(u64::MAX >> 1, Some(ours.clone()), None),
                "ahead",
            ),
            (incremental(1, Some(ours), Some(hub.digest())), "differs"),
        ];
        for (request, why) in refusals {
            match hub.entry_set(&request, T0) {
                Err(AuthorityError::NeedsFullSync(reason)) => {
                    assert!(reason.contains(why), "{why}: {reason}")
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        assert!(
            hub.entry_set(&query("peer-a", "s", SyncScope::Full), T0)
                .is_ok()
        );
    }

    /// Regression (issue 7): syncs did not check the session.
    #[test]
    fn syncs_subscriptions_and_heartbeats_need_the_current_session() {
        let mut hub = ready_hub();
        for scope in [SyncScope::Full, SyncScope::After(0)] {
            assert!(matches!(
                hub.entry_set(&query("stranger", "x", scope), T0),
                Err(AuthorityError::UnknownSession { .. })
            ));
        }
        assert!(matches!(
            hub.heartbeat(&beat("stranger", "x", 0), T0),
            Err(AuthorityError::NotConnected(_))
        ));
        connect(&mut hub, "peer-a", "s");
        assert!(matches!(
            hub.heartbeat(&beat("peer-a", "other", 0), T0),
            Err(AuthorityError::UnknownSession { .. })
        ));
        assert!(matches!(
            hub.heartbeat_status(&node("peer-a"), &SessionId::parse("other").unwrap(), T0),
            Err(AuthorityError::UnknownSession { .. })
        ));
        assert!(matches!(
            hub.checkpoint(&node("stranger"), &SessionId::parse("x").unwrap()),
            Err(AuthorityError::UnknownSession { .. })
        ));
    }

    /// Regression (issue 7): `GetHeartbeatStatus` answered constants. Each figure follows the
    /// session's heartbeats.
    #[test]
    fn heartbeat_status_counts_beats_misses_and_latency() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        let interval = config().heartbeat_interval;
        let at = |intervals: f64| T0.saturating_add(interval.mul_f64(intervals));
        let session = SessionId::parse("s").unwrap();
        let status = |hub: &AuthorityState, now| {
            hub.heartbeat_status(&node("peer-a"), &session, now)
                .unwrap()
        };
        let fresh = status(&hub, at(0.4));
        assert_eq!((fresh.total_received, fresh.missed_heartbeats), (0, 0));
        assert_eq!(
            (fresh.average_latency_ms, fresh.health),
            (None, HeartbeatHealth::Healthy)
        );

        let sent = |hub: &mut AuthorityState, sent_at: Timestamp, received, version| {
            let request = HeartbeatRequest {
                sent_at,
                ..beat("peer-a", "s", version)
            };
            hub.heartbeat(&request, received).unwrap();
        };
        sent(
            &mut hub,
            at(1.0),
            at(1.0).saturating_add(std::time::Duration::from_millis(4)),
            1,
        );
        sent(
            &mut hub,
            at(2.0),
            at(2.0).saturating_add(std::time::Duration::from_millis(8)),
            2,
        );
        let steady = status(&hub, at(2.1));
        assert_eq!((steady.total_received, steady.total_missed), (2, 0));
        assert_eq!(steady.average_latency_ms, Some(6.0));
        assert_eq!((steady.last_sync_version, steady.version_lag), (2, 0));

        // Silent for 2.6 intervals: two heartbeats overdue, critical.
        let silent = status(&hub, at(4.6));
        assert_eq!(
            (silent.missed_heartbeats, silent.health),
            (2, HeartbeatHealth::Critical)
        );
        assert_eq!(silent.total_missed, 2);
        let warning = status(&hub, at(3.6));
        assert_eq!(
            (warning.missed_heartbeats, warning.health),
            (1, HeartbeatHealth::Warning)
        );
        // The peer comes back: the gap stays counted, nothing is overdue now.
        sent(&mut hub, at(4.7), at(4.7), 1);
        let back = status(&hub, at(4.8));
        assert_eq!(
            (
                back.missed_heartbeats,
                back.total_missed,
                back.total_received
            ),
            (0, 2, 3)
        );
        assert_eq!(back.version_lag, 1);
    }

    /// Regression (issue 7): checkpoints carried no times.
    #[test]
    fn checkpoints_carry_the_last_sync_and_the_next_one_due() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        let session = SessionId::parse("s").unwrap();
        let before = hub.checkpoint(&node("peer-a"), &session).unwrap();
        assert_eq!(before.last_sync_at, None);
        assert_eq!(
            before.next_sync_due,
            T0.saturating_add(config().sync_interval)
        );
        assert_eq!((before.version, before.peer_version), (2, 0));
        assert_eq!(before.status, CheckpointState::Behind);
        let later = T0.saturating_add(std::time::Duration::from_secs(42));
        hub.entry_set(&query("peer-a", "s", SyncScope::Full), later)
            .unwrap();
        hub.heartbeat(&beat("peer-a", "s", 2), later).unwrap();
        let after = hub.checkpoint(&node("peer-a"), &session).unwrap();
        assert_eq!(after.last_sync_at, Some(later));
        assert_eq!(
            after.next_sync_due,
            later.saturating_add(config().sync_interval)
        );
        assert_eq!(
            (after.peer_version, after.status),
            (2, CheckpointState::UpToDate)
        );
        assert_eq!(hub.peers()[0].last_sync_at, Some(later));
    }

    #[test]
    fn hubs_may_not_connect_and_a_new_session_replaces_the_old() {
        let mut hub = ready_hub();
        let request = ConnectRequest {
            peer_id: node("hub-2"),
            node_type: NodeType::Hub,
            address: String::new(),
            last_known_version: 0,
            last_known_digest: None,
        };
        assert!(matches!(
            hub.connect(request, SessionId::parse("s").unwrap(), T0),
            Err(AuthorityError::HubCaller(_))
        ));
        let grant = connect(&mut hub, "peer-a", "s1");
        assert_eq!(grant.version, 2);
        assert_eq!(grant.hub_id, node("hub-1"));
        assert_eq!(grant.history_id, HistoryId::from_bytes([7; 16]));
        assert_eq!(grant.heartbeat_interval, config().heartbeat_interval);
        connect(&mut hub, "peer-a", "s2");
        assert_eq!(hub.sessions(), 1);
        assert!(matches!(
            hub.heartbeat(&beat("peer-a", "s1", 2), T0),
            Err(AuthorityError::UnknownSession { .. })
        ));
        assert!(hub.heartbeat(&beat("peer-a", "s2", 2), T0).is_ok());
        assert!(
            hub.disconnect(&node("peer-a"), &SessionId::parse("s1").unwrap())
                .is_err()
        );
        hub.disconnect(&node("peer-a"), &SessionId::parse("s2").unwrap())
            .unwrap();
        assert_eq!(hub.sessions(), 0);
    }

    #[test]
    fn heartbeats_tell_a_peer_behind_to_sync_and_record_its_version() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        let later = T0.saturating_add(Duration::from_secs(5));
        let ack = hub.heartbeat(&beat("peer-a", "s", 1), later).unwrap();
        assert_eq!((ack.version, ack.action), (2, RecommendedAction::Sync));
        assert_eq!(ack.received_at, later);
        let ack = hub.heartbeat(&beat("peer-a", "s", 2), later).unwrap();
        assert_eq!(ack.action, RecommendedAction::None);
        let peer = &hub.peers()[0];
        assert_eq!(peer.last_sync_version, 2);
        assert_eq!(peer.last_heartbeat_at, Some(later));
    }

    #[test]
    fn silent_peers_expire_and_lose_their_subscriptions() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        connect(&mut hub, "peer-b", "t");
        let _subscription = hub
            .subscribe(node("peer-a"), SessionId::parse("s").unwrap())
            .unwrap();
        let expiry = config().session_expiry;
        let just_before = T0.saturating_add(expiry);
        hub.heartbeat(&beat("peer-b", "t", 2), just_before).unwrap();
        assert!(hub.sweep(just_before).is_empty(), "expiry is not yet past");
        let after = just_before.saturating_add(Duration::from_millis(1));
        assert_eq!(hub.sweep(after), vec![node("peer-a")]);
        assert_eq!((hub.sessions(), hub.subscribers()), (1, 0));
    }

    #[test]
    fn every_subscriber_is_told_in_order_and_a_slow_one_is_dropped() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        connect(&mut hub, "peer-b", "t");
        let mut fast = hub
            .subscribe(node("peer-a"), SessionId::parse("s").unwrap())
            .unwrap();
        let _slow = hub
            .subscribe(node("peer-b"), SessionId::parse("t").unwrap())
            .unwrap();
        assert!(matches!(
            hub.subscribe(node("peer-b"), SessionId::parse("other").unwrap()),
            Err(AuthorityError::UnknownSession { .. })
        ));
        let mut dropped = Vec::new();
        for version in 3..=5 {
            if let Appended::Taken { dropped: d, .. } =
                hub.appended(entry(version, "c", &format!("[{version}]")))
            {
                dropped.extend(d);
            }
            // The fast subscriber reads as it goes; the slow one never does (queue of 2).
            let notification = fast.notifications.try_recv().unwrap();
            assert_eq!(notification.version, version);
            assert_eq!(notification.sequence, version - 2);
        }
        assert_eq!(dropped, vec![node("peer-b")]);
        assert_eq!(hub.subscribers(), 1);
    }

    #[test]
    fn status_and_view_describe_the_register() {
        let mut hub = ready_hub();
        connect(&mut hub, "peer-a", "s");
        let status = hub.status();
        assert_eq!(status.state, RegisterState::Ready);
        assert_eq!((status.version, status.active_peers), (2, 1));
        assert_eq!(status.started_at, T0);
        let view = hub.view();
        assert_eq!(view.total_blueprints, 2);
        assert_eq!(
            view.blueprints
                .iter()
                .map(|b| b.blueprint_id.as_str())
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
    }

    #[test]
    fn genesis_records_name_the_system_register_and_seed_its_blueprint() {
        let (genesis, seed) = genesis_records(
            &node("hub-9"),
            HistoryId::from_bytes([3; 16]),
            "t".into(),
            T0,
        );
        assert_eq!(genesis.register_id, RegisterId::system());
        assert_eq!(genesis.created_by, node("hub-9"));
        assert_eq!(seed.blueprint_id, BlueprintId::seed());
        let seeded = seed.at_version(1);
        assert!(seeded.is_active && seeded.checksum_holds());
    }
}
