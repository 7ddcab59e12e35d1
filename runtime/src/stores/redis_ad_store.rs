//! `RedisAdStore`: the `AdStore` port on Redis, the production store that several nodes (or a
//! Redis Cluster) may share.
//!
//! Layout: three keys per node, each carrying the node id as a hash tag, so one node's keys live
//! in one cluster slot and every request goes to that slot (a batch, the start of a load and
//! the migration are each one `MULTI`/`EXEC`):
//! - `{prefix}:{node_id}:ads:local`, a hash: register id → the ad's JSON,
//! - `{prefix}:{node_id}:ads:remote`, a hash: `{peer_id}:{register_id}` → the ad's JSON,
//! - `{prefix}:{node_id}:ads:meta`, a string: the pool's `PoolMeta` JSON
//!
//! (literal braces around the node id). A reload is one transaction, `GET` of the meta record
//! and `HLEN` of both hashes, then an `HSCAN` of each hash, 1,000 fields a step
//! (`HSCAN_COUNT`), each step decoded and dropped before the next: no key discovery (`SCAN`),
//! and the raw fields and values of a whole pool are never held at once (one `HGETALL` of
//! 50,000 fields held them all; see BENCHMARKS.md, issue 11 item 3). The meta record is read
//! first: only this node's pool writes these keys, and not during its load, but should a write
//! slip in between (an old process of the node still running), the record read is older than
//! the ads, so the pool's next batch finds another mark and writes everything again (never the
//! reverse: a mark newer than the ads read). A field `HSCAN` returns twice (the hash rehashed
//! between two steps) is kept once.
//!
//! A batch is one `MULTI`/`EXEC`: a batch of everything first `UNLINK`s both hashes (so the
//! store then holds exactly the pool's ads, nothing a store restored from an old copy kept),
//! then one `HSET` per 1,000 puts and one `HDEL` per hash for the deletes, `PEXPIRE` of both
//! hashes, and the meta record as `SET meta … PX ms GET`, whose reply is the record it replaced,
//! read atomically with the batch. A batch of changes adds `XX`, so it never recreates a meta
//! record that the store lost (a `FLUSHALL`, a restart without persistence): the pool compares
//! the old record with its last write and writes everything again when they differ. Replies
//! other than the last are dropped unparsed.
//!
//! Expiry, on Redis's own clock: every batch renews both hashes and the meta record to `expiry`,
//! so the pool's records expire together, `expiry` after its last write (a hash field has no
//! expiry of its own before Redis 7.4). Liveness is the pool's, from `refreshed_at`; the expiry
//! only clears the records of a node that stopped.
//!
//! Migration from the layout before (one key per ad, `{prefix}:{node_id}:local:{register_id}`,
//! `…:remote:{peer_id}:{register_id}`, meta in `…:meta`): a load that finds no meta record
//! under `ads:meta` (a store of the old layout, a new one, or one that lost its data) looks for
//! old keys with one `SCAN` of the node's namespace (in a Redis Cluster, on the primary that
//! holds the node's slot, where every key of the namespace lives). When
//! it finds some, it reads them (`MGET`, and `PTTL` for their remaining life), and one
//! transaction writes their ads into the hashes (an ad already in a hash wins), their meta
//! record under `ads:meta` (unless one appeared), gives both the longest remaining life of the
//! records moved (none when no old record had an expiry: the pool's next batch sets it), and
//! deletes every old key, malformed ones included (reported in `skipped`). The
//! load returns what it read, as if the new layout had held it, so the pool continues the old
//! meta record's generation. A migration cut short changes nothing and runs again at the next
//! load.
//!
//! Connection (`RedisConnection`, shared with `RedisBlueprintStore`): one server (`new`) or a
//! Redis Cluster (`new_cluster_with_tls`, seed nodes). `new` only parses the URL, so a node
//! starts while Redis is down. The first call builds a `ConnectionManager` that
//! connects lazily and fails fast (short connection and response timeouts, no internal retries);
//! a failure comes back as `StoreError::Unavailable` and the next call connects again. A call
//! that finds its connection dropped (Redis restarted) is retried once on a fresh connection:
//! every request here is idempotent in what it stores. (A batch applied twice answers, the second
//! time, with its own meta record instead of the pool's last one: the pool then writes
//! everything again, which is wasteful but never wrong.)
//!
//! Deliberately not done here: backoff and re-persisting after an outage (the pool actor does
//! that), and deciding freshness (the pool decides from `refreshed_at`).

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
    /// `{namespace}ads:local`, `{namespace}ads:remote`, `{namespace}ads:meta`.
    local_key: String,
    remote_key: String,
    meta_key: String,
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
        Ok(Self::on(
            RedisConnection::open_with_tls(url, tls)?,
            prefix,
            node_id,
        ))
    }

    /// On a Redis Cluster, reached through the seed nodes `urls` (`rediss://` with `tls`).
    /// Checks the URLs and the prefix; does not connect (the first call does).
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
        let description = format!("{} (node {node_id})", connection.describe());
        let namespace = format!("{prefix}:{{{node_id}}}:");
        Self {
            connection,
            local_key: format!("{namespace}ads:local"),
            remote_key: format!("{namespace}ads:remote"),
            meta_key: format!("{namespace}ads:meta"),
            namespace,
            description,
        }
    }
}

