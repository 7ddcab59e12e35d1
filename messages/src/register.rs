//! Registers as the register role owns them (the ground truth), and the requests that change them.

use serde::{Deserialize, Serialize};

use crate::pool::{MAX_DESCRIPTION_LEN, MAX_NAME_LEN};
use crate::{AdInput, InvalidInput, RegisterId, Timestamp};

/// A register (ledger) hosted by this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    pub register_id: RegisterId,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the register is public: advertised to the peer network.
    pub advertise: bool,
    pub latest_version: u64,
    pub latest_docket_version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The store's revision at the last change of this register (assigned by the store).
    pub revision: u64,
}

impl Register {
    /// What the pool should hold for this register: its ad, or a withdrawal when private.
    pub fn to_ad_input(&self) -> AdInput {
        AdInput {
            register_id: self.register_id.clone(),
            name: Some(self.name.as_str().into()),
            description: self.description.as_deref().map(Into::into),
            is_public: self.advertise,
            latest_version: self.latest_version,
            latest_docket_version: self.latest_docket_version,
            // The register role says what exists, not how far a peer replicated it.
            sync_state: None,
        }
    }
}

/// A request to create a register; without an id the register role draws a random one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewRegister {
    #[serde(default)]
    pub register_id: Option<RegisterId>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub advertise: bool,
    #[serde(default)]
    pub latest_version: u64,
    #[serde(default)]
    pub latest_docket_version: u64,
}

impl NewRegister {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_name(Some(&self.name))?;
        validate_description(self.description.as_deref())
    }
}

/// A partial update: absent fields stay as they are. Versions may only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub advertise: Option<bool>,
    #[serde(default)]
    pub latest_version: Option<u64>,
    #[serde(default)]
    pub latest_docket_version: Option<u64>,
}

impl RegisterPatch {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_name(self.name.as_deref())?;
        validate_description(self.description.as_deref())
    }

    /// Applies the patch to `register` (without touching times or revision); refuses a version
    /// that goes backwards.
    pub fn apply_to(&self, register: &mut Register) -> Result<(), RegisterError> {
        let never_backwards =
            |field: &'static str, current: u64, requested: Option<u64>| match requested {
                Some(requested) if requested < current => Err(RegisterError::VersionRegression {
                    field,
                    current,
                    requested,
                }),
                Some(requested) => Ok(requested),
                None => Ok(current),
            };
        let latest_version = never_backwards(
            "latestVersion",
            register.latest_version,
            self.latest_version,
        )?;
        let latest_docket_version = never_backwards(
            "latestDocketVersion",
            register.latest_docket_version,
            self.latest_docket_version,
        )?;
        register.latest_version = latest_version;
        register.latest_docket_version = latest_docket_version;
        if let Some(name) = &self.name {
            register.name = name.clone();
        }
        if let Some(description) = &self.description {
            register.description = Some(description.clone());
        }
        if let Some(advertise) = self.advertise {
            register.advertise = advertise;
        }
        Ok(())
    }
}

fn validate_name(name: Option<&str>) -> Result<(), InvalidInput> {
    match name {
        Some(name) if name.trim().is_empty() => Err(InvalidInput::new("name", "must not be empty")),
        Some(name) if name.chars().count() > MAX_NAME_LEN => Err(InvalidInput::new(
            "name",
            format!("must be at most {MAX_NAME_LEN} characters"),
        )),
        _ => Ok(()),
    }
}

fn validate_description(description: Option<&str>) -> Result<(), InvalidInput> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_LEN => Err(InvalidInput::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
        )),
        _ => Ok(()),
    }
}

/// Why a register request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidInput),
    #[error("register {0} not found")]
    NotFound(RegisterId),
    #[error("register {0} already exists")]
    AlreadyExists(RegisterId),
    #[error("{field} may not go backwards: current {current}, requested {requested}")]
    VersionRegression {
        field: &'static str,
        current: u64,
        requested: u64,
    },
    /// The ground-truth store failed; retry later. Nothing changed.
    #[error("register store unavailable: {0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register() -> Register {
        Register {
            register_id: RegisterId::from_bytes([3; 16]),
            name: "orders".into(),
            description: Some("all orders".into()),
            advertise: true,
            latest_version: 10,
            latest_docket_version: 4,
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
            revision: 1,
        }
    }

    #[test]
    fn patch_keeps_absent_fields_and_refuses_regressions() {
        let mut reg = register();
        let patch = RegisterPatch {
            advertise: Some(false),
            latest_version: Some(11),
            ..RegisterPatch::default()
        };
        patch.apply_to(&mut reg).unwrap();
        assert!(!reg.advertise);
        assert_eq!(reg.latest_version, 11);
        assert_eq!(reg.name, "orders");
        assert_eq!(reg.description.as_deref(), Some("all orders"));

        let backwards = RegisterPatch {
            name: Some("renamed".into()),
            latest_docket_version: Some(3),
            ..RegisterPatch::default()
        };
        let err = backwards.apply_to(&mut reg).unwrap_err();
        assert!(matches!(
            err,
            RegisterError::VersionRegression {
                field: "latestDocketVersion",
                current: 4,
                requested: 3
            }
        ));
        assert_eq!(reg.name, "orders", "a refused patch changes nothing");
    }

    #[test]
    fn names_must_be_present_and_bounded() {
        let new = |name: &str| NewRegister {
            register_id: None,
            name: name.into(),
            description: None,
            advertise: true,
            latest_version: 0,
            latest_docket_version: 0,
        };
        assert!(new("ok").validate().is_ok());
        assert_eq!(new("  ").validate().unwrap_err().field, "name");
        assert_eq!(
            new(&"x".repeat(MAX_NAME_LEN + 1))
                .validate()
                .unwrap_err()
                .field,
            "name"
        );
    }
}
