//! The WGSL engine against every golden fixture (the same checks as the CPU reference, GPU
//! tolerances), on the native adapter.
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::conformance::{self, Summary, Tolerances};
use bd3lm::fixture::{self, Fixture};
use bd3lm_gpu::{GpuContext, GpuEngine, GpuOptions};
use std::path::PathBuf;

fn fixtures_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[test]
fn gpu_engine_passes_every_fixture_check() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("GPU adapter");
    let mut summary = Summary::default();
    for dir in fixture::case_dirs(&fixtures_root()).expect("fixture cases") {
        let fx = Fixture::from_dir(&dir).expect("fixture loads");
        let mut engine =
            pollster::block_on(GpuEngine::from_weights(&ctx, &fx.weights)).expect("engine builds");
        let results = pollster::block_on(conformance::run(&fx, &mut engine, Tolerances::GPU));
        results.iter().for_each(|r| println!("{}", r.line()));
        summary.add(&results);
    }
    assert!(summary.cases >= 3, "the three shared cases: {summary:?}");
    if let Err(problems) = summary.verdict() {
        panic!("{problems}");
    }
}

/// Buffers and bind groups are created once per engine: generating past the context (sliding
/// window) with either sampler creates no GPU object at all.
#[test]
fn denoising_steps_create_no_gpu_objects() {
    use bd3lm::generate::{Event, Generator, SamplerKind, SamplingOptions};
    use bd3lm::Engine;

    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("GPU adapter");
    let dir = fixtures_root().join("tiny-v512-bs4");
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
