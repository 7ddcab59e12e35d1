//! What the role binaries share: the configuration file and its overrides, logging, metrics,
//! and running until a signal.
//!
//! Where a setting comes from, lowest first: the defaults, the `--config FILE` (TOML, the
//! fields of `RawNodeConfig`), the `HERALD_*` environment variables, the flags. (clap reads
//! each flag's variable when the flag is absent, so a flag beats its variable, and either
//! beats the file.)

#![allow(dead_code)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use herald::{
    Node, NodeHandle, RawClientTls, RawClusterConfig, RawClusterTls, RawMongoConfig, RawMongoTls,
    RawNodeConfig, RawServerTls,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// The largest allocation glibc's malloc serves from its heap (larger ones are mapped and
/// returned to the system when freed), unless `MALLOC_MMAP_THRESHOLD_` says otherwise.
const MMAP_THRESHOLD_BYTES: i32 = 1024 * 1024;

/// How often the binaries return freed heap pages to the system (`malloc_trim`).
const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The shortest time between two trims asked for by changes (`trim_soon`). After a trim that
/// took longer than a tenth of this, the gap is ten times what it took: back-to-back writes
/// spend at most a tenth of one core on trimming (a call took 0.1–2.2 ms on a peer of 100,000
/// ads), and a read that follows a write by more than a few milliseconds finds its pages
/// returned (BENCHMARKS.md, issue 11).
const MIN_TRIM_GAP: std::time::Duration = std::time::Duration::from_millis(10);

/// Wakes the trimming thread (`trim_soon`), when there is one.
static TRIM_SOON: std::sync::OnceLock<std::sync::mpsc::SyncSender<()>> = std::sync::OnceLock::new();

/// Keeps the process's memory near what it uses (issue 11). glibc raises its mmap threshold
/// to the size of each large block freed (up to 32 MiB), so after the first large answer is
/// replaced every later one (a view or an answer of 100,000 registers, 10–25 MB) comes from
/// the heap, whose freed pages stay with the process: a peer of 100,000 ads kept 137 MB where
/// it used under 100. A fixed threshold stops that: 97 MB, peak 143 → 118 MB (BENCHMARKS.md).
/// Freed pages inside the heap stay with the process too, until something trims it: a thread
/// returns them every `TRIM_INTERVAL` (`malloc_trim`), and soon after the pool's answer
/// changes (`trim_soon`, from `serve`: a write of 10,000 ads frees as much as it keeps, and
/// the next write or read would otherwise come on top of it).
/// Called first in `main`; does nothing on other C libraries. An operator's own
/// `MALLOC_MMAP_THRESHOLD_` wins (glibc reads it itself); `HERALD_MALLOC_TRIM_SECS=0` turns the
/// trimming off.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt sets one parameter of glibc's allocator under its own lock, may be
        // called at any time from any thread, and takes no pointers.
        #[allow(unsafe_code)]
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
        if set != 1 {
            eprintln!("warning: could not set malloc's mmap threshold; memory may stay high");
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Some(interval) = trim_interval() {
        // One wake-up is enough: a trim asked for while one is pending is the same trim.
        let (soon, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let started = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(move || {
                loop {
                    // `Disconnected` cannot happen (the sender is static); either way, trim.
                    let _ = asked.recv_timeout(interval);
                    // Its own thread, outside the runtime: no clock of tokio's here.
                    #[allow(clippy::disallowed_methods)]
                    let began = std::time::Instant::now();
                    // SAFETY: malloc_trim takes glibc's arena locks itself and touches no
                    // memory the program holds; it may be called from any thread. It took
                    // 0.1–2.2 ms on a peer of 100,000 ads (BENCHMARKS.md).
                    #[allow(unsafe_code)]
                    unsafe {
                        libc::malloc_trim(0)
                    };
                    // Blocking here blocks nobody.
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(MIN_TRIM_GAP.max(began.elapsed() * 10));
                }
            });
        match started {
            Ok(_) => {
                let _ = TRIM_SOON.set(soon);
            }
            Err(err) => eprintln!("warning: no malloc-trim thread ({err}); memory may stay high"),
        }
    }
}

/// Asks the trimming thread to return freed heap pages now (at most every `MIN_TRIM_GAP`);
/// nothing without one. Never blocks.
pub fn trim_soon() {
    if let Some(soon) = TRIM_SOON.get() {
        let _ = soon.try_send(());
    }
}

/// Trims soon after each change of the pool's answer (`trim_soon`), for as long as the node
/// publishes; nothing on a node without the peer role.
fn trim_after_changes(node: &NodeHandle) {
    if let Some(mut pool) = node.api().pool_changes() {
        tokio::spawn(async move {
            let mut served = None;
            while let Some(view) = pool.changed().await {
                let version = (view.available.tag, view.available.version);
                if served.replace(version) != Some(version) {
                    trim_soon();
                }
            }
        });
    }
}

/// How often freed heap pages go back to the system: `HERALD_MALLOC_TRIM_SECS` (0 = never),
/// else `TRIM_INTERVAL`.
fn trim_interval() -> Option<std::time::Duration> {
    match std::env::var("HERALD_MALLOC_TRIM_SECS") {
        Ok(secs) => match secs.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(secs) => Some(std::time::Duration::from_secs(secs)),
            Err(_) => {
                eprintln!(
                    "warning: HERALD_MALLOC_TRIM_SECS={secs:?} is not a number of seconds; using the default"
                );
                Some(TRIM_INTERVAL)
            }
        },
        Err(_) => Some(TRIM_INTERVAL),
    }
}

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

