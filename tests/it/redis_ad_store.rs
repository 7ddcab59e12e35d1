//! `RedisAdStore` against real `redis-server` processes (one per test), real time: the key
//! layout, round trips, skipping bad records, and outages (Redis down at start, killed,
//! restarted empty).

use std::time::Duration;

use herald::parts::actors::ports::{AdBatch, AdStore, BatchScope, StoreError, StoredPool};
use herald::parts::messages::{
    AdKey, AdSource, Advertisement, PoolMeta, RegisterId, Snapshot, SyncState, Timestamp,
};
use herald::parts::runtime::stores::RedisAdStore;
use redis::aio::MultiplexedConnection;

use crate::support::fails_fast;
use crate::support::fixtures::{node, rid};
use crate::support::redis::RedisServer;

const EXPIRY: Duration = Duration::from_secs(60);

fn ad(source: AdSource, register_id: RegisterId, version: u64) -> Advertisement {
    Advertisement {
        register_id,
        source,
        sync_state: SyncState::Active,
        is_public: true,
        latest_version: version,
        latest_docket_version: version / 2,
        name: Some(format!("register {version}").into()),
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
    let err = fails_fast(what, call).await;
    assert!(
        matches!(err, StoreError::Unavailable(_)),
        "{what}: expected Unavailable, got {err:?}"
    );
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
        "herald:{peer-a}:ads:local",
        "herald:{peer-a}:ads:remote",
        "herald:{peer-a}:ads:meta",
        "herald:{peer-ab}:ads:local",
        "herald:{peer-ab}:ads:meta",
    ];
    expected.sort();
    assert_eq!(all_keys(&mut conn).await, expected);

    // Values are the camelCase JSON of the domain types.
    let value: Vec<u8> = redis::cmd("HGET")
        .arg("herald:{peer-a}:ads:remote")
        .arg(format!("peer-c:{}", rid(2)))
        .query_async(&mut conn)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(json["registerId"], rid(2).as_str());
    assert_eq!(json["source"]["remote"], "peer-c");
    let value: Vec<u8> = redis::cmd("HGET")
        .arg("herald:{peer-a}:ads:local")
        .arg(rid(1).as_str())
        .query_async(&mut conn)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&value).unwrap();
    assert_eq!(json["registerId"], rid(1).as_str());
    let value: Vec<u8> = redis::cmd("GET")
        .arg("herald:{peer-ab}:ads:meta")
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

    let (local_hash, remote_hash) = ("herald:{peer-a}:ads:local", "herald:{peer-a}:ads:remote");
    let not_json = rid(3).to_string();
    let other_register = rid(4).to_string();
    let other_source = format!("peer-b:{}", rid(5));
    let bad_register_id = "not-a-register";
    let bad_peer = format!("peer:b:{}", rid(7));
    let mut conn = server.connection().await;
    let _: () = redis::pipe()
        .hset(local_hash, &not_json, "{not json")
        .hset(
            local_hash,
            &other_register,
            serde_json::to_vec(&local(40, 1)).unwrap(),
        )
        .hset(
            remote_hash,
            &other_source,
            serde_json::to_vec(&local(5, 1)).unwrap(),
        )
        .hset(
            local_hash,
            bad_register_id,
            serde_json::to_vec(&local(6, 1)).unwrap(),
        )
        .hset(
            remote_hash,
            &bad_peer,
            serde_json::to_vec(&remote("peer-b", 7, 1)).unwrap(),
        )
        .set(
            "herald:{peer-a}:leftover",
            "not the ad store's, not reported",
        )
        .set("elsewhere:{peer-a}:ads:local", "not ours, not reported")
        .query_async(&mut conn)
        .await
        .unwrap();

    let pool = store.load().await.unwrap();
    assert_eq!(sorted(pool.ads.clone()), sorted(good.clone()));
    assert_eq!(pool.meta, Some(meta(1)));
    let mut expected = vec![
        format!("{local_hash} {not_json}"),
        format!("{local_hash} {other_register}"),
        format!("{remote_hash} {other_source}"),
        format!("{local_hash} {bad_register_id}"),
        format!("{remote_hash} {bad_peer}"),
    ];
    expected.sort();
    assert_eq!(sorted_skipped(&pool), expected);

    // A meta record that does not decode is reported too; the ads still load.
    let _: () = redis::cmd("SET")
        .arg("herald:{peer-a}:ads:meta")
        .arg("[]")
        .query_async(&mut conn)
        .await
        .unwrap();
    let pool = store.load().await.unwrap();
    assert_eq!(pool.meta, None);
    assert_eq!(sorted(pool.ads.clone()), sorted(good));
    assert!(
        pool.skipped
            .contains(&"herald:{peer-a}:ads:meta".to_owned()),
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
    let keys = all_keys(&mut conn).await;
    assert_eq!(
        keys,
        [
            "herald:{peer-a}:ads:local",
            "herald:{peer-a}:ads:meta",
            "herald:{peer-a}:ads:remote"
        ],
        "one hash per kind of ad and the meta record"
    );

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

/// A batch of everything leaves the store holding exactly the pool's ads: a record the pool no
/// longer holds (kept by a store restored from an older copy, say) goes with it.
#[tokio::test]
async fn a_batch_of_everything_replaces_what_the_hashes_held() {
    let server = RedisServer::start();
    let store = store(&server, "peer-a");
    let before = [local(1, 1), local(2, 1), remote("peer-b", 3, 1)];
    store.write(&puts(&before, 1), EXPIRY).await.unwrap();
    let now = [local(1, 2), remote("peer-b", 4, 1)];
    store.write(&puts(&now, 2), EXPIRY).await.unwrap();
    let pool = store.load().await.unwrap();
    assert_eq!(sorted(pool.ads), sorted(now.to_vec()));
    assert_eq!(pool.meta, Some(meta(2)));
}

/// The layout before this one: one key per ad and a meta record under `…:meta`, each with its
/// own expiry, written with raw commands as that adapter wrote them.
async fn seed_the_layout_before(
    conn: &mut MultiplexedConnection,
    node_id: &str,
    ads: &[Advertisement],
    meta: &PoolMeta,
) {
    let mut pipe = redis::pipe();
    for ad in ads {
        let key = match &ad.source {
            AdSource::Local => format!("herald:{{{node_id}}}:local:{}", ad.register_id),
            AdSource::Remote(peer) => {
                format!("herald:{{{node_id}}}:remote:{peer}:{}", ad.register_id)
            }
        };
        pipe.cmd("SET")
            .arg(key)
            .arg(serde_json::to_vec(ad).unwrap())
            .arg("PX")
            .arg(EXPIRY.as_millis() as u64);
    }
    pipe.cmd("SET")
        .arg(format!("herald:{{{node_id}}}:meta"))
        .arg(serde_json::to_vec(meta).unwrap())
        .arg("PX")
        .arg(EXPIRY.as_millis() as u64);
    let _: () = pipe.query_async(conn).await.unwrap();
}

/// Issue 11, item 6: a store of the layout before (one key per ad) is read once, moved into the
/// hashes with its meta record and expiry, and its keys deleted; keys of other stores sharing
/// the namespace stay. Once moved, loads look for old keys no more (an old key that appears
/// afterwards is not read: no `SCAN`).
#[tokio::test]
async fn a_store_of_the_layout_before_is_moved_into_the_hashes_once() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let old = vec![
        local(1, 1),
        local(2, 3),
        remote("peer-b", 3, 1),
        remote("peer-c", 4, 2),
    ];
    seed_the_layout_before(&mut conn, "peer-a", &old, &meta(5)).await;
    let malformed = "herald:{peer-a}:local:not-a-register";
    let _: () = redis::pipe()
        .set(malformed, "{}")
        .set("herald:{peer-a}:gossip:peer-b", "another store's")
        .query_async(&mut conn)
        .await
        .unwrap();
    seed_the_layout_before(&mut conn, "peer-z", &[local(9, 1)], &meta(1)).await;

    let store = store(&server, "peer-a");
    let pool = store.load().await.unwrap();
    assert_eq!(sorted(pool.ads), sorted(old.clone()));
    assert_eq!(
        pool.meta,
        Some(meta(5)),
        "the pool continues its generation"
    );
    assert_eq!(pool.skipped, vec![malformed.to_owned()]);

    let mut expected = vec![
        "herald:{peer-a}:ads:local".to_owned(),
        "herald:{peer-a}:ads:meta".to_owned(),
        "herald:{peer-a}:ads:remote".to_owned(),
        "herald:{peer-a}:gossip:peer-b".to_owned(),
        "herald:{peer-z}:meta".to_owned(),
        format!("herald:{{peer-z}}:local:{}", rid(9)),
    ];
    expected.sort();
    assert_eq!(
        all_keys(&mut conn).await,
        expected,
        "old keys of peer-a gone"
    );
    for key in ["herald:{peer-a}:ads:local", "herald:{peer-a}:ads:meta"] {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            (50_000..=60_000).contains(&pttl),
            "{key} expires in {pttl} ms: the old keys' remaining life"
        );
    }
    // The store reads the same from the hashes now, and writes go on in its generation.
    assert_eq!(sorted(store.load().await.unwrap().ads), sorted(old.clone()));
    let changed = local(1, 2);
    let changes = AdBatch {
        puts: vec![&changed],
        deletes: Vec::new(),
        meta: meta(6),
        scope: BatchScope::Changes,
    };
    assert_eq!(store.write(&changes, EXPIRY).await.unwrap(), Some(meta(5)));

    // An old key written now is not looked for: the layout is moved.
    seed_the_layout_before(&mut conn, "peer-a", &[local(8, 1)], &meta(1)).await;
    let pool = store.load().await.unwrap();
    assert_eq!(pool.ads.len(), old.len());
    assert_eq!(pool.meta, Some(meta(6)));
}

