//! The fast CPU engine for BD3-LM: computes on the package's own weights (f32, f16, q8, q4;
//! no f32 copy of any matrix), with SIMD kernels chosen at run time (AVX-512 VNNI or AVX2 on
//! x86-64, NEON on aarch64, SIMD128 in WebAssembly, a portable fallback), threads natively
//! (`spin_pool`; results identical for every thread count) and a ring KV cache.
//!
//! The exact reference (`bd3lm::ReferenceEngine`) stays the oracle: this engine matches it within
//! the GPU tolerance with f32 weights (`tests/conformance.rs`), and q8/q4 run on int8
//! activations as llama.cpp does (quality measured in `docs/quantization.md`).

pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod bandwidth;
pub mod engine;
pub mod forward;
pub mod kernels;
pub mod math;
pub mod matmul;
pub mod shard_part;
#[cfg(not(target_arch = "wasm32"))]
mod spin_pool;
pub mod split;
pub mod threads;
#[cfg(target_arch = "wasm32")]
pub mod worker;
#[cfg(target_arch = "wasm32")]
pub mod worker_engine;
#[cfg(target_arch = "wasm32")]
pub mod worker_split;

pub use engine::{CpuEngine, CpuOptions, SIMD_ENV};
pub use kernels::Simd;
