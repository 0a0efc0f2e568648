use thiserror::Error;

#[derive(Debug, Error)]
pub enum GpuError {
    #[error("no GPU adapter found ({detail}); {hint}")]
    NoAdapter { detail: String, hint: &'static str },

    #[error("the GPU adapter refused to create a device: {0}")]
    RequestDevice(String),

    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    #[error("GPU error: {0}")]
    Validation(String),

    #[error("shader `{shader}` failed to compile: {message}")]
    Shader { shader: String, message: String },

    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),

    #[error("this model does not fit the GPU engine: {0}")]
    Unsupported(String),
}

impl GpuError {
    #[cfg(target_arch = "wasm32")]
    pub(crate) const NO_ADAPTER_HINT: &'static str =
        "this browser has no usable WebGPU: use a recent Chrome/Edge (or Chromium with --enable-unsafe-webgpu), Firefox Nightly or Safari 26+, served over https or localhost";
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) const NO_ADAPTER_HINT: &'static str =
        "install a Vulkan, Metal or DX12 driver (on Linux without a GPU: Mesa's lavapipe, package mesa-vulkan-drivers), or use --backend cpu";
}

impl From<GpuError> for bd3lm::Error {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::DeviceLost(m) => bd3lm::Error::DeviceLost(m),
            other => bd3lm::Error::Backend(other.to_string()),
        }
    }
}

pub type Result<T, E = GpuError> = std::result::Result<T, E>;
