//! `system_register.proto` (service `SystemRegisterSync`): sync requests, entries,
//! subscriptions, notifications and checkpoints, between wire and domain.

use bytes::Bytes;

use herald_messages::{
    BlueprintNotification, EntryKind, HistoryId, HubPeer, HubStatus, MAX_SUMMARY_BYTES, NodeId,
    NotificationFilter, RegisterId, SessionId, SyncScope, SystemRegisterEntry, Timestamp,
};

use super::{
    WireError, blueprint_id, checksum, count_to_wire, document_size, entry_version, history_id,
    metadata, node_id, optional_history_id, published_by, session_id, timestamp_from_wire,
    timestamp_to_wire, unknown_enum, version, version_to_wire,
};
use crate::v1;

pub fn notification_type_to_wire(kind: EntryKind) -> v1::NotificationType {
    match kind {
        EntryKind::Published => v1::NotificationType::BlueprintPublished,
        EntryKind::Updated => v1::NotificationType::BlueprintUpdated,
        EntryKind::Deprecated => v1::NotificationType::BlueprintDeprecated,
    }
}

/// `UNKNOWN` and undefined values are errors: a notification must say what happened.
pub fn notification_type_from_wire(value: i32) -> Result<EntryKind, WireError> {
    let field = "type";
    match v1::NotificationType::try_from(value) {
        Ok(v1::NotificationType::BlueprintPublished) => Ok(EntryKind::Published),
        Ok(v1::NotificationType::BlueprintUpdated) => Ok(EntryKind::Updated),
        Ok(v1::NotificationType::BlueprintDeprecated) => Ok(EntryKind::Deprecated),
        Ok(v1::NotificationType::Unknown) => Err(WireError::new(
            field,
            "must say what happened (NOTIFICATION_TYPE_UNKNOWN is not allowed)",
        )),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

/// A validated sync request. The RPC decides the scope: `FullSync` sends everything active,
/// `IncrementalSync` everything after `last_known_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncQuery {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub last_known_version: u64,
    pub full_sync: bool,
    /// The history of the peer's checkpoint, if it has one.
    pub history_id: Option<HistoryId>,
    /// `None`: unlimited.
    pub max_blueprints: Option<usize>,
}

/// A sync request for `scope`, with the history of the peer's checkpoint if any.
pub fn sync_request_to_wire(
    peer_id: &NodeId,
    session_id: &SessionId,
    scope: &SyncScope,
    history: Option<&HistoryId>,
    now: Timestamp,
) -> v1::SyncRequest {
    let (last_known_version, full_sync) = match scope {
        SyncScope::Full => (0, true),
        SyncScope::After(version) => (*version, false),
    };
    v1::SyncRequest {
        peer_id: peer_id.to_string(),
        last_known_version: version_to_wire(last_known_version),
        full_sync,
        session_id: session_id.to_string(),
        max_blueprints: 0,
        request_time: timestamp_to_wire(now),
        history_id: history.map(ToString::to_string).unwrap_or_default(),
    }
}

/// Validates a sync request: ids, `last_known_version` and `max_blueprints` not negative,
/// `history_id` empty or a history id.
pub fn sync_request_from_wire(wire: &v1::SyncRequest) -> Result<SyncQuery, WireError> {
    let max_blueprints = match wire.max_blueprints {
        0 => None,
        limit if limit > 0 => Some(usize::try_from(limit).unwrap_or(usize::MAX)),
        negative => {
            return Err(WireError::new(
                "max_blueprints",
                format!("must be ≥ 0 (0 = unlimited), got {negative}"),
            ));
        }
    };
    Ok(SyncQuery {
        peer_id: node_id("peer_id", &wire.peer_id)?,
        session_id: session_id("session_id", &wire.session_id)?,
        last_known_version: version("last_known_version", wire.last_known_version)?,
        full_sync: wire.full_sync,
        history_id: optional_history_id("history_id", &wire.history_id)?,
        max_blueprints,
    })
}

/// An entry of the system register, with the register's history.
pub fn entry_to_wire(entry: &SystemRegisterEntry, history: &HistoryId) -> v1::SystemRegisterEntry {
    v1::SystemRegisterEntry {
        blueprint_id: entry.blueprint_id.to_string(),
        register_id: RegisterId::system().to_string(),
        blueprint_document: entry.document.clone(),
        published_at: timestamp_to_wire(entry.published_at),
        published_by: entry.published_by.clone(),
        version: version_to_wire(entry.version),
        is_active: entry.is_active,
        publication_transaction_id: entry.transaction_id.clone(),
        checksum: entry.checksum.clone(),
        metadata: entry
            .metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        history_id: history.to_string(),
        kind: notification_type_to_wire(entry.kind).into(),
    }
}

/// Validates an entry a hub sent: the all-zero register id, a blueprint id, a version ≥ 1, a
/// `sha256:<64 lowercase hex>` checksum that matches the document, a document of at most
/// 16 MiB, metadata under 4 KiB and a history id. Returns the history with the entry.
///
/// An entry without a kind (from an older hub) reads as a deprecation when inactive and as a
/// publication when active.
pub fn entry_from_wire(
    wire: v1::SystemRegisterEntry,
) -> Result<(HistoryId, SystemRegisterEntry), WireError> {
    let register_id = RegisterId::parse(&wire.register_id)
        .map_err(|err| WireError::new("register_id", err.to_string()))?;
    if register_id != RegisterId::system() {
        return Err(WireError::new(
            "register_id",
            format!(
                "must be the system register {}, got {register_id}",
                RegisterId::system()
            ),
        ));
    }
    let history = history_id("history_id", &wire.history_id)?;
    let blueprint_id = blueprint_id("blueprint_id", &wire.blueprint_id)?;
    let version = entry_version("version", wire.version)?;
    document_size("blueprint_document", &wire.blueprint_document)?;
    // The format only: whether it matches the document is for the replica to check, once,
    // off its actor (hashing a 20 MiB full sync twice cost 15–19 ms, BENCHMARKS.md).
    checksum("checksum", &wire.checksum)?;
    published_by("published_by", &wire.published_by)?;
    let metadata = metadata("metadata", wire.metadata)?;
    let kind = match v1::NotificationType::try_from(wire.kind) {
        Ok(v1::NotificationType::Unknown) | Err(_) if wire.is_active => EntryKind::Published,
        Ok(v1::NotificationType::Unknown) | Err(_) => EntryKind::Deprecated,
        Ok(_) => notification_type_from_wire(wire.kind).map_err(|err| err.at("kind"))?,
    };
    let entry = SystemRegisterEntry {
        blueprint_id,
        version,
        kind,
        document: wire.blueprint_document,
        published_at: timestamp_from_wire("published_at", wire.published_at)?,
        published_by: wire.published_by,
        is_active: wire.is_active,
        transaction_id: wire.publication_transaction_id,
        checksum: wire.checksum,
        metadata,
    };
    Ok((history, entry))
}

/// A validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionQuery {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub filter: NotificationFilter,
}

