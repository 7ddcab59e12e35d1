//! `HttpPoolLink`: the resync driver's way to a pool on another node, through that peer's
//! `POST /api/registers/bulk-advertise` with the admin token.
//!
//! Answers become `PoolLinkError`s that tell the driver what happened: a 4xx is a refusal
//! (`Refused`, with the peer's reason), a 5xx, 408, 429, a connection failure or a timeout is
//! `Unreachable`. `reqwest::Error` never leaves this file. It does not retry: the driver owns
//! the backoff. It reads no proxy settings from the environment.
//!
//! An `https://` base URL is reached over TLS (rustls on aws-lc-rs): the configured CA only, or
//! the system's roots without one, and a client certificate when configured.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use herald_actors::ports::{PoolLink, PoolLinkError, error_chain};
use herald_messages::{BulkAdvertise, BulkOutcome};

use crate::tls::ClientPem;

/// Longest wait for a TCP connection: a peer that is down is reported in this time, not after
/// the whole request timeout. Capped by the request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Path of the peer's bulk endpoint under its base URL.
const BULK_ADVERTISE_PATH: &str = "/api/registers/bulk-advertise";
/// Most characters of a peer's error text quoted in a refusal.
const MAX_QUOTED_CHARS: usize = 300;

/// Pushes to a peer's pool over HTTP.
pub struct HttpPoolLink {
    client: reqwest::Client,
    base_url: String,
    endpoint: Url,
    authorization: HeaderValue,
    timeout: Duration,
}

/// Why an `HttpPoolLink` could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpLinkError {
    #[error("{url:?} is not a usable base URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("the peer token cannot be sent in an HTTP header (control characters?)")]
    InvalidToken,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl HttpPoolLink {
    /// A link to the peer at `base_url` (`http://host:port`), authenticated with `token`; each
    /// push must complete within `timeout`.
    pub fn new(base_url: &str, token: &str, timeout: Duration) -> Result<Self, HttpLinkError> {
        Self::new_with_tls(base_url, token, timeout, None)
    }

    /// `new`, trusting only `tls`' CA (when it has one) and presenting its client certificate.
    pub fn new_with_tls(
        base_url: &str,
        token: &str,
        timeout: Duration,
        tls: Option<&ClientPem>,
    ) -> Result<Self, HttpLinkError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let invalid_url = |reason: String| HttpLinkError::InvalidUrl {
            url: base_url.clone(),
            reason,
        };
        let endpoint = Url::parse(&format!("{base_url}{BULK_ADVERTISE_PATH}"))
            .map_err(|err| invalid_url(err.to_string()))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(invalid_url("the scheme must be http or https".into()));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| HttpLinkError::InvalidToken)?;
        authorization.set_sensitive(true);
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = tls.and_then(|pem| pem.ca.as_ref()) {
            let roots = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|err| HttpLinkError::Client(error_chain(&err)))?;
            builder = builder.tls_certs_only(roots);
        }
        if let Some((cert, key)) = tls.and_then(|pem| pem.identity.as_ref()) {
            let pem = [cert.as_slice(), b"\n", key.as_slice()].concat();
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|err| HttpLinkError::Client(error_chain(&err)))?;
            builder = builder.identity(identity);
        }
        let client = builder
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| HttpLinkError::Client(error_chain(&err)))?;
        Ok(Self {
            client,
            base_url,
            endpoint,
            authorization,
            timeout,
        })
    }
}

#[async_trait]
impl PoolLink for HttpPoolLink {
    async fn push(&self, request: BulkAdvertise) -> Result<BulkOutcome, PoolLinkError> {
        let response = self
            .client
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .json(&request)
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json::<BulkOutcome>()
                .await
                .map_err(|err| self.transport_error(err));
        }
        let body = response.bytes().await.unwrap_or_default();
        let reason = format!("{status}: {}", peer_reason(&body));
        match verdict(status) {
            Verdict::Refused => Err(PoolLinkError::Refused(reason)),
            Verdict::Unreachable => Err(PoolLinkError::Unreachable(Box::new(LinkFailure(
                format!("{} answered {reason}", self.base_url),
            )))),
        }
    }

    fn describe(&self) -> String {
        self.base_url.clone()
    }
}

