//! The fast CPU engine in a dedicated Web Worker (wasm32 only), so a forward of hundreds of
//! milliseconds never blocks the page's main thread.
//!
//! * [`serve`] runs inside the worker (the page's `cpu-worker` binary): it assembles the
//!   weights from the package's shards, builds a [`CpuEngine`] and answers requests.
//! * [`WorkerEngine`] is the page's side: it implements `bd3lm::Engine` by posting requests and
//!   awaiting the replies, so the generator and the page do not know the engine is elsewhere.
//!
//! Messages are `[id, JSON, bytes?]` arrays: requests and replies are small JSON objects (a
//! draw returns ids and confidences only); shard bytes travel beside them as a `Uint8Array`.
//! The worker answers requests in order, one at a time.

use crate::engine::{CpuEngine, CpuOptions};
use bd3lm::engine::{DrawRequest, Engine, EngineProbes, RowDraw, Rows};
use bd3lm::forward::Activations;
use bd3lm::package::{read_shard, Manifest, WeightsBuilder};
use bd3lm::{Config, Error, Result};
use futures_channel::oneshot;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

mod probes;

/// What the worker posts once its message handler is installed.
const READY: &str = "ready";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    /// Start assembling a package's weights.
    Load {
        manifest: String,
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

#[derive(Debug, Default, Serialize, Deserialize)]
struct Reply {
    #[serde(default)]
    error: Option<String>,
    /// Committed tokens in the worker's cache after the request.
    #[serde(default)]
    cached: usize,
    /// The engine's model calls so far (a store pass folded into the next call is not one).
    #[serde(default)]
    forwards: u64,
    /// `(row, token, confidence, entropy)` per draw.
    #[serde(default)]
    draws: Vec<(usize, u32, f32, f32)>,
    #[serde(default)]
    logits: Vec<f32>,
    #[serde(default)]
    describe: String,
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

#[derive(Default)]
struct WorkerState {
    loading: Option<(Manifest, WeightsBuilder)>,
    engine: Option<CpuEngine>,
}

impl WorkerState {
    fn engine(&mut self) -> Result<&mut CpuEngine> {
        self.engine
            .as_mut()
            .ok_or_else(|| Error::Backend("the CPU worker has no model loaded".into()))
    }

    fn handle(&mut self, req: Request, bytes: Option<Vec<u8>>) -> Result<Reply> {
        let mut reply = Reply::default();
        match req {
            Request::Load { manifest } => {
                let manifest = Manifest::parse(&manifest)?;
                let builder = WeightsBuilder::new(manifest.model_config()?);
                self.engine = None;
                self.loading = Some((manifest, builder));
            }
            Request::Shard { file } => {
                let (manifest, builder) = self
                    .loading
                    .as_mut()
                    .ok_or_else(|| Error::Backend("a shard arrived before the manifest".into()))?;
                let bytes = bytes.unwrap_or_default();
                for (name, piece) in read_shard(manifest, &file, &bytes)? {
                    builder.put(name, piece);
                }
            }
            Request::Finish => {
                let (_, builder) = self
                    .loading
                    .take()
                    .ok_or_else(|| Error::Backend("nothing was loaded".into()))?;
                let engine = CpuEngine::new(builder.finish()?, CpuOptions::default())?;
                reply.describe = engine.describe();
                self.engine = Some(engine);
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
            let bytes = message
                .get(2)
                .dyn_into::<js_sys::Uint8Array>()
                .ok()
                .map(|b| b.to_vec());
            let reply = match message.get(1).as_string().map(|j| serde_json::from_str(&j)) {
                Some(Ok(req)) => state.borrow_mut().handle(req, bytes),
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
        });
    scope.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    let _ = scope.post_message(&JsValue::from_str(READY));
}

type Pending = Rc<RefCell<HashMap<u64, oneshot::Sender<Reply>>>>;

/// The page's handle on the engine in the worker.
pub struct WorkerEngine {
    worker: web_sys::Worker,
    config: Config,
    pending: Pending,
    next_id: u64,
    forwards: u64,
    cached: usize,
    description: String,
    _onmessage: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _onerror: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

fn js_error(what: &str, e: JsValue) -> Error {
    Error::Backend(format!(
        "{what}: {}",
        e.as_string().unwrap_or_else(|| format!("{e:?}"))
    ))
}

impl WorkerEngine {
    /// Starts the worker script at `url` (Trunk's loader for the `cpu-worker` binary), waits
    /// until it listens, and hands it the package manifest.
    pub async fn start(url: &str, manifest: &Manifest) -> Result<WorkerEngine> {
        let config = manifest.model_config()?;
        let worker =
            web_sys::Worker::new(url).map_err(|e| js_error("cannot start the CPU worker", e))?;
        let pending: Pending = Rc::default();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let mut ready_tx = Some(ready_tx);
        let replies = Rc::clone(&pending);
        let onmessage = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |event: web_sys::MessageEvent| {
                let data = event.data();
                if data.as_string().as_deref() == Some(READY) {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                    return;
                }
                let message = js_sys::Array::from(&data);
                let id = message.get(0).as_f64().unwrap_or(-1.0) as u64;
                let reply = message
                    .get(1)
                    .as_string()
                    .and_then(|j| serde_json::from_str::<Reply>(&j).ok())
                    .unwrap_or_else(|| Reply {
                        error: Some("malformed reply from the CPU worker".into()),
                        ..Reply::default()
                    });
                if let Some(tx) = replies.borrow_mut().remove(&id) {
                    let _ = tx.send(reply);
                }
            },
        );
        let failed = Rc::clone(&pending);
        let onerror =
            Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
                // Every waiting call fails with the worker's error (dropping a sender cancels
                // its receiver, which `call` reports).
                web_sys::console::error_1(
                    &format!("bd3lm: the CPU worker failed: {}", event.message()).into(),
                );
                failed.borrow_mut().clear();
            });
        worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
        ready_rx
            .await
            .map_err(|_| Error::Backend(format!("the CPU worker at {url} did not start")))?;
        let mut engine = WorkerEngine {
            worker,
            config,
            pending,
            next_id: 0,
            forwards: 0,
            cached: 0,
            description: String::new(),
            _onmessage: onmessage,
            _onerror: onerror,
        };
        let manifest = serde_json::to_string(manifest)
            .map_err(|e| Error::Backend(format!("manifest: {e}")))?;
        engine.call(Request::Load { manifest }, None).await?;
        Ok(engine)
    }

    /// Sends one verified shard (the worker parses it, so the page's thread only copies it).
    pub async fn put_shard(&mut self, file: &str, bytes: &js_sys::Uint8Array) -> Result<()> {
        self.call(
            Request::Shard {
                file: file.to_string(),
            },
            Some(bytes),
        )
        .await
        .map(|_| ())
    }

    /// Builds the engine in the worker from the shards sent.
    pub async fn finish(&mut self) -> Result<()> {
        self.description = self.call(Request::Finish, None).await?.describe;
        Ok(())
    }

    async fn call(&mut self, req: Request, bytes: Option<&js_sys::Uint8Array>) -> Result<Reply> {
        let id = self.next_id;
        self.next_id += 1;
        let json = serde_json::to_string(&req).map_err(|e| Error::Backend(e.to_string()))?;
        let message = js_sys::Array::of2(&JsValue::from_f64(id as f64), &JsValue::from_str(&json));
        if let Some(b) = bytes {
            message.push(b);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        if let Err(e) = self.worker.post_message(&message) {
            self.pending.borrow_mut().remove(&id);
            return Err(js_error("cannot reach the CPU worker", e));
        }
        let reply = rx
            .await
            .map_err(|_| Error::Backend("the CPU worker stopped (see the console)".into()))?;
        match reply.error {
            Some(e) => Err(Error::Backend(format!("CPU worker: {e}"))),
            None => {
                self.cached = reply.cached;
                self.forwards = reply.forwards;
                Ok(reply)
            }
        }
    }
}

impl Drop for WorkerEngine {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

impl Engine for WorkerEngine {
    fn config(&self) -> &Config {
        &self.config
    }

    fn reset(&mut self) {
        // Requests are answered in order, so the reset lands before the next call; its reply
        // is not awaited (this method is synchronous).
        let json = serde_json::to_string(&Request::Reset).unwrap_or_default();
        let id = self.next_id;
        self.next_id += 1;
        let message = js_sys::Array::of2(&JsValue::from_f64(id as f64), &JsValue::from_str(&json));
        let _ = self.worker.post_message(&message);
        self.cached = 0;
    }

    fn cached_tokens(&self) -> usize {
        self.cached
    }

    fn forward_count(&self) -> u64 {
        self.forwards
    }

    async fn commit(&mut self, block: &[u32]) -> Result<()> {
        let block = block.to_vec();
        self.call(Request::Commit { block }, None).await.map(|_| ())
    }

    async fn draw(&mut self, req: &DrawRequest<'_>) -> Result<Vec<RowDraw>> {
        let request = Request::Draw {
            block: req.block.to_vec(),
            row: match req.rows {
                Rows::All => None,
                Rows::One(r) => Some(r),
            },
            nucleus_p: req.nucleus_p,
            seed: req.uniform_seed,
            mask_prob: req.mask_prob,
            reuse: req.reuse,
        };
        let reply = self.call(request, None).await?;
        Ok(reply
            .draws
            .into_iter()
            .map(|(row, token, confidence, entropy)| RowDraw {
                row,
                token,
                confidence,
                entropy,
            })
            .collect())
    }

    fn describe(&self) -> String {
        format!("{} in a Web Worker", self.description)
    }
}
