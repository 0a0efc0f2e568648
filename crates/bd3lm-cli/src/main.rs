//! `bd3lm`: generate text with BD3-LM block diffusion models, convert and quantize
//! checkpoints, evaluate the likelihood bound, benchmark, and check conformance
//! (`docs/cli.md`).

mod backend;
mod bench;
mod bench_gpu;
mod conformance;
mod error;
mod eval;
mod generate;
mod hub;
mod info;
mod long_run;
mod model;
mod progress;
mod quant_report;
mod quantize;
mod sample_stats;
mod sampling;
mod synth;

use clap::{Parser, Subcommand};
use error::CliError;

#[derive(Parser)]
#[command(
    name = "bd3lm",
    version,
    about = "BD3-LM block diffusion language models: generate, convert, evaluate, benchmark",
    long_about = "BD3-LM block diffusion language models (Arriola et al., ICLR 2025) on the exact CPU \
                  reference or the WGSL engine. Without --model, commands use the small demo model \
                  embedded in the binary."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text, streaming it block by block as the diffusion commits it.
    Generate(generate::GenerateArgs),
    /// Describe a model: config, parameters, formats, sizes, tokenizer, backend.
    Info(info::InfoArgs),
    /// The NELBO bound (nats/token, perplexity bound) of a text (spec §8.1).
    Eval(eval::EvalArgs),
    /// Convert a Hugging Face checkpoint into a (quantized) model package.
    Quantize(quantize::QuantizeArgs),
    /// Quality of the f16/q8/q4 packages against f32 on noised text.
    QuantReport(quant_report::QuantReportArgs),
    /// Write a random f32 checkpoint with the released model shapes (for sizes and speed).
    Synth(synth::SynthArgs),
    /// Time forwards and generation (JSON lines with --json).
    Bench(bench::BenchArgs),
    /// Replay golden fixtures against a backend.
    Conformance(conformance::ConformanceArgs),
    /// Cost and quality of sampler settings: model calls per token, tokens/s, the samples'
    /// own NELBO and unigram entropy (docs/sampling.md).
    SampleStats(sample_stats::SampleStatsArgs),
    /// Many consecutive generations on one engine: resident memory, GPU objects and
    /// reproducibility checked (docs/reliability.md).
    LongRun(long_run::LongRunArgs),
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Info(args) => info::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::QuantReport(args) => quant_report::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Conformance(args) => conformance::run(args),
        Command::SampleStats(args) => sample_stats::run(args),
        Command::LongRun(args) => long_run::run(args),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("error: {err}");
        std::process::exit(err.exit_code());
    }
}
