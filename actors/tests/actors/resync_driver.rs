//! The resync driver against a real pool: start-up push with backoff, immediate changes,
//! periodic reconciliation.

use std::time::Duration;

use herald_actors::testing::InMemoryGroundTruth;
use herald_actors::{BackoffConfig, ResyncConfig};
use herald_messages::{
    AdInput, BulkAdvertise, ChildKind, Register, RegisterPatch, ResyncDriverMsg, SyncStatus,
    Timestamp,
};

use crate::support::{CALL, Options, eventually, id, pass, start, valid};

fn resync() -> Option<ResyncConfig> {
    Some(ResyncConfig::default())
}

/// FR-003, FR-004, US2-2: the start-up push retries with capped, jittered exponential backoff
/// while the pool is unreachable, and succeeds once it is reachable.
#[tokio::test(start_paused = true)]
async fn fr003_fr004_startup_push_retries_with_backoff_until_the_pool_is_reachable() {
    let options = Options {
        resync: resync(),
        link_down: true,
        ..Options::default()
    };
    let node = start(options).await;
    let link = node.link.clone().unwrap();
    for n in 1..=3 {
        node.create(n, true).await;
    }
    node.create(4, false).await;

    pass(Duration::from_secs(600)).await;
    let attempts = link.attempts();
    // 1 s doubling to 60 s with full jitter: at most ~ 6 + 9 attempts fit in 10 minutes on
    // average, never hundreds, and never just one.
    assert!(
        (4..=60).contains(&attempts),
        "attempts in 10 min: {attempts}"
    );
    let state = node.sync_state().await;
    assert_eq!(state.status, SyncStatus::Retrying);
    assert!(state.consecutive_failures >= 4);
    assert!(
        state.last_error.as_deref().unwrap_or("").contains("pool"),
        "{state:?}"
    );
    assert!(node.available().await.is_empty());

    link.set_down(false);
    // The next retry is at most 60 s away.
    eventually(
        "the public registers reach the pool",
        Duration::from_secs(61),
        || async { node.available_ids().await == vec![id(1), id(2), id(3)] },
    )
    .await;
    let state = node.sync_state().await;
    assert_eq!(state.status, SyncStatus::InSync);
    assert_eq!((state.last_pushed, state.consecutive_failures), (3, 0));
    node.shutdown().await;
}

