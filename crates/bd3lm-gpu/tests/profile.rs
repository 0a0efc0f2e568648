//! `bench --profile`'s timing on the native adapter: GPU timestamps where the device was
//! given timestamp queries, and the fallback, each dispatch submitted alone and waited for,
//! where it was not. Both time the same dispatches of a first-hitting step, in order, and
//! leave the engine generating exactly as before.
#![cfg(not(target_arch = "wasm32"))]

use bd3lm::conformance::{self, Summary, Tolerances};
use bd3lm::fixture;
use bd3lm_gpu::{GpuContext, GpuEngine, GpuOptions, ProfileTiming, StepProfile};
use std::path::PathBuf;

fn first_fixture() -> fixture::Fixture {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let dirs = fixture::case_dirs(&root).expect("fixture cases");
    fixture::Fixture::from_dir(&dirs[0]).expect("fixture loads")
}

fn engine(fx: &fixture::Fixture, timestamps: bool) -> GpuEngine {
    let ctx = pollster::block_on(GpuContext::new(&GpuOptions {
        timestamps,
        ..Default::default()
    }))
    .expect("GPU adapter");
    pollster::block_on(GpuEngine::from_weights(&ctx, &fx.weights)).expect("engine builds")
}

fn kernels(p: &StepProfile) -> Vec<(&'static str, Option<usize>)> {
    p.rows
        .iter()
        .map(|r| (r.info.kernel, r.info.layer))
        .collect()
}

#[test]
fn without_timestamps_each_dispatch_is_timed_as_a_round_trip() {
    let fx = first_fixture();
    let mut plain = engine(&fx, false);
    let round_trips = plain.profile_step_timed(4, 2).expect("profile");
    assert_eq!(round_trips.timing, ProfileTiming::RoundTrips);
    assert!(
        round_trips.span_ms.is_none(),
        "no GPU span without timestamps"
    );
    assert!(!round_trips.rows.is_empty());
    assert!(round_trips
        .rows
        .iter()
        .all(|r| r.ms.is_some_and(|ms| ms.is_finite() && ms > 0.0)));

    // Asked for where the adapter has them (lavapipe does): GPU time, the same dispatches.
    let mut timed = engine(&fx, true);
    let profile = timed.profile_step_timed(4, 2).expect("profile");
    assert_eq!(kernels(&profile), kernels(&round_trips));
    if profile.timing != ProfileTiming::RoundTrips {
        assert!(profile
            .span_ms
            .is_some_and(|ms| ms.is_finite() && ms >= 0.0));
        assert!(profile
            .rows
            .iter()
            .all(|r| r.ms.is_some_and(|ms| ms.is_finite() && ms >= 0.0)));
    }

    // Profiling resets the engine: both still pass the fixture's checks.
    for engine in [&mut plain, &mut timed] {
        let mut summary = Summary::default();
        summary.add(&pollster::block_on(conformance::run(
            &fx,
            engine,
            Tolerances::GPU,
        )));
        if let Err(problems) = summary.verdict() {
            panic!("after profiling: {problems}");
        }
    }
}
