//! `Node::start`: opens the stores, builds the supervision tree for the configured roles,
//! starts the node's stall detector and the REST API, and returns a `NodeHandle`.
//! `NodeHandle::shutdown` undoes it in order.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use herald_actors::ports::{
    AdStore, BlueprintStore, Clock, GossipStore, GroundTruth, HubLink, PoolLink, ReplicaStore,
};
use herald_actors::{
    ActorSlot, ChildSpec, HubConnectionParts, LocalPoolLink, NodeTree, Published, StallDetector,
    StallTicker, TokioClock,
};
use herald_messages::{
    AdvertisementPoolMsg, ChildKind, MemberInfo, NodeFailure, NodeId, NodeSupervisorMsg, PoolView,
    RegisterState, Role, SystemRegisterAuthorityMsg,
};

use crate::api::NodeApi;
use crate::cluster::{
    ClusterConfig, ClusterGuard, ClusterHandle, ClusterLink, ClusterLinkArgs, ClusterPoolLink,
    ClusterShared, GatewayClient, GossipDriver, GossipDriverArgs, Security,
};
use crate::config::{
    HttpConfig, HubConnectionConfig, HubRoleConfig, NodeConfig, PoolLinkConfig, RegisterRoleConfig,
};
use crate::grpc::{
    ClientCertificates, GrpcHubLink, GrpcServer, GrpcStartError, HubAuth, HubCredentials, HubGrpc,
    ServeOptions,
};
use crate::links::HttpPoolLink;
use crate::rest::{self, HttpServer, RestState};
use crate::server::ServerTask;
pub use crate::start_error::StartError;
use crate::stores;
use crate::tls::{CredentialError, ServerPem};

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Actors that did not drain and stop within the deadline and were killed.
    pub killed: Vec<ChildKind>,
    pub elapsed: Duration,
}

/// Stores supplied by the host instead of the configured ones: its own adapters, or the
/// in-memory ones of `herald_actors::testing`.
#[derive(Default, Clone)]
pub struct StoreOverrides {
    pub ad_store: Option<Arc<dyn AdStore>>,
    pub ground_truth: Option<Arc<dyn GroundTruth>>,
    pub blueprint_store: Option<Arc<dyn BlueprintStore>>,
    pub replica_store: Option<Arc<dyn ReplicaStore>>,
    /// How the peer reaches its hubs (gRPC by default).
    pub hub_link: Option<Arc<dyn HubLink>>,
    /// Where a peer in a cluster keeps its gossip state (issue 9): persisted when given, in
    /// memory only (a restart starts from the pool's ads and what the members say) when not.
    pub gossip_store: Option<Arc<dyn GossipStore>>,
}

/// How long `Node::start` waits for a hub's system register to be loaded and validated before
/// it returns anyway (the store may be unreachable: the hub keeps retrying, degraded).
const HUB_STARTUP_WAIT: Duration = Duration::from_secs(10);

/// Entry point of the library.
pub struct Node;

