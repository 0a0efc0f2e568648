//! `bd3lm generate`: drives the block-diffusion sampler, streaming text to stdout as blocks
//! are committed; progress, the denoising view (`--show-steps`) and stats go to stderr.

use crate::backend::{self, Backend, DEFAULT_BACKEND};
use crate::error::{CliError, CliResult};
use crate::model::{self, ModelSource};
use crate::sampling::SamplerFlags;
use bd3lm::generate::{Event, FinishReason, Generator, SamplingOptions};
use bd3lm::tokenizer::{StreamDecoder, Tokenizer};
use bd3lm::Engine;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Unicode block shown for a still-masked position in `--show-steps`.
const MASK_GLYPH: &str = "░";

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Package directory, Hugging Face directory, or Hub id owner/name[@revision] (an
    /// existing path wins); default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    hub: model::HubArgs,
    /// tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Text to continue (the sample starts with BOS either way).
    #[arg(long, default_value = "")]
    prompt: String,
    /// Tokens to generate after the prompt (rounded up to whole blocks); may exceed the
    /// model's context: the KV cache then slides.
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    #[command(flatten)]
    sampler: SamplerFlags,
    /// Nucleus mass (spec §9.4); 1 disables the filter.
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = DEFAULT_BACKEND, env = "BD3LM_BACKEND")]
    backend: Backend,
    /// Threads of the fast CPU engine (`--backend cpu`, or `auto` without a GPU); default:
    /// every core. Results are identical for every thread count.
    #[arg(long, env = "BD3LM_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    gpu: crate::backend::GpuArgs,
    /// Print each denoising step of each block on stderr (masked positions as ░).
    #[arg(long)]
    show_steps: bool,
    /// Stop at the first generated <|endoftext|> (spec §9.6 var_length).
    #[arg(long)]
    stop_at_eos: bool,
    /// Keep only the end of a prompt longer than the context instead of failing.
    #[arg(long)]
    truncate_prompt: bool,
}

/// Checks flag values that clap cannot (ranges, combinations).
fn sampling_options(args: &GenerateArgs, block_size: usize) -> CliResult<SamplingOptions> {
    if args.tokens == 0 {
        return Err(CliError::Usage("--tokens must be at least 1".into()));
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        return Err(CliError::Usage(format!(
            "--top-p must be in (0, 1], got {}",
            args.top_p
        )));
    }
    let sampler = args.sampler.kind(block_size)?;
    Ok(SamplingOptions {
        sampler,
        nucleus_p: args.top_p,
        seed: args.seed,
        stop_at_eos: args.stop_at_eos,
        ..SamplingOptions::default()
    })
}

/// `[BOS] + prompt ids`, shortened to its end when allowed and needed.
fn prompt_ids(
    tok: &Tokenizer,
    text: &str,
    model_length: usize,
    truncate: bool,
) -> CliResult<Vec<u32>> {
    let ids = tok.prompt(text)?;
    let max = model_length - 1;
    if ids.len() <= max {
        return Ok(ids);
    }
    if !truncate {
        return Err(CliError::Usage(format!(
            "{} (or pass --truncate-prompt to keep the last {} prompt tokens)",
            bd3lm::Error::PromptTooLong {
                tokens: ids.len(),
                max
            },
            max.saturating_sub(1)
        )));
    }
    eprintln!(
        "[bd3lm] prompt is {} tokens; keeping its last {} (context {model_length})",
        ids.len() - 1,
        max.saturating_sub(1)
    );
    let mut kept = vec![ids[0]];
    kept.extend_from_slice(&ids[ids.len() - max.saturating_sub(1)..]);
    Ok(kept)
}

/// Characters of committed text shown before the block in `--show-steps`.
const CONTEXT_CHARS: usize = 32;

/// One line of the denoising view: the end of the committed text, then the block between
/// `▕ ▏` with masked positions as ░.
fn render_block(tok: &Tokenizer, committed: &[u32], block: &[u32]) -> String {
    let visible = |s: String| s.replace('\n', "⏎");
    let tail = &committed[committed.len().saturating_sub(CONTEXT_CHARS)..];
    let context = visible(tok.decode(tail));
    let skip = context.chars().count().saturating_sub(CONTEXT_CHARS);
    let context: String = context.chars().skip(skip).collect();
    let block: String = block
        .iter()
        .map(|&t| {
            if t == tok.mask {
                MASK_GLYPH.to_string()
            } else {
                visible(tok.token_text(t))
            }
        })
        .collect();
    format!("{context:>width$}▕{block}▏", width = CONTEXT_CHARS)
}

