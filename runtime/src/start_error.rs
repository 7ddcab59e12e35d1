//! `StartError`: why a node could not start. Every part of the runtime that `Node::start` uses
//! (stores, servers, links) reports through it, and none of them depends on `node` for it.

use std::net::SocketAddr;

/// Why a node could not start. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the {what} at {location}")]
    Store {
        what: &'static str,
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the pool link to {url}")]
    PoolLink {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    SecondClusterNode(#[from] crate::cluster::SecondClusterNode),
    #[error("cannot start the node supervisor")]
    Supervisor(#[source] ractor::SpawnErr),
    /// A certificate, key or secret file named by the configuration could not be read or used.
    #[error("cannot load the credentials of the {link}")]
    Credentials {
        link: &'static str,
        #[source]
        source: crate::tls::CredentialError,
    },
    /// The hub's stored system register failed validation: the hub refuses to serve it rather
    /// than re-create it (FR-022).
    #[error("the system register was refused: {0}")]
    SystemRegisterRefused(String),
}
