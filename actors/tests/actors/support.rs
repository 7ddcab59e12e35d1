//! A node's supervision tree built from fakes, and small helpers.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use ractor::ActorRef;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use herald_actors::hub_link::PartitionableHubLink;
use herald_actors::ports::{Clock, HubLink, HubLinkError, SyncedEntries};
use herald_actors::testing::{
    InMemoryAdStore, InMemoryBlueprintStore, InMemoryGroundTruth, InMemoryReplicaStore, LinkSwitch,
    SwitchablePoolLink,
};
use herald_actors::{
    ActorSlot, AuthorityConfig, ConnectionConfig, HeartbeatConfig, HubConnectionParts,
    LocalHubLink, LocalPoolLink, NodeTree, NodeViews, PoolConfig, ReplicaConfig, RestartPolicy,
    ResyncConfig, StallDetector, StallTicker, TokioClock,
};
use herald_messages::{
    AdInput, AdvertisementPoolMsg, AuthorityError, AvailableRegister, BlueprintId,
    BlueprintNotification, BulkAdvertise, BulkOutcome, CentralNodeConnectionMsg, ChildKind,
    ChildReport, ConnectRequest, ConnectionState, ConnectionStatus, EntrySet, HeartbeatAck,
    HeartbeatMonitorMsg, HeartbeatReport, HeartbeatRequest, HubEndpoint, HubPeer, HubReport,
    HubSession, HubStatus, NewRegister, NodeFailure, NodeId, NodeSupervisorMsg, NodeType,
    PoolError, PoolStatus, PublishRequest, Register, RegisterId, RegisterState, ReplicaStatus,
    ResyncDriverMsg, SessionGrant, SessionId, Subscription, SyncQuery, SyncScope,
    SystemRegisterAuthorityMsg, SystemRegisterEntry, SystemRegisterReplicaMsg, SystemRegisterView,
    Timestamp, Valid, Validate,
};

pub const CALL: Duration = Duration::from_secs(5);

/// What a test node is made of.
pub struct Options {
    pub pool: Option<PoolConfig>,
    pub resync: Option<ResyncConfig>,
    /// Start with the link to the pool cut.
    pub link_down: bool,
    pub policy: RestartPolicy,
    pub store: InMemoryAdStore,
    pub truth: InMemoryGroundTruth,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            pool: Some(PoolConfig::default()),
            resync: None,
            link_down: false,
            policy: RestartPolicy::default(),
            store: InMemoryAdStore::new(),
            truth: InMemoryGroundTruth::new(),
        }
    }
}

/// A supervision tree like the runtime builds, on fakes.
pub struct TestNode {
    pub supervisor: ActorRef<NodeSupervisorMsg>,
    pub join: JoinHandle<()>,
    pub pool: ActorSlot<AdvertisementPoolMsg>,
    pub driver: ActorSlot<ResyncDriverMsg>,
    pub store: InMemoryAdStore,
    pub truth: InMemoryGroundTruth,
    pub link: Option<LinkSwitch>,
    pub failure: watch::Receiver<Option<NodeFailure>>,
    pub views: NodeViews,
}

pub async fn start(options: Options) -> TestNode {
    let node_id = NodeId::parse("node-under-test").unwrap();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let mut tree = NodeTree::new(node_id, clock);
    // A node without a pool still needs the slot the driver's link points at.
    let pool = match options.pool {
        Some(config) => tree.pool(config, Arc::new(options.store.clone())),
        None => ActorSlot::new(ChildKind::AdvertisementPool),
    };
    let mut link_switch = None;
    let driver = match options.resync {
        Some(config) => {
            let (link, switch) =
                SwitchablePoolLink::new(LocalPoolLink::new(pool.clone(), CALL), options.link_down);
            link_switch = Some(switch);
            tree.resync_driver(config, Arc::new(options.truth.clone()), Arc::new(link))
        }
        None => ActorSlot::new(ChildKind::ResyncDriver),
    };
    let tree = tree.start(options.policy).await.unwrap();
    TestNode {
        supervisor: tree.supervisor,
        join: tree.join,
        pool,
        driver,
        store: options.store,
        truth: options.truth,
        link: link_switch,
        failure: tree.failure,
        views: tree.views,
    }
}

