//! How the system register's stores keep an entry: its JSON (the document as JSON text), read
//! back with a check that the record holds the version it is stored under. Shared by every
//! `BlueprintStore` adapter, so that a record means the same in each.

use herald_actors::ports::BlueprintStoreError;
use herald_messages::SystemRegisterEntry;

/// The entry stored at `version`, or `Corrupt` naming the version when the record does not
/// decode or holds another version.
pub(crate) fn decode_entry(
    version: u64,
    bytes: &[u8],
) -> Result<SystemRegisterEntry, BlueprintStoreError> {
    let entry: SystemRegisterEntry =
        serde_json::from_slice(bytes).map_err(|err| BlueprintStoreError::Corrupt {
            what: format!("entry at version {version} does not decode: {err}"),
        })?;
    if entry.version != version {
        return Err(BlueprintStoreError::Corrupt {
            what: format!(
                "the record at version {version} holds an entry of version {}",
                entry.version
            ),
        });
    }
    Ok(entry)
}
