//! Benchmarks of reads that never wait behind writes (issue 11, items 1, 2, 4, 5), each beside
//! its floor or its idle value measured in the same run.
//!
//! ```text
//! cargo bench --bench reads                          # 3 rounds, 4 s windows
//! cargo bench --bench reads -- --rounds 5 --seconds 6
//! ```
//!
//! 1. **In-process**: `NodeApi::available_view()` and the reads `/health` makes on a peer
//!    (`children()` + `pool_status()`), each timed call after call for a window, on a peer whose
//!    pool holds 10,000 ads on Redis, idle and while changed full syncs of 10,000 ads run back
//!    to back (every ad changes at every sync). p50 and p99 over each window.
//! 2. **Over HTTP**: `GET /api/registers/available` (10,000 ads) by `hey` (Debian's `hey`
//!    package: `hey -z Ns -c 4`), beside an axum handler in the same process that serves the
//!    same pre-built bytes (the floor), plain (`-disable-compression`) and with
//!    `Accept-Encoding: gzip` (hey's default; the floor serves pre-built gzip bytes), idle and
//!    while full syncs run; and `GET /health` idle and busy. Requests per second and p99.
//! 3. **Heartbeats**: a hub node (embedded store, fsync per publication) answers
//!    `SendHeartbeat` from a peer session (the real `GrpcHubLink`), one after another; p50/p99
//!    idle and during a burst of 1,000 publications sent back to back.
//!
//! Each measurement is repeated `--rounds` times, herald and floor interleaved; tables give
//! the medians over rounds. The bench starts its own `redis-server` and needs `hey` on `PATH`
//! (`apt-get install hey`). Run through `cargo test --benches`, it measures nothing.

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use bytes::Bytes;
use tokio::time::Instant;

use herald::parts::actors::TokioClock;
use herald::parts::actors::ports::{Clock, HubLink};
use herald::parts::messages::{ConnectRequest, HeartbeatRequest, HubEndpoint, NodeType};
use herald::parts::runtime::grpc::GrpcHubLink;
use herald::{
    AdInput, BlueprintId, BulkAdvertise, Node, NodeHandle, NodeId, PublishRequest, RawHubConfig,
    RawNodeConfig, RawPeerConfig, RegisterId, Snapshot,
};

#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
use support::{Report, Samples};

const ADS: usize = 10_000;
const PUBLICATIONS: usize = 1_000;
const HEY_CONCURRENCY: usize = 4;

const USAGE: &str = "\
Benchmarks of reads that never wait behind writes (issue 11); see BENCHMARKS.md.

usage: cargo bench --bench reads [-- --rounds N] [--seconds S]

  --rounds N    repetitions of every measurement (default 3)
  --seconds S   length of each timed window (default 4)";

fn main() -> ExitCode {
    match measure() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("reads bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn measure() -> Result<()> {
    let mut rounds = 3;
    let mut seconds = 4;
    let args = std::env::args().skip(1);
    let parsed = support::parse_args("reads", USAGE, args, |flag, rest| match flag {
        "--rounds" => {
            rounds = support::count_argument(flag, rest.next(), 1)?;
            Ok(true)
        }
        "--seconds" => {
            seconds = support::count_argument(flag, rest.next(), 1)?;
            Ok(true)
        }
        _ => Ok(false),
    })?;
    if parsed.is_none() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the tokio runtime")?;
    runtime.block_on(run(rounds, Duration::from_secs(seconds as u64)))
}

async fn run(rounds: usize, window: Duration) -> Result<()> {
    ensure!(
        Command::new("hey").arg("-h").output().is_ok(),
        "hey is not installed (apt-get install hey)"
    );
    let redis = RedisServer::start().await?;
    let dir = tempfile::tempdir()?;
    let mut report = Report::default();
    let peer = PeerBench::start(&redis.url(), dir.path()).await?;
    peer.in_process(&mut report, rounds, window).await?;
    eprintln!("(in-process done)");
    peer.over_http(&mut report, rounds, window).await?;
    peer.node.shutdown().await;
    heartbeats(&mut report, rounds, dir.path()).await?;
    println!("\n### Results ({ADS} ads, {rounds} rounds of {window:?} windows)\n");
    report.print();
    drop(redis);
    Ok(())
}

/// A peer node with 10,000 ads on Redis, its REST API on loopback, and the full syncs that keep
/// it busy.
struct PeerBench {
    node: NodeHandle,
    base: String,
    syncs: [BulkAdvertise; 2],
    seq: Arc<AtomicU64>,
    /// The `latestVersion` the pool holds now: the next sync raises it.
    holds: Arc<AtomicU64>,
}

/// Full syncs running back to back until stopped; counts them.
struct Syncer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<usize>>,
}

