//! The hub's gRPC server and the peer's `GrpcHubLink` over real tonic on loopback, in real time:
//! connect (and the FR-031 refusal of a hub caller), heartbeats (unknown session, SYNC when
//! behind, the bidi stream), full and incremental syncs (order, deprecations, history, a 5 MiB
//! document, the empty case), push notifications, status RPCs, validation (`INVALID_ARGUMENT`
//! from the raw generated clients), an unreachable hub, and stopping the server.
//!
//! The hub is a whole node with the hub role on an in-memory blueprint store; the conversions'
//! rules are unit-tested in `herald-proto`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tempfile::TempDir;
use tokio::time::Instant;

use herald::parts::actors::ports::{
    BlueprintStore, BlueprintStoreError, Clock, HubLink, HubLinkError, RestoreReport, StoreHead,
    StoredRegister,
};
use herald::parts::actors::testing::InMemoryBlueprintStore;
use herald::parts::actors::{ActorSlot, TokioClock};
use herald::parts::messages::{
    BlueprintId, ChildKind, ConnectRequest, EntryKind, HeartbeatRequest, HistoryId, HubEndpoint,
    NodeType, PublishRequest, RecommendedAction, SEED_BLUEPRINT_ID, SessionGrant, SessionId,
    SyncQuery, SyncScope, SystemRegisterAuthorityMsg,
};
use herald::parts::messages::{Genesis, SystemRegisterEntry};
use herald::parts::runtime::config::RawHubConfig;
use herald::parts::runtime::grpc::proto::tonic;
use herald::parts::runtime::grpc::proto::tonic::Code;
use herald::parts::runtime::grpc::proto::v1;
use herald::parts::runtime::grpc::proto::v1::central_node_connection_client::CentralNodeConnectionClient;
use herald::parts::runtime::grpc::proto::v1::heartbeat_client::HeartbeatClient;
use herald::parts::runtime::grpc::proto::v1::system_register_sync_client::SystemRegisterSyncClient;
use herald::parts::runtime::grpc::{GrpcHubLink, GrpcServer, HubGrpc};
use herald::{Node, NodeHandle, NodeId, RawNodeConfig, StoreOverrides};

const DEADLINE: Duration = Duration::from_secs(10);

// ---- harness ----

/// A hub node with its gRPC server on a free loopback port.
struct TestHub {
    handle: NodeHandle,
    endpoint: HubEndpoint,
    _dir: TempDir,
}

impl TestHub {
    async fn start(id: &str) -> Self {
        Self::start_on(id, Arc::new(InMemoryBlueprintStore::single_writer())).await
    }

    async fn start_on(id: &str, store: Arc<dyn BlueprintStore>) -> Self {
        let dir = TempDir::new().unwrap();
        let config = RawNodeConfig {
            node_id: id.into(),
            data_dir: Some(dir.path().into()),
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                ..RawHubConfig::default()
            }),
            ..RawNodeConfig::default()
        }
        .validate()
        .unwrap();
        let overrides = StoreOverrides {
            blueprint_store: Some(store),
            ..StoreOverrides::default()
        };
        let handle = Node::start_with(config, overrides).await.unwrap();
        let addr = handle.grpc_addr().expect("a hub serves gRPC");
        Self {
            endpoint: HubEndpoint {
                id: node(id),
                url: format!("http://{addr}"),
                priority: 0,
            },
            handle,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        self.endpoint.url.clone()
    }

    /// Publishes `{"n": n}` as blueprint `id`; returns its version.
    async fn publish(&self, id: &str, n: u32) -> u64 {
        self.publish_document(id, format!(r#"{{"n":{n}}}"#)).await
    }

    async fn publish_document(&self, id: &str, document: String) -> u64 {
        let entry = self
            .handle
            .publish_blueprint(PublishRequest {
                blueprint_id: BlueprintId::parse(id).unwrap(),
                document: document.into(),
                published_by: "admin".into(),
                metadata: BTreeMap::new(),
            })
            .await
            .unwrap();
        entry.version
    }

    async fn deprecate(&self, id: &str) -> u64 {
        self.handle
            .deprecate_blueprint(BlueprintId::parse(id).unwrap(), "admin".into())
            .await
            .unwrap()
            .version
    }

    async fn version_and_history(&self) -> (u64, HistoryId) {
        let status = self.handle.hub_status().await.unwrap();
        (status.version, status.history_id.expect("a ready hub"))
    }

    async fn stop(self) {
        let report = self.handle.shutdown().await;
        assert!(report.killed.is_empty(), "{report:?}");
    }
}

fn node(id: &str) -> NodeId {
    NodeId::parse(id).unwrap()
}

fn link(peer: &str) -> GrpcHubLink {
    GrpcHubLink::new(node(peer), format!("{peer}.local:7000"))
}

fn connect_request(peer: &str, node_type: NodeType) -> ConnectRequest {
    ConnectRequest {
        peer_id: node(peer),
        node_type,
        address: String::new(),
        last_known_version: 0,
        last_known_digest: None,
    }
}

async fn connect(link: &GrpcHubLink, hub: &TestHub, peer: &str) -> SessionGrant {
    link.connect(
        &hub.endpoint,
        connect_request(peer, NodeType::Peer),
        DEADLINE,
    )
    .await
    .unwrap()
}

fn beat(peer: &str, session: &SessionId, last_sync_version: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        peer_id: node(peer),
        session_id: session.clone(),
        sequence: 1,
        last_sync_version,
        last_sync_digest: None,
        sent_at: TokioClock::new().now(),
    }
}

