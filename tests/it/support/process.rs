//! The role binaries (`examples/peer.rs`, `examples/register.rs`, `examples/hub.rs`) as real
//! processes for one test: built once per test binary, started on loopback, killed or stopped by
//! signal.
//!
//! ```ignore
//! let mut peer = RoleProcess::peer(&["--node-id", "peer-a", "--data-dir", dir]).await;
//! let ads = peer.available().await;          // GET /api/registers/available
//! peer.kill9();                              // SIGKILL, like a crash
//! let elapsed = register.terminate().await;  // SIGTERM; asserts exit code 0
//! let hub = RoleProcess::hub_on_port(port, &["--node-id", "n0", "--redis", url]).await;
//! let url = hub.grpc_url();                  // http://127.0.0.1:<port> for a peer's --hub
//! ```
//!
//! - Binaries: cargo exposes no `CARGO_BIN_EXE_*` for examples, so the first start runs
//!   `$CARGO build --example peer --example register --example hub` for the test binary's
//!   profile (same target dir: the environment, `CARGO_TARGET_DIR` included, and the workspace's
//!   cargo config are inherited) and finds them in `examples/` beside the test binary's `deps/`.
//!   Cargo has released its build lock by the time tests run, so this does not wait on the outer
//!   `cargo test`; it does wait (correctly) on another cargo building. `demo_binary` builds the
//!   demo the same way. The same file serves `benches/cluster.rs` and the demo's cluster chapter
//!   (`#[path]`): their binaries live in `<target>/<profile>/deps/` and `examples/` alike.
//! - Ready: the process printed `herald <role> ready node=<id> http=<addr>[ grpc=<addr>]` on
//!   stdout within `READY_DEADLINE`; the harness adds `--admin-token` and, unless the test chose
//!   a port, `--http 127.0.0.1:0`.
//! - Logs: each process's stderr goes to a file in its own temporary directory; its tail is
//!   printed when a start fails and when the process is dropped during a panic (a failed test).
//! - Ports: a peer that a register process must find again after a restart runs on a port
//!   picked here (`peer_on_free_port`, which tries another port when some other process took
//!   it first, or `free_port` + `peer_on_port`), and is restarted with `peer_on_port`. A hub
//!   that peers dial at a fixed URL is started and restarted the same way on its gRPC port
//!   (`hub_on_port`).
//!
//! Not done: cleanup when the test binary itself is killed (a process dies with its
//! `RoleProcess`, on panic too, but not on SIGKILL of the test binary), Windows, and cross
//! targets (`--target`): the examples are looked up beside the test binary either way.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The admin token every role process is started with.
pub const TOKEN: &str = "acceptance-t0ken";
/// A started process must print its ready line within this.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);
/// A process asked to stop (SIGTERM) must be gone within this.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// Attempts at starting a peer on a free port another process might take first.
const PORT_ATTEMPTS: usize = 5;
/// Lines of a process's log quoted when something goes wrong.
const LOG_TAIL_LINES: usize = 30;
const POLL_PAUSE: Duration = Duration::from_millis(10);
/// How long a process whose stdout closed gets to finish exiting before it is killed.
const EXITING_GRACE: Duration = Duration::from_secs(1);

/// Which role binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Peer,
    Register,
    Hub,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Peer => "peer",
            Role::Register => "register",
            Role::Hub => "hub",
        }
    }

    /// The example binary, built on first use.
    pub fn binary(self) -> &'static Path {
        let binaries = BINARIES.get_or_init(build_examples);
        match self {
            Role::Peer => &binaries.peer,
            Role::Register => &binaries.register,
            Role::Hub => &binaries.hub,
        }
    }
}

/// One running role process; killed (SIGKILL) when dropped.
pub struct RoleProcess {
    role: Role,
    /// `None` once it exited (killed or terminated).
    child: Option<Child>,
    pid: u32,
    node_id: String,
    http: SocketAddr,
    /// The gRPC address a hub printed in its ready line.
    grpc: Option<SocketAddr>,
    /// The cluster address a clustered node printed in its ready line.
    cluster: Option<SocketAddr>,
    base_url: String,
    client: reqwest::Client,
    spawned_at: Instant,
    ready_after: Duration,
    log_path: PathBuf,
    /// Holds the log; removed after the process is gone (field order: `child` is killed in
    /// `drop` first).
    _log_dir: TempDir,
}

/// A response: status and body as JSON (`null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

