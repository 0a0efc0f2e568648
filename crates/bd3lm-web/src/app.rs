//! The page: its state, the actions behind the buttons, and the layout of the sections.

use crate::browser::{self, WebGpuStatus};
use crate::cache::PackageCache;
use crate::compare::Column;
use crate::hub_choice::{self, ModelInput};
use crate::hub_load::{self, HubInfo};
use crate::loader::{self, PackageInfo};
use crate::page_engine::{
    self, EngineKind, EnginePreference, FaultInjection, ModelSink, CPU_ENGINE_MAX_BYTES,
};
use crate::page_error::PageError;
use crate::progress::DownloadProgress;
use crate::runner::{self, CanvasSignals, LoadedModel, RunEnd, RunSettings};
use crate::settings::{self, FormValues};
use crate::stats::GenerationStats;
use crate::url_state;
use bd3lm::package::url::DEFAULT_PACKAGE_URL;
use bd3lm::quant::Scheme;
use bd3lm::tokenizer::Tokenizer;
use bd3lm::FinishReason;
use bd3lm_gpu::{AnyEngine, GpuContext};
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Packages that download at most this much (the demo shipped with the page is 5.8 MB) load
/// by themselves on the first visit; bigger ones wait for the Load button.
pub(crate) const AUTO_LOAD_MAX_BYTES: u64 = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Probing WebGPU and reading the default manifest.
    Starting,
    Inspecting,
    /// A manifest is shown (or failed); no model loaded.
    NoModel,
    Loading,
    Ready,
    Generating,
    Stopping,
}

/// An error as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorView {
    pub message: String,
    /// The GPU was lost: offer a restart.
    pub device_lost: bool,
}

impl From<&PageError> for ErrorView {
    fn from(err: &PageError) -> Self {
        ErrorView {
            message: err.to_string(),
            device_lost: err.is_device_lost(),
        }
    }
}

/// Everything the page's components share. Signals are `Copy`; the engine, the cache and
/// the stop flag are not `Send` and live behind `Rc`s used only by event handlers.
#[derive(Clone)]
pub struct Page {
    pub phase: RwSignal<Phase>,
    pub secure: bool,
    pub webgpu: RwSignal<Option<WebGpuStatus>>,
    /// The engine of the loaded model (or of the last load attempt).
    pub engine_kind: RwSignal<Option<EngineKind>>,
    pub engine_pref: RwSignal<EnginePreference>,
    pub package_url: RwSignal<String>,
    pub info: RwSignal<Option<PackageInfo>>,
    /// The model field holds a Hub id: what loading it involves.
    pub hub_info: RwSignal<Option<HubInfo>>,
    /// The Hub's base URL (`?hub=`, default https://huggingface.co).
    pub hub_endpoint: String,
    /// The format a Hub checkpoint is converted to (`?format=`, default q8).
    pub hub_format: RwSignal<Scheme>,
    pub progress: RwSignal<Option<DownloadProgress>>,
    pub load_report: RwSignal<Option<String>>,
    pub error: RwSignal<Option<ErrorView>>,
    /// Why downloads are not cached, when they are not.
    pub cache_note: RwSignal<Option<String>>,
    /// A short message after an action (copied, stopped, finished ...).
    pub notice: RwSignal<Option<String>>,
    pub form: RwSignal<FormValues>,
    pub prompt: RwSignal<String>,
    /// What screen readers hear when a run ends (the finished text): an `aria-live="polite"`
    /// region that changes once per run, never per denoising step.
    pub announce: RwSignal<String>,
    /// Start was pressed while the model was still loading: start once it is ready.
    pub pending_start: RwSignal<bool>,
    /// The model field is shown for a URL or Hub id of the visitor's own ("Other").
    pub custom_model: RwSignal<bool>,
    /// The model field's text when the loaded model was loaded (what the URL names).
    pub(crate) loaded_from: RwSignal<String>,
    /// The models to compare, as typed (comma-separated).
    pub compare_input: RwSignal<String>,
    /// The comparison's columns, one per model, in order.
    pub comparison: RwSignal<Vec<Column>>,
    pub comparing: RwSignal<bool>,
    /// Comparisons finished (on the comparison as `data-done`, for tests).
    pub comparisons_done: RwSignal<u32>,
    pub canvas: CanvasSignals,
    pub stats: RwSignal<GenerationStats>,
    /// Runs started and ended (on the canvas as `data-runs-started` / `data-runs-ended`, so
    /// tests and scripts can wait for the end of a particular run).
    pub runs: RwSignal<(u32, u32)>,
    pub(crate) model: Rc<RefCell<Option<LoadedModel>>>,
    /// The WebGPU device, while the page has one (replaced after a device loss).
    gpu: Rc<RefCell<Option<GpuContext>>>,
    cache: Rc<RefCell<Option<Rc<PackageCache>>>>,
    pub(crate) stop: Rc<Cell<bool>>,
    faults: Rc<Cell<FaultInjection>>,
}

