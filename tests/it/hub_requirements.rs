//! Requirements of spec 001 user story 4 that the other modules do not prove on their own:
//! FR-027, FR-028 and SC-013 (a hub never dials hubs), FR-029 (a hub stays online while many
//! peers connect at once). In-process nodes on their embedded stores, real gRPC on loopback,
//! real time.

use std::time::Duration;

use futures::future::join_all;
use tempfile::TempDir;

use herald::parts::actors::ports::HubLink;
use herald::parts::messages::{ConnectRequest, HubEndpoint, NodeType};
use herald::parts::runtime::grpc::GrpcHubLink;
use herald::{
    Node, NodeHandle, NodeId, RawHubConfig, RawHubEndpoint, RawNodeConfig, RawPeerConfig,
};

use crate::support::wait_until;

async fn hub(dir: &TempDir, id: &str, hubs: Vec<RawHubEndpoint>) -> NodeHandle {
    let config = RawNodeConfig {
        node_id: id.into(),
        data_dir: Some(dir.path().join(id)),
        hub: Some(RawHubConfig {
            grpc_addr: "127.0.0.1:0".into(),
            ..RawHubConfig::default()
        }),
        // A pool on the hub, given a hub list as a misconfigured peer would be.
        peer: Some(RawPeerConfig {
            hubs,
            ..RawPeerConfig::default()
        }),
        ..RawNodeConfig::default()
    };
    Node::start(config.validate().unwrap()).await.unwrap()
}

fn endpoint(id: &str, node: &NodeHandle) -> RawHubEndpoint {
    RawHubEndpoint {
        id: id.into(),
        url: format!("http://{}", node.grpc_addr().unwrap()),
        priority: None,
    }
}

/// FR-027, SC-013: a node running the hub role listens for peers and never acts as a client:
/// given a hub list, it runs no connection at all, and the other hub never sees it. (FR-028,
/// hubs in the active-peers list, needs the cluster membership: not proven here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fr027_sc013_a_hub_never_dials_hubs() {
    let dir = tempfile::tempdir().unwrap();
    let n0 = hub(&dir, "n0", Vec::new()).await;
    let n1 = hub(&dir, "n1", vec![endpoint("n0", &n0)]).await;
    assert!(!n1.has_hub_connection(), "the hub list is ignored on a hub");
    assert!(n1.connection_status().await.is_err(), "no connection actor");
    // Long enough for a peer with default timings to have connected many times over.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        n0.hub_peers().await.unwrap().is_empty(),
        "n1 never dialed n0"
    );
    n1.shutdown().await;
    n0.shutdown().await;
}

/// FR-029: a hub stays online while peers connect: 200 peers connecting at once all get a
/// session, and the hub still answers and reports itself healthy afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fr029_a_hub_stays_online_while_many_peers_connect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let n0 = hub(&dir, "n0", Vec::new()).await;
    let hub = HubEndpoint {
        id: NodeId::parse("n0").unwrap(),
        url: format!("http://{}", n0.grpc_addr().unwrap()),
        priority: 0,
    };
    let connects = (0..200).map(|n| {
        let hub = hub.clone();
        async move {
            let peer_id = NodeId::parse(&format!("peer-{n}")).unwrap();
            let link = GrpcHubLink::new(peer_id.clone(), format!("peer-{n}"));
            let request = ConnectRequest {
                peer_id,
                node_type: NodeType::Peer,
                address: String::new(),
                last_known_version: 0,
                last_known_digest: None,
            };
            link.connect(&hub, request, Duration::from_secs(20)).await
        }
    });
    let granted = join_all(connects).await;
    let refused: Vec<_> = granted
        .iter()
        .filter_map(|result| result.as_ref().err())
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let peers = wait_until("every session listed", Duration::from_secs(10), || async {
        let peers = n0.hub_peers().await.ok()?;
        (peers.len() == 200).then_some(peers)
    })
    .await;
    assert_eq!(peers.len(), 200);
    let status = n0.hub_status().await.unwrap();
    assert_eq!(status.active_peers, 200);
    n0.shutdown().await;
}
