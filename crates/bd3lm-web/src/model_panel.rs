//! The warnings about this browser (secure context, cache), the environment notes (WebGPU,
//! which engine runs), the compact model panel (menu, what a load costs, the one progress bar)
//! and the model's technical notes (facts, load report, how loading works).

use crate::app::{Page, Phase};
use crate::browser::WebGpuStatus;
use crate::format;
use crate::hub_choice;
use crate::page_engine::EnginePreference;
use leptos::prelude::*;

/// What the visitor must know about this browser: a non-secure context, no cache.
#[component]
pub fn Warnings(page: Page) -> impl IntoView {
    let secure = page.secure;
    let cache_note = page.cache_note;
    view! {
        <p id="insecure" class="warning" hidden=secure>
            "This page was opened over plain http from a site that is not this computer. Browsers only turn on "
            "WebGPU, the Cache API and crypto.subtle in a secure context: https://, or http://localhost and "
            "http://127.0.0.1. Here the model still runs on the CPU engine, downloads are not cached, and "
            "files are verified with the page's own SHA-256. To fix it, serve the page over https or open it "
            "through localhost."
        </p>
        <p id="cache-note" class="warning" hidden=move || cache_note.with(|n| n.is_none())>
            {move || cache_note.get().unwrap_or_default()}
        </p>
    }
}

/// WebGPU and the engine, in the technical notes.
#[component]
pub fn EnvironmentNotice(page: Page) -> impl IntoView {
    let webgpu = page.webgpu;
    let kind = page.engine_kind;
    let webgpu_words = move || match webgpu.get() {
        None => "Checking for WebGPU…".to_string(),
        Some(WebGpuStatus::Available {
            description,
            fallback,
        }) => {
            let software = if fallback {
                " (a software fallback adapter: correct but slow)"
            } else {
                ""
            };
            format!("WebGPU adapter: {description}{software}.")
        }
        Some(WebGpuStatus::NoAdapter) => "WebGPU is present but found no adapter.".to_string(),
        Some(WebGpuStatus::Missing) => "No WebGPU in this browser.".to_string(),
    };
    view! {
        <div id="environment" class="environment">
            <p id="webgpu">{webgpu_words}</p>
            <p id="engine">
                {move || {
                    kind.get()
                        .map(|k| format!("Engine: {}.", k.label()))
                        .unwrap_or_else(|| "Engine: chosen when the model loads.".to_string())
                }}
                " "
                <span class="reason">{move || kind.get().map(|k| k.reason().to_string()).unwrap_or_default()}</span>
            </p>
        </div>
    }
}

