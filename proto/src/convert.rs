//! Conversions between the wire types of `herald.v1` and the domain types of `herald-messages`.
//!
//! Domain → wire (`*_to_wire`, and builders named after the wire message) never fails. Wire →
//! domain (`*_from_wire`) validates every field the contracts constrain and returns a
//! `WireError` naming the wire field, which the hub answers with `INVALID_ARGUMENT` and a peer
//! treats as a refusal. Enums are mapped by name, one `match` per direction; an unknown or
//! `UNKNOWN` value is an error wherever it would change the meaning. Timestamps are int64 Unix
//! milliseconds; durations travel as whole seconds or minutes (rounded up).
//!
//! Nothing here reads a clock (callers pass `now`) or judges a request against the hub's state:
//! whether a session exists is the authority's call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;

use herald_messages::{
    BlueprintId, BlueprintNotification, ConnectRequest, EntryKind, HeartbeatAck, HeartbeatRequest,
    HistoryId, HubPeer, HubStatus, MAX_DOCUMENT_BYTES, MAX_METADATA_BYTES, MAX_SUMMARY_BYTES,
    NodeId, NodeType, RecommendedAction, RegisterId, RegisterState, SessionGrant, SessionId,
    SyncScope, SystemRegisterEntry, Timestamp,
};

use crate::v1;

/// Largest difference between a peer's timestamp and the hub's clock (spec 001: ±60 s).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Longest session id accepted (hubs issue 32 hex characters).
pub const MAX_SESSION_ID_LEN: usize = 128;
/// Longest advertised peer address accepted (a host name is at most 253 characters).
pub const MAX_ADDRESS_LEN: usize = 512;
/// Longest publisher name accepted (the publish API allows 255).
pub const MAX_PUBLISHED_BY_LEN: usize = 255;
/// Most values in one list of a subscription filter.
pub const MAX_FILTER_ITEMS: usize = 1024;
/// `node_type` of a peer on the wire.
pub const NODE_TYPE_PEER: &str = "Peer";
/// `node_type` of a hub on the wire (the original contracts call hubs central nodes).
pub const NODE_TYPE_CENTRAL: &str = "Central";
/// The protocol a peer says it speaks.
pub const PROTOCOL: &str = "herald.v1";

const CHECKSUM_PREFIX: &str = "sha256:";
const CHECKSUM_HEX_LEN: usize = 64;

/// A wire message that breaks the contract: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct WireError {
    /// The wire field, dotted for nested ones (`peer_info.port`).
    pub field: &'static str,
    pub reason: String,
}

impl WireError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The same error, reported at another field (a nested one).
    pub fn at(self, field: &'static str) -> Self {
        Self { field, ..self }
    }
}

// ---------------------------------------------------------------------------------------------
// Enums, by name
// ---------------------------------------------------------------------------------------------

pub fn node_type_to_wire(node_type: NodeType) -> &'static str {
    match node_type {
        NodeType::Peer => NODE_TYPE_PEER,
        NodeType::Hub => NODE_TYPE_CENTRAL,
    }
}

/// `"Peer"` or `"Central"`, exactly.
pub fn node_type_from_wire(value: &str) -> Result<NodeType, WireError> {
    match value {
        NODE_TYPE_PEER => Ok(NodeType::Peer),
        NODE_TYPE_CENTRAL => Ok(NodeType::Hub),
        other => Err(WireError::new(
            "node_type",
            format!(
                "must be {NODE_TYPE_PEER:?} or {NODE_TYPE_CENTRAL:?}, got {:?}",
                quoted(other)
            ),
        )),
    }
}

pub fn recommended_action_to_wire(action: RecommendedAction) -> v1::RecommendedAction {
    match action {
        RecommendedAction::None => v1::RecommendedAction::None,
        RecommendedAction::Sync => v1::RecommendedAction::Sync,
        RecommendedAction::ReduceFrequency => v1::RecommendedAction::ReduceFrequency,
        RecommendedAction::Failover => v1::RecommendedAction::Failover,
        RecommendedAction::Reconnect => v1::RecommendedAction::Reconnect,
    }
}

