//! Writes the page's development package: the demo checkpoint quantized to q8 and cut into
//! small shards (so the page's multi-shard paths - progress, resume, per-shard verification -
//! are exercised even by a 6 MB model).
//!
//! Temporary: once `bd3lm quantize` writes the default package under `models/`, point the
//! `copy-dir` link in `web/index.html` at it and delete this example and the Trunk hook.
//!
//! `cargo run -p bd3lm-web --example make_dev_package -- [CHECKPOINT_DIR] [OUT_DIR]`

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use bd3lm::package::{self, SchemePlan, SpecialTokens};
    use bd3lm::quant::Scheme;
    use bd3lm::tokenizer::Tokenizer;
    use std::path::PathBuf;

    /// Small shards on purpose: about four shards for the demo model.
    const DEV_SHARD_BYTES: usize = 2_000_000;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = std::env::args().skip(1);
    let checkpoint = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models/bd3lm-sotu-tiny-bs4"));
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("web/dev-package"));

    let config = std::fs::read_to_string(checkpoint.join("config.json"))?;
    let weights = bd3lm::checkpoint::load_hf(
        &config,
        &std::fs::read(checkpoint.join("model.safetensors"))?,
    )?;
    let tokenizer_json = std::fs::read(checkpoint.join("tokenizer.json"))?;
    let tokenizer = Tokenizer::from_bytes(&tokenizer_json, weights.config.vocab_size)?;
    let special = SpecialTokens {
        bos: tokenizer.eos,
        eos: tokenizer.eos,
        mask: tokenizer.mask,
    };
    let quantized = package::quantize_weights(&weights, SchemePlan::for_format(Scheme::Q8));
    let source = serde_json::json!({ "checkpoint": "bd3lm-sotu-tiny-bs4", "made_by": "bd3lm-web example make_dev_package" });
    let pkg = package::build_package(
        "sotu-tiny-bs4-q8",
        "q8",
        &quantized,
        &tokenizer_json,
        special,
        source,
        DEV_SHARD_BYTES,
    )?;

    std::fs::create_dir_all(&out)?;
    for (name, bytes) in &pkg.files {
        std::fs::write(out.join(name), bytes)?;
    }
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&pkg.manifest)?,
    )?;
    println!(
        "wrote {} ({} files, {} bytes to download, {} bytes of GPU memory)",
        out.display(),
        pkg.files.len(),
        pkg.manifest.download_bytes,
        pkg.manifest.gpu_bytes
    );
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
