//! `system_register.proto` (service `SystemRegisterSync`): sync requests, entries,
//! subscriptions, notifications and checkpoints, between wire and domain.

use bytes::Bytes;

use herald_messages::{
    BlueprintNotification, CheckpointState, EntryKind, EntrySignature, HistoryId, KeyId,
    MAX_SUMMARY_BYTES, NodeId, NotificationFilter, PeerCheckpoint, RegisterDigest, RegisterId,
    SessionId, SyncQuery, SyncScope, SystemRegisterEntry, Timestamp,
};

use super::{
    WireError, blueprint_id, checksum, count_to_wire, document_size, entry_version, history_id,
    metadata, node_id, optional_digest, optional_digest_to_wire, optional_history_id,
    optional_timestamp_to_wire, published_by, session_id, timestamp_from_wire, timestamp_to_wire,
    unknown_enum, version, version_to_wire,
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

/// A validated sync request, before the RPC decides its scope (`FullSync`: the latest entry
/// of every blueprint; `IncrementalSync`: everything after `last_known_version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequestFields {
    pub peer_id: NodeId,
    pub session_id: SessionId,
    pub last_known_version: u64,
    pub full_sync: bool,
    /// The history of the peer's checkpoint, if it has one.
    pub history_id: Option<HistoryId>,
    /// The register digest at the peer's checkpoint, if it holds one.
    pub digest: Option<RegisterDigest>,
    /// `None`: unlimited.
    pub max_blueprints: Option<usize>,
}

impl SyncRequestFields {
    /// The authority's query for a full (`FullSync`) or incremental sync.
    pub fn into_query(self, scope: SyncScope) -> SyncQuery {
        SyncQuery {
            peer_id: self.peer_id,
            session_id: self.session_id,
            scope,
            history_id: self.history_id,
            digest: self.digest,
        }
    }
}

/// A sync request, with the history and digest of the peer's checkpoint if any.
pub fn sync_request_to_wire(query: &SyncQuery, now: Timestamp) -> v1::SyncRequest {
    let (last_known_version, full_sync) = match query.scope {
        SyncScope::Full => (0, true),
        SyncScope::After(version) => (version, false),
    };
    v1::SyncRequest {
        peer_id: query.peer_id.to_string(),
        last_known_version: version_to_wire(last_known_version),
        full_sync,
        session_id: query.session_id.to_string(),
        max_blueprints: 0,
        request_time: timestamp_to_wire(now),
        history_id: query
            .history_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        register_digest: optional_digest_to_wire(query.digest),
    }
}

/// Validates a sync request: ids, `last_known_version` and `max_blueprints` not negative,
/// `history_id` empty or a history id, `register_digest` empty or a digest.
pub fn sync_request_from_wire(wire: &v1::SyncRequest) -> Result<SyncRequestFields, WireError> {
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
    Ok(SyncRequestFields {
        peer_id: node_id("peer_id", &wire.peer_id)?,
        session_id: session_id("session_id", &wire.session_id)?,
        last_known_version: version("last_known_version", wire.last_known_version)?,
        full_sync: wire.full_sync,
        history_id: optional_history_id("history_id", &wire.history_id)?,
        digest: optional_digest("register_digest", &wire.register_digest)?,
        max_blueprints,
    })
}

/// An entry of the system register, with the register's history and its digest at the
/// entry's version (if known).
pub fn entry_to_wire(
    entry: &SystemRegisterEntry,
    history: &HistoryId,
    digest: Option<RegisterDigest>,
) -> v1::SystemRegisterEntry {
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
        register_digest: optional_digest_to_wire(digest),
        signature: entry.signature.as_ref().map(signature_to_wire),
    }
}

fn signature_to_wire(signature: &EntrySignature) -> v1::EntrySignature {
    v1::EntrySignature {
        key_id: signature.key_id.to_string(),
        value: signature.value.to_vec(),
    }
}

/// A signature's form: a key id of 16 lowercase hex digits and 64 bytes. Whether it verifies
/// is for the replica (against the keys it trusts).
fn signature_from_wire(wire: v1::EntrySignature) -> Result<EntrySignature, WireError> {
    let key_id = KeyId::parse(&wire.key_id)
        .map_err(|err| WireError::new("signature.key_id", err.to_string()))?;
    let value: [u8; 64] = wire.value.as_slice().try_into().map_err(|_| {
        WireError::new(
            "signature.value",
            format!("must be 64 bytes of Ed25519, got {}", wire.value.len()),
        )
    })?;
    Ok(EntrySignature { key_id, value })
}

