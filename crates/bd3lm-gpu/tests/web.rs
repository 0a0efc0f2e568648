//! The browser half of the GPU tests: the same kernel checks and the full fixture conformance,
//! run by `wasm-bindgen-test` in headless Chromium on its WebGPU adapter (SwiftShader). The
//! default tiling there is the software one; the hardware tiling (the GPU's kernels, forced,
//! several times slower on SwiftShader) runs every kernel test, every fixture's teacher-forced
//! and nucleus checks (the 50,258-token fixture's draws on the sampler's many-tile grid among
//! them), one first-hitting trace (the smallest fixture's: the traces of every fixture in both
//! tilings run natively on lavapipe, with the same WGSL) and the per-block loop against the
//! per-step path, without replaying every trace a second time.
//!
//! Test data: fixture files are fetched over HTTP from the fixture server the test command
//! starts (`scripts/serve-fixtures.py`, CORS enabled), at `BD3LM_FIXTURE_URL` (compile time;
//! default `http://127.0.0.1:8765/`). Nothing large is embedded in the test binary.
#![cfg(target_arch = "wasm32")]

mod common;

use bd3lm::conformance::{self, Summary, Tolerances};
use bd3lm::fixture::Fixture;
use bd3lm::ReferenceEngine;
use bd3lm_gpu::{GpuContext, GpuEngine, GpuError, GpuOptions, Tiling};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const FIXTURE_URL: &str = match option_env!("BD3LM_FIXTURE_URL") {
    Some(u) => u,
    None => "http://127.0.0.1:8765/",
};

async fn fetch(path: &str) -> Vec<u8> {
    let url = format!("{FIXTURE_URL}{path}");
    let window = web_sys::window().expect("a window");
    let resp = JsFuture::from(window.fetch_with_str(&url))
        .await
        .unwrap_or_else(|e| panic!("fetch {url} failed ({e:?}): is the fixture server running (scripts/serve-fixtures.py)?"));
    let resp: web_sys::Response = resp.dyn_into().expect("a Response");
    assert!(resp.ok(), "GET {url}: HTTP {}", resp.status());
    let buf = JsFuture::from(resp.array_buffer().expect("array_buffer"))
        .await
        .expect("body");
    js_sys::Uint8Array::new(&buf).to_vec()
}

/// The fixture cases the server has (`/cases.json`, see `scripts/serve-fixtures.py`).
async fn cases() -> Vec<String> {
    let index = fetch("cases.json").await;
    let cases: Vec<String> = serde_json::from_slice(&index).expect("cases.json is a list");
    assert!(cases.len() >= 3, "the three shared cases: {cases:?}");
    cases
}

async fn fixture(case: &str) -> Fixture {
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
    let config = text(fetch(&format!("{case}/config.json")).await);
    let notes = text(fetch(&format!("{case}/notes.json")).await);
    let model = fetch(&format!("{case}/model.safetensors")).await;
    let golden = fetch(&format!("{case}/golden.safetensors")).await;
    Fixture::from_bytes(case, &config, &model, &golden, &notes).expect("fixture loads")
}

async fn context_with(opts: GpuOptions) -> GpuContext {
    GpuContext::new(&opts)
        .await
        .expect("WebGPU adapter (Chromium needs --enable-unsafe-webgpu)")
}

async fn context() -> GpuContext {
    context_with(GpuOptions::default()).await
}

#[wasm_bindgen_test]
async fn webgpu_smoke_add_and_reduce() {
    let ctx = context().await;
    web_sys::console::log_1(&format!("adapter: {}", ctx.adapter_summary()).into());
    common::smoke(&ctx).await;
}

#[wasm_bindgen_test]
async fn webgpu_kernels_match_cpu() {
    let ctx = context().await;
    common::matmul_variants(&ctx, false).await;
    common::qkv_epilogue(&ctx).await;
    common::embed_formats(&ctx, &common::BLOCK_SIZES).await;
    common::residual_norm(&ctx).await;
    common::attention_ring(&ctx, &common::BLOCK_SIZES).await;
    common::sampling_modes(&ctx).await;
    common::reveal_rules(&ctx).await;
    let small = context_with(GpuOptions {
        max_binding_bytes: Some(16 << 10),
        ..Default::default()
    })
    .await;
    common::split_bindings(&small).await;
}

#[wasm_bindgen_test]
async fn webgpu_missing_backend_is_a_clean_typed_error() {
    let err = GpuContext::new(&GpuOptions {
        backends: Some(wgpu::Backends::GL),
        ..Default::default()
    })
    .await
    .err()
    .expect("no adapter");
    assert!(matches!(err, GpuError::NoAdapter { .. }), "{err}");
    assert!(
        err.to_string().contains("WebGPU"),
        "actionable message: {err}"
    );
}

#[wasm_bindgen_test]
async fn webgpu_conformance_on_every_fixture() {
    conformance_on(context().await, None).await;
}

