//! AVX2 + FMA + F16C kernels (x86-64, selected at run time). int8 codes are widened to i16
//! and multiplied with `vpmaddwd` (exact in i32); f16 weights convert with `vcvtph2ps`.

use super::{Input, QuantActs, WeightView, GROUP, MAX_TILE_ROWS};
use core::arch::x86_64::*;

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn matmul_tile(
    w: WeightView<'_>,
    k: usize,
    first: usize,
    count: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    let rows = input.rows();
    match (w, input) {
        (WeightView::F32(v), Input::F32 { x, .. }) => {
            for i in 0..count {
                let o = first + i;
                let wr = &v[o * k..(o + 1) * k];
                for r in 0..rows {
                    out[i * rows + r] = dot_f32(wr, &x[r * k..(r + 1) * k]);
                }
            }
        }
        (WeightView::F16(v), Input::F32 { x, .. }) => {
            let mut row = vec![0f32; k];
            for i in 0..count {
                let o = first + i;
                f16_row(&v[o * k..(o + 1) * k], &mut row);
                for r in 0..rows {
                    out[i * rows + r] = dot_f32(&row, &x[r * k..(r + 1) * k]);
                }
            }
        }
        (WeightView::Q8 { q, scales, .. }, Input::Quant(a)) => {
            q8_tile(q, scales, k, first, count, a, out)
        }
        (WeightView::Q4 { q, scales, mins }, Input::Quant(a)) => {
            q4_tile(q, scales, mins, k, first, count, a, out)
        }
        _ => panic!("kernel input does not suit the weight scheme"),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn sum8(v: __m256) -> f32 {
    let mut l = [0f32; 8];
    // SAFETY: 32 writable bytes.
    unsafe { _mm256_storeu_ps(l.as_mut_ptr(), v) };
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// `a · b` with four 8-lane FMA accumulators, then 8-lane steps, then a scalar tail.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads within a[..n] and b[..n].
    unsafe {
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                *acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(at)),
                    _mm256_loadu_ps(pb.add(at)),
                    *acc,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
    }
    let mut tail = 0f32;
    for j in i..n {
        tail += a[j] * b[j];
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    sum8(sum) + tail
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn f16_row(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    // SAFETY: reads src[i..i + 8], writes dst[i..i + 8], both within n.
    unsafe {
        while i + 8 <= n {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            i += 8;
        }
    }
    for j in i..n {
        dst[j] = super::f16_to_f32(src[j]);
    }
}

/// `[rows, groups]` f32 minimums of one output row times the rows' `scale * sum` terms.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn min_terms(mins: &[u16], a: &QuantActs, scratch: &mut [f32], out: &mut [f32]) {
    let groups = a.groups();
    f16_row(mins, &mut scratch[..groups]);
    for (r, o) in out.iter_mut().enumerate().take(a.rows) {
        *o = dot_f32(
            &scratch[..groups],
            &a.scale_sum[r * groups..(r + 1) * groups],
        );
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_tile(
    q: &[i8],
    scales: &[u16],
    k: usize,
    first: usize,
    count: usize,
    a: &QuantActs,
    out: &mut [f32],
) {
    let (rows, groups) = (a.rows, k / GROUP);
    assert!(q.len() >= (first + count) * k && a.q.len() >= rows * k);
    let mut acc = [_mm256_setzero_ps(); MAX_TILE_ROWS];
    for i in 0..count {
        let o = first + i;
        acc[..rows].fill(_mm256_setzero_ps());
        for g in 0..groups {
            // SAFETY: the assert above bounds every load of this loop.
            unsafe {
                let p = q.as_ptr().add(o * k + g * GROUP) as *const __m128i;
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p));
                let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(1)));
                let ws = _mm256_set1_ps(super::f16_to_f32(scales[o * groups + g]));
                for (r, acc) in acc[..rows].iter_mut().enumerate() {
                    let c = a.q.as_ptr().add(r * k + g * GROUP) as *const __m256i;
                    let dot = _mm256_add_epi32(
                        _mm256_madd_epi16(w0, _mm256_loadu_si256(c)),
                        _mm256_madd_epi16(w1, _mm256_loadu_si256(c.add(1))),
                    );
                    let s = _mm256_mul_ps(ws, scale8(a, r, g));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, *acc);
                }
            }
        }
        for (r, acc) in acc[..rows].iter().enumerate() {
            out[i * rows + r] = sum8(*acc);
        }
    }
}

/// The 8 copies of row `r`'s group-`g` scale.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scale8(a: &QuantActs, r: usize, g: usize) -> __m256 {
    let s = &a.scale8[(r * a.groups() + g) * 8..][..8];
    // SAFETY: 8 readable floats.
    unsafe { _mm256_loadu_ps(s.as_ptr()) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_tile(
    q: &[u8],
    scales: &[u16],
    mins: &[u16],
    k: usize,
    first: usize,
    count: usize,
    a: &QuantActs,
    out: &mut [f32],
) {
    let (rows, groups) = (a.rows, k / GROUP);
    assert!(q.len() * 2 >= (first + count) * k && a.q.len() >= rows * k);
    let mut acc = [_mm256_setzero_ps(); MAX_TILE_ROWS];
    let mut mins_f32 = vec![0f32; groups];
    let mut min_part = [0f32; MAX_TILE_ROWS];
    let low = _mm_set1_epi8(15);
    for i in 0..count {
        let o = first + i;
        acc[..rows].fill(_mm256_setzero_ps());
        for g in 0..groups {
            // SAFETY: the assert above bounds every load of this loop.
            unsafe {
                let v = _mm_loadu_si128(q.as_ptr().add((o * k + g * GROUP) / 2) as *const __m128i);
                let even = _mm256_cvtepu8_epi16(_mm_and_si128(v, low));
                let odd = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), low));
                let ws = _mm256_set1_ps(super::f16_to_f32(scales[o * groups + g]));
                for (r, acc) in acc[..rows].iter_mut().enumerate() {
                    let c = a.q.as_ptr().add(r * k + g * GROUP) as *const __m256i;
                    let dot = _mm256_add_epi32(
                        _mm256_madd_epi16(even, _mm256_loadu_si256(c)),
                        _mm256_madd_epi16(odd, _mm256_loadu_si256(c.add(1))),
                    );
                    let s = _mm256_mul_ps(ws, scale8(a, r, g));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, *acc);
                }
            }
        }
        min_terms(
            &mins[o * groups..(o + 1) * groups],
            a,
            &mut mins_f32,
            &mut min_part,
        );
        for r in 0..rows {
            out[i * rows + r] = sum8(acc[r]) + min_part[r];
        }
    }
}
