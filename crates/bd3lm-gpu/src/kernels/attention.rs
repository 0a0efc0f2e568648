//! `attention.wgsl`: flash-decoding over the ring KV cache, `partial` per (head, split) and
//! `combine` per block row; a window of one split is finished by `partial` itself and the
//! combine is not recorded when no window of the call has more.

use super::{compile_and_bind, Layout};
use crate::context::GpuContext;
use crate::dispatch::{uniform, AttnParams, Bound, Cost, Dispatch, Grid, StepTable};
use crate::error::Result;
use crate::pipelines::{PipelineKey, Slot};
use crate::shaders::Variant;
use crate::tiling::{attention_tiles, softmax_lanes, AttentionTiles, Tiling};

/// The attention kernels for blocks of `rows` queries of `head_dim` per head; a call has one
/// or two such groups (a folded call: the clean block and the denoised one), `max_rows` rows
/// in all at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attention {
    pub rows: u32,
    pub max_rows: u32,
    pub head_dim: u32,
    pub tiles: AttentionTiles,
}

const PARTIAL_LAYOUT: Layout = &[
    (0, Slot::Uniform),
    (1, Slot::StepTable),
    (2, Slot::Read),
    (3, Slot::Read),
    (4, Slot::Read),
    (5, Slot::Read),
    (6, Slot::ReadWrite),
    (7, Slot::ReadWrite),
    (8, Slot::ReadWrite),
];

const COMBINE_LAYOUT: Layout = &[
    (0, Slot::Uniform),
    (1, Slot::StepTable),
    (6, Slot::ReadWrite),
    (7, Slot::ReadWrite),
    (8, Slot::ReadWrite),
];

impl Attention {
    /// The kernels for `tiling` within `workgroup_bytes` of workgroup memory
    /// ([`GpuContext::workgroup_bytes`]).
    pub fn new(
        tiling: Tiling,
        rows: usize,
        head_dim: usize,
        heads: usize,
        workgroup_bytes: u32,
    ) -> Attention {
        Attention {
            rows: rows as u32,
            max_rows: 2 * rows as u32,
            head_dim: head_dim as u32,
            tiles: attention_tiles(tiling, rows, head_dim, heads, workgroup_bytes),
        }
    }

    /// `Step.kv_split` for a window holding `cached` committed tokens.
    pub fn kv_split(&self, cached: usize) -> u32 {
        self.tiles.keys_per_split(cached + self.rows as usize)
    }

    fn variant(&self) -> Variant {
        Variant::default()
            .constant("ROWS", self.rows)
            .constant("MAX_ROWS", self.max_rows)
            .constant("HEAD_DIM", self.head_dim)
            .constant("KT", self.tiles.kt)
            .constant("TPR", softmax_lanes(self.rows as usize))
    }

    pub fn partial_key(&self) -> PipelineKey {
        PipelineKey {
            shader: "attention.wgsl",
            entry: "partial",
            variant: self.variant(),
            slots: PARTIAL_LAYOUT.to_vec(),
        }
    }

    pub fn combine_key(&self) -> PipelineKey {
        PipelineKey {
            shader: "attention.wgsl",
            entry: "combine",
            variant: self.variant(),
            slots: COMBINE_LAYOUT.to_vec(),
        }
    }

    /// Floats of the split outputs for `hidden` width (any window):
    /// (unnormalised outputs, running max and sum).
    pub fn partial_floats(&self, hidden: usize) -> (usize, usize) {
        let splits = self.tiles.max_splits as usize;
        let heads = hidden / self.head_dim as usize;
        (
            splits * self.max_rows as usize * hidden,
            splits * heads * self.max_rows as usize * 2,
        )
    }
}

/// Buffers of one layer's attention.
pub struct AttentionIo<'a> {
    pub params: AttnParams,
    pub steps: &'a StepTable,
    pub q: &'a wgpu::Buffer,
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    pub rope: &'a wgpu::Buffer,
    pub part_o: &'a wgpu::Buffer,
    pub part_ml: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// The (partial, combine) dispatches of one layer.
pub async fn dispatches(
    ctx: &GpuContext,
    a: Attention,
    io: AttentionIo<'_>,
    layer: Option<usize>,
) -> Result<(Dispatch, Dispatch)> {
    let p = uniform(ctx, "attention params", &io.params);
    let partial_buffers = [
        Bound::Buffer(&p),
        Bound::Steps(io.steps),
        Bound::Buffer(io.q),
        Bound::Buffer(io.k_cache),
        Bound::Buffer(io.v_cache),
        Bound::Buffer(io.rope),
        Bound::Buffer(io.part_o),
        Bound::Buffer(io.part_ml),
        Bound::Buffer(io.out),
    ];
    let (compiled, bind_group) = compile_and_bind(ctx, &a.partial_key(), &partial_buffers).await?;
    let h = io.params.hidden as u64;
    let rows = a.rows as u64;
    let partial = Dispatch {
        kernel: "attention",
        layer,
        compiled,
        bind_group,
        grid: Grid::Attention {
            heads: io.params.heads,
            block: a.rows,
            tiles: a.tiles,
        },
        cost: Cost {
            // Each key's K and V row of every head, read once per row group of the call.
            cache_bytes_per_key: 2 * h * 4,
            // q.k and p.v: 4 flops per (row, key, element).
            flops_per_key: 4 * rows * h,
            ..Cost::default()
        },
    };
    let combine_buffers = [
        Bound::Buffer(&p),
        Bound::Steps(io.steps),
        Bound::Buffer(io.part_o),
        Bound::Buffer(io.part_ml),
        Bound::Buffer(io.out),
    ];
    let (compiled, bind_group) = compile_and_bind(ctx, &a.combine_key(), &combine_buffers).await?;
    let combine = Dispatch {
        kernel: "attention_combine",
        layer,
        compiled,
        bind_group,
        grid: Grid::Combine {
            block: a.rows,
            tiles: a.tiles,
        },
        cost: Cost {
            flops_per_row: 4 * h,
            ..Cost::default()
        },
    };
    Ok((partial, combine))
}
