//! `SystemRegisterAuthority` (hub role): owns the authoritative system register and the
//! sessions of the peers connected to this hub.
//!
//! - First start: creates the register (well-known all-zero id, a random `history_id`) and seeds
//!   blueprint `register-creation-v1` (FR-016, FR-017). Later starts load it and validate it
//!   (every checksum, versions consecutive from 1, genesis present); a register that fails is
//!   refused, never re-created (FR-021, FR-022): the authority answers `NotReady` and reports
//!   `RegisterState::Corrupt`.
//! - Publish, update and deprecate each get the next version from the store, atomically even
//!   when several hubs share it (FR-019); every subscriber gets a notification through its own
//!   bounded queue, and one that falls behind is dropped, not waited for (FR-033).
//! - Each entry is drafted at the version after the one this hub holds and signed there with
//!   the hub's key when it has one (`herald_messages::signed_payload`: history and version
//!   included); the store writes it at exactly that version or answers `Raced`, and the hub
//!   catches up and drafts again (at most `APPEND_ATTEMPTS` times). The genesis seed is signed
//!   too.
//! - Sessions: `Connect` refuses hubs (FR-031), heartbeats answer `SYNC` to a peer that is behind,
//!   silent peers are forgotten after `session_expiry`.
//! - With a shared store, appends by other hubs arrive through the store's watch and reach this
//!   hub's subscribers too.
//!
//! Replays on restart: the register from the store (sessions are not persisted: peers whose
//! session is unknown reconnect).

mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, debug, error, info, warn};

use herald_messages::{
    AuthorityError, BlueprintId, EntryDraft, EntrySigner, HistoryId, HubPeer, HubStatus, NodeId,
    NodeType, PublishRequest, RecommendedAction, RegisterId, RegisterState, SessionId,
    SystemRegisterAuthorityMsg, SystemRegisterEntry, SystemRegisterView, Timestamp, Valid,
};

use crate::actor_kit::{MessageName, Pending, Timers, message_span};
use crate::backoff::{Backoff, BackoffConfig};
use crate::ports::{BlueprintStore, BlueprintStoreError, Clock, StoredRegister, error_chain};
use crate::view::Published;

pub use state::{
    Appended, AuthorityState, CaughtUp, HeartbeatBasis, SEED_DOCUMENT, genesis_records, sign_entry,
};

/// Drafts of one publication or deprecation before the hub gives up on a store where other
/// hubs keep appending first (`Raced`): each retry has caught up with them. Someone always
/// wins a race, so this only bounds how unlucky one publication may be under a burst (100 at
/// once on three hubs loses a few races each).
pub const APPEND_ATTEMPTS: u32 = 32;
/// Longest pause before drafting again after a lost race (drawn at random below it, so hubs
/// racing in step fall out of step).
const RACE_PAUSE_MAX: Duration = Duration::from_millis(10);

/// What the authority serves, as it last published it: status, register, peers, and what
/// heartbeats are answered from. Published after each change, before the reply to it (so a
/// peer granted a session finds it here at its first heartbeat); a publication is in it once
/// the store took the entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HubView {
    pub status: HubStatus,
    pub register: Arc<SystemRegisterView>,
    /// The latest entry of each blueprint.
    pub latest: Arc<BTreeMap<BlueprintId, Arc<SystemRegisterEntry>>>,
    pub peers: Vec<HubPeer>,
    pub heartbeat: HeartbeatBasis,
}

impl HubView {
    /// What a hub that has not loaded its register serves.
    pub fn starting(hub_id: NodeId, started_at: Timestamp) -> Self {
        Self {
            status: HubStatus {
                hub_id: hub_id.clone(),
                state: RegisterState::Loading,
                history_id: None,
                version: 0,
                total_blueprints: 0,
                active_blueprints: 0,
                active_peers: 0,
                last_published_at: None,
                started_at,
            },
            register: Arc::default(),
            latest: Arc::default(),
            peers: Vec::new(),
            heartbeat: HeartbeatBasis::loading(hub_id),
        }
    }
}

