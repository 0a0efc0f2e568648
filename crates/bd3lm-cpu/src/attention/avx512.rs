//! The two inner loops of a head in AVX-512 (x86-64): written with intrinsics so that the
//! score and `p · V` accumulators stay in registers, which the generic loops do not get from
//! the compiler at these tile sizes. Vectors past the head width are masked, so any even
//! width runs here (the released models' 64 with every lane in use; the fixtures' 16, so that
//! the conformance tests run these loops).

use super::{LANES, PV_ROWS};
use core::arch::x86_64::*;

/// Keys scored at once: one accumulator each, all sharing every loaded query vector.
const KEYS: usize = 8;

/// Keys ahead of the one being scored whose K is requested from memory: a head's run is
/// contiguous, but the prefetch keeps the loads from waiting on each new page.
const K_AHEAD: usize = 16;

/// Requests the cache lines of `data` (into L1 with `T0`, L2 with `T1`); never faults.
#[inline(always)]
fn prefetch<const HINT: i32>(data: &[f32]) {
    for line in data.iter().step_by(16) {
        // SAFETY: a prefetch of any address is harmless.
        unsafe { _mm_prefetch::<HINT>(line as *const f32 as *const i8) };
    }
}

/// Whether these kernels take a head of width `d` (RoPE needs an even one).
pub(super) fn suits(d: usize) -> bool {
    d > 0 && d.is_multiple_of(2)
}

/// The first `n` of 16 lanes (all of them from 16 on).
fn lanes_mask(n: usize) -> __mmask16 {
    if n >= LANES {
        0xFFFF
    } else {
        (1u16 << n) - 1
    }
}

/// Scores of the keys at window positions `j0..` (`k`: their un-rotated head vectors, one
/// after another): rotated with table rows `j0..` into `rotated`, KEYS at a time, then
/// `scores[(c * total + j) * LANES + l] = scale * sum_i qt[(c * d + i) * LANES + l] * k_j[i]`
/// for every chunk `c` of rows, one accumulator per key summed over `i` in order. The
/// same keys' `v` (unread here, used next by `pv`) is requested into L2 meanwhile.
///
/// # Safety
/// The CPU must support AVX-512 F and FMA.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn scores(
    qt: &[f32],
    chunks: usize,
    d: usize,
    (k, v): (&[f32], &[f32]),
    (j0, total): (usize, usize),
    (cos, sin): (&[f32], &[f32]),
    scale: f32,
    scores: &mut [f32],
    rotated: &mut [f32],
) {
    let half = d / 2;
    let len = k.len() / d;
    assert_eq!(v.len(), k.len());
    assert!(suits(d) && j0 + len <= total);
    assert!(qt.len() >= chunks * d * LANES && scores.len() >= chunks * total * LANES);
    assert!(rotated.len() >= KEYS * d && cos.len() >= (j0 + len) * half);
    assert!(sin.len() >= (j0 + len) * half);
    let scale = _mm512_set1_ps(scale);
    let rot = rotated.as_mut_ptr();
    for g in (0..len).step_by(KEYS) {
        let n = (len - g).min(KEYS);
        let ahead = ((g + K_AHEAD).min(len) * d, (g + K_AHEAD + n).min(len) * d);
        prefetch::<_MM_HINT_T0>(&k[ahead.0..ahead.1]);
        prefetch::<_MM_HINT_T1>(&v[g * d..(g + n) * d]);
        for key in 0..KEYS {
            let dst = rot.add(key * d);
            if key >= n {
                for i in (0..d).step_by(LANES) {
                    _mm512_mask_storeu_ps(dst.add(i), lanes_mask(d - i), _mm512_setzero_ps());
                }
                continue;
            }
            // SAFETY (all loads and stores below): bounds asserted above.
            let x = k.as_ptr().add((g + key) * d);
            let pos = j0 + g + key;
            let (c, s) = (cos.as_ptr().add(pos * half), sin.as_ptr().add(pos * half));
            for i in (0..half).step_by(LANES) {
                let m = lanes_mask(half - i);
                let load = |p: *const f32| _mm512_maskz_loadu_ps(m, p);
                let (a, b) = (load(x.add(i)), load(x.add(half + i)));
                let (cv, sv) = (load(c.add(i)), load(s.add(i)));
                // As the generic rope: a·c − b·s and b·c + a·s, each product rounded.
                let lo = _mm512_sub_ps(_mm512_mul_ps(a, cv), _mm512_mul_ps(b, sv));
                let hi = _mm512_add_ps(_mm512_mul_ps(b, cv), _mm512_mul_ps(a, sv));
                _mm512_mask_storeu_ps(dst.add(i), m, lo);
                _mm512_mask_storeu_ps(dst.add(half + i), m, hi);
            }
        }
        for c in 0..chunks {
            let q = qt.as_ptr().add(c * d * LANES);
            let mut acc = [_mm512_setzero_ps(); KEYS];
            for i in 0..d {
                let qv = _mm512_loadu_ps(q.add(i * LANES));
                for (key, acc) in acc.iter_mut().enumerate() {
                    let kv = _mm512_set1_ps(*rot.add(key * d + i));
                    *acc = _mm512_fmadd_ps(qv, kv, *acc);
                }
            }
            for (key, acc) in acc.iter().enumerate().take(n) {
                let at = (c * total + j0 + g + key) * LANES;
                _mm512_storeu_ps(scores.as_mut_ptr().add(at), _mm512_mul_ps(*acc, scale));
            }
        }
    }
}

