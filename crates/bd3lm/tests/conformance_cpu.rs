#![cfg(not(target_arch = "wasm32"))]
//! The CPU reference against every golden fixture in `tests/fixtures/`.

use bd3lm::conformance::{self, Tolerances};
use bd3lm::fixture::Fixture;
use bd3lm::CpuEngine;

mod common;
use common::fixture_dirs;

#[test]
fn cpu_reference_passes_every_fixture_check() {
    let mut failures = Vec::new();
    for dir in fixture_dirs() {
        let fx = Fixture::from_dir(&dir).expect("fixture loads");
        let mut engine = CpuEngine::new(&fx.weights);
        let results = pollster::block_on(conformance::run(&fx, &mut engine, Tolerances::CPU));
        assert!(
            results.iter().any(|r| r.check.starts_with("trace/")),
            "{}: no trace was replayed",
            fx.name
        );
        for r in results {
            println!("{}", r.line());
            if !r.pass {
                failures.push(r.line());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failed checks:\n{}",
        failures.join("\n")
    );
}
