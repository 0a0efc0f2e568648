//! The per-block loop: every step of a first-hitting or parallel block recorded and submitted
//! step by step, with one host wait per block.
//!
//! What does not depend on the model is uploaded once per block: the block's tokens, and for
//! each step a slot of the step table (its seed, its draw row, the row it reveals or the
//! bound of its rule). Each step records forward, LM head, sampler and the reveal stage; the
//! reveal stage writes the drawn ids into the device-side block that the next step's
//! embedding reads and appends (step, row, id, confidence) to the block's reveal log. The
//! first step also stores the previous block's K/V when its store pass is folded in.
//!
//! A parallel block (confidence threshold, entropy bound) records as many steps as the block
//! has masked rows, since each reveals at least one; the reveal stage selects the rows on the
//! device and, once the block is complete, empties the indirect dispatch arguments that the
//! later steps' forward, LM head and sampler are recorded with, so they launch nothing. The
//! host waits once, at the end, and reads back the log (and, when every row is drawn, the
//! draws table). Each step is submitted as soon as it is recorded (or every
//! `steps_per_submit` steps), so the GPU never waits for the host to record the whole block;
//! still a single wait.

use crate::dispatch::{Call, DispatchInfo, Step, INDIRECT_BYTES};
use crate::engine::{GpuEngine, PendingStore, NO_ROW};
use crate::kernels::sample::{reveal_log_words, RevealRule as DeviceRule};
use crate::plan::{mode, Head};
use bd3lm::engine::{check_block_request, BlockRequest, BlockStep, RevealRule, StepRecord};
use bd3lm::{Engine, Error, Result, RowDraw};

/// The structural counters of one block, from recording it (see [`GpuEngine::count_block`]).
#[derive(Debug, Clone)]
pub struct BlockCount {
    pub fill: usize,
    pub steps: usize,
    pub submits: u64,
    pub host_waits: u64,
    pub readback_bytes: usize,
    /// Dispatches of one step (forward, LM head, sampler, reveal).
    pub dispatches_per_forward: usize,
    /// Fewest workgroups of a dispatch that streams weights or the cache, over a plain step
    /// and the first step with the previous block's store pass folded in.
    pub workgroups_min: u32,
    pub weight_bytes_per_forward: u64,
    /// One plain step's dispatches as recorded.
    pub dispatches: Vec<DispatchInfo>,
    /// The first step's, with the previous block's store pass folded in (empty at fill 0).
    pub fold_dispatches: Vec<DispatchInfo>,
}

/// The device's reveal stage and bound for a core rule.
fn device_rule(rule: RevealRule) -> Result<(DeviceRule, f32)> {
    match rule {
        RevealRule::Scheduled => Ok((DeviceRule::Scheduled, 0.0)),
        RevealRule::Confidence { threshold } => Ok((DeviceRule::Confidence, threshold as f32)),
        RevealRule::Entropy { gamma } => Ok((DeviceRule::Entropy, gamma as f32)),
        other => Err(Error::InvalidArgument(format!(
            "the WGSL engine has no reveal stage for {other:?}"
        ))),
    }
}

