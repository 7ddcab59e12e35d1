//! The register role's ground truths: one contract that every `GroundTruth` keeps alike (the
//! in-memory fake, redb, and MongoDB against the MongoDB-wire stand-in SecantusDB, or
//! `HERALD_MONGODB_URL`), so that the resync driver's tests on the fake say something about
//! production; and what only a shared store does: a register changed directly in MongoDB
//! reaches the pool at once through the watch, without waiting for the periodic full sync.
//!
//! CI runs the MongoDB cases against a MongoDB-wire stand-in, not against MongoDB.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use herald::parts::actors::ports::{GroundTruth, GroundTruthError};
use herald::parts::actors::testing::InMemoryGroundTruth;
use herald::parts::messages::{AdInput, Register, RegisterId, Timestamp};
use herald::parts::runtime::stores::{MongoGroundTruth, RedbGroundTruth};
use herald::{Node, RawNodeConfig, RawPeerConfig, RawRegisterConfig};
use mongodb::bson::doc;
use tempfile::TempDir;

use crate::support::mongo::MongoServer;
use crate::support::wait_until;

/// A watch must tell of a change within this.
const WATCH_DEADLINE: Duration = Duration::from_secs(15);

fn id(n: u8) -> RegisterId {
    RegisterId::from_bytes([n; 16])
}

fn register(n: u8, advertise: bool) -> Register {
    Register {
        register_id: id(n),
        name: format!("register {n}"),
        description: n.is_multiple_of(2).then(|| format!("the {n}th")),
        advertise,
        latest_version: u64::from(n) * 10,
        latest_docket_version: u64::from(n),
        created_at: Timestamp::from_unix_millis(1_700_000_000_000),
        updated_at: Timestamp::from_unix_millis(1_700_000_000_000 + i64::from(n)),
        revision: 0,
    }
}

fn ids(registers: &[Register]) -> Vec<RegisterId> {
    registers.iter().map(|r| r.register_id.clone()).collect()
}

fn public_ids(registers: &[AdInput]) -> Vec<RegisterId> {
    registers.iter().map(|r| r.register_id.clone()).collect()
}

/// A ground truth under the contract, and how to open it again on the same data.
#[async_trait]
trait Subject: Send {
    fn truth(&self) -> Arc<dyn GroundTruth>;
    /// Closes and opens the store on the same data (a restart of the register role).
    async fn reopen(&mut self);
    /// A fresh, empty store of the same kind (another file, another database).
    async fn other(&self) -> Arc<dyn GroundTruth>;
    /// Whether the store can be changed behind this process's back (and so be watched).
    fn shared(&self) -> bool;
}

struct Memory(InMemoryGroundTruth);

#[async_trait]
impl Subject for Memory {
    fn truth(&self) -> Arc<dyn GroundTruth> {
        Arc::new(self.0.clone())
    }

    async fn reopen(&mut self) {}

    async fn other(&self) -> Arc<dyn GroundTruth> {
        Arc::new(InMemoryGroundTruth::watchable())
    }

    fn shared(&self) -> bool {
        true
    }
}

struct Redb {
    dir: TempDir,
    path: PathBuf,
    truth: Option<Arc<RedbGroundTruth>>,
}

#[async_trait]
impl Subject for Redb {
    fn truth(&self) -> Arc<dyn GroundTruth> {
        self.truth.clone().expect("open")
    }

    async fn reopen(&mut self) {
        let open = self.truth.take().expect("open");
        assert!(
            Arc::into_inner(open).is_some(),
            "a test still holds the file"
        );
        self.truth = Some(Arc::new(RedbGroundTruth::open(&self.path).await.unwrap()));
    }

    async fn other(&self) -> Arc<dyn GroundTruth> {
        Arc::new(
            RedbGroundTruth::open(&self.dir.path().join("other.redb"))
                .await
                .unwrap(),
        )
    }

    fn shared(&self) -> bool {
        false
    }
}

struct Mongo {
    server: MongoServer,
    truth: Arc<MongoGroundTruth>,
}

impl Mongo {
    async fn start() -> Mongo {
        let server = MongoServer::start();
        let truth = Arc::new(MongoGroundTruth::open(&server.config()).await.unwrap());
        Mongo { server, truth }
    }
}

