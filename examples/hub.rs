//! The hub role as a process: the authoritative system register, its gRPC server for peers and
//! its REST API for publishers.
//!
//! ```text
//! cargo run --example hub -- --node-id n0 --grpc 127.0.0.1:50051 --http 127.0.0.1:8090 \
//!     --data-dir /tmp/n0 --admin-token secret
//! cargo run --example hub -- --node-id n1 --grpc 127.0.0.1:50052 --http 127.0.0.1:8091 \
//!     --redis redis://127.0.0.1:6379 --admin-token secret     # hubs sharing one register
//! cargo run --example hub -- --node-id n2 --grpc 127.0.0.1:50053 --http 127.0.0.1:8092 \
//!     --mongodb mongodb://127.0.0.1:27017/?replicaSet=rs0 --admin-token secret   # or on MongoDB
//! ```
//! Prints `herald hub ready node=<id> http=<addr> grpc=<addr>` on stdout once it serves.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herald::{RawHubConfig, RawNodeConfig};

/// herald hub role: the system register, served to peers over gRPC.
#[derive(Parser)]
#[command(group = clap::ArgGroup::new("store").required(true).args(["redis", "mongodb", "data_dir"]))]
struct Args {
    #[command(flatten)]
    log: support::LogArgs,
    #[command(flatten)]
    cluster: support::ClusterArgs,
    /// This hub's id (≤ 64 of [A-Za-z0-9_-]).
    #[arg(long)]
    node_id: String,
    /// gRPC address peers connect to (port 0 picks a free port).
    #[arg(long)]
    grpc: String,
    /// REST API address (port 0 picks a free port).
    #[arg(long)]
    http: String,
    /// Redis holding the system register shared by several hubs (run it with AOF).
    #[arg(long)]
    redis: Option<String>,
    /// Directory of the embedded system register (one hub).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// MongoDB (a replica set) holding this node's state instead of the embedded store, e.g.
    /// `mongodb://db-1:27017,db-2:27017/?replicaSet=rs0`.
    #[arg(long)]
    mongodb: Option<String>,
    /// Database of herald's collections on --mongodb (herald).
    #[arg(long, requires = "mongodb")]
    mongodb_db: Option<String>,
    /// Bearer token for publishing and deprecating.
    #[arg(long, env = "HERALD_ADMIN_TOKEN")]
    admin_token: String,
    /// Heartbeat period told to peers.
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// A peer silent for this long loses its session.
    #[arg(long)]
    session_expiry_ms: Option<u64>,
    /// How often to check that a shared store still holds the register (and write back what
    /// it lost).
    #[arg(long)]
    store_check_interval_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    support::init_tracing("info", args.log.log_format);
    let raw = RawNodeConfig {
        node_id: args.node_id,
        data_dir: args.data_dir,
        mongodb: support::mongodb(args.mongodb, args.mongodb_db),
        http_addr: Some(args.http),
        admin_token: Some(args.admin_token),
        hub: Some(RawHubConfig {
            grpc_addr: args.grpc,
            redis_url: args.redis,
            heartbeat_interval_ms: args.heartbeat_interval_ms,
            session_expiry_ms: args.session_expiry_ms,
            store_check_interval_ms: args.store_check_interval_ms,
            ..RawHubConfig::default()
        }),
        cluster: args.cluster.config(),
        ..RawNodeConfig::default()
    };
    support::serve("hub", raw).await
}
