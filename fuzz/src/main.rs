//! libFuzzer driver: one binary for every target of `bd3lm_fuzz::TARGETS`, the target chosen
//! by `BD3LM_FUZZ_TARGET`. Each input runs under the counting allocator's bound; a panic or an
//! allocation over the bound is a crash (libFuzzer saves the input), and an input that runs
//! over `BD3LM_FUZZ_TIMEOUT_MS` (1000) of CPU time is a hang (the watchdog below saves it).
//! At exit it prints one `bd3lm-fuzz-stats` line for `scripts/fuzz.sh`.
//!
//! Why a watchdog instead of libFuzzer's `-timeout`: libFuzzer reports a timeout from its
//! SIGALRM handler, which writes the input with `fwrite`; without a sanitizer's allocator
//! that deadlocks whenever the alarm lands inside `malloc` (seen here). The watchdog is a
//! plain thread, and it counts CPU time, so a busy shared machine cannot fake a hang.
#![no_main]

use bd3lm_fuzz::alloc::{CountingAlloc, Measurement};
use bd3lm_fuzz::Target;
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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
    max_cpu_ns: u64,
    /// Highest peak against the general bound (2 x input + 1 MiB), for targets with their own.
    max_general_ratio: f64,
}

thread_local! {
    static STATS: Cell<Stats> = Cell::new(Stats::default());
}

fn record(m: &Measurement, len: usize, cpu_ns: u64) {
    STATS.with(|s| {
        let mut st = s.get();
        st.inputs += 1;
        st.max_cpu_ns = st.max_cpu_ns.max(cpu_ns);
        let general = m.peak_bytes as f64 / bd3lm_fuzz::allocation_bound(len) as f64;
        st.max_general_ratio = st.max_general_ratio.max(general);
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
        "bd3lm-fuzz-stats target={name} inputs={} max_ratio={:.4} ratio_peak_bytes={} ratio_input_bytes={} max_peak_bytes={} max_peak_input_bytes={} slowest_input_ms={:.1} max_general_ratio={:.4}",
        st.inputs, st.max_ratio, st.ratio_peak, st.ratio_len, st.max_peak, st.max_peak_len,
        st.max_cpu_ns as f64 / 1e6,
        st.max_general_ratio
    );
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;

extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
    fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    fn _exit(code: i32) -> !;
}

/// CPU time of this process (the fuzzed code runs on one thread; the others sleep).
fn cpu_ns() -> u64 {
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: writes one timespec.
    unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.sec as u64 * 1_000_000_000 + t.nsec as u64
}

/// The input now running and the CPU time it started at (`None` between inputs).
struct Running {
    started_ns: Option<u64>,
    input: Vec<u8>,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    started_ns: None,
    input: Vec::new(),
});

fn watchdog(limit_ns: u64, artifacts: String) {
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        let Some(started) = running.started_ns else {
            continue;
        };
        let spent = cpu_ns().saturating_sub(started);
        if spent > limit_ns {
            let hash = running.input.iter().fold(0xcbf29ce484222325u64, |h, &b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
            let path = format!("{artifacts}timeout-{hash:016x}");
            let saved = std::fs::write(&path, &running.input);
            eprintln!(
                "bd3lm-fuzz: HANG: one input ran {} ms of CPU time (limit {} ms); {} bytes written to {path} ({saved:?})",
                spent / 1_000_000,
                limit_ns / 1_000_000,
                running.input.len()
            );
            report();
            // SAFETY: ends the process at once; the fuzzed thread is stuck mid-input.
            unsafe { _exit(71) };
        }
    }
}

fn init() {
    let name = std::env::var("BD3LM_FUZZ_TARGET").unwrap_or_default();
    if name == "list" {
        for t in bd3lm_fuzz::TARGETS {
            println!("{}", t.name);
        }
        std::process::exit(0);
    }
    let Some(target) = bd3lm_fuzz::target(&name) else {
        let names: Vec<&str> = bd3lm_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "set BD3LM_FUZZ_TARGET to one of: {} (got {name:?})",
            names.join(", ")
        );
        std::process::exit(2);
    };
    let _ = TARGET.set(target);
    // A panic's report (the backtrace) allocates: lift the bound first, then let
    // libfuzzer-sys's hook print it and abort.
    let abort_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        bd3lm_fuzz::alloc::disarm();
        abort_hook(info);
    }));
    // SAFETY: registers a plain function; libFuzzer leaves through exit(), which runs it.
    unsafe { atexit(report) };
    let limit_ms: u64 = std::env::var("BD3LM_FUZZ_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let artifacts = std::env::var("BD3LM_FUZZ_ARTIFACTS").unwrap_or_default();
    std::thread::spawn(move || watchdog(limit_ms * 1_000_000, artifacts));
}

fuzz_target!(init: init(), |data: &[u8]| {
    let Some(target) = TARGET.get() else { return };
    let started = cpu_ns();
    {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.input.clear();
        running.input.extend_from_slice(data);
        running.started_ns = Some(started);
    }
    let m = bd3lm_fuzz::run_bounded(target, data);
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).started_ns = None;
    record(&m, data.len(), cpu_ns().saturating_sub(started));
    assert!(
        m.within_bound(),
        "allocation bound exceeded: peak {} bytes, refused request {:?}, bound {} for a {}-byte input",
        m.peak_bytes, m.refused, m.limit, data.len()
    );
});
