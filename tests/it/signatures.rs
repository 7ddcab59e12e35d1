//! Issue 10 item 4: signed system register entries, end to end with real processes. Two hub
//! processes share a Redis, each signing with its own key (PEM files made in code, as
//! `openssl genpkey -algorithm ed25519` would); a peer trusting both keys follows their
//! publications. Then a forger with write access to the shared Redis (but no hub key) adds an
//! entry whose checksum is right: the hubs take it (a checksum proves nothing against such a
//! forger) and serve it, and the trusting peer refuses it, keeps its last good version and says
//! why; a peer that trusts no key takes it, which is the difference a key makes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use herald::parts::messages::{EntrySigner, SystemRegisterEntry};

use crate::support::process::RoleProcess;
use crate::support::redis::RedisServer;
use crate::support::{as_strs, eventually};

const ENTRIES_KEY: &str = "herald:{sysreg}:entries";
const VERSION_KEY: &str = "herald:{sysreg}:version";
const APPENDED_CHANNEL: &str = "herald:{sysreg}:appended";
const CONVERGE: std::time::Duration = std::time::Duration::from_secs(20);

/// Short peer timings: a heartbeat every 200 ms, a periodic sync every 2 s.
const FAST_PEER: &[&str] = &[
    "--heartbeat-interval-ms",
    "200",
    "--missed-heartbeats",
    "2",
    "--connect-timeout-ms",
    "500",
    "--sync-interval-secs",
    "2",
];

