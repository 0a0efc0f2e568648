//! The page's one choice of backend. Loading streams tensor pieces into a [`ModelSink`];
//! finishing it gives a [`PageEngine`], which implements `bd3lm::Engine` by delegation so the
//! generator does not care which backend runs: the WGSL engine on WebGPU (`bd3lm_gpu`) when
//! the browser has it, otherwise the exact CPU reference compiled to wasm.

use crate::browser::WebGpuStatus;
use crate::page_error::PageError;
use bd3lm::forward::Activations;
use bd3lm::package::{TensorPiece, WeightsBuilder};
use bd3lm::{
    BlockRequest, Config, CpuEngine, DrawRequest, Engine, EngineCounters, RowDraw, StepRecord,
};
use bd3lm_gpu::{GpuContext, GpuEngine, GpuModelLoader, GpuOptions};

/// Which backend a load will build, and why, in words for the page.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineKind {
    /// The WGSL engine on the browser's WebGPU adapter.
    Gpu {
        adapter: String,
        fallback_adapter: bool,
    },
    /// The exact CPU reference compiled to wasm (slow, but runs anywhere).
    Cpu { reason: String },
}

impl EngineKind {
    pub fn label(&self) -> String {
        match self {
            EngineKind::Gpu { adapter, .. } => format!("WebGPU ({adapter})"),
            EngineKind::Cpu { .. } => {
                "CPU (reference engine in WebAssembly; slower than WebGPU)".to_string()
            }
        }
    }

    pub fn reason(&self) -> String {
        match self {
            EngineKind::Gpu { fallback_adapter: true, .. } => {
                "This adapter is the browser's software fallback (no GPU driver): correct, but slow.".to_string()
            }
            EngineKind::Gpu { .. } => String::new(),
            EngineKind::Cpu { reason } => reason.clone(),
        }
    }
}

/// Why there is no WebGPU engine, in words that say what would work.
pub fn no_webgpu_reason(webgpu: &WebGpuStatus) -> String {
    match webgpu {
        WebGpuStatus::Missing => "This browser does not offer WebGPU. It is on by default in Chrome and Edge 113+ on \
             Windows, macOS and ChromeOS (121+ on Android), in Safari 26+ and in Firefox 141+ on Windows; where \
             Chrome does not enable it (e.g. some Linux setups), start it with --enable-unsafe-webgpu or turn on \
             chrome://flags/#enable-unsafe-webgpu. WebGPU also needs https or localhost."
            .to_string(),
        WebGpuStatus::NoAdapter => {
            "The browser has WebGPU but found no usable GPU adapter (blocked driver or GPU switched off).".to_string()
        }
        WebGpuStatus::Available { .. } => String::new(),
    }
}

/// Which engine the user asked for (`?engine=auto|webgpu|cpu`, or the select in the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnginePreference {
    /// WebGPU when there is a hardware adapter; with only the browser's software fallback
    /// adapter, WebGPU for big models and the CPU engine for small ones (it is faster there).
    Auto,
    Gpu,
    Cpu,
}

impl EnginePreference {
    pub const ALL: [EnginePreference; 3] = [
        EnginePreference::Auto,
        EnginePreference::Gpu,
        EnginePreference::Cpu,
    ];

    pub fn parse(value: Option<&str>) -> EnginePreference {
        match value {
            Some("webgpu" | "gpu") => EnginePreference::Gpu,
            Some("cpu") => EnginePreference::Cpu,
            _ => EnginePreference::Auto,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            EnginePreference::Auto => "auto",
            EnginePreference::Gpu => "webgpu",
            EnginePreference::Cpu => "cpu",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            EnginePreference::Auto => "automatic",
            EnginePreference::Gpu => "WebGPU (WGSL engine)",
            EnginePreference::Cpu => "CPU (reference engine)",
        }
    }
}

/// Models up to this size run on the CPU engine when WebGPU fails or only emulates a GPU.
/// Beyond it the CPU engine needs too much wasm memory and time per token.
pub const CPU_ENGINE_MAX_PARAMETERS: usize = 50_000_000;

/// The decision for one load: the CPU engine (with the reason) or WebGPU.
pub fn plan_engine(
    pref: EnginePreference,
    webgpu: &WebGpuStatus,
    parameters: usize,
) -> Result<(), EngineKind> {
    let cpu = |reason: String| Err(EngineKind::Cpu { reason });
    match (pref, webgpu) {
        (EnginePreference::Cpu, _) => cpu("You chose the CPU engine.".into()),
        (_, WebGpuStatus::Missing | WebGpuStatus::NoAdapter) => cpu(no_webgpu_reason(webgpu)),
        (EnginePreference::Auto, WebGpuStatus::Available { fallback: true, .. })
            if parameters <= CPU_ENGINE_MAX_PARAMETERS =>
        {
            cpu("The only WebGPU adapter here is the browser's software fallback (no GPU driver); for a model \
                 this small the CPU engine is faster. Choose WebGPU to run the WGSL engine anyway."
                .into())
        }
        _ => Ok(()),
    }
}