impl Node {
    /// Starts a node with the configured roles. Must be called inside a tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
        Self::start_with(config, StoreOverrides::default()).await
    }

    /// Starts a node, using the given stores where supplied.
    pub async fn start_with(
        config: NodeConfig,
        overrides: StoreOverrides,
    ) -> Result<NodeHandle, StartError> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        // One per node: the process's own stalls, for the actors that judge others by deadlines.
        let stalls = Arc::new(StallDetector::new(config.stall_tick, Instant::now()));
        let node_id = config.node_id.clone();
        let mut tree = NodeTree::new(node_id.clone(), Arc::clone(&clock));
        let cluster = match &config.cluster {
            None => None,
            Some(cluster) => Some(NodeCluster::bind(&config, cluster, clock.as_ref())?),
        };

        // The gossip's records live beside the ads (same Redis slot, same redb file); a host
        // that supplies its own ad store supplies its gossip store too, or runs without one.
        let mut gossip_store = overrides.gossip_store.clone();
        let pool = match &config.peer {
            None => None,
            Some(peer) => {
                let store = match &overrides.ad_store {
                    Some(store) => Arc::clone(store),
                    None => {
                        let opened = stores::open_peer_stores(&peer.ad_store, &node_id).await?;
                        gossip_store = gossip_store.or(opened.gossip);
                        opened.ads
                    }
                };
                Some(tree.pool(peer.pool.clone(), store))
            }
        };
        let driver = match &config.register {
            None => None,
            Some(register) => {
                let truth = match &overrides.ground_truth {
                    Some(truth) => Arc::clone(truth),
                    None => stores::open_ground_truth(&register.ground_truth).await?,
                };
                let link = pool_link(
                    register,
                    pool.as_ref(),
                    cluster.as_ref(),
                    &clock,
                    config.call_timeout,
                )?;
                Some(tree.resync_driver(register.resync.clone(), truth, link))
            }
        };
        let authority = match &config.hub {
            None => None,
            Some(hub) => {
                let store = match &overrides.blueprint_store {
                    Some(store) => Arc::clone(store),
                    None => stores::open_blueprint_store(&hub.store).await?,
                };
                Some(tree.authority(hub.authority.clone(), store))
            }
        };
        let hub_connection = config
            .peer
            .as_ref()
            .and_then(|peer| peer.hub_connection.as_ref());
        let hub_slots = match hub_connection {
            None => None,
            Some(hub_connection) => {
                let parts =
                    hub_connection_parts(&node_id, hub_connection, &overrides, &clock, &stalls)
                        .await?;
                Some(tree.hub_connection(parts))
            }
        };
        // A peer in a cluster gossips its public ads; readers then get the pool's answer
        // merged with the gossip (`merged`) instead of the pool's own.
        let mut merged_pool_view = None;
        let gossip = match (&cluster, &config.peer, &tree.views().pool) {
            (Some(cluster), Some(peer), Some(pool_view)) => {
                let slot = ActorSlot::new(ChildKind::GossipDriver);
                let published = Published::new(PoolView::starting(node_id.clone(), rand::random()));
                merged_pool_view = Some(published.view());
                let args = GossipDriverArgs {
                    node_id: node_id.clone(),
                    settings: peer.gossip,
                    clock: Arc::clone(&clock),
                    cluster: cluster.handle.clone(),
                    client: cluster.client(&clock),
                    pool: pool_view.clone(),
                    published,
                    store: gossip_store.clone(),
                    call_timeout: config.call_timeout,
                };
                tree.last(ChildSpec::new(slot.clone(), move || {
                    (GossipDriver, args.clone())
                }));
                Some(slot)
            }
            _ => None,
        };
        if let (Some(cluster), Some(settings)) = (&cluster, &config.cluster) {
            let slot = ActorSlot::new(ChildKind::ClusterLink);
            let args = ClusterLinkArgs {
                node_id: node_id.clone(),
                config: settings.clone(),
                listener: Arc::clone(&cluster.listener),
                cookie: cluster.cookie.clone(),
                security: cluster.security.clone(),
                shared: Arc::clone(&cluster.shared),
                clock: Arc::clone(&clock),
                stalls: Arc::clone(&stalls),
                pool: pool.clone(),
                gossip: gossip.clone(),
                hub_connection: hub_slots.as_ref().map(|slots| slots.connection.clone()),
                call_timeout: config.call_timeout,
            };
            tree.first(ChildSpec::new(slot, move || (ClusterLink, args.clone())));
        }
        let ignored_hubs = config.peer.as_ref().map_or(0, |peer| peer.ignored_hubs);
        if ignored_hubs > 0 {
            warn!(node = %node_id, ignored_hubs, "this node is a hub: not dialing the configured hubs (FR-027)");
        }

        // Ticking before the first actor starts; stopped on every way out from here.
        let stall_ticker = stalls.start(&node_id);
        let tree = match tree.start(config.restart).await {
            Ok(tree) => tree,
            Err(err) => {
                stall_ticker.stop().await;
                return Err(StartError::Supervisor(err));
            }
        };
        let (supervisor, supervisor_join, failure_rx, mut views) =
            (tree.supervisor, tree.join, tree.failure, tree.views);
        let own_pool = match merged_pool_view {
            Some(merged) => views.pool.replace(merged),
            None => None,
        };

        let api = NodeApi {
            node_id: node_id.clone(),
            pool,
            driver,
            authority: authority.clone(),
            hub: hub_slots,
            supervisor: supervisor.clone(),
            cluster: cluster.as_ref().map(|cluster| cluster.handle.clone()),
            views,
            own_pool,
            timeout: config.call_timeout,
        };

        let grpc = match (&config.hub, &authority) {
            (Some(hub), Some(authority)) => {
                let started = async {
                    let (tls, auth) = hub_guard(&node_id, hub)?;
                    await_register(&node_id, authority).await?;
                    let services = HubGrpc::new(
                        authority.clone(),
                        node_id.clone(),
                        Arc::clone(&clock),
                        config.call_timeout,
                    )
                    .with_auth(auth)
                    .with_limits(&hub.limits);
                    let services = match &api.views.authority {
                        Some(view) => services.with_view(view.clone()),
                        None => services,
                    };
                    let options = ServeOptions::new(tls, &hub.limits);
                    GrpcServer::start_with(hub.grpc_addr, services, options)
                        .await
                        .map_err(|err| match err {
                            GrpcStartError::Bind(source) => StartError::Bind {
                                addr: hub.grpc_addr,
                                source,
                            },
                            GrpcStartError::Tls(source) => StartError::Credentials {
                                link: "hub's gRPC server",
                                source: CredentialError::Unusable(
                                    herald_actors::ports::error_chain(&source),
                                ),
                            },
                        })
                };
                match started.await {
                    Ok(server) => Some(server),
                    Err(err) => {
                        stop_supervisor(&supervisor, supervisor_join, config.restart.stop_timeout)
                            .await;
                        stall_ticker.stop().await;
                        return Err(err);
                    }
                }
            }
            _ => None,
        };

        let http = match &config.http {
            None => None,
            Some(http) => {
                let started = async {
                    let (admin_token, tls) = http_credentials(http)?;
                    let state = RestState::new(api.clone(), admin_token, config.metrics.clone())
                        .with_reads_needing_token(http.reads_need_token);
                    HttpServer::start(http.addr, rest::router(state), http.header_timeout, tls)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr: http.addr,
                            source,
                        })
                };
                match started.await {
                    Ok(server) => Some(server),
                    Err(err) => {
                        if let Some(grpc) = grpc {
                            grpc.stop(config.restart.stop_timeout).await;
                        }
                        stop_supervisor(&supervisor, supervisor_join, config.restart.stop_timeout)
                            .await;
                        stall_ticker.stop().await;
                        return Err(err);
                    }
                }
            }
        };

        if let Some(cluster) = &cluster {
            cluster.shared.set_addresses(
                http.as_ref().map(|http| http.addr().to_string()),
                grpc.as_ref().map(|grpc| grpc.addr().to_string()),
            );
        }
        info!(
            node = %node_id,
            cluster = ?cluster.as_ref().map(|cluster| cluster.address),
            peer = api.has_peer_role(),
            register = api.has_register_role(),
            hub = api.has_hub_role(),
            hub_connection = api.has_hub_connection(),
            http = ?http.as_ref().map(ServerTask::addr),
            grpc = ?grpc.as_ref().map(ServerTask::addr),
            "node started"
        );
        Ok(NodeHandle {
            api,
            supervisor,
            supervisor_join,
            http,
            grpc,
            stall_ticker,
            cluster,
            failure: failure_rx,
            stop_timeout: config.restart.stop_timeout,
        })
    }
}

