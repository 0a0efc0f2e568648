//! The fast CPU engine in a dedicated Web Worker (wasm32 only), so a forward of hundreds of
//! milliseconds never blocks the page's main thread.
//!
//! * [`serve`] runs inside the worker (the page's `cpu-worker` binary): it assembles the
//!   weights from the package's shards, builds a [`CpuEngine`] and answers requests.
//! * [`WorkerEngine`] is the page's side (`crate::worker_engine`): it implements
//!   `bd3lm::Engine` by posting requests and awaiting the replies.
//!
//! Messages are `[id, JSON, bytes?]` arrays: requests and replies are small JSON objects (a
//! draw returns ids and confidences only); shard bytes travel beside them as a `Uint8Array`.
//! The worker answers requests in order, one at a time.
//!
//! With several workers (`WorkerEngine::start`'s `workers`, cross-origin isolated pages
//! only), each holds its slice of every matrix ([`crate::split`]): worker 0 runs the engine
//! and the others compute their outputs of each matmul ([`crate::worker_split`]); the page
//! sends every shard to every worker, and engine calls to worker 0 alone.

use crate::engine::{CpuEngine, CpuOptions};
use crate::shard_part::{read_shard_part, ShardBytes};
use crate::split::PartSlices;
pub use crate::worker_engine::WorkerEngine;
use crate::worker_split::{PartServer, SharedSplit};
use bd3lm::engine::{DrawRequest, Engine, EngineProbes, Rows};
use bd3lm::package::{Manifest, WeightsBuilder};
use bd3lm::{Config, Error, Result};
use js_sys::SharedArrayBuffer;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// What the worker posts once its message handler is installed.
pub(crate) const READY: &str = "ready";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Start assembling a package's weights: this worker's part of `parts` (the shared
    /// buffer is the message's third element when `parts > 1`).
    Load {
        manifest: String,
        #[serde(default)]
        part: usize,
        #[serde(default = "one")]
        parts: usize,
    },
    /// One verified shard (its bytes are the message's third element).
    Shard {
        file: String,
    },
    /// Build the engine from everything received.
    Finish,
    Reset,
    Commit {
        block: Vec<u32>,
    },
    Logits {
        block: Vec<u32>,
    },
    Draw {
        block: Vec<u32>,
        /// `None`: every row.
        row: Option<usize>,
        nucleus_p: f64,
        seed: u64,
        mask_prob: Option<f32>,
        reuse: bool,
    },
}

fn one() -> usize {
    1
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Reply {
    #[serde(default)]
    pub(crate) error: Option<String>,
    /// Committed tokens in the worker's cache after the request.
    #[serde(default)]
    pub(crate) cached: usize,
    /// The engine's model calls so far (a store pass folded into the next call is not one).
    #[serde(default)]
    pub(crate) forwards: u64,
    /// `(row, token, confidence, entropy)` per draw.
    #[serde(default)]
    pub(crate) draws: Vec<(usize, u32, f32, f32)>,
    #[serde(default)]
    pub(crate) logits: Vec<f32>,
    #[serde(default)]
    pub(crate) describe: String,
    /// Bytes of the worker's wasm memory (its high-water mark: wasm memory never shrinks).
    #[serde(default)]
    pub(crate) memory: f64,
}

/// A shard stays in the worker's JavaScript heap; only the rows it keeps enter wasm memory.
impl ShardBytes for js_sys::Uint8Array {
    fn byte_len(&self) -> usize {
        self.length() as usize
    }
    fn read(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        self.subarray(range.start as u32, range.end as u32).to_vec()
    }
}

/// This worker's wasm memory in bytes.
fn memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

/// Polls a future that completes without waiting (the CPU engine's futures do).
fn ready<F: Future>(f: F) -> Result<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(Error::Backend(
            "the CPU engine did not complete a call".into(),
        )),
    }
}

/// A package arriving: worker 0 builds the engine's weights (its slices of the split
/// matrices), the others only their slices.
struct Loading {
    manifest: Manifest,
    config: Config,
    builder: WeightsBuilder,
    slices: PartSlices,
    part: usize,
    parts: usize,
    shared: Option<SharedArrayBuffer>,
}

#[derive(Default)]
struct WorkerState {
    loading: Option<Loading>,
    engine: Option<CpuEngine>,
    /// Set when another worker stopped answering (the engine's results are then void).
    split_failed: Rc<Cell<bool>>,
    /// A part worker's loop, started once its reply to `Finish` is posted.
    server: Option<PartServer>,
}

impl WorkerState {
    fn engine(&mut self) -> Result<&mut CpuEngine> {
        self.engine
            .as_mut()
            .ok_or_else(|| Error::Backend("the CPU worker has no model loaded".into()))
    }

