//! `ServerTask`: the lifecycle the node's servers share (the REST API and the hub's gRPC
//! server): serve from a task on a bound address until asked to stop, then let calls in flight
//! finish within a deadline and abort what is left.
//!
//! What each server serves, and how it stops gracefully, is its own (`rest::server`,
//! `grpc::server`); this type only owns the task and the stop signal.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::warn;

/// A server running in a task until `stop`.
#[derive(Debug)]
pub struct ServerTask {
    /// What it serves, for logs (`REST API`, `gRPC server`).
    name: &'static str,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    join: JoinHandle<()>,
}

impl ServerTask {
    /// Runs `serve` in a task; the future it is given resolves when the server is to stop.
    pub fn spawn<S, F>(name: &'static str, addr: SocketAddr, serve: S) -> Self
    where
        S: FnOnce(Stopping) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopping) = oneshot::channel();
        let join = tokio::spawn(serve(Stopping(stopping)));
        Self {
            name,
            addr,
            stop,
            join,
        }
    }

    /// The address it listens on (the bound port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Asks the server to stop, waits up to `deadline` for calls in flight, then aborts the
    /// task (and the connections it owns).
    pub async fn stop(self, deadline: Duration) {
        let _ = self.stop.send(());
        let mut join = self.join;
        if tokio::time::timeout(deadline, &mut join).await.is_err() {
            warn!(server = self.name, addr = %self.addr, "did not stop in time; aborting it");
            join.abort();
        }
    }
}

/// Resolves when the server is asked to stop (or its `ServerTask` is dropped).
#[derive(Debug)]
pub struct Stopping(oneshot::Receiver<()>);

impl Future for Stopping {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}
