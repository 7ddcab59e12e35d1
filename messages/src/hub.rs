//! Hub connection, heartbeats and replication (spec 001, user story 4): the domain of the hub
//! role's `SystemRegisterAuthority` and of the peer role's `CentralNodeConnection`,
//! `HeartbeatMonitor` and `SystemRegisterReplica`, with their message enums.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    BlueprintId, BlueprintNotification, Checkpoint, HistoryId, InvalidInput, NodeId,
    PublishRequest, SystemRegisterEntry, SystemRegisterView, Timestamp,
};

/// A hub as a peer is configured to know it; lower `priority` is tried first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubEndpoint {
    pub id: NodeId,
    /// `http://host:port` of its gRPC server.
    pub url: String,
    pub priority: u32,
}

/// What kind of node is calling a hub. A hub calling a hub is a configuration error (FR-031).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeType {
    Peer,
    Hub,
}

/// A session id granted by a hub.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Hub side
// ---------------------------------------------------------------------------------------------

/// A peer asking a hub for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub peer_id: NodeId,
    pub node_type: NodeType,
    /// Where the peer says it can be reached (informative).
    pub address: String,
    pub last_known_version: u64,
}

/// What a hub grants a connecting peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionGrant {
    pub session_id: SessionId,
    pub hub_id: NodeId,
    pub history_id: HistoryId,
    /// The hub's system register version at connect time.
    pub version: u64,
    pub connected_at: Timestamp,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub sync_interval: Duration,
}

/// One heartbeat from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub sequence: u64,
    pub last_sync_version: u64,
    pub sent_at: Timestamp,
}

/// What the hub advises a peer to do after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecommendedAction {
    None,
    /// The peer is behind: sync now.
    Sync,
    ReduceFrequency,
    /// Go to another hub (e.g. this one is shutting down).
    Failover,
    /// Open a new session with this hub.
    Reconnect,
}

/// A hub's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAck {
    pub hub_id: NodeId,
    pub history_id: HistoryId,
    pub version: u64,
    pub action: RecommendedAction,
    pub received_at: Timestamp,
}

/// Which entries a sync asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncScope {
    /// Every active blueprint's latest entry.
    Full,
    /// Every entry with a version above this one.
    After(u64),
}

/// Entries answered to a sync, ordered by version, with the register's version at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySet {
    pub history_id: HistoryId,
    pub version: u64,
    pub entries: Vec<Arc<SystemRegisterEntry>>,
}

/// A peer connected to this hub, as `GET /api/hub/peers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubPeer {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub address: String,
    pub connected_at: Timestamp,
    pub last_heartbeat_at: Option<Timestamp>,
    pub last_sync_version: u64,
}

/// Whether a hub serves its system register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "reason")]
pub enum RegisterState {
    /// Reading (or creating) the register; the store may be unreachable.
    Loading,
    Ready,
    /// The stored register failed validation: the hub refuses to serve it.
    Corrupt(String),
}

/// A hub's state, as `GetCentralNodeStatus` and `/health` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubStatus {
    pub hub_id: NodeId,
    pub state: RegisterState,
    pub history_id: Option<HistoryId>,
    pub version: u64,
    pub total_blueprints: usize,
    pub active_peers: usize,
    pub last_published_at: Option<Timestamp>,
    pub started_at: Timestamp,
}

/// Why a hub refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidInput),
    /// FR-031: a hub must not connect to a hub.
    #[error("node {0} is a hub: hubs do not connect to hubs (check its configuration)")]
    HubCaller(NodeId),
    #[error("unknown session {session} for peer {peer}")]
    UnknownSession { peer: NodeId, session: SessionId },
    #[error("blueprint {0} not found")]
    NotFound(BlueprintId),
    #[error("blueprint {0} is already deprecated")]
    AlreadyDeprecated(BlueprintId),
    /// The blueprint store failed; retry later. Nothing changed.
    #[error("system register store unavailable: {0}")]
    Unavailable(String),
    /// The hub is not serving (still loading, or its register failed validation).
    #[error("the system register is not ready: {0}")]
    NotReady(String),
}

