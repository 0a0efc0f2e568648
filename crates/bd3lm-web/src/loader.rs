//! Loading a package: the manifest first (to show sizes before anything big moves), then every
//! file from the cache or the network, verified against the manifest, each shard parsed and
//! handed to the engine's sink piece by piece before the next shard is read.
//!
//! Verification: size and SHA-256 of every file, whether it came from the cache or the
//! network. A cached file that fails is evicted and downloaded again; a downloaded file that
//! fails is downloaded once more (bypassing the HTTP cache); a second failure names the file.
//! Resume: each file enters the cache as soon as it is verified, so a reload after an
//! interrupted download fetches only the files that were missing.

use crate::browser::{self, now_ms, yield_to_browser};
use crate::cache::PackageCache;
use crate::fetch::{self, HttpCache};
use crate::page_engine::ModelSink;
use crate::page_error::PageError;
use crate::progress::DownloadProgress;
use bd3lm::package::url::{file_url, normalize_package_url, MANIFEST_FILE};
use bd3lm::package::{read_shard, FileEntry, Manifest, TensorPiece};
use js_sys::Uint8Array;

/// Pieces at least this big get a turn of the event loop after their upload.
const YIELD_AFTER_PIECE_BYTES: usize = 4_000_000;

/// A package whose manifest was read, before its files are.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    /// Absolute URL of the package folder (ends in `/`).
    pub base_url: String,
    pub manifest: Manifest,
    /// Files already in the browser cache, and their bytes.
    pub cached_files: usize,
    pub cached_bytes: u64,
    /// The manifest came from the cache because the network failed.
    pub offline_manifest: bool,
}

impl PackageInfo {
    pub fn total_files(&self) -> usize {
        self.manifest.file_count()
    }
}

/// Reads the manifest (network first, the cached copy when offline) and counts cached files.
pub async fn inspect(url_input: &str, cache: &PackageCache) -> Result<PackageInfo, PageError> {
    let base_url = browser::absolute_url(&normalize_package_url(url_input))?;
    let manifest_url = file_url(&base_url, MANIFEST_FILE);
    let (text, offline_manifest) = match fetch::fetch_text(&manifest_url).await {
        Ok(text) => (text, false),
        Err(network_error) => match cache.get_text(&manifest_url).await {
            Some(text) => (text, true),
            None => return Err(network_error),
        },
    };
    let manifest = Manifest::parse(&text).map_err(PageError::Package)?;
    if !offline_manifest {
        if let Err(why) = cache.put_text(&manifest_url, &text).await {
            browser::log(&format!("bd3lm: could not cache the manifest: {why}"));
        }
    }
    let mut info = PackageInfo {
        base_url,
        manifest,
        cached_files: 0,
        cached_bytes: 0,
        offline_manifest,
    };
    let mut cached = (0, 0);
    for entry in info.manifest.download_order() {
        if cache.contains(&file_url(&info.base_url, &entry.file)).await {
            cached = (cached.0 + 1, cached.1 + entry.bytes);
        }
    }
    (info.cached_files, info.cached_bytes) = cached;
    Ok(info)
}

/// How a load went, for the page to report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub files_from_cache: usize,
    pub files_from_network: usize,
    pub network_bytes: u64,
    /// Files whose cached copy failed verification (evicted, then downloaded again).
    pub evicted: Vec<String>,
    /// Files whose download failed verification once (downloaded a second time).
    pub redownloaded: Vec<String>,
    /// Cache writes that failed (the file works now but will be downloaded next time).
    pub cache_warnings: Vec<String>,
    pub elapsed_ms: f64,
}

impl LoadReport {
    pub fn summary(&self) -> String {
        use crate::format;
        let mut s = format!(
            "{} file(s) from the browser cache, {} from the network ({}), in {}.",
            self.files_from_cache,
            self.files_from_network,
            format::bytes(self.network_bytes),
            format::millis(self.elapsed_ms)
        );
        for file in &self.evicted {
            s.push_str(&format!(" The cached copy of {file} failed verification; it was evicted and downloaded again."));
        }
        for file in &self.redownloaded {
            s.push_str(&format!(
                " {file} failed verification once and was downloaded again."
            ));
        }
        for warning in &self.cache_warnings {
            s.push_str(&format!(" {warning}"));
        }
        s
    }
}

/// Why a file does not match its manifest entry, in words (`None`: it matches).
async fn mismatch(
    entry: &FileEntry,
    data: &Uint8Array,
    received: u64,
) -> Result<Option<String>, PageError> {
    if received != entry.bytes {
        return Ok(Some(format!(
            "it is {received} bytes, the manifest says {}",
            entry.bytes
        )));
    }
    let found = browser::sha256_hex(data).await?;
    Ok((found != entry.sha256)
        .then(|| format!("its SHA-256 is {found}, the manifest says {}", entry.sha256)))
}

