//! `GpuEngine`: the BD3-LM forward with a GPU-resident KV cache and GPU sampling, behind the
//! core's [`bd3lm::Engine`] trait. A first-hitting or parallel block runs as one submission
//! with one readback of its step records (`block.rs`); the per-step path below serves the
//! posterior sampler, the probes and the conformance checks.
//!
//! The store pass of a finished block is folded into the next model call: that call runs
//! `[clean block ; next block]` (2B rows, block-causal), writing the clean block's K/V on the
//! way, so it costs no model call of its own. The ring cache has one block more than the
//! context, so this is exact even when the window slides. With the fold off
//! (`GpuOptions::separate_store`), or when the next call cannot take it, the store pass is
//! recorded on its own and submitted together with the next submission.

use crate::context::{BufferScope, GpuContext};
use crate::dispatch::{Call, Dispatch, DispatchInfo};
use crate::error::GpuError;
use crate::kernels::sample::entropy_offset;
use crate::model::GpuModel;
use crate::plan::{mode, ring_slots, Head, Plan, Step};
use bd3lm::engine::{BlockRequest, StepRecord};
use bd3lm::forward::Activations;
use bd3lm::{Config, DrawRequest, Engine, EngineCounters, Error, Result, RowDraw, Rows};

mod probes;

/// Rows with non-finite probabilities (the t = 0 quirk) are skipped by the GPU race probe:
/// the sampling kernel handles that case as a mode of its own, replayed in the traces.
pub use bd3lm::engine::SKIPPED_ROW;

/// `Step.reveal_row` of a step that reveals nothing by schedule.
pub(crate) const NO_ROW: u32 = u32::MAX;

/// A committed block whose store pass waits to be folded into the next call: the window it
/// was committed at (its tokens are in `Plan::commit_tokens`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingStore {
    pub cached: usize,
    pub ring_start: usize,
}

/// Device work and waits, counted where they happen.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub submits: u64,
    pub host_waits: u64,
    pub blocks: u64,
    pub readback_last_block: usize,
}

pub struct GpuEngine {
    pub(crate) ctx: GpuContext,
    pub(crate) model: GpuModel,
    pub(crate) plan: Plan,
    pub(crate) cached: usize,
    pub(crate) ring_start: usize,
    pub(crate) forwards: u64,
    /// Rows whose logits in the logits buffer belong to the current block (posterior reuse).
    pub(crate) logits_valid: bool,
    last_readback: usize,
    logits_staging: Option<wgpu::Buffer>,
    /// A recorded store pass not yet submitted: it goes with the next submission.
    pub(crate) pending_commit: Option<wgpu::CommandBuffer>,
    /// A store pass not recorded yet: folded into the next model call.
    pub(crate) pending_store: Option<PendingStore>,
    /// Whether store passes are folded into the next call.
    fold: bool,
    pub(crate) tally: Tally,
    /// The head of the last denoising forward (for the structural counters).
    pub(crate) last_head: Head,
    /// Record and count, but submit nothing and read back zeros (`bench --counters-only`).
    pub(crate) dry_run: bool,
    /// The plan's buffers (KV cache, activations, staging): destroyed with the engine.
    buffers: BufferScope,
}