fn sync_request(peer: &str, grant: &SessionGrant, scope: SyncScope) -> SyncQuery {
    SyncQuery {
        peer_id: node(peer),
        session_id: grant.session_id.clone(),
        scope,
        history_id: Some(grant.history_id.clone()),
        digest: None,
    }
}

fn now_millis() -> i64 {
    TokioClock::new().now().as_unix_millis()
}

fn wire_beat(peer: &str, session: &str, timestamp: i64) -> v1::HeartbeatMessage {
    v1::HeartbeatMessage {
        peer_id: peer.into(),
        timestamp,
        sequence_number: 1,
        last_sync_version: 0,
        session_id: session.into(),
        node_type: "Peer".into(),
        metrics: None,
        register_digest: String::new(),
    }
}

fn wire_connect(peer: &str, node_type: &str) -> v1::ConnectRequest {
    v1::ConnectRequest {
        peer_id: peer.into(),
        peer_info: Some(v1::PeerInfo {
            address: "10.0.0.9".into(),
            port: 7000,
            node_type: node_type.into(),
            supported_protocols: vec!["herald.v1".into()],
            capabilities: None,
        }),
        last_known_version: 0,
        connection_time: now_millis(),
        register_digest: String::new(),
    }
}

// ---- connect ----

#[tokio::test]
async fn connect_grants_a_session_with_version_history_and_intervals() {
    let hub = TestHub::start("hub-1").await;
    let (version, history) = hub.version_and_history().await;
    let grant = connect(&link("peer-1"), &hub, "peer-1").await;
    assert_eq!(grant.session_id.as_str().len(), 32, "{grant:?}");
    assert_eq!(grant.hub_id, node("hub-1"));
    assert_eq!(grant.version, version);
    assert_eq!(grant.history_id, history);
    assert_eq!(grant.heartbeat_interval, Duration::from_secs(30));
    assert_eq!(grant.heartbeat_timeout, Duration::from_secs(30));
    assert_eq!(grant.sync_interval, Duration::from_secs(300));
    let peers = hub.handle.hub_peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].session_id, grant.session_id);
    assert_eq!(
        peers[0].address, "peer-1.local:7000",
        "the link's advertised address"
    );
    hub.stop().await;
}

/// FR-031: a hub must not connect to a hub; the refusal says so.
#[tokio::test]
async fn a_hub_calling_a_hub_is_refused_with_failed_precondition() {
    let hub = TestHub::start("hub-1").await;
    let mut raw = CentralNodeConnectionClient::connect(hub.url())
        .await
        .unwrap();
    let status = raw
        .connect_to_central_node(wire_connect("hub-2", "Central"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("hubs do not connect to hubs"),
        "{}",
        status.message()
    );

    let refused = link("hub-2")
        .connect(
            &hub.endpoint,
            connect_request("hub-2", NodeType::Hub),
            DEADLINE,
        )
        .await
        .unwrap_err();
    let HubLinkError::Refused(reason) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert!(reason.contains("hubs do not connect to hubs"), "{reason}");
    assert!(hub.handle.hub_peers().await.unwrap().is_empty());
    hub.stop().await;
}

// ---- heartbeats ----

#[tokio::test]
async fn a_heartbeat_with_an_unknown_session_asks_to_reconnect() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let unknown = SessionId::parse("ffffffffffffffffffffffffffffffff").unwrap();
    let err = link
        .heartbeat(&hub.endpoint, beat("peer-1", &unknown, 0), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, HubLinkError::UnknownSession(_)), "{err:?}");

    // After a disconnect the session is unknown too.
    let grant = connect(&link, &hub, "peer-1").await;
    link.disconnect(&hub.endpoint, &node("peer-1"), &grant.session_id)
        .await
        .unwrap();
    let err = link
        .heartbeat(
            &hub.endpoint,
            beat("peer-1", &grant.session_id, 0),
            DEADLINE,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, HubLinkError::UnknownSession(_)), "{err:?}");
    hub.stop().await;
}

