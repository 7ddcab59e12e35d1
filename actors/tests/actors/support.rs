//! A node's supervision tree built from fakes, and small helpers.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use herald_actors::ports::{Clock, PoolLink};
use herald_actors::testing::{
    InMemoryAdStore, InMemoryGroundTruth, LinkSwitch, SwitchablePoolLink,
};
use herald_actors::{
    ActorSlot, AdvertisementPool, AdvertisementPoolArgs, ChildSpec, LocalPoolLink, NodeSupervisor,
    NodeSupervisorArgs, PoolConfig, RestartPolicy, ResyncConfig, ResyncDriver, ResyncDriverArgs,
    TokioClock,
};
use herald_messages::{
    AdInput, AdvertisementPoolMsg, AvailableRegister, BulkAdvertise, BulkOutcome, ChildKind,
    ChildReport, NewRegister, NodeFailure, NodeId, NodeSupervisorMsg, PoolError, PoolStatus,
    Register, RegisterId, ResyncDriverMsg,
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
}

pub async fn start(options: Options) -> TestNode {
    let node_id = NodeId::parse("node-under-test").unwrap();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let pool = ActorSlot::new(ChildKind::AdvertisementPool);
    let driver = ActorSlot::new(ChildKind::ResyncDriver);
    let mut children = Vec::new();
    if let Some(config) = options.pool {
        let args = AdvertisementPoolArgs {
            node_id: node_id.clone(),
            config,
            store: Arc::new(options.store.clone()),
            clock: Arc::clone(&clock),
        };
        children.push(ChildSpec::new(pool.clone(), move || {
            (AdvertisementPool, args.clone())
        }));
    }
    let mut link_switch = None;
    if let Some(config) = options.resync {
        let (link, switch) =
            SwitchablePoolLink::new(LocalPoolLink::new(pool.clone(), CALL), options.link_down);
        link_switch = Some(switch);
        let link: Arc<dyn PoolLink> = Arc::new(link);
        let args = ResyncDriverArgs {
            node_id: node_id.clone(),
            config,
            truth: Arc::new(options.truth.clone()),
            pool: link,
            clock,
        };
        children.push(ChildSpec::new(driver.clone(), move || {
            (ResyncDriver, args.clone())
        }));
    }
    let (failure_tx, failure) = watch::channel(None);
    let (supervisor, join) = Actor::spawn(
        None,
        NodeSupervisor,
        NodeSupervisorArgs {
            node_id,
            children,
            policy: options.policy,
            failure: failure_tx,
        },
    )
    .await
    .unwrap();
    TestNode {
        supervisor,
        join,
        pool,
        driver,
        store: options.store,
        truth: options.truth,
        link: link_switch,
        failure,
    }
}

impl TestNode {
    pub async fn bulk(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolError> {
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
            .call(|reply| ResyncDriverMsg::CreateRegister(new, reply), CALL)
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

pub fn id(n: u8) -> RegisterId {
    RegisterId::from_bytes([n; 16])
}

pub fn public(n: u8) -> AdInput {
    AdInput {
        name: Some(format!("register {n}")),
        latest_version: u64::from(n),
        ..AdInput::public(id(n))
    }
}

/// Lets virtual time pass (timers fire, actors run).
pub async fn pass(duration: Duration) {
    tokio::time::sleep(duration).await;
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
