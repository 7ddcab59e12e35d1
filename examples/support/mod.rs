//! What the role binaries share: logging, metrics, and running until a signal.

#![allow(dead_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use herald::{Node, NodeHandle, RawClusterConfig, RawNodeConfig};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How the binaries write their logs to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, the current span and its
    /// parents), for log shippers.
    Json,
}

/// The logging flag every role binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr: `text` (colours only on a terminal) or `json` (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The cluster flags every role binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Join the deployment's cluster, accepting members on this address (ip:port; port 0 picks
    /// one). Needs --cookie.
    #[arg(long)]
    pub cluster_listen: Option<String>,
    /// Where members dial this node (host:port), when it differs from --cluster-listen.
    #[arg(long)]
    pub cluster_advertise: Option<String>,
    /// A member to dial at start (host:port, repeatable); the rest is learned from it.
    #[arg(long = "cluster-seed")]
    pub cluster_seeds: Vec<String>,
    /// The deployment's shared secret: members with another cookie are never admitted.
    #[arg(long, env = "HERALD_CLUSTER_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Period of liveness pings to each member (and their deadline).
    #[arg(long)]
    pub liveness_interval_ms: Option<u64>,
    /// Pings missed in a row before a member is suspected (3).
    #[arg(long)]
    pub suspect_after_misses: Option<u32>,
    /// A suspect member is called unreachable after this long.
    #[arg(long)]
    pub unreachable_after_ms: Option<u64>,
    /// Cap of the backoff between redials of a member.
    #[arg(long)]
    pub reconnect_backoff_max_ms: Option<u64>,
    /// Deadline of one dial, from connecting to a ready session (5000).
    #[arg(long)]
    pub cluster_connect_timeout_ms: Option<u64>,
}

impl ClusterArgs {
    /// The cluster section, when --cluster-listen was given.
    pub fn config(self) -> Option<RawClusterConfig> {
        let listen = self.cluster_listen?;
        Some(RawClusterConfig {
            listen,
            advertised_address: self.cluster_advertise,
            seeds: self.cluster_seeds,
            cookie: self.cookie,
            liveness_interval_ms: self.liveness_interval_ms,
            suspect_after_misses: self.suspect_after_misses,
            unreachable_after_ms: self.unreachable_after_ms,
            reconnect_backoff_max_ms: self.reconnect_backoff_max_ms,
            connect_timeout_ms: self.cluster_connect_timeout_ms,
            ..RawClusterConfig::default()
        })
    }
}

/// Logs to stderr in `format`; `RUST_LOG` overrides the `default` level.
pub fn init_tracing(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// The MongoDB section of a configuration from `--mongodb URL` and `--mongodb-db NAME`.
pub fn mongodb(url: Option<String>, database: Option<String>) -> Option<herald::RawMongoConfig> {
    url.map(|url| herald::RawMongoConfig {
        url,
        database,
        ..herald::RawMongoConfig::default()
    })
}

/// Installs the process-wide Prometheus recorder that `GET /metrics` renders.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// Runs a role binary: validates the configuration (exit code 2 naming the field when it is
/// invalid), starts the node (exit code 1 with the reason when it cannot), prints
/// `herald <role> ready node=<id> http=<addr>[ grpc=<addr>][ cluster=<addr>]` on stdout, and
/// serves until stopped.
pub async fn serve(role: &str, raw: RawNodeConfig) -> anyhow::Result<ExitCode> {
    let config = match raw.validate() {
        Ok(config) => config.with_metrics(install_metrics()?),
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::from(2));
        }
    };
    let node = match Node::start(config).await {
        Ok(node) => node,
        Err(err) => {
            eprintln!(
                "cannot start: {}",
                herald::parts::actors::ports::error_chain(&err)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let http = node.http_addr().expect("role binaries always serve HTTP");
    let mut line = format!("herald {role} ready node={} http={http}", node.node_id());
    if let Some(grpc) = node.grpc_addr() {
        line.push_str(&format!(" grpc={grpc}"));
    }
    if let Some(cluster) = node.cluster_addr() {
        line.push_str(&format!(" cluster={cluster}"));
    }
    println!("{line}");
    run_until_stopped(node).await
}

/// Waits for ctrl-c, SIGTERM or the node giving up, then shuts the node down.
pub async fn run_until_stopped(node: NodeHandle) -> anyhow::Result<ExitCode> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let code = tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("ctrl-c received; shutting down");
            ExitCode::SUCCESS
        }
        _ = terminate.recv() => {
            tracing::info!("SIGTERM received; shutting down");
            ExitCode::SUCCESS
        }
        failure = node.failed() => {
            tracing::error!(%failure, "node gave up");
            ExitCode::FAILURE
        }
    };
    let report = node.shutdown().await;
    if !report.killed.is_empty() {
        tracing::warn!(killed = ?report.killed, "some actors had to be killed at shutdown");
    }
    Ok(code)
}
