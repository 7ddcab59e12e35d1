//! `RedisBlueprintStore`: the system register on Redis, shared by several hubs. Every hub
//! appends through the same store; Redis allocates the versions.
//!
//! Layout: every key carries the hash tag `{sysreg}` (literal braces), so each step touches one
//! cluster slot and a Lua script may use all of them:
//! - `{prefix}:{sysreg}:genesis`: JSON of `Genesis`;
//! - `{prefix}:{sysreg}:entries`: a HASH, field = version in decimal, value = JSON of the
//!   `SystemRegisterEntry` (which carries its version too; `load` checks that both agree);
//! - `{prefix}:{sysreg}:version`: the version counter (the last version allocated);
//! - `{prefix}:{sysreg}:request:{token}`: for 10 minutes after an append, the version it got
//!   (see "Connection" below);
//! - channel `{prefix}:{sysreg}:appended`: each append publishes its version, each restore that
//!   wrote something the counter after it (decimal).
//!
//! Why a HASH and not a ZSET: a version is the hash's field, so a version can hold exactly one
//! entry, a damaged entry is found and named by its version, and `entries_after` is an `HMGET`
//! of exactly the versions wanted. A ZSET would take the whole entry JSON (up to 16 MiB) as its
//! member, would accept two members with one score, and buys only a range query that the
//! counter already gives us.
//!
//! Scripts: `create`, `append` and `restore` are each one Lua script (`EVALSHA`; loaded with
//! `SCRIPT LOAD` on first use and again after `NOSCRIPT`, e.g. after a Redis restart):
//! - `create` (`CREATE_SCRIPT`): the genesis, the counter and the seed entries, unless a genesis
//!   exists;
//! - `append` (`APPEND_SCRIPT`): refuses with `Behind` when the counter is below the hub's
//!   `known_head`, with `Raced` when the counter is not the version right before the entry's
//!   (another hub appended first), else moves the counter to the entry's version and stores the
//!   entry (signed by its hub for that version) under it;
//! - `restore` (`RESTORE_SCRIPT`): compares the stored genesis' history id and every given
//!   version the store holds (blueprint, kind, checksum, decoded with Redis' `cjson` unless the
//!   stored JSON is byte for byte the given one), and only when nothing conflicts writes the
//!   genesis if absent, the missing entries, and the counter if it was below the highest given
//!   version (never lowers it).
//!
//! Atomicity: Redis runs one script at a time, so checking the genesis and the counter,
//! allocating versions with `INCR`, storing the entries and publishing cannot interleave with
//! another hub's append or restore. A script refuses (`Behind`, `Raced`, `Conflict`) before its
//! first write: Redis does not roll a script back, so every check comes first. Every script
//! stores each entry's own JSON, built here (its version and signature included). `head` reads the genesis and the counter in one `MULTI` pipeline.
//!
//! Connection (`RedisConnection`, shared with `RedisAdStore`): `new` only parses the URL, the
//! first call builds a lazy `ConnectionManager` with short timeouts and no internal retries, and
//! a call that finds its connection dead is sent once more on the fresh connection. That retry is
//! safe: reads are idempotent; `create` treats a genesis identical to its own (same random
//! history id) as its own earlier attempt; each `append` carries a request token, so a
//! retried append whose first attempt did land returns the version it got instead of appending
//! twice; and a repeated `restore` finds its entries identical (it then reports that it wrote
//! nothing).
//!
//! Watch: a dedicated pub/sub connection subscribed to the channel, driven by a background task
//! that re-subscribes with capped backoff (100 ms doubling to 5 s, jittered) whenever the
//! connection breaks (Redis restarted, or a ping every 5 s went unanswered). After each
//! subscription, the first one included, the stream yields the counter's current value (when it
//! is above 0), so appends made while nobody was subscribed are not missed. A yielded version
//! therefore means "entries up to this version exist"; versions may repeat or arrive out of
//! order. The stream ends only when dropped; dropping it stops the task.
//!
//! Durability: a version is durable only if Redis persists it. Run the shared Redis with AOF
//! (`appendonly yes`, `appendfsync everysec` or `always`); without it, a Redis restart loses the
//! register, and `load` then answers `None` as for a register never created. With `everysec`,
//! or after a failover to a lagging replica, Redis may lose its last acknowledged appends, the
//! counter with them: the hubs' `known_head` makes the next append answer `Behind` instead of
//! issuing those versions again, and a hub that holds them writes them back with `restore`.
//! This adapter does not check the server's configuration.
//!
//! Redis Cluster (`new_cluster_with_tls`): every key shares the slot of `{sysreg}`, so each
//! script, `MULTI` and `HMGET` runs on the one primary of that slot; `SCRIPT LOAD` is sent there
//! too. Pub/sub messages reach the subscribers of every node of a cluster, so the watch
//! subscribes to one seed node and moves to the next seed each time it subscribes again.
//!
//! Deliberately not done here: checksums and the order of versions (the authority validates the
//! register).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use herald_actors::ports::{
    BlueprintStore, BlueprintStoreError, BoxError, RestoreConflict, RestoreReport, StoreHead,
    StoredRegister, check_seed, error_chain, restore_plan,
};
use herald_actors::{Backoff, BackoffConfig};
use herald_messages::{Genesis, HistoryId, SystemRegisterEntry};

