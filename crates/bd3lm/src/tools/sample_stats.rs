//! What a sampler setting costs and what its samples are worth (`bd3lm sample-stats`,
//! docs/sampling.md): model calls per token, and two quality measures of the generated text:
//! the model's own likelihood bound of it (the NELBO of spec §8.1, conditioned on the prompt,
//! with the same noise draws for every setting) and its unigram entropy (the paper's check for
//! degenerate, repetitive text, spec §9.6).

use crate::engine::{Engine, EngineProbes};
use crate::error::{Error, Result};
use crate::eval::{self, NoiseOptions, NoisedChunk};
use crate::generate::{
    Event, Generator, SamplerKind, SamplingOptions, DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_ENTROPY_GAMMA,
};
use crate::rng::SplitMix64;
use crate::sampler;

/// A sampler setting as written on the command line: `first-hitting`, `posterior[:STEPS]`,
/// `confidence[:THRESHOLD]`, `entropy[:GAMMA]`.
pub fn parse_setting(text: &str) -> Result<SamplerKind> {
    let (name, value) = match text.trim().split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (text.trim(), None),
    };
    let number = |what: &str| -> Result<Option<f64>> {
        value
            .map(|v| {
                v.parse::<f64>().map_err(|_| {
                    Error::InvalidArgument(format!("`{text}`: {what} `{v}` is not a number"))
                })
            })
            .transpose()
    };
    let kind = match name {
        "first-hitting" | "fh" => {
            if value.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "`{text}`: first-hitting takes no value"
                )));
            }
            SamplerKind::FirstHitting { max_steps: 5000 }
        }
        "posterior" => {
            let steps = match value {
                Some(v) => v.parse::<usize>().map_err(|_| {
                    Error::InvalidArgument(format!("`{text}`: steps `{v}` is not a count"))
                })?,
                None => 16,
            };
            SamplerKind::Posterior { steps }
        }
        "confidence" => SamplerKind::Confidence {
            threshold: number("threshold")?.unwrap_or(DEFAULT_CONFIDENCE_THRESHOLD),
        },
        "entropy" => SamplerKind::Entropy {
            gamma: number("gamma")?.unwrap_or(DEFAULT_ENTROPY_GAMMA),
        },
        _ => {
            return Err(Error::InvalidArgument(format!(
                "`{text}`: unknown sampler (first-hitting, posterior[:steps], confidence[:threshold], entropy[:gamma])"
            )))
        }
    };
    Ok(kind)
}

/// The setting written back in the form [`parse_setting`] reads.
pub fn setting_name(kind: &SamplerKind) -> String {
    match kind {
        SamplerKind::FirstHitting { .. } => "first-hitting".into(),
        SamplerKind::Posterior { steps } => format!("posterior:{steps}"),
        SamplerKind::Confidence { threshold } => format!("confidence:{threshold}"),
        SamplerKind::Entropy { gamma } => format!("entropy:{gamma}"),
    }
}

/// One generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Prompt (starting with BOS) and generated tokens, whole blocks.
    pub ids: Vec<u32>,
    pub prompt_len: usize,
    /// Model calls it took (commit passes included).
    pub calls: u64,
}

impl Sample {
    pub fn generated(&self) -> &[u32] {
        &self.ids[self.prompt_len.min(self.ids.len())..]
    }
}

/// Generates one sample of `new_tokens` after `prompt` (which starts with BOS).
pub async fn generate<E: Engine>(
    engine: &mut E,
    prompt: Vec<u32>,
    new_tokens: usize,
    opts: SamplingOptions,
    eos: u32,
) -> Result<Sample> {
    let cfg = engine.config().clone();
    let prompt_len = prompt.len();
    let before = engine.forward_count();
    let mut gen = Generator::new(
        cfg.block_size,
        cfg.model_length,
        cfg.mask_id(),
        eos,
        prompt,
        prompt_len + new_tokens,
        opts,
    )?;
    while !matches!(gen.next(engine).await?, Event::Finished { .. }) {}
    Ok(Sample {
        ids: gen.committed().to_vec(),
        prompt_len,
        calls: engine.forward_count() - before,
    })
}

