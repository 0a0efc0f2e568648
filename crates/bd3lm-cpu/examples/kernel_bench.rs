//! Times one matmul per scheme and shape with each kernel family (min of repeats):
//! `cargo run --release -p bd3lm-cpu --example kernel_bench [threads]`.
//!
//! On AVX-512 VNNI it also measures, in the same process, the core's `vpdpbusd` throughput
//! (independent accumulators, nothing else) and prints each 16-row q8/q4 figure as a share of
//! the kernel's multiply peak: 32 multiply-adds per `vpdpbusd` for q8 (16-bit activation codes
//! take two), 64 for q4, times the threads.
use bd3lm::quant::{Matrix, Scheme};
use bd3lm_cpu::matmul::{matmul, Epilogue, MatmulScratch, WeightSums};
use bd3lm_cpu::threads::Pool;
use bd3lm_cpu::Simd;
use std::time::Instant;

/// `vpdpbusd` per second on one core, or `None` without AVX-512 VNNI.
fn vnni_per_s() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if Simd::Avx512.is_available() {
        // SAFETY: the features were just detected.
        return Some(unsafe { vnni_loop() });
    }
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
fn vnni_loop() -> f64 {
    use core::arch::x86_64::*;
    let x = _mm512_set1_epi32(0x0102_0304);
    let mut acc = [_mm512_setzero_si512(); 12];
    let n = 4_000_000;
    let t = Instant::now();
    for _ in 0..n {
        for a in acc.iter_mut() {
            *a = _mm512_dpbusd_epi32(*a, x, x);
        }
        acc[0] = std::hint::black_box(acc[0]);
    }
    let s = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    (n * 12) as f64 / s
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let pool = Pool::new(Some(threads)).expect("pool");
    let shapes = [
        ("qkv", 2304, 768),
        ("mlp_out", 768, 3072),
        ("lm_head", 50258, 768),
    ];
    for scheme in [Scheme::F32, Scheme::Q8, Scheme::Q4] {
        for (name, n, k) in shapes {
            let values: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
                .collect();
            let m = Matrix::from_f32(n, k, values).quantize(scheme);
            for rows in [1usize, 16] {
                if name == "lm_head" && rows == 16 && scheme == Scheme::F32 {
                    continue;
                }
                let x: Vec<f32> = (0..rows * k).map(|i| (i as f32 * 0.37).sin()).collect();
                let mut out = vec![0f32; rows * n];
                for simd in Simd::available() {
                    let mut s = MatmulScratch::default();
                    if simd == Simd::Avx512 {
                        s.sums = WeightSums::of([&m]);
                    }
                    let mut best = f64::INFINITY;
                    for _ in 0..7 {
                        let t = Instant::now();
                        matmul(&pool, simd, &m, &x, rows, &mut out, Epilogue::None, &mut s);
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                    let macs = (n * k * rows) as f64 / best;
                    let per_op = match scheme {
                        Scheme::Q8 => 32.0,
                        Scheme::Q4 => 64.0,
                        _ => 0.0,
                    };
                    let peak = match vnni_per_s() {
                        Some(ops) if simd == Simd::Avx512 && rows == 16 && per_op > 0.0 => {
                            format!(
                                "  {:4.2} of the VNNI peak",
                                macs / (ops * per_op * threads as f64)
                            )
                        }
                        _ => String::new(),
                    };
                    println!(
                        "{:>4} {name:>8} rows {rows:>2} {:>12}: {:8.3} ms  {:6.1} GB/s  {:6.1} GMAC/s{peak}",
                        scheme.name(),
                        simd.name(),
                        best * 1e3,
                        m.bytes() as f64 / best / 1e9,
                        macs / 1e9
                    );
                }
            }
        }
    }
}
