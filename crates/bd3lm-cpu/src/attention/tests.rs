//! The attention kernel against a straightforward loop in f64: RoPE at window positions,
//! a ring that wraps, every kernel family, row counts that fill and leave padding lanes,
//! head widths with and without whole vectors.

use super::*;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

struct Case {
    heads: usize,
    d: usize,
    n_ctx: usize,
    rows: usize,
    cached: usize,
    start: usize,
}

fn tables(n: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let half = d / 2;
    let mut cos = vec![0f32; n * half];
    let mut sin = vec![0f32; n * half];
    for p in 0..n {
        for i in 0..half {
            let theta = p as f64 * 10000f64.powf(-((2 * i) as f64) / d as f64);
            cos[p * half + i] = theta.cos() as f32;
            sin[p * half + i] = theta.sin() as f32;
        }
    }
    (cos, sin)
}

/// Rotate-half RoPE in f64 (spec §5).
fn rope64(x: &[f32], cos: &[f32], sin: &[f32]) -> Vec<f64> {
    let half = x.len() / 2;
    let mut y = vec![0f64; x.len()];
    for i in 0..half {
        let (a, b, c, s) = (
            x[i] as f64,
            x[i + half] as f64,
            cos[i] as f64,
            sin[i] as f64,
        );
        y[i] = a * c - b * s;
        y[i + half] = b * c + a * s;
    }
    y
}

/// `[rows, H]` attention of the rows over window positions `0..cached + rows`.
fn naive(
    c: &Case,
    qkv: &[f32],
    k_ring: &[f32],
    v_ring: &[f32],
    cos: &[f32],
    sin: &[f32],
) -> Vec<f64> {
    let (d, half, h) = (c.d, c.d / 2, c.heads * c.d);
    let total = c.cached + c.rows;
    let mut out = vec![0f64; c.rows * h];
    for head in 0..c.heads {
        let at = |j: usize| (head * c.n_ctx + (c.start + j) % c.n_ctx) * c.d;
        for r in 0..c.rows {
            let p = c.cached + r;
            let q = rope64(
                &qkv[r * 3 * h + head * d..][..d],
                &cos[p * half..],
                &sin[p * half..],
            );
            let scores: Vec<f64> = (0..total)
                .map(|j| {
                    let k = rope64(&k_ring[at(j)..][..d], &cos[j * half..], &sin[j * half..]);
                    q.iter().zip(&k).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (j, e) in e.iter().enumerate() {
                for i in 0..d {
                    out[r * h + head * d + i] += e / sum * v_ring[at(j) + i] as f64;
                }
            }
        }
    }
    out
}

fn check(c: Case) {
    let h = c.heads * c.d;
    let qkv = values(c.rows * 3 * h, 1);
    // Scores of a few units, so the softmax is neither flat nor one-hot.
    let qkv: Vec<f32> = qkv.iter().map(|v| v * 2.0).collect();
    let k_ring: Vec<f32> = values(c.n_ctx * h, 2).iter().map(|v| v * 2.0).collect();
    let v_ring = values(c.n_ctx * h, 3);
    let (cos, sin) = tables(c.n_ctx, c.d);
    let expected = naive(&c, &qkv, &k_ring, &v_ring, &cos, &sin);
    let shape = AttnShape {
        rows: c.rows,
        cached: c.cached,
        start: c.start,
        n_ctx: c.n_ctx,
        heads: c.heads,
        head_dim: c.d,
        mask: AttnMask::Block,
    };
    let inputs = AttnInputs {
        qkv: &qkv,
        k_ring: &k_ring,
        v_ring: &v_ring,
        cos: &cos,
        sin: &sin,
    };
    for threads in [1, 2] {
        let pool = Pool::new(Some(threads)).unwrap();
        let mut first: Option<Vec<f32>> = None;
        for simd in Simd::available() {
            let mut out = vec![f32::NAN; c.rows * h];
            // Scratch left from a larger call must not leak into this one.
            let mut buf = vec![f32::NAN; 3];
            attention(&pool, simd, shape, &inputs, &mut out, &mut buf);
            for (i, (&g, &e)) in out.iter().zip(&expected).enumerate() {
                let err = (g as f64 - e).abs();
                assert!(
                    err < 2e-5,
                    "{simd:?}, {threads} threads, d {}, rows {}, cached {}, start {}: out[{i}] = {g}, expected {e}",
                    c.d, c.rows, c.cached, c.start
                );
            }
            if simd == Simd::Portable {
                first = Some(out);
            } else if let Some(first) = &first {
                // Every family computes the same function; only rounding differs.
                assert!(out.iter().zip(first).all(|(a, b)| (a - b).abs() < 2e-5));
            }
        }
    }
}

#[test]
fn matches_a_plain_loop_on_a_wrapping_ring() {
    // Full-size head width, a block of 16 over a window that wraps past the ring's end.
    check(Case {
        heads: 3,
        d: 64,
        n_ctx: 320,
        rows: 16,
        cached: 300,
        start: 48,
    });
    // Five blocks of the online softmax, the ring's end inside a block: later blocks
    // raise the running max of most rows, so earlier outputs are rescaled.
    check(Case {
        heads: 2,
        d: 64,
        n_ctx: 640,
        rows: 16,
        cached: 600,
        start: 300,
    });
    // More keys than one block, fewer rows than a chunk, no wrap.
    check(Case {
        heads: 2,
        d: 64,
        n_ctx: 400,
        rows: 5,
        cached: 290,
        start: 0,
    });
    // Two chunks of rows (a folded call's group of 2B rows on a small model).
    check(Case {
        heads: 2,
        d: 32,
        n_ctx: 96,
        rows: 20,
        cached: 40,
        start: 90,
    });
    // Head widths without a whole 4-vector tile, or without a whole vector.
    check(Case {
        heads: 2,
        d: 48,
        n_ctx: 64,
        rows: 8,
        cached: 13,
        start: 60,
    });
    check(Case {
        heads: 3,
        d: 8,
        n_ctx: 40,
        rows: 4,
        cached: 0,
        start: 7,
    });
    check(Case {
        heads: 1,
        d: 24,
        n_ctx: 48,
        rows: 16,
        cached: 31,
        start: 20,
    });
}
