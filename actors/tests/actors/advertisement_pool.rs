//! The pool actor over its store: reload, write-through, outages, expiry.

use std::time::Duration;

use herald_actors::PoolConfig;
use herald_messages::{
    AdInput, AdSource, BulkAdvertise, GossipAd, NodeId, Snapshot, StoreHealth, SyncState, Timestamp,
};

use crate::support::{Options, eventually, id, pass, public, start};

/// FR-001, FR-002, SC-002: a restarted pool serves what its store held at once, unverified, and
/// a full sync from the register role verifies it.
#[tokio::test(start_paused = true)]
async fn fr002_restarted_pool_serves_stored_ads_at_once_then_verifies_them() {
    let first = start(Options::default()).await;
    for n in 1..=5 {
        first.advertise(public(n)).await;
    }
    let store = first.store.clone();
    first.shutdown().await;

    let second = start(Options {
        store: store.clone(),
        ..Options::default()
    })
    .await;
    // The very first call is answered after the replay: the load is queued ahead of it.
    let shown = second.available().await;
    assert_eq!(shown.len(), 5);
    assert!(shown.iter().all(|a| !a.verified && a.local));
    assert_eq!(shown[0].name.as_deref(), Some("register 1"));
    assert!(second.status().await.loaded);

    let inputs = (1..=4).map(public).collect();
    let outcome = second
        .bulk(BulkAdvertise::full(inputs, None))
        .await
        .unwrap();
    assert_eq!((outcome.unchanged, outcome.removed), (4, 1));
    let shown = second.available().await;
    assert_eq!(shown.len(), 4);
    assert!(shown.iter().all(|a| a.verified));
    second.shutdown().await;
}

/// FR-009: a full sync that changes nothing writes nothing.
#[tokio::test(start_paused = true)]
async fn fr009_repeated_full_sync_writes_nothing() {
    let node = start(Options::default()).await;
    let inputs: Vec<AdInput> = (1..=20).map(public).collect();
    node.bulk(BulkAdvertise::full(inputs.clone(), None))
        .await
        .unwrap();
    let writes = node.store.writes();
    let outcome = node.bulk(BulkAdvertise::full(inputs, None)).await.unwrap();
    assert_eq!(
        (
            outcome.unchanged,
            outcome.added,
            outcome.updated,
            outcome.removed
        ),
        (20, 0, 0, 0)
    );
    assert_eq!(
        node.store.writes(),
        writes,
        "no store write for an unchanged full sync"
    );
    node.shutdown().await;
}

/// FR-010: with the store down the pool keeps serving and accepting, reports degraded, and
/// writes everything when the store returns, even into an emptied store.
#[tokio::test(start_paused = true)]
async fn fr010_store_outage_keeps_serving_and_everything_is_written_when_it_returns() {
    let node = start(Options::default()).await;
    node.advertise(public(1)).await;
    node.store.set_down(true);

    let outcome = node.advertise(public(2)).await;
    assert!(!outcome.persisted, "the change is in memory only");
    let outcome = node.advertise(AdInput::withdraw(id(1))).await;
    assert_eq!(outcome.removed, 1);
    assert_eq!(node.available_ids().await, vec![id(2)]);
    let status = node.status().await;
    assert!(
        matches!(status.store, StoreHealth::Degraded { .. }),
        "{status:?}"
    );
    assert!(status.dirty_ads >= 2);

    // The store comes back empty (a restarted Redis without persistence).
    pass(Duration::from_secs(30)).await;
    node.store.wipe();
    node.store.set_down(false);
    eventually(
        "the store is healthy again",
        Duration::from_secs(30),
        || async { node.status().await.store == StoreHealth::Healthy },
    )
    .await;
    let stored: Vec<_> = node
        .store
        .stored()
        .into_iter()
        .map(|ad| ad.register_id)
        .collect();
    assert_eq!(
        stored,
        vec![id(2)],
        "what memory holds is written again, the withdrawal kept"
    );
    assert_eq!(node.status().await.dirty_ads, 0);
    node.shutdown().await;
}

