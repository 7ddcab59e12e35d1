//! The peer role as a process: the advertisement pool and its REST API.
//!
//! ```text
//! cargo run --example peer -- --node-id peer-a --http 127.0.0.1:8080 --data-dir /tmp/peer-a --admin-token secret
//! cargo run --example peer -- --node-id peer-a --http 127.0.0.1:8080 --redis redis://127.0.0.1:6379 --admin-token secret
//! cargo run --example peer -- --node-id peer-a --http 127.0.0.1:8080 --admin-token secret \
//!     --redis-cluster redis://10.0.0.1:7000,redis://10.0.0.2:7000   # a Redis Cluster
//! cargo run --example peer -- --node-id peer-a --http 127.0.0.1:8080 --mongodb mongodb://127.0.0.1:27017/?replicaSet=rs0 --admin-token secret
//! cargo run --example peer -- --node-id peer-b --http 127.0.0.1:8082 --data-dir /tmp/peer-b --admin-token secret \
//!     --cluster-listen 127.0.0.1:7002 --cluster-seed 127.0.0.1:7000 --cookie-file /etc/herald/cookie
//! cargo run --example peer -- --node-id peer-c --http 127.0.0.1:8083 --data-dir /tmp/peer-c --admin-token secret \
//!     --hub n0=http://127.0.0.1:50051 --trusted-hub-key /etc/herald/n0.pub.pem   # verify signed entries
//! cargo run --example peer -- --config examples/config/peer.toml   # flags and HERALD_* override it
//! ```
//! Prints `herald peer ready node=<id> http=<addr>` on stdout once it serves.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herald::{RawClientTls, RawHubEndpoint, RawNodeConfig, RawPeerConfig};

