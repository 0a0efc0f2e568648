//! `bd3lm long-run`: many consecutive generations on one engine in one process
//! (docs/reliability.md, "Long runs"). Each generation is planned from its index
//! (`bd3lm::long_run`): prompts, lengths past the context, every sampler, a stop in mid-block
//! every 10th run. The command checks that resident memory does not grow between a baseline
//! generation and the last one, that a GPU engine creates no device object once the first
//! generation has run, and that a sample of the generations gives the same tokens again on a
//! fresh engine. It exits with an error naming every check that failed.

use crate::backend::{self, Backend, GpuArgs};
use crate::error::{CliError, CliResult};
use crate::model::{self, LoadedModel, ModelSource};
use bd3lm::generate::{FinishReason, SamplerKind};
use bd3lm::long_run::{self, Mix, RunRecord};
use bd3lm::Engine;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct LongRunArgs {
    /// Package directory, Hugging Face directory, or Hub id (default: the embedded model).
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    hub: model::HubArgs,
    /// Consecutive generations on one engine.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// Threads of the fast CPU engine (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    gpu: GpuArgs,
    /// The generation after which resident memory is first read (default: the 100th, or a
    /// third of the runs when there are fewer than 300).
    #[arg(long)]
    baseline: Option<usize>,
    /// Largest allowed growth of resident memory from the baseline to the last generation.
    #[arg(long, default_value_t = 0.05)]
    max_rss_growth: f64,
    /// Generations repeated on a fresh engine and compared token for token (by fingerprint).
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Start no new generation after this many seconds; the checks cover those that ran.
    #[arg(long)]
    time_limit: Option<f64>,
    /// One JSON object with every figure on stdout.
    #[arg(long)]
    json: bool,
}

/// Resident memory of this process in bytes (Linux `VmRSS`; `None` elsewhere).
pub fn rss_bytes() -> Option<u64> {
    bd3lm::long_run::process_memory_bytes("VmRSS")
}

fn sampler_name(s: &SamplerKind) -> String {
    match s {
        SamplerKind::FirstHitting { max_steps } => format!("first-hitting cap {max_steps}"),
        SamplerKind::Posterior { steps } => format!("posterior {steps} steps"),
        SamplerKind::Confidence { threshold } => format!("confidence {threshold}"),
        SamplerKind::Entropy { gamma } => format!("entropy {gamma}"),
    }
}

/// Prompts of the mix: BOS alone, short texts, one that fills whole blocks and one of about
/// half the context; token ids from the vocabulary when the model has no tokenizer.
fn prompts(loaded: &LoadedModel) -> CliResult<(Vec<Vec<u32>>, u32)> {
    let cfg = loaded.config();
    let (b, n) = (cfg.block_size, cfg.model_length);
    let Some(tok) = &loaded.tokenizer else {
        // GPT-2's convention: <|endoftext|> just below MASK.
        let bos = cfg.vocab_size.saturating_sub(2) as u32;
        let lengths = [3, 2 * b - 1, n / 2];
        return Ok((long_run::synthetic_prompts(cfg, bos, &lengths), bos));
    };
    let texts = [
        "",
        "My fellow citizens,",
        "Mr. Speaker, Mr. Vice President, members of Congress, distinguished guests,",
    ];
    let mut out = Vec::new();
    for t in texts {
        out.push(tok.prompt(t).map_err(|e| CliError::core("prompt", e))?);
    }
    let long_text = "We the people of the United States, in order to form a more perfect union, \
                     establish justice, insure domestic tranquility, provide for the common \
                     defense, promote the general welfare, and secure the blessings of liberty. "
        .repeat(1 + n / 16);
    let long = tok
        .prompt(&long_text)
        .map_err(|e| CliError::core("prompt", e))?;
    // Whole blocks (prompt-only blocks are committed by a store pass), and about half the
    // context (the first generated block shares the window with a long prompt).
    out.push(long[..(2 * b).min(long.len())].to_vec());
    out.push(long[..(n / 2 + 1).min(long.len())].to_vec());
    Ok((out, tok.eos))
}

/// The indices repeated on a fresh engine: spread over the run, every residue modulo 10
/// (so stopped runs are among them), and the last one.
fn repeat_indices(done: usize, repeat: usize) -> Vec<usize> {
    if done == 0 || repeat == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..repeat)
        .map(|j| (j * done / repeat + j % 10).min(done - 1))
        .collect();
    idx.push(done - 1);
    idx.sort_unstable();
    idx.dedup();
    idx
}

