//! `checkpoint::load_hf`: an HF `config.json` and `model.safetensors` (whole, in memory, as
//! the page and the fixture tests load them) into weights.
//!
//! Input: `input::split` into config.json, then model.safetensors.

use crate::input::{split, text};
use bd3lm::checkpoint::load_hf;
use bd3lm::Config;

/// The smallest model the seeds use: every tensor of a real checkpoint, a few KB in all.
pub fn tiny_config() -> Config {
    Config {
        vocab_size: 8,
        hidden_dim: 4,
        cond_dim: 2,
        n_layers: 1,
        n_heads: 1,
        model_length: 8,
        block_size: 4,
        ..Config::released(4)
    }
}

pub fn run(data: &[u8]) {
    let (config, model) = split(data);
    let Some(config) = text(config) else {
        return;
    };
    let Ok(weights) = load_hf(config, model) else {
        return;
    };
    let cfg = &weights.config;
    assert_eq!(weights.layers.len(), cfg.n_layers);
    assert_eq!(weights.embedding.rows, cfg.vocab_size);
    assert_eq!(weights.cond.len(), cfg.cond_dim);
    assert_eq!(weights.parameter_count(), weights.parameter_count());
}