/// A subscription to every notification.
pub fn subscription_request_to_wire(
    peer_id: &NodeId,
    session_id: &SessionId,
    now: Timestamp,
) -> v1::SubscriptionRequest {
    v1::SubscriptionRequest {
        peer_id: peer_id.to_string(),
        session_id: session_id.to_string(),
        subscribe_time: timestamp_to_wire(now),
        filters: None,
    }
}

/// Validates a subscription: ids, and filters of at most `NotificationFilter::MAX_ITEMS` values each with
/// blueprint ids, publisher names of at most 255 bytes and defined notification types.
/// Metadata filters are refused: notifications carry no metadata to match.
pub fn subscription_request_from_wire(
    wire: &v1::SubscriptionRequest,
) -> Result<SubscriptionQuery, WireError> {
    let peer_id = node_id("peer_id", &wire.peer_id)?;
    let session_id = session_id("session_id", &wire.session_id)?;
    let Some(filters) = &wire.filters else {
        return Ok(SubscriptionQuery {
            peer_id,
            session_id,
            filter: NotificationFilter::default(),
        });
    };
    filter_len("filters.blueprint_ids", filters.blueprint_ids.len())?;
    filter_len("filters.publisher_ids", filters.publisher_ids.len())?;
    filter_len(
        "filters.notification_types",
        filters.notification_types.len(),
    )?;
    if !filters.metadata_filters.is_empty() {
        return Err(WireError::new(
            "filters.metadata_filters",
            "not supported: notifications carry no metadata",
        ));
    }
    let blueprint_ids = filters
        .blueprint_ids
        .iter()
        .map(|id| blueprint_id("filters.blueprint_ids", id))
        .collect::<Result<_, _>>()?;
    let publishers = filters
        .publisher_ids
        .iter()
        .map(|publisher| {
            published_by("filters.publisher_ids", publisher)?;
            Ok(publisher.clone())
        })
        .collect::<Result<_, WireError>>()?;
    let kinds = filters
        .notification_types
        .iter()
        .map(|kind| {
            notification_type_from_wire(*kind).map_err(|err| err.at("filters.notification_types"))
        })
        .collect::<Result<_, _>>()?;
    Ok(SubscriptionQuery {
        peer_id,
        session_id,
        filter: NotificationFilter {
            blueprint_ids,
            publishers,
            kinds,
        },
    })
}

