//! The advertisement stores: one contract that every `AdStore` keeps alike (the in-memory fake,
//! redb, Redis against a real `redis-server`, MongoDB against the MongoDB-wire stand-in
//! SecantusDB or `HERALD_MONGODB_URL`: CI verifies the MongoDB adapter against a stand-in, not
//! against MongoDB), so that actor tests on the fake say something about production; and the
//! clock rule across two runs of a real pool on redb, Redis and MongoDB, with the injected
//! clock stepped forward by days and back by hours in between.
//!
//! Adapter details (key layout, corrupt records, outages) are tested beside each adapter and in
//! `redis_ad_store`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::parts::actors::ports::{AdBatch, AdStore, BatchScope, Clock, StoredPool};
use herald::parts::actors::testing::{InMemoryAdStore, ManualClock};
use herald::parts::actors::{AdvertisementPool, AdvertisementPoolArgs, PoolConfig};
use herald::parts::messages::{
    AdInput, AdKey, AdSource, Advertisement, AdvertisementPoolMsg, AvailableRegister,
    BulkAdvertise, BulkOutcome, PoolError, PoolMeta, PoolStatus, RegisterId, Snapshot, SyncState,
    Timestamp, Validate,
};
use herald::parts::runtime::stores::{MongoAdStore, RedbAdStore, RedisAdStore};
use ractor::{Actor, ActorRef};
use tempfile::TempDir;
use tokio::task::JoinHandle;

use crate::support::fixtures::{node, rid};
use crate::support::mongo::MongoServer;
use crate::support::redis::{RedisCluster as RedisClusterFixture, RedisServer, connect_cluster};
use crate::support::wait_until;

const EXPIRY: Duration = Duration::from_secs(600);

fn ad(source: AdSource, n: u32, version: u64, stamped: Timestamp) -> Advertisement {
    Advertisement {
        register_id: rid(n),
        source,
        sync_state: SyncState::Active,
        is_public: true,
        latest_version: version,
        latest_docket_version: 0,
        name: Some(format!("register {n}").into()),
        description: None,
        refreshed_at: stamped,
        changed_at: stamped,
    }
}

fn local(n: u32, version: u64) -> Advertisement {
    ad(
        AdSource::Local,
        n,
        version,
        Timestamp::from_unix_millis(1_700_000_000_000),
    )
}

fn remote(peer: &str, n: u32) -> Advertisement {
    ad(
        AdSource::Remote(node(peer)),
        n,
        1,
        Timestamp::from_unix_millis(1_700_000_000_000),
    )
}

fn meta(generation: u64, write_seq: u64) -> PoolMeta {
    PoolMeta {
        last_snapshot: Some(Snapshot::new(
            write_seq,
            Timestamp::from_unix_millis(1_700_000_000_000),
        )),
        generation,
        write_seq,
    }
}

fn batch<'a>(
    puts: &'a [Advertisement],
    deletes: &'a [AdKey],
    meta: PoolMeta,
    scope: BatchScope,
) -> AdBatch<'a> {
    AdBatch {
        puts: puts.iter().collect(),
        deletes: deletes.iter().collect(),
        meta,
        scope,
    }
}

fn sorted(mut ads: Vec<Advertisement>) -> Vec<Advertisement> {
    ads.sort_by_key(Advertisement::key);
    ads
}

/// A store under the contract, and how to make it lose everything.
#[async_trait]
trait Subject: Send {
    fn store(&self) -> &dyn AdStore;
    /// The store loses everything it held (a `FLUSHALL`, a data dir wiped while the node is
    /// down, a restarted in-memory store).
    async fn wipe(&mut self);
}

struct Memory(InMemoryAdStore);

#[async_trait]
impl Subject for Memory {
    fn store(&self) -> &dyn AdStore {
        &self.0
    }

    async fn wipe(&mut self) {
        self.0.wipe();
    }
}

struct Redb {
    _dir: TempDir,
    path: PathBuf,
    store: Option<RedbAdStore>,
}

impl Redb {
    async fn open() -> Redb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("advertisements.redb");
        let store = RedbAdStore::open(&path, &node("peer-a")).await.unwrap();
        Redb {
            _dir: dir,
            path,
            store: Some(store),
        }
    }
}

#[async_trait]
impl Subject for Redb {
    fn store(&self) -> &dyn AdStore {
        self.store.as_ref().expect("open")
    }

    async fn wipe(&mut self) {
        self.store = None; // closes the file
        std::fs::remove_file(&self.path).unwrap();
        self.store = Some(
            RedbAdStore::open(&self.path, &node("peer-a"))
                .await
                .unwrap(),
        );
    }
}

struct Redis {
    server: RedisServer,
    store: RedisAdStore,
}

