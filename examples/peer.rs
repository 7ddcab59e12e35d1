//! The peer role as a process: the advertisement pool and its REST API.
//!
//! ```text
//! cargo run --example peer -- --node-id peer-a --http 127.0.0.1:8080 --data-dir /tmp/peer-a --admin-token secret
//! cargo run --example peer -- --node-id peer-a --http 127.0.0.1:8080 --redis redis://127.0.0.1:6379 --admin-token secret
//! cargo run --example peer -- --node-id peer-a --http 127.0.0.1:8080 --mongodb mongodb://127.0.0.1:27017/?replicaSet=rs0 --admin-token secret
//! ```
//! Prints `herald peer ready node=<id> http=<addr>` on stdout once it serves.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herald::{RawHubEndpoint, RawNodeConfig, RawPeerConfig};

/// herald peer role: advertisement pool and REST API.
#[derive(Parser)]
#[command(group = clap::ArgGroup::new("store").required(true).multiple(true).args(["redis", "mongodb", "data_dir"]))]
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
    /// Redis URL of the ad store.
    #[arg(long)]
    redis: Option<String>,
    /// Directory of the embedded ad store (when not using Redis or MongoDB).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// MongoDB (a replica set) holding this node's state instead of the embedded store, e.g.
    /// `mongodb://db-1:27017,db-2:27017/?replicaSet=rs0`.
    #[arg(long)]
    mongodb: Option<String>,
    /// Database of herald's collections on --mongodb (herald).
    #[arg(long, requires = "mongodb")]
    mongodb_db: Option<String>,
    /// Bearer token for mutating endpoints.
    #[arg(long, env = "HERALD_ADMIN_TOKEN")]
    admin_token: String,
    /// Freshness of remote ads after their last gossip.
    #[arg(long)]
    ad_ttl_secs: Option<u64>,
    /// How often the pool checks that its store still holds its data.
    #[arg(long)]
    store_check_interval_ms: Option<u64>,
    /// Cap of the backoff between attempts to reach a failed store.
    #[arg(long)]
    store_backoff_max_ms: Option<u64>,
    /// How far ahead of this node's clock a full sync's snapshot may have been read.
    #[arg(long)]
    snapshot_clock_tolerance_ms: Option<u64>,
    /// Close a connection whose request headers do not all arrive within this.
    #[arg(long)]
    http_header_timeout_ms: Option<u64>,
    /// A hub to connect to, as ID=URL (repeatable, in priority order). Needs --data-dir for the
    /// system register replica.
    #[arg(long = "hub", value_parser = parse_hub)]
    hubs: Vec<RawHubEndpoint>,
    /// Heartbeat period.
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Consecutive missed heartbeats before failing over.
    #[arg(long)]
    missed_heartbeats: Option<u32>,
    /// A failed heartbeat is not a miss when this process itself stalled for longer than this
    /// share of the heartbeat deadline while it waited (0.25).
    #[arg(long)]
    own_stall_share: Option<f64>,
    /// Period of the ticker that measures this process's own stalls.
    #[arg(long)]
    stall_tick_ms: Option<u64>,
    /// Deadline of one connection attempt.
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// Periodic system register sync (the fallback for lost notifications).
    #[arg(long)]
    sync_interval_secs: Option<u64>,
    /// Cap of the backoff between rounds of connection attempts while isolated.
    #[arg(long)]
    isolated_backoff_max_ms: Option<u64>,
}

fn parse_hub(value: &str) -> Result<RawHubEndpoint, String> {
    let (id, url) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} is not ID=URL"))?;
    Ok(RawHubEndpoint {
        id: id.to_owned(),
        url: url.to_owned(),
        priority: None,
    })
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
        peer: Some(RawPeerConfig {
            redis_url: args.redis,
            ad_ttl_ms: args.ad_ttl_secs.map(|secs| secs * 1_000),
            store_check_interval_ms: args.store_check_interval_ms,
            store_backoff_max_ms: args.store_backoff_max_ms,
            snapshot_clock_tolerance_ms: args.snapshot_clock_tolerance_ms,
            hubs: args.hubs,
            heartbeat_interval_ms: args.heartbeat_interval_ms,
            heartbeat_timeout_ms: args.heartbeat_interval_ms,
            missed_heartbeats: args.missed_heartbeats,
            own_stall_share: args.own_stall_share,
            connect_timeout_ms: args.connect_timeout_ms,
            sync_interval_ms: args.sync_interval_secs.map(|secs| secs * 1_000),
            isolated_backoff_max_ms: args.isolated_backoff_max_ms,
            ..RawPeerConfig::default()
        }),
        stall_tick_ms: args.stall_tick_ms,
        cluster: args.cluster.config(),
        ..RawNodeConfig::default()
    };
    support::serve("peer", raw).await
}
