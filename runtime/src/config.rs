//! Node configuration: a raw, serde-friendly form (`RawNodeConfig`: `deny_unknown_fields`,
//! durations as `*_ms`) validated once into the typed `NodeConfig`, with errors that name the
//! field. The library never reads files or environment variables: the host builds the raw form
//! (from flags, a file, anything) and calls `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use herald_actors::{BackoffConfig, PoolConfig, RestartPolicy, ResyncConfig};
use herald_messages::NodeId;

/// Default key prefix in a shared Redis.
pub const DEFAULT_REDIS_PREFIX: &str = "herald";
/// Default deadline of a call to a local actor (REST → pool, driver → pool).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of a push to a peer's HTTP API.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration value that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
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
    /// Bearer token required by mutating endpoints. Required with `http_addr`.
    pub admin_token: Option<String>,
    /// Runs the peer role (advertisement pool) when present.
    pub peer: Option<RawPeerConfig>,
    /// Runs the register role (ground truth and resync driver) when present.
    pub register: Option<RawRegisterConfig>,
    /// Failures of one actor tolerated within `restart_window_ms` before the node stops (5).
    pub restart_max: Option<u32>,
    pub restart_window_ms: Option<u64>,
    pub restart_backoff_base_ms: Option<u64>,
    pub restart_backoff_max_ms: Option<u64>,
    /// Deadline of calls to local actors (10 000).
    pub call_timeout_ms: Option<u64>,
}

/// Raw peer-role settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerConfig {
    /// `redis://host:port[/db]`; the embedded store in `data_dir` when absent.
    pub redis_url: Option<String>,
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
}

/// Raw register-role settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegisterConfig {
    /// Base URL of the peer whose pool this node feeds (`http://host:port`). When absent the
    /// pool is this node's own peer role.
    pub peer_url: Option<String>,
    /// Bearer token of the peer's API (defaults to `admin_token`).
    pub peer_token: Option<String>,
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
    pub restart: RestartPolicy,
    pub call_timeout: Duration,
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
            .field("restart", &self.restart)
            .field("call_timeout", &self.call_timeout)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub admin_token: String,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("addr", &self.addr)
            .field("admin_token", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerRoleConfig {
    pub ad_store: AdStoreConfig,
    pub pool: PoolConfig,
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
        token: String,
        timeout: Duration,
    },
}

impl std::fmt::Debug for PoolLinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolLinkConfig::Local => f.write_str("Local"),
            PoolLinkConfig::Http {
                base_url, timeout, ..
            } => f
                .debug_struct("Http")
                .field("base_url", base_url)
                .field("timeout", timeout)
                .finish_non_exhaustive(),
        }
    }
}

impl RawNodeConfig {
    /// Checks every value and builds the typed configuration.
    pub fn validate(self) -> Result<NodeConfig, ConfigError> {
        let node_id = NodeId::parse(&self.node_id)
            .map_err(|err| ConfigError::new("node_id", err.to_string()))?;
        if self.peer.is_none() && self.register.is_none() {
            return Err(ConfigError::new(
                "peer/register",
                "enable at least one role",
            ));
        }
        let admin_token = match &self.admin_token {
            Some(token) if token.trim().is_empty() => {
                return Err(ConfigError::new("admin_token", "must not be empty"));
            }
            other => other.clone(),
        };
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
                Some(HttpConfig { addr, admin_token })
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
        let peer = match self.peer {
            None => None,
            Some(raw) => Some(raw.validate(&need_data_dir)?),
        };
        let register = match self.register {
            None => None,
            Some(raw) => {
                let ground_truth_path = need_data_dir("register role")?.join("registers.redb");
                Some(raw.validate(ground_truth_path, admin_token.as_deref(), peer.is_some())?)
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
        Ok(NodeConfig {
            node_id,
            data_dir,
            http,
            peer,
            register,
            restart,
            call_timeout: duration(
                "call_timeout_ms",
                self.call_timeout_ms,
                DEFAULT_CALL_TIMEOUT,
            )?,
            metrics: None,
        })
    }
}

impl RawPeerConfig {
    fn validate(
        self,
        need_data_dir: &dyn Fn(&'static str) -> Result<PathBuf, ConfigError>,
    ) -> Result<PeerRoleConfig, ConfigError> {
        let ad_store = match self.redis_url {
            Some(url) => {
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+unix://"))
                {
                    return Err(ConfigError::new(
                        "peer.redis_url",
                        format!("{url:?} is not a redis:// URL"),
                    ));
                }
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
                AdStoreConfig::Redis { url, prefix }
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
        Ok(PeerRoleConfig { ad_store, pool })
    }
}

impl RawRegisterConfig {
    fn validate(
        self,
        ground_truth_path: PathBuf,
        admin_token: Option<&str>,
        local_peer: bool,
    ) -> Result<RegisterRoleConfig, ConfigError> {
        let pool_link = match self.peer_url {
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::new(
                        "register.peer_url",
                        format!("{url:?} is not an http(s) URL"),
                    ));
                }
                let token = self
                    .peer_token
                    .or_else(|| admin_token.map(str::to_owned))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "register.peer_token",
                            "required with peer_url (or set admin_token)",
                        )
                    })?;
                PoolLinkConfig::Http {
                    base_url: url.trim_end_matches('/').to_owned(),
                    token,
                    timeout: duration(
                        "register.push_timeout_ms",
                        self.push_timeout_ms,
                        DEFAULT_PUSH_TIMEOUT,
                    )?,
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
        assert_eq!(
            peer.ad_store,
            AdStoreConfig::Embedded {
                path: "/tmp/herald-test/advertisements.redb".into()
            }
        );
        assert!(config.register.is_none() && config.http.is_none());
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
                    peer: None,
                    ..peer_only()
                },
                "peer/register",
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
                timeout: DEFAULT_PUSH_TIMEOUT
            }
        );
    }
}
