//! What the denoising canvas shows, derived from the generator's events: the prompt and the
//! committed blocks as flowing text, and the block being denoised as one slot per position,
//! masked until a step reveals it. Kept apart from the view so it can be tested natively.

use bd3lm::tokenizer::{StreamDecoder, Tokenizer};
use bd3lm::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    Prompt,
    /// Text of committed blocks.
    Committed,
    /// What was revealed of the last block when the user pressed Stop.
    Stopped,
}

/// A run of settled text; the view renders it as one text node.
#[derive(Debug, Clone, PartialEq)]
pub struct TextChunk {
    pub id: usize,
    pub text: String,
    pub kind: ChunkKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SlotState {
    Masked,
    /// `fresh`: revealed by the latest step (the view highlights it).
    Revealed {
        text: String,
        confidence: f32,
        fresh: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Absolute position in the sequence.
    pub position: usize,
    /// The id at this position (MASK while masked).
    pub token: u32,
    pub state: SlotState,
}

/// What changed after an event, so the view refreshes only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanvasChange {
    Nothing,
    Slots,
    /// A chunk was appended and the slots were cleared.
    TextAdded,
}

pub struct CanvasModel {
    prompt_len: usize,
    mask: u32,
    decoder: StreamDecoder,
    chunks: Vec<TextChunk>,
    slots: Vec<Slot>,
    /// Generated ids of committed blocks (prompt excluded).
    generated: Vec<u32>,
}

impl CanvasModel {
    /// `prompt_text` is what the user typed; `prompt_len` counts its ids with the BOS.
    pub fn new(prompt_text: &str, prompt_len: usize, mask: u32) -> Self {
        let mut model = CanvasModel {
            prompt_len,
            mask,
            decoder: StreamDecoder::new(),
            chunks: Vec::new(),
            slots: Vec::new(),
            generated: Vec::new(),
        };
        if !prompt_text.is_empty() {
            model.push_chunk(prompt_text.to_string(), ChunkKind::Prompt);
        }
        model
    }

    /// Continues after earlier text (Continue, or a restart after a lost device): the text
    /// already on the canvas stays as it is and new blocks are appended after it.
    pub fn continuing(chunks: Vec<TextChunk>, prompt_len: usize, mask: u32) -> Self {
        CanvasModel {
            prompt_len,
            mask,
            decoder: StreamDecoder::new(),
            chunks,
            slots: Vec::new(),
            generated: Vec::new(),
        }
    }

    pub fn chunks(&self) -> &[TextChunk] {
        &self.chunks
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Generated ids of the committed blocks.
    #[cfg(test)]
    pub fn generated_ids(&self) -> &[u32] {
        &self.generated
    }

    pub fn apply(&mut self, tok: &Tokenizer, event: &Event) -> CanvasChange {
        match event {
            Event::BlockStarted { start, tokens, .. } => {
                self.slots = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (start + i, t))
                    .filter(|&(position, _)| position >= self.prompt_len)
                    .map(|(position, token)| Slot {
                        position,
                        token,
                        state: self.slot_state(tok, token, 1.0, false),
                    })
                    .collect();
                CanvasChange::Slots
            }
            Event::Step { revealed, .. } => {
                for slot in &mut self.slots {
                    if let SlotState::Revealed { fresh, .. } = &mut slot.state {
                        *fresh = false;
                    }
                }
                for reveal in revealed {
                    let Some(first) = self.slots.first().map(|s| s.position) else {
                        continue;
                    };
                    if let Some(slot) = reveal
                        .position
                        .checked_sub(first)
                        .and_then(|i| self.slots.get_mut(i))
                    {
                        slot.token = reveal.token;
                        slot.state = SlotState::Revealed {
                            text: tok.token_text(reveal.token),
                            confidence: reveal.confidence,
                            fresh: true,
                        };
                    }
                }
                CanvasChange::Slots
            }
            Event::BlockCommitted { start, tokens, .. } => {
                let ids: Vec<u32> = tokens
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| start + i >= self.prompt_len)
                    .map(|(_, &t)| t)
                    .collect();
                self.slots.clear();
                self.settle(tok, &ids, ChunkKind::Committed);
                CanvasChange::TextAdded
            }
            Event::Finished { .. } => {
                let rest = self.decoder.finish(tok);
                self.slots.clear();
                if rest.is_empty() {
                    CanvasChange::Slots
                } else {
                    self.push_chunk(rest, ChunkKind::Committed);
                    CanvasChange::TextAdded
                }
            }
            Event::PromptBlockCommitted { .. } => CanvasChange::Nothing,
        }
    }

