//! `RedisAdStore`: the `AdStore` port on Redis, the production store that several nodes (or a
//! Redis Cluster) may share.
//!
//! Layout: every key of a node carries its id as a hash tag, so one node's keys live in one
//! cluster slot and a batch can be one `MULTI`/`EXEC`:
//! - `{prefix}:{node_id}:local:{register_id}` (literal braces around the node id),
//! - `{prefix}:{node_id}:remote:{peer_id}:{register_id}`,
//! - `{prefix}:{node_id}:meta` (the pool's `PoolMeta`).
//!
//! Values are the JSON of `Advertisement` / `PoolMeta`; every key expires (`SET … PX`), on
//! Redis's own clock.
//!
//! A batch is one `MULTI`/`EXEC`: the puts and the `DEL` (their replies ignored), then the meta
//! record as `SET meta … PX ms GET`, whose reply is the record it replaced, read atomically with
//! the batch. A batch of changes adds `XX`, so it never recreates a meta record that the store
//! lost (a `FLUSHALL`, a restart without persistence): the pool compares the old record with its
//! last write and writes everything again when they differ.
//!
//! Connection (`RedisConnection`, shared with `RedisBlueprintStore`): `new` only parses the URL,
//! so a node starts while Redis is down. The first call builds a `ConnectionManager` that
//! connects lazily and fails fast (short connection and response timeouts, no internal retries);
//! a failure comes back as `StoreError::Unavailable` and the next call connects again. A call
//! that finds its connection dropped (Redis restarted) is retried once on a fresh connection:
//! every request here is idempotent in what it stores. (A batch applied twice answers, the second
//! time, with its own meta record instead of the pool's last one: the pool then writes
//! everything again, which is wasteful but never wrong.)
//!
//! Deliberately not done here: backoff and re-persisting after an outage (the pool actor does
//! that), deciding freshness (the pool decides from `refreshed_at`), the Redis Cluster client
//! (the layout is cluster-safe, but this adapter speaks to one server), and TLS (the `redis`
//! crate is built without it: a `rediss://` URL is refused by `new`).

