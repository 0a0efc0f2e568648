//! Writes the committed seed corpora, `fuzz/seeds/<target>/`: small inputs cut from the real
//! files in `tests/fixtures/` and `models/`, and tiny models made here (every tensor of a real
//! checkpoint, a few KB). Run from anywhere: `cargo run -p bd3lm-fuzz --example make_seeds`.
//! Deterministic: running it again rewrites the same bytes.

use bd3lm::checkpoint::{hf_tensor_specs, load_hf};
use bd3lm::package::{self, SchemePlan, SpecialTokens};
use bd3lm::quant::Scheme;
use bd3lm::Config;
use bd3lm_fuzz::input::join;
use bd3lm_fuzz::targets::hf_checkpoint::tiny_config;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};

fn main() {
    let root = bd3lm_fuzz::repo_root();
    let seeds = root.join("fuzz/seeds");
    let _ = std::fs::remove_dir_all(&seeds);
    let read = |p: &str| std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = seeds.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };

    // Real files: configs whole, safetensors files as their header (the data is opaque).
    let fixtures = ["tiny-v512-bs4", "tiny-v512-bs16", "gpt2vocab-bs8"];
    for case in fixtures {
        let dir = format!("tests/fixtures/{case}");
        put(
            "config_json",
            &format!("{case}.json"),
            &read(&format!("{dir}/config.json")),
        );
        for file in ["model", "golden"] {
            let bytes = read(&format!("{dir}/{file}.safetensors"));
            put(
                "safetensors_header",
                &format!("{case}-{file}"),
                &header_seed(&bytes),
            );
        }
    }
    let demo = "models/bd3lm-sotu-tiny-bs4";
    put(
        "config_json",
        "demo.json",
        &read(&format!("{demo}/config.json")),
    );
    put(
        "safetensors_header",
        "demo-model",
        &header_seed(&read(&format!("{demo}/model.safetensors"))),
    );
    let q8 = "models/sotu-tiny-bs4-q8";
    let demo_manifest = read(&format!("{q8}/manifest.json"));
    put("package_manifest", "demo-q8.json", &demo_manifest);
    put(
        "safetensors_header",
        "demo-q8-shard",
        &header_seed(&read(&format!("{q8}/weights-00000.safetensors"))),
    );
    put(
        "config_json",
        "defaults.json",
        br#"{"model_type":"bd3lm","block_size":4,"cond_dim":128}"#,
    );
    put(
        "config_json",
        "nulls.json",
        br#"{"vocab_size":null,"torch_dtype":"float32","dropout":0.0,"attn_backend":"sdpa"}"#,
    );

    // Tiny HF checkpoints.
    let tiny = tiny_config();
    let model = checkpoint_bytes(&tiny);
    let config_json = tiny.to_json().to_string();
    put("config_json", "tiny.json", config_json.as_bytes());
    put(
        "hf_checkpoint",
        "tiny",
        &join(config_json.as_bytes(), &model),
    );
    put(
        "safetensors_header",
        "tiny-whole",
        &[&(model.len() as u64).to_le_bytes()[..], &model].concat(),
    );
    let wide = Config {
        hidden_dim: 32,
        n_heads: 2,
        ..tiny.clone()
    };
    let wide_model = checkpoint_bytes(&wide);
    let wide_json = wide.to_json().to_string();
    put(
        "hf_checkpoint",
        "wide",
        &join(wide_json.as_bytes(), &wide_model),
    );

    // Hub answers, shaped as the Hub (and scripts/hub-emulator.py) sends them.
    put(
        "hf_stream",
        "tiny-in-64-byte-chunks",
        &[&[0u8, 64][..], &model].concat(),
    );
    put(
        "hf_stream",
        "tiny-length-lies",
        &[&[96u8, 200][..], &model].concat(),
    );
    for (name, id, endpoint) in [
        (
            "released",
            "kuleshov-group/bd3lm-owt-block_size16",
            "https://huggingface.co",
        ),
        (
            "pinned",
            "owner/name@0123456789abcdef0123456789abcdef01234567",
            "http://127.0.0.1:8080/",
        ),
        ("branch", "a-b/c.d_e@refs/pr/1", ""),
    ] {
        put("hub_id", name, &join(id.as_bytes(), endpoint.as_bytes()));
    }
    let sha = "a".repeat(64);
    let info = json!({
        "id": "kuleshov-group/bd3lm-owt-block_size16",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "siblings": [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"}],
    });
    let tree = json!([
        {"type": "file", "path": "config.json", "size": 652, "oid": "b".repeat(40)},
        {"type": "file", "path": "model.safetensors", "size": 678_530_792u64, "oid": "c".repeat(40),
         "lfs": {"oid": sha, "size": 678_530_792u64, "pointerSize": 135}},
        {"type": "directory", "path": "docs", "size": 0, "oid": "d".repeat(40)},
    ]);
    put(
        "hub_api",
        "released",
        &join(info.to_string().as_bytes(), tree.to_string().as_bytes()),
    );
    put(
        "hub_api",
        "config-as-info",
        &join(config_json.as_bytes(), b"[]"),
    );

    // Tiny packages in every scheme, cut into several shards and pieces.
    let tokenizer = tiny_tokenizer(&read(&format!("{demo}/tokenizer.json")));
    let special = |cfg: &Config| SpecialTokens {
        bos: cfg.mask_id() - 1,
        eos: cfg.mask_id() - 1,
        mask: cfg.mask_id(),
    };
    for (cfg, bytes, scheme, shard) in [
        (&tiny, &model, Scheme::F32, 100_000),
        (&wide, &wide_model, Scheme::F16, 100_000),
        (&wide, &wide_model, Scheme::Q8, 100_000),
        (&wide, &wide_model, Scheme::Q4, 3_000),
    ] {
        let weights = load_hf(&cfg.to_json().to_string(), bytes).expect("tiny checkpoint loads");
        let weights = package::quantize_weights(&weights, SchemePlan::for_format(scheme));
        let name = scheme.name();
        let pkg = package::build_package(
            name,
            name,
            &weights,
            &tokenizer,
            special(cfg),
            Value::Null,
            shard,
        )
        .expect("package builds");
        let manifest = serde_json::to_vec(&pkg.manifest).expect("manifest");
        put("package_manifest", &format!("{name}.json"), &manifest);
        for (i, (file, shard)) in pkg.files.iter().enumerate() {
            if file.ends_with(".safetensors") && i < 3 {
                put(
                    "package_shard",
                    &format!("{name}-{i}"),
                    &join(&manifest, shard),
                );
            }
        }
        put(
            "page_package",
            name,
            &join(
                b"https://Example.org:8443/models/pkg/manifest.json?v=2#x",
                &manifest,
            ),
        );
    }
    put(
        "page_package",
        "demo-relative",
        &join(b"model", &demo_manifest),
    );
    put("page_package", "empty-url", &join(b"", b"{}"));

    // Tokenizers: the demo model's, cut to a few hundred tokens, and other model kinds.
    put("tokenizer_json", "demo-bpe-cut.json", &tokenizer);
    for (name, text) in crafted_tokenizers() {
        put("tokenizer_json", name, text.as_bytes());
    }

    // Golden fixtures: a tiny golden file of each dtype with a real notes.json.
    let notes = read("tests/fixtures/tiny-v512-bs4/notes.json");
    put("fixture_golden", "tiny", &join(&golden_bytes(), &notes));
    put(
        "fixture_golden",
        "bs16-notes",
        &join(
            &golden_bytes(),
            &read("tests/fixtures/tiny-v512-bs16/notes.json"),
        ),
    );
    println!("seeds written to {}", seeds.display());
}

