//! `--model owner/name[@rev]` against the loopback Hub emulator (`scripts/hub-emulator.py`,
//! through `HF_ENDPOINT`): download, SHA-256 check, conversion into the package cache and its
//! reuse, offline mode, and every error case of docs/models.md. The repos are the
//! released-layout fixture `gpt2vocab-bs8` (13 MB, GPT-2 vocabulary, no tokenizer) under the
//! released ids, and variants of it.

mod common;
use common::{bd3lm, fixture, path, repo_root, run, temp_dir, Run};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RELEASED: &str = "kuleshov-group/bd3lm-owt-block_size8";
const TOKEN: &str = "hf_test_token";

/// A running emulator over its own repo directory, stopped on drop.
struct Emulator {
    child: Child,
    url: String,
    root: PathBuf,
}

impl Emulator {
    fn start(name: &str) -> Emulator {
        let root = temp_dir(&format!("hub_{name}"));
        let repos = root.join("repos");
        add_repo(&repos, RELEASED, &fixture("gpt2vocab-bs8"));
        let port_file = root.join("port");
        let child = Command::new("python3")
            .arg(repo_root().join("scripts/hub-emulator.py"))
            .args(["--root", &path(&repos), "--port", "0", "--token", TOKEN])
            .args(["--port-file", &path(&port_file)])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the emulator");
        let started = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "emulator did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Emulator {
            child,
            url: format!("http://127.0.0.1:{}", port.trim()),
            root,
        }
    }

    fn repos(&self) -> PathBuf {
        self.root.join("repos")
    }

    /// `bd3lm` with this emulator as the Hub and fresh caches under the test's directory.
    fn cmd(&self) -> Command {
        let mut cmd = bd3lm();
        cmd.env("HF_ENDPOINT", &self.url)
            .env("HF_HUB_CACHE", self.root.join("hf-cache"))
            .env("BD3LM_CACHE", self.root.join("packages"))
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .env("HF_HOME", self.root.join("hf-home"));
        cmd
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.args(args).output().expect("run bd3lm");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn post(&self, what: &str, body: &str) {
        http(&self.url, "POST", what, body);
    }

    /// The requests since the last reset: `(path, range, status, bytes sent)`.
    fn log(&self) -> Vec<(String, Option<String>, u16, u64)> {
        let text = http(&self.url, "GET", "/_emulator/log", "");
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).expect("log JSON");
        entries
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap_or_default().to_string(),
                    e["range"].as_str().map(str::to_string),
                    e["status"].as_u64().unwrap_or(0) as u16,
                    e["sent"].as_u64().unwrap_or(0),
                )
            })
            .filter(|(p, ..)| !p.starts_with("/_emulator"))
            .collect()
    }

    /// Requests that moved checkpoint bytes (the CDN path of LFS files).
    fn weight_requests(&self) -> usize {
        self.log()
            .iter()
            .filter(|(p, r, ..)| p.starts_with("/cdn/") && r.as_deref() != Some("bytes=0-0"))
            .count()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange with the emulator's control endpoints (no client crate needed).
fn http(base: &str, method: &str, what: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the emulator");
    write!(
        stream,
        "{method} {what} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn add_repo(repos: &Path, id: &str, from: &Path) {
    let dir = repos.join(id);
    std::fs::create_dir_all(&dir).expect("repo dir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(from.join(f), dir.join(f)).expect("copy repo file");
    }
}

fn generate(emu: &Emulator, model: &str, env: &[(&str, &str)]) -> Run {
    emu.run(
        &[
            "generate", "--model", model, "--tokens", "16", "--seed", "3", "--prompt", "Hello",
        ],
        env,
    )
}

fn package_dirs(emu: &Emulator) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![emu.root.join("packages")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.join("manifest.json").is_file() {
                found.push(p);
            } else if p.is_dir() {
                stack.push(p);
            }
        }
    }
    found
}

