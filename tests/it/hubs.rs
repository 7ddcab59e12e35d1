//! Acceptance tests of spec 001 user story 4 with the role binaries as real processes: three hub
//! processes (`examples/hub.rs`) sharing one system register in a real `redis-server`, and peer
//! processes (`examples/peer.rs`) that dial them by fixed gRPC URLs, in real time. Hubs are
//! killed with SIGKILL and restarted on the same port; peers are killed and restarted on the
//! same data directory.
//!
//! Covered: creation and detection of the register (SC-009, FR-016, FR-017, FR-021), connection
//! in priority order (FR-026, SC-014), failover around the ring without failback (FR-035,
//! FR-036), a hung hub (SIGSTOP) passed by deadlines (decision 2), isolation and reconnection
//! (FR-030), replication and push from any hub (FR-018, FR-019, FR-033, SC-010, SC-016), 100
//! concurrent publications, incremental resume after a crash and a full sync for another history
//! (decision 3), a corrupted register refused at start (FR-022, SC-012), what hubs list as
//! their peers (FR-027, FR-031, FR-035), and a stopped peer (SIGSTOP) whose failed heartbeats
//! are excused as its own stalls while a stopped hub is still failed over (issue 7, item 5).
//!
//! Each test starts its own Redis, hubs, peers and directories, so they run in parallel.
//! Measured times are printed (`--nocapture` shows them). Peers run with short timings
//! (`FAST_PEER`: heartbeats every 200 ms, failover after 2 misses) so that a failover takes about
//! a second instead of a minute. The same behaviours are tested on paused time at actor level
//! (`actors/tests/actors/`) and over gRPC in one process (`tests/it/grpc.rs`); these prove that
//! the binaries, Redis and gRPC put them together.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::time::Instant;

use herald::parts::actors::TokioClock;
use herald::parts::actors::ports::Clock;

use crate::support::process::{Role, RoleProcess, TOKEN, blueprint_ids, expect};
use crate::support::redis::{RedisServer, connect as redis_connect};
use crate::support::{as_strs, eventually, free_port, path_arg};

/// The hubs' ids, in the peers' priority order.
const HUB_IDS: [&str; 3] = ["n0", "n1", "n2"];
/// The seeded blueprint (FR-017).
const SEED: &str = "register-creation-v1";
/// Keys of the system register in Redis (`runtime/src/stores/redis_blueprint_store.rs`, default
/// prefix `herald`).
const GENESIS_KEY: &str = "herald:{sysreg}:genesis";
const ENTRIES_KEY: &str = "herald:{sysreg}:entries";
const VERSION_KEY: &str = "herald:{sysreg}:version";
/// Peer timings: a failover in about a second, a periodic sync every 2 s.
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
/// Peer timings under which only a push (or a new session) updates the replica within a test:
/// heartbeats (which would recommend SYNC) every 30 s, periodic sync every 5 min.
const PUSH_ONLY_PEER: &[&str] = &[
    "--heartbeat-interval-ms",
    "30000",
    "--missed-heartbeats",
    "2",
    "--connect-timeout-ms",
    "500",
    "--sync-interval-secs",
    "300",
];
/// `FAST_PEER` without the periodic sync (every 5 min), so that the syncs a test counts are the
/// ones a new session starts.
const NO_PERIODIC_PEER: &[&str] = &[
    "--heartbeat-interval-ms",
    "200",
    "--missed-heartbeats",
    "2",
    "--connect-timeout-ms",
    "500",
    "--sync-interval-secs",
    "300",
];
/// SC-014: connected to a hub within this of startup.
const SC014_LIMIT: Duration = Duration::from_secs(30);
/// SC-010: the complete register replicated within this of connecting.
const SC010_LIMIT: Duration = Duration::from_secs(30);
/// SC-016: a publication pushed and applied within this.
const SC016_LIMIT: Duration = Duration::from_secs(30);
/// SC-012: startup integrity validation.
const SC012_LIMIT: Duration = Duration::from_secs(2);
/// Deadline of a failover, an isolation or a reconnection with `FAST_PEER` timings (about 1 s).
const FAILOVER: Duration = Duration::from_secs(15);
/// Deadline of a replication that a push, a heartbeat or a 2 s periodic sync brings.
const CONVERGE: Duration = Duration::from_secs(15);
/// How long a peer is watched to show that it stays where it is: 7 heartbeats of `FAST_PEER`.
const NO_FAILBACK_WINDOW: Duration = Duration::from_millis(1_500);
/// Heartbeat period and deadline of `STALL_PEER`.
const STALL_HEARTBEAT: Duration = Duration::from_millis(400);
/// Peer timings of the own-stall tests: heartbeats every 400 ms with a 400 ms deadline, failover
/// after 2 misses, a stall of 100 ms (a quarter of the deadline) excuses a failed heartbeat; no
/// periodic sync to add noise.
const STALL_PEER: &[&str] = &[
    "--heartbeat-interval-ms",
    "400",
    "--missed-heartbeats",
    "2",
    "--connect-timeout-ms",
    "500",
    "--isolated-backoff-max-ms",
    "300",
    "--sync-interval-secs",
    "300",
];

// ---- SC-009, FR-016, FR-017, FR-021: the register is created once ----

