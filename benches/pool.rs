//! Benchmarks of the advertisement pool on Redis (issue #2), each beside its floor measured in
//! the same run: what the `redis` crate alone needs for the same keys and bytes.
//!
//! ```text
//! cargo bench --bench pool                      # 31 measured iterations (after 3 warm-ups)
//! cargo bench --bench pool -- --iterations 51   # more samples
//! cargo bench --bench pool -- --help
//! ```
//!
//! What is measured (10,000 ads unless said otherwise), results as a Markdown table on stdout:
//! 1. **Full sync**: `bulk_advertise(BulkAdvertise::full(..))` on a running peer node whose pool
//!    writes through to Redis, until the reply (`persisted == true`). Every iteration raises
//!    `latestVersion`, so all 10,000 ads really change and are written. Floor (the naive layout,
//!    one key per ad, as the adapter wrote before issue 11 item 6): one `MULTI` / 10,001 ×
//!    `SET key bytes PX ms` / `EXEC` pipeline of the same JSON bytes. Beside it: the floor of
//!    the adapter's layout (`MULTI` / 10 × `HSET` of 1,000 fields / `PEXPIRE` / `SET meta` /
//!    `EXEC`), the naive floor plus JSON encoding, `RedisAdStore::write` alone, the pool on a
//!    no-op store (its in-memory work), and an unchanged full sync (FR-009: only the meta
//!    record).
//! 2. **Restart reload**: `Node::start` on the same Redis and node id until the first
//!    `available()` lists all 10,000 ads (the pool loads before it answers). Floor (the naive
//!    layout): `SCAN` + pipelined `MGET`. Beside it: `RedisAdStore::load` alone, the floor of
//!    the adapter's layout (`MULTI` / `GET meta` / `HGETALL` / `EXEC`, with and without JSON
//!    decoding), pipelined `MGET` of the known keys, pipelined `GET`, and `SCAN` + `MGET` +
//!    JSON decoding.
//!
//! The floors write and read namespaces of their own (node ids `bench-floor-keys`, one key per
//! ad, and `bench-floor-hash`, the adapter's hash), with the bytes the pool wrote.
//! 3. **Redis Cluster** (issue 10 item 5): the same full sync and restart reload on a peer
//!    whose pool is on a three-primary Redis Cluster started by the bench (`redis-server
//!    --cluster-enabled yes` ×3), beside the floor of the adapter's layout sent by the `redis`
//!    crate's own cluster client (`MULTI` / `HSET`s / `PEXPIRE` / `SET meta` / `EXEC`, and
//!    `MULTI` / `GET meta` / `HGETALL` / `EXEC`) on the same cluster.
//! 4. **SC-005**: `available()` latency on 10,000 ads, idle and while full syncs are applied.
//! 5. **SC-004**: a node with both roles starts with 100 public registers in its ground truth,
//!    until all 100 are listed verified (the register role's startup full sync went through).
//!
//! Herald and floor runs are interleaved (the order rotates every iteration) so that the noise
//! of a shared machine hits both. The bench starts its own `redis-server` (free port, no
//! persistence) and kills it at the end. Run through `cargo test --benches` (no `--bench`
//! argument), it measures nothing and exits.

use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use herald::parts::actors::ports::GroundTruth;
use herald::parts::actors::ports::{AdBatch, AdStore, BatchScope, Clock, StoreError, StoredPool};
use herald::parts::actors::{PoolConfig, TokioClock};
use herald::parts::messages::{Advertisement, PoolMeta};
use herald::parts::runtime::stores::{RedbGroundTruth, RedisAdStore};
use herald::{
    AdInput, BulkAdvertise, Node, NodeApi, NodeHandle, NodeId, RawNodeConfig, RawPeerConfig,
    RawRegisterConfig, Register, RegisterId, Snapshot, StoreOverrides,
};

// Shared with `benches/hub/`; this bench does not use all of it (`Report::note`,
// `Samples::extend_if`).
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
use support::{Report, Samples, WARMUP_ITERATIONS, rotated};

/// Ads per full sync and per reload (the largest bulk request the pool accepts).
const ADS: usize = 10_000;
/// Registers of the SC-004 measurement (the spec's number).
const SC004_REGISTERS: usize = 100;
/// Full syncs applied back to back while `available()` is measured (SC-005): changed ones take
/// tens of ms each, unchanged ones a few.
const CHANGED_SYNCS: usize = 40;
const UNCHANGED_SYNCS: usize = 100;
/// Pause between two `available()` calls while full syncs run, so calls do not line up with them.
const QUERY_PAUSE: Duration = Duration::from_millis(1);
/// Poll period while waiting for the SC-004 registers (the result's resolution).
const POLL_PAUSE: Duration = Duration::from_millis(1);
/// Pause after a node is shut down, before the next measurement.
const SETTLE: Duration = Duration::from_millis(10);
/// Keys per `MGET` in the floors, and fields per `HSET`: the adapter's chunk sizes.
const MGET_CHUNK: usize = 1_000;
const HSET_CHUNK: usize = 1_000;
/// `SCAN … COUNT` in the floors: the adapter's.
const SCAN_COUNT: u64 = 10_000;
const PREFIX: &str = "herald";

