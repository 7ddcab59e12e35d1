//! The scale curve of a peer (issue 11 items 3 and 4): a release peer process (`examples/peer.rs`)
//! holding 1,000, 10,000 and 100,000 ads, half local and half remote from 10 peers, on Redis
//! and on the embedded redb store: the time of a write of every local ad, of a reload and of
//! one `GET /api/registers/available`, the cost per ad at each size (it should stay flat), and
//! the process's memory (`VmRSS`, `VmHWM` from `/proc/<pid>/status`).
//!
//! ```text
//! cargo bench --bench scale                                   # 5 iterations after 3 warm-ups
//! cargo bench --bench scale -- --sizes 1000,10000 --stores redb
//! cargo bench --bench scale -- --sizes 100000 --iterations 3 --settle 80
//! cargo bench --bench scale -- --help
//! ```
//!
//! For each store and size, on a fresh store:
//! 1. **Remote ads** cannot be sent over REST (they come from the gossip), so the bench writes
//!    the gossip records of 10 peers into the peer's gossip store before it starts, through
//!    the store's own adapter (`RedisGossipStore` / `RedbGossipStore::write`), and starts the
//!    peer in a cluster of its own (`--cluster-listen 127.0.0.1:0`): its gossip restores them
//!    and shows them (for one `ad_ttl`: 1 day here) beside the pool's local ads, in the merged
//!    answer, as a peer of a real cluster holds them.
//! 2. **Write of every local ad** (`POST /api/registers/bulk-advertise`, each one changed):
//!    one full sync when they fit in one request (at most 10,000, `MAX_BULK_ITEMS`), else
//!    requests of 10,000 that are not full syncs (no full sync can carry 50,000 ads). Timed
//!    from the first request to the last reply (every reply says `persisted`).
//! 3. **One read**: `GET /api/registers/available` right after the write (the answer is built
//!    anew: the view changed) and again (served from the bytes built once).
//! 4. **Memory of that process**: `VmRSS` after the last write (no answer encoded: the last
//!    version's bytes are dropped when the pool publishes another, as they are a minute after
//!    the last reader) and after the last read, `VmHWM` (its peak, through the reload of the
//!    remote ads, the writes and the reads).
//!    With `--settle SECS`, also its `VmRSS` that long after the last read, unread: the steady
//!    figure (80 s is past the minute after which unsent encodings go, and a trim).
//! 5. **Reload**: the peer stopped (SIGTERM) and started again on the same store, timed from
//!    the spawn until `GET /api/sync/status` (which waits for the pool's first replay) reports
//!    every ad; `VmRSS` and `VmHWM` of the reloaded process before any read.
//!
//! Floor, in the same run: an empty peer on the same kind of store, started until its first
//! `GET /api/sync/status` (the cost of the process alone), and its memory.
//! Results as Markdown on stdout. Run through `cargo test --benches` (no `--bench`), it
//! measures nothing and exits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;
use tokio::time::Instant;

use herald::parts::actors::TokioClock;
use herald::parts::actors::ports::{Clock, GossipBatch, GossipStore};
use herald::parts::messages::{
    AdSource, Advertisement, EntryRun, GossipAd, GossipEntry, MAX_BULK_ITEMS, PersistedRecord,
    SyncState, Timestamp,
};
use herald::parts::runtime::stores::{RedbAdStore, RedisGossipStore};
use herald::{AdInput, BulkAdvertise, NodeId, RegisterId};

#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
use support::{Samples, WARMUP_ITERATIONS, cell};

// The tests' role-process harness (builds the role binaries for this profile, starts them,
// reads their ready line) and their `redis-server` fixture.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../tests/it/support/redis.rs"]
mod redis_server;
// `free_port` is the redis fixture's (`super::free_port`).
use process::{Role, RoleProcess, TOKEN, free_port};
use redis_server::RedisServer;

const DEFAULT_ITERATIONS: usize = 5;
const DEFAULT_SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Origins of the remote half.
const PEERS: usize = 10;
const NODE: &str = "scale-peer";
const PREFIX: &str = "herald";
/// Long enough that no reloaded remote ad expires during a run.
const AD_TTL_SECS: u64 = 86_400;
/// A reload or a request that takes longer is an error, not a sample.
const DEADLINE: Duration = Duration::from_secs(120);
const POLL_PAUSE: Duration = Duration::from_millis(2);