/// SC-009, FR-016, FR-017, FR-021: the first hub on an empty Redis creates the system register
/// (a history id, version 1, the seeded `register-creation-v1` published by that hub); a second
/// and a third hub started on the same Redis find it and do not create it again (same history,
/// still version 1, still one entry, the genesis still names the first hub); restarting a hub,
/// and then all three, keeps it.
#[tokio::test]
async fn sc009_first_hub_creates_the_register_and_later_hubs_and_restarts_keep_it() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut hubs = Hubs::start_one_by_one(&url).await;

    let created = hubs.hub(0).system_register().await;
    let history = created["historyId"]
        .as_str()
        .unwrap_or_else(|| panic!("no history id: {created}"))
        .to_owned();
    assert_eq!(history.len(), 32, "{created}");
    assert!(
        history.bytes().all(|b| b.is_ascii_hexdigit()) && history != "0".repeat(32),
        "{created}"
    );
    assert_eq!(created["version"], json!(1), "{created}");
    assert_eq!(created["totalBlueprints"], json!(1), "{created}");
    assert_eq!(created["blueprints"][0]["blueprintId"], json!(SEED));
    assert_eq!(created["blueprints"][0]["isActive"], json!(true));
    let seed = expect(
        hubs.hub(0)
            .get_json(&format!("/api/system-register/blueprints/{SEED}"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(seed["version"], json!(1), "{seed}");
    assert_eq!(seed["kind"], json!("published"), "{seed}");
    assert_eq!(seed["publishedBy"], json!("n0"), "{seed}");
    assert_eq!(seed["document"]["id"], json!(SEED), "{seed}");
    assert!(
        seed["checksum"].as_str().unwrap().starts_with("sha256:"),
        "{seed}"
    );
    let health = expect(hubs.hub(0).get_json("/health").await, StatusCode::OK);
    assert_eq!(
        health["hub"]["state"],
        json!({"state": "ready"}),
        "{health}"
    );

    for index in [1, 2] {
        let found = hubs.hub(index).system_register().await;
        assert_eq!(
            found, created,
            "FR-021: hub {} sees another register",
            HUB_IDS[index]
        );
        let its_seed = expect(
            hubs.hub(index)
                .get_json(&format!("/api/system-register/blueprints/{SEED}"))
                .await,
            StatusCode::OK,
        );
        assert_eq!(its_seed, seed, "FR-021: the seed was published again");
    }
    let mut redis_conn = redis_connect(&url).await;
    assert_stored_once(&mut redis_conn, &history).await;

    hubs.kill(0);
    hubs.restart(0).await;
    assert_eq!(
        hubs.hub(0).system_register().await,
        created,
        "after restarting n0"
    );
    for index in 0..3 {
        hubs.kill(index);
    }
    for index in 0..3 {
        hubs.restart(index).await;
    }
    for (index, id) in HUB_IDS.iter().enumerate() {
        assert_eq!(
            hubs.hub(index).system_register().await,
            created,
            "after restarting all hubs ({id})"
        );
    }
    assert_stored_once(&mut redis_conn, &history).await;
    eprintln!(
        "SC-009: register {history} created by n0 (ready {:?} after spawn); n1, n2 and 5 restarts \
         found it",
        hubs.hub(0).ready_after()
    );
}

/// Redis holds one genesis (by n0, with `history`), one entry and version counter 1.
async fn assert_stored_once(conn: &mut redis::aio::MultiplexedConnection, history: &str) {
    let genesis: String = redis::cmd("GET")
        .arg(GENESIS_KEY)
        .query_async(conn)
        .await
        .unwrap();
    let genesis: Value = serde_json::from_str(&genesis).unwrap();
    assert_eq!(genesis["historyId"], json!(history), "{genesis}");
    assert_eq!(genesis["createdBy"], json!("n0"), "{genesis}");
    let entries: u64 = redis::cmd("HLEN")
        .arg(ENTRIES_KEY)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(entries, 1, "the register was seeded more than once");
    let counter: u64 = redis::cmd("GET")
        .arg(VERSION_KEY)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(counter, 1);
}

// ---- FR-026, SC-014: priority order, and a dead first hub ----

/// FR-026, SC-014, FR-035: with n0 down from the start, a peer configured with n0, n1, n2 is
/// connected to n1 within 30 s of being spawned (n0 shows its failures in
/// `/api/central-nodes`). Once n0 is up, a new peer connects to n0 (priority order), and the
/// first peer stays on n1 (no failback).
#[tokio::test]
async fn sc014_peer_connects_in_priority_order_and_past_a_dead_first_hub() {
    let redis = RedisServer::start();
    let mut hubs = Hubs::start(&redis.url(), &[1, 2]).await;

    let late = Peer::new("sc014-b", &hubs, FAST_PEER);
    let peer_b = late.start().await;
    wait_connected(&peer_b, "n1", SC014_LIMIT).await;
    let to_n1 = peer_b.spawned_at().elapsed();
    eprintln!(
        "SC-014 [n0 down]: peer spawn→ready {:?}, spawn→connected to n1 {to_n1:?}",
        peer_b.ready_after()
    );
    assert!(to_n1 <= SC014_LIMIT, "SC-014: {to_n1:?}");
    let nodes = expect(peer_b.get_json("/api/central-nodes").await, StatusCode::OK);
    let ids: Vec<&str> = list(&nodes)
        .iter()
        .map(|hub| hub["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, HUB_IDS, "{nodes}");
    assert!(
        nodes[0]["consecutiveFailures"].as_u64().unwrap() >= 1,
        "n0 was not tried first: {nodes}"
    );
    assert_eq!(nodes[0]["current"], json!(false), "{nodes}");
    assert_eq!(nodes[1]["current"], json!(true), "{nodes}");
    assert_eq!(
        nodes[2]["lastAttemptAt"],
        Value::Null,
        "n2 was tried: {nodes}"
    );

    hubs.restart(0).await;
    let early = Peer::new("sc014-a", &hubs, FAST_PEER);
    let peer_a = early.start().await;
    wait_connected(&peer_a, "n0", SC014_LIMIT).await;
    let to_n0 = peer_a.spawned_at().elapsed();
    eprintln!(
        "SC-014 [all up]: peer spawn→ready {:?}, spawn→connected to n0 {to_n0:?}",
        peer_a.ready_after()
    );
    assert!(to_n0 <= SC014_LIMIT, "SC-014: {to_n0:?}");
    assert_stays_on(&peer_b, "n1", 0, NO_FAILBACK_WINDOW).await;
}

// ---- FR-035, FR-036: failover around the ring ----

/// FR-035, FR-036: a peer on n0 fails over to n1 when n0 is killed (-9); n0 comes back and the
/// peer stays on n1 (no failback); n1 killed → n2 (the next of the ring, not n0); n2 killed →
/// n0 (the ring wraps). Each failover is counted once, and the replica still follows the hub it
/// landed on.
#[tokio::test]
async fn fr035_fr036_failover_follows_the_ring_without_failback() {
    let redis = RedisServer::start();
    let mut hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    let node = Peer::new("failover", &hubs, FAST_PEER);
    let peer = node.start().await;
    wait_connected(&peer, "n0", SC014_LIMIT).await;

    let mut times = Vec::new();
    for (killed, next, failovers) in [(0, "n1", 1), (1, "n2", 2), (2, "n0", 3)] {
        let killed_at = hubs.kill(killed);
        let status = wait_connected(&peer, next, FAILOVER).await;
        let took = killed_at.elapsed();
        eprintln!(
            "FR-036: {} killed → peer on {next} after {took:?}",
            HUB_IDS[killed]
        );
        times.push(took);
        assert_eq!(status["failovers"], json!(failovers), "{status}");
        if killed == 0 {
            hubs.restart(0).await;
            assert_stays_on(&peer, "n1", 1, NO_FAILBACK_WINDOW).await;
        }
    }
    eprintln!("FR-036: failover times n0→n1, n1→n2, n2→n0: {times:?}");

    let entry = publish(hubs.hub(0), "after-failovers", json!({"ring": "done"})).await;
    wait_for_blueprint(&peer, "after-failovers", version_of(&entry), true, CONVERGE).await;
}

/// FR-036, decision 2 (SC-014 with a hung hub): a hub that accepts connections but never
/// answers (SIGSTOP) is passed by the attempt deadline: a peer started while n0 hangs connects
/// to n1; n0 resumes (SIGCONT) and the peer stays on n1; then n1 hangs under the connected peer,
/// which misses 2 heartbeats (each with its 200 ms deadline) and fails over to n2.
#[tokio::test]
async fn fr036_a_hung_hub_is_passed_by_deadlines_at_connect_and_under_heartbeats() {
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    hubs.hub(0).signal("STOP");
    let node = Peer::new("hung", &hubs, FAST_PEER);
    let peer = node.start().await;
    wait_connected(&peer, "n1", SC014_LIMIT).await;
    let past_hung = peer.spawned_at().elapsed();
    assert!(past_hung <= SC014_LIMIT, "SC-014: {past_hung:?}");
    let nodes = expect(peer.get_json("/api/central-nodes").await, StatusCode::OK);
    let n0_error = nodes[0]["lastError"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    hubs.hub(0).signal("CONT");
    assert_stays_on(&peer, "n1", 0, NO_FAILBACK_WINDOW).await;

    hubs.hub(1).signal("STOP");
    let stopped_at = Instant::now();
    let status = wait_connected(&peer, "n2", FAILOVER).await;
    let failed_over = stopped_at.elapsed();
    hubs.hub(1).signal("CONT");
    eprintln!(
        "FR-036 [hung hub]: connected to n1 {past_hung:?} after spawn with n0 stopped (n0: \
         {n0_error}); n1 stopped → peer on n2 after {failed_over:?}"
    );
    assert_eq!(status["failovers"], json!(1), "{status}");
    let nodes = expect(peer.get_json("/api/central-nodes").await, StatusCode::OK);
    assert!(
        nodes[1]["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("heartbeats missed"),
        "n1 was not left for missed heartbeats: {nodes}"
    );
    assert_stays_on(&peer, "n2", 1, NO_FAILBACK_WINDOW).await;
}

/// SC-014, decision 2, with the peer's default timings (10 s connect deadline, 2 attempts per
/// hub): a peer started while n0 accepts connections but never answers (SIGSTOP) is connected to
/// n1 within 30 s.
#[tokio::test]
async fn sc014_with_default_timings_a_silent_first_hub_is_passed_within_30s() {
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    hubs.hub(0).signal("STOP");
    let node = Peer::new("silent-default", &hubs, &[]);
    let peer = node.start().await;
    wait_connected(&peer, "n1", SC014_LIMIT).await;
    let took = peer.spawned_at().elapsed();
    let nodes = expect(peer.get_json("/api/central-nodes").await, StatusCode::OK);
    eprintln!(
        "SC-014 [defaults, n0 silent]: connected to n1 {took:?} after spawn; n0: {} attempt(s), \
         {}",
        nodes[0]["consecutiveFailures"], nodes[0]["lastError"]
    );
    assert!(took <= SC014_LIMIT, "SC-014: {took:?}");
}

/// SC-014, decision 2, as `CentralNodeConnection` now means it ("a silent hub spends its
/// budget in one deadline", `actors/src/central_node_connection.rs`, `timed_out`): a hub that
/// accepts connections but never answers (SIGSTOP) costs the ring one connect deadline, not one
/// per attempt: with a 1 s deadline and 2 attempts per hub, the peer tries n0 once, then n1.
///
/// Fails in most runs today: `GrpcHubLink::connect` (`runtime/src/grpc/client.rs`) bounds the
/// call with the same deadline (`within(deadline, …)` and the request's `grpc-timeout`), both
/// reported as `HubLinkError::Unreachable`. The three timers fall due in the same millisecond
/// tick unless the first poll of `link.connect` slips into the next one, and tokio's `Timeout`
/// polls its inner future before its own delay, so usually the link's error wins: `timed_out`
/// is false, n0 gets its second attempt, and reaching n1 takes 2 deadlines and the retry pause
/// (2.5 s here instead of 1 s; 20.5 s instead of 10.5 s with the defaults).
#[tokio::test]
async fn sc014_a_silent_first_hub_costs_one_connect_deadline_not_one_per_attempt() {
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    hubs.hub(0).signal("STOP");
    let node = Peer::new("silent-once", &hubs, &["--connect-timeout-ms", "1000"]);
    let peer = node.start().await;
    wait_connected(&peer, "n1", SC014_LIMIT).await;
    let took = peer.spawned_at().elapsed();
    let nodes = expect(peer.get_json("/api/central-nodes").await, StatusCode::OK);
    eprintln!(
        "SC-014 [1 s deadline, n0 silent]: connected to n1 {took:?} after spawn; n0: {}",
        nodes[0]
    );
    assert_eq!(
        nodes[0]["consecutiveFailures"],
        json!(1),
        "a silent n0 was tried more than once (connected to n1 after {took:?}): {nodes}"
    );
}

// ---- Issue 7, item 5: the peer's own stalls are not the hub's misses ----

/// Issue 7, item 5 (FR-036): a peer stopped (SIGSTOP) for 3 heartbeat deadlines and continued
/// keeps its hub and its session, with no failover, through six stops in five rounds
/// (`StopRound`), two of them on consecutive heartbeats. The heartbeats that were waiting when it stopped fail at its
/// resume (or are answered by a hub that answered meanwhile), and none is counted as a miss:
/// they are excused as the peer's own stalls. Regression: a failure within 1.5 × deadline + 1 s
/// of sending was a miss whatever the peer had been doing (a 1.0 s stall with a heartbeat in
/// flight was a miss in 2 of 3 tries), and two on consecutive heartbeats failed over.
#[tokio::test]
async fn issue7_a_peer_stopped_across_two_deadlines_keeps_its_hub_and_session() {
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1]).await;
    let node = Peer::new("stopped-peer", &hubs, STALL_PEER);
    let peer = node.start().await;
    let connected = wait_connected(&peer, "n0", SC014_LIMIT).await;
    let session = connected["sessionId"].clone();
    assert!(session.is_string(), "{connected}");

    let rounds = [
        StopRound::PeerAlone,
        StopRound::HubAnswersWhilePeerStopped,
        StopRound::HubSilentUntilPeerResumes,
        StopRound::HubSilentUntilPeerResumes,
        StopRound::TwiceWhileHubSilent,
    ];
    let mut report = Vec::new();
    for round in rounds {
        let acks = wait_for_ack(&peer, None).await;
        let excused_before = peer.counter("herald_heartbeat_own_stalls_total").await;
        if round != StopRound::PeerAlone {
            hubs.hub(0).signal("STOP");
            // The experiment's timing, not a wait for an outcome: while the hub is silent a
            // heartbeat is always waiting (the next goes as the last times out), and past one
            // deadline one has certainly gone out to the silent hub.
            tokio::time::sleep(STALL_HEARTBEAT + Duration::from_millis(20)).await;
        }
        peer.signal("STOP");
        if round == StopRound::HubAnswersWhilePeerStopped {
            hubs.hub(0).signal("CONT");
        }
        // How long the peer stands still, not a wait for an outcome.
        tokio::time::sleep(STALL_HEARTBEAT * 3).await;
        peer.signal("CONT");
        if round == StopRound::TwiceWhileHubSilent {
            // Long enough for the waiting heartbeat to fail and the next to go out to the
            // silent hub, too short for that one to miss its deadline.
            tokio::time::sleep(STALL_HEARTBEAT / 4).await;
            peer.signal("STOP");
            tokio::time::sleep(STALL_HEARTBEAT * 3).await;
            peer.signal("CONT");
        }
        let resumed = Instant::now();
        if matches!(
            round,
            StopRound::HubSilentUntilPeerResumes | StopRound::TwiceWhileHubSilent
        ) {
            hubs.hub(0).signal("CONT");
        }
        wait_for_ack(&peer, Some(acks)).await;
        let recovery = resumed.elapsed();
        let excused = peer.counter("herald_heartbeat_own_stalls_total").await - excused_before;
        report.push(format!(
            "{round:?}: excused {excused}, recovered in {recovery:?}"
        ));
        if matches!(
            round,
            StopRound::HubSilentUntilPeerResumes | StopRound::TwiceWhileHubSilent
        ) {
            assert!(
                excused >= 1.0,
                "{round:?}: the heartbeat that waited across the stop failed at the resume and \
                 was not excused"
            );
        }
        let status = connection(&peer).await;
        assert_eq!(status["failovers"], json!(0), "{round:?}: {status}");
    }
    assert_stays_on(&peer, "n0", 0, NO_FAILBACK_WINDOW).await;
    let status = connection(&peer).await;
    assert_eq!(status["sessionId"], session, "a new session: {status}");
    let misses = peer.counter("herald_heartbeat_misses_total").await;
    eprintln!(
        "issue 7.5 [peer stopped 3 × {STALL_HEARTBEAT:?}]: still on n0, same session, 0 \
         failovers, {misses} misses counted; SIGCONT → next heartbeat acknowledged:\n  {}",
        report.join("\n  ")
    );
}

/// How a round of `issue7_a_peer_stopped_across_two_deadlines_keeps_its_hub_and_session` stops
/// the peer. The hub, when it goes silent first, resumes with the peer unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopRound {
    /// The peer stops alone: a heartbeat is rarely in flight then.
    PeerAlone,
    /// The hub goes silent first and resumes while the peer is stopped: it answered the waiting
    /// heartbeat, but the peer was not running to hear it. At the resume the answer and the
    /// deadline race: an acknowledgement or an excused failure.
    HubAnswersWhilePeerStopped,
    /// The hub goes silent first and resumes just after the peer (a paused host): the waiting
    /// heartbeat certainly fails at the resume, and is excused.
    HubSilentUntilPeerResumes,
    /// As `HubSilentUntilPeerResumes`, with the peer stopped again just after its resume, while
    /// the next heartbeat waits for the still silent hub: two consecutive heartbeats fail across
    /// stops of the peer (the old rule counted two misses, a failover).
    TwiceWhileHubSilent,
}

/// Issue 7, item 5 (FR-036): own-stall detection does not shield a hub that is really frozen.
/// With n0 stopped (SIGSTOP) under a running peer, the peer misses 2 heartbeats and fails over to
/// n1 within its bound: the next heartbeat (one period) and two deadlines, plus scheduling slack
/// on a loaded machine.
#[tokio::test]
async fn issue7_a_stopped_hub_is_still_failed_over_within_its_bound() {
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1]).await;
    let node = Peer::new("frozen-hub", &hubs, STALL_PEER);
    let peer = node.start().await;
    wait_connected(&peer, "n0", SC014_LIMIT).await;
    wait_for_ack(&peer, None).await;

    hubs.hub(0).signal("STOP");
    let stopped_at = Instant::now();
    let status = wait_connected(&peer, "n1", FAILOVER).await;
    let took = stopped_at.elapsed();
    hubs.hub(0).signal("CONT");
    let excused = peer.counter("herald_heartbeat_own_stalls_total").await;
    let bound = STALL_HEARTBEAT * 3;
    eprintln!(
        "issue 7.5 [hub stopped]: peer on n1 after {took:?} (bound {bound:?} + slack); own \
         stalls excused meanwhile: {excused}"
    );
    assert_eq!(status["failovers"], json!(1), "{status}");
    assert!(
        took <= bound + Duration::from_secs(1),
        "failover took {took:?}, bound {bound:?}"
    );
    assert_stays_on(&peer, "n1", 1, NO_FAILBACK_WINDOW).await;
}

/// Waits until the peer has had a heartbeat acknowledged (after `after` acknowledgements, when
/// given); returns how many it has had.
async fn wait_for_ack(peer: &RoleProcess, after: Option<f64>) -> f64 {
    let what = format!("a heartbeat of {} acknowledged", peer.node_id());
    eventually(&what, FAILOVER, || async {
        let acks = peer.counter("herald_heartbeat_latency_seconds_count").await;
        if acks > after.unwrap_or(0.0) {
            Ok(acks)
        } else {
            Err(format!("{acks} acknowledged"))
        }
    })
    .await
}

// ---- FR-030: isolated, then back ----

/// FR-030: when every hub is killed the peer becomes `Isolated`, reports `/health` 200
/// `degraded`, keeps serving its replica (`/api/system-register` and a blueprint's document),
/// and keeps trying the ring with backoff; when one hub (n1) comes back the peer connects to it
/// and its next sync is a full one (after isolation the replica is checked in full).
#[tokio::test]
async fn fr030_isolated_peer_serves_its_replica_then_reconnects_with_a_full_sync() {
    let redis = RedisServer::start();
    let mut hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    let node = Peer::new("isolated", &hubs, FAST_PEER);
    let peer = node.start().await;
    wait_connected(&peer, "n0", SC014_LIMIT).await;
    let entry = publish(hubs.hub(0), "kept-while-isolated", json!({"keep": true})).await;
    wait_for_blueprint(
        &peer,
        "kept-while-isolated",
        version_of(&entry),
        true,
        CONVERGE,
    )
    .await;
    let before = replica(&peer).await;
    let full_before = before["fullSyncs"].as_u64().unwrap();

    let mut killed_at = Instant::now();
    for index in 0..3 {
        killed_at = hubs.kill(index);
    }
    eventually("the peer isolated", FAILOVER, || async {
        let status = connection(&peer).await;
        if status["state"] == "Isolated" {
            Ok(())
        } else {
            Err(status.to_string())
        }
    })
    .await;
    let isolated_after = killed_at.elapsed();
    let health = peer.get_json("/health").await;
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    assert_eq!(health.body["status"], json!("degraded"), "{health:?}");
    assert!(
        health.body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|reason| reason.as_str().unwrap().contains("isolated")),
        "{health:?}"
    );
    let served = peer.system_register().await;
    assert_eq!(served["version"], json!(version_of(&entry)), "{served}");
    assert_eq!(
        blueprint_ids(&served),
        ["kept-while-isolated", SEED],
        "{served}"
    );
    let document = expect(
        peer.get_json("/api/system-register/blueprints/kept-while-isolated")
            .await,
        StatusCode::OK,
    );
    assert_eq!(document["document"], json!({"keep": true}), "{document}");
    // FR-030: it keeps cycling the ring from the top: n0 failed once at the failover, then twice
    // in each round since the isolation; 4 means a second round reached it.
    eventually("a second round of attempts", FAILOVER, || async {
        let nodes = expect(peer.get_json("/api/central-nodes").await, StatusCode::OK);
        let n0_failures = nodes[0]["consecutiveFailures"].as_u64().unwrap_or(0);
        let state = connection(&peer).await["state"].clone();
        if n0_failures >= 4 && state == "Isolated" {
            Ok(())
        } else {
            Err(format!("{state} {nodes}"))
        }
    })
    .await;

    hubs.restart(1).await;
    let restarted_at = Instant::now();
    wait_connected(&peer, "n1", FAILOVER).await;
    let reconnected_after = restarted_at.elapsed();
    let after = eventually("the full sync after isolation", CONVERGE, || async {
        let replica = replica(&peer).await;
        if replica["fullSyncs"].as_u64().unwrap() > full_before {
            Ok(replica)
        } else {
            Err(replica.to_string())
        }
    })
    .await;
    eprintln!(
        "FR-030: isolated {isolated_after:?} after the last hub was killed; connected to n1 \
         {reconnected_after:?} after it restarted; then {}",
        after["lastSyncKind"]
    );
    assert_eq!(after["lastSyncKind"], json!("full"), "{after}");
    assert_eq!(after["fullSyncs"], json!(full_before + 1), "{after}");
    assert_eq!(
        blueprint_ids(&peer.system_register().await),
        ["kept-while-isolated", SEED]
    );
    eventually("/health healthy again", CONVERGE, || async {
        let health = peer.get_json("/health").await;
        if health.body["status"] == "healthy" {
            Ok(())
        } else {
            Err(format!("{health:?}"))
        }
    })
    .await;
}

