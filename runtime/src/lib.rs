//! herald's runtime: adapters (Redis, redb, HTTP), configuration, the REST API, and the
//! wiring of the supervision tree. The only crate that names drivers.
//!
//! Rooms: `config` (raw → validated), `node` (start, handle, shutdown), `api` (typed calls),
//! `stores/` (port adapters), `links/` (other nodes over HTTP), `cluster/` (membership and the
//! gateway over ractor_cluster), `rest/` (axum API), `tls` (TLS material and secrets named by
//! the configuration, read at start).

pub mod api;
pub mod cluster;
pub mod config;
pub mod grpc;
pub mod links;
pub mod node;
pub mod rest;
pub mod server;
pub mod start_error;
pub mod stores;
pub mod tls;

pub use api::{NodeApi, NodeError};
pub use config::{
    ConfigError, ConfigFileError, NodeConfig, RawClientTls, RawClusterConfig, RawClusterTls,
    RawGossipConfig, RawHubConfig, RawHubEndpoint, RawMongoConfig, RawMongoTls, RawNodeConfig,
    RawPeerConfig, RawPeerCredential, RawRegisterConfig, RawServerTls,
};
pub use node::{Node, NodeHandle, ShutdownReport, StartError, StoreOverrides};
