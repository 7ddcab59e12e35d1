//! The supervisor: restarts with state replayed, nothing lost meanwhile, escalation.

use std::time::Duration;

use herald_actors::RestartPolicy;
use herald_messages::{AdvertisementPoolMsg, BulkAdvertise, ChildKind};

use crate::support::{CALL, Options, eventually, id, public, start, valid};

/// A panic in the pool restarts it, and it comes back with the state of its store.
#[tokio::test(start_paused = true)]
async fn panic_in_the_pool_restarts_it_with_its_state() {
    let node = start(Options::default()).await;
    for n in 1..=3 {
        node.advertise(public(n)).await;
    }
    node.store.panic_on_next_writes(1);
    let crashed = node
        .pool
        .call(
            |reply| AdvertisementPoolMsg::Bulk(valid(BulkAdvertise::one(public(4))), reply),
            CALL,
        )
        .await;
    assert!(
        crashed.is_err(),
        "the caller learns its request died with the actor: {crashed:?}"
    );

    eventually("the pool restarted", Duration::from_secs(30), || async {
        node.restarts(ChildKind::AdvertisementPool).await == 1
    })
    .await;
    assert_eq!(node.available_ids().await, vec![id(1), id(2), id(3)]);
    assert!(node.children().await.iter().all(|c| c.running));
    node.shutdown().await;
}

/// Messages sent while the pool is down and restarting are delivered to the new pool, after
/// its replay, in order.
#[tokio::test(start_paused = true)]
async fn messages_sent_during_a_restart_are_not_lost() {
    let policy = RestartPolicy {
        backoff: herald_actors::BackoffConfig {
            base: Duration::from_secs(2),
            max: Duration::from_secs(2),
        },
        ..RestartPolicy::default()
    };
    let node = start(Options {
        policy,
        ..Options::default()
    })
    .await;
    node.advertise(public(1)).await;
    node.pool.actor().unwrap().kill();
    // Sent between the crash and the restart (the backoff is up to 2 s).
    let pool = node.pool.clone();
    let calls: Vec<_> = (2..=4)
        .map(|n| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.call(
                    |reply| AdvertisementPoolMsg::Bulk(valid(BulkAdvertise::one(public(n))), reply),
                    CALL,
                )
                .await
            })
        })
        .collect();
    for call in calls {
        let outcome = call.await.unwrap().unwrap().unwrap();
        assert_eq!(outcome.added, 1);
    }
    assert_eq!(node.available_ids().await, vec![id(1), id(2), id(3), id(4)]);
    assert_eq!(node.restarts(ChildKind::AdvertisementPool).await, 1);
    node.shutdown().await;
}

/// A child that keeps failing exhausts the restart budget: the node stops and reports why,
/// instead of looping.
#[tokio::test(start_paused = true)]
async fn repeated_failure_escalates_to_the_host() {
    let policy = RestartPolicy {
        max_restarts: 3,
        window: Duration::from_secs(60),
        ..RestartPolicy::default()
    };
    let options = Options {
        policy,
        ..Options::default()
    };
    options.store.set_panic_on_load(true);
    let mut node = start(options).await;
    let failure = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(failure) = node.failure.borrow_and_update().clone() {
                return failure;
            }
            node.failure.changed().await.unwrap();
        }
    })
    .await
    .expect("the node gives up within the window");
    assert_eq!(failure.child, ChildKind::AdvertisementPool);
    assert_eq!(failure.failures, 4);
    assert!(failure.last_error.contains("injected panic"), "{failure}");
    tokio::time::timeout(Duration::from_secs(60), node.join)
        .await
        .expect("the supervisor stopped")
        .unwrap();
    let asked = tokio::time::Instant::now();
    let answer = node.pool.call(AdvertisementPoolMsg::Status, CALL).await;
    assert!(answer.is_err(), "the pool is closed");
    assert!(
        asked.elapsed() < CALL,
        "refused at once, not after the call timeout"
    );
}

/// Shutdown drains queued messages before stopping: nothing accepted is dropped.
#[tokio::test(start_paused = true)]
async fn shutdown_drains_what_was_accepted() {
    let node = start(Options::default()).await;
    for n in 1..=50 {
        node.pool
            .cast(AdvertisementPoolMsg::Gossip {
                peer: herald_messages::NodeId::parse("peer-b").unwrap(),
                ads: vec![public(n)],
            })
            .unwrap();
    }
    let store = node.store.clone();
    node.shutdown().await;
    assert_eq!(
        store.stored().len(),
        1,
        "the last gossip (a complete list) was applied and written"
    );
    assert_eq!(store.stored()[0].register_id, id(50));
}
