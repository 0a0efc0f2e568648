//! Every kernel family against the portable kernels, and the portable kernels against f64
//! arithmetic on the dequantized operands, on seeded random inputs.

use super::*;
use bd3lm::quant::{Matrix, Scheme};

fn random(n: usize, seed: u64, amplitude: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * amplitude
        })
        .collect()
}

fn matrix(rows: usize, cols: usize, scheme: Scheme, seed: u64) -> Matrix {
    let mut values = random(rows * cols, seed, 0.1);
    // An outlier column, as trained weights have.
    values[3] = 0.9;
    Matrix::from_f32(rows, cols, values).quantize(scheme)
}

fn view(m: &Matrix) -> WeightView<'_> {
    crate::matmul::view(m)
}

/// Runs one family over outputs `first..first + count`.
fn run(simd: Simd, m: &Matrix, x: &[f32], rows: usize, first: usize, count: usize) -> Vec<f32> {
    let k = m.cols;
    let mut out = vec![0f32; count * rows];
    match view(m).quant_scheme() {
        Some(scheme) => {
            let mut acts = QuantActs::default();
            acts.prepare(x, rows, k, scheme, simd);
            matmul_tile(simd, view(m), k, first, Input::Quant(&acts), &mut out);
        }
        None => matmul_tile(simd, view(m), k, first, Input::F32 { x, rows }, &mut out),
    }
    out
}

/// `sum |w| |x|` per output and row: the scale rounding errors are relative to.
fn magnitude(m: &Matrix, x: &[f32], o: usize, r: usize) -> f64 {
    let k = m.cols;
    let w = m.to_f32();
    (0..k)
        .map(|i| (w[o * k + i] as f64 * x[r * k + i] as f64).abs())
        .sum::<f64>()
        .max(1e-6)
}

