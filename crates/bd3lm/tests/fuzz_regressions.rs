#![cfg(not(target_arch = "wasm32"))]
//! Inputs that fuzzing (fuzz/, docs/reliability.md) or the review around it found to panic,
//! overflow or over-allocate, each now a typed error. The raw inputs also replay under the
//! fuzzing rules in `crates/bd3lm-fuzz/tests/replay.rs`.

use bd3lm::package::Manifest;
use bd3lm::tokenizer::Tokenizer;
use bd3lm::{Config, Error};
use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = repo(&format!("fuzz/regressions/{target}/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tokenizer_error(json: &[u8]) -> String {
    match Tokenizer::from_bytes(json, 301) {
        Err(Error::Tokenizer(message)) => message,
        Err(other) => panic!("expected a tokenizer error, got {other}"),
        Ok(_) => panic!("expected a tokenizer error, got a tokenizer"),
    }
}

/// The demo tokenizer cut to 300 tokens (a fuzz seed) with its decoder replaced.
fn tokenizer_with_decoder(decoder: &str) -> Vec<u8> {
    let seed = std::fs::read(repo("fuzz/seeds/tokenizer_json/demo-bpe-cut.json")).unwrap();
    let text = String::from_utf8(seed).unwrap();
    let start = text.find("\"decoder\":").expect("seed has a decoder");
    let end = start + text[start..].find("},").expect("decoder ends") + 1;
    format!("{}\"decoder\":{decoder}{}", &text[..start], &text[end..]).into_bytes()
}

#[test]
fn tokenizer_with_a_syntax_error_in_its_decoder_is_an_error_not_a_panic() {
    // tokenizers 0.23 `expect`s the decoder's JSON to parse.
    let input = regression("tokenizer_json", "decoder-syntax-error-panics-tokenizers");
    assert!(tokenizer_error(&input).contains("cannot parse"));
    let input = regression("tokenizer_json", "decoder-invalid-utf8-panics-tokenizers");
    assert!(tokenizer_error(&input).contains("cannot parse"));
    // A lone surrogate escape: serde's skipping parser lets it through, ours does not.
    let input = tokenizer_with_decoder(r#"{"type":"ByteLevel","x":"\ud800"}"#);
    assert!(tokenizer_error(&input).contains("cannot parse"));
}

#[test]
fn tokenizer_with_a_strip_decoder_that_cuts_the_end_is_refused() {
    // tokenizers 0.23 underflows `chars.len() - i - 1` on tokens shorter than `stop`, and
    // reads any component with `content`/`start`/`stop` as Strip, whatever its `type`.
    for name in [
        "strip-decoder-stop-underflows",
        "strip-decoder-by-shape-stop-underflows",
    ] {
        let message = tokenizer_error(&regression("tokenizer_json", name));
        assert!(message.contains("Strip"), "{name}: {message}");
    }
    // `stop: 0` (Llama-style `Strip` of a leading space) is fine.
    let ok = tokenizer_with_decoder(r#"{"type":"Strip","content":" ","start":1,"stop":0}"#);
    Tokenizer::from_bytes(&ok, 301).expect("Strip with stop 0 loads");
}

#[test]
fn tokenizer_with_a_precompiled_normalizer_is_refused() {
    let seed = std::fs::read(repo("fuzz/seeds/tokenizer_json/demo-bpe-cut.json")).unwrap();
    let text = String::from_utf8(seed).unwrap().replacen(
        "\"normalizer\":null",
        r#""normalizer":{"type":"Sequence","normalizers":[{"type":"Precompiled","precompiled_charsmap":"AAAA"}]}"#,
        1,
    );
    assert!(tokenizer_error(text.as_bytes()).contains("Precompiled"));
}

#[test]
fn tokenizer_json_over_the_size_limit_is_refused_before_parsing() {
    let big = vec![b' '; bd3lm::tokenizer::MAX_TOKENIZER_JSON_BYTES + 1];
    assert!(tokenizer_error(&big).contains("largest accepted"));
}

fn config_field_error(json: &str) -> String {
    match Config::from_json_str(json) {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn config_with_a_huge_layer_count_is_refused() {
    // Loaders listed every tensor of every claimed layer before reading the file.
    let input = regression("config_json", "huge-n-blocks-allocates-the-tensor-list");
    assert_eq!(
        config_field_error(std::str::from_utf8(&input).unwrap()),
        "n_blocks"
    );
}

#[test]
fn config_with_a_huge_hidden_dim_is_refused() {
    // parameter_count overflowed (a panic in debug builds, a wrong size in release).
    let input = regression("config_json", "huge-hidden-dim-overflows-parameter-count");
    assert_eq!(
        config_field_error(std::str::from_utf8(&input).unwrap()),
        "hidden_dim"
    );
    // The largest config that validates has exact sizes.
    let max = Config::from_json_str(
        r#"{"vocab_size":16777216,"hidden_dim":65536,"cond_dim":65536,"n_blocks":1024,"n_heads":1,"model_length":1048576,"block_size":4}"#,
    )
    .expect("the largest supported config");
    assert!(max.parameter_count() > 1 << 40);
    assert_eq!(
        bd3lm::weights::kv_cache_bytes(&max) as u64,
        2 * 1024 * 1048576 * 65536 * 4
    );
}

fn seed_manifest() -> serde_json::Value {
    let text = std::fs::read(repo("fuzz/seeds/package_manifest/f32.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn manifest_error(m: &serde_json::Value) -> Error {
    Manifest::parse(&m.to_string()).expect_err("must be refused")
}

#[test]
fn manifest_sizes_that_overflow_are_errors() {
    Manifest::parse(&seed_manifest().to_string()).expect("the seed manifest is valid");
    // Piece rows whose sum overflows usize.
    let mut m = seed_manifest();
    let file = m["tensors"][2]["pieces"][0]["file"].clone();
    m["tensors"][2]["pieces"] = serde_json::json!([
        {"file": file, "start_row": 0, "rows": u64::MAX},
        {"file": file, "start_row": u64::MAX, "rows": 9},
    ]);
    let err = manifest_error(&m);
    assert!(err.to_string().contains("overflow"), "{err}");
    // File sizes whose sum overflows u64.
    let mut m = seed_manifest();
    m["tokenizer"]["bytes"] = u64::MAX.into();
    let err = manifest_error(&m);
    assert!(err.to_string().contains("download_bytes"), "{err}");
}

#[test]
fn manifest_format_version_beyond_u32_is_refused_not_truncated() {
    // 2^32 + 1 used to be read as version 1.
    let mut m = seed_manifest();
    m["format_version"] = (u32::MAX as u64 + 2).into();
    assert!(matches!(
        manifest_error(&m),
        Error::UnsupportedPackageVersion {
            found: 4_294_967_297,
            ..
        }
    ));
}

#[test]
fn manifest_over_the_size_limit_is_refused_before_parsing() {
    let big = " ".repeat(bd3lm::package::MAX_MANIFEST_BYTES + 1);
    let err = Manifest::parse(&big).expect_err("too big");
    assert!(err.to_string().contains("largest accepted"), "{err}");
}

/// Found by the `hub_id` target: an endpoint ending in a slash then whitespace kept the
/// whitespace, so URLs built from the normalized endpoint did not start with it.
#[test]
fn hub_endpoints_normalize_in_one_step() {
    use bd3lm::hub::{model_info_url, normalize_endpoint};
    for raw in [
        "http://h.test/\n",
        " http://h.test / \t/",
        "http://h.test//",
        "\n/",
    ] {
        let once = normalize_endpoint(raw);
        assert_eq!(normalize_endpoint(&once), once, "{raw:?}");
        assert!(
            model_info_url(raw, "a/b", "main").starts_with(&once),
            "{raw:?}"
        );
    }
    assert_eq!(normalize_endpoint(" http://h.test / \t/"), "http://h.test");
    assert_eq!(normalize_endpoint("\n/"), "https://huggingface.co");
}
