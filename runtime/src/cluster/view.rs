//! What the cluster link publishes after every change, read without its mailbox: by the REST
//! API (`GET /api/cluster/members`, status, health), by the gateway (ping and describe
//! answers) and by the cluster pool link (is the peer ready, where is its gateway).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorId, ActorRef};
use tokio::sync::watch;

use herald_messages::{ClusterMember, ClusterSummary, MemberInfo, MemberState, NodeId};

use super::wire::GatewayMsg;

/// One published state of the membership.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// This node's own description.
    pub me: MemberInfo,
    /// Every member, this node first.
    pub members: Vec<ClusterMember>,
    /// The members this node knows, with their cluster addresses (what it describes).
    pub known: Vec<(NodeId, String)>,
    pub view_hash: u64,
    /// The gateways of members with a ready session.
    pub gateways: HashMap<NodeId, ActorRef<GatewayMsg>>,
    /// Members that left gracefully (not unreachable), recently.
    pub departed: Vec<NodeId>,
    pub summary: ClusterSummary,
}

impl ClusterView {
    pub fn state_of(&self, node: &NodeId) -> Option<MemberState> {
        self.members
            .iter()
            .find(|member| member.node_id == *node && !member.is_self)
            .map(|member| member.state)
    }

    /// `node`'s gateway, when it is ready.
    pub fn ready_gateway(&self, node: &NodeId) -> Option<ActorRef<GatewayMsg>> {
        match self.state_of(node) {
            Some(MemberState::Ready) => self.gateways.get(node).cloned(),
            _ => None,
        }
    }
}

/// The read side of a node's membership: cheap to clone, never blocks on the link.
#[derive(Clone)]
pub struct ClusterHandle {
    view: watch::Receiver<Arc<ClusterView>>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("summary", &self.view.borrow().summary)
            .finish()
    }
}

impl ClusterHandle {
    pub fn new(view: watch::Receiver<Arc<ClusterView>>) -> Self {
        Self { view }
    }

    /// A receiver of every publication, to follow changes (`changed`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// The latest published view.
    pub fn view(&self) -> Arc<ClusterView> {
        Arc::clone(&self.view.borrow())
    }

    pub fn members(&self) -> Vec<ClusterMember> {
        self.view.borrow().members.clone()
    }

    pub fn summary(&self) -> ClusterSummary {
        self.view.borrow().summary.clone()
    }

    /// Waits up to `timeout` until `node` is ready, and returns its gateway.
    pub async fn ready_gateway(
        &self,
        node: &NodeId,
        timeout: Duration,
    ) -> Option<ActorRef<GatewayMsg>> {
        let mut view = self.view.clone();
        let wait = view.wait_for(|view| view.ready_gateway(node).is_some());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(view)) => view.ready_gateway(node),
            _ => None,
        }
    }

    /// Resolves once `node` is ready through a gateway other than `not` (a session other than
    /// the one a push just failed on; with `None`, as soon as it is ready at all).
    pub async fn until_ready_through_another(&self, node: &NodeId, not: Option<ActorId>) {
        let mut view = self.view.clone();
        let gone = view
            .wait_for(|view| {
                view.ready_gateway(node)
                    .is_some_and(|gateway| Some(gateway.get_id()) != not)
            })
            .await
            .is_err();
        if gone {
            // The link is gone for good (the node is shutting down): never.
            std::future::pending::<()>().await;
        }
    }
}
