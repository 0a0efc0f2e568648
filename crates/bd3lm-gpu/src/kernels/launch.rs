//! Launchers that run one kernel on given inputs and read its outputs back, built from the
//! same typed kernels as the engine's plan, so every kernel can be tested against a plain CPU
//! loop (natively and in the browser) exactly as the engine runs it.

use super::attention::{self, Attention, AttentionIo};
use super::matmul::{self, Epilogue, Matmul, MatmulIo};
use super::norm::{self, Embed, EmbedIo, Residual, ResidualIo};
use super::sample::{self, hist_words, parts_words, reveal_log_words, RevealRule, SampleIo};
use crate::context::GpuContext;
use crate::dispatch::{AttnParams, Call, Dispatch, MatmulParams, NormParams, SampleParams};
use crate::dispatch::{Step, StepTable};
use crate::error::Result;
use crate::model::GpuMatrix;
use crate::tiling::Tiling;
use bd3lm::quant::Matrix;

fn buffer(ctx: &GpuContext, data: &[u8]) -> wgpu::Buffer {
    let mut padded = data.to_vec();
    padded.resize(data.len().div_ceil(16).max(1) * 16, 0);
    ctx.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: &padded,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    })
}

fn floats(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    buffer(ctx, bytemuck::cast_slice(data))
}

fn zeros(ctx: &GpuContext, len: usize) -> wgpu::Buffer {
    buffer(ctx, &vec![0u8; len * 4])
}

/// A one-slot step table holding `step`.
fn steps(ctx: &GpuContext, step: &Step) -> StepTable {
    let t = StepTable::new(ctx, 1);
    t.write(&ctx.queue, 0, step);
    t
}

/// Runs `dispatches` for `call`, then reads `len` words of each of `outs`.
async fn run_and_read(
    ctx: &GpuContext,
    dispatches: &[&Dispatch],
    call: &Call,
    outs: &[(&wgpu::Buffer, usize)],
) -> Result<Vec<Vec<u32>>> {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.record(&mut pass, 0, call);
        }
    }
    ctx.queue.submit([enc.finish()]);
    let mut results = Vec::new();
    for &(out, len) in outs {
        let size = (len * 4) as u64;
        let staging = ctx.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: size.div_ceil(16).max(1) * 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bytes = ctx.read_buffer(out, &staging, size).await?;
        results.push(bytemuck::cast_slice(&bytes).to_vec());
    }
    Ok(results)
}

fn as_f32(words: Vec<u32>) -> Vec<f32> {
    words.into_iter().map(f32::from_bits).collect()
}

pub fn upload_matrix(ctx: &GpuContext, m: &Matrix) -> Result<GpuMatrix> {
    let mut g = GpuMatrix::new(ctx, "test matrix", m.rows, m.cols, m.scheme())?;
    g.write_rows(&ctx.queue, "test matrix", 0, m)?;
    Ok(g)
}

/// Which matmul epilogue to test (QKV has its own launcher, [`qkv`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKind {
    /// `acc + bias` (the LM head).
    Bias,
    /// `gelu_tanh(acc + bias)` (MLP in).
    Gelu,
    /// Partial sums per K split; the launcher returns their sum in split order.
    Partial,
}

/// Runs one matmul on `rows` rows of `x` (`[rows, K]`, already normalised where the model
/// normalises) under `tiling`, with `bias` (length N) where the epilogue uses one.
pub async fn matmul(
    ctx: &GpuContext,
    tiling: Tiling,
    m: &Matrix,
    x: &[f32],
    rows: usize,
    kind: MatmulKind,
    bias: &[f32],
) -> Result<Vec<f32>> {
    let n = m.rows;
    let g = upload_matrix(ctx, m)?;
    let epilogue = match kind {
        MatmulKind::Bias => Epilogue::Bias,
        MatmulKind::Gelu => Epilogue::Gelu,
        MatmulKind::Partial => Epilogue::Partial,
    };
    let kernel = Matmul::new(tiling, &g, epilogue, rows);
    let splits = kernel.tiles.splits as usize;
    let mut b = bias.to_vec();
    b.resize(n, 0.0);
    let vecs = floats(ctx, &b);
    let input = floats(ctx, x);
    let output = zeros(ctx, splits * rows * n);
    let table = steps(
        ctx,
        &Step {
            rows: rows as u32,
            ..Step::default()
        },
    );
    let d = matmul::dispatch(
        ctx,
        kernel,
        MatmulIo {
            matrix: &g,
            vecs: &vecs,
            params: MatmulParams::default(),
            steps: &table,
            input: &input,
            output: &output,
            caches: None,
        },
        "test",
        None,
    )
    .await?;
    let out = as_f32(
        run_and_read(
            ctx,
            &[&d],
            &Call::denoise(rows, 0),
            &[(&output, splits * rows * n)],
        )
        .await?
        .remove(0),
    );
    // Partial sums are added in split order, as residual.wgsl adds them.
    let mut sum = vec![0.0f32; rows * n];
    for part in out.chunks_exact(rows * n) {
        for (s, v) in sum.iter_mut().zip(part) {
            *s += v;
        }
    }
    Ok(sum)
}

