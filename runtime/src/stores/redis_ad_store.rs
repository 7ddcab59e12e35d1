//! `RedisAdStore`: the pool's ads in Redis. (Being implemented.)

use async_trait::async_trait;

use herald_actors::ports::{AdBatch, AdStore, StoreError, StoredPool};
use herald_messages::NodeId;

pub struct RedisAdStore;

#[derive(Debug, thiserror::Error)]
#[error("invalid redis url")]
pub struct RedisOpenError;

impl RedisAdStore {
    pub fn new(_url: &str, _prefix: &str, _node_id: &NodeId) -> Result<Self, RedisOpenError> {
        Err(RedisOpenError)
    }
}

#[async_trait]
impl AdStore for RedisAdStore {
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
        "redis".into()
    }
}
