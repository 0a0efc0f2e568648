//! The reference sampling math on the CPU, in f64 where the reference uses f64 (spec §4.5, §9):
//! SUBS log-probs, the nucleus filter, the posterior (DDPM) row and the exponential race.

use crate::rng;

/// SUBS post-processing in place (spec §4.5): `-1e6` added to the MASK logit, log-softmax,
/// rows of clean tokens become exact one-hots (0 at the token, -1e6 elsewhere).
pub fn subs_log_probs(logits: &mut [f32], block: &[u32], vocab: usize, mask: u32) {
    for (row, &token) in logits.chunks_exact_mut(vocab).zip(block) {
        row[mask as usize] += -1e6f32;
        if token != mask {
            row.fill(-1e6);
            row[token as usize] = 0.0;
            continue;
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
        let lse = max as f64 + sum.ln();
        for x in row.iter_mut() {
            *x = (*x as f64 - lse) as f32;
        }
    }
}

/// `p_x0 = exp(f64(logp))` for one row.
pub fn probs_from_log_probs(row: &[f32]) -> Vec<f64> {
    row.iter().map(|&x| (x as f64).exp()).collect()
}

/// Indices of `row` sorted by descending value (ties: lower index first).
fn descending_order(row: &[f64]) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
    idx
}

/// Nucleus filter of spec §9.4 in place; returns (kept count, kept mass before renormalising).
/// Keeps the largest prefix of the sorted row whose cumulative sum is `<= p` (at least one
/// token); `p >= 1` leaves the row untouched.
pub fn nucleus(row: &mut [f64], p: f64) -> (usize, f64) {
    if p >= 1.0 {
        let nonzero = row.iter().filter(|&&x| x > 0.0).count();
        return (nonzero, row.iter().sum());
    }
    let order = descending_order(row);
    let mut cum = 0.0;
    let mut kept = 0;
    for (i, &v) in order.iter().enumerate() {
        cum += row[v as usize];
        if i == 0 || cum <= p {
            kept = i + 1;
        } else {
            break;
        }
    }
    for &v in &order[kept..] {
        row[v as usize] = 0.0;
    }
    let mass: f64 = row.iter().sum();
    for x in row.iter_mut() {
        *x /= mass;
    }
    (kept, mass)
}

/// The posterior row `q = p_x0 * (1 - mask_prob)`, `q[MASK] = mask_prob` (spec §9.2); the
/// factor is computed in f32 as the reference does, so `mask_prob = -inf` (the t = 0 grid
/// point) yields the reference's inf/NaN row.
pub fn posterior_row(p_x0: &[f64], mask_prob: f32, mask: u32) -> Vec<f64> {
    let keep = (1.0f32 - mask_prob) as f64;
    let mut q: Vec<f64> = p_x0.iter().map(|&p| p * keep).collect();
    q[mask as usize] = mask_prob as f64;
    q
}

/// `argmax_v q[v] / (1e-10 - ln(u[v] + 1e-10))` with torch semantics (the first NaN is the
/// maximum, ties go to the lowest index); `u[v]` is element `offset + v` of the step's
/// SplitMix64 stream (spec §9.5).
pub fn race(q: &[f64], seed: u64, offset: u64) -> u32 {
    let mut best = (0usize, f64::NEG_INFINITY);
    for (v, &qv) in q.iter().enumerate() {
        let u = rng::uniform(seed, offset + v as u64);
        let val = qv / (1e-10 - (u + 1e-10).ln());
        if val.is_nan() {
            return v as u32;
        }
        if v == 0 || val > best.1 {
            best = (v, val);
        }
    }
    best.0 as u32
}

/// Unigram entropy (nats) of `tokens` (the degenerate-sample check of spec §9.6).
pub fn unigram_entropy(tokens: &[u32]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for &t in tokens {
        *counts.entry(t).or_insert(0usize) += 1;
    }
    let n = tokens.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nucleus_excludes_the_crossing_token() {
        let mut row = vec![0.5, 0.3, 0.15, 0.05];
        let (kept, mass) = nucleus(&mut row, 0.9);
        assert_eq!(kept, 2);
        assert!((mass - 0.8).abs() < 1e-15);
        assert_eq!(row[2], 0.0);
        assert!((row[0] - 0.625).abs() < 1e-15);
        let mut row = vec![0.95, 0.05];
        assert_eq!(
            nucleus(&mut row, 0.9).0,
            1,
            "the first token is always kept"
        );
    }

    #[test]
    fn race_follows_torch_argmax_semantics() {
        let q = vec![0.0, f64::NAN, 1.0, f64::NAN];
        assert_eq!(race(&q, 7, 0), 1, "first NaN wins");
        let q = vec![f64::INFINITY; 4];
        assert_eq!(race(&q, 7, 0), 0, "ties go to the lowest index");
        let q = vec![0.0, 0.0, 1.0, 0.0];
        assert_eq!(race(&q, 7, 0), 2);
    }

    #[test]
    fn subs_rows() {
        let mut logits = vec![1.0, 2.0, 3.0, 0.5, 1.0, 2.0, 3.0, 0.5];
        subs_log_probs(&mut logits, &[3, 1], 4, 3);
        let p: f64 = logits[..4].iter().map(|&x| (x as f64).exp()).sum();
        assert!((p - 1.0).abs() < 1e-6);
        assert_eq!(
            probs_from_log_probs(&logits[..4])[3],
            0.0,
            "MASK has probability 0"
        );
        assert_eq!(&logits[4..], &[-1e6, 0.0, -1e6, -1e6]);
    }
}