#[tokio::test]
async fn a_forged_entry_in_the_shared_store_is_refused_by_a_peer_that_trusts_the_hubs() {
    let redis = RedisServer::start();
    let keys = TempDir::new().unwrap();
    let key_files = |name: &str, secret: u8| {
        let signer = EntrySigner::from_bytes([secret; 32]);
        let private = keys.path().join(format!("{name}.key.pem"));
        let public = keys.path().join(format!("{name}.pub.pem"));
        std::fs::write(&private, signer.to_pem()).unwrap();
        std::fs::write(&public, signer.trusted_key().to_pem()).unwrap();
        (signer, private, public)
    };
    let (n0_key, n0_private, n0_public) = key_files("n0", 10);
    let (n1_key, n1_private, n1_public) = key_files("n1", 11);
    let url = redis.url();
    let hub = |id: &str, key: &std::path::Path| {
        vec![
            "--node-id".to_owned(),
            id.to_owned(),
            "--redis".to_owned(),
            url.clone(),
            "--signing-key".to_owned(),
            key.display().to_string(),
        ]
    };
    let (n0_args, n1_args) = (hub("n0", &n0_private), hub("n1", &n1_private));
    let n0 = RoleProcess::hub_on_free_port(&as_strs(&n0_args)).await;
    let n1 = RoleProcess::hub_on_free_port(&as_strs(&n1_args)).await;
    let hub_flags = [
        format!("n0={}", n0.grpc_url()),
        format!("n1={}", n1.grpc_url()),
    ];
    let (trusting_dir, open_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let peer = |id: &'static str, dir: &TempDir, trusted: &[&std::path::Path]| {
        let mut args = vec![
            "--node-id".to_owned(),
            id.to_owned(),
            "--data-dir".to_owned(),
            dir.path().display().to_string(),
            "--hub".to_owned(),
            hub_flags[0].clone(),
            "--hub".to_owned(),
            hub_flags[1].clone(),
        ];
        for key in trusted {
            args.push("--trusted-hub-key".to_owned());
            args.push(key.display().to_string());
        }
        args.extend(FAST_PEER.iter().map(|flag| (*flag).to_owned()));
        args
    };
    let trusting_args = peer("peer-trusting", &trusting_dir, &[&n0_public, &n1_public]);
    let open_args = peer("peer-open", &open_dir, &[]);
    let trusting = RoleProcess::peer(&as_strs(&trusting_args)).await;
    let open = RoleProcess::peer(&as_strs(&open_args)).await;

    // Publications on either hub are signed by it, and the trusting peer follows them all.
    let first = publish(&n0, "on-n0").await;
    let second = publish(&n1, "on-n1").await;
    assert_eq!(first["version"], 2, "{first}");
    assert_eq!(second["version"], 3, "{second}");
    let signed_by = |entry: &Value| entry["signature"]["keyId"].as_str().map(str::to_owned);
    assert_eq!(signed_by(&first), Some(n0_key.key_id().to_string()));
    assert_eq!(signed_by(&second), Some(n1_key.key_id().to_string()));
    let seed = stored_entry(&redis, 1).await;
    assert!(
        [n0_key.key_id(), n1_key.key_id()].contains(&seed.signature.as_ref().unwrap().key_id),
        "the genesis seed is signed by the hub that created the register"
    );
    for peer in [&trusting, &open] {
        replica_at(peer, 3).await;
    }
    assert_eq!(health(&trusting).await["status"], "healthy");

    // The forger copies the entry at version 3, changes its document, recomputes the checksum
    // and appends it as version 4, unsigned; then a second forgery signed with a key nobody
    // trusts. The hubs take both: the checksums hold.
    let forger = EntrySigner::from_bytes([66; 32]);
    let mut forged = stored_entry(&redis, 3).await;
    forged.version = 4;
    forged.blueprint_id = herald::parts::messages::BlueprintId::parse("forged").unwrap();
    forged.document = r#"{"pay":"mallory"}"#.to_owned().into();
    forged.checksum = SystemRegisterEntry::checksum_of(&forged.document);
    forged.signature = None;
    write_entry(&redis, &forged).await;
    eventually("the hubs to serve the forged entry", CONVERGE, || async {
        let versions = (
            n0.system_register().await["version"].clone(),
            n1.system_register().await["version"].clone(),
        );
        if versions == (json!(4), json!(4)) {
            Ok(())
        } else {
            Err(format!("{versions:?}"))
        }
    })
    .await;

    // The trusting peer refuses it and keeps version 3, degraded, naming the entry.
    let reasons = eventually("the trusting peer to refuse", CONVERGE, || async {
        let health = health(&trusting).await;
        if health["status"] == "degraded" && health["reasons"].to_string().contains("forged") {
            Ok(health["reasons"].to_string())
        } else {
            Err(health.to_string())
        }
    })
    .await;
    assert!(
        reasons.contains("forged (version 4): unsigned") && reasons.contains("keeps version 3"),
        "{reasons}"
    );
    let replica = trusting.system_register().await;
    assert_eq!(replica["version"], 3, "{replica}");
    assert!(!blueprints(&replica).contains(&"forged".to_owned()));
    let status = trusting.sync_status().await;
    assert!(
        status["replica"]["refusedEntries"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let log = trusting.log();
    assert!(
        log.contains("refused entries") && log.contains("version 4"),
        "the refusal is logged with the hub and the version:\n{log}"
    );
    let metrics = reqwest::get(format!("{}/metrics", trusting.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_replica_refused_entries_total"),
        "{metrics}"
    );

    // The peer that trusts no key takes the forgery: checksums alone prove nothing.
    let taken = replica_at(&open, 4).await;
    assert!(blueprints(&taken).contains(&"forged".to_owned()), "{taken}");
    assert_eq!(health(&open).await["status"], "healthy");

    // Signed by a key nobody trusts: refused as well, naming the key.
    let mut resigned = forged.clone();
    resigned.version = 5;
    resigned.blueprint_id = herald::parts::messages::BlueprintId::parse("forged-too").unwrap();
    resigned.signature = Some(forger.sign(&history(&n0).await, &resigned));
    write_entry(&redis, &resigned).await;
    eventually(
        "the refusal to name the untrusted key",
        CONVERGE,
        || async {
            let reasons = health(&trusting).await["reasons"].to_string();
            if reasons.contains(&forger.key_id().to_string()) {
                Ok(())
            } else {
                Err(reasons)
            }
        },
    )
    .await;
    assert_eq!(trusting.system_register().await["version"], 3);
    replica_at(&open, 5).await;
}

async fn publish(hub: &RoleProcess, id: &str) -> Value {
    let reply = hub
        .post_json(
            "/api/system-register/blueprints",
            json!({"blueprintId": id, "document": {"id": id}, "publishedBy": "signatures"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body
}

async fn health(process: &RoleProcess) -> Value {
    process.get_json("/health").await.body
}

async fn history(hub: &RoleProcess) -> herald::parts::messages::HistoryId {
    let view = hub.system_register().await;
    herald::parts::messages::HistoryId::parse(view["historyId"].as_str().unwrap()).unwrap()
}

fn blueprints(view: &Value) -> Vec<String> {
    crate::support::process::blueprint_ids(view)
}

/// Waits until the peer's replica is at `version`; returns it.
async fn replica_at(peer: &RoleProcess, version: u64) -> Value {
    eventually("the replica to reach the version", CONVERGE, || async {
        let view = peer.system_register().await;
        if view["version"] == version {
            Ok(view)
        } else {
            Err(view.to_string())
        }
    })
    .await
}

/// The entry stored at `version` in the shared Redis.
async fn stored_entry(redis: &RedisServer, version: u64) -> SystemRegisterEntry {
    let mut conn = redis.connection().await;
    let json: String = redis::cmd("HGET")
        .arg(ENTRIES_KEY)
        .arg(version)
        .query_async(&mut conn)
        .await
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

/// Writes `entry` at its version as a forger with access to Redis would: the entry, the
/// counter, and the announcement the hubs listen to.
async fn write_entry(redis: &RedisServer, entry: &SystemRegisterEntry) {
    let mut conn = redis.connection().await;
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(ENTRIES_KEY)
        .arg(entry.version)
        .arg(serde_json::to_string(entry).unwrap())
        .cmd("SET")
        .arg(VERSION_KEY)
        .arg(entry.version)
        .cmd("PUBLISH")
        .arg(APPENDED_CHANNEL)
        .arg(entry.version)
        .query_async(&mut conn)
        .await
        .unwrap();
}