use super::redis_connection::{
    CONNECTION_TIMEOUT, RESPONSE_TIMEOUT, RedisConnection, RedisOpenError, Request, check_prefix,
};
use super::stored_entry::decode_entry;
use crate::tls::ClientPem;

/// The system register in Redis, shared by the hubs that use the same URL and prefix. Cheap to
/// share (`Arc<dyn BlueprintStore>`); all calls but `watch` go through one multiplexed
/// connection.
pub struct RedisBlueprintStore {
    inner: Arc<Inner>,
}

impl RedisBlueprintStore {
    /// Checks the URL and the prefix; does not connect (the first call does).
    pub fn new(url: &str, prefix: &str) -> Result<Self, RedisOpenError> {
        Self::new_with_tls(url, prefix, None)
    }

    /// `new`, with the CA and client certificate of a `rediss://` URL.
    pub fn new_with_tls(
        url: &str,
        prefix: &str,
        tls: Option<&ClientPem>,
    ) -> Result<Self, RedisOpenError> {
        check_prefix(prefix)?;
        Ok(Self::on(RedisConnection::open_with_tls(url, tls)?, prefix))
    }

    /// On a Redis Cluster, reached through the seed nodes `urls` (`rediss://` with `tls`).
    /// Checks the URLs and the prefix; does not connect (the first call does).
    pub fn new_cluster_with_tls(
        urls: &[String],
        prefix: &str,
        tls: Option<&ClientPem>,
    ) -> Result<Self, RedisOpenError> {
        check_prefix(prefix)?;
        Ok(Self::on(
            RedisConnection::open_cluster_with_tls(urls, tls)?,
            prefix,
        ))
    }

    fn on(connection: RedisConnection, prefix: &str) -> Self {
        let description = format!(
            "{} (system register, prefix {prefix})",
            connection.describe()
        );
        Self {
            inner: Arc::new(Inner {
                connection,
                keys: Keys::new(prefix),
                create_script: CachedScript::new(CREATE_SCRIPT),
                append_script: CachedScript::new(APPEND_SCRIPT),
                restore_script: CachedScript::new(RESTORE_SCRIPT),
                request_nonce: random_nonce(),
                next_request: AtomicU64::new(0),
                next_subscription: AtomicUsize::new(0),
                description,
            }),
        }
    }
}

#[async_trait]
impl BlueprintStore for RedisBlueprintStore {
    async fn load(&self) -> Result<Option<StoredRegister>, BlueprintStoreError> {
        let keys = &self.inner.keys;
        let mut pipe = Pipeline::with_capacity(3);
        pipe.atomic()
            .get(&keys.genesis)
            .get(&keys.version)
            .hgetall(&keys.entries);
        type Snapshot = (Option<Vec<u8>>, Option<Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>);
        let (genesis, counter, fields): Snapshot = self
            .inner
            .connection
            .query(Request::Pipeline(&pipe))
            .await
            .map_err(store_error)?;
        let counter = counter.as_deref().map(parse_counter).transpose()?;
        let Some(genesis) = genesis else {
            if counter.is_some() || !fields.is_empty() {
                return Err(corrupt(
                    "entries or a version counter are stored but the genesis record is missing"
                        .to_owned(),
                ));
            }
            return Ok(None);
        };
        let genesis: Genesis = serde_json::from_slice(&genesis)
            .map_err(|err| corrupt(format!("the genesis record does not decode: {err}")))?;
        let mut entries = Vec::with_capacity(fields.len());
        for (field, value) in &fields {
            let version = parse_version_field(field)?;
            entries.push(decode_entry(version, value)?);
        }
        entries.sort_by_key(|entry| entry.version);
        if let Some(last) = entries.last() {
            let counter = counter.unwrap_or(0);
            if last.version > counter {
                return Err(corrupt(format!(
                    "entry {} is above the version counter ({counter})",
                    last.version
                )));
            }
        }
        Ok(Some(StoredRegister { genesis, entries }))
    }

