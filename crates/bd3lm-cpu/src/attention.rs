//! Block attention over the ring KV cache (spec §5, §6.3, §7), one head per task.
//!
//! The cache holds un-rotated K and V in a ring of `model_length` slots, head-major
//! (`[heads, n, d]` per layer) so that one head's keys are contiguous and stream from memory
//! in order. Window position `j` lives in slot `(start + j) % n`, so sliding the window past
//! the context moves `start` instead of the data. RoPE is applied here with window positions
//! (key `j` at `j`, query row `r` at `cached + r`), which re-bases positions after a slide
//! exactly as the reference does (the same scheme as `shaders/attention.wgsl`); rotating a
//! key costs a few vector operations beside its 16 rows' products, so the cache keeps no
//! rotated copy. Only the call's rows are queries.
//!
//! Scores are computed with the rows in the vector lanes (`s[j][r] += q[i][r] * k_j[i]`), so
//! neither the scores nor the softmax need horizontal sums. The window is read once, as at
//! most two contiguous runs of slots (before and after the ring's end), in blocks of keys:
//! each block's scores, an online softmax (running max and sum, earlier outputs rescaled),
//! then its `p · V`, so that K and V stream together under the arithmetic. On AVX-512 the
//! inner loops are `attention/avx512.rs` (several keys per pass over the queries; the block's
//! V in L1 for `p · V`). Each head's sums have a fixed order, so results do not depend on the
//! thread count.

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
    /// `[heads, n_ctx, d]` this layer's ring of un-rotated keys / values (the call's rows
    /// already written at window positions `cached..cached + rows`).
    pub k_ring: &'a [f32],
    pub v_ring: &'a [f32],
    /// `[n_ctx, d/2]` rotary tables.
    pub cos: &'a [f32],
    pub sin: &'a [f32],
}

/// Query rows per register tile (one 512-bit register of f32, four 128-bit ones).
const LANES: usize = 16;
/// Keys per block of the one pass over the window: their K and V (32 KiB each at d = 64)
/// and scores (8 KiB for 16 rows) stay in L1 and L2 while they are used.
const ATTN_BLOCK: usize = 128;
/// Rows whose output accumulators are held at once in the `p · V` product.
const PV_ROWS: usize = 4;
/// Rotated keys a head's scratch holds (the AVX-512 kernel rotates 8 at a time).
const ROTATED_KEYS: usize = 8;

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(test)]
mod tests;

/// Scratch floats one head needs beside its `[rows, d]` output.
fn scratch_len(shape: AttnShape) -> usize {
    let chunks = shape.rows.div_ceil(LANES);
    let total = shape.cached + shape.rows;
    let d = shape.head_dim;
    chunks * d * LANES + chunks * total * LANES + 2 * chunks * LANES + ROTATED_KEYS * d
}

/// `out` (`[rows, H]`) = attention of the call's rows; `heads_buf` is scratch, kept between
/// calls (no allocation once it has grown).
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
    let per_head = rows * d + scratch_len(shape);
    heads_buf.resize(shape.heads * per_head, 0.0);
    pool.for_each_chunk(
        &mut heads_buf[..shape.heads * per_head],
        per_head,
        |head, buf| {
            let (head_out, scratch) = buf.split_at_mut(rows * d);
            one_head(simd, shape, inputs, head, head_out, scratch)
        },
    );
    for head in 0..shape.heads {
        for r in 0..rows {
            let src = &heads_buf[head * per_head + r * d..][..d];
            out[r * h + head * d..r * h + (head + 1) * d].copy_from_slice(src);
        }
    }
}

