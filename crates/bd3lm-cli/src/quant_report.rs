//! `bd3lm quant-report`: the quality of each package format against f32 on the same inputs
//! (issue 5): the first N evaluation sequences of a text, noised per spec §8.1 (seed 0 by
//! default); every masked position compared through the SUBS distributions.

use crate::backend::{self, Backend};
use crate::error::{CliError, CliResult};
use crate::eval::text_chunks;
use crate::model::{self, ModelSource};
use crate::progress;
use bd3lm::eval::{noise_chunks, NoiseOptions};
use bd3lm::package::{self, quantize_weights_with, SchemePlan, SpecialTokens, MAX_SHARD_BYTES};
use bd3lm::quality::{compare_engines, QualityStats};
use bd3lm::quant::{Q4Fit, Scheme};
use bd3lm::rng::SplitMix64;
use bd3lm::{ReferenceEngine, Weights};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct QuantReportArgs {
    /// Hugging Face directory or Hub id (owner/name[@revision]) with the f32 checkpoint (or a
    /// package: it is the reference then).
    #[arg(long)]
    model: PathBuf,
    /// Text to noise (default: uniformly random tokens, e.g. for fixture models without a
    /// tokenizer).
    #[arg(long)]
    text: Option<PathBuf>,
    /// tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Sequences compared (the first ones of the text).
    #[arg(long, default_value_t = 32)]
    chunks: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Formats to compare (comma-separated; empty for only --plan candidates).
    #[arg(long, value_delimiter = ',', default_value = "f16,q8,q4")]
    formats: Vec<String>,
    /// Extra mixed plans `EMBEDDING:TRANSFORMER:LM_HEAD` (e.g. q8:q4:q8), repeatable.
    #[arg(long)]
    plan: Vec<String>,
    /// q4 encoder: the default range fit, or the least-squares refinement (for comparison).
    #[arg(long, value_enum, default_value_t = FitArg::Range)]
    q4_fit: FitArg,
    /// Engine that runs the quantized candidates: `reference` (exact, on dequantized weights)
    /// or `cpu` (the fast engine: stored weights, int8 activations for q8/q4). The f32
    /// baseline is always the exact reference.
    #[arg(long, value_enum, default_value_t = Backend::Reference)]
    backend: Backend,
    /// Threads of the fast CPU engine; default: every core.
    #[arg(long)]
    threads: Option<usize>,
    /// One JSON object per candidate instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FitArg {
    Range,
    LeastSquares,
}

fn parse_scheme(s: &str) -> CliResult<Scheme> {
    Scheme::parse(s)
        .ok_or_else(|| CliError::Usage(format!("unknown format `{s}` (f32, f16, q8, q4)")))
}

/// Candidates: (label, plan).
fn candidates(args: &QuantReportArgs) -> CliResult<Vec<(String, SchemePlan)>> {
    let mut out = Vec::new();
    for f in args.formats.iter().filter(|f| !f.is_empty()) {
        let scheme = parse_scheme(f)?;
        out.push((scheme.name().to_string(), SchemePlan::for_format(scheme)));
    }
    for p in &args.plan {
        let parts: Vec<&str> = p.split(':').collect();
        let [e, t, h] = parts[..] else {
            return Err(CliError::Usage(format!(
                "--plan {p}: expected EMBEDDING:TRANSFORMER:LM_HEAD, e.g. q8:q4:q8"
            )));
        };
        let plan = SchemePlan {
            embedding: parse_scheme(e)?,
            transformer: parse_scheme(t)?,
            lm_head: parse_scheme(h)?,
        };
        out.push((format!("{e}:{t}:{h}"), plan));
    }
    if out.is_empty() {
        return Err(CliError::Usage(
            "nothing to compare: give --formats or --plan".into(),
        ));
    }
    Ok(out)
}

/// Uniformly random token sequences (BOS first, then ids below MASK, EOS excluded).
fn random_chunks(
    count: usize,
    model_length: usize,
    vocab: usize,
    bos: u32,
    seed: u64,
) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(seed ^ 0xA5A5_5A5A_1234_5678);
    let regular = (vocab - 1) as u32;
    (0..count)
        .map(|_| {
            let mut seq = vec![bos];
            while seq.len() < model_length {
                let t = rng.below(regular as usize) as u32;
                if t != bos {
                    seq.push(t);
                }
            }
            seq
        })
        .collect()
}

/// Bytes of the package this plan produces (all files, manifest included), built in memory.
fn package_bytes(
    weights: &Weights,
    tokenizer_json: &[u8],
    special: &SpecialTokens,
    format: &str,
) -> CliResult<u64> {
    let pkg = package::build_package(
        "size",
        format,
        weights,
        tokenizer_json,
        special.clone(),
        serde_json::Value::Null,
        MAX_SHARD_BYTES,
    )?;
    let manifest =
        serde_json::to_string_pretty(&pkg.manifest).map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(pkg.files.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + manifest.len() as u64 + 1)
}