// ---- FR-018, FR-019, FR-033, SC-016: push from any hub ----

/// FR-018, FR-019, FR-033, SC-016: a peer whose heartbeats and periodic syncs are
/// minutes apart (so only a push can bring a change in time) gets, within 30 s each: a
/// publication on its own hub (n0); a publication on another hub (n2: shared Redis, its
/// pub/sub, then n0 pushes); an update of the first blueprint on n1; a deprecation on n2.
/// `/api/system-register/blueprints/{id}` on the peer returns each document, its publisher,
/// timestamp and transaction (FR-019).
#[tokio::test]
async fn sc016_publications_updates_and_deprecations_on_any_hub_are_pushed_to_the_peer() {
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    let node = Peer::new("push", &hubs, PUSH_ONLY_PEER);
    let peer = node.start().await;
    wait_connected(&peer, "n0", SC014_LIMIT).await;
    wait_replica_version(&peer, 1, CONVERGE).await;
    // A publication before the peer's subscription reached n0 would only arrive with the next
    // heartbeat: wait until n0 counts the subscriber.
    eventually("n0 to count the peer's subscription", CONVERGE, || async {
        let subscribers = hubs.hub(0).metric("herald_hub_subscribers").await;
        if subscribers == Some(1.0) {
            Ok(())
        } else {
            Err(format!("herald_hub_subscribers {subscribers:?}"))
        }
    })
    .await;
    let clock = TokioClock::new();

    let steps: [(&str, usize, &str, Option<Value>); 4] = [
        (
            "publish on the peer's hub",
            0,
            "pushed-a",
            Some(json!({"step": 1})),
        ),
        (
            "publish on another hub",
            2,
            "pushed-b",
            Some(json!({"step": 2})),
        ),
        (
            "update on a third hub",
            1,
            "pushed-a",
            Some(json!({"step": 3})),
        ),
        ("deprecate on another hub", 2, "pushed-b", None),
    ];
    let mut delays = Vec::new();
    for (what, hub, id, document) in steps {
        let asked_at = clock.now().as_unix_millis();
        let entry = match &document {
            Some(document) => publish(hubs.hub(hub), id, document.clone()).await,
            None => expect(
                hubs.hub(hub)
                    .delete(&format!("/api/system-register/blueprints/{id}"))
                    .await,
                StatusCode::OK,
            ),
        };
        let sent = Instant::now();
        wait_for_blueprint(
            &peer,
            id,
            version_of(&entry),
            document.is_some(),
            SC016_LIMIT,
        )
        .await;
        let delay = sent.elapsed();
        eprintln!(
            "SC-016: {what} ({id} v{}) on the peer {delay:?} after the hub answered",
            version_of(&entry)
        );
        delays.push(delay);
        let held = expect(
            peer.get_json(&format!("/api/system-register/blueprints/{id}"))
                .await,
            StatusCode::OK,
        );
        for field in [
            "version",
            "kind",
            "isActive",
            "checksum",
            "transactionId",
            "publishedAt",
        ] {
            assert_eq!(
                held[field], entry[field],
                "{field}: peer {held} hub {entry}"
            );
        }
        let published_at = entry["publishedAt"].as_i64().unwrap();
        assert!(
            (asked_at - 1_000..=clock.now().as_unix_millis() + 1_000).contains(&published_at),
            "FR-019: publishedAt {published_at} is not the time of the request ({asked_at})"
        );
        assert!(!entry["transactionId"].as_str().unwrap().is_empty());
        match &document {
            Some(document) => {
                assert_eq!(held["document"], *document, "{held}");
                assert_eq!(held["publishedBy"], json!("acceptance"), "{held}");
            }
            None => {
                assert_eq!(held["kind"], json!("deprecated"), "{held}");
                assert_eq!(held["document"], json!({"step": 2}), "{held}");
            }
        }
    }
    let updated = expect(
        peer.get_json("/api/system-register/blueprints/pushed-a")
            .await,
        StatusCode::OK,
    );
    assert_eq!(updated["kind"], json!("updated"), "{updated}");
    eprintln!("SC-016: push delays (own hub, other hub, update, deprecation): {delays:?}");
    for delay in &delays {
        assert!(*delay <= SC016_LIMIT, "SC-016: {delay:?}");
    }
    let status = replica(&peer).await;
    assert_eq!(status["fullSyncs"], json!(1), "{status}");
    assert_eq!(status["lastSyncKind"], json!("incremental"), "{status}");
    let final_view = peer.system_register().await;
    assert_eq!(
        final_view,
        hubs.hub(0).system_register().await,
        "the replica differs from n0"
    );
    assert_eq!(
        final_view,
        hubs.hub(2).system_register().await,
        "the replica differs from n2"
    );
}

