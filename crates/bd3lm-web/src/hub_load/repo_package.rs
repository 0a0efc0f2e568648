//! A Hub repo that holds a package (`manifest.json` + shards, as `bd3lm quantize` writes,
//! published with the Hub's upload tools: docs/models.md). Its files at the commit are the
//! package's URLs (`{hub}/{id}/resolve/{commit}/{file}`), so the page's package loader
//! downloads, verifies (the manifest's SHA-256) and caches them like any package; here the
//! manifest is read and checked against the Hub's listing first.

use super::{hub_err, hub_text, storage_estimate, HubInfo};
use crate::browser;
use crate::cache::PackageCache;
use crate::loader::PackageInfo;
use crate::page_error::PageError;
use bd3lm::hub::{self, HubId};
use bd3lm::package::url::{file_url, MANIFEST_FILE};
use bd3lm::package::Manifest;
use bd3lm::quant::Scheme;

/// The manifest of a repo's package, checked against the Hub's listing (sizes, and each LFS
/// file's `lfs.oid` against the manifest's SHA-256) before anything else moves; cached, so a
/// later visit needs no request for it once the package's files are cached too.
pub(super) async fn inspect_repo_package(
    id: &HubId,
    endpoint: &str,
    tree: &[hub::TreeEntry],
    base_url: String,
    cache: &PackageCache,
) -> Result<PackageInfo, PageError> {
    let manifest_url = file_url(&base_url, MANIFEST_FILE);
    let text = hub_text(id, endpoint, &manifest_url, Some(MANIFEST_FILE)).await?;
    let manifest = Manifest::parse(&text).map_err(PageError::Package)?;
    hub::check_package_listing(
        id,
        tree,
        std::iter::once(&manifest.tokenizer)
            .chain(&manifest.files)
            .map(|e| (e.file.as_str(), e.bytes, e.sha256.as_str())),
    )
    .map_err(hub_err)?;
    if let Err(why) = cache.put_text(&manifest_url, &text).await {
        browser::log(&format!(
            "bd3lm: could not cache the manifest of {id}: {why}"
        ));
    }
    let mut package = PackageInfo {
        base_url,
        manifest,
        cached_files: 0,
        cached_bytes: 0,
        offline_manifest: false,
    };
    for entry in package.manifest.download_order() {
        if cache
            .contains(&file_url(&package.base_url, &entry.file))
            .await
        {
            package.cached_files += 1;
            package.cached_bytes += entry.bytes;
        }
    }
    Ok(package)
}

pub(super) async fn repo_package_info(
    id: &HubId,
    endpoint: &str,
    commit: &str,
    format: Scheme,
    package: PackageInfo,
    offline: bool,
) -> Result<HubInfo, PageError> {
    let config = package
        .manifest
        .model_config()
        .map_err(PageError::Package)?;
    Ok(HubInfo {
        id: id.clone(),
        endpoint: endpoint.to_string(),
        commit: commit.to_string(),
        format,
        config,
        plan: None,
        stored_bytes: package.manifest.download_bytes,
        gpt2_tokenizer: false,
        stored: Some(package),
        storage: storage_estimate().await,
        offline,
        package_repo: true,
    })
}