struct Output {
    decoder: StreamDecoder,
    /// Absolute position up to which committed tokens were decoded.
    streamed: usize,
    /// Text held back until the end (when the step view shares the terminal with stdout).
    held: Option<String>,
}

impl Output {
    fn emit(&mut self, tok: &Tokenizer, committed: &[u32]) -> CliResult<()> {
        if committed.len() <= self.streamed {
            return Ok(());
        }
        let text = self.decoder.push(tok, &committed[self.streamed..]);
        self.streamed = committed.len();
        match &mut self.held {
            Some(held) => {
                held.push_str(&text);
                Ok(())
            }
            None => print_flush(&text),
        }
    }

    fn finish(&mut self, tok: &Tokenizer) -> CliResult<()> {
        let rest = self.decoder.finish(tok);
        let text = self.held.take().unwrap_or_default() + &rest;
        print_flush(&text)?;
        print_flush("\n")
    }
}

fn print_flush(text: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))
}

pub fn run(args: GenerateArgs) -> CliResult<()> {
    let source = ModelSource::resolve_with(
        args.model.as_deref(),
        args.hub.format.scheme(),
        args.tokenizer.as_deref(),
    )?;
    let loaded = model::load(&source, args.tokenizer.as_deref())?;
    let cfg = loaded.config().clone();
    let opts = sampling_options(&args, cfg.block_size)?;
    let tok = loaded.tokenizer()?;
    let prompt = prompt_ids(tok, &args.prompt, cfg.model_length, args.truncate_prompt)?;
    let prompt_len = prompt.len();
    let mut engine = backend::engine(args.backend, &loaded.weights, args.threads, &args.gpu)?;
    let mut gen = Generator::new(
        cfg.block_size,
        cfg.model_length,
        cfg.mask_id(),
        tok.eos,
        prompt.clone(),
        prompt_len.saturating_add(args.tokens).min(usize::MAX / 2),
        opts,
    )?;
    eprintln!(
        "[bd3lm] {} ({}), backend {}, {} tokens after a {}-token prompt, seed {}",
        source.describe(),
        loaded.format,
        engine.describe(),
        gen.total_len() - prompt_len,
        prompt_len,
        args.seed
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        eprintln!("[bd3lm] warning: Ctrl-C handler not installed ({e})");
    }

    // The step view and streamed text on one terminal would interleave mid-line: then the
    // text is printed once at the end (the step view shows the progress).
    let hold =
        args.show_steps && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let prompt_text = tok.decode(&prompt[1..]);
    let mut out = Output {
        decoder: StreamDecoder::new(),
        streamed: prompt_len,
        held: None,
    };
    if hold {
        out.held = Some(prompt_text);
    } else {
        print_flush(&prompt_text)?;
    }
    let started = Instant::now();
    let forwards_before = engine.forward_count();
    let mut reason = None;
    while !stop.load(Ordering::SeqCst) {
        match pollster::block_on(gen.next(&mut engine))? {
            Event::BlockStarted { block, tokens, .. } if args.show_steps => {
                let view = render_block(tok, gen.committed(), &tokens);
                eprintln!("block {block:>4} start   {view}");
            }
            Event::Step {
                block,
                step,
                tokens,
                ..
            } if args.show_steps => {
                let view = render_block(tok, gen.committed(), &tokens);
                eprintln!("block {block:>4} step {step:<3}{view}");
            }
            Event::BlockCommitted { .. } => out.emit(tok, gen.committed())?,
            Event::Finished { reason: r } => {
                reason = Some(r);
                break;
            }
            _ => {}
        }
    }
    out.finish(tok)?;
    let elapsed = started.elapsed().as_secs_f64();
    let generated = gen.committed().len().saturating_sub(prompt_len);
    let forwards = engine.forward_count() - forwards_before;
    let why = match reason {
        Some(FinishReason::Length) => "length reached",
        Some(FinishReason::Eos) => "end of text",
        Some(FinishReason::LowEntropy) => "low entropy",
        None => "interrupted",
    };
    eprintln!(
        "[bd3lm] {generated} tokens in {elapsed:.2} s ({:.1} tokens/s), {forwards} forwards ({:.2} per token), {why}",
        generated as f64 / elapsed.max(1e-9),
        forwards as f64 / generated.max(1) as f64
    );
    if reason.is_none() {
        return Err(CliError::Interrupted);
    }
    Ok(())
}