// ---- FR-019: 100 concurrent publications ----

/// FR-019, FR-018, SC-010: 100 publications sent at once, spread over the three hubs, get 100
/// distinct, consecutive versions (2..=101 after the seed) and distinct transactions; every hub
/// and the connected peer end with all of them; and a new peer replicates the complete register
/// within 30 s of connecting (SC-010).
#[tokio::test]
async fn fr019_100_concurrent_publications_on_three_hubs_get_consecutive_versions() {
    const COUNT: u64 = 100;
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    let node = Peer::new("concurrent", &hubs, FAST_PEER);
    let peer = node.start().await;
    wait_connected(&peer, "n0", SC014_LIMIT).await;

    let started = Instant::now();
    let entries = join_all((0..COUNT).map(|n| {
        let hub = hubs.hub(usize::try_from(n % 3).unwrap());
        async move { publish(hub, &format!("concurrent-{n:03}"), json!({"n": n})).await }
    }))
    .await;
    let published_in = started.elapsed();
    let mut versions: Vec<u64> = entries.iter().map(version_of).collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=COUNT + 1).collect::<Vec<_>>(),
        "versions are not distinct and consecutive"
    );
    let mut transactions: Vec<&str> = entries
        .iter()
        .map(|entry| entry["transactionId"].as_str().unwrap())
        .collect();
    transactions.sort_unstable();
    transactions.dedup();
    assert_eq!(
        transactions.len(),
        entries.len(),
        "a transaction id repeats"
    );

    let last = COUNT + 1;
    let at_peer = eventually("all 100 on the peer", CONVERGE, || complete(&peer, last)).await;
    let replicated_in = started.elapsed();
    for entry in &entries {
        let id = entry["blueprintId"].as_str().unwrap();
        assert_eq!(
            blueprint_version(&at_peer, id),
            Some((version_of(entry), true)),
            "{id}"
        );
    }
    for (index, id) in HUB_IDS.iter().enumerate() {
        let at_hub = eventually("all 100 on every hub", CONVERGE, || {
            complete(hubs.hub(index), last)
        })
        .await;
        assert_eq!(at_hub, at_peer, "hub {id} differs from the peer");
    }
    eprintln!(
        "FR-019: {COUNT} concurrent publications answered in {published_in:?}, all on the peer \
         {replicated_in:?} after the first was sent"
    );

    let new_node = Peer::new("newcomer", &hubs, FAST_PEER);
    let newcomer = new_node.start().await;
    wait_connected(&newcomer, "n0", SC014_LIMIT).await;
    let connected = newcomer.spawned_at().elapsed();
    let replicated = eventually("the complete register on a new peer", SC010_LIMIT, || {
        complete(&newcomer, last)
    })
    .await;
    let took = newcomer.spawned_at().elapsed();
    eprintln!(
        "SC-010: new peer connected {connected:?} and held all {last} blueprints {took:?} after \
         spawn"
    );
    assert!(took <= SC010_LIMIT, "SC-010: {took:?}");
    assert_eq!(replicated, at_peer);
    let status = replica(&newcomer).await;
    assert_eq!(status["lastSyncKind"], json!("full"), "{status}");
}

