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
//! `RedisCluster`: a real Redis Cluster of three primaries (no replicas) on loopback, each a
//! `RedisServer` with `--cluster-enabled yes`, its own bus port and `--cluster-node-timeout
//! 2000`; slots assigned with `CLUSTER ADDSLOTSRANGE` (0–5460, 5461–10922, 10923–16383), joined
//! with `CLUSTER MEET` (naming the bus port), ready when every node reports `cluster_state:ok` with three known nodes
//! (about 2 s). `RedisCluster::shared()` is one cluster per test binary, started by the first
//! test that asks, on a thread that never ends, with `PR_SET_PDEATHSIG` so its servers die with
//! the test process (libtest never drops statics; `setpriv --pdeathsig KILL`); tests on it keep to their own keys (their
//! own node ids and prefixes) and never flush it. `RedisCluster::start()` is a cluster of the
//! test's own, for tests that kill and restart its nodes (`kill`, `restart`: the node comes back
//! empty with its slots, from the `nodes.conf` in its directory).
//!
//! Not done: replicas and failover, and cleanup of the per-test servers when the test process
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
    /// Killed by the kernel when the thread that spawned it ends (a shared server's thread
    /// lives as long as the test process).
    die_with_thread: bool,
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
        Self::start_configured(extra, false)
    }

    fn start_configured(extra: Vec<String>, die_with_thread: bool) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("herald-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let mut failures = Vec::new();
        // Another process may take the free port before redis-server binds it: try another.
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_ready(port, dir.path(), &extra, die_with_thread) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        child: Some(child),
                        extra,
                        die_with_thread,
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
            match spawn_ready(
                self.port,
                self.dir.path(),
                &self.extra,
                self.die_with_thread,
            ) {
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

/// A real Redis Cluster of three primaries on loopback (see the module's header).
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// The slots of each primary, in node order.
const CLUSTER_SLOTS: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];
/// A cluster that is not `ok` within this after its slots were assigned fails the test.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

static SHARED_CLUSTER: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

impl RedisCluster {
    /// A cluster of the test's own. Panics when it cannot start one.
    pub fn start() -> RedisCluster {
        Self::start_configured(false)
    }

    /// The node URLs of the test binary's shared cluster (started on first use).
    pub fn shared() -> Vec<String> {
        SHARED_CLUSTER
            .get_or_init(|| {
                let (sender, receiver) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name("shared-redis-cluster".into())
                    .spawn(move || {
                        let cluster = RedisCluster::start_configured(true);
                        sender
                            .send(cluster.urls())
                            .expect("the starting test waits");
                        // The servers die with this thread: it lives as long as the process.
                        loop {
                            std::thread::park();
                        }
                    })
                    .expect("spawn the shared cluster's thread");
                receiver
                    .recv()
                    .expect("the shared Redis Cluster did not start (see the panic above)")
            })
            .clone()
    }

    fn start_configured(die_with_thread: bool) -> RedisCluster {
        let bus_ports: Vec<u16> = CLUSTER_SLOTS.iter().map(|_| free_port()).collect();
        let nodes: Vec<RedisServer> = bus_ports
            .iter()
            .map(|bus_port| {
                let extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus_port.to_string(),
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ]
                .map(str::to_owned)
                .to_vec();
                RedisServer::start_configured(extra, die_with_thread)
            })
            .collect();
        for (node, (low, high)) in nodes.iter().zip(CLUSTER_SLOTS) {
            let mut conn = sync_connection(node.port);
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(low)
                .arg(high)
                .query(&mut conn)
                .expect("CLUSTER ADDSLOTSRANGE");
        }
        for node in &nodes[1..] {
            let mut conn = sync_connection(node.port);
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(nodes[0].port)
                .arg(bus_ports[0])
                .query(&mut conn)
                .expect("CLUSTER MEET");
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// `redis://127.0.0.1:<port>` of each node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Which node (0, 1, 2) holds the slot of `key` (its hash tag when it has one), as the
    /// cluster computes it (`CLUSTER KEYSLOT`).
    pub fn node_of(&self, key: &str) -> usize {
        let running = self
            .nodes
            .iter()
            .find(|node| node.child.is_some())
            .expect("a running node");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut sync_connection(running.port))
            .expect("CLUSTER KEYSLOT");
        CLUSTER_SLOTS
            .iter()
            .position(|(low, high)| (*low..=*high).contains(&slot))
            .expect("every slot belongs to a node")
    }

    /// Kills node `index` (SIGKILL); the others mark it failed after the node timeout (2 s).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again, empty but with its slots, and waits until the cluster is ok.
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].restart();
        self.wait_ok();
    }

    /// Waits until every running node reports `cluster_state:ok` with all nodes known.
    pub fn wait_ok(&self) {
        let started = now();
        loop {
            let ok = self.nodes.iter().all(|node| {
                redis::Client::open(node.url())
                    .and_then(|client| {
                        client.get_connection_with_timeout(Duration::from_millis(500))
                    })
                    .and_then(|mut conn| {
                        redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut conn)
                    })
                    .is_ok_and(|info| {
                        info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
                    })
            });
            if ok {
                return;
            }
            assert!(
                started.elapsed() < CLUSTER_DEADLINE,
                "the Redis Cluster on {:?} was not ok within {CLUSTER_DEADLINE:?}",
                self.urls()
            );
            pause(Duration::from_millis(50));
        }
    }
}

/// A blocking connection to the server on `port`, for the fixture's own commands.
fn sync_connection(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|err| panic!("connect to redis on port {port}: {err}"))
}

/// A raw connection to a Redis Cluster, for a test's own commands beside the code under test.
pub async fn connect_cluster(urls: &[String]) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(urls.to_vec())
        .expect("valid Redis URLs")
        .get_async_connection()
        .await
        .unwrap_or_else(|err| panic!("connect to the cluster {urls:?}: {err}"))
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
fn spawn_ready(
    port: u16,
    dir: &Path,
    extra: &[String],
    die_with_thread: bool,
) -> Result<Child, String> {
    let log_path = dir.join(LOG_FILE);
    let log =
        File::create(&log_path).map_err(|err| format!("create {}: {err}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|err| format!("clone {}: {err}", log_path.display()))?;
    // `setpriv` (util-linux, in every Debian) sets the parent-death signal and execs the
    // server: no `unsafe` `pre_exec` needed.
    let mut command = if die_with_thread {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(["--pdeathsig", "KILL", "--", "redis-server"]);
        setpriv
    } else {
        Command::new("redis-server")
    };
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let spawned = command.spawn();
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
