//! A narrated tour of herald: both roles on the embedded store in one process, hubs and a
//! peer failing over, then a cluster of three role processes on loopback.
//!
//! ```text
//! cargo run --example demo                     # a few seconds; prints what happens and how long it took
//! cargo run --example demo -- --keep-running   # then serves the REST API until ctrl-c
//! cargo run --example demo -- --no-cluster     # the in-process chapters only
//! ```
//! It shows the bug herald fixes: in the system it replaces, a restart left *Available
//! Registers* empty although registers were public. Here the pool actor is crashed, then the
//! whole node restarted, and the public registers are served again at once.
//!
//! The cluster chapter runs the role binaries (`examples/peer.rs`, `examples/register.rs`) as
//! child processes, one cluster node per process as herald requires. It finds them beside its
//! own binary (`target/<profile>/examples/`) after building them with the cargo that runs it
//! (`cargo build --example peer --example register --example hub`, the tests' harness,
//! `tests/it/support/process.rs`): run through `cargo run`, they are never stale. Run the demo
//! binary directly and it still needs cargo and this source tree for that build.

#[path = "support/mod.rs"]
mod support;

// The tests' role-process harness: builds the role binaries, starts them, reads their ready
// line, signals them, kills them when dropped. (Its unit tests are not built here.)
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/process.rs"]
mod process;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;

use herald::stores::RedbBlueprintStore;
use herald::{
    BlueprintId, ChildKind, ConnectionState, NewRegister, Node, NodeHandle, PublishRequest,
    RawClusterConfig, RawHubConfig, RawHubEndpoint, RawNodeConfig, RawPeerConfig,
    RawRegisterConfig, RegisterPatch, StoreOverrides,
};
use process::{Role, RoleProcess};
use tokio::time::Instant;

/// herald demo: both roles in one process, narrated.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    log: support::LogArgs,
    /// Data directory (a fresh temporary one by default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep serving the REST API after the tour, until ctrl-c.
    #[arg(long)]
    keep_running: bool,
    /// Skip the cluster chapter (three role processes).
    #[arg(long)]
    no_cluster: bool,
}

