//! The page's one choice of backend. Loading streams tensor pieces into a [`ModelSink`];
//! finishing it gives the same [`AnyEngine`] the CLI uses: the WGSL engine on WebGPU
//! (`bd3lm_gpu`) when the browser has it, otherwise the fast CPU engine (`bd3lm_cpu`) compiled
//! to wasm with SIMD128.

use crate::browser::WebGpuStatus;
use crate::cpu_workers::CpuWorkers;
use crate::page_error::PageError;
use bd3lm::package::{Manifest, TensorPiece, WeightsBuilder};
use bd3lm::Config;
use bd3lm_cpu::worker::WorkerEngine;
use bd3lm_gpu::{AnyEngine, GpuContext, GpuEngine, GpuModelLoader, GpuOptions};
use js_sys::Uint8Array;

/// Which backend a load will build, and why, in words for the page.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineKind {
    /// The WGSL engine on the browser's WebGPU adapter.
    Gpu {
        adapter: String,
        fallback_adapter: bool,
    },
    /// The fast CPU engine compiled to wasm with SIMD128 (runs anywhere).
    Cpu { reason: String },
}

impl EngineKind {
    pub fn label(&self) -> String {
        match self {
            EngineKind::Gpu { adapter, .. } => format!("WebGPU ({adapter})"),
            EngineKind::Cpu { .. } => format!(
                "CPU (WebAssembly SIMD engine on {}; slower than a GPU)",
                cpu_workers().words()
            ),
        }
    }

