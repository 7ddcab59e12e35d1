//! Store adapters: each implements a port of `herald-actors` on one technology.
//!
//! - `redis_ad_store`: `AdStore` on Redis or a Redis Cluster (production; shared by several
//!   nodes).
//! - `redb_ad_store`: `AdStore` in a redb file (the embedded default).
//! - `redis_gossip_store`, `redb_gossip_store`: `GossipStore` beside the ads (the Redis of the
//!   ad store; the ad store's redb file). MongoDB has none yet (`open_peer_stores`).
//! - `redb_ground_truth`: `GroundTruth` in a redb file (the embedded default).
//! - `redb_blueprint_store`: `BlueprintStore` in a redb file (one hub, the embedded default).
//! - `redis_blueprint_store`: `BlueprintStore` on Redis (several hubs share one register).
//! - `redb_replica_store`: `ReplicaStore` in a redb file plus a JSON checkpoint file (peers).
//! - `mongo_ad_store`, `mongo_ground_truth`, `mongo_blueprint_store`: `AdStore`,
//!   `GroundTruth` and `BlueprintStore` on MongoDB (a replica set; shared by nodes and hubs).
//! - `redb_file`, `redis_connection`, `mongo_connection`: what the redb, the Redis and the
//!   MongoDB adapters share; `stored_entry`: how every system register store keeps an entry.
//!
//! Driver errors (`redis::RedisError`, `redb::Error`, `mongodb::error::Error`) are mapped to the
//! port's error enum here and never leave this module.

mod mongo_ad_store;
mod mongo_blueprint_store;
mod mongo_connection;
mod mongo_ground_truth;
mod redb_ad_store;
mod redb_blueprint_store;
mod redb_file;
mod redb_gossip_store;
mod redb_ground_truth;
mod redb_replica_store;
mod redis_ad_store;
mod redis_blueprint_store;
mod redis_connection;
mod redis_gossip_store;
mod stored_entry;

use std::path::Path;
use std::sync::Arc;

use herald_actors::ports::{AdStore, BlueprintStore, GossipStore, GroundTruth, ReplicaStore};
use herald_messages::NodeId;

pub use mongo_ad_store::MongoAdStore;
pub use mongo_blueprint_store::MongoBlueprintStore;
pub use mongo_connection::MongoOpenError;
pub use mongo_ground_truth::MongoGroundTruth;
pub use redb_ad_store::RedbAdStore;
pub use redb_blueprint_store::RedbBlueprintStore;
pub use redb_file::RedbOpenError;
pub use redb_gossip_store::RedbGossipStore;
pub use redb_ground_truth::RedbGroundTruth;
pub use redb_replica_store::RedbReplicaStore;
pub use redis_ad_store::RedisAdStore;
pub use redis_blueprint_store::RedisBlueprintStore;
pub use redis_connection::RedisOpenError;
pub use redis_gossip_store::RedisGossipStore;

use crate::config::{AdStoreConfig, BlueprintStoreConfig, GroundTruthConfig, MongoConfig};
use crate::start_error::StartError;
use crate::tls::{ClientPem, ClientTls, CredentialError};

/// The stores of a node's peer role, opened from one configuration.
pub struct PeerStores {
    pub ads: Arc<dyn AdStore>,
    /// Beside the ads: in the same Redis (same prefix, same cluster slot as the node's ads) or
    /// the same redb file (redb opens a file once per process, so only this function can hand
    /// out both). `None` on MongoDB: no MongoDB adapter of the port yet, so a node there keeps
    /// its gossip in memory only.
    pub gossip: Option<Arc<dyn GossipStore>>,
}