/// `[file length as u64 LE][first 8 + header_len bytes]`: a real file's header without its data.
fn header_seed(file: &[u8]) -> Vec<u8> {
    let header_len = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    [
        &(file.len() as u64).to_le_bytes()[..],
        &file[..8 + header_len],
    ]
    .concat()
}

fn values(n: usize, salt: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (((i * 7 + salt * 13) % 17) as f32 / 17.0 - 0.5).to_le_bytes())
        .collect()
}

/// Every tensor of an HF checkpoint for `cfg`, f32, with small deterministic values.
fn checkpoint_bytes(cfg: &Config) -> Vec<u8> {
    let specs = hf_tensor_specs(cfg);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = specs
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product::<usize>();
            let bytes = if name.ends_with("inv_freq") {
                bd3lm::checkpoint::default_inv_freq(cfg.head_dim())
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            } else {
                values(n, i)
            };
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("view"),
            )
        })
        .collect();
    safetensors::serialize(views, None).expect("serialize")
}

fn golden_bytes() -> Vec<u8> {
    let ids: Vec<u8> = [3i64, 1, 4, 1, 5, 9]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f32s = values(6, 1);
    let f64s: Vec<u8> = [0.5f64, -1.25, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let views = vec![
        (
            "tokens".to_string(),
            TensorView::new(Dtype::I64, vec![2, 3], &ids).expect("i64"),
        ),
        (
            "logits".to_string(),
            TensorView::new(Dtype::F32, vec![3, 2], &f32s).expect("f32"),
        ),
        (
            "logp".to_string(),
            TensorView::new(Dtype::F64, vec![3], &f64s).expect("f64"),
        ),
    ];
    safetensors::serialize(views, None).expect("serialize")
}

/// The demo BPE tokenizer cut to its first 300 ids and the merges among them.
fn tiny_tokenizer(full: &[u8]) -> Vec<u8> {
    let mut t: Value = serde_json::from_slice(full).expect("tokenizer.json");
    let keep = 300u64;
    let vocab = t["model"]["vocab"].as_object().expect("vocab").clone();
    let kept: serde_json::Map<String, Value> = vocab
        .into_iter()
        .filter(|(_, id)| id.as_u64().is_some_and(|id| id < keep))
        .collect();
    let merges: Vec<Value> = t["model"]["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .filter(|m| {
            let pair: Vec<String> = match m {
                Value::String(s) => s.split(' ').map(str::to_string).collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            };
            pair.len() == 2
                && kept.contains_key(&pair[0])
                && kept.contains_key(&pair[1])
                && kept.contains_key(&pair.concat())
        })
        .cloned()
        .collect();
    t["model"]["vocab"] = Value::Object(kept);
    t["model"]["merges"] = Value::Array(merges);
    serde_json::to_vec(&t).expect("json")
}

