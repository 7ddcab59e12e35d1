//! Extractors whose rejections are `ApiError`s, so axum's plain-text 415/422 answers never
//! reach a client: `ApiJson<T>` (a JSON body: content type, size limit, syntax, types, unknown
//! fields, with the path of the offending field) and `PathId<T>` (a register or blueprint id in
//! the path).
//!
//! They check form only; the rules of a request (limits, duplicates) are its own `validate`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use herald_messages::{BlueprintId, InvalidId, RegisterId};

use crate::rest::error::ApiError;

/// Largest request body accepted: room for a bulk request of `MAX_BULK_ITEMS` advertisements
/// with names and descriptions.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A JSON request body deserialized into `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(request.headers()) {
            return Err(ApiError::bad_request(
                "expected a JSON body with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_error)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The one id segment of the path (`{registerId}`, a blueprint's `{id}`), validated: a malformed
/// one is a 400 naming `T::FIELD`.
#[derive(Debug)]
pub struct PathId<T>(pub T);

/// An id that may stand as the id segment of a path.
pub trait PathParam: Sized + Send {
    /// The field a 400 names: the API's name for the id, whatever the route calls the segment.
    const FIELD: &'static str;

    fn parse(raw: &str) -> Result<Self, InvalidId>;
}

impl PathParam for RegisterId {
    const FIELD: &'static str = "registerId";

    fn parse(raw: &str) -> Result<Self, InvalidId> {
        RegisterId::parse(raw)
    }
}

impl PathParam for BlueprintId {
    const FIELD: &'static str = "blueprintId";

    fn parse(raw: &str) -> Result<Self, InvalidId> {
        BlueprintId::parse(raw)
    }
}

impl<S, T> FromRequestParts<S> for PathId<T>
where
    S: Send + Sync,
    T: PathParam,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::invalid(T::FIELD, rejection.body_text()))?;
        T::parse(&raw)
            .map(Self)
            .map_err(|err| ApiError::invalid(T::FIELD, err.to_string()))
    }
}

/// `application/json` or `application/<anything>+json`, parameters allowed.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

/// 413: a body over `MAX_BODY_BYTES`, read or declared.
pub(crate) fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "request body larger than {} MiB",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
    )
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return body_too_large();
    }
    ApiError::bad_request(format!(
        "cannot read the request body: {}",
        rejection.body_text()
    ))
}

/// Deserializes the whole body, naming the field at fault (`advertisements[3].isPublic`).
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
    deserializer
        .end()
        .map_err(|err| ApiError::bad_request(format!("malformed JSON: {err}")))?;
    Ok(value)
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.classify() != Category::Data {
        return ApiError::bad_request(format!("malformed JSON: {inner}"));
    }
    let refused = ApiError::bad_request(format!("invalid request: {inner}"));
    let at_root = path.is_empty() || path == ".";
    if at_root {
        return refused;
    }
    refused.with_field(path)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use herald_messages::BulkAdvertise;

    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        headers
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json_content_type(&headers(ok)), "{ok}");
        }
        for bad in ["text/plain", "application/jsonx", "json", ""] {
            assert!(!is_json_content_type(&headers(bad)), "{bad}");
        }
        assert!(!is_json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn data_errors_name_the_field() {
        let cases: [(&[u8], &str, &str); 3] = [
            (
                br#"{"advertisements":[{"registerId":"0123456789abcdef0123456789abcdef","isPublic":"yes"}]}"#,
                "advertisements[0].isPublic",
                "invalid type",
            ),
            (
                br#"{"advertisements":[{"registerId":"NOPE","isPublic":true}]}"#,
                "advertisements[0].registerId",
                "must be 32 lowercase hexadecimal characters",
            ),
            (br#"{"advertisements":[],"fullsync":true}"#, "fullsync", "unknown field"),
        ];
        for (body, field, reason) in cases {
            let err = parse_json::<BulkAdvertise>(body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert_eq!(err.field(), Some(field), "{err:?}");
            assert!(err.reason().contains(reason), "{err:?}");
        }
    }

    #[test]
    fn syntax_errors_and_trailing_garbage_are_malformed() {
        for body in [
            &b"{"[..],
            b"",
            b"{\"advertisements\":[",
            b"{\"advertisements\":[]} x",
        ] {
            let err = parse_json::<BulkAdvertise>(body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert!(err.reason().starts_with("malformed JSON"), "{err:?}");
            assert_eq!(err.field(), None, "{err:?}");
        }
    }
}
