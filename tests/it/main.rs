//! herald's integration and acceptance tests: one binary, one module per subject.
//! Real redis-server processes, real HTTP on loopback, real role processes.

mod support;

mod redb_stores;
mod redis_ad_store;
mod rest_api;
