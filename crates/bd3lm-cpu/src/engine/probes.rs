//! `CpuEngine`'s check hooks (`EngineProbes`): raw logits, activations and the
//! sampler's probes, used by conformance, evaluation and tests, apart from generation.

use super::*;
use bd3lm::EngineProbes;

impl EngineProbes for CpuEngine {
    async fn logits(&mut self, block: &[u32]) -> Result<Vec<f32>> {
        self.check_block(block)?;
        self.run(block, false, None);
        let rows: Vec<usize> = (0..block.len()).collect();
        self.ensure_logits(&rows);
        Ok(self
            .logits
            .iter()
            .flat_map(|r| r.as_deref().unwrap_or_default().iter().copied())
            .collect())
    }

    async fn activations(&mut self, block: &[u32]) -> Result<Activations> {
        self.check_block(block)?;
        let mut probe = Activations::default();
        self.run(block, false, Some(&mut probe));
        Ok(probe)
    }

    async fn nucleus_probe(&mut self, log_probs: &[f32], p: f64) -> Result<Vec<(usize, f64)>> {
        Ok(engine::cpu_nucleus_probe(
            log_probs,
            self.config().vocab_size,
            p,
        ))
    }

    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> Result<Vec<u32>> {
        Ok(engine::cpu_race_probe(
            probs,
            self.config().vocab_size,
            seed,
        ))
    }
}