/// Validates an entry a hub sent: the all-zero register id, a blueprint id, a version ≥ 1, a
/// `sha256:<64 lowercase hex>` checksum that matches the document, a document of at most
/// 16 MiB, metadata under 4 KiB and a history id. Returns the history with the entry.
///
/// An entry without a kind (from an older hub) reads as a deprecation when inactive and as a
/// publication when active; one without a digest (from an older hub) has `digest: None`.
pub fn entry_from_wire(wire: v1::SystemRegisterEntry) -> Result<ReceivedEntry, WireError> {
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
    let digest = optional_digest("register_digest", &wire.register_digest)?;
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
        signature: wire.signature.map(signature_from_wire).transpose()?,
    };
    Ok(ReceivedEntry {
        history_id: history,
        entry,
        digest,
    })
}

/// An entry as a hub sent it: the history it belongs to, and the register's digest at its
/// version when the hub sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEntry {
    pub history_id: HistoryId,
    pub entry: SystemRegisterEntry,
    pub digest: Option<RegisterDigest>,
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

/// A push notification, with a JSON summary of the entry (well under 4 KiB: its strings are
/// bounded ids, a checksum and a publisher of at most 255 bytes); peers fetch the entry itself
/// with a sync.
pub fn notification_to_wire(notification: &BlueprintNotification) -> v1::BlueprintNotification {
    let summary = serde_json::json!({
        "blueprintId": notification.blueprint_id,
        "version": notification.version,
        "kind": notification.kind,
        "isActive": notification.kind != EntryKind::Deprecated,
        "checksum": notification.checksum,
        "documentBytes": notification.document_bytes,
        "publishedBy": notification.published_by,
    });
    v1::BlueprintNotification {
        blueprint_id: notification.blueprint_id.to_string(),
        version: version_to_wire(notification.version),
        published_at: timestamp_to_wire(notification.published_at),
        published_by: notification.published_by.clone(),
        blueprint_summary: Bytes::from(summary.to_string()),
        r#type: i32::from(notification_type_to_wire(notification.kind)),
        checksum: notification.checksum.clone(),
        sequence_number: version_to_wire(notification.sequence),
        history_id: notification.history_id.to_string(),
    }
}

/// Validates a notification a hub pushed: a history id, a blueprint id, a version ≥ 1, a
/// defined type, a checksum, a summary of at most 4 KiB and a sequence number not negative.
/// The summary is not kept: a notification only triggers a sync, which brings the entry.
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
        document_bytes: 0,
        sequence: version("sequence_number", wire.sequence_number)?,
    })
}

