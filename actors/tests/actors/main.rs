//! Actor tests on tokio's paused clock: real actors and a real supervisor, with the in-memory
//! fakes of the ports (`herald_actors::testing`) standing in for Redis, redb and the peer.
//! Virtual minutes pass in microseconds; nothing sleeps on the wall clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

mod advertisement_pool;
mod hub;
mod peer;
mod resync_driver;
mod supervision;
