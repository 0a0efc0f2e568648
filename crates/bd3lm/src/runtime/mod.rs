//! What generating text needs: the model's config and weights (from an HF checkpoint or a
//! quantized package), the tokenizer, the exact CPU reference forward, the engine interface,
//! the samplers and the block-by-block generation loop.

pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod forward;
pub mod generate;
pub mod hf_file;
pub mod hf_stream;
pub mod hub;
pub mod package;
pub mod quant;
pub mod rng;
pub mod sampler;
pub mod tokenizer;
pub mod weights;
