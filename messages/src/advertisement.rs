//! An advertisement: "this source serves this register", as the peer role's pool holds it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{NodeId, RegisterId, Timestamp};

/// Who advertises the register: this node (the register role owns the truth) or another peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AdSource {
    Local,
    Remote(NodeId),
}

impl fmt::Display for AdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdSource::Local => f.write_str("local"),
            AdSource::Remote(peer) => write!(f, "remote:{peer}"),
        }
    }
}

/// How far the advertising source has replicated the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncState {
    Subscribing,
    Syncing,
    FullyReplicated,
    #[default]
    Active,
    Error,
}

impl SyncState {
    /// Whether a source in this state holds a full replica of the register.
    pub fn is_full_replica(self) -> bool {
        matches!(self, SyncState::FullyReplicated | SyncState::Active)
    }
}

/// The identity of an advertisement in the pool and in its store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdKey {
    pub source: AdSource,
    pub register_id: RegisterId,
}

impl AdKey {
    pub fn local(register_id: RegisterId) -> Self {
        Self {
            source: AdSource::Local,
            register_id,
        }
    }

    pub fn remote(peer: NodeId, register_id: RegisterId) -> Self {
        Self {
            source: AdSource::Remote(peer),
            register_id,
        }
    }
}

impl fmt::Display for AdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.register_id)
    }
}

/// One advertisement as stored. The in-memory `verified` flag lives in the pool, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Advertisement {
    pub register_id: RegisterId,
    pub source: AdSource,
    pub sync_state: SyncState,
    pub is_public: bool,
    pub latest_version: u64,
    pub latest_docket_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Arc<str>>,
    /// Last time the source confirmed the ad (a full sync, an advertise, a gossip).
    pub refreshed_at: Timestamp,
    /// Last time the ad's content changed in this pool; full-sync snapshots read before this
    /// time do not undo the change.
    pub changed_at: Timestamp,
}

impl Advertisement {
    pub fn key(&self) -> AdKey {
        AdKey {
            source: self.source.clone(),
            register_id: self.register_id.clone(),
        }
    }

    /// Whether `self` and `other` say the same thing, ignoring when it was said.
    pub fn same_content(&self, other: &Advertisement) -> bool {
        self.register_id == other.register_id
            && self.source == other.source
            && self.sync_state == other.sync_state
            && self.is_public == other.is_public
            && self.latest_version == other.latest_version
            && self.latest_docket_version == other.latest_docket_version
            && self.name == other.name
            && self.description == other.description
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_is_camel_case_json_and_round_trips() {
        let ad = Advertisement {
            register_id: RegisterId::from_bytes([1; 16]),
            source: AdSource::Remote(NodeId::parse("peer-b").unwrap()),
            sync_state: SyncState::FullyReplicated,
            is_public: true,
            latest_version: 7,
            latest_docket_version: 3,
            name: Some("ledger".into()),
            description: None,
            refreshed_at: Timestamp::from_unix_millis(10),
            changed_at: Timestamp::from_unix_millis(5),
        };
        let json = serde_json::to_string(&ad).unwrap();
        assert!(json.contains("\"registerId\""), "{json}");
        assert!(
            json.contains("\"source\":{\"remote\":\"peer-b\"}"),
            "{json}"
        );
        assert!(!json.contains("description"), "{json}");
        let back: Advertisement = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ad);
    }

    #[test]
    fn same_content_ignores_times_only() {
        let a = Advertisement {
            register_id: RegisterId::from_bytes([2; 16]),
            source: AdSource::Local,
            sync_state: SyncState::Active,
            is_public: true,
            latest_version: 1,
            latest_docket_version: 1,
            name: None,
            description: None,
            refreshed_at: Timestamp::from_unix_millis(1),
            changed_at: Timestamp::from_unix_millis(1),
        };
        let mut b = a.clone();
        b.refreshed_at = Timestamp::from_unix_millis(99);
        assert!(a.same_content(&b));
        b.latest_version = 2;
        assert!(!a.same_content(&b));
    }
}
