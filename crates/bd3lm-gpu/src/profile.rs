//! `bench --profile`: one line per dispatch of a denoising step, with what it streams and,
//! natively, its wall time when submitted alone.

use crate::dispatch::DispatchInfo;

/// One dispatch of a step with its wall time (milliseconds; `None` when not timed).
#[derive(Debug, Clone)]
pub struct DispatchProfile {
    pub info: DispatchInfo,
    pub ms: Option<f64>,
}

#[cfg(not(target_arch = "wasm32"))]
use {
    crate::engine::GpuEngine,
    crate::plan::Head,
    bd3lm::{Engine, Error, Result},
};

#[cfg(not(target_arch = "wasm32"))]
impl GpuEngine {
    /// Every dispatch of one first-hitting step at a window of `fill` tokens (the cache is not
    /// filled by commits: its contents do not matter for timing), each submitted alone and
    /// waited for `repeats` times, so fixed per-submission costs are included.
    pub fn profile_step(&mut self, fill: usize, repeats: usize) -> Result<Vec<DispatchProfile>> {
        let cfg = self.model.config.clone();
        if fill + cfg.block_size > cfg.model_length {
            return Err(Error::InvalidArgument(format!(
                "fill {fill} leaves no room for a block in a context of {}",
                cfg.model_length
            )));
        }
        self.reset();
        self.cached = fill;
        self.upload_block(&vec![cfg.mask_id(); cfg.block_size]);
        let step = crate::dispatch::Step {
            reveal_row: 0,
            top_p: 0.9,
            ..self.step()
        };
        self.write_step(0, &step);
        self.ctx
            .queue
            .write_buffer(&self.plan.reveal_log, 0, bytemuck::bytes_of(&0u32));
        let mut out = Vec::new();
        let call = self.plain_call();
        for d in self
            .plan
            .block_step(Head::One, crate::kernels::sample::RevealRule::Scheduled)
        {
            let started = std::time::Instant::now();
            for _ in 0..repeats.max(1) {
                let mut enc = self.encoder();
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    d.record(&mut pass, 0, &call);
                }
                self.ctx.queue.submit([enc.finish()]);
                self.ctx
                    .device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Backend(e.to_string()))?;
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0 / repeats.max(1) as f64;
            out.push(DispatchProfile {
                info: d.info(&call),
                ms: Some(ms),
            });
        }
        self.reset();
        self.ctx.check().map_err(Error::from)?;
        Ok(out)
    }
}
