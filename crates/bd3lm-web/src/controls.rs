//! The generation controls: the prompt and its buttons (start, stop, continue, copy), the
//! sampler's settings (length, sampler, top-p, seed, pace), and the live statistics.

use crate::app::{Page, Phase};
use crate::format;
use crate::settings::{FormValues, CONFIDENCE, ENTROPY, FIRST_HITTING, POSTERIOR};
use leptos::prelude::*;

/// A text input bound to one field of the form.
fn form_input(
    id: &'static str,
    label: &'static str,
    form: RwSignal<FormValues>,
    get: fn(&FormValues) -> String,
    set: fn(&mut FormValues, String),
) -> impl IntoView {
    view! {
        <label class="field" for=id>
            <span>{label}</span>
            <input
                id=id
                type="text"
                inputmode="decimal"
                prop:value=move || form.with(get)
                on:input=move |ev| {
                    let value = event_target_value(&ev);
                    form.update(|f| set(f, value));
                }
            />
        </label>
    }
}

/// The prompt and the run buttons, right above the canvas. Enter or Ctrl+Enter in the prompt
/// starts a run (Shift+Enter is a new line); pressed while the model loads, the run starts
/// once it is ready.
#[component]
pub fn Compose(page: Page) -> impl IntoView {
    let (phase, prompt, pending, comparing) =
        (page.phase, page.prompt, page.pending_start, page.comparing);
    let running = move || matches!(phase.get(), Phase::Generating | Phase::Stopping);
    let can_start = move || phase.get() == Phase::Ready;
    let loading = move || {
        matches!(
            phase.get(),
            Phase::Starting | Phase::Inspecting | Phase::Loading
        )
    };
    let has_text = page.canvas.chunks;
    let (start, cont, stop, copy, on_key) = (
        page.clone(),
        page.clone(),
        page.clone(),
        page.clone(),
        page.clone(),
    );
    view! {
        <section id="controls" class="panel compose" aria-label="Prompt">
            <label class="field wide" for="prompt">
                <span>"Prompt"</span>
                <textarea
                    id="prompt"
                    rows="2"
                    aria-describedby="prompt-keys"
                    prop:value=move || prompt.get()
                    on:input=move |ev| prompt.set(event_target_value(&ev))
                    on:keydown=move |ev| {
                        if ev.key() == "Enter" && !ev.shift_key() && !ev.alt_key() {
                            ev.prevent_default();
                            on_key.request_start();
                        }
                    }
                ></textarea>
            </label>
            <div class="row buttons">
                <button
                    id="start"
                    disabled=move || comparing.get() || !(can_start() || (loading() && !pending.get()))
                    on:click=move |_| start.request_start()
                >
                    {move || if pending.get() { "Starting after loading…" } else { "Start" }}
                </button>
                <button id="stop" disabled=move || phase.get() != Phase::Generating on:click=move |_| stop.stop()>"Stop"</button>
                <button
                    id="continue"
                    title="Generate more after the text on the canvas"
                    disabled=move || comparing.get() || !can_start() || has_text.with(|c| c.is_empty())
                    on:click=move |_| cont.start(true)
                >
                    "Continue"
                </button>
                <button id="copy" disabled=move || running() || has_text.with(|c| c.is_empty()) on:click=move |_| copy.copy()>
                    "Copy text"
                </button>
                <span id="prompt-keys" class="hint keys">"Enter starts · Shift+Enter: new line"</span>
            </div>
        </section>
    }
}