/// Hub settings (DESIGN §6, §9).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorityConfig {
    /// Told to peers at connect: how often they send heartbeats.
    pub heartbeat_interval: Duration,
    /// Told to peers: the deadline of one heartbeat.
    pub heartbeat_timeout: Duration,
    /// Told to peers: their periodic sync fallback.
    pub sync_interval: Duration,
    /// A peer silent for this long loses its session.
    pub session_expiry: Duration,
    /// Notifications queued per subscriber before it is dropped as too slow.
    pub subscriber_queue: usize,
    pub sweep_interval: Duration,
    /// How often the hub checks that a shared store still holds its register (and writes back
    /// what it lost).
    pub store_check_interval: Duration,
    /// Backoff while the store cannot be read at start.
    pub store_backoff: BackoffConfig,
    /// This hub's key: every entry it appends is signed with it. `None`: entries go unsigned
    /// (peers that trust hub keys refuse them).
    pub signer: Option<Arc<EntrySigner>>,
}

impl Default for AuthorityConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(30),
            sync_interval: Duration::from_secs(300),
            session_expiry: Duration::from_secs(150),
            subscriber_queue: 256,
            sweep_interval: Duration::from_secs(10),
            store_check_interval: Duration::from_secs(10),
            store_backoff: BackoffConfig::DEFAULT,
            signer: None,
        }
    }
}

/// The actor.
pub struct SystemRegisterAuthority;

/// Everything a (re)started authority needs; cloned for each start.
#[derive(Clone)]
pub struct SystemRegisterAuthorityArgs {
    pub hub_id: NodeId,
    pub config: AuthorityConfig,
    pub store: Arc<dyn BlueprintStore>,
    pub clock: Arc<dyn Clock>,
    /// Where the authority publishes what it serves; owned by the wiring, it outlives
    /// restarts.
    pub view: Published<HubView>,
}

pub struct SystemRegisterAuthorityActorState {
    book: AuthorityState,
    view: Published<HubView>,
    store: Arc<dyn BlueprintStore>,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    /// Backoff of the reads that retry an entry which blocked the register.
    blocked_backoff: Backoff,
    blocked_retry: Pending,
    timers: Timers,
}

