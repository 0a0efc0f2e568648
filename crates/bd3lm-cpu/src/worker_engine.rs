//! The page's side of the CPU engine in Web Workers ([`crate::worker`]): [`WorkerEngine`]
//! implements `bd3lm::Engine` by posting requests and awaiting the replies, so the generator
//! and the page do not know the engine is elsewhere. With several workers (a cross-origin
//! isolated page), every worker gets the manifest, its part and the shared buffer, then every
//! shard; engine calls go to worker 0, which drives the others ([`crate::worker_split`]).

use crate::split::max_parts;
use crate::worker::{Reply, Request, READY};
use crate::worker_split::{self, MAX_WORKERS};
use bd3lm::engine::{DrawRequest, Engine, EngineProbes, RowDraw, Rows};
use bd3lm::forward::Activations;
use bd3lm::package::Manifest;
use bd3lm::{Config, Error, Result};
use futures_channel::oneshot;
use js_sys::SharedArrayBuffer;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

type Pending = Rc<RefCell<HashMap<u64, oneshot::Sender<Reply>>>>;

/// One worker with its handlers (kept alive as long as it runs).
struct Started {
    worker: web_sys::Worker,
    _onmessage: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _onerror: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

/// The page's handle on the engine in its worker(s).
pub struct WorkerEngine {
    /// Worker 0 runs the engine; the others hold the rest of each matrix.
    workers: Vec<web_sys::Worker>,
    _handlers: Vec<Started>,
    config: Config,
    pending: Pending,
    next_id: u64,
    forwards: u64,
    cached: usize,
    description: String,
}

fn js_value(v: &JsValue) -> &JsValue {
    v
}

fn js_error(what: &str, e: JsValue) -> Error {
    Error::Backend(format!(
        "{what}: {}",
        e.as_string().unwrap_or_else(|| format!("{e:?}"))
    ))
}

/// Whether this page can run several workers on one engine: a `SharedArrayBuffer` is only
/// offered to cross-origin isolated pages (COOP + COEP headers, docs/web.md).
pub fn can_split() -> bool {
    let global = js_sys::global();
    let isolated = js_sys::Reflect::get(&global, &"crossOriginIsolated".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let shared = js_sys::Reflect::get(&global, &"SharedArrayBuffer".into())
        .map(|v| v.is_function())
        .unwrap_or(false);
    isolated && shared
}

/// Most workers one engine uses: the control words' room, and the model's narrowest matrix.
pub fn max_workers(config: &Config) -> usize {
    MAX_WORKERS.min(max_parts(config))
}

/// Starts one worker and waits until it listens. Its replies resolve `pending`; if it dies,
/// every waiting call fails and, with a shared buffer, the other workers stop waiting.
async fn start_worker(
    url: &str,
    pending: &Pending,
    shared: Option<SharedArrayBuffer>,
) -> Result<Started> {
    let worker =
        web_sys::Worker::new(url).map_err(|e| js_error("cannot start the CPU worker", e))?;
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let mut ready_tx = Some(ready_tx);
    let replies = Rc::clone(pending);
    let onmessage =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
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
        });
    let failed = Rc::clone(pending);
    let onerror =
        Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
            // Every waiting call fails with the worker's error (dropping a sender cancels
            // its receiver, which `call` reports); workers waiting on this one give up.
            web_sys::console::error_1(
                &format!("bd3lm: a CPU worker failed: {}", event.message()).into(),
            );
            failed.borrow_mut().clear();
            if let Some(buffer) = &shared {
                worker_split::abort(buffer);
            }
        });
    worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
    ready_rx
        .await
        .map_err(|_| Error::Backend(format!("the CPU worker at {url} did not start")))?;
    Ok(Started {
        worker,
        _onmessage: onmessage,
        _onerror: onerror,
    })
}

impl WorkerEngine {
    /// Starts `workers` copies of the worker script at `url` (Trunk's loader for the
    /// `cpu-worker` binary; at most [`max_workers`], and one unless [`can_split`]), waits
    /// until they listen, and hands each the package manifest and its part.
    pub async fn start(url: &str, manifest: &Manifest, workers: usize) -> Result<WorkerEngine> {
        let config = manifest.model_config()?;
        let parts = if can_split() {
            workers.clamp(1, max_workers(&config))
        } else {
            1
        };
        let shared =
            (parts > 1).then(|| SharedArrayBuffer::new(worker_split::shared_bytes(&config)));
        let pending: Pending = Rc::default();
        let mut handlers = Vec::with_capacity(parts);
        for _ in 0..parts {
            handlers.push(start_worker(url, &pending, shared.clone()).await?);
        }
        let mut engine = WorkerEngine {
            workers: handlers.iter().map(|s| s.worker.clone()).collect(),
            _handlers: handlers,
            config,
            pending,
            next_id: 0,
            forwards: 0,
            cached: 0,
            description: String::new(),
        };
        let manifest = serde_json::to_string(manifest)
            .map_err(|e| Error::Backend(format!("manifest: {e}")))?;
        let mut waiting = Vec::with_capacity(parts);
        for part in 0..parts {
            let load = Request::Load {
                manifest: manifest.clone(),
                part,
                parts,
            };
            waiting.push(engine.post(part, &load, shared.as_ref().map(|b| js_value(b)))?);
        }
        engine.await_all(waiting).await?;
        Ok(engine)
    }

