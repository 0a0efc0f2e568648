//! AVX-512 kernels with VNNI (x86-64, selected at run time). A 512-bit register holds two
//! quantization groups; `vpdpbusd` multiplies 64 unsigned by 64 signed bytes into 16 i32
//! lanes, 8 lanes per group, so each group's f32 scale applies lane-wise.
//!
//! * q8: activations are stored as `a + 128` (unsigned); the excess `128 * sum(w)` of each
//!   lane is removed by starting the accumulation at `-128 * (lane sum of w)`, computed once
//!   per weight group by a `vpdpbusd` against ones, so the integer dot is exact.
//! * q4: the codes (0..15) are the unsigned operand, the activations the signed one; the
//!   minimum's contribution `min * scale * sum(a)` is added per group afterwards.

use super::x86_avx2::{f16_row, min_terms};
use super::{Input, QuantActs, WeightView, GROUP, MAX_TILE_ROWS};
use core::arch::x86_64::*;

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
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
        (WeightView::Q8 { q, scales }, Input::Quant(a)) => {
            q8_tile(q, scales, k, first, count, a, out)
        }
        (WeightView::Q4 { q, scales, mins }, Input::Quant(a)) => {
            q4_tile(q, scales, mins, k, first, count, a, out)
        }
        _ => panic!("kernel input does not suit the weight scheme"),
    }
}

/// `a · b` with two 16-lane FMA accumulators and a masked tail.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    // SAFETY: full loads stay below n; the tail load is masked to the remaining elements.
    unsafe {
        while i + 32 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                acc1,
            );
            i += 32;
        }
        while i < n {
            let m: __mmask16 = if n - i >= 16 {
                0xffff
            } else {
                (1u16 << (n - i)) - 1
            };
            acc0 = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                acc0,
            );
            i += 16;
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

/// Byte and float masks for group pair `gp` of `groups` (the last pair may hold one group).
#[inline(always)]
fn pair_masks(gp: usize, groups: usize) -> (bool, __mmask64, __mmask16) {
    if 2 * gp + 1 < groups {
        (true, !0, 0xffff)
    } else {
        (false, 0xffff_ffff, 0x00ff)
    }
}

/// Groups `2 gp` and `2 gp + 1` of a row's f32 scales, 8 lanes each (0 for a lone group).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn pair_scales(scales: &[f32], gp: usize, two: bool) -> __m512 {
    let pair = &scales[2 * gp..2 * gp + if two { 2 } else { 1 }];
    let mask: __mmask16 = if two { 0b11 } else { 0b1 };
    // SAFETY: the mask reads only the pair's scales.
    let v = unsafe { _mm512_maskz_loadu_ps(mask, pair.as_ptr()) };
    let spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_permutexvar_ps(spread, v)
}

/// Asks for output row `o + ROWS_AHEAD`'s weights (`bytes` long) to be brought into cache:
/// streaming the matrix from memory otherwise stalls every row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn prefetch_row(base: *const u8, len: usize, row_bytes: usize, o: usize) {
    const ROWS_AHEAD: usize = 4;
    let start = (o + ROWS_AHEAD) * row_bytes;
    if start + row_bytes <= len {
        for line in (0..row_bytes).step_by(64) {
            // SAFETY: prefetches never fault; the address is inside the matrix anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(start + line) as *const i8) };
        }
    }
}

/// Row `r`'s scales of group pair `gp` (8 copies per group; masked for a lone group).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn act_scales(a: &QuantActs, r: usize, gp: usize, mask: __mmask16) -> __m512 {
    let at = (r * a.groups() + 2 * gp) * 8;
    let lanes = if mask == 0xffff { 16 } else { 8 };
    let s = &a.scale8[at..at + lanes];
    // SAFETY: the mask reads only `lanes` floats.
    unsafe { _mm512_maskz_loadu_ps(mask, s.as_ptr()) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
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
    let codes = a.bytes();
    let ones = _mm512_set1_epi8(1);
    let mut acc = [_mm512_setzero_ps(); MAX_TILE_ROWS];
    let mut ws_row = vec![0f32; groups];
    for i in 0..count {
        let o = first + i;
        prefetch_row(q.as_ptr() as *const u8, q.len(), k, o);
        acc[..rows].fill(_mm512_setzero_ps());
        f16_row(&scales[o * groups..(o + 1) * groups], &mut ws_row);
        for gp in 0..groups.div_ceil(2) {
            let (two, bytes, floats) = pair_masks(gp, groups);
            let ws = pair_scales(&ws_row, gp, two);
            // SAFETY: masked loads read only the pair's groups, inside q and the codes.
            unsafe {
                let w = _mm512_maskz_loadu_epi8(bytes, q.as_ptr().add(o * k + gp * 2 * GROUP));
                let wsum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, w);
                let start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(wsum, 7));
                for (r, acc) in acc[..rows].iter_mut().enumerate() {
                    let c = _mm512_maskz_loadu_epi8(
                        bytes,
                        codes.as_ptr().add(r * k + gp * 2 * GROUP) as *const i8,
                    );
                    let dot = _mm512_dpbusd_epi32(start, c, w);
                    let s = _mm512_mul_ps(ws, act_scales(a, r, gp, floats));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, *acc);
                }
            }
        }
        for (r, acc) in acc[..rows].iter().enumerate() {
            out[i * rows + r] = _mm512_reduce_add_ps(*acc);
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
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
    let codes = a.bytes();
    let low = _mm256_set1_epi8(15);
    let mut acc = [_mm512_setzero_ps(); MAX_TILE_ROWS];
    let mut mins_f32 = vec![0f32; groups];
    let mut min_part = [0f32; MAX_TILE_ROWS];
    let mut ws_row = vec![0f32; groups];
    for i in 0..count {
        let o = first + i;
        prefetch_row(q.as_ptr(), q.len(), k / 2, o);
        acc[..rows].fill(_mm512_setzero_ps());
        f16_row(&scales[o * groups..(o + 1) * groups], &mut ws_row);
        for gp in 0..groups.div_ceil(2) {
            let (two, bytes, floats) = pair_masks(gp, groups);
            let ws = pair_scales(&ws_row, gp, two);
            let half: __mmask32 = if two { !0 } else { 0xffff };
            // SAFETY: masked loads read only the pair's groups, inside q and the codes.
            unsafe {
                let v = _mm256_maskz_loadu_epi8(
                    half,
                    q.as_ptr().add((o * k + gp * 2 * GROUP) / 2) as *const i8,
                );
                let lo = _mm256_and_si256(v, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                // [g0 even, g1 even, g0 odd, g1 odd] -> [g0 even, g0 odd, g1 even, g1 odd]
                let both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                let w = _mm512_shuffle_i64x2(both, both, 0b11_01_10_00);
                for (r, acc) in acc[..rows].iter_mut().enumerate() {
                    let c = _mm512_maskz_loadu_epi8(
                        bytes,
                        codes.as_ptr().add(r * k + gp * 2 * GROUP) as *const i8,
                    );
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, c);
                    let s = _mm512_mul_ps(ws, act_scales(a, r, gp, floats));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, *acc);
                }
            }
        }
        // SAFETY: this function's features include the AVX2 helper's.
        min_terms(
            &mins[o * groups..(o + 1) * groups],
            a,
            &mut mins_f32,
            &mut min_part,
        );
        for r in 0..rows {
            out[i * rows + r] = _mm512_reduce_add_ps(acc[r]) + min_part[r];
        }
    }
}
