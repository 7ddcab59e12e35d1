//! Connections between members: herald opens and accepts them itself and hands the streams to
//! ractor_cluster's `NodeServer` as external transports. So it controls what ractor_cluster
//! does not: the exact listen address (port 0 included), a deadline on connecting, and labels
//! that tie each session back to the dial that opened it.
//!
//! With TLS (`Security::Tls`), both sides present certificates from the deployment's CA
//! (mutual TLS); each accepted connection's handshake runs in its own task with a deadline, so
//! a client that connects and says nothing holds up nobody (ractor_cluster's own listener does
//! the handshake inline, with no deadline: one idle connection would block every later one).
//!
//! Labels: a session this node dialed is labelled `dial <id> <address>`, an accepted one
//! `in <peer address>`; ractor_cluster reports them back as the session's `peer_addr`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServerMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, warn};

use super::membership::DialId;

/// How members' connections are protected.
#[derive(Clone)]
pub enum Security {
    /// Plain TCP: the cookie authenticates the handshake, nothing after it is.
    Plain,
    /// Mutual TLS.
    Tls {
        acceptor: TlsAcceptor,
        connector: TlsConnector,
        /// Deadline of an accepted connection's TLS handshake.
        handshake_timeout: Duration,
    },
}

impl Security {
    /// ractor_cluster's listener mode for its own (never dialed) listener: the same protection.
    pub fn listener_mode(&self) -> ractor_cluster::IncomingEncryptionMode {
        match self {
            Security::Plain => ractor_cluster::IncomingEncryptionMode::Raw,
            Security::Tls { acceptor, .. } => {
                ractor_cluster::IncomingEncryptionMode::Tls(acceptor.clone())
            }
        }
    }

    /// Mutual TLS from loaded PEM (`ClusterTls::load`).
    pub fn tls(
        server: &crate::tls::ServerPem,
        client: &crate::tls::ClientPem,
        handshake_timeout: Duration,
    ) -> Result<Security, crate::tls::CredentialError> {
        Ok(Security::Tls {
            acceptor: TlsAcceptor::from(server.rustls_config(&[])?),
            connector: TlsConnector::from(client.rustls_config()?),
            handshake_timeout,
        })
    }
}

/// A stream ractor_cluster can run a session over.
struct Labelled<S> {
    stream: S,
    peer: String,
    local: String,
}

impl<S> ClusterBidiStream for Labelled<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = tokio::io::split(self.stream);
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer.clone())
    }

    fn local_label(&self) -> Option<String> {
        Some(self.local.clone())
    }
}

/// Where a session came from, read back from its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Dialed { dial: DialId, address: String },
    Accepted { peer: String },
}

impl Origin {
    pub fn parse(label: &str) -> Option<Origin> {
        let mut words = label.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("dial"), Some(dial), Some(address)) => Some(Origin::Dialed {
                dial: dial.parse().ok()?,
                address: address.to_owned(),
            }),
            (Some("in"), Some(peer), None) => Some(Origin::Accepted {
                peer: peer.to_owned(),
            }),
            _ => None,
        }
    }
}

/// Opens a connection to `address` within `timeout` (TLS handshake included) and hands it to
/// `server` as dial `dial`.
pub async fn dial(
    server: &ActorRef<NodeServerMessage>,
    dial: DialId,
    address: &str,
    timeout: Duration,
    security: &Security,
) -> io::Result<()> {
    let peer = format!("dial {dial} {address}");
    let connected = async {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?.to_string();
        let labelled: Box<dyn ClusterBidiStream> = match security {
            Security::Plain => Box::new(Labelled {
                stream,
                peer,
                local,
            }),
            Security::Tls { connector, .. } => {
                let host = address
                    .rsplit_once(':')
                    .map_or(address, |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
                let stream = connector.connect(name, stream).await?;
                Box::new(Labelled {
                    stream,
                    peer,
                    local,
                })
            }
        };
        io::Result::Ok(labelled)
    };
    let labelled = tokio::time::timeout(timeout, connected)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    ractor_cluster::client_connect_external(server, labelled)
        .await
        .map_err(|err| io::Error::other(format!("{err:?}")))
}

/// Accepts connections on `listener` and hands each to `server`, until the task is aborted.
/// TLS handshakes run one task per connection, each with its deadline.
pub async fn accept_loop(
    listener: TcpListener,
    server: ActorRef<NodeServerMessage>,
    security: Security,
    refused: Arc<dyn Fn(String, String) + Send + Sync>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                warn!(error = %err, "cluster listener cannot accept; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .map(|addr| addr.to_string())
            .unwrap_or_default();
        debug!(%peer, "cluster connection accepted");
        let label = format!("in {peer}");
        match &security {
            Security::Plain => {
                let labelled = Labelled {
                    stream,
                    peer: label,
                    local,
                };
                if !hand_over(&server, Box::new(labelled)) {
                    return;
                }
            }
            Security::Tls {
                acceptor,
                handshake_timeout,
                ..
            } => {
                let acceptor = acceptor.clone();
                let server = server.clone();
                let refused = Arc::clone(&refused);
                let deadline = *handshake_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let labelled = Labelled {
                                stream,
                                peer: label,
                                local,
                            };
                            hand_over(&server, Box::new(labelled));
                        }
                        Ok(Err(err)) => refused(peer.to_string(), err.to_string()),
                        Err(_) => refused(
                            peer.to_string(),
                            format!("no TLS handshake within {deadline:?}"),
                        ),
                    }
                });
            }
        }
    }
}

/// Gives an accepted stream to the node server; false when it is gone (so is the link).
fn hand_over(server: &ActorRef<NodeServerMessage>, stream: Box<dyn ClusterBidiStream>) -> bool {
    server
        .cast(NodeServerMessage::ConnectionOpenedExternal {
            stream,
            is_server: true,
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_back() {
        assert_eq!(
            Origin::parse("dial 7 127.0.0.1:9000"),
            Some(Origin::Dialed {
                dial: 7,
                address: "127.0.0.1:9000".into()
            })
        );
        assert_eq!(
            Origin::parse("in 10.0.0.1:5555"),
            Some(Origin::Accepted {
                peer: "10.0.0.1:5555".into()
            })
        );
        assert_eq!(Origin::parse("0.0.0.0:0"), None);
        assert_eq!(Origin::parse("dial x y"), None);
    }
}