/// FR-010: a pool started while its store is down serves and accepts from memory, then merges
/// what the store held once it is reachable.
#[tokio::test(start_paused = true)]
async fn fr010_pool_started_with_its_store_down_merges_the_store_later() {
    let first = start(Options::default()).await;
    first.advertise(public(1)).await;
    first.advertise(public(2)).await;
    let store = first.store.clone();
    first.shutdown().await;

    store.set_down(true);
    let node = start(Options {
        store: store.clone(),
        ..Options::default()
    })
    .await;
    node.advertise(public(3)).await;
    node.advertise(AdInput::withdraw(id(2))).await;
    assert_eq!(node.available_ids().await, vec![id(3)]);
    assert!(!node.status().await.loaded);

    store.set_down(false);
    eventually("the late reload", Duration::from_secs(30), || async {
        node.status().await.loaded
    })
    .await;
    assert_eq!(
        node.available_ids().await,
        vec![id(1), id(3)],
        "stored 1 merged, withdrawn 2 stays gone"
    );
    eventually("everything written", Duration::from_secs(30), || async {
        node.status().await.dirty_ads == 0
    })
    .await;
    let stored: Vec<_> = store
        .stored()
        .into_iter()
        .map(|ad| ad.register_id)
        .collect();
    assert_eq!(stored, vec![id(1), id(3)]);
    node.shutdown().await;
}

/// A store that silently lost its data (restarted between two calls) is noticed by the
/// periodic check and written again.
#[tokio::test(start_paused = true)]
async fn an_emptied_store_is_noticed_and_written_again() {
    let node = start(Options::default()).await;
    for n in 1..=3 {
        node.advertise(public(n)).await;
    }
    node.store.wipe();
    pass(PoolConfig::default().store_check_interval + Duration::from_secs(1)).await;
    assert_eq!(node.store.stored().len(), 3);
    node.shutdown().await;
}

/// Issue 7, scenario A: after the store lost everything, one advertise was answered
/// `persisted: true` and its write recreated the meta record, so the periodic check saw nothing
/// wrong and the earlier ads stayed lost. The write itself now finds the loss and writes
/// everything again before it answers, with no time passing.
#[tokio::test(start_paused = true)]
async fn scenario_a_a_write_into_an_emptied_store_writes_everything_before_it_answers() {
    let node = start(Options::default()).await;
    for n in 1..=3 {
        node.advertise(public(n)).await;
    }
    node.store.wipe();
    let outcome = node.advertise(public(4)).await;
    assert!(outcome.persisted, "{outcome:?}");
    let stored: Vec<_> = node
        .store
        .stored()
        .into_iter()
        .map(|ad| ad.register_id)
        .collect();
    assert_eq!(stored, vec![id(1), id(2), id(3), id(4)]);
    assert!(node.store.meta().is_some());
    let status = node.status().await;
    assert_eq!(
        (status.store_repairs, status.dirty_ads),
        (1, 0),
        "{status:?}"
    );
    node.shutdown().await;
}

/// A store replaced by an older copy of itself (a restored backup, a failover to a lagging
/// replica) keeps a meta record, but not this pool's last one: the periodic check notices
/// even when nothing is written.
#[tokio::test(start_paused = true)]
async fn a_store_rolled_back_to_an_older_copy_is_noticed_by_the_check_and_written_again() {
    let node = start(Options::default()).await;
    node.advertise(public(1)).await;
    let older = node.store.image();
    node.advertise(public(2)).await;
    node.advertise(public(3)).await;
    node.store.restore(&older);
    assert_eq!(node.store.stored().len(), 1);
    pass(PoolConfig::default().store_check_interval + Duration::from_secs(1)).await;
    assert_eq!(node.store.stored().len(), 3);
    assert_eq!(node.status().await.store_repairs, 1);
    node.shutdown().await;
}

