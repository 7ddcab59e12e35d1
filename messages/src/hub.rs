//! Hub connection, heartbeats and replication (spec 001, user story 4): the domain of the hub
//! role's `SystemRegisterAuthority` and of the peer role's `CentralNodeConnection`,
//! `HeartbeatMonitor` and `SystemRegisterReplica`, with their message enums.

use std::sync::Arc;
use std::time::Duration;

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::ids::{string_id_impls, truncate_for_error};
use crate::{
    BlueprintId, BlueprintNotification, Checkpoint, HistoryId, InvalidId, InvalidInput, NodeId,
    PublishRequest, RegisterDigest, SystemRegisterEntry, SystemRegisterView, Timestamp, Valid,
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

/// A session id granted by a hub: 1 to 128 visible ASCII characters (hubs issue 32 lowercase
/// hex characters; peers accept any well-formed id from a hub).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

string_id_impls!(SessionId);

impl SessionId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let well_formed = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value.bytes().all(|b| b.is_ascii_graphic());
        if !well_formed {
            return Err(InvalidId {
                what: "session id",
                rule: "1 to 128 visible ASCII characters",
                value: truncate_for_error(value),
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// A session id from 16 bytes (random ones, drawn by the hub), as 32 lowercase hex.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(crate::RegisterId::from_bytes(bytes).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
    /// The version of the peer's checkpoint (0 without one).
    pub last_known_version: u64,
    /// The register digest at that version, when the peer's checkpoint holds one.
    pub last_known_digest: Option<RegisterDigest>,
}

impl ConnectRequest {
    /// Longest advertised peer address accepted (a host name is at most 253 characters).
    pub const MAX_ADDRESS_LEN: usize = 512;

    /// An advertised address: at most `MAX_ADDRESS_LEN` bytes, no control characters.
    pub fn check_address(address: &str) -> Result<(), String> {
        if address.len() > Self::MAX_ADDRESS_LEN || address.chars().any(char::is_control) {
            return Err(format!(
                "must be at most {} bytes without control characters",
                Self::MAX_ADDRESS_LEN
            ));
        }
        Ok(())
    }

    /// An advertised port: 1 to 65535.
    pub fn check_port(port: i64) -> Result<u16, String> {
        match u16::try_from(port) {
            Ok(port) if port >= 1 => Ok(port),
            _ => Err(format!("must be 1 to 65535, got {port}")),
        }
    }
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
    /// The register's digest at `version` (`None` from a hub that does not send digests).
    pub digest: Option<RegisterDigest>,
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
    /// The register digest at `last_sync_version`, when the peer's checkpoint holds one. A
    /// peer that sends it understands `RecommendedAction::FullSync`.
    pub last_sync_digest: Option<RegisterDigest>,
    pub sent_at: Timestamp,
}

impl HeartbeatRequest {
    /// Largest difference between a peer's timestamp and the hub's clock (spec 001: ±60 s).
    pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

    /// A peer's timestamp (Unix milliseconds): within `MAX_CLOCK_SKEW` of the hub's `now`.
    pub fn check_sent_at(millis: i64, now: Timestamp) -> Result<Timestamp, String> {
        let off_by = (i128::from(millis) - i128::from(now.as_unix_millis())).abs();
        if off_by > i128::try_from(Self::MAX_CLOCK_SKEW.as_millis()).unwrap_or(i128::MAX) {
            return Err(format!(
                "must be within {} s of the hub's clock ({} ms), got {millis} ms ({off_by} ms off)",
                Self::MAX_CLOCK_SKEW.as_secs(),
                now.as_unix_millis()
            ));
        }
        Ok(Timestamp::from_unix_millis(millis))
    }

    /// A usage share a peer reports (cpu, disk): 0 to 100 %.
    pub fn check_percent(value: f64) -> Result<(), String> {
        if !(0.0..=100.0).contains(&value) {
            return Err(format!("must be 0 to 100, got {value}"));
        }
        Ok(())
    }
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
    /// The peer's replica diverged from the hub's register (it is ahead of it, or differs at
    /// the same version): sync in full, replacing what differs.
    FullSync,
}

/// A hub's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAck {
    pub hub_id: NodeId,
    pub history_id: HistoryId,
    pub version: u64,
    /// The register's digest at `version` (`None` from a hub that does not send digests).
    pub digest: Option<RegisterDigest>,
    pub action: RecommendedAction,
    pub received_at: Timestamp,
}

/// Which entries a sync asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncScope {
    /// The latest entry of every blueprint, deprecations included.
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
    /// The register's digest at each entry's version, in the order of `entries` (empty from a
    /// hub that does not send digests).
    pub digests: Vec<RegisterDigest>,
}

impl EntrySet {
    /// The digest at the last entry's version, if the hub sent digests.
    pub fn last_digest(&self) -> Option<RegisterDigest> {
        if self.digests.len() != self.entries.len() {
            return None;
        }
        self.digests.last().copied()
    }
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
    /// When this peer last synced with this hub (a full or incremental sync).
    pub last_sync_at: Option<Timestamp>,
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
    /// A shared store holds an entry this hub cannot take (it fails its checksum): the hub
    /// serves the register up to `last_good` only, refuses appends, and keeps reading until
    /// the entry is sound (integrity over availability: it never serves a gap).
    Blocked {
        last_good: u64,
        reason: String,
    },
}

/// A hub's state, as `GetCentralNodeStatus` and `/health` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubStatus {
    pub hub_id: NodeId,
    pub state: RegisterState,
    pub history_id: Option<HistoryId>,
    pub version: u64,
    /// Every blueprint of the register, deprecated ones included.
    pub total_blueprints: usize,
    /// Blueprints not deprecated.
    pub active_blueprints: usize,
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
    /// The peer holds no session on this hub at all: connect first.
    #[error("peer {0} has no session on this hub: connect first")]
    NotConnected(NodeId),
    /// The peer's replica cannot follow incrementally (another history, or it diverged from
    /// this hub's register): it must sync in full.
    #[error("a full sync is needed: {0}")]
    NeedsFullSync(String),
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

/// A peer's sync request, as the hub's authority judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncQuery {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub scope: SyncScope,
    /// The history of the peer's checkpoint, if any.
    pub history_id: Option<HistoryId>,
    /// The register digest at the peer's checkpoint, if it holds one.
    pub digest: Option<RegisterDigest>,
}

