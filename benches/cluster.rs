//! Benchmarks of the cluster (issue 8): the role binaries as real processes on loopback, with
//! the liveness settings of the cluster tests (`tests/it/cluster.rs`: pings every 100 ms,
//! suspicion after 3 misses), each measurement beside a floor or a bound of the same run.
//!
//! ```text
//! cargo bench --bench cluster                            # 11 iterations after 3 warm-ups
//! cargo bench --bench cluster -- --iterations 21 --sizes 2,4,8,16
//! cargo bench --bench cluster -- --only gossip           # mesh | suspicion | sync | gossip
//! cargo bench --bench cluster -- --help
//! ```
//!
//! What is measured, results as Markdown tables on stdout:
//! 1. **Mesh**: N peer processes (`examples/peer.rs`, embedded store) started at once, each
//!    given one seed (the first one's cluster address, the first none), until every one lists
//!    every other `ready` at `GET /api/cluster/members`. Floor: the same N processes started
//!    without a cluster, until all printed their ready line.
//! 2. **Suspicion**: three peer processes in a full mesh; one is frozen with SIGSTOP until both
//!    others list it `suspect` (or `unreachable`), beside the bound the configuration promises
//!    (`ClusterConfig::suspicion_bound` of the same settings). Then SIGCONT, until all three
//!    list each other ready again. The freezes are spread over the ping period.
//! 3. **Full sync over the cluster**: a register node (in this process: the bench's one
//!    cluster node) whose ground truth on redb holds 10,000 public registers pushes its full
//!    sync by node id (`ClusterPoolLink`) to a peer process (embedded store, redb), from
//!    `resync_now()` until `sync_state()` reports it done (the peer's pool replied after writing
//!    through). Floor: the same 10,000 ads pushed with `bulk_advertise` to a peer node in this
//!    process on the same store (redb, same file system). Beside them: the same driver full
//!    sync to its own pool in this process (register and peer roles, no cluster), the ground
//!    truth's read, and the push request's wire encoding. Changed (the pool withdrew every ad
//!    just before, untimed, so all 10,000 are added and written) and unchanged full syncs.
//!
//! 4. **Gossip** (issue 9): two peer processes gossiping every 100 ms (budget 64 KiB a
//!    message); A takes 10,000 public ads (`bulk-advertise`), timed from its reply until B's
//!    status shows all 10,000 as remote ads; bytes are what both sent meanwhile
//!    (`herald_gossip_bytes_sent_total`). Floor: the same 10,000 ads sent once as one
//!    ractor_cluster message (a `PoolPush` request from the node in this process to a register
//!    process, whose gateway decodes it whole and answers at once, having no pool): time to the
//!    reply, and the request's bytes. Then the steady state, nothing changing: bytes per round
//!    per node over 5 s (digests only). Between iterations A withdraws everything (untimed,
//!    until B shows none).
//!
//! Herald and floor runs alternate, their order rotating every iteration. Run through
//! `cargo test --benches` (no `--bench` argument), it measures nothing and exits.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::time::Instant;

use herald::parts::actors::TokioClock;
use herald::parts::actors::ports::{Clock, GroundTruth};
use herald::parts::messages::GroundTruthEpoch;
use herald::parts::runtime::cluster::GatewayClient;
use herald::parts::runtime::cluster::wire::{self, Request, RequestBody};
use herald::parts::runtime::stores::RedbGroundTruth;
use herald::{
    AdInput, BulkAdvertise, Node, NodeHandle, NodeId, RawClusterConfig, RawNodeConfig,
    RawPeerConfig, RawRegisterConfig, Register, RegisterId, Snapshot, SyncStatus,
};

#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
use support::{Report, Samples, WARMUP_ITERATIONS, rotated};

// The tests' role-process harness: builds the role binaries for this profile, starts them,
// reads their ready line, signals them, kills them when dropped. (Its unit tests do not run
// here: their import is unused.)
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/process.rs"]
mod process;
use process::{Role, RoleProcess, free_port};

const DEFAULT_ITERATIONS: usize = 11;
const DEFAULT_SIZES: [usize; 3] = [2, 4, 8];
const COOKIE: &str = "bench-cluster-cookie";
/// The liveness settings of `tests/it/cluster.rs`.
const LIVENESS_MS: u64 = 100;
const UNREACHABLE_AFTER_MS: u64 = 1_000;
const RECONNECT_BACKOFF_MAX_MS: u64 = 300;
const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Ads of the full sync (the largest bulk request the pool accepts).
const ADS: usize = 10_000;
/// Pause between two polls of a process's REST API or a node's sync state.
const POLL_PAUSE: Duration = Duration::from_millis(1);
/// A mesh, a suspicion or a full sync that takes longer is an error, not a sample.
const DEADLINE: Duration = Duration::from_secs(60);
/// Spread of the freezes over the ping period: the i-th is sent `i % PHASES` tenths of a
/// period after the previous member came back.
const PHASES: u32 = 10;

