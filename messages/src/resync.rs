//! The resync driver's message enum and the sync state it exposes (register role).

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};

use crate::{NewRegister, Register, RegisterError, RegisterId, RegisterPatch, Timestamp, Valid};

/// Where the driver stands with the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncStatus {
    /// No full sync has been tried yet.
    #[default]
    NotStarted,
    /// A push is under way.
    Syncing,
    /// The last full sync succeeded.
    InSync,
    /// The last push failed; a full sync is scheduled after a backoff.
    Retrying,
}

/// The driver's record of its pushes to the pool (spec 030 `AdvertisementSyncState`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvertisementSyncState {
    pub status: SyncStatus,
    pub last_attempt: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    /// Registers pushed by the last successful full sync.
    pub last_pushed: usize,
    pub successful_full_syncs: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// When the next retry or periodic full sync is due.
    pub next_full_sync: Option<Timestamp>,
    /// Where the pool is: "local" or the peer's URL.
    pub pool: String,
}

/// Messages of the `ResyncDriver` actor.
#[derive(RactorMessage)]
pub enum ResyncDriverMsg {
    CreateRegister(
        Valid<NewRegister>,
        RpcReplyPort<Result<Register, RegisterError>>,
    ),
    UpdateRegister(
        RegisterId,
        Valid<RegisterPatch>,
        RpcReplyPort<Result<Register, RegisterError>>,
    ),
    DeleteRegister(RegisterId, RpcReplyPort<Result<(), RegisterError>>),
    GetRegister(RegisterId, RpcReplyPort<Result<Register, RegisterError>>),
    ListRegisters(RpcReplyPort<Result<Vec<Register>, RegisterError>>),
    SyncState(RpcReplyPort<AdvertisementSyncState>),
    /// Push a full sync now (an operator's "resync"), besides the schedule.
    ResyncNow,
    /// Internal timer: the periodic full sync is due.
    PeriodicTick,
    /// Internal timer: the backoff after a failed push is over.
    Retry,
    /// Internal: a push task finished.
    PushFinished(PushReport),
    /// Internal: (re)open the ground truth's watch (at start, then after it ended or failed).
    WatchTruth,
    /// Internal: the ground truth's watch says this register changed.
    TruthChanged(RegisterId),
    /// Internal: the ground truth's watch ended (changes may be missed until it is reopened).
    TruthWatchEnded,
}

/// How a push task ended (internal to the driver).
#[derive(Debug)]
pub struct PushReport {
    pub full_sync: bool,
    pub started_at: Timestamp,
    pub result: Result<usize, String>,
}