use std::fmt;
use std::io::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use redis::{
    Cmd, ErrorKind, FromRedisValue, ParsingError, Pipeline, RedisError, RedisWrite, ToRedisArgs,
    Value,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use herald_actors::ports::{AdBatch, AdStore, BatchScope, StoreError, StoredPool};
use herald_messages::{AdKey, AdSource, Advertisement, NodeId, PoolMeta, RegisterId};

use super::redis_connection::{RedisConnection, RedisOpenError, Request, check_prefix};
use crate::tls::ClientPem;

/// The ads of one node in Redis. Cheap to share (`Arc<dyn AdStore>`); all calls go through one
/// multiplexed connection.
pub struct RedisAdStore {
    connection: RedisConnection,
    /// `{prefix}:{node_id}:` with literal braces: the start of every key of this node.
    namespace: String,
    /// `describe()`'s answer, without credentials.
    description: String,
}

impl RedisAdStore {
    /// Checks the URL and the prefix; does not connect (the first call does).
    pub fn new(url: &str, prefix: &str, node_id: &NodeId) -> Result<Self, RedisOpenError> {
        Self::new_with_tls(url, prefix, node_id, None)
    }

    /// `new`, with the CA and client certificate of a `rediss://` URL.
    pub fn new_with_tls(
        url: &str,
        prefix: &str,
        node_id: &NodeId,
        tls: Option<&ClientPem>,
    ) -> Result<Self, RedisOpenError> {
        check_prefix(prefix)?;
        let connection = RedisConnection::open_with_tls(url, tls)?;
        let description = format!("{} (node {node_id})", connection.describe());
        Ok(Self {
            connection,
            namespace: format!("{prefix}:{{{node_id}}}:"),
            description,
        })
    }
}

#[async_trait]
impl AdStore for RedisAdStore {
    async fn load(&self) -> Result<StoredPool, StoreError> {
        let mut pool = StoredPool::default();
        let mut wanted: Vec<(Vec<u8>, StoredKey)> = Vec::new();
        for raw in self.scan_namespace().await? {
            match self.parse_key(&raw) {
                Some(key) => wanted.push((raw, key)),
                None => pool
                    .skipped
                    .push(String::from_utf8_lossy(&raw).into_owned()),
            }
        }
        if wanted.is_empty() {
            return Ok(pool);
        }

        let mut pipe = Pipeline::with_capacity(wanted.len().div_ceil(MGET_CHUNK));
        for chunk in wanted.chunks(MGET_CHUNK) {
            let key_bytes: usize = chunk.iter().map(|(raw, _)| raw.len()).sum();
            let mut mget = Cmd::with_capacity(chunk.len() + 1, "MGET".len() + key_bytes);
            mget.arg("MGET");
            for (raw, _) in chunk {
                mget.arg(raw.as_slice());
            }
            pipe.add_command(mget);
        }
        let values: Vec<Vec<Option<Vec<u8>>>> = self.query(Request::Pipeline(&pipe)).await?;
        if values.len() != pipe.len() {
            return Err(StoreError::Corrupt {
                what: format!("{} MGET replies for {} requests", values.len(), pipe.len()),
            });
        }

        pool.ads.reserve(wanted.len());
        for (chunk, chunk_values) in wanted.chunks(MGET_CHUNK).zip(values) {
            if chunk_values.len() != chunk.len() {
                return Err(StoreError::Corrupt {
                    what: format!(
                        "MGET returned {} values for {} keys",
                        chunk_values.len(),
                        chunk.len()
                    ),
                });
            }
            for ((raw, key), value) in chunk.iter().zip(chunk_values) {
                // Expired (or not a string) between SCAN and MGET: nothing to load.
                let Some(value) = value else {
                    continue;
                };
                match key {
                    StoredKey::Meta => match decode::<PoolMeta>(&value) {
                        Some(meta) => pool.meta = Some(meta),
                        None => pool.skipped.push(String::from_utf8_lossy(raw).into_owned()),
                    },
                    StoredKey::Ad(key) => match decode::<Advertisement>(&value) {
                        // A record under another ad's key is as wrong as one that does not decode.
                        Some(ad)
                            if ad.source == key.source && ad.register_id == key.register_id =>
                        {
                            pool.ads.push(ad);
                        }
                        _ => pool.skipped.push(String::from_utf8_lossy(raw).into_owned()),
                    },
                }
            }
        }
        Ok(pool)
    }

    async fn write(
        &self,
        batch: &AdBatch<'_>,
        expiry: Duration,
    ) -> Result<Option<PoolMeta>, StoreError> {
        let expiry_ms = expiry_millis(expiry);
        let has_deletes = !batch.deletes.is_empty();
        let mut pipe = Pipeline::with_capacity(batch.puts.len() + usize::from(has_deletes) + 1);
        pipe.atomic();
        for ad in &batch.puts {
            let mut set = Cmd::with_capacity(5, self.set_capacity(ad));
            set.arg("SET")
                .arg(self.ad_key(&ad.source, &ad.register_id))
                .arg(Json(ad))
                .arg("PX")
                .arg(expiry_ms);
            pipe.add_command(set);
        }
        if has_deletes {
            // One DEL for all: the keys share a slot, and it is one reply instead of many.
            let mut del = Cmd::with_capacity(batch.deletes.len() + 1, batch.deletes.len() * 128);
            del.arg("DEL");
            for key in &batch.deletes {
                del.arg(self.ad_key(&key.source, &key.register_id));
            }
            pipe.add_command(del);
        }
        let mut set_meta = Cmd::with_capacity(7, self.namespace.len() + 192);
        set_meta
            .arg("SET")
            .arg(KeyName::Meta {
                namespace: &self.namespace,
            })
            .arg(Json(&batch.meta))
            .arg("PX")
            .arg(expiry_ms);
        if batch.scope == BatchScope::Changes {
            // Never recreate a lost meta record: only a batch of everything may.
            set_meta.arg("XX");
        }
        set_meta.arg("GET");
        pipe.add_command(set_meta);
        let LastReply(previous) = self.query(Request::Pipeline(&pipe)).await?;
        // A record that does not decode is as good as none: the pool writes everything again,
        // which replaces it.
        Ok(previous.and_then(|value| decode::<PoolMeta>(&value)))
    }

    async fn read_meta(&self) -> Result<Option<PoolMeta>, StoreError> {
        let mut get = Cmd::new();
        get.arg("GET").arg(KeyName::Meta {
            namespace: &self.namespace,
        });
        let value: Option<Vec<u8>> = self.query(Request::Cmd(&get)).await?;
        Ok(value.and_then(|value| decode::<PoolMeta>(&value)))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Keys asked for by one `SCAN` step: large, so a load is few round trips.
const SCAN_COUNT: u64 = 10_000;
/// Keys per `MGET`; the chunks of one load go out as one pipeline.
const MGET_CHUNK: usize = 1_000;
/// Redis refuses a `PX` that overflows when added to its clock; no pool needs more.
const MAX_EXPIRY_MS: u64 = (i64::MAX / 4) as u64;

/// What a key of this node's namespace stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredKey {
    Ad(AdKey),
    Meta,
}

impl RedisAdStore {
    /// Sends `request` through the shared connection, which sends it once more when it finds
    /// the connection dead. Safe: every request here is idempotent in what it stores, and a
    /// `MULTI`/`EXEC` cut short is not applied.
    async fn query<T: FromRedisValue>(&self, request: Request<'_>) -> Result<T, StoreError> {
        self.connection.query(request).await.map_err(store_error)
    }

    /// Every key of this node, each once (SCAN may repeat keys), sorted.
    async fn scan_namespace(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let pattern = format!("{}*", self.namespace);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = Cmd::new();
            scan.arg("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, found): (u64, Vec<Vec<u8>>) = self.query(Request::Cmd(&scan)).await?;
            keys.extend(found);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    fn ad_key<'a>(&'a self, source: &'a AdSource, register_id: &'a RegisterId) -> KeyName<'a> {
        KeyName::Ad {
            namespace: &self.namespace,
            source,
            register_id,
        }
    }

    /// What a key of the namespace stands for; `None` for a key of no known shape.
    fn parse_key(&self, raw: &[u8]) -> Option<StoredKey> {
        let rest = std::str::from_utf8(raw.strip_prefix(self.namespace.as_bytes())?).ok()?;
        if rest == "meta" {
            return Some(StoredKey::Meta);
        }
        if let Some(register_id) = rest.strip_prefix("local:") {
            return Some(StoredKey::Ad(AdKey::local(
                RegisterId::parse(register_id).ok()?,
            )));
        }
        let (peer, register_id) = rest.strip_prefix("remote:")?.split_once(':')?;
        let peer = NodeId::parse(peer).ok()?;
        Some(StoredKey::Ad(AdKey::remote(
            peer,
            RegisterId::parse(register_id).ok()?,
        )))
    }

    /// Bytes of one `SET key value PX ms` command, so its buffer is allocated once.
    fn set_capacity(&self, ad: &Advertisement) -> usize {
        const FIXED_JSON: usize = 256; // field names, enums, numbers, two ids
        let peer = match &ad.source {
            AdSource::Local => 0,
            AdSource::Remote(peer) => peer.as_str().len(),
        };
        let text = ad.name.as_ref().map_or(0, String::len)
            + ad.description.as_ref().map_or(0, String::len);
        let key = self.namespace.len() + "remote::".len() + peer + RegisterId::LEN;
        "SETPX".len() + 20 + key + FIXED_JSON + 2 * peer + text
    }
}

/// The name of a key, written straight into a command's buffer (no `String` per key).
#[derive(Clone, Copy)]
enum KeyName<'a> {
    Ad {
        namespace: &'a str,
        source: &'a AdSource,
        register_id: &'a RegisterId,
    },
    Meta {
        namespace: &'a str,
    },
}

impl fmt::Display for KeyName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyName::Ad {
                namespace,
                source: AdSource::Local,
                register_id,
            } => write!(f, "{namespace}local:{register_id}"),
            KeyName::Ad {
                namespace,
                source: AdSource::Remote(peer),
                register_id,
            } => write!(f, "{namespace}remote:{peer}:{register_id}"),
            KeyName::Meta { namespace } => write!(f, "{namespace}meta"),
        }
    }
}