    /// Stop pressed: what the current block revealed so far becomes text, masks are dropped.
    pub fn stop(&mut self, tok: &Tokenizer) -> CanvasChange {
        let ids: Vec<u32> = self
            .slots
            .iter()
            .map(|s| s.token)
            .filter(|&t| t != self.mask)
            .collect();
        self.slots.clear();
        self.generated.extend(&ids);
        let mut text = self.decoder.push(tok, &ids);
        text.push_str(&self.decoder.finish(tok));
        if text.is_empty() {
            return CanvasChange::Slots;
        }
        self.push_chunk(text, ChunkKind::Stopped);
        CanvasChange::TextAdded
    }

    /// All text on the canvas (what Copy puts on the clipboard): settled text plus revealed
    /// slots, without masks. (The page reads the same from its signals: `CanvasSignals::text`.)
    #[cfg(test)]
    pub fn text(&self) -> String {
        let mut out: String = self.chunks.iter().map(|c| c.text.as_str()).collect();
        for slot in &self.slots {
            if let SlotState::Revealed { text, .. } = &slot.state {
                out.push_str(text);
            }
        }
        out
    }

    fn slot_state(&self, tok: &Tokenizer, token: u32, confidence: f32, fresh: bool) -> SlotState {
        if token == self.mask {
            SlotState::Masked
        } else {
            SlotState::Revealed {
                text: tok.token_text(token),
                confidence,
                fresh,
            }
        }
    }

    fn settle(&mut self, tok: &Tokenizer, ids: &[u32], kind: ChunkKind) {
        self.generated.extend_from_slice(ids);
        let text = self.decoder.push(tok, ids);
        if !text.is_empty() {
            self.push_chunk(text, kind);
        }
    }

    fn push_chunk(&mut self, text: String, kind: ChunkKind) {
        let id = self.chunks.len();
        self.chunks.push(TextChunk { id, text, kind });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bd3lm::{Generator, ReferenceEngine, SamplerKind, SamplingOptions};
    use std::path::PathBuf;

    fn demo_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/bd3lm-sotu-tiny-bs4")
    }

    fn demo() -> (Tokenizer, ReferenceEngine) {
        let dir = demo_dir();
        let config = std::fs::read_to_string(dir.join("config.json")).expect("demo config");
        let weights = bd3lm::checkpoint::load_hf(
            &config,
            &std::fs::read(dir.join("model.safetensors")).expect("demo weights"),
        )
        .expect("demo checkpoint loads");
        let tok = Tokenizer::from_bytes(
            &std::fs::read(dir.join("tokenizer.json")).expect("tokenizer"),
            weights.config.vocab_size,
        )
        .expect("tokenizer loads");
        (tok, ReferenceEngine::new(&weights))
    }

    fn generator(
        tok: &Tokenizer,
        engine: &ReferenceEngine,
        prompt: &str,
        new_tokens: usize,
        sampler: SamplerKind,
    ) -> Generator {
        use bd3lm::Engine;
        let cfg = engine.config();
        let ids = tok.prompt(prompt).expect("prompt encodes");
        let total = ids.len() + new_tokens;
        let opts = SamplingOptions {
            sampler,
            nucleus_p: 0.9,
            seed: 7,
            ..Default::default()
        };
        Generator::new(
            cfg.block_size,
            cfg.model_length,
            cfg.mask_id(),
            tok.eos,
            ids,
            total,
            opts,
        )
        .expect("generator")
    }

    fn masked(model: &CanvasModel) -> usize {
        model
            .slots()
            .iter()
            .filter(|s| s.state == SlotState::Masked)
            .count()
    }

