//! The advertisement pool's inputs, outputs and message enum (peer role).

use std::collections::HashSet;

use ractor::RpcReplyPort;
use ractor_cluster_derive::RactorMessage;
use serde::{Deserialize, Serialize};

use crate::{NodeId, RegisterId, Timestamp};

/// Largest bulk-advertise request accepted (items).
pub const MAX_BULK_ITEMS: usize = 10_000;
/// Longest register name accepted in an advertisement (characters).
pub const MAX_NAME_LEN: usize = 256;
/// Longest register description accepted in an advertisement (characters).
pub const MAX_DESCRIPTION_LEN: usize = 4_096;

/// One advertisement as a caller offers it (the register role, an operator, a gossiping peer).
/// `is_public = false` withdraws it. Absent name or description leave the stored ones alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdInput {
    pub register_id: RegisterId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub is_public: bool,
    #[serde(default)]
    pub latest_version: u64,
    #[serde(default)]
    pub latest_docket_version: u64,
}

impl AdInput {
    /// A public advertisement with nothing but its id.
    pub fn public(register_id: RegisterId) -> Self {
        Self {
            register_id,
            name: None,
            description: None,
            is_public: true,
            latest_version: 0,
            latest_docket_version: 0,
        }
    }

    /// A withdrawal of the register's advertisement.
    pub fn withdraw(register_id: RegisterId) -> Self {
        Self {
            is_public: false,
            ..Self::public(register_id)
        }
    }

    fn validate(&self, index: usize) -> Result<(), InvalidInput> {
        let too_long = |field: &str, value: &Option<String>, max: usize| match value {
            Some(text) if text.chars().count() > max => Err(InvalidInput::new(
                format!("advertisements[{index}].{field}"),
                format!("must be at most {max} characters"),
            )),
            _ => Ok(()),
        };
        too_long("name", &self.name, MAX_NAME_LEN)?;
        too_long("description", &self.description, MAX_DESCRIPTION_LEN)
    }
}

/// Identifies a ground-truth snapshot behind a full sync: `seq` orders snapshots (the register
/// role uses its store's revision), `read_at` is when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub seq: u64,
    pub read_at: Timestamp,
}

/// A batch of advertisements. With `full_sync` the list is the complete set of local public
/// registers: local ads not in it are removed (remote ads are untouched); an empty list is legal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkAdvertise {
    pub advertisements: Vec<AdInput>,
    #[serde(default)]
    pub full_sync: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

impl BulkAdvertise {
    /// A single advertisement or withdrawal.
    pub fn one(input: AdInput) -> Self {
        Self {
            advertisements: vec![input],
            full_sync: false,
            snapshot: None,
        }
    }

    /// A full sync of the given public registers.
    pub fn full(advertisements: Vec<AdInput>, snapshot: Option<Snapshot>) -> Self {
        Self {
            advertisements,
            full_sync: true,
            snapshot,
        }
    }

    /// Checks the limits; a request that fails changes nothing.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.advertisements.len() > MAX_BULK_ITEMS {
            return Err(InvalidInput::new(
                "advertisements",
                format!(
                    "at most {MAX_BULK_ITEMS} items per request, got {}",
                    self.advertisements.len()
                ),
            ));
        }
        let mut seen = HashSet::with_capacity(self.advertisements.len());
        for (index, input) in self.advertisements.iter().enumerate() {
            input.validate(index)?;
            if !seen.insert(&input.register_id) {
                return Err(InvalidInput::new(
                    format!("advertisements[{index}].registerId"),
                    format!("duplicate register id {}", input.register_id),
                ));
            }
        }
        Ok(())
    }
}

/// What a bulk request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOutcome {
    pub processed: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Whether the change reached the store; false while the store is degraded (the change is
    /// served from memory and persisted when the store returns).
    pub persisted: bool,
}

/// A request that breaks a rule, with the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    pub field: String,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why the pool refused a request. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidInput),
    /// A full sync from an older snapshot than the last one applied.
    #[error(
        "stale full-sync snapshot {offered_seq} (read at {offered_read_at}); snapshot {applied_seq} was already applied"
    )]
    StaleSnapshot {
        offered_seq: u64,
        offered_read_at: Timestamp,
        applied_seq: u64,
    },
}

/// One register in *Available Registers*: every live public advertisement of it, merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableRegister {
    pub register_id: RegisterId,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Sources (this node and remote peers) advertising it.
    pub peer_count: usize,
    pub latest_version: u64,
    pub latest_docket_version: u64,
    pub is_public: bool,
    /// Sources holding a full replica.
    pub full_replica_peer_count: usize,
    /// Whether this node advertises it.
    pub local: bool,
    /// False while an ad reloaded after a restart waits for its source to confirm it.
    pub verified: bool,
}

/// Whether the pool's store is taking writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum StoreHealth {
    Healthy,
    /// Writes fail: the pool serves and accepts from memory and retries with backoff.
    Degraded {
        since: Timestamp,
        reason: String,
    },
}

/// The pool's bookkeeping persisted beside the ads; its presence also tells the pool that the
/// store still holds what it wrote (a restarted, empty Redis does not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolMeta {
    pub last_snapshot: Option<Snapshot>,
}

/// The pool's health and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub node_id: NodeId,
    pub local_ads: usize,
    pub remote_ads: usize,
    pub unverified_ads: usize,
    /// Ads (or removals) not yet in the store.
    pub dirty_ads: usize,
    /// Whether the store's content has been read since the pool started.
    pub loaded: bool,
    pub store: StoreHealth,
    pub last_snapshot: Option<Snapshot>,
}

/// Messages of the `AdvertisementPool` actor.
#[derive(RactorMessage)]
pub enum AdvertisementPoolMsg {
    /// Advertise, update or withdraw (single or full sync).
    Bulk(BulkAdvertise, RpcReplyPort<Result<BulkOutcome, PoolError>>),
    /// The complete list of a remote peer's public local ads (an empty list withdraws all).
    Gossip {
        peer: NodeId,
        ads: Vec<AdInput>,
    },
    /// Every live public register, merged across sources, ordered by id.
    Available(RpcReplyPort<Vec<AvailableRegister>>),
    Status(RpcReplyPort<PoolStatus>),
    /// Internal: replay the store. The pool sends it to itself before anything else.
    Load,
    /// Internal timer: drop expired remote ads.
    Sweep,
    /// Internal timer: renew every stored ad's expiry.
    Renew,
    /// Internal timer: check that the store still holds what the pool wrote.
    CheckStore,
    /// Internal timer: retry the store after a failure.
    RetryStore,
}
