//! What the host shares with the shaders: the uniform structs (laid out as in the WGSL), the
//! sampling modes, one recorded dispatch, and the helpers that create buffers and bind groups.

use crate::context::GpuContext;
use crate::model::GpuMatrix;
use bd3lm::quant::Scheme;
use bytemuck::{Pod, Zeroable};
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct WeightParams {
    k: u32,
    split_row: u32,
    scale_off0: u32,
    scale_off1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct MatmulParams {
    pub n: u32,
    pub norm_off: u32,
    pub shift_off: u32,
    pub scale_off: u32,
    pub bias_off: u32,
    pub gate_off: u32,
    pub hidden: u32,
    pub cache_layer_off: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct StepParams {
    pub cached: u32,
    pub ring_start: u32,
    pub n_ctx: u32,
    pub row_offset: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct AttnParams {
    pub hidden: u32,
    pub cache_layer_off: u32,
    pub scale: f32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub struct SampleStep {
    pub vocab: u32,
    pub mask: u32,
    pub row_offset: u32,
    pub mode: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub top_p: f32,
    pub mask_prob: f32,
}

/// Sampling kernel modes (see sampling.wgsl).
pub mod mode {
    pub const FIRST_HITTING: u32 = 0;
    pub const POSTERIOR: u32 = 1;
    pub const POSTERIOR_T0_QUIRK: u32 = 2;
    pub const NUCLEUS_PROBE: u32 = 3;
    pub const RACE_PROBE: u32 = 4;
}

pub struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub groups: u32,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, groups: Option<u32>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(groups.unwrap_or(self.groups), 1, 1);
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

pub(crate) fn uniform<T: Pod>(
    ctx: &GpuContext,
    label: &str,
    value: &T,
    writable: bool,
) -> wgpu::Buffer {
    let mut usage = wgpu::BufferUsages::UNIFORM;
    if writable {
        usage |= wgpu::BufferUsages::COPY_DST;
    }
    ctx.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage,
    })
}

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
    uniform(ctx, "weight params", &p, false)
}

pub(crate) fn bind(
    ctx: &GpuContext,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let layout = pipeline.get_bind_group_layout(0);
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    ctx.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &layout,
        entries: &entries,
    })
}