/// Every defined value (`NONE` included: it is the usual answer); an undefined one is an error.
pub fn recommended_action_from_wire(value: i32) -> Result<RecommendedAction, WireError> {
    let field = "recommended_action";
    match v1::RecommendedAction::try_from(value) {
        Ok(v1::RecommendedAction::None) => Ok(RecommendedAction::None),
        Ok(v1::RecommendedAction::Sync) => Ok(RecommendedAction::Sync),
        Ok(v1::RecommendedAction::ReduceFrequency) => Ok(RecommendedAction::ReduceFrequency),
        Ok(v1::RecommendedAction::Failover) => Ok(RecommendedAction::Failover),
        Ok(v1::RecommendedAction::Reconnect) => Ok(RecommendedAction::Reconnect),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

pub fn notification_type_to_wire(kind: EntryKind) -> v1::NotificationType {
    match kind {
        EntryKind::Published => v1::NotificationType::BlueprintPublished,
        EntryKind::Updated => v1::NotificationType::BlueprintUpdated,
        EntryKind::Deprecated => v1::NotificationType::BlueprintDeprecated,
    }
}

/// `UNKNOWN` and undefined values are errors: a notification must say what happened.
pub fn notification_type_from_wire(value: i32) -> Result<EntryKind, WireError> {
    let field = "type";
    match v1::NotificationType::try_from(value) {
        Ok(v1::NotificationType::BlueprintPublished) => Ok(EntryKind::Published),
        Ok(v1::NotificationType::BlueprintUpdated) => Ok(EntryKind::Updated),
        Ok(v1::NotificationType::BlueprintDeprecated) => Ok(EntryKind::Deprecated),
        Ok(v1::NotificationType::Unknown) => Err(WireError::new(
            field,
            "must say what happened (NOTIFICATION_TYPE_UNKNOWN is not allowed)",
        )),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

/// Any defined reason (`UNKNOWN` included: the reason is informative); an undefined one is an
/// error.
pub fn disconnect_reason_from_wire(value: i32) -> Result<v1::DisconnectReason, WireError> {
    v1::DisconnectReason::try_from(value).map_err(|_| unknown_enum("reason", value))
}

/// How a hub reports its health: serving, still loading, or refusing a corrupt register.
pub fn node_health_to_wire(state: &RegisterState) -> v1::NodeHealth {
    match state {
        RegisterState::Ready => v1::NodeHealth::Healthy,
        RegisterState::Loading => v1::NodeHealth::Degraded,
        RegisterState::Corrupt(_) => v1::NodeHealth::Unhealthy,
    }
}

// ---------------------------------------------------------------------------------------------
// CentralNodeConnection
// ---------------------------------------------------------------------------------------------

/// A peer's connect request. `connection_time` is `now`; the peer's address travels whole in
/// `peer_info.address` (port 0: not given separately).
pub fn connect_request_to_wire(request: &ConnectRequest, now: Timestamp) -> v1::ConnectRequest {
    v1::ConnectRequest {
        peer_id: request.peer_id.to_string(),
        peer_info: Some(v1::PeerInfo {
            address: request.address.clone(),
            port: 0,
            node_type: node_type_to_wire(request.node_type).to_owned(),
            supported_protocols: vec![PROTOCOL.to_owned()],
            capabilities: Some(v1::PeerCapabilities {
                supports_push_notifications: true,
                supports_incremental_sync: true,
                max_blueprint_size: count_to_wire(MAX_DOCUMENT_BYTES),
                is_nat_restricted: false,
            }),
        }),
        last_known_version: version_to_wire(request.last_known_version),
        connection_time: timestamp_to_wire(now),
    }
}

/// Validates a connect request: `peer_id` a node id, `peer_info` present with a `node_type` of
/// `"Peer"` or `"Central"`, `port` 0 (not given) or 1–65535 (then appended to the address),
/// `last_known_version` not negative.
pub fn connect_request_from_wire(wire: &v1::ConnectRequest) -> Result<ConnectRequest, WireError> {
    let peer_id = node_id("peer_id", &wire.peer_id)?;
    let info = wire
        .peer_info
        .as_ref()
        .ok_or_else(|| WireError::new("peer_info", "required: it names the node type"))?;
    let node_type =
        node_type_from_wire(&info.node_type).map_err(|err| err.at("peer_info.node_type"))?;
    let address = address_from_wire(&info.address, info.port)?;
    let last_known_version = version("last_known_version", wire.last_known_version)?;
    Ok(ConnectRequest {
        peer_id,
        node_type,
        address,
        last_known_version,
    })
}

/// What a hub grants: the session, its history and version, and the peer's intervals.
pub fn connection_response(grant: &SessionGrant) -> v1::ConnectionResponse {
    v1::ConnectionResponse {
        success: true,
        message: "connected".to_owned(),
        session_id: grant.session_id.to_string(),
        central_node_id: grant.hub_id.to_string(),
        current_system_register_version: version_to_wire(grant.version),
        connected_at: timestamp_to_wire(grant.connected_at),
        heartbeat_interval_seconds: seconds_to_wire(grant.heartbeat_interval),
        config: Some(v1::ConnectionConfig {
            heartbeat_timeout_seconds: seconds_to_wire(grant.heartbeat_timeout),
            periodic_sync_interval_minutes: minutes_to_wire(grant.sync_interval),
            push_notifications_enabled: true,
            // herald does not limit concurrent syncs per peer: 0 = not stated.
            max_concurrent_syncs: 0,
        }),
        history_id: grant.history_id.to_string(),
    }
}

/// Validates a hub's grant: `success`, a session id, the hub's node id, a history id, a version
/// not negative, intervals of at least one second (minute) and a `config`.
pub fn session_grant_from_wire(wire: &v1::ConnectionResponse) -> Result<SessionGrant, WireError> {
    if !wire.success {
        return Err(WireError::new(
            "success",
            format!("the hub did not grant a session: {}", quoted(&wire.message)),
        ));
    }
    let config = wire
        .config
        .as_ref()
        .ok_or_else(|| WireError::new("config", "required: it holds the peer's intervals"))?;
    Ok(SessionGrant {
        session_id: session_id("session_id", &wire.session_id)?,
        hub_id: node_id("central_node_id", &wire.central_node_id)?,
        history_id: history_id("history_id", &wire.history_id)?,
        version: version(
            "current_system_register_version",
            wire.current_system_register_version,
        )?,
        connected_at: timestamp_from_wire("connected_at", wire.connected_at)?,
        heartbeat_interval: seconds_from_wire(
            "heartbeat_interval_seconds",
            wire.heartbeat_interval_seconds,
        )?,
        heartbeat_timeout: seconds_from_wire(
            "config.heartbeat_timeout_seconds",
            config.heartbeat_timeout_seconds,
        )?,
        sync_interval: minutes_from_wire(
            "config.periodic_sync_interval_minutes",
            config.periodic_sync_interval_minutes,
        )?,
    })
}

/// A peer and session, as a disconnect request names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectQuery {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub reason: v1::DisconnectReason,
}

pub fn disconnect_request_to_wire(
    peer_id: &NodeId,
    session_id: &SessionId,
    reason: v1::DisconnectReason,
    now: Timestamp,
) -> v1::DisconnectRequest {
    v1::DisconnectRequest {
        peer_id: peer_id.to_string(),
        session_id: session_id.to_string(),
        reason: i32::from(reason),
        disconnect_time: timestamp_to_wire(now),
    }
}

pub fn disconnect_request_from_wire(
    wire: &v1::DisconnectRequest,
) -> Result<DisconnectQuery, WireError> {
    Ok(DisconnectQuery {
        peer_id: node_id("peer_id", &wire.peer_id)?,
        session_id: session_id("session_id", &wire.session_id)?,
        reason: disconnect_reason_from_wire(wire.reason)?,
    })
}

/// Who asks for a hub's status (anyone may: `peer_id` is optional) and whether to list peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    pub peer_id: Option<NodeId>,
    pub include_peer_list: bool,
}

pub fn status_request_from_wire(wire: &v1::StatusRequest) -> Result<StatusQuery, WireError> {
    let peer_id = match wire.peer_id.as_str() {
        "" => None,
        value => Some(node_id("peer_id", value)?),
    };
    Ok(StatusQuery {
        peer_id,
        include_peer_list: wire.include_peer_list,
    })
}

/// A hub's status; `peers` is empty unless the caller asked for the list.
pub fn central_node_status(
    status: &HubStatus,
    peers: &[HubPeer],
    now: Timestamp,
) -> v1::CentralNodeStatus {
    v1::CentralNodeStatus {
        node_id: status.hub_id.to_string(),
        health: i32::from(node_health_to_wire(&status.state)),
        current_system_register_version: version_to_wire(status.version),
        total_blueprints: count_to_wire(status.total_blueprints),
        active_peer_count: count_to_wire(status.active_peers),
        last_blueprint_published_at: optional_timestamp_to_wire(status.last_published_at),
        uptime_seconds: i64::try_from(now.since(status.started_at).as_secs()).unwrap_or(i64::MAX),
        connected_peers: peers.iter().map(connected_peer).collect(),
        history_id: status
            .history_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// A peer with a session on this hub. Silent peers lose their session, so every listed peer
/// is `CONNECTED`.
pub fn connected_peer(peer: &HubPeer) -> v1::ConnectedPeerInfo {
    v1::ConnectedPeerInfo {
        peer_id: peer.peer_id.to_string(),
        session_id: peer.session_id.to_string(),
        connected_at: timestamp_to_wire(peer.connected_at),
        last_heartbeat_at: optional_timestamp_to_wire(peer.last_heartbeat_at),
        last_sync_version: version_to_wire(peer.last_sync_version),
        status: i32::from(v1::PeerConnectionStatus::Connected),
    }
}

// ---------------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------------

/// A peer's heartbeat. Peers send no metrics.
pub fn heartbeat_to_wire(beat: &HeartbeatRequest) -> v1::HeartbeatMessage {
    v1::HeartbeatMessage {
        peer_id: beat.peer_id.to_string(),
        timestamp: timestamp_to_wire(beat.sent_at),
        sequence_number: version_to_wire(beat.sequence),
        last_sync_version: version_to_wire(beat.last_sync_version),
        session_id: beat.session_id.to_string(),
        node_type: NODE_TYPE_PEER.to_owned(),
        metrics: None,
    }
}

/// Validates a heartbeat against the hub's clock `now`: `timestamp` within `MAX_CLOCK_SKEW`,
/// sequence and version not negative, `node_type` (when given) `"Peer"` or `"Central"`, and
/// the metrics (when given) in range: cpu and disk 0–100 %, memory not negative.
pub fn heartbeat_from_wire(
    wire: &v1::HeartbeatMessage,
    now: Timestamp,
) -> Result<HeartbeatRequest, WireError> {
    let peer_id = node_id("peer_id", &wire.peer_id)?;
    let session_id = session_id("session_id", &wire.session_id)?;
    let sent_at = timestamp_near("timestamp", wire.timestamp, now)?;
    let sequence = version("sequence_number", wire.sequence_number)?;
    let last_sync_version = version("last_sync_version", wire.last_sync_version)?;
    if !wire.node_type.is_empty() {
        node_type_from_wire(&wire.node_type)?;
    }
    if let Some(metrics) = &wire.metrics {
        percent("metrics.cpu_usage_percent", metrics.cpu_usage_percent)?;
        percent("metrics.disk_usage_percent", metrics.disk_usage_percent)?;
        if !(metrics.memory_usage_mb.is_finite() && metrics.memory_usage_mb >= 0.0) {
            return Err(WireError::new(
                "metrics.memory_usage_mb",
                format!("must be a number ≥ 0, got {}", metrics.memory_usage_mb),
            ));
        }
    }
    Ok(HeartbeatRequest {
        peer_id,
        session_id,
        sequence,
        last_sync_version,
        sent_at,
    })
}

/// The hub's answer to a heartbeat; `server_latency` is how long the hub took to answer.
pub fn heartbeat_acknowledgement(
    ack: &HeartbeatAck,
    server_latency: Duration,
) -> v1::HeartbeatAcknowledgement {
    v1::HeartbeatAcknowledgement {
        success: true,
        timestamp: timestamp_to_wire(ack.received_at),
        central_node_id: ack.hub_id.to_string(),
        current_system_register_version: version_to_wire(ack.version),
        message: String::new(),
        recommended_action: i32::from(recommended_action_to_wire(ack.action)),
        server_latency_ms: i64::try_from(server_latency.as_millis()).unwrap_or(i64::MAX),
        history_id: ack.history_id.to_string(),
    }
}

/// Validates a hub's acknowledgement: `success`, the hub's node id, a history id, a version not
/// negative and a defined recommended action.
pub fn heartbeat_ack_from_wire(
    wire: &v1::HeartbeatAcknowledgement,
) -> Result<HeartbeatAck, WireError> {
    if !wire.success {
        return Err(WireError::new(
            "success",
            format!(
                "the hub did not accept the heartbeat: {}",
                quoted(&wire.message)
            ),
        ));
    }
    Ok(HeartbeatAck {
        hub_id: node_id("central_node_id", &wire.central_node_id)?,
        history_id: history_id("history_id", &wire.history_id)?,
        version: version(
            "current_system_register_version",
            wire.current_system_register_version,
        )?,
        action: recommended_action_from_wire(wire.recommended_action)?,
        received_at: timestamp_from_wire("timestamp", wire.timestamp)?,
    })
}

/// A peer and session, as the status and checkpoint requests name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    pub peer_id: NodeId,
    pub session_id: SessionId,
}

pub fn session_query_from_wire(peer_id: &str, session: &str) -> Result<SessionQuery, WireError> {
    Ok(SessionQuery {
        peer_id: node_id("peer_id", peer_id)?,
        session_id: session_id("session_id", session)?,
    })
}

/// What a hub knows of a peer's heartbeats. The hub keeps no miss or latency counts: a peer it
/// lists is one whose session is alive (silent peers lose theirs).
pub fn heartbeat_status(peer: &HubPeer, hub_version: u64) -> v1::HeartbeatStatus {
    v1::HeartbeatStatus {
        peer_id: peer.peer_id.to_string(),
        session_id: peer.session_id.to_string(),
        last_heartbeat_time: optional_timestamp_to_wire(peer.last_heartbeat_at),
        missed_heartbeats: 0,
        is_healthy: true,
        status_message: "session alive".to_owned(),
        total_heartbeats_received: 0,
        total_heartbeats_missed: 0,
        average_latency_ms: 0.0,
        last_known_sync_version: version_to_wire(peer.last_sync_version),
        version_lag: version_to_wire(hub_version.saturating_sub(peer.last_sync_version)),
        health_status: i32::from(v1::HeartbeatHealthStatus::Healthy),
    }
}

// ---------------------------------------------------------------------------------------------
// SystemRegisterSync
// ---------------------------------------------------------------------------------------------

/// A validated sync request. The RPC decides the scope: `FullSync` sends everything active,
/// `IncrementalSync` everything after `last_known_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncQuery {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub last_known_version: u64,
    pub full_sync: bool,
    /// The history of the peer's checkpoint, if it has one.
    pub history_id: Option<HistoryId>,
    /// `None`: unlimited.
    pub max_blueprints: Option<usize>,
}

/// A sync request for `scope`, with the history of the peer's checkpoint if any.
pub fn sync_request_to_wire(
    peer_id: &NodeId,
    session_id: &SessionId,
    scope: &SyncScope,
    history: Option<&HistoryId>,
    now: Timestamp,
) -> v1::SyncRequest {
    let (last_known_version, full_sync) = match scope {
        SyncScope::Full => (0, true),
        SyncScope::After(version) => (*version, false),
    };
    v1::SyncRequest {
        peer_id: peer_id.to_string(),
        last_known_version: version_to_wire(last_known_version),
        full_sync,
        session_id: session_id.to_string(),
        max_blueprints: 0,
        request_time: timestamp_to_wire(now),
        history_id: history.map(ToString::to_string).unwrap_or_default(),
    }
}

/// Validates a sync request: ids, `last_known_version` and `max_blueprints` not negative,
/// `history_id` empty or a history id.
pub fn sync_request_from_wire(wire: &v1::SyncRequest) -> Result<SyncQuery, WireError> {
    let max_blueprints = match wire.max_blueprints {
        0 => None,
        limit if limit > 0 => Some(usize::try_from(limit).unwrap_or(usize::MAX)),
        negative => {
            return Err(WireError::new(
                "max_blueprints",
                format!("must be ≥ 0 (0 = unlimited), got {negative}"),
            ));
        }
    };
    Ok(SyncQuery {
        peer_id: node_id("peer_id", &wire.peer_id)?,
        session_id: session_id("session_id", &wire.session_id)?,
        last_known_version: version("last_known_version", wire.last_known_version)?,
        full_sync: wire.full_sync,
        history_id: optional_history_id("history_id", &wire.history_id)?,
        max_blueprints,
    })
}

/// An entry of the system register, with the register's history.
pub fn entry_to_wire(entry: &SystemRegisterEntry, history: &HistoryId) -> v1::SystemRegisterEntry {
    v1::SystemRegisterEntry {
        blueprint_id: entry.blueprint_id.to_string(),
        register_id: RegisterId::system().to_string(),
        blueprint_document: entry.document.clone(),
        published_at: timestamp_to_wire(entry.published_at),
        published_by: entry.published_by.clone(),
        version: version_to_wire(entry.version),
        is_active: entry.is_active,
        publication_transaction_id: entry.transaction_id.clone(),
        checksum: entry.checksum.clone(),
        metadata: entry
            .metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        history_id: history.to_string(),
        kind: notification_type_to_wire(entry.kind).into(),
    }
}

/// Validates an entry a hub sent: the all-zero register id, a blueprint id, a version ≥ 1, a
/// `sha256:<64 lowercase hex>` checksum that matches the document, a document of at most
/// 16 MiB, metadata under 4 KiB and a history id. Returns the history with the entry.
///
/// An entry without a kind (from an older hub) reads as a deprecation when inactive and as a
/// publication when active.
pub fn entry_from_wire(
    wire: v1::SystemRegisterEntry,
) -> Result<(HistoryId, SystemRegisterEntry), WireError> {
    let register_id = RegisterId::parse(&wire.register_id)
        .map_err(|err| WireError::new("register_id", err.to_string()))?;
    if register_id != RegisterId::system() {
        return Err(WireError::new(
            "register_id",
            format!(
                "must be the system register {}, got {register_id}",
                RegisterId::system()
            ),
        ));
    }
    let history = history_id("history_id", &wire.history_id)?;
    let blueprint_id = blueprint_id("blueprint_id", &wire.blueprint_id)?;
    let version = entry_version("version", wire.version)?;
    document_size("blueprint_document", &wire.blueprint_document)?;
    // The format only: whether it matches the document is for the replica to check, once,
    // off its actor (hashing a 20 MiB full sync twice cost 15–19 ms, BENCHMARKS.md).
    checksum("checksum", &wire.checksum)?;
    published_by("published_by", &wire.published_by)?;
    let metadata = metadata("metadata", wire.metadata)?;
    let kind = match v1::NotificationType::try_from(wire.kind) {
        Ok(v1::NotificationType::Unknown) | Err(_) if wire.is_active => EntryKind::Published,
        Ok(v1::NotificationType::Unknown) | Err(_) => EntryKind::Deprecated,
        Ok(_) => notification_type_from_wire(wire.kind).map_err(|err| err.at("kind"))?,
    };
    let entry = SystemRegisterEntry {
        blueprint_id,
        version,
        kind,
        document: wire.blueprint_document,
        published_at: timestamp_from_wire("published_at", wire.published_at)?,
        published_by: wire.published_by,
        is_active: wire.is_active,
        transaction_id: wire.publication_transaction_id,
        checksum: wire.checksum,
        metadata,
    };
    Ok((history, entry))
}

/// Which notifications a subscriber wants; empty lists mean all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    pub blueprint_ids: BTreeSet<BlueprintId>,
    pub publishers: BTreeSet<String>,
    pub kinds: Vec<EntryKind>,
}

impl NotificationFilter {
    pub fn matches(&self, notification: &BlueprintNotification) -> bool {
        (self.blueprint_ids.is_empty() || self.blueprint_ids.contains(&notification.blueprint_id))
            && (self.publishers.is_empty() || self.publishers.contains(&notification.published_by))
            && (self.kinds.is_empty() || self.kinds.contains(&notification.kind))
    }
}

/// A validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionQuery {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub filter: NotificationFilter,
}

