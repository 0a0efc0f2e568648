//! The WGSL engine against every golden fixture (the same checks as the CPU reference, GPU
//! tolerances), on the native adapter.
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::conformance::{self, Tolerances};
use bd3lm::fixture::Fixture;
use bd3lm_gpu::{GpuContext, GpuEngine, GpuOptions};
use std::path::PathBuf;

#[test]
fn gpu_engine_passes_every_fixture_check() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("GPU adapter");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.safetensors").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3);
    let mut failures = Vec::new();
    for dir in dirs {
        let fx = Fixture::from_dir(&dir).expect("fixture loads");
        let mut engine =
            pollster::block_on(GpuEngine::from_weights(&ctx, &fx.weights)).expect("engine builds");
        let results = pollster::block_on(conformance::run(&fx, &mut engine, Tolerances::GPU));
        assert!(results.iter().any(|r| r.check.starts_with("trace/")));
        for r in results {
            println!("{}", r.line());
            if !r.pass {
                failures.push(r.line());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failed checks:\n{}",
        failures.join("\n")
    );
}
