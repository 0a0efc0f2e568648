//! The forward pass of one call (spec §4–§7): up to `2 * block_size` rows through every layer,
//! K/V written to the ring cache, the final LayerNorm's output kept for the LM head, which
//! the engine runs lazily per row.
//!
//! A call may carry a finished block's store pass folded in front of the block it denoises
//! (`[clean block ; block]`, issue 12): the projections run on both at once, and each layer's
//! attention runs the two groups of rows block-causally, each over its own window (the clean
//! rows over the window before they are appended, the block's rows over the window after),
//! exactly the arithmetic of two calls of their own.

use crate::attention::{self, AttnInputs, AttnMask, AttnShape};
use crate::kernels::{self, Simd};
use crate::math;
use crate::matmul::{self, Epilogue, MatmulScratch};
use crate::threads::Pool;
use bd3lm::forward::Activations;
use bd3lm::weights::LayerWeights;
use bd3lm::{Config, Weights};
use std::sync::Arc;

/// The KV cache: un-rotated K and V of committed tokens, `[L, heads, n, d]` each, as a ring
/// (head-major: attention reads one head's keys in order, not 3 KB apart).
pub struct KvRing {
    k: Vec<f32>,
    v: Vec<f32>,
    /// Ring slot of window position 0.
    pub start: usize,
    /// Committed tokens in the window (at most `n - B`).
    pub cached: usize,
    n: usize,
    h: usize,
    head_dim: usize,
}

impl KvRing {
    pub fn new(cfg: &Config) -> KvRing {
        let (n, h) = (cfg.model_length, cfg.hidden_dim);
        KvRing {
            k: vec![0.0; cfg.n_layers * n * h],
            v: vec![0.0; cfg.n_layers * n * h],
            start: 0,
            cached: 0,
            n,
            h,
            head_dim: cfg.head_dim(),
        }
    }

    pub fn reset(&mut self) {
        self.start = 0;
        self.cached = 0;
    }

    /// Keeps the `rows` just written after the window (the store pass, spec §7.2); drops the
    /// oldest `rows` tokens when the window is then full (spec §7.3) by moving its start.
    pub fn commit(&mut self, rows: usize) {
        (self.start, self.cached) = self.after_commit(rows);
    }

    /// The window (start, cached) after committing `rows` rows.
    pub fn after_commit(&self, rows: usize) -> (usize, usize) {
        let cached = self.cached + rows;
        if cached >= self.n {
            ((self.start + rows) % self.n, cached - rows)
        } else {
            (self.start, cached)
        }
    }

    fn layer(&self, l: usize) -> (&[f32], &[f32]) {
        let size = self.n * self.h;
        (
            &self.k[l * size..(l + 1) * size],
            &self.v[l * size..(l + 1) * size],
        )
    }

    /// Writes row `r`'s K and V (from a `[rows, 3H]` qkv buffer) at window position
    /// `cached + r` of layer `l`, for the window `(start, cached)`.
    fn write_rows(&mut self, l: usize, qkv: &[f32], rows: usize, (start, cached): (usize, usize)) {
        let (n, h, d) = (self.n, self.h, self.head_dim);
        for r in 0..rows {
            let slot = (start + cached + r) % n;
            let src = &qkv[r * 3 * h..(r + 1) * 3 * h];
            for head in 0..h / d {
                let at = l * n * h + (head * n + slot) * d;
                let col = head * d;
                self.k[at..at + d].copy_from_slice(&src[h + col..h + col + d]);
                self.v[at..at + d].copy_from_slice(&src[2 * h + col..2 * h + col + d]);
            }
        }
    }
}

/// The weights as loaded (each matrix in its package scheme, shared with the loader: no
/// copy) and the RoPE tables.
pub struct Model {
    pub weights: Arc<Weights>,
    /// `[model_length, d/2]`: `cos(p * inv_freq[i])` with the angle in f32, as the reference.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
}

