//! Issue 7, item 1: a replica must never silently diverge from its hub's system register. A hub
//! restored from a backup (or a shared store that lost acknowledged appends) re-issues version
//! numbers with other content; a peer that followed the lost entries used to keep them for good,
//! reporting the hub's version and history and a healthy `/health`. Real hub and peer processes,
//! real time, the embedded stores.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::process::RoleProcess;
use crate::support::eventually;

/// Short peer timings: a heartbeat every 200 ms, a periodic sync every 2 s.
const FAST_PEER: &[&str] = &[
    "--heartbeat-interval-ms",
    "200",
    "--missed-heartbeats",
    "2",
    "--connect-timeout-ms",
    "500",
    "--isolated-backoff-max-ms",
    "300",
    "--sync-interval-secs",
    "2",
];
const CONVERGE: Duration = Duration::from_secs(20);

/// The restore-from-backup scenario of issue 7: publish 5 blueprints, stop the hub, copy its data
/// dir, start it, publish 5 more (the peer follows), stop it, restore the copy, start it, publish
/// 5 different blueprints and one more. The peer must end with exactly the hub's register (the 5
/// lost blueprints removed, the 6 new ones present, same versions and checksums), must have
/// counted a repair, and must keep it across a kill -9 and restart.
#[tokio::test]
async fn a_hub_restored_from_a_backup_is_followed_not_the_lost_entries() {
    let hub_dir = TempDir::new().unwrap();
    let backup = TempDir::new().unwrap();
    let hub_args = [
        "--node-id",
        "n0",
        "--data-dir",
        hub_dir.path().to_str().unwrap(),
    ];
    let mut hub = RoleProcess::hub_on_free_port(&hub_args).await;
    let port = hub.grpc_addr().port();
    let peer_dir = TempDir::new().unwrap();
    let hub_flag = format!("n0=http://127.0.0.1:{port}");
    let mut peer_args = vec![
        "--node-id",
        "peer-a",
        "--data-dir",
        peer_dir.path().to_str().unwrap(),
        "--hub",
        &hub_flag,
    ];
    peer_args.extend_from_slice(FAST_PEER);
    let mut peer = RoleProcess::peer(&peer_args).await;

    for n in 1..=5 {
        publish(&hub, &format!("kept-{n}")).await;
    }
    same_register(&peer, &hub).await;
    hub.terminate().await;
    copy_dir(hub_dir.path(), backup.path());

    let mut hub = RoleProcess::hub_on_port(port, &hub_args).await;
    for n in 1..=5 {
        publish(&hub, &format!("lost-{n}")).await;
    }
    let followed = same_register(&peer, &hub).await;
    assert_eq!(followed["version"], 11, "{followed}");
    hub.terminate().await;

    std::fs::remove_dir_all(hub_dir.path()).unwrap();
    copy_dir(backup.path(), hub_dir.path());
    let hub = RoleProcess::hub_on_port(port, &hub_args).await;
    assert_eq!(view(&hub).await["version"], 6, "the restored hub is back at version 6");
    for n in 1..=5 {
        publish(&hub, &format!("new-{n}")).await;
    }
    publish(&hub, "one-more").await;

    let repaired = same_register(&peer, &hub).await;
    let ids = blueprint_ids(&repaired);
    assert!(ids.iter().all(|id| !id.starts_with("lost-")), "{repaired}");
    assert!(ids.contains(&"new-3".to_owned()) && ids.contains(&"one-more".to_owned()));
    let replica = sync_status(&peer).await["replica"].clone();
    assert!(replica["repairs"].as_u64() >= Some(1), "{replica}");
    assert!(replica["diverged"].is_null(), "{replica}");
    let health = peer.get_json("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy", "{}", health.body);

    peer.kill9();
    let peer = RoleProcess::peer(&peer_args).await;
    same_register(&peer, &hub).await;
}

/// Waits until the peer's replica shows the hub's register: history, version, and every
/// blueprint with its version, activity and checksum. Returns the peer's view.
async fn same_register(peer: &RoleProcess, hub: &RoleProcess) -> Value {
    eventually("the peer's replica to equal the hub's register", CONVERGE, || async {
        let (theirs, ours) = (view(hub).await, view(peer).await);
        let equal = theirs["historyId"] == ours["historyId"]
            && theirs["version"] == ours["version"]
            && theirs["blueprints"] == ours["blueprints"];
        if equal {
            Ok(ours)
        } else {
            Err(json!({"hub": theirs, "peer": ours}).to_string())
        }
    })
    .await
}

async fn publish(hub: &RoleProcess, id: &str) -> Value {
    let reply = hub
        .post_json(
            "/api/system-register/blueprints",
            json!({"blueprintId": id, "document": {"id": id}, "publishedBy": "divergence"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body
}

async fn view(process: &RoleProcess) -> Value {
    let reply = process.get_json("/api/system-register").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

async fn sync_status(process: &RoleProcess) -> Value {
    let reply = process.get_json("/api/sync/status").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

fn blueprint_ids(view: &Value) -> Vec<String> {
    view["blueprints"]
        .as_array()
        .unwrap_or_else(|| panic!("no blueprints: {view}"))
        .iter()
        .map(|blueprint| blueprint["blueprintId"].as_str().unwrap().to_owned())
        .collect()
}

/// Copies a directory tree (the hub's data dir: a redb file).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
