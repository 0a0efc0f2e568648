//! `ReferenceEngine`'s check hooks (`EngineProbes`): raw logits, activations and the
//! sampler's probes, used by conformance, evaluation and tests, apart from generation.

use super::*;

impl EngineProbes for ReferenceEngine {
    async fn logits(&mut self, block: &[u32]) -> Result<Vec<f32>> {
        self.check_block(block)?;
        Ok(self.run(block, false, true, None).unwrap_or_default())
    }

    async fn activations(&mut self, block: &[u32]) -> Result<Activations> {
        self.check_block(block)?;
        let mut probe = Activations::default();
        self.run(block, false, true, Some(&mut probe));
        Ok(probe)
    }

    async fn nucleus_probe(&mut self, log_probs: &[f32], p: f64) -> Result<Vec<(usize, f64)>> {
        Ok(cpu_nucleus_probe(
            log_probs,
            self.weights.config.vocab_size,
            p,
        ))
    }

    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> Result<Vec<u32>> {
        Ok(cpu_race_probe(probs, self.weights.config.vocab_size, seed))
    }
}