#[tokio::test]
async fn a_heartbeat_from_a_peer_behind_recommends_sync() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let published = hub.publish("orders-v1", 1).await;

    let ack = link
        .heartbeat(
            &hub.endpoint,
            beat("peer-1", &grant.session_id, grant.version),
            DEADLINE,
        )
        .await
        .unwrap();
    assert_eq!(ack.action, RecommendedAction::Sync);
    assert_eq!(ack.version, published);
    assert_eq!(ack.history_id, grant.history_id);
    assert_eq!(ack.hub_id, node("hub-1"));

    let ack = link
        .heartbeat(
            &hub.endpoint,
            beat("peer-1", &grant.session_id, published),
            DEADLINE,
        )
        .await
        .unwrap();
    assert_eq!(ack.action, RecommendedAction::None);
    hub.stop().await;
}

#[tokio::test]
async fn monitor_heartbeat_answers_each_beat_and_ends_at_a_refusal() {
    let hub = TestHub::start("hub-1").await;
    let grant = connect(&link("peer-1"), &hub, "peer-1").await;
    let session = grant.session_id.to_string();
    let beats = vec![
        wire_beat("peer-1", &session, now_millis()),
        wire_beat("peer-1", &session, now_millis()),
        wire_beat("peer-1", "ffffffffffffffffffffffffffffffff", now_millis()),
        wire_beat("peer-1", &session, now_millis()),
    ];
    let mut raw = HeartbeatClient::connect(hub.url()).await.unwrap();
    let mut acks = raw
        .monitor_heartbeat(futures::stream::iter(beats))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let ack = acks.message().await.unwrap().expect("an acknowledgement");
        assert!(ack.success);
        assert_eq!(ack.central_node_id, "hub-1");
    }
    let refusal = acks.message().await.unwrap_err();
    assert_eq!(refusal.code(), Code::NotFound);
    hub.stop().await;
}

// ---- syncs ----

#[tokio::test]
async fn full_sync_streams_every_blueprints_latest_entry_ordered_by_version() {
    let hub = TestHub::start("hub-1").await;
    hub.publish("a", 1).await;
    hub.publish("b", 1).await;
    hub.publish("c", 1).await;
    hub.publish("a", 2).await; // an update: a's latest entry moves after c
    hub.deprecate("b").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let entries = link
        .sync(
            &hub.endpoint,
            sync_request("peer-1", &grant, SyncScope::Full),
            DEADLINE,
        )
        .await
        .unwrap()
        .entries;
    let listed: Vec<(String, u64)> = entries
        .iter()
        .map(|entry| (entry.blueprint_id.to_string(), entry.version))
        .collect();
    assert_eq!(
        listed,
        vec![
            (SEED_BLUEPRINT_ID.to_owned(), 1),
            ("c".to_owned(), 4),
            ("a".to_owned(), 5),
            ("b".to_owned(), 6),
        ]
    );
    assert!(entries.iter().all(|entry| entry.checksum_holds()));
    assert!(
        !entries[3].is_active,
        "the deprecation is the latest entry of b"
    );
    assert_eq!(&entries[2].document[..], br#"{"n":2}"#);
    hub.stop().await;
}

#[tokio::test]
async fn incremental_sync_sends_every_entry_after_the_version() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let a = hub.publish("a", 1).await;
    let b = hub.publish("b", 1).await;
    let deprecated = hub.deprecate("a").await;
    let entries = link
        .sync(
            &hub.endpoint,
            sync_request("peer-1", &grant, SyncScope::After(a)),
            DEADLINE,
        )
        .await
        .unwrap()
        .entries;
    let versions: Vec<u64> = entries.iter().map(|entry| entry.version).collect();
    assert_eq!(versions, vec![b, deprecated]);
    assert_eq!(entries[1].kind, EntryKind::Deprecated);
    assert!(!entries[1].is_active);
    hub.stop().await;
}

#[tokio::test]
async fn an_empty_incremental_sync_completes_at_once() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let started = Instant::now();
    let entries = link
        .sync(
            &hub.endpoint,
            sync_request("peer-1", &grant, SyncScope::After(grant.version)),
            DEADLINE,
        )
        .await
        .unwrap()
        .entries;
    assert!(entries.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_incremental_sync_from_another_history_is_refused() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let request = SyncQuery {
        history_id: Some(HistoryId::from_bytes([0x42; 16])),
        ..sync_request("peer-1", &grant, SyncScope::After(0))
    };
    let err = link
        .sync(&hub.endpoint, request, DEADLINE)
        .await
        .unwrap_err();
    let HubLinkError::NeedsFullSync(reason) = err else {
        panic!("expected a full sync to be needed, got {err:?}");
    };
    assert!(reason.contains("full sync"), "{reason}");
    hub.stop().await;
}