#[async_trait]
impl AdStore for RedisAdStore {
    async fn load(&self) -> Result<StoredPool, StoreError> {
        let mut pipe = Pipeline::with_capacity(3);
        pipe.atomic()
            .cmd("GET")
            .arg(&self.meta_key)
            .cmd("HLEN")
            .arg(&self.local_key)
            .cmd("HLEN")
            .arg(&self.remote_key);
        let (meta, local_len, remote_len): (Option<Vec<u8>>, usize, usize) =
            self.query(Request::Pipeline(&pipe)).await?;
        let mut pool = StoredPool::default();
        pool.ads.reserve(local_len + remote_len);
        // Without a meta record the store may hold the layout before: the migration needs the
        // fields the hashes hold (an ad already in a hash wins), and only then are they kept.
        let mut held: Option<[HeldFields; 2]> = meta.is_none().then(Default::default);
        let hashes: [(&str, fn(&[u8]) -> Option<AdKey>); 2] = [
            (&self.local_key, parse_local_field),
            (&self.remote_key, parse_remote_field),
        ];
        for (index, (hash, parse_field)) in hashes.into_iter().enumerate() {
            let mut cursor: u64 = 0;
            loop {
                let mut hscan = Cmd::new();
                hscan
                    .arg("HSCAN")
                    .arg(hash)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(HSCAN_COUNT);
                let (next, reply): (u64, Value) = self.query(Request::Cmd(&hscan)).await?;
                // Each step is decoded and dropped before the next: the raw fields and values
                // of a whole hash are never held at once.
                for (field, value) in hash_fields(reply)? {
                    match (parse_field(&field), decode::<Advertisement>(&value)) {
                        // A record under another ad's field is as wrong as one that does not
                        // decode.
                        (Some(key), Some(ad))
                            if ad.source == key.source && ad.register_id == key.register_id =>
                        {
                            pool.ads.push(ad);
                        }
                        _ => pool
                            .skipped
                            .push(format!("{hash} {}", String::from_utf8_lossy(&field))),
                    }
                    if let Some(held) = held.as_mut() {
                        held[index].insert(field);
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        // `HSCAN` may return a field more than once (the hash rehashed between two steps).
        pool.ads
            .sort_unstable_by(|a, b| (&a.source, &a.register_id).cmp(&(&b.source, &b.register_id)));
        pool.ads
            .dedup_by(|a, b| a.source == b.source && a.register_id == b.register_id);
        pool.skipped.sort_unstable();
        pool.skipped.dedup();
        match meta {
            Some(value) => match decode::<PoolMeta>(&value) {
                Some(meta) => pool.meta = Some(meta),
                None => pool.skipped.push(self.meta_key.clone()),
            },
            // No mark of the pool under this layout: the store may hold the layout before.
            None => {
                let [local, remote] = held.unwrap_or_default();
                self.migrate(&mut pool, &local, &remote).await?;
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
        let (local, remote): (Vec<&Advertisement>, Vec<&Advertisement>) = batch
            .puts
            .iter()
            .partition(|ad| ad.source == AdSource::Local);
        let mut pipe = Pipeline::with_capacity(
            local.len().div_ceil(HSET_CHUNK) + remote.len().div_ceil(HSET_CHUNK) + 6,
        );
        pipe.atomic();
        if batch.scope == BatchScope::Everything {
            // The store holds exactly what the pool holds after a batch of everything.
            pipe.cmd("UNLINK")
                .arg(&self.local_key)
                .arg(&self.remote_key);
        }
        for (hash, ads) in [(&self.local_key, &local), (&self.remote_key, &remote)] {
            for chunk in ads.chunks(HSET_CHUNK) {
                let bytes: usize = chunk.iter().map(|ad| hset_capacity(ad)).sum();
                let mut hset = Cmd::with_capacity(2 + 2 * chunk.len(), hash.len() + bytes);
                hset.arg("HSET").arg(hash);
                for ad in chunk {
                    hset.arg(Field {
                        source: &ad.source,
                        register_id: &ad.register_id,
                    })
                    .arg(Json(*ad));
                }
                pipe.add_command(hset);
            }
        }
        let (local_deletes, remote_deletes): (Vec<&AdKey>, Vec<&AdKey>) = batch
            .deletes
            .iter()
            .partition(|key| key.source == AdSource::Local);
        for (hash, keys) in [
            (&self.local_key, &local_deletes),
            (&self.remote_key, &remote_deletes),
        ] {
            if keys.is_empty() {
                continue;
            }
            let mut hdel = Cmd::with_capacity(2 + keys.len(), hash.len() + keys.len() * 100);
            hdel.arg("HDEL").arg(hash);
            for key in keys {
                hdel.arg(Field {
                    source: &key.source,
                    register_id: &key.register_id,
                });
            }
            pipe.add_command(hdel);
        }
        for hash in [&self.local_key, &self.remote_key] {
            pipe.cmd("PEXPIRE").arg(hash).arg(expiry_ms);
        }
        let mut set_meta = Cmd::with_capacity(7, self.meta_key.len() + 192);
        set_meta
            .arg("SET")
            .arg(&self.meta_key)
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
        get.arg("GET").arg(&self.meta_key);
        let value: Option<Vec<u8>> = self.query(Request::Cmd(&get)).await?;
        Ok(value.and_then(|value| decode::<PoolMeta>(&value)))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Fields per `HSET` (one command holds about 300 KiB of JSON).
const HSET_CHUNK: usize = 1_000;
/// Fields asked for by one `HSCAN` step of a load (about 300 KiB of JSON a reply).
const HSCAN_COUNT: u64 = 1_000;
/// Keys asked for by one `SCAN` step of the migration: large, so it is few round trips.
const SCAN_COUNT: u64 = 10_000;
/// Keys per `MGET` of the migration; the chunks go out as one pipeline.
const MGET_CHUNK: usize = 1_000;
/// Redis refuses a `PX` that overflows when added to its clock; no pool needs more.
const MAX_EXPIRY_MS: u64 = (i64::MAX / 4) as u64;

/// What a key of the layout before stood for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LegacyKey {
    Ad(AdKey),
    Meta,
    /// Under `local:` or `remote:` but of no known shape: deleted with the rest, reported.
    Malformed,
}

impl RedisAdStore {
    /// Sends `request` through the shared connection, which sends it once more when it finds
    /// the connection dead. Safe: every request here is idempotent in what it stores, and a
    /// `MULTI`/`EXEC` cut short is not applied.
    async fn query<T: FromRedisValue>(&self, request: Request<'_>) -> Result<T, StoreError> {
        self.connection.query(request).await.map_err(store_error)
    }

    /// Moves the records of the layout before into this one (see the module's header), adding
    /// what it read to `pool`. `local` and `remote` are the fields the hashes hold already.
    async fn migrate(
        &self,
        pool: &mut StoredPool,
        held_local: &HeldFields,
        held_remote: &HeldFields,
    ) -> Result<(), StoreError> {
        let legacy = self.scan_legacy().await?;
        if legacy.is_empty() {
            return Ok(());
        }
        let mut pipe = Pipeline::with_capacity(legacy.len().div_ceil(MGET_CHUNK) + legacy.len());
        for chunk in legacy.chunks(MGET_CHUNK) {
            let mut mget = Cmd::with_capacity(chunk.len() + 1, chunk.len() * 100);
            mget.arg("MGET");
            for (raw, _) in chunk {
                mget.arg(raw.as_slice());
            }
            pipe.add_command(mget);
        }
        for (raw, _) in &legacy {
            pipe.cmd("PTTL").arg(raw.as_slice());
        }
        let replies: Vec<Value> = self.query(Request::Pipeline(&pipe)).await?;
        let chunks = legacy.len().div_ceil(MGET_CHUNK);
        if replies.len() != chunks + legacy.len() {
            return Err(StoreError::Corrupt {
                what: format!(
                    "{} replies to the migration's {} requests",
                    replies.len(),
                    chunks + legacy.len()
                ),
            });
        }
        let mut replies = replies.into_iter();
        let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(legacy.len());
        for reply in replies.by_ref().take(chunks) {
            values.extend(
                redis::from_redis_value::<Vec<Option<Vec<u8>>>>(reply).map_err(|err| {
                    StoreError::Corrupt {
                        what: format!("an MGET reply of the migration: {err}"),
                    }
                })?,
            );
        }
        if values.len() != legacy.len() {
            return Err(StoreError::Corrupt {
                what: format!(
                    "MGET returned {} values for {} keys",
                    values.len(),
                    legacy.len()
                ),
            });
        }
        // Remaining life of each old key (-1: none, -2: gone since the SCAN).
        let lives: Vec<i64> = replies
            .map(|reply| redis::from_redis_value::<i64>(reply).unwrap_or(-2))
            .collect();

        let mut moved_local: Vec<(String, &[u8])> = Vec::new();
        let mut moved_remote: Vec<(String, &[u8])> = Vec::new();
        let mut meta_value: Option<&[u8]> = None;
        // The longest remaining life of a record moved; keys without expiry tell nothing.
        let mut life_ms: i64 = 0;
        for (((raw, kind), value), life) in legacy.iter().zip(&values).zip(lives) {
            // Expired between SCAN and MGET: nothing to move (its key goes anyway).
            let Some(value) = value else {
                continue;
            };
            let name = || String::from_utf8_lossy(raw).into_owned();
            match kind {
                LegacyKey::Meta => match decode::<PoolMeta>(value) {
                    Some(meta) => {
                        pool.meta = Some(meta);
                        meta_value = Some(value);
                        life_ms = life_ms.max(life);
                    }
                    None => pool.skipped.push(name()),
                },
                LegacyKey::Ad(key) => match decode::<Advertisement>(value) {
                    Some(ad) if ad.source == key.source && ad.register_id == key.register_id => {
                        let field = Field {
                            source: &key.source,
                            register_id: &key.register_id,
                        }
                        .to_string();
                        let (held, moved) = match key.source {
                            AdSource::Local => (&held_local, &mut moved_local),
                            AdSource::Remote(_) => (&held_remote, &mut moved_remote),
                        };
                        if !held.contains(field.as_bytes()) {
                            moved.push((field, value));
                            pool.ads.push(ad);
                            life_ms = life_ms.max(life);
                        }
                    }
                    _ => pool.skipped.push(name()),
                },
                LegacyKey::Malformed => pool.skipped.push(name()),
            }
        }

        let mut pipe = Pipeline::new();
        pipe.atomic();
        for (hash, moved) in [
            (&self.local_key, &moved_local),
            (&self.remote_key, &moved_remote),
        ] {
            for chunk in moved.chunks(HSET_CHUNK) {
                let hset = pipe.cmd("HSET").arg(hash);
                for (field, value) in chunk {
                    hset.arg(field).arg(*value);
                }
            }
        }
        let life_ms = (life_ms > 0).then(|| life_ms.unsigned_abs().min(MAX_EXPIRY_MS));
        if let Some(value) = meta_value {
            let set = pipe.cmd("SET").arg(&self.meta_key).arg(value);
            if let Some(life_ms) = life_ms {
                set.arg("PX").arg(life_ms);
            }
            set.arg("NX");
        }
        if let Some(life_ms) = life_ms {
            for hash in [&self.local_key, &self.remote_key] {
                pipe.cmd("PEXPIRE").arg(hash).arg(life_ms);
            }
        }
        for chunk in legacy.chunks(MGET_CHUNK) {
            let unlink = pipe.cmd("UNLINK");
            for (raw, _) in chunk {
                unlink.arg(raw.as_slice());
            }
        }
        self.query::<Value>(Request::Pipeline(&pipe)).await?;
        tracing::info!(
            store = %self.description,
            keys = legacy.len(),
            ads = moved_local.len() + moved_remote.len(),
            "advertisements moved from one key per ad into the node's hashes"
        );
        Ok(())
    }

    /// Every key of the layout before, each once (SCAN may repeat keys), with what it stands
    /// for. Keys of this layout and of other stores sharing the namespace are left out.
    async fn scan_legacy(&self) -> Result<Vec<(Vec<u8>, LegacyKey)>, StoreError> {
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
            // In a cluster, on the primary of the node's slot: every key of the namespace
            // carries the node's hash tag, so no other primary holds one.
            let (next, found): (u64, Vec<Vec<u8>>) = self
                .connection
                .query_where(&self.meta_key, &scan)
                .await
                .map_err(store_error)?;
            keys.extend(found);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys
            .into_iter()
            .filter_map(|raw| {
                let kind = self.parse_legacy_key(&raw)?;
                Some((raw, kind))
            })
            .collect())
    }

    /// What a key of the layout before stands for; `None` for a key that is not of it.
    fn parse_legacy_key(&self, raw: &[u8]) -> Option<LegacyKey> {
        let rest = raw.strip_prefix(self.namespace.as_bytes())?;
        if rest == b"meta" {
            return Some(LegacyKey::Meta);
        }
        if let Some(register_id) = rest.strip_prefix(b"local:") {
            return Some(
                parse_local_field(register_id).map_or(LegacyKey::Malformed, LegacyKey::Ad),
            );
        }
        let field = rest.strip_prefix(b"remote:")?;
        Some(parse_remote_field(field).map_or(LegacyKey::Malformed, LegacyKey::Ad))
    }
}

/// The ad of a field of the local hash (a register id); `None` for a field of no known shape.
fn parse_local_field(field: &[u8]) -> Option<AdKey> {
    let register_id = std::str::from_utf8(field).ok()?;
    Some(AdKey::local(RegisterId::parse(register_id).ok()?))
}

/// The ad of a field of the remote hash (`{peer}:{register_id}`).
fn parse_remote_field(field: &[u8]) -> Option<AdKey> {
    let (peer, register_id) = std::str::from_utf8(field).ok()?.split_once(':')?;
    Some(AdKey::remote(
        NodeId::parse(peer).ok()?,
        RegisterId::parse(register_id).ok()?,
    ))
}

/// One field of a hash and its value, as `HSCAN` answers them.
type FieldValue = (Vec<u8>, Vec<u8>);

/// The fields a hash holds, kept by a load only for the migration.
type HeldFields = std::collections::HashSet<Vec<u8>>;

/// The field and value pairs of an `HSCAN` step (or an `HGETALL`): a flat array on RESP2, a
/// map on RESP3.
fn hash_fields(reply: Value) -> Result<Vec<FieldValue>, StoreError> {
    let wrong = |what: &dyn fmt::Debug| StoreError::Corrupt {
        what: format!("unexpected HSCAN reply from redis: {what:?}"),
    };
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(wrong(&format!("{} items", items.len())));
            }
            let mut items = items.into_iter();
            let mut pairs = Vec::with_capacity(items.len() / 2);
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                pairs.push((field, value));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        other => return Err(wrong(&other)),
    };
    pairs
        .into_iter()
        .map(|pair| match pair {
            (Value::BulkString(field), Value::BulkString(value)) => Ok((field, value)),
            other => Err(wrong(&other)),
        })
        .collect()
}

/// The field of an ad in its hash, written straight into a command's buffer (no `String` per
/// field): the register id in the local hash, `{peer}:{register_id}` in the remote one.
#[derive(Clone, Copy)]
struct Field<'a> {
    source: &'a AdSource,
    register_id: &'a RegisterId,
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            AdSource::Local => write!(f, "{}", self.register_id),
            AdSource::Remote(peer) => write!(f, "{peer}:{}", self.register_id),
        }
    }
}

impl ToRedisArgs for Field<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        write!(out.writer_for_next_arg(), "{self}")
            .expect("writing into a command buffer cannot fail");
    }
}

