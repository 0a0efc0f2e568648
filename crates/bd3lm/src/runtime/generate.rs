//! The semi-autoregressive outer loop (spec §9.1) as a step-by-step state machine: each call of
//! [`Generator::next`] does one bounded piece of work (one denoising step, one commit pass or
//! one block start) and reports it as an [`Event`], so a terminal can stream and a web page
//! can repaint and stay responsive between steps.
//!
//! First hitting runs a block's steps as one [`Engine::denoise_block`] call: its positions and
//! seeds do not depend on the model, so they are scheduled when the block's first step comes,
//! and the steps' records are then reported one event at a time (a GPU submits the whole block
//! at once and reads back only the records; the page replays them at its own pace). The
//! parallel samplers (confidence threshold, entropy bound) run the same way: their seeds do
//! not depend on the model either, and the engine selects each step's rows from its draws
//! ([`RevealRule`]; a GPU on the device), so a block is again one call. The posterior sampler
//! reuses `p_x0` depending on the drawn tokens, so it waits for each step.

use crate::engine::{
    self, BlockRequest, BlockStep, DrawRequest, Engine, RevealRule, Rows, StepRecord,
};
use crate::error::{Error, Result};
use crate::rng::{self, SplitMix64};
use crate::sampler;

mod options;
pub use options::{
    Event, FinishReason, Replay, Reveal, SamplerKind, SamplingOptions,
    DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_ENTROPY_GAMMA,
};

#[derive(Debug, Clone)]
struct Denoising {
    block: usize,
    start: usize,
    tokens: Vec<u32>,
    step: usize,
    /// Whether the previous step changed the block (the posterior sampler reuses p_x0 if not).
    changed: bool,
    /// Steps already run by the engine and not yet reported (first hitting), each with the
    /// position generator's state after its draw.
    pending: std::collections::VecDeque<(StepRecord, SplitMix64)>,
}

#[derive(Debug, Clone)]
enum Phase {
    Start,
    NextBlock,
    Denoise(Denoising),
    Commit(Denoising),
    Done(FinishReason),
}

pub struct Generator {
    opts: SamplingOptions,
    block_size: usize,
    mask: u32,
    eos: u32,
    total_len: usize,
    prompt_len: usize,
    sequence: Vec<u32>,
    /// Tokens committed to the KV cache so far (absolute count; the next block starts here).
    committed_len: usize,
    phase: Phase,
    global_step: u64,
    positions: SplitMix64,
    replay: Option<Replay>,
    draw_all_rows: bool,
    execution: Execution,
}

/// How first hitting and the parallel samplers run a block's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// A block at a time where the engine gains from it ([`Engine::runs_blocks`]), else a
    /// step at a time.
    #[default]
    Auto,
    /// One [`Engine::draw`] per step.
    PerStep,
    /// One [`Engine::denoise_block`] per block.
    PerBlock,
}

/// The posterior grid point `i` of `linspace(1, 0, T)` in f32, bit-exact with torch's CPU
/// kernel (which evaluates `start + step * i` as one fused multiply-add; checked against the
/// fixture grids for T = 8 and T = 16).
pub fn linspace_point(i: usize, steps: usize) -> f32 {
    if steps == 1 {
        return 1.0;
    }
    let step = (0.0f32 - 1.0f32) / (steps - 1) as f32;
    if i < steps / 2 {
        step.mul_add(i as f32, 1.0)
    } else {
        0.0f32 - step * (steps - i - 1) as f32
    }
}

