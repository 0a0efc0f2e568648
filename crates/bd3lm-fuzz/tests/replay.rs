//! Replays every committed seed and regression input through its fuzz target under the same
//! rules as the fuzzer (no panic, the allocation bound), so a crash that fuzzing once found
//! stays fixed in plain `cargo test`. One test function: the allocator's counts are
//! process-wide, so nothing else may allocate on another thread while an input is measured.

use bd3lm_fuzz::alloc::{self, CountingAlloc};
use bd3lm_fuzz::{allocation_bound, regressions_dir, run_bounded, seeds_dir, target, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn inputs(dir: PathBuf) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

fn allocator_bound_is_enforced() {
    assert!(alloc::installed());
    // A request over the bound is refused (here through try_reserve, so it is observable).
    let (result, m) = alloc::measure(1 << 20, || Vec::<u8>::new().try_reserve(1 << 30));
    assert!(
        result.is_err(),
        "a 1 GiB request under a 1 MiB bound must be refused"
    );
    assert_eq!(m.refused, Some(1 << 30));
    assert!(!m.within_bound());
    // Within the bound: the peak counts what was live at once, not the sum.
    let ((), m) = alloc::measure(1 << 20, || {
        for _ in 0..4 {
            std::hint::black_box(vec![1u8; 300_000]);
        }
    });
    assert!(m.within_bound(), "{m:?}");
    assert!((300_000..600_000).contains(&m.peak_bytes), "{m:?}");
}

/// A safetensors header that claims a 100 GB tensor, for every loader that reads one.
fn hundred_gigabyte_claims_fail_cleanly() {
    let header = br#"{"backbone.vocab_embed.embedding":{"dtype":"F32","shape":[25000000000],"data_offsets":[0,100000000000]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0u8; 64]);
    let config = br#"{"model_type":"bd3lm","block_size":4,"model_length":8}"#;
    let cases = [
        (
            "safetensors_header",
            [&(file.len() as u64).to_le_bytes()[..], &file].concat(),
        ),
        (
            "safetensors_header",
            [&100_000_000_064u64.to_le_bytes()[..], &file].concat(),
        ),
        ("hf_checkpoint", bd3lm_fuzz::input::join(config, &file)),
        ("fixture_golden", bd3lm_fuzz::input::join(&file, b"{}")),
    ];
    for (name, input) in cases {
        let t = target(name).expect("target");
        let m = run_bounded(t, &input);
        assert!(m.within_bound(), "{name}: {m:?}");
        assert!(
            m.peak_bytes < 1 << 20,
            "{name}: peak {} bytes",
            m.peak_bytes
        );
    }
}

#[test]
fn seeds_and_regressions_pass_under_the_fuzzing_rules() {
    allocator_bound_is_enforced();
    hundred_gigabyte_claims_fail_cleanly();
    let mut failures = Vec::new();
    for t in TARGETS {
        let seeds = inputs(seeds_dir(t.name));
        assert!(
            !seeds.is_empty(),
            "{}: no seeds in {:?}",
            t.name,
            seeds_dir(t.name)
        );
        let regressions = inputs(regressions_dir(t.name));
        let (mut worst, mut general, mut count) = (0f64, 0f64, 0);
        for path in seeds.iter().chain(&regressions) {
            let data = std::fs::read(path).expect("read input");
            match catch_unwind(AssertUnwindSafe(|| run_bounded(t, &data))) {
                Ok(m) if m.within_bound() => {
                    worst = worst.max(m.ratio());
                    general =
                        general.max(m.peak_bytes as f64 / allocation_bound(data.len()) as f64);
                }
                Ok(m) => failures.push(format!(
                    "{}: over the allocation bound: {m:?}",
                    path.display()
                )),
                Err(_) => failures.push(format!("{}: panicked (message above)", path.display())),
            }
            count += 1;
        }
        eprintln!(
            "{:<20} {count:>4} inputs ({} regressions), peak at most {worst:.3} of the target's bound, {general:.3} of 2 x input + 1 MiB",
            t.name,
            regressions.len(),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
