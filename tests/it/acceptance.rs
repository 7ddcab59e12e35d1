//! Acceptance tests of spec 030 with the role binaries as real processes (`examples/peer.rs`,
//! `examples/register.rs`, started by `support::process`) and real `redis-server` processes,
//! in real time: crash and restart (kill -9) of the peer and of both roles, a Redis outage under
//! load, start order, changes while the peer is down, periodic reconciliation, SIGTERM, and
//! refused configuration.
//!
//! Each test starts its own processes, servers and directories, so they run in parallel.
//! Measured times are printed (`--nocapture` shows them). The same behaviours are tested on
//! paused time at actor level (`actors/tests/actors/`); these prove that the binaries, the
//! stores and HTTP put them together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::support::process::{Role, RoleProcess, expect};
use crate::support::redis::{RedisServer, connect as redis_connect, local_ads_key};
use crate::support::{as_strs, free_port, path_arg, temp_dir, wait_until};

/// SC-002: ads loaded from the store are available within this after a peer restart.
const SC002_LIMIT: Duration = Duration::from_secs(5);
/// FR-007/FR-008: a change made on the register role reaches the peer "at once": well below
/// any resync interval (300 s in those tests).
const AT_ONCE: Duration = Duration::from_secs(2);
/// Deadline of waits that depend on a retry or a periodic sync of a second or less.
const CONVERGE: Duration = Duration::from_secs(15);
/// Deadline of a health change (store checks every 200 ms in those tests).
const HEALTH_CHANGE: Duration = Duration::from_secs(10);

// ---- SC-002 / FR-002: kill -9 with 1,000 ads ----

/// SC-002, FR-001, FR-002, US1-1: a peer on Redis holding 1,000 local ads is killed with
/// SIGKILL; a new peer process on the same Redis and node id serves all 1,000 within 5 s of
/// being spawned, unverified until the register role confirms them.
#[tokio::test]
async fn sc002_peer_killed_with_1000_ads_serves_them_within_5s_on_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = ["--node-id", "sc002-redis", "--redis", &url];
    peer_restart_serves_bulk_ads("redis", &args).await;
}

/// SC-002, FR-001, FR-002, US1-1 on the embedded store (`--data-dir`, redb): same as on Redis.
#[tokio::test]
async fn sc002_peer_killed_with_1000_ads_serves_them_within_5s_on_redb() {
    let data = temp_dir("herald-sc002-");
    let dir = path_arg(data.path());
    let args = ["--node-id", "sc002-redb", "--data-dir", &dir];
    peer_restart_serves_bulk_ads("redb", &args).await;
}