const TOKEN: &str = "demo-token";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::tune_allocator();
    let args = Args::parse();
    support::init_tracing("error", args.log.log_format);
    let temp = tempfile::tempdir()?;
    let data_dir = args.data_dir.unwrap_or_else(|| temp.path().to_path_buf());
    let tour = Instant::now();
    println!(
        "herald demo: register and peer roles in one process, embedded store in {}\n",
        data_dir.display()
    );

    step(1, "Start a node running both roles");
    let started = Instant::now();
    let node = start(&data_dir, true).await?;
    println!(
        "   ready in {}; REST API on http://{}",
        ms(started),
        node.http_addr().expect("demo serves HTTP")
    );

    step(
        2,
        "Create 5 public and 2 private registers (the register role pushes each change at once)",
    );
    let names = [
        "orders",
        "invoices",
        "shipments",
        "customers",
        "archive",
        "drafts",
        "scratch",
    ];
    let mut ids = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let register = node
            .create_register(NewRegister {
                register_id: None,
                name: (*name).to_owned(),
                description: Some(format!("the {name} ledger")),
                advertise: index < 5,
                latest_version: 10 * (index as u64 + 1),
                latest_docket_version: index as u64,
            })
            .await?;
        ids.push(register.register_id);
    }
    let shown = wait_for_available(&node, 5).await?;
    show_available(
        &node,
        &format!("Available Registers, {} after the last create", ms(shown)),
    )
    .await?;

    step(3, "Kill the advertisement pool actor, as a crash would");
    let crashed = Instant::now();
    node.kill_actor(ChildKind::AdvertisementPool).await?;
    loop {
        let children = node.children().await?;
        let pool = children
            .iter()
            .find(|c| c.kind == ChildKind::AdvertisementPool)
            .expect("the pool is supervised");
        if pool.running && pool.restarts == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "   the supervisor restarted it in {}; it replayed its store before answering:",
        ms(crashed)
    );
    show_available(&node, "Available Registers").await?;

    step(4, "Make \"invoices\" private and delete \"archive\"");
    node.update_register(
        ids[1].clone(),
        RegisterPatch {
            advertise: Some(false),
            ..RegisterPatch::default()
        },
    )
    .await?;
    node.delete_register(ids[4].clone()).await?;
    let shown = wait_for_available(&node, 3).await?;
    println!("   the pool followed in {}", ms(shown));

    step(
        5,
        "Stop the node; start the peer role alone (the case that showed zero registers before)",
    );
    let stopping = Instant::now();
    let report = node.shutdown().await;
    let drained = if report.killed.is_empty() {
        "every actor drained its mailbox"
    } else {
        "some actors had to be killed"
    };
    println!("   stopped in {} ({drained})", ms(stopping));
    let restarted = Instant::now();
    let peer = start(&data_dir, false).await?;
    let available = peer.available().await?;
    println!(
        "   {} registers available {} after start, reloaded from disk",
        available.len(),
        ms(restarted)
    );
    show_available(&peer, "Available Registers").await?;
    peer.shutdown().await;

    step(
        6,
        "Start both roles: the register role's start-up full sync verifies the reloaded ads",
    );
    let restarted = Instant::now();
    let node = start(&data_dir, true).await?;
    loop {
        let available = node.available().await?;
        if available.len() == 3 && available.iter().all(|a| a.verified) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("   verified {} after start", ms(restarted));
    show_available(&node, "Available Registers").await?;

    hub_tour(&data_dir).await?;
    if !args.no_cluster {
        cluster_tour().await?;
    }

    let http = node.http_addr().expect("demo serves HTTP");
    println!("\nTour done in {}.", ms(tour));
    println!("The operator's page: http://{http}/ (live while the node runs)");
    if args.keep_running {
        println!("Serving until ctrl-c. Open the page above, or try:");
        println!("   curl -N http://{http}/api/events");
        println!("   curl http://{http}/api/registers/available");
        println!("   curl http://{http}/health");
        println!(
            "   curl -X POST -H 'Authorization: Bearer {TOKEN}' -H 'Content-Type: application/json' \\"
        );
        println!(
            "        -d '{{\"name\":\"new\",\"advertise\":true}}' http://{http}/api/registers"
        );
        tokio::signal::ctrl_c().await?;
    }
    node.shutdown().await;
    Ok(())
}