impl Model {
    pub fn new(weights: Arc<Weights>) -> Model {
        let cfg = &weights.config;
        let (n, half) = (cfg.model_length, cfg.head_dim() / 2);
        let mut rope_cos = vec![0.0; n * half];
        let mut rope_sin = vec![0.0; n * half];
        for p in 0..n {
            for i in 0..half {
                let theta = (p as f32 * weights.inv_freq[i]) as f64;
                rope_cos[p * half + i] = theta.cos() as f32;
                rope_sin[p * half + i] = theta.sin() as f32;
            }
        }
        Model {
            weights,
            rope_cos,
            rope_sin,
        }
    }

    pub fn config(&self) -> &Config {
        &self.weights.config
    }
}

/// Scratch buffers for calls of up to `max_rows` rows.
pub struct State {
    max_rows: usize,
    x: Vec<f32>,
    xn: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    hidden: Vec<f32>,
    heads: Vec<f32>,
    /// `[rows, H]` final LayerNorm output of the last call (the LM head's input).
    pub final_hidden: Vec<f32>,
    pub matmul: MatmulScratch,
}

impl State {
    pub fn new(cfg: &Config, max_rows: usize) -> State {
        let h = cfg.hidden_dim;
        State {
            max_rows,
            x: vec![0.0; max_rows * h],
            xn: vec![0.0; max_rows * h],
            qkv: vec![0.0; max_rows * 3 * h],
            attn: vec![0.0; max_rows * h],
            proj: vec![0.0; max_rows * h],
            hidden: vec![0.0; max_rows * 4 * h],
            heads: Vec::new(),
            final_hidden: vec![0.0; max_rows * h],
            matmul: MatmulScratch::default(),
        }
    }
}

/// What one forward call computes.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The call's rows: `clean_rows` rows of a finished block whose store pass is folded in,
    /// then the block the call is for.
    pub tokens: &'a [u32],
    /// Rows at the front that are a clean block being stored (0, or the block size; then the
    /// cache keeps them, and only the rows after them are the call's own).
    pub clean_rows: usize,
    pub mask: AttnMask,
    /// Keep the rows' K/V in the cache afterwards (the store pass).
    pub commit: bool,
    /// Skip the final LayerNorm (a store pass needs no LM head).
    pub final_norm: bool,
}

/// Runs `call.tokens` through the network; their K/V go to the ring at the window's end. With
/// `clean_rows`, the clean block's K/V are kept (the ring commits them) and only the other rows'
/// final LayerNorm goes to `final_hidden` (from its first row).
pub fn forward(
    pool: &Pool,
    simd: Simd,
    model: &Model,
    ring: &mut KvRing,
    s: &mut State,
    call: Call<'_>,
    mut probe: Option<&mut Activations>,
) {
    let w = &model.weights;
    let cfg = &w.config;
    let (rows, h) = (call.tokens.len(), cfg.hidden_dim);
    assert!(rows <= s.max_rows, "{rows} rows, at most {}", s.max_rows);
    let emb = matmul::view(&w.embedding);
    for (r, &t) in call.tokens.iter().enumerate() {
        kernels::dequantize_row(emb, h, t as usize, &mut s.x[r * h..(r + 1) * h]);
    }
    if let Some(p) = probe.as_deref_mut() {
        p.hidden = vec![s.x[..rows * h].to_vec()];
    }
    // Each group of rows with the window it attends over: the clean block's (before it is
    // appended), then the block's (after).
    let clean = call.clean_rows.min(rows);
    let windows = [
        (0, clean, (ring.start, ring.cached)),
        (
            clean,
            rows - clean,
            if clean > 0 {
                ring.after_commit(clean)
            } else {
                (ring.start, ring.cached)
            },
        ),
    ];
    for (l, lw) in w.layers.iter().enumerate() {
        let groups = windows.map(|(row0, n_rows, (start, cached))| Group {
            row0,
            shape: AttnShape {
                rows: n_rows,
                cached,
                start,
                n_ctx: cfg.model_length,
                heads: cfg.n_heads,
                head_dim: cfg.head_dim(),
                mask: call.mask,
            },
        });
        layer(
            pool,
            simd,
            model,
            lw,
            l,
            ring,
            s,
            rows,
            &groups,
            probe.as_deref_mut().filter(|_| l == 0),
        );
        if let Some(p) = probe.as_deref_mut() {
            p.hidden.push(s.x[..rows * h].to_vec());
        }
    }
    if clean > 0 {
        ring.commit(clean);
    }
    if call.commit {
        ring.commit(rows);
    }
    if call.final_norm {
        let own = rows - clean;
        let (shift, scale) = w.final_modulation.split_at(h);
        math::layer_norm_modulate(
            &mut s.final_hidden[..own * h],
            &s.x[clean * h..rows * h],
            &w.final_norm,
            shift,
            scale,
        );
        if let Some(p) = probe {
            p.final_linear_in = s.final_hidden[..own * h].to_vec();
        }
    }
}

