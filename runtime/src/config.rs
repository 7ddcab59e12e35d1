//! Node configuration: a raw, serde-friendly form (`RawNodeConfig`: `deny_unknown_fields`,
//! durations as `*_ms`) validated once into the typed `NodeConfig`, with errors that name the
//! field. The library never reads files or environment variables: the host builds the raw form
//! (from flags, a file, anything) and calls `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use herald_actors::{
    AuthorityConfig, BackoffConfig, ConnectionConfig, DEFAULT_STALL_TICK, HeartbeatConfig,
    PoolConfig, ReplicaConfig, RestartPolicy, ResyncConfig,
};
use herald_messages::{HubEndpoint, NodeId};

use crate::grpc::limits::HubLimits;
pub use crate::tls::{ClientTls, RawClientTls, RawServerTls, Secret, ServerTls};

/// Default key prefix in a shared Redis.
pub const DEFAULT_REDIS_PREFIX: &str = "herald";
/// Default deadline of a call to a local actor (REST → pool, driver → pool).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of a push to a peer's HTTP API.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest period of the stall detector's ticker: tokio's timers have 1 ms resolution.
const MIN_STALL_TICK: Duration = Duration::from_millis(1);

/// A configuration value that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The raw form of a node's configuration. Absent values take the documented defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeConfig {
    /// This node's id (≤ 64 of `[A-Za-z0-9_-]`); keys in shared stores are namespaced by it.
    pub node_id: String,
    /// Directory of the embedded stores (redb files). Required by the register role and by a
    /// peer role without Redis.
    pub data_dir: Option<PathBuf>,
    /// Address of the REST API (e.g. `127.0.0.1:8080`; port 0 picks a free one). No API when absent.
    pub http_addr: Option<String>,
    /// Bearer token required by mutating endpoints. Required with `http_addr` (this or
    /// `admin_token_file`).
    pub admin_token: Option<String>,
    /// A file holding the admin token (instead of `admin_token`: kept off command lines).
    pub admin_token_file: Option<PathBuf>,
    /// Serves the REST API over HTTPS with this certificate (optional: HTTP without it).
    pub http_tls: Option<RawServerTls>,
    /// A connection whose request headers do not all arrive within this is closed (10 000):
    /// a client trickling headers cannot hold a connection open.
    pub http_header_timeout_ms: Option<u64>,
    /// Runs the peer role (advertisement pool) when present.
    pub peer: Option<RawPeerConfig>,
    /// Runs the register role (ground truth and resync driver) when present.
    pub register: Option<RawRegisterConfig>,
    /// Runs the hub role (the authoritative system register and its gRPC server) when present.
    pub hub: Option<RawHubConfig>,
    /// Failures of one actor tolerated within `restart_window_ms` before the node stops (5).
    pub restart_max: Option<u32>,
    pub restart_window_ms: Option<u64>,
    pub restart_backoff_base_ms: Option<u64>,
    pub restart_backoff_max_ms: Option<u64>,
    /// Deadline of calls to local actors (10 000).
    pub call_timeout_ms: Option<u64>,
    /// Period of the ticker that measures this process's own stalls (100, or the shortest stall
    /// that excuses a missed heartbeat if that is less; at most that when given).
    pub stall_tick_ms: Option<u64>,
}

/// Raw peer-role settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerConfig {
    /// `redis://host:port[/db]` or `rediss://` (TLS); the embedded store in `data_dir` when
    /// absent.
    pub redis_url: Option<String>,
    /// CA and client certificate for a `rediss://` URL (the system's roots when absent).
    pub redis_tls: Option<RawClientTls>,
    /// Key prefix in Redis (`herald`).
    pub redis_prefix: Option<String>,
    /// Freshness of a remote ad after its peer's last gossip (300 000).
    pub ad_ttl_ms: Option<u64>,
    /// Extra lifetime of a stored ad beyond `ad_ttl_ms` (3 600 000).
    pub store_retention_ms: Option<u64>,
    /// Renewal period of stored ads' expiry (120 000).
    pub renew_interval_ms: Option<u64>,
    pub sweep_interval_ms: Option<u64>,
    pub store_check_interval_ms: Option<u64>,
    pub store_backoff_base_ms: Option<u64>,
    pub store_backoff_max_ms: Option<u64>,
    /// How far ahead of this node's clock a full sync's snapshot may have been read (60 000);
    /// a `readAt` further ahead is refused with 400.
    pub snapshot_clock_tolerance_ms: Option<u64>,
    /// Hubs to connect to, in priority order (spec 001 user story 4). None: no hub connection.
    /// Ignored on a node that runs the hub role: hubs never dial hubs (FR-027).
    #[serde(default)]
    pub hubs: Vec<RawHubEndpoint>,
    /// Where this peer says it can be reached (told to hubs; informative). Default: the node id.
    pub advertised_address: Option<String>,
    /// Heartbeat period (30 000), deadline of one heartbeat (30 000), and consecutive misses
    /// before failing over (2).
    pub heartbeat_interval_ms: Option<u64>,
    pub heartbeat_timeout_ms: Option<u64>,
    pub missed_heartbeats: Option<u32>,
    /// A failed heartbeat is not a miss when, while it waited, this process itself stalled
    /// (SIGSTOP, a paused VM, an overloaded host) for longer than this share of the heartbeat
    /// deadline, in `(0, 1]` (0.25).
    pub own_stall_share: Option<f64>,
    /// Deadline of one connection attempt (10 000) and attempts per hub before the ring moves
    /// on (2).
    pub connect_timeout_ms: Option<u64>,
    pub connect_attempts_per_hub: Option<u32>,
    /// Cap of the backoff between rounds while isolated (60 000).
    pub isolated_backoff_max_ms: Option<u64>,
    /// Periodic replica sync, the fallback for lost notifications (300 000).
    pub sync_interval_ms: Option<u64>,
    /// CA and client certificate (mutual TLS) for `https://` hubs (the system's roots when
    /// no CA is given).
    pub hub_tls: Option<RawClientTls>,
    /// Bearer token sent with every call to a hub (or `hub_token_file`), for hubs that list
    /// this peer in `hub.peers`.
    pub hub_token: Option<String>,
    pub hub_token_file: Option<PathBuf>,
}

