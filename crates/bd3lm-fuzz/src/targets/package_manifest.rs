//! `Manifest::parse`: a package's `manifest.json`, its validation, and what the CLI and the
//! page read from an accepted manifest.

use crate::input::text;
use bd3lm::package::Manifest;

pub fn run(data: &[u8]) {
    let Some(json) = text(data) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(json) else {
        return;
    };
    let cfg = manifest
        .model_config()
        .expect("a validated manifest has a valid config");
    assert_eq!(manifest.special_tokens.mask, cfg.mask_id());
    assert_eq!(manifest.download_order().count(), manifest.file_count());
    for entry in manifest.download_order() {
        assert_eq!(manifest.file(&entry.file), Some(entry));
    }
    let written = serde_json::to_string(&manifest).expect("a manifest serializes");
    assert_eq!(Manifest::parse(&written).expect("round trip"), manifest);
}
