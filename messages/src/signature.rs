//! Signatures of system register entries (issue 10 item 4, FR-022): the hub that appends an
//! entry signs it with its Ed25519 key, and a peer verifies it against the hub keys it trusts.
//! A checksum proves nothing against a forger who can write to the hubs' shared store (they
//! recompute it); a signature does, as long as the forger has no trusted hub's private key.
//!
//! **What is signed** is `signed_payload(history, entry)`, a canonical byte string, versioned
//! by its leading domain tag. Integers are big-endian; a *field* is its length as a `u32`
//! followed by its bytes, so no two entries give the same payload:
//!
//! ```text
//! field("herald-entry-v1")
//! field(history id, 32 hex characters)     the register's history: no replay into another
//! u64   version                            the entry's place in the log: no replay at another
//! field(blueprint id)
//! u8    kind (1 published, 2 updated, 3 deprecated) ‖ u8 is_active (0 or 1)
//! [32]  SHA-256 of the document            hashed here, not copied from `checksum`
//! i64   published_at (Unix milliseconds)
//! field(published_by) ‖ field(transaction id)
//! u32   metadata pairs ‖ field(key) ‖ field(value) ...   in key order
//! ```
//!
//! Every field of the entry is covered except `checksum` (a function of the document, which is
//! covered) and the signature itself. The version can be signed because appends are exact:
//! the hub drafts the entry at the version after the one it holds and the store writes it
//! there or refuses (`BlueprintStoreError::Raced`: the hub catches up and drafts again), so the
//! hub knows the version before the store has it. A signed entry therefore cannot be moved to
//! another version, another history, or another blueprint without failing verification.
//!
//! **Key ids** are derived from the public key (the first 8 bytes of its SHA-256, in hex), so a
//! configuration lists only key files. A signature names the key id it was made with; a peer
//! looks the key up among its trusted keys. Rotation: give peers the new public key, then the
//! hub its new private key; entries signed by the old key verify as long as peers keep it.
//!
//! Not here: reading key files (the runtime's configuration does, with `EntrySigner::from_pem`
//! and `TrustedKey::from_pem` on the text), and what a peer does with an entry that fails (the
//! replica refuses the sync and reports it).

use std::collections::BTreeMap;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::ids::truncate_for_error;
use crate::{EntryKind, HistoryId, InvalidId, SystemRegisterEntry};

/// The domain tag and format version at the start of every signed payload.
pub const PAYLOAD_DOMAIN: &[u8] = b"herald-entry-v1";
/// Bytes of a key id (shown as twice as many hex digits).
const KEY_ID_BYTES: usize = 8;

/// A hub key's id: the first 8 bytes of the SHA-256 of its 32-byte public key, shown as 16
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_BYTES]);

impl KeyId {
    /// The id of a public key.
    pub fn of(key: &VerifyingKey) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let mut id = [0; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        Self(id)
    }

    /// 16 lowercase hex digits, as `Display` writes them.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let invalid = || InvalidId {
            what: "key id",
            rule: "16 lowercase hex digits",
            value: truncate_for_error(value),
        };
        if value.len() != 2 * KEY_ID_BYTES || value.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid());
        }
        let mut id = [0; KEY_ID_BYTES];
        hex::decode_to_slice(value, &mut id).map_err(|_| invalid())?;
        Ok(Self(id))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An entry's signature: which key made it, and the 64 bytes of Ed25519 over
/// `signed_payload`. Stored as `{"keyId": "<16 hex>", "value": "<128 hex>"}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntrySignature {
    pub key_id: KeyId,
    #[serde(with = "hex_signature")]
    pub value: [u8; 64],
}

