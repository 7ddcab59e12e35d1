//! `central_node.proto` (service `CentralNodeConnection`): connect, disconnect and a hub's
//! status, between wire and domain.

use herald_messages::{
    ConnectRequest, HubPeer, HubStatus, MAX_DOCUMENT_BYTES, NodeId, RegisterState, SessionGrant,
    SessionId, Timestamp,
};

use super::{
    WireError, count_to_wire, history_id, minutes_from_wire, minutes_to_wire, node_id,
    node_type_from_wire, node_type_to_wire, optional_digest, optional_digest_to_wire,
    optional_timestamp_to_wire, quoted, seconds_from_wire, seconds_to_wire, session_id,
    timestamp_from_wire, timestamp_to_wire, unknown_enum, version, version_to_wire,
};
use crate::v1;

/// The protocol a peer says it speaks.
pub const PROTOCOL: &str = "herald.v1";

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
        RegisterState::Corrupt(_) | RegisterState::Blocked { .. } => v1::NodeHealth::Unhealthy,
    }
}

/// Why a hub's health is not `HEALTHY` (empty when it is).
fn status_message(state: &RegisterState) -> String {
    match state {
        RegisterState::Ready => String::new(),
        RegisterState::Loading => "loading the system register".to_owned(),
        RegisterState::Corrupt(reason) => format!("system register refused: {reason}"),
        RegisterState::Blocked { last_good, reason } => {
            format!("serving up to version {last_good} only: {reason}")
        }
    }
}

/// An advertised address split into the host and its port, when it ends in `:port` (a
/// bracketed IPv6 host keeps its brackets). Otherwise the whole address and port 0.
fn split_address(address: &str) -> (&str, i32) {
    match address.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && (!host.contains(':') || host.ends_with(']'))
                && let Ok(port @ 1..=65535) = port.parse::<i32>() =>
        {
            (host, port)
        }
        _ => (address, 0),
    }
}

/// A peer's connect request. `connection_time` is `now`; an advertised `host:port` travels as
/// `peer_info.address` = host and `peer_info.port` = port (an address without a port: whole,
/// port 0).
pub fn connect_request_to_wire(request: &ConnectRequest, now: Timestamp) -> v1::ConnectRequest {
    let (host, port) = split_address(&request.address);
    v1::ConnectRequest {
        peer_id: request.peer_id.to_string(),
        peer_info: Some(v1::PeerInfo {
            address: host.to_owned(),
            port,
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
        register_digest: optional_digest_to_wire(request.last_known_digest),
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
    let last_known_digest = optional_digest("register_digest", &wire.register_digest)?;
    Ok(ConnectRequest {
        peer_id,
        node_type,
        address,
        last_known_version,
        last_known_digest,
    })
}

/// What a hub grants: the session, its history and version, and the peer's intervals.
pub fn session_grant_to_wire(grant: &SessionGrant) -> v1::ConnectionResponse {
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
        register_digest: optional_digest_to_wire(grant.digest),
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
        digest: optional_digest("register_digest", &wire.register_digest)?,
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
pub fn hub_status_to_wire(
    status: &HubStatus,
    peers: &[HubPeer],
    now: Timestamp,
) -> v1::CentralNodeStatus {
    v1::CentralNodeStatus {
        node_id: status.hub_id.to_string(),
        health: i32::from(node_health_to_wire(&status.state)),
        current_system_register_version: version_to_wire(status.version),
        total_blueprints: count_to_wire(status.total_blueprints),
        active_blueprints: count_to_wire(status.active_blueprints),
        status_message: status_message(&status.state),
        active_peer_count: count_to_wire(status.active_peers),
        last_blueprint_published_at: optional_timestamp_to_wire(status.last_published_at),
        uptime_seconds: i64::try_from(now.since(status.started_at).as_secs()).unwrap_or(i64::MAX),
        connected_peers: peers.iter().map(hub_peer_to_wire).collect(),
        history_id: status
            .history_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// A peer with a session on this hub. Silent peers lose their session, so every listed peer
/// is `CONNECTED`.
pub fn hub_peer_to_wire(peer: &HubPeer) -> v1::ConnectedPeerInfo {
    v1::ConnectedPeerInfo {
        peer_id: peer.peer_id.to_string(),
        session_id: peer.session_id.to_string(),
        connected_at: timestamp_to_wire(peer.connected_at),
        last_heartbeat_at: optional_timestamp_to_wire(peer.last_heartbeat_at),
        last_sync_version: version_to_wire(peer.last_sync_version),
        status: i32::from(v1::PeerConnectionStatus::Connected),
    }
}

/// The address, with `:port` appended when the port is given (not 0).
fn address_from_wire(address: &str, port: i32) -> Result<String, WireError> {
    ConnectRequest::check_address(address)
        .map_err(|reason| WireError::new("peer_info.address", reason))?;
    if port == 0 {
        return Ok(address.to_owned());
    }
    let port = ConnectRequest::check_port(i64::from(port))
        .map_err(|reason| WireError::new("peer_info.port", format!("{reason} (0 = not given)")))?;
    Ok(format!("{address}:{port}"))
}

#[cfg(test)]
mod tests {
    use herald_messages::*;

    use super::*;
    use crate::convert::fixtures::*;
    use crate::convert::session_query_from_wire;

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

    /// `PeerInfo.port` carries the advertised address' real port; the checkpoint's version and
    /// digest travel too.
    #[test]
    fn connect_requests_carry_the_real_port_and_checkpoint() {
        let wire = connect_request_to_wire(&connect_request(), NOW);
        let info = wire.peer_info.as_ref().unwrap();
        assert_eq!((info.address.as_str(), info.port), ("10.0.0.7", 7000));
        assert_eq!(wire.last_known_version, 4);
        assert_eq!(wire.register_digest, digest().to_string());
        let cases = [
            ("peer-a.example:9443", "peer-a.example", 9443),
            ("[::1]:8080", "[::1]", 8080),
            ("::1", "::1", 0),
            ("no-port", "no-port", 0),
            ("host:99999", "host:99999", 0),
            ("", "", 0),
        ];
        for (advertised, host, port) in cases {
            let request = ConnectRequest {
                address: advertised.into(),
                ..connect_request()
            };
            let wire = connect_request_to_wire(&request, NOW);
            let info = wire.peer_info.as_ref().unwrap();
            assert_eq!(
                (info.address.as_str(), info.port),
                (host, port),
                "{advertised}"
            );
            assert_eq!(
                connect_request_from_wire(&wire).unwrap().address,
                advertised,
                "the hub sees the address whole"
            );
        }
    }

    #[test]
    fn session_grants_round_trip() {
        let wire = session_grant_to_wire(&grant());
        assert!(wire.success);
        assert_eq!(wire.heartbeat_interval_seconds, 30);
        assert_eq!(wire.config.unwrap().periodic_sync_interval_minutes, 5);
        assert_eq!(wire.history_id, history().to_string());
        assert_eq!(session_grant_from_wire(&wire), Ok(grant()));
    }

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
        wire.peer_info.as_mut().unwrap().address = "x".repeat(ConnectRequest::MAX_ADDRESS_LEN + 1);
        assert_eq!(
            refused(connect_request_from_wire(&wire)),
            "peer_info.address"
        );
    }

    #[test]
    fn grants_need_success_ids_and_intervals() {
        let good = session_grant_to_wire(&grant());
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
}