/// A subscription to every notification.
pub fn subscription_request_to_wire(
    peer_id: &NodeId,
    session_id: &SessionId,
    now: Timestamp,
) -> v1::SubscriptionRequest {
    v1::SubscriptionRequest {
        peer_id: peer_id.to_string(),
        session_id: session_id.to_string(),
        subscribe_time: timestamp_to_wire(now),
        filters: None,
    }
}

/// Validates a subscription: ids, and filters of at most `MAX_FILTER_ITEMS` values each with
/// blueprint ids, publisher names of at most 255 bytes and defined notification types.
/// Metadata filters are refused: notifications carry no metadata to match.
pub fn subscription_request_from_wire(
    wire: &v1::SubscriptionRequest,
) -> Result<SubscriptionQuery, WireError> {
    let peer_id = node_id("peer_id", &wire.peer_id)?;
    let session_id = session_id("session_id", &wire.session_id)?;
    let Some(filters) = &wire.filters else {
        return Ok(SubscriptionQuery {
            peer_id,
            session_id,
            filter: NotificationFilter::default(),
        });
    };
    filter_len("filters.blueprint_ids", filters.blueprint_ids.len())?;
    filter_len("filters.publisher_ids", filters.publisher_ids.len())?;
    filter_len(
        "filters.notification_types",
        filters.notification_types.len(),
    )?;
    if !filters.metadata_filters.is_empty() {
        return Err(WireError::new(
            "filters.metadata_filters",
            "not supported: notifications carry no metadata",
        ));
    }
    let blueprint_ids = filters
        .blueprint_ids
        .iter()
        .map(|id| blueprint_id("filters.blueprint_ids", id))
        .collect::<Result<_, _>>()?;
    let publishers = filters
        .publisher_ids
        .iter()
        .map(|publisher| {
            published_by("filters.publisher_ids", publisher)?;
            Ok(publisher.clone())
        })
        .collect::<Result<_, WireError>>()?;
    let kinds = filters
        .notification_types
        .iter()
        .map(|kind| {
            notification_type_from_wire(*kind).map_err(|err| err.at("filters.notification_types"))
        })
        .collect::<Result<_, _>>()?;
    Ok(SubscriptionQuery {
        peer_id,
        session_id,
        filter: NotificationFilter {
            blueprint_ids,
            publishers,
            kinds,
        },
    })
}

