//! The fast engine on q8/q4/f16 weights against the exact reference on the same weights
//! dequantized: the kernels multiply the stored codes exactly, so the logits agree to f32
//! round-off plus the 16-bit activation rounding, far inside the formats' own error.
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::fixture::Fixture;
use bd3lm::package::{quantize_weights, SchemePlan};
use bd3lm::quant::Scheme;
use bd3lm::Engine;
use bd3lm_cpu::{CpuEngine, CpuOptions, Simd};
use std::path::PathBuf;

fn logits<E: Engine>(engine: &mut E, prefix: &[Vec<u32>], block: &[u32]) -> Vec<f32> {
    engine.reset();
    for b in prefix {
        pollster::block_on(engine.commit(b)).expect("commit");
    }
    pollster::block_on(engine.logits(block)).expect("logits")
}

#[test]
fn quantized_weights_give_the_reference_logits() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-v512-bs16");
    let fx = Fixture::from_dir(&dir).expect("fixture");
    let cfg = fx.weights.config.clone();
    let (b, v) = (cfg.block_size, cfg.vocab_size);
    let prefix: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            (0..b)
                .map(|j| ((i * 31 + j * 7) % (v - 2)) as u32)
                .collect()
        })
        .collect();
    let mut block: Vec<u32> = (0..b).map(|j| (j * 13 % (v - 2)) as u32).collect();
    block[3] = cfg.mask_id();
    block[9] = cfg.mask_id();
    for scheme in [Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let weights = quantize_weights(&fx.weights, SchemePlan::for_format(scheme));
        let mut reference = bd3lm::CpuEngine::new(&weights);
        let expected = logits(&mut reference, &prefix, &block);
        for simd in Simd::available() {
            let options = CpuOptions {
                threads: Some(2),
                simd: Some(simd),
            };
            let mut fast = CpuEngine::new(weights.clone(), options).expect("engine");
            let got = logits(&mut fast, &prefix, &block);
            let worst = got
                .iter()
                .zip(&expected)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            println!("{scheme:?} {}: max |Δlogit| {worst:e}", simd.name());
            assert!(
                worst < 2e-3,
                "{scheme:?} {}: max |Δlogit| {worst}",
                simd.name()
            );
        }
    }
}
