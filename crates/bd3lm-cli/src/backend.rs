//! Backend selection: the exact CPU reference or the WGSL engine (`bd3lm_gpu::AnyEngine`).

use crate::error::{CliError, CliResult};
use bd3lm::{CpuEngine, Weights};
pub use bd3lm_gpu::AnyEngine;
use bd3lm_gpu::{GpuContext, GpuEngine, GpuModel, GpuOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The WGSL engine on a hardware GPU; the CPU reference when the only adapter is a
    /// software one (lavapipe, llvmpipe, WARP), which runs WGSL far slower than the CPU path.
    Auto,
    /// The WGSL compute engine (wgpu: Vulkan, Metal, DX12), whatever the adapter.
    Gpu,
    /// The exact f32/f64 CPU reference.
    Cpu,
}

/// The backend used when `--backend` is not given (or `BD3LM_BACKEND` is not set).
pub const DEFAULT_BACKEND: Backend = Backend::Auto;

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// The backend an engine runs on (`auto` resolved).
pub fn engine_backend(engine: &AnyEngine) -> Backend {
    match engine {
        AnyEngine::Cpu(_) => Backend::Cpu,
        AnyEngine::Gpu(_) => Backend::Gpu,
    }
}

/// Builds the engine for `backend` from weights (the CPU engine dequantizes to f32).
pub fn engine(backend: Backend, weights: &Weights) -> CliResult<AnyEngine> {
    let cpu = || AnyEngine::Cpu(Box::new(CpuEngine::new(weights)));
    match backend {
        Backend::Cpu => Ok(cpu()),
        Backend::Gpu => Ok(AnyEngine::Gpu(Box::new(gpu_engine_on(
            gpu_context()?,
            weights,
        )?))),
        Backend::Auto => match gpu_context() {
            Ok(ctx) if !ctx.is_software() => {
                Ok(AnyEngine::Gpu(Box::new(gpu_engine_on(ctx, weights)?)))
            }
            _ => Ok(cpu()),
        },
    }
}

fn gpu_context() -> CliResult<GpuContext> {
    pollster::block_on(GpuContext::new(&GpuOptions::default()))
        .map_err(|e| CliError::Gpu(e.to_string()))
}

/// Weights upload and pipelines for the WGSL engine.
fn gpu_engine_on(ctx: GpuContext, weights: &Weights) -> CliResult<GpuEngine> {
    let model = GpuModel::from_weights(&ctx, weights).map_err(|e| CliError::Gpu(e.to_string()))?;
    pollster::block_on(GpuEngine::new(&ctx, model)).map_err(|e| CliError::Gpu(e.to_string()))
}

/// The adapter that `--backend gpu` uses and its limits (for `bd3lm info`); starts with
/// "software adapter" for CPU-based adapters.
pub fn gpu_adapter_report() -> CliResult<String> {
    let ctx = gpu_context()?;
    let kind = if ctx.is_software() {
        "software adapter "
    } else {
        ""
    };
    Ok(format!(
        "{kind}{}\n{}",
        ctx.adapter_summary(),
        ctx.limits_summary()
    ))
}