/// Rows of a call that attend over one window.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// First row of the group in the call.
    row0: usize,
    shape: AttnShape,
}

#[allow(clippy::too_many_arguments)]
fn layer(
    pool: &Pool,
    simd: Simd,
    model: &Model,
    lw: &LayerWeights,
    l: usize,
    ring: &mut KvRing,
    s: &mut State,
    rows: usize,
    groups: &[Group],
    mut probe: Option<&mut Activations>,
) {
    let h = model.config().hidden_dim;
    let m = &lw.modulation;
    let (shift_msa, scale_msa, gate_msa) = (&m[0..h], &m[h..2 * h], &m[2 * h..3 * h]);
    let (shift_mlp, scale_mlp, gate_mlp) = (&m[3 * h..4 * h], &m[4 * h..5 * h], &m[5 * h..6 * h]);
    let x = &mut s.x[..rows * h];
    let xn = &mut s.xn[..rows * h];

    // Attention branch.
    math::layer_norm_modulate(xn, x, &lw.norm1, shift_msa, scale_msa);
    let qkv = &mut s.qkv[..rows * 3 * h];
    matmul::matmul(
        pool,
        simd,
        &lw.qkv,
        xn,
        rows,
        qkv,
        Epilogue::None,
        &mut s.matmul,
    );
    let attn = &mut s.attn[..rows * h];
    // Group by group: the clean rows attend before the block's K/V are written, which (when
    // the window slides) overwrite the oldest keys the clean rows see.
    for g in groups.iter().filter(|g| g.shape.rows > 0) {
        let (r0, r1) = (g.row0, g.row0 + g.shape.rows);
        let qkv_g = &qkv[r0 * 3 * h..r1 * 3 * h];
        ring.write_rows(l, qkv_g, g.shape.rows, (g.shape.start, g.shape.cached));
        let (k_ring, v_ring) = ring.layer(l);
        let inputs = AttnInputs {
            qkv: qkv_g,
            k_ring,
            v_ring,
            cos: &model.rope_cos,
            sin: &model.rope_sin,
        };
        let out = &mut attn[r0 * h..r1 * h];
        attention::attention(pool, simd, g.shape, &inputs, out, &mut s.heads);
    }
    let proj = &mut s.proj[..rows * h];
    matmul::matmul(
        pool,
        simd,
        &lw.attn_out,
        attn,
        rows,
        proj,
        Epilogue::None,
        &mut s.matmul,
    );
    math::gated_residual(x, proj, gate_msa);
    if let Some(p) = probe.as_deref_mut() {
        p.l0_qkv = qkv.to_vec();
        p.l0_attn = attn.to_vec();
        p.l0_attn_proj = proj.to_vec();
        p.l0_after_attn = x.to_vec();
    }

    // MLP branch.
    math::layer_norm_modulate(xn, x, &lw.norm2, shift_mlp, scale_mlp);
    if let Some(p) = probe.as_deref_mut() {
        p.l0_mlp_in = xn.to_vec();
    }
    let hidden = &mut s.hidden[..rows * 4 * h];
    let gelu = Epilogue::BiasGelu(&lw.mlp_in_bias);
    matmul::matmul(
        pool,
        simd,
        &lw.mlp_in,
        xn,
        rows,
        hidden,
        gelu,
        &mut s.matmul,
    );
    let bias = Epilogue::Bias(&lw.mlp_out_bias);
    matmul::matmul(
        pool,
        simd,
        &lw.mlp_out,
        hidden,
        rows,
        proj,
        bias,
        &mut s.matmul,
    );
    math::gated_residual(x, proj, gate_mlp);
    if let Some(p) = probe {
        p.l0_mlp_out = proj.to_vec();
    }
}