impl GpuEngine {
    pub(crate) async fn run_block(&mut self, req: &BlockRequest<'_>) -> Result<Vec<StepRecord>> {
        self.check_block(req.block)?;
        check_block_request(&self.model.config, req)?;
        let (rule, bound) = device_rule(req.rule)?;
        let steps = req.steps;
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let b = self.plan.block;
        let parallel = rule.parallel();
        let head = if req.draw_all_rows || parallel {
            Head::All
        } else {
            Head::One
        };
        self.upload_block(req.block);
        self.ctx
            .queue
            .write_buffer(&self.plan.reveal_log, 0, bytemuck::bytes_of(&0u32));
        let (first, first_call) = self.take_call();
        let plain = self.plain_call();
        for (k, s) in steps.iter().enumerate() {
            let base = if k == 0 { first } else { self.step() };
            let slot = Step {
                draw_row: if head == Head::One { s.row as u32 } else { 0 },
                index: k as u32,
                reveal_row: if parallel { NO_ROW } else { s.row as u32 },
                mode: mode::FIRST_HITTING,
                top_p: req.nucleus_p as f32,
                bound,
                ..base
            }
            .seed(s.seed);
            self.write_step(k as u32, &slot);
        }
        if parallel {
            // The later steps' grids, until the reveal stage empties them.
            let args: Vec<u32> = self
                .plan
                .indirect_list(head)
                .iter()
                .flat_map(|d| {
                    let (x, y, z) = d.workgroups(&plain);
                    [x, y, z]
                })
                .collect();
            self.ctx
                .queue
                .write_buffer(&self.plan.next_args, 0, bytemuck::cast_slice(&args));
        }
        let log_bytes = (reveal_log_words(b) * 4) as u64;
        let draws_bytes = if head == Head::All && req.draw_all_rows {
            (steps.len() * b * 8) as u64
        } else {
            0
        };
        let staging = self.plan.staging.clone();
        // Step by step by default: each submission goes to the GPU as soon as it is
        // recorded, so the GPU runs step k while the host records step k + 1 and never waits
        // for a whole block to be recorded. Still one host wait, at the end.
        let per_submit = self.ctx.steps_per_submit.unwrap_or(1).max(1);
        let step_list = self.plan.block_step(head, rule);
        let indirect = self.plan.indirect_list(head);
        let reveal = self.plan.reveal(rule);
        let chunks = steps.len().div_ceil(per_submit);
        for c in 0..chunks {
            let mut encoder = self.encoder();
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for k in c * per_submit..((c + 1) * per_submit).min(steps.len()) {
                    let slot = k as u32;
                    if k == 0 {
                        self.record(&mut pass, &step_list, slot, &first_call);
                    } else if !parallel {
                        self.record(&mut pass, &step_list, slot, &plain);
                    } else {
                        for (i, d) in indirect.iter().enumerate() {
                            // The grids of the later steps are `plain`'s until emptied.
                            if !d.runs(&plain) {
                                continue;
                            }
                            d.record_indirect(
                                &mut pass,
                                slot,
                                &self.plan.next_args,
                                i as u64 * INDIRECT_BYTES,
                            );
                        }
                        reveal.record(&mut pass, slot, &plain);
                    }
                }
            }
            if c + 1 == chunks {
                encoder.copy_buffer_to_buffer(&self.plan.reveal_log, 0, &staging, 0, log_bytes);
                if draws_bytes > 0 {
                    encoder.copy_buffer_to_buffer(
                        &self.plan.draws,
                        0,
                        &staging,
                        log_bytes,
                        draws_bytes,
                    );
                }
            }
            // Inline rather than `self.submit`: the step lists still borrow the plan.
            self.tally.submits += 1;
            if !self.dry_run {
                let pending = self.pending_commit.take();
                self.ctx
                    .queue
                    .submit(pending.into_iter().chain([encoder.finish()]));
            }
        }
        drop((step_list, indirect));
        self.tally.blocks += 1;
        self.logits_valid = false;
        self.last_head = head;
        let bytes = self.read(&staging, log_bytes + draws_bytes).await?;
        self.tally.readback_last_block = bytes.len();
        if self.dry_run {
            self.forwards += steps.len() as u64;
            return Ok(Vec::new());
        }
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        let records = parse_records(words, steps.len(), b, parallel, req.draw_all_rows)?;
        // A parallel block's steps after it was complete launched nothing: not model calls.
        self.forwards += records.len() as u64;
        Ok(records)
    }

    /// The structural counters of one first-hitting block at a window of `fill` tokens,
    /// measured by recording the block exactly as a real one is recorded (its first step with
    /// the previous block's store pass folded in, when there is one and the fold is on), but
    /// submitting nothing (the cache contents do not matter for counting, so no commits fill
    /// it).
    pub async fn count_block(&mut self, fill: usize, all_rows: bool) -> Result<BlockCount> {
        let cfg = self.model.config.clone();
        let b = cfg.block_size;
        if fill + b > cfg.model_length {
            return Err(Error::InvalidArgument(format!(
                "fill {fill} leaves no room for a block of {b} in a context of {}",
                cfg.model_length
            )));
        }
        self.reset();
        self.cached = fill;
        let folded = self.store_fold() && fill >= b;
        if folded {
            self.pending_store = Some(PendingStore {
                cached: fill - b,
                ring_start: 0,
            });
        }
        let before = self.tally;
        let block = vec![cfg.mask_id(); b];
        let steps: Vec<BlockStep> = (0..b)
            .map(|row| BlockStep {
                seed: row as u64,
                row,
            })
            .collect();
        self.dry_run = true;
        let forwards = self.forwards;
        let result = self
            .run_block(&BlockRequest {
                block: &block,
                steps: &steps,
                rule: RevealRule::Scheduled,
                draw_all_rows: all_rows,
                nucleus_p: 0.9,
            })
            .await;
        self.dry_run = false;
        self.forwards = forwards;
        let head = if all_rows { Head::All } else { Head::One };
        let dispatches = self.plan.step_infos(head, &Call::denoise(b, fill));
        let fold_dispatches = if folded {
            self.plan.step_infos(head, &Call::fold(b, fill - b, fill))
        } else {
            Vec::new()
        };
        let count = BlockCount {
            fill,
            steps: b,
            submits: self.tally.submits - before.submits,
            host_waits: self.tally.host_waits - before.host_waits,
            readback_bytes: self.tally.readback_last_block,
            dispatches_per_forward: dispatches.len(),
            workgroups_min: dispatches
                .iter()
                .chain(&fold_dispatches)
                .filter(|d| d.bounded)
                .map(|d| d.workgroups)
                .min()
                .unwrap_or(0),
            weight_bytes_per_forward: dispatches.iter().map(|d| d.weight_bytes).sum(),
            dispatches,
            fold_dispatches,
        };
        self.tally = before;
        self.reset();
        result.map(|_| count)
    }
}