/// The QKV projection of a call written to a ring cache: returns (q `[rows, H]`, K cache,
/// V cache), the caches `[n_ctx, H]` starting from `k_cache` / `v_cache`. With `clean`, the
/// first `rows / 2` rows are a clean block at its own window (a folded store pass).
pub struct QkvInputs<'a> {
    pub tiling: Tiling,
    /// `[3H, H]`.
    pub matrix: &'a Matrix,
    pub x: &'a [f32],
    pub rows: usize,
    /// Ring slots.
    pub n_ctx: usize,
    pub cached: usize,
    pub ring_start: usize,
    /// The clean block's window (cached, ring start) when the call is folded.
    pub clean: Option<(usize, usize)>,
    pub k_cache: &'a [f32],
    pub v_cache: &'a [f32],
}

pub async fn qkv(ctx: &GpuContext, a: &QkvInputs<'_>) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let h = a.matrix.cols;
    let g = upload_matrix(ctx, a.matrix)?;
    let kernel = Matmul::new(a.tiling, &g, Epilogue::Qkv, a.rows);
    let (vecs, input, q) = (zeros(ctx, 4), floats(ctx, a.x), zeros(ctx, a.rows * h));
    let (kc, vc) = (floats(ctx, a.k_cache), floats(ctx, a.v_cache));
    let (clean_rows, (clean_cached, clean_ring_start)) = match a.clean {
        Some(w) => (a.rows / 2, w),
        None => (0, (0, 0)),
    };
    let table = steps(
        ctx,
        &Step {
            cached: a.cached as u32,
            ring_start: a.ring_start as u32,
            n_ctx: a.n_ctx as u32,
            ring: a.n_ctx as u32,
            rows: a.rows as u32,
            clean_rows: clean_rows as u32,
            clean_cached: clean_cached as u32,
            clean_ring_start: clean_ring_start as u32,
            ..Step::default()
        },
    );
    let d = matmul::dispatch(
        ctx,
        kernel,
        MatmulIo {
            matrix: &g,
            vecs: &vecs,
            params: MatmulParams {
                hidden: h as u32,
                ..MatmulParams::default()
            },
            steps: &table,
            input: &input,
            output: &q,
            caches: Some((&kc, &vc)),
        },
        "qkv",
        None,
    )
    .await?;
    let cache_len = a.n_ctx * h;
    let mut out = run_and_read(
        ctx,
        &[&d],
        &Call::denoise(a.rows, a.cached),
        &[(&q, a.rows * h), (&kc, cache_len), (&vc, cache_len)],
    )
    .await?
    .into_iter()
    .map(as_f32);
    let mut next = || out.next().unwrap_or_default();
    Ok((next(), next(), next()))
}

/// The vectors of a LayerNorm + modulation (length H each) and of a residual branch.
pub struct NormVectors<'a> {
    pub norm: &'a [f32],
    pub shift: &'a [f32],
    pub scale: &'a [f32],
    pub gate: &'a [f32],
    pub bias: &'a [f32],
}

