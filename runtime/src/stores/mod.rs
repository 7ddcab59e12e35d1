//! Store adapters: each implements a port of `herald-actors` on one technology.
//!
//! - `redis_ad_store`: `AdStore` on Redis (production; shared by several nodes).
//! - `redb_ad_store`: `AdStore` in a redb file (the embedded default).
//! - `redb_ground_truth`: `GroundTruth` in a redb file (the embedded default).
//! - `redb_blueprint_store`: `BlueprintStore` in a redb file (one hub, the embedded default).
//! - `redis_blueprint_store`: `BlueprintStore` on Redis (several hubs share one register).
//! - `redb_replica_store`: `ReplicaStore` in a redb file plus a JSON checkpoint file (peers).
//! - `redb_file`, `redis_connection`: what the redb and the Redis adapters share.
//!
//! Driver errors (`redis::RedisError`, `redb::Error`) are mapped to the port's error enum here
//! and never leave this module.

mod redb_ad_store;
mod redb_blueprint_store;
mod redb_file;
mod redb_ground_truth;
mod redb_replica_store;
mod redis_ad_store;
mod redis_blueprint_store;
mod redis_connection;

use std::path::Path;
use std::sync::Arc;

use herald_actors::ports::{AdStore, BlueprintStore, GroundTruth, ReplicaStore};
use herald_messages::NodeId;

pub use redb_ad_store::RedbAdStore;
pub use redb_blueprint_store::RedbBlueprintStore;
pub use redb_file::RedbOpenError;
pub use redb_ground_truth::RedbGroundTruth;
pub use redb_replica_store::RedbReplicaStore;
pub use redis_ad_store::RedisAdStore;
pub use redis_blueprint_store::RedisBlueprintStore;
pub use redis_connection::RedisOpenError;

use crate::config::{AdStoreConfig, BlueprintStoreConfig};
use crate::start_error::StartError;
use crate::tls::{ClientPem, ClientTls, CredentialError};

/// Opens the configured ad store. Redis connects lazily (a node starts while Redis is down and
/// runs degraded); a redb file is opened (and created) now.
pub async fn open_ad_store(
    config: &AdStoreConfig,
    node_id: &NodeId,
) -> Result<Arc<dyn AdStore>, StartError> {
    match config {
        AdStoreConfig::Redis { url, prefix, tls } => {
            let error = |source: Box<dyn std::error::Error + Send + Sync>| StartError::Store {
                what: "advertisement store",
                location: url.clone(),
                source,
            };
            let pem = load_tls(tls.as_ref()).map_err(|err| error(Box::new(err)))?;
            let store = RedisAdStore::new_with_tls(url, prefix, node_id, pem.as_ref())
                .map_err(|err| error(Box::new(err)))?;
            Ok(Arc::new(store))
        }
        AdStoreConfig::Embedded { path } => {
            let store =
                RedbAdStore::open(path, node_id)
                    .await
                    .map_err(|source| StartError::Store {
                        what: "advertisement store",
                        location: path.display().to_string(),
                        source: Box::new(source),
                    })?;
            Ok(Arc::new(store))
        }
    }
}

/// Opens (and creates) the embedded ground truth.
pub async fn open_ground_truth(path: &Path) -> Result<Arc<dyn GroundTruth>, StartError> {
    let truth = RedbGroundTruth::open(path)
        .await
        .map_err(|source| StartError::Store {
            what: "register store",
            location: path.display().to_string(),
            source: Box::new(source),
        })?;
    Ok(Arc::new(truth))
}

/// Opens the configured system register store: redb (one hub) now, Redis (shared by hubs)
/// lazily.
pub async fn open_blueprint_store(
    config: &BlueprintStoreConfig,
) -> Result<Arc<dyn BlueprintStore>, StartError> {
    match config {
        BlueprintStoreConfig::Embedded { path } => {
            let store =
                RedbBlueprintStore::open(path)
                    .await
                    .map_err(|source| StartError::Store {
                        what: "system register store",
                        location: path.display().to_string(),
                        source: Box::new(source),
                    })?;
            Ok(Arc::new(store))
        }
        BlueprintStoreConfig::Redis { url, prefix, tls } => {
            let error = |source: Box<dyn std::error::Error + Send + Sync>| StartError::Store {
                what: "system register store",
                location: url.clone(),
                source,
            };
            let pem = load_tls(tls.as_ref()).map_err(|err| error(Box::new(err)))?;
            let store = RedisBlueprintStore::new_with_tls(url, prefix, pem.as_ref())
                .map_err(|err| error(Box::new(err)))?;
            Ok(Arc::new(store))
        }
    }
}

/// Reads the TLS material of a Redis URL, when configured.
fn load_tls(tls: Option<&ClientTls>) -> Result<Option<ClientPem>, CredentialError> {
    tls.map(ClientTls::load).transpose()
}

/// Opens (and creates) a peer's replica of the system register in `dir`.
pub async fn open_replica_store(dir: &Path) -> Result<Arc<dyn ReplicaStore>, StartError> {
    let store = RedbReplicaStore::open(dir)
        .await
        .map_err(|source| StartError::Store {
            what: "system register replica",
            location: dir.display().to_string(),
            source: Box::new(source),
        })?;
    Ok(Arc::new(store))
}
