//! Quantization round trips, sizes, threads, the fits and their pinned bytes.

use super::*;

fn sample(rows: usize, cols: usize) -> Matrix {
    let mut state = 12345u64;
    let values = (0..rows * cols)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    Matrix::from_f32(rows, cols, values)
}

fn max_err(a: &Matrix, b: &Matrix) -> f64 {
    crate::tolerance::max_abs_diff(&a.to_f32(), &b.to_f32())
}

#[test]
fn schemes_round_trip_within_their_step() {
    let m = sample(8, 64);
    assert_eq!(max_err(&m, &m.quantize(Scheme::F32)), 0.0);
    assert!(max_err(&m, &m.quantize(Scheme::F16)) < 1e-4);
    // q8: half a step of absmax/127 (absmax <= 0.1), plus f16 rounding of the scale.
    assert!(max_err(&m, &m.quantize(Scheme::Q8)) < 0.1 / 127.0 * 0.51 + 1e-4);
    // q4: half a step of range/15 (range <= 0.2) at worst when no shrink wins.
    assert!(max_err(&m, &m.quantize(Scheme::Q4)) < 0.2 / 15.0 * 0.5 * 1.5);
}

/// Any row on its own reads the same values as the whole matrix (every scheme, f32 too).
#[test]
fn rows_dequantize_as_the_whole_matrix() {
    for scheme in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let q = sample(3, 64).quantize(scheme);
        let all = q.to_f32();
        for r in [2, 0, 1] {
            let mut row = vec![f32::NAN; 64];
            q.dequantize_row(r, &mut row);
            assert_eq!(row, all[r * 64..(r + 1) * 64], "{scheme:?} row {r}");
        }
    }
}

#[test]
fn sizes_match_the_data() {
    for scheme in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let q = sample(4, 64).quantize(scheme);
        let actual = match &q.data {
            MatrixData::F32(v) => v.len() * 4,
            MatrixData::F16(v) => v.len() * 2,
            MatrixData::Q8 { q, scales } => q.len() + scales.len() * 2,
            MatrixData::Q4 { q, scales, mins } => q.len() + scales.len() * 2 + mins.len() * 2,
        };
        assert_eq!(q.bytes(), actual, "{scheme:?}");
    }
}

#[test]
fn parallel_quantization_equals_sequential() {
    let m = sample(64, 96);
    let values = m.as_f32().unwrap();
    for quantize in [quantize_q8 as fn(&[f32]) -> MatrixData, quantize_q4] {
        assert_eq!(in_parallel_above(values, quantize, 32), quantize(values));
        // Odd group counts over every thread the machine has: the groups stay whole.
        for groups in [7, 13] {
            let few = &values[..groups * GROUP];
            assert_eq!(
                in_parallel_above(few, quantize, 1),
                quantize(few),
                "{groups}"
            );
        }
    }
}

/// The quantizers' exact output on a fixed matrix (FNV-1a of codes, scales and mins).
/// Packages must be reproducible (`bd3lm quantize` rebuilds the embedded package byte for
/// byte): a change here is a format change, made on purpose with new digests.
#[test]
fn quantized_bytes_are_pinned() {
    fn fnv(digest: &mut u64, bytes: &[u8]) {
        for &b in bytes {
            *digest = (*digest ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    let m = sample(16, 64);
    let digest = |q: Matrix| {
        let mut d = 0xcbf29ce484222325u64;
        let halves = |v: &[u16]| v.iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<u8>>();
        match &q.data {
            MatrixData::Q8 { q, scales } => {
                fnv(&mut d, bytemuck::cast_slice(q));
                fnv(&mut d, &halves(scales));
            }
            MatrixData::Q4 { q, scales, mins } => {
                fnv(&mut d, q);
                fnv(&mut d, &halves(scales));
                fnv(&mut d, &halves(mins));
            }
            _ => unreachable!("quantized"),
        }
        d
    };
    let got = [
        digest(m.quantize(Scheme::Q8)),
        digest(m.quantize_with(Scheme::Q4, Q4Fit::Range)),
        digest(m.quantize_with(Scheme::Q4, Q4Fit::LeastSquares)),
    ];
    assert_eq!(
        got,
        [0x57f1bd5363bb1989, 0x96241b54fafdaebc, 0x140e57cd59235861],
        "{got:#x?}"
    );
}

/// Groups whose scale rounds to a zero f16 get zero codes, never codes from x / 0.
#[test]
fn groups_below_f16_resolution_get_zero_codes() {
    let mut v = vec![0.0f32; GROUP];
    (v[3], v[5]) = (1e-9, -1e-9);
    let m = Matrix::from_f32(1, GROUP, v);
    let MatrixData::Q8 { q, scales } = m.quantize(Scheme::Q8).data else {
        panic!("q8")
    };
    assert_eq!(scales, vec![0]);
    assert!(q.iter().all(|&c| c == 0), "{q:?}");
    let MatrixData::Q4 { q, scales, .. } = m.quantize(Scheme::Q4).data else {
        panic!("q4")
    };
    assert_eq!(scales, vec![0]);
    assert!(q.iter().all(|&c| c == 0), "{q:?}");
}

/// The range fit keeps, per group, the candidate of least squared error: never worse than
/// the plain [min, max] range it starts from (computed here independently).
#[test]
fn range_fit_is_never_worse_than_the_plain_range() {
    let m = sample(16, 64);
    let values = m.to_f32();
    let fitted = m.quantize(Scheme::Q4).to_f32();
    let sq = |a: &[f32], b: &[f32]| -> f64 {
        a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
    };
    let mut strictly_better = 0;
    for (group, got) in values.chunks(GROUP).zip(fitted.chunks(GROUP)) {
        let lo = group.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = group.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (s, mn) = (
            f16::from_f32((hi - lo) / 15.0).to_f32(),
            f16::from_f32(lo).to_f32(),
        );
        let plain: Vec<f32> = group
            .iter()
            .map(|&x| ((x - mn) / s).round().clamp(0.0, 15.0) * s + mn)
            .collect();
        let (fit_err, plain_err) = (sq(group, got), sq(group, &plain));
        assert!(
            fit_err <= plain_err * (1.0 + 1e-6),
            "{fit_err} > {plain_err}"
        );
        strictly_better += usize::from(fit_err < plain_err);
    }
    assert!(strictly_better > 0, "the shrunk ranges win somewhere");
}

#[test]
fn least_squares_fit_lowers_the_error_of_the_range_fit() {
    let m = sample(16, 64);
    let err = |fit| {
        let q = m.quantize_with(Scheme::Q4, fit).to_f32();
        m.to_f32()
            .iter()
            .zip(q)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
    };
    assert!(err(Q4Fit::LeastSquares) < err(Q4Fit::Range));
}

#[test]
fn constant_groups_are_exact() {
    let m = Matrix::from_f32(1, 32, vec![0.25; 32]);
    assert_eq!(m.quantize(Scheme::Q4).to_f32(), vec![0.25; 32]);
    let z = Matrix::from_f32(1, 32, vec![0.0; 32]);
    assert_eq!(z.quantize(Scheme::Q8).to_f32(), vec![0.0; 32]);
}
