//! Benchmarks of the hub and the hub connection over real gRPC on loopback (issue #3), each
//! beside a floor measured in the same run: what plain tonic needs for the same messages.
//!
//! ```text
//! cargo bench --bench hub                          # 31 iterations after 3 warm-ups; 8 failovers each
//! cargo bench --bench hub -- --iterations 51 --failover-runs 12
//! cargo bench --bench hub -- --tls-only                 # measurement 5 alone
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
//! 5. **Full sync over TLS** beside plaintext (`tls.rs`): a second hub node on the same register
//!    serving gRPC over TLS and requiring the peer's bearer token; the link's and the raw
//!    client's full syncs, and a new connection's first call, each over TLS and in plaintext.
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
use herald::parts::runtime::grpc::proto::convert;
use herald::parts::runtime::grpc::proto::tonic::transport::server::TcpIncoming;
use herald::parts::runtime::grpc::proto::tonic::transport::{Channel, Endpoint, Server};
use herald::parts::runtime::grpc::proto::tonic::{Request, Response, Status};
use herald::parts::runtime::grpc::proto::v1;
use herald::parts::runtime::grpc::proto::v1::system_register_sync_client::SystemRegisterSyncClient;
use herald::parts::runtime::grpc::proto::v1::system_register_sync_server::{
    SystemRegisterSync, SystemRegisterSyncServer,
};
use herald::parts::runtime::grpc::{GrpcHubLink, MAX_MESSAGE_BYTES, hub_endpoint};
use herald::{
    Node, NodeHandle, NodeId, RawHubConfig, RawHubEndpoint, RawNodeConfig, RawPeerConfig,
    StoreOverrides,
};

#[path = "../support/mod.rs"]
mod support;

mod failover;
mod floor;
mod push;
mod report;
mod requests;
mod sync;
mod tls;

use failover::*;
use floor::*;
use push::*;
use requests::*;
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

const USAGE: &str = "\
Benchmarks of the hub and the hub connection over gRPC (issue #3); see BENCHMARKS.md.

usage: cargo bench --bench hub [-- --iterations N] [--failover-runs N] [--tls-only]

  --iterations N      measured iterations of the syncs and publications (default 31; 3 warm-ups
                      come first)
  --failover-runs N   failovers measured per way of stopping the hub (default 8)
  --tls-only          only the full sync over TLS beside plaintext (measurement 5)
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
    tls_only: bool,
}

impl Options {
    /// `None` when there is nothing to measure (help, or run as a test).
    fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>> {
        let mut failover_runs = DEFAULT_FAILOVER_RUNS;
        let mut tls_only = false;
        let iterations = support::parse_args("hub", USAGE, args, |flag, args| {
            match flag {
                "--failover-runs" => {
                    failover_runs = support::count_argument(flag, args.next(), 1)?;
                }
                "--tls-only" => tls_only = true,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(iterations.map(|iterations| Options {
            iterations,
            failover_runs,
            tls_only,
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
    if options.tls_only {
        bench.tls_full_sync(&mut report).await?;
        bench.stop().await;
        println!(
            "\n### Results ({BLUEPRINTS} blueprints of {DOCUMENT_BYTES} bytes, {} iterations, TLS only)\n",
            options.iterations
        );
        report.print();
        return Ok(());
    }
    bench.full_sync(&mut report).await?;
    bench.tls_full_sync(&mut report).await?;
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
    /// The hub's register (the TLS hub of measurement 5 serves it too).
    store: Arc<InMemoryBlueprintStore>,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn start(iterations: usize) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-hub-")
            .tempdir()
            .context("create a data directory")?;
        let store = Arc::new(InMemoryBlueprintStore::single_writer());
        let hub = start_hub("bench-hub", dir.path(), Arc::clone(&store)).await?;
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
            store,
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

    /// Publishes the next benchmark blueprint; returns its entry's version.
    async fn publish_next(&mut self) -> Result<u64> {
        let request = publish_request(self.published)?;
        self.published += 1;
        let entry = self.hub.publish_blueprint(request).await?;
        self.version = entry.version;
        Ok(entry.version)
    }
}
