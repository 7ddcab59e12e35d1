//! `HttpPoolLink`: the resync driver's way to a pool on another node. (Being implemented.)

use std::time::Duration;

use async_trait::async_trait;

use herald_actors::ports::{PoolLink, PoolLinkError};
use herald_messages::{BulkAdvertise, BulkOutcome};

pub struct HttpPoolLink;

#[derive(Debug, thiserror::Error)]
#[error("cannot build")]
pub struct HttpLinkError;

impl HttpPoolLink {
    pub fn new(_base_url: &str, _token: &str, _timeout: Duration) -> Result<Self, HttpLinkError> {
        Err(HttpLinkError)
    }
}

#[async_trait]
impl PoolLink for HttpPoolLink {
    async fn push(&self, _request: BulkAdvertise) -> Result<BulkOutcome, PoolLinkError> {
        Err(PoolLinkError::Refused("unimplemented".into()))
    }
    fn describe(&self) -> String {
        "http".into()
    }
}