/// A subscription to a hub's push notifications: a bounded queue the hub fills; a subscriber
/// that falls behind is dropped (its receiver sees the end of the stream).
#[derive(Debug)]
pub struct Subscription {
    pub notifications: mpsc::Receiver<BlueprintNotification>,
}

/// Messages of the `SystemRegisterAuthority` actor (hub role).
#[derive(RactorMessage)]
pub enum SystemRegisterAuthorityMsg {
    /// Publish a blueprint, or update it when it exists.
    Publish(
        PublishRequest,
        RpcReplyPort<Result<Arc<SystemRegisterEntry>, AuthorityError>>,
    ),
    Deprecate {
        blueprint_id: BlueprintId,
        by: String,
        reply: RpcReplyPort<Result<Arc<SystemRegisterEntry>, AuthorityError>>,
    },
    Connect(
        ConnectRequest,
        RpcReplyPort<Result<SessionGrant, AuthorityError>>,
    ),
    Disconnect {
        peer_id: NodeId,
        session_id: SessionId,
        reply: RpcReplyPort<Result<(), AuthorityError>>,
    },
    Heartbeat(
        HeartbeatRequest,
        RpcReplyPort<Result<HeartbeatAck, AuthorityError>>,
    ),
    Entries {
        scope: SyncScope,
        reply: RpcReplyPort<Result<EntrySet, AuthorityError>>,
    },
    Subscribe {
        peer_id: NodeId,
        session_id: SessionId,
        reply: RpcReplyPort<Result<Subscription, AuthorityError>>,
    },
    Get(BlueprintId, RpcReplyPort<Option<Arc<SystemRegisterEntry>>>),
    View(RpcReplyPort<SystemRegisterView>),
    Status(RpcReplyPort<HubStatus>),
    Peers(RpcReplyPort<Vec<HubPeer>>),
    /// Internal: replay the store (genesis on first start, validation on later ones).
    Load,
    /// Internal: another hub sharing the store wrote up to this version.
    StoreAdvanced(u64),
    /// Internal timer: forget peers that stopped sending heartbeats.
    Sweep,
}

// ---------------------------------------------------------------------------------------------
// Peer side
// ---------------------------------------------------------------------------------------------

/// Where the peer stands with the hubs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    Disconnected,
    Connecting,
    Connected,
    /// Every hub failed: the peer cycles the ring with backoff and serves its replica.
    Isolated,
}

/// A live session with one hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubSession {
    pub hub: HubEndpoint,
    pub grant: SessionGrant,
    /// The peer was isolated (every hub failed) before this session: its replica may have
    /// missed anything, so it is checked in full.
    pub after_isolation: bool,
}

/// `GET /api/connection/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    pub state: ConnectionState,
    pub hub_id: Option<NodeId>,
    pub session_id: Option<SessionId>,
    pub missed_heartbeats: u32,
    pub last_latency_ms: Option<u64>,
    pub since: Timestamp,
    pub failovers: u64,
    pub last_error: Option<String>,
}

/// One configured hub, as `GET /api/central-nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubReport {
    pub id: NodeId,
    pub url: String,
    pub priority: u32,
    /// The hub this peer is connected to now.
    pub current: bool,
    pub consecutive_failures: u32,
    pub last_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// How a connection attempt ended (internal to `CentralNodeConnection`).
#[derive(Debug)]
pub struct AttemptReport {
    /// Which attempt this was: answers of superseded attempts are ignored.
    pub attempt_id: u64,
    pub hub_index: usize,
    pub result: Result<SessionGrant, String>,
    /// The hub did not answer within the deadline (rather than refusing).
    pub timed_out: bool,
}

