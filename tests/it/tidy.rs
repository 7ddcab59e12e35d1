//! The tidy test: the repository's structural rules, checked on every test run as
//! rust-analyzer's tidy does, so that they cannot drift quietly.
//!
//! - `herald-messages` and `herald-actors` depend on no driver crate, directly or through
//!   another crate (redis, redb, mongodb, tonic, axum, reqwest, ractor_cluster, hyper);
//! - every Rust source file starts with a `//!` comment saying what it is for;
//! - ARCHITECTURE.md's codemap names every source file and every source folder.
//!
//! It reads the dependency graph with `cargo tree` (no build, no network: `--offline`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that talk to the outside world: only `herald-runtime` (and the facade) may use them.
const DRIVERS: &[&str] = &[
    "redis",
    "redb",
    "mongodb",
    "tonic",
    "axum",
    "hyper",
    "reqwest",
    "ractor_cluster",
];
/// Crates that must stay free of drivers.
const PURE_CRATES: &[&str] = &["herald-messages", "herald-actors"];
/// Where the sources are, relative to the workspace root.
const SOURCE_ROOTS: &[&str] = &[
    "src",
    "messages/src",
    "actors/src",
    "actors/tests",
    "proto/src",
    "proto/build.rs",
    "runtime/src",
    "examples",
    "tests",
    "benches",
];
/// File names that stand for their folder (the folder must be in the codemap instead).
const FOLDER_FILES: &[&str] = &["mod.rs", "lib.rs", "main.rs"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn domain_and_actor_crates_name_no_driver() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for pure in PURE_CRATES {
        // Normal dependencies (not dev, not build), transitively, for this platform.
        let output = Command::new(&cargo)
            .args([
                "tree",
                "-p",
                pure,
                "-e",
                "normal",
                "--prefix",
                "none",
                "--offline",
            ])
            .current_dir(root())
            .output()
            .expect("run cargo tree");
        assert!(
            output.status.success(),
            "cargo tree -p {pure} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let tree = String::from_utf8(output.stdout).unwrap();
        let crates: BTreeSet<&str> = tree
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert!(crates.contains(pure), "cargo tree listed nothing: {tree}");
        let drivers: Vec<&&str> = DRIVERS.iter().filter(|d| crates.contains(**d)).collect();
        assert!(
            drivers.is_empty(),
            "{pure} depends on driver crates {drivers:?}: drivers belong in herald-runtime"
        );
    }
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let missing: Vec<String> = source_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| relative(&path))
        .collect();
    assert!(
        missing.is_empty(),
        "source files without a `//!` module comment saying what they are for: {missing:#?}"
    );
}

#[test]
fn the_codemap_names_every_source_file_and_folder() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let codemap = architecture
        .split("## Codemap")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has a `## Codemap` section");
    let words: BTreeSet<&str> = codemap
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .flat_map(|word| [word, word.trim_end_matches(".rs")])
        .collect();
    let mut missing = BTreeSet::new();
    for path in source_files() {
        let name = path.file_name().unwrap().to_str().unwrap();
        let stem = name.trim_end_matches(".rs");
        if !FOLDER_FILES.contains(&name) && !words.contains(stem) {
            missing.insert(relative(&path));
        }
        let mut folder = path.parent();
        while let Some(dir) = folder.filter(|dir| *dir != root()) {
            let dir_name = dir.file_name().unwrap().to_str().unwrap();
            if !words.contains(dir_name) {
                missing.insert(format!("{}/", relative(dir)));
            }
            folder = dir.parent();
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's codemap does not name: {missing:#?}"
    );
}

/// Every `.rs` file under the source roots.
fn source_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for source_root in SOURCE_ROOTS {
        collect(&root().join(source_root), &mut files);
    }
    files.sort();
    files
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path.to_owned());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries {
        collect(&entry.unwrap().path(), files);
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}
