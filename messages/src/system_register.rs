//! The system register: the hub-owned, versioned set of JSON blueprints that every peer
//! replicates (spec 001, user story 4).
//!
//! The register is an append-only log. Its genesis record names its `HistoryId`; every entry
//! (a publication, an update or a deprecation of a blueprint) has the next version. The state of
//! a blueprint is its latest entry. A replica is the latest entry of each blueprint plus a
//! checkpoint (history, version).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::{is_name, string_id_impls};
use crate::{InvalidId, InvalidInput, NodeId, RegisterId, Timestamp};

/// Largest blueprint document accepted (bytes of JSON).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Largest notification summary (bytes).
pub const MAX_SUMMARY_BYTES: usize = 4 * 1024;
/// Largest total size of an entry's metadata (keys and values, bytes).
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
/// The blueprint seeded at genesis.
pub const SEED_BLUEPRINT_ID: &str = "register-creation-v1";

impl RegisterId {
    /// The well-known id of the system register: 32 zeros.
    pub fn system() -> Self {
        Self::from_bytes([0; 16])
    }
}

/// A blueprint id: 1 to 255 characters of `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlueprintId(String);

string_id_impls!(BlueprintId);

impl BlueprintId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        if !is_name(value, Self::MAX_LEN) {
            return Err(InvalidId {
                what: "blueprint id",
                rule: "1 to 255 characters of [A-Za-z0-9_-]",
                value: value.chars().take(80).collect(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The blueprint seeded at genesis.
    pub fn seed() -> Self {
        Self(SEED_BLUEPRINT_ID.to_owned())
    }
}

/// The identity of one system register's history: 32 lowercase hex characters drawn at
/// genesis. A checkpoint of another history is worthless (full sync).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HistoryId(RegisterId);

string_id_impls!(HistoryId);

impl HistoryId {
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        RegisterId::parse(value).map(Self).map_err(|err| InvalidId {
            what: "history id",
            ..err
        })
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(RegisterId::from_bytes(bytes))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// What an entry did to its blueprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryKind {
    Published,
    Updated,
    Deprecated,
}

/// The record the system register starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Genesis {
    pub register_id: RegisterId,
    pub history_id: HistoryId,
    pub created_at: Timestamp,
    /// The hub that created it.
    pub created_by: NodeId,
}

/// One entry of the system register's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemRegisterEntry {
    pub blueprint_id: BlueprintId,
    pub version: u64,
    pub kind: EntryKind,
    /// The blueprint's JSON document (for a deprecation: the last document).
    #[serde(with = "json_text")]
    pub document: Bytes,
    pub published_at: Timestamp,
    pub published_by: String,
    pub is_active: bool,
    pub transaction_id: String,
    /// `sha256:<64 lowercase hex>` of `document`.
    pub checksum: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl SystemRegisterEntry {
    /// `sha256:<64 lowercase hex>` of a document.
    pub fn checksum_of(document: &[u8]) -> String {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(document)))
    }

    /// Whether the checksum matches the document.
    pub fn checksum_holds(&self) -> bool {
        self.checksum == Self::checksum_of(&self.document)
    }
}

/// An entry before the store gave it its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDraft {
    pub blueprint_id: BlueprintId,
    pub kind: EntryKind,
    pub document: Bytes,
    pub published_at: Timestamp,
    pub published_by: String,
    pub transaction_id: String,
    pub metadata: BTreeMap<String, String>,
}

impl EntryDraft {
    /// The entry at `version`, with its checksum.
    pub fn at_version(self, version: u64) -> SystemRegisterEntry {
        SystemRegisterEntry {
            checksum: SystemRegisterEntry::checksum_of(&self.document),
            is_active: self.kind != EntryKind::Deprecated,
            blueprint_id: self.blueprint_id,
            version,
            kind: self.kind,
            document: self.document,
            published_at: self.published_at,
            published_by: self.published_by,
            transaction_id: self.transaction_id,
            metadata: self.metadata,
        }
    }
}

/// A request to publish a blueprint, or to update it when it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub blueprint_id: BlueprintId,
    /// JSON.
    pub document: Bytes,
    pub published_by: String,
    pub metadata: BTreeMap<String, String>,
}

