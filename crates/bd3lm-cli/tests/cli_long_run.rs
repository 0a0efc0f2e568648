//! `bd3lm long-run`, short: the machinery of the long runs of docs/reliability.md (the full
//! runs are `scripts/long-runs.sh`, not part of the test command).

mod common;

use common::{fixture, run};

fn summary(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

/// 30 generations on the fast CPU engine with the embedded demo model: every sampler, runs
/// past the context, three stopped in mid-block; resident memory from the 10th to the 30th
/// within 5 %; a sample (a stopped run and one past the context among them) repeated on a
/// fresh engine gives the same tokens.
#[test]
fn thirty_cpu_generations_hold_memory_and_reproduce() {
    let r = run(["long-run", "--runs", "30", "--repeat", "10", "--json"]).ok();
    let s = summary(&r.stdout);
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(s["backend"], "cpu");
    assert_eq!(s["runs"], 30);
    assert_eq!(s["stop_requested"], 3);
    assert_eq!(s["stopped_mid_block"], 3);
    assert!(s["past_context"].as_u64().unwrap() >= 5, "{s}");
    let samplers = s["samplers"].as_object().unwrap();
    assert_eq!(
        samplers.len(),
        8,
        "two settings of each of the four samplers"
    );
    assert!(samplers.values().all(|n| n.as_u64().unwrap() > 0), "{s}");
    assert_eq!(s["reproduced"], s["repeated"]);
    assert!(s["repeated"].as_u64().unwrap() >= 8);
    assert!(s["repeated_stopped"].as_u64().unwrap() >= 1);
    assert!(s["repeated_past_context"].as_u64().unwrap() >= 1);
    // Linux reports resident memory.
    let growth = s["rss_growth"].as_f64().expect("resident memory measured");
    assert!(growth <= 0.05, "{growth}");
    assert!(s["rss_mb_end"].as_f64().unwrap() > 5.0);
}

/// 20 generations of the WGSL engine (lavapipe here) on the tiny fixture: no buffer, bind
/// group or pipeline is created once the engine is built, resident memory from the 5th to the
/// 20th within 5 % (a kernel whose loop bound lavapipe inlined grew it by ~50 MB per
/// generation, docs/reliability.md), and the sample reproduces on a fresh engine.
#[test]
fn gpu_generations_hold_memory_create_no_device_objects_and_reproduce() {
    let model = fixture("tiny-v512-bs4");
    let r = run([
        "long-run",
        "--backend",
        "gpu",
        "--model",
        model.to_str().unwrap(),
        "--runs",
        "20",
        "--baseline",
        "5",
        "--repeat",
        "4",
        "--json",
    ])
    .ok();
    let s = summary(&r.stdout);
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(s["backend"], "gpu");
    assert_eq!(s["stopped_mid_block"], 2);
    let growth = s["rss_growth"].as_f64().expect("resident memory measured");
    assert!(growth <= 0.05, "{growth}");
    let before = s["gpu_objects_before"].as_u64().unwrap();
    assert!(before > 20, "the engine's objects are counted: {before}");
    assert_eq!(s["gpu_objects_after_first"], before);
    assert_eq!(s["gpu_objects_end"], before);
    assert!(s["gpu_pipelines_end"].as_u64().unwrap() > 5);
    assert_eq!(s["gpu_pipelines_end"], s["gpu_pipelines_after_first"]);
    assert!(s["gpu_buffers_held"].as_u64().unwrap() > 10);
    assert_eq!(s["reproduced"], s["repeated"]);
}

#[test]
fn bad_long_run_flags_are_usage_errors() {
    run(["long-run", "--runs", "10", "--baseline", "10"]).fails_with(2, &["--baseline 10"]);
    run(["long-run", "--runs", "0"]).fails_with(2, &["--runs"]);
    run(["long-run", "--runs", "5", "--max-rss-growth=-1"]).fails_with(2, &["--max-rss-growth"]);
}
