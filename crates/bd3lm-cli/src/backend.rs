//! Backend selection: the exact CPU reference or the WGSL engine (`bd3lm_gpu::AnyEngine`).

use crate::error::{CliError, CliResult};
use bd3lm::{CpuEngine, Weights};
pub use bd3lm_gpu::AnyEngine;
use bd3lm_gpu::{GpuContext, GpuEngine, GpuModel, GpuOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The WGSL compute engine (wgpu: Vulkan, Metal, DX12).
    Gpu,
    /// The exact f32/f64 CPU reference (slow, bit-stable).
    Cpu,
}

/// The backend used when `--backend` is not given.
pub const DEFAULT_BACKEND: Backend = Backend::Gpu;

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// Builds the engine for `backend` from weights (the CPU engine dequantizes to f32).
pub fn engine(backend: Backend, weights: &Weights) -> CliResult<AnyEngine> {
    match backend {
        Backend::Cpu => Ok(AnyEngine::Cpu(Box::new(CpuEngine::new(weights)))),
        Backend::Gpu => Ok(AnyEngine::Gpu(Box::new(gpu_engine(weights)?))),
    }
}

fn gpu_context() -> CliResult<GpuContext> {
    pollster::block_on(GpuContext::new(&GpuOptions::default()))
        .map_err(|e| CliError::Gpu(e.to_string()))
}

/// Adapter, device, weights upload and pipelines for the WGSL engine.
pub fn gpu_engine(weights: &Weights) -> CliResult<GpuEngine> {
    let ctx = gpu_context()?;
    let model = GpuModel::from_weights(&ctx, weights).map_err(|e| CliError::Gpu(e.to_string()))?;
    pollster::block_on(GpuEngine::new(&ctx, model)).map_err(|e| CliError::Gpu(e.to_string()))
}

/// The adapter that `--backend gpu` uses and its limits (for `bd3lm info`).
pub fn gpu_adapter_report() -> CliResult<String> {
    let ctx = gpu_context()?;
    Ok(format!(
        "{}\n{}",
        ctx.adapter_summary(),
        ctx.limits_summary()
    ))
}