/// Lays the vectors out in one buffer and returns it with their offsets.
fn norm_vecs(ctx: &GpuContext, v: &NormVectors<'_>, n: usize) -> (wgpu::Buffer, NormParams) {
    let mut data = Vec::new();
    let mut put = |src: &[f32]| {
        let off = data.len() as u32;
        let mut d = src.to_vec();
        d.resize(n, 0.0);
        data.extend(d);
        off
    };
    let p = NormParams {
        n: n as u32,
        norm_off: put(v.norm),
        shift_off: put(v.shift),
        scale_off: put(v.scale),
        gate_off: put(v.gate),
        bias_off: put(v.bias),
        ..NormParams::default()
    };
    (floats(ctx, &data), p)
}

/// What [`embed`] leaves in the row after the block (checks that nothing writes past it).
pub const SENTINEL: f32 = 7.25;

/// Embedding gather of `tokens` from `table`, then the LayerNorm: returns (x, xn), each with
/// one extra row after the call, filled with [`SENTINEL`] before the dispatch. The first
/// `clean_rows` tokens come from the clean block's buffer (a folded store pass).
pub async fn embed(
    ctx: &GpuContext,
    table: &Matrix,
    tokens: &[u32],
    clean_rows: usize,
    v: &NormVectors<'_>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let g = upload_matrix(ctx, table)?;
    let h = table.cols;
    let rows = tokens.len();
    let (vecs, np) = norm_vecs(ctx, v, h);
    let (clean, block) = tokens.split_at(clean_rows.min(rows));
    let clean_tok = buffer(ctx, bytemuck::cast_slice(clean));
    let tok = buffer(ctx, bytemuck::cast_slice(block));
    let fill = vec![SENTINEL; (rows + 1) * h];
    let (x, xn) = (floats(ctx, &fill), floats(ctx, &fill));
    let table_steps = steps(
        ctx,
        &Step {
            rows: rows as u32,
            clean_rows: clean.len() as u32,
            ..Step::default()
        },
    );
    let d = norm::embed(
        ctx,
        Embed {
            format: table.scheme(),
        },
        EmbedIo {
            table: &g,
            norm: np,
            tokens: &tok,
            clean_tokens: &clean_tok,
            steps: &table_steps,
            vecs: &vecs,
            x: &x,
            xn: &xn,
        },
    )
    .await?;
    let len = (rows + 1) * h;
    let call = Call {
        clean_rows: clean.len() as u32,
        rows: block.len() as u32,
        clean_cached: 0,
        cached: 0,
    };
    let mut out = run_and_read(ctx, &[&d], &call, &[(&x, len), (&xn, len)])
        .await?
        .into_iter()
        .map(as_f32);
    let mut next = || out.next().unwrap_or_default();
    Ok((next(), next()))
}

/// The residual update of `x` (`[rows, n]`) by `splits` partial sums `[splits, rows, n]`,
/// then the LayerNorm: returns (x, xn).
pub async fn residual(
    ctx: &GpuContext,
    x: &[f32],
    partials: &[f32],
    splits: usize,
    rows: usize,
    bias: bool,
    v: &NormVectors<'_>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = x.len() / rows;
    let (vecs, np) = norm_vecs(ctx, v, n);
    let (xb, xn, parts) = (floats(ctx, x), zeros(ctx, rows * n), floats(ctx, partials));
    let d = norm::residual(
        ctx,
        Residual {
            bias,
            rows: rows as u32,
        },
        ResidualIo {
            norm: NormParams {
                splits: splits as u32,
                ..np
            },
            partials: &parts,
            vecs: &vecs,
            x: &xb,
            xn: &xn,
        },
        "residual",
        None,
    )
    .await?;
    let call = Call::denoise(rows, 0);
    let mut out = run_and_read(ctx, &[&d], &call, &[(&xb, rows * n), (&xn, rows * n)])
        .await?
        .into_iter()
        .map(as_f32);
    let mut next = || out.next().unwrap_or_default();
    Ok((next(), next()))
}

/// Inputs of one attention call for one layer (the caches hold `ring` slots of `[H]`).
pub struct AttentionInputs<'a> {
    pub tiling: Tiling,
    pub heads: usize,
    pub head_dim: usize,
    pub block: usize,
    /// Positions of the RoPE table.
    pub n_ctx: usize,
    /// Slots of the ring cache.
    pub ring: usize,
    /// The denoised block's window.
    pub cached: usize,
    pub ring_start: usize,
    /// A folded call: the clean block's window (cached, ring start); its `block` queries come
    /// first in `q`.
    pub clean: Option<(usize, usize)>,
    /// `[rows, H]` un-rotated queries (`block` rows, `2 * block` with `clean`).
    pub q: &'a [f32],
    pub k_cache: &'a [f32],
    pub v_cache: &'a [f32],
    /// `[n_ctx, d/2]` cos then sin.
    pub rope: &'a [f32],
}

