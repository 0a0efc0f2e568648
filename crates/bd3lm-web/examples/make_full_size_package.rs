//! Writes a q8 package of a random model with the released BD3-LM shapes (12 layers, 768 wide,
//! GPT-2 vocabulary, 1024-token context) for the page's manual full-size check (docs/web.md).
//! The weights are noise with sane scales, so the text is gibberish; what the check exercises
//! is the size: 64 MB shards, ~170 MB to download, the GPU memory, the engines' limits.
//!
//! Stand-in until `bd3lm synth` + `bd3lm quantize` are on main; it uses the same core
//! functions (`quantize_weights`, `build_package`), so the package format is the same.
//!
//! `cargo run --release -p bd3lm-web --example make_full_size_package -- OUT_DIR [BLOCK_SIZE]`

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use bd3lm::package::{self, SchemePlan, SpecialTokens, MAX_SHARD_BYTES};
    use bd3lm::quant::{Matrix, Scheme};
    use bd3lm::rng::SplitMix64;
    use bd3lm::tokenizer::Tokenizer;
    use bd3lm::weights::{LayerWeights, Weights};
    use bd3lm::Config;
    use std::path::PathBuf;

    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: make_full_size_package OUT_DIR [BLOCK_SIZE]")?,
    );
    let block_size: usize = args.next().map(|b| b.parse()).transpose()?.unwrap_or(4);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tokenizer_path = [
        "/work/shared/tokenizers/gpt2/tokenizer.json",
        "tests/fixtures/gpt2/tokenizer.json",
    ]
    .iter()
    .map(|p| root.join(p))
    .find(|p| p.exists())
    .ok_or("no GPT-2 tokenizer.json found")?;
    let tokenizer_json = std::fs::read(&tokenizer_path)?;

    let config = Config::released(block_size);
    let tokenizer = Tokenizer::from_bytes(&tokenizer_json, config.vocab_size)?;
    let (v, h, c) = (config.vocab_size, config.hidden_dim, config.cond_dim);
    let mut rng = SplitMix64::new(20251127);
    // Approximately normal values: the sum of four uniforms, centred and scaled to unit variance.
    let mut noise = |n: usize, offset: f32, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let s: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0;
                offset + scale * (s * 3f64.sqrt()) as f32
            })
            .collect()
    };
    let linear = |noise: &mut dyn FnMut(usize, f32, f32) -> Vec<f32>, rows: usize, cols: usize| {
        Matrix::from_f32(
            rows,
            cols,
            noise(rows * cols, 0.0, 1.0 / (cols as f32).sqrt()),
        )
    };
    let mut layers = Vec::new();
    for _ in 0..config.n_layers {
        layers.push(LayerWeights {
            norm1: noise(h, 1.0, 0.1),
            qkv: linear(&mut noise, 3 * h, h),
            attn_out: linear(&mut noise, h, h),
            norm2: noise(h, 1.0, 0.1),
            mlp_in: linear(&mut noise, 4 * h, h),
            mlp_in_bias: noise(4 * h, 0.0, 0.02),
            mlp_out: linear(&mut noise, h, 4 * h),
            mlp_out_bias: noise(h, 0.0, 0.02),
            // shift/scale around 0, gates around 0.3: every layer contributes.
            modulation: noise(6 * h, 0.0, 0.3),
        });
    }
    let weights = Weights {
        cond: noise(c, 0.0, 1.0),
        inv_freq: bd3lm::checkpoint::default_inv_freq(config.head_dim()),
        embedding: Matrix::from_f32(v, h, noise(v * h, 0.0, 1.0)),
        layers,
        final_norm: noise(h, 1.0, 0.1),
        final_modulation: noise(2 * h, 0.0, 0.3),
        lm_head: Matrix::from_f32(v, h, noise(v * h, 0.0, 2.0 / (h as f32).sqrt())),
        lm_head_bias: noise(v, 0.0, 0.1),
        config,
    };
    let quantized = package::quantize_weights(&weights, SchemePlan::for_format(Scheme::Q8));
    drop(weights);
    let special = SpecialTokens {
        bos: tokenizer.eos,
        eos: tokenizer.eos,
        mask: tokenizer.mask,
    };
    let source = serde_json::json!({ "synthetic": "released shapes, random weights", "made_by": "bd3lm-web example make_full_size_package" });
    let name = format!("synthetic-full-bs{block_size}-q8");
    let pkg = package::build_package(
        &name,
        "q8",
        &quantized,
        &tokenizer_json,
        special,
        source,
        MAX_SHARD_BYTES,
    )?;
    std::fs::create_dir_all(&out)?;
    for (file, bytes) in &pkg.files {
        std::fs::write(out.join(file), bytes)?;
    }
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&pkg.manifest)?,
    )?;
    println!(
        "wrote {}: {} parameters stored, {} files, {} bytes to download, {} bytes of GPU memory",
        out.display(),
        pkg.manifest.parameters,
        pkg.files.len(),
        pkg.manifest.download_bytes,
        pkg.manifest.gpu_bytes
    );
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
