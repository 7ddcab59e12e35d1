//! A MongoDB-wire server for one test: **SecantusDB, a MongoDB-wire stand-in** (PyPI
//! `secantusdb`, pinned and installed in a virtualenv by `scripts/install-test-deps`), started on
//! a free `127.0.0.1` port with in-memory storage, like `redis-server` in `redis.rs`. CI verifies
//! the MongoDB adapters against this stand-in, not against MongoDB itself: transactions,
//! change streams and error details of a real `mongod` replica set may differ.
//!
//! ```ignore
//! let mut server = MongoServer::start(); // ready: it logged that it listens on its port
//! let config = server.config();           // a MongoConfig on a database of this test's own
//! server.kill();                          // SIGKILL; the port number stays with `server`
//! server.restart();                       // a fresh, empty server on the same port
//! ```
//!
//! With `HERALD_MONGODB_URL` set (e.g. `mongodb://127.0.0.1:27017/?replicaSet=rs0`), no
//! process is started: every test gets a database of its own on that server instead, and the
//! tests that kill or restart the server skip with a printed reason.
//!
//! The stand-in advertises itself as a single-node replica set (`secantus`), so transactions
//! and change streams work; the URL adds `directConnection=true` and short timeouts so that a
//! test fails fast. Each server's log is in its temporary directory (quoted when a start fails).
//! Not done: a server shared by several tests (each test starts its own, in well under a second
//! on an idle machine), and cleanup when the test process itself is killed.

use super::free_port;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use herald::parts::runtime::config::MongoConfig;
use tempfile::TempDir;

/// The version `scripts/install-test-deps` installs.
pub const SECANTUSDB_VERSION: &str = "0.7.0b3";

/// A MongoDB-wire server for one test (see the module doc).
pub struct MongoServer {
    /// `None` when the test runs against `HERALD_MONGODB_URL`.
    own: Option<OwnServer>,
    url: String,
    database: String,
}

struct OwnServer {
    port: u16,
    /// `None` after `kill`.
    child: Option<Child>,
    /// Log and config; removed after the process is killed (field drop order).
    dir: TempDir,
}

