//! Identifiers: register ids (32 lowercase hex characters), node ids (≤ 64 of `[A-Za-z0-9_-]`)
//! and ground-truth epochs (32 lowercase hex characters).
//!
//! All are validated when built, so a value of these types is always well-formed; serde goes
//! through the same validation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {rule}, got {value:?}")]
pub struct InvalidId {
    pub what: &'static str,
    pub rule: &'static str,
    pub value: String,
}

/// For an id type `$id(inner)` with `parse(&str) -> Result<Self, InvalidId>` and `as_str()`, and
/// an `inner` that converts into `String`: `TryFrom<String>` and serde's `Deserialize` through
/// `parse`, `From<$id> for String`, `Serialize` as the plain string, `Display` as the string and
/// `Debug` as `$id(string)`. `RegisterId` writes its own (inline bytes, borrowed deserializing).
macro_rules! string_id_impls {
    ($id:ident) => {
        impl TryFrom<String> for $id {
            type Error = $crate::ids::InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$id> for String {
            fn from(id: $id) -> Self {
                id.as_str().to_owned()
            }
        }

        impl ::std::fmt::Display for $id {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::fmt::Debug for $id {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, concat!(stringify!($id), "({})"), self.as_str())
            }
        }

        impl ::serde::Serialize for $id {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $id {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let value = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                Self::try_from(value).map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_id_impls;

/// A register (ledger) id: exactly 32 lowercase hexadecimal characters.
///
/// Held inline (no heap): cloning, hashing and comparing it are cheap, which matters in the
/// pool's hot paths (a full sync touches every id several times).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegisterId([u8; RegisterId::LEN]);

impl RegisterId {
    pub const LEN: usize = 32;
    const RULE: &'static str = "32 lowercase hexadecimal characters";

    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let well_formed = value.len() == Self::LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(InvalidId {
                what: "register id",
                rule: Self::RULE,
                value: truncate_for_error(value),
            });
        }
        let mut id = [0; Self::LEN];
        id.copy_from_slice(value.as_bytes());
        Ok(Self(id))
    }

    /// Builds the id from 16 bytes (for example random ones) as lowercase hex.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0; Self::LEN];
        for (index, byte) in bytes.into_iter().enumerate() {
            id[2 * index] = HEX[usize::from(byte >> 4)];
            id[2 * index + 1] = HEX[usize::from(byte & 0x0f)];
        }
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a register id holds ASCII hex digits only")
    }

    /// The id's 32 ASCII hex digits, without the UTF-8 check of `as_str` (for hot paths).
    #[inline]
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl Serialize for RegisterId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RegisterId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RegisterId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(RegisterId::RULE)
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RegisterId, E> {
                RegisterId::parse(value).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl TryFrom<String> for RegisterId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RegisterId> for String {
    fn from(id: RegisterId) -> Self {
        id.as_str().to_owned()
    }
}

impl fmt::Display for RegisterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RegisterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegisterId({})", self.as_str())
    }
}

/// The identity of one ground truth (the register role's store): 32 lowercase hex characters,
/// random, created with the store and kept for its whole life. A full sync carries it in its
/// snapshot, so that the pool can tell a newer snapshot of the same store from a snapshot of
/// another store (a replaced or re-created one), whose revisions are not comparable.
///
/// Held inline like `RegisterId`, and `Copy`, so snapshots stay plain values.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroundTruthEpoch([u8; RegisterId::LEN]);

impl GroundTruthEpoch {
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        RegisterId::parse(value)
            .map(|id| Self(id.0))
            .map_err(|err| InvalidId {
                what: "ground truth epoch",
                ..err
            })
    }

    /// Builds the epoch from 16 bytes (random ones, when a store is created) as lowercase hex.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(RegisterId::from_bytes(bytes).0)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("an epoch holds ASCII hex digits only")
    }
}

