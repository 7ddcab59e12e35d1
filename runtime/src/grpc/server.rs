//! The hub's gRPC server: `HubGrpc` implements the services `CentralNodeConnection`,
//! `Heartbeat` and `SystemRegisterSync` over the `SystemRegisterAuthority`'s slot;
//! `GrpcServer` runs them on a TCP listener (a `ServerTask`, like the REST API), `serve` on any
//! incoming stream (a simulated network's listener).
//!
//! Every handler validates and converts the request (`INVALID_ARGUMENT` on a `WireError`),
//! makes one call to the authority with the configured deadline, and maps the answer. Sync
//! streams send the entries the authority listed, converted as the client reads them
//! (documents are `Bytes`: nothing is copied). Push and heartbeat streams are long-lived: they
//! end when the server stops, so a graceful stop never waits on them.
//!
//! Before anything else, every request (every beat of a heartbeat stream) is admitted: its
//! credentials must let it speak for the peer id it names (`grpc::auth`: `UNAUTHENTICATED`),
//! then that peer must be within its request rate (`grpc::limits`: `RESOURCE_EXHAUSTED`). The
//! server runs over TLS when configured (mutual when it names client CAs) and caps the HTTP/2
//! streams of one connection (`ServeOptions`).
//!
//! Heartbeats and `GetCentralNodeStatus` are answered from the authority's published view
//! (`HubView`, when given with `with_view`); heartbeats by the same rule the authority
//! applies (`HeartbeatBasis::answer`), and the authority records them afterwards: a
//! heartbeat never waits for a publication in flight.
//!
//! It decides nothing about sessions or versions (the authority does).

use std::future::{Future, ready};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use ractor::RpcReplyPort;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpIncoming};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, Span, debug, debug_span, error};

use herald_actors::ports::{BoxError, Clock, error_chain};
use herald_actors::{ActorSlot, HubView, SlotError, View};
use herald_messages::{
    AuthorityError, NodeId, SyncScope, SystemRegisterAuthorityMsg as AuthorityMsg,
};
use herald_proto::convert::{self, WireError};
use herald_proto::v1;
use herald_proto::v1::central_node_connection_server::{
    CentralNodeConnection, CentralNodeConnectionServer,
};
use herald_proto::v1::heartbeat_server::{Heartbeat, HeartbeatServer};
use herald_proto::v1::system_register_sync_server::{SystemRegisterSync, SystemRegisterSyncServer};

use super::auth::{Caller, HubAuth};
use super::limits::{HubLimits, PeerRateLimiter};
use crate::server::ServerTask;
use crate::tls::ServerPem;

/// Heartbeat acknowledgements buffered per `MonitorHeartbeat` stream: one beat is answered
/// before the next is read, so a handful is plenty.
const MONITOR_BUFFER: usize = 4;
/// Most characters of an unvalidated peer id put in a span.
const TRACED_PEER_CHARS: usize = 64;

/// The hub's three gRPC services, over its authority. Cheap to clone.
#[derive(Clone)]
pub struct HubGrpc {
    inner: Arc<HubInner>,
    guard: Arc<Guard>,
}

/// What every request passes before it is served.
#[derive(Default)]
struct Guard {
    auth: HubAuth,
    /// `None`: no rate limit.
    limiter: Option<PeerRateLimiter>,
}

struct HubInner {
    authority: ActorSlot<AuthorityMsg>,
    hub_id: NodeId,
    clock: Arc<dyn Clock>,
    call_timeout: Duration,
    /// Set once: long-lived streams end.
    closing: watch::Sender<bool>,
    /// The authority's published view: heartbeats are answered from it when set.
    view: Option<View<HubView>>,
}

impl HubGrpc {
    /// Services answering for hub `hub_id` through `authority`; each call to the authority
    /// waits at most `call_timeout` (then `UNAVAILABLE`). `clock` checks peers' timestamps.
    pub fn new(
        authority: ActorSlot<AuthorityMsg>,
        hub_id: NodeId,
        clock: Arc<dyn Clock>,
        call_timeout: Duration,
    ) -> Self {
        let (closing, _) = watch::channel(false);
        Self {
            inner: Arc::new(HubInner {
                authority,
                hub_id,
                clock,
                call_timeout,
                closing,
                view: None,
            }),
            guard: Arc::new(Guard::default()),
        }
    }