/// `Ok(view)` once a process's register view holds `last` blueprints up to version `last`.
async fn complete(process: &RoleProcess, last: u64) -> Result<Value, String> {
    let view = process.system_register().await;
    if view["version"] == json!(last) && view["totalBlueprints"] == json!(last) {
        Ok(view)
    } else {
        Err(view.to_string())
    }
}

// ---- decision 3: incremental resume after a crash ----

/// FR-018, decision 3 (DESIGN §6: the replica and its checkpoint are persisted, so a restarted
/// peer resumes incrementally): a peer holding 11 blueprints is killed with SIGKILL; 5 are
/// published meanwhile; restarted on the same data directory, it reloads its 11, then syncs
/// incrementally and receives exactly the 5 new entries, not the 16 of the register.
#[tokio::test]
async fn peer_killed_and_restarted_resumes_incrementally_with_only_the_missed_entries() {
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    let node = Peer::new("resume", &hubs, FAST_PEER);
    let mut first = node.start().await;
    wait_connected(&first, "n0", SC014_LIMIT).await;
    for n in 0..10 {
        publish(hubs.hub(0), &format!("before-{n}"), json!({"n": n})).await;
    }
    let held = wait_replica_version(&first, 11, CONVERGE).await;
    assert_eq!(held["checkpoint"]["version"], json!(11), "{held}");

    first.kill9();
    for n in 0..5 {
        publish(hubs.hub(1), &format!("while-down-{n}"), json!({"n": n})).await;
    }
    let second = node.start().await;
    // Its first answer is the reloaded replica (11) or, when the sync was quicker, all 16: never
    // an empty replica.
    let reloaded = second.system_register().await;
    assert!(
        [json!(11), json!(16)].contains(&reloaded["totalBlueprints"]),
        "the replica was not reloaded: {reloaded}"
    );
    let resumed = wait_replica_version(&second, 16, CONVERGE).await;
    eprintln!(
        "resume: restarted peer ready {:?}, at version 16 {:?} after spawn: {resumed}",
        second.ready_after(),
        second.spawned_at().elapsed()
    );
    assert_eq!(resumed["lastSyncKind"], json!("incremental"), "{resumed}");
    assert_eq!(resumed["fullSyncs"], json!(0), "{resumed}");
    assert_eq!(
        resumed["entriesReceived"],
        json!(5),
        "the restarted peer fetched more than the 5 missed entries: {resumed}"
    );
    assert_eq!(second.system_register().await["totalBlueprints"], json!(16));
}

