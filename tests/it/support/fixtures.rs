//! Domain values the store tests build again and again: node and register ids, a system
//! register's genesis and its entries, one definition for every suite.

use std::collections::BTreeMap;

use herald::parts::messages::{
    BlueprintId, EntryDraft, EntryKind, EntrySigner, Genesis, HistoryId, NodeId, RegisterId,
    SystemRegisterEntry, Timestamp, TrustedKeys,
};

/// A node id the test spells out.
pub fn node(id: &str) -> NodeId {
    NodeId::parse(id).unwrap()
}

/// Register `n` (its id's last four bytes, big-endian).
pub fn rid(n: u32) -> RegisterId {
    let mut bytes = [0u8; 16];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    RegisterId::from_bytes(bytes)
}

/// The genesis of a system register; `history` tells registers apart (the history id's bytes).
pub fn genesis(history: u8) -> Genesis {
    Genesis {
        register_id: RegisterId::system(),
        history_id: HistoryId::from_bytes([history; 16]),
        created_at: Timestamp::from_unix_millis(1_700_000_000_000),
        created_by: NodeId::parse("hub-1").unwrap(),
    }
}

/// A published entry for `blueprint`, with a document and metadata that round trips must keep.
pub fn draft(blueprint: &str) -> EntryDraft {
    EntryDraft {
        blueprint_id: BlueprintId::parse(blueprint).unwrap(),
        kind: EntryKind::Published,
        document: format!(r#"{{"blueprint":"{blueprint}","steps":["a","b"]}}"#).into(),
        published_at: Timestamp::from_unix_millis(1_700_000_000_001),
        published_by: "admin".to_owned(),
        transaction_id: format!("tx-{blueprint}"),
        metadata: BTreeMap::from([("team".to_owned(), "core".to_owned())]),
    }
}

/// The signing key of the hub that appends the store tests' entries.
pub fn signer() -> EntrySigner {
    EntrySigner::from_bytes([42; 32])
}

/// The keys a peer of the store tests' hub trusts.
pub fn trusted() -> TrustedKeys {
    TrustedKeys::new([signer().trusted_key()])
}

/// `draft(blueprint)` at `version`, signed by `signer()` as an entry of `genesis(1)`'s history:
/// every store must keep the signature as it keeps the rest.
pub fn entry(blueprint: &str, version: u64) -> SystemRegisterEntry {
    let mut entry = draft(blueprint).at_version(version);
    entry.signature = Some(signer().sign(&genesis(1).history_id, &entry));
    entry
}