    async fn create(
        &self,
        genesis: &Genesis,
        seed: Vec<SystemRegisterEntry>,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        check_seed(&seed)?;
        let keys = &self.inner.keys;
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(2 + seed.len());
        args.push(keys.channel.clone().into_bytes());
        args.push(serde_json::to_vec(genesis).expect("a genesis record encodes as JSON"));
        for entry in &seed {
            args.push(encode(entry));
        }
        let outcome: i64 = self
            .inner
            .eval(
                &self.inner.create_script,
                &[&keys.genesis, &keys.entries, &keys.version],
                &args,
            )
            .await?;
        match outcome {
            CREATED | CREATED_BEFORE_BY_US => Ok(seed),
            ALREADY_CREATED => Err(BlueprintStoreError::AlreadyCreated),
            ORPHANS => Err(corrupt(
                "entries or a version counter are stored but the genesis record is missing"
                    .to_owned(),
            )),
            other => Err(corrupt(format!(
                "the create script answered {other}, which this adapter never returns"
            ))),
        }
    }

    async fn append(
        &self,
        entry: SystemRegisterEntry,
        known_head: u64,
    ) -> Result<SystemRegisterEntry, BlueprintStoreError> {
        let keys = &self.inner.keys;
        let request_key = self.inner.next_request_key();
        let args: [Vec<u8>; 5] = [
            keys.channel.clone().into_bytes(),
            encode(&entry),
            REQUEST_MEMORY.as_secs().to_string().into_bytes(),
            known_head.to_string().into_bytes(),
            entry.version.to_string().into_bytes(),
        ];
        let (outcome, version): (i64, i64) = self
            .inner
            .eval(
                &self.inner.append_script,
                &[&keys.genesis, &keys.entries, &keys.version, &request_key],
                &args,
            )
            .await?;
        let version = u64::try_from(version).map_err(|_| {
            corrupt(format!(
                "the append script answered version {version}, which this adapter never returns"
            ))
        })?;
        match outcome {
            APPENDED if version == entry.version => Ok(entry),
            BEHIND => Err(BlueprintStoreError::Behind {
                store_head: version,
            }),
            RACED => Err(BlueprintStoreError::Raced { head: version }),
            NOT_CREATED => Err(corrupt(
                "cannot append: the system register does not exist (no genesis record; \
                 was Redis restarted without persistence?)"
                    .to_owned(),
            )),
            VERSION_TAKEN => Err(corrupt(
                "cannot append: the next version is already taken (the version counter is \
                 behind the entries)"
                    .to_owned(),
            )),
            BAD_COUNTER => Err(corrupt(
                "cannot append: the version counter is not a number".to_owned(),
            )),
            other => Err(corrupt(format!(
                "the append script answered {other} (version {version}), which this adapter \
                 never returns"
            ))),
        }
    }

    async fn restore(
        &self,
        genesis: &Genesis,
        entries: &[Arc<SystemRegisterEntry>],
    ) -> Result<RestoreReport, BlueprintStoreError> {
        let keys = &self.inner.keys;
        let plan = restore_plan(entries)?;
        let highest = plan.last().map_or(0, |entry| entry.version);
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(4 + 5 * plan.len());
        args.push(keys.channel.clone().into_bytes());
        args.push(serde_json::to_vec(genesis).expect("a genesis record encodes as JSON"));
        args.push(genesis.history_id.as_str().as_bytes().to_vec());
        args.push(highest.to_string().into_bytes());
        for entry in plan {
            args.push(entry.version.to_string().into_bytes());
            args.push(entry.blueprint_id.as_str().as_bytes().to_vec());
            args.push(kind_json(entry).into_bytes());
            args.push(entry.checksum.clone().into_bytes());
            args.push(encode(entry));
        }
        let (outcome, written, genesis_written, head, detail): RestoreOutcome = self
            .inner
            .eval(
                &self.inner.restore_script,
                &[&keys.genesis, &keys.entries, &keys.version],
                &args,
            )
            .await?;
        let conflicting_version = || {
            decimal(detail.as_bytes()).ok_or_else(|| {
                corrupt(format!(
                    "the restore script named version {detail:?}, which is not a number"
                ))
            })
        };
        match outcome {
            RESTORED => Ok(RestoreReport {
                entries_written: usize::try_from(written)
                    .map_err(|_| corrupt(format!("the restore script wrote {written} entries")))?,
                genesis_written: genesis_written == 1,
                head: parse_counter(head.as_bytes())?,
            }),
            OTHER_HISTORY => Err(BlueprintStoreError::Conflict(RestoreConflict::History {
                stored: HistoryId::parse(&detail).map_err(|err| {
                    corrupt(format!(
                        "the stored genesis has an invalid history id: {err}"
                    ))
                })?,
                restored: genesis.history_id.clone(),
            })),
            OTHER_ENTRY => Err(BlueprintStoreError::Conflict(RestoreConflict::Entry {
                version: conflicting_version()?,
            })),
            UNDECODABLE_ENTRY => Err(corrupt(format!(
                "entry at version {} does not decode",
                conflicting_version()?
            ))),
            UNDECODABLE_GENESIS => Err(corrupt(
                "the genesis record does not decode (or has no history id)".to_owned(),
            )),
            RESTORE_ORPHANS => Err(corrupt(
                "entries or a version counter are stored but the genesis record is missing"
                    .to_owned(),
            )),
            RESTORE_BAD_COUNTER => Err(corrupt(
                "cannot restore: the version counter is not a number".to_owned(),
            )),
            other => Err(corrupt(format!(
                "the restore script answered {other}, which this adapter never returns"
            ))),
        }
    }

