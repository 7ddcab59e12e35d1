//! The configuration file (issue 10, deliverable 6): every example file in `examples/config/`
//! loads and validates, and the role binaries read `--config FILE` below the `HERALD_*`
//! environment variables and the flags, refusing an unknown key by its path (exit code 2).

use std::path::PathBuf;

use herald::parts::messages::EntrySigner;
use tempfile::TempDir;

use crate::support::process::{Role, RoleProcess};

fn example_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_configuration_file_loads_and_validates() {
    let files = example_files();
    let names: Vec<String> = files
        .iter()
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["hub", "peer", "register"], "one file per role");
    // The files name the hubs' keys under /etc/herald/keys/; they are read when the
    // configuration is validated, so the test makes them (in code) and points there.
    let keys = tempfile::tempdir().unwrap();
    let hub_1 = EntrySigner::from_bytes([1; 32]);
    let hub_2 = EntrySigner::from_bytes([2; 32]);
    std::fs::write(keys.path().join("hub-1.key.pem"), hub_1.to_pem()).unwrap();
    for (name, hub) in [("hub-1", &hub_1), ("hub-2", &hub_2)] {
        let public = hub.trusted_key().to_pem();
        std::fs::write(keys.path().join(format!("{name}.pub.pem")), public).unwrap();
    }
    let key_dir = format!("{}/", keys.path().display());
    for path in &files {
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("/etc/herald/keys/", &key_dir);
        let raw = herald::RawNodeConfig::from_toml(&text)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let config = raw
            .validate()
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let http = config.http.as_ref().expect("role binaries serve HTTP");
        assert!(
            http.tls.is_some(),
            "{}: HTTPS in production",
            path.display()
        );
        match path.file_stem().unwrap().to_str().unwrap() {
            "peer" => {
                let peer = config.peer.expect("the peer role");
                let hubs = peer.hub_connection.expect("hubs");
                assert!(hubs.tls.is_some() && hubs.token.is_some());
                assert!(
                    hubs.connection
                        .hubs
                        .iter()
                        .all(|hub| hub.url.starts_with("https://"))
                );
                assert_eq!(
                    hubs.replica.trusted_keys.key_ids().count(),
                    2,
                    "signed entries of both hubs"
                );
            }
            "hub" => {
                let hub = config.hub.expect("the hub role");
                assert!(hub.tls.is_some(), "gRPC over TLS");
                assert!(!hub.peers.is_empty(), "only configured peers");
                let signer = hub.authority.signer.expect("signed entries");
                assert_eq!(signer.key_id(), hub_1.key_id());
            }
            "register" => {
                config.register.expect("the register role");
            }
            other => panic!("unexpected example file {other}"),
        }
    }
}

/// A peer's configuration file on the embedded store.
fn peer_file(dir: &TempDir, extra: &str) -> PathBuf {
    let path = dir.path().join("peer.toml");
    let text = format!(
        "node_id = \"from-file\"\ndata_dir = {:?}\nhttp_addr = \"127.0.0.1:0\"\n{extra}[peer]\nad_ttl_ms = 60000\n",
        dir.path().join("data")
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn role_binaries_read_their_file_below_the_environment_and_the_flags() {
    let dir = TempDir::new().unwrap();
    let file = peer_file(&dir, "");
    let config = file.to_str().unwrap();

    let from_file =
        RoleProcess::start_with_env(Role::Peer, &["--config", config], &[("NO_COLOR", "1")]).await;
    assert_eq!(from_file.node_id(), "from-file");
    drop(from_file);

    let from_env = RoleProcess::start_with_env(
        Role::Peer,
        &["--config", config],
        &[("NO_COLOR", "1"), ("HERALD_NODE_ID", "from-env")],
    )
    .await;
    assert_eq!(from_env.node_id(), "from-env", "a variable beats the file");
    drop(from_env);

    let from_flag = RoleProcess::start_with_env(
        Role::Peer,
        &["--config", config, "--node-id", "from-flag"],
        &[("NO_COLOR", "1"), ("HERALD_NODE_ID", "from-env")],
    )
    .await;
    assert_eq!(
        from_flag.node_id(),
        "from-flag",
        "a flag beats the variable"
    );
}

#[tokio::test]
async fn an_unknown_key_in_the_file_is_refused_by_its_path() {
    let dir = TempDir::new().unwrap();
    let file = peer_file(
        &dir,
        "[http_tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nkey_fiel = \"x\"\n",
    );
    let finished =
        RoleProcess::run_to_exit(Role::Peer, &["--config", file.to_str().unwrap()]).await;
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert!(
        finished.stderr.contains("http_tls") && finished.stderr.contains("key_fiel"),
        "{}",
        finished.stderr
    );
}

/// A hub whose signing key file is missing or holds no Ed25519 private key (here: a public
/// key) does not start: exit code 2, naming the field and the file.
#[tokio::test]
async fn a_hub_refuses_to_start_with_a_bad_signing_key_file() {
    let dir = TempDir::new().unwrap();
    let public = dir.path().join("hub.pub.pem");
    let key = EntrySigner::from_bytes([3; 32]);
    std::fs::write(&public, key.trusted_key().to_pem()).unwrap();
    let missing = dir.path().join("missing.pem");
    let data = dir.path().join("data");
    for bad in [&public, &missing] {
        let finished = RoleProcess::run_to_exit(
            Role::Hub,
            &[
                "--node-id",
                "hub-bad-key",
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
                "--admin-token",
                "t",
                "--signing-key",
                bad.to_str().unwrap(),
            ],
        )
        .await;
        assert_eq!(finished.status.code(), Some(2), "{finished:?}");
        assert!(
            finished.stderr.contains("hub.signing_key_file")
                && finished.stderr.contains(&bad.display().to_string()),
            "{}",
            finished.stderr
        );
    }
}

#[tokio::test]
async fn the_admin_token_may_come_from_a_file_named_in_the_configuration() {
    let dir = TempDir::new().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "file-t0ken\n").unwrap();
    let config = herald::RawNodeConfig {
        node_id: "peer-file-token".into(),
        data_dir: Some(dir.path().join("data")),
        http_addr: Some("127.0.0.1:0".into()),
        admin_token_file: Some(token_file),
        peer: Some(herald::RawPeerConfig::default()),
        ..herald::RawNodeConfig::default()
    }
    .validate()
    .unwrap();
    let node = herald::Node::start(config).await.unwrap();
    let url = format!(
        "http://{}/api/registers/{}/advertise",
        node.http_addr().unwrap(),
        "0".repeat(32)
    );
    let client = reqwest::Client::new();
    let refused = client
        .post(&url)
        .bearer_auth("wrong")
        .json(&serde_json::json!({"isPublic": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let accepted = client
        .post(&url)
        .bearer_auth("file-t0ken")
        .json(&serde_json::json!({"isPublic": true}))
        .send()
        .await
        .unwrap();
    assert!(accepted.status().is_success(), "{}", accepted.status());
    node.shutdown().await;
}
