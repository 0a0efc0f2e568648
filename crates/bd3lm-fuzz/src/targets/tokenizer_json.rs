//! `Tokenizer::from_bytes` on a `tokenizer.json` (a package's or a user's), then what
//! generation does with it: encode a prompt, decode ids, stream text.

use bd3lm::tokenizer::{StreamDecoder, Tokenizer};
use bd3lm::Error;

/// GPT-2's 50257 tokens + MASK: what the released models expect.
const GPT2_VOCAB: usize = 50258;

pub fn run(data: &[u8]) {
    let tok = match Tokenizer::from_bytes(data, GPT2_VOCAB) {
        Ok(tok) => tok,
        // A well-formed tokenizer of another size: load it for a model of that size.
        Err(Error::TokenizerVocab { found, .. }) => {
            match Tokenizer::from_bytes(data, found.saturating_add(1)) {
                Ok(tok) => tok,
                Err(_) => return,
            }
        }
        Err(_) => return,
    };
    let Ok(ids) = tok.prompt("Hello, world! <|endoftext|> ünïcödé 🙂 1234 \n\t  x") else {
        return;
    };
    assert_eq!(ids.first(), Some(&tok.eos));
    let _ = tok.decode(&ids);
    let mut stream = StreamDecoder::new();
    let mut streamed = String::new();
    for id in ids.iter().chain(&[tok.mask, 0, u32::MAX]) {
        streamed.push_str(&stream.push(&tok, &[*id]));
        let _ = tok.token_text(*id);
    }
    streamed.push_str(&stream.finish(&tok));
}

/// The tokenizers crate holds 13 to 31 times a `tokenizer.json`'s size while loading it
/// (GPT-2's 1.5 MB file peaks at 19.2 MB; a Unigram model adds a fixed ~0.8 MB cache; see
/// `examples/tokenizer_alloc.rs` and docs/reliability.md), so the general 2 x input + 1 MiB
/// cannot hold. This bound still catches what it is for: an allocation sized by a number
/// the file claims rather than by the bytes it has. `MAX_TOKENIZER_JSON_BYTES` caps the input.
pub fn bound(len: usize) -> usize {
    len.saturating_mul(64).saturating_add(4 << 20)
}
