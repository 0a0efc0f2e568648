//! `bd3lm bench`: time of one sampler step (one forward of one block plus the draw) at several
//! KV-cache fills, and first-hitting generation speed end to end, with the engine's work
//! counters. `--json` prints one object per fill with a fixed set of keys.

use crate::backend::{self, AnyEngine, Backend, DEFAULT_BACKEND};
use crate::error::{CliError, CliResult};
use crate::model::{self, ModelSource};
use bd3lm::engine::{DrawRequest, Rows};
use bd3lm::generate::{Event, Generator, SamplerKind, SamplingOptions};
use bd3lm::rng::SplitMix64;
use bd3lm::Engine;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Package directory, Hugging Face directory, or Hub id owner/name[@revision] (an
    /// existing path wins); default: the embedded model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    hub: model::HubArgs,
    #[arg(long, value_enum, default_value_t = DEFAULT_BACKEND, env = "BD3LM_BACKEND")]
    backend: Backend,
    /// Measure only at this cache fill (tokens, a multiple of the block size, at most
    /// model_length - block_size); default: 0, n/2 and n - B.
    #[arg(long)]
    ctx: Option<usize>,
    /// Tokens generated per fill for the end-to-end tokens/s (default: 8 blocks).
    #[arg(long)]
    tokens: Option<usize>,
    /// Timed forwards per fill (after one warm-up).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// Also print the wall time of each kernel kind of one forward (GPU backend; each
    /// dispatch submitted alone and waited for, so launch overhead is included).
    #[arg(long)]
    profile: bool,
}

struct FillResult {
    fill: usize,
    ms_min: f64,
    ms_median: f64,
    tokens_per_s: f64,
    dispatches_per_forward: usize,
    readback_bytes_per_step: usize,
    /// GPU buffers and bind groups created during the timed forwards and the generation.
    objects_created: u64,
}

fn fills(args: &BenchArgs, n: usize, b: usize) -> CliResult<Vec<usize>> {
    match args.ctx {
        Some(c) if c % b != 0 || c > n - b => Err(CliError::Usage(format!(
            "--ctx {c} must be a multiple of the block size {b} and at most model_length - block_size = {}",
            n - b
        ))),
        Some(c) => Ok(vec![c]),
        None => {
            let mut v = vec![0, (n / 2) / b * b, n - b];
            v.dedup();
            Ok(v)
        }
    }
}

