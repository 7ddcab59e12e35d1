//! Benchmarks of the hub and the hub connection over real gRPC on loopback (issue #3), each
//! beside a floor measured in the same run: what plain tonic needs for the same messages.
//!
//! ```text
//! cargo bench --bench hub                          # 31 iterations after 3 warm-ups; 8 failovers each
//! cargo bench --bench hub -- --iterations 51 --failover-runs 12
//! cargo bench --bench hub -- --help
//! ```
//!
//! What is measured, results as Markdown tables on stdout (progress on stderr):
//! 1. **Full sync**: a hub node (hub role, authority on `InMemoryBlueprintStore`, gRPC on
//!    127.0.0.1) holding 10,000 blueprints of 2,048-byte JSON published through
//!    `NodeApi::publish_blueprint`; `GrpcHubLink::sync(Full)` from a connected session until
//!    the `Vec` of 10,001 entries (the seeded blueprint too) is returned. Floor: a second tonic
//!    server implementing the generated `SystemRegisterSync`, whose `FullSync` streams the same
//!    10,001 wire entries (built before the call: no authority, no conversion), read by the raw
//!    generated client into a `Vec`. Beside it: herald's server read by the raw client (the
//!    server side alone), the floor plus the link's per-entry validation (`entry_from_wire`,
//!    which checks the SHA-256), the same validation on a second task (a what-if), that
//!    validation and the SHA-256 alone, in memory, and end to end: a new peer node until its
//!    replica holds every blueprint, over gRPC and over a link whose sync answers at once (the
//!    replica's own work).
//! 2. **Incremental sync** of 10 new entries: `sync(After(v))` after 10 more publications;
//!    floor: a 10-message raw stream of the same size.
//! 3. **Push to 1,000 subscribers**: 1,000 sessions, each subscribed through
//!    `HubLink::subscribe`; one publication; delivery latency at each subscriber, from the start
//!    of the `publish_blueprint` call to the notification coming out of its stream. Twice: all
//!    1,000 streams on one HTTP/2 connection (one `GrpcHubLink`), then one connection per
//!    subscriber (1,000 links, as 1,000 peer processes would have). Floor: 1,000 raw streams
//!    of the floor server fed by one `tokio::sync::broadcast` send.
//! 4. **Failover**: hubs n0 and n1 sharing one `InMemoryBlueprintStore` (as two hubs share
//!    Redis), a peer node with a 1 s heartbeat, a 1 s heartbeat deadline and a limit of 2
//!    misses; n0 goes away, until the peer's `connection_status()` names n1. Two ways to go
//!    away: `NodeHandle::shutdown` (the port then refuses connections), and a hub that hangs (a
//!    TCP proxy in front of n0 stops forwarding; connections stay open), the latter also with a
//!    register of 10,001 blueprints in the peer's replica. The stop falls at phases spread
//!    evenly over the heartbeat interval.
//!
//! Herald and floor runs are interleaved (the order rotates every iteration) so that the noise
//! of a shared machine hits both. Run through `cargo test --benches` (no `--bench` argument), it
//! measures nothing and exits. The statistics, the tables and the command line are shared with
//! `benches/pool.rs` (`benches/support/mod.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use herald::parts::actors::TokioClock;
use herald::parts::actors::ports::{Clock, HubLink, HubLinkError, SyncedEntries};
use herald::parts::actors::testing::{
    InMemoryAdStore, InMemoryBlueprintStore, InMemoryReplicaStore,
};
use herald::parts::messages::{
    BlueprintId, BlueprintNotification, ConnectRequest, ConnectionState, EntryKind, HeartbeatAck,
    HeartbeatRequest, HubEndpoint, NodeType, PublishRequest, RegisterDigest, SessionGrant,
    SessionId, SyncQuery, SyncScope, SystemRegisterEntry,
};
use herald::parts::runtime::grpc::GrpcHubLink;
use herald::parts::runtime::grpc::proto::convert;
use herald::parts::runtime::grpc::proto::tonic::transport::server::TcpIncoming;
use herald::parts::runtime::grpc::proto::tonic::transport::{Channel, Endpoint, Server};
use herald::parts::runtime::grpc::proto::tonic::{Request, Response, Status};
use herald::parts::runtime::grpc::proto::v1;
use herald::parts::runtime::grpc::proto::v1::system_register_sync_client::SystemRegisterSyncClient;
use herald::parts::runtime::grpc::proto::v1::system_register_sync_server::{
    SystemRegisterSync, SystemRegisterSyncServer,
};
use herald::{
    Node, NodeHandle, NodeId, RawHubConfig, RawHubEndpoint, RawNodeConfig, RawPeerConfig,
    StoreOverrides,
};

#[path = "support/mod.rs"]
mod support;
use support::{Report, Samples, WARMUP_ITERATIONS, cell, ms, ratio, rotated};