/// herald peer role: advertisement pool and REST API.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: support::ConfigArgs,
    #[command(flatten)]
    log: support::LogArgs,
    #[command(flatten)]
    mongo: support::MongoArgs,
    #[command(flatten)]
    redis: support::RedisArgs,
    #[command(flatten)]
    cluster: support::ClusterArgs,
    #[command(flatten)]
    http: support::HttpArgs,
    #[command(flatten)]
    gossip: support::GossipArgs,
    /// This node's id (≤ 64 of [A-Za-z0-9_-]).
    #[arg(long, env = "HERALD_NODE_ID")]
    node_id: Option<String>,
    /// Directory of the embedded ad store (when not using Redis).
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Freshness of remote ads after their last gossip.
    #[arg(long, env = "HERALD_AD_TTL_SECS")]
    ad_ttl_secs: Option<u64>,
    /// How often the pool checks that its store still holds its data.
    #[arg(long, env = "HERALD_STORE_CHECK_INTERVAL_MS")]
    store_check_interval_ms: Option<u64>,
    /// Cap of the backoff between attempts to reach a failed store.
    #[arg(long, env = "HERALD_STORE_BACKOFF_MAX_MS")]
    store_backoff_max_ms: Option<u64>,
    /// How far ahead of this node's clock a full sync's snapshot may have been read.
    #[arg(long, env = "HERALD_SNAPSHOT_CLOCK_TOLERANCE_MS")]
    snapshot_clock_tolerance_ms: Option<u64>,
    /// A hub to connect to, as ID=URL (repeatable, in priority order; replaces the file's
    /// list). Needs --data-dir for the system register replica.
    #[arg(long = "hub", value_parser = parse_hub)]
    hubs: Vec<RawHubEndpoint>,
    /// CA of `https://` hubs (the system's roots without it).
    #[arg(long, env = "HERALD_HUB_CA_FILE")]
    hub_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) and key for hubs that require mutual TLS.
    #[arg(long, env = "HERALD_HUB_CERT_FILE", requires = "hub_key_file")]
    hub_cert_file: Option<PathBuf>,
    #[arg(long, env = "HERALD_HUB_KEY_FILE", requires = "hub_cert_file")]
    hub_key_file: Option<PathBuf>,
    /// A file holding the bearer token this peer sends to hubs.
    #[arg(long, env = "HERALD_HUB_TOKEN_FILE")]
    hub_token_file: Option<PathBuf>,
    /// A hub's public key (PEM, `openssl pkey -pubout`) whose signed system register entries
    /// this peer accepts (repeatable; comma-separated in the variable). With any, entries not
    /// signed by one of them are refused; without, signatures are not verified.
    #[arg(
        long = "trusted-hub-key",
        env = "HERALD_TRUSTED_HUB_KEYS",
        value_delimiter = ','
    )]
    trusted_hub_keys: Vec<PathBuf>,
    /// Heartbeat period (and deadline).
    #[arg(long, env = "HERALD_HEARTBEAT_INTERVAL_MS")]
    heartbeat_interval_ms: Option<u64>,
    /// Consecutive missed heartbeats before failing over.
    #[arg(long, env = "HERALD_MISSED_HEARTBEATS")]
    missed_heartbeats: Option<u32>,
    /// A failed heartbeat is not a miss when this process itself stalled for longer than this
    /// share of the heartbeat deadline while it waited (0.25).
    #[arg(long, env = "HERALD_OWN_STALL_SHARE")]
    own_stall_share: Option<f64>,
    /// Period of the ticker that measures this process's own stalls.
    #[arg(long, env = "HERALD_STALL_TICK_MS")]
    stall_tick_ms: Option<u64>,
    /// Deadline of one connection attempt.
    #[arg(long, env = "HERALD_CONNECT_TIMEOUT_MS")]
    connect_timeout_ms: Option<u64>,
    /// Periodic system register sync (the fallback for lost notifications).
    #[arg(long, env = "HERALD_SYNC_INTERVAL_SECS")]
    sync_interval_secs: Option<u64>,
    /// Cap of the backoff between rounds of connection attempts while isolated.
    #[arg(long, env = "HERALD_ISOLATED_BACKOFF_MAX_MS")]
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
    support::tune_allocator();
    let args = Args::parse();
    support::init_tracing("info", args.log.log_format);
    let mut raw = match support::load_config(&args.config) {
        Ok(raw) => raw,
        Err(code) => return Ok(code),
    };
    apply(&mut raw, args);
    support::serve("peer", raw).await
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
    support::set(&mut raw.stall_tick_ms, args.stall_tick_ms);
    let peer = raw.peer.get_or_insert_with(RawPeerConfig::default);
    args.gossip.apply(peer);
    args.redis.apply(
        &mut peer.redis_url,
        &mut peer.redis_cluster,
        &mut peer.redis_tls,
    );
    support::set(
        &mut peer.ad_ttl_ms,
        args.ad_ttl_secs.map(|secs| secs * 1_000),
    );
    support::set(
        &mut peer.store_check_interval_ms,
        args.store_check_interval_ms,
    );
    support::set(&mut peer.store_backoff_max_ms, args.store_backoff_max_ms);
    support::set(
        &mut peer.snapshot_clock_tolerance_ms,
        args.snapshot_clock_tolerance_ms,
    );
    if !args.hubs.is_empty() {
        peer.hubs = args.hubs;
    }
    if args.hub_ca_file.is_some() || args.hub_cert_file.is_some() {
        let tls = peer.hub_tls.get_or_insert_with(RawClientTls::default);
        support::set(&mut tls.ca_file, args.hub_ca_file);
        support::set(&mut tls.cert_file, args.hub_cert_file);
        support::set(&mut tls.key_file, args.hub_key_file);
    }
    support::set_secret(
        (&mut peer.hub_token, &mut peer.hub_token_file),
        (None, args.hub_token_file),
    );
    if !args.trusted_hub_keys.is_empty() {
        peer.trusted_hub_keys = args.trusted_hub_keys;
    }
    support::set(&mut peer.heartbeat_interval_ms, args.heartbeat_interval_ms);
    support::set(&mut peer.heartbeat_timeout_ms, args.heartbeat_interval_ms);
    support::set(&mut peer.missed_heartbeats, args.missed_heartbeats);
    support::set(&mut peer.own_stall_share, args.own_stall_share);
    support::set(&mut peer.connect_timeout_ms, args.connect_timeout_ms);
    support::set(
        &mut peer.sync_interval_ms,
        args.sync_interval_secs.map(|secs| secs * 1_000),
    );
    support::set(
        &mut peer.isolated_backoff_max_ms,
        args.isolated_backoff_max_ms,
    );
}
