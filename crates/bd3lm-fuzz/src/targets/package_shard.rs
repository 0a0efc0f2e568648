//! `package::read_shard`: one safetensors shard of a package under its manifest, as the page
//! and `load_package` read it after the SHA-256 check (a package's publisher controls both
//! the manifest and the hashes), then the pieces collected into weights.
//!
//! Input: `input::split` into manifest.json, then the shard's bytes, offered as each listed
//! shard in turn.

use crate::input::{split, text};
use bd3lm::package::{read_shard, Manifest, TensorPiece, WeightsBuilder};

pub fn run(data: &[u8]) {
    let (manifest, shard) = split(data);
    let Some(manifest) = text(manifest) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(manifest) else {
        return;
    };
    let Ok(config) = manifest.model_config() else {
        return;
    };
    let mut builder = WeightsBuilder::new(config);
    for entry in &manifest.files {
        let Ok(pieces) = read_shard(&manifest, &entry.file, shard) else {
            return;
        };
        for (name, piece) in pieces {
            if let TensorPiece::Rows {
                start_row,
                total_rows,
                matrix,
            } = &piece
            {
                assert!(start_row + matrix.rows <= *total_rows);
            }
            builder.put(name, piece);
        }
    }
    if let Ok(weights) = builder.finish() {
        assert_eq!(weights.layers.len(), weights.config.n_layers);
    }
}