/// The configuration file flag every role binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// A TOML configuration file (the fields of `RawNodeConfig`); `HERALD_*` environment
    /// variables and flags override what it says.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Reads of /api/… (the operator page's data) need the admin token too; /health, /metrics
    /// and the page itself stay open.
    #[arg(long, env = "HERALD_READS_NEED_TOKEN")]
    pub reads_need_token: bool,
}

/// The configuration file's content (the defaults without one). Prints why and gives exit
/// code 2 when the file cannot be read or holds an unknown key, a missing one or a value of
/// the wrong type (named by its path, e.g. `peer.hubs[0].url`).
pub fn load_config(args: &ConfigArgs) -> Result<RawNodeConfig, ExitCode> {
    let mut raw = match &args.config {
        None => RawNodeConfig::default(),
        Some(path) => read_config(path).map_err(|why| {
            eprintln!("{why}");
            ExitCode::from(2)
        })?,
    };
    if args.reads_need_token {
        raw.reads_need_token = Some(true);
    }
    Ok(raw)
}

/// Reads and parses a configuration file.
pub fn read_config(path: &Path) -> Result<RawNodeConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        format!(
            "cannot read the configuration file {}: {err}",
            path.display()
        )
    })?;
    RawNodeConfig::from_toml(&text).map_err(|err| format!("{}: {err}", path.display()))
}

/// The MongoDB flags every role binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct MongoArgs {
    /// MongoDB (a replica set) holding this node's state instead of the embedded store, e.g.
    /// `mongodb://db-1:27017,db-2:27017/?replicaSet=rs0`.
    #[arg(long, env = "HERALD_MONGODB")]
    pub mongodb: Option<String>,
    /// Database of herald's collections on MongoDB (herald).
    #[arg(long, env = "HERALD_MONGODB_DB")]
    pub mongodb_db: Option<String>,
    /// TLS to MongoDB: the CA that signs its certificates (PEM).
    #[arg(long, env = "HERALD_MONGODB_TLS_CA")]
    pub mongodb_tls_ca: Option<PathBuf>,
    /// TLS to MongoDB: a client certificate followed by its key, in one PEM file.
    #[arg(long, env = "HERALD_MONGODB_TLS_CERT_KEY")]
    pub mongodb_tls_cert_key: Option<PathBuf>,
}