/// The sampler's settings, compact.
#[component]
pub fn SamplerSettings(page: Page) -> impl IntoView {
    let form = page.form;
    view! {
        <section id="sampling" class="panel" aria-labelledby="sampling-title">
            <h2 id="sampling-title">"Sampling"</h2>
            <div class="row fields">
                {form_input("tokens", "Tokens", form, |f| f.tokens.clone(), |f, v| f.tokens = v)}
                <label class="field" for="sampler">
                    <span>"Sampler"</span>
                    <select
                        id="sampler"
                        prop:value=move || form.with(|f| f.sampler.clone())
                        on:change=move |ev| {
                            let value = event_target_value(&ev);
                            form.update(|f| f.sampler = value);
                        }
                    >
                        <option value=FIRST_HITTING selected=move || form.with(|f| f.sampler == FIRST_HITTING)>"first-hitting (1 token/step)"</option>
                        <option value=POSTERIOR selected=move || form.with(|f| f.sampler == POSTERIOR)>"posterior (DDPM grid)"</option>
                        <option value=CONFIDENCE selected=move || form.with(|f| f.sampler == CONFIDENCE)>"confidence (parallel)"</option>
                        <option value=ENTROPY selected=move || form.with(|f| f.sampler == ENTROPY)>"entropy bound (parallel)"</option>
                    </select>
                </label>
                <span class="field-slot" hidden=move || form.with(|f| f.sampler != POSTERIOR)>
                    {form_input("steps", "Steps/block", form, |f| f.steps.clone(), |f, v| f.steps = v)}
                </span>
                <span class="field-slot" hidden=move || form.with(|f| f.sampler != CONFIDENCE)>
                    {form_input("threshold", "Threshold", form, |f| f.threshold.clone(), |f, v| f.threshold = v)}
                </span>
                <span class="field-slot" hidden=move || form.with(|f| f.sampler != ENTROPY)>
                    {form_input("gamma", "Entropy γ (nats)", form, |f| f.gamma.clone(), |f, v| f.gamma = v)}
                </span>
                {form_input("top-p", "Top-p", form, |f| f.top_p.clone(), |f, v| f.top_p = v)}
                {form_input("seed", "Seed", form, |f| f.seed.clone(), |f, v| f.seed = v)}
                <label class="field check" for="random-seed">
                    <input
                        id="random-seed"
                        type="checkbox"
                        prop:checked=move || form.with(|f| f.random_seed)
                        on:change=move |ev| {
                            let checked = event_target_checked(&ev);
                            form.update(|f| f.random_seed = checked);
                        }
                    />
                    <span>"random"</span>
                </label>
                {form_input("pace", "Pause/step (ms)", form, |f| f.pace_ms.clone(), |f, v| f.pace_ms = v)}
            </div>
        </section>
    }
}

#[component]
pub fn StatsView(page: Page) -> impl IntoView {
    let stats = page.stats;
    let item = |label: &'static str, id: &'static str, value: Signal<String>| {
        view! {
            <div class="stat">
                <span class="label">{label}</span>
                <span class="value" id=id>{move || value.get()}</span>
            </div>
        }
    };
    let s = move |f: fn(&crate::stats::GenerationStats) -> String| {
        Signal::derive(move || stats.with(f))
    };
    view! {
        <section id="stats" class="panel stats" aria-label="Statistics of the run">
            {item("forwards/s", "stat-forwards-per-s", s(|s| format::per_second(s.forwards_per_second())))}
            {item("tokens/s", "stat-tokens-per-s", s(|s| format::per_second(s.tokens_per_second())))}
            {item("model calls per token", "stat-forwards-per-token", s(|s| format::per_second(s.forwards_per_token())))}
            {item("most tokens in one step", "stat-max-reveal", s(|s| if s.steps == 0 { "-".into() } else { s.max_revealed_per_step.to_string() }))}
            {item("time to first block", "stat-first-block", s(|s| s.first_block_ms.map(format::millis).unwrap_or_else(|| "-".into())))}
            {item("tokens", "stat-tokens", s(|s| s.tokens.to_string()))}
            {item("model calls", "stat-forwards", s(|s| s.forwards.to_string()))}
            {item("longest step", "stat-longest-step", s(|s| if s.steps == 0 { "-".into() } else { format::millis(s.longest_step_ms) }))}
        </section>
    }
}
