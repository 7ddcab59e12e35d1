//! `heartbeat.proto` (service `Heartbeat`): heartbeats, their acknowledgements and a
//! session's heartbeat status, between wire and domain.

use std::time::Duration;

use herald_messages::{
    HeartbeatAck, HeartbeatHealth, HeartbeatRequest, PeerHeartbeatStatus, RecommendedAction,
    Timestamp,
};

use super::{
    NODE_TYPE_PEER, WireError, history_id, node_id, node_type_from_wire, optional_digest,
    optional_digest_to_wire, optional_timestamp_to_wire, quoted, session_id, timestamp_from_wire,
    timestamp_near, timestamp_to_wire, unknown_enum, version, version_to_wire,
};
use crate::v1;

pub fn recommended_action_to_wire(action: RecommendedAction) -> v1::RecommendedAction {
    match action {
        RecommendedAction::None => v1::RecommendedAction::None,
        RecommendedAction::Sync => v1::RecommendedAction::Sync,
        RecommendedAction::ReduceFrequency => v1::RecommendedAction::ReduceFrequency,
        RecommendedAction::Failover => v1::RecommendedAction::Failover,
        RecommendedAction::Reconnect => v1::RecommendedAction::Reconnect,
        RecommendedAction::FullSync => v1::RecommendedAction::FullSync,
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
        Ok(v1::RecommendedAction::FullSync) => Ok(RecommendedAction::FullSync),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

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
        register_digest: optional_digest_to_wire(beat.last_sync_digest),
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
        last_sync_digest: optional_digest("register_digest", &wire.register_digest)?,
        sent_at,
    })
}

/// The hub's answer to a heartbeat; `server_latency` is how long the hub took to answer.
pub fn heartbeat_ack_to_wire(
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
        register_digest: optional_digest_to_wire(ack.digest),
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
        digest: optional_digest("register_digest", &wire.register_digest)?,
        action: recommended_action_from_wire(wire.recommended_action)?,
        received_at: timestamp_from_wire("timestamp", wire.timestamp)?,
    })
}

/// What a hub knows of a session's heartbeats, from its session table.
pub fn heartbeat_status_to_wire(status: &PeerHeartbeatStatus) -> v1::HeartbeatStatus {
    let (health, is_healthy, message) = match status.health {
        HeartbeatHealth::Healthy => (
            v1::HeartbeatHealthStatus::Healthy,
            true,
            "no heartbeat overdue".to_owned(),
        ),
        HeartbeatHealth::Warning => (
            v1::HeartbeatHealthStatus::Warning,
            true,
            "1 heartbeat overdue".to_owned(),
        ),
        HeartbeatHealth::Critical => (
            v1::HeartbeatHealthStatus::Critical,
            false,
            format!("{} heartbeats overdue", status.missed_heartbeats),
        ),
    };
    v1::HeartbeatStatus {
        peer_id: status.peer_id.to_string(),
        session_id: status.session_id.to_string(),
        last_heartbeat_time: optional_timestamp_to_wire(status.last_heartbeat_at),
        missed_heartbeats: i32::try_from(status.missed_heartbeats).unwrap_or(i32::MAX),
        is_healthy,
        status_message: message,
        total_heartbeats_received: version_to_wire(status.total_received),
        total_heartbeats_missed: version_to_wire(status.total_missed),
        average_latency_ms: status.average_latency_ms.unwrap_or(0.0),
        last_known_sync_version: version_to_wire(status.last_sync_version),
        version_lag: version_to_wire(status.version_lag),
        health_status: i32::from(health),
    }
}

fn percent(field: &'static str, value: f64) -> Result<(), WireError> {
    HeartbeatRequest::check_percent(value).map_err(|reason| WireError::new(field, reason))
}

#[cfg(test)]
mod tests {
    use herald_messages::*;

    use super::*;
    use crate::convert::fixtures::*;

