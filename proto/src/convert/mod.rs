//! Conversions between the wire types of `herald.v1` and the domain types of `herald-messages`,
//! one file per `.proto` (`central_node`, `heartbeat`, `system_register`); this file holds
//! what they share: `WireError`, node types and the scalar mappings.
//!
//! One naming scheme both ways: `<domain thing>_to_wire` never fails; `<domain
//! thing>_from_wire` validates every field the contracts constrain and returns a `WireError`
//! naming the wire field, which the hub answers with `INVALID_ARGUMENT` and a peer treats as a
//! refusal. The rules themselves (id formats, sizes, checksums) live in `herald-messages`;
//! these functions only say which wire field broke which rule. Enums are mapped by name, one
//! `match` per direction; an unknown or `UNKNOWN` value is an error wherever it would change
//! the meaning. Timestamps are int64 Unix milliseconds; durations travel as whole seconds or
//! minutes (rounded up).
//!
//! Nothing here reads a clock (callers pass `now`) or judges a request against the hub's state:
//! whether a session exists is the authority's call.

pub mod central_node;
pub mod heartbeat;
pub mod system_register;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use herald_messages::{
    BlueprintId, HeartbeatRequest, HistoryId, NodeId, NodeType, RegisterDigest, SessionId,
    SystemRegisterEntry, Timestamp,
};

/// `node_type` of a peer on the wire.
pub const NODE_TYPE_PEER: &str = "Peer";

/// `node_type` of a hub on the wire (the original contracts call hubs central nodes).
pub const NODE_TYPE_CENTRAL: &str = "Central";

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