/// Random regular tokens (BOS first) used as the cached context.
fn context(len: usize, vocab: usize, bos: u32, rng: &mut SplitMix64) -> Vec<u32> {
    let mut ids = vec![bos];
    while ids.len() < len {
        ids.push(rng.below(vocab - 1) as u32);
    }
    ids.truncate(len.max(1));
    ids
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn bench_fill(
    engine: &mut AnyEngine,
    fill: usize,
    runs: usize,
    tokens: usize,
    bos: u32,
    seed: u64,
) -> CliResult<FillResult> {
    let cfg = engine.config().clone();
    let (b, mask) = (cfg.block_size, cfg.mask_id());
    let mut rng = SplitMix64::new(seed ^ fill as u64);
    let ctx = context(fill, cfg.vocab_size, bos, &mut rng);
    engine.reset();
    for block in ctx.chunks_exact(b) {
        pollster::block_on(engine.commit(block))?;
    }
    let block = vec![mask; b];
    let mut times = Vec::with_capacity(runs);
    let mut readback = 0;
    let mut objects_before = 0;
    for run in 0..=runs {
        let req = DrawRequest {
            block: &block,
            rows: Rows::One(run % b),
            nucleus_p: 0.9,
            uniform_seed: run as u64,
            mask_prob: None,
            reuse: false,
        };
        let started = Instant::now();
        pollster::block_on(engine.draw(&req))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        readback = engine.counters().readback_bytes_last_draw;
        if run > 0 {
            times.push(ms); // run 0 warms up caches and pipelines
        } else {
            objects_before = engine.counters().device_objects_created;
        }
    }
    times.sort_by(f64::total_cmp);
    let dispatches = engine.counters().dispatches_per_forward;

    // End to end: first hitting after a prompt that fills the cache to `fill`.
    let prompt = if fill == 0 { vec![bos] } else { ctx };
    let opts = SamplingOptions {
        sampler: SamplerKind::FirstHitting { max_steps: b },
        seed,
        ..SamplingOptions::default()
    };
    let prompt_len = prompt.len();
    let mut gen = Generator::new(
        b,
        cfg.model_length,
        mask,
        bos,
        prompt,
        prompt_len.saturating_add(tokens).min(usize::MAX / 2),
        opts,
    )?;
    let mut started = None;
    loop {
        let event = pollster::block_on(gen.next(engine))?;
        match event {
            Event::BlockStarted { .. } if started.is_none() => started = Some(Instant::now()),
            Event::Finished { .. } => break,
            _ => {}
        }
    }
    let seconds = started.map_or(f64::NAN, |s| s.elapsed().as_secs_f64());
    let generated = gen.committed().len() - prompt_len;
    Ok(FillResult {
        fill,
        ms_min: times.first().copied().unwrap_or(f64::NAN),
        ms_median: median(&times),
        tokens_per_s: generated as f64 / seconds,
        dispatches_per_forward: dispatches,
        readback_bytes_per_step: readback,
        objects_created: engine.counters().device_objects_created - objects_before,
    })
}

pub fn run(args: BenchArgs) -> CliResult<()> {
    if args.runs == 0 {
        return Err(CliError::Usage("--runs must be at least 1".into()));
    }
    let source = ModelSource::resolve_with(args.model.as_deref(), args.hub.format.scheme(), None)?;
    let loaded = model::load(&source, None)?;
    let cfg = loaded.config().clone();
    let fills = fills(&args, cfg.model_length, cfg.block_size)?;
    let tokens = args.tokens.unwrap_or(8 * cfg.block_size);
    if tokens == 0 {
        return Err(CliError::Usage("--tokens must be at least 1".into()));
    }
    let bos = loaded
        .tokenizer
        .as_ref()
        .map_or((cfg.vocab_size - 2) as u32, |t| t.eos);
    let mut engine = backend::engine(args.backend, &loaded.weights)?;
    let adapter = engine.describe();
    if !args.json {
        eprintln!(
            "[bd3lm] {} ({}), backend {adapter}, block {}, {} runs per fill",
            source.describe(),
            loaded.format,
            cfg.block_size,
            args.runs
        );
        println!("| fill | ms/forward min | median | forwards/s | tokens/s (first hitting, {tokens} tokens) | dispatches/forward | readback bytes/step | GPU objects created |");
        println!("|---|---|---|---|---|---|---|---|");
    }
    for fill in fills {
        let r = bench_fill(&mut engine, fill, args.runs, tokens, bos, args.seed)?;
        let forwards_per_s = 1e3 / r.ms_median;
        if args.json {
            let json = serde_json::json!({
                "model": source.short_name(),
                "format": loaded.format,
                "backend": backend::engine_backend(&engine).name(),
                "adapter": adapter,
                "block_size": cfg.block_size,
                "fill": r.fill,
                "runs": args.runs,
                "ms_min": r.ms_min,
                "ms_median": r.ms_median,
                "forwards_per_s": forwards_per_s,
                "tokens_per_s": r.tokens_per_s,
                "dispatches_per_forward": r.dispatches_per_forward,
                "readback_bytes_per_step": r.readback_bytes_per_step,
                "gpu_objects_created": r.objects_created,
            });
            println!("{json}");
        } else {
            println!(
                "| {} | {:.3} | {:.3} | {forwards_per_s:.1} | {:.1} | {} | {} | {} |",
                r.fill,
                r.ms_min,
                r.ms_median,
                r.tokens_per_s,
                r.dispatches_per_forward,
                r.readback_bytes_per_step,
                r.objects_created
            );
        }
    }
    if args.profile {
        let AnyEngine::Gpu(gpu) = &mut engine else {
            return Err(CliError::Usage(
                "--profile needs the GPU backend (--backend gpu)".into(),
            ));
        };
        let block = vec![cfg.mask_id(); cfg.block_size];
        let kernels = gpu.profile_kernels(&block, args.runs)?;
        let total: f64 = kernels.iter().map(|(_, ms)| ms).sum();
        println!("\n| kernel (one forward, fill 0) | ms | share |\n|---|---|---|");
        for (name, ms) in kernels {
            println!("| {name} | {ms:.3} | {:.0}% |", 100.0 * ms / total);
        }
    }
    Ok(())
}
