//! Backend selection: the fast CPU engine, the exact CPU reference or the WGSL engine
//! (`bd3lm_gpu::AnyEngine`).

use crate::error::{CliError, CliResult};
use bd3lm::Weights;
use bd3lm_cpu::CpuOptions;
pub use bd3lm_gpu::AnyEngine;
use bd3lm_gpu::{GpuContext, GpuEngine, GpuModel, GpuOptions, Tiling};
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

/// `--gpu-tiling`: how the WGSL kernels split their work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TilingArg {
    /// Hardware tiling on a GPU, software tiling on a CPU adapter.
    #[default]
    Auto,
    /// Narrow column tiles, K splits and the KV cache split over workgroups: enough
    /// workgroups to fill a large GPU (on any adapter; slow on software ones).
    Hardware,
    /// One thread per output column and one workgroup per attention head: fewest barriers,
    /// the fast choice on CPU adapters (lavapipe, SwiftShader).
    Software,
}

impl TilingArg {
    pub fn tiling(self) -> Tiling {
        match self {
            TilingArg::Auto => Tiling::Auto,
            TilingArg::Hardware => Tiling::Hardware,
            TilingArg::Software => Tiling::Software,
        }
    }
}

/// Options of the WGSL engine, shared by every command that runs a model.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GpuArgs {
    /// How the WGSL kernels split their work (GPU backend).
    #[arg(long, value_enum, default_value_t = TilingArg::Auto, env = "BD3LM_GPU_TILING")]
    pub gpu_tiling: TilingArg,
    /// Group each block's steps into submissions of at most N steps; default: each step
    /// submitted as soon as it is recorded (still one wait per block).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub steps_per_submit: Option<u32>,
    /// Run each block's store pass as a model call of its own instead of folding it into the
    /// next block's first call (WGSL and fast CPU engines; the same tokens, one more model
    /// call per block; the exact reference always runs it on its own).
    #[arg(long)]
    pub no_fold: bool,
    /// WebGPU's default limits only (the portable path); by default the device asks for the
    /// adapter's workgroup memory (up to 32 KiB), which longer attention tiles use.
    #[arg(long, env = "BD3LM_GPU_BASELINE")]
    pub gpu_baseline: bool,
    /// Request timestamp queries where the adapter has them (set by `bench --profile`).
    #[arg(skip)]
    pub timestamps: bool,
}

impl GpuArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            tiling: self.gpu_tiling.tiling(),
            steps_per_submit: self.steps_per_submit.map(|n| n as usize),
            separate_store: self.no_fold,
            baseline: self.gpu_baseline,
            timestamps: self.timestamps,
            ..GpuOptions::default()
        }
    }
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
    gpu: &GpuArgs,
) -> CliResult<AnyEngine> {
    if threads.is_some() && matches!(backend, Backend::Gpu | Backend::Reference) {
        return Err(CliError::Usage(format!(
            "--threads applies to the fast CPU engine (--backend cpu), not --backend {}",
            backend.name()
        )));
    }
    let cpu = || -> CliResult<AnyEngine> {
        let options = CpuOptions {
            separate_store: gpu.no_fold,
            ..CpuOptions::from_env(threads).map_err(|e| CliError::Usage(e.to_string()))?
        };
        let engine = bd3lm_cpu::CpuEngine::new(Arc::clone(weights), options)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(AnyEngine::Cpu(Box::new(engine)))
    };
    match backend {
        Backend::Cpu => cpu(),
        Backend::Reference => Ok(AnyEngine::Reference(Box::new(bd3lm::ReferenceEngine::new(
            weights,
        )))),
        Backend::Gpu => Ok(AnyEngine::Gpu(Box::new(gpu_engine_on(
            gpu_context(gpu)?,
            weights,
        )?))),
        Backend::Auto => match gpu_context(gpu) {
            Ok(ctx) if !ctx.is_software() => {
                Ok(AnyEngine::Gpu(Box::new(gpu_engine_on(ctx, weights)?)))
            }
            _ => cpu(),
        },
    }
}

pub fn gpu_context(gpu: &GpuArgs) -> CliResult<GpuContext> {
    pollster::block_on(GpuContext::new(&gpu.options())).map_err(|e| CliError::Gpu(e.to_string()))
}

/// Weights upload and pipelines for the WGSL engine.
fn gpu_engine_on(ctx: GpuContext, weights: &Weights) -> CliResult<GpuEngine> {
    let model = GpuModel::from_weights(&ctx, weights).map_err(|e| CliError::Gpu(e.to_string()))?;
    pollster::block_on(GpuEngine::new(&ctx, model)).map_err(|e| CliError::Gpu(e.to_string()))
}

/// The adapter that `--backend gpu` uses and its limits (for `bd3lm info`); starts with
/// "software adapter" for CPU-based adapters.
pub fn gpu_adapter_report(gpu: &GpuArgs) -> CliResult<String> {
    let ctx = gpu_context(gpu)?;
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
