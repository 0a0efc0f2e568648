//! Block sizes side by side: the same prompt, seed and sampler on two or three models, one
//! after another, each with its own denoising canvas, model calls per token and tokens/s.
//! Only one model is in memory at a time: loading the next one drops the previous engine
//! (and its GPU buffers) first. A comparison never starts a large download: a Hub model
//! must have been loaded (and stored) once from the Model menu.

use crate::app::{finish_words, Page, Phase, AUTO_LOAD_MAX_BYTES};
use crate::browser;
use crate::canvas::MiniCanvas;
use crate::format;
use crate::hub_choice;
use crate::runner::{self, CanvasSignals, RunEnd, RunSettings};
use crate::settings::{self, FormValues};
use crate::stats::GenerationStats;
use bd3lm::Engine;
use bd3lm_gpu::AnyEngine;
use leptos::prelude::*;
use leptos::task::spawn_local;

/// One model of a comparison.
#[derive(Clone)]
pub struct Column {
    pub source: String,
    pub title: RwSignal<String>,
    pub canvas: CanvasSignals,
    pub stats: RwSignal<GenerationStats>,
    pub status: RwSignal<String>,
    /// Block size of the model, once loaded.
    pub block_size: RwSignal<Option<usize>>,
}

impl Column {
    fn new(source: String) -> Self {
        Column {
            title: RwSignal::new(source.clone()),
            source,
            canvas: CanvasSignals::new(),
            stats: RwSignal::new(GenerationStats::default()),
            status: RwSignal::new("Waiting.".to_string()),
            block_size: RwSignal::new(None),
        }
    }
}

impl Page {
    /// Runs the comparison named in the comparison field.
    pub fn compare(&self) {
        let sources = match hub_choice::compare_sources(&self.compare_input.get_untracked()) {
            Ok(sources) => sources,
            Err(message) => {
                self.error.set(Some(crate::app::ErrorView {
                    message,
                    device_lost: false,
                }));
                return;
            }
        };
        // One seed for every model, shown in the form so the comparison can be repeated.
        let mut form = self.form.get_untracked();
        if form.random_seed {
            form.seed = browser::random_seed().to_string();
            form.random_seed = false;
            let seed = form.seed.clone();
            self.form.update(|f| f.seed = seed);
        }
        let columns: Vec<Column> = sources.into_iter().map(Column::new).collect();
        self.comparison.set(columns.clone());
        self.error.set(None);
        self.notice.set(None);
        self.announce.set(String::new());
        self.stop.set(false);
        self.comparing.set(true);
        let page = self.clone();
        spawn_local(async move {
            for column in &columns {
                if page.stop.get() {
                    column.status.set("Not run: stopped.".into());
                    continue;
                }
                page.compare_one(column, &form).await;
            }
            page.comparing.set(false);
            page.comparisons_done.update(|n| *n += 1);
            let summary: Vec<String> = columns
                .iter()
                .map(|c| {
                    let s = c.stats.get_untracked();
                    format!(
                        "{}: {} model calls per token, {} tokens/s",
                        c.title.get_untracked(),
                        format::per_second(s.forwards_per_token()),
                        format::per_second(s.tokens_per_second())
                    )
                })
                .collect();
            page.notice.set(Some("Comparison finished.".into()));
            page.announce
                .set(format!("Comparison finished. {}.", summary.join("; ")));
            let has_model = page.model.borrow().is_some();
            page.phase.set(if has_model {
                Phase::Ready
            } else {
                Phase::NoModel
            });
        });
    }

