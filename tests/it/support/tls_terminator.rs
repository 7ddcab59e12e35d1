//! A TLS front for a server that speaks no TLS itself (the MongoDB-wire stand-in): it accepts
//! TLS on a loopback port with a certificate of the test's CA, optionally requires a client
//! certificate from a CA, and forwards the decrypted bytes to the server over plain TCP, as a
//! TLS-terminating load balancer in front of a database does. The server behind it is real; the
//! TLS the client under test negotiates is real.
//!
//! ```ignore
//! let front = TlsTerminator::start(server_addr, &pki.loopback_server("db"), Some(&pki.ca)).await;
//! // connect to front.addr() with TLS
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::certs::Issued;

pub struct TlsTerminator {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsTerminator {
    /// Listens on a free loopback port with `server`'s certificate and forwards to `target`;
    /// with `client_ca`, a client must present a certificate that CA signed.
    pub async fn start(target: SocketAddr, server: &Issued, client_ca: Option<&Path>) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).unwrap() {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain = CertificateDer::pem_file_iter(&server.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&server.key).unwrap();
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake (wrong CA, no client certificate) just ends here.
                    let Ok(mut tls) = acceptor.accept(inbound).await else {
                        return;
                    };
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                });
            }
        });
        TlsTerminator { addr, task }
    }

    /// Where clients connect with TLS.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