/// A push notification. It carries no summary: peers fetch the entry with a sync.
pub fn notification_to_wire(notification: &BlueprintNotification) -> v1::BlueprintNotification {
    v1::BlueprintNotification {
        blueprint_id: notification.blueprint_id.to_string(),
        version: version_to_wire(notification.version),
        published_at: timestamp_to_wire(notification.published_at),
        published_by: notification.published_by.clone(),
        blueprint_summary: Bytes::new(),
        r#type: i32::from(notification_type_to_wire(notification.kind)),
        checksum: notification.checksum.clone(),
        sequence_number: version_to_wire(notification.sequence),
        history_id: notification.history_id.to_string(),
    }
}

/// Validates a notification a hub pushed: a history id, a blueprint id, a version ≥ 1, a
/// defined type, a checksum, a summary of at most 4 KiB (then dropped) and a sequence number
/// not negative.
pub fn notification_from_wire(
    wire: &v1::BlueprintNotification,
) -> Result<BlueprintNotification, WireError> {
    if wire.blueprint_summary.len() > MAX_SUMMARY_BYTES {
        return Err(WireError::new(
            "blueprint_summary",
            format!(
                "must be at most {MAX_SUMMARY_BYTES} bytes, got {}",
                wire.blueprint_summary.len()
            ),
        ));
    }
    checksum("checksum", &wire.checksum)?;
    published_by("published_by", &wire.published_by)?;
    Ok(BlueprintNotification {
        history_id: history_id("history_id", &wire.history_id)?,
        blueprint_id: blueprint_id("blueprint_id", &wire.blueprint_id)?,
        version: entry_version("version", wire.version)?,
        kind: notification_type_from_wire(wire.r#type)?,
        published_at: timestamp_from_wire("published_at", wire.published_at)?,
        published_by: wire.published_by.clone(),
        checksum: wire.checksum.clone(),
        sequence: version("sequence_number", wire.sequence_number)?,
    })
}

/// A hub's view of a peer's sync: the hub's version and history, and whether the peer's last
/// reported version reaches it. The hub keeps no sync times: those fields are 0.
pub fn sync_checkpoint(peer: &HubPeer, status: &HubStatus) -> v1::SyncCheckpoint {
    let checkpoint_status = if peer.last_sync_version >= status.version {
        v1::CheckpointStatus::UpToDate
    } else {
        v1::CheckpointStatus::Behind
    };
    v1::SyncCheckpoint {
        peer_id: peer.peer_id.to_string(),
        current_version: version_to_wire(status.version),
        last_sync_time: 0,
        total_blueprints: count_to_wire(status.total_blueprints),
        central_node_id: status.hub_id.to_string(),
        next_sync_due: 0,
        status: i32::from(checkpoint_status),
        history_id: status
            .history_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

pub fn timestamp_to_wire(timestamp: Timestamp) -> i64 {
    timestamp.as_unix_millis()
}

/// Not negative.
pub fn timestamp_from_wire(field: &'static str, millis: i64) -> Result<Timestamp, WireError> {
    if millis < 0 {
        return Err(WireError::new(
            field,
            format!("must be Unix milliseconds ≥ 0, got {millis}"),
        ));
    }
    Ok(Timestamp::from_unix_millis(millis))
}

/// Within `MAX_CLOCK_SKEW` of `now`.
pub fn timestamp_near(
    field: &'static str,
    millis: i64,
    now: Timestamp,
) -> Result<Timestamp, WireError> {
    let off_by = (i128::from(millis) - i128::from(now.as_unix_millis())).abs();
    if off_by > i128::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(i128::MAX) {
        return Err(WireError::new(
            field,
            format!(
                "must be within {} s of the hub's clock ({} ms), got {millis} ms ({off_by} ms off)",
                MAX_CLOCK_SKEW.as_secs(),
                now.as_unix_millis()
            ),
        ));
    }
    Ok(Timestamp::from_unix_millis(millis))
}

/// Whole seconds, rounded up, saturating.
pub fn seconds_to_wire(duration: Duration) -> i32 {
    let seconds = whole_seconds_rounded_up(duration);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

/// At least one second.
pub fn seconds_from_wire(field: &'static str, seconds: i32) -> Result<Duration, WireError> {
    match u64::try_from(seconds) {
        Ok(seconds) if seconds >= 1 => Ok(Duration::from_secs(seconds)),
        _ => Err(WireError::new(
            field,
            format!("must be at least 1 second, got {seconds}"),
        )),
    }
}

/// Whole minutes, rounded up, saturating.
pub fn minutes_to_wire(duration: Duration) -> i32 {
    let seconds = whole_seconds_rounded_up(duration);
    i32::try_from(seconds.div_ceil(60)).unwrap_or(i32::MAX)
}

/// At least one minute.
pub fn minutes_from_wire(field: &'static str, minutes: i32) -> Result<Duration, WireError> {
    match u64::try_from(minutes) {
        Ok(minutes) if minutes >= 1 => Ok(Duration::from_secs(minutes.saturating_mul(60))),
        _ => Err(WireError::new(
            field,
            format!("must be at least 1 minute, got {minutes}"),
        )),
    }
}

fn whole_seconds_rounded_up(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

fn version_to_wire(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn count_to_wire(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

fn optional_timestamp_to_wire(timestamp: Option<Timestamp>) -> i64 {
    timestamp.map_or(0, timestamp_to_wire)
}

/// A version or counter: not negative.
fn version(field: &'static str, value: i64) -> Result<u64, WireError> {
    u64::try_from(value).map_err(|_| WireError::new(field, format!("must be ≥ 0, got {value}")))
}

/// An entry's version: 1 or more.
fn entry_version(field: &'static str, value: i64) -> Result<u64, WireError> {
    match u64::try_from(value) {
        Ok(version) if version >= 1 => Ok(version),
        _ => Err(WireError::new(field, format!("must be ≥ 1, got {value}"))),
    }
}

fn node_id(field: &'static str, value: &str) -> Result<NodeId, WireError> {
    NodeId::parse(value).map_err(|err| WireError::new(field, err.to_string()))
}

fn blueprint_id(field: &'static str, value: &str) -> Result<BlueprintId, WireError> {
    BlueprintId::parse(value).map_err(|err| WireError::new(field, err.to_string()))
}

fn history_id(field: &'static str, value: &str) -> Result<HistoryId, WireError> {
    HistoryId::parse(value).map_err(|err| WireError::new(field, err.to_string()))
}

/// Empty: none.
fn optional_history_id(field: &'static str, value: &str) -> Result<Option<HistoryId>, WireError> {
    match value {
        "" => Ok(None),
        value => history_id(field, value).map(Some),
    }
}

/// 1 to `MAX_SESSION_ID_LEN` visible ASCII characters.
fn session_id(field: &'static str, value: &str) -> Result<SessionId, WireError> {
    let well_formed = !value.is_empty()
        && value.len() <= MAX_SESSION_ID_LEN
        && value.bytes().all(|b| b.is_ascii_graphic());
    if !well_formed {
        return Err(WireError::new(
            field,
            format!(
                "must be 1 to {MAX_SESSION_ID_LEN} visible ASCII characters, got {:?}",
                quoted(value)
            ),
        ));
    }
    Ok(SessionId::new(value))
}

/// The address, with `:port` appended when the port is given (not 0).
fn address_from_wire(address: &str, port: i32) -> Result<String, WireError> {
    if address.len() > MAX_ADDRESS_LEN || address.chars().any(char::is_control) {
        return Err(WireError::new(
            "peer_info.address",
            format!("must be at most {MAX_ADDRESS_LEN} bytes without control characters"),
        ));
    }
    match port {
        0 => Ok(address.to_owned()),
        1..=65535 => Ok(format!("{address}:{port}")),
        other => Err(WireError::new(
            "peer_info.port",
            format!("must be 1 to 65535 (0 = not given), got {other}"),
        )),
    }
}

fn percent(field: &'static str, value: f64) -> Result<(), WireError> {
    if !(0.0..=100.0).contains(&value) {
        return Err(WireError::new(
            field,
            format!("must be 0 to 100, got {value}"),
        ));
    }
    Ok(())
}

/// `sha256:` and 64 lowercase hex digits.
fn checksum(field: &'static str, value: &str) -> Result<(), WireError> {
    let well_formed = value.strip_prefix(CHECKSUM_PREFIX).is_some_and(|hex| {
        hex.len() == CHECKSUM_HEX_LEN
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !well_formed {
        return Err(WireError::new(
            field,
            format!(
                "must be {CHECKSUM_PREFIX:?} and {CHECKSUM_HEX_LEN} lowercase hex digits, got {:?}",
                quoted(value)
            ),
        ));
    }
    Ok(())
}

fn document_size(field: &'static str, document: &[u8]) -> Result<(), WireError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(WireError::new(
            field,
            format!(
                "must be at most {MAX_DOCUMENT_BYTES} bytes, got {}",
                document.len()
            ),
        ));
    }
    Ok(())
}

fn published_by(field: &'static str, value: &str) -> Result<(), WireError> {
    if value.len() > MAX_PUBLISHED_BY_LEN {
        return Err(WireError::new(
            field,
            format!(
                "must be at most {MAX_PUBLISHED_BY_LEN} bytes, got {}",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Keys and values together under `MAX_METADATA_BYTES`.
fn metadata(
    field: &'static str,
    wire: HashMap<String, String>,
) -> Result<BTreeMap<String, String>, WireError> {
    let total: usize = wire
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if total >= MAX_METADATA_BYTES {
        return Err(WireError::new(
            field,
            format!("must total under {MAX_METADATA_BYTES} bytes, got {total}"),
        ));
    }
    Ok(wire.into_iter().collect())
}

fn filter_len(field: &'static str, len: usize) -> Result<(), WireError> {
    if len > MAX_FILTER_ITEMS {
        return Err(WireError::new(
            field,
            format!("at most {MAX_FILTER_ITEMS} values, got {len}"),
        ));
    }
    Ok(())
}

fn unknown_enum(field: &'static str, value: i32) -> WireError {
    WireError::new(field, format!("undefined value {value}"))
}

/// Error messages quote what they got, but never a megabyte of it.
fn quoted(value: &str) -> String {
    const SHOWN: usize = 80;
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    fn history() -> HistoryId {
        HistoryId::from_bytes([0xab; 16])
    }

    fn session() -> SessionId {
        SessionId::new("0123456789abcdef0123456789abcdef")
    }

    fn entry(version: u64, kind: EntryKind) -> SystemRegisterEntry {
        let document = Bytes::from_static(br#"{"steps":[1,2]}"#);
        SystemRegisterEntry {
            blueprint_id: BlueprintId::seed(),
            version,
            kind,
            checksum: SystemRegisterEntry::checksum_of(&document),
            document,
            published_at: NOW,
            published_by: "hub-1".into(),
            is_active: kind != EntryKind::Deprecated,
            transaction_id: "tx-1".into(),
            metadata: BTreeMap::from([("team".to_owned(), "core".to_owned())]),
        }
    }

    fn wire_entry() -> v1::SystemRegisterEntry {
        entry_to_wire(&entry(3, EntryKind::Published), &history())
    }

    fn grant() -> SessionGrant {
        SessionGrant {
            session_id: session(),
            hub_id: node("hub-1"),
            history_id: history(),
            version: 7,
            connected_at: NOW,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(30),
            sync_interval: Duration::from_secs(300),
        }
    }

    fn connect_request() -> ConnectRequest {
        ConnectRequest {
            peer_id: node("peer-1"),
            node_type: NodeType::Peer,
            address: "10.0.0.7:7000".into(),
            last_known_version: 4,
        }
    }

    fn beat() -> HeartbeatRequest {
        HeartbeatRequest {
            peer_id: node("peer-1"),
            session_id: session(),
            sequence: 12,
            last_sync_version: 6,
            sent_at: NOW,
        }
    }

    fn notification(kind: EntryKind) -> BlueprintNotification {
        BlueprintNotification {
            history_id: history(),
            blueprint_id: BlueprintId::seed(),
            version: 9,
            kind,
            published_at: NOW,
            published_by: "admin".into(),
            checksum: SystemRegisterEntry::checksum_of(b"{}"),
            sequence: 3,
        }
    }

    /// The field a conversion refused.
    fn refused<T: std::fmt::Debug>(result: Result<T, WireError>) -> &'static str {
        result.expect_err("should be refused").field
    }

    // ---- enums ----

    #[test]
    fn every_enum_value_maps_by_name_both_ways() {
        for node_type in [NodeType::Peer, NodeType::Hub] {
            assert_eq!(
                node_type_from_wire(node_type_to_wire(node_type)),
                Ok(node_type)
            );
        }
        assert_eq!(node_type_to_wire(NodeType::Hub), "Central");
        for action in [
            RecommendedAction::None,
            RecommendedAction::Sync,
            RecommendedAction::ReduceFrequency,
            RecommendedAction::Failover,
            RecommendedAction::Reconnect,
        ] {
            let wire = recommended_action_to_wire(action);
            assert_eq!(recommended_action_from_wire(i32::from(wire)), Ok(action));
        }
        assert_eq!(
            recommended_action_to_wire(RecommendedAction::Sync).as_str_name(),
            "RECOMMENDED_ACTION_SYNC"
        );
        for kind in [
            EntryKind::Published,
            EntryKind::Updated,
            EntryKind::Deprecated,
        ] {
            let wire = notification_type_to_wire(kind);
            assert_eq!(notification_type_from_wire(i32::from(wire)), Ok(kind));
        }
        assert_eq!(
            notification_type_to_wire(EntryKind::Deprecated).as_str_name(),
            "NOTIFICATION_TYPE_BLUEPRINT_DEPRECATED"
        );
        assert_eq!(
            node_health_to_wire(&RegisterState::Corrupt("x".into())),
            v1::NodeHealth::Unhealthy
        );
    }

    #[test]
    fn unknown_enum_values_are_refused_where_they_matter() {
        assert_eq!(refused(node_type_from_wire("peer")), "node_type");
        assert_eq!(refused(node_type_from_wire("Hub")), "node_type");
        assert_eq!(
            refused(recommended_action_from_wire(99)),
            "recommended_action"
        );
        assert_eq!(refused(notification_type_from_wire(0)), "type");
        assert_eq!(refused(notification_type_from_wire(-1)), "type");
        assert_eq!(refused(disconnect_reason_from_wire(42)), "reason");
        assert_eq!(
            disconnect_reason_from_wire(0),
            Ok(v1::DisconnectReason::Unknown)
        );
    }

    // ---- round trips ----

    #[test]
    fn connect_requests_round_trip() {
        let request = connect_request();
        let wire = connect_request_to_wire(&request, NOW);
        assert_eq!(wire.connection_time, NOW.as_unix_millis());
        assert_eq!(wire.peer_info.as_ref().unwrap().node_type, "Peer");
        assert_eq!(connect_request_from_wire(&wire), Ok(request));
        let hub = ConnectRequest {
            node_type: NodeType::Hub,
            ..connect_request()
        };
        let wire = connect_request_to_wire(&hub, NOW);
        assert_eq!(wire.peer_info.as_ref().unwrap().node_type, "Central");
        assert_eq!(connect_request_from_wire(&wire), Ok(hub));
    }

    #[test]
    fn session_grants_round_trip() {
        let wire = connection_response(&grant());
        assert!(wire.success);
        assert_eq!(wire.heartbeat_interval_seconds, 30);
        assert_eq!(wire.config.unwrap().periodic_sync_interval_minutes, 5);
        assert_eq!(wire.history_id, history().to_string());
        assert_eq!(session_grant_from_wire(&wire), Ok(grant()));
    }

    #[test]
    fn heartbeats_and_acks_round_trip() {
        let wire = heartbeat_to_wire(&beat());
        assert_eq!(heartbeat_from_wire(&wire, NOW), Ok(beat()));
        let ack = HeartbeatAck {
            hub_id: node("hub-1"),
            history_id: history(),
            version: 8,
            action: RecommendedAction::Sync,
            received_at: NOW,
        };
        let wire = heartbeat_acknowledgement(&ack, Duration::from_millis(3));
        assert_eq!(wire.server_latency_ms, 3);
        assert_eq!(
            wire.recommended_action,
            i32::from(v1::RecommendedAction::Sync)
        );
        assert_eq!(heartbeat_ack_from_wire(&wire), Ok(ack));
    }

    #[test]
    fn entries_round_trip_with_their_history() {
        for kind in [EntryKind::Published, EntryKind::Deprecated] {
            let domain = entry(3, kind);
            let wire = entry_to_wire(&domain, &history());
            assert_eq!(wire.register_id, "00000000000000000000000000000000");
            assert_eq!(entry_from_wire(wire), Ok((history(), domain)));
        }
    }

    #[test]
    fn entries_keep_their_kind_and_kindless_ones_are_read_from_their_activity() {
        for kind in [EntryKind::Published, EntryKind::Updated] {
            let wire = entry_to_wire(&entry(3, kind), &history());
            assert_eq!(entry_from_wire(wire).unwrap().1.kind, kind);
        }
        let mut older_hub = entry_to_wire(&entry(3, EntryKind::Updated), &history());
        older_hub.kind = v1::NotificationType::Unknown.into();
        let (_, back) = entry_from_wire(older_hub).unwrap();
        assert_eq!(back.kind, EntryKind::Published);
        assert!(back.is_active);
    }

    #[test]
    fn notifications_round_trip() {
        for kind in [
            EntryKind::Published,
            EntryKind::Updated,
            EntryKind::Deprecated,
        ] {
            let wire = notification_to_wire(&notification(kind));
            assert!(wire.blueprint_summary.is_empty());
            assert_eq!(notification_from_wire(&wire), Ok(notification(kind)));
        }
    }

    #[test]
    fn sync_requests_carry_scope_and_history() {
        let full = sync_request_to_wire(&node("peer-1"), &session(), &SyncScope::Full, None, NOW);
        let query = sync_request_from_wire(&full).unwrap();
        assert!(query.full_sync);
        assert_eq!(query.last_known_version, 0);
        assert_eq!(query.history_id, None);
        assert_eq!(query.max_blueprints, None);
        let after = sync_request_to_wire(
            &node("peer-1"),
            &session(),
            &SyncScope::After(41),
            Some(&history()),
            NOW,
        );
        let query = sync_request_from_wire(&after).unwrap();
        assert!(!query.full_sync);
        assert_eq!(query.last_known_version, 41);
        assert_eq!(query.history_id, Some(history()));
        let limited = v1::SyncRequest {
            max_blueprints: 5,
            ..after
        };
        assert_eq!(
            sync_request_from_wire(&limited).unwrap().max_blueprints,
            Some(5)
        );
    }

    #[test]
    fn subscriptions_and_disconnects_round_trip() {
        let wire = subscription_request_to_wire(&node("peer-1"), &session(), NOW);
        let query = subscription_request_from_wire(&wire).unwrap();
        assert_eq!(query.peer_id, node("peer-1"));
        assert_eq!(query.filter, NotificationFilter::default());
        let wire = disconnect_request_to_wire(
            &node("peer-1"),
            &session(),
            v1::DisconnectReason::ClientRequest,
            NOW,
        );
        assert_eq!(
            disconnect_request_from_wire(&wire),
            Ok(DisconnectQuery {
                peer_id: node("peer-1"),
                session_id: session(),
                reason: v1::DisconnectReason::ClientRequest,
            })
        );
    }

    #[test]
    fn hub_status_and_peers_go_out_whole() {
        let status = HubStatus {
            hub_id: node("hub-1"),
            state: RegisterState::Ready,
            history_id: Some(history()),
            version: 10,
            total_blueprints: 3,
            active_peers: 1,
            last_published_at: None,
            started_at: NOW,
        };
        let peer = HubPeer {
            peer_id: node("peer-1"),
            session_id: session(),
            address: "10.0.0.7:7000".into(),
            connected_at: NOW,
            last_heartbeat_at: Some(NOW.saturating_add(Duration::from_secs(30))),
            last_sync_version: 8,
        };
        let later = NOW.saturating_add(Duration::from_secs(90));
        let wire = central_node_status(&status, std::slice::from_ref(&peer), later);
        assert_eq!(wire.health, i32::from(v1::NodeHealth::Healthy));
        assert_eq!(wire.uptime_seconds, 90);
        assert_eq!(wire.last_blueprint_published_at, 0);
        assert_eq!(wire.connected_peers.len(), 1);
        assert_eq!(
            wire.connected_peers[0].status,
            i32::from(v1::PeerConnectionStatus::Connected)
        );
        assert_eq!(
            wire.connected_peers[0].last_heartbeat_at,
            NOW.as_unix_millis() + 30_000
        );
        let beats = heartbeat_status(&peer, status.version);
        assert_eq!(beats.version_lag, 2);
        let checkpoint = sync_checkpoint(&peer, &status);
        assert_eq!(checkpoint.status, i32::from(v1::CheckpointStatus::Behind));
        assert_eq!(checkpoint.current_version, 10);
        assert_eq!(checkpoint.history_id, history().to_string());
    }

    #[test]
    fn durations_round_up_to_whole_units() {
        assert_eq!(seconds_to_wire(Duration::from_millis(1500)), 2);
        assert_eq!(seconds_to_wire(Duration::from_secs(30)), 30);
        assert_eq!(minutes_to_wire(Duration::from_secs(300)), 5);
        assert_eq!(minutes_to_wire(Duration::from_secs(301)), 6);
        assert_eq!(minutes_to_wire(Duration::from_millis(60_001)), 2);
        assert_eq!(seconds_to_wire(Duration::MAX), i32::MAX);
        assert_eq!(minutes_to_wire(Duration::MAX), i32::MAX);
        assert_eq!(minutes_from_wire("m", 5), Ok(Duration::from_secs(300)));
    }

    // ---- validation, one rule at a time ----

    #[test]
    fn connect_requests_need_a_valid_peer_id() {
        for bad in ["", "has space", "a:b", &"p".repeat(65)] {
            let wire = v1::ConnectRequest {
                peer_id: bad.into(),
                ..connect_request_to_wire(&connect_request(), NOW)
            };
            assert_eq!(
                refused(connect_request_from_wire(&wire)),
                "peer_id",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn connect_requests_need_a_node_type() {
        let mut wire = connect_request_to_wire(&connect_request(), NOW);
        wire.peer_info.as_mut().unwrap().node_type = "Router".into();
        assert_eq!(
            refused(connect_request_from_wire(&wire)),
            "peer_info.node_type"
        );
        wire.peer_info.as_mut().unwrap().node_type = String::new();
        assert_eq!(
            refused(connect_request_from_wire(&wire)),
            "peer_info.node_type"
        );
        wire.peer_info = None;
        assert_eq!(refused(connect_request_from_wire(&wire)), "peer_info");
    }

    #[test]
    fn connect_request_ports_are_1_to_65535_when_given() {
        let mut wire = connect_request_to_wire(&connect_request(), NOW);
        wire.peer_info.as_mut().unwrap().address = "10.0.0.7".into();
        for bad in [-1, 65536, i32::MAX] {
            wire.peer_info.as_mut().unwrap().port = bad;
            assert_eq!(refused(connect_request_from_wire(&wire)), "peer_info.port");
        }
        wire.peer_info.as_mut().unwrap().port = 65535;
        assert_eq!(
            connect_request_from_wire(&wire).unwrap().address,
            "10.0.0.7:65535"
        );
        wire.peer_info.as_mut().unwrap().port = 0;
        assert_eq!(
            connect_request_from_wire(&wire).unwrap().address,
            "10.0.0.7"
        );
        wire.peer_info.as_mut().unwrap().address = "x".repeat(MAX_ADDRESS_LEN + 1);
        assert_eq!(
            refused(connect_request_from_wire(&wire)),
            "peer_info.address"
        );
    }

    #[test]
    fn versions_are_never_negative() {
        let wire = v1::ConnectRequest {
            last_known_version: -1,
            ..connect_request_to_wire(&connect_request(), NOW)
        };
        assert_eq!(
            refused(connect_request_from_wire(&wire)),
            "last_known_version"
        );
        let wire = v1::HeartbeatMessage {
            last_sync_version: -1,
            ..heartbeat_to_wire(&beat())
        };
        assert_eq!(
            refused(heartbeat_from_wire(&wire, NOW)),
            "last_sync_version"
        );
        let wire = v1::HeartbeatMessage {
            sequence_number: -5,
            ..heartbeat_to_wire(&beat())
        };
        assert_eq!(refused(heartbeat_from_wire(&wire, NOW)), "sequence_number");
        let wire = v1::SyncRequest {
            last_known_version: -1,
            ..sync_request_to_wire(&node("p"), &session(), &SyncScope::After(1), None, NOW)
        };
        assert_eq!(refused(sync_request_from_wire(&wire)), "last_known_version");
        let wire = v1::SyncRequest {
            max_blueprints: -1,
            ..sync_request_to_wire(&node("p"), &session(), &SyncScope::Full, None, NOW)
        };
        assert_eq!(refused(sync_request_from_wire(&wire)), "max_blueprints");
    }

    #[test]
    fn heartbeat_timestamps_are_within_60_s_of_the_hub() {
        for (offset_ms, accepted) in [
            (0, true),
            (59_999, true),
            (60_000, true),
            (-60_000, true),
            (60_001, false),
            (-60_001, false),
            (600_000, false),
        ] {
            let wire = v1::HeartbeatMessage {
                timestamp: NOW.as_unix_millis() + offset_ms,
                ..heartbeat_to_wire(&beat())
            };
            let result = heartbeat_from_wire(&wire, NOW);
            assert_eq!(result.is_ok(), accepted, "{offset_ms} ms: {result:?}");
            if !accepted {
                assert_eq!(result.unwrap_err().field, "timestamp");
            }
        }
        let extreme = v1::HeartbeatMessage {
            timestamp: i64::MIN,
            ..heartbeat_to_wire(&beat())
        };
        assert_eq!(refused(heartbeat_from_wire(&extreme, NOW)), "timestamp");
    }

    #[test]
    fn heartbeat_metrics_are_in_range() {
        let with = |cpu: f64, disk: f64, memory: f64| v1::HeartbeatMessage {
            metrics: Some(v1::HealthMetrics {
                cpu_usage_percent: cpu,
                disk_usage_percent: disk,
                memory_usage_mb: memory,
                ..v1::HealthMetrics::default()
            }),
            ..heartbeat_to_wire(&beat())
        };
        assert!(heartbeat_from_wire(&with(0.0, 100.0, 512.0), NOW).is_ok());
        assert_eq!(
            refused(heartbeat_from_wire(&with(100.1, 5.0, 1.0), NOW)),
            "metrics.cpu_usage_percent"
        );
        assert_eq!(
            refused(heartbeat_from_wire(&with(f64::NAN, 5.0, 1.0), NOW)),
            "metrics.cpu_usage_percent"
        );
        assert_eq!(
            refused(heartbeat_from_wire(&with(5.0, -0.5, 1.0), NOW)),
            "metrics.disk_usage_percent"
        );
        assert_eq!(
            refused(heartbeat_from_wire(&with(5.0, 5.0, -1.0), NOW)),
            "metrics.memory_usage_mb"
        );
    }

    #[test]
    fn heartbeats_need_ids_and_a_known_node_type() {
        let wire = v1::HeartbeatMessage {
            session_id: String::new(),
            ..heartbeat_to_wire(&beat())
        };
        assert_eq!(refused(heartbeat_from_wire(&wire, NOW)), "session_id");
        let wire = v1::HeartbeatMessage {
            session_id: "a b".into(),
            ..heartbeat_to_wire(&beat())
        };
        assert_eq!(refused(heartbeat_from_wire(&wire, NOW)), "session_id");
        let wire = v1::HeartbeatMessage {
            peer_id: "peer/1".into(),
            ..heartbeat_to_wire(&beat())
        };
        assert_eq!(refused(heartbeat_from_wire(&wire, NOW)), "peer_id");
        let wire = v1::HeartbeatMessage {
            node_type: "Hub".into(),
            ..heartbeat_to_wire(&beat())
        };
        assert_eq!(refused(heartbeat_from_wire(&wire, NOW)), "node_type");
        let wire = v1::HeartbeatMessage {
            node_type: String::new(),
            ..heartbeat_to_wire(&beat())
        };
        assert!(heartbeat_from_wire(&wire, NOW).is_ok());
    }

    #[test]
    fn sync_requests_need_a_history_id_format() {
        let mut wire =
            sync_request_to_wire(&node("p"), &session(), &SyncScope::After(3), None, NOW);
        for bad in ["nope", "ABABABABABABABABABABABABABABABAB", &"a".repeat(33)] {
            wire.history_id = bad.into();
            assert_eq!(
                refused(sync_request_from_wire(&wire)),
                "history_id",
                "{bad}"
            );
        }
    }

    #[test]
    fn entries_must_name_the_system_register() {
        let wire = v1::SystemRegisterEntry {
            register_id: "00000000000000000000000000000001".into(),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "register_id");
        let wire = v1::SystemRegisterEntry {
            register_id: String::new(),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "register_id");
    }

    #[test]
    fn entry_checksums_are_sha256_hex() {
        let good = wire_entry().checksum;
        for bad in [
            String::new(),
            good.replace("sha256:", "md5:"),
            good.to_uppercase(),
            good[..good.len() - 1].to_owned(),
            format!("{good}0"),
        ] {
            let wire = v1::SystemRegisterEntry {
                checksum: bad.clone(),
                ..wire_entry()
            };
            assert_eq!(refused(entry_from_wire(wire)), "checksum", "{bad}");
        }
        // Whether it matches the document is the replica's check (off its actor), not the
        // wire's: the entry converts, and says so.
        let tampered = v1::SystemRegisterEntry {
            blueprint_document: Bytes::from_static(b"{}"),
            ..wire_entry()
        };
        let (_, entry) = entry_from_wire(tampered).unwrap();
        assert!(!entry.checksum_holds());
    }

    #[test]
    fn entry_versions_start_at_1() {
        for bad in [0, -1] {
            let wire = v1::SystemRegisterEntry {
                version: bad,
                ..wire_entry()
            };
            assert_eq!(refused(entry_from_wire(wire)), "version");
        }
    }

    #[test]
    fn entries_need_ids_and_a_history() {
        let wire = v1::SystemRegisterEntry {
            blueprint_id: "no spaces".into(),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "blueprint_id");
        let wire = v1::SystemRegisterEntry {
            blueprint_id: "b".repeat(256),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "blueprint_id");
        let wire = v1::SystemRegisterEntry {
            history_id: String::new(),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "history_id");
        let wire = v1::SystemRegisterEntry {
            published_at: -1,
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "published_at");
    }

    #[test]
    fn entry_documents_are_at_most_16_mib() {
        let at_limit = Bytes::from(vec![b' '; MAX_DOCUMENT_BYTES]);
        let wire = v1::SystemRegisterEntry {
            checksum: SystemRegisterEntry::checksum_of(&at_limit),
            blueprint_document: at_limit,
            ..wire_entry()
        };
        assert!(entry_from_wire(wire).is_ok());
        let over = Bytes::from(vec![b' '; MAX_DOCUMENT_BYTES + 1]);
        let wire = v1::SystemRegisterEntry {
            checksum: SystemRegisterEntry::checksum_of(&over),
            blueprint_document: over,
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "blueprint_document");
    }

    #[test]
    fn entry_metadata_totals_under_4_kib() {
        let mut wire = wire_entry();
        wire.metadata = HashMap::from([("k".to_owned(), "v".repeat(MAX_METADATA_BYTES - 2))]);
        assert!(entry_from_wire(wire.clone()).is_ok());
        wire.metadata = HashMap::from([("k".to_owned(), "v".repeat(MAX_METADATA_BYTES - 1))]);
        assert_eq!(refused(entry_from_wire(wire)), "metadata");
    }

    #[test]
    fn notification_summaries_are_at_most_4_kib() {
        let mut wire = notification_to_wire(&notification(EntryKind::Updated));
        wire.blueprint_summary = Bytes::from(vec![b'x'; MAX_SUMMARY_BYTES]);
        assert!(notification_from_wire(&wire).is_ok());
        wire.blueprint_summary = Bytes::from(vec![b'x'; MAX_SUMMARY_BYTES + 1]);
        assert_eq!(refused(notification_from_wire(&wire)), "blueprint_summary");
    }

    #[test]
    fn notifications_need_a_type_a_version_and_a_checksum() {
        let good = notification_to_wire(&notification(EntryKind::Published));
        let cases = [
            (
                v1::BlueprintNotification {
                    r#type: i32::from(v1::NotificationType::Unknown),
                    ..good.clone()
                },
                "type",
            ),
            (
                v1::BlueprintNotification {
                    version: 0,
                    ..good.clone()
                },
                "version",
            ),
            (
                v1::BlueprintNotification {
                    checksum: "sha256:xyz".into(),
                    ..good.clone()
                },
                "checksum",
            ),
            (
                v1::BlueprintNotification {
                    history_id: "h".into(),
                    ..good.clone()
                },
                "history_id",
            ),
            (
                v1::BlueprintNotification {
                    sequence_number: -1,
                    ..good
                },
                "sequence_number",
            ),
        ];
        for (wire, field) in cases {
            assert_eq!(refused(notification_from_wire(&wire)), field);
        }
    }

    #[test]
    fn subscription_filters_are_validated_and_applied() {
        let mut wire = subscription_request_to_wire(&node("peer-1"), &session(), NOW);
        wire.filters = Some(v1::SubscriptionFilters {
            blueprint_ids: vec![BlueprintId::seed().to_string()],
            publisher_ids: vec![],
            notification_types: vec![i32::from(v1::NotificationType::BlueprintDeprecated)],
            metadata_filters: HashMap::new(),
        });
        let filter = subscription_request_from_wire(&wire).unwrap().filter;
        assert!(filter.matches(&notification(EntryKind::Deprecated)));
        assert!(!filter.matches(&notification(EntryKind::Published)));
        let other = BlueprintNotification {
            blueprint_id: BlueprintId::parse("other").unwrap(),
            ..notification(EntryKind::Deprecated)
        };
        assert!(!filter.matches(&other));

        let mut bad = wire.clone();
        bad.filters.as_mut().unwrap().blueprint_ids = vec!["not valid".into()];
        assert_eq!(
            refused(subscription_request_from_wire(&bad)),
            "filters.blueprint_ids"
        );
        let mut bad = wire.clone();
        bad.filters.as_mut().unwrap().notification_types = vec![0];
        assert_eq!(
            refused(subscription_request_from_wire(&bad)),
            "filters.notification_types"
        );
        let mut bad = wire.clone();
        bad.filters.as_mut().unwrap().metadata_filters =
            HashMap::from([("k".to_owned(), "v".to_owned())]);
        assert_eq!(
            refused(subscription_request_from_wire(&bad)),
            "filters.metadata_filters"
        );
        let mut bad = wire;
        bad.filters.as_mut().unwrap().publisher_ids = vec!["p".into(); MAX_FILTER_ITEMS + 1];
        assert_eq!(
            refused(subscription_request_from_wire(&bad)),
            "filters.publisher_ids"
        );
    }

    #[test]
    fn grants_need_success_ids_and_intervals() {
        let good = connection_response(&grant());
        let refusal = v1::ConnectionResponse {
            success: false,
            message: "go away".into(),
            ..good.clone()
        };
        let err = session_grant_from_wire(&refusal).unwrap_err();
        assert_eq!(err.field, "success");
        assert!(err.reason.contains("go away"));
        let cases = [
            (
                v1::ConnectionResponse {
                    session_id: String::new(),
                    ..good.clone()
                },
                "session_id",
            ),
            (
                v1::ConnectionResponse {
                    central_node_id: "hub 1".into(),
                    ..good.clone()
                },
                "central_node_id",
            ),
            (
                v1::ConnectionResponse {
                    history_id: String::new(),
                    ..good.clone()
                },
                "history_id",
            ),
            (
                v1::ConnectionResponse {
                    heartbeat_interval_seconds: 0,
                    ..good.clone()
                },
                "heartbeat_interval_seconds",
            ),
            (
                v1::ConnectionResponse {
                    config: None,
                    ..good.clone()
                },
                "config",
            ),
            (
                v1::ConnectionResponse {
                    config: Some(v1::ConnectionConfig {
                        periodic_sync_interval_minutes: -1,
                        ..good.config.unwrap()
                    }),
                    ..good.clone()
                },
                "config.periodic_sync_interval_minutes",
            ),
            (
                v1::ConnectionResponse {
                    current_system_register_version: -3,
                    ..good
                },
                "current_system_register_version",
            ),
        ];
        for (wire, field) in cases {
            assert_eq!(refused(session_grant_from_wire(&wire)), field);
        }
    }

    #[test]
    fn acks_need_a_defined_action_and_a_history() {
        let ack = HeartbeatAck {
            hub_id: node("hub-1"),
            history_id: history(),
            version: 8,
            action: RecommendedAction::None,
            received_at: NOW,
        };
        let good = heartbeat_acknowledgement(&ack, Duration::ZERO);
        let wire = v1::HeartbeatAcknowledgement {
            recommended_action: 17,
            ..good.clone()
        };
        assert_eq!(
            refused(heartbeat_ack_from_wire(&wire)),
            "recommended_action"
        );
        let wire = v1::HeartbeatAcknowledgement {
            history_id: "x".into(),
            ..good.clone()
        };
        assert_eq!(refused(heartbeat_ack_from_wire(&wire)), "history_id");
        let wire = v1::HeartbeatAcknowledgement {
            success: false,
            ..good
        };
        assert_eq!(refused(heartbeat_ack_from_wire(&wire)), "success");
    }

    #[test]
    fn status_requests_may_omit_the_peer() {
        let anonymous = v1::StatusRequest {
            peer_id: String::new(),
            include_peer_list: true,
        };
        assert_eq!(
            status_request_from_wire(&anonymous),
            Ok(StatusQuery {
                peer_id: None,
                include_peer_list: true
            })
        );
        let bad = v1::StatusRequest {
            peer_id: "x y".into(),
            include_peer_list: false,
        };
        assert_eq!(refused(status_request_from_wire(&bad)), "peer_id");
        assert_eq!(refused(session_query_from_wire("p", "")), "session_id");
    }

    #[test]
    fn errors_quote_long_values_truncated() {
        let err = node_type_from_wire(&"x".repeat(10_000)).unwrap_err();
        assert!(err.reason.len() < 200, "{err}");
    }
}