/// Bytes one ad adds to an `HSET`, so the command's buffer is allocated once.
fn hset_capacity(ad: &Advertisement) -> usize {
    const FIXED_JSON: usize = 256; // field names, enums, numbers, two ids
    let peer = match &ad.source {
        AdSource::Local => 0,
        AdSource::Remote(peer) => peer.as_str().len(),
    };
    let text =
        ad.name.as_deref().map_or(0, str::len) + ad.description.as_deref().map_or(0, str::len);
    1 + peer + RegisterId::LEN + FIXED_JSON + 2 * peer + text
}

/// The reply of the last command of a `MULTI`/`EXEC` (the meta `SET … GET`): the other replies
/// are dropped as they are, without marking every command `ignore()`d.
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
        assert_eq!(store.local_key, "herald:{peer-a}:ads:local");
        assert_eq!(store.remote_key, "herald:{peer-a}:ads:remote");
        assert_eq!(store.meta_key, "herald:{peer-a}:ads:meta");
        let peer = AdSource::Remote(NodeId::parse("peer-b").unwrap());
        assert_eq!(
            Field {
                source: &AdSource::Local,
                register_id: &rid(1)
            }
            .to_string(),
            rid(1).to_string()
        );
        assert_eq!(
            Field {
                source: &peer,
                register_id: &rid(2)
            }
            .to_string(),
            format!("peer-b:{}", rid(2))
        );
    }

    #[test]
    fn fields_parse_back_and_strangers_do_not() {
        let remote = AdKey::remote(NodeId::parse("peer_c-9").unwrap(), rid(4));
        let field = Field {
            source: &remote.source,
            register_id: &remote.register_id,
        }
        .to_string();
        assert_eq!(parse_remote_field(field.as_bytes()), Some(remote));
        assert_eq!(
            parse_local_field(rid(3).to_string().as_bytes()),
            Some(AdKey::local(rid(3)))
        );
        for stranger in [
            "nothex",
            "",
            "peer-b",
            "bad:peer:0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(parse_local_field(stranger.as_bytes()), None, "{stranger}");
            assert_eq!(parse_remote_field(stranger.as_bytes()), None, "{stranger}");
        }
        assert_eq!(parse_local_field(b"\xff"), None);
    }

    #[test]
    fn keys_of_the_layout_before_are_recognized_and_others_left_alone() {
        let store = store("redis://127.0.0.1:6379");
        assert_eq!(
            store.parse_legacy_key(format!("herald:{{peer-a}}:local:{}", rid(1)).as_bytes()),
            Some(LegacyKey::Ad(AdKey::local(rid(1))))
        );
        assert_eq!(
            store
                .parse_legacy_key(format!("herald:{{peer-a}}:remote:peer-b:{}", rid(2)).as_bytes()),
            Some(LegacyKey::Ad(AdKey::remote(
                NodeId::parse("peer-b").unwrap(),
                rid(2)
            )))
        );
        assert_eq!(
            store.parse_legacy_key(b"herald:{peer-a}:meta"),
            Some(LegacyKey::Meta)
        );
        for malformed in [
            "herald:{peer-a}:local:nothex",
            "herald:{peer-a}:remote:peer-b",
        ] {
            assert_eq!(
                store.parse_legacy_key(malformed.as_bytes()),
                Some(LegacyKey::Malformed),
                "{malformed}"
            );
        }
        for other in [
            "herald:{peer-a}:ads:local",
            "herald:{peer-a}:ads:meta",
            "herald:{peer-a}:metadata",
            "herald:{peer-a}:gossip:peer-b",
            "herald:{peer-b}:meta",
            "other:{peer-a}:meta",
        ] {
            assert_eq!(store.parse_legacy_key(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn hgetall_replies_of_both_protocols_and_strangers() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let expected = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ];
        let flat = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        assert_eq!(hash_fields(flat).unwrap(), expected);
        let map = Value::Map(vec![(bulk("a"), bulk("1")), (bulk("b"), bulk("2"))]);
        assert_eq!(hash_fields(map).unwrap(), expected);
        assert!(hash_fields(Value::Array(Vec::new())).unwrap().is_empty());
        for stranger in [
            Value::Array(vec![bulk("a")]),
            Value::Array(vec![bulk("a"), Value::Int(1)]),
            Value::Int(3),
        ] {
            assert!(matches!(
                hash_fields(stranger),
                Err(StoreError::Corrupt { .. })
            ));
        }
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
    fn hset_capacity_covers_the_field_and_value() {
        let ad = Advertisement {
            register_id: rid(5),
            source: AdSource::Remote(NodeId::parse(&"p".repeat(64)).unwrap()),
            sync_state: herald_messages::SyncState::FullyReplicated,
            is_public: true,
            latest_version: u64::MAX,
            latest_docket_version: u64::MAX,
            name: Some("n".repeat(100).into()),
            description: Some("d".repeat(300).into()),
            refreshed_at: herald_messages::Timestamp::from_unix_millis(i64::MIN),
            changed_at: herald_messages::Timestamp::from_unix_millis(i64::MIN),
        };
        let mut hset = Cmd::new();
        hset.arg(Field {
            source: &ad.source,
            register_id: &ad.register_id,
        })
        .arg(Json(&ad));
        let data: usize = hset
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.len(),
                _ => 0,
            })
            .sum();
        assert!(
            hset_capacity(&ad) >= data,
            "{} < {data}",
            hset_capacity(&ad)
        );
    }
}
