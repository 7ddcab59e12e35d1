//! herald's gRPC contracts: the `.proto` files of package `herald.v1` (services
//! `CentralNodeConnection`, `Heartbeat`, `SystemRegisterSync`), the code prost and tonic
//! generate from them, and the conversions between wire and domain types
//! (`herald-messages`), with validation.
//!
//! Enums are mapped by name, never by numeric cast. Conversions from the wire validate and
//! return `WireError`, which the gRPC server answers with `INVALID_ARGUMENT`.

pub mod convert;

pub use convert::WireError;
/// The tonic the generated clients and servers are built on, for hosts (and tests) that use
/// them directly.
pub use tonic;

/// Generated code of package `herald.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("herald.v1");
}
