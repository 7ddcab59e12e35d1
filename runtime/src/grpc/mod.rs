//! gRPC between peers and hubs (package `herald.v1` of `herald-proto`): the hub's server
//! (`server`: `HubGrpc`, `GrpcServer`, `serve`) and the peer's `HubLink` (`client`:
//! `GrpcHubLink`).
//!
//! `auth` (`HubAuth`: which peers may call, by bearer token and/or client certificate) and
//! `limits` (`HubLimits`, the per-peer request rate) guard the server.
//!
//! `tonic::Status` never leaves this module: the server builds it from `WireError`,
//! `AuthorityError` and `SlotError`, the client turns it into a `HubLinkError`.

pub mod auth;
pub mod client;
pub mod limits;
pub mod server;

pub use auth::{ClientCertificates, HubAuth};
pub use client::{GrpcHubLink, HubCredentials, MAX_MESSAGE_BYTES, hub_endpoint, hub_endpoint_with};
pub use limits::HubLimits;
pub use server::{
    GrpcServer, GrpcStartError, HubGrpc, ServeError, ServeOptions, serve, serve_with,
};

/// The contracts: generated clients and servers, and the conversions (for hosts and tests that
/// talk `herald.v1` directly).
pub use herald_proto as proto;
