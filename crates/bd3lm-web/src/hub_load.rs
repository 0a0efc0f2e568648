//! A model by Hugging Face Hub id, in the browser (docs/models.md): the id is resolved to a
//! commit and the file list read (`/api/models/{id}/revision|tree/{rev}`); `model.safetensors`
//! streams from `{hub}/{id}/resolve/{commit}/model.safetensors` and every chunk goes through
//! the SHA-256 (in wasm) and the streaming converter, whose tensor pieces go straight to the
//! engine and whose shards wait in a staging cache. Only when the whole file arrived and its
//! SHA-256 equals the Hub's `lfs.oid` does the package move into the package cache (manifest
//! last) and the engine become usable. A broken connection resumes with a Range request.

use crate::browser::{self, js_error_text, now_ms, yield_to_browser};
use crate::cache::{PackageCache, STAGING_CACHE_NAME};
use crate::hub_choice;
use crate::loader::{LoadReport, PackageInfo};
use crate::page_engine::ModelSink;
use crate::page_error::PageError;
use crate::progress::DownloadProgress;
use bd3lm::hub::{self, HubError, HubId, LoadPlan};
use bd3lm::package::url::{file_url, MANIFEST_FILE};
use bd3lm::package::{Manifest, PackageWriter, SchemePlan, TensorPiece, CONVERTER_SHARD_BYTES};
use bd3lm::quant::Scheme;
use bd3lm::stream_convert::{package_info, special_tokens, StreamingConverter};
use bd3lm::tokenizer::Tokenizer;
use bd3lm::Config;
use js_sys::Reflect;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, RequestInit, Response};

mod download;
mod repo_package;
use download::stream_checkpoint;
use repo_package::{inspect_repo_package, repo_package_info};

/// GPT-2's tokenizer, shipped next to the page (`gpt2/tokenizer.json`, see web/index.html).
pub const GPT2_TOKENIZER_URL: &str = "gpt2/tokenizer.json";
/// Resumes of a broken download before giving up.
const MAX_RESUMES: u32 = 4;
/// Longest stretch of work before the loop yields to the event loop.
const MAX_SLICE_MS: f64 = 16.0;

/// A Hub model whose files were listed, before anything big moves.
#[derive(Debug, Clone)]
pub struct HubInfo {
    pub id: HubId,
    /// The Hub (`?hub=`), without a trailing `/`.
    pub endpoint: String,
    pub commit: String,
    pub format: Scheme,
    pub config: Config,
    /// Files of the checkpoint (`None` when the package is stored and the Hub is unreachable).
    pub plan: Option<LoadPlan>,
    /// Bytes of the package the conversion writes (an estimate until converted).
    pub stored_bytes: u64,
    /// The repo has no tokenizer: GPT-2's (shipped with the page) is used.
    pub gpt2_tokenizer: bool,
    /// The converted package, when the browser already stores all of it.
    pub stored: Option<PackageInfo>,
    /// `navigator.storage.estimate()`: (usage, quota).
    pub storage: Option<(u64, u64)>,
    /// The Hub did not answer: the commit came from the stored reference.
    pub offline: bool,
    /// The repo holds a package (`manifest.json` + shards, as `bd3lm quantize` writes): its
    /// files load as they are (`stored` is that package, cached or not), nothing is converted.
    pub package_repo: bool,
}

impl HubInfo {
    pub fn download_bytes(&self) -> u64 {
        match (&self.stored, self.package_repo) {
            (Some(p), true) => p.manifest.download_bytes.saturating_sub(p.cached_bytes),
            _ => self.plan.as_ref().map_or(0, LoadPlan::download_bytes),
        }
    }

    /// Where the converted package lives in the Cache API (a URL under the page, never
    /// fetched from the network).
    fn package_base(&self) -> Result<String, PageError> {
        package_base(&self.id, &self.commit, self.format)
    }
}