/// Messages of the `CentralNodeConnection` actor (peer role).
#[derive(RactorMessage)]
pub enum CentralNodeConnectionMsg {
    /// The heartbeat monitor lost the hub (missed the limit), or the hub advised to leave.
    Failover {
        reason: String,
    },
    /// The hub advised to open a new session with it.
    Reconnect {
        reason: String,
    },
    /// The heartbeat monitor's latest numbers, for the status.
    HeartbeatReport {
        missed: u32,
        latency_ms: Option<u64>,
    },
    /// The current session, if any (the monitor and the replica ask after a restart).
    Current(RpcReplyPort<Option<HubSession>>),
    Status(RpcReplyPort<ConnectionStatus>),
    Hubs(RpcReplyPort<Vec<HubReport>>),
    /// Internal: try the next hub of the ring.
    Attempt,
    /// Internal: an attempt ended.
    AttemptFinished(AttemptReport),
}

/// `HeartbeatMonitor`'s view, folded into `ConnectionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatReport {
    pub missed: u32,
    pub last_latency_ms: Option<u64>,
    pub sent: u64,
}

/// How a heartbeat ended (internal to `HeartbeatMonitor`).
#[derive(Debug)]
pub struct BeatReport {
    pub session_id: SessionId,
    pub sent_at: tokio::time::Instant,
    pub result: Result<HeartbeatAck, BeatFailure>,
}

/// Why a heartbeat failed (internal to `HeartbeatMonitor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeatFailure {
    /// No answer, or a broken connection: a miss.
    Unreachable(String),
    /// The hub does not know the session: reconnect.
    UnknownSession(String),
    /// The hub answered and refused the heartbeat (e.g. this peer's clock is more than 60 s
    /// off): the hub is alive, so not a miss; a human must look.
    Refused(String),
}

/// Messages of the `HeartbeatMonitor` actor (peer role).
#[derive(RactorMessage)]
pub enum HeartbeatMonitorMsg {
    SessionStarted(HubSession),
    SessionEnded,
    Status(RpcReplyPort<HeartbeatReport>),
    /// Internal timer.
    Tick,
    /// Internal: a heartbeat ended.
    BeatFinished(BeatReport),
}

/// Why the replica syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncTrigger {
    Connected,
    Notification,
    Heartbeat,
    Periodic,
    Operator,
}

/// The replica's state, as `/api/sync/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub checkpoint: Option<Checkpoint>,
    pub total_blueprints: usize,
    pub syncing: bool,
    pub last_sync_at: Option<Timestamp>,
    pub last_sync_kind: Option<String>,
    pub last_error: Option<String>,
    pub full_syncs: u64,
    pub incremental_syncs: u64,
    /// Entries received from hubs since start (to tell a full from an incremental resume).
    pub entries_received: u64,
}

/// How a sync ended (internal to `SystemRegisterReplica`).
#[derive(Debug)]
pub struct SyncReport {
    pub full: bool,
    pub hub_id: NodeId,
    pub result: Result<EntrySet, String>,
}

/// Messages of the `SystemRegisterReplica` actor (peer role).
#[derive(RactorMessage)]
pub enum SystemRegisterReplicaMsg {
    SessionStarted(HubSession),
    SessionEnded,
    /// Sync now (coalesced with a sync already running).
    SyncNow(SyncTrigger),
    /// A push from the hub.
    Notified(BlueprintNotification),
    Get(BlueprintId, RpcReplyPort<Option<Arc<SystemRegisterEntry>>>),
    View(RpcReplyPort<SystemRegisterView>),
    /// The checkpoint's version alone (the heartbeat reports it every interval).
    Version(RpcReplyPort<u64>),
    Status(RpcReplyPort<ReplicaStatus>),
    /// Internal: replay the replica store.
    Load,
    /// Internal: a sync ended.
    SyncFinished(SyncReport),
    /// Internal: the push stream ended (the hub dropped it, or the session ended).
    SubscriptionEnded {
        session_id: SessionId,
        reason: String,
    },
}
