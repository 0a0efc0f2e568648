//! Typed launchers that run one kernel on given inputs and read its output back. The engine
//! itself records kernels through [`crate::plan::Plan`]; these exist so every kernel can be
//! tested against a plain CPU loop (natively and in the browser).

use crate::context::GpuContext;
use crate::error::Result;
use crate::model::GpuMatrix;
use crate::pipelines::PipelineKey;
use crate::plan::{self, AttnParams, Dispatch, MatmulParams, SampleStep, StepParams};
use crate::shaders::Variant;
use bd3lm::quant::Matrix;

fn buffer(ctx: &GpuContext, data: &[u8], extra: wgpu::BufferUsages) -> wgpu::Buffer {
    let mut padded = data.to_vec();
    padded.resize(data.len().div_ceil(16).max(1) * 16, 0);
    ctx.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: &padded,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | extra,
    })
}

async fn run_and_read(
    ctx: &GpuContext,
    dispatch: &Dispatch,
    out: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<f32>> {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        dispatch.record(&mut pass, None);
    }
    ctx.queue.submit([enc.finish()]);
    let size = (len * 4) as u64;
    let staging = ctx.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: size.div_ceil(16) * 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bytes = ctx.read_buffer(out, &staging, size).await?;
    Ok(bytemuck::cast_slice(&bytes).to_vec())
}

pub fn upload_matrix(ctx: &GpuContext, m: &Matrix) -> Result<GpuMatrix> {
    let mut g = GpuMatrix::new(ctx, "test matrix", m.rows, m.cols, m.scheme())?;
    g.write_rows(&ctx.queue, "test matrix", 0, m)?;
    Ok(g)
}

/// Which fused matmul variant to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKind {
    /// LayerNorm + modulate prologue, `+ bias` epilogue (the LM head).
    LnBias,
    /// LayerNorm + modulate prologue, `gelu(acc + bias)` (MLP in).
    LnGelu,
    /// `out += gate * acc` (attention out).
    Residual,
    /// `out += gate * (acc + bias)` (MLP out).
    ResidualBias,
}

/// Small vectors of a matmul: LayerNorm weight, shift and scale (length K), bias and gate
/// (length N). Unused ones may be empty.
pub struct MatmulVectors<'a> {
    pub norm: &'a [f32],
    pub shift: &'a [f32],
    pub scale: &'a [f32],
    pub bias: &'a [f32],
    pub gate: &'a [f32],
}

/// Runs one matmul variant on `rows` rows of `x` (`[rows, K]`) with `lanes` threads per
/// column (1 or 8); `out` is the initial output (`[rows, N]`, read by the residual variants).
#[allow(clippy::too_many_arguments)]
pub async fn matmul(
    ctx: &GpuContext,
    lanes: u32,
    m: &Matrix,
    x: &[f32],
    rows: usize,
    kind: MatmulKind,
    v: &MatmulVectors<'_>,
    out: &[f32],
) -> Result<Vec<f32>> {
    let (k, n) = (m.cols, m.rows);
    let g = upload_matrix(ctx, m)?;
    let mut vecs = Vec::new();
    let mut offset = |data: &[f32], len: usize| -> u32 {
        let o = vecs.len() as u32;
        let mut d = data.to_vec();
        d.resize(len, 0.0);
        vecs.extend(d);
        o
    };
    let params = MatmulParams {
        n: n as u32,
        norm_off: offset(v.norm, k),
        shift_off: offset(v.shift, k),
        scale_off: offset(v.scale, k),
        bias_off: offset(v.bias, n),
        gate_off: offset(v.gate, n),
        hidden: 0,
        cache_layer_off: 0,
    };
    let flags: &[&'static str] = match kind {
        MatmulKind::LnBias => &["LN", "EPI_BIAS"],
        MatmulKind::LnGelu => &["LN", "EPI_GELU"],
        MatmulKind::Residual => &["EPI_RESIDUAL"],
        MatmulKind::ResidualBias => &["EPI_RESIDUAL", "BIAS"],
    };
    let vecs = buffer(
        ctx,
        bytemuck::cast_slice(&vecs),
        wgpu::BufferUsages::empty(),
    );
    let input = buffer(ctx, bytemuck::cast_slice(x), wgpu::BufferUsages::empty());
    let output = buffer(ctx, bytemuck::cast_slice(out), wgpu::BufferUsages::empty());
    let step = plan::uniform(
        ctx,
        "step",
        &StepParams {
            cached: 0,
            ring_start: 0,
            n_ctx: 1,
            row_offset: 0,
        },
        false,
    );
    let cache = &ctx.pipelines;
    let spec = plan::MatmulSpec {
        lanes,
        matrix: &g,
        vecs: &vecs,
        rows,
        flags,
        params,
        input: &input,
        output: &output,
        step: &step,
        caches: None,
    };
    let dispatch = plan::matmul(ctx, cache, spec).await?;
    run_and_read(ctx, &dispatch, &output, rows * n).await
}

