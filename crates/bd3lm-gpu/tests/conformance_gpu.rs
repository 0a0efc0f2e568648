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

/// Buffers and bind groups are created once per engine: generating past the context (sliding
/// window) with either sampler creates no GPU object at all.
#[test]
fn denoising_steps_create_no_gpu_objects() {
    use bd3lm::generate::{Event, Generator, SamplerKind, SamplingOptions};
    use bd3lm::Engine;

    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("GPU adapter");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs4");
    let fx = Fixture::from_dir(&dir).expect("fixture loads");
    let mut engine =
        pollster::block_on(GpuEngine::from_weights(&ctx, &fx.weights)).expect("engine builds");
    let cfg = fx.weights.config.clone();
    let built = engine.counters().device_objects_created;
    assert!(
        built > 5 * cfg.n_layers as u64,
        "the plan's objects are counted: {built}"
    );
    let bos = (cfg.vocab_size - 2) as u32;
    let mut forwards = 0;
    for sampler in [
        SamplerKind::FirstHitting {
            max_steps: cfg.block_size,
        },
        SamplerKind::Posterior { steps: 3 },
    ] {
        engine.reset();
        let opts = SamplingOptions {
            sampler,
            seed: 7,
            ..SamplingOptions::default()
        };
        // Twice the context: the window slides.
        let total = 2 * cfg.model_length;
        let mut gen = Generator::new(
            cfg.block_size,
            cfg.model_length,
            cfg.mask_id(),
            bos,
            vec![bos],
            total,
            opts,
        )
        .expect("generator");
        while !matches!(
            pollster::block_on(gen.next(&mut engine)).expect("step"),
            Event::Finished { .. }
        ) {}
        assert!(gen.committed().len() >= total);
        forwards = engine.forward_count();
    }
    assert!(forwards > 2 * cfg.model_length as u64 / cfg.block_size as u64);
    assert_eq!(
        engine.counters().device_objects_created,
        built,
        "GPU objects created while generating ({forwards} model calls)"
    );
}
