//! What the Redis adapters share: opening a client (one server, or a Redis Cluster) and checking
//! a key prefix, and the one multiplexed connection a store's calls go through.
//!
//! One server: `RedisConnection::open_with_tls` only parses the URL, so a node starts while
//! Redis is down. The first query builds a `ConnectionManager` that connects lazily and fails
//! fast (short connection and response timeouts, no internal retries); a failure comes back to
//! the caller and the next query connects again. A query that finds its connection dropped (Redis
//! restarted) is sent once more on the fresh connection the manager has just started, so the
//! first call after an outage succeeds: each store's header says why that is safe for its
//! requests. A connection whose handshake failed for another reason than I/O (wrong password,
//! not Redis) is discarded and rebuilt on the next query, since the manager reconnects by itself
//! only after I/O errors.
//!
//! Redis Cluster: `RedisConnection::open_cluster_with_tls` parses the seed URLs (one or more
//! nodes; the client learns the others from them); the first query builds the `redis` crate's
//! cluster connection (it routes each command, pipeline or `MULTI`/`EXEC` by the slot of its
//! keys, follows `MOVED`/`ASK` and refreshes its slot map), with the same short timeouts and one
//! retry of its own. A failure that says the connection or the cluster is broken (I/O, timeout,
//! `CLUSTERDOWN`, a refused connection) discards it: the next query builds a new one from the
//! seeds, so a cluster restarted or failed over is found again. Every request of the stores keeps
//! its keys in one slot (hash tags), which the cluster client checks before sending. A command
//! that names no key but must run where a key lives (`SCAN` of one node's namespace, `SCRIPT
//! LOAD` before an `EVALSHA`) goes through `query_where`, to the primary that holds the key's
//! slot; on one server it is a plain query.
//!
//! Deliberately not done here: mapping `RedisError` to a port's error enum (each store has its
//! own `store_error`), backoff (the callers' actors do that), pub/sub (`pubsub_clients()` gives
//! the watcher clients of single servers: in a cluster, a message published on any node reaches
//! subscribers of every node, so the watcher subscribes to one seed and moves to the next when it
//! fails). TLS (`rediss://`) is the `redis` crate's, on rustls with aws-lc-rs: the configured CA
//! (else the system's roots) and client certificate.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Client, ClientTlsConfig, Cmd, ConnectionAddr, ErrorKind, FromRedisValue, Pipeline, RedisError,
    ServerErrorKind, TlsCertificates,
};

use herald_actors::ports::BoxError;

use crate::tls::ClientPem;