/// A node's place in the cluster, held by its handle: the listening socket (kept across
/// restarts of the cluster link), the shared view, and the one-node-per-process guard.
struct NodeCluster {
    listener: Arc<std::net::TcpListener>,
    /// The cookie, read from where the configuration says.
    cookie: String,
    security: Security,
    /// The bound listen address.
    address: SocketAddr,
    shared: Arc<ClusterShared>,
    handle: ClusterHandle,
    _guard: ClusterGuard,
}

impl NodeCluster {
    fn bind(
        config: &NodeConfig,
        cluster: &ClusterConfig,
        clock: &dyn Clock,
    ) -> Result<Self, StartError> {
        let guard = ClusterGuard::acquire()?;
        let cookie = cluster
            .cookie
            .read()
            .map_err(|source| StartError::Credentials {
                link: "cluster (its cookie)",
                source,
            })?;
        let security = match &cluster.tls {
            None => Security::Plain,
            Some(tls) => tls
                .load()
                .and_then(|(server, client)| {
                    Security::tls(&server, &client, cluster.handshake_timeout)
                })
                .map_err(|source| StartError::Credentials {
                    link: "cluster (its TLS files)",
                    source,
                })?,
        };
        let bind_error = |source| StartError::Bind {
            addr: cluster.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(cluster.listen).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let roles = [
            (config.peer.is_some(), Role::Peer),
            (config.register.is_some(), Role::Register),
            (config.hub.is_some(), Role::Hub),
        ]
        .into_iter()
        .filter_map(|(runs, role)| runs.then_some(role))
        .collect();
        let me = MemberInfo {
            node_id: config.node_id.clone(),
            // Below 2^53: exact as a JSON number in every client.
            incarnation: rand::random::<u64>() >> 11,
            revision: 0,
            roles,
            cluster_address: cluster
                .advertised_address
                .clone()
                .unwrap_or_else(|| address.to_string()),
            http_address: None,
            grpc_address: None,
            started_at: clock.now(),
            current_hub: None,
            hub_connection: None,
        };
        let (shared, handle) = ClusterShared::new(me);
        Ok(Self {
            listener: Arc::new(listener),
            cookie,
            security,
            address,
            shared,
            handle,
            _guard: guard,
        })
    }

    fn client(&self, clock: &Arc<dyn Clock>) -> GatewayClient {
        let me = self.shared.me();
        GatewayClient::new(me.node_id, me.incarnation, Arc::clone(clock))
    }
}

/// A running node. Dereferences to `NodeApi` for typed calls (`available`, `advertise`,
/// `create_register`, …). Call `shutdown` to stop it; dropping it leaves the node running.
pub struct NodeHandle {
    api: NodeApi,
    supervisor: ActorRef<NodeSupervisorMsg>,
    supervisor_join: JoinHandle<()>,
    http: Option<ServerTask>,
    grpc: Option<ServerTask>,
    /// The ticker of the node's stall detector; stopped after the actors.
    stall_ticker: StallTicker,
    /// Released (listener closed, guard dropped) after the actors stopped.
    cluster: Option<NodeCluster>,
    failure: watch::Receiver<Option<NodeFailure>>,
    stop_timeout: Duration,
}

impl Deref for NodeHandle {
    type Target = NodeApi;

