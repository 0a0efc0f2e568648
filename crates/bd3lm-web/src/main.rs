//! The bd3lm web demo: a Leptos (CSR) page, built by Trunk from `web/index.html`, that loads a
//! BD3-LM package into the browser and shows block diffusion live. See `docs/web.md`.
//!
//! The browser code only exists on wasm32; natively this is an empty binary whose pure
//! modules (formatting, progress, statistics, the canvas model, settings, errors) are unit
//! tested with `cargo test -p bd3lm-web`.

// Pure modules: compiled everywhere, used by the page on wasm32 and by the tests natively.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod canvas_model;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod cpu_workers;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod format;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod hub_choice;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod page_error;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod progress;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod settings;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod stats;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod url_state;

// Browser-only modules.
#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(target_arch = "wasm32")]
mod cache;
#[cfg(target_arch = "wasm32")]
mod canvas;
#[cfg(target_arch = "wasm32")]
mod compare;
#[cfg(target_arch = "wasm32")]
mod controls;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod hub_load;
#[cfg(target_arch = "wasm32")]
mod layout;
#[cfg(target_arch = "wasm32")]
mod loader;
#[cfg(target_arch = "wasm32")]
mod model_panel;
#[cfg(target_arch = "wasm32")]
mod page_engine;
#[cfg(target_arch = "wasm32")]
mod runner;

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(layout::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {}
