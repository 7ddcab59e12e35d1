//! `RedisGossipStore`: the `GossipStore` port on Redis, beside the node's ads (`RedisAdStore`)
//! in the same Redis, which several nodes (or a Redis Cluster) may share.
//!
//! Layout: one HASH per node, `{prefix}:gossip:{node_id}` (literal braces: the node id is the
//! hash tag, so the hash lives in the cluster slot of the node's ads); field = the origin's node
//! id, value = the JSON of its `PersistedRecord`. The key sits outside the ad store's namespace
//! (`{prefix}:{node_id}:*`), so neither store has to know the other's key names.
//!
//! A write is one `MULTI`/`EXEC`: one `HSET` of every put, then one `HDEL` of every delete (a
//! delete of an origin put in the same batch wins, as in the in-memory fake). A load is one
//! `HGETALL`; a field whose name is not a node id, whose value does not decode, or whose record
//! names another origin than its field is skipped and named (`{key}[{field}]`), never fatal.
//!
//! No expiry, unlike the ads: a record holds the origin's floor and its withdrawals, and an
//! expired record would let a delayed message re-add a withdrawn ad after a restart (issue 9,
//! "no resurrection"), or let this node reuse its own versions. The gossip decides when an
//! origin is forgotten and deletes its record; the store never does on its own clock. (A Redis
//! evicting keys under `maxmemory` would break this as it breaks the ads: run it `noeviction`.)
//!
//! Connection: `RedisConnection` (shared with the other Redis stores): `new` only parses the
//! URL, so a node starts while Redis is down; a call fails fast with `StoreError::Unavailable`
//! and the next one connects again. A call that finds its connection dropped is sent once more:
//! safe, since a write replaces whole records (applied twice, it stores the same) and a
//! `MULTI`/`EXEC` cut short is not applied.

use async_trait::async_trait;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisWrite, ToRedisArgs};
use tracing::warn;

use herald_actors::ports::{GossipBatch, GossipStore, StoreError, StoredGossip};
use herald_messages::{NodeId, PersistedRecord};

use super::redis_connection::{RedisConnection, RedisOpenError, Request, check_prefix};
use crate::tls::ClientPem;

/// The gossip records of one node in Redis. Cheap to share (`Arc<dyn GossipStore>`).
pub struct RedisGossipStore {
    connection: RedisConnection,
    /// `{prefix}:gossip:{node_id}` with literal braces.
    key: String,
    /// `describe()`'s answer, without credentials.
    description: String,
}

impl RedisGossipStore {
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
        Ok(Self::on(
            RedisConnection::open_with_tls(url, tls)?,
            prefix,
            node_id,
        ))
    }

    /// On a Redis Cluster, reached through the seed nodes `urls` (`rediss://` with `tls`): the
    /// node's hash lives in the slot of its ads. Does not connect (the first call does).
    pub fn new_cluster_with_tls(
        urls: &[String],
        prefix: &str,
        node_id: &NodeId,
        tls: Option<&ClientPem>,
    ) -> Result<Self, RedisOpenError> {
        check_prefix(prefix)?;
        Ok(Self::on(
            RedisConnection::open_cluster_with_tls(urls, tls)?,
            prefix,
            node_id,
        ))
    }

    fn on(connection: RedisConnection, prefix: &str, node_id: &NodeId) -> Self {
        let description = format!("{} (gossip of node {node_id})", connection.describe());
        Self {
            connection,
            key: gossip_key(prefix, node_id),
            description,
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, request: Request<'_>) -> Result<T, StoreError> {
        self.connection.query(request).await.map_err(store_error)
    }

    /// The name of a field in `skipped` and in logs.
    fn field_name(&self, field: &[u8]) -> String {
        format!("{}[{}]", self.key, String::from_utf8_lossy(field))
    }
}

fn gossip_key(prefix: &str, node_id: &NodeId) -> String {
    format!("{prefix}:gossip:{{{node_id}}}")
}

#[async_trait]
impl GossipStore for RedisGossipStore {
    async fn load(&self) -> Result<StoredGossip, StoreError> {
        let mut hgetall = Cmd::new();
        hgetall.arg("HGETALL").arg(&self.key);
        let fields: Vec<(Vec<u8>, Vec<u8>)> = self.query(Request::Cmd(&hgetall)).await?;
        let mut stored = StoredGossip::default();
        stored.records.reserve(fields.len());
        for (field, value) in fields {
            match decode(&field, &value) {
                Ok(record) => stored.records.push(record),
                Err(why) => {
                    let name = self.field_name(&field);
                    warn!(record = %name, why, "gossip record skipped");
                    stored.skipped.push(name);
                }
            }
        }
        stored.records.sort_by(|a, b| a.origin.cmp(&b.origin));
        Ok(stored)
    }

