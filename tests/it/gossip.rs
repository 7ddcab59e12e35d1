//! The gossip of public ads between peers (issue 9) with the role binaries as real processes
//! in a real cluster (ractor_cluster on loopback), gossiping every 100 ms: a register node
//! feeds one peer, the others see its public registers with their counts; a peer killed with
//! SIGKILL and restarted is never dropped by the others; a withdrawal reaches everyone and
//! stays gone after a partition (made by fault proxies) heals; a partition puts the peers cut
//! off from the origin in partitioned mode, and healing ends it; no private register crosses
//! the wire (the proxies see every byte between the members).
//!
//! Measured times are printed (`--nocapture` shows them).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::acceptance::{Advertise, create_registers};
use crate::cluster::{CONVERGE, Join, Node, start, start_in, until_all};
use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::process::{Role, RoleProcess, expect};
use crate::support::{eventually, free_port};

/// Short settings: rounds every 100 ms; a silent origin's ads live 5 s, an unreachable
/// one's are kept, stale, 60 s.
const GOSSIP: [&str; 8] = [
    "--gossip-interval-ms",
    "100",
    "--ad-ttl-secs",
    "5",
    "--stale-grace-ms",
    "60000",
    "--tombstone-ttl-ms",
    "60000",
];

async fn gossiping_peer(id: &str, join: &Join) -> Node {
    start(Role::Peer, id, join, &GOSSIP).await
}

/// The entry of `register` in `node`'s *Available Registers*.
async fn entry(node: &RoleProcess, register: &str) -> Option<Value> {
    node.available()
        .await
        .into_iter()
        .find(|entry| entry["registerId"] == json!(register))
}

/// Waits until `node` shows exactly `expected` (sorted ids), each with the counts
/// `counts(id)` gives (`peerCount`, `fullReplicaPeerCount`).
async fn until_shown(
    node: &RoleProcess,
    expected: &[String],
    counts: impl Fn(&str) -> (u64, u64),
) -> Duration {
    let started = Instant::now();
    let what = format!("{} to show {expected:?} with their counts", node.node_id());
    eventually(&what, CONVERGE, || async {
        let list = node.available().await;
        let mut ids: Vec<&str> = list
            .iter()
            .filter_map(|entry| entry["registerId"].as_str())
            .collect();
        ids.sort_unstable();
        if ids != expected.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(format!("{list:?}"));
        }
        for entry in &list {
            let id = entry["registerId"].as_str().unwrap_or_default();
            let seen = (
                entry["peerCount"].as_u64().unwrap_or(0),
                entry["fullReplicaPeerCount"].as_u64().unwrap_or(0),
            );
            if seen != counts(id) || entry["stale"] != json!(false) {
                return Err(format!("{list:?}"));
            }
        }
        Ok(())
    })
    .await;
    started.elapsed()
}

/// The gossip's part of `node`'s sync status.
async fn gossip_status(node: &RoleProcess) -> Value {
    node.sync_status().await["pool"]["gossip"].clone()
}

