//! The MongoDB adapters on their own, against the MongoDB-wire stand-in SecantusDB (one server
//! per test, real time; or `HERALD_MONGODB_URL`): the documented collections and indexes,
//! gap-free versions with several hubs appending at once, the watch, corrupt documents, and
//! outages. CI verifies these against a MongoDB-wire stand-in, not against MongoDB. The
//! behaviour every store shares is in the contract suites (`ad_stores`, `blueprint_stores`,
//! `ground_truths`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use herald::parts::actors::ports::{
    AdBatch, AdStore, BatchScope, BlueprintStore, BlueprintStoreError, StoreError,
};
use herald::parts::messages::{
    AdSource, Advertisement, NodeId, PoolMeta, RegisterId, SyncState, SystemRegisterEntry,
    Timestamp,
};
use herald::parts::runtime::stores::{MongoAdStore, MongoBlueprintStore};
use mongodb::bson::{Document, doc};
use tokio::time::Instant;

use crate::blueprint_stores::append_racing;
use crate::support::fixtures::{entry, genesis};
use crate::support::mongo::{MongoServer, skip_unless_own_server};

/// An unavailable store must say so well within this (server selection gives up after 2 s).
const FAIL_FAST: Duration = Duration::from_secs(10);
/// A watch must deliver a version within this.
const WATCH_DEADLINE: Duration = Duration::from_secs(15);

fn versions(entries: &[SystemRegisterEntry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.version).collect()
}

async fn hub(server: &MongoServer) -> Arc<MongoBlueprintStore> {
    Arc::new(MongoBlueprintStore::open(&server.config()).await.unwrap())
}

async fn collection(server: &MongoServer, name: &str) -> mongodb::Collection<Document> {
    server.database_handle().await.collection(name)
}

async fn watch_until(watch: &mut BoxStream<'static, u64>, wanted: impl IntoIterator<Item = u64>) {
    let mut missing: BTreeSet<u64> = wanted.into_iter().collect();
    let deadline = Instant::now() + WATCH_DEADLINE;
    while !missing.is_empty() {
        match tokio::time::timeout_at(deadline, watch.next()).await {
            Ok(Some(version)) => {
                missing.retain(|wanted| *wanted > version);
            }
            Ok(None) => panic!("the watch ended; missing {missing:?}"),
            Err(_) => panic!("no version within {WATCH_DEADLINE:?}; missing {missing:?}"),
        }
    }
}

fn ad(n: u8) -> Advertisement {
    Advertisement {
        register_id: RegisterId::from_bytes([n; 16]),
        source: AdSource::Local,
        sync_state: SyncState::Active,
        is_public: true,
        latest_version: u64::MAX,
        latest_docket_version: 1,
        name: Some(format!("register {n}").into()),
        description: None,
        refreshed_at: Timestamp::from_unix_millis(1_700_000_000_000),
        changed_at: Timestamp::from_unix_millis(1_700_000_000_000),
    }
}

fn meta(write_seq: u64) -> PoolMeta {
    PoolMeta {
        last_snapshot: None,
        generation: u64::MAX - 1,
        write_seq,
    }
}

#[tokio::test]
async fn the_blueprint_store_uses_the_documented_collections_and_unique_indexes() {
    let server = MongoServer::start();
    let store = hub(&server).await;
    store
        .create(&genesis(1), vec![entry("seed", 1)])
        .await
        .unwrap();
    let appended = store.append(entry("a", 2), 1).await.unwrap();

    let meta = collection(&server, "system_register_meta").await;
    let counter = meta
        .find_one(doc! { "_id": "register" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counter.get_i64("version").unwrap(), 2);
    assert_eq!(
        counter.get_str("historyId").unwrap(),
        genesis(1).history_id.as_str()
    );
    let entries = collection(&server, "system_register_blueprints").await;
    let stored = entries
        .find_one(doc! { "version": 2_i64 })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("blueprintId").unwrap(), "a");
    assert_eq!(stored.get_str("kind").unwrap(), "published");
    assert_eq!(stored.get_str("checksum").unwrap(), appended.checksum);
    let indexes = entries.list_index_names().await.unwrap();
    for wanted in ["version", "blueprintId_version"] {
        assert!(indexes.iter().any(|name| name == wanted), "{indexes:?}");
    }
    // The unique index refuses a second entry at a version, whoever writes it.
    let twin = doc! { "version": 2_i64, "blueprintId": "b", "kind": "published", "checksum": "x", "entry": "{}" };
    assert!(entries.insert_one(twin).await.is_err());
}