impl Syncer {
    async fn stop(self) -> Result<usize> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?
    }
}

impl PeerBench {
    async fn start(redis_url: &str, dir: &std::path::Path) -> Result<Self> {
        let config = RawNodeConfig {
            node_id: "reads-peer".into(),
            data_dir: Some(dir.join("peer")),
            http_addr: Some("127.0.0.1:0".into()),
            admin_token: Some("bench".into()),
            peer: Some(RawPeerConfig {
                redis_url: Some(redis_url.to_owned()),
                ..RawPeerConfig::default()
            }),
            ..RawNodeConfig::default()
        }
        .validate()?;
        let node = Node::start(config).await?;
        let addr = node.http_addr().context("the REST API listens")?;
        let request = |version: u64| {
            let ads = (0..ADS as u32)
                .map(|n| {
                    let mut bytes = [0x5a; 16];
                    bytes[12..].copy_from_slice(&n.to_be_bytes());
                    AdInput {
                        register_id: RegisterId::from_bytes(bytes),
                        name: Some(format!("register-{n:05}").into()),
                        description: Some(format!("ledger {n} of the benchmark").into()),
                        is_public: true,
                        latest_version: version,
                        latest_docket_version: version / 2,
                        sync_state: None,
                    }
                })
                .collect();
            BulkAdvertise::full(ads, None)
        };
        let bench = Self {
            node,
            base: format!("http://{addr}"),
            syncs: [request(1), request(2)],
            seq: Arc::new(AtomicU64::new(0)),
            holds: Arc::new(AtomicU64::new(1)),
        };
        let outcome = bench.node.bulk_advertise(bench.sync(0)).await?;
        ensure!(outcome.added == ADS && outcome.persisted, "{outcome:?}");
        Ok(bench)
    }

    /// Full sync `n` (alternating contents, so each one changes every ad).
    fn sync(&self, n: u64) -> BulkAdvertise {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut request = self.syncs[(n % 2) as usize].clone();
        request.snapshot = Some(Snapshot::new(seq, TokioClock::new().now()));
        request
    }

