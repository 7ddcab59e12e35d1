//! Peer-role endpoints that write: the advertisement pool's bulk and single advertise
//! (*Available Registers* is read in `available`).
//!
//! Each handler parses, makes one `NodeApi` call (which validates the request, once, before it
//! reaches the pool) and maps its result.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use herald_messages::{AdInput, BulkAdvertise, BulkOutcome, PoolError, RegisterId, SyncState};

use crate::api::NodeError;
use crate::rest::RestState;
use crate::rest::error::ApiError;
use crate::rest::extract::{ApiJson, PathId};

/// `POST /api/registers/bulk-advertise`
pub async fn bulk_advertise(
    State(state): State<RestState>,
    ApiJson(request): ApiJson<BulkAdvertise>,
) -> Result<Json<BulkOutcome>, ApiError> {
    Ok(Json(state.api.bulk_advertise(request).await?))
}

/// `POST /api/registers/{registerId}/advertise`: advertises, updates or (`isPublic: false`)
/// withdraws one register.
pub async fn advertise(
    State(state): State<RestState>,
    PathId(register_id): PathId<RegisterId>,
    ApiJson(body): ApiJson<AdvertiseBody>,
) -> Result<Json<BulkOutcome>, ApiError> {
    let request = BulkAdvertise::one(body.into_input(register_id));
    let outcome = state
        .api
        .bulk_advertise(request)
        .await
        .map_err(|err| match err {
            // The body is one advertisement: name its fields as the client sent them.
            NodeError::Pool(PoolError::Invalid(mut invalid)) => {
                if let Some(field) = invalid.field.strip_prefix("advertisements[0].") {
                    invalid.field = field.to_owned();
                }
                ApiError::from(invalid)
            }
            other => ApiError::from(other),
        })?;
    Ok(Json(outcome))
}

/// The body of a single advertise: an `AdInput` without the id, which is in the path.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdvertiseBody {
    is_public: bool,
    #[serde(default)]
    name: Option<Arc<str>>,
    #[serde(default)]
    description: Option<Arc<str>>,
    #[serde(default)]
    latest_version: u64,
    #[serde(default)]
    latest_docket_version: u64,
    #[serde(default)]
    sync_state: Option<SyncState>,
}

impl AdvertiseBody {
    fn into_input(self, register_id: RegisterId) -> AdInput {
        AdInput {
            register_id,
            name: self.name,
            description: self.description,
            is_public: self.is_public,
            latest_version: self.latest_version,
            latest_docket_version: self.latest_docket_version,
            sync_state: self.sync_state,
        }
    }
}