    async fn compare_one(&self, column: &Column, form: &FormValues) {
        column.status.set("Reading the manifest…".into());
        self.package_url.set(column.source.clone());
        self.custom_model
            .set(hub_choice::menu_value(&column.source) == hub_choice::CUSTOM);
        self.inspect_now().await;
        if let Some(err) = self.error.get_untracked() {
            column.status.set(err.message);
            self.error.set(None);
            return;
        }
        let download = self
            .hub_info
            .with_untracked(|h| {
                h.as_ref()
                    .filter(|h| h.stored.is_none() || h.download_bytes() > AUTO_LOAD_MAX_BYTES)
                    .map(|h| h.download_bytes())
            })
            .or_else(|| {
                self.info.with_untracked(|i| {
                    i.as_ref()
                        .map(|i| i.manifest.download_bytes.saturating_sub(i.cached_bytes))
                        .filter(|&b| b > AUTO_LOAD_MAX_BYTES)
                })
            });
        if let Some(bytes) = download {
            column.status.set(format!(
                "Not run: it needs a {} download first. Load it once from the Model menu, then compare.",
                format::bytes(bytes)
            ));
            return;
        }
        column.status.set("Loading…".into());
        if let Err(e) = self.load_now().await {
            column.status.set(e.to_string());
            self.progress.set(None);
            self.phase.set(Phase::NoModel);
            return;
        }
        self.loaded_from.set(column.source.clone());
        let Some(mut model) = self.model.borrow_mut().take() else {
            return;
        };
        let cfg = model.engine.config().clone();
        column.block_size.set(Some(cfg.block_size));
        column.title.set(format!(
            "{} · block size {}",
            model.info.manifest.name, cfg.block_size
        ));
        let parsed = match settings::parse(form, cfg.block_size, browser::random_seed) {
            Ok(parsed) => parsed,
            Err(message) => {
                column.status.set(message);
                *self.model.borrow_mut() = Some(model);
                return;
            }
        };
        let run = RunSettings {
            prompt_text: self.prompt.get_untracked(),
            continue_text: false,
            new_tokens: parsed.new_tokens,
            sampling: parsed.sampling,
            pace_ms: parsed.pace_ms,
        };
        column.status.set(format!(
            "Generating on {}…",
            if matches!(model.engine, AnyEngine::Gpu(_)) {
                "WebGPU"
            } else {
                "the CPU"
            }
        ));
        self.phase.set(Phase::Generating);
        let end = runner::generate(&mut model, run, column.canvas, column.stats, &self.stop).await;
        browser::log(&format!("bd3lm: compared {}: {end:?}", column.source));
        match end {
            RunEnd::Finished(reason) => column.status.set(finish_words(reason).into()),
            RunEnd::Stopped => column.status.set("Stopped.".into()),
            RunEnd::Failed(err) => {
                column.status.set(err.to_string());
                if err.is_device_lost() {
                    self.phase.set(Phase::NoModel);
                    return;
                }
            }
        }
        *self.model.borrow_mut() = Some(model);
        self.phase.set(Phase::Ready);
    }
}

/// The comparison field and its button (in the settings).
#[component]
pub fn CompareSettings(page: Page) -> impl IntoView {
    let (input, phase, comparing) = (page.compare_input, page.phase, page.comparing);
    let go = page.clone();
    view! {
        <section id="compare-panel" class="panel" aria-labelledby="compare-title">
            <h2 id="compare-title">"Compare block sizes"</h2>
            <label class="field wide" for="compare-models">
                <span>"2 or 3 models (Hub ids or package URLs), comma-separated"</span>
                <input
                    id="compare-models"
                    type="text"
                    spellcheck="false"
                    prop:value=move || input.get()
                    on:input=move |ev| input.set(event_target_value(&ev))
                />
            </label>
            <div class="row">
                <button
                    id="compare"
                    disabled=move || comparing.get() || !matches!(phase.get(), Phase::Ready | Phase::NoModel)
                    on:click=move |_| go.compare()
                >
                    "Compare"
                </button>
                <span class="hint">"Same prompt, seed and sampler on each, one after another."</span>
            </div>
        </section>
    }
}

/// The comparison's results: one column per model.
#[component]
pub fn Comparison(page: Page) -> impl IntoView {
    let (columns, done) = (page.comparison, page.comparisons_done);
    view! {
        <section
            id="comparison"
            class="panel comparison"
            aria-label="Comparison"
            hidden=move || columns.with(|c| c.is_empty())
            data-done=move || done.get().to_string()
        >
            <h2>"Side by side"</h2>
            <div class="columns">
                {move || {
                    columns
                        .get()
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| column_view(i, c))
                        .collect_view()
                }}
            </div>
        </section>
    }
}

fn column_view(index: usize, column: Column) -> impl IntoView {
    let stats = column.stats;
    let title = column.title;
    view! {
        <div class="column" id=format!("compare-col-{index}") data-block-size=move || column.block_size.get().map(|b| b.to_string()).unwrap_or_default()>
            <h3 class="column-title">{move || title.get()}</h3>
            <p class="state column-status">{move || column.status.get()}</p>
            <MiniCanvas canvas=column.canvas label=title />
            <p class="column-stats">
                <span class="calls-per-token">{move || stats.with(|s| format::per_second(s.forwards_per_token()))}</span>
                " model calls/token · "
                <span class="tokens-per-s">{move || stats.with(|s| format::per_second(s.tokens_per_second()))}</span>
                " tokens/s · "
                <span class="tokens">{move || stats.with(|s| s.tokens.to_string())}</span>
                " tokens"
            </p>
        </div>
    }
}
