//! A narrated tour of herald in one process: both roles on the embedded store.
//!
//! ```text
//! cargo run --example demo                 # about a second; prints what happens and how long it took
//! cargo run --example demo -- --keep-running   # then serves the REST API until ctrl-c
//! ```
//! It shows the bug herald fixes: in the system it replaces, a restart left *Available
//! Registers* empty although registers were public. Here the pool actor is crashed, then the
//! whole node restarted, and the public registers are served again at once.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use std::sync::Arc;

use herald::stores::RedbBlueprintStore;
use herald::{
    BlueprintId, ChildKind, ConnectionState, NewRegister, Node, NodeHandle, PublishRequest,
    RawHubConfig, RawHubEndpoint, RawNodeConfig, RawPeerConfig, RawRegisterConfig, RegisterPatch,
    StoreOverrides,
};
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
}

const TOKEN: &str = "demo-token";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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

    let http = node.http_addr().expect("demo serves HTTP");
    println!("\nTour done in {}.", ms(tour));
    if args.keep_running {
        println!("Serving until ctrl-c. Try:");
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
async fn wait_for<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let since = Instant::now();
    while check().await.is_none() {
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
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
