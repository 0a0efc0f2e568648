//! One module per fuzz target (listed in `TARGETS`, lib.rs).

pub mod config_json;
pub mod fixture_golden;
pub mod hf_checkpoint;
pub mod package_manifest;
pub mod package_shard;
pub mod page_package;
pub mod safetensors_header;
pub mod tokenizer_json;