impl Generator {
    /// `prompt` must start with BOS; `total_len` is the final sequence length (prompt
    /// included), rounded up to whole blocks.
    pub fn new(
        block_size: usize,
        model_length: usize,
        mask: u32,
        eos: u32,
        prompt: Vec<u32>,
        total_len: usize,
        opts: SamplingOptions,
    ) -> Result<Generator> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument(
                "the prompt must contain at least the BOS token".into(),
            ));
        }
        // The first generated token must share the window with the whole prompt.
        let max_prompt = model_length - 1;
        if prompt.len() > max_prompt {
            return Err(Error::PromptTooLong {
                tokens: prompt.len(),
                max: max_prompt,
            });
        }
        match opts.sampler {
            SamplerKind::FirstHitting { max_steps } if max_steps < block_size => {
                return Err(Error::InvalidArgument(format!(
                    "first-hitting reveals one token per step: steps ({max_steps}) must be at least the block size ({block_size})"
                )))
            }
            SamplerKind::Posterior { steps: 0 } => {
                return Err(Error::InvalidArgument("the posterior sampler needs at least 1 step per block".into()))
            }
            SamplerKind::Confidence { threshold } if !(threshold > 0.0 && threshold <= 1.0) => {
                return Err(Error::InvalidArgument(format!(
                    "the confidence threshold must be in (0, 1], got {threshold}"
                )))
            }
            SamplerKind::Entropy { gamma } if !(gamma >= 0.0 && gamma.is_finite()) => {
                return Err(Error::InvalidArgument(format!(
                    "the entropy bound gamma must be a finite number >= 0, got {gamma}"
                )))
            }
            _ => {}
        }
        if !(opts.nucleus_p > 0.0 && opts.nucleus_p <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "top-p must be in (0, 1], got {}",
                opts.nucleus_p
            )));
        }
        let total_len = total_len.max(prompt.len() + 1).div_ceil(block_size) * block_size;
        Ok(Generator {
            positions: SplitMix64::new(opts.seed ^ 0x5851_F42D_4C95_7F2D),
            opts,
            block_size,
            mask,
            eos,
            total_len,
            prompt_len: prompt.len(),
            sequence: prompt,
            committed_len: 0,
            phase: Phase::Start,
            global_step: 0,
            replay: None,
            draw_all_rows: false,
            execution: Execution::Auto,
        })
    }

    /// Replays recorded seeds and positions, drawing every row (as the reference does).
    pub fn with_replay(mut self, replay: Replay) -> Generator {
        self.replay = Some(replay);
        self.draw_all_rows = true;
        self
    }

    /// Draw every row of the block at each step (the reference's behaviour; costs more).
    pub fn draw_all_rows(mut self, all: bool) -> Generator {
        self.draw_all_rows = all;
        self
    }

    /// How first hitting runs a block's steps (the same tokens either way; tests compare).
    pub fn execution(mut self, execution: Execution) -> Generator {
        self.execution = execution;
        self
    }

    /// Tokens so far: prompt, committed blocks and the block being denoised (MASK where masked).
    pub fn tokens(&self) -> Vec<u32> {
        let mut out = self.sequence.clone();
        if let Phase::Denoise(d) | Phase::Commit(d) = &self.phase {
            out.truncate(d.start);
            out.extend(&d.tokens);
        }
        out
    }

    /// Committed tokens (prompt included).
    pub fn committed(&self) -> &[u32] {
        &self.sequence
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    pub fn total_len(&self) -> usize {
        self.total_len
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    /// Rewrites the block being denoised (conformance: resynchronise after a divergence).
    pub fn force_block(&mut self, tokens: &[u32]) {
        if let Phase::Denoise(d) | Phase::Commit(d) = &mut self.phase {
            if tokens.len() == d.tokens.len() {
                d.tokens.copy_from_slice(tokens);
                // Steps the engine ran from the old tokens no longer apply.
                d.pending.clear();
                if !d.tokens.contains(&self.mask) {
                    self.phase = Phase::Commit(d.clone());
                }
            }
        }
    }

    /// Does the next piece of work and reports it.
    pub async fn next<E: Engine>(&mut self, engine: &mut E) -> Result<Event> {
        let b = self.block_size;
        match std::mem::replace(&mut self.phase, Phase::NextBlock) {
            Phase::Start => {
                engine.reset();
                self.sequence.truncate(self.prompt_len);
                self.committed_len = 0;
                self.phase = Phase::NextBlock;
                Box::pin(self.next(engine)).await
            }
            Phase::Done(reason) => {
                self.phase = Phase::Done(reason);
                Ok(Event::Finished { reason })
            }
            Phase::NextBlock => {
                let start = self.committed_len;
                let block = start / b;
                if start >= self.total_len {
                    self.phase = Phase::Done(FinishReason::Length);
                    return Ok(Event::Finished {
                        reason: FinishReason::Length,
                    });
                }
                if start + b <= self.prompt_len {
                    engine.commit(&self.sequence[start..start + b]).await?;
                    self.committed_len += b;
                    self.phase = Phase::NextBlock;
                    return Ok(Event::PromptBlockCommitted { block });
                }
                let mut tokens = vec![self.mask; b];
                for (i, t) in tokens.iter_mut().enumerate() {
                    if start + i < self.sequence.len() {
                        *t = self.sequence[start + i];
                    }
                }
                self.sequence.truncate(start);
                self.phase = Phase::Denoise(Denoising {
                    block,
                    start,
                    tokens: tokens.clone(),
                    step: 0,
                    changed: true,
                    pending: Default::default(),
                });
                Ok(Event::BlockStarted {
                    block,
                    start,
                    tokens,
                })
            }
            Phase::Denoise(d) => self.denoise_step(engine, d).await,
            Phase::Commit(d) => {
                engine.commit(&d.tokens).await?;
                self.sequence.extend(&d.tokens);
                self.committed_len += b;
                let event = Event::BlockCommitted {
                    block: d.block,
                    start: d.start,
                    tokens: d.tokens,
                };
                self.phase = match self.stop_check() {
                    Some(reason) => Phase::Done(reason),
                    None => Phase::NextBlock,
                };
                Ok(event)
            }
        }
    }

    fn stop_check(&mut self) -> Option<FinishReason> {
        if self.opts.stop_at_eos {
            let mut seen = 0;
            for (i, &t) in self.sequence.iter().enumerate() {
                if t == self.eos {
                    seen += 1;
                    if seen == 2 {
                        self.sequence.truncate(i + 1);
                        return Some(FinishReason::Eos);
                    }
                }
            }
        }
        if self.opts.stop_on_low_entropy && self.sequence.len() > 256 {
            let tail = &self.sequence[self.sequence.len() - 256..];
            if sampler::unigram_entropy(tail) < 4.0 {
                return Some(FinishReason::LowEntropy);
            }
        }
        None
    }

    fn step_seed_and_position(&self) -> (u64, Option<usize>) {
        self.seed_and_position_at(self.global_step as usize)
    }

    fn seed_and_position_at(&self, k: usize) -> (u64, Option<usize>) {
        if let Some(r) = &self.replay {
            let seed = r
                .seeds
                .get(k)
                .copied()
                .unwrap_or_else(|| rng::step_seed(self.opts.seed, k as u64));
            return (seed, r.chosen.get(k).copied());
        }
        (rng::step_seed(self.opts.seed, k as u64), None)
    }

    /// Schedules the block's parallel steps (their seeds do not depend on the model; each
    /// step reveals at least one row, so as many steps as masked rows suffice) and runs them:
    /// one `denoise_block` call whose rule selects the rows on the draws (a GPU selects on the
    /// device), or one step with per-step execution.
    async fn run_parallel<E: Engine>(&mut self, engine: &mut E, d: &mut Denoising) -> Result<()> {
        let masked = d.tokens.iter().filter(|&&t| t == self.mask).count();
        if d.step >= d.tokens.len() || masked == 0 {
            return Err(Error::Backend(format!(
                "block {} still has masks after {} parallel steps",
                d.block, d.step
            )));
        }
        let rule = match self.opts.sampler {
            SamplerKind::Confidence { threshold } => RevealRule::Confidence { threshold },
            SamplerKind::Entropy { gamma } => RevealRule::Entropy { gamma },
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{other:?} is not a parallel sampler"
                )))
            }
        };
        let per_step = self.per_step(engine);
        let limit = if per_step { 1 } else { masked };
        let steps: Vec<BlockStep> = (0..limit)
            .map(|k| BlockStep {
                seed: self.seed_and_position_at(self.global_step as usize + k).0,
                row: 0,
            })
            .collect();
        let req = BlockRequest {
            block: &d.tokens,
            steps: &steps,
            rule,
            draw_all_rows: self.draw_all_rows,
            nucleus_p: self.opts.nucleus_p,
        };
        let records = if per_step {
            engine::denoise_block_by_steps(engine, &req).await?
        } else {
            engine.denoise_block(&req).await?
        };
        if records.is_empty()
            || records.len() > steps.len()
            || records.iter().any(|r| r.reveals.is_empty())
        {
            return Err(Error::Backend(format!(
                "the engine ran {} of {} parallel steps, each must reveal a token",
                records.len(),
                steps.len()
            )));
        }
        let positions = self.positions.clone();
        d.pending = records
            .into_iter()
            .map(|r| (r, positions.clone()))
            .collect();
        Ok(())
    }

    fn per_step<E: Engine>(&self, engine: &E) -> bool {
        match self.execution {
            Execution::Auto => !engine.runs_blocks(),
            Execution::PerStep => true,
            Execution::PerBlock => false,
        }
    }

    /// Schedules the block's remaining first-hitting steps (positions and seeds do not depend
    /// on the model) and runs them: one `denoise_block` call, or one draw with per-step
    /// execution.
    async fn run_first_hitting<E: Engine>(
        &mut self,
        engine: &mut E,
        d: &mut Denoising,
        max_steps: usize,
    ) -> Result<()> {
        if d.step >= max_steps {
            return Err(Error::InvalidArgument(format!(
                "block {} still has masks after {max_steps} steps",
                d.block
            )));
        }
        let per_step = self.per_step(engine);
        let limit = if per_step { 1 } else { max_steps - d.step };
        let mut masked: Vec<usize> = (0..d.tokens.len())
            .filter(|&i| d.tokens[i] == self.mask)
            .collect();
        let mut positions = self.positions.clone();
        let mut steps = Vec::new();
        let mut states = Vec::new();
        while steps.len() < limit && !masked.is_empty() {
            let k = self.global_step as usize + steps.len();
            let (seed, replay_pos) = self.seed_and_position_at(k);
            let pos = match replay_pos {
                Some(p) => p,
                None => masked[positions.below(masked.len())],
            };
            if !masked.contains(&pos) {
                if steps.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "replayed position {pos} is not masked"
                    )));
                }
                // Reported when that step comes.
                break;
            }
            masked.retain(|&m| m != pos);
            steps.push(BlockStep { seed, row: pos });
            states.push(positions.clone());
        }
        let req = BlockRequest {
            block: &d.tokens,
            steps: &steps,
            rule: RevealRule::Scheduled,
            draw_all_rows: self.draw_all_rows,
            nucleus_p: self.opts.nucleus_p,
        };
        let records = if per_step {
            engine::denoise_block_by_steps(engine, &req).await?
        } else {
            engine.denoise_block(&req).await?
        };
        if records.len() != steps.len() {
            return Err(Error::Backend(format!(
                "the engine ran {} of {} steps",
                records.len(),
                steps.len()
            )));
        }
        d.pending = records.into_iter().zip(states).collect();
        Ok(())
    }

    async fn denoise_step<E: Engine>(&mut self, engine: &mut E, mut d: Denoising) -> Result<Event> {
        let (seed, _) = self.step_seed_and_position();
        let mut revealed = Vec::new();
        let (t, s, mask_prob, model_called, draws);
        match self.opts.sampler {
            SamplerKind::FirstHitting { .. }
            | SamplerKind::Confidence { .. }
            | SamplerKind::Entropy { .. } => {
                if d.pending.is_empty() {
                    match self.opts.sampler {
                        SamplerKind::FirstHitting { max_steps } => {
                            self.run_first_hitting(engine, &mut d, max_steps).await?
                        }
                        _ => self.run_parallel(engine, &mut d).await?,
                    }
                }
                let (record, positions) = d
                    .pending
                    .pop_front()
                    .ok_or_else(|| Error::Backend("the engine returned no step records".into()))?;
                self.positions = positions;
                for reveal in &record.reveals {
                    d.tokens[reveal.row] = reveal.token;
                    revealed.push(Reveal {
                        position: d.start + reveal.row,
                        token: reveal.token,
                        confidence: reveal.confidence,
                    });
                }
                draws = record.draws;
                (t, s, mask_prob, model_called) = (1.0, 0.0, None, true);
                d.changed = true;
            }
            SamplerKind::Posterior { steps } => {
                if d.step >= steps {
                    return Err(Error::InvalidArgument(format!(
                        "block {} still has masks after {steps} steps",
                        d.block
                    )));
                }
                t = linspace_point(d.step, steps);
                let dt = (1.0f64 / steps as f64) as f32;
                s = t - dt;
                let mp = if t == 0.0 && !self.opts.t0_quirk {
                    0.0
                } else {
                    s / t
                };
                mask_prob = Some(mp);
                model_called = d.step == 0 || d.changed;
                let req = DrawRequest {
                    block: &d.tokens,
                    rows: Rows::All,
                    nucleus_p: self.opts.nucleus_p,
                    uniform_seed: seed,
                    mask_prob: Some(mp),
                    reuse: !model_called,
                };
                draws = engine.draw(&req).await?;
                let mut changed = false;
                for draw in &draws {
                    let r = draw.row;
                    if d.tokens[r] == self.mask && draw.token != self.mask {
                        d.tokens[r] = draw.token;
                        changed = true;
                        revealed.push(Reveal {
                            position: d.start + r,
                            token: draw.token,
                            confidence: draw.confidence,
                        });
                    }
                }
                d.changed = changed;
            }
        }
        self.global_step += 1;
        d.step += 1;
        let event = Event::Step {
            block: d.block,
            step: d.step - 1,
            t,
            s,
            mask_prob,
            model_called,
            revealed,
            draws,
            tokens: d.tokens.clone(),
        };
        self.phase = if d.tokens.contains(&self.mask) {
            Phase::Denoise(d)
        } else {
            Phase::Commit(d)
        };
        Ok(event)
    }
}
