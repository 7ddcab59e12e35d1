//! TLS material and secrets on herald's links: what the configuration names (certificate, key
//! and CA files in PEM; bearer tokens inline or in files), checked when the configuration is
//! validated (`RawServerTls`, `RawClientTls`, `Secret::from_fields`), and read when the node
//! starts (`ServerTls::load`, `ClientTls::load`, `Secret::read`), so that a missing or broken
//! file stops the start with its path named instead of failing the first connection.
//!
//! The one crypto provider of the build is aws-lc-rs (ractor_cluster forces it; no second
//! provider such as ring is ever linked): the rustls configurations built here name it
//! explicitly, so nothing depends on a process-wide default being installed.
//!
//! Not here: which link uses what (each adapter turns the checked PEM into its driver's type:
//! `grpc::client`, `grpc::server`, `rest::server`, `links::http_pool_link`,
//! `stores::redis_connection`), and who may call a hub (`grpc::auth`). Secrets are never logged
//! and never printed by `Debug`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// TLS of a server herald runs (the hub's gRPC server, the REST API), as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    /// The server's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// TLS of a connection herald opens (to a hub, to a peer's REST API, to Redis), as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientTls {
    /// CAs that sign the server's certificate (PEM); the system's roots when absent.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key (PEM), for servers that ask for one. Both or
    /// neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Mutual TLS between cluster members, as configured: every member presents a certificate
/// signed by `ca_file` and checks the other's against it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClusterTls {
    /// This member's certificate chain (PEM), leaf first: it must name the host part of the
    /// member's advertised cluster address (a DNS name or an IP address).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA of the deployment's members (PEM).
    pub ca_file: PathBuf,
}

/// A validated `RawClusterTls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

/// A validated `RawServerTls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// A validated `RawClientTls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    pub identity: Option<IdentityFiles>,
}

/// A certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A secret (a bearer token): given inline, or the path of a file holding it (so that it
/// appears neither on a command line, where `ps` shows it, nor in a configuration file).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Inline(<redacted>)"),
            Secret::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::Inline(value.to_owned())
    }
}

/// Why TLS material or a secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} {path} holds no {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("the {what} {path} is not valid PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The files load but do not make a TLS configuration (a key that does not match its
    /// certificate, a CA that is not one).
    #[error("unusable TLS material: {0}")]
    Unusable(String),
}

/// Checked PEM of a server: its chain and key, and the CAs of its clients (mutual TLS).
#[derive(Clone)]
pub struct ServerPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

/// Checked PEM of a client: the CAs it trusts (`None`: the system's), and its own identity.
#[derive(Clone, Default)]
pub struct ClientPem {
    pub ca: Option<Vec<u8>>,
    /// Certificate chain, then key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ServerPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPem")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPem")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl RawServerTls {
    /// Checks that the paths are given; `field` names the table (`hub.tls`).
    pub(crate) fn validate(self, field: &'static str) -> Result<ServerTls, ConfigError> {
        let cert_file = required_path(field, "cert_file", self.cert_file)?;
        let key_file = required_path(field, "key_file", self.key_file)?;
        let client_ca_file = optional_path(field, "client_ca_file", self.client_ca_file)?;
        Ok(ServerTls {
            cert_file,
            key_file,
            client_ca_file,
        })
    }
}

impl RawClusterTls {
    /// Checks that the three paths are given; `field` names the table (`cluster.tls`).
    pub(crate) fn validate(self, field: &'static str) -> Result<ClusterTls, ConfigError> {
        Ok(ClusterTls {
            cert_file: required_path(field, "cert_file", self.cert_file)?,
            key_file: required_path(field, "key_file", self.key_file)?,
            ca_file: required_path(field, "ca_file", self.ca_file)?,
        })
    }
}

impl ClusterTls {
    /// Reads and checks the files: the member's side as a server (clients must present a
    /// certificate from the CA) and as a client (its own certificate, the CA's roots).
    pub fn load(&self) -> Result<(ServerPem, ClientPem), CredentialError> {
        let cert = read_certificates("cluster certificate file", &self.cert_file)?;
        let key = read_key("cluster key file", &self.key_file)?;
        let ca = read_certificates("cluster CA file", &self.ca_file)?;
        let server = ServerPem {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(ca.clone()),
        };
        let client = ClientPem {
            ca: Some(ca),
            identity: Some((cert, key)),
        };
        Ok((server, client))
    }
}

