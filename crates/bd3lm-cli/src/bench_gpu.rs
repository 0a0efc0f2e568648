//! The GPU-only modes of `bd3lm bench`: the structural counters of a block without running it
//! (`--counters-only`), one line per dispatch (`--profile`) and the dispatch floor
//! (`--dispatch-floor N`).

use crate::backend::{self, AnyEngine};
use crate::bench::BenchArgs;
use crate::error::{CliError, CliResult};
use bd3lm_gpu::{DispatchInfo, DispatchProfile, GpuEngine, ProfileTiming};
use std::time::Instant;

fn gpu_engine<'a>(engine: &'a mut AnyEngine, what: &str) -> CliResult<&'a mut GpuEngine> {
    match engine {
        AnyEngine::Gpu(g) => Ok(g),
        _ => Err(CliError::Usage(format!(
            "{what} needs the GPU backend (--backend gpu)"
        ))),
    }
}

/// Merges `fields` into the JSON object `base`.
fn with(base: &serde_json::Value, fields: serde_json::Value) -> serde_json::Value {
    let mut out = base.clone();
    if let (Some(obj), Some(more)) = (out.as_object_mut(), fields.as_object()) {
        obj.extend(more.clone());
    }
    out
}

fn dispatch_json(d: &DispatchInfo, ms: Option<f64>) -> serde_json::Value {
    serde_json::json!({
        "kernel": d.kernel,
        "layer": d.layer,
        "workgroups": d.workgroups,
        "bounded": d.bounded,
        "weight_bytes": d.weight_bytes,
        "cache_bytes": d.cache_bytes,
        "flops": d.flops,
        "ms": ms,
    })
}

fn print_dispatches(
    args: &BenchArgs,
    base: &serde_json::Value,
    fill: usize,
    rows: &[DispatchProfile],
    timing: Option<ProfileTiming>,
) {
    let timing_name = timing.map(ProfileTiming::name);
    if args.json {
        for r in rows {
            let line = with(
                base,
                serde_json::json!({ "figure": "dispatch", "fill": fill, "timing": timing_name }),
            );
            println!("{}", with(&line, dispatch_json(&r.info, r.ms)));
        }
        return;
    }
    let column = match timing {
        Some(ProfileTiming::RoundTrips) => "ms alone (round trip)",
        Some(_) => "GPU ms (timestamps)",
        None => "ms",
    };
    println!("\n| # | kernel (one first-hitting step, fill {fill}) | layer | workgroups | weight bytes | cache bytes | FLOPs | {column} |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let d = &r.info;
        let star = if d.bounded { "" } else { " (exempt)" };
        println!(
            "| {i} | {} | {} | {}{star} | {} | {} | {} | {} |",
            d.kernel,
            d.layer.map_or("-".to_string(), |l| l.to_string()),
            d.workgroups,
            d.weight_bytes,
            d.cache_bytes,
            d.flops,
            r.ms.map_or("-".to_string(), |ms| format!("{ms:.3}"))
        );
    }
}

