//! One module per fuzz target (listed in `TARGETS`, lib.rs).

pub mod config_json;
pub mod fixture_golden;
pub mod hf_checkpoint;
pub mod hf_stream;
pub mod hub_api;
pub mod hub_id;
pub mod package_manifest;
pub mod package_shard;
pub mod page_package;
pub mod safetensors_header;
pub mod tokenizer_json;
