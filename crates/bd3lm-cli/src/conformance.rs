//! `bd3lm conformance`: replays golden fixture directories against a backend, one line per
//! check, non-zero exit when any check fails.

use crate::backend::{self, Backend, DEFAULT_BACKEND};
use crate::error::{CliError, CliResult};
use bd3lm::conformance::{self, Summary, Tolerances};
use bd3lm::fixture::{self, Fixture};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ConformanceArgs {
    /// Backend to check.
    #[arg(long, value_enum, default_value_t = DEFAULT_BACKEND, env = "BD3LM_BACKEND")]
    backend: Backend,
    /// Threads of the fast CPU engine (`--backend cpu`, or `auto` without a GPU); default:
    /// every core. Results are identical for every thread count.
    #[arg(long, env = "BD3LM_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    gpu: crate::backend::GpuArgs,
    /// One JSON object per check instead of text lines.
    #[arg(long)]
    json: bool,
    /// Fixture directories (config.json, model.safetensors, golden.safetensors, notes.json).
    #[arg(required = true)]
    fixtures: Vec<PathBuf>,
}

pub fn run(args: ConformanceArgs) -> CliResult<()> {
    // Check every argument before the (slow) runs, so a typo fails at once.
    for dir in &args.fixtures {
        fixture::check_dir(dir)?;
    }
    let mut summary = Summary::default();
    let mut used = args.backend;
    for dir in &args.fixtures {
        let fixture =
            Fixture::from_dir(dir).map_err(|e| CliError::core(dir.display().to_string(), e))?;
        let mut engine = backend::engine(
            args.backend,
            &Arc::new(fixture.weights.clone()),
            args.threads,
            &args.gpu,
        )?;
        used = backend::engine_backend(&engine);
        let tolerances = match used {
            Backend::Reference | Backend::Cpu => Tolerances::CPU,
            Backend::Gpu | Backend::Auto => Tolerances::GPU,
        };
        let results = pollster::block_on(conformance::run(&fixture, &mut engine, tolerances));
        for r in &results {
            println!("{}", if args.json { r.json() } else { r.line() });
        }
        summary.add(&results);
    }
    eprintln!(
        "{} checks on {} fixture(s), backend {}: {} failed",
        summary.checks,
        summary.cases,
        used.name(),
        summary.failures.len()
    );
    summary.verdict().map_err(CliError::Failed)
}