/// Stored ads carry an expiry that the pool renews long before it runs out; a pool that stops
/// for good leaves nothing behind once the expiry has passed.
#[tokio::test(start_paused = true)]
async fn fr001_stored_expiry_is_renewed_while_running_and_runs_out_after_a_stop() {
    let config = PoolConfig::default();
    let node = start(Options::default()).await;
    node.advertise(public(1)).await;
    pass(config.store_expiry() * 3).await;
    assert_eq!(node.store.stored().len(), 1, "renewed while the pool runs");
    let store = node.store.clone();
    node.shutdown().await;
    pass(config.store_expiry() + Duration::from_secs(1)).await;
    assert!(
        store.stored().is_empty(),
        "expired after the pool stopped for good"
    );
}

/// Remote ads live for `ad_ttl` after their peer's last gossip; a gossip is a complete list.
#[tokio::test(start_paused = true)]
async fn remote_ads_live_for_the_ttl_after_the_last_gossip() {
    let node = start(Options::default()).await;
    let peer = NodeId::parse("peer-b").unwrap();
    let gossip = |ads: Vec<AdInput>| herald_messages::AdvertisementPoolMsg::Gossip {
        peer: peer.clone(),
        ads,
    };
    node.pool.cast(gossip(vec![public(1), public(2)])).unwrap();
    assert_eq!(node.available_ids().await, vec![id(1), id(2)]);
    assert!(
        node.store
            .stored()
            .iter()
            .all(|ad| matches!(ad.source, AdSource::Remote(_)))
    );

    pass(Duration::from_secs(200)).await;
    node.pool.cast(gossip(vec![public(2)])).unwrap();
    assert_eq!(
        node.available_ids().await,
        vec![id(2)],
        "unlisted ads are withdrawn"
    );
    pass(Duration::from_secs(200)).await;
    assert_eq!(
        node.available_ids().await,
        vec![id(2)],
        "refreshed by the second gossip"
    );
    pass(Duration::from_secs(120)).await;
    assert!(
        node.available_ids().await.is_empty(),
        "stale after ad_ttl without gossip"
    );
    assert!(node.store.stored().is_empty(), "and swept from the store");
    node.shutdown().await;
}

/// A reloaded remote ad is dropped unless its peer confirms it within the TTL.
#[tokio::test(start_paused = true)]
async fn reloaded_remote_ads_are_dropped_unless_confirmed() {
    let first = start(Options::default()).await;
    let peer = NodeId::parse("peer-b").unwrap();
    first
        .pool
        .cast(herald_messages::AdvertisementPoolMsg::Gossip {
            peer: peer.clone(),
            ads: vec![public(1)],
        })
        .unwrap();
    first.advertise(public(9)).await;
    let store = first.store.clone();
    first.shutdown().await;

    let second = start(Options {
        store,
        ..Options::default()
    })
    .await;
    let shown = second.available().await;
    assert_eq!(shown.len(), 2);
    assert!(shown.iter().all(|a| !a.verified));
    pass(PoolConfig::default().ad_ttl).await;
    assert_eq!(
        second.available_ids().await,
        vec![id(9)],
        "the unconfirmed remote ad expired; local stays"
    );
    second.shutdown().await;
}

