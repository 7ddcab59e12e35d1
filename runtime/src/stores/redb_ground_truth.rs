//! `RedbGroundTruth`: registers in a redb file. (Being implemented.)

use std::path::Path;

use async_trait::async_trait;

use herald_actors::ports::{GroundTruth, GroundTruthError, PublicRegisters};
use herald_messages::{Register, RegisterId};

pub struct RedbGroundTruth;

#[derive(Debug, thiserror::Error)]
#[error("cannot open")]
pub struct RedbOpenError;

impl RedbGroundTruth {
    pub async fn open(_path: &Path) -> Result<Self, RedbOpenError> {
        Err(RedbOpenError)
    }
}

#[async_trait]
impl GroundTruth for RedbGroundTruth {
    async fn public_registers(&self) -> Result<PublicRegisters, GroundTruthError> {
        Err(GroundTruthError::Corrupt { what: "unimplemented".into() })
    }
    async fn get(&self, _id: &RegisterId) -> Result<Option<Register>, GroundTruthError> {
        Err(GroundTruthError::Corrupt { what: "unimplemented".into() })
    }
    async fn list(&self) -> Result<Vec<Register>, GroundTruthError> {
        Err(GroundTruthError::Corrupt { what: "unimplemented".into() })
    }
    async fn create(&self, _register: Register) -> Result<Register, GroundTruthError> {
        Err(GroundTruthError::Corrupt { what: "unimplemented".into() })
    }
    async fn replace(&self, _register: Register) -> Result<Register, GroundTruthError> {
        Err(GroundTruthError::Corrupt { what: "unimplemented".into() })
    }
    async fn delete(&self, _id: &RegisterId) -> Result<bool, GroundTruthError> {
        Err(GroundTruthError::Corrupt { what: "unimplemented".into() })
    }
    fn describe(&self) -> String {
        "redb".into()
    }
}
