//! The REST API of whole in-process nodes over real HTTP on loopback, in real time: every
//! endpoint's status code and JSON shape, the admin token, the 400/404/409/413 refusals (each
//! checked to change nothing), `/health` through a store outage, and `HttpPoolLink` against a
//! real peer, alone and as the link of a register-role node feeding a peer-role node.
//!
//! Stores are the in-memory fakes; the REST handlers' pure parts are unit-tested beside them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HeaderMap, IF_NONE_MATCH, LINK,
    LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::time::Instant;

use herald::parts::actors::ports::{
    AdBatch, AdStore, PoolLink, PoolLinkError, StoreError, StoredPool,
};
use herald::parts::actors::testing::{InMemoryAdStore, InMemoryGroundTruth};
use herald::parts::messages::PoolMeta;
use herald::parts::runtime::links::HttpPoolLink;
use herald::{
    AdInput, BulkAdvertise, ChildKind, Node, NodeHandle, RawNodeConfig, RawPeerConfig,
    RawRegisterConfig, RegisterId, StoreOverrides, SyncStatus,
};

use crate::support::wait_until;

const TOKEN: &str = "t0ken";
const DEADLINE: Duration = Duration::from_secs(10);

// ---- harness ----

/// A node with in-memory stores and its REST API on a free loopback port.
struct TestNode {
    handle: NodeHandle,
    http: Http,
    store: InMemoryAdStore,
    _dir: TempDir,
}

/// Both roles, the register role feeding this node's own pool.
fn both_roles(node_id: &str) -> RawNodeConfig {
    RawNodeConfig {
        node_id: node_id.into(),
        http_addr: Some("127.0.0.1:0".into()),
        admin_token: Some(TOKEN.into()),
        peer: Some(RawPeerConfig::default()),
        register: Some(RawRegisterConfig::default()),
        ..RawNodeConfig::default()
    }
}

fn peer_only(node_id: &str) -> RawNodeConfig {
    RawNodeConfig {
        register: None,
        ..both_roles(node_id)
    }
}

fn register_only(node_id: &str, peer_url: &str) -> RawNodeConfig {
    RawNodeConfig {
        peer: None,
        register: Some(RawRegisterConfig {
            peer_url: Some(peer_url.into()),
            ..RawRegisterConfig::default()
        }),
        ..both_roles(node_id)
    }
}

impl TestNode {
    async fn start(raw: RawNodeConfig) -> Self {
        Self::start_with_metrics(raw, None).await
    }

    async fn start_with_metrics(
        raw: RawNodeConfig,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Self {
        let store = InMemoryAdStore::new();
        Self::start_on(raw, metrics, store.clone(), Arc::new(store)).await
    }

    /// A node whose pool writes through `ad_store` (which wraps `store`).
    async fn start_on(
        raw: RawNodeConfig,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
        store: InMemoryAdStore,
        ad_store: Arc<dyn AdStore>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let raw = RawNodeConfig {
            data_dir: Some(PathBuf::from(dir.path())),
            ..raw
        };
        let mut config = raw.validate().expect("valid config");
        if let Some(handle) = metrics {
            config = config.with_metrics(handle);
        }
        let overrides = StoreOverrides {
            ad_store: Some(ad_store),
            ground_truth: Some(Arc::new(InMemoryGroundTruth::new())),
            ..StoreOverrides::default()
        };
        let handle = Node::start_with(config, overrides)
            .await
            .expect("node starts");
        let addr = handle.http_addr().expect("the REST API listens");
        Self {
            http: Http::new(format!("http://{addr}")),
            handle,
            store,
            _dir: dir,
        }
    }

    /// Starts the node and waits for the resync driver's first full sync, so that it cannot
    /// land later and undo what a test advertised.
    async fn start_in_sync(raw: RawNodeConfig) -> Self {
        let node = Self::start(raw).await;
        node.wait_in_sync().await;
        node
    }

    async fn wait_in_sync(&self) {
        wait_until("the first full sync", DEADLINE, || async {
            let state = self.handle.sync_state().await.ok()?;
            (state.status == SyncStatus::InSync).then_some(())
        })
        .await;
    }

    /// Stops the node; every actor stopped by itself.
    async fn stop(self) {
        let report = self.handle.shutdown().await;
        assert!(report.killed.is_empty(), "{report:?}");
    }

    /// What a rejected request must leave alone: available registers, registers, pool counts.
    async fn observable_state(&self) -> Value {
        let api = self.handle.api();
        let available = match api.available().await {
            Ok(list) => serde_json::to_value(list).unwrap(),
            Err(_) => Value::Null,
        };
        let registers = match api.list_registers().await {
            Ok(list) => serde_json::to_value(list).unwrap(),
            Err(_) => Value::Null,
        };
        let pool = match api.pool_status().await {
            Ok(status) => json!([status.local_ads, status.remote_ads, status.last_snapshot]),
            Err(_) => Value::Null,
        };
        json!({ "available": available, "registers": registers, "pool": pool })
    }
}

/// A REST client of one node; sends the admin token unless told otherwise.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base: String,
}