impl MongoArgs {
    /// The flags over the file's `mongodb` section.
    pub fn apply(self, raw: &mut RawNodeConfig) {
        if self.mongodb.is_none()
            && self.mongodb_db.is_none()
            && self.mongodb_tls_ca.is_none()
            && self.mongodb_tls_cert_key.is_none()
        {
            return;
        }
        let mongodb = raw.mongodb.get_or_insert_with(RawMongoConfig::default);
        if let Some(url) = self.mongodb {
            mongodb.url = url;
        }
        set(&mut mongodb.database, self.mongodb_db);
        if self.mongodb_tls_ca.is_some() || self.mongodb_tls_cert_key.is_some() {
            let tls = mongodb.tls.get_or_insert_with(RawMongoTls::default);
            set(&mut tls.ca_file, self.mongodb_tls_ca);
            set(&mut tls.cert_key_file, self.mongodb_tls_cert_key);
        }
    }
}

/// The Redis flags of the roles that keep their state in Redis (the peer's ads, the hub's
/// register).
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// One Redis server holding this role's state (`redis://` or `rediss://`); the hub's
    /// register shared by several hubs wants it run with AOF.
    #[arg(long, env = "HERALD_REDIS", conflicts_with = "redis_cluster")]
    pub redis: Option<String>,
    /// A Redis Cluster instead: URLs of one or more of its nodes, comma-separated
    /// (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`); the others are learned from them.
    #[arg(long, env = "HERALD_REDIS_CLUSTER", value_delimiter = ',', num_args = 1..)]
    pub redis_cluster: Vec<String>,
    /// CA of a `rediss://` Redis (the system's roots without it).
    #[arg(long, env = "HERALD_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
}

impl RedisArgs {
    /// The flags over a role's Redis settings from the file: a server or a cluster named by a
    /// flag replaces whichever the file named.
    pub fn apply(
        self,
        url: &mut Option<String>,
        cluster: &mut Option<Vec<String>>,
        tls: &mut Option<RawClientTls>,
    ) {
        if let Some(redis) = self.redis {
            *url = Some(redis);
            *cluster = None;
        }
        if !self.redis_cluster.is_empty() {
            *cluster = Some(self.redis_cluster);
            *url = None;
        }
        if let Some(ca_file) = self.redis_ca_file {
            tls.get_or_insert_with(RawClientTls::default).ca_file = Some(ca_file);
        }
    }
}

/// The REST API flags every role binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// REST API address (port 0 picks a free port).
    #[arg(long, env = "HERALD_HTTP")]
    pub http: Option<String>,
    /// Bearer token for mutating endpoints (prefer --admin-token-file: `ps` shows flags).
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin token.
    #[arg(long, env = "HERALD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve the REST API over HTTPS with this certificate chain (PEM) and --http-key-file.
    #[arg(long, env = "HERALD_HTTP_CERT_FILE", requires = "http_key_file")]
    pub http_cert_file: Option<PathBuf>,
    #[arg(long, env = "HERALD_HTTP_KEY_FILE", requires = "http_cert_file")]
    pub http_key_file: Option<PathBuf>,
    /// Close a connection whose request headers do not all arrive within this.
    #[arg(long, env = "HERALD_HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<u64>,
}

impl HttpArgs {
    /// The flags over the file's REST API fields.
    pub fn apply(self, raw: &mut RawNodeConfig) {
        set(&mut raw.http_addr, self.http);
        set_secret(
            (&mut raw.admin_token, &mut raw.admin_token_file),
            (self.admin_token, self.admin_token_file),
        );
        set(&mut raw.http_header_timeout_ms, self.http_header_timeout_ms);
        if let (Some(cert_file), Some(key_file)) = (self.http_cert_file, self.http_key_file) {
            let tls = raw.http_tls.get_or_insert_with(RawServerTls::default);
            tls.cert_file = cert_file;
            tls.key_file = key_file;
        }
    }
}

