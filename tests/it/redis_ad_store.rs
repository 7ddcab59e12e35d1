//! `RedisAdStore` against real `redis-server` processes (one per test), real time: the key
//! layout, round trips, skipping bad records, and outages (Redis down at start, killed,
//! restarted empty).

use std::time::Duration;

use herald::parts::actors::ports::{AdBatch, AdStore, BatchScope, StoreError, StoredPool};
use herald::parts::messages::{
    AdKey, AdSource, Advertisement, NodeId, PoolMeta, RegisterId, Snapshot, SyncState, Timestamp,
};
use herald::parts::runtime::stores::RedisAdStore;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::support::redis::RedisServer;

const EXPIRY: Duration = Duration::from_secs(60);
/// An unavailable store must say so well within this (it fails in about a second at most).
const FAIL_FAST: Duration = Duration::from_secs(5);

fn node(id: &str) -> NodeId {
    NodeId::parse(id).unwrap()
}

fn rid(n: u32) -> RegisterId {
    let mut bytes = [0u8; 16];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    RegisterId::from_bytes(bytes)
}

fn ad(source: AdSource, register_id: RegisterId, version: u64) -> Advertisement {
    Advertisement {
        register_id,
        source,
        sync_state: SyncState::Active,
        is_public: true,
        latest_version: version,
        latest_docket_version: version / 2,
        name: Some(format!("register {version}")),
        description: None,
        refreshed_at: Timestamp::from_unix_millis(1_700_000_000_000),
        changed_at: Timestamp::from_unix_millis(
            1_700_000_000_000 + i64::try_from(version).unwrap(),
        ),
    }
}

fn local(n: u32, version: u64) -> Advertisement {
    ad(AdSource::Local, rid(n), version)
}

fn remote(peer: &str, n: u32, version: u64) -> Advertisement {
    ad(AdSource::Remote(node(peer)), rid(n), version)
}

fn meta(seq: u64) -> PoolMeta {
    PoolMeta {
        last_snapshot: Some(Snapshot::new(
            seq,
            Timestamp::from_unix_millis(1_700_000_000_000),
        )),
        generation: 42,
        write_seq: seq,
    }
}

/// A batch of everything (it may create the meta record).
fn puts(ads: &[Advertisement], seq: u64) -> AdBatch<'_> {
    AdBatch {
        puts: ads.iter().collect(),
        deletes: Vec::new(),
        meta: meta(seq),
        scope: BatchScope::Everything,
    }
}

fn store(server: &RedisServer, node_id: &str) -> RedisAdStore {
    RedisAdStore::new(&server.url(), "herald", &node(node_id)).unwrap()
}

async fn all_keys(conn: &mut MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap();
    keys.sort();
    keys
}

fn sorted(mut ads: Vec<Advertisement>) -> Vec<Advertisement> {
    ads.sort_by_key(Advertisement::key);
    ads
}

fn sorted_skipped(pool: &StoredPool) -> Vec<String> {
    let mut skipped = pool.skipped.clone();
    skipped.sort();
    skipped
}

/// Runs `call`, asserts it fails fast with `Unavailable`.
async fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    let result = call.await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: expected Unavailable, got {result:?}"
    );
    assert!(elapsed < FAIL_FAST, "{what} took {elapsed:?} to fail");
}

#[tokio::test]
async fn write_then_load_round_trips_puts_applies_deletes_and_sets_expiry() {
    let server = RedisServer::start();
    let store = store(&server, "peer-a");
    store
        .write(
            &puts(&[local(1, 1), local(2, 1), remote("peer-b", 3, 1)], 1),
            EXPIRY,
        )
        .await
        .unwrap();
    let (updated, gone) = (local(1, 2), AdKey::local(rid(2)));
    let second = AdBatch {
        puts: vec![&updated],
        deletes: vec![&gone],
        meta: meta(2),
        scope: BatchScope::Changes,
    };
    assert_eq!(store.write(&second, EXPIRY).await.unwrap(), Some(meta(1)));

    let pool = store.load().await.unwrap();
    assert_eq!(
        sorted(pool.ads),
        sorted(vec![local(1, 2), remote("peer-b", 3, 1)])
    );
    assert_eq!(pool.meta, Some(meta(2)));
    assert!(pool.skipped.is_empty(), "{:?}", pool.skipped);

    let mut conn = server.connection().await;
    let keys = all_keys(&mut conn).await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            (55_000..=60_000).contains(&pttl),
            "{key} expires in {pttl} ms, expected about {EXPIRY:?}"
        );
    }
}