fn package_base(id: &HubId, commit: &str, format: Scheme) -> Result<String, PageError> {
    browser::absolute_url(&format!(
        "hub-packages/{}/{}/{commit}/{}/",
        id.owner,
        id.name,
        format.name()
    ))
}

fn ref_url(id: &HubId) -> Result<String, PageError> {
    browser::absolute_url(&format!(
        "hub-packages/{}/{}/refs/{}",
        id.owner,
        id.name,
        hub::encode_revision(id.revision())
    ))
}

fn hub_err(e: HubError) -> PageError {
    PageError::Hub(e)
}

/// `fetch(url)`; a rejected fetch (offline, CORS) and error statuses become Hub errors.
async fn hub_fetch(
    id: &HubId,
    endpoint: &str,
    url: &str,
    file: Option<&str>,
    range_start: u64,
) -> Result<Response, PageError> {
    let init = RequestInit::new();
    if range_start > 0 {
        let headers = Headers::new().map_err(browser::browser_error)?;
        headers
            .set("Range", &format!("bytes={range_start}-"))
            .map_err(browser::browser_error)?;
        init.set_headers(&headers);
    }
    let window = browser::window()?;
    let response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| {
            hub_err(HubError::Unreachable {
                url: url.to_string(),
                detail: js_error_text(&e),
            })
        })?;
    let response: Response = response.dyn_into().map_err(browser::browser_error)?;
    if !response.ok() {
        let code = response.headers().get("X-Error-Code").ok().flatten();
        return Err(hub_err(hub::status_error(
            response.status(),
            code.as_deref(),
            id,
            endpoint,
            file,
            url,
            false,
        )));
    }
    Ok(response)
}

async fn hub_text(
    id: &HubId,
    endpoint: &str,
    url: &str,
    file: Option<&str>,
) -> Result<String, PageError> {
    let response = hub_fetch(id, endpoint, url, file, 0).await?;
    let text = JsFuture::from(response.text().map_err(browser::browser_error)?)
        .await
        .map_err(|e| {
            hub_err(HubError::Unreachable {
                url: url.to_string(),
                detail: js_error_text(&e),
            })
        })?;
    Ok(text.as_string().unwrap_or_default())
}

/// `navigator.storage.estimate()` as (usage, quota).
pub async fn storage_estimate() -> Option<(u64, u64)> {
    let storage = browser::window().ok()?.navigator().storage();
    let estimate = JsFuture::from(storage.estimate().ok()?).await.ok()?;
    let field = |name: &str| Reflect::get(&estimate, &name.into()).ok()?.as_f64();
    Some((field("usage")? as u64, field("quota")? as u64))
}

