//! Domain values the store tests build again and again: a system register's genesis and its
//! entries, one definition for every suite.

use std::collections::BTreeMap;

use herald::parts::messages::{
    BlueprintId, EntryDraft, EntryKind, Genesis, HistoryId, NodeId, RegisterId, Timestamp,
};

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