    fn start_syncs(&self) -> Syncer {
        let stop = Arc::new(AtomicBool::new(false));
        let api = self.node.api().clone();
        let template = self.syncs[0].clone();
        let seq = Arc::clone(&self.seq);
        let holds = Arc::clone(&self.holds);
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let clock = TokioClock::new();
            let mut done = 0;
            while !flag.load(Ordering::SeqCst) {
                // Versions never go back: every sync raises them, so every ad changes.
                let version = holds.fetch_add(1, Ordering::SeqCst) + 1;
                let mut request = template.clone();
                for ad in &mut request.advertisements {
                    ad.latest_version = version;
                }
                let next = seq.fetch_add(1, Ordering::SeqCst) + 1;
                request.snapshot = Some(Snapshot::new(next, clock.now()));
                let outcome = api.bulk_advertise(request).await?;
                ensure!(outcome.updated == ADS, "every ad changes: {outcome:?}");
                done += 1;
            }
            Ok(done)
        });
        Syncer { stop, task }
    }

    async fn in_process(&self, report: &mut Report, rounds: usize, window: Duration) -> Result<()> {
        eprintln!("in-process reads ...");
        let api = self.node.api().clone();
        let mut rows: BTreeMap<&str, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
        let mut syncs_done = Vec::new();
        for _ in 0..rounds {
            for busy in [false, true] {
                let syncer = busy.then(|| self.start_syncs());
                let available = time_calls(window, || async {
                    let view = api.available_view().await?;
                    ensure!(view.len() == ADS);
                    Ok(())
                })
                .await?;
                let health = time_calls(window, || async {
                    api.children().await?;
                    api.pool_status().await?;
                    Ok(())
                })
                .await?;
                if let Some(syncer) = syncer {
                    syncs_done.push(syncer.stop().await?);
                }
                for (name, samples) in [("available_view()", available), ("health reads", health)] {
                    let key = match (name, busy) {
                        ("available_view()", false) => "available idle",
                        ("available_view()", true) => "available busy",
                        (_, false) => "health idle",
                        (_, true) => "health busy",
                    };
                    let entry = rows.entry(key).or_default();
                    entry.0.push(samples.median());
                    entry.1.push(samples.quantile(0.99));
                }
            }
        }
        report.table(
            format!(
                "In-process reads, {ADS} ads on Redis (median over {rounds} rounds of {window:?}; busy: changed full syncs of {ADS} ads back to back, {} per window)",
                median_count(&syncs_done) / 2
            ),
            "| read | p50 idle µs | p99 idle µs | p50 busy µs | p99 busy µs | p99 busy / idle |",
            "|---|---:|---:|---:|---:|---:|",
        );
        for (read, idle, busy) in [
            ("`available_view()`", "available idle", "available busy"),
            (
                "`/health`'s reads (`children()` + `pool_status()`)",
                "health idle",
                "health busy",
            ),
        ] {
            let (idle50, idle99) = medians(&rows[idle]);
            let (busy50, busy99) = medians(&rows[busy]);
            report.line(format!(
                "| {read} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× |",
                micros(idle50),
                micros(idle99),
                micros(busy50),
                micros(busy99),
                busy99.as_secs_f64() / idle99.as_secs_f64().max(1e-9),
            ));
        }
        Ok(())
    }

    async fn over_http(&self, report: &mut Report, rounds: usize, window: Duration) -> Result<()> {
        eprintln!("over HTTP with hey ...");
        let json = reqwest::get(format!("{}/api/registers/available", self.base))
            .await?
            .bytes()
            .await?;
        ensure!(json.len() > 1_000_000, "{} bytes", json.len());
        let floor = Floor::start(json.clone()).await?;
        let available = format!("{}/api/registers/available", self.base);
        let health = format!("{}/health", self.base);
        let mut results: BTreeMap<String, Vec<Hey>> = BTreeMap::new();
        for _ in 0..rounds {
            for busy in [false, true] {
                let syncer = busy.then(|| self.start_syncs());
                let load = if busy { "busy" } else { "idle" };
                for gzip in [false, true] {
                    let coding = if gzip { "gzip" } else { "plain" };
                    for (who, url) in [("herald", &available), ("floor", &floor.url)] {
                        let result = hey(url, window, gzip).await?;
                        results
                            .entry(format!("{who} {coding} {load}"))
                            .or_default()
                            .push(result);
                    }
                }
                let result = hey(&health, window, false).await?;
                results
                    .entry(format!("health {load}"))
                    .or_default()
                    .push(result);
                if let Some(syncer) = syncer {
                    syncer.stop().await?;
                }
            }
        }
        report.table(
            format!(
                "`GET /api/registers/available` ({ADS} ads, {} KiB JSON) by `hey -c {HEY_CONCURRENCY} -z {}s`, beside an axum handler serving the same pre-built bytes (median over {rounds} rounds)",
                json.len() / 1024,
                window.as_secs()
            ),
            "| encoding | load | herald rps | floor rps | rps ratio | herald p99 ms | floor p99 ms |",
            "|---|---|---:|---:|---:|---:|---:|",
        );
        for coding in ["plain", "gzip"] {
            for load in ["idle", "busy"] {
                let ours = Hey::median(&results[&format!("herald {coding} {load}")]);
                let theirs = Hey::median(&results[&format!("floor {coding} {load}")]);
                report.line(format!(
                    "| {coding} | {load} | {:.0} | {:.0} | {:.2}× | {:.1} | {:.1} |",
                    ours.rps,
                    theirs.rps,
                    ours.rps / theirs.rps.max(1e-9),
                    ours.p99_ms,
                    theirs.p99_ms,
                ));
            }
        }
        report.table(
            format!("`GET /health` by `hey -c {HEY_CONCURRENCY}` (median over {rounds} rounds)"),
            "| load | rps | p50 ms | p99 ms |",
            "|---|---:|---:|---:|",
        );
        for load in ["idle", "busy"] {
            let result = Hey::median(&results[&format!("health {load}")]);
            report.line(format!(
                "| {load} | {:.0} | {:.2} | {:.2} |",
                result.rps, result.p50_ms, result.p99_ms
            ));
        }
        report.note(format!(
            "Busy: changed full syncs of {ADS} ads run back to back in the same process while hey runs; the floor shares the process and the CPU with them too."
        ));
        floor.stop().await;
        Ok(())
    }
}

