//! Benchmarks of the advertisement pool on MongoDB (issue 10, deliverable 5), each beside its
//! raw-driver floor measured in the same run. **The server is SecantusDB, a MongoDB-wire
//! stand-in** (the only one these machines can run; `scripts/install-test-deps`), unless
//! `HERALD_MONGODB_URL` names a real one: the numbers say what herald adds over the `mongodb`
//! driver on the same server, not how fast MongoDB is.
//!
//! ```text
//! cargo bench --bench pool_mongo                      # 5 measured iterations (after 3 warm-ups)
//! cargo bench --bench pool_mongo -- --iterations 11
//! ```
//!
//! What is measured (10,000 ads), results as a Markdown table on stdout:
//! 1. **Full sync**: `bulk_advertise(BulkAdvertise::full(..))` on a running peer node whose pool
//!    writes through to MongoDB, until the reply (`persisted == true`); every iteration changes
//!    every ad. Floor: the adapter's transaction written by hand with the driver and documents
//!    built beforehand: `findOneAndReplace` of the meta record, ten `update` commands of 1,000
//!    replace-upserts each, commit. Beside it: `MongoAdStore::write`
//!    alone.
//! 2. **Restart reload**: `Node::start` on the same database and node id until the first
//!    `available()` lists all 10,000 ads. Floor: the driver's `find` of the node's `_id` range
//!    collected into documents, and `find_one` of the meta record. Beside it: `MongoAdStore::load`
//!    alone.
//!
//! Herald and floor runs are interleaved (the order rotates every iteration). The bench starts
//! its own stand-in (free port, in-memory storage) and kills it at the end. Run through
//! `cargo test --benches`, it measures nothing and exits.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::{Acknowledgment, ReadConcern, TransactionOptions, WriteConcern};
use tokio::time::Instant;

use herald::parts::actors::TokioClock;
use herald::parts::actors::ports::{AdBatch, AdStore, BatchScope, Clock};
use herald::parts::messages::{Advertisement, PoolMeta};
use herald::parts::runtime::config::MongoConfig;
use herald::parts::runtime::stores::MongoAdStore;
use herald::{
    AdInput, BulkAdvertise, Node, NodeHandle, NodeId, RawMongoConfig, RawNodeConfig, RawPeerConfig,
    RegisterId, Snapshot,
};

#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
use support::{Report, Samples, WARMUP_ITERATIONS, rotated};

/// Ads per full sync and per reload (the largest bulk request the pool accepts).
const ADS: usize = 10_000;
/// Fewer than the Redis bench: one iteration of every case takes seconds on the stand-in.
const DEFAULT_ITERATIONS: usize = 5;
const NODE_A: &str = "bench-a";
const DATABASE: &str = "herald_bench";
/// The stand-in's version, as `scripts/install-test-deps` installs it.
const SECANTUSDB_VERSION: &str = "0.7.0b3";
/// A 10,000-ad transaction takes seconds on the stand-in: room for it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

const USAGE: &str = "\
Benchmarks of the advertisement pool on MongoDB (issue 10); see BENCHMARKS.md.

usage: cargo bench --bench pool_mongo [-- --iterations N]

  --iterations N   measured iterations per measurement (default 5; 3 warm-ups come first)
  --help           this text

Starts its own MongoDB-wire stand-in (SecantusDB, scripts/install-test-deps), or uses
HERALD_MONGODB_URL.";

fn main() -> ExitCode {
    match measure() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pool_mongo bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn measure() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|arg| arg == "--iterations") {
        args.extend(["--iterations".to_owned(), DEFAULT_ITERATIONS.to_string()]);
    }
    let Some(iterations) =
        support::parse_args("pool_mongo", USAGE, args.into_iter(), |_, _| Ok(false))?
    else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the tokio runtime")?;
    runtime.block_on(run(iterations))
}

