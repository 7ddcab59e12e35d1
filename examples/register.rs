//! The register role as a process: the ground truth (embedded store, or MongoDB), its REST
//! API, and the resync driver that feeds a peer's pool, over HTTP or over the cluster.
//!
//! ```text
//! cargo run --example register -- --node-id reg-a --http 127.0.0.1:8081 --data-dir /tmp/reg-a \
//!     --peer-url http://127.0.0.1:8080 --admin-token secret [--resync-interval-secs 300]
//! cargo run --example register -- --node-id reg-a --http 127.0.0.1:8081 --data-dir /tmp/reg-a \
//!     --peer-node-id peer-a --cluster-listen 127.0.0.1:7001 --cluster-seed 127.0.0.1:7000 \
//!     --cookie-file /etc/herald/cookie --admin-token secret
//! cargo run --example register -- --node-id reg-a --http 127.0.0.1:8081 \
//!     --mongodb mongodb://127.0.0.1:27017/?replicaSet=rs0 --mongodb-db herald \
//!     --peer-url http://127.0.0.1:8080 --admin-token secret
//! cargo run --example register -- --config examples/config/register.toml   # flags and HERALD_* override it
//! ```
//! Prints `herald register ready node=<id> http=<addr>` on stdout once it serves.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herald::{RawClientTls, RawNodeConfig, RawRegisterConfig};

/// herald register role: registers, and their advertisements pushed to a peer.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: support::ConfigArgs,
    #[command(flatten)]
    log: support::LogArgs,
    #[command(flatten)]
    mongo: support::MongoArgs,
    #[command(flatten)]
    cluster: support::ClusterArgs,
    #[command(flatten)]
    http: support::HttpArgs,
    /// This node's id (≤ 64 of [A-Za-z0-9_-]).
    #[arg(long, env = "HERALD_NODE_ID")]
    node_id: Option<String>,
    /// Directory of the embedded register store (when not using MongoDB).
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Base URL of the peer whose pool this node feeds (`http://` or `https://`).
    #[arg(long, env = "HERALD_PEER_URL")]
    peer_url: Option<String>,
    /// Node id of the peer whose pool this node feeds over the cluster (instead of
    /// --peer-url; needs the cluster flags).
    #[arg(long, env = "HERALD_PEER_NODE_ID", conflicts_with = "peer_url")]
    peer_node_id: Option<String>,
    /// CA of an `https://` peer (the system's roots without it).
    #[arg(long, env = "HERALD_PEER_CA_FILE")]
    peer_ca_file: Option<PathBuf>,
    /// Bearer token of the peer's API, when it differs.
    #[arg(long, env = "HERALD_PEER_TOKEN")]
    peer_token: Option<String>,
    /// A file holding the peer's token.
    #[arg(long, env = "HERALD_PEER_TOKEN_FILE")]
    peer_token_file: Option<PathBuf>,
    /// Period of the reconciling full sync.
    #[arg(long, env = "HERALD_RESYNC_INTERVAL_SECS")]
    resync_interval_secs: Option<u64>,
    /// Deadline of one push to the peer (over the cluster: including the wait for the peer to
    /// be ready).
    #[arg(long, env = "HERALD_PUSH_TIMEOUT_MS")]
    push_timeout_ms: Option<u64>,
    /// Cap of the backoff between push attempts while the peer is unreachable.
    #[arg(long, env = "HERALD_RESYNC_BACKOFF_MAX_MS")]
    resync_backoff_max_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    support::tune_allocator();
    let args = Args::parse();
    support::init_tracing("info", args.log.log_format);
    let mut raw = match support::load_config(&args.config) {
        Ok(raw) => raw,
        Err(code) => return Ok(code),
    };
    apply(&mut raw, args);
    support::serve("register", raw).await
}

/// The flags (and their variables) over the file.
fn apply(raw: &mut RawNodeConfig, args: Args) {
    if let Some(node_id) = args.node_id {
        raw.node_id = node_id;
    }
    args.mongo.apply(raw);
    args.cluster.apply(raw);
    support::set(&mut raw.data_dir, args.data_dir);
    args.http.apply(raw);
    let register = raw.register.get_or_insert_with(RawRegisterConfig::default);
    support::set(&mut register.peer_url, args.peer_url);
    support::set(&mut register.peer_node_id, args.peer_node_id);
    support::set(&mut register.push_timeout_ms, args.push_timeout_ms);
    if let Some(ca_file) = args.peer_ca_file {
        register
            .peer_tls
            .get_or_insert_with(RawClientTls::default)
            .ca_file = Some(ca_file);
    }
    support::set_secret(
        (&mut register.peer_token, &mut register.peer_token_file),
        (args.peer_token, args.peer_token_file),
    );
    support::set(
        &mut register.resync_interval_ms,
        args.resync_interval_secs.map(|secs| secs * 1_000),
    );
    support::set(
        &mut register.resync_backoff_max_ms,
        args.resync_backoff_max_ms,
    );
}
