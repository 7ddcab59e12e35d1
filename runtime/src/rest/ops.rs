//! Operations endpoints served whatever the roles: `/health`, `/api/sync/status`, `/metrics`,
//! and the cluster's `/api/cluster/members`.
//!
//! They only read. `/health` decides healthy / degraded / unhealthy from what the actors
//! report; it never probes a store itself.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use herald_messages::{
    AdvertisementSyncState, ChildReport, ClusterMember, ClusterSummary, ConnectionState,
    ConnectionStatus, HubStatus, NodeId, PoolStatus, RegisterState, ReplicaStatus, StoreHealth,
    SyncStatus,
};

use crate::api::{NodeApi, NodeError};
use crate::rest::RestState;
use crate::rest::error::ApiError;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// `GET /api/sync/status`: the pool's status and the resync driver's state, `null` for a role
/// the node does not run.
pub async fn sync_status(State(state): State<RestState>) -> Result<Json<SyncReport>, ApiError> {
    Ok(Json(sync_report(&state.api).await?))
}

/// What `GET /api/sync/status` answers (the events feed sends it too).
pub(crate) async fn sync_report(api: &NodeApi) -> Result<SyncReport, NodeError> {
    let (pool, resync, replica) =
        tokio::join!(api.pool_status(), api.sync_state(), api.replica_status());
    Ok(SyncReport {
        pool: unless_role_missing(pool)?,
        resync: unless_role_missing(resync)?,
        replica: unless_role_missing(replica)?,
        cluster: api.cluster_summary().ok(),
    })
}

/// `GET /api/cluster/members`: every member as this node sees it, itself first; 404 outside a
/// cluster.
pub async fn cluster_members(
    State(state): State<RestState>,
) -> Result<Json<Vec<ClusterMember>>, ApiError> {
    Ok(Json(state.api.cluster_members()?))
}

/// `GET /health`: 200 healthy or degraded, 503 unhealthy (the node is stopped, or its hub
/// serves only part of its register).
pub async fn health(State(state): State<RestState>) -> Response {
    let (status, report) = health_report(&state.api).await;
    (status, Json(report)).into_response()
}

/// What `GET /health` answers, with its status code (the events feed sends it too).
pub(crate) async fn health_report(api: &NodeApi) -> (StatusCode, HealthReport) {
    let mut report = HealthReport {
        status: HealthStatus::Healthy,
        node_id: api.node_id().clone(),
        roles: roles(
            api.has_peer_role(),
            api.has_register_role(),
            api.has_hub_role(),
        ),
        store: None,
        hub: None,
        connection: None,
        cluster: api.cluster_summary().ok(),
        actors: Vec::new(),
        reasons: Vec::new(),
    };
    // Asked first: when the supervisor is gone, the actors' slots would only time out.
    match api.children().await {
        Ok(actors) => report.actors = actors,
        Err(err) => {
            report.status = HealthStatus::Unhealthy;
            report.reasons.push(err.to_string());
            return (StatusCode::SERVICE_UNAVAILABLE, report);
        }
    }
    let (pool, resync, hub, connection, replica) = tokio::join!(
        api.pool_status(),
        api.sync_state(),
        api.hub_status(),
        api.connection_status(),
        api.replica_status()
    );
    let pool = unless_role_missing(pool);
    let resync = unless_role_missing(resync);
    let hub = unless_role_missing(hub).ok().flatten();
    let connection = unless_role_missing(connection).ok().flatten();
    let replica = unless_role_missing(replica).ok().flatten();
    // A hub serving only part of its register is unhealthy: its peers cannot get the rest.
    let mut unserved = false;
    let stopped = [pool.as_ref().err(), resync.as_ref().err()]
        .into_iter()
        .flatten()
        .any(|err| *err == NodeError::Stopped);
    let mut failures = Vec::new();
    let pool = pool.unwrap_or_else(|err| {
        failures.push(format!("advertisement pool: {err}"));
        None
    });
    let resync = resync.unwrap_or_else(|err| {
        failures.push(format!("resync driver: {err}"));
        None
    });
    if let Some(gossip) = pool.as_ref().and_then(|status| status.gossip.as_ref())
        && gossip.partitioned
    {
        failures.push(format!(
            "partitioned: {} of the {} remote advertisements shown are stale (their peers \
             cannot be reached); showing what they last said",
            gossip.stale_ads, gossip.remote_ads
        ));
    }
    report.store = pool.map(|status| status.store);
    if let Some(hub) = &hub {
        match &hub.state {
            RegisterState::Ready => {}
            RegisterState::Loading => failures.push("system register still loading".to_owned()),
            RegisterState::Corrupt(reason) => {
                failures.push(format!("system register refused: {reason}"))
            }
            RegisterState::Blocked { last_good, reason } => {
                unserved = true;
                failures.push(format!(
                    "system register served up to version {last_good} only: {reason}"
                ));
            }
        }
    }
    if let Some(diverged) = replica
        .as_ref()
        .and_then(|replica| replica.diverged.as_ref())
    {
        failures.push(format!(
            "diverged: the system register replica differs from its hub's; a full sync is \
             repairing it ({diverged})"
        ));
    }
    if let Some(replica) = &replica
        && let Some(refused) = &replica.refused
    {
        let kept = replica.checkpoint.as_ref().map_or(0, |c| c.version);
        failures.push(format!(
            "refused: the system register replica keeps version {kept}: {refused}"
        ));
    }
    if let Some(connection) = &connection {
        match connection.state {
            ConnectionState::Connected => {}
            ConnectionState::Isolated => {
                failures.push(
                    "isolated: no hub reachable; serving the last system register replica"
                        .to_owned(),
                );
            }
            ConnectionState::Connecting | ConnectionState::Disconnected => {
                failures.push("not connected to a hub yet".to_owned());
            }
        }
    }
    if let Some(isolation) = report.cluster.as_ref().and_then(ClusterSummary::isolation) {
        failures.push(isolation);
    }
    report.hub = hub;
    report.connection = connection;
    report.reasons = degradations(
        &report.actors,
        report.store.as_ref(),
        resync.as_ref(),
        failures,
    );
    report.status = match (stopped || unserved, report.reasons.is_empty()) {
        (true, _) => HealthStatus::Unhealthy,
        (false, true) => HealthStatus::Healthy,
        (false, false) => HealthStatus::Degraded,
    };
    let status = match report.status {
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
    };
    (status, report)
}

