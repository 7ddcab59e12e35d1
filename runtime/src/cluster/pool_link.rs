//! `ClusterPoolLink`: the register role's way to a peer's pool on another node, found by node
//! id through the membership (no URL). Same contract as the HTTP link: a refusal is final, the
//! rest is retried by the driver with backoff; and one thing more: it tells the driver when
//! the peer is back (`until_ready`), so a pending push goes out then, not when the backoff
//! happens to fire.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use ractor::ActorId;

use herald_actors::ports::{PoolLink, PoolLinkError};
use herald_messages::{BulkAdvertise, BulkOutcome, NodeId};

use super::client::GatewayClient;
use super::view::ClusterHandle;
use super::wire::{Reply, RequestBody};

pub struct ClusterPoolLink {
    peer: NodeId,
    cluster: ClusterHandle,
    client: GatewayClient,
    timeout: Duration,
    /// The peer's gateway when the last push failed (`None`: it was not ready). A retry is
    /// worth it once the peer is ready through another session.
    failed_at: Arc<Mutex<Option<ActorId>>>,
}

impl ClusterPoolLink {
    pub fn new(
        peer: NodeId,
        cluster: ClusterHandle,
        client: GatewayClient,
        timeout: Duration,
    ) -> Self {
        Self {
            peer,
            cluster,
            client,
            timeout,
            failed_at: Arc::new(Mutex::new(None)),
        }
    }

    fn failed(&self, gateway: Option<ActorId>, error: PoolLinkError) -> PoolLinkError {
        *self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = gateway;
        error
    }
}

#[async_trait]
impl PoolLink for ClusterPoolLink {
    async fn push(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolLinkError> {
        // A peer not ready yet (this node just started, the peer is reconnecting) gets the
        // push's deadline to become ready, as an HTTP peer gets it to answer.
        let started = tokio::time::Instant::now();
        let Some(gateway) = self.cluster.ready_gateway(&self.peer, self.timeout).await else {
            let state = self.cluster.view().state_of(&self.peer).map_or_else(
                || "not a known member".to_owned(),
                |state| state.to_string(),
            );
            return Err(self.failed(
                None,
                unreachable(format!(
                    "peer {} is {state} (waited {:?})",
                    self.peer, self.timeout
                )),
            ));
        };
        let deadline = self.timeout.saturating_sub(started.elapsed());
        let id = Some(gateway.get_id());
        match self
            .client
            .call(&gateway, RequestBody::PoolPush { request }, deadline)
            .await
        {
            Ok(Reply::Pushed { outcome }) => Ok(outcome),
            Ok(Reply::Refused { reason }) => Err(self.failed(
                id,
                PoolLinkError::Refused(format!("peer {}: {reason}", self.peer)),
            )),
            Ok(Reply::Unavailable { reason }) => Err(self.failed(
                id,
                unreachable(format!("peer {} cannot take it now: {reason}", self.peer)),
            )),
            Ok(Reply::Stale { age_ms }) => Err(self.failed(
                id,
                unreachable(format!(
                    "peer {} got the push {age_ms} ms late and did not apply it",
                    self.peer
                )),
            )),
            Ok(other) => Err(self.failed(
                id,
                unreachable(format!("peer {} answered {other:?}", self.peer)),
            )),
            Err(err) => Err(self.failed(id, unreachable(format!("peer {}: {err}", self.peer)))),
        }
    }

    fn describe(&self) -> String {
        format!("cluster:{}", self.peer)
    }

    fn until_ready(&self) -> Option<BoxFuture<'static, ()>> {
        let cluster = self.cluster.clone();
        let peer = self.peer.clone();
        let failed_at = *self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(Box::pin(async move {
            cluster.until_ready_through_another(&peer, failed_at).await;
        }))
    }
}

fn unreachable(what: String) -> PoolLinkError {
    PoolLinkError::Unreachable(Box::new(LinkFailure(what)))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LinkFailure(String);
