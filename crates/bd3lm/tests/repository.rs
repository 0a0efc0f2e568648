#![cfg(not(target_arch = "wasm32"))]
//! Hygiene of the checkout itself: a fresh clone elsewhere must build and test, so no tracked
//! file may name a path that exists only on the machine it was written on (the folder holding
//! this checkout, or the home directory).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Tracked files (git), or every file below the root when git is unavailable.
fn tracked_files(root: &Path) -> Vec<PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output();
    match out {
        Ok(o) if o.status.success() => o
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
            .collect(),
        _ => panic!("`git ls-files` failed in {}", root.display()),
    }
}

/// Absolute prefixes that exist only on this machine. Shared temporary folders are left out
/// (docs legitimately use `/tmp/...` in example commands).
fn machine_prefixes(root: &Path) -> Vec<String> {
    let mut prefixes = Vec::new();
    let common = ["/", "/tmp", "/var/tmp"];
    if let Some(parent) = root.parent() {
        let p = parent.display().to_string();
        if !common.contains(&p.as_str()) {
            prefixes.push(format!("{p}/"));
        }
    }
    if let Ok(home) = std::env::var("HOME") {
        if !common.contains(&home.as_str()) && !home.is_empty() {
            prefixes.push(format!("{home}/"));
        }
    }
    prefixes
}

#[test]
fn no_tracked_file_names_a_path_of_this_machine() {
    let root = repo_root();
    let prefixes = machine_prefixes(&root);
    let files = tracked_files(&root);
    assert!(files.len() > 50, "git ls-files found the tree");
    let mut hits = Vec::new();
    for file in files {
        if file.ends_with("Cargo.lock") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // binary files
        };
        for (n, line) in text.lines().enumerate() {
            if let Some(p) = prefixes.iter().find(|p| line.contains(p.as_str())) {
                hits.push(format!(
                    "{}:{}: names {p}",
                    file.strip_prefix(&root).unwrap_or(&file).display(),
                    n + 1
                ));
            }
        }
    }
    assert!(hits.is_empty(), "machine paths:\n{}", hits.join("\n"));
}
