//! Test harness: real servers and processes, and waiting for events instead of sleeping.

#![allow(dead_code)]

pub mod certs;
pub mod fault_proxy;
pub mod fixtures;
pub mod mongo;
pub mod process;
pub mod redis;
pub mod tls_terminator;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;

/// Polls `check` every 20 ms until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if started.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it answers `Ok`; panics after `deadline` with `what` and the
/// last `Err` (what was seen instead).
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = tokio::time::Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if started.elapsed() > deadline => {
                panic!("timed out after {deadline:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A store call against a store that is down must fail within this (it fails in about a second
/// at most: short connection and response timeouts, one retry).
pub const FAIL_FAST: Duration = Duration::from_secs(5);

/// Runs `call` and returns its error, asserting that it failed within `FAIL_FAST`.
pub async fn fails_fast<T: std::fmt::Debug, E>(
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> E {
    let started = tokio::time::Instant::now();
    let result = call.await;
    let elapsed = started.elapsed();
    assert!(elapsed < FAIL_FAST, "{what} took {elapsed:?} to fail");
    match result {
        Ok(value) => panic!("{what}: expected a failure, got {value:?}"),
        Err(err) => err,
    }
}

/// A port that was free a moment ago on 127.0.0.1 (defined beside the role-process harness,
/// which the bench and the demo include on their own).
pub use process::free_port;

/// A temporary directory named after the test, removed when dropped.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory")
}

/// A temporary path as a command-line argument.
pub fn path_arg(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temporary path").to_owned()
}

/// Owned arguments as the `&[&str]` the process starters take.
pub fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
