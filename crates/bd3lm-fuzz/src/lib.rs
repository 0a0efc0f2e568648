//! Fuzz targets for every parser of untrusted bytes in bd3lm, and the rules they run under.
//!
//! A target is a `fn(&[u8])` that hands the bytes to a parser the way the CLI or the page
//! would, then uses whatever parsed. It must return normally for every input: an `Err` is
//! the expected answer to bad bytes; a panic, a hang or an allocation beyond
//! [`allocation_bound`] is a bug. The same targets run under libFuzzer (`fuzz/`, driven by
//! `scripts/fuzz.sh`) and, replaying the committed seeds and regressions, in `cargo test`.
//!
//! Adding a target: one file in `src/targets/` with `pub fn run(data: &[u8])`, its name in
//! the `targets!` list below (`name: "what it parses";`), and a folder of seed inputs in `fuzz/seeds/<name>/`.

pub mod alloc;
pub mod input;
pub mod targets;

use std::path::{Path, PathBuf};

/// One fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// The name used by `scripts/fuzz.sh` and for `fuzz/seeds/<name>/`.
    pub name: &'static str,
    /// What it parses, for the report.
    pub about: &'static str,
    pub run: fn(&[u8]),
    /// The most one input of `len` bytes may make it hold at once: [`allocation_bound`],
    /// unless the target's module defines `BOUND` (with the measurements that justify it).
    pub bound: fn(usize) -> usize,
}

macro_rules! targets {
    ($($name:ident: $about:literal $(, bound = $bound:path)?;)*) => {
        /// Every target, in the order the scripts run them.
        pub const TARGETS: &[Target] = &[
            $(Target {
                name: stringify!($name),
                about: $about,
                run: targets::$name::run,
                bound: targets!(@bound $($bound)?),
            },)*
        ];
    };
    (@bound) => { allocation_bound };
    (@bound $bound:path) => { $bound };
}

targets! {
    safetensors_header: "safetensors header of an HF checkpoint (hf_file::SafetensorsHeader), then its f32 tensors";
    hf_checkpoint: "config.json + model.safetensors through checkpoint::load_hf";
    config_json: "HF config.json (Config::from_json_str)";
    package_manifest: "package manifest.json (Manifest::parse and its validation)";
    package_shard: "a package shard under its manifest (package::read_shard, then WeightsBuilder)";
    tokenizer_json: "tokenizer.json (tokenizer::Tokenizer::from_bytes), then encode and decode",
        bound = targets::tokenizer_json::bound;
    page_package: "the page's package URL and manifest (package::url, Manifest::download_order)";
    fixture_golden: "golden-fixture files (fixture::read_golden, fixture::read_notes)";
    hub_id: "a Hub model id (hub::HubId::parse) and the URLs built from it";
    hub_api: "the Hub's model-info and file-tree JSON (hub::parse_model_info, hub::parse_tree, LoadPlan, check_config)";
    hf_stream: "a checkpoint streamed in chunks (hf_stream::SafetensorsStream), as the page downloads it";
}

/// Looks a target up by name.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The most an input of `len` bytes may make a parser hold at once: 2 x its size + 1 MiB.
pub fn allocation_bound(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(1 << 20)
}

/// Runs one input under its target's allocation bound (panics propagate).
pub fn run_bounded(target: &Target, data: &[u8]) -> alloc::Measurement {
    let ((), m) = alloc::measure((target.bound)(data.len()), || (target.run)(data));
    m
}

/// The repository root (for the committed seeds and regressions).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `fuzz/seeds/<target>/`: small inputs from real files and crafted cases.
pub fn seeds_dir(target: &str) -> PathBuf {
    repo_root().join("fuzz/seeds").join(target)
}

/// `fuzz/regressions/<target>/`: every input that once crashed, hung or over-allocated.
pub fn regressions_dir(target: &str) -> PathBuf {
    repo_root().join("fuzz/regressions").join(target)
}