/// How a process that was run to its end finished.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RoleProcess {
    /// Starts the peer binary with `args` (plus `--admin-token`, and `--http 127.0.0.1:0`
    /// unless `args` has `--http`) and waits until it is ready. Panics when it is not.
    pub async fn peer(args: &[&str]) -> RoleProcess {
        Self::start(Role::Peer, args).await
    }

    /// Starts the register binary; see `peer`.
    pub async fn register(args: &[&str]) -> RoleProcess {
        Self::start(Role::Register, args).await
    }

    /// Starts the hub binary with `args` (which name its `--grpc` address); see `peer`.
    pub async fn hub(args: &[&str]) -> RoleProcess {
        Self::start(Role::Hub, args).await
    }

    /// Starts a hub with gRPC on `127.0.0.1:<port>` (a port from `free_port`, or the one of a hub
    /// that was killed, which peers still dial), trying again for a moment while the port cannot
    /// be bound.
    pub async fn hub_on_port(port: u16, args: &[&str]) -> RoleProcess {
        match Self::try_hub_on_port(port, args).await {
            Ok(process) => process,
            Err(why) => panic!("{why}"),
        }
    }

    /// Starts a hub with gRPC on a port picked here (so that it can be restarted on the same
    /// port with `hub_on_port`), trying another port when some other process took it first.
    pub async fn hub_on_free_port(args: &[&str]) -> RoleProcess {
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let grpc = format!("127.0.0.1:{}", free_port());
            let with_grpc: Vec<&str> = args.iter().copied().chain(["--grpc", &grpc]).collect();
            match Self::try_start(Role::Hub, &with_grpc).await {
                Ok(process) => return process,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "no hub started in {PORT_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// `hub_on_port` that reports its failures instead of panicking.
    pub async fn try_hub_on_port(port: u16, args: &[&str]) -> Result<RoleProcess, String> {
        let grpc = format!("127.0.0.1:{port}");
        let with_grpc: Vec<&str> = args.iter().copied().chain(["--grpc", &grpc]).collect();
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(Role::Hub, &with_grpc).await {
                Ok(process) => return Ok(process),
                Err(why) => failures.push(why),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "no hub started with gRPC on port {port} in {PORT_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        ))
    }

    /// Starts `role` and waits until it is ready. Panics with its log when it is not.
    pub async fn start(role: Role, args: &[&str]) -> RoleProcess {
        match Self::try_start(role, args).await {
            Ok(process) => process,
            Err(why) => panic!("{why}"),
        }
    }

    /// Starts a peer on a port picked here (so that it can be restarted on the same port), and
    /// tries another port when some other process took it first. Panics after a few attempts.
    pub async fn peer_on_free_port(args: &[&str]) -> RoleProcess {
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let http = format!("127.0.0.1:{}", free_port());
            let with_http: Vec<&str> = args.iter().copied().chain(["--http", &http]).collect();
            match Self::try_start(Role::Peer, &with_http).await {
                Ok(process) => return process,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "no peer started in {PORT_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// Starts a peer on `127.0.0.1:<port>` (a port from `free_port`, or the one of a peer that
    /// was stopped), trying again for a moment while the port cannot be bound.
    pub async fn peer_on_port(port: u16, args: &[&str]) -> RoleProcess {
        let http = format!("127.0.0.1:{port}");
        let with_http: Vec<&str> = args.iter().copied().chain(["--http", &http]).collect();
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(Role::Peer, &with_http).await {
                Ok(process) => return process,
                Err(why) => failures.push(why),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "no peer started on port {port} in {PORT_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// Starts `role` and waits for its ready line; on failure the process is gone and the
    /// error quotes its log.
    pub async fn try_start(role: Role, args: &[&str]) -> Result<RoleProcess, String> {
        Self::try_start_with_env(role, args, &[("NO_COLOR", "1")]).await
    }

    /// Starts `role` like `start`, with exactly the extra environment `env` (no `NO_COLOR`:
    /// the process decides about colours itself, as it would under a service manager).
    pub async fn start_with_env(role: Role, args: &[&str], env: &[(&str, &str)]) -> RoleProcess {
        match Self::try_start_with_env(role, args, env).await {
            Ok(process) => process,
            Err(why) => panic!("{why}"),
        }
    }

    async fn try_start_with_env(
        role: Role,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<RoleProcess, String> {
        let binary = role.binary();
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("herald-{}-log-", role.name()))
            .tempdir()
            .expect("create a temporary directory for a role process's log");
        let log_path = log_dir.path().join("stderr.log");
        let log = File::create(&log_path).expect("create the log file");
        let mut command = Command::new(binary);
        command.args(args).args(["--admin-token", TOKEN]);
        if !args.contains(&"--http") {
            command.args(["--http", "127.0.0.1:0"]);
        }
        let spawned_at = Instant::now();
        let mut child = command
            .env_remove("HERALD_ADMIN_TOKEN")
            .env_remove("HERALD_CLUSTER_COOKIE")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        let pid = child.id();
        let lines = forward_lines(child.stdout.take().expect("stdout is piped"));
        let prefix = format!("herald {} ready ", role.name());
        let describe = |what: &str| {
            format!(
                "{} {args:?} (pid {pid}) {what}; stderr tail:\n{}",
                role.name(),
                log_tail(&log_path)
            )
        };
        let ready = wait_for_line(lines, &prefix, READY_DEADLINE).await;
        let grpc = ready
            .as_deref()
            .and_then(|line| parse_ready_field(line, "grpc="));
        let cluster = ready
            .as_deref()
            .and_then(|line| parse_ready_field(line, "cluster="));
        let fields = ready
            .as_deref()
            .and_then(|line| parse_ready(line, &prefix))
            // A hub's ready line names its gRPC address too.
            .filter(|_| role != Role::Hub || grpc.is_some());
        let (node_id, http) = match fields {
            Some(fields) => fields,
            None => {
                // Stdout closes when the process exits: then it did not time out, it failed.
                let exited = wait_exit(&mut child, EXITING_GRACE).await;
                let _ = child.kill();
                let _ = child.wait();
                let what = match (ready, exited) {
                    (Some(line), _) => format!("printed an unexpected ready line {line:?}"),
                    (None, Some(status)) => format!("exited ({status}) before it was ready"),
                    (None, None) => format!("was not ready within {READY_DEADLINE:?}"),
                };
                return Err(describe(&what));
            }
        };
        Ok(RoleProcess {
            role,
            child: Some(child),
            pid,
            node_id,
            base_url: format!("http://{http}"),
            http,
            grpc,
            cluster,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("build an HTTP client"),
            ready_after: spawned_at.elapsed(),
            spawned_at,
            log_path,
            _log_dir: log_dir,
        })
    }

    /// Runs `role` with exactly `args` until it exits (it must within `EXIT_DEADLINE`).
    pub async fn run_to_exit(role: Role, args: &[&str]) -> Finished {
        let binary = role.binary();
        let mut child = Command::new(binary)
            .args(args)
            .env_remove("HERALD_ADMIN_TOKEN")
            .env_remove("HERALD_CLUSTER_COOKIE")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        let stdout = read_all(child.stdout.take().expect("stdout is piped"));
        let stderr = read_all(child.stderr.take().expect("stderr is piped"));
        let Some(status) = wait_exit(&mut child, EXIT_DEADLINE).await else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} did not exit within {EXIT_DEADLINE:?}",
                role.name()
            );
        };
        Finished {
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The address the REST API listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address a hub serves gRPC on; panics for the other roles.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .unwrap_or_else(|| panic!("the {} serves no gRPC", self.role.name()))
    }

    /// `http://127.0.0.1:<port>` of a hub's gRPC server, as a peer's `--hub ID=URL` names it.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr())
    }

    /// When the process was spawned.
    /// The address it accepts cluster members on (clustered nodes print it).
    pub fn cluster_addr(&self) -> SocketAddr {
        self.cluster
            .unwrap_or_else(|| panic!("{} is not clustered", self.node_id))
    }

    /// `GET /api/cluster/members`.
    pub async fn members(&self) -> Vec<Value> {
        let reply = self.get_json("/api/cluster/members").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body.as_array().cloned().unwrap_or_default()
    }

    /// The state `node` has in this node's member list, if listed.
    pub async fn member_state(&self, node: &str) -> Option<String> {
        self.members()
            .await
            .iter()
            .find(|member| member["nodeId"] == node)
            .and_then(|member| member["state"].as_str().map(str::to_owned))
    }

    /// The first sample of metric `name` in its `/metrics` (any labels), if rendered.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let response = self
            .client
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("GET /metrics");
        let text = response.text().await.expect("the metrics text");
        text.lines()
            .find(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    /// A counter in its `/metrics`: 0 while never incremented (hence not rendered).
    pub async fn counter(&self, name: &str) -> f64 {
        self.metric(name).await.unwrap_or(0.0)
    }

    /// The pid of the process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// From spawn to the ready line.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// The last lines of the process's stderr.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// The process's whole stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` (a `kill` name such as `STOP` or `CONT`) to the running process.
    pub fn signal(&self, signal: &str) {
        assert!(
            self.child.is_some(),
            "{} (pid {}) is not running",
            self.role.name(),
            self.pid
        );
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {} failed: {sent}", self.pid);
    }

    /// Kills the process with SIGKILL (a crash: no shutdown code runs) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM, waits for the process to exit and asserts it exited with code 0.
    /// Returns how long it took.
    pub async fn terminate(&mut self) -> Duration {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} (pid {}) is not running", self.role.name(), self.pid));
        let asked = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {} failed: {sent}", self.pid);
        let Some(status) = wait_exit(&mut child, EXIT_DEADLINE).await else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} (pid {}) did not exit within {EXIT_DEADLINE:?} of SIGTERM; stderr tail:\n{}",
                self.role.name(),
                self.pid,
                self.log_tail()
            );
        };
        let took = asked.elapsed();
        assert_eq!(
            status.code(),
            Some(0),
            "{} exited with {status} after SIGTERM; stderr tail:\n{}",
            self.role.name(),
            self.log_tail()
        );
        took
    }

    /// `GET /api/registers/available`; panics unless it answers 200 with a list.
    pub async fn available(&self) -> Vec<Value> {
        let reply = self.get_json("/api/registers/available").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        match reply.body {
            Value::Array(list) => list,
            other => panic!("available registers is not a list: {other}"),
        }
    }

    /// The ids in `GET /api/registers/available`, sorted.
    pub async fn available_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .available()
            .await
            .iter()
            .map(|register| {
                register["registerId"]
                    .as_str()
                    .expect("registerId")
                    .to_owned()
            })
            .collect();
        ids.sort();
        ids
    }

    /// A GET without the token.
    /// `GET /api/system-register` (a hub's register, or a peer's replica of it).
    pub async fn system_register(&self) -> Value {
        expect(self.get_json("/api/system-register").await, StatusCode::OK)
    }

    /// `GET /api/sync/status`.
    pub async fn sync_status(&self) -> Value {
        expect(self.get_json("/api/sync/status").await, StatusCode::OK)
    }

    pub async fn get_json(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    /// A POST of `body` with the admin token.
    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    /// A PATCH of `body` with the admin token.
    pub async fn patch_json(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// A DELETE with the admin token.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// A request to the process (the admin token on every method but GET); panics when it
    /// cannot be sent, quoting the process's log.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base_url));
        if method != Method::GET {
            request = request.bearer_auth(TOKEN);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => panic!(
                "{method} {path} to the {} failed: {err}; stderr tail:\n{}",
                self.role.name(),
                self.log_tail()
            ),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- {} {} (pid {}) stderr tail ----\n{}",
                self.role.name(),
                self.node_id,
                self.pid,
                self.log_tail()
            );
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1 (another process may take it first).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// The body of a reply with the expected status.
#[track_caller]
pub fn expect(reply: Reply, status: StatusCode) -> Value {
    assert_eq!(reply.status, status, "{reply:?}");
    reply.body
}

// ---- building and locating the binaries ----

struct Binaries {
    peer: PathBuf,
    register: PathBuf,
    hub: PathBuf,
}

static BINARIES: OnceLock<Binaries> = OnceLock::new();

/// The demo (`examples/demo.rs`), built on first use like the role binaries.
pub fn demo_binary() -> &'static Path {
    static DEMO: OnceLock<PathBuf> = OnceLock::new();
    DEMO.get_or_init(|| {
        let demo =
            cargo_build_examples(&["demo"]).join(format!("demo{}", std::env::consts::EXE_SUFFIX));
        assert!(
            demo.is_file(),
            "{} is missing after the build",
            demo.display()
        );
        demo
    })
}

/// Builds the role examples with the cargo that runs the tests, for the test binary's
/// profile, and returns their paths beside the test binary (`<target>/<profile>/examples/`).
fn build_examples() -> Binaries {
    let examples = cargo_build_examples(&["peer", "register", "hub"]);
    let binaries = Binaries {
        peer: examples.join(format!("peer{}", std::env::consts::EXE_SUFFIX)),
        register: examples.join(format!("register{}", std::env::consts::EXE_SUFFIX)),
        hub: examples.join(format!("hub{}", std::env::consts::EXE_SUFFIX)),
    };
    for binary in [&binaries.peer, &binaries.register, &binaries.hub] {
        assert!(
            binary.is_file(),
            "{} is missing after the build: is the target dir of cargo's build the test \
             binary's ({})?",
            binary.display(),
            examples.display()
        );
    }
    binaries
}

/// Runs `$CARGO build --example <name>...` for the running binary's profile and returns the
/// folder the examples land in (`<target>/<profile>/examples/`).
fn cargo_build_examples(names: &[&str]) -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/it-<hash>
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a profile directory name");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new(&cargo);
    command
        .current_dir(manifest_dir)
        .args(["build", "--quiet", "--package", "herald"])
        .args(names.iter().flat_map(|name| ["--example", name]))
        .arg("--manifest-path")
        .arg(Path::new(manifest_dir).join("Cargo.toml"));
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {cargo:?} to build the role binaries: {err}"));
    assert!(
        output.status.success(),
        "building the role binaries failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let examples = profile_dir.join("examples");
    eprintln!(
        "{names:?} built in {:?}: {}",
        started.elapsed(),
        examples.display()
    );
    examples
}

// ---- reading a process's output ----

/// Forwards `stdout` line by line from a thread, and keeps draining it after the reader
/// stops listening, so the process never blocks on a full pipe.
fn forward_lines(stdout: std::process::ChildStdout) -> mpsc::UnboundedReceiver<String> {
    let (lines, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = lines.send(line);
        }
    });
    receiver
}

