//! [`CpuEngine`]: the fast CPU implementation of `bd3lm::Engine`.
//!
//! A model call runs the block's rows through the network and keeps the final LayerNorm's
//! output; the LM head (the largest matrix) then runs only for the rows a draw needs (one row
//! per first-hitting step, as on the GPU), and its logits are kept until the next call. The
//! sampling math is the core's exact f64 code, so a draw differs from the reference's only
//! where the logits do.
//!
//! A finished block's store pass is folded into the next model call (issue 12): `commit` only
//! keeps the block, and the next call runs `[clean block ; block]` in one forward (the
//! projections stream each weight once for both), block-causal, with exactly the arithmetic of
//! two calls, so the tokens are the same as with a separate store pass
//! ([`CpuOptions::separate_store`]), in one model call per block fewer.

use crate::attention::AttnMask;
use crate::forward::{self, Call, KvRing, Model, State};
use crate::kernels::Simd;
use crate::matmul::{self, WeightSums};
use crate::threads::Pool;
use bd3lm::engine::{self, DrawRequest, Engine, RowDraw, Rows};
use bd3lm::forward::Activations;
use bd3lm::quant::{Scheme, GROUP};
use bd3lm::{sampler, Config, Error, Result, Weights};
use std::sync::Arc;

mod probes;

/// How to run the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuOptions {
    /// Worker threads; `None`: every core (always 1 on wasm32).
    pub threads: Option<usize>,
    /// Kernel family; `None`: the fastest this CPU runs ([`Simd::detect`]).
    pub simd: Option<Simd>,
    /// Run each store pass as a call of its own instead of folding it into the next call
    /// (`--no-fold`).
    pub separate_store: bool,
}

/// Environment variable naming a kernel family (`portable`, `simd128`, `avx2`, `avx512`).
pub const SIMD_ENV: &str = "BD3LM_CPU_SIMD";

impl CpuOptions {
    /// `threads`, and the kernel family from [`SIMD_ENV`] when it is set.
    pub fn from_env(threads: Option<usize>) -> Result<CpuOptions> {
        let simd = match std::env::var(SIMD_ENV) {
            Ok(name) if !name.is_empty() => Some(Simd::parse(&name).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{SIMD_ENV}={name}: expected portable, simd128, avx2 or avx512"
                ))
            })?),
            _ => None,
        };
        Ok(CpuOptions {
            threads,
            simd,
            separate_store: false,
        })
    }
}

pub struct CpuEngine {
    model: Model,
    ring: KvRing,
    state: State,
    pool: Pool,
    simd: Simd,
    forwards: u64,
    /// Tokens of the last denoising call (empty: no call since the last commit or reset).
    block: Vec<u32>,
    /// Raw logits per row of the last call, computed on demand.
    logits: Vec<Option<Vec<f32>>>,
    /// Nucleus-filtered `p_x0` per row of the last call, computed on demand.
    p_rows: Vec<Option<Vec<f64>>>,
    /// A committed block whose store pass waits to be folded into the next call.
    pending_store: Option<Vec<u32>>,
    /// Whether store passes are folded into the next call.
    fold: bool,
}