const USAGE: &str = "\
Benchmarks of the advertisement pool on Redis (issue #2); see BENCHMARKS.md.

usage: cargo bench --bench pool [-- --iterations N]

  --iterations N   measured iterations per measurement (default 31; 3 warm-ups come first)
  --help           this text

Needs `redis-server` on PATH (scripts/install-test-deps); the bench starts and stops its own.";

fn main() -> ExitCode {
    match measure() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pool bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn measure() -> Result<()> {
    let args = std::env::args().skip(1);
    // Pool has no options of its own.
    let Some(iterations) = support::parse_args("pool", USAGE, args, |_, _| Ok(false))? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the tokio runtime")?;
    runtime.block_on(run(iterations))
}

async fn run(iterations: usize) -> Result<()> {
    let server = RedisServer::start().await?;
    let url = server.url();
    let mut raw = ConnectionManager::new(redis::Client::open(url.as_str())?)
        .await
        .context("connect to the bench's redis-server")?;
    let redis_version = info_field(&mut raw, "redis_version").await?;
    eprintln!(
        "redis-server {redis_version} on {url}; {ADS} ads; {iterations} iterations after {WARMUP_ITERATIONS} warm-ups"
    );

    let mut report = Report::default();
    let mut bench = Bench::new(&url, raw, iterations);
    bench.full_sync(&mut report).await?;
    bench.reload(&mut report).await?;
    bench.cluster(&mut report).await?;
    bench.available_latency(&mut report).await?;
    bench.sc004(&mut report).await?;

    println!("\n### Results ({ADS} ads, {iterations} iterations, redis-server {redis_version})\n");
    report.print();
    drop(server);
    Ok(())
}

/// The fixtures shared by the measurements.
struct Bench {
    url: String,
    raw: ConnectionManager,
    iterations: usize,
    clock: TokioClock,
    ids: Vec<RegisterId>,
    /// Rises with every changed full sync, so that every one of them changes every ad.
    version: u64,
    seq: u64,
    /// The naive floors' keys (one per ad) and meta key.
    keys: Vec<String>,
    floor_meta_key: String,
    /// The hash floors' hash and meta key, and the fields (register ids) of the ads.
    floor_hash: String,
    floor_hash_meta_key: String,
    fields: Vec<String>,
    /// Node A's hash of local ads and meta key, as the adapter writes them.
    pool_hash: String,
    meta_key: String,
    /// JSON bytes of node A's ads as the adapter wrote them, read back from Redis.
    values: Vec<Vec<u8>>,
    meta_value: Vec<u8>,
    ads: Vec<Advertisement>,
}

const NODE_A: &str = "bench-a";
const NODE_NOOP: &str = "bench-noop";
const NODE_FLOOR_KEYS: &str = "bench-floor-keys";
const NODE_FLOOR_HASH: &str = "bench-floor-hash";
const NODE_CLUSTER: &str = "bench-cluster";
const NODE_CLUSTER_FLOOR: &str = "bench-cluster-floor";

impl Bench {
    fn new(url: &str, raw: ConnectionManager, iterations: usize) -> Self {
        let ids = (0..ADS as u32)
            .map(|n| {
                let mut bytes = [0x5a; 16];
                bytes[12..].copy_from_slice(&n.to_be_bytes());
                RegisterId::from_bytes(bytes)
            })
            .collect::<Vec<_>>();
        let keys = ids
            .iter()
            .map(|id| format!("{PREFIX}:{{{NODE_FLOOR_KEYS}}}:local:{id}"))
            .collect();
        let fields = ids.iter().map(RegisterId::to_string).collect();
        Self {
            url: url.to_owned(),
            raw,
            iterations,
            clock: TokioClock::new(),
            ids,
            version: 0,
            seq: 0,
            keys,
            floor_meta_key: format!("{PREFIX}:{{{NODE_FLOOR_KEYS}}}:meta"),
            floor_hash: format!("{PREFIX}:{{{NODE_FLOOR_HASH}}}:ads:local"),
            floor_hash_meta_key: format!("{PREFIX}:{{{NODE_FLOOR_HASH}}}:ads:meta"),
            fields,
            pool_hash: format!("{PREFIX}:{{{NODE_A}}}:ads:local"),
            meta_key: format!("{PREFIX}:{{{NODE_A}}}:ads:meta"),
            values: Vec::new(),
            meta_value: Vec::new(),
            ads: Vec::new(),
        }
    }

    fn peer_config(&self, node_id: &str) -> RawNodeConfig {
        RawNodeConfig {
            node_id: node_id.into(),
            peer: Some(RawPeerConfig {
                redis_url: Some(self.url.clone()),
                ..RawPeerConfig::default()
            }),
            ..RawNodeConfig::default()
        }
    }

    /// A full sync of every ad with the current `version` (built outside the timed region).
    fn full_sync_request(&mut self) -> BulkAdvertise {
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

    fn changed_request(&mut self) -> BulkAdvertise {
        self.version += 1;
        self.full_sync_request()
    }

    // ---- 1. full sync ----

    async fn full_sync(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("full sync of {ADS} ads ...");
        let node = start(self.peer_config(NODE_A), StoreOverrides::default()).await?;
        let noop = start(
            self.peer_config(NODE_NOOP),
            StoreOverrides {
                ad_store: Some(Arc::new(NoopStore::default())),
                ..StoreOverrides::default()
            },
        )
        .await?;
        // The first full sync adds every ad; its bytes, read back, feed the floors.
        let first = self.changed_request();
        let outcome = node.bulk_advertise(first.clone()).await?;
        ensure!(outcome.added == ADS && outcome.persisted, "{outcome:?}");
        noop.bulk_advertise(first).await?;
        self.read_back().await?;

        let adapter = RedisAdStore::new(&self.url, PREFIX, &NodeId::parse(NODE_A)?)?;
        // The adapter alone writes its own copy of the ads (the bench mutates `self` meanwhile).
        let adapter_ads = self.ads.clone();
        // A batch of changes, as the pool's full syncs are (its meta `SET` has `XX GET`). Its
        // meta record is the pool's current one, read before each write (untimed): the store's
        // meta record then stays what the pool last wrote, which the pool checks at every write.
        let mut batch = AdBatch {
            puts: adapter_ads.iter().collect(),
            deletes: Vec::new(),
            meta: serde_json::from_slice::<PoolMeta>(&self.meta_value)?,
            scope: BatchScope::Changes,
        };

        let mut herald = Samples::default();
        let mut unchanged = Samples::default();
        let mut floor = Samples::default();
        let mut floor_encode = Samples::default();
        let mut adapter_write = Samples::default();
        let mut pool_noop = Samples::default();
        let mut floor_hash = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(6, iteration) {
                match case {
                    0 => {
                        let request = self.changed_request();
                        let sent = request.clone();
                        let started = Instant::now();
                        let outcome = node.bulk_advertise(sent).await?;
                        let elapsed = started.elapsed();
                        ensure!(
                            outcome.updated == ADS && outcome.persisted,
                            "every ad must change and be written: {outcome:?}"
                        );
                        herald.push_if(keep, elapsed);
                        // The same content again (a periodic reconciliation with nothing new).
                        let mut again = request;
                        self.seq += 1;
                        again.snapshot = Some(Snapshot::new(self.seq, self.clock.now()));
                        let started = Instant::now();
                        let outcome = node.bulk_advertise(again).await?;
                        let elapsed = started.elapsed();
                        ensure!(outcome.unchanged == ADS && outcome.persisted, "{outcome:?}");
                        unchanged.push_if(keep, elapsed);
                    }
                    1 => floor.push_if(keep, self.floor_write(false).await?),
                    2 => floor_encode.push_if(keep, self.floor_write(true).await?),
                    5 => floor_hash.push_if(keep, self.floor_hset().await?),
                    3 => {
                        batch.meta = serde_json::from_slice(&self.current_meta().await?)?;
                        let started = Instant::now();
                        adapter
                            .write(&batch, PoolConfig::default().store_expiry())
                            .await?;
                        adapter_write.push_if(keep, started.elapsed());
                    }
                    _ => {
                        let request = self.changed_request();
                        let started = Instant::now();
                        let outcome = noop.bulk_advertise(request).await?;
                        let elapsed = started.elapsed();
                        ensure!(outcome.updated == ADS, "{outcome:?}");
                        pool_noop.push_if(keep, elapsed);
                    }
                }
            }
        }
        report.section(format!(
            "Full sync of {ADS} changed ads (until the reply; written through to Redis)"
        ));
        report.row(
            "floor: raw `MULTI` + 10,001 × `SET key bytes PX` + `EXEC`, pre-encoded bytes",
            &floor,
            None,
        );
        report.row("herald: `bulk_advertise` full sync", &herald, Some(&floor));
        report.row(
            "floor of the adapter's layout: raw `MULTI` + 10 × `HSET` (1,000 fields) + `PEXPIRE` + `SET meta PX` + `EXEC`",
            &floor_hash,
            Some(&floor),
        );
        report.row(
            "floor + `serde_json` encoding of the 10,000 `Advertisement`s",
            &floor_encode,
            Some(&floor),
        );
        report.row(
            "part: `RedisAdStore::write` alone (same 10,000 ads)",
            &adapter_write,
            Some(&floor),
        );
        report.row(
            "part: the pool on a no-op store (in-memory work + actor call)",
            &pool_noop,
            None,
        );
        report.row(
            "herald: unchanged full sync (FR-009: only the meta record is written)",
            &unchanged,
            None,
        );
        node.shutdown().await;
        noop.shutdown().await;
        Ok(())
    }

    /// Reads node A's ads back from Redis: the exact bytes the adapter wrote.
    async fn read_back(&mut self) -> Result<()> {
        let mut pipe = redis::pipe();
        for chunk in self.fields.chunks(MGET_CHUNK) {
            pipe.cmd("HMGET").arg(&self.pool_hash).arg(chunk);
        }
        let chunks: Vec<Vec<Option<Vec<u8>>>> = pipe.query_async(&mut self.raw).await?;
        self.values = chunks
            .into_iter()
            .flatten()
            .collect::<Option<Vec<_>>>()
            .context("an ad the pool wrote is missing from Redis")?;
        ensure!(self.values.len() == ADS, "read {} ads", self.values.len());
        let bytes: usize = self.values.iter().map(Vec::len).sum();
        eprintln!(
            "  values as stored: {} bytes of JSON per ad on average, {} KiB in all",
            bytes / ADS,
            bytes / 1024
        );
        self.ads = self
            .values
            .iter()
            .map(|bytes| serde_json::from_slice(bytes))
            .collect::<Result<_, _>>()?;
        self.meta_value = self.current_meta().await?;
        Ok(())
    }

    /// Node A's meta record as it is now.
    async fn current_meta(&mut self) -> Result<Vec<u8>> {
        redis::cmd("GET")
            .arg(&self.meta_key)
            .query_async::<Option<Vec<u8>>>(&mut self.raw)
            .await?
            .context("the pool's meta record is missing")
    }

    /// The naive floor of a full sync (one key per ad, the adapter's pipeline before issue 11
    /// item 6), by hand, over a `ConnectionManager`, with the pool's current meta record.
    async fn floor_write(&mut self, encode: bool) -> Result<Duration> {
        // The pool's default expiry, as the adapter sends it.
        let expiry_ms = PoolConfig::default().store_expiry().as_millis() as u64;
        self.meta_value = self.current_meta().await?;
        let started = Instant::now();
        let mut pipe = redis::pipe();
        pipe.atomic();
        if encode {
            for (key, ad) in self.keys.iter().zip(&self.ads) {
                let json = serde_json::to_vec(ad)?;
                pipe.cmd("SET").arg(key).arg(json).arg("PX").arg(expiry_ms);
            }
        } else {
            for (key, value) in self.keys.iter().zip(&self.values) {
                pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(expiry_ms);
            }
        }
        pipe.cmd("SET")
            .arg(&self.floor_meta_key)
            .arg(&self.meta_value)
            .arg("PX")
            .arg(expiry_ms);
        pipe.query_async::<()>(&mut self.raw).await?;
        Ok(started.elapsed())
    }

    /// The floor of a full sync in the adapter's layout: one hash of the same JSON bytes, its
    /// expiry and the meta record, in one `MULTI`/`EXEC`.
    async fn floor_hset(&mut self) -> Result<Duration> {
        self.meta_value = self.current_meta().await?;
        let (hash, meta_key) = (self.floor_hash.clone(), self.floor_hash_meta_key.clone());
        let mut raw = self.raw.clone();
        self.hset_floor(&mut raw, &hash, &meta_key).await
    }

    /// The adapter's batch by hand on `conn`: `hash` gets the ads' JSON bytes, `meta_key` the
    /// pool's last meta record.
    async fn hset_floor(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        hash: &str,
        meta_key: &str,
    ) -> Result<Duration> {
        let expiry_ms = PoolConfig::default().store_expiry().as_millis() as u64;
        let started = Instant::now();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (fields, values) in self
            .fields
            .chunks(HSET_CHUNK)
            .zip(self.values.chunks(HSET_CHUNK))
        {
            let hset = pipe.cmd("HSET").arg(hash);
            for (field, value) in fields.iter().zip(values) {
                hset.arg(field).arg(value);
            }
        }
        pipe.cmd("PEXPIRE").arg(hash).arg(expiry_ms);
        pipe.cmd("SET")
            .arg(meta_key)
            .arg(&self.meta_value)
            .arg("PX")
            .arg(expiry_ms);
        pipe.query_async::<()>(conn).await?;
        Ok(started.elapsed())
    }

    /// The naive floor's ad keys and its meta key: everything its reload reads.
    fn all_keys(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(String::as_str)
            .chain([self.floor_meta_key.as_str()])
            .collect()
    }

    // ---- 2. restart reload ----

    async fn reload(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("restart reload of {ADS} ads ...");
        let adapter = RedisAdStore::new(&self.url, PREFIX, &NodeId::parse(NODE_A)?)?;
        let mut herald = Samples::default();
        let mut started_only = Samples::default();
        let mut adapter_load = Samples::default();
        let mut floor_scan = Samples::default();
        let mut floor_mget = Samples::default();
        let mut floor_get = Samples::default();
        let mut floor_decode = Samples::default();
        let mut floor_hgetall = Samples::default();
        let mut floor_hgetall_decode = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(8, iteration) {
                match case {
                    0 => {
                        let config = self.peer_config(NODE_A).validate()?;
                        let started = Instant::now();
                        let node = Node::start(config).await?;
                        let start_returned = started.elapsed();
                        let available = node.available().await?;
                        let elapsed = started.elapsed();
                        ensure!(available.len() == ADS, "reloaded {}", available.len());
                        herald.push_if(keep, elapsed);
                        started_only.push_if(keep, start_returned);
                        stop(node).await;
                    }
                    1 => {
                        let started = Instant::now();
                        let stored = adapter.load().await?;
                        let elapsed = started.elapsed();
                        ensure!(stored.ads.len() == ADS && stored.skipped.is_empty());
                        adapter_load.push_if(keep, elapsed);
                    }
                    2 => {
                        let (elapsed, values) = self.floor_scan_mget(false).await?;
                        ensure!(values == ADS + 1, "SCAN found {values} keys");
                        floor_scan.push_if(keep, elapsed);
                    }
                    3 => {
                        let started = Instant::now();
                        let mut pipe = redis::pipe();
                        for chunk in self.all_keys().chunks(MGET_CHUNK) {
                            pipe.cmd("MGET").arg(chunk);
                        }
                        let values: Vec<Vec<Option<Vec<u8>>>> =
                            pipe.query_async(&mut self.raw).await?;
                        let elapsed = started.elapsed();
                        let found = values.iter().flatten().flatten().count();
                        ensure!(found == ADS + 1, "MGET found {found} values");
                        floor_mget.push_if(keep, elapsed);
                    }
                    4 => {
                        let started = Instant::now();
                        let mut pipe = redis::pipe();
                        for key in self.all_keys() {
                            pipe.cmd("GET").arg(key);
                        }
                        let values: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.raw).await?;
                        let elapsed = started.elapsed();
                        let found = values.iter().flatten().count();
                        ensure!(found == ADS + 1, "GET found {found} values");
                        floor_get.push_if(keep, elapsed);
                    }
                    5 => {
                        let (elapsed, ads) = self.floor_scan_mget(true).await?;
                        ensure!(ads == ADS, "decoded {ads} ads");
                        floor_decode.push_if(keep, elapsed);
                    }
                    6 => {
                        let (elapsed, values) = self.floor_hgetall(false).await?;
                        ensure!(values == ADS, "HGETALL found {values} fields");
                        floor_hgetall.push_if(keep, elapsed);
                    }
                    _ => {
                        let (elapsed, ads) = self.floor_hgetall(true).await?;
                        ensure!(ads == ADS, "decoded {ads} ads");
                        floor_hgetall_decode.push_if(keep, elapsed);
                    }
                }
            }
        }
        report.section(format!(
            "Restart reload of {ADS} ads (`Node::start` until `available()` lists them all)"
        ));
        report.row(
            "floor: raw `SCAN MATCH` (COUNT 10000) + pipelined `MGET` (10 × 1,000 keys)",
            &floor_scan,
            None,
        );
        report.row(
            "herald: `Node::start` → first `available()` with 10,000",
            &herald,
            Some(&floor_scan),
        );
        report.row(
            "part: `Node::start` returned (the pool loads after)",
            &started_only,
            None,
        );
        report.row(
            "part: `RedisAdStore::load` alone (warm connection)",
            &adapter_load,
            Some(&floor_scan),
        );
        report.row(
            "floor of the adapter's layout: raw `MULTI` + `GET meta` + `HGETALL` (10,000 fields) + `EXEC`",
            &floor_hgetall,
            Some(&floor_scan),
        );
        report.row(
            "… + `serde_json` decoding into `Advertisement`",
            &floor_hgetall_decode,
            Some(&floor_scan),
        );
        report.row(
            "floor + `serde_json` decoding into `Advertisement`",
            &floor_decode,
            Some(&floor_scan),
        );
        report.row(
            "floor without discovery: pipelined `MGET` of the known keys",
            &floor_mget,
            Some(&floor_scan),
        );
        report.row(
            "floor without discovery: 10,001 pipelined `GET`",
            &floor_get,
            Some(&floor_scan),
        );
        Ok(())
    }

    /// The hash floor's reload: its meta record and hash in one `MULTI`/`EXEC`; with `decode`,
    /// also decode the ads. Returns the time and how many values (or decoded ads) it got.
    async fn floor_hgetall(&mut self, decode: bool) -> Result<(Duration, usize)> {
        let mut raw = self.raw.clone();
        hgetall_floor(
            &mut raw,
            &self.floor_hash,
            &self.floor_hash_meta_key,
            decode,
        )
        .await
    }

    /// `SCAN` the naive floor's namespace, then `MGET` what it found; with `decode`, also decode
    /// the ads. Returns the time and how many values (or decoded ads) it got.
    async fn floor_scan_mget(&mut self, decode: bool) -> Result<(Duration, usize)> {
        let pattern = format!("{PREFIX}:{{{NODE_FLOOR_KEYS}}}:*");
        let started = Instant::now();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut self.raw)
                .await?;
            keys.extend(found);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut pipe = redis::pipe();
        for chunk in keys.chunks(MGET_CHUNK) {
            pipe.cmd("MGET").arg(chunk);
        }
        let chunks: Vec<Vec<Option<Vec<u8>>>> = pipe.query_async(&mut self.raw).await?;
        let count = if decode {
            let mut ads = Vec::with_capacity(keys.len());
            for value in chunks.iter().flatten().flatten() {
                if let Ok(ad) = serde_json::from_slice::<Advertisement>(value) {
                    ads.push(ad);
                }
            }
            ads.len()
        } else {
            chunks.iter().map(Vec::len).sum()
        };
        Ok((started.elapsed(), count))
    }

    // ---- 3. Redis Cluster ----

    async fn cluster(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("full sync and reload of {ADS} ads on a Redis Cluster ...");
        let cluster = RedisClusterProcs::start().await?;
        let urls = cluster.urls();
        let mut raw = redis::cluster::ClusterClient::new(urls.clone())?
            .get_async_connection()
            .await
            .context("connect to the bench's Redis Cluster")?;
        let config = RawNodeConfig {
            node_id: NODE_CLUSTER.into(),
            peer: Some(RawPeerConfig {
                redis_cluster: Some(urls.clone()),
                ..RawPeerConfig::default()
            }),
            ..RawNodeConfig::default()
        };
        let node = start(config.clone(), StoreOverrides::default()).await?;
        let outcome = node.bulk_advertise(self.changed_request()).await?;
        ensure!(outcome.persisted, "{outcome:?}");
        let meta_key = format!("{PREFIX}:{{{NODE_CLUSTER}}}:ads:meta");
        let floor_hash = format!("{PREFIX}:{{{NODE_CLUSTER_FLOOR}}}:ads:local");
        let floor_meta = format!("{PREFIX}:{{{NODE_CLUSTER_FLOOR}}}:ads:meta");

        let mut herald = Samples::default();
        let mut floor = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(2, iteration) {
                if case == 0 {
                    let request = self.changed_request();
                    let started = Instant::now();
                    let outcome = node.bulk_advertise(request).await?;
                    let elapsed = started.elapsed();
                    ensure!(outcome.updated == ADS && outcome.persisted, "{outcome:?}");
                    herald.push_if(keep, elapsed);
                } else {
                    self.meta_value = redis::cmd("GET")
                        .arg(&meta_key)
                        .query_async::<Option<Vec<u8>>>(&mut raw)
                        .await?
                        .context("the pool's meta record is missing")?;
                    floor.push_if(
                        keep,
                        self.hset_floor(&mut raw, &floor_hash, &floor_meta).await?,
                    );
                }
            }
        }
        node.shutdown().await;
        report.section(format!(
            "Redis Cluster (3 primaries): full sync of {ADS} changed ads"
        ));
        report.row(
            "floor: the `redis` cluster client, `MULTI` + 10 × `HSET` (1,000 fields) + `PEXPIRE` + `SET meta PX` + `EXEC`",
            &floor,
            None,
        );
        report.row("herald: `bulk_advertise` full sync", &herald, Some(&floor));

        let mut herald = Samples::default();
        let mut floor = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(2, iteration) {
                if case == 0 {
                    let config = config.clone().validate()?;
                    let started = Instant::now();
                    let node = Node::start(config).await?;
                    let available = node.available().await?;
                    let elapsed = started.elapsed();
                    ensure!(available.len() == ADS, "reloaded {}", available.len());
                    herald.push_if(keep, elapsed);
                    stop(node).await;
                } else {
                    let (elapsed, ads) =
                        hgetall_floor(&mut raw, &floor_hash, &floor_meta, true).await?;
                    ensure!(ads == ADS, "decoded {ads} ads");
                    floor.push_if(keep, elapsed);
                }
            }
        }
        report.section(format!(
            "Redis Cluster (3 primaries): restart reload of {ADS} ads"
        ));
        report.row(
            "floor: the `redis` cluster client, `MULTI` + `GET meta` + `HGETALL` + `EXEC` + `serde_json` decoding",
            &floor,
            None,
        );
        report.row(
            "herald: `Node::start` → first `available()` with 10,000",
            &herald,
            Some(&floor),
        );
        drop(cluster);
        Ok(())
    }

    // ---- 4. SC-005 ----

    async fn available_latency(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("available() latency (SC-005) ...");
        let node = start(self.peer_config(NODE_A), StoreOverrides::default()).await?;
        let mut idle = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let started = Instant::now();
            let available = node.available().await?;
            let elapsed = started.elapsed();
            ensure!(available.len() == ADS);
            idle.push_if(iteration >= WARMUP_ITERATIONS, elapsed);
        }

        let changed: Vec<BulkAdvertise> =
            (0..CHANGED_SYNCS).map(|_| self.changed_request()).collect();
        let (during_changed, changed_syncs) =
            available_during(node.api(), changed, &self.clock, |o| o.updated == ADS).await?;
        let same = self.full_sync_request();
        let unchanged: Vec<BulkAdvertise> = (0..UNCHANGED_SYNCS)
            .map(|_| {
                let mut request = same.clone();
                self.seq += 1;
                request.snapshot = Some(Snapshot::new(self.seq, self.clock.now()));
                request
            })
            .collect();
        let (during_unchanged, unchanged_syncs) =
            available_during(node.api(), unchanged, &self.clock, |o| o.unchanged == ADS).await?;
        node.shutdown().await;

        report.section(format!(
            "SC-005: `available()` latency with {ADS} ads (budget: reconciliation adds < 100 ms)"
        ));
        report.row("`available()`, idle", &idle, None);
        report.row(
            &format!(
                "`available()` while {CHANGED_SYNCS} changed full syncs run back to back ({} calls)",
                during_changed.len()
            ),
            &during_changed,
            None,
        );
        report.row("… those changed full syncs, each", &changed_syncs, None);
        report.row(
            &format!(
                "`available()` while {UNCHANGED_SYNCS} unchanged full syncs run back to back ({} calls)",
                during_unchanged.len()
            ),
            &during_unchanged,
            None,
        );
        report.row("… those unchanged full syncs, each", &unchanged_syncs, None);
        Ok(())
    }

    // ---- 5. SC-004 ----

    async fn sc004(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("startup re-advertisement of {SC004_REGISTERS} registers (SC-004) ...");
        let data_dir = tempfile::Builder::new()
            .prefix("herald-bench-")
            .tempdir()
            .context("create a data directory")?;
        let mut expected = Vec::with_capacity(SC004_REGISTERS);
        {
            let truth = RedbGroundTruth::open(&data_dir.path().join("registers.redb")).await?;
            for n in 0..SC004_REGISTERS {
                let now = self.clock.now();
                let created = truth
                    .create(Register {
                        register_id: RegisterId::from_bytes([n as u8; 16]),
                        name: format!("register-{n:03}"),
                        description: Some(format!("ledger {n} of the SC-004 benchmark")),
                        advertise: true,
                        latest_version: 1,
                        latest_docket_version: 0,
                        created_at: now,
                        updated_at: now,
                        revision: 0,
                    })
                    .await?;
                expected.push(created.register_id);
            }
        }
        expected.sort();
        let mut startup = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            // A fresh node id: an empty pool, so the register role's full sync brings all 100.
            let config = RawNodeConfig {
                node_id: format!("sc004-{iteration}"),
                data_dir: Some(data_dir.path().to_owned()),
                register: Some(RawRegisterConfig::default()),
                ..self.peer_config(NODE_A)
            }
            .validate()?;
            let started = Instant::now();
            let node = Node::start(config).await?;
            loop {
                let available = node.available().await?;
                if available.len() == SC004_REGISTERS && available.iter().all(|a| a.verified) {
                    let mut ids: Vec<RegisterId> =
                        available.into_iter().map(|a| a.register_id).collect();
                    ids.sort();
                    ensure!(ids == expected, "unexpected registers listed");
                    break;
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "the startup full sync did not arrive"
                );
                tokio::time::sleep(POLL_PAUSE).await;
            }
            startup.push_if(iteration >= WARMUP_ITERATIONS, started.elapsed());
            stop(node).await;
        }
        report.section(format!(
            "SC-004: startup re-advertisement of {SC004_REGISTERS} registers (budget 10 s)"
        ));
        report.row(
            "`Node::start` (register + peer roles) → all 100 listed verified (polled every 1 ms)",
            &startup,
            None,
        );
        Ok(())
    }
}

