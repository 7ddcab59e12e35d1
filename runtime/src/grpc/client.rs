//! `GrpcHubLink`: the peer's `HubLink` over gRPC.
//!
//! One lazily connected channel per hub URL, cached (tonic reconnects it when the hub comes
//! back). Every call has a deadline: the one given, or the link's default for the calls that
//! take none (opening a push stream, disconnecting). Everything the hub sends is validated by
//! `herald-proto`'s conversions; an invalid answer is a refusal.
//!
//! Errors: `NOT_FOUND` (unknown session), and a heartbeat's `FAILED_PRECONDITION` (no session
//! at all) → `UnknownSession`; an incremental sync's `FAILED_PRECONDITION` (another history, a
//! diverged replica) → `NeedsFullSync`; other `FAILED_PRECONDITION` (a hub calling a hub),
//! `INVALID_ARGUMENT`, `PERMISSION_DENIED`, `UNAUTHENTICATED` → `Refused`; every other code,
//! transport errors and timeouts → `Unreachable`. It does not retry: the actors own the
//! backoff and the choice of hub.
//!
//! Credentials (`HubCredentials`): `https://` hubs are reached over TLS (the configured CA, or
//! the system's roots; a client certificate for mutual TLS), and every request carries the
//! peer's bearer token when it has one.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tracing::{debug, warn};

use herald_actors::TokioClock;
use herald_actors::ports::{Clock, HubLink, HubLinkError, SyncedEntries, error_chain};
use herald_messages::{
    BlueprintNotification, ConnectRequest, HeartbeatAck, HeartbeatRequest, HistoryId, HubEndpoint,
    MAX_DOCUMENT_BYTES, NodeId, SessionGrant, SessionId, SyncQuery, SyncScope, SystemRegisterEntry,
};
use herald_proto::convert::{self, WireError};
use herald_proto::v1;
use herald_proto::v1::central_node_connection_client::CentralNodeConnectionClient;
use herald_proto::v1::heartbeat_client::HeartbeatClient;
use herald_proto::v1::system_register_sync_client::SystemRegisterSyncClient;

use super::auth::AUTHORIZATION;
use crate::tls::{ClientPem, CredentialError};

/// Deadline of the calls `HubLink` gives none (DESIGN §9: hub deadlines are 30 s).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for a TCP connection to a hub: a dead hub is reported in this time at most,
/// whatever the call's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings while a stream is open, so a push stream to a vanished hub ends.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message accepted from a hub: an entry with the largest document, its metadata and
/// fields (tonic's default is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = MAX_DOCUMENT_BYTES + 64 * 1024;

/// The channel settings of every connection to a hub (connect timeout, `TCP_NODELAY`, HTTP/2
/// keep-alive). Public so that benchmarks measure raw clients on exactly these settings.
pub fn hub_endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT))
}

/// `hub_endpoint` over TLS for an `https://` URL: `credentials`' CA (or the system's roots)
/// and client certificate.
pub fn hub_endpoint_with(
    url: &str,
    credentials: &HubCredentials,
) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = hub_endpoint(url)?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    endpoint.tls_config(credentials.tls.clone())
}

/// What a peer shows hubs: the TLS settings of `https://` hubs and its bearer token.
#[derive(Clone)]
pub struct HubCredentials {
    tls: ClientTlsConfig,
    token: Option<MetadataValue<Ascii>>,
}

impl Default for HubCredentials {
    fn default() -> Self {
        Self {
            tls: ClientTlsConfig::new().with_native_roots(),
            token: None,
        }
    }
}

