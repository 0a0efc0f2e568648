//! What the host shares with the shaders: the uniform structs of `shaders/uniforms.wgsl`
//! (field for field), the step table, the sampling modes, one recorded dispatch with what it
//! streams, and the helpers that create buffers and bind groups.

use crate::context::GpuContext;
use crate::model::GpuMatrix;
use crate::pipelines::Compiled;
use crate::tiling::AttentionTiles;
use bd3lm::quant::Scheme;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
pub struct WeightParams {
    pub k: u32,
    pub split_row: u32,
    pub scale_off0: u32,
    pub scale_off1: u32,
}

/// One step's slot of the step table (see `Step` in uniforms.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug, PartialEq)]
pub struct Step {
    pub cached: u32,
    pub ring_start: u32,
    pub n_ctx: u32,
    pub draw_row: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub index: u32,
    pub reveal_row: u32,
    pub mode: u32,
    pub top_p: f32,
    pub mask_prob: f32,
    pub kv_split: u32,
    pub ring: u32,
    pub rows: u32,
    pub clean_rows: u32,
    pub clean_cached: u32,
    pub clean_ring_start: u32,
    pub clean_kv_split: u32,
    pub bound: f32,
    pub pad: u32,
}

impl Step {
    pub fn seed(mut self, seed: u64) -> Step {
        self.seed_lo = seed as u32;
        self.seed_hi = (seed >> 32) as u32;
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
pub struct MatmulParams {
    pub n: u32,
    pub k_slice: u32,
    pub bias_off: u32,
    pub hidden: u32,
    pub cache_layer_off: u32,
    pub pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
pub struct NormParams {
    pub n: u32,
    pub splits: u32,
    pub gate_off: u32,
    pub bias_off: u32,
    pub norm_off: u32,
    pub shift_off: u32,
    pub scale_off: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
pub struct AttnParams {
    pub hidden: u32,
    pub heads: u32,
    pub cache_layer_off: u32,
    pub scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
pub struct SampleParams {
    pub vocab: u32,
    pub mask: u32,
    pub block: u32,
    pub entropy_off: u32,
    pub tiles: u32,
    pub tile_len: u32,
    pub pad: [u32; 2],
}

/// Bytes of one `Step`.
pub const STEP_BYTES: u64 = std::mem::size_of::<Step>() as u64;
/// Distance between step slots: WebGPU's default `minUniformBufferOffsetAlignment`.
pub const STEP_STRIDE: u64 = 256;

/// Sampling kernel modes (Step.mode, see sampling.wgsl).
pub mod mode {
    pub const FIRST_HITTING: u32 = 0;
    pub const POSTERIOR: u32 = 1;
    pub const POSTERIOR_T0_QUIRK: u32 = 2;
    pub const NUCLEUS_PROBE: u32 = 3;
    pub const RACE_PROBE: u32 = 4;
}

/// The per-step uniforms of a block: `slots` slots of [`STEP_STRIDE`] bytes.
pub struct StepTable {
    pub buffer: wgpu::Buffer,
    pub slots: u32,
}

impl StepTable {
    pub fn new(ctx: &GpuContext, slots: u32) -> StepTable {
        let buffer = ctx.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step table"),
            size: STEP_STRIDE * slots as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        StepTable { buffer, slots }
    }

    pub fn write(&self, queue: &wgpu::Queue, slot: u32, step: &Step) {
        debug_assert!(slot < self.slots);
        queue.write_buffer(
            &self.buffer,
            slot as u64 * STEP_STRIDE,
            bytemuck::bytes_of(step),
        );
    }

    /// The binding: one slot, placed by the dynamic offset.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: 0,
            size: wgpu::BufferSize::new(STEP_BYTES),
        })
    }
}

/// What one model call runs: the rows of a clean block whose K/V it stores (a store pass,
/// alone or folded into the next block's first call) and the rows of the block it denoises,
/// each group with the fill of its own window (see `Step` in uniforms.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// Rows of the clean block (0, or the block size).
    pub clean_rows: u32,
    /// Rows of the denoised block (0 for a store pass alone, or the block size).
    pub rows: u32,
    /// Committed tokens in the clean block's window (before it is appended).
    pub clean_cached: usize,
    /// Committed tokens in the denoised block's window.
    pub cached: usize,
}

impl Call {
    /// A denoising call of a `block`-row block at a window of `cached` tokens.
    pub fn denoise(block: usize, cached: usize) -> Call {
        Call {
            clean_rows: 0,
            rows: block as u32,
            clean_cached: 0,
            cached,
        }
    }

    /// A store pass alone: the clean block at a window of `cached` tokens.
    pub fn store(block: usize, cached: usize) -> Call {
        Call {
            clean_rows: block as u32,
            rows: 0,
            clean_cached: cached,
            cached: 0,
        }
    }