/// A hub as a peer's configuration names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHubEndpoint {
    pub id: String,
    /// `http://host:port` or `https://host:port` of the hub's gRPC server.
    pub url: String,
    /// Lower is tried first; default: the position in the list.
    pub priority: Option<u32>,
}

/// Raw hub-role settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHubConfig {
    /// Address of the gRPC server peers connect to, e.g. `0.0.0.0:50051` (port 0 picks one).
    pub grpc_addr: String,
    /// Redis holding the system register shared by several hubs (run it with AOF for durable
    /// publications); the embedded store in `data_dir` when absent (one hub).
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    /// The host name this hub is known by, and a glob (`*`, `?`) it must match: a guard against
    /// starting the hub role on the wrong machine (FR-027).
    pub advertised_host: Option<String>,
    pub host_glob: Option<String>,
    /// Told to peers at connect (30 000, 30 000, 300 000).
    pub heartbeat_interval_ms: Option<u64>,
    pub heartbeat_timeout_ms: Option<u64>,
    pub sync_interval_ms: Option<u64>,
    /// A peer silent for this long loses its session (150 000).
    pub session_expiry_ms: Option<u64>,
    /// Notifications queued per subscriber before it is dropped as too slow (256).
    pub subscriber_queue: Option<usize>,
    /// How often the hub checks that a shared store still holds its register, and writes back
    /// what it lost (10 000).
    pub store_check_interval_ms: Option<u64>,
    /// CA and client certificate for a `rediss://` URL.
    pub redis_tls: Option<RawClientTls>,
    /// Serves gRPC over TLS with this certificate; with `client_ca_file`, peers must present a
    /// certificate naming their node id (mutual TLS).
    pub tls: Option<RawServerTls>,
    /// The peers allowed to open sessions, each with its bearer token (or none under mutual
    /// TLS). Empty: any peer (with a certificate naming it, under mutual TLS).
    #[serde(default)]
    pub peers: Vec<RawPeerCredential>,
    /// HTTP/2 streams one connection may have open at once (100).
    pub max_concurrent_streams: Option<u32>,
    /// Requests a peer may make per second on average, and at once after a quiet spell
    /// (50, 100); beyond, `RESOURCE_EXHAUSTED`.
    pub peer_requests_per_sec: Option<u32>,
    pub peer_request_burst: Option<u32>,
}

/// A peer a hub lets open sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerCredential {
    /// The peer's node id.
    pub id: String,
    /// Its bearer token, or a file holding it; neither under mutual TLS alone.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// Raw register-role settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegisterConfig {
    /// Base URL of the peer whose pool this node feeds (`http://host:port`). When absent the
    /// pool is this node's own peer role.
    pub peer_url: Option<String>,
    /// Bearer token of the peer's API (defaults to `admin_token`), or a file holding it.
    pub peer_token: Option<String>,
    pub peer_token_file: Option<PathBuf>,
    /// CA and client certificate for an `https://` peer URL.
    pub peer_tls: Option<RawClientTls>,
    /// Period of the reconciling full sync (300 000).
    pub resync_interval_ms: Option<u64>,
    /// Backoff after a failed push: base (1 000) and cap (60 000).
    pub resync_backoff_base_ms: Option<u64>,
    pub resync_backoff_max_ms: Option<u64>,
    /// Deadline of one push to the peer (10 000).
    pub push_timeout_ms: Option<u64>,
}

/// A validated node configuration.
#[derive(Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub data_dir: Option<PathBuf>,
    pub http: Option<HttpConfig>,
    pub peer: Option<PeerRoleConfig>,
    pub register: Option<RegisterRoleConfig>,
    pub hub: Option<HubRoleConfig>,
    pub restart: RestartPolicy,
    pub call_timeout: Duration,
    /// Period of the node's stall detector (see `herald_actors::StallDetector`).
    pub stall_tick: Duration,
    /// Rendered by `GET /metrics` when the host installed a Prometheus recorder.
    pub metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .field("http", &self.http)
            .field("peer", &self.peer)
            .field("register", &self.register)
            .field("hub", &self.hub)
            .field("restart", &self.restart)
            .field("call_timeout", &self.call_timeout)
            .field("stall_tick", &self.stall_tick)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub admin_token: Secret,
    /// A connection whose request headers do not all arrive within this is closed.
    pub header_timeout: Duration,
    /// HTTPS when present.
    pub tls: Option<ServerTls>,
}

