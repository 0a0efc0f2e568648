//! `bd3lm eval`: the NELBO bound on a few chunks of the demo model's held-out text, against
//! the 4.873 nats/token the reference training code measured on all 253 chunks.

mod common;
use common::*;

/// Reference value from models/bd3lm-sotu-tiny-bs4/README.md (all 253 chunks, 1 pass).
const REFERENCE_NATS: f64 = 4.873;

#[test]
fn a_few_chunks_agree_with_the_reference_bound() {
    let val = demo_model().join("val.txt");
    let r = run([
        "eval",
        "--model",
        &path(&demo_model()),
        "--text",
        &path(&val),
        "--max-chunks",
        "12",
        "--json",
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("JSON");
    let (x, se) = (
        v["nats_per_token"].as_f64().unwrap(),
        v["standard_error"].as_f64().unwrap(),
    );
    assert_eq!(v["sequences"], 12);
    assert_eq!(
        v["sequences_in_text"], 253,
        "val.txt cuts into 253 sequences of 254 tokens"
    );
    assert_eq!(v["tokens_counted"], 12 * 255);
    // The estimator's spread must be informative, and the estimate within 3.5 standard errors
    // (chunks spread evenly over the text, so the spread covers their differing difficulty).
    assert!(se > 0.0 && se < 0.35, "standard error {se}");
    assert!(
        (x - REFERENCE_NATS).abs() < 3.5 * se,
        "{x} ± {se} vs {REFERENCE_NATS}"
    );
    assert!((v["perplexity_bound"].as_f64().unwrap() - x.exp()).abs() < 1e-9);
}

#[test]
fn text_output_and_errors() {
    let val = demo_model().join("val.txt");
    let r = run([
        "eval",
        "--text",
        &path(&val),
        "--max-chunks",
        "2",
        "--seed",
        "3",
    ])
    .ok();
    assert!(r.stdout.contains(" nats/token"), "{}", r.stdout);
    assert!(r.stdout.contains("perplexity <= "), "{}", r.stdout);
    run(["eval", "--text", "/nonexistent.txt"]).fails_with(1, &["/nonexistent.txt"]);
    let short = temp_dir("eval_short").join("short.txt");
    std::fs::write(&short, "Too short.").unwrap();
    run(["eval", "--text", &path(&short)]).fails_with(2, &["less than one evaluation sequence"]);
    run(["eval", "--text", &path(&val), "--passes", "0"]).fails_with(2, &["--passes"]);
}
