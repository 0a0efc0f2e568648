//! The WGSL engine against every golden fixture (the same checks as the CPU reference, GPU
//! tolerances) in both tilings, on the native adapter; the per-block loop against the
//! per-step path; block sizes 1..16 against the CPU reference; the engine's counters.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use bd3lm::conformance::{self, Summary, Tolerances};
use bd3lm::fixture::{self, Fixture};
use bd3lm::generate::{Event, Execution, Generator, SamplerKind, SamplingOptions};
use bd3lm::{Engine, EngineProbes, ReferenceEngine};
use bd3lm_gpu::{GpuContext, GpuEngine, GpuOptions, Tiling};
use common::same_steps;
use std::path::PathBuf;

fn context(tiling: Tiling) -> GpuContext {
    pollster::block_on(GpuContext::new(&GpuOptions {
        tiling,
        ..Default::default()
    }))
    .expect("GPU adapter")
}

fn fixtures_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn fixture_dirs() -> Vec<PathBuf> {
    fixture::case_dirs(&fixtures_root()).expect("fixture cases")
}

fn engine(ctx: &GpuContext, weights: &bd3lm::Weights) -> GpuEngine {
    pollster::block_on(GpuEngine::from_weights(ctx, weights)).expect("engine builds")
}

fn conformance_in(tiling: Tiling) {
    let ctx = context(tiling);
    assert_eq!(ctx.tiling, tiling);
    let mut summary = Summary::default();
    for dir in fixture_dirs() {
        let fx = Fixture::from_dir(&dir).expect("fixture loads");
        let mut engine = engine(&ctx, &fx.weights);
        let results = pollster::block_on(conformance::run(&fx, &mut engine, Tolerances::GPU));
        results
            .iter()
            .for_each(|r| println!("{tiling}: {}", r.line()));
        summary.add(&results);
    }
    assert!(summary.cases >= 3, "the three shared cases: {summary:?}");
    if let Err(problems) = summary.verdict() {
        panic!("{tiling} tiling: {problems}");
    }
}

#[test]
fn gpu_engine_passes_every_fixture_check_in_the_software_tiling() {
    conformance_in(Tiling::Software);
}

#[test]
fn gpu_engine_passes_every_fixture_check_in_the_hardware_tiling() {
    conformance_in(Tiling::Hardware);
}

