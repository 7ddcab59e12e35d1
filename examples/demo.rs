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
use herald::{
    ChildKind, NewRegister, Node, NodeHandle, RawNodeConfig, RawPeerConfig, RawRegisterConfig,
    RegisterPatch,
};
use tokio::time::Instant;

/// herald demo: both roles in one process, narrated.
#[derive(Parser)]
struct Args {
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
    support::init_tracing("error");
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