    /// Answers heartbeats from the authority's published view instead of its mailbox (the
    /// authority records them afterwards), so a heartbeat never waits for a publication in
    /// flight.
    pub fn with_view(self, view: View<HubView>) -> Self {
        let inner = HubInner {
            authority: self.inner.authority.clone(),
            hub_id: self.inner.hub_id.clone(),
            clock: Arc::clone(&self.inner.clock),
            call_timeout: self.inner.call_timeout,
            closing: self.inner.closing.clone(),
            view: Some(view),
        };
        Self {
            inner: Arc::new(inner),
            guard: self.guard,
        }
    }

    /// Requires these credentials of every caller (by default anyone may call).
    pub fn with_auth(mut self, auth: HubAuth) -> Self {
        self.guard = Arc::new(Guard {
            auth,
            limiter: self.guard_limiter(),
        });
        self
    }

    /// Limits each peer's request rate (by default there is no limit).
    pub fn with_limits(mut self, limits: &HubLimits) -> Self {
        self.guard = Arc::new(Guard {
            auth: self.guard.auth.clone(),
            limiter: Some(PeerRateLimiter::new(limits)),
        });
        self
    }

    fn guard_limiter(&self) -> Option<PeerRateLimiter> {
        self.guard.limiter.as_ref().map(PeerRateLimiter::renewed)
    }

    /// Lets a request in when its credentials may speak for `peer_id` (`UNAUTHENTICATED`
    /// otherwise) and that peer is within its rate (`RESOURCE_EXHAUSTED` otherwise). Nothing
    /// is validated or asked of the authority before this.
    fn admit<T>(&self, request: &Request<T>, peer_id: &str) -> Result<(), Status> {
        let caller = HubAuth::caller(request);
        self.admit_caller(&caller, peer_id)
    }

    fn admit_caller(&self, caller: &Caller, peer_id: &str) -> Result<(), Status> {
        if let Err(refusal) = self.guard.auth.check(caller, peer_id) {
            metrics::counter!("herald_hub_unauthenticated_total").increment(1);
            return Err(refusal);
        }
        if let Some(limiter) = &self.guard.limiter
            && let Err(exhausted) = limiter.admit(peer_id)
        {
            metrics::counter!("herald_hub_rate_limited_total").increment(1);
            return Err(Status::resource_exhausted(format!(
                "peer {} is over its request rate; retry in {} ms",
                traced_peer(peer_id),
                exhausted.retry_after.as_millis().max(1)
            )));
        }
        Ok(())
    }

    /// Ends every push and heartbeat stream, now and as soon as a new one opens: the server
    /// is stopping.
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Resolves when the streams are to end.
    fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.inner.closing.subscribe();
        async move {
            // An error means the services are gone: end the stream too.
            let _ = closing.wait_for(|closed| *closed).await;
        }
    }

    fn span(&self, rpc: &'static str, peer: &str) -> Span {
        debug_span!("grpc", node = %self.inner.hub_id, rpc, peer = traced_peer(peer))
    }

    /// One call to the authority; a slot that cannot deliver or answer in time is `UNAVAILABLE`.
    async fn ask<T: Send + 'static>(
        &self,
        request: impl FnOnce(RpcReplyPort<T>) -> AuthorityMsg,
    ) -> Result<T, Status> {
        self.inner
            .authority
            .call(request, self.inner.call_timeout)
            .await
            .map_err(slot_status)
    }

    /// One call to the authority, whose refusal becomes the status that tells the caller why.
    async fn ask_authority<T: Send + 'static>(
        &self,
        request: impl FnOnce(RpcReplyPort<Result<T, AuthorityError>>) -> AuthorityMsg,
    ) -> Result<T, Status> {
        self.ask(request).await?.map_err(authority_status)
    }

    async fn answer_heartbeat(
        &self,
        wire: &v1::HeartbeatMessage,
    ) -> Result<v1::HeartbeatAcknowledgement, Status> {
        let received = Instant::now();
        let beat = convert::heartbeat::heartbeat_from_wire(wire, self.inner.clock.now())
            .map_err(wire_status)?;
        let ack = match &self.inner.view {
            // From the authority's last published view: never behind a publication in
            // flight. The authority records the heartbeat when it gets to it.
            Some(view) => {
                let now = self.inner.clock.now();
                let ack = view
                    .latest()
                    .heartbeat
                    .answer(&beat, now)
                    .map_err(authority_status)?;
                let seen = AuthorityMsg::HeartbeatSeen {
                    beat,
                    at: now,
                    action: ack.action,
                };
                if let Err(err) = self.inner.authority.cast(seen) {
                    debug!(%err, "heartbeat answered but not recorded");
                }
                ack
            }
            None => {
                self.ask_authority(|reply| AuthorityMsg::Heartbeat(beat, reply))
                    .await?
            }
        };
        Ok(convert::heartbeat::heartbeat_ack_to_wire(
            &ack,
            received.elapsed(),
        ))
    }

    /// The entries of a sync for the peer's session: `full`, the latest entry of every
    /// blueprint; else those after the peer's version (refused with `FAILED_PRECONDITION` when
    /// the peer must sync in full). Each entry carries the register's digest at its version.
    async fn sync(
        &self,
        wire: &v1::SyncRequest,
        full: bool,
    ) -> Result<Response<EntryStream>, Status> {
        let fields = convert::system_register::sync_request_from_wire(wire).map_err(wire_status)?;
        let limit = fields.max_blueprints.unwrap_or(usize::MAX);
        let after = fields.last_known_version;
        let scope = if full {
            SyncScope::Full
        } else {
            SyncScope::After(after)
        };
        let query = fields.into_query(scope);
        let set = self
            .ask_authority(|reply| AuthorityMsg::Entries { query, reply })
            .await?;
        debug!(
            full,
            after,
            entries = set.entries.len().min(limit),
            version = set.version,
            "sync"
        );
        let history = set.history_id;
        let digests = set
            .digests
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat(None));
        let entries =
            set.entries
                .into_iter()
                .zip(digests)
                .take(limit)
                .map(move |(entry, digest)| {
                    Ok(convert::system_register::entry_to_wire(
                        &entry, &history, digest,
                    ))
                });
        Ok(Response::new(stream::iter(entries).boxed()))
    }
}

