//! The BD3-LM likelihood bound of spec §8.1: the block-diffusion NELBO per token, estimated
//! with one noise level per block (antithetic over `batch x blocks` draws), tokens masked
//! independently with probability `t`, loss `-(1/t) log p(x0)` on masked tokens (SUBS),
//! position 0 (BOS) never masked nor counted.
//!
//! The training form `[x_t ; x_0]` gives noisy block b the clean blocks `0..b-1` as context
//! (spec §6.1), which is exactly a KV cache holding those clean blocks (spec §6.3), so any
//! [`EngineProbes`] engine computes the bound with `logits` (noisy block) and `commit` (its clean version).

use crate::engine::EngineProbes;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::sampler;

/// Noise-level interval and antithetic batch of the estimator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseOptions {
    /// The unclipped interval of the bound: `t ∈ [eps_min, eps_max]` (spec §8.1: 1e-3, 1).
    pub eps_min: f64,
    pub eps_max: f64,
    /// Sequences per antithetic batch (the reference evaluation used 16).
    pub batch: usize,
}

impl Default for NoiseOptions {
    fn default() -> Self {
        NoiseOptions {
            eps_min: 1e-3,
            eps_max: 1.0,
            batch: 16,
        }
    }
}

/// Cuts a token stream into the reference's evaluation sequences: consecutive chunks of
/// `model_length - 2` tokens, each wrapped as `[BOS] + chunk + [EOS]`, the last partial chunk
/// dropped. The stream is the documents' tokens each followed by EOS; an EOS is appended when
/// the text does not end with one.
pub fn make_chunks(ids: &[u32], model_length: usize, bos: u32, eos: u32) -> Result<Vec<Vec<u32>>> {
    if model_length < 3 {
        return Err(Error::InvalidArgument(format!(
            "model_length {model_length} leaves no room for tokens between BOS and EOS"
        )));
    }
    let mut stream = ids.to_vec();
    if stream.last() != Some(&eos) {
        stream.push(eos);
    }
    let body = model_length - 2;
    Ok(stream
        .chunks_exact(body)
        .map(|chunk| {
            let mut seq = Vec::with_capacity(model_length);
            seq.push(bos);
            seq.extend_from_slice(chunk);
            seq.push(eos);
            seq
        })
        .collect())
}

/// `n` indices spread evenly over `0..total` (all of them when `n >= total`).
pub fn spread_indices(total: usize, n: usize) -> Vec<usize> {
    if n >= total {
        return (0..total).collect();
    }
    (0..n).map(|i| i * total / n).collect()
}

/// One evaluation sequence after the forward noising process.
#[derive(Debug, Clone, PartialEq)]
pub struct NoisedChunk {
    pub clean: Vec<u32>,
    pub noisy: Vec<u32>,
    /// Noise level of each block.
    pub t: Vec<f64>,
}

impl NoisedChunk {
    pub fn masked_count(&self, mask: u32) -> usize {
        self.noisy.iter().filter(|&&x| x == mask).count()
    }
}

/// Draws noise levels and masks for `chunks` (spec §8.1 steps 1–2) from a SplitMix64 stream:
/// per batch of `opts.batch` sequences, `K = batch x blocks` uniforms `u_k` become
/// `t_k = eps_min + ((u_k + k) / K mod 1) (eps_max - eps_min)`, then each token but position 0
/// is masked when its uniform is `< t` of its block.
pub fn noise_chunks(
    chunks: &[Vec<u32>],
    block_size: usize,
    mask: u32,
    rng: &mut SplitMix64,
    opts: &NoiseOptions,
) -> Vec<NoisedChunk> {
    let mut out = Vec::with_capacity(chunks.len());
    for batch in chunks.chunks(opts.batch.max(1)) {
        let blocks: Vec<usize> = batch.iter().map(|c| c.len() / block_size).collect();
        let k_total: usize = blocks.iter().sum();
        let mut k = 0usize;
        let mut levels = Vec::with_capacity(batch.len());
        for &n in &blocks {
            let t: Vec<f64> = (0..n)
                .map(|_| {
                    let u = rng.next_f64();
                    let frac = ((u + k as f64) / k_total as f64).fract();
                    k += 1;
                    opts.eps_min + frac * (opts.eps_max - opts.eps_min)
                })
                .collect();
            levels.push(t);
        }
        for (clean, t) in batch.iter().zip(levels) {
            let noisy = clean
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let masked = i > 0 && rng.next_f64() < t[i / block_size];
                    if masked {
                        mask
                    } else {
                        x
                    }
                })
                .collect();
            out.push(NoisedChunk {
                clean: clean.clone(),
                noisy,
                t,
            });
        }
    }
    out
}

