//! `Node::start`: opens the stores, builds the supervision tree for the configured roles,
//! starts the node's stall detector and the REST API, and returns a `NodeHandle`.
//! `NodeHandle::shutdown` undoes it in order.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use herald_actors::ports::{
    AdStore, BlueprintStore, Clock, GroundTruth, HubLink, PoolLink, ReplicaStore,
};
use herald_actors::{
    ActorSlot, AdvertisementPool, AdvertisementPoolArgs, CentralNodeConnection,
    CentralNodeConnectionArgs, ChildSpec, HeartbeatMonitor, HeartbeatMonitorArgs, LocalPoolLink,
    NodeSupervisor, NodeSupervisorArgs, ResyncDriver, ResyncDriverArgs, RingMemory, StallDetector,
    StallTicker, SystemRegisterAuthority, SystemRegisterAuthorityArgs, SystemRegisterReplica,
    SystemRegisterReplicaArgs, TokioClock,
};
use herald_messages::{
    ChildKind, NodeFailure, NodeId, NodeSupervisorMsg, RegisterState, SystemRegisterAuthorityMsg,
};

use crate::api::{NodeApi, PeerHubSlots};
use crate::config::{
    BlueprintStoreConfig, HubConnectionConfig, HubRoleConfig, NodeConfig, PoolLinkConfig,
};
use crate::grpc::{GrpcHubLink, GrpcServer, HubGrpc};
use crate::links::HttpPoolLink;
use crate::rest::{self, HttpServer, RestState};
use crate::stores;

