//! Connections between members: herald opens and accepts them itself and hands the streams to
//! ractor_cluster's `NodeServer` as external transports. So it controls what ractor_cluster
//! does not: the exact listen address (port 0 included), a deadline on connecting, and labels
//! that tie each session back to the dial that opened it.
//!
//! Labels: a session this node dialed is labelled `dial <id> <address>`, an accepted one
//! `in <peer address>`; ractor_cluster reports them back as the session's `peer_addr`.

use std::io;
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServerMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::membership::DialId;

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

/// Opens a connection to `address` within `timeout` and hands it to `server` as dial `dial`.
pub async fn dial(
    server: &ActorRef<NodeServerMessage>,
    dial: DialId,
    address: &str,
    timeout: Duration,
) -> io::Result<()> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?.to_string();
    let labelled = Labelled {
        stream,
        peer: format!("dial {dial} {address}"),
        local,
    };
    ractor_cluster::client_connect_external(server, Box::new(labelled))
        .await
        .map_err(|err| io::Error::other(format!("{err:?}")))
}

/// Accepts connections on `listener` and hands each to `server`, until the task is aborted.
pub async fn accept_loop(listener: TcpListener, server: ActorRef<NodeServerMessage>) {
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
        let labelled = Labelled {
            stream,
            peer: format!("in {peer}"),
            local,
        };
        let opened = NodeServerMessage::ConnectionOpenedExternal {
            stream: Box::new(labelled),
            is_server: true,
        };
        if server.cast(opened).is_err() {
            // The node server is gone: so is this link.
            return;
        }
    }
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