/// A connection attempt fails after this; the caller retries with backoff.
pub(super) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// A request fails after this (a 10,000-put batch takes tens of ms on loopback, even
/// unoptimized; an append of a 16 MiB document takes well under a second).
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a Redis store's `new` refused its arguments.
#[derive(Debug, thiserror::Error)]
pub enum RedisOpenError {
    #[error("invalid redis url")]
    InvalidUrl(#[source] BoxError),
    #[error("a redis cluster needs at least one node url")]
    NoClusterNodes,
    #[error("invalid redis key prefix {0:?}: must be 1+ characters of [A-Za-z0-9_.-]")]
    InvalidPrefix(String),
}

/// Refuses a key prefix that is empty or holds anything but `[A-Za-z0-9_.-]`: braces would break
/// the hash tag, and glob characters a `SCAN` pattern.
pub(super) fn check_prefix(prefix: &str) -> Result<(), RedisOpenError> {
    let prefix_ok = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !prefix_ok {
        return Err(RedisOpenError::InvalidPrefix(prefix.to_owned()));
    }
    Ok(())
}

/// A Redis client (one server or a cluster) and the connection its queries share. Not `Clone`:
/// share it inside the store (an `Arc` where tasks need it).
pub(super) struct RedisConnection {
    backend: Backend,
}

enum Backend {
    Server {
        client: Client,
        /// Created on first use (it must be made inside the tokio runtime); connects lazily.
        slot: Mutex<ConnectionSlot>,
    },
    Cluster {
        /// Boxed: a cluster client is several times the size of the other variant.
        client: Box<ClusterClient>,
        /// A client of each seed node, for pub/sub and `describe`.
        seeds: Vec<Client>,
        /// Created by the first query; replaced after a failure that broke it.
        slot: Mutex<ClusterSlot>,
    },
}

/// One request, sent through `RedisConnection::query`.
#[derive(Clone, Copy)]
pub(super) enum Request<'a> {
    Cmd(&'a Cmd),
    Pipeline(&'a Pipeline),
}

impl RedisConnection {
    /// Parses the URL; does not connect (the first query does). For `rediss://`, trusts `tls`'
    /// CA (the system's roots without it) and presents its client certificate.
    pub(super) fn open_with_tls(
        url: &str,
        tls: Option<&ClientPem>,
    ) -> Result<Self, RedisOpenError> {
        Ok(Self {
            backend: Backend::Server {
                client: server_client(url, tls)?,
                slot: Mutex::new(ConnectionSlot::default()),
            },
        })
    }

    /// Parses the URLs of a Redis Cluster's seed nodes; does not connect (the first query does).
    /// TLS as for `open_with_tls` (`rediss://` URLs).
    pub(super) fn open_cluster_with_tls(
        urls: &[String],
        tls: Option<&ClientPem>,
    ) -> Result<Self, RedisOpenError> {
        if urls.is_empty() {
            return Err(RedisOpenError::NoClusterNodes);
        }
        let seeds = urls
            .iter()
            .map(|url| server_client(url, tls))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = ClusterClientBuilder::new(urls.iter().map(String::as_str))
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .overall_response_timeout(Some(CLUSTER_OVERALL_TIMEOUT))
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_RETRY_WAIT_MS)
            .max_retry_wait(CLUSTER_RETRY_WAIT_MS);
        if let Some(pem) = tls {
            builder = builder.certs(certificates(pem));
        }
        let client = builder
            .build()
            .map_err(|err| RedisOpenError::InvalidUrl(Box::new(err)))?;
        Ok(Self {
            backend: Backend::Cluster {
                client: Box::new(client),
                seeds,
                slot: Mutex::new(ClusterSlot::default()),
            },
        })
    }

    /// Clients of single servers to subscribe through: the server, or every seed node of a
    /// cluster (a subscriber of any node hears what is published on all of them).
    pub(super) fn pubsub_clients(&self) -> &[Client] {
        match &self.backend {
            Backend::Server { client, .. } => std::slice::from_ref(client),
            Backend::Cluster { seeds, .. } => seeds,
        }
    }

    /// The server's address as a URL (a cluster's seed nodes, `redis-cluster://a:1,b:2`),
    /// without user name or password.
    pub(super) fn describe(&self) -> String {
        match &self.backend {
            Backend::Server { client, .. } => redacted_url(client),
            Backend::Cluster { seeds, .. } => {
                let nodes: Vec<String> = seeds
                    .iter()
                    .map(|seed| {
                        let url = redacted_url(seed);
                        url.split_once("://")
                            .map_or(url.clone(), |(_, rest)| rest.to_owned())
                    })
                    .collect();
                let scheme = if redacted_url(&seeds[0]).starts_with("rediss://") {
                    "rediss-cluster"
                } else {
                    "redis-cluster"
                };
                format!("{scheme}://{}", nodes.join(","))
            }
        }
    }

    /// Sends `request`. On one server, when the connection turns out to be dead (Redis
    /// restarted, or the last connection attempt was refused), sends it once more on the fresh
    /// connection the manager has just started; a cluster connection retries once by itself.
    /// The caller must make that repetition harmless (idempotent requests, a `MULTI`/`EXEC` cut
    /// short is not applied, request tokens).
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        request: Request<'_>,
    ) -> Result<T, RedisError> {
        match &self.backend {
            Backend::Server { client, slot } => {
                let (generation, mut conn) = server_manager(client, slot)?;
                let mut result = request.send(&mut conn).await;
                if let Err(err) = &result
                    && err.is_io_error()
                    && err.is_unrecoverable_error()
                {
                    result = request.send(&mut conn).await;
                }
                if let Err(err) = &result
                    && err.is_unrecoverable_error()
                    && !err.is_io_error()
                {
                    // The manager reconnects by itself only after I/O errors: a connection whose
                    // handshake failed otherwise (wrong password, not Redis) would stay failed.
                    discard_server(slot, generation);
                }
                result
            }
            Backend::Cluster { client, slot, .. } => {
                let (generation, mut conn) = cluster_connection(client, slot).await?;
                let result = request.send(&mut conn).await;
                discard_broken_cluster(slot, generation, &result);
                result
            }
        }
    }

    /// Sends `cmd` where `key` lives: on one server, there; in a cluster, to the primary that
    /// holds `key`'s slot (for commands that name no key, or not that one: `SCAN`,
    /// `SCRIPT LOAD`).
    pub(super) async fn query_where<T: FromRedisValue>(
        &self,
        key: &str,
        cmd: &Cmd,
    ) -> Result<T, RedisError> {
        match &self.backend {
            Backend::Server { .. } => self.query(Request::Cmd(cmd)).await,
            Backend::Cluster { client, slot, .. } => {
                let (generation, mut conn) = cluster_connection(client, slot).await?;
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                let result = conn.route_command(cmd.clone(), routing).await;
                discard_broken_cluster(slot, generation, &result);
                Ok(T::from_redis_value(result?)?)
            }
        }
    }
}