/// The adapter's reload by hand on `conn`: the meta record and the hash in one `MULTI`/`EXEC`;
/// with `decode`, also decode the ads. Returns the time and how many values (or decoded ads) it
/// got.
async fn hgetall_floor(
    conn: &mut impl redis::aio::ConnectionLike,
    hash: &str,
    meta_key: &str,
    decode: bool,
) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("GET")
        .arg(meta_key)
        .cmd("HGETALL")
        .arg(hash);
    type Fields = Vec<(Vec<u8>, Vec<u8>)>;
    let (meta, fields): (Option<Vec<u8>>, Fields) = pipe.query_async(conn).await?;
    ensure!(meta.is_some(), "the hash floor's meta record is missing");
    let count = if decode {
        let mut ads = Vec::with_capacity(fields.len());
        for (_, value) in &fields {
            if let Ok(ad) = serde_json::from_slice::<Advertisement>(value) {
                ads.push(ad);
            }
        }
        ads.len()
    } else {
        fields.len()
    };
    Ok((started.elapsed(), count))
}

/// `available()` latencies while `requests` are applied one after another by another task, and
/// the time of each of those requests.
async fn available_during(
    api: &NodeApi,
    requests: Vec<BulkAdvertise>,
    clock: &TokioClock,
    check: fn(&herald::BulkOutcome) -> bool,
) -> Result<(Samples, Samples)> {
    let writer = api.clone();
    let clock = clock.clone();
    let syncs = tokio::spawn(async move {
        let mut durations = Samples::default();
        for mut request in requests {
            // Read "now", as the register role does: a snapshot read before the previous sync
            // was applied would rightly not undo that sync's changes.
            if let Some(snapshot) = &mut request.snapshot {
                snapshot.read_at = clock.now();
            }
            let started = Instant::now();
            let outcome = writer.bulk_advertise(request).await?;
            durations.push_if(true, started.elapsed());
            ensure!(check(&outcome) && outcome.persisted, "{outcome:?}");
        }
        Ok::<_, anyhow::Error>(durations)
    });
    let mut latencies = Samples::default();
    while !syncs.is_finished() {
        let started = Instant::now();
        let available = api.available().await?;
        latencies.push_if(true, started.elapsed());
        ensure!(available.len() == ADS);
        tokio::time::sleep(QUERY_PAUSE).await;
    }
    let durations = syncs.await??;
    Ok((latencies, durations))
}