async fn run(iterations: usize) -> Result<()> {
    let server = Server::start()?;
    let client = mongodb::Client::with_uri_str(&server.url).await?;
    let db = client.database(DATABASE);
    db.drop().await?;
    eprintln!(
        "{} on {}; {ADS} ads; {iterations} iterations after {WARMUP_ITERATIONS} warm-ups",
        server.label, server.url
    );
    let mut report = Report::default();
    let mut bench = Bench {
        url: server.url.clone(),
        client,
        iterations,
        clock: TokioClock::new(),
        ids: (0..ADS as u32)
            .map(|n| {
                let mut bytes = [0x5a; 16];
                bytes[12..].copy_from_slice(&n.to_be_bytes());
                RegisterId::from_bytes(bytes)
            })
            .collect(),
        version: 0,
        seq: 0,
    };
    bench.full_sync(&mut report).await?;
    bench.reload(&mut report).await?;
    println!(
        "\n### Results on MongoDB: {} ({ADS} ads, {iterations} iterations)\n",
        server.label
    );
    report.print();
    drop(server);
    Ok(())
}

struct Bench {
    url: String,
    client: mongodb::Client,
    iterations: usize,
    clock: TokioClock,
    ids: Vec<RegisterId>,
    version: u64,
    seq: u64,
}

impl Bench {
    fn mongo_config(&self) -> MongoConfig {
        MongoConfig {
            url: self.url.clone(),
            database: DATABASE.to_owned(),
            connect_timeout: Duration::from_secs(2),
            server_selection_timeout: Duration::from_secs(5),
            operation_timeout: OPERATION_TIMEOUT,
            tls: None,
        }
    }

    fn peer_config(&self) -> RawNodeConfig {
        RawNodeConfig {
            node_id: NODE_A.into(),
            peer: Some(RawPeerConfig::default()),
            mongodb: Some(RawMongoConfig {
                url: self.url.clone(),
                database: Some(DATABASE.to_owned()),
                operation_timeout_ms: Some(OPERATION_TIMEOUT.as_millis() as u64),
                ..RawMongoConfig::default()
            }),
            call_timeout_ms: Some(OPERATION_TIMEOUT.as_millis() as u64),
            ..RawNodeConfig::default()
        }
    }

    /// A full sync that changes every ad (built outside the timed region).
    fn changed_request(&mut self) -> BulkAdvertise {
        self.version += 1;
        self.seq += 1;
        let version = self.version;
        let inputs = self
            .ids
            .iter()
            .enumerate()
            .map(|(n, id)| AdInput {
                register_id: id.clone(),
                name: Some(format!("register-{n:05}").into()),
                description: Some(
                    format!("ledger {n} of the benchmark, served by this node").into(),
                ),
                is_public: true,
                latest_version: version,
                latest_docket_version: version / 2,
                sync_state: None,
            })
            .collect();
        BulkAdvertise::full(inputs, Some(Snapshot::new(self.seq, self.clock.now())))
    }

    fn ads(&self) -> mongodb::Collection<Document> {
        self.client.database(DATABASE).collection("advertisements")
    }

    fn meta(&self) -> mongodb::Collection<Document> {
        self.client
            .database(DATABASE)
            .collection("advertisement_pool_meta")
    }

    /// Node A's ad documents and meta record as the adapter wrote them.
    async fn read_back(&self) -> Result<(Vec<Document>, Document)> {
        let ads: Vec<Document> = self
            .ads()
            .find(doc! { "_id": { "$gte": format!("{NODE_A}:"), "$lt": format!("{NODE_A};") } })
            .await?
            .try_collect()
            .await?;
        ensure!(ads.len() == ADS, "read {} ads", ads.len());
        let meta = self
            .meta()
            .find_one(doc! { "_id": NODE_A })
            .await?
            .context("the pool's meta record is missing")?;
        Ok((ads, meta))
    }

    // ---- 1. full sync ----