const USAGE: &str = "\
Benchmarks of the cluster (issue 8) with the role binaries as processes; see BENCHMARKS.md.

usage: cargo bench --bench cluster [-- OPTIONS]

  --iterations N      measured iterations per measurement (default 11; 3 warm-ups come first)
  --sizes 2,4,8       cluster sizes of the mesh measurement (at least 2 each)
  --only WHAT         one measurement: mesh, suspicion, sync or gossip
  --help              this text

Builds the role binaries (cargo build --release --example peer/register/hub) on first use.";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    Mesh,
    Suspicion,
    Sync,
    Gossip,
}

fn main() -> std::process::ExitCode {
    match measure() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cluster bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn measure() -> Result<()> {
    let mut sizes = DEFAULT_SIZES.to_vec();
    let mut only = None;
    let args = std::env::args().skip(1);
    let parsed = support::parse_args_with_default(
        "cluster",
        USAGE,
        DEFAULT_ITERATIONS,
        args,
        |flag, rest| {
            match flag {
                "--sizes" => sizes = support::list_argument(flag, rest.next(), 2)?,
                "--only" => {
                    only = Some(match rest.next().as_deref() {
                        Some("mesh") => Only::Mesh,
                        Some("suspicion") => Only::Suspicion,
                        Some("sync") => Only::Sync,
                        Some("gossip") => Only::Gossip,
                        other => bail!("--only {other:?}: mesh, suspicion, sync or gossip"),
                    });
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
    runtime.block_on(run(iterations, &sizes, only))
}

async fn run(iterations: usize, sizes: &[usize], only: Option<Only>) -> Result<()> {
    let wanted = |what: Only| only.is_none_or(|only| only == what);
    // Builds the role binaries now, outside every timed region.
    let built = Instant::now();
    let _ = Role::Peer.binary();
    eprintln!(
        "role binaries ready after {:?}; {iterations} iterations after {WARMUP_ITERATIONS} warm-ups",
        built.elapsed()
    );
    let mut report = Report::default();
    if wanted(Only::Mesh) {
        mesh(iterations, sizes, &mut report).await?;
    }
    if wanted(Only::Suspicion) {
        suspicion(iterations, &mut report).await?;
    }
    if wanted(Only::Sync) {
        full_sync(iterations, &mut report).await?;
    }
    if wanted(Only::Gossip) {
        gossip(iterations, &mut report).await?;
    }
    println!(
        "\n### Results ({iterations} iterations; pings every {LIVENESS_MS} ms, suspicion after 3 misses)\n"
    );
    report.print();
    Ok(())
}

// ---- the settings every member gets ----

/// The cluster flags of a process: the tests' liveness settings.
fn cluster_args(listen: &str, seed: Option<SocketAddr>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--cluster-listen",
        listen,
        "--cookie",
        COOKIE,
        "--liveness-interval-ms",
        &LIVENESS_MS.to_string(),
        "--unreachable-after-ms",
        &UNREACHABLE_AFTER_MS.to_string(),
        "--reconnect-backoff-max-ms",
        &RECONNECT_BACKOFF_MAX_MS.to_string(),
        "--cluster-connect-timeout-ms",
        &CONNECT_TIMEOUT_MS.to_string(),
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    if let Some(seed) = seed {
        args.extend(["--cluster-seed".to_owned(), seed.to_string()]);
    }
    args
}

/// The same settings as a configuration (for the node in this process and for the bound).
fn cluster_config(seeds: Vec<String>) -> RawClusterConfig {
    RawClusterConfig {
        listen: "127.0.0.1:0".into(),
        seeds,
        cookie: Some(COOKIE.into()),
        liveness_interval_ms: Some(LIVENESS_MS),
        unreachable_after_ms: Some(UNREACHABLE_AFTER_MS),
        reconnect_backoff_max_ms: Some(RECONNECT_BACKOFF_MAX_MS),
        connect_timeout_ms: Some(CONNECT_TIMEOUT_MS),
        ..RawClusterConfig::default()
    }
}

/// A peer process with its own data directory.
struct Peer {
    process: RoleProcess,
    _dir: TempDir,
}

fn data_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("herald-bench-cluster-")
        .tempdir()
        .context("create a data directory")
}

/// Starts `count` peer processes at once: with `clustered`, the first listens on a port picked
/// here and every other is given it as its one seed. Returns them when all printed their
/// ready line.
async fn start_peers(prefix: &str, count: usize, clustered: bool) -> Result<Vec<Peer>> {
    let seed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut dirs = Vec::with_capacity(count);
    let mut commands = Vec::with_capacity(count);
    for index in 0..count {
        let dir = data_dir()?;
        let mut args = vec![
            "--node-id".to_owned(),
            format!("{prefix}-{index}"),
            "--data-dir".to_owned(),
            dir.path().to_str().context("a UTF-8 path")?.to_owned(),
        ];
        if clustered {
            args.extend(match index {
                0 => cluster_args(&seed.to_string(), None),
                _ => cluster_args("127.0.0.1:0", Some(seed)),
            });
        }
        dirs.push(dir);
        commands.push(args);
    }
    // Every future spawns its process at its first poll: all of them, back to back.
    let starts = commands.iter().map(|args| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        RoleProcess::try_start(Role::Peer, &args).await
    });
    let started = futures::future::join_all(starts).await;
    let mut peers = Vec::with_capacity(count);
    for (process, dir) in started.into_iter().zip(dirs) {
        let process = process.map_err(anyhow::Error::msg)?;
        peers.push(Peer { process, _dir: dir });
    }
    Ok(peers)
}

/// Members `observer` lists in `state`, itself excluded.
async fn listed(observer: &RoleProcess, state: &str) -> Vec<String> {
    observer
        .members()
        .await
        .iter()
        .filter(|member| member["self"] != json!(true) && member["state"] == state)
        .filter_map(|member| member["nodeId"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until every process lists every other ready.
async fn until_full_mesh(peers: &[&RoleProcess], since: Instant) -> Result<()> {
    for observer in peers {
        loop {
            let ready = listed(observer, "ready").await;
            let all = peers
                .iter()
                .filter(|other| other.node_id() != observer.node_id())
                .all(|other| ready.iter().any(|id| id == other.node_id()));
            if all {
                break;
            }
            ensure!(
                since.elapsed() < DEADLINE,
                "no full mesh within {DEADLINE:?}: {} lists {ready:?} ready",
                observer.node_id()
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
    Ok(())
}

// ---- 1. mesh ----

async fn mesh(iterations: usize, sizes: &[usize], report: &mut Report) -> Result<()> {
    for &size in sizes {
        eprintln!("mesh of {size} processes ...");
        let mut meshed = Samples::default();
        let mut meshed_after_ready = Samples::default();
        let mut clustered_ready = Samples::default();
        let mut floor = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(2, iteration) {
                let started = Instant::now();
                if case == 0 {
                    let peers = start_peers(&format!("mesh{size}"), size, true).await?;
                    let all_ready = started.elapsed();
                    let processes: Vec<&RoleProcess> =
                        peers.iter().map(|peer| &peer.process).collect();
                    until_full_mesh(&processes, started).await?;
                    let took = started.elapsed();
                    meshed.push_if(keep, took);
                    clustered_ready.push_if(keep, all_ready);
                    meshed_after_ready.push_if(keep, took.saturating_sub(all_ready));
                } else {
                    let peers = start_peers(&format!("solo{size}"), size, false).await?;
                    floor.push_if(keep, started.elapsed());
                    drop(peers);
                }
            }
        }
        report.section(format!(
            "Full mesh of {size} peer processes, started at once, one seed each (until every one lists every other ready)"
        ));
        report.row(
            &format!(
                "floor: {size} processes without a cluster, until all printed their ready line"
            ),
            &floor,
            None,
        );
        report.row(
            &format!("herald: {size} clustered processes until the full mesh"),
            &meshed,
            Some(&floor),
        );
        report.row(
            "part: until all printed their ready line (the cluster's listener bound, seeds dialing)",
            &clustered_ready,
            Some(&floor),
        );
        report.row(
            "part: from the last ready line to the full mesh",
            &meshed_after_ready,
            None,
        );
    }
    Ok(())
}

// ---- 2. suspicion ----

async fn suspicion(iterations: usize, report: &mut Report) -> Result<()> {
    let probe_dir = data_dir()?;
    let bound = RawNodeConfig {
        node_id: "bound".into(),
        data_dir: Some(probe_dir.path().to_owned()),
        peer: Some(RawPeerConfig::default()),
        cluster: Some(cluster_config(Vec::new())),
        ..RawNodeConfig::default()
    }
    .validate()?
    .cluster
    .context("a clustered configuration")?
    .suspicion_bound();
    eprintln!("a frozen member of 3 (bound {bound:?}) ...");
    let peers = start_peers("stop", 3, true).await?;
    let processes: Vec<&RoleProcess> = peers.iter().map(|peer| &peer.process).collect();
    until_full_mesh(&processes, Instant::now()).await?;
    let (observers, frozen) = (&processes[..2], processes[2]);

    let mut first = Samples::default();
    let mut last = Samples::default();
    let mut back = Samples::default();
    for iteration in 0..WARMUP_ITERATIONS + iterations {
        let keep = iteration >= WARMUP_ITERATIONS;
        let phase = iteration as u32 % PHASES;
        tokio::time::sleep(Duration::from_millis(LIVENESS_MS) * phase / PHASES).await;
        frozen.signal("STOP");
        let stopped = Instant::now();
        let mut seen: Vec<Option<Duration>> = vec![None; observers.len()];
        while seen.iter().any(Option::is_none) {
            for (observer, seen) in observers.iter().zip(seen.iter_mut()) {
                if seen.is_none() {
                    let state = observer.member_state(frozen.node_id()).await;
                    if matches!(state.as_deref(), Some("suspect" | "unreachable")) {
                        *seen = Some(stopped.elapsed());
                    }
                }
            }
            if stopped.elapsed() > DEADLINE {
                frozen.signal("CONT");
                bail!("the frozen member was not suspected within {DEADLINE:?}");
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
        let mut seen: Vec<Duration> = seen.into_iter().flatten().collect();
        seen.sort();
        first.push_if(keep, seen[0]);
        last.push_if(keep, seen[seen.len() - 1]);
        frozen.signal("CONT");
        let resumed = Instant::now();
        until_full_mesh(&processes, resumed).await?;
        back.push_if(keep, resumed.elapsed());
    }
    let mut bound_samples = Samples::default();
    bound_samples.push_if(true, bound);
    report.section(format!(
        "A member of 3 frozen with SIGSTOP until the others list it suspect (pings every {LIVENESS_MS} ms, 3 misses; polled every {} ms)",
        POLL_PAUSE.as_millis()
    ));
    report.row(
        "bound: `ClusterConfig::suspicion_bound` (3 × interval + ping deadline + 1 interval of phase)",
        &bound_samples,
        None,
    );
    report.row(
        "herald: the first of the two others to list it suspect",
        &first,
        Some(&bound_samples),
    );
    report.row(
        "herald: both others list it suspect",
        &last,
        Some(&bound_samples),
    );
    report.row(
        "after SIGCONT: all three list each other ready again",
        &back,
        None,
    );
    drop(peers);
    Ok(())
}

// ---- 3. full sync over the cluster ----

/// What the sync measurement keeps between its cases.
struct SyncBench {
    clock: TokioClock,
    /// The 10,000 public registers as the ground truth returns them (what the driver pushes).
    ads: Vec<AdInput>,
    revision: u64,
    epoch: GroundTruthEpoch,
    /// A copy of the register node's ground truth, read by this process alone.
    truth: RedbGroundTruth,
    peer: Peer,
    /// The register role, clustered, feeding `peer` by node id.
    register: NodeHandle,
    /// A peer node in this process (the floor).
    floor: NodeHandle,
    /// Register and peer roles in this process, not clustered.
    local: NodeHandle,
    /// Full syncs that failed (and were measured again).
    failures: std::cell::Cell<usize>,
}

const SYNC_CASES: usize = 8;
/// Full syncs that may fail in one run (each is counted, reported and measured again).
const MAX_FAILED_PUSHES: usize = 20;

async fn full_sync(iterations: usize, report: &mut Report) -> Result<()> {
    eprintln!("full sync of {ADS} ads over the cluster ...");
    let dirs = [data_dir()?, data_dir()?, data_dir()?, data_dir()?];
    let [register_dir, local_dir, copy_dir, floor_dir] = &dirs;
    let file = "registers.redb";
    let populated = Instant::now();
    let clock = TokioClock::new();
    {
        let truth = RedbGroundTruth::open(&register_dir.path().join(file)).await?;
        for n in 0..ADS {
            let mut bytes = [0x5c; 16];
            bytes[12..].copy_from_slice(&(n as u32).to_be_bytes());
            let now = clock.now();
            truth
                .create(Register {
                    register_id: RegisterId::from_bytes(bytes),
                    name: format!("register-{n:05}"),
                    description: Some(format!("ledger {n} of the cluster benchmark")),
                    advertise: true,
                    latest_version: 1,
                    latest_docket_version: 0,
                    created_at: now,
                    updated_at: now,
                    revision: 0,
                })
                .await?;
        }
    }
    for dir in [local_dir, copy_dir] {
        std::fs::copy(register_dir.path().join(file), dir.path().join(file))
            .context("copy the ground truth")?;
    }
    let truth = RedbGroundTruth::open(&copy_dir.path().join(file)).await?;
    let public = truth.public_registers().await?;
    ensure!(public.registers.len() == ADS, "{}", public.registers.len());
    eprintln!(
        "ground truth of {ADS} public registers written in {:?}",
        populated.elapsed()
    );

    let peer_dir = data_dir()?;
    let peer_id = "sync-peer";
    let mut args = vec![
        "--node-id".to_owned(),
        peer_id.to_owned(),
        "--data-dir".to_owned(),
        peer_dir.path().to_str().context("a UTF-8 path")?.to_owned(),
    ];
    args.extend(cluster_args("127.0.0.1:0", None));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = RoleProcess::try_start(Role::Peer, &args)
        .await
        .map_err(anyhow::Error::msg)?;
    let register = Node::start(
        RawNodeConfig {
            node_id: "sync-register".into(),
            data_dir: Some(register_dir.path().to_owned()),
            register: Some(RawRegisterConfig {
                peer_node_id: Some(peer_id.into()),
                // Only the bench asks for full syncs.
                resync_interval_ms: Some(3_600_000),
                ..RawRegisterConfig::default()
            }),
            cluster: Some(cluster_config(vec![process.cluster_addr().to_string()])),
            ..RawNodeConfig::default()
        }
        .validate()?,
    )
    .await?;
    let floor = Node::start(
        RawNodeConfig {
            node_id: "sync-floor".into(),
            data_dir: Some(floor_dir.path().to_owned()),
            peer: Some(RawPeerConfig::default()),
            ..RawNodeConfig::default()
        }
        .validate()?,
    )
    .await?;
    let local = Node::start(
        RawNodeConfig {
            node_id: "sync-local".into(),
            data_dir: Some(local_dir.path().to_owned()),
            peer: Some(RawPeerConfig::default()),
            register: Some(RawRegisterConfig {
                resync_interval_ms: Some(3_600_000),
                ..RawRegisterConfig::default()
            }),
            ..RawNodeConfig::default()
        }
        .validate()?,
    )
    .await?;
    let bench = SyncBench {
        clock,
        ads: public.registers,
        revision: public.revision,
        epoch: public.epoch,
        truth,
        peer: Peer {
            process,
            _dir: peer_dir,
        },
        register,
        floor,
        local,
        failures: std::cell::Cell::new(0),
    };
    // The start-up full syncs (the register node's waits for the peer to be ready).
    bench.until_in_sync(&bench.register, 0).await?;
    bench.until_in_sync(&bench.local, 0).await?;
    let outcome = bench
        .floor
        .bulk_advertise(bench.full_sync_request())
        .await?;
    ensure!(outcome.added == ADS && outcome.persisted, "{outcome:?}");
    ensure!(bench.peer_local_ads().await? == ADS, "the peer's pool");
    let request_bytes = bench.encoded_request().len();

    let mut samples = vec![Samples::default(); SYNC_CASES];
    let mut driver_clock = Samples::default();
    for iteration in 0..WARMUP_ITERATIONS + iterations {
        let keep = iteration >= WARMUP_ITERATIONS;
        for case in rotated(SYNC_CASES, iteration) {
            let took = match case {
                0 => bench.floor_sync(true).await?,
                1 => bench.floor_sync(false).await?,
                2 => loop {
                    bench.withdraw_on_peer().await?;
                    if let Some((took, by_driver)) = bench.driver_sync(&bench.register).await? {
                        ensure!(bench.peer_local_ads().await? == ADS, "the peer's pool");
                        driver_clock.push_if(keep, by_driver);
                        break took;
                    }
                },
                3 => loop {
                    if let Some((took, _)) = bench.driver_sync(&bench.register).await? {
                        break took;
                    }
                },
                4 => loop {
                    let outcome = bench.local.bulk_advertise(withdraw_all()).await?;
                    ensure!(outcome.removed == ADS, "{outcome:?}");
                    if let Some((took, _)) = bench.driver_sync(&bench.local).await? {
                        break took;
                    }
                },
                5 => loop {
                    if let Some((took, _)) = bench.driver_sync(&bench.local).await? {
                        break took;
                    }
                },
                6 => {
                    let started = Instant::now();
                    let read = bench.truth.public_registers().await?;
                    ensure!(read.registers.len() == ADS);
                    started.elapsed()
                }
                _ => {
                    let started = Instant::now();
                    let bytes = bench.encoded_request();
                    wire::decode(&bytes).map_err(|err| anyhow::anyhow!(err.reason))?;
                    started.elapsed()
                }
            };
            samples[case].push_if(keep, took);
        }
    }
    let [
        floor_changed,
        floor_unchanged,
        cluster_changed,
        cluster_unchanged,
        local_changed,
        local_unchanged,
        truth_read,
        wire_time,
    ] = samples
        .try_into()
        .map_err(|_| anyhow::anyhow!("one sample set per case"))?;
    report.section(format!(
        "Full sync of {ADS} changed ads (all withdrawn just before, untimed), register node → peer process over the cluster, both on redb"
    ));
    report.row(
        "floor: `bulk_advertise` full sync to a peer node in this process (redb), until its reply",
        &floor_changed,
        None,
    );
    report.row(
        "herald: register node → peer process by node id over the cluster (`resync_now()` until `sync_state()` reports it)",
        &cluster_changed,
        Some(&floor_changed),
    );
    report.row(
        "part: the same by the driver's clock (`lastAttempt` → `lastSuccess`, whole ms)",
        &driver_clock,
        Some(&floor_changed),
    );
    report.row(
        "herald without the cluster: the same driver full sync to its own pool (register + peer roles in this process)",
        &local_changed,
        Some(&floor_changed),
    );
    report.section(format!(
        "Full sync of {ADS} unchanged ads (the periodic case), register node → peer process over the cluster"
    ));
    report.row(
        "floor: `bulk_advertise` unchanged full sync to a peer node in this process",
        &floor_unchanged,
        None,
    );
    report.row(
        "herald: register node → peer process over the cluster",
        &cluster_unchanged,
        Some(&floor_unchanged),
    );
    report.row(
        "herald without the cluster: the same driver full sync to its own pool",
        &local_unchanged,
        Some(&floor_unchanged),
    );
    report.row(
        &format!("part: the ground truth's `public_registers()` of {ADS} (redb)"),
        &truth_read,
        None,
    );
    report.row(
        &format!(
            "part: the push request's wire encoding and decoding ({:.1} MiB of JSON: {}, {} MiB parts)",
            request_bytes as f64 / (1024.0 * 1024.0),
            if request_bytes > wire::PART_BYTES {
                "sent in parts"
            } else {
                "one frame"
            },
            wire::PART_BYTES / (1024 * 1024)
        ),
        &wire_time,
        None,
    );
    report.note(format!(
        "Full syncs over the cluster that failed and were measured again: {} (see stderr for why).",
        bench.failures.get()
    ));
    report.note(format!(
        "Over the cluster against the same driver in one process (median over median): changed {}, unchanged {}.",
        support::ratio(cluster_changed.median(), Some(local_changed.median())),
        support::ratio(cluster_unchanged.median(), Some(local_unchanged.median())),
    ));
    let SyncBench {
        register,
        floor,
        local,
        peer,
        ..
    } = bench;
    for node in [register, floor, local] {
        node.shutdown().await;
    }
    drop(peer);
    Ok(())
}

/// A full sync of nothing without a snapshot: withdraws every local ad (untimed, so that the
/// next full sync adds all of them again).
fn withdraw_all() -> BulkAdvertise {
    BulkAdvertise::full(Vec::new(), None)
}

impl SyncBench {
    /// The full sync the register role would push now.
    fn full_sync_request(&self) -> BulkAdvertise {
        BulkAdvertise::full(
            self.ads.clone(),
            Some(Snapshot {
                seq: self.revision,
                read_at: self.clock.now(),
                epoch: Some(self.epoch),
            }),
        )
    }

    /// The cluster request carrying the full sync, encoded as the gateway client sends it.
    fn encoded_request(&self) -> Vec<u8> {
        let request = Request {
            incarnation: 1,
            sent_at_ms: self.clock.now().as_unix_millis(),
            deadline_ms: 10_000,
            body: RequestBody::PoolPush {
                request: self.full_sync_request(),
            },
        };
        wire::encode_request(
            &NodeId::parse("sync-register").expect("a valid id"),
            &request,
        )
    }

    /// The floor: a changed (after a withdrawal) or unchanged full sync to the pool of this
    /// process, until its reply.
    async fn floor_sync(&self, changed: bool) -> Result<Duration> {
        if changed {
            let outcome = self.floor.bulk_advertise(withdraw_all()).await?;
            ensure!(outcome.removed == ADS, "{outcome:?}");
        }
        let request = self.full_sync_request();
        let started = Instant::now();
        let outcome = self.floor.bulk_advertise(request).await?;
        let took = started.elapsed();
        let expected = if changed {
            outcome.added
        } else {
            outcome.unchanged
        };
        ensure!(expected == ADS && outcome.persisted, "{outcome:?}");
        Ok(took)
    }

    /// Asks `node`'s driver for a full sync and waits until it reports it done; returns that
    /// time and the driver's own (from its attempt to its success). A push that failed is
    /// counted, and `None` returned once the driver's own retry succeeded (the caller measures
    /// again).
    async fn driver_sync(&self, node: &NodeHandle) -> Result<Option<(Duration, Duration)>> {
        let before = node.sync_state().await?.successful_full_syncs;
        let started = Instant::now();
        node.resync_now()?;
        let state = match self.until_done(node, before).await? {
            Ok(state) => state,
            Err(failed) => {
                self.failures.set(self.failures.get() + 1);
                eprintln!(
                    "a full sync failed after {:?} ({} so far): {}; the peer process's log says:\n{}",
                    started.elapsed(),
                    self.failures.get(),
                    failed.last_error.as_deref().unwrap_or("?"),
                    self.peer.process.log_tail()
                );
                ensure!(
                    self.failures.get() <= MAX_FAILED_PUSHES,
                    "{MAX_FAILED_PUSHES} full syncs failed"
                );
                self.until_in_sync(node, failed.successful_full_syncs)
                    .await?;
                return Ok(None);
            }
        };
        let took = started.elapsed();
        let by_driver = match (state.last_attempt, state.last_success) {
            (Some(attempt), Some(success)) => success.since(attempt),
            _ => bail!("a successful full sync without its stamps: {state:?}"),
        };
        Ok(Some((took, by_driver)))
    }

    /// Polls `node`'s sync state until more than `before` full syncs succeeded (`Ok`), or the
    /// one under way failed (`Err`).
    async fn until_done(
        &self,
        node: &NodeHandle,
        before: u64,
    ) -> Result<Result<herald::AdvertisementSyncState, herald::AdvertisementSyncState>> {
        let started = Instant::now();
        loop {
            let state = node.sync_state().await?;
            if state.successful_full_syncs > before && state.status == SyncStatus::InSync {
                ensure!(state.last_pushed == ADS, "{state:?}");
                return Ok(Ok(state));
            }
            if state.status == SyncStatus::Retrying {
                return Ok(Err(state));
            }
            ensure!(
                started.elapsed() < DEADLINE,
                "the full sync did not end within {DEADLINE:?}: {state:?}"
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    /// Polls `node`'s sync state until more than `before` full syncs succeeded (the driver
    /// retries failed ones by itself).
    async fn until_in_sync(
        &self,
        node: &NodeHandle,
        before: u64,
    ) -> Result<herald::AdvertisementSyncState> {
        let started = Instant::now();
        loop {
            let state = node.sync_state().await?;
            if state.successful_full_syncs > before && state.status == SyncStatus::InSync {
                ensure!(state.last_pushed == ADS, "{state:?}");
                return Ok(state);
            }
            ensure!(
                started.elapsed() < DEADLINE,
                "no successful full sync within {DEADLINE:?}: {state:?}"
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    /// Withdraws every ad of the peer process's pool (a full sync of nothing over its REST API).
    async fn withdraw_on_peer(&self) -> Result<()> {
        let reply = self
            .peer
            .process
            .post_json(
                "/api/registers/bulk-advertise",
                json!({"advertisements": [], "fullSync": true}),
            )
            .await;
        ensure!(
            reply.status.is_success() && reply.body["removed"] == json!(ADS),
            "{reply:?}"
        );
        Ok(())
    }

    /// Local ads in the peer process's pool (`GET /api/sync/status`).
    async fn peer_local_ads(&self) -> Result<usize> {
        let status: Value = self.peer.process.get_json("/api/sync/status").await.body;
        status["pool"]["localAds"]
            .as_u64()
            .map(|ads| ads as usize)
            .with_context(|| format!("no pool in {status}"))
    }
}

// ---- 4. gossip between two peer processes ----

const GOSSIP_INTERVAL_MS: u64 = 100;
/// Steady state: how long the bytes and rounds are counted.
const STEADY: Duration = Duration::from_secs(5);

async fn gossip(iterations: usize, report: &mut Report) -> Result<()> {
    eprintln!("gossip of {ADS} ads between two peer processes ...");
    let start_peer = |id: &'static str, seed: Option<SocketAddr>| async move {
        let dir = data_dir()?;
        let mut args = vec![
            "--node-id".to_owned(),
            id.to_owned(),
            "--data-dir".to_owned(),
            dir.path().to_str().context("a UTF-8 path")?.to_owned(),
            "--gossip-interval-ms".to_owned(),
            GOSSIP_INTERVAL_MS.to_string(),
        ];
        args.extend(cluster_args("127.0.0.1:0", seed));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = RoleProcess::try_start(Role::Peer, &args)
            .await
            .map_err(anyhow::Error::msg)?;
        anyhow::Ok(Peer { process, _dir: dir })
    };
    let a = start_peer("gossip-a", None).await?;
    let seed = a.process.cluster_addr();
    let b = start_peer("gossip-b", Some(seed)).await?;
    // The floor's receiver: a register process (no pool: its gateway decodes a push whole and
    // answers at once). It feeds B, which serves nothing of its own.
    let sink_dir = data_dir()?;
    let mut args = vec![
        "--node-id".to_owned(),
        "gossip-sink".to_owned(),
        "--data-dir".to_owned(),
        sink_dir.path().to_str().context("a UTF-8 path")?.to_owned(),
        "--peer-node-id".to_owned(),
        "gossip-b".to_owned(),
    ];
    args.extend(cluster_args("127.0.0.1:0", Some(seed)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sink = RoleProcess::try_start(Role::Register, &args)
        .await
        .map_err(anyhow::Error::msg)?;
    let sender_dir = data_dir()?;
    let sender = Node::start(
        RawNodeConfig {
            node_id: "gossip-sender".into(),
            data_dir: Some(sender_dir.path().to_owned()),
            register: Some(RawRegisterConfig {
                peer_node_id: Some("gossip-b".into()),
                resync_interval_ms: Some(3_600_000),
                ..RawRegisterConfig::default()
            }),
            cluster: Some(cluster_config(vec![seed.to_string()])),
            ..RawNodeConfig::default()
        }
        .validate()?,
    )
    .await?;
    let cluster = sender.cluster()?.clone();
    let sink_gateway = cluster
        .ready_gateway(&NodeId::parse("gossip-sink")?, DEADLINE)
        .await
        .context("the sink's gateway")?;
    let me = cluster.view().me.clone();
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(TokioClock::new());
    let client = GatewayClient::new(me.node_id.clone(), me.incarnation, clock);

    let ads: Vec<Value> = (0..ADS)
        .map(|n| {
            json!({
                "registerId": format!("{:032x}", 0x6055_0000_u64 + n as u64),
                "name": format!("register-{n:05}"),
                "description": format!("ledger {n} of the gossip benchmark"),
                "isPublic": true,
                "latestVersion": 1,
                "latestDocketVersion": 0,
            })
        })
        .collect();
    let push = BulkAdvertise {
        advertisements: ads
            .iter()
            .map(|ad| serde_json::from_value::<AdInput>(ad.clone()))
            .collect::<Result<_, _>>()?,
        full_sync: true,
        snapshot: None,
    };
    let floor_bytes = wire::encode_request(
        &me.node_id,
        &Request {
            incarnation: me.incarnation,
            sent_at_ms: 0,
            deadline_ms: 60_000,
            body: RequestBody::PoolPush {
                request: push.clone(),
            },
        },
    )
    .len();

    let (pa, pb) = (&a.process, &b.process);
    let remote_ads = |node: &RoleProcess| {
        let url = format!("{}/api/sync/status", node.base_url());
        async move {
            let status: Value = reqwest::get(url).await?.json().await?;
            anyhow::Ok(status["pool"]["gossip"]["remoteAds"].as_u64().unwrap_or(0))
        }
    };
    let until_b_shows = |count: u64| async move {
        let started = Instant::now();
        while remote_ads(pb).await? != count {
            ensure!(
                started.elapsed() < DEADLINE,
                "B never showed {count} remote ads"
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }
        anyhow::Ok(())
    };
    let sent = || async {
        anyhow::Ok(
            pa.counter("herald_gossip_bytes_sent_total").await
                + pb.counter("herald_gossip_bytes_sent_total").await,
        )
    };
    let bulk = |advertisements: &[Value]| {
        let body = json!({"advertisements": advertisements, "fullSync": true});
        async move {
            let reply = pa.post_json("/api/registers/bulk-advertise", body).await;
            ensure!(reply.status.is_success(), "bulk-advertise on A: {reply:?}");
            anyhow::Ok(())
        }
    };

    let mut converged = Samples::default();
    let mut floor = Samples::default();
    let mut bytes = Vec::new();
    for iteration in 0..WARMUP_ITERATIONS + iterations {
        let keep = iteration >= WARMUP_ITERATIONS;
        for case in rotated(2, iteration) {
            if case == 0 {
                bulk(&[]).await?;
                until_b_shows(0).await?;
                let before = sent().await?;
                bulk(&ads).await?;
                let replied = Instant::now();
                until_b_shows(ADS as u64).await?;
                converged.push_if(keep, replied.elapsed());
                if keep {
                    bytes.push(sent().await? - before);
                }
            } else {
                let started = Instant::now();
                let reply = client
                    .call(
                        &sink_gateway,
                        RequestBody::PoolPush {
                            request: push.clone(),
                        },
                        Duration::from_secs(60),
                    )
                    .await?;
                ensure!(
                    matches!(
                        reply,
                        herald::parts::runtime::cluster::wire::Reply::Refused { .. }
                    ),
                    "the sink applied a push: {reply:?}"
                );
                floor.push_if(keep, started.elapsed());
            }
        }
    }

    // Steady state: everything converged, nothing changes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rounds = || async {
        anyhow::Ok(
            pa.counter("herald_gossip_rounds_total").await
                + pb.counter("herald_gossip_rounds_total").await,
        )
    };
    let (bytes_before, rounds_before) = (sent().await?, rounds().await?);
    tokio::time::sleep(STEADY).await;
    let (bytes_after, rounds_after) = (sent().await?, rounds().await?);
    let per_round = (bytes_after - bytes_before) / (rounds_after - rounds_before).max(1.0);

    bytes.sort_by(f64::total_cmp);
    let median_bytes = bytes.get(bytes.len() / 2).copied().unwrap_or(0.0);
    report.section(format!(
        "Gossip of {ADS} ads between two peer processes (rounds every {GOSSIP_INTERVAL_MS} ms, 64 KiB messages)"
    ));
    report.row(
        "floor: the same ads as one PoolPush message (encode, send, decode, reply)",
        &floor,
        None,
    );
    report.row(
        "gossip: A's bulk reply until B shows all as remote ads",
        &converged,
        Some(&floor),
    );
    report.table(
        "Gossip bytes (JSON bodies, both directions)".to_owned(),
        "| measurement | bytes | ratio |",
        "|---|---:|---:|",
    );
    report.line(format!(
        "| floor: one PoolPush frame of {ADS} ads | {floor_bytes} | 1.00× |"
    ));
    report.line(format!(
        "| gossip until converged (median) | {median_bytes:.0} | {:.2}× |",
        median_bytes / floor_bytes as f64
    ));
    report.line(format!(
        "| steady state, per round per node ({:.0} rounds in {STEADY:?}) | {per_round:.0} | — |",
        rounds_after - rounds_before
    ));
    sender.shutdown().await;
    drop(sink);
    Ok(())
}
