//! The interface every backend implements ([`Engine`], what generation needs; [`EngineProbes`],
//! the hooks only the checks use), and the exact CPU reference engine, [`ReferenceEngine`]
//! (the fast CPU engine is in `bd3lm-cpu`, the WGSL engine in `bd3lm-gpu`).
//!
//! Methods return futures because GPU readback is asynchronous in the browser; the CPU
//! engine's futures are ready immediately.

use crate::config::Config;
use crate::error::Result;
use crate::forward::{self, Activations, State};
use crate::sampler;
use crate::weights::Weights;
use std::future::Future;

mod probes;

/// Which rows of the block get a categorical draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    All,
    One(usize),
}

/// One denoising draw: run the model on `block` (unless `reuse`), SUBS, nucleus, then the
/// categorical race for the selected rows.
#[derive(Debug, Clone)]
pub struct DrawRequest<'a> {
    pub block: &'a [u32],
    pub rows: Rows,
    pub nucleus_p: f64,
    /// SplitMix64 seed of this step; row `r` uses elements `r*V .. (r+1)*V` of its stream.
    pub uniform_seed: u64,
    /// `None`: draw from `p_x0` (first hitting). `Some(s/t)`: draw from the posterior row.
    pub mask_prob: Option<f32>,
    /// The block did not change since the last draw: reuse its `p_x0` without a model call.
    pub reuse: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowDraw {
    pub row: usize,
    pub token: u32,
    /// `p_x0` of the drawn token after the nucleus filter (what the page tints by).
    pub confidence: f32,
    /// Entropy (nats) of the row's nucleus-filtered `p_x0`, for the entropy-bounded sampler;
    /// NaN where the backend does not compute it.
    pub entropy: f32,
}

/// Row `row`'s draw from its nucleus-filtered `p_x0` (`p`, `V` values), as the reference does
/// it: the exponential race on `p`, or on the posterior row when `req.mask_prob` is set, with
/// the row's slice of the step's uniform stream. Shared by the CPU engines.
pub fn draw_filtered_row(p: &[f64], row: usize, req: &DrawRequest<'_>, mask: u32) -> RowDraw {
    let offset = (row * p.len()) as u64;
    let token = match req.mask_prob {
        None => sampler::race(p, req.uniform_seed, offset),
        Some(mp) => sampler::race(
            &sampler::posterior_row(p, mp, mask),
            req.uniform_seed,
            offset,
        ),
    };
    RowDraw {
        row,
        token,
        confidence: p[token as usize] as f32,
        entropy: sampler::entropy(p) as f32,
    }
}

/// [`Engine::nucleus_probe`] computed on the CPU in f64: the reference answer, and what the
/// CPU engines return.
pub fn cpu_nucleus_probe(log_probs: &[f32], vocab: usize, p: f64) -> Vec<(usize, f64)> {
    log_probs
        .chunks_exact(vocab)
        .map(|row| sampler::nucleus(&mut sampler::probs_from_log_probs(row), p))
        .collect()
}

/// [`Engine::race_probe`] computed on the CPU in f64 (see [`cpu_nucleus_probe`]).
pub fn cpu_race_probe(probs: &[f64], vocab: usize, seed: u64) -> Vec<u32> {
    probs
        .chunks_exact(vocab)
        .enumerate()
        .map(|(r, row)| sampler::race(row, seed, (r * vocab) as u64))
        .collect()
}

/// How the steps of [`Engine::denoise_block`] choose the rows they reveal: the select stage
/// of a step. A GPU runs it on the device, between the step's draws and the next step.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum RevealRule {
    /// Each step reveals the row the host chose for it in advance ([`BlockStep::row`]):
    /// first hitting, whose positions do not depend on the model.
    Scheduled,
    /// Each step draws every masked row and reveals those whose drawn token has probability
    /// `>= threshold`, at least the most confident one ([`sampler::select_confident`]).
    Confidence { threshold: f64 },
    /// Each step draws every masked row and reveals the longest prefix of them by entropy
    /// whose summed entropy minus its largest is `<= gamma` ([`sampler::select_low_entropy`]).
    Entropy { gamma: f64 },
}

impl RevealRule {
    /// Whether the steps choose their rows from the draws (several per step), rather than
    /// the host in advance.
    pub fn selects_on_draws(&self) -> bool {
        !matches!(self, RevealRule::Scheduled)
    }

