//! `bd3lm sample-stats`: for each sampler setting, N samples after short prompts and N
//! unprompted, then per setting: model calls per token, tokens/s, the samples' own NELBO
//! (same eval noise for every setting) and their unigram entropy, each mean with a 95 %
//! interval, and the change against the first setting (docs/sampling.md).

use crate::backend::{self, Backend, DEFAULT_BACKEND};
use crate::error::{CliError, CliResult};
use crate::model::{self, ModelSource};
use bd3lm::generate::SamplingOptions;
use bd3lm::sample_stats::{self, Sample, SettingStats};
use bd3lm::tokenizer::Tokenizer;
use bd3lm::{Engine, SamplerKind};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// The table of docs/sampling.md: the two exact samplers, then the parallel ones.
const DEFAULT_SETTINGS: &str = "first-hitting,posterior:16,confidence:0.05,confidence:0.1,confidence:0.2,confidence:0.5,confidence:0.7,confidence:0.8,confidence:0.9,confidence:0.95,confidence:0.99,entropy:1,entropy:2,entropy:4,entropy:8,entropy:16,entropy:32";

/// Short prompts for the prompted samples (sample i uses prompt i mod 16).
const SHORT_PROMPTS: [&str; 16] = [
    "The",
    "In the year",
    "We have",
    "It is",
    "The people of",
    "Our country",
    "I recommend",
    "The Government",
    "During the past",
    "There is",
    "The great",
    "This is",
    "My fellow",
    "The report of",
    "In my judgment",
    "Congress",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Prompted,
    Unprompted,
    Both,
}

#[derive(clap::Args)]
pub struct SampleStatsArgs {
    /// Package directory or Hugging Face directory; default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DEFAULT_BACKEND, env = "BD3LM_BACKEND")]
    backend: Backend,
    /// Threads of the fast CPU engine (`--backend cpu`, or `auto` without a GPU); default:
    /// every core. Results are identical for every thread count.
    #[arg(long, env = "BD3LM_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    gpu: crate::backend::GpuArgs,
    /// Comma-separated settings: first-hitting, posterior[:steps], confidence[:threshold],
    /// entropy[:gamma]; the first is the baseline of the relative columns.
    #[arg(long, default_value = DEFAULT_SETTINGS)]
    settings: String,
    /// Samples per setting and mode.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Tokens generated per sample (rounded up to whole blocks).
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// A file with one prompt per line, used in turn (default: 16 built-in short prompts).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Nucleus mass for every setting.
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    /// Sample i of every setting uses seed `seed + i`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noise draws per sample for its NELBO; sample i uses eval seed `eval_seed + i` in every
    /// setting.
    #[arg(long, default_value_t = 4)]
    eval_passes: usize,
    #[arg(long, default_value_t = 1_000_003)]
    eval_seed: u64,
    /// One JSON object per setting and mode instead of the table.
    #[arg(long)]
    json: bool,
}

struct Row {
    setting: String,
    mode: &'static str,
    stats: SettingStats,
    tokens_per_s: f64,
}

fn prompts(args: &SampleStatsArgs) -> CliResult<Vec<String>> {
    let Some(path) = &args.prompts else {
        return Ok(SHORT_PROMPTS.iter().map(|s| s.to_string()).collect());
    };
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if lines.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: no prompt in it",
            path.display()
        )));
    }
    Ok(lines)
}

fn check(args: &SampleStatsArgs, kinds: &[SamplerKind], context: usize) -> CliResult<()> {
    if args.samples == 0 || args.tokens == 0 || args.eval_passes == 0 {
        return Err(CliError::Usage(
            "--samples, --tokens and --eval-passes must be at least 1".into(),
        ));
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        return Err(CliError::Usage(format!(
            "--top-p must be in (0, 1], got {}",
            args.top_p
        )));
    }
    if kinds.is_empty() {
        return Err(CliError::Usage("--settings names no setting".into()));
    }
    if args.tokens + 32 > context {
        return Err(CliError::Usage(format!(
            "--tokens {} leaves no room for a prompt in the model's {context}-token context (the NELBO needs the whole sample in one window)",
            args.tokens
        )));
    }
    Ok(())
}

