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
//! - Sessions: `Connect` refuses hubs (FR-031), heartbeats answer `SYNC` to a peer that is behind,
//!   silent peers are forgotten after `session_expiry`.
//! - With a shared store, appends by other hubs arrive through the store's watch and reach this
//!   hub's subscribers too.
//!
//! Replays on restart: the register from the store (sessions are not persisted: peers whose
//! session is unknown reconnect).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error, info, warn};

use herald_messages::{
    AuthorityError, BlueprintId, BlueprintNotification, BlueprintSummary, ConnectRequest,
    EntryDraft, EntryKind, EntrySet, Genesis, HeartbeatAck, HeartbeatRequest, HistoryId, HubPeer,
    HubStatus, NodeId, NodeType, PublishRequest, RecommendedAction, RegisterId, RegisterState,
    SessionGrant, SessionId, Subscription, SyncScope, SystemRegisterAuthorityMsg,
    SystemRegisterEntry, SystemRegisterView, Timestamp,
};

use crate::backoff::{Backoff, BackoffConfig};
use crate::ports::{BlueprintStore, BlueprintStoreError, Clock, StoredRegister, error_chain};

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
    /// Backoff while the store cannot be read at start.
    pub store_backoff: BackoffConfig,
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
            store_backoff: BackoffConfig::DEFAULT,
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
}

pub struct SystemRegisterAuthorityState {
    hub_id: NodeId,
    config: AuthorityConfig,
    store: Arc<dyn BlueprintStore>,
    clock: Arc<dyn Clock>,
    register: Register,
    sessions: HashMap<NodeId, PeerSession>,
    subscribers: Vec<Subscriber>,
    started_at: Timestamp,
    backoff: Backoff,
    tasks: Vec<JoinHandle<()>>,
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
}

#[derive(Debug, Clone)]
struct PeerSession {
    session_id: SessionId,
    address: String,
    connected_at: Timestamp,
    last_seen_at: Timestamp,
    last_heartbeat_at: Option<Timestamp>,
    last_sync_version: u64,
}

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

    fn is_ready(&self) -> bool {
        self.state == Some(RegisterState::Ready)
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
        self.latest
            .insert(entry.blueprint_id.clone(), Arc::clone(&entry));
        self.log.push(entry);
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
}