type EntryStream = BoxStream<'static, Result<v1::SystemRegisterEntry, Status>>;

#[tonic::async_trait]
impl CentralNodeConnection for HubGrpc {
    async fn connect_to_central_node(
        &self,
        request: Request<v1::ConnectRequest>,
    ) -> Result<Response<v1::ConnectionResponse>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("ConnectToCentralNode", &wire.peer_id);
        async move {
            let connect =
                convert::central_node::connect_request_from_wire(&wire).map_err(wire_status)?;
            let grant = self
                .ask_authority(|reply| AuthorityMsg::Connect(connect, reply))
                .await?;
            Ok(Response::new(convert::central_node::session_grant_to_wire(
                &grant,
            )))
        }
        .instrument(span)
        .await
        .inspect_err(log_refusal)
    }

    async fn disconnect_from_central_node(
        &self,
        request: Request<v1::DisconnectRequest>,
    ) -> Result<Response<v1::DisconnectionResponse>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("DisconnectFromCentralNode", &wire.peer_id);
        async move {
            let query =
                convert::central_node::disconnect_request_from_wire(&wire).map_err(wire_status)?;
            debug!(reason = query.reason.as_str_name(), "disconnect");
            self.ask_authority(|reply| AuthorityMsg::Disconnect {
                peer_id: query.peer_id,
                session_id: query.session_id,
                reply,
            })
            .await?;
            Ok(Response::new(v1::DisconnectionResponse {
                success: true,
                message: "disconnected".to_owned(),
                disconnected_at: convert::timestamp_to_wire(self.inner.clock.now()),
            }))
        }
        .instrument(span)
        .await
        .inspect_err(log_refusal)
    }

    async fn get_central_node_status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::CentralNodeStatus>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("GetCentralNodeStatus", &wire.peer_id);
        async move {
            let query =
                convert::central_node::status_request_from_wire(&wire).map_err(wire_status)?;
            let (status, peers) = match &self.inner.view {
                // One snapshot: the status and the peers agree.
                Some(view) => {
                    let hub = view.latest();
                    (hub.status.clone(), hub.peers.clone())
                }
                None => {
                    let status = self.ask(AuthorityMsg::Status).await?;
                    (status, self.ask(AuthorityMsg::Peers).await?)
                }
            };
            let peers = if query.include_peer_list {
                peers
            } else {
                Vec::new()
            };
            let now = self.inner.clock.now();
            Ok(Response::new(convert::central_node::hub_status_to_wire(
                &status, &peers, now,
            )))
        }
        .instrument(span)
        .await
        .inspect_err(log_refusal)
    }
}

#[tonic::async_trait]
impl Heartbeat for HubGrpc {
    type MonitorHeartbeatStream = BoxStream<'static, Result<v1::HeartbeatAcknowledgement, Status>>;