/// The hub's view of a peer against its register.
pub fn checkpoint_to_wire(checkpoint: &PeerCheckpoint) -> v1::SyncCheckpoint {
    let status = match checkpoint.status {
        CheckpointState::UpToDate => v1::CheckpointStatus::UpToDate,
        CheckpointState::Behind => v1::CheckpointStatus::Behind,
        CheckpointState::Diverged => v1::CheckpointStatus::Diverged,
    };
    v1::SyncCheckpoint {
        peer_id: checkpoint.peer_id.to_string(),
        current_version: version_to_wire(checkpoint.version),
        last_sync_time: optional_timestamp_to_wire(checkpoint.last_sync_at),
        total_blueprints: count_to_wire(checkpoint.total_blueprints),
        central_node_id: checkpoint.hub_id.to_string(),
        next_sync_due: timestamp_to_wire(checkpoint.next_sync_due),
        status: i32::from(status),
        history_id: checkpoint.history_id.to_string(),
        peer_version: version_to_wire(checkpoint.peer_version),
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

    fn sync_query(
        scope: SyncScope,
        history_id: Option<HistoryId>,
        digest: Option<RegisterDigest>,
    ) -> SyncQuery {
        SyncQuery {
            peer_id: node("peer-1"),
            session_id: session(),
            scope,
            history_id,
            digest,
        }
    }

    #[test]
    fn entries_round_trip_with_their_history_and_digest() {
        let digest = RegisterDigest::EMPTY.then(&entry(1, EntryKind::Published));
        for kind in [EntryKind::Published, EntryKind::Deprecated] {
            let domain = entry(3, kind);
            let wire = entry_to_wire(&domain, &history(), Some(digest));
            assert_eq!(wire.register_id, "00000000000000000000000000000000");
            assert_eq!(wire.register_digest, digest.to_string());
            assert_eq!(
                entry_from_wire(wire),
                Ok(ReceivedEntry {
                    history_id: history(),
                    entry: domain,
                    digest: Some(digest),
                })
            );
        }
        let older_hub = entry_to_wire(&entry(3, EntryKind::Published), &history(), None);
        assert_eq!(entry_from_wire(older_hub).unwrap().digest, None);
        let mut bad = entry_to_wire(&entry(3, EntryKind::Published), &history(), None);
        bad.register_digest = "sha256:zz".into();
        assert_eq!(refused(entry_from_wire(bad)), "register_digest");
    }

    /// The signature travels in field 14 and comes back as it was signed; an unsigned entry
    /// has none; a malformed one names its field.
    #[test]
    fn entry_signatures_round_trip_and_malformed_ones_are_refused() {
        let signer = EntrySigner::from_bytes([5; 32]);
        let mut signed = entry(3, EntryKind::Published);
        signed.signature = Some(signer.sign(&history(), &signed));
        let wire = entry_to_wire(&signed, &history(), None);
        assert_eq!(
            wire.signature.as_ref().map(|s| s.key_id.clone()),
            Some(signer.key_id().to_string())
        );
        let back = entry_from_wire(wire.clone()).unwrap().entry;
        assert_eq!(back, signed);
        let trusted = TrustedKeys::new([signer.trusted_key()]);
        assert_eq!(trusted.verify(&history(), &back), Ok(()));
        let unsigned = entry_to_wire(&entry(3, EntryKind::Published), &history(), None);
        assert_eq!(unsigned.signature, None);
        assert_eq!(entry_from_wire(unsigned).unwrap().entry.signature, None);
        let mut short = wire.clone();
        short.signature.as_mut().unwrap().value.truncate(63);
        assert_eq!(refused(entry_from_wire(short)), "signature.value");
        let mut bad_id = wire;
        bad_id.signature.as_mut().unwrap().key_id = "zz".into();
        assert_eq!(refused(entry_from_wire(bad_id)), "signature.key_id");
    }

    #[test]
    fn entries_keep_their_kind_and_kindless_ones_are_read_from_their_activity() {
        for kind in [EntryKind::Published, EntryKind::Updated] {
            let wire = entry_to_wire(&entry(3, kind), &history(), None);
            assert_eq!(entry_from_wire(wire).unwrap().entry.kind, kind);
        }
        let mut older_hub = entry_to_wire(&entry(3, EntryKind::Updated), &history(), None);
        older_hub.kind = v1::NotificationType::Unknown.into();
        let back = entry_from_wire(older_hub).unwrap().entry;
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
            let sent = notification(kind);
            let wire = notification_to_wire(&sent);
            assert_eq!(
                notification_from_wire(&wire),
                Ok(BlueprintNotification {
                    document_bytes: 0,
                    ..sent
                })
            );
        }
    }

    /// The summary describes the entry the notification announces, and changes with it.
    #[test]
    fn notification_summaries_describe_their_entry() {
        let summary = |notification: &BlueprintNotification| -> serde_json::Value {
            serde_json::from_slice(&notification_to_wire(notification).blueprint_summary).unwrap()
        };
        let published = notification(EntryKind::Published);
        let json = summary(&published);
        assert_eq!(json["blueprintId"], published.blueprint_id.as_str());
        assert_eq!(json["version"], published.version);
        assert_eq!(json["kind"], "published");
        assert_eq!(json["isActive"], true);
        assert_eq!(json["checksum"], published.checksum.as_str());
        assert_eq!(json["documentBytes"], published.document_bytes);
        let deprecated = summary(&notification(EntryKind::Deprecated));
        assert_eq!(
            (&deprecated["kind"], &deprecated["isActive"]),
            (&"deprecated".into(), &false.into())
        );
        let bigger = BlueprintNotification {
            document_bytes: 999,
            version: 8,
            ..published
        };
        let json = summary(&bigger);
        assert_eq!(
            (json["documentBytes"].clone(), json["version"].clone()),
            (999.into(), 8.into())
        );
        assert!(notification_to_wire(&bigger).blueprint_summary.len() <= MAX_SUMMARY_BYTES);
    }

    #[test]
    fn sync_requests_carry_scope_and_history() {
        let full = sync_request_to_wire(&sync_query(SyncScope::Full, None, None), NOW);
        let query = sync_request_from_wire(&full).unwrap();
        assert!(query.full_sync);
        assert_eq!(query.last_known_version, 0);
        assert_eq!(query.history_id, None);
        assert_eq!(query.digest, None);
        assert_eq!(query.max_blueprints, None);
        let digest = RegisterDigest::EMPTY.then(&entry(1, EntryKind::Published));
        let after = sync_request_to_wire(
            &sync_query(SyncScope::After(41), Some(history()), Some(digest)),
            NOW,
        );
        let query = sync_request_from_wire(&after).unwrap();
        assert!(!query.full_sync);
        assert_eq!(query.last_known_version, 41);
        assert_eq!(query.history_id, Some(history()));
        assert_eq!(query.digest, Some(digest));
        assert_eq!(
            query.clone().into_query(SyncScope::After(41)),
            sync_query(SyncScope::After(41), Some(history()), Some(digest))
        );
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
        let mut wire = sync_request_to_wire(&sync_query(SyncScope::After(3), None, None), NOW);
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
        let entry = entry_from_wire(tampered).unwrap().entry;
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
