//! Links to other nodes: `HttpPoolLink` pushes to a peer's pool through its REST API.

mod http_pool_link;

pub use http_pool_link::HttpPoolLink;