impl std::fmt::Debug for HubCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCredentials")
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl HubCredentials {
    /// Trusts `pem`'s CA (the system's roots without one) and presents its client certificate,
    /// when it has one; sends `token` with every request, when given.
    pub fn new(pem: Option<&ClientPem>, token: Option<&str>) -> Result<Self, CredentialError> {
        let mut tls = ClientTlsConfig::new();
        tls = match pem.and_then(|pem| pem.ca.as_ref()) {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            None => tls.with_native_roots(),
        };
        if let Some((cert, key)) = pem.and_then(|pem| pem.identity.as_ref()) {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let token = match token {
            None => None,
            Some(token) => {
                let mut value =
                    MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                        CredentialError::Unusable(
                            "the hub token cannot be sent in gRPC metadata (control characters?)"
                                .to_owned(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Self { tls, token })
    }

    /// `message` as a request carrying the bearer token.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert(AUTHORIZATION, token.clone());
        }
        request
    }
}

/// Reaches hubs over gRPC.
pub struct GrpcHubLink {
    peer_id: NodeId,
    advertised_address: String,
    clock: Arc<dyn Clock>,
    default_deadline: Duration,
    credentials: HubCredentials,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcHubLink {
    /// The link of peer `peer_id`, which hubs can reach at `advertised_address` (sent when a
    /// connect request names no address of its own).
    pub fn new(peer_id: NodeId, advertised_address: String) -> Self {
        Self {
            peer_id,
            advertised_address,
            clock: Arc::new(TokioClock::new()),
            default_deadline: DEFAULT_DEADLINE,
            credentials: HubCredentials::default(),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Shows hubs these credentials (TLS for `https://` hubs, a bearer token).
    pub fn with_credentials(mut self, credentials: HubCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Stamps requests with this clock's time instead of the system clock's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The deadline of the calls that take none (opening a push stream, disconnecting).
    pub fn with_default_deadline(mut self, deadline: Duration) -> Self {
        self.default_deadline = deadline;
        self
    }

    /// The hub's channel, created (not connected) on first use.
    fn channel(&self, hub: &HubEndpoint) -> Result<Channel, HubLinkError> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(&hub.url) {
            return Ok(channel.clone());
        }
        let endpoint = hub_endpoint_with(&hub.url, &self.credentials).map_err(|err| {
            HubLinkError::Refused(format!(
                "hub {} has an unusable URL {:?}: {}",
                hub.id,
                hub.url,
                error_chain(&err)
            ))
        })?;
        let channel = endpoint.connect_lazy();
        channels.insert(hub.url.clone(), channel.clone());
        Ok(channel)
    }

    fn sync_client(
        &self,
        hub: &HubEndpoint,
    ) -> Result<SystemRegisterSyncClient<Channel>, HubLinkError> {
        Ok(SystemRegisterSyncClient::new(self.channel(hub)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES))
    }
}

#[async_trait]
impl HubLink for GrpcHubLink {
    async fn connect(
        &self,
        hub: &HubEndpoint,
        request: ConnectRequest,
        deadline: Duration,
    ) -> Result<SessionGrant, HubLinkError> {
        let mut request = request;
        if request.address.is_empty() {
            request.address.clone_from(&self.advertised_address);
        }
        let wire = convert::central_node::connect_request_to_wire(&request, self.clock.now());
        let mut client = CentralNodeConnectionClient::new(self.channel(hub)?);
        let response = within(
            deadline,
            client.connect_to_central_node(self.timed(wire, deadline)),
        )
        .await?;
        let grant = convert::central_node::session_grant_from_wire(&response.into_inner())
            .map_err(|err| invalid_answer(hub, &err))?;
        debug!(hub = %hub.id, peer = %self.peer_id, session = %grant.session_id, "connected");
        Ok(grant)
    }

    async fn heartbeat(
        &self,
        hub: &HubEndpoint,
        beat: HeartbeatRequest,
        deadline: Duration,
    ) -> Result<HeartbeatAck, HubLinkError> {
        let wire = convert::heartbeat::heartbeat_to_wire(&beat);
        let mut client = HeartbeatClient::new(self.channel(hub)?);
        // FAILED_PRECONDITION: the hub holds no session of this peer (it restarted, or forgot
        // a silent peer): connect again, as for an unknown session.
        let send = async {
            client
                .send_heartbeat(self.timed(wire, deadline))
                .await
                .map_err(|status| match status.code() {
                    Code::FailedPrecondition => Status::not_found(status.message()),
                    _ => status,
                })
        };
        let response = within(deadline, send).await?;
        convert::heartbeat::heartbeat_ack_from_wire(&response.into_inner())
            .map_err(|err| invalid_answer(hub, &err))
    }

    /// Collects the stream, checking every entry, their order (versions strictly increasing,
    /// above the asked version), and that they belong to one history (the peer's, for an
    /// incremental sync). The deadline covers the whole stream.
    async fn sync(
        &self,
        hub: &HubEndpoint,
        query: SyncQuery,
        deadline: Duration,
    ) -> Result<SyncedEntries, HubLinkError> {
        let wire = convert::system_register::sync_request_to_wire(&query, self.clock.now());
        let mut client = self.sync_client(hub)?;
        let collect = async {
            let response = match query.scope {
                SyncScope::Full => client
                    .full_sync(self.timed(wire, deadline))
                    .await
                    .map_err(link_error),
                // The hub refuses an incremental sync the peer cannot follow (another history,
                // a diverged replica): a full sync is needed.
                SyncScope::After(_) => client
                    .incremental_sync(self.timed(wire, deadline))
                    .await
                    .map_err(|status| match status.code() {
                        Code::FailedPrecondition => {
                            HubLinkError::NeedsFullSync(status.message().to_owned())
                        }
                        _ => link_error(status),
                    }),
            };
            let mut stream = match response {
                Ok(response) => response.into_inner(),
                Err(err) => return Err(err),
            };
            let mut check = EntryCheck::new(&query);
            let mut synced = SyncedEntries::default();
            while let Some(wire_entry) = stream.message().await.map_err(link_error)? {
                let received =
                    convert::system_register::entry_from_wire(wire_entry).map_err(|err| {
                        HubLinkError::Refused(format!(
                            "hub {} sent an invalid entry (#{}): {err}",
                            hub.id,
                            synced.entries.len() + 1
                        ))
                    })?;
                check
                    .accept(&received.history_id, &received.entry)
                    .map_err(|reason| HubLinkError::Refused(format!("hub {}: {reason}", hub.id)))?;
                synced.digest = received.digest;
                synced.entries.push(received.entry);
            }
            Ok::<_, HubLinkError>(synced)
        };
        let synced = tokio::time::timeout(deadline, collect)
            .await
            .map_err(|_| timed_out(deadline))??;
        debug!(hub = %hub.id, scope = ?query.scope, entries = synced.entries.len(), "synced");
        Ok(synced)
    }

    /// The stream ends when the hub ends it, the connection breaks, or the hub sends an
    /// invalid notification (logged).
    async fn subscribe(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<BoxStream<'static, BlueprintNotification>, HubLinkError> {
        let wire = convert::system_register::subscription_request_to_wire(
            peer_id,
            session_id,
            self.clock.now(),
        );
        let mut client = self.sync_client(hub)?;
        // No grpc-timeout on the request: it would bound the whole stream.
        let response = within(
            self.default_deadline,
            client.subscribe_to_push_notifications(self.credentials.request(wire)),
        )
        .await?;
        let hub_id = hub.id.clone();
        let notifications = response
            .into_inner()
            .map(move |item| match item {
                Ok(wire) => match convert::system_register::notification_from_wire(&wire) {
                    Ok(notification) => Some(notification),
                    Err(err) => {
                        warn!(hub = %hub_id, %err, "invalid push notification; ending the subscription");
                        None
                    }
                },
                Err(status) => {
                    debug!(hub = %hub_id, code = ?status.code(), message = status.message(), "push stream ended");
                    None
                }
            })
            .take_while(|notification| ready(notification.is_some()))
            .filter_map(ready)
            .boxed();
        Ok(notifications)
    }

    async fn disconnect(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<(), HubLinkError> {
        let wire = convert::central_node::disconnect_request_to_wire(
            peer_id,
            session_id,
            v1::DisconnectReason::ClientRequest,
            self.clock.now(),
        );
        let deadline = self.default_deadline;
        let mut client = CentralNodeConnectionClient::new(self.channel(hub)?);
        let response = within(
            deadline,
            client.disconnect_from_central_node(self.timed(wire, deadline)),
        )
        .await?
        .into_inner();
        if !response.success {
            return Err(HubLinkError::Refused(format!(
                "hub {} did not end the session: {}",
                hub.id, response.message
            )));
        }
        Ok(())
    }
}

/// What a sync's entries must satisfy together.
struct EntryCheck {
    /// Every entry must be above this version.
    after: u64,
    /// The history every entry must carry: the peer's for an incremental sync, else the first
    /// entry's.
    history: Option<HistoryId>,
}

impl EntryCheck {
    fn new(query: &SyncQuery) -> Self {
        match query.scope {
            SyncScope::Full => Self {
                after: 0,
                history: None,
            },
            SyncScope::After(version) => Self {
                after: version,
                history: query.history_id.clone(),
            },
        }
    }

    fn accept(&mut self, history: &HistoryId, entry: &SystemRegisterEntry) -> Result<(), String> {
        if entry.version <= self.after {
            return Err(format!(
                "entry version {} is not above {}: entries must come in increasing versions",
                entry.version, self.after
            ));
        }
        match &self.history {
            Some(expected) if expected != history => {
                return Err(format!(
                    "entry version {} belongs to history {history}, not {expected}",
                    entry.version
                ));
            }
            Some(_) => {}
            None => self.history = Some(history.clone()),
        }
        self.after = entry.version;
        Ok(())
    }
}

impl GrpcHubLink {
    /// A request carrying its deadline to the hub (`grpc-timeout`) and the bearer token.
    fn timed<T>(&self, message: T, deadline: Duration) -> Request<T> {
        let mut request = self.credentials.request(message);
        request.set_timeout(deadline);
        request
    }
}

/// Awaits a call for at most `deadline`.
async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, HubLinkError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result.map_err(link_error),
        Err(_) => Err(timed_out(deadline)),
    }
}

fn timed_out(deadline: Duration) -> HubLinkError {
    HubLinkError::TimedOut(format!("no answer within {deadline:?}"))
}

/// A failed call, without tonic's type.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {detail}")]
struct CallFailed {
    code: Code,
    detail: String,
}

fn link_error(status: Status) -> HubLinkError {
    match status.code() {
        Code::NotFound => HubLinkError::UnknownSession(status.message().to_owned()),
        Code::FailedPrecondition
        | Code::InvalidArgument
        | Code::PermissionDenied
        | Code::Unauthenticated => HubLinkError::Refused(status.message().to_owned()),
        // The request's own deadline (`grpc-timeout`) ran out, at the hub or here.
        Code::DeadlineExceeded => HubLinkError::TimedOut(status.message().to_owned()),
        Code::Cancelled if status.message().contains("Timeout expired") => {
            HubLinkError::TimedOut(status.message().to_owned())
        }
        code => HubLinkError::Unreachable(Box::new(CallFailed {
            code,
            detail: error_chain(&status),
        })),
    }
}

fn invalid_answer(hub: &HubEndpoint, err: &WireError) -> HubLinkError {
    HubLinkError::Refused(format!(
        "hub {} answered with an invalid message: {err}",
        hub.id
    ))
}

#[cfg(test)]
mod tests {
    use herald_messages::{BlueprintId, EntryKind, Timestamp};

    use super::*;

    fn entry(version: u64) -> SystemRegisterEntry {
        SystemRegisterEntry {
            blueprint_id: BlueprintId::seed(),
            version,
            kind: EntryKind::Published,
            document: "{}".into(),
            published_at: Timestamp::EPOCH,
            published_by: "hub".into(),
            is_active: true,
            transaction_id: "t".into(),
            checksum: SystemRegisterEntry::checksum_of(b"{}"),
            metadata: Default::default(),
            signature: None,
        }
    }

    fn request(scope: SyncScope, history: Option<HistoryId>) -> SyncQuery {
        SyncQuery {
            peer_id: NodeId::parse("peer-1").unwrap(),
            session_id: SessionId::parse("s").unwrap(),
            scope,
            history_id: history,
            digest: None,
        }
    }

    #[test]
    fn statuses_map_to_what_the_peer_should_do() {
        assert!(matches!(
            link_error(Status::not_found("unknown session")),
            HubLinkError::UnknownSession(_)
        ));
        for status in [
            Status::failed_precondition("hubs do not connect to hubs"),
            Status::invalid_argument("bad"),
            Status::permission_denied("no"),
            Status::unauthenticated("token"),
        ] {
            assert!(matches!(link_error(status), HubLinkError::Refused(_)));
        }
        for status in [
            Status::unavailable("down"),
            Status::internal("bug"),
            Status::unknown("transport"),
            Status::resource_exhausted("busy"),
            Status::cancelled("the peer went away"),
        ] {
            assert!(matches!(link_error(status), HubLinkError::Unreachable(_)));
        }
        // A deadline that ran out: the hub may be a black hole, and the ring moves on at once.
        for status in [
            Status::deadline_exceeded("slow"),
            Status::cancelled("Timeout expired"),
        ] {
            assert!(matches!(link_error(status), HubLinkError::TimedOut(_)));
        }
    }

    #[test]
    fn a_refusal_keeps_the_hubs_reason() {
        let HubLinkError::Refused(reason) = link_error(Status::failed_precondition(
            "node x is a hub: hubs do not connect to hubs",
        )) else {
            panic!("not a refusal");
        };
        assert!(reason.contains("hubs do not connect to hubs"));
    }

    #[test]
    fn entries_must_increase_and_share_one_history() {
        let ours = HistoryId::from_bytes([1; 16]);
        let theirs = HistoryId::from_bytes([2; 16]);
        let mut full = EntryCheck::new(&request(SyncScope::Full, Some(ours.clone())));
        assert!(
            full.accept(&theirs, &entry(1)).is_ok(),
            "a full sync takes the hub's history"
        );
        assert!(full.accept(&theirs, &entry(3)).is_ok());
        assert!(full.accept(&theirs, &entry(3)).is_err(), "repeated version");
        assert!(
            full.accept(&ours, &entry(4)).is_err(),
            "history changed mid-stream"
        );

        let mut incremental = EntryCheck::new(&request(SyncScope::After(5), Some(ours.clone())));
        assert!(
            incremental.accept(&ours, &entry(5)).is_err(),
            "not above the asked version"
        );
        assert!(
            incremental.accept(&theirs, &entry(6)).is_err(),
            "another history"
        );
        assert!(incremental.accept(&ours, &entry(6)).is_ok());
    }

    #[tokio::test]
    async fn unusable_urls_are_refused() {
        let link = GrpcHubLink::new(NodeId::parse("peer-1").unwrap(), String::new());
        let hub = HubEndpoint {
            id: NodeId::parse("hub-1").unwrap(),
            url: "not a url".into(),
            priority: 0,
        };
        assert!(matches!(link.channel(&hub), Err(HubLinkError::Refused(_))));
    }
}