/// The NELBO (nats per generated token) of a sample given its prompt: spec §8.1's estimator
/// with `passes` independent noise draws from `seed`, where prompt positions are never masked
/// (they are context, like the BOS). The sample must fit the model's context.
pub async fn conditional_nelbo<E: EngineProbes>(
    engine: &mut E,
    sample: &Sample,
    passes: usize,
    seed: u64,
) -> Result<f64> {
    let (b, n, mask) = {
        let cfg = engine.config();
        (cfg.block_size, cfg.model_length, cfg.mask_id())
    };
    let len = sample.ids.len();
    let counted = len.saturating_sub(sample.prompt_len.max(1));
    if !len.is_multiple_of(b) || len > n || counted == 0 || passes == 0 {
        return Err(Error::InvalidArgument(format!(
            "a scored sample needs whole blocks within the {n}-token context, a generated token and a pass ({len} tokens, prompt {}, {passes} passes)",
            sample.prompt_len
        )));
    }
    let mut rng = SplitMix64::new(seed);
    let noise = NoiseOptions::default();
    let mut total = 0.0;
    for _ in 0..passes {
        let noised =
            eval::noise_chunks(std::slice::from_ref(&sample.ids), b, mask, &mut rng, &noise);
        for mut chunk in noised {
            unmask_prompt(&mut chunk, sample.prompt_len);
            total += eval::chunk_loss(engine, &chunk).await?;
        }
    }
    Ok(total / passes as f64 / counted as f64)
}

/// Prompt positions are context, never scored.
fn unmask_prompt(chunk: &mut NoisedChunk, prompt_len: usize) {
    let end = prompt_len.min(chunk.noisy.len());
    chunk.noisy[..end].copy_from_slice(&chunk.clean[..end]);
}

/// Mean and the half-width of its 95 % confidence interval (normal approximation).
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let (mean, se) = eval::mean_and_standard_error(values);
    (mean, 1.96 * se)
}

/// The relative change of mean `x` against mean `base` (both `(mean, ci95 half-width)` of
/// independent sample sets), in percent, with the 95 % half-width of that change (the two
/// intervals combined in quadrature, scaled by the base): a change is outside the noise of the
/// estimate when its magnitude exceeds the half-width.
pub fn relative_change_ci95(x: (f64, f64), base: (f64, f64)) -> (f64, f64) {
    let change = 100.0 * (x.0 / base.0 - 1.0);
    let half_width = 100.0 * (x.1 * x.1 + base.1 * base.1).sqrt() / base.0.abs();
    (change, half_width)
}

/// Figures of one setting over its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingStats {
    pub samples: usize,
    pub generated_tokens: usize,
    pub calls_per_token: f64,
    /// Mean NELBO per generated token and its 95 % half-width.
    pub nelbo: (f64, f64),
    /// Mean unigram entropy (nats) of the generated tokens and its 95 % half-width.
    pub unigram_entropy: (f64, f64),
}

/// Summarises samples with their NELBOs (same order).
pub fn summarize(samples: &[Sample], nelbos: &[f64]) -> SettingStats {
    let generated_tokens: usize = samples.iter().map(|s| s.generated().len()).sum();
    let calls: u64 = samples.iter().map(|s| s.calls).sum();
    let entropies: Vec<f64> = samples
        .iter()
        .map(|s| sampler::unigram_entropy(s.generated()))
        .collect();
    SettingStats {
        samples: samples.len(),
        generated_tokens,
        calls_per_token: calls as f64 / generated_tokens.max(1) as f64,
        nelbo: mean_ci95(nelbos),
        unigram_entropy: mean_ci95(&entropies),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_change_combines_both_intervals() {
        let (change, half) = relative_change_ci95((5.15, 0.12), (5.0, 0.16));
        assert!((change - 3.0).abs() < 1e-9, "{change}");
        assert!((half - 4.0).abs() < 1e-9, "{half}");
        let (same, half) = relative_change_ci95((4.0, 0.0), (4.0, 0.0));
        assert_eq!((same, half), (0.0, 0.0));
    }

    #[test]
    fn settings_parse_and_print_back() {
        for text in [
            "first-hitting",
            "posterior:16",
            "confidence:0.9",
            "entropy:0.5",
        ] {
            let kind = parse_setting(text).expect(text);
            assert_eq!(setting_name(&kind), text);
        }
        assert_eq!(
            parse_setting("confidence").expect("default"),
            SamplerKind::Confidence {
                threshold: DEFAULT_CONFIDENCE_THRESHOLD
            }
        );
        for bad in ["nope", "confidence:x", "posterior:-1", "first-hitting:3"] {
            assert!(parse_setting(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prompt_positions_are_never_scored() {
        let mut chunk = NoisedChunk {
            clean: vec![1, 2, 3, 4],
            noisy: vec![1, 9, 9, 9],
            t: vec![0.5],
        };
        unmask_prompt(&mut chunk, 2);
        assert_eq!(chunk.noisy, vec![1, 2, 9, 9]);
    }
}