/// Two hubs sharing one system register, and a peer that knows both: a publication reaching
/// the peer, a hub stopped and the failover, every hub gone and the peer isolated.
async fn hub_tour(data_dir: &std::path::Path) -> anyhow::Result<()> {
    step(
        7,
        "Start hubs n0 and n1 sharing one system register, and a peer that knows both",
    );
    let shared =
        Arc::new(RedbBlueprintStore::open(&data_dir.join("hubs/system-register.redb")).await?);
    let n0 = start_hub(data_dir, "n0", &shared).await?;
    let n1 = start_hub(data_dir, "n1", &shared).await?;
    let hubs = [("n0", n0.grpc_addr()), ("n1", n1.grpc_addr())];
    let started = Instant::now();
    let peer = start_hub_peer(data_dir, &hubs).await?;
    wait_for("the peer to connect to n0 and replicate", || async {
        let status = peer.connection_status().await.ok()?;
        let replica = peer.system_register().await.ok()?;
        (status.hub_id.as_ref().map(|id| id.as_str()) == Some("n0")
            && replica.total_blueprints == 1)
            .then_some(())
    })
    .await?;
    println!(
        "   connected to n0 and replicated the system register (the seeded blueprint) in {}",
        ms(started)
    );

    step(
        8,
        "Publish blueprint \"invoice-approval\" on n0: it reaches the peer by push",
    );
    let published = Instant::now();
    let entry = n0
        .publish_blueprint(PublishRequest {
            blueprint_id: BlueprintId::parse("invoice-approval")?,
            document: r#"{"steps":["submit","approve","pay"]}"#.into(),
            published_by: "alice".into(),
            metadata: Default::default(),
        })
        .await?;
    wait_for("the publication to reach the peer", || async {
        let replica = peer.system_register().await.ok()?;
        (replica.version == entry.version).then_some(())
    })
    .await?;
    println!(
        "   version {} on the peer {} after publishing",
        entry.version,
        ms(published)
    );

    step(
        9,
        "Stop hub n0: the peer misses two heartbeats and fails over to n1",
    );
    let stopped = Instant::now();
    n0.shutdown().await;
    wait_for("the failover to n1", || async {
        let status = peer.connection_status().await.ok()?;
        (status.hub_id.as_ref().map(|id| id.as_str()) == Some("n1")).then_some(())
    })
    .await?;
    let replica = peer.system_register().await?;
    println!(
        "   on n1 {} after n0 stopped; the replica still holds {} blueprints at version {}",
        ms(stopped),
        replica.total_blueprints,
        replica.version
    );

    step(
        10,
        "Stop hub n1 too: the peer is isolated and keeps serving its replica",
    );
    let stopped = Instant::now();
    n1.shutdown().await;
    wait_for("isolation", || async {
        let status = peer.connection_status().await.ok()?;
        (status.state == ConnectionState::Isolated).then_some(())
    })
    .await?;
    let replica = peer.system_register().await?;
    println!(
        "   isolated {} after n1 stopped; still serving {} blueprints (version {}), retrying the hubs with backoff",
        ms(stopped),
        replica.total_blueprints,
        replica.version
    );

    step(
        11,
        "Start n1 again: the peer reconnects and checks its replica in full",
    );
    let restarted = Instant::now();
    let n1 = start_hub(data_dir, "n1", &shared).await?;
    wait_for("the reconnection", || async {
        let status = peer.connection_status().await.ok()?;
        (status.state == ConnectionState::Connected).then_some(())
    })
    .await?;
    let replica_status = peer.replica_status().await?;
    println!(
        "   connected again {} after n1 started; last sync: {}",
        ms(restarted),
        replica_status.last_sync_kind.unwrap_or_default()
    );
    peer.shutdown().await;
    n1.shutdown().await;
    Ok(())
}

/// Pings every 100 ms (the tests' setting; 1 s by default), so that the tour takes seconds.
const LIVENESS_MS: u64 = 100;
const COOKIE: &str = "demo-cluster-cookie";
/// The peers gossip every 200 ms (1 s by default), so the tour does not wait.
const GOSSIP: [&str; 2] = ["--gossip-interval-ms", "200"];

