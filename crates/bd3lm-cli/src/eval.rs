//! `bd3lm eval`: the BD3-LM NELBO bound of a text file (spec §8.1).

use crate::backend::{self, Backend, DEFAULT_BACKEND};
use crate::error::{CliError, CliResult};
use crate::model::{self, ModelSource};
use crate::progress;
use bd3lm::eval::{self, EvalOptions};
use bd3lm::tokenizer::Tokenizer;
use bd3lm::Engine;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Package directory, Hugging Face directory, or Hub id owner/name[@revision] (an
    /// existing path wins); default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    hub: model::HubArgs,
    /// tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// UTF-8 text; a literal <|endoftext|> separates documents.
    #[arg(long)]
    text: PathBuf,
    /// Independent draws of noise levels and masks, averaged.
    #[arg(long, default_value_t = 1)]
    passes: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluate only this many sequences, spread evenly over the text.
    #[arg(long)]
    max_chunks: Option<usize>,
    #[arg(long, value_enum, default_value_t = DEFAULT_BACKEND, env = "BD3LM_BACKEND")]
    backend: Backend,
    /// Threads of the fast CPU engine (`--backend cpu`, or `auto` without a GPU); default:
    /// every core. Results are identical for every thread count.
    #[arg(long, env = "BD3LM_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    gpu: crate::backend::GpuArgs,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The evaluation sequences of a text file (spec §8.1 data layout).
pub fn text_chunks(tok: &Tokenizer, path: &Path, model_length: usize) -> CliResult<Vec<Vec<u32>>> {
    let bytes = std::fs::read(path).map_err(|e| CliError::io(path, e))?;
    let text =
        String::from_utf8(bytes).map_err(|e| CliError::io(path, format!("not UTF-8 text: {e}")))?;
    let ids = tok
        .encode(&text)
        .map_err(|e| CliError::core(path.display().to_string(), e))?;
    let chunks = eval::make_chunks(&ids, model_length, tok.eos, tok.eos)?;
    if chunks.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: {} tokens is less than one evaluation sequence ({} tokens between BOS and EOS)",
            path.display(),
            ids.len(),
            model_length - 2
        )));
    }
    Ok(chunks)
}

pub fn run(args: EvalArgs) -> CliResult<()> {
    if args.passes == 0 {
        return Err(CliError::Usage("--passes must be at least 1".into()));
    }
    if args.max_chunks == Some(0) {
        return Err(CliError::Usage("--max-chunks must be at least 1".into()));
    }
    let source = ModelSource::resolve_with(
        args.model.as_deref(),
        args.hub.format.scheme(),
        args.tokenizer.as_deref(),
    )?;
    let loaded = model::load(&source, args.tokenizer.as_deref())?;
    let cfg = loaded.config().clone();
    let all = text_chunks(loaded.tokenizer()?, &args.text, cfg.model_length)?;
    let picked = eval::spread_indices(all.len(), args.max_chunks.unwrap_or(all.len()));
    let chunks: Vec<Vec<u32>> = picked.iter().map(|&i| all[i].clone()).collect();
    let mut engine = backend::engine(args.backend, &loaded.weights, args.threads, &args.gpu)?;
    let opts = EvalOptions {
        passes: args.passes,
        seed: args.seed,
        ..EvalOptions::default()
    };
    eprintln!(
        "[bd3lm] {}: {} of {} sequences of {} tokens, {} pass(es), seed {}, backend {}",
        source.describe(),
        chunks.len(),
        all.len(),
        cfg.model_length,
        args.passes,
        args.seed,
        engine.describe()
    );
    let bar = progress::bar((chunks.len() * args.passes) as u64, "eval", "seq");
    let started = Instant::now();
    let result = pollster::block_on(eval::nelbo(&mut engine, &chunks, &opts, |done, _| {
        bar.set_position(done as u64)
    }))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let json = serde_json::json!({
            "model": source.short_name(),
            "format": loaded.format,
            "backend": backend::engine_backend(&engine).name(),
            "text": args.text.display().to_string(),
            "sequences": chunks.len(),
            "sequences_in_text": all.len(),
            "passes": args.passes,
            "seed": args.seed,
            "tokens_counted": result.tokens_counted,
            "nats_per_token": result.nats_per_token,
            "standard_error": result.standard_error,
            "perplexity_bound": result.perplexity_bound(),
            "seconds": seconds,
        });
        println!("{json}");
    } else {
        println!(
            "{:.4} nats/token (± {:.4} standard error over sequences)",
            result.nats_per_token, result.standard_error
        );
        println!("perplexity <= {:.2}", result.perplexity_bound());
        eprintln!(
            "[bd3lm] {} tokens counted in {seconds:.1} s ({} forwards)",
            result.tokens_counted,
            bd3lm::Engine::forward_count(&engine)
        );
    }
    Ok(())
}
