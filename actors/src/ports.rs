//! The ports: traits through which the actors reach the outside world (stores, the pool of
//! another node, the clock). Adapters live in `herald-runtime`; fakes in `testing`.
//!
//! Each port has one error enum whose variants tell the caller what to do (retry, skip, give
//! up), never which library failed.

use std::time::Duration;

use async_trait::async_trait;
use herald_messages::{
    AdKey, Advertisement, BulkAdvertise, BulkOutcome, PoolMeta, Register, RegisterId, Timestamp,
};

/// A boxed error from an adapter's driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and its sources on one line (`outer: inner: …`), for logs and status reports.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where the advertisement pool keeps its ads (Redis, redb, memory).
///
/// An adapter stores the ads of one node; keys are namespaced by node id so nodes may share a
/// store. Every write carries an expiry: a pool that dies for good leaves nothing behind for long.
#[async_trait]
pub trait AdStore: Send + Sync + 'static {
    /// Everything this node stored that has not expired. Records that cannot be decoded are
    /// skipped and named in `skipped`, never fatal.
    async fn load(&self) -> Result<StoredPool, StoreError>;

    /// Writes one batch (puts, deletes and the pool's meta record) as one unit where the store
    /// allows it, pipelined otherwise. Every put and the meta record expire after `expiry`.
    async fn write(&self, batch: &AdBatch<'_>, expiry: Duration) -> Result<(), StoreError>;

    /// Whether the store still holds the meta record of the last write: false when it lost its
    /// data (a restarted, empty Redis) and everything must be written again.
    async fn holds_meta(&self) -> Result<bool, StoreError>;

    /// A short description for logs and status, e.g. `redis://127.0.0.1:6379 (node peer-a)`.
    fn describe(&self) -> String;
}

/// What `AdStore::load` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredPool {
    pub ads: Vec<Advertisement>,
    pub meta: Option<PoolMeta>,
    /// Keys of records that could not be decoded (skipped and counted).
    pub skipped: Vec<String>,
}

/// One write to an `AdStore`. It borrows the pool's book: nothing is copied on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdBatch<'a> {
    pub puts: Vec<&'a Advertisement>,
    pub deletes: Vec<&'a AdKey>,
    pub meta: PoolMeta,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Transient: keep serving from memory, retry with backoff.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store answered with something it should not hold; the caller cannot fix it by
    /// retrying the same call.
    #[error("store corrupt: {what}")]
    Corrupt { what: String },
}

/// The register role's ground truth: which registers exist and which are public.
#[async_trait]
pub trait GroundTruth: Send + Sync + 'static {
    /// Every register with `advertise = true` (an indexed read, not a scan of all registers),
    /// and the store's revision at the time of the read.
    async fn public_registers(&self) -> Result<PublicRegisters, GroundTruthError>;
    async fn get(&self, id: &RegisterId) -> Result<Option<Register>, GroundTruthError>;
    async fn list(&self) -> Result<Vec<Register>, GroundTruthError>;
    /// Stores a new register; the store assigns its revision. Fails if the id exists.
    async fn create(&self, register: Register) -> Result<Register, GroundTruthError>;
    /// Replaces an existing register; the store assigns its revision.
    async fn replace(&self, register: Register) -> Result<Register, GroundTruthError>;
    /// Deletes a register; `Ok(false)` when there was none.
    async fn delete(&self, id: &RegisterId) -> Result<bool, GroundTruthError>;
    fn describe(&self) -> String;
}

/// The public registers at one revision of the ground truth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicRegisters {
    pub registers: Vec<Register>,
    pub revision: u64,
}

/// Why a ground-truth call failed.
#[derive(Debug, thiserror::Error)]
pub enum GroundTruthError {
    /// Transient: retry later; nothing changed.
    #[error("ground truth unavailable")]
    Unavailable(#[source] BoxError),
    #[error("register {0} already exists")]
    AlreadyExists(RegisterId),
    #[error("register {0} not found")]
    NotFound(RegisterId),
    #[error("ground truth corrupt: {what}")]
    Corrupt { what: String },
}

/// How the register role reaches the pool: the local actor when both roles share a node, the
/// peer's HTTP API otherwise.
#[async_trait]
pub trait PoolLink: Send + Sync + 'static {
    async fn push(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolLinkError>;
    /// `local` or the peer's URL, for logs and status.
    fn describe(&self) -> String;
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolLinkError {
    /// The pool could not be reached or did not answer in time: retry with backoff.
    #[error("pool unreachable")]
    Unreachable(#[source] BoxError),
    /// The pool answered and refused the request (stale snapshot, invalid input, bad token).
    #[error("pool refused the push: {0}")]
    Refused(String),
}

/// Wall-clock time for stored and reported times. Timers use `tokio::time`.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}
