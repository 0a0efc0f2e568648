//! Helpers shared by the CLI tests: run the built `bd3lm` binary and inspect its output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn demo_model() -> PathBuf {
    repo_root().join("models/bd3lm-sotu-tiny-bs4")
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "exit code {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Asserts the exit code and that stderr mentions every needle.
    pub fn fails_with(self, code: i32, needles: &[&str]) -> Run {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks `{n}`:\n{}",
                self.stderr
            );
        }
        assert!(
            !self.stderr.contains("panicked"),
            "a panic instead of an error:\n{}",
            self.stderr
        );
        self
    }
}

/// The binary, defaulting to the CPU backend (fast and exact for the tiny demo model); tests
/// of the GPU backend pass `--backend gpu`.
pub fn bd3lm() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bd3lm"));
    cmd.current_dir(std::env::temp_dir())
        .env("BD3LM_BACKEND", "cpu");
    cmd
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    finish(bd3lm().args(args).output().expect("run bd3lm"))
}

/// Runs `bd3lm` with one extra environment variable.
pub fn run_with_env<I, S>(key: &str, value: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    finish(
        bd3lm()
            .env(key, value)
            .args(args)
            .output()
            .expect("run bd3lm"),
    )
}

pub fn path(p: &Path) -> String {
    p.display().to_string()
}
