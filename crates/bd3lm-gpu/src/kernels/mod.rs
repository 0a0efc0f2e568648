//! The typed kernel layer: every kernel the engine runs, defined once. For each kernel, its
//! module gives the shader and entry point, the compile-time variant (enums, never loose
//! flags), the explicit bind-group layout and bind order (one table), the workgroup grid and
//! what a dispatch streams. [`crate::plan::Plan`] builds the engine's dispatches from these,
//! and the test launchers of [`launch`] build theirs from the same functions, so the engine
//! and the kernel tests cannot drift apart.

pub mod attention;
pub mod launch;
pub mod matmul;
pub mod norm;
pub mod sample;

use crate::context::GpuContext;
use crate::dispatch::{bind, Bound};
use crate::error::{GpuError, Result};
use crate::pipelines::{Compiled, PipelineKey, Slot};

/// A kernel's bind-group layout: (binding, kind) in bind order.
pub type Layout = &'static [(u32, Slot)];

/// Compiles (or fetches) `key` and binds `buffers` in the order of `layout`.
pub(crate) async fn compile_and_bind(
    ctx: &GpuContext,
    key: &PipelineKey,
    buffers: &[Bound<'_>],
) -> Result<(Compiled, wgpu::BindGroup)> {
    if buffers.len() != key.slots.len() {
        return Err(GpuError::Unsupported(format!(
            "{}:{}: {} bindings for a layout of {}",
            key.shader,
            key.entry,
            buffers.len(),
            key.slots.len()
        )));
    }
    let compiled = ctx.pipelines.get(ctx, key).await?;
    let entries: Vec<(u32, Bound<'_>)> = key
        .slots
        .iter()
        .zip(buffers)
        .map(|(&(binding, _), &b)| (binding, b))
        .collect();
    let group = bind(ctx, &compiled, &entries);
    Ok((compiled, group))
}