// ---- decision 3: another history forces a full sync ----

/// Decision 3: a peer synced (4 blueprints) from hubs on one Redis is killed; the hubs are
/// killed and Redis is replaced by an empty one, so the restarted hubs create a new register
/// (another history). The restarted peer, with its old checkpoint, does a full sync (not an
/// incremental one from its old version) and ends with the new history's register only.
#[tokio::test]
async fn a_hub_with_another_history_forces_a_full_sync() {
    let mut redis = RedisServer::start();
    let mut hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    let node = Peer::new("history", &hubs, NO_PERIODIC_PEER);
    let mut first = node.start().await;
    wait_connected(&first, "n0", SC014_LIMIT).await;
    for n in 0..3 {
        publish(hubs.hub(n), &format!("old-history-{n}"), json!({"n": n})).await;
    }
    let old = wait_replica_version(&first, 4, CONVERGE).await;
    let old_history = old["checkpoint"]["historyId"].as_str().unwrap().to_owned();

    first.kill9();
    for index in 0..3 {
        hubs.kill(index);
    }
    redis.restart();
    for index in 0..3 {
        hubs.restart(index).await;
    }
    let new_history = hubs.hub(0).system_register().await["historyId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        new_history, old_history,
        "the new Redis kept the old register"
    );

    let second = node.start().await;
    let synced = eventually("a sync of the new history", CONVERGE, || async {
        let replica = replica(&second).await;
        if replica["checkpoint"]["historyId"] == json!(new_history) {
            Ok(replica)
        } else {
            Err(replica.to_string())
        }
    })
    .await;
    eprintln!(
        "history: restarted peer synced the new history {:?} after spawn: {synced}",
        second.spawned_at().elapsed()
    );
    // It did hold the old checkpoint: the full sync is due to the history, not to a lost replica.
    let log = second.log();
    assert!(
        log.lines()
            .any(|line| line.contains("replica reloaded") && line.contains("version=4")),
        "the restarted peer did not reload its replica at version 4:\n{log}"
    );
    assert_eq!(synced["lastSyncKind"], json!("full"), "{synced}");
    assert_eq!(synced["fullSyncs"], json!(1), "{synced}");
    assert_eq!(synced["incrementalSyncs"], json!(0), "{synced}");
    assert_eq!(synced["checkpoint"]["version"], json!(1), "{synced}");
    let replica_view = second.system_register().await;
    assert_eq!(replica_view["historyId"], json!(new_history));
    assert_eq!(blueprint_ids(&replica_view), [SEED], "{replica_view}");
}

// ---- FR-022, SC-012: a corrupted register is refused at start ----

/// FR-022, SC-012: a register damaged behind the hubs' back in Redis stops a hub at start: it
/// exits with code 1 within 2 s of being spawned, naming the damage, and never says ready.
/// Damages: a document changed inside a stored entry (valid JSON, checksum kept), an entry
/// removed from the middle, an entry whose version disagrees with its field, an entry that is
/// not JSON, and the genesis record removed.
#[tokio::test]
async fn sc012_a_corrupted_register_stops_the_hub_at_start_within_2s() {
    let cases: [(Damage, &str); 5] = [
        (
            Damage::Document,
            "entry 2 (blueprint damaged-a) does not match its checksum",
        ),
        (Damage::MissingEntry, "entry 2 is missing"),
        (
            Damage::VersionMismatch,
            "the record at version 3 holds an entry of version 30",
        ),
        (Damage::NotJson, "entry at version 2 does not decode"),
        (Damage::MissingGenesis, "the genesis record is missing"),
    ];
    let mut times = Vec::new();
    for (damage, expected) in cases {
        let redis = RedisServer::start();
        let url = redis.url();
        let mut hub =
            RoleProcess::hub(&["--node-id", "n0", "--redis", &url, "--grpc", "127.0.0.1:0"]).await;
        publish(&hub, "damaged-a", json!({"a": 1})).await;
        publish(&hub, "damaged-b", json!({"b": 2})).await;
        hub.kill9();
        let mut conn = redis_connect(&url).await;
        damage.apply(&mut conn).await;

        let spawned = Instant::now();
        let finished = RoleProcess::run_to_exit(
            Role::Hub,
            &[
                "--node-id",
                "n1",
                "--redis",
                &url,
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--admin-token",
                TOKEN,
            ],
        )
        .await;
        let took = spawned.elapsed();
        eprintln!(
            "SC-012 [{damage:?}]: hub exited ({}) {took:?} after spawn",
            finished.status
        );
        times.push(took);
        assert_eq!(finished.status.code(), Some(1), "{damage:?}: {finished:?}");
        assert!(
            finished.stderr.contains("system register was refused")
                && finished.stderr.contains(expected),
            "{damage:?}: stderr does not name the damage ({expected:?}): {finished:?}"
        );
        assert!(
            !finished.stdout.contains("ready"),
            "{damage:?}: {finished:?}"
        );
        assert!(took <= SC012_LIMIT, "SC-012 [{damage:?}]: {took:?}");
    }
    eprintln!("SC-012: spawn→exit 1 per damage: {times:?}");
}

