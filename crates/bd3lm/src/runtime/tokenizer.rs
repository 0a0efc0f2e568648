//! Text <-> ids through the `tokenizers` crate, with BD3-LM's special ids (spec §2): MASK is
//! `vocab_size - 1` (never a tokenizer token); BOS = EOS is the tokenizer's `<|endoftext|>`.

use crate::error::{Error, Result};

pub const ENDOFTEXT: &str = "<|endoftext|>";

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// BOS = EOS id (`<|endoftext|>`).
    pub eos: u32,
    /// MASK id (`vocab_size - 1` of the model).
    pub mask: u32,
}

impl Tokenizer {
    /// Loads a `tokenizer.json` for a model of `vocab_size` entries.
    pub fn from_bytes(json: &[u8], vocab_size: usize) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| Error::Tokenizer(format!("cannot parse tokenizer.json: {e}")))?;
        let eos = inner.token_to_id(ENDOFTEXT).ok_or_else(|| {
            Error::Tokenizer(format!(
                "tokenizer.json has no `{ENDOFTEXT}` token (needed as BOS/EOS)"
            ))
        })?;
        let size = inner.get_vocab_size(true);
        if size.checked_add(1) != Some(vocab_size) {
            return Err(Error::TokenizerVocab {
                found: size,
                expected: vocab_size.saturating_sub(1),
            });
        }
        Ok(Tokenizer {
            inner,
            eos,
            mask: (vocab_size - 1) as u32,
        })
    }

    /// Ids of `text` without BOS/EOS (a literal `<|endoftext|>` becomes the special id).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `[BOS] + encode(prompt)`: the start of every sample (spec §9.7).
    pub fn prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.eos];
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// Decodes ids; MASK ids are skipped, `<|endoftext|>` stays visible.
    pub fn decode(&self, ids: &[u32]) -> String {
        let ids: Vec<u32> = ids.iter().copied().filter(|&t| t != self.mask).collect();
        self.inner.decode(&ids, false).unwrap_or_default()
    }

    /// The text of a single token (may be a partial UTF-8 sequence shown as U+FFFD).
    pub fn token_text(&self, id: u32) -> String {
        if id == self.mask {
            return String::new();
        }
        self.inner.decode(&[id], false).unwrap_or_default()
    }
}

/// Turns a growing id sequence into text deltas that never split a multi-byte character:
/// text is held back while the decoded tail ends in an incomplete UTF-8 sequence (U+FFFD).
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    /// Index of the first id whose text has not been emitted.
    start: usize,
}

impl StreamDecoder {
    /// A character is at most 4 bytes, so a tail still ending in U+FFFD after this many ids is
    /// a real replacement character in the text.
    const MAX_PENDING: usize = 8;

    pub fn new() -> Self {
        Self::default()
    }

    /// Appends ids and returns the newly complete text.
    pub fn push(&mut self, tok: &Tokenizer, ids: &[u32]) -> String {
        self.ids.extend_from_slice(ids);
        let text = tok.decode(&self.ids[self.start..]);
        if text.ends_with('\u{FFFD}') && self.ids.len() - self.start < Self::MAX_PENDING {
            return String::new();
        }
        self.start = self.ids.len();
        text
    }

    /// Whatever is left (an incomplete character is emitted as U+FFFD).
    pub fn finish(&mut self, tok: &Tokenizer) -> String {
        let text = tok.decode(&self.ids[self.start..]);
        self.start = self.ids.len();
        text
    }
}
