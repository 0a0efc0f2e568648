//! The generation loop. It runs on the main thread and gives the browser a turn between any
//! two `Generator::next` calls (each call is one bounded piece of work: one denoising step or
//! one commit pass), so input, Stop and repaints are never more than one step away. On WebGPU a
//! first-hitting block runs as one GPU submission during its first step's call (the page only
//! awaits the GPU meanwhile); its other steps come back as records, and each is still shown
//! at the chosen pace.

use crate::browser::{self, now_ms, yield_to_browser};
use crate::canvas_model::{CanvasChange, CanvasModel, Slot, TextChunk};
use crate::loader::PackageInfo;
use crate::page_engine::FaultInjection;
use crate::page_error::PageError;
use crate::stats::{BusyClock, GenerationStats, StepTimes};
use bd3lm::tokenizer::Tokenizer;
use bd3lm::{Engine, Event, FinishReason, Generator, SamplingOptions};
use bd3lm_gpu::AnyEngine;
use leptos::prelude::*;
use std::cell::Cell;

/// Steps longer than this are logged to the console. On the CPU engine a step blocks the
/// page for its whole length, so the page aims to stay under it; on WebGPU the page only
/// waits for the GPU and stays responsive.
const SLOW_STEP_MS: f64 = 100.0;

/// A model ready to generate.
pub struct LoadedModel {
    pub engine: AnyEngine,
    /// The test hook `?fault=device-lost-after-N`, checked before each piece of work.
    pub faults: FaultInjection,
    pub tokenizer: Tokenizer,
    pub info: PackageInfo,
}

/// The signals the canvas view reads.
#[derive(Clone, Copy)]
pub struct CanvasSignals {
    pub chunks: RwSignal<Vec<TextChunk>>,
    pub slots: RwSignal<Vec<Slot>>,
}

impl CanvasSignals {
    pub fn new() -> Self {
        CanvasSignals {
            chunks: RwSignal::new(Vec::new()),
            slots: RwSignal::new(Vec::new()),
        }
    }

    /// All text on the canvas, masks left out (what Copy copies).
    pub fn text(&self) -> String {
        let mut out: String = self
            .chunks
            .with_untracked(|c| c.iter().map(|c| c.text.clone()).collect());
        self.slots.with_untracked(|slots| {
            for slot in slots {
                if let crate::canvas_model::SlotState::Revealed { text, .. } = &slot.state {
                    out.push_str(text);
                }
            }
        });
        out
    }
}

pub struct RunSettings {
    pub prompt_text: String,
    /// Continue after the text already on the canvas instead of starting from the prompt.
    pub continue_text: bool,
    pub new_tokens: usize,
    pub sampling: SamplingOptions,
    /// Deliberate pause after each denoising step, so a person can follow the reveals.
    pub pace_ms: i32,
}

#[derive(Debug)]
pub enum RunEnd {
    Finished(FinishReason),
    Stopped,
    Failed(PageError),
}

/// Keeps the signals in step with the canvas model, appending only new chunks.
struct Publisher {
    canvas: CanvasSignals,
    published_chunks: usize,
}

impl Publisher {
    fn publish(&mut self, model: &CanvasModel, change: CanvasChange) {
        if change == CanvasChange::Nothing {
            return;
        }
        let chunks = model.chunks();
        if chunks.len() > self.published_chunks {
            let new: Vec<TextChunk> = chunks[self.published_chunks..].to_vec();
            self.published_chunks = chunks.len();
            self.canvas.chunks.update(|c| c.extend(new));
        }
        self.canvas.slots.set(model.slots().to_vec());
    }
}

/// Prompt ids for a run: the prompt, or the whole canvas text when continuing (keeping the
/// BOS and the most recent ids that fit the model's context).
fn prompt_ids(
    tok: &Tokenizer,
    text: &str,
    keep_tail: Option<usize>,
) -> Result<Vec<u32>, PageError> {
    let ids = tok.prompt(text).map_err(PageError::Input)?;
    Ok(match keep_tail {
        Some(max) if ids.len() > max => {
            let mut kept = vec![ids[0]];
            kept.extend_from_slice(&ids[ids.len() - (max - 1)..]);
            kept
        }
        _ => ids,
    })
}

