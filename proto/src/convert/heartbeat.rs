//! `heartbeat.proto` (service `Heartbeat`): heartbeats, their acknowledgements and a
//! session's heartbeat status, between wire and domain.

use std::time::Duration;

use herald_messages::{HeartbeatAck, HeartbeatRequest, HubPeer, RecommendedAction, Timestamp};

use super::{
    NODE_TYPE_PEER, WireError, history_id, node_id, node_type_from_wire,
    optional_timestamp_to_wire, quoted, session_id, timestamp_from_wire, timestamp_near,
    timestamp_to_wire, unknown_enum, version, version_to_wire,
};
use crate::v1;

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

/// What a hub knows of a peer's heartbeats. The hub keeps no miss or latency counts: a peer it
/// lists is one whose session is alive (silent peers lose theirs).
pub fn heartbeat_status_to_wire(peer: &HubPeer, hub_version: u64) -> v1::HeartbeatStatus {
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
}
