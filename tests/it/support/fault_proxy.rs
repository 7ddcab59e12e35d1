//! A TCP proxy that makes network faults on demand, for partition tests: it forwards every
//! connection to one target and, when told, swallows what crosses it (a black hole: bytes are
//! read and dropped, nothing is closed, as a partition or a dead router looks), delays it, or
//! cuts every connection and refuses new ones.
//!
//! ```ignore
//! let proxy = FaultProxy::start(target).await;   // target: the real listen address
//! // the node advertises proxy.addr(), so members reach it through the proxy
//! proxy.set(Fault::Swallow);                     // partition
//! proxy.set(Fault::None);                        // heal
//! proxy.contains(b"needle")                      // did these bytes cross it (either way)?
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Read and drop everything, both ways; connections stay open and new ones are accepted.
    Swallow,
    /// Forward everything after this delay.
    Delay(Duration),
    /// Close every connection and refuse new ones (accepted, then closed at once).
    Cut,
}

/// Everything forwarded, one buffer per direction of each connection (a string never spans
/// two connections' chunks).
type Streams = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

pub struct FaultProxy {
    addr: SocketAddr,
    streams: Streams,
    fault: watch::Sender<Fault>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (fault, faults) = watch::channel(Fault::None);
        let streams = Streams::default();
        let recorded = Arc::clone(&streams);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *faults.borrow() == Fault::Cut {
                    drop(inbound);
                    continue;
                }
                let faults = faults.clone();
                let (forth, back) = (Arc::default(), Arc::default());
                recorded
                    .lock()
                    .expect("proxy streams")
                    .extend([Arc::clone(&forth), Arc::clone(&back)]);
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        pump(in_read, out_write, faults.clone(), forth),
                        pump(out_read, in_write, faults, back),
                    );
                });
            }
        });
        FaultProxy {
            addr,
            streams,
            fault,
            task,
        }
    }

    /// Whether `needle` crossed the proxy (forwarded, either way) since it started.
    pub fn contains(&self, needle: &[u8]) -> bool {
        let streams = self.streams.lock().expect("proxy streams").clone();
        streams.iter().any(|stream| {
            stream
                .lock()
                .expect("proxy stream")
                .windows(needle.len())
                .any(|window| window == needle)
        })
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.fault.send_replace(Fault::Cut);
    }
}

/// Copies one direction of a connection, applying the current fault to each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Fault>,
    record: Arc<Mutex<Vec<u8>>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = faults.wait_for(|fault| *fault == Fault::Cut) => {
                let _ = changed;
                break;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                // A partition delivers no FIN either: hold it until the swallowing ends.
                let _ = faults.wait_for(|fault| *fault != Fault::Swallow).await;
                break;
            }
            Ok(n) => n,
        };
        let fault = *faults.borrow();
        match fault {
            Fault::None => {}
            Fault::Swallow => continue,
            Fault::Delay(delay) => tokio::time::sleep(delay).await,
            Fault::Cut => break,
        }
        record
            .lock()
            .expect("proxy stream")
            .extend_from_slice(&buffer[..n]);
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