    fn deref(&self) -> &NodeApi {
        &self.api
    }
}

impl NodeHandle {
    pub fn api(&self) -> &NodeApi {
        &self.api
    }

    /// The address the REST API listens on (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(ServerTask::addr)
    }

    /// The address the hub's gRPC server listens on (useful with port 0).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(ServerTask::addr)
    }

    /// The address this node accepts cluster members on (useful with port 0).
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster.as_ref().map(|cluster| cluster.address)
    }

    /// The failure that stopped the node, if it gave up on an actor.
    pub fn failure(&self) -> Option<NodeFailure> {
        self.failure.borrow().clone()
    }

    /// Resolves when the node gives up on an actor (its restart budget ran out). Hosts select on
    /// it beside their shutdown signal.
    pub async fn failed(&self) -> NodeFailure {
        let mut failure = self.failure.clone();
        loop {
            if let Some(failure) = failure.borrow_and_update().clone() {
                return failure;
            }
            if failure.changed().await.is_err() {
                // The supervisor is gone without reporting a failure: a clean stop.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops the REST API and the gRPC server, then the actors in reverse start order (each
    /// drains its mailbox first), and waits for them, then the stall detector's ticker. Stores
    /// are closed when the actors are gone.
    pub async fn shutdown(self) -> ShutdownReport {
        let started = Instant::now();
        if let Some(http) = self.http {
            http.stop(self.stop_timeout).await;
        }
        if let Some(grpc) = self.grpc {
            grpc.stop(self.stop_timeout).await;
        }
        let killed =
            stop_supervisor(&self.supervisor, self.supervisor_join, self.stop_timeout).await;
        self.stall_ticker.stop().await;
        drop(self.cluster);
        let report = ShutdownReport {
            killed,
            elapsed: started.elapsed(),
        };
        info!(node = %self.api.node_id, elapsed_ms = report.elapsed.as_millis() as u64, "node shut down");
        report
    }
}

/// How the register role reaches its pool: this node's own (a local slot), or a peer's over
/// HTTP or over the cluster.
fn pool_link(
    register: &RegisterRoleConfig,
    pool: Option<&ActorSlot<AdvertisementPoolMsg>>,
    cluster: Option<&NodeCluster>,
    clock: &Arc<dyn Clock>,
    call_timeout: Duration,
) -> Result<Arc<dyn PoolLink>, StartError> {
    match (&register.pool_link, pool) {
        (PoolLinkConfig::Cluster { peer, timeout }, _) => {
            let cluster = cluster.expect("validation requires a cluster for a cluster pool link");
            Ok(Arc::new(ClusterPoolLink::new(
                peer.clone(),
                cluster.handle.clone(),
                cluster.client(clock),
                *timeout,
            )))
        }
        (PoolLinkConfig::Local, Some(pool)) => {
            Ok(Arc::new(LocalPoolLink::new(pool.clone(), call_timeout)))
        }
        (PoolLinkConfig::Local, None) => {
            unreachable!("validation requires a peer role for a local pool link")
        }
        (
            PoolLinkConfig::Http {
                base_url,
                token,
                timeout,
                tls,
            },
            _,
        ) => {
            let credentials = |source| StartError::Credentials {
                link: "register's link to its peer",
                source,
            };
            let token = token.read().map_err(credentials)?;
            let pem = tls
                .as_ref()
                .map(|tls| tls.load())
                .transpose()
                .map_err(credentials)?;
            let link = HttpPoolLink::new_with_tls(base_url, &token, *timeout, pem.as_ref())
                .map_err(|source| StartError::PoolLink {
                    url: base_url.clone(),
                    source: Box::new(source),
                })?;
            Ok(Arc::new(link))
        }
    }
}

/// The ports of a peer's hub side: its replica store and its link to hubs (gRPC by default).
async fn hub_connection_parts(
    node_id: &NodeId,
    config: &HubConnectionConfig,
    overrides: &StoreOverrides,
    clock: &Arc<dyn Clock>,
    stalls: &Arc<StallDetector>,
) -> Result<HubConnectionParts, StartError> {
    let replica_store = match &overrides.replica_store {
        Some(store) => Arc::clone(store),
        None => stores::open_replica_store(&config.replica_dir).await?,
    };
    let link: Arc<dyn HubLink> = match &overrides.hub_link {
        Some(link) => Arc::clone(link),
        None => Arc::new(
            GrpcHubLink::new(node_id.clone(), config.advertised_address.clone())
                .with_clock(Arc::clone(clock))
                .with_credentials(hub_credentials(config)?),
        ),
    };
    Ok(HubConnectionParts {
        address: config.advertised_address.clone(),
        connection: config.connection.clone(),
        heartbeat: config.heartbeat.clone(),
        replica: config.replica.clone(),
        replica_store,
        link,
        stalls: Arc::clone(stalls),
    })
}

/// What the peer shows hubs: TLS for `https://` hubs, its bearer token.
fn hub_credentials(config: &HubConnectionConfig) -> Result<HubCredentials, StartError> {
    let credentials = |source| StartError::Credentials {
        link: "peer's connection to hubs",
        source,
    };
    let pem = config
        .tls
        .as_ref()
        .map(|tls| tls.load())
        .transpose()
        .map_err(credentials)?;
    let token = config
        .token
        .as_ref()
        .map(|token| token.read())
        .transpose()
        .map_err(credentials)?;
    HubCredentials::new(pem.as_ref(), token.as_deref()).map_err(credentials)
}

/// The hub's gRPC TLS material and the credentials it requires of peers.
fn hub_guard(
    node_id: &NodeId,
    hub: &HubRoleConfig,
) -> Result<(Option<ServerPem>, HubAuth), StartError> {
    let credentials = |source| StartError::Credentials {
        link: "hub's gRPC server",
        source,
    };
    let tls = hub
        .tls
        .as_ref()
        .map(|tls| tls.load())
        .transpose()
        .map_err(credentials)?;
    let certificates = if tls.as_ref().is_some_and(|pem| pem.client_ca.is_some()) {
        ClientCertificates::MustNamePeer
    } else {
        ClientCertificates::Ignored
    };
    let mut peers = Vec::with_capacity(hub.peers.len());
    for peer in &hub.peers {
        let token = peer
            .token
            .as_ref()
            .map(|token| token.read())
            .transpose()
            .map_err(credentials)?;
        peers.push((peer.id.to_string(), token));
    }
    let auth = HubAuth::new(peers, certificates);
    if auth.is_open() {
        warn!(node = %node_id, "gRPC callers are not authenticated: any client may open a session as any peer (configure hub.peers or hub.tls.client_ca_file)");
    }
    Ok((tls, auth))
}

/// The REST API's admin token and TLS configuration.
fn http_credentials(
    http: &HttpConfig,
) -> Result<(String, Option<Arc<rustls::ServerConfig>>), StartError> {
    let credentials = |source| StartError::Credentials {
        link: "REST API",
        source,
    };
    let admin_token = http.admin_token.read().map_err(credentials)?;
    let tls = match &http.tls {
        None => None,
        Some(tls) => Some(
            tls.load()
                .and_then(|pem| pem.rustls_config(&[b"http/1.1"]))
                .map_err(credentials)?,
        ),
    };
    Ok((admin_token, tls))
}

/// Waits until the hub's system register is loaded and validated. A register that failed
/// validation stops the start (FR-022); one still loading after `HUB_STARTUP_WAIT` (its store
/// unreachable) does not: the hub serves as soon as it can.
async fn await_register(
    node_id: &NodeId,
    authority: &ActorSlot<SystemRegisterAuthorityMsg>,
) -> Result<(), StartError> {
    let started = Instant::now();
    loop {
        let status = authority
            .call(SystemRegisterAuthorityMsg::Status, Duration::from_secs(5))
            .await;
        match status.map(|status| status.state) {
            Ok(RegisterState::Ready) => return Ok(()),
            Ok(RegisterState::Corrupt(reason)) => {
                return Err(StartError::SystemRegisterRefused(reason));
            }
            _ if started.elapsed() > HUB_STARTUP_WAIT => {
                warn!(node = %node_id, "system register still loading; serving gRPC anyway (the hub answers UNAVAILABLE until it is ready)");
                return Ok(());
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn stop_supervisor(
    supervisor: &ActorRef<NodeSupervisorMsg>,
    join: JoinHandle<()>,
    stop_timeout: Duration,
) -> Vec<ChildKind> {
    let per_child = stop_timeout.saturating_mul(2);
    let killed = match supervisor
        .call(NodeSupervisorMsg::Shutdown, Some(per_child * 2))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(killed)) => killed,
        // Already stopped (it gave up) or stuck: make sure it is gone.
        _ => {
            supervisor.stop(Some("shutdown".into()));
            Vec::new()
        }
    };
    if tokio::time::timeout(per_child * 2, join).await.is_err() {
        error!("node supervisor did not stop in time; killing it");
        supervisor.kill();
    }
    killed
}
