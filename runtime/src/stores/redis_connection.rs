//! What the Redis adapters share: opening a client (and checking a key prefix), and the one
//! multiplexed connection a store's calls go through.
//!
//! `RedisConnection::open_with_tls` only parses the URL, so a node starts while Redis is down. The first
//! query builds a `ConnectionManager` that connects lazily and fails fast (short connection and
//! response timeouts, no internal retries); a failure comes back to the caller and the next query
//! connects again. A query that finds its connection dropped (Redis restarted) is sent once more
//! on the fresh connection the manager has just started, so the first call after an outage
//! succeeds: each store's header says why that is safe for its requests. A connection whose
//! handshake failed for another reason than I/O (wrong password, not Redis) is discarded and
//! rebuilt on the next query, since the manager reconnects by itself only after I/O errors.
//!
//! Deliberately not done here: mapping `RedisError` to a port's error enum (each store has its
//! own `store_error`), backoff (the callers' actors do that), pub/sub (`client()` gives the
//! watcher its own connection). TLS (`rediss://`) is the `redis` crate's, on rustls with
//! aws-lc-rs: the configured CA (else the system's roots) and client certificate.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    Client, ClientTlsConfig, Cmd, ConnectionAddr, FromRedisValue, Pipeline, RedisError,
    TlsCertificates,
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

/// A Redis client and the connection manager its queries share. Not `Clone`: share it inside
/// the store (an `Arc` where tasks need it).
pub(super) struct RedisConnection {
    client: Client,
    /// Created on first use (it must be made inside the tokio runtime); connects lazily.
    slot: Mutex<ConnectionSlot>,
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
        let client = match tls {
            None => Client::open(url),
            Some(pem) => Client::build_with_tls(
                url,
                TlsCertificates {
                    client_tls: pem.identity.as_ref().map(|(cert, key)| ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                    root_cert: pem.ca.clone(),
                },
            ),
        }
        .map_err(|err| RedisOpenError::InvalidUrl(Box::new(err)))?;
        Ok(Self {
            client,
            slot: Mutex::new(ConnectionSlot::default()),
        })
    }

    /// The client, for connections of another kind (pub/sub).
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// The server's address as a URL, without user name or password.
    pub(super) fn describe(&self) -> String {
        redacted_url(&self.client)
    }

    /// Sends `request`. When the connection turns out to be dead (Redis restarted, or the last
    /// connection attempt was refused), sends it once more on the fresh connection the manager
    /// has just started. The caller must make that repetition harmless (idempotent requests, a
    /// `MULTI`/`EXEC` cut short is not applied, request tokens).
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        request: Request<'_>,
    ) -> Result<T, RedisError> {
        let (generation, mut conn) = self.manager()?;
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
            self.discard(generation);
        }
        result
    }

    /// The connection manager (created on first use; it connects lazily) and its generation.
    fn manager(&self) -> Result<(u64, ConnectionManager), RedisError> {
        let mut slot = self.lock_slot();
        if let Some(manager) = &slot.manager {
            return Ok((slot.generation, manager.clone()));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        slot.manager = Some(manager.clone());
        Ok((slot.generation, manager))
    }

    /// Drops the manager of `generation` (unless a newer one replaced it already): the next
    /// query builds a new one.
    fn discard(&self, generation: u64) {
        let mut slot = self.lock_slot();
        if slot.generation == generation {
            slot.manager = None;
            slot.generation += 1;
        }
    }

    fn lock_slot(&self) -> MutexGuard<'_, ConnectionSlot> {
        // The slot is only an `Option` and a counter: a panic elsewhere cannot leave it torn.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connection manager in use, if any; the generation tells a replaced one from its successor.
#[derive(Default)]
struct ConnectionSlot {
    generation: u64,
    manager: Option<ConnectionManager>,
}

impl Request<'_> {
    async fn send<T: FromRedisValue>(self, conn: &mut ConnectionManager) -> redis::RedisResult<T> {
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