    async fn head(&self) -> Result<Option<StoreHead>, BlueprintStoreError> {
        let keys = &self.inner.keys;
        let mut pipe = Pipeline::with_capacity(3);
        pipe.atomic()
            .get(&keys.genesis)
            .get(&keys.version)
            .exists(&keys.entries);
        let (genesis, counter, has_entries): (Option<Vec<u8>>, Option<Vec<u8>>, bool) = self
            .inner
            .connection
            .query(Request::Pipeline(&pipe))
            .await
            .map_err(store_error)?;
        let counter = counter.as_deref().map(parse_counter).transpose()?;
        let Some(genesis) = genesis else {
            if counter.is_some() || has_entries {
                return Err(corrupt(
                    "entries or a version counter are stored but the genesis record is missing"
                        .to_owned(),
                ));
            }
            return Ok(None);
        };
        let genesis: Genesis = serde_json::from_slice(&genesis)
            .map_err(|err| corrupt(format!("the genesis record does not decode: {err}")))?;
        Ok(Some(StoreHead {
            history_id: genesis.history_id,
            version: counter.unwrap_or(0),
        }))
    }

    async fn entries_after(
        &self,
        after: u64,
    ) -> Result<Vec<SystemRegisterEntry>, BlueprintStoreError> {
        let Some(counter) = self.inner.counter().await? else {
            return Ok(Vec::new());
        };
        let Some(first) = after.checked_add(1).filter(|first| *first <= counter) else {
            return Ok(Vec::new());
        };
        let wanted: Vec<u64> = (first..=counter).collect();
        let mut pipe = Pipeline::with_capacity(wanted.len().div_ceil(HMGET_CHUNK));
        for chunk in wanted.chunks(HMGET_CHUNK) {
            let mut hmget = Cmd::new();
            hmget.arg("HMGET").arg(&self.inner.keys.entries).arg(chunk);
            pipe.add_command(hmget);
        }
        let replies: Vec<Vec<Option<Vec<u8>>>> = self
            .inner
            .connection
            .query(Request::Pipeline(&pipe))
            .await
            .map_err(store_error)?;
        let values: Vec<Option<Vec<u8>>> = replies.into_iter().flatten().collect();
        if values.len() != wanted.len() {
            return Err(corrupt(format!(
                "HMGET returned {} values for {} versions",
                values.len(),
                wanted.len()
            )));
        }
        wanted
            .into_iter()
            .zip(values)
            .map(|(version, value)| match value {
                Some(value) => decode_entry(version, &value),
                None => Err(corrupt(format!(
                    "entry at version {version} is missing (the counter is at {counter})"
                ))),
            })
            .collect()
    }

    async fn watch(&self) -> Result<Option<BoxStream<'static, u64>>, BlueprintStoreError> {
        let subscription = self
            .inner
            .subscribe()
            .await
            .map_err(BlueprintStoreError::Unavailable)?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch_loop(Arc::clone(&self.inner), subscription, sender));
        let versions = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|version| (version, receiver))
        });
        Ok(Some(versions.boxed()))
    }

    fn describe(&self) -> String {
        self.inner.description.clone()
    }
}