/// Step records from the reveal log (and the draws table when every row was drawn). A
/// scheduled block reveals one row per step; a parallel one at least one per step it used,
/// and its steps after the block was complete leave no record.
fn parse_records(
    words: &[u32],
    steps: usize,
    block: usize,
    parallel: bool,
    all_rows: bool,
) -> Result<Vec<StepRecord>> {
    let count = words.first().copied().unwrap_or(0) as usize;
    if (!parallel && count != steps) || count > block || 1 + 4 * count > words.len() {
        return Err(Error::Backend(format!(
            "the device revealed {count} rows for {steps} steps"
        )));
    }
    let mut records: Vec<StepRecord> = (0..steps)
        .map(|_| StepRecord {
            reveals: Vec::new(),
            draws: Vec::new(),
        })
        .collect();
    for e in words[1..1 + 4 * count].chunks_exact(4) {
        let (k, row) = (e[0] as usize, e[1] as usize);
        if k >= steps || row >= block {
            return Err(Error::Backend(format!(
                "corrupt reveal log entry: step {k}, row {row}"
            )));
        }
        records[k].reveals.push(RowDraw {
            row,
            token: e[2],
            confidence: f32::from_bits(e[3]),
            // The reveal stages read back ids and confidences only.
            entropy: f32::NAN,
        });
    }
    let used = records
        .iter()
        .rposition(|r| !r.reveals.is_empty())
        .map_or(0, |k| k + 1);
    if records[..used].iter().any(|r| r.reveals.is_empty()) {
        return Err(Error::Backend(
            "a step of a parallel block revealed nothing".into(),
        ));
    }
    records.truncate(used);
    let draws_at = reveal_log_words(block);
    for (k, r) in records.iter_mut().enumerate() {
        r.reveals.sort_by_key(|d| d.row);
        r.draws = if all_rows {
            let base = draws_at + k * block * 2;
            words[base..base + block * 2]
                .chunks_exact(2)
                .enumerate()
                .map(|(row, p)| RowDraw {
                    row,
                    token: p[0],
                    confidence: f32::from_bits(p[1]),
                    entropy: f32::NAN,
                })
                .collect()
        } else {
            r.reveals.clone()
        };
    }
    Ok(records)
}
