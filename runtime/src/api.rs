//! `NodeApi`: typed access to a running node's actors, shared by the embedding host (through
//! `NodeHandle`) and the REST API. Cheap to clone. Every call has a deadline. It is the way in:
//! a request is validated here, once (`Validate`), and the actor takes the `Valid` value.
//!
//! Reads never enter a mailbox: they take the latest snapshot the actor published
//! (`NodeViews`), so a read is answered while the actor is busy with a write. Only a read made
//! before the pool's first replay of its store waits, for that replay (SC-002), never for
//! anything else.

use std::sync::Arc;
use std::time::Duration;

use ractor::Message;

use crate::cluster::ClusterHandle;

pub use herald_actors::PeerHubSlots;
use herald_actors::{ActorSlot, HubView, NodeViews, SlotError, View};
use herald_messages::{
    AdInput, AdvertisementPoolMsg, AdvertisementSyncState, AuthorityError, AvailableRegister,
    AvailableView, BlueprintId, BulkAdvertise, BulkOutcome, ChildKind as Kind, ChildKind,
    ChildReport, ClusterMember, ClusterSummary, ConnectionStatus, ConnectionView, HubPeer,
    HubReport, HubStatus, NewRegister, NodeId, NodeSupervisorMsg, PoolError, PoolStatus, PoolView,
    PublishRequest, Register, RegisterError, RegisterId, RegisterPatch, ReplicaStatus, ReplicaView,
    ResyncDriverMsg, SyncTrigger, SystemRegisterAuthorityMsg, SystemRegisterEntry,
    SystemRegisterReplicaMsg, SystemRegisterView, Validate,
};

