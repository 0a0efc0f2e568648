//! `scripts/gpu-check.sh`, the one run a lent GPU gets, kept from rotting: its rehearsal on the
//! native adapter (lavapipe here) with the built binary and no cargo on the PATH, its refusals
//! (no adapter, a software adapter) and, with a stand-in binary, that a failed conformance check
//! fails the run only after every figure is saved.

mod common;

use common::{repo_root, temp_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PATH without any directory that holds cargo: the script must not need it.
fn path_without_cargo() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|dir| !dir.join("cargo").exists())
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

struct Check {
    code: i32,
    stderr: String,
    figures: Vec<Value>,
}

impl Check {
    fn all(&self, figure: &str) -> Vec<&Value> {
        self.figures
            .iter()
            .filter(|f| f["figure"] == figure)
            .collect()
    }

    fn one(&self, figure: &str) -> &Value {
        let all = self.all(figure);
        assert!(
            !all.is_empty(),
            "no `{figure}` figure in {:#?}\n{}",
            self.figures,
            self.stderr
        );
        all[0]
    }
}

/// Runs the script with `binary` as BD3LM and returns its exit code and its results file, every
/// line of which must be JSON.
fn gpu_check(name: &str, binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Check {
    let dir = temp_dir(name);
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/gpu-check.sh"))
        .args(args)
        .current_dir(&dir)
        .env("PATH", path_without_cargo())
        .env("BD3LM", binary)
        .env("WORK", dir.join("work"))
        .env("GPU_CHECK_OUT", dir.join("out"))
        .env_remove("OUT")
        .env_remove("BD3LM_BACKEND");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run scripts/gpu-check.sh");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let results = std::fs::read_to_string(dir.join("out/gpu-check.jsonl")).unwrap_or_default();
    let figures: Vec<Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // Every figure is also printed on stdout, in the same order.
    assert_eq!(String::from_utf8_lossy(&out.stdout), results, "{stderr}");
    Check {
        code: out.status.code().unwrap_or(-1),
        stderr,
        figures,
    }
}

fn bd3lm_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bd3lm"))
}

/// Whether the native adapter is a software one (the rehearsal's adapter here); `None` without
/// any adapter.
fn software_adapter() -> Option<bool> {
    let out = Command::new(bd3lm_binary())
        .args(["info", "--backend", "gpu", "--json"])
        .output()
        .expect("run bd3lm info");
    let line: Value = serde_json::from_slice(&out.stdout).ok()?;
    out.status
        .success()
        .then(|| line["software_adapter"] == true)
}

#[test]
fn the_rehearsal_runs_every_step_without_cargo() {
    let run = gpu_check("gpu-check-rehearse", &bd3lm_binary(), &["--rehearse"], &[]);
    assert_eq!(run.code, 0, "{:#?}\n{}", run.figures, run.stderr);
    assert_eq!(run.one("run")["mode"], "rehearse");
    assert!(run.one("adapter")["limits"].is_object());
    assert!(run.one("adapter")["features"].is_array());
    run.one("synth");
    // q8 first: bench at both fills of the small model's 32-token context, then the rest.
    let bench = run.all("bench");
    assert!(bench.len() >= 2, "{bench:?}");
    assert!(bench[0]["format"].as_str().unwrap_or("").contains("q8"));
    let fills: Vec<u64> = bench[..2]
        .iter()
        .filter_map(|b| b["fill"].as_u64())
        .collect();
    assert_eq!(fills, [0, 16]);
    assert!(bench[0]["forwards_per_s"].as_f64().is_some_and(|f| f > 0.0));
    // The A/B of the adapter's workgroup memory against WebGPU's default 16 KiB.
    let baseline = run.all("bench_baseline");
    assert_eq!(baseline.len(), 2, "{baseline:?}");
    assert!(baseline[0]["adapter"]
        .as_str()
        .is_some_and(|a| a.ends_with(", 16 KiB workgroup memory")));
    assert_eq!(run.all("counters").len(), 2);
    let profiles = run.all("profile");
    assert_eq!(profiles.len(), 2, "fills 16 and 0");
    let dispatches = run.all("dispatch");
    assert_eq!(
        dispatches.len() as u64,
        profiles
            .iter()
            .filter_map(|p| p["dispatches"].as_u64())
            .sum::<u64>()
    );
    assert!(dispatches
        .iter()
        .all(|d| d["timing"] == profiles[0]["timing"]));
    run.one("generation_16");
    assert_eq!(run.one("dispatch_floor")["dispatches"], 104);
    let conformance = run.all("conformance");
    assert_eq!(conformance.len(), 2, "both tilings");
    for c in conformance {
        assert_eq!(c["failed"], 0, "{c}");
        assert!(c["traces"].as_u64().is_some_and(|t| t > 0), "{c}");
        assert_eq!(c["traces"], c["traces_token_exact"], "{c}");
    }
    // PyTorch with CUDA is not installed here: the step says it was skipped, and why.
    let torch_skipped = run.all("skipped").iter().any(|s| s["step"] == "torch_cuda");
    assert!(torch_skipped || !run.all("pytorch").is_empty());
    assert_eq!(run.all("bench").len(), 6, "q4 and f32 after q8");
    let summary = run.one("summary");
    assert_eq!(summary["conformance_passed"], true);
    assert_eq!(summary["failed_steps"], serde_json::json!([]));
}