    async fn send_heartbeat(
        &self,
        request: Request<v1::HeartbeatMessage>,
    ) -> Result<Response<v1::HeartbeatAcknowledgement>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("SendHeartbeat", &wire.peer_id);
        self.answer_heartbeat(&wire)
            .instrument(span)
            .await
            .map(Response::new)
            .inspect_err(log_refusal)
    }

    /// Answers each heartbeat of the stream like `SendHeartbeat`; the first refusal ends it.
    async fn monitor_heartbeat(
        &self,
        request: Request<Streaming<v1::HeartbeatMessage>>,
    ) -> Result<Response<Self::MonitorHeartbeatStream>, Status> {
        // The credentials are the stream's; each beat names its peer and is admitted alone.
        let caller = HubAuth::caller(&request);
        let mut beats = request.into_inner();
        let (answers, answered) = mpsc::channel(MONITOR_BUFFER);
        let hub = self.clone();
        let closed = self.closed();
        let span = self.span("MonitorHeartbeat", "");
        tokio::spawn(
            async move {
                tokio::pin!(closed);
                loop {
                    let next = tokio::select! {
                        () = &mut closed => break,
                        next = beats.message() => next,
                    };
                    let answer = match next {
                        Ok(Some(beat)) => match hub.admit_caller(&caller, &beat.peer_id) {
                            Ok(()) => hub.answer_heartbeat(&beat).await,
                            Err(refusal) => Err(refusal),
                        },
                        Ok(None) => break,
                        Err(status) => {
                            debug!(code = ?status.code(), "heartbeat stream broke");
                            break;
                        }
                    };
                    let refused = answer.is_err();
                    if let Err(status) = &answer {
                        log_refusal(status);
                    }
                    if answers.send(answer).await.is_err() || refused {
                        break;
                    }
                }
            }
            .instrument(span),
        );
        let acknowledgements = ReceiverStream::new(answered)
            .take_until(self.closed())
            .boxed();
        Ok(Response::new(acknowledgements))
    }

    async fn get_heartbeat_status(
        &self,
        request: Request<v1::HeartbeatStatusRequest>,
    ) -> Result<Response<v1::HeartbeatStatus>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("GetHeartbeatStatus", &wire.peer_id);
        async move {
            let query = convert::session_query_from_wire(&wire.peer_id, &wire.session_id)
                .map_err(wire_status)?;
            let status = self
                .ask_authority(|reply| AuthorityMsg::HeartbeatStatus {
                    peer_id: query.peer_id,
                    session_id: query.session_id,
                    reply,
                })
                .await?;
            Ok(Response::new(convert::heartbeat::heartbeat_status_to_wire(
                &status,
            )))
        }
        .instrument(span)
        .await
        .inspect_err(log_refusal)
    }
}

#[tonic::async_trait]
impl SystemRegisterSync for HubGrpc {
    type FullSyncStream = EntryStream;
    type IncrementalSyncStream = EntryStream;
    type SubscribeToPushNotificationsStream =
        BoxStream<'static, Result<v1::BlueprintNotification, Status>>;

    async fn full_sync(
        &self,
        request: Request<v1::SyncRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("FullSync", &wire.peer_id);
        self.sync(&wire, true)
            .instrument(span)
            .await
            .inspect_err(log_refusal)
    }

    async fn incremental_sync(
        &self,
        request: Request<v1::SyncRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("IncrementalSync", &wire.peer_id);
        self.sync(&wire, false)
            .instrument(span)
            .await
            .inspect_err(log_refusal)
    }