#[async_trait]
impl Subject for Mongo {
    fn truth(&self) -> Arc<dyn GroundTruth> {
        self.truth.clone()
    }

    async fn reopen(&mut self) {
        self.truth = Arc::new(MongoGroundTruth::open(&self.server.config()).await.unwrap());
    }

    async fn other(&self) -> Arc<dyn GroundTruth> {
        let mut config = self.server.config();
        config.database.push_str("_other");
        Arc::new(MongoGroundTruth::open(&config).await.unwrap())
    }

    fn shared(&self) -> bool {
        true
    }
}

async fn subjects() -> Vec<Box<dyn Subject>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registers.redb");
    let redb = Arc::new(RedbGroundTruth::open(&path).await.unwrap());
    vec![
        Box::new(Memory(InMemoryGroundTruth::watchable())),
        Box::new(Redb {
            dir,
            path,
            truth: Some(redb),
        }),
        Box::new(Mongo::start().await),
    ]
}

/// Reads `watch` until every id in `wanted` was seen.
async fn watch_until(watch: &mut BoxStream<'static, RegisterId>, wanted: &[RegisterId]) {
    let mut missing: Vec<RegisterId> = wanted.to_vec();
    let deadline = tokio::time::Instant::now() + WATCH_DEADLINE;
    while !missing.is_empty() {
        match tokio::time::timeout_at(deadline, watch.next()).await {
            Ok(Some(seen)) => missing.retain(|id| *id != seen),
            Ok(None) => panic!("the watch ended; still missing {missing:?}"),
            Err(_) => panic!("no change within {WATCH_DEADLINE:?}; still missing {missing:?}"),
        }
    }
}