/// Versions per `HMGET`; the chunks of one read go out as one pipeline.
const HMGET_CHUNK: usize = 1_000;
/// How long Redis remembers the version an append request got, so a retry finds it.
const REQUEST_MEMORY: Duration = Duration::from_secs(600);
/// Versions buffered between the watch task and a slow reader.
const WATCH_BUFFER: usize = 256;
/// A subscription that does not answer a ping within `RESPONSE_TIMEOUT` is replaced.
const WATCH_PING_EVERY: Duration = Duration::from_secs(5);
/// Pause between re-subscription attempts.
const WATCH_BACKOFF: BackoffConfig = BackoffConfig {
    base: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// `create`: KEYS genesis, entries, version; ARGV channel, genesis JSON, then the JSON of each
/// seed entry, at versions 1, 2, … in order. Answers `CREATED`, `CREATED_BEFORE_BY_US`,
/// `ALREADY_CREATED` or `ORPHANS`.
const CREATE_SCRIPT: &str = r"
local existing = redis.call('GET', KEYS[1])
if existing then
  if existing == ARGV[2] then return 1 end
  return -1
end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return -2 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[3], 0)
local last = nil
for i = 3, #ARGV do
  last = string.format('%d', redis.call('INCR', KEYS[3]))
  redis.call('HSET', KEYS[2], last, ARGV[i])
end
if last then redis.call('PUBLISH', ARGV[1], last) end
return 0
";
const CREATED: i64 = 0;
const CREATED_BEFORE_BY_US: i64 = 1;
const ALREADY_CREATED: i64 = -1;
const ORPHANS: i64 = -2;

/// `append`: KEYS genesis, entries, version, request; ARGV channel, entry JSON, seconds to
/// remember the request, the hub's known head, the entry's version (decimal). Answers
/// `{APPENDED, version}`, `{BEHIND, counter}`, `{RACED, counter}`, `{NOT_CREATED, 0}`,
/// `{VERSION_TAKEN, 0}` or `{BAD_COUNTER, 0}`. Every check comes before the first write; the
/// entry is written only at the counter + 1 (appends are exact).
const APPEND_SCRIPT: &str = r"
local done = redis.call('GET', KEYS[4])
if done then return {0, tonumber(done)} end
local current = tonumber(redis.call('GET', KEYS[3]) or '0')
if not current then return {-3, 0} end
if current < tonumber(ARGV[4]) then return {-4, current} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if current + 1 ~= tonumber(ARGV[5]) then return {-5, current} end
if redis.call('HEXISTS', KEYS[2], ARGV[5]) == 1 then return {-2, 0} end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[5], ARGV[2])
redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[5])
return {0, tonumber(ARGV[5])}
";
const APPENDED: i64 = 0;
const NOT_CREATED: i64 = -1;
const VERSION_TAKEN: i64 = -2;
const BAD_COUNTER: i64 = -3;
const BEHIND: i64 = -4;
const RACED: i64 = -5;

/// `restore`: KEYS genesis, entries, version; ARGV channel, genesis JSON, its history id, the
/// highest given version (decimal, `0` for none), then five per entry, ordered by version and
/// each version once: version, blueprint id, kind (as in the JSON), checksum, entry JSON.
/// Answers `{code, entries written, genesis written (0/1), counter after, detail}` where code
/// is `RESTORED`, `OTHER_HISTORY` (detail: the stored history id), `OTHER_ENTRY` or
/// `UNDECODABLE_ENTRY` (detail: the version), `UNDECODABLE_GENESIS`, `RESTORE_ORPHANS` or
/// `RESTORE_BAD_COUNTER`. Every check comes before the first write: a refused restore writes
/// nothing.
const RESTORE_SCRIPT: &str = r"
local stored = redis.call('GET', KEYS[1])
local genesis_written = 0
if stored then
  local ok, genesis = pcall(cjson.decode, stored)
  if not ok or type(genesis) ~= 'table' or type(genesis.historyId) ~= 'string' then
    return {-4, 0, 0, '0', ''}
  end
  if genesis.historyId ~= ARGV[3] then return {-1, 0, 0, '0', genesis.historyId} end
elseif redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  return {-5, 0, 0, '0', ''}
else
  genesis_written = 1
