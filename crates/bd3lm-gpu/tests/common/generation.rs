//! Generation helpers shared by the native and browser tests: the per-block loop against the
//! per-step path.

use bd3lm::fixture::Fixture;
use bd3lm::generate::{Event, Execution, Generator, Replay, SamplerKind, SamplingOptions};
use bd3lm::Engine;

/// Every event of a generation up to `Finished` (excluded).
pub async fn run_events(gen: &mut Generator, engine: &mut impl Engine) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let e = gen.next(engine).await.expect("step");
        if matches!(e, Event::Finished { .. }) {
            return events;
        }
        events.push(e);
    }
}

/// Exact equality of the step events, confidences compared by their bits.
pub fn same_steps(a: &[Event], b: &[Event]) -> bool {
    let bits = |e: &Event| match e {
        Event::Step {
            tokens,
            draws,
            revealed,
            ..
        } => Some((
            tokens.clone(),
            draws
                .iter()
                .map(|d| (d.row, d.token, d.confidence.to_bits()))
                .collect::<Vec<_>>(),
            revealed
                .iter()
                .map(|r| (r.position, r.token, r.confidence.to_bits()))
                .collect::<Vec<_>>(),
        )),
        _ => None,
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| bits(x) == bits(y))
}

/// Makes the same generation for a given execution.
pub type MakeGenerator = Box<dyn Fn(Execution) -> Generator>;

/// The generations the per-block and per-step comparison runs on a fixture: each
/// first-hitting trace replayed (every row drawn), and for the small-vocabulary fixtures a free
/// generation past the context (only the revealed row drawn; the window slides), each named and
/// made for a given execution.
pub fn first_hitting_runs(fx: &Fixture) -> Vec<(String, MakeGenerator)> {
    let cfg = fx.weights.config.clone();
    let mut runs: Vec<(String, MakeGenerator)> = Vec::new();
    for trace in fx.traces.iter().filter(|t| t.first_hitting) {
        let ints = |name: &str| -> Vec<i64> {
            fx.tensor(&format!("{}_{name}", trace.name))
                .expect("trace tensor")
                .as_i64()
        };
        let seeds: Vec<u64> = ints("uniform_seed").iter().map(|&s| s as u64).collect();
        let chosen: Vec<usize> = ints("chosen_pos").iter().map(|&p| p as usize).collect();
        let prompt: Vec<u32> = match fx.get(&format!("{}_prompt", trace.name)) {
            Some(p) => p.as_i64().iter().map(|&x| x as u32).collect(),
            None => vec![fx.bos()],
        };
        let opts = SamplingOptions {
            sampler: SamplerKind::FirstHitting {
                max_steps: trace.steps,
            },
            nucleus_p: trace.nucleus_p,
            seed: trace.seed,
            ..SamplingOptions::default()
        };
        let (cfg, bos, len) = (cfg.clone(), fx.bos(), trace.seqlen);
        runs.push((
            trace.name.clone(),
            Box::new(move |execution| {
                Generator::new(
                    cfg.block_size,
                    cfg.model_length,
                    cfg.mask_id(),
                    bos,
                    prompt.clone(),
                    len,
                    opts.clone(),
                )
                .expect("generator")
                .with_replay(Replay {
                    seeds: seeds.clone(),
                    chosen: chosen.clone(),
                })
                .execution(execution)
            }),
        ));
    }
    if cfg.vocab_size > 4096 {
        return runs;
    }
    let (bos, len) = (fx.bos(), cfg.model_length + 2 * cfg.block_size);
    runs.push((
        "free".into(),
        Box::new(move |execution| {
            let opts = SamplingOptions {
                sampler: SamplerKind::FirstHitting {
                    max_steps: cfg.block_size,
                },
                seed: 11,
                ..SamplingOptions::default()
            };
            Generator::new(
                cfg.block_size,
                cfg.model_length,
                cfg.mask_id(),
                bos,
                vec![bos],
                len,
                opts,
            )
            .expect("generator")
            .execution(execution)
        }),
    ));
    runs
}

/// One submission per block and one per step give bit-identical ids and confidences on every
/// first-hitting run of `fx` (see [`first_hitting_runs`]).
pub async fn per_block_matches_per_step(fx: &Fixture, engine: &mut impl Engine) {
    for (name, make) in first_hitting_runs(fx) {
        let waits = engine.counters().host_waits;
        let block = run_events(&mut make(Execution::PerBlock), engine).await;
        let block_waits = engine.counters().host_waits - waits;
        let step = run_events(&mut make(Execution::PerStep), engine).await;
        let step_waits = engine.counters().host_waits - waits - block_waits;
        assert!(!block.is_empty());
        assert!(
            block_waits < step_waits,
            "{} {name}: {block_waits} waits per block vs {step_waits} per step",
            fx.name
        );
        assert!(
            same_steps(&block, &step),
            "{} {name}: per-block and per-step runs differ",
            fx.name
        );
    }
}

/// Settings of the parallel samplers that reveal several tokens in some steps of the tiny
/// fixture models (random weights: low confidences, high entropies) and one in others.
pub const PARALLEL_SAMPLERS: [SamplerKind; 2] = [
    SamplerKind::Confidence { threshold: 0.05 },
    SamplerKind::Entropy { gamma: 5.0 },
];

/// [`per_block_matches_per_step`] on a free generation of `blocks` blocks only (cheap enough
/// for a software adapter in the hardware tiling), for first hitting and both parallel
/// samplers.
pub async fn short_per_block_matches_per_step(
    fx: &Fixture,
    engine: &mut impl Engine,
    blocks: usize,
) {
    let first_hitting = SamplerKind::FirstHitting {
        max_steps: fx.weights.config.block_size,
    };
    for sampler in [first_hitting].into_iter().chain(PARALLEL_SAMPLERS) {
        short_run(fx, engine, blocks, sampler).await;
    }
}

async fn short_run(fx: &Fixture, engine: &mut impl Engine, blocks: usize, sampler: SamplerKind) {
    let cfg = &fx.weights.config;
    let make = |execution| {
        let opts = SamplingOptions {
            sampler,
            seed: 5,
            ..SamplingOptions::default()
        };
        Generator::new(
            cfg.block_size,
            cfg.model_length,
            cfg.mask_id(),
            fx.bos(),
            vec![fx.bos()],
            blocks * cfg.block_size,
            opts,
        )
        .expect("generator")
        .execution(execution)
    };
    let block = run_events(&mut make(Execution::PerBlock), engine).await;
    let step = run_events(&mut make(Execution::PerStep), engine).await;
    assert!(block.len() > blocks, "{} events", block.len());
    assert!(
        same_steps(&block, &step),
        "{} {sampler:?}: per-block and per-step runs differ",
        fx.name
    );
}

/// A free generation of `len` tokens from BOS with `sampler`.
pub fn free_generator(fx: &Fixture, sampler: SamplerKind, len: usize, seed: u64) -> Generator {
    let cfg = &fx.weights.config;
    Generator::new(
        cfg.block_size,
        cfg.model_length,
        cfg.mask_id(),
        fx.bos(),
        vec![fx.bos()],
        len,
        SamplingOptions {
            sampler,
            seed,
            ..SamplingOptions::default()
        },
    )
    .expect("generator")
}

/// Steps that revealed more than one token, of all steps.
pub fn multi_reveal_steps(events: &[Event]) -> (usize, usize) {
    let steps = events
        .iter()
        .filter_map(|e| match e {
            Event::Step { revealed, .. } => Some(revealed.len()),
            _ => None,
        })
        .collect::<Vec<_>>();
    (steps.iter().filter(|&&n| n > 1).count(), steps.len())
}