    pub fn reason(&self) -> String {
        match self {
            EngineKind::Gpu { fallback_adapter: true, .. } => {
                "This adapter is the browser's software fallback (no GPU driver): correct, but slow.".to_string()
            }
            EngineKind::Gpu { .. } => String::new(),
            EngineKind::Cpu { reason } => {
                let note = cpu_workers().note;
                [reason.as_str(), note.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ")
            }
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
            EnginePreference::Cpu => "CPU (WebAssembly SIMD engine)",
        }
    }
}

/// Models whose weights plus full KV cache (the manifest's `gpu_bytes`, which the fast CPU
/// engine also holds: it keeps the package's own weights) fit in this run on the CPU engine
/// when WebGPU fails or only emulates a GPU. The engine runs in its Web Worker, so even a
/// full-size forward never blocks the page; the bound keeps the worker's wasm32 memory
/// (4 GiB at most, shard parsing included) comfortable. Every released size fits: 250 MB in
/// q8, 727 MB in f32.
pub const CPU_ENGINE_MAX_BYTES: u64 = 2_000_000_000;

/// The decision for one load: the CPU engine (with the reason) or WebGPU.
pub fn plan_engine(
    pref: EnginePreference,
    webgpu: &WebGpuStatus,
    model_bytes: u64,
) -> Result<(), EngineKind> {
    let cpu = |reason: String| Err(EngineKind::Cpu { reason });
    match (pref, webgpu) {
        (EnginePreference::Cpu, _) => cpu("You chose the CPU engine.".into()),
        (_, WebGpuStatus::Missing | WebGpuStatus::NoAdapter) => cpu(no_webgpu_reason(webgpu)),
        (EnginePreference::Auto, WebGpuStatus::Available { fallback: true, .. })
            if model_bytes <= CPU_ENGINE_MAX_BYTES =>
        {
            cpu("The only WebGPU adapter here is the browser's software fallback (no GPU driver); the CPU \
                 engine is faster than it. Choose WebGPU to run the WGSL engine anyway."
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

thread_local! {
    static CPU_WORKERS: std::cell::OnceCell<CpuWorkers> = const { std::cell::OnceCell::new() };
}

/// The CPU engine's Web Workers for this page (decided once: `?workers=N`, else one per
/// core; one where the page is not cross-origin isolated).
pub fn cpu_workers() -> CpuWorkers {
    CPU_WORKERS.with(|plan| {
        plan.get_or_init(|| {
            let cores = web_sys::window()
                .map(|w| w.navigator().hardware_concurrency())
                .unwrap_or(1.0);
            CpuWorkers::plan(
                crate::browser::query_param("workers").as_deref(),
                cores.max(0.0) as usize,
                bd3lm_cpu::worker_engine::can_split(),
            )
        })
        .clone()
    })
}

/// The CPU engine's worker script: Trunk's loader for the `cpu-worker` binary
/// (`web/index.html`), next to the page.
pub const CPU_WORKER_URL: &str = "./cpu-worker_loader.js";

/// Where tensor pieces go while a package streams in.
pub enum ModelSink {
    /// Each piece is uploaded to a GPU buffer as it arrives.
    Gpu(Box<(GpuContext, GpuModelLoader)>),
    /// Whole verified shards go to the CPU engine's Web Worker, which parses them.
    CpuWorker(Box<WorkerEngine>),
    /// The CPU engine on the page's thread (when the worker cannot start).
    Cpu(WeightsBuilder),
    /// A checkpoint being converted for the CPU engine: the pieces only go to storage, and
    /// the worker loads the stored package afterwards (it parses shards off the page's
    /// thread; converted pieces would have to be built on it).
    StoreOnly,
}

impl ModelSink {
    /// A sink on `ctx` when given (the WebGPU engine), else for the CPU engine in its worker
    /// (or, if the worker does not start, on the page's thread).
    pub async fn new(
        ctx: Option<&GpuContext>,
        manifest: &Manifest,
    ) -> Result<ModelSink, PageError> {
        let config = manifest.model_config().map_err(PageError::Package)?;
        Ok(match ctx {
            Some(ctx) => {
                let loader = GpuModelLoader::new(ctx, &config).map_err(gpu_error)?;
                ModelSink::Gpu(Box::new((ctx.clone(), loader)))
            }
            None => {
                match WorkerEngine::start(CPU_WORKER_URL, manifest, cpu_workers().count).await {
                    Ok(worker) => ModelSink::CpuWorker(Box::new(worker)),
                    Err(e) => {
                        crate::browser::log(&format!(
                            "bd3lm: {e}; the CPU engine runs on the page's thread"
                        ));
                        ModelSink::Cpu(WeightsBuilder::new(config))
                    }
                }
            }
        })
    }

    /// A sink for pieces converted on the page (a Hub checkpoint): straight into the WebGPU
    /// engine on `ctx`, or [`ModelSink::StoreOnly`] for the CPU engine.
    pub fn for_conversion(
        ctx: Option<&GpuContext>,
        config: &Config,
    ) -> Result<ModelSink, PageError> {
        Ok(match ctx {
            Some(ctx) => {
                let loader = GpuModelLoader::new(ctx, config).map_err(gpu_error)?;
                ModelSink::Gpu(Box::new((ctx.clone(), loader)))
            }
            None => ModelSink::StoreOnly,
        })
    }

    /// Whether the sink builds no engine (see [`ModelSink::StoreOnly`]).
    pub fn stores_only(&self) -> bool {
        matches!(self, ModelSink::StoreOnly)
    }

    /// Whether the sink takes whole shards ([`ModelSink::put_shard`]) instead of pieces.
    pub fn takes_shards(&self) -> bool {
        matches!(self, ModelSink::CpuWorker(_))
    }

    pub async fn put_shard(&mut self, file: &str, bytes: &Uint8Array) -> Result<(), PageError> {
        match self {
            ModelSink::CpuWorker(worker) => worker
                .put_shard(file, bytes)
                .await
                .map_err(PageError::from_engine),
            _ => Err(PageError::from_engine(bd3lm::Error::Backend(
                "this engine takes tensor pieces, not shards".into(),
            ))),
        }
    }

    pub fn put(&mut self, name: String, piece: TensorPiece) -> Result<(), PageError> {
        match self {
            ModelSink::Gpu(gpu) => gpu.1.put(&name, &piece).map_err(gpu_error),
            ModelSink::Cpu(builder) => {
                builder.put(name, piece);
                Ok(())
            }
            ModelSink::CpuWorker(_) => Err(PageError::from_engine(bd3lm::Error::Backend(
                "the CPU worker takes whole shards".into(),
            ))),
            ModelSink::StoreOnly => Ok(()),
        }
    }

    /// Builds the engine from everything that streamed in.
    pub async fn finish(self) -> Result<AnyEngine, PageError> {
        Ok(match self {
            ModelSink::Gpu(gpu) => {
                let (ctx, loader) = *gpu;
                let model = loader.finish().map_err(gpu_error)?;
                AnyEngine::Gpu(Box::new(
                    GpuEngine::new(&ctx, model).await.map_err(gpu_error)?,
                ))
            }
            ModelSink::CpuWorker(mut worker) => {
                worker.finish().await.map_err(PageError::from_engine)?;
                AnyEngine::CpuWorker(worker)
            }
            ModelSink::Cpu(builder) => {
                let weights = builder.finish().map_err(PageError::Package)?;
                let engine = bd3lm_cpu::CpuEngine::new(weights, bd3lm_cpu::CpuOptions::default())
                    .map_err(PageError::from_engine)?;
                AnyEngine::Cpu(Box::new(engine))
            }
            ModelSink::StoreOnly => {
                return Err(PageError::from_engine(bd3lm::Error::Backend(
                    "the converted package was stored, not loaded: load it from storage".into(),
                )))
            }
        })
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

impl FaultInjection {
    /// The simulated loss, once the engine has run `device_lost_after_forwards` model calls.
    pub fn check(&self, forwards: u64) -> bd3lm::Result<()> {
        match self.device_lost_after_forwards {
            Some(limit) if forwards >= limit => Err(bd3lm::Error::DeviceLost(
                "simulated by ?fault=device-lost-after-N".into(),
            )),
            _ => Ok(()),
        }
    }
}