/// Blueprints published before the full sync (the seeded one comes on top).
const BLUEPRINTS: usize = 10_000;
/// Entries of a full sync: the blueprints and the seeded `register-creation-v1`.
const FULL_ENTRIES: usize = BLUEPRINTS + 1;
/// Size of every benchmark blueprint's JSON document.
const DOCUMENT_BYTES: usize = 2_048;
/// New entries fetched by each incremental sync.
const INCREMENT: usize = 10;
const SUBSCRIBERS: usize = 1_000;
const DEFAULT_FAILOVER_RUNS: usize = 8;
/// Publications (setup), connects and subscriptions in flight at once.
const SETUP_CONCURRENCY: usize = 64;
/// Deadline of every call to a hub (the link's default).
const DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for all subscribers to receive one notification.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two publications of the push measurement, so that they do not overlap.
const PUSH_PAUSE: Duration = Duration::from_millis(20);
/// The failover settings of the issue: heartbeat period and deadline, and misses before
/// failing over.
const HEARTBEAT_MS: u64 = 1_000;
const MISSED_HEARTBEATS: u32 = 2;
/// Time on n0 before its stop, beyond the phase: the replica's first sync and subscription.
const SETTLE_BEFORE_STOP: Duration = Duration::from_millis(300);
/// Poll period of the replica's status while it replicates (that row's resolution).
const REPLICA_POLL: Duration = Duration::from_millis(1);
/// Pause after a peer node is shut down, before the next measurement.
const SETTLE: Duration = Duration::from_millis(10);
/// Poll period of `connection_status()` (the failover's resolution).
const POLL_PAUSE: Duration = Duration::from_millis(2);
const FAILOVER_DEADLINE: Duration = Duration::from_secs(20);
/// Entries per batch handed to the validating task of the pipelined what-if.
const VALIDATION_BATCH: usize = 256;
/// Largest message the clients accept: `GrpcHubLink`'s limit (largest document + 64 KiB).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024;
/// `GrpcHubLink`'s channel settings, used for the raw clients too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "\
Benchmarks of the hub and the hub connection over gRPC (issue #3); see BENCHMARKS.md.

usage: cargo bench --bench hub [-- --iterations N] [--failover-runs N]

  --iterations N      measured iterations of the syncs and publications (default 31; 3 warm-ups
                      come first)
  --failover-runs N   failovers measured per way of stopping the hub (default 8)
  --help              this text";

fn main() -> ExitCode {
    match measure() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hub bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn measure() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the tokio runtime")?;
    // On a worker thread, like the actors that call the link: `block_on` would run it on the
    // main thread, a third thread beside the runtime's workers.
    runtime.block_on(async {
        tokio::spawn(run(options))
            .await
            .context("the bench panicked")?
    })
}

struct Options {
    iterations: usize,
    failover_runs: usize,
}

impl Options {
    /// `None` when there is nothing to measure (help, or run as a test).
    fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>> {
        let mut failover_runs = DEFAULT_FAILOVER_RUNS;
        let iterations = support::parse_args("hub", USAGE, args, |flag, args| {
            if flag != "--failover-runs" {
                return Ok(false);
            }
            failover_runs = support::count_argument(flag, args.next(), 1)?;
            Ok(true)
        })?;
        Ok(iterations.map(|iterations| Options {
            iterations,
            failover_runs,
        }))
    }
}

async fn run(options: Options) -> Result<()> {
    eprintln!(
        "{BLUEPRINTS} blueprints of {DOCUMENT_BYTES} bytes; {} iterations after {WARMUP_ITERATIONS} warm-ups; {} failovers per way",
        options.iterations, options.failover_runs
    );
    let started = Instant::now();
    let mut report = Report::default();
    let mut bench = Bench::start(options.iterations).await?;
    bench.full_sync(&mut report).await?;
    bench.incremental_sync(&mut report).await?;
    bench.push(&mut report, Layout::SharedConnection).await?;
    bench
        .push(&mut report, Layout::ConnectionPerSubscriber)
        .await?;
    bench.stop().await;
    eprintln!("  ({:.1} s so far)", started.elapsed().as_secs_f64());
    failover(options.failover_runs, &mut report).await?;
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "\n### Results ({BLUEPRINTS} blueprints of {DOCUMENT_BYTES} bytes, {} iterations, {} failovers per way)\n",
        options.iterations, options.failover_runs
    );
    report.print();
    Ok(())
}

/// The hub node, the floor server and the clients shared by measurements 1 to 3.
struct Bench {
    iterations: usize,
    clock: TokioClock,
    hub: NodeHandle,
    hub_endpoint: HubEndpoint,
    /// The peer side: a link with one session.
    link: GrpcHubLink,
    peer_id: NodeId,
    grant: SessionGrant,
    /// The generated client on its own connection to herald's server.
    raw_hub: SystemRegisterSyncClient<Channel>,
    floor: FloorServer,
    /// The generated client on its own connection to the floor server.
    raw_floor: SystemRegisterSyncClient<Channel>,
    /// The full sync's entries as herald's server sends them (filled by the first full sync).
    wire_entries: Vec<v1::SystemRegisterEntry>,
    /// Blueprints published so far by the bench (names the next one).
    published: usize,
    /// The hub's version after the bench's last publication.
    version: u64,
    /// How long the setup's publications took.
    publications: Duration,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn start(iterations: usize) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-hub-")
            .tempdir()
            .context("create a data directory")?;
        let hub = start_hub(
            "bench-hub",
            dir.path(),
            Arc::new(InMemoryBlueprintStore::single_writer()),
        )
        .await?;
        let hub_endpoint = endpoint_of("bench-hub", &hub)?;