#[component]
pub fn ModelPanel(page: Page) -> impl IntoView {
    let (phase, url, info, progress) = (page.phase, page.package_url, page.info, page.progress);
    let busy = move || {
        matches!(
            phase.get(),
            Phase::Starting
                | Phase::Inspecting
                | Phase::Loading
                | Phase::Generating
                | Phase::Stopping
        )
    };
    let check = page.clone();
    let check_on_enter = page.clone();
    let check_on_menu = page.clone();
    let check_on_format = page.clone();
    let load = page.clone();
    let engine_pref = page.engine_pref;
    let (hub_info, hub_format) = (page.hub_info, page.hub_format);
    let hub_costs = move || {
        hub_info.with(|hub| {
            hub.as_ref().map(|h| {
                if let (true, Some(p)) = (h.package_repo, &h.stored) {
                    return hub_choice::package_statement(
                        p.manifest.download_bytes,
                        &p.manifest.quantization,
                        h.download_bytes(),
                    );
                }
                let mut s = hub_choice::statement(
                    h.download_bytes(),
                    h.stored_bytes,
                    h.format,
                    h.stored.is_some(),
                );
                if h.stored.is_none() {
                    if h.gpt2_tokenizer {
                        s.push_str(
                            " The repo has no tokenizer: GPT-2's, shipped with this page, is used.",
                        );
                    }
                    if let Some((usage, quota)) = h.storage {
                        s.push_str(&format!(
                            " Storage: {} of {} used.",
                            format::bytes(usage),
                            format::bytes(quota)
                        ));
                        if let Some(problem) =
                            hub_choice::quota_problem(h.stored_bytes, usage, quota)
                        {
                            s.push(' ');
                            s.push_str(&problem);
                        }
                    }
                }
                s
            })
        })
    };
    let costs = move || {
        if let Some(c) = hub_costs() {
            return c;
        }
        info.with(|info| {
            let Some(info) = info else {
                return String::new();
            };
            let m = &info.manifest;
            let cached = if info.cached_files == info.total_files() {
                " All files are in the browser cache: loading needs no network.".to_string()
            } else if info.cached_files > 0 {
                format!(
                    " {} of {} files ({}) are already cached.",
                    info.cached_files,
                    info.total_files(),
                    format::bytes(info.cached_bytes)
                )
            } else {
                String::new()
            };
            let offline = if info.offline_manifest {
                " (Offline: using the cached manifest.)"
            } else {
                ""
            };
            format!(
                "Download: {} in {} files. GPU memory: {} (weights + KV cache).{cached}{offline}",
                format::bytes(m.download_bytes),
                info.total_files(),
                format::bytes(m.gpu_bytes)
            )
        })
    };
    let loaded_from = page.loaded_from;
    // "Reload" only for the model that is loaded: another one picked meanwhile shows what
    // loading it costs.
    let shows_loaded = move || url.with(|u| loaded_from.with(|l| u == l));
    let load_label = move || match phase.get() {
        Phase::Loading => "Loading…".to_string(),
        Phase::Ready | Phase::Generating | Phase::Stopping if shows_loaded() => {
            "Reload model".to_string()
        }
        _ if hub_info.with(|h| h.is_some()) => hub_info.with(|h| match h {
            Some(h) if h.stored.is_some() && h.download_bytes() == 0 => {
                "Load model (stored)".to_string()
            }
            Some(h) if h.package_repo => {
                format!("Download and load ({})", format::bytes(h.download_bytes()))
            }
            Some(h) => format!(
                "Download and convert ({})",
                format::bytes(h.download_bytes())
            ),
            None => "Load model".to_string(),
        }),
        _ => info.with(|i| match i {
            Some(i) if i.cached_files == i.total_files() => "Load model (cached)".to_string(),
            Some(i) => format!(
                "Download and load ({})",
                format::bytes(i.manifest.download_bytes.saturating_sub(i.cached_bytes))
            ),
            None => "Load model".to_string(),
        }),
    };
    let custom = page.custom_model;
    let is_hub = move || {
        matches!(
            hub_choice::classify(&url.get()),
            hub_choice::ModelInput::Hub(_)
        )
    };
    view! {
        <section id="model" class="panel" aria-labelledby="model-title">
            <h2 id="model-title">"Model"</h2>
            <select
                id="model-menu"
                aria-labelledby="model-title"
                disabled=busy
                on:change=move |ev| {
                    let value = event_target_value(&ev);
                    if value == hub_choice::CUSTOM {
                        // The visitor's own URL or id: an empty field, not the demo's `model/`.
                        custom.set(true);
                        url.set(String::new());
                    } else {
                        custom.set(false);
                        url.set(value);
                        check_on_menu.inspect();
                    }
                }
            >
                {hub_choice::menu()
                    .into_iter()
                    .map(|(value, label)| {
                        let selected_value = value.clone();
                        view! {
                            <option
                                value=value
                                selected=move || {
                                    if custom.get() {
                                        selected_value == hub_choice::CUSTOM
                                    } else {
                                        hub_choice::menu_value(&url.get()) == selected_value
                                    }
                                }
                            >
                                {label}
                            </option>
                        }
                    })
                    .collect_view()}
            </select>
            <div class="row" hidden=move || !custom.get()>
                <label class="field wide" for="package-url">
                    <span>"Package URL or Hub id owner/name[@revision]"</span>
                    <input
                        id="package-url"
                        type="text"
                        spellcheck="false"
                        placeholder="https://…/package/ or owner/name"
                        prop:value=move || url.get()
                        on:input=move |ev| url.set(event_target_value(&ev))
                        on:keydown=move |ev| {
                            if ev.key() == "Enter" {
                                check_on_enter.inspect();
                            }
                        }
                    />
                </label>
                <button id="check" disabled=busy on:click=move |_| check.inspect()>"Check"</button>
            </div>
            <p id="package-costs" class="costs">{costs}</p>
            <div class="row">
                <button id="load" disabled=move || busy() || (info.with(|i| i.is_none()) && hub_info.with(|h| h.is_none())) on:click=move |_| load.load()>
                    {load_label}
                </button>
                <label class="field" for="engine-pref">
                    <span>"Engine"</span>
                    <select
                        id="engine-pref"
                        on:change=move |ev| engine_pref.set(EnginePreference::parse(Some(&event_target_value(&ev))))
                    >
                        {EnginePreference::ALL
                            .into_iter()
                            .map(|p| {
                                view! {
                                    <option value=p.key() selected=move || engine_pref.get() == p>
                                        {p.label()}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </label>
                <label class="field" for="hub-format" hidden=move || !is_hub()>
                    <span>"Convert to"</span>
                    <select
                        id="hub-format"
                        disabled=busy
                        on:change=move |ev| {
                            hub_format.set(hub_choice::parse_format(Some(&event_target_value(&ev))));
                            if hub_info.with_untracked(|h| h.is_some()) {
                                check_on_format.inspect();
                            }
                        }
                    >
                        {hub_choice::FORMATS
                            .into_iter()
                            .map(|f| view! { <option value=f.name() selected=move || hub_format.get() == f>{f.name()}</option> })
                            .collect_view()}
                    </select>
                </label>
            </div>
            <div id="progress" class="progress" hidden=move || progress.with(|p| p.is_none())>
                <div class="bar" aria-hidden="true">
                    <div
                        class="fill"
                        style:width=move || format!("{:.1}%", progress.with(|p| p.as_ref().map(|p| p.fraction()).unwrap_or(0.0)) * 100.0)
                    ></div>
                </div>
                <span id="progress-text">{move || progress.with(|p| p.as_ref().map(|p| p.summary()).unwrap_or_default())}</span>
                <span class="activity">{move || progress.with(|p| p.as_ref().map(|p| p.activity.clone()).unwrap_or_default())}</span>
            </div>
            <p id="model-state" class="state">
                {move || match phase.get() {
                    Phase::Starting => "Starting…",
                    Phase::Inspecting => "Reading the manifest…",
                    Phase::NoModel => "No model loaded.",
                    Phase::Loading => "Loading the model…",
                    Phase::Ready => "Model ready.",
                    Phase::Generating => "Generating…",
                    Phase::Stopping => "Stopping after this step…",
                }}
            </p>
        </section>
    }
}

/// The model's facts, the last load's report and how model loading works: technical notes,
/// behind the page's disclosure.
#[component]
pub fn ModelNotes(page: Page) -> impl IntoView {
    let (info, hub_info, report) = (page.info, page.hub_info, page.load_report);
    let hub_facts = move || {
        hub_info.with(|hub| {
            hub.as_ref().map(|h| {
                let c = &h.config;
                let offline = if h.offline {
                    " (the Hub did not answer: using what this browser stored)"
                } else {
                    ""
                };
                format!(
                    "{} · commit {} · {} parameters · block size {}, context {} tokens, {} layers × {} wide · from {}{offline}",
                    h.id,
                    h.commit.get(..12).unwrap_or(&h.commit),
                    format::count(c.parameter_count()),
                    c.block_size,
                    c.model_length,
                    c.n_layers,
                    c.hidden_dim,
                    h.endpoint
                )
            })
        })
    };
    let facts = move || {
        if let Some(f) = hub_facts() {
            return f;
        }
        info.with(|info| {
            let Some(info) = info else {
                return String::new();
            };
            let m = &info.manifest;
            let cfg = m.model_config().ok();
            let shape = cfg
                .map(|c| {
                    format!(
                        "block size {}, context {} tokens, {} layers × {} wide",
                        c.block_size, c.model_length, c.n_layers, c.hidden_dim
                    )
                })
                .unwrap_or_default();
            format!(
                "{} · {} parameters · {} · {}",
                m.name,
                format::count(m.parameters),
                m.quantization,
                shape
            )
        })
    };
    view! {
        <p id="package-facts">{facts}</p>
        <p id="load-report" hidden=move || report.with(|r| r.is_none())>{move || report.get().unwrap_or_default()}</p>
        <p class="hint">
            "The default is the demo package shipped with this page. Any package written by "
            <code>"bd3lm quantize"</code>
            " works: choose Other and give the URL of its folder (the one holding manifest.json). A Hugging Face id "
            <code>"owner/name[@revision]"</code>
            " of a BD3-LM checkpoint is downloaded, verified and converted in this browser, once."
        </p>
        <p class="hint">
            "Any length works: beyond the model's context the oldest blocks slide out of the KV cache "
            "(lengths are rounded up to whole blocks). The pause per step only slows the display so you "
            "can watch blocks denoise; statistics leave it out. The page's URL holds the model, prompt, seed "
            "and sampler of the last run: opening it again on the same engine gives the same text."
        </p>
    }
}
