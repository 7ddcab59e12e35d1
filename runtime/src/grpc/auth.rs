//! Who may call a hub: `HubAuth` checks every request's credentials against the peer id the
//! request claims, before the request is validated or reaches the authority, so that a missing
//! or wrong credential is `UNAUTHENTICATED` and changes nothing.
//!
//! Two credentials, either or both:
//! - a **bearer token** (`authorization: Bearer <token>` metadata), one per configured peer;
//! - a **client certificate** (mutual TLS, checked against the client CAs by the TLS handshake):
//!   its subject alternative names must include the claimed peer id as a DNS name.
//!
//! With peers configured, only they may call; with none and no mutual TLS, anyone may (the
//! hub warns at start). Tokens are compared in constant time and never logged; a refusal says
//! what was wrong, never what was expected. Not here: the rate limits (`grpc::limits`, applied
//! after this check), sessions (the authority).

use std::collections::HashMap;

use rustls::pki_types::{CertificateDer, DnsName, ServerName};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::tls::same_secret;

/// The metadata key of the bearer token.
pub(crate) const AUTHORIZATION: &str = "authorization";
const BEARER: &str = "Bearer ";

/// The credentials a hub requires.
#[derive(Clone, Default)]
pub struct HubAuth {
    /// Configured peers and their tokens (`None`: the certificate alone identifies it).
    peers: HashMap<String, Option<String>>,
    certificates: ClientCertificates,
}

/// Whether callers' TLS client certificates identify them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientCertificates {
    /// No mutual TLS: certificates prove nothing about the caller.
    #[default]
    Ignored,
    /// Mutual TLS: the certificate (verified against the client CAs by the handshake) must
    /// name the peer the request speaks for.
    MustNamePeer,
}

impl std::fmt::Debug for HubAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut peers: Vec<&String> = self.peers.keys().collect();
        peers.sort();
        f.debug_struct("HubAuth")
            .field("peers", &peers)
            .field("certificates", &self.certificates)
            .finish()
    }
}

/// What a request presented.
pub(crate) struct Caller {
    bearer: Option<String>,
    leaf: Option<CertificateDer<'static>>,
}

impl HubAuth {
    /// Anyone may call.
    pub fn open() -> Self {
        Self::default()
    }

    /// Only `peers` may call (any peer when empty), each with its token when it has one
    /// (`(peer id, token)`); under mutual TLS, `certificates` says a client's certificate must
    /// name the peer it calls as.
    pub fn new(
        peers: impl IntoIterator<Item = (String, Option<String>)>,
        certificates: ClientCertificates,
    ) -> Self {
        Self {
            peers: peers.into_iter().collect(),
            certificates,
        }
    }

    /// Whether every caller is let in.
    pub fn is_open(&self) -> bool {
        self.peers.is_empty() && self.certificates == ClientCertificates::Ignored
    }

    /// The credentials `request` carries.
    pub(crate) fn caller<T>(request: &Request<T>) -> Caller {
        let leaf = request
            .peer_certs()
            .and_then(|chain| chain.first().cloned());
        Caller {
            bearer: bearer(request.metadata()),
            leaf,
        }
    }

    /// Whether `caller` may call as `peer_id` (the id its request names).
    pub(crate) fn check(&self, caller: &Caller, peer_id: &str) -> Result<(), Status> {
        if self.is_open() {
            return Ok(());
        }
        if !self.peers.is_empty() {
            let Some(expected) = self.peers.get(peer_id) else {
                return Err(Status::unauthenticated(format!(
                    "peer {:?} has no credentials on this hub",
                    shortened(peer_id)
                )));
            };
            if let Some(expected) = expected {
                match &caller.bearer {
                    None => {
                        return Err(Status::unauthenticated(
                            "missing bearer token (authorization metadata)",
                        ));
                    }
                    Some(presented) if !same_secret(presented.as_bytes(), expected.as_bytes()) => {
                        return Err(Status::unauthenticated(format!(
                            "wrong bearer token for peer {peer_id}"
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        if self.certificates == ClientCertificates::MustNamePeer {
            let Some(leaf) = &caller.leaf else {
                return Err(Status::unauthenticated("no client certificate"));
            };
            if !certificate_names(leaf, peer_id) {
                return Err(Status::unauthenticated(format!(
                    "the client certificate does not name peer {:?}",
                    shortened(peer_id)
                )));
            }
        }
        Ok(())
    }
}

/// The token of an `authorization: Bearer <token>` entry.
fn bearer(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get(AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix(BEARER).map(str::to_owned)
}

/// Whether the certificate's subject alternative names include `peer_id` as a DNS name.
fn certificate_names(leaf: &CertificateDer<'_>, peer_id: &str) -> bool {
    let Ok(name) = DnsName::try_from(peer_id) else {
        return false;
    };
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(leaf) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &ServerName::DnsName(name)).is_ok()
}

/// An unvalidated id, cut short for a message.
fn shortened(raw: &str) -> &str {
    match raw.char_indices().nth(64) {
        Some((cut, _)) => &raw[..cut],
        None => raw,
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic::metadata::MetadataValue;

    use super::*;

    fn caller(bearer: Option<&str>) -> Caller {
        Caller {
            bearer: bearer.map(str::to_owned),
            leaf: None,
        }
    }

    fn tokens() -> HubAuth {
        HubAuth::new(
            [
                ("peer-a".to_owned(), Some("token-a".to_owned())),
                ("peer-b".to_owned(), Some("token-b".to_owned())),
            ],
            ClientCertificates::Ignored,
        )
    }

    #[test]
    fn an_open_hub_lets_anyone_in() {
        assert!(HubAuth::open().check(&caller(None), "anyone").is_ok());
    }

    #[test]
    fn a_peer_must_send_its_own_token() {
        let auth = tokens();
        assert!(auth.check(&caller(Some("token-a")), "peer-a").is_ok());
        for (presented, peer) in [
            (None, "peer-a"),
            (Some("token-b"), "peer-a"),
            (Some("token-a "), "peer-a"),
            (Some("token-a"), "peer-c"),
        ] {
            let refusal = auth.check(&caller(presented), peer).unwrap_err();
            assert_eq!(
                refusal.code(),
                Code::Unauthenticated,
                "{presented:?} as {peer}"
            );
            assert!(
                !refusal.message().contains("token-"),
                "{}",
                refusal.message()
            );
        }
    }

    #[test]
    fn mutual_tls_needs_a_certificate() {
        let auth = HubAuth::new([], ClientCertificates::MustNamePeer);
        let refusal = auth.check(&caller(None), "peer-a").unwrap_err();
        assert_eq!(refusal.code(), Code::Unauthenticated);
    }

    #[test]
    fn the_bearer_is_read_from_the_authorization_metadata() {
        let mut metadata = MetadataMap::new();
        assert_eq!(bearer(&metadata), None);
        metadata.insert(AUTHORIZATION, MetadataValue::from_static("Bearer abc"));
        assert_eq!(bearer(&metadata).as_deref(), Some("abc"));
        metadata.insert(AUTHORIZATION, MetadataValue::from_static("Basic abc"));
        assert_eq!(bearer(&metadata), None);
    }
}
