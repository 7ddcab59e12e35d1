//! Node configuration: a raw, serde-friendly form (`RawNodeConfig`: `deny_unknown_fields`,
//! durations as `*_ms`) validated once into the typed `NodeConfig`, with errors that name the
//! field. The library never reads files or environment variables: the host builds the raw form
//! (from flags, a file, anything) and calls `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use herald_actors::{
    AuthorityConfig, BackoffConfig, ConnectionConfig, DEFAULT_STALL_TICK, HeartbeatConfig,
    PoolConfig, ReplicaConfig, RestartPolicy, ResyncConfig,
};
use herald_messages::{HubEndpoint, NodeId, TrustedKeys};

use crate::cluster::{ClusterConfig, GossipSettings, MembershipConfig};
use crate::grpc::limits::HubLimits;
pub use crate::tls::{
    ClientTls, ClusterTls, RawClientTls, RawClusterTls, RawServerTls, Secret, ServerTls,
};
use crate::tls::{signing_key, trusted_key};
use herald_actors::gossip::GossipConfig;

/// Default key prefix in a shared Redis.
pub const DEFAULT_REDIS_PREFIX: &str = "herald";
/// Default deadline of a call to a local actor (REST → pool, driver → pool).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of a push to a peer's HTTP API.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default database of the MongoDB stores.
pub const DEFAULT_MONGODB_DATABASE: &str = "herald";
/// Default deadline of one connection attempt to MongoDB: short, so a node that starts while
/// MongoDB is down reports it at once and retries with backoff.
pub const DEFAULT_MONGODB_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default wait for a usable MongoDB server (the replica set's primary) before a call fails
/// as unavailable: long enough for an election, short enough to degrade rather than hang.
pub const DEFAULT_MONGODB_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of one store call on MongoDB, transaction retries included (a batch of
/// 10,000 ads is one call).
pub const DEFAULT_MONGODB_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// Reads of `/api/…` (the operator page's data and events included) need the admin token
    /// too (false: reads are open). `/health`, `/metrics` and the page itself stay open.
    pub reads_need_token: Option<bool>,
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
    /// Joins the deployment's cluster (membership, liveness, the register-to-peer link) when
    /// present.
    pub cluster: Option<RawClusterConfig>,
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
    /// The MongoDB (a replica set) every role of this node keeps its state in, unless the role
    /// names a Redis (`peer.redis_url`, `hub.redis_url`): the peer's ads, the register role's
    /// ground truth, the hub's system register. No `data_dir` is needed for them then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<RawMongoConfig>,
}

/// Raw MongoDB settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMongoConfig {
    /// `mongodb://[user:password@]host[:port][,host…]/[?options]`. Transactions and change
    /// streams need a replica set (a single-node one will do).
    pub url: String,
    /// Database of herald's collections (`herald`).
    pub database: Option<String>,
    /// Deadline of one connection attempt (2 000).
    pub connect_timeout_ms: Option<u64>,
    /// Wait for a usable server before a call fails as unavailable (5 000).
    pub server_selection_timeout_ms: Option<u64>,
    /// Deadline of one store call, transaction retries included (30 000).
    pub operation_timeout_ms: Option<u64>,
    /// TLS to MongoDB, with the deployment's CA and, for servers that ask for one, a client
    /// certificate. The URL's own `tls=true&tlsCAFile=…` options work too; this table wins.
    pub tls: Option<RawMongoTls>,
}

/// TLS to MongoDB as configured, in MongoDB's own terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMongoTls {
    /// CAs that sign the servers' certificates (PEM); the system's roots when absent.
    pub ca_file: Option<PathBuf>,
    /// The client certificate chain followed by its private key, in one PEM file (MongoDB's
    /// `tlsCertificateKeyFile`), for servers that require client certificates.
    pub cert_key_file: Option<PathBuf>,
}

/// Raw peer-role settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerConfig {
    /// `redis://host:port[/db]` or `rediss://` (TLS); the embedded store in `data_dir` when
    /// absent.
    pub redis_url: Option<String>,
    /// A Redis Cluster instead of `redis_url`: URLs of one or more of its nodes (`redis://` or
    /// `rediss://`, all alike); the client learns the others from them.
    pub redis_cluster: Option<Vec<String>>,
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
    /// Public keys (PEM, `openssl pkey -pubout`) of the hubs whose signed entries this peer
    /// accepts: with any, an entry that is unsigned or not signed by one of them is refused.
    /// Empty: signatures are not verified. Read when the configuration is validated.
    #[serde(default)]
    pub trusted_hub_keys: Vec<PathBuf>,
    /// The gossip of public ads with the other peers of the cluster (issue 9); it runs when
    /// the node is in a cluster.
    pub gossip: Option<RawGossipConfig>,
}

/// Raw gossip settings (`[peer.gossip]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGossipConfig {
    /// Time between two rounds (1 000).
    pub interval_ms: Option<u64>,
    /// Members a round exchanges with (3).
    pub fanout: Option<usize>,
    /// How long an unreachable peer's ads are kept, marked stale, after it was last
    /// confirmed; more than `peer.ad_ttl_ms` (three ad TTLs).
    pub stale_grace_ms: Option<u64>,
    /// How long a withdrawal is remembered (86 400 000); at least 10 rounds. Longer than any
    /// partition that should heal by deltas (a longer one heals by resending whole records).
    pub tombstone_ttl_ms: Option<u64>,
    /// Largest gossip message, in bytes of JSON (65 536), 1 024 to 4 MiB.
    pub message_budget_bytes: Option<usize>,
    /// Share of the remote ads shown that, stale at once, puts the node in partitioned mode,
    /// in `(0, 1]` (0.5).
    pub partitioned_share: Option<f64>,
}

