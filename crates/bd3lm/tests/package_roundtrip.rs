#![cfg(not(target_arch = "wasm32"))]
use bd3lm::checkpoint;
use bd3lm::package::{self, SchemePlan, SpecialTokens};
use bd3lm::quant::Scheme;

mod common;
use common::fixture_dir as fixture;

#[test]
fn packages_round_trip_in_every_scheme_with_small_shards() {
    let dir = fixture("tiny-v512-bs4");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let weights = checkpoint::load_hf(
        &config,
        &std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
    .unwrap();
    let special = SpecialTokens {
        bos: 510,
        eos: 510,
        mask: 511,
    };
    for scheme in [Scheme::F32, Scheme::F16, Scheme::Q8, Scheme::Q4] {
        let q = package::quantize_weights(&weights, SchemePlan::for_format(scheme));
        // 40 kB shards force row pieces and many files.
        let pkg = package::build_package(
            "t",
            scheme.name(),
            &q,
            b"{}",
            special.clone(),
            serde_json::Value::Null,
            40_000,
        )
        .unwrap();
        assert!(
            pkg.manifest.files.len() > 3,
            "{scheme:?}: expected several shards"
        );
        assert!(pkg.files.iter().all(|(_, b)| b.len() <= 40_000));
        let text = serde_json::to_string(&pkg.manifest).unwrap();
        let files = pkg.files.clone();
        let (_, loaded, tok) = package::load_package(&text, |f| {
            Ok(files
                .iter()
                .find(|(n, _)| n == f)
                .map(|(_, b)| b.clone())
                .unwrap())
        })
        .unwrap();
        assert_eq!(tok, b"{}");
        assert_eq!(
            loaded, q,
            "{scheme:?}: loaded weights equal the packed ones"
        );
    }
}
