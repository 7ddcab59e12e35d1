//! What the role binaries share: logging, metrics, and running until a signal.

#![allow(dead_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use herald::{Node, NodeHandle, RawNodeConfig};
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
/// `herald <role> ready node=<id> http=<addr>[ grpc=<addr>]` on stdout, and serves until stopped.
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
    match node.grpc_addr() {
        Some(grpc) => println!(
            "herald {role} ready node={} http={http} grpc={grpc}",
            node.node_id()
        ),
        None => println!("herald {role} ready node={} http={http}", node.node_id()),
    }
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
