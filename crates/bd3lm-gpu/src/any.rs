//! One engine type for "whichever backend the user picked": the fast CPU engine
//! (`bd3lm-cpu`), the exact CPU reference or the WGSL engine, implementing [`Engine`] by
//! delegation (the trait's `impl Future` methods are not object safe). Shared by the CLI and
//! the web page; it lives here because both already depend on this crate, while the CPU
//! engine's crate stays free of wgpu (docs/architecture.md).

use crate::engine::GpuEngine;
use bd3lm::engine::{BlockRequest, DrawRequest, Engine, EngineCounters, RowDraw, StepRecord};
use bd3lm::forward::Activations;
use bd3lm::{Config, Result};

mod probes;

/// The fast CPU engine, the exact CPU reference or the GPU engine.
pub enum AnyEngine {
    Cpu(Box<bd3lm_cpu::CpuEngine>),
    /// The fast CPU engine in a Web Worker (the page's CPU fallback).
    #[cfg(target_arch = "wasm32")]
    CpuWorker(Box<bd3lm_cpu::worker::WorkerEngine>),
    Reference(Box<bd3lm::ReferenceEngine>),
    Gpu(Box<GpuEngine>),
}

impl Engine for AnyEngine {
    fn config(&self) -> &Config {
        match self {
            AnyEngine::Cpu(e) => e.config(),
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.config(),
            AnyEngine::Reference(e) => e.config(),
            AnyEngine::Gpu(e) => e.config(),
        }
    }
    fn reset(&mut self) {
        match self {
            AnyEngine::Cpu(e) => e.reset(),
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.reset(),
            AnyEngine::Reference(e) => e.reset(),
            AnyEngine::Gpu(e) => e.reset(),
        }
    }
    fn cached_tokens(&self) -> usize {
        match self {
            AnyEngine::Cpu(e) => e.cached_tokens(),
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.cached_tokens(),
            AnyEngine::Reference(e) => e.cached_tokens(),
            AnyEngine::Gpu(e) => e.cached_tokens(),
        }
    }
    fn forward_count(&self) -> u64 {
        match self {
            AnyEngine::Cpu(e) => e.forward_count(),
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.forward_count(),
            AnyEngine::Reference(e) => e.forward_count(),
            AnyEngine::Gpu(e) => e.forward_count(),
        }
    }
    async fn commit(&mut self, block: &[u32]) -> Result<()> {
        match self {
            AnyEngine::Cpu(e) => e.commit(block).await,
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.commit(block).await,
            AnyEngine::Reference(e) => e.commit(block).await,
            AnyEngine::Gpu(e) => e.commit(block).await,
        }
    }
    async fn draw(&mut self, req: &DrawRequest<'_>) -> Result<Vec<RowDraw>> {
        match self {
            AnyEngine::Cpu(e) => e.draw(req).await,
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.draw(req).await,
            AnyEngine::Reference(e) => e.draw(req).await,
            AnyEngine::Gpu(e) => e.draw(req).await,
        }
    }
    fn runs_blocks(&self) -> bool {
        match self {
            AnyEngine::Cpu(e) => e.runs_blocks(),
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.runs_blocks(),
            AnyEngine::Reference(e) => e.runs_blocks(),
            AnyEngine::Gpu(e) => e.runs_blocks(),
        }
    }
    async fn denoise_block(&mut self, req: &BlockRequest<'_>) -> Result<Vec<StepRecord>> {
        match self {
            AnyEngine::Cpu(e) => e.denoise_block(req).await,
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.denoise_block(req).await,
            AnyEngine::Reference(e) => e.denoise_block(req).await,
            AnyEngine::Gpu(e) => e.denoise_block(req).await,
        }
    }
    fn describe(&self) -> String {
        match self {
            AnyEngine::Cpu(e) => e.describe(),
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.describe(),
            AnyEngine::Reference(e) => e.describe(),
            AnyEngine::Gpu(e) => e.describe(),
        }
    }
    fn counters(&self) -> EngineCounters {
        match self {
            AnyEngine::Cpu(e) => e.counters(),
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.counters(),
            AnyEngine::Reference(e) => e.counters(),
            AnyEngine::Gpu(e) => e.counters(),
        }
    }
}