impl Page {
    pub(crate) fn new() -> Self {
        let (form, prompt, model) = url_state::read(browser::query_param);
        let package_url = model.unwrap_or_else(|| DEFAULT_PACKAGE_URL.to_string());
        let custom = hub_choice::menu_value(&package_url) == hub_choice::CUSTOM;
        Page {
            phase: RwSignal::new(Phase::Starting),
            secure: browser::is_secure_context(),
            webgpu: RwSignal::new(None),
            engine_kind: RwSignal::new(None),
            engine_pref: RwSignal::new(EnginePreference::parse(
                browser::query_param("engine").as_deref(),
            )),
            package_url: RwSignal::new(package_url),
            info: RwSignal::new(None),
            hub_info: RwSignal::new(None),
            hub_endpoint: bd3lm::hub::normalize_endpoint(
                &browser::query_param("hub").unwrap_or_default(),
            ),
            hub_format: RwSignal::new(hub_choice::parse_format(
                browser::query_param("format").as_deref(),
            )),
            progress: RwSignal::new(None),
            load_report: RwSignal::new(None),
            error: RwSignal::new(None),
            cache_note: RwSignal::new(None),
            notice: RwSignal::new(None),
            form: RwSignal::new(form),
            prompt: RwSignal::new(prompt.unwrap_or_else(|| "My fellow citizens,".to_string())),
            announce: RwSignal::new(String::new()),
            pending_start: RwSignal::new(false),
            custom_model: RwSignal::new(custom),
            loaded_from: RwSignal::new(String::new()),
            compare_input: RwSignal::new(hub_choice::default_comparison()),
            comparison: RwSignal::new(Vec::new()),
            comparing: RwSignal::new(false),
            comparisons_done: RwSignal::new(0),
            canvas: CanvasSignals::new(),
            stats: RwSignal::new(GenerationStats::default()),
            runs: RwSignal::new((0, 0)),
            model: Rc::new(RefCell::new(None)),
            gpu: Rc::new(RefCell::new(None)),
            cache: Rc::new(RefCell::new(None)),
            stop: Rc::new(Cell::new(false)),
            faults: Rc::new(Cell::new(FaultInjection::parse(
                browser::query_param("fault").as_deref(),
            ))),
        }
    }

    pub(crate) fn fail(&self, err: &PageError) {
        browser::log(&format!("bd3lm error: {err}"));
        self.error.set(Some(ErrorView::from(err)));
    }

    async fn cache(&self) -> Rc<PackageCache> {
        if let Some(cache) = self.cache.borrow().clone() {
            return cache;
        }
        let cache = Rc::new(PackageCache::open().await);
        if let Some(why) = &cache.unavailable {
            self.cache_note.set(Some(format!(
                "Downloads are not cached ({why}): every visit downloads the model again."
            )));
        }
        *self.cache.borrow_mut() = Some(cache.clone());
        cache
    }

    /// Probes WebGPU, picks the engine, reads the package's manifest and, when loading it
    /// moves little (the demo shipped with the page, or a package already cached), loads it
    /// at once. A Hub model waits for the visitor, who sees first what it costs.
    pub(crate) fn start_up(&self) {
        let page = self.clone();
        spawn_local(async move {
            let status = browser::probe_webgpu().await;
            browser::log(&format!("bd3lm: WebGPU {status:?}"));
            page.webgpu.set(Some(status));
            page.inspect_now().await;
            let small = page.info.with_untracked(|info| {
                info.as_ref().is_some_and(|i| {
                    i.manifest.download_bytes.saturating_sub(i.cached_bytes) <= AUTO_LOAD_MAX_BYTES
                })
            });
            if small && page.error.with_untracked(|e| e.is_none()) {
                browser::log("bd3lm: loading the model by itself (small or cached)");
                page.load_and_start().await;
            } else {
                page.pending_start.set(false);
            }
        });
    }

