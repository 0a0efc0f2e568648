//! Element-wise math of the forward pass, written as plain loops the compiler vectorises, and
//! compiled once more for AVX2 and AVX-512 (with FMA) on x86-64 ([`Simd`] picks the copy).
//!
//! `exp` is a polynomial (Cephes `expf`, about 1 ulp) instead of the libm call, which no
//! compiler vectorises; `tanh` for GELU is built on it.

use crate::kernels::Simd;

/// Rounds to the nearest integer for |x| < 2^22 (no libm call).
#[inline(always)]
fn round_to_int(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + MAGIC) - MAGIC
}

/// `e^x` to about 1 ulp for x in [-87, 88] (clamped outside; no NaN input expected).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = round_to_int(x * LOG2E);
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let e = p * r2 + r + 1.0;
    // 2^n from the bits of n + 127 + MAGIC (exact: an integer below 2^22 in the mantissa),
    // not `n as i32`, whose saturating conversion the compiler does not vectorise.
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let biased = (n + 127.0 + MAGIC).to_bits() - MAGIC.to_bits();
    let pow2 = f32::from_bits(biased << 23);
    e * pow2
}

/// `tanh(x) = 1 - 2 / (e^{2x} + 1)` (saturates to ±1; absolute error about 1e-7).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// GELU with the tanh approximation (spec §4.3).
#[inline(always)]
pub fn gelu_tanh(u: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * u * (1.0 + tanh(K * (u + 0.044715 * u * u * u)))
}

/// `v = gelu(v + bias)` for every row of `x` (`[rows, bias.len()]`).
pub fn bias_gelu(simd: Simd, x: &mut [f32], bias: &[f32]) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the family is only selected when the CPU has these features.
        Simd::Avx512 => unsafe { bias_gelu_avx512(x, bias) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Simd::Avx2 => unsafe { bias_gelu_avx2(x, bias) },
        _ => bias_gelu_impl(x, bias),
    }
}

#[inline(always)]
fn bias_gelu_impl(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = gelu_tanh(*v + b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn bias_gelu_avx512(x: &mut [f32], bias: &[f32]) {
    bias_gelu_impl(x, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_gelu_avx2(x: &mut [f32], bias: &[f32]) {
    bias_gelu_impl(x, bias)
}

/// `out = LN(x) * weight * (1 + scale) + shift` per row (no bias, eps 1e-5, biased
/// variance, statistics in f64 as the reference computes them).
pub fn layer_norm_modulate(
    out: &mut [f32],
    x: &[f32],
    weight: &[f32],
    shift: &[f32],
    scale: &[f32],
) {
    let h = weight.len();
    for (o_row, x_row) in out.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
        let mean = x_row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
        let var = x_row
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / h as f64;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for i in 0..h {
            let normed = ((x_row[i] as f64 - mean) * rstd) as f32;
            o_row[i] = normed * weight[i] * (1.0 + scale[i]) + shift[i];
        }
    }
}

/// `x += gate * branch` row by row (spec §4.3).
pub fn gated_residual(x: &mut [f32], branch: &[f32], gate: &[f32]) {
    let h = gate.len();
    for (x_row, b_row) in x.chunks_exact_mut(h).zip(branch.chunks_exact(h)) {
        for ((xv, &bv), &g) in x_row.iter_mut().zip(b_row).zip(gate) {
            *xv += g * bv;
        }
    }
}

/// `x[r] += bias` for every row.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = bd3lm::tolerance::worst(worst, rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(1000.0) > 1e38);
    }

    #[test]
    fn gelu_matches_the_libm_version() {
        let reference = |u: f32| {
            let k = 0.797_884_6f32;
            0.5 * u * (1.0 + (k * (u + 0.044715 * u * u * u)).tanh())
        };
        let mut u = -12.0f32;
        while u < 12.0 {
            let err = (gelu_tanh(u) - reference(u)).abs();
            assert!(err <= 2e-7 * u.abs().max(1.0), "gelu({u}): {err:e}");
            u += 0.001;
        }
        let bias: Vec<f32> = (0..37).map(|i| i as f32 * 0.1 - 1.5).collect();
        let rows: Vec<f32> = (0..3 * 37).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        let mut expected = rows.clone();
        bias_gelu(Simd::Portable, &mut expected, &bias);
        for simd in Simd::available() {
            let mut got = rows.clone();
            bias_gelu(simd, &mut got, &bias);
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 1e-6, "{simd:?}: {g} vs {e}");
            }
        }
        let mut row = vec![0.5f32];
        bias_gelu(Simd::Portable, &mut row, &[0.25]);
        assert!((row[0] - reference(0.75)).abs() < 1e-6);
    }
}
