//! The hub role as a process: the authoritative system register, its gRPC server for peers and
//! its REST API for publishers.
//!
//! ```text
//! cargo run --example hub -- --node-id n0 --grpc 127.0.0.1:50051 --http 127.0.0.1:8090 \
//!     --data-dir /tmp/n0 --admin-token secret
//! cargo run --example hub -- --node-id n1 --grpc 127.0.0.1:50052 --http 127.0.0.1:8091 \
//!     --redis redis://127.0.0.1:6379 --admin-token secret     # hubs sharing one register
//! cargo run --example hub -- --node-id n1 --grpc 127.0.0.1:50052 --http 127.0.0.1:8091 \
//!     --redis-cluster redis://10.0.0.1:7000,redis://10.0.0.2:7000 --admin-token secret   # on a cluster
//! cargo run --example hub -- --node-id n2 --grpc 127.0.0.1:50053 --http 127.0.0.1:8092 \
//!     --mongodb mongodb://127.0.0.1:27017/?replicaSet=rs0 --admin-token secret   # or on MongoDB
//! cargo run --example hub -- --node-id n0 --grpc 127.0.0.1:50051 --http 127.0.0.1:8090 \
//!     --data-dir /tmp/n0 --admin-token secret --signing-key /etc/herald/n0.key.pem   # signed entries
//! cargo run --example hub -- --config examples/config/hub.toml     # flags and HERALD_* override it
//! ```
//! Prints `herald hub ready node=<id> http=<addr> grpc=<addr>` on stdout once it serves.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herald::{RawHubConfig, RawNodeConfig, RawServerTls};

/// herald hub role: the system register, served to peers over gRPC.
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
    /// This hub's id (≤ 64 of [A-Za-z0-9_-]).
    #[arg(long, env = "HERALD_NODE_ID")]
    node_id: Option<String>,
    /// gRPC address peers connect to (port 0 picks a free port).
    #[arg(long, env = "HERALD_GRPC")]
    grpc: Option<String>,
    /// Serve gRPC over TLS with this certificate chain (PEM) and --grpc-key-file.
    #[arg(long, env = "HERALD_GRPC_CERT_FILE", requires = "grpc_key_file")]
    grpc_cert_file: Option<PathBuf>,
    #[arg(long, env = "HERALD_GRPC_KEY_FILE", requires = "grpc_cert_file")]
    grpc_key_file: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS), naming the peer's id.
    #[arg(long, env = "HERALD_GRPC_CLIENT_CA_FILE", requires = "grpc_cert_file")]
    grpc_client_ca_file: Option<PathBuf>,
    /// Directory of the embedded system register (one hub).
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Heartbeat period told to peers.
    #[arg(long, env = "HERALD_HEARTBEAT_INTERVAL_MS")]
    heartbeat_interval_ms: Option<u64>,
    /// A peer silent for this long loses its session.
    #[arg(long, env = "HERALD_SESSION_EXPIRY_MS")]
    session_expiry_ms: Option<u64>,
    /// How often to check that a shared store still holds the register (and write back what
    /// it lost).
    #[arg(long, env = "HERALD_STORE_CHECK_INTERVAL_MS")]
    store_check_interval_ms: Option<u64>,
    /// HTTP/2 streams one peer connection may have open at once.
    #[arg(long, env = "HERALD_MAX_CONCURRENT_STREAMS")]
    max_concurrent_streams: Option<u32>,
    /// Requests one peer may make per second, and at once (`RESOURCE_EXHAUSTED` beyond).
    #[arg(long, env = "HERALD_PEER_REQUESTS_PER_SEC")]
    peer_requests_per_sec: Option<u32>,
    #[arg(long, env = "HERALD_PEER_REQUEST_BURST")]
    peer_request_burst: Option<u32>,
    /// This hub's Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`): every
    /// entry it appends is signed with it.
    #[arg(long = "signing-key", env = "HERALD_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
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
    support::serve("hub", raw).await
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
    let hub = raw.hub.get_or_insert_with(RawHubConfig::default);
    if let Some(grpc) = args.grpc {
        hub.grpc_addr = grpc;
    }
    if let (Some(cert_file), Some(key_file)) = (args.grpc_cert_file, args.grpc_key_file) {
        let tls = hub.tls.get_or_insert_with(RawServerTls::default);
        tls.cert_file = cert_file;
        tls.key_file = key_file;
        support::set(&mut tls.client_ca_file, args.grpc_client_ca_file);
    }
    args.redis.apply(
        &mut hub.redis_url,
        &mut hub.redis_cluster,
        &mut hub.redis_tls,
    );
    support::set(&mut hub.heartbeat_interval_ms, args.heartbeat_interval_ms);
    support::set(&mut hub.session_expiry_ms, args.session_expiry_ms);
    support::set(
        &mut hub.store_check_interval_ms,
        args.store_check_interval_ms,
    );
    support::set(&mut hub.max_concurrent_streams, args.max_concurrent_streams);
    support::set(&mut hub.peer_requests_per_sec, args.peer_requests_per_sec);
    support::set(&mut hub.peer_request_burst, args.peer_request_burst);
    support::set(&mut hub.signing_key_file, args.signing_key);
}