/// Embedding gather of `tokens` from `table`.
pub async fn embed(ctx: &GpuContext, table: &Matrix, tokens: &[u32]) -> Result<Vec<f32>> {
    let g = upload_matrix(ctx, table)?;
    let cache = &ctx.pipelines;
    let variant = Variant::default().flag(plan::format_flag(table.scheme()));
    let pipeline = cache
        .get(
            ctx,
            PipelineKey {
                shader: "embed.wgsl",
                entry: "main",
                variant,
            },
        )
        .await?;
    let wp = plan::weight_params(ctx, &g);
    let tok = ctx.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(tokens),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let len = tokens.len() * table.cols;
    let out = buffer(ctx, &vec![0u8; len * 4], wgpu::BufferUsages::empty());
    let dispatch = Dispatch {
        bind_group: plan::bind(ctx, &pipeline, &[&wp, &tok, g.first(), g.second(), &out]),
        pipeline,
        groups: (len / 8).div_ceil(64) as u32,
    };
    run_and_read(ctx, &dispatch, &out, len).await
}

/// Inputs of one attention call for one layer (the caches hold `n_ctx` ring slots of `[H]`).
pub struct AttentionInputs<'a> {
    pub heads: usize,
    pub head_dim: usize,
    pub block: usize,
    pub n_ctx: usize,
    pub cached: usize,
    pub ring_start: usize,
    /// `[block, H]` un-rotated queries.
    pub q: &'a [f32],
    pub k_cache: &'a [f32],
    pub v_cache: &'a [f32],
    /// `[n_ctx, d/2]` cos then sin.
    pub rope: &'a [f32],
}

pub async fn attention(ctx: &GpuContext, a: &AttentionInputs<'_>) -> Result<Vec<f32>> {
    let (h, d) = (a.heads * a.head_dim, a.head_dim);
    let cache = &ctx.pipelines;
    let variant = Variant::default()
        .constant("ROWS", a.block as u32)
        .constant("HEAD_DIM", d as u32)
        .constant("KT", plan::attention_tile(a.block, d));
    let pipeline = cache
        .get(
            ctx,
            PipelineKey {
                shader: "attention.wgsl",
                entry: "main",
                variant,
            },
        )
        .await?;
    let params = plan::uniform(
        ctx,
        "attn",
        &AttnParams {
            hidden: h as u32,
            cache_layer_off: 0,
            scale: 1.0 / (d as f32).sqrt(),
            pad: 0,
        },
        false,
    );
    let step = plan::uniform(
        ctx,
        "step",
        &StepParams {
            cached: a.cached as u32,
            ring_start: a.ring_start as u32,
            n_ctx: a.n_ctx as u32,
            row_offset: 0,
        },
        false,
    );
    let none = wgpu::BufferUsages::empty();
    let (q, kc, vc, rope) = (
        buffer(ctx, bytemuck::cast_slice(a.q), none),
        buffer(ctx, bytemuck::cast_slice(a.k_cache), none),
        buffer(ctx, bytemuck::cast_slice(a.v_cache), none),
        buffer(ctx, bytemuck::cast_slice(a.rope), none),
    );
    let out = buffer(ctx, &vec![0u8; a.block * h * 4], none);
    let dispatch = Dispatch {
        bind_group: plan::bind(ctx, &pipeline, &[&params, &step, &q, &kc, &vc, &rope, &out]),
        pipeline,
        groups: a.heads as u32,
    };
    run_and_read(ctx, &dispatch, &out, a.block * h).await
}

/// Runs the sampling kernel on `logits` rows (`[rows, V]`) and returns (id, value) per row:
/// the drawn id and its probability, or for the probes (kept count, kept mass) / (id, q).
pub async fn sample(
    ctx: &GpuContext,
    logits: &[f32],
    tokens: &[u32],
    step: SampleStep,
) -> Result<Vec<(u32, f32)>> {
    let rows = logits.len() / step.vocab as usize;
    let cache = &ctx.pipelines;
    let pipeline = cache
        .get(
            ctx,
            PipelineKey {
                shader: "sampling.wgsl",
                entry: "main",
                variant: Variant::default(),
            },
        )
        .await?;
    let sp = plan::uniform(ctx, "sample step", &step, false);
    let none = wgpu::BufferUsages::empty();
    let (lg, tk) = (
        buffer(ctx, bytemuck::cast_slice(logits), none),
        buffer(ctx, bytemuck::cast_slice(tokens), none),
    );
    let out = buffer(ctx, &vec![0u8; rows * 8], none);
    let dispatch = Dispatch {
        bind_group: plan::bind(ctx, &pipeline, &[&sp, &lg, &tk, &out]),
        pipeline,
        groups: rows as u32,
    };
    let words = run_and_read(ctx, &dispatch, &out, rows * 2).await?;
    Ok(words
        .chunks_exact(2)
        .map(|w| (w[0].to_bits(), w[1]))
        .collect())
}
