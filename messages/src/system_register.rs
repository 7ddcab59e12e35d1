//! The system register: the hub-owned, versioned set of JSON blueprints that every peer
//! replicates (spec 001, user story 4).
//!
//! The register is an append-only log. Its genesis record names its `HistoryId`; every entry
//! (a publication, an update or a deprecation of a blueprint) has the next version. The state of
//! a blueprint is its latest entry. A replica is the latest entry of each blueprint plus a
//! checkpoint (history, version).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::{is_name, string_id_impls, truncate_for_error};
use crate::signature::EntrySignature;
use crate::{InvalidId, InvalidInput, NodeId, RegisterId, Timestamp};

/// Largest blueprint document accepted (bytes of JSON).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Largest notification summary (bytes).
pub const MAX_SUMMARY_BYTES: usize = 4 * 1024;
/// Largest total size of an entry's metadata (keys and values, bytes).
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
/// Longest publisher name accepted (bytes).
pub const MAX_PUBLISHED_BY_LEN: usize = 255;
/// How an entry's checksum starts; 64 lowercase hex digits of SHA-256 follow.
pub const CHECKSUM_PREFIX: &str = "sha256:";
const CHECKSUM_HEX_LEN: usize = 64;
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
    /// The appending hub's signature (`crate::signature`); `None` from a hub without a signing
    /// key, and in entries stored before signatures existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<EntrySignature>,
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

    /// The form of a checksum: `sha256:` and 64 lowercase hex digits (whether it matches a
    /// document is `checksum_holds`).
    pub fn check_checksum(value: &str) -> Result<(), String> {
        let well_formed = value.strip_prefix(CHECKSUM_PREFIX).is_some_and(|hex| {
            hex.len() == CHECKSUM_HEX_LEN
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if well_formed {
            return Ok(());
        }
        Err(format!(
            "must be {CHECKSUM_PREFIX:?} and {CHECKSUM_HEX_LEN} lowercase hex digits, got {:?}",
            truncate_for_error(value)
        ))
    }

    /// A document's size: at most `MAX_DOCUMENT_BYTES`.
    pub fn check_document(document: &[u8]) -> Result<(), String> {
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "must be at most {MAX_DOCUMENT_BYTES} bytes, got {}",
                document.len()
            ));
        }
        Ok(())
    }

    /// A publisher name: at most `MAX_PUBLISHED_BY_LEN` bytes.
    pub fn check_published_by(value: &str) -> Result<(), String> {
        if value.len() > MAX_PUBLISHED_BY_LEN {
            return Err(format!(
                "must be at most {MAX_PUBLISHED_BY_LEN} bytes, got {}",
                value.len()
            ));
        }
        Ok(())
    }

    /// Metadata: keys and values together under `MAX_METADATA_BYTES`.
    pub fn check_metadata<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(), String> {
        let total: usize = pairs
            .into_iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        if total >= MAX_METADATA_BYTES {
            return Err(format!(
                "must total under {MAX_METADATA_BYTES} bytes, got {total}"
            ));
        }
        Ok(())
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
    /// The entry at `version`, with its checksum, unsigned (`EntrySigner::sign` signs it).
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
            signature: None,
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
    /// Checks the document (JSON, at most 16 MiB), the metadata (under 4 KiB in all) and the
    /// publisher (1 to 255 bytes, not blank).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        SystemRegisterEntry::check_document(&self.document)
            .map_err(|reason| InvalidInput::new("document", reason))?;
        if let Err(err) = serde_json_check(&self.document) {
            return Err(InvalidInput::new(
                "document",
                format!("must be JSON: {err}"),
            ));
        }
        SystemRegisterEntry::check_metadata(&self.metadata)
            .map_err(|reason| InvalidInput::new("metadata", reason))?;
        if self.published_by.trim().is_empty() {
            return Err(InvalidInput::new(
                "publishedBy",
                format!("must be 1 to {MAX_PUBLISHED_BY_LEN} characters"),
            ));
        }
        SystemRegisterEntry::check_published_by(&self.published_by)
            .map_err(|reason| InvalidInput::new("publishedBy", reason))
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
    /// The size of the entry's document (0 when the hub did not say).
    pub document_bytes: usize,
    /// Per-subscription sequence number, for spotting gaps and duplicates.
    pub sequence: u64,
}