/// Runs attention (partials and combine); returns the output `[rows, H]` and the number of
/// splits of the widest window.
pub async fn attention(ctx: &GpuContext, a: &AttentionInputs<'_>) -> Result<(Vec<f32>, u32)> {
    let (h, d) = (a.heads * a.head_dim, a.head_dim);
    let kernel = Attention::new(a.tiling, a.block, d, a.heads, ctx.workgroup_bytes());
    let (o_floats, ml_floats) = kernel.partial_floats(h);
    let (clean_rows, (clean_cached, clean_ring_start)) = match a.clean {
        Some(w) => (a.block, w),
        None => (0, (0, 0)),
    };
    let rows = clean_rows + a.block;
    let table = steps(
        ctx,
        &Step {
            cached: a.cached as u32,
            ring_start: a.ring_start as u32,
            n_ctx: a.n_ctx as u32,
            ring: a.ring as u32,
            kv_split: kernel.kv_split(a.cached),
            rows: rows as u32,
            clean_rows: clean_rows as u32,
            clean_cached: clean_cached as u32,
            clean_ring_start: clean_ring_start as u32,
            clean_kv_split: kernel.kv_split(clean_cached),
            ..Step::default()
        },
    );
    let (q, kc, vc, rope) = (
        floats(ctx, a.q),
        floats(ctx, a.k_cache),
        floats(ctx, a.v_cache),
        floats(ctx, a.rope),
    );
    let (part_o, part_ml, out) = (
        zeros(ctx, o_floats),
        zeros(ctx, ml_floats),
        zeros(ctx, rows * h),
    );
    let (partial, combine) = attention::dispatches(
        ctx,
        kernel,
        AttentionIo {
            params: AttnParams {
                hidden: h as u32,
                heads: a.heads as u32,
                cache_layer_off: 0,
                scale: 1.0 / (d as f32).sqrt(),
            },
            steps: &table,
            q: &q,
            k_cache: &kc,
            v_cache: &vc,
            rope: &rope,
            part_o: &part_o,
            part_ml: &part_ml,
            out: &out,
        },
        None,
    )
    .await?;
    let call = Call {
        clean_rows: clean_rows as u32,
        rows: a.block as u32,
        clean_cached,
        cached: a.cached,
    };
    let splits = partial.workgroups(&call).1;
    let out = run_and_read(ctx, &[&partial, &combine], &call, &[(&out, rows * h)]).await?;
    Ok((as_f32(out.into_iter().next().unwrap_or_default()), splits))
}

/// One sampling step: the mode and its parameters (the rest of the step slot is unused).
#[derive(Debug, Clone, Copy)]
pub struct SampleStep {
    pub vocab: usize,
    pub mode: u32,
    pub seed: u64,
    pub top_p: f64,
    pub mask_prob: f32,
}