/// Snapshot order: a stale full sync is refused and changes nothing.
#[tokio::test(start_paused = true)]
async fn stale_full_sync_is_refused() {
    let node = start(Options::default()).await;
    let snapshot = |seq, secs: i64| {
        Some(Snapshot::new(
            seq,
            Timestamp::from_unix_millis(secs * 1_000),
        ))
    };
    node.bulk(BulkAdvertise::full(vec![public(1)], snapshot(5, 100)))
        .await
        .unwrap();
    let err = node
        .bulk(BulkAdvertise::full(vec![public(2)], snapshot(4, 90)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stale"), "{err}");
    assert_eq!(node.available_ids().await, vec![id(1)]);
    assert_eq!(node.status().await.last_snapshot, snapshot(5, 100));
    node.shutdown().await;
}

/// Issue 11: the pool publishes what it serves. A change is in the view when its reply
/// arrives; an answer that did not change keeps its version; a remote ad leaves the view at
/// its expiry, with no read entering the mailbox.
#[tokio::test(start_paused = true)]
async fn the_view_follows_changes_and_expiry_without_the_mailbox() {
    let node = start(Options::default()).await;
    let view = node.views.pool.clone().expect("a pool publishes a view");
    let ids = |view: &herald_messages::PoolView| {
        view.available
            .iter()
            .map(|a| a.register_id.clone())
            .collect::<Vec<_>>()
    };
    node.advertise(public(1)).await;
    let first = view.latest();
    assert!(first.ready);
    assert_eq!(ids(&first), vec![id(1)]);
    assert_eq!(first.status.local_ads, 1);
    node.advertise(public(1)).await;
    assert_eq!(
        view.latest().available.version,
        first.available.version,
        "unchanged answer, same version"
    );

    let peer = NodeId::parse("peer-b").unwrap();
    node.pool
        .cast(herald_messages::AdvertisementPoolMsg::Gossip {
            peer,
            ads: vec![public(2)],
        })
        .unwrap();
    let gossiped = view.wait_for(|v| v.available.len() == 2).await.unwrap();
    assert!(gossiped.available.version > first.available.version);
    let until = gossiped.valid_until.expect("a remote ad dies");
    pass(PoolConfig::default().ad_ttl + Duration::from_millis(1)).await;
    let expired = view.latest();
    assert_eq!(
        ids(&expired),
        vec![id(1)],
        "dropped at its expiry ({until})"
    );
    assert_eq!(expired.valid_until, None);
    node.shutdown().await;
}

/// Issues 9 / 11: the answer tells the gossip this node's public ads (`local_ad`: its own
/// ad's sync state, versions and name), and nothing for a register only remote peers serve or
/// for a private one; a withdrawal takes the ad out.
#[tokio::test(start_paused = true)]
async fn the_answer_carries_this_nodes_public_ads_for_the_gossip() {
    let node = start(Options::default()).await;
    let view = node.views.pool.clone().expect("a pool publishes a view");
    let mut syncing = public(1);
    syncing.sync_state = Some(SyncState::Syncing);
    syncing.latest_version = 7;
    syncing.name = Some("one".into());
    node.advertise(syncing.clone()).await;
    node.advertise(public(2)).await;
    let mut private = public(4);
    private.is_public = false;
    node.advertise(private).await;
    node.pool
        .cast(herald_messages::AdvertisementPoolMsg::Gossip {
            peer: NodeId::parse("peer-b").unwrap(),
            ads: vec![public(3)],
        })
        .unwrap();
    let answer = view.wait_for(|v| v.available.len() == 3).await.unwrap();
    let local: Vec<GossipAd> = answer
        .available
        .iter()
        .filter_map(|register| register.local_ad())
        .map(|ad| ad.gossip_ad())
        .collect();
    assert_eq!(
        local,
        vec![
            GossipAd::from_input(&syncing, SyncState::Syncing).unwrap(),
            GossipAd::from_input(&public(2), SyncState::default()).unwrap(),
        ]
    );
    // A change only the gossip sees (syncing → subscribing: neither a full replica, the same
    // JSON) is a new answer under the same version and ETag.
    let mut subscribing = syncing.clone();
    subscribing.sync_state = Some(SyncState::Subscribing);
    let before = view.latest();
    node.advertise(subscribing.clone()).await;
    let after = view.latest();
    assert!(!std::sync::Arc::ptr_eq(&after.available, &before.available));
    assert_eq!(
        after.available.version, before.available.version,
        "{:?} → {:?}",
        before.available, after.available
    );
    let first = after.available.iter().next().unwrap();
    assert_eq!(
        first.local_ad().unwrap().gossip_ad(),
        GossipAd::from_input(&subscribing, SyncState::Subscribing).unwrap()
    );
    node.bulk(BulkAdvertise::one(AdInput::withdraw(id(1))))
        .await
        .unwrap();
    let withdrawn = view.latest();
    assert!(withdrawn.available.version > answer.available.version);
    let local: Vec<_> = withdrawn
        .available
        .iter()
        .filter_map(|register| register.local_ad())
        .map(|ad| ad.register_id().clone())
        .collect();
    assert_eq!(local, vec![id(2)]);
    node.shutdown().await;
}