impl CpuEngine {
    /// Runs on the weights as loaded: no matrix is copied or converted (an `Arc` shares
    /// them with the caller).
    pub fn new(weights: impl Into<Arc<Weights>>, options: CpuOptions) -> Result<CpuEngine> {
        let weights = weights.into();
        check_weights(&weights)?;
        let simd = options.simd.unwrap_or_else(Simd::detect);
        if !simd.is_available() {
            return Err(Error::InvalidArgument(format!(
                "this CPU cannot run the {} kernels (available: {})",
                simd.name(),
                Simd::available()
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let pool = Pool::new(options.threads)?;
        let cfg = weights.config.clone();
        let b = cfg.block_size;
        let mut state = State::new(&cfg, 2 * b);
        if simd == Simd::Avx512 {
            let matrices = weights
                .layers
                .iter()
                .flat_map(|l| l.matrices().map(|(_, m)| m));
            state.matmul.sums = WeightSums::of(matrices.chain([&weights.lm_head]));
        }
        Ok(CpuEngine {
            ring: KvRing::new(&cfg),
            state,
            model: Model::new(weights),
            pool,
            simd,
            forwards: 0,
            block: Vec::new(),
            logits: vec![None; b],
            p_rows: vec![None; b],
            pending_store: None,
            fold: !options.separate_store,
        })
    }

    /// Folds each store pass into the next model call (the default), or runs it as a call of
    /// its own (the same tokens, one more model call per block).
    pub fn set_store_fold(&mut self, fold: bool) {
        if !fold {
            self.store_separately();
        }
        self.fold = fold;
    }

    /// Runs the pending store pass as a call of its own.
    fn store_separately(&mut self) {
        if let Some(clean) = self.pending_store.take() {
            self.run(&clean, true, None);
        }
    }

    pub fn simd(&self) -> Simd {
        self.simd
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Runs with weights whose split matrices are this party's slices, the other parties
    /// behind `split` computing the rest ([`crate::split`]).
    pub fn set_split(&mut self, split: Box<dyn crate::split::SplitMatmul>) {
        self.pool.set_split(split);
    }

    pub fn weights(&self) -> &Weights {
        &self.model.weights
    }

    fn check_block(&self, block: &[u32]) -> Result<()> {
        let cfg = self.config();
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
        Ok(())
    }

    /// One model call on `block`: a store pass (`commit`), or a denoising call with the
    /// pending store pass folded in front (not with a probe, whose rows are the block's).
    fn run(&mut self, block: &[u32], commit: bool, probe: Option<&mut Activations>) {
        if commit || probe.is_some() {
            self.store_separately();
        }
        self.forwards += 1;
        let clean = self.pending_store.take().unwrap_or_default();
        let tokens: Vec<u32> = clean.iter().chain(block).copied().collect();
        let call = Call {
            tokens: &tokens,
            clean_rows: clean.len(),
            mask: AttnMask::Block,
            commit,
            final_norm: !commit,
        };
        let (pool, simd, model) = (&self.pool, self.simd, &self.model);
        let (ring, state) = (&mut self.ring, &mut self.state);
        forward::forward(pool, simd, model, ring, state, call, probe);
        self.block.clear();
        if !commit {
            self.block.extend_from_slice(block);
        }
        self.logits.iter_mut().for_each(|r| *r = None);
        self.p_rows.iter_mut().for_each(|r| *r = None);
    }

    /// Runs the LM head for the rows of the last call that lack logits (all in one matmul,
    /// so they share each weight load).
    fn ensure_logits(&mut self, rows: &[usize]) {
        let missing: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&r| self.logits[r].is_none())
            .collect();
        if missing.is_empty() {
            return;
        }
        let w = &self.model.weights;
        let (h, v) = (w.config.hidden_dim, w.config.vocab_size);
        let mut x = Vec::with_capacity(missing.len() * h);
        for &r in &missing {
            x.extend_from_slice(&self.state.final_hidden[r * h..(r + 1) * h]);
        }
        let mut out = vec![0f32; missing.len() * v];
        let (pool, simd, scratch) = (&self.pool, self.simd, &mut self.state.matmul);
        let rows = missing.len();
        let none = matmul::Epilogue::None;
        matmul::matmul(pool, simd, &w.lm_head, &x, rows, &mut out, none, scratch);
        for (i, &r) in missing.iter().enumerate() {
            let mut row = out[i * v..(i + 1) * v].to_vec();
            for (o, &b) in row.iter_mut().zip(&w.lm_head_bias) {
                *o += b;
            }
            self.logits[r] = Some(row);
        }
    }

    /// Nucleus-filtered `p_x0` of row `r` of the last call (SUBS, then spec §9.4).
    fn p_row(&mut self, r: usize, nucleus_p: f64) -> &[f64] {
        if self.p_rows[r].is_none() {
            let cfg = self.model.config();
            let (v, mask) = (cfg.vocab_size, cfg.mask_id());
            let mut lp = self.logits[r].clone().unwrap_or_default();
            sampler::subs_log_probs(&mut lp, &self.block[r..r + 1], v, mask);
            let mut p = sampler::probs_from_log_probs(&lp);
            sampler::nucleus(&mut p, nucleus_p);
            self.p_rows[r] = Some(p);
        }
        self.p_rows[r].as_deref().unwrap_or_default()
    }
}

/// Shapes the kernels rely on (a package guarantees them; other `Weights` may not).
fn check_weights(w: &Weights) -> Result<()> {
    let cfg = &w.config;
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if cfg.block_size == 0 || !cfg.model_length.is_multiple_of(cfg.block_size) {
        return bad(format!(
            "model_length {} is not a multiple of block_size {}",
            cfg.model_length, cfg.block_size
        ));
    }
    let mut matrices = vec![("embedding", &w.embedding), ("lm_head", &w.lm_head)];
    for l in &w.layers {
        matrices.extend(l.matrices());
    }
    for (name, m) in matrices {
        if matches!(m.scheme(), Scheme::Q8 | Scheme::Q4) && m.cols % GROUP != 0 {
            return bad(format!(
                "{name}: {} rows of {} values are not whole groups of {GROUP}",
                m.scheme().name(),
                m.cols
            ));
        }
    }
    Ok(())
}

impl Engine for CpuEngine {
    fn config(&self) -> &Config {
        self.model.config()
    }

    fn reset(&mut self) {
        self.ring.reset();
        self.block.clear();
        self.pending_store = None;
    }

    fn cached_tokens(&self) -> usize {
        match &self.pending_store {
            Some(clean) => self.ring.after_commit(clean.len()).1,
            None => self.ring.cached,
        }
    }

    fn forward_count(&self) -> u64 {
        self.forwards
    }

    async fn commit(&mut self, block: &[u32]) -> Result<()> {
        self.check_block(block)?;
        if self.fold {
            // A store pass still pending goes first, on its own.
            self.store_separately();
            self.pending_store = Some(block.to_vec());
            self.block.clear();
        } else {
            self.run(block, true, None);
        }
        Ok(())
    }

    async fn draw(&mut self, req: &DrawRequest<'_>) -> Result<Vec<RowDraw>> {
        self.check_block(req.block)?;
        if !req.reuse || self.block.is_empty() {
            self.run(req.block, false, None);
        }
        let rows: Vec<usize> = match req.rows {
            Rows::All => (0..req.block.len()).collect(),
            Rows::One(r) if r < req.block.len() => vec![r],
            Rows::One(r) => {
                return Err(Error::InvalidArgument(format!(
                    "row {r} is outside the block of {}",
                    req.block.len()
                )))
            }
        };
        self.ensure_logits(&rows);
        let cfg = self.model.config();
        let mask = cfg.mask_id();
        let mut draws = Vec::with_capacity(rows.len());
        for r in rows {
            let p = self.p_row(r, req.nucleus_p);
            draws.push(engine::draw_filtered_row(p, r, req, mask));
        }
        Ok(draws)
    }

    fn describe(&self) -> String {
        let (emb, transformer, head) = self.model.weights.schemes();
        let schemes = if emb == transformer && transformer == head {
            transformer.name().to_string()
        } else {
            format!("{}/{}/{}", emb.name(), transformer.name(), head.name())
        };
        format!(
            "cpu (fast engine: {} kernels, {} thread{}, {schemes} weights)",
            self.simd.name(),
            self.threads(),
            if self.threads() == 1 { "" } else { "s" }
        )
    }
}