/// Three role processes on loopback: a node joins through one seed and finds the others, one
/// is frozen and suspected, then woken and ready again; each step as `GET
/// /api/cluster/members` shows it.
async fn cluster_tour() -> anyhow::Result<()> {
    step(
        12,
        "Start a cluster of role processes: peer-a, then peer-b given peer-a's address as its seed",
    );
    let building = Instant::now();
    let binary = Role::Peer.binary();
    println!(
        "   role binaries built (cargo build --example peer --example register --example hub) in {}: {}",
        ms(building),
        binary
            .parent()
            .map_or_else(String::new, |dir| dir.display().to_string())
    );
    let started = Instant::now();
    let a = Member::start(Role::Peer, "peer-a", None, &GOSSIP).await?;
    let b = Member::start(Role::Peer, "peer-b", Some(a.cluster_addr()), &GOSSIP).await?;
    wait_for("peer-a and peer-b to see each other ready", || async {
        (b.sees("peer-a", "ready").await && a.sees("peer-b", "ready").await).then_some(())
    })
    .await?;
    println!(
        "   a full mesh of two {} after the first start",
        ms(started)
    );
    a.show().await;

    step(
        13,
        "Start reg-c, a register node given only peer-b's address: it learns peer-a from peer-b and feeds peer-a's pool by node id",
    );
    let joined = Instant::now();
    let c = Member::start(
        Role::Register,
        "reg-c",
        Some(b.cluster_addr()),
        &["--peer-node-id", "peer-a"],
    )
    .await?;
    wait_for("reg-c to see peer-a and peer-b ready", || async {
        (c.sees("peer-a", "ready").await
            && c.sees("peer-b", "ready").await
            && a.sees("reg-c", "ready").await)
            .then_some(())
    })
    .await?;
    println!(
        "   reg-c lists both peers ready {} after its start (it was told of peer-b only)",
        ms(joined)
    );
    c.show().await;
    let created = Instant::now();
    let reply = c
        .post_json(
            "/api/registers",
            serde_json::json!({"name": "clustered", "advertise": true}),
        )
        .await;
    anyhow::ensure!(reply.status.is_success(), "creating a register: {reply:?}");
    let id = reply.body["registerId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_for("peer-a to serve reg-c's register", || async {
        a.available_ids().await.contains(&id).then_some(())
    })
    .await?;
    println!(
        "   register \"clustered\" created on reg-c, served by peer-a {} later (pushed over the cluster, no URL)",
        ms(created)
    );

    step(
        14,
        "Gossip: peer-b lists peer-a's register; peer-b advertises it too, and both count 2 peers",
    );
    let gossiped = Instant::now();
    let counts = |entry: &serde_json::Value| {
        (
            entry["peerCount"].as_u64().unwrap_or(0),
            entry["fullReplicaPeerCount"].as_u64().unwrap_or(0),
            entry["local"].as_bool().unwrap_or(false),
        )
    };
    let on_b = wait_for("peer-b to list peer-a's register", || async {
        b.available()
            .await
            .into_iter()
            .find(|entry| entry["registerId"] == serde_json::json!(id))
    })
    .await?;
    let (peers, full, local) = counts(&on_b);
    println!(
        "   peer-b lists \"clustered\" {} after peer-a served it: peerCount {peers}, fullReplicaPeerCount {full}, local {local} (learned by gossip)",
        ms(gossiped)
    );
    let reply = b
        .post_json(
            &format!("/api/registers/{id}/advertise"),
            serde_json::json!({"isPublic": true}),
        )
        .await;
    anyhow::ensure!(
        reply.status.is_success(),
        "advertising on peer-b: {reply:?}"
    );
    let advertised = Instant::now();
    let on_a = wait_for("peer-a to count peer-b's copy", || async {
        a.available()
            .await
            .into_iter()
            .find(|entry| entry["registerId"] == serde_json::json!(id) && entry["peerCount"] == 2)
    })
    .await?;
    let (peers, full, local) = counts(&on_a);
    println!(
        "   peer-a counts peer-b's copy {} after peer-b advertised it: peerCount {peers}, fullReplicaPeerCount {full}, local {local}",
        ms(advertised)
    );

    step(
        15,
        "Freeze peer-b with SIGSTOP, as a hung process or a lost network would",
    );
    let bound = suspicion_bound()?;
    b.signal("STOP");
    let frozen = Instant::now();
    wait_for("peer-a and reg-c to suspect peer-b", || async {
        let suspected =
            |state: Option<String>| matches!(state.as_deref(), Some("suspect" | "unreachable"));
        (suspected(a.member_state("peer-b").await) && suspected(c.member_state("peer-b").await))
            .then_some(())
    })
    .await?;
    println!(
        "   suspected by peer-a and reg-c {} after the freeze (3 pings missed; the configured bound is {} ms); its connections are closed",
        ms(frozen),
        bound.as_millis()
    );
    a.show().await;

    step(
        16,
        "Wake peer-b with SIGCONT: it is dialed again and every node lists it ready",
    );
    b.signal("CONT");
    let resumed = Instant::now();
    wait_for("every node to list every other ready", || async {
        let mut all = true;
        for (observer, others) in [
            (&a, ["peer-b", "reg-c"]),
            (&b, ["peer-a", "reg-c"]),
            (&c, ["peer-a", "peer-b"]),
        ] {
            for other in others {
                all &= observer.sees(other, "ready").await;
            }
        }
        all.then_some(())
    })
    .await?;
    println!("   ready everywhere {} after SIGCONT", ms(resumed));
    b.show().await;
    println!("   (the three processes are stopped with the demo)");
    Ok(())
}