    /// A store pass folded into a denoising call: `[clean block ; denoised block]`.
    pub fn fold(block: usize, clean_cached: usize, cached: usize) -> Call {
        Call {
            clean_rows: block as u32,
            rows: block as u32,
            clean_cached,
            cached,
        }
    }

    /// Rows of the whole call.
    pub fn total_rows(&self) -> u32 {
        self.clean_rows + self.rows
    }

    /// Each group's (rows, committed tokens of its window).
    fn groups(&self) -> impl Iterator<Item = (u32, usize)> {
        [
            (self.clean_rows, self.clean_cached),
            (self.rows, self.cached),
        ]
        .into_iter()
        .filter(|g| g.0 > 0)
    }
}

/// How many workgroups a dispatch launches.
#[derive(Debug, Clone, Copy)]
pub enum Grid {
    Fixed(u32, u32),
    /// One workgroup per row of the call (embedding, residual updates).
    Rows,
    /// The attention combine: one workgroup per row of the call when a group's window has
    /// more than one split, none otherwise (the partials then write the output themselves).
    Combine {
        block: u32,
        tiles: AttentionTiles,
    },
    /// Attention partials: heads x splits of the widest window x the call's row groups.
    Attention {
        heads: u32,
        block: u32,
        tiles: AttentionTiles,
    },
}

/// What one dispatch streams from memory and computes, for `bench --profile` and the
/// structural counters. Per-row figures scale with the call's rows, per-key figures with its
/// windows (attention, once per row group).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub weight_bytes: u64,
    pub weight_bytes_per_row: u64,
    pub flops: u64,
    pub flops_per_row: u64,
    pub cache_bytes_per_key: u64,
    pub flops_per_key: u64,
    /// Logits read (the sampler's passes over the vocabulary, counted once).
    pub logit_bytes: u64,
}

/// A dispatch that reads at least this many bytes of weights, KV cache or logits must launch
/// enough workgroups to fill a GPU (`workgroups_min` is the fewest over exactly these).
pub const BOUNDED_READ_BYTES: u64 = 128 * 1024;

/// One dispatch as recorded for a given call.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchInfo {
    pub kernel: &'static str,
    pub layer: Option<usize>,
    pub workgroups: u32,
    pub weight_bytes: u64,
    pub cache_bytes: u64,
    pub flops: u64,
    pub logit_bytes: u64,
    /// Whether the workgroup bound applies: the dispatch reads at least
    /// [`BOUNDED_READ_BYTES`] of weights, KV cache or logits.
    pub bounded: bool,
}

/// A kernel with its bind group, ready to record.
#[derive(Clone)]
pub struct Dispatch {
    /// Kernel kind for profiles (`qkv`, `attention`, `lm_head`...).
    pub kernel: &'static str,
    pub layer: Option<usize>,
    pub compiled: Compiled,
    pub bind_group: wgpu::BindGroup,
    pub grid: Grid,
    pub cost: Cost,
}

/// Bytes of one indirect dispatch's arguments (x, y, z).
pub const INDIRECT_BYTES: u64 = 12;

impl Dispatch {
    /// Workgroups (x, y, z) of the dispatch in `call`.
    pub fn workgroups(&self, call: &Call) -> (u32, u32, u32) {
        match self.grid {
            Grid::Fixed(x, y) => (x, y, 1),
            Grid::Rows => (call.total_rows(), 1, 1),
            Grid::Combine { block, tiles } => {
                let split = call
                    .groups()
                    .any(|(_, cached)| tiles.splits(cached + block as usize) > 1);
                (if split { call.total_rows() } else { 0 }, 1, 1)
            }
            Grid::Attention {
                heads,
                block,
                tiles,
            } => {
                let splits = call
                    .groups()
                    .map(|(_, cached)| tiles.splits(cached + block as usize))
                    .max()
                    .unwrap_or(0);
                (heads, splits, call.groups().count() as u32)
            }
        }
    }

    fn bind(&self, pass: &mut wgpu::ComputePass<'_>, slot: u32) {
        pass.set_pipeline(&self.compiled.pipeline);
        if self.compiled.dynamic {
            let offset = (slot as u64 * STEP_STRIDE) as u32;
            pass.set_bind_group(0, &self.bind_group, &[offset]);
        } else {
            pass.set_bind_group(0, &self.bind_group, &[]);
        }
    }

    /// Whether the dispatch launches anything in `call` (an attention combine does not when
    /// every window of the call has one split).
    pub fn runs(&self, call: &Call) -> bool {
        let (x, y, z) = self.workgroups(call);
        x * y * z > 0
    }

