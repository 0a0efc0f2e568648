//! The page's one choice of backend. Loading streams tensor pieces into a [`ModelSink`];
//! finishing it gives a [`PageEngine`], which implements `bd3lm::Engine` by delegation so the
//! generator does not care which backend runs.
//!
//! The WebGPU arm is not wired yet (the `bd3lm_gpu` engine is being written); every place it
//! goes is marked `GPU:` below. Wiring it:
//! 1. `EngineKind::Gpu` becomes reachable from [`choose_engine`] (create a `GpuContext`; on
//!    error fall back to the CPU with the error's message as the reason).
//! 2. `ModelSink::Gpu(GpuModelLoader)`: `put` forwards each piece (uploaded at once),
//!    `finish` calls `loader.finish()` then `GpuEngine::new(&ctx, model)`.
//! 3. `Backend::Gpu(GpuEngine)` delegates like the CPU arm.

use crate::page_error::PageError;
use bd3lm::forward::Activations;
use bd3lm::package::{TensorPiece, WeightsBuilder};
use bd3lm::{Config, CpuEngine, DrawRequest, Engine, EngineCounters, RowDraw};

/// Which backend a load will build, and why, in words for the page.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineKind {
    /// The exact CPU reference compiled to wasm (slow, but runs anywhere).
    Cpu { reason: String },
    // GPU: Gpu { adapter: String },
}

impl EngineKind {
    pub fn label(&self) -> String {
        match self {
            EngineKind::Cpu { .. } => {
                "CPU (reference engine in WebAssembly; slower than WebGPU)".to_string()
            }
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            EngineKind::Cpu { reason } => reason,
        }
    }
}

/// Picks the backend for the next load. `webgpu` is the browser's answer to the adapter probe.
pub async fn choose_engine(webgpu: &crate::browser::WebGpuStatus) -> EngineKind {
    use crate::browser::WebGpuStatus;
    // GPU: when bd3lm_gpu is wired, try `GpuContext::new(&GpuOptions::default()).await` here
    // for `Available` and return `EngineKind::Gpu`; keep these messages for the fallbacks.
    let reason = match webgpu {
        WebGpuStatus::Missing => {
            "This browser does not offer WebGPU. It is on by default in Chrome and Edge 113+ on Windows, \
             macOS and ChromeOS (121+ on Android), in Safari 26+ and in Firefox 141+ on Windows; where \
             Chrome does not enable it (e.g. some Linux setups), start it with --enable-unsafe-webgpu or \
             turn on chrome://flags/#enable-unsafe-webgpu. WebGPU also needs https or localhost."
                .to_string()
        }
        WebGpuStatus::NoAdapter => {
            "The browser has WebGPU but found no usable GPU adapter (blocked driver or GPU switched off)."
                .to_string()
        }
        WebGpuStatus::Available { description, .. } => format!(
            "WebGPU is available ({description}), but this build of the page does not include the WebGPU \
             engine yet."
        ),
    };
    EngineKind::Cpu { reason }
}

/// Where tensor pieces go while a package streams in.
pub enum ModelSink {
    /// The CPU engine needs every tensor in wasm memory; fine for the demo model.
    Cpu(WeightsBuilder),
    // GPU: Gpu(bd3lm_gpu::GpuModelLoader) - uploads each piece to a GPU buffer at once.
}

impl ModelSink {
    pub fn new(kind: &EngineKind, config: Config) -> ModelSink {
        match kind {
            EngineKind::Cpu { .. } => ModelSink::Cpu(WeightsBuilder::new(config)),
        }
    }

    pub fn put(&mut self, name: String, piece: TensorPiece) -> Result<(), PageError> {
        match self {
            ModelSink::Cpu(builder) => {
                builder.put(name, piece);
                Ok(())
            }
        }
    }

    pub async fn finish(self, faults: FaultInjection) -> Result<PageEngine, PageError> {
        let backend = match self {
            ModelSink::Cpu(builder) => Backend::Cpu(CpuEngine::new(
                &builder.finish().map_err(PageError::Package)?,
            )),
        };
        Ok(PageEngine { backend, faults })
    }
}

/// Test hook: `?fault=device-lost-after-N` makes the engine report a lost device after N
/// model calls, so the end-to-end test can check the page's recovery without a real GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultInjection {
    pub device_lost_after_forwards: Option<u64>,
}

impl FaultInjection {
    pub fn parse(value: Option<&str>) -> FaultInjection {
        let device_lost_after_forwards = value
            .and_then(|v| v.strip_prefix("device-lost-after-"))
            .and_then(|n| n.parse::<u64>().ok());
        FaultInjection {
            device_lost_after_forwards,
        }
    }
}

enum Backend {
    Cpu(CpuEngine),
    // GPU: Gpu(bd3lm_gpu::GpuEngine),
}

pub struct PageEngine {
    backend: Backend,
    faults: FaultInjection,
}

impl PageEngine {
    fn inner(&self) -> &CpuEngine {
        match &self.backend {
            Backend::Cpu(e) => e,
        }
    }

    fn inner_mut(&mut self) -> &mut CpuEngine {
        match &mut self.backend {
            Backend::Cpu(e) => e,
        }
    }

    fn check_faults(&self) -> bd3lm::Result<()> {
        match self.faults.device_lost_after_forwards {
            Some(limit) if self.forward_count() >= limit => Err(bd3lm::Error::DeviceLost(
                "simulated by ?fault=device-lost-after-N".into(),
            )),
            _ => Ok(()),
        }
    }
}

// Every method delegates; while only the CPU arm exists, `inner` picks it. GPU: replace each
// `self.inner*()` with a `match` over both arms.
impl Engine for PageEngine {
    fn config(&self) -> &Config {
        self.inner().config()
    }

    fn reset(&mut self) {
        self.inner_mut().reset()
    }

    fn cached_tokens(&self) -> usize {
        self.inner().cached_tokens()
    }

    fn forward_count(&self) -> u64 {
        self.inner().forward_count()
    }

    async fn commit(&mut self, block: &[u32]) -> bd3lm::Result<()> {
        self.check_faults()?;
        self.inner_mut().commit(block).await
    }

    async fn logits(&mut self, block: &[u32]) -> bd3lm::Result<Vec<f32>> {
        self.check_faults()?;
        self.inner_mut().logits(block).await
    }

    async fn activations(&mut self, block: &[u32]) -> bd3lm::Result<Activations> {
        self.inner_mut().activations(block).await
    }

    async fn draw(&mut self, req: &DrawRequest<'_>) -> bd3lm::Result<Vec<RowDraw>> {
        self.check_faults()?;
        self.inner_mut().draw(req).await
    }

    async fn nucleus_probe(
        &mut self,
        log_probs: &[f32],
        p: f64,
    ) -> bd3lm::Result<Vec<(usize, f64)>> {
        self.inner_mut().nucleus_probe(log_probs, p).await
    }

    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> bd3lm::Result<Vec<u32>> {
        self.inner_mut().race_probe(probs, seed).await
    }

    fn describe(&self) -> String {
        self.inner().describe()
    }

    fn counters(&self) -> EngineCounters {
        self.inner().counters()
    }
}