#[async_trait]
impl Subject for Redis {
    fn store(&self) -> &dyn AdStore {
        &self.store
    }

    async fn wipe(&mut self) {
        let mut conn = self.server.connection().await;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    }
}

/// The store on the shared Redis Cluster, under a prefix of its own.
struct RedisCluster {
    urls: Vec<String>,
    prefix: &'static str,
    store: RedisAdStore,
}

#[async_trait]
impl Subject for RedisCluster {
    fn store(&self) -> &dyn AdStore {
        &self.store
    }

    /// Deletes the node's keys (the cluster is shared with other tests: no `FLUSHALL`).
    async fn wipe(&mut self) {
        let mut conn = connect_cluster(&self.urls).await;
        let keys = ["ads:local", "ads:remote", "ads:meta"]
            .map(|key| format!("{}:{{peer-a}}:{key}", self.prefix));
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

struct Mongo {
    server: MongoServer,
    store: MongoAdStore,
}

#[async_trait]
impl Subject for Mongo {
    fn store(&self) -> &dyn AdStore {
        &self.store
    }

    async fn wipe(&mut self) {
        self.server.wipe().await;
    }
}

/// What every `AdStore` does, whatever it is made of.
async fn ad_store_contract(subject: &mut dyn Subject) {
    let what = subject.store().describe();
    assert!(!what.is_empty());
    let store = subject.store();
    assert_eq!(store.load().await.unwrap(), StoredPool::default(), "{what}");
    assert_eq!(store.read_meta().await.unwrap(), None, "{what}");

    // A batch of everything creates the meta record; it reports that there was none before.
    let first = [local(1, 1), local(2, 1), remote("peer-b", 3)];
    let previous = store
        .write(
            &batch(&first, &[], meta(9, 1), BatchScope::Everything),
            EXPIRY,
        )
        .await
        .unwrap();
    assert_eq!(previous, None, "{what}");
    assert_eq!(store.read_meta().await.unwrap(), Some(meta(9, 1)), "{what}");
    let loaded = store.load().await.unwrap();
    assert_eq!(sorted(loaded.ads), sorted(first.to_vec()), "{what}");
    assert_eq!(loaded.meta, Some(meta(9, 1)), "{what}");
    assert!(loaded.skipped.is_empty(), "{what}: {:?}", loaded.skipped);

    // A batch of changes overwrites and deletes (deleting what was never stored is no error)
    // and answers with the meta record it replaced, read with it.
    let updated = [local(1, 2)];
    let deletes = [AdKey::local(rid(2)), AdKey::local(rid(77))];
    let previous = store
        .write(
            &batch(&updated, &deletes, meta(9, 2), BatchScope::Changes),
            EXPIRY,
        )
        .await
        .unwrap();
    assert_eq!(previous, Some(meta(9, 1)), "{what}");
    let loaded = store.load().await.unwrap();
    assert_eq!(
        sorted(loaded.ads),
        sorted(vec![local(1, 2), remote("peer-b", 3)]),
        "{what}"
    );
    assert_eq!(loaded.meta, Some(meta(9, 2)), "{what}");
    // A batch of nothing but the meta record.
    let previous = store
        .write(&batch(&[], &[], meta(9, 3), BatchScope::Changes), EXPIRY)
        .await
        .unwrap();
    assert_eq!(previous, Some(meta(9, 2)), "{what}");

    // The store loses everything. A batch of changes says so, is applied, and does not
    // recreate the meta record: the loss stays visible until everything is written again.
    subject.wipe().await;
    let store = subject.store();
    assert_eq!(store.load().await.unwrap(), StoredPool::default(), "{what}");
    assert_eq!(store.read_meta().await.unwrap(), None, "{what}");
    let after_loss = [local(5, 1)];
    let previous = store
        .write(
            &batch(&after_loss, &[], meta(9, 4), BatchScope::Changes),
            EXPIRY,
        )
        .await
        .unwrap();
    assert_eq!(previous, None, "{what}");
    assert_eq!(store.read_meta().await.unwrap(), None, "{what}: recreated");
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.ads, after_loss.to_vec(), "{what}");
    assert_eq!(loaded.meta, None, "{what}");

    // Everything written again, under a new generation: the record is back.
    let everything = [local(1, 2), remote("peer-b", 3), local(5, 1)];
    let previous = store
        .write(
            &batch(&everything, &[], meta(10, 1), BatchScope::Everything),
            EXPIRY,
        )
        .await
        .unwrap();
    assert_eq!(previous, None, "{what}");
    let previous = store
        .write(
            &batch(&everything, &[], meta(10, 2), BatchScope::Everything),
            EXPIRY,
        )
        .await
        .unwrap();
    assert_eq!(
        previous,
        Some(meta(10, 1)),
        "{what}: a batch of everything replaces it too"
    );
    let loaded = store.load().await.unwrap();
    assert_eq!(sorted(loaded.ads), sorted(everything.to_vec()), "{what}");
    assert_eq!(loaded.meta, Some(meta(10, 2)), "{what}");

    // Stored stamps are data, not the store's clock: an ad stamped in 1970 or in 2100 loads as
    // written (the pool decides liveness, under its clock rule).
    let stamps = [
        ad(AdSource::Local, 6, 1, Timestamp::EPOCH),
        ad(
            AdSource::Remote(node("peer-c")),
            7,
            1,
            Timestamp::from_unix_millis(4_102_444_800_000),
        ),
    ];
    store
        .write(
            &batch(&stamps, &[], meta(10, 3), BatchScope::Changes),
            EXPIRY,
        )
        .await
        .unwrap();
    let loaded = sorted(store.load().await.unwrap().ads);
    for stamped in &stamps {
        assert!(
            loaded.contains(stamped),
            "{what}: {stamped:?} in {loaded:?}"
        );
    }
}

#[tokio::test]
async fn every_ad_store_keeps_the_same_contract() {
    ad_store_contract(&mut Memory(InMemoryAdStore::new())).await;
    ad_store_contract(&mut Redb::open().await).await;
    let server = RedisServer::start();
    let store = RedisAdStore::new(&server.url(), "herald", &node("peer-a")).unwrap();
    ad_store_contract(&mut Redis { server, store }).await;
    let server = MongoServer::start();
    let store = MongoAdStore::open(&server.config(), &node("peer-a"))
        .await
        .unwrap();
    ad_store_contract(&mut Mongo { server, store }).await;
}

/// The same contract on a real Redis Cluster of three primaries (issue 10 item 2).
#[tokio::test]
async fn the_redis_ad_store_keeps_the_contract_on_a_redis_cluster() {
    let urls = RedisClusterFixture::shared();
    let prefix = "ad-contract";
    let store = RedisAdStore::new_cluster_with_tls(&urls, prefix, &node("peer-a"), None).unwrap();
    assert!(
        store.describe().starts_with("redis-cluster://127.0.0.1:"),
        "{}",
        store.describe()
    );
    ad_store_contract(&mut RedisCluster {
        urls,
        prefix,
        store,
    })
    .await;
}

// ---- the clock rule across two runs ----

const TTL: Duration = Duration::from_secs(300);
const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);
const CALL: u64 = 5_000;

