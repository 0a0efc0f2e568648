//! What checks, measures or converts models rather than running them: golden-fixture
//! conformance (`fixture`, `conformance`), the NELBO likelihood bound (`eval`), quantization
//! quality (`quality`), HF-checkpoint conversion into packages (`convert`) and the long runs
//! that check many consecutive generations on one engine (`long_run`); every tolerance and the
//! NaN-proof comparison the checks use (`tolerance`).

pub mod conformance;
pub mod convert;
pub mod eval;
pub mod fixture;
pub mod long_run;
pub mod quality;
pub mod sample_stats;
pub mod stream_convert;
pub mod tolerance;
