//! The hub: `SystemRegisterAuthority` under its supervisor, over the in-memory blueprint store.
//! Genesis and validation at start, atomic versions, sessions, heartbeats and push fan-out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_actors::AuthorityConfig;
use herald_actors::testing::InMemoryBlueprintStore;
use herald_messages::{
    AuthorityError, BlueprintNotification, EntryKind, NodeType, RecommendedAction, RegisterId,
    RegisterState, SEED_BLUEPRINT_ID, SessionId, Subscription, SyncScope,
};

use crate::support::{TestHub, blueprint, eventually, node, pass, start_hub};

async fn hub_on(store: &InMemoryBlueprintStore) -> TestHub {
    let hub = start_hub("hub-0", store.clone(), AuthorityConfig::default()).await;
    hub.ready().await;
    hub
}

/// Reads a subscription into a shared list as notifications arrive.
fn drain(mut subscription: Subscription) -> Arc<Mutex<Vec<BlueprintNotification>>> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    tokio::spawn(async move {
        while let Some(notification) = subscription.notifications.recv().await {
            sink.lock().unwrap().push(notification);
        }
    });
    received
}

/// SC-009, FR-016, FR-017, FR-021: the first start creates the system register (all-zero id,
/// a random history id) seeded with `register-creation-v1`; a restart over the same store
/// finds it and does not create it again.
#[tokio::test(start_paused = true)]
async fn genesis_on_first_start_and_no_recreation_on_restart() {
    let store = InMemoryBlueprintStore::new();
    let hub = hub_on(&store).await;
    let status = hub.status().await;
    assert_eq!(status.state, RegisterState::Ready);
    assert_eq!((status.version, status.total_blueprints), (1, 1));
    let genesis = store.genesis().expect("genesis stored");
    assert_eq!(genesis.register_id, RegisterId::system());
    assert_eq!(
        genesis.register_id.as_str(),
        "00000000000000000000000000000000"
    );
    assert_eq!(genesis.created_by, node("hub-0"));
    assert_eq!(status.history_id.as_ref(), Some(&genesis.history_id));
    let entries = store.entries();
    assert_eq!(entries.len(), 1);
    let seed = &entries[0];
    assert_eq!(seed.blueprint_id.as_str(), SEED_BLUEPRINT_ID);
    assert_eq!((seed.version, seed.kind), (1, EntryKind::Published));
    assert!(seed.is_active && seed.checksum_holds());
    let document = std::str::from_utf8(&seed.document).unwrap();
    assert!(
        document.contains(r#""id":"register-creation-v1""#),
        "{document}"
    );

    // Another hub on another store draws another history.
    let other_store = InMemoryBlueprintStore::new();
    let other = hub_on(&other_store).await;
    assert_ne!(
        other.status().await.history_id,
        status.history_id,
        "history ids are random"
    );
    other.shutdown().await;

    hub.shutdown().await;
    let again = hub_on(&store).await;
    let restarted = again.status().await;
    assert_eq!(restarted.history_id, status.history_id);
    assert_eq!(restarted.version, 1);
    assert_eq!(store.genesis(), Some(genesis.clone()), "genesis untouched");
    assert_eq!(store.entries(), entries, "the seed is not appended again");

    // A crash and a restart by the supervisor: the same.
    again.kill().await;
    eventually(
        "the authority restarted",
        Duration::from_secs(30),
        || async { again.restarts().await == 1 },
    )
    .await;
    assert_eq!(again.ready().await.history_id, status.history_id);
    assert_eq!(store.entries().len(), 1);
    again.shutdown().await;
}

/// FR-022, SC-012: a stored register that was tampered with (a document that no longer matches
/// its checksum), lost an entry (a gap in the versions) or holds an undecodable record is
/// detected at start: `Status` reports `Corrupt` naming the entry, every request is refused,
/// and the register is never re-created over it. Regression: a lost entry (versions 1, 3)
/// passed validation, since versions only had to increase.
#[tokio::test(start_paused = true)]
async fn corruption_is_detected_at_start_and_every_request_refused() {
    type Damage = fn(&InMemoryBlueprintStore);
    let cases: [(&str, Damage, &[&str]); 3] = [
        (
            "tampered",
            |s| s.tamper(2),
            &["entry 2", "blueprint-a", "checksum"],
        ),
        ("lost", |s| s.remove_entry(2), &["entry 2 is missing"]),
        ("undecodable", |s| s.make_undecodable(2), &["version 2"]),
    ];
    for (case, damage, named) in cases {
        let store = InMemoryBlueprintStore::new();
        let hub = hub_on(&store).await;
        hub.publish("blueprint-a", r#"{"a":1}"#).await.unwrap();
        hub.publish("blueprint-b", r#"{"b":1}"#).await.unwrap();
        let grant = hub.connect("peer-a").await.unwrap();
        hub.shutdown().await;
        damage(&store);
        let genesis = store.genesis();
        let entries = store.entries();

        let hub = start_hub("hub-0", store.clone(), AuthorityConfig::default()).await;
        eventually(
            &format!("{case}: the register is judged corrupt"),
            Duration::from_secs(5),
            || async { matches!(hub.status().await.state, RegisterState::Corrupt(_)) },
        )
        .await;
        let RegisterState::Corrupt(reason) = hub.status().await.state else {
            unreachable!()
        };
        for word in named {
            assert!(reason.contains(word), "{case}: {reason:?} names {word}");
        }

        let refused = |result: Result<(), AuthorityError>, what: &str| match result {
            Err(AuthorityError::NotReady(why)) => {
                assert!(why.contains("corrupt"), "{case}, {what}: {why}");
            }
            other => panic!("{case}, {what}: refused as not ready, got {other:?}"),
        };
        refused(hub.publish("blueprint-c", "{}").await.map(drop), "publish");
        refused(hub.deprecate("blueprint-a").await.map(drop), "deprecate");
        refused(hub.connect("peer-b").await.map(drop), "connect");
        refused(
            hub.heartbeat("peer-a", &grant.session_id, 0)
                .await
                .map(drop),
            "heartbeat",
        );
        refused(
            hub.entries("peer-a", &grant.session_id, SyncScope::Full)
                .await
                .map(drop),
            "full sync",
        );
        refused(
            hub.entries("peer-a", &grant.session_id, SyncScope::After(1))
                .await
                .map(drop),
            "incremental sync",
        );
        refused(
            hub.subscribe("peer-a", &grant.session_id).await.map(drop),
            "subscribe",
        );
        assert_eq!(
            hub.view().await.total_blueprints,
            0,
            "{case}: nothing served"
        );
        assert_eq!(store.genesis(), genesis, "{case}: not re-created");
        assert_eq!(store.entries(), entries, "{case}: nothing written");
        hub.shutdown().await;
    }
}

/// FR-019: 100 concurrent publications get 100 distinct, consecutive versions.
#[tokio::test(start_paused = true)]
async fn concurrent_publishes_get_distinct_consecutive_versions() {
    let store = InMemoryBlueprintStore::new();
    let hub = Arc::new(hub_on(&store).await);
    let calls: Vec<_> = (0..100)
        .map(|n| {
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                hub.publish(&format!("blueprint-{n}"), &format!(r#"{{"n":{n}}}"#))
                    .await
                    .unwrap()
                    .version
            })
        })
        .collect();
    let mut versions = Vec::new();
    for call in calls {
        versions.push(call.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=101).collect::<Vec<u64>>());
    assert_eq!(store.appends(), 100);
    let status = hub.status().await;
    assert_eq!((status.version, status.total_blueprints), (101, 101));
    Arc::into_inner(hub).unwrap().shutdown().await;
}

/// FR-019: publish, update and deprecate make entries of their kind; deprecating twice or a
/// blueprint that does not exist is refused; an invalid document is refused.
#[tokio::test(start_paused = true)]
async fn publish_update_deprecate_and_their_refusals() {
    let store = InMemoryBlueprintStore::new();
    let hub = hub_on(&store).await;
    let published = hub.publish("flow", r#"{"step":1}"#).await.unwrap();
    assert_eq!(
        (published.version, published.kind, published.is_active),
        (2, EntryKind::Published, true)
    );
    let updated = hub.publish("flow", r#"{"step":2}"#).await.unwrap();
    assert_eq!(
        (updated.version, updated.kind, updated.is_active),
        (3, EntryKind::Updated, true)
    );
    let deprecated = hub.deprecate("flow").await.unwrap();
    assert_eq!(
        (deprecated.version, deprecated.kind, deprecated.is_active),
        (4, EntryKind::Deprecated, false)
    );
    assert_eq!(
        deprecated.document, updated.document,
        "keeps the last document"
    );
    let status = hub.status().await;
    assert_eq!(
        (status.total_blueprints, status.active_blueprints),
        (2, 1),
        "the deprecated blueprint counts in the total; only the seed is active"
    );

    assert_eq!(
        hub.deprecate("flow").await.unwrap_err(),
        AuthorityError::AlreadyDeprecated(blueprint("flow"))
    );
    assert_eq!(
        hub.deprecate("missing").await.unwrap_err(),
        AuthorityError::NotFound(blueprint("missing"))
    );
    assert!(matches!(
        hub.publish("broken", "{not json").await,
        Err(AuthorityError::Invalid(_))
    ));
    let republished = hub.publish("flow", r#"{"step":3}"#).await.unwrap();
    assert_eq!(
        (republished.version, republished.kind, republished.is_active),
        (5, EntryKind::Published, true)
    );
    assert_eq!(store.appends(), 4, "refusals wrote nothing");

    let reader = hub.connect("peer-r").await.unwrap();
    let full = hub
        .entries("peer-r", &reader.session_id, SyncScope::Full)
        .await
        .unwrap();
    let versions: Vec<u64> = full.entries.iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![1, 5], "full: the active latest entries");
    let after = hub
        .entries("peer-r", &reader.session_id, SyncScope::After(2))
        .await
        .unwrap();
    let versions: Vec<u64> = after.entries.iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![3, 4, 5], "incremental: every later entry");
    hub.shutdown().await;
}

/// FR-031: a hub that connects to a hub is refused and gets no session.
#[tokio::test(start_paused = true)]
async fn a_hub_calling_a_hub_is_refused() {
    let hub = hub_on(&InMemoryBlueprintStore::new()).await;
    assert_eq!(
        hub.connect_as("hub-1", NodeType::Hub).await.unwrap_err(),
        AuthorityError::HubCaller(node("hub-1"))
    );
    assert!(hub.peers().await.is_empty());
    assert_eq!(hub.status().await.active_peers, 0);
    hub.shutdown().await;
}

/// A heartbeat from a session the hub does not know (never granted, or another peer's) is
/// refused with `UnknownSession`, and one from a peer without any session with
/// `NotConnected` (FAILED_PRECONDITION on the wire): either way the peer reconnects.
#[tokio::test(start_paused = true)]
async fn heartbeat_from_an_unknown_session_is_refused() {
    let hub = hub_on(&InMemoryBlueprintStore::new()).await;
    let grant = hub.connect("peer-a").await.unwrap();
    let unknown = SessionId::parse("never-granted").unwrap();
    assert!(matches!(
        hub.heartbeat("peer-a", &unknown, 1).await,
        Err(AuthorityError::UnknownSession { .. })
    ));
    assert!(
        matches!(
            hub.heartbeat("peer-b", &grant.session_id, 1).await,
            Err(AuthorityError::NotConnected(_))
        ),
        "a session belongs to its peer"
    );
    assert!(hub.heartbeat("peer-a", &grant.session_id, 1).await.is_ok());
    hub.shutdown().await;
}

/// A peer whose last synced version is behind the hub's is told to sync; one up to date is not.
#[tokio::test(start_paused = true)]
async fn a_peer_behind_is_told_to_sync() {
    let hub = hub_on(&InMemoryBlueprintStore::new()).await;
    let grant = hub.connect("peer-a").await.unwrap();
    assert_eq!(grant.version, 1);
    let ack = hub.heartbeat("peer-a", &grant.session_id, 0).await.unwrap();
    assert_eq!((ack.action, ack.version), (RecommendedAction::Sync, 1));
    let ack = hub.heartbeat("peer-a", &grant.session_id, 1).await.unwrap();
    assert_eq!(ack.action, RecommendedAction::None);
    hub.publish("flow", "{}").await.unwrap();
    let ack = hub.heartbeat("peer-a", &grant.session_id, 1).await.unwrap();
    assert_eq!((ack.action, ack.version), (RecommendedAction::Sync, 2));
    assert_eq!(ack.history_id, grant.history_id);
    let peers = hub.peers().await;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].last_sync_version, 1);
    assert!(peers[0].last_heartbeat_at.is_some());
    hub.shutdown().await;
}

/// FR-033: every publication is pushed to every subscriber at once; a subscriber that never
/// reads is dropped when its bounded queue (`subscriber_queue`) is full, and the others keep
/// receiving.
#[tokio::test(start_paused = true)]
async fn pushes_reach_every_subscriber_and_a_stalled_one_is_dropped() {
    let config = AuthorityConfig {
        subscriber_queue: 4,
        ..AuthorityConfig::default()
    };
    let hub = start_hub("hub-0", InMemoryBlueprintStore::new(), config).await;
    let history = hub.ready().await.history_id.unwrap();
    let mut readers = Vec::new();
    for peer in ["peer-a", "peer-b"] {
        let grant = hub.connect(peer).await.unwrap();
        readers.push(drain(hub.subscribe(peer, &grant.session_id).await.unwrap()));
    }
    let stalled_grant = hub.connect("peer-c").await.unwrap();
    let mut stalled = hub
        .subscribe("peer-c", &stalled_grant.session_id)
        .await
        .unwrap();

    for n in 0..10 {
        hub.publish(&format!("flow-{n}"), "{}").await.unwrap();
    }
    for received in &readers {
        eventually("every push arrives", Duration::from_secs(1), || async {
            received.lock().unwrap().len() == 10
        })
        .await;
        let received = received.lock().unwrap();
        let versions: Vec<u64> = received.iter().map(|n| n.version).collect();
        assert_eq!(versions, (2..=11).collect::<Vec<u64>>());
        let sequences: Vec<u64> = received.iter().map(|n| n.sequence).collect();
        assert_eq!(sequences, (1..=10).collect::<Vec<u64>>());
        assert!(received.iter().all(|n| n.history_id == history));
        assert_eq!(received[0].blueprint_id, blueprint("flow-0"));
        assert_eq!(received[0].kind, EntryKind::Published);
    }
    let mut queued = Vec::new();
    while let Some(notification) = stalled.notifications.recv().await {
        queued.push(notification.version);
    }
    assert_eq!(
        queued,
        vec![2, 3, 4, 5],
        "the stalled subscriber got what fit in its queue, then the end of its stream"
    );
    hub.publish("flow-late", "{}").await.unwrap();
    for received in &readers {
        eventually(
            "the others keep receiving",
            Duration::from_secs(1),
            || async { received.lock().unwrap().len() == 11 },
        )
        .await;
    }
    hub.shutdown().await;
}

/// Two hubs sharing one store (as hubs sharing Redis): a publication on one reaches the
/// subscribers of the other, through the store's watch, and versions never collide.
#[tokio::test(start_paused = true)]
async fn a_publication_on_one_hub_reaches_the_subscribers_of_another() {
    let store = InMemoryBlueprintStore::new();
    let first = start_hub("hub-0", store.clone(), AuthorityConfig::default()).await;
    let second = start_hub("hub-1", store.clone(), AuthorityConfig::default()).await;
    let history = first.ready().await.history_id;
    assert_eq!(second.ready().await.history_id, history, "one register");
    assert_eq!(store.entries().len(), 1, "created once");

    let grant = second.connect("peer-a").await.unwrap();
    let received = drain(second.subscribe("peer-a", &grant.session_id).await.unwrap());
    let entry = first.publish("flow", r#"{"by":"first"}"#).await.unwrap();
    assert_eq!(entry.version, 2);
    eventually("the push crosses hubs", Duration::from_secs(1), || async {
        received.lock().unwrap().len() == 1
    })
    .await;
    let pushed = received.lock().unwrap()[0].clone();
    assert_eq!(
        (pushed.version, pushed.blueprint_id),
        (2, blueprint("flow"))
    );
    assert_eq!(second.version().await, 2);
    let reader = second.connect("peer-r").await.unwrap();
    let served = second
        .entries("peer-r", &reader.session_id, SyncScope::After(1))
        .await
        .unwrap();
    assert_eq!(served.entries.len(), 1);
    assert_eq!(*served.entries[0], *entry);

    let updated = second.publish("flow", r#"{"by":"second"}"#).await.unwrap();
    assert_eq!(
        (updated.version, updated.kind),
        (3, EntryKind::Updated),
        "the second hub knew of the first one's publication"
    );
    eventually(
        "the first hub catches up",
        Duration::from_secs(1),
        || async { first.version().await == 3 },
    )
    .await;
    first.shutdown().await;
    second.shutdown().await;
}

/// A peer silent for longer than `session_expiry` loses its session (and its push
/// subscription); a peer that keeps sending heartbeats keeps its own.
#[tokio::test(start_paused = true)]
async fn silent_sessions_are_swept_after_session_expiry() {
    let config = AuthorityConfig::default();
    let expiry = config.session_expiry;
    let hub = start_hub("hub-0", InMemoryBlueprintStore::new(), config.clone()).await;
    hub.ready().await;
    let silent = hub.connect("peer-silent").await.unwrap();
    let mut silent_pushes = hub
        .subscribe("peer-silent", &silent.session_id)
        .await
        .unwrap();
    let alive = hub.connect("peer-alive").await.unwrap();

    // 120 s: both known (the silent one was last seen at 0 s, expiry 150 s).
    for _ in 0..4 {
        pass(config.heartbeat_interval).await;
        hub.heartbeat("peer-alive", &alive.session_id, 1)
            .await
            .unwrap();
    }
    assert!(expiry > Duration::from_secs(120));
    assert_eq!(hub.peers().await.len(), 2, "not yet expired");
    // 180 s: past the expiry and a sweep.
    for _ in 0..2 {
        pass(config.heartbeat_interval).await;
        hub.heartbeat("peer-alive", &alive.session_id, 1)
            .await
            .unwrap();
    }
    assert!(expiry + config.sweep_interval <= Duration::from_secs(180));
    let peers: Vec<_> = hub.peers().await.into_iter().map(|p| p.peer_id).collect();
    assert_eq!(peers, vec![node("peer-alive")]);
    assert!(matches!(
        hub.heartbeat("peer-silent", &silent.session_id, 1).await,
        Err(AuthorityError::NotConnected(_))
    ));
    assert!(
        silent_pushes.notifications.recv().await.is_none(),
        "its subscription ended with the session"
    );
    hub.shutdown().await;
}

/// Issue 7 (7): a shared store that lost the hub's last entries (or everything) made the next
/// publication re-issue their versions with other content, and a wiped store refused every
/// append for good. Now the store refuses an append below the version the hub holds, the hub
/// writes back what it holds (same versions, same checksums), then appends: no version is
/// issued twice, and the store holds the whole register again.
#[tokio::test(start_paused = true)]
async fn a_publication_on_a_store_that_lost_entries_restores_them_first() {
    let store = InMemoryBlueprintStore::new();
    let hub = hub_on(&store).await;
    hub.publish("a", "[1]").await.unwrap();
    hub.publish("b", "[2]").await.unwrap();
    let held = store.entries();
    assert_eq!(hub.version().await, 3);

    store.lose_last(2);
    let c = hub.publish("c", "[3]").await.unwrap();
    assert_eq!(c.version, 4, "the next version, not a lost one again");
    let entries = store.entries();
    assert_eq!(
        entries[..3],
        held[..],
        "the lost entries are back, unchanged"
    );
    assert_eq!(entries[3].blueprint_id, blueprint("c"));

    let genesis = store.genesis();
    store.wipe();
    let d = hub.publish("d", "[4]").await.unwrap();
    assert_eq!(d.version, 5);
    assert_eq!(store.genesis(), genesis, "the same history, written back");
    let versions: Vec<u64> = store.entries().iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    assert_eq!(store.restores(), 2);
    hub.shutdown().await;
}

/// Issue 7 (8): a wiped shared store is written back by the periodic check, before anyone
/// publishes; two hubs on the store doing it at once agree on one register.
#[tokio::test(start_paused = true)]
async fn two_hubs_write_a_wiped_store_back_within_the_check_interval() {
    let store = InMemoryBlueprintStore::new();
    let config = AuthorityConfig::default();
    let first = start_hub("hub-0", store.clone(), config.clone()).await;
    first.ready().await;
    let second = start_hub("hub-1", store.clone(), config.clone()).await;
    second.ready().await;
    first.publish("a", "[1]").await.unwrap();
    first.publish("b", "[2]").await.unwrap();
    eventually(
        "the second hub caught up",
        Duration::from_secs(30),
        || async { second.version().await == 3 },
    )
    .await;
    let held = store.entries();
    let genesis = store.genesis();

    store.wipe();
    pass(config.store_check_interval + Duration::from_secs(1)).await;
    assert_eq!(store.genesis(), genesis);
    assert_eq!(
        store.entries(),
        held,
        "both hubs wrote back the same register"
    );
    let c = second.publish("c", "[3]").await.unwrap();
    assert_eq!(c.version, 4);
    eventually(
        "the first hub took version 4",
        Duration::from_secs(30),
        || async { first.version().await == 4 },
    )
    .await;
    first.shutdown().await;
    second.shutdown().await;
}
