//! `bd3lm info`: what a model is and what running it takes.

use crate::backend::{gpu_adapter_report, Backend, DEFAULT_BACKEND};
use crate::error::CliResult;
use crate::model::{self, LoadedModel, ModelSource};
use bd3lm::weights::kv_cache_bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Package directory, Hugging Face directory, or Hub id owner/name[@revision] (an
    /// existing path wins); default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    hub: model::HubArgs,
    /// tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Backend whose adapter to describe.
    #[arg(long, value_enum, default_value_t = DEFAULT_BACKEND, env = "BD3LM_BACKEND")]
    backend: Backend,
    #[command(flatten)]
    gpu: crate::backend::GpuArgs,
    /// One JSON object: the model's shape and, for the GPU backends, the adapter and its
    /// limits (what `scripts/gpu-check.sh` records).
    #[arg(long)]
    json: bool,
}

/// `info --json`: the model and the adapter with its limits and features, one line; without
/// an adapter (GPU backend) an object with the error, and a non-zero exit.
fn json_report(args: &InfoArgs, model: &LoadedModel, source: &ModelSource) -> CliResult<()> {
    let cfg = model.config();
    let mut out = serde_json::json!({
        "figure": "adapter",
        "model": source.short_name(),
        "parameters": cfg.parameter_count(),
        "block_size": cfg.block_size,
        "backend": args.backend.name(),
    });
    let gpu = match args.backend {
        Backend::Cpu => None,
        _ => Some(crate::backend::gpu_context(&args.gpu)),
    };
    let mut failure = None;
    let fields = match gpu {
        None => serde_json::json!({}),
        Some(Ok(ctx)) => {
            let limits: serde_json::Map<String, serde_json::Value> = ctx
                .limit_figures()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            serde_json::json!({
                "adapter": ctx.adapter_summary(),
                "adapter_backend": format!("{:?}", ctx.info.backend),
                "device_type": format!("{:?}", ctx.info.device_type),
                "vendor_id": format!("{:#06x}", ctx.info.vendor),
                "device_id": format!("{:#06x}", ctx.info.device),
                "driver": format!("{} {}", ctx.info.driver, ctx.info.driver_info),
                "software_adapter": ctx.is_software(),
                "gpu_tiling": ctx.tiling.name(),
                "workgroup_bytes": ctx.workgroup_bytes(),
                "limits": limits,
                "features": ctx.feature_names(),
            })
        }
        Some(Err(e)) => {
            let fields = serde_json::json!({ "error": e.to_string() });
            failure = Some(e);
            fields
        }
    };
    if let (Some(obj), Some(more)) = (out.as_object_mut(), fields.as_object()) {
        obj.extend(more.clone());
    }
    println!("{out}");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Counts of matrices and their bytes per scheme.
fn scheme_summary(model: &LoadedModel) -> String {
    let w = &model.weights;
    let mut by_scheme: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut add = |m: &bd3lm::quant::Matrix| {
        let e = by_scheme.entry(m.scheme().name()).or_default();
        e.0 += 1;
        e.1 += m.bytes();
    };
    add(&w.embedding);
    add(&w.lm_head);
    for l in &w.layers {
        for (_, m) in l.matrices() {
            add(m);
        }
    }
    by_scheme
        .iter()
        .map(|(s, (n, b))| format!("{s}: {n} matrices, {}", mb(*b as u64)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The largest single weight tensor (what a GPU storage-buffer binding must hold).
fn largest_tensor_bytes(model: &LoadedModel) -> usize {
    let w = &model.weights;
    let mut largest = w.embedding.bytes().max(w.lm_head.bytes());
    for l in &w.layers {
        for (_, m) in l.matrices() {
            largest = largest.max(m.bytes());
        }
    }
    largest
}

pub fn run(args: InfoArgs) -> CliResult<()> {
    let source = ModelSource::resolve_with(
        args.model.as_deref(),
        args.hub.format.scheme(),
        args.tokenizer.as_deref(),
    )?;
    let model = model::load(&source, args.tokenizer.as_deref())?;
    if args.json {
        return json_report(&args, &model, &source);
    }
    let cfg = model.config();
    let (emb, transformer, head) = model.weights.schemes();
    println!("model:        {}", source.describe());
    if let Some(m) = &model.manifest {
        println!(
            "package:      {} (format version {}, {})",
            m.name, m.format_version, m.quantization
        );
    }
    println!(
        "config:       vocab {} | hidden {} | heads {} (dim {}) | layers {} | cond {} | context {} | block {}",
        cfg.vocab_size,
        cfg.hidden_dim,
        cfg.n_heads,
        cfg.head_dim(),
        cfg.n_layers,
        cfg.cond_dim,
        cfg.model_length,
        cfg.block_size
    );
    println!(
        "parameters:   {} in the checkpoint; {} stored (adaLN folded into constants)",
        cfg.parameter_count(),
        model.weights.parameter_count()
    );
    println!(
        "schemes:      embedding {}, transformer {}, LM head {} ({})",
        emb.name(),
        transformer.name(),
        head.name(),
        scheme_summary(&model)
    );
    let kv = kv_cache_bytes(cfg) as u64;
    println!(
        "sizes:        files {}, weights as stored {}, KV cache (f32, full context) {}",
        mb(model.file_bytes),
        mb(model.weights.stored_bytes() as u64),
        mb(kv)
    );
    match &model.tokenizer {
        Some(tok) => println!(
            "tokenizer:    {} tokens; <|endoftext|> (BOS = EOS) = {}, MASK = {} (not a tokenizer token)",
            cfg.vocab_size - 1,
            tok.eos,
            tok.mask
        ),
        None => println!("tokenizer:    none (pass --tokenizer FILE); MASK = {}", cfg.mask_id()),
    }
    let needs = format!(
        "needs {} of device memory, largest buffer {}",
        mb(model.weights.stored_bytes() as u64 + kv),
        mb(largest_tensor_bytes(&model) as u64)
    );
    let fast_cpu = || {
        let simd = bd3lm_cpu::CpuOptions::from_env(None)
            .ok()
            .and_then(|o| o.simd)
            .unwrap_or_else(bd3lm_cpu::Simd::detect);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!(
            "fast CPU engine, {} kernels, {threads} threads by default; weights as stored, {} with the KV cache",
            simd.name(),
            mb(model.weights.stored_bytes() as u64 + kv)
        )
    };
    match args.backend {
        Backend::Auto => match gpu_adapter_report(&args.gpu) {
            Ok(report) if !report.starts_with("software") => {
                println!("backend:      auto -> gpu: {report}; {needs}")
            }
            Ok(report) => println!(
                "backend:      auto -> cpu ({}; the only adapter is a software one: {report})",
                fast_cpu()
            ),
            Err(e) => println!("backend:      auto -> cpu ({}; no GPU adapter: {e})", fast_cpu()),
        },
        Backend::Cpu => println!("backend:      cpu ({})", fast_cpu()),
        Backend::Reference => println!(
            "backend:      reference (exact f32/f64 CPU reference; matrices dequantized to f32 in memory)"
        ),
        Backend::Gpu => match gpu_adapter_report(&args.gpu) {
            Ok(report) => println!("backend:      gpu: {report}; {needs}"),
            Err(e) => println!("backend:      gpu unavailable ({e}); {needs}"),
        },
    }
    if matches!(args.backend, Backend::Cpu | Backend::Reference) {
        println!("gpu:          {needs} (see `bd3lm info --backend gpu`)");
    }
    Ok(())
}