end
local counter = redis.call('GET', KEYS[3]) or '0'
local current = tonumber(counter)
if not current then return {-6, 0, 0, '0', ''} end
local missing = {}
for i = 5, #ARGV, 5 do
  local held = redis.call('HGET', KEYS[2], ARGV[i])
  if not held then
    missing[#missing + 1] = i
  elseif held ~= ARGV[i + 4] then
    local ok, entry = pcall(cjson.decode, held)
    if not ok or type(entry) ~= 'table' then return {-3, 0, 0, '0', ARGV[i]} end
    if entry.blueprintId ~= ARGV[i + 1] or entry.kind ~= ARGV[i + 2]
        or entry.checksum ~= ARGV[i + 3] then
      return {-2, 0, 0, '0', ARGV[i]}
    end
  end
end
if genesis_written == 1 then redis.call('SET', KEYS[1], ARGV[2]) end
for _, i in ipairs(missing) do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 4])
end
local raised = tonumber(ARGV[4]) > current
if raised then counter = ARGV[4] end
if raised or genesis_written == 1 then redis.call('SET', KEYS[3], counter) end
if (genesis_written == 1 or #missing > 0) and counter ~= '0' then
  redis.call('PUBLISH', ARGV[1], counter)
end
return {0, #missing, genesis_written, counter, ''}
";
const RESTORED: i64 = 0;
const OTHER_HISTORY: i64 = -1;
const OTHER_ENTRY: i64 = -2;
const UNDECODABLE_ENTRY: i64 = -3;
const UNDECODABLE_GENESIS: i64 = -4;
const RESTORE_ORPHANS: i64 = -5;
const RESTORE_BAD_COUNTER: i64 = -6;

/// The restore script's answer: code, entries written, genesis written, counter, detail.
type RestoreOutcome = (i64, i64, i64, String, String);

/// What the store and its watch tasks share.
struct Inner {
    connection: RedisConnection,
    keys: Keys,
    create_script: CachedScript,
    append_script: CachedScript,
    restore_script: CachedScript,
    /// Random per store: with `next_request`, makes append request tokens unique across hubs.
    request_nonce: String,
    next_request: AtomicU64,
    /// Which server the next subscription goes to (a cluster's seed nodes in turn).
    next_subscription: AtomicUsize,
    /// `describe()`'s answer, without credentials.
    description: String,
}

/// The names of the keys and the channel.
struct Keys {
    genesis: String,
    entries: String,
    version: String,
    channel: String,
    /// Followed by a request token.
    request: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let namespace = format!("{prefix}:{{sysreg}}:");
        Self {
            genesis: format!("{namespace}genesis"),
            entries: format!("{namespace}entries"),
            version: format!("{namespace}version"),
            channel: format!("{namespace}appended"),
            request: format!("{namespace}request:"),
        }
    }
}

/// A Lua script and, once loaded, its SHA1 as Redis reported it.
struct CachedScript {
    source: &'static str,
    sha: Mutex<Option<String>>,
}

impl CachedScript {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: Mutex::new(None),
        }
    }

    fn sha(&self) -> Option<String> {
        self.sha
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, sha: &str) {
        *self.sha.lock().unwrap_or_else(PoisonError::into_inner) = Some(sha.to_owned());
    }
}

/// A subscription to the channel: the sink pings, the stream brings the messages.
type Subscription = (PubSubSink, PubSubStream);

impl Inner {
    /// Runs a script with `EVALSHA`, loading it first when Redis does not know it yet.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &CachedScript,
        keys: &[&str],
        args: &[Vec<u8>],
    ) -> Result<T, BlueprintStoreError> {
        let sha = match script.sha() {
            Some(sha) => sha,
            None => self.load_script(script).await?,
        };
        let first = self
            .connection
            .query(Request::Cmd(&evalsha(&sha, keys, args)))
            .await;
        match first {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let sha = self.load_script(script).await?;
                self.connection
                    .query(Request::Cmd(&evalsha(&sha, keys, args)))
                    .await
                    .map_err(store_error)
            }
            other => other.map_err(store_error),
        }
    }

    async fn load_script(&self, script: &CachedScript) -> Result<String, BlueprintStoreError> {
        let mut load = Cmd::new();
        load.arg("SCRIPT").arg("LOAD").arg(script.source);
        // In a cluster, on the primary that runs the scripts (not on every node: one that is
        // down would fail the load).
        let sha: String = self
            .connection
            .query_where(&self.keys.version, &load)
            .await
            .map_err(store_error)?;
        script.remember(&sha);
        Ok(sha)
    }

    /// The version counter; `None` when there is none (no register).
    async fn counter(&self) -> Result<Option<u64>, BlueprintStoreError> {
        let mut get = Cmd::new();
        get.arg("GET").arg(&self.keys.version);
        let raw: Option<Vec<u8>> = self
            .connection
            .query(Request::Cmd(&get))
            .await
            .map_err(store_error)?;
        raw.as_deref().map(parse_counter).transpose()
    }

    /// A key for the next append request: unique across hubs and restarts.
    fn next_request_key(&self) -> String {
        let sequence = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("{}{}-{sequence}", self.keys.request, self.request_nonce)
    }

    /// A new pub/sub connection subscribed to the channel: on the server, or on a cluster's
    /// seed nodes in turn (each attempt the next one, so a node that is down is left behind).
    async fn subscribe(&self) -> Result<Subscription, BoxError> {
        let clients = self.connection.pubsub_clients();
        let client =
            &clients[self.next_subscription.fetch_add(1, Ordering::Relaxed) % clients.len()];
        let pubsub = tokio::time::timeout(CONNECTION_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| format!("no pub/sub connection within {CONNECTION_TIMEOUT:?}"))??;
        let (mut sink, stream) = pubsub.split();
        tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(&self.keys.channel))
            .await
            .map_err(|_| format!("no SUBSCRIBE confirmation within {RESPONSE_TIMEOUT:?}"))??;
        Ok((sink, stream))
    }
}

