//! The peer: `CentralNodeConnection`, `HeartbeatMonitor` and `SystemRegisterReplica` under
//! their supervisor, reaching three hub trees `n0`, `n1`, `n2` (priorities 0, 1, 2) through a
//! link that can cut a hub off. The configuration is the production default: virtual time makes
//! its 30 s and 5 min free.

use std::sync::Arc;
use std::time::Duration;

use herald_actors::ports::BlueprintStore;
use herald_actors::testing::{InMemoryBlueprintStore, InMemoryReplicaStore};
use herald_actors::{AuthorityConfig, ConnectionConfig, HeartbeatConfig, ReplicaConfig};
use herald_messages::{
    BlueprintNotification, ChildKind, ConnectionState, EntryKind, EntrySigner,
    SystemRegisterReplicaMsg, TrustedKeys,
};

use crate::support::{
    Cluster, PeerOptions, TestPeer, blueprint, cluster_of, eventually, node, pass, stall_process,
    start_cluster, start_cluster_on, start_cluster_with, start_hub,
};

/// Two heartbeat intervals and a little: the longest a failover may take (decision 1).
const FAILOVER_WITHIN: Duration = Duration::from_secs(61);
/// SC-010, SC-014, SC-016.
const THIRTY_SECONDS: Duration = Duration::from_secs(30);

/// A cluster of three hubs sharing one history, `n0` holding `extra` published blueprints, and
/// a peer connected to `n0` with a complete replica.
async fn connected(extra: usize) -> (Cluster, TestPeer) {
    connected_with(extra, PeerOptions::default()).await
}

async fn connected_with(extra: usize, options: PeerOptions) -> (Cluster, TestPeer) {
    connected_on(start_cluster(3).await, extra, options).await
}