/// Which inner loops a head runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inner {
    /// The generic loops (with fused multiply-adds as `head_impl`'s FMA says).
    Plain,
    /// `attention/avx512.rs` (x86-64 only).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn one_head(
    simd: Simd,
    shape: AttnShape,
    inputs: &AttnInputs<'_>,
    head: usize,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the family is only selected when the CPU has these features.
        Simd::Avx512 => unsafe { head_avx512(shape, inputs, head, out, scratch) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Simd::Avx2 => unsafe { head_avx2(shape, inputs, head, out, scratch) },
        _ => head_impl::<false>(Inner::Plain, shape, inputs, head, out, scratch),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn head_avx512(
    shape: AttnShape,
    inputs: &AttnInputs<'_>,
    head: usize,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let inner = if avx512::suits(shape.head_dim) {
        Inner::Avx512
    } else {
        Inner::Plain
    };
    head_impl::<true>(inner, shape, inputs, head, out, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_avx2(
    shape: AttnShape,
    inputs: &AttnInputs<'_>,
    head: usize,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    head_impl::<true>(Inner::Plain, shape, inputs, head, out, scratch)
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

#[inline(always)]
fn lanes(x: &[f32], at: usize) -> &[f32; LANES] {
    x[at..at + LANES].try_into().unwrap_or(&[0.0; LANES])
}

/// `s[l] = scale * sum_i q[i][l] k[i]` for the LANES rows of one chunk, with four
/// accumulators (independent FMA chains) combined in a fixed order.
#[inline(always)]
fn score_lanes<const FMA: bool>(s: &mut [f32], q: &[f32], k: &[f32], scale: f32) {
    let mut acc = [[0f32; LANES]; 4];
    let d = k.len();
    let mut i = 0;
    while i + 4 <= d {
        for (a, acc) in acc.iter_mut().enumerate() {
            let (q, kv) = (lanes(q, (i + a) * LANES), k[i + a]);
            for l in 0..LANES {
                acc[l] = fmadd::<FMA>(q[l], kv, acc[l]);
            }
        }
        i += 4;
    }
    while i < d {
        let (q, kv) = (lanes(q, i * LANES), k[i]);
        for l in 0..LANES {
            acc[0][l] = fmadd::<FMA>(q[l], kv, acc[0][l]);
        }
        i += 1;
    }
    for l in 0..LANES {
        s[l] = ((acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l])) * scale;
    }
}

/// Where a head's window lies in its ring: the runs `(j0, slot0, len)` of window positions
/// `j0..j0 + len` in slots `slot0..slot0 + len` (two when the window wraps past the end).
fn runs(start: usize, total: usize, n_ctx: usize) -> [(usize, usize, usize); 2] {
    let first = total.min(n_ctx - start);
    [(0, start, first), (first, 0, total - first)]
}

/// The work of one head: its queries' rows in `scratch`, the softmax and the normalisation
/// here; the scores and `p · V` of each block of keys, by `inner`.
#[inline(always)]
fn head_impl<const FMA: bool>(
    inner: Inner,
    shape: AttnShape,
    inputs: &AttnInputs<'_>,
    head: usize,
    out: &mut [f32],
    scratch: &mut [f32],
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
    let (qt, rest) = scratch.split_at_mut(chunks * d * LANES);
    let (scores, rest) = rest.split_at_mut(chunks * total * LANES);
    let (sums, rest) = rest.split_at_mut(chunks * LANES);
    let (maxes, rest) = rest.split_at_mut(chunks * LANES);
    let rotated = &mut rest[..ROTATED_KEYS * d];
    // Slots `slot0..slot0 + len` of this head's ring.
    let ring_range =
        |slot0: usize, len: usize| (head * n_ctx + slot0) * d..(head * n_ctx + slot0 + len) * d;
    let (k_ring, v_ring) = (inputs.k_ring, inputs.v_ring);

    // Queries rotated to their positions, transposed per chunk of LANES rows:
    // qt[(c * d + i) * LANES + l] (zero for padding rows).
    qt.fill(0.0);
    for r in 0..rows {
        let p = cached + r;
        let (cos, sin) = (&inputs.cos[p * half..], &inputs.sin[p * half..]);
        let x = &inputs.qkv[r * 3 * h + col..][..d];
        rope(&mut rotated[..d], x, cos, sin);
        let (c, l) = (r / LANES, r % LANES);
        for (i, &v) in rotated[..d].iter().enumerate() {
            qt[(c * d + i) * LANES + l] = v;
        }
    }

    // One pass over the window in blocks of ATTN_BLOCK keys (flash attention): the block's
    // scores, the softmax's running max and sum per row, the rows' outputs rescaled when
    // the max grows, then the block's `p · V`: K and V stream together and the softmax is
    // not a pass of its own with the memory idle (on the 2-core test machine this measured
    // within the noise of the two-pass kernel, docs/performance.md). Scores
    // s[(c * total + j) * LANES + l] = q · k_j / sqrt(d), keys rotated to window positions.
    let scale = 1.0 / (d as f32).sqrt();
    maxes.fill(f32::NEG_INFINITY);
    sums.fill(0.0);
    out.fill(0.0);
    let blocks = runs(start, total, n_ctx)
        .into_iter()
        .flat_map(|(j0, slot0, len)| {
            (0..len)
                .step_by(ATTN_BLOCK)
                .map(move |b| (j0 + b, slot0 + b, (len - b).min(ATTN_BLOCK)))
        })
        .filter(|&(_, _, len)| len > 0);
    let mut blocks = blocks.peekable();
    // Not `for`: the AVX-512 path peeks at the next block.
    #[allow(clippy::while_let_on_iterator)]
    while let Some((jb, slot0, len)) = blocks.next() {
        let k = &k_ring[ring_range(slot0, len)];
        let v = &v_ring[ring_range(slot0, len)];
        match inner {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Inner::Avx512` is only chosen on a CPU with AVX-512 (`one_head`).
            Inner::Avx512 => unsafe {
                let tables = (inputs.cos, inputs.sin);
                avx512::scores(
                    qt,
                    chunks,
                    d,
                    (k, v),
                    (jb, total),
                    tables,
                    scale,
                    scores,
                    rotated,
                )
            },
            _ => {
                for (jj, key) in k.chunks_exact(d).enumerate() {
                    let j = jb + jj;
                    let (cos, sin) = (&inputs.cos[j * half..], &inputs.sin[j * half..]);
                    rope(&mut rotated[..d], key, cos, sin);
                    for c in 0..chunks {
                        let q_chunk = &qt[c * d * LANES..(c + 1) * d * LANES];
                        let s = &mut scores[(c * total + j) * LANES..][..LANES];
                        score_lanes::<FMA>(s, q_chunk, &rotated[..d], scale);
                    }
                }
            }
        }
        for c in 0..chunks {
            let block = &mut scores[(c * total + jb) * LANES..(c * total + jb + len) * LANES];
            let (max, sum) = (
                &mut maxes[c * LANES..][..LANES],
                &mut sums[c * LANES..][..LANES],
            );
            let alpha = softmax_block(block, max, sum);
            for (l, &a) in alpha.iter().enumerate() {
                let r = c * LANES + l;
                if r < rows && a != 1.0 {
                    for o in &mut out[r * d..(r + 1) * d] {
                        *o *= a;
                    }
                }
            }
        }
        match inner {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Inner::Avx512 => unsafe {
                // The next block's keys (or the next head's first ones) are requested
                // meanwhile.
                let next: &[f32] = match blocks.peek() {
                    Some(&(_, slot, n)) => &k_ring[ring_range(slot, n)],
                    None if head + 1 < shape.heads => {
                        let n = ATTN_BLOCK.min(total).min(n_ctx - start);
                        &k_ring[((head + 1) * n_ctx + start) * d..][..n * d]
                    }
                    None => &[],
                };
                avx512::pv(scores, (jb, total), rows, d, v, next, out)
            },
            _ => pv_plain::<FMA>(scores, (jb, total), rows, d, v, out),
        }
    }
    for r in 0..rows {
        let inv = 1.0 / sums[r];
        for o in &mut out[r * d..(r + 1) * d] {
            *o *= inv;
        }
    }
}

/// One block of the online softmax, all rows of a chunk at once: the scores become
/// `exp(s - max)` with the running max raised to the block's, `sum` is rescaled and gains
/// the block's terms; returns each row's factor for the outputs accumulated so far.
#[inline(always)]
fn softmax_block(block: &mut [f32], max: &mut [f32], sum: &mut [f32]) -> [f32; LANES] {
    let mut new_max = [f32::NEG_INFINITY; LANES];
    new_max.copy_from_slice(max);
    for s in block.chunks_exact(LANES) {
        for l in 0..LANES {
            // Not `f32::max`, whose NaN rule keeps the loop from vectorising.
            new_max[l] = if s[l] > new_max[l] { s[l] } else { new_max[l] };
        }
    }
    let mut alpha = [1f32; LANES];
    for l in 0..LANES {
        if new_max[l] != max[l] {
            // From the first block's -inf: exp clamps to a tiny factor of sums still 0.
            alpha[l] = math::exp(max[l] - new_max[l]);
        }
    }
    let mut block_sum = [0f32; LANES];
    for s in block.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            s[l] = math::exp(s[l] - new_max[l]);
            block_sum[l] += s[l];
        }
    }
    for l in 0..LANES {
        sum[l] = sum[l] * alpha[l] + block_sum[l];
    }
    max.copy_from_slice(&new_max);
    alpha
}

/// The generic `p · V` of one block of keys (as `avx512::pv`): PV_ROWS rows by LANES dimensions at a
/// time, then the dimensions past the last whole LANES (small test models only).
#[inline(always)]
fn pv_plain<const FMA: bool>(
    probs: &[f32],
    (j0, total): (usize, usize),
    rows: usize,
    d: usize,
    v: &[f32],
    out: &mut [f32],
) {
    let full = d / LANES * LANES;
    for r0 in (0..rows).step_by(PV_ROWS) {
        let (c, l0) = (r0 / LANES, r0 % LANES);
        let n_rows = (rows - r0).min(PV_ROWS);
        let p_at = |j: usize| (c * total + j0 + j) * LANES + l0;
        for d0 in (0..full).step_by(LANES) {
            let mut acc = [[0f32; LANES]; PV_ROWS];
            for (a, acc) in acc.iter_mut().enumerate().take(n_rows) {
                acc.copy_from_slice(&out[(r0 + a) * d + d0..][..LANES]);
            }
            for (j, vj) in v.chunks_exact(d).enumerate() {
                let vj = lanes(vj, d0);
                let p = &probs[p_at(j)..][..PV_ROWS];
                for (a, &pa) in acc.iter_mut().zip(p) {
                    for l in 0..LANES {
                        a[l] = fmadd::<FMA>(pa, vj[l], a[l]);
                    }
                }
            }
            for (a, acc) in acc.iter().enumerate().take(n_rows) {
                out[(r0 + a) * d + d0..][..LANES].copy_from_slice(acc);
            }
        }
        for a in 0..n_rows {
            for i in full..d {
                let mut acc = out[(r0 + a) * d + i];
                for (j, vj) in v.chunks_exact(d).enumerate() {
                    acc = fmadd::<FMA>(probs[p_at(j) + a], vj[i], acc);
                }
                out[(r0 + a) * d + i] = acc;
            }
        }
    }
}
