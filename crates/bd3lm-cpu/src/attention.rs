//! Block attention over the ring KV cache (spec §5, §6.3, §7), one head per task.
//!
//! The cache holds un-rotated K and V in a ring of `model_length` slots; window position `j`
//! lives in slot `(start + j) % n`, so sliding the window past the context moves `start`
//! instead of the data. RoPE is applied here with window positions (key `j` at `j`, query
//! row `r` at `cached + r`), which re-bases positions after a slide exactly as the reference
//! does (the same scheme as `shaders/attention.wgsl`). Only the call's rows are queries.
//!
//! Scores are computed with the rows in the vector lanes (`s[j][r] += q[i][r] * k_j[i]`), so
//! neither the scores nor the softmax need horizontal sums.

use crate::kernels::Simd;
use crate::math;
use crate::threads::Pool;

/// Which keys the call's rows see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnMask {
    /// The rows are one block: each attends to the whole cached window and to every row of
    /// the call (bidirectional inside the block, spec §6.3). A folded store pass (issue 12)
    /// adds a block-causal choice here: the clean rows stop at their own block.
    Block,
}

/// Where a call's rows and keys are.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub rows: usize,
    /// Committed tokens in the window before the call's rows.
    pub cached: usize,
    /// Ring slot of window position 0.
    pub start: usize,
    pub n_ctx: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub mask: AttnMask,
}

/// The pieces of one layer's attention.
pub struct AttnInputs<'a> {
    /// `[rows, 3H]` projections; the queries are the first H columns.
    pub qkv: &'a [f32],
    /// `[n_ctx, H]` this layer's ring of un-rotated keys / values (the call's rows already
    /// written at window positions `cached..cached + rows`).
    pub k_ring: &'a [f32],
    pub v_ring: &'a [f32],
    /// `[n_ctx, d/2]` rotary tables.
    pub cos: &'a [f32],
    pub sin: &'a [f32],
}

/// `out` (`[rows, H]`) = attention of the call's rows; `heads_buf` is scratch.
pub fn attention(
    pool: &Pool,
    simd: Simd,
    shape: AttnShape,
    inputs: &AttnInputs<'_>,
    out: &mut [f32],
    heads_buf: &mut Vec<f32>,
) {
    let (rows, d) = (shape.rows, shape.head_dim);
    let h = shape.heads * d;
    heads_buf.resize(shape.heads * rows * d, 0.0);
    pool.for_each_chunk(heads_buf, rows * d, |head, buf| {
        one_head(simd, shape, inputs, head, buf)
    });
    for head in 0..shape.heads {
        for r in 0..rows {
            let src = &heads_buf[(head * rows + r) * d..(head * rows + r + 1) * d];
            out[r * h + head * d..r * h + (head + 1) * d].copy_from_slice(src);
        }
    }
}

fn one_head(simd: Simd, shape: AttnShape, inputs: &AttnInputs<'_>, head: usize, out: &mut [f32]) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the family is only selected when the CPU has these features.
        Simd::Avx512 => unsafe { head_avx512(shape, inputs, head, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Simd::Avx2 => unsafe { head_avx2(shape, inputs, head, out) },
        _ => head_impl::<false>(shape, inputs, head, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn head_avx512(shape: AttnShape, inputs: &AttnInputs<'_>, head: usize, out: &mut [f32]) {
    head_impl::<true>(shape, inputs, head, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_avx2(shape: AttnShape, inputs: &AttnInputs<'_>, head: usize, out: &mut [f32]) {
    head_impl::<true>(shape, inputs, head, out)
}

#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Rotate-half RoPE of one head vector with table row `cos`/`sin` (spec §5).
#[inline(always)]
fn rope(out: &mut [f32], x: &[f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    for i in 0..half {
        o1[i] = x1[i] * cos[i] - x2[i] * sin[i];
        o2[i] = x2[i] * cos[i] + x1[i] * sin[i];
    }
}

#[inline(always)]
fn head_impl<const FMA: bool>(
    shape: AttnShape,
    inputs: &AttnInputs<'_>,
    head: usize,
    out: &mut [f32],
) {
    let AttnShape {
        rows,
        cached,
        start,
        n_ctx,
        head_dim: d,
        ..
    } = shape;
    let AttnMask::Block = shape.mask;
    let h = shape.heads * d;
    let half = d / 2;
    let total = cached + rows;
    let col = head * d;
    let table = |pos: usize| {
        (
            &inputs.cos[pos * half..(pos + 1) * half],
            &inputs.sin[pos * half..(pos + 1) * half],
        )
    };

    // Queries rotated to their positions, transposed: qt[i * rows + r].
    let mut qt = vec![0f32; d * rows];
    let mut rotated = vec![0f32; d];
    for r in 0..rows {
        let (cos, sin) = table(cached + r);
        rope(&mut rotated, &inputs.qkv[r * 3 * h + col..][..d], cos, sin);
        for (i, &v) in rotated.iter().enumerate() {
            qt[i * rows + r] = v;
        }
    }

    // Scores s[j * rows + r] = q_r · k_j / sqrt(d), keys rotated to window positions.
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores = vec![0f32; total * rows];
    for j in 0..total {
        let slot = (start + j) % n_ctx;
        let (cos, sin) = table(j);
        rope(
            &mut rotated,
            &inputs.k_ring[slot * h + col..][..d],
            cos,
            sin,
        );
        let s = &mut scores[j * rows..(j + 1) * rows];
        for (i, &kv) in rotated.iter().enumerate() {
            let q = &qt[i * rows..(i + 1) * rows];
            for r in 0..rows {
                s[r] = fmadd::<FMA>(q[r], kv, s[r]);
            }
        }
        for v in s.iter_mut() {
            *v *= scale;
        }
    }

    // Softmax over the keys, row by row (vectorised across rows).
    let mut max = vec![f32::NEG_INFINITY; rows];
    for s in scores.chunks_exact(rows) {
        for r in 0..rows {
            max[r] = max[r].max(s[r]);
        }
    }
    let mut sum = vec![0f32; rows];
    for s in scores.chunks_exact_mut(rows) {
        for r in 0..rows {
            s[r] = math::exp(s[r] - max[r]);
            sum[r] += s[r];
        }
    }

    // out[r] = sum_j p[j][r] v_j / sum[r].
    out.fill(0.0);
    for j in 0..total {
        let slot = (start + j) % n_ctx;
        let v = &inputs.v_ring[slot * h + col..][..d];
        let p = &scores[j * rows..(j + 1) * rows];
        for r in 0..rows {
            let o = &mut out[r * d..(r + 1) * d];
            for i in 0..d {
                o[i] = fmadd::<FMA>(p[r], v[i], o[i]);
            }
        }
    }
    for r in 0..rows {
        let inv = 1.0 / sum[r];
        for v in &mut out[r * d..(r + 1) * d] {
            *v *= inv;
        }
    }
}
