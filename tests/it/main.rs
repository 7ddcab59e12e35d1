//! herald's integration and acceptance tests: one binary, one module per subject.
//! Real redis-server processes, real HTTP on loopback, real role processes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

mod acceptance;
mod ad_stores;
mod blueprint_stores;
mod cluster;
mod config_files;
mod divergence;
mod gossip;
mod gossip_stores;
mod ground_truths;
mod grpc;
mod hub_requirements;
mod hubs;
mod logs;
mod mongo_stores;
mod page;
mod pool_scenarios;
mod redb_stores;
mod redis_ad_store;
mod redis_cluster;
mod requirements;
mod rest_api;
mod signatures;
mod tidy;
mod tls;