#[test]
fn a_hub_id_downloads_once_converts_once_and_works_offline() {
    let emu = Emulator::start("flow");
    let first = generate(&emu, RELEASED, &[]).ok();
    assert!(first.stdout.starts_with("Hello"), "{}", first.stdout);
    assert!(
        first.stderr.contains("downloading model.safetensors"),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("from the Hugging Face Hub"),
        "{}",
        first.stderr
    );
    assert_eq!(emu.weight_requests(), 1);
    // The package cache holds exactly what `bd3lm quantize` makes of the checkpoint (with
    // the built-in GPT-2 tokenizer): the same converter, the same bytes.
    let dirs = package_dirs(&emu);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].ends_with("q8"), "{:?}", dirs[0]);
    let reference = temp_dir("hub_flow_quantize");
    run([
        "quantize",
        &path(&fixture("gpt2vocab-bs8")),
        &path(&reference),
        "--format",
        "q8",
        "--name",
        "bd3lm-owt-block_size8-q8",
        "--force",
    ])
    .ok();
    for entry in std::fs::read_dir(&reference).unwrap().flatten() {
        let name = entry.file_name();
        assert_eq!(
            std::fs::read(entry.path()).unwrap(),
            std::fs::read(dirs[0].join(&name)).unwrap(),
            "{name:?} differs between the Hub path and bd3lm quantize"
        );
    }
    let gpt2 = std::fs::read(repo_root().join("models/tokenizers/gpt2/tokenizer.json")).unwrap();
    assert_eq!(std::fs::read(dirs[0].join("tokenizer.json")).unwrap(), gpt2);

    // Second run: the commit is looked up, nothing is downloaded or converted.
    emu.post("/_emulator/reset", "");
    let second = generate(&emu, RELEASED, &[]).ok();
    assert_eq!(second.stdout, first.stdout);
    assert!(!second.stderr.contains("downloading"), "{}", second.stderr);
    assert!(!second.stderr.contains("converting"), "{}", second.stderr);
    assert_eq!(emu.weight_requests(), 0);
    assert!(
        emu.log().iter().all(|(p, ..)| p.starts_with("/api/")),
        "{:?}",
        emu.log()
    );

    // Offline: no request at all.
    emu.post("/_emulator/reset", "");
    let offline = generate(&emu, RELEASED, &[("HF_HUB_OFFLINE", "1")]).ok();
    assert_eq!(offline.stdout, first.stdout);
    assert!(emu.log().is_empty(), "{:?}", emu.log());
    // Another format converts again from the cached checkpoint, still without downloading.
    let f16 = emu
        .run(
            &["info", "--model", RELEASED, "--format", "f16"],
            &[("HF_HUB_OFFLINE", "1")],
        )
        .ok();
    assert!(f16.stdout.contains("transformer f16"), "{}", f16.stdout);
    assert!(emu.log().is_empty());
}

#[test]
fn unknown_ids_revisions_and_offline_misses_say_what_is_missing() {
    let emu = Emulator::start("missing");
    generate(&emu, "kuleshov-group/no-such-model", &[])
        .fails_with(1, &["kuleshov-group/no-such-model was not found", "404"]);
    generate(&emu, &format!("{RELEASED}@v9"), &[]).fails_with(1, &["no revision `v9`"]);
    generate(&emu, RELEASED, &[("HF_HUB_OFFLINE", "1")])
        .fails_with(1, &["offline (HF_HUB_OFFLINE=1)", "not in the cache"]);
    // Neither a path nor an id.
    generate(&emu, "./no/such/dir", &[]).fails_with(1, &["no such model directory"]);
    // A repo without model.safetensors.
    let dir = emu.repos().join("someone/config-only");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixture("gpt2vocab-bs8").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    generate(&emu, "someone/config-only", &[]).fails_with(1, &["has no file model.safetensors"]);
}

