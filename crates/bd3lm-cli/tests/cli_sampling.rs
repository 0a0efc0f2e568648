//! The parallel samplers on the command line (issue "parallel decoding"): flags, their
//! errors, the calls-per-token figure, and `sample-stats`.

mod common;
use common::run;

/// Model calls per token from the stats line: "... N forwards (X per token) ...".
fn calls_per_token(stderr: &str) -> f64 {
    let at = stderr.find(" per token)").expect("stats line");
    let start = stderr[..at].rfind('(').expect("stats line") + 1;
    stderr[start..at].parse().expect("a number")
}

#[test]
fn parallel_samplers_take_fewer_calls_per_token_and_are_reproducible() {
    let base = [
        "generate", "--tokens", "64", "--seed", "3", "--prompt", "The",
    ];
    let fh = run(base).ok();
    let fh_calls = calls_per_token(&fh.stderr);
    // One token per call, and with the store pass folded (the default engines) no more.
    assert!(fh_calls >= 1.0, "first hitting: {fh_calls}");
    for extra in [
        // The demo model is rarely sure of a token (its NELBO is ~4.9 nats), so parallel
        // reveals need a low threshold or a wide entropy bound.
        vec!["--sampler", "confidence", "--threshold", "0.001"],
        vec!["--sampler", "entropy", "--gamma", "16"],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let a = run(&args).ok();
        let b = run(&args).ok();
        assert_eq!(
            a.stdout, b.stdout,
            "{extra:?}: the same seed gives the same text"
        );
        let calls = calls_per_token(&a.stderr);
        assert!(
            calls < fh_calls,
            "{extra:?}: {calls} calls per token, first hitting {fh_calls}"
        );
    }
    // A threshold of 1 reveals only certainties, so it falls back to one token per call;
    // gamma 0 reveals the one lowest-entropy token per call.
    for extra in [
        ["--sampler", "confidence", "--threshold", "1"],
        ["--sampler", "entropy", "--gamma", "0"],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        let calls = calls_per_token(&run(&args).ok().stderr);
        assert!(calls >= 1.0, "{extra:?}: {calls}");
    }
}

#[test]
fn sampler_flag_errors_are_clear() {
    run(["generate", "--sampler", "confidence", "--threshold", "0"])
        .fails_with(2, &["--threshold", "(0, 1]"]);
    run(["generate", "--sampler", "confidence", "--threshold", "1.5"])
        .fails_with(2, &["--threshold", "(0, 1]"]);
    run(["generate", "--sampler", "entropy", "--gamma=-1"]).fails_with(2, &["--gamma"]);
    run(["generate", "--sampler", "entropy", "--gamma", "NaN"]).fails_with(2, &["--gamma"]);
    run(["generate", "--threshold", "0.9"])
        .fails_with(2, &["--threshold belongs to --sampler confidence"]);
    run(["generate", "--sampler", "confidence", "--gamma", "1"])
        .fails_with(2, &["--gamma belongs to --sampler entropy"]);
    run(["generate", "--sampler", "entropy", "--steps", "4"]).fails_with(2, &["--steps"]);
}

#[test]
fn sample_stats_reports_each_setting() {
    let r = run([
        "sample-stats",
        "--samples",
        "2",
        "--tokens",
        "16",
        "--eval-passes",
        "1",
        "--mode",
        "prompted",
        "--settings",
        "first-hitting,confidence:0.001,entropy:16",
        "--json",
    ])
    .ok();
    let rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), 3, "{}", r.stdout);
    let fh = &rows[0];
    assert_eq!(fh["setting"], "first-hitting");
    // 16 tokens after a short prompt: one call per token plus a store pass per block.
    let fh_calls = fh["calls_per_token"].as_f64().expect("calls");
    assert!((1.0..=1.5).contains(&fh_calls), "{fh_calls}");
    for row in &rows {
        let nelbo = row["nelbo"].as_f64().expect("nelbo");
        let entropy = row["unigram_entropy"].as_f64().expect("entropy");
        assert!(nelbo.is_finite() && nelbo > 0.0, "{row}");
        // At most ln(tokens per sample): every token distinct.
        assert!(entropy > 0.0 && entropy <= (19f64).ln() + 1e-9, "{row}");
        // 16 tokens each, rounded up to whole blocks after the prompt.
        let generated = row["generated_tokens"].as_u64().expect("count");
        assert!((32..=2 * 19).contains(&generated), "{row}");
    }
    assert!(rows[1]["calls_per_token"].as_f64() < Some(fh_calls));
    run(["sample-stats", "--settings", "greedy"]).fails_with(2, &["unknown sampler"]);
    run(["sample-stats", "--tokens", "250"]).fails_with(2, &["--tokens 250"]);
}
