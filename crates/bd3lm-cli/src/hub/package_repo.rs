//! A Hub repository that holds a package (`manifest.json` + shards, as `bd3lm quantize`
//! writes, published with the Hub's upload tools: docs/models.md): only the package's files
//! are downloaded, each checked against the Hub's listing (size, and `lfs.oid` when stored
//! with LFS) before the download and against the manifest's SHA-256 after it, into
//! `<packages>/<owner>/<name>/<commit>/package/`, which later runs verify and reuse without
//! downloading.

use super::{hub_error, say, short, Client, HubEnv};
use crate::error::{CliError, CliResult};
use crate::progress;
use bd3lm::hub::{self, HubError, HubId, TreeEntry};
use bd3lm::package::{FileEntry, Manifest};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MANIFEST_FILE: &str = hub::PACKAGE_MANIFEST_FILE;

/// Downloads the package of `id` at `commit` into `dir` (whole or not at all).
pub fn download(
    env: &HubEnv,
    client: &Client,
    id: &HubId,
    commit: &str,
    tree: &[TreeEntry],
    dir: &Path,
) -> CliResult<PathBuf> {
    let url = hub::resolve_url(&env.endpoint, &id.repo(), commit, MANIFEST_FILE);
    let text = client
        .get_text(id, &url, Some(MANIFEST_FILE))
        .map_err(hub_error)?;
    let manifest =
        Manifest::parse(&text).map_err(|e| CliError::core(format!("{id}: {MANIFEST_FILE}"), e))?;
    let entries: Vec<&FileEntry> = std::iter::once(&manifest.tokenizer)
        .chain(&manifest.files)
        .collect();
    // The Hub's listing must agree with the manifest before anything is downloaded.
    hub::check_package_listing(
        id,
        tree,
        entries
            .iter()
            .map(|e| (e.file.as_str(), e.bytes, e.sha256.as_str())),
    )
    .map_err(hub_error)?;
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    say(&format!(
        "downloading the {} package of {id} ({}): {} files, {:.1} MB, from {}",
        manifest.quantization,
        short(commit),
        entries.len(),
        total as f64 / 1e6,
        env.endpoint
    ));
    let partial = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| CliError::io(&partial, e))?;
    let fetched = (|| {
        std::fs::write(partial.join(MANIFEST_FILE), &text)
            .map_err(|e| CliError::io(&partial, e))?;
        let bar = progress::byte_bar(total, "downloading");
        for entry in &entries {
            let url = hub::resolve_url(&env.endpoint, &id.repo(), commit, &entry.file);
            let found = fetch_file(
                client,
                id,
                &url,
                &entry.file,
                &partial.join(&entry.file),
                &bar,
            )?;
            if found != entry.sha256 {
                return Err(hub_error(HubError::HashMismatch {
                    repo: id.repo(),
                    file: entry.file.clone(),
                    expected: entry.sha256.clone(),
                    found,
                }));
            }
        }
        bar.finish_and_clear();
        Ok(())
    })();
    if let Err(e) = fetched {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent, e))?;
    }
    std::fs::rename(&partial, dir).map_err(|e| CliError::io(dir, e))?;
    Ok(dir.to_path_buf())
}

/// Streams `url` into `path`, returning the bytes' SHA-256.
fn fetch_file(
    client: &Client,
    id: &HubId,
    url: &str,
    file: &str,
    path: &Path,
    bar: &indicatif::ProgressBar,
) -> CliResult<String> {
    let unreachable = |detail: String| {
        hub_error(HubError::Unreachable {
            url: url.to_string(),
            detail,
        })
    };
    let mut request = client.agent.get(url);
    if let Some(token) = &client.env.token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(hub_error(hub::status_error(
            status,
            None,
            id,
            &client.env.endpoint,
            Some(file),
            url,
            client.env.token.is_some(),
        )));
    }
    let mut out = std::fs::File::create(path).map_err(|e| CliError::io(path, e))?;
    let mut reader = response.body_mut().as_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| unreachable(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| CliError::io(path, e))?;
        bar.inc(n as u64);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
