//! AVX-512 kernels with VNNI (x86-64, selected at run time). One quantization group (32
//! weights, widened to i16) fills a 512-bit register; `vpdpwssd` multiplies it by the row's
//! 32 activation codes into 16 exact i32 lanes, then the group's scales apply in f32.
//! For q4 the codes unpack to [16 even columns, 16 odd columns], the activations' q4 order,
//! and the minimum's contribution `min * scale * sum(a)` is added per row afterwards.

use super::x86_avx2::f16_row;
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

/// Asks for output row `o + ROWS_AHEAD`'s weights (`row_bytes` long) to be brought into
/// cache: streaming the matrix from memory otherwise stalls every row.
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

/// One group's 32 activation codes of row `r`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn act_codes(a: &QuantActs, r: usize, g: usize) -> __m512i {
    let c = &a.q[r * a.k + g * GROUP..][..GROUP];
    // SAFETY: 32 readable i16.
    unsafe { _mm512_loadu_si512(c.as_ptr() as *const __m512i) }
}

/// `acc[r] += (w · codes_r) * ws * scale_r` for one group's 32 widened weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn group_rows(acc: &mut [__m512], w: __m512i, ws: f32, a: &QuantActs, g: usize) {
    for (r, acc) in acc.iter_mut().enumerate() {
        let dot = _mm512_dpwssd_epi32(_mm512_setzero_si512(), w, act_codes(a, r, g));
        let s = _mm512_set1_ps(ws * a.group_scale(r, g));
        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, *acc);
    }
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
    let mut acc = [_mm512_setzero_ps(); MAX_TILE_ROWS];
    let mut ws_row = vec![0f32; groups];
    for i in 0..count {
        let o = first + i;
        prefetch_row(q.as_ptr() as *const u8, q.len(), k, o);
        acc[..rows].fill(_mm512_setzero_ps());
        f16_row(&scales[o * groups..(o + 1) * groups], &mut ws_row);
        for (g, &ws) in ws_row.iter().enumerate() {
            // SAFETY: the assert above bounds the load.
            let w =
                unsafe { _mm256_loadu_si256(q.as_ptr().add(o * k + g * GROUP) as *const __m256i) };
            group_rows(&mut acc[..rows], _mm512_cvtepi8_epi16(w), ws, a, g);
        }
        for (r, acc) in acc[..rows].iter().enumerate() {
            out[i * rows + r] = _mm512_reduce_add_ps(*acc);
        }
    }
}

/// Group pair `gp`'s scales of one row (8 lanes per group; a lone last group leaves the
/// upper 8 lanes zero).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn pair_lanes(values: &[f32], gp: usize) -> __m512 {
    let two = 2 * gp + 1 < values.len();
    let v = if two {
        _mm512_set1_ps(values[2 * gp + 1])
    } else {
        _mm512_setzero_ps()
    };
    _mm512_mask_blend_ps(0x00ff, v, _mm512_set1_ps(values[2 * gp]))
}

/// q4 with 8-bit activation codes: `vpdpbusd` multiplies the 4-bit codes (unsigned) of two
/// groups by their 64 activation bytes (signed) at once.
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
    assert!(q.len() * 2 >= (first + count) * k && a.q_bytes.len() >= rows * k);
    let low = _mm256_set1_epi8(15);
    let mut acc = [_mm512_setzero_ps(); MAX_TILE_ROWS];
    let mut min_part = [0f32; MAX_TILE_ROWS];
    let (mut ws_row, mut wm_row) = (vec![0f32; groups], vec![0f32; groups]);
    // Row r's activation scales of group pair gp, 8 lanes per group.
    let pairs = groups.div_ceil(2);
    let mut act_scales = vec![_mm512_setzero_ps(); rows * pairs];
    for r in 0..rows {
        let row: Vec<f32> = (0..groups).map(|g| a.group_scale(r, g)).collect();
        for gp in 0..pairs {
            act_scales[r * pairs + gp] = pair_lanes(&row, gp);
        }
    }
    for i in 0..count {
        let o = first + i;
        prefetch_row(q.as_ptr(), q.len(), k / 2, o);
        acc[..rows].fill(_mm512_setzero_ps());
        min_part[..rows].fill(0.0);
        f16_row(&scales[o * groups..(o + 1) * groups], &mut ws_row);
        f16_row(&mins[o * groups..(o + 1) * groups], &mut wm_row);
        for gp in 0..pairs {
            let two = 2 * gp + 1 < groups;
            let (half, bytes): (__mmask32, __mmask64) =
                if two { (!0, !0) } else { (0xffff, 0xffff_ffff) };
            let ws = pair_lanes(&ws_row, gp);
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
                        a.q_bytes.as_ptr().add(r * k + gp * 2 * GROUP),
                    );
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, c);
                    let s = _mm512_mul_ps(ws, act_scales[r * pairs + gp]);
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, *acc);
                }
            }
        }
        for (g, &m) in wm_row.iter().enumerate() {
            for (r, part) in min_part[..rows].iter_mut().enumerate() {
                *part += m * a.scale_sum[r * groups + g];
            }
        }
        for r in 0..rows {
            out[i * rows + r] = _mm512_reduce_add_ps(acc[r]) + min_part[r];
        }
    }
}