#[test]
fn no_adapter_fails_at_once_and_says_what_is_missing() {
    let hidden = [
        ("VK_ICD_FILENAMES", "/nonexistent.json"),
        ("VK_DRIVER_FILES", "/nonexistent.json"),
        ("WGPU_BACKEND", "vulkan"),
    ];
    let mut info = Command::new(bd3lm_binary());
    info.args(["info", "--backend", "gpu", "--json"]);
    for (k, v) in hidden {
        info.env(k, v);
    }
    let out = info.output().expect("run bd3lm info");
    assert!(!out.status.success(), "info without an adapter must fail");
    let line: Value = serde_json::from_slice(&out.stdout).expect("an error object");
    assert!(line["error"].is_string(), "{line}");

    let run = gpu_check("gpu-check-no-adapter", &bd3lm_binary(), &[], &hidden);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let adapter = run.one("adapter");
    assert!(adapter["error"]
        .as_str()
        .is_some_and(|e| e.contains("no GPU adapter")));
    assert!(adapter["vulkan_loader"].is_string(), "{adapter}");
    assert!(run.all("synth").is_empty(), "nothing after the adapter");
}

#[test]
fn a_software_adapter_is_refused_outside_a_rehearsal() {
    if software_adapter() != Some(true) {
        eprintln!("the native adapter is not a software one: nothing to refuse here");
        return;
    }
    let run = gpu_check("gpu-check-software", &bd3lm_binary(), &[], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.one("adapter")["software_adapter"], true);
    assert!(run.one("adapter_rejected")["error"].is_string());
    assert!(run.all("synth").is_empty(), "nothing after the adapter");
}

/// A stand-in for bd3lm on a hardware adapter whose conformance fails: the script must still
/// save every figure after it, then fail.
const STAND_IN: &str = r#"#!/bin/sh
case "$1" in
  --version) echo "bd3lm stand-in" ;;
  info) echo '{"figure":"adapter","adapter":"Stand-in GPU (Vulkan, DiscreteGpu)","device_type":"DiscreteGpu","software_adapter":false,"limits":{}}' ;;
  synth) mkdir -p "$3" && : > "$3/model.safetensors" ;;
  quantize) mkdir -p "$3" && : > "$3/manifest.json" ;;
  conformance) echo '{"check":"trace/0","status":"FAIL"}'; exit 1 ;;
  bench) echo '{"fill":0,"forwards_per_s":1.0,"weight_gbytes_per_s":2.0}' ;;
esac
"#;

#[test]
fn a_failed_conformance_check_fails_the_run_after_every_figure() {
    let dir = temp_dir("gpu-check-stand-in-bin");
    let binary = dir.join("bd3lm");
    std::fs::write(&binary, STAND_IN).expect("write the stand-in");
    let chmod = Command::new("chmod")
        .arg("+x")
        .arg(&binary)
        .status()
        .expect("chmod");
    assert!(chmod.success());
    let run = gpu_check(
        "gpu-check-stand-in",
        &binary,
        &[],
        &[("PEAK_GBPS", "4"), ("PYTHON", "/nonexistent/python3")],
    );
    assert_eq!(run.code, 1, "{:#?}\n{}", run.figures, run.stderr);
    let conformance = run.all("conformance");
    assert_eq!(conformance.len(), 2);
    assert_eq!(conformance[0]["failed"], 1);
    assert_eq!(run.all("conformance_failure").len(), 2);
    // q8, then q4 and f32 after the failed conformance: nothing lost.
    assert_eq!(run.all("bench").len(), 3, "{:#?}", run.figures);
    assert_eq!(run.all("bench")[0]["bandwidth_share"], 0.5);
    assert!(run.all("skipped").iter().any(|s| s["step"] == "torch_cuda"));
    assert_eq!(run.one("summary")["conformance_passed"], false);
}
