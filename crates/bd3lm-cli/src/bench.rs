//! `bd3lm bench`: time of one sampler step (one forward of one block plus the draw and its
//! readback) and of a whole first-hitting block (the way generation runs it: on the GPU one
//! submission and one wait) at several KV-cache fills, and first-hitting generation speed end
//! to end, with the engine's work counters. `--json` prints one object per fill with a fixed
//! set of keys. The GPU-only modes (`--counters-only`, `--profile`, `--dispatch-floor`) are
//! in `bench_gpu.rs`.

use crate::backend::{self, AnyEngine, Backend, DEFAULT_BACKEND};
use crate::bench_gpu;
use crate::error::{CliError, CliResult};
use crate::model::{self, ModelSource};
use bd3lm::engine::{BlockRequest, BlockStep, DrawRequest, RevealRule, Rows};
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
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub hub: model::HubArgs,
    #[arg(long, value_enum, default_value_t = DEFAULT_BACKEND, env = "BD3LM_BACKEND")]
    pub backend: Backend,
    /// Threads of the fast CPU engine (`--backend cpu`, or `auto` without a GPU); default:
    /// every core. Results are identical for every thread count.
    #[arg(long, env = "BD3LM_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    pub gpu: crate::backend::GpuArgs,
    /// Measure only at this cache fill (tokens, a multiple of the block size, at most
    /// model_length - block_size); default: 0, n/2 and n - B.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Tokens generated per fill for the end-to-end tokens/s (default: 8 blocks).
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Timed forwards and timed blocks per fill (after one warm-up each).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
    /// Also print one line per dispatch of a denoising step at the last fill: kernel,
    /// workgroups, weight and cache bytes read, FLOPs and its wall time when submitted alone
    /// (GPU backend; launch overhead included).
    #[arg(long)]
    pub profile: bool,
    /// Only the structural counters of one first-hitting block per fill (GPU backend),
    /// counted by recording the block without running it and without filling the cache by
    /// commits: seconds even on a software adapter.
    #[arg(long)]
    pub counters_only: bool,
    /// Buffer (MiB) for the streaming read bandwidth measured before a CPU run (1 thread and
    /// N), which each figure's weight traffic is divided by; 0: not measured. Make it larger
    /// than the last-level cache.
    #[arg(long, default_value_t = 1024)]
    pub bandwidth_mib: usize,
    /// Only time a chain of N one-thread dependent dispatches (the dispatch floor a forward
    /// of N dispatches cannot beat), then exit (GPU backend).
    #[arg(long, value_name = "N")]
    pub dispatch_floor: Option<u32>,
}

struct FillResult {
    fill: usize,
    ms_min: f64,
    ms_median: f64,
    block_ms_median: f64,
    tokens_per_s: f64,
    /// Model calls per second while generating (store passes included).
    gen_forwards_per_s: f64,
    readback_bytes_per_step: usize,
    /// GPU buffers and bind groups created during the timed forwards and the generation.
    objects_created: u64,
    host_waits_per_block: f64,
    submits_per_block: f64,
}