/// A NaN or an infinity planted in one logit of one row of the WGSL engine's logits fails the
/// logit checks (the NaN-proof comparison on the GPU engine's path).
#[test]
fn a_planted_nan_or_infinity_in_the_gpu_logits_fails_the_check() {
    let ctx = context(Tiling::Auto);
    let fx = Fixture::from_dir(&fixtures_root().join("tiny-v512-bs4")).expect("fixture loads");
    let mut engine = engine(&ctx, &fx.weights);
    let (block, logits) =
        pollster::block_on(conformance::teacher_forced_logits(&fx, &mut engine)).expect("logits");
    let problems = conformance::planted_non_finite_problems(&fx, &block, &logits, Tolerances::GPU)
        .expect("checks run");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One submission per block and one submission per step give bit-identical ids and
/// confidences on every fixture (replayed traces and a free generation past the context), in
/// the adapter's own tiling (the software one on lavapipe, several times faster there; the
/// block-size test below compares the two executions in both tilings, and the hardware
/// conformance replays every trace block by block).
#[test]
fn per_block_and_per_step_first_hitting_are_bit_identical_on_every_fixture() {
    let ctx = context(Tiling::Auto);
    for dir in fixture_dirs() {
        let fx = Fixture::from_dir(&dir).expect("fixture loads");
        let mut engine = engine(&ctx, &fx.weights);
        pollster::block_on(common::per_block_matches_per_step(&fx, &mut engine));
    }
}

fn run_events(gen: &mut Generator, engine: &mut impl Engine) -> Vec<Event> {
    pollster::block_on(common::run_events(gen, engine))
}

/// A random model with every block size the engine supports (embedding rows, attention and
/// sampling of 1, 2, 3, 5, 8 and 16 rows): logits against the CPU reference in both tilings,
/// and per-block generation against per-step.
#[test]
fn block_sizes_one_to_sixteen_match_the_cpu_reference() {
    for tiling in [Tiling::Software, Tiling::Hardware] {
        let ctx = context(tiling);
        for b in [1, 2, 3, 5, 8, 16] {
            let weights = tiny_random_weights(b, 40 + b as u64);
            let cfg = weights.config.clone();
            let mut gpu = engine(&ctx, &weights);
            let mut cpu = ReferenceEngine::new(&weights);
            let prefix: Vec<u32> = (0..3 * b).map(|i| (i * 7 % 50) as u32).collect();
            let mask = cfg.mask_id();
            let block: Vec<u32> = (0..b)
                .map(|i| if i % 2 == 0 { mask } else { i as u32 })
                .collect();
            for e in [&mut gpu as &mut dyn Committer, &mut cpu] {
                e.commit_all(&prefix, b);
            }
            let g = pollster::block_on(gpu.logits(&block)).unwrap();
            let c = pollster::block_on(cpu.logits(&block)).unwrap();
            let err = bd3lm::tolerance::max_abs_diff(&g, &c);
            let tol = Tolerances::GPU.logits;
            assert!(err < tol, "{tiling} B {b}: logits max error {err}");
            let opts = SamplingOptions {
                sampler: SamplerKind::FirstHitting { max_steps: b },
                seed: 3,
                ..SamplingOptions::default()
            };
            let bos = cfg.vocab_size as u32 - 2;
            let make = |x| {
                Generator::new(
                    b,
                    cfg.model_length,
                    mask,
                    bos,
                    vec![bos],
                    4 * b,
                    opts.clone(),
                )
                .unwrap()
                .execution(x)
            };
            let per_block = run_events(&mut make(Execution::PerBlock), &mut gpu);
            let per_step = run_events(&mut make(Execution::PerStep), &mut gpu);
            assert!(same_steps(&per_block, &per_step), "{tiling} B {b}");
        }
    }
}

/// The parallel samplers on the device and the folded store pass, generating twice past the
/// context (the window slides): each block of a parallel sampler is one submission and one
/// wait, reveals several tokens in some steps, and gives bit-identical ids and confidences to
/// one draw per step with the selection on the host; with the store pass folded into the next
/// block's first call, every sampler gives bit-identical results to a separate store pass, in
/// one model call per block fewer.
#[test]
fn parallel_samplers_and_the_folded_store_pass_are_exact() {
    let dir = fixtures_root().join("tiny-v512-bs4");
    let fx = Fixture::from_dir(&dir).expect("fixture loads");
    let cfg = fx.weights.config.clone();
    let ctx = context(Tiling::Auto);
    let mut gpu = engine(&ctx, &fx.weights);
    assert!(gpu.store_fold(), "the fold is on by default");
    let len = 2 * cfg.model_length;
    let blocks = (len / cfg.block_size) as u64;
    let first_hitting = SamplerKind::FirstHitting {
        max_steps: cfg.block_size,
    };
    for sampler in [first_hitting].into_iter().chain(common::PARALLEL_SAMPLERS) {
        let run = |gpu: &mut GpuEngine, execution, fold| {
            gpu.set_store_fold(fold);
            let (c0, f0) = (gpu.counters(), gpu.forward_count());
            let mut gen = common::free_generator(&fx, sampler, len, 3).execution(execution);
            let events = run_events(&mut gen, gpu);
            assert_eq!(gen.committed().len(), len);
            let c = gpu.counters();
            let waits = c.host_waits - c0.host_waits;
            (events, gpu.forward_count() - f0, waits)
        };
        let (block, calls, waits) = run(&mut gpu, Execution::PerBlock, true);
        let steps = block
            .iter()
            .filter(|e| matches!(e, Event::Step { .. }))
            .count() as u64;
        assert_eq!(waits, blocks, "{sampler:?}: one wait per block");
        assert_eq!(
            calls, steps,
            "{sampler:?}: one call per step, store passes folded"
        );
        let (separate, separate_calls, _) = run(&mut gpu, Execution::PerBlock, false);
        assert!(
            same_steps(&block, &separate),
            "{sampler:?}: the folded store pass changed the tokens"
        );
        assert_eq!(
            separate_calls,
            steps + blocks,
            "{sampler:?}: a store pass per block"
        );
        if sampler.is_parallel() {
            let (step, _, step_waits) = run(&mut gpu, Execution::PerStep, true);
            assert_eq!(step_waits, steps);
            assert!(
                same_steps(&block, &step),
                "{sampler:?}: device and host selection differ"
            );
            let (multi, all) = common::multi_reveal_steps(&block);
            assert!(
                multi > 0 && multi < all,
                "{sampler:?}: {multi} of {all} steps revealed several tokens"
            );
            println!(
                "{sampler:?}: {all} steps for {len} tokens, {multi} with several reveals; calls per token {:.3} folded, {:.3} separate",
                calls as f64 / len as f64,
                separate_calls as f64 / len as f64
            );
        }
    }
}

/// Commits whole blocks of a prefix (object-safe helper over the two engines).
trait Committer {
    fn commit_all(&mut self, prefix: &[u32], b: usize);
}

impl<E: Engine> Committer for E {
    fn commit_all(&mut self, prefix: &[u32], b: usize) {
        self.reset();
        for chunk in prefix.chunks_exact(b) {
            pollster::block_on(self.commit(chunk)).unwrap();
        }
    }
}

/// Random weights with small shapes (hidden 32, 2 heads, 2 layers, vocabulary 50).
fn tiny_random_weights(block_size: usize, seed: u64) -> bd3lm::Weights {
    use bd3lm::quant::Matrix;
    use bd3lm::rng::SplitMix64;
    let cfg = bd3lm::Config {
        hidden_dim: 32,
        n_heads: 2,
        n_layers: 2,
        cond_dim: 8,
        vocab_size: 50,
        model_length: 8 * block_size.max(4),
        block_size,
        ..Default::default()
    };
    let mut g = SplitMix64::new(seed);
    let mut rand = |n: usize, scale: f32, offset: f32| -> Vec<f32> {
        (0..n)
            .map(|_| offset + ((g.next_f64() * 2.0 - 1.0) as f32) * scale)
            .collect()
    };
    let h = cfg.hidden_dim;
    let (v, mlp) = (cfg.vocab_size, 4 * h);
    let s = 1.0 / (h as f32).sqrt();
    let layers = (0..cfg.n_layers)
        .map(|_| bd3lm::weights::LayerWeights {
            norm1: rand(h, 0.1, 1.0),
            qkv: Matrix::from_f32(3 * h, h, rand(3 * h * h, s, 0.0)),
            attn_out: Matrix::from_f32(h, h, rand(h * h, s, 0.0)),
            norm2: rand(h, 0.1, 1.0),
            mlp_in: Matrix::from_f32(mlp, h, rand(mlp * h, s, 0.0)),
            mlp_in_bias: rand(mlp, 0.1, 0.0),
            mlp_out: Matrix::from_f32(h, mlp, rand(h * mlp, 0.5 * s, 0.0)),
            mlp_out_bias: rand(h, 0.1, 0.0),
            modulation: rand(6 * h, 0.3, 0.0),
        })
        .collect();
    bd3lm::Weights {
        cond: rand(cfg.cond_dim, 1.0, 0.0),
        inv_freq: bd3lm::checkpoint::default_inv_freq(cfg.head_dim()),
        embedding: Matrix::from_f32(v, h, rand(v * h, 1.0, 0.0)),
        layers,
        final_norm: rand(h, 0.1, 1.0),
        final_modulation: rand(2 * h, 0.3, 0.0),
        lm_head: Matrix::from_f32(v, h, rand(v * h, 2.0 * s, 0.0)),
        lm_head_bias: rand(v, 0.1, 0.0),
        config: cfg,
    }
}

/// Buffers and bind groups are created once per engine: generating past the context (sliding
/// window) with any sampler creates no GPU object at all. A first-hitting block submits each
/// step as it is recorded (its store pass rides with the next block's first) and waits once;
/// with `steps_per_submit` its steps are grouped into submissions, still with one wait and
/// the same tokens.
#[test]
fn denoising_steps_create_no_gpu_objects_and_blocks_wait_once() {
    let dir = fixtures_root().join("tiny-v512-bs4");
    let fx = Fixture::from_dir(&dir).expect("fixture loads");
    let cfg = fx.weights.config.clone();
    let bos = (cfg.vocab_size - 2) as u32;
    let generate = |engine: &mut GpuEngine, sampler| {
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
        let events = run_events(&mut gen, engine);
        assert!(gen.committed().len() >= total);
        events
    };
    let first_hitting = SamplerKind::FirstHitting {
        max_steps: cfg.block_size,
    };
    let ctx = context(Tiling::Auto);
    let mut engine = engine(&ctx, &fx.weights);
    let built = engine.counters().device_objects_created;
    assert!(
        built > 8 * cfg.n_layers as u64,
        "the plan's objects are counted: {built}"
    );
    let before = engine.counters();
    let events = generate(&mut engine, first_hitting);
    let after = engine.counters();
    let blocks = after.blocks_denoised - before.blocks_denoised;
    assert_eq!(blocks as usize, 2 * cfg.model_length / cfg.block_size);
    assert_eq!(
        after.host_waits - before.host_waits,
        blocks,
        "one wait per block"
    );
    // The last block's store pass is still waiting for a next submission.
    assert_eq!(
        after.submits - before.submits,
        submissions(&events, 1),
        "one submission per step"
    );
    generate(&mut engine, SamplerKind::Posterior { steps: 3 });
    for sampler in common::PARALLEL_SAMPLERS {
        generate(&mut engine, sampler);
    }
    assert!(engine.forward_count() > 2 * cfg.model_length as u64 / cfg.block_size as u64);
    assert_eq!(
        engine.counters().device_objects_created,
        built,
        "GPU objects created while generating ({} model calls)",
        engine.forward_count()
    );
    // The software tiling (a CPU adapter under `Auto`) keeps every window in one split, so no
    // layer records its attention combine.
    assert_eq!(ctx.tiling, Tiling::Software);
    assert_eq!(
        engine.counters().dispatches_per_forward,
        7 * cfg.n_layers + 3 + bd3lm_gpu::kernels::sample::SAMPLE_PASSES.len(),
        "embed, 7 per layer, LM head, the sampler's passes, reveal"
    );

    let split_ctx = pollster::block_on(GpuContext::new(&GpuOptions {
        steps_per_submit: Some(3),
        ..Default::default()
    }))
    .expect("GPU adapter");
    let mut split = pollster::block_on(GpuEngine::from_weights(&split_ctx, &fx.weights)).unwrap();
    let before = split.counters();
    let split_events = generate(&mut split, first_hitting);
    let after = split.counters();
    let blocks = after.blocks_denoised - before.blocks_denoised;
    assert!(
        same_steps(&events, &split_events),
        "same tokens in smaller submissions"
    );
    assert_eq!(after.host_waits - before.host_waits, blocks);
    assert_eq!(
        after.submits - before.submits,
        submissions(&split_events, 3)
    );
}

/// Submissions of a generation's blocks with `per_submit` steps each.
fn submissions(events: &[Event], per_submit: usize) -> u64 {
    let mut steps_per_block = std::collections::BTreeMap::new();
    for e in events {
        if let Event::Step { block, .. } = e {
            *steps_per_block.entry(*block).or_insert(0usize) += 1;
        }
    }
    steps_per_block
        .values()
        .map(|s| s.div_ceil(per_submit) as u64)
        .sum()
}