impl RawGossipConfig {
    fn validate(self, ad_ttl: Duration) -> Result<GossipSettings, ConfigError> {
        let defaults = GossipSettings::defaults(ad_ttl);
        let interval = duration(
            "peer.gossip.interval_ms",
            self.interval_ms,
            defaults.interval,
        )?;
        let fanout = match self.fanout {
            None => defaults.protocol.fanout,
            Some(fanout) if (1..=MAX_GOSSIP_FANOUT).contains(&fanout) => fanout,
            Some(fanout) => {
                return Err(ConfigError::new(
                    "peer.gossip.fanout",
                    format!("{fanout} is not in 1 to {MAX_GOSSIP_FANOUT}"),
                ));
            }
        };
        let stale_grace = duration(
            "peer.gossip.stale_grace_ms",
            self.stale_grace_ms,
            defaults.protocol.stale_grace,
        )?;
        if stale_grace <= ad_ttl {
            return Err(ConfigError::new(
                "peer.gossip.stale_grace_ms",
                format!(
                    "must exceed peer.ad_ttl_ms ({} ms): an unreachable peer's ads are kept, \
                     stale, beyond the time a silent one's live",
                    ad_ttl.as_millis()
                ),
            ));
        }
        let tombstone_ttl = duration(
            "peer.gossip.tombstone_ttl_ms",
            self.tombstone_ttl_ms,
            defaults.protocol.tombstone_ttl,
        )?;
        if tombstone_ttl < interval.saturating_mul(10) {
            return Err(ConfigError::new(
                "peer.gossip.tombstone_ttl_ms",
                format!(
                    "must be at least 10 gossip intervals ({} ms): a withdrawal must outlive \
                     the rounds that spread it",
                    interval.saturating_mul(10).as_millis()
                ),
            ));
        }
        let message_budget = self
            .message_budget_bytes
            .unwrap_or(defaults.protocol.message_budget);
        if !(MIN_GOSSIP_BUDGET..=MAX_GOSSIP_BUDGET).contains(&message_budget) {
            return Err(ConfigError::new(
                "peer.gossip.message_budget_bytes",
                format!("{message_budget} is not in {MIN_GOSSIP_BUDGET} to {MAX_GOSSIP_BUDGET}"),
            ));
        }
        let partitioned_share = match self.partitioned_share {
            None => defaults.partitioned_share,
            Some(share) if share > 0.0 && share <= 1.0 => share,
            Some(share) => {
                return Err(ConfigError::new(
                    "peer.gossip.partitioned_share",
                    format!("{share} is not in (0, 1]: a share of the remote ads shown"),
                ));
            }
        };
        Ok(GossipSettings {
            protocol: GossipConfig {
                fanout,
                message_budget,
                ad_ttl,
                stale_grace,
                tombstone_ttl,
                retention: tombstone_ttl,
            },
            interval,
            partitioned_share,
            persist_debounce: interval,
        })
    }
}

/// Largest gossip fanout accepted.
pub const MAX_GOSSIP_FANOUT: usize = 64;
const MIN_GOSSIP_BUDGET: usize = 1_024;
const MAX_GOSSIP_BUDGET: usize = crate::cluster::wire::PART_BYTES;

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
    /// A Redis Cluster instead of `redis_url`: URLs of one or more of its nodes.
    pub redis_cluster: Option<Vec<String>>,
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
    /// This hub's Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`): every
    /// entry it appends is signed with it. None: entries go unsigned. Read when the
    /// configuration is validated.
    pub signing_key_file: Option<PathBuf>,
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
    /// The node id of the peer whose pool this node feeds over the cluster (needs `cluster`;
    /// instead of `peer_url`).
    pub peer_node_id: Option<String>,
    /// Period of the reconciling full sync (300 000).
    pub resync_interval_ms: Option<u64>,
    /// Backoff after a failed push: base (1 000) and cap (60 000).
    pub resync_backoff_base_ms: Option<u64>,
    pub resync_backoff_max_ms: Option<u64>,
    /// Deadline of one push to the peer (10 000).
    pub push_timeout_ms: Option<u64>,
}

/// Raw cluster settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClusterConfig {
    /// Where this node accepts members' connections, e.g. `10.0.0.5:7000` (port 0 picks one).
    pub listen: String,
    /// Where members dial this node (`host:port`), when it differs from `listen`; required when
    /// `listen` is a wildcard address.
    pub advertised_address: Option<String>,
    /// Members to dial at start (`host:port`); the rest of the cluster is learned from them.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// The deployment's shared secret (or `cookie_file`, a file holding it); one is required.
    pub cookie: Option<String>,
    pub cookie_file: Option<PathBuf>,
    /// Mutual TLS between members (`{cert_file, key_file, ca_file}`); plaintext when absent
    /// (the cookie still authenticates, but nothing after the handshake is).
    pub tls: Option<RawClusterTls>,
    /// Period of liveness pings (1 000); a ping's deadline (the period).
    pub liveness_interval_ms: Option<u64>,
    pub ping_timeout_ms: Option<u64>,
    /// Pings missed in a row before a member is suspected and its session closed (3).
    pub suspect_after_misses: Option<u32>,
    /// Suspect for this long: unreachable (10 000).
    pub unreachable_after_ms: Option<u64>,
    /// A member learned from others and unreachable this long is forgotten (3 600 000).
    pub forget_after_ms: Option<u64>,
    /// Deadline of one dial, connect to ready session (5 000).
    pub connect_timeout_ms: Option<u64>,
    /// A connection that does not authenticate within this is closed (5 000).
    pub handshake_timeout_ms: Option<u64>,
    /// Backoff between redials of one member: base (200) and cap (10 000).
    pub reconnect_backoff_base_ms: Option<u64>,
    pub reconnect_backoff_max_ms: Option<u64>,
    /// Members this node connects to at most (64).
    pub max_members: Option<usize>,
    /// A missed ping is not counted when this process stalled for longer than this share of
    /// the ping deadline meanwhile, in `(0, 1]` (0.25).
    pub own_stall_share: Option<f64>,
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
    pub cluster: Option<ClusterConfig>,
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
            .field(
                "cluster",
                &self.cluster.as_ref().map(|cluster| cluster.listen),
            )
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
    /// `GET /api/…` needs the admin token too.
    pub reads_need_token: bool,
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
            .field("reads_need_token", &self.reads_need_token)
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
    /// The gossip of public ads (runs when the node is in a cluster).
    pub gossip: GossipSettings,
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
    /// A Redis Cluster shared by several hubs, reached through these nodes.
    RedisCluster {
        urls: Vec<String>,
        prefix: String,
        /// For `rediss://` URLs.
        tls: Option<ClientTls>,
    },
    /// MongoDB shared by several hubs.
    Mongo(MongoConfig),
}

