//! How far a quantized model's denoiser is from the f32 one on the same inputs (issue 5's
//! quality report): noised evaluation sequences (spec §8.1), every masked position compared
//! through the SUBS distributions (spec §4.5).

use crate::engine::EngineProbes;
use crate::error::Result;
use crate::eval::{block_loss, NoisedChunk};

/// Agreement of one candidate with the reference over all masked positions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QualityStats {
    /// Masked positions compared.
    pub positions: u64,
    /// Positions where both distributions have the same most likely token.
    pub top1_agree: u64,
    pub kl_sum: f64,
    pub kl_max: f64,
    /// Largest |raw logit difference| over every vocabulary entry of the masked rows.
    pub max_logit_err: f64,
    /// Largest gap (nats) between the reference's two most likely tokens at a position where
    /// the top-1 tokens disagree: small values mean disagreements are near-ties.
    pub max_disagreement_gap: f64,
    /// NELBO sums of the reference and the candidate on these inputs (nats).
    pub reference_loss: f64,
    pub candidate_loss: f64,
    /// Tokens the NELBO sums are over (position 0 of each sequence excluded).
    pub tokens: u64,
}

impl QualityStats {
    pub fn top1_agreement(&self) -> f64 {
        self.top1_agree as f64 / self.positions.max(1) as f64
    }

    pub fn kl_mean(&self) -> f64 {
        self.kl_sum / self.positions.max(1) as f64
    }
}

/// `log softmax` of a row with the SUBS MASK penalty, in f64.
fn subs_log_softmax(row: &[f32], mask: usize) -> Vec<f64> {
    let mut x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
    x[mask] += -1e6;
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    x.iter_mut().for_each(|v| *v -= lse);
    x
}

/// Index of the largest entry (lowest index on ties).
fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Compares one masked row of reference and candidate raw logits.
fn compare_row(reference: &[f32], candidate: &[f32], mask: usize, stats: &mut QualityStats) {
    let p = subs_log_softmax(reference, mask);
    let q = subs_log_softmax(candidate, mask);
    let kl: f64 = p
        .iter()
        .zip(&q)
        .filter(|(&lp, _)| lp > -700.0)
        .map(|(&lp, &lq)| lp.exp() * (lp - lq))
        .sum::<f64>()
        .max(0.0);
    stats.positions += 1;
    let top = argmax(&p);
    if top == argmax(&q) {
        stats.top1_agree += 1;
    } else {
        let second = p
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != top)
            .fold(f64::NEG_INFINITY, |m, (_, &v)| m.max(v));
        stats.max_disagreement_gap = stats.max_disagreement_gap.max(p[top] - second);
    }
    stats.kl_sum += kl;
    stats.kl_max = stats.kl_max.max(kl);
    let err = reference
        .iter()
        .zip(candidate)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    stats.max_logit_err = stats.max_logit_err.max(err);
}

/// Runs the reference and every candidate on the same noised sequences (each engine keeps its
/// own cache of the clean prefix) and accumulates the statistics per candidate.
/// `progress(done, total)` is called after each sequence.
pub async fn compare_engines<R: EngineProbes, C: EngineProbes>(
    reference: &mut R,
    candidates: &mut [C],
    noised: &[NoisedChunk],
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<QualityStats>> {
    let (v, b, mask) = {
        let cfg = reference.config();
        (cfg.vocab_size, cfg.block_size, cfg.mask_id())
    };
    let mut stats = vec![QualityStats::default(); candidates.len()];
    for (i, chunk) in noised.iter().enumerate() {
        let mut reference_logits = Vec::new();
        crate::eval::for_each_noisy_block(reference, chunk, |block, _, logits| {
            reference_logits.push((block, logits));
        })
        .await?;
        for (candidate, st) in candidates.iter_mut().zip(stats.iter_mut()) {
            let mut next = reference_logits.iter();
            let mut failure = None;
            crate::eval::for_each_noisy_block(candidate, chunk, |block, noisy, mut logits| {
                let Some((ref_block, ref_logits)) = next.next() else {
                    failure = Some(block);
                    return;
                };
                if *ref_block != block {
                    failure = Some(block);
                    return;
                }
                for (r, &z) in noisy.iter().enumerate() {
                    if z == mask {
                        let row = r * v..(r + 1) * v;
                        compare_row(&ref_logits[row.clone()], &logits[row], mask as usize, st);
                    }
                }
                let clean = &chunk.clean[block * b..(block + 1) * b];
                let t = chunk.t[block];
                st.reference_loss += block_loss(&mut ref_logits.clone(), noisy, clean, t, v, mask);
                st.candidate_loss += block_loss(&mut logits, noisy, clean, t, v, mask);
            })
            .await?;
            if let Some(block) = failure {
                return Err(crate::Error::Backend(format!(
                    "sequence {i}: the engines disagree on which blocks are noisy (block {block})"
                )));
            }
            st.tokens += (chunk.clean.len() - 1) as u64;
        }
        progress(i + 1, noised.len());
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_rows_agree_with_zero_kl() {
        let row = vec![0.5f32, 2.0, -1.0, 3.0];
        let mut st = QualityStats::default();
        compare_row(&row, &row, 3, &mut st);
        assert_eq!((st.positions, st.top1_agree), (1, 1));
        assert_eq!(st.kl_sum, 0.0);
        assert_eq!(st.max_logit_err, 0.0);
    }

    #[test]
    fn kl_of_a_known_pair() {
        // MASK is column 2; the others are p = (0.5, 0.5) and q = (e/(1+e), 1/(1+e)).
        let p = vec![0.0f32, 0.0, 5.0];
        let q = vec![1.0f32, 0.0, 5.0];
        let mut st = QualityStats::default();
        compare_row(&p, &q, 2, &mut st);
        let q0 = 1f64.exp() / (1.0 + 1f64.exp());
        let expected = 0.5 * (0.5 / q0).ln() + 0.5 * (0.5 / (1.0 - q0)).ln();
        assert!(
            (st.kl_sum - expected).abs() < 1e-9,
            "{} vs {expected}",
            st.kl_sum
        );
        assert_eq!(st.top1_agree, 1, "tie in p resolves to index 0, as does q");
        assert_eq!(st.max_logit_err, 1.0);
    }
}