impl RawClientTls {
    /// Checks that a client certificate comes with its key; `field` names the table.
    pub(crate) fn validate(self, field: &'static str) -> Result<ClientTls, ConfigError> {
        let ca_file = optional_path(field, "ca_file", self.ca_file)?;
        let cert_file = optional_path(field, "cert_file", self.cert_file)?;
        let key_file = optional_path(field, "key_file", self.key_file)?;
        let identity = match (cert_file, key_file) {
            (None, None) => None,
            (Some(cert_file), Some(key_file)) => Some(IdentityFiles {
                cert_file,
                key_file,
            }),
            _ => {
                return Err(ConfigError::new(
                    field,
                    "cert_file and key_file go together (a client certificate needs its key)",
                ));
            }
        };
        Ok(ClientTls { ca_file, identity })
    }
}

impl Secret {
    /// The secret of a pair of fields `name` / `name_file`: at most one of them, never empty.
    pub(crate) fn from_fields(
        (inline_field, inline): (&'static str, Option<String>),
        (file_field, file): (&'static str, Option<PathBuf>),
    ) -> Result<Option<Secret>, ConfigError> {
        match (inline, file) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(ConfigError::new(
                file_field,
                format!("give {inline_field} or {file_field}, not both"),
            )),
            (Some(value), None) if value.trim().is_empty() => {
                Err(ConfigError::new(inline_field, "must not be empty"))
            }
            (Some(value), None) => Ok(Some(Secret::Inline(value))),
            (None, Some(path)) if path.as_os_str().is_empty() => {
                Err(ConfigError::new(file_field, "must not be empty"))
            }
            (None, Some(path)) => Ok(Some(Secret::File(path))),
        }
    }

    /// The secret's value: inline, or the file's content without surrounding whitespace (a
    /// final newline).
    pub fn read(&self) -> Result<String, CredentialError> {
        match self {
            Secret::Inline(value) => Ok(value.clone()),
            Secret::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
                        what: "secret file",
                        path: path.clone(),
                        source,
                    })?;
                let value = text.trim();
                if value.is_empty() {
                    return Err(CredentialError::Empty {
                        what: "secret file",
                        path: path.clone(),
                        expected: "secret",
                    });
                }
                Ok(value.to_owned())
            }
        }
    }
}

impl crate::config::MongoTls {
    /// Reads and checks the files before the driver is given their paths (it reads them only
    /// when it first connects, and would report a bad file as an unreachable server).
    pub fn check(&self) -> Result<(), CredentialError> {
        if let Some(path) = &self.ca_file {
            read_certificates("MongoDB CA file", path)?;
        }
        if let Some(path) = &self.cert_key_file {
            read_certificates("MongoDB certificate-and-key file", path)?;
            read_key("MongoDB certificate-and-key file", path)?;
        }
        Ok(())
    }
}

impl ServerTls {
    /// Reads and checks the files.
    pub fn load(&self) -> Result<ServerPem, CredentialError> {
        let cert = read_certificates("certificate file", &self.cert_file)?;
        let key = read_key("key file", &self.key_file)?;
        let client_ca = match &self.client_ca_file {
            Some(path) => Some(read_certificates("client CA file", path)?),
            None => None,
        };
        Ok(ServerPem {
            cert,
            key,
            client_ca,
        })
    }
}

impl ClientTls {
    /// Reads and checks the files.
    pub fn load(&self) -> Result<ClientPem, CredentialError> {
        let ca = match &self.ca_file {
            Some(path) => Some(read_certificates("CA file", path)?),
            None => None,
        };
        let identity = match &self.identity {
            Some(files) => Some((
                read_certificates("client certificate file", &files.cert_file)?,
                read_key("client key file", &files.key_file)?,
            )),
            None => None,
        };
        Ok(ClientPem { ca, identity })
    }
}

