//! The gossip stores (issue 9 item 3): one contract that every `GossipStore` keeps alike (the
//! in-memory fake, redb in the ad store's file, Redis against a real `redis-server`), built the
//! way a node builds them (`open_peer_stores`, from the ad store's configuration): round trip,
//! replace, delete, a batch seen whole or not at all, a new store object on the same Redis or
//! the same redb file loading what was written, a damaged record skipped and named, an outage
//! and the way back; and what only a shared backing can show (nodes sharing one Redis, the
//! ads and the gossip of one node side by side).
//!
//! Adapter details (key names, a second node id in one redb file) are tested beside each
//! adapter. MongoDB has no gossip store yet (`PeerStores::gossip` is `None` there).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::parts::actors::ports::{
    AdBatch, BatchScope, GossipBatch, GossipStore, StoreError, StoredGossip,
};
use herald::parts::actors::testing::InMemoryGossipStore;
use herald::parts::messages::{
    AdSource, Advertisement, EntryRun, GossipAd, GossipEntry, NodeId, PersistedRecord, PoolMeta,
    SyncState, Timestamp,
};
use herald::parts::runtime::config::AdStoreConfig;
use herald::parts::runtime::stores::{PeerStores, open_peer_stores};
use tempfile::TempDir;

use crate::support::fails_fast;
use crate::support::fixtures::{node, rid};
use crate::support::redis::RedisServer;

fn gossip_ad(n: u32, version: u64) -> GossipAd {
    let input = herald::parts::messages::AdInput {
        name: Some(format!("register {n}").into()),
        latest_version: version,
        ..herald::parts::messages::AdInput::public(rid(n))
    };
    GossipAd::from_input(&input, SyncState::FullyReplicated).unwrap()
}

/// `origin`'s record at `incarnation`: `ads` live ads (registers `1..=ads`) and a withdrawal
/// of register 0, at consecutive versions.
fn record(origin: &str, incarnation: u64, ads: u32) -> PersistedRecord {
    let mut entries = vec![Arc::new(GossipEntry::withdrawn(1, rid(0)))];
    entries.extend((1..=ads).map(|n| {
        Arc::new(GossipEntry::live(
            u64::from(n) + 1,
            gossip_ad(n, incarnation),
        ))
    }));
    PersistedRecord {
        origin: node(origin),
        incarnation,
        max: u64::from(ads) + 1,
        floor: 0,
        entries: EntryRun::whole(entries.into()),
    }
}

fn puts(records: &[PersistedRecord]) -> GossipBatch<'_> {
    GossipBatch {
        puts: records.iter().collect(),
        deletes: Vec::new(),
    }
}

fn origins(stored: &StoredGossip) -> Vec<String> {
    stored
        .records
        .iter()
        .map(|record| record.origin.to_string())
        .collect()
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

/// A gossip store under the contract (node `peer-a`'s), and what its backing can be made to do.
#[async_trait]
trait Subject: Send + Sync {
    fn store(&self) -> Arc<dyn GossipStore>;
    /// A new store object on the same backing, the old one dropped (a process restart).
    async fn restart(&mut self);
    /// Plants a record for `origin` that does not decode; `false` when the backing cannot hold
    /// one (the typed in-memory fake).
    async fn plant_garbage(&mut self, origin: &str) -> bool;
    /// Takes the backing away (`true`) or brings it back; `false` when it cannot be (a file).
    async fn set_down(&mut self, down: bool) -> bool;
}

struct Memory(InMemoryGossipStore);

#[async_trait]
impl Subject for Memory {
    fn store(&self) -> Arc<dyn GossipStore> {
        Arc::new(self.0.clone())
    }

    async fn restart(&mut self) {
        // A clone shares the records, as a restarted process shares a store.
        self.0 = self.0.clone();
    }

    async fn plant_garbage(&mut self, _origin: &str) -> bool {
        false
    }

    async fn set_down(&mut self, down: bool) -> bool {
        self.0.set_down(down);
        true
    }
}

/// The stores of a node on the embedded backend, as `Node::start` opens them.
struct Redb {
    _dir: TempDir,
    path: PathBuf,
    stores: Option<PeerStores>,
}

impl Redb {
    async fn open() -> Redb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("advertisements.redb");
        let stores = open_peer_stores(&redb_config(&path), &node("peer-a"))
            .await
            .unwrap();
        Redb {
            _dir: dir,
            path,
            stores: Some(stores),
        }
    }
}

