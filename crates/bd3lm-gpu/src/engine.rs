//! `GpuEngine`: the BD3-LM forward with a GPU-resident KV cache and GPU sampling, behind the
//! core's [`bd3lm::Engine`] trait. Per denoising step only the block's ids go up and the drawn
//! ids (with their probabilities) come back.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::model::GpuModel;
use crate::plan::{mode, Plan, SampleStep, StepParams};
use bd3lm::forward::Activations;
use bd3lm::{Config, DrawRequest, Engine, EngineCounters, Error, Result, RowDraw, Rows};

/// Rows with non-finite probabilities (the t = 0 quirk) are skipped by the GPU race probe:
/// the sampling kernel handles that case as a mode of its own, replayed in the traces.
pub use bd3lm::engine::SKIPPED_ROW;

pub struct GpuEngine {
    ctx: GpuContext,
    model: GpuModel,
    plan: Plan,
    cached: usize,
    ring_start: usize,
    forwards: u64,
    /// Rows whose logits in the logits buffer belong to the current block (posterior reuse).
    logits_valid: bool,
    last_readback: usize,
    logits_staging: Option<wgpu::Buffer>,
}

impl GpuEngine {
    pub async fn new(ctx: &GpuContext, model: GpuModel) -> Result<GpuEngine, GpuError> {
        let plan = Plan::new(ctx, &ctx.pipelines, &model).await?;
        Ok(GpuEngine {
            ctx: ctx.clone(),
            model,
            plan,
            cached: 0,
            ring_start: 0,
            forwards: 0,
            logits_valid: false,
            last_readback: 0,
            logits_staging: None,
        })
    }

