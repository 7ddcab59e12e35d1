//! `HttpServer`: serves the REST router over HTTP/1.1 on a listener it binds, until stopped.
//!
//! It drives hyper's connection builder itself instead of `axum::serve`, for what that does not
//! offer: a header read timeout (a client that trickles its request headers is disconnected after
//! `header_timeout`, so slow clients cannot hold connections open; hyper times the next request's
//! headers from the end of the last response, so a keep-alive connection idle that long closes
//! too) and `TCP_NODELAY`. Stopping
//! closes the listener, lets requests in flight finish (idle keep-alive connections close), and
//! after the caller's deadline aborts what is left.
//!
//! With a TLS configuration it serves HTTPS (rustls on aws-lc-rs, ALPN `http/1.1`): each
//! connection's handshake runs in the connection's own task and must complete within
//! `header_timeout` too, so a client stalling its handshake holds nothing either.
//!
//! Not here: the routes and their limits (`rest::router`; a declared body over the limit is
//! refused there before it is read), the admin token (`rest::auth`), and HTTP/2 (no client of
//! this API speaks it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error};

use crate::server::{ServerTask, Stopping};

/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The REST API's server.
pub(crate) struct HttpServer;

impl HttpServer {
    /// Binds `addr` and serves `router` from a task until the task is stopped; HTTPS with `tls`
    /// when given.
    pub(crate) async fn start(
        addr: SocketAddr,
        router: Router,
        header_timeout: Duration,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<ServerTask> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let acceptor = tls.map(TlsAcceptor::from);
        Ok(ServerTask::spawn("REST API", addr, move |stopping| {
            serve(listener, router, header_timeout, acceptor, stopping)
        }))
    }
}

/// Accepts connections until `stopped`, then shuts them down gracefully. Connections run in a
/// `JoinSet` owned by this task: aborting the task aborts them too.
async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    acceptor: Option<TlsAcceptor>,
    stopping: Stopping,
) {
    tokio::pin!(stopping);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        tokio::select! {
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(err) = stream.set_nodelay(true) {
                        debug!(%peer, %err, "cannot set TCP_NODELAY");
                    }
                    let service = TowerToHyperService::new(router.clone());
                    let Some(acceptor) = &acceptor else {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        let connection = graceful.watch(connection);
                        connections.spawn(async move {
                            // A client that goes away or sends garbage ends its own connection
                            // only.
                            if let Err(err) = connection.await {
                                debug!(%peer, %err, "HTTP connection ended with an error");
                            }
                        });
                        continue;
                    };
                    let handshake = acceptor.accept(stream);
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    connections.spawn(async move {
                        let stream = match tokio::time::timeout(header_timeout, handshake).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                debug!(%peer, %err, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        if let Err(err) = watcher.watch(connection).await {
                            debug!(%peer, %err, "HTTPS connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    error!(%err, "cannot accept an HTTP connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
}