impl Actor for SystemRegisterAuthority {
    type Msg = SystemRegisterAuthorityMsg;
    type State = SystemRegisterAuthorityActorState;
    type Arguments = SystemRegisterAuthorityArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SystemRegisterAuthorityMsg>,
        args: SystemRegisterAuthorityArgs,
    ) -> Result<SystemRegisterAuthorityActorState, ActorProcessingErr> {
        myself.cast(SystemRegisterAuthorityMsg::Load)?;
        let mut timers = Timers::new();
        timers.every(&myself, args.config.sweep_interval, || {
            SystemRegisterAuthorityMsg::Sweep
        });
        timers.every(&myself, args.config.store_check_interval, || {
            SystemRegisterAuthorityMsg::StoreAdvanced(u64::MAX)
        });
        Ok(SystemRegisterAuthorityActorState {
            backoff: Backoff::new(args.config.store_backoff),
            blocked_backoff: Backoff::new(args.config.store_backoff),
            blocked_retry: Pending::new(),
            book: AuthorityState::new(args.hub_id, args.config, args.clock.now()),
            view: args.view,
            store: args.store,
            clock: args.clock,
            timers,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SystemRegisterAuthorityMsg>,
        msg: SystemRegisterAuthorityMsg,
        state: &mut SystemRegisterAuthorityActorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message_span("system_register_authority", state.book.hub_id(), &msg);
        // Reads change nothing; writes publish before they reply, and again here; a recorded
        // heartbeat publishes only the peers.
        let reads_only = matches!(
            msg,
            SystemRegisterAuthorityMsg::HeartbeatSeen { .. }
                | SystemRegisterAuthorityMsg::Get(..)
                | SystemRegisterAuthorityMsg::View(_)
                | SystemRegisterAuthorityMsg::Status(_)
                | SystemRegisterAuthorityMsg::Peers(_)
                | SystemRegisterAuthorityMsg::HeartbeatStatus { .. }
                | SystemRegisterAuthorityMsg::Checkpoint { .. }
        );
        async move {
            match msg {
                SystemRegisterAuthorityMsg::Load => state.load(&myself).await,
                SystemRegisterAuthorityMsg::Publish(request, reply) => {
                    let result = state.publish(request).await;
                    state.publish_view();
                    let _ = reply.send(result);
                }
                SystemRegisterAuthorityMsg::Deprecate {
                    blueprint_id,
                    by,
                    reply,
                } => {
                    let result = state.deprecate(blueprint_id, by).await;
                    state.publish_view();
                    let _ = reply.send(result);
                }
                SystemRegisterAuthorityMsg::Connect(request, reply) => {
                    let peer = request.peer_id.clone();
                    let hub_caller = request.node_type == NodeType::Hub;
                    let session_id = SessionId::from_bytes(rand::random());
                    let result = state.book.connect(request, session_id, state.clock.now());
                    match &result {
                        Ok((grant, replaced)) => {
                            info!(%peer, session_id = %grant.session_id, replaced, "peer connected");
                        }
                        Err(_) if hub_caller => {
                            warn!(caller = %peer, "a hub tried to connect to this hub: configuration error (hubs never dial hubs)");
                        }
                        Err(_) => {}
                    }
                    state.publish_view();
                    let _ = reply.send(result.map(|(grant, _)| grant));
                }
                SystemRegisterAuthorityMsg::Disconnect {
                    peer_id,
                    session_id,
                    reply,
                } => {
                    let result = state.book.disconnect(&peer_id, &session_id);
                    if result.is_ok() {
                        info!(peer = %peer_id, "peer disconnected");
                    }
                    state.publish_view();
                    let _ = reply.send(result);
                }
                SystemRegisterAuthorityMsg::Heartbeat(beat, reply) => {
                    let result = state.book.heartbeat(&beat, state.clock.now());
                    match &result {
                        Ok(ack) if ack.action == RecommendedAction::FullSync => {
                            warn!(peer = %beat.peer_id, peer_version = beat.last_sync_version, version = ack.version, "the peer's replica diverged from this register; told it to sync in full");
                        }
                        Ok(ack) => {
                            debug!(peer = %beat.peer_id, sequence = beat.sequence, action = ?ack.action, "heartbeat");
                        }
                        Err(_) => {}
                    }
                    let _ = reply.send(result);
                }
                SystemRegisterAuthorityMsg::HeartbeatSeen { beat, at, action } => {
                    if action == RecommendedAction::FullSync {
                        warn!(peer = %beat.peer_id, peer_version = beat.last_sync_version, "the peer's replica diverged from this register; told it to sync in full");
                    } else {
                        debug!(peer = %beat.peer_id, sequence = beat.sequence, ?action, "heartbeat");
                    }
                    state.book.record_heartbeat(&beat, at);
                    state.publish_peers();
                }
                SystemRegisterAuthorityMsg::Entries { query, reply } => {
                    let result = state.book.entry_set(&query, state.clock.now());
                    if let Err(AuthorityError::NeedsFullSync(reason)) = &result {
                        info!(peer = %query.peer_id, %reason, "incremental sync refused: the peer must sync in full");
                    }
                    let _ = reply.send(result);
                }
                SystemRegisterAuthorityMsg::HeartbeatStatus {
                    peer_id,
                    session_id,
                    reply,
                } => {
                    let _ = reply.send(state.book.heartbeat_status(
                        &peer_id,
                        &session_id,
                        state.clock.now(),
                    ));
                }
                SystemRegisterAuthorityMsg::Checkpoint {
                    peer_id,
                    session_id,
                    reply,
                } => {
                    let _ = reply.send(state.book.checkpoint(&peer_id, &session_id));
                }
                SystemRegisterAuthorityMsg::Subscribe {
                    peer_id,
                    session_id,
                    reply,
                } => {
                    let _ = reply.send(state.book.subscribe(peer_id, session_id));
                }
                SystemRegisterAuthorityMsg::Get(id, reply) => {
                    let _ = reply.send(state.book.latest(&id));
                }
                SystemRegisterAuthorityMsg::View(reply) => {
                    let _ = reply.send(state.book.view());
                }
                SystemRegisterAuthorityMsg::Status(reply) => {
                    let _ = reply.send(state.book.status());
                }
                SystemRegisterAuthorityMsg::Peers(reply) => {
                    let _ = reply.send(state.book.peers());
                }
                SystemRegisterAuthorityMsg::StoreAdvanced(version) => {
                    if version != u64::MAX {
                        state.book.announced(version);
                    }
                    // u64::MAX: a periodic or re-watch check, which also finds a store that lost
                    // what this hub holds.
                    if state.book.is_serving()
                        && (version > state.book.version() || version == u64::MAX)
                        && let Err(err) = state.catch_up().await
                    {
                        warn!(err = %error_chain(&err), "cannot read entries appended by another hub; retrying at the next one");
                    }
                    if state.book.is_blocked() {
                        state.retry_blocked(&myself);
                    }
                }
                SystemRegisterAuthorityMsg::Sweep => {
                    let expiry = state.book.config().session_expiry;
                    for peer in state.book.sweep(state.clock.now()) {
                        info!(%peer, ?expiry, "peer silent for too long; session dropped");
                    }
                }
            }
            if !reads_only {
                state.publish_view();
            }
            state.publish_metrics();
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

impl SystemRegisterAuthorityActorState {
    fn publish_view(&self) {
        self.view.publish(HubView {
            status: self.book.status(),
            register: Arc::new(self.book.view()),
            latest: Arc::new(self.book.latest_entries()),
            peers: self.book.peers(),
            heartbeat: self.book.heartbeat_basis(),
        });
    }

    /// After a recorded heartbeat only the peers' numbers changed: the register and the
    /// heartbeat basis are shared with the previous view, so this costs O(peers), not
    /// O(blueprints) (heartbeats may arrive thousands of times a second).
    fn publish_peers(&self) {
        let current = self.view.latest();
        self.view.publish(HubView {
            status: self.book.status(),
            register: Arc::clone(&current.register),
            latest: Arc::clone(&current.latest),
            peers: self.book.peers(),
            heartbeat: current.heartbeat.clone(),
        });
    }

    /// Reads the register, creating it on the first start; retries while the store is down.
    async fn load(&mut self, myself: &ActorRef<SystemRegisterAuthorityMsg>) {
        self.book.set_loading();
        let loaded = match self.store.load().await {
            Ok(Some(stored)) => Ok(stored),
            Ok(None) => self.create().await,
            Err(err) => Err(err),
        };
        match loaded {
            Ok(stored) => match self.book.install(stored) {
                Ok(()) => {
                    info!(
                        store = %self.store.describe(),
                        history = %self.book.history_id().map(ToString::to_string).unwrap_or_default(),
                        version = self.book.version(),
                        blueprints = self.book.blueprints(),
                        signing_key = %self.book.config().signer.as_ref().map_or_else(|| "none: entries go unsigned".to_owned(), |signer| signer.key_id().to_string()),
                        "system register loaded and validated"
                    );
                    self.backoff.reset();
                    self.start_watch(myself);
                }
                Err(problem) => {
                    error!(store = %self.store.describe(), %problem, "system register failed validation; refusing to serve it");
                }
            },
            Err(BlueprintStoreError::Corrupt { what }) => {
                error!(store = %self.store.describe(), %what, "system register unreadable; refusing to serve it");
                self.book.refuse(what);
            }
            Err(err) => {
                let delay = self.backoff.next_delay();
                warn!(store = %self.store.describe(), err = %error_chain(&err), ?delay, "cannot load the system register; retrying");
                myself.send_after(delay, || SystemRegisterAuthorityMsg::Load);
            }
        }
    }

    /// Genesis: the register with its seeded blueprint. Another hub may win the race.
    async fn create(&mut self) -> Result<StoredRegister, BlueprintStoreError> {
        let (genesis, seed) = genesis_records(
            self.book.hub_id(),
            HistoryId::from_bytes(rand::random()),
            transaction_id(),
            self.clock.now(),
        );
        let seed = sign_entry(
            self.book.config().signer.as_deref(),
            &genesis.history_id,
            seed.at_version(1),
        );
        match self.store.create(&genesis, vec![seed]).await {
            Ok(entries) => {
                info!(history = %genesis.history_id, "system register created with its seeded blueprint");
                Ok(StoredRegister { genesis, entries })
            }
            Err(BlueprintStoreError::AlreadyCreated) => match self.store.load().await? {
                Some(stored) => Ok(stored),
                None => Err(BlueprintStoreError::Corrupt {
                    what: "the store says the register exists but holds none".into(),
                }),
            },
            Err(err) => Err(err),
        }
    }

    /// Forwards the versions other hubs append to this actor, re-watching after a break.
    fn start_watch(&mut self, myself: &ActorRef<SystemRegisterAuthorityMsg>) {
        let store = Arc::clone(&self.store);
        let myself = myself.clone();
        let backoff_config = self.book.config().store_backoff;
        let task = tokio::spawn(
            async move {
                let mut backoff = Backoff::new(backoff_config);
                loop {
                    match store.watch().await {
                        Ok(None) => return,
                        Ok(Some(mut versions)) => {
                            backoff.reset();
                            while let Some(version) = versions.next().await {
                                if myself
                                    .cast(SystemRegisterAuthorityMsg::StoreAdvanced(version))
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            debug!("store watch ended; watching again");
                        }
                        Err(err) => {
                            debug!(err = %error_chain(&err), "cannot watch the store yet");
                        }
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                    // Whatever was appended meanwhile: catch up.
                    if myself
                        .cast(SystemRegisterAuthorityMsg::StoreAdvanced(u64::MAX))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        self.timers.keep(&task);
    }

    async fn publish(
        &mut self,
        request: Valid<PublishRequest>,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        self.book.ready()?;
        self.append_drafted(|book, now| book.publish_draft(request.clone(), transaction_id(), now))
            .await
    }

    async fn deprecate(
        &mut self,
        blueprint_id: BlueprintId,
        by: String,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        self.book.ready()?;
        self.append_drafted(|book, now| {
            book.deprecate_draft(blueprint_id.clone(), by.clone(), transaction_id(), now)
        })
        .await
    }

    /// Drafts an entry on what this hub holds once caught up with the store (an update or a new
    /// publication, a deprecation of what is current, whichever hub appended it) and appends
    /// it; when another hub appended first (`Raced`), catches up and drafts again.
    async fn append_drafted(
        &mut self,
        draft: impl Fn(&AuthorityState, Timestamp) -> Result<EntryDraft, AuthorityError>,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        let mut raced_at = 0;
        for attempt in 1..=APPEND_ATTEMPTS {
            self.catch_up().await.map_err(unavailable)?;
            let drafted = draft(&self.book, self.clock.now())?;
            match self.append(drafted).await {
                Err(Raced(head)) => {
                    debug!(attempt, head, "another hub appended first; drafting again");
                    raced_at = head;
                    let pause = RACE_PAUSE_MAX.mul_f64(rand::random::<f64>());
                    tokio::time::sleep(pause).await;
                }
                Ok(result) => return result,
            }
        }
        Err(AuthorityError::Unavailable(format!(
            "other hubs appended first {APPEND_ATTEMPTS} times in a row (the store is at \
             version {raced_at}); try again"
        )))
    }

    /// Appends a drafted entry at the version after this hub's, signed, unless another hub
    /// appended first (`Raced`: nothing appended, draft again) or the store lost entries this
    /// hub holds (`Behind`: written back first, then appended).
    async fn append(
        &mut self,
        draft: EntryDraft,
    ) -> Result<Result<Arc<SystemRegisterEntry>, AuthorityError>, Raced> {
        let entry = self
            .book
            .entry_for(draft, self.book.config().signer.as_deref());
        let entry = match self
            .store
            .append(entry.clone(), self.book.append_floor())
            .await
        {
            Ok(entry) => entry,
            Err(BlueprintStoreError::Raced { head }) => return Err(Raced(head)),
            Err(BlueprintStoreError::Behind { store_head }) => {
                // Written back first, same versions and checksums: no version is issued twice.
                if let Err(err) = self.restore(store_head).await {
                    return Ok(Err(unavailable(err)));
                }
                if let Err(err) = self.catch_up().await {
                    return Ok(Err(unavailable(err)));
                }
                if let Err(err) = self.book.writable() {
                    return Ok(Err(err));
                }
                if self.book.version() + 1 != entry.version {
                    // The catch-up brought entries of other hubs: the draft is stale.
                    return Err(Raced(self.book.version()));
                }
                let floor = self.book.append_floor();
                match self.store.append(entry, floor).await {
                    Ok(entry) => entry,
                    Err(BlueprintStoreError::Raced { head }) => return Err(Raced(head)),
                    Err(BlueprintStoreError::Behind { store_head }) => {
                        return Ok(Err(AuthorityError::Unavailable(format!(
                            "the shared store lost version {floor}, which another hub appended \
                             and this hub has not read (the store is at version {store_head}); \
                             waiting for the hub that holds it to write it back"
                        ))));
                    }
                    Err(err) => return Ok(Err(unavailable(err))),
                }
            }
            Err(err) => return Ok(Err(unavailable(err))),
        };
        Ok(self.place(entry).await)
    }

    /// Takes in this hub's own appended entry and tells subscribers.
    async fn place(
        &mut self,
        entry: SystemRegisterEntry,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        let version = entry.version;
        let mut placed = self.book.appended(entry.clone());
        if let Appended::Gap { .. } = placed {
            // Entries appended by other hubs before ours come first.
            self.catch_up().await.map_err(unavailable)?;
            placed = self.book.appended(entry);
        }
        match placed {
            Appended::Taken { entry, dropped } => {
                info!(blueprint = %entry.blueprint_id, version = entry.version, kind = ?entry.kind, by = %entry.published_by, signed_by = %entry.signature.as_ref().map(|s| s.key_id.to_string()).unwrap_or_else(|| "nobody".into()), "system register entry appended");
                metrics::counter!("herald_hub_publications_total", "node" => self.book.hub_id().to_string())
                    .increment(1);
                self.report_dropped(&dropped);
                Ok(entry)
            }
            Appended::Known(entry) => Ok(entry),
            Appended::Gap { missing_from } => Err(AuthorityError::Unavailable(format!(
                "the store appended version {version} but does not hold version {missing_from}"
            ))),
        }
    }

    /// Brings the register and the store in line: takes in the entries appended after our
    /// version (by other hubs sharing the store), and writes back what a store that lost data
    /// lacks (a wiped or rolled-back Redis). A store holding another history, or another entry
    /// at a version this hub holds, blocks appends until it is in line again.
    async fn catch_up(&mut self) -> Result<(), BlueprintStoreError> {
        let held = self.book.version();
        let history = self.book.history_id().cloned();
        match self.store.head().await? {
            None => return self.restore(0).await,
            Some(head) if Some(&head.history_id) != history.as_ref() => {
                self.block_on_store(format!(
                    "the shared store holds another system register (history {}, this hub's is {})",
                    head.history_id,
                    history.map(|h| h.to_string()).unwrap_or_default()
                ));
                return Ok(());
            }
            Some(head) if head.version < held => return self.restore(head.version).await,
            Some(_) => {
                if self.book.store_in_line() {
                    info!(
                        version = held,
                        "the shared store holds this hub's register again; appends resume"
                    );
                }
            }
        }
        let was_blocked = self.book.is_blocked();
        let entries = self.store.entries_after(self.book.version()).await?;
        let caught = self.book.catch_up(entries);
        if let Some(version) = caught.tampered
            && !was_blocked
        {
            let status = self.book.status();
            error!(version, state = ?status.state, "the shared store holds an entry this hub cannot take; serving the register up to the version before it, refusing appends, and reading it again");
            metrics::counter!("herald_hub_blocked_total", "node" => self.book.hub_id().to_string())
                .increment(1);
        }
        if caught.unblocked {
            self.blocked_backoff.reset();
            info!(
                version = self.book.version(),
                "the entry that blocked the register reads sound now; serving everything again"
            );
        }
        self.report_dropped(&caught.dropped);
        Ok(())
    }

    /// Reads the store again after a backoff while an entry blocks the register.
    fn retry_blocked(&mut self, myself: &ActorRef<SystemRegisterAuthorityMsg>) {
        let delay = self.blocked_backoff.next_delay();
        self.blocked_retry.after(myself, delay, || {
            SystemRegisterAuthorityMsg::StoreAdvanced(u64::MAX)
        });
    }

    /// Writes back, atomically, the genesis and every entry above `store_head` that the store
    /// lost, with their versions and checksums; another hub doing the same at once agrees.
    async fn restore(&mut self, store_head: u64) -> Result<(), BlueprintStoreError> {
        let Some(genesis) = self.book.genesis().cloned() else {
            return Ok(());
        };
        let entries = self.book.entries_above(store_head);
        match self.store.restore(&genesis, &entries).await {
            Ok(report) => {
                if report.entries_written > 0 || report.genesis_written {
                    warn!(
                        store = %self.store.describe(),
                        store_head,
                        written = report.entries_written,
                        genesis = report.genesis_written,
                        head = report.head,
                        "the shared store had lost entries this hub holds; wrote them back"
                    );
                    metrics::counter!("herald_hub_store_repairs_total", "node" => self.book.hub_id().to_string())
                        .increment(1);
                }
                if self.book.store_in_line() {
                    info!("the shared store holds this hub's register again; appends resume");
                }
                Ok(())
            }
            Err(BlueprintStoreError::Conflict(conflict)) => {
                self.block_on_store(format!(
                    "the shared store cannot take this hub's register back: {conflict}"
                ));
                error!(store = %self.store.describe(), %conflict, "the shared store holds other entries than this hub; appends refused until it is repaired");
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    fn block_on_store(&mut self, reason: String) {
        if !self.book.is_blocked() {
            error!(store = %self.store.describe(), %reason, "refusing appends");
            metrics::counter!("herald_hub_blocked_total", "node" => self.book.hub_id().to_string())
                .increment(1);
        }
        self.book.block_on_store(reason);
    }

    fn report_dropped(&self, dropped: &[NodeId]) {
        for peer in dropped {
            warn!(%peer, "subscriber too slow; dropping its push subscription");
            metrics::counter!("herald_hub_subscribers_dropped_total", "node" => self.book.hub_id().to_string())
                .increment(1);
        }
    }

    fn publish_metrics(&self) {
        let node = self.book.hub_id().to_string();
        metrics::gauge!("herald_hub_register_version", "node" => node.clone())
            .set(self.book.version() as f64);
        metrics::gauge!("herald_hub_sessions", "node" => node.clone())
            .set(self.book.sessions() as f64);
        metrics::gauge!("herald_hub_subscribers", "node" => node.clone())
            .set(self.book.subscribers() as f64);
        let blocked = if self.book.is_blocked() { 1.0 } else { 0.0 };
        metrics::gauge!("herald_hub_register_blocked", "node" => node).set(blocked);
    }
}

/// Another hub appended first; the store is at this version.
struct Raced(u64);

fn transaction_id() -> String {
    RegisterId::from_bytes(rand::random()).to_string()
}

fn unavailable(err: BlueprintStoreError) -> AuthorityError {
    AuthorityError::Unavailable(error_chain(&err))
}

impl MessageName for SystemRegisterAuthorityMsg {
    fn name(&self) -> &'static str {
        match self {
            SystemRegisterAuthorityMsg::Publish(..) => "publish",
            SystemRegisterAuthorityMsg::Deprecate { .. } => "deprecate",
            SystemRegisterAuthorityMsg::Connect(..) => "connect",
            SystemRegisterAuthorityMsg::Disconnect { .. } => "disconnect",
            SystemRegisterAuthorityMsg::Heartbeat(..) => "heartbeat",
            SystemRegisterAuthorityMsg::HeartbeatSeen { .. } => "heartbeat_seen",
            SystemRegisterAuthorityMsg::Entries { .. } => "entries",
            SystemRegisterAuthorityMsg::HeartbeatStatus { .. } => "heartbeat_status",
            SystemRegisterAuthorityMsg::Checkpoint { .. } => "checkpoint",
            SystemRegisterAuthorityMsg::Subscribe { .. } => "subscribe",
            SystemRegisterAuthorityMsg::Get(..) => "get",
            SystemRegisterAuthorityMsg::View(_) => "view",
            SystemRegisterAuthorityMsg::Status(_) => "status",
            SystemRegisterAuthorityMsg::Peers(_) => "peers",
            SystemRegisterAuthorityMsg::Load => "load",
            SystemRegisterAuthorityMsg::StoreAdvanced(_) => "store_advanced",
            SystemRegisterAuthorityMsg::Sweep => "sweep",
        }
    }
}
