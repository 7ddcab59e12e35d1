//! Issue 7's pool scenarios with real processes: the peer and register binaries (started by
//! `support::process`) and real `redis-server` processes, in real time.
//!
//! - Scenario A: acknowledged advertisements lost after Redis came back empty, because one
//!   write recreated the meta record and hid the loss. Here Redis is restarted empty and
//!   flushed before, during and after writes, with calls in flight, and the peer is killed
//!   (SIGKILL) afterwards: every acknowledged ad is still there.
//! - Scenario B: one full sync with a snapshot "from the future" locked the register role out
//!   for good. Here it is refused with 400, a peer that stored such a snapshot before recovers
//!   without a human, and a forged snapshot within the limits cannot lock anyone out either.
//! - The HTTP server: a client trickling its headers is disconnected, and `Expect:
//!   100-continue` with a declared body over the limit is answered 413 at once.
//!
//! Each test fails on the code before issue 7 and passes after.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald::parts::actors::TokioClock;
use herald::parts::actors::ports::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::acceptance::{
    Advertise, Advertiser, create_registers, health_status, register_id, sorted, wait_for_available,
};
use crate::support::process::{RoleProcess, TOKEN, expect};
use crate::support::redis::{RedisServer, ad_meta_key, local_ads_key};
use crate::support::{path_arg, temp_dir, wait_until};

/// Deadline of waits that depend on a check, a retry or a periodic sync of a second or less.
const CONVERGE: Duration = Duration::from_secs(15);

// ---- scenario A ----

/// How many of the local ads `ids` of `node` Redis holds, and whether it holds its meta record.
async fn held_in_redis(url: &str, node: &str, ids: &[String]) -> (usize, bool) {
    let client = redis::Client::open(url).unwrap();
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return (0, false);
    };
    let mut pipe = redis::pipe();
    pipe.cmd("HKEYS")
        .arg(local_ads_key(node))
        .cmd("EXISTS")
        .arg(ad_meta_key(node));
    let Ok((stored, meta)): Result<(HashSet<String>, bool), _> = pipe.query_async(&mut conn).await
    else {
        return (0, false);
    };
    (ids.iter().filter(|id| stored.contains(*id)).count(), meta)
}

async fn flushall(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
}

/// Waits until Redis holds every local ad of `ids` again and the meta record.
async fn wait_until_redis_holds(url: &str, node: &str, ids: &[String], what: &str) {
    wait_until(what, CONVERGE, || async {
        (held_in_redis(url, node, ids).await == (ids.len(), true)).then_some(())
    })
    .await;
}