/// tonic refuses messages over 4 MiB unless told otherwise; documents may have 16 MiB.
#[tokio::test]
async fn a_5_mib_document_syncs() {
    let hub = TestHub::start("hub-1").await;
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(5 * 1024 * 1024));
    let version = hub.publish_document("big", big.clone()).await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let entries = link
        .sync(
            &hub.endpoint,
            sync_request("peer-1", &grant, SyncScope::After(version - 1)),
            DEADLINE,
        )
        .await
        .unwrap()
        .entries;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].document.len(), big.len());
    hub.stop().await;
}

#[tokio::test]
async fn max_blueprints_truncates_a_sync() {
    let hub = TestHub::start("hub-1").await;
    for n in 0..5 {
        hub.publish(&format!("bp-{n}"), n).await;
    }
    let grant = connect(&link("peer-1"), &hub, "peer-1").await;
    let mut raw = SystemRegisterSyncClient::connect(hub.url()).await.unwrap();
    let mut stream = raw
        .full_sync(v1::SyncRequest {
            peer_id: "peer-1".into(),
            last_known_version: 0,
            full_sync: true,
            session_id: grant.session_id.to_string(),
            max_blueprints: 2,
            request_time: now_millis(),
            history_id: String::new(),
            register_digest: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut versions = Vec::new();
    while let Some(entry) = stream.message().await.unwrap() {
        assert_eq!(entry.register_id, "00000000000000000000000000000000");
        assert_eq!(entry.history_id, grant.history_id.to_string());
        versions.push(entry.version);
    }
    assert_eq!(versions, vec![1, 2]);
    hub.stop().await;
}

// ---- push notifications ----

#[tokio::test]
async fn subscribe_then_publish_delivers_a_notification() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let mut notifications = link
        .subscribe(&hub.endpoint, &node("peer-1"), &grant.session_id)
        .await
        .unwrap();
    let version = hub.publish("orders-v1", 1).await;
    let notification = tokio::time::timeout(DEADLINE, notifications.next())
        .await
        .expect("a notification in time")
        .expect("the stream is open");
    assert_eq!(notification.blueprint_id.as_str(), "orders-v1");
    assert_eq!(notification.version, version);
    assert_eq!(notification.kind, EntryKind::Published);
    assert_eq!(notification.history_id, grant.history_id);
    assert_eq!(notification.sequence, 1);

    hub.deprecate("orders-v1").await;
    let deprecation = tokio::time::timeout(DEADLINE, notifications.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deprecation.kind, EntryKind::Deprecated);
    assert_eq!(deprecation.sequence, 2);
    hub.stop().await;
}

#[tokio::test]
async fn subscribing_with_an_unknown_session_is_refused_as_unknown() {
    let hub = TestHub::start("hub-1").await;
    let err = link("peer-1")
        .subscribe(
            &hub.endpoint,
            &node("peer-1"),
            &SessionId::parse("ffffffffffffffffffffffffffffffff").unwrap(),
        )
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, HubLinkError::UnknownSession(_)), "{err:?}");
    hub.stop().await;
}

// ---- status RPCs ----