/// FR-007, FR-008: a create, a flag change and a delete reach the pool at once, without
/// waiting for the periodic sync.
#[tokio::test(start_paused = true)]
async fn fr007_fr008_changes_reach_the_pool_at_once() {
    let node = start(Options {
        resync: resync(),
        ..Options::default()
    })
    .await;
    eventually("first full sync", Duration::from_secs(5), || async {
        node.sync_state().await.status == SyncStatus::InSync
    })
    .await;
    let soon = Duration::from_secs(1);

    node.create(1, true).await;
    node.create(2, false).await;
    eventually("created public register advertised", soon, || async {
        node.available_ids().await == vec![id(1)]
    })
    .await;

    let flip = |advertise| RegisterPatch {
        advertise: Some(advertise),
        ..RegisterPatch::default()
    };
    let update = |n: u8, patch: RegisterPatch| {
        let driver = node.driver.clone();
        async move {
            driver
                .call(
                    |reply| ResyncDriverMsg::UpdateRegister(id(n), valid(patch), reply),
                    CALL,
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    update(2, flip(true)).await;
    update(1, flip(false)).await;
    eventually("flags applied", soon, || async {
        node.available_ids().await == vec![id(2)]
    })
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
        "FR-007: the store follows the flags too"
    );

    let renamed = update(
        2,
        RegisterPatch {
            name: Some("renamed".into()),
            latest_version: Some(40),
            ..RegisterPatch::default()
        },
    )
    .await;
    assert_eq!(renamed.latest_version, 40);
    eventually("update applied", soon, || async {
        let shown = node.available().await;
        shown.len() == 1
            && shown[0].name.as_deref() == Some("renamed")
            && shown[0].latest_version == 40
    })
    .await;

    node.driver
        .call(|reply| ResyncDriverMsg::DeleteRegister(id(2), reply), CALL)
        .await
        .unwrap()
        .unwrap();
    eventually("delete applied", soon, || async {
        node.available().await.is_empty()
    })
    .await;
    assert!(
        node.store.stored().is_empty(),
        "FR-008: removed from the store too"
    );
    node.shutdown().await;
}

/// FR-006, US3-1, US3-2: the periodic full sync restores a lost ad and removes one that should
/// not be there.
#[tokio::test(start_paused = true)]
async fn fr006_periodic_full_sync_heals_drift() {
    let node = start(Options {
        resync: resync(),
        ..Options::default()
    })
    .await;
    node.create(1, true).await;
    node.create(2, true).await;
    eventually("advertised", Duration::from_secs(5), || async {
        node.available().await.len() == 2
    })
    .await;

    // Drift: one ad lost, one stray ad added behind the driver's back.
    node.bulk(BulkAdvertise::one(AdInput::withdraw(id(1))))
        .await
        .unwrap();
    node.bulk(BulkAdvertise::one(AdInput::public(id(7))))
        .await
        .unwrap();
    assert_eq!(node.available_ids().await, vec![id(2), id(7)]);

    let interval = ResyncConfig::DEFAULT_INTERVAL;
    pass(interval + interval.mul_f64(0.1) + Duration::from_secs(1)).await;
    assert_eq!(node.available_ids().await, vec![id(1), id(2)]);
    assert!(node.sync_state().await.successful_full_syncs >= 2);
    node.shutdown().await;
}

/// The periodic sync keeps to its schedule: over an hour with a 5-minute interval it runs
/// about twelve times, not more (no tight loop) and not fewer (no drift from slow pushes).
#[tokio::test(start_paused = true)]
async fn periodic_sync_keeps_its_schedule() {
    let node = start(Options {
        resync: resync(),
        ..Options::default()
    })
    .await;
    eventually("first full sync", Duration::from_secs(5), || async {
        node.sync_state().await.successful_full_syncs == 1
    })
    .await;
    pass(Duration::from_secs(3_600)).await;
    let syncs = node.sync_state().await.successful_full_syncs;
    assert!(
        (11..=13).contains(&syncs),
        "full syncs in one hour: {syncs}"
    );
    node.shutdown().await;
}

/// A restarted driver starts with a full sync from its ground truth.
#[tokio::test(start_paused = true)]
async fn a_restarted_driver_resyncs_from_the_ground_truth() {
    let options = Options {
        resync: Some(ResyncConfig {
            backoff: BackoffConfig::DEFAULT,
            ..ResyncConfig::default()
        }),
        ..Options::default()
    };
    let node = start(options).await;
    node.create(1, true).await;
    eventually("advertised", Duration::from_secs(5), || async {
        node.available().await.len() == 1
    })
    .await;
    node.bulk(BulkAdvertise::full(vec![], None)).await.unwrap();
    assert!(
        node.available().await.is_empty(),
        "drift: the pool lost the ad"
    );

    node.driver.actor().unwrap().kill();
    eventually("driver restarted", Duration::from_secs(30), || async {
        node.restarts(ChildKind::ResyncDriver).await == 1
    })
    .await;
    eventually(
        "restarted driver pushed a full sync",
        Duration::from_secs(5),
        || async { node.available_ids().await == vec![id(1)] },
    )
    .await;
    node.shutdown().await;
}

fn by_hand(n: u8, advertise: bool) -> Register {
    Register {
        register_id: id(n),
        name: format!("edited by hand {n}"),
        description: None,
        advertise,
        latest_version: u64::from(n),
        latest_docket_version: 0,
        created_at: Timestamp::EPOCH,
        updated_at: Timestamp::EPOCH,
        revision: 0,
    }
}

/// Issue 10, deliverable 1: a register changed behind the driver's back (an operator editing a
/// shared ground truth such as MongoDB directly) is pushed at once through the ground truth's
/// watch, long before the periodic full sync; the driver's own changes, which the watch echoes,
/// are pushed once; a watch that ends is reopened after a backoff and followed by a full sync,
/// which brings what changed while nobody watched.
#[tokio::test(start_paused = true)]
async fn a_register_changed_behind_the_drivers_back_is_pushed_at_once() {
    let truth = InMemoryGroundTruth::watchable();
    let node = start(Options {
        resync: resync(),
        truth: truth.clone(),
        ..Options::default()
    })
    .await;
    eventually("first full sync", Duration::from_secs(5), || async {
        node.sync_state().await.status == SyncStatus::InSync
    })
    .await;
    let link = node.link.clone().unwrap();
    let soon = Duration::from_secs(1);

    // The driver's own change: pushed once, its echo from the watch is not pushed again.
    let before = link.attempts();
    node.create(1, true).await;
    pass(soon).await;
    assert_eq!(
        link.attempts(),
        before + 1,
        "an own change was pushed twice"
    );
    assert_eq!(node.available_ids().await, vec![id(1)]);

    // Changes made directly in the store reach the pool at once.
    truth.put_behind_the_back(by_hand(2, true));
    eventually("a register added by hand", soon, || async {
        node.available_ids().await == vec![id(1), id(2)]
    })
    .await;
    let shown = node.available().await;
    assert_eq!(shown[1].name.as_deref(), Some("edited by hand 2"));
    truth.put_behind_the_back(by_hand(1, false));
    truth.delete_behind_the_back(&id(2));
    eventually(
        "a register made private and one deleted by hand",
        soon,
        || async { node.available_ids().await.is_empty() },
    )
    .await;
    assert_eq!(
        node.sync_state().await.successful_full_syncs,
        1,
        "the watch opened before the first full sync: nothing else was needed"
    );

    // The watch ends (a broken change stream); a change made meanwhile is not seen by it, but
    // the full sync that follows the reopened watch brings it, long before the periodic one.
    truth.end_watches();
    truth.put_behind_the_back(by_hand(3, true));
    eventually(
        "the change missed by the watch",
        Duration::from_secs(120),
        || async { node.available_ids().await == vec![id(3)] },
    )
    .await;
    assert_eq!(node.sync_state().await.successful_full_syncs, 2);
    truth.put_behind_the_back(by_hand(4, true));
    eventually("a change seen by the reopened watch", soon, || async {
        node.available_ids().await == vec![id(3), id(4)]
    })
    .await;
    node.shutdown().await;
}

/// A ground truth that cannot be watched (an embedded file) costs nothing: no watch, no extra
/// full sync, changes pushed once.
#[tokio::test(start_paused = true)]
async fn a_ground_truth_without_a_watch_changes_nothing() {
    let node = start(Options {
        resync: resync(),
        ..Options::default()
    })
    .await;
    eventually("first full sync", Duration::from_secs(5), || async {
        node.sync_state().await.status == SyncStatus::InSync
    })
    .await;
    let link = node.link.clone().unwrap();
    let before = link.attempts();
    node.create(1, true).await;
    pass(Duration::from_secs(60)).await;
    assert_eq!(link.attempts(), before + 1);
    assert_eq!(node.sync_state().await.successful_full_syncs, 1);
    node.shutdown().await;
}
