//! The generation controls as typed into the page, checked and turned into sampler options.
//! Every rejection says which field is wrong and what it accepts.

use bd3lm::generate::{DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_ENTROPY_GAMMA};
use bd3lm::{SamplerKind, SamplingOptions};

/// Most tokens one run may ask for (the sliding window allows any length; this bounds the
/// page's memory for the text and keeps a typo from starting an hour-long run).
pub const MAX_NEW_TOKENS: usize = 100_000;
pub const MAX_POSTERIOR_STEPS: usize = 5000;
pub const MAX_PACE_MS: i32 = 2000;

pub const FIRST_HITTING: &str = "first-hitting";
pub const POSTERIOR: &str = "posterior";
pub const CONFIDENCE: &str = "confidence";
pub const ENTROPY: &str = "entropy";

/// The raw field values.
#[derive(Debug, Clone, PartialEq)]
pub struct FormValues {
    pub tokens: String,
    pub sampler: String,
    pub steps: String,
    /// Confidence sampler: probability a drawn token needs to be revealed.
    pub threshold: String,
    /// Entropy sampler: bound on summed entropy minus the largest (nats).
    pub gamma: String,
    pub top_p: String,
    pub seed: String,
    pub random_seed: bool,
    pub pace_ms: String,
}

impl Default for FormValues {
    fn default() -> Self {
        FormValues {
            tokens: "128".into(),
            sampler: FIRST_HITTING.into(),
            steps: "8".into(),
            threshold: DEFAULT_CONFIDENCE_THRESHOLD.to_string(),
            gamma: DEFAULT_ENTROPY_GAMMA.to_string(),
            top_p: "0.9".into(),
            seed: "1".into(),
            random_seed: true,
            pace_ms: "60".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub new_tokens: usize,
    pub sampling: SamplingOptions,
    pub pace_ms: i32,
}

fn parse_number<T: std::str::FromStr>(
    field: &str,
    value: &str,
    accepts: &str,
) -> Result<T, String> {
    value
        .trim()
        .parse::<T>()
        .map_err(|_| format!("{field}: `{}` is not {accepts}.", value.trim()))
}

/// Checks the form. `block_size` is the model's; `random_seed` draws a seed when asked for.
pub fn parse(
    form: &FormValues,
    block_size: usize,
    random_seed: impl FnOnce() -> u64,
) -> Result<Parsed, String> {
    let new_tokens: usize = parse_number("Tokens", &form.tokens, "a whole number")?;
    if !(1..=MAX_NEW_TOKENS).contains(&new_tokens) {
        return Err(format!(
            "Tokens: ask for 1 to {MAX_NEW_TOKENS} tokens (got {new_tokens})."
        ));
    }
    let sampler = match form.sampler.as_str() {
        // One token per model call, so exactly `block_size` calls per block.
        FIRST_HITTING => SamplerKind::FirstHitting {
            max_steps: block_size,
        },
        POSTERIOR => {
            let steps: usize = parse_number("Steps per block", &form.steps, "a whole number")?;
            if !(1..=MAX_POSTERIOR_STEPS).contains(&steps) {
                return Err(format!(
                    "Steps per block: use 1 to {MAX_POSTERIOR_STEPS} (got {steps})."
                ));
            }
            SamplerKind::Posterior { steps }
        }
        CONFIDENCE => {
            let threshold: f64 = parse_number("Threshold", &form.threshold, "a number")?;
            if !(threshold > 0.0 && threshold <= 1.0) {
                return Err(format!(
                    "Threshold: use a probability above 0 and at most 1 (got {threshold})."
                ));
            }
            SamplerKind::Confidence { threshold }
        }
        ENTROPY => {
            let gamma: f64 = parse_number("Entropy bound", &form.gamma, "a number")?;
            if !(gamma >= 0.0 && gamma.is_finite()) {
                return Err(format!(
                    "Entropy bound: use a number of nats of at least 0 (got {gamma})."
                ));
            }
            SamplerKind::Entropy { gamma }
        }
        other => {
            return Err(format!(
                "Sampler: `{other}` is not one of {FIRST_HITTING}, {POSTERIOR}, {CONFIDENCE}, {ENTROPY}."
            ))
        }
    };
    let nucleus_p: f64 = parse_number("Top-p", &form.top_p, "a number")?;
    if !(nucleus_p > 0.0 && nucleus_p <= 1.0) {
        return Err(format!(
            "Top-p: use a number above 0 and at most 1 (got {nucleus_p}); 1 turns the filter off."
        ));
    }
    let seed = if form.random_seed {
        random_seed()
    } else {
        parse_number(
            "Seed",
            &form.seed,
            "a whole number from 0 to 18446744073709551615",
        )?
    };
    let pace_ms: i32 = parse_number(
        "Pause per step",
        &form.pace_ms,
        "a whole number of milliseconds",
    )?;
    if !(0..=MAX_PACE_MS).contains(&pace_ms) {
        return Err(format!(
            "Pause per step: use 0 to {MAX_PACE_MS} ms (got {pace_ms})."
        ));
    }
    let sampling = SamplingOptions {
        sampler,
        nucleus_p,
        seed,
        ..SamplingOptions::default()
    };
    Ok(Parsed {
        new_tokens,
        sampling,
        pace_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_to_the_papers_sampler() {
        let parsed = parse(&FormValues::default(), 4, || 42).expect("defaults are valid");
        assert_eq!(parsed.new_tokens, 128);
        assert_eq!(
            parsed.sampling.sampler,
            SamplerKind::FirstHitting { max_steps: 4 }
        );
        assert_eq!(parsed.sampling.nucleus_p, 0.9);
        assert_eq!(parsed.sampling.seed, 42, "random seed drawn");
        assert_eq!(parsed.pace_ms, 60);
    }

    #[test]
    fn posterior_fixed_seed_and_long_runs() {
        let form = FormValues {
            tokens: " 2048 ".into(),
            sampler: POSTERIOR.into(),
            steps: "16".into(),
            seed: "7".into(),
            random_seed: false,
            top_p: "1".into(),
            pace_ms: "0".into(),
            ..FormValues::default()
        };
        let parsed = parse(&form, 16, || unreachable!("no random seed asked for")).expect("valid");
        assert_eq!(parsed.new_tokens, 2048, "beyond 1024 tokens is allowed");
        assert_eq!(
            parsed.sampling.sampler,
            SamplerKind::Posterior { steps: 16 }
        );
        assert_eq!(parsed.sampling.seed, 7);
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |f: fn(&mut FormValues)| {
            let mut form = FormValues {
                random_seed: false,
                ..FormValues::default()
            };
            f(&mut form);
            parse(&form, 4, || 0).expect_err("rejected")
        };
        assert!(bad(|f| f.tokens = "0".into()).starts_with("Tokens"));
        assert!(bad(|f| f.tokens = "ten".into()).starts_with("Tokens"));
        assert!(bad(|f| f.top_p = "1.5".into()).starts_with("Top-p"));
        assert!(bad(|f| f.top_p = "0".into()).starts_with("Top-p"));
        assert!(bad(|f| f.seed = "-3".into()).starts_with("Seed"));
        assert!(bad(|f| {
            f.sampler = POSTERIOR.into();
            f.steps = "0".into()
        })
        .starts_with("Steps"));
        assert!(bad(|f| f.pace_ms = "9000".into()).starts_with("Pause"));
        assert!(bad(|f| {
            f.sampler = CONFIDENCE.into();
            f.threshold = "0".into()
        })
        .starts_with("Threshold"));
        assert!(bad(|f| {
            f.sampler = ENTROPY.into();
            f.gamma = "-0.5".into()
        })
        .starts_with("Entropy bound"));
        assert!(bad(|f| f.sampler = "greedy".into()).starts_with("Sampler"));
    }

    #[test]
    fn parallel_samplers_parse_with_their_own_field() {
        let form = |sampler: &str| FormValues {
            sampler: sampler.into(),
            threshold: "0.7".into(),
            gamma: "1.5".into(),
            ..FormValues::default()
        };
        let conf = parse(&form(CONFIDENCE), 4, || 1).expect("valid");
        assert_eq!(
            conf.sampling.sampler,
            SamplerKind::Confidence { threshold: 0.7 }
        );
        let ent = parse(&form(ENTROPY), 4, || 1).expect("valid");
        assert_eq!(ent.sampling.sampler, SamplerKind::Entropy { gamma: 1.5 });
    }
}
