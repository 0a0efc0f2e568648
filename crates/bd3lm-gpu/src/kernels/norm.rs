//! The kernels that finish a row and normalise it once per layer: the embedding gather
//! (`embed.wgsl`) and the residual update after a split-K projection (`residual.wgsl`), both
//! writing `x` and the LayerNorm + modulation of the next consumer into `xn`.

use super::{compile_and_bind, Layout};
use crate::context::GpuContext;
use crate::dispatch::{format_flag, uniform, weight_params, Bound, Cost, Dispatch, Grid};
use crate::dispatch::{NormParams, StepTable};
use crate::error::Result;
use crate::model::GpuMatrix;
use crate::pipelines::{PipelineKey, Slot};
use crate::shaders::Variant;
use bd3lm::quant::Scheme;

/// `embed.wgsl`: gather the call's rows (a clean block's, then the denoised block's), then
/// the first LayerNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embed {
    pub format: Scheme,
}

const EMBED_LAYOUT: Layout = &[
    (0, Slot::Uniform),
    (1, Slot::Uniform),
    (2, Slot::Read),
    (3, Slot::Read),
    (4, Slot::Read),
    (5, Slot::Read),
    (6, Slot::ReadWrite),
    (7, Slot::ReadWrite),
    (8, Slot::StepTable),
    (9, Slot::Read),
];

impl Embed {
    pub fn key(&self) -> PipelineKey {
        PipelineKey {
            shader: "embed.wgsl",
            entry: "main",
            variant: Variant::default().flag(format_flag(self.format)),
            slots: EMBED_LAYOUT.to_vec(),
        }
    }
}

/// Buffers of the embedding gather.
pub struct EmbedIo<'a> {
    pub table: &'a GpuMatrix,
    /// LayerNorm offsets of the first layer (`n` = hidden size).
    pub norm: NormParams,
    /// The denoised block.
    pub tokens: &'a wgpu::Buffer,
    /// The clean block a store pass appends (`Step.clean_rows` rows in front).
    pub clean_tokens: &'a wgpu::Buffer,
    pub steps: &'a StepTable,
    pub vecs: &'a wgpu::Buffer,
    pub x: &'a wgpu::Buffer,
    pub xn: &'a wgpu::Buffer,
}

pub async fn embed(ctx: &GpuContext, e: Embed, io: EmbedIo<'_>) -> Result<Dispatch> {
    let (wp, np) = (
        weight_params(ctx, io.table),
        uniform(ctx, "embed norm params", &io.norm),
    );
    let buffers = [
        Bound::Buffer(&wp),
        Bound::Buffer(&np),
        Bound::Buffer(io.tokens),
        Bound::Buffer(io.table.first()),
        Bound::Buffer(io.table.second()),
        Bound::Buffer(io.vecs),
        Bound::Buffer(io.x),
        Bound::Buffer(io.xn),
        Bound::Steps(io.steps),
        Bound::Buffer(io.clean_tokens),
    ];
    let (compiled, bind_group) = compile_and_bind(ctx, &e.key(), &buffers).await?;
    let row_bytes = io.table.bytes() / io.table.rows.max(1) as u64;
    Ok(Dispatch {
        kernel: "embed",
        layer: None,
        compiled,
        bind_group,
        grid: Grid::Rows,
        cost: Cost {
            // A gather of the call's rows, exempt from the workgroup bound.
            weight_bytes_per_row: row_bytes,
            flops_per_row: 8 * io.table.cols as u64,
            ..Cost::default()
        },
    })
}

/// `residual.wgsl`: add the K splits' partial sums to `x` (gated, with or without a bias),
/// then the next LayerNorm. `rows`: the partial sums' row stride (the most rows a call has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residual {
    pub bias: bool,
    pub rows: u32,
}

const RESIDUAL_LAYOUT: Layout = &[
    (0, Slot::Uniform),
    (1, Slot::Read),
    (2, Slot::Read),
    (3, Slot::ReadWrite),
    (4, Slot::ReadWrite),
];

impl Residual {
    pub fn key(&self) -> PipelineKey {
        let mut variant = Variant::default().constant("ROWS", self.rows);
        if self.bias {
            variant = variant.flag("BIAS");
        }
        PipelineKey {
            shader: "residual.wgsl",
            entry: "main",
            variant,
            slots: RESIDUAL_LAYOUT.to_vec(),
        }
    }
}

/// Buffers of a residual update.
pub struct ResidualIo<'a> {
    /// Width, K splits, gate/bias offsets and the next LayerNorm's offsets.
    pub norm: NormParams,
    pub partials: &'a wgpu::Buffer,
    pub vecs: &'a wgpu::Buffer,
    pub x: &'a wgpu::Buffer,
    pub xn: &'a wgpu::Buffer,
}

pub async fn residual(
    ctx: &GpuContext,
    r: Residual,
    io: ResidualIo<'_>,
    kernel: &'static str,
    layer: Option<usize>,
) -> Result<Dispatch> {
    let np = uniform(ctx, "residual params", &io.norm);
    let buffers = [
        Bound::Buffer(&np),
        Bound::Buffer(io.partials),
        Bound::Buffer(io.vecs),
        Bound::Buffer(io.x),
        Bound::Buffer(io.xn),
    ];
    let (compiled, bind_group) = compile_and_bind(ctx, &r.key(), &buffers).await?;
    Ok(Dispatch {
        kernel,
        layer,
        compiled,
        bind_group,
        grid: Grid::Rows,
        cost: Cost {
            flops_per_row: io.norm.n as u64 * (2 * io.norm.splits as u64 + 10),
            ..Cost::default()
        },
    })
}
