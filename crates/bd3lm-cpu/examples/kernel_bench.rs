//! Times one matmul per scheme and shape with each kernel family (min of repeats):
//! `cargo run --release -p bd3lm-cpu --example kernel_bench [threads]`.
use bd3lm::quant::{Matrix, Scheme};
use bd3lm_cpu::matmul::{matmul, Epilogue, MatmulScratch};
use bd3lm_cpu::threads::Pool;
use bd3lm_cpu::Simd;
use std::time::Instant;

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
                    let mut best = f64::INFINITY;
                    for _ in 0..7 {
                        let t = Instant::now();
                        matmul(&pool, simd, &m, &x, rows, &mut out, Epilogue::None, &mut s);
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                    println!(
                        "{:>4} {name:>8} rows {rows:>2} {:>12}: {:8.3} ms  {:6.1} GB/s  {:6.1} GMAC/s",
                        scheme.name(), simd.name(), best * 1e3,
                        m.bytes() as f64 / best / 1e9,
                        (n * k * rows) as f64 / best / 1e9
                    );
                }
            }
        }
    }
}