/// Why following a subscription stopped.
enum Followed {
    /// The stream was dropped: stop.
    ReaderGone,
    /// The subscription broke: subscribe again.
    Broken(String),
}

/// The watch task: follows `first`, then re-subscribes with backoff each time the subscription
/// breaks, until the stream's reader is gone.
async fn watch_loop(inner: Arc<Inner>, first: Subscription, sender: mpsc::Sender<u64>) {
    let store = inner.description.as_str();
    let mut backoff = Backoff::new(WATCH_BACKOFF);
    let mut next = Some(first);
    loop {
        let subscription = match next.take() {
            Some(subscription) => subscription,
            None => {
                tokio::select! {
                    () = sender.closed() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
                match inner.subscribe().await {
                    Ok(subscription) => {
                        info!(%store, "system register watch subscribed again");
                        subscription
                    }
                    Err(err) => {
                        debug!(
                            %store,
                            err = %error_chain(err.as_ref()),
                            "cannot subscribe to system register appends yet"
                        );
                        continue;
                    }
                }
            }
        };
        match follow(&inner, subscription, &sender, &mut backoff).await {
            Followed::ReaderGone => return,
            Followed::Broken(why) => {
                warn!(%store, %why, "system register watch broke; subscribing again");
            }
        }
    }
}

/// What woke a followed subscription up.
enum WatchEvent {
    Message(Option<redis::Msg>),
    PingDue,
}

/// Yields the counter's current value, then every published version, until the subscription
/// breaks or the reader goes.
async fn follow(
    inner: &Inner,
    subscription: Subscription,
    sender: &mpsc::Sender<u64>,
    backoff: &mut Backoff,
) -> Followed {
    let (mut sink, mut stream) = subscription;
    // Whatever was appended before the subscription took effect.
    match inner.counter().await {
        Ok(Some(current)) if current > 0 => {
            if sender.send(current).await.is_err() {
                return Followed::ReaderGone;
            }
        }
        Ok(_) => {}
        Err(err) => {
            return Followed::Broken(format!(
                "cannot read the version counter: {}",
                error_chain(&err)
            ));
        }
    }
    backoff.reset();
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + WATCH_PING_EVERY,
        WATCH_PING_EVERY,
    );
    loop {
        let event = tokio::select! {
            () = sender.closed() => return Followed::ReaderGone,
            message = stream.next() => WatchEvent::Message(message),
            _ = ping.tick() => WatchEvent::PingDue,
        };
        match event {
            WatchEvent::Message(None) => {
                return Followed::Broken("the pub/sub connection closed".to_owned());
            }
            WatchEvent::Message(Some(message)) => {
                let payload = message.get_payload_bytes();
                let Some(version) = decimal(payload) else {
                    warn!(
                        store = %inner.description,
                        payload = %String::from_utf8_lossy(payload),
                        "ignored a message that is not a version"
                    );
                    continue;
                };
                if sender.send(version).await.is_err() {
                    return Followed::ReaderGone;
                }
            }
            WatchEvent::PingDue => {
                let answer = tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<redis::Value>());
                match answer.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Followed::Broken(format!("ping failed: {err}")),
                    Err(_) => {
                        return Followed::Broken(format!(
                            "no answer to a ping within {RESPONSE_TIMEOUT:?}"
                        ));
                    }
                }
            }
        }
    }
}

