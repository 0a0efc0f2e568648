//! Long runs (docs/reliability.md): many consecutive generations on one engine, each planned
//! from its index alone, so any of them can be repeated later, on the same engine or a fresh
//! one, and its tokens compared.
//!
//! The mix rotates through the prompts, through lengths from one block to well past the
//! model's context (the KV cache slides), through every sampler with a few settings each, and
//! stops every `stop_every`-th run in the middle of a block: the generator is dropped after a
//! step that leaves masks in its block, as a page's Stop or a closed connection does, and the
//! next run starts on the same engine. A run's tokens are kept only as a 64-bit fingerprint,
//! so a long run holds no per-run memory beyond a fixed-size record.

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::generate::{Event, FinishReason, Generator, SamplerKind, SamplingOptions};

/// What to mix: prompts, lengths and samplers, and how often to stop in mid-block.
#[derive(Debug, Clone)]
pub struct Mix {
    pub block_size: usize,
    pub model_length: usize,
    pub mask: u32,
    pub eos: u32,
    /// Token-id prompts, each starting with BOS and shorter than the context.
    pub prompts: Vec<Vec<u32>>,
    /// New tokens per run (rotated; the generator rounds up to whole blocks).
    pub lengths: Vec<usize>,
    pub samplers: Vec<SamplerKind>,
    /// Every `stop_every`-th run (indices `stop_every - 1`, `2 * stop_every - 1`, ...) stops
    /// in mid-block; 0: never.
    pub stop_every: usize,
}

/// The samplers of a standard mix: first hitting (with a cap that is the block size, and a
/// larger one), the posterior on two grids, confidence at two thresholds and, where the
/// engine reports entropies, the entropy bound at two values.
pub fn standard_samplers(block_size: usize, entropy: bool) -> Vec<SamplerKind> {
    let mut s = vec![
        SamplerKind::FirstHitting {
            max_steps: block_size,
        },
        SamplerKind::Posterior { steps: 6 },
        SamplerKind::Confidence { threshold: 0.9 },
        SamplerKind::FirstHitting { max_steps: 5000 },
        SamplerKind::Posterior { steps: 16 },
        SamplerKind::Confidence { threshold: 0.3 },
    ];
    if entropy {
        s.insert(3, SamplerKind::Entropy { gamma: 0.5 });
        s.push(SamplerKind::Entropy { gamma: 2.0 });
    }
    s
}

/// Lengths of a standard mix for a model of context `n`: one block, short, about half the
/// context, just past it, and 2.5 times it.
pub fn standard_lengths(block_size: usize, n: usize) -> Vec<usize> {
    vec![
        block_size,
        (n / 8).max(block_size),
        n / 2,
        n + n / 16,
        5 * n / 2,
    ]
}

/// One run, planned from its index.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub index: usize,
    /// Index into [`Mix::prompts`].
    pub prompt: usize,
    pub new_tokens: usize,
    pub sampling: SamplingOptions,
    /// Stop in mid-block: after the first step that leaves masks in its block, in this
    /// generated block (0: the first block after the prompt) or a later one.
    pub stop_in_block: Option<usize>,
}

/// What one run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRecord {
    pub index: usize,
    /// FNV-1a of the tokens when the run ended (prompt, committed blocks and, for a run
    /// stopped in mid-block, its partly masked block).
    pub fingerprint: u64,
    /// Length of that token sequence.
    pub tokens: usize,
    /// Denoising steps the run took.
    pub steps: usize,
    /// `None` when the run was stopped.
    pub finish: Option<FinishReason>,
    /// Stopped after a step that left masks in its block.
    pub stopped_mid_block: bool,
    /// The sequence grew past the model's context, so the KV cache slid.
    pub past_context: bool,
}