#[test]
fn private_and_gated_repos_need_a_token() {
    let emu = Emulator::start("auth");
    for (id, setting) in [("org/private", "private"), ("org/gated", "gated")] {
        add_repo(&emu.repos(), id, &fixture("gpt2vocab-bs8"));
        std::fs::write(
            emu.repos().join(id).join(".hub.json"),
            format!("{{\"{setting}\": true}}"),
        )
        .unwrap();
    }
    generate(&emu, "org/private", &[]).fails_with(
        1,
        &["needs a login (HTTP 401)", "private or gated", "HF_TOKEN"],
    );
    generate(&emu, "org/gated", &[]).fails_with(1, &["HTTP 403", "gated"]);
    generate(&emu, "org/gated", &[("HF_TOKEN", "hf_wrong")])
        .fails_with(1, &["HTTP 403", "does not give access"]);
    generate(&emu, "org/private", &[("HF_TOKEN", TOKEN)]).ok();
}

#[test]
fn an_unreachable_hub_is_explained() {
    let emu = Emulator::start("offline_net");
    // Nothing listens on port 1.
    emu.run(
        &["info", "--model", RELEASED],
        &[("HF_ENDPOINT", "http://127.0.0.1:1")],
    )
    .fails_with(1, &["could not be reached", "network"]);
}

