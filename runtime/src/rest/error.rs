//! `ApiError`: every failure of the REST API as one JSON shape, `{"error": reason, "field"?}`,
//! with its status code. The mapping from `NodeError` lives here and nowhere else.
//!
//! It does not log 4xx responses beyond `debug`: a client's mistake is not the node's problem.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::{debug, warn};

use herald_messages::{AuthorityError, InvalidInput, PoolError, RegisterError};

use crate::api::NodeError;

/// A refused or failed request: status, human reason, and the offending field when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
    field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            field: None,
        }
    }

    /// 400 for a value that breaks a rule.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason).with_field(field)
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    /// 401; the response carries `WWW-Authenticate: Bearer`.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    #[cfg(test)]
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

/// The JSON body of every error response.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!(status = self.status.as_u16(), reason = %self.reason, "request failed");
        } else {
            debug!(status = self.status.as_u16(), reason = %self.reason, field = ?self.field, "request refused");
        }
        let body = ErrorBody {
            error: &self.reason,
            field: self.field.as_deref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<InvalidInput> for ApiError {
    fn from(invalid: InvalidInput) -> Self {
        Self::invalid(invalid.field, invalid.reason)
    }
}

impl From<NodeError> for ApiError {
    fn from(err: NodeError) -> Self {
        let reason = err.to_string();
        match err {
            NodeError::RoleNotEnabled(_) | NodeError::NotClustered => Self::not_found(reason),
            NodeError::Pool(PoolError::Invalid(invalid)) => invalid.into(),
            NodeError::Pool(PoolError::StaleSnapshot { .. }) => {
                Self::new(StatusCode::CONFLICT, reason).with_field("snapshot.seq")
            }
            NodeError::Register(RegisterError::Invalid(invalid)) => invalid.into(),
            NodeError::Register(RegisterError::NotFound(_)) => Self::not_found(reason),
            NodeError::Register(RegisterError::AlreadyExists(_)) => {
                Self::new(StatusCode::CONFLICT, reason).with_field("registerId")
            }
            NodeError::Register(RegisterError::VersionRegression { field, .. }) => {
                Self::invalid(field, reason)
            }
            NodeError::Register(RegisterError::Unavailable(_)) => unavailable(reason),
            NodeError::Hub(AuthorityError::Invalid(invalid)) => invalid.into(),
            NodeError::Hub(AuthorityError::NotFound(_) | AuthorityError::UnknownSession { .. }) => {
                Self::not_found(reason)
            }
            NodeError::Hub(AuthorityError::AlreadyDeprecated(_)) => {
                Self::new(StatusCode::CONFLICT, reason).with_field("blueprintId")
            }
            NodeError::Hub(AuthorityError::HubCaller(_)) => {
                Self::new(StatusCode::FORBIDDEN, reason)
            }
            // Answers of the peer-facing gRPC calls; the REST API makes none of them.
            NodeError::Hub(AuthorityError::NotConnected(_) | AuthorityError::NeedsFullSync(_)) => {
                Self::new(StatusCode::CONFLICT, reason)
            }
            NodeError::Hub(AuthorityError::Unavailable(_) | AuthorityError::NotReady(_)) => {
                unavailable(reason)
            }
            NodeError::Unavailable(_) | NodeError::Stopped => unavailable(reason),
        }
    }
}

fn unavailable(reason: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_actors::SlotError;
    use herald_messages::{ChildKind, RegisterId, Timestamp};

    use super::*;

    #[test]
    fn node_errors_map_to_the_documented_statuses() {
        let id = RegisterId::from_bytes([1; 16]);
        let cases = [
            (NodeError::RoleNotEnabled("peer"), StatusCode::NOT_FOUND),
            (
                NodeError::Pool(PoolError::Invalid(InvalidInput::new(
                    "advertisements",
                    "too many",
                ))),
                StatusCode::BAD_REQUEST,
            ),
            (
                NodeError::Pool(PoolError::StaleSnapshot {
                    offered_seq: 1,
                    offered_read_at: Timestamp::EPOCH,
                    applied_seq: 2,
                }),
                StatusCode::CONFLICT,
            ),
            (
                NodeError::Register(RegisterError::NotFound(id.clone())),
                StatusCode::NOT_FOUND,
            ),
            (
                NodeError::Register(RegisterError::AlreadyExists(id)),
                StatusCode::CONFLICT,
            ),
            (
                NodeError::Register(RegisterError::VersionRegression {
                    field: "latestVersion",
                    current: 2,
                    requested: 1,
                }),
                StatusCode::BAD_REQUEST,
            ),
            (
                NodeError::Register(RegisterError::Unavailable("down".into())),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                NodeError::Unavailable(SlotError::Timeout(
                    ChildKind::AdvertisementPool,
                    Duration::from_secs(1),
                )),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (NodeError::Stopped, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (err, status) in cases {
            assert_eq!(ApiError::from(err.clone()).status(), status, "{err}");
        }
    }

    #[test]
    fn invalid_input_keeps_its_field() {
        let err = ApiError::from(InvalidInput::new(
            "advertisements[3].registerId",
            "duplicate",
        ));
        assert_eq!(
            err,
            ApiError::invalid("advertisements[3].registerId", "duplicate")
        );
    }
}