/// Why a node could not start. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the {what} at {location}")]
    Store {
        what: &'static str,
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the pool link to {url}")]
    PoolLink {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start the node supervisor")]
    Supervisor(#[source] ractor::SpawnErr),
    /// The hub's stored system register failed validation: the hub refuses to serve it rather
    /// than re-create it (FR-022).
    #[error("the system register was refused: {0}")]
    SystemRegisterRefused(String),
}

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Actors that did not drain and stop within the deadline and were killed.
    pub killed: Vec<ChildKind>,
    pub elapsed: Duration,
}

/// Stores supplied by the host instead of the configured ones: its own adapters, or the
/// in-memory ones of `herald_actors::testing`.
#[derive(Default, Clone)]
pub struct StoreOverrides {
    pub ad_store: Option<Arc<dyn AdStore>>,
    pub ground_truth: Option<Arc<dyn GroundTruth>>,
    pub blueprint_store: Option<Arc<dyn BlueprintStore>>,
    pub replica_store: Option<Arc<dyn ReplicaStore>>,
    /// How the peer reaches its hubs (gRPC by default).
    pub hub_link: Option<Arc<dyn HubLink>>,
}

/// How long `Node::start` waits for a hub's system register to be loaded and validated before
/// it returns anyway (the store may be unreachable: the hub keeps retrying, degraded).
const HUB_STARTUP_WAIT: Duration = Duration::from_secs(10);

/// Entry point of the library.
pub struct Node;

impl Node {
    /// Starts a node with the configured roles. Must be called inside a tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
        Self::start_with(config, StoreOverrides::default()).await
    }

    /// Starts a node, using the given stores where supplied.
    pub async fn start_with(
        config: NodeConfig,
        overrides: StoreOverrides,
    ) -> Result<NodeHandle, StartError> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        // One per node: the process's own stalls, for the actors that judge others by deadlines.
        let stalls = Arc::new(StallDetector::new(config.stall_tick, Instant::now()));
        let node_id = config.node_id.clone();
        let mut children = Vec::new();

        let pool = match &config.peer {
            None => None,
            Some(peer) => {
                let store = match &overrides.ad_store {
                    Some(store) => Arc::clone(store),
                    None => stores::open_ad_store(&peer.ad_store, &node_id).await?,
                };
                let slot = ActorSlot::new(ChildKind::AdvertisementPool);
                let args = AdvertisementPoolArgs {
                    node_id: node_id.clone(),
                    config: peer.pool.clone(),
                    store,
                    clock: Arc::clone(&clock),
                };
                children.push(ChildSpec::new(slot.clone(), move || {
                    (AdvertisementPool, args.clone())
                }));
                Some(slot)
            }
        };

        let driver = match &config.register {
            None => None,
            Some(register) => {
                let truth = match &overrides.ground_truth {
                    Some(truth) => Arc::clone(truth),
                    None => stores::open_ground_truth(&register.ground_truth_path).await?,
                };
                let link: Arc<dyn PoolLink> = match (&register.pool_link, &pool) {
                    (PoolLinkConfig::Local, Some(pool)) => {
                        Arc::new(LocalPoolLink::new(pool.clone(), config.call_timeout))
                    }
                    (PoolLinkConfig::Local, None) => {
                        unreachable!("validation requires a peer role for a local pool link")
                    }
                    (
                        PoolLinkConfig::Http {
                            base_url,
                            token,
                            timeout,
                        },
                        _,
                    ) => Arc::new(HttpPoolLink::new(base_url, token, *timeout).map_err(
                        |source| StartError::PoolLink {
                            url: base_url.clone(),
                            source: Box::new(source),
                        },
                    )?),
                };
                let slot = ActorSlot::new(ChildKind::ResyncDriver);
                let args = ResyncDriverArgs {
                    node_id: node_id.clone(),
                    config: register.resync.clone(),
                    truth,
                    pool: link,
                    clock: Arc::clone(&clock),
                };
                children.push(ChildSpec::new(slot.clone(), move || {
                    (ResyncDriver, args.clone())
                }));
                Some(slot)
            }
        };

        let authority = match &config.hub {
            None => None,
            Some(hub) => {
                let store = match &overrides.blueprint_store {
                    Some(store) => Arc::clone(store),
                    None => open_blueprint_store(hub).await?,
                };
                let slot = ActorSlot::new(ChildKind::SystemRegisterAuthority);
                let args = SystemRegisterAuthorityArgs {
                    hub_id: node_id.clone(),
                    config: hub.authority.clone(),
                    store,
                    clock: Arc::clone(&clock),
                };
                children.push(ChildSpec::new(slot.clone(), move || {
                    (SystemRegisterAuthority, args.clone())
                }));
                Some(slot)
            }
        };

        let hub_connection = config
            .peer
            .as_ref()
            .and_then(|peer| peer.hub_connection.as_ref());
        let hub_slots = match hub_connection {
            None => None,
            Some(hub_connection) => Some(
                peer_hub_children(
                    &node_id,
                    hub_connection,
                    &overrides,
                    &clock,
                    &stalls,
                    &mut children,
                )
                .await?,
            ),
        };
        let ignored_hubs = config.peer.as_ref().map_or(0, |peer| peer.ignored_hubs);
        if ignored_hubs > 0 {
            warn!(node = %node_id, ignored_hubs, "this node is a hub: not dialing the configured hubs (FR-027)");
        }

        // Ticking before the first actor starts; stopped on every way out from here.
        let stall_ticker = stalls.start(&node_id);
        let (failure_tx, failure_rx) = watch::channel(None);
        let spawned = Actor::spawn(
            None,
            NodeSupervisor,
            NodeSupervisorArgs {
                node_id: node_id.clone(),
                children,
                policy: config.restart,
                failure: failure_tx,
            },
        )
        .await;
        let (supervisor, supervisor_join) = match spawned {
            Ok(spawned) => spawned,
            Err(err) => {
                stall_ticker.stop().await;
                return Err(StartError::Supervisor(err));
            }
        };

        let api = NodeApi {
            node_id: node_id.clone(),
            pool,
            driver,
            authority: authority.clone(),
            hub: hub_slots,
            supervisor: supervisor.clone(),
            timeout: config.call_timeout,
        };

        let grpc = match (&config.hub, &authority) {
            (Some(hub), Some(authority)) => {
                let started = async {
                    await_register(&node_id, authority).await?;
                    let services = HubGrpc::new(
                        authority.clone(),
                        node_id.clone(),
                        Arc::clone(&clock),
                        config.call_timeout,
                    );
                    GrpcServer::start(hub.grpc_addr, services).await
                };
                match started.await {
                    Ok(server) => Some(server),
                    Err(err) => {
                        stop_supervisor(&supervisor, supervisor_join, config.restart.stop_timeout)
                            .await;
                        stall_ticker.stop().await;
                        return Err(err);
                    }
                }
            }
            _ => None,
        };

        let http = match &config.http {
            None => None,
            Some(http) => {
                let state = RestState::new(
                    api.clone(),
                    http.admin_token.clone(),
                    config.metrics.clone(),
                );
                let started =
                    HttpServer::start(http.addr, rest::router(state), http.header_timeout).await;
                match started.map_err(|source| StartError::Bind {
                    addr: http.addr,
                    source,
                }) {
                    Ok(server) => Some(server),
                    Err(err) => {
                        if let Some(grpc) = grpc {
                            grpc.stop(config.restart.stop_timeout).await;
                        }
                        stop_supervisor(&supervisor, supervisor_join, config.restart.stop_timeout)
                            .await;
                        stall_ticker.stop().await;
                        return Err(err);
                    }
                }
            }
        };

        info!(
            node = %node_id,
            peer = api.has_peer_role(),
            register = api.has_register_role(),
            hub = api.has_hub_role(),
            hub_connection = api.has_hub_connection(),
            http = ?http.as_ref().map(HttpServer::addr),
            grpc = ?grpc.as_ref().map(GrpcServer::local_addr),
            "node started"
        );
        Ok(NodeHandle {
            api,
            supervisor,
            supervisor_join,
            http,
            grpc,
            stall_ticker,
            failure: failure_rx,
            stop_timeout: config.restart.stop_timeout,
        })
    }
}