pub fn run(args: SampleStatsArgs) -> CliResult<()> {
    let kinds: Vec<SamplerKind> = args
        .settings
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(sample_stats::parse_setting)
        .collect::<Result<_, _>>()?;
    let source = ModelSource::resolve(args.model.as_deref())?;
    let loaded = model::load(&source, args.tokenizer.as_deref())?;
    let cfg = loaded.config().clone();
    check(&args, &kinds, cfg.model_length)?;
    let tok = loaded.tokenizer()?;
    let prompt_texts = prompts(&args)?;
    let mut engine = backend::engine(args.backend, &loaded.weights, args.threads, &args.gpu)?;
    eprintln!(
        "[bd3lm] sample-stats: {} ({}), backend {}, {} setting(s) x {} sample(s) of {} tokens, {:?}",
        source.describe(),
        loaded.format,
        engine.describe(),
        kinds.len(),
        args.samples,
        args.tokens,
        args.mode
    );
    let modes: &[(&str, bool)] = match args.mode {
        Mode::Prompted => &[("prompted", true)],
        Mode::Unprompted => &[("unprompted", false)],
        Mode::Both => &[("prompted", true), ("unprompted", false)],
    };
    let mut rows = Vec::new();
    for &(mode, prompted) in modes {
        for kind in &kinds {
            let row = run_setting(&args, &mut engine, tok, kind, &prompt_texts, prompted)?;
            let row = Row {
                mode,
                setting: sample_stats::setting_name(kind),
                ..row
            };
            if args.json {
                println!("{}", row_json(&row));
            }
            rows.push(row);
        }
    }
    if !args.json {
        print_table(&rows);
    }
    Ok(())
}

fn run_setting(
    args: &SampleStatsArgs,
    engine: &mut backend::AnyEngine,
    tok: &Tokenizer,
    kind: &SamplerKind,
    prompt_texts: &[String],
    prompted: bool,
) -> CliResult<Row> {
    let mut samples: Vec<Sample> = Vec::with_capacity(args.samples);
    let mut seconds = 0.0;
    for i in 0..args.samples {
        let prompt = if prompted {
            tok.prompt(&prompt_texts[i % prompt_texts.len()])?
        } else {
            vec![tok.eos]
        };
        let opts = SamplingOptions {
            sampler: *kind,
            nucleus_p: args.top_p,
            seed: args.seed + i as u64,
            ..SamplingOptions::default()
        };
        let started = Instant::now();
        let sample = pollster::block_on(sample_stats::generate(
            engine,
            prompt,
            args.tokens,
            opts,
            tok.eos,
        ))?;
        seconds += started.elapsed().as_secs_f64();
        samples.push(sample);
    }
    let mut nelbos = Vec::with_capacity(samples.len());
    for (i, sample) in samples.iter().enumerate() {
        nelbos.push(pollster::block_on(sample_stats::conditional_nelbo(
            engine,
            sample,
            args.eval_passes,
            args.eval_seed + i as u64,
        ))?);
    }
    let stats = sample_stats::summarize(&samples, &nelbos);
    eprintln!(
        "[bd3lm] {:<16} {}: {:.3} calls/token, NELBO {:.3}",
        sample_stats::setting_name(kind),
        if prompted { "prompted" } else { "unprompted" },
        stats.calls_per_token,
        stats.nelbo.0
    );
    Ok(Row {
        setting: String::new(),
        mode: "",
        tokens_per_s: stats.generated_tokens as f64 / seconds.max(1e-9),
        stats,
    })
}

fn row_json(row: &Row) -> String {
    let s = &row.stats;
    json!({
        "setting": row.setting, "mode": row.mode, "samples": s.samples,
        "generated_tokens": s.generated_tokens, "calls_per_token": s.calls_per_token,
        "tokens_per_s": row.tokens_per_s, "nelbo": s.nelbo.0, "nelbo_ci95": s.nelbo.1,
        "unigram_entropy": s.unigram_entropy.0, "unigram_entropy_ci95": s.unigram_entropy.1,
    })
    .to_string()
}

/// A Markdown table per mode, with each setting's change against the mode's first row.
fn print_table(rows: &[Row]) {
    let mut mode = "";
    let mut base: Option<&Row> = None;
    for row in rows {
        if row.mode != mode {
            mode = row.mode;
            base = Some(row);
            println!(
                "\n{mode} ({} samples of {} tokens per setting)\n",
                row.stats.samples,
                row.stats.generated_tokens / row.stats.samples.max(1)
            );
            println!("| setting | calls/token | tokens/s | NELBO (nats/token) | vs base | unigram entropy | vs base |");
            println!("|---|---|---|---|---|---|---|");
        }
        let s = &row.stats;
        let rel = |x: (f64, f64), b: (f64, f64)| {
            let (change, half_width) = sample_stats::relative_change_ci95(x, b);
            format!("{change:+.1} ± {half_width:.1} %")
        };
        let (dn, de) = match base {
            Some(b) if std::ptr::eq(b, row) => ("base".to_string(), "base".to_string()),
            Some(b) => (
                rel(s.nelbo, b.stats.nelbo),
                rel(s.unigram_entropy, b.stats.unigram_entropy),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "| {} | {:.3} | {:.1} | {:.3} ± {:.3} | {dn} | {:.3} ± {:.3} | {de} |",
            row.setting,
            s.calls_per_token,
            row.tokens_per_s,
            s.nelbo.0,
            s.nelbo.1,
            s.unigram_entropy.0,
            s.unigram_entropy.1
        );
    }
}