    /// The rows a step reveals among `masked` draws (rows in ascending order); an error when
    /// the rule needs entropies the engine did not report.
    pub fn select(&self, masked: &[RowDraw]) -> Result<Vec<usize>> {
        match *self {
            RevealRule::Scheduled => Ok(Vec::new()),
            RevealRule::Confidence { threshold } => {
                let c: Vec<(usize, f32)> = masked.iter().map(|d| (d.row, d.confidence)).collect();
                Ok(sampler::select_confident(&c, threshold))
            }
            RevealRule::Entropy { gamma } => {
                if masked.iter().any(|d| d.entropy.is_nan()) {
                    return Err(crate::Error::Backend(
                        "this engine does not report entropies, which the entropy sampler needs"
                            .into(),
                    ));
                }
                let c: Vec<(usize, f32)> = masked.iter().map(|d| (d.row, d.entropy)).collect();
                Ok(sampler::select_low_entropy(&c, gamma))
            }
        }
    }
}

/// One step of a [`BlockRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStep {
    /// SplitMix64 seed of the step; row `r` uses elements `r*V .. (r+1)*V` of its stream.
    pub seed: u64,
    /// The row the step reveals ([`RevealRule::Scheduled`]; ignored by the rules that select
    /// on the draws).
    pub row: usize,
}

/// Several denoising steps of one block, run as one unit of work: a GPU records them in one
/// submission (the drawn ids go straight into the device-side block that the next step
/// reads) and reads back only the step records. With a rule that selects on the draws, the
/// steps after the block is complete do nothing and return no record.
#[derive(Debug, Clone)]
pub struct BlockRequest<'a> {
    /// The block before the first step (MASK where masked).
    pub block: &'a [u32],
    pub steps: &'a [BlockStep],
    pub rule: RevealRule,
    /// Draw every row at every step, as the reference does (conformance replays), instead of
    /// only the rows a step may reveal.
    pub draw_all_rows: bool,
    pub nucleus_p: f64,
}

/// What one step of a block did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// The rows the step revealed with their ids and confidences, in row order: one for first
    /// hitting; a sampler that reveals several tokens per step reports them all.
    pub reveals: Vec<RowDraw>,
    /// Every row's draw with `draw_all_rows`, else the reveals.
    pub draws: Vec<RowDraw>,
}

/// Checks a block request against the config: rows in range, each scheduled row masked when
/// its step comes and revealed once; a rule that selects on the draws reveals at least one row
/// per step, so it has at most as many steps as masked rows.
pub fn check_block_request(cfg: &Config, req: &BlockRequest<'_>) -> Result<()> {
    let b = cfg.block_size;
    if req.block.len() != b {
        return Err(crate::Error::InvalidArgument(format!(
            "a block has {b} tokens, got {}",
            req.block.len()
        )));
    }
    let mut masked: Vec<bool> = req.block.iter().map(|&t| t == cfg.mask_id()).collect();
    if req.rule.selects_on_draws() {
        let count = masked.iter().filter(|&&m| m).count();
        if req.steps.len() > count {
            return Err(crate::Error::InvalidArgument(format!(
                "{} steps for {count} masked rows: every step reveals at least one",
                req.steps.len()
            )));
        }
        return Ok(());
    }
    for (k, s) in req.steps.iter().enumerate() {
        if !masked.get(s.row).copied().unwrap_or(false) {
            return Err(crate::Error::InvalidArgument(format!(
                "step {k} reveals row {} of a {b}-token block, which is not masked",
                s.row
            )));
        }
        masked[s.row] = false;
    }
    Ok(())
}

/// [`Engine::denoise_block`] as one [`Engine::draw`] per step (the CPU engines' way, and the
/// meaning every backend's block path must reproduce). A rule that selects on the draws draws
/// every row at each step and stops when the block is complete.
pub async fn denoise_block_by_steps<E: Engine + ?Sized>(
    engine: &mut E,
    req: &BlockRequest<'_>,
) -> Result<Vec<StepRecord>> {
    check_block_request(engine.config(), req)?;
    let mask = engine.config().mask_id();
    let mut tokens = req.block.to_vec();
    let mut records = Vec::with_capacity(req.steps.len());
    let selects = req.rule.selects_on_draws();
    for step in req.steps {
        if selects && !tokens.contains(&mask) {
            break;
        }
        let rows = if req.draw_all_rows || selects {
            Rows::All
        } else {
            Rows::One(step.row)
        };
        let draws = engine
            .draw(&DrawRequest {
                block: &tokens,
                rows,
                nucleus_p: req.nucleus_p,
                uniform_seed: step.seed,
                mask_prob: None,
                reuse: false,
            })
            .await?;
        let chosen = if selects {
            let masked: Vec<RowDraw> = draws
                .iter()
                .filter(|d| tokens.get(d.row) == Some(&mask))
                .copied()
                .collect();
            req.rule.select(&masked)?
        } else {
            vec![step.row]
        };
        let mut reveals = Vec::with_capacity(chosen.len());
        for row in chosen {
            let d = draws
                .iter()
                .find(|d| d.row == row)
                .copied()
                .ok_or_else(|| {
                    crate::Error::Backend(format!("the engine returned no draw for row {row}"))
                })?;
            tokens[row] = d.token;
            reveals.push(d);
        }
        records.push(StepRecord {
            draws: if req.draw_all_rows {
                draws
            } else {
                reveals.clone()
            },
            reveals,
        });
    }
    Ok(records)
}

