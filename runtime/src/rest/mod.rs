//! The REST API (axum), JSON camelCase, compatible with the service it replaces.
//!
//! Rooms: `page` (the operator's page at `/`), `peer` (advertise, bulk advertise), `available`
//! (*Available Registers*: built once per version, `ETag`, gzip, paging, one register),
//! `register` (register CRUD), `hub` (connection, system register, publishing), `ops` (health,
//! sync status, metrics), `events` (`GET /api/events`: changes as server-sent events), `auth` (the
//! admin token), `extract` (JSON body and path id extractors that answer in our error shape),
//! `error` (`ApiError`, the one place where failures become status codes), `server`
//! (`HttpServer`: HTTP/1.1 with a header read timeout).
//!
//! Every route exists whatever the roles; a route of a role the node does not run answers 404.
//! Mutating requests need `Authorization: Bearer <admin token>`; reads are open. Every error is
//! `{"error": reason, "field"?: field}`. Handlers are thin: parse and validate, one `NodeApi`
//! call, map the result; nothing here keeps state of its own.
//! A request whose declared `Content-Length` is over the body limit is refused with 413 before
//! anything reads its body: a client that sent `Expect: 100-continue` gets the 413 at once
//! instead of `100 Continue` and an upload that would be thrown away.

mod auth;
mod available;
mod error;
mod events;
mod extract;
mod hub;
mod ops;
mod page;
mod peer;
mod register;
mod server;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, field};

use crate::api::{NodeApi, NodeError};

pub use available::MAX_PAGE_LIMIT;
use error::ApiError;
pub use extract::MAX_BODY_BYTES;
pub(crate) use server::HttpServer;

/// What the handlers share: the node's API, the admin token, the host's metrics recorder.
#[derive(Clone)]
pub struct RestState {
    api: NodeApi,
    admin_token: Arc<str>,
    /// `GET /api/…` needs the admin token too.
    reads_need_token: bool,
    metrics: Option<PrometheusHandle>,
    available: Arc<available::AvailableCache>,
    /// `GET /api/events`'s feed: it stops when the last clone of the state is dropped.
    events: Arc<events::EventFeed>,
}

impl RestState {
    /// The handlers' state; starts the node's event feed (call inside a Tokio runtime).
    pub fn new(api: NodeApi, admin_token: String, metrics: Option<PrometheusHandle>) -> Self {
        Self {
            events: Arc::new(events::EventFeed::start(api.clone())),
            available: Arc::new(available::AvailableCache::start(
                api.pool_changes(),
                api.pool_writes(),
            )),
            api,
            admin_token: admin_token.into(),
            reads_need_token: false,
            metrics,
        }
    }
}

impl RestState {
    /// Reads of `/api/…` need the admin token too.
    pub fn with_reads_needing_token(mut self, on: bool) -> Self {
        self.reads_need_token = on;
        self
    }
}

/// The API's routes, with the body limit, the admin-token check and a span per request.
pub fn router(state: RestState) -> Router {
    let peer = Router::new()
        .route("/api/registers/bulk-advertise", post(peer::bulk_advertise))
        .route("/api/registers/available", get(available::available))
        .route(
            "/api/registers/available/{registerId}",
            get(available::available_one),
        )
        .route(
            "/api/registers/{registerId}/advertise",
            post(peer::advertise),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_for_writes,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_peer_role,
        ));
    let register = Router::new()
        .route("/api/registers", get(register::list).post(register::create))
        .route(
            "/api/registers/{registerId}",
            get(register::get)
                .patch(register::update)
                .delete(register::delete),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_for_writes,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_register_role,
        ));
    let hub = Router::new()
        .route("/api/connection/status", get(hub::connection_status))
        .route("/api/central-nodes", get(hub::central_nodes))
        .route("/api/system-register", get(hub::system_register))
        .route(
            "/api/system-register/blueprints",
            axum::routing::post(hub::publish),
        )
        .route(
            "/api/system-register/blueprints/{id}",
            get(hub::blueprint).delete(hub::deprecate),
        )
        .route("/api/hub/peers", get(hub::peers))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_for_writes,
        ));
    let ops = Router::new()
        .route("/api/sync/status", get(ops::sync_status))
        .route("/api/cluster/members", get(ops::cluster_members))
        .route("/api/events", get(events::events))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics));
    let page = Router::new()
        .route("/", get(page::index))
        .route("/ui/app.js", get(page::script))
        .route("/ui/app.css", get(page::style));
    Router::new()
        .merge(page)
        .merge(peer)
        .merge(register)
        .merge(hub)
        .merge(ops)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_for_api_reads,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_declared_oversize))
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

/// A span per request with method and path; status and latency are recorded when it is served.
async fn trace_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = %request.uri().path(),
        status = field::Empty,
        latency_ms = field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    span.in_scope(|| debug!(status, latency_ms, "request served"));
    response
}

/// 413 for a request whose declared `Content-Length` is over the limit, before its body is read
/// (so hyper never answers `Expect: 100-continue` with `100 Continue`).
async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let limit = u64::try_from(MAX_BODY_BYTES).expect("the body limit fits in u64");
    if declared.is_some_and(|length| length > limit) {
        return extract::body_too_large().into_response();
    }
    next.run(request).await
}

async fn require_peer_role(
    State(state): State<RestState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !state.api.has_peer_role() {
        return Err(NodeError::RoleNotEnabled("peer").into());
    }
    Ok(next.run(request).await)
}

async fn require_register_role(
    State(state): State<RestState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !state.api.has_register_role() {
        return Err(NodeError::RoleNotEnabled("register").into());
    }
    Ok(next.run(request).await)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