/// The first line starting with `prefix`, or `None` when the output ended or `deadline`
/// passed first.
async fn wait_for_line(
    mut lines: mpsc::UnboundedReceiver<String>,
    prefix: &str,
    deadline: Duration,
) -> Option<String> {
    let wait = async {
        while let Some(line) = lines.recv().await {
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
        None
    };
    tokio::time::timeout(deadline, wait).await.ok().flatten()
}

/// `herald <role> ready node=<id> http=<addr>` → (id, addr).
fn parse_ready(line: &str, prefix: &str) -> Option<(String, SocketAddr)> {
    let rest = line.strip_prefix(prefix)?;
    let mut node_id = None;
    let mut http = None;
    for field in rest.split_whitespace() {
        if let Some(value) = field.strip_prefix("node=") {
            node_id = Some(value.to_owned());
        } else if let Some(value) = field.strip_prefix("http=") {
            http = value.parse().ok();
        }
    }
    Some((node_id?, http?))
}

/// An address field of a ready line: `grpc=` (hubs print it), `cluster=` (clustered nodes).
fn parse_ready_field(line: &str, name: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(name))
        .and_then(|value| value.parse().ok())
}

fn read_all<R: std::io::Read + Send + 'static>(mut source: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = source.read_to_string(&mut text);
        text
    })
}