impl ServerPem {
    /// A rustls server configuration on aws-lc-rs: this chain and key; with client CAs, every
    /// client must present a certificate they signed. `alpn`: the protocols offered.
    pub(crate) fn rustls_config(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, CredentialError> {
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(unusable)?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = root_store(ca)?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(unusable)?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(unusable)?;
        let mut config = builder.with_single_cert(chain, key).map_err(unusable)?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ClientPem {
    /// A rustls client configuration on aws-lc-rs: the configured CAs (the system's roots are
    /// not loaded here: a client without a CA gets an error), and the identity if any.
    pub(crate) fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, CredentialError> {
        let Some(ca) = &self.ca else {
            return Err(unusable("no CA configured"));
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(unusable)?
            .with_root_certificates(root_store(ca)?);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let key = PrivateKeyDer::from_pem_slice(key).map_err(unusable)?;
                builder
                    .with_client_auth_cert(certificates(cert)?, key)
                    .map_err(unusable)?
            }
        };
        Ok(Arc::new(config))
    }
}

/// The crypto provider of every rustls configuration herald builds.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Whether `presented` equals `expected`, in time independent of where they differ (a bearer
/// token compared byte by byte would tell an attacker how much of a guess was right).
pub(crate) fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
        == 0
}

fn required_path(
    table: &'static str,
    name: &'static str,
    path: PathBuf,
) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::new(table, format!("{name} is required")));
    }
    Ok(path)
}

fn optional_path(
    table: &'static str,
    name: &'static str,
    path: Option<PathBuf>,
) -> Result<Option<PathBuf>, ConfigError> {
    match path {
        Some(path) if path.as_os_str().is_empty() => {
            Err(ConfigError::new(table, format!("{name} must not be empty")))
        }
        other => Ok(other),
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|source| CredentialError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The file's bytes, checked to hold at least one PEM certificate.
fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, CredentialError> {
    let pem = read_file(what, path)?;
    let parsed = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| CredentialError::Pem {
            what,
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    if parsed.is_empty() {
        return Err(CredentialError::Empty {
            what,
            path: path.to_owned(),
            expected: "PEM certificate",
        });
    }
    Ok(pem)
}

/// The file's bytes, checked to hold a PEM private key.
fn read_key(what: &'static str, path: &Path) -> Result<Vec<u8>, CredentialError> {
    let pem = read_file(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| CredentialError::Pem {
        what,
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(pem)
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CredentialError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(unusable)
}

fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, CredentialError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(pem)? {
        roots.add(certificate).map_err(unusable)?;
    }
    Ok(roots)
}

fn unusable(err: impl std::fmt::Display) -> CredentialError {
    CredentialError::Unusable(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_inline_or_in_a_file_never_both_never_empty() {
        let inline = ("token", Some("t".to_owned()));
        let file = ("token_file", Some(PathBuf::from("/run/secrets/t")));
        assert_eq!(
            Secret::from_fields(inline.clone(), ("token_file", None)).unwrap(),
            Some(Secret::Inline("t".into()))
        );
        assert_eq!(
            Secret::from_fields(("token", None), file.clone()).unwrap(),
            Some(Secret::File("/run/secrets/t".into()))
        );
        assert_eq!(
            Secret::from_fields(("token", None), ("token_file", None)).unwrap(),
            None
        );
        assert_eq!(
            Secret::from_fields(inline, file).unwrap_err().field,
            "token_file"
        );
        assert_eq!(
            Secret::from_fields(("token", Some(" ".into())), ("token_file", None))
                .unwrap_err()
                .field,
            "token"
        );
    }

    #[test]
    fn a_secret_file_is_read_without_its_final_newline() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(Secret::File(path.clone()).read().unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Secret::File(path).read(),
            Err(CredentialError::Empty { .. })
        ));
        assert!(matches!(
            Secret::File(dir.path().join("absent")).read(),
            Err(CredentialError::Read { .. })
        ));
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let printed = format!("{:?}", Secret::Inline("s3cret".into()));
        assert!(!printed.contains("s3cret"), "{printed}");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let raw = RawClientTls {
            cert_file: Some("c.pem".into()),
            ..RawClientTls::default()
        };
        assert_eq!(
            raw.validate("peer.hub_tls").unwrap_err().field,
            "peer.hub_tls"
        );
        let raw = RawServerTls {
            key_file: "k.pem".into(),
            ..RawServerTls::default()
        };
        assert_eq!(raw.validate("hub.tls").unwrap_err().field, "hub.tls");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }

    #[test]
    fn files_that_are_not_pem_are_named() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let tls = ClientTls {
            ca_file: Some(path.clone()),
            identity: None,
        };
        let err = tls.load().unwrap_err();
        assert!(err.to_string().contains("cert.pem"), "{err}");
    }
}