/// A client of one server: its URL, and for `rediss://` the CA and client certificate.
fn server_client(url: &str, tls: Option<&ClientPem>) -> Result<Client, RedisOpenError> {
    match tls {
        None => Client::open(url),
        Some(pem) => Client::build_with_tls(url, certificates(pem)),
    }
    .map_err(|err| RedisOpenError::InvalidUrl(Box::new(err)))
}

fn certificates(pem: &ClientPem) -> TlsCertificates {
    TlsCertificates {
        client_tls: pem.identity.as_ref().map(|(cert, key)| ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.clone(),
        }),
        root_cert: pem.ca.clone(),
    }
}

/// Retries of the cluster client after a redirection, a `TRYAGAIN` or a broken node connection
/// (the caller's backoff does the rest), the wait between, and its deadline for a request with
/// its retries.
const CLUSTER_RETRIES: u32 = 1;
const CLUSTER_RETRY_WAIT_MS: u64 = 100;
const CLUSTER_OVERALL_TIMEOUT: Duration = Duration::from_secs(4);

/// The connection manager (created on first use; it connects lazily) and its generation.
fn server_manager(
    client: &Client,
    slot: &Mutex<ConnectionSlot>,
) -> Result<(u64, ConnectionManager), RedisError> {
    let mut slot = lock(slot);
    if let Some(manager) = &slot.manager {
        return Ok((slot.generation, manager.clone()));
    }
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(0);
    let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
    slot.manager = Some(manager.clone());
    Ok((slot.generation, manager))
}

/// Drops the manager of `generation` (unless a newer one replaced it already): the next query
/// builds a new one.
fn discard_server(slot: &Mutex<ConnectionSlot>, generation: u64) {
    let mut slot = lock(slot);
    if slot.generation == generation {
        slot.manager = None;
        slot.generation += 1;
    }
}

/// The cluster connection and its generation, connecting when there is none (within
/// `CONNECTION_TIMEOUT`; two callers may both connect, the first to finish is kept).
async fn cluster_connection(
    client: &ClusterClient,
    slot: &Mutex<ClusterSlot>,
) -> Result<(u64, ClusterConnection), RedisError> {
    if let Some(found) = lock(slot).current() {
        return Ok(found);
    }
    let connected = tokio::time::timeout(
        CONNECTION_TIMEOUT + RESPONSE_TIMEOUT,
        client.get_async_connection(),
    )
    .await
    .map_err(|_| {
        RedisError::from((
            ErrorKind::Io,
            "no redis cluster node answered",
            format!("within {:?}", CONNECTION_TIMEOUT + RESPONSE_TIMEOUT),
        ))
    })??;
    let mut slot = lock(slot);
    if let Some(found) = slot.current() {
        return Ok(found);
    }
    slot.connection = Some(connected.clone());
    Ok((slot.generation, connected))
}

/// Drops the cluster connection of `generation` when `result` says it (or the cluster) is
/// broken, so the next query connects again from the seeds.
fn discard_broken_cluster<T>(
    slot: &Mutex<ClusterSlot>,
    generation: u64,
    result: &Result<T, RedisError>,
) {
    let Err(err) = result else {
        return;
    };
    let broken = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain)
        );
    if !broken {
        return;
    }
    let mut slot = lock(slot);
    if slot.generation == generation {
        slot.connection = None;
        slot.generation += 1;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The slots hold only an `Option` and a counter: a panic elsewhere cannot leave them torn.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cluster connection in use, if any; the generation tells a replaced one from its successor.
#[derive(Default)]
struct ClusterSlot {
    generation: u64,
    connection: Option<ClusterConnection>,
}

impl ClusterSlot {
    fn current(&self) -> Option<(u64, ClusterConnection)> {
        self.connection
            .as_ref()
            .map(|connection| (self.generation, connection.clone()))
    }
}

/// The connection manager in use, if any; the generation tells a replaced one from its successor.
#[derive(Default)]
struct ConnectionSlot {
    generation: u64,
    manager: Option<ConnectionManager>,
}

impl Request<'_> {
    async fn send<T: FromRedisValue>(
        self,
        conn: &mut (impl ConnectionLike + Send),
    ) -> redis::RedisResult<T> {
        match self {
            Request::Cmd(cmd) => cmd.query_async(conn).await,
            Request::Pipeline(pipe) => pipe.query_async(conn).await,
        }
    }
}

/// The server's address as a URL, without user name or password.
fn redacted_url(client: &Client) -> String {
    let info = client.get_connection_info();
    let db = info.redis_settings().db();
    let db = if db == 0 {
        String::new()
    } else {
        format!("/{db}")
    };
    let host_port = |host: &str, port: u16| {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{}{db}", host_port(host, *port)),
        ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{}{db}", host_port(host, *port))
        }
        ConnectionAddr::Unix(path) => format!("redis+unix://{}{db}", path.display()),
        other => format!("redis://{other}{db}"),
    }
}
