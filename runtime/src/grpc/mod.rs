//! gRPC between peers and hubs (package `herald.v1` of `herald-proto`): the hub's server
//! (`server`: `HubGrpc`, `GrpcServer`, `serve`) and the peer's `HubLink` (`client`:
//! `GrpcHubLink`).
//!
//! `tonic::Status` never leaves this module: the server builds it from `WireError`,
//! `AuthorityError` and `SlotError`, the client turns it into a `HubLinkError`. No TLS, tokens or
//! rate limits yet.

pub mod client;
pub mod server;

pub use client::{GrpcHubLink, MAX_MESSAGE_BYTES, hub_endpoint};
pub use server::{GrpcServer, HubGrpc, ServeError, serve};

/// The contracts: generated clients and servers, and the conversions (for hosts and tests that
/// talk `herald.v1` directly).
pub use herald_proto as proto;