/// The cluster flags every role binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Join the deployment's cluster, accepting members on this address (ip:port; port 0 picks
    /// one). Needs a cookie.
    #[arg(long, env = "HERALD_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,
    /// Where members dial this node (host:port), when it differs from --cluster-listen.
    #[arg(long, env = "HERALD_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<String>,
    /// A member to dial at start (host:port, repeatable; comma-separated in the variable); the
    /// rest is learned from it.
    #[arg(
        long = "cluster-seed",
        env = "HERALD_CLUSTER_SEEDS",
        value_delimiter = ','
    )]
    pub cluster_seeds: Vec<String>,
    /// The deployment's shared secret: members with another cookie are never admitted. Prefer
    /// --cookie-file.
    #[arg(long, env = "HERALD_CLUSTER_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// A file holding the cookie.
    #[arg(long, env = "HERALD_CLUSTER_COOKIE_FILE")]
    pub cookie_file: Option<PathBuf>,
    /// Period of liveness pings to each member (and their deadline).
    #[arg(long, env = "HERALD_LIVENESS_INTERVAL_MS")]
    pub liveness_interval_ms: Option<u64>,
    /// Pings missed in a row before a member is suspected (3).
    #[arg(long, env = "HERALD_SUSPECT_AFTER_MISSES")]
    pub suspect_after_misses: Option<u32>,
    /// A suspect member is called unreachable after this long.
    #[arg(long, env = "HERALD_UNREACHABLE_AFTER_MS")]
    pub unreachable_after_ms: Option<u64>,
    /// Cap of the backoff between redials of a member.
    #[arg(long, env = "HERALD_RECONNECT_BACKOFF_MAX_MS")]
    pub reconnect_backoff_max_ms: Option<u64>,
    /// Deadline of one dial, from connecting to a ready session (5000).
    #[arg(long, env = "HERALD_CLUSTER_CONNECT_TIMEOUT_MS")]
    pub cluster_connect_timeout_ms: Option<u64>,
    /// Mutual TLS between members: this member's certificate (PEM; it must name the host of
    /// its advertised address), its key, and the members' CA. All three or none.
    #[arg(
        long,
        env = "HERALD_CLUSTER_TLS_CERT",
        requires_all = ["cluster_tls_key", "cluster_tls_ca"]
    )]
    pub cluster_tls_cert: Option<PathBuf>,
    #[arg(long, env = "HERALD_CLUSTER_TLS_KEY", requires = "cluster_tls_cert")]
    pub cluster_tls_key: Option<PathBuf>,
    #[arg(long, env = "HERALD_CLUSTER_TLS_CA", requires = "cluster_tls_cert")]
    pub cluster_tls_ca: Option<PathBuf>,
}

/// The gossip flags of a peer (issue 9): over the file's `[peer.gossip]`.
#[derive(Debug, Clone, clap::Args)]
pub struct GossipArgs {
    /// Time between two gossip rounds (1000).
    #[arg(long, env = "HERALD_GOSSIP_INTERVAL_MS")]
    pub gossip_interval_ms: Option<u64>,
    /// Members a gossip round exchanges with (3).
    #[arg(long, env = "HERALD_GOSSIP_FANOUT")]
    pub gossip_fanout: Option<usize>,
    /// How long an unreachable peer's ads are kept, marked stale (three ad TTLs); more than
    /// the ad TTL.
    #[arg(long, env = "HERALD_STALE_GRACE_MS")]
    pub stale_grace_ms: Option<u64>,
    /// How long a withdrawal is remembered (a day); at least 10 gossip intervals.
    #[arg(long, env = "HERALD_TOMBSTONE_TTL_MS")]
    pub tombstone_ttl_ms: Option<u64>,
}

