//! The reference sampling math on the CPU, in f64 where the reference uses f64 (spec §4.5, §9):
//! SUBS log-probs, the nucleus filter, the posterior (DDPM) row and the exponential race.

use crate::rng;
use std::cmp::Ordering;

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

/// Indices of `row` sorted by descending value in `f64::total_cmp`'s order (ties: lower
/// index first).
///
/// A stable radix sort of (high half of the key, index) pairs packed in one `u64`, the key
/// being the value's bits mapped so that unsigned order is descending `total_cmp` order;
/// then the runs that share a high half are sorted by the whole key. A 50,258-token row
/// sorts in a fraction of a comparison sort's time, which sat on every step's critical path.
fn descending_order(row: &[f64]) -> Vec<u32> {
    let key = |v: f64| {
        let b = v.to_bits();
        let ascending = if b >> 63 == 1 { !b } else { b | 1 << 63 };
        !ascending
    };
    assert!(row.len() <= u32::MAX as usize, "row too long to sort");
    let mut cur: Vec<u64> = row
        .iter()
        .enumerate()
        .map(|(i, &v)| (key(v) >> 32) << 32 | i as u64)
        .collect();
    let mut next = vec![0u64; cur.len()];
    for shift in (32..64).step_by(8) {
        let mut counts = [0usize; 256];
        for &c in &cur {
            counts[(c >> shift) as usize & 255] += 1;
        }
        // A digit shared by every key leaves the order as it is.
        if counts.contains(&cur.len()) {
            continue;
        }
        let mut at = 0;
        for c in counts.iter_mut() {
            (*c, at) = (at, at + *c);
        }
        for &c in &cur {
            let d = (c >> shift) as usize & 255;
            next[counts[d]] = c;
            counts[d] += 1;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    let index = |c: u64| c as u32;
    for run in cur.chunk_by_mut(|a, b| a >> 32 == b >> 32) {
        if run.len() > 1 {
            run.sort_unstable_by_key(|&c| (key(row[index(c) as usize]), index(c)));
        }
    }
    cur.into_iter().map(index).collect()
}

/// Nucleus filter of spec §9.4 in place; returns (kept count, kept mass before renormalising).
/// Keeps the largest prefix of the sorted row whose cumulative sum is `<= p` (at least one
/// token); `p >= 1` leaves the row untouched.
///
/// Only the top of the order is sorted where it can be: [`top_candidates`] finds, from a
/// histogram of the values' binary exponents, the values large enough that their mass passes
/// `p`; they are the first entries of the full order (every value at least the smallest of
/// them is among them), so the running sum over them is the full sort's, bit for bit. When the
/// border is not crossed inside them (rounding, or no such set), the whole row is sorted. A
/// peaked row (a trained model's) sorts a few hundred values instead of 50,258.
pub fn nucleus(row: &mut [f64], p: f64) -> (usize, f64) {
    if p >= 1.0 {
        let nonzero = row.iter().filter(|&&x| x > 0.0).count();
        return (nonzero, row.iter().sum());
    }
    let kept = match head_order(row, p) {
        Some((order, kept)) => {
            let mut keep = vec![false; row.len()];
            for &v in &order[..kept] {
                keep[v as usize] = true;
            }
            for (x, k) in row.iter_mut().zip(keep) {
                if !k {
                    *x = 0.0;
                }
            }
            kept
        }
        None => {
            let order = descending_order(row);
            let kept = crossing(row, &order, p).unwrap_or(order.len());
            for &v in &order[kept..] {
                row[v as usize] = 0.0;
            }
            kept
        }
    };
    let mass: f64 = row.iter().sum();
    for x in row.iter_mut() {
        *x /= mass;
    }
    (kept, mass)
}

/// The head of the descending order that holds the nucleus border ([`top_candidates`],
/// sorted) and the count kept; `None` where the whole row must be sorted.
fn head_order(row: &[f64], p: f64) -> Option<(Vec<u32>, usize)> {
    let candidates = top_candidates(row, p)?;
    let values: Vec<f64> = candidates.iter().map(|&i| row[i as usize]).collect();
    let order: Vec<u32> = descending_order(&values)
        .into_iter()
        .map(|j| candidates[j as usize])
        .collect();
    let kept = crossing(row, &order, p)?;
    Some((order, kept))
}

/// Where the running sum over `order` first stops being `<= p` (never at the first entry;
/// a NaN sum stops it): the count kept. `None` when it never does.
fn crossing(row: &[f64], order: &[u32], p: f64) -> Option<usize> {
    let mut cum = 0.0;
    for (i, &v) in order.iter().enumerate() {
        cum += row[v as usize];
        // Not `<= p`, NaN included (the original loop's `else`).
        if i > 0 && !matches!(cum.partial_cmp(&p), Some(Ordering::Less | Ordering::Equal)) {
            return Some(i);
        }
    }
    None
}

/// Indices (ascending) of every value of at least `2^e`, for the largest binary exponent `e`
/// at which those values are at least two and their mass passes `p`: the head of the
/// descending order that holds the nucleus border (the running sum passes `p` at one of its
/// entries after the first). `None` for rows with a negative or non-finite value (sorted
/// whole, as `total_cmp` orders them) or when no such head is smaller than the row.
fn top_candidates(row: &[f64], p: f64) -> Option<Vec<u32>> {
    const EXPONENTS: usize = 2048;
    let mut mass = [0.0f64; EXPONENTS];
    let mut count = [0u32; EXPONENTS];
    for &x in row {
        if !(x.is_finite() && x >= 0.0) {
            return None;
        }
        let e = (x.to_bits() >> 52) as usize;
        mass[e] += x;
        count[e] += 1;
    }
    let (mut acc, mut n) = (0.0, 0u32);
    let floor = (1..EXPONENTS).rev().find(|&e| {
        acc += mass[e];
        n += count[e];
        acc > p && n >= 2
    })?;
    let candidates: Vec<u32> = (0..row.len() as u32)
        .filter(|&i| (row[i as usize].to_bits() >> 52) as usize >= floor)
        .collect();
    (candidates.len() < row.len()).then_some(candidates)
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

/// Entropy in nats of a probability row (zeros contribute nothing).
pub fn entropy(p: &[f64]) -> f64 {
    p.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum()
}

/// Confidence-threshold selection (Fast-dLLM): of the `candidates` (masked rows with the
/// drawn token's probability), every row whose probability is `>= threshold`; when none is,
/// the single most confident row (ties: lowest row). Returns rows in ascending order.
/// Compared in f32, the precision of [`crate::RowDraw::confidence`] on every engine.
pub fn select_confident(candidates: &[(usize, f32)], threshold: f64) -> Vec<usize> {
    let threshold = threshold as f32;
    let mut rows: Vec<usize> = candidates
        .iter()
        .filter(|(_, c)| *c >= threshold)
        .map(|&(r, _)| r)
        .collect();
    if rows.is_empty() {
        let best = candidates.iter().copied().reduce(|a, b| {
            if b.1 > a.1 || (b.1 == a.1 && b.0 < a.0) {
                b
            } else {
                a
            }
        });
        rows.extend(best.map(|(r, _)| r));
    }
    rows.sort_unstable();
    rows
}

/// Entropy-bounded selection (arXiv 2505.24857): sort the `candidates` (masked rows with the
/// entropy of their filtered distribution) by entropy, ascending (ties: lowest row), and take
/// the longest prefix whose summed entropy minus its largest entropy is `<= gamma`; at least
/// one row. Returns rows in ascending order. Summed in f32 in sorted order, so every engine
/// (the GPU selects on the device) takes the same rows.
pub fn select_low_entropy(candidates: &[(usize, f32)], gamma: f64) -> Vec<usize> {
    let gamma = gamma as f32;
    let mut sorted = candidates.to_vec();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    // Sorted ascending, the prefix's largest entropy is its last one, so the bound is the sum
    // of the entropies before it.
    let mut before = 0f32;
    let mut take = 0;
    for (i, &(_, h)) in sorted.iter().enumerate() {
        if i > 0 && before > gamma {
            break;
        }
        take = i + 1;
        before += h;
    }
    let mut rows: Vec<usize> = sorted[..take].iter().map(|&(r, _)| r).collect();
    rows.sort_unstable();
    rows
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
    /// The nucleus as it was before the head-only sort: the whole row sorted.
    fn nucleus_full_sort(row: &mut [f64], p: f64) -> (usize, f64) {
        let order = super::descending_order(row);
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

    /// Same kept set, mass and bits as sorting the whole row, on peaked, flat, tied, sparse
    /// and broken rows, at every kind of `p`.
    #[test]
    fn head_only_nucleus_equals_the_full_sort() {
        let mut heads = 0;
        for seed in 0..40u64 {
            let n = [1usize, 2, 7, 500, 50_258][seed as usize % 5];
            let temperature = [0.05, 0.3, 1.0, 3.0, 30.0][(seed / 5) as usize % 5];
            let logits: Vec<f64> = (0..n)
                .map(|i| {
                    let u = crate::rng::uniform(seed, i as u64);
                    // Ties: every 13th logit repeats one value.
                    if i % 13 == 5 {
                        0.7 / temperature
                    } else {
                        (-(u + 1e-12).ln()).ln() / -temperature
                    }
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut row: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let total: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= total);
            let plain = seed % 8 < 3 || seed % 8 == 4;
            match seed % 8 {
                3 => row.iter_mut().step_by(3).for_each(|x| *x = 0.0),
                5 if n > 2 => row[2] = -0.25,
                6 if n > 2 => row[n / 2] = f64::NAN,
                7 if n > 2 => row[1] = f64::INFINITY,
                _ => {}
            }
            for p in [0.0, 1e-9, 0.5, 0.9, 0.95, 0.999_999_999, 1.0 - 1e-16] {
                let (mut a, mut b) = (row.clone(), row.clone());
                let got = super::nucleus(&mut a, p);
                let want = nucleus_full_sort(&mut b, p);
                assert_eq!(got.0, want.0, "seed {seed}, p {p}");
                assert_eq!(got.1.to_bits(), want.1.to_bits(), "seed {seed}, p {p}");
                assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
                let head = super::head_order(&row, p);
                heads += usize::from(head.is_some());
                // A peaked full-size row sorts a short head, not the whole row.
                if plain && n == 50_258 && temperature <= 1.0 && p == 0.9 {
                    let len = head.map_or(n, |(order, _)| order.len());
                    assert!(len < 1000, "seed {seed}: a head of {len}");
                }
            }
        }
        // The head-only path decided (and so was compared), not only the fallback.
        assert!(heads > 60, "{heads}");
    }

    /// The radix order is the comparison sort's: descending `total_cmp`, ties by index.
    #[test]
    fn descending_order_is_the_stable_comparison_order() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 11
        };
        let specials = [
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-300,
            0.5,
        ];
        for len in [0usize, 1, 2, 17, 300, 5000] {
            let row: Vec<f64> = (0..len)
                .map(|_| match next() % 4 {
                    0 => specials[(next() % 8) as usize],
                    1 => (next() % 5) as f64 * 0.25, // ties
                    // Keys equal in their high half, apart in the low one.
                    2 => 0.3 + (next() % 7) as f64 * f64::EPSILON,
                    _ => (next() as f64 / (1u64 << 53) as f64 - 0.3) * 2.0,
                })
                .collect();
            let mut want: Vec<u32> = (0..len as u32).collect();
            want.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            assert_eq!(super::descending_order(&row), want, "length {len}");
        }
    }

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
    fn confidence_selection_reveals_every_confident_row_or_the_best_one() {
        let c = [(0, 0.95), (1, 0.3), (3, 0.91), (2, 0.9)];
        assert_eq!(select_confident(&c, 0.9), vec![0, 2, 3]);
        assert_eq!(
            select_confident(&c, 0.99),
            vec![0],
            "at least the most confident"
        );
        let ties = [(3, 0.5), (1, 0.5), (2, 0.4)];
        assert_eq!(
            select_confident(&ties, 0.9),
            vec![1],
            "ties go to the lowest row"
        );
        assert_eq!(select_confident(&[], 0.9), Vec::<usize>::new());
        assert_eq!(select_confident(&ties, 0.5), vec![1, 3]);
    }

    #[test]
    fn entropy_selection_takes_the_longest_prefix_within_gamma() {
        // Sorted: row 2 (0.1), row 0 (0.2), row 3 (0.5), row 1 (2.0).
        let c = [(0, 0.2), (1, 2.0), (2, 0.1), (3, 0.5)];
        // Prefix sums minus the largest: [0, 0.1, 0.3, 0.8].
        assert_eq!(select_low_entropy(&c, 0.0), vec![2]);
        assert_eq!(select_low_entropy(&c, 0.1), vec![0, 2]);
        assert_eq!(select_low_entropy(&c, 0.3), vec![0, 2, 3]);
        assert_eq!(select_low_entropy(&c, 0.79), vec![0, 2, 3]);
        assert_eq!(select_low_entropy(&c, 0.8), vec![0, 1, 2, 3]);
        let ties = [(3, 1.0), (1, 1.0)];
        assert_eq!(
            select_low_entropy(&ties, 0.5),
            vec![1],
            "ties go to the lowest row"
        );
        assert!((entropy(&[0.5, 0.5, 0.0]) - std::f64::consts::LN_2).abs() < 1e-15);
    }

    #[test]
    fn full_nucleus_posterior_and_unigram_entropy() {
        let mut row = vec![0.5, 0.0, 0.3, 0.2];
        let before = row.clone();
        let (kept, mass) = nucleus(&mut row, 1.0);
        assert_eq!(kept, 3, "p = 1 keeps every nonzero token");
        assert!((mass - 1.0).abs() < 1e-15);
        assert_eq!(row, before, "p = 1 leaves the row untouched");
        let q = posterior_row(&[0.5, 0.25, 0.25], 0.25, 2);
        assert_eq!(q, vec![0.375, 0.1875, 0.25]);
        use std::f64::consts::LN_2;
        assert!((unigram_entropy(&[7, 9, 7, 9]) - LN_2).abs() < 1e-12);
        assert_eq!(unigram_entropy(&[4, 4, 4]), 0.0);
        assert!((unigram_entropy(&[1, 1, 2, 3]) - 1.5 * LN_2).abs() < 1e-12);
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

    /// The race is the spec's formula (§9.5) on elements `offset + v` of the step's stream,
    /// over many seeds, so a changed term or index changes some winner.
    #[test]
    fn race_is_the_spec_formula_on_the_step_stream() {
        let q = [0.1, 0.4, 0.2, 0.3, 0.0, 0.25];
        for seed in 0..200u64 {
            let offset = 17 * seed;
            let key = |v: usize| {
                let u = rng::uniform(seed, offset + v as u64);
                q[v] / (1e-10 - (u + 1e-10).ln())
            };
            let want = (1..q.len()).fold(0, |b, v| if key(v) > key(b) { v } else { b });
            assert_eq!(race(&q, seed, offset) as usize, want, "seed {seed}");
        }
    }

    /// The selection rules at their edges: the fallback in any candidate order, equal
    /// confidences, and a prefix whose entropies before its last sum to exactly gamma.
    #[test]
    fn selection_rules_at_their_edges() {
        assert_eq!(select_confident(&[(1, 0.2), (3, 0.5)], 0.9), vec![3]);
        assert_eq!(select_confident(&[(3, 0.5), (1, 0.2)], 0.9), vec![3]);
        assert_eq!(select_confident(&[(1, 0.5), (3, 0.5)], 0.9), vec![1]);
        let even = [(0, 0.5), (1, 0.5), (2, 0.5)];
        assert_eq!(select_low_entropy(&even, 1.0), vec![0, 1, 2]);
        assert_eq!(select_low_entropy(&even, 0.99), vec![0, 1]);
        // At least one row, whatever the bound.
        assert_eq!(select_low_entropy(&even, -1.0), vec![0]);
    }

    /// A negative MASK logit still ends at probability 0 (-1e6 is added, whatever its sign).
    #[test]
    fn subs_masks_a_negative_mask_logit() {
        let mut logits = vec![1.0, 2.0, 3.0, -2.0];
        subs_log_probs(&mut logits, &[3], 4, 3);
        assert_eq!(probs_from_log_probs(&logits)[3], 0.0);
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((logits[2] as f64 - (3.0 - lse)).abs() < 1e-6, "{logits:?}");
    }
}