pub fn fills(ctx: Option<usize>, n: usize, b: usize) -> CliResult<Vec<usize>> {
    match ctx {
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
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Median and min of `runs` timed calls of `f` after one warm-up call, in milliseconds.
fn timed(runs: usize, mut f: impl FnMut(usize) -> CliResult<()>) -> CliResult<(f64, f64)> {
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let started = Instant::now();
        f(run)?;
        if run > 0 {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((median(&times), times.first().copied().unwrap_or(f64::NAN)))
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
    let objects_before = engine.counters().device_objects_created;
    // One step with its own readback.
    let (ms_median, ms_min) = timed(runs, |run| {
        let req = DrawRequest {
            block: &block,
            rows: Rows::One(run % b),
            nucleus_p: 0.9,
            uniform_seed: run as u64,
            mask_prob: None,
            reuse: false,
        };
        pollster::block_on(engine.draw(&req))?;
        Ok(())
    })?;
    let readback = engine.counters().readback_bytes_last_draw;
    // A whole first-hitting block, revealing the rows in a shuffled order.
    let (block_ms_median, _) = timed(runs, |run| {
        let mut rows: Vec<usize> = (0..b).collect();
        let mut order = SplitMix64::new(seed ^ run as u64);
        for i in (1..b).rev() {
            rows.swap(i, order.below(i + 1));
        }
        let steps: Vec<BlockStep> = rows
            .iter()
            .enumerate()
            .map(|(k, &row)| BlockStep {
                seed: (run * b + k) as u64,
                row,
            })
            .collect();
        let req = BlockRequest {
            block: &block,
            steps: &steps,
            rule: RevealRule::Scheduled,
            draw_all_rows: false,
            nucleus_p: 0.9,
        };
        pollster::block_on(engine.denoise_block(&req))?;
        Ok(())
    })?;

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
    // Counted from the first generated block on (the prompt's store passes come before).
    let mut before = None;
    let mut forwards_before = None;
    let mut blocks = 0u64;
    loop {
        let event = pollster::block_on(gen.next(engine))?;
        match event {
            Event::BlockStarted { .. } => {
                blocks += 1;
                started.get_or_insert_with(Instant::now);
                before.get_or_insert_with(|| engine.counters());
                forwards_before.get_or_insert_with(|| engine.forward_count());
            }
            Event::Finished { .. } => break,
            _ => {}
        }
    }
    let seconds = started.map_or(f64::NAN, |s| s.elapsed().as_secs_f64());
    let after = engine.counters();
    let before = before.unwrap_or(after);
    let per_block = |x: u64| x as f64 / blocks.max(1) as f64;
    let generated = gen.committed().len() - prompt_len;
    Ok(FillResult {
        fill,
        ms_min,
        ms_median,
        block_ms_median,
        tokens_per_s: generated as f64 / seconds,
        gen_forwards_per_s: (engine.forward_count() - forwards_before.unwrap_or(0)) as f64
            / seconds,
        readback_bytes_per_step: readback,
        objects_created: after.device_objects_created - objects_before,
        host_waits_per_block: per_block(after.host_waits - before.host_waits),
        submits_per_block: per_block(after.submits - before.submits),
    })
}

/// Peak resident memory of this process so far (Linux `VmHWM`), loading included.
fn peak_rss_bytes() -> Option<u64> {
    bd3lm::long_run::process_memory_bytes("VmHWM")
}

/// The machine's streaming read bandwidth with 1 thread and with `n`, in bytes per second.
struct Bandwidth {
    one: f64,
    n: f64,
    threads_n: usize,
    /// The engine's threads.
    threads: usize,
}

impl Bandwidth {
    /// Measures with a buffer of `mib` MiB, then frees it. The peak resident memory is reset
    /// to the current value afterwards (Linux `clear_refs`), so `VmHWM` keeps measuring the
    /// engine; `peak_before` is the peak up to then.
    fn measure(mib: usize, threads: usize) -> Bandwidth {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads_n = if threads > 1 { threads } else { cores };
        let buffer = bd3lm_cpu::bandwidth::ReadBuffer::new(mib << 20);
        let one = buffer.read_bytes_per_s(1, 3);
        let n = buffer.read_bytes_per_s(threads_n, 3);
        drop(buffer);
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Bandwidth {
            one,
            n,
            threads_n,
            threads,
        }
    }

    /// The bandwidth at the engine's thread count.
    fn engine(&self) -> f64 {
        if self.threads == 1 {
            self.one
        } else {
            self.n
        }
    }

    /// `weight_bytes * per_s` as a share of the engine's bandwidth.
    fn share(&self, weight_bytes: u64, per_s: f64) -> f64 {
        weight_bytes as f64 * per_s / self.engine()
    }
}

/// Weight bytes one CPU step streams: every layer matrix and the LM head (whole, even for one
/// row); the embedding is a gather of the block's rows.
fn cpu_step_weight_bytes(w: &bd3lm::Weights) -> u64 {
    let layers: usize = w
        .layers
        .iter()
        .flat_map(|l| l.matrices())
        .map(|(_, m)| m.bytes())
        .sum();
    (layers + w.lm_head.bytes()) as u64
}

pub fn run(mut args: BenchArgs) -> CliResult<()> {
    // GPU time per dispatch needs the timestamp features, requested only for the profile.
    args.gpu.timestamps = args.profile;
    if args.runs == 0 {
        return Err(CliError::Usage("--runs must be at least 1".into()));
    }
    if let Some(n) = args.dispatch_floor {
        return bench_gpu::dispatch_floor(&args, n);
    }
    let source = ModelSource::resolve_with(args.model.as_deref(), args.hub.format.scheme(), None)?;
    let loaded = model::load(&source, None)?;
    let cfg = loaded.config().clone();
    let fills = fills(args.ctx, cfg.model_length, cfg.block_size)?;
    let tokens = args.tokens.unwrap_or(8 * cfg.block_size);
    if tokens == 0 {
        return Err(CliError::Usage("--tokens must be at least 1".into()));
    }
    let bos = loaded
        .tokenizer
        .as_ref()
        .map_or((cfg.vocab_size - 2) as u32, |t| t.eos);
    let mut engine = backend::engine(args.backend, &loaded.weights, args.threads, &args.gpu)?;
    let adapter = engine.describe();
    let threads = match &engine {
        AnyEngine::Cpu(cpu) => cpu.threads(),
        _ => 1,
    };
    let is_cpu = matches!(engine, AnyEngine::Cpu(_));
    let peak_before_bandwidth = peak_rss_bytes();
    let bandwidth = (is_cpu && args.bandwidth_mib > 0 && !args.counters_only)
        .then(|| Bandwidth::measure(args.bandwidth_mib, threads));
    // The peak resident memory without the bandwidth buffer.
    let peak_rss = || peak_rss_bytes().map(|now| now.max(peak_before_bandwidth.unwrap_or(0)));
    let cpu_weight_bytes = cpu_step_weight_bytes(&loaded.weights);
    let header = serde_json::json!({
        "model": source.short_name(),
        "format": loaded.format,
        "backend": backend::engine_backend(&engine).name(),
        "adapter": adapter,
        "block_size": cfg.block_size,
    });
    if args.counters_only {
        return bench_gpu::counters_only(&args, &mut engine, &fills, header);
    }
    if !args.json {
        eprintln!(
            "[bd3lm] {} ({}), backend {adapter}, block {}, {} runs per fill",
            source.describe(),
            loaded.format,
            cfg.block_size,
            args.runs
        );
        if let Some(bw) = &bandwidth {
            eprintln!(
                "[bd3lm] streaming read bandwidth ({} MiB buffer): {:.1} GB/s with 1 thread, {:.1} GB/s with {}; weights per step {:.1} MB",
                args.bandwidth_mib,
                bw.one / 1e9,
                bw.n / 1e9,
                bw.threads_n,
                cpu_weight_bytes as f64 / 1e6
            );
        }
        println!("| fill | ms/step min | median | ms/forward in a block | forwards/s | tokens/s (first hitting, {tokens} tokens) | dispatches/forward | workgroups min | host waits/block | submits/block | readback bytes/step | GPU objects created | share of read bandwidth: step / forward in a block / generation |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    for &fill in &fills {
        let r = bench_fill(&mut engine, fill, args.runs, tokens, bos, args.seed)?;
        let c = engine.counters();
        let ms_per_forward = r.block_ms_median / cfg.block_size as f64;
        let forwards_per_s = 1e3 / ms_per_forward;
        let weight_bytes = if is_cpu {
            cpu_weight_bytes
        } else {
            c.weight_bytes_per_forward
        };
        // Weight traffic of each figure over the machine's read bandwidth (CPU engine).
        let shares = bandwidth.as_ref().map(|bw| {
            [
                bw.share(weight_bytes, 1e3 / r.ms_median),
                bw.share(weight_bytes, forwards_per_s),
                bw.share(weight_bytes, r.gen_forwards_per_s),
            ]
        });
        if args.json {
            let mut json = header.clone();
            let fields = serde_json::json!({
                "fill": r.fill,
                "runs": args.runs,
                "ms_min": r.ms_min,
                "ms_median": r.ms_median,
                "block_ms_median": r.block_ms_median,
                "forwards_per_s": forwards_per_s,
                "tokens_per_s": r.tokens_per_s,
                "dispatches_per_forward": c.dispatches_per_forward,
                "readback_bytes_per_step": r.readback_bytes_per_step,
                "gpu_objects_created": r.objects_created,
                "peak_rss_bytes": peak_rss(),
                "threads": threads,
                "package_bytes": loaded.file_bytes,
                "host_waits_per_block": r.host_waits_per_block,
                "submits_per_block": r.submits_per_block,
                "workgroups_min": c.workgroups_min,
                "weight_bytes_per_forward": weight_bytes,
                // Weight bytes streamed per second at that rate (divide by the GPU's peak
                // memory bandwidth for the fraction reached).
                "weight_gbytes_per_s": weight_bytes as f64 * forwards_per_s / 1e9,
                // CPU: the streaming read bandwidth measured in this run, and the share of
                // it (at the engine's thread count) that each figure's weight traffic is.
                "read_gbytes_per_s_1": bandwidth.as_ref().map(|b| b.one / 1e9),
                "read_gbytes_per_s_n": bandwidth.as_ref().map(|b| b.n / 1e9),
                "read_threads_n": bandwidth.as_ref().map(|b| b.threads_n),
                "step_bandwidth_share": shares.map(|s| s[0]),
                "block_bandwidth_share": shares.map(|s| s[1]),
                "generate_bandwidth_share": shares.map(|s| s[2]),
            });
            if let (Some(obj), Some(more)) = (json.as_object_mut(), fields.as_object()) {
                obj.extend(more.clone());
            }
            println!("{json}");
        } else {
            let shares = shares.map_or("–".to_string(), |s| {
                format!("{:.2} / {:.2} / {:.2}", s[0], s[1], s[2])
            });
            println!(
                "| {} | {:.3} | {:.3} | {ms_per_forward:.3} | {forwards_per_s:.1} | {:.1} | {} | {} | {:.2} | {:.2} | {} | {} | {shares} |",
                r.fill,
                r.ms_min,
                r.ms_median,
                r.tokens_per_s,
                c.dispatches_per_forward,
                c.workgroups_min,
                r.host_waits_per_block,
                r.submits_per_block,
                r.readback_bytes_per_step,
                r.objects_created
            );
        }
    }
    if !args.json {
        if let Some(rss) = peak_rss() {
            eprintln!(
                "[bd3lm] peak resident memory {:.1} MB (loading included; model files {:.1} MB, KV cache {:.1} MB)",
                rss as f64 / 1e6,
                loaded.file_bytes as f64 / 1e6,
                bd3lm::weights::kv_cache_bytes(&cfg) as f64 / 1e6
            );
        }
    }
    if args.profile {
        let fill = fills.last().copied().unwrap_or(0);
        bench_gpu::profile(&args, &mut engine, fill)?;
    }
    Ok(())
}