/// One run of a pool: the real actor on a real store, with the test's clock.
struct PoolRun {
    actor: ActorRef<AdvertisementPoolMsg>,
    join: JoinHandle<()>,
}

impl PoolRun {
    async fn start(store: Arc<dyn AdStore>, clock: &ManualClock) -> PoolRun {
        let config = PoolConfig {
            ad_ttl: TTL,
            sweep_interval: Duration::from_millis(50),
            store_check_interval: Duration::from_millis(100),
            ..PoolConfig::default()
        };
        let args = AdvertisementPoolArgs {
            node_id: node("clock-peer"),
            config,
            store,
            clock: Arc::new(clock.clone()),
            view: herald::parts::actors::Published::new(
                herald::parts::messages::PoolView::starting(node("clock-peer"), 1),
            ),
        };
        let (actor, join) = Actor::spawn(None, AdvertisementPool, args).await.unwrap();
        PoolRun { actor, join }
    }

    async fn bulk(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolError> {
        let request = request.validated()?;
        ractor::call_t!(self.actor, AdvertisementPoolMsg::Bulk, CALL, request).unwrap()
    }

    async fn available(&self) -> Vec<AvailableRegister> {
        ractor::call_t!(self.actor, AdvertisementPoolMsg::Available, CALL).unwrap()
    }

    async fn status(&self) -> PoolStatus {
        ractor::call_t!(self.actor, AdvertisementPoolMsg::Status, CALL).unwrap()
    }

    async fn ids(&self) -> Vec<RegisterId> {
        self.available()
            .await
            .into_iter()
            .map(|a| a.register_id)
            .collect()
    }

    fn gossip(&self, peer: &str, ids: &[u32]) {
        let ads = ids.iter().map(|n| AdInput::public(rid(*n))).collect();
        self.actor
            .cast(AdvertisementPoolMsg::Gossip {
                peer: node(peer),
                ads,
            })
            .unwrap();
    }

    /// Stops the actor; its store is closed once the actor is gone.
    async fn stop(self) {
        self.actor.stop(None);
        self.join.await.unwrap();
    }
}

/// Issue 7, item 6: the embedded store wrote absolute wall-clock expiry stamps, so a clock
/// stepped forward between two runs expired every stored ad at reload, and stored
/// `refreshed_at` stamps decided the life of reloaded remote ads. Pins the clock rule over two
/// real runs: local ads stay whatever the clock did; a reloaded remote ad gets exactly one TTL
/// from its reload, unverified; a local ad stamped "in the future" (the clock stepped back)
/// still yields to a full sync read now.
async fn clock_steps_between_runs(open: impl AsyncFn() -> Arc<dyn AdStore>) {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_750_000_000_000));

    // Run 1: two local ads and one remote one.
    let run = PoolRun::start(open().await, &clock).await;
    for n in [1, 2] {
        let outcome = run
            .bulk(BulkAdvertise::one(AdInput::public(rid(n))))
            .await
            .unwrap();
        assert!(outcome.persisted, "{outcome:?}");
    }
    run.gossip("peer-b", &[3]);
    assert_eq!(run.ids().await, vec![rid(1), rid(2), rid(3)]);
    run.stop().await;

    // Run 2, three days later by the clock: everything reloads, unverified.
    clock.advance(3 * DAY);
    let run = PoolRun::start(open().await, &clock).await;
    let shown = run.available().await;
    assert_eq!(
        shown
            .iter()
            .map(|a| a.register_id.clone())
            .collect::<Vec<_>>(),
        vec![rid(1), rid(2), rid(3)],
        "a clock stepped forward by days expired stored ads at reload"
    );
    assert!(shown.iter().all(|a| !a.verified), "{shown:?}");
    clock.advance(TTL - Duration::from_secs(1));
    assert_eq!(
        run.ids().await,
        vec![rid(1), rid(2), rid(3)],
        "within its grace"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        run.ids().await,
        vec![rid(1), rid(2)],
        "an unconfirmed remote ad is dropped one TTL after the reload; local ads stay"
    );
    // The sweep deletes it from the store too; then the peer gossips it again, and a fourth
    // local ad is advertised (stamped with run 2's clock).
    wait_until(
        "the expired remote ad swept",
        Duration::from_secs(10),
        || async { (run.status().await.remote_ads == 0).then_some(()) },
    )
    .await;
    run.gossip("peer-b", &[3]);
    run.bulk(BulkAdvertise::one(AdInput::public(rid(4))))
        .await
        .unwrap();
    assert_eq!(run.ids().await, vec![rid(1), rid(2), rid(3), rid(4)]);
    run.stop().await;

    // Run 3, the clock stepped back six hours: run 2's stamps are "in the future".
    clock.step_back(6 * HOUR);
    let run = PoolRun::start(open().await, &clock).await;
    assert_eq!(run.ids().await, vec![rid(1), rid(2), rid(3), rid(4)]);
    clock.advance(TTL);
    assert_eq!(
        run.ids().await,
        vec![rid(1), rid(2), rid(4)],
        "a remote ad stamped in the future lived hours past its TTL"
    );
    // The register role's full sync, read now, lists only register 1: register 4, stamped six
    // hours "later", must go too.
    let snapshot = Snapshot::new(1, clock.now());
    let outcome = run
        .bulk(BulkAdvertise::full(
            vec![AdInput::public(rid(1))],
            Some(snapshot),
        ))
        .await
        .unwrap();
    assert_eq!(outcome.removed, 2, "{outcome:?}");
    assert_eq!(run.ids().await, vec![rid(1)]);
    run.stop().await;
}

#[tokio::test]
async fn clock_stepped_forward_by_days_and_back_by_hours_between_runs_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("advertisements.redb");
    clock_steps_between_runs(async || -> Arc<dyn AdStore> {
        let store: Arc<dyn AdStore> =
            Arc::new(RedbAdStore::open(&path, &node("clock-peer")).await.unwrap());
        store
    })
    .await;
}

#[tokio::test]
async fn clock_stepped_forward_by_days_and_back_by_hours_between_runs_on_redis() {
    let server = RedisServer::start();
    let url = server.url();
    clock_steps_between_runs(async || -> Arc<dyn AdStore> {
        let store: Arc<dyn AdStore> =
            Arc::new(RedisAdStore::new(&url, "herald", &node("clock-peer")).unwrap());
        store
    })
    .await;
}

#[tokio::test]
async fn clock_stepped_forward_by_days_and_back_by_hours_between_runs_on_mongodb() {
    let server = MongoServer::start();
    let config = server.config();
    clock_steps_between_runs(async || -> Arc<dyn AdStore> {
        let store: Arc<dyn AdStore> = Arc::new(
            MongoAdStore::open(&config, &node("clock-peer"))
                .await
                .unwrap(),
        );
        store
    })
    .await;
}