impl Actor for SystemRegisterAuthority {
    type Msg = SystemRegisterAuthorityMsg;
    type State = SystemRegisterAuthorityState;
    type Arguments = SystemRegisterAuthorityArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SystemRegisterAuthorityMsg>,
        args: SystemRegisterAuthorityArgs,
    ) -> Result<SystemRegisterAuthorityState, ActorProcessingErr> {
        myself.cast(SystemRegisterAuthorityMsg::Load)?;
        let sweep = myself.send_interval(args.config.sweep_interval, || {
            SystemRegisterAuthorityMsg::Sweep
        });
        Ok(SystemRegisterAuthorityState {
            started_at: args.clock.now(),
            backoff: Backoff::new(args.config.store_backoff),
            hub_id: args.hub_id,
            config: args.config,
            store: args.store,
            clock: args.clock,
            register: Register::default(),
            sessions: HashMap::new(),
            subscribers: Vec::new(),
            tasks: vec![sweep],
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SystemRegisterAuthorityMsg>,
        msg: SystemRegisterAuthorityMsg,
        state: &mut SystemRegisterAuthorityState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::debug_span!(
            "system_register_authority",
            node = %state.hub_id,
            msg = message_name(&msg)
        );
        async move {
            match msg {
                SystemRegisterAuthorityMsg::Load => state.load(&myself).await,
                SystemRegisterAuthorityMsg::Publish(request, reply) => {
                    let _ = reply.send(state.publish(request).await);
                }
                SystemRegisterAuthorityMsg::Deprecate {
                    blueprint_id,
                    by,
                    reply,
                } => {
                    let _ = reply.send(state.deprecate(blueprint_id, by).await);
                }
                SystemRegisterAuthorityMsg::Connect(request, reply) => {
                    let _ = reply.send(state.connect(request));
                }
                SystemRegisterAuthorityMsg::Disconnect {
                    peer_id,
                    session_id,
                    reply,
                } => {
                    let _ = reply.send(state.disconnect(&peer_id, &session_id));
                }
                SystemRegisterAuthorityMsg::Heartbeat(beat, reply) => {
                    let _ = reply.send(state.heartbeat(beat));
                }
                SystemRegisterAuthorityMsg::Entries { scope, reply } => {
                    let _ = reply.send(state.entry_set(&scope));
                }
                SystemRegisterAuthorityMsg::Subscribe {
                    peer_id,
                    session_id,
                    reply,
                } => {
                    let _ = reply.send(state.subscribe(peer_id, session_id));
                }
                SystemRegisterAuthorityMsg::Get(id, reply) => {
                    let _ = reply.send(state.register.latest.get(&id).cloned());
                }
                SystemRegisterAuthorityMsg::View(reply) => {
                    let _ = reply.send(state.view());
                }
                SystemRegisterAuthorityMsg::Status(reply) => {
                    let _ = reply.send(state.status());
                }
                SystemRegisterAuthorityMsg::Peers(reply) => {
                    let _ = reply.send(state.peers());
                }
                SystemRegisterAuthorityMsg::StoreAdvanced(version) => {
                    if state.register.is_ready()
                        && version > state.register.version()
                        && let Err(err) = state.catch_up().await
                    {
                        warn!(%err, "cannot read entries appended by another hub; retrying at the next one");
                    }
                }
                SystemRegisterAuthorityMsg::Sweep => state.sweep(),
            }
            state.publish_metrics();
        }
        .instrument(span)
        .await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SystemRegisterAuthorityMsg>,
        state: &mut SystemRegisterAuthorityState,
    ) -> Result<(), ActorProcessingErr> {
        for task in state.tasks.drain(..) {
            task.abort();
        }
        Ok(())
    }
}

impl SystemRegisterAuthorityState {
    /// Reads the register, creating it on the first start; retries while the store is down.
    async fn load(&mut self, myself: &ActorRef<SystemRegisterAuthorityMsg>) {
        self.register.state = Some(RegisterState::Loading);
        let loaded = match self.store.load().await {
            Ok(Some(stored)) => Ok(Register::validated(stored)),
            Ok(None) => self.create().await,
            Err(err) => Err(err),
        };
        match loaded {
            Ok(Ok(register)) => {
                info!(
                    store = %self.store.describe(),
                    history = %register.genesis.as_ref().map(|g| g.history_id.to_string()).unwrap_or_default(),
                    version = register.version(),
                    blueprints = register.latest.len(),
                    "system register loaded and validated"
                );
                self.register = register;
                self.backoff.reset();
                self.start_watch(myself);
            }
            Ok(Err(problem)) => {
                error!(store = %self.store.describe(), %problem, "system register failed validation; refusing to serve it");
                self.register.state = Some(RegisterState::Corrupt(problem));
            }
            Err(BlueprintStoreError::Corrupt { what }) => {
                error!(store = %self.store.describe(), %what, "system register unreadable; refusing to serve it");
                self.register.state = Some(RegisterState::Corrupt(what));
            }
            Err(err) => {
                let delay = self.backoff.next_delay();
                warn!(store = %self.store.describe(), err = %error_chain(&err), ?delay, "cannot load the system register; retrying");
                myself.send_after(delay, || SystemRegisterAuthorityMsg::Load);
            }
        }
    }

    /// Genesis: the register with its seeded blueprint. Another hub may win the race.
    async fn create(&mut self) -> Result<Result<Register, String>, BlueprintStoreError> {
        let now = self.clock.now();
        let genesis = Genesis {
            register_id: RegisterId::system(),
            history_id: HistoryId::from_bytes(rand::random()),
            created_at: now,
            created_by: self.hub_id.clone(),
        };
        let seed = EntryDraft {
            blueprint_id: BlueprintId::seed(),
            kind: EntryKind::Published,
            document: Bytes::from_static(SEED_DOCUMENT.as_bytes()),
            published_at: now,
            published_by: self.hub_id.to_string(),
            transaction_id: transaction_id(),
            metadata: BTreeMap::new(),
        };
        match self.store.create(&genesis, vec![seed]).await {
            Ok(entries) => {
                info!(history = %genesis.history_id, "system register created with its seeded blueprint");
                Ok(Register::validated(StoredRegister { genesis, entries }))
            }
            Err(BlueprintStoreError::AlreadyCreated) => match self.store.load().await? {
                Some(stored) => Ok(Register::validated(stored)),
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
        let backoff_config = self.config.store_backoff;
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
        self.tasks.push(task);
    }

    fn ready(&self) -> Result<(), AuthorityError> {
        match &self.register.state {
            Some(RegisterState::Ready) => Ok(()),
            Some(RegisterState::Corrupt(reason)) => Err(AuthorityError::NotReady(format!(
                "the system register is corrupt: {reason}"
            ))),
            _ => Err(AuthorityError::NotReady(
                "still loading the system register".into(),
            )),
        }
    }

    async fn publish(
        &mut self,
        request: PublishRequest,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        self.ready()?;
        request.validate()?;
        self.catch_up().await.map_err(unavailable)?;
        let kind = match self.register.latest.get(&request.blueprint_id) {
            Some(current) if current.is_active => EntryKind::Updated,
            _ => EntryKind::Published,
        };
        let draft = EntryDraft {
            blueprint_id: request.blueprint_id,
            kind,
            document: request.document,
            published_at: self.clock.now(),
            published_by: request.published_by,
            transaction_id: transaction_id(),
            metadata: request.metadata,
        };
        self.append(draft).await
    }

    async fn deprecate(
        &mut self,
        blueprint_id: BlueprintId,
        by: String,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        self.ready()?;
        self.catch_up().await.map_err(unavailable)?;
        let current = self
            .register
            .latest
            .get(&blueprint_id)
            .ok_or_else(|| AuthorityError::NotFound(blueprint_id.clone()))?;
        if !current.is_active {
            return Err(AuthorityError::AlreadyDeprecated(blueprint_id));
        }
        let draft = EntryDraft {
            blueprint_id,
            kind: EntryKind::Deprecated,
            document: current.document.clone(),
            published_at: self.clock.now(),
            published_by: by,
            transaction_id: transaction_id(),
            metadata: current.metadata.clone(),
        };
        self.append(draft).await
    }

    async fn append(
        &mut self,
        draft: EntryDraft,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        let entry = self.store.append(draft).await.map_err(unavailable)?;
        // Entries appended by other hubs before ours come first.
        if entry.version > self.register.version() + 1 {
            self.catch_up().await.map_err(unavailable)?;
        }
        if entry.version <= self.register.version() {
            // Already taken in by the catch-up.
            return Ok(self
                .register
                .log
                .iter()
                .rev()
                .find(|logged| logged.version == entry.version)
                .cloned()
                .unwrap_or_else(|| Arc::new(entry)));
        }
        let entry = Arc::new(entry);
        self.take(Arc::clone(&entry));
        info!(blueprint = %entry.blueprint_id, version = entry.version, kind = ?entry.kind, by = %entry.published_by, "system register entry appended");
        metrics::counter!("herald_hub_publications_total", "node" => self.hub_id.to_string())
            .increment(1);
        Ok(entry)
    }

    /// Takes in the entries appended after our version (by other hubs sharing the store).
    async fn catch_up(&mut self) -> Result<(), BlueprintStoreError> {
        let entries = self.store.entries_after(self.register.version()).await?;
        for entry in entries {
            if entry.version <= self.register.version() {
                continue;
            }
            if !entry.checksum_holds() {
                error!(version = entry.version, blueprint = %entry.blueprint_id, "entry from the shared store does not match its checksum; ignored");
                continue;
            }
            self.take(Arc::new(entry));
        }
        Ok(())
    }

    /// Adds an entry to the register and tells every subscriber.
    fn take(&mut self, entry: Arc<SystemRegisterEntry>) {
        self.register.push(Arc::clone(&entry));
        let history_id = self
            .register
            .genesis
            .as_ref()
            .map(|genesis| genesis.history_id.clone())
            .expect("a ready register has a genesis");
        let hub = self.hub_id.to_string();
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
                sequence: subscriber.sequence,
            };
            match subscriber.queue.try_send(notification) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(peer = %subscriber.peer_id, "subscriber too slow; dropping its push subscription");
                    metrics::counter!("herald_hub_subscribers_dropped_total", "node" => hub.clone())
                        .increment(1);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    fn connect(&mut self, request: ConnectRequest) -> Result<SessionGrant, AuthorityError> {
        if request.node_type == NodeType::Hub {
            warn!(caller = %request.peer_id, "a hub tried to connect to this hub: configuration error (hubs never dial hubs)");
            return Err(AuthorityError::HubCaller(request.peer_id));
        }
        self.ready()?;
        let now = self.clock.now();
        let session_id = SessionId::new(RegisterId::from_bytes(rand::random()).to_string());
        self.drop_subscriptions_of(&request.peer_id);
        let session = PeerSession {
            session_id: session_id.clone(),
            address: request.address,
            connected_at: now,
            last_seen_at: now,
            last_heartbeat_at: None,
            last_sync_version: request.last_known_version,
        };
        let replaced = self
            .sessions
            .insert(request.peer_id.clone(), session)
            .is_some();
        info!(peer = %request.peer_id, %session_id, replaced, "peer connected");
        Ok(SessionGrant {
            session_id,
            hub_id: self.hub_id.clone(),
            history_id: self.history_id(),
            version: self.register.version(),
            connected_at: now,
            heartbeat_interval: self.config.heartbeat_interval,
            heartbeat_timeout: self.config.heartbeat_timeout,
            sync_interval: self.config.sync_interval,
        })
    }

    fn disconnect(
        &mut self,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<(), AuthorityError> {
        self.session_mut(peer_id, session_id)?;
        self.sessions.remove(peer_id);
        self.drop_subscriptions_of(peer_id);
        info!(peer = %peer_id, "peer disconnected");
        Ok(())
    }

    fn heartbeat(&mut self, beat: HeartbeatRequest) -> Result<HeartbeatAck, AuthorityError> {
        self.ready()?;
        let now = self.clock.now();
        let version = self.register.version();
        let session = self.session_mut(&beat.peer_id, &beat.session_id)?;
        session.last_seen_at = now;
        session.last_heartbeat_at = Some(now);
        session.last_sync_version = beat.last_sync_version;
        let action = if beat.last_sync_version < version {
            RecommendedAction::Sync
        } else {
            RecommendedAction::None
        };
        debug!(peer = %beat.peer_id, sequence = beat.sequence, ?action, "heartbeat");
        Ok(HeartbeatAck {
            hub_id: self.hub_id.clone(),
            history_id: self.history_id(),
            version,
            action,
            received_at: now,
        })
    }

    fn entry_set(&self, scope: &SyncScope) -> Result<EntrySet, AuthorityError> {
        self.ready()?;
        Ok(EntrySet {
            history_id: self.history_id(),
            version: self.register.version(),
            entries: self.register.entries(scope),
        })
    }

    fn subscribe(
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

    /// Forgets peers silent for longer than `session_expiry`, and subscriptions whose session
    /// is gone.
    fn sweep(&mut self) {
        let now = self.clock.now();
        let expiry = self.config.session_expiry;
        let silent: Vec<NodeId> = self
            .sessions
            .iter()
            .filter(|(_, session)| now.since(session.last_seen_at) > expiry)
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in silent {
            info!(%peer, ?expiry, "peer silent for too long; session dropped");
            self.sessions.remove(&peer);
        }
        let sessions = &self.sessions;
        self.subscribers.retain(|subscriber| {
            sessions
                .get(&subscriber.peer_id)
                .is_some_and(|session| session.session_id == subscriber.session_id)
                && !subscriber.queue.is_closed()
        });
    }

    fn history_id(&self) -> HistoryId {
        self.register
            .genesis
            .as_ref()
            .map(|genesis| genesis.history_id.clone())
            .expect("a ready register has a genesis")
    }

    fn view(&self) -> SystemRegisterView {
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
            history_id: self.register.genesis.as_ref().map(|g| g.history_id.clone()),
            version: self.register.version(),
            total_blueprints: blueprints.len(),
            blueprints,
        }
    }

    fn status(&self) -> HubStatus {
        HubStatus {
            hub_id: self.hub_id.clone(),
            state: self
                .register
                .state
                .clone()
                .unwrap_or(RegisterState::Loading),
            history_id: self.register.genesis.as_ref().map(|g| g.history_id.clone()),
            version: self.register.version(),
            total_blueprints: self
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

    fn peers(&self) -> Vec<HubPeer> {
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
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        peers
    }

    fn publish_metrics(&self) {
        let node = self.hub_id.to_string();
        metrics::gauge!("herald_hub_register_version", "node" => node.clone())
            .set(self.register.version() as f64);
        metrics::gauge!("herald_hub_sessions", "node" => node.clone())
            .set(self.sessions.len() as f64);
        metrics::gauge!("herald_hub_subscribers", "node" => node)
            .set(self.subscribers.len() as f64);
    }
}

/// The document of the blueprint seeded at genesis: how a register is created.
const SEED_DOCUMENT: &str = r#"{"id":"register-creation-v1","title":"Register creation","version":1,"participants":[{"id":"requester","role":"register owner"},{"id":"hub","role":"system register authority"}],"actions":[{"id":0,"title":"Request a register","sender":"requester","fields":["name","description","advertise"]},{"id":1,"title":"Create the register","sender":"hub"}]}"#;

fn transaction_id() -> String {
    RegisterId::from_bytes(rand::random()).to_string()
}

fn unavailable(err: BlueprintStoreError) -> AuthorityError {
    AuthorityError::Unavailable(error_chain(&err))
}

fn message_name(msg: &SystemRegisterAuthorityMsg) -> &'static str {
    match msg {
        SystemRegisterAuthorityMsg::Publish(..) => "publish",
        SystemRegisterAuthorityMsg::Deprecate { .. } => "deprecate",
        SystemRegisterAuthorityMsg::Connect(..) => "connect",
        SystemRegisterAuthorityMsg::Disconnect { .. } => "disconnect",
        SystemRegisterAuthorityMsg::Heartbeat(..) => "heartbeat",
        SystemRegisterAuthorityMsg::Entries { .. } => "entries",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64, blueprint: &str, document: &'static str) -> SystemRegisterEntry {
        EntryDraft {
            blueprint_id: BlueprintId::parse(blueprint).unwrap(),
            kind: EntryKind::Published,
            document: Bytes::from_static(document.as_bytes()),
            published_at: Timestamp::EPOCH,
            published_by: "hub".into(),
            transaction_id: "t".into(),
            metadata: BTreeMap::new(),
        }
        .at_version(version)
    }

    fn stored(entries: Vec<SystemRegisterEntry>) -> StoredRegister {
        StoredRegister {
            genesis: Genesis {
                register_id: RegisterId::system(),
                history_id: HistoryId::from_bytes([7; 16]),
                created_at: Timestamp::EPOCH,
                created_by: NodeId::parse("hub-1").unwrap(),
            },
            entries,
        }
    }

    #[test]
    fn a_sound_register_validates() {
        let register =
            Register::validated(stored(vec![entry(1, "a", "{}"), entry(2, "b", "[]")])).unwrap();
        assert_eq!(register.version(), 2);
        assert_eq!(register.entries(&SyncScope::After(1)).len(), 1);
        assert_eq!(register.entries(&SyncScope::Full).len(), 2);
    }

    #[test]
    fn every_corruption_is_detected() {
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
            let problem = Register::validated(register).unwrap_err();
            assert!(problem.contains(expected), "{problem}");
        }
    }

    #[test]
    fn full_scope_lists_every_blueprints_latest_entry_deprecations_included() {
        let mut register =
            Register::validated(stored(vec![entry(1, "a", "{}"), entry(2, "b", "[]")])).unwrap();
        let mut deprecated = entry(3, "a", "{}");
        deprecated.is_active = false;
        deprecated.kind = EntryKind::Deprecated;
        register.push(Arc::new(deprecated));
        register.push(Arc::new(entry(4, "b", "[2]")));
        let full: Vec<u64> = register
            .entries(&SyncScope::Full)
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(full, vec![3, 4]);
        let after: Vec<u64> = register
            .entries(&SyncScope::After(2))
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(after, vec![3, 4]);
    }
}