/// Runs the sampling kernel on `logits` rows (`[rows, V]`) and returns (id, value, entropy)
/// per row: the drawn id, its probability and the entropy of the filtered row, or for the
/// probes (kept count, kept mass) / (id, q). The MASK id is `vocab - 1`.
pub async fn sample(
    ctx: &GpuContext,
    logits: &[f32],
    tokens: &[u32],
    s: SampleStep,
) -> Result<Vec<(u32, f32, f32)>> {
    let rows = logits.len() / s.vocab;
    let table = steps(
        ctx,
        &Step {
            mode: s.mode,
            top_p: s.top_p as f32,
            mask_prob: s.mask_prob,
            ..Step::default()
        }
        .seed(s.seed),
    );
    let (lg, tk) = (
        floats(ctx, logits),
        buffer(ctx, bytemuck::cast_slice(tokens)),
    );
    // One step's draws: (id, value) per row, then the entropies.
    let (draws, log, args) = (
        zeros(ctx, rows * 3),
        zeros(ctx, reveal_log_words(rows)),
        zeros(ctx, 3),
    );
    let (parts, hist) = (
        zeros(ctx, parts_words(rows, s.vocab)),
        zeros(ctx, hist_words(rows)),
    );
    let io = SampleIo {
        params: SampleParams {
            vocab: s.vocab as u32,
            mask: (s.vocab - 1) as u32,
            block: rows as u32,
            entropy_off: 2 * rows as u32,
            ..SampleParams::default()
        },
        steps: &table,
        logits: &lg,
        tokens: &tk,
        draws: &draws,
        reveal_log: &log,
        parts: &parts,
        hist: &hist,
        next_args: &args,
    };
    let dispatches = sample::sample_dispatches(ctx, &io, rows as u32).await?;
    let words = run_and_read(
        ctx,
        &dispatches.iter().collect::<Vec<_>>(),
        &Call::denoise(rows, 0),
        &[(&draws, rows * 3)],
    )
    .await?
    .remove(0);
    let (pairs, entropies) = words.split_at(2 * rows);
    Ok(pairs
        .chunks_exact(2)
        .zip(entropies)
        .map(|(w, &h)| (w[0], f32::from_bits(w[1]), f32::from_bits(h)))
        .collect())
}

/// What a reveal stage did to one step of a block (see [`reveal`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RevealOutcome {
    /// The block after the step.
    pub tokens: Vec<u32>,
    /// The log entries: (step, row, id, confidence).
    pub log: Vec<(u32, u32, u32, f32)>,
    /// Whether the later steps' dispatch arguments were emptied (the block is complete).
    pub emptied: bool,
}

/// Runs the reveal stage of `rule` (with `bound`, the threshold or gamma) on step `index` of a
/// block, whose draws are given per row as (id, confidence, entropy); the MASK id is `mask`.
pub async fn reveal(
    ctx: &GpuContext,
    rule: RevealRule,
    bound: f32,
    index: usize,
    tokens: &[u32],
    mask: u32,
    draws: &[(u32, f32, f32)],
) -> Result<RevealOutcome> {
    let b = tokens.len();
    let steps_in_block = index + 1;
    let table = steps(
        ctx,
        &Step {
            index: index as u32,
            reveal_row: 0,
            bound,
            ..Step::default()
        },
    );
    // The step's row of a `[steps, b]` draws table, other steps' rows left zero.
    let mut words = vec![0u32; 3 * steps_in_block * b];
    for (r, &(id, c, h)) in draws.iter().enumerate() {
        words[(index * b + r) * 2] = id;
        words[(index * b + r) * 2 + 1] = c.to_bits();
        words[2 * steps_in_block * b + index * b + r] = h.to_bits();
    }
    let (tk, dr, log) = (
        buffer(ctx, bytemuck::cast_slice(tokens)),
        buffer(ctx, bytemuck::cast_slice(&words)),
        zeros(ctx, reveal_log_words(b)),
    );
    let args = buffer(ctx, bytemuck::cast_slice(&[7u32; 6]));
    let lg = zeros(ctx, 4);
    let io = SampleIo {
        params: SampleParams {
            vocab: mask + 1,
            mask,
            block: b as u32,
            entropy_off: (2 * steps_in_block * b) as u32,
            ..SampleParams::default()
        },
        steps: &table,
        logits: &lg,
        tokens: &tk,
        draws: &dr,
        reveal_log: &log,
        parts: &lg,
        hist: &lg,
        next_args: &args,
    };
    let dispatch = sample::reveal_dispatch(ctx, &io, rule).await?;
    let mut out = run_and_read(
        ctx,
        &[&dispatch],
        &Call::denoise(b, 0),
        &[(&tk, b), (&log, reveal_log_words(b)), (&args, 6)],
    )
    .await?
    .into_iter();
    let mut next = || out.next().unwrap_or_default();
    let (tokens, log, args) = (next(), next(), next());
    let count = log.first().copied().unwrap_or(0) as usize;
    Ok(RevealOutcome {
        tokens,
        log: log[1..1 + 4 * count.min(b)]
            .chunks_exact(4)
            .map(|e| (e[0], e[1], e[2], f32::from_bits(e[3])))
            .collect(),
        emptied: args.iter().all(|&w| w == 0),
    })
}
