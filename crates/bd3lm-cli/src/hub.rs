//! `--model owner/name[@revision]`: a checkpoint straight from the Hugging Face Hub
//! (docs/models.md). The id is resolved to a commit, the checkpoint downloaded once into the
//! Hub's cache (hf-hub: its layout, resumable downloads), its SHA-256 checked against the
//! Hub's file list, and converted once into a package under
//! `~/.cache/bd3lm/<owner>/<name>/<commit>/<format>/`, which later runs verify and reuse.
//!
//! Environment: `HF_ENDPOINT` (a mirror or the test emulator), `HF_TOKEN` (private and gated
//! repos; else the token file of `huggingface-cli login`), `HF_HUB_CACHE` / `HF_HOME`,
//! `HF_HUB_OFFLINE=1` (never touch the network), `BD3LM_CACHE` (the package cache).

use crate::error::{CliError, CliResult};
use crate::progress;
use bd3lm::hub::{self, HubError, HubId, LoadPlan, TreeEntry};
use bd3lm::package::{self, Manifest, SchemePlan};
use bd3lm::quant::Scheme;
use bd3lm::Config;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod package_repo;

/// Where and how the Hub is reached, from the environment.
#[derive(Debug, Clone)]
pub struct HubEnv {
    pub endpoint: String,
    pub token: Option<String>,
    /// The Hub cache (`models--owner--name/{blobs,snapshots,refs}`), shared with Python.
    pub hf_cache: PathBuf,
    pub offline: bool,
    /// Converted packages: `<packages>/<owner>/<name>/<commit>/<format>/`.
    pub packages: PathBuf,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn home() -> PathBuf {
    env("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

impl HubEnv {
    pub fn from_env() -> HubEnv {
        let hf_home =
            env("HF_HOME").map_or_else(|| home().join(".cache").join("huggingface"), PathBuf::from);
        let hf_cache = env("HF_HUB_CACHE").map_or_else(|| hf_home.join("hub"), PathBuf::from);
        let token = env("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(hf_home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let offline = env("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "on" | "yes" | "true"
            )
        });
        let packages = env("BD3LM_CACHE").map_or_else(
            || {
                env("XDG_CACHE_HOME")
                    .map_or_else(|| home().join(".cache"), PathBuf::from)
                    .join("bd3lm")
            },
            PathBuf::from,
        );
        HubEnv {
            endpoint: hub::normalize_endpoint(&env("HF_ENDPOINT").unwrap_or_default()),
            token,
            hf_cache,
            offline,
            packages,
        }
    }

    fn repo_cache(&self, id: &HubId) -> PathBuf {
        self.hf_cache
            .join(format!("models--{}--{}", id.owner, id.name))
    }

    fn package_dir(&self, id: &HubId, commit: &str, format: Scheme) -> PathBuf {
        self.packages
            .join(&id.owner)
            .join(&id.name)
            .join(commit)
            .join(format.name())
    }

    /// A package the repo itself holds, as downloaded: `<packages>/<owner>/<name>/<commit>/package/`.
    fn stored_package_dir(&self, id: &HubId, commit: &str) -> PathBuf {
        self.packages
            .join(&id.owner)
            .join(&id.name)
            .join(commit)
            .join("package")
    }

    /// The commit a revision pointed at when last resolved (Hub cache refs, or ours).
    fn cached_commit(&self, id: &HubId) -> Option<String> {
        if id.is_pinned() {
            return id.revision.clone();
        }
        let rev = id.revision();
        [
            self.repo_cache(id).join("refs").join(rev),
            self.packages
                .join(&id.owner)
                .join(&id.name)
                .join("refs")
                .join(rev),
        ]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| hub::is_commit(s))
    }

    fn remember_commit(&self, id: &HubId, commit: &str) {
        if id.is_pinned() {
            return;
        }
        for dir in [
            self.repo_cache(id).join("refs"),
            self.packages.join(&id.owner).join(&id.name).join("refs"),
        ] {
            let path = dir.join(id.revision());
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&path, commit);
        }
    }
}

fn hub_error(e: HubError) -> CliError {
    CliError::core("", bd3lm::Error::Hub(e))
}

fn say(message: &str) {
    eprintln!("[bd3lm] {message}");
}

/// A small HTTP client for the Hub's API (statuses handled here, so `X-Error-Code` is seen).
struct Client {
    agent: ureq::Agent,
    env: HubEnv,
}

impl Client {
    fn new(env: &HubEnv) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(format!("bd3lm/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            env: env.clone(),
        }
    }

