//! herald's actors, the node supervisor, the wiring of a node's tree, and the ports they need.
//!
//! - The actors (one per file, each with its message enum in `herald-messages`):
//!   `advertisement_pool` and `resync_driver` (peer and register roles),
//!   `system_register_authority` (hub role), `central_node_connection`, `heartbeat_monitor` and
//!   `system_register_replica` (a peer's hub side). Decisions with real logic live in pure
//!   state types beside them (`advertisement_pool/state.rs`, `system_register_authority/state.rs`).
//! - `gossip`: the gossip of public ads between peers (scuttlebutt delta anti-entropy) as a pure
//!   state type the cluster gateway drives, and its deterministic simulation (feature
//!   `testing`).
//! - `supervisor`: the root, restarting children one-for-one; `wiring`: the one place that says
//!   which actors each role runs and how they reach each other (`NodeTree`).
//! - `ports`: traits for stores, links and the clock. Adapters live in `herald-runtime`; this
//!   crate never names a driver (redis, redb, mongodb, tonic, axum; the tidy test checks).
//! - `view`: `Published` / `View`, the snapshots actors publish so that reads never enter a
//!   mailbox.
//! - `slot`: stable addresses of supervised actors; `backoff`: delays for retries;
//!   `stall_detector`: this process's own scheduling stalls; `clock`, `pool_link`, `hub_link`:
//!   in-process implementations of ports.
//! - `testing` (feature): in-memory fakes of the ports.

pub mod actor_kit;
pub mod advertisement_pool;
pub mod backoff;
pub mod central_node_connection;
pub mod clock;
pub mod gossip;
pub mod heartbeat_monitor;
pub mod hub_link;
pub mod pool_link;
pub mod ports;
pub mod resync_driver;
pub mod slot;
pub mod stall_detector;
pub mod supervisor;
pub mod system_register_authority;
pub mod system_register_replica;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod view;
pub mod wiring;

pub use advertisement_pool::{AdvertisementPool, AdvertisementPoolArgs, PoolConfig};
pub use backoff::{Backoff, BackoffConfig};
pub use central_node_connection::{
    CentralNodeConnection, CentralNodeConnectionArgs, ConnectionConfig, RingMemory,
};
pub use clock::TokioClock;
pub use heartbeat_monitor::{HeartbeatConfig, HeartbeatMonitor, HeartbeatMonitorArgs};
pub use hub_link::LocalHubLink;
pub use pool_link::LocalPoolLink;
pub use resync_driver::{ResyncConfig, ResyncDriver, ResyncDriverArgs};
pub use slot::{ActorSlot, SlotError};
pub use stall_detector::{DEFAULT_STALL_TICK, Stall, StallDetector, StallRecord, StallTicker};
pub use supervisor::{ChildSpec, NodeSupervisor, NodeSupervisorArgs, RestartPolicy};
pub use system_register_authority::{
    AuthorityConfig, HeartbeatBasis, HubView, SystemRegisterAuthority, SystemRegisterAuthorityArgs,
};
pub use system_register_replica::{
    ReplicaConfig, SystemRegisterReplica, SystemRegisterReplicaArgs,
};
pub use view::{Published, View};
pub use wiring::{HubConnectionParts, NodeTree, NodeViews, PeerHubSlots, StartedTree};
