//! BD3-LM core: config, checkpoints and packages, tokenizer, the exact samplers and the CPU
//! reference forward. Pure Rust; builds natively and for `wasm32-unknown-unknown`.
//!
//! The source tree shows two halves:
//! - `runtime/`: what generating text needs: config, checkpoints, quantized packages, weights,
//!   tokenizer, the reference forward, the engine interface, samplers and the block loop.
//! - `tools/`: what checks, measures or converts models: golden-fixture conformance, the
//!   likelihood bound, quantization quality, HF-checkpoint conversion.
//!
//! Every module is re-exported at the crate root (`bd3lm::config`, `bd3lm::conformance`, ...),
//! so paths do not depend on the grouping.

pub mod error;
pub mod runtime;
pub mod tools;

pub use runtime::{
    checkpoint, config, engine, forward, generate, hf_file, hf_stream, hub, package, quant, rng,
    sampler, tokenizer, weights,
};
pub use tools::{
    conformance, convert, eval, fixture, long_run, quality, sample_stats, stream_convert,
};

pub use config::Config;
pub use engine::{
    BlockRequest, BlockStep, DrawRequest, Engine, EngineCounters, EngineProbes, ReferenceEngine,
    RevealRule, RowDraw, Rows, StepRecord,
};
pub use error::{Error, Result};
pub use generate::{Event, Execution, FinishReason, Generator, SamplerKind, SamplingOptions};
pub use weights::Weights;
