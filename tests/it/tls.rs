//! TLS and credentials on every link, and the hub's per-peer limits (issue 10, deliverables 3
//! and 4), against real servers on loopback with throwaway certificates (`support::certs`):
//!
//! - gRPC: a hub over TLS serves a peer that trusts its CA and sends its token; a missing or
//!   wrong token, or another peer's, is `UNAUTHENTICATED` from a raw tonic client and changes
//!   nothing; a hub certificate from another CA, or plaintext to a TLS port, is refused; under
//!   mutual TLS only a client certificate from the peers' CA naming the peer gets in.
//! - Limits: a flood from one peer leaves another's heartbeats and syncs within their
//!   deadlines (the flood meets `RESOURCE_EXHAUSTED`); one connection holds at most
//!   `max_concurrent_streams` streams.
//! - HTTP: the REST API over HTTPS; the register's link to it pushes with the right CA and
//!   token, and is refused with another CA or a missing token; a register node feeds an HTTPS
//!   peer end to end.
//! - Redis: `rediss://` with the CA and a client certificate works; another CA, or no client
//!   certificate where Redis requires one, fails.
//! - MongoDB: `mongodb.tls` (CA, client certificate-and-key file) through a TLS front of the
//!   MongoDB-wire stand-in works; another CA, or no client certificate, fails; a CA file that
//!   is not PEM is refused at open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

use herald::parts::actors::TokioClock;
use herald::parts::actors::ports::{
    AdBatch, AdStore, BatchScope, BlueprintStore, Clock, HubLink, HubLinkError, PoolLink,
    PoolLinkError,
};
use herald::parts::actors::testing::InMemoryBlueprintStore;
use herald::parts::messages::{
    AdSource, Advertisement, BlueprintId, ConnectRequest, HeartbeatRequest, HubEndpoint, NodeType,
    PoolMeta, PublishRequest, SessionGrant, SyncQuery, SyncScope, SyncState, Timestamp,
};
use herald::parts::runtime::config::{ClientTls, MongoConfig, MongoTls};
use herald::parts::runtime::grpc::proto::tonic::metadata::MetadataValue;
use herald::parts::runtime::grpc::proto::tonic::transport::Channel;
use herald::parts::runtime::grpc::proto::tonic::{Code, Request};
use herald::parts::runtime::grpc::proto::v1;
use herald::parts::runtime::grpc::proto::v1::central_node_connection_client::CentralNodeConnectionClient;
use herald::parts::runtime::grpc::proto::v1::heartbeat_client::HeartbeatClient;
use herald::parts::runtime::grpc::proto::v1::system_register_sync_client::SystemRegisterSyncClient;
use herald::parts::runtime::grpc::{GrpcHubLink, HubCredentials, hub_endpoint_with};
use herald::parts::runtime::links::HttpPoolLink;
use herald::parts::runtime::stores::{MongoAdStore, RedisAdStore, RedisBlueprintStore};
use herald::parts::runtime::tls::{ClientPem, IdentityFiles};
use herald::{
    AdInput, BulkAdvertise, NewRegister, Node, NodeHandle, NodeId, RawClientTls, RawHubConfig,
    RawNodeConfig, RawPeerConfig, RawPeerCredential, RawRegisterConfig, RawServerTls, RegisterId,
    StoreOverrides,
};

use crate::support::certs::{Issued, Pki};
use crate::support::free_port;
use crate::support::mongo::{MongoServer, skip_unless_own_server};
use crate::support::redis::RedisServer;
use crate::support::tls_terminator::TlsTerminator;
use crate::support::wait_until;

const DEADLINE: Duration = Duration::from_secs(10);
const TOKEN_A: &str = "peer-a-t0ken";
const TOKEN_B: &str = "peer-b-t0ken";

// ---- harness ----

/// A hub node on an in-memory register, gRPC on a free loopback port.
struct TestHub {
    handle: NodeHandle,
    _dir: TempDir,
}