impl std::fmt::Debug for EntrySignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EntrySignature({}, {}…)",
            self.key_id,
            hex::encode(&self.value[..4])
        )
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`): {0}")]
    Private(String),
    #[error("not an Ed25519 public key in SubjectPublicKeyInfo PEM (`openssl pkey -pubout`): {0}")]
    Public(String),
}

/// A hub's signing key. `Debug` shows its key id only.
#[derive(Clone)]
pub struct EntrySigner {
    key: SigningKey,
    key_id: KeyId,
}

impl EntrySigner {
    /// The key of 32 secret bytes (tests draw them at random).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let key_id = KeyId::of(&key.verifying_key());
        Self { key, key_id }
    }

    /// A PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), as
    /// `openssl genpkey -algorithm ed25519` writes it.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key =
            SigningKey::from_pkcs8_pem(pem).map_err(|err| KeyError::Private(err.to_string()))?;
        let key_id = KeyId::of(&key.verifying_key());
        Ok(Self { key, key_id })
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The public half, for peers to trust.
    pub fn trusted_key(&self) -> TrustedKey {
        TrustedKey::new(self.key.verifying_key())
    }

    /// The private key as PKCS#8 PEM (for tests that write key files).
    pub fn to_pem(&self) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        self.key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(|pem| pem.to_string())
            .expect("an Ed25519 key encodes as PKCS#8")
    }

    /// The signature of `entry` as an entry of `history`.
    pub fn sign(&self, history: &HistoryId, entry: &SystemRegisterEntry) -> EntrySignature {
        let signature = self.key.sign(&signed_payload(history, entry));
        EntrySignature {
            key_id: self.key_id,
            value: signature.to_bytes(),
        }
    }
}

impl std::fmt::Debug for EntrySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EntrySigner({})", self.key_id)
    }
}

impl PartialEq for EntrySigner {
    fn eq(&self, other: &Self) -> bool {
        self.key_id == other.key_id && self.key.verifying_key() == other.key.verifying_key()
    }
}

/// A hub public key a peer trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key: VerifyingKey,
    key_id: KeyId,
}

impl TrustedKey {
    pub fn new(key: VerifyingKey) -> Self {
        Self {
            key_id: KeyId::of(&key),
            key,
        }
    }

    /// A SubjectPublicKeyInfo PEM public key (`-----BEGIN PUBLIC KEY-----`), as
    /// `openssl pkey -pubout` writes it.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|err| KeyError::Public(err.to_string()))?;
        Ok(Self::new(key))
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The key as SubjectPublicKeyInfo PEM (for tests that write key files).
    pub fn to_pem(&self) -> String {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        self.key
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("an Ed25519 public key encodes as SubjectPublicKeyInfo")
    }
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedKey({})", self.key_id)
    }
}

/// The hub keys a peer trusts. Empty: the peer verifies nothing (every entry passes, signed or
/// not), as before signatures existed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, VerifyingKey>,
}

impl TrustedKeys {
    pub fn new(keys: impl IntoIterator<Item = TrustedKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|key| (key.key_id, key.key)).collect(),
        }
    }

    /// Whether verification is off (no key configured).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// Checks `entry`'s signature as an entry of `history`: made by a trusted key over this
    /// very entry. Always `Ok` when no key is trusted; with keys, an unsigned entry fails.
    pub fn verify(
        &self,
        history: &HistoryId,
        entry: &SystemRegisterEntry,
    ) -> Result<(), SignatureError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let Some(signature) = &entry.signature else {
            return Err(SignatureError::Unsigned);
        };
        let Some(key) = self.keys.get(&signature.key_id) else {
            return Err(SignatureError::UnknownKey {
                key_id: signature.key_id,
            });
        };
        let value = ed25519_dalek::Signature::from_bytes(&signature.value);
        key.verify_strict(&signed_payload(history, entry), &value)
            .map_err(|_| SignatureError::Invalid {
                key_id: signature.key_id,
            })
    }
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

/// Why an entry's signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("unsigned")]
    Unsigned,
    #[error("signed by key {key_id}, which this peer does not trust")]
    UnknownKey { key_id: KeyId },
    #[error("its signature by key {key_id} does not match the entry")]
    Invalid { key_id: KeyId },
}

/// The bytes a hub signs for `entry` in `history` (see the module doc for the layout).
pub fn signed_payload(history: &HistoryId, entry: &SystemRegisterEntry) -> Vec<u8> {
    use sha2::Digest;
    let mut payload = Vec::with_capacity(
        256 + entry.blueprint_id.as_str().len()
            + entry.published_by.len()
            + entry.transaction_id.len(),
    );
    field(&mut payload, PAYLOAD_DOMAIN);
    field(&mut payload, history.as_str().as_bytes());
    payload.extend_from_slice(&entry.version.to_be_bytes());
    field(&mut payload, entry.blueprint_id.as_str().as_bytes());
    let kind: u8 = match entry.kind {
        EntryKind::Published => 1,
        EntryKind::Updated => 2,
        EntryKind::Deprecated => 3,
    };
    payload.extend_from_slice(&[kind, u8::from(entry.is_active)]);
    payload.extend_from_slice(&sha2::Sha256::digest(&entry.document));
    payload.extend_from_slice(&entry.published_at.as_unix_millis().to_be_bytes());
    field(&mut payload, entry.published_by.as_bytes());
    field(&mut payload, entry.transaction_id.as_bytes());
    payload.extend_from_slice(&length(entry.metadata.len()));
    for (key, value) in &entry.metadata {
        field(&mut payload, key.as_bytes());
        field(&mut payload, value.as_bytes());
    }
    payload
}

fn field(payload: &mut Vec<u8>, bytes: &[u8]) {
    payload.extend_from_slice(&length(bytes.len()));
    payload.extend_from_slice(bytes);
}

/// A length as 4 big-endian bytes. Every field signed is far below 4 GiB (documents are at
/// most 16 MiB and are hashed, not copied); a longer one saturates, which no valid entry has.
fn length(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// A signature as 128 lowercase hex digits.
mod hex_signature {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8; 64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 64], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut value = [0; 64];
        hex::decode_to_slice(&text, &mut value).map_err(|_| {
            serde::de::Error::custom("a signature must be 128 hex digits (64 bytes)")
        })?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{BlueprintId, EntryDraft, Timestamp};

    fn signer(seed: u8) -> EntrySigner {
        EntrySigner::from_bytes([seed; 32])
    }

    fn history() -> HistoryId {
        HistoryId::from_bytes([7; 16])
    }

    fn entry(version: u64) -> SystemRegisterEntry {
        EntryDraft {
            blueprint_id: BlueprintId::parse("invoice").unwrap(),
            kind: EntryKind::Published,
            document: Bytes::from_static(br#"{"steps":["submit","approve"]}"#),
            published_at: Timestamp::from_unix_millis(1_700_000_000_000),
            published_by: "admin".into(),
            transaction_id: "t-1".into(),
            metadata: [("team".to_owned(), "billing".to_owned())].into(),
        }
        .at_version(version)
    }

    fn signed(signer: &EntrySigner, version: u64) -> SystemRegisterEntry {
        let mut entry = entry(version);
        entry.signature = Some(signer.sign(&history(), &entry));
        entry
    }

    fn trusting(signers: &[&EntrySigner]) -> TrustedKeys {
        TrustedKeys::new(signers.iter().map(|signer| signer.trusted_key()))
    }

    #[test]
    fn a_signed_entry_verifies_against_its_hub_key() {
        let hub = signer(1);
        let entry = signed(&hub, 3);
        assert_eq!(trusting(&[&hub]).verify(&history(), &entry), Ok(()));
        assert_eq!(
            trusting(&[&signer(2), &hub]).verify(&history(), &entry),
            Ok(()),
            "any trusted key will do"
        );
    }

    #[test]
    fn every_tampered_field_fails() {
        let hub = signer(1);
        let keys = trusting(&[&hub]);
        let good = signed(&hub, 3);
        let invalid = Err(SignatureError::Invalid {
            key_id: hub.key_id(),
        });
        let tamper = |change: &dyn Fn(&mut SystemRegisterEntry)| {
            let mut entry = good.clone();
            change(&mut entry);
            entry
        };
        let cases: Vec<(&str, SystemRegisterEntry)> = vec![
            (
                "document, checksum recomputed",
                tamper(&|e| {
                    e.document = Bytes::from_static(br#"{"steps":["submit"]}"#);
                    e.checksum = SystemRegisterEntry::checksum_of(&e.document);
                }),
            ),
            ("version", tamper(&|e| e.version = 4)),
            (
                "kind",
                tamper(&|e| {
                    e.kind = EntryKind::Deprecated;
                    e.is_active = false;
                }),
            ),
            ("activity", tamper(&|e| e.is_active = false)),
            (
                "blueprint",
                tamper(&|e| e.blueprint_id = BlueprintId::parse("payroll").unwrap()),
            ),
            ("publisher", tamper(&|e| e.published_by = "mallory".into())),
            (
                "publication time",
                tamper(&|e| e.published_at = Timestamp::EPOCH),
            ),
            ("transaction", tamper(&|e| e.transaction_id = "t-2".into())),
            ("metadata", tamper(&|e| e.metadata.clear())),
        ];
        for (what, entry) in cases {
            assert_eq!(keys.verify(&history(), &entry), invalid, "{what}");
        }
        assert_eq!(
            keys.verify(&HistoryId::from_bytes([8; 16]), &good),
            invalid,
            "another history"
        );
    }

    #[test]
    fn unsigned_and_unknown_keys_fail_and_no_keys_verify_nothing() {
        let hub = signer(1);
        let unsigned = entry(3);
        assert_eq!(
            trusting(&[&hub]).verify(&history(), &unsigned),
            Err(SignatureError::Unsigned)
        );
        let by_another = signed(&signer(2), 3);
        assert_eq!(
            trusting(&[&hub]).verify(&history(), &by_another),
            Err(SignatureError::UnknownKey {
                key_id: signer(2).key_id()
            })
        );
        // A forger naming a trusted key id with a signature of their own key.
        let mut forged = by_another.clone();
        forged.signature.as_mut().unwrap().key_id = hub.key_id();
        assert_eq!(
            trusting(&[&hub]).verify(&history(), &forged),
            Err(SignatureError::Invalid {
                key_id: hub.key_id()
            })
        );
        let none = TrustedKeys::default();
        assert!(none.is_empty());
        assert_eq!(none.verify(&history(), &unsigned), Ok(()));
        assert_eq!(none.verify(&history(), &forged), Ok(()));
    }

    /// The payload is length-prefixed: moving bytes between adjacent text fields changes it.
    #[test]
    fn the_payload_is_versioned_and_unambiguous() {
        let mut a = entry(1);
        a.published_by = "ab".into();
        a.transaction_id = "c".into();
        let mut b = entry(1);
        b.published_by = "a".into();
        b.transaction_id = "bc".into();
        assert_ne!(
            signed_payload(&history(), &a),
            signed_payload(&history(), &b)
        );
        let payload = signed_payload(&history(), &a);
        assert_eq!(&payload[..4], &15u32.to_be_bytes());
        assert_eq!(&payload[4..19], b"herald-entry-v1");
        // Pinned (and computed independently from the layout in the module doc): a change of
        // layout must come with a new domain tag.
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(signed_payload(&history(), &entry(1)))),
            "3e84b84a99feb92ffb502240ee98a6406fb2e7b4211c1c0a6ea4f654ad922052"
        );
    }

    #[test]
    fn keys_read_from_pem_and_ids_derive_from_the_public_key() {
        let hub = signer(1);
        let again = EntrySigner::from_pem(&hub.to_pem()).unwrap();
        assert_eq!(again, hub);
        let public = TrustedKey::from_pem(&hub.trusted_key().to_pem()).unwrap();
        assert_eq!(public.key_id(), hub.key_id());
        assert_eq!(hub.key_id().to_string().len(), 16);
        assert_eq!(KeyId::parse(&hub.key_id().to_string()), Ok(hub.key_id()));
        assert!(KeyId::parse("ABCDEF0123456789").is_err());
        assert!(matches!(
            EntrySigner::from_pem(&hub.trusted_key().to_pem()),
            Err(KeyError::Private(_))
        ));
        assert!(matches!(
            TrustedKey::from_pem("not pem"),
            Err(KeyError::Public(_))
        ));
        assert!(!format!("{hub:?}").contains("PRIVATE"));
    }

    /// A key made by `openssl genpkey -algorithm ed25519` (and its `openssl pkey -pubout`).
    #[test]
    fn openssl_keys_are_read() {
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEumQX6ll99E8SONxYng5/jlpMsqGVVgq1MhHgcVrmzk\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAOhf48puynQkhYEkUq8Rs+qDLOC63VihZAwYeHsKV08=\n-----END PUBLIC KEY-----\n";
        let signer = EntrySigner::from_pem(private).unwrap();
        let trusted = TrustedKey::from_pem(public).unwrap();
        assert_eq!(signer.key_id(), trusted.key_id());
    }

    #[test]
    fn signatures_round_trip_through_json() {
        let entry = signed(&signer(1), 2);
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains(r#""signature":{"keyId":""#), "{json}");
        assert_eq!(
            serde_json::from_str::<SystemRegisterEntry>(&json).unwrap(),
            entry
        );
        let unsigned = serde_json::to_string(&self::entry(2)).unwrap();
        assert!(!unsigned.contains("signature"), "{unsigned}");
    }
}
