//! The one wiring of a node's supervision tree: which actors each role runs, in which order,
//! with which slots between them. The runtime (`Node::start_with`) and the paused-time actor
//! tests both build their trees here, so a test runs the wiring production runs.
//!
//! Ports come in (stores, links, the clock), slots and views come out (`NodeViews`: the
//! snapshots the actors publish, owned here so that they outlive restarts); nothing here names a driver or
//! opens a store. The start order is the order roles are added: the pool before the resync
//! driver that pushes to it, and on a peer with hubs the replica before the connection (it
//! replays its store while the connection dials) before the heartbeat monitor.

use std::sync::Arc;

use ractor::{Actor, ActorRef, SpawnErr};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use herald_messages::{
    AdvertisementPoolMsg, AdvertisementSyncState, CentralNodeConnectionMsg, ChildKind, ChildReport,
    ConnectionState, ConnectionStatus, ConnectionView, HeartbeatMonitorMsg, NodeFailure, NodeId,
    NodeSupervisorMsg, PoolView, ReplicaStatus, ReplicaView, ResyncDriverMsg,
    SystemRegisterAuthorityMsg, SystemRegisterReplicaMsg, SystemRegisterView,
};

use crate::advertisement_pool::{AdvertisementPool, AdvertisementPoolArgs, PoolConfig};
use crate::central_node_connection::{
    CentralNodeConnection, CentralNodeConnectionArgs, ConnectionConfig, RingMemory,
};
use crate::heartbeat_monitor::{HeartbeatConfig, HeartbeatMonitor, HeartbeatMonitorArgs};
use crate::ports::{AdStore, BlueprintStore, Clock, GroundTruth, HubLink, PoolLink, ReplicaStore};
use crate::resync_driver::{ResyncConfig, ResyncDriver, ResyncDriverArgs};
use crate::slot::ActorSlot;
use crate::stall_detector::StallDetector;
use crate::supervisor::{ChildSpec, NodeSupervisor, NodeSupervisorArgs, RestartPolicy};
use crate::system_register_authority::{
    AuthorityConfig, HubView, SystemRegisterAuthority, SystemRegisterAuthorityArgs,
};
use crate::system_register_replica::{
    ReplicaConfig, SystemRegisterReplica, SystemRegisterReplicaArgs,
};
use crate::view::{Published, View};

/// A node's supervision tree before it starts: the children of each role, in start order.
pub struct NodeTree {
    node_id: NodeId,
    clock: Arc<dyn Clock>,
    children: Vec<ChildSpec>,
    views: NodeViews,
}

/// What the node's actors publish, for readers that must not wait for a mailbox (`NodeApi`,
/// the REST and gRPC servers). `None` for an actor the node does not run.
#[derive(Clone, Default)]
pub struct NodeViews {
    pub pool: Option<View<PoolView>>,
    pub sync: Option<View<AdvertisementSyncState>>,
    pub authority: Option<View<HubView>>,
    pub connection: Option<View<ConnectionView>>,
    pub replica: Option<View<ReplicaView>>,
    /// Set when the tree starts.
    pub children: Option<View<Vec<ChildReport>>>,
}

/// The slots of a peer's hub connection, heartbeat monitor and system register replica.
#[derive(Clone)]
pub struct PeerHubSlots {
    pub connection: ActorSlot<CentralNodeConnectionMsg>,
    pub monitor: ActorSlot<HeartbeatMonitorMsg>,
    pub replica: ActorSlot<SystemRegisterReplicaMsg>,
}

/// What a peer's hub side runs on.
pub struct HubConnectionParts {
    /// Where this peer says it can be reached (told to hubs).
    pub address: String,
    pub connection: ConnectionConfig,
    pub heartbeat: HeartbeatConfig,
    pub replica: ReplicaConfig,
    pub replica_store: Arc<dyn ReplicaStore>,
    pub link: Arc<dyn HubLink>,
    /// The node's own-stall detector: the monitor judges the hub by deadlines.
    pub stalls: Arc<StallDetector>,
}

/// A started tree.
pub struct StartedTree {
    pub supervisor: ActorRef<NodeSupervisorMsg>,
    pub join: JoinHandle<()>,
    /// Set when the supervisor gives up on an actor (its restart budget ran out).
    pub failure: watch::Receiver<Option<NodeFailure>>,
    pub views: NodeViews,
}

impl NodeTree {
    pub fn new(node_id: NodeId, clock: Arc<dyn Clock>) -> Self {
        Self {
            node_id,
            clock,
            children: Vec::new(),
            views: NodeViews::default(),
        }
    }

    /// The views of the actors added so far.
    pub fn views(&self) -> &NodeViews {
        &self.views
    }

    /// Peer role: the advertisement pool over `store`.
    pub fn pool(
        &mut self,
        config: PoolConfig,
        store: Arc<dyn AdStore>,
    ) -> ActorSlot<AdvertisementPoolMsg> {
        let slot = ActorSlot::new(ChildKind::AdvertisementPool);
        let view = Published::new(PoolView::starting(self.node_id.clone(), rand::random()));
        self.views.pool = Some(view.view());
        let args = AdvertisementPoolArgs {
            node_id: self.node_id.clone(),
            config,
            store,
            clock: Arc::clone(&self.clock),
            view,
        };
        self.children.push(ChildSpec::new(slot.clone(), move || {
            (AdvertisementPool, args.clone())
        }));
        slot
    }

