//! The sampler flags shared by `generate` and `sample-stats`, checked in one place: each
//! value's range, and that no flag belongs to a sampler other than the one chosen.

use crate::error::{CliError, CliResult};
use bd3lm::generate::{SamplerKind, DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_ENTROPY_GAMMA};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerArg {
    /// One token revealed per model call (the paper's sampler, spec §9.3).
    FirstHitting,
    /// DDPM posterior steps on a fixed time grid (spec §9.2).
    Posterior,
    /// Parallel decoding: reveal every masked token drawn with probability >= --threshold
    /// (at least one per model call).
    Confidence,
    /// Parallel decoding: reveal the lowest-entropy masked tokens while their summed entropy
    /// minus the largest stays <= --gamma (at least one per model call).
    Entropy,
}

/// Posterior steps per block when `--steps` is not given.
const DEFAULT_POSTERIOR_STEPS: usize = 16;
/// First-hitting cap on calls per block when `--steps` is not given (the paper's T; each block
/// takes exactly as many calls as it has masks).
const DEFAULT_FIRST_HITTING_CAP: usize = 5000;

#[derive(clap::Args, Debug, Clone)]
pub struct SamplerFlags {
    #[arg(long, value_enum, default_value_t = SamplerArg::FirstHitting)]
    pub sampler: SamplerArg,
    /// Posterior: steps per block (default 16). First hitting: cap on model calls per block,
    /// at least the block size (default 5000; a block needs one call per mask).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Confidence sampler: the probability a drawn token needs to be revealed, in (0, 1]
    /// (default: the recommended value of docs/sampling.md).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Entropy sampler: the bound on summed entropy minus the largest, in nats, >= 0
    /// (default: the recommended value of docs/sampling.md).
    #[arg(long)]
    pub gamma: Option<f64>,
}

impl SamplerFlags {
    /// The sampler the flags describe, or a usage error.
    pub fn kind(&self, block_size: usize) -> CliResult<SamplerKind> {
        let name = match self.sampler {
            SamplerArg::FirstHitting => "first-hitting",
            SamplerArg::Posterior => "posterior",
            SamplerArg::Confidence => "confidence",
            SamplerArg::Entropy => "entropy",
        };
        let foreign = |flag: &str, owner: &str| {
            Err(CliError::Usage(format!(
                "{flag} belongs to --sampler {owner}, not --sampler {name}"
            )))
        };
        if self.threshold.is_some() && self.sampler != SamplerArg::Confidence {
            return foreign("--threshold", "confidence");
        }
        if self.gamma.is_some() && self.sampler != SamplerArg::Entropy {
            return foreign("--gamma", "entropy");
        }
        if self.steps.is_some()
            && matches!(self.sampler, SamplerArg::Confidence | SamplerArg::Entropy)
        {
            return foreign("--steps", "first-hitting or posterior");
        }
        Ok(match self.sampler {
            SamplerArg::FirstHitting => {
                let max_steps = self.steps.unwrap_or(DEFAULT_FIRST_HITTING_CAP);
                if max_steps < block_size {
                    return Err(CliError::Usage(format!(
                        "--sampler first-hitting reveals one token per step: --steps {max_steps} must be at least the block size {block_size}"
                    )));
                }
                SamplerKind::FirstHitting { max_steps }
            }
            SamplerArg::Posterior => {
                let steps = self.steps.unwrap_or(DEFAULT_POSTERIOR_STEPS);
                if steps == 0 {
                    return Err(CliError::Usage("--steps must be at least 1".into()));
                }
                SamplerKind::Posterior { steps }
            }
            SamplerArg::Confidence => {
                let threshold = self.threshold.unwrap_or(DEFAULT_CONFIDENCE_THRESHOLD);
                if !(threshold > 0.0 && threshold <= 1.0) {
                    return Err(CliError::Usage(format!(
                        "--threshold must be in (0, 1], got {threshold}"
                    )));
                }
                SamplerKind::Confidence { threshold }
            }
            SamplerArg::Entropy => {
                let gamma = self.gamma.unwrap_or(DEFAULT_ENTROPY_GAMMA);
                if !(gamma >= 0.0 && gamma.is_finite()) {
                    return Err(CliError::Usage(format!(
                        "--gamma must be a finite number >= 0, got {gamma}"
                    )));
                }
                SamplerKind::Entropy { gamma }
            }
        })
    }
}
