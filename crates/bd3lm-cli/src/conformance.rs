//! `bd3lm conformance`: replays golden fixture directories against a backend, one line per
//! check, non-zero exit when any check fails.

use crate::backend::{self, Backend, DEFAULT_BACKEND};
use crate::error::{CliError, CliResult};
use bd3lm::conformance::{self, Tolerances};
use bd3lm::fixture::Fixture;
use std::path::{Path, PathBuf};
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
    /// One JSON object per check instead of text lines.
    #[arg(long)]
    json: bool,
    /// Fixture directories (config.json, model.safetensors, golden.safetensors, notes.json).
    #[arg(required = true)]
    fixtures: Vec<PathBuf>,
}

const FIXTURE_FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "golden.safetensors",
    "notes.json",
];

fn check_fixture_dir(dir: &Path) -> CliResult<()> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{}: not a fixture directory (expected a directory with {})",
            dir.display(),
            FIXTURE_FILES.join(", ")
        )));
    }
    let missing: Vec<&str> = FIXTURE_FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: not a fixture directory (missing {})",
            dir.display(),
            missing.join(", ")
        )));
    }
    Ok(())
}

pub fn run(args: ConformanceArgs) -> CliResult<()> {
    // Check every argument before the (slow) runs, so a typo fails at once.
    for dir in &args.fixtures {
        check_fixture_dir(dir)?;
    }
    let (mut checks, mut failures) = (0usize, 0usize);
    let mut used = args.backend;
    for dir in &args.fixtures {
        let fixture =
            Fixture::from_dir(dir).map_err(|e| CliError::core(dir.display().to_string(), e))?;
        let mut engine = backend::engine(
            args.backend,
            &Arc::new(fixture.weights.clone()),
            args.threads,
        )?;
        used = backend::engine_backend(&engine);
        let tolerances = match used {
            Backend::Reference => Tolerances::CPU,
            _ => Tolerances::GPU,
        };
        let results = pollster::block_on(conformance::run(&fixture, &mut engine, tolerances));
        for r in &results {
            println!("{}", if args.json { r.json() } else { r.line() });
            checks += 1;
            failures += usize::from(!r.pass);
        }
    }
    eprintln!(
        "{checks} checks on {} fixture(s), backend {}: {} failed",
        args.fixtures.len(),
        used.name(),
        failures
    );
    if failures > 0 {
        return Err(CliError::Failed(format!(
            "{failures} of {checks} conformance checks failed"
        )));
    }
    Ok(())
}
