//! `info`, `quantize`, `synth`, `bench`, `quant-report` and model loading errors.

mod common;
use common::*;
use std::fs;

#[test]
fn info_describes_the_embedded_model() {
    let r = run(["info"]).ok();
    let out = &r.stdout;
    assert!(out.contains("embedded default model"), "{out}");
    assert!(
        out.contains("vocab 4097 | hidden 256 | heads 4 (dim 64) | layers 4"),
        "{out}"
    );
    assert!(out.contains("context 256 | block 4"), "{out}");
    assert!(out.contains("6162945 in the checkpoint"), "{out}");
    assert!(
        out.contains("<|endoftext|> (BOS = EOS) = 0, MASK = 4096"),
        "{out}"
    );
    assert!(out.contains("format version 1"), "{out}");
}

#[test]
fn info_on_an_hf_dir_and_with_the_gpu_backend() {
    let r = run(["info", "--model", &path(&demo_model())]).ok();
    assert!(
        r.stdout
            .contains("embedding f32, transformer f32, LM head f32"),
        "{}",
        r.stdout
    );
    let r = run(["info", "--backend", "gpu"]).ok();
    assert!(r.stdout.contains("backend:      gpu"), "{}", r.stdout);
    assert!(r.stdout.contains("largest buffer"), "{}", r.stdout);
    assert!(
        r.stdout.contains("adapter: max storage binding"),
        "{}",
        r.stdout
    );
}

/// Converting the demo checkpoint reproduces the embedded package byte for byte, and the
/// converted package generates exactly what the embedded one does.
#[test]
fn quantize_reproduces_the_embedded_package() {
    let out = temp_dir("quantize_demo_q8");
    let r = run([
        "quantize",
        &path(&demo_model()),
        &path(&out),
        "--format",
        "q8",
        "--name",
        "sotu-tiny-bs4-q8",
        "--force",
    ])
    .ok();
    assert!(r.stdout.contains("wrote"), "{}", r.stdout);
    let embedded = repo_root().join("models/sotu-tiny-bs4-q8");
    for entry in fs::read_dir(&embedded).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".md") {
            continue;
        }
        let ours = fs::read(out.join(&name)).unwrap_or_default();
        assert!(
            ours == fs::read(entry.path()).unwrap(),
            "{name} differs from the committed package (re-run the documented quantize command)"
        );
    }
    let gen = |model: Option<&str>| {
        let mut args = vec!["generate", "--tokens", "16", "--seed", "4"];
        if let Some(m) = model {
            args.extend(["--model", m]);
        }
        run(args).ok().stdout
    };
    assert_eq!(gen(Some(&path(&out))), gen(None));
}

#[test]
fn quantize_refuses_bad_inputs() {
    let out = temp_dir("quantize_bad_inputs");
    fs::write(out.join("keep.txt"), "x").unwrap();
    run([
        "quantize",
        &path(&demo_model()),
        &path(&out),
        "--format",
        "q4",
    ])
    .fails_with(2, &["not empty", "--force"]);
    let out2 = temp_dir("quantize_no_tokenizer");
    run([
        "quantize",
        &path(&fixture("tiny-v512-bs4")),
        &path(&out2),
        "--format",
        "q8",
    ])
    .fails_with(2, &["tokenizer.json", "--tokenizer"]);
    // The GPT-2 tokenizer does not fit a 4097-entry model.
    let gpt2 = repo_root().join("models/tokenizers/gpt2/tokenizer.json");
    run([
        "quantize",
        &path(&demo_model()),
        &path(&out2),
        "--format",
        "q8",
        "--tokenizer",
        &path(&gpt2),
    ])
    .fails_with(1, &["50257 tokens", "4096"]);
    run(["quantize", "/nonexistent", &path(&out2), "--format", "q8"])
        .fails_with(1, &["/nonexistent/config.json"]);
}