/// [`Engine::race_probe`] result for a row the backend skipped.
pub const SKIPPED_ROW: u32 = u32::MAX;

/// Work counters a backend reports for benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// GPU dispatches in one forward of one block (0 on the CPU).
    pub dispatches_per_forward: usize,
    /// Bytes read back from the device by the last `draw` (0 on the CPU).
    pub readback_bytes_last_draw: usize,
    /// GPU buffers and bind groups created on the engine's device so far (0 on the CPU):
    /// constant after the engine is built, since a step allocates nothing.
    pub device_objects_created: u64,
    /// Compute pipelines compiled on the engine's device so far (0 on the CPU): shared by
    /// every engine on the device, constant once the first generation has run.
    pub pipelines_compiled: u64,
    /// Buffers the engine and its model hold on the device (0 on the CPU); destroyed with
    /// them.
    pub buffers_held: u64,
    /// Queue submissions so far (0 on the CPU).
    pub submits: u64,
    /// Times the host waited for the device so far (readbacks; 0 on the CPU).
    pub host_waits: u64,
    /// [`Engine::denoise_block`] calls so far.
    pub blocks_denoised: u64,
    /// Bytes read back by the last `denoise_block` (0 on the CPU).
    pub readback_bytes_last_block: usize,
    /// Fewest workgroups of any dispatch of the last forward that streams a weight matrix or
    /// the KV cache (0 on the CPU).
    pub workgroups_min: u32,
    /// Weight bytes one denoising forward reads (0 on the CPU).
    pub weight_bytes_per_forward: u64,
}