    pub fn inspect(&self) {
        let page = self.clone();
        spawn_local(async move {
            page.inspect_now().await;
            page.pending_start.set(false);
        });
    }

    pub(crate) async fn inspect_now(&self) {
        self.phase.set(Phase::Inspecting);
        self.error.set(None);
        self.info.set(None);
        self.hub_info.set(None);
        let cache = self.cache().await;
        match hub_choice::classify(&self.package_url.get_untracked()) {
            ModelInput::Hub(id) => {
                let format = self.hub_format.get_untracked();
                match hub_load::inspect(&id, &self.hub_endpoint, format, &cache).await {
                    Ok(info) => self.hub_info.set(Some(info)),
                    Err(e) => self.fail(&e),
                }
            }
            ModelInput::Package(url) => match loader::inspect(&url, &cache).await {
                Ok(info) => self.info.set(Some(info)),
                Err(e) => self.fail(&e),
            },
        }
        let has_model = self.model.borrow().is_some();
        self.phase.set(if has_model {
            Phase::Ready
        } else {
            Phase::NoModel
        });
    }

    pub fn load(&self) {
        let page = self.clone();
        spawn_local(async move { page.load_and_start().await });
    }

    /// Loads the checked model, then starts the run asked for while it loaded, if any.
    async fn load_and_start(&self) {
        let source = self.package_url.get_untracked();
        if let Err(e) = self.load_now().await {
            self.fail(&e);
            self.progress.set(None);
            self.phase.set(Phase::NoModel);
            self.pending_start.set(false);
            return;
        }
        self.loaded_from.set(source);
        if self.pending_start.get_untracked() {
            self.pending_start.set(false);
            self.start(false);
        }
    }

    /// Start, Enter or Ctrl+Enter in the prompt: a run now, or as soon as the model loading
    /// (or about to load) is ready.
    pub fn request_start(&self) {
        match self.phase.get_untracked() {
            Phase::Ready => self.start(false),
            Phase::Starting | Phase::Inspecting | Phase::Loading => self.pending_start.set(true),
            _ => {}
        }
    }

    /// The engine for the next load of `info`: a WebGPU device (the current one, or a new one
    /// after a loss), or `None` for the CPU engine, with `engine_kind` saying which and why.
    /// `model_bytes`: weights as stored plus the KV cache (the manifest's `gpu_bytes`).
    async fn engine_for_load(&self, model_bytes: u64) -> Option<GpuContext> {
        let status = self.webgpu.get_untracked().unwrap_or(WebGpuStatus::Missing);
        let pref = self.engine_pref.get_untracked();
        if let Err(cpu) = page_engine::plan_engine(pref, &status, model_bytes) {
            self.engine_kind.set(Some(cpu));
            return None;
        }
        let current = self.gpu.borrow().clone().filter(|ctx| !ctx.is_lost());
        if let (Some(ctx), Some(EngineKind::Gpu { .. })) =
            (&current, self.engine_kind.get_untracked())
        {
            return Some(ctx.clone());
        }
        match page_engine::open_gpu(&status).await {
            Ok((kind, ctx)) => {
                *self.gpu.borrow_mut() = Some(ctx.clone());
                self.engine_kind.set(Some(kind));
                Some(ctx)
            }
            Err(reason) => {
                self.engine_kind.set(Some(EngineKind::Cpu { reason }));
                None
            }
        }
    }

    pub(crate) async fn load_now(&self) -> Result<(), PageError> {
        if let Some(hub) = self.hub_info.get_untracked() {
            return self.load_hub_now(hub).await;
        }
        let Some(info) = self.info.get_untracked() else {
            return Err(PageError::Browser("no package has been checked yet".into()));
        };
        self.phase.set(Phase::Loading);
        self.error.set(None);
        self.load_report.set(None);
        // Free the previous model before the next one arrives.
        self.model.borrow_mut().take();
        let gpu = self.engine_for_load(info.manifest.gpu_bytes).await;
        let on_gpu = gpu.is_some();
        let loaded = match self.load_into(&info, gpu.as_ref()).await {
            // The WebGPU engine failed on this model: the CPU engine can still run a small one.
            Err(err @ (PageError::Engine(_) | PageError::DeviceLost(_)))
                if on_gpu && info.manifest.gpu_bytes <= CPU_ENGINE_MAX_BYTES =>
            {
                browser::log(&format!(
                    "bd3lm: WebGPU engine failed ({err}); using the CPU engine"
                ));
                self.engine_kind.set(Some(EngineKind::Cpu {
                    reason: format!("The WebGPU engine could not run this model ({err})."),
                }));
                self.load_into(&info, None).await?
            }
            other => other?,
        };
        *self.model.borrow_mut() = Some(loaded);
        self.phase.set(Phase::Ready);
        Ok(())
    }