#[test]
fn every_family_matches_the_portable_kernels() {
    let schemes = [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4];
    for scheme in schemes {
        // 96 and 32 have an odd number of groups (the AVX-512 pair loop's lone group).
        let ks: &[usize] = match scheme {
            Scheme::F32 => &[32, 96, 100, 768, 3],
            Scheme::F16 => &[32, 96, 100, 768, 6],
            // 160: one block of the q4 rows kernel's 4 groups and a lone group after it.
            _ => &[32, 96, 160, 768],
        };
        for &k in ks {
            for rows in [1, 3, 4, 16, 21, MAX_TILE_ROWS] {
                let m = matrix(11, k, scheme, k as u64);
                let x = random(rows * k, 7 + rows as u64, 2.0);
                let (first, count) = (2, 7);
                let expected = run(Simd::Portable, &m, &x, rows, first, count);
                for simd in Simd::available() {
                    let got = run(simd, &m, &x, rows, first, count);
                    for i in 0..count {
                        for r in 0..rows {
                            let (g, e) = (got[i * rows + r], expected[i * rows + r]);
                            // AVX-512 computes q8 and q4 in the portable arithmetic exactly.
                            let exact = simd == Simd::Avx512 && view(&m).quant_scheme().is_some();
                            let tol = if exact {
                                0.0
                            } else {
                                2e-6 * magnitude(&m, &x, first + i, r)
                            };
                            assert!(
                                ((g - e) as f64).abs() <= tol,
                                "{simd:?} {scheme:?} k={k} rows={rows} o={} r={r}: {g} vs {e}",
                                first + i
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn quantized_kernels_compute_the_dequantized_product() {
    for scheme in [Scheme::Q8, Scheme::Q4] {
        let (n, k, rows) = (5, 96, 4);
        let m = matrix(n, k, scheme, 3);
        let x = random(rows * k, 11, 3.0);
        let qs = match scheme {
            Scheme::Q8 => QuantScheme::Q8,
            _ => QuantScheme::Q4,
        };
        let mut acts = QuantActs::default();
        acts.prepare(&x, rows, k, qs, Simd::Portable);
        // The activations as the kernels see them, back in f32 (undoing the q4 order).
        let mut xq = vec![0f64; rows * k];
        for r in 0..rows {
            for c in 0..k {
                let (g, i) = (c / GROUP, c % GROUP);
                let at = if qs == QuantScheme::Q4 {
                    (i % 2) * (GROUP / 2) + i / 2
                } else {
                    i
                };
                let code = acts.q[r * k + g * GROUP + at];
                let scale = acts.group_scale(r, g);
                xq[r * k + c] = code as f64 * scale as f64;
                assert!(
                    (xq[r * k + c] - x[r * k + c] as f64).abs() <= scale as f64 * 0.5 + 1e-7,
                    "activation quantization error above half a step"
                );
            }
        }
        let w = m.to_f32();
        let got = run(Simd::Portable, &m, &x, rows, 0, n);
        for o in 0..n {
            for r in 0..rows {
                let exact: f64 = (0..k).map(|i| w[o * k + i] as f64 * xq[r * k + i]).sum();
                let tol = 1e-6 * magnitude(&m, &x, o, r);
                assert!(
                    (got[o * rows + r] as f64 - exact).abs() <= tol,
                    "{scheme:?} o={o} r={r}: {} vs {exact}",
                    got[o * rows + r]
                );
            }
        }
    }
}

#[test]
fn dequantized_rows_match_the_core() {
    for scheme in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let m = matrix(3, 64, scheme, 5);
        let mut ours = vec![0f32; 64];
        let mut core = vec![0f32; 64];
        for o in 0..3 {
            dequantize_row(view(&m), 64, o, &mut ours);
            m.dequantize_row(o, &mut core);
            assert_eq!(ours, core, "{scheme:?} row {o}");
        }
    }
}

#[test]
fn families_parse_and_detect() {
    assert!(Simd::available().contains(&Simd::Portable));
    assert!(Simd::detect().is_available());
    for simd in [Simd::Portable, Simd::Simd128, Simd::Avx2, Simd::Avx512] {
        assert_eq!(Simd::parse(simd.name()), Some(simd));
    }
    assert_eq!(Simd::parse("mmx"), None);
}

/// The AVX-512 q8 lane kernel gives the same bits with the engine's precomputed group sums
/// as with the sums it computes itself, and as the portable kernel.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_q8_with_precomputed_sums_matches() {
    if !Simd::Avx512.is_available() {
        eprintln!("skipped: no AVX-512 VNNI on this machine");
        return;
    }
    let (n, k) = (11, 128);
    let m = matrix(n, k, Scheme::Q8, 9);
    let sums = crate::matmul::WeightSums::of([&m]);
    for rows in [4usize, 16, 21] {
        let x = random(rows * k, 5 + rows as u64, 2.0);
        let mut acts = QuantActs::default();
        acts.prepare(&x, rows, k, QuantScheme::Q8, Simd::Avx512);
        let mut with = vec![0f32; n * rows];
        matmul_tile(
            Simd::Avx512,
            sums.view(&m),
            k,
            0,
            Input::Quant(&acts),
            &mut with,
        );
        assert!(matches!(
            sums.view(&m),
            WeightView::Q8 { sums: Some(_), .. }
        ));
        let own = run(Simd::Avx512, &m, &x, rows, 0, n);
        let portable = run(Simd::Portable, &m, &x, rows, 0, n);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&with), bits(&own), "rows {rows}");
        assert_eq!(bits(&with), bits(&portable), "rows {rows}");
    }
}

/// The AVX-512 lane layout, built from f32 in registers, is the scalar path's bit for bit:
/// ties, zero groups, NaN, infinities, rows filling one tile partly and two tiles.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_lane_preparation_is_the_scalar_one() {
    if !Simd::Avx512.is_available() {
        eprintln!("skipped: no AVX-512 VNNI on this machine");
        return;
    }
    for scheme in [QuantScheme::Q8, QuantScheme::Q4] {
        for rows in [4usize, 16, 23, 32] {
            let k = 96;
            let mut x = random(rows * k, rows as u64, 4.0);
            // A group of zeros, one holding ties at the q4 step, NaN and infinities.
            x[32..64].fill(0.0);
            for (i, v) in x[k..k + 32].iter_mut().enumerate() {
                *v = (i as f32 - 16.0) * 0.5;
            }
            x[k + 31] = 127.0;
            x[2 * k + 5] = f32::NAN;
            x[3 * k + 40] = f32::INFINITY;
            x[3 * k + 70] = f32::NEG_INFINITY;
            let mut fast = QuantActs::default();
            fast.prepare(&x, rows, k, scheme, Simd::Avx512);
            assert!(fast.lanes);
            let mut scalar = QuantActs::default();
            scalar.prepare_lanes_scalar(&x, rows, k, scheme);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(fast.lane_words, scalar.lane_words, "{scheme:?} rows {rows}");
            assert_eq!(bits(&fast.lane_scale), bits(&scalar.lane_scale));
            assert_eq!(bits(&fast.lane_scale_sum), bits(&scalar.lane_scale_sum));
        }
    }
}