impl HttpConfig {
    /// Long enough for any client on a slow link, short enough that a client trickling its
    /// headers (slowloris) holds a connection for seconds, not for ever.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("addr", &self.addr)
            .field("admin_token", &"<redacted>")
            .field("header_timeout", &self.header_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerRoleConfig {
    pub ad_store: AdStoreConfig,
    pub pool: PoolConfig,
    /// The connection to hubs and the system register replica; `None` without hubs (or on a
    /// hub, which never dials hubs).
    pub hub_connection: Option<HubConnectionConfig>,
    /// Hubs listed but not dialed because this node is a hub itself (FR-027).
    pub ignored_hubs: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HubConnectionConfig {
    pub advertised_address: String,
    pub connection: ConnectionConfig,
    pub heartbeat: HeartbeatConfig,
    pub replica: ReplicaConfig,
    /// The directory of the replica store (redb file + checkpoint).
    pub replica_dir: PathBuf,
    /// TLS of `https://` hubs, and the bearer token sent to every hub.
    pub tls: Option<ClientTls>,
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HubRoleConfig {
    pub grpc_addr: SocketAddr,
    pub store: BlueprintStoreConfig,
    pub authority: AuthorityConfig,
    /// TLS of the gRPC server (mutual when it names client CAs).
    pub tls: Option<ServerTls>,
    /// The peers allowed to open sessions; empty: any.
    pub peers: Vec<PeerCredential>,
    pub limits: HubLimits,
}

/// A peer a hub lets open sessions, and the token it must send (none: its certificate alone,
/// under mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCredential {
    pub id: NodeId,
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlueprintStoreConfig {
    /// A redb file in the data directory (one hub).
    Embedded { path: PathBuf },
    /// Redis shared by several hubs.
    Redis {
        url: String,
        prefix: String,
        /// For a `rediss://` URL.
        tls: Option<ClientTls>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdStoreConfig {
    /// A redb file in the data directory.
    Embedded { path: PathBuf },
    Redis {
        url: String,
        prefix: String,
        /// For a `rediss://` URL.
        tls: Option<ClientTls>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRoleConfig {
    /// The redb file of the ground truth.
    pub ground_truth_path: PathBuf,
    pub pool_link: PoolLinkConfig,
    pub resync: ResyncConfig,
}

#[derive(Clone, PartialEq, Eq)]
pub enum PoolLinkConfig {
    /// The pool of this node's own peer role.
    Local,
    Http {
        base_url: String,
        token: Secret,
        timeout: Duration,
        /// For an `https://` base URL.
        tls: Option<ClientTls>,
    },
}

impl std::fmt::Debug for PoolLinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolLinkConfig::Local => f.write_str("Local"),
            PoolLinkConfig::Http {
                base_url,
                timeout,
                tls,
                ..
            } => f
                .debug_struct("Http")
                .field("base_url", base_url)
                .field("timeout", timeout)
                .field("tls", tls)
                .finish_non_exhaustive(),
        }
    }
}

impl RawNodeConfig {
    /// Checks every value and builds the typed configuration.
    pub fn validate(self) -> Result<NodeConfig, ConfigError> {
        let node_id = NodeId::parse(&self.node_id)
            .map_err(|err| ConfigError::new("node_id", err.to_string()))?;
        if self.peer.is_none() && self.register.is_none() && self.hub.is_none() {
            return Err(ConfigError::new(
                "peer/register/hub",
                "enable at least one role",
            ));
        }
        let admin_token = Secret::from_fields(
            ("admin_token", self.admin_token.clone()),
            ("admin_token_file", self.admin_token_file.clone()),
        )?;
        let http = match &self.http_addr {
            None => None,
            Some(addr) => {
                let addr: SocketAddr = addr.parse().map_err(|err| {
                    ConfigError::new("http_addr", format!("{addr:?} is not host:port ({err})"))
                })?;
                let admin_token = admin_token.clone().ok_or_else(|| {
                    ConfigError::new(
                        "admin_token",
                        "required with http_addr: mutating endpoints need it",
                    )
                })?;
                let header_timeout = duration(
                    "http_header_timeout_ms",
                    self.http_header_timeout_ms,
                    HttpConfig::DEFAULT_HEADER_TIMEOUT,
                )?;
                let tls = match self.http_tls.clone() {
                    Some(tls) => Some(tls.validate("http_tls")?),
                    None => None,
                };
                Some(HttpConfig {
                    addr,
                    admin_token,
                    header_timeout,
                    tls,
                })
            }
        };
        let data_dir = self.data_dir.clone();
        let need_data_dir = |role: &'static str| {
            data_dir.clone().ok_or_else(|| {
                ConfigError::new(
                    "data_dir",
                    format!("required by the {role} (embedded store)"),
                )
            })
        };
        let is_hub = self.hub.is_some();
        let peer = match self.peer {
            None => None,
            Some(raw) => Some(raw.validate(&node_id, is_hub, &need_data_dir)?),
        };
        let hub = match self.hub {
            None => None,
            Some(raw) => Some(raw.validate(&need_data_dir)?),
        };
        let register = match self.register {
            None => None,
            Some(raw) => {
                let ground_truth_path = need_data_dir("register role")?.join("registers.redb");
                Some(raw.validate(ground_truth_path, admin_token.as_ref(), peer.is_some())?)
            }
        };
        let defaults = RestartPolicy::default();
        let restart = RestartPolicy {
            backoff: backoff(
                ("restart_backoff_base_ms", self.restart_backoff_base_ms),
                ("restart_backoff_max_ms", self.restart_backoff_max_ms),
                defaults.backoff,
            )?,
            max_restarts: self.restart_max.unwrap_or(defaults.max_restarts),
            window: duration("restart_window_ms", self.restart_window_ms, defaults.window)?,
            stop_timeout: defaults.stop_timeout,
        };
        let stall_tick = stall_tick(self.stall_tick_ms, peer.as_ref())?;
        Ok(NodeConfig {
            node_id,
            data_dir,
            http,
            peer,
            register,
            hub,
            restart,
            call_timeout: duration(
                "call_timeout_ms",
                self.call_timeout_ms,
                DEFAULT_CALL_TIMEOUT,
            )?,
            stall_tick,
            metrics: None,
        })
    }
}

impl RawPeerConfig {
    fn validate(
        self,
        node_id: &NodeId,
        is_hub: bool,
        need_data_dir: &dyn Fn(&'static str) -> Result<PathBuf, ConfigError>,
    ) -> Result<PeerRoleConfig, ConfigError> {
        let hub_connection = if is_hub || self.hubs.is_empty() {
            None
        } else {
            Some(self.hub_connection(node_id, need_data_dir)?)
        };
        let ad_store = match self.redis_url {
            Some(url) => {
                let tls = redis_tls("peer.redis_url", &url, ("peer.redis_tls", self.redis_tls))?;
                let prefix = self
                    .redis_prefix
                    .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());
                let prefix_ok = !prefix.is_empty()
                    && prefix
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
                if !prefix_ok {
                    return Err(ConfigError::new(
                        "peer.redis_prefix",
                        "must be 1+ characters of [A-Za-z0-9_.-]",
                    ));
                }
                AdStoreConfig::Redis { url, prefix, tls }
            }
            None => AdStoreConfig::Embedded {
                path: need_data_dir("peer role without redis_url")?.join("advertisements.redb"),
            },
        };
        let defaults = PoolConfig::default();
        let pool = PoolConfig {
            ad_ttl: duration("peer.ad_ttl_ms", self.ad_ttl_ms, defaults.ad_ttl)?,
            store_retention: duration_or_zero(
                "peer.store_retention_ms",
                self.store_retention_ms,
                defaults.store_retention,
            ),
            renew_interval: duration(
                "peer.renew_interval_ms",
                self.renew_interval_ms,
                defaults.renew_interval,
            )?,
            sweep_interval: duration(
                "peer.sweep_interval_ms",
                self.sweep_interval_ms,
                defaults.sweep_interval,
            )?,
            store_check_interval: duration(
                "peer.store_check_interval_ms",
                self.store_check_interval_ms,
                defaults.store_check_interval,
            )?,
            store_backoff: backoff(
                ("peer.store_backoff_base_ms", self.store_backoff_base_ms),
                ("peer.store_backoff_max_ms", self.store_backoff_max_ms),
                defaults.store_backoff,
            )?,
            tombstone_horizon: defaults.tombstone_horizon,
            snapshot_clock_tolerance: duration_or_zero(
                "peer.snapshot_clock_tolerance_ms",
                self.snapshot_clock_tolerance_ms,
                defaults.snapshot_clock_tolerance,
            ),
        };
        // A record must outlive several renewals, or one late renewal loses it: the system this
        // replaces set its TTL equal to its refresh period and lost its state at every cycle.
        if pool.renew_interval.saturating_mul(2) > pool.store_expiry() {
            return Err(ConfigError::new(
                "peer.renew_interval_ms",
                format!(
                    "must be at most half of ad_ttl + store_retention ({} ms)",
                    pool.store_expiry().as_millis()
                ),
            ));
        }
        Ok(PeerRoleConfig {
            ad_store,
            pool,
            hub_connection,
            ignored_hubs: if is_hub { self.hubs.len() } else { 0 },
        })
    }

    fn hub_connection(
        &self,
        node_id: &NodeId,
        need_data_dir: &dyn Fn(&'static str) -> Result<PathBuf, ConfigError>,
    ) -> Result<HubConnectionConfig, ConfigError> {
        let mut hubs: Vec<HubEndpoint> = Vec::with_capacity(self.hubs.len());
        for (position, raw) in self.hubs.iter().enumerate() {
            let id = NodeId::parse(&raw.id)
                .map_err(|err| ConfigError::new("peer.hubs.id", err.to_string()))?;
            plain_url("peer.hubs.url", &raw.url, &["http://", "https://"])?;
            if hubs.iter().any(|hub| hub.id == id) {
                return Err(ConfigError::new(
                    "peer.hubs.id",
                    format!("hub {id} is listed twice"),
                ));
            }
            let priority = raw
                .priority
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
            hubs.push(HubEndpoint {
                id,
                url: raw.url.trim_end_matches('/').to_owned(),
                priority,
            });
        }
        let connection_defaults = ConnectionConfig::default();
        let attempts_per_hub = match self.connect_attempts_per_hub {
            Some(0) => {
                return Err(ConfigError::new(
                    "peer.connect_attempts_per_hub",
                    "must be at least 1",
                ));
            }
            Some(attempts) => attempts,
            None => connection_defaults.attempts_per_hub,
        };
        let connection = ConnectionConfig {
            hubs,
            connect_timeout: duration(
                "peer.connect_timeout_ms",
                self.connect_timeout_ms,
                connection_defaults.connect_timeout,
            )?,
            attempts_per_hub,
            retry_pause: connection_defaults.retry_pause,
            isolated_backoff: backoff(
                ("peer.isolated_backoff_base_ms", None),
                ("peer.isolated_backoff_max_ms", self.isolated_backoff_max_ms),
                connection_defaults.isolated_backoff,
            )?,
        };
        let heartbeat_defaults = HeartbeatConfig::default();
        let missed_limit = match self.missed_heartbeats {
            Some(0) => {
                return Err(ConfigError::new(
                    "peer.missed_heartbeats",
                    "must be at least 1",
                ));
            }
            Some(limit) => limit,
            None => heartbeat_defaults.missed_limit,
        };
        let own_stall_share = match self.own_stall_share {
            None => heartbeat_defaults.own_stall_share,
            Some(share) if share > 0.0 && share <= 1.0 => share,
            Some(share) => {
                return Err(ConfigError::new(
                    "peer.own_stall_share",
                    format!("{share} is not in (0, 1]: a share of the heartbeat deadline"),
                ));
            }
        };
        let heartbeat = HeartbeatConfig {
            interval: duration(
                "peer.heartbeat_interval_ms",
                self.heartbeat_interval_ms,
                heartbeat_defaults.interval,
            )?,
            timeout: duration(
                "peer.heartbeat_timeout_ms",
                self.heartbeat_timeout_ms,
                heartbeat_defaults.timeout,
            )?,
            missed_limit,
            own_stall_share,
        };
        let replica_defaults = ReplicaConfig::default();
        let replica = ReplicaConfig {
            sync_interval: duration(
                "peer.sync_interval_ms",
                self.sync_interval_ms,
                replica_defaults.sync_interval,
            )?,
            ..replica_defaults
        };
        Ok(HubConnectionConfig {
            advertised_address: self
                .advertised_address
                .clone()
                .unwrap_or_else(|| node_id.to_string()),
            connection,
            heartbeat,
            replica,
            replica_dir: need_data_dir("peer role with hubs (system register replica)")?
                .join("replica"),
            tls: client_tls_for(
                ("peer.hub_tls", self.hub_tls.clone()),
                (!self.hubs.iter().any(|hub| hub.url.starts_with("https://")))
                    .then_some("no hub URL is https://"),
            )?,
            token: Secret::from_fields(
                ("peer.hub_token", self.hub_token.clone()),
                ("peer.hub_token_file", self.hub_token_file.clone()),
            )?,
        })
    }
}

impl RawHubConfig {
    fn validate(
        self,
        need_data_dir: &dyn Fn(&'static str) -> Result<PathBuf, ConfigError>,
    ) -> Result<HubRoleConfig, ConfigError> {
        let grpc_addr: SocketAddr = self.grpc_addr.parse().map_err(|err| {
            ConfigError::new(
                "hub.grpc_addr",
                format!("{:?} is not host:port ({err})", self.grpc_addr),
            )
        })?;
        if let Some(glob) = &self.host_glob {
            let host = self.advertised_host.as_deref().ok_or_else(|| {
                ConfigError::new("hub.advertised_host", "required with hub.host_glob")
            })?;
            if !glob_matches(glob, host) {
                return Err(ConfigError::new(
                    "hub.advertised_host",
                    format!(
                        "{host:?} does not match {glob:?}: is the hub role meant to run on this host?"
                    ),
                ));
            }
        }
        let store = match self.redis_url {
            Some(url) => {
                let tls = redis_tls("hub.redis_url", &url, ("hub.redis_tls", self.redis_tls))?;
                BlueprintStoreConfig::Redis {
                    url,
                    prefix: self
                        .redis_prefix
                        .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned()),
                    tls,
                }
            }
            None => BlueprintStoreConfig::Embedded {
                path: need_data_dir("hub role without redis_url")?.join("system-register.redb"),
            },
        };
        let defaults = AuthorityConfig::default();
        let subscriber_queue = match self.subscriber_queue {
            Some(0) => {
                return Err(ConfigError::new(
                    "hub.subscriber_queue",
                    "must be at least 1",
                ));
            }
            Some(queue) => queue,
            None => defaults.subscriber_queue,
        };
        let authority = AuthorityConfig {
            heartbeat_interval: duration(
                "hub.heartbeat_interval_ms",
                self.heartbeat_interval_ms,
                defaults.heartbeat_interval,
            )?,
            heartbeat_timeout: duration(
                "hub.heartbeat_timeout_ms",
                self.heartbeat_timeout_ms,
                defaults.heartbeat_timeout,
            )?,
            sync_interval: duration(
                "hub.sync_interval_ms",
                self.sync_interval_ms,
                defaults.sync_interval,
            )?,
            session_expiry: duration(
                "hub.session_expiry_ms",
                self.session_expiry_ms,
                defaults.session_expiry,
            )?,
            subscriber_queue,
            store_check_interval: duration(
                "hub.store_check_interval_ms",
                self.store_check_interval_ms,
                defaults.store_check_interval,
            )?,
            ..defaults
        };
        let tls = match self.tls {
            Some(tls) => Some(tls.validate("hub.tls")?),
            None => None,
        };
        let peers = peer_credentials(self.peers, tls.as_ref())?;
        let limits = HubLimits::from_fields(
            ("hub.max_concurrent_streams", self.max_concurrent_streams),
            ("hub.peer_requests_per_sec", self.peer_requests_per_sec),
            ("hub.peer_request_burst", self.peer_request_burst),
        )?;
        Ok(HubRoleConfig {
            grpc_addr,
            store,
            authority,
            tls,
            peers,
            limits,
        })
    }
}

/// Checks that `url` starts with one of `schemes`.
fn plain_url(field: &'static str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if schemes.iter().any(|scheme| url.starts_with(scheme)) {
        return Ok(());
    }
    Err(ConfigError::new(
        field,
        format!("{url:?} does not start with {}", schemes.join(" or ")),
    ))
}

/// Checks a Redis URL and the TLS settings that go with it: `redis_tls` only with `rediss://`.
fn redis_tls(
    field: &'static str,
    url: &str,
    (tls_field, tls): (&'static str, Option<RawClientTls>),
) -> Result<Option<ClientTls>, ConfigError> {
    plain_url(field, url, &["redis://", "rediss://", "redis+unix://"])?;
    client_tls_for(
        (tls_field, tls),
        (!url.starts_with("rediss://")).then_some("the URL is not rediss://"),
    )
}

/// Validates client TLS settings, which only mean something with a TLS URL: `unused` says
/// why they would be ignored (no TLS URL), and then they are refused rather than ignored.
fn client_tls_for(
    (field, tls): (&'static str, Option<RawClientTls>),
    unused: Option<&str>,
) -> Result<Option<ClientTls>, ConfigError> {
    match (tls, unused) {
        (None, _) => Ok(None),
        (Some(_), Some(why)) => Err(ConfigError::new(
            field,
            format!("set, but {why}: it would be ignored"),
        )),
        (Some(raw), None) => Ok(Some(raw.validate(field)?)),
    }
}

/// The peers a hub lets open sessions: valid, distinct ids, each with a token unless mutual
/// TLS (the hub's `tls` naming client CAs) identifies it.
fn peer_credentials(
    raw: Vec<RawPeerCredential>,
    tls: Option<&ServerTls>,
) -> Result<Vec<PeerCredential>, ConfigError> {
    let mutual_tls = tls.is_some_and(|tls| tls.client_ca_file.is_some());
    let mut peers: Vec<PeerCredential> = Vec::with_capacity(raw.len());
    for peer in raw {
        let id = NodeId::parse(&peer.id)
            .map_err(|err| ConfigError::new("hub.peers.id", err.to_string()))?;
        if peers.iter().any(|known| known.id == id) {
            return Err(ConfigError::new(
                "hub.peers.id",
                format!("peer {id} is listed twice"),
            ));
        }
        let token = Secret::from_fields(
            ("hub.peers.token", peer.token),
            ("hub.peers.token_file", peer.token_file),
        )?;
        if token.is_none() && !mutual_tls {
            return Err(ConfigError::new(
                "hub.peers.token",
                format!(
                    "peer {id} needs a token (or token_file), unless hub.tls.client_ca_file \
                     identifies peers by their certificates"
                ),
            ));
        }
        peers.push(PeerCredential { id, token });
    }
    Ok(peers)
}

/// A configuration file's form of `RawNodeConfig` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration file: {path}: {reason}")]
pub struct ConfigFileError {
    /// Where in the file (`peer.hubs[0].url`), or `.` for the whole file.
    pub path: String,
    pub reason: String,
}

impl RawNodeConfig {
    /// Parses the TOML form of the configuration (the same fields as the serde form). An
    /// unknown key, a missing one or a value of the wrong type is refused with the key's path.
    /// The host reads the file; the library reads no configuration file itself.
    pub fn from_toml(text: &str) -> Result<RawNodeConfig, ConfigFileError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|err| ConfigFileError {
            path: ".".to_owned(),
            reason: err.message().to_owned(),
        })?;
        serde_path_to_error::deserialize(deserializer).map_err(|err| ConfigFileError {
            path: err.path().to_string(),
            reason: err.inner().message().to_owned(),
        })
    }
}

/// `*` matches any run of characters, `?` any one character; case-insensitive (host names).
fn glob_matches(glob: &str, text: &str) -> bool {
    let glob: Vec<char> = glob.to_ascii_lowercase().chars().collect();
    let text: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut g, mut t) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while t < text.len() {
        if g < glob.len() && (glob[g] == '?' || glob[g] == text[t]) {
            g += 1;
            t += 1;
        } else if g < glob.len() && glob[g] == '*' {
            star = Some(g);
            resume = t;
            g += 1;
        } else if let Some(star_at) = star {
            g = star_at + 1;
            resume += 1;
            t = resume;
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|c| *c == '*')
}

impl RawRegisterConfig {
    fn validate(
        self,
        ground_truth_path: PathBuf,
        admin_token: Option<&Secret>,
        local_peer: bool,
    ) -> Result<RegisterRoleConfig, ConfigError> {
        let pool_link = match self.peer_url {
            Some(url) => {
                plain_url("register.peer_url", &url, &["http://", "https://"])?;
                let token = Secret::from_fields(
                    ("register.peer_token", self.peer_token),
                    ("register.peer_token_file", self.peer_token_file),
                )?
                .or_else(|| admin_token.cloned())
                .ok_or_else(|| {
                    ConfigError::new(
                        "register.peer_token",
                        "required with peer_url (or set admin_token)",
                    )
                })?;
                let tls = client_tls_for(
                    ("register.peer_tls", self.peer_tls),
                    (!url.starts_with("https://")).then_some("register.peer_url is not https://"),
                )?;
                PoolLinkConfig::Http {
                    base_url: url.trim_end_matches('/').to_owned(),
                    token,
                    timeout: duration(
                        "register.push_timeout_ms",
                        self.push_timeout_ms,
                        DEFAULT_PUSH_TIMEOUT,
                    )?,
                    tls,
                }
            }
            None if local_peer => PoolLinkConfig::Local,
            None => {
                return Err(ConfigError::new(
                    "register.peer_url",
                    "required when this node does not run the peer role",
                ));
            }
        };
        let defaults = ResyncConfig::default();
        let resync = ResyncConfig {
            interval: duration(
                "register.resync_interval_ms",
                self.resync_interval_ms,
                defaults.interval,
            )?,
            interval_jitter: defaults.interval_jitter,
            backoff: backoff(
                (
                    "register.resync_backoff_base_ms",
                    self.resync_backoff_base_ms,
                ),
                ("register.resync_backoff_max_ms", self.resync_backoff_max_ms),
                defaults.backoff,
            )?,
        };
        Ok(RegisterRoleConfig {
            ground_truth_path,
            pool_link,
            resync,
        })
    }
}

impl NodeConfig {
    /// Lets `GET /metrics` render the host's Prometheus recorder.
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }
}

/// The stall detector's period: given, or `DEFAULT_STALL_TICK`; never longer than the shortest
/// stall a judge asks about (the heartbeat's `own_stall_share` of its deadline), which a
/// coarser ticker would not see in time.
fn stall_tick(millis: Option<u64>, peer: Option<&PeerRoleConfig>) -> Result<Duration, ConfigError> {
    let finest = peer
        .and_then(|peer| peer.hub_connection.as_ref())
        .map(|hubs| hubs.heartbeat.own_stall_threshold());
    let Some(millis) = millis else {
        let tick = finest.map_or(DEFAULT_STALL_TICK, |finest| DEFAULT_STALL_TICK.min(finest));
        return Ok(tick.max(MIN_STALL_TICK));
    };
    let tick = duration("stall_tick_ms", Some(millis), DEFAULT_STALL_TICK)?;
    match finest {
        Some(finest) if tick > finest => Err(ConfigError::new(
            "stall_tick_ms",
            format!(
                "must be at most peer.own_stall_share × peer.heartbeat_timeout_ms ({} ms): a \
                 coarser ticker misses the stalls that excuse a failed heartbeat",
                finest.as_millis()
            ),
        )),
        _ => Ok(tick),
    }
}

fn duration(
    field: &'static str,
    millis: Option<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match millis {
        None => Ok(default),
        Some(0) => Err(ConfigError::new(field, "must be greater than 0")),
        Some(millis) => Ok(Duration::from_millis(millis)),
    }
}

fn duration_or_zero(_field: &'static str, millis: Option<u64>, default: Duration) -> Duration {
    millis.map_or(default, Duration::from_millis)
}

fn backoff(
    (base_field, base): (&'static str, Option<u64>),
    (max_field, max): (&'static str, Option<u64>),
    default: BackoffConfig,
) -> Result<BackoffConfig, ConfigError> {
    let max = duration(max_field, max, default.max)?;
    // A cap below the default base lowers the base with it, so one flag is enough.
    let base = match base {
        None => default.base.min(max),
        given => duration(base_field, given, default.base)?,
    };
    let config = BackoffConfig { base, max };
    if config.max < config.base {
        return Err(ConfigError::new(
            max_field,
            format!("must be at least {base_field}"),
        ));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_only() -> RawNodeConfig {
        RawNodeConfig {
            node_id: "peer-a".into(),
            data_dir: Some("/tmp/herald-test".into()),
            peer: Some(RawPeerConfig::default()),
            ..RawNodeConfig::default()
        }
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = peer_only().validate().unwrap();
        let peer = config.peer.unwrap();
        assert_eq!(peer.pool.ad_ttl, Duration::from_secs(300));
        assert_eq!(peer.pool.snapshot_clock_tolerance, Duration::from_secs(60));
        assert_eq!(
            peer.ad_store,
            AdStoreConfig::Embedded {
                path: "/tmp/herald-test/advertisements.redb".into()
            }
        );
        assert!(config.register.is_none() && config.http.is_none());
        let with_http = RawNodeConfig {
            http_addr: Some("127.0.0.1:0".into()),
            admin_token: Some("t".into()),
            ..peer_only()
        };
        let http = with_http.validate().unwrap().http.unwrap();
        assert_eq!(http.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(RawNodeConfig, &str)> = vec![
            (
                RawNodeConfig {
                    node_id: "bad id".into(),
                    ..peer_only()
                },
                "node_id",
            ),
            (
                RawNodeConfig {
                    data_dir: None,
                    ..peer_only()
                },
                "data_dir",
            ),
            (
                RawNodeConfig {
                    http_addr: Some("127.0.0.1:1".into()),
                    ..peer_only()
                },
                "admin_token",
            ),
            (
                RawNodeConfig {
                    http_addr: Some("nowhere".into()),
                    admin_token: Some("t".into()),
                    ..peer_only()
                },
                "http_addr",
            ),
            (
                RawNodeConfig {
                    http_addr: Some("127.0.0.1:0".into()),
                    admin_token: Some("t".into()),
                    http_header_timeout_ms: Some(0),
                    ..peer_only()
                },
                "http_header_timeout_ms",
            ),
            (
                RawNodeConfig {
                    peer: None,
                    ..peer_only()
                },
                "peer/register/hub",
            ),
            (
                RawNodeConfig {
                    peer: Some(RawPeerConfig {
                        renew_interval_ms: Some(3_600_000),
                        store_retention_ms: Some(0),
                        ..RawPeerConfig::default()
                    }),
                    ..peer_only()
                },
                "peer.renew_interval_ms",
            ),
            (
                RawNodeConfig {
                    peer: None,
                    register: Some(RawRegisterConfig::default()),
                    ..peer_only()
                },
                "register.peer_url",
            ),
            (
                RawNodeConfig {
                    register: Some(RawRegisterConfig {
                        resync_interval_ms: Some(0),
                        ..RawRegisterConfig::default()
                    }),
                    ..peer_only()
                },
                "register.resync_interval_ms",
            ),
        ];
        for (raw, field) in cases {
            let err = raw.clone().validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    fn peer_with_hubs(peer: RawPeerConfig) -> RawNodeConfig {
        RawNodeConfig {
            peer: Some(RawPeerConfig {
                hubs: vec![RawHubEndpoint {
                    id: "n0".into(),
                    url: "http://127.0.0.1:1".into(),
                    priority: None,
                }],
                ..peer
            }),
            ..peer_only()
        }
    }

    #[test]
    fn own_stalls_are_measured_finer_than_the_stalls_that_excuse_a_miss() {
        let config = peer_with_hubs(RawPeerConfig::default()).validate().unwrap();
        let heartbeat = config.peer.unwrap().hub_connection.unwrap().heartbeat;
        assert_eq!(heartbeat.own_stall_share, 0.25);
        assert_eq!(config.stall_tick, DEFAULT_STALL_TICK);

        let fast = peer_with_hubs(RawPeerConfig {
            heartbeat_timeout_ms: Some(200),
            ..RawPeerConfig::default()
        });
        assert_eq!(
            fast.clone().validate().unwrap().stall_tick,
            Duration::from_millis(50),
            "a quarter of a 200 ms deadline"
        );
        let coarse = RawNodeConfig {
            stall_tick_ms: Some(60),
            ..fast
        };
        assert_eq!(coarse.validate().unwrap_err().field, "stall_tick_ms");
        assert_eq!(
            RawNodeConfig {
                stall_tick_ms: Some(500),
                ..peer_only()
            }
            .validate()
            .unwrap()
            .stall_tick,
            Duration::from_millis(500),
            "no judge, no limit"
        );

        for share in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            let raw = peer_with_hubs(RawPeerConfig {
                own_stall_share: Some(share),
                ..RawPeerConfig::default()
            });
            assert_eq!(
                raw.validate().unwrap_err().field,
                "peer.own_stall_share",
                "{share}"
            );
        }
        let raw = RawNodeConfig {
            stall_tick_ms: Some(0),
            ..peer_only()
        };
        assert_eq!(raw.validate().unwrap_err().field, "stall_tick_ms");
    }

    #[test]
    fn tls_urls_are_accepted_and_tls_settings_need_one() {
        let raw = RawNodeConfig {
            register: Some(RawRegisterConfig {
                peer_url: Some("https://peer:8080".into()),
                peer_tls: Some(RawClientTls {
                    ca_file: Some("/etc/herald/ca.pem".into()),
                    ..RawClientTls::default()
                }),
                ..RawRegisterConfig::default()
            }),
            admin_token: Some("t".into()),
            peer: Some(RawPeerConfig {
                redis_url: Some("rediss://redis:6380".into()),
                ..RawPeerConfig::default()
            }),
            ..peer_only()
        };
        let config = raw.clone().validate().unwrap();
        let PoolLinkConfig::Http { tls, .. } = config.register.unwrap().pool_link else {
            panic!("an HTTP link");
        };
        assert_eq!(tls.unwrap().ca_file, Some("/etc/herald/ca.pem".into()));

        let plain_with_tls = RawNodeConfig {
            register: Some(RawRegisterConfig {
                peer_url: Some("http://peer:8080".into()),
                ..raw.register.clone().unwrap()
            }),
            ..raw.clone()
        };
        assert_eq!(
            plain_with_tls.validate().unwrap_err().field,
            "register.peer_tls"
        );
        let redis_with_tls = RawNodeConfig {
            peer: Some(RawPeerConfig {
                redis_url: Some("redis://redis:6379".into()),
                redis_tls: Some(RawClientTls::default()),
                ..RawPeerConfig::default()
            }),
            ..raw
        };
        assert_eq!(
            redis_with_tls.validate().unwrap_err().field,
            "peer.redis_tls"
        );
    }

    #[test]
    fn hub_peers_need_a_token_unless_certificates_name_them() {
        let hub = |peers: Vec<RawPeerCredential>, tls: Option<RawServerTls>| RawNodeConfig {
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                tls,
                peers,
                ..RawHubConfig::default()
            }),
            ..peer_only()
        };
        let bare = RawPeerCredential {
            id: "peer-a".into(),
            ..RawPeerCredential::default()
        };
        assert_eq!(
            hub(vec![bare.clone()], None).validate().unwrap_err().field,
            "hub.peers.token"
        );
        let mutual = RawServerTls {
            cert_file: "hub.pem".into(),
            key_file: "hub.key".into(),
            client_ca_file: Some("peers-ca.pem".into()),
        };
        let config = hub(vec![bare.clone()], Some(mutual)).validate().unwrap();
        assert_eq!(config.hub.unwrap().peers[0].token, None);
        let with_token = RawPeerCredential {
            token_file: Some("/run/secrets/peer-a".into()),
            ..bare
        };
        let twice = hub(vec![with_token.clone(), with_token], None);
        assert_eq!(twice.validate().unwrap_err().field, "hub.peers.id");
        let limits = RawNodeConfig {
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                peer_requests_per_sec: Some(0),
                ..RawHubConfig::default()
            }),
            ..peer_only()
        };
        assert_eq!(
            limits.validate().unwrap_err().field,
            "hub.peer_requests_per_sec"
        );
    }

    #[test]
    fn configuration_files_name_the_key_they_refuse() {
        let err = RawNodeConfig::from_toml(
            "node_id = \"a\"\n[peer]\nredis_url = \"redis://r\"\n[[peer.hubs]]\nid = \"n0\"\nurl = \"http://h\"\npriorty = 1\n",
        )
        .unwrap_err();
        assert_eq!(err.path, "peer.hubs[0].priorty", "{err}");
        assert!(err.reason.contains("priorty"), "{err}");
        let err = RawNodeConfig::from_toml("node_id = 7\n").unwrap_err();
        assert_eq!(err.path, "node_id", "{err}");
        let raw = RawNodeConfig::from_toml("node_id = \"a\"\n[peer]\nad_ttl_ms = 1000\n").unwrap();
        assert_eq!(raw.peer.unwrap().ad_ttl_ms, Some(1000));
    }

    #[test]
    fn globs_match_host_names() {
        assert!(glob_matches("hub-*.example.org", "HUB-1.example.org"));
        assert!(glob_matches("n?", "n0"));
        assert!(!glob_matches("n?", "n10"));
        assert!(!glob_matches("hub-*", "peer-1"));
        assert!(glob_matches("*", ""));
    }

    #[test]
    fn a_hub_never_dials_hubs() {
        let raw = RawNodeConfig {
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                ..RawHubConfig::default()
            }),
            peer: Some(RawPeerConfig {
                hubs: vec![RawHubEndpoint {
                    id: "n0".into(),
                    url: "http://127.0.0.1:1".into(),
                    priority: None,
                }],
                ..RawPeerConfig::default()
            }),
            ..peer_only()
        };
        let config = raw.validate().unwrap();
        assert!(
            config.peer.unwrap().hub_connection.is_none(),
            "FR-027: the hub list is ignored on a hub"
        );
    }

    #[test]
    fn hubs_take_their_priority_from_the_list_order() {
        let hub = |id: &str, url: &str| RawHubEndpoint {
            id: id.into(),
            url: url.into(),
            priority: None,
        };
        let raw = RawNodeConfig {
            peer: Some(RawPeerConfig {
                hubs: vec![hub("n0", "http://a:1/"), hub("n1", "http://b:1")],
                ..RawPeerConfig::default()
            }),
            ..peer_only()
        };
        let connection = raw
            .validate()
            .unwrap()
            .peer
            .unwrap()
            .hub_connection
            .unwrap();
        let hubs = connection.connection.hubs;
        assert_eq!((hubs[0].priority, hubs[1].priority), (0, 1));
        assert_eq!(hubs[0].url, "http://a:1");
    }

    #[test]
    fn a_hub_on_the_wrong_host_is_refused() {
        let raw = RawNodeConfig {
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                advertised_host: Some("peer-7.example.org".into()),
                host_glob: Some("hub-*.example.org".into()),
                ..RawHubConfig::default()
            }),
            ..peer_only()
        };
        assert_eq!(raw.validate().unwrap_err().field, "hub.advertised_host");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            serde_json::from_str::<RawNodeConfig>(r#"{"node_id":"a","nodeid":"b"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn register_role_alone_pushes_over_http_with_the_admin_token() {
        let raw = RawNodeConfig {
            node_id: "reg-a".into(),
            data_dir: Some("/tmp/x".into()),
            admin_token: Some("secret".into()),
            register: Some(RawRegisterConfig {
                peer_url: Some("http://127.0.0.1:9/".into()),
                ..RawRegisterConfig::default()
            }),
            ..RawNodeConfig::default()
        };
        let register = raw.validate().unwrap().register.unwrap();
        assert_eq!(
            register.pool_link,
            PoolLinkConfig::Http {
                base_url: "http://127.0.0.1:9".into(),
                token: "secret".into(),
                timeout: DEFAULT_PUSH_TIMEOUT,
                tls: None,
            }
        );
    }
}
