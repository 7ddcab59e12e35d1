//! `LocalPoolLink`: the resync driver's way to the pool when both roles share a node.
//!
//! It calls the pool actor through its slot, so a pool that is restarting delays the push
//! instead of failing it. The HTTP link to a pool on another node lives in `herald-runtime`.

use std::time::Duration;

use async_trait::async_trait;

use herald_messages::{AdvertisementPoolMsg, BulkAdvertise, BulkOutcome, Validate};

use crate::ports::{PoolLink, PoolLinkError};
use crate::slot::ActorSlot;

pub struct LocalPoolLink {
    pool: ActorSlot<AdvertisementPoolMsg>,
    timeout: Duration,
}

impl LocalPoolLink {
    pub fn new(pool: ActorSlot<AdvertisementPoolMsg>, timeout: Duration) -> Self {
        Self { pool, timeout }
    }
}

#[async_trait]
impl PoolLink for LocalPoolLink {
    async fn push(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolLinkError> {
        // The way into this node's pool: validated here, once.
        let request = request
            .validated()
            .map_err(|err| PoolLinkError::Refused(err.to_string()))?;
        let answer = self
            .pool
            .call(
                |reply| AdvertisementPoolMsg::Bulk(request, reply),
                self.timeout,
            )
            .await
            .map_err(|err| PoolLinkError::Unreachable(Box::new(err)))?;
        answer.map_err(|err| PoolLinkError::Refused(err.to_string()))
    }

    fn describe(&self) -> String {
        "local".to_owned()
    }
}