/// `--counters-only`: records one first-hitting block per fill without running it.
pub fn counters_only(
    args: &BenchArgs,
    engine: &mut AnyEngine,
    fills: &[usize],
    base: serde_json::Value,
) -> CliResult<()> {
    let tiling = match engine {
        AnyEngine::Gpu(g) => g.context().tiling.name(),
        _ => "",
    };
    let gpu = gpu_engine(engine, "--counters-only")?;
    if !args.json {
        println!("| fill | steps/block | dispatches/forward | workgroups min | weight bytes/forward | host waits/block | submits/block | readback bytes/block |");
        println!("|---|---|---|---|---|---|---|---|");
    }
    for &fill in fills {
        let c = pollster::block_on(gpu.count_block(fill, false))?;
        if args.json {
            println!(
                "{}",
                with(
                    &base,
                    serde_json::json!({
                        "counters_only": true,
                        "gpu_tiling": tiling,
                        "fill": fill,
                        "steps_per_block": c.steps,
                        "dispatches_per_forward": c.dispatches_per_forward,
                        "workgroups_min": c.workgroups_min,
                        "weight_bytes_per_forward": c.weight_bytes_per_forward,
                        "host_waits_per_block": c.host_waits,
                        "submits_per_block": c.submits,
                        "readback_bytes_per_block": c.readback_bytes,
                    })
                )
            );
        } else {
            println!(
                "| {fill} | {} | {} | {} | {} | {} | {} | {} |",
                c.steps,
                c.dispatches_per_forward,
                c.workgroups_min,
                c.weight_bytes_per_forward,
                c.host_waits,
                c.submits,
                c.readback_bytes
            );
        }
        if args.profile {
            let rows: Vec<DispatchProfile> = c
                .dispatches
                .into_iter()
                .map(|info| DispatchProfile { info, ms: None })
                .collect();
            print_dispatches(args, &base, fill, &rows, None);
        }
    }
    Ok(())
}

/// `--profile`: every dispatch of one step at `fill`: GPU time from timestamp queries in one
/// submission where the adapter has them, else each dispatch submitted alone (said so).
pub fn profile(args: &BenchArgs, engine: &mut AnyEngine, fill: usize) -> CliResult<()> {
    use bd3lm::Engine;
    let base = serde_json::json!({ "adapter": engine.describe() });
    let gpu = gpu_engine(engine, "--profile")?;
    let step = gpu.profile_step_timed(fill, args.runs)?;
    if step.timing == ProfileTiming::RoundTrips {
        eprintln!("[bd3lm] --profile: this adapter has no timestamp queries; each dispatch is timed as a submit-and-wait round trip (launch overhead included)");
    }
    print_dispatches(args, &base, fill, &step.rows, Some(step.timing));
    let sum: f64 = step.rows.iter().filter_map(|r| r.ms).sum();
    if args.json {
        let line = serde_json::json!({
            "figure": "profile",
            "fill": fill,
            "timing": step.timing.name(),
            "runs": args.runs,
            "dispatches": step.rows.len(),
            "ms_sum": sum,
            "gpu_span_ms": step.span_ms,
        });
        println!("{}", with(&base, line));
    } else {
        let span = step.span_ms.map_or(String::new(), |s| {
            format!(", GPU span of the step {s:.3} ms")
        });
        println!(
            "\n{} dispatches, {}: sum {sum:.3} ms{span}",
            step.rows.len(),
            step.timing.name()
        );
    }
    Ok(())
}

/// `--dispatch-floor N`: median wall time of a submitted chain of N dependent one-thread
/// dispatches, waited for.
pub fn dispatch_floor(args: &BenchArgs, n: u32) -> CliResult<()> {
    let ctx = backend::gpu_context(&args.gpu)?;
    let mut times = Vec::new();
    for run in 0..=args.runs {
        let started = Instant::now();
        let count = pollster::block_on(bd3lm_gpu::smoke::tick_chain(&ctx, n))
            .map_err(|e| CliError::Gpu(e.to_string()))?;
        if count != n {
            return Err(CliError::Gpu(format!(
                "the dispatch chain counted {count} of {n} dispatches"
            )));
        }
        if run > 0 {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let line = serde_json::json!({
        "figure": "dispatch_floor",
        "adapter": ctx.adapter_summary(),
        "dispatches": n,
        "runs": args.runs,
        "ms_median": median,
        "ms_min": times[0],
        "us_per_dispatch": median * 1e3 / n.max(1) as f64,
    });
    if args.json {
        println!("{line}");
    } else {
        println!(
            "{n} dependent dispatches in one submission: median {median:.3} ms, min {:.3} ms ({:.1} µs per dispatch) on {}",
            times[0],
            median * 1e3 / n.max(1) as f64,
            ctx.adapter_summary()
        );
    }
    Ok(())
}