impl Serialize for GroundTruthEpoch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for GroundTruthEpoch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(deserializer)?;
        GroundTruthEpoch::parse(&value).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for GroundTruthEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for GroundTruthEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroundTruthEpoch({})", self.as_str())
    }
}

/// A node (peer) id: 1 to 64 characters of `[A-Za-z0-9_-]`. Keys in shared stores are
/// namespaced by it, so it must not contain separators.
///
/// Shared (`Arc<str>`): the gossip names every origin in every digest, so a clone is a count,
/// not an allocation, and the copies of one id share one string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(std::sync::Arc<str>);

string_id_impls!(NodeId);

impl NodeId {
    pub const MAX_LEN: usize = 64;
    const RULE: &'static str = "1 to 64 characters of [A-Za-z0-9_-]";

    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        if !is_name(value, Self::MAX_LEN) {
            return Err(InvalidId {
                what: "node id",
                rule: Self::RULE,
                value: truncate_for_error(value),
            });
        }
        Ok(Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `value` is 1 to `max_len` characters of `[A-Za-z0-9_-]`: the rule of node and
/// blueprint ids, safe inside store keys and paths.
pub(crate) fn is_name(value: &str, max_len: usize) -> bool {
    !value.is_empty()
        && value.len() <= max_len
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Error messages quote the offending value, but never a megabyte of it.
pub(crate) fn truncate_for_error(value: &str) -> String {
    const SHOWN: usize = 80;
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_id_accepts_exactly_32_lowercase_hex() {
        assert!(RegisterId::parse("0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "",
            "0123456789abcdef0123456789abcde",   // 31
            "0123456789abcdef0123456789abcdef0", // 33
            "0123456789ABCDEF0123456789ABCDEF",  // upper case
            "0123456789abcdef0123456789abcdeg",  // not hex
            "0123456789abcdef0123456789abcdé",   // 32 bytes, not ascii
        ] {
            let err = RegisterId::parse(bad).expect_err(bad);
            assert_eq!(err.what, "register id");
        }
    }

    #[test]
    fn register_id_from_bytes_round_trips_through_parse() {
        let id = RegisterId::from_bytes([0xab; 16]);
        assert_eq!(id.as_str(), "abababababababababababababababab");
        assert_eq!(RegisterId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn ground_truth_epoch_is_32_lowercase_hex_and_serializes_as_a_string() {
        let epoch = GroundTruthEpoch::from_bytes([0x5a; 16]);
        let json = serde_json::to_string(&epoch).unwrap();
        assert_eq!(json, "\"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\"");
        assert_eq!(
            serde_json::from_str::<GroundTruthEpoch>(&json).unwrap(),
            epoch
        );
        let err = GroundTruthEpoch::parse("5A5A").unwrap_err();
        assert_eq!(err.what, "ground truth epoch");
        assert!(serde_json::from_str::<GroundTruthEpoch>("\"x\"").is_err());
    }

    #[test]
    fn register_id_deserialization_validates() {
        let ok: RegisterId = serde_json::from_str("\"0123456789abcdef0123456789abcdef\"").unwrap();
        assert_eq!(ok.as_str(), "0123456789abcdef0123456789abcdef");
        let err = serde_json::from_str::<RegisterId>("\"nope\"").unwrap_err();
        assert!(
            err.to_string().contains("32 lowercase hexadecimal"),
            "{err}"
        );
    }

    #[test]
    fn node_id_rules() {
        assert!(NodeId::parse("peer-1_A").is_ok());
        assert!(NodeId::parse(&"a".repeat(64)).is_ok());
        assert!(NodeId::parse(&"a".repeat(65)).is_err());
        assert!(NodeId::parse("").is_err());
        assert!(NodeId::parse("a:b").is_err());
        assert!(NodeId::parse("a{b}").is_err());
    }

    #[test]
    fn error_quotes_long_values_truncated() {
        let err = NodeId::parse(&"x".repeat(10_000)).unwrap_err();
        assert!(err.value.chars().count() <= 81);
    }
}
