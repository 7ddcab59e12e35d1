//! The cluster's shared vocabulary: what a node tells the others about itself (`MemberInfo`),
//! how a node judges each member (`MemberState`), and what `GET /api/cluster/members` and the
//! status endpoints show (`ClusterMember`, `ClusterSummary`).

use serde::{Deserialize, Serialize};

use crate::{NodeId, Timestamp};

/// A role a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Peer,
    Register,
    Hub,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Peer => "peer",
            Role::Register => "register",
            Role::Hub => "hub",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How this node judges a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Connected, and answering liveness pings in time.
    Ready,
    /// Known, not connected yet: the first dial (or a redial after a clean disconnect) is on its
    /// way.
    Connecting,
    /// Connected until it stopped answering pings (frozen, partitioned, overloaded): its session
    /// was closed so it receives no backlog; redialed with backoff.
    Suspect,
    /// Its connection is lost and redials fail, or it has been suspect for too long. Redialed
    /// with backoff; a member learned from others is forgotten after a configured time here.
    Unreachable,
}

impl MemberState {
    pub const ALL: [MemberState; 4] = [
        MemberState::Ready,
        MemberState::Connecting,
        MemberState::Suspect,
        MemberState::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Ready => "ready",
            MemberState::Connecting => "connecting",
            MemberState::Suspect => "suspect",
            MemberState::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node publishes about itself to the other members (FR-028, FR-037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberInfo {
    pub node_id: NodeId,
    /// Chosen at random at each start: a new incarnation is a restarted node.
    pub incarnation: u64,
    /// Bumped by the node at every change of this record.
    pub revision: u64,
    pub roles: Vec<Role>,
    /// Where other members dial it (`host:port`).
    pub cluster_address: String,
    pub http_address: Option<String>,
    pub grpc_address: Option<String>,
    pub started_at: Timestamp,
    /// A peer's hub connection: the hub it is connected to (FR-037).
    pub current_hub: Option<NodeId>,
    /// A peer's hub connection state (`connected`, `connecting`, `isolated`, `disconnected`).
    pub hub_connection: Option<String>,
}

/// One member as `GET /api/cluster/members` lists it (this node included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMember {
    pub node_id: NodeId,
    /// Empty until the member has described itself.
    pub roles: Vec<Role>,
    /// Its cluster address (`host:port`), once known.
    pub address: Option<String>,
    pub state: MemberState,
    /// Milliseconds since this node last heard from it (0 for itself); absent if never.
    pub last_seen_ms: Option<u64>,
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Given in the node's configuration (a seed), never forgotten.
    pub seed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_hub: Option<NodeId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_connection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// Liveness pings missed in a row.
    pub missed_pings: u32,
    /// Round trip of the last answered ping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_ms: Option<f64>,
}

/// Members by state, for `/health` and `/api/sync/status`. Counts the other members, not this
/// node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSummary {
    pub node_id: Option<NodeId>,
    /// Where this node listens for members.
    pub address: Option<String>,
    pub members: usize,
    pub ready: usize,
    pub connecting: usize,
    pub suspect: usize,
    pub unreachable: usize,
    /// Seeds no member has answered through yet.
    pub unanswered_seeds: Vec<String>,
}

impl ClusterSummary {
    /// Counts `members` (this node's own entry excluded).
    pub fn of(
        node_id: NodeId,
        address: String,
        members: &[ClusterMember],
        unanswered_seeds: Vec<String>,
    ) -> Self {
        let mut summary = ClusterSummary {
            node_id: Some(node_id),
            address: Some(address),
            unanswered_seeds,
            ..ClusterSummary::default()
        };
        for member in members.iter().filter(|member| !member.is_self) {
            summary.members += 1;
            match member.state {
                MemberState::Ready => summary.ready += 1,
                MemberState::Connecting => summary.connecting += 1,
                MemberState::Suspect => summary.suspect += 1,
                MemberState::Unreachable => summary.unreachable += 1,
            }
        }
        summary
    }

    /// Why this node is cut off from its cluster, if it is: it knows members or seeds, and not
    /// one of them is ready.
    pub fn isolation(&self) -> Option<String> {
        if self.ready > 0 || (self.members == 0 && self.unanswered_seeds.is_empty()) {
            return None;
        }
        let mut reason = "isolated from the cluster: no member is ready".to_owned();
        if !self.unanswered_seeds.is_empty() {
            reason.push_str(&format!(
                " (seeds not answering: {}; a wrong cookie looks like this too)",
                self.unanswered_seeds.join(", ")
            ));
        }
        Some(reason)
    }
}