    /// Forwards the subscription's queue, filtered; it ends when the authority drops the
    /// subscriber (a new session, a slow reader) or the server stops.
    async fn subscribe_to_push_notifications(
        &self,
        request: Request<v1::SubscriptionRequest>,
    ) -> Result<Response<Self::SubscribeToPushNotificationsStream>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("SubscribeToPushNotifications", &wire.peer_id);
        async move {
            let query = convert::system_register::subscription_request_from_wire(&wire)
                .map_err(wire_status)?;
            let subscription = self
                .ask_authority(|reply| AuthorityMsg::Subscribe {
                    peer_id: query.peer_id,
                    session_id: query.session_id,
                    reply,
                })
                .await?;
            debug!("subscribed");
            let filter = query.filter;
            let notifications = ReceiverStream::new(subscription.notifications)
                .filter(move |notification| ready(filter.matches(notification)))
                .map(|notification| {
                    Ok(convert::system_register::notification_to_wire(
                        &notification,
                    ))
                })
                .take_until(self.closed())
                .boxed();
            Ok(Response::new(notifications))
        }
        .instrument(span)
        .await
        .inspect_err(log_refusal)
    }

    async fn get_sync_checkpoint(
        &self,
        request: Request<v1::CheckpointRequest>,
    ) -> Result<Response<v1::SyncCheckpoint>, Status> {
        self.admit(&request, &request.get_ref().peer_id)
            .inspect_err(log_refusal)?;
        let wire = request.into_inner();
        let span = self.span("GetSyncCheckpoint", &wire.peer_id);
        async move {
            let query = convert::session_query_from_wire(&wire.peer_id, &wire.session_id)
                .map_err(wire_status)?;
            let checkpoint = self
                .ask_authority(|reply| AuthorityMsg::Checkpoint {
                    peer_id: query.peer_id,
                    session_id: query.session_id,
                    reply,
                })
                .await?;
            Ok(Response::new(convert::system_register::checkpoint_to_wire(
                &checkpoint,
            )))
        }
        .instrument(span)
        .await
        .inspect_err(log_refusal)
    }
}

/// The gRPC server failed (the listener broke).
#[derive(Debug, thiserror::Error)]
#[error("gRPC server failed")]
pub struct ServeError(#[source] BoxError);

/// How the server runs: TLS (mutual when it names client CAs) and the HTTP/2 streams one
/// connection may open at once.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub tls: Option<ServerPem>,
    /// `None`: no cap (HTTP/2 then lets a client open as many as it likes).
    pub max_concurrent_streams: Option<u32>,
}

impl ServeOptions {
    /// The options of a hub configured with `tls` and `limits`.
    pub fn new(tls: Option<ServerPem>, limits: &HubLimits) -> Self {
        Self {
            tls,
            max_concurrent_streams: Some(limits.max_concurrent_streams),
        }
    }

    fn tls_config(&self) -> Option<ServerTlsConfig> {
        let pem = self.tls.as_ref()?;
        let config = ServerTlsConfig::new().identity(Identity::from_pem(&pem.cert, &pem.key));
        Some(match &pem.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        })
    }

    fn builder(&self) -> Result<tonic::transport::Server, ServeError> {
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls_config() {
            builder = builder
                .tls_config(tls)
                .map_err(|err| ServeError(Box::new(err)))?;
        }
        Ok(builder.max_concurrent_streams(self.max_concurrent_streams))
    }
}