    #[test]
    fn heartbeats_and_acks_round_trip() {
        let wire = heartbeat_to_wire(&beat());
        assert_eq!(heartbeat_from_wire(&wire, NOW), Ok(beat()));
        let ack = HeartbeatAck {
            hub_id: node("hub-1"),
            history_id: history(),
            version: 8,
            digest: Some(digest()),
            action: RecommendedAction::Sync,
            received_at: NOW,
        };
        let wire = heartbeat_ack_to_wire(&ack, Duration::from_millis(3));
        assert_eq!(wire.server_latency_ms, 3);
        assert_eq!(
            wire.recommended_action,
            i32::from(v1::RecommendedAction::Sync)
        );
        assert_eq!(heartbeat_ack_from_wire(&wire), Ok(ack));
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
    fn acks_need_a_defined_action_and_a_history() {
        let ack = HeartbeatAck {
            hub_id: node("hub-1"),
            history_id: history(),
            version: 8,
            digest: None,
            action: RecommendedAction::None,
            received_at: NOW,
        };
        let good = heartbeat_ack_to_wire(&ack, Duration::ZERO);
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

    /// A peer that sends its digest understands FULL_SYNC; an older peer sends none.
    #[test]
    fn digests_and_the_full_sync_action_travel_both_ways() {
        let wire = heartbeat_to_wire(&beat());
        assert_eq!(wire.register_digest, digest().to_string());
        let older_peer = v1::HeartbeatMessage {
            register_digest: String::new(),
            ..wire
        };
        assert_eq!(
            heartbeat_from_wire(&older_peer, NOW)
                .unwrap()
                .last_sync_digest,
            None
        );
        let ack = HeartbeatAck {
            hub_id: node("hub-1"),
            history_id: history(),
            version: 8,
            digest: Some(digest()),
            action: RecommendedAction::FullSync,
            received_at: NOW,
        };
        let wire = heartbeat_ack_to_wire(&ack, Duration::ZERO);
        assert_eq!(
            wire.recommended_action,
            i32::from(v1::RecommendedAction::FullSync)
        );
        assert_eq!(heartbeat_ack_from_wire(&wire), Ok(ack));
    }

    /// Each field of `GetHeartbeatStatus` carries the hub's session table, not a constant.
    #[test]
    fn heartbeat_status_reports_the_session_table() {
        let status = PeerHeartbeatStatus {
            peer_id: node("peer-1"),
            session_id: session(),
            last_heartbeat_at: Some(NOW),
            missed_heartbeats: 0,
            health: HeartbeatHealth::Healthy,
            total_received: 12,
            total_missed: 1,
            average_latency_ms: Some(4.5),
            last_sync_version: 7,
            version_lag: 2,
        };
        let wire = heartbeat_status_to_wire(&status);
        assert_eq!(wire.last_heartbeat_time, NOW.as_unix_millis());
        assert_eq!((wire.missed_heartbeats, wire.is_healthy), (0, true));
        assert_eq!(
            (wire.total_heartbeats_received, wire.total_heartbeats_missed),
            (12, 1)
        );
        assert_eq!(wire.average_latency_ms, 4.5);
        assert_eq!((wire.last_known_sync_version, wire.version_lag), (7, 2));
        assert_eq!(
            wire.health_status,
            i32::from(v1::HeartbeatHealthStatus::Healthy)
        );
        let critical = PeerHeartbeatStatus {
            missed_heartbeats: 3,
            health: HeartbeatHealth::Critical,
            average_latency_ms: None,
            ..status
        };
        let wire = heartbeat_status_to_wire(&critical);
        assert_eq!((wire.missed_heartbeats, wire.is_healthy), (3, false));
        assert_eq!(
            wire.health_status,
            i32::from(v1::HeartbeatHealthStatus::Critical)
        );
        assert_eq!(wire.average_latency_ms, 0.0);
        assert!(wire.status_message.contains("3 heartbeats overdue"));
    }
}
