//! `AnyEngine`'s check hooks (`EngineProbes`): raw logits, activations and the
//! sampler's probes, used by conformance, evaluation and tests, apart from generation.

use super::*;
use bd3lm::EngineProbes;

impl EngineProbes for AnyEngine {
    async fn logits(&mut self, block: &[u32]) -> Result<Vec<f32>> {
        match self {
            AnyEngine::Cpu(e) => e.logits(block).await,
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.logits(block).await,
            AnyEngine::Reference(e) => e.logits(block).await,
            AnyEngine::Gpu(e) => e.logits(block).await,
        }
    }

    async fn activations(&mut self, block: &[u32]) -> Result<Activations> {
        match self {
            AnyEngine::Cpu(e) => e.activations(block).await,
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.activations(block).await,
            AnyEngine::Reference(e) => e.activations(block).await,
            AnyEngine::Gpu(e) => e.activations(block).await,
        }
    }

    async fn nucleus_probe(&mut self, log_probs: &[f32], p: f64) -> Result<Vec<(usize, f64)>> {
        match self {
            AnyEngine::Cpu(e) => e.nucleus_probe(log_probs, p).await,
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.nucleus_probe(log_probs, p).await,
            AnyEngine::Reference(e) => e.nucleus_probe(log_probs, p).await,
            AnyEngine::Gpu(e) => e.nucleus_probe(log_probs, p).await,
        }
    }

    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> Result<Vec<u32>> {
        match self {
            AnyEngine::Cpu(e) => e.race_probe(probs, seed).await,
            #[cfg(target_arch = "wasm32")]
            AnyEngine::CpuWorker(e) => e.race_probe(probs, seed).await,
            AnyEngine::Reference(e) => e.race_probe(probs, seed).await,
            AnyEngine::Gpu(e) => e.race_probe(probs, seed).await,
        }
    }
}