        eprintln!("publishing {BLUEPRINTS} blueprints ...");
        let started = Instant::now();
        let api = hub.api().clone();
        let versions: Vec<u64> = stream::iter(0..BLUEPRINTS)
            .map(|n| {
                let api = api.clone();
                async move {
                    let entry = api.publish_blueprint(publish_request(n)?).await?;
                    Ok::<_, anyhow::Error>(entry.version)
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        let elapsed = started.elapsed();
        let version = versions.into_iter().max().unwrap_or_default();
        eprintln!(
            "  {BLUEPRINTS} publications in {:.0} ms ({:.0} per second, {SETUP_CONCURRENCY} in flight); version {version}",
            ms(elapsed),
            BLUEPRINTS as f64 / elapsed.as_secs_f64()
        );

        let peer_id = NodeId::parse("bench-peer")?;
        let link = GrpcHubLink::new(peer_id.clone(), "bench-peer.local:7000".into());
        let grant = link
            .connect(&hub_endpoint, connect_request(&peer_id), DEADLINE)
            .await?;
        let raw_hub = raw_client(&hub_endpoint.url).await?;
        let floor = FloorServer::start().await?;
        let raw_floor = raw_client(&floor.url()).await?;
        Ok(Self {
            iterations,
            clock: TokioClock::new(),
            hub,
            hub_endpoint,
            link,
            peer_id,
            grant,
            raw_hub,
            floor,
            raw_floor,
            wire_entries: Vec::new(),
            published: BLUEPRINTS,
            version,
            publications: elapsed,
            dir,
        })
    }

    async fn stop(self) {
        self.floor.stop().await;
        self.hub.shutdown().await;
    }

    fn sync_request(&self, scope: SyncScope) -> SyncQuery {
        SyncQuery {
            peer_id: self.peer_id.clone(),
            session_id: self.grant.session_id.clone(),
            scope,
            history_id: Some(self.grant.history_id.clone()),
            digest: None,
        }
    }

    /// The wire request the link sends for `scope`, for the raw client.
    fn wire_sync_request(&self, scope: SyncScope) -> Request<v1::SyncRequest> {
        let wire = convert::system_register::sync_request_to_wire(
            &self.sync_request(scope),
            self.clock.now(),
        );
        timed(wire)
    }

    /// The link's sync, timed; checks the number of entries.
    async fn herald_sync(&self, scope: SyncScope, expected: usize) -> Result<Duration> {
        let request = self.sync_request(scope.clone());
        let started = Instant::now();
        let entries = self
            .link
            .sync(&self.hub_endpoint, request, DEADLINE)
            .await?
            .entries;
        let elapsed = started.elapsed();
        ensure!(
            entries.len() == expected,
            "{scope:?}: {} entries, expected {expected}",
            entries.len()
        );
        Ok(elapsed)
    }

    // ---- 1. full sync ----

    async fn full_sync(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("full sync of {FULL_ENTRIES} entries ...");
        // The entries as herald's server sends them: the floor streams these.
        let entries = self
            .link
            .sync(
                &self.hub_endpoint,
                self.sync_request(SyncScope::Full),
                DEADLINE,
            )
            .await?
            .entries;
        ensure!(entries.len() == FULL_ENTRIES, "{} entries", entries.len());
        // With a digest of the same size as the server's, so the floor streams the same bytes.
        self.wire_entries = entries
            .iter()
            .map(|entry| {
                convert::system_register::entry_to_wire(
                    entry,
                    &self.grant.history_id,
                    Some(RegisterDigest::EMPTY),
                )
            })
            .collect();
        let wire_bytes: usize = self.wire_entries.iter().map(|e| e.encoded_len()).sum();
        let document_bytes: usize = entries.iter().map(|e| e.document.len()).sum();
        report.note(format!(
            "Setup: {BLUEPRINTS} `publish_blueprint` calls ({SETUP_CONCURRENCY} in flight, in-memory store) took {:.0} ms, {:.0} per second.",
            ms(self.publications),
            BLUEPRINTS as f64 / self.publications.as_secs_f64()
        ));
        report.note(format!(
            "Full sync: {FULL_ENTRIES} entries, {:.1} MiB of protobuf ({} bytes per entry on average, {} of them the JSON document).",
            wire_bytes as f64 / (1024.0 * 1024.0),
            wire_bytes / FULL_ENTRIES,
            document_bytes / FULL_ENTRIES
        ));

        let mut herald = Samples::default();
        let mut herald_server = Samples::default();
        let mut floor = Samples::default();
        let mut floor_validated = Samples::default();
        let mut validation = Samples::default();
        let mut checksums = Samples::default();
        let mut replicated = Samples::default();
        let mut peer_started = Samples::default();
        let mut replica_work = Samples::default();
        let mut floor_pipelined = Samples::default();
        let mut replica_stall = Samples::default();
        let mut replica_view = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(9, iteration) {
                match case {
                    0 => {
                        herald.push_if(keep, self.herald_sync(SyncScope::Full, FULL_ENTRIES).await?)
                    }
                    1 => {
                        let request = self.wire_sync_request(SyncScope::Full);
                        let mut client = self.raw_hub.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Full, request, Check::Collect).await?;
                        ensure!(count == FULL_ENTRIES, "{count} entries");
                        herald_server.push_if(keep, elapsed);
                    }
                    2 | 3 | 8 => {
                        let check = match case {
                            2 => Check::Collect,
                            3 => Check::Validate,
                            _ => Check::Pipelined,
                        };
                        self.floor.prepare(Rpc::Full, self.wire_entries.clone());
                        let request = self.wire_sync_request(SyncScope::Full);
                        let mut client = self.raw_floor.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Full, request, check).await?;
                        ensure!(count == FULL_ENTRIES, "{count} entries");
                        match check {
                            Check::Collect => floor.push_if(keep, elapsed),
                            Check::Validate => floor_validated.push_if(keep, elapsed),
                            Check::Pipelined => floor_pipelined.push_if(keep, elapsed),
                        }
                    }
                    4 => {
                        let wire = self.wire_entries.clone();
                        let started = Instant::now();
                        let mut entries = Vec::new();
                        for entry in wire {
                            entries.push(convert::system_register::entry_from_wire(entry)?.entry);
                        }
                        validation.push_if(keep, started.elapsed());
                        ensure!(entries.len() == FULL_ENTRIES);
                    }
                    5 => {
                        let replication = self.replicate(iteration, None).await?;
                        peer_started.push_if(keep, replication.node_started);
                        replicated.push_if(keep, replication.replicated);
                        replica_stall.push_if(keep, replication.longest_status_call);
                        replica_view.push_if(keep, replication.view_call);
                    }
                    6 => {
                        let link = PreparedSyncLink::shared(entries.clone())?;
                        let replication = self.replicate(iteration, Some(link)).await?;
                        replica_work.push_if(keep, replication.replicated);
                    }
                    _ => {
                        let started = Instant::now();
                        let mut matching = 0;
                        for entry in &self.wire_entries {
                            let checksum =
                                SystemRegisterEntry::checksum_of(&entry.blueprint_document);
                            matching += usize::from(checksum == entry.checksum);
                        }
                        checksums.push_if(keep, started.elapsed());
                        ensure!(matching == FULL_ENTRIES, "{matching} checksums match");
                    }
                }
            }
        }
        report.section(format!(
            "Full sync of {FULL_ENTRIES} entries of ~2 KB over loopback (until the `Vec` is returned)"
        ));
        report.row(
            "floor: raw tonic `FullSync` stream of the same 10,001 pre-built entries → raw client, `Vec`",
            &floor,
            None,
        );
        report.row(
            "herald: `GrpcHubLink::sync(Full)` against the hub node",
            &herald,
            Some(&floor),
        );
        report.row(
            "part: herald's hub server → raw client (no validation on the client)",
            &herald_server,
            Some(&floor),
        );
        report.row(
            "part: floor + the link's validation (`entry_from_wire` per entry: formats and sizes; the replica verifies the checksums)",
            &floor_validated,
            Some(&floor),
        );
        report.row(
            "what-if: floor + the same validation on a second task, 256 entries at a time (pipelined with the reading)",
            &floor_pipelined,
            Some(&floor),
        );
        report.row(
            "end to end: a new peer node (`Node::start`, in-memory stores) until its replica holds the 10,001 blueprints",
            &replicated,
            None,
        );
        report.row(
            "part: `Node::start` of that peer (the connection dials after)",
            &peer_started,
            None,
        );
        report.row(
            "part: the same, its link's full sync answering at once with the 10,001 entries (start, connect, the replica's own work)",
            &replica_work,
            None,
        );
        report.row(
            "part: the longest `replica_status()` call while it replicates (the replica actor busy with the entries)",
            &replica_stall,
            None,
        );
        report.row(
            "part: one `system_register()` call on that peer after (the replica's `View`)",
            &replica_view,
            None,
        );
        report.row(
            "part: `entry_from_wire` of the 10,001 entries alone, in memory",
            &validation,
            None,
        );
        report.row(
            "part: SHA-256 of the 10,001 documents alone, in memory",
            &checksums,
            None,
        );
        Ok(())
    }

    /// Starts a new peer node on the hub (over `link` when given, else gRPC) and waits until
    /// its replica holds every blueprint, asking its status every `REPLICA_POLL`.
    async fn replicate(
        &self,
        iteration: usize,
        link: Option<Arc<dyn HubLink>>,
    ) -> Result<Replication> {
        let hubs = [("bench-hub", self.hub_endpoint.url.as_str())];
        let id = format!("replica-{iteration}");
        let started = Instant::now();
        let peer = start_peer(&id, self.dir.path(), &hubs, link).await?;
        let node_started = started.elapsed();
        let mut longest_status_call = Duration::ZERO;
        loop {
            let asked = Instant::now();
            let status = peer.replica_status().await?;
            longest_status_call = longest_status_call.max(asked.elapsed());
            if status.total_blueprints >= FULL_ENTRIES {
                break;
            }
            ensure!(
                started.elapsed() < DELIVERY_DEADLINE,
                "the replica holds {} blueprints after {DELIVERY_DEADLINE:?}: {status:?}",
                status.total_blueprints
            );
            tokio::time::sleep(REPLICA_POLL).await;
        }
        let replicated = started.elapsed();
        let asked = Instant::now();
        let view = peer.system_register().await?;
        let view_call = asked.elapsed();
        ensure!(view.total_blueprints == FULL_ENTRIES, "{view:?}");
        peer.shutdown().await;
        // Freeing the peer's replica does not overlap the next measurement.
        tokio::time::sleep(SETTLE).await;
        Ok(Replication {
            node_started,
            replicated,
            longest_status_call,
            view_call,
        })
    }

    // ---- 2. incremental sync ----

    async fn incremental_sync(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("incremental sync of {INCREMENT} new entries ...");
        let batch: Vec<v1::SystemRegisterEntry> = self.wire_entries[1..=INCREMENT].to_vec();
        let mut herald = Samples::default();
        let mut herald_server = Samples::default();
        let mut floor = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            let before = self.version;
            for _ in 0..INCREMENT {
                self.publish_next().await?;
            }
            ensure!(self.version == before + INCREMENT as u64);
            for case in rotated(3, iteration) {
                match case {
                    0 => herald.push_if(
                        keep,
                        self.herald_sync(SyncScope::After(before), INCREMENT)
                            .await?,
                    ),
                    1 => {
                        let request = self.wire_sync_request(SyncScope::After(before));
                        let mut client = self.raw_hub.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Incremental, request, Check::Collect)
                                .await?;
                        ensure!(count == INCREMENT, "{count} entries");
                        herald_server.push_if(keep, elapsed);
                    }
                    _ => {
                        self.floor.prepare(Rpc::Incremental, batch.clone());
                        let request = self.wire_sync_request(SyncScope::After(before));
                        let mut client = self.raw_floor.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Incremental, request, Check::Collect)
                                .await?;
                        ensure!(count == INCREMENT, "{count} entries");
                        floor.push_if(keep, elapsed);
                    }
                }
            }
        }
        report.section(format!(
            "Incremental sync of {INCREMENT} new entries of ~2 KB (until the `Vec` is returned)"
        ));
        report.row(
            "floor: raw tonic `IncrementalSync` stream of 10 pre-built entries → raw client",
            &floor,
            None,
        );
        report.row(
            "herald: `GrpcHubLink::sync(After(v))` against the hub node",
            &herald,
            Some(&floor),
        );
        report.row(
            "part: herald's hub server → raw client",
            &herald_server,
            Some(&floor),
        );
        Ok(())
    }

    /// Publishes the next benchmark blueprint; returns its entry's version.
    async fn publish_next(&mut self) -> Result<u64> {
        let request = publish_request(self.published)?;
        self.published += 1;
        let entry = self.hub.publish_blueprint(request).await?;
        self.version = entry.version;
        Ok(entry.version)
    }

    // ---- 3. push ----

    async fn push(&mut self, report: &mut Report, layout: Layout) -> Result<()> {
        eprintln!(
            "push to {SUBSCRIBERS} subscribers, {} ...",
            layout.describe()
        );
        let started = Instant::now();
        let (herald_tx, mut herald_rx) = mpsc::unbounded_channel();
        let herald_subscribers = self.herald_subscribers(layout, herald_tx).await?;
        let herald_setup = started.elapsed();
        let started = Instant::now();
        let (floor_tx, mut floor_rx) = mpsc::unbounded_channel();
        let floor_subscribers = self.floor_subscribers(layout, floor_tx).await?;
        let floor_setup = started.elapsed();
        ensure!(
            self.floor.push.receiver_count() == SUBSCRIBERS,
            "{} floor subscriptions",
            self.floor.push.receiver_count()
        );
        report.note(format!(
            "Push, {}: the {SUBSCRIBERS} herald sessions connected and subscribed in {:.0} ms ({SETUP_CONCURRENCY} at a time), the {SUBSCRIBERS} floor streams opened in {:.0} ms.",
            layout.describe(),
            ms(herald_setup),
            ms(floor_setup)
        ));

        let mut herald = Samples::default();
        let mut herald_last = Samples::default();
        let mut herald_reply = Samples::default();
        let mut floor = Samples::default();
        let mut floor_last = Samples::default();
        let notification = self.floor_notification();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(2, iteration) {
                if case == 0 {
                    let request = publish_request(self.published)?;
                    self.published += 1;
                    let started = Instant::now();
                    let entry = self.hub.publish_blueprint(request).await?;
                    herald_reply.push_if(keep, started.elapsed());
                    self.version = entry.version;
                    let latencies = deliveries(&mut herald_rx, entry.version, started).await?;
                    herald_last.push_if(keep, latencies.max());
                    herald.extend_if(keep, latencies);
                } else {
                    let mut wire = notification.clone();
                    wire.version = i64::try_from(iteration + 1)?;
                    let started = Instant::now();
                    self.floor
                        .push
                        .send(wire)
                        .map_err(|_| anyhow!("no floor subscriber"))?;
                    let latencies =
                        deliveries(&mut floor_rx, iteration as u64 + 1, started).await?;
                    floor_last.push_if(keep, latencies.max());
                    floor.extend_if(keep, latencies);
                }
                tokio::time::sleep(PUSH_PAUSE).await;
            }
        }

        for task in herald_subscribers.tasks.iter().chain(&floor_subscribers) {
            task.abort();
        }
        stream::iter(herald_subscribers.sessions)
            .map(|(n, peer, session)| {
                let link =
                    Arc::clone(&herald_subscribers.links[n % herald_subscribers.links.len()]);
                let hub = self.hub_endpoint.clone();
                async move { link.disconnect(&hub, &peer, &session).await }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        // The floor's streams end as the server reads the resets of the aborted clients.
        let started = Instant::now();
        while self.floor.push.receiver_count() > 0 {
            ensure!(
                started.elapsed() < DELIVERY_DEADLINE,
                "{} floor subscriptions still open",
                self.floor.push.receiver_count()
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }

        report.latency_section(format!(
            "Push to {SUBSCRIBERS} subscribers, {}: delivery latency of every notification (goal: p99 < 100 ms)",
            layout.describe()
        ));
        report.latency_row(
            "floor: one `broadcast` send → 1,000 raw tonic streams → raw clients",
            &floor,
            None,
        );
        report.latency_row(
            "herald: `publish_blueprint` call → 1,000 `HubLink::subscribe` streams",
            &herald,
            Some(&floor),
        );
        report.section(format!(
            "Push to {SUBSCRIBERS} subscribers, {}: per publication",
            layout.describe()
        ));
        report.row(
            "floor: until the last of the 1,000 subscribers has it",
            &floor_last,
            None,
        );
        report.row(
            "herald: until the last of the 1,000 subscribers has it",
            &herald_last,
            Some(&floor_last),
        );
        report.row(
            "part: the `publish_blueprint` call (until its reply)",
            &herald_reply,
            None,
        );
        Ok(())
    }

    /// 1,000 sessions of distinct peers, each subscribed, each forwarding its notifications'
    /// versions with their arrival time.
    async fn herald_subscribers(
        &self,
        layout: Layout,
        deliveries: mpsc::UnboundedSender<(u64, Instant)>,
    ) -> Result<HeraldSubscribers> {
        let links: Vec<Arc<GrpcHubLink>> = (0..layout.connections())
            .map(|n| {
                let peer = format!("push-link-{n:04}");
                Ok(Arc::new(GrpcHubLink::new(NodeId::parse(&peer)?, peer)))
            })
            .collect::<Result<_>>()?;
        let tag = layout.tag();
        let subscribed: Vec<(usize, NodeId, _, JoinHandle<()>)> = stream::iter(0..SUBSCRIBERS)
            .map(|n| {
                let link = Arc::clone(&links[n % links.len()]);
                let hub = self.hub_endpoint.clone();
                let deliveries = deliveries.clone();
                async move {
                    let peer = NodeId::parse(&format!("push-{tag}-{n:04}"))?;
                    let grant = link.connect(&hub, connect_request(&peer), DEADLINE).await?;
                    let mut notifications = link.subscribe(&hub, &peer, &grant.session_id).await?;
                    let task = tokio::spawn(async move {
                        while let Some(notification) = notifications.next().await {
                            let at = Instant::now();
                            if deliveries.send((notification.version, at)).is_err() {
                                break;
                            }
                        }
                    });
                    Ok::<_, anyhow::Error>((n, peer, grant.session_id, task))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        let mut subscribers = HeraldSubscribers {
            links,
            sessions: Vec::with_capacity(SUBSCRIBERS),
            tasks: Vec::with_capacity(SUBSCRIBERS),
        };
        for (n, peer, session, task) in subscribed {
            subscribers.sessions.push((n, peer, session));
            subscribers.tasks.push(task);
        }
        Ok(subscribers)
    }

    /// 1,000 raw subscriptions to the floor server.
    async fn floor_subscribers(
        &self,
        layout: Layout,
        deliveries: mpsc::UnboundedSender<(u64, Instant)>,
    ) -> Result<Vec<JoinHandle<()>>> {
        let url = self.floor.url();
        let channels: Vec<Channel> = stream::iter(0..layout.connections())
            .map(|_| async { Ok::<_, anyhow::Error>(channel(&url)?.connect().await?) })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        let now = self.clock.now();
        stream::iter(0..SUBSCRIBERS)
            .map(|n| {
                let mut client =
                    SystemRegisterSyncClient::new(channels[n % channels.len()].clone());
                let deliveries = deliveries.clone();
                let request = convert::system_register::subscription_request_to_wire(
                    &self.peer_id,
                    &self.grant.session_id,
                    now,
                );
                async move {
                    let mut notifications = client
                        .subscribe_to_push_notifications(Request::new(request))
                        .await?
                        .into_inner();
                    Ok::<_, anyhow::Error>(tokio::spawn(async move {
                        while let Ok(Some(notification)) = notifications.message().await {
                            let at = Instant::now();
                            let version = u64::try_from(notification.version).unwrap_or(0);
                            if deliveries.send((version, at)).is_err() {
                                break;
                            }
                        }
                    }))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    /// A notification like the hub's (same fields and sizes) for the floor to broadcast.
    fn floor_notification(&self) -> v1::BlueprintNotification {
        let first = &self.wire_entries[1];
        convert::system_register::notification_to_wire(&BlueprintNotification {
            history_id: self.grant.history_id.clone(),
            blueprint_id: BlueprintId::seed(),
            version: 1,
            kind: EntryKind::Published,
            published_at: self.clock.now(),
            published_by: first.published_by.clone(),
            checksum: first.checksum.clone(),
            document_bytes: first.blueprint_document.len(),
            sequence: 1,
        })
    }
}

/// How a new peer node replicated the system register.
struct Replication {
    /// `Node::start` returned (the connection dials after).
    node_started: Duration,
    /// The replica holds every blueprint.
    replicated: Duration,
    /// The longest `replica_status()` call meanwhile: how long the replica actor was busy.
    longest_status_call: Duration,
    /// One `system_register()` call after (the replica's `View`).
    view_call: Duration,
}

/// How the 1,000 subscribers reach the hub.
#[derive(Clone, Copy)]
enum Layout {
    /// One `GrpcHubLink`: one HTTP/2 connection carries the 1,000 streams.
    SharedConnection,
    /// One `GrpcHubLink` per subscriber, as 1,000 peer processes would have.
    ConnectionPerSubscriber,
}

impl Layout {
    fn connections(self) -> usize {
        match self {
            Layout::SharedConnection => 1,
            Layout::ConnectionPerSubscriber => SUBSCRIBERS,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Layout::SharedConnection => "shared",
            Layout::ConnectionPerSubscriber => "own",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Layout::SharedConnection => "all streams on one HTTP/2 connection",
            Layout::ConnectionPerSubscriber => "one connection per subscriber",
        }
    }
}

struct HeraldSubscribers {
    links: Vec<Arc<GrpcHubLink>>,
    /// Subscriber number (its link is `links[n % links.len()]`), peer and session.
    sessions: Vec<(usize, NodeId, SessionId)>,
    tasks: Vec<JoinHandle<()>>,
}

/// The delivery latency at each of the 1,000 subscribers of notification `key`, counted from
/// `started`.
async fn deliveries(
    received: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    key: u64,
    started: Instant,
) -> Result<Samples> {
    let mut latencies = Samples::default();
    let deadline = started + DELIVERY_DEADLINE;
    while latencies.len() < SUBSCRIBERS {
        let (version, at) = tokio::time::timeout_at(deadline, received.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "only {} of {SUBSCRIBERS} subscribers received version {key} within {DELIVERY_DEADLINE:?}",
                    latencies.len()
                )
            })?
            .context("every subscriber is gone")?;
        ensure!(
            version == key,
            "a subscriber received version {version} while {key} was expected"
        );
        latencies.push_if(true, at.duration_since(started));
    }
    Ok(latencies)
}

// ---- 4. failover ----

async fn failover(runs: usize, report: &mut Report) -> Result<()> {
    eprintln!("failover, {runs} runs per way of stopping the hub ...");
    let dir = tempfile::Builder::new()
        .prefix("herald-bench-failover-")
        .tempdir()
        .context("create a data directory")?;
    // Each register is shared by its n0 and n1, with a watch, like the Redis store two hubs
    // share: one holding the seeded blueprint only, one holding 10,001 blueprints.
    let small = FailoverHubs::start(dir.path().join("small"), 0).await?;
    let large = FailoverHubs::start(dir.path().join("large"), BLUEPRINTS).await?;
    let mut stopped = Samples::default();
    let mut shutdowns = Samples::default();
    let mut hung = Samples::default();
    let mut hung_large = Samples::default();
    let interval = Duration::from_millis(HEARTBEAT_MS);
    for run in 0..runs {
        // The stop falls at phases spread evenly over the heartbeat interval.
        let phase = interval.mul_f64(run as f64 / runs as f64);
        for case in rotated(3, run) {
            let started = Instant::now();
            let (way, elapsed) = match case {
                0 => {
                    let (elapsed, shutdown) = small.on_stop(run, phase).await?;
                    stopped.push_if(true, elapsed);
                    shutdowns.push_if(true, shutdown);
                    ("stop", elapsed)
                }
                1 => {
                    let elapsed = small.on_hang(run, phase).await?;
                    hung.push_if(true, elapsed);
                    ("hang", elapsed)
                }
                _ => {
                    let elapsed = large.on_hang(run, phase).await?;
                    hung_large.push_if(true, elapsed);
                    ("hang, 10,001 blueprints", elapsed)
                }
            };
            eprintln!(
                "  {way}, phase {:.0} ms: on n1 after {:.0} ms (run with set-up and teardown: {:.0} ms)",
                ms(phase),
                ms(elapsed),
                ms(started.elapsed())
            );
        }
    }
    small.stop().await;
    large.stop().await;
    report.failover_section(format!(
        "Failover, heartbeat every {HEARTBEAT_MS} ms, deadline {HEARTBEAT_MS} ms, {MISSED_HEARTBEATS} misses (until `connection_status()` names n1; polled every {} ms)",
        POLL_PAUSE.as_millis()
    ));
    report.failover_row(
        "n0 stopped (`NodeHandle::shutdown`: its port refuses connections); register of 1 blueprint",
        &stopped,
    );
    report.failover_row(
        "part: `NodeHandle::shutdown` of n0 itself (inside the row above)",
        &shutdowns,
    );
    report.failover_row(
        "n0 hangs (a proxy in front of it stops forwarding; connections stay open); register of 1 blueprint",
        &hung,
    );
    report.failover_row(
        "n0 hangs, register (and the peer's replica) of 10,001 blueprints",
        &hung_large,
    );
    Ok(())
}

/// Hub n1, running through the whole measurement, and what a new n0 needs.
struct FailoverHubs {
    dir: std::path::PathBuf,
    n1: NodeHandle,
    n1_url: String,
    store: Arc<InMemoryBlueprintStore>,
    /// Blueprints in the register (the seeded one included): what the peer's replica holds
    /// before n0 goes away.
    blueprints: usize,
}

impl FailoverHubs {
    /// n1 on a new shared register, into which it publishes `blueprints` benchmark blueprints.
    async fn start(dir: std::path::PathBuf, blueprints: usize) -> Result<Self> {
        let store = Arc::new(InMemoryBlueprintStore::new());
        let n1 = start_hub("n1", &dir, store.clone()).await?;
        for n in 0..blueprints {
            n1.publish_blueprint(publish_request(n)?).await?;
        }
        Ok(Self {
            dir,
            n1_url: endpoint_of("n1", &n1)?.url,
            n1,
            store,
            blueprints: blueprints + 1,
        })
    }

    async fn stop(self) {
        self.n1.shutdown().await;
    }

    /// A new n0 and a new peer on it; n0 is shut down `phase` into the heartbeat interval (after
    /// `SETTLE_BEFORE_STOP`). Returns the time until the peer is on n1, and that of the
    /// shutdown itself.
    async fn on_stop(&self, run: usize, phase: Duration) -> Result<(Duration, Duration)> {
        let n0 = start_hub("n0", &self.dir, self.store.clone()).await?;
        let n0_url = endpoint_of("n0", &n0)?.url;
        let hubs = [("n0", n0_url.as_str()), ("n1", self.n1_url.as_str())];
        let peer = start_peer(&format!("failover-stop-{run}"), &self.dir, &hubs, None).await?;
        self.wait_until_replicated(&peer).await?;
        tokio::time::sleep(SETTLE_BEFORE_STOP + phase).await;
        let started = Instant::now();
        n0.shutdown().await;
        let shutdown = started.elapsed();
        wait_for_hub(&peer, "n1").await?;
        let elapsed = started.elapsed();
        peer.shutdown().await;
        Ok((elapsed, shutdown))
    }

    /// As `on_stop`, but n0 hangs instead: the proxy the peer reaches it through stops
    /// forwarding. Returns the time until the peer is on n1.
    async fn on_hang(&self, run: usize, phase: Duration) -> Result<Duration> {
        let n0 = start_hub("n0", &self.dir, self.store.clone()).await?;
        let proxy = HangingProxy::start(n0.grpc_addr().context("n0 serves gRPC")?).await?;
        let proxy_url = format!("http://{}", proxy.addr);
        let hubs = [("n0", proxy_url.as_str()), ("n1", self.n1_url.as_str())];
        let peer = start_peer(&format!("failover-hang-{run}"), &self.dir, &hubs, None).await?;
        self.wait_until_replicated(&peer).await?;
        tokio::time::sleep(SETTLE_BEFORE_STOP + phase).await;
        let started = Instant::now();
        proxy.hang();
        wait_for_hub(&peer, "n1").await?;
        let elapsed = started.elapsed();
        // The proxy goes first: while it hangs, n0's graceful HTTP/2 shutdown would wait its
        // whole stop timeout (10 s) for the silent connection.
        proxy.stop();
        peer.shutdown().await;
        n0.shutdown().await;
        Ok(elapsed)
    }

    /// Waits until the peer is on n0 and its replica holds the whole register.
    async fn wait_until_replicated(&self, peer: &NodeHandle) -> Result<()> {
        wait_for_hub(peer, "n0").await?;
        let started = Instant::now();
        while peer.replica_status().await?.total_blueprints < self.blueprints {
            ensure!(
                started.elapsed() < FAILOVER_DEADLINE,
                "the replica did not get the register's {} blueprints",
                self.blueprints
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }
        Ok(())
    }
}

async fn start_peer(
    id: &str,
    dir: &std::path::Path,
    hubs: &[(&str, &str)],
    hub_link: Option<Arc<dyn HubLink>>,
) -> Result<NodeHandle> {
    let config = RawNodeConfig {
        node_id: id.into(),
        data_dir: Some(dir.join(id)),
        peer: Some(RawPeerConfig {
            hubs: hubs
                .iter()
                .map(|(id, url)| RawHubEndpoint {
                    id: (*id).into(),
                    url: (*url).into(),
                    priority: None,
                })
                .collect(),
            heartbeat_interval_ms: Some(HEARTBEAT_MS),
            heartbeat_timeout_ms: Some(HEARTBEAT_MS),
            missed_heartbeats: Some(MISSED_HEARTBEATS),
            ..RawPeerConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()?;
    let overrides = StoreOverrides {
        ad_store: Some(Arc::new(InMemoryAdStore::new())),
        replica_store: Some(Arc::new(InMemoryReplicaStore::new())),
        hub_link,
        ..StoreOverrides::default()
    };
    Ok(Node::start_with(config, overrides).await?)
}

/// A `HubLink` whose first full sync answers at once with prepared entries; every other call
/// goes to the hub over gRPC. It shows what the peer does with a full sync besides the link.
struct PreparedSyncLink {
    grpc: GrpcHubLink,
    prepared: Mutex<Option<Vec<SystemRegisterEntry>>>,
}

impl PreparedSyncLink {
    fn shared(entries: Vec<SystemRegisterEntry>) -> Result<Arc<dyn HubLink>> {
        let peer = NodeId::parse("prepared-link")?;
        Ok(Arc::new(Self {
            grpc: GrpcHubLink::new(peer, "prepared-link.local:7000".into()),
            prepared: Mutex::new(Some(entries)),
        }))
    }
}

#[async_trait::async_trait]
impl HubLink for PreparedSyncLink {
    async fn connect(
        &self,
        hub: &HubEndpoint,
        request: ConnectRequest,
        deadline: Duration,
    ) -> Result<SessionGrant, HubLinkError> {
        self.grpc.connect(hub, request, deadline).await
    }

    async fn heartbeat(
        &self,
        hub: &HubEndpoint,
        beat: HeartbeatRequest,
        deadline: Duration,
    ) -> Result<HeartbeatAck, HubLinkError> {
        self.grpc.heartbeat(hub, beat, deadline).await
    }

    async fn sync(
        &self,
        hub: &HubEndpoint,
        request: SyncQuery,
        deadline: Duration,
    ) -> Result<SyncedEntries, HubLinkError> {
        let prepared = match request.scope {
            SyncScope::Full => self
                .prepared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(),
            SyncScope::After(_) => None,
        };
        match prepared {
            Some(entries) => Ok(SyncedEntries {
                entries,
                digest: None,
            }),
            None => self.grpc.sync(hub, request, deadline).await,
        }
    }

    async fn subscribe(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<BoxStream<'static, BlueprintNotification>, HubLinkError> {
        self.grpc.subscribe(hub, peer_id, session_id).await
    }

    async fn disconnect(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<(), HubLinkError> {
        self.grpc.disconnect(hub, peer_id, session_id).await
    }
}

/// Polls until the peer is connected to hub `id`.
async fn wait_for_hub(peer: &NodeHandle, id: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = peer.connection_status().await?;
        if status.state == ConnectionState::Connected
            && status.hub_id.as_ref().is_some_and(|hub| hub.as_str() == id)
        {
            return Ok(());
        }
        ensure!(
            started.elapsed() < FAILOVER_DEADLINE,
            "the peer is not on {id} after {FAILOVER_DEADLINE:?}: {status:?}"
        );
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// A TCP proxy in front of a hub that can play the hub hanging: once `hang` is called, bytes
/// in either direction vanish and every connection stays open (new ones are accepted too).
struct HangingProxy {
    addr: SocketAddr,
    hung: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl HangingProxy {
    async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hung = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&hung);
        let accept = tokio::spawn(async move {
            // Dropped with this task: aborting it ends every connection.
            let mut connections = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let flag = Arc::clone(&flag);
                connections.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (from_peer, to_peer) = inbound.into_split();
                    let (from_hub, to_hub) = outbound.into_split();
                    tokio::join!(
                        pipe(from_peer, to_hub, Arc::clone(&flag)),
                        pipe(from_hub, to_peer, flag)
                    );
                });
            }
        });
        Ok(Self { addr, hung, accept })
    }

    fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }

    fn stop(self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to` until the proxy hangs; then swallows everything and never closes.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, hung: Arc<AtomicBool>) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if hung.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    if hung.load(Ordering::SeqCst) {
        // A hung hub never closes its side either.
        std::future::pending::<()>().await;
    }
}

// ---- the hub, the requests, the raw clients ----

/// A hub node on a free loopback port over `store`.
async fn start_hub(
    id: &str,
    dir: &std::path::Path,
    store: Arc<InMemoryBlueprintStore>,
) -> Result<NodeHandle> {
    let config = RawNodeConfig {
        node_id: id.into(),
        data_dir: Some(dir.join(id)),
        hub: Some(RawHubConfig {
            grpc_addr: "127.0.0.1:0".into(),
            heartbeat_interval_ms: Some(HEARTBEAT_MS),
            heartbeat_timeout_ms: Some(HEARTBEAT_MS),
            // The push subscribers send no heartbeats: keep their sessions for the whole run.
            session_expiry_ms: Some(600_000),
            ..RawHubConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()?;
    let overrides = StoreOverrides {
        blueprint_store: Some(store),
        ..StoreOverrides::default()
    };
    Ok(Node::start_with(config, overrides).await?)
}

fn endpoint_of(id: &str, hub: &NodeHandle) -> Result<HubEndpoint> {
    let addr = hub.grpc_addr().context("a hub serves gRPC")?;
    Ok(HubEndpoint {
        id: NodeId::parse(id)?,
        url: format!("http://{addr}"),
        priority: 0,
    })
}

fn connect_request(peer: &NodeId) -> ConnectRequest {
    ConnectRequest {
        peer_id: peer.clone(),
        node_type: NodeType::Peer,
        address: String::new(),
        last_known_version: 0,
        last_known_digest: None,
    }
}

/// Blueprint `bench-<n>` with a 2,048-byte JSON document.
fn publish_request(n: usize) -> Result<PublishRequest> {
    Ok(PublishRequest {
        blueprint_id: BlueprintId::parse(&format!("bench-{n:06}"))?,
        document: document(n)?.into(),
        published_by: "bench-admin".into(),
        metadata: BTreeMap::new(),
    })
}

/// A workflow-like JSON document of exactly `DOCUMENT_BYTES` bytes.
fn document(n: usize) -> Result<String> {
    let mut text = format!(
        r#"{{"id":"bench-{n:06}","title":"Benchmark blueprint {n}","version":1,"participants":[{{"id":"requester","role":"initiator"}},{{"id":"approver","role":"approver"}}],"actions":["#
    );
    let closing_room = r#"],"note":""}"#.len();
    for action in 0.. {
        let sender = if action % 2 == 0 {
            "requester"
        } else {
            "approver"
        };
        let next = format!(
            r#"{{"id":{action},"title":"Step {action} of blueprint {n}","sender":"{sender}","fields":["amount","currency","reference","approvedBy"]}}"#
        );
        if text.len() + 1 + next.len() + closing_room > DOCUMENT_BYTES {
            break;
        }
        if action > 0 {
            text.push(',');
        }
        text.push_str(&next);
    }
    let padding = DOCUMENT_BYTES - text.len() - closing_room;
    text.push_str(r#"],"note":""#);
    text.push_str(&"x".repeat(padding));
    text.push_str(r#""}"#);
    ensure!(
        text.len() == DOCUMENT_BYTES,
        "document of {} bytes",
        text.len()
    );
    serde_json::from_str::<serde_json::Value>(&text).context("the bench's document is not JSON")?;
    Ok(text)
}

/// The channel settings of `GrpcHubLink`.
fn channel(url: &str) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT))
}

/// The generated client on its own, connected channel.
async fn raw_client(url: &str) -> Result<SystemRegisterSyncClient<Channel>> {
    let channel = channel(url)?
        .connect()
        .await
        .with_context(|| format!("connect to {url}"))?;
    Ok(SystemRegisterSyncClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// A request carrying its deadline, as the link sends it.
fn timed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(DEADLINE);
    request
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Full,
    Incremental,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Collect the wire entries as they come.
    Collect,
    /// Convert and validate each as the link does (`entry_from_wire`).
    Validate,
    /// The same validation on a second task, `VALIDATION_BATCH` entries at a time, while the
    /// reading goes on: what verifying in parallel would give.
    Pipelined,
}

/// One sync through the generated client, collected into a `Vec`: its time and its length.
async fn raw_sync(
    client: &mut SystemRegisterSyncClient<Channel>,
    rpc: Rpc,
    request: Request<v1::SyncRequest>,
    check: Check,
) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let response = match rpc {
        Rpc::Full => client.full_sync(request).await?,
        Rpc::Incremental => client.incremental_sync(request).await?,
    };
    let mut stream = response.into_inner();
    let count = match check {
        Check::Collect => {
            let mut entries = Vec::new();
            while let Some(entry) = stream.message().await? {
                entries.push(entry);
            }
            entries.len()
        }
        Check::Validate => {
            let mut entries = Vec::new();
            while let Some(entry) = stream.message().await? {
                entries.push(convert::system_register::entry_from_wire(entry)?.entry);
            }
            entries.len()
        }
        Check::Pipelined => {
            let (batches, mut received) = mpsc::channel::<Vec<v1::SystemRegisterEntry>>(8);
            let validator = tokio::spawn(async move {
                let mut entries = Vec::new();
                while let Some(batch) = received.recv().await {
                    for entry in batch {
                        entries.push(convert::system_register::entry_from_wire(entry)?.entry);
                    }
                }
                Ok::<_, anyhow::Error>(entries)
            });
            let mut batch = Vec::with_capacity(VALIDATION_BATCH);
            while let Some(entry) = stream.message().await? {
                batch.push(entry);
                if batch.len() == VALIDATION_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(VALIDATION_BATCH));
                    batches.send(full).await?;
                }
            }
            batches.send(batch).await?;
            drop(batches);
            validator.await??.len()
        }
    };
    Ok((started.elapsed(), count))
}

// ---- the floor: plain tonic, nothing else ----

/// A tonic server implementing the generated `SystemRegisterSync` with no authority and no
/// conversion: the syncs stream batches prepared before the call, the push streams forward a
/// broadcast.
struct FloorServer {
    addr: SocketAddr,
    prepared: Arc<Prepared>,
    push: broadcast::Sender<v1::BlueprintNotification>,
    stop: oneshot::Sender<()>,
    join: JoinHandle<()>,
}

#[derive(Default)]
struct Prepared {
    full: Mutex<Vec<Vec<v1::SystemRegisterEntry>>>,
    incremental: Mutex<Vec<Vec<v1::SystemRegisterEntry>>>,
}

#[derive(Clone)]
struct FloorSync {
    prepared: Arc<Prepared>,
    push: broadcast::Sender<v1::BlueprintNotification>,
}

impl FloorServer {
    async fn start() -> Result<Self> {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)
            .context("bind the floor server")?
            .with_nodelay(Some(true));
        let addr = incoming.local_addr()?;
        let prepared = Arc::new(Prepared::default());
        let (push, _) = broadcast::channel(16);
        let service = FloorSync {
            prepared: Arc::clone(&prepared),
            push: push.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(async move {
            let served = Server::builder()
                .add_service(SystemRegisterSyncServer::new(service))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("hub bench: the floor server failed: {err}");
            }
        });
        Ok(Self {
            addr,
            prepared,
            push,
            stop,
            join,
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The entries the next call of `rpc` streams.
    fn prepare(&self, rpc: Rpc, entries: Vec<v1::SystemRegisterEntry>) {
        let batches = match rpc {
            Rpc::Full => &self.prepared.full,
            Rpc::Incremental => &self.prepared.incremental,
        };
        batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(entries);
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let mut join = self.join;
        if tokio::time::timeout(Duration::from_secs(2), &mut join)
            .await
            .is_err()
        {
            join.abort();
        }
    }
}

type EntryStream = BoxStream<'static, Result<v1::SystemRegisterEntry, Status>>;

impl FloorSync {
    fn take(
        batches: &Mutex<Vec<Vec<v1::SystemRegisterEntry>>>,
    ) -> Result<Response<EntryStream>, Status> {
        let entries = batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .ok_or_else(|| Status::failed_precondition("no batch prepared"))?;
        Ok(Response::new(
            stream::iter(entries.into_iter().map(Ok)).boxed(),
        ))
    }
}

#[async_trait::async_trait]
impl SystemRegisterSync for FloorSync {
    type FullSyncStream = EntryStream;
    type IncrementalSyncStream = EntryStream;
    type SubscribeToPushNotificationsStream =
        BoxStream<'static, Result<v1::BlueprintNotification, Status>>;

    async fn full_sync(
        &self,
        _request: Request<v1::SyncRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        Self::take(&self.prepared.full)
    }

    async fn incremental_sync(
        &self,
        _request: Request<v1::SyncRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        Self::take(&self.prepared.incremental)
    }

    async fn subscribe_to_push_notifications(
        &self,
        _request: Request<v1::SubscriptionRequest>,
    ) -> Result<Response<Self::SubscribeToPushNotificationsStream>, Status> {
        let receiver = self.push.subscribe();
        let notifications = stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(notification) => return Some((Ok(notification), receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(notifications.boxed()))
    }

    async fn get_sync_checkpoint(
        &self,
        _request: Request<v1::CheckpointRequest>,
    ) -> Result<Response<v1::SyncCheckpoint>, Status> {
        Err(Status::unimplemented("not part of the floor"))
    }
}

// ---- the hub's own tables, beside the shared `section` / `row` ----

impl Report {
    fn latency_section(&mut self, title: String) {
        self.table(
            title,
            "| measurement | deliveries | p50 ms | p90 ms | p99 ms | max ms | ratio of p99 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        );
    }

    fn latency_row(&mut self, name: &str, samples: &Samples, floor: Option<&Samples>) {
        let p99 = samples.quantile(0.99);
        let ratio = ratio(p99, floor.map(|floor| floor.quantile(0.99)));
        self.line(format!(
            "| {name} | {} | {} | {} | {} | {} | {ratio} |",
            samples.len(),
            cell(samples.median()),
            cell(samples.quantile(0.9)),
            cell(p99),
            cell(samples.max()),
        ));
    }

    fn failover_section(&mut self, title: String) {
        self.table(
            title,
            "| measurement | runs | median ms | min ms | max ms | every run, sorted (ms) |",
            "|---|---:|---:|---:|---:|---|",
        );
    }

    fn failover_row(&mut self, name: &str, samples: &Samples) {
        let every: Vec<String> = samples
            .sorted()
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect();
        self.line(format!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {} |",
            samples.len(),
            ms(samples.median()),
            ms(samples.quantile(0.0)),
            ms(samples.max()),
            every.join(", ")
        ));
    }
}