/// What generation needs of an engine; the checks' hooks are [`EngineProbes`].
pub trait Engine {
    fn config(&self) -> &Config;
    /// Empties the KV cache (start of a new sample).
    fn reset(&mut self);
    /// Committed tokens currently in the cache (at most `model_length - block_size`).
    fn cached_tokens(&self) -> usize;
    /// Model calls (forward passes, commit passes included) since creation. A store pass that
    /// an engine folds into its next call (rows `[clean block ; next block]` in one forward)
    /// is part of that call, not a call of its own.
    fn forward_count(&self) -> u64;
    /// The store pass (spec §7.2): runs the clean block and appends its K/V to the cache,
    /// sliding the window when it is full (spec §7.3). An engine may defer it into its next
    /// model call (the fold); `cached_tokens` counts the block at once either way.
    fn commit(&mut self, block: &[u32]) -> impl Future<Output = Result<()>>;
    fn draw(&mut self, req: &DrawRequest<'_>) -> impl Future<Output = Result<Vec<RowDraw>>>;
    /// Whether [`Engine::denoise_block`] saves work over one draw per step (a GPU saves a host
    /// round trip per step). The generator then runs first hitting a block at a time; an
    /// engine without that gain keeps one bounded step per call (a page stays responsive).
    fn runs_blocks(&self) -> bool {
        false
    }
    /// Runs the steps of `req` on one block (see [`BlockRequest`]) and returns one record per
    /// step. Must give exactly what one [`Engine::draw`] per step gives
    /// ([`denoise_block_by_steps`], the default).
    fn denoise_block(
        &mut self,
        req: &BlockRequest<'_>,
    ) -> impl Future<Output = Result<Vec<StepRecord>>> {
        denoise_block_by_steps(self, req)
    }
    /// Human-readable backend description (e.g. the GPU adapter).
    fn describe(&self) -> String;
    fn counters(&self) -> EngineCounters {
        EngineCounters::default()
    }
}

/// The hooks only the checks use (conformance, evaluation, tests): an engine's raw outputs and
/// its sampler's pieces on given inputs, kept apart from what generation needs ([`Engine`]).
/// Each engine implements them in a `probes.rs` beside its `Engine` implementation.
pub trait EngineProbes: Engine {
    /// Raw logits `[B, V]` of a block given the cached prefix (tests, conformance, eval).
    fn logits(&mut self, block: &[u32]) -> impl Future<Output = Result<Vec<f32>>>;
    /// Hidden states after the embedding and after each layer (and, where the backend can,
    /// the layer-0 intermediates), for conformance checks.
    fn activations(&mut self, block: &[u32]) -> impl Future<Output = Result<Activations>>;
    /// The backend's nucleus filter on given log-prob rows: (kept count, kept mass) per row.
    fn nucleus_probe(
        &mut self,
        log_probs: &[f32],
        p: f64,
    ) -> impl Future<Output = Result<Vec<(usize, f64)>>>;
    /// The backend's categorical race on given probability rows `[rows, V]` and a step seed;
    /// [`SKIPPED_ROW`] for rows the backend cannot take (non-finite values on a GPU).
    fn race_probe(&mut self, probs: &[f64], seed: u64) -> impl Future<Output = Result<Vec<u32>>>;
}

/// The exact CPU reference engine.
pub struct ReferenceEngine {
    weights: Weights,
    state: State,
    /// Nucleus-filtered `p_x0` per row from the last model call, computed lazily per row.
    p_rows: Vec<Option<Vec<f64>>>,
    log_probs: Vec<f32>,
    forwards: u64,
}

impl ReferenceEngine {
    pub fn new(weights: &Weights) -> ReferenceEngine {
        let weights = weights.dequantized();
        let state = State::new(&weights.config, &weights.inv_freq);
        ReferenceEngine {
            p_rows: vec![None; weights.config.block_size],
            weights,
            state,
            log_probs: Vec::new(),
            forwards: 0,
        }
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    fn run(
        &mut self,
        block: &[u32],
        commit: bool,
        logits: bool,
        probe: Option<&mut Activations>,
    ) -> Option<Vec<f32>> {
        self.forwards += 1;
        forward::forward_block(&self.weights, &mut self.state, block, commit, logits, probe)
    }

    fn check_block(&self, block: &[u32]) -> Result<()> {
        let cfg = &self.weights.config;
        if block.len() != cfg.block_size {
            return Err(crate::Error::InvalidArgument(format!(
                "a block has {} tokens, got {}",
                cfg.block_size,
                block.len()
            )));
        }
        if let Some(&t) = block.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(crate::Error::InvalidArgument(format!(
                "token id {t} is outside the vocabulary (size {})",
                cfg.vocab_size
            )));
        }
        Ok(())
    }
}

impl Engine for ReferenceEngine {
    fn config(&self) -> &Config {
        &self.weights.config
    }

    fn reset(&mut self) {
        self.state.cached = 0;
        self.p_rows.iter_mut().for_each(|r| *r = None);
    }

    fn cached_tokens(&self) -> usize {
        self.state.cached
    }

    fn forward_count(&self) -> u64 {
        self.forwards
    }

    async fn commit(&mut self, block: &[u32]) -> Result<()> {
        self.check_block(block)?;
        self.run(block, true, false, None);
        Ok(())
    }

    async fn draw(&mut self, req: &DrawRequest<'_>) -> Result<Vec<RowDraw>> {
        self.check_block(req.block)?;
        let (v, mask) = (
            self.weights.config.vocab_size,
            self.weights.config.mask_id(),
        );
        if !req.reuse || self.log_probs.is_empty() {
            let mut logits = self.run(req.block, false, true, None).unwrap_or_default();
            sampler::subs_log_probs(&mut logits, req.block, v, mask);
            self.log_probs = logits;
            self.p_rows.iter_mut().for_each(|r| *r = None);
        }
        let rows: Vec<usize> = match req.rows {
            Rows::All => (0..req.block.len()).collect(),
            Rows::One(r) => vec![r],
        };
        let mut draws = Vec::with_capacity(rows.len());
        for r in rows {
            let p = self.p_rows[r].get_or_insert_with(|| {
                let mut p = sampler::probs_from_log_probs(&self.log_probs[r * v..(r + 1) * v]);
                sampler::nucleus(&mut p, req.nucleus_p);
                p
            });
            draws.push(draw_filtered_row(p, r, req, mask));
        }
        Ok(draws)
    }

    fn describe(&self) -> String {
        "reference (the exact f32/f64 CPU reference engine)".to_string()
    }
}