#[derive(Default)]
struct Marks {
    rss: Option<u64>,
    objects: u64,
    pipelines: u64,
}

fn marks(engine: &impl Engine) -> Marks {
    let c = engine.counters();
    Marks {
        rss: rss_bytes(),
        objects: c.device_objects_created,
        pipelines: c.pipelines_compiled,
    }
}

pub fn run(args: LongRunArgs) -> CliResult<()> {
    if args.runs == 0 {
        return Err(CliError::Usage("--runs must be at least 1".into()));
    }
    if !(args.max_rss_growth >= 0.0 && args.max_rss_growth.is_finite()) {
        return Err(CliError::Usage(
            "--max-rss-growth must be a finite fraction >= 0".into(),
        ));
    }
    let baseline = args
        .baseline
        .unwrap_or(if args.runs >= 300 { 100 } else { args.runs / 3 })
        .max(1);
    if baseline >= args.runs {
        return Err(CliError::Usage(format!(
            "--baseline {baseline} must come before the last of the {} runs",
            args.runs
        )));
    }
    let source = ModelSource::resolve_with(args.model.as_deref(), args.hub.format.scheme(), None)?;
    let loaded = model::load(&source, None)?;
    let cfg = loaded.config().clone();
    let (prompts, eos) = prompts(&loaded)?;
    let mix = Mix::standard(&cfg, eos, prompts, true)?;
    let new_engine = || backend::engine(args.backend, &loaded.weights, args.threads, &args.gpu);
    let mut engine = new_engine()?;
    let backend_name = backend::engine_backend(&engine).name();
    eprintln!(
        "[long-run] {} ({}), {}, {} generations, resident memory compared after the {baseline}th and the last",
        source.describe(),
        loaded.format,
        engine.describe(),
        args.runs
    );

    let before = marks(&engine);
    let mut after_first = Marks::default();
    let mut at_baseline = Marks::default();
    let mut records: Vec<RunRecord> = Vec::with_capacity(args.runs);
    let mut stop_requested = 0usize;
    let mut samplers: BTreeMap<String, usize> = BTreeMap::new();
    for s in &mix.samplers {
        samplers.insert(sampler_name(s), 0);
    }
    let started = Instant::now();
    let progress_every = (args.runs / 20).max(1);
    for i in 0..args.runs {
        if args
            .time_limit
            .is_some_and(|limit| started.elapsed().as_secs_f64() >= limit)
        {
            eprintln!("[long-run] time limit reached after {i} generations");
            break;
        }
        let spec = mix.spec(i);
        stop_requested += usize::from(spec.stop_in_block.is_some());
        if let Some(n) = samplers.get_mut(&sampler_name(&spec.sampling.sampler)) {
            *n += 1;
        }
        let record = pollster::block_on(mix.run(&mut engine, &spec))
            .map_err(|e| CliError::core(format!("generation {i}"), e))?;
        records.push(record);
        let done = i + 1;
        if done == 1 {
            after_first = marks(&engine);
        }
        if done == baseline {
            at_baseline = marks(&engine);
        }
        if done % progress_every == 0 {
            eprintln!(
                "[long-run] {done}/{} generations, {:.0} s, resident {} MB",
                args.runs,
                started.elapsed().as_secs_f64(),
                rss_bytes().map_or("?".into(), |b| format!("{:.1}", b as f64 / 1e6))
            );
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    let end = marks(&engine);
    let done = records.len();
    let counters = engine.counters();
    let forwards = engine.forward_count();
    let description = engine.describe();
    drop(engine);

    // Repeat a sample on a fresh engine.
    let repeated = repeat_indices(done, args.repeat);
    let mut fresh = new_engine()?;
    let mut mismatches = Vec::new();
    for &i in &repeated {
        let again = pollster::block_on(mix.run(&mut fresh, &mix.spec(i)))
            .map_err(|e| CliError::core(format!("repeat of generation {i}"), e))?;
        if again != records[i] {
            mismatches.push(i);
        }
    }
    drop(fresh);

    let stopped = records.iter().filter(|r| r.stopped_mid_block).count();
    let past_context = records.iter().filter(|r| r.past_context).count();
    let eos = records
        .iter()
        .filter(|r| r.finish == Some(FinishReason::Eos))
        .count();
    let tokens: usize = records.iter().map(|r| r.tokens).sum();
    let steps: usize = records.iter().map(|r| r.steps).sum();
    let growth = match (at_baseline.rss, end.rss) {
        (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) / a as f64),
        _ => None,
    };
    let gpu = backend_name == "gpu";

    let mut failed = Vec::new();
    if done <= baseline {
        failed.push(format!(
            "only {done} generations ran, not past the baseline {baseline}"
        ));
    }
    if let Some(g) = growth {
        if done > baseline && g > args.max_rss_growth {
            failed.push(format!(
                "resident memory grew {:.1} % from generation {baseline} to {done} (limit {:.1} %)",
                100.0 * g,
                100.0 * args.max_rss_growth
            ));
        }
    }
    if !mismatches.is_empty() {
        failed.push(format!(
            "generations {mismatches:?} gave other tokens on a fresh engine"
        ));
    }
    if stopped != stop_requested {
        failed.push(format!(
            "{stopped} of the {stop_requested} runs meant to stop in mid-block did"
        ));
    }
    if done >= 5 && past_context == 0 {
        failed.push("no generation ran past the context".into());
    }
    if done >= mix.samplers.len() && samplers.values().any(|&n| n == 0) {
        failed.push(format!("a sampler never ran: {samplers:?}"));
    }
    if end.objects != after_first.objects || end.pipelines != after_first.pipelines {
        failed.push(format!(
            "GPU objects were created after the first generation: {} -> {} buffers and bind groups, {} -> {} pipelines",
            after_first.objects, end.objects, after_first.pipelines, end.pipelines
        ));
    }

    let mb = |b: Option<u64>| b.map_or(serde_json::Value::Null, |b| (b as f64 / 1e6).into());
    let summary = serde_json::json!({
        "model": source.short_name(),
        "format": loaded.format,
        "backend": backend_name,
        "engine": description,
        "tokens_per_s": tokens as f64 / wall_s.max(1e-9),
        "runs_requested": args.runs,
        "runs": done,
        "wall_s": wall_s,
        "generations_per_s": done as f64 / wall_s.max(1e-9),
        "tokens": tokens,
        "steps": steps,
        "model_calls": forwards,
        "stop_requested": stop_requested,
        "stopped_mid_block": stopped,
        "past_context": past_context,
        "ended_at_eos": eos,
        "samplers": samplers,
        "baseline": baseline,
        "rss_mb_before": mb(before.rss),
        "rss_mb_baseline": mb(at_baseline.rss),
        "rss_mb_end": mb(end.rss),
        "rss_growth": growth,
        "max_rss_growth": args.max_rss_growth,
        "gpu_objects_before": gpu.then_some(before.objects),
        "gpu_objects_after_first": gpu.then_some(after_first.objects),
        "gpu_objects_end": gpu.then_some(end.objects),
        "gpu_pipelines_after_first": gpu.then_some(after_first.pipelines),
        "gpu_pipelines_end": gpu.then_some(end.pipelines),
        "gpu_buffers_held": gpu.then_some(counters.buffers_held),
        "repeated": repeated.len(),
        "repeated_stopped": repeated.iter().filter(|&&i| records[i].stopped_mid_block).count(),
        "repeated_past_context": repeated.iter().filter(|&&i| records[i].past_context).count(),
        "reproduced": repeated.len() - mismatches.len(),
        "failed": failed,
        "ok": failed.is_empty(),
    });
    if args.json {
        println!("{summary}");
    }
    eprintln!(
        "[long-run] {done} generations in {wall_s:.0} s: {tokens} tokens, {stopped} stopped in mid-block, {past_context} past the context; resident {} -> {} MB (after generation {baseline} -> {done}); {}/{} repeated generations identical on a fresh engine{}",
        at_baseline.rss.map_or("?".into(), |b| format!("{:.1}", b as f64 / 1e6)),
        end.rss.map_or("?".into(), |b| format!("{:.1}", b as f64 / 1e6)),
        repeated.len() - mismatches.len(),
        repeated.len(),
        if gpu {
            format!(
                "; GPU objects {} at build, {} after the first generation, {} at the end; pipelines {} -> {}",
                before.objects, after_first.objects, end.objects, after_first.pipelines, end.pipelines
            )
        } else {
            String::new()
        }
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "long run failed: {}",
            failed.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_indices_cover_stopped_runs_and_the_last() {
        let idx = repeat_indices(1000, 20);
        assert!(idx.iter().any(|i| i % 10 == 9), "{idx:?}");
        assert_eq!(idx.last(), Some(&999));
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(repeat_indices(3, 20), vec![0, 1, 2]);
        assert!(repeat_indices(0, 5).is_empty());
    }
}
