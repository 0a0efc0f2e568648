//! The model's tensors in the form every backend consumes: matrices in their storage scheme,
//! small vectors in f32, and the adaLN outputs precomputed (spec §4.2: with
//! `time_conditioning = false` they are constants, so the adaLN weights themselves never ship).

use crate::config::Config;
use crate::quant::{Matrix, Scheme};

#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    pub norm1: Vec<f32>,
    /// `[3H, H]`: q, k, v rows, head-major inside each third.
    pub qkv: Matrix,
    pub attn_out: Matrix,
    pub norm2: Vec<f32>,
    pub mlp_in: Matrix,
    pub mlp_in_bias: Vec<f32>,
    pub mlp_out: Matrix,
    pub mlp_out_bias: Vec<f32>,
    /// `[6H]`: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
    pub modulation: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub config: Config,
    /// The constant conditioning vector `c` (`[C]`), kept for checks.
    pub cond: Vec<f32>,
    /// Rotary inverse frequencies `[d/2]` exactly as the checkpoint's buffer holds them.
    pub inv_freq: Vec<f32>,
    pub embedding: Matrix,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Vec<f32>,
    /// `[2H]`: shift, scale (shift first).
    pub final_modulation: Vec<f32>,
    pub lm_head: Matrix,
    pub lm_head_bias: Vec<f32>,
}

impl LayerWeights {
    pub fn matrices(&self) -> [(&'static str, &Matrix); 4] {
        [
            ("qkv", &self.qkv),
            ("attn_out", &self.attn_out),
            ("mlp_in", &self.mlp_in),
            ("mlp_out", &self.mlp_out),
        ]
    }
}

impl Weights {
    /// A copy with every matrix stored as f32 (what the CPU reference path runs on).
    pub fn dequantized(&self) -> Weights {
        let f = |m: &Matrix| Matrix::from_f32(m.rows, m.cols, m.to_f32());
        Weights {
            config: self.config.clone(),
            cond: self.cond.clone(),
            inv_freq: self.inv_freq.clone(),
            embedding: f(&self.embedding),
            layers: self
                .layers
                .iter()
                .map(|l| LayerWeights {
                    qkv: f(&l.qkv),
                    attn_out: f(&l.attn_out),
                    mlp_in: f(&l.mlp_in),
                    mlp_out: f(&l.mlp_out),
                    ..l.clone()
                })
                .collect(),
            final_norm: self.final_norm.clone(),
            final_modulation: self.final_modulation.clone(),
            lm_head: f(&self.lm_head),
            lm_head_bias: self.lm_head_bias.clone(),
        }
    }

    /// Bytes of all tensors as stored (what the GPU holds, KV cache excluded).
    pub fn stored_bytes(&self) -> usize {
        let vec = |v: &Vec<f32>| v.len() * 4;
        let mut total = self.embedding.bytes() + self.lm_head.bytes() + vec(&self.lm_head_bias);
        total += vec(&self.cond)
            + vec(&self.inv_freq)
            + vec(&self.final_norm)
            + vec(&self.final_modulation);
        for l in &self.layers {
            total += l.matrices().iter().map(|(_, m)| m.bytes()).sum::<usize>();
            total += vec(&l.norm1)
                + vec(&l.norm2)
                + vec(&l.mlp_in_bias)
                + vec(&l.mlp_out_bias)
                + vec(&l.modulation);
        }
        total
    }

    /// Parameters held (adaLN weights are folded into constants, so fewer than the checkpoint).
    pub fn parameter_count(&self) -> usize {
        let mut n =
            self.embedding.rows * self.embedding.cols + self.lm_head.rows * self.lm_head.cols;
        n += self.lm_head_bias.len() + self.final_norm.len() + self.final_modulation.len();
        for l in &self.layers {
            n += l
                .matrices()
                .iter()
                .map(|(_, m)| m.rows * m.cols)
                .sum::<usize>();
            n += l.norm1.len()
                + l.norm2.len()
                + l.mlp_in_bias.len()
                + l.mlp_out_bias.len()
                + l.modulation.len();
        }
        n
    }

    /// Schemes in use, for display (`embedding`, `transformer`, `lm_head`).
    pub fn schemes(&self) -> (Scheme, Scheme, Scheme) {
        let t = self
            .layers
            .first()
            .map(|l| l.qkv.scheme())
            .unwrap_or(Scheme::F32);
        (self.embedding.scheme(), t, self.lm_head.scheme())
    }
}

/// Bytes of the KV cache for a full context (K and V, every layer, f32).
pub fn kv_cache_bytes(config: &Config) -> usize {
    // u64: exact for every valid config; saturates where usize is 32 bits.
    let bytes =
        2 * config.n_layers as u64 * config.model_length as u64 * config.hidden_dim as u64 * 4;
    usize::try_from(bytes).unwrap_or(usize::MAX)
}
