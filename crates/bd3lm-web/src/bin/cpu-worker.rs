//! The page's CPU engine in a dedicated Web Worker (built by Trunk from `web/index.html` with
//! a loader shim, `cpu-worker_loader.js`): `bd3lm_cpu::worker::serve` answers the page's
//! `WorkerEngine`. Natively this is an empty binary.

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    bd3lm_cpu::worker::serve();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {}