/// Opens a WebGPU device for the WGSL engine.
pub async fn open_gpu(webgpu: &WebGpuStatus) -> Result<(EngineKind, GpuContext), String> {
    let WebGpuStatus::Available {
        description,
        fallback,
    } = webgpu
    else {
        return Err(no_webgpu_reason(webgpu));
    };
    match GpuContext::new(&GpuOptions::default()).await {
        Ok(ctx) => Ok((
            EngineKind::Gpu {
                adapter: description.clone(),
                fallback_adapter: *fallback,
            },
            ctx,
        )),
        Err(e) => Err(format!(
            "WebGPU is present but the engine could not start on it ({e})."
        )),
    }
}

/// Where tensor pieces go while a package streams in.
pub enum ModelSink {
    /// Each piece is uploaded to a GPU buffer as it arrives.
    Gpu(Box<(GpuContext, GpuModelLoader)>),
    /// The CPU engine needs every tensor in wasm memory; fine for the demo model.
    Cpu(WeightsBuilder),
}

impl ModelSink {
    /// A sink on `ctx` when given (the WebGPU engine), else for the CPU engine.
    pub fn new(ctx: Option<&GpuContext>, config: Config) -> Result<ModelSink, PageError> {
        Ok(match ctx {
            Some(ctx) => {
                let loader = GpuModelLoader::new(ctx, &config).map_err(gpu_error)?;
                ModelSink::Gpu(Box::new((ctx.clone(), loader)))
            }
            None => ModelSink::Cpu(WeightsBuilder::new(config)),
        })
    }

    pub fn put(&mut self, name: String, piece: TensorPiece) -> Result<(), PageError> {
        match self {
            ModelSink::Gpu(gpu) => gpu.1.put(&name, &piece).map_err(gpu_error),
            ModelSink::Cpu(builder) => {
                builder.put(name, piece);
                Ok(())
            }
        }
    }

    pub async fn finish(self, faults: FaultInjection) -> Result<PageEngine, PageError> {
        let backend = match self {
            ModelSink::Gpu(gpu) => {
                let (ctx, loader) = *gpu;
                let model = loader.finish().map_err(gpu_error)?;
                Backend::Gpu(Box::new(
                    GpuEngine::new(&ctx, model).await.map_err(gpu_error)?,
                ))
            }
            ModelSink::Cpu(builder) => Backend::Cpu(Box::new(CpuEngine::new(
                &builder.finish().map_err(PageError::Package)?,
            ))),
        };
        Ok(PageEngine { backend, faults })
    }
}

fn gpu_error(e: bd3lm_gpu::GpuError) -> PageError {
    PageError::from_engine(e.into())
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
    Gpu(Box<GpuEngine>),
    Cpu(Box<CpuEngine>),
}

pub struct PageEngine {
    backend: Backend,
    faults: FaultInjection,
}

/// Calls the same method on whichever engine the page runs.
macro_rules! delegate {
    ($self:ident, $engine:ident => $call:expr) => {
        match &$self.backend {
            Backend::Gpu($engine) => $call,
            Backend::Cpu($engine) => $call,
        }
    };
    (mut $self:ident, $engine:ident => $call:expr) => {
        match &mut $self.backend {
            Backend::Gpu($engine) => $call,
            Backend::Cpu($engine) => $call,
        }
    };
}

impl PageEngine {
    pub fn is_gpu(&self) -> bool {
        matches!(self.backend, Backend::Gpu(_))
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

impl Engine for PageEngine {
    fn config(&self) -> &Config {
        delegate!(self, e => e.config())
    }

    fn reset(&mut self) {
        delegate!(mut self, e => e.reset())
    }

    fn cached_tokens(&self) -> usize {
        delegate!(self, e => e.cached_tokens())
    }

    fn forward_count(&self) -> u64 {
        delegate!(self, e => e.forward_count())
    }

    async fn commit(&mut self, block: &[u32]) -> bd3lm::Result<()> {
        self.check_faults()?;
        delegate!(mut self, e => e.commit(block).await)
    }

    async fn logits(&mut self, block: &[u32]) -> bd3lm::Result<Vec<f32>> {
        self.check_faults()?;
        delegate!(mut self, e => e.logits(block).await)
    }

    async fn activations(&mut self, block: &[u32]) -> bd3lm::Result<Activations> {
        delegate!(mut self, e => e.activations(block).await)
    }

    async fn draw(&mut self, req: &DrawRequest<'_>) -> bd3lm::Result<Vec<RowDraw>> {
        self.check_faults()?;
        delegate!(mut self, e => e.draw(req).await)
    }

    fn runs_blocks(&self) -> bool {
        delegate!(self, e => e.runs_blocks())
    }

    async fn denoise_block(&mut self, req: &BlockRequest<'_>) -> bd3lm::Result<Vec<StepRecord>> {
        self.check_faults()?;
        delegate!(mut self, e => e.denoise_block(req).await)
    }

    async fn nucleus_probe(
        &mut self,
        log_probs: &[f32],
        p: f64,
    ) -> bd3lm::Result<Vec<(usize, f64)>> {
        delegate!(mut self, e => e.nucleus_probe(log_probs, p).await)
    }

    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> bd3lm::Result<Vec<u32>> {
        delegate!(mut self, e => e.race_probe(probs, seed).await)
    }

    fn describe(&self) -> String {
        delegate!(self, e => e.describe())
    }

    fn counters(&self) -> EngineCounters {
        delegate!(self, e => e.counters())
    }
}
