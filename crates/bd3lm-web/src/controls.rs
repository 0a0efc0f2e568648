//! The generation controls (prompt, length, sampler, top-p, seed, pace; start, stop,
//! continue, copy) and the live statistics.

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

#[component]
pub fn Controls(page: Page) -> impl IntoView {
    let (phase, form, prompt) = (page.phase, page.form, page.prompt);
    let running = move || matches!(phase.get(), Phase::Generating | Phase::Stopping);
    let can_start = move || phase.get() == Phase::Ready;
    let has_text = page.canvas.chunks;
    let (start, cont, stop, copy) = (page.clone(), page.clone(), page.clone(), page.clone());
    view! {
        <section id="controls" class="panel">
            <h2>"Generate"</h2>
            <label class="field wide" for="prompt">
                <span>"Prompt"</span>
                <textarea
                    id="prompt"
                    rows="2"
                    prop:value=move || prompt.get()
                    on:input=move |ev| prompt.set(event_target_value(&ev))
                ></textarea>
            </label>
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
                        <option value=FIRST_HITTING selected=move || form.with(|f| f.sampler == FIRST_HITTING)>"first-hitting (one token per step)"</option>
                        <option value=POSTERIOR selected=move || form.with(|f| f.sampler == POSTERIOR)>"posterior (DDPM grid)"</option>
                        <option value=CONFIDENCE selected=move || form.with(|f| f.sampler == CONFIDENCE)>"confidence (several tokens per step)"</option>
                        <option value=ENTROPY selected=move || form.with(|f| f.sampler == ENTROPY)>"entropy bound (several tokens per step)"</option>
                    </select>
                </label>
                <span hidden=move || form.with(|f| f.sampler != POSTERIOR)>
                    {form_input("steps", "Steps per block", form, |f| f.steps.clone(), |f, v| f.steps = v)}
                </span>
                <span hidden=move || form.with(|f| f.sampler != CONFIDENCE)>
                    {form_input("threshold", "Threshold", form, |f| f.threshold.clone(), |f, v| f.threshold = v)}
                </span>
                <span hidden=move || form.with(|f| f.sampler != ENTROPY)>
                    {form_input("gamma", "Entropy bound γ (nats)", form, |f| f.gamma.clone(), |f, v| f.gamma = v)}
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
                {form_input("pace", "Pause per step (ms)", form, |f| f.pace_ms.clone(), |f, v| f.pace_ms = v)}
            </div>
            <p class="hint">
                "Any length works: beyond the model's context the oldest blocks slide out of the KV cache \
                 (lengths are rounded up to whole blocks). "
                "The pause only slows the display so you can watch blocks denoise; statistics leave it out."
            </p>
            <div class="row buttons">
                <button id="start" disabled=move || !can_start() on:click=move |_| start.start(false)>"Start"</button>
                <button id="stop" disabled=move || phase.get() != Phase::Generating on:click=move |_| stop.stop()>"Stop"</button>
                <button
                    id="continue"
                    title="Generate more after the text on the canvas"
                    disabled=move || !can_start() || has_text.with(|c| c.is_empty())
                    on:click=move |_| cont.start(true)
                >
                    "Continue"
                </button>
                <button id="copy" disabled=move || running() || has_text.with(|c| c.is_empty()) on:click=move |_| copy.copy()>
                    "Copy text"
                </button>
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
        <section id="stats" class="panel stats">
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