async fn advertise_one(peer: &RoleProcess, id: &str) -> Value {
    let body = expect(
        peer.post_json(
            &format!("/api/registers/{id}/advertise"),
            json!({"isPublic": true}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(body["added"], json!(1), "{body}");
    body
}

/// Issue 7, scenario A, as reported: a peer on Redis with default settings holds 1,000 ads;
/// Redis is killed and restarted empty, then one more ad is advertised (`persisted: true`).
/// That write recreated the meta record, the store check saw nothing wrong, Redis kept 2 keys,
/// and the peer restarted after kill -9 listed 1 register instead of 1,001. The same with
/// `FLUSHALL`. Now the write itself finds the loss and writes everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_a_one_write_after_redis_lost_its_data_no_longer_hides_the_loss() {
    const NODE: &str = "scenario-a";
    const ADS: u32 = 1_000;
    let mut redis = RedisServer::start();
    let url = redis.url();
    let args = ["--node-id", NODE, "--redis", &url];
    let mut peer = RoleProcess::peer(&args).await;
    let mut ids: Vec<String> = (0..ADS).map(|n| register_id(0x5ca0, n)).collect();
    let advertisements: Vec<Value> = ids
        .iter()
        .map(|id| json!({"registerId": id, "isPublic": true}))
        .collect();
    let body = expect(
        peer.post_json(
            "/api/registers/bulk-advertise",
            json!({"advertisements": advertisements}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(
        (body["added"].clone(), body["persisted"].clone()),
        (json!(ADS), json!(true))
    );
    wait_until_redis_holds(&url, NODE, &ids, "1,000 ads in Redis").await;

    // Redis killed and restarted empty; one more advertisement.
    tokio::task::block_in_place(|| redis.restart());
    let after_restart = register_id(0x5ca1, 0);
    let body = advertise_one(&peer, &after_restart).await;
    assert_eq!(body["persisted"], json!(true), "{body}");
    ids.push(after_restart);
    wait_until_redis_holds(
        &url,
        NODE,
        &ids,
        "every acknowledged ad back in Redis after its empty restart",
    )
    .await;

    // FLUSHALL; one more advertisement.
    flushall(&url).await;
    let after_flush = register_id(0x5ca1, 1);
    let body = advertise_one(&peer, &after_flush).await;
    assert_eq!(body["persisted"], json!(true), "{body}");
    ids.push(after_flush);
    wait_until_redis_holds(
        &url,
        NODE,
        &ids,
        "every acknowledged ad back in Redis after FLUSHALL",
    )
    .await;
    assert_eq!(health_status(&peer).await, "healthy");
    let status = peer.get_json("/api/sync/status").await;
    assert_eq!(status.body["pool"]["storeRepairs"], json!(2), "{status:?}");

    peer.kill9();
    let restarted = RoleProcess::peer(&args).await;
    let expected = sorted(ids);
    wait_until("every acknowledged ad after kill -9", CONVERGE, || async {
        (restarted.available_ids().await == expected).then_some(())
    })
    .await;
}

/// Issue 7, scenario A under traffic: 930 of 999 acknowledged ads were lost when Redis was
/// flushed while writes were in flight. Three clients advertise at once; Redis is flushed once
/// after their writes (only the periodic check can notice that), then, with the clients
/// writing again, flushed, restarted empty and flushed again (the writes themselves must notice
/// those); then the peer is killed with SIGKILL and restarted. Every acknowledged ad, answered
/// `persisted: true` or `false`, is in Redis again and listed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_ads_survive_flushes_and_empty_restarts_between_during_and_after_writes() {
    const NODE: &str = "scenario-a-load";
    const PER_PHASE: usize = 30;
    let mut redis = RedisServer::start();
    let url = redis.url();
    let args = [
        "--node-id",
        NODE,
        "--redis",
        &url,
        "--store-check-interval-ms",
        "200",
        "--store-backoff-max-ms",
        "300",
    ];
    let peer = Arc::new(RoleProcess::peer(&args).await);
    let mut acknowledged = Vec::new();
    let mut not_persisted = 0;

    // After writes: nothing in flight when Redis is flushed.
    let advertisers = start_advertisers(&peer, 0xa000);
    wait_for_more(&advertisers, PER_PHASE).await;
    stop_advertisers(advertisers, &mut acknowledged, &mut not_persisted).await;
    flushall(&url).await;
    wait_until_redis_holds(
        &url,
        NODE,
        &acknowledged,
        "the ads flushed after the writes",
    )
    .await;

    // During writes: flushed, restarted empty, flushed again, with calls in flight.
    let advertisers = start_advertisers(&peer, 0xb000);
    wait_for_more(&advertisers, PER_PHASE).await;
    flushall(&url).await;
    wait_for_more(&advertisers, PER_PHASE).await;
    tokio::task::block_in_place(|| redis.restart());
    wait_for_more(&advertisers, PER_PHASE).await;
    flushall(&url).await;
    wait_for_more(&advertisers, PER_PHASE).await;
    stop_advertisers(advertisers, &mut acknowledged, &mut not_persisted).await;
    wait_until_redis_holds(
        &url,
        NODE,
        &acknowledged,
        "the ads flushed during the writes",
    )
    .await;
    eprintln!(
        "scenario A under traffic: {} ads acknowledged ({not_persisted} of them while Redis was \
         down), all in Redis again",
        acknowledged.len()
    );

    let mut peer = Arc::into_inner(peer).expect("the advertisers are gone");
    peer.kill9();
    let restarted = RoleProcess::peer(&args).await;
    let expected = sorted(acknowledged);
    wait_until("every acknowledged ad after kill -9", CONVERGE, || async {
        (restarted.available_ids().await == expected).then_some(())
    })
    .await;
}

/// Three clients advertising on `peer` at once, their register ids tagged `tag + 1..=3`.
fn start_advertisers(peer: &Arc<RoleProcess>, tag: u16) -> Vec<Advertiser> {
    (1..=3)
        .map(|n| Advertiser::start(Arc::clone(peer), tag + n))
        .collect()
}

/// Waits until each advertiser had `more` more advertisements accepted.
async fn wait_for_more(advertisers: &[Advertiser], more: usize) {
    for advertiser in advertisers {
        let count = advertiser.count().await;
        advertiser.wait_for(count + more).await;
    }
}

async fn stop_advertisers(
    advertisers: Vec<Advertiser>,
    acknowledged: &mut Vec<String>,
    not_persisted: &mut usize,
) {
    for advertiser in advertisers {
        for outcome in advertiser.stop().await {
            *not_persisted += usize::from(!outcome.persisted);
            acknowledged.push(outcome.register_id);
        }
    }
}

// ---- scenario B ----

/// A register process feeding `peer`, with a full sync every second.
async fn register_feeding(peer: &RoleProcess, node: &str, data: &std::path::Path) -> RoleProcess {
    RoleProcess::register(&[
        "--node-id",
        node,
        "--data-dir",
        &path_arg(data),
        "--peer-url",
        peer.base_url(),
        "--resync-interval-secs",
        "1",
        "--resync-backoff-max-ms",
        "500",
    ])
    .await
}

/// The register role's record of its pushes.
async fn resync_state(register: &RoleProcess) -> Value {
    let reply = register.get_json("/api/sync/status").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["resync"].clone()
}

/// Waits for `count` more successful full syncs of `register`, and asserts none failed.
async fn wait_for_full_syncs(register: &RoleProcess, count: u64) {
    let before = resync_state(register).await["successfulFullSyncs"]
        .as_u64()
        .unwrap();
    wait_until(
        "the register role's next full syncs accepted",
        CONVERGE,
        || async {
            let state = resync_state(register).await;
            assert_eq!(
                state["consecutiveFailures"],
                json!(0),
                "a full sync was refused: {state}"
            );
            let done = state["successfulFullSyncs"].as_u64().unwrap();
            (done >= before + count).then_some(())
        },
    )
    .await;
}

async fn full_sync_with(
    peer: &RoleProcess,
    ids: &[String],
    snapshot: Value,
) -> (StatusCode, Value) {
    let advertisements: Vec<Value> = ids
        .iter()
        .map(|id| json!({"registerId": id, "isPublic": true}))
        .collect();
    let reply = peer
        .post_json(
            "/api/registers/bulk-advertise",
            json!({"advertisements": advertisements, "fullSync": true, "snapshot": snapshot}),
        )
        .await;
    (reply.status, reply.body)
}

/// Issue 7, scenario B: an authenticated full sync with
/// `"snapshot":{"seq":18446744073709551615,"readAt":9223372036854775807}` was accepted and every
/// later full sync of the register role was refused (409) for good, so new public registers
/// never reached the peer. The snapshot object also took unknown fields. Now each of these is a
/// 400 naming the field, nothing changes, and the register role keeps feeding the peer.
#[tokio::test]
async fn scenario_b_a_snapshot_no_store_can_make_is_400_and_the_register_role_keeps_feeding_the_peer()
 {
    let peer_data = temp_dir("herald-scenb-peer-");
    let register_data = temp_dir("herald-scenb-reg-");
    let peer = RoleProcess::peer(&[
        "--node-id",
        "scenario-b-peer",
        "--data-dir",
        &path_arg(peer_data.path()),
    ])
    .await;
    let register = register_feeding(&peer, "scenario-b-reg", register_data.path()).await;
    let first = create_registers(&register, 1, Advertise::Public).await;
    wait_for_available(&peer, "the first public register", &first, CONVERGE).await;

    let now = TokioClock::new().now().as_unix_millis();
    let refused = [
        (
            json!({"seq": u64::MAX, "readAt": i64::MAX}),
            "snapshot.readAt",
            "ahead of this node's clock",
        ),
        (
            json!({"seq": 3, "readAt": now + 3_600_000}),
            "snapshot.readAt",
            "ahead of this node's clock",
        ),
        (
            json!({"seq": u64::MAX, "readAt": now}),
            "snapshot.seq",
            "no store reaches",
        ),
        (
            json!({"seq": 1, "readAt": now, "sequence": 2}),
            "snapshot.sequence",
            "unknown field",
        ),
    ];
    for (snapshot, field, reason) in refused {
        let (status, body) = full_sync_with(&peer, &[], snapshot.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{snapshot}: {body}");
        assert_eq!(body["field"], json!(field), "{snapshot}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{snapshot}: {body}");
    }
    assert_eq!(
        peer.available_ids().await,
        first,
        "a refused full sync changed something"
    );

    wait_for_full_syncs(&register, 2).await;
    let second = create_registers(&register, 1, Advertise::Public).await;
    let both = sorted(first.into_iter().chain(second).collect());
    wait_for_available(&peer, "a new public register", &both, CONVERGE).await;
    assert_eq!(health_status(&register).await, "healthy");
}

/// Issue 7, scenario B, recovery: a peer that accepted such a snapshot before it was refused
/// kept it in its meta record, so it survived restarts and the lockout with it. A peer starting
/// on such a store drops the stored snapshot (it is input too) and takes the register role's
/// full syncs.
#[tokio::test]
async fn scenario_b_a_peer_that_stored_a_bad_snapshot_recovers_without_a_human() {
    const NODE: &str = "scenario-b-stored";
    let redis = RedisServer::start();
    let url = redis.url();
    // The meta record a peer wrote after accepting the bad snapshot.
    let mut conn = redis.connection().await;
    let poisoned = json!({"lastSnapshot": {"seq": u64::MAX, "readAt": i64::MAX}});
    let _: () = redis::cmd("SET")
        .arg(ad_meta_key(NODE))
        .arg(poisoned.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();

    let register_data = temp_dir("herald-scenb2-reg-");
    let peer = RoleProcess::peer(&["--node-id", NODE, "--redis", &url]).await;
    let register = register_feeding(&peer, "scenario-b-stored-reg", register_data.path()).await;
    let public = create_registers(&register, 2, Advertise::Public).await;
    let available = wait_for_available(&peer, "the public registers", &public, CONVERGE).await;
    assert!(
        available.iter().all(|a| a["verified"] == json!(true)),
        "{available:?}"
    );
    wait_for_full_syncs(&register, 1).await;
    let status = peer.get_json("/api/sync/status").await;
    let applied = &status.body["pool"]["lastSnapshot"];
    assert!(
        applied["seq"].as_u64().unwrap() < 100 && applied["epoch"].is_string(),
        "{status:?}"
    );
}

/// The epoch rule: a forged snapshot within every limit (read 30 s ahead, a seq of 2^50, an
/// epoch of its own) is accepted, but it orders nothing for the register role, whose full syncs
/// carry its ground truth's epoch: they keep being accepted. Before epochs they were refused
/// (409) until the forged read time had passed.
#[tokio::test]
async fn scenario_b_a_forged_snapshot_within_the_limits_locks_nobody_out() {
    let peer_data = temp_dir("herald-scenb3-peer-");
    let register_data = temp_dir("herald-scenb3-reg-");
    let peer = RoleProcess::peer(&[
        "--node-id",
        "scenario-b-forged",
        "--data-dir",
        &path_arg(peer_data.path()),
    ])
    .await;
    let register = register_feeding(&peer, "scenario-b-forged-reg", register_data.path()).await;
    let first = create_registers(&register, 1, Advertise::Public).await;
    wait_for_available(&peer, "the first public register", &first, CONVERGE).await;

    let now = TokioClock::new().now().as_unix_millis();
    let forged = json!({"seq": 1u64 << 50, "readAt": now + 30_000, "epoch": "f".repeat(32)});
    let (status, body) = full_sync_with(&peer, &first, forged).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    wait_for_full_syncs(&register, 2).await;
    let second = create_registers(&register, 1, Advertise::Public).await;
    let both = sorted(first.into_iter().chain(second).collect());
    wait_for_available(&peer, "a new public register", &both, CONVERGE).await;
}

// ---- the HTTP server ----

/// Reads from `stream` until it closes or `deadline` passes; returns what came and whether it
/// closed.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> (String, bool) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buf[..read]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

/// Issue 7: a client that sends part of its request headers and then nothing held the
/// connection open for ever (no header read timeout). It is closed after the configured time,
/// and the server keeps serving others.
#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected_after_the_header_timeout() {
    let data = temp_dir("herald-slow-headers-");
    let peer = RoleProcess::peer(&[
        "--node-id",
        "slow-headers",
        "--data-dir",
        &path_arg(data.path()),
        "--http-header-timeout-ms",
        "500",
    ])
    .await;
    let mut stream = TcpStream::connect(peer.http_addr()).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: herald\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(closed, "the connection was still open after {took:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "closed after {took:?}, expected about 500 ms"
    );
    assert_eq!(health_status(&peer).await, "healthy");
}

/// Issue 7: `Expect: 100-continue` with a declared body over the 16 MiB limit was answered
/// `100 Continue`, inviting the upload before refusing it. It is answered 413 at once, before
/// any body byte is sent; a request within the limit still gets its `100 Continue`.
#[tokio::test]
async fn expect_100_continue_with_a_declared_body_over_the_limit_is_413_at_once() {
    let data = temp_dir("herald-expect-");
    let peer = RoleProcess::peer(&[
        "--node-id",
        "expect-continue",
        "--data-dir",
        &path_arg(data.path()),
    ])
    .await;
    let head = |length: usize| {
        format!(
            "POST /api/registers/bulk-advertise HTTP/1.1\r\nHost: herald\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        )
    };
    let mut stream = TcpStream::connect(peer.http_addr()).await.unwrap();
    stream
        .write_all(head(17 * 1024 * 1024).as_bytes())
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "expected 413 before any body byte, got {answer:?}"
    );
    assert!(answer.contains("larger than 16 MiB"), "{answer:?}");

    let body = br#"{"advertisements":[]}"#;
    let mut stream = TcpStream::connect(peer.http_addr()).await.unwrap();
    stream.write_all(head(body.len()).as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .expect("an interim answer")
        .unwrap();
    let interim = String::from_utf8_lossy(&buf[..read]).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    stream.write_all(body).await.unwrap();
    let mut rest = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut rest))
        .await
        .expect("the answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&rest[..read]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}