/// `GET /metrics`: the host's Prometheus recorder rendered; 501 when it installed none.
pub async fn metrics(State(state): State<RestState>) -> Result<Response, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "metrics are not enabled: the host installed no Prometheus recorder",
        ));
    };
    let text = handle.render();
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response())
}

#[derive(Debug, Serialize)]
pub struct SyncReport {
    pool: Option<PoolStatus>,
    resync: Option<AdvertisementSyncState>,
    /// The peer's system register replica; `null` without hubs.
    replica: Option<ReplicaStatus>,
    /// Cluster members by state; `null` outside a cluster.
    cluster: Option<ClusterSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HealthReport {
    status: HealthStatus,
    node_id: NodeId,
    roles: Vec<&'static str>,
    /// The pool's store; `null` without the peer role.
    store: Option<StoreHealth>,
    /// The hub's register; `null` without the hub role.
    #[serde(skip_serializing_if = "Option::is_none")]
    hub: Option<HubStatus>,
    /// The connection to hubs; `null` without hubs.
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<ConnectionStatus>,
    /// Cluster members by state; absent outside a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterSummary>,
    actors: Vec<ChildReport>,
    /// Why the node is not healthy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
}

fn roles(peer: bool, register: bool, hub: bool) -> Vec<&'static str> {
    [(peer, "peer"), (register, "register"), (hub, "hub")]
        .into_iter()
        .filter_map(|(enabled, role)| enabled.then_some(role))
        .collect()
}

/// `Ok(None)` when the node does not run the role behind the call.
fn unless_role_missing<T>(result: Result<T, NodeError>) -> Result<Option<T>, NodeError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(NodeError::RoleNotEnabled(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Why a running node is degraded; empty when it is healthy.
fn degradations(
    actors: &[ChildReport],
    store: Option<&StoreHealth>,
    resync: Option<&AdvertisementSyncState>,
    failures: Vec<String>,
) -> Vec<String> {
    let mut reasons: Vec<String> = actors
        .iter()
        .filter(|actor| !actor.running)
        .map(|actor| format!("{} is not running", actor.kind))
        .collect();
    if let Some(StoreHealth::Degraded { reason, .. }) = store {
        reasons.push(format!("advertisement store degraded: {reason}"));
    }
    if let Some(sync) = resync.filter(|sync| sync.status == SyncStatus::Retrying) {
        let error = sync.last_error.as_deref().unwrap_or("unknown error");
        reasons.push(format!("resync driver retrying: {error}"));
    }
    reasons.extend(failures);
    reasons
}

#[cfg(test)]
mod tests {
    use herald_messages::{ChildKind, Timestamp};

    use super::*;

    fn actor(kind: ChildKind, running: bool) -> ChildReport {
        ChildReport {
            kind,
            running,
            restarts: 0,
            last_failure: None,
        }
    }

    #[test]
    fn healthy_when_everything_runs_and_nothing_retries() {
        let actors = [
            actor(ChildKind::AdvertisementPool, true),
            actor(ChildKind::ResyncDriver, true),
        ];
        let in_sync = AdvertisementSyncState {
            status: SyncStatus::InSync,
            ..AdvertisementSyncState::default()
        };
        let reasons = degradations(&actors, Some(&StoreHealth::Healthy), Some(&in_sync), vec![]);
        assert!(reasons.is_empty(), "{reasons:?}");
    }

    #[test]
    fn each_degradation_is_named() {
        let actors = [actor(ChildKind::ResyncDriver, false)];
        let store = StoreHealth::Degraded {
            since: Timestamp::EPOCH,
            reason: "write: connection refused".into(),
        };
        let retrying = AdvertisementSyncState {
            status: SyncStatus::Retrying,
            last_error: Some("pushing to the pool: pool unreachable".into()),
            ..AdvertisementSyncState::default()
        };
        let reasons = degradations(
            &actors,
            Some(&store),
            Some(&retrying),
            vec!["advertisement pool: timeout".into()],
        );
        assert_eq!(
            reasons,
            [
                "resync_driver is not running",
                "advertisement store degraded: write: connection refused",
                "resync driver retrying: pushing to the pool: pool unreachable",
                "advertisement pool: timeout",
            ]
        );
    }

    #[test]
    fn roles_are_listed_in_order() {
        assert_eq!(roles(true, true, false), ["peer", "register"]);
        assert_eq!(roles(false, true, true), ["register", "hub"]);
    }

    #[test]
    fn a_missing_role_reads_as_null() {
        let missing: Result<u8, NodeError> = Err(NodeError::RoleNotEnabled("peer"));
        assert_eq!(unless_role_missing(missing), Ok(None));
        assert_eq!(unless_role_missing(Ok(1)), Ok(Some(1)));
        assert_eq!(
            unless_role_missing::<u8>(Err(NodeError::Stopped)),
            Err(NodeError::Stopped)
        );
    }
}
