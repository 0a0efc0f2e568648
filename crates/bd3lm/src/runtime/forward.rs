//! The CPU reference forward pass of one block with a KV cache (spec §4–§7), written for
//! clarity in the style of llama2.c: a `State` of scratch buffers and flat functions.
//!
//! The cache holds **un-rotated** K and V of committed clean blocks; rotary embeddings are
//! re-applied to the window on every call, positions numbered from 0 (spec §5, §7.3), so
//! after the sliding window drops a block the positions are re-based exactly as the
//! reference does.

use crate::config::Config;
use crate::weights::{LayerWeights, Weights};

/// Intermediate activations of one call, captured for conformance checks (spec §4.3 names).
#[derive(Debug, Clone, Default)]
pub struct Activations {
    /// `hidden[0]` = embeddings, `hidden[l+1]` = output of layer `l`; each `[B, H]`.
    pub hidden: Vec<Vec<f32>>,
    pub l0_qkv: Vec<f32>,
    pub l0_attn: Vec<f32>,
    pub l0_attn_proj: Vec<f32>,
    pub l0_after_attn: Vec<f32>,
    pub l0_mlp_in: Vec<f32>,
    pub l0_mlp_out: Vec<f32>,
    pub final_linear_in: Vec<f32>,
}

/// KV cache and scratch buffers for single-block calls.
pub struct State {
    b: usize,
    /// `[L, model_length, H]` un-rotated keys / values of committed tokens.
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    /// Committed tokens currently in the cache.
    pub cached: usize,
    /// `[model_length, d/2]` rotary tables, `cos(p * inv_freq[i])` in f32.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    x: Vec<f32>,
    xn: Vec<f32>,
    qkv: Vec<f32>,
    q: Vec<f32>,
    keys: Vec<f32>,
    scores: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    hidden: Vec<f32>,
}

impl State {
    pub fn new(cfg: &Config, inv_freq: &[f32]) -> State {
        let (n, h, b, half) = (
            cfg.model_length,
            cfg.hidden_dim,
            cfg.block_size,
            cfg.head_dim() / 2,
        );
        let mut rope_cos = vec![0.0; n * half];
        let mut rope_sin = vec![0.0; n * half];
        for p in 0..n {
            for i in 0..half {
                // theta in f32 as the reference's einsum computes it; cos/sin correctly rounded.
                let theta = (p as f32 * inv_freq[i]) as f64;
                rope_cos[p * half + i] = theta.cos() as f32;
                rope_sin[p * half + i] = theta.sin() as f32;
            }
        }
        State {
            b,
            k_cache: vec![0.0; cfg.n_layers * n * h],
            v_cache: vec![0.0; cfg.n_layers * n * h],
            cached: 0,
            rope_cos,
            rope_sin,
            x: vec![0.0; b * h],
            xn: vec![0.0; b * h],
            qkv: vec![0.0; b * 3 * h],
            q: vec![0.0; b * h],
            keys: vec![0.0; n * h],
            scores: vec![0.0; n],
            attn: vec![0.0; b * h],
            proj: vec![0.0; b * h],
            hidden: vec![0.0; b * 4 * h],
        }
    }
}

/// `sum a[i] b[i]` in f32 with eight independent lanes (vectorises; order fixed).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            lanes[j] += x[j] * y[j];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// `out[r, o] = sum_k x[r, k] w[o, k]` for `rows` rows (PyTorch `x @ W^T`).
pub fn matmul(out: &mut [f32], x: &[f32], w: &[f32], rows: usize, n_in: usize, n_out: usize) {
    for (o, w_row) in w.chunks_exact(n_in).take(n_out).enumerate() {
        for r in 0..rows {
            out[r * n_out + o] = dot(&x[r * n_in..(r + 1) * n_in], w_row);
        }
    }
}

/// `out = LN(x) * weight * (1 + scale) + shift` per row (LayerNorm without bias, eps 1e-5,
/// biased variance; statistics accumulated in f64).
pub fn layer_norm_modulate(
    out: &mut [f32],
    x: &[f32],
    weight: &[f32],
    shift: &[f32],
    scale: &[f32],
) {
    let h = weight.len();
    for (o_row, x_row) in out.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
        let mean = x_row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
        let var = x_row
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / h as f64;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for i in 0..h {
            let normed = ((x_row[i] as f64 - mean) * rstd) as f32;
            o_row[i] = normed * weight[i] * (1.0 + scale[i]) + shift[i];
        }
    }
}

