//! # herald
//!
//! Keeps a peer network's view of *who serves which register* correct through restarts,
//! crashes and outages.
//!
//! A node runs any subset of three roles:
//! - **register**: owns which registers exist and which are public (the ground truth), and its
//!   `ResyncDriver` pushes every public register to the pool at start-up, on every change, and
//!   periodically as a full sync;
//! - **peer**: its `AdvertisementPool` holds advertisements in Redis or an embedded store with
//!   an in-memory mirror, reloads them on restart, serves *Available Registers*, and keeps
//!   working while its store is down; with hubs configured, its `CentralNodeConnection`,
//!   `HeartbeatMonitor` and `SystemRegisterReplica` keep a durable replica of the hubs' system
//!   register, failing over between hubs;
//! - **hub**: its `SystemRegisterAuthority` owns the system register (versioned blueprints) and
//!   serves peers over gRPC.
//!
//! Each part is a supervised ractor actor that replays its state from its store when restarted.
//! Nodes of one deployment form a cluster (`RawClusterConfig`): they find each other through
//! seeds, watch each other's liveness, and list each other at `GET /api/cluster/members`; a
//! register node reaches its peer's pool through it by node id.
//!
//! ## Embedding
//!
//! ```no_run
//! use herald::{AdInput, NewRegister, Node, RawNodeConfig, RawPeerConfig, RawRegisterConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RawNodeConfig {
//!     node_id: "node-a".into(),
//!     data_dir: Some("/var/lib/herald".into()),
//!     peer: Some(RawPeerConfig::default()),         // embedded store in data_dir
//!     register: Some(RawRegisterConfig::default()), // feeds this node's own pool
//!     ..RawNodeConfig::default()
//! }
//! .validate()?;
//! let node = Node::start(config).await?;
//!
//! let register = node
//!     .create_register(NewRegister {
//!         register_id: None,
//!         name: "orders".into(),
//!         description: None,
//!         advertise: true,
//!         latest_version: 0,
//!         latest_docket_version: 0,
//!     })
//!     .await?;
//! for available in node.available().await? {
//!     println!("{} served by {} peer(s)", available.register_id, available.peer_count);
//! }
//! node.advertise(AdInput::withdraw(register.register_id)).await?;
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The library never installs a tracing subscriber or a metrics recorder, never reads
//! environment variables, and binds only the addresses it is given.

pub use herald_runtime::{
    ConfigError, Node, NodeApi, NodeConfig, NodeError, NodeHandle, RawClusterConfig,
    RawGossipConfig, RawHubConfig, RawHubEndpoint, RawMongoConfig, RawNodeConfig, RawPeerConfig,
    RawRegisterConfig, ShutdownReport, StartError, StoreOverrides,
};
/// TLS and credentials, and the configuration file (issue 10).
pub use herald_runtime::{
    ConfigFileError, RawClientTls, RawClusterTls, RawMongoTls, RawPeerCredential, RawServerTls,
};

/// The cluster: members as a node sees them, and the handle that watches them.
pub use herald_messages::{ClusterMember, ClusterSummary, MemberInfo, MemberState, Role};
pub use herald_runtime::cluster::ClusterHandle;

/// The peer and register roles' types.
pub use herald_messages::{
    AdInput, AdvertisementSyncState, AvailableRegister, AvailableRegisters, AvailableView,
    BulkAdvertise, BulkOutcome, ChildKind, ChildReport, GossipStatus, NewRegister, NodeFailure,
    NodeId, PoolError, PoolStatus, Register, RegisterError, RegisterId, RegisterPatch,
    SharedRegisters, Snapshot, StoreHealth, SyncStatus, Timestamp,
};

/// The hub role's and a peer's hub-side types: blueprints, the system register, connection and
/// replica status.
pub use herald_messages::{
    AuthorityError, BlueprintId, BlueprintSummary, Checkpoint, ConnectionState, ConnectionStatus,
    EntryKind, HistoryId, HubPeer, HubReport, HubStatus, PublishRequest, RegisterState,
    ReplicaStatus, SystemRegisterEntry, SystemRegisterView,
};

/// The store adapters, for hosts that hand a node their own (`Node::start_with`), for example
/// several hubs in one process sharing one system register.
pub use herald_runtime::stores;

/// The building blocks, for hosts that wire their own tree or write their own adapters.
pub mod parts {
    pub use herald_actors as actors;
    pub use herald_messages as messages;
    pub use herald_runtime as runtime;
}
