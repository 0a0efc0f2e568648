//! libFuzzer driver: one binary for every target of `bd3lm_fuzz::TARGETS`, the target chosen
//! by `BD3LM_FUZZ_TARGET`. Each input runs under the counting allocator's bound; a panic, an
//! input over libFuzzer's `-timeout`, or an allocation over the bound is a crash (libFuzzer
//! saves the input). At exit it prints one `bd3lm-fuzz-stats` line for `scripts/fuzz.sh`.
#![no_main]

use bd3lm_fuzz::alloc::{CountingAlloc, Measurement};
use bd3lm_fuzz::Target;
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::sync::OnceLock;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

static TARGET: OnceLock<&'static Target> = OnceLock::new();

/// The run's record: inputs, the highest peak/bound ratio and the largest peak.
#[derive(Clone, Copy, Default)]
struct Stats {
    inputs: u64,
    max_ratio: f64,
    ratio_peak: usize,
    ratio_len: usize,
    max_peak: usize,
    max_peak_len: usize,
}

thread_local! {
    static STATS: Cell<Stats> = Cell::new(Stats::default());
}

fn record(m: &Measurement, len: usize) {
    STATS.with(|s| {
        let mut st = s.get();
        st.inputs += 1;
        if m.ratio() > st.max_ratio {
            (st.max_ratio, st.ratio_peak, st.ratio_len) = (m.ratio(), m.peak_bytes, len);
        }
        if m.peak_bytes > st.max_peak {
            (st.max_peak, st.max_peak_len) = (m.peak_bytes, len);
        }
        s.set(st);
    });
}

extern "C" fn report() {
    let name = TARGET.get().map_or("?", |t| t.name);
    let st = STATS.with(|s| s.get());
    eprintln!(
        "bd3lm-fuzz-stats target={name} inputs={} max_ratio={:.4} ratio_peak_bytes={} ratio_input_bytes={} max_peak_bytes={} max_peak_input_bytes={}",
        st.inputs, st.max_ratio, st.ratio_peak, st.ratio_len, st.max_peak, st.max_peak_len
    );
}

extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
}

fn init() {
    let name = std::env::var("BD3LM_FUZZ_TARGET").unwrap_or_default();
    let Some(target) = bd3lm_fuzz::target(&name) else {
        let names: Vec<&str> = bd3lm_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "set BD3LM_FUZZ_TARGET to one of: {} (got {name:?})",
            names.join(", ")
        );
        std::process::exit(2);
    };
    let _ = TARGET.set(target);
    // SAFETY: registers a plain function; libFuzzer leaves through exit(), which runs it.
    unsafe { atexit(report) };
}

fuzz_target!(init: init(), |data: &[u8]| {
    let Some(target) = TARGET.get() else { return };
    let m = bd3lm_fuzz::run_bounded(target, data);
    record(&m, data.len());
    assert!(
        m.within_bound(),
        "allocation bound exceeded: peak {} bytes, refused request {:?}, bound {} for a {}-byte input",
        m.peak_bytes, m.refused, m.limit, data.len()
    );
});