/// Which notifications a subscriber wants; empty lists mean all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    pub blueprint_ids: BTreeSet<BlueprintId>,
    pub publishers: BTreeSet<String>,
    pub kinds: Vec<EntryKind>,
}

impl NotificationFilter {
    /// Most values in one list of a filter.
    pub const MAX_ITEMS: usize = 1024;

    pub fn matches(&self, notification: &BlueprintNotification) -> bool {
        (self.blueprint_ids.is_empty() || self.blueprint_ids.contains(&notification.blueprint_id))
            && (self.publishers.is_empty() || self.publishers.contains(&notification.published_by))
            && (self.kinds.is_empty() || self.kinds.contains(&notification.kind))
    }

    /// The length of one list: at most `MAX_ITEMS`.
    pub fn check_len(len: usize) -> Result<(), String> {
        if len > Self::MAX_ITEMS {
            return Err(format!("at most {} values, got {len}", Self::MAX_ITEMS));
        }
        Ok(())
    }
}

/// A running digest of a register's log: the digest at version `v` hashes the digest at
/// `v - 1` with entry `v`'s version, blueprint, kind, activity and checksum (version 0: all
/// zeros). Two registers of one history that hold the same digest at a version hold the same
/// entries up to it; a peer and a hub compare digests to find a replica that diverged even at
/// the same version (a hub restored from a backup, a shared store that lost acknowledged
/// appends). It proves nothing against a forger (that is for signatures).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegisterDigest([u8; 32]);

impl RegisterDigest {
    /// The digest of the empty log.
    pub const EMPTY: RegisterDigest = RegisterDigest([0; 32]);

    /// The digest after `entry`, which follows the log this digest covers.
    pub fn then(&self, entry: &SystemRegisterEntry) -> RegisterDigest {
        use sha2::Digest;
        let kind: u8 = match entry.kind {
            EntryKind::Published => 1,
            EntryKind::Updated => 2,
            EntryKind::Deprecated => 3,
        };
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.0);
        hasher.update(entry.version.to_be_bytes());
        hasher.update(entry.blueprint_id.as_str().as_bytes());
        hasher.update([0, kind, u8::from(entry.is_active)]);
        hasher.update(entry.checksum.as_bytes());
        RegisterDigest(hasher.finalize().into())
    }

    /// `sha256:` and 64 lowercase hex digits, as `Display` writes it.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let invalid = || InvalidId {
            what: "register digest",
            rule: "\"sha256:\" and 64 lowercase hex digits",
            value: truncate_for_error(value),
        };
        SystemRegisterEntry::check_checksum(value).map_err(|_| invalid())?;
        let hex = &value[CHECKSUM_PREFIX.len()..];
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex, &mut bytes).map_err(|_| invalid())?;
        Ok(Self(bytes))
    }
}

impl std::fmt::Display for RegisterDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{CHECKSUM_PREFIX}{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for RegisterDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegisterDigest({self})")
    }
}

impl Serialize for RegisterDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RegisterDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
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
    /// The register's digest at `version`, when the hub sent it (hubs before digests did not;
    /// checkpoints written before them have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<RegisterDigest>,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemRegisterView {
    pub history_id: Option<HistoryId>,
    pub version: u64,
    /// Every blueprint, deprecated ones included (as everywhere `totalBlueprints` appears).
    pub total_blueprints: usize,
    /// Blueprints not deprecated.
    pub active_blueprints: usize,
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
            signature: None,
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains(r#""document":"{\"a\":1}""#), "{json}");
        assert_eq!(
            serde_json::from_str::<SystemRegisterEntry>(&json).unwrap(),
            entry
        );
    }
}
