//! `bench --profile`: one line per dispatch of a denoising step, with what it streams and,
//! natively, its time: GPU time from timestamp queries inside one submission where the device
//! has them (`GpuOptions::timestamps`), else the wall time of the dispatch submitted alone.

use crate::dispatch::DispatchInfo;

/// One dispatch of a step with its time (milliseconds; `None` when not timed).
#[derive(Debug, Clone)]
pub struct DispatchProfile {
    pub info: DispatchInfo,
    pub ms: Option<f64>,
}

/// How [`GpuEngine::profile_step_timed`] timed the dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileTiming {
    /// Timestamps written between the dispatches of one compute pass
    /// (`TIMESTAMP_QUERY_INSIDE_PASSES`): GPU time, the step recorded as the engine records it.
    TimestampsInsidePass,
    /// A compute pass per dispatch with timestamps at its start and end (`TIMESTAMP_QUERY`):
    /// GPU time, all dispatches in one submission.
    TimestampsPerPass,
    /// No timestamp queries on this device: each dispatch submitted alone and waited for
    /// (wall time, launch and submission overhead included).
    RoundTrips,
}

impl ProfileTiming {
    pub fn name(self) -> &'static str {
        match self {
            ProfileTiming::TimestampsInsidePass => "gpu_timestamps_inside_pass",
            ProfileTiming::TimestampsPerPass => "gpu_timestamps_per_pass",
            ProfileTiming::RoundTrips => "round_trips",
        }
    }
}

/// A profiled step: each dispatch's median time over the repeats and, with timestamps, the
/// GPU time from the first dispatch's start to the last one's end.
#[derive(Debug, Clone)]
pub struct StepProfile {
    pub timing: ProfileTiming,
    pub rows: Vec<DispatchProfile>,
    pub span_ms: Option<f64>,
}

/// The timestamp features `bench --profile` requests where the adapter offers them.
pub const TIMESTAMP_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);

#[cfg(not(target_arch = "wasm32"))]
use {
    crate::dispatch::{Call, Dispatch},
    crate::engine::GpuEngine,
    crate::plan::Head,
    bd3lm::{Engine, Error, Result},
};

#[cfg(not(target_arch = "wasm32"))]
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuEngine {
    /// Sets up one first-hitting step at a window of `fill` tokens (the cache is not filled by
    /// commits: its contents do not matter for timing) and returns its call.
    fn prepare_profile(&mut self, fill: usize) -> Result<Call> {
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
        Ok(self.plain_call())
    }

    fn wait(&self) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(drop)
            .map_err(|e| Error::Backend(e.to_string()))
    }

    /// Every dispatch of one first-hitting step at a window of `fill` tokens, each submitted
    /// alone and waited for `repeats` times, so fixed per-submission costs are included.
    pub fn profile_step(&mut self, fill: usize, repeats: usize) -> Result<Vec<DispatchProfile>> {
        let call = self.prepare_profile(fill)?;
        let mut out = Vec::new();
        let list = self
            .plan
            .block_step(Head::One, crate::kernels::sample::RevealRule::Scheduled);
        for d in list {
            let started = std::time::Instant::now();
            for _ in 0..repeats.max(1) {
                let mut enc = self.encoder();
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    d.record(&mut pass, 0, &call);
                }
                self.ctx.queue.submit([enc.finish()]);
                self.wait()?;
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

    /// The dispatches of one step timed on the GPU with timestamp queries, the whole step in
    /// one submission, `repeats` times (medians); without timestamp features on this device,
    /// [`profile_step`](Self::profile_step)'s round trips.
    pub fn profile_step_timed(&mut self, fill: usize, repeats: usize) -> Result<StepProfile> {
        let features = self.ctx.device.features();
        let timing = if features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
            ProfileTiming::TimestampsInsidePass
        } else if features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            ProfileTiming::TimestampsPerPass
        } else {
            return Ok(StepProfile {
                timing: ProfileTiming::RoundTrips,
                rows: self.profile_step(fill, repeats)?,
                span_ms: None,
            });
        };
        let call = self.prepare_profile(fill)?;
        let list = self
            .plan
            .block_step(Head::One, crate::kernels::sample::RevealRule::Scheduled);
        let n = list.len();
        // Inside one pass: a timestamp before each dispatch and one after the last; per pass:
        // a start and an end per dispatch.
        let queries = match timing {
            ProfileTiming::TimestampsInsidePass => n + 1,
            _ => 2 * n,
        };
        if queries > wgpu::QUERY_SET_MAX_QUERIES as usize {
            return Err(Error::InvalidArgument(format!(
                "{n} dispatches need {queries} timestamps, more than a query set holds"
            )));
        }
        let set = self.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: queries as u32,
        });
        let bytes = (queries as u64) * wgpu::QUERY_SIZE as u64;
        let resolved = self.ctx.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.ctx.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let period_ms = self.ctx.queue.get_timestamp_period() as f64 * 1e-6;
        let mut per_dispatch = vec![Vec::new(); n];
        let mut spans = Vec::new();
        for _ in 0..repeats.max(1) {
            let mut enc = self.encoder();
            record_timed(&mut enc, &list, &call, &set, timing);
            enc.resolve_query_set(&set, 0..queries as u32, &resolved, 0);
            enc.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
            self.ctx.queue.submit([enc.finish()]);
            let raw = pollster::block_on(self.ctx.map_read(&staging, bytes))?;
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
            // A timestamp that went backwards (some drivers, across passes) is no figure.
            let ms = |a: u64, b: u64| b.checked_sub(a).map_or(f64::NAN, |d| d as f64 * period_ms);
            for (i, times) in per_dispatch.iter_mut().enumerate() {
                times.push(match timing {
                    ProfileTiming::TimestampsInsidePass => ms(ticks[i], ticks[i + 1]),
                    _ => ms(ticks[2 * i], ticks[2 * i + 1]),
                });
            }
            spans.push(ms(ticks[0], ticks[queries - 1]));
        }
        let rows = list
            .iter()
            .zip(per_dispatch)
            .map(|(d, times)| DispatchProfile {
                info: d.info(&call),
                ms: median(times),
            })
            .collect();
        resolved.destroy();
        staging.destroy();
        self.reset();
        self.ctx.check().map_err(Error::from)?;
        Ok(StepProfile {
            timing,
            rows,
            span_ms: median(spans),
        })
    }
}

/// Records `list` with timestamps into `set` as `timing` says.
#[cfg(not(target_arch = "wasm32"))]
fn record_timed(
    enc: &mut wgpu::CommandEncoder,
    list: &[&Dispatch],
    call: &Call,
    set: &wgpu::QuerySet,
    timing: ProfileTiming,
) {
    if timing == ProfileTiming::TimestampsInsidePass {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for (i, d) in list.iter().enumerate() {
            pass.write_timestamp(set, i as u32);
            d.record(&mut pass, 0, call);
        }
        pass.write_timestamp(set, list.len() as u32);
        return;
    }
    for (i, d) in list.iter().enumerate() {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        d.record(&mut pass, 0, call);
    }
}