/// A response: status, headers, and the body as JSON (`null` when empty).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Http {
    fn new(base: String) -> Self {
        Self {
            client: reqwest::Client::new(),
            base,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send_as(Method::GET, path, None, None).await
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> Answer {
        self.send_as(method, path, Some(TOKEN), Some(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send_as(Method::DELETE, path, Some(TOKEN), None).await
    }

    async fn send_as(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.expect("request sent")).await
    }

    /// A POST with the token and exactly this content type (or none) and body.
    async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        answer(request.send().await.expect("request sent")).await
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    Answer {
        status,
        headers,
        body,
        text,
    }
}

impl Answer {
    /// Asserts a JSON error: the status, a reason containing `reason`, and the field if any.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, field: Option<&str>, reason: &str) {
        assert_eq!(self.status, status, "{self:?}");
        let content_type = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/json"), "{self:?}");
        let error = self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text: {self:?}"));
        assert!(error.contains(reason), "expected {reason:?} in {error:?}");
        assert_eq!(self.body["field"].as_str(), field, "{self:?}");
    }

    #[track_caller]
    fn assert_ok(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{self:?}");
        &self.body
    }
}

fn register_id(n: u16) -> RegisterId {
    let mut bytes = [0xa0; 16];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    RegisterId::from_bytes(bytes)
}

fn ad(n: u16) -> Value {
    json!({
        "registerId": register_id(n).to_string(),
        "name": format!("register {n}"),
        "isPublic": true,
        "latestVersion": 1,
        "latestDocketVersion": 0,
    })
}

fn available_ids(body: &Value) -> Vec<String> {
    body.as_array()
        .expect("an array")
        .iter()
        .map(|entry| entry["registerId"].as_str().expect("registerId").to_owned())
        .collect()
}

// ---- peer role ----

#[tokio::test]
async fn peer_endpoints_advertise_update_withdraw_and_list() {
    let node = TestNode::start_in_sync(both_roles("rest-peer")).await;
    let http = &node.http;

    let bulk = http
        .send(
            Method::POST,
            "/api/registers/bulk-advertise",
            json!({ "advertisements": [ad(1), ad(2)], "fullSync": false }),
        )
        .await;
    assert_eq!(
        bulk.assert_ok(StatusCode::OK),
        &json!({"processed": 2, "added": 2, "updated": 0, "unchanged": 0, "removed": 0, "persisted": true})
    );

    let available = http.get("/api/registers/available").await;
    let listed = available.assert_ok(StatusCode::OK);
    assert_eq!(
        available_ids(listed),
        [register_id(1).to_string(), register_id(2).to_string()]
    );
    let first = &listed[0];
    for field in [
        "registerId",
        "name",
        "description",
        "peerCount",
        "latestVersion",
        "latestDocketVersion",
        "isPublic",
        "fullReplicaPeerCount",
        "local",
        "verified",
    ] {
        assert!(first.get(field).is_some(), "{field} missing from {first}");
    }
    assert_eq!(first["name"], "register 1");
    assert_eq!(first["local"], true);
    assert_eq!(first["peerCount"], 1);

    let one = format!("/api/registers/{}/advertise", register_id(1));
    let updated = http
        .send(
            Method::POST,
            &one,
            json!({"isPublic": true, "name": "renamed", "latestVersion": 5}),
        )
        .await;
    assert_eq!(updated.assert_ok(StatusCode::OK)["updated"], 1);
    let available = http.get("/api/registers/available").await;
    assert_eq!(available.body[0]["name"], "renamed");
    assert_eq!(available.body[0]["latestVersion"], 5);

    let withdrawn = http
        .send(Method::POST, &one, json!({"isPublic": false}))
        .await;
    assert_eq!(withdrawn.assert_ok(StatusCode::OK)["processed"], 1);
    let available = http.get("/api/registers/available").await;
    assert_eq!(available_ids(&available.body), [register_id(2).to_string()]);

    node.stop().await;
}

#[tokio::test]
async fn fr011_an_empty_full_sync_removes_every_local_ad() {
    let node = TestNode::start(peer_only("rest-full-sync")).await;
    let http = &node.http;
    let bulk = http
        .send(
            Method::POST,
            "/api/registers/bulk-advertise",
            json!({ "advertisements": [ad(1), ad(2), ad(3)] }),
        )
        .await;
    assert_eq!(bulk.assert_ok(StatusCode::OK)["added"], 3);

    let sync = http
        .send(
            Method::POST,
            "/api/registers/bulk-advertise",
            json!({ "advertisements": [], "fullSync": true }),
        )
        .await;
    assert_eq!(sync.assert_ok(StatusCode::OK)["removed"], 3);
    let available = http.get("/api/registers/available").await;
    assert_eq!(available.assert_ok(StatusCode::OK), &json!([]));
    assert!(node.store.stored().is_empty(), "removed from the store too");

    node.stop().await;
}

/// The largest request allowed, with a description on every item, fits under the body limit.
#[tokio::test]
async fn fr005_ten_thousand_items_fit_in_one_request() {
    let node = TestNode::start(peer_only("rest-ten-thousand")).await;
    let advertisements: Vec<Value> = (0..10_000)
        .map(|n| {
            let mut item = ad(n);
            item["description"] = json!("d".repeat(200));
            item
        })
        .collect();
    let bulk = node
        .http
        .send(
            Method::POST,
            "/api/registers/bulk-advertise",
            json!({ "advertisements": advertisements, "fullSync": true }),
        )
        .await;
    let outcome = bulk.assert_ok(StatusCode::OK);
    assert_eq!(
        (outcome["processed"].as_u64(), outcome["added"].as_u64()),
        (Some(10_000), Some(10_000))
    );
    let available = node.http.get("/api/registers/available").await;
    assert_eq!(available.body.as_array().map(Vec::len), Some(10_000));
    node.stop().await;
}

#[tokio::test]
async fn a_stale_snapshot_is_409_and_changes_nothing() {
    let node = TestNode::start(peer_only("rest-stale")).await;
    let http = &node.http;
    let newer = http
        .send(
            Method::POST,
            "/api/registers/bulk-advertise",
            json!({ "advertisements": [ad(1)], "fullSync": true, "snapshot": {"seq": 10, "readAt": 2_000} }),
        )
        .await;
    assert_eq!(newer.assert_ok(StatusCode::OK)["added"], 1);
    let before = node.observable_state().await;

    let older = http
        .send(
            Method::POST,
            "/api/registers/bulk-advertise",
            json!({ "advertisements": [ad(2)], "fullSync": true, "snapshot": {"seq": 5, "readAt": 1_000} }),
        )
        .await;
    older.assert_error(
        StatusCode::CONFLICT,
        Some("snapshot.seq"),
        "stale full-sync snapshot 5",
    );
    assert_eq!(node.observable_state().await, before);

    node.stop().await;
}

// ---- register role ----

#[tokio::test]
async fn register_crud_answers_201_200_204_404_409() {
    let node = TestNode::start_in_sync(both_roles("rest-crud")).await;
    let http = &node.http;
    let id = register_id(7).to_string();
    let path = format!("/api/registers/{id}");

    let created = http
        .send(
            Method::POST,
            "/api/registers",
            json!({"registerId": id, "name": "orders", "description": "all orders", "advertise": true, "latestVersion": 3}),
        )
        .await;
    let register = created.assert_ok(StatusCode::CREATED).clone();
    assert_eq!(register["registerId"], id.as_str());
    assert_eq!(register["latestVersion"], 3);
    assert_eq!(register["advertise"], true);
    assert!(
        register["createdAt"].is_i64() && register["revision"].is_u64(),
        "{register}"
    );
    assert_eq!(
        created.headers.get(LOCATION).and_then(|v| v.to_str().ok()),
        Some(path.as_str())
    );

    let random = http
        .send(
            Method::POST,
            "/api/registers",
            json!({"name": "drawn id", "advertise": false}),
        )
        .await;
    let random_id = random.assert_ok(StatusCode::CREATED)["registerId"]
        .as_str()
        .expect("an id was drawn")
        .to_owned();
    RegisterId::parse(&random_id).expect("a well-formed id");

    let duplicate = http
        .send(
            Method::POST,
            "/api/registers",
            json!({"registerId": id, "name": "again", "advertise": false}),
        )
        .await;
    duplicate.assert_error(StatusCode::CONFLICT, Some("registerId"), "already exists");

    assert_eq!(http.get(&path).await.assert_ok(StatusCode::OK), &register);
    let listed = http.get("/api/registers").await;
    assert_eq!(
        listed.assert_ok(StatusCode::OK).as_array().map(Vec::len),
        Some(2)
    );

    // The driver pushes the public register to this node's pool.
    wait_until("the public register in available", DEADLINE, || async {
        let available = http.get("/api/registers/available").await;
        available_ids(&available.body).contains(&id).then_some(())
    })
    .await;

    let patched = http
        .send(
            Method::PATCH,
            &path,
            json!({"name": "orders-v2", "latestVersion": 4}),
        )
        .await;
    let patched = patched.assert_ok(StatusCode::OK);
    assert_eq!(patched["name"], "orders-v2");
    assert_eq!(patched["description"], "all orders");

    let regression = http
        .send(Method::PATCH, &path, json!({"latestVersion": 1}))
        .await;
    regression.assert_error(
        StatusCode::BAD_REQUEST,
        Some("latestVersion"),
        "may not go backwards",
    );

    http.delete(&path).await.assert_ok(StatusCode::NO_CONTENT);
    http.get(&path)
        .await
        .assert_error(StatusCode::NOT_FOUND, None, "not found");
    http.delete(&path)
        .await
        .assert_error(StatusCode::NOT_FOUND, None, "not found");
    http.send(Method::PATCH, &path, json!({"name": "ghost"}))
        .await
        .assert_error(StatusCode::NOT_FOUND, None, "not found");
    wait_until("the deleted register withdrawn", DEADLINE, || async {
        let available = http.get("/api/registers/available").await;
        (!available_ids(&available.body).contains(&id)).then_some(())
    })
    .await;

    node.stop().await;
}

// ---- refusals ----

#[tokio::test]
async fn mutations_without_the_admin_token_are_401_and_change_nothing() {
    let node = TestNode::start_in_sync(both_roles("rest-auth")).await;
    let http = &node.http;
    let id = register_id(1).to_string();
    let before = node.observable_state().await;
    let requests = [
        (
            Method::POST,
            "/api/registers/bulk-advertise".to_owned(),
            Some(json!({"advertisements": [ad(1)]})),
        ),
        (
            Method::POST,
            format!("/api/registers/{id}/advertise"),
            Some(json!({"isPublic": true})),
        ),
        (
            Method::POST,
            "/api/registers".to_owned(),
            Some(json!({"registerId": id, "name": "x", "advertise": true})),
        ),
        (
            Method::PATCH,
            format!("/api/registers/{id}"),
            Some(json!({"name": "y"})),
        ),
        (Method::DELETE, format!("/api/registers/{id}"), None),
    ];
    for (method, path, body) in requests {
        for token in [None, Some("wrong"), Some("t0ke"), Some("T0KEN")] {
            let refused = http
                .send_as(method.clone(), &path, token, body.clone())
                .await;
            let reason = if token.is_none() {
                "missing"
            } else {
                "invalid bearer token"
            };
            refused.assert_error(StatusCode::UNAUTHORIZED, None, reason);
            assert_eq!(
                refused
                    .headers
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer"),
                "{method} {path}"
            );
        }
    }
    assert_eq!(node.observable_state().await, before);

    // Reads are open.
    for path in [
        "/api/registers/available",
        "/api/registers",
        "/api/sync/status",
        "/health",
    ] {
        assert_eq!(http.get(path).await.status, StatusCode::OK, "{path}");
    }

    node.stop().await;
}

#[tokio::test]
async fn invalid_requests_are_400_json_and_change_nothing() {
    let node = TestNode::start_in_sync(both_roles("rest-invalid")).await;
    let http = &node.http;
    let seeded = http
        .send(
            Method::POST,
            "/api/registers/bulk-advertise",
            json!({"advertisements": [ad(1)]}),
        )
        .await;
    seeded.assert_ok(StatusCode::OK);
    let before = node.observable_state().await;
    let bulk = "/api/registers/bulk-advertise";
    let id_rule = "must be 32 lowercase hexadecimal characters";

    let too_many: Vec<Value> = (0..10_001).map(ad).collect();
    let duplicates = json!({"advertisements": [ad(2), ad(3), ad(2)]});
    let cases: Vec<(Method, String, Value, Option<&str>, &str)> = vec![
        // A bad register id in the path.
        (
            Method::POST,
            "/api/registers/NOT-AN-ID/advertise".into(),
            json!({"isPublic": true}),
            Some("registerId"),
            id_rule,
        ),
        (
            Method::PATCH,
            "/api/registers/0123".into(),
            json!({"name": "x"}),
            Some("registerId"),
            id_rule,
        ),
        // A bad register id in the body.
        (
            Method::POST,
            bulk.into(),
            json!({"advertisements": [{"registerId": "ABC", "isPublic": true}]}),
            Some("advertisements[0].registerId"),
            id_rule,
        ),
        (
            Method::POST,
            "/api/registers".into(),
            json!({"registerId": "xyz", "name": "n", "advertise": true}),
            Some("registerId"),
            id_rule,
        ),
        // Unknown fields and wrong types.
        (
            Method::POST,
            bulk.into(),
            json!({"advertisements": [], "fullsync": true}),
            Some("fullsync"),
            "unknown field",
        ),
        (
            Method::POST,
            "/api/registers".into(),
            json!({"name": "n", "advertise": true, "public": true}),
            Some("public"),
            "unknown field",
        ),
        (
            Method::POST,
            format!("/api/registers/{}/advertise", register_id(2)),
            json!({"isPublic": "yes"}),
            Some("isPublic"),
            "invalid type",
        ),
        (
            Method::POST,
            format!("/api/registers/{}/advertise", register_id(2)),
            json!({"isPublic": true, "syncState": "halfway"}),
            Some("syncState"),
            "unknown variant `halfway`",
        ),
        (
            Method::POST,
            bulk.into(),
            json!({"advertisements": {"a": 1}}),
            Some("advertisements"),
            "invalid type",
        ),
        (
            Method::POST,
            "/api/registers".into(),
            json!({"name": "n"}),
            None,
            "missing field `advertise`",
        ),
        // Rules of the request.
        (
            Method::POST,
            bulk.into(),
            json!({"advertisements": too_many}),
            Some("advertisements"),
            "at most 10000 items",
        ),
        (
            Method::POST,
            bulk.into(),
            duplicates,
            Some("advertisements[2].registerId"),
            "duplicate register id",
        ),
        (
            Method::POST,
            "/api/registers".into(),
            json!({"name": "  ", "advertise": true}),
            Some("name"),
            "must not be empty",
        ),
        (
            Method::POST,
            format!("/api/registers/{}/advertise", register_id(2)),
            json!({"isPublic": true, "name": "x".repeat(257)}),
            Some("name"),
            "at most 256 characters",
        ),
    ];
    for (method, path, body, field, reason) in cases {
        let refused = http.send(method.clone(), &path, body).await;
        refused.assert_error(StatusCode::BAD_REQUEST, field, reason);
        assert_eq!(
            node.observable_state().await,
            before,
            "{method} {path} changed something"
        );
    }

    // Bad register ids on reads and deletes too.
    http.get("/api/registers/XYZ").await.assert_error(
        StatusCode::BAD_REQUEST,
        Some("registerId"),
        id_rule,
    );
    http.delete("/api/registers/XYZ").await.assert_error(
        StatusCode::BAD_REQUEST,
        Some("registerId"),
        id_rule,
    );

    // Bodies that are not JSON, or not declared as JSON.
    let raw_cases: [(Option<&str>, &[u8], &str); 5] = [
        (
            Some("application/json"),
            b"{\"advertisements\": [",
            "malformed JSON",
        ),
        (Some("application/json"), b"", "malformed JSON"),
        (
            Some("application/json"),
            b"{\"advertisements\": []} trailing",
            "malformed JSON",
        ),
        (
            None,
            b"{\"advertisements\": []}",
            "Content-Type: application/json",
        ),
        (
            Some("text/plain"),
            b"{\"advertisements\": []}",
            "Content-Type: application/json",
        ),
    ];
    for (content_type, body, reason) in raw_cases {
        let refused = http.post_raw(bulk, content_type, body.to_vec()).await;
        refused.assert_error(StatusCode::BAD_REQUEST, None, reason);
    }
    assert_eq!(node.observable_state().await, before);

    node.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_json() {
    let node = TestNode::start(peer_only("rest-too-big")).await;
    let mut body = b"{\"advertisements\": [".to_vec();
    body.resize(17 * 1024 * 1024, b' ');
    body.extend_from_slice(b"]}");
    let refused = node
        .http
        .post_raw(
            "/api/registers/bulk-advertise",
            Some("application/json"),
            body,
        )
        .await;
    refused.assert_error(StatusCode::PAYLOAD_TOO_LARGE, None, "larger than 16 MiB");
    node.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let node = TestNode::start(both_roles("rest-routes")).await;
    let http = &node.http;
    http.get("/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, None, "no route for GET /nope");
    http.get("/api/registers/available/extra/more")
        .await
        .assert_error(StatusCode::NOT_FOUND, None, "no route");
    http.send(Method::PUT, "/api/registers", json!({}))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, None, "PUT is not allowed");
    node.stop().await;
}

#[tokio::test]
async fn a_node_answers_404_for_the_role_it_does_not_run() {
    let peer = TestNode::start(peer_only("rest-peer-only")).await;
    let http = &peer.http;
    let path = format!("/api/registers/{}", register_id(1));
    let role = "does not run the register role";
    http.get("/api/registers")
        .await
        .assert_error(StatusCode::NOT_FOUND, None, role);
    http.get(&path)
        .await
        .assert_error(StatusCode::NOT_FOUND, None, role);
    http.send(
        Method::POST,
        "/api/registers",
        json!({"name": "x", "advertise": true}),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, None, role);
    http.send(Method::PATCH, &path, json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, None, role);
    http.delete(&path)
        .await
        .assert_error(StatusCode::NOT_FOUND, None, role);
    // Even a malformed id: the role is checked first.
    http.get("/api/registers/XYZ")
        .await
        .assert_error(StatusCode::NOT_FOUND, None, role);

    let status = http.get("/api/sync/status").await;
    let status = status.assert_ok(StatusCode::OK);
    assert_eq!(status["resync"], Value::Null);
    assert_eq!(status["pool"]["localAds"], 0);
    let health = http.get("/health").await;
    assert_eq!(health.assert_ok(StatusCode::OK)["roles"], json!(["peer"]));

    // A register-role node does not serve the peer endpoints.
    let register = TestNode::start(register_only("rest-register-only", &http.base)).await;
    let http = &register.http;
    let role = "does not run the peer role";
    http.get("/api/registers/available")
        .await
        .assert_error(StatusCode::NOT_FOUND, None, role);
    http.send(
        Method::POST,
        "/api/registers/bulk-advertise",
        json!({"advertisements": []}),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, None, role);
    http.send(
        Method::POST,
        &format!("{path}/advertise"),
        json!({"isPublic": true}),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, None, role);
    let status = http.get("/api/sync/status").await;
    assert_eq!(status.assert_ok(StatusCode::OK)["pool"], Value::Null);

    register.stop().await;
    peer.stop().await;
}

// ---- operations ----

#[tokio::test]
async fn sync_status_reports_the_pool_and_the_resync_driver() {
    let node = TestNode::start_in_sync(both_roles("rest-sync")).await;
    let status = node.http.get("/api/sync/status").await;
    let status = status.assert_ok(StatusCode::OK);
    assert_eq!(status["pool"]["nodeId"], "rest-sync");
    assert_eq!(status["pool"]["store"]["state"], "healthy");
    assert_eq!(status["resync"]["status"], "inSync");
    assert_eq!(status["resync"]["pool"], "local");
    assert_eq!(status["resync"]["successfulFullSyncs"], 1);
    node.stop().await;
}

#[tokio::test]
async fn health_is_degraded_while_the_store_is_down_and_recovers() {
    let raw = RawNodeConfig {
        peer: Some(RawPeerConfig {
            store_backoff_base_ms: Some(50),
            store_backoff_max_ms: Some(500),
            ..RawPeerConfig::default()
        }),
        ..both_roles("rest-health")
    };
    let node = TestNode::start_in_sync(raw).await;
    let http = &node.http;

    let health = http.get("/health").await;
    let body = health.assert_ok(StatusCode::OK);
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["nodeId"], "rest-health");
    assert_eq!(body["roles"], json!(["peer", "register"]));
    assert_eq!(body["store"]["state"], "healthy");
    let actors = body["actors"].as_array().expect("actors");
    assert_eq!(actors.len(), 2);
    assert!(
        actors.iter().all(|actor| actor["running"] == true),
        "{body}"
    );

    node.store.set_down(true);
    let bulk = http
        .send(
            Method::POST,
            "/api/registers/bulk-advertise",
            json!({"advertisements": [ad(1)]}),
        )
        .await;
    assert_eq!(
        bulk.assert_ok(StatusCode::OK)["persisted"],
        false,
        "served from memory"
    );
    let degraded = wait_until("health degraded", DEADLINE, || async {
        let health = http.get("/health").await;
        (health.status == StatusCode::OK && health.body["status"] == "degraded")
            .then_some(health.body)
    })
    .await;
    assert_eq!(degraded["store"]["state"], "degraded", "{degraded}");
    let reasons = degraded["reasons"].to_string();
    assert!(
        reasons.contains("advertisement store degraded"),
        "{reasons}"
    );
    let available = http.get("/api/registers/available").await;
    assert_eq!(
        available_ids(&available.body),
        [register_id(1).to_string()],
        "still served"
    );

    node.store.set_down(false);
    wait_until("health healthy again", DEADLINE, || async {
        let health = http.get("/health").await;
        (health.body["status"] == "healthy").then_some(())
    })
    .await;
    assert_eq!(
        node.store.stored().len(),
        1,
        "written once the store is back"
    );

    node.stop().await;
}

#[tokio::test]
async fn health_is_degraded_while_the_resync_driver_cannot_reach_its_peer() {
    let closed = closed_port_url();
    let node = TestNode::start(register_only("rest-lonely", &closed)).await;
    let degraded = wait_until("health degraded", DEADLINE, || async {
        let health = node.http.get("/health").await;
        (health.body["status"] == "degraded").then_some(health.body)
    })
    .await;
    assert_eq!(degraded["store"], Value::Null, "no pool on this node");
    let reasons = degraded["reasons"].to_string();
    assert!(reasons.contains("resync driver retrying"), "{reasons}");
    node.stop().await;
}

#[tokio::test]
async fn health_is_503_once_the_node_gave_up() {
    let raw = RawNodeConfig {
        restart_max: Some(0),
        call_timeout_ms: Some(1_000),
        ..peer_only("rest-gave-up")
    };
    let node = TestNode::start(raw).await;
    assert!(
        node.handle
            .kill_actor(ChildKind::AdvertisementPool)
            .await
            .unwrap()
    );
    let failure = tokio::time::timeout(DEADLINE, node.handle.failed())
        .await
        .expect("the node gives up after one failure");
    assert_eq!(failure.child, ChildKind::AdvertisementPool);

    let health = wait_until("health unhealthy", DEADLINE, || async {
        let health = node.http.get("/health").await;
        (health.status == StatusCode::SERVICE_UNAVAILABLE).then_some(health.body)
    })
    .await;
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert_eq!(health["nodeId"], "rest-gave-up");

    node.handle.shutdown().await;
}

#[tokio::test]
async fn metrics_is_501_without_a_recorder_and_prometheus_text_with_one() {
    let bare = TestNode::start(peer_only("rest-no-metrics")).await;
    bare.http.get("/metrics").await.assert_error(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "no Prometheus recorder",
    );
    bare.stop().await;

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let node =
        TestNode::start_with_metrics(peer_only("rest-metrics"), Some(recorder.handle())).await;
    let scraped = node.http.get("/metrics").await;
    assert_eq!(scraped.status, StatusCode::OK, "{scraped:?}");
    assert_eq!(
        scraped
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4")
    );
    assert!(!scraped.text.contains("\"error\""), "{scraped:?}");
    node.stop().await;
}

// ---- HttpPoolLink ----

/// A loopback URL where nothing listens (bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn http_pool_link_pushes_is_refused_and_reports_unreachable() {
    let peer = TestNode::start(peer_only("link-peer")).await;
    let base = peer.http.base.clone();
    let timeout = Duration::from_secs(5);

    let link = HttpPoolLink::new(&format!("{base}/"), TOKEN, timeout).expect("link");
    assert_eq!(link.describe(), base);
    let outcome = link
        .push(BulkAdvertise::one(AdInput::public(register_id(1))))
        .await
        .expect("pushed");
    assert_eq!(
        (outcome.processed, outcome.added, outcome.persisted),
        (1, 1, true)
    );
    let available = peer.http.get("/api/registers/available").await;
    assert_eq!(available_ids(&available.body), [register_id(1).to_string()]);

    let duplicates = BulkAdvertise {
        advertisements: vec![
            AdInput::public(register_id(2)),
            AdInput::public(register_id(2)),
        ],
        full_sync: false,
        snapshot: None,
    };
    match link.push(duplicates).await {
        Err(PoolLinkError::Refused(reason)) => {
            assert!(
                reason.contains("400") && reason.contains("duplicate register id"),
                "{reason}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let impostor = HttpPoolLink::new(&base, "wrong", timeout).expect("link");
    match impostor
        .push(BulkAdvertise::one(AdInput::public(register_id(3))))
        .await
    {
        Err(PoolLinkError::Refused(reason)) => {
            assert!(
                reason.contains("401") && reason.contains("invalid bearer token"),
                "{reason}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let available = peer.http.get("/api/registers/available").await;
    assert_eq!(
        available_ids(&available.body),
        [register_id(1).to_string()],
        "refusals changed nothing"
    );

    let nowhere = HttpPoolLink::new(&closed_port_url(), TOKEN, timeout).expect("link");
    let started = Instant::now();
    let result = nowhere
        .push(BulkAdvertise::one(AdInput::public(register_id(4))))
        .await;
    assert!(
        matches!(result, Err(PoolLinkError::Unreachable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    peer.stop().await;
}

#[tokio::test]
async fn a_register_node_feeds_a_remote_peer_over_http() {
    let peer = TestNode::start(peer_only("feed-peer")).await;
    let register = TestNode::start(register_only("feed-register", &peer.http.base)).await;
    register.wait_in_sync().await;

    let public = register_id(1).to_string();
    let private = register_id(2).to_string();
    register
        .http
        .send(
            Method::POST,
            "/api/registers",
            json!({"registerId": public, "name": "public one", "advertise": true}),
        )
        .await
        .assert_ok(StatusCode::CREATED);
    register
        .http
        .send(
            Method::POST,
            "/api/registers",
            json!({"registerId": private, "name": "private one", "advertise": false}),
        )
        .await
        .assert_ok(StatusCode::CREATED);

    let listed = wait_until("the public register at the peer", DEADLINE, || async {
        let available = peer.http.get("/api/registers/available").await;
        (!available_ids(&available.body).is_empty()).then_some(available.body)
    })
    .await;
    assert_eq!(
        available_ids(&listed),
        std::slice::from_ref(&public),
        "only the public register"
    );
    assert_eq!(listed[0]["name"], "public one");

    let status = register.http.get("/api/sync/status").await;
    let resync = &status.assert_ok(StatusCode::OK)["resync"];
    assert_eq!(resync["pool"], peer.http.base.as_str());
    assert_eq!(resync["status"], "inSync");

    register
        .http
        .delete(&format!("/api/registers/{public}"))
        .await
        .assert_ok(StatusCode::NO_CONTENT);
    wait_until(
        "the deleted register withdrawn at the peer",
        DEADLINE,
        || async {
            let available = peer.http.get("/api/registers/available").await;
            available_ids(&available.body).is_empty().then_some(())
        },
    )
    .await;

    register.stop().await;
    peer.stop().await;
}

// ---- Available Registers: built once, ETag, gzip, one register, paging (issue 11) ----

/// The whole answer carries an ETag; `If-None-Match` with it is 304 without a body; a change
/// gives another ETag; gzip is sent to a client that accepts it and decodes to the same JSON.
#[tokio::test]
async fn available_has_an_etag_answers_304_to_it_and_gzips_for_clients_that_accept_it() {
    let node = TestNode::start(peer_only("rest-etag")).await;
    let http = &node.http;
    http.send(
        Method::POST,
        "/api/registers/bulk-advertise",
        json!({ "advertisements": [ad(1), ad(2)] }),
    )
    .await
    .assert_ok(StatusCode::OK);
    let url = format!("{}/api/registers/available", http.base);

    let plain = http.client.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(plain.headers().get(CONTENT_ENCODING).is_none());
    let etag = plain.headers()[ETAG].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let json_bytes = plain.bytes().await.unwrap();
    let listed: Value = serde_json::from_slice(&json_bytes).unwrap();
    assert_eq!(
        available_ids(&listed),
        [register_id(1).to_string(), register_id(2).to_string()]
    );

    let again = http
        .client
        .get(&url)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[ETAG].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    let gzipped = http
        .client
        .get(&url)
        .header(ACCEPT_ENCODING, "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), StatusCode::OK);
    assert_eq!(gzipped.headers()[CONTENT_ENCODING], "gzip");
    assert_eq!(gzipped.headers()[ETAG].to_str().unwrap(), etag);
    let packed = gzipped.bytes().await.unwrap();
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .unwrap();
    assert_eq!(unpacked, json_bytes, "the same bytes, compressed");

    http.send(
        Method::POST,
        &format!("/api/registers/{}/advertise", register_id(3)),
        json!({"isPublic": true}),
    )
    .await
    .assert_ok(StatusCode::OK);
    let changed = http
        .client
        .get(&url)
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "a change is a new version"
    );
    assert_ne!(changed.headers()[ETAG].to_str().unwrap(), etag);
    let listed: Value = changed.json().await.unwrap();
    assert_eq!(available_ids(&listed).len(), 3);

    // A request that changes nothing keeps the version, and the ETag with it.
    let current = http.get("/api/registers/available").await.headers[ETAG].clone();
    http.send(
        Method::POST,
        &format!("/api/registers/{}/advertise", register_id(3)),
        json!({"isPublic": true}),
    )
    .await
    .assert_ok(StatusCode::OK);
    assert_eq!(
        http.get("/api/registers/available").await.headers[ETAG],
        current
    );
    node.stop().await;
}

/// One register by id: 200 with the entry the list shows, 404 with a reason when it is not
/// available, 400 for a malformed id.
#[tokio::test]
async fn one_available_register_by_id_is_200_404_or_400() {
    let node = TestNode::start(peer_only("rest-one")).await;
    let http = &node.http;
    http.send(
        Method::POST,
        "/api/registers/bulk-advertise",
        json!({ "advertisements": [ad(1), ad(2)] }),
    )
    .await
    .assert_ok(StatusCode::OK);
    let listed = http.get("/api/registers/available").await;
    let one = http
        .get(&format!("/api/registers/available/{}", register_id(2)))
        .await;
    assert_eq!(one.assert_ok(StatusCode::OK), &listed.body[1]);
    http.get(&format!("/api/registers/available/{}", register_id(9)))
        .await
        .assert_error(StatusCode::NOT_FOUND, None, "is not available");
    let malformed = http.get("/api/registers/available/not-a-register").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{malformed:?}");
    assert!(malformed.body["error"].is_string(), "{malformed:?}");
    node.stop().await;
}

/// `?limit=&after=` pages through the same answer, with a `Link` to the next page; the
/// default answer stays the whole array; bad paging is 400 naming the parameter.
#[tokio::test]
async fn available_pages_with_limit_and_after_and_refuses_bad_paging() {
    let node = TestNode::start(peer_only("rest-pages")).await;
    let http = &node.http;
    let ads: Vec<Value> = (1..=5).map(ad).collect();
    http.send(
        Method::POST,
        "/api/registers/bulk-advertise",
        json!({ "advertisements": ads }),
    )
    .await
    .assert_ok(StatusCode::OK);
    let all = available_ids(&http.get("/api/registers/available").await.body);
    assert_eq!(all.len(), 5);

    let first = http.get("/api/registers/available?limit=2").await;
    assert_eq!(available_ids(first.assert_ok(StatusCode::OK)), all[..2]);
    let link = first.headers[LINK].to_str().unwrap().to_owned();
    assert_eq!(
        link,
        format!(
            "</api/registers/available?limit=2&after={}>; rel=\"next\"",
            all[1]
        )
    );
    let second = http
        .get(&format!(
            "/api/registers/available?limit=2&after={}",
            all[1]
        ))
        .await;
    assert_eq!(available_ids(&second.body), all[2..4]);
    let last = http
        .get(&format!(
            "/api/registers/available?limit=2&after={}",
            all[3]
        ))
        .await;
    assert_eq!(available_ids(&last.body), all[4..]);
    assert!(last.headers.get(LINK).is_none(), "no page after the last");
    let rest = http
        .get(&format!("/api/registers/available?after={}", all[0]))
        .await;
    assert_eq!(available_ids(&rest.body), all[1..]);

    for (query, field, reason) in [
        ("limit=0", "limit", "whole number from 1 to 10000"),
        ("limit=10001", "limit", "whole number from 1 to 10000"),
        ("limit=-1", "limit", "whole number"),
        ("limit=", "limit", "whole number"),
        ("after=zz", "after", "is not a register id"),
        ("page=2", "page", "unknown query parameter"),
    ] {
        http.get(&format!("/api/registers/available?{query}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, Some(field), reason);
    }
    node.stop().await;
}

/// An `AdStore` whose writes wait at a gate while it is closed, saying when one is waiting:
/// it holds the pool inside a write for as long as a test wants, without sleeping.
#[derive(Clone)]
struct GatedAdStore {
    inner: InMemoryAdStore,
    open: tokio::sync::watch::Sender<bool>,
    waiting: Arc<tokio::sync::Notify>,
}

impl GatedAdStore {
    fn new(inner: InMemoryAdStore) -> Self {
        Self {
            inner,
            open: tokio::sync::watch::Sender::new(true),
            waiting: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

#[async_trait::async_trait]
impl AdStore for GatedAdStore {
    async fn load(&self) -> Result<StoredPool, StoreError> {
        self.inner.load().await
    }

    async fn write(
        &self,
        batch: &AdBatch<'_>,
        expiry: Duration,
    ) -> Result<Option<PoolMeta>, StoreError> {
        if !*self.open.borrow() {
            self.waiting.notify_one();
        }
        let mut open = self.open.subscribe();
        open.wait_for(|open| *open)
            .await
            .expect("the gate outlives the store");
        self.inner.write(batch, expiry).await
    }

    async fn read_meta(&self) -> Result<Option<PoolMeta>, StoreError> {
        self.inner.read_meta().await
    }

    fn describe(&self) -> String {
        format!("gated {}", self.inner.describe())
    }
}

/// Issue 11: a read is answered while the pool is busy. The pool is held inside the store
/// write of a full sync (a gate, not a sleep); `available`, one register, `/health` and
/// `/api/sync/status` answer meanwhile, from what the pool published before the sync; once
/// the write completes the next read shows the sync.
#[tokio::test]
async fn reads_are_answered_while_the_pool_is_held_in_a_store_write() {
    let store = InMemoryAdStore::new();
    let gated = GatedAdStore::new(store.clone());
    let node =
        TestNode::start_on(peer_only("rest-busy"), None, store, Arc::new(gated.clone())).await;
    let http = node.http.clone();
    http.send(
        Method::POST,
        "/api/registers/bulk-advertise",
        json!({ "advertisements": [ad(1), ad(2)] }),
    )
    .await
    .assert_ok(StatusCode::OK);
    let before = http.get("/api/registers/available").await;
    let etag_before = before.headers[ETAG].clone();

    gated.open.send_replace(false);
    let waiting = gated.waiting.notified();
    let sync = tokio::spawn({
        let http = http.clone();
        async move {
            let ads: Vec<Value> = (3..=50).map(ad).collect();
            http.send(
                Method::POST,
                "/api/registers/bulk-advertise",
                json!({ "advertisements": ads, "fullSync": true }),
            )
            .await
        }
    });
    waiting.await;

    // The pool is inside its write now, and stays there until the gate opens.
    let deadline = Duration::from_secs(2);
    let reads = async {
        let available = http.get("/api/registers/available").await;
        let one = http
            .get(&format!("/api/registers/available/{}", register_id(1)))
            .await;
        let health = http.get("/health").await;
        let status = http.get("/api/sync/status").await;
        (available, one, health, status)
    };
    let (available, one, health, status) = tokio::time::timeout(deadline, reads)
        .await
        .expect("reads answered while the pool is held in a write");
    assert!(!sync.is_finished(), "the full sync is still held");
    assert_eq!(
        available.headers[ETAG], etag_before,
        "what was published before"
    );
    assert_eq!(
        available_ids(&available.body),
        [register_id(1).to_string(), register_id(2).to_string()]
    );
    one.assert_ok(StatusCode::OK);
    assert_eq!(health.assert_ok(StatusCode::OK)["status"], "healthy");
    assert_eq!(status.assert_ok(StatusCode::OK)["pool"]["localAds"], 2);

    gated.open.send_replace(true);
    let synced = sync.await.unwrap();
    assert_eq!(synced.assert_ok(StatusCode::OK)["persisted"], true);
    let after = http.get("/api/registers/available").await;
    assert_ne!(after.headers[ETAG], etag_before);
    assert_eq!(available_ids(&after.body).len(), 48);
    node.stop().await;
}