/// Runs `visit(block_index, noisy_block, raw_logits)` for every block of a noised chunk that
/// has a masked token, committing each clean block as context for the next (blocks without
/// masks contribute nothing to the bound and are not run).
pub async fn for_each_noisy_block<E: EngineProbes>(
    engine: &mut E,
    chunk: &NoisedChunk,
    mut visit: impl FnMut(usize, &[u32], Vec<f32>),
) -> Result<()> {
    let cfg = engine.config();
    let (b, mask) = (cfg.block_size, cfg.mask_id());
    let blocks = chunk.clean.len() / b;
    engine.reset();
    for block in 0..blocks {
        let range = block * b..(block + 1) * b;
        let noisy = &chunk.noisy[range.clone()];
        if noisy.contains(&mask) {
            let logits = engine.logits(noisy).await?;
            visit(block, noisy, logits);
        }
        if block + 1 < blocks {
            engine.commit(&chunk.clean[range]).await?;
        }
    }
    Ok(())
}

/// `sum over masked tokens of -(1/t) log p(x0)` for one block, from its raw logits.
pub fn block_loss(
    logits: &mut [f32],
    noisy: &[u32],
    clean: &[u32],
    t: f64,
    vocab: usize,
    mask: u32,
) -> f64 {
    sampler::subs_log_probs(logits, noisy, vocab, mask);
    noisy
        .iter()
        .zip(clean)
        .enumerate()
        .filter(|(_, (&z, _))| z == mask)
        .map(|(r, (_, &x0))| -(logits[r * vocab + x0 as usize] as f64) / t)
        .sum()
}

/// Sum of the per-token losses of one noised chunk.
pub async fn chunk_loss<E: EngineProbes>(engine: &mut E, chunk: &NoisedChunk) -> Result<f64> {
    let (v, b, mask) = {
        let cfg = engine.config();
        (cfg.vocab_size, cfg.block_size, cfg.mask_id())
    };
    let mut total = 0.0;
    for_each_noisy_block(engine, chunk, |block, noisy, mut logits| {
        let clean = &chunk.clean[block * b..(block + 1) * b];
        total += block_loss(&mut logits, noisy, clean, chunk.t[block], v, mask);
    })
    .await?;
    Ok(total)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// Independent draws of noise levels and masks per sequence; the results are averaged.
    pub passes: usize,
    pub seed: u64,
    pub noise: NoiseOptions,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            passes: 1,
            seed: 0,
            noise: NoiseOptions::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// The bound: total loss / counted tokens (every position but 0 of every sequence).
    pub nats_per_token: f64,
    /// Each sequence's own NELBO per token (averaged over passes), in input order.
    pub per_chunk: Vec<f64>,
    /// Standard error of `nats_per_token` from the spread of `per_chunk` (sd / sqrt(n));
    /// covers both the noise of the estimator and the sequences' differing difficulty.
    pub standard_error: f64,
    pub tokens_counted: u64,
    pub passes: usize,
}

impl EvalResult {
    pub fn perplexity_bound(&self) -> f64 {
        self.nats_per_token.exp()
    }
}