/// A way to damage a register of 3 entries (the seed, `damaged-a` at 2, `damaged-b` at 3).
#[derive(Debug, Clone, Copy)]
enum Damage {
    Document,
    MissingEntry,
    VersionMismatch,
    NotJson,
    MissingGenesis,
}

impl Damage {
    async fn apply(self, conn: &mut redis::aio::MultiplexedConnection) {
        match self {
            Damage::Document => {
                edit_entry(conn, 2, |entry| {
                    assert_eq!(entry["document"], json!(r#"{"a":1}"#), "{entry}");
                    entry["document"] = json!(r#"{"a":2}"#);
                })
                .await;
            }
            Damage::VersionMismatch => {
                edit_entry(conn, 3, |entry| entry["version"] = json!(30)).await;
            }
            Damage::MissingEntry => {
                let removed: u64 = redis::cmd("HDEL")
                    .arg(ENTRIES_KEY)
                    .arg("2")
                    .query_async(conn)
                    .await
                    .unwrap();
                assert_eq!(removed, 1);
            }
            Damage::NotJson => {
                let _: () = redis::cmd("HSET")
                    .arg(ENTRIES_KEY)
                    .arg("2")
                    .arg("{not json")
                    .query_async(conn)
                    .await
                    .unwrap();
            }
            Damage::MissingGenesis => {
                let removed: u64 = redis::cmd("DEL")
                    .arg(GENESIS_KEY)
                    .query_async(conn)
                    .await
                    .unwrap();
                assert_eq!(removed, 1);
            }
        }
    }
}

/// Rewrites the stored entry at `version` (JSON in the entries HASH) with `change` applied.
async fn edit_entry(
    conn: &mut redis::aio::MultiplexedConnection,
    version: u64,
    change: impl FnOnce(&mut Value),
) {
    let stored: String = redis::cmd("HGET")
        .arg(ENTRIES_KEY)
        .arg(version)
        .query_async(conn)
        .await
        .unwrap();
    let mut entry: Value = serde_json::from_str(&stored).unwrap();
    change(&mut entry);
    let _: () = redis::cmd("HSET")
        .arg(ENTRIES_KEY)
        .arg(version)
        .arg(entry.to_string())
        .query_async(conn)
        .await
        .unwrap();
}

// ---- FR-027, FR-031, FR-035, sessions: what hubs list as their peers ----

/// `/api/hub/peers`, FR-027, FR-031, FR-035, SC-013: two peers connected to n0 are listed by n0
/// with their session ids and a `lastHeartbeatAt` that is recent and advancing; n1 and n2 list
/// no one (a peer holds one hub connection at a time); no hub ever appears as a peer. A hub
/// has no hub connection of its own: it serves no `/api/connection/status` and reports no
/// connection in `/health`. (A hub calling a hub is refused with FAILED_PRECONDITION over gRPC:
/// `grpc::a_hub_calling_a_hub_is_refused_with_failed_precondition`.)
#[tokio::test]
async fn hub_peers_lists_each_connected_peer_on_one_hub_with_recent_heartbeats_and_no_hub() {
    let redis = RedisServer::start();
    let hubs = Hubs::start(&redis.url(), &[0, 1, 2]).await;
    let (node_a, node_b) = (
        Peer::new("listed-a", &hubs, FAST_PEER),
        Peer::new("listed-b", &hubs, FAST_PEER),
    );
    let peer_a = node_a.start().await;
    let peer_b = node_b.start().await;
    let session_a = wait_connected(&peer_a, "n0", SC014_LIMIT).await["sessionId"].clone();
    let session_b = wait_connected(&peer_b, "n0", SC014_LIMIT).await["sessionId"].clone();
    let clock = TokioClock::new();

    let first = eventually(
        "n0 to list both peers with heartbeats",
        CONVERGE,
        || async {
            let peers = hub_peers(hubs.hub(0)).await;
            let ids: Vec<&str> = list(&peers)
                .iter()
                .map(|peer| peer["peerId"].as_str().unwrap())
                .collect();
            let beating = list(&peers)
                .iter()
                .all(|peer| peer["lastHeartbeatAt"].is_i64());
            if ids == ["listed-a", "listed-b"] && beating {
                Ok(peers.clone())
            } else {
                Err(peers.to_string())
            }
        },
    )
    .await;
    assert_eq!(first[0]["sessionId"], session_a, "{first}");
    assert_eq!(first[1]["sessionId"], session_b, "{first}");
    let now = clock.now().as_unix_millis();
    for peer in list(&first) {
        let age = now - peer["lastHeartbeatAt"].as_i64().unwrap();
        assert!(
            (-1_000..=2_000).contains(&age),
            "lastHeartbeatAt is {age} ms old: {peer}"
        );
        assert_eq!(peer["lastSyncVersion"], json!(1), "{peer}");
    }
    let last_seen = first[0]["lastHeartbeatAt"].as_i64().unwrap();
    eventually("a later heartbeat from listed-a", CONVERGE, || async {
        let peers = hub_peers(hubs.hub(0)).await;
        if peers[0]["lastHeartbeatAt"].as_i64().unwrap_or(0) > last_seen {
            Ok(())
        } else {
            Err(peers.to_string())
        }
    })
    .await;

    for (index, id) in HUB_IDS.iter().enumerate() {
        let hub = hubs.hub(index);
        let peers = hub_peers(hub).await;
        assert!(
            list(&peers)
                .iter()
                .all(|peer| !HUB_IDS.contains(&peer["peerId"].as_str().unwrap())),
            "FR-031: a hub is listed as a peer of {id}: {peers}"
        );
        if index > 0 {
            assert_eq!(peers, json!([]), "FR-035: {id} lists a peer");
        }
        let health = expect(hub.get_json("/health").await, StatusCode::OK);
        assert_eq!(health["roles"], json!(["hub"]), "{health}");
        assert!(health.get("connection").is_none(), "SC-013: {health}");
        let status = hub.get_json("/api/connection/status").await;
        assert_eq!(status.status, StatusCode::NOT_FOUND, "SC-013: {status:?}");
    }
    eprintln!(
        "hub peers: n0 lists listed-a and listed-b, heartbeats {} ms old when listed",
        now - last_seen
    );
}

// ---- harness ----

/// Three hubs on one Redis, each on a gRPC port fixed for the test (peers dial fixed URLs), so
/// a killed hub restarts where the peers look for it.
struct Hubs {
    redis_url: String,
    ports: [u16; 3],
    running: [Option<RoleProcess>; 3],
}

impl Hubs {
    /// Starts the hubs at `indexes` (at once) on free ports, and reserves a port for the others
    /// (started later with `restart`).
    async fn start(redis_url: &str, indexes: &[usize]) -> Hubs {
        let args: Vec<Vec<String>> = indexes
            .iter()
            .map(|&index| hub_args(index, redis_url))
            .collect();
        let started = join_all(
            args.iter()
                .map(|args| async move { RoleProcess::hub_on_free_port(&as_strs(args)).await }),
        )
        .await;
        let mut running: [Option<RoleProcess>; 3] = [None, None, None];
        for (&index, hub) in indexes.iter().zip(started) {
            running[index] = Some(hub);
        }
        let ports = std::array::from_fn(|index| {
            running[index]
                .as_ref()
                .map_or_else(free_port, |hub| hub.grpc_addr().port())
        });
        Hubs {
            redis_url: redis_url.to_owned(),
            ports,
            running,
        }
    }

    /// Starts n0, then n1, then n2, each once the previous one serves.
    async fn start_one_by_one(redis_url: &str) -> Hubs {
        let mut running: [Option<RoleProcess>; 3] = [None, None, None];
        for (index, slot) in running.iter_mut().enumerate() {
            let args = hub_args(index, redis_url);
            *slot = Some(RoleProcess::hub_on_free_port(&as_strs(&args)).await);
        }
        let ports = std::array::from_fn(|index| {
            running[index]
                .as_ref()
                .expect("every hub started")
                .grpc_addr()
                .port()
        });
        Hubs {
            redis_url: redis_url.to_owned(),
            ports,
            running,
        }
    }

    fn hub(&self, index: usize) -> &RoleProcess {
        self.running[index]
            .as_ref()
            .unwrap_or_else(|| panic!("hub {} is not running", HUB_IDS[index]))
    }

    /// Kills hub `index` with SIGKILL; returns when it is gone.
    fn kill(&mut self, index: usize) -> Instant {
        let mut hub = self.running[index]
            .take()
            .unwrap_or_else(|| panic!("hub {} is not running", HUB_IDS[index]));
        hub.kill9();
        Instant::now()
    }

    /// Starts hub `index` (again) on its port.
    async fn restart(&mut self, index: usize) {
        assert!(self.running[index].is_none(), "{} runs", HUB_IDS[index]);
        let args = hub_args(index, &self.redis_url);
        let hub = RoleProcess::hub_on_port(self.ports[index], &as_strs(&args)).await;
        self.running[index] = Some(hub);
    }

    /// `--hub n0=http://127.0.0.1:<port>` for each hub, in priority order.
    fn peer_args(&self) -> Vec<String> {
        HUB_IDS
            .iter()
            .zip(self.ports)
            .flat_map(|(id, port)| ["--hub".to_owned(), format!("{id}=http://127.0.0.1:{port}")])
            .collect()
    }
}

fn hub_args(index: usize, redis_url: &str) -> Vec<String> {
    ["--node-id", HUB_IDS[index], "--redis", redis_url]
        .map(str::to_owned)
        .to_vec()
}

/// A peer node: its arguments and its data directory, which outlive its processes. Keep it while
/// its process runs: dropping it deletes the data directory.
struct Peer {
    args: Vec<String>,
    _data: TempDir,
}

impl Peer {
    fn new(node_id: &str, hubs: &Hubs, timings: &[&str]) -> Peer {
        let data = tempfile::Builder::new()
            .prefix(&format!("herald-{node_id}-"))
            .tempdir()
            .expect("create a temporary directory");
        let mut args = vec![
            "--node-id".to_owned(),
            node_id.to_owned(),
            "--data-dir".to_owned(),
            path_arg(data.path()),
        ];
        args.extend(hubs.peer_args());
        args.extend(timings.iter().map(|arg| (*arg).to_owned()));
        Peer { args, _data: data }
    }

    async fn start(&self) -> RoleProcess {
        RoleProcess::peer(&as_strs(&self.args)).await
    }
}

/// `GET /api/connection/status` of a peer.
async fn connection(peer: &RoleProcess) -> Value {
    expect(
        peer.get_json("/api/connection/status").await,
        StatusCode::OK,
    )
}

/// Waits until `peer` is connected to hub `hub`; returns its connection status.
async fn wait_connected(peer: &RoleProcess, hub: &str, deadline: Duration) -> Value {
    let what = format!("{} connected to {hub}", peer.node_id());
    eventually(&what, deadline, || async {
        let status = connection(peer).await;
        if status["state"] == "Connected" && status["hubId"] == hub {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
    .await
}

/// Watches `peer` for `window`: it must stay connected to `hub` with `failovers` failovers.
async fn assert_stays_on(peer: &RoleProcess, hub: &str, failovers: u64, window: Duration) {
    let started = Instant::now();
    while started.elapsed() < window {
        let status = connection(peer).await;
        assert!(
            status["state"] == "Connected"
                && status["hubId"] == hub
                && status["failovers"] == json!(failovers),
            "FR-035: {} left {hub} (no failback expected): {status}",
            peer.node_id()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api/sync/status` → `replica` of a peer.
async fn replica(peer: &RoleProcess) -> Value {
    let status = expect(peer.get_json("/api/sync/status").await, StatusCode::OK);
    assert!(status["replica"].is_object(), "no replica: {status}");
    status["replica"].clone()
}

/// Waits until the peer's replica checkpoint is at `version`; returns the replica status.
async fn wait_replica_version(peer: &RoleProcess, version: u64, deadline: Duration) -> Value {
    let what = format!("{}'s replica at version {version}", peer.node_id());
    eventually(&what, deadline, || async {
        let replica = replica(peer).await;
        if replica["checkpoint"]["version"] == json!(version) && replica["syncing"] == false {
            Ok(replica)
        } else {
            Err(replica.to_string())
        }
    })
    .await
}

/// `(version, isActive)` of blueprint `id` in a register view.
fn blueprint_version(view: &Value, id: &str) -> Option<(u64, bool)> {
    list(&view["blueprints"])
        .iter()
        .find(|blueprint| blueprint["blueprintId"] == id)
        .map(|blueprint| {
            (
                blueprint["version"].as_u64().unwrap(),
                blueprint["isActive"].as_bool().unwrap(),
            )
        })
}

/// Waits until the peer's replica holds blueprint `id` at `version` (active or not).
async fn wait_for_blueprint(
    peer: &RoleProcess,
    id: &str,
    version: u64,
    active: bool,
    deadline: Duration,
) {
    let what = format!("{id} v{version} on {}", peer.node_id());
    eventually(&what, deadline, || async {
        let view = peer.system_register().await;
        if blueprint_version(&view, id) == Some((version, active)) {
            Ok(())
        } else {
            Err(view.to_string())
        }
    })
    .await;
}

/// Publishes (or updates) blueprint `id` on a hub; returns the entry (201).
async fn publish(hub: &RoleProcess, id: &str, document: Value) -> Value {
    expect(
        hub.post_json(
            "/api/system-register/blueprints",
            json!({"blueprintId": id, "document": document, "publishedBy": "acceptance"}),
        )
        .await,
        StatusCode::CREATED,
    )
}

fn version_of(entry: &Value) -> u64 {
    entry["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version: {entry}"))
}

/// `GET /api/hub/peers` of a hub.
async fn hub_peers(hub: &RoleProcess) -> Value {
    expect(hub.get_json("/api/hub/peers").await, StatusCode::OK)
}

fn list(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
}
