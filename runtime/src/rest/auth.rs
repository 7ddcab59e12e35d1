//! The admin token: a route layer that lets reads through and requires
//! `Authorization: Bearer <admin token>` on every other method, compared in constant time;
//! and, when the operator asks for it (`reads_need_token`), a layer that requires it on reads
//! of `/api/…` as well.
//!
//! There are no users or scopes: one token guards every mutating endpoint.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::rest::RestState;
use crate::rest::error::ApiError;

/// Rejects a mutating request without the admin token (401) before anything reads its body.
pub async fn require_admin_for_writes(
    State(state): State<RestState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let read_only = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !read_only {
        check_bearer(request.headers(), &state.admin_token)?;
    }
    Ok(next.run(request).await)
}

/// With `reads_need_token`, a read of `/api/…` without the admin token is refused (401);
/// `/health`, `/metrics` and the page's own files stay open (probes, scrapers, the page's
/// token prompt).
pub async fn require_admin_for_api_reads(
    State(state): State<RestState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.reads_need_token && request.uri().path().starts_with("/api/") {
        check_bearer(request.headers(), &state.admin_token)?;
    }
    Ok(next.run(request).await)
}

fn check_bearer(headers: &HeaderMap, admin_token: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <token>` header",
        ));
    };
    let offered = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(offered) = offered else {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    };
    if !constant_time_eq(offered.as_bytes(), admin_token.as_bytes()) {
        return Err(ApiError::unauthorized("invalid bearer token"));
    }
    Ok(())
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right. (The length is not secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    difference == 0
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, StatusCode};

    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"t0ken", b"t0ken"));
        assert!(!constant_time_eq(b"t0ken", b"t0kem"));
        assert!(!constant_time_eq(b"t0ken", b"t0ken!"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert!(check_bearer(&with_authorization("Bearer t0ken"), "t0ken").is_ok());
        assert!(check_bearer(&with_authorization("bearer t0ken"), "t0ken").is_ok());
        for refused in ["Bearer wrong", "Basic t0ken", "t0ken", "Bearer "] {
            let err = check_bearer(&with_authorization(refused), "t0ken").unwrap_err();
            assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{refused}");
        }
        let missing = check_bearer(&HeaderMap::new(), "t0ken").unwrap_err();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    }
}