    /// Register role: the resync driver, pushing `truth` to a pool through `pool`.
    pub fn resync_driver(
        &mut self,
        config: ResyncConfig,
        truth: Arc<dyn GroundTruth>,
        pool: Arc<dyn PoolLink>,
    ) -> ActorSlot<ResyncDriverMsg> {
        let slot = ActorSlot::new(ChildKind::ResyncDriver);
        let view = Published::new(AdvertisementSyncState {
            pool: pool.describe(),
            ..AdvertisementSyncState::default()
        });
        self.views.sync = Some(view.view());
        let args = ResyncDriverArgs {
            node_id: self.node_id.clone(),
            config,
            truth,
            pool,
            clock: Arc::clone(&self.clock),
            view,
        };
        self.children.push(ChildSpec::new(slot.clone(), move || {
            (ResyncDriver, args.clone())
        }));
        slot
    }

    /// Hub role: the system register's authority over `store`.
    pub fn authority(
        &mut self,
        config: AuthorityConfig,
        store: Arc<dyn BlueprintStore>,
    ) -> ActorSlot<SystemRegisterAuthorityMsg> {
        let slot = ActorSlot::new(ChildKind::SystemRegisterAuthority);
        let view = Published::new(HubView::starting(self.node_id.clone(), self.clock.now()));
        self.views.authority = Some(view.view());
        let args = SystemRegisterAuthorityArgs {
            hub_id: self.node_id.clone(),
            config,
            store,
            clock: Arc::clone(&self.clock),
            view,
        };
        self.children.push(ChildSpec::new(slot.clone(), move || {
            (SystemRegisterAuthority, args.clone())
        }));
        slot
    }

    /// Peer with hubs: the replica, the connection and the heartbeat monitor, reaching each
    /// other through their slots, in that start order.
    pub fn hub_connection(&mut self, parts: HubConnectionParts) -> PeerHubSlots {
        let slots = PeerHubSlots {
            connection: ActorSlot::new(ChildKind::CentralNodeConnection),
            monitor: ActorSlot::new(ChildKind::HeartbeatMonitor),
            replica: ActorSlot::new(ChildKind::SystemRegisterReplica),
        };
        let replica_view = Published::new(ReplicaView {
            ready: false,
            status: ReplicaStatus::default(),
            register: SystemRegisterView::default(),
            entries: Default::default(),
        });
        self.views.replica = Some(replica_view.view());
        let connection_view = Published::new(ConnectionView {
            status: ConnectionStatus {
                state: ConnectionState::Connecting,
                hub_id: None,
                session_id: None,
                missed_heartbeats: 0,
                last_latency_ms: None,
                since: self.clock.now(),
                failovers: 0,
                last_error: None,
            },
            hubs: Vec::new(),
        });
        self.views.connection = Some(connection_view.view());
        let replica_args = SystemRegisterReplicaArgs {
            view: replica_view,
            peer_id: self.node_id.clone(),
            config: parts.replica,
            store: parts.replica_store,
            link: Arc::clone(&parts.link),
            clock: Arc::clone(&self.clock),
            connection: slots.connection.clone(),
        };
        let connection_args = CentralNodeConnectionArgs {
            peer_id: self.node_id.clone(),
            address: parts.address,
            config: parts.connection,
            link: Arc::clone(&parts.link),
            clock: Arc::clone(&self.clock),
            monitor: slots.monitor.clone(),
            replica: slots.replica.clone(),
            // Outlives every restart of the connection: a crash is not a failback.
            ring_memory: RingMemory::new(),
            view: connection_view,
        };
        let monitor_args = HeartbeatMonitorArgs {
            peer_id: self.node_id.clone(),
            config: parts.heartbeat,
            link: parts.link,
            clock: Arc::clone(&self.clock),
            connection: slots.connection.clone(),
            replica: slots.replica.clone(),
            stalls: parts.stalls,
        };
        self.children
            .push(ChildSpec::new(slots.replica.clone(), move || {
                (SystemRegisterReplica, replica_args.clone())
            }));
        self.children
            .push(ChildSpec::new(slots.connection.clone(), move || {
                (CentralNodeConnection, connection_args.clone())
            }));
        self.children
            .push(ChildSpec::new(slots.monitor.clone(), move || {
                (HeartbeatMonitor, monitor_args.clone())
            }));
        slots
    }

    /// A child the runtime builds (the cluster link, which names ractor_cluster). It starts
    /// first, whatever the order it is added in: the others may reach other nodes through it,
    /// and it stops last.
    pub fn first(&mut self, spec: ChildSpec) {
        self.children.insert(0, spec);
    }

    /// A child the runtime builds that follows the roles' actors (the gossip driver, which
    /// reads the pool's view): it starts after them and stops before them.
    pub fn last(&mut self, spec: ChildSpec) {
        self.children.push(spec);
    }

    /// Starts the supervisor, which starts the children in the order the roles were added.
    pub async fn start(self, policy: RestartPolicy) -> Result<StartedTree, SpawnErr> {
        let (failure_tx, failure) = watch::channel(None);
        let children_view = Published::new(Vec::new());
        let mut views = self.views;
        views.children = Some(children_view.view());
        let (supervisor, join) = Actor::spawn(
            None,
            NodeSupervisor,
            NodeSupervisorArgs {
                node_id: self.node_id,
                children: self.children,
                policy,
                failure: failure_tx,
                children_view,
            },
        )
        .await?;
        Ok(StartedTree {
            supervisor,
            join,
            failure,
            views,
        })
    }
}