async fn start(config: RawNodeConfig, overrides: StoreOverrides) -> Result<NodeHandle> {
    Ok(Node::start_with(config.validate()?, overrides).await?)
}

/// Shuts a node down and lets the runtime settle, so that freeing the node's memory does not
/// overlap the next measurement.
async fn stop(node: NodeHandle) {
    node.shutdown().await;
    tokio::time::sleep(SETTLE).await;
}

/// A store that stores nothing but the meta record: what the pool costs without its store.
#[derive(Default)]
struct NoopStore {
    meta: std::sync::Mutex<Option<PoolMeta>>,
}

#[async_trait::async_trait]
impl AdStore for NoopStore {
    async fn load(&self) -> Result<StoredPool, StoreError> {
        Ok(StoredPool::default())
    }

    async fn write(
        &self,
        batch: &AdBatch<'_>,
        _expiry: Duration,
    ) -> Result<Option<PoolMeta>, StoreError> {
        let mut meta = self.meta.lock().expect("no-op store lock");
        Ok(meta.replace(batch.meta))
    }

    async fn read_meta(&self) -> Result<Option<PoolMeta>, StoreError> {
        Ok(*self.meta.lock().expect("no-op store lock"))
    }

    fn describe(&self) -> String {
        "no-op".to_owned()
    }
}