impl TestHub {
    async fn start(hub: RawHubConfig) -> TestHub {
        let dir = TempDir::new().unwrap();
        let config = RawNodeConfig {
            node_id: "hub-1".into(),
            data_dir: Some(dir.path().into()),
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                ..hub
            }),
            ..RawNodeConfig::default()
        }
        .validate()
        .unwrap();
        let overrides = StoreOverrides {
            blueprint_store: Some(Arc::new(InMemoryBlueprintStore::single_writer())),
            ..StoreOverrides::default()
        };
        let handle = Node::start_with(config, overrides).await.unwrap();
        TestHub { handle, _dir: dir }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.handle.grpc_addr().unwrap())
    }

    fn endpoint(&self, scheme: &str) -> HubEndpoint {
        HubEndpoint {
            id: node("hub-1"),
            url: self.url(scheme),
            priority: 0,
        }
    }

    async fn sessions(&self) -> usize {
        self.handle.hub_peers().await.unwrap().len()
    }

    async fn publish(&self, count: usize) {
        for n in 0..count {
            self.handle
                .publish_blueprint(PublishRequest {
                    blueprint_id: BlueprintId::parse(&format!("bp-{n}")).unwrap(),
                    document: format!(r#"{{"n":{n}}}"#).into(),
                    published_by: "admin".into(),
                    metadata: BTreeMap::new(),
                })
                .await
                .unwrap();
        }
    }

    async fn stop(self) {
        let report = self.handle.shutdown().await;
        assert!(report.killed.is_empty(), "{report:?}");
    }
}

fn node(id: &str) -> NodeId {
    NodeId::parse(id).unwrap()
}

fn server_tls(server: &Issued, client_ca: Option<&Pki>) -> RawServerTls {
    RawServerTls {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: client_ca.map(|pki| pki.ca.clone()),
    }
}

fn token_peers() -> Vec<RawPeerCredential> {
    vec![
        RawPeerCredential {
            id: "peer-a".into(),
            token: Some(TOKEN_A.into()),
            token_file: None,
        },
        RawPeerCredential {
            id: "peer-b".into(),
            token: Some(TOKEN_B.into()),
            token_file: None,
        },
    ]
}

/// The PEM a client loads: `ca`, and `identity` when given.
fn client_pem(ca: &Pki, identity: Option<&Issued>) -> ClientPem {
    ClientTls {
        ca_file: Some(ca.ca.clone()),
        identity: identity.map(|issued| IdentityFiles {
            cert_file: issued.cert.clone(),
            key_file: issued.key.clone(),
        }),
    }
    .load()
    .unwrap()
}

fn link(peer: &str, pem: &ClientPem, token: Option<&str>) -> GrpcHubLink {
    let credentials = HubCredentials::new(Some(pem), token).unwrap();
    GrpcHubLink::new(node(peer), format!("{peer}.local:7000")).with_credentials(credentials)
}

fn connect_request(peer: &str) -> ConnectRequest {
    ConnectRequest {
        peer_id: node(peer),
        node_type: NodeType::Peer,
        address: String::new(),
        last_known_version: 0,
        last_known_digest: None,
    }
}

fn beat(peer: &str, grant: &SessionGrant) -> HeartbeatRequest {
    HeartbeatRequest {
        peer_id: node(peer),
        session_id: grant.session_id.clone(),
        sequence: 1,
        last_sync_version: 0,
        last_sync_digest: None,
        sent_at: TokioClock::new().now(),
    }
}

fn full_sync(peer: &str, grant: &SessionGrant) -> SyncQuery {
    SyncQuery {
        peer_id: node(peer),
        session_id: grant.session_id.clone(),
        scope: SyncScope::Full,
        history_id: Some(grant.history_id.clone()),
        digest: None,
    }
}