async fn peer_restart_serves_bulk_ads(store: &str, args: &[&str]) {
    const ADS: u32 = 1_000;
    let mut first = RoleProcess::peer(args).await;
    let ids: Vec<String> = (0..ADS).map(|n| register_id(0x5c02, n)).collect();
    let advertisements: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| json!({"registerId": id, "isPublic": true, "name": format!("register {n}")}))
        .collect();
    let reply = first
        .post_json(
            "/api/registers/bulk-advertise",
            json!({"advertisements": advertisements, "fullSync": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["added"], json!(ADS), "{reply:?}");
    assert_eq!(reply.body["persisted"], json!(true), "{reply:?}");
    assert_eq!(first.available().await.len(), ids.len());

    first.kill9();
    let second = RoleProcess::peer(args).await;
    let spawned = second.spawned_at();
    let at_ready = second.available().await.len();
    let available = wait_until(
        "all 1,000 ads after the restart",
        SC002_LIMIT * 2,
        || async {
            let list = second.available().await;
            (list.len() == ids.len()).then_some(list)
        },
    )
    .await;
    let all_available = spawned.elapsed();
    eprintln!(
        "SC-002 [{store}]: spawn→ready {:?}, spawn→all {ADS} available {all_available:?} \
         ({at_ready} available at the first request after ready)",
        second.ready_after()
    );
    assert!(
        all_available <= SC002_LIMIT,
        "SC-002: all {ADS} ads available only after {all_available:?} (limit {SC002_LIMIT:?})"
    );
    let mut served: Vec<&str> = available
        .iter()
        .map(|register| register["registerId"].as_str().unwrap())
        .collect();
    served.sort_unstable();
    assert_eq!(served, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for register in &available {
        assert_eq!(register["verified"], json!(false), "{register}");
        assert_eq!(register["local"], json!(true), "{register}");
        assert!(register["name"].as_str().unwrap().starts_with("register "));
    }
}

// ---- FR-010: Redis killed under load ----

/// FR-010 (and the spec's edge case "Redis temporarily unavailable"): while Redis is killed
/// and then restarted empty, a peer keeps accepting every advertisement (200), reports
/// `degraded`, and once Redis is back every ad advertised before, during and after the outage
/// is in Redis, in the hash `herald:{<node-id>}:ads:local` under its register id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fr010_peer_keeps_accepting_while_redis_is_killed_and_restarted_empty() {
    const PER_PHASE: usize = 20;
    let mut redis = RedisServer::start();
    let url = redis.url();
    let peer = Arc::new(
        RoleProcess::peer(&[
            "--node-id",
            "fr010-peer",
            "--redis",
            &url,
            "--store-check-interval-ms",
            "200",
            "--store-backoff-max-ms",
            "300",
        ])
        .await,
    );
    let advertiser = Advertiser::start(Arc::clone(&peer), 0xf010);

    advertiser.wait_for(PER_PHASE).await;
    tokio::task::block_in_place(|| redis.kill());
    let killed_at = Instant::now();
    wait_until("/health degraded", HEALTH_CHANGE, || async {
        (health_status(&peer).await == "degraded").then_some(())
    })
    .await;
    eprintln!(
        "FR-010: degraded reported {:?} after Redis was killed",
        killed_at.elapsed()
    );
    let degraded_count = advertiser.count().await;
    advertiser.wait_for(degraded_count + PER_PHASE).await;

    tokio::task::block_in_place(|| redis.restart());
    let restarted_at = Instant::now();
    wait_until("/health healthy", HEALTH_CHANGE, || async {
        (health_status(&peer).await == "healthy").then_some(())
    })
    .await;
    eprintln!(
        "FR-010: healthy again {:?} after Redis restarted empty",
        restarted_at.elapsed()
    );
    let healthy_count = advertiser.count().await;
    advertiser.wait_for(healthy_count + PER_PHASE).await;
    let outcomes = advertiser.stop().await;

    let not_persisted = outcomes.iter().filter(|outcome| !outcome.persisted).count();
    eprintln!(
        "FR-010: {} advertisements accepted, {not_persisted} of them while the store was down",
        outcomes.len()
    );
    assert!(
        not_persisted > 0,
        "no advertisement was answered `persisted: false`: the outage was not observed"
    );
    let mut conn = redis_connect(&url).await;
    let mut missing = Vec::new();
    for outcome in &outcomes {
        let exists: bool = redis::cmd("HEXISTS")
            .arg(local_ads_key("fr010-peer"))
            .arg(outcome.register_id.as_str())
            .query_async(&mut conn)
            .await
            .unwrap();
        if !exists {
            missing.push(outcome.register_id.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} advertised registers are not in Redis: {missing:?}",
        missing.len(),
        outcomes.len()
    );
    assert_eq!(peer.available().await.len(), outcomes.len());
}

/// Advertises registers one by one on a peer from a background task, recording each answer;
/// any answer but 200 fails the test when it is stopped. Its register ids carry `tag`, so that
/// several advertisers can run at once.
pub(crate) struct Advertiser {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

pub(crate) struct Outcome {
    pub(crate) register_id: String,
    pub(crate) persisted: bool,
}

impl Advertiser {
    pub(crate) fn start(peer: Arc<RoleProcess>, tag: u16) -> Advertiser {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let recorded = Arc::clone(&outcomes);
        let stopping = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut n = 0;
            while !stopping.load(Ordering::Relaxed) {
                let register_id = register_id(tag, n);
                n += 1;
                let reply = peer
                    .post_json(
                        &format!("/api/registers/{register_id}/advertise"),
                        json!({"isPublic": true, "name": format!("load {n}")}),
                    )
                    .await;
                let accepted = reply.status == StatusCode::OK && reply.body["added"] == json!(1);
                let (true, Some(persisted)) = (accepted, reply.body["persisted"].as_bool()) else {
                    return Err(format!("advertise {register_id}: {reply:?}"));
                };
                recorded.lock().await.push(Outcome {
                    register_id,
                    persisted,
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        });
        Advertiser {
            outcomes,
            stop,
            task,
        }
    }

    pub(crate) async fn count(&self) -> usize {
        self.outcomes.lock().await.len()
    }

    /// Waits until `count` advertisements were accepted (fails fast if one was refused).
    pub(crate) async fn wait_for(&self, count: usize) {
        wait_until("accepted advertisements", CONVERGE, || async {
            assert!(
                !self.task.is_finished(),
                "the advertiser stopped: an advertisement failed"
            );
            (self.count().await >= count).then_some(())
        })
        .await;
    }

    pub(crate) async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(failure) = self.task.await.expect("the advertiser task") {
            panic!("an advertisement was not accepted: {failure}");
        }
        std::mem::take(&mut *self.outcomes.lock().await)
    }
}

// ---- SC-006 / US2: start order ----

/// SC-006, US2-1, US2-2, FR-003, FR-004: the register process starts first, gets 3 public and
/// 1 private register while no peer runs (its pushes fail and it retries with backoff); once
/// the peer starts on the address the register points at, the 3 public registers appear in
/// its Available Registers (and the private one does not).
#[tokio::test]
async fn sc006_register_started_before_the_peer_converges() {
    let peer_data = temp_dir("herald-sc006a-peer-");
    let register_data = temp_dir("herald-sc006a-reg-");
    let peer_port = free_port();
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let register = RoleProcess::register(&[
        "--node-id",
        "sc006a-reg",
        "--data-dir",
        &path_arg(register_data.path()),
        "--peer-url",
        &peer_url,
        "--resync-backoff-max-ms",
        "500",
    ])
    .await;
    let public = create_registers(&register, 3, Advertise::Public).await;
    create_registers(&register, 1, Advertise::Private).await;
    wait_until("the register to report retrying", CONVERGE, || async {
        let status = register.get_json("/api/sync/status").await;
        // `SyncStatus` serializes as its Rust name.
        (status.body["resync"]["status"] == json!("retrying")).then_some(())
    })
    .await;

    let peer = RoleProcess::peer_on_port(
        peer_port,
        &[
            "--node-id",
            "sc006a-peer",
            "--data-dir",
            &path_arg(peer_data.path()),
        ],
    )
    .await;
    let converged = wait_for_available(&peer, "the 3 public registers", &public, CONVERGE).await;
    let since_spawn = peer.spawned_at().elapsed();
    eprintln!(
        "SC-006 [register first]: peer spawn→ready {:?}, spawn→converged {since_spawn:?}",
        peer.ready_after()
    );
    assert_all_verified(&converged);
}

/// SC-006, US2-1, FR-003: the peer runs first; a register process starts with 3 public and 1
/// private register already in its store (created by an earlier run) and pushes them at start.
#[tokio::test]
async fn sc006_peer_started_before_the_register_converges() {
    let peer_data = temp_dir("herald-sc006b-peer-");
    let register_data = temp_dir("herald-sc006b-reg-");
    let register_args = |peer_url: &str| {
        vec![
            "--node-id".to_owned(),
            "sc006b-reg".to_owned(),
            "--data-dir".to_owned(),
            path_arg(register_data.path()),
            "--peer-url".to_owned(),
            peer_url.to_owned(),
            "--resync-backoff-max-ms".to_owned(),
            "500".to_owned(),
        ]
    };
    // An earlier run of the register role, with no peer anywhere, fills its store.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut earlier = RoleProcess::register(&as_strs(&register_args(&nowhere))).await;
    let public = create_registers(&earlier, 3, Advertise::Public).await;
    create_registers(&earlier, 1, Advertise::Private).await;
    earlier.terminate().await;

    let peer = RoleProcess::peer(&[
        "--node-id",
        "sc006b-peer",
        "--data-dir",
        &path_arg(peer_data.path()),
    ])
    .await;
    assert!(peer.available().await.is_empty());
    let register = RoleProcess::register(&as_strs(&register_args(peer.base_url()))).await;
    let converged = wait_for_available(&peer, "the 3 public registers", &public, CONVERGE).await;
    eprintln!(
        "SC-006 [peer first]: register spawn→ready {:?}, register spawn→converged {:?}",
        register.ready_after(),
        register.spawned_at().elapsed()
    );
    assert_all_verified(&converged);
}

// ---- US1-2, US1-3, US2-3, FR-007, FR-008: changes, and a delete while the peer is down ----

/// US1-2, US1-3, US2-3, FR-007, FR-008: with both processes running, a create, a flip to
/// private and a delete on the register process reach the peer at once (the resync interval
/// is 300 s). The peer is stopped (SIGTERM, exit 0); a register is deleted and another created
/// meanwhile. The restarted peer (same port, same data dir) reloads neither the private nor
/// the deleted register, and after the register's retry pushes a full sync it shows exactly
/// the right set, verified.
#[tokio::test]
async fn fr007_fr008_sc003_changes_follow_at_once_and_changes_made_while_the_peer_is_down_arrive() {
    let peer_data = temp_dir("herald-fr008-peer-");
    let register_data = temp_dir("herald-fr008-reg-");
    let peer_args = [
        "--node-id",
        "fr008-peer",
        "--data-dir",
        &path_arg(peer_data.path()),
    ];
    let mut peer = RoleProcess::peer_on_free_port(&peer_args).await;
    let peer_port = peer.http_addr().port();
    let register = RoleProcess::register(&[
        "--node-id",
        "fr008-reg",
        "--data-dir",
        &path_arg(register_data.path()),
        "--peer-url",
        peer.base_url(),
        "--resync-interval-secs",
        "300",
        "--resync-backoff-max-ms",
        "500",
    ])
    .await;

    let created = create_registers(&register, 4, Advertise::Public).await;
    let [a, b, c, d] = [&created[0], &created[1], &created[2], &created[3]];
    wait_for_available(&peer, "4 created registers", &created, AT_ONCE).await;

    expect(
        register
            .patch_json(&format!("/api/registers/{b}"), json!({"advertise": false}))
            .await,
        StatusCode::OK,
    );
    let without_b = sorted(vec![a.clone(), c.clone(), d.clone()]);
    wait_for_available(&peer, "B withdrawn (made private)", &without_b, AT_ONCE).await;

    expect(
        register.delete(&format!("/api/registers/{c}")).await,
        StatusCode::NO_CONTENT,
    );
    let without_c = sorted(vec![a.clone(), d.clone()]);
    wait_for_available(&peer, "C withdrawn (deleted)", &without_c, AT_ONCE).await;

    let stopped_in = peer.terminate().await;
    eprintln!("FR-008: peer stopped by SIGTERM in {stopped_in:?}");
    expect(
        register.delete(&format!("/api/registers/{d}")).await,
        StatusCode::NO_CONTENT,
    );
    let e = create_registers(&register, 1, Advertise::Public)
        .await
        .remove(0);

    let restarted = RoleProcess::peer_on_port(peer_port, &peer_args).await;
    // Before the register's full sync arrives the peer serves what it stored, {A, D}; after,
    // {A, E}. Either way never B (private) nor C (deleted): those left the store too.
    let reloaded = restarted.available_ids().await;
    assert!(
        reloaded.iter().all(|id| [a, d, &e].contains(&id)),
        "US1-2/US1-3: the restarted peer serves a private or deleted register: {reloaded:?} \
         (B {b}, C {c})"
    );
    let final_set = sorted(vec![a.clone(), e.clone()]);
    let converged = wait_for_available(&restarted, "D gone, E present", &final_set, CONVERGE).await;
    let served_d_first = reloaded.contains(d);
    eprintln!(
        "US2-3: restarted peer served {} at the first request; exact set {:?} after spawn",
        if served_d_first {
            "its stored {A, D}"
        } else {
            "{A, E} (full sync already in)"
        },
        restarted.spawned_at().elapsed()
    );
    assert_all_verified(&converged);
}

// ---- US3-1 / FR-006: periodic reconciliation ----

/// US3-1, FR-006, FR-011: with a resync interval of 1 s, an ad withdrawn on the peer behind
/// the register's back is advertised again by the next full sync, and a stray local ad added
/// on the peer (one the ground truth does not list, as in US3-2) is removed by it.
#[tokio::test]
async fn us3_periodic_full_sync_restores_a_lost_ad_and_removes_a_stray_one() {
    let peer_data = temp_dir("herald-us3-peer-");
    let register_data = temp_dir("herald-us3-reg-");
    let peer = RoleProcess::peer(&[
        "--node-id",
        "us3-peer",
        "--data-dir",
        &path_arg(peer_data.path()),
    ])
    .await;
    let register = RoleProcess::register(&[
        "--node-id",
        "us3-reg",
        "--data-dir",
        &path_arg(register_data.path()),
        "--peer-url",
        peer.base_url(),
        "--resync-interval-secs",
        "1",
    ])
    .await;
    let public = create_registers(&register, 2, Advertise::Public).await;
    wait_for_available(&peer, "2 public registers", &public, AT_ONCE).await;

    let lost = &public[0];
    let withdrawal = expect(
        peer.post_json(
            &format!("/api/registers/{lost}/advertise"),
            json!({"isPublic": false}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(withdrawal["removed"], json!(1), "{withdrawal}");
    let withdrawn_at = Instant::now();
    wait_for_available(&peer, "the lost ad restored", &public, CONVERGE).await;
    eprintln!(
        "US3-1: lost ad restored {:?} after it was withdrawn",
        withdrawn_at.elapsed()
    );

    let stray = register_id(0x05a7, 1);
    let addition = expect(
        peer.post_json(
            &format!("/api/registers/{stray}/advertise"),
            json!({"isPublic": true, "name": "stray"}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(addition["added"], json!(1), "{addition}");
    let added_at = Instant::now();
    let converged = wait_for_available(&peer, "the stray ad removed", &public, CONVERGE).await;
    eprintln!(
        "FR-011: stray ad removed {:?} after it was added",
        added_at.elapsed()
    );
    assert_all_verified(&converged);
}

// ---- SC-001: everything killed and restarted ----

/// SC-001, US1-1, US1-2: a register process (embedded ground truth) feeding a peer on Redis;
/// both are killed with SIGKILL and started again, the register first: the public registers
/// are listed again, verified, within 60 s of both serving (the private one never is).
#[tokio::test]
async fn sc001_both_roles_killed_and_restarted_list_every_public_register() {
    let redis = RedisServer::start();
    let url = redis.url();
    let register_data = temp_dir("herald-sc001-reg-");
    let peer_args = ["--node-id", "sc001-peer", "--redis", &url];
    let mut peer = RoleProcess::peer_on_free_port(&peer_args).await;
    let peer_port = peer.http_addr().port();
    let peer_url = peer.base_url().to_owned();
    let register_args = [
        "--node-id",
        "sc001-reg",
        "--data-dir",
        &path_arg(register_data.path()),
        "--peer-url",
        &peer_url,
        "--resync-backoff-max-ms",
        "500",
    ];
    let mut register = RoleProcess::register(&register_args).await;
    let public = create_registers(&register, 3, Advertise::Public).await;
    create_registers(&register, 1, Advertise::Private).await;
    wait_for_available(&peer, "the 3 public registers", &public, AT_ONCE).await;

    register.kill9();
    peer.kill9();
    let restarted_register = RoleProcess::register(&register_args).await;
    let restarted_peer = RoleProcess::peer_on_port(peer_port, &peer_args).await;
    wait_until("the 3 public registers, verified", CONVERGE, || async {
        let available = restarted_peer.available().await;
        let mut ids: Vec<String> = available
            .iter()
            .filter(|register| register["verified"] == json!(true))
            .map(|register| register["registerId"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        (available.len() == public.len() && ids == public).then_some(())
    })
    .await;
    let both_serving = restarted_register
        .spawned_at()
        .elapsed()
        .min(restarted_peer.spawned_at().elapsed());
    eprintln!(
        "SC-001: register spawn→ready {:?}, peer spawn→ready {:?}; verified list {both_serving:?} \
         after the later of the two spawns",
        restarted_register.ready_after(),
        restarted_peer.ready_after()
    );
    assert!(
        both_serving <= Duration::from_secs(60),
        "SC-001: {both_serving:?}"
    );
}

// ---- SIGTERM ----

/// Both role binaries answer `/health` 200 `healthy` while running, and exit 0 within 5 s of
/// SIGTERM (DESIGN §2: shutdown is explicit).
#[tokio::test]
async fn sigterm_stops_both_role_binaries_cleanly_within_5s() {
    const LIMIT: Duration = Duration::from_secs(5);
    let peer_data = temp_dir("herald-term-peer-");
    let register_data = temp_dir("herald-term-reg-");
    let mut peer = RoleProcess::peer(&[
        "--node-id",
        "term-peer",
        "--data-dir",
        &path_arg(peer_data.path()),
    ])
    .await;
    let mut register = RoleProcess::register(&[
        "--node-id",
        "term-reg",
        "--data-dir",
        &path_arg(register_data.path()),
        "--peer-url",
        peer.base_url(),
    ])
    .await;
    create_registers(&register, 1, Advertise::Public).await;
    for process in [&peer, &register] {
        wait_until("/health 200 healthy", CONVERGE, || async {
            let reply = process.get_json("/health").await;
            (reply.status == StatusCode::OK && reply.body["status"] == json!("healthy"))
                .then_some(())
        })
        .await;
    }

    let register_took = register.terminate().await;
    let peer_took = peer.terminate().await;
    eprintln!("SIGTERM: register exited 0 in {register_took:?}, peer in {peer_took:?}");
    assert!(register_took < LIMIT, "register took {register_took:?}");
    assert!(peer_took < LIMIT, "peer took {peer_took:?}");
}

// ---- bad input ----

/// Configuration errors: a binary refuses invalid input with exit code 2 and a message naming
/// the field, before it serves anything.
#[tokio::test]
async fn binaries_refuse_invalid_configuration_with_exit_code_2() {
    let data = temp_dir("herald-badcfg-");
    let dir = path_arg(data.path());
    let cases: [(Role, Vec<&str>, &str); 2] = [
        (
            Role::Peer,
            vec!["--node-id", "bad id", "--data-dir", &dir],
            "node_id",
        ),
        (
            Role::Register,
            vec![
                "--node-id",
                "reg",
                "--data-dir",
                &dir,
                "--peer-url",
                "ftp://x",
            ],
            "register.peer_url",
        ),
    ];
    for (role, args, field) in cases {
        let full_args: Vec<&str> = args
            .into_iter()
            .chain(["--http", "127.0.0.1:0", "--admin-token", "t"])
            .collect();
        let finished = RoleProcess::run_to_exit(role, &full_args).await;
        assert_eq!(finished.status.code(), Some(2), "{role:?} {finished:?}");
        assert!(
            finished.stderr.contains(field),
            "{role:?}: stderr does not name {field}: {finished:?}"
        );
        assert!(
            !finished.stdout.contains("ready"),
            "{role:?} said ready: {finished:?}"
        );
    }
}

// ---- helpers ----

/// A register id (32 lowercase hex): `tag` names the test, `n` the register.
pub(crate) fn register_id(tag: u16, n: u32) -> String {
    format!("{tag:04x}{n:028x}")
}

pub(crate) fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The `advertise` flag of a register created by a test.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Advertise {
    Public,
    Private,
}

/// Creates `count` registers (`POST /api/registers` → 201); returns their ids, sorted.
pub(crate) async fn create_registers(
    register: &RoleProcess,
    count: usize,
    kind: Advertise,
) -> Vec<String> {
    let (label, advertise) = match kind {
        Advertise::Public => ("public", true),
        Advertise::Private => ("private", false),
    };
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let body = expect(
            register
                .post_json(
                    "/api/registers",
                    json!({"name": format!("{label} {n}"), "advertise": advertise}),
                )
                .await,
            StatusCode::CREATED,
        );
        ids.push(body["registerId"].as_str().unwrap().to_owned());
    }
    sorted(ids)
}

/// Polls the peer until its available ids are exactly `expected` (sorted); returns the list.
/// Panics after `deadline` with the last list seen.
pub(crate) async fn wait_for_available(
    peer: &RoleProcess,
    what: &str,
    expected: &[String],
    deadline: Duration,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let available = peer.available().await;
        let mut ids: Vec<&str> = available
            .iter()
            .map(|register| register["registerId"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        if ids == expected {
            return available;
        }
        assert!(
            started.elapsed() <= deadline,
            "timed out after {deadline:?} waiting for {what}: expected {expected:?}, \
             available {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[track_caller]
fn assert_all_verified(available: &[Value]) {
    for register in available {
        assert_eq!(register["verified"], json!(true), "{register}");
        assert_eq!(register["local"], json!(true), "{register}");
    }
}

pub(crate) async fn health_status(process: &RoleProcess) -> String {
    let reply = process.get_json("/health").await;
    reply.body["status"].as_str().unwrap_or_default().to_owned()
}
