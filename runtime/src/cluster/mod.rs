//! The cluster: nodes of one deployment find each other over ractor_cluster, keep a full mesh
//! of cookie-authenticated sessions, judge each other's liveness, and reach each other's
//! gateway (issue 8).
//!
//! Rooms: `membership` (the pure rules: whom to dial, ping, suspect, forget), `link` (the
//! `ClusterLink` actor that runs ractor_cluster and applies those rules), `gateway` (the one
//! actor other nodes can reach), `wire` (frames and the versioned request enum), `client`
//! (calling a member's gateway), `gossip` (the `GossipDriver`: the gossip of public ads
//! between peers, and *Available Registers* merged with it), `transport` (connections herald opens and accepts itself),
//! `view` (what the link publishes: members, summary, gateways), `pool_link` (the register
//! role's push to a peer over the cluster).
//!
//! One cluster node per process: ractor's process groups and actor registry are global, and
//! every ractor_cluster session advertises every remotable actor of the process, so two nodes
//! in one process would see each other's gateways twice over (measured, notes/ractor.md §2.2).
//! `ClusterGuard` refuses the second one.

mod client;
mod gateway;
mod gossip;
mod link;
pub mod membership;
mod pool_link;
mod transport;
mod view;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::tls::{ClusterTls, Secret};
use std::time::Duration;

pub use client::{CallError, GatewayClient};
pub use gateway::{ClusterGateway, GatewayArgs, PG_GROUP, PG_SCOPE, gateway_name};
pub use gossip::{GossipDriver, GossipDriverArgs, GossipDriverMsg, GossipSettings, merge_remote};
pub use link::{ClusterLink, ClusterLinkArgs, ClusterLinkMsg, ClusterShared};
pub use membership::{Membership, MembershipConfig};
pub use pool_link::ClusterPoolLink;
pub use transport::Security;
pub use view::{ClusterHandle, ClusterView};

/// A validated cluster configuration (see `RawClusterConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Where this node accepts members' connections (port 0 picks one).
    pub listen: std::net::SocketAddr,
    /// Where members dial this node, when it differs from the bound listen address.
    pub advertised_address: Option<String>,
    /// Addresses (`host:port`) dialed at start; the rest of the cluster is learned from them.
    pub seeds: Vec<String>,
    /// Shared secret of the deployment: a member with another cookie is never admitted. Read
    /// when the node starts.
    pub cookie: Secret,
    /// Mutual TLS between members, read when the node starts.
    pub tls: Option<ClusterTls>,
    pub membership: MembershipConfig,
    /// Deadline of one liveness ping.
    pub ping_timeout: Duration,
    /// A connection that has not authenticated within this is closed.
    pub handshake_timeout: Duration,
    /// A missed ping is not counted when this process itself stalled for longer than this
    /// share of the ping deadline while waiting.
    pub own_stall_share: f64,
}

impl ClusterConfig {
    pub const DEFAULT_LIVENESS_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_SUSPECT_AFTER: u32 = 3;
    pub const DEFAULT_UNREACHABLE_AFTER: Duration = Duration::from_secs(10);
    pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(3_600);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_MEMBERS: usize = 64;

    /// The longest a frozen or cut-off member stays ready: `suspect_after` pings missed, the
    /// last one after its deadline, plus one interval for the phase of the first.
    pub fn suspicion_bound(&self) -> Duration {
        self.membership.liveness_interval * self.membership.suspect_after
            + self.ping_timeout
            + self.membership.liveness_interval
    }

    /// The shortest own stall that excuses a missed ping.
    pub fn own_stall_threshold(&self) -> Duration {
        self.ping_timeout.mul_f64(self.own_stall_share)
    }
}

static CLUSTER_NODE_RUNNING: AtomicBool = AtomicBool::new(false);

/// Proof that this process runs one cluster node; released when dropped.
#[derive(Debug)]
pub struct ClusterGuard(());

/// A second cluster node in one process.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "this process already runs a cluster node: ractor's process groups and actor registry are process-wide, so run one cluster node per process"
)]
pub struct SecondClusterNode;

impl ClusterGuard {
    pub fn acquire() -> Result<Self, SecondClusterNode> {
        CLUSTER_NODE_RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ClusterGuard(()))
            .map_err(|_| SecondClusterNode)
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        CLUSTER_NODE_RUNNING.store(false, Ordering::Release);
    }
}
