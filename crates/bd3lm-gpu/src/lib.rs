//! The WGSL compute engine for BD3-LM on wgpu: native (Vulkan/Metal/DX12, lavapipe without a
//! GPU) and in the browser (WebGPU), from the same code and the same shaders in `shaders/`.

pub mod any;
pub mod block;
pub mod context;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod model;
pub mod pipelines;
pub mod plan;
pub mod profile;
pub mod shaders;
pub mod smoke;
pub mod tiling;

pub use any::AnyEngine;
pub use block::BlockCount;
pub use context::{BufferScope, GpuContext, GpuOptions};
pub use dispatch::DispatchInfo;
pub use engine::{GpuEngine, SKIPPED_ROW};
pub use error::GpuError;
pub use model::{GpuModel, GpuModelLoader};
pub use profile::{DispatchProfile, ProfileTiming, StepProfile};
pub use tiling::Tiling;