/// A push notification. It carries no summary: peers fetch the entry with a sync.
pub fn notification_to_wire(notification: &BlueprintNotification) -> v1::BlueprintNotification {
    v1::BlueprintNotification {
        blueprint_id: notification.blueprint_id.to_string(),
        version: version_to_wire(notification.version),
        published_at: timestamp_to_wire(notification.published_at),
        published_by: notification.published_by.clone(),
        blueprint_summary: Bytes::new(),
        r#type: i32::from(notification_type_to_wire(notification.kind)),
        checksum: notification.checksum.clone(),
        sequence_number: version_to_wire(notification.sequence),
        history_id: notification.history_id.to_string(),
    }
}

/// Validates a notification a hub pushed: a history id, a blueprint id, a version ≥ 1, a
/// defined type, a checksum, a summary of at most 4 KiB (then dropped) and a sequence number
/// not negative.
pub fn notification_from_wire(
    wire: &v1::BlueprintNotification,
) -> Result<BlueprintNotification, WireError> {
    if wire.blueprint_summary.len() > MAX_SUMMARY_BYTES {
        return Err(WireError::new(
            "blueprint_summary",
            format!(
                "must be at most {MAX_SUMMARY_BYTES} bytes, got {}",
                wire.blueprint_summary.len()
            ),
        ));
    }
    checksum("checksum", &wire.checksum)?;
    published_by("published_by", &wire.published_by)?;
    Ok(BlueprintNotification {
        history_id: history_id("history_id", &wire.history_id)?,
        blueprint_id: blueprint_id("blueprint_id", &wire.blueprint_id)?,
        version: entry_version("version", wire.version)?,
        kind: notification_type_from_wire(wire.r#type)?,
        published_at: timestamp_from_wire("published_at", wire.published_at)?,
        published_by: wire.published_by.clone(),
        checksum: wire.checksum.clone(),
        sequence: version("sequence_number", wire.sequence_number)?,
    })
}

/// A hub's view of a peer's sync: the hub's version and history, and whether the peer's last
/// reported version reaches it. The hub keeps no sync times: those fields are 0.
pub fn checkpoint_to_wire(peer: &HubPeer, status: &HubStatus) -> v1::SyncCheckpoint {
    let checkpoint_status = if peer.last_sync_version >= status.version {
        v1::CheckpointStatus::UpToDate
    } else {
        v1::CheckpointStatus::Behind
    };
    v1::SyncCheckpoint {
        peer_id: peer.peer_id.to_string(),
        current_version: version_to_wire(status.version),
        last_sync_time: 0,
        total_blueprints: count_to_wire(status.total_blueprints),
        central_node_id: status.hub_id.to_string(),
        next_sync_due: 0,
        status: i32::from(checkpoint_status),
        history_id: status
            .history_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

fn filter_len(field: &'static str, len: usize) -> Result<(), WireError> {
    NotificationFilter::check_len(len).map_err(|reason| WireError::new(field, reason))
}

#[cfg(test)]
mod tests {
    use herald_messages::*;

    use super::*;
    use std::collections::HashMap;

    use herald_messages::{MAX_DOCUMENT_BYTES, MAX_METADATA_BYTES};

    use crate::convert::fixtures::*;

    #[test]
    fn entries_round_trip_with_their_history() {
        for kind in [EntryKind::Published, EntryKind::Deprecated] {
            let domain = entry(3, kind);
            let wire = entry_to_wire(&domain, &history());
            assert_eq!(wire.register_id, "00000000000000000000000000000000");
            assert_eq!(entry_from_wire(wire), Ok((history(), domain)));
        }
    }

    #[test]
    fn entries_keep_their_kind_and_kindless_ones_are_read_from_their_activity() {
        for kind in [EntryKind::Published, EntryKind::Updated] {
            let wire = entry_to_wire(&entry(3, kind), &history());
            assert_eq!(entry_from_wire(wire).unwrap().1.kind, kind);
        }
        let mut older_hub = entry_to_wire(&entry(3, EntryKind::Updated), &history());
        older_hub.kind = v1::NotificationType::Unknown.into();
        let (_, back) = entry_from_wire(older_hub).unwrap();
        assert_eq!(back.kind, EntryKind::Published);
        assert!(back.is_active);
    }

    #[test]
    fn notifications_round_trip() {
        for kind in [
            EntryKind::Published,
            EntryKind::Updated,
            EntryKind::Deprecated,
        ] {
            let wire = notification_to_wire(&notification(kind));
            assert!(wire.blueprint_summary.is_empty());
            assert_eq!(notification_from_wire(&wire), Ok(notification(kind)));
        }
    }

    #[test]
    fn sync_requests_carry_scope_and_history() {
        let full = sync_request_to_wire(&node("peer-1"), &session(), &SyncScope::Full, None, NOW);
        let query = sync_request_from_wire(&full).unwrap();
        assert!(query.full_sync);
        assert_eq!(query.last_known_version, 0);
        assert_eq!(query.history_id, None);
        assert_eq!(query.max_blueprints, None);
        let after = sync_request_to_wire(
            &node("peer-1"),
            &session(),
            &SyncScope::After(41),
            Some(&history()),
            NOW,
        );
        let query = sync_request_from_wire(&after).unwrap();
        assert!(!query.full_sync);
        assert_eq!(query.last_known_version, 41);
        assert_eq!(query.history_id, Some(history()));
        let limited = v1::SyncRequest {
            max_blueprints: 5,
            ..after
        };
        assert_eq!(
            sync_request_from_wire(&limited).unwrap().max_blueprints,
            Some(5)
        );
    }

    #[test]
    fn sync_requests_need_a_history_id_format() {
        let mut wire =
            sync_request_to_wire(&node("p"), &session(), &SyncScope::After(3), None, NOW);
        for bad in ["nope", "ABABABABABABABABABABABABABABABAB", &"a".repeat(33)] {
            wire.history_id = bad.into();
            assert_eq!(
                refused(sync_request_from_wire(&wire)),
                "history_id",
                "{bad}"
            );
        }
    }

    #[test]
    fn entries_must_name_the_system_register() {
        let wire = v1::SystemRegisterEntry {
            register_id: "00000000000000000000000000000001".into(),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "register_id");
        let wire = v1::SystemRegisterEntry {
            register_id: String::new(),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "register_id");
    }

    #[test]
    fn entry_checksums_are_sha256_hex() {
        let good = wire_entry().checksum;
        for bad in [
            String::new(),
            good.replace("sha256:", "md5:"),
            good.to_uppercase(),
            good[..good.len() - 1].to_owned(),
            format!("{good}0"),
        ] {
            let wire = v1::SystemRegisterEntry {
                checksum: bad.clone(),
                ..wire_entry()
            };
            assert_eq!(refused(entry_from_wire(wire)), "checksum", "{bad}");
        }
        // Whether it matches the document is the replica's check (off its actor), not the
        // wire's: the entry converts, and says so.
        let tampered = v1::SystemRegisterEntry {
            blueprint_document: Bytes::from_static(b"{}"),
            ..wire_entry()
        };
        let (_, entry) = entry_from_wire(tampered).unwrap();
        assert!(!entry.checksum_holds());
    }

    #[test]
    fn entry_versions_start_at_1() {
        for bad in [0, -1] {
            let wire = v1::SystemRegisterEntry {
                version: bad,
                ..wire_entry()
            };
            assert_eq!(refused(entry_from_wire(wire)), "version");
        }
    }

    #[test]
    fn entries_need_ids_and_a_history() {
        let wire = v1::SystemRegisterEntry {
            blueprint_id: "no spaces".into(),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "blueprint_id");
        let wire = v1::SystemRegisterEntry {
            blueprint_id: "b".repeat(256),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "blueprint_id");
        let wire = v1::SystemRegisterEntry {
            history_id: String::new(),
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "history_id");
        let wire = v1::SystemRegisterEntry {
            published_at: -1,
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "published_at");
    }

    #[test]
    fn entry_documents_are_at_most_16_mib() {
        let at_limit = Bytes::from(vec![b' '; MAX_DOCUMENT_BYTES]);
        let wire = v1::SystemRegisterEntry {
            checksum: SystemRegisterEntry::checksum_of(&at_limit),
            blueprint_document: at_limit,
            ..wire_entry()
        };
        assert!(entry_from_wire(wire).is_ok());
        let over = Bytes::from(vec![b' '; MAX_DOCUMENT_BYTES + 1]);
        let wire = v1::SystemRegisterEntry {
            checksum: SystemRegisterEntry::checksum_of(&over),
            blueprint_document: over,
            ..wire_entry()
        };
        assert_eq!(refused(entry_from_wire(wire)), "blueprint_document");
    }

    #[test]
    fn entry_metadata_totals_under_4_kib() {
        let mut wire = wire_entry();
        wire.metadata = HashMap::from([("k".to_owned(), "v".repeat(MAX_METADATA_BYTES - 2))]);
        assert!(entry_from_wire(wire.clone()).is_ok());
        wire.metadata = HashMap::from([("k".to_owned(), "v".repeat(MAX_METADATA_BYTES - 1))]);
        assert_eq!(refused(entry_from_wire(wire)), "metadata");
    }

    #[test]
    fn notification_summaries_are_at_most_4_kib() {
        let mut wire = notification_to_wire(&notification(EntryKind::Updated));
        wire.blueprint_summary = Bytes::from(vec![b'x'; MAX_SUMMARY_BYTES]);
        assert!(notification_from_wire(&wire).is_ok());
        wire.blueprint_summary = Bytes::from(vec![b'x'; MAX_SUMMARY_BYTES + 1]);
        assert_eq!(refused(notification_from_wire(&wire)), "blueprint_summary");
    }

    #[test]
    fn notifications_need_a_type_a_version_and_a_checksum() {
        let good = notification_to_wire(&notification(EntryKind::Published));
        let cases = [
            (
                v1::BlueprintNotification {
                    r#type: i32::from(v1::NotificationType::Unknown),
                    ..good.clone()
                },
                "type",
            ),
            (
                v1::BlueprintNotification {
                    version: 0,
                    ..good.clone()
                },
                "version",
            ),
            (
                v1::BlueprintNotification {
                    checksum: "sha256:xyz".into(),
                    ..good.clone()
                },
                "checksum",
            ),
            (
                v1::BlueprintNotification {
                    history_id: "h".into(),
                    ..good.clone()
                },
                "history_id",
            ),
            (
                v1::BlueprintNotification {
                    sequence_number: -1,
                    ..good
                },
                "sequence_number",
            ),
        ];
        for (wire, field) in cases {
            assert_eq!(refused(notification_from_wire(&wire)), field);
        }
    }

    #[test]
    fn subscription_filters_are_validated_and_applied() {
        let mut wire = subscription_request_to_wire(&node("peer-1"), &session(), NOW);
        wire.filters = Some(v1::SubscriptionFilters {
            blueprint_ids: vec![BlueprintId::seed().to_string()],
            publisher_ids: vec![],
            notification_types: vec![i32::from(v1::NotificationType::BlueprintDeprecated)],
            metadata_filters: HashMap::new(),
        });
        let filter = subscription_request_from_wire(&wire).unwrap().filter;
        assert!(filter.matches(&notification(EntryKind::Deprecated)));
        assert!(!filter.matches(&notification(EntryKind::Published)));
        let other = BlueprintNotification {
            blueprint_id: BlueprintId::parse("other").unwrap(),
            ..notification(EntryKind::Deprecated)
        };
        assert!(!filter.matches(&other));

        let mut bad = wire.clone();
        bad.filters.as_mut().unwrap().blueprint_ids = vec!["not valid".into()];
        assert_eq!(
            refused(subscription_request_from_wire(&bad)),
            "filters.blueprint_ids"
        );
        let mut bad = wire.clone();
        bad.filters.as_mut().unwrap().notification_types = vec![0];
        assert_eq!(
            refused(subscription_request_from_wire(&bad)),
            "filters.notification_types"
        );
        let mut bad = wire.clone();
        bad.filters.as_mut().unwrap().metadata_filters =
            HashMap::from([("k".to_owned(), "v".to_owned())]);
        assert_eq!(
            refused(subscription_request_from_wire(&bad)),
            "filters.metadata_filters"
        );
        let mut bad = wire;
        bad.filters.as_mut().unwrap().publisher_ids =
            vec!["p".into(); NotificationFilter::MAX_ITEMS + 1];
        assert_eq!(
            refused(subscription_request_from_wire(&bad)),
            "filters.publisher_ids"
        );
    }
}