    /// How many workers run the engine.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Sends one verified shard to every worker (each parses it and keeps its part, so the
    /// page's thread only copies it).
    pub async fn put_shard(&mut self, file: &str, bytes: &js_sys::Uint8Array) -> Result<()> {
        let req = Request::Shard {
            file: file.to_string(),
        };
        let mut waiting = Vec::with_capacity(self.workers.len());
        for w in 0..self.workers.len() {
            waiting.push(self.post(w, &req, Some(js_value(bytes)))?);
        }
        self.await_all(waiting).await
    }

    /// Builds the engine from the shards sent: the other workers' slices first (they then
    /// serve worker 0), then worker 0's engine.
    pub async fn finish(&mut self) -> Result<()> {
        let mut waiting = Vec::with_capacity(self.workers.len());
        for w in 1..self.workers.len() {
            waiting.push(self.post(w, &Request::Finish, None)?);
        }
        let mut memory = Vec::with_capacity(self.workers.len());
        for rx in waiting {
            memory.push(self.reply(rx, false).await?.memory);
        }
        let leader = self.call_leader(Request::Finish).await?;
        memory.insert(0, leader.memory);
        self.description = leader.describe;
        let mb: Vec<String> = memory.iter().map(|m| format!("{:.0}", m / 1e6)).collect();
        web_sys::console::log_1(
            &format!(
                "bd3lm: CPU engine on {} worker(s); their wasm memory after loading: {} MB",
                self.workers.len(),
                mb.join(" + ")
            )
            .into(),
        );
        Ok(())
    }

    /// Posts `req` (with `extra` as the message's third element) to worker `w`.
    fn post(
        &mut self,
        w: usize,
        req: &Request,
        extra: Option<&JsValue>,
    ) -> Result<oneshot::Receiver<Reply>> {
        let id = self.next_id;
        self.next_id += 1;
        let json = serde_json::to_string(req).map_err(|e| Error::Backend(e.to_string()))?;
        let message = js_sys::Array::of2(&JsValue::from_f64(id as f64), &JsValue::from_str(&json));
        if let Some(x) = extra {
            message.push(x);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        if let Err(e) = self.workers[w].post_message(&message) {
            self.pending.borrow_mut().remove(&id);
            return Err(js_error("cannot reach the CPU worker", e));
        }
        Ok(rx)
    }

    async fn reply(&mut self, rx: oneshot::Receiver<Reply>, leader: bool) -> Result<Reply> {
        let reply = rx
            .await
            .map_err(|_| Error::Backend("the CPU worker stopped (see the console)".into()))?;
        match reply.error {
            Some(e) => Err(Error::Backend(format!("CPU worker: {e}"))),
            None => {
                if leader {
                    self.cached = reply.cached;
                    self.forwards = reply.forwards;
                }
                Ok(reply)
            }
        }
    }

    async fn await_all(&mut self, waiting: Vec<oneshot::Receiver<Reply>>) -> Result<()> {
        for rx in waiting {
            self.reply(rx, false).await?;
        }
        Ok(())
    }

    async fn call_leader(&mut self, req: Request) -> Result<Reply> {
        let rx = self.post(0, &req, None)?;
        self.reply(rx, true).await
    }
}

impl Drop for WorkerEngine {
    fn drop(&mut self) {
        for w in &self.workers {
            w.terminate();
        }
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
        let _ = self.workers[0].post_message(&message);
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
        self.call_leader(Request::Commit { block })
            .await
            .map(|_| ())
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
        let reply = self.call_leader(request).await?;
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
        match self.workers.len() {
            1 => format!("{} in a Web Worker", self.description),
            n => format!(
                "{} on {n} Web Workers (each matrix split across them)",
                self.description
            ),
        }
    }
}

/// The check hooks: raw logits and the sampler's probes (no activations from a worker).
impl EngineProbes for WorkerEngine {
    async fn logits(&mut self, block: &[u32]) -> Result<Vec<f32>> {
        let block = block.to_vec();
        Ok(self.call_leader(Request::Logits { block }).await?.logits)
    }

    async fn activations(&mut self, _block: &[u32]) -> Result<Activations> {
        Err(Error::Backend(
            "activations are not available from the CPU worker".into(),
        ))
    }

    async fn nucleus_probe(&mut self, log_probs: &[f32], p: f64) -> Result<Vec<(usize, f64)>> {
        Ok(bd3lm::engine::cpu_nucleus_probe(
            log_probs,
            self.config.vocab_size,
            p,
        ))
    }

    async fn race_probe(&mut self, probs: &[f64], seed: u64) -> Result<Vec<u32>> {
        Ok(bd3lm::engine::cpu_race_probe(
            probs,
            self.config.vocab_size,
            seed,
        ))
    }
}
