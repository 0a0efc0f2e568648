//! Backend selection: the exact CPU reference or the WGSL engine, behind one enum that
//! implements [`Engine`] by delegation (the trait's `impl Future` methods are not object safe).
//!
//! GPU WIRING: the GPU backend is connected in exactly three places of this file, all marked
//! `GPU WIRING`: the [`GpuEngine`] type, [`gpu_engine`] and [`gpu_adapter_report`]. Once they
//! are filled in, make `gpu` the default in [`DEFAULT_BACKEND`].

use crate::error::{CliError, CliResult};
use bd3lm::engine::{DrawRequest, Engine, EngineCounters, RowDraw};
use bd3lm::forward::Activations;
use bd3lm::{Config, CpuEngine, Result, Weights};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The WGSL compute engine (wgpu: Vulkan, Metal, DX12).
    Gpu,
    /// The exact f32/f64 CPU reference (slow, bit-stable).
    Cpu,
}

/// The backend used when `--backend` is not given (cpu until the GPU engine is wired).
pub const DEFAULT_BACKEND: Backend = Backend::Cpu;

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// GPU WIRING (1/3): replace with `bd3lm_gpu::GpuEngine` and delete [`NoGpu`].
pub type GpuEngine = NoGpu;

/// GPU WIRING (2/3): create the adapter and device
/// (`bd3lm_gpu::GpuContext::new(&GpuOptions::default())`), upload the weights
/// (`GpuModel::from_weights(&ctx, weights)`) and build the engine (`GpuEngine::new(&ctx, model)`),
/// driving the futures with `pollster::block_on`; map every `GpuError` to [`CliError::Gpu`]
/// (its no-adapter message already suggests `--backend cpu`).
pub fn gpu_engine(weights: &Weights) -> CliResult<GpuEngine> {
    let _ = weights;
    Err(CliError::Gpu(
        "not wired yet in this build (the WGSL engine is still being written); use --backend cpu"
            .into(),
    ))
}

/// GPU WIRING (3/3): the adapter that `--backend gpu` would use and its limits (for
/// `bd3lm info`): `ctx.adapter_summary()` and `ctx.limits_summary()`.
pub fn gpu_adapter_report() -> CliResult<String> {
    Err(CliError::Gpu("not wired yet in this build".into()))
}

/// Placeholder for the GPU engine type until it exists: uninhabited, so every
/// `AnyEngine::Gpu` arm below is statically unreachable.
pub enum NoGpu {}

impl Engine for NoGpu {
    fn config(&self) -> &Config {
        match *self {}
    }
    fn reset(&mut self) {
        match *self {}
    }
    fn cached_tokens(&self) -> usize {
        match *self {}
    }
    fn forward_count(&self) -> u64 {
        match *self {}
    }
    async fn commit(&mut self, _: &[u32]) -> Result<()> {
        match *self {}
    }
    async fn logits(&mut self, _: &[u32]) -> Result<Vec<f32>> {
        match *self {}
    }
    async fn activations(&mut self, _: &[u32]) -> Result<Activations> {
        match *self {}
    }
    async fn draw(&mut self, _: &DrawRequest<'_>) -> Result<Vec<RowDraw>> {
        match *self {}
    }
    async fn nucleus_probe(&mut self, _: &[f32], _: f64) -> Result<Vec<(usize, f64)>> {
        match *self {}
    }
    async fn race_probe(&mut self, _: &[f64], _: u64) -> Result<Vec<u32>> {
        match *self {}
    }
    fn describe(&self) -> String {
        match *self {}
    }
}

pub enum AnyEngine {
    Cpu(Box<CpuEngine>),
    Gpu(GpuEngine),
}

impl AnyEngine {
    /// Builds the engine for `backend` from weights (the CPU engine dequantizes to f32).
    pub fn new(backend: Backend, weights: &Weights) -> CliResult<AnyEngine> {
        match backend {
            Backend::Cpu => Ok(AnyEngine::Cpu(Box::new(CpuEngine::new(weights)))),
            Backend::Gpu => Ok(AnyEngine::Gpu(gpu_engine(weights)?)),
        }
    }
}

impl Engine for AnyEngine {
    fn config(&self) -> &Config {
        match self {
            AnyEngine::Cpu(e) => e.config(),
            AnyEngine::Gpu(e) => e.config(),
        }
    }
    fn reset(&mut self) {
        match self {
            AnyEngine::Cpu(e) => e.reset(),
            AnyEngine::Gpu(e) => e.reset(),
        }
    }
    fn cached_tokens(&self) -> usize {
        match self {
            AnyEngine::Cpu(e) => e.cached_tokens(),
            AnyEngine::Gpu(e) => e.cached_tokens(),
        }
    }
    fn forward_count(&self) -> u64 {
        match self {
            AnyEngine::Cpu(e) => e.forward_count(),
            AnyEngine::Gpu(e) => e.forward_count(),
        }
    }
    async fn commit(&mut self, block: &[u32]) -> Result<()> {
        match self {
            AnyEngine::Cpu(e) => e.commit(block).await,
            AnyEngine::Gpu(e) => e.commit(block).await,
        }
    }
    async fn logits(&mut self, block: &[u32]) -> Result<Vec<f32>> {
        match self {
            AnyEngine::Cpu(e) => e.logits(block).await,
            AnyEngine::Gpu(e) => e.logits(block).await,
        }
    }
    async fn activations(&mut self, block: &[u32]) -> Result<Activations> {
        match self {
            AnyEngine::Cpu(e) => e.activations(block).await,
            AnyEngine::Gpu(e) => e.activations(block).await,
        }
    }
    async fn draw(&mut self, req: &DrawRequest<'_>) -> Result<Vec<RowDraw>> {
        match self {
            AnyEngine::Cpu(e) => e.draw(req).await,
            AnyEngine::Gpu(e) => e.draw(req).await,
        }
    }
    async fn nucleus_probe(&mut self, log_probs: &[f32], p: f64) -> Result<Vec<(usize, f64)>> {
        match self {
            AnyEngine::Cpu(e) => e.nucleus_probe(log_probs, p).await,
            AnyEngine::Gpu(e) => e.nucleus_probe(log_probs, p).await,
        }
    }
    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> Result<Vec<u32>> {
        match self {
            AnyEngine::Cpu(e) => e.race_probe(probs, seed).await,
            AnyEngine::Gpu(e) => e.race_probe(probs, seed).await,
        }
    }
    fn describe(&self) -> String {
        match self {
            AnyEngine::Cpu(e) => e.describe(),
            AnyEngine::Gpu(e) => e.describe(),
        }
    }
    fn counters(&self) -> EngineCounters {
        match self {
            AnyEngine::Cpu(e) => e.counters(),
            AnyEngine::Gpu(e) => e.counters(),
        }
    }
}
