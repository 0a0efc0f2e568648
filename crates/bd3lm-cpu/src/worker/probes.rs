//! `WorkerEngine`'s check hooks (`EngineProbes`): raw logits, activations and the
//! sampler's probes, used by conformance, evaluation and tests, apart from generation.

use super::*;
use bd3lm::EngineProbes;

impl EngineProbes for WorkerEngine {
    async fn logits(&mut self, block: &[u32]) -> Result<Vec<f32>> {
        let block = block.to_vec();
        Ok(self.call(Request::Logits { block }, None).await?.logits)
    }

    async fn activations(&mut self, _block: &[u32]) -> Result<Activations> {
        Err(Error::Backend(
            "activations are not available from the CPU worker".into(),
        ))
    }

    async fn nucleus_probe(&mut self, log_probs: &[f32], p: f64) -> Result<Vec<(usize, f64)>> {
        Ok(bd3lm::engine::cpu_nucleus_probe(
            log_probs,
            self.config.vocab_size,
            p,
        ))
    }

    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> Result<Vec<u32>> {
        Ok(bd3lm::engine::cpu_race_probe(
            probs,
            self.config.vocab_size,
            seed,
        ))
    }
}