#[test]
fn a_repo_that_is_not_bd3lm_fails_before_the_weights_download() {
    let emu = Emulator::start("not_bd3lm");
    let dir = emu.repos().join("openai-community/gpt2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "gpt2", "vocab_size": 50257}"#,
    )
    .unwrap();
    std::fs::copy(
        fixture("gpt2vocab-bs8").join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    generate(&emu, "openai-community/gpt2", &[])
        .fails_with(1, &["is not a BD3-LM model", "model_type \"gpt2\""]);
    assert_eq!(emu.weight_requests(), 0, "{:?}", emu.log());
}

#[test]
fn a_cut_download_resumes_with_range_requests() {
    let emu = Emulator::start("cut");
    emu.post(
        "/_emulator/faults",
        r#"{"cut_after": 4000000, "cut_times": 2}"#,
    );
    let cut = generate(&emu, RELEASED, &[]).ok();
    let resumed: Vec<_> = emu
        .log()
        .into_iter()
        .filter(|(p, r, ..)| p.starts_with("/cdn/") && r.as_deref() != Some("bytes=0-0"))
        .collect();
    assert_eq!(resumed.len(), 3, "{resumed:?}");
    assert_eq!(resumed[1].1.as_deref(), Some("bytes=4000000-"));
    assert_eq!(resumed[2].1.as_deref(), Some("bytes=8000000-"));
    assert_eq!(resumed[2].2, 206);
    // The same text as an uncut download.
    let clean = Emulator::start("cut_reference");
    assert_eq!(generate(&clean, RELEASED, &[]).ok().stdout, cut.stdout);
}

#[test]
fn an_interrupted_download_is_never_cached_and_resumes_next_time() {
    let emu = Emulator::start("interrupted");
    emu.post(
        "/_emulator/faults",
        r#"{"cut_after": 1000000, "cut_times": 100}"#,
    );
    generate(&emu, RELEASED, &[]).fails_with(
        1,
        &["broke off", "could not be resumed", "nothing was stored"],
    );
    assert!(package_dirs(&emu).is_empty());
    let snapshot_files: Vec<_> = walk(&emu.root.join("hf-cache"))
        .into_iter()
        .filter(|p| p.ends_with("model.safetensors"))
        .collect();
    assert!(snapshot_files.is_empty(), "{snapshot_files:?}");
    // The next run continues from the kept part.
    emu.post("/_emulator/reset", "");
    generate(&emu, RELEASED, &[]).ok();
    let first_range = emu
        .log()
        .into_iter()
        .find(|(p, r, ..)| p.starts_with("/cdn/") && r.as_deref() != Some("bytes=0-0"))
        .and_then(|(_, r, ..)| r);
    let start: u64 = first_range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    // hf-hub tried 5 times (1 MB each) before giving up; the part kept all of them.
    assert!(start >= 1_000_000, "resumed from {first_range:?}");
}

#[test]
fn corrupt_bytes_are_discarded_with_the_hash_named() {
    let emu = Emulator::start("corrupt");
    emu.post(
        "/_emulator/faults",
        r#"{"corrupt_at": 6000000, "corrupt_times": 1}"#,
    );
    generate(&emu, RELEASED, &[]).fails_with(1, &["is corrupt", "SHA-256", "discarded"]);
    assert!(package_dirs(&emu).is_empty());
    let sha = {
        use sha2::Digest;
        let bytes = std::fs::read(fixture("gpt2vocab-bs8").join("model.safetensors")).unwrap();
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    let left = walk(&emu.root.join("hf-cache"));
    assert!(
        left.iter().all(|p| !p.ends_with("model.safetensors")
            && p.file_name().is_some_and(|n| n.to_string_lossy() != sha)),
        "the corrupt checkpoint stays in the cache: {left:?}"
    );
    // Served intact, it loads.
    generate(&emu, RELEASED, &[]).ok();
}

/// `bd3lm quantize` of the fixture, published as a repo (manifest.json + shards, flat).
fn add_package_repo(emu: &Emulator, id: &str) -> PathBuf {
    let package = emu.root.join(format!("quantized-{}", id.replace('/', "-")));
    run([
        "quantize",
        &path(&fixture("gpt2vocab-bs8")),
        &path(&package),
        "--format",
        "q8",
        "--force",
    ])
    .ok();
    let dir = emu.repos().join(id);
    std::fs::create_dir_all(&dir).expect("repo dir");
    for entry in std::fs::read_dir(&package).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy package file");
    }
    package
}

#[test]
fn a_package_repo_loads_by_id_verified_and_cached() {
    let emu = Emulator::start("package_repo");
    let local = add_package_repo(&emu, "org/bs8-q8");
    let expected = run([
        "generate",
        "--model",
        &path(&local),
        "--tokens",
        "16",
        "--seed",
        "3",
        "--prompt",
        "Hello",
    ])
    .ok();
    emu.post("/_emulator/reset", "");
    let first = generate(&emu, "org/bs8-q8", &[]).ok();
    assert_eq!(first.stdout, expected.stdout, "{}", first.stderr);
    assert!(
        first.stderr.contains("downloading the q8 package"),
        "{}",
        first.stderr
    );
    assert!(!first.stderr.contains("converting"), "{}", first.stderr);
    // Only the package's files moved: no config.json or checkpoint asked for.
    let asked: Vec<String> = emu.log().into_iter().map(|(p, ..)| p).collect();
    assert!(
        asked
            .iter()
            .all(|p| !p.ends_with("/config.json") && !p.ends_with("/model.safetensors")),
        "{asked:?}"
    );
    assert!(
        asked.iter().any(|p| p.ends_with("/manifest.json")),
        "{asked:?}"
    );
    let shards = std::fs::read_dir(&local)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
        .count();
    assert_eq!(emu.weight_requests(), shards);
    let dirs = package_dirs(&emu);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].ends_with("package"), "{:?}", dirs[0]);
    for entry in std::fs::read_dir(&local).unwrap().flatten() {
        assert_eq!(
            std::fs::read(entry.path()).unwrap(),
            std::fs::read(dirs[0].join(entry.file_name())).unwrap()
        );
    }
    // Second load: only the commit is looked up.
    emu.post("/_emulator/reset", "");
    let second = generate(&emu, "org/bs8-q8", &[]).ok();
    assert_eq!(second.stdout, first.stdout);
    assert!(!second.stderr.contains("downloading"), "{}", second.stderr);
    assert!(
        emu.log().iter().all(|(p, ..)| p.starts_with("/api/")),
        "{:?}",
        emu.log()
    );
    // Offline: no request at all.
    emu.post("/_emulator/reset", "");
    let offline = generate(&emu, "org/bs8-q8", &[("HF_HUB_OFFLINE", "1")]).ok();
    assert_eq!(offline.stdout, first.stdout);
    assert!(emu.log().is_empty(), "{:?}", emu.log());
}

