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

/// The largest `tokenizer.json` accepted (GPT-2's is 1.5 MB; the biggest common ones are under
/// 20 MB). The tokenizers crate holds about 13 to 30 times a file's size while loading it
/// (measured in docs/reliability.md), so this also caps what loading one can allocate.
pub const MAX_TOKENIZER_JSON_BYTES: usize = 32 << 20;

/// Just enough of a `tokenizer.json` to refuse, before the tokenizers crate sees it, what
/// that crate panics on instead of returning an error (found by fuzzing, docs/reliability.md).
#[derive(serde::Deserialize)]
struct Preflight {
    #[serde(default)]
    normalizer: Option<Component>,
    #[serde(default)]
    decoder: Option<Component>,
}

/// A normalizer or decoder, and those nested in a `Sequence`.
#[derive(serde::Deserialize)]
struct Component {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    normalizers: Vec<Component>,
    #[serde(default)]
    decoders: Vec<Component>,
    /// `Strip` decoder: characters to cut from the end of each token.
    #[serde(default)]
    stop: Option<u64>,
    /// `Precompiled` normalizer's charsmap.
    #[serde(default)]
    precompiled_charsmap: Option<serde::de::IgnoredAny>,
}

impl Component {
    fn any(&self, test: &dyn Fn(&Component) -> bool) -> bool {
        test(self)
            || self
                .normalizers
                .iter()
                .chain(&self.decoders)
                .any(|c| c.any(test))
    }

    fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
}

/// Any JSON value read in full, every string decoded and checked, then dropped: a strict
/// syntax check that allocates nothing (serde's `IgnoredAny` skips strings unchecked).
struct StrictJson;

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictJson)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictJson {
    type Value = StrictJson;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_unit<E>(self) -> std::result::Result<Self, E> {
        Ok(StrictJson)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self, A::Error> {
        while seq.next_element::<StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self, A::Error> {
        while map.next_key::<StrictJson>()?.is_some() {
            map.next_value::<StrictJson>()?;
        }
        Ok(StrictJson)
    }
}

/// Checks size and JSON syntax first (tokenizers 0.23 panics on a syntax error inside
/// `decoder`), then refuses the components it panics on: `Precompiled` normalizers (a corrupt
/// charsmap; they belong to SentencePiece models, never to a BD3-LM's GPT-2 tokenizer) and
/// `Strip` decoders with `stop > 0` (a token shorter than `stop` underflows an index). Both
/// are matched by their fields too: the crate reads an untagged or misnamed component by shape.
fn preflight(json: &[u8]) -> Result<()> {
    if json.len() > MAX_TOKENIZER_JSON_BYTES {
        return Err(Error::Tokenizer(format!(
            "tokenizer.json is {} bytes; the largest accepted is {MAX_TOKENIZER_JSON_BYTES}",
            json.len()
        )));
    }
    let syntax =
        |e: serde_json::Error| Error::Tokenizer(format!("cannot parse tokenizer.json: {e}"));
    serde_json::from_slice::<StrictJson>(json).map_err(syntax)?;
    let shape: Preflight = serde_json::from_slice(json).map_err(syntax)?;
    let normalizer =
        |test: &dyn Fn(&Component) -> bool| shape.normalizer.as_ref().is_some_and(|c| c.any(test));
    let decoder =
        |test: &dyn Fn(&Component) -> bool| shape.decoder.as_ref().is_some_and(|c| c.any(test));
    if normalizer(&|c| c.is("Precompiled") || c.precompiled_charsmap.is_some()) {
        return Err(Error::Tokenizer(
            "tokenizer.json uses a `Precompiled` (SentencePiece) normalizer, which bd3lm does not support"
                .into(),
        ));
    }
    if decoder(&|c| c.stop.is_some_and(|n| n > 0)) {
        return Err(Error::Tokenizer(
            "tokenizer.json uses a `Strip` decoder with `stop` > 0, which bd3lm does not support (tokenizers 0.23 fails on tokens shorter than `stop`)"
                .into(),
        ));
    }
    Ok(())
}

impl Tokenizer {
    /// Loads a `tokenizer.json` for a model of `vocab_size` entries.
    pub fn from_bytes(json: &[u8], vocab_size: usize) -> Result<Tokenizer> {
        preflight(json)?;
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
