//! Hub-connection and system-register endpoints (spec 001, user story 4).
//!
//! Peer with hubs: `GET /api/connection/status`, `GET /api/central-nodes`. Hub: publishing
//! (`POST /api/system-register/blueprints`), deprecating (`DELETE …/blueprints/{id}`) and
//! `GET /api/hub/peers`. Both: `GET /api/system-register` and `…/blueprints/{id}`, answered
//! from the authoritative register on a hub and from the replica on a peer.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use herald_messages::{
    BlueprintId, ConnectionStatus, EntryKind, EntrySignature, HubPeer, HubReport, PublishRequest,
    SystemRegisterEntry, SystemRegisterView, Timestamp,
};

use crate::rest::RestState;
use crate::rest::error::ApiError;
use crate::rest::extract::{ApiJson, PathId};

/// `GET /api/connection/status`
pub async fn connection_status(
    State(state): State<RestState>,
) -> Result<Json<ConnectionStatus>, ApiError> {
    Ok(Json(state.api.connection_status().await?))
}

/// `GET /api/central-nodes`
pub async fn central_nodes(
    State(state): State<RestState>,
) -> Result<Json<Vec<HubReport>>, ApiError> {
    Ok(Json(state.api.central_nodes().await?))
}

/// `GET /api/system-register`
pub async fn system_register(
    State(state): State<RestState>,
) -> Result<Json<SystemRegisterView>, ApiError> {
    Ok(Json(state.api.system_register().await?))
}

/// `GET /api/system-register/blueprints/{id}`: the latest entry, with its document.
pub async fn blueprint(
    State(state): State<RestState>,
    PathId(id): PathId<BlueprintId>,
) -> Result<Json<EntryBody>, ApiError> {
    match state.api.blueprint(id.clone()).await? {
        Some(entry) => Ok(Json(EntryBody::from(&entry))),
        None => Err(ApiError::not_found(format!("blueprint {id} not found"))),
    }
}

/// `POST /api/system-register/blueprints` → 201 with the new entry (a publication or an update).
pub async fn publish(
    State(state): State<RestState>,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<Response, ApiError> {
    let blueprint_id = BlueprintId::parse(&body.blueprint_id)
        .map_err(|err| ApiError::invalid("blueprintId", err.to_string()))?;
    let request = PublishRequest {
        blueprint_id,
        document: Bytes::from(body.document.get().to_owned()),
        published_by: body.published_by.unwrap_or_else(|| "admin".to_owned()),
        metadata: body.metadata,
    };
    let entry = state.api.publish_blueprint(request).await?;
    Ok((StatusCode::CREATED, Json(EntryBody::from(&entry))).into_response())
}

/// `DELETE /api/system-register/blueprints/{id}` → 200 with the deprecation entry.
pub async fn deprecate(
    State(state): State<RestState>,
    PathId(id): PathId<BlueprintId>,
) -> Result<Json<EntryBody>, ApiError> {
    let entry = state
        .api
        .deprecate_blueprint(id, "admin".to_owned())
        .await?;
    Ok(Json(EntryBody::from(&entry)))
}

/// `GET /api/hub/peers`
pub async fn peers(State(state): State<RestState>) -> Result<Json<Vec<HubPeer>>, ApiError> {
    Ok(Json(state.api.hub_peers().await?))
}

/// The body of a publication: the document is any JSON value.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishBody {
    blueprint_id: String,
    document: Box<RawValue>,
    #[serde(default)]
    published_by: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// An entry as the API shows it: the document as JSON, not as a string.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryBody {
    blueprint_id: BlueprintId,
    version: u64,
    kind: EntryKind,
    is_active: bool,
    published_at: Timestamp,
    published_by: String,
    transaction_id: String,
    checksum: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
    /// The appending hub's signature (`{"keyId", "value"}`), when it signed the entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<EntrySignature>,
    document: Box<RawValue>,
}

impl From<&Arc<SystemRegisterEntry>> for EntryBody {
    fn from(entry: &Arc<SystemRegisterEntry>) -> Self {
        let text = String::from_utf8_lossy(&entry.document).into_owned();
        // Documents are validated as JSON when published; a replica holds checked copies.
        let document = RawValue::from_string(text)
            .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).expect("null is JSON"));
        Self {
            blueprint_id: entry.blueprint_id.clone(),
            version: entry.version,
            kind: entry.kind,
            is_active: entry.is_active,
            published_at: entry.published_at,
            published_by: entry.published_by.clone(),
            transaction_id: entry.transaction_id.clone(),
            checksum: entry.checksum.clone(),
            metadata: entry.metadata.clone(),
            signature: entry.signature.clone(),
            document,
        }
    }
}