impl PublishRequest {
    /// Checks the document (JSON, at most 16 MiB) and the metadata (under 4 KiB in all).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.document.len() > MAX_DOCUMENT_BYTES {
            return Err(InvalidInput::new(
                "document",
                format!(
                    "must be at most {MAX_DOCUMENT_BYTES} bytes, got {}",
                    self.document.len()
                ),
            ));
        }
        if let Err(err) = serde_json_check(&self.document) {
            return Err(InvalidInput::new(
                "document",
                format!("must be JSON: {err}"),
            ));
        }
        let metadata_bytes: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if metadata_bytes >= MAX_METADATA_BYTES {
            return Err(InvalidInput::new(
                "metadata",
                format!("must total under {MAX_METADATA_BYTES} bytes, got {metadata_bytes}"),
            ));
        }
        if self.published_by.trim().is_empty() || self.published_by.len() > 255 {
            return Err(InvalidInput::new(
                "publishedBy",
                "must be 1 to 255 characters",
            ));
        }
        Ok(())
    }
}

/// A push notification: something changed at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintNotification {
    pub history_id: HistoryId,
    pub blueprint_id: BlueprintId,
    pub version: u64,
    pub kind: EntryKind,
    pub published_at: Timestamp,
    pub published_by: String,
    pub checksum: String,
    /// Per-subscription sequence number, for spotting gaps and duplicates.
    pub sequence: u64,
}

/// Where a replica stands: the history it follows and the version it holds everything up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub history_id: HistoryId,
    pub version: u64,
    pub synced_at: Timestamp,
    /// The hub it was synced from.
    pub hub_id: NodeId,
}

/// A summary line of one blueprint, as `GET /api/system-register` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintSummary {
    pub blueprint_id: BlueprintId,
    pub version: u64,
    pub is_active: bool,
    pub checksum: String,
}

/// A view of a system register (the hub's, or a peer's replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemRegisterView {
    pub history_id: Option<HistoryId>,
    pub version: u64,
    pub total_blueprints: usize,
    pub blueprints: Vec<BlueprintSummary>,
}

/// Documents are JSON text: stored and shown as JSON, carried as bytes.
mod json_text {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(document: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(document).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Bytes::from(text))
    }
}

/// Whether `bytes` are one JSON value, without building it.
fn serde_json_check(bytes: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blueprint_ids_follow_the_contract() {
        assert!(BlueprintId::parse("register-creation-v1").is_ok());
        assert!(BlueprintId::parse(&"a".repeat(255)).is_ok());
        assert!(BlueprintId::parse(&"a".repeat(256)).is_err());
        assert!(BlueprintId::parse("with space").is_err());
        assert!(BlueprintId::parse("").is_err());
    }

    #[test]
    fn the_system_register_id_is_all_zeros() {
        assert_eq!(
            RegisterId::system().as_str(),
            "00000000000000000000000000000000"
        );
    }

    #[test]
    fn publish_requests_need_json_within_limits() {
        let request = |document: &str| PublishRequest {
            blueprint_id: BlueprintId::seed(),
            document: Bytes::from(document.to_owned()),
            published_by: "admin".into(),
            metadata: BTreeMap::new(),
        };
        assert!(request(r#"{"steps":[1,2]}"#).validate().is_ok());
        assert_eq!(
            request("{not json").validate().unwrap_err().field,
            "document"
        );
        let mut heavy = request("{}");
        heavy
            .metadata
            .insert("k".into(), "v".repeat(MAX_METADATA_BYTES));
        assert_eq!(heavy.validate().unwrap_err().field, "metadata");
    }

    #[test]
    fn drafts_get_their_version_checksum_and_activity() {
        let draft = EntryDraft {
            blueprint_id: BlueprintId::seed(),
            kind: EntryKind::Deprecated,
            document: Bytes::from_static(b"{}"),
            published_at: Timestamp::EPOCH,
            published_by: "hub-1".into(),
            transaction_id: "t".into(),
            metadata: BTreeMap::new(),
        };
        let entry = draft.at_version(7);
        assert_eq!(entry.version, 7);
        assert!(!entry.is_active);
        assert_eq!(
            entry.checksum,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(entry.checksum_holds());
        let mut tampered = entry;
        tampered.document = Bytes::from_static(b"[]");
        assert!(!tampered.checksum_holds());
    }

    #[test]
    fn entries_store_documents_as_json_text() {
        let entry = SystemRegisterEntry {
            blueprint_id: BlueprintId::seed(),
            version: 1,
            kind: EntryKind::Published,
            document: Bytes::from_static(br#"{"a":1}"#),
            published_at: Timestamp::EPOCH,
            published_by: "hub-1".into(),
            is_active: true,
            transaction_id: "t".into(),
            checksum: "sha256:00".into(),
            metadata: BTreeMap::new(),
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains(r#""document":"{\"a\":1}""#), "{json}");
        assert_eq!(
            serde_json::from_str::<SystemRegisterEntry>(&json).unwrap(),
            entry
        );
    }
}