/// The hardware tiling: every fixture's teacher-forced and nucleus checks, the first-hitting
/// trace of the block-4 fixture (run block by block, as generation runs), and a short
/// generation per block against per step.
#[wasm_bindgen_test]
async fn webgpu_hardware_tiling_conformance() {
    let ctx = context_with(GpuOptions {
        tiling: Tiling::Hardware,
        ..Default::default()
    })
    .await;
    assert_eq!(ctx.tiling, Tiling::Hardware);
    conformance_on(ctx.clone(), Some("tiny-v512-bs4")).await;
    let fx = fixture("tiny-v512-bs4").await;
    let mut gpu = GpuEngine::from_weights(&ctx, &fx.weights)
        .await
        .expect("engine builds");
    common::short_per_block_matches_per_step(&fx, &mut gpu, 3).await;
}

/// Every fixture's checks on `ctx`; with `traces_of`, the sampler traces of that fixture only
/// (its first first-hitting one).
async fn conformance_on(ctx: GpuContext, traces_of: Option<&str>) {
    let tiling = ctx.tiling;
    let mut summary = Summary::default();
    for case in cases().await {
        let mut fx = fixture(&case).await;
        if let Some(keep) = traces_of {
            fx.traces.retain(|t| t.first_hitting && case == keep);
            fx.traces.truncate(1);
        }
        let started = js_sys::Date::now();
        let mut gpu = GpuEngine::from_weights(&ctx, &fx.weights)
            .await
            .expect("engine builds");
        // Visible with `-- --nocapture`: SwiftShader compiles each new pipeline slowly.
        web_sys::console::log_1(
            &format!(
                "webgpu {tiling} {case}: engine built in {:.0} ms ({} pipelines on the device)",
                js_sys::Date::now() - started,
                gpu.pipeline_count()
            )
            .into(),
        );
        let (mut shown, mut t0) = (0, js_sys::Date::now());
        let mut observe = |results: &[conformance::CheckResult]| {
            let now = js_sys::Date::now();
            for r in &results[shown..] {
                web_sys::console::log_1(
                    &format!("webgpu {tiling} {} [{:.0} ms]", r.line(), now - t0).into(),
                );
            }
            (shown, t0) = (results.len(), now);
        };
        let results = conformance::run_observed(&fx, &mut gpu, Tolerances::GPU, &mut observe).await;
        summary.add(&results);
    }
    match traces_of {
        // Cases whose traces were left out on purpose: only the failures count.
        Some(_) => assert!(
            summary.failures.is_empty() && summary.cases >= 3,
            "{tiling} tiling: {summary:?}"
        ),
        None => {
            if let Err(problems) = summary.verdict() {
                panic!("{tiling} tiling: {problems}");
            }
        }
    }
}

#[wasm_bindgen_test]
async fn wasm_cpu_reference_conformance() {
    let fx = fixture("tiny-v512-bs4").await;
    let mut cpu = ReferenceEngine::new(&fx.weights);
    let results = conformance::run(&fx, &mut cpu, Tolerances::CPU).await;
    assert!(results.len() > 10, "{} checks", results.len());
    // The NaN-proof comparison in the browser: a NaN or an infinity planted in one logit fails.
    let (block, logits) = conformance::teacher_forced_logits(&fx, &mut cpu)
        .await
        .expect("logits");
    let planted = conformance::planted_non_finite_problems(&fx, &block, &logits, Tolerances::CPU)
        .expect("checks run");
    assert!(planted.is_empty(), "{}", planted.join("\n"));
    let mut summary = Summary::default();
    summary.add(&results);
    if let Err(problems) = summary.verdict() {
        panic!("{problems}");
    }
}

/// The fast CPU engine built for the browser (SIMD128 kernels) on every fixture, at the CPU
/// tolerance with every trace token-exact; the portable kernels on one fixture as well.
#[wasm_bindgen_test]
async fn wasm_fast_cpu_engine_conformance_with_simd128() {
    use bd3lm_cpu::{CpuOptions, Simd};
    assert_eq!(
        Simd::detect(),
        Simd::Simd128,
        "the wasm build has SIMD128 (.cargo/config.toml)"
    );
    let mut summary = Summary::default();
    for case in cases().await {
        let fx = fixture(&case).await;
        let families: &[Simd] = if case == "tiny-v512-bs4" {
            &[Simd::Simd128, Simd::Portable]
        } else {
            &[Simd::Simd128]
        };
        for &simd in families {
            let options = CpuOptions {
                threads: None,
                simd: Some(simd),
                ..CpuOptions::default()
            };
            let mut cpu = bd3lm_cpu::CpuEngine::new(fx.weights.clone(), options).expect("engine");
            let results = conformance::run(&fx, &mut cpu, Tolerances::CPU).await;
            for r in &results {
                web_sys::console::log_1(&format!("wasm cpu {} {}", simd.name(), r.line()).into());
                assert!(
                    !r.check.starts_with("trace/") || r.first_divergence.is_none(),
                    "{}: trace not token-exact",
                    r.line()
                );
            }
            summary.add(&results);
        }
    }
    if let Err(problems) = summary.verdict() {
        panic!("{problems}");
    }
}
