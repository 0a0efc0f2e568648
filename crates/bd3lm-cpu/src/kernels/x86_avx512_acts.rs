//! The lane layout of [`QuantActs`] built straight from f32 rows with AVX-512: two vectors
//! per group, quantized, split (q8) or reordered (q4) and narrowed to bytes in registers.
//! Every value is the scalar path's (`acts.rs`), bit for bit: the same maximum, scale and
//! reciprocal, the same clamp, rounding half to even (the default rounding of `vcvtps2dq`,
//! as the scalar magic-number rounding), and NaN codes as zero, as `f32 as i16` makes them.
//! It runs on the thread that calls the matmul, before the kernels start, so its speed is
//! the speed of every other thread's wait.

use super::acts::{QuantActs, QuantScheme, LANES, TILE_GROUP_BYTES};
use super::GROUP;
use core::arch::x86_64::*;

/// Quantizes `x` (`[a.rows, a.k]`) into `a`'s lane layout, which the caller has sized.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn prepare_lanes(a: &mut QuantActs, x: &[f32], scheme: QuantScheme, act_max: f32) {
    let (rows, k, groups) = (a.rows, a.k, a.groups());
    assert!(x.len() >= rows * k && k.is_multiple_of(GROUP));
    let parts = match scheme {
        QuantScheme::Q8 => 2,
        QuantScheme::Q4 => 1,
    };
    let per_group = parts * TILE_GROUP_BYTES / 4;
    let part = TILE_GROUP_BYTES / 4;
    assert!(a.lane_words.len() >= a.tiles() * groups * per_group);
    assert!(a.lane_scale.len() >= a.tiles() * groups * LANES);
    // q4's order within a group: the 16 even columns, then the 16 odd ones.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let (lo_bound, hi_bound) = (_mm512_set1_ps(-act_max), _mm512_set1_ps(act_max));
    for r in 0..rows {
        let (t, lane) = (r / LANES, r % LANES);
        for g in 0..groups {
            let src = &x[r * k + g * GROUP..][..GROUP];
            // SAFETY: src holds GROUP = 32 values.
            let (v0, v1) = unsafe {
                (
                    _mm512_loadu_ps(src.as_ptr()),
                    _mm512_loadu_ps(src.as_ptr().add(16)),
                )
            };
            // max(|v|, m) keeps m where |v| is NaN, as the scalar `f32::max` fold does.
            let m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
            let m = _mm512_max_ps(_mm512_abs_ps(v1), m);
            let amax = _mm512_reduce_max_ps(m);
            let scale = amax / act_max;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let codes = |v: __m512| {
                let q = _mm512_mul_ps(v, _mm512_set1_ps(inv));
                // clamp(lo, hi) as f32::clamp: NaN stays NaN, then becomes code 0.
                let c = _mm512_min_ps(_mm512_max_ps(q, lo_bound), hi_bound);
                let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(q, q);
                _mm512_maskz_cvtps_epi32(ordered, c)
            };
            let (c0, c1) = (codes(v0), codes(v1));
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(c0, c1));
            let at = (t * groups + g) * LANES + lane;
            a.lane_scale[at] = scale;
            a.lane_scale_sum[at] = scale * sum as f32;
            let base = (t * groups + g) * per_group + lane;
            let words = &mut a.lane_words[base..base + per_group - lane];
            match scheme {
                QuantScheme::Q8 => {
                    // c + 32768 = 256 H + L (acts.rs).
                    let offset = _mm512_set1_epi32(128);
                    let high = |c| _mm512_add_epi32(_mm512_srai_epi32::<8>(c), offset);
                    let byte = _mm512_set1_epi32(255);
                    let (l0, l1) = (_mm512_and_si512(c0, byte), _mm512_and_si512(c1, byte));
                    scatter_quads(words, 0, high(c0), high(c1));
                    scatter_quads(words, part, l0, l1);
                }
                QuantScheme::Q4 => {
                    let e = _mm512_permutex2var_epi32(c0, even, c1);
                    let o = _mm512_permutex2var_epi32(c0, odd, c1);
                    scatter_quads(words, 0, e, o);
                }
            }
        }
    }
}

/// Narrows 32 codes (`first`, then `second`, one per 32-bit lane) to bytes and writes quad
/// `i`'s four bytes to `words[offset + i * LANES]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn scatter_quads(words: &mut [u32], offset: usize, first: __m512i, second: __m512i) {
    let mut quads = [0u32; 8];
    // SAFETY: quads holds 32 bytes, two 16-byte stores.
    unsafe {
        let p = quads.as_mut_ptr() as *mut __m128i;
        _mm_storeu_si128(p, _mm512_cvtepi32_epi8(first));
        _mm_storeu_si128(p.add(1), _mm512_cvtepi32_epi8(second));
    }
    for (i, &w) in quads.iter().enumerate() {
        words[offset + i * LANES] = w;
    }
}