pub fn run(args: QuantReportArgs) -> CliResult<()> {
    let plans = candidates(&args)?;
    if args.chunks == 0 {
        return Err(CliError::Usage("--chunks must be at least 1".into()));
    }
    let source = ModelSource::resolve_checkpoint(&args.model)?;
    let loaded = model::load(&source, args.tokenizer.as_deref())?;
    let cfg = loaded.config().clone();
    let reference_weights = loaded.weights.dequantized();
    let (chunks, input) = match &args.text {
        Some(path) => {
            let all = text_chunks(loaded.tokenizer()?, path, cfg.model_length)?;
            let n = args.chunks.min(all.len());
            (
                all[..n].to_vec(),
                format!("first {n} sequences of {}", path.display()),
            )
        }
        None => {
            let bos = loaded
                .tokenizer
                .as_ref()
                .map_or((cfg.vocab_size - 2) as u32, |t| t.eos);
            (
                random_chunks(
                    args.chunks,
                    cfg.model_length,
                    cfg.vocab_size,
                    bos,
                    args.seed,
                ),
                format!("{} random-token sequences", args.chunks),
            )
        }
    };
    let mut rng = SplitMix64::new(args.seed);
    let noised = noise_chunks(
        &chunks,
        cfg.block_size,
        cfg.mask_id(),
        &mut rng,
        &NoiseOptions::default(),
    );
    let masked: usize = noised.iter().map(|c| c.masked_count(cfg.mask_id())).sum();
    eprintln!(
        "[bd3lm] {}: {input}, noised with seed {} ({masked} masked positions)",
        source.describe(),
        args.seed
    );

    let mut engines = Vec::new();
    let mut sizes = Vec::new();
    let tokenizer_json = loaded.tokenizer_json.clone().unwrap_or_default();
    let special = SpecialTokens {
        bos: loaded
            .tokenizer
            .as_ref()
            .map_or((cfg.vocab_size - 2) as u32, |t| t.eos),
        eos: loaded
            .tokenizer
            .as_ref()
            .map_or((cfg.vocab_size - 2) as u32, |t| t.eos),
        mask: cfg.mask_id(),
    };
    for (label, plan) in &plans {
        let fit = match args.q4_fit {
            FitArg::Range => Q4Fit::Range,
            FitArg::LeastSquares => Q4Fit::LeastSquares,
        };
        let q = quantize_weights_with(&reference_weights, *plan, fit);
        sizes.push(package_bytes(&q, &tokenizer_json, &special, label)?);
        engines.push(backend::engine(
            args.backend,
            &Arc::new(q),
            args.threads,
            &crate::backend::GpuArgs::default(),
        )?);
    }
    let used = engines
        .first()
        .map_or(args.backend, backend::engine_backend);
    let mut reference = ReferenceEngine::new(&reference_weights);
    let bar = progress::bar(noised.len() as u64, "comparing", "seq");
    let stats = pollster::block_on(compare_engines(
        &mut reference,
        &mut engines,
        &noised,
        |done, _| bar.set_position(done as u64),
    ))?;
    bar.finish_and_clear();
    report(&args, &source, used, &plans, &stats, &sizes, masked);
    Ok(())
}

fn report(
    args: &QuantReportArgs,
    source: &ModelSource,
    backend: Backend,
    plans: &[(String, SchemePlan)],
    stats: &[QualityStats],
    sizes: &[u64],
    masked: usize,
) {
    if !args.json {
        eprintln!("[bd3lm] candidates on backend {}", backend.name());
        println!("| format | embedding / transformer / LM head | top-1 agreement | largest f32 top-2 gap at a disagreement (nats) | mean KL (nats) | max KL | max abs logit err | NELBO f32 -> quant (nats/token) | package (all files) |");
        println!("|---|---|---|---|---|---|---|---|---|");
    }
    for (((label, plan), st), size) in plans.iter().zip(stats).zip(sizes) {
        let nelbo_ref = st.reference_loss / st.tokens.max(1) as f64;
        let nelbo_q = st.candidate_loss / st.tokens.max(1) as f64;
        if args.json {
            let json = serde_json::json!({
                "model": source.short_name(), "format": label, "backend": backend.name(),
                "embedding": plan.embedding.name(), "transformer": plan.transformer.name(), "lm_head": plan.lm_head.name(),
                "positions": st.positions, "masked_positions": masked,
                "top1_agreement": st.top1_agreement(), "kl_mean": st.kl_mean(), "kl_max": st.kl_max,
                "max_logit_err": st.max_logit_err, "max_disagreement_gap": st.max_disagreement_gap, "nelbo_f32": nelbo_ref, "nelbo_quant": nelbo_q,
                "package_bytes": size,
            });
            println!("{json}");
        } else {
            println!(
                "| {label} | {} / {} / {} | {:.3}% | {:.3} | {:.2e} | {:.2e} | {:.3} | {nelbo_ref:.4} -> {nelbo_q:.4} | {:.3} MB |",
                plan.embedding.name(),
                plan.transformer.name(),
                plan.lm_head.name(),
                100.0 * st.top1_agreement(),
                st.max_disagreement_gap,
                st.kl_mean(),
                st.kl_max,
                st.max_logit_err,
                *size as f64 / 1e6
            );
        }
    }
}
