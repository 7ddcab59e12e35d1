//! A real `redis-server` for one test, on a free `127.0.0.1` port, without persistence.
//!
//! ```ignore
//! let mut server = RedisServer::start(); // ready: it answered on its port
//! let url = server.url();                // redis://127.0.0.1:<port>
//! server.kill();                         // SIGKILL; the port number stays with `server`
//! server.restart();                      // a fresh, empty server on the same port
//! // dropping `server` kills it and deletes its directory
//! ```
//!
//! Each test starts its own server, so tests may kill and restart Redis without disturbing
//! each other. Servers run `--save "" --appendonly no` in a temporary directory that also holds
//! their log (quoted when a start fails). Ready means the server on the port reports *our*
//! process id (`INFO server`), so a server started by a parallel test that picked the same
//! port is never mistaken for ours.
//!
//! `start_with` passes extra arguments (TLS on a second port, say) to every start and restart.
//!
//! Not done: a server shared by several tests, clusters, and cleanup when the test process
//! itself is killed (each server dies with its `RedisServer`, on panic too, but not on SIGKILL
//! of the test binary). `redis-server` must be on `PATH`: `scripts/install-test-deps`.
//!
//! The calls block the calling thread for the few milliseconds a server needs to start; that
//! is fine in `#[tokio::test]` bodies.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use redis::aio::MultiplexedConnection;

use super::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// One `redis-server` process, killed when dropped.
pub struct RedisServer {
    port: u16,
    /// `None` after `kill`.
    child: Option<Child>,
    /// Extra `redis-server` arguments, for restarts too.
    extra: Vec<String>,
    /// The server's `--dir` and log; removed after the process is killed (field drop order).
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers. Panics when it cannot.
    pub fn start() -> RedisServer {
        Self::start_with(Vec::new())
    }

    /// `start`, with extra `redis-server` arguments.
    pub fn start_with(extra: Vec<String>) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("herald-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let mut failures = Vec::new();
        // Another process may take the free port before redis-server binds it: try another.
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_ready(port, dir.path(), &extra) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        child: Some(child),
                        extra,
                        dir,
                    };
                }
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        panic!(
            "could not start redis-server in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A raw connection to this server.
    pub async fn connection(&self) -> MultiplexedConnection {
        connect(&self.url()).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is running (it was started and not killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL) and waits for it to exit; its port is closed when this
    /// returns. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port (killing the current one first if it
    /// runs). Retries for a few seconds while the port cannot be bound; panics after that.
    pub fn restart(&mut self) {
        self.kill();
        let mut last_failure = String::new();
        for _ in 0..RESTART_ATTEMPTS {
            match spawn_ready(self.port, self.dir.path(), &self.extra) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) => {
                    last_failure = why;
                    pause(RESTART_PAUSE);
                }
            }
        }
        panic!(
            "could not restart redis-server on port {} in {RESTART_ATTEMPTS} attempts: {last_failure}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

const START_ATTEMPTS: usize = 5;
const RESTART_ATTEMPTS: usize = 50;
const RESTART_PAUSE: Duration = Duration::from_millis(100);
/// A server that does not answer within this is killed (it starts in about 12 ms).
const READY_DEADLINE: Duration = Duration::from_secs(5);
const POLL_PAUSE: Duration = Duration::from_millis(5);
const LOG_FILE: &str = "redis.log";

/// Where `RedisAdStore` (prefix `herald`) keeps the local ads of node `node_id`: a hash,
/// register id → the ad's JSON.
pub fn local_ads_key(node_id: &str) -> String {
    format!("herald:{{{node_id}}}:ads:local")
}

/// Where `RedisAdStore` (prefix `herald`) keeps the pool's meta record of node `node_id`.
pub fn ad_meta_key(node_id: &str) -> String {
    format!("herald:{{{node_id}}}:ads:meta")
}

/// A raw connection to the Redis at `url`, for a test's own commands beside the code under test.
pub async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"))
}

/// Spawns `redis-server` on `port` and waits until it answers as itself. On failure the
/// process is gone and the error quotes its log.
fn spawn_ready(port: u16, dir: &Path, extra: &[String]) -> Result<Child, String> {
    let log_path = dir.join(LOG_FILE);
    let log =
        File::create(&log_path).map_err(|err| format!("create {}: {err}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|err| format!("clone {}: {err}", log_path.display()))?;
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            panic!("redis-server is not installed (not on PATH): run scripts/install-test-deps")
        }
        Err(err) => panic!("could not run redis-server: {err}"),
    };
    let started = now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "redis-server exited ({status}): {}",
                log_tail(&log_path)
            ));
        }
        if answers_as(port, child.id()) {
            return Ok(child);
        }
        if started.elapsed() > READY_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "no answer within {READY_DEADLINE:?}: {}",
                log_tail(&log_path)
            ));
        }
        pause(POLL_PAUSE);
    }
}

/// Whether the server on `port` answers `INFO server` with process id `pid`.
fn answers_as(port: u16, pid: u32) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let timeouts = stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_millis(500))));
    if timeouts.is_err()
        || stream
            .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            .is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(read) => reply.extend_from_slice(&buf[..read]),
        }
        let text = String::from_utf8_lossy(&reply);
        if !text.starts_with('$') {
            return false; // an error such as -LOADING, or not Redis at all
        }
        let Some(at) = text.find("\r\nprocess_id:") else {
            continue;
        };
        let value = &text[at + "\r\nprocess_id:".len()..];
        if let Some((id, _)) = value.split_once("\r\n") {
            return id == pid.to_string();
        }
    }
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// The fixture waits for a child process, outside any async runtime's timers.
#[allow(clippy::disallowed_methods)]
fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// Real time for the fixture's own deadline (tests run with real time anyway).
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}
