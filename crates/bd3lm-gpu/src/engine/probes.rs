//! `GpuEngine`'s check hooks (`EngineProbes`): raw logits, activations and the
//! sampler's probes, used by conformance, evaluation and tests, apart from generation.

use super::*;
use bd3lm::EngineProbes;

impl EngineProbes for GpuEngine {
    async fn logits(&mut self, block: &[u32]) -> Result<Vec<f32>> {
        self.check_block(block)?;
        self.upload_block(block);
        let (step, call) = self.take_call();
        self.write_step(0, &step);
        let mut encoder = self.encoder();
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record(&mut pass, &self.plan.forward(false, Head::All), 0, &call);
        }
        self.forwards += 1;
        self.logits_valid = false;
        let staging = self.logits_staging();
        let size = self.plan.logits.size();
        encoder.copy_buffer_to_buffer(&self.plan.logits, 0, &staging, 0, size);
        self.submit(encoder.finish());
        let bytes = self.read(&staging, size).await?;
        let cfg = &self.model.config;
        let mut out = f32s(&bytes);
        out.truncate(cfg.block_size * cfg.vocab_size);
        Ok(out)
    }

    async fn activations(&mut self, block: &[u32]) -> Result<Activations> {
        self.check_block(block)?;
        // The snapshots are of the block's rows alone.
        self.store_separately();
        self.upload_block(block);
        self.write_step(0, &self.step());
        let call = self.plain_call();
        // The block's rows (the buffer holds the 2B rows of a folded call).
        let size = (self.plan.block * self.model.config.hidden_dim * 4) as u64;
        let layers = self.plan.layers.len();
        // Temporary: not in the engine's scope, freed when dropped.
        let snapshots = self.ctx.unscoped().create_buffer(&wgpu::BufferDescriptor {
            label: Some("activation snapshots"),
            size: size * (layers as u64 + 1),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.encoder();
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record(&mut pass, &[&self.plan.embed], 0, &call);
        }
        encoder.copy_buffer_to_buffer(&self.plan.x, 0, &snapshots, 0, size);
        for (i, l) in self.plan.layers.iter().enumerate() {
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.record(&mut pass, &l.all(), 0, &call);
            }
            encoder.copy_buffer_to_buffer(&self.plan.x, 0, &snapshots, size * (i as u64 + 1), size);
        }
        self.submit(encoder.finish());
        self.forwards += 1;
        self.logits_valid = false;
        let bytes = self.read(&snapshots, snapshots.size()).await?;
        let hidden = bytes.chunks_exact(size as usize).map(f32s).collect();
        Ok(Activations {
            hidden,
            ..Default::default()
        })
    }

    async fn nucleus_probe(&mut self, log_probs: &[f32], p: f64) -> Result<Vec<(usize, f64)>> {
        let v = self.model.config.vocab_size;
        let mut kept = Vec::new();
        for chunk in log_probs.chunks(self.plan.block * v) {
            let rows = chunk.len() / v;
            self.upload_probe(chunk);
            self.write_sample_step(0, mode::NUCLEUS_PROBE, 0, p, 0.0);
            let encoder = self.encoder();
            for (count, mass, _) in self.run_sample(encoder, Head::All, rows, 0, false).await? {
                kept.push((count as usize, f32::from_bits(mass) as f64));
            }
        }
        self.logits_valid = false;
        Ok(kept)
    }

    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> Result<Vec<u32>> {
        let v = self.model.config.vocab_size;
        let rows = probs.len() / v;
        if rows > self.plan.block {
            return Err(Error::InvalidArgument(format!(
                "at most {} rows per race probe",
                self.plan.block
            )));
        }
        let q: Vec<f32> = probs.iter().map(|&x| x as f32).collect();
        let finite: Vec<bool> = probs
            .chunks_exact(v)
            .map(|r| r.iter().all(|x| x.is_finite()))
            .collect();
        self.upload_probe(&q);
        self.write_sample_step(0, mode::RACE_PROBE, seed, 1.0, 0.0);
        let encoder = self.encoder();
        let out = self.run_sample(encoder, Head::All, rows, 0, false).await?;
        self.logits_valid = false;
        Ok(out
            .into_iter()
            .zip(finite)
            .map(|((t, _, _), ok)| if ok { t } else { SKIPPED_ROW })
            .collect())
    }
}
