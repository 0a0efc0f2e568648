//! Backend selection: the fast CPU engine, the exact CPU reference or the WGSL engine
//! (`bd3lm_gpu::AnyEngine`).

use crate::error::{CliError, CliResult};
use bd3lm::Weights;
use bd3lm_cpu::CpuOptions;
pub use bd3lm_gpu::AnyEngine;
use bd3lm_gpu::{GpuContext, GpuEngine, GpuModel, GpuOptions};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The WGSL engine on a hardware GPU; the fast CPU engine when there is none or the only
    /// adapter is a software one (lavapipe, llvmpipe, WARP), which runs WGSL far slower.
    Auto,
    /// The WGSL compute engine (wgpu: Vulkan, Metal, DX12), whatever the adapter.
    Gpu,
    /// The fast CPU engine: the package's weights as stored, SIMD, `--threads` threads.
    Cpu,
    /// The exact f32/f64 CPU reference (one thread, matrices dequantized to f32): the oracle.
    Reference,
}

/// The backend used when `--backend` is not given (or `BD3LM_BACKEND` is not set).
pub const DEFAULT_BACKEND: Backend = Backend::Auto;

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
            Backend::Reference => "reference",
        }
    }
}

/// The backend an engine runs on (`auto` resolved).
pub fn engine_backend(engine: &AnyEngine) -> Backend {
    match engine {
        AnyEngine::Cpu(_) => Backend::Cpu,
        AnyEngine::Reference(_) => Backend::Reference,
        AnyEngine::Gpu(_) => Backend::Gpu,
    }
}

/// Builds the engine for `backend` from weights; `threads` applies to the fast CPU engine
/// (`None`: every core; the kernel family can be forced with `BD3LM_CPU_SIMD`).
pub fn engine(
    backend: Backend,
    weights: &Arc<Weights>,
    threads: Option<usize>,
) -> CliResult<AnyEngine> {
    if threads.is_some() && matches!(backend, Backend::Gpu | Backend::Reference) {
        return Err(CliError::Usage(format!(
            "--threads applies to the fast CPU engine (--backend cpu), not --backend {}",
            backend.name()
        )));
    }
    let cpu = || -> CliResult<AnyEngine> {
        let options = CpuOptions::from_env(threads).map_err(|e| CliError::Usage(e.to_string()))?;
        let engine = bd3lm_cpu::CpuEngine::new(Arc::clone(weights), options)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(AnyEngine::Cpu(Box::new(engine)))
    };
    match backend {
        Backend::Cpu => cpu(),
        Backend::Reference => Ok(AnyEngine::Reference(Box::new(bd3lm::CpuEngine::new(
            weights,
        )))),
        Backend::Gpu => Ok(AnyEngine::Gpu(Box::new(gpu_engine_on(
            gpu_context()?,
            weights,
        )?))),
        Backend::Auto => match gpu_context() {
            Ok(ctx) if !ctx.is_software() => {
                Ok(AnyEngine::Gpu(Box::new(gpu_engine_on(ctx, weights)?)))
            }
            _ => cpu(),
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
