//! The smoke kernels of `shaders/smoke.wgsl` (vectorised add, workgroup tree reduction), used
//! by the native and browser tests to prove the whole toolchain against CPU loops.

use crate::context::GpuContext;
use crate::error::Result;
use crate::pipelines::{PipelineKey, Slot};
use crate::shaders::Variant;

fn input(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    ctx.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(data),
        usage: wgpu::BufferUsages::STORAGE,
    })
}

async fn run(
    ctx: &GpuContext,
    entry: &'static str,
    a: &[f32],
    b: &[f32],
    out_len: usize,
    groups: u32,
) -> Result<Vec<f32>> {
    let slots = if entry == "add" {
        vec![(0, Slot::Read), (1, Slot::Read), (2, Slot::ReadWrite)]
    } else {
        vec![(0, Slot::Read), (2, Slot::ReadWrite)]
    };
    let compiled = ctx
        .pipelines
        .get(
            ctx,
            &PipelineKey {
                shader: "smoke.wgsl",
                entry,
                variant: Variant::default(),
                slots,
            },
        )
        .await?;
    let (ab, bb) = (input(ctx, a), input(ctx, b));
    let size = (out_len * 4) as u64;
    let out = ctx.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = ctx.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let layout = &compiled.layout;
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: ab.as_entire_binding(),
    }];
    if entry == "add" {
        entries.push(wgpu::BindGroupEntry {
            binding: 1,
            resource: bb.as_entire_binding(),
        });
    }
    entries.push(wgpu::BindGroupEntry {
        binding: 2,
        resource: out.as_entire_binding(),
    });
    let bind_group = ctx.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&compiled.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }
    ctx.queue.submit([enc.finish()]);
    let bytes = ctx.read_buffer(&out, &staging, size).await?;
    Ok(bytemuck::cast_slice(&bytes).to_vec())
}

/// `a + b` elementwise (lengths a multiple of 4).
pub async fn add(ctx: &GpuContext, a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    run(ctx, "add", a, b, a.len(), (a.len() / 4).div_ceil(64) as u32).await
}

/// Sums of consecutive chunks of 1024 values (256 threads x vec4), one per workgroup.
pub async fn chunk_sums(ctx: &GpuContext, a: &[f32]) -> Result<Vec<f32>> {
    let groups = (a.len() / 4).div_ceil(256);
    let out = run(ctx, "reduce_sum", a, &[0.0; 4], groups * 4, groups as u32).await?;
    Ok(out.chunks_exact(4).map(|c| c[0]).collect())
}

/// Records `dispatches` one-thread dispatches in one pass, each depending on the previous one
/// (a read-modify-write of one word), submits them and waits: the dispatch floor of a forward
/// of as many dispatches. Returns the counter, which equals `dispatches`.
pub async fn tick_chain(ctx: &GpuContext, dispatches: u32) -> Result<u32> {
    let compiled = ctx
        .pipelines
        .get(
            ctx,
            &PipelineKey {
                shader: "smoke.wgsl",
                entry: "tick",
                variant: Variant::default(),
                slots: vec![(2, Slot::ReadWrite)],
            },
        )
        .await?;
    let out = ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tick counter"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tick staging"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind_group = ctx.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &compiled.layout,
        entries: &[wgpu::BindGroupEntry {
            binding: 2,
            resource: out.as_entire_binding(),
        }],
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&compiled.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        for _ in 0..dispatches {
            pass.dispatch_workgroups(1, 1, 1);
        }
    }
    ctx.queue.submit([enc.finish()]);
    let bytes = ctx.read_buffer(&out, &staging, 16).await?;
    let count: &[f32] = bytemuck::cast_slice(&bytes);
    Ok(count[0] as u32)
}