    async fn write(&self, batch: &GossipBatch<'_>) -> Result<(), StoreError> {
        if batch.puts.is_empty() && batch.deletes.is_empty() {
            return Ok(());
        }
        let mut pipe = Pipeline::with_capacity(2);
        pipe.atomic();
        if !batch.puts.is_empty() {
            // Sized once: a record of 100,000 entries is 17 MB of JSON.
            let bytes: usize = batch
                .puts
                .iter()
                .map(|record| record.origin.as_str().len() + record.json_size_hint())
                .sum();
            let mut hset =
                Cmd::with_capacity(2 + 2 * batch.puts.len(), 16 + self.key.len() + bytes);
            hset.arg("HSET").arg(&self.key);
            for record in &batch.puts {
                hset.arg(record.origin.as_str()).arg(Json(record));
            }
            pipe.add_command(hset);
        }
        if !batch.deletes.is_empty() {
            let mut hdel = Cmd::with_capacity(2 + batch.deletes.len(), 0);
            hdel.arg("HDEL").arg(&self.key);
            for origin in &batch.deletes {
                hdel.arg(origin.as_str());
            }
            pipe.add_command(hdel);
        }
        let _: redis::Value = self.query(Request::Pipeline(&pipe)).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// A stored field and its value as a record, or why not.
fn decode(field: &[u8], value: &[u8]) -> Result<PersistedRecord, &'static str> {
    let origin = std::str::from_utf8(field)
        .ok()
        .and_then(|field| NodeId::parse(field).ok())
        .ok_or("the field is not a node id")?;
    let record: PersistedRecord =
        serde_json::from_slice(value).map_err(|_| "the value does not decode")?;
    if record.origin != origin {
        return Err("the record names another origin than its field");
    }
    Ok(record)
}

/// A record serialized as JSON straight into a command's buffer (no intermediate `Vec`).
struct Json<'a>(&'a PersistedRecord);

impl ToRedisArgs for Json<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        serde_json::to_writer(out.writer_for_next_arg(), self.0)
            .expect("a gossip record holds only strings, numbers and enums");
    }
}

/// Connection, I/O, timeouts and server refusals (loading, read-only, out of memory, …) are
/// transient: `Unavailable`. A reply of the wrong shape, or a key of another type than a hash
/// (`WRONGTYPE`), means the store holds something this adapter did not write: `Corrupt`.
fn store_error(err: RedisError) -> StoreError {
    let wrong_shape = matches!(
        err.kind(),
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) || err.code() == Some("WRONGTYPE");
    if wrong_shape {
        StoreError::Corrupt {
            what: format!("unexpected reply from redis: {err}"),
        }
    } else {
        StoreError::Unavailable(Box::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    #[test]
    fn the_hash_carries_the_node_as_hash_tag_outside_the_ads_namespace() {
        let store =
            RedisGossipStore::new("redis://127.0.0.1:6379", "herald", &node("peer-a")).unwrap();
        assert_eq!(store.key, "herald:gossip:{peer-a}");
        assert!(!store.key.starts_with("herald:{peer-a}:"));
    }

    #[test]
    fn describe_never_shows_credentials() {
        let store =
            RedisGossipStore::new("redis://admin:s3cret@10.0.0.7:6380/2", "h", &node("peer-a"))
                .unwrap();
        assert_eq!(
            store.describe(),
            "redis://10.0.0.7:6380/2 (gossip of node peer-a)"
        );
    }

    #[test]
    fn new_refuses_bad_urls_and_prefixes_without_connecting() {
        let node = node("peer-a");
        assert!(matches!(
            RedisGossipStore::new("http://nope", "herald", &node),
            Err(RedisOpenError::InvalidUrl(_))
        ));
        for prefix in ["", "a{b}", "a*", "a:b"] {
            assert!(matches!(
                RedisGossipStore::new("redis://127.0.0.1:1", prefix, &node),
                Err(RedisOpenError::InvalidPrefix(_))
            ));
        }
    }

    #[test]
    fn fields_that_are_not_node_ids_or_name_another_origin_do_not_decode() {
        let record = PersistedRecord {
            origin: node("peer-b"),
            incarnation: 1,
            max: 0,
            floor: 0,
            entries: herald_messages::EntryRun::empty(),
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(decode(b"peer-b", &json), Ok(record));
        assert!(decode(b"peer-c", &json).is_err());
        assert!(decode(b"not a node", &json).is_err());
        assert!(decode(b"\xff", &json).is_err());
        assert!(decode(b"peer-b", b"{").is_err());
    }
}