/// synth → quantize q4 → generate through the package: the whole converter path on a small
/// random model (released shapes take minutes in debug; see docs/cli.md for that run).
#[test]
fn synth_quantize_generate_pipeline() {
    let hf = temp_dir("synth_small");
    let small = [
        "--hidden-dim",
        "64",
        "--layers",
        "2",
        "--heads",
        "2",
        "--vocab-size",
        "4097",
        "--model-length",
        "64",
    ];
    let mut args = vec!["synth", "--out", hf.to_str().unwrap(), "--block-size", "8"];
    args.extend(small);
    run(&args).ok();
    let info = run([
        "info",
        "--model",
        &path(&hf),
        "--tokenizer",
        &path(&demo_model().join("tokenizer.json")),
    ])
    .ok();
    // V·H + sigma map + 2 layers + output layer, per spec §3.
    let (v, h, c) = (4097usize, 64usize, 128usize);
    let layer = h + 3 * h * h + h * h + h + 4 * h * h + 4 * h + 4 * h * h + h + 6 * h * c + 6 * h;
    let expected =
        v * h + (c * 256 + c + c * c + c) + 2 * layer + (h + v * h + v + 2 * h * c + 2 * h);
    assert!(
        info.stdout
            .contains(&format!("{expected} in the checkpoint")),
        "{}",
        info.stdout
    );
    let pkg = temp_dir("synth_small_q4");
    let tok = demo_model().join("tokenizer.json");
    run([
        "quantize",
        &path(&hf),
        &path(&pkg),
        "--format",
        "q4",
        "--tokenizer",
        &path(&tok),
        "--force",
    ])
    .ok();
    let info = run(["info", "--model", &path(&pkg)]).ok();
    assert!(
        info.stdout
            .contains("embedding q4, transformer q4, LM head q4"),
        "{}",
        info.stdout
    );
    let r = run([
        "generate",
        "--model",
        &path(&pkg),
        "--tokens",
        "16",
        "--seed",
        "1",
    ])
    .ok();
    assert!(!r.stdout.trim().is_empty());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn bad_packages_give_precise_errors() {
    let good = repo_root().join("models/sotu-tiny-bs4-q8");
    let shard = "weights-00000.safetensors";
    let fresh = |name: &str| {
        let dir = temp_dir(name);
        copy_dir(&good, &dir);
        dir
    };
    // Flipped byte: hash mismatch naming the shard.
    let dir = fresh("bad_pkg_hash");
    let mut bytes = fs::read(dir.join(shard)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(dir.join(shard), &bytes).unwrap();
    run(["info", "--model", &path(&dir)]).fails_with(1, &[shard, "SHA-256 mismatch"]);
    // Truncated shard.
    let dir = fresh("bad_pkg_truncated");
    fs::write(dir.join(shard), &bytes[..mid]).unwrap();
    run(["info", "--model", &path(&dir)]).fails_with(1, &[shard, "truncated"]);
    // Missing shard.
    let dir = fresh("bad_pkg_missing");
    fs::remove_file(dir.join(shard)).unwrap();
    run(["info", "--model", &path(&dir)]).fails_with(1, &[shard]);
    // Newer format version.
    let dir = fresh("bad_pkg_version");
    let manifest = fs::read_to_string(dir.join("manifest.json")).unwrap();
    fs::write(
        dir.join("manifest.json"),
        manifest.replace("\"format_version\": 1", "\"format_version\": 7"),
    )
    .unwrap();
    run(["generate", "--model", &path(&dir)])
        .fails_with(1, &["format_version 7", "newer", "update bd3lm"]);
    // Inconsistent manifest: a tensor with the wrong shape.
    let dir = fresh("bad_pkg_manifest");
    let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let embedding = m["tensors"]
        .as_array()
        .and_then(|t| t.iter().position(|t| t["name"] == "embedding"))
        .expect("the embedding is listed");
    m["tensors"][embedding]["shape"] = serde_json::json!([4097, 128]);
    fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    run(["info", "--model", &path(&dir)]).fails_with(1, &["manifest.json", "shape"]);
}

#[test]
fn bench_json_has_the_documented_keys() {
    let r = run([
        "bench",
        "--json",
        "--runs",
        "2",
        "--tokens",
        "8",
        "--bandwidth-mib",
        "16",
    ])
    .ok();
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let fills: Vec<u64> = lines.iter().map(|l| l["fill"].as_u64().unwrap()).collect();
    assert_eq!(fills, [0, 128, 252]);
    let keys = [
        "model",
        "format",
        "backend",
        "adapter",
        "block_size",
        "fill",
        "runs",
        "ms_min",
        "ms_median",
        "block_ms_median",
        "forwards_per_s",
        "tokens_per_s",
        "dispatches_per_forward",
        "readback_bytes_per_step",
        "gpu_objects_created",
        "threads",
        "peak_rss_bytes",
        "package_bytes",
        "host_waits_per_block",
        "submits_per_block",
        "workgroups_min",
        "weight_bytes_per_forward",
        "weight_gbytes_per_s",
        "read_gbytes_per_s_1",
        "read_gbytes_per_s_n",
        "read_threads_n",
        "step_bandwidth_share",
        "block_bandwidth_share",
        "generate_bandwidth_share",
    ];
    for line in &lines {
        let obj = line.as_object().unwrap();
        let mut found: Vec<&str> = obj.keys().map(String::as_str).collect();
        found.sort();
        let mut want = keys.to_vec();
        want.sort();
        assert_eq!(found, want);
        assert!(line["ms_min"].as_f64().unwrap() <= line["ms_median"].as_f64().unwrap());
        assert!(line["tokens_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(line["backend"], "cpu", "the default backend in tests");
        assert!(line["threads"].as_u64().unwrap() >= 1);
        // Linux reports the peak resident memory; the embedded q8 model is ~6 MB.
        let rss = line["peak_rss_bytes"].as_u64().unwrap();
        assert!(rss > line["package_bytes"].as_u64().unwrap(), "{rss}");
        // The CPU engine's figures come with the measured read bandwidth and their share of it.
        assert!(line["read_gbytes_per_s_1"].as_f64().unwrap() > 0.0);
        assert!(line["weight_bytes_per_forward"].as_u64().unwrap() > 4_000_000);
        let share = line["step_bandwidth_share"].as_f64().unwrap();
        assert!(share > 0.0 && share.is_finite(), "{share}");
    }
    run(["bench", "--ctx", "5"]).fails_with(2, &["--ctx 5", "multiple of the block size 4"]);

    // The WGSL engine's counters, measured while it runs (lavapipe): 7·L + 9 dispatches per
    // step of a block (embedding, 7 per layer, LM head, the sampler's 6 passes, reveal: the
    // software tiling keeps every window in one split, so no layer records its attention
    // combine),
    // one submission per step (each submitted as soon as it is recorded) and one host wait
    // per first-hitting block, 8 bytes read back per single step, no GPU object created while
    // stepping.
    let r = run([
        "bench",
        "--json",
        "--backend",
        "gpu",
        "--ctx",
        "8",
        "--runs",
        "2",
        "--tokens",
        "8",
    ])
    .ok();
    let line: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON line");
    let layers = 4;
    assert_eq!(line["backend"], "gpu");
    assert_eq!(line["dispatches_per_forward"], 7 * layers + 9);
    assert_eq!(line["readback_bytes_per_step"], 8);
    assert_eq!(line["gpu_objects_created"], 0);
    assert_eq!(line["host_waits_per_block"], 1.0);
    assert_eq!(
        line["submits_per_block"], 4.0,
        "one per step of a 4-token block"
    );
    assert!(line["weight_bytes_per_forward"].as_u64().unwrap() > 4_000_000);

    // The structural counters of a block without running it, in both tilings; the hardware
    // one launches more workgroups per weight-streaming dispatch than the software one.
    let counters = |tiling: &str| -> serde_json::Value {
        let r = run([
            "bench",
            "--json",
            "--backend",
            "gpu",
            "--gpu-tiling",
            tiling,
            "--counters-only",
            "--ctx",
            "252",
        ])
        .ok();
        serde_json::from_str(r.stdout.trim()).expect("one JSON line")
    };
    let (hw, sw) = (counters("hardware"), counters("software"));
    for c in [&hw, &sw] {
        assert_eq!(c["counters_only"], true);
        assert_eq!(c["host_waits_per_block"], 1);
        assert_eq!(c["submits_per_block"], c["steps_per_block"]);
        assert_eq!(c["steps_per_block"], 4);
        assert_eq!(
            c["weight_bytes_per_forward"],
            line["weight_bytes_per_forward"]
        );
    }
    assert_eq!(hw["gpu_tiling"], "hardware");
    // A window of 256 keys is 16 splits under the hardware tiling: every layer merges them.
    assert_eq!(hw["dispatches_per_forward"], 8 * layers + 9);
    assert_eq!(sw["dispatches_per_forward"], 7 * layers + 9);
    assert!(
        hw["workgroups_min"].as_u64().unwrap() > 4 * sw["workgroups_min"].as_u64().unwrap(),
        "hardware {} vs software {} workgroups",
        hw["workgroups_min"],
        sw["workgroups_min"]
    );
    run(["bench", "--counters-only", "--backend", "cpu"]).fails_with(2, &["needs the GPU backend"]);
    run(["bench", "--steps-per-submit", "0"]).fails_with(2, &["--steps-per-submit"]);
    run(["bench", "--gpu-tiling", "fast"]).fails_with(2, &["--gpu-tiling"]);
}

#[test]
fn quant_report_orders_formats_by_precision() {
    let r = run([
        "quant-report",
        "--model",
        &path(&fixture("tiny-v512-bs4")),
        "--chunks",
        "2",
        "--json",
    ])
    .ok();
    let rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kl = |f: &str| {
        rows.iter().find(|r| r["format"] == f).unwrap()["kl_mean"]
            .as_f64()
            .unwrap()
    };
    assert!(rows.iter().all(|r| r["positions"].as_u64().unwrap() > 20));
    assert!(kl("f16") < kl("q8") && kl("q8") < kl("q4"), "{}", r.stdout);
    let size = |f: &str| {
        rows.iter().find(|r| r["format"] == f).unwrap()["package_bytes"]
            .as_u64()
            .unwrap()
    };
    assert!(size("q4") < size("q8") && size("q8") < size("f16"));

    // The fast CPU engine quantizes activations (16-bit codes for q8, 8-bit for q4): its KL
    // from f32 stays within 2x of the reference's on the same weights, and q8's top-1
    // agreement within 0.3 points (issue 14's bound; on this random model's flat
    // distributions q4's top-1 flips freely, so its bound is checked on the demo model in
    // docs/quantization.md).
    let fast = run([
        "quant-report",
        "--model",
        &path(&fixture("tiny-v512-bs4")),
        "--chunks",
        "2",
        "--json",
        "--backend",
        "cpu",
    ])
    .ok();
    let fast_rows: Vec<serde_json::Value> = fast
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let get = |rows: &[serde_json::Value], f: &str, key: &str| {
        rows.iter().find(|r| r["format"] == f).unwrap()[key]
            .as_f64()
            .unwrap()
    };
    assert!(fast_rows.iter().all(|r| r["backend"] == "cpu"));
    for f in ["q8", "q4"] {
        let (ours, theirs) = (get(&fast_rows, f, "kl_mean"), get(&rows, f, "kl_mean"));
        assert!(ours <= 2.0 * theirs, "{f}: KL {ours} vs reference {theirs}");
    }
    let (ours, theirs) = (
        get(&fast_rows, "q8", "top1_agreement"),
        get(&rows, "q8", "top1_agreement"),
    );
    assert!(
        ours >= theirs - 0.003,
        "q8: top-1 {ours} vs reference {theirs}"
    );
}