/// Why a call to a node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The node does not run the role that serves this call.
    #[error("this node does not run the {0} role")]
    RoleNotEnabled(&'static str),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error(transparent)]
    Hub(#[from] AuthorityError),
    /// The actor did not answer (stopped, restarting too long, overloaded).
    #[error(transparent)]
    Unavailable(#[from] SlotError),
    /// The node's supervisor is gone: the node was shut down or gave up.
    #[error("the node is stopped")]
    Stopped,
    /// The node has no cluster configuration.
    #[error("this node is not in a cluster")]
    NotClustered,
}

/// Typed access to a node's actors.
#[derive(Clone)]
pub struct NodeApi {
    pub(crate) node_id: NodeId,
    pub(crate) pool: Option<ActorSlot<AdvertisementPoolMsg>>,
    pub(crate) driver: Option<ActorSlot<ResyncDriverMsg>>,
    pub(crate) authority: Option<ActorSlot<SystemRegisterAuthorityMsg>>,
    pub(crate) hub: Option<PeerHubSlots>,
    pub(crate) supervisor: ractor::ActorRef<NodeSupervisorMsg>,
    pub(crate) cluster: Option<ClusterHandle>,
    pub(crate) views: NodeViews,
    /// The pool's own publications, when readers are served the gossip's merge of them
    /// (`views.pool`); `None` when they are the same.
    pub(crate) own_pool: Option<View<PoolView>>,
    pub(crate) timeout: Duration,
}

impl NodeApi {
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub fn has_peer_role(&self) -> bool {
        self.pool.is_some()
    }

    pub fn has_register_role(&self) -> bool {
        self.driver.is_some()
    }

    pub fn has_hub_role(&self) -> bool {
        self.authority.is_some()
    }

    /// Whether this node (a peer) connects to hubs and replicates their system register.
    pub fn has_hub_connection(&self) -> bool {
        self.hub.is_some()
    }

    // ---- peer role: the advertisement pool ----

    /// Advertises, updates or withdraws (`is_public = false`) one register.
    pub async fn advertise(&self, input: AdInput) -> Result<BulkOutcome, NodeError> {
        self.bulk_advertise(BulkAdvertise::one(input)).await
    }

    /// Applies a bulk request (optionally a full sync of all local public registers).
    pub async fn bulk_advertise(&self, request: BulkAdvertise) -> Result<BulkOutcome, NodeError> {
        let request = request.validated().map_err(PoolError::Invalid)?;
        try_call(
            self.pool()?,
            |reply| AdvertisementPoolMsg::Bulk(request, reply),
            self.timeout,
        )
        .await
    }

    /// *Available Registers*: every live public register, merged across sources, ordered by
    /// id (a copy of `available_view`'s).
    pub async fn available(&self) -> Result<Vec<AvailableRegister>, NodeError> {
        let view = self.available_view().await?;
        let mut registers = Vec::with_capacity(view.len());
        registers.extend(view.iter().cloned());
        Ok(registers)
    }

    /// *Available Registers* as the pool last published them, with their version: shared,
    /// not copied.
    pub async fn available_view(&self) -> Result<Arc<AvailableView>, NodeError> {
        Ok(Arc::clone(&self.pool_view().await?.available))
    }

    pub async fn pool_status(&self) -> Result<PoolStatus, NodeError> {
        Ok(self.pool_view().await?.status.clone())
    }

    /// A reader of the pool's publications, to follow its changes (`None` without the peer
    /// role).
    pub fn pool_changes(&self) -> Option<View<PoolView>> {
        self.views.pool.clone()
    }

    /// On a node in a cluster, a reader of the pool's own publications: each write as soon as
    /// it is applied, before the gossip merges it into what `pool_changes` publishes (a change
    /// here is a change of the answer soon). `None` elsewhere: there `pool_changes` publishes
    /// each write itself.
    pub fn pool_writes(&self) -> Option<View<PoolView>> {
        self.own_pool.clone()
    }

    /// What the pool last published. Waits only before the pool's first replay of its store
    /// ended (at most the call deadline).
    pub async fn pool_view(&self) -> Result<Arc<PoolView>, NodeError> {
        let view = self
            .views
            .pool
            .as_ref()
            .ok_or(NodeError::RoleNotEnabled("peer"))?;
        ready_view(
            view,
            |pool| pool.ready,
            Kind::AdvertisementPool,
            self.timeout,
        )
        .await
    }

    // ---- register role: ground truth and resync driver ----

    pub async fn create_register(&self, new: NewRegister) -> Result<Register, NodeError> {
        let new = new.validated().map_err(RegisterError::Invalid)?;
        try_call(
            self.driver()?,
            |reply| ResyncDriverMsg::CreateRegister(new, reply),
            self.timeout,
        )
        .await
    }

    pub async fn update_register(
        &self,
        id: RegisterId,
        patch: RegisterPatch,
    ) -> Result<Register, NodeError> {
        let patch = patch.validated().map_err(RegisterError::Invalid)?;
        try_call(
            self.driver()?,
            |reply| ResyncDriverMsg::UpdateRegister(id, patch, reply),
            self.timeout,
        )
        .await
    }

    pub async fn delete_register(&self, id: RegisterId) -> Result<(), NodeError> {
        try_call(
            self.driver()?,
            |reply| ResyncDriverMsg::DeleteRegister(id, reply),
            self.timeout,
        )
        .await
    }

    pub async fn get_register(&self, id: RegisterId) -> Result<Register, NodeError> {
        try_call(
            self.driver()?,
            |reply| ResyncDriverMsg::GetRegister(id, reply),
            self.timeout,
        )
        .await
    }

    pub async fn list_registers(&self) -> Result<Vec<Register>, NodeError> {
        try_call(self.driver()?, ResyncDriverMsg::ListRegisters, self.timeout).await
    }

    /// The resync driver's record of its pushes (spec 030 `AdvertisementSyncState`), as it
    /// last published it.
    pub async fn sync_state(&self) -> Result<AdvertisementSyncState, NodeError> {
        let view = self
            .views
            .sync
            .as_ref()
            .ok_or(NodeError::RoleNotEnabled("register"))?;
        Ok(AdvertisementSyncState::clone(&view.latest()))
    }

    /// Pushes a full sync now, besides the schedule.
    pub fn resync_now(&self) -> Result<(), NodeError> {
        Ok(self.driver()?.cast(ResyncDriverMsg::ResyncNow)?)
    }

    // ---- hub role: the authoritative system register ----

    /// Publishes a blueprint, or updates it when it exists; returns its entry (new version).
    pub async fn publish_blueprint(
        &self,
        request: PublishRequest,
    ) -> Result<Arc<SystemRegisterEntry>, NodeError> {
        let request = request.validated().map_err(AuthorityError::Invalid)?;
        try_call(
            self.authority()?,
            |reply| SystemRegisterAuthorityMsg::Publish(request, reply),
            self.timeout,
        )
        .await
    }

    /// Deprecates a blueprint; returns the deprecation entry.
    pub async fn deprecate_blueprint(
        &self,
        blueprint_id: BlueprintId,
        by: String,
    ) -> Result<Arc<SystemRegisterEntry>, NodeError> {
        try_call(
            self.authority()?,
            |reply| SystemRegisterAuthorityMsg::Deprecate {
                blueprint_id,
                by,
                reply,
            },
            self.timeout,
        )
        .await
    }

    pub async fn hub_status(&self) -> Result<HubStatus, NodeError> {
        Ok(self.hub_view()?.status.clone())
    }

    /// The peers connected to this hub.
    pub async fn hub_peers(&self) -> Result<Vec<HubPeer>, NodeError> {
        Ok(self.hub_view()?.peers.clone())
    }

    /// What the hub's authority last published (a hub that is still loading its register
    /// says so in `status.state`).
    pub fn hub_view(&self) -> Result<Arc<HubView>, NodeError> {
        let view = self
            .views
            .authority
            .as_ref()
            .ok_or(NodeError::RoleNotEnabled("hub"))?;
        Ok(view.latest())
    }

    // ---- the system register: the hub's own, or a peer's replica ----

    /// The system register as this node holds it: the authoritative one on a hub, the replica
    /// on a peer.
    pub async fn system_register(&self) -> Result<SystemRegisterView, NodeError> {
        if self.views.authority.is_some() {
            return Ok(SystemRegisterView::clone(&self.hub_view()?.register));
        }
        Ok(self.replica_view().await?.register.clone())
    }

    /// One blueprint's latest entry, with its document.
    pub async fn blueprint(
        &self,
        id: BlueprintId,
    ) -> Result<Option<Arc<SystemRegisterEntry>>, NodeError> {
        if self.views.authority.is_some() {
            return Ok(self.hub_view()?.latest.get(&id).cloned());
        }
        Ok(self.replica_view().await?.entries.get(&id).cloned())
    }

    // ---- peer role: hub connection and replica ----

    pub async fn connection_status(&self) -> Result<ConnectionStatus, NodeError> {
        Ok(self.connection_view()?.status.clone())
    }

    /// The configured hubs, with the current one marked.
    pub async fn central_nodes(&self) -> Result<Vec<HubReport>, NodeError> {
        Ok(self.connection_view()?.hubs.clone())
    }

    pub async fn replica_status(&self) -> Result<ReplicaStatus, NodeError> {
        Ok(self.replica_view().await?.status.clone())
    }

    fn connection_view(&self) -> Result<Arc<ConnectionView>, NodeError> {
        let view = self
            .views
            .connection
            .as_ref()
            .ok_or(NodeError::RoleNotEnabled("peer with hubs"))?;
        Ok(view.latest())
    }

    /// What the replica last published. Waits only before its first replay of its store
    /// ended (at most the call deadline).
    async fn replica_view(&self) -> Result<Arc<ReplicaView>, NodeError> {
        let view = self
            .views
            .replica
            .as_ref()
            .ok_or(NodeError::RoleNotEnabled("peer with hubs"))?;
        ready_view(
            view,
            |replica| replica.ready,
            Kind::SystemRegisterReplica,
            self.timeout,
        )
        .await
    }

    /// Asks the replica to sync now (besides notifications and the periodic sync).
    pub fn sync_replica_now(&self) -> Result<(), NodeError> {
        let replica = &self.hub_slots()?.replica;
        Ok(replica.cast(SystemRegisterReplicaMsg::SyncNow(SyncTrigger::Operator))?)
    }

    // ---- cluster ----

    /// Whether this node is in a cluster.
    pub fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Every member of the cluster as this node sees it, itself first (FR-028, FR-037). Read
    /// from the membership's last published view: it never waits.
    pub fn cluster_members(&self) -> Result<Vec<ClusterMember>, NodeError> {
        Ok(self.cluster()?.members())
    }

    /// Members by state; `NotClustered` without a cluster.
    pub fn cluster_summary(&self) -> Result<ClusterSummary, NodeError> {
        Ok(self.cluster()?.summary())
    }

    /// The membership's read side, for hosts that watch it.
    pub fn cluster(&self) -> Result<&ClusterHandle, NodeError> {
        self.cluster.as_ref().ok_or(NodeError::NotClustered)
    }

    // ---- supervision ----

    /// Each supervised actor: running or not, restarts, last failure, as the supervisor last
    /// published it; `Stopped` once the supervisor is gone.
    pub async fn children(&self) -> Result<Vec<ChildReport>, NodeError> {
        let running = matches!(
            self.supervisor.get_status(),
            ractor::ActorStatus::Starting
                | ractor::ActorStatus::Running
                | ractor::ActorStatus::Upgrading
        );
        match (&self.views.children, running) {
            (Some(view), true) => Ok(view.latest().as_ref().clone()),
            _ => Err(NodeError::Stopped),
        }
    }

    /// Fault injection for drills and demos: kills the actor as a crash would (its handler is
    /// cut short, nothing is cleaned up). The supervisor restarts it and it replays its store.
    /// Returns false when the actor was not running.
    pub async fn kill_actor(&self, kind: ChildKind) -> Result<bool, NodeError> {
        match self
            .supervisor
            .call(
                |reply| NodeSupervisorMsg::Kill(kind, reply),
                Some(self.timeout),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(killed)) => Ok(killed),
            _ => Err(NodeError::Stopped),
        }
    }

    fn pool(&self) -> Result<&ActorSlot<AdvertisementPoolMsg>, NodeError> {
        self.pool.as_ref().ok_or(NodeError::RoleNotEnabled("peer"))
    }

    fn driver(&self) -> Result<&ActorSlot<ResyncDriverMsg>, NodeError> {
        self.driver
            .as_ref()
            .ok_or(NodeError::RoleNotEnabled("register"))
    }

    fn authority(&self) -> Result<&ActorSlot<SystemRegisterAuthorityMsg>, NodeError> {
        self.authority
            .as_ref()
            .ok_or(NodeError::RoleNotEnabled("hub"))
    }

    fn hub_slots(&self) -> Result<&PeerHubSlots, NodeError> {
        self.hub
            .as_ref()
            .ok_or(NodeError::RoleNotEnabled("peer with hubs"))
    }
}

/// The latest snapshot of `view` once `ready` holds for it: at once when it does already,
/// else after the publication that makes it so, within `timeout`.
async fn ready_view<T: Send + Sync + 'static>(
    view: &View<T>,
    ready: impl Fn(&T) -> bool,
    kind: Kind,
    timeout: Duration,
) -> Result<Arc<T>, NodeError> {
    let latest = view.latest();
    if ready(&latest) {
        return Ok(latest);
    }
    match tokio::time::timeout(timeout, view.wait_for(ready)).await {
        Ok(Some(ready)) => Ok(ready),
        Ok(None) => Err(NodeError::Stopped),
        Err(_) => Err(SlotError::Timeout(kind, timeout).into()),
    }
}

/// A call whose answer is itself a `Result`: the actor's refusal becomes the `NodeError`.
async fn try_call<M: Message, T: Send + 'static, E: Send + 'static>(
    slot: &ActorSlot<M>,
    request: impl FnOnce(ractor::RpcReplyPort<Result<T, E>>) -> M,
    timeout: Duration,
) -> Result<T, NodeError>
where
    NodeError: From<E>,
{
    Ok(call(slot, request, timeout).await??)
}

async fn call<M: Message, T: Send + 'static>(
    slot: &ActorSlot<M>,
    request: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
    timeout: Duration,
) -> Result<T, NodeError> {
    Ok(slot.call(request, timeout).await?)
}
