//! Where the integration tests find the golden fixtures (`tests/fixtures/` at the repo root).
#![allow(dead_code)] // each test file uses part of this

use std::path::PathBuf;

pub fn fixtures_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn fixture_dir(case: &str) -> PathBuf {
    fixtures_root().join(case)
}