pub async fn generate(
    model: &mut LoadedModel,
    settings: RunSettings,
    canvas: CanvasSignals,
    stats: RwSignal<GenerationStats>,
    stop: &Cell<bool>,
) -> RunEnd {
    let cfg = model.engine.config().clone();
    let tok = &model.tokenizer;
    let (ids, canvas_model) = if settings.continue_text {
        let chunks = canvas.chunks.get_untracked();
        let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
        match prompt_ids(tok, &text, Some(cfg.model_length - 1)) {
            Ok(ids) => {
                let len = ids.len();
                (ids, CanvasModel::continuing(chunks, len, cfg.mask_id()))
            }
            Err(e) => return RunEnd::Failed(e),
        }
    } else {
        match prompt_ids(tok, &settings.prompt_text, None) {
            Ok(ids) => {
                let len = ids.len();
                (
                    ids,
                    CanvasModel::new(&settings.prompt_text, len, cfg.mask_id()),
                )
            }
            Err(e) => return RunEnd::Failed(e),
        }
    };
    let total_len = ids.len() + settings.new_tokens;
    let generator = match Generator::new(
        cfg.block_size,
        cfg.model_length,
        cfg.mask_id(),
        tok.eos,
        ids,
        total_len,
        settings.sampling,
    ) {
        Ok(g) => g,
        Err(e) => return RunEnd::Failed(PageError::Input(e)),
    };
    let mut publisher = Publisher {
        canvas,
        published_chunks: 0,
    };
    if settings.continue_text {
        publisher.published_chunks = canvas_model.chunks().len();
    } else {
        canvas.chunks.set(Vec::new());
    }
    publisher.publish(&canvas_model, CanvasChange::Slots);
    stats.set(GenerationStats::default());
    let mut run = Run {
        generator,
        canvas: canvas_model,
        publisher,
        stats_signal: stats,
        stats: GenerationStats::default(),
        step_times: StepTimes::default(),
        pace_ms: settings.pace_ms,
    };
    let end = run.drive(model, stop).await;
    browser::log(&format!("bd3lm: {}", run.step_times.summary(SLOW_STEP_MS)));
    end
}

/// One generation in progress.
struct Run {
    generator: Generator,
    canvas: CanvasModel,
    publisher: Publisher,
    stats_signal: RwSignal<GenerationStats>,
    stats: GenerationStats,
    step_times: StepTimes,
    pace_ms: i32,
}

impl Run {
    /// Steps the generator until it finishes, fails or is stopped.
    async fn drive(&mut self, model: &mut LoadedModel, stop: &Cell<bool>) -> RunEnd {
        let tok = &model.tokenizer;
        let clock = &mut BusyClock::start(now_ms());
        let forwards_before = model.engine.forward_count();
        loop {
            if stop.get() {
                let change = self.canvas.stop(tok);
                self.publisher.publish(&self.canvas, change);
                return RunEnd::Stopped;
            }
            let step_started = now_ms();
            let event = match model.faults.check(model.engine.forward_count()) {
                Ok(()) => self.generator.next(&mut model.engine).await,
                Err(e) => Err(e),
            };
            let step_ms = now_ms() - step_started;
            self.step_times.push(step_ms);
            self.stats.longest_step_ms = self.stats.longest_step_ms.max(step_ms);
            if step_ms > SLOW_STEP_MS {
                browser::log(&format!("bd3lm: a step took {step_ms:.0} ms"));
            }
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    // Keep what is on the canvas: revealed tokens become text.
                    let change = self.canvas.stop(tok);
                    self.publisher.publish(&self.canvas, change);
                    return RunEnd::Failed(PageError::from_engine(e));
                }
            };
            let change = self.canvas.apply(tok, &event);
            self.publisher.publish(&self.canvas, change);
            self.stats.forwards = model.engine.forward_count() - forwards_before;
            self.stats.busy_ms = clock.busy_ms(now_ms());
            let mut pause = 0;
            match &event {
                Event::Step { revealed, .. } => {
                    self.stats.steps += 1;
                    self.stats.tokens += revealed.len() as u64;
                    self.stats.max_revealed_per_step =
                        self.stats.max_revealed_per_step.max(revealed.len() as u64);
                    pause = self.pace_ms;
                }
                Event::BlockCommitted { .. } if self.stats.first_block_ms.is_none() => {
                    self.stats.first_block_ms = Some(self.stats.busy_ms);
                }
                Event::Finished { reason } => {
                    self.stats_signal.set(self.stats.clone());
                    return RunEnd::Finished(*reason);
                }
                _ => {}
            }
            self.stats_signal.set(self.stats.clone());
            yield_to_browser(pause).await;
            clock.add_pause(pause as f64);
        }
    }
}