#[tokio::test]
async fn nodes_sharing_one_redis_see_only_their_own_ads_under_hash_tagged_keys() {
    let server = RedisServer::start();
    // `peer-a` is a prefix of `peer-ab`: the closing brace keeps their namespaces apart.
    let store_a = store(&server, "peer-a");
    let store_ab = store(&server, "peer-ab");
    let ads_a = vec![local(1, 1), remote("peer-c", 2, 1)];
    let ads_ab = vec![local(3, 1)];
    store_a.write(&puts(&ads_a, 1), EXPIRY).await.unwrap();
    store_ab.write(&puts(&ads_ab, 7), EXPIRY).await.unwrap();

    let pool_a = store_a.load().await.unwrap();
    let pool_ab = store_ab.load().await.unwrap();
    assert_eq!(sorted(pool_a.ads), sorted(ads_a));
    assert_eq!(pool_a.meta, Some(meta(1)));
    assert!(pool_a.skipped.is_empty(), "{:?}", pool_a.skipped);
    assert_eq!(pool_ab.ads, ads_ab);
    assert_eq!(pool_ab.meta, Some(meta(7)));
    assert!(pool_ab.skipped.is_empty(), "{:?}", pool_ab.skipped);

    let mut conn = server.connection().await;
    let mut expected = vec![
        format!("herald:{{peer-a}}:local:{}", rid(1)),
        format!("herald:{{peer-a}}:remote:peer-c:{}", rid(2)),
        "herald:{peer-a}:meta".to_owned(),
        format!("herald:{{peer-ab}}:local:{}", rid(3)),
        "herald:{peer-ab}:meta".to_owned(),
    ];
    expected.sort();
    assert_eq!(all_keys(&mut conn).await, expected);

    // Values are the camelCase JSON of the domain types.
    let key = format!("herald:{{peer-a}}:remote:peer-c:{}", rid(2));
    let value: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(json["registerId"], rid(2).as_str());
    assert_eq!(json["source"]["remote"], "peer-c");
    let value: Vec<u8> = redis::cmd("GET")
        .arg("herald:{peer-ab}:meta")
        .query_async(&mut conn)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(json["lastSnapshot"]["seq"], 7);
}

#[tokio::test]
async fn malformed_records_are_skipped_and_reported_while_the_rest_loads() {
    let server = RedisServer::start();
    let store = store(&server, "peer-a");
    let good = vec![local(1, 1), remote("peer-b", 2, 1)];
    store.write(&puts(&good, 1), EXPIRY).await.unwrap();

    let not_json = format!("herald:{{peer-a}}:local:{}", rid(3));
    let other_register = format!("herald:{{peer-a}}:local:{}", rid(4));
    let other_source = format!("herald:{{peer-a}}:remote:peer-b:{}", rid(5));
    let unknown_shape = "herald:{peer-a}:leftover".to_owned();
    let bad_register_id = "herald:{peer-a}:local:not-a-register".to_owned();
    let mut conn = server.connection().await;
    let other_register_value = serde_json::to_vec(&local(40, 1)).unwrap();
    let other_source_value = serde_json::to_vec(&local(5, 1)).unwrap();
    let _: () = redis::pipe()
        .set(&not_json, "{not json")
        .set(&other_register, other_register_value)
        .set(&other_source, other_source_value)
        .set(&unknown_shape, "x")
        .set(&bad_register_id, serde_json::to_vec(&local(6, 1)).unwrap())
        .set("elsewhere:{peer-a}:local:x", "not ours, not reported")
        .query_async(&mut conn)
        .await
        .unwrap();

    let pool = store.load().await.unwrap();
    assert_eq!(sorted(pool.ads.clone()), sorted(good.clone()));
    assert_eq!(pool.meta, Some(meta(1)));
    let mut expected = vec![
        not_json,
        other_register,
        other_source,
        unknown_shape,
        bad_register_id,
    ];
    expected.sort();
    assert_eq!(sorted_skipped(&pool), expected);

    // A meta record that does not decode is reported too; the ads still load.
    let _: () = redis::cmd("SET")
        .arg("herald:{peer-a}:meta")
        .arg("[]")
        .query_async(&mut conn)
        .await
        .unwrap();
    let pool = store.load().await.unwrap();
    assert_eq!(pool.meta, None);
    assert_eq!(sorted(pool.ads.clone()), sorted(good));
    assert!(
        pool.skipped.contains(&"herald:{peer-a}:meta".to_owned()),
        "{:?}",
        pool.skipped
    );
}

/// Issue 7, scenario A at the adapter: after `FLUSHALL`, one batch of changes used to write the
/// meta record again (`SET meta`), so the store looked intact. Now the batch answers with the
/// record it found (none) and leaves it missing (`SET … XX GET`).
#[tokio::test]
async fn after_flushall_a_batch_of_changes_reports_no_meta_and_does_not_recreate_it() {
    let server = RedisServer::start();
    let store = store(&server, "peer-a");
    assert_eq!(store.read_meta().await.unwrap(), None);
    assert_eq!(
        store.write(&puts(&[local(1, 1)], 1), EXPIRY).await.unwrap(),
        None
    );
    assert_eq!(store.read_meta().await.unwrap(), Some(meta(1)));

    let mut conn = server.connection().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    assert_eq!(store.read_meta().await.unwrap(), None);
    let ad = local(2, 1);
    let changes = AdBatch {
        puts: vec![&ad],
        deletes: Vec::new(),
        meta: meta(2),
        scope: BatchScope::Changes,
    };
    assert_eq!(store.write(&changes, EXPIRY).await.unwrap(), None);
    assert_eq!(store.read_meta().await.unwrap(), None, "not recreated");
    assert_eq!(
        all_keys(&mut conn).await.len(),
        1,
        "the put itself is applied"
    );
}

