//! BD3-LM core: config, checkpoints and packages, tokenizer, the exact samplers and the CPU
//! reference forward. Pure Rust; builds natively and for `wasm32-unknown-unknown`.

pub mod checkpoint;
pub mod config;
pub mod conformance;
pub mod convert;
pub mod engine;
pub mod error;
pub mod eval;
pub mod fixture;
pub mod forward;
pub mod generate;
pub mod package;
pub mod quality;
pub mod quant;
pub mod rng;
pub mod sampler;
pub mod tokenizer;
pub mod weights;

pub use config::Config;
pub use engine::{
    BlockRequest, BlockStep, CpuEngine, DrawRequest, Engine, EngineCounters, RevealRule, RowDraw,
    Rows, StepRecord,
};
pub use error::{Error, Result};
pub use generate::{Event, Execution, FinishReason, Generator, SamplerKind, SamplingOptions};
pub use weights::Weights;