#[tokio::test]
async fn status_rpcs_report_the_hub_and_the_session() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let latest = hub.publish("a", 1).await;
    link.heartbeat(
        &hub.endpoint,
        beat("peer-1", &grant.session_id, grant.version),
        DEADLINE,
    )
    .await
    .unwrap();

    let mut central = CentralNodeConnectionClient::connect(hub.url())
        .await
        .unwrap();
    let status = central
        .get_central_node_status(v1::StatusRequest {
            peer_id: String::new(),
            include_peer_list: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.node_id, "hub-1");
    assert_eq!(status.health, i32::from(v1::NodeHealth::Healthy));
    assert_eq!(status.current_system_register_version, latest as i64);
    assert_eq!(status.active_peer_count, 1);
    assert_eq!(status.connected_peers.len(), 1);
    assert_eq!(status.connected_peers[0].peer_id, "peer-1");
    assert_eq!(status.history_id, grant.history_id.to_string());

    let mut heartbeat = HeartbeatClient::connect(hub.url()).await.unwrap();
    let beats = heartbeat
        .get_heartbeat_status(v1::HeartbeatStatusRequest {
            peer_id: "peer-1".into(),
            session_id: grant.session_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(beats.is_healthy);
    assert!(beats.last_heartbeat_time > 0);
    assert_eq!(beats.version_lag, (latest - grant.version) as i64);

    let mut sync = SystemRegisterSyncClient::connect(hub.url()).await.unwrap();
    let checkpoint = sync
        .get_sync_checkpoint(v1::CheckpointRequest {
            peer_id: "peer-1".into(),
            session_id: grant.session_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checkpoint.status, i32::from(v1::CheckpointStatus::Behind));
    assert_eq!(checkpoint.current_version, latest as i64);

    let unknown = sync
        .get_sync_checkpoint(v1::CheckpointRequest {
            peer_id: "peer-1".into(),
            session_id: "ffffffffffffffffffffffffffffffff".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    hub.stop().await;
}

// ---- validation ----

#[tokio::test]
async fn invalid_requests_are_invalid_argument() {
    let hub = TestHub::start("hub-1").await;
    let grant = connect(&link("peer-1"), &hub, "peer-1").await;
    let session = grant.session_id.to_string();

    let mut central = CentralNodeConnectionClient::connect(hub.url())
        .await
        .unwrap();
    let bad_peer = central
        .connect_to_central_node(wire_connect("peer 1", "Peer"))
        .await
        .unwrap_err();
    assert_eq!(bad_peer.code(), Code::InvalidArgument);
    assert!(
        bad_peer.message().contains("peer_id"),
        "{}",
        bad_peer.message()
    );
    let mut bad_port = wire_connect("peer-2", "Peer");
    bad_port.peer_info.as_mut().unwrap().port = 70_000;
    let bad_port = central.connect_to_central_node(bad_port).await.unwrap_err();
    assert_eq!(bad_port.code(), Code::InvalidArgument);

    let mut heartbeat = HeartbeatClient::connect(hub.url()).await.unwrap();
    let ten_minutes_off = now_millis() - 10 * 60 * 1000;
    let stale = heartbeat
        .send_heartbeat(wire_beat("peer-1", &session, ten_minutes_off))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::InvalidArgument);
    assert!(stale.message().contains("timestamp"), "{}", stale.message());
    let mut overloaded = wire_beat("peer-1", &session, now_millis());
    overloaded.metrics = Some(v1::HealthMetrics {
        cpu_usage_percent: 140.0,
        ..v1::HealthMetrics::default()
    });
    let overloaded = heartbeat.send_heartbeat(overloaded).await.unwrap_err();
    assert_eq!(overloaded.code(), Code::InvalidArgument);

    let mut sync = SystemRegisterSyncClient::connect(hub.url()).await.unwrap();
    let negative = sync
        .incremental_sync(v1::SyncRequest {
            peer_id: "peer-1".into(),
            last_known_version: -1,
            full_sync: false,
            session_id: session.clone(),
            max_blueprints: 0,
            request_time: now_millis(),
            history_id: String::new(),
            register_digest: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);

    // None of it touched the session.
    let peers = hub.handle.hub_peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].last_heartbeat_at, None);
    hub.stop().await;
}

// ---- failures ----

#[tokio::test]
async fn a_closed_port_is_unreachable_quickly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let hub = HubEndpoint {
        id: node("hub-9"),
        url: format!("http://127.0.0.1:{port}"),
        priority: 0,
    };
    let started = Instant::now();
    let err = link("peer-1")
        .connect(&hub, connect_request("peer-1", NodeType::Peer), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, HubLinkError::Unreachable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_authority_that_does_not_answer_is_unavailable() {
    // A slot with no actor behind it: every call waits out the deadline.
    let slot = ActorSlot::<SystemRegisterAuthorityMsg>::new(ChildKind::SystemRegisterAuthority);
    let services = HubGrpc::new(
        slot,
        node("hub-1"),
        Arc::new(TokioClock::new()),
        Duration::from_millis(200),
    );
    let server = GrpcServer::start("127.0.0.1:0".parse().unwrap(), services)
        .await
        .unwrap();
    let hub = HubEndpoint {
        id: node("hub-1"),
        url: format!("http://{}", server.addr()),
        priority: 0,
    };
    let mut raw = CentralNodeConnectionClient::connect(hub.url.clone())
        .await
        .unwrap();
    let status = raw
        .connect_to_central_node(wire_connect("peer-1", "Peer"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let err = link("peer-1")
        .connect(&hub, connect_request("peer-1", NodeType::Peer), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, HubLinkError::Unreachable(_)), "{err:?}");
    server.stop(DEADLINE).await;
}

/// A stopping hub ends its push streams instead of waiting on them, then closes its port.
#[tokio::test]
async fn stopping_the_server_ends_push_streams_and_closes_the_port() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let mut notifications = link
        .subscribe(&hub.endpoint, &node("peer-1"), &grant.session_id)
        .await
        .unwrap();
    let endpoint = hub.endpoint.clone();

    let started = Instant::now();
    hub.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the open push stream held the stop: {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(DEADLINE, notifications.next())
        .await
        .expect("the push stream ends");
    assert!(end.is_none(), "{end:?}");

    let err = link
        .connect(
            &endpoint,
            connect_request("peer-1", NodeType::Peer),
            DEADLINE,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, HubLinkError::Unreachable(_)), "{err:?}");
}

// ---- the contract as a client written from the .proto sees it (issue 7) ----

/// A raw client's session: connect with the wire request a foreign peer would send.
async fn raw_session(hub: &TestHub, peer: &str) -> v1::ConnectionResponse {
    let mut central = CentralNodeConnectionClient::connect(hub.url())
        .await
        .unwrap();
    central
        .connect_to_central_node(wire_connect(peer, "Peer"))
        .await
        .unwrap()
        .into_inner()
}

fn wire_sync(
    peer: &str,
    session: &str,
    version: i64,
    history: &str,
    digest: &str,
) -> v1::SyncRequest {
    v1::SyncRequest {
        peer_id: peer.into(),
        last_known_version: version,
        full_sync: false,
        session_id: session.into(),
        max_blueprints: 0,
        request_time: now_millis(),
        history_id: history.into(),
        register_digest: digest.into(),
    }
}

async fn drain(
    response: Result<tonic::Response<tonic::Streaming<v1::SystemRegisterEntry>>, tonic::Status>,
) -> Result<Vec<v1::SystemRegisterEntry>, tonic::Status> {
    let mut stream = response?.into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.message().await? {
        entries.push(entry);
    }
    Ok(entries)
}

/// Regression (issue 7, item 2): `FullSync` and `IncrementalSync` for `peer_id="stranger"`,
/// `session_id="x"` returned the whole register; a heartbeat from a peer that never connected
/// got NOT_FOUND where `heartbeat.proto` promises FAILED_PRECONDITION.
#[tokio::test]
async fn every_rpc_checks_the_session_with_the_promised_codes() {
    let hub = TestHub::start("hub-1").await;
    hub.publish("a", 1).await;
    let mut sync = SystemRegisterSyncClient::connect(hub.url()).await.unwrap();
    let full = drain(
        sync.full_sync(v1::SyncRequest {
            full_sync: true,
            ..wire_sync("stranger", "x", 0, "", "")
        })
        .await,
    )
    .await
    .unwrap_err();
    assert_eq!(full.code(), Code::NotFound, "{full:?}");
    let incremental = drain(
        sync.incremental_sync(wire_sync("stranger", "x", 0, "", ""))
            .await,
    )
    .await
    .unwrap_err();
    assert_eq!(incremental.code(), Code::NotFound, "{incremental:?}");
    let subscribe = sync
        .subscribe_to_push_notifications(v1::SubscriptionRequest {
            peer_id: "stranger".into(),
            session_id: "x".into(),
            subscribe_time: now_millis(),
            filters: None,
        })
        .await
        .unwrap_err();
    assert_eq!(subscribe.code(), Code::NotFound);
    let checkpoint = sync
        .get_sync_checkpoint(v1::CheckpointRequest {
            peer_id: "stranger".into(),
            session_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(checkpoint.code(), Code::NotFound);

    let mut heartbeat = HeartbeatClient::connect(hub.url()).await.unwrap();
    let never_connected = heartbeat
        .send_heartbeat(wire_beat("stranger", "x", now_millis()))
        .await
        .unwrap_err();
    assert_eq!(never_connected.code(), Code::FailedPrecondition);
    let session = raw_session(&hub, "peer-1").await.session_id;
    let wrong_session = heartbeat
        .send_heartbeat(wire_beat("peer-1", "not-the-session", now_millis()))
        .await
        .unwrap_err();
    assert_eq!(wrong_session.code(), Code::NotFound);
    let entries = drain(
        sync.full_sync(v1::SyncRequest {
            full_sync: true,
            ..wire_sync("peer-1", &session, 0, "", "")
        })
        .await,
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 2, "the session's own sync is served");
    hub.stop().await;
}

/// Regression (issue 7, item 1): a peer *ahead* of its hub was treated as up to date
/// everywhere: `IncrementalSync` from head+1 (or from 2^63-1) answered OK with 0 entries, a
/// heartbeat beyond the head got NONE, `GetSyncCheckpoint` said UP_TO_DATE.
#[tokio::test]
async fn a_peer_ahead_of_its_hub_or_with_other_entries_is_told_to_sync_in_full() {
    let hub = TestHub::start("hub-1").await;
    hub.publish("a", 1).await;
    let grant = raw_session(&hub, "peer-1").await;
    let (session, history) = (grant.session_id.clone(), grant.history_id.clone());
    let head = grant.current_system_register_version;
    assert!(!grant.register_digest.is_empty(), "{grant:?}");
    let mut sync = SystemRegisterSyncClient::connect(hub.url()).await.unwrap();
    for ahead in [head + 1, i64::MAX] {
        let refused = drain(
            sync.incremental_sync(wire_sync("peer-1", &session, ahead, &history, ""))
                .await,
        )
        .await
        .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::FailedPrecondition,
            "{ahead}: {refused:?}"
        );
        assert!(refused.message().contains("ahead"), "{}", refused.message());
    }
    let entries = drain(
        sync.incremental_sync(wire_sync("peer-1", &session, 0, &history, ""))
            .await,
    )
    .await
    .unwrap();
    let at_head = entries.last().unwrap().register_digest.clone();
    assert_eq!(
        at_head, grant.register_digest,
        "entries carry the digest at their version"
    );
    let other = format!("sha256:{}", "0".repeat(63) + "1");
    let differs = drain(
        sync.incremental_sync(wire_sync("peer-1", &session, head, &history, &other))
            .await,
    )
    .await
    .unwrap_err();
    assert_eq!(differs.code(), Code::FailedPrecondition);
    assert!(
        differs.message().contains("differs"),
        "{}",
        differs.message()
    );
    assert!(
        drain(
            sync.incremental_sync(wire_sync("peer-1", &session, head, &history, &at_head))
                .await
        )
        .await
        .unwrap()
        .is_empty(),
        "the same digest at the head: up to date"
    );

    let mut heartbeat = HeartbeatClient::connect(hub.url()).await.unwrap();
    let beat = |version: i64, digest: &str| v1::HeartbeatMessage {
        last_sync_version: version,
        register_digest: digest.into(),
        ..wire_beat("peer-1", &session, now_millis())
    };
    let action = |ack: v1::HeartbeatAcknowledgement| ack.recommended_action;
    let ahead = heartbeat
        .send_heartbeat(beat(head + 5, &at_head))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(action(ahead), i32::from(v1::RecommendedAction::FullSync));
    let older_peer = heartbeat
        .send_heartbeat(beat(head + 5, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        action(older_peer),
        i32::from(v1::RecommendedAction::Sync),
        "a peer that sends no digest predates FULL_SYNC"
    );
    let different = heartbeat
        .send_heartbeat(beat(head, &other))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        action(different),
        i32::from(v1::RecommendedAction::FullSync)
    );
    let checkpoint = sync
        .get_sync_checkpoint(v1::CheckpointRequest {
            peer_id: "peer-1".into(),
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checkpoint.status, i32::from(v1::CheckpointStatus::Diverged));
    let same = heartbeat
        .send_heartbeat(beat(head, &at_head))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(action(same.clone()), i32::from(v1::RecommendedAction::None));
    assert_eq!(same.register_digest, at_head);
    hub.stop().await;
}

/// Regression (issue 7, item 3): `GetHeartbeatStatus` always answered zeros and HEALTHY;
/// checkpoints carried no times; `PeerInfo.port` was sent as 0; notifications had no summary.
/// Each field now changes when the fact behind it does.
#[tokio::test]
async fn status_answers_follow_the_facts() {
    let hub = TestHub::start("hub-1").await;
    let link = link("peer-1");
    let grant = connect(&link, &hub, "peer-1").await;
    let peers = hub.handle.hub_peers().await.unwrap();
    assert_eq!(
        peers[0].address, "peer-1.local:7000",
        "host and port arrive whole"
    );

    let mut heartbeat = HeartbeatClient::connect(hub.url()).await.unwrap();
    let status_request = v1::HeartbeatStatusRequest {
        peer_id: "peer-1".into(),
        session_id: grant.session_id.to_string(),
    };
    let before = heartbeat
        .get_heartbeat_status(status_request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.total_heartbeats_received, 0);
    for _ in 0..3 {
        link.heartbeat(
            &hub.endpoint,
            beat("peer-1", &grant.session_id, 0),
            DEADLINE,
        )
        .await
        .unwrap();
    }
    let after = heartbeat
        .get_heartbeat_status(status_request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.total_heartbeats_received, 3);
    assert!(after.last_heartbeat_time > 0);
    assert!(after.is_healthy);
    assert_eq!(after.version_lag, i64::try_from(grant.version).unwrap());
    assert!(after.average_latency_ms >= 0.0);

    let mut sync = SystemRegisterSyncClient::connect(hub.url()).await.unwrap();
    let checkpoint_request = v1::CheckpointRequest {
        peer_id: "peer-1".into(),
        session_id: grant.session_id.to_string(),
    };
    let unsynced = sync
        .get_sync_checkpoint(checkpoint_request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unsynced.last_sync_time, 0);
    assert!(unsynced.next_sync_due > 0);
    link.sync(
        &hub.endpoint,
        sync_request("peer-1", &grant, SyncScope::Full),
        DEADLINE,
    )
    .await
    .unwrap();
    let synced = sync
        .get_sync_checkpoint(checkpoint_request)
        .await
        .unwrap()
        .into_inner();
    assert!(synced.last_sync_time > 0, "{synced:?}");
    assert_eq!(synced.next_sync_due, synced.last_sync_time + 5 * 60 * 1000);

    let mut pushes = sync
        .subscribe_to_push_notifications(v1::SubscriptionRequest {
            peer_id: "peer-1".into(),
            session_id: grant.session_id.to_string(),
            subscribe_time: now_millis(),
            filters: None,
        })
        .await
        .unwrap()
        .into_inner();
    let version = hub.publish("summarised", 7).await;
    let notification = pushes.message().await.unwrap().unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&notification.blueprint_summary).unwrap();
    assert_eq!(summary["blueprintId"], "summarised");
    assert_eq!(summary["version"], version);
    assert_eq!(summary["documentBytes"], r#"{"n":7}"#.len());
    hub.stop().await;
}

// ---- heartbeats never wait behind a publication (issue 11, item 5) ----

/// A blueprint store whose appends wait at a gate while it is closed, saying when one waits:
/// it holds the authority inside a publication for as long as a test wants, without sleeping.
struct GatedBlueprintStore {
    inner: InMemoryBlueprintStore,
    open: tokio::sync::watch::Sender<bool>,
    waiting: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl BlueprintStore for GatedBlueprintStore {
    async fn load(&self) -> Result<Option<StoredRegister>, BlueprintStoreError> {
        self.inner.load().await
    }

    async fn create(
        &self,
        genesis: &Genesis,
        seed: Vec<SystemRegisterEntry>,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        self.inner.create(genesis, seed).await
    }

    async fn append(
        &self,
        entry: SystemRegisterEntry,
        known_head: u64,
    ) -> Result<SystemRegisterEntry, BlueprintStoreError> {
        if !*self.open.borrow() {
            self.waiting.notify_one();
        }
        let mut open = self.open.subscribe();
        open.wait_for(|open| *open)
            .await
            .expect("the gate outlives the store");
        self.inner.append(entry, known_head).await
    }

    async fn restore(
        &self,
        genesis: &Genesis,
        entries: &[Arc<SystemRegisterEntry>],
    ) -> Result<RestoreReport, BlueprintStoreError> {
        self.inner.restore(genesis, entries).await
    }

    async fn head(&self) -> Result<Option<StoreHead>, BlueprintStoreError> {
        self.inner.head().await
    }

    async fn entries_after(
        &self,
        after: u64,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        self.inner.entries_after(after).await
    }

    async fn watch(
        &self,
    ) -> Result<Option<futures::stream::BoxStream<'static, u64>>, BlueprintStoreError> {
        self.inner.watch().await
    }

    fn describe(&self) -> String {
        format!("gated {}", self.inner.describe())
    }
}

/// Issue 11, item 5: a heartbeat is answered while the authority is held inside a
/// publication's store append (a gate, not a sleep), from the register head published before
/// it; once the append completes, the next heartbeat sees the new version and says SYNC.
#[tokio::test]
async fn a_heartbeat_is_answered_while_a_publication_is_held_in_the_store() {
    let open = tokio::sync::watch::Sender::new(true);
    let waiting = Arc::new(tokio::sync::Notify::new());
    let store = Arc::new(GatedBlueprintStore {
        inner: InMemoryBlueprintStore::single_writer(),
        open: open.clone(),
        waiting: Arc::clone(&waiting),
    });
    let hub = TestHub::start_on("hub-gated", store).await;
    let link = link("peer-gated");
    let grant = connect(&link, &hub, "peer-gated").await;
    let before = hub.publish("bp-before", 1).await;

    open.send_replace(false);
    let held = waiting.notified();
    let publication = tokio::spawn({
        let api = hub.handle.api().clone();
        async move {
            api.publish_blueprint(PublishRequest {
                blueprint_id: BlueprintId::parse("bp-held").unwrap(),
                document: r#"{"n":2}"#.into(),
                published_by: "admin".into(),
                metadata: BTreeMap::new(),
            })
            .await
        }
    });
    held.await;

    let answered = tokio::time::timeout(
        Duration::from_secs(2),
        link.heartbeat(
            &hub.endpoint,
            beat("peer-gated", &grant.session_id, before),
            DEADLINE,
        ),
    )
    .await
    .expect("a heartbeat is answered while the publication is held")
    .unwrap();
    assert!(!publication.is_finished(), "the publication is still held");
    assert_eq!(answered.version, before, "the head published before it");
    assert_eq!(answered.action, RecommendedAction::None);
    let status = tokio::time::timeout(Duration::from_secs(2), hub.handle.hub_status())
        .await
        .expect("the hub's status is answered too")
        .unwrap();
    assert_eq!(status.version, before);

    open.send_replace(true);
    let entry = publication.await.unwrap().unwrap();
    assert_eq!(entry.version, before + 1);
    let after = link
        .heartbeat(
            &hub.endpoint,
            beat("peer-gated", &grant.session_id, before),
            DEADLINE,
        )
        .await
        .unwrap();
    assert_eq!(after.version, before + 1);
    assert_eq!(after.action, RecommendedAction::Sync);
    // The heartbeats answered from the view are recorded by the authority when it gets to
    // them.
    crate::support::wait_until("the heartbeats recorded", DEADLINE, || async {
        let peers = hub.handle.hub_peers().await.ok()?;
        peers.first()?.last_heartbeat_at.map(|_| ())
    })
    .await;
    hub.stop().await;
}
