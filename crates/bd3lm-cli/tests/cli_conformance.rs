//! `bd3lm conformance` on every golden fixture in tests/fixtures/.

mod common;
use common::*;

fn fixture_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(repo_root().join("tests/fixtures"))
        .expect("tests/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .map(|p| path(&p))
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "expected the shared fixture cases");
    dirs
}

/// The CLI runs the WGSL engine too (the GPU crate's own test replays every fixture).
#[test]
fn gpu_backend_passes_a_fixture() {
    let dir = path(&fixture("tiny-v512-bs4"));
    for tiling in ["software", "hardware"] {
        let r = run([
            "conformance",
            "--backend",
            "gpu",
            "--gpu-tiling",
            tiling,
            &dir,
        ])
        .ok();
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("PASS tiny-v512-bs4 trace/ddpm")),
            "{}",
            r.stdout
        );
        assert!(lines.iter().all(|l| l.starts_with("PASS ")), "{}", r.stdout);
    }
}

/// The exact reference at the CPU tolerance (1e-4) and the fast CPU engine at the GPU
/// tolerance (1e-3), every trace token-exact for both.
#[test]
fn reference_and_fast_cpu_pass_every_fixture() {
    for backend in ["reference", "cpu"] {
        passes_every_fixture(backend);
    }
}

fn passes_every_fixture(backend: &str) {
    let dirs = fixture_dirs();
    let mut args = vec![
        "conformance".to_string(),
        "--backend".into(),
        backend.into(),
        "--json".into(),
    ];
    args.extend(dirs.iter().cloned());
    let r = run(&args).ok();
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    for dir in &dirs {
        let case = std::path::Path::new(dir)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let traces = lines
            .iter()
            .filter(|l| {
                l["case"] == case.as_str() && l["check"].as_str().unwrap().starts_with("trace/")
            })
            .count();
        assert!(traces >= 1, "{case}: no trace replayed");
    }
    assert!(lines.iter().all(|l| l["status"] == "PASS"), "{}", r.stdout);
    assert!(
        lines.iter().all(|l| l["first_divergence"].is_null()),
        "{backend}: every trace token-exact\n{}",
        r.stdout
    );
    // Both CPU engines are held to the CPU tolerance (bd3lm::tolerance).
    let tol = 1e-4;
    let logits = lines.iter().find(|l| l["check"] == "logits").unwrap();
    assert_eq!(logits["tol"].as_f64().unwrap(), tol, "{backend}");
    assert!(
        r.stderr.contains(&format!(
            "{} checks on {} fixture(s), backend {backend}",
            lines.len(),
            dirs.len()
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn text_lines_and_bad_arguments() {
    let r = run(["conformance", &path(&fixture("tiny-v512-bs4"))]).ok();
    assert!(
        r.stdout
            .lines()
            .all(|l| l.starts_with("PASS tiny-v512-bs4 ")),
        "{}",
        r.stdout
    );
    run(["conformance", &path(&demo_model())])
        .fails_with(2, &["not a fixture directory", "golden.safetensors"]);
    run(["conformance", "/nonexistent/fixture"])
        .fails_with(2, &["/nonexistent/fixture", "not a fixture directory"]);
    run(["conformance"]).fails_with(2, &["<FIXTURES>"]);
}