/// What `ClusterConfig::suspicion_bound` promises for the tour's settings.
fn suspicion_bound() -> anyhow::Result<Duration> {
    let config = RawNodeConfig {
        node_id: "bound".into(),
        data_dir: Some(std::env::temp_dir()),
        peer: Some(RawPeerConfig::default()),
        cluster: Some(RawClusterConfig {
            listen: "127.0.0.1:0".into(),
            cookie: Some(COOKIE.into()),
            liveness_interval_ms: Some(LIVENESS_MS),
            ..RawClusterConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()?;
    let cluster = config.cluster.context("a clustered configuration")?;
    Ok(cluster.suspicion_bound())
}

/// A role process of the cluster chapter, with its data directory.
struct Member {
    process: RoleProcess,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Member {
    type Target = RoleProcess;

    fn deref(&self) -> &RoleProcess {
        &self.process
    }
}

impl Member {
    async fn start(
        role: Role,
        id: &str,
        seed: Option<std::net::SocketAddr>,
        extra: &[&str],
    ) -> anyhow::Result<Member> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("herald-demo-{id}-"))
            .tempdir()?;
        let data_dir = dir.path().to_str().context("a UTF-8 path")?.to_owned();
        let liveness = LIVENESS_MS.to_string();
        let seed = seed.map(|addr| addr.to_string());
        let mut args = vec![
            "--node-id",
            id,
            "--data-dir",
            &data_dir,
            "--cluster-listen",
            "127.0.0.1:0",
            "--cookie",
            COOKIE,
            "--liveness-interval-ms",
            &liveness,
            "--reconnect-backoff-max-ms",
            "300",
        ];
        if let Some(seed) = &seed {
            args.extend(["--cluster-seed", seed]);
        }
        args.extend(extra);
        let process = RoleProcess::try_start(role, &args)
            .await
            .map_err(anyhow::Error::msg)?;
        println!(
            "   {} {id}: pid {}, REST http://{}, cluster {}{}",
            role.name(),
            process.pid(),
            process.http_addr(),
            process.cluster_addr(),
            seed.map_or_else(String::new, |seed| format!(", seed {seed}"))
        );
        Ok(Member { process, _dir: dir })
    }

    /// Whether this node lists `other` in `state`.
    async fn sees(&self, other: &str, state: &str) -> bool {
        self.member_state(other).await.as_deref() == Some(state)
    }

    /// Prints `GET /api/cluster/members` of this node, one line per member.
    async fn show(&self) {
        println!(
            "   GET http://{}/api/cluster/members on {}:",
            self.http_addr(),
            self.node_id()
        );
        for member in self.members().await {
            let text = |field: &str| member[field].as_str().unwrap_or("-").to_owned();
            let roles: Vec<String> = member["roles"]
                .as_array()
                .map(|roles| {
                    roles
                        .iter()
                        .filter_map(|role| role.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let heard = if member["self"] == serde_json::json!(true) {
                "this node".to_owned()
            } else {
                match member["lastSeenMs"].as_u64() {
                    Some(seen) => format!(
                        "last heard {seen} ms ago, {} ping(s) missed",
                        member["missedPings"]
                    ),
                    None => "never heard".to_owned(),
                }
            };
            println!(
                "     {:<7} {:<9} {:<16} {:<11} {heard}",
                text("nodeId"),
                roles.join(","),
                text("address"),
                text("state"),
            );
        }
    }
}

async fn start_hub(
    data_dir: &std::path::Path,
    id: &str,
    store: &Arc<RedbBlueprintStore>,
) -> anyhow::Result<NodeHandle> {
    let config = RawNodeConfig {
        node_id: id.into(),
        data_dir: Some(data_dir.join("hubs")),
        hub: Some(RawHubConfig {
            // A fixed port per hub, so that a restarted hub is found where the peer expects it.
            grpc_addr: format!("127.0.0.1:{}", hub_port(id)),
            heartbeat_interval_ms: Some(200),
            ..RawHubConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()?;
    let overrides = StoreOverrides {
        blueprint_store: Some(Arc::clone(store) as _),
        ..StoreOverrides::default()
    };
    Ok(Node::start_with(config, overrides).await?)
}

/// A free port for each hub of the tour, chosen once.
fn hub_port(id: &str) -> u16 {
    static PORTS: std::sync::OnceLock<std::collections::HashMap<String, u16>> =
        std::sync::OnceLock::new();
    let ports = PORTS.get_or_init(|| {
        ["n0", "n1"]
            .into_iter()
            .map(|hub| {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
                let port = listener.local_addr().expect("a bound address").port();
                (hub.to_owned(), port)
            })
            .collect()
    });
    ports[id]
}

async fn start_hub_peer(
    data_dir: &std::path::Path,
    hubs: &[(&str, Option<std::net::SocketAddr>)],
) -> anyhow::Result<NodeHandle> {
    let config = RawNodeConfig {
        node_id: "demo-hub-peer".into(),
        data_dir: Some(data_dir.join("hub-peer")),
        peer: Some(RawPeerConfig {
            hubs: hubs
                .iter()
                .map(|(id, addr)| RawHubEndpoint {
                    id: (*id).into(),
                    url: format!("http://{}", addr.expect("hubs serve gRPC")),
                    priority: None,
                })
                .collect(),
            heartbeat_interval_ms: Some(200),
            heartbeat_timeout_ms: Some(200),
            missed_heartbeats: Some(2),
            connect_timeout_ms: Some(500),
            isolated_backoff_max_ms: Some(300),
            ..RawPeerConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()?;
    Ok(Node::start(config).await?)
}

/// Polls `check` every 5 ms for up to 10 s.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let since = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts the demo node: the peer role, and the register role when `with_register`.
async fn start(data_dir: &std::path::Path, with_register: bool) -> anyhow::Result<NodeHandle> {
    let config = RawNodeConfig {
        node_id: "demo-node".into(),
        data_dir: Some(data_dir.to_path_buf()),
        http_addr: Some("127.0.0.1:0".into()),
        admin_token: Some(TOKEN.into()),
        peer: Some(RawPeerConfig::default()),
        register: with_register.then(RawRegisterConfig::default),
        ..RawNodeConfig::default()
    }
    .validate()?;
    Ok(Node::start(config).await?)
}

async fn wait_for_available(node: &NodeHandle, count: usize) -> anyhow::Result<Instant> {
    let since = Instant::now();
    let deadline = Duration::from_secs(10);
    while node.available().await?.len() != count {
        anyhow::ensure!(
            since.elapsed() < deadline,
            "the pool did not show {count} registers within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(since)
}

async fn show_available(node: &NodeHandle, title: &str) -> anyhow::Result<()> {
    let available = node.available().await?;
    println!("   {title} ({}):", available.len());
    for register in available {
        println!(
            "     {}  {:<10} version {:>3}  peers {}  verified {}",
            register.register_id,
            register.name.unwrap_or_default(),
            register.latest_version,
            register.peer_count,
            if register.verified {
                "yes"
            } else {
                "no (waiting for its source)"
            }
        );
    }
    Ok(())
}

fn step(number: u32, text: &str) {
    println!("\n{number}. {text}");
}

fn ms(since: Instant) -> String {
    let elapsed = since.elapsed();
    if elapsed < Duration::from_millis(10) {
        format!("{:.1} ms", elapsed.as_secs_f64() * 1_000.0)
    } else {
        format!("{} ms", elapsed.as_millis())
    }
}