    /// Uploads in-memory weights and builds the engine.
    pub async fn from_weights(
        ctx: &GpuContext,
        weights: &bd3lm::Weights,
    ) -> Result<GpuEngine, GpuError> {
        let model = GpuModel::from_weights(ctx, weights)?;
        GpuEngine::new(ctx, model).await
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// GPU memory held: weights, KV cache and scratch buffers.
    pub fn gpu_bytes(&self) -> u64 {
        self.model.weight_bytes() + self.plan.scratch_bytes
    }

    /// Pipelines compiled on this engine's device (shared by every engine on the context).
    pub fn pipeline_count(&self) -> usize {
        self.ctx.pipelines.len()
    }

    fn check_block(&self, block: &[u32]) -> Result<()> {
        let cfg = &self.model.config;
        if block.len() != cfg.block_size {
            return Err(Error::InvalidArgument(format!(
                "a block has {} tokens, got {}",
                cfg.block_size,
                block.len()
            )));
        }
        if let Some(&t) = block.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {t} is outside the vocabulary (size {})",
                cfg.vocab_size
            )));
        }
        self.ctx.check().map_err(Error::from)
    }

    fn write_step(&self, row_offset: usize) {
        let step = StepParams {
            cached: self.cached as u32,
            ring_start: self.ring_start as u32,
            n_ctx: self.model.config.model_length as u32,
            row_offset: 0,
        };
        self.ctx
            .queue
            .write_buffer(&self.plan.step_main, 0, bytemuck::bytes_of(&step));
        let row = StepParams {
            row_offset: row_offset as u32,
            ..step
        };
        self.ctx
            .queue
            .write_buffer(&self.plan.step_row, 0, bytemuck::bytes_of(&row));
    }

    fn upload_block(&mut self, block: &[u32], row_offset: usize) {
        self.ctx
            .queue
            .write_buffer(&self.plan.tokens, 0, bytemuck::cast_slice(block));
        self.write_step(row_offset);
    }

    fn write_sample_step(
        &self,
        row_offset: usize,
        mode: u32,
        seed: u64,
        top_p: f64,
        mask_prob: f32,
    ) {
        let cfg = &self.model.config;
        let s = SampleStep {
            vocab: cfg.vocab_size as u32,
            mask: cfg.mask_id(),
            row_offset: row_offset as u32,
            mode,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            top_p: top_p as f32,
            mask_prob,
        };
        self.ctx
            .queue
            .write_buffer(&self.plan.sample_step, 0, bytemuck::bytes_of(&s));
    }

    /// Runs the sampling kernel on `rows` logits rows and reads back (id, value bits) pairs.
    async fn run_sample(
        &mut self,
        mut encoder: wgpu::CommandEncoder,
        rows: usize,
    ) -> Result<Vec<(u32, u32)>> {
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.plan.sample.record(&mut pass, Some(rows as u32));
        }
        let bytes = (rows * 8) as u64;
        encoder.copy_buffer_to_buffer(&self.plan.result, 0, &self.plan.result_staging, 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        let data = self
            .ctx
            .map_read(&self.plan.result_staging, bytes)
            .await
            .map_err(Error::from)?;
        self.last_readback = data.len();
        let words: Vec<u32> = data
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(words.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    fn logits_staging(&mut self) -> wgpu::Buffer {
        let size = self.plan.logits.size();
        self.logits_staging
            .get_or_insert_with(|| {
                self.ctx.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("logits staging"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .clone()
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Engine for GpuEngine {
    fn config(&self) -> &Config {
        &self.model.config
    }

    fn reset(&mut self) {
        self.cached = 0;
        self.ring_start = 0;
        self.logits_valid = false;
    }

    fn cached_tokens(&self) -> usize {
        self.cached
    }

    fn forward_count(&self) -> u64 {
        self.forwards
    }

    async fn commit(&mut self, block: &[u32]) -> Result<()> {
        self.check_block(block)?;
        self.upload_block(block, 0);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.plan.record_layers(&mut pass, true);
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.forwards += 1;
        self.logits_valid = false;
        let (b, n) = (self.plan.block, self.model.config.model_length);
        self.cached += b;
        if self.cached >= n {
            self.ring_start = (self.ring_start + b) % n;
            self.cached -= b;
        }
        Ok(())
    }

    async fn logits(&mut self, block: &[u32]) -> Result<Vec<f32>> {
        self.check_block(block)?;
        self.upload_block(block, 0);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.plan.record_layers(&mut pass, false);
            self.plan.head_all.record(&mut pass, None);
        }
        self.forwards += 1;
        self.logits_valid = false;
        let staging = self.logits_staging();
        let size = self.plan.logits.size();
        encoder.copy_buffer_to_buffer(&self.plan.logits, 0, &staging, 0, size);
        self.ctx.queue.submit([encoder.finish()]);
        let bytes = self
            .ctx
            .map_read(&staging, size)
            .await
            .map_err(Error::from)?;
        let cfg = &self.model.config;
        let mut out = f32s(&bytes);
        out.truncate(cfg.block_size * cfg.vocab_size);
        Ok(out)
    }

    async fn activations(&mut self, block: &[u32]) -> Result<Activations> {
        self.check_block(block)?;
        self.upload_block(block, 0);
        let size = self.plan.x.size();
        let layers = self.plan.layers.len();
        let snapshots = self.ctx.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activation snapshots"),
            size: size * (layers as u64 + 1),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.plan.embed.record(&mut pass, None);
        }
        encoder.copy_buffer_to_buffer(&self.plan.x, 0, &snapshots, 0, size);
        for (i, l) in self.plan.layers.iter().enumerate() {
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for d in [&l.qkv, &l.attention, &l.attn_out, &l.mlp_in, &l.mlp_out] {
                    d.record(&mut pass, None);
                }
            }
            encoder.copy_buffer_to_buffer(&self.plan.x, 0, &snapshots, size * (i as u64 + 1), size);
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.forwards += 1;
        self.logits_valid = false;
        let bytes = self
            .ctx
            .map_read(&snapshots, snapshots.size())
            .await
            .map_err(Error::from)?;
        let hidden = bytes.chunks_exact(size as usize).map(f32s).collect();
        Ok(Activations {
            hidden,
            ..Default::default()
        })
    }

    async fn draw(&mut self, req: &DrawRequest<'_>) -> Result<Vec<RowDraw>> {
        self.check_block(req.block)?;
        let (rows, row_offset) = match req.rows {
            Rows::All => (self.plan.block, 0),
            Rows::One(r) if r < self.plan.block => (1, r),
            Rows::One(r) => {
                return Err(Error::InvalidArgument(format!(
                    "row {r} is outside the block"
                )))
            }
        };
        let reuse = req.reuse && self.logits_valid && matches!(req.rows, Rows::All);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        if !reuse {
            self.upload_block(req.block, row_offset);
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.plan.record_layers(&mut pass, false);
            if rows == 1 {
                self.plan.head_one.record(&mut pass, None);
            } else {
                self.plan.head_all.record(&mut pass, None);
            }
            self.forwards += 1;
        }
        self.logits_valid = rows == self.plan.block;
        let mode = match req.mask_prob {
            None => mode::FIRST_HITTING,
            Some(mp) if mp == f32::NEG_INFINITY => mode::POSTERIOR_T0_QUIRK,
            Some(_) => mode::POSTERIOR,
        };
        self.write_sample_step(
            row_offset,
            mode,
            req.uniform_seed,
            req.nucleus_p,
            req.mask_prob.unwrap_or(0.0),
        );
        let results = self.run_sample(encoder, rows).await?;
        Ok(results
            .into_iter()
            .enumerate()
            .map(|(i, (token, conf))| RowDraw {
                row: row_offset + i,
                token,
                confidence: f32::from_bits(conf),
                entropy: f32::NAN,
            })
            .collect())
    }

    async fn nucleus_probe(&mut self, log_probs: &[f32], p: f64) -> Result<Vec<(usize, f64)>> {
        let v = self.model.config.vocab_size;
        let mut kept = Vec::new();
        for chunk in log_probs.chunks(self.plan.block * v) {
            let rows = chunk.len() / v;
            self.ctx
                .queue
                .write_buffer(&self.plan.logits, 0, bytemuck::cast_slice(chunk));
            let masks = vec![self.model.config.mask_id(); self.plan.block];
            self.ctx
                .queue
                .write_buffer(&self.plan.tokens, 0, bytemuck::cast_slice(&masks));
            self.write_sample_step(0, mode::NUCLEUS_PROBE, 0, p, 0.0);
            let encoder = self.ctx.device.create_command_encoder(&Default::default());
            for (count, mass) in self.run_sample(encoder, rows).await? {
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
        self.ctx
            .queue
            .write_buffer(&self.plan.logits, 0, bytemuck::cast_slice(&q));
        let masks = vec![self.model.config.mask_id(); self.plan.block];
        self.ctx
            .queue
            .write_buffer(&self.plan.tokens, 0, bytemuck::cast_slice(&masks));
        self.write_sample_step(0, mode::RACE_PROBE, seed, 1.0, 0.0);
        let encoder = self.ctx.device.create_command_encoder(&Default::default());
        let out = self.run_sample(encoder, rows).await?;
        self.logits_valid = false;
        Ok(out
            .into_iter()
            .zip(finite)
            .map(|((t, _), ok)| if ok { t } else { SKIPPED_ROW })
            .collect())
    }

    fn describe(&self) -> String {
        format!("gpu: {}", self.ctx.adapter_summary())
    }

    fn counters(&self) -> EngineCounters {
        EngineCounters {
            dispatches_per_forward: self.plan.dispatches_per_draw(),
            readback_bytes_last_draw: self.last_readback,
            device_objects_created: self.ctx.objects_created(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuEngine {
    /// Wall-clock milliseconds per dispatch of one forward (each kernel submitted alone
    /// `repeats` times and waited for), summed by kernel kind; for `bd3lm bench --profile`.
    pub fn profile_kernels(&mut self, block: &[u32], repeats: usize) -> Result<Vec<(String, f64)>> {
        self.check_block(block)?;
        self.upload_block(block, 0);
        let mut kinds: Vec<(String, &crate::plan::Dispatch)> =
            vec![("embed".into(), &self.plan.embed)];
        for l in &self.plan.layers {
            kinds.push(("qkv (LN + matmul)".into(), &l.qkv));
            kinds.push(("attention".into(), &l.attention));
            kinds.push(("attn_out (matmul + residual)".into(), &l.attn_out));
            kinds.push(("mlp_in (LN + matmul + GELU)".into(), &l.mlp_in));
            kinds.push(("mlp_out (matmul + residual)".into(), &l.mlp_out));
        }
        kinds.push(("lm_head, all rows".into(), &self.plan.head_all));
        kinds.push(("lm_head, one row".into(), &self.plan.head_one));
        kinds.push(("sample, all rows".into(), &self.plan.sample));
        let mut totals: Vec<(String, f64)> = Vec::new();
        for (name, d) in kinds {
            let started = std::time::Instant::now();
            for _ in 0..repeats {
                let mut enc = self.ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    d.record(&mut pass, None);
                }
                self.ctx.queue.submit([enc.finish()]);
                self.ctx
                    .device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Backend(e.to_string()))?;
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0 / repeats as f64;
            match totals.iter_mut().find(|(n, _)| *n == name) {
                Some(t) => t.1 += ms,
                None => totals.push((name, ms)),
            }
        }
        self.logits_valid = false;
        self.ctx.check().map_err(Error::from)?;
        Ok(totals)
    }
}