async fn connected_on(cluster: Cluster, extra: usize, options: PeerOptions) -> (Cluster, TestPeer) {
    for n in 0..extra {
        cluster
            .hub(0)
            .publish(&format!("flow-{n}"), &format!(r#"{{"n":{n}}}"#))
            .await
            .unwrap();
    }
    let peer = cluster.start_peer("peer-a", options).await;
    peer.connected_to(&cluster.id(0), THIRTY_SECONDS).await;
    peer.synced_to(cluster.hub(0).version().await, THIRTY_SECONDS)
        .await;
    (cluster, peer)
}

async fn stop(cluster: Cluster, peer: TestPeer) {
    peer.shutdown().await;
    cluster.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Connection and failover
// ---------------------------------------------------------------------------------------------

/// FR-026, SC-014, SC-010: the peer dials the hub of lowest priority first (whatever the order
/// of the configuration), connects within 30 s and holds a complete replica within 30 s.
#[tokio::test(start_paused = true)]
async fn connects_to_the_first_hub_by_priority_and_replicates_everything() {
    let mut cluster = start_cluster(3).await;
    for n in 0..5 {
        cluster
            .hub(0)
            .publish(&format!("flow-{n}"), "{}")
            .await
            .unwrap();
    }
    cluster.endpoints.reverse();
    let peer = cluster.start_peer("peer-a", PeerOptions::default()).await;
    peer.connected_to(&cluster.id(0), THIRTY_SECONDS).await;
    assert_eq!(cluster.link.calls_to(&cluster.id(1)), 0);
    assert_eq!(cluster.link.calls_to(&cluster.id(2)), 0);
    let reports = peer.hub_reports().await;
    let order: Vec<_> = reports.iter().map(|r| r.id.clone()).collect();
    assert_eq!(order, vec![cluster.id(0), cluster.id(1), cluster.id(2)]);
    assert!(reports[0].current && !reports[1].current);

    peer.synced_to(6, THIRTY_SECONDS).await;
    assert_eq!(peer.view().await, cluster.hub(0).view().await);
    let status = peer.replica_status().await;
    assert_eq!((status.full_syncs, status.incremental_syncs), (1, 0));
    assert_eq!(status.entries_received, 6);
    assert_eq!(peer.store.entries().len(), 6, "the replica is durable");
    assert_eq!(peer.store.checkpoint().unwrap().version, 6);
    assert_eq!(
        cluster.hub(0).peers().await[0].peer_id,
        node("peer-a"),
        "the hub knows its peer"
    );
    stop(cluster, peer).await;
}

/// SC-014, decision 2: with the first hub down from the start, the peer is connected to the
/// second within 30 s.
#[tokio::test(start_paused = true)]
async fn with_the_first_hub_down_the_peer_reaches_the_second_within_30_s() {
    let cluster = start_cluster(3).await;
    cluster.cut(0, true);
    let started = tokio::time::Instant::now();
    let peer = cluster.start_peer("peer-a", PeerOptions::default()).await;
    peer.connected_to(&cluster.id(1), THIRTY_SECONDS).await;
    assert!(started.elapsed() < THIRTY_SECONDS);
    let status = peer.connection_status().await;
    assert_eq!(status.failovers, 0);
    assert!(
        status.last_error.is_none(),
        "cleared on connect: {status:?}"
    );
    let reports = peer.hub_reports().await;
    assert_eq!(reports[0].consecutive_failures, 2, "n0 used its budget");
    peer.synced_to(1, THIRTY_SECONDS).await;
    stop(cluster, peer).await;
}

/// FR-035, FR-036, decision 1: the peer fails over after two missed heartbeats (not one) and
/// walks the ring in priority order, wrapping around: n0 → n1 → n2 → n0. Publications made
/// meanwhile reach it on its new hub (a publication on the cut hub ends the push stream: see
/// `a_publication_while_the_push_stream_is_down_is_caught_up` for the busy loop it caused).
#[tokio::test(start_paused = true)]
async fn heartbeat_failover_walks_the_ring_n0_n1_n2_n0() {
    let (cluster, peer) = connected(0).await;
    let mut path = vec![peer.hub().await.unwrap()];

    cluster.cut(0, true);
    eventually("one heartbeat missed", FAILOVER_WITHIN, || async {
        peer.connection_status().await.missed_heartbeats == 1
    })
    .await;
    assert_eq!(
        peer.hub().await,
        Some(cluster.id(0)),
        "one miss does not fail over"
    );
    cluster.hub(0).publish("during-outage", "{}").await.unwrap();
    peer.connected_to(&cluster.id(1), FAILOVER_WITHIN).await;
    path.push(peer.hub().await.unwrap());
    peer.synced_to(2, THIRTY_SECONDS).await;
    assert!(peer.get("during-outage").await.is_some());

    cluster.cut(1, true);
    peer.connected_to(&cluster.id(2), FAILOVER_WITHIN * 2).await;
    path.push(peer.hub().await.unwrap());

    cluster.cut(0, false);
    cluster.cut(2, true);
    peer.connected_to(&cluster.id(0), FAILOVER_WITHIN * 2).await;
    path.push(peer.hub().await.unwrap());

    assert_eq!(
        path,
        vec![cluster.id(0), cluster.id(1), cluster.id(2), cluster.id(0)]
    );
    assert_eq!(peer.connection_status().await.failovers, 3);
    peer.synced_to(2, THIRTY_SECONDS).await;
    assert!(peer.get("during-outage").await.is_some());
    let status = peer.replica_status().await;
    assert_eq!(
        status.full_syncs, 1,
        "one history: every hub continues incrementally"
    );
    stop(cluster, peer).await;
}

/// FR-035: after a failover the peer stays on its new hub when the old one comes back.
#[tokio::test(start_paused = true)]
async fn no_automatic_failback() {
    let (cluster, peer) = connected(0).await;
    cluster.cut(0, true);
    peer.connected_to(&cluster.id(1), FAILOVER_WITHIN * 2).await;
    cluster.cut(0, false);
    let calls = cluster.link.calls_to(&cluster.id(0));
    pass(Duration::from_secs(600)).await;
    assert_eq!(peer.hub().await, Some(cluster.id(1)));
    assert_eq!(
        cluster.link.calls_to(&cluster.id(0)),
        calls,
        "n0 is not even tried"
    );
    assert_eq!(peer.connection_status().await.failovers, 1);
    stop(cluster, peer).await;
}

/// FR-030: with every hub cut off the peer is isolated, keeps serving its replica and keeps
/// trying with capped backoff; when a hub comes back it connects again and syncs in full.
#[tokio::test(start_paused = true)]
async fn isolated_peer_serves_its_replica_and_syncs_in_full_when_a_hub_returns() {
    let (cluster, peer) = connected(3).await;
    let before = peer.view().await;
    for hub in 0..3 {
        cluster.cut(hub, true);
    }
    eventually("isolated", FAILOVER_WITHIN * 2, || async {
        peer.connection_status().await.state == ConnectionState::Isolated
    })
    .await;
    assert_eq!(peer.view().await, before, "the replica is still served");
    assert!(peer.get("flow-2").await.is_some());

    let calls = cluster.link.calls_to(&cluster.id(0));
    pass(Duration::from_secs(600)).await;
    let tries = cluster.link.calls_to(&cluster.id(0)) - calls;
    // Rounds of two attempts, 1 s doubling to 60 s with full jitter: more than a few, far from
    // a busy loop.
    assert!(
        (4..=200).contains(&tries),
        "attempts on n0 in 10 min: {tries}"
    );
    // Isolated, or in the middle of a round.
    assert_eq!(peer.hub().await, None);
    assert_eq!(peer.view().await, before);

    cluster
        .hub(1)
        .publish("while-isolated", "{}")
        .await
        .unwrap();
    cluster.cut(1, false);
    peer.connected_to(&cluster.id(1), FAILOVER_WITHIN).await;
    peer.synced_to(5, THIRTY_SECONDS).await;
    let status = peer.replica_status().await;
    assert_eq!(status.full_syncs, 2, "after isolation: a full sync");
    assert_eq!(status.last_sync_kind.as_deref(), Some("full"));
    assert_eq!(peer.view().await, cluster.hub(1).view().await);
    stop(cluster, peer).await;
}

// ---------------------------------------------------------------------------------------------
// Replication
// ---------------------------------------------------------------------------------------------

/// FR-018, FR-033, SC-010, SC-016: the first connect syncs in full; a publication is pushed and
/// synced incrementally within 30 s, transferring only the new entry.
#[tokio::test(start_paused = true)]
async fn a_publication_is_pushed_and_synced_incrementally() {
    let (cluster, peer) = connected(4).await;
    let status = peer.replica_status().await;
    assert_eq!((status.full_syncs, status.entries_received), (1, 5));

    let entry = cluster.hub(0).publish("fresh", r#"{"x":1}"#).await.unwrap();
    let published = tokio::time::Instant::now();
    peer.synced_to(entry.version, THIRTY_SECONDS).await;
    assert!(
        published.elapsed() < Duration::from_secs(1),
        "pushed, not polled"
    );
    assert_eq!(peer.get("fresh").await.unwrap(), entry);
    let status = peer.replica_status().await;
    assert_eq!((status.full_syncs, status.incremental_syncs), (1, 1));
    assert_eq!(status.entries_received, 6, "only the new entry travelled");

    let deprecated = cluster.hub(0).deprecate("fresh").await.unwrap();
    peer.synced_to(deprecated.version, THIRTY_SECONDS).await;
    let held = peer.get("fresh").await.unwrap();
    assert_eq!((held.kind, held.is_active), (EntryKind::Deprecated, false));
    assert_eq!(peer.replica_status().await.entries_received, 7);
    stop(cluster, peer).await;
}

/// FR-033: a burst of 20 publications is coalesced into far fewer than 20 syncs, and every
/// entry travels once.
#[tokio::test(start_paused = true)]
async fn a_burst_of_publications_is_coalesced() {
    let (cluster, peer) = connected(0).await;
    let before = peer.replica_status().await;
    let hub = cluster.hub(0).authority.clone();
    let calls: Vec<_> = (0..20)
        .map(|n| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let request = herald_messages::PublishRequest {
                    blueprint_id: blueprint(&format!("burst-{n}")),
                    document: bytes::Bytes::from_static(b"{}"),
                    published_by: "admin".into(),
                    metadata: std::collections::BTreeMap::new(),
                };
                hub.call(
                    |reply| {
                        herald_messages::SystemRegisterAuthorityMsg::Publish(
                            herald_messages::Validate::validated(request).unwrap(),
                            reply,
                        )
                    },
                    crate::support::CALL,
                )
                .await
                .unwrap()
                .unwrap()
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    peer.synced_to(21, THIRTY_SECONDS).await;
    let after = peer.replica_status().await;
    let syncs = after.incremental_syncs - before.incremental_syncs;
    assert!(syncs <= 5, "20 publications took {syncs} syncs");
    assert_eq!(after.entries_received - before.entries_received, 20);
    assert_eq!(peer.view().await.total_blueprints, 21);
    stop(cluster, peer).await;
}

/// Duplicated and reordered notifications (old versions, repeats) change nothing: no sync, no
/// version going backwards.
#[tokio::test(start_paused = true)]
async fn duplicated_and_reordered_notifications_change_nothing() {
    let (cluster, peer) = connected(5).await;
    let view = peer.view().await;
    let status = peer.replica_status().await;
    let history = view.history_id.clone().unwrap();
    let notification = |version: u64| BlueprintNotification {
        history_id: history.clone(),
        blueprint_id: blueprint(&format!("flow-{}", version.saturating_sub(2))),
        version,
        kind: EntryKind::Published,
        published_at: herald_messages::Timestamp::EPOCH,
        published_by: "admin".into(),
        checksum: String::new(),
        document_bytes: 2,
        sequence: version,
    };
    for version in [6, 6, 3, 5, 1, 4, 6, 2] {
        peer.replica
            .cast(SystemRegisterReplicaMsg::Notified(notification(version)))
            .unwrap();
    }
    pass(Duration::from_secs(5)).await;
    assert_eq!(peer.view().await, view);
    let now = peer.replica_status().await;
    assert_eq!(
        (now.incremental_syncs, now.entries_received),
        (status.incremental_syncs, status.entries_received)
    );

    // A real publication then a stale repeat of it: the version holds.
    let entry = cluster.hub(0).publish("late", "{}").await.unwrap();
    peer.synced_to(entry.version, THIRTY_SECONDS).await;
    peer.replica
        .cast(SystemRegisterReplicaMsg::Notified(notification(3)))
        .unwrap();
    pass(Duration::from_secs(5)).await;
    assert_eq!(peer.version().await, entry.version);
    stop(cluster, peer).await;
}

/// FR-034, SC-016: pushes lost on the way (the stream stays open) are caught up by the next
/// heartbeat, whose answer tells the peer it is behind.
#[tokio::test(start_paused = true)]
async fn lost_pushes_are_caught_up_at_the_next_heartbeat() {
    let (cluster, peer) = connected(0).await;
    cluster.link.mute_pushes(true);
    let entry = cluster.hub(0).publish("unpushed", "{}").await.unwrap();
    pass(Duration::from_secs(1)).await;
    assert!(peer.get("unpushed").await.is_none(), "the push was lost");
    peer.synced_to(
        entry.version,
        HeartbeatConfig::default().interval + Duration::from_secs(1),
    )
    .await;
    assert_eq!(peer.replica_status().await.entries_received, 2);
    stop(cluster, peer).await;
}

/// FR-032, FR-034: the periodic sync (every 5 min) catches up what the pushes lost, even
/// without the heartbeats' help.
#[tokio::test(start_paused = true)]
async fn the_periodic_sync_catches_up_lost_pushes() {
    // Heartbeats too rare to help within the test, and hubs that keep silent sessions.
    let hourly = Duration::from_secs(3_600);
    let options = PeerOptions {
        heartbeat: HeartbeatConfig {
            interval: hourly,
            ..HeartbeatConfig::default()
        },
        ..PeerOptions::default()
    };
    let hubs = AuthorityConfig {
        session_expiry: hourly * 2,
        ..AuthorityConfig::default()
    };
    let store = InMemoryBlueprintStore::new();
    let cluster = start_cluster_with(vec![store.clone(), store.clone(), store], hubs).await;
    let period = ReplicaConfig::default().sync_interval;
    let (cluster, peer) = connected_on(cluster, 0, options).await;
    cluster.link.mute_pushes(true);
    let entry = cluster.hub(0).publish("unpushed", "{}").await.unwrap();
    pass(Duration::from_secs(10)).await;
    assert!(peer.get("unpushed").await.is_none(), "the push was lost");
    peer.synced_to(entry.version, period).await;
    let status = peer.replica_status().await;
    assert_eq!((status.incremental_syncs, status.entries_received), (1, 2));
    stop(cluster, peer).await;
}

/// FR-034: a publication made while the push stream is down (the hub briefly cut off, too
/// briefly for a failover) is caught up when the peer subscribes again, without waiting for a
/// heartbeat; later pushes arrive again. Regression: a hub that refused the new subscription
/// at once was called again at once, in a busy loop that starved the runtime (under paused
/// time, virtual time stopped; in production, a hot loop of failing calls).
#[tokio::test(start_paused = true)]
async fn a_publication_while_the_push_stream_is_down_is_caught_up() {
    let (cluster, peer) = connected(0).await;
    // Right after a heartbeat, so the next one is 30 s away.
    let sent = peer.heartbeats().await.sent;
    eventually("a heartbeat", THIRTY_SECONDS, || async {
        peer.heartbeats().await.sent > sent
    })
    .await;
    pass(Duration::from_millis(100)).await;
    cluster.cut(0, true);
    let entry = cluster.hub(0).publish("while-cut", "{}").await.unwrap();
    pass(Duration::from_secs(5)).await;
    cluster.cut(0, false);
    peer.synced_to(entry.version, Duration::from_secs(5)).await;
    assert_eq!(peer.hub().await, Some(cluster.id(0)), "no failover");
    assert_eq!(peer.connection_status().await.failovers, 0);

    let next = cluster.hub(0).publish("after", "{}").await.unwrap();
    peer.synced_to(next.version, Duration::from_secs(1)).await;
    stop(cluster, peer).await;
}

/// Versions never go backwards, across pushes, heartbeats, failovers and a full resync after
/// isolation, even when the newest entry is a deprecation (which a full sync does not carry).
/// Regression: the checkpoint of a full sync was the newest *active* entry's version, here
/// 4 → 2.
#[tokio::test(start_paused = true)]
async fn versions_never_go_backwards() {
    let (cluster, peer) = connected(2).await;
    cluster.hub(0).deprecate("flow-1").await.unwrap();
    peer.synced_to(4, THIRTY_SECONDS).await;
    let watcher = {
        let replica = peer.replica.clone();
        tokio::spawn(async move {
            let mut highest = 0;
            loop {
                let view = replica
                    .call(SystemRegisterReplicaMsg::View, crate::support::CALL)
                    .await;
                let Ok(view) = view else { return highest };
                assert!(
                    view.version >= highest,
                    "version went back from {highest} to {}",
                    view.version
                );
                highest = view.version;
                pass(Duration::from_millis(200)).await;
            }
        })
    };
    for hub in 0..3 {
        cluster.cut(hub, true);
    }
    eventually("isolated", FAILOVER_WITHIN * 2, || async {
        peer.connection_status().await.state == ConnectionState::Isolated
    })
    .await;
    cluster.cut(2, false);
    peer.connected_to(&cluster.id(2), FAILOVER_WITHIN).await;
    eventually("the full resync", THIRTY_SECONDS, || async {
        peer.replica_status().await.full_syncs == 2
    })
    .await;
    pass(Duration::from_secs(90)).await;
    assert_eq!(peer.version().await, 4);
    assert!(!watcher.is_finished(), "{:?}", watcher.await);
    watcher.abort();
    stop(cluster, peer).await;
}

/// A restarted peer (a new tree over the same replica store) resumes incrementally: only the
/// entries published while it was down travel.
#[tokio::test(start_paused = true)]
async fn a_restarted_peer_resumes_incrementally() {
    let (cluster, peer) = connected(3).await;
    let store = peer.store.clone();
    peer.shutdown().await;
    for n in 0..3 {
        cluster
            .hub(0)
            .publish(&format!("later-{n}"), "{}")
            .await
            .unwrap();
    }
    let peer = cluster
        .start_peer(
            "peer-a",
            PeerOptions {
                store: store.clone(),
                ..PeerOptions::default()
            },
        )
        .await;
    assert_eq!(
        peer.version().await,
        4,
        "the replica is served from its store at once"
    );
    peer.connected_to(&cluster.id(0), THIRTY_SECONDS).await;
    peer.synced_to(7, THIRTY_SECONDS).await;
    let status = peer.replica_status().await;
    assert_eq!((status.full_syncs, status.incremental_syncs), (0, 1));
    assert_eq!(status.entries_received, 3, "only what was missed travelled");
    assert_eq!(peer.view().await, cluster.hub(0).view().await);
    assert_eq!(store.checkpoint().unwrap().version, 7);
    stop(cluster, peer).await;
}

/// Decision 3: a hub with another history (another store) forces a full sync; the replica
/// becomes that hub's register, nothing of the old history survives.
#[tokio::test(start_paused = true)]
async fn a_hub_with_another_history_forces_a_full_sync() {
    let cluster = start_cluster_on(vec![
        InMemoryBlueprintStore::new(),
        InMemoryBlueprintStore::new(),
    ])
    .await;
    for n in 0..3 {
        cluster
            .hub(0)
            .publish(&format!("old-{n}"), "{}")
            .await
            .unwrap();
    }
    cluster.hub(1).publish("new-0", "{}").await.unwrap();
    let peer = cluster.start_peer("peer-a", PeerOptions::default()).await;
    peer.synced_to(4, THIRTY_SECONDS).await;
    let old_history = peer.view().await.history_id;

    cluster.cut(0, true);
    peer.connected_to(&cluster.id(1), FAILOVER_WITHIN).await;
    let new_history = cluster.hub(1).status().await.history_id;
    assert_ne!(old_history, new_history);
    eventually("the full sync", THIRTY_SECONDS, || async {
        peer.replica_status().await.full_syncs == 2
    })
    .await;
    let view = peer.view().await;
    assert_eq!(view, cluster.hub(1).view().await);
    assert_eq!(view.history_id, new_history);
    assert!(peer.get("old-0").await.is_none());
    assert!(peer.get("new-0").await.is_some());
    let checkpoint = peer.store.checkpoint().unwrap();
    assert_eq!(
        (checkpoint.history_id, checkpoint.version),
        (new_history.unwrap(), 2)
    );
    assert_eq!(peer.store.entries().len(), 2, "the store was replaced too");
    stop(cluster, peer).await;
}

// ---------------------------------------------------------------------------------------------
// Supervision
// ---------------------------------------------------------------------------------------------

/// A killed replica is restarted by the supervisor, replays its store (served at once, no full
/// sync), learns the session from the connection and receives pushes again.
#[tokio::test(start_paused = true)]
async fn a_killed_replica_restarts_from_its_store() {
    let (cluster, peer) = connected(3).await;
    let view = peer.view().await;
    peer.kill(ChildKind::SystemRegisterReplica).await;
    eventually("restarted", THIRTY_SECONDS, || async {
        peer.restarts(ChildKind::SystemRegisterReplica).await == 1
    })
    .await;
    assert_eq!(peer.view().await, view, "replayed from its store");
    eventually("resumed with the session", THIRTY_SECONDS, || async {
        peer.replica_status().await.incremental_syncs == 1
    })
    .await;
    let status = peer.replica_status().await;
    assert_eq!((status.full_syncs, status.entries_received), (0, 0));

    let entry = cluster.hub(0).publish("after-restart", "{}").await.unwrap();
    peer.synced_to(entry.version, Duration::from_secs(1)).await;
    assert!(peer.children().await.iter().all(|c| c.running));
    stop(cluster, peer).await;
}

/// A killed connection is restarted and opens a new session; the monitor and the replica
/// follow it (heartbeats on the new session, pushes through it).
#[tokio::test(start_paused = true)]
async fn a_killed_connection_restarts_and_the_others_follow_its_new_session() {
    let (cluster, peer) = connected(1).await;
    let old = peer.session().await.unwrap().grant.session_id;
    peer.kill(ChildKind::CentralNodeConnection).await;
    eventually("restarted", THIRTY_SECONDS, || async {
        peer.restarts(ChildKind::CentralNodeConnection).await == 1
    })
    .await;
    peer.connected_to(&cluster.id(0), THIRTY_SECONDS).await;
    let new = peer.session().await.unwrap().grant.session_id;
    assert_ne!(old, new);

    let sent = peer.heartbeats().await.sent;
    eventually("heartbeats on the new session", FAILOVER_WITHIN, || async {
        peer.heartbeats().await.sent > sent + 1
    })
    .await;
    let hub_peer = cluster.hub(0).peers().await;
    assert_eq!(hub_peer.len(), 1);
    assert_eq!(hub_peer[0].session_id, new);
    assert!(hub_peer[0].last_heartbeat_at.is_some());
    assert_eq!(peer.connection_status().await.missed_heartbeats, 0);

    let entry = cluster.hub(0).publish("after-restart", "{}").await.unwrap();
    peer.synced_to(entry.version, Duration::from_secs(1)).await;
    assert_eq!(peer.replica_status().await.full_syncs, 1);
    stop(cluster, peer).await;
}

/// A killed heartbeat monitor is restarted, learns the session from the connection, and
/// failover works as before.
#[tokio::test(start_paused = true)]
async fn a_killed_monitor_restarts_and_still_fails_over() {
    let (cluster, peer) = connected(0).await;
    peer.kill(ChildKind::HeartbeatMonitor).await;
    eventually("restarted", THIRTY_SECONDS, || async {
        peer.restarts(ChildKind::HeartbeatMonitor).await == 1
    })
    .await;
    eventually("heartbeats again", FAILOVER_WITHIN, || async {
        peer.heartbeats().await.sent >= 1
    })
    .await;
    cluster.cut(0, true);
    peer.connected_to(&cluster.id(1), FAILOVER_WITHIN).await;
    stop(cluster, peer).await;
}

/// A hub that restarts forgets its sessions: the peer's next heartbeat is refused as an
/// unknown session, it reconnects to the same hub and resumes incrementally.
#[tokio::test(start_paused = true)]
async fn a_restarted_hub_makes_the_peer_reconnect() {
    let (cluster, peer) = connected(2).await;
    let old = peer.session().await.unwrap().grant.session_id;
    cluster.hub(0).kill().await;
    eventually("the hub restarted", THIRTY_SECONDS, || async {
        cluster.hub(0).restarts().await == 1
    })
    .await;
    eventually("a new session", FAILOVER_WITHIN, || async {
        peer.session()
            .await
            .is_some_and(|session| session.grant.session_id != old)
    })
    .await;
    assert_eq!(peer.hub().await, Some(cluster.id(0)));
    assert_eq!(peer.connection_status().await.failovers, 0);
    let entry = cluster.hub(0).publish("after", "{}").await.unwrap();
    peer.synced_to(entry.version, Duration::from_secs(1)).await;
    let status = peer.replica_status().await;
    assert_eq!(status.full_syncs, 1, "same history: incremental");
    stop(cluster, peer).await;
}

/// A replica store outage does not stop the replica (it serves from memory), and loses
/// nothing: what was synced during the outage is made durable later, so a restarted peer has
/// it. Regression: the next successful write stored only the newest entries with a checkpoint
/// covering the ones the store never got, so a restarted peer never fetched them again.
#[tokio::test(start_paused = true)]
async fn a_replica_store_outage_loses_nothing() {
    let store = InMemoryReplicaStore::new();
    let options = PeerOptions {
        store: store.clone(),
        ..PeerOptions::default()
    };
    let (cluster, peer) = connected_with(1, options).await;
    store.set_down(true);
    let unstored = cluster.hub(0).publish("unstored", "{}").await.unwrap();
    peer.synced_to(unstored.version, Duration::from_secs(1))
        .await;
    assert!(peer.get("unstored").await.is_some(), "served from memory");
    assert!(peer.replica_status().await.last_error.is_some());
    assert_eq!(
        store.checkpoint().unwrap().version,
        2,
        "the store kept the last one"
    );

    store.set_down(false);
    let stored = cluster.hub(0).publish("stored", "{}").await.unwrap();
    peer.synced_to(stored.version, Duration::from_secs(1)).await;
    assert!(peer.replica_status().await.last_error.is_none());
    peer.shutdown().await;

    let names: Vec<String> = store
        .entries()
        .iter()
        .map(|entry| entry.blueprint_id.to_string())
        .collect();
    assert!(
        names.contains(&"unstored".to_owned()),
        "the checkpoint ({:?}) covers an entry the store never got: {names:?}",
        store.checkpoint().map(|c| c.version)
    );
    let peer = cluster
        .start_peer(
            "peer-a",
            PeerOptions {
                store,
                ..PeerOptions::default()
            },
        )
        .await;
    peer.synced_to(stored.version, THIRTY_SECONDS).await;
    assert!(peer.get("unstored").await.is_some());
    stop(cluster, peer).await;
}

// ---------------------------------------------------------------------------------------------
// Hubs that do not answer (black holes, not refusals)
// ---------------------------------------------------------------------------------------------

/// FR-036, decision 1: a hub that stops answering (every call runs into its deadline) is
/// failed over after two missed heartbeats of 30 s each: within one interval and two deadlines
/// (90 s), never after a single deadline. Regression: a tick that found the first heartbeat
/// still in flight was dropped, which stretched this to 120 s.
#[tokio::test(start_paused = true)]
async fn a_silent_hub_is_failed_over_after_two_missed_deadlines() {
    let (cluster, peer) = connected(0).await;
    let config = HeartbeatConfig::default();
    let sent = peer.heartbeats().await.sent;
    eventually("a heartbeat", config.interval * 2, || async {
        peer.heartbeats().await.sent > sent
    })
    .await;
    cluster.link.set_held(&cluster.id(0), true);
    let silent = tokio::time::Instant::now();
    peer.connected_to(&cluster.id(1), Duration::from_secs(300))
        .await;
    let took = silent.elapsed();
    assert!(
        took >= config.timeout * config.missed_limit,
        "two deadlines ran out first: {took:?}"
    );
    assert!(
        took <= config.interval + config.timeout * config.missed_limit + Duration::from_secs(1),
        "one interval and two deadlines at most: {took:?}"
    );
    stop(cluster, peer).await;
}

// ---------------------------------------------------------------------------------------------
// This process's own stalls (issue 7, item 5)
// ---------------------------------------------------------------------------------------------

/// A hub that answers every call after this long: slow, but well within the 30 s deadline.
const SLOW_HUB: Duration = Duration::from_secs(5);
/// A stall of the peer's own process past the heartbeat deadline (30 s) but under the grace of
/// the old length-based rule (1.5 × 30 s + 1 s = 46 s), which counted it as a miss.
const OWN_STALL: Duration = Duration::from_secs(40);

/// Waits until a heartbeat goes out; returns how many were sent by then.
async fn next_heartbeat(peer: &TestPeer, within: Duration) -> u64 {
    let before = peer.heartbeats().await.sent;
    eventually("a heartbeat goes out", within, || async {
        peer.heartbeats().await.sent > before
    })
    .await;
    peer.heartbeats().await.sent
}

/// Issue 7, item 5: the peer's own process stalls (`OWN_STALL`, past the deadline) while a
/// heartbeat waits for a slow but healthy hub, on two consecutive heartbeats. Neither is a miss:
/// the peer stays on its hub with its session. Regression: a failure that arrived within
/// 1.5 × deadline + 1 s of sending was a miss whatever this process had been doing, so two such
/// stalls failed over a healthy hub.
#[tokio::test(start_paused = true)]
async fn own_stalls_across_two_heartbeats_to_a_slow_hub_are_not_misses() {
    let (cluster, peer) = connected(0).await;
    let config = HeartbeatConfig::default();
    let session = peer.session().await.unwrap().grant.session_id;
    cluster.link.set_delay(&cluster.id(0), SLOW_HUB);
    next_heartbeat(&peer, config.interval * 2).await;
    for round in 1..=2 {
        pass(Duration::from_secs(1)).await;
        stall_process(OWN_STALL).await;
        // The waiting heartbeat is judged at its deadline, after the stall; the next one goes
        // out at once (a tick fell due meanwhile), and is the next to stall.
        next_heartbeat(&peer, Duration::from_secs(1)).await;
        let report = peer.heartbeats().await;
        assert_eq!(report.missed, 0, "round {round}: excused, not missed");
        assert_eq!(peer.connection_status().await.missed_heartbeats, 0);
    }
    pass(config.interval * 4).await;
    let status = peer.connection_status().await;
    assert_eq!(status.hub_id, Some(cluster.id(0)), "{status:?}");
    assert_eq!(status.session_id, Some(session), "the same session");
    assert_eq!(status.failovers, 0);
    let report = peer.heartbeats().await;
    assert_eq!(report.missed, 0);
    assert!(
        report.last_latency_ms >= Some(5_000),
        "the slow hub answers again: {report:?}"
    );
    stop(cluster, peer).await;
}

/// The same timing as `own_stalls_across_two_heartbeats_to_a_slow_hub_are_not_misses` with the
/// hub silent instead of slow and this process running all along: the two heartbeats are
/// misses and the peer fails over.
#[tokio::test(start_paused = true)]
async fn the_same_timing_with_a_silent_hub_and_no_stall_fails_over() {
    let (cluster, peer) = connected(0).await;
    let config = HeartbeatConfig::default();
    cluster.link.set_held(&cluster.id(0), true);
    next_heartbeat(&peer, config.interval * 2).await;
    pass(Duration::from_secs(1)).await;
    pass(OWN_STALL).await;
    assert_eq!(peer.heartbeats().await.missed, 1, "the first is a miss");
    assert_eq!(peer.hub().await, Some(cluster.id(0)));
    pass(Duration::from_secs(1)).await;
    peer.connected_to(&cluster.id(1), OWN_STALL).await;
    assert_eq!(peer.connection_status().await.failovers, 1);
    assert!(
        peer.stalls.record().stalls().next().is_none(),
        "this process never stalled"
    );
    stop(cluster, peer).await;
}

/// A stall of this process only postpones the judgement of a hub that is really silent: the
/// heartbeat that waited across the stall is excused, and the next two, which find the process
/// running, fail over within two deadlines of its end.
#[tokio::test(start_paused = true)]
async fn a_silent_hub_is_still_failed_over_after_an_own_stall() {
    let (cluster, peer) = connected(0).await;
    let config = HeartbeatConfig::default();
    cluster.link.set_held(&cluster.id(0), true);
    next_heartbeat(&peer, config.interval * 2).await;
    pass(Duration::from_secs(1)).await;
    stall_process(OWN_STALL).await;
    let resumed = tokio::time::Instant::now();
    next_heartbeat(&peer, Duration::from_secs(1)).await;
    assert_eq!(peer.heartbeats().await.missed, 0, "excused");
    peer.connected_to(&cluster.id(1), config.timeout * 3).await;
    let took = resumed.elapsed();
    assert!(
        took >= config.timeout * config.missed_limit,
        "two deadlines after the stall: {took:?}"
    );
    assert!(
        took <= config.timeout * config.missed_limit + Duration::from_secs(1),
        "and no more: {took:?}"
    );
    assert_eq!(peer.connection_status().await.failovers, 1);
    stop(cluster, peer).await;
}

/// Entries whose document does not match their checksum (damaged on the way) are refused as a
/// whole: the replica keeps what it had, reports why, and takes the entries once they arrive
/// intact.
#[tokio::test(start_paused = true)]
async fn a_sync_with_a_damaged_entry_is_refused_and_retried() {
    let (cluster, peer) = connected(2).await;
    let before = peer.replica_status().await;
    cluster.link.tamper_syncs(true);
    let entry = cluster
        .hub(0)
        .publish("damaged", r#"{"x":1}"#)
        .await
        .unwrap();
    let refused = wait_for_status(&peer, |status| status.last_error.is_some()).await;
    assert!(refused.last_error.unwrap().contains("checksum"));
    assert_eq!(
        peer.replica_status().await.checkpoint,
        before.checkpoint,
        "nothing taken"
    );
    assert!(peer.get("damaged").await.is_none());
    cluster.link.tamper_syncs(false);
    peer.synced_to(entry.version, Duration::from_secs(600))
        .await;
    assert_eq!(peer.get("damaged").await.unwrap(), entry);
    stop(cluster, peer).await;
}

/// Issue 10 item 4: two hubs sharing a store sign with their own keys (the genesis seed too),
/// and a peer trusting both takes their entries. A forger with access to the store appends an
/// entry with a sound checksum and no signature: the hubs serve it, the peer refuses every
/// sync that carries it, keeps its last good version and says which entry and why, while the
/// hubs' later (signed) entries wait behind it.
#[tokio::test(start_paused = true)]
async fn a_peer_trusting_hub_keys_takes_their_entries_and_refuses_a_forged_one() {
    let store = InMemoryBlueprintStore::new();
    let (key_0, key_1) = (
        EntrySigner::from_bytes([10; 32]),
        EntrySigner::from_bytes([11; 32]),
    );
    let mut hubs = Vec::new();
    for (index, key) in [&key_0, &key_1].into_iter().enumerate() {
        let config = AuthorityConfig {
            signer: Some(Arc::new(key.clone())),
            ..AuthorityConfig::default()
        };
        let hub = start_hub(&format!("n{index}"), store.clone(), config).await;
        hub.ready().await;
        hubs.push(hub);
    }
    let cluster = cluster_of(hubs);
    let seed = &store.entries()[0];
    assert_eq!(seed.signature.as_ref().unwrap().key_id, key_0.key_id());

    let options = PeerOptions {
        replica: ReplicaConfig {
            trusted_keys: TrustedKeys::new([key_0.trusted_key(), key_1.trusted_key()]),
            ..ReplicaConfig::default()
        },
        ..PeerOptions::default()
    };
    let peer = cluster.start_peer("peer-a", options).await;
    peer.connected_to(&cluster.id(0), THIRTY_SECONDS).await;
    let on_0 = cluster.hub(0).publish("on-n0", "{}").await.unwrap();
    let on_1 = cluster.hub(1).publish("on-n1", "{}").await.unwrap();
    peer.synced_to(on_1.version, THIRTY_SECONDS).await;
    assert_eq!(peer.get("on-n0").await.unwrap(), on_0);
    let taken = peer.get("on-n1").await.unwrap();
    assert_eq!(taken.signature.as_ref().unwrap().key_id, key_1.key_id());
    assert_eq!(peer.replica_status().await.refused, None);

    let mut forged = on_1.as_ref().clone();
    forged.version = on_1.version + 1;
    forged.blueprint_id = blueprint("forged");
    forged.document = r#"{"pay":"mallory"}"#.into();
    forged.checksum = herald_messages::SystemRegisterEntry::checksum_of(&forged.document);
    forged.signature = None;
    store.append(forged.clone(), on_1.version).await.unwrap();
    eventually(
        "the hubs serve the forged entry",
        THIRTY_SECONDS,
        || async { cluster.hub(0).version().await == forged.version },
    )
    .await;
    cluster.hub(0).publish("after", "{}").await.unwrap();

    let refused = wait_for_status(&peer, |status| status.refused.is_some()).await;
    let reason = refused.refused.unwrap();
    assert!(
        reason.contains(&format!("forged (version {}): unsigned", forged.version)),
        "{reason}"
    );
    assert!(refused.refused_entries >= 1);
    pass(Duration::from_secs(600)).await;
    let status = peer.replica_status().await;
    assert_eq!(
        status.checkpoint.unwrap().version,
        on_1.version,
        "the last good version, however often it syncs"
    );
    assert!(peer.get("forged").await.is_none());
    assert!(peer.get("after").await.is_none());
    stop(cluster, peer).await;
}

async fn wait_for_status(
    peer: &crate::support::TestPeer,
    check: impl Fn(&herald_messages::ReplicaStatus) -> bool,
) -> herald_messages::ReplicaStatus {
    for _ in 0..600 {
        let status = peer.replica_status().await;
        if check(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the replica status never matched");
}

/// A hub that answers and refuses the heartbeats (this peer's clock is off) is alive: the peer
/// does not fail over, which would only meet the same refusal at every hub; it stays connected.
#[tokio::test(start_paused = true)]
async fn refused_heartbeats_are_not_misses() {
    let cluster = start_cluster(3).await;
    let peer = cluster.start_peer("peer-a", PeerOptions::default()).await;
    peer.connected_to(&cluster.id(0), THIRTY_SECONDS).await;
    cluster.link.refuse_heartbeats(true);
    tokio::time::sleep(HeartbeatConfig::default().interval * 10).await;
    peer.connected_to(&cluster.id(0), Duration::from_secs(1))
        .await;
    assert_eq!(peer.connection_status().await.failovers, 0);
    stop(cluster, peer).await;
}

/// SC-014 with a first hub that never answers (a black hole, not a refusal): its one timed-out
/// attempt spends its whole budget, so it holds the ring up for one connect deadline only and
/// the peer is on the second hub within 30 s. Regression: the silent hub got its full budget of
/// attempts (2 × the deadline + a pause, 60.5 s with a 30 s deadline) before the ring moved on.
#[tokio::test(start_paused = true)]
async fn sc014_a_silent_first_hub_holds_the_ring_up_for_one_deadline_only() {
    let cluster = start_cluster(3).await;
    cluster.link.set_held(&cluster.id(0), true);
    let started = tokio::time::Instant::now();
    let peer = cluster.start_peer("peer-a", PeerOptions::default()).await;
    let config = ConnectionConfig::default();
    peer.connected_to(&cluster.id(1), THIRTY_SECONDS).await;
    let took = started.elapsed();
    assert!(
        took >= config.connect_timeout,
        "waited for the first hub's deadline: {took:?}"
    );
    assert!(
        took < config.connect_timeout * 2,
        "but only one deadline: {took:?}"
    );
    peer.synced_to(1, THIRTY_SECONDS).await;
    stop(cluster, peer).await;
}

/// Decision 3: a sync from the old hub that answers late, after the peer failed over to a hub
/// with another history, does not cancel the full sync that history needs. Regression: the
/// late (incremental) answer cleared the pending full sync, and the next incremental answer
/// from the new hub replaced the whole replica with the entries above the old checkpoint.
#[tokio::test(start_paused = true)]
async fn a_late_sync_from_the_old_hub_does_not_cancel_the_full_sync() {
    let cluster = start_cluster_on(vec![
        InMemoryBlueprintStore::new(),
        InMemoryBlueprintStore::new(),
    ])
    .await;
    for n in 0..3 {
        cluster
            .hub(0)
            .publish(&format!("old-{n}"), "{}")
            .await
            .unwrap();
    }
    for n in 0..8 {
        cluster
            .hub(1)
            .publish(&format!("new-{n}"), "{}")
            .await
            .unwrap();
    }
    let peer = cluster.start_peer("peer-a", PeerOptions::default()).await;
    peer.synced_to(4, THIRTY_SECONDS).await;
    let config = HeartbeatConfig::default();
    let sent = peer.heartbeats().await.sent;
    eventually("a heartbeat", config.interval * 2, || async {
        peer.heartbeats().await.sent > sent
    })
    .await;
    // n0 answers 45 s late from now on: heartbeats miss (30 s deadline), syncs do not (60 s).
    let slow = tokio::time::Instant::now();
    cluster
        .link
        .set_delay(&cluster.id(0), Duration::from_secs(45));
    pass(Duration::from_secs(50)).await;
    // Pushed at once (the stream is open); the sync it starts answers at +95 s, after the
    // failover (+90 s).
    cluster.hub(0).publish("old-late", "{}").await.unwrap();
    peer.connected_to(&cluster.id(1), Duration::from_secs(45))
        .await;
    assert!(
        slow.elapsed() < Duration::from_secs(95),
        "{:?}",
        slow.elapsed()
    );

    eventually("the full sync from n1", Duration::from_secs(60), || async {
        peer.replica_status().await.full_syncs == 2
    })
    .await;
    pass(Duration::from_secs(5)).await;
    assert_eq!(peer.view().await, cluster.hub(1).view().await);
    assert_eq!(peer.store.entries().len(), 9);
    stop(cluster, peer).await;
}
