//! Measurement 5 of the hub bench (issue 10): the full sync of 10,001 entries over TLS beside
//! the same sync in plaintext, in the same run (ratio).
//!
//! A second hub node serves the bench hub's register (the same `InMemoryBlueprintStore`,
//! loaded at its start) over TLS (rustls on aws-lc-rs, a throwaway CA and loopback certificate
//! made with rcgen), and requires the peer's bearer token, as a production hub would. The
//! plaintext rows are the bench hub itself (no TLS, no token). Both hubs have the default
//! per-peer limits. Rows: `GrpcHubLink::sync(Full)` (the link trusting the CA and sending the
//! token) and the raw generated client, each over TLS and in plaintext, interleaved; then a new
//! connection's first call (`ConnectToCentralNode` on a fresh channel: TCP, and the TLS
//! handshake where there is one).

use herald::parts::runtime::grpc::proto::tonic::metadata::MetadataValue;
use herald::parts::runtime::grpc::proto::v1::central_node_connection_client::CentralNodeConnectionClient;
use herald::parts::runtime::grpc::{HubCredentials, hub_endpoint_with};
use herald::parts::runtime::tls::{ClientPem, ClientTls};
use herald::{RawPeerCredential, RawServerTls};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use super::*;

/// The bearer token of the bench's peer on the TLS hub.
const TOKEN: &str = "bench-peer-t0ken";

/// The TLS hub and a peer's view of it.
struct TlsHub {
    hub: NodeHandle,
    endpoint: HubEndpoint,
    link: GrpcHubLink,
    grant: SessionGrant,
    pem: ClientPem,
    raw: SystemRegisterSyncClient<Channel>,
}

