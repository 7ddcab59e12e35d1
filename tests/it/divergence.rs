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

use crate::support::process::{RoleProcess, blueprint_ids};
use crate::support::redis::{RedisServer, connect as redis_connect};
use crate::support::{as_strs, eventually};

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
    assert_eq!(
        hub.system_register().await["version"],
        6,
        "the restored hub is back at version 6"
    );
    for n in 1..=5 {
        publish(&hub, &format!("new-{n}")).await;
    }
    publish(&hub, "one-more").await;

    let repaired = same_register(&peer, &hub).await;
    let ids = blueprint_ids(&repaired);
    assert!(ids.iter().all(|id| !id.starts_with("lost-")), "{repaired}");
    assert!(ids.contains(&"new-3".to_owned()) && ids.contains(&"one-more".to_owned()));
    let replica = peer.sync_status().await["replica"].clone();
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
    eventually(
        "the peer's replica to equal the hub's register",
        CONVERGE,
        || async {
            let (theirs, ours) = (hub.system_register().await, peer.system_register().await);
            let equal = theirs["historyId"] == ours["historyId"]
                && theirs["version"] == ours["version"]
                && theirs["blueprints"] == ours["blueprints"];
            if equal {
                Ok(ours)
            } else {
                Err(json!({"hub": theirs, "peer": ours}).to_string())
            }
        },
    )
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

/// Keys of the system register in Redis (default prefix `herald`).
const ENTRIES_KEY: &str = "herald:{sysreg}:entries";
const VERSION_KEY: &str = "herald:{sysreg}:version";
const APPENDED_CHANNEL: &str = "herald:{sysreg}:appended";