/// A raw channel to `url` over TLS trusting `pem`, as an outsider's client would open.
async fn raw_channel(url: &str, pem: &ClientPem) -> Channel {
    let credentials = HubCredentials::new(Some(pem), None).unwrap();
    hub_endpoint_with(url, &credentials)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_bearer<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
    }
    request
}

fn wire_connect(peer: &str) -> v1::ConnectRequest {
    v1::ConnectRequest {
        peer_id: peer.into(),
        peer_info: Some(v1::PeerInfo {
            address: "10.0.0.9".into(),
            port: 7000,
            node_type: "Peer".into(),
            supported_protocols: vec!["herald.v1".into()],
            capabilities: None,
        }),
        last_known_version: 0,
        connection_time: TokioClock::new().now().as_unix_millis(),
        register_digest: String::new(),
    }
}

// ---- gRPC ----

#[tokio::test]
async fn a_hub_over_tls_serves_a_peer_that_trusts_its_ca_and_sends_its_token() {
    let pki = Pki::new("herald");
    let hub = TestHub::start(RawHubConfig {
        tls: Some(server_tls(&pki.loopback_server("hub-1"), None)),
        peers: token_peers(),
        ..RawHubConfig::default()
    })
    .await;
    hub.publish(3).await;
    let endpoint = hub.endpoint("https");
    let link = link("peer-a", &client_pem(&pki, None), Some(TOKEN_A));
    let grant = link
        .connect(&endpoint, connect_request("peer-a"), DEADLINE)
        .await
        .unwrap();
    link.heartbeat(&endpoint, beat("peer-a", &grant), DEADLINE)
        .await
        .unwrap();
    let synced = link
        .sync(&endpoint, full_sync("peer-a", &grant), DEADLINE)
        .await
        .unwrap();
    assert_eq!(synced.entries.len(), 4, "3 blueprints and the seeded one");
    assert_eq!(hub.sessions().await, 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_unauthenticated_and_changes_nothing() {
    let pki = Pki::new("herald");
    let hub = TestHub::start(RawHubConfig {
        tls: Some(server_tls(&pki.loopback_server("hub-1"), None)),
        peers: token_peers(),
        ..RawHubConfig::default()
    })
    .await;
    let channel = raw_channel(&hub.url("https"), &client_pem(&pki, None)).await;
    let mut connection = CentralNodeConnectionClient::new(channel.clone());
    let cases = [
        ("peer-a", None, "no token"),
        ("peer-a", Some("guess"), "a wrong token"),
        ("peer-a", Some(TOKEN_B), "another peer's token"),
        ("outsider", Some(TOKEN_A), "a peer the hub does not know"),
    ];
    for (peer, token, what) in cases {
        let refusal = connection
            .connect_to_central_node(with_bearer(wire_connect(peer), token))
            .await
            .unwrap_err();
        assert_eq!(refusal.code(), Code::Unauthenticated, "{what}: {refusal:?}");
        assert!(
            !refusal.message().contains(TOKEN_A) && !refusal.message().contains(TOKEN_B),
            "a refusal never quotes a token: {}",
            refusal.message()
        );
    }
    // Every RPC checks, the status and the streams included.
    let status = connection
        .get_central_node_status(with_bearer(
            v1::StatusRequest {
                peer_id: "peer-a".into(),
                include_peer_list: true,
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut sync = SystemRegisterSyncClient::new(channel.clone());
    let stream = sync
        .full_sync(with_bearer(
            v1::SyncRequest {
                peer_id: "peer-a".into(),
                full_sync: true,
                ..v1::SyncRequest::default()
            },
            Some("guess"),
        ))
        .await
        .unwrap_err();
    assert_eq!(stream.code(), Code::Unauthenticated);
    let mut heartbeat = HeartbeatClient::new(channel.clone());
    let beat = heartbeat
        .send_heartbeat(with_bearer(
            v1::HeartbeatMessage {
                peer_id: "peer-a".into(),
                ..v1::HeartbeatMessage::default()
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(beat.code(), Code::Unauthenticated);
    assert_eq!(hub.sessions().await, 0, "nothing changed");

    let granted = connection
        .connect_to_central_node(with_bearer(wire_connect("peer-a"), Some(TOKEN_A)))
        .await
        .unwrap();
    assert!(!granted.into_inner().session_id.is_empty());
    assert_eq!(hub.sessions().await, 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_peer_refuses_a_hub_certificate_from_another_ca_and_plaintext_meets_no_hub() {
    let pki = Pki::new("herald");
    let outsider = Pki::new("outsider");
    let hub = TestHub::start(RawHubConfig {
        tls: Some(server_tls(&outsider.loopback_server("impostor"), None)),
        ..RawHubConfig::default()
    })
    .await;
    let trusting_ours = link("peer-a", &client_pem(&pki, None), None);
    let refused = trusting_ours
        .connect(&hub.endpoint("https"), connect_request("peer-a"), DEADLINE)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, HubLinkError::Unreachable(_)),
        "{refused:?}"
    );
    let plaintext = link("peer-a", &client_pem(&pki, None), None);
    let refused = plaintext
        .connect(&hub.endpoint("http"), connect_request("peer-a"), DEADLINE)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, HubLinkError::Unreachable(_)),
        "{refused:?}"
    );
    assert_eq!(hub.sessions().await, 0);
    hub.stop().await;
}

#[tokio::test]
async fn under_mutual_tls_only_a_certificate_naming_the_peer_gets_in() {
    let pki = Pki::new("herald");
    let peers_ca = Pki::new("peers");
    let outsider = Pki::new("outsider");
    let hub = TestHub::start(RawHubConfig {
        tls: Some(server_tls(&pki.loopback_server("hub-1"), Some(&peers_ca))),
        peers: vec![RawPeerCredential {
            id: "peer-a".into(),
            ..RawPeerCredential::default()
        }],
        ..RawHubConfig::default()
    })
    .await;
    let endpoint = hub.endpoint("https");
    let peer_a = peers_ca.issue("peer-a", &["peer-a"]);

    let without_certificate = link("peer-a", &client_pem(&pki, None), None);
    let refused = without_certificate
        .connect(&endpoint, connect_request("peer-a"), DEADLINE)
        .await;
    assert!(refused.is_err(), "the handshake needs a client certificate");

    let forged = outsider.issue("peer-a-forged", &["peer-a"]);
    let refused = link("peer-a", &client_pem(&pki, Some(&forged)), None)
        .connect(&endpoint, connect_request("peer-a"), DEADLINE)
        .await;
    assert!(refused.is_err(), "a certificate from another CA");

    let posing = peers_ca.issue("peer-b", &["peer-b"]);
    let refused = link("peer-b", &client_pem(&pki, Some(&posing)), None)
        .connect(&endpoint, connect_request("peer-b"), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(refused, HubLinkError::Refused(_)), "{refused:?}");

    let channel = raw_channel(&hub.url("https"), &client_pem(&pki, Some(&peer_a))).await;
    let refusal = CentralNodeConnectionClient::new(channel)
        .connect_to_central_node(Request::new(wire_connect("peer-b")))
        .await
        .unwrap_err();
    assert_eq!(
        refusal.code(),
        Code::Unauthenticated,
        "peer-a's certificate does not name peer-b: {refusal:?}"
    );
    assert_eq!(hub.sessions().await, 0, "nothing changed");

    let granted = link("peer-a", &client_pem(&pki, Some(&peer_a)), None)
        .connect(&endpoint, connect_request("peer-a"), DEADLINE)
        .await;
    assert!(granted.is_ok(), "{granted:?}");
    assert_eq!(hub.sessions().await, 1);
    hub.stop().await;
}

// ---- per-peer limits ----

/// Issue 10: one peer cannot starve the others. The flooder runs 8 tasks sending full syncs
/// and heartbeats back to back for 3 s; meanwhile the quiet peer beats every 100 ms (1 s
/// deadline) and syncs in full every 500 ms (2 s deadline): every one of its calls succeeds in
/// time, and the flooder met `RESOURCE_EXHAUSTED`.
#[tokio::test]
async fn a_flood_from_one_peer_leaves_anothers_heartbeats_and_syncs_within_their_deadlines() {
    const FLOOD: Duration = Duration::from_secs(3);
    const BEAT_DEADLINE: Duration = Duration::from_secs(1);
    const SYNC_DEADLINE: Duration = Duration::from_secs(2);
    let hub = TestHub::start(RawHubConfig {
        peer_requests_per_sec: Some(20),
        peer_request_burst: Some(20),
        ..RawHubConfig::default()
    })
    .await;
    hub.publish(300).await;
    let endpoint = hub.endpoint("http");
    let quiet = GrpcHubLink::new(node("quiet"), "quiet.local:7000".into());
    let quiet_grant = quiet
        .connect(&endpoint, connect_request("quiet"), DEADLINE)
        .await
        .unwrap();
    let flooder = GrpcHubLink::new(node("flooder"), "flooder.local:7000".into());
    let flood_grant = flooder
        .connect(&endpoint, connect_request("flooder"), DEADLINE)
        .await
        .unwrap();

    let channel = raw_channel_plain(&hub.url("http")).await;
    let exhausted = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for task in 0..8 {
        let channel = channel.clone();
        let (exhausted, served) = (Arc::clone(&exhausted), Arc::clone(&served));
        let session = flood_grant.session_id.to_string();
        flood.spawn(async move {
            let mut sync = SystemRegisterSyncClient::new(channel.clone());
            let mut heartbeat = HeartbeatClient::new(channel);
            while started.elapsed() < FLOOD {
                let code = if task % 2 == 0 {
                    let request = v1::SyncRequest {
                        peer_id: "flooder".into(),
                        session_id: session.clone(),
                        full_sync: true,
                        ..v1::SyncRequest::default()
                    };
                    match sync.full_sync(request).await {
                        Ok(response) => {
                            let mut stream = response.into_inner();
                            while let Ok(Some(_)) = stream.message().await {}
                            Code::Ok
                        }
                        Err(status) => status.code(),
                    }
                } else {
                    let request = v1::HeartbeatMessage {
                        peer_id: "flooder".into(),
                        session_id: session.clone(),
                        timestamp: TokioClock::new().now().as_unix_millis(),
                        node_type: "Peer".into(),
                        ..v1::HeartbeatMessage::default()
                    };
                    match heartbeat.send_heartbeat(request).await {
                        Ok(_) => Code::Ok,
                        Err(status) => status.code(),
                    }
                };
                match code {
                    Code::ResourceExhausted => exhausted.fetch_add(1, Ordering::Relaxed),
                    _ => served.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }

    let mut beats = 0;
    let mut syncs = 0;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < FLOOD {
        let asked = Instant::now();
        let ack = quiet
            .heartbeat(&endpoint, beat("quiet", &quiet_grant), BEAT_DEADLINE)
            .await;
        assert!(ack.is_ok(), "heartbeat {beats} under the flood: {ack:?}");
        slowest = slowest.max(asked.elapsed());
        beats += 1;
        if beats % 5 == 0 {
            let asked = Instant::now();
            let synced = quiet
                .sync(&endpoint, full_sync("quiet", &quiet_grant), SYNC_DEADLINE)
                .await
                .unwrap_or_else(|err| panic!("sync {syncs} under the flood: {err:?}"));
            assert_eq!(synced.entries.len(), 301);
            slowest = slowest.max(asked.elapsed());
            syncs += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while flood.join_next().await.is_some() {}
    let (exhausted, served) = (
        exhausted.load(Ordering::Relaxed),
        served.load(Ordering::Relaxed),
    );
    eprintln!(
        "flood: {served} served, {exhausted} refused; quiet peer: {beats} heartbeats, {syncs} syncs, slowest {slowest:?}"
    );
    assert!(exhausted > 0, "the flood met its limit");
    assert!(
        served <= 20 + 20 * 4,
        "the flooder got at most its burst and rate: {served}"
    );
    assert!(beats >= 10 && syncs >= 2, "{beats} beats, {syncs} syncs");
    hub.stop().await;
}

async fn raw_channel_plain(url: &str) -> Channel {
    hub_endpoint_with(url, &HubCredentials::default())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// HTTP/2's cap on concurrent streams per connection: with `max_concurrent_streams = 2`, a
/// third push subscription on the same connection waits until one of the two ends.
#[tokio::test]
async fn one_connection_holds_at_most_max_concurrent_streams() {
    let hub = TestHub::start(RawHubConfig {
        max_concurrent_streams: Some(2),
        ..RawHubConfig::default()
    })
    .await;
    let channel = raw_channel_plain(&hub.url("http")).await;
    let mut connection = CentralNodeConnectionClient::new(channel.clone());
    let mut sessions = Vec::new();
    for peer in ["s-1", "s-2", "s-3"] {
        let grant = connection
            .connect_to_central_node(Request::new(wire_connect(peer)))
            .await
            .unwrap()
            .into_inner();
        sessions.push((peer, grant.session_id));
    }
    let subscription = |(peer, session): &(&str, String)| v1::SubscriptionRequest {
        peer_id: (*peer).into(),
        session_id: session.clone(),
        ..v1::SubscriptionRequest::default()
    };
    let mut sync = SystemRegisterSyncClient::new(channel);
    let first = sync
        .subscribe_to_push_notifications(subscription(&sessions[0]))
        .await
        .unwrap();
    let _second = sync
        .subscribe_to_push_notifications(subscription(&sessions[1]))
        .await
        .unwrap();
    let third = tokio::time::timeout(
        Duration::from_millis(500),
        sync.subscribe_to_push_notifications(subscription(&sessions[2])),
    )
    .await;
    assert!(third.is_err(), "a third stream opened on the connection");
    drop(first);
    let third = tokio::time::timeout(
        DEADLINE,
        sync.subscribe_to_push_notifications(subscription(&sessions[2])),
    )
    .await
    .expect("a stream ended: the third one opens");
    assert!(third.is_ok(), "{third:?}");
    hub.stop().await;
}

// ---- HTTP: the REST API and the register's link ----

/// A peer node serving its REST API over HTTPS with `cert`.
async fn https_peer(dir: &TempDir, cert: &Issued) -> NodeHandle {
    let config = RawNodeConfig {
        node_id: "peer-https".into(),
        data_dir: Some(dir.path().join("peer")),
        http_addr: Some("127.0.0.1:0".into()),
        admin_token: Some(TOKEN_A.into()),
        http_tls: Some(server_tls(cert, None)),
        peer: Some(RawPeerConfig::default()),
        ..RawNodeConfig::default()
    }
    .validate()
    .unwrap();
    Node::start(config).await.unwrap()
}

fn one_ad() -> BulkAdvertise {
    let id = "ab".repeat(16);
    BulkAdvertise {
        advertisements: vec![AdInput::public(RegisterId::parse(&id).unwrap())],
        full_sync: false,
        snapshot: None,
    }
}

#[tokio::test]
async fn the_register_link_pushes_over_https_and_refuses_another_ca_or_a_missing_token() {
    let pki = Pki::new("herald");
    let outsider = Pki::new("outsider");
    let dir = TempDir::new().unwrap();
    let peer = https_peer(&dir, &pki.loopback_server("peer")).await;
    let url = format!("https://{}", peer.http_addr().unwrap());
    let timeout = Duration::from_secs(5);

    let ours = client_pem(&pki, None);
    let link = HttpPoolLink::new_with_tls(&url, TOKEN_A, timeout, Some(&ours)).unwrap();
    let outcome = link.push(one_ad()).await.unwrap();
    assert_eq!(outcome.added, 1);

    let theirs = client_pem(&outsider, None);
    let wrong_ca = HttpPoolLink::new_with_tls(&url, TOKEN_A, timeout, Some(&theirs)).unwrap();
    let refused = wrong_ca.push(one_ad()).await.unwrap_err();
    assert!(
        matches!(refused, PoolLinkError::Unreachable(_)),
        "{refused:?}"
    );

    for token in ["", "guess"] {
        let no_token = HttpPoolLink::new_with_tls(&url, token, timeout, Some(&ours)).unwrap();
        let refused = no_token.push(one_ad()).await.unwrap_err();
        assert!(
            matches!(&refused, PoolLinkError::Refused(reason) if reason.contains("401")),
            "{token:?}: {refused:?}"
        );
    }

    let plaintext = HttpPoolLink::new(
        &format!("http://{}", peer.http_addr().unwrap()),
        TOKEN_A,
        timeout,
    )
    .unwrap();
    assert!(
        plaintext.push(one_ad()).await.is_err(),
        "plain HTTP to the HTTPS port"
    );
    assert_eq!(
        peer.available().await.unwrap().len(),
        1,
        "only the first push"
    );
    peer.shutdown().await;
}

#[tokio::test]
async fn a_register_node_feeds_an_https_peer_with_a_token_from_a_file() {
    let pki = Pki::new("herald");
    let dir = TempDir::new().unwrap();
    let peer = https_peer(&dir, &pki.loopback_server("peer")).await;
    let token_file = pki.write("peer-token", &format!("{TOKEN_A}\n"));
    let config = RawNodeConfig {
        node_id: "reg-https".into(),
        data_dir: Some(dir.path().join("register")),
        register: Some(RawRegisterConfig {
            peer_url: Some(format!("https://{}", peer.http_addr().unwrap())),
            peer_token_file: Some(token_file),
            peer_tls: Some(RawClientTls {
                ca_file: Some(pki.ca.clone()),
                ..RawClientTls::default()
            }),
            ..RawRegisterConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()
    .unwrap();
    let register = Node::start(config).await.unwrap();
    register
        .create_register(NewRegister {
            register_id: None,
            name: "orders".into(),
            description: None,
            advertise: true,
            latest_version: 0,
            latest_docket_version: 0,
        })
        .await
        .unwrap();
    wait_until("the peer holds the register's ad", DEADLINE, || async {
        (peer.available().await.unwrap().len() == 1).then_some(())
    })
    .await;
    register.shutdown().await;
    peer.shutdown().await;
}

// ---- Redis ----

/// A `redis-server` with TLS on a second port; clients must present a certificate of `pki`.
fn redis_over_tls(pki: &Pki) -> (RedisServer, u16) {
    let server = pki.loopback_server("redis");
    let tls_port = free_port();
    let args = [
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        server.cert.display().to_string(),
        "--tls-key-file".to_owned(),
        server.key.display().to_string(),
        "--tls-ca-cert-file".to_owned(),
        pki.ca.display().to_string(),
        "--tls-auth-clients".to_owned(),
        "yes".to_owned(),
    ];
    (RedisServer::start_with(args.to_vec()), tls_port)
}

#[tokio::test]
async fn rediss_needs_the_right_ca_and_a_client_certificate() {
    let pki = Pki::new("herald");
    let outsider = Pki::new("outsider");
    let (_redis, tls_port) = redis_over_tls(&pki);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let id = node("peer-redis-tls");
    let client = pki.issue("peer-redis-client", &["peer-redis-tls"]);

    let store =
        RedisAdStore::new_with_tls(&url, "herald", &id, Some(&client_pem(&pki, Some(&client))))
            .unwrap();
    let loaded = store.load().await;
    assert!(loaded.is_ok(), "{loaded:?}");
    let register =
        RedisBlueprintStore::new_with_tls(&url, "herald", Some(&client_pem(&pki, Some(&client))))
            .unwrap();
    assert!(register.head().await.is_ok());

    let wrong_ca = RedisAdStore::new_with_tls(
        &url,
        "herald",
        &id,
        Some(&client_pem(&outsider, Some(&client))),
    )
    .unwrap();
    assert!(
        wrong_ca.load().await.is_err(),
        "a server certificate from another CA"
    );
    let no_certificate =
        RedisAdStore::new_with_tls(&url, "herald", &id, Some(&client_pem(&pki, None))).unwrap();
    assert!(
        no_certificate.load().await.is_err(),
        "Redis requires a client certificate"
    );
}

// ---- MongoDB ----

/// One ad, for a store round trip.
fn mongo_ad() -> Advertisement {
    Advertisement {
        register_id: RegisterId::from_bytes([7; 16]),
        source: AdSource::Local,
        sync_state: SyncState::Active,
        is_public: true,
        latest_version: 3,
        latest_docket_version: 1,
        name: Some("over tls".into()),
        description: None,
        refreshed_at: Timestamp::from_unix_millis(1_700_000_000_000),
        changed_at: Timestamp::from_unix_millis(1_700_000_000_000),
    }
}

#[tokio::test]
async fn mongodb_over_tls_needs_the_right_ca_and_a_client_certificate() {
    if skip_unless_own_server("mongodb_over_tls").is_some() {
        return;
    }
    let pki = Pki::new("herald");
    let outsider = Pki::new("outsider");
    let server = MongoServer::start();
    // The stand-in speaks no TLS: a TLS front that requires a client certificate of `pki`.
    let front = TlsTerminator::start(
        ([127, 0, 0, 1], server.port()).into(),
        &pki.loopback_server("mongo"),
        Some(&pki.ca),
    )
    .await;
    let client = pki.issue("peer-mongo-client", &["peer-mongo-tls"]);
    let cert_key = pki.write(
        "peer-mongo-client-cert-key.pem",
        &(std::fs::read_to_string(&client.cert).unwrap()
            + &std::fs::read_to_string(&client.key).unwrap()),
    );
    let config = |ca: &std::path::Path, cert_key: Option<&std::path::Path>| MongoConfig {
        url: format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            front.addr().port()
        ),
        tls: Some(MongoTls {
            ca_file: Some(ca.to_owned()),
            cert_key_file: cert_key.map(ToOwned::to_owned),
        }),
        ..server.config()
    };
    let id = node("peer-mongo-tls");

    let store = MongoAdStore::open(&config(&pki.ca, Some(&cert_key)), &id)
        .await
        .unwrap();
    let ad = mongo_ad();
    let batch = AdBatch {
        puts: vec![&ad],
        deletes: Vec::new(),
        meta: PoolMeta {
            last_snapshot: None,
            generation: 1,
            write_seq: 1,
        },
        scope: BatchScope::Everything,
    };
    store.write(&batch, Duration::from_secs(60)).await.unwrap();
    assert_eq!(store.load().await.unwrap().ads, vec![ad.clone()]);

    let wrong_ca = MongoAdStore::open(&config(&outsider.ca, Some(&cert_key)), &id)
        .await
        .unwrap();
    assert!(
        wrong_ca.load().await.is_err(),
        "a server certificate from another CA"
    );
    let no_certificate = MongoAdStore::open(&config(&pki.ca, None), &id)
        .await
        .unwrap();
    assert!(
        no_certificate.load().await.is_err(),
        "the server requires a client certificate"
    );
    // A file that holds no certificate is refused at open, naming it (the driver would only
    // say that the server is unreachable).
    let not_pem = pki.write("not-a-ca.pem", "hello");
    let refused = MongoAdStore::open(&config(&not_pem, None), &id)
        .await
        .err()
        .expect("a CA file without a certificate is refused");
    let message = herald::parts::actors::ports::error_chain(&refused);
    assert!(message.contains("not-a-ca.pem"), "{message}");
}
