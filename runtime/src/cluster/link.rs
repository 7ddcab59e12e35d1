//! `ClusterLink`: a node's membership in the cluster, as a supervised actor.
//!
//! It runs ractor_cluster's `NodeServer` (cookie-authenticated sessions) over connections it
//! opens and accepts itself (`transport`), the node's gateway (`gateway`), and the pure
//! `Membership` that decides whom to dial, ping, describe and close. It publishes a
//! `ClusterView` after every change; nothing else reads its state.
//!
//! What ractor_cluster does not do and this does (notes/ractor.md §3, §7): dial seeds and learned
//! members, redial after every disconnect with capped jittered backoff, notice a frozen or
//! partitioned member by pings with a deadline (closing its session, so it gets no backlog),
//! excuse pings missed while this process itself stalled, time out sessions that never finish
//! their handshake (a wrong cookie, a silent client).
//!
//! A restart (the supervisor's, after a failure) closes every session and opens them again:
//! the listening socket is the node's and outlives the link, so nothing is refused meanwhile.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage, NodeSessionMessage};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use herald_actors::actor_kit::{MessageName, Timers};
use herald_actors::ports::Clock;
use herald_actors::{ActorSlot, StallDetector};
use herald_messages::{
    AdvertisementPoolMsg, CentralNodeConnectionMsg, ClusterMember, ClusterSummary, ConnectionState,
    MemberInfo, MemberState, NodeId,
};

use super::ClusterConfig;
use super::client::GatewayClient;
use super::gateway::{ClusterGateway, GatewayArgs, PG_GROUP, PG_SCOPE, gateway_name, gateway_node};
use super::gossip::GossipDriverMsg;
use super::membership::{Action, DialId, Membership, Pong, view_hash};
use super::transport::{self, Origin, Security};
use super::view::{ClusterHandle, ClusterView};
use super::wire::{GatewayMsg, Reply, RequestBody};

/// How long a leaving node waits for its members to take note.
const LEAVE_DEADLINE: Duration = Duration::from_millis(500);

/// The link's messages (local only).
#[derive(ractor_cluster::RactorMessage)]
pub enum ClusterLinkMsg {
    /// Liveness period: pings, due dials, timeouts.
    Tick,
    /// ractor_cluster reported a session event.
    Session(SessionEvent, NodeServerSessionInformation),
    /// A dial could not connect.
    DialFailed { dial: DialId, error: String },
    PingDone {
        node: NodeId,
        sent_at: Instant,
        outcome: Result<Pong, String>,
    },
    DescribeDone {
        node: NodeId,
        outcome: Result<Reply, String>,
    },
    /// This peer's hub connection, for its description.
    HubState {
        current_hub: Option<NodeId>,
        connection: Option<String>,
    },
    /// This node's description changed (its servers bound their addresses).
    Republish,
    /// A gateway joined or left the process group.
    Gateways(GroupChangeMessage),
    /// A member said it is leaving (graceful shutdown).
    Left(NodeId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    Opened,
    Authenticated,
    Ready,
    Disconnected,
}

impl MessageName for ClusterLinkMsg {
    fn name(&self) -> &'static str {
        match self {
            ClusterLinkMsg::Tick => "tick",
            ClusterLinkMsg::Session(..) => "session",
            ClusterLinkMsg::DialFailed { .. } => "dial_failed",
            ClusterLinkMsg::PingDone { .. } => "ping_done",
            ClusterLinkMsg::DescribeDone { .. } => "describe_done",
            ClusterLinkMsg::HubState { .. } => "hub_state",
            ClusterLinkMsg::Republish => "republish",
            ClusterLinkMsg::Gateways(_) => "gateways",
            ClusterLinkMsg::Left(_) => "left",
        }
    }
}

/// What outlives a restart of the link: this node's description and the published view.
pub struct ClusterShared {
    me: Mutex<MemberInfo>,
    view: watch::Sender<Arc<ClusterView>>,
}