    fn fresh(model: &CanvasModel) -> usize {
        model
            .slots()
            .iter()
            .filter(|s| matches!(s.state, SlotState::Revealed { fresh: true, .. }))
            .count()
    }

    #[test]
    fn masks_are_revealed_one_per_first_hitting_step_then_settle_into_text() {
        let (tok, mut engine) = demo();
        let prompt = "The state of the Union";
        let mut gen = generator(
            &tok,
            &engine,
            prompt,
            24,
            SamplerKind::FirstHitting { max_steps: 4 },
        );
        let mut model = CanvasModel::new(prompt, gen.prompt_len(), tok.mask);
        let (mut blocks_started, mut steps) = (0, 0);
        loop {
            let event = pollster::block_on(gen.next(&mut engine)).expect("step");
            let masked_before = masked(&model);
            let change = model.apply(&tok, &event);
            match &event {
                Event::BlockStarted { start, .. } => {
                    blocks_started += 1;
                    assert_eq!(change, CanvasChange::Slots);
                    assert!(masked(&model) > 0, "a new block shows masked slots");
                    assert!(
                        model.slots().iter().all(|s| s.position >= gen.prompt_len()),
                        "prompt positions get no slot"
                    );
                    assert!(model.slots()[0].position >= *start);
                }
                Event::Step { .. } => {
                    steps += 1;
                    assert_eq!(
                        masked(&model),
                        masked_before - 1,
                        "first hitting reveals exactly one slot"
                    );
                    assert_eq!(fresh(&model), 1, "only this step's reveal is highlighted");
                }
                Event::BlockCommitted { .. } => {
                    assert_eq!(change, CanvasChange::TextAdded);
                    assert!(model.slots().is_empty());
                }
                Event::Finished { .. } => break,
                Event::PromptBlockCommitted { .. } => {}
            }
        }
        assert!(blocks_started >= 6, "24 tokens of block size 4");
        assert_eq!(
            steps,
            model.generated_ids().len(),
            "one model call per generated token"
        );
        assert_eq!(model.chunks()[0].kind, ChunkKind::Prompt);
        let expected = format!("{prompt}{}", tok.decode(model.generated_ids()));
        assert_eq!(
            model.text(),
            expected,
            "settled text is the prompt plus the decoded generation"
        );
    }

    #[test]
    fn stop_keeps_what_was_revealed_and_drops_masks() {
        let (tok, mut engine) = demo();
        let mut gen = generator(&tok, &engine, "", 64, SamplerKind::Posterior { steps: 8 });
        let mut model = CanvasModel::new("", gen.prompt_len(), tok.mask);
        assert!(model.chunks().is_empty(), "an empty prompt adds no chunk");
        // Run until a block is partly revealed.
        let mut partly_revealed = false;
        for _ in 0..200 {
            let event = pollster::block_on(gen.next(&mut engine)).expect("step");
            model.apply(&tok, &event);
            let revealed = model.slots().len() - masked(&model);
            if masked(&model) > 0 && revealed > 0 && !model.generated_ids().is_empty() {
                partly_revealed = true;
                break;
            }
        }
        assert!(
            partly_revealed,
            "posterior steps leave some slots masked for a while"
        );
        let revealed_ids: Vec<u32> = model
            .slots()
            .iter()
            .map(|s| s.token)
            .filter(|&t| t != tok.mask)
            .collect();
        let committed = model.generated_ids().to_vec();
        let settled_before: String = model.chunks().iter().map(|c| c.text.as_str()).collect();
        assert_eq!(model.stop(&tok), CanvasChange::TextAdded);
        assert!(model.slots().is_empty());
        assert_eq!(
            model.chunks().last().map(|c| c.kind),
            Some(ChunkKind::Stopped)
        );
        let all: Vec<u32> = committed.iter().chain(&revealed_ids).copied().collect();
        assert_eq!(model.generated_ids(), &all[..]);
        assert_eq!(model.text(), tok.decode(&all));
        assert!(
            model.text().starts_with(&settled_before),
            "settled text is never rewritten"
        );
    }
}