/// Times `call` again and again for `window`.
async fn time_calls<F, Fut>(window: Duration, mut call: F) -> Result<Samples>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut samples = Samples::default();
    let started = Instant::now();
    while started.elapsed() < window {
        let before = Instant::now();
        call().await?;
        samples.push_if(true, before.elapsed());
        // Let the other tasks (the syncs) run between calls, as separate requests would.
        tokio::task::yield_now().await;
    }
    Ok(samples)
}

fn medians(rounds: &(Vec<Duration>, Vec<Duration>)) -> (Duration, Duration) {
    (median(&rounds.0), median(&rounds.1))
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn median_count(values: &[usize]) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000_000.0
}

/// What one hey run reported.
#[derive(Debug, Clone, Copy, Default)]
struct Hey {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Hey {
    fn median(runs: &[Hey]) -> Hey {
        let pick = |value: fn(&Hey) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(value).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or_default()
        };
        Hey {
            rps: pick(|h| h.rps),
            p50_ms: pick(|h| h.p50_ms),
            p99_ms: pick(|h| h.p99_ms),
        }
    }
}

/// Runs `hey -z window -c 4 url`: gzip is hey's default (Go's transport asks for it and
/// decompresses); plain disables it.
async fn hey(url: &str, window: Duration, gzip: bool) -> Result<Hey> {
    let mut command = tokio::process::Command::new("hey");
    command
        .arg("-z")
        .arg(format!("{}s", window.as_secs()))
        .arg("-c")
        .arg(HEY_CONCURRENCY.to_string());
    if !gzip {
        command.arg("-disable-compression");
    }
    let output = command.arg(url).output().await.context("run hey")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "hey failed: {text}");
    ensure!(
        !text.contains("Error distribution"),
        "hey saw errors: {text}"
    );
    let field = |prefix: &str| -> Result<f64> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with(prefix))
            .with_context(|| format!("no {prefix:?} in hey's output: {text}"))?;
        let number = line[prefix.len()..]
            .split_whitespace()
            .next()
            .with_context(|| format!("no number after {prefix:?}"))?;
        Ok(number.parse()?)
    };
    Ok(Hey {
        rps: field("Requests/sec:")?,
        p50_ms: field("50% in")? * 1_000.0,
        p99_ms: field("99% in")? * 1_000.0,
    })
}

