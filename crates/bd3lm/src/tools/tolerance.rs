//! Every tolerance the checks hold an engine to, in one place (quoted by docs/spec.md §10), and
//! the one comparison they all use: a NaN or an infinity on either side is an infinite
//! difference, so an engine that writes a non-finite number can never pass (`f32::max` folds
//! ignore NaN, which is how a NaN logit once scored zero error).

/// What one engine's results are compared with: the golden fixtures' logits, activations and
/// nucleus kept mass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub logits: f64,
    pub activations: f64,
    /// Nucleus kept mass (f64 on the CPU, f32 sums on a GPU).
    pub mass: f64,
}

impl Tolerances {
    /// The CPU engines: the exact reference and the fast CPU engine (natively and in wasm).
    /// Both reach about 5e-6 on the fixtures with f32 weights; every trace must be token-exact.
    pub const CPU: Tolerances = Tolerances {
        logits: 1e-4,
        activations: 1e-4,
        mass: 1e-12,
    };
    /// The WGSL engine: f32 reductions in another order, f32 nucleus sums (spec §10, D5).
    pub const GPU: Tolerances = Tolerances {
        logits: 1e-3,
        activations: 1e-3,
        mass: 1e-5,
    };
}

/// The conditioning constant `c` and the layer-0 adaLN vector, computed by the core at load.
pub const CONSTANTS: f64 = 1e-5;
/// The core's f64 nucleus filter against the reference's filtered rows.
pub const NUCLEUS_ROWS: f64 = 1e-12;
/// The MASK column of masked rows' log-probs, relative to its size (it sits near -1e6, where
/// f32 spacing is 0.0625).
pub const MASK_COLUMN_RELATIVE: f64 = 1e-6;

/// `|x - y|`, or infinity when either value is NaN or infinite (equal infinities included:
/// no golden value the checks compare with is infinite).
pub fn abs_diff(x: f64, y: f64) -> f64 {
    if x.is_finite() && y.is_finite() {
        (x - y).abs()
    } else {
        f64::INFINITY
    }
}

/// The largest [`abs_diff`] over two equally long slices; infinity when the lengths differ.
pub fn max_abs_diff<A, B>(ours: &[A], golden: &[B]) -> f64
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    if ours.len() != golden.len() {
        return f64::INFINITY;
    }
    ours.iter()
        .zip(golden)
        .map(|(&x, &y)| abs_diff(x.into(), y.into()))
        .fold(0.0, worst)
}

/// The larger of two errors, where a NaN error counts as infinite (`f64::max` would drop it).
pub fn worst(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::INFINITY
    } else {
        a.max(b)
    }
}

/// Whether `err` is within `tol` (a NaN error never is).
pub fn within(err: f64, tol: f64) -> bool {
    err <= tol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_value_on_either_side_is_an_infinite_difference() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(abs_diff(bad, 1.0), f64::INFINITY);
            assert_eq!(abs_diff(1.0, bad), f64::INFINITY);
            assert_eq!(abs_diff(bad, bad), f64::INFINITY);
        }
        assert_eq!(abs_diff(1.5, -0.5), 2.0);
    }

    #[test]
    fn one_planted_nan_or_infinity_fails_the_whole_comparison() {
        let golden: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 3.0).collect();
        assert_eq!(max_abs_diff(&golden, &golden), 0.0);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 31, 63] {
                let mut ours = golden.clone();
                ours[at] = bad;
                let err = max_abs_diff(&ours, &golden);
                assert_eq!(err, f64::INFINITY, "{bad} at {at}");
                assert!(!within(err, Tolerances::GPU.logits));
                assert_eq!(max_abs_diff(&golden, &ours), f64::INFINITY);
            }
        }
        assert_eq!(max_abs_diff(&golden[1..], &golden), f64::INFINITY);
        let close: Vec<f64> = golden.iter().map(|&x| x as f64 + 5e-5).collect();
        let err = max_abs_diff(&close, &golden);
        assert!(within(err, Tolerances::CPU.logits) && err > 4e-5, "{err}");
    }

    #[test]
    fn worst_keeps_a_nan_error() {
        assert_eq!(worst(0.0, f64::NAN), f64::INFINITY);
        assert_eq!(worst(f64::NAN, 0.0), f64::INFINITY);
        assert_eq!(worst(1.0, 2.0), 2.0);
        assert!(!within(f64::NAN, 1.0));
    }

    #[test]
    fn the_cpu_engines_are_held_tighter_than_the_gpu() {
        let (c, g) = (Tolerances::CPU, Tolerances::GPU);
        assert!(c.logits <= 1e-4 && c.activations <= 1e-4 && c.mass <= 1e-12);
        assert!(c.logits < g.logits && c.activations < g.activations && c.mass < g.mass);
    }
}