impl GpuEngine {
    pub async fn new(ctx: &GpuContext, model: GpuModel) -> Result<GpuEngine, GpuError> {
        let (ctx, buffers) = ctx.scoped();
        let ctx = &ctx;
        let plan = Plan::new(ctx, &model).await?;
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
            pending_commit: None,
            pending_store: None,
            fold: !ctx.separate_store,
            tally: Tally::default(),
            last_head: Head::One,
            dry_run: false,
            buffers,
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

    /// Folds each store pass into the next model call (the default), or runs it as a call of
    /// its own (`--no-fold`; the same tokens, one more model call per block).
    pub fn set_store_fold(&mut self, fold: bool) {
        if !fold {
            self.store_separately();
        }
        self.fold = fold;
    }

    pub fn store_fold(&self) -> bool {
        self.fold
    }

    /// GPU memory held: weights, KV cache and scratch buffers.
    pub fn gpu_bytes(&self) -> u64 {
        self.model.weight_bytes() + self.plan.scratch_bytes
    }

    /// Pipelines compiled on this engine's device (shared by every engine on the context).
    pub fn pipeline_count(&self) -> usize {
        self.ctx.pipelines.len()
    }

    /// What each dispatch of one denoising step streams at the current window (`head`: the
    /// LM head over every row or over the draw row only).
    pub fn step_infos(&self, head_all_rows: bool) -> Vec<DispatchInfo> {
        let head = if head_all_rows { Head::All } else { Head::One };
        self.plan.step_infos(head, &self.plain_call())
    }

    pub(crate) fn check_block(&self, block: &[u32]) -> Result<()> {
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

    /// A step slot for a denoising call at the current window, no store pass folded in.
    pub(crate) fn step(&self) -> Step {
        let b = self.plan.block as u32;
        Step {
            cached: self.cached as u32,
            ring_start: self.ring_start as u32,
            n_ctx: self.model.config.model_length as u32,
            reveal_row: NO_ROW,
            kv_split: self.plan.attention.kv_split(self.cached),
            ring: ring_slots(&self.model.config) as u32,
            rows: b,
            ..Step::default()
        }
    }

    /// A denoising call at the current window, no store pass folded in.
    pub(crate) fn plain_call(&self) -> Call {
        Call::denoise(self.plan.block, self.cached)
    }

    /// The next denoising call's slot and shape: the pending store pass folded in, if any
    /// (the caller records it, so it is no longer pending).
    pub(crate) fn take_call(&mut self) -> (Step, Call) {
        let b = self.plan.block;
        let step = self.step();
        match self.pending_store.take() {
            Some(p) => (
                Step {
                    rows: 2 * b as u32,
                    clean_rows: b as u32,
                    clean_cached: p.cached as u32,
                    clean_ring_start: p.ring_start as u32,
                    clean_kv_split: self.plan.attention.kv_split(p.cached),
                    ..step
                },
                Call::fold(b, p.cached, self.cached),
            ),
            None => (step, self.plain_call()),
        }
    }

    /// Records the pending store pass as a call of its own (the fold is off, or the next
    /// call cannot take it), in slot B; it is submitted with the next submission.
    pub(crate) fn store_separately(&mut self) {
        let Some(p) = self.pending_store.take() else {
            return;
        };
        self.flush_commit();
        let b = self.plan.block;
        let step = Step {
            cached: p.cached as u32,
            ring_start: p.ring_start as u32,
            rows: b as u32,
            clean_rows: b as u32,
            clean_cached: p.cached as u32,
            clean_ring_start: p.ring_start as u32,
            clean_kv_split: self.plan.attention.kv_split(p.cached),
            ..self.step()
        };
        let slot = b as u32;
        self.write_step(slot, &step);
        let mut encoder = self.encoder();
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            let call = Call::store(b, p.cached);
            for d in self.plan.forward(true, Head::None) {
                d.record(&mut pass, slot, &call);
            }
        }
        self.pending_commit = Some(encoder.finish());
        self.forwards += 1;
    }

    pub(crate) fn write_step(&self, slot: u32, step: &Step) {
        self.plan.steps.write(&self.ctx.queue, slot, step);
    }

    pub(crate) fn upload_block(&self, block: &[u32]) {
        self.ctx
            .queue
            .write_buffer(&self.plan.tokens, 0, bytemuck::cast_slice(block));
    }

    pub(crate) fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx.device.create_command_encoder(&Default::default())
    }