impl TestNode {
    pub async fn bulk(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolError> {
        let request = request.validated()?;
        self.pool
            .call(|reply| AdvertisementPoolMsg::Bulk(request, reply), CALL)
            .await
            .unwrap()
    }

    pub async fn advertise(&self, input: AdInput) -> BulkOutcome {
        self.bulk(BulkAdvertise::one(input)).await.unwrap()
    }

    pub async fn available(&self) -> Vec<AvailableRegister> {
        self.pool
            .call(AdvertisementPoolMsg::Available, CALL)
            .await
            .unwrap()
    }

    pub async fn available_ids(&self) -> Vec<RegisterId> {
        self.available()
            .await
            .into_iter()
            .map(|a| a.register_id)
            .collect()
    }

    pub async fn status(&self) -> PoolStatus {
        self.pool
            .call(AdvertisementPoolMsg::Status, CALL)
            .await
            .unwrap()
    }

    pub async fn children(&self) -> Vec<ChildReport> {
        ractor::call_t!(self.supervisor, NodeSupervisorMsg::Children, 5_000).unwrap()
    }

    pub async fn restarts(&self, kind: ChildKind) -> u32 {
        self.children()
            .await
            .into_iter()
            .find(|c| c.kind == kind)
            .map_or(0, |c| c.restarts)
    }

    pub async fn create(&self, n: u8, advertise: bool) -> Register {
        let new = NewRegister {
            register_id: Some(id(n)),
            name: format!("register {n}"),
            description: Some(format!("description {n}")),
            advertise,
            latest_version: u64::from(n),
            latest_docket_version: 0,
        };
        self.driver
            .call(
                |reply| ResyncDriverMsg::CreateRegister(valid(new), reply),
                CALL,
            )
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn sync_state(&self) -> herald_messages::AdvertisementSyncState {
        self.driver
            .call(ResyncDriverMsg::SyncState, CALL)
            .await
            .unwrap()
    }

    /// Stops the tree as the runtime does, and checks nothing had to be killed.
    pub async fn shutdown(self) {
        let killed = ractor::call_t!(self.supervisor, NodeSupervisorMsg::Shutdown, 60_000).unwrap();
        assert!(killed.is_empty(), "children had to be killed: {killed:?}");
        self.join.await.unwrap();
    }
}

/// A request validated as `NodeApi` and the links validate it on its way in.
pub fn valid<T: Validate>(request: T) -> Valid<T> {
    request.validated().unwrap()
}

pub fn id(n: u8) -> RegisterId {
    RegisterId::from_bytes([n; 16])
}

pub fn public(n: u8) -> AdInput {
    AdInput {
        name: Some(format!("register {n}").into()),
        latest_version: u64::from(n),
        ..AdInput::public(id(n))
    }
}

/// Lets virtual time pass (timers fire, actors run).
pub async fn pass(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// This whole process stalls for `length` (SIGSTOP, a paused VM): the clock jumps while no task
/// runs, and every timer that fell due meanwhile fires at once afterwards, in any order. The
/// stall detector's ticker is late like everything else, and sees it.
pub async fn stall_process(length: Duration) {
    tokio::time::advance(length).await;
}

/// Polls on virtual time until `check` holds, for at most `deadline`.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < deadline,
            "not within {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Hub and peer trees (spec 001, user story 4)
// ---------------------------------------------------------------------------------------------

pub fn node(name: &str) -> NodeId {
    NodeId::parse(name).unwrap()
}

pub fn blueprint(name: &str) -> BlueprintId {
    BlueprintId::parse(name).unwrap()
}

async fn children_of(supervisor: &ActorRef<NodeSupervisorMsg>) -> Vec<ChildReport> {
    ractor::call_t!(supervisor, NodeSupervisorMsg::Children, 5_000).unwrap()
}

async fn shutdown_tree(supervisor: ActorRef<NodeSupervisorMsg>, join: JoinHandle<()>) {
    let killed = ractor::call_t!(supervisor, NodeSupervisorMsg::Shutdown, 60_000).unwrap();
    assert!(killed.is_empty(), "children had to be killed: {killed:?}");
    join.await.unwrap();
}

/// A hub's supervision tree: a `NodeSupervisor` with one `SystemRegisterAuthority` child over
/// an in-memory blueprint store.
pub struct TestHub {
    pub id: NodeId,
    pub supervisor: ActorRef<NodeSupervisorMsg>,
    pub join: JoinHandle<()>,
    pub authority: ActorSlot<SystemRegisterAuthorityMsg>,
    pub store: InMemoryBlueprintStore,
    pub failure: watch::Receiver<Option<NodeFailure>>,
}

pub async fn start_hub(
    id: &str,
    store: InMemoryBlueprintStore,
    config: AuthorityConfig,
) -> TestHub {
    let hub_id = node(id);
    let mut tree = NodeTree::new(hub_id.clone(), Arc::new(TokioClock::new()));
    let authority = tree.authority(config, Arc::new(store.clone()));
    let tree = tree.start(RestartPolicy::default()).await.unwrap();
    TestHub {
        id: hub_id,
        supervisor: tree.supervisor,
        join: tree.join,
        authority,
        store,
        failure: tree.failure,
    }
}

impl TestHub {
    pub async fn status(&self) -> HubStatus {
        self.authority
            .call(SystemRegisterAuthorityMsg::Status, CALL)
            .await
            .unwrap()
    }

    pub async fn view(&self) -> SystemRegisterView {
        self.authority
            .call(SystemRegisterAuthorityMsg::View, CALL)
            .await
            .unwrap()
    }

    pub async fn version(&self) -> u64 {
        self.view().await.version
    }

    /// Waits until the register is loaded (or created) and validated.
    pub async fn ready(&self) -> HubStatus {
        eventually("the hub is ready", Duration::from_secs(30), || async {
            self.status().await.state == RegisterState::Ready
        })
        .await;
        self.status().await
    }

    pub async fn publish(
        &self,
        blueprint_id: &str,
        document: &str,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        let request = PublishRequest {
            blueprint_id: blueprint(blueprint_id),
            document: Bytes::from(document.to_owned()),
            published_by: "admin".into(),
            metadata: BTreeMap::new(),
        };
        // Validated on the way in, as `NodeApi` does.
        let request = request.validated().map_err(AuthorityError::Invalid)?;
        self.authority
            .call(
                |reply| SystemRegisterAuthorityMsg::Publish(request, reply),
                CALL,
            )
            .await
            .unwrap()
    }

    pub async fn deprecate(
        &self,
        blueprint_id: &str,
    ) -> Result<Arc<SystemRegisterEntry>, AuthorityError> {
        let blueprint_id = blueprint(blueprint_id);
        self.authority
            .call(
                |reply| SystemRegisterAuthorityMsg::Deprecate {
                    blueprint_id,
                    by: "admin".into(),
                    reply,
                },
                CALL,
            )
            .await
            .unwrap()
    }

    pub async fn connect_as(
        &self,
        peer: &str,
        node_type: NodeType,
    ) -> Result<SessionGrant, AuthorityError> {
        let request = ConnectRequest {
            peer_id: node(peer),
            node_type,
            address: format!("http://{peer}:8080"),
            last_known_version: 0,
            last_known_digest: None,
        };
        self.authority
            .call(
                |reply| SystemRegisterAuthorityMsg::Connect(request, reply),
                CALL,
            )
            .await
            .unwrap()
    }

    pub async fn connect(&self, peer: &str) -> Result<SessionGrant, AuthorityError> {
        self.connect_as(peer, NodeType::Peer).await
    }

    pub async fn heartbeat(
        &self,
        peer: &str,
        session_id: &SessionId,
        last_sync_version: u64,
    ) -> Result<HeartbeatAck, AuthorityError> {
        let beat = HeartbeatRequest {
            peer_id: node(peer),
            session_id: session_id.clone(),
            sequence: 1,
            last_sync_version,
            last_sync_digest: None,
            sent_at: Timestamp::EPOCH,
        };
        self.authority
            .call(
                |reply| SystemRegisterAuthorityMsg::Heartbeat(beat, reply),
                CALL,
            )
            .await
            .unwrap()
    }

    /// The entries of a sync by `peer` in its session.
    pub async fn entries(
        &self,
        peer: &str,
        session_id: &SessionId,
        scope: SyncScope,
    ) -> Result<EntrySet, AuthorityError> {
        let query = SyncQuery {
            peer_id: node(peer),
            session_id: session_id.clone(),
            scope,
            history_id: None,
            digest: None,
        };
        self.authority
            .call(
                |reply| SystemRegisterAuthorityMsg::Entries { query, reply },
                CALL,
            )
            .await
            .unwrap()
    }

    pub async fn subscribe(
        &self,
        peer: &str,
        session_id: &SessionId,
    ) -> Result<Subscription, AuthorityError> {
        let (peer_id, session_id) = (node(peer), session_id.clone());
        self.authority
            .call(
                |reply| SystemRegisterAuthorityMsg::Subscribe {
                    peer_id,
                    session_id,
                    reply,
                },
                CALL,
            )
            .await
            .unwrap()
    }

    pub async fn peers(&self) -> Vec<HubPeer> {
        self.authority
            .call(SystemRegisterAuthorityMsg::Peers, CALL)
            .await
            .unwrap()
    }

    pub async fn restarts(&self) -> u32 {
        restarts_of(&self.supervisor, ChildKind::SystemRegisterAuthority).await
    }

    /// Kills the authority as a crash would; the supervisor restarts it.
    pub async fn kill(&self) {
        let killed = ractor::call_t!(
            self.supervisor,
            NodeSupervisorMsg::Kill,
            5_000,
            ChildKind::SystemRegisterAuthority
        )
        .unwrap();
        assert!(killed, "the authority was running");
    }

    pub async fn shutdown(self) {
        shutdown_tree(self.supervisor, self.join).await;
    }
}

async fn restarts_of(supervisor: &ActorRef<NodeSupervisorMsg>, kind: ChildKind) -> u32 {
    children_of(supervisor)
        .await
        .into_iter()
        .find(|child| child.kind == kind)
        .map_or(0, |child| child.restarts)
}

/// The link the peers of the tests use: `PartitionableHubLink<LocalHubLink>` (cut a hub off
/// entirely: calls fail at once), plus two faults it cannot play: push notifications lost while
/// everything else works, and a hub that answers late (or, held, never within any deadline: a
/// black hole rather than a refusal).
#[derive(Clone)]
pub struct TestLink {
    pub partition: PartitionableHubLink<LocalHubLink>,
    pushes_muted: Arc<AtomicBool>,
    heartbeats_refused: Arc<AtomicBool>,
    syncs_tampered: Arc<AtomicBool>,
    delays: Arc<Mutex<HashMap<NodeId, Duration>>>,
}

/// The delay of a held hub: far beyond every deadline.
const HELD_FOR: Duration = Duration::from_secs(3_600);

impl TestLink {
    pub fn new(hubs: &[TestHub]) -> Self {
        let local = hubs.iter().fold(LocalHubLink::new(), |link, hub| {
            link.with_hub(hub.id.clone(), hub.authority.clone())
        });
        Self {
            partition: PartitionableHubLink::new(local),
            pushes_muted: Arc::default(),
            heartbeats_refused: Arc::default(),
            syncs_tampered: Arc::default(),
            delays: Arc::default(),
        }
    }

    /// Cuts (true) or restores (false) the way to a hub: calls fail at once.
    pub fn set_cut(&self, hub: &NodeId, cut: bool) {
        self.partition.set_cut(hub, cut);
    }

    /// Makes every hub refuse (true) heartbeats, as a hub refuses those of a peer whose clock is
    /// more than 60 s off.
    pub fn refuse_heartbeats(&self, refused: bool) {
        self.heartbeats_refused.store(refused, Ordering::SeqCst);
    }

    /// Changes (true) the document of every synced entry on its way, keeping its checksum.
    pub fn tamper_syncs(&self, tampered: bool) {
        self.syncs_tampered.store(tampered, Ordering::SeqCst);
    }

    /// Drops (true) every push notification on its way, leaving the streams open.
    pub fn mute_pushes(&self, muted: bool) {
        self.pushes_muted.store(muted, Ordering::SeqCst);
    }

    /// Makes calls to a hub hang (true) until their caller's deadline.
    pub fn set_held(&self, hub: &NodeId, held: bool) {
        self.set_delay(hub, if held { HELD_FOR } else { Duration::ZERO });
    }

    /// Makes calls to a hub wait `delay` before they go through (calls under way keep theirs).
    pub fn set_delay(&self, hub: &NodeId, delay: Duration) {
        let mut delays = self.delays.lock().unwrap();
        if delay.is_zero() {
            delays.remove(hub);
        } else {
            delays.insert(hub.clone(), delay);
        }
    }

    pub fn calls_to(&self, hub: &NodeId) -> u64 {
        self.partition.calls_to(hub)
    }

    /// Waits the hub's delay, if it has one.
    async fn pass(&self, hub: &HubEndpoint) {
        let delay = self.delays.lock().unwrap().get(&hub.id).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait]
impl HubLink for TestLink {
    async fn connect(
        &self,
        hub: &HubEndpoint,
        request: ConnectRequest,
        deadline: Duration,
    ) -> Result<SessionGrant, HubLinkError> {
        self.pass(hub).await;
        self.partition.connect(hub, request, deadline).await
    }

    async fn heartbeat(
        &self,
        hub: &HubEndpoint,
        beat: HeartbeatRequest,
        deadline: Duration,
    ) -> Result<HeartbeatAck, HubLinkError> {
        self.pass(hub).await;
        if self.heartbeats_refused.load(Ordering::SeqCst) {
            return Err(HubLinkError::Refused(
                "invalid timestamp: more than 60 s from the hub's clock".into(),
            ));
        }
        self.partition.heartbeat(hub, beat, deadline).await
    }

    async fn sync(
        &self,
        hub: &HubEndpoint,
        query: SyncQuery,
        deadline: Duration,
    ) -> Result<SyncedEntries, HubLinkError> {
        self.pass(hub).await;
        let mut synced = self.partition.sync(hub, query, deadline).await?;
        if self.syncs_tampered.load(Ordering::SeqCst) {
            for entry in &mut synced.entries {
                entry.document = br#"{"tampered":true}"#.as_slice().into();
            }
        }
        Ok(synced)
    }

    async fn subscribe(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<BoxStream<'static, BlueprintNotification>, HubLinkError> {
        self.pass(hub).await;
        let notifications = self.partition.subscribe(hub, peer_id, session_id).await?;
        let muted = Arc::clone(&self.pushes_muted);
        Ok(notifications
            .filter(move |_| std::future::ready(!muted.load(Ordering::SeqCst)))
            .boxed())
    }

    async fn disconnect(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<(), HubLinkError> {
        self.pass(hub).await;
        self.partition.disconnect(hub, peer_id, session_id).await
    }
}

/// Hubs `n0`, `n1`, … (priority = index) and the link that reaches them.
pub struct Cluster {
    pub hubs: Vec<TestHub>,
    pub link: TestLink,
    pub endpoints: Vec<HubEndpoint>,
}

/// `count` hubs sharing one blueprint store, as hubs sharing Redis do: one history.
pub async fn start_cluster(count: usize) -> Cluster {
    let store = InMemoryBlueprintStore::new();
    start_cluster_on((0..count).map(|_| store.clone()).collect()).await
}

/// One hub per store, started in order and ready.
pub async fn start_cluster_on(stores: Vec<InMemoryBlueprintStore>) -> Cluster {
    start_cluster_with(stores, AuthorityConfig::default()).await
}

/// One hub per store, each with `config`, started in order and ready.
pub async fn start_cluster_with(
    stores: Vec<InMemoryBlueprintStore>,
    config: AuthorityConfig,
) -> Cluster {
    let mut hubs = Vec::new();
    for (index, store) in stores.into_iter().enumerate() {
        let hub = start_hub(&format!("n{index}"), store, config.clone()).await;
        hub.ready().await;
        hubs.push(hub);
    }
    cluster_of(hubs)
}

/// A cluster of hubs started (and ready) already, in priority order.
pub fn cluster_of(hubs: Vec<TestHub>) -> Cluster {
    let endpoints = hubs
        .iter()
        .enumerate()
        .map(|(index, hub)| HubEndpoint {
            id: hub.id.clone(),
            url: format!("local://{}", hub.id),
            priority: u32::try_from(index).unwrap(),
        })
        .collect();
    Cluster {
        link: TestLink::new(&hubs),
        hubs,
        endpoints,
    }
}

impl Cluster {
    pub fn hub(&self, index: usize) -> &TestHub {
        &self.hubs[index]
    }

    pub fn id(&self, index: usize) -> NodeId {
        self.hubs[index].id.clone()
    }

    pub fn cut(&self, index: usize, cut: bool) {
        self.link.set_cut(&self.id(index), cut);
    }

    /// A peer configured with every hub of the cluster.
    pub async fn start_peer(&self, id: &str, options: PeerOptions) -> TestPeer {
        start_peer(
            id,
            self.endpoints.clone(),
            Arc::new(self.link.clone()),
            options,
        )
        .await
    }

    pub async fn shutdown(self) {
        for hub in self.hubs {
            hub.shutdown().await;
        }
    }
}

/// What a test peer is made of; the defaults are the production defaults.
pub struct PeerOptions {
    pub connection: ConnectionConfig,
    pub heartbeat: HeartbeatConfig,
    pub replica: ReplicaConfig,
    pub store: InMemoryReplicaStore,
    pub policy: RestartPolicy,
    /// Period of the peer's stall detector.
    pub stall_tick: Duration,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            replica: ReplicaConfig::default(),
            store: InMemoryReplicaStore::new(),
            policy: RestartPolicy::default(),
            stall_tick: herald_actors::DEFAULT_STALL_TICK,
        }
    }
}

/// A peer's supervision tree: `CentralNodeConnection`, `HeartbeatMonitor` and
/// `SystemRegisterReplica` under a `NodeSupervisor`, reaching each other through slots.
pub struct TestPeer {
    pub id: NodeId,
    pub supervisor: ActorRef<NodeSupervisorMsg>,
    pub join: JoinHandle<()>,
    pub connection: ActorSlot<CentralNodeConnectionMsg>,
    pub monitor: ActorSlot<HeartbeatMonitorMsg>,
    pub replica: ActorSlot<SystemRegisterReplicaMsg>,
    pub store: InMemoryReplicaStore,
    pub failure: watch::Receiver<Option<NodeFailure>>,
    /// The peer's stall detector and its ticker, as the runtime runs one per node.
    pub stalls: Arc<StallDetector>,
    stall_ticker: StallTicker,
}

pub async fn start_peer(
    id: &str,
    hubs: Vec<HubEndpoint>,
    link: Arc<dyn HubLink>,
    options: PeerOptions,
) -> TestPeer {
    let peer_id = node(id);
    let stalls = Arc::new(StallDetector::new(
        options.stall_tick,
        tokio::time::Instant::now(),
    ));
    let stall_ticker = stalls.start(&peer_id);
    let mut tree = NodeTree::new(peer_id.clone(), Arc::new(TokioClock::new()));
    let slots = tree.hub_connection(HubConnectionParts {
        address: format!("http://{id}:8080"),
        connection: ConnectionConfig {
            hubs,
            ..options.connection
        },
        heartbeat: options.heartbeat,
        replica: options.replica,
        replica_store: Arc::new(options.store.clone()),
        link,
        stalls: Arc::clone(&stalls),
    });
    let tree = tree.start(options.policy).await.unwrap();
    TestPeer {
        id: peer_id,
        supervisor: tree.supervisor,
        join: tree.join,
        connection: slots.connection,
        monitor: slots.monitor,
        replica: slots.replica,
        store: options.store,
        failure: tree.failure,
        stalls,
        stall_ticker,
    }
}

impl TestPeer {
    pub async fn connection_status(&self) -> ConnectionStatus {
        self.connection
            .call(CentralNodeConnectionMsg::Status, CALL)
            .await
            .unwrap()
    }

    pub async fn hub_reports(&self) -> Vec<HubReport> {
        self.connection
            .call(CentralNodeConnectionMsg::Hubs, CALL)
            .await
            .unwrap()
    }

    /// The hub this peer holds a session with, if any.
    pub async fn hub(&self) -> Option<NodeId> {
        let status = self.connection_status().await;
        (status.state == ConnectionState::Connected)
            .then_some(status.hub_id)
            .flatten()
    }

    pub async fn session(&self) -> Option<HubSession> {
        self.connection
            .call(CentralNodeConnectionMsg::Current, CALL)
            .await
            .unwrap()
    }

    pub async fn heartbeats(&self) -> HeartbeatReport {
        self.monitor
            .call(HeartbeatMonitorMsg::Status, CALL)
            .await
            .unwrap()
    }

    pub async fn replica_status(&self) -> ReplicaStatus {
        self.replica
            .call(SystemRegisterReplicaMsg::Status, CALL)
            .await
            .unwrap()
    }

    pub async fn view(&self) -> SystemRegisterView {
        self.replica
            .call(SystemRegisterReplicaMsg::View, CALL)
            .await
            .unwrap()
    }

    pub async fn version(&self) -> u64 {
        self.view().await.version
    }

    pub async fn get(&self, blueprint_id: &str) -> Option<Arc<SystemRegisterEntry>> {
        let id = blueprint(blueprint_id);
        self.replica
            .call(|reply| SystemRegisterReplicaMsg::Get(id, reply), CALL)
            .await
            .unwrap()
    }

    /// Waits until the peer holds a session with `hub`.
    pub async fn connected_to(&self, hub: &NodeId, deadline: Duration) {
        eventually(&format!("connected to {hub}"), deadline, || async {
            self.hub().await.as_ref() == Some(hub)
        })
        .await;
    }

    /// Waits until the replica holds everything up to `version`.
    pub async fn synced_to(&self, version: u64, deadline: Duration) {
        eventually(
            &format!("the replica reaches version {version}"),
            deadline,
            || async {
                let status = self.replica_status().await;
                !status.syncing && self.version().await >= version
            },
        )
        .await;
    }

    pub async fn restarts(&self, kind: ChildKind) -> u32 {
        restarts_of(&self.supervisor, kind).await
    }

    pub async fn children(&self) -> Vec<ChildReport> {
        children_of(&self.supervisor).await
    }

    /// Kills a child as a crash would; the supervisor restarts it.
    pub async fn kill(&self, kind: ChildKind) {
        let killed =
            ractor::call_t!(self.supervisor, NodeSupervisorMsg::Kill, 5_000, kind).unwrap();
        assert!(killed, "{kind} was running");
    }

    /// Stops the tree, then the stall detector's ticker, as the runtime does.
    pub async fn shutdown(self) {
        shutdown_tree(self.supervisor, self.join).await;
        self.stall_ticker.stop().await;
    }
}