impl MongoServer {
    /// Starts a stand-in on a free port (or takes `HERALD_MONGODB_URL`), with a database of
    /// this test's own. Panics when it cannot.
    pub fn start() -> MongoServer {
        let database = unique_database();
        if let Some(url) = external_url() {
            return MongoServer {
                own: None,
                url,
                database,
            };
        }
        let dir = tempfile::Builder::new()
            .prefix("herald-mongo-")
            .tempdir()
            .expect("create a temporary directory for the MongoDB stand-in");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_ready(port, dir.path()) {
                Ok(child) => {
                    return MongoServer {
                        url: format!(
                            "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=2000"
                        ),
                        own: Some(OwnServer {
                            port,
                            child: Some(child),
                            dir,
                        }),
                        database,
                    };
                }
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        panic!(
            "could not start the MongoDB stand-in in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// The server's URL (no database in it).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// This test's database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The adapters' configuration: this server, this test's database, short timeouts.
    pub fn config(&self) -> MongoConfig {
        MongoConfig {
            url: self.url(),
            database: self.database.clone(),
            connect_timeout: Duration::from_secs(1),
            server_selection_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    /// Whether this test started the server itself (it may kill and restart it).
    pub fn is_own(&self) -> bool {
        self.own.is_some()
    }

    /// The port of the server this test started. Panics against `HERALD_MONGODB_URL`.
    pub fn port(&self) -> u16 {
        self.own.as_ref().expect("a server of this test's own").port
    }

    /// A driver client on this test's database, for raw reads and damage.
    pub async fn database_handle(&self) -> mongodb::Database {
        let client = mongodb::Client::with_uri_str(self.url())
            .await
            .expect("the test server's URL parses");
        client.database(&self.database)
    }

    /// Drops this test's database: the store loses everything.
    pub async fn wipe(&self) {
        self.database_handle()
            .await
            .drop()
            .await
            .expect("drop the test database");
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Panics against an external server.
    pub fn kill(&mut self) {
        let own = self.own.as_mut().expect("a server of this test's own");
        if let Some(mut child) = own.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port (killing the current one first).
    pub fn restart(&mut self) {
        self.kill();
        let own = self.own.as_mut().expect("a server of this test's own");
        let mut last_failure = String::new();
        for _ in 0..RESTART_ATTEMPTS {
            match spawn_ready(own.port, own.dir.path()) {
                Ok(child) => {
                    own.child = Some(child);
                    return;
                }
                Err(why) => {
                    last_failure = why;
                    pause(RESTART_PAUSE);
                }
            }
        }
        panic!(
            "could not restart the MongoDB stand-in on port {} in {RESTART_ATTEMPTS} attempts: {last_failure}",
            own.port
        );
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        if let Some(own) = &mut self.own
            && let Some(mut child) = own.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Why a test that kills or restarts the server skips against `HERALD_MONGODB_URL`; `None`
/// when it runs.
pub fn skip_unless_own_server(test: &str) -> Option<String> {
    external_url().map(|url| {
        let why = format!(
            "{test}: skipped: it kills and restarts its MongoDB server, and HERALD_MONGODB_URL \
             ({}) is not ours to kill",
            herald_url_without_credentials(&url)
        );
        eprintln!("{why}");
        why
    })
}

/// The path of `secantusd-py`: `HERALD_SECANTUSD`, else the virtualenv that
/// `scripts/install-test-deps` makes, else `secantusd-py` on `PATH`.
pub fn secantusd() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_SECANTUSD") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("HERALD_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/herald")));
    if let Some(tools) = tools {
        let venv = tools
            .join(format!("secantusdb-{SECANTUSDB_VERSION}"))
            .join("bin/secantusd-py");
        if venv.exists() {
            return venv;
        }
    }
    PathBuf::from("secantusd-py")
}

const START_ATTEMPTS: usize = 5;
const RESTART_ATTEMPTS: usize = 50;
const RESTART_PAUSE: Duration = Duration::from_millis(100);
/// The stand-in starts in 0.3 s on an idle machine, several seconds on a loaded one.
const READY_DEADLINE: Duration = Duration::from_secs(60);
const POLL_PAUSE: Duration = Duration::from_millis(20);
const LOG_FILE: &str = "secantusd.log";

fn external_url() -> Option<String> {
    std::env::var("HERALD_MONGODB_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

fn herald_url_without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// `herald_it_<pid>_<n>`: unique per test in this run, and across runs sharing a server.
fn unique_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("herald_it_{}_{n}", std::process::id())
}

/// Spawns the stand-in on `port` and waits until its log says it listens there. On failure the
/// process is gone and the error quotes its log.
fn spawn_ready(port: u16, dir: &Path) -> Result<Child, String> {
    // An empty config file: no secantusd.toml from the working or home directory applies.
    let config = dir.join("secantusd.toml");
    std::fs::write(&config, "").map_err(|err| format!("write {}: {err}", config.display()))?;
    let log_path = dir.join(LOG_FILE);
    let log =
        File::create(&log_path).map_err(|err| format!("create {}: {err}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|err| format!("clone {}: {err}", log_path.display()))?;
    let program = secantusd();
    let spawned = Command::new(&program)
        .arg("--config")
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--storage-path", ":memory:", "--log-level", "INFO"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "the MongoDB stand-in ({}) is not installed: run scripts/install-test-deps",
            program.display()
        ),
        Err(err) => panic!("could not run {}: {err}", program.display()),
    };
    let listening = format!("listening on 127.0.0.1:{port}");
    let started = now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "secantusd-py exited ({status}): {}",
                log_tail(&log_path)
            ));
        }
        if std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains(&listening)) {
            return Ok(child);
        }
        if started.elapsed() > READY_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "not listening within {READY_DEADLINE:?}: {}",
                log_tail(&log_path)
            ));
        }
        pause(POLL_PAUSE);
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