    /// Records `dispatches` for `call`, reading step slot `slot`.
    pub(crate) fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        list: &[&Dispatch],
        slot: u32,
        call: &Call,
    ) {
        for d in list {
            d.record(pass, slot, call);
        }
    }

    /// Submits `work`, preceded by a pending store pass (one submission either way).
    pub(crate) fn submit(&mut self, work: wgpu::CommandBuffer) {
        self.tally.submits += 1;
        if self.dry_run {
            return;
        }
        let pending = self.pending_commit.take();
        self.ctx.queue.submit(pending.into_iter().chain([work]));
    }

    /// Submits a recorded store pass on its own (before anything that must not ride with it).
    fn flush_commit(&mut self) {
        if let Some(cb) = self.pending_commit.take() {
            self.tally.submits += 1;
            if !self.dry_run {
                self.ctx.queue.submit([cb]);
            }
        }
    }

    /// Waits for the device and reads `size` bytes of `staging` (zeros in a dry run).
    pub(crate) async fn read(&mut self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        self.tally.host_waits += 1;
        if self.dry_run {
            return Ok(vec![0; size as usize]);
        }
        self.ctx.map_read(staging, size).await.map_err(Error::from)
    }

    /// Records the sampler on `rows` rows from `row_offset`, reads back (id, value bits) pairs
    /// and, with `entropy`, each row's entropy.
    async fn run_sample(
        &mut self,
        mut encoder: wgpu::CommandEncoder,
        head: Head,
        rows: usize,
        row_offset: usize,
        entropy: bool,
    ) -> Result<Vec<(u32, u32, f32)>> {
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for d in self.plan.sampler(head) {
                let (tiles, _, _) = d.workgroups(&Call::denoise(rows, 0));
                d.record_grid(&mut pass, 0, (tiles, rows as u32, 1));
            }
        }
        let pairs = (rows * 8) as u64;
        let staging = self.plan.staging.clone();
        encoder.copy_buffer_to_buffer(
            &self.plan.draws,
            (row_offset * 8) as u64,
            &staging,
            0,
            pairs,
        );
        let mut bytes = pairs;
        if entropy {
            let at = ((entropy_offset(self.plan.block) + row_offset) * 4) as u64;
            encoder.copy_buffer_to_buffer(&self.plan.draws, at, &staging, pairs, rows as u64 * 4);
            bytes += rows as u64 * 4;
        }
        self.submit(encoder.finish());
        let data = self.read(&staging, bytes).await?;
        self.last_readback = data.len();
        let words: &[u32] = bytemuck::cast_slice(&data);
        let (pair_words, entropies) = words.split_at((rows * 2).min(words.len()));
        Ok(pair_words
            .chunks_exact(2)
            .enumerate()
            .map(|(i, p)| {
                let h = entropies.get(i).map_or(f32::NAN, |&w| f32::from_bits(w));
                (p[0], p[1], h)
            })
            .collect())
    }

    /// Writes slot 0 for a probe or a per-step draw.
    fn write_sample_step(&self, draw_row: usize, mode: u32, seed: u64, top_p: f64, mask_prob: f32) {
        let s = Step {
            draw_row: draw_row as u32,
            mode,
            top_p: top_p as f32,
            mask_prob,
            ..self.step()
        }
        .seed(seed);
        self.write_step(0, &s);
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

    /// Writes probe rows into the logits buffer and marks every row masked.
    fn upload_probe(&self, rows: &[f32]) {
        self.ctx
            .queue
            .write_buffer(&self.plan.logits, 0, bytemuck::cast_slice(rows));
        let masks = vec![self.model.config.mask_id(); self.plan.block];
        self.upload_block(&masks);
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytemuck::cast_slice(bytes).to_vec()
}

impl Engine for GpuEngine {
    fn config(&self) -> &Config {
        &self.model.config
    }

    fn reset(&mut self) {
        self.cached = 0;
        self.ring_start = 0;
        self.logits_valid = false;
        // The cache is emptied: a store pass still waiting would only fill it again.
        self.pending_commit = None;
        self.pending_store = None;
    }

    fn cached_tokens(&self) -> usize {
        self.cached
    }

    fn forward_count(&self) -> u64 {
        self.forwards
    }

    async fn commit(&mut self, block: &[u32]) -> Result<()> {
        self.check_block(block)?;
        // The previous block's store pass reads the commit tokens this one overwrites: it goes
        // first, on its own.
        self.store_separately();
        self.flush_commit();
        self.ctx
            .queue
            .write_buffer(&self.plan.commit_tokens, 0, bytemuck::cast_slice(block));
        self.pending_store = Some(PendingStore {
            cached: self.cached,
            ring_start: self.ring_start,
        });
        if !self.fold {
            self.store_separately();
        }
        self.logits_valid = false;
        let (b, n) = (self.plan.block, self.model.config.model_length);
        self.cached += b;
        if self.cached >= n {
            self.ring_start = (self.ring_start + b) % ring_slots(&self.model.config);
            self.cached -= b;
        }
        Ok(())
    }

    async fn draw(&mut self, req: &DrawRequest<'_>) -> Result<Vec<RowDraw>> {
        self.check_block(req.block)?;
        let (rows, row_offset, head) = match req.rows {
            Rows::All => (self.plan.block, 0, Head::All),
            Rows::One(r) if r < self.plan.block => (1, r, Head::One),
            Rows::One(r) => {
                return Err(Error::InvalidArgument(format!(
                    "row {r} is outside the block"
                )))
            }
        };
        let reuse = req.reuse && self.logits_valid && head == Head::All;
        let mut encoder = self.encoder();
        let mode = match req.mask_prob {
            None => mode::FIRST_HITTING,
            Some(mp) if mp == f32::NEG_INFINITY => mode::POSTERIOR_T0_QUIRK,
            Some(_) => mode::POSTERIOR,
        };
        let (mut step, call) = if reuse {
            (self.step(), self.plain_call())
        } else {
            self.take_call()
        };
        step = Step {
            draw_row: row_offset as u32,
            mode,
            top_p: req.nucleus_p as f32,
            mask_prob: req.mask_prob.unwrap_or(0.0),
            ..step
        }
        .seed(req.uniform_seed);
        self.write_step(0, &step);
        if !reuse {
            self.upload_block(req.block);
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record(&mut pass, &self.plan.forward(false, head), 0, &call);
            self.forwards += 1;
            self.last_head = head;
        }
        self.logits_valid = head == Head::All;
        // Every row drawn from p_x0 (the parallel samplers' per-step path, replays): the
        // host selects, so the entropies come back too.
        let entropy = mode == mode::FIRST_HITTING && head == Head::All;
        let results = self
            .run_sample(encoder, head, rows, row_offset, entropy)
            .await?;
        Ok(results
            .into_iter()
            .enumerate()
            .map(|(i, (token, conf, entropy))| RowDraw {
                row: row_offset + i,
                token,
                confidence: f32::from_bits(conf),
                entropy,
            })
            .collect())
    }

    fn runs_blocks(&self) -> bool {
        true
    }

    async fn denoise_block(&mut self, req: &BlockRequest<'_>) -> Result<Vec<StepRecord>> {
        self.run_block(req).await
    }

    fn describe(&self) -> String {
        format!("gpu: {}", self.ctx.adapter_summary())
    }

    fn counters(&self) -> EngineCounters {
        let infos = self.plan.step_infos(self.last_head, &self.plain_call());
        EngineCounters {
            dispatches_per_forward: infos.len(),
            readback_bytes_last_draw: self.last_readback,
            device_objects_created: self.ctx.objects_created(),
            pipelines_compiled: self.ctx.pipelines.len() as u64,
            buffers_held: (self.buffers.len() + self.model.buffer_count()) as u64,
            submits: self.tally.submits,
            host_waits: self.tally.host_waits,
            blocks_denoised: self.tally.blocks,
            readback_bytes_last_block: self.tally.readback_last_block,
            workgroups_min: infos
                .iter()
                .filter(|i| i.bounded)
                .map(|i| i.workgroups)
                .min()
                .unwrap_or(0),
            weight_bytes_per_forward: infos.iter().map(|i| i.weight_bytes).sum(),
        }
    }
}