fn crafted_tokenizers() -> Vec<(&'static str, String)> {
    let added = json!([{"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": false, "special": true}]);
    let base = |model: Value, normalizer: Value, pre: Value, decoder: Value| {
        json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": null,
            "decoder": decoder, "model": model})
        .to_string()
    };
    vec![
        (
            "wordlevel.json",
            base(
                json!({"type": "WordLevel", "vocab": {"<|endoftext|>": 0, "hello": 1, "world": 2, "[UNK]": 3}, "unk_token": "[UNK]"}),
                json!({"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Replace", "pattern": {"String": "!"}, "content": " "}]}),
                json!({"type": "Whitespace"}),
                json!(null),
            ),
        ),
        (
            "wordpiece.json",
            base(
                json!({"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                "vocab": {"<|endoftext|>": 0, "[UNK]": 1, "he": 2, "##llo": 3, "wor": 4, "##ld": 5}}),
                json!({"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}),
                json!({"type": "BertPreTokenizer"}),
                json!({"type": "WordPiece", "prefix": "##", "cleanup": true}),
            ),
        ),
        (
            "unigram.json",
            base(
                json!({"type": "Unigram", "unk_id": 1, "byte_fallback": false,
                "vocab": [["<|endoftext|>", 0.0], ["<unk>", 0.0], ["▁hello", -1.0], ["▁world", -1.5], ["▁", -2.0], ["h", -3.0], ["e", -3.0], ["l", -3.0], ["o", -3.0]]}),
                json!({"type": "Prepend", "prepend": "▁"}),
                json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}),
                json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}),
            ),
        ),
        (
            "split-regex.json",
            base(
                json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": true, "ignore_merges": false,
                "vocab": {"<|endoftext|>": 0, "a": 1, "b": 2, "ab": 3, "<0x41>": 4}, "merges": ["a b"]}),
                json!(null),
                json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "\\s+|(?=[0-9])"}, "behavior": "Isolated", "invert": false},
                {"type": "Digits", "individual_digits": true},
                {"type": "Punctuation", "behavior": "Isolated"}]}),
                json!({"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}),
            ),
        ),
    ]
}