/// Serves the hub's services on `incoming` until `shutdown` resolves; then ends the long-lived
/// streams, stops accepting and waits for open calls to finish.
pub async fn serve<I, IO, IE>(
    incoming: I,
    hub: HubGrpc,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    I: futures::Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<BoxError>,
{
    serve_with(incoming, hub, &ServeOptions::default(), shutdown).await
}

/// `serve` with TLS and a cap on concurrent streams.
pub async fn serve_with<I, IO, IE>(
    incoming: I,
    hub: HubGrpc,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    I: futures::Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<BoxError>,
{
    let closing = hub.clone();
    let signal = async move {
        shutdown.await;
        closing.close_streams();
    };
    options
        .builder()?
        .add_service(CentralNodeConnectionServer::new(hub.clone()))
        .add_service(HeartbeatServer::new(hub.clone()))
        .add_service(SystemRegisterSyncServer::new(hub))
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|err| ServeError(Box::new(err)))
}

/// The hub's gRPC server, on a TCP listener.
pub struct GrpcServer;

impl GrpcServer {
    /// Listens on `addr` (port 0: any free port; see `ServerTask::addr`) with `TCP_NODELAY`,
    /// and serves `hub` from a task until it is stopped: then it ends the long-lived streams,
    /// stops accepting and lets open calls finish. Must be called inside a tokio runtime.
    pub async fn start(addr: SocketAddr, hub: HubGrpc) -> std::io::Result<ServerTask> {
        Self::start_with(addr, hub, ServeOptions::default())
            .await
            .map_err(|err| match err {
                GrpcStartError::Bind(err) => err,
                GrpcStartError::Tls(err) => std::io::Error::other(err),
            })
    }

    /// `start` with TLS and a cap on concurrent streams. The TLS material is checked before
    /// the listener is bound.
    pub async fn start_with(
        addr: SocketAddr,
        hub: HubGrpc,
        options: ServeOptions,
    ) -> Result<ServerTask, GrpcStartError> {
        // Fails here, not in the task, on material tonic cannot use.
        options.builder().map_err(GrpcStartError::Tls)?;
        let incoming = TcpIncoming::bind(addr)
            .map_err(GrpcStartError::Bind)?
            .with_nodelay(Some(true));
        let local_addr = incoming.local_addr().map_err(GrpcStartError::Bind)?;
        debug!(addr = %local_addr, tls = options.tls.is_some(), "gRPC server listening");
        Ok(ServerTask::spawn(
            "gRPC server",
            local_addr,
            move |stopping| async move {
                if let Err(err) = serve_with(incoming, hub, &options, stopping).await {
                    error!(addr = %local_addr, err = %error_chain(&err), "gRPC server failed");
                }
            },
        ))
    }
}

/// Why the gRPC server could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcStartError {
    #[error("cannot listen")]
    Bind(#[source] std::io::Error),
    #[error("unusable TLS configuration")]
    Tls(#[source] ServeError),
}

fn wire_status(err: WireError) -> Status {
    Status::invalid_argument(format!("invalid {err}"))
}

fn authority_status(err: AuthorityError) -> Status {
    let message = err.to_string();
    match err {
        AuthorityError::Invalid(_) => Status::invalid_argument(message),
        // FR-031: the message says hubs do not connect to hubs.
        AuthorityError::HubCaller(_)
        | AuthorityError::AlreadyDeprecated(_)
        | AuthorityError::NotConnected(_)
        | AuthorityError::NeedsFullSync(_) => Status::failed_precondition(message),
        AuthorityError::UnknownSession { .. } | AuthorityError::NotFound(_) => {
            Status::not_found(message)
        }
        AuthorityError::Unavailable(_) | AuthorityError::NotReady(_) => {
            Status::unavailable(message)
        }
    }
}

fn slot_status(err: SlotError) -> Status {
    Status::unavailable(err.to_string())
}

fn log_refusal(status: &Status) {
    debug!(code = ?status.code(), message = status.message(), "refused");
}

/// An unvalidated peer id, cut short for a span.
fn traced_peer(raw: &str) -> &str {
    match raw.char_indices().nth(TRACED_PEER_CHARS) {
        Some((cut, _)) => &raw[..cut],
        None => raw,
    }
}

#[cfg(test)]
mod tests {
    use herald_messages::{BlueprintId, ChildKind, InvalidInput, SessionId};
    use tonic::Code;

    use super::*;

    #[test]
    fn authority_errors_map_to_the_documented_codes() {
        let hub = NodeId::parse("hub-2").unwrap();
        let cases = [
            (
                AuthorityError::Invalid(InvalidInput::new("document", "bad")),
                Code::InvalidArgument,
            ),
            (
                AuthorityError::HubCaller(hub.clone()),
                Code::FailedPrecondition,
            ),
            (
                AuthorityError::UnknownSession {
                    peer: hub,
                    session: SessionId::parse("s").unwrap(),
                },
                Code::NotFound,
            ),
            (
                AuthorityError::NotFound(BlueprintId::seed()),
                Code::NotFound,
            ),
            (
                AuthorityError::AlreadyDeprecated(BlueprintId::seed()),
                Code::FailedPrecondition,
            ),
            (
                AuthorityError::Unavailable("down".into()),
                Code::Unavailable,
            ),
            (
                AuthorityError::NotReady("loading".into()),
                Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(authority_status(err.clone()).code(), code, "{err}");
        }
        let refusal = authority_status(AuthorityError::HubCaller(NodeId::parse("hub-2").unwrap()));
        assert!(
            refusal.message().contains("hubs do not connect to hubs"),
            "{}",
            refusal.message()
        );
    }

    #[test]
    fn slot_errors_and_wire_errors_map_to_their_codes() {
        let slot = SlotError::Timeout(ChildKind::SystemRegisterAuthority, Duration::from_secs(1));
        assert_eq!(slot_status(slot).code(), Code::Unavailable);
        let wire = wire_status(WireError::new("peer_id", "must be short"));
        assert_eq!(wire.code(), Code::InvalidArgument);
        assert_eq!(wire.message(), "invalid peer_id: must be short");
    }

    #[test]
    fn traced_peer_ids_are_cut_short() {
        assert_eq!(traced_peer("peer-1"), "peer-1");
        assert_eq!(
            traced_peer(&"é".repeat(100)).chars().count(),
            TRACED_PEER_CHARS
        );
    }
}