pub fn gelu_tanh(u: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * u * (1.0 + (K * (u + 0.044715 * u * u * u)).tanh())
}

/// Rotate-half RoPE of one head vector at table row `pos` (spec §5).
fn rope(out: &mut [f32], x: &[f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    for i in 0..half {
        out[i] = x[i] * cos[i] - x[i + half] * sin[i];
        out[i + half] = x[i + half] * cos[i] + x[i] * sin[i];
    }
}

/// Runs one block (`tokens.len() == block_size`) through the network.
///
/// K/V of the block are written to the cache slots after the committed prefix; with
/// `commit` they stay (the store pass of spec §7.2) and the window slides when full.
/// Returns the raw logits `[B, V]` unless `logits` is false (the commit pass skips the head).
pub fn forward_block(
    w: &Weights,
    s: &mut State,
    tokens: &[u32],
    commit: bool,
    logits: bool,
    mut probe: Option<&mut Activations>,
) -> Option<Vec<f32>> {
    let cfg = &w.config;
    let (b, h, n) = (s.b, cfg.hidden_dim, cfg.model_length);
    assert_eq!(tokens.len(), b, "forward_block takes exactly one block");
    let emb = w.embedding.as_f32().expect("CPU weights are f32");
    for (r, &t) in tokens.iter().enumerate() {
        s.x[r * h..(r + 1) * h].copy_from_slice(&emb[t as usize * h..(t as usize + 1) * h]);
    }
    if let Some(p) = probe.as_deref_mut() {
        p.hidden = vec![s.x.clone()];
    }
    for (l, lw) in w.layers.iter().enumerate() {
        layer(cfg, lw, s, l, probe.as_deref_mut().filter(|_| l == 0));
        if let Some(p) = probe.as_deref_mut() {
            p.hidden.push(s.x.clone());
        }
    }
    if commit {
        s.cached += b;
        if s.cached >= n {
            slide_window(s, cfg);
        }
    }
    if !logits {
        return None;
    }
    let (shift, scale) = w.final_modulation.split_at(h);
    layer_norm_modulate(&mut s.xn, &s.x, &w.final_norm, shift, scale);
    if let Some(p) = probe {
        p.final_linear_in = s.xn.clone();
    }
    let v = cfg.vocab_size;
    let mut out = vec![0.0; b * v];
    matmul(
        &mut out,
        &s.xn,
        w.lm_head.as_f32().expect("CPU weights are f32"),
        b,
        h,
        v,
    );
    for row in out.chunks_exact_mut(v) {
        for (o, &bias) in row.iter_mut().zip(&w.lm_head_bias) {
            *o += bias;
        }
    }
    Some(out)
}

/// Drops the oldest block from every layer's cache (spec §7.3).
fn slide_window(s: &mut State, cfg: &Config) {
    let (b, h, n) = (s.b, cfg.hidden_dim, cfg.model_length);
    for l in 0..cfg.n_layers {
        let base = l * n * h;
        s.k_cache
            .copy_within(base + b * h..base + s.cached * h, base);
        s.v_cache
            .copy_within(base + b * h..base + s.cached * h, base);
    }
    s.cached -= b;
}

fn layer(
    cfg: &Config,
    lw: &LayerWeights,
    s: &mut State,
    l: usize,
    mut probe: Option<&mut Activations>,
) {
    let (b, h, n, nh) = (s.b, cfg.hidden_dim, cfg.model_length, cfg.n_heads);
    let d = h / nh;
    let half = d / 2;
    let m = &lw.modulation;
    let (shift_msa, scale_msa, gate_msa) = (&m[0..h], &m[h..2 * h], &m[2 * h..3 * h]);
    let (shift_mlp, scale_mlp, gate_mlp) = (&m[3 * h..4 * h], &m[4 * h..5 * h], &m[5 * h..6 * h]);

    // Attention branch.
    layer_norm_modulate(&mut s.xn, &s.x, &lw.norm1, shift_msa, scale_msa);
    matmul(&mut s.qkv, &s.xn, f32_of(&lw.qkv), b, h, 3 * h);
    if let Some(p) = probe.as_deref_mut() {
        p.l0_qkv = s.qkv.clone();
    }
    let c = s.cached;
    let base = l * n * h;
    for r in 0..b {
        let row = &s.qkv[r * 3 * h..(r + 1) * 3 * h];
        s.k_cache[base + (c + r) * h..base + (c + r + 1) * h].copy_from_slice(&row[h..2 * h]);
        s.v_cache[base + (c + r) * h..base + (c + r + 1) * h].copy_from_slice(&row[2 * h..3 * h]);
    }
    let total = c + b;
    let scale = 1.0 / (d as f32).sqrt();
    for head in 0..nh {
        let cols = head * d..(head + 1) * d;
        // Rotate this head's keys of the whole window (cache + block) at positions 0..total.
        for j in 0..total {
            let src = &s.k_cache[base + j * h..base + (j + 1) * h][cols.clone()];
            let table = j * half..(j + 1) * half;
            rope(
                &mut s.keys[j * d..(j + 1) * d],
                src,
                &s.rope_cos[table.clone()],
                &s.rope_sin[table],
            );
        }
        for r in 0..b {
            let pos = c + r;
            let table = pos * half..(pos + 1) * half;
            let q_src = &s.qkv[r * 3 * h..r * 3 * h + h][cols.clone()];
            let q = &mut s.q[r * d..(r + 1) * d];
            rope(q, q_src, &s.rope_cos[table.clone()], &s.rope_sin[table]);
            let mut max = f32::NEG_INFINITY;
            for j in 0..total {
                let score = dot(q, &s.keys[j * d..(j + 1) * d]) * scale;
                s.scores[j] = score;
                max = max.max(score);
            }
            let mut sum = 0f32;
            for score in &mut s.scores[..total] {
                *score = (*score - max).exp();
                sum += *score;
            }
            let out = &mut s.attn[r * h..(r + 1) * h][cols.clone()];
            out.fill(0.0);
            for j in 0..total {
                let p = s.scores[j] / sum;
                let v = &s.v_cache[base + j * h..base + (j + 1) * h][cols.clone()];
                for (o, &vv) in out.iter_mut().zip(v) {
                    *o += p * vv;
                }
            }
        }
    }
    matmul(&mut s.proj, &s.attn, f32_of(&lw.attn_out), b, h, h);
    gated_residual(&mut s.x, &s.proj, gate_msa);
    if let Some(p) = probe.as_deref_mut() {
        p.l0_attn = s.attn.clone();
        p.l0_attn_proj = s.proj.clone();
        p.l0_after_attn = s.x.clone();
    }

    // MLP branch.
    layer_norm_modulate(&mut s.xn, &s.x, &lw.norm2, shift_mlp, scale_mlp);
    if let Some(p) = probe.as_deref_mut() {
        p.l0_mlp_in = s.xn.clone();
    }
    let f = 4 * h;
    matmul(&mut s.hidden, &s.xn, f32_of(&lw.mlp_in), b, h, f);
    for row in s.hidden.chunks_exact_mut(f) {
        for (v, &bias) in row.iter_mut().zip(&lw.mlp_in_bias) {
            *v = gelu_tanh(*v + bias);
        }
    }
    matmul(&mut s.proj, &s.hidden, f32_of(&lw.mlp_out), b, f, h);
    for row in s.proj.chunks_exact_mut(h) {
        for (v, &bias) in row.iter_mut().zip(&lw.mlp_out_bias) {
            *v += bias;
        }
    }
    gated_residual(&mut s.x, &s.proj, gate_mlp);
    if let Some(p) = probe {
        p.l0_mlp_out = s.proj.clone();
    }
}

/// `x += gate * branch` row by row (the gate multiplies the branch only, spec §4.3).
fn gated_residual(x: &mut [f32], branch: &[f32], gate: &[f32]) {
    let h = gate.len();
    for (x_row, b_row) in x.chunks_exact_mut(h).zip(branch.chunks_exact(h)) {
        for ((xv, &bv), &g) in x_row.iter_mut().zip(b_row).zip(gate) {
            *xv += g * bv;
        }
    }
}

fn f32_of(m: &crate::quant::Matrix) -> &[f32] {
    m.as_f32().expect("CPU weights are f32")
}