    /// GETs `url` as text; `file` names the repo file asked for (for 404 messages).
    fn get_text(&self, id: &HubId, url: &str, file: Option<&str>) -> Result<String, HubError> {
        let mut request = self.agent.get(url);
        if let Some(token) = &self.env.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| HubError::Unreachable {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let code = response
                .headers()
                .get("x-error-code")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(hub::status_error(
                status,
                code.as_deref(),
                id,
                &self.env.endpoint,
                file,
                url,
                self.env.token.is_some(),
            ));
        }
        response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| HubError::Unreachable {
                url: url.to_string(),
                detail: e.to_string(),
            })
    }
}

/// A Hub model ready to load: its package directory and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct HubPackage {
    pub id: HubId,
    pub commit: String,
    pub dir: PathBuf,
}

/// The commit of `id`: from the Hub, or (offline, or the Hub unreachable) from the caches.
fn resolve_commit(env: &HubEnv, client: &Client, id: &HubId) -> CliResult<String> {
    if env.offline {
        return env.cached_commit(id).ok_or_else(|| {
            hub_error(HubError::Offline {
                what: format!("{id} (no cached commit for revision `{}`)", id.revision()),
            })
        });
    }
    let url = hub::model_info_url(&env.endpoint, &id.repo(), id.revision());
    match client.get_text(id, &url, None) {
        Ok(text) => {
            let info = hub::parse_model_info(&url, &text).map_err(hub_error)?;
            env.remember_commit(id, &info.sha);
            Ok(info.sha)
        }
        Err(HubError::Unreachable { url, detail }) => match env.cached_commit(id) {
            Some(commit) => {
                say(&format!(
                    "the Hub is unreachable ({detail}); using the cached commit {commit} of {id}"
                ));
                Ok(commit)
            }
            None => Err(hub_error(HubError::Unreachable { url, detail })),
        },
        Err(e) => Err(hub_error(e)),
    }
}

/// Checks every file of a package directory against its manifest (sizes and SHA-256).
fn verify_package(dir: &Path) -> Result<Manifest, String> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).map_err(|e| e.to_string())?;
    let manifest = Manifest::parse(&text).map_err(|e| e.to_string())?;
    for entry in std::iter::once(&manifest.tokenizer).chain(&manifest.files) {
        let bytes =
            std::fs::read(dir.join(&entry.file)).map_err(|e| format!("{}: {e}", entry.file))?;
        package::verify_file(entry, &bytes).map_err(|e| e.to_string())?;
    }
    Ok(manifest)
}

/// The package of `id` in `format`: the cached one when it verifies, else downloaded (as
/// needed) and converted. `tokenizer` is used when the repo has none and GPT-2's does not fit.
pub fn package_for(id: &HubId, format: Scheme, tokenizer: Option<&Path>) -> CliResult<HubPackage> {
    let env = HubEnv::from_env();
    let client = Client::new(&env);
    let commit = resolve_commit(&env, &client, id)?;
    let dir = env.package_dir(id, &commit, format);
    if dir.join("manifest.json").is_file() {
        match verify_package(&dir) {
            Ok(_) => {
                return Ok(HubPackage {
                    id: id.clone(),
                    commit,
                    dir,
                })
            }
            Err(why) => {
                say(&format!(
                    "the cached package {} failed verification ({why}); converting again",
                    dir.display()
                ));
                std::fs::remove_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
            }
        }
    }
    // A repo that holds a package (manifest.json + shards): its files as they are, no
    // conversion (`format` does not apply).
    let stored = env.stored_package_dir(id, &commit);
    if stored.join("manifest.json").is_file() {
        match verify_package(&stored) {
            Ok(_) => {
                return Ok(HubPackage {
                    id: id.clone(),
                    commit,
                    dir: stored,
                })
            }
            Err(why) => {
                say(&format!(
                    "the cached package {} failed verification ({why}); downloading it again",
                    stored.display()
                ));
                std::fs::remove_dir_all(&stored).map_err(|e| CliError::io(&stored, e))?;
            }
        }
    }
    if !env.offline {
        let tree_url = hub::tree_url(&env.endpoint, &id.repo(), &commit);
        let tree_text = client.get_text(id, &tree_url, None).map_err(hub_error)?;
        let tree = hub::parse_tree(&tree_url, &tree_text).map_err(hub_error)?;
        if hub::holds_package(&tree) {
            let dir = package_repo::download(&env, &client, id, &commit, &tree, &stored)?;
            return Ok(HubPackage {
                id: id.clone(),
                commit,
                dir,
            });
        }
    }
    let snapshot = checkpoint_at(&env, &client, id, &commit)?;
    let config = read_config(id, &snapshot)?;
    let (tokenizer_json, special) = crate::quantize::read_tokenizer(&snapshot, tokenizer, &config)?;
    let model_path = snapshot.join(hub::CHECKPOINT_FILE);
    let len = std::fs::metadata(&model_path)
        .map_err(|e| CliError::io(&model_path, e))?
        .len();
    // Converted beside the final place, then renamed: a cache entry is whole or absent.
    let partial = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| CliError::io(&partial, e))?;
    say(&format!(
        "converting {id} ({}) to {} in {}",
        short(&commit),
        format.name(),
        dir.display()
    ));
    let converted = crate::quantize::convert_checkpoint(
        &config,
        &model_path,
        len,
        SchemePlan::for_format(format),
        &partial,
        &format!("{}-{}", id.name, format.name()),
        special,
        &tokenizer_json,
    );
    if let Err(e) = converted {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &dir).map_err(|e| CliError::io(&dir, e))?;
    Ok(HubPackage {
        id: id.clone(),
        commit,
        dir,
    })
}