/// How a session's heartbeats look from the hub (`GetHeartbeatStatus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerHeartbeatStatus {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub last_heartbeat_at: Option<Timestamp>,
    /// Heartbeats overdue now: whole intervals past the last one (or the connect), after half
    /// an interval of grace.
    pub missed_heartbeats: u32,
    pub health: HeartbeatHealth,
    pub total_received: u64,
    /// Heartbeats missed over the session (gaps between heartbeats, and the current one).
    pub total_missed: u64,
    /// Mean time from a heartbeat's send time (the peer's clock) to its arrival (the hub's);
    /// `None` before the first heartbeat.
    pub average_latency_ms: Option<f64>,
    pub last_sync_version: u64,
    /// How many versions the peer is behind the hub's register.
    pub version_lag: u64,
}

/// A session's heartbeat health as the hub sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeartbeatHealth {
    /// No heartbeat overdue.
    Healthy,
    /// One heartbeat overdue.
    Warning,
    /// Two or more overdue: a peer with the default limit fails over now.
    Critical,
}

/// Where a peer's replica stands against the hub's register (`GetSyncCheckpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerCheckpoint {
    pub peer_id: NodeId,
    pub hub_id: NodeId,
    pub history_id: HistoryId,
    /// The hub's register version.
    pub version: u64,
    /// The version the peer last reported (connect or heartbeat).
    pub peer_version: u64,
    pub total_blueprints: usize,
    pub last_sync_at: Option<Timestamp>,
    /// When the peer's periodic sync is next due (its last sync, or its connect, plus the sync
    /// interval the hub told it).
    pub next_sync_due: Timestamp,
    pub status: CheckpointState,
}