/// The partitioned header of `node`'s *Available Registers*.
async fn partitioned_header(node: &RoleProcess) -> Option<String> {
    let response = reqwest::get(format!("{}/api/registers/available", node.base_url()))
        .await
        .expect("GET /api/registers/available");
    assert_eq!(response.status(), StatusCode::OK);
    response
        .headers()
        .get("x-herald-partitioned")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Issue 9 item 6: three peers and one register node. The register node feeds peer A; B and C
/// see A's public registers (and never the private one) within a few rounds, with counts that
/// include a copy B advertises itself; A killed with SIGKILL and restarted on its data: B never
/// stops showing A's registers, and the counts come back.
#[tokio::test]
async fn peers_see_each_others_public_registers_with_counts_and_keep_them_through_a_restart() {
    let a_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let a_join = Join {
        listen: Some(a_listen),
        ..Join::default()
    };
    let a = gossiping_peer("gos-a", &a_join).await;
    let seed = [a_listen];
    let b = gossiping_peer("gos-b", &Join::seeded(&seed)).await;
    let c = gossiping_peer("gos-c", &Join::seeded(&seed)).await;
    let register = start(
        Role::Register,
        "gos-reg",
        &Join::seeded(&seed),
        &["--peer-node-id", "gos-a"],
    )
    .await;
    for (node, others) in [
        (&*a, ["gos-b", "gos-c", "gos-reg"]),
        (&*b, ["gos-a", "gos-c", "gos-reg"]),
        (&*c, ["gos-a", "gos-b", "gos-reg"]),
    ] {
        until_all(node, &others, "ready").await;
    }

    let public = create_registers(&register, 3, Advertise::Public).await;
    let private = create_registers(&register, 1, Advertise::Private).await;
    until_shown(&a, &public, |_| (1, 1)).await;
    // B serves the first one too: two sources of it everywhere, B's own answer included.
    let shared = public[0].clone();
    expect(
        b.post_json(
            &format!("/api/registers/{shared}/advertise"),
            json!({"isPublic": true, "name": "B's copy"}),
        )
        .await,
        StatusCode::OK,
    );
    let counts = |id: &str| if id == shared { (2, 2) } else { (1, 1) };
    let started = Instant::now();
    for node in [&a, &b, &c] {
        until_shown(node, &public, counts).await;
    }
    eprintln!(
        "A's 3 public registers and B's copy shown by A, B and C {:?} after B advertised",
        started.elapsed()
    );
    let on_c = entry(&c, &shared).await.expect("the shared register on C");
    assert_eq!(on_c["local"], json!(false), "{on_c}");
    assert!(!c.available_ids().await.contains(&private[0]));
    let on_b = gossip_status(&b).await;
    assert_eq!(on_b["partitioned"], json!(false), "{on_b}");
    assert_eq!(on_b["remoteAds"], json!(3), "{on_b}");

    // kill -9 A and restart it on its data: B shows A's registers all along.
    let Node { mut process, dir } = a;
    process.kill9();
    drop(process);
    let killed = Instant::now();
    assert_eq!(
        b.available_ids().await,
        public,
        "B dropped A's registers at its kill"
    );
    let mut checks = 1;
    let restart = start_in(dir, Role::Peer, "gos-a", &a_join, &GOSSIP);
    tokio::pin!(restart);
    let a = loop {
        tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_millis(10)) => {
                assert_eq!(b.available_ids().await, public, "B dropped A's registers during its restart");
                checks += 1;
            }
            a = &mut restart => break a,
        }
    };
    eprintln!(
        "A back {:?} after SIGKILL; B showed its registers at each of {checks} checks",
        killed.elapsed()
    );
    let back = Instant::now();
    // Until the counts are whole again (A's new incarnation rebuilt), and a while after.
    while back.elapsed() < Duration::from_secs(3) {
        assert_eq!(b.available_ids().await, public, "B dropped A's registers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in [&a, &b, &c] {
        until_shown(node, &public, counts).await;
    }
    let incarnation = gossip_status(&a).await["incarnation"].clone();
    eprintln!("after the restart: A gossips as incarnation {incarnation}; counts whole again");

    // C killed and restarted on its data with no member it can reach: what it had learned
    // comes back from its store (the gossip records beside its ads), not from a round. A
    // long ad TTL here: restored records live one TTL unless confirmed.
    let Node { mut process, dir } = c;
    process.kill9();
    drop(process);
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let alone = [
        "--gossip-interval-ms",
        "100",
        "--ad-ttl-secs",
        "60",
        "--stale-grace-ms",
        "120000",
        "--tombstone-ttl-ms",
        "60000",
    ];
    let c = start_in(dir, Role::Peer, "gos-c", &Join::seeded(&[nobody]), &alone).await;
    assert_eq!(
        c.available_ids().await,
        public,
        "C, restarted with nobody to hear from, forgot what the gossip had told it"
    );
}