/// 100 appends at once through 4 stores (4 hubs, 4 clients): the transactions allocate 100
/// distinct, consecutive versions after the seed, and each stored entry is the one its append
/// got.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_appends_from_four_hubs_get_consecutive_versions() {
    let server = MongoServer::start();
    let mut hubs = Vec::new();
    for _ in 0..4 {
        hubs.push(hub(&server).await);
    }
    hubs[0]
        .create(&genesis(1), vec![entry("seed", 1)])
        .await
        .unwrap();
    let appends: Vec<_> = (0..100)
        .map(|n| {
            let hub = Arc::clone(&hubs[n % hubs.len()]);
            tokio::spawn(
                async move { append_racing(hub.as_ref(), &format!("blueprint-{n}")).await },
            )
        })
        .collect();
    let mut got: BTreeMap<u64, SystemRegisterEntry> = BTreeMap::new();
    for append in appends {
        let entry = append.await.unwrap();
        assert!(
            got.insert(entry.version, entry).is_none(),
            "a version was given twice"
        );
    }
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        (2..102).collect::<Vec<_>>()
    );
    for hub in &hubs {
        let loaded = hub.load().await.unwrap().unwrap();
        assert_eq!(versions(&loaded.entries), (1..102).collect::<Vec<_>>());
        for entry in &loaded.entries[1..] {
            assert_eq!(&got[&entry.version], entry);
        }
    }
    assert_eq!(hubs[3].head().await.unwrap().unwrap().version, 101);
    let after_seed = hubs[2].entries_after(1).await.unwrap();
    assert_eq!(after_seed, got.into_values().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_racing_to_create_exactly_one_wins() {
    let server = MongoServer::start();
    for round in 0..10u8 {
        let (hub_a, hub_b) = (hub(&server).await, hub(&server).await);
        let create = |hub: Arc<MongoBlueprintStore>, history: u8| {
            tokio::spawn(async move { hub.create(&genesis(history), vec![entry("seed", 1)]).await })
        };
        let (a, b) = (create(Arc::clone(&hub_a), 1), create(Arc::clone(&hub_b), 2));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let winner = match (&a, &b) {
            (Ok(_), Err(BlueprintStoreError::AlreadyCreated)) => genesis(1),
            (Err(BlueprintStoreError::AlreadyCreated), Ok(_)) => genesis(2),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        for hub in [&hub_a, &hub_b] {
            let loaded = hub.load().await.unwrap().unwrap();
            assert_eq!(loaded.genesis, winner, "round {round}");
            assert_eq!(versions(&loaded.entries), [1], "round {round}");
        }
        // A create repeated with the same genesis is its own earlier attempt, not a rival.
        let again = hub_a.create(&winner, vec![entry("seed", 1)]).await.unwrap();
        assert_eq!(versions(&again), [1], "round {round}");
        server.wipe().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_one_hub_sees_the_versions_appended_through_another() {
    let server = MongoServer::start();
    let (hub_a, hub_b) = (hub(&server).await, hub(&server).await);
    hub_a
        .create(&genesis(1), vec![entry("seed", 1)])
        .await
        .unwrap();
    let mut watch = hub_a
        .watch()
        .await
        .unwrap()
        .expect("a shared store can be watched");
    // First the current version: appends made before the watch opened are not missed.
    let first = tokio::time::timeout(WATCH_DEADLINE, watch.next())
        .await
        .unwrap();
    assert_eq!(first, Some(1));
    for n in 0..5 {
        hub_b
            .append(entry(&format!("b-{n}"), 2 + n), 1 + n)
            .await
            .unwrap();
    }
    watch_until(&mut watch, [6]).await;
    hub_a.append(entry("a", 7), 6).await.unwrap();
    watch_until(&mut watch, [7]).await;
}

#[tokio::test]
async fn undecodable_or_misplaced_entries_make_the_register_corrupt() {
    let server = MongoServer::start();
    let store = hub(&server).await;
    store
        .create(&genesis(1), vec![entry("seed", 1)])
        .await
        .unwrap();
    store.append(entry("a", 2), 1).await.unwrap();
    let entries = collection(&server, "system_register_blueprints").await;
    entries
        .update_one(
            doc! { "version": 2_i64 },
            doc! { "$set": { "entry": "{broken" } },
        )
        .await
        .unwrap();
    for err in [
        store.load().await.unwrap_err(),
        store.entries_after(1).await.unwrap_err(),
    ] {
        assert!(
            matches!(err, BlueprintStoreError::Corrupt { ref what } if what.contains("version 2")),
            "{err:?}"
        );
    }
    // An entry lost below the counter is a gap: reported, never served around.
    entries.delete_one(doc! { "version": 2_i64 }).await.unwrap();
    let err = store.entries_after(1).await.unwrap_err();
    assert!(
        matches!(err, BlueprintStoreError::Corrupt { ref what } if what.contains("missing")),
        "{err:?}"
    );
    // Entries without the counter document are orphans.
    collection(&server, "system_register_meta")
        .await
        .drop()
        .await
        .unwrap();
    assert!(matches!(
        store.head().await,
        Err(BlueprintStoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.load().await,
        Err(BlueprintStoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn the_ad_store_keeps_json_records_per_node_and_skips_what_does_not_decode() {
    let server = MongoServer::start();
    let store_a = MongoAdStore::open(&server.config(), &NodeId::parse("peer-a").unwrap())
        .await
        .unwrap();
    let store_ab = MongoAdStore::open(&server.config(), &NodeId::parse("peer-a-b").unwrap())
        .await
        .unwrap();
    let (one, two) = (ad(1), ad(2));
    let batch = AdBatch {
        puts: vec![&one, &two],
        deletes: Vec::new(),
        meta: meta(1),
        scope: BatchScope::Everything,
    };
    store_a
        .write(&batch, Duration::from_secs(60))
        .await
        .unwrap();
    let other = AdBatch {
        puts: vec![&one],
        meta: meta(9),
        ..batch.clone()
    };
    store_ab
        .write(&other, Duration::from_secs(60))
        .await
        .unwrap();

    let ads = collection(&server, "advertisements").await;
    let key = format!("peer-a:local:{}", one.register_id);
    let record = ads.find_one(doc! { "_id": &key }).await.unwrap().unwrap();
    let stored: Advertisement = serde_json::from_str(record.get_str("ad").unwrap()).unwrap();
    assert_eq!(stored, one, "u64::MAX survives: the record is JSON");
    let loaded = store_a.load().await.unwrap();
    assert_eq!(loaded.ads.len(), 2, "peer-a-b's records are not peer-a's");
    assert_eq!(loaded.meta, Some(meta(1)));

    ads.update_one(doc! { "_id": &key }, doc! { "$set": { "ad": "{broken" } })
        .await
        .unwrap();
    let loaded = store_a.load().await.unwrap();
    assert_eq!(loaded.ads, vec![two.clone()]);
    assert_eq!(loaded.skipped, vec![key]);
}

/// Multi-threaded like a node, so the driver's background monitoring runs while MongoDB is
/// down. Every call fails fast with `Unavailable` and the watch ends; after an empty restart the
/// stores work again (the register is gone: `None`, and a hub's append is `Behind`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_down_means_unavailable_fast_and_the_stores_recover_after_a_restart() {
    if skip_unless_own_server("mongo_down_means_unavailable_fast").is_some() {
        return;
    }
    let mut server = MongoServer::start();
    let blueprints = hub(&server).await;
    let ads = MongoAdStore::open(&server.config(), &NodeId::parse("peer-a").unwrap())
        .await
        .unwrap();
    blueprints
        .create(&genesis(1), vec![entry("seed", 1)])
        .await
        .unwrap();
    let one = ad(1);
    let batch = AdBatch {
        puts: vec![&one],
        deletes: Vec::new(),
        meta: meta(1),
        scope: BatchScope::Everything,
    };
    ads.write(&batch, Duration::from_secs(60)).await.unwrap();
    let mut watch = blueprints.watch().await.unwrap().unwrap();
    watch_until(&mut watch, [1]).await;

    server.kill();
    let started = Instant::now();
    assert!(matches!(
        blueprints.append(entry("a", 2), 1).await,
        Err(BlueprintStoreError::Unavailable(_))
    ));
    assert!(matches!(
        blueprints.head().await,
        Err(BlueprintStoreError::Unavailable(_))
    ));
    assert!(matches!(
        ads.write(&batch, Duration::from_secs(60)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(ads.load().await, Err(StoreError::Unavailable(_))));
    assert!(started.elapsed() < 4 * FAIL_FAST, "{:?}", started.elapsed());
    let ended = tokio::time::timeout(WATCH_DEADLINE * 4, watch.next()).await;
    assert!(
        matches!(ended, Ok(None)),
        "the watch of a dead server ends: {ended:?}"
    );

    server.restart();
    let head = crate::support::wait_until(
        "the store answers again",
        Duration::from_secs(30),
        || async { blueprints.head().await.ok() },
    )
    .await;
    assert_eq!(head, None, "an empty restart lost the register");
    assert!(matches!(
        blueprints.append(entry("a", 2), 1).await,
        Err(BlueprintStoreError::Behind { store_head: 0 })
    ));
    assert_eq!(ads.read_meta().await.unwrap(), None);
    let _watch = blueprints.watch().await.unwrap().unwrap();
}

/// Issue 10, deliverable 1: a node whose MongoDB is unreachable at start does not exit: it
/// starts, reports its store degraded and its resync driver retrying, and retries with
/// backoff; once MongoDB answers, the pool loads, writes, and the register role's full sync
/// goes through, with no restart of anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_mongodb_is_down_runs_degraded_and_recovers() {
    if skip_unless_own_server("a_node_started_while_mongodb_is_down").is_some() {
        return;
    }
    let mut server = MongoServer::start();
    server.kill();
    let raw = herald::RawNodeConfig {
        node_id: "peer-mongo".into(),
        peer: Some(herald::RawPeerConfig {
            store_backoff_max_ms: Some(2_000),
            ..herald::RawPeerConfig::default()
        }),
        register: Some(herald::RawRegisterConfig {
            resync_backoff_max_ms: Some(2_000),
            ..herald::RawRegisterConfig::default()
        }),
        mongodb: Some(herald::RawMongoConfig {
            url: server.url(),
            database: Some(server.database().to_owned()),
            server_selection_timeout_ms: Some(500),
            ..herald::RawMongoConfig::default()
        }),
        call_timeout_ms: Some(30_000),
        ..herald::RawNodeConfig::default()
    };
    let node = herald::Node::start(raw.validate().unwrap())
        .await
        .expect("a node starts while MongoDB is down");
    let api = node.api();
    crate::support::wait_until(
        "the node reports its stores degraded",
        Duration::from_secs(30),
        || async {
            let pool = api.pool_status().await.ok()?;
            let sync = api.sync_state().await.ok()?;
            let degraded = matches!(pool.store, herald::StoreHealth::Degraded { .. });
            (degraded
                && sync.status == herald::SyncStatus::Retrying
                && sync.consecutive_failures >= 2)
                .then_some(())
        },
    )
    .await;

    server.restart();
    crate::support::wait_until(
        "the node healthy on MongoDB",
        Duration::from_secs(60),
        || async {
            let pool = api.pool_status().await.ok()?;
            let sync = api.sync_state().await.ok()?;
            (pool.store == herald::StoreHealth::Healthy
                && pool.loaded
                && sync.status == herald::SyncStatus::InSync)
                .then_some(())
        },
    )
    .await;
    let outcome = api
        .advertise(herald::AdInput::public(RegisterId::from_bytes([5; 16])))
        .await
        .unwrap();
    assert!(outcome.persisted, "{outcome:?}");
    let children = api.children().await.unwrap();
    assert!(
        children
            .iter()
            .all(|child| child.running && child.restarts == 0),
        "{children:?}"
    );
    let report = node.shutdown().await;
    assert!(report.killed.is_empty(), "{report:?}");
}