    async fn full_sync(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("full sync of {ADS} ads ...");
        let node = start(self.peer_config()).await?;
        let first = self.changed_request();
        let outcome = node.api().bulk_advertise(first).await?;
        ensure!(outcome.added == ADS && outcome.persisted, "{outcome:?}");
        let (documents, _) = self.read_back().await?;
        let keys: Vec<String> = documents
            .iter()
            .map(|record| record.get_str("_id").map(str::to_owned))
            .collect::<Result<_, _>>()?;
        let bytes: usize = documents
            .iter()
            .map(|record| record.get_str("ad").map_or(0, str::len))
            .sum();
        eprintln!(
            "  documents as stored: {} bytes of ad JSON per ad on average",
            bytes / ADS
        );
        let ads: Vec<Advertisement> = documents
            .iter()
            .map(|record| serde_json::from_str(record.get_str("ad")?).context("an ad decodes"))
            .collect::<Result<_>>()?;
        let adapter = MongoAdStore::open(&self.mongo_config(), &NodeId::parse(NODE_A)?).await?;

        let mut herald = Samples::default();
        let mut floor = Samples::default();
        let mut adapter_write = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(3, iteration) {
                match case {
                    0 => {
                        let request = self.changed_request();
                        let started = Instant::now();
                        let outcome = node.api().bulk_advertise(request).await?;
                        let elapsed = started.elapsed();
                        ensure!(
                            outcome.updated == ADS && outcome.persisted,
                            "every ad must change and be written: {outcome:?}"
                        );
                        herald.push_if(keep, elapsed);
                    }
                    1 => {
                        // The pool's meta record as it is, so the pool finds its own last write.
                        let (_, meta) = self.read_back().await?;
                        let started = Instant::now();
                        self.floor_write(&keys, &documents, &meta).await?;
                        floor.push_if(keep, started.elapsed());
                    }
                    _ => {
                        let (_, meta) = self.read_back().await?;
                        let meta: PoolMeta = serde_json::from_str(meta.get_str("meta")?)?;
                        let batch = AdBatch {
                            puts: ads.iter().collect(),
                            deletes: Vec::new(),
                            meta,
                            scope: BatchScope::Changes,
                        };
                        let started = Instant::now();
                        adapter.write(&batch, Duration::from_secs(3_600)).await?;
                        adapter_write.push_if(keep, started.elapsed());
                    }
                }
            }
        }
        report.section(format!(
            "Full sync of {ADS} changed ads on MongoDB (the SecantusDB stand-in unless \
             HERALD_MONGODB_URL; until the reply, written through)"
        ));
        report.row(
            "floor: raw driver transaction: `findOneAndReplace` meta + 10 × `update` of 1,000 replace-upserts of pre-built documents",
            &floor,
            None,
        );
        report.row("herald: `bulk_advertise` full sync", &herald, Some(&floor));
        report.row(
            "part: `MongoAdStore::write` alone (same 10,000 ads)",
            &adapter_write,
            Some(&floor),
        );
        stop(node).await;
        Ok(())
    }

    /// The adapter's transaction by hand: the same three commands on documents built before.
    async fn floor_write(
        &self,
        keys: &[String],
        documents: &[Document],
        meta: &Document,
    ) -> Result<()> {
        let mut session = self.client.start_session().await?;
        let options = TransactionOptions::builder()
            .read_concern(ReadConcern::snapshot())
            .write_concern(WriteConcern::builder().w(Acknowledgment::Majority).build())
            .build();
        session.start_transaction().with_options(options).await?;
        self.meta()
            .find_one_and_replace(doc! { "_id": NODE_A }, meta.clone())
            .session(&mut session)
            .await?;
        // The puts as the adapter sends them: `update` commands of 1,000 replace-upserts each.
        let database = self.client.database(DATABASE);
        for (keys, documents) in keys.chunks(1_000).zip(documents.chunks(1_000)) {
            let statements: Vec<Document> = keys
                .iter()
                .zip(documents)
                .map(|(key, record)| doc! { "q": { "_id": key }, "u": record.clone(), "upsert": true })
                .collect();
            database
                .run_command(doc! { "update": "advertisements", "updates": statements })
                .session(&mut session)
                .await?;
        }
        session.commit_transaction().await?;
        Ok(())
    }

    // ---- 2. restart reload ----

    async fn reload(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("restart reload of {ADS} ads ...");
        let adapter = MongoAdStore::open(&self.mongo_config(), &NodeId::parse(NODE_A)?).await?;
        let mut herald = Samples::default();
        let mut floor = Samples::default();
        let mut adapter_load = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(3, iteration) {
                match case {
                    0 => {
                        let config = self.peer_config().validate()?;
                        let started = Instant::now();
                        let node = Node::start(config).await?;
                        let available = node.api().available().await?;
                        let elapsed = started.elapsed();
                        ensure!(available.len() == ADS, "reloaded {}", available.len());
                        herald.push_if(keep, elapsed);
                        stop(node).await;
                    }
                    1 => {
                        let started = Instant::now();
                        let (ads, _) = self.read_back().await?;
                        let elapsed = started.elapsed();
                        ensure!(ads.len() == ADS);
                        floor.push_if(keep, elapsed);
                    }
                    _ => {
                        let started = Instant::now();
                        let stored = adapter.load().await?;
                        let elapsed = started.elapsed();
                        ensure!(stored.ads.len() == ADS && stored.skipped.is_empty());
                        adapter_load.push_if(keep, elapsed);
                    }
                }
            }
        }
        report.section(format!(
            "Restart reload of {ADS} ads from MongoDB (the SecantusDB stand-in unless \
             HERALD_MONGODB_URL; `Node::start` until `available()` lists them all)"
        ));
        report.row(
            "floor: raw driver `find` of the node's `_id` range into documents + `find_one` meta",
            &floor,
            None,
        );
        report.row(
            "herald: `Node::start` → first `available()` with 10,000",
            &herald,
            Some(&floor),
        );
        report.row(
            "part: `MongoAdStore::load` alone (warm client)",
            &adapter_load,
            Some(&floor),
        );
        Ok(())
    }
}