/// What every `GroundTruth` does, whatever it is made of: CRUD, the public index, the revision
/// and the epoch.
async fn ground_truth_contract(subject: &mut dyn Subject) {
    let truth = subject.truth();
    let what = truth.describe();
    assert!(!what.is_empty());
    assert_eq!(truth.list().await.unwrap(), Vec::new(), "{what}");
    assert_eq!(truth.get(&id(1)).await.unwrap(), None, "{what}");
    let empty = truth.public_registers().await.unwrap();
    assert!(empty.registers.is_empty(), "{what}");
    assert_eq!(empty.revision, 0, "{what}");

    // Create: the store assigns the revision; get, list and the public index show it.
    let created = truth.create(register(2, true)).await.unwrap();
    assert_eq!(
        created,
        Register {
            revision: 1,
            ..register(2, true)
        },
        "{what}"
    );
    let private = truth.create(register(1, false)).await.unwrap();
    assert_eq!(private.revision, 2, "{what}");
    assert_eq!(
        truth.get(&id(2)).await.unwrap(),
        Some(created.clone()),
        "{what}"
    );
    assert_eq!(
        truth.list().await.unwrap(),
        vec![private, created.clone()],
        "{what}"
    );
    let public = truth.public_registers().await.unwrap();
    assert_eq!(public.registers, vec![created.to_ad_input()], "{what}");
    assert_eq!((public.revision, public.epoch), (2, empty.epoch), "{what}");

    // Refused changes change nothing, the revision included.
    assert!(
        matches!(truth.create(register(2, false)).await, Err(GroundTruthError::AlreadyExists(ref dup)) if *dup == id(2)),
        "{what}"
    );
    assert!(
        matches!(truth.replace(register(9, true)).await, Err(GroundTruthError::NotFound(ref gone)) if *gone == id(9)),
        "{what}"
    );
    assert!(!truth.delete(&id(9)).await.unwrap(), "{what}");
    assert_eq!(
        truth.public_registers().await.unwrap().revision,
        2,
        "{what}"
    );

    // The public index follows flag flips and deletes.
    for n in 3..=5 {
        truth.create(register(n, n % 2 == 1)).await.unwrap();
    }
    assert_eq!(
        public_ids(&truth.public_registers().await.unwrap().registers),
        [id(2), id(3), id(5)],
        "{what}"
    );
    truth.replace(register(2, false)).await.unwrap(); // public → private
    truth.replace(register(1, true)).await.unwrap(); // private → public
    let kept = truth.replace(register(3, true)).await.unwrap(); // stays public
    assert_eq!(kept.revision, 8, "{what}");
    truth.replace(register(4, false)).await.unwrap(); // stays private
    assert!(truth.delete(&id(5)).await.unwrap(), "{what}"); // a public one goes
    assert!(truth.delete(&id(4)).await.unwrap(), "{what}"); // a private one goes
    let after = truth.public_registers().await.unwrap();
    assert_eq!(public_ids(&after.registers), [id(1), id(3)], "{what}");
    assert!(after.registers.iter().all(|r| r.is_public), "{what}");
    assert_eq!(after.registers[1], kept.to_ad_input(), "{what}");
    assert_eq!(after.revision, 11, "{what}");
    assert_eq!(
        ids(&truth.list().await.unwrap()),
        [id(1), id(2), id(3)],
        "{what}"
    );

    // Create, delete, create again.
    assert!(truth.delete(&id(3)).await.unwrap(), "{what}");
    let again = truth.create(register(3, false)).await.unwrap();
    assert_eq!(again.revision, 13, "{what}");
    assert_eq!(truth.get(&id(3)).await.unwrap(), Some(again), "{what}");

    // Reopened on the same data: registers, revision and epoch are kept; another store has
    // another epoch.
    drop(truth);
    subject.reopen().await;
    let truth = subject.truth();
    let reopened = truth.public_registers().await.unwrap();
    assert_eq!(public_ids(&reopened.registers), [id(1)], "{what}");
    assert_eq!(
        (reopened.revision, reopened.epoch),
        (13, empty.epoch),
        "{what}"
    );
    assert_eq!(
        truth.create(register(6, true)).await.unwrap().revision,
        14,
        "{what}"
    );
    let other = subject.other().await.public_registers().await.unwrap();
    assert_ne!(other.epoch, empty.epoch, "{what}");

    // A store that others can change tells of every change, its own included; an embedded
    // one has no watch.
    let watch = truth.watch().await.unwrap();
    if !subject.shared() {
        assert!(watch.is_none(), "{what}");
        return;
    }
    let mut watch = watch.expect("a shared store can be watched");
    truth.create(register(7, true)).await.unwrap();
    truth.replace(register(1, false)).await.unwrap();
    assert!(truth.delete(&id(6)).await.unwrap());
    watch_until(&mut watch, &[id(7), id(1), id(6)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ground_truth_keeps_the_same_contract() {
    for mut subject in subjects().await {
        ground_truth_contract(subject.as_mut()).await;
    }
}

/// The collection and fields an operator sees, and what their own edits do: a document written
/// by hand in MongoDB's shell style is read; one that does not decode is reported, not served.
#[tokio::test]
async fn mongo_registers_are_documents_an_operator_can_read_and_edit() {
    let server = MongoServer::start();
    let truth = MongoGroundTruth::open(&server.config()).await.unwrap();
    let created = truth.create(register(2, true)).await.unwrap();
    let db = server.database_handle().await;
    let registers = db.collection::<mongodb::bson::Document>("registers");
    let stored = registers
        .find_one(doc! { "_id": id(2).as_str() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("name").unwrap(), "register 2");
    assert!(stored.get_bool("advertise").unwrap());
    assert_eq!(stored.get_i64("latestVersion").unwrap(), 20);
    assert_eq!(stored.get_i64("revision").unwrap(), 1);
    assert_eq!(
        stored.get_datetime("createdAt").unwrap().timestamp_millis(),
        created.created_at.as_unix_millis()
    );
    let indexes = registers.list_index_names().await.unwrap();
    assert!(
        indexes.iter().any(|name| name == "advertise"),
        "{indexes:?}"
    );

    // An operator adds a register by hand, numbers as the shell writes them.
    registers
        .insert_one(doc! {
            "_id": id(8).as_str(), "name": "by hand", "advertise": true, "latestVersion": 3.0,
        })
        .await
        .unwrap();
    let public = truth.public_registers().await.unwrap();
    assert_eq!(public_ids(&public.registers), [id(2), id(8)]);
    assert_eq!(public.registers[1].latest_version, 3);
    assert_eq!(public.revision, 1, "a direct change bumps no revision");

    // A broken one is reported, naming it, never served in part.
    registers
        .update_one(
            doc! { "_id": id(8).as_str() },
            doc! { "$set": { "name": 5_i32 } },
        )
        .await
        .unwrap();
    for err in [
        truth.public_registers().await.unwrap_err(),
        truth.list().await.unwrap_err(),
        truth.get(&id(8)).await.unwrap_err(),
    ] {
        assert!(
            matches!(err, GroundTruthError::Corrupt { ref what } if what.contains(id(8).as_str())),
            "{err:?}"
        );
    }
}

/// While MongoDB is down every call fails fast as unavailable; a node started then does not
/// exit, and when MongoDB comes back (empty) the store works again, with a new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_down_means_unavailable_and_an_empty_restart_a_new_epoch() {
    if crate::support::mongo::skip_unless_own_server("mongo_down_means_unavailable").is_some() {
        return;
    }
    let mut server = MongoServer::start();
    let truth = MongoGroundTruth::open(&server.config()).await.unwrap();
    truth.create(register(1, true)).await.unwrap();
    let before = truth.public_registers().await.unwrap().epoch;
    server.kill();
    let started = tokio::time::Instant::now();
    let down = truth.public_registers().await;
    assert!(
        matches!(down, Err(GroundTruthError::Unavailable(_))),
        "{down:?}"
    );
    assert!(matches!(
        truth.create(register(2, true)).await,
        Err(GroundTruthError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    server.restart();
    let after = wait_until(
        "the store answers again",
        Duration::from_secs(30),
        || async { truth.public_registers().await.ok() },
    )
    .await;
    assert!(after.registers.is_empty());
    assert_ne!(after.epoch, before, "a re-created store has a new epoch");
}

/// Issue 10, deliverable 1: a register changed directly in MongoDB (not through the register
/// role) reaches the pool at once through the ground truth's change stream, long before the
/// periodic full sync (an hour here); deleting it there withdraws it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_changed_directly_in_mongo_reaches_the_pool_at_once() {
    let server = MongoServer::start();
    let mut raw = RawNodeConfig {
        node_id: "reg-mongo".into(),
        data_dir: None,
        peer: Some(RawPeerConfig::default()),
        register: Some(RawRegisterConfig {
            resync_interval_ms: Some(3_600_000),
            ..RawRegisterConfig::default()
        }),
        mongodb: Some(herald::RawMongoConfig {
            url: server.url(),
            database: Some(server.database().to_owned()),
            ..herald::RawMongoConfig::default()
        }),
        ..RawNodeConfig::default()
    };
    raw.call_timeout_ms = Some(30_000);
    let node = Node::start(raw.validate().unwrap()).await.unwrap();
    let api = node.api();
    wait_until("the first full sync", Duration::from_secs(30), || async {
        let state = api.sync_state().await.ok()?;
        (state.successful_full_syncs > 0).then_some(())
    })
    .await;

    let registers = server
        .database_handle()
        .await
        .collection::<mongodb::bson::Document>("registers");
    registers
        .insert_one(doc! {
            "_id": id(4).as_str(), "name": "added by an operator", "advertise": true,
            "latestVersion": 7_i64, "latestDocketVersion": 1_i64,
        })
        .await
        .unwrap();
    let shown = wait_until(
        "the operator's register in the pool",
        WATCH_DEADLINE,
        || async {
            let available = api.available().await.ok()?;
            available.into_iter().find(|ad| ad.register_id == id(4))
        },
    )
    .await;
    assert_eq!(shown.name.as_deref(), Some("added by an operator"));
    assert_eq!(shown.latest_version, 7);

    registers
        .update_one(
            doc! { "_id": id(4).as_str() },
            doc! { "$set": { "name": "renamed by an operator" } },
        )
        .await
        .unwrap();
    wait_until("the rename in the pool", WATCH_DEADLINE, || async {
        let available = api.available().await.ok()?;
        available
            .iter()
            .any(|ad| ad.name.as_deref() == Some("renamed by an operator"))
            .then_some(())
    })
    .await;

    registers
        .delete_one(doc! { "_id": id(4).as_str() })
        .await
        .unwrap();
    wait_until("the withdrawal in the pool", WATCH_DEADLINE, || async {
        let available = api.available().await.ok()?;
        available.is_empty().then_some(())
    })
    .await;
    assert_eq!(api.sync_state().await.unwrap().successful_full_syncs, 1);
    let report = node.shutdown().await;
    assert!(report.killed.is_empty(), "{report:?}");
}