impl ToRedisArgs for KeyName<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        write!(out.writer_for_next_arg(), "{self}")
            .expect("writing into a command buffer cannot fail");
    }
}

/// The reply of the last command of a `MULTI`/`EXEC` (the meta `SET … GET`): the other replies
/// are dropped as they are, without marking 10,000 commands `ignore()`d (a hash set entry each).
struct LastReply(Option<Vec<u8>>);

impl FromRedisValue for LastReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let Value::Array(mut replies) = value else {
            return Err(format!("expected the replies of a transaction, got {value:?}").into());
        };
        let last = replies
            .pop()
            .ok_or_else(|| ParsingError::from("an empty transaction reply".to_owned()))?;
        redis::from_redis_value(last).map(LastReply)
    }
}

/// A value serialized as JSON straight into a command's buffer (no intermediate `Vec`).
struct Json<'a, T>(&'a T);

impl<T: Serialize> ToRedisArgs for Json<'_, T> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        serde_json::to_writer(out.writer_for_next_arg(), self.0).expect(
            "ads and pool meta hold only strings, numbers and enums, and the buffer cannot fail",
        );
    }
}

fn decode<T: DeserializeOwned>(value: &[u8]) -> Option<T> {
    serde_json::from_slice(value).ok()
}

/// `expiry` in whole milliseconds for `PX`: at least 1 (Redis refuses 0), at most what Redis
/// accepts.
fn expiry_millis(expiry: Duration) -> u64 {
    u64::try_from(expiry.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_EXPIRY_MS)
}

