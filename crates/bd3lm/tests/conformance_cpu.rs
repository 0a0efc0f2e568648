#![cfg(not(target_arch = "wasm32"))]
//! The CPU reference against every golden fixture in `tests/fixtures/`.

use bd3lm::conformance::{self, Summary, Tolerances};
use bd3lm::fixture::{self, Fixture};
use bd3lm::ReferenceEngine;

mod common;

#[test]
fn cpu_reference_passes_every_fixture_check() {
    let mut summary = Summary::default();
    for dir in fixture::case_dirs(&common::fixtures_root()).expect("fixture cases") {
        let fx = Fixture::from_dir(&dir).expect("fixture loads");
        let mut engine = ReferenceEngine::new(&fx.weights);
        let results = pollster::block_on(conformance::run(&fx, &mut engine, Tolerances::CPU));
        results.iter().for_each(|r| println!("{}", r.line()));
        summary.add(&results);
    }
    assert!(summary.cases >= 3, "the three shared cases: {summary:?}");
    if let Err(problems) = summary.verdict() {
        panic!("{problems}");
    }
}

/// The block API on the CPU engine (one draw per step, the meaning every backend's block path
/// must reproduce): the same events as per-step execution, and bad requests rejected.
#[test]
fn block_requests_mean_one_draw_per_step() {
    use bd3lm::engine::{check_block_request, BlockRequest, BlockStep, RevealRule};
    use bd3lm::generate::{Event, Execution, Generator, SamplerKind, SamplingOptions};
    use bd3lm::Engine;

    let dir = common::fixtures_root().join("tiny-v512-bs4");
    let fx = Fixture::from_dir(&dir).expect("fixture loads");
    let cfg = fx.weights.config.clone();
    let mut engine = ReferenceEngine::new(&fx.weights);
    assert!(
        !engine.runs_blocks(),
        "the CPU reference steps one draw at a time"
    );
    let run = |engine: &mut ReferenceEngine, execution| {
        let opts = SamplingOptions {
            sampler: SamplerKind::FirstHitting {
                max_steps: cfg.block_size,
            },
            seed: 9,
            ..SamplingOptions::default()
        };
        let mut gen = Generator::new(
            cfg.block_size,
            cfg.model_length,
            cfg.mask_id(),
            fx.bos(),
            vec![fx.bos()],
            5 * cfg.block_size,
            opts,
        )
        .unwrap()
        .execution(execution);
        let mut events = Vec::new();
        loop {
            match pollster::block_on(gen.next(engine)).unwrap() {
                Event::Finished { .. } => return (events, gen.committed().to_vec()),
                e => events.push(e),
            }
        }
    };
    let (block_events, block_text) = run(&mut engine, Execution::PerBlock);
    let (step_events, step_text) = run(&mut engine, Execution::PerStep);
    assert_eq!(block_events, step_events);
    assert_eq!(block_text, step_text);
    let steps = block_events
        .iter()
        .filter(|e| matches!(e, Event::Step { revealed, .. } if revealed.len() == 1))
        .count();
    assert_eq!(steps, 5 * cfg.block_size - 1, "one reveal per step");

    let mask = cfg.mask_id();
    let mut block = vec![mask; cfg.block_size];
    block[0] = 3;
    let request = |steps: &[BlockStep], block: &[u32]| {
        check_block_request(
            &cfg,
            &BlockRequest {
                block,
                steps,
                rule: RevealRule::Scheduled,
                draw_all_rows: false,
                nucleus_p: 0.9,
            },
        )
    };
    let step = |row| BlockStep { seed: 1, row };
    assert!(request(&[step(1), step(2)], &block).is_ok());
    for (steps, why) in [
        (vec![step(0)], "a clean row"),
        (vec![step(1), step(1)], "a row twice"),
        (vec![step(cfg.block_size)], "a row past the block"),
    ] {
        let err = request(&steps, &block).unwrap_err().to_string();
        assert!(err.contains("not masked"), "{why}: {err}");
    }
    assert!(request(&[], &block[1..]).is_err(), "a short block");
}
