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
    /// runs its two blocks as two such calls over their own windows (`forward.rs`).
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
    for ((((o1, o2), (&a, &b)), &c), &s) in o1
        .iter_mut()
        .zip(o2.iter_mut())
        .zip(x1.iter().zip(x2))
        .zip(cos)
        .zip(sin)
    {
        *o1 = a * c - b * s;
        *o2 = b * c + a * s;
    }
}

/// Keys ahead whose cache lines are requested early: a head's keys are 3 KB apart in the
/// ring (one row per token holds every head), a stride the hardware does not prefetch.
const PREFETCH_AHEAD: usize = 8;

#[inline(always)]
fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch never faults; SSE is part of the x86-64 baseline.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// `s[l] = scale * sum_i q[i][l] k[i]` for the LANES rows of one chunk, with four
/// accumulators (independent FMA chains) combined in a fixed order.
#[inline(always)]
fn score_lanes<const FMA: bool>(s: &mut [f32], q: &[f32], k: &[f32], scale: f32) {
    let lanes =
        |i: usize| -> &[f32; LANES] { q[i * LANES..][..LANES].try_into().unwrap_or(&[0.0; LANES]) };
    let mut acc = [[0f32; LANES]; 4];
    let d = k.len();
    let mut i = 0;
    while i + 4 <= d {
        for (a, acc) in acc.iter_mut().enumerate() {
            let (q, kv) = (lanes(i + a), k[i + a]);
            for l in 0..LANES {
                acc[l] = fmadd::<FMA>(q[l], kv, acc[l]);
            }
        }
        i += 4;
    }
    while i < d {
        let (q, kv) = (lanes(i), k[i]);
        for l in 0..LANES {
            acc[0][l] = fmadd::<FMA>(q[l], kv, acc[0][l]);
        }
        i += 1;
    }
    for l in 0..LANES {
        s[l] = ((acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l])) * scale;
    }
}

/// Query rows per register tile (one 512-bit register of f32, four 128-bit ones).
const LANES: usize = 16;
/// Rows whose output accumulators are held at once in the `p · V` product.
const PV_ROWS: usize = 4;

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
    let chunks = rows.div_ceil(LANES);
    let table = |pos: usize| {
        (
            &inputs.cos[pos * half..(pos + 1) * half],
            &inputs.sin[pos * half..(pos + 1) * half],
        )
    };
    // Offset of window position j's head vector in the ring (no division in the loops).
    let keys: Vec<usize> = (0..total).map(|j| (start + j) % n_ctx * h + col).collect();
    let key = |j: usize| keys[j];

    // Queries rotated to their positions, transposed per chunk of LANES rows:
    // qt[(c * d + i) * LANES + l] (zero for padding rows).
    let mut qt = vec![0f32; chunks * d * LANES];
    let mut rotated = vec![0f32; d];
    for r in 0..rows {
        let (cos, sin) = table(cached + r);
        rope(&mut rotated, &inputs.qkv[r * 3 * h + col..][..d], cos, sin);
        let (c, l) = (r / LANES, r % LANES);
        for (i, &v) in rotated.iter().enumerate() {
            qt[(c * d + i) * LANES + l] = v;
        }
    }

    // Scores s[(c * total + j) * LANES + l] = q · k_j / sqrt(d), keys rotated to window
    // positions; the chunk's rows sit in the lanes of one accumulator.
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores = vec![0f32; chunks * total * LANES];
    for j in 0..total {
        if j + PREFETCH_AHEAD < total {
            prefetch(&inputs.k_ring[key(j + PREFETCH_AHEAD)..][..d]);
        }
        let (cos, sin) = table(j);
        rope(&mut rotated, &inputs.k_ring[key(j)..][..d], cos, sin);
        for c in 0..chunks {
            let q_chunk = &qt[c * d * LANES..(c + 1) * d * LANES];
            let s = &mut scores[(c * total + j) * LANES..][..LANES];
            score_lanes::<FMA>(s, q_chunk, &rotated, scale);
        }
    }

    // Softmax over the keys, all rows of a chunk at once.
    let mut sums = vec![0f32; chunks * LANES];
    for c in 0..chunks {
        let block = &mut scores[c * total * LANES..(c + 1) * total * LANES];
        let mut max = [f32::NEG_INFINITY; LANES];
        for s in block.chunks_exact(LANES) {
            for l in 0..LANES {
                max[l] = max[l].max(s[l]);
            }
        }
        let mut sum = [0f32; LANES];
        for s in block.chunks_exact_mut(LANES) {
            for l in 0..LANES {
                s[l] = math::exp(s[l] - max[l]);
                sum[l] += s[l];
            }
        }
        sums[c * LANES..(c + 1) * LANES].copy_from_slice(&sum);
    }

    // out[r] = sum_j p[j][r] v_j / sum[r], PV_ROWS rows by LANES dimensions at a time.
    let full = d / LANES * LANES;
    for r0 in (0..rows).step_by(PV_ROWS) {
        let (c, l0) = (r0 / LANES, r0 % LANES);
        let n_rows = (rows - r0).min(PV_ROWS);
        for d0 in (0..full).step_by(LANES) {
            let mut acc = [[0f32; LANES]; PV_ROWS];
            for j in 0..total {
                if r0 == 0 && d0 == 0 && j + PREFETCH_AHEAD < total {
                    prefetch(&inputs.v_ring[key(j + PREFETCH_AHEAD)..][..d]);
                }
                let v: &[f32; LANES] = inputs.v_ring[key(j) + d0..][..LANES]
                    .try_into()
                    .unwrap_or(&[0.0; LANES]);
                let p = &scores[(c * total + j) * LANES + l0..][..PV_ROWS.min(LANES - l0)];
                for (a, &pa) in acc.iter_mut().zip(p) {
                    for l in 0..LANES {
                        a[l] = fmadd::<FMA>(pa, v[l], a[l]);
                    }
                }
            }
            for (a, acc) in acc.iter().enumerate().take(n_rows) {
                let inv = 1.0 / sums[c * LANES + l0 + a];
                let o = &mut out[(r0 + a) * d + d0..][..LANES];
                for l in 0..LANES {
                    o[l] = acc[l] * inv;
                }
            }
        }
        // Head dimensions past the last whole LANES (small test models only).
        for a in 0..n_rows {
            let lane = c * LANES + l0 + a;
            for i in full..d {
                let mut acc = 0f32;
                for j in 0..total {
                    let p = scores[(c * total + j) * LANES + l0 + a];
                    acc = fmadd::<FMA>(p, inputs.v_ring[key(j) + i], acc);
                }
                out[(r0 + a) * d + i] = acc / sums[lane];
            }
        }
    }
}