/// Asks the browser to keep the page's storage under pressure (`navigator.storage.persist()`).
async fn ask_persist() -> bool {
    let Ok(window) = browser::window() else {
        return false;
    };
    let Ok(promise) = window.navigator().storage().persist() else {
        return false;
    };
    JsFuture::from(promise)
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// The stored package of `id` at `commit` in `format`, if every file of it is in the cache.
async fn stored_package(
    id: &HubId,
    commit: &str,
    format: Scheme,
    cache: &PackageCache,
) -> Option<PackageInfo> {
    cached_package(package_base(id, commit, format).ok()?, cache).await
}

/// The package at `base_url`, if its manifest and every file of it are in the cache.
async fn cached_package(base_url: String, cache: &PackageCache) -> Option<PackageInfo> {
    let text = cache.get_text(&file_url(&base_url, MANIFEST_FILE)).await?;
    let manifest = Manifest::parse(&text).ok()?;
    let mut bytes = 0;
    for entry in std::iter::once(&manifest.tokenizer).chain(&manifest.files) {
        if !cache.contains(&file_url(&base_url, &entry.file)).await {
            return None;
        }
        bytes += entry.bytes;
    }
    let files = manifest.files.len() + 1;
    Some(PackageInfo {
        base_url,
        manifest,
        cached_files: files,
        cached_bytes: bytes,
        offline_manifest: false,
    })
}

/// Resolves the id, lists its files and reads its config (a repo that is not a BD3-LM fails
/// here, before any download), and finds what the browser already stores.
pub async fn inspect(
    id: &HubId,
    endpoint: &str,
    format: Scheme,
    cache: &PackageCache,
) -> Result<HubInfo, PageError> {
    let repo = id.repo();
    let info_url = hub::model_info_url(endpoint, &repo, id.revision());
    let ref_key = ref_url(id)?;
    let (commit, offline) = match hub_text(id, endpoint, &info_url, None).await {
        Ok(text) => {
            let info = hub::parse_model_info(&info_url, &text).map_err(hub_err)?;
            if let Err(why) = cache.put_text(&ref_key, &info.sha).await {
                browser::log(&format!("bd3lm: could not store the commit of {id}: {why}"));
            }
            (info.sha, false)
        }
        Err(PageError::Hub(HubError::Unreachable { url, detail })) => {
            match cache.get_text(&ref_key).await.filter(|c| hub::is_commit(c)) {
                Some(commit) => (commit, true),
                None => return Err(hub_err(HubError::Unreachable { url, detail })),
            }
        }
        Err(e) => return Err(e),
    };
    // A repo holding a package: its files, at this commit, are the package's URLs.
    let repo_base = hub::resolve_url(endpoint, &repo, &commit, "");
    if let Some(package) = cached_package(repo_base.clone(), cache).await {
        return repo_package_info(id, endpoint, &commit, format, package, offline).await;
    }
    let stored = stored_package(id, &commit, format, cache).await;
    if let Some(stored) = &stored {
        // The package is at hand: no file list, config or download needed.
        let config = stored.manifest.model_config().map_err(PageError::Package)?;
        return Ok(HubInfo {
            id: id.clone(),
            endpoint: endpoint.to_string(),
            commit,
            format,
            config,
            plan: None,
            stored_bytes: stored.cached_bytes,
            gpt2_tokenizer: false,
            stored: Some(stored.clone()),
            storage: storage_estimate().await,
            offline,
            package_repo: false,
        });
    }
    let tree_url = hub::tree_url(endpoint, &repo, &commit);
    let tree_text = hub_text(id, endpoint, &tree_url, None).await?;
    let tree = hub::parse_tree(&tree_url, &tree_text).map_err(hub_err)?;
    if hub::holds_package(&tree) {
        let package = inspect_repo_package(id, endpoint, &tree, repo_base, cache).await?;
        return repo_package_info(id, endpoint, &commit, format, package, offline).await;
    }
    let plan = LoadPlan::from_tree(id, &tree).map_err(hub_err)?;
    let config_url = hub::resolve_url(endpoint, &repo, &commit, hub::CONFIG_FILE);
    let config_text = hub_text(id, endpoint, &config_url, Some(hub::CONFIG_FILE)).await?;
    let config = hub::check_config(id, &config_text).map_err(hub_err)?;
    let gpt2_tokenizer = plan.tokenizer.is_none();
    if gpt2_tokenizer && !hub::uses_gpt2_tokenizer(&config) {
        return Err(hub_err(HubError::NotBd3lm {
            repo,
            revision: id.revision().to_string(),
            why: format!(
                "its repo has no tokenizer.json and its vocabulary ({} tokens) is not GPT-2's, so the page has no tokenizer for it",
                config.vocab_size
            ),
        }));
    }
    let tokenizer_bytes = plan.tokenizer.as_ref().map_or(1_355_256, |t| t.size);
    let stored_bytes = match &stored {
        Some(p) => p.cached_bytes,
        None => {
            hub::package_bytes_estimate(&config, SchemePlan::for_format(format), tokenizer_bytes)
        }
    };
    Ok(HubInfo {
        id: id.clone(),
        endpoint: endpoint.to_string(),
        commit,
        format,
        config,
        plan: Some(plan),
        stored_bytes,
        gpt2_tokenizer,
        stored: None,
        storage: storage_estimate().await,
        offline,
        package_repo: false,
    })
}

/// What the converter hands out while it runs: stored shards and tensor pieces.
#[derive(Default)]
struct Outbox {
    shards: Vec<(String, Vec<u8>)>,
    pieces: Vec<(String, TensorPiece)>,
}

/// Stages shards and feeds pieces to the engine; returns the bytes of pieces handed over.
async fn drain(
    outbox: &Rc<RefCell<Outbox>>,
    base_url: &str,
    staging: &PackageCache,
    sink: &mut ModelSink,
) -> Result<(), PageError> {
    let (shards, pieces) = {
        let mut out = outbox.borrow_mut();
        (
            std::mem::take(&mut out.shards),
            std::mem::take(&mut out.pieces),
        )
    };
    for (name, piece) in pieces {
        let big = matches!(&piece, TensorPiece::Rows { matrix, .. } if matrix.bytes() >= 4_000_000);
        sink.put(name, piece)?;
        if big {
            yield_to_browser(0).await;
        }
    }
    for (name, bytes) in shards {
        staging
            .put_bytes(&file_url(base_url, &name), bytes)
            .await
            .map_err(|why| storage_error(&name, &why))?;
    }
    Ok(())
}

fn storage_error(file: &str, why: &str) -> PageError {
    if why.contains("Quota") || why.contains("quota") {
        PageError::Quota(format!(
            "the browser refused to store {file} ({why}). Free some space (site data of other pages) and load again."
        ))
    } else {
        PageError::Browser(format!("storing {file} failed: {why}"))
    }
}

/// Everything a Hub load produced besides the engine.
pub struct HubLoaded {
    pub tokenizer_json: Vec<u8>,
    pub package: PackageInfo,
    pub report: LoadReport,
}

/// Downloads, verifies and converts the checkpoint into `sink`, storing the package once the
/// checkpoint's SHA-256 verified. `on_progress` sees bytes, rate, time left and the stage.
pub async fn load(
    info: &HubInfo,
    cache: &PackageCache,
    sink: &mut ModelSink,
    on_progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<HubLoaded, PageError> {
    let started = now_ms();
    let plan = info.plan.clone().ok_or_else(|| {
        hub_err(HubError::Unreachable {
            url: info.endpoint.clone(),
            detail: "the file list could not be read".into(),
        })
    })?;
    let lfs = plan.checkpoint_lfs().cloned().ok_or_else(|| {
        hub_err(HubError::NotLfs {
            repo: info.id.repo(),
            file: hub::CHECKPOINT_FILE.into(),
        })
    })?;
    let mut progress = DownloadProgress::new(plan.download_bytes());
    progress.activity = "checking the browser's storage".into();
    on_progress(&progress);
    if let Some((usage, quota)) = storage_estimate().await {
        if let Some(why) = hub_choice::quota_problem(info.stored_bytes, usage, quota) {
            return Err(PageError::Quota(why));
        }
    }
    let persisted = ask_persist().await;
    browser::log(&format!("bd3lm: persistent storage granted: {persisted}"));

    // The tokenizer: the repo's, or GPT-2's shipped with the page.
    progress.activity = "reading the tokenizer".into();
    on_progress(&progress);
    let repo = info.id.repo();
    let tokenizer_json = match &plan.tokenizer {
        Some(t) => {
            let url = hub::resolve_url(&info.endpoint, &repo, &info.commit, &t.path);
            hub_text(&info.id, &info.endpoint, &url, Some(&t.path)).await?
        }
        None => crate::fetch::fetch_text(&browser::absolute_url(GPT2_TOKENIZER_URL)?).await?,
    }
    .into_bytes();
    let tokenizer = Tokenizer::from_bytes(&tokenizer_json, info.config.vocab_size)
        .map_err(PageError::Package)?;
    progress.done_bytes = plan.config.size + plan.tokenizer.as_ref().map_or(0, |t| t.size);

    // Staging: leftovers of an earlier, unfinished conversion go first.
    let base_url = info.package_base()?;
    let staging = PackageCache::open_named(STAGING_CACHE_NAME).await;
    staging.delete_prefix(&base_url).await;
    let outbox = Rc::new(RefCell::new(Outbox::default()));
    let shards = outbox.clone();
    let mut writer =
        PackageWriter::new(CONVERTER_SHARD_BYTES, move |name: &str, bytes: Vec<u8>| {
            shards.borrow_mut().shards.push((name.to_string(), bytes));
            Ok(())
        });
    let pieces = outbox.clone();
    writer.observe_pieces(Box::new(move |name, piece| {
        pieces.borrow_mut().pieces.push((name.to_string(), piece));
        Ok(())
    }));
    let format = SchemePlan::for_format(info.format);
    let mut converter =
        StreamingConverter::new(&info.config, format, hub::CHECKPOINT_FILE, lfs.size, writer);
    let mut hasher = Sha256::new();
    let result = stream_checkpoint(
        info,
        &lfs,
        &mut converter,
        &mut hasher,
        &outbox,
        &base_url,
        &staging,
        sink,
        &mut progress,
        on_progress,
    )
    .await;
    if let Err(e) = result {
        staging.delete_prefix(&base_url).await;
        return Err(e);
    }
    progress.activity = "verifying the SHA-256".into();
    on_progress(&progress);
    let found: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if found != lfs.oid {
        staging.delete_prefix(&base_url).await;
        return Err(hub_err(HubError::HashMismatch {
            repo,
            file: hub::CHECKPOINT_FILE.into(),
            expected: lfs.oid.clone(),
            found,
        }));
    }
    let name = format!("{}-{}", info.id.name, info.format.name());
    let pkg_info = package_info(
        &info.config,
        format,
        &name,
        special_tokens(&tokenizer),
        lfs.size,
    );
    let finished = converter
        .finish(pkg_info, &tokenizer_json)
        .map_err(PageError::Package);
    let manifest = match finished {
        Ok(m) => m,
        Err(e) => {
            staging.delete_prefix(&base_url).await;
            return Err(e);
        }
    };
    if let Err(e) = drain(&outbox, &base_url, &staging, sink).await {
        staging.delete_prefix(&base_url).await;
        return Err(e);
    }

    // Verified: the package moves into the package cache, manifest last.
    progress.activity = "storing the package".into();
    on_progress(&progress);
    let mut report = LoadReport {
        files_from_network: 1,
        network_bytes: progress.network_bytes,
        ..LoadReport::default()
    };
    let text = manifest.to_file_text().map_err(PageError::Package)?;
    let mut stored = true;
    for entry in std::iter::once(&manifest.tokenizer).chain(&manifest.files) {
        if let Err(why) = cache
            .move_from(&staging, &file_url(&base_url, &entry.file))
            .await
        {
            report.cache_warnings.push(format!(
                "The converted package could not be stored ({why}); it will be downloaded and converted again next time."
            ));
            stored = false;
            break;
        }
    }
    if stored {
        if let Err(why) = cache
            .put_text(&file_url(&base_url, MANIFEST_FILE), &text)
            .await
        {
            report.cache_warnings.push(format!(
                "The converted package could not be stored ({why}); it will be downloaded and converted again next time."
            ));
        }
    } else {
        cache.delete_prefix(&base_url).await;
    }
    staging.delete_prefix(&base_url).await;
    progress.activity = "done".into();
    on_progress(&progress);
    report.elapsed_ms = now_ms() - started;
    let files = manifest.files.len() + 1;
    let bytes = manifest.download_bytes;
    browser::log(&format!(
        "bd3lm: {} ({}) converted to {} in the browser: {} files, {bytes} bytes, {:.0} ms",
        info.id,
        info.commit,
        info.format.name(),
        files,
        report.elapsed_ms
    ));
    Ok(HubLoaded {
        tokenizer_json,
        package: PackageInfo {
            base_url,
            manifest,
            cached_files: files,
            cached_bytes: bytes,
            offline_manifest: false,
        },
        report,
    })
}