impl HttpPoolLink {
    fn transport_error(&self, err: reqwest::Error) -> PoolLinkError {
        let what = if err.is_timeout() {
            format!("{} did not answer within {:?}", self.base_url, self.timeout)
        } else if err.is_connect() {
            format!("cannot connect to {}: {}", self.base_url, error_chain(&err))
        } else if err.is_decode() {
            format!(
                "{} answered something that is not a bulk outcome: {}",
                self.base_url,
                error_chain(&err)
            )
        } else {
            format!("request to {} failed: {}", self.base_url, error_chain(&err))
        };
        PoolLinkError::Unreachable(Box::new(LinkFailure(what)))
    }
}

/// A transport failure as text, so no driver type leaves this file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LinkFailure(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The peer decided against the request; sending it again unchanged will not help.
    Refused,
    /// The peer is down, overloaded or in the way: retry later.
    Unreachable,
}

/// How a non-2xx status is reported to the driver.
fn verdict(status: StatusCode) -> Verdict {
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if transient {
        return Verdict::Unreachable;
    }
    // Other 4xx, and 3xx (redirects are not followed: the base URL is wrong).
    Verdict::Refused
}

/// The `error` of our error body, or the start of whatever else the peer sent.
fn peer_reason(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if text.is_empty() {
        return "no reason given".to_owned();
    }
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_refusals_and_the_rest_is_transient() {
        assert_eq!(verdict(StatusCode::UNAUTHORIZED), Verdict::Refused);
        assert_eq!(verdict(StatusCode::CONFLICT), Verdict::Refused);
        assert_eq!(verdict(StatusCode::BAD_REQUEST), Verdict::Refused);
        assert_eq!(verdict(StatusCode::MOVED_PERMANENTLY), Verdict::Refused);
        assert_eq!(
            verdict(StatusCode::SERVICE_UNAVAILABLE),
            Verdict::Unreachable
        );
        assert_eq!(
            verdict(StatusCode::INTERNAL_SERVER_ERROR),
            Verdict::Unreachable
        );
        assert_eq!(verdict(StatusCode::TOO_MANY_REQUESTS), Verdict::Unreachable);
        assert_eq!(verdict(StatusCode::REQUEST_TIMEOUT), Verdict::Unreachable);
    }

    #[test]
    fn peer_reason_prefers_our_error_body() {
        assert_eq!(
            peer_reason(br#"{"error":"invalid bearer token"}"#),
            "invalid bearer token"
        );
        assert_eq!(peer_reason(b" plain text "), "plain text");
        assert_eq!(peer_reason(b""), "no reason given");
        assert_eq!(
            peer_reason("x".repeat(1000).as_bytes()).chars().count(),
            MAX_QUOTED_CHARS + 1
        );
    }

    #[test]
    fn the_base_url_is_checked_and_trimmed() {
        let link = HttpPoolLink::new("http://127.0.0.1:9/", "t", Duration::from_secs(1)).unwrap();
        assert_eq!(link.describe(), "http://127.0.0.1:9");
        assert_eq!(
            link.endpoint.as_str(),
            "http://127.0.0.1:9/api/registers/bulk-advertise"
        );
        assert!(matches!(
            HttpPoolLink::new("not a url", "t", Duration::from_secs(1)),
            Err(HttpLinkError::InvalidUrl { .. })
        ));
        assert!(matches!(
            HttpPoolLink::new("ftp://host", "t", Duration::from_secs(1)),
            Err(HttpLinkError::InvalidUrl { .. })
        ));
        assert!(matches!(
            HttpPoolLink::new("http://host", "bad\ntoken", Duration::from_secs(1)),
            Err(HttpLinkError::InvalidToken)
        ));
    }
}
