#![cfg(not(target_arch = "wasm32"))]
//! The embedded demo model (`models/bd3lm-sotu-tiny-bs4`) against the logits its training
//! code recorded (`reference_logits.json`: the reference `BD3LM.forward` in sample mode, the
//! block-causal window of spec §6.2, top-10 logits and logsumexp of the last block). The CPU
//! reference runs the KV-cache path (spec §6.3), which spec §6 shows is the same function.

use bd3lm::{checkpoint, Engine, EngineProbes, ReferenceEngine};
use serde_json::Value;
use std::path::PathBuf;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/bd3lm-sotu-tiny-bs4")
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

#[test]
fn demo_model_matches_its_reference_logits() {
    let dir = model_dir();
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config.json");
    let model = std::fs::read(dir.join("model.safetensors")).expect("model.safetensors");
    let weights = checkpoint::load_hf(&config, &model).expect("demo model loads");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reference_logits.json")).expect("reference file"),
    )
    .expect("reference JSON");
    let cases = reference["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    let (b, v) = (weights.config.block_size, weights.config.vocab_size);
    let mut engine = ReferenceEngine::new(&weights);
    let mut worst = 0f64;
    for (c, case) in cases.iter().enumerate() {
        let ids: Vec<u32> = numbers(&case["input_ids"])
            .iter()
            .map(|&x| x as u32)
            .collect();
        assert_eq!(ids.len() % b, 0, "case {c}: whole blocks");
        engine.reset();
        let prefix = ids.len() - b;
        for block in ids[..prefix].chunks(b) {
            pollster::block_on(engine.commit(block)).expect("commit");
        }
        let logits = pollster::block_on(engine.logits(&ids[prefix..])).expect("logits");
        let top_ids = case["top10_ids"].as_array().expect("top10_ids");
        let top_logits = case["top10_logits"].as_array().expect("top10_logits");
        let lse = numbers(&case["logsumexp"]);
        assert_eq!(top_ids.len(), b, "case {c}: one row per block position");
        for r in 0..b {
            let row = &logits[r * v..(r + 1) * v];
            let ref_ids = numbers(&top_ids[r]);
            let ref_logits = numbers(&top_logits[r]);
            for (&id, &logit) in ref_ids.iter().zip(&ref_logits) {
                worst = worst.max((row[id as usize] as f64 - logit).abs());
            }
            let argmax = (0..v)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .expect("non-empty row");
            assert_eq!(argmax, ref_ids[0] as usize, "case {c} row {r}: top-1");
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let ours = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            worst = worst.max((ours - lse[r]).abs());
        }
    }
    // The reference values are printed with 5 decimals.
    assert!(
        worst <= 1e-4,
        "largest logit / logsumexp difference {worst:.2e}"
    );
}
