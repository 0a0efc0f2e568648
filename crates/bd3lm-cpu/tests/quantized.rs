//! The fast engine on q8/q4/f16 weights against the exact reference on the same weights
//! dequantized: the kernels multiply the stored codes exactly, so the logits differ only by
//! f32 round-off and the activation rounding (16-bit codes for q8: within 2e-3; 8-bit codes
//! for q4: a small fraction of q4's own error against f32).
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::fixture::Fixture;
use bd3lm::package::{quantize_weights, SchemePlan};
use bd3lm::quant::Scheme;
use bd3lm::EngineProbes;
use bd3lm_cpu::{CpuEngine, CpuOptions, Simd};
use std::path::PathBuf;

fn logits<E: EngineProbes>(engine: &mut E, prefix: &[Vec<u32>], block: &[u32]) -> Vec<f32> {
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
    let max_diff =
        |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let f32_logits = logits(
        &mut bd3lm::ReferenceEngine::new(&fx.weights),
        &prefix,
        &block,
    );
    for scheme in [Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let weights = quantize_weights(&fx.weights, SchemePlan::for_format(scheme));
        let mut reference = bd3lm::ReferenceEngine::new(&weights);
        let expected = logits(&mut reference, &prefix, &block);
        let format_error = max_diff(&expected, &f32_logits);
        let bound = match scheme {
            Scheme::Q4 => 0.15 * format_error,
            _ => 2e-3,
        };
        for simd in Simd::available() {
            let options = CpuOptions {
                threads: Some(2),
                simd: Some(simd),
                ..CpuOptions::default()
            };
            let mut fast = CpuEngine::new(weights.clone(), options).expect("engine");
            let got = logits(&mut fast, &prefix, &block);
            let worst = max_diff(&got, &expected);
            println!(
                "{scheme:?} {}: max |Δlogit| {worst:e} (the format itself: {format_error:e})",
                simd.name()
            );
            assert!(
                worst < bound,
                "{scheme:?} {}: max |Δlogit| {worst} (bound {bound})",
                simd.name()
            );
        }
    }
}
