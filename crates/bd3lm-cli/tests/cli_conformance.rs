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

#[test]
fn cpu_passes_every_fixture() {
    let dirs = fixture_dirs();
    let mut args = vec![
        "conformance".to_string(),
        "--backend".into(),
        "cpu".into(),
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
        r.stderr.contains(&format!(
            "{} checks on {} fixture(s)",
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