/// Mean and standard error of the mean of `values`.
pub fn mean_and_standard_error(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::INFINITY);
    }
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// The NELBO of spec §8.1 over `chunks` (sequences of `model_length` tokens starting with
/// BOS). `progress(done, total)` is called after every sequence of every pass.
pub async fn nelbo<E: EngineProbes>(
    engine: &mut E,
    chunks: &[Vec<u32>],
    opts: &EvalOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalResult> {
    let (n, b, mask) = {
        let cfg = engine.config();
        (cfg.model_length, cfg.block_size, cfg.mask_id())
    };
    if chunks.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no evaluation sequence: the text has fewer than {} tokens",
            n - 2
        )));
    }
    if let Some(bad) = chunks.iter().find(|c| c.len() != n) {
        return Err(Error::InvalidArgument(format!(
            "evaluation sequences must have model_length = {n} tokens, got {}",
            bad.len()
        )));
    }
    if opts.passes == 0 {
        return Err(Error::InvalidArgument("--passes must be at least 1".into()));
    }
    let mut rng = SplitMix64::new(opts.seed);
    let mut sums = vec![0.0; chunks.len()];
    let total = chunks.len() * opts.passes;
    for pass in 0..opts.passes {
        let noised = noise_chunks(chunks, b, mask, &mut rng, &opts.noise);
        for (i, chunk) in noised.iter().enumerate() {
            sums[i] += chunk_loss(engine, chunk).await?;
            progress(pass * chunks.len() + i + 1, total);
        }
    }
    let counted = (n - 1) as f64;
    let per_chunk: Vec<f64> = sums
        .iter()
        .map(|s| s / opts.passes as f64 / counted)
        .collect();
    let (mean, standard_error) = mean_and_standard_error(&per_chunk);
    Ok(EvalResult {
        nats_per_token: mean,
        per_chunk,
        standard_error,
        tokens_counted: (chunks.len() * (n - 1)) as u64,
        passes: opts.passes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_wrap_bos_and_eos_and_drop_the_partial_tail() {
        let ids: Vec<u32> = (1..=9).collect();
        let chunks = make_chunks(&ids, 6, 0, 0).unwrap();
        // 9 ids + appended EOS = 10 tokens -> two chunks of 4, 2 dropped.
        assert_eq!(chunks, vec![vec![0, 1, 2, 3, 4, 0], vec![0, 5, 6, 7, 8, 0]]);
        let with_eos: Vec<u32> = vec![5, 6, 7, 99];
        assert_eq!(
            make_chunks(&with_eos, 6, 0, 99).unwrap(),
            vec![vec![0, 5, 6, 7, 99, 99]]
        );
    }

    #[test]
    fn antithetic_levels_cover_each_stratum_once() {
        let chunks = vec![vec![1u32; 16]; 4];
        let mut rng = SplitMix64::new(3);
        let opts = NoiseOptions {
            eps_min: 0.0,
            eps_max: 1.0,
            batch: 4,
        };
        let noised = noise_chunks(&chunks, 4, 9, &mut rng, &opts);
        let mut strata: Vec<usize> = noised
            .iter()
            .flat_map(|c| c.t.iter().map(|t| (t * 16.0) as usize))
            .collect();
        strata.sort();
        assert_eq!(
            strata,
            (0..16).collect::<Vec<_>>(),
            "one level per 1/K stratum"
        );
        assert!(
            noised.iter().all(|c| c.noisy[0] == 1),
            "position 0 is never masked"
        );
    }

    #[test]
    fn masking_rate_follows_t() {
        let chunks = vec![vec![1u32; 4000]];
        let mut rng = SplitMix64::new(11);
        let opts = NoiseOptions {
            eps_min: 0.3,
            eps_max: 0.3,
            batch: 1,
        };
        let noised = noise_chunks(&chunks, 4000, 9, &mut rng, &opts);
        let rate = noised[0].masked_count(9) as f64 / 3999.0;
        // Binomial(3999, 0.3): sd 0.0072; 5 sd.
        assert!((rate - 0.3).abs() < 0.036, "{rate}");
    }

    /// With a zero LM head every masked token has probability 1/(V-1), so the bound's
    /// expectation is exactly ln(V-1) per token: masking with probability t and weighting by
    /// 1/t cancel. Checks the estimator's weighting, masking and counting end to end.
    #[test]
    fn uninformed_model_scores_log_vocab() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tiny-v512-bs4");
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let mut weights = crate::checkpoint::load_hf(
            &config,
            &std::fs::read(dir.join("model.safetensors")).unwrap(),
        )
        .unwrap();
        let (v, h) = (weights.config.vocab_size, weights.config.hidden_dim);
        weights.lm_head = crate::quant::Matrix::from_f32(v, h, vec![0.0; v * h]);
        weights.lm_head_bias = vec![0.0; v];
        let mut engine = crate::ReferenceEngine::new(&weights);
        let n = weights.config.model_length;
        let mut rng = SplitMix64::new(5);
        let chunks: Vec<Vec<u32>> = (0..48)
            .map(|_| {
                std::iter::once(510)
                    .chain((1..n).map(|_| rng.below(510) as u32))
                    .collect()
            })
            .collect();
        let opts = EvalOptions {
            passes: 2,
            seed: 1,
            ..EvalOptions::default()
        };
        let result = pollster::block_on(nelbo(&mut engine, &chunks, &opts, |_, _| {})).unwrap();
        let expected = ((v - 1) as f64).ln();
        assert!(result.standard_error < 0.1 * expected, "{result:?}");
        assert!(
            (result.nats_per_token - expected).abs() < 4.0 * result.standard_error,
            "{} ± {} vs {expected}",
            result.nats_per_token,
            result.standard_error
        );
        assert_eq!(result.tokens_counted, 48 * (n as u64 - 1));
        let again = pollster::block_on(nelbo(&mut engine, &chunks, &opts, |_, _| {})).unwrap();
        assert_eq!(again, result, "deterministic per seed");
        let other = EvalOptions { seed: 2, ..opts };
        let other = pollster::block_on(nelbo(&mut engine, &chunks, &other, |_, _| {})).unwrap();
        assert_ne!(other.nats_per_token, result.nats_per_token);
    }

    #[test]
    fn standard_error_of_known_values() {
        let (m, se) = mean_and_standard_error(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((se - 0.6454972243679028).abs() < 1e-12);
    }
}