impl Bench {
    pub(crate) async fn tls_full_sync(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("full sync over TLS beside plaintext ...");
        let tls = self.start_tls_hub().await?;
        let mut plain_link = Samples::default();
        let mut tls_link = Samples::default();
        let mut plain_raw = Samples::default();
        let mut tls_raw = Samples::default();
        let mut plain_connect = Samples::default();
        let mut tls_connect = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(6, iteration) {
                match case {
                    0 => plain_link
                        .push_if(keep, self.herald_sync(SyncScope::Full, FULL_ENTRIES).await?),
                    1 => {
                        let request = self.sync_request(SyncScope::Full);
                        let query = SyncQuery {
                            session_id: tls.grant.session_id.clone(),
                            history_id: Some(tls.grant.history_id.clone()),
                            ..request
                        };
                        let started = Instant::now();
                        let entries = tls.link.sync(&tls.endpoint, query, DEADLINE).await?.entries;
                        tls_link.push_if(keep, started.elapsed());
                        ensure!(entries.len() == FULL_ENTRIES, "{} entries", entries.len());
                    }
                    2 => {
                        let request = self.wire_sync_request(SyncScope::Full);
                        let mut client = self.raw_hub.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Full, request, Check::Collect).await?;
                        ensure!(count == FULL_ENTRIES, "{count} entries");
                        plain_raw.push_if(keep, elapsed);
                    }
                    3 => {
                        let mut request = self.wire_sync_request(SyncScope::Full);
                        request.get_mut().session_id = tls.grant.session_id.to_string();
                        request.get_mut().history_id = tls.grant.history_id.to_string();
                        request.metadata_mut().insert(
                            "authorization",
                            MetadataValue::try_from(format!("Bearer {TOKEN}"))?,
                        );
                        let mut client = tls.raw.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Full, request, Check::Collect).await?;
                        ensure!(count == FULL_ENTRIES, "{count} entries");
                        tls_raw.push_if(keep, elapsed);
                    }
                    4 => {
                        let credentials = HubCredentials::default();
                        plain_connect.push_if(
                            keep,
                            first_call(&self.hub_endpoint.url, &credentials).await?,
                        );
                    }
                    _ => {
                        let credentials = HubCredentials::new(Some(&tls.pem), Some(TOKEN))?;
                        tls_connect
                            .push_if(keep, first_call(&tls.endpoint.url, &credentials).await?);
                    }
                }
            }
        }
        report.section(format!(
            "Full sync of {FULL_ENTRIES} entries of ~2 KB over TLS beside plaintext (issue 10)"
        ));
        report.note(
            "TLS: rustls on aws-lc-rs (TLS 1.3, the default cipher suite negotiated on loopback), an ECDSA P-256 certificate; the TLS hub also checks the peer's bearer token on every call. Ratios are TLS over plaintext.".to_owned(),
        );
        report.row(
            "plaintext: `GrpcHubLink::sync(Full)` against the bench hub",
            &plain_link,
            None,
        );
        report.row(
            "TLS + token: `GrpcHubLink::sync(Full)` against the TLS hub",
            &tls_link,
            Some(&plain_link),
        );
        report.row(
            "plaintext: raw client ← herald's hub server",
            &plain_raw,
            None,
        );
        report.row(
            "TLS + token: raw client ← herald's TLS hub server",
            &tls_raw,
            Some(&plain_raw),
        );
        report.row(
            "plaintext: a new connection's first call (`ConnectToCentralNode`)",
            &plain_connect,
            None,
        );
        report.row(
            "TLS + token: a new connection's first call (TCP, TLS handshake, `ConnectToCentralNode`)",
            &tls_connect,
            Some(&plain_connect),
        );
        tls.hub.shutdown().await;
        Ok(())
    }

    /// A second hub over TLS on the bench hub's register, its token-holding peer connected.
    async fn start_tls_hub(&self) -> Result<TlsHub> {
        let dir = self.dir.path().join("tls");
        std::fs::create_dir_all(&dir)?;
        let files = write_certificates(&dir)?;
        let config = RawNodeConfig {
            node_id: "bench-hub-tls".into(),
            data_dir: Some(dir.join("data")),
            hub: Some(RawHubConfig {
                grpc_addr: "127.0.0.1:0".into(),
                tls: Some(RawServerTls {
                    cert_file: files.cert.clone(),
                    key_file: files.key.clone(),
                    client_ca_file: None,
                }),
                peers: vec![RawPeerCredential {
                    id: self.peer_id.to_string(),
                    token: Some(TOKEN.into()),
                    token_file: None,
                }],
                ..RawHubConfig::default()
            }),
            ..RawNodeConfig::default()
        }
        .validate()?;
        let overrides = StoreOverrides {
            blueprint_store: Some(self.store.clone()),
            ..StoreOverrides::default()
        };
        let hub = Node::start_with(config, overrides).await?;
        let addr = hub.grpc_addr().context("a hub serves gRPC")?;
        let endpoint = HubEndpoint {
            id: NodeId::parse("bench-hub-tls")?,
            url: format!("https://{addr}"),
            priority: 0,
        };
        let pem = ClientTls {
            ca_file: Some(files.ca.clone()),
            identity: None,
        }
        .load()?;
        let link = GrpcHubLink::new(self.peer_id.clone(), "bench-peer.local:7000".into())
            .with_credentials(HubCredentials::new(Some(&pem), Some(TOKEN))?);
        let grant = link
            .connect(&endpoint, connect_request(&self.peer_id), DEADLINE)
            .await?;
        let channel = hub_endpoint_with(&endpoint.url, &HubCredentials::new(Some(&pem), None)?)?
            .connect()
            .await?;
        let raw =
            SystemRegisterSyncClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(TlsHub {
            hub,
            endpoint,
            link,
            grant,
            pem,
            raw,
        })
    }
}

/// A fresh channel's first call: a connect that the hub refuses as invalid (an empty request),
/// so no session is created; the time covers TCP, the TLS handshake and one round trip.
async fn first_call(url: &str, credentials: &HubCredentials) -> Result<Duration> {
    let started = Instant::now();
    let channel = hub_endpoint_with(url, credentials)?.connect().await?;
    let mut client = CentralNodeConnectionClient::new(channel);
    let mut request = Request::new(v1::ConnectRequest::default());
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {TOKEN}"))?,
    );
    let answer = client.connect_to_central_node(request).await;
    let elapsed = started.elapsed();
    ensure!(answer.is_err(), "an empty connect request was accepted");
    Ok(elapsed)
}

struct CertificateFiles {
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

/// A throwaway CA and a loopback server certificate it signed, as PEM files in `dir`.
fn write_certificates(dir: &std::path::Path) -> Result<CertificateFiles> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca_certificate = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let server_key = KeyPair::generate()?;
    let server_certificate = server_params.signed_by(&server_key, &issuer)?;
    let files = CertificateFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("hub.pem"),
        key: dir.join("hub-key.pem"),
    };
    std::fs::write(&files.ca, ca_certificate.pem())?;
    std::fs::write(&files.cert, server_certificate.pem())?;
    std::fs::write(&files.key, server_key.serialize_pem())?;
    Ok(files)
}