    fn handle(
        &mut self,
        req: Request,
        bytes: Option<js_sys::Uint8Array>,
        shared: Option<SharedArrayBuffer>,
    ) -> Result<Reply> {
        let mut reply = Reply::default();
        match req {
            Request::Load {
                manifest,
                part,
                parts,
            } => {
                let manifest = Manifest::parse(&manifest)?;
                let config = manifest.model_config()?;
                if parts > 1 && shared.is_none() {
                    return Err(Error::Backend(
                        "a split engine needs the shared buffer".into(),
                    ));
                }
                self.engine = None;
                self.loading = Some(Loading {
                    slices: PartSlices::new(&config, part, parts),
                    builder: WeightsBuilder::new(config.clone()),
                    config,
                    manifest,
                    part,
                    parts,
                    shared,
                });
            }
            Request::Shard { file } => {
                let loading = self
                    .loading
                    .as_mut()
                    .ok_or_else(|| Error::Backend("a shard arrived before the manifest".into()))?;
                let bytes = bytes.ok_or_else(|| Error::Backend("a shard without bytes".into()))?;
                let slices = &mut loading.slices;
                let pieces =
                    read_shard_part(&loading.manifest, &file, &bytes, |name| slices.keep(name))?;
                for (name, piece) in pieces {
                    if loading.part == 0 {
                        loading.builder.put(name, piece);
                    } else {
                        slices.add(&name, piece);
                    }
                }
            }
            Request::Finish => {
                let loading = self
                    .loading
                    .take()
                    .ok_or_else(|| Error::Backend("nothing was loaded".into()))?;
                let shared = loading.shared.filter(|_| loading.parts > 1);
                match (loading.part, shared) {
                    (0, shared) => {
                        let weights = Arc::new(loading.builder.finish()?);
                        let mut engine = CpuEngine::new(weights.clone(), CpuOptions::default())?;
                        if let Some(buffer) = shared {
                            let failed = Rc::clone(&self.split_failed);
                            let split = SharedSplit::new(&buffer, &weights, loading.parts, failed);
                            engine.set_split(Box::new(split));
                        }
                        reply.describe = engine.describe();
                        self.engine = Some(engine);
                    }
                    (part, Some(buffer)) => {
                        let slices = loading.slices.finish()?;
                        let server = PartServer::new(&buffer, &loading.config, part, slices);
                        self.server = Some(server);
                    }
                    (_, None) => return Err(Error::Backend("no shared buffer".into())),
                }
            }
            Request::Reset => self.engine()?.reset(),
            Request::Commit { block } => ready(self.engine()?.commit(&block))??,
            Request::Logits { block } => reply.logits = ready(self.engine()?.logits(&block))??,
            Request::Draw {
                block,
                row,
                nucleus_p,
                seed,
                mask_prob,
                reuse,
            } => {
                let req = DrawRequest {
                    block: &block,
                    rows: row.map_or(Rows::All, Rows::One),
                    nucleus_p,
                    uniform_seed: seed,
                    mask_prob,
                    reuse,
                };
                let draws = ready(self.engine()?.draw(&req))??;
                reply.draws = draws
                    .into_iter()
                    .map(|d| (d.row, d.token, d.confidence, d.entropy))
                    .collect();
            }
        }
        if self.split_failed.get() {
            return Err(Error::Backend(
                "another CPU worker stopped answering (see the console)".into(),
            ));
        }
        reply.memory = memory_bytes();
        reply.cached = self.engine.as_ref().map_or(0, |e| e.cached_tokens());
        reply.forwards = self.engine.as_ref().map_or(0, |e| e.forward_count());
        Ok(reply)
    }
}

/// The worker's entry point: installs the message handler and tells the page it is ready.
pub fn serve() {
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let state = RefCell::new(WorkerState::default());
    let reply_scope = scope.clone();
    let onmessage =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let message = js_sys::Array::from(&event.data());
            let id = message.get(0);
            let extra = message.get(2);
            let bytes = extra.dyn_ref::<js_sys::Uint8Array>().cloned();
            let shared = Some(extra)
                .filter(|v| v.is_object() && bytes.is_none())
                .and_then(|v| v.dyn_into::<SharedArrayBuffer>().ok());
            let reply = match message.get(1).as_string().map(|j| serde_json::from_str(&j)) {
                Some(Ok(req)) => state.borrow_mut().handle(req, bytes, shared),
                _ => Err(Error::Backend("malformed request to the CPU worker".into())),
            }
            .unwrap_or_else(|e| Reply {
                error: Some(e.to_string()),
                ..Reply::default()
            });
            let json = serde_json::to_string(&reply).unwrap_or_default();
            let out = js_sys::Array::of2(&id, &JsValue::from_str(&json));
            // A failed post means the page is gone; nothing is left to tell.
            let _ = reply_scope.post_message(&out);
            // A part worker now serves matmuls until the page ends it.
            let server = state.borrow_mut().server.take();
            if let Some(server) = server {
                server.run();
            }
        });
    scope.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    let _ = scope.post_message(&JsValue::from_str(READY));
}