/// `out[r][i] += sum_j probs[(c * total + j) * LANES + l] * v_j[i]` (row `r` in lane `l` of
/// chunk `c`) over the keys at window positions `j0..` (`v`: their head vectors, one after
/// another: a block that stays in L1 while PV_ROWS rows × 64 dimensions at a time, 16
/// accumulators, use it); each output sums over `j` in order. Meanwhile the cache lines of
/// `next` (the keys the caller scores next) are requested from memory, spread over the
/// inner steps, so that the stream continues under this product's arithmetic.
///
/// # Safety
/// The CPU must support AVX-512 F and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn pv(
    probs: &[f32],
    (j0, total): (usize, usize),
    rows: usize,
    d: usize,
    v: &[f32],
    next: &[f32],
    out: &mut [f32],
) {
    let len = v.len() / d;
    assert!(suits(d) && j0 + len <= total && out.len() >= rows * d);
    assert!(probs.len() >= rows.div_ceil(LANES) * total * LANES);
    let (vp, pp, op) = (v.as_ptr(), probs.as_ptr(), out.as_mut_ptr());
    let steps = rows.div_ceil(PV_ROWS) * d.div_ceil(4 * LANES) * len;
    let lines = next.len().div_ceil(16);
    let per_step = lines.div_ceil(steps.max(1));
    let mut line = 0;
    for r0 in (0..rows).step_by(PV_ROWS) {
        let n_rows = (rows - r0).min(PV_ROWS);
        let (c, l0) = (r0 / LANES, r0 % LANES);
        for d0 in (0..d).step_by(4 * LANES) {
            // Vectors past the head width are masked off (their lanes neither read nor
            // written; the pointers to them are only formed, with `wrapping_add`).
            let masks = [0, 1, 2, 3].map(|x| lanes_mask(d.saturating_sub(d0 + x * LANES)));
            let mut acc = [[_mm512_setzero_ps(); 4]; PV_ROWS];
            // SAFETY (all loads and stores below): bounds asserted above, lanes past the
            // head width masked; the lanes l0..l0 + PV_ROWS of a chunk are inside it (l0
            // is a multiple of PV_ROWS).
            for (a, acc) in acc.iter_mut().enumerate().take(n_rows) {
                let o = op.wrapping_add((r0 + a) * d + d0);
                for (x, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_maskz_loadu_ps(masks[x], o.wrapping_add(x * LANES));
                }
            }
            for j in 0..len {
                for _ in 0..per_step {
                    if line < lines {
                        prefetch::<_MM_HINT_T1>(&next[line * 16..][..1]);
                        line += 1;
                    }
                }
                let row = vp.wrapping_add(j * d + d0);
                let vs = [0, 1, 2, 3]
                    .map(|x| _mm512_maskz_loadu_ps(masks[x], row.wrapping_add(x * LANES)));
                let p = pp.add((c * total + j0 + j) * LANES + l0);
                for (a, acc) in acc.iter_mut().enumerate() {
                    let pa = _mm512_set1_ps(*p.add(a));
                    for (acc, &vx) in acc.iter_mut().zip(&vs) {
                        *acc = _mm512_fmadd_ps(pa, vx, *acc);
                    }
                }
            }
            for (a, acc) in acc.iter().enumerate().take(n_rows) {
                let o = op.wrapping_add((r0 + a) * d + d0);
                for (x, &acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(o.wrapping_add(x * LANES), masks[x], acc);
                }
            }
        }
    }
}