const USAGE: &str = "\
The scale curve of a peer process (issue 11 items 3, 4); see BENCHMARKS.md.

usage: cargo bench --bench scale [-- OPTIONS]

  --iterations N      measured iterations per measurement (default 5; 3 warm-ups come first)
  --sizes 1000,...    ads in the pool, half local, half remote (default 1000,10000,100000)
  --stores redis,redb which stores (default both)
  --settle SECS       also read VmRSS this long after the last read (default: not)
  --help              this text

Builds the role binaries (cargo build --release --example peer/register/hub) on first use and
starts its own redis-server.";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Redis,
    Redb,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Redis => "Redis",
            Backend::Redb => "redb (embedded)",
        }
    }
}

fn main() -> std::process::ExitCode {
    match measure() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("scale bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn measure() -> Result<()> {
    let mut sizes = DEFAULT_SIZES.to_vec();
    let mut backends = vec![Backend::Redis, Backend::Redb];
    let mut settle = None;
    let parsed = support::parse_args_with_default(
        "scale",
        USAGE,
        DEFAULT_ITERATIONS,
        std::env::args().skip(1),
        |flag, rest| {
            match flag {
                "--sizes" => sizes = support::list_argument(flag, rest.next(), 2)?,
                "--settle" => {
                    let value = rest.next().context("--settle needs a number of seconds")?;
                    let secs: u64 = value.parse().with_context(|| {
                        format!("--settle: {value:?} is not a number of seconds")
                    })?;
                    settle = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "--stores" => {
                    let value = rest.next().context("--stores needs redis, redb or both")?;
                    backends = value
                        .split(',')
                        .map(|store| match store.trim() {
                            "redis" => Ok(Backend::Redis),
                            "redb" => Ok(Backend::Redb),
                            other => bail!("--stores: unknown store {other:?}"),
                        })
                        .collect::<Result<_>>()?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    let Some(iterations) = parsed else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the tokio runtime")?;
    runtime.block_on(run(iterations, &sizes, &backends, settle))
}

async fn run(
    iterations: usize,
    sizes: &[usize],
    backends: &[Backend],
    settle: Option<Duration>,
) -> Result<()> {
    let built = Instant::now();
    let _ = Role::Peer.binary();
    eprintln!(
        "role binaries ready after {:?}; {iterations} iterations after {WARMUP_ITERATIONS} warm-ups",
        built.elapsed()
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(DEADLINE)
        .build()?;
    let mut results = Vec::new();
    for &backend in backends {
        let floor = empty_peer(&client, backend, iterations).await?;
        let mut points = Vec::new();
        for &size in sizes {
            eprintln!("{} with {size} ads…", backend.name());
            points.push(point(&client, backend, size, iterations, settle).await?);
        }
        results.push((backend, floor, points));
    }
    print_report(iterations, &results, settle);
    Ok(())
}

// ---- the store behind the peer ----

/// A fresh store of one kind: its own `redis-server`, or a data directory.
struct Backing {
    backend: Backend,
    redis: Option<RedisServer>,
    dir: TempDir,
}

impl Backing {
    fn new(backend: Backend) -> Result<Backing> {
        Ok(Backing {
            backend,
            redis: (backend == Backend::Redis).then(RedisServer::start),
            dir: tempfile::Builder::new().prefix("herald-scale-").tempdir()?,
        })
    }

    fn peer_args(&self) -> Vec<String> {
        let mut args = vec!["--node-id".to_owned(), NODE.to_owned()];
        match &self.redis {
            Some(server) => args.extend(["--redis".to_owned(), server.url()]),
            None => args.extend([
                "--data-dir".to_owned(),
                self.dir.path().display().to_string(),
            ]),
        }
        args.extend(["--ad-ttl-secs".to_owned(), AD_TTL_SECS.to_string()]);
        // A cluster of one: the gossip runs and restores the remote ads from its store.
        args.extend(
            ["--cluster-listen", "127.0.0.1:0", "--cookie", "scale-bench"].map(str::to_owned),
        );
        args
    }

    /// Writes `ads` as the gossip records of their peers (one record per peer, every ad live)
    /// through the gossip store's adapter; the adapter is dropped (a redb file closed) before
    /// return.
    async fn seed(&self, ads: &[Advertisement]) -> Result<()> {
        let node = NodeId::parse(NODE)?;
        let store: Box<dyn GossipStore> = match self.backend {
            Backend::Redis => Box::new(RedisGossipStore::new(
                &self.redis.as_ref().expect("a redis backing").url(),
                PREFIX,
                &node,
            )?),
            Backend::Redb => Box::new(
                RedbAdStore::open(&self.dir.path().join("advertisements.redb"), &node)
                    .await?
                    .gossip_store(),
            ),
        };
        let mut by_peer: BTreeMap<NodeId, Vec<Arc<GossipEntry>>> = BTreeMap::new();
        for ad in ads {
            let AdSource::Remote(peer) = &ad.source else {
                bail!("only remote ads are seeded");
            };
            let entries = by_peer.entry(peer.clone()).or_default();
            let version = entries.len() as u64 + 1;
            entries.push(Arc::new(GossipEntry::live(
                version,
                GossipAd::from_advertisement(ad)?,
            )));
        }
        let records: Vec<PersistedRecord> = by_peer
            .into_iter()
            .map(|(origin, entries)| PersistedRecord {
                origin,
                incarnation: 1,
                max: entries.len() as u64,
                floor: 0,
                entries: EntryRun::whole(entries.into()),
            })
            .collect();
        store
            .write(&GossipBatch {
                puts: records.iter().collect(),
                deletes: Vec::new(),
            })
            .await
            .map_err(|err| anyhow::anyhow!("seeding the gossip store: {err}"))?;
        Ok(())
    }

    async fn start_peer(&self) -> Result<RoleProcess> {
        let args = self.peer_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        RoleProcess::try_start(Role::Peer, &args)
            .await
            .map_err(|why| anyhow::anyhow!(why))
    }
}

fn register_id(kind: u8, peer: usize, n: usize) -> RegisterId {
    let mut bytes = [0u8; 16];
    bytes[0] = kind;
    bytes[1] = u8::try_from(peer).expect("fewer than 256 peers");
    bytes[8..].copy_from_slice(&(n as u64).to_be_bytes());
    RegisterId::from_bytes(bytes)
}

/// `count` remote ads, spread over `PEERS` origins.
fn remote_ads(count: usize, now: Timestamp) -> Vec<Advertisement> {
    (0..count)
        .map(|n| {
            let peer = n % PEERS;
            Advertisement {
                register_id: register_id(2, peer, n),
                source: AdSource::Remote(
                    NodeId::parse(&format!("scale-remote-{peer}")).expect("a valid node id"),
                ),
                sync_state: SyncState::FullyReplicated,
                is_public: true,
                latest_version: 1,
                latest_docket_version: 1,
                name: Some(format!("remote register {n}").into()),
                description: None,
                refreshed_at: now,
                changed_at: now,
            }
        })
        .collect()
}

/// The local half at `version` (every call with a new version changes every ad).
fn local_inputs(count: usize, version: u64) -> Vec<AdInput> {
    (0..count)
        .map(|n| AdInput {
            name: Some(format!("local register {n}").into()),
            latest_version: version,
            latest_docket_version: 1,
            ..AdInput::public(register_id(1, 0, n))
        })
        .collect()
}

// ---- the requests ----

/// Writes every local ad: one full sync when they fit in one request, else requests of
/// `MAX_BULK_ITEMS` that are not full syncs. Bodies are encoded before the clock starts.
async fn write_locals(
    client: &reqwest::Client,
    peer: &RoleProcess,
    inputs: Vec<AdInput>,
) -> Result<Duration> {
    let full = inputs.len() <= MAX_BULK_ITEMS;
    let bodies: Vec<Vec<u8>> = inputs
        .chunks(MAX_BULK_ITEMS)
        .map(|chunk| {
            let request = BulkAdvertise {
                advertisements: chunk.to_vec(),
                full_sync: full,
                snapshot: None,
            };
            serde_json::to_vec(&request).expect("a bulk request encodes")
        })
        .collect();
    let url = format!("{}/api/registers/bulk-advertise", peer.base_url());
    let started = Instant::now();
    for body in bodies {
        let reply = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = reply.status();
        let outcome: Value = reply.json().await?;
        ensure!(
            status == StatusCode::OK,
            "bulk advertise: {status} {outcome}"
        );
        ensure!(
            outcome["persisted"] == Value::Bool(true),
            "bulk advertise not persisted: {outcome}"
        );
    }
    Ok(started.elapsed())
}

/// One `GET /api/registers/available`: its time and its size in bytes.
async fn read_available(client: &reqwest::Client, peer: &RoleProcess) -> Result<(Duration, usize)> {
    let url = format!("{}/api/registers/available", peer.base_url());
    let started = Instant::now();
    let reply = client.get(&url).bearer_auth(TOKEN).send().await?;
    ensure!(
        reply.status() == StatusCode::OK,
        "available: {}",
        reply.status()
    );
    let bytes = reply.bytes().await?;
    Ok((started.elapsed(), bytes.len()))
}

/// Polls `GET /api/sync/status` until the pool reports `local` and `remote` ads.
async fn wait_for_ads(
    client: &reqwest::Client,
    peer: &RoleProcess,
    local: usize,
    remote: usize,
) -> Result<()> {
    let url = format!("{}/api/sync/status", peer.base_url());
    let started = Instant::now();
    loop {
        let status: Value = client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let pool = &status["pool"];
        if pool["localAds"].as_u64() == Some(local as u64)
            && pool["gossip"]["remoteAds"].as_u64() == Some(remote as u64)
        {
            return Ok(());
        }
        ensure!(
            started.elapsed() < DEADLINE,
            "the pool did not report {local} local and {remote} remote ads: {pool}"
        );
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

// ---- memory ----

#[derive(Clone, Copy, Default)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

/// `VmRSS` and `VmHWM` of a running process.
fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

// ---- the measurements ----

/// The floor: an empty peer, from spawn to its first status, and its memory.
struct Floor {
    start: Samples,
    memory: Memory,
}

async fn empty_peer(
    client: &reqwest::Client,
    backend: Backend,
    iterations: usize,
) -> Result<Floor> {
    let backing = Backing::new(backend)?;
    let mut start = Samples::default();
    let mut memory_seen = Memory::default();
    for iteration in 0..WARMUP_ITERATIONS + iterations {
        let mut peer = backing.start_peer().await?;
        wait_for_ads(client, &peer, 0, 0).await?;
        start.push_if(iteration >= WARMUP_ITERATIONS, peer.spawned_at().elapsed());
        memory_seen = memory(peer.pid())?;
        peer.terminate().await;
    }
    Ok(Floor {
        start,
        memory: memory_seen,
    })
}

/// One size on one store.
struct Point {
    size: usize,
    write: Samples,
    read_after_write: Samples,
    read_again: Samples,
    answer_bytes: usize,
    reload: Samples,
    /// The process that reloaded the remote half and then wrote, before it read: what it holds
    /// with no answer encoded (as a minute after its last reader, `KEPT_WHILE_UNSENT`).
    written: Memory,
    /// The process that reloaded the remote half and then wrote and read.
    working: Memory,
    /// The same process `--settle` after its last read (`None` without it).
    settled: Option<Memory>,
    /// A process just reloaded with every ad, before any read.
    reloaded: Memory,
}

async fn point(
    client: &reqwest::Client,
    backend: Backend,
    size: usize,
    iterations: usize,
    settle: Option<Duration>,
) -> Result<Point> {
    let local = size / 2;
    let remote = size - local;
    let backing = Backing::new(backend)?;
    backing
        .seed(&remote_ads(remote, TokioClock::new().now()))
        .await?;

    let mut peer = backing.start_peer().await?;
    wait_for_ads(client, &peer, 0, remote).await?;
    let mut point = Point {
        size,
        write: Samples::default(),
        read_after_write: Samples::default(),
        read_again: Samples::default(),
        answer_bytes: 0,
        reload: Samples::default(),
        written: Memory::default(),
        working: Memory::default(),
        settled: None,
        reloaded: Memory::default(),
    };
    for (iteration, version) in (0..WARMUP_ITERATIONS + iterations).zip(1..) {
        let keep = iteration >= WARMUP_ITERATIONS;
        let took = write_locals(client, &peer, local_inputs(local, version)).await?;
        point.write.push_if(keep, took);
        point.written = memory(peer.pid())?;
        let (took, bytes) = read_available(client, &peer).await?;
        point.read_after_write.push_if(keep, took);
        point.answer_bytes = bytes;
        let (took, _) = read_available(client, &peer).await?;
        point.read_again.push_if(keep, took);
    }
    wait_for_ads(client, &peer, local, remote).await?;
    point.working = memory(peer.pid())?;
    if let Some(settle) = settle {
        eprintln!("  left unread for {settle:?}…");
        tokio::time::sleep(settle).await;
        point.settled = Some(memory(peer.pid())?);
    }
    peer.terminate().await;

    for iteration in 0..WARMUP_ITERATIONS + iterations {
        let mut peer = backing.start_peer().await?;
        wait_for_ads(client, &peer, local, remote).await?;
        point
            .reload
            .push_if(iteration >= WARMUP_ITERATIONS, peer.spawned_at().elapsed());
        point.reloaded = memory(peer.pid())?;
        peer.terminate().await;
    }
    Ok(point)
}

// ---- the report ----

/// Microseconds per ad of a median.
fn per_ad(samples: &Samples, ads: usize) -> String {
    format!("{:.2}", samples.median().as_secs_f64() * 1e6 / ads as f64)
}

fn print_report(
    iterations: usize,
    results: &[(Backend, Floor, Vec<Point>)],
    settle: Option<Duration>,
) {
    println!(
        "\n### Results ({iterations} iterations after {WARMUP_ITERATIONS} warm-ups; medians)\n"
    );
    for (backend, floor, points) in results {
        println!(
            "**Scale curve, {}** (half local, half remote from {PEERS} peers)\n",
            backend.name()
        );
        println!(
            "| ads | write of the local half ms | µs/ad written | reload ms | µs/ad | reload minus empty start ms | available after a write ms | µs/ad | available again ms | answer MiB |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| 0 (floor: empty peer) | — | — | {} | — | 0.00 | — | — | — | — |",
            cell(floor.start.median())
        );
        for point in points {
            let over_floor = point.reload.median().saturating_sub(floor.start.median());
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                point.size,
                cell(point.write.median()),
                per_ad(&point.write, point.size / 2),
                cell(point.reload.median()),
                per_ad(&point.reload, point.size),
                cell(over_floor),
                cell(point.read_after_write.median()),
                per_ad(&point.read_after_write, point.size),
                cell(point.read_again.median()),
                point.answer_bytes as f64 / (1024.0 * 1024.0),
            );
        }
        println!();
        println!(
            "**Memory, {}** (MiB; goal at 100,000 ads: ≤ 64 steady, ≤ 96 peak)\n",
            backend.name()
        );
        let settle = settle.map(|settle| settle.as_secs());
        let settled_header = settle.map_or(String::new(), |secs| {
            format!(" VmRSS {secs} s after the last read (steady) |")
        });
        println!(
            "| ads | VmRSS after writes (no answer encoded) | VmRSS after writes and reads |{settled_header} VmHWM (peak) of that process | VmRSS just reloaded | VmHWM of the reload |"
        );
        println!(
            "|---:|---:|---:|{}---:|---:|---:|",
            if settle.is_some() { "---:|" } else { "" }
        );
        let no_cell = if settle.is_some() { " — |" } else { "" };
        println!(
            "| 0 (floor: empty peer) | — | {} |{no_cell} {} | — | — |",
            mib(floor.memory.rss_kib),
            mib(floor.memory.hwm_kib)
        );
        for point in points {
            let settled = point.settled.map_or(String::new(), |memory| {
                format!(" {} |", mib(memory.rss_kib))
            });
            println!(
                "| {} | {} | {} |{settled} {} | {} | {} |",
                point.size,
                mib(point.written.rss_kib),
                mib(point.working.rss_kib),
                mib(point.working.hwm_kib),
                mib(point.reloaded.rss_kib),
                mib(point.reloaded.hwm_kib),
            );
        }
        println!();
    }
}