/// Issue 7, item 4: integrity over availability. Regression: a hub catching up from a shared
/// store skipped an entry that failed its checksum and served a register with a gap that peers
/// never filled. Now the hub serves up to the last sound version, says so (`/health` 503
/// naming the version, gRPC status UNHEALTHY), refuses appends, keeps reading, and serves
/// everything again once the entry reads sound; a peer never sees a gap.
#[tokio::test]
async fn a_corrupt_entry_in_a_shared_redis_blocks_the_hub_at_the_last_good_version() {
    let redis = RedisServer::start();
    let hub = RoleProcess::hub_on_free_port(&["--node-id", "n0", "--redis", &redis.url()]).await;
    let peer_dir = TempDir::new().unwrap();
    let hub_flag = format!("n0={}", hub.grpc_url());
    let mut peer_args = vec![
        "--node-id",
        "peer-a",
        "--data-dir",
        peer_dir.path().to_str().unwrap(),
        "--hub",
        &hub_flag,
    ];
    peer_args.extend_from_slice(FAST_PEER);
    let peer = RoleProcess::peer(&peer_args).await;
    publish(&hub, "sound").await;
    same_register(&peer, &hub).await;

    // "Another hub" appends version 3 whose document does not match its checksum.
    let mut conn = redis.connection().await;
    let stored: String = redis::cmd("HGET")
        .arg(ENTRIES_KEY)
        .arg(2)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut sound: Value = serde_json::from_str(&stored).unwrap();
    sound["version"] = json!(3);
    sound["blueprintId"] = json!("third");
    sound["kind"] = json!("published");
    let mut tampered = sound.clone();
    tampered["document"] = json!(r#"{"tampered":true}"#);
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(ENTRIES_KEY)
        .arg(3)
        .arg(tampered.to_string())
        .cmd("SET")
        .arg(VERSION_KEY)
        .arg(3)
        .cmd("PUBLISH")
        .arg(APPENDED_CHANNEL)
        .arg(3)
        .query_async(&mut conn)
        .await
        .unwrap();

    let health = eventually("the hub to report the bad entry", CONVERGE, || async {
        let health = hub.get_json("/health").await;
        if health.status == StatusCode::SERVICE_UNAVAILABLE {
            Ok(health.body)
        } else {
            Err(format!("{health:?}"))
        }
    })
    .await;
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("version 2") && reasons.contains("entry 3"),
        "{health}"
    );
    assert_eq!(
        hub.system_register().await["version"],
        2,
        "served up to the last sound version"
    );
    let refused = hub
        .post_json(
            "/api/system-register/blueprints",
            json!({"blueprintId": "refused", "document": {}}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    // The peer keeps the sound register, without a gap.
    assert_eq!(peer.system_register().await["version"], 2);

    // The entry is repaired in the store: the hub takes it and serves everything again.
    let _: () = redis::cmd("HSET")
        .arg(ENTRIES_KEY)
        .arg(3)
        .arg(sound.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("the hub to serve version 3 again", CONVERGE, || async {
        let health = hub.get_json("/health").await;
        let version = hub.system_register().await["version"].clone();
        if health.status == StatusCode::OK && version == 3 {
            Ok(())
        } else {
            Err(format!("{health:?}, version {version}"))
        }
    })
    .await;
    let followed = same_register(&peer, &hub).await;
    assert!(blueprint_ids(&followed).contains(&"third".to_owned()));
}

/// Issue 7, item 7: a shared Redis that loses data under running hubs is repaired by them.
/// Regression: a wiped Redis made every append fail for good (UNAVAILABLE), and one that lost
/// its last acknowledged appends made the next publication re-issue their versions with other
/// content. Two hub processes and a peer: wipe (`FLUSHALL`), then truncate (the last two entries
/// and the counter rolled back); each time the hubs write the register back, appends resume at
/// the next version, and the peer's replica never diverges from the hubs'.
#[tokio::test]
async fn hubs_write_back_a_shared_redis_that_was_wiped_or_truncated() {
    let redis = RedisServer::start();
    let url = redis.url();
    let hub_args = |id: &'static str| {
        vec![
            "--node-id".to_owned(),
            id.to_owned(),
            "--redis".to_owned(),
            url.clone(),
            "--store-check-interval-ms".to_owned(),
            "200".to_owned(),
        ]
    };
    let (n0_args, n1_args) = (hub_args("n0"), hub_args("n1"));
    let n0 = RoleProcess::hub_on_free_port(&as_strs(&n0_args)).await;
    let n1 = RoleProcess::hub_on_free_port(&as_strs(&n1_args)).await;
    let peer_dir = TempDir::new().unwrap();
    let hub_flags = [
        format!("n0={}", n0.grpc_url()),
        format!("n1={}", n1.grpc_url()),
    ];
    let mut peer_args = vec![
        "--node-id",
        "peer-a",
        "--data-dir",
        peer_dir.path().to_str().unwrap(),
        "--hub",
        &hub_flags[0],
        "--hub",
        &hub_flags[1],
    ];
    peer_args.extend_from_slice(FAST_PEER);
    let peer = RoleProcess::peer(&peer_args).await;
    for n in 1..=4 {
        publish(&n0, &format!("before-{n}")).await;
    }
    // The peer follows the hub that published (n0) first; n1 learns of the appends through
    // the store's watch and may still be behind: comparing the peer with n1 alone could catch
    // both at version 4.
    same_register(&peer, &n0).await;
    let before = same_register(&peer, &n1).await;
    assert_eq!(before["version"], 5);
    let mut conn = redis_connect(&url).await;

    // Wiped: the periodic check writes the register back before anyone publishes.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    eventually("the hubs to write the register back", CONVERGE, || async {
        let counter: Option<u64> = redis::cmd("GET")
            .arg(VERSION_KEY)
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        match counter {
            Some(5) => Ok(()),
            other => Err(format!("counter {other:?}")),
        }
    })
    .await;
    let after_wipe = publish(&n1, "after-wipe").await;
    assert_eq!(after_wipe["version"], 6, "{after_wipe}");
    // Both hubs hold version 6 (n0 read it after n1's announcement) before the store loses it:
    // a version no other hub heard of can be lost with the store (see ARCHITECTURE.md).
    eventually("n0 to hold version 6", CONVERGE, || async {
        let version = n0.system_register().await["version"].clone();
        if version == 6 {
            Ok(())
        } else {
            Err(format!("n0 at {version}"))
        }
    })
    .await;

    // Truncated: the last two acknowledged entries are lost and the counter rolled back.
    let _: () = redis::pipe()
        .cmd("HDEL")
        .arg(ENTRIES_KEY)
        .arg(5)
        .arg(6)
        .cmd("SET")
        .arg(VERSION_KEY)
        .arg(4)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Whichever hub appends first writes the lost versions back before appending.
    let after_truncation = eventually("a publication on n0 to succeed", CONVERGE, || async {
        let reply = n0
            .post_json(
                "/api/system-register/blueprints",
                json!({"blueprintId": "after-truncation", "document": {}, "publishedBy": "t"}),
            )
            .await;
        match reply.status {
            StatusCode::CREATED => Ok(reply.body),
            _ => Err(format!("{reply:?}")),
        }
    })
    .await;
    assert_eq!(
        after_truncation["version"], 7,
        "no version is issued twice: {after_truncation}"
    );
    let stored: std::collections::HashMap<u64, String> = redis::cmd("HGETALL")
        .arg(ENTRIES_KEY)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut versions: Vec<u64> = stored.keys().copied().collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=7).collect::<Vec<_>>(),
        "the store holds every version again"
    );

    let repaired = same_register(&peer, &n0).await;
    let ids = blueprint_ids(&repaired);
    for id in ["before-4", "after-wipe", "after-truncation"] {
        assert!(ids.contains(&id.to_owned()), "{id} missing: {repaired}");
    }
    let n1_view = n1.system_register().await;
    assert_eq!(
        n1_view["blueprints"], repaired["blueprints"],
        "both hubs agree"
    );
    let replica = peer.sync_status().await["replica"].clone();
    assert_eq!(
        replica["repairs"], 0,
        "the replica never diverged: {replica}"
    );
}
