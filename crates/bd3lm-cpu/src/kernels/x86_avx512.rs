//! AVX-512 kernels with VNNI (x86-64, selected at run time): f32 and f16 weights here, q8 and
//! q4 in `x86_avx512_quant.rs`.

use super::x86_avx2::f16_row;
use super::x86_avx512_quant as quant;
use super::{Input, WeightView};
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
        (WeightView::Q8 { q, scales, sums }, Input::Quant(a)) => {
            quant::q8_tile(q, scales, sums, k, first, count, a, out)
        }
        (WeightView::Q4 { q, scales, mins }, Input::Quant(a)) => {
            quant::q4_tile(q, scales, mins, k, first, count, a, out)
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