/// A validated MongoDB connection: where, which database, how long to wait.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoConfig {
    pub url: String,
    pub database: String,
    pub connect_timeout: Duration,
    pub server_selection_timeout: Duration,
    pub operation_timeout: Duration,
    /// TLS from the configuration's `mongodb.tls` (the URL may ask for TLS on its own).
    pub tls: Option<MongoTls>,
}

/// A validated `RawMongoTls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MongoTls {
    pub ca_file: Option<PathBuf>,
    pub cert_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoConfig")
            .field("url", &without_credentials(&self.url))
            .field("database", &self.database)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Where the register role keeps its registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroundTruthConfig {
    /// A redb file in the data directory.
    Embedded { path: PathBuf },
    /// MongoDB (collection `registers`).
    Mongo(MongoConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdStoreConfig {
    /// A redb file in the data directory.
    Embedded {
        path: PathBuf,
    },
    Redis {
        url: String,
        prefix: String,
        /// For a `rediss://` URL.
        tls: Option<ClientTls>,
    },
    /// A Redis Cluster, reached through these nodes.
    RedisCluster {
        urls: Vec<String>,
        prefix: String,
        /// For `rediss://` URLs.
        tls: Option<ClientTls>,
    },
    Mongo(MongoConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRoleConfig {
    /// Where the registers are kept.
    pub ground_truth: GroundTruthConfig,
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
    /// A peer's pool on another node of the cluster, by node id.
    Cluster { peer: NodeId, timeout: Duration },
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
            PoolLinkConfig::Cluster { peer, timeout } => f
                .debug_struct("Cluster")
                .field("peer", peer)
                .field("timeout", timeout)
                .finish(),
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
                    reads_need_token: self.reads_need_token.unwrap_or(false),
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
        let mongodb = self.mongodb.map(RawMongoConfig::validate).transpose()?;
        let is_hub = self.hub.is_some();
        let peer = match self.peer {
            None => None,
            Some(raw) => Some(raw.validate(&node_id, is_hub, mongodb.as_ref(), &need_data_dir)?),
        };
        let hub = match self.hub {
            None => None,
            Some(raw) => Some(raw.validate(mongodb.as_ref(), &need_data_dir)?),
        };
        let cluster = match self.cluster {
            None => None,
            Some(raw) => Some(raw.validate()?),
        };
        let register = match self.register {
            None => None,
            Some(raw) => {
                let ground_truth = match &mongodb {
                    Some(mongodb) => GroundTruthConfig::Mongo(mongodb.clone()),
                    None => GroundTruthConfig::Embedded {
                        path: need_data_dir("register role without mongodb")?
                            .join("registers.redb"),
                    },
                };
                Some(raw.validate(
                    ground_truth,
                    admin_token.as_ref(),
                    peer.is_some(),
                    cluster.is_some(),
                )?)
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
        let stall_tick = stall_tick(self.stall_tick_ms, peer.as_ref(), cluster.as_ref())?;
        Ok(NodeConfig {
            node_id,
            data_dir,
            http,
            peer,
            register,
            hub,
            cluster,
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
        mongodb: Option<&MongoConfig>,
        need_data_dir: &dyn Fn(&'static str) -> Result<PathBuf, ConfigError>,
    ) -> Result<PeerRoleConfig, ConfigError> {
        let hub_connection = if is_hub || self.hubs.is_empty() {
            None
        } else {
            Some(self.hub_connection(node_id, need_data_dir)?)
        };
        let redis = redis_target(
            ("peer.redis_url", self.redis_url),
            ("peer.redis_cluster", self.redis_cluster),
            ("peer.redis_tls", self.redis_tls),
        )?;
        let ad_store = match redis {
            Some((target, tls)) => {
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
                match target {
                    RedisTarget::Server(url) => AdStoreConfig::Redis { url, prefix, tls },
                    RedisTarget::Cluster(urls) => AdStoreConfig::RedisCluster { urls, prefix, tls },
                }
            }
            None => match mongodb {
                Some(mongodb) => AdStoreConfig::Mongo(mongodb.clone()),
                None => AdStoreConfig::Embedded {
                    path: need_data_dir("peer role without redis_url or mongodb")?
                        .join("advertisements.redb"),
                },
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
        let gossip = self.gossip.unwrap_or_default().validate(pool.ad_ttl)?;
        Ok(PeerRoleConfig {
            ad_store,
            pool,
            hub_connection,
            ignored_hubs: if is_hub { self.hubs.len() } else { 0 },
            gossip,
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
        let trusted_keys = self
            .trusted_hub_keys
            .iter()
            .map(|path| trusted_key("peer.trusted_hub_keys", path))
            .collect::<Result<Vec<_>, _>>()?;
        let replica = ReplicaConfig {
            sync_interval: duration(
                "peer.sync_interval_ms",
                self.sync_interval_ms,
                replica_defaults.sync_interval,
            )?,
            trusted_keys: TrustedKeys::new(trusted_keys),
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
        mongodb: Option<&MongoConfig>,
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
        let redis = redis_target(
            ("hub.redis_url", self.redis_url),
            ("hub.redis_cluster", self.redis_cluster),
            ("hub.redis_tls", self.redis_tls),
        )?;
        let store = match redis {
            Some((target, tls)) => {
                let prefix = self
                    .redis_prefix
                    .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());
                match target {
                    RedisTarget::Server(url) => BlueprintStoreConfig::Redis { url, prefix, tls },
                    RedisTarget::Cluster(urls) => {
                        BlueprintStoreConfig::RedisCluster { urls, prefix, tls }
                    }
                }
            }
            None => match mongodb {
                Some(mongodb) => BlueprintStoreConfig::Mongo(mongodb.clone()),
                None => BlueprintStoreConfig::Embedded {
                    path: need_data_dir("hub role without redis_url or mongodb")?
                        .join("system-register.redb"),
                },
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
            signer: match &self.signing_key_file {
                Some(path) => Some(Arc::new(signing_key("hub.signing_key_file", path)?)),
                None => None,
            },
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

/// Where a role's Redis is: one server or a cluster's nodes.
enum RedisTarget {
    Server(String),
    Cluster(Vec<String>),
}

/// Checks a role's Redis settings: a URL or a cluster (not both), the cluster's node URLs (at
/// least one, `redis://` or `rediss://`, all of one scheme), and the TLS settings that go with
/// them. `None` when neither is set.
fn redis_target(
    (url_field, url): (&'static str, Option<String>),
    (cluster_field, cluster): (&'static str, Option<Vec<String>>),
    tls: (&'static str, Option<RawClientTls>),
) -> Result<Option<(RedisTarget, Option<ClientTls>)>, ConfigError> {
    match (url, cluster) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            cluster_field,
            format!("set together with {url_field}: name one server or one cluster"),
        )),
        (None, None) => Ok(None),
        (Some(url), None) => {
            let tls = redis_tls(url_field, &url, tls)?;
            Ok(Some((RedisTarget::Server(url), tls)))
        }
        (None, Some(urls)) => {
            let Some(first) = urls.first() else {
                return Err(ConfigError::new(
                    cluster_field,
                    "is empty: name at least one node of the cluster",
                ));
            };
            let secure = first.starts_with("rediss://");
            for url in &urls {
                plain_url(cluster_field, url, &["redis://", "rediss://"])?;
                if url.starts_with("rediss://") != secure {
                    return Err(ConfigError::new(
                        cluster_field,
                        "mixes redis:// and rediss:// nodes: use one scheme for all",
                    ));
                }
            }
            let tls = client_tls_for(tls, (!secure).then_some("the URLs are not rediss://"))?;
            Ok(Some((RedisTarget::Cluster(urls), tls)))
        }
    }
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
        ground_truth: GroundTruthConfig,
        admin_token: Option<&Secret>,
        local_peer: bool,
        clustered: bool,
    ) -> Result<RegisterRoleConfig, ConfigError> {
        let push_timeout = duration(
            "register.push_timeout_ms",
            self.push_timeout_ms,
            DEFAULT_PUSH_TIMEOUT,
        )?;
        let pool_link = match (self.peer_url, self.peer_node_id) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "register.peer_node_id",
                    "give peer_url or peer_node_id, not both",
                ));
            }
            (None, Some(peer)) => {
                let peer = NodeId::parse(&peer)
                    .map_err(|err| ConfigError::new("register.peer_node_id", err.to_string()))?;
                if !clustered {
                    return Err(ConfigError::new(
                        "register.peer_node_id",
                        "needs the cluster section (the peer is found through the membership)",
                    ));
                }
                PoolLinkConfig::Cluster {
                    peer,
                    timeout: push_timeout,
                }
            }
            (Some(url), None) => {
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
                    timeout: push_timeout,
                    tls,
                }
            }
            (None, None) if local_peer => PoolLinkConfig::Local,
            (None, None) => {
                return Err(ConfigError::new(
                    "register.peer_url",
                    "required when this node does not run the peer role (or peer_node_id with a cluster)",
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
            ground_truth,
            pool_link,
            resync,
        })
    }
}

impl RawClusterConfig {
    fn validate(self) -> Result<ClusterConfig, ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::new(
                "cluster.listen",
                "required: where this node accepts members (ip:port); any cluster setting \
                 (a [cluster] table, a --cluster-* or --cookie flag, a HERALD_CLUSTER_* variable) \
                 makes this node a cluster member",
            ));
        }
        let listen: SocketAddr = self.listen.parse().map_err(|err| {
            ConfigError::new(
                "cluster.listen",
                format!("{:?} is not ip:port ({err})", self.listen),
            )
        })?;
        let cookie = Secret::from_fields(
            ("cluster.cookie", self.cookie),
            ("cluster.cookie_file", self.cookie_file),
        )?
        .ok_or_else(|| {
            ConfigError::new(
                "cluster.cookie",
                "required with cluster.listen (or cluster.cookie_file): members prove they belong with it",
            )
        })?;
        if let Some(address) = &self.advertised_address {
            host_port("cluster.advertised_address", address)?;
        } else if listen.ip().is_unspecified() {
            return Err(ConfigError::new(
                "cluster.advertised_address",
                format!("required when cluster.listen is a wildcard address ({listen})"),
            ));
        }
        for seed in &self.seeds {
            host_port("cluster.seeds", seed)?;
        }
        let liveness_interval = duration(
            "cluster.liveness_interval_ms",
            self.liveness_interval_ms,
            ClusterConfig::DEFAULT_LIVENESS_INTERVAL,
        )?;
        let ping_timeout = duration(
            "cluster.ping_timeout_ms",
            self.ping_timeout_ms,
            liveness_interval,
        )?;
        let suspect_after = match self.suspect_after_misses {
            Some(0) => {
                return Err(ConfigError::new(
                    "cluster.suspect_after_misses",
                    "must be at least 1",
                ));
            }
            Some(misses) => misses,
            None => ClusterConfig::DEFAULT_SUSPECT_AFTER,
        };
        let max_members = match self.max_members {
            Some(0) => {
                return Err(ConfigError::new(
                    "cluster.max_members",
                    "must be at least 1",
                ));
            }
            Some(max) => max,
            None => ClusterConfig::DEFAULT_MAX_MEMBERS,
        };
        let own_stall_share = match self.own_stall_share {
            None => herald_actors::heartbeat_monitor::DEFAULT_OWN_STALL_SHARE,
            Some(share) if share > 0.0 && share <= 1.0 => share,
            Some(share) => {
                return Err(ConfigError::new(
                    "cluster.own_stall_share",
                    format!("{share} is not in (0, 1]: a share of the ping deadline"),
                ));
            }
        };
        let membership = MembershipConfig {
            liveness_interval,
            suspect_after,
            unreachable_after: duration(
                "cluster.unreachable_after_ms",
                self.unreachable_after_ms,
                ClusterConfig::DEFAULT_UNREACHABLE_AFTER,
            )?,
            forget_after: duration(
                "cluster.forget_after_ms",
                self.forget_after_ms,
                ClusterConfig::DEFAULT_FORGET_AFTER,
            )?,
            connect_timeout: duration(
                "cluster.connect_timeout_ms",
                self.connect_timeout_ms,
                ClusterConfig::DEFAULT_CONNECT_TIMEOUT,
            )?,
            reconnect: backoff(
                (
                    "cluster.reconnect_backoff_base_ms",
                    self.reconnect_backoff_base_ms,
                ),
                (
                    "cluster.reconnect_backoff_max_ms",
                    self.reconnect_backoff_max_ms,
                ),
                BackoffConfig {
                    base: Duration::from_millis(200),
                    max: Duration::from_secs(10),
                },
            )?,
            max_members,
        };
        let tls = match self.tls {
            None => None,
            Some(raw) => Some(raw.validate("cluster.tls")?),
        };
        Ok(ClusterConfig {
            listen,
            advertised_address: self.advertised_address,
            seeds: self.seeds,
            cookie,
            tls,
            membership,
            ping_timeout,
            handshake_timeout: duration(
                "cluster.handshake_timeout_ms",
                self.handshake_timeout_ms,
                ClusterConfig::DEFAULT_HANDSHAKE_TIMEOUT,
            )?,
            own_stall_share,
        })
    }
}

impl RawMongoConfig {
    fn validate(self) -> Result<MongoConfig, ConfigError> {
        if self.url.starts_with("mongodb+srv://") {
            return Err(ConfigError::new(
                "mongodb.url",
                "mongodb+srv:// needs DNS SRV lookups, which this build leaves out; list the \
                 hosts in a mongodb:// URL",
            ));
        }
        if !self.url.starts_with("mongodb://") || self.url.len() == "mongodb://".len() {
            return Err(ConfigError::new(
                "mongodb.url",
                format!(
                    "{:?} is not a mongodb://host[:port] URL",
                    without_credentials(&self.url)
                ),
            ));
        }
        let database = self
            .database
            .unwrap_or_else(|| DEFAULT_MONGODB_DATABASE.to_owned());
        // MongoDB's rules for database names (on every platform), less than 64 bytes.
        let database_ok = !database.is_empty()
            && database.len() < 64
            && !database.chars().any(|c| {
                matches!(
                    c,
                    '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
                )
            });
        if !database_ok {
            return Err(ConfigError::new(
                "mongodb.database",
                format!(
                    "{database:?}: 1 to 63 bytes, none of / \\ . space \" $ * < > : | ? or NUL"
                ),
            ));
        }
        Ok(MongoConfig {
            url: self.url,
            database,
            connect_timeout: duration(
                "mongodb.connect_timeout_ms",
                self.connect_timeout_ms,
                DEFAULT_MONGODB_CONNECT_TIMEOUT,
            )?,
            server_selection_timeout: duration(
                "mongodb.server_selection_timeout_ms",
                self.server_selection_timeout_ms,
                DEFAULT_MONGODB_SERVER_SELECTION_TIMEOUT,
            )?,
            operation_timeout: duration(
                "mongodb.operation_timeout_ms",
                self.operation_timeout_ms,
                DEFAULT_MONGODB_OPERATION_TIMEOUT,
            )?,
            tls: self.tls.map(RawMongoTls::validate).transpose()?,
        })
    }
}

impl RawMongoTls {
    fn validate(self) -> Result<MongoTls, ConfigError> {
        let nonempty = |field: &'static str, path: Option<PathBuf>| match path {
            Some(path) if path.as_os_str().is_empty() => {
                Err(ConfigError::new(field, "must not be empty"))
            }
            path => Ok(path),
        };
        Ok(MongoTls {
            ca_file: nonempty("mongodb.tls.ca_file", self.ca_file)?,
            cert_key_file: nonempty("mongodb.tls.cert_key_file", self.cert_key_file)?,
        })
    }
}

/// Checks that `value` is `host:port` with a port number.
fn host_port(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let valid = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{value:?} is not host:port"),
        ))
    }
}

/// A URL with its `user:password@` left out, for logs and errors.
pub(crate) fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
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
fn stall_tick(
    millis: Option<u64>,
    peer: Option<&PeerRoleConfig>,
    cluster: Option<&ClusterConfig>,
) -> Result<Duration, ConfigError> {
    let finest = peer
        .and_then(|peer| peer.hub_connection.as_ref())
        .map(|hubs| hubs.heartbeat.own_stall_threshold())
        .into_iter()
        .chain(cluster.map(ClusterConfig::own_stall_threshold))
        .min();
    let Some(millis) = millis else {
        let tick = finest.map_or(DEFAULT_STALL_TICK, |finest| DEFAULT_STALL_TICK.min(finest));
        return Ok(tick.max(MIN_STALL_TICK));
    };
    let tick = duration("stall_tick_ms", Some(millis), DEFAULT_STALL_TICK)?;
    match finest {
        Some(finest) if tick > finest => Err(ConfigError::new(
            "stall_tick_ms",
            format!(
                "must be at most the shortest stall that excuses a miss ({} ms: \
                 peer.own_stall_share × peer.heartbeat_timeout_ms, cluster.own_stall_share × \
                 cluster.ping_timeout_ms): a coarser ticker misses those stalls",
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

    /// `redis_cluster` names a cluster's nodes instead of `redis_url`, for the peer's ads and
    /// the hub's register alike, in the TOML form too; bad combinations name their field.
    #[test]
    fn a_redis_cluster_is_named_by_its_nodes_and_checked() {
        let text = "node_id = \"peer-a\"\n[peer]\nredis_cluster = [\"redis://r1:7000\", \"redis://r2:7001\"]\nredis_prefix = \"p\"\n[hub]\ngrpc_addr = \"127.0.0.1:0\"\nredis_cluster = [\"redis://r1:7000\"]\n";
        let config = RawNodeConfig::from_toml(text).unwrap().validate().unwrap();
        assert_eq!(
            config.peer.unwrap().ad_store,
            AdStoreConfig::RedisCluster {
                urls: vec!["redis://r1:7000".into(), "redis://r2:7001".into()],
                prefix: "p".into(),
                tls: None,
            }
        );
        assert_eq!(
            config.hub.unwrap().store,
            BlueprintStoreConfig::RedisCluster {
                urls: vec!["redis://r1:7000".into()],
                prefix: DEFAULT_REDIS_PREFIX.into(),
                tls: None,
            }
        );

        let peer = |peer: RawPeerConfig| RawNodeConfig {
            peer: Some(peer),
            ..peer_only()
        };
        let cluster = |urls: &[&str]| Some(urls.iter().map(|url| (*url).to_owned()).collect());
        let refused = [
            (
                RawPeerConfig {
                    redis_url: Some("redis://r:6379".into()),
                    redis_cluster: cluster(&["redis://r1:7000"]),
                    ..RawPeerConfig::default()
                },
                "peer.redis_cluster",
            ),
            (
                RawPeerConfig {
                    redis_cluster: cluster(&[]),
                    ..RawPeerConfig::default()
                },
                "peer.redis_cluster",
            ),
            (
                RawPeerConfig {
                    redis_cluster: cluster(&["redis+unix:///tmp/r.sock"]),
                    ..RawPeerConfig::default()
                },
                "peer.redis_cluster",
            ),
            (
                RawPeerConfig {
                    redis_cluster: cluster(&["rediss://r1:7000", "redis://r2:7001"]),
                    ..RawPeerConfig::default()
                },
                "peer.redis_cluster",
            ),
            (
                RawPeerConfig {
                    redis_cluster: cluster(&["redis://r1:7000"]),
                    redis_tls: Some(RawClientTls::default()),
                    ..RawPeerConfig::default()
                },
                "peer.redis_tls",
            ),
        ];
        for (raw, field) in refused {
            let err = peer(raw.clone()).validate().unwrap_err();
            assert_eq!(err.field, field, "{raw:?}: {err}");
        }
        let secure = peer(RawPeerConfig {
            redis_cluster: cluster(&["rediss://r1:7000", "rediss://r2:7001"]),
            redis_tls: Some(RawClientTls {
                ca_file: Some("/etc/herald/redis-ca.pem".into()),
                ..RawClientTls::default()
            }),
            ..RawPeerConfig::default()
        });
        let AdStoreConfig::RedisCluster { tls, .. } =
            secure.validate().unwrap().peer.unwrap().ad_store
        else {
            panic!("a Redis Cluster");
        };
        assert_eq!(
            tls.unwrap().ca_file,
            Some("/etc/herald/redis-ca.pem".into())
        );
    }

    /// A hub's signing key and a peer's trusted hub keys are PEM files read at validation: a
    /// missing file, or one holding something else, names its field; the key ids agree.
    #[test]
    fn signing_and_trusted_hub_keys_are_read_from_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let signer = herald_messages::EntrySigner::from_bytes([9; 32]);
        let private = dir.path().join("hub.key");
        let public = dir.path().join("hub.pub");
        std::fs::write(&private, signer.to_pem()).unwrap();
        std::fs::write(&public, signer.trusted_key().to_pem()).unwrap();
        let hub = |key: &std::path::Path| RawNodeConfig {
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                signing_key_file: Some(key.to_owned()),
                ..RawHubConfig::default()
            }),
            ..peer_only()
        };
        let config = hub(&private).validate().unwrap();
        let loaded = config.hub.unwrap().authority.signer.unwrap();
        assert_eq!(loaded.key_id(), signer.key_id());
        for bad in [public.clone(), dir.path().join("missing.key")] {
            let err = hub(&bad).validate().unwrap_err();
            assert_eq!(err.field, "hub.signing_key_file", "{err}");
            assert!(
                err.to_string().contains(&bad.display().to_string()),
                "{err}"
            );
        }

        let peer = |keys: Vec<PathBuf>| {
            peer_with_hubs(RawPeerConfig {
                trusted_hub_keys: keys,
                ..RawPeerConfig::default()
            })
        };
        let config = peer(vec![public.clone()]).validate().unwrap();
        let replica = &config.peer.unwrap().hub_connection.unwrap().replica;
        assert_eq!(
            replica.trusted_keys.key_ids().collect::<Vec<_>>(),
            [signer.key_id()]
        );
        let none = peer(Vec::new()).validate().unwrap();
        assert!(
            none.peer
                .unwrap()
                .hub_connection
                .unwrap()
                .replica
                .trusted_keys
                .is_empty(),
            "no key: nothing verified"
        );
        let err = peer(vec![public, private]).validate().unwrap_err();
        assert_eq!(err.field, "peer.trusted_hub_keys", "{err}");
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

    fn clustered(cluster: RawClusterConfig) -> RawNodeConfig {
        RawNodeConfig {
            cluster: Some(cluster),
            ..peer_only()
        }
    }

    fn cluster_on(listen: &str) -> RawClusterConfig {
        RawClusterConfig {
            listen: listen.into(),
            cookie: Some("c00kie".into()),
            ..RawClusterConfig::default()
        }
    }

    #[test]
    fn cluster_defaults_and_bound() {
        let config = clustered(RawClusterConfig {
            seeds: vec!["10.0.0.1:7000".into(), "hub-a.example:7000".into()],
            ..cluster_on("127.0.0.1:7000")
        })
        .validate()
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.membership.liveness_interval, Duration::from_secs(1));
        assert_eq!(cluster.ping_timeout, Duration::from_secs(1));
        assert_eq!(cluster.membership.suspect_after, 3);
        assert_eq!(
            cluster.suspicion_bound(),
            Duration::from_secs(5),
            "3 missed pings, the last one's deadline, one interval of phase"
        );
        assert_eq!(cluster.seeds.len(), 2);
        assert_eq!(cluster.membership.max_members, 64);
    }

    #[test]
    fn cluster_errors_name_the_field() {
        let cases: Vec<(RawClusterConfig, &str)> = vec![
            (
                RawClusterConfig {
                    cookie: None,
                    ..cluster_on("127.0.0.1:7000")
                },
                "cluster.cookie",
            ),
            (
                RawClusterConfig {
                    cookie: Some("  ".into()),
                    ..cluster_on("127.0.0.1:7000")
                },
                "cluster.cookie",
            ),
            (cluster_on("localhost"), "cluster.listen"),
            (cluster_on("0.0.0.0:7000"), "cluster.advertised_address"),
            (
                RawClusterConfig {
                    seeds: vec!["10.0.0.1".into()],
                    ..cluster_on("127.0.0.1:7000")
                },
                "cluster.seeds",
            ),
            (
                RawClusterConfig {
                    suspect_after_misses: Some(0),
                    ..cluster_on("127.0.0.1:7000")
                },
                "cluster.suspect_after_misses",
            ),
            (
                RawClusterConfig {
                    own_stall_share: Some(1.5),
                    ..cluster_on("127.0.0.1:7000")
                },
                "cluster.own_stall_share",
            ),
            (
                RawClusterConfig {
                    liveness_interval_ms: Some(0),
                    ..cluster_on("127.0.0.1:7000")
                },
                "cluster.liveness_interval_ms",
            ),
            (
                RawClusterConfig {
                    tls: Some(RawClusterTls {
                        cert_file: "node.pem".into(),
                        key_file: "node-key.pem".into(),
                        ca_file: PathBuf::new(),
                    }),
                    ..cluster_on("127.0.0.1:7000")
                },
                "cluster.tls",
            ),
            (
                RawClusterConfig {
                    cookie_file: Some("/run/secrets/cookie".into()),
                    ..cluster_on("127.0.0.1:7000")
                },
                "cluster.cookie_file",
            ),
            (cluster_on(""), "cluster.listen"),
        ];
        for (raw, field) in cases {
            let err = clustered(raw).validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
        // A cookie alone (an exported HERALD_CLUSTER_COOKIE) says why a listen address is needed.
        let err = clustered(cluster_on("")).validate().expect_err("no listen");
        assert!(err.to_string().contains("HERALD_CLUSTER_"), "{err}");
        let wildcard = clustered(RawClusterConfig {
            advertised_address: Some("10.0.0.5:7000".into()),
            ..cluster_on("0.0.0.0:7000")
        });
        assert!(wildcard.validate().is_ok());
    }

    #[test]
    fn a_register_node_names_its_peer_by_id_only_in_a_cluster() {
        let register = |peer_url: Option<&str>, cluster: Option<RawClusterConfig>| RawNodeConfig {
            node_id: "reg-a".into(),
            data_dir: Some("/tmp/x".into()),
            admin_token: Some("secret".into()),
            register: Some(RawRegisterConfig {
                peer_url: peer_url.map(str::to_owned),
                peer_node_id: Some("peer-a".into()),
                ..RawRegisterConfig::default()
            }),
            cluster,
            ..RawNodeConfig::default()
        };
        let config = register(None, Some(cluster_on("127.0.0.1:0")))
            .validate()
            .unwrap();
        assert_eq!(
            config.register.unwrap().pool_link,
            PoolLinkConfig::Cluster {
                peer: NodeId::parse("peer-a").unwrap(),
                timeout: DEFAULT_PUSH_TIMEOUT
            }
        );
        let lone = register(None, None).validate().unwrap_err();
        assert_eq!(lone.field, "register.peer_node_id");
        let both = register(Some("http://p:1"), Some(cluster_on("127.0.0.1:0")))
            .validate()
            .unwrap_err();
        assert_eq!(both.field, "register.peer_node_id");
    }

    #[test]
    fn the_stall_ticker_is_finer_than_the_cluster_s_excused_stall() {
        let config = clustered(RawClusterConfig {
            liveness_interval_ms: Some(100),
            ..cluster_on("127.0.0.1:0")
        })
        .validate()
        .unwrap();
        assert_eq!(config.stall_tick, Duration::from_millis(25));
    }

    fn on_mongodb(mongodb: RawMongoConfig) -> RawNodeConfig {
        RawNodeConfig {
            node_id: "node-m".into(),
            admin_token: Some("secret".into()),
            peer: Some(RawPeerConfig::default()),
            register: Some(RawRegisterConfig::default()),
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                ..RawHubConfig::default()
            }),
            mongodb: Some(mongodb),
            ..RawNodeConfig::default()
        }
    }

    fn mongodb_url(url: &str) -> RawMongoConfig {
        RawMongoConfig {
            url: url.into(),
            ..RawMongoConfig::default()
        }
    }

    /// Every role keeps its state in MongoDB when it is given, without a data directory, with
    /// the documented defaults; a role that names a Redis keeps Redis.
    #[test]
    fn mongodb_serves_every_role_without_a_data_dir() {
        let config = on_mongodb(mongodb_url(
            "mongodb://db-1:27017,db-2:27017/?replicaSet=rs0",
        ))
        .validate()
        .unwrap();
        let expected = MongoConfig {
            url: "mongodb://db-1:27017,db-2:27017/?replicaSet=rs0".into(),
            database: "herald".into(),
            connect_timeout: DEFAULT_MONGODB_CONNECT_TIMEOUT,
            server_selection_timeout: DEFAULT_MONGODB_SERVER_SELECTION_TIMEOUT,
            operation_timeout: DEFAULT_MONGODB_OPERATION_TIMEOUT,
            tls: None,
        };
        assert_eq!(
            config.peer.unwrap().ad_store,
            AdStoreConfig::Mongo(expected.clone())
        );
        assert_eq!(
            config.register.unwrap().ground_truth,
            GroundTruthConfig::Mongo(expected.clone())
        );
        assert_eq!(
            config.hub.unwrap().store,
            BlueprintStoreConfig::Mongo(expected)
        );

        let mut raw = on_mongodb(RawMongoConfig {
            database: Some("herald_test".into()),
            connect_timeout_ms: Some(100),
            server_selection_timeout_ms: Some(200),
            operation_timeout_ms: Some(300),
            ..mongodb_url("mongodb://127.0.0.1:27017")
        });
        raw.peer = Some(RawPeerConfig {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..RawPeerConfig::default()
        });
        let config = raw.validate().unwrap();
        assert!(matches!(
            config.peer.unwrap().ad_store,
            AdStoreConfig::Redis { .. }
        ));
        let GroundTruthConfig::Mongo(mongodb) = config.register.unwrap().ground_truth else {
            panic!("the register role is on MongoDB");
        };
        assert_eq!(mongodb.database, "herald_test");
        assert_eq!(
            (
                mongodb.connect_timeout,
                mongodb.server_selection_timeout,
                mongodb.operation_timeout
            ),
            (
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(300)
            )
        );
    }

    #[test]
    fn mongodb_errors_name_the_field_and_hide_the_password() {
        let cases = [
            (mongodb_url("postgres://u:hunter2@db/x"), "mongodb.url"),
            (mongodb_url("mongodb://"), "mongodb.url"),
            (mongodb_url("mongodb+srv://cluster.example"), "mongodb.url"),
            (
                RawMongoConfig {
                    database: Some("a.b".into()),
                    ..mongodb_url("mongodb://db")
                },
                "mongodb.database",
            ),
            (
                RawMongoConfig {
                    database: Some(String::new()),
                    ..mongodb_url("mongodb://db")
                },
                "mongodb.database",
            ),
            (
                RawMongoConfig {
                    database: Some("d".repeat(64)),
                    ..mongodb_url("mongodb://db")
                },
                "mongodb.database",
            ),
            (
                RawMongoConfig {
                    connect_timeout_ms: Some(0),
                    ..mongodb_url("mongodb://db")
                },
                "mongodb.connect_timeout_ms",
            ),
            (
                RawMongoConfig {
                    server_selection_timeout_ms: Some(0),
                    ..mongodb_url("mongodb://db")
                },
                "mongodb.server_selection_timeout_ms",
            ),
            (
                RawMongoConfig {
                    operation_timeout_ms: Some(0),
                    ..mongodb_url("mongodb://db")
                },
                "mongodb.operation_timeout_ms",
            ),
            (
                RawMongoConfig {
                    tls: Some(RawMongoTls {
                        ca_file: Some(PathBuf::new()),
                        cert_key_file: None,
                    }),
                    ..mongodb_url("mongodb://db")
                },
                "mongodb.tls.ca_file",
            ),
            (
                RawMongoConfig {
                    tls: Some(RawMongoTls {
                        ca_file: None,
                        cert_key_file: Some(PathBuf::new()),
                    }),
                    ..mongodb_url("mongodb://db")
                },
                "mongodb.tls.cert_key_file",
            ),
        ];
        for (mongodb, field) in cases {
            let err = on_mongodb(mongodb).validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let config = on_mongodb(mongodb_url("mongodb://admin:hunter2@db:27017/?w=1"))
            .validate()
            .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("mongodb://db:27017/?w=1"), "{shown}");
        assert_eq!(
            without_credentials("mongodb://a%40b:p@ss@h1,h2/db"),
            "mongodb://h1,h2/db"
        );
        assert_eq!(
            without_credentials("mongodb://h/db?x=a@b"),
            "mongodb://h/db?x=a@b"
        );
    }

    #[test]
    fn gossip_settings_have_defaults_and_precise_errors() {
        let peer = |gossip: RawGossipConfig| RawNodeConfig {
            node_id: "g".into(),
            data_dir: Some("/tmp/herald-gossip-config".into()),
            peer: Some(RawPeerConfig {
                ad_ttl_ms: Some(10_000),
                gossip: Some(gossip),
                ..RawPeerConfig::default()
            }),
            ..RawNodeConfig::default()
        };
        let config = peer(RawGossipConfig::default()).validate().unwrap();
        let gossip = config.peer.unwrap().gossip;
        assert_eq!(gossip.interval, Duration::from_secs(1));
        assert_eq!(gossip.protocol.fanout, 3);
        assert_eq!(gossip.protocol.ad_ttl, Duration::from_secs(10));
        assert_eq!(gossip.protocol.stale_grace, Duration::from_secs(30));
        let field = |gossip: RawGossipConfig| peer(gossip).validate().unwrap_err().field;
        let error = peer(RawGossipConfig {
            stale_grace_ms: Some(10_000),
            ..RawGossipConfig::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(error.field, "peer.gossip.stale_grace_ms");
        assert!(
            error
                .to_string()
                .contains("must exceed peer.ad_ttl_ms (10000 ms)"),
            "{error}"
        );
        assert_eq!(
            field(RawGossipConfig {
                interval_ms: Some(1_000),
                tombstone_ttl_ms: Some(9_999),
                ..RawGossipConfig::default()
            }),
            "peer.gossip.tombstone_ttl_ms"
        );
        assert_eq!(
            field(RawGossipConfig {
                fanout: Some(0),
                ..RawGossipConfig::default()
            }),
            "peer.gossip.fanout"
        );
        assert_eq!(
            field(RawGossipConfig {
                message_budget_bytes: Some(100),
                ..RawGossipConfig::default()
            }),
            "peer.gossip.message_budget_bytes"
        );
        assert_eq!(
            field(RawGossipConfig {
                partitioned_share: Some(1.5),
                ..RawGossipConfig::default()
            }),
            "peer.gossip.partitioned_share"
        );
        let raw = RawNodeConfig::from_toml(
            "node_id = \"a\"\n[peer.gossip]\ninterval_ms = 200\nfanout = 2\n",
        )
        .unwrap();
        let gossip = raw.peer.unwrap().gossip.unwrap();
        assert_eq!((gossip.interval_ms, gossip.fanout), (Some(200), Some(2)));
    }
}