/// The migration through a running node: a peer that starts on a Redis of the layout before
/// serves every ad from it, and the old keys are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_starting_on_the_layout_before_serves_every_ad_and_leaves_no_old_key() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let old: Vec<Advertisement> = (0..1_000)
        .map(|n| match n % 4 {
            0 => remote("peer-b", n, 1),
            _ => local(n, u64::from(n)),
        })
        .collect();
    seed_the_layout_before(&mut conn, "migrating-peer", &old, &meta(3)).await;

    let raw = herald::RawNodeConfig {
        node_id: "migrating-peer".into(),
        peer: Some(herald::RawPeerConfig {
            redis_url: Some(server.url()),
            ..herald::RawPeerConfig::default()
        }),
        ..herald::RawNodeConfig::default()
    };
    let node = herald::Node::start(raw.validate().unwrap()).await.unwrap();
    let mut served: Vec<RegisterId> = node
        .available()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.register_id)
        .collect();
    served.sort();
    let mut expected: Vec<RegisterId> = old.iter().map(|a| a.register_id.clone()).collect();
    expected.sort();
    assert_eq!(served, expected);
    node.shutdown().await;

    let keys = all_keys(&mut conn).await;
    assert_eq!(
        keys,
        [
            "herald:{migrating-peer}:ads:local",
            "herald:{migrating-peer}:ads:meta",
            "herald:{migrating-peer}:ads:remote"
        ]
    );
    let fields: usize = redis::cmd("HLEN")
        .arg("herald:{migrating-peer}:ads:local")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields, 750);
}