#[test]
fn a_package_repo_with_a_bad_shard_is_refused_and_nothing_is_stored() {
    let emu = Emulator::start("package_repo_bad");
    add_package_repo(&emu, "org/tampered");
    // A shard changed after the manifest was written: the Hub's lfs.oid is not the manifest's.
    let shard = emu.repos().join("org/tampered/weights-00000.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&shard, bytes).unwrap();
    generate(&emu, "org/tampered", &[])
        .fails_with(1, &["weights-00000.safetensors", "manifest.json says"]);
    assert_eq!(
        emu.weight_requests(),
        0,
        "nothing downloaded from a listing that disagrees"
    );
    assert!(package_dirs(&emu).is_empty());
    // Bytes damaged on the way: the shard's SHA-256 is not the manifest's; nothing stored.
    add_package_repo(&emu, "org/intact");
    emu.post(
        "/_emulator/faults",
        r#"{"corrupt_at": 1000, "corrupt_times": 1}"#,
    );
    generate(&emu, "org/intact", &[]).fails_with(1, &["is corrupt", "SHA-256"]);
    assert!(package_dirs(&emu).is_empty());
    generate(&emu, "org/intact", &[]).ok();
    assert_eq!(package_dirs(&emu).len(), 1);
}

#[test]
fn a_damaged_package_cache_is_converted_again_without_downloading() {
    let emu = Emulator::start("damaged_cache");
    let first = generate(&emu, RELEASED, &[]).ok();
    let dir = package_dirs(&emu).pop().expect("a package");
    let shard = dir.join("weights-00000.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&shard, bytes).unwrap();
    emu.post("/_emulator/reset", "");
    let again = generate(&emu, RELEASED, &[]).ok();
    assert!(
        again.stderr.contains("failed verification"),
        "{}",
        again.stderr
    );
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(emu.weight_requests(), 0);
}

#[test]
fn f16_and_bf16_checkpoints_load_by_id() {
    let emu = Emulator::start("dtypes");
    let base = generate(&emu, RELEASED, &[]).ok();
    for dtype in [safetensors::Dtype::F16, safetensors::Dtype::BF16] {
        let id = format!("org/half-{dtype:?}").to_lowercase();
        let dir = emu.repos().join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            fixture("gpt2vocab-bs8").join("config.json"),
            dir.join("config.json"),
        )
        .unwrap();
        let f32_bytes = std::fs::read(fixture("gpt2vocab-bs8").join("model.safetensors")).unwrap();
        std::fs::write(dir.join("model.safetensors"), to_half(&f32_bytes, dtype)).unwrap();
        let r = generate(&emu, &id, &[]).ok();
        assert!(r.stdout.starts_with("Hello"), "{}", r.stdout);
        // Rounding the weights changes the text little or not at all; it must still run.
        assert!(!r.stdout.is_empty() && !base.stdout.is_empty());
    }
}

#[test]
fn quantize_takes_a_hub_id() {
    let emu = Emulator::start("quantize");
    let out = emu.root.join("out");
    emu.run(&["quantize", RELEASED, &path(&out), "--format", "q4"], &[])
        .ok();
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"quantization\": \"q4\""), "{manifest}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The checkpoint with every tensor rounded to f16 or bf16.
fn to_half(bytes: &[u8], dtype: safetensors::Dtype) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let halves: Vec<u8> = view
            .data()
            .chunks_exact(4)
            .flat_map(|c| {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let bits = match dtype {
                    safetensors::Dtype::F16 => half::f16::from_f32(x).to_bits(),
                    _ => half::bf16::from_f32(x).to_bits(),
                };
                bits.to_le_bytes()
            })
            .collect();
        tensors.push((name, view.shape().to_vec(), halves));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}