fn evalsha(sha: &str, keys: &[&str], args: &[Vec<u8>]) -> Cmd {
    let mut cmd = Cmd::new();
    cmd.arg("EVALSHA").arg(sha).arg(keys.len()).arg(keys);
    for arg in args {
        cmd.arg(arg.as_slice());
    }
    cmd
}

/// A decimal `u64`, as Redis stores and publishes versions.
fn decimal(raw: &[u8]) -> Option<u64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

fn parse_counter(raw: &[u8]) -> Result<u64, BlueprintStoreError> {
    decimal(raw).ok_or_else(|| {
        corrupt(format!(
            "the version counter {:?} is not a number",
            String::from_utf8_lossy(raw)
        ))
    })
}

fn parse_version_field(field: &[u8]) -> Result<u64, BlueprintStoreError> {
    decimal(field)
        .filter(|version| *version > 0)
        .ok_or_else(|| {
            corrupt(format!(
                "entries field {:?} is not a version",
                String::from_utf8_lossy(field)
            ))
        })
}

/// An entry's own JSON, as `load` decodes it.
fn encode(entry: &SystemRegisterEntry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("an entry encodes as JSON (documents are UTF-8 JSON text)")
}

/// An entry's kind as its JSON spells it (`published`, …), for the restore script to compare.
fn kind_json(entry: &SystemRegisterEntry) -> String {
    serde_json::to_value(entry.kind)
        .ok()
        .and_then(|kind| kind.as_str().map(str::to_owned))
        .expect("an entry kind encodes as a JSON string (a unit variant)")
}

/// Decodes the entry stored at `version`.
/// 16 random hex digits, from the standard library's randomly keyed hasher.
fn random_nonce() -> String {
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

fn corrupt(what: String) -> BlueprintStoreError {
    BlueprintStoreError::Corrupt { what }
}

/// Connection, I/O, timeouts and server refusals (loading, read-only, out of memory, a script
/// error) are transient: `Unavailable`. A reply of the wrong shape means the store holds
/// something this adapter did not write: `Corrupt`.
fn store_error(err: RedisError) -> BlueprintStoreError {
    match err.kind() {
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse => BlueprintStoreError::Corrupt {
            what: format!("unexpected reply from redis: {err}"),
        },
        _ => BlueprintStoreError::Unavailable(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("herald");
        assert_eq!(keys.genesis, "herald:{sysreg}:genesis");
        assert_eq!(keys.entries, "herald:{sysreg}:entries");
        assert_eq!(keys.version, "herald:{sysreg}:version");
        assert_eq!(keys.channel, "herald:{sysreg}:appended");
        assert_eq!(keys.request, "herald:{sysreg}:request:");
    }

    #[test]
    fn version_fields_and_counters_parse_strictly() {
        assert_eq!(parse_version_field(b"17").unwrap(), 17);
        for bad in [&b"0"[..], b"-1", b"x", b"", b"1.5", b"\xff"] {
            assert!(parse_version_field(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_counter(b"0").unwrap(), 0);
        assert!(parse_counter(b"many").is_err());
    }

    #[test]
    fn describe_never_shows_credentials() {
        let store = RedisBlueprintStore::new("redis://admin:s3cret@10.0.0.7:6380/2", "herald");
        assert_eq!(
            store.unwrap().describe(),
            "redis://10.0.0.7:6380/2 (system register, prefix herald)"
        );
    }

    #[test]
    fn new_refuses_bad_urls_and_prefixes_without_connecting() {
        assert!(matches!(
            RedisBlueprintStore::new("http://nope", "herald"),
            Err(RedisOpenError::InvalidUrl(_))
        ));
        for prefix in ["", "a{b}", "a*", "a:b"] {
            assert!(matches!(
                RedisBlueprintStore::new("redis://127.0.0.1:1", prefix),
                Err(RedisOpenError::InvalidPrefix(_))
            ));
        }
    }

    #[test]
    fn request_keys_are_unique_per_store_and_across_stores() {
        let a = RedisBlueprintStore::new("redis://127.0.0.1:1", "herald").unwrap();
        let b = RedisBlueprintStore::new("redis://127.0.0.1:1", "herald").unwrap();
        let first = a.inner.next_request_key();
        assert!(first.starts_with("herald:{sysreg}:request:"), "{first}");
        assert_ne!(first, a.inner.next_request_key());
        assert_ne!(first, b.inner.next_request_key());
    }
}
