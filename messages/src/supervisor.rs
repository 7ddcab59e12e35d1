//! The node supervisor's message enum and what it reports to the host.

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};

/// The supervised children of a node, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChildKind {
    /// The node's cluster membership (`herald-runtime`'s `cluster::ClusterLink`).
    ClusterLink,
    AdvertisementPool,
    ResyncDriver,
    SystemRegisterAuthority,
    CentralNodeConnection,
    HeartbeatMonitor,
    SystemRegisterReplica,
    /// The gossip of public ads between peers (`herald-runtime`'s `cluster::GossipDriver`).
    GossipDriver,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::AdvertisementPool => "advertisement_pool",
            ChildKind::ResyncDriver => "resync_driver",
            ChildKind::SystemRegisterAuthority => "system_register_authority",
            ChildKind::CentralNodeConnection => "central_node_connection",
            ChildKind::HeartbeatMonitor => "heartbeat_monitor",
            ChildKind::SystemRegisterReplica => "system_register_replica",
            ChildKind::ClusterLink => "cluster_link",
            ChildKind::GossipDriver => "gossip_driver",
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One child as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildReport {
    pub kind: ChildKind,
    pub running: bool,
    /// Restarts since the node started.
    pub restarts: u32,
    pub last_failure: Option<String>,
}

/// A child failed more often than the restart budget allows: the node gave up on it and stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{child} failed {failures} times within {window_secs} s, last: {last_error}")]
pub struct NodeFailure {
    pub child: ChildKind,
    pub failures: u32,
    pub window_secs: u64,
    pub last_error: String,
}

/// Messages of the `NodeSupervisor` actor.
#[derive(RactorMessage)]
pub enum NodeSupervisorMsg {
    /// Internal timer: the backoff before restarting a child is over.
    Restart(ChildKind),
    Children(RpcReplyPort<Vec<ChildReport>>),
    /// Fault injection: kill the child as a crash would; false when it was not running.
    Kill(ChildKind, RpcReplyPort<bool>),
    /// Stop the children in reverse start order (each drains its mailbox first), then the
    /// supervisor; replies with the children that did not stop in time.
    Shutdown(RpcReplyPort<Vec<ChildKind>>),
}