/// Whether a peer's replica follows the hub's register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckpointState {
    UpToDate,
    Behind,
    /// Ahead of the hub, or different at the same version: it must sync in full.
    Diverged,
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
        Valid<PublishRequest>,
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
    /// A heartbeat the hub's server already answered from the published view, to record
    /// (counts, latency, last contact); nobody waits for it.
    HeartbeatSeen {
        beat: HeartbeatRequest,
        at: Timestamp,
        action: RecommendedAction,
    },
    /// The entries of a sync, for a peer's session.
    Entries {
        query: SyncQuery,
        reply: RpcReplyPort<Result<EntrySet, AuthorityError>>,
    },
    /// What the hub knows of a session's heartbeats.
    HeartbeatStatus {
        peer_id: NodeId,
        session_id: SessionId,
        reply: RpcReplyPort<Result<PeerHeartbeatStatus, AuthorityError>>,
    },
    /// Where a session's peer stands against the register.
    Checkpoint {
        peer_id: NodeId,
        session_id: SessionId,
        reply: RpcReplyPort<Result<PeerCheckpoint, AuthorityError>>,
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

/// What `CentralNodeConnection` serves, as it last published it (readers never enter its
/// mailbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    pub status: ConnectionStatus,
    pub hubs: Vec<HubReport>,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub checkpoint: Option<Checkpoint>,
    /// Every blueprint of the replica, deprecated ones included.
    pub total_blueprints: usize,
    /// Blueprints not deprecated.
    pub active_blueprints: usize,
    pub syncing: bool,
    pub last_sync_at: Option<Timestamp>,
    pub last_sync_kind: Option<String>,
    pub last_error: Option<String>,
    pub full_syncs: u64,
    pub incremental_syncs: u64,
    /// Entries received from hubs since start (to tell a full from an incremental resume).
    pub entries_received: u64,
    /// Why the replica is known to differ from its hub's register, until a full sync repairs
    /// it (`/health` reports it).
    pub diverged: Option<String>,
    /// Divergences repaired by a full sync since start.
    pub repairs: u64,
    /// Why the last sync was refused, naming the entries (blueprint and version) that failed
    /// their checksum or signature, until a sync is accepted (`/health` reports it; the replica
    /// keeps its last good version meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Entries refused since start (each time a sync brought them).
    #[serde(default)]
    pub refused_entries: u64,
}

/// What `SystemRegisterReplica` serves, as it last published it: published after the entries
/// and the checkpoint it shows are in the replica store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    /// False until the replica's first replay of its store ended: a read before then waits.
    pub ready: bool,
    pub status: ReplicaStatus,
    pub register: SystemRegisterView,
    /// The latest entry of each blueprint.
    pub entries: std::collections::BTreeMap<BlueprintId, Arc<SystemRegisterEntry>>,
}

/// How a sync ended (internal to `SystemRegisterReplica`).
#[derive(Debug)]
pub struct SyncReport {
    pub full: bool,
    pub hub_id: NodeId,
    pub result: Result<EntrySet, SyncFailure>,
}

/// Why a sync failed (internal to `SystemRegisterReplica`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncFailure {
    /// The hub does not know the session: reconnect.
    UnknownSession(String),
    /// The hub refused an incremental sync: the replica must sync in full.
    NeedsFullSync(String),
    /// Entries failed their checksum or signature: nothing of the sync was applied. The next
    /// trigger retries.
    Refused { entries: u64, reason: String },
    /// Anything else: the next trigger retries.
    Failed(String),
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncFailure::UnknownSession(reason) => write!(f, "unknown session: {reason}"),
            SyncFailure::NeedsFullSync(reason) => write!(f, "a full sync is needed: {reason}"),
            SyncFailure::Refused { reason, .. } => f.write_str(reason),
            SyncFailure::Failed(reason) => f.write_str(reason),
        }
    }
}

/// Where a replica stands (the heartbeat and the connect report it to hubs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaPosition {
    pub history_id: Option<HistoryId>,
    pub version: u64,
    pub digest: Option<RegisterDigest>,
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
    /// The checkpoint's history, version and digest alone (the heartbeat reports them every
    /// interval, the connection at connect).
    Position(RpcReplyPort<ReplicaPosition>),
    /// A hub found the replica diverged from its register: sync in full, replacing what
    /// differs.
    Diverged {
        reason: String,
    },
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
