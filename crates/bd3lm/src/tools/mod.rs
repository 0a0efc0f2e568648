//! What checks, measures or converts models rather than running them: golden-fixture
//! conformance (`fixture`, `conformance`), the NELBO likelihood bound (`eval`), quantization
//! quality (`quality`) and HF-checkpoint conversion into packages (`convert`).

pub mod conformance;
pub mod convert;
pub mod eval;
pub mod fixture;
pub mod quality;
pub mod sample_stats;
pub mod stream_convert;