impl ClusterShared {
    /// Shared state for a node described by `me`, and the handle that reads its view.
    pub fn new(me: MemberInfo) -> (Arc<Self>, ClusterHandle) {
        let summary = ClusterSummary::of(
            me.node_id.clone(),
            me.cluster_address.clone(),
            &[],
            Vec::new(),
        );
        let view = ClusterView {
            members: vec![self_member(&me)],
            me: me.clone(),
            known: Vec::new(),
            view_hash: view_hash(&[]),
            gateways: HashMap::new(),
            departed: Vec::new(),
            summary,
        };
        let (sender, receiver) = watch::channel(Arc::new(view));
        let shared = Arc::new(Self {
            me: Mutex::new(me),
            view: sender,
        });
        (shared, ClusterHandle::new(receiver))
    }

    pub fn me(&self) -> MemberInfo {
        self.lock().clone()
    }

    /// A reader of the published view (the gateway's).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.subscribe()
    }

    /// Records where this node's REST and gRPC servers listen (known once they bound).
    pub fn set_addresses(&self, http: Option<String>, grpc: Option<String>) {
        self.update(|me| {
            let changed = me.http_address != http || me.grpc_address != grpc;
            me.http_address = http;
            me.grpc_address = grpc;
            changed
        });
    }

    fn set_hub(&self, current_hub: Option<NodeId>, connection: Option<String>) -> bool {
        self.update(|me| {
            let changed = me.current_hub != current_hub || me.hub_connection != connection;
            me.current_hub = current_hub;
            me.hub_connection = connection;
            changed
        })
    }

    fn update(&self, change: impl FnOnce(&mut MemberInfo) -> bool) -> bool {
        let mut me = self.lock();
        let changed = change(&mut me);
        if changed {
            me.revision += 1;
        }
        changed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemberInfo> {
        self.me.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct ClusterLink;

/// Everything a (re)started link needs; cloned for each start.
#[derive(Clone)]
pub struct ClusterLinkArgs {
    pub node_id: NodeId,
    pub config: ClusterConfig,
    /// The node's listening socket (bound by `Node::start`, kept across restarts).
    pub listener: Arc<std::net::TcpListener>,
    /// The deployment's cookie (read by `Node::start`).
    pub cookie: String,
    /// Plain TCP or mutual TLS (its files read by `Node::start`).
    pub security: Security,
    pub shared: Arc<ClusterShared>,
    pub clock: Arc<dyn Clock>,
    pub stalls: Arc<StallDetector>,
    /// This node's pool, for pushes from register nodes.
    pub pool: Option<ActorSlot<AdvertisementPoolMsg>>,
    /// This node's gossip driver, for gossip from members (peer role).
    pub gossip: Option<ActorSlot<GossipDriverMsg>>,
    /// This peer's hub connection, for its description.
    pub hub_connection: Option<ActorSlot<CentralNodeConnectionMsg>>,
    pub call_timeout: Duration,
}

pub struct ClusterLinkState {
    args: ClusterLinkArgs,
    membership: Membership,
    client: GatewayClient,
    server: ActorRef<NodeServerMessage>,
    gateway: ActorRef<GatewayMsg>,
    sessions: HashMap<ActorId, Session>,
    gateways: HashMap<NodeId, ActorRef<GatewayMsg>>,
    /// Members that were ready at least once (a later ready is a reconnect).
    ever_ready: HashSet<NodeId>,
    hub_probe_in_flight: bool,
    tasks: JoinSet<()>,
    /// Held to be aborted with the state: the accept loop and the tick.
    _timers: Timers,
}

struct Session {
    actor: ActorRef<NodeSessionMessage>,
    origin: Option<Origin>,
    node: Option<NodeId>,
    ready: bool,
    opened: Instant,
}

impl Actor for ClusterLink {
    type Msg = ClusterLinkMsg;
    type State = ClusterLinkState;
    type Arguments = ClusterLinkArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ClusterLinkMsg>,
        args: ClusterLinkArgs,
    ) -> Result<ClusterLinkState, ActorProcessingErr> {
        let me = args.shared.me();
        let host = me
            .cluster_address
            .rsplit_once(':')
            .map_or(me.cluster_address.as_str(), |(host, _)| host)
            .to_owned();
        // ractor_cluster's node server always opens a listener of its own: it gets an ephemeral
        // port on loopback, the same cookie, and is never dialed (members dial `listener`).
        let server = NodeServer::new(
            0,
            args.cookie.clone(),
            args.node_id.to_string(),
            host,
            Some(args.security.listener_mode()),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (server, _) = Actor::spawn_linked(None, server, (), myself.get_cell()).await?;
        server.cast(NodeServerMessage::SubscribeToEvents {
            id: "herald-cluster-link".to_owned(),
            subscription: Box::new(Events(myself.clone())),
        })?;
        let (gateway, _) = Actor::spawn_linked(
            Some(gateway_name(&args.node_id)),
            ClusterGateway,
            GatewayArgs {
                node_id: args.node_id.clone(),
                view: args.shared.subscribe(),
                pool: args.pool.clone(),
                gossip: args.gossip.clone(),
                clock: Arc::clone(&args.clock),
                call_timeout: args.call_timeout,
                on_leave: {
                    let link = myself.clone();
                    Arc::new(move |node| {
                        let _ = link.cast(ClusterLinkMsg::Left(node));
                    })
                },
            },
            myself.get_cell(),
        )
        .await?;
        ractor::pg::monitor_scope(PG_SCOPE.to_owned(), myself.get_cell());

        let mut timers = Timers::new();
        let listener = args.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let node = args.node_id.to_string();
        let refused = Arc::new(move |peer: String, reason: String| {
            warn!(%peer, %reason, "refused a cluster connection: its TLS handshake failed");
            metrics::counter!("herald_cluster_tls_refused_total", "node" => node.clone())
                .increment(1);
        });
        let accept = tokio::spawn(
            transport::accept_loop(
                TcpListener::from_std(listener)?,
                server.clone(),
                args.security.clone(),
                refused,
            )
            .in_current_span(),
        );
        timers.keep(&accept);
        let interval = args.config.membership.liveness_interval;
        timers.every(&myself, interval, || ClusterLinkMsg::Tick);
        myself.cast(ClusterLinkMsg::Tick)?;

        let membership = Membership::new(
            args.node_id.clone(),
            me.cluster_address.clone(),
            &args.config.seeds,
            args.config.membership.clone(),
            Instant::now(),
        );
        info!(node = %args.node_id, address = %me.cluster_address, seeds = ?args.config.seeds, "cluster link started");
        Ok(ClusterLinkState {
            client: GatewayClient::new(
                args.node_id.clone(),
                me.incarnation,
                Arc::clone(&args.clock),
            ),
            membership,
            server,
            gateway,
            sessions: HashMap::new(),
            gateways: HashMap::new(),
            ever_ready: HashSet::new(),
            hub_probe_in_flight: false,
            tasks: JoinSet::new(),
            _timers: timers,
            args,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ClusterLinkMsg>,
        msg: ClusterLinkMsg,
        state: &mut ClusterLinkState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::debug_span!("actor", actor = "cluster_link", node = %state.args.node_id, msg = msg.name());
        async move {
            let now = Instant::now();
            let actions = match msg {
                ClusterLinkMsg::Tick => state.on_tick(&myself, now),
                ClusterLinkMsg::Session(event, info) => state.on_session(event, info, now),
                ClusterLinkMsg::DialFailed { dial, error } => {
                    state.dial_failed(dial, &error, now);
                    Vec::new()
                }
                ClusterLinkMsg::PingDone {
                    node,
                    sent_at,
                    outcome,
                } => state.on_ping_done(&node, sent_at, outcome, now),
                ClusterLinkMsg::DescribeDone { node, outcome } => {
                    state.on_described(&node, outcome, now)
                }
                ClusterLinkMsg::HubState {
                    current_hub,
                    connection,
                } => {
                    state.hub_probe_in_flight = false;
                    state.args.shared.set_hub(current_hub, connection);
                    Vec::new()
                }
                ClusterLinkMsg::Republish => Vec::new(),
                ClusterLinkMsg::Gateways(change) => {
                    state.on_gateways(change);
                    Vec::new()
                }
                ClusterLinkMsg::Left(node) => {
                    state.gateways.remove(&node);
                    state.membership.departed(&node, now);
                    Vec::new()
                }
            };
            state.execute(&myself, actions);
            state.report_transitions();
            state.publish(now);
        }
        .instrument(span)
        .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ClusterLinkMsg>,
        event: SupervisionEvent,
        state: &mut ClusterLinkState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ProcessGroupChanged(change) => {
                myself.cast(ClusterLinkMsg::Gateways(change))?;
                Ok(())
            }
            SupervisionEvent::ActorFailed(cell, err) if state.is_child(&cell) => Err(format!(
                "the cluster link's {} failed: {err}",
                state.child_name(&cell)
            )
            .into()),
            SupervisionEvent::ActorTerminated(cell, _, reason) if state.is_child(&cell) => {
                Err(format!(
                    "the cluster link's {} stopped: {reason:?}",
                    state.child_name(&cell)
                )
                .into())
            }
            _ => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ClusterLinkMsg>,
        state: &mut ClusterLinkState,
    ) -> Result<(), ActorProcessingErr> {
        // Tell every member this node is leaving (so they forget it instead of suspecting it and
        // redialing), each within a short deadline, then close every session.
        let leaving = state.gateways.values().map(|gateway| {
            state
                .client
                .call(gateway, RequestBody::Leave, LEAVE_DEADLINE)
        });
        let told = futures::future::join_all(leaving).await;
        let acknowledged = told
            .iter()
            .filter(|reply| matches!(reply, Ok(Reply::Acknowledged)))
            .count();
        info!(node = %state.args.node_id, members = told.len(), acknowledged, "left the cluster");
        state.server.stop(Some("node shutting down".to_owned()));
        Ok(())
    }
}

impl ClusterLinkState {
    fn is_child(&self, cell: &ActorCell) -> bool {
        cell.get_id() == self.server.get_id() || cell.get_id() == self.gateway.get_id()
    }

    fn child_name(&self, cell: &ActorCell) -> &'static str {
        if cell.get_id() == self.server.get_id() {
            "node server"
        } else {
            "gateway"
        }
    }

    fn on_tick(&mut self, myself: &ActorRef<ClusterLinkMsg>, now: Instant) -> Vec<Action> {
        while self.tasks.try_join_next().is_some() {}
        let handshake_timeout = self.args.config.handshake_timeout;
        for session in self.sessions.values() {
            if session.node.is_none()
                && now.saturating_duration_since(session.opened) > handshake_timeout
            {
                warn!(origin = ?session.origin, "a cluster connection did not authenticate in time (wrong cookie?); closing it");
                metrics::counter!("herald_cluster_handshake_timeouts_total", "node" => self.args.node_id.to_string()).increment(1);
                session.actor.stop(Some("handshake timeout".to_owned()));
            }
        }
        if let Some(slot) = &self.args.hub_connection
            && !self.hub_probe_in_flight
        {
            self.hub_probe_in_flight = true;
            let slot = slot.clone();
            let myself = myself.clone();
            let timeout = self.args.call_timeout;
            self.tasks.spawn(async move {
                let status = slot.call(CentralNodeConnectionMsg::Status, timeout).await;
                let (current_hub, connection) = match status {
                    Ok(status) => (
                        status.hub_id,
                        Some(connection_name(status.state).to_owned()),
                    ),
                    Err(_) => (None, None),
                };
                let _ = myself.cast(ClusterLinkMsg::HubState {
                    current_hub,
                    connection,
                });
            });
        }
        self.membership.tick(now)
    }

    fn on_session(
        &mut self,
        event: SessionEvent,
        info: NodeServerSessionInformation,
        now: Instant,
    ) -> Vec<Action> {
        let id = info.actor.get_id();
        let node = info
            .peer_name
            .as_ref()
            .and_then(|name| name.name.split('@').next())
            .and_then(|name| NodeId::parse(name).ok());
        match event {
            SessionEvent::Opened => {
                self.sessions.insert(
                    id,
                    Session {
                        actor: info.actor.clone(),
                        origin: Origin::parse(&info.peer_addr),
                        node: None,
                        ready: false,
                        opened: now,
                    },
                );
                Vec::new()
            }
            SessionEvent::Authenticated => {
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.node = node;
                }
                Vec::new()
            }
            SessionEvent::Ready => {
                let Some(node) = node else {
                    warn!(peer = %info.peer_addr, "a ready session without a valid node name; closing it");
                    info.actor.stop(Some("invalid node name".to_owned()));
                    return Vec::new();
                };
                let session = self.sessions.entry(id).or_insert_with(|| Session {
                    actor: info.actor.clone(),
                    origin: Origin::parse(&info.peer_addr),
                    node: None,
                    ready: false,
                    opened: now,
                });
                session.node = Some(node.clone());
                session.ready = true;
                let dialed = match &session.origin {
                    Some(Origin::Dialed { address, .. }) => Some(address.clone()),
                    _ => None,
                };
                self.find_gateway(&node);
                self.membership.session_ready(&node, dialed.as_deref(), now)
            }
            SessionEvent::Disconnected => {
                let Some(session) = self.sessions.remove(&id) else {
                    return Vec::new();
                };
                let node = session.node.clone();
                let others = node.as_ref().is_some_and(|node| {
                    self.sessions
                        .values()
                        .any(|other| other.node.as_ref() == Some(node))
                });
                if !session.ready
                    && !others
                    && let Some(Origin::Dialed { dial, .. }) = session.origin
                {
                    // Closed by the other side before it was ready: a wrong cookie (either
                    // side's), a handshake that timed out, a node refusing us.
                    let reason = if session.node.is_some() {
                        "the session closed before it was ready"
                    } else {
                        "the connection closed during the handshake (a wrong cookie?)"
                    };
                    self.dial_failed(dial, reason, now);
                }
                match node {
                    Some(node) if session.ready && !others => {
                        self.gateways.remove(&node);
                        self.membership.session_lost(&node, now)
                    }
                    _ => Vec::new(),
                }
            }
        }
    }

    fn dial_failed(&mut self, dial: DialId, reason: &str, now: Instant) {
        match self.membership.dial_failed(dial, now) {
            Some((address, attempts)) if attempts == 1 || attempts.is_power_of_two() => {
                warn!(%address, attempts, %reason, "cannot reach a cluster member; retrying with backoff");
            }
            Some((address, attempts)) => debug!(%address, attempts, %reason, "dial failed again"),
            None => debug!(dial, %reason, "a superseded dial failed"),
        }
    }

    fn on_ping_done(
        &mut self,
        node: &NodeId,
        sent_at: Instant,
        outcome: Result<Pong, String>,
        now: Instant,
    ) -> Vec<Action> {
        match outcome {
            Ok(pong) => {
                metrics::histogram!("herald_cluster_ping_seconds", "node" => self.args.node_id.to_string())
                    .record(pong.rtt.as_secs_f64());
                self.membership.pong(node, pong, now)
            }
            Err(reason) => {
                let threshold = self
                    .args
                    .config
                    .ping_timeout
                    .mul_f64(self.args.config.own_stall_share);
                if let Some(stall) = self
                    .args
                    .stalls
                    .stall_longer_than(threshold, sent_at, now, now)
                {
                    debug!(member = %node, stall_ms = stall.length().as_millis() as u64, "ping missed while this process stalled; not counted");
                    metrics::counter!("herald_cluster_own_stalls_total", "node" => self.args.node_id.to_string()).increment(1);
                    return self.membership.ping_excused(node);
                }
                debug!(member = %node, %reason, "ping missed");
                self.membership.ping_missed(node, now)
            }
        }
    }

    fn on_described(
        &mut self,
        node: &NodeId,
        outcome: Result<Reply, String>,
        now: Instant,
    ) -> Vec<Action> {
        match outcome {
            Ok(Reply::Described {
                info,
                view,
                view_hash,
            }) if info.node_id == *node => {
                let view: Vec<(NodeId, String)> = view
                    .into_iter()
                    .map(|member| (member.node_id, member.address))
                    .collect();
                self.membership.described(node, info, &view, view_hash, now)
            }
            other => {
                debug!(member = %node, answer = ?other, "no description");
                self.membership.describe_failed(node);
                Vec::new()
            }
        }
    }

    fn on_gateways(&mut self, change: GroupChangeMessage) {
        match change {
            GroupChangeMessage::Join(scope, group, cells)
                if scope == PG_SCOPE && group == PG_GROUP =>
            {
                for cell in cells {
                    self.add_gateway(cell);
                }
            }
            GroupChangeMessage::Leave(scope, group, cells)
                if scope == PG_SCOPE && group == PG_GROUP =>
            {
                for cell in cells {
                    self.gateways
                        .retain(|_, gateway| gateway.get_id() != cell.get_id());
                }
            }
            _ => {}
        }
    }

    fn find_gateway(&mut self, node: &NodeId) {
        for cell in ractor::pg::get_scoped_members(&PG_SCOPE.to_owned(), &PG_GROUP.to_owned()) {
            if cell.get_name().as_deref().and_then(gateway_node).as_ref() == Some(node) {
                self.add_gateway(cell);
            }
        }
    }

    fn add_gateway(&mut self, cell: ActorCell) {
        if cell.get_id().is_local() {
            return;
        }
        if let Some(node) = cell.get_name().as_deref().and_then(gateway_node) {
            self.gateways.insert(node, ActorRef::from(cell));
        }
    }

    fn execute(&mut self, myself: &ActorRef<ClusterLinkMsg>, actions: Vec<Action>) {
        let ping_timeout = self.args.config.ping_timeout;
        for action in actions {
            match action {
                Action::Dial { dial, address } => {
                    let server = self.server.clone();
                    let myself = myself.clone();
                    let timeout = self.args.config.membership.connect_timeout;
                    let security = self.args.security.clone();
                    debug!(dial, %address, "dialing");
                    self.tasks.spawn(
                        async move {
                            if let Err(err) =
                                transport::dial(&server, dial, &address, timeout, &security).await
                            {
                                let _ = myself.cast(ClusterLinkMsg::DialFailed {
                                    dial,
                                    error: format!("{address}: {err}"),
                                });
                            }
                        }
                        .in_current_span(),
                    );
                }
                Action::Ping { node } => {
                    let gateway = self.gateways.get(&node).cloned();
                    let client = self.client.clone();
                    let myself = myself.clone();
                    self.tasks.spawn(async move {
                        let sent_at = Instant::now();
                        let outcome = match gateway {
                            None => Err("its gateway is not known here".to_owned()),
                            Some(gateway) => {
                                match client.call(&gateway, RequestBody::Ping, ping_timeout).await {
                                    Ok(Reply::Pong {
                                        incarnation,
                                        revision,
                                        view_hash,
                                    }) => Ok(Pong {
                                        incarnation,
                                        revision,
                                        view_hash,
                                        rtt: sent_at.elapsed(),
                                    }),
                                    Ok(other) => Err(format!("answered {other:?}")),
                                    Err(err) => Err(err.to_string()),
                                }
                            }
                        };
                        let _ = myself.cast(ClusterLinkMsg::PingDone {
                            node,
                            sent_at,
                            outcome,
                        });
                    });
                }
                Action::Describe { node } => {
                    let gateway = self.gateways.get(&node).cloned();
                    let client = self.client.clone();
                    let myself = myself.clone();
                    let timeout = self.args.call_timeout;
                    self.tasks.spawn(async move {
                        let outcome = match gateway {
                            None => Err("its gateway is not known here".to_owned()),
                            Some(gateway) => client
                                .call(&gateway, RequestBody::Describe, timeout)
                                .await
                                .map_err(|err| err.to_string()),
                        };
                        let _ = myself.cast(ClusterLinkMsg::DescribeDone { node, outcome });
                    });
                }
                Action::Close { node } => {
                    self.gateways.remove(&node);
                    for session in self.sessions.values() {
                        if session.node.as_ref() == Some(&node) {
                            session
                                .actor
                                .stop(Some("suspected: pings missed".to_owned()));
                        }
                    }
                }
            }
        }
    }

    fn report_transitions(&mut self) {
        let node = self.args.node_id.to_string();
        for over in self.membership.take_over_limit() {
            warn!(member = %over, max_members = self.args.config.membership.max_members, "cluster is larger than max_members; not connecting to this member");
        }
        for transition in self.membership.take_transitions() {
            let from = transition.from.map_or("none", MemberState::as_str);
            let to = transition.to.map_or("forgotten", MemberState::as_str);
            info!(member = %transition.node, from, to, reason = transition.reason, "cluster member state changed");
            match transition.to {
                Some(MemberState::Suspect) => {
                    metrics::counter!("herald_cluster_suspicions_total", "node" => node.clone())
                        .increment(1);
                }
                Some(MemberState::Ready) if !self.ever_ready.insert(transition.node.clone()) => {
                    metrics::counter!("herald_cluster_reconnects_total", "node" => node.clone())
                        .increment(1);
                }
                _ => {}
            }
        }
    }

    fn publish(&self, now: Instant) {
        let me = self.args.shared.me();
        let mut members = vec![self_member(&me)];
        members.extend(self.membership.members(now));
        let known = self.membership.view();
        let unanswered = self
            .membership
            .pending_seeds()
            .into_iter()
            .map(|(address, _)| address)
            .collect();
        let summary = ClusterSummary::of(
            me.node_id.clone(),
            me.cluster_address.clone(),
            &members,
            unanswered,
        );
        let gateways = self
            .gateways
            .iter()
            .filter(|(node, _)| self.membership.is_connected(node))
            .map(|(node, gateway)| (node.clone(), gateway.clone()))
            .collect();
        let node = self.args.node_id.to_string();
        for state in MemberState::ALL {
            let count = members
                .iter()
                .filter(|member| !member.is_self && member.state == state)
                .count();
            metrics::gauge!("herald_cluster_members", "node" => node.clone(), "state" => state.as_str())
                .set(count as f64);
        }
        let view = ClusterView {
            view_hash: view_hash(&known),
            me,
            members,
            known,
            gateways,
            departed: self.membership.departed_members(),
            summary,
        };
        self.args.shared.view.send_replace(Arc::new(view));
    }
}

/// This node's own entry in the member list.
fn self_member(me: &MemberInfo) -> ClusterMember {
    ClusterMember {
        node_id: me.node_id.clone(),
        roles: me.roles.clone(),
        address: Some(me.cluster_address.clone()),
        state: MemberState::Ready,
        last_seen_ms: Some(0),
        is_self: true,
        seed: false,
        current_hub: me.current_hub.clone(),
        hub_connection: me.hub_connection.clone(),
        http_address: me.http_address.clone(),
        grpc_address: me.grpc_address.clone(),
        started_at: Some(me.started_at),
        incarnation: Some(me.incarnation),
        missed_pings: 0,
        ping_ms: None,
    }
}

fn connection_name(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Disconnected => "disconnected",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Isolated => "isolated",
    }
}

/// Forwards ractor_cluster's session events into the link's mailbox.
struct Events(ActorRef<ClusterLinkMsg>);

impl Events {
    fn forward(&self, event: SessionEvent, info: NodeServerSessionInformation) {
        let _ = self.0.cast(ClusterLinkMsg::Session(event, info));
    }
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, info: NodeServerSessionInformation) {
        self.forward(SessionEvent::Opened, info);
    }

    fn node_session_authenticated(&self, info: NodeServerSessionInformation) {
        self.forward(SessionEvent::Authenticated, info);
    }

    fn node_session_ready(&self, info: NodeServerSessionInformation) {
        self.forward(SessionEvent::Ready, info);
    }

    fn node_session_disconnected(&self, info: NodeServerSessionInformation) {
        self.forward(SessionEvent::Disconnected, info);
    }
}