/// Opens the configured ad store and the gossip store beside it. Redis and MongoDB connect
/// lazily (a node starts while they are down and runs degraded); a redb file is opened (and
/// created) now.
pub async fn open_peer_stores(
    config: &AdStoreConfig,
    node_id: &NodeId,
) -> Result<PeerStores, StartError> {
    match config {
        AdStoreConfig::Redis { url, prefix, tls } => {
            let error = |source: Box<dyn std::error::Error + Send + Sync>| StartError::Store {
                what: "advertisement store",
                location: url.clone(),
                source,
            };
            let pem = load_tls(tls.as_ref()).map_err(|err| error(Box::new(err)))?;
            let ads = RedisAdStore::new_with_tls(url, prefix, node_id, pem.as_ref())
                .map_err(|err| error(Box::new(err)))?;
            let gossip = RedisGossipStore::new_with_tls(url, prefix, node_id, pem.as_ref())
                .map_err(|err| error(Box::new(err)))?;
            Ok(PeerStores {
                ads: Arc::new(ads),
                gossip: Some(Arc::new(gossip)),
            })
        }
        AdStoreConfig::RedisCluster { urls, prefix, tls } => {
            let error = |source: Box<dyn std::error::Error + Send + Sync>| StartError::Store {
                what: "advertisement store",
                location: urls.join(","),
                source,
            };
            let pem = load_tls(tls.as_ref()).map_err(|err| error(Box::new(err)))?;
            let ads = RedisAdStore::new_cluster_with_tls(urls, prefix, node_id, pem.as_ref())
                .map_err(|err| error(Box::new(err)))?;
            let gossip =
                RedisGossipStore::new_cluster_with_tls(urls, prefix, node_id, pem.as_ref())
                    .map_err(|err| error(Box::new(err)))?;
            Ok(PeerStores {
                ads: Arc::new(ads),
                gossip: Some(Arc::new(gossip)),
            })
        }
        AdStoreConfig::Embedded { path } => {
            let ads =
                RedbAdStore::open(path, node_id)
                    .await
                    .map_err(|source| StartError::Store {
                        what: "advertisement store",
                        location: path.display().to_string(),
                        source: Box::new(source),
                    })?;
            let gossip = ads.gossip_store();
            Ok(PeerStores {
                ads: Arc::new(ads),
                gossip: Some(Arc::new(gossip)),
            })
        }
        AdStoreConfig::Mongo(mongodb) => {
            let ads = MongoAdStore::open(mongodb, node_id)
                .await
                .map_err(|source| mongo_error("advertisement store", mongodb, source))?;
            Ok(PeerStores {
                ads: Arc::new(ads),
                gossip: None,
            })
        }
    }
}

/// Opens the configured ground truth: the embedded one is opened (and created) now, MongoDB
/// connects lazily.
pub async fn open_ground_truth(
    config: &GroundTruthConfig,
) -> Result<Arc<dyn GroundTruth>, StartError> {
    match config {
        GroundTruthConfig::Embedded { path } => {
            let truth = RedbGroundTruth::open(path)
                .await
                .map_err(|source| StartError::Store {
                    what: "register store",
                    location: path.display().to_string(),
                    source: Box::new(source),
                })?;
            Ok(Arc::new(truth))
        }
        GroundTruthConfig::Mongo(mongodb) => {
            let truth = MongoGroundTruth::open(mongodb)
                .await
                .map_err(|source| mongo_error("register store", mongodb, source))?;
            Ok(Arc::new(truth))
        }
    }
}

/// A MongoDB store that could not be opened (its URL does not parse).
fn mongo_error(what: &'static str, config: &MongoConfig, source: MongoOpenError) -> StartError {
    StartError::Store {
        what,
        location: crate::config::without_credentials(&config.url),
        source: Box::new(source),
    }
}

/// Opens the configured system register store: redb (one hub) now, Redis or MongoDB (shared by
/// hubs) lazily.
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
        BlueprintStoreConfig::RedisCluster { urls, prefix, tls } => {
            let error = |source: Box<dyn std::error::Error + Send + Sync>| StartError::Store {
                what: "system register store",
                location: urls.join(","),
                source,
            };
            let pem = load_tls(tls.as_ref()).map_err(|err| error(Box::new(err)))?;
            let store = RedisBlueprintStore::new_cluster_with_tls(urls, prefix, pem.as_ref())
                .map_err(|err| error(Box::new(err)))?;
            Ok(Arc::new(store))
        }
        BlueprintStoreConfig::Mongo(mongodb) => {
            let store = MongoBlueprintStore::open(mongodb)
                .await
                .map_err(|source| mongo_error("system register store", mongodb, source))?;
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