/// A running node. Dereferences to `NodeApi` for typed calls (`available`, `advertise`,
/// `create_register`, …). Call `shutdown` to stop it; dropping it leaves the node running.
pub struct NodeHandle {
    api: NodeApi,
    supervisor: ActorRef<NodeSupervisorMsg>,
    supervisor_join: JoinHandle<()>,
    http: Option<HttpServer>,
    grpc: Option<GrpcServer>,
    /// The ticker of the node's stall detector; stopped after the actors.
    stall_ticker: StallTicker,
    failure: watch::Receiver<Option<NodeFailure>>,
    stop_timeout: Duration,
}

impl Deref for NodeHandle {
    type Target = NodeApi;

    fn deref(&self) -> &NodeApi {
        &self.api
    }
}

impl NodeHandle {
    pub fn api(&self) -> &NodeApi {
        &self.api
    }

    /// The address the REST API listens on (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::addr)
    }

    /// The address the hub's gRPC server listens on (useful with port 0).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(GrpcServer::local_addr)
    }

    /// The failure that stopped the node, if it gave up on an actor.
    pub fn failure(&self) -> Option<NodeFailure> {
        self.failure.borrow().clone()
    }

    /// Resolves when the node gives up on an actor (its restart budget ran out). Hosts select on
    /// it beside their shutdown signal.
    pub async fn failed(&self) -> NodeFailure {
        let mut failure = self.failure.clone();
        loop {
            if let Some(failure) = failure.borrow_and_update().clone() {
                return failure;
            }
            if failure.changed().await.is_err() {
                // The supervisor is gone without reporting a failure: a clean stop.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops the REST API and the gRPC server, then the actors in reverse start order (each
    /// drains its mailbox first), and waits for them, then the stall detector's ticker. Stores
    /// are closed when the actors are gone.
    pub async fn shutdown(self) -> ShutdownReport {
        let started = Instant::now();
        if let Some(http) = self.http {
            http.stop(self.stop_timeout).await;
        }
        if let Some(grpc) = self.grpc {
            grpc.stop(self.stop_timeout).await;
        }
        let killed =
            stop_supervisor(&self.supervisor, self.supervisor_join, self.stop_timeout).await;
        self.stall_ticker.stop().await;
        let report = ShutdownReport {
            killed,
            elapsed: started.elapsed(),
        };
        info!(node = %self.api.node_id, elapsed_ms = report.elapsed.as_millis() as u64, "node shut down");
        report
    }
}

async fn open_blueprint_store(hub: &HubRoleConfig) -> Result<Arc<dyn BlueprintStore>, StartError> {
    match &hub.store {
        BlueprintStoreConfig::Embedded { path } => {
            let store = stores::RedbBlueprintStore::open(path)
                .await
                .map_err(|source| StartError::Store {
                    what: "system register store",
                    location: path.display().to_string(),
                    source: Box::new(source),
                })?;
            Ok(Arc::new(store))
        }
        BlueprintStoreConfig::Redis { url, prefix } => {
            let store = stores::RedisBlueprintStore::new(url, prefix).map_err(|source| {
                StartError::Store {
                    what: "system register store",
                    location: url.clone(),
                    source: Box::new(source),
                }
            })?;
            Ok(Arc::new(store))
        }
    }
}

/// The peer's hub connection, heartbeat monitor and replica, wired to each other by slots. The
/// monitor judges the hub by deadlines, so it gets the node's stall detector.
async fn peer_hub_children(
    node_id: &NodeId,
    config: &HubConnectionConfig,
    overrides: &StoreOverrides,
    clock: &Arc<dyn Clock>,
    stalls: &Arc<StallDetector>,
    children: &mut Vec<ChildSpec>,
) -> Result<PeerHubSlots, StartError> {
    let replica_store = match &overrides.replica_store {
        Some(store) => Arc::clone(store),
        None => {
            let store = stores::RedbReplicaStore::open(&config.replica_dir)
                .await
                .map_err(|source| StartError::Store {
                    what: "system register replica",
                    location: config.replica_dir.display().to_string(),
                    source: Box::new(source),
                })?;
            Arc::new(store) as Arc<dyn ReplicaStore>
        }
    };
    let link: Arc<dyn HubLink> = match &overrides.hub_link {
        Some(link) => Arc::clone(link),
        None => Arc::new(
            GrpcHubLink::new(node_id.clone(), config.advertised_address.clone())
                .with_clock(Arc::clone(clock)),
        ),
    };
    let slots = PeerHubSlots {
        connection: ActorSlot::new(ChildKind::CentralNodeConnection),
        monitor: ActorSlot::new(ChildKind::HeartbeatMonitor),
        replica: ActorSlot::new(ChildKind::SystemRegisterReplica),
    };
    let connection_args = CentralNodeConnectionArgs {
        peer_id: node_id.clone(),
        address: config.advertised_address.clone(),
        config: config.connection.clone(),
        link: Arc::clone(&link),
        clock: Arc::clone(clock),
        monitor: slots.monitor.clone(),
        replica: slots.replica.clone(),
        ring_memory: RingMemory::new(),
    };
    let monitor_args = HeartbeatMonitorArgs {
        peer_id: node_id.clone(),
        config: config.heartbeat.clone(),
        link: Arc::clone(&link),
        clock: Arc::clone(clock),
        connection: slots.connection.clone(),
        replica: slots.replica.clone(),
        stalls: Arc::clone(stalls),
    };
    let replica_args = SystemRegisterReplicaArgs {
        peer_id: node_id.clone(),
        config: config.replica.clone(),
        store: replica_store,
        link,
        clock: Arc::clone(clock),
        connection: slots.connection.clone(),
    };
    // The replica first: it replays its store while the connection dials.
    children.push(ChildSpec::new(slots.replica.clone(), move || {
        (SystemRegisterReplica, replica_args.clone())
    }));
    children.push(ChildSpec::new(slots.connection.clone(), move || {
        (CentralNodeConnection, connection_args.clone())
    }));
    children.push(ChildSpec::new(slots.monitor.clone(), move || {
        (HeartbeatMonitor, monitor_args.clone())
    }));
    Ok(slots)
}

/// Waits until the hub's system register is loaded and validated. A register that failed
/// validation stops the start (FR-022); one still loading after `HUB_STARTUP_WAIT` (its store
/// unreachable) does not: the hub serves as soon as it can.
async fn await_register(
    node_id: &NodeId,
    authority: &ActorSlot<SystemRegisterAuthorityMsg>,
) -> Result<(), StartError> {
    let started = Instant::now();
    loop {
        let status = authority
            .call(SystemRegisterAuthorityMsg::Status, Duration::from_secs(5))
            .await;
        match status.map(|status| status.state) {
            Ok(RegisterState::Ready) => return Ok(()),
            Ok(RegisterState::Corrupt(reason)) => {
                return Err(StartError::SystemRegisterRefused(reason));
            }
            _ if started.elapsed() > HUB_STARTUP_WAIT => {
                warn!(node = %node_id, "system register still loading; serving gRPC anyway (the hub answers UNAVAILABLE until it is ready)");
                return Ok(());
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn stop_supervisor(
    supervisor: &ActorRef<NodeSupervisorMsg>,
    join: JoinHandle<()>,
    stop_timeout: Duration,
) -> Vec<ChildKind> {
    let per_child = stop_timeout.saturating_mul(2);
    let killed = match supervisor
        .call(NodeSupervisorMsg::Shutdown, Some(per_child * 2))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(killed)) => killed,
        // Already stopped (it gave up) or stuck: make sure it is gone.
        _ => {
            supervisor.stop(Some("shutdown".into()));
            Vec::new()
        }
    };
    if tokio::time::timeout(per_child * 2, join).await.is_err() {
        error!("node supervisor did not stop in time; killing it");
        supervisor.kill();
    }
    killed
}
