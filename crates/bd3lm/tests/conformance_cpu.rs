#![cfg(not(target_arch = "wasm32"))]
//! The CPU reference against every golden fixture in `tests/fixtures/`.

use bd3lm::conformance::{self, Summary, Tolerances};
use bd3lm::fixture::{self, Fixture};
use bd3lm::CpuEngine;

mod common;

#[test]
fn cpu_reference_passes_every_fixture_check() {
    let mut summary = Summary::default();
    for dir in fixture::case_dirs(&common::fixtures_root()).expect("fixture cases") {
        let fx = Fixture::from_dir(&dir).expect("fixture loads");
        let mut engine = CpuEngine::new(&fx.weights);
        let results = pollster::block_on(conformance::run(&fx, &mut engine, Tolerances::CPU));
        results.iter().for_each(|r| println!("{}", r.line()));
        summary.add(&results);
    }
    assert!(summary.cases >= 3, "the three shared cases: {summary:?}");
    if let Err(problems) = summary.verdict() {
        panic!("{problems}");
    }
}
