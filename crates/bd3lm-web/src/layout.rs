//! The page's layout: the prompt and its buttons right above the denoising canvas (the centre
//! of the page), the compact model and sampling settings beside it (below it on phones), and
//! the technical notes behind a disclosure. Every part sits in a landmark (banner, main,
//! complementary) for screen readers.

use crate::app::Page;
use crate::canvas::Canvas;
use crate::compare::{CompareSettings, Comparison};
use crate::controls::{Compose, SamplerSettings, StatsView};
use crate::model_panel::{EnvironmentNotice, ModelNotes, ModelPanel, Warnings};
use leptos::prelude::*;

#[component]
pub fn App() -> impl IntoView {
    let page = Page::new();
    page.start_up();
    let (error, notice, announce) = (page.error, page.notice, page.announce);
    let restart = page.clone();
    view! {
        <header class="top">
            <h1>"BD3-LM in your browser"</h1>
            <p class="lede">
                "Block diffusion: each block of tokens starts masked, is revealed over a few denoising steps, then committed."
            </p>
        </header>
        <div class="layout">
            <main id="main" class="main">
                <Warnings page=page.clone() />
                <Compose page=page.clone() />
                <div id="error" class="error" role="alert" hidden=move || error.with(|e| e.is_none())>
                    <span id="error-text">
                        {move || error.with(|e| e.as_ref().map(|e| e.message.clone()).unwrap_or_default())}
                    </span>
                    <button
                        id="restart"
                        hidden=move || !error.with(|e| e.as_ref().is_some_and(|e| e.device_lost))
                        on:click=move |_| restart.load()
                    >
                        "Restart the engine"
                    </button>
                </div>
                // Polite live regions: they change when a run ends (or on Stop/Copy), never
                // per denoising step; the canvas itself is not live.
                <p id="notice" class="notice" role="status" aria-live="polite">
                    {move || notice.get().unwrap_or_default()}
                </p>
                <p id="announce" class="sr-only" aria-live="polite">{move || announce.get()}</p>
                <Canvas canvas=page.canvas phase=page.phase runs=page.runs />
                <StatsView page=page.clone() />
                <Comparison page=page.clone() />
            </main>
            <aside class="side" aria-label="Settings">
                <ModelPanel page=page.clone() />
                <SamplerSettings page=page.clone() />
                <CompareSettings page=page.clone() />
                <details id="notes" class="panel notes">
                    <summary>"Technical notes"</summary>
                    <EnvironmentNotice page=page.clone() />
                    <ModelNotes page=page.clone() />
                </details>
            </aside>
        </div>
    }
}