/// Connection, I/O, timeouts and server refusals (loading, read-only, out of memory, …) are
/// transient: `Unavailable`. A reply of the wrong shape means the store holds something this
/// adapter did not write: `Corrupt`.
fn store_error(err: RedisError) -> StoreError {
    match err.kind() {
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse => StoreError::Corrupt {
            what: format!("unexpected reply from redis: {err}"),
        },
        _ => StoreError::Unavailable(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(url: &str) -> RedisAdStore {
        RedisAdStore::new(url, "herald", &NodeId::parse("peer-a").unwrap()).unwrap()
    }

    fn rid(byte: u8) -> RegisterId {
        RegisterId::from_bytes([byte; 16])
    }

    #[test]
    fn keys_carry_the_node_as_hash_tag() {
        let store = store("redis://127.0.0.1:6379");
        let peer = AdSource::Remote(NodeId::parse("peer-b").unwrap());
        assert_eq!(
            store.ad_key(&AdSource::Local, &rid(1)).to_string(),
            format!("herald:{{peer-a}}:local:{}", rid(1))
        );
        assert_eq!(
            store.ad_key(&peer, &rid(2)).to_string(),
            format!("herald:{{peer-a}}:remote:peer-b:{}", rid(2))
        );
        assert_eq!(
            KeyName::Meta {
                namespace: &store.namespace
            }
            .to_string(),
            "herald:{peer-a}:meta"
        );
    }

    #[test]
    fn key_names_parse_back_and_strangers_do_not() {
        let store = store("redis://127.0.0.1:6379");
        let local = AdKey::local(rid(3));
        let remote = AdKey::remote(NodeId::parse("peer_c-9").unwrap(), rid(4));
        for key in [&local, &remote] {
            let name = store.ad_key(&key.source, &key.register_id).to_string();
            assert_eq!(
                store.parse_key(name.as_bytes()),
                Some(StoredKey::Ad(key.clone()))
            );
        }
        assert_eq!(
            store.parse_key(b"herald:{peer-a}:meta"),
            Some(StoredKey::Meta)
        );
        for stranger in [
            "herald:{peer-a}:local:nothex",
            "herald:{peer-a}:remote:peer-b",
            "herald:{peer-a}:remote:bad:peer:0123456789abcdef0123456789abcdef",
            "herald:{peer-a}:metadata",
            "herald:{peer-b}:meta",
            "other:{peer-a}:meta",
        ] {
            assert_eq!(store.parse_key(stranger.as_bytes()), None, "{stranger}");
        }
        assert_eq!(store.parse_key(b"herald:{peer-a}:local:\xff"), None);
    }

    #[test]
    fn describe_never_shows_credentials() {
        let described = store("redis://admin:s3cret@10.0.0.7:6380/2").describe();
        assert_eq!(described, "redis://10.0.0.7:6380/2 (node peer-a)");
        assert_eq!(
            store("redis://127.0.0.1:6379").describe(),
            "redis://127.0.0.1:6379 (node peer-a)"
        );
    }

    #[test]
    fn new_refuses_bad_urls_and_prefixes_without_connecting() {
        let node = NodeId::parse("peer-a").unwrap();
        assert!(matches!(
            RedisAdStore::new("http://nope", "herald", &node),
            Err(RedisOpenError::InvalidUrl(_))
        ));
        for prefix in ["", "a{b}", "a*", "a:b"] {
            assert!(matches!(
                RedisAdStore::new("redis://127.0.0.1:1", prefix, &node),
                Err(RedisOpenError::InvalidPrefix(_))
            ));
        }
    }

    #[test]
    fn expiry_is_whole_positive_milliseconds() {
        assert_eq!(expiry_millis(Duration::from_secs(3)), 3_000);
        assert_eq!(expiry_millis(Duration::ZERO), 1);
        assert_eq!(expiry_millis(Duration::MAX), MAX_EXPIRY_MS);
    }

    #[test]
    fn set_capacity_covers_the_command() {
        let store = store("redis://127.0.0.1:6379");
        let ad = Advertisement {
            register_id: rid(5),
            source: AdSource::Remote(NodeId::parse(&"p".repeat(64)).unwrap()),
            sync_state: herald_messages::SyncState::FullyReplicated,
            is_public: true,
            latest_version: u64::MAX,
            latest_docket_version: u64::MAX,
            name: Some("n".repeat(100)),
            description: Some("d".repeat(300)),
            refreshed_at: herald_messages::Timestamp::from_unix_millis(i64::MIN),
            changed_at: herald_messages::Timestamp::from_unix_millis(i64::MIN),
        };
        let mut set = Cmd::new();
        set.arg("SET")
            .arg(store.ad_key(&ad.source, &ad.register_id))
            .arg(Json(&ad))
            .arg("PX")
            .arg(u64::MAX);
        let data: usize = set
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.len(),
                _ => 0,
            })
            .sum();
        assert!(
            store.set_capacity(&ad) >= data,
            "{} < {data}",
            store.set_capacity(&ad)
        );
    }
}
