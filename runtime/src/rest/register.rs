//! Register-role endpoints: CRUD of the registers this node hosts (its ground truth).
//!
//! Each handler parses and validates, makes one `NodeApi` call and maps its result. Pushing a
//! change to the pool is the resync driver's business, not the handler's.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use herald_messages::{NewRegister, Register, RegisterId, RegisterPatch};

use crate::rest::RestState;
use crate::rest::error::ApiError;
use crate::rest::extract::{ApiJson, PathId};

/// `POST /api/registers` → 201 with the register and its `Location`.
pub async fn create(
    State(state): State<RestState>,
    ApiJson(new): ApiJson<NewRegister>,
) -> Result<Response, ApiError> {
    let register = state.api.create_register(new).await?;
    let location = HeaderValue::from_str(&format!("/api/registers/{}", register.register_id))
        .expect("a register id is lowercase hex, a valid header value");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(register),
    )
        .into_response())
}

/// `PATCH /api/registers/{registerId}`
pub async fn update(
    State(state): State<RestState>,
    PathId(register_id): PathId<RegisterId>,
    ApiJson(patch): ApiJson<RegisterPatch>,
) -> Result<Json<Register>, ApiError> {
    Ok(Json(state.api.update_register(register_id, patch).await?))
}

/// `DELETE /api/registers/{registerId}` → 204.
pub async fn delete(
    State(state): State<RestState>,
    PathId(register_id): PathId<RegisterId>,
) -> Result<StatusCode, ApiError> {
    state.api.delete_register(register_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/registers/{registerId}`
pub async fn get(
    State(state): State<RestState>,
    PathId(register_id): PathId<RegisterId>,
) -> Result<Json<Register>, ApiError> {
    Ok(Json(state.api.get_register(register_id).await?))
}

/// `GET /api/registers`
pub async fn list(State(state): State<RestState>) -> Result<Json<Vec<Register>>, ApiError> {
    Ok(Json(state.api.list_registers().await?))
}
