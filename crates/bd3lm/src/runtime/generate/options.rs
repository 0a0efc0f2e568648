//! What a generation is asked to do (sampler, length rules, replays) and what it reports
//! ([`Event`]): the plain data of [`super::Generator`]'s interface.

use crate::engine::RowDraw;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    /// The paper's sampler (spec §9.3): one token per model call; `max_steps` caps the calls
    /// per block and must be at least the block size.
    FirstHitting { max_steps: usize },
    /// The DDPM posterior sampler (spec §9.2) on a `steps`-point grid per block.
    Posterior { steps: usize },
    /// Parallel decoding by confidence (Fast-dLLM, arXiv 2505.22618): each model call draws a
    /// token at every masked position and reveals those whose drawn token has probability
    /// `>= threshold` after the nucleus filter; at least the most confident one.
    Confidence { threshold: f64 },
    /// Parallel decoding by an entropy bound (arXiv 2505.24857): each model call draws every
    /// masked position, sorts them by the entropy of their filtered distribution and reveals
    /// the longest prefix whose summed entropy minus its largest entropy is `<= gamma`; at
    /// least one.
    Entropy { gamma: f64 },
}

impl SamplerKind {
    /// Whether a step may reveal several tokens in one model call.
    pub fn is_parallel(&self) -> bool {
        matches!(
            self,
            SamplerKind::Confidence { .. } | SamplerKind::Entropy { .. }
        )
    }
}

/// The confidence threshold `--sampler confidence` uses when none is given (docs/sampling.md).
pub const DEFAULT_CONFIDENCE_THRESHOLD: f64 = 0.9;
/// The entropy bound `--sampler entropy` uses when none is given (docs/sampling.md).
pub const DEFAULT_ENTROPY_GAMMA: f64 = 3.0;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    pub sampler: SamplerKind,
    /// Nucleus mass (spec §9.4); 1.0 disables the filter.
    pub nucleus_p: f64,
    pub seed: u64,
    /// Reproduce the reference's t = 0 behaviour of the posterior sampler (spec §9.2).
    /// Off by default: the last grid step unmasks everything with the model's distribution
    /// (a deliberate deviation; the conformance runner turns it on).
    pub t0_quirk: bool,
    /// Stop once the sequence holds a second EOS/BOS id, cut right after it (spec §9.6 var_length).
    pub stop_at_eos: bool,
    /// Stop when the unigram entropy of the last 256 tokens drops below 4 nats (spec §9.6).
    pub stop_on_low_entropy: bool,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions {
            sampler: SamplerKind::FirstHitting { max_steps: 5000 },
            nucleus_p: 0.9,
            seed: 0,
            t0_quirk: false,
            stop_at_eos: false,
            stop_on_low_entropy: false,
        }
    }
}

/// Recorded choices to replay a reference trace exactly (conformance).
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Uniform-stream seed of each step.
    pub seeds: Vec<u64>,
    /// First hitting: the position revealed at each step.
    pub chosen: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Length,
    Eos,
    LowEntropy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reveal {
    /// Absolute position in the sequence.
    pub position: usize,
    pub token: u32,
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A block made only of prompt tokens was committed with one store pass.
    PromptBlockCommitted {
        block: usize,
    },
    /// A block starts: prompt tokens where the prompt reaches, MASK elsewhere.
    BlockStarted {
        block: usize,
        start: usize,
        tokens: Vec<u32>,
    },
    /// One denoising step (one model call, or none when `p_x0` was reused).
    Step {
        block: usize,
        step: usize,
        t: f32,
        s: f32,
        mask_prob: Option<f32>,
        model_called: bool,
        revealed: Vec<Reveal>,
        /// Raw draws before carry-over (every row when replaying).
        draws: Vec<RowDraw>,
        tokens: Vec<u32>,
    },
    /// The finished block was committed to the KV cache (one store pass).
    BlockCommitted {
        block: usize,
        start: usize,
        tokens: Vec<u32>,
    },
    Finished {
        reason: FinishReason,
    },
}
