//! Every WGSL kernel against a CPU loop on seeded random inputs, on the native adapter
//! (Mesa lavapipe here). The same bodies run in headless Chromium (tests/web.rs).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use bd3lm_gpu::{GpuContext, GpuOptions};

fn context() -> GpuContext {
    pollster::block_on(GpuContext::new(&GpuOptions::default()))
        .expect("a native GPU adapter (lavapipe: apt install mesa-vulkan-drivers)")
}

#[test]
fn gpu_smoke_add_and_reduce() {
    let ctx = context();
    println!("adapter: {}", ctx.adapter_summary());
    pollster::block_on(common::smoke(&ctx));
}

#[test]
fn gpu_matmul_variants_match_cpu() {
    pollster::block_on(common::matmul_variants(&context(), true));
}

#[test]
fn gpu_qkv_epilogue_in_both_tilings_matches_cpu() {
    pollster::block_on(common::qkv_epilogue(&context()));
}

#[test]
fn gpu_embedding_gather_and_layer_norm_match_cpu_for_every_block_size() {
    pollster::block_on(common::embed_formats(&context(), &common::BLOCK_SIZES));
}

#[test]
fn gpu_residual_and_layer_norm_match_cpu() {
    pollster::block_on(common::residual_norm(&context()));
}

#[test]
fn gpu_matrix_split_over_two_bindings_matches_cpu() {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions {
        max_binding_bytes: Some(16 << 10),
        ..Default::default()
    }))
    .expect("adapter");
    pollster::block_on(common::split_bindings(&ctx));
}

#[test]
fn gpu_attention_over_ring_cache_matches_cpu() {
    let ctx = context();
    pollster::block_on(common::attention_ring(&ctx, &common::BLOCK_SIZES));
    // WebGPU's default workgroup memory (shorter key tiles) where the adapter offers more.
    let baseline = pollster::block_on(GpuContext::new(&GpuOptions {
        baseline: true,
        ..Default::default()
    }))
    .expect("GPU adapter");
    assert_eq!(baseline.workgroup_bytes(), 16 << 10);
    if ctx.workgroup_bytes() > baseline.workgroup_bytes() {
        pollster::block_on(common::attention_ring(&baseline, &common::BLOCK_SIZES));
    }
}

#[test]
fn gpu_sampling_modes_match_cpu() {
    pollster::block_on(common::sampling_modes(&context()));
}

#[test]
fn gpu_parallel_reveal_stages_select_as_the_core_does() {
    pollster::block_on(common::reveal_rules(&context()));
}

#[test]
fn no_adapter_is_a_clean_typed_error() {
    // No backend compiled for this OS can be found: request only the ones that are absent.
    let backends = if cfg!(target_os = "linux") {
        wgpu::Backends::METAL | wgpu::Backends::DX12
    } else {
        wgpu::Backends::empty()
    };
    let err = pollster::block_on(GpuContext::new(&GpuOptions {
        backends: Some(backends),
        ..Default::default()
    }))
    .err()
    .expect("no adapter");
    assert!(
        matches!(err, bd3lm_gpu::GpuError::NoAdapter { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("--backend cpu") && text.contains("lavapipe"),
        "actionable message: {text}"
    );
}