async fn start(config: RawNodeConfig) -> Result<NodeHandle> {
    Ok(Node::start(config.validate()?).await?)
}

async fn stop(node: NodeHandle) {
    let report = node.shutdown().await;
    if !report.killed.is_empty() {
        eprintln!("  killed at shutdown: {:?}", report.killed);
    }
}

/// The server measured: the bench's own stand-in, or `HERALD_MONGODB_URL`.
struct Server {
    url: String,
    label: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Waits for the child process with the standard library's clock and sleep: a fixture
    /// outside the measured regions.
    #[allow(clippy::disallowed_methods)]
    fn start() -> Result<Server> {
        if let Ok(url) = std::env::var("HERALD_MONGODB_URL")
            && !url.is_empty()
        {
            return Ok(Server {
                url,
                label: "HERALD_MONGODB_URL".to_owned(),
                child: None,
                _dir: None,
            });
        }
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("secantusd.toml");
        std::fs::write(&config, "")?;
        let log_path = dir.path().join("secantusd.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(secantusd())
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage-path", ":memory:", "--log-level", "INFO"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("run secantusd-py (scripts/install-test-deps installs it)")?;
        let listening = format!("listening on 127.0.0.1:{port}");
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "secantusd-py exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if std::fs::read_to_string(&log_path)?.contains(&listening) {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "secantusd-py did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server {
            url: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            label: format!("SecantusDB {SECANTUSDB_VERSION}, a MongoDB-wire stand-in, not MongoDB"),
            child: Some(child),
            _dir: Some(dir),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `HERALD_SECANTUSD`, else the virtualenv of `scripts/install-test-deps`, else `PATH`.
fn secantusd() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_SECANTUSD") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("HERALD_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/herald")));
    if let Some(tools) = tools {
        let venv = tools.join(format!("secantusdb-{SECANTUSDB_VERSION}/bin/secantusd-py"));
        if venv.exists() {
            return venv;
        }
    }
    PathBuf::from("secantusd-py")
}