/// Polls `child` until it exits or `deadline` passes.
async fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if started.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// The blueprint ids of a system register view, in its order.
pub fn blueprint_ids(view: &Value) -> Vec<String> {
    view["blueprints"]
        .as_array()
        .unwrap_or_else(|| panic!("no blueprints: {view}"))
        .iter()
        .map(|blueprint| {
            blueprint["blueprintId"]
                .as_str()
                .unwrap_or_else(|| panic!("a blueprint without an id: {blueprint}"))
                .to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_parse() {
        let prefix = "herald peer ready ";
        assert_eq!(
            parse_ready("herald peer ready node=p-1 http=127.0.0.1:8080", prefix),
            Some(("p-1".into(), "127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(parse_ready("herald peer ready node=p-1", prefix), None);
        assert_eq!(
            parse_ready("herald register ready node=r http=127.0.0.1:1", prefix),
            None
        );
        let hub = "herald hub ready node=n0 http=127.0.0.1:8090 grpc=127.0.0.1:50051";
        assert_eq!(
            parse_ready(hub, "herald hub ready "),
            Some(("n0".into(), "127.0.0.1:8090".parse().unwrap()))
        );
        assert_eq!(
            parse_ready_field(hub, "grpc="),
            Some("127.0.0.1:50051".parse().unwrap())
        );
        assert_eq!(
            parse_ready_field("herald peer ready node=p http=127.0.0.1:1", "grpc="),
            None
        );
        let clustered = "herald peer ready node=p http=127.0.0.1:1 cluster=127.0.0.1:7000";
        assert_eq!(
            parse_ready_field(clustered, "cluster="),
            Some("127.0.0.1:7000".parse().unwrap())
        );
    }
}