    /// Loads a Hub model: its stored package, or the checkpoint downloaded and converted.
    async fn load_hub_now(&self, hub: HubInfo) -> Result<(), PageError> {
        self.phase.set(Phase::Loading);
        self.error.set(None);
        self.load_report.set(None);
        self.model.borrow_mut().take();
        let model_bytes = match &hub.stored {
            Some(stored) => stored.manifest.gpu_bytes,
            None => hub.stored_bytes + bd3lm::weights::kv_cache_bytes(&hub.config) as u64,
        };
        let gpu = self.engine_for_load(model_bytes).await;
        let loaded = match &hub.stored {
            Some(stored) => {
                let loaded = self.load_into(stored, gpu.as_ref()).await?;
                // A repo's own package: every file is cached now.
                self.hub_info.update(|h| {
                    if let Some(p) = h.as_mut().and_then(|h| h.stored.as_mut()) {
                        p.cached_files = p.total_files();
                        p.cached_bytes = p.manifest.download_bytes;
                    }
                });
                loaded
            }
            None => {
                let cache = self.cache().await;
                let mut sink = ModelSink::for_conversion(gpu.as_ref(), &hub.config)?;
                let progress = self.progress;
                let files = hub_load::load(&hub, &cache, &mut sink, &mut |p| {
                    progress.set(Some(p.clone()))
                })
                .await?;
                if sink.stores_only() {
                    // The CPU engine: its worker loads the package just stored.
                    let loaded = self.load_into(&files.package, None).await?;
                    self.hub_info.update(|h| {
                        if let Some(h) = h {
                            h.stored = Some(files.package.clone());
                            h.stored_bytes = files.package.cached_bytes;
                        }
                    });
                    *self.model.borrow_mut() = Some(loaded);
                    self.phase.set(Phase::Ready);
                    return Ok(());
                }
                let tokenizer = Tokenizer::from_bytes(&files.tokenizer_json, hub.config.vocab_size)
                    .map_err(PageError::Package)?;
                let faults = self.faults.replace(FaultInjection::default());
                let engine = sink.finish().await?;
                let summary = format!(
                    "Downloaded {} of {} and converted it to {} in this browser; {}",
                    bd3lm::hub::CHECKPOINT_FILE,
                    hub.id,
                    hub.format.name(),
                    files.report.summary()
                );
                browser::log(&format!("bd3lm: model ready: {summary}"));
                self.load_report.set(Some(summary));
                // Next time: the stored package.
                self.hub_info.update(|h| {
                    if let Some(h) = h {
                        h.stored = Some(files.package.clone());
                        h.stored_bytes = files.package.cached_bytes;
                    }
                });
                LoadedModel {
                    engine,
                    faults,
                    tokenizer,
                    info: files.package,
                }
            }
        };
        *self.model.borrow_mut() = Some(loaded);
        self.phase.set(Phase::Ready);
        Ok(())
    }

    /// Loads the package into the WebGPU engine on `gpu`, or the CPU engine.
    async fn load_into(
        &self,
        info: &PackageInfo,
        gpu: Option<&GpuContext>,
    ) -> Result<LoadedModel, PageError> {
        let config = info.manifest.model_config().map_err(PageError::Package)?;
        let cache = self.cache().await;
        let mut sink = ModelSink::new(gpu, &info.manifest).await?;
        let progress = self.progress;
        let files = loader::load(info, &cache, &mut sink, &mut |p| {
            progress.set(Some(p.clone()))
        })
        .await?;
        let t_tokenizer = browser::now_ms();
        let tokenizer = Tokenizer::from_bytes(&files.tokenizer_json, config.vocab_size)
            .map_err(PageError::Package)?;
        // A simulated device loss applies to the first engine only, so a restart recovers.
        let faults = self.faults.replace(FaultInjection::default());
        let t_engine = browser::now_ms();
        let engine = sink.finish().await?;
        browser::log(&format!(
            "bd3lm: tokenizer parsed in {:.0} ms, engine built in {:.0} ms",
            t_engine - t_tokenizer,
            browser::now_ms() - t_engine
        ));
        let summary = files.report.summary();
        browser::log(&format!(
            "bd3lm: model ready on {}: {summary}",
            if matches!(engine, AnyEngine::Gpu(_)) {
                "WebGPU"
            } else {
                "the CPU"
            }
        ));
        self.load_report.set(Some(summary));
        Ok(LoadedModel {
            engine,
            faults,
            tokenizer,
            info: info.clone(),
        })
    }

