//! The fast CPU engine against every golden fixture at the CPU tolerance (`Tolerances::CPU`:
//! logits ≤ 1e-4, every sampler trace token-exact), with every kernel family this CPU runs on one thread, and
//! the fastest family on three threads.
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::conformance::{self, Tolerances};
use bd3lm::fixture::Fixture;
use bd3lm_cpu::{CpuEngine, CpuOptions, Simd};
use std::path::PathBuf;

fn fixture_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("golden.safetensors").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "the three shared fixture cases");
    dirs
}

#[test]
fn fast_engine_passes_every_fixture_check_with_every_kernel_family() {
    let mut failures = Vec::new();
    for dir in fixture_dirs() {
        let fx = Fixture::from_dir(&dir).expect("fixture loads");
        let runs = Simd::available()
            .into_iter()
            .map(|simd| (simd, 1))
            .chain([(Simd::detect(), 3)]);
        for (simd, threads) in runs {
            {
                let options = CpuOptions {
                    threads: Some(threads),
                    simd: Some(simd),
                    ..CpuOptions::default()
                };
                let mut engine = CpuEngine::new(fx.weights.clone(), options).expect("engine");
                let results =
                    pollster::block_on(conformance::run(&fx, &mut engine, Tolerances::CPU));
                assert!(
                    results.iter().any(|r| r.check.starts_with("trace/")),
                    "{}: no trace was replayed",
                    fx.name
                );
                for r in results {
                    let line = format!("[{} x{threads}] {}", simd.name(), r.line());
                    println!("{line}");
                    // Traces must replay token-exactly, not merely with explained divergences.
                    let exact = !r.check.starts_with("trace/") || r.first_divergence.is_none();
                    if !r.pass || !exact {
                        failures.push(line);
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failed checks:\n{}",
        failures.join("\n")
    );
}

/// A NaN or an infinity planted in one logit of one row of the fast engine's logits fails the
/// logit checks (the NaN-proof comparison on the fast CPU engine's path).
#[test]
fn a_planted_nan_or_infinity_in_the_fast_engine_logits_fails_the_check() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs4");
    let fx = Fixture::from_dir(&dir).expect("fixture loads");
    let mut engine = CpuEngine::new(fx.weights.clone(), CpuOptions::default()).expect("engine");
    let (block, logits) =
        pollster::block_on(conformance::teacher_forced_logits(&fx, &mut engine)).expect("logits");
    let problems = conformance::planted_non_finite_problems(&fx, &block, &logits, Tolerances::CPU)
        .expect("checks run");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The store pass folded into the next block's first call (the default) gives exactly the
/// tokens and confidences of a separate store pass, for every sampler, generating twice past
/// the context (the window slides), in one model call per block fewer.
#[test]
fn folded_store_pass_gives_the_same_tokens_in_fewer_calls() {
    use bd3lm::generate::{Event, Generator, SamplerKind, SamplingOptions};
    use bd3lm::Engine;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs4");
    let fx = Fixture::from_dir(&dir).expect("fixture loads");
    let cfg = fx.weights.config.clone();
    let len = 2 * cfg.model_length;
    let blocks = (len / cfg.block_size) as u64;
    let run = |sampler, separate_store| {
        let options = CpuOptions {
            threads: Some(2),
            separate_store,
            ..CpuOptions::default()
        };
        let mut engine = CpuEngine::new(fx.weights.clone(), options).expect("engine");
        let opts = SamplingOptions {
            sampler,
            seed: 4,
            ..SamplingOptions::default()
        };
        let mut gen = Generator::new(
            cfg.block_size,
            cfg.model_length,
            cfg.mask_id(),
            fx.bos(),
            vec![fx.bos()],
            len,
            opts,
        )
        .expect("generator");
        let mut steps = Vec::new();
        loop {
            match pollster::block_on(gen.next(&mut engine)).expect("step") {
                Event::Finished { .. } => break,
                Event::Step { revealed, .. } => steps.push(
                    revealed
                        .iter()
                        .map(|r| (r.position, r.token, r.confidence.to_bits()))
                        .collect::<Vec<_>>(),
                ),
                _ => {}
            }
        }
        (steps, engine.forward_count())
    };
    for sampler in [
        SamplerKind::FirstHitting {
            max_steps: cfg.block_size,
        },
        SamplerKind::Posterior { steps: 3 },
        SamplerKind::Confidence { threshold: 0.05 },
        SamplerKind::Entropy { gamma: 5.0 },
    ] {
        let (folded, folded_calls) = run(sampler, false);
        let (separate, separate_calls) = run(sampler, true);
        assert_eq!(folded, separate, "{sampler:?}");
        assert_eq!(folded_calls + blocks, separate_calls, "{sampler:?}");
    }
}
