//! Measures what loading a tokenizer.json allocates (peak live heap) against the fuzzing
//! bound, for the real tokenizers and for synthetic ones of growing size, and the same for a
//! manifest whose free-form `source` field is large (docs/reliability.md).
//! `cargo run --release -p bd3lm-fuzz --example tokenizer_alloc`

use bd3lm_fuzz::alloc::{measure, CountingAlloc};
use bd3lm_fuzz::allocation_bound;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn report(name: &str, json: &[u8]) {
    report_with(name, json, tokenizers_load);
}

fn report_with(name: &str, json: &[u8], load: fn(&[u8]) -> String) {
    let (result, m) = measure(usize::MAX / 2, || load(json));
    println!(
        "{name:<34} {:>10} bytes  peak {:>11} bytes  peak/input {:>6.2}  peak/bound {:>5.2}  {}",
        json.len(),
        m.peak_bytes,
        m.peak_bytes as f64 / json.len() as f64,
        m.peak_bytes as f64 / allocation_bound(json.len()) as f64,
        result
    );
}

fn tokenizers_load(json: &[u8]) -> String {
    match bd3lm::tokenizer::Tokenizer::from_bytes(json, 3) {
        Ok(_) => "loaded".into(),
        Err(bd3lm::Error::TokenizerVocab { found, .. }) => format!("{found} tokens"),
        Err(e) => format!("error: {e}"),
    }
}

fn manifest_load(json: &[u8]) -> String {
    match bd3lm::package::Manifest::parse(std::str::from_utf8(json).unwrap_or("")) {
        Ok(_) => "parsed".into(),
        Err(e) => format!("error: {e}"),
    }
}

fn synthetic(model: &str, n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..n).map(|i| format!("{i:x}")).collect();
    let body = match model {
        "BPE" => {
            let vocab: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, s)| format!("\"{s}\":{}", i + 1))
                .collect();
            format!(
                r#"{{"type":"BPE","vocab":{{"<|endoftext|>":0,{}}},"merges":[]}}"#,
                vocab.join(",")
            )
        }
        "WordLevel" => {
            let vocab: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, s)| format!("\"{s}\":{}", i + 1))
                .collect();
            format!(
                r#"{{"type":"WordLevel","vocab":{{"<|endoftext|>":0,{}}},"unk_token":"<|endoftext|>"}}"#,
                vocab.join(",")
            )
        }
        _ => {
            let vocab: Vec<String> = names.iter().map(|s| format!("[\"{s}\",-1.0]")).collect();
            format!(
                r#"{{"type":"Unigram","unk_id":0,"vocab":[["<|endoftext|>",0.0],{}]}}"#,
                vocab.join(",")
            )
        }
    };
    format!(r#"{{"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{body}}}"#).into_bytes()
}

fn main() {
    let root = bd3lm_fuzz::repo_root();
    for p in [
        "models/tokenizers/gpt2/tokenizer.json",
        "models/bd3lm-sotu-tiny-bs4/tokenizer.json",
    ] {
        report(p, &std::fs::read(root.join(p)).expect(p));
    }
    for seed in ["demo-bpe-cut.json", "wordlevel.json", "unigram.json"] {
        report(
            seed,
            &std::fs::read(bd3lm_fuzz::seeds_dir("tokenizer_json").join(seed)).expect(seed),
        );
    }
    let manifest = std::fs::read(bd3lm_fuzz::seeds_dir("package_manifest").join("f32.json"))
        .expect("manifest seed");
    let mut value: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    report_with("manifest (f32 seed)", &manifest, manifest_load);
    for n in [1_000, 100_000] {
        value["source"] = (0..n).collect::<Vec<u32>>().into();
        let bytes = serde_json::to_vec(&value).expect("json");
        report_with(
            &format!("manifest, source of {n} numbers"),
            &bytes,
            manifest_load,
        );
    }
    for model in ["BPE", "WordLevel", "Unigram"] {
        for n in [0, 1_000, 100_000] {
            report(
                &format!("synthetic {model} {n} tokens"),
                &synthetic(model, n),
            );
        }
    }
}