/// Within `HeartbeatRequest::MAX_CLOCK_SKEW` of `now`.
pub fn timestamp_near(
    field: &'static str,
    millis: i64,
    now: Timestamp,
) -> Result<Timestamp, WireError> {
    HeartbeatRequest::check_sent_at(millis, now).map_err(|reason| WireError::new(field, reason))
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

pub(crate) fn whole_seconds_rounded_up(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

pub(crate) fn version_to_wire(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

pub(crate) fn count_to_wire(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

pub(crate) fn optional_timestamp_to_wire(timestamp: Option<Timestamp>) -> i64 {
    timestamp.map_or(0, timestamp_to_wire)
}

/// A version or counter: not negative.
pub(crate) fn version(field: &'static str, value: i64) -> Result<u64, WireError> {
    u64::try_from(value).map_err(|_| WireError::new(field, format!("must be ≥ 0, got {value}")))
}

/// An entry's version: 1 or more.
pub(crate) fn entry_version(field: &'static str, value: i64) -> Result<u64, WireError> {
    match u64::try_from(value) {
        Ok(version) if version >= 1 => Ok(version),
        _ => Err(WireError::new(field, format!("must be ≥ 1, got {value}"))),
    }
}

pub(crate) fn node_id(field: &'static str, value: &str) -> Result<NodeId, WireError> {
    NodeId::parse(value).map_err(|err| WireError::new(field, err.to_string()))
}

pub(crate) fn blueprint_id(field: &'static str, value: &str) -> Result<BlueprintId, WireError> {
    BlueprintId::parse(value).map_err(|err| WireError::new(field, err.to_string()))
}

pub(crate) fn history_id(field: &'static str, value: &str) -> Result<HistoryId, WireError> {
    HistoryId::parse(value).map_err(|err| WireError::new(field, err.to_string()))
}

/// Empty: none.
pub(crate) fn optional_history_id(
    field: &'static str,
    value: &str,
) -> Result<Option<HistoryId>, WireError> {
    match value {
        "" => Ok(None),
        value => history_id(field, value).map(Some),
    }
}

pub(crate) fn unknown_enum(field: &'static str, value: i32) -> WireError {
    WireError::new(field, format!("undefined value {value}"))
}

/// Error messages quote what they got, but never a megabyte of it.
pub(crate) fn quoted(value: &str) -> String {
    const SHOWN: usize = 80;
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// A register digest, or `None` for an empty field (a peer or hub before digests).
pub(crate) fn optional_digest(
    field: &'static str,
    value: &str,
) -> Result<Option<RegisterDigest>, WireError> {
    match value {
        "" => Ok(None),
        value => RegisterDigest::parse(value)
            .map(Some)
            .map_err(|err| WireError::new(field, err.to_string())),
    }
}

pub(crate) fn optional_digest_to_wire(digest: Option<RegisterDigest>) -> String {
    digest.map(|digest| digest.to_string()).unwrap_or_default()
}

/// A session id (`SessionId`'s rule).
pub(crate) fn session_id(field: &'static str, value: &str) -> Result<SessionId, WireError> {
    SessionId::parse(value).map_err(|err| WireError::new(field, err.to_string()))
}

/// The form of a checksum (`SystemRegisterEntry::check_checksum`).
pub(crate) fn checksum(field: &'static str, value: &str) -> Result<(), WireError> {
    SystemRegisterEntry::check_checksum(value).map_err(|reason| WireError::new(field, reason))
}

/// A document's size (`SystemRegisterEntry::check_document`).
pub(crate) fn document_size(field: &'static str, document: &[u8]) -> Result<(), WireError> {
    SystemRegisterEntry::check_document(document).map_err(|reason| WireError::new(field, reason))
}

/// A publisher name (`SystemRegisterEntry::check_published_by`).
pub(crate) fn published_by(field: &'static str, value: &str) -> Result<(), WireError> {
    SystemRegisterEntry::check_published_by(value).map_err(|reason| WireError::new(field, reason))
}

/// Entry metadata (`SystemRegisterEntry::check_metadata`).
pub(crate) fn metadata(
    field: &'static str,
    wire: HashMap<String, String>,
) -> Result<BTreeMap<String, String>, WireError> {
    SystemRegisterEntry::check_metadata(&wire).map_err(|reason| WireError::new(field, reason))?;
    Ok(wire.into_iter().collect())
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use bytes::Bytes;
    use herald_messages::{
        BlueprintId, BlueprintNotification, ConnectRequest, EntryKind, HeartbeatRequest, HistoryId,
        NodeId, NodeType, RegisterDigest, SessionGrant, SessionId, SystemRegisterEntry, Timestamp,
    };

    use super::WireError;
    use super::system_register::entry_to_wire;
    use crate::v1;

    pub(crate) const NOW: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

    pub(crate) fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    pub(crate) fn history() -> HistoryId {
        HistoryId::from_bytes([0xab; 16])
    }

    pub(crate) fn session() -> SessionId {
        SessionId::parse("0123456789abcdef0123456789abcdef").unwrap()
    }

    pub(crate) fn entry(version: u64, kind: EntryKind) -> SystemRegisterEntry {
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
            signature: None,
        }
    }

    pub(crate) fn wire_entry() -> v1::SystemRegisterEntry {
        entry_to_wire(&entry(3, EntryKind::Published), &history(), None)
    }

    pub(crate) fn grant() -> SessionGrant {
        SessionGrant {
            session_id: session(),
            hub_id: node("hub-1"),
            history_id: history(),
            version: 7,
            digest: Some(digest()),
            connected_at: NOW,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(30),
            sync_interval: Duration::from_secs(300),
        }
    }

    pub(crate) fn connect_request() -> ConnectRequest {
        ConnectRequest {
            peer_id: node("peer-1"),
            node_type: NodeType::Peer,
            address: "10.0.0.7:7000".into(),
            last_known_version: 4,
            last_known_digest: Some(digest()),
        }
    }

    pub(crate) fn beat() -> HeartbeatRequest {
        HeartbeatRequest {
            peer_id: node("peer-1"),
            session_id: session(),
            sequence: 12,
            last_sync_version: 6,
            last_sync_digest: Some(digest()),
            sent_at: NOW,
        }
    }

    pub(crate) fn notification(kind: EntryKind) -> BlueprintNotification {
        BlueprintNotification {
            history_id: history(),
            blueprint_id: BlueprintId::seed(),
            version: 9,
            kind,
            published_at: NOW,
            published_by: "admin".into(),
            checksum: SystemRegisterEntry::checksum_of(b"{}"),
            document_bytes: 2,
            sequence: 3,
        }
    }

    pub(crate) fn digest() -> RegisterDigest {
        RegisterDigest::EMPTY.then(&entry(1, EntryKind::Published))
    }

    /// The field a conversion refused.
    pub(crate) fn refused<T: std::fmt::Debug>(result: Result<T, WireError>) -> &'static str {
        result.expect_err("should be refused").field
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_messages::*;

    use super::central_node::*;
    use super::heartbeat::*;
    use super::system_register::*;
    use super::*;
    use crate::convert::fixtures::*;
    use crate::v1;

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
            ..sync_request_to_wire(&sync_query(SyncScope::After(1)), NOW)
        };
        assert_eq!(refused(sync_request_from_wire(&wire)), "last_known_version");
        let wire = v1::SyncRequest {
            max_blueprints: -1,
            ..sync_request_to_wire(&sync_query(SyncScope::Full), NOW)
        };
        assert_eq!(refused(sync_request_from_wire(&wire)), "max_blueprints");
    }

    fn sync_query(scope: SyncScope) -> SyncQuery {
        SyncQuery {
            peer_id: node("p"),
            session_id: session(),
            scope,
            history_id: None,
            digest: None,
        }
    }

    #[test]
    fn errors_quote_long_values_truncated() {
        let err = node_type_from_wire(&"x".repeat(10_000)).unwrap_err();
        assert!(err.reason.len() < 200, "{err}");
    }

    #[test]
    fn hub_status_and_peers_go_out_whole() {
        let status = HubStatus {
            hub_id: node("hub-1"),
            state: RegisterState::Ready,
            history_id: Some(history()),
            version: 10,
            total_blueprints: 3,
            active_blueprints: 2,
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
            last_sync_at: None,
        };
        let later = NOW.saturating_add(Duration::from_secs(90));
        let wire = hub_status_to_wire(&status, std::slice::from_ref(&peer), later);
        assert_eq!(wire.health, i32::from(v1::NodeHealth::Healthy));
        assert_eq!((wire.total_blueprints, wire.active_blueprints), (3, 2));
        assert_eq!(wire.status_message, "");
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
        let blocked = HubStatus {
            state: RegisterState::Blocked {
                last_good: 9,
                reason: "entry 10 does not match its checksum".into(),
            },
            ..status
        };
        let wire = hub_status_to_wire(&blocked, &[], later);
        assert_eq!(wire.health, i32::from(v1::NodeHealth::Unhealthy));
        assert!(
            wire.status_message.contains("up to version 9"),
            "{}",
            wire.status_message
        );
    }
}
