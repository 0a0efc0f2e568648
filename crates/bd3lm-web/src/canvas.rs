//! The live denoising canvas: settled text flows as ordinary text; the block being denoised
//! shows one slot per position, masked until revealed, then tinted by the model's confidence,
//! with this step's reveals highlighted. All generated text goes in as text nodes.

use crate::app::Phase;
use crate::canvas_model::{ChunkKind, Slot, SlotState};
use crate::runner::CanvasSignals;
use leptos::prelude::*;

fn chunk_class(kind: ChunkKind) -> &'static str {
    match kind {
        ChunkKind::Prompt => "chunk prompt",
        ChunkKind::Committed => "chunk committed",
        ChunkKind::Stopped => "chunk stopped",
    }
}

fn slot_view(slot: Slot) -> AnyView {
    match slot.state {
        SlotState::Masked => view! { <span class="slot masked" data-position=slot.position.to_string() title="masked">"▒▒▒"</span> }.into_any(),
        SlotState::Revealed { text, confidence, fresh } => {
            let class = if fresh { "slot revealed fresh" } else { "slot revealed" };
            // Whitespace-only tokens would be invisible; show a middle dot instead.
            let shown = if text.trim().is_empty() { text.replace(' ', "·").replace('\n', "↵") } else { text };
            view! {
                <span
                    class=class
                    data-position=slot.position.to_string()
                    style=format!("--confidence: {confidence:.3}")
                    title=format!("confidence {:.0}%", confidence * 100.0)
                >
                    {shown}
                </span>
            }
            .into_any()
        }
    }
}

#[component]
pub fn Canvas(
    canvas: CanvasSignals,
    phase: RwSignal<Phase>,
    runs: RwSignal<(u32, u32)>,
) -> impl IntoView {
    let chunks = canvas.chunks;
    let slots = canvas.slots;
    let empty = move || chunks.with(|c| c.is_empty()) && slots.with(|s| s.is_empty());
    // The canvas scrolls itself; it follows the block being denoised unless the reader
    // scrolled up to read earlier text.
    let canvas_el = NodeRef::<leptos::html::Div>::new();
    let follow = StoredValue::new(true);
    Effect::new(move |_| {
        chunks.track();
        slots.track();
        if let Some(div) = canvas_el.get() {
            if follow.get_value() {
                div.set_scroll_top(div.scroll_height());
            }
        }
    });
    view! {
        <section class="panel output" aria-label="Output">
            <div
                id="canvas"
                class="canvas"
                node_ref=canvas_el
                tabindex="0"
                role="region"
                aria-label="Generated text"
                class:running=move || phase.get() == Phase::Generating
                aria-busy=move || (phase.get() == Phase::Generating).to_string()
                data-runs-started=move || runs.get().0.to_string()
                data-runs-ended=move || runs.get().1.to_string()
                on:scroll=move |_| {
                    if let Some(div) = canvas_el.get_untracked() {
                        follow.set_value(div.scroll_top() + div.client_height() >= div.scroll_height() - 24);
                    }
                }
            >
                <span class="placeholder" hidden=move || !empty()>
                    "Press Start: each block appears masked, its tokens are revealed step by step, "
                    "then it settles into the text."
                </span>
                <For each=move || chunks.get() key=|chunk| chunk.id let:chunk>
                    <span class=chunk_class(chunk.kind)>{chunk.text}</span>
                </For>
                <span id="block" class="block">{move || slots.get().into_iter().map(slot_view).collect_view()}</span>
            </div>
            <p class="legend">
                <span class="slot masked">"▒▒▒"</span>
                " masked · "
                <span class="slot revealed" style="--confidence: 0.9">"revealed"</span>
                " (darker = surer) · "
                <span class="slot revealed fresh" style="--confidence: 0.9">"this step"</span>
                " · plain = committed"
            </p>
        </section>
    }
}

/// A comparison column's canvas: the same rendering, smaller, without the live-run hooks.
#[component]
pub fn MiniCanvas(canvas: CanvasSignals, label: RwSignal<String>) -> impl IntoView {
    let chunks = canvas.chunks;
    let slots = canvas.slots;
    view! {
        <div class="canvas mini" tabindex="0" role="region" aria-label=move || format!("Text of {}", label.get())>
            <For each=move || chunks.get() key=|chunk| chunk.id let:chunk>
                <span class=chunk_class(chunk.kind)>{chunk.text}</span>
            </For>
            <span class="block">{move || slots.get().into_iter().map(slot_view).collect_view()}</span>
        </div>
    }
}