    /// Records the dispatch for `call`, reading step slot `slot` of the step table; nothing
    /// when it launches no workgroup.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, slot: u32, call: &Call) {
        if self.runs(call) {
            self.record_grid(pass, slot, self.workgroups(call));
        }
    }

    /// Records the dispatch with an explicit grid (the one-row sampler of a probe).
    pub fn record_grid(&self, pass: &mut wgpu::ComputePass<'_>, slot: u32, grid: (u32, u32, u32)) {
        self.bind(pass, slot);
        pass.dispatch_workgroups(grid.0, grid.1, grid.2);
    }

    /// Records the dispatch with its grid read on the device from `args` at `offset` (the
    /// later steps of a parallel block, which the reveal stage empties once it is complete).
    pub fn record_indirect(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        slot: u32,
        args: &wgpu::Buffer,
        offset: u64,
    ) {
        self.bind(pass, slot);
        pass.dispatch_workgroups_indirect(args, offset);
    }

    pub fn info(&self, call: &Call) -> DispatchInfo {
        let (x, y, z) = self.workgroups(call);
        let keys: u64 = match self.grid {
            Grid::Attention { block, .. } => call
                .groups()
                .map(|(_, cached)| (cached + block as usize) as u64)
                .sum(),
            _ => 0,
        };
        let rows = call.total_rows() as u64;
        let weight_bytes = self.cost.weight_bytes + self.cost.weight_bytes_per_row * rows;
        let cache_bytes = self.cost.cache_bytes_per_key * keys;
        DispatchInfo {
            kernel: self.kernel,
            layer: self.layer,
            workgroups: x * y * z,
            weight_bytes,
            cache_bytes,
            flops: self.cost.flops
                + self.cost.flops_per_row * rows
                + self.cost.flops_per_key * keys,
            logit_bytes: self.cost.logit_bytes,
            bounded: weight_bytes + cache_bytes + self.cost.logit_bytes >= BOUNDED_READ_BYTES,
        }
    }
}

pub(crate) fn storage(
    ctx: &GpuContext,
    label: &str,
    bytes: u64,
    extra: wgpu::BufferUsages,
) -> wgpu::Buffer {
    ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.div_ceil(16).max(1) * 16,
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

pub(crate) fn uniform<T: Pod>(ctx: &GpuContext, label: &str, value: &T) -> wgpu::Buffer {
    ctx.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// The `FORMAT_*` flag of a weight scheme (weights.wgsl).
pub(crate) fn format_flag(s: Scheme) -> &'static str {
    match s {
        Scheme::F32 => "FORMAT_F32",
        Scheme::F16 => "FORMAT_F16",
        Scheme::Q8 => "FORMAT_Q8",
        Scheme::Q4 => "FORMAT_Q4",
    }
}

pub(crate) fn weight_params(ctx: &GpuContext, m: &GpuMatrix) -> wgpu::Buffer {
    let p = WeightParams {
        k: m.cols as u32,
        split_row: m.split_row(),
        scale_off0: m.parts[0].scale_off,
        scale_off1: m.parts.get(1).map(|p| p.scale_off).unwrap_or(0),
    };
    uniform(ctx, "weight params", &p)
}

/// One binding of a bind group: a whole buffer or the step table.
#[derive(Clone, Copy)]
pub(crate) enum Bound<'a> {
    Buffer(&'a wgpu::Buffer),
    Steps(&'a StepTable),
}

/// A bind group for `compiled` from its bindings, in the kernel's bind order.
pub(crate) fn bind(
    ctx: &GpuContext,
    compiled: &Compiled,
    bindings: &[(u32, Bound<'_>)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = bindings
        .iter()
        .map(|(binding, b)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: match b {
                Bound::Buffer(buf) => buf.as_entire_binding(),
                Bound::Steps(t) => t.binding(),
            },
        })
        .collect();
    ctx.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &compiled.layout,
        entries: &entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields of `name` in uniforms.wgsl (every field is a 32-bit scalar).
    fn wgsl_fields(name: &str) -> usize {
        let src = crate::shaders::source("uniforms.wgsl").unwrap();
        let start = src.find(&format!("struct {name} {{")).expect(name);
        let body = &src[start..start + src[start..].find('}').unwrap()];
        body.lines()
            .filter(|l| {
                let t = l.trim();
                t.ends_with(": u32,") || t.ends_with(": f32,")
            })
            .count()
    }

    #[test]
    fn host_structs_match_the_wgsl_declarations() {
        use std::mem::size_of;
        for (name, size) in [
            ("WeightParams", size_of::<WeightParams>()),
            ("Step", size_of::<Step>()),
            ("MatmulParams", size_of::<MatmulParams>()),
            ("NormParams", size_of::<NormParams>()),
            ("AttnParams", size_of::<AttnParams>()),
            ("SampleParams", size_of::<SampleParams>()),
        ] {
            assert_eq!(wgsl_fields(name) * 4, size, "{name}");
            assert_eq!(size % 16, 0, "{name}: uniform structs are whole vec4s");
        }
        const { assert!(STEP_BYTES <= STEP_STRIDE) };
    }
}
