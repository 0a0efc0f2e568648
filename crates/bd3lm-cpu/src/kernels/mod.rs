//! Matrix kernels: `out[o][r] = sum_k W[o][k] * x[r][k]` for a range of output rows `o` of a
//! weight matrix in its package scheme (f32, f16, q8, q4) and up to [`MAX_TILE_ROWS`]
//! activation rows at a time, written transposed (`[o][r]`) so each thread owns a contiguous
//! piece of the output.
//!
//! Four families, chosen once per engine ([`Simd::detect`]): AVX-512 with VNNI and AVX2+FMA
//! (x86-64, detected at run time), 128-bit SIMD (WebAssembly SIMD128, aarch64 NEON, x86-64
//! SSE2; one generic implementation over [`simd128::V128`]) and a portable scalar loop, which
//! is also the oracle the others are tested against. Each output's summation order is fixed
//! by the family alone, so results never depend on how outputs are split between threads.
//!
//! q8 and q4 multiply 16-bit activation codes (quantized per group of [`GROUP`] values, see
//! [`QuantActs`]) by the stored codes in exact integer arithmetic and apply the f16 group
//! scales in f32, as llama.cpp does with its 8-bit activations.

use bd3lm::quant::GROUP;
use half::f16;

pub use acts::{QuantActs, QuantScheme};

mod acts;
pub mod portable;
pub mod simd128;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_acts;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_quant;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_rows;

/// Activation rows a kernel call handles at once (callers split larger row counts).
pub const MAX_TILE_ROWS: usize = 32;

/// A kernel family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Simd {
    /// Scalar Rust, no vector instructions requested (the compiler may still vectorise).
    Portable,
    /// 128-bit vectors: WebAssembly SIMD128, aarch64 NEON or x86-64 SSE2.
    Simd128,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 (F, BW, VL) with VNNI int8 dot products.
    Avx512,
}

impl Simd {
    pub fn name(self) -> &'static str {
        match self {
            Simd::Portable => "portable",
            Simd::Simd128 => simd128::NAME,
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512-vnni",
        }
    }

    /// Parses a family name as [`Simd::name`] writes it (`simd128` also matches the 128-bit
    /// family on every target, `avx512` the VNNI family).
    pub fn parse(name: &str) -> Option<Simd> {
        match name {
            "portable" | "scalar" => Some(Simd::Portable),
            "simd128" | "sse2" | "neon" => Some(Simd::Simd128),
            "avx2" => Some(Simd::Avx2),
            "avx512" | "avx512-vnni" => Some(Simd::Avx512),
            _ => None,
        }
    }

    /// Whether this machine can run the family.
    pub fn is_available(self) -> bool {
        match self {
            Simd::Portable => true,
            Simd::Simd128 => simd128::AVAILABLE,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512vnni")
                    && Simd::Avx2.is_available()
            }
            #[cfg(not(target_arch = "x86_64"))]
            Simd::Avx2 | Simd::Avx512 => false,
        }
    }

    /// Every family this machine can run, fastest first.
    pub fn available() -> Vec<Simd> {
        [Simd::Avx512, Simd::Avx2, Simd::Simd128, Simd::Portable]
            .into_iter()
            .filter(|s| s.is_available())
            .collect()
    }

    /// The fastest family this machine runs.
    pub fn detect() -> Simd {
        Simd::available()[0]
    }
}

/// One weight matrix `[rows, k]` in its stored scheme (row-major, groups of [`GROUP`] along k).
#[derive(Debug, Clone, Copy)]
pub enum WeightView<'a> {
    F32(&'a [f32]),
    /// f16 bit patterns.
    F16(&'a [u16]),
    /// int8 codes and one f16 scale per group: `w = q * scale`.
    Q8 {
        q: &'a [i8],
        scales: &'a [u16],
        /// `[rows, groups]`: `-(sum of the group's codes) << 15`, the correction the AVX-512
        /// lane kernel adds per group, computed once per engine (`matmul::WeightSums`);
        /// `None`: that kernel computes it per call.
        sums: Option<&'a [i32]>,
    },
    /// 4-bit codes, two per byte (low nibble = even column), f16 scale and min per group:
    /// `w = q * scale + min`.
    Q4 {
        q: &'a [u8],
        scales: &'a [u16],
        mins: &'a [u16],
    },
}

impl WeightView<'_> {
    pub fn quant_scheme(&self) -> Option<QuantScheme> {
        match self {
            WeightView::Q8 { .. } => Some(QuantScheme::Q8),
            WeightView::Q4 { .. } => Some(QuantScheme::Q4),
            _ => None,
        }
    }
}