    pub fn start(&self, continue_text: bool) {
        let block_size = match self.model.borrow().as_ref() {
            Some(m) => m
                .info
                .manifest
                .model_config()
                .map(|c| c.block_size)
                .unwrap_or(1),
            None => return,
        };
        let form = self.form.get_untracked();
        let parsed = match settings::parse(&form, block_size, browser::random_seed) {
            Ok(parsed) => parsed,
            Err(message) => {
                self.error.set(Some(ErrorView {
                    message,
                    device_lost: false,
                }));
                return;
            }
        };
        if form.random_seed {
            // Show the seed that was drawn, so the run can be repeated.
            self.form
                .update(|f| f.seed = parsed.sampling.seed.to_string());
        }
        // The URL will reproduce this run (continuing depends on the canvas, so it is not
        // written for Continue); written once the run has begun and ended, so a refused run
        // (a prompt longer than the context) leaves the URL of the last good one.
        let url_pairs = (!continue_text).then(|| {
            url_state::pairs(
                &self.loaded_from.get_untracked(),
                &self.prompt.get_untracked(),
                &form,
                parsed.sampling.seed,
            )
        });
        let Some(mut model) = self.model.borrow_mut().take() else {
            return;
        };
        let run = RunSettings {
            prompt_text: self.prompt.get_untracked(),
            continue_text,
            new_tokens: parsed.new_tokens,
            sampling: parsed.sampling,
            pace_ms: parsed.pace_ms,
        };
        self.stop.set(false);
        self.error.set(None);
        self.notice.set(None);
        self.announce.set(String::new());
        self.phase.set(Phase::Generating);
        self.runs.update(|(started, _)| *started += 1);
        let page = self.clone();
        spawn_local(async move {
            let end = runner::generate(&mut model, run, page.canvas, page.stats, &page.stop).await;
            browser::log(&format!("bd3lm: run ended: {end:?}"));
            if let (Some(pairs), RunEnd::Finished(_) | RunEnd::Stopped) = (&url_pairs, &end) {
                if let Err(e) = browser::replace_query(&url_state::KEYS, pairs) {
                    browser::log(&format!("bd3lm: the URL could not be updated: {e}"));
                }
            }
            page.runs.update(|(_, ended)| *ended += 1);
            match end {
                RunEnd::Failed(err) if err.is_device_lost() => {
                    // The engine is unusable; the text stays on the canvas.
                    drop(model);
                    page.fail(&err);
                    page.phase.set(Phase::NoModel);
                    return;
                }
                RunEnd::Failed(err) => page.fail(&err),
                RunEnd::Stopped => page
                    .notice
                    .set(Some("Stopped. The text so far is kept.".into())),
                RunEnd::Finished(reason) => {
                    page.notice.set(Some(finish_words(reason).into()));
                    page.announce.set(format!(
                        "{} The text: {}",
                        finish_words(reason),
                        page.canvas.text()
                    ));
                }
            }
            *page.model.borrow_mut() = Some(model);
            page.phase.set(Phase::Ready);
        });
    }

    pub fn stop(&self) {
        if self.phase.get_untracked() == Phase::Generating {
            self.stop.set(true);
            self.phase.set(Phase::Stopping);
        }
    }

    pub fn copy(&self) {
        let text = self.canvas.text();
        let notice = self.notice;
        let error = self.error;
        spawn_local(async move {
            match browser::copy_text(&text).await {
                Ok(()) => notice.set(Some(format!("Copied {} characters.", text.chars().count()))),
                Err(e) => error.set(Some(ErrorView::from(&e))),
            }
        });
    }
}

pub(crate) fn finish_words(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "Finished: all requested tokens were generated.",
        FinishReason::Eos => "Finished: the model ended the text.",
        FinishReason::LowEntropy => "Finished: the text became repetitive.",
    }
}
