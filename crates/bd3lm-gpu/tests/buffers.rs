//! Device buffers belong to the model or engine that created them and are destroyed with it
//! (on the web a dropped `wgpu::Buffer` would wait for the JS garbage collector): a reloaded
//! model frees the old one's buffers at once, and an engine's drop never touches another
//! engine's buffers on the same device.
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::fixture::Fixture;
use bd3lm::generate::{Event, Generator, SamplerKind, SamplingOptions};
use bd3lm::Engine;
use bd3lm_gpu::{GpuContext, GpuEngine, GpuModelLoader, GpuOptions};
use std::path::PathBuf;

fn weights() -> bd3lm::Weights {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs4");
    Fixture::from_dir(&dir).expect("fixture loads").weights
}

/// A short generation past the context; its tokens.
fn generate(engine: &mut GpuEngine, seed: u64) -> Vec<u32> {
    let cfg = engine.config().clone();
    let bos = (cfg.vocab_size - 2) as u32;
    let opts = SamplingOptions {
        sampler: SamplerKind::Entropy { gamma: 1.0 },
        seed,
        ..SamplingOptions::default()
    };
    let mut gen = Generator::new(
        cfg.block_size,
        cfg.model_length,
        cfg.mask_id(),
        bos,
        vec![bos],
        cfg.model_length + 2 * cfg.block_size,
        opts,
    )
    .expect("generator");
    pollster::block_on(async {
        while !matches!(
            gen.next(engine).await.expect("step"),
            Event::Finished { .. }
        ) {}
    });
    gen.committed().to_vec()
}

#[test]
fn a_dropped_engine_destroys_its_buffers_and_only_its_own() {
    let w = weights();
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("GPU adapter");
    let (created0, destroyed0) = ctx.buffer_counts();
    assert_eq!(destroyed0, 0);
    let mut first = pollster::block_on(GpuEngine::from_weights(&ctx, &w)).expect("engine");
    let held = first.counters().buffers_held;
    let (created1, _) = ctx.buffer_counts();
    assert_eq!(
        held,
        created1 - created0,
        "every buffer of the engine is held by it"
    );
    let tokens = generate(&mut first, 3);
    assert_eq!(
        first.counters().buffers_held,
        held,
        "generation creates no buffer"
    );

    // A second engine on the same device (the page reuses its device across reloads).
    let mut second = pollster::block_on(GpuEngine::from_weights(&ctx, &w)).expect("engine");
    assert_eq!(second.counters().buffers_held, held);
    drop(first);
    assert_eq!(
        ctx.buffer_counts().1,
        held,
        "the first engine's buffers are destroyed"
    );
    // The second engine still runs (none of its buffers was destroyed) and gives the same tokens.
    assert_eq!(generate(&mut second, 3), tokens);
    ctx.check().expect("no validation error");
    drop(second);
    let (created, destroyed) = ctx.buffer_counts();
    assert_eq!(destroyed, 2 * held);
    assert_eq!(
        created - created0,
        2 * held,
        "no buffer outside the two engines"
    );
}

#[test]
fn an_abandoned_load_destroys_what_it_uploaded() {
    let w = weights();
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("GPU adapter");
    let mut loader = GpuModelLoader::new(&ctx, &w.config).expect("loader");
    loader
        .put(
            "embedding",
            &bd3lm::package::TensorPiece::Rows {
                start_row: 0,
                total_rows: w.embedding.rows,
                matrix: w.embedding.clone(),
            },
        )
        .expect("upload");
    let (created, _) = ctx.buffer_counts();
    assert!(created >= 2, "{created}");
    drop(loader);
    assert_eq!(ctx.buffer_counts().1, created);
}