fn redb_config(path: &std::path::Path) -> AdStoreConfig {
    AdStoreConfig::Embedded {
        path: path.to_path_buf(),
    }
}

#[async_trait]
impl Subject for Redb {
    fn store(&self) -> Arc<dyn GossipStore> {
        let stores = self.stores.as_ref().expect("open");
        Arc::clone(stores.gossip.as_ref().expect("redb keeps gossip"))
    }

    async fn restart(&mut self) {
        self.stores = None; // both stores dropped: the file is closed
        self.stores = Some(
            open_peer_stores(&redb_config(&self.path), &node("peer-a"))
                .await
                .unwrap(),
        );
    }

    async fn plant_garbage(&mut self, origin: &str) -> bool {
        self.stores = None;
        {
            let db = redb::Database::create(&self.path).unwrap();
            let txn = db.begin_write().unwrap();
            let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("gossip");
            txn.open_table(table)
                .unwrap()
                .insert(format!("peer-a:{origin}").as_str(), b"{not json".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        self.restart().await;
        true
    }

    async fn set_down(&mut self, _down: bool) -> bool {
        false
    }
}

struct Redis {
    server: RedisServer,
    stores: PeerStores,
}

impl Redis {
    async fn start() -> Redis {
        let server = RedisServer::start();
        let stores = redis_stores(&server, "peer-a").await;
        Redis { server, stores }
    }
}

/// `node_id`'s stores on `server`, prefix `herald`, as `Node::start` opens them.
async fn redis_stores(server: &RedisServer, node_id: &str) -> PeerStores {
    let config = AdStoreConfig::Redis {
        url: server.url(),
        prefix: "herald".to_owned(),
        tls: None,
    };
    open_peer_stores(&config, &node(node_id)).await.unwrap()
}

#[async_trait]
impl Subject for Redis {
    fn store(&self) -> Arc<dyn GossipStore> {
        Arc::clone(self.stores.gossip.as_ref().expect("redis keeps gossip"))
    }

    async fn restart(&mut self) {
        self.stores = redis_stores(&self.server, "peer-a").await;
    }

    async fn plant_garbage(&mut self, origin: &str) -> bool {
        let mut conn = self.server.connection().await;
        let _: () = redis::cmd("HSET")
            .arg("herald:gossip:{peer-a}")
            .arg(origin)
            .arg("{not json")
            .query_async(&mut conn)
            .await
            .unwrap();
        true
    }

    async fn set_down(&mut self, down: bool) -> bool {
        if down {
            self.server.kill();
        } else {
            // Back empty (the fixture runs without persistence), on the same port.
            self.server.restart();
        }
        true
    }
}

/// What every `GossipStore` does, whatever it is made of.
async fn gossip_store_contract(subject: &mut dyn Subject) {
    let store = subject.store();
    let what = store.describe();
    assert!(!what.is_empty());
    assert_eq!(
        store.load().await.unwrap(),
        StoredGossip::default(),
        "{what}"
    );

    // Round trip: records come back as written (entries, withdrawals, floors), by origin.
    let first = [
        record("peer-c", 3, 2),
        record("peer-a", 7, 5),
        record("peer-b", 1, 0),
    ];
    store.write(&puts(&first)).await.unwrap();
    let loaded = store.load().await.unwrap();
    let mut expected = first.to_vec();
    expected.sort_by(|a, b| a.origin.cmp(&b.origin));
    assert_eq!(loaded.records, expected, "{what}");
    assert!(loaded.skipped.is_empty(), "{what}: {:?}", loaded.skipped);

    // A put replaces its origin's record whole; a delete removes one (deleting an origin never
    // stored is no error); both in one batch; an empty batch changes nothing.
    let mut replaced = record("peer-a", 8, 1);
    replaced.floor = 1;
    let gone = [node("peer-b"), node("peer-z")];
    let batch = GossipBatch {
        puts: vec![&replaced],
        deletes: gone.iter().collect(),
    };
    store.write(&batch).await.unwrap();
    store.write(&GossipBatch::default()).await.unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(
        loaded.records,
        vec![replaced.clone(), first[0].clone()],
        "{what}"
    );

    // A new store object on the same backing (a restarted process) loads what was written.
    drop(store);
    subject.restart().await;
    let store = subject.store();
    let loaded = store.load().await.unwrap();
    assert_eq!(
        loaded.records,
        vec![replaced.clone(), first[0].clone()],
        "{what}: restart"
    );

    // A batch is seen whole or not at all: loads racing a batch that replaces 40 origins by
    // 40 others see one set or the other, never a mix.
    let before: Vec<PersistedRecord> = (0..40)
        .map(|n| record(&format!("old-{n:02}"), 1, 50))
        .collect();
    let after: Vec<PersistedRecord> = (0..40)
        .map(|n| record(&format!("new-{n:02}"), 1, 50))
        .collect();
    let everything_old = [replaced.clone(), first[0].clone()];
    let gone_now: Vec<NodeId> = everything_old.iter().map(|r| r.origin.clone()).collect();
    store
        .write(&GossipBatch {
            puts: before.iter().collect(),
            deletes: gone_now.iter().collect(),
        })
        .await
        .unwrap();
    let old_set: BTreeSet<String> = before.iter().map(|r| r.origin.to_string()).collect();
    let new_set: BTreeSet<String> = after.iter().map(|r| r.origin.to_string()).collect();
    let old_origins: Vec<NodeId> = before.iter().map(|r| r.origin.clone()).collect();
    let watcher = {
        let store = Arc::clone(&store);
        let (old_set, new_set) = (old_set.clone(), new_set.clone());
        tokio::spawn(async move {
            let mut loads_before = 0_usize;
            loop {
                let loaded: BTreeSet<String> =
                    origins(&store.load().await.unwrap()).into_iter().collect();
                if loaded == old_set {
                    loads_before += 1;
                } else if loaded == new_set {
                    return loads_before;
                } else {
                    panic!("a batch seen in part: {loaded:?}");
                }
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::task::yield_now().await;
    store
        .write(&GossipBatch {
            puts: after.iter().collect(),
            deletes: old_origins.iter().collect(),
        })
        .await
        .unwrap();
    // Panics (and fails here) if a load saw part of the batch.
    watcher.await.unwrap();
    assert_eq!(store.load().await.unwrap().records, after, "{what}");

    // A damaged record is skipped and named; the rest loads; writing its origin again repairs it.
    drop(store); // a redb file is planted in while closed
    if subject.plant_garbage("peer-q").await {
        let store = subject.store();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.records, after, "{what}");
        assert_eq!(loaded.skipped.len(), 1, "{what}: {:?}", loaded.skipped);
        assert!(
            loaded.skipped[0].contains("peer-q"),
            "{what}: {:?}",
            loaded.skipped
        );
        let repaired = record("peer-q", 2, 1);
        store
            .write(&puts(std::slice::from_ref(&repaired)))
            .await
            .unwrap();
        let loaded = store.load().await.unwrap();
        assert!(loaded.skipped.is_empty(), "{what}: {:?}", loaded.skipped);
        assert!(loaded.records.contains(&repaired), "{what}");
    }

    // The backing goes away: calls fail fast with `Unavailable` (the gossip keeps its memory and
    // retries); when it is back, the same store object works again.
    let store = subject.store();
    if subject.set_down(true).await {
        assert_unavailable(&format!("{what}: load while down"), store.load()).await;
        let late = record("peer-l", 1, 1);
        assert_unavailable(
            &format!("{what}: write while down"),
            store.write(&puts(std::slice::from_ref(&late))),
        )
        .await;
        assert!(subject.set_down(false).await);
        store
            .write(&puts(std::slice::from_ref(&late)))
            .await
            .unwrap();
        let loaded = store.load().await.unwrap();
        assert!(loaded.records.contains(&late), "{what}: after the outage");
    }
}

#[tokio::test]
async fn every_gossip_store_keeps_the_same_contract() {
    gossip_store_contract(&mut Memory(InMemoryGossipStore::new())).await;
    gossip_store_contract(&mut Redb::open().await).await;
    gossip_store_contract(&mut Redis::start().await).await;
}

/// Two nodes sharing one Redis (one prefix) each load only their own records, and a record of
/// the same origin kept by both stays two records.
#[tokio::test]
async fn nodes_sharing_one_redis_never_see_each_others_records() {
    let server = RedisServer::start();
    let a = redis_stores(&server, "peer-a").await.gossip.unwrap();
    let a_b = redis_stores(&server, "peer-a-b").await.gossip.unwrap();
    let of_a = [record("peer-c", 1, 2), record("peer-a", 1, 1)];
    let of_a_b = [record("peer-c", 2, 3)];
    a.write(&puts(&of_a)).await.unwrap();
    a_b.write(&puts(&of_a_b)).await.unwrap();
    a_b.write(&GossipBatch {
        puts: Vec::new(),
        deletes: vec![&node("peer-a")],
    })
    .await
    .unwrap();

    assert_eq!(
        a.load().await.unwrap().records,
        vec![of_a[1].clone(), of_a[0].clone()]
    );
    assert_eq!(a_b.load().await.unwrap().records, of_a_b.to_vec());
}

fn ad(n: u32) -> Advertisement {
    Advertisement {
        register_id: rid(n),
        source: AdSource::Local,
        sync_state: SyncState::Active,
        is_public: true,
        latest_version: 1,
        latest_docket_version: 0,
        name: None,
        description: None,
        refreshed_at: Timestamp::from_unix_millis(1_700_000_000_000),
        changed_at: Timestamp::from_unix_millis(1_700_000_000_000),
    }
}

/// The ads and the gossip of one node live side by side (one Redis, one redb file): each
/// loads its own, and the ad store never mistakes the gossip for a damaged ad.
async fn ads_and_gossip_side_by_side(stores: &PeerStores) {
    let ads = [ad(1), ad(2)];
    let batch = AdBatch {
        puts: ads.iter().collect(),
        deletes: Vec::new(),
        meta: PoolMeta::default(),
        scope: BatchScope::Everything,
    };
    stores
        .ads
        .write(&batch, Duration::from_secs(600))
        .await
        .unwrap();
    let records = [record("peer-a", 1, 2), record("peer-b", 4, 1)];
    let gossip = stores.gossip.as_ref().unwrap();
    gossip.write(&puts(&records)).await.unwrap();

    let pool = stores.ads.load().await.unwrap();
    assert_eq!(pool.ads.len(), 2, "{pool:?}");
    assert!(
        pool.skipped.is_empty(),
        "gossip taken for ads: {:?}",
        pool.skipped
    );
    let stored = gossip.load().await.unwrap();
    assert_eq!(stored.records, records.to_vec());
    assert!(stored.skipped.is_empty(), "{:?}", stored.skipped);
}

#[tokio::test]
async fn ads_and_gossip_of_one_node_share_its_redis_and_its_redb_file() {
    let server = RedisServer::start();
    ads_and_gossip_side_by_side(&redis_stores(&server, "peer-a").await).await;

    let redb = Redb::open().await;
    ads_and_gossip_side_by_side(redb.stores.as_ref().unwrap()).await;
}
