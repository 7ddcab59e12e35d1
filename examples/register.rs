//! The register role as a process: the ground truth (embedded store, or MongoDB), its REST
//! API, and the resync driver that feeds a peer's pool, over HTTP or over the cluster.
//!
//! ```text
//! cargo run --example register -- --node-id reg-a --http 127.0.0.1:8081 --data-dir /tmp/reg-a \
//!     --peer-url http://127.0.0.1:8080 --admin-token secret [--resync-interval-secs 300]
//! cargo run --example register -- --node-id reg-a --http 127.0.0.1:8081 --data-dir /tmp/reg-a \
//!     --peer-node-id peer-a --cluster-listen 127.0.0.1:7001 --cluster-seed 127.0.0.1:7000 \
//!     --cookie s3cret --admin-token secret
//! cargo run --example register -- --node-id reg-a --http 127.0.0.1:8081 \
//!     --mongodb mongodb://127.0.0.1:27017/?replicaSet=rs0 --mongodb-db herald \
//!     --peer-url http://127.0.0.1:8080 --admin-token secret
//! ```
//! Prints `herald register ready node=<id> http=<addr>` on stdout once it serves.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herald::{RawNodeConfig, RawRegisterConfig};

/// herald register role: registers, and their advertisements pushed to a peer.
#[derive(Parser)]
#[command(group = clap::ArgGroup::new("store").required(true).args(["mongodb", "data_dir"]))]
struct Args {
    #[command(flatten)]
    log: support::LogArgs,
    #[command(flatten)]
    cluster: support::ClusterArgs,
    /// This node's id (≤ 64 of [A-Za-z0-9_-]).
    #[arg(long)]
    node_id: String,
    /// REST API address (port 0 picks a free port).
    #[arg(long)]
    http: String,
    /// Directory of the embedded register store (when not using MongoDB).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// MongoDB (a replica set) holding this node's state instead of the embedded store, e.g.
    /// `mongodb://db-1:27017,db-2:27017/?replicaSet=rs0`.
    #[arg(long)]
    mongodb: Option<String>,
    /// Database of herald's collections on --mongodb (herald).
    #[arg(long, requires = "mongodb")]
    mongodb_db: Option<String>,
    /// Base URL of the peer whose pool this node feeds (over HTTP).
    #[arg(
        long,
        required_unless_present = "peer_node_id",
        conflicts_with = "peer_node_id"
    )]
    peer_url: Option<String>,
    /// Node id of the peer whose pool this node feeds over the cluster (needs
    /// --cluster-listen; no URL needed).
    #[arg(long)]
    peer_node_id: Option<String>,
    /// Bearer token for this node's mutating endpoints (and the peer's, unless --peer-token).
    #[arg(long, env = "HERALD_ADMIN_TOKEN")]
    admin_token: String,
    /// Bearer token of the peer's API, when it differs.
    #[arg(long)]
    peer_token: Option<String>,
    /// Period of the reconciling full sync.
    #[arg(long)]
    resync_interval_secs: Option<u64>,
    /// Deadline of one push to the peer (over the cluster: including the wait for the peer to
    /// be ready).
    #[arg(long)]
    push_timeout_ms: Option<u64>,
    /// Cap of the backoff between push attempts while the peer is unreachable.
    #[arg(long)]
    resync_backoff_max_ms: Option<u64>,
    /// Close a connection whose request headers do not all arrive within this.
    #[arg(long)]
    http_header_timeout_ms: Option<u64>,
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
        http_header_timeout_ms: args.http_header_timeout_ms,
        register: Some(RawRegisterConfig {
            peer_url: args.peer_url,
            peer_node_id: args.peer_node_id,
            peer_token: args.peer_token,
            resync_interval_ms: args.resync_interval_secs.map(|secs| secs * 1_000),
            resync_backoff_max_ms: args.resync_backoff_max_ms,
            push_timeout_ms: args.push_timeout_ms,
            ..RawRegisterConfig::default()
        }),
        cluster: args.cluster.config(),
        ..RawNodeConfig::default()
    };
    support::serve("register", raw).await
}
