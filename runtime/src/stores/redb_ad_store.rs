//! `RedbAdStore`: the pool's ads in a redb file. (Being implemented.)

use std::path::Path;

use async_trait::async_trait;

use herald_actors::ports::{AdBatch, AdStore, StoreError, StoredPool};
use herald_messages::NodeId;

pub struct RedbAdStore;

#[derive(Debug, thiserror::Error)]
#[error("cannot open")]
pub struct RedbOpenError;

impl RedbAdStore {
    pub async fn open(
        _path: &Path,
        _node_id: &NodeId,
        _clock: std::sync::Arc<dyn herald_actors::ports::Clock>,
    ) -> Result<Self, RedbOpenError> {
        Err(RedbOpenError)
    }
}

#[async_trait]
impl AdStore for RedbAdStore {
    async fn load(&self) -> Result<StoredPool, StoreError> {
        Err(StoreError::Corrupt { what: "unimplemented".into() })
    }
    async fn write(&self, _batch: &AdBatch, _expiry: std::time::Duration) -> Result<(), StoreError> {
        Err(StoreError::Corrupt { what: "unimplemented".into() })
    }
    async fn holds_meta(&self) -> Result<bool, StoreError> {
        Err(StoreError::Corrupt { what: "unimplemented".into() })
    }
    fn describe(&self) -> String {
        "redb".into()
    }
}
