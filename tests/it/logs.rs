//! Issue 12, item 6: logs an operator can ship. The role binaries wrote ANSI colour codes into
//! redirected stderr (a log file full of escape sequences); colours now appear only on a
//! terminal, and `--log-format json` writes one JSON object per line with the span fields.

use serde_json::Value;
use tempfile::TempDir;

use crate::support::process::{Role, RoleProcess};

/// A peer's stderr redirected to a file, with no `NO_COLOR` in its environment and `RUST_LOG`
/// at debug (so that spans and many fields are printed): not one escape sequence.
#[tokio::test]
async fn redirected_logs_carry_no_escape_sequences() {
    let dir = TempDir::new().unwrap();
    let mut peer = RoleProcess::start_with_env(
        Role::Peer,
        &[
            "--node-id",
            "peer-logs",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[("RUST_LOG", "debug")],
    )
    .await;
    peer.get_json("/api/registers/available").await;
    peer.terminate().await;
    let log = peer.log();
    assert!(log.lines().count() > 3, "too little was logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence in the redirected log: {log:?}"
    );
}

/// `--log-format json`: every line is a JSON object with a timestamp, a level, a target and the
/// event's fields, and events inside an actor's span carry that span.
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_span_fields() {
    let dir = TempDir::new().unwrap();
    let mut peer = RoleProcess::start_with_env(
        Role::Peer,
        &[
            "--node-id",
            "peer-json",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "debug")],
    )
    .await;
    peer.get_json("/api/registers/available").await;
    peer.terminate().await;
    let log = peer.log();
    let mut with_span = 0;
    for line in log.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}"));
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(event.get(key).is_some(), "no {key}: {line}");
        }
        if event["span"]["node"] == "peer-json" {
            with_span += 1;
        }
    }
    assert!(log.lines().count() > 3, "too little was logged: {log}");
    assert!(
        with_span > 0,
        "no event carried an actor's span with its node: {log}"
    );
}