/// Issue 9 items 2, 3, 4 and 6: every member behind a fault proxy that records what crosses
/// it. A withdrawal on A disappears from B and C; cutting every connection puts B and C in
/// partitioned mode (A's ads kept, stale; `/health` degraded, the header on *Available
/// Registers*, the status); a withdrawal on A during the cut; after the cut heals the mode
/// ends by itself and the withdrawal reaches B and C and stays; no private register ever
/// crossed a proxy.
#[tokio::test]
async fn withdrawals_stay_gone_after_a_partition_and_partitioned_mode_ends_by_itself() {
    let ports = [free_port(), free_port(), free_port()];
    let mut proxies = Vec::new();
    for port in ports {
        proxies.push(FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await);
    }
    let behind = |index: usize, seeds: &[SocketAddr]| Join {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], ports[index]))),
        advertise: Some(proxies[index].addr()),
        ..Join::seeded(seeds)
    };
    let a = gossiping_peer("wd-a", &behind(0, &[])).await;
    let b = gossiping_peer("wd-b", &behind(1, &[proxies[0].addr()])).await;
    let c = gossiping_peer("wd-c", &behind(2, &[proxies[0].addr()])).await;
    let register = start(
        Role::Register,
        "wd-reg",
        &Join::seeded(&[proxies[0].addr()]),
        &["--peer-node-id", "wd-a"],
    )
    .await;
    for (node, others) in [
        (&*a, ["wd-b", "wd-c", "wd-reg"]),
        (&*b, ["wd-a", "wd-c", "wd-reg"]),
        (&*c, ["wd-a", "wd-b", "wd-reg"]),
    ] {
        until_all(node, &others, "ready").await;
    }
    let public = create_registers(&register, 3, Advertise::Public).await;
    let private = create_registers(&register, 1, Advertise::Private).await;
    for node in [&a, &b, &c] {
        until_shown(node, &public, |_| (1, 1)).await;
    }

    // A withdrawal while everyone is connected.
    let (first, kept) = (&public[0], &public[1..]);
    let patched = register
        .patch_json(
            &format!("/api/registers/{first}"),
            json!({"advertise": false}),
        )
        .await;
    assert!(patched.status.is_success(), "{patched:?}");
    let withdrawn = Instant::now();
    for node in [&a, &b, &c] {
        until_shown(node, kept, |_| (1, 1)).await;
    }
    eprintln!(
        "a withdrawal reached B and C {:?} after it",
        withdrawn.elapsed()
    );

    // Cut every connection: B and C keep A's ads, stale, and say they are partitioned.
    for proxy in &proxies {
        proxy.set(Fault::Cut);
    }
    let cut = Instant::now();
    for node in [&b, &c] {
        eventually("partitioned mode", CONVERGE, || async {
            let status = gossip_status(node).await;
            (status["partitioned"] == json!(true))
                .then_some(())
                .ok_or_else(|| status.to_string())
        })
        .await;
        assert_eq!(
            node.available_ids().await,
            kept,
            "the stale ads were dropped"
        );
        for id in kept {
            let shown = entry(node, id).await.expect("kept");
            assert_eq!(shown["stale"], json!(true), "{shown}");
        }
        assert_eq!(partitioned_header(node).await.as_deref(), Some("true"));
        let health = node.get_json("/health").await.body;
        assert_eq!(health["status"], json!("degraded"), "{health}");
        assert!(
            health["reasons"].to_string().contains("partitioned"),
            "{health}"
        );
    }
    eprintln!("B and C partitioned {:?} after the cut", cut.elapsed());

    // A withdraws another while cut off; then the cut heals.
    let second = &kept[0];
    let reply = a
        .post_json(
            &format!("/api/registers/{second}/advertise"),
            json!({"isPublic": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    for proxy in &proxies {
        proxy.set(Fault::None);
    }
    let healed = Instant::now();
    let last = &kept[1..];
    for node in [&b, &c] {
        until_shown(node, last, |_| (1, 1)).await;
        eventually("partitioned mode to end", CONVERGE, || async {
            let status = gossip_status(node).await;
            (status["partitioned"] == json!(false) && status["staleAds"] == json!(0))
                .then_some(())
                .ok_or_else(|| status.to_string())
        })
        .await;
        assert_eq!(partitioned_header(node).await.as_deref(), Some("false"));
    }
    eprintln!(
        "healed: B and C out of partitioned mode with the withdrawal {:?} after the cut ended",
        healed.elapsed()
    );
    // Many rounds later, neither withdrawal came back anywhere.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(2) {
        for node in [&a, &b, &c] {
            assert_eq!(node.available_ids().await, last, "a withdrawn ad came back");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The proxies saw the gossip (A's public registers) and never the private register.
    let crossed = |needle: &str| {
        proxies
            .iter()
            .any(|proxy| proxy.contains(needle.as_bytes()))
    };
    assert!(crossed(&last[0]), "the recording missed the gossip");
    assert!(!crossed(&private[0]), "a private register crossed the wire");
}