impl GossipArgs {
    /// The flags over the file's `[peer.gossip]` (created when a flag is given).
    pub fn apply(self, peer: &mut herald::RawPeerConfig) {
        let given = self.gossip_interval_ms.is_some()
            || self.gossip_fanout.is_some()
            || self.stale_grace_ms.is_some()
            || self.tombstone_ttl_ms.is_some();
        if !given {
            return;
        }
        let gossip = peer.gossip.get_or_insert_with(Default::default);
        set(&mut gossip.interval_ms, self.gossip_interval_ms);
        set(&mut gossip.fanout, self.gossip_fanout);
        set(&mut gossip.stale_grace_ms, self.stale_grace_ms);
        set(&mut gossip.tombstone_ttl_ms, self.tombstone_ttl_ms);
    }
}

impl ClusterArgs {
    /// The flags over the file's `cluster` section (created when a cluster flag is given).
    pub fn apply(self, raw: &mut RawNodeConfig) {
        let given = self.cluster_listen.is_some()
            || self.cluster_advertise.is_some()
            || !self.cluster_seeds.is_empty()
            || self.cookie.is_some()
            || self.cookie_file.is_some()
            || self.liveness_interval_ms.is_some()
            || self.suspect_after_misses.is_some()
            || self.unreachable_after_ms.is_some()
            || self.reconnect_backoff_max_ms.is_some()
            || self.cluster_connect_timeout_ms.is_some()
            || self.cluster_tls_cert.is_some();
        if !given {
            return;
        }
        let cluster = raw.cluster.get_or_insert_with(RawClusterConfig::default);
        if let Some(listen) = self.cluster_listen {
            cluster.listen = listen;
        }
        set(&mut cluster.advertised_address, self.cluster_advertise);
        if !self.cluster_seeds.is_empty() {
            cluster.seeds = self.cluster_seeds;
        }
        set_secret(
            (&mut cluster.cookie, &mut cluster.cookie_file),
            (self.cookie, self.cookie_file),
        );
        set(&mut cluster.liveness_interval_ms, self.liveness_interval_ms);
        set(&mut cluster.suspect_after_misses, self.suspect_after_misses);
        set(&mut cluster.unreachable_after_ms, self.unreachable_after_ms);
        set(
            &mut cluster.reconnect_backoff_max_ms,
            self.reconnect_backoff_max_ms,
        );
        set(
            &mut cluster.connect_timeout_ms,
            self.cluster_connect_timeout_ms,
        );
        if let (Some(cert_file), Some(key_file), Some(ca_file)) = (
            self.cluster_tls_cert,
            self.cluster_tls_key,
            self.cluster_tls_ca,
        ) {
            cluster.tls = Some(RawClusterTls {
                cert_file,
                key_file,
                ca_file,
            });
        }
    }
}

/// Replaces `slot` with `value` when the flag (or its variable) was given.
pub fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

/// Replaces a secret given as a pair of fields (`token`, `token_file`) when either flag was
/// given: the flag's form replaces both of the file's.
pub fn set_secret(
    (token, token_file): (&mut Option<String>, &mut Option<PathBuf>),
    (flag, flag_file): (Option<String>, Option<PathBuf>),
) {
    if flag.is_some() || flag_file.is_some() {
        *token = flag;
        *token_file = flag_file;
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

/// Installs the process-wide Prometheus recorder that `GET /metrics` renders.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// Runs a role binary: validates the configuration (exit code 2 naming the field when it is
/// invalid), starts the node (exit code 1 with the reason when it cannot), prints
/// `herald <role> ready node=<id> http=<addr>[ grpc=<addr>][ cluster=<addr>]` on stdout, and
/// serves until stopped.
pub async fn serve(role: &str, raw: RawNodeConfig) -> anyhow::Result<ExitCode> {
    if raw.http_addr.is_none() {
        eprintln!(
            "invalid configuration: http_addr: required by the role binaries (--http, or http_addr in the file)"
        );
        return Ok(ExitCode::from(2));
    }
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
    trim_after_changes(&node);
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