/// Loads one verified file: cache first, then at most two downloads.
async fn load_file(
    info: &PackageInfo,
    entry: &FileEntry,
    cache: &PackageCache,
    progress: &mut DownloadProgress,
    report: &mut LoadReport,
    on_progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<Uint8Array, PageError> {
    let url = file_url(&info.base_url, &entry.file);
    let mut http_cache = HttpCache::Default;
    if let Some(data) = cache.get(&url).await {
        progress.activity = format!("checking {} (cached)", entry.file);
        on_progress(progress);
        match mismatch(entry, &data, data.length() as u64).await? {
            None => {
                progress.done_bytes += entry.bytes;
                report.files_from_cache += 1;
                return Ok(data);
            }
            Some(why) => {
                browser::log(&format!(
                    "bd3lm: cached {} failed verification ({why}); evicting",
                    entry.file
                ));
                cache.delete(&url).await;
                report.evicted.push(entry.file.clone());
                http_cache = HttpCache::Bypass;
            }
        }
    }
    let mut last_reason = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            report.redownloaded.push(entry.file.clone());
            http_cache = HttpCache::Bypass;
        }
        progress.activity = format!("downloading {}", entry.file);
        let base_done = progress.done_bytes;
        let base_network = (progress.network_bytes, progress.network_ms);
        let started = now_ms();
        let mut last_report = 0.0;
        let fetched = fetch::fetch_bytes(&url, entry.bytes, http_cache, &mut |received| {
            let capped = received.min(entry.bytes);
            progress.done_bytes = base_done + capped;
            progress.network_bytes = base_network.0 + capped;
            progress.network_ms = base_network.1 + (now_ms() - started);
            // Repainting the bar a few times a second is plenty.
            if progress.network_ms - last_report >= 100.0 || capped == entry.bytes {
                last_report = progress.network_ms;
                on_progress(progress);
            }
        })
        .await?;
        progress.network_ms = base_network.1 + fetched.elapsed_ms;
        progress.activity = format!("verifying {}", entry.file);
        on_progress(progress);
        let t_verify = now_ms();
        match mismatch(entry, &fetched.data, fetched.received).await? {
            None => {
                report.files_from_network += 1;
                report.network_bytes += entry.bytes;
                let t_cache = now_ms();
                if let Err(why) = cache.put(&url, &fetched.data).await {
                    report.cache_warnings.push(format!(
                        "{} could not be stored in the browser cache ({why}); it will be downloaded again next time.",
                        entry.file
                    ));
                }
                browser::log(&format!(
                    "bd3lm: {}: downloaded in {:.0} ms, verified in {:.0} ms, cached in {:.0} ms",
                    entry.file,
                    fetched.elapsed_ms,
                    t_cache - t_verify,
                    now_ms() - t_cache
                ));
                return Ok(fetched.data);
            }
            Some(why) => {
                browser::log(&format!(
                    "bd3lm: downloaded {} failed verification ({why})",
                    entry.file
                ));
                progress.done_bytes = base_done;
                last_reason = why;
            }
        }
    }
    Err(PageError::BadFile {
        file: entry.file.clone(),
        url,
        reason: last_reason,
    })
}

/// Everything a load produced besides the engine.
pub struct LoadedFiles {
    pub tokenizer_json: Vec<u8>,
    pub report: LoadReport,
}

/// Loads every file of the package into `sink`, one shard at a time.
pub async fn load(
    info: &PackageInfo,
    cache: &PackageCache,
    sink: &mut ModelSink,
    on_progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<LoadedFiles, PageError> {
    let started = now_ms();
    let mut progress = DownloadProgress::new(info.manifest.download_bytes);
    let mut report = LoadReport::default();
    on_progress(&progress);
    let tokenizer = load_file(
        info,
        &info.manifest.tokenizer,
        cache,
        &mut progress,
        &mut report,
        on_progress,
    )
    .await?;
    let tokenizer_json = tokenizer.to_vec();
    for entry in &info.manifest.files {
        let data = load_file(info, entry, cache, &mut progress, &mut report, on_progress).await?;
        progress.activity = format!("loading {} into the engine", entry.file);
        on_progress(&progress);
        yield_to_browser(0).await;
        if sink.takes_shards() {
            // The CPU worker parses the shard itself: this thread only posts it.
            let t_post = now_ms();
            sink.put_shard(&entry.file, &data).await?;
            browser::log(&format!(
                "bd3lm: {}: loaded into the CPU worker in {:.0} ms",
                entry.file,
                now_ms() - t_post
            ));
            continue;
        }
        // Only this shard is in wasm memory; its bytes are dropped before the next one.
        let t_copy = now_ms();
        let bytes = data.to_vec();
        drop(data);
        let t_parse = now_ms();
        let pieces = read_shard(&info.manifest, &entry.file, &bytes).map_err(PageError::Package)?;
        drop(bytes);
        let t_upload = now_ms();
        let mut longest_piece_ms = 0f64;
        for (name, piece) in pieces {
            let piece_bytes = match &piece {
                TensorPiece::Vector(v) => v.len() * 4,
                TensorPiece::Rows { matrix, .. } => matrix.bytes(),
            };
            let t_piece = now_ms();
            sink.put(name, piece)?;
            longest_piece_ms = longest_piece_ms.max(now_ms() - t_piece);
            // Uploading a big piece takes a while: let the page repaint between them.
            if piece_bytes >= YIELD_AFTER_PIECE_BYTES {
                yield_to_browser(0).await;
            }
        }
        browser::log(&format!(
            "bd3lm: {}: copy into wasm {:.0} ms, parse {:.0} ms, hand to the engine {:.0} ms (longest piece {:.0} ms)",
            entry.file,
            t_parse - t_copy,
            t_upload - t_parse,
            now_ms() - t_upload,
            longest_piece_ms
        ));
        yield_to_browser(0).await;
    }
    progress.activity = "done".to_string();
    on_progress(&progress);
    report.elapsed_ms = now_ms() - started;
    Ok(LoadedFiles {
        tokenizer_json,
        report,
    })
}