/// The Hub-cache snapshot directory holding `id`'s checkpoint (downloaded as needed): for
/// commands that read the f32 checkpoint itself (`quantize`, `quant-report`).
pub fn checkpoint_for(id: &HubId) -> CliResult<PathBuf> {
    let env = HubEnv::from_env();
    let client = Client::new(&env);
    let commit = resolve_commit(&env, &client, id)?;
    checkpoint_at(&env, &client, id, &commit)
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn read_config(id: &HubId, snapshot: &Path) -> CliResult<Config> {
    let path = snapshot.join(hub::CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| CliError::io(&path, e))?;
    hub::check_config(id, &text).map_err(hub_error)
}

/// Config, checkpoint (and tokenizer when the repo has one) of `id` at `commit` in the Hub
/// cache, the checkpoint verified against the Hub's SHA-256.
fn checkpoint_at(env: &HubEnv, client: &Client, id: &HubId, commit: &str) -> CliResult<PathBuf> {
    let snapshot = env.repo_cache(id).join("snapshots").join(commit);
    let checkpoint = snapshot.join(hub::CHECKPOINT_FILE);
    if env.offline {
        let config = snapshot.join(hub::CONFIG_FILE);
        if !(config.is_file() && checkpoint.is_file()) {
            return Err(hub_error(HubError::Offline {
                what: format!("the checkpoint of {id} (commit {})", short(commit)),
            }));
        }
        // The blob a snapshot links to is named by its SHA-256 (the LFS etag).
        if let Some(expected) = std::fs::read_link(&checkpoint)
            .ok()
            .and_then(|target| target.file_name().map(|n| n.to_string_lossy().to_string()))
            .filter(|name| hub::is_sha256(name))
        {
            let size = std::fs::metadata(&checkpoint).map(|m| m.len()).unwrap_or(0);
            verify_download(id, &checkpoint, &expected, size)?;
        }
        return Ok(snapshot);
    }
    let tree_url = hub::tree_url(&env.endpoint, &id.repo(), commit);
    let tree_text = client.get_text(id, &tree_url, None).map_err(hub_error)?;
    let tree = hub::parse_tree(&tree_url, &tree_text).map_err(hub_error)?;
    let plan = LoadPlan::from_tree(id, &tree).map_err(hub_error)?;
    let api = hf_api(env)?;
    let repo = api.repo(hf_hub::Repo::with_revision(
        id.repo(),
        hf_hub::RepoType::Model,
        commit.to_string(),
    ));
    // The config first: a repo that is not a BD3-LM fails before the big download.
    let config_path = fetch_small(env, &repo, id, &plan.config)?;
    let config_text =
        std::fs::read_to_string(&config_path).map_err(|e| CliError::io(&config_path, e))?;
    hub::check_config(id, &config_text).map_err(hub_error)?;
    if let Some(tokenizer) = &plan.tokenizer {
        fetch_small(env, &repo, id, tokenizer)?;
    }
    let lfs = plan.checkpoint_lfs().cloned().ok_or_else(|| {
        hub_error(HubError::NotLfs {
            repo: id.repo(),
            file: hub::CHECKPOINT_FILE.into(),
        })
    })?;
    if checkpoint.is_file() {
        match verify_download(id, &checkpoint, &lfs.oid, lfs.size) {
            Ok(()) => return Ok(snapshot),
            Err(e) => say(&format!(
                "the cached checkpoint is damaged ({e}); downloading it again"
            )),
        }
    }
    say(&format!(
        "downloading {} of {id} ({}, {:.1} MB) from {}",
        hub::CHECKPOINT_FILE,
        short(commit),
        lfs.size as f64 / 1e6,
        env.endpoint
    ));
    let bar = progress::byte_bar(lfs.size, "downloading");
    let downloaded = repo.download_with_progress(hub::CHECKPOINT_FILE, BarProgress(bar.clone()));
    bar.finish_and_clear();
    let path = downloaded.map_err(|e| download_error(env, id, &plan.checkpoint, e))?;
    verify_download(id, &path, &lfs.oid, lfs.size)?;
    Ok(snapshot)
}

/// Downloads (or finds in the cache) a small git file of the repo.
fn fetch_small(
    env: &HubEnv,
    repo: &hf_hub::api::sync::ApiRepo,
    id: &HubId,
    entry: &TreeEntry,
) -> CliResult<PathBuf> {
    repo.get(&entry.path)
        .map_err(|e| download_error(env, id, entry, e))
}

/// hf-hub's client for the environment: endpoint, cache, token, resumable retries.
fn hf_api(env: &HubEnv) -> CliResult<hf_hub::api::sync::Api> {
    hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(env.hf_cache.clone()))
        .with_endpoint(env.endpoint.clone())
        .with_token(env.token.clone())
        .with_progress(false)
        // Each retry resumes where the file stopped (an HTTP Range request).
        .with_retries(4)
        .with_user_agent("bd3lm", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the Hub client: {e}")))
}

fn download_error(
    env: &HubEnv,
    id: &HubId,
    entry: &TreeEntry,
    e: hf_hub::api::sync::ApiError,
) -> CliError {
    use hf_hub::api::sync::ApiError;
    let url = hub::resolve_url(&env.endpoint, &id.repo(), id.revision(), &entry.path);
    let status = |e: &ApiError| match e {
        ApiError::RequestError(inner) => match inner.as_ref() {
            ureq::Error::StatusCode(code) => Some(*code),
            _ => None,
        },
        _ => None,
    };
    let inner = match &e {
        ApiError::TooManyRetries(inner) => inner.as_ref(),
        other => other,
    };
    if let Some(code) = status(inner) {
        return hub_error(hub::status_error(
            code,
            None,
            id,
            &env.endpoint,
            Some(&entry.path),
            &url,
            env.token.is_some(),
        ));
    }
    match inner {
        ApiError::RequestError(_) | ApiError::IoError(_)
            if matches!(e, ApiError::TooManyRetries(_)) =>
        {
            hub_error(HubError::Interrupted {
                repo: id.repo(),
                file: entry.path.clone(),
                at: partial_bytes(env, id, entry),
                total: entry.size,
                detail: inner.to_string(),
            })
        }
        ApiError::RequestError(_) => hub_error(HubError::Unreachable {
            url,
            detail: inner.to_string(),
        }),
        other => CliError::Failed(format!("{}: download failed: {other}", entry.path)),
    }
}

/// Bytes of an interrupted download kept for the next attempt (hf-hub's `.part` file).
fn partial_bytes(env: &HubEnv, id: &HubId, entry: &TreeEntry) -> u64 {
    let Some(sha) = entry.sha256() else { return 0 };
    let part = env.repo_cache(id).join("blobs").join(format!("{sha}.part"));
    std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
}

/// Checks a downloaded file's size and SHA-256; a mismatch removes it from the cache (blob,
/// snapshot link, partial download) so the next run downloads it again.
fn verify_download(id: &HubId, path: &Path, expected: &str, size: u64) -> CliResult<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let discard = || {
        if let Ok(blob) = std::fs::canonicalize(path) {
            let _ = std::fs::remove_file(blob.with_extension("part"));
            let _ = std::fs::remove_file(&blob);
        }
        let _ = std::fs::remove_file(path);
    };
    let found_size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if found_size != size {
        discard();
        return Err(hub_error(HubError::SizeMismatch {
            repo: id.repo(),
            file: file_name,
            expected: size,
            found: found_size,
        }));
    }
    let found = sha256_file(path)?;
    if found != expected {
        discard();
        return Err(hub_error(HubError::HashMismatch {
            repo: id.repo(),
            file: file_name,
            expected: expected.to_string(),
            found,
        }));
    }
    Ok(())
}

fn sha256_file(path: &Path) -> CliResult<String> {
    let mut file = std::fs::File::open(path).map_err(|e| CliError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| CliError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// hf-hub's progress callbacks on our bar. hf-hub calls `init` then `update(resumed_bytes)`
/// at the start of every attempt, so `init` rewinds the bar.
struct BarProgress(indicatif::ProgressBar);

impl hf_hub::api::Progress for BarProgress {
    fn init(&mut self, size: usize, _filename: &str) {
        self.0.set_length(size as u64);
        self.0.set_position(0);
    }
    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }
    fn finish(&mut self) {}
}
