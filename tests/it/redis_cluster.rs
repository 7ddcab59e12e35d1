//! A peer whose pool lives on a real Redis Cluster of three primaries (issue 10 item 2), in
//! real time: the primary that holds the node's slot is killed while ads keep being advertised;
//! the pool reports its store degraded, keeps accepting from memory, and once the primary is back
//! (empty: the fixture's nodes keep no data) it writes everything again, so every acknowledged
//! ad is served and stored. No replicas here: recovery is the primary's return, not a failover.
//! And the peer binary's `--redis-cluster` flag puts its pool on the shared cluster.
//! The store contracts on the cluster are in `ad_stores` and `blueprint_stores`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald::{
    AdInput, BulkAdvertise, Node, NodeHandle, RawNodeConfig, RawPeerConfig, RegisterId, StoreHealth,
};

use crate::support::process::{RoleProcess, expect};
use crate::support::redis::{RedisCluster, connect_cluster, local_ads_key};
use crate::support::wait_until;

const NODE: &str = "cluster-peer";
/// Deadline of the waits: the cluster marks a node failed after its 2 s node timeout, and the
/// pool retries its store with a backoff capped at 500 ms here.
const CONVERGE: Duration = Duration::from_secs(30);

fn register(n: u32) -> RegisterId {
    let mut bytes = [0xc1; 16];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    RegisterId::from_bytes(bytes)
}

async fn start_peer(urls: &[String]) -> NodeHandle {
    let raw = RawNodeConfig {
        node_id: NODE.into(),
        peer: Some(RawPeerConfig {
            redis_cluster: Some(urls.to_vec()),
            store_check_interval_ms: Some(200),
            store_backoff_max_ms: Some(500),
            ..RawPeerConfig::default()
        }),
        ..RawNodeConfig::default()
    };
    Node::start(raw.validate().unwrap()).await.unwrap()
}

/// The register ids in `node`'s hash of local ads, read through a cluster client.
async fn stored_ids(urls: &[String], node: &str) -> HashSet<String> {
    let mut conn = connect_cluster(urls).await;
    redis::cmd("HKEYS")
        .arg(local_ads_key(node))
        .query_async(&mut conn)
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_during_writes_degrades_the_pool_which_recovers_with_nothing_lost() {
    let mut cluster = RedisCluster::start();
    let urls = cluster.urls();
    let primary = cluster.node_of(&format!("{{{NODE}}}"));
    let node = Arc::new(start_peer(&urls).await);

    let first: Vec<AdInput> = (0..200).map(|n| AdInput::public(register(n))).collect();
    let outcome = node
        .bulk_advertise(BulkAdvertise {
            advertisements: first,
            full_sync: false,
            snapshot: None,
        })
        .await
        .unwrap();
    assert!(outcome.persisted, "{outcome:?}");
    assert_eq!(stored_ids(&urls, NODE).await.len(), 200);

    // A client advertising one register every 20 ms throughout.
    let writer = {
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut not_persisted = 0;
            for n in 1_000..1_150 {
                let outcome = node
                    .bulk_advertise(BulkAdvertise::one(AdInput::public(register(n))))
                    .await
                    .expect("the pool accepts while its store is down");
                if !outcome.persisted {
                    not_persisted += 1;
                }
                acknowledged.push(register(n));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, not_persisted)
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| cluster.kill(primary));
    let reason = wait_until("the pool reports its store degraded", CONVERGE, || async {
        match node.pool_status().await.unwrap().store {
            StoreHealth::Degraded { reason, .. } => Some(reason),
            StoreHealth::Healthy => None,
        }
    })
    .await;
    eprintln!("degraded: {reason}");
    assert!(
        !node.available().await.unwrap().is_empty(),
        "still serving from memory"
    );

    tokio::task::block_in_place(|| cluster.restart(primary));
    wait_until("the pool's store healthy again", CONVERGE, || async {
        (node.pool_status().await.unwrap().store == StoreHealth::Healthy).then_some(())
    })
    .await;
    let (acknowledged, not_persisted) = writer.await.unwrap();
    assert!(
        not_persisted > 0,
        "no advertisement was answered `persisted: false`: the outage was not observed"
    );

    let mut expected: HashSet<String> = (0..200).map(|n| register(n).to_string()).collect();
    expected.extend(acknowledged.iter().map(RegisterId::to_string));
    wait_until("every acknowledged ad stored again", CONVERGE, || async {
        (stored_ids(&urls, NODE).await == expected).then_some(())
    })
    .await;
    let served: HashSet<String> = node
        .available()
        .await
        .unwrap()
        .into_iter()
        .map(|ad| ad.register_id.to_string())
        .collect();
    assert_eq!(served, expected);
    let status = node.pool_status().await.unwrap();
    assert!(status.store_repairs >= 1, "{status:?}");

    Arc::into_inner(node)
        .expect("the writer is done")
        .shutdown()
        .await;
}

/// `--redis-cluster URL,URL` on the peer binary: its pool writes to the cluster, in the slot of
/// its node id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_process_keeps_its_pool_on_the_redis_cluster_its_flag_names() {
    const FLAG_NODE: &str = "cluster-flag-peer";
    let urls = RedisCluster::shared();
    let peer =
        RoleProcess::peer(&["--node-id", FLAG_NODE, "--redis-cluster", &urls.join(",")]).await;
    let id = register(7).to_string();
    let body = expect(
        peer.post_json(
            &format!("/api/registers/{id}/advertise"),
            serde_json::json!({"isPublic": true}),
        )
        .await,
        reqwest::StatusCode::OK,
    );
    assert_eq!(body["persisted"], serde_json::json!(true), "{body}");
    assert_eq!(stored_ids(&urls, FLAG_NODE).await, HashSet::from([id]));
}