/// What a kernel multiplies the weights with.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// f32 rows `[rows, k]` (f32 and f16 weights).
    F32 { x: &'a [f32], rows: usize },
    /// Quantized rows (q8 and q4 weights), prepared by [`QuantActs::prepare`] for the same
    /// family and scheme.
    Quant(&'a QuantActs),
}

impl Input<'_> {
    pub fn rows(&self) -> usize {
        match self {
            Input::F32 { rows, .. } => *rows,
            Input::Quant(a) => a.rows,
        }
    }
}

/// `out[(o - first) * rows + r] = W[o] · x[r]` for `o in first..first + out.len() / rows`.
///
/// Panics when the input does not suit the weights (f32 rows for f32/f16 weights, quantized
/// rows of the same scheme for q8/q4) or `rows > MAX_TILE_ROWS`.
pub fn matmul_tile(
    simd: Simd,
    w: WeightView<'_>,
    k: usize,
    first: usize,
    input: Input<'_>,
    out: &mut [f32],
) {
    let rows = input.rows();
    assert!(rows <= MAX_TILE_ROWS && rows > 0, "kernel rows {rows}");
    let count = out.len() / rows;
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => {
            // SAFETY: the family is only selected when the CPU reports its features.
            unsafe { x86_avx512::matmul_tile(w, k, first, count, input, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => {
            // SAFETY: as above.
            unsafe { x86_avx2::matmul_tile(w, k, first, count, input, out) }
        }
        Simd::Simd128 if simd128::AVAILABLE => simd128::matmul_tile(w, k, first, count, input, out),
        _ => portable::matmul_tile(w, k, first, count, input, out),
    }
}

/// `-(sum of each group's codes) << 15` of one row of q8 codes: the AVX-512 lane kernel's
/// correction for its activations' offset of 32768 (`WeightView::Q8::sums`).
pub fn q8_group_sums(row: &[i8], out: &mut [i32]) {
    for (o, g) in out.iter_mut().zip(row.chunks_exact(GROUP)) {
        *o = -(g.iter().map(|&c| c as i32).sum::<i32>() << 15);
    }
}

/// f16 bits to f32.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// Writes row `o` of `w` (`k` values) as f32 into `out` (the embedding lookup).
pub fn dequantize_row(w: WeightView<'_>, k: usize, o: usize, out: &mut [f32]) {
    let start = o * k;
    match w {
        WeightView::F32(v) => out.copy_from_slice(&v[start..start + k]),
        WeightView::F16(v) => {
            for (x, &b) in out.iter_mut().zip(&v[start..start + k]) {
                *x = f16_to_f32(b);
            }
        }
        WeightView::Q8 { q, scales, .. } => {
            for (g, chunk) in out.chunks_mut(GROUP).enumerate() {
                let s = f16_to_f32(scales[start / GROUP + g]);
                for (i, x) in chunk.iter_mut().enumerate() {
                    *x = q[start + g * GROUP + i] as f32 * s;
                }
            }
        }
        WeightView::Q4 { q, scales, mins } => {
            for (g, chunk) in out.chunks_mut(GROUP).enumerate() {
                let s = f16_to_f32(scales[start / GROUP + g]);
                let m = f16_to_f32(mins[start / GROUP + g]);
                for (i, x) in chunk.iter_mut().enumerate() {
                    let at = start + g * GROUP + i;
                    let byte = q[at / 2];
                    let code = if at.is_multiple_of(2) {
                        byte & 15
                    } else {
                        byte >> 4
                    };
                    *x = code as f32 * s + m;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
