//! What the page does with a package URL the user typed and the manifest found there:
//! normalize the URL, name the manifest's URL, parse the manifest, and list the URL of every
//! file to download (`bd3lm-web/src/loader.rs` and `fetch.rs` call exactly these).
//!
//! Input: `input::split` into the URL, then manifest.json.

use crate::input::{split, text};
use bd3lm::package::url::{file_url, normalize_package_url, origin_of, MANIFEST_FILE};
use bd3lm::package::Manifest;

pub fn run(data: &[u8]) {
    let (url, manifest) = split(data);
    let Some(url) = text(url) else {
        return;
    };
    let base = normalize_package_url(url);
    assert!(base.ends_with('/'), "{base:?}");
    let manifest_url = file_url(&base, MANIFEST_FILE);
    if let Some(origin) = origin_of(url) {
        assert!(origin.contains("://"));
        let _ = origin_of(&manifest_url);
    }
    let Some(manifest) = text(manifest) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(manifest) else {
        return;
    };
    for entry in manifest.download_order() {
        let url = file_url(&base, &entry.file);
        // Every file stays inside the package's folder.
        let name = url.strip_prefix(&base).expect("under the package URL");
        assert!(!name.contains(['/', '\\', '?', '#']) && !name.starts_with('.'));
    }
    let _ = manifest.model_config().expect("validated");
}
