//! Where the integration tests find the golden fixtures (`tests/fixtures/` at the repo root).
#![allow(dead_code)] // each test file uses part of this

use std::path::PathBuf;

pub fn fixtures_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn fixture_dir(case: &str) -> PathBuf {
    fixtures_root().join(case)
}

/// Every fixture case directory, sorted; at least the three shared cases.
pub fn fixture_dirs() -> Vec<PathBuf> {
    let root = fixtures_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.safetensors").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 3,
        "expected the three shared fixture cases in {}",
        root.display()
    );
    dirs
}