impl Mix {
    /// A mix of every prompt, the standard lengths and the standard samplers, stopping every
    /// 10th run in mid-block.
    pub fn standard(cfg: &Config, eos: u32, prompts: Vec<Vec<u32>>, entropy: bool) -> Result<Mix> {
        let mix = Mix {
            block_size: cfg.block_size,
            model_length: cfg.model_length,
            mask: cfg.mask_id(),
            eos,
            prompts,
            lengths: standard_lengths(cfg.block_size, cfg.model_length),
            samplers: standard_samplers(cfg.block_size, entropy),
            stop_every: 10,
        };
        mix.check()?;
        Ok(mix)
    }

    fn check(&self) -> Result<()> {
        if self.prompts.is_empty() || self.lengths.is_empty() || self.samplers.is_empty() {
            return Err(Error::InvalidArgument(
                "a long-run mix needs prompts, lengths and samplers".into(),
            ));
        }
        Ok(())
    }

    /// The plan of run `index`: prompts, lengths and samplers rotate at different rates, so
    /// their combinations vary; every run has its own seed.
    pub fn spec(&self, index: usize) -> RunSpec {
        let stop = self.stop_every > 0 && index % self.stop_every == self.stop_every - 1;
        // Stopped runs rotate by their own count, so they too meet every sampler and length.
        let k = if stop { index / self.stop_every } else { index };
        let (ns, nl) = (self.samplers.len(), self.lengths.len());
        let new_tokens = self.lengths[(k + k / ns) % nl];
        // A stopped run needs a step that leaves masks in its block: a parallel sampler may
        // reveal every block in one step, so stopped runs rotate through the others.
        let stepwise: Vec<SamplerKind> = self
            .samplers
            .iter()
            .copied()
            .filter(|s| !s.is_parallel())
            .collect();
        let sampler = if stop && !stepwise.is_empty() {
            stepwise[k % stepwise.len()]
        } else {
            self.samplers[k % ns]
        };
        RunSpec {
            index,
            prompt: (index / 3) % self.prompts.len(),
            new_tokens,
            sampling: SamplingOptions {
                sampler,
                nucleus_p: [0.9, 1.0, 0.95][(index / 7) % 3],
                seed: (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xB3D3,
                // Every 13th run may end early at a second EOS (not one meant to stop in
                // mid-block: it could end before its block).
                stop_at_eos: index % 13 == 5 && !stop,
                ..SamplingOptions::default()
            },
            // Somewhere in the run's first half (a block the run reaches whatever its length).
            stop_in_block: stop.then(|| {
                let blocks = new_tokens.div_ceil(self.block_size).max(1);
                (index * 37) % blocks.div_ceil(2)
            }),
        }
    }

    /// Runs `spec` on `engine` to its end, or to its stop in mid-block.
    pub async fn run<E: Engine>(&self, engine: &mut E, spec: &RunSpec) -> Result<RunRecord> {
        let prompt = self.prompts[spec.prompt].clone();
        let total = prompt.len() + spec.new_tokens;
        // The first block that holds a generated position.
        let first_block = prompt.len() / self.block_size;
        let mut generator = Generator::new(
            self.block_size,
            self.model_length,
            self.mask,
            self.eos,
            prompt,
            total,
            spec.sampling.clone(),
        )?;
        let mut steps = 0;
        let mut finish = None;
        let mut stopped_mid_block = false;
        loop {
            match generator.next(engine).await? {
                Event::Step { block, tokens, .. } => {
                    steps += 1;
                    let masks_left = tokens.contains(&self.mask);
                    let reached = spec
                        .stop_in_block
                        .is_some_and(|target| block >= first_block + target);
                    if masks_left && reached {
                        // Dropped mid-block: the engine has run this block's steps (a GPU
                        // may have run all of them) but committed nothing of it.
                        stopped_mid_block = true;
                        break;
                    }
                }
                Event::Finished { reason } => {
                    finish = Some(reason);
                    break;
                }
                _ => {}
            }
        }
        let tokens = generator.tokens();
        Ok(RunRecord {
            index: spec.index,
            fingerprint: fingerprint(&tokens),
            tokens: tokens.len(),
            steps,
            finish,
            stopped_mid_block,
            past_context: tokens.len() > self.model_length,
        })
    }
}

/// FNV-1a (64-bit) of a token sequence.
pub fn fingerprint(tokens: &[u32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for t in tokens {
        for byte in t.to_le_bytes() {
            h ^= byte as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Token-id prompts for a model without a tokenizer: BOS alone, then BOS followed by
/// `lengths` ids drawn from the vocabulary (MASK and BOS left out), deterministic.
pub fn synthetic_prompts(cfg: &Config, bos: u32, lengths: &[usize]) -> Vec<Vec<u32>> {
    let mut rng = crate::rng::SplitMix64::new(0x10C0_5EED);
    let ordinary = cfg.vocab_size.saturating_sub(2).max(1);
    let mut prompts = vec![vec![bos]];
    for &n in lengths {
        let mut p = vec![bos];
        p.extend((0..n).map(|_| rng.below(ordinary) as u32));
        prompts.push(p);
    }
    prompts
}

/// A memory figure of this process in bytes from Linux's `/proc/self/status` (`"VmRSS"`:
/// resident now, `"VmHWM"`: peak resident so far); `None` where there is no such file (other
/// systems, the browser).
pub fn process_memory_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field_bytes(&status, field)
}

/// The `field:` line of a `/proc/<pid>/status` text, in bytes (the file gives kB).
pub fn status_field_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tbd3lm\nVmHWM:\t  25200 kB\nVmRSS:\t   25700 kB\nVmRSSx: 1 kB\n";
        assert_eq!(status_field_bytes(status, "VmRSS"), Some(25_700 * 1024));
        assert_eq!(status_field_bytes(status, "VmHWM"), Some(25_200 * 1024));
        assert_eq!(status_field_bytes(status, "VmSwap"), None);
        assert_eq!(status_field_bytes("VmRSS: lots kB", "VmRSS"), None);
    }
    use super::*;

    fn cfg() -> Config {
        let mut c = Config::released(4);
        c.model_length = 64;
        c.vocab_size = 512;
        c
    }

    #[test]
    fn every_tenth_run_stops_and_the_mix_covers_every_sampler_length_and_prompt() {
        let c = cfg();
        let prompts = synthetic_prompts(&c, 510, &[3, 9, 30]);
        let mix = Mix::standard(&c, 510, prompts, true).unwrap();
        let specs: Vec<RunSpec> = (0..200).map(|i| mix.spec(i)).collect();
        let stops: Vec<usize> = specs
            .iter()
            .filter(|s| s.stop_in_block.is_some())
            .map(|s| s.index)
            .collect();
        assert_eq!(stops, (0..20).map(|k| 10 * k + 9).collect::<Vec<_>>());
        for s in &mix.samplers {
            assert!(specs.iter().any(|x| x.sampling.sampler == *s), "{s:?}");
            // Stopped runs use every sampler that reveals one token per step or by a grid.
            let stopped = specs
                .iter()
                .any(|x| x.sampling.sampler == *s && x.stop_in_block.is_some());
            assert_eq!(stopped, !s.is_parallel(), "stopped {s:?}");
        }
        for l in &mix.lengths {
            assert!(specs.iter().any(|x| x.new_tokens == *l), "length {l}");
        }
        for p in 0..mix.prompts.len() {
            assert!(specs.iter().any(|x| x.prompt == p), "prompt {p}");
        }
        assert!(mix.lengths.iter().any(|&l| l > c.model_length));
        let seeds: std::collections::BTreeSet<u64> =
            specs.iter().map(|s| s.sampling.seed).collect();
        assert_eq!(seeds.len(), specs.len(), "every run has its own seed");
        assert_eq!(mix.spec(77), specs[77], "a spec depends on its index alone");
    }

    #[test]
    fn fingerprints_tell_sequences_apart() {
        assert_ne!(fingerprint(&[1, 2]), fingerprint(&[2, 1]));
        assert_ne!(fingerprint(&[0]), fingerprint(&[]));
        assert_eq!(fingerprint(&[7, 8, 9]), fingerprint(&[7, 8, 9]));
    }
}