/// The floor: an axum handler in this process serving pre-built bytes (gzip ones to clients
/// that ask for gzip), nothing else.
struct Floor {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Floor {
    async fn start(json: Bytes) -> Result<Floor> {
        let gzip = {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&json)?;
            Bytes::from(encoder.finish()?)
        };
        let handler = move |headers: HeaderMap| {
            let (json, gzip) = (json.clone(), gzip.clone());
            async move {
                let wants_gzip = headers
                    .get(header::ACCEPT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("gzip"));
                let mut response = Response::new(Body::from(if wants_gzip { gzip } else { json }));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    "application/json".parse().expect("valid"),
                );
                if wants_gzip {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_ENCODING, "gzip".parse().expect("valid"));
                }
                response
            }
        };
        let router = axum::Router::new().route("/floor", axum::routing::get(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Floor {
            url: format!("http://{addr}/floor"),
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Heartbeat latency at a hub, idle and during a burst of 1,000 publications.
async fn heartbeats(report: &mut Report, rounds: usize, dir: &std::path::Path) -> Result<()> {
    eprintln!("heartbeats ...");
    let config = RawNodeConfig {
        node_id: "reads-hub".into(),
        data_dir: Some(dir.join("hub")),
        hub: Some(RawHubConfig {
            grpc_addr: "127.0.0.1:0".into(),
            session_expiry_ms: Some(600_000),
            // The one peer beats as fast as it can: no rate limit in the way.
            peer_requests_per_sec: Some(1_000_000),
            peer_request_burst: Some(1_000_000),
            ..RawHubConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()?;
    let hub = Node::start(config).await?;
    let endpoint = HubEndpoint {
        id: NodeId::parse("reads-hub")?,
        url: format!("http://{}", hub.grpc_addr().context("a hub serves gRPC")?),
        priority: 0,
    };
    let peer = NodeId::parse("reads-beating-peer")?;
    let link = GrpcHubLink::new(peer.clone(), "127.0.0.1:1".into());
    let deadline = Duration::from_secs(10);
    let grant = link
        .connect(
            &endpoint,
            ConnectRequest {
                peer_id: peer.clone(),
                node_type: NodeType::Peer,
                address: String::new(),
                last_known_version: 0,
                last_known_digest: None,
            },
            deadline,
        )
        .await?;
    let clock = TokioClock::new();
    let sequence = AtomicU64::new(0);
    let beat = || async {
        let request = HeartbeatRequest {
            peer_id: peer.clone(),
            session_id: grant.session_id.clone(),
            sequence: sequence.fetch_add(1, Ordering::SeqCst),
            last_sync_version: 0,
            last_sync_digest: None,
            sent_at: clock.now(),
        };
        link.heartbeat(&endpoint, request, deadline).await?;
        anyhow::Ok(())
    };
    let mut idle_rounds = Vec::new();
    let mut busy_rounds = Vec::new();
    let mut burst_lengths = Vec::new();
    let mut published = 0;
    for _ in 0..rounds {
        let idle = time_calls(Duration::from_secs(2), &beat).await?;
        idle_rounds.push((idle.median(), idle.quantile(0.99), idle.len()));
        let api = hub.api().clone();
        let first = published;
        let burst = tokio::spawn(async move {
            let started = Instant::now();
            for n in first..first + PUBLICATIONS {
                api.publish_blueprint(PublishRequest {
                    blueprint_id: BlueprintId::parse(&format!("bench-{n:06}"))?,
                    document: format!(r#"{{"id":"bench-{n:06}","title":"Blueprint {n}"}}"#).into(),
                    published_by: "bench".into(),
                    metadata: BTreeMap::new(),
                })
                .await?;
            }
            anyhow::Ok(started.elapsed())
        });
        published += PUBLICATIONS;
        let mut busy = Samples::default();
        while !burst.is_finished() {
            let before = Instant::now();
            beat().await?;
            busy.push_if(true, before.elapsed());
        }
        burst_lengths.push(burst.await??);
        ensure!(busy.len() > 10, "too few heartbeats during the burst");
        busy_rounds.push((busy.median(), busy.quantile(0.99), busy.len()));
    }
    hub.shutdown().await;
    let pick = |rounds: &[(Duration, Duration, usize)], index: usize| -> Duration {
        median(
            &rounds
                .iter()
                .map(|r| if index == 0 { r.0 } else { r.1 })
                .collect::<Vec<_>>(),
        )
    };
    report.table(
        format!(
            "Heartbeats at a hub (embedded store), one after another over gRPC (`GrpcHubLink`), idle vs during a burst of {PUBLICATIONS} publications sent back to back (median over {rounds} rounds; a burst takes {:.2} s)",
            median(&burst_lengths).as_secs_f64()
        ),
        "| load | heartbeats per round | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    );
    for (load, rounds) in [("idle", &idle_rounds), ("busy", &busy_rounds)] {
        let count = median_count(&rounds.iter().map(|r| r.2).collect::<Vec<_>>());
        report.line(format!(
            "| {load} | {count} | {:.2} | {:.2} |",
            support::ms(pick(rounds, 0)),
            support::ms(pick(rounds, 1)),
        ));
    }
    Ok(())
}

/// A `redis-server` on a free loopback port without persistence, killed when dropped.
struct RedisServer {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("run redis-server (scripts/install-test-deps installs it)")?;
            for _ in 0..500 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(Self {
                        port,
                        child,
                        _dir: dir,
                    });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        bail!("could not start redis-server")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