// ---- the bench's own redis-server ----

/// A `redis-server` on a free `127.0.0.1` port, without persistence, killed when dropped.
struct RedisServer {
    port: u16,
    child: Child,
    /// Its `--dir`; removed after the process is killed (field drop order).
    _dir: tempfile::TempDir,
}

const START_ATTEMPTS: usize = 5;
/// A server that does not answer within this is killed (it starts in about 12 ms).
const READY_DEADLINE: Duration = Duration::from_secs(5);

impl RedisServer {
    async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[String]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-redis-")
            .tempdir()
            .context("create a directory for redis-server")?;
        let mut failures = Vec::new();
        // Another process may take the free port before redis-server binds it: try another.
        for _ in 0..START_ATTEMPTS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                    "redis-server is not installed (not on PATH): run scripts/install-test-deps"
                ),
                Err(err) => return Err(err).context("run redis-server"),
            };
            match wait_ready(port, &mut child).await {
                Ok(()) => {
                    return Ok(RedisServer {
                        port,
                        child,
                        _dir: dir,
                    });
                }
                Err(why) => {
                    failures.push(format!("port {port}: {why}"));
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        bail!(
            "could not start redis-server in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        )
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Three `RedisServer`s in cluster mode, one primary each for a third of the slots.
struct RedisClusterProcs {
    nodes: Vec<RedisServer>,
}

impl RedisClusterProcs {
    async fn start() -> Result<Self> {
        let mut nodes = Vec::new();
        let mut bus_ports = Vec::new();
        for _ in 0..3 {
            let bus_port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus_port.to_string(),
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]
            .map(str::to_owned);
            nodes.push(RedisServer::start_with(&extra).await?);
            bus_ports.push(bus_port);
        }
        for (node, (low, high)) in nodes.iter().zip([(0, 5460), (5461, 10922), (10923, 16383)]) {
            let mut conn = redis::Client::open(node.url())?
                .get_multiplexed_async_connection()
                .await?;
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(low)
                .arg(high)
                .query_async::<()>(&mut conn)
                .await?;
            if node.port != nodes[0].port {
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(nodes[0].port)
                    .arg(bus_ports[0])
                    .query_async::<()>(&mut conn)
                    .await?;
            }
        }
        let started = Instant::now();
        'wait: loop {
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the bench's Redis Cluster was not ok within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            for node in &nodes {
                let mut conn = redis::Client::open(node.url())?
                    .get_multiplexed_async_connection()
                    .await?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await?;
                if !(info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")) {
                    continue 'wait;
                }
            }
            return Ok(Self { nodes });
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server on `port` answers as `child` (`INFO server` names its process id).
async fn wait_ready(port: u16, child: &mut Child) -> Result<(), String> {
    let started = Instant::now();
    let pid = child.id().to_string();
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(|err| err.to_string())?;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited ({status})"));
        }
        if let Ok(Ok(mut conn)) = tokio::time::timeout(
            Duration::from_millis(200),
            client.get_multiplexed_async_connection(),
        )
        .await
            && let Ok(id) = info_field(&mut conn, "process_id").await
        {
            return if id == pid {
                Ok(())
            } else {
                Err(format!("another redis-server (pid {id}) has the port"))
            };
        }
        if started.elapsed() > READY_DEADLINE {
            return Err(format!("no answer within {READY_DEADLINE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One field of `INFO server`, e.g. `redis_version`.
async fn info_field(conn: &mut impl redis::aio::ConnectionLike, field: &str) -> Result<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
        .with_context(|| format!("INFO server has no {field}"))
}