/// Multi-threaded like a node, so the driver's background reconnect attempt runs (and fails)
/// while Redis is down. Pins that the *first* call after Redis returns succeeds: without the
/// store's one retry it got the stale failed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_created_while_redis_is_down_fails_fast_then_works_once_redis_starts() {
    let mut server = RedisServer::start();
    server.kill();
    let store = store(&server, "peer-a");
    assert!(
        store
            .describe()
            .contains(&format!("127.0.0.1:{}", server.port())),
        "{}",
        store.describe()
    );

    assert_unavailable("load", store.load()).await;
    assert_unavailable("write", store.write(&puts(&[local(1, 1)], 1), EXPIRY)).await;
    assert_unavailable("read_meta", store.read_meta()).await;
    assert_unavailable("load again", store.load()).await;

    server.restart();
    assert_eq!(store.read_meta().await.unwrap(), None);
    store.write(&puts(&[local(1, 1)], 1), EXPIRY).await.unwrap();
    let pool = store.load().await.unwrap();
    assert_eq!(pool.ads, vec![local(1, 1)]);
    assert_eq!(pool.meta, Some(meta(1)));
}

/// Multi-threaded like a node, so the driver's background reconnect attempt runs (and fails)
/// while Redis is down. Pins that the *first* call after Redis returns succeeds: without the
/// store's one retry it got the stale failed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_fails_fast_and_the_same_store_works_after_an_empty_restart() {
    let mut server = RedisServer::start();
    let store = store(&server, "peer-a");
    store
        .write(&puts(&[local(1, 1), remote("peer-b", 2, 1)], 1), EXPIRY)
        .await
        .unwrap();
    assert_eq!(store.load().await.unwrap().ads.len(), 2);

    server.kill();
    assert_unavailable("read_meta", store.read_meta()).await;
    assert_unavailable("write", store.write(&puts(&[local(3, 1)], 2), EXPIRY)).await;
    assert_unavailable("load", store.load()).await;

    server.restart();
    // The restarted server is empty: the store must notice, not fail.
    assert_eq!(store.read_meta().await.unwrap(), None);
    assert_eq!(store.load().await.unwrap(), StoredPool::default());
    store.write(&puts(&[local(3, 1)], 2), EXPIRY).await.unwrap();
    let pool = store.load().await.unwrap();
    assert_eq!(pool.ads, vec![local(3, 1)]);
    assert_eq!(pool.meta, Some(meta(2)));
}

#[tokio::test]
async fn ten_thousand_puts_in_one_batch_write_and_load_back_completely() {
    let server = RedisServer::start();
    let store = store(&server, "peer-a");
    let peers = ["peer-b", "peer-c", "peer-d", "peer-e"];
    let ads: Vec<Advertisement> = (0..10_000u32)
        .map(|n| match n % 5 {
            0 => local(n, u64::from(n)),
            peer => remote(peers[peer as usize - 1], n, u64::from(n)),
        })
        .collect();
    store.write(&puts(&ads, 1), EXPIRY).await.unwrap();

    let pool = store.load().await.unwrap();
    assert_eq!(pool.ads.len(), 10_000);
    assert_eq!(sorted(pool.ads), sorted(ads.clone()));
    assert_eq!(pool.meta, Some(meta(1)));
    assert!(pool.skipped.is_empty(), "{:?}", pool.skipped);
    let mut conn = server.connection().await;
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(keys, 10_001);

    // And all of them go in one batch too.
    let keys: Vec<AdKey> = ads.iter().map(Advertisement::key).collect();
    let delete_all = AdBatch {
        puts: Vec::new(),
        deletes: keys.iter().collect(),
        meta: meta(2),
        scope: BatchScope::Changes,
    };
    store.write(&delete_all, EXPIRY).await.unwrap();
    let pool = store.load().await.unwrap();
    assert!(pool.ads.is_empty(), "{} ads left", pool.ads.len());
    assert_eq!(pool.meta, Some(meta(2)));
}

/// Regression: the connection manager reconnects by itself only after I/O errors, so a store
/// whose first handshake was refused (here a wrong password) used to stay broken for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_whose_handshake_was_refused_works_once_the_server_accepts_it() {
    let server = RedisServer::start();
    let mut admin = server.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("old-secret")
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://:new-secret@127.0.0.1:{}", server.port());
    let store = RedisAdStore::new(&url, "herald", &node("peer-a")).unwrap();
    assert!(!store.describe().contains("secret"), "{}", store.describe());

    assert_unavailable("read_meta", store.read_meta()).await;
    assert_unavailable("load", store.load()).await;

    // `admin` stays authenticated while the password changes.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("new-secret")
        .query_async(&mut admin)
        .await
        .unwrap();
    store.write(&puts(&[local(1, 1)], 1), EXPIRY).await.unwrap();
    assert_eq!(store.load().await.unwrap().ads, vec![local(1, 1)]);
}
